//! Downloading immutable files from storage servers: find the shares, then read through
//! [`ChkReader`], which verifies everything and fails over between shares.

use std::sync::Arc;

use futures::future::{BoxFuture, join_all};
use storage::api::ShareKind;
use storage::{ShareNum, StorageIndex};
use tracing::{debug, warn};

use super::{ServerEntry, permuted_servers, with_timeout};
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
            with_timeout(self.server.request_timeout, read)
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
            let result = with_timeout(self.server.request_timeout, advise).await;
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
    let ordered = permuted_servers(storage_index.as_bytes(), servers);
    let answers = join_all(ordered.iter().map(|server| async move {
        (
            server,
            with_timeout(
                server.request_timeout,
                server.client.list_shares(ShareKind::Immutable, storage_index),
            )
            .await,
        )
    }))
    .await;
    let mut sources: Vec<Arc<dyn ShareSource>> = Vec::new();
    for (server, answer) in answers {
        match answer {
            Ok(shares) => {
                for shnum in shares {
                    sources.push(Arc::new(RemoteShare {
                        server: (*server).clone(),
                        storage_index,
                        shnum,
                    }));
                }
            }
            Err(e) => debug!(server = %server.name(), error = %e, "cannot list shares"),
        }
    }
    sources
}

/// Opens an immutable file for reading from the grid.
pub async fn open_chk(servers: &[ServerEntry], cap: ChkCap) -> Result<ChkReader, DownloadError> {
    let sources = locate_shares(servers, cap.storage_index()).await;
    ChkReader::open(cap, sources).await
}
