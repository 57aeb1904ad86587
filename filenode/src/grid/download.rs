//! Downloading immutable files from storage servers: find the shares, then read through
//! [`ChkReader`], which verifies everything and fails over between shares.
//!
//! Round trips: a share's layout follows from its cap's k, N and size once the segment size is
//! known, and uploaders use one of two (ours and Tahoe's default), and a healthy grid holds share
//! `r` on the `r`-th server of the file's permuted ring. So [`open_chk_at`] asks for each of the
//! first 2k guessed shares' header and trailer (and, for the first k + 1, the block the read will
//! start with) in the same round trip as it asks every server which shares it holds. Where the
//! guesses hold, validating the shares and reading the first segment take no further round trip:
//! the first byte comes one round trip after the request. Where they do not, the guessed reads
//! are dropped (a 404 from a server without that share) and the reads go out as before.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use storage::api::ShareKind;
use storage::{ShareNum, StorageIndex};
use tracing::{debug, warn};

use super::{QUICK_DEADLINE, ServerEntry, permuted_servers};
use crate::cap::ChkCap;
use crate::immutable::{
    ChkGeometry, ChkParams, ChkReader, DEFAULT_MAX_SEGMENT_SIZE, DownloadError, ShareReadError, ShareSource,
    validation_reads,
};

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

    fn round_trip(&self) -> Option<std::time::Duration> {
        self.server.speed.round_trip()
    }

    fn transfer_rate(&self) -> Option<f64> {
        self.server.speed.rate()
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
    let (found, _) = locate(&ordered, storage_index, None, MIN_GRACE, no_guesses()).await;
    sources(&ordered, storage_index, found, &mut Vec::new())
}

/// As [`locate_shares`], but once the answers name `needed` distinct shares the servers yet to
/// answer get a grace period (as long again as that took, at least half a second) and are then left
/// out: a hung server costs a download that much, not its request deadline.
pub async fn locate_enough_shares(
    servers: &[ServerEntry],
    storage_index: StorageIndex,
    needed: usize,
) -> Vec<Arc<dyn ShareSource>> {
    let ordered = permuted_servers(storage_index.as_bytes(), servers);
    let (found, _) = locate(&ordered, storage_index, Some(needed), MIN_GRACE, no_guesses()).await;
    sources(&ordered, storage_index, found, &mut Vec::new())
}

/// The least grace [`locate`] gives the servers yet to answer once `needed` shares are named,
/// where their answers would otherwise be lost.
const MIN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// A server's answer to "which shares do you hold", by its rank in ring order.
type Listing = BoxFuture<'static, (usize, Result<BTreeSet<ShareNum>, storage::StorageError>)>;

/// Guessed shares' reads, polled along while [`locate`] waits: each yields, once all its reads
/// have answered, whether they all found data and included a block.
type Guesses = futures::stream::FuturesUnordered<BoxFuture<'static, bool>>;

/// No guessed reads.
fn no_guesses() -> Guesses {
    futures::stream::FuturesUnordered::new()
}

/// The shares each server (by its rank in `ordered`) says it holds, in ring order. Once `needed`
/// distinct shares are named, the servers yet to answer get a grace (as long again as that took,
/// at least `min_grace`), cut short once `needed` of `guesses` have held; those still silent then
/// are returned unanswered, their questions still out. `guesses` are polled until it returns
/// (a request goes out only while its future is polled).
async fn locate(
    ordered: &[&ServerEntry],
    storage_index: StorageIndex,
    needed: Option<usize>,
    min_grace: std::time::Duration,
    mut guesses: Guesses,
) -> (
    Vec<(usize, BTreeSet<ShareNum>)>,
    futures::stream::FuturesUnordered<Listing>,
) {
    use futures::future::FusedFuture;
    use futures::stream::{FuturesUnordered, StreamExt};
    let started = std::time::Instant::now();
    let mut pending: FuturesUnordered<Listing> = ordered
        .iter()
        .enumerate()
        .map(|(rank, server)| {
            let server = (*server).clone();
            async move {
                let answer = server
                    .timed(
                        QUICK_DEADLINE,
                        0,
                        server.client.list_shares(ShareKind::Immutable, storage_index),
                    )
                    .await;
                (rank, answer)
            }
            .boxed()
        })
        .collect();
    let mut answers: Vec<(usize, BTreeSet<ShareNum>)> = Vec::new();
    let mut distinct: BTreeSet<ShareNum> = BTreeSet::new();
    let mut grace = futures::future::Fuse::terminated();
    let mut held = 0;
    loop {
        let enough = needed.is_some_and(|n| distinct.len() >= n && held >= n);
        if enough {
            debug!(
                unanswered = pending.len(),
                "locating shares without the slowest servers"
            );
            break;
        }
        futures::select! {
            whole = guesses.select_next_some() => held += usize::from(whole),
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
                    let wait = min_grace.max(started.elapsed());
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
    (answers, pending)
}

/// The sources of the shares `found`; a share whose reads were started on a guess (in `guessed`,
/// by server rank and share number) keeps them, and those come first.
fn sources(
    ordered: &[&ServerEntry],
    storage_index: StorageIndex,
    found: Vec<(usize, BTreeSet<ShareNum>)>,
    guessed: &mut Vec<GuessedShare>,
) -> Vec<Arc<dyn ShareSource>> {
    let mut sources: Vec<Arc<dyn ShareSource>> = Vec::new();
    let mut others: Vec<Arc<dyn ShareSource>> = Vec::new();
    for (rank, shares) in found {
        for shnum in shares {
            match guessed
                .iter()
                .position(|g| g.rank == rank && g.share.shnum == shnum)
            {
                Some(i) => sources.push(Arc::new(guessed.swap_remove(i))),
                None => others.push(Arc::new(RemoteShare {
                    server: ordered[rank].clone(),
                    storage_index,
                    shnum,
                })),
            }
        }
    }
    sources.extend(others);
    sources
}

/// Opens an immutable file for reading from the grid (guessing that the first read starts at the
/// beginning: see [`open_chk_at`]).
pub async fn open_chk(servers: &[ServerEntry], cap: ChkCap) -> Result<ChkReader, DownloadError> {
    open_chk_at(servers, cap, 0).await
}

/// Opens an immutable file for reading from the grid, starting the reads that validating the
/// shares and reading the segment that holds byte `offset` will need in the same round trip as
/// locating the shares (see the module's documentation).
pub async fn open_chk_at(
    servers: &[ServerEntry],
    cap: ChkCap,
    offset: u64,
) -> Result<ChkReader, DownloadError> {
    let storage_index = cap.storage_index();
    let ordered = permuted_servers(storage_index.as_bytes(), servers);
    let mut guessed = guess_shares(&ordered, &cap, offset);
    let needed = usize::from(cap.needed);
    // Each guessed share's reads, done when all of them are; it holds if they all found data and
    // included a block (the first k + 1 shares' did).
    let guesses: Guesses = guessed
        .iter()
        .map(|g| {
            let reads: Vec<_> = g
                .reads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|read| read.bytes.clone())
                .collect();
            let with_block = g.rank <= needed;
            futures::future::join_all(reads)
                .map(move |reads| with_block && reads.iter().all(Option::is_some))
                .boxed()
        })
        .collect();
    // Locating ends once k shares are named and either k guessed shares have held (all their
    // reads answered with data, blocks included) or the servers yet to answer have had as long
    // again as naming k shares took (no least grace). Those left are not waited for (a slow
    // server's listing, queued on its link behind its guessed block, cost the first byte that
    // grace), and their answers still count when the others' shares are not enough
    // (`ChkReader::open_with_late`). Guesses that miss (reads that find no share) settle nothing.
    // Whatever guessed read is still in flight when locating ends goes on when read.
    let (found, unanswered) = locate(
        &ordered,
        storage_index,
        Some(needed),
        std::time::Duration::ZERO,
        guesses,
    )
    .await;
    let guess_count = guessed.len();
    let first = sources(&ordered, storage_index, found, &mut guessed);
    // The guessed shares found (first in `first`): their validation reads are on the way already.
    let prefetched = guess_count - guessed.len();
    let late = (!unanswered.is_empty()).then(|| {
        let servers: Vec<ServerEntry> = ordered.iter().map(|s| (*s).clone()).collect();
        async move {
            use futures::stream::StreamExt;
            let mut found: Vec<(usize, BTreeSet<ShareNum>)> = unanswered
                .filter_map(|(rank, answer)| async move { answer.ok().map(|shares| (rank, shares)) })
                .collect()
                .await;
            found.sort_by_key(|(rank, _)| *rank);
            let ordered: Vec<&ServerEntry> = servers.iter().collect();
            sources(&ordered, storage_index, found, &mut Vec::new())
        }
        .boxed()
        .shared()
    });
    ChkReader::open_with_late(cap, first, late, prefetched).await
}

/// The segment sizes uploaders pick: ours (1 MiB) and Tahoe's default (128 KiB), each as the cap
/// makes it (rounded to a multiple of k, no larger than the file).
fn likely_geometries(cap: &ChkCap) -> Vec<ChkGeometry> {
    let mut out: Vec<ChkGeometry> = Vec::new();
    for max_segment_size in [DEFAULT_MAX_SEGMENT_SIZE, 128 << 10] {
        let params = ChkParams {
            needed: cap.needed,
            total: cap.total,
            max_segment_size,
        };
        if cap.size == 0 || params.validate().is_err() {
            continue;
        }
        let geometry = ChkGeometry::new(&params, cap.size);
        if !out.contains(&geometry) {
            out.push(geometry);
        }
    }
    out
}

/// The guessed shares of a file: share `r` on the `r`-th server of the ring for the first 2k
/// (the first round of [`ChkReader::open`] validates 2k), with their validation reads under each
/// likely layout started, and for the first k + 1 also the block of the segment holding `offset`.
fn guess_shares(ordered: &[&ServerEntry], cap: &ChkCap, offset: u64) -> Vec<GuessedShare> {
    let geometries = likely_geometries(cap);
    let storage_index = cap.storage_index();
    let count = (2 * usize::from(cap.needed))
        .min(usize::from(cap.total))
        .min(ordered.len());
    (0..count)
        .map(|rank| {
            let share = Arc::new(RemoteShare {
                server: ordered[rank].clone(),
                storage_index,
                shnum: rank as ShareNum,
            });
            let mut wanted: Vec<(u64, u64)> = Vec::new();
            for geometry in &geometries {
                let offsets = geometry.offsets();
                // The header and trailer come back in the same time from every share, so the
                // reader's choice among them (the fastest, then the lowest share numbers) falls on
                // the first k, whose blocks are on the way too.
                let [header, trailer] = validation_reads(&offsets);
                wanted.push(header);
                wanted.push(trailer);
                // k + 1 blocks: the first segment is then complete with the fastest k of them,
                // so one slow server among the first k does not set the first byte's pace
                // (its share is not validated in time, and another's block is on the way).
                if rank <= usize::from(cap.needed) {
                    let segnum = (offset.min(cap.size.saturating_sub(1))) / geometry.segment_size;
                    wanted.push((
                        offsets.data + segnum * geometry.block_size(),
                        geometry.block_len(segnum),
                    ));
                }
            }
            wanted.sort_unstable();
            wanted.dedup();
            // A read inside another is not made twice.
            let kept: Vec<(u64, u64)> = wanted
                .iter()
                .copied()
                .filter(|&(at, len)| {
                    !wanted
                        .iter()
                        .any(|&(o, l)| (o, l) != (at, len) && o <= at && at + len <= o + l)
                })
                .collect();
            let reads = kept
                .into_iter()
                .map(|(at, len)| {
                    let share = Arc::clone(&share);
                    let bytes: BoxFuture<'static, Option<Arc<Vec<u8>>>> =
                        Box::pin(async move { share.read(at, len).await.ok().map(Arc::new) });
                    GuessedRead {
                        offset: at,
                        len,
                        bytes: bytes.shared(),
                    }
                })
                .collect();
            GuessedShare {
                rank,
                share,
                reads: Mutex::new(reads),
            }
        })
        .collect()
}

/// A read of a share started before the share was known to exist.
#[derive(Clone)]
struct GuessedRead {
    offset: u64,
    len: u64,
    /// The bytes; `None` if the read failed (no such share, most likely).
    bytes: Shared<BoxFuture<'static, Option<Arc<Vec<u8>>>>>,
}

/// A share that a server has said it holds, with the reads started for it on a guess. A read of
/// the share that one of them covers is served from it; the others go to the server.
struct GuessedShare {
    /// The server's rank in the ring.
    rank: usize,
    share: Arc<RemoteShare>,
    /// Reads not yet used up (one is dropped once a read up to its end has been served).
    reads: Mutex<Vec<GuessedRead>>,
}

impl ShareSource for GuessedShare {
    fn shnum(&self) -> u16 {
        self.share.shnum
    }

    fn describe(&self) -> String {
        self.share.describe()
    }

    fn round_trip(&self) -> Option<std::time::Duration> {
        self.share.round_trip()
    }

    fn transfer_rate(&self) -> Option<f64> {
        self.share.transfer_rate()
    }

    fn read(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<Vec<u8>, ShareReadError>> {
        let covering = {
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            let found = reads
                .iter()
                .position(|r| r.offset <= offset && offset.saturating_add(len) <= r.offset + r.len);
            found.map(|i| {
                let read = reads[i].clone();
                if offset + len == read.offset + read.len {
                    reads.swap_remove(i);
                }
                read
            })
        };
        Box::pin(async move {
            if let Some(read) = covering
                && let Some(bytes) = read.bytes.await
            {
                let from = (offset - read.offset) as usize;
                // A read past the share's end comes back short, as from the server; the header
                // read (the only one validation makes without knowing the share's length) never
                // reaches it.
                let to = (from + len as usize).min(bytes.len());
                if from <= to && (to - from == len as usize || offset + len == read.offset + read.len) {
                    return Ok(bytes[from..to].to_vec());
                }
            }
            self.share.read(offset, len).await
        })
    }

    fn advise_corrupt(&self, reason: String) -> BoxFuture<'_, ()> {
        self.share.advise_corrupt(reason)
    }
}
