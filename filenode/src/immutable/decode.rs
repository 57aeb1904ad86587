//! The CHK decoder: a cap plus any k good shares give back plaintext, for any byte range.
//!
//! Every share is validated before use: its URI extension block must hash to the cap's UEB hash,
//! its block-hash-tree root must verify against the UEB's share root through the share's hash chain,
//! and its ciphertext tree must match the UEB's ciphertext root. Each block read is then checked
//! against its share's block tree and each decoded segment against the ciphertext tree before it is
//! decrypted. A share that fails any check is named in [`ChkReader::bad_shares`] and replaced by
//! another; when fewer than k good shares remain the read fails with
//! [`DownloadError::NotEnoughShares`].
//!
//! IO goes through the [`ShareSource`] trait (async, runtime-agnostic). The CPU work of a segment
//! (hashing, FEC decoding, decryption) runs on the rayon pool, and up to `2 × threads` segments are
//! fetched and decoded concurrently, so the network and both cores overlap.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, FusedFuture};
use futures::stream::{self, Stream, StreamExt, TryStreamExt};

use super::layout::{HeaderError, ShareOffsets, UebError, UriExtension, V2_HEADER_LEN};
use super::params::ChkGeometry;
use crate::cap::ChkCap;
use crate::codec::Codec;
use crate::crypto::AesCtr;
use crate::hashes::{Hash, block_hash, crypttext_segment_hash, uri_extension_hash};
use crate::hashtree::{self, HashTreeError};

/// A failure to read from a share's source (network, disk, missing share).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShareReadError(pub Box<dyn std::error::Error + Send + Sync>);

/// Where one share's data can be read from.
pub trait ShareSource: Send + Sync {
    /// The share number.
    fn shnum(&self) -> u16;
    /// A description for error messages and logs (server and share number; never a cap).
    fn describe(&self) -> String;
    /// Reads up to `len` bytes at `offset` of the share data; fewer only at the end of the share.
    fn read(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<Vec<u8>, ShareReadError>>;
    /// Tells the share's holder that the share failed verification (a corruption advisory). Errors
    /// are the source's to log; the download goes on regardless.
    fn advise_corrupt(&self, reason: String) -> BoxFuture<'_, ()> {
        let _ = reason;
        Box::pin(async {})
    }
    /// The recent round trip to the share's holder, when known (it sets how many segments a read
    /// keeps in flight: [`ChkReader`]'s `segments_in_flight`).
    fn round_trip(&self) -> Option<std::time::Duration> {
        None
    }
    /// The holder's recent rate for large transfers, in bytes per second, when known. A share not
    /// yet read whose block would take far longer at this rate than the other shares' (four times
    /// their median) is not given a segment's block only to have it hedged
    /// ([`pick_for_segment`]).
    fn transfer_rate(&self) -> Option<f64> {
        None
    }
}

/// A share held in memory.
#[derive(Debug, Clone)]
pub struct MemoryShare {
    /// The share number.
    pub shnum: u16,
    /// The share data.
    pub data: Arc<Vec<u8>>,
}

impl ShareSource for MemoryShare {
    fn shnum(&self) -> u16 {
        self.shnum
    }
    fn describe(&self) -> String {
        format!("share {} (in memory)", self.shnum)
    }
    fn read(&self, offset: u64, len: u64) -> BoxFuture<'_, Result<Vec<u8>, ShareReadError>> {
        let start = (offset as usize).min(self.data.len());
        let end = offset.saturating_add(len).min(self.data.len() as u64) as usize;
        let bytes = self.data[start..end].to_vec();
        Box::pin(async move { Ok(bytes) })
    }
}

/// What was wrong with a share.
#[derive(Debug, thiserror::Error)]
pub enum ShareProblem {
    /// The source could not be read.
    #[error("unreadable: {0}")]
    Unreadable(ShareReadError),
    /// The share ends early.
    #[error("truncated")]
    Truncated,
    /// The header cannot be parsed.
    #[error("bad header: {0}")]
    Header(#[from] HeaderError),
    /// The URI extension block does not hash to the cap's value.
    #[error("its URI extension block does not match the cap")]
    UebMismatch,
    /// The URI extension block matches the cap but is malformed or disagrees with it.
    #[error("bad URI extension block: {0}")]
    Ueb(#[from] UebError),
    /// The header's offsets do not fit the file's geometry.
    #[error("share layout does not match the file's parameters")]
    LayoutMismatch,
    /// A hash tree or hash chain does not verify.
    #[error("{what} does not verify: {source}")]
    HashTree {
        /// Which tree.
        what: &'static str,
        /// Why.
        source: HashTreeError,
    },
    /// A block does not match its block hash.
    #[error("block {segment} is corrupt")]
    CorruptBlock {
        /// The segment number.
        segment: u64,
    },
}

/// A share found bad during a download.
#[derive(Debug)]
pub struct BadShare {
    /// The share number.
    pub shnum: u16,
    /// Where it came from.
    pub source: String,
    /// What was wrong.
    pub problem: ShareProblem,
}

impl fmt::Display for BadShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.problem)
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Fewer than k good shares could be found.
    #[error("not enough good shares (needed {needed}, found {found}){}", describe_bad(.bad))]
    NotEnoughShares {
        /// k.
        needed: u16,
        /// Distinct good shares found.
        found: u16,
        /// The shares that were tried and rejected.
        bad: Vec<String>,
    },
    /// All blocks verified but the decoded segment does not match the ciphertext tree: the file was
    /// encoded inconsistently.
    #[error("segment {segment} does not match the file's ciphertext hash tree")]
    CiphertextMismatch {
        /// The segment number.
        segment: u64,
    },
    /// The requested range starts beyond the end of the file.
    #[error("range starts at {offset}, beyond the file's {size} bytes")]
    RangeNotSatisfiable {
        /// Requested start.
        offset: u64,
        /// File size.
        size: u64,
    },
}

fn describe_bad(bad: &[String]) -> String {
    if bad.is_empty() {
        String::new()
    } else {
        format!("; rejected: {}", bad.join("; "))
    }
}

/// The shortest wait before a slow block read is covered by a read from another share, while no
/// block of the segment has arrived.
const HEDGE_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Once all blocks of a segment but one have arrived, after `e`, the last read gets until `2e` (at
/// least `e` plus this) before a read from another share covers it: a server far slower than the
/// others (a 1 Mbit/s uplink among 100 Mbit/s ones) then costs a segment about one more block
/// read, not [`HEDGE_AFTER`] or its whole transfer. (Measured from the first arrival instead, it
/// fired on blocks only queued behind other segments' on a busy link, and reads thrashed.) At
/// least 100 ms: on a loaded machine a healthy local server's read can take tens of milliseconds
/// more than its peers', and a read left behind is one whose corruption nobody then reports.
const HEDGE_BEHIND_OTHERS: std::time::Duration = std::time::Duration::from_millis(100);

/// A share that passed validation.
struct ValidShare {
    source: Arc<dyn ShareSource>,
    offsets: ShareOffsets,
    block_hashes: Vec<Hash>,
    /// A moving average of this share's read latency, in microseconds.
    latency_us: std::sync::atomic::AtomicU64,
    /// How long a block would take at its holder's known rate, in microseconds
    /// ([`ShareSource::transfer_rate`]); compared with the other shares' only until the share's
    /// first block read has answered.
    expected_block_us: Option<u64>,
    /// Whether a block read of it has answered (its latency is then its own).
    read_once: std::sync::atomic::AtomicBool,
    /// Whether a read of it was ever dropped for being too slow.
    abandoned: std::sync::atomic::AtomicBool,
}

impl ValidShare {
    fn latency(&self) -> u64 {
        self.latency_us.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn record_latency(&self, sample: std::time::Duration) {
        self.read_once.store(true, std::sync::atomic::Ordering::Relaxed);
        let sample = sample.as_micros() as u64;
        let old = self.latency();
        self.latency_us
            .store((old * 3 + sample) / 4, std::sync::atomic::Ordering::Relaxed);
    }

    /// A read of this share was dropped after `elapsed` because others answered first: it is
    /// slower than that by an unknown amount. Latencies alone would soon bring it back among the
    /// fastest (on links busy with several segments every latency grows), and each later segment
    /// would wait for it again; so it is chosen again only when too few others are left.
    fn record_abandoned(&self, elapsed: std::time::Duration) {
        self.latency_us
            .fetch_max(elapsed.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        self.abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn was_abandoned(&self) -> bool {
        self.abandoned.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Picks `needed` shares among the good ones for turn `segnum` (a segment's number). The shares never left behind
/// that answer within a few times the median latency (the first tier; a share not read yet counts
/// as fast) take turns: segment `s` uses `needed` of them in a row from position `s × needed`,
/// cyclically, so a file's segments come from every fast holder found, not from the same k, and
/// the download is bounded by all their links together rather than by k of them (Tahoe always
/// reads the same k). Every share in the tier carries the same load, so their latencies stay
/// comparable and a slow one shows. Segment 0 uses the lowest share numbers, which need no erasure
/// decoding. When the tier has fewer than `needed` shares, the next fastest fill in.
fn pick_for_segment(
    good: &BTreeMap<u16, Arc<ValidShare>>,
    needed: usize,
    segnum: u64,
) -> Vec<Arc<ValidShare>> {
    let mut latencies: Vec<u64> = good
        .values()
        .filter(|s| !s.was_abandoned())
        .map(|s| s.latency())
        .collect();
    latencies.sort_unstable();
    let median = latencies.get(latencies.len() / 2).copied().unwrap_or(0);
    let limit = median.saturating_mul(3).saturating_add(5_000);
    // A share not read yet whose holder's known rate makes a block take far longer than the
    // others' (a 1 Mbit/s uplink among 100 Mbit/s ones) is left out of the first tier, rather than
    // given a segment only to have its block hedged.
    // (Only while such a share remains: once every share has been read, no segment sorts these.)
    let unread_with_rate = |s: &Arc<ValidShare>| {
        s.expected_block_us.is_some() && !s.read_once.load(std::sync::atomic::Ordering::Relaxed)
    };
    let expected_limit = good.values().any(unread_with_rate).then(|| {
        let mut expected: Vec<u64> = good.values().filter_map(|s| s.expected_block_us).collect();
        expected.sort_unstable();
        expected[expected.len() / 2]
            .saturating_mul(4)
            .saturating_add(5_000)
    });
    let known_slow = |s: &Arc<ValidShare>| {
        unread_with_rate(s)
            && matches!((s.expected_block_us, expected_limit), (Some(e), Some(limit)) if e > limit)
    };
    let first_tier = |s: &Arc<ValidShare>| s.latency() <= limit && !s.was_abandoned() && !known_slow(s);
    let tier: Vec<&Arc<ValidShare>> = good.values().filter(|s| first_tier(s)).collect();
    let mut chosen: Vec<Arc<ValidShare>> = if tier.len() > needed {
        let start = (segnum as usize).wrapping_mul(needed) % tier.len();
        (0..needed)
            .map(|i| Arc::clone(tier[(start + i) % tier.len()]))
            .collect()
    } else {
        tier.into_iter().cloned().collect()
    };
    if chosen.len() < needed {
        let mut slower: Vec<&Arc<ValidShare>> = good.values().filter(|s| !first_tier(s)).collect();
        slower.sort_by_key(|s| (s.was_abandoned(), s.latency()));
        chosen.extend(slower.into_iter().take(needed - chosen.len()).cloned());
    }
    chosen
}

#[derive(Default)]
struct ShareSet {
    /// Good shares by share number.
    good: BTreeMap<u16, Arc<ValidShare>>,
    /// Sources not tried yet.
    untried: VecDeque<Arc<dyn ShareSource>>,
    /// Sources still being located (servers that had not answered when reading began), taken
    /// when the others are not enough.
    late: Option<LateSources>,
    bad: Vec<BadShare>,
    /// Validations of further holders in flight (by concurrent segment reads).
    validating: usize,
    /// Whether a long read has validated the holders left untried at opening
    /// ([`ChkReader::widen`]).
    widened: bool,
}

impl ShareSet {
    /// Records a batch's validation: good shares join the good ones, bad ones are remembered, and
    /// the unanswered go back to the front of the untried. Returns the file's facts when a share
    /// established them (only a batch validated before they were known does).
    fn record(&mut self, (good, bad, unanswered): BatchOutcome) -> Option<FileInfo> {
        for source in unanswered.into_iter().rev() {
            self.untried.push_front(source);
        }
        let mut found = None;
        for (valid, file_info) in good {
            if found.is_none() {
                found = file_info;
            }
            self.good
                .entry(valid.source.shnum())
                .or_insert_with(|| Arc::new(valid));
        }
        self.bad.extend(bad);
        found
    }
}

/// Sources that servers slower to answer than the others will name: see
/// [`ChkReader::open_with_late`].
pub type LateSources = futures::future::Shared<BoxFuture<'static, Vec<Arc<dyn ShareSource>>>>;

/// Waits for `set`'s late sources (if any, and not taken meanwhile by another task) and adds them
/// to the untried ones. Returns whether there were any.
async fn take_late(shares: &Mutex<ShareSet>) -> bool {
    let late = shares
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .late
        .clone();
    let Some(late) = late else { return false };
    let found = late.await;
    let mut set = shares.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if set.late.take().is_some() {
        set.untried.extend(found);
    }
    true
}

/// The verified facts about a file, established from its first good share.
struct FileInfo {
    geometry: ChkGeometry,
    crypttext_segment_hashes: Vec<Hash>,
    share_root_hash: Hash,
}

/// Reads a CHK file from its shares.
pub struct ChkReader {
    cap: ChkCap,
    info: Arc<FileInfo>,
    codec: Arc<Codec>,
    shares: Mutex<ShareSet>,
}

impl fmt::Debug for ChkReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChkReader")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

/// The most bytes a share's trailer read asks for beyond the UEB length prefix: real UEBs are
/// 305–332 bytes; a longer one is fetched with a second read.
const UEB_READ_GUESS: u64 = 1024;

/// Segments a range read keeps in flight at least, whatever the cores: fetching them is network
/// pipelining (a 50 ms round trip at 100 Mbit/s per link wants about 2 MiB in flight over k
/// links), decoding them takes the rayon pool.
const MIN_SEGMENTS_IN_FLIGHT: usize = 8;

/// Below this round trip to every holder of the shares a read uses, the network needs no
/// segments in flight beyond the decoding threads' ([`segments_in_flight`]).
const NEAR: std::time::Duration = std::time::Duration::from_millis(10);

/// Segments a range read keeps in flight: enough for the network ([`MIN_SEGMENTS_IN_FLIGHT`],
/// unless every holder is `near`) and for the decoding threads (2 × threads), at most 32
/// (segments are up to 1 MiB by default: this bounds a reader's memory). On this machine's
/// devgrid (1 ms round trips, two cores) four in flight read as fast as eight (128 MiB, two runs
/// each: `tessera get` 262–282 MiB/s against 244–247, SFTP 162–170 against 158–168), and the
/// gateway's peak during a download was 6–14 MiB lower (`tessera get` 70 against 76–79 MiB, SFTP
/// 77–78 against 88–93).
fn segments_in_flight(near: bool) -> usize {
    let floor = if near { 2 } else { MIN_SEGMENTS_IN_FLIGHT };
    (2 * rayon::current_num_threads()).clamp(floor, 32)
}

/// A segment's place in a read.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// The first: from the lowest shares, alone.
    Lead,
    /// One of those behind it; `widen` when they are enough for validating more holders to pay
    /// ([`WIDEN_AFTER`]).
    Behind { widen: bool },
}

/// Segments behind a read's first from which its reader validates every holder
/// ([`ChkReader::widen`]): a range of a few segments gains nothing from more links.
const WIDEN_AFTER: u64 = 4;

impl Place {
    fn behind(rest: &std::ops::Range<u64>) -> Place {
        Place::Behind {
            widen: rest.end - rest.start >= WIDEN_AFTER,
        }
    }
}

/// Splits a range's segments into the first, fetched alone so that the first byte does not share
/// the links with the segments after it, and the rest, pipelined once it has arrived.
fn first_alone(segments: std::ops::Range<u64>) -> (Option<u64>, std::ops::Range<u64>) {
    if segments.is_empty() {
        (None, segments)
    } else {
        (Some(segments.start), segments.start + 1..segments.end)
    }
}

impl ChkReader {
    /// Validates shares from `sources` until k distinct good ones are found.
    pub async fn open(cap: ChkCap, sources: Vec<Arc<dyn ShareSource>>) -> Result<ChkReader, DownloadError> {
        Self::open_with_late(cap, sources, None, 0).await
    }

    /// As [`ChkReader::open`], with more sources to come from `late` (servers still answering
    /// where the shares are), used when `sources` are not enough. The first `prefetched` of
    /// `sources` have their validation reads on the way already: when there are at least k of
    /// them, the first round validates only those (up to 2k), since any other would cost opening
    /// the file a further round trip.
    pub async fn open_with_late(
        cap: ChkCap,
        sources: Vec<Arc<dyn ShareSource>>,
        late: Option<LateSources>,
        prefetched: usize,
    ) -> Result<ChkReader, DownloadError> {
        let shares = Mutex::new(ShareSet {
            untried: sources.into(),
            late,
            ..Default::default()
        });
        let needed = cap.needed;
        let mut info: Option<Arc<FileInfo>> = None;
        loop {
            let Some((batch, missing)) = ({
                let mut set = shares.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                (set.good.len() < needed as usize).then(|| {
                    let missing = needed as usize - set.good.len();
                    // The first round validates up to 2k distinct shares at once, so that the
                    // reader can prefer the fastest k; later rounds only make up for shares that
                    // failed.
                    let want = if set.good.is_empty() && set.bad.is_empty() {
                        if prefetched >= missing {
                            prefetched.min(2 * missing)
                        } else {
                            2 * missing
                        }
                    } else {
                        missing
                    };
                    (take_untried(&mut set, want), missing)
                })
            }) else {
                break;
            };
            if batch.is_empty() {
                if take_late(&shares).await {
                    continue;
                }
                break;
            }
            let outcome = validate_batch(&cap, batch, info.as_deref(), missing, HEDGE_AFTER).await;
            let found = shares
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .record(outcome);
            if info.is_none() {
                info = found.map(Arc::new);
            }
        }
        let set = shares
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(info) = info.filter(|_| set.good.len() >= needed as usize) else {
            return Err(not_enough(&set, needed));
        };
        let codec =
            Codec::new(cap.needed as usize, cap.total as usize).map_err(|_| not_enough(&set, needed))?;
        Ok(ChkReader {
            cap,
            info,
            codec: Arc::new(codec),
            shares: Mutex::new(set),
        })
    }

    /// The plaintext size.
    pub fn size(&self) -> u64 {
        self.cap.size
    }

    /// The file's segment geometry.
    pub fn geometry(&self) -> ChkGeometry {
        self.info.geometry
    }

    /// The shares being read (for `/status`): each share's description (number and server).
    pub fn share_holders(&self) -> Vec<String> {
        self.lock()
            .good
            .values()
            .map(|share| share.source.describe())
            .collect()
    }

    /// The shares found bad so far, with the reason for each.
    pub fn bad_shares(&self) -> Vec<String> {
        self.lock().bad.iter().map(ToString::to_string).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ShareSet> {
        self.shares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The segments covering `offset .. offset + len` (clamped to the file), and the clamped end.
    fn plan_range(&self, offset: u64, len: u64) -> Result<(std::ops::Range<u64>, u64), DownloadError> {
        let size = self.size();
        if offset > size || (offset == size && len > 0 && size > 0) {
            return Err(DownloadError::RangeNotSatisfiable { offset, size });
        }
        let end = offset.saturating_add(len).min(size);
        Ok((self.info.geometry.segments_for_range(offset, end - offset), end))
    }

    /// Reads one segment and cuts it to the part inside `offset .. end`. A range's first segment
    /// (`lead`) is read from the lowest shares, whose blocks the opening guessed and asked for
    /// already; the others take turns ([`pick_for_segment`]).
    async fn read_segment_part(
        &self,
        segnum: u64,
        offset: u64,
        end: u64,
        place: Place,
    ) -> Result<Vec<u8>, DownloadError> {
        let mut plaintext = match place {
            Place::Lead => self.read_segment_from(segnum, 0, false).await?,
            Place::Behind { widen } => self.read_segment_from(segnum, segnum, widen).await?,
        };
        let seg_start = segnum * self.info.geometry.segment_size;
        let from = offset.saturating_sub(seg_start) as usize;
        let to = (end - seg_start).min(plaintext.len() as u64) as usize;
        plaintext.truncate(to);
        if from > 0 {
            plaintext.drain(..from);
        }
        Ok(plaintext)
    }

    /// Reads plaintext bytes `offset .. offset + len` (clamped to the file), as a stream of chunks
    /// (one per segment). Only the segments covering the range are fetched: the first alone (for
    /// the time to first byte), then up to [`segments_in_flight`] at a time.
    pub fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<impl Stream<Item = Result<Vec<u8>, DownloadError>> + '_, DownloadError> {
        let (segments, end) = self.plan_range(offset, len)?;
        let (first, rest) = first_alone(segments);
        let in_flight = segments_in_flight(self.holders_near());
        let behind = Place::behind(&rest);
        Ok(Box::pin(
            stream::iter(first)
                .then(move |segnum| self.read_segment_part(segnum, offset, end, Place::Lead))
                .chain(
                    stream::iter(rest)
                        .map(move |segnum| self.read_segment_part(segnum, offset, end, behind))
                        .buffered(in_flight),
                ),
        ))
    }

    /// Like [`ChkReader::read_range`], for a shared reader: the stream owns its handle, so it can be
    /// returned from a request handler.
    pub fn stream_range(
        self: Arc<Self>,
        offset: u64,
        len: u64,
    ) -> Result<impl Stream<Item = Result<Vec<u8>, DownloadError>> + Send + 'static, DownloadError> {
        let (segments, end) = self.plan_range(offset, len)?;
        let (first, rest) = first_alone(segments);
        let in_flight = segments_in_flight(self.holders_near());
        let behind = Place::behind(&rest);
        let head = Arc::clone(&self);
        Ok(Box::pin(
            stream::iter(first)
                .then(move |segnum| {
                    let reader = Arc::clone(&head);
                    async move { reader.read_segment_part(segnum, offset, end, Place::Lead).await }
                })
                .chain(
                    stream::iter(rest)
                        .map(move |segnum| {
                            let reader = Arc::clone(&self);
                            async move { reader.read_segment_part(segnum, offset, end, behind).await }
                        })
                        .buffered(in_flight),
                ),
        ))
    }

    /// Whether every good share's holder is known to answer within [`NEAR`].
    fn holders_near(&self) -> bool {
        let shares = self.lock();
        !shares.good.is_empty()
            && shares
                .good
                .values()
                .all(|share| share.source.round_trip().is_some_and(|rtt| rtt < NEAR))
    }

    /// Reads a range into one buffer.
    pub async fn read_to_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>, DownloadError> {
        let chunks: Vec<Vec<u8>> = self.read_range(offset, len)?.try_collect().await?;
        Ok(chunks.concat())
    }

    /// Fetches, verifies, decodes and decrypts one segment.
    pub async fn read_segment(&self, segnum: u64) -> Result<Vec<u8>, DownloadError> {
        self.read_segment_from(segnum, segnum, false).await
    }

    /// Reads segment `segnum` from the shares whose turn `turn` is ([`pick_for_segment`]; turn 0
    /// is the lowest). With `widen`, the holders not validated yet are validated meanwhile
    /// ([`ChkReader::widen`]).
    async fn read_segment_from(&self, segnum: u64, turn: u64, widen: bool) -> Result<Vec<u8>, DownloadError> {
        let needed = self.cap.needed as usize;
        let mut widen = widen;
        loop {
            let chosen = self.choose_shares(needed, turn).await?;
            let spares = self.spares(&chosen);
            let ((mut blocks, mut failed), ()) = futures::join!(
                self.fetch_blocks(segnum, chosen, spares),
                self.widen(std::mem::take(&mut widen))
            );
            if blocks.len() < needed {
                // Every good share was asked and too few answered: drop the failed ones and let
                // `choose_shares` validate other holders (or fail with the reasons).
                for (share, problem) in failed {
                    self.forget(&share, problem);
                }
                continue;
            }
            // The decoder takes the blocks in share-number order.
            blocks.sort_by_key(|(share, _)| share.source.shnum());
            let info = Arc::clone(&self.info);
            let codec = Arc::clone(&self.codec);
            let key = self.cap.key;
            let (done, result) = futures::channel::oneshot::channel();
            rayon::spawn(move || {
                let _ = done.send(decode_segment(&info, &codec, key, segnum, blocks));
            });
            let (outcome, corrupt) = result.await.expect("invariant: the decode job always answers");
            failed.extend(
                corrupt
                    .into_iter()
                    .map(|share| (share, ShareProblem::CorruptBlock { segment: segnum })),
            );
            if failed.is_empty() {
                return outcome.expect("invariant: no failed share means the segment decoded");
            }
            for (share, problem) in failed.drain(..) {
                advise_if_corrupt(share.source.as_ref(), &problem).await;
                self.forget(&share, problem);
            }
        }
    }

    /// Moves a share that failed out of the good ones (once: another task may have done it).
    fn forget(&self, share: &Arc<ValidShare>, problem: ShareProblem) {
        let mut set = self.lock();
        let shnum = share.source.shnum();
        if set
            .good
            .get(&shnum)
            .is_some_and(|current| Arc::ptr_eq(current, share))
        {
            set.good.remove(&shnum);
            set.bad.push(bad_share(share.source.as_ref(), problem));
        }
    }

    /// The good shares not in `chosen`, fastest first: where a hedged read goes.
    fn spares(&self, chosen: &[Arc<ValidShare>]) -> Vec<Arc<ValidShare>> {
        let set = self.lock();
        let mut spares: Vec<Arc<ValidShare>> = set
            .good
            .values()
            .filter(|s| !chosen.iter().any(|c| Arc::ptr_eq(c, s)))
            .cloned()
            .collect();
        spares.sort_by_key(|s| std::cmp::Reverse(s.latency()));
        spares
    }

    /// Reads segment `segnum`'s block from each of `chosen` until k blocks have arrived. A read that
    /// fails, or is still unanswered after the hedge delay (a few times the slowest chosen share's
    /// usual latency, at least [`HEDGE_AFTER`]), is covered by a read from a spare share (the
    /// fastest first), so one hung server costs a fraction of a second, not its request timeout.
    /// Reads still running when k blocks are in are dropped; a share that was that slow gets its
    /// elapsed time as a latency sample, so later segments prefer others.
    async fn fetch_blocks(
        &self,
        segnum: u64,
        chosen: Vec<Arc<ValidShare>>,
        mut spares: Vec<Arc<ValidShare>>,
    ) -> (
        Vec<(Arc<ValidShare>, Vec<u8>)>,
        Vec<(Arc<ValidShare>, ShareProblem)>,
    ) {
        use futures::FutureExt;
        let needed = chosen.len();
        let geometry = self.info.geometry;
        let block_len = geometry.block_len(segnum);
        let read = |share: Arc<ValidShare>| {
            let offset = share.offsets.data + segnum * geometry.block_size();
            async move {
                let started = std::time::Instant::now();
                let result = share.source.read(offset, block_len).await;
                share.record_latency(started.elapsed());
                (share, result)
            }
        };
        let slowest = chosen.iter().map(|s| s.latency()).max().unwrap_or(0);
        let hedge_after = HEDGE_AFTER.max(std::time::Duration::from_micros(slowest.saturating_mul(4)));
        let started = std::time::Instant::now();
        let mut asked: Vec<Arc<ValidShare>> = chosen.clone();
        let mut pending: stream::FuturesUnordered<_> = chosen.into_iter().map(read).collect();
        let mut blocks = Vec::with_capacity(needed);
        let mut failed = Vec::new();
        let mut hedge = futures_timer::Delay::new(hedge_after).fuse();
        // Set when all blocks but one are in: the last read is then measured against them.
        let mut behind: futures::future::Fuse<futures_timer::Delay> = futures::future::Fuse::terminated();
        while blocks.len() < needed {
            if pending.is_empty() {
                match spares.pop() {
                    Some(spare) => {
                        asked.push(Arc::clone(&spare));
                        pending.push(read(spare));
                        continue;
                    }
                    None => break,
                }
            }
            // `None`: a timer fired, and the reads still out are covered by reads of spares.
            let answer = futures::select! {
                done = pending.select_next_some() => Some(done),
                () = hedge => None,
                // The others of this segment answered long ago.
                () = behind => None,
            };
            match answer {
                Some((share, result)) => {
                    match result {
                        Ok(bytes) if bytes.len() as u64 == block_len => {
                            blocks.push((share, bytes));
                            if blocks.len() + 1 == needed {
                                let elapsed = started.elapsed();
                                behind = futures_timer::Delay::new(elapsed.max(HEDGE_BEHIND_OTHERS)).fuse();
                            }
                        }
                        Ok(_) => failed.push((share, ShareProblem::Truncated)),
                        Err(e) => failed.push((share, ShareProblem::Unreadable(e))),
                    }
                    if blocks.len() + pending.len() < needed
                        && let Some(spare) = spares.pop()
                    {
                        asked.push(Arc::clone(&spare));
                        pending.push(read(spare));
                    }
                }
                None => {
                    // Cover every read still outstanding beyond what the blocks in hand need.
                    let short = needed - blocks.len();
                    for _ in 0..short.min(pending.len()) {
                        let Some(spare) = spares.pop() else { break };
                        tracing::debug!(segnum, spare = %spare.source.describe(), "hedging a slow block read");
                        asked.push(Arc::clone(&spare));
                        pending.push(read(spare));
                    }
                    hedge = futures_timer::Delay::new(hedge_after).fuse();
                }
            }
        }
        drop(pending);
        // Shares whose reads were abandoned: remember how slow they were.
        for share in &asked {
            let answered = blocks.iter().any(|(s, _)| Arc::ptr_eq(s, share))
                || failed.iter().any(|(s, _)| Arc::ptr_eq(s, share));
            if !answered {
                share.record_abandoned(started.elapsed());
            }
        }
        (blocks, failed)
    }

    /// Validates, once per reader, the holders that opening it did not (it validates up to 2k), so
    /// that a long read's segments take turns among every fast holder rather than at most 2k: one
    /// of them turning slow, or left behind by a hedge, then costs a smaller share of the links.
    /// As for opening, holders that have not answered within the grace after the first good one
    /// stay untried (a hung server holds nothing up).
    async fn widen(&self, wanted: bool) {
        if !wanted {
            return;
        }
        let batch = {
            let mut set = self.lock();
            if set.widened {
                return;
            }
            set.widened = true;
            let batch = take_untried(&mut set, usize::MAX);
            if batch.is_empty() {
                return;
            }
            set.validating += 1;
            batch
        };
        let in_flight = Validating(&self.shares);
        // The segment beside it waits for this: a holder slower than the first good one by as
        // long again (at least HEDGE_BEHIND_OTHERS) stays untried, not HEDGE_AFTER.
        let outcome = validate_batch(&self.cap, batch, Some(&self.info), 1, HEDGE_BEHIND_OTHERS).await;
        self.lock().record(outcome);
        drop(in_flight);
    }

    /// Picks k good shares whose turn `turn` is ([`pick_for_segment`]), and validates more sources
    /// when fewer than k good ones remain.
    async fn choose_shares(&self, needed: usize, turn: u64) -> Result<Vec<Arc<ValidShare>>, DownloadError> {
        loop {
            let batch = {
                let mut set = self.lock();
                if set.good.len() >= needed {
                    return Ok(pick_for_segment(&set.good, needed, turn));
                }
                let missing = needed - set.good.len();
                // Every other holder at once (a hedge: some of them may hang too); the first
                // `missing` good ones are enough, and the slow ones stay untried.
                let batch = take_untried(&mut set, usize::MAX);
                if batch.is_empty() && set.validating == 0 && set.late.is_none() {
                    return Err(not_enough(&set, self.cap.needed));
                }
                if !batch.is_empty() {
                    set.validating += 1;
                }
                (batch, missing)
            };
            let (batch, missing) = batch;
            if batch.is_empty() {
                if take_late(&self.shares).await {
                    continue;
                }
                // Another segment's task is validating the remaining holders: wait for its outcome.
                futures_timer::Delay::new(std::time::Duration::from_millis(20)).await;
                continue;
            }
            let in_flight = Validating(&self.shares);
            let outcome = validate_batch(&self.cap, batch, Some(&self.info), missing, HEDGE_AFTER).await;
            self.lock().record(outcome);
            // Only now (the outcome recorded) may a waiting task conclude there is nothing left.
            drop(in_flight);
        }
    }
}

type Validated = (ValidShare, Option<FileInfo>);

/// What validating a batch found: good shares, bad ones, and sources that did not answer in time.
type BatchOutcome = (Vec<Validated>, Vec<BadShare>, Vec<Arc<dyn ShareSource>>);

/// Counts one validation in flight in [`ShareSet::validating`] until dropped (also when the read
/// that started it is abandoned).
struct Validating<'a>(&'a Mutex<ShareSet>);

impl Drop for Validating<'_> {
    fn drop(&mut self) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.validating -= 1;
    }
}

/// Validates a batch of sources concurrently. Shares that fail are returned as bad ones, after a
/// corruption advisory when their bytes are wrong. Once `enough` shares are good, the others get a
/// grace period (as long again as that took, at least `grace_floor`: [`HEDGE_AFTER`] where
/// opening or a segment waits for them) and are then given back
/// unanswered, so that a hung server does not hold up opening the file. (A shorter least grace,
/// 100 ms, left shares unvalidated on a loaded machine, and a corrupt one among them then went
/// unreported; opening no longer waits on a share outside the guesses anyway when k guessed ones
/// were found: see [`ChkReader::open_with_late`].)
async fn validate_batch(
    cap: &ChkCap,
    batch: Vec<Arc<dyn ShareSource>>,
    known: Option<&FileInfo>,
    enough: usize,
    grace_floor: std::time::Duration,
) -> BatchOutcome {
    use futures::FutureExt;
    let started = std::time::Instant::now();
    let mut waiting: Vec<Arc<dyn ShareSource>> = batch.clone();
    let mut pending: stream::FuturesUnordered<_> = batch
        .into_iter()
        .map(|source| async move {
            let outcome = validate_share(cap, Arc::clone(&source), known).await;
            (source, outcome)
        })
        .collect();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let mut grace = futures::future::Fuse::terminated();
    loop {
        futures::select! {
            done = pending.next() => {
                let Some((source, outcome)) = done else { break };
                waiting.retain(|w| !Arc::ptr_eq(w, &source));
                match outcome {
                    Ok(validated) => good.push(validated),
                    Err(problem) => {
                        advise_if_corrupt(source.as_ref(), &problem).await;
                        bad.push(bad_share(source.as_ref(), problem));
                    }
                }
                if good.len() >= enough && grace.is_terminated() && !pending.is_empty() {
                    grace = futures_timer::Delay::new(grace_floor.max(started.elapsed())).fuse();
                }
            }
            () = grace => break,
        }
    }
    drop(pending);
    (good, bad, waiting)
}

/// Sends a corruption advisory for problems that mean the stored bytes are wrong (not for a share
/// that merely could not be read).
async fn advise_if_corrupt(source: &dyn ShareSource, problem: &ShareProblem) {
    if !matches!(problem, ShareProblem::Unreadable(_)) {
        source.advise_corrupt(problem.to_string()).await;
    }
}

fn bad_share(source: &dyn ShareSource, problem: ShareProblem) -> BadShare {
    BadShare {
        shnum: source.shnum(),
        source: source.describe(),
        problem,
    }
}

fn not_enough(set: &ShareSet, needed: u16) -> DownloadError {
    DownloadError::NotEnoughShares {
        needed,
        found: set.good.len() as u16,
        bad: set.bad.iter().map(ToString::to_string).collect(),
    }
}

/// Takes up to `count` untried sources whose share numbers are not already good or chosen.
fn take_untried(set: &mut ShareSet, count: usize) -> Vec<Arc<dyn ShareSource>> {
    let mut batch: Vec<Arc<dyn ShareSource>> = Vec::new();
    let mut skipped = VecDeque::new();
    while batch.len() < count {
        let Some(source) = set.untried.pop_front() else {
            break;
        };
        let shnum = source.shnum();
        if set.good.contains_key(&shnum) || batch.iter().any(|b| b.shnum() == shnum) {
            skipped.push_back(source);
        } else {
            batch.push(source);
        }
    }
    skipped.extend(set.untried.drain(..));
    set.untried = skipped;
    batch
}

fn hash_at(bytes: &[u8], index: usize) -> Hash {
    bytes[index * 32..index * 32 + 32]
        .try_into()
        .expect("invariant: 32-byte slice")
}

/// The largest hash tree a reader accepts: 1 Mi segments (a 1 TiB file at 1 MiB segments).
const MAX_TREE_BYTES: u64 = (2 * (1 << 20) - 1) * 32;

/// Checks a share header against what the cap already says (k, N, size), before any read it
/// drives: the block data is ceil(size/k) bytes, the three trees have one size of the (2P−1)·32
/// form and at most [`MAX_TREE_BYTES`], and the share-hash chain has N's entry count. A hostile
/// header therefore cannot make the reader ask for (or overflow into) arbitrary amounts.
fn check_offsets_against_cap(offsets: &ShareOffsets, cap: &ChkCap) -> Result<(), ShareProblem> {
    let data_size = cap.size.div_ceil(cap.needed as u64);
    let tree = offsets
        .crypttext_hash_tree
        .checked_sub(offsets.plaintext_hash_tree);
    let chain_entries = hashtree::needed_hashes(cap.total as usize, 0).len() as u64 + 1;
    let consistent = offsets.data.checked_add(data_size) == Some(offsets.plaintext_hash_tree)
        && tree.is_some_and(|t| t <= MAX_TREE_BYTES && t % 32 == 0 && (t / 32 + 1).is_power_of_two())
        && tree.and_then(|t| offsets.crypttext_hash_tree.checked_add(t)) == Some(offsets.block_hashes)
        && tree.and_then(|t| offsets.block_hashes.checked_add(t)) == Some(offsets.share_hashes)
        && offsets.share_hashes.checked_add(chain_entries * 34) == Some(offsets.uri_extension);
    if consistent {
        Ok(())
    } else {
        Err(ShareProblem::LayoutMismatch)
    }
}

/// Reads and checks one share's header, UEB and hash trees. When `known` is `None` this is the first
/// share, and the verified file facts are returned as well.
async fn validate_share(
    cap: &ChkCap,
    source: Arc<dyn ShareSource>,
    known: Option<&FileInfo>,
) -> Result<(ValidShare, Option<FileInfo>), ShareProblem> {
    let shnum = source.shnum();
    if shnum >= cap.total {
        return Err(ShareProblem::LayoutMismatch);
    }
    let started = std::time::Instant::now();
    let header = source
        .read(HEADER_READ.0, HEADER_READ.1)
        .await
        .map_err(ShareProblem::Unreadable)?;
    let offsets = ShareOffsets::parse(&header)?;
    check_offsets_against_cap(&offsets, cap)?;
    let ueb_len_size = offsets.ueb_length_size();
    let [_, (trailer_start, want)] = validation_reads(&offsets);
    let mut trailer = source
        .read(trailer_start, want)
        .await
        .map_err(ShareProblem::Unreadable)?;
    let ueb_at = (offsets.uri_extension - trailer_start) as usize;
    let len_bytes = trailer
        .get(ueb_at..ueb_at + ueb_len_size as usize)
        .ok_or(ShareProblem::Truncated)?;
    let ueb_len = if ueb_len_size == 4 {
        u32::from_be_bytes(len_bytes.try_into().expect("invariant: 4 bytes")) as u64
    } else {
        u64::from_be_bytes(len_bytes.try_into().expect("invariant: 8 bytes"))
    };
    if ueb_len > 1 << 20 {
        return Err(ShareProblem::UebMismatch);
    }
    let ueb_start = ueb_at + ueb_len_size as usize;
    let ueb_end = ueb_start + ueb_len as usize;
    if trailer.len() < ueb_end {
        let more = source
            .read(
                trailer_start + trailer.len() as u64,
                (ueb_end - trailer.len()) as u64,
            )
            .await
            .map_err(ShareProblem::Unreadable)?;
        trailer.extend_from_slice(&more);
    }
    let ueb_bytes = trailer.get(ueb_start..ueb_end).ok_or(ShareProblem::Truncated)?;
    if uri_extension_hash(ueb_bytes) != cap.ueb_hash {
        return Err(ShareProblem::UebMismatch);
    }
    let ueb = UriExtension::parse(ueb_bytes)?;
    if ueb.needed_shares != cap.needed || ueb.total_shares != cap.total || ueb.size != cap.size {
        return Err(ShareProblem::Ueb(UebError::BadField("needed_shares")));
    }
    let geometry =
        ChkGeometry::from_ueb(&ueb).ok_or(ShareProblem::Ueb(UebError::BadField("segment_size")))?;
    // Everything but the informational block and data sizes must be where the geometry puts it
    // (in the layout version the share uses: v2 is valid for any size).
    let expected = geometry.offsets_for_version(offsets.version);
    let comparable = |o: &ShareOffsets| {
        (
            o.data,
            o.plaintext_hash_tree,
            o.crypttext_hash_tree,
            o.block_hashes,
            o.share_hashes,
            o.uri_extension,
        )
    };
    if comparable(&offsets) != comparable(&expected) {
        return Err(ShareProblem::LayoutMismatch);
    }
    let segments = geometry.num_segments as usize;
    let tree_nodes = hashtree::node_count(segments);
    let node_slice = |from: u64| -> Vec<Hash> {
        let at = (from - trailer_start) as usize;
        (0..tree_nodes).map(|i| hash_at(&trailer[at..], i)).collect()
    };
    let crypttext_nodes = node_slice(offsets.crypttext_hash_tree);
    let block_nodes = node_slice(offsets.block_hashes);
    let block_hashes =
        hashtree::verify_full_tree(segments, &block_nodes, &block_nodes[0]).map_err(|source| {
            ShareProblem::HashTree {
                what: "block hash tree",
                source,
            }
        })?;

    // The share hash chain proves this share's block-tree root against the UEB's share root.
    let chain_at = (offsets.share_hashes - trailer_start) as usize;
    let chain_len = (offsets.uri_extension - offsets.share_hashes) as usize;
    let chain: BTreeMap<usize, Hash> = trailer[chain_at..chain_at + chain_len]
        .chunks_exact(34)
        .map(|entry| {
            (
                u16::from_be_bytes([entry[0], entry[1]]) as usize,
                hash_at(&entry[2..], 0),
            )
        })
        .collect();
    let mut expected_nodes = hashtree::needed_hashes(cap.total as usize, shnum as usize);
    expected_nodes.push(hashtree::leaf_node_index(cap.total as usize, shnum as usize));
    if chain.len() != expected_nodes.len() || expected_nodes.iter().any(|i| !chain.contains_key(i)) {
        let odd = chain
            .keys()
            .copied()
            .find(|i| !expected_nodes.contains(i))
            .unwrap_or(0);
        return Err(ShareProblem::HashTree {
            what: "share hash chain",
            source: HashTreeError::NodeMismatch(odd),
        });
    }
    hashtree::verify_leaf(
        cap.total as usize,
        shnum as usize,
        &block_nodes[0],
        &chain,
        &ueb.share_root_hash,
    )
    .map_err(|source| ShareProblem::HashTree {
        what: "share hash chain",
        source,
    })?;

    let file_info = match known {
        Some(_) => None,
        None => {
            let crypttext_segment_hashes =
                hashtree::verify_full_tree(segments, &crypttext_nodes, &ueb.crypttext_root_hash).map_err(
                    |source| ShareProblem::HashTree {
                        what: "ciphertext hash tree",
                        source,
                    },
                )?;
            Some(FileInfo {
                geometry,
                crypttext_segment_hashes,
                share_root_hash: ueb.share_root_hash,
            })
        }
    };
    if known.is_some_and(|known| known.share_root_hash != ueb.share_root_hash || known.geometry != geometry) {
        return Err(ShareProblem::UebMismatch);
    }
    // A block's time at the holder's known rate (a rate measured over whole requests, their
    // round trips included).
    let expected_block_us = source
        .transfer_rate()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .map(|rate| (geometry.block_size() as f64 / rate * 1e6).min(u64::MAX as f64) as u64);
    let valid = ValidShare {
        source: Arc::clone(&source),
        offsets,
        block_hashes,
        expected_block_us,
        read_once: std::sync::atomic::AtomicBool::new(false),
        latency_us: std::sync::atomic::AtomicU64::new(started.elapsed().as_micros() as u64),
        abandoned: std::sync::atomic::AtomicBool::new(false),
    };
    Ok((valid, file_info))
}

/// The header read that validating a share starts with (a v2 header's length, which covers v1's).
pub const HEADER_READ: (u64, u64) = (0, V2_HEADER_LEN);

/// The reads, as (offset, length), that validating a share laid out as `offsets` makes: its header
/// and its trailer (the hash trees, the share hash chain and the UEB, whose length is guessed).
/// A downloader that can guess a share's layout from its cap may start them before it knows the
/// share exists, and then serve the validation's reads from them.
pub fn validation_reads(offsets: &ShareOffsets) -> [(u64, u64); 2] {
    let trailer_start = offsets.crypttext_hash_tree;
    let want = offsets.uri_extension - trailer_start + offsets.ueb_length_size() + UEB_READ_GUESS;
    [HEADER_READ, (trailer_start, want)]
}

/// Verifies a whole share, as a checker's `verify=true` does: its header, UEB, hash trees and
/// share hash chain (as a download does) and then every block against the block hash tree. Reads
/// the share a segment's block at a time. A share that proves corrupt gets an advisory.
pub async fn verify_share(cap: &ChkCap, source: Arc<dyn ShareSource>) -> Result<(), BadShare> {
    let outcome = async {
        let (valid, info) = validate_share(cap, Arc::clone(&source), None).await?;
        let geometry = info.map(|info| info.geometry).ok_or(ShareProblem::UebMismatch)?;
        for segnum in 0..geometry.num_segments {
            let offset = valid.offsets.data + segnum * geometry.block_size();
            let block_len = geometry.block_len(segnum);
            let block = source
                .read(offset, block_len)
                .await
                .map_err(ShareProblem::Unreadable)?;
            if block.len() as u64 != block_len {
                return Err(ShareProblem::Truncated);
            }
            if block_hash(&block) != valid.block_hashes[segnum as usize] {
                return Err(ShareProblem::CorruptBlock { segment: segnum });
            }
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(()),
        Err(problem) => {
            advise_if_corrupt(source.as_ref(), &problem).await;
            Err(bad_share(source.as_ref(), problem))
        }
    }
}

type DecodeOutcome = (Option<Result<Vec<u8>, DownloadError>>, Vec<Arc<ValidShare>>);

/// Verifies k fetched blocks, erasure-decodes, checks the segment hash and decrypts. Returns the
/// shares whose blocks were corrupt (and no plaintext) if any were.
fn decode_segment(
    info: &FileInfo,
    codec: &Codec,
    key: [u8; 16],
    segnum: u64,
    blocks: Vec<(Arc<ValidShare>, Vec<u8>)>,
) -> DecodeOutcome {
    let corrupt: Vec<Arc<ValidShare>> = blocks
        .iter()
        .filter(|(share, block)| block_hash(block) != share.block_hashes[segnum as usize])
        .map(|(share, _)| Arc::clone(share))
        .collect();
    if !corrupt.is_empty() || blocks.len() < codec.needed() {
        return (None, corrupt);
    }
    let geometry = &info.geometry;
    let (start, len) = geometry.segment_span(segnum);
    let k = codec.needed();
    let in_order = blocks
        .iter()
        .enumerate()
        .all(|(i, (share, _))| share.source.shnum() as usize == i);
    let mut segment = if in_order {
        let mut out = Vec::with_capacity(geometry.padded_segment_len(segnum) as usize);
        for (_, block) in &blocks {
            out.extend_from_slice(block);
        }
        out
    } else {
        let refs: Vec<(usize, &[u8])> = blocks
            .iter()
            .map(|(share, block)| (share.source.shnum() as usize, block.as_slice()))
            .collect();
        match codec.decode(&refs) {
            Ok(pieces) => pieces.concat(),
            Err(_) => {
                return (
                    Some(Err(DownloadError::CiphertextMismatch { segment: segnum })),
                    vec![],
                );
            }
        }
    };
    debug_assert_eq!(segment.len(), k * geometry.block_len(segnum) as usize);
    segment.truncate(len as usize);
    if crypttext_segment_hash(&segment) != info.crypttext_segment_hashes[segnum as usize] {
        return (
            Some(Err(DownloadError::CiphertextMismatch { segment: segnum })),
            vec![],
        );
    }
    AesCtr::at(&key, start).apply(&mut segment);
    (Some(Ok(segment)), vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(shnum: u16, latency_ms: u64, expected_block_ms: Option<u64>) -> Arc<ValidShare> {
        Arc::new(ValidShare {
            source: Arc::new(MemoryShare {
                shnum,
                data: Arc::new(Vec::new()),
            }),
            offsets: ShareOffsets {
                version: 1,
                block_size: 0,
                data_size: 0,
                data: 0,
                plaintext_hash_tree: 0,
                crypttext_hash_tree: 0,
                block_hashes: 0,
                share_hashes: 0,
                uri_extension: 0,
            },
            block_hashes: Vec::new(),
            latency_us: std::sync::atomic::AtomicU64::new(latency_ms * 1000),
            expected_block_us: expected_block_ms.map(|ms| ms * 1000),
            read_once: std::sync::atomic::AtomicBool::new(false),
            abandoned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A share whose holder's known rate makes its block take far longer than the others' takes no
    /// turn while enough others remain, until a block read of it has answered; shares of holders
    /// with no known rate, or one like the others', take turns as before.
    #[test]
    fn a_holder_known_to_be_slow_takes_no_turn_until_read() {
        let mut good = BTreeMap::new();
        for shnum in 0..5u16 {
            good.insert(shnum, share(shnum, 50, Some(30)));
        }
        good.insert(5, share(5, 50, None));
        good.insert(6, share(6, 55, Some(2700)));
        let picked = |good: &BTreeMap<u16, Arc<ValidShare>>| -> std::collections::BTreeSet<u16> {
            (0..20)
                .flat_map(|segnum| pick_for_segment(good, 3, segnum))
                .map(|s| s.source.shnum())
                .collect()
        };
        assert_eq!(
            picked(&good),
            (0..6).collect(),
            "all but the slow holder take turns"
        );

        // Too few others: the slow one fills in.
        let few: BTreeMap<u16, Arc<ValidShare>> = good
            .iter()
            .filter(|(n, _)| [0, 1, 6].contains(*n))
            .map(|(n, s)| (*n, Arc::clone(s)))
            .collect();
        assert_eq!(picked(&few), [0, 1, 6].into());

        // Once read, its own latency decides: as fast as the others now.
        good[&6].record_latency(std::time::Duration::from_millis(50));
        assert!(picked(&good).contains(&6));
    }
}
