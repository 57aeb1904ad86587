//! Downloading immutable files from storage servers: find the shares, then read through
//! [`ChkReader`], which verifies everything and fails over between shares.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use storage::api::ShareKind;
use storage::{ShareNum, StorageIndex};
use tracing::{debug, warn};

use super::{QUICK_DEADLINE, ServerEntry, permuted_servers};
use crate::cap::ChkCap;
use crate::immutable::{ChkReader, DownloadError, ShareReadError, ShareSource};

/// One share on one server.
#[derive(Debug, Clone)]
pub struct RemoteShare {
    server: ServerEntry,
    storage_index: StorageIndex,
    shnum: ShareNum,
}

impl RemoteShare {
    /// Share `shnum` of `storage_index` on `server`.
    pub fn new(server: ServerEntry, storage_index: StorageIndex, shnum: ShareNum) -> Self {
        RemoteShare {
            server,
            storage_index,
            shnum,
        }
    }
}

impl ShareSource for RemoteShare {
    fn shnum(&self) -> u16 {
        self.shnum
    }

    fn describe(&self) -> String {
        format!("share {} on server {}", self.shnum, self.server.name())
    }

    fn read(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<Vec<u8>, ShareReadError>> {
        Box::pin(async move {
            let read = self.server.client.read_share(
                ShareKind::Immutable,
                self.storage_index,
                self.shnum,
                offset,
                len,
            );
            self.server
                .timed(QUICK_DEADLINE, len, read)
                .await
                .map(|bytes| bytes.to_vec())
                .map_err(|e| ShareReadError(Box::new(e)))
        })
    }

    fn advise_corrupt(&self, reason: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            warn!(server = %self.server.name(), si = %self.storage_index, shnum = self.shnum, %reason, "share failed verification");
            let advise = self.server.client.advise_corrupt_share(
                ShareKind::Immutable,
                self.storage_index,
                self.shnum,
                &reason,
            );
            let result = self.server.timed(QUICK_DEADLINE, 0, advise).await;
            if let Err(e) = result {
                debug!(server = %self.server.name(), error = %e, "corruption advisory not delivered");
            }
        })
    }
}

/// Asks every server which shares of `storage_index` it holds. Sources come back in permuted-ring
/// order (the servers Tahoe would have placed shares on first come first); unreachable servers are
/// skipped.
pub async fn locate_shares(
    servers: &[ServerEntry],
    storage_index: StorageIndex,
) -> Vec<Arc<dyn ShareSource>> {
    locate(servers, storage_index, None).await
}

/// As [`locate_shares`], but once the answers name `needed` distinct shares the servers yet to
/// answer get a grace period (as long again as that took, at least half a second) and are then left
/// out: a hung server costs a download that much, not its request deadline.
pub async fn locate_enough_shares(
    servers: &[ServerEntry],
    storage_index: StorageIndex,
    needed: usize,
) -> Vec<Arc<dyn ShareSource>> {
    locate(servers, storage_index, Some(needed)).await
}

async fn locate(
    servers: &[ServerEntry],
    storage_index: StorageIndex,
    needed: Option<usize>,
) -> Vec<Arc<dyn ShareSource>> {
    use futures::FutureExt;
    use futures::future::FusedFuture;
    use futures::stream::{FuturesUnordered, StreamExt};
    let ordered = permuted_servers(storage_index.as_bytes(), servers);
    let started = std::time::Instant::now();
    let mut pending: FuturesUnordered<_> = ordered
        .iter()
        .enumerate()
        .map(|(rank, server)| async move {
            let answer = server
                .timed(
                    QUICK_DEADLINE,
                    0,
                    server.client.list_shares(ShareKind::Immutable, storage_index),
                )
                .await;
            (rank, answer)
        })
        .collect();
    let mut answers: Vec<(usize, BTreeSet<ShareNum>)> = Vec::new();
    let mut distinct: BTreeSet<ShareNum> = BTreeSet::new();
    let mut grace = futures::future::Fuse::terminated();
    loop {
        futures::select! {
            done = pending.next() => {
                let Some((rank, answer)) = done else { break };
                match answer {
                    Ok(shares) => {
                        distinct.extend(shares.iter().copied());
                        answers.push((rank, shares));
                    }
                    Err(e) => debug!(server = %ordered[rank].name(), error = %e, "cannot list shares"),
                }
                if needed.is_some_and(|n| distinct.len() >= n) && grace.is_terminated() && !pending.is_empty() {
                    let wait = std::time::Duration::from_millis(500).max(started.elapsed());
                    grace = futures_timer::Delay::new(wait).fuse();
                }
            }
            () = grace => {
                debug!(unanswered = pending.len(), "locating shares without the slowest servers");
                break;
            }
        }
    }
    answers.sort_by_key(|(rank, _)| *rank);
    let mut sources: Vec<Arc<dyn ShareSource>> = Vec::new();
    for (rank, shares) in answers {
        for shnum in shares {
            sources.push(Arc::new(RemoteShare {
                server: ordered[rank].clone(),
                storage_index,
                shnum,
            }));
        }
    }
    sources
}

/// Opens an immutable file for reading from the grid.
pub async fn open_chk(servers: &[ServerEntry], cap: ChkCap) -> Result<ChkReader, DownloadError> {
    let sources = locate_enough_shares(servers, cap.storage_index(), usize::from(cap.needed)).await;
    ChkReader::open(cap, sources).await
}
