//! Mutable files on the grid: the servermap (which servers hold which shares of which versions),
//! retrieve (read a version with full verification, fetching only the segments a range needs) and
//! publish (write a new version with test-and-set writes, so that a concurrent writer is detected
//! instead of silently overwritten).
//!
//! Publishing writes the *primary* share (the first one in ring order) before any other: its
//! test-and-set write is the point where two writers that started from the same version are
//! ordered, so the loser fails there, having written nothing. (Two publishes skip it: a new slot's,
//! which no one else can know, and a small one from the servermap of this client's own last
//! write, which no one else can share; see [`ServerMap::written_here`].) Large MDMF writes go in batches; the
//! first batch replaces the share's checkstring with an in-progress marker (the new seqnum and an
//! all-zero root, which no signature covers), later batches test for that marker, and the last
//! writes the signed header.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::join_all;
use storage::api::{ReadVector, ShareKind, TestVector, TestWriteVectors, WriteEnabler, WriteVector};
use storage::{ShareNum, StorageError, StorageIndex};
use tracing::{debug, warn};

use super::{ClientSecrets, ServerEntry, permuted_servers, with_timeout};
use crate::cap::{MutableCap, MutableFormat};
use crate::codec::Codec;
use crate::crypto::aes_ctr_at;
use crate::hashes::{Hash, block_hash, ssk_readkey_data_hash, ssk_write_enabler_hash};
use crate::hashtree;
use crate::mutable::encode::{self, MutableGeometry, checkstring_len};
use crate::mutable::keys::MutableKey;
use crate::mutable::layout::{MutableShareError, ShareHeader, parse_chain, parse_hashes};

/// How much of each MDMF share a servermap query reads: the whole fixed region.
const PREFIX_READ: u64 = 4096;

/// How much of each SDMF share a servermap query reads: the whole share of any SDMF file or
/// directory up to about 700 kB (k = 3), in one request. One request reads one version, so such a
/// share is decoded from what the servermap read, with no second read that a concurrent writer
/// could overtake (readers of a busy shared directory never start over), and listing a directory
/// costs no round trip after the servermap's.
const SDMF_PREFIX_READ: u64 = 256 * 1024;

/// How many servers, first in the file's ring order (where its shares are placed, share 0 first),
/// a servermap reads SDMF shares whole from: k (3 by default) and one spare. The others' fixed
/// regions are enough to know their versions; reading every share whole cost a busy directory's
/// listers three times the bytes (and the machine's CPU, on TLS) for nothing.
const SDMF_WHOLE_READS: usize = 4;

/// The servers, first in a slot's ring order, whose guessed share (share r on the r-th) a
/// servermap query reads beside the listing: every share of a file of up to 16 shares placed
/// by a publish that found its servers up. A wrong guess costs a small read that finds nothing.
const GUESSED_POSITIONS: usize = 16;

/// The most a servermap query reads to find a share's key and signature.
const PREFIX_LIMIT: u64 = 64 * 1024;

/// Segments per write batch of a large MDMF publish (4 MiB of plaintext at k = 3).
const SEGMENTS_PER_BATCH: u64 = 32;

/// Writes of up to this many bytes go to each share in one test-and-set request, so every share
/// holds the old version or the new one whatever fails. Larger MDMF writes are batched behind the
/// in-progress marker: a failure in the middle leaves the touched shares unreadable until the next
/// successful write (reported as an error, never as success). 32 MiB keeps a write's encoded
/// shares (N/k times its size) comfortably in memory.
static ATOMIC_WRITE_LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(32 << 20);

fn atomic_write_limit() -> u64 {
    ATOMIC_WRITE_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Lowers the size up to which writes are sent in one request (tests use it to exercise the
/// batched path with small files).
#[doc(hidden)]
pub fn set_atomic_write_limit(bytes: u64) {
    ATOMIC_WRITE_LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// Why a mutable operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MutableError {
    /// Fewer than k good shares of any version.
    #[error("the file cannot be read: no version has enough good shares ({0})")]
    Unrecoverable(String),
    /// No shares at all on any server that answered.
    #[error("no shares of this mutable file were found ({0} servers answered)")]
    NotFound(usize),
    /// Another writer replaced the version being read before it could be read whole. Nothing of
    /// it was wrong; reading again from a fresh servermap finds the new version.
    #[error("the file changed while it was being read (another client wrote a new version); read it again")]
    VersionChanged,
    /// Too few servers answered to be sure which version is the latest (one that a writer was
    /// told is written may be on the servers that did not answer).
    #[error("the latest version of the file cannot be known: {0}")]
    Unavailable(String),
    /// Another writer changed the file while we were writing.
    #[error(
        "uncoordinated write: another client changed this mutable file at the same time; the other \
         write won (re-read the file and try again)"
    )]
    UncoordinatedWrite,
    /// Too few servers accepted the new version.
    #[error("only {written} shares of the new version could be written (at least {needed} needed): {detail}")]
    NotEnoughServers {
        /// Distinct shares written.
        written: usize,
        /// k.
        needed: usize,
        /// What went wrong.
        detail: String,
    },
    /// The new version reached too few servers for every reader to be sure to find it.
    #[error(
        "the new version reached only {reached} servers ({required} needed so that every reader \
         finds it): {detail}"
    )]
    TooFewServers {
        /// Distinct servers holding a share of the new version.
        reached: usize,
        /// `happy`, or every server queried when fewer.
        required: usize,
        /// What went wrong.
        detail: String,
    },
    /// The cap cannot do this (read-only or verify cap).
    #[error("this cap is read-only")]
    ReadOnly,
    /// The share's encrypted private key does not belong to the write cap.
    #[error("the file's signing key does not match the write cap")]
    BadPrivateKey,
    /// SDMF files cannot be partially updated.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A write at an offset too far past the end, or past what a file can hold.
    #[error("{0}")]
    BadOffset(String),
    /// A share failed verification in a way that leaves no alternative.
    #[error("share verification failed: {0}")]
    Share(#[from] MutableShareError),
}

/// One share found by a servermap query.
#[derive(Debug, Clone)]
pub struct LocatedShare {
    /// The server that holds it.
    pub server: ServerEntry,
    /// Share number.
    pub shnum: ShareNum,
    /// The first bytes of the share (at least its checkstring, usually its whole fixed region).
    pub prefix: Arc<Vec<u8>>,
    /// The header, if it parsed and its signature verified against the cap.
    pub header: Option<ShareHeader>,
}

impl LocatedShare {
    /// The bytes a test-and-set write must find to replace this share: its checkstring as seen.
    pub fn checkstring(&self) -> Vec<u8> {
        let len = match self.prefix.first() {
            Some(0) => checkstring_len(MutableFormat::Sdmf),
            _ => checkstring_len(MutableFormat::Mdmf),
        };
        self.prefix[..len.min(self.prefix.len())].to_vec()
    }
}

/// A version: (seqnum, root hash).
pub type VersionId = (u64, Hash);

/// What a servermap query found.
#[derive(Debug, Clone, Default)]
pub struct ServerMap {
    /// Every share found, in ring order of its server.
    pub shares: Vec<LocatedShare>,
    /// The servers that answered, in ring order.
    pub responders: Vec<ServerEntry>,
    /// Servers that failed, with the error.
    pub failures: Vec<(String, String)>,
    /// How many of those did not answer in time (alive, as far as anyone knows, and perhaps
    /// holding the newest version), as opposed to failing at once (down, or refusing).
    pub timed_out: usize,
    /// Made without asking anyone ([`ServerMap::for_new_slot`]): the slot of a key made for it,
    /// which no server can hold yet.
    pub fresh: bool,
    /// Made by this client's own last publish of the slot ([`Published::as_servermap`]), which
    /// met no other writer: the next single-request publish writes every share at once, each
    /// still tested against the checkstring this map expects, with no primary first. A writer who
    /// got in between fails those tests; the publish then reports an uncoordinated write, and the
    /// retry starts from a servermap read from the servers, which puts the primary first again.
    /// (Two clients can race this way only when one of them read the other's version, so a
    /// directory with one writer costs one round trip per change, and a contended one loses at
    /// most one attempt to it.)
    pub written_here: bool,
}

impl ServerMap {
    /// The map of a slot whose signing key was just made (from the key pool: random, never given
    /// out before), so no server holds a share of it and there is nothing to ask: every server
    /// counts as a responder, in the slot's ring order. Its publish writes all N shares at once,
    /// each tested for absence, with no primary first (no other writer can know the slot), which
    /// saves a mkdir the servermap's round trip and the primary's.
    pub fn for_new_slot(servers: &[ServerEntry], storage_index: StorageIndex) -> ServerMap {
        ServerMap {
            responders: permuted_servers(&storage_index.0, servers)
                .into_iter()
                .cloned()
                .collect(),
            fresh: true,
            ..ServerMap::default()
        }
    }

    /// The highest seqnum any verified share carries (0 when there are none).
    pub fn highest_seqnum(&self) -> u64 {
        self.shares
            .iter()
            .filter_map(|s| s.header.as_ref().map(|h| h.seqnum))
            .max()
            .unwrap_or(0)
    }

    /// The seqnum of a new version: one more than any share claims (verified or not, so that a
    /// half-written version is superseded too).
    pub fn next_seqnum(&self) -> u64 {
        let verified = self.highest_seqnum();
        // An interrupted batched write leaves our in-progress marker (its new seqnum and a zero
        // root, unsigned): supersede it too, but trust no other unsigned number.
        let marker = self
            .shares
            .iter()
            .filter(|s| {
                s.header.is_none()
                    && s.prefix
                        .get(9..41)
                        .is_some_and(|root| root.iter().all(|b| *b == 0))
            })
            .filter_map(|s| {
                s.prefix
                    .get(1..9)
                    .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
            })
            .filter(|seqnum| *seqnum <= verified.saturating_add(1))
            .max()
            .unwrap_or(0);
        verified.max(marker).saturating_add(1)
    }

    /// Verified versions with their shares, highest first.
    pub fn versions(&self) -> Vec<(VersionId, Vec<&LocatedShare>)> {
        let mut versions: BTreeMap<VersionId, Vec<&LocatedShare>> = BTreeMap::new();
        for share in &self.shares {
            if let Some(header) = &share.header {
                versions.entry(header.version()).or_default().push(share);
            }
        }
        versions.into_iter().rev().collect()
    }

    /// The highest version with at least k distinct shares. Of two recoverable versions with the
    /// same sequence number (two writers that both began from the same version, when one's
    /// test-and-set primary did not answer), the one on more shares: an acknowledged write is on
    /// `happy` servers, so the other can only be the loser's leftovers on the servers the winner
    /// could not reach. (Tahoe takes the higher root hash, which picks the loser half the time.)
    pub fn best_recoverable(&self) -> Option<(VersionId, Vec<&LocatedShare>)> {
        let distinct =
            |shares: &[&LocatedShare]| shares.iter().map(|s| s.shnum).collect::<BTreeSet<_>>().len();
        let recoverable: Vec<(VersionId, Vec<&LocatedShare>)> = self
            .versions()
            .into_iter()
            .filter(|(_, shares)| {
                let needed = shares[0]
                    .header
                    .as_ref()
                    .map_or(usize::MAX, |h| usize::from(h.needed));
                distinct(shares) >= needed
            })
            .collect();
        let top = recoverable.first()?.0.0;
        recoverable
            .into_iter()
            .take_while(|(version, _)| version.0 == top)
            .max_by_key(|(version, shares)| (distinct(shares), version.1))
    }

    /// The newest version seen when it cannot be read (too few of its shares were found): a write
    /// in progress, or one that stopped half-way.
    pub fn newer_unreadable(&self) -> Option<VersionId> {
        let newest = self.versions().first()?.0;
        let readable = self.best_recoverable().map(|(version, _)| version);
        (readable.is_none_or(|r| r.0 < newest.0)).then_some(newest)
    }
}

async fn read_mutable(
    server: &ServerEntry,
    storage_index: StorageIndex,
    shnum: ShareNum,
    offset: u64,
    len: u64,
) -> Result<bytes::Bytes, StorageError> {
    server
        .timed(
            super::QUICK_DEADLINE,
            len.min(MAX_READ_ESTIMATE),
            server
                .client
                .read_share(ShareKind::Mutable, storage_index, shnum, offset, len),
        )
        .await
}

/// The most bytes a read is expected to move when it asks "to the end" (`u64::MAX`): for its
/// deadline only.
const MAX_READ_ESTIMATE: u64 = 64 << 20;

/// Asks every server which shares of `cap`'s slot it holds and reads each share's fixed region;
/// headers are checked against the cap's fingerprint and signature.
pub async fn update_servermap(servers: &[ServerEntry], cap: &MutableCap) -> ServerMap {
    let storage_index = cap.storage_index();
    let ordered = permuted_servers(&storage_index.0, servers);
    let answers = join_all(ordered.iter().enumerate().map(|(position, server)| async move {
        let first_read = match cap.format {
            MutableFormat::Sdmf if position < SDMF_WHOLE_READS => SDMF_PREFIX_READ,
            MutableFormat::Sdmf | MutableFormat::Mdmf => PREFIX_READ,
        };
        // A publish puts share r on the r-th server of the ring (`plan_targets`): read it in the
        // same round trip as the listing, so a healthy file's servermap costs one round trip.
        let guess = (position < GUESSED_POSITIONS).then_some(position as ShareNum);
        let (listed, guessed) = futures::join!(
            server.timed(
                super::QUICK_DEADLINE,
                0,
                server.client.list_shares(ShareKind::Mutable, storage_index),
            ),
            async {
                match guess {
                    Some(shnum) => read_mutable(server, storage_index, shnum, 0, first_read)
                        .await
                        .ok(),
                    None => None,
                }
            }
        );
        let shnums = listed?;
        let guessed = &guessed;
        let reads = join_all(shnums.iter().map(|&shnum| async move {
            let mut prefix = match guessed {
                Some(bytes) if guess == Some(shnum) => bytes.to_vec(),
                _ => read_mutable(server, storage_index, shnum, 0, first_read)
                    .await?
                    .to_vec(),
            };
            let header = ShareHeader::parse(&prefix).ok();
            if let Some(header) = &header {
                let want = header
                    .offsets
                    .signature_end
                    .max(header.offsets.verification_key_end);
                if want > prefix.len() as u64 && want <= PREFIX_LIMIT {
                    let more = read_mutable(
                        server,
                        storage_index,
                        shnum,
                        prefix.len() as u64,
                        want - prefix.len() as u64,
                    )
                    .await?;
                    prefix.extend_from_slice(&more);
                }
            }
            let header = header.filter(|h| h.verify_signature(&prefix, &cap.fingerprint).is_ok());
            Ok::<_, StorageError>(LocatedShare {
                server: (*server).clone(),
                shnum,
                prefix: Arc::new(prefix),
                header,
            })
        }))
        .await;
        reads.into_iter().collect::<Result<Vec<_>, _>>()
    }))
    .await;
    let mut map = ServerMap::default();
    for (server, answer) in ordered.into_iter().zip(answers) {
        match answer {
            Ok(shares) => {
                map.responders.push(server.clone());
                map.shares.extend(shares);
            }
            Err(e) => {
                debug!(server = %server.name(), error = %e, "servermap query failed");
                if matches!(e, StorageError::Timeout) {
                    map.timed_out += 1;
                }
                map.failures.push((server.name(), e.to_string()));
            }
        }
    }
    map
}

/// How many times a read starts over from a fresh servermap when a concurrent write got in its way,
/// at least; it goes on starting over for up to [`READ_BUDGET`].
const READ_ATTEMPTS: u32 = 8;

/// How long a read keeps starting over while writers keep replacing the version it reads (twenty
/// writers overwriting one file as fast as they can, on a loaded machine, took more than eight
/// attempts).
const READ_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether a read that has made `attempt` attempts since `started` may start over again.
fn may_read_again(attempt: u32, started: std::time::Instant) -> bool {
    attempt < READ_ATTEMPTS || started.elapsed() < READ_BUDGET
}

/// The pause before read attempt `attempt` (1-based): exponential from 20 ms, at most 500 ms, with
/// up to half again of random jitter so that readers racing one writer spread out.
fn read_backoff(attempt: u32) -> std::time::Duration {
    let base = (20u64 << attempt.min(5)).min(500);
    std::time::Duration::from_millis(base + rand::random::<u64>() % (base / 2 + 1))
}

impl ServerMap {
    /// The servers that count for a quorum: those that answered and those that did not answer in
    /// time. A server that failed at once is down (or refusing us): Tahoe reads and writes
    /// without such servers, and so does Tessera (a partition may then hide a newer version,
    /// as in Tahoe). A slow server is another matter: it is up, and may hold the newest version.
    pub fn reachable(&self) -> usize {
        self.responders.len() + self.timed_out
    }

    /// How many servers must answer a servermap query for it to see at least one share of any
    /// version a publish acknowledged: a publish is acknowledged only once its version is on
    /// `happy` of the reachable servers (or on every one, when fewer), so any
    /// `reachable - happy + 1` of them include one that holds it.
    pub fn quorum(&self, happy: usize) -> usize {
        let reachable = self.reachable();
        reachable.saturating_sub(happy.min(reachable)) + 1
    }

    /// Whether a newer version than the one this map reads may exist unseen, so that reading it
    /// (or, worse, writing a change on top of it) could miss an acknowledged write: servers did
    /// not answer in time, and either fewer than [`ServerMap::quorum`] answered or shares of a newer
    /// version were seen but too few to read it (the rest may be on the servers that did not
    /// answer). A map where no server timed out is never stale: a newer version it cannot read
    /// is a write still in progress, not yet acknowledged.
    pub fn may_be_stale(&self, happy: usize) -> bool {
        if self.timed_out == 0 {
            return false;
        }
        if self.responders.len() < self.quorum(happy) {
            return true;
        }
        self.best_recoverable().is_some() && self.newer_unreadable().is_some()
    }

    /// Whether the shares found disagree (more than one checkstring: versions, or a writer's
    /// in-progress marker), which is what a write in progress looks like from outside.
    pub fn write_in_progress(&self) -> bool {
        let checkstrings: BTreeSet<Vec<u8>> = self.shares.iter().map(LocatedShare::checkstring).collect();
        checkstrings.len() > 1
    }
}

/// Opens the newest recoverable version of `cap`. When a concurrent write gets in the way (the
/// version chosen is replaced while it is validated, or the shares are caught half-way between
/// two versions so none is recoverable yet), starts over from a fresh servermap after a short
/// jittered pause, for [`READ_BUDGET`] (at least [`READ_ATTEMPTS`] times): a reader racing a
/// writer sees the old version or the new one, never an error that only means "a write was
/// happening". A map that may be stale (servers did not answer in time) is retried
/// [`READ_ATTEMPTS`] times.
pub async fn open_latest(
    servers: &[ServerEntry],
    cap: &MutableCap,
    happy: usize,
) -> Result<(ServerMap, MutableReader), MutableError> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        let map = update_servermap(servers, cap).await;
        let stale = map.may_be_stale(happy);
        let opened = if stale {
            Err(MutableError::Unavailable(format!(
                "{} of {} servers answered in time{}: a newer version may be on the others",
                map.responders.len(),
                map.reachable(),
                if map.responders.len() < map.quorum(happy) {
                    format!(" (at least {} must)", map.quorum(happy))
                } else {
                    ", and shares of a newer version than the readable one were seen".into()
                }
            )))
        } else {
            MutableReader::open(&map, cap).await
        };
        let error = match opened {
            Ok(reader) => return Ok((map, reader)),
            Err(e @ (MutableError::VersionChanged | MutableError::Unavailable(_))) => e,
            Err(e @ MutableError::Unrecoverable(_)) if map.write_in_progress() => e,
            Err(e) => return Err(e),
        };
        attempt += 1;
        // Servers that did not answer in time get the fixed number of attempts (each costs
        // their deadline); writers in the way get the time budget.
        let again = match error {
            MutableError::Unavailable(_) => attempt < READ_ATTEMPTS,
            _ => may_read_again(attempt, started),
        };
        if !again {
            return Err(error);
        }
        debug!(attempt, error = %error, "mutable read starts over: a write was in progress");
        futures_timer::Delay::new(read_backoff(attempt)).await;
    }
}

/// Reads the whole newest version of `cap` (see [`open_latest`]), starting over when a writer
/// replaces it before every segment is read.
pub async fn read_latest(
    servers: &[ServerEntry],
    cap: &MutableCap,
    happy: usize,
) -> Result<(ServerMap, Vec<u8>), MutableError> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        let (map, reader) = open_latest(servers, cap, happy).await?;
        match reader.read_range(0, u64::MAX).await {
            Ok(contents) => return Ok((map, contents)),
            Err(MutableError::VersionChanged) if may_read_again(attempt + 1, started) => {
                attempt += 1;
                debug!(
                    attempt,
                    "mutable read starts over: the version changed while it was read"
                );
                futures_timer::Delay::new(read_backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One share of the version being read, with its verified block hash tree.
#[derive(Debug, Clone)]
struct ReadShare {
    server: ServerEntry,
    shnum: ShareNum,
    /// This share's own layout (offsets are not signed, so each share is read by its own).
    offsets: crate::mutable::layout::ShareOffsets,
    tree: Arc<Vec<Hash>>,
    /// SDMF: the block, when the whole share was already read.
    block: Option<Arc<Vec<u8>>>,
}

/// Why a share could not be used: the network (try another share, no advisory), a new version
/// written over it since the servermap saw it (no advisory: nothing is wrong with it), or its
/// bytes (a corruption advisory too).
#[derive(Debug)]
enum Problem {
    Network(String),
    Changed(String),
    Corrupt(String),
}

impl From<&str> for Problem {
    fn from(reason: &str) -> Self {
        Problem::Corrupt(reason.to_owned())
    }
}

impl From<String> for Problem {
    fn from(reason: String) -> Self {
        Problem::Corrupt(reason)
    }
}

/// Reads one version of a mutable file: every block is verified against its share's block tree,
/// every tree against the signed root through the share hash chain.
#[derive(Debug)]
pub struct MutableReader {
    cap: MutableCap,
    header: ShareHeader,
    geometry: MutableGeometry,
    readkey: [u8; 16],
    chosen: futures::lock::Mutex<Vec<ReadShare>>,
    spare: futures::lock::Mutex<Vec<LocatedShare>>,
    /// Shares dropped because a newer version replaced them.
    changed: std::sync::atomic::AtomicUsize,
}

impl MutableReader {
    /// Opens the highest recoverable version in `map`.
    pub async fn open(map: &ServerMap, cap: &MutableCap) -> Result<MutableReader, MutableError> {
        let readkey = cap.readkey().ok_or(MutableError::ReadOnly)?;
        let Some((_, shares)) = map.best_recoverable() else {
            if map.shares.is_empty() {
                return Err(MutableError::NotFound(map.responders.len()));
            }
            return Err(MutableError::Unrecoverable(format!(
                "{} shares found, {} with a valid signature, {} servers did not answer",
                map.shares.len(),
                map.shares.iter().filter(|s| s.header.is_some()).count(),
                map.failures.len()
            )));
        };
        let header = shares[0]
            .header
            .clone()
            .expect("invariant: versions hold verified shares");
        let geometry = MutableGeometry {
            format: header.format,
            needed: header.needed,
            total: header.total,
            segment_size: header.segment_size,
            data_length: header.data_length,
        };
        if header.format != cap.format {
            return Err(MutableError::Unrecoverable(
                "the shares are of another format than the cap".into(),
            ));
        }
        // One share per share number, preferring servers that hold fewer shares (spread reads).
        let mut seen = BTreeSet::new();
        let mut candidates: Vec<LocatedShare> = Vec::new();
        for share in &shares {
            if seen.insert(share.shnum) {
                candidates.push((*share).clone());
            }
        }
        let reader = MutableReader {
            cap: *cap,
            header,
            geometry,
            readkey,
            chosen: futures::lock::Mutex::new(Vec::new()),
            spare: futures::lock::Mutex::new(candidates),
            changed: std::sync::atomic::AtomicUsize::new(0),
        };
        reader.fill().await?;
        Ok(reader)
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.header.data_length
    }

    /// The version being read.
    pub fn version(&self) -> VersionId {
        self.header.version()
    }

    /// The version's header.
    pub fn header(&self) -> &ShareHeader {
        &self.header
    }

    /// Validates spare shares until k are chosen. Fails with [`MutableError::VersionChanged`]
    /// when too few are left because shares moved on to a newer version.
    async fn fill(&self) -> Result<(), MutableError> {
        let k = usize::from(self.header.needed);
        let mut chosen = self.chosen.lock().await;
        let mut spare = self.spare.lock().await;
        while chosen.len() < k {
            let want = k - chosen.len();
            if spare.is_empty() {
                if self.changed.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                    return Err(MutableError::VersionChanged);
                }
                return Err(MutableError::Unrecoverable(format!(
                    "only {} of the {k} shares needed verified",
                    chosen.len()
                )));
            }
            let take = want.min(spare.len());
            let batch: Vec<LocatedShare> = spare.drain(..take).collect();
            let results = join_all(batch.into_iter().map(|share| self.validate(share))).await;
            for result in results {
                match result {
                    Ok(share) => chosen.push(share),
                    Err((share, problem)) => {
                        self.dropped(&share.server, share.shnum, &problem, "bad mutable share")
                            .await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Logs why a share was dropped, counts a change of version, and reports corruption.
    async fn dropped(&self, server: &ServerEntry, shnum: ShareNum, problem: &Problem, what: &str) {
        match problem {
            Problem::Changed(reason) => {
                debug!(server = %server.name(), shnum, reason, "{what}: a newer version replaced it");
                self.changed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Problem::Network(reason) => warn!(server = %server.name(), shnum, reason, "{what}"),
            Problem::Corrupt(reason) => {
                warn!(server = %server.name(), shnum, reason, "{what}");
                advise(server, self.cap.storage_index(), shnum, reason).await;
            }
        }
    }

    /// A share failed verification: was it corrupt, or rewritten with a newer version since the
    /// servermap read it? Its checkstring, read again now (one request, so one version), tells:
    /// the version being read only ever gives way to newer ones, so a checkstring other than this
    /// version's means the bytes that failed belonged to another version.
    async fn classify(&self, server: &ServerEntry, shnum: ShareNum, problem: Problem) -> Problem {
        let Problem::Corrupt(reason) = problem else {
            return problem;
        };
        let len = checkstring_len(self.header.format);
        let expected = &self.header.signed_prefix[..len.min(self.header.signed_prefix.len())];
        match read_mutable(server, self.cap.storage_index(), shnum, 0, len as u64).await {
            Ok(now) if now.as_ref() != expected => {
                Problem::Changed(format!("{reason} (the share holds a newer version now)"))
            }
            Ok(_) => Problem::Corrupt(reason),
            Err(e) => Problem::Network(format!("{reason}; then: {e}")),
        }
    }

    async fn validate(&self, share: LocatedShare) -> Result<ReadShare, (LocatedShare, Problem)> {
        let si = self.cap.storage_index();
        let fetch = |start: u64, end: u64| {
            let share = &share;
            async move {
                if let Some(bytes) = share.prefix.get(start as usize..end as usize) {
                    return Ok(bytes.to_vec());
                }
                let bytes = read_mutable(&share.server, si, share.shnum, start, end - start)
                    .await
                    .map_err(|e| Problem::Network(e.to_string()))?;
                if (bytes.len() as u64) < end - start {
                    return Err(Problem::Corrupt("share is truncated".into()));
                }
                Ok(bytes.to_vec())
            }
        };
        let g = self.geometry;
        let result: Result<ReadShare, Problem> = async {
            let header = share.header.as_ref().ok_or("no verified header")?;
            if header.signed_prefix != self.header.signed_prefix {
                return Err("share header differs from its version's".into());
            }
            let o = header.offsets;
            // Sizes follow from the signed geometry: check them before fetching anything.
            let nseg = g.num_segments() as usize;
            let (tree_start, tree_end, data_len) = match g.format {
                MutableFormat::Sdmf => (o.block_hash_tree, o.share_data, o.enc_privkey - o.share_data),
                MutableFormat::Mdmf => (o.block_hash_tree, o.eof, o.block_hash_tree - o.share_data),
            };
            let expected_data = match g.format {
                MutableFormat::Sdmf => g.block_len(0),
                MutableFormat::Mdmf => g.mdmf_tree_offset() - encode::MDMF_SHARE_DATA_OFFSET,
            };
            if tree_end - tree_start != 32 * hashtree::node_count(nseg) as u64
                || data_len != expected_data
                || o.share_hash_chain_end - o.share_hash_chain > 34 * 16
            {
                return Err("share layout does not match its signed geometry".into());
            }
            let chain = parse_chain(&fetch(o.share_hash_chain, o.share_hash_chain_end).await?);
            let tree = parse_hashes(&fetch(tree_start, tree_end).await?);
            if nseg > 0 {
                hashtree::verify_full_tree(nseg, &tree, &tree[0])
                    .map_err(|e| format!("block hash tree: {e}"))?;
            }
            hashtree::verify_leaf(
                usize::from(self.header.total),
                usize::from(share.shnum),
                &tree[0],
                &chain,
                &self.header.root_hash,
            )
            .map_err(|e| format!("share hash chain: {e}"))?;
            let block = match g.format {
                MutableFormat::Sdmf => share
                    .prefix
                    .get(o.share_data as usize..o.enc_privkey as usize)
                    .map(|block| Arc::new(block.to_vec())),
                MutableFormat::Mdmf => None,
            };
            Ok(ReadShare {
                server: share.server.clone(),
                shnum: share.shnum,
                offsets: o,
                tree: Arc::new(tree),
                block,
            })
        }
        .await;
        match result {
            Ok(read) => Ok(read),
            Err(problem) => {
                let problem = self.classify(&share.server, share.shnum, problem).await;
                Err((share, problem))
            }
        }
    }

    /// Reads and verifies one share's salt and block of segment `segnum`.
    async fn read_block(&self, share: &ReadShare, segnum: u64) -> Result<([u8; 16], Vec<u8>), Problem> {
        let o = share.offsets;
        let g = &self.geometry;
        let si = self.cap.storage_index();
        let network = |e: StorageError| Problem::Network(e.to_string());
        let (salt, block, leaf) = match self.header.format {
            MutableFormat::Sdmf => {
                let block = match &share.block {
                    Some(block) => block.to_vec(),
                    None => read_mutable(&share.server, si, share.shnum, o.share_data, g.block_len(0))
                        .await
                        .map_err(network)?
                        .to_vec(),
                };
                let leaf = block_hash(&block);
                (self.header.sdmf_salt, block, leaf)
            }
            MutableFormat::Mdmf => {
                let len = 16 + g.block_len(segnum);
                let start = o.share_data + (g.mdmf_block_offset(segnum) - encode::MDMF_SHARE_DATA_OFFSET);
                let entry = read_mutable(&share.server, si, share.shnum, start, len)
                    .await
                    .map_err(network)?;
                let salt: [u8; 16] = entry
                    .get(..16)
                    .ok_or("share is truncated")?
                    .try_into()
                    .expect("invariant: 16 bytes");
                // The leaf covers salt || block, which is how the entry lies in the share.
                (salt, entry[16..].to_vec(), block_hash(&entry))
            }
        };
        if block.len() as u64 != g.block_len(segnum) {
            return Err(format!("block {segnum} has the wrong length").into());
        }
        let index = hashtree::leaf_node_index(g.num_segments() as usize, segnum as usize);
        if share.tree[index] != leaf {
            return Err(format!("block {segnum} does not match its hash").into());
        }
        Ok((salt, block))
    }

    /// Reads, verifies, decodes and decrypts segment `segnum`, replacing shares that fail.
    pub async fn read_segment(&self, segnum: u64) -> Result<Vec<u8>, MutableError> {
        loop {
            let chosen: Vec<ReadShare> = self.chosen.lock().await.clone();
            let reads = join_all(chosen.iter().map(|share| self.read_block(share, segnum))).await;
            let mut blocks = Vec::new();
            let mut bad = Vec::new();
            let mut salt = [0u8; 16];
            for (share, result) in chosen.iter().zip(reads) {
                match result {
                    Ok((block_salt, block)) => {
                        salt = block_salt;
                        blocks.push((usize::from(share.shnum), block));
                    }
                    Err(problem) => bad.push((share, problem)),
                }
            }
            if bad.is_empty() {
                let (g, readkey) = (self.geometry, self.readkey);
                return super::run_on_rayon(move || decode_segment(&g, &readkey, segnum, salt, &blocks))
                    .await;
            }
            for (share, problem) in bad {
                let problem = self.classify(&share.server, share.shnum, problem).await;
                self.dropped(&share.server, share.shnum, &problem, "mutable block failed")
                    .await;
                self.chosen
                    .lock()
                    .await
                    .retain(|s| !(s.shnum == share.shnum && s.server.server_id == share.server.server_id));
            }
            self.fill().await?;
        }
    }

    /// Reads plaintext bytes `offset..offset+len` (clipped to the file), segment by segment.
    pub async fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, MutableError> {
        let g = self.geometry;
        let end = offset.saturating_add(len).min(g.data_length);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        for segnum in g.segments_for(offset, len) {
            let segment = self.read_segment(segnum).await?;
            let seg_start = segnum * g.segment_size;
            let from = offset.max(seg_start) - seg_start;
            let to = end.min(seg_start + segment.len() as u64) - seg_start;
            out.extend_from_slice(&segment[from as usize..to as usize]);
        }
        Ok(out)
    }

    /// Streams plaintext bytes `offset..offset+len`, a segment at a time, reading ahead by a few
    /// segments.
    pub fn stream_range(
        self: Arc<Self>,
        offset: u64,
        len: u64,
    ) -> impl futures::Stream<Item = Result<Vec<u8>, MutableError>> + Send + 'static {
        use futures::StreamExt;
        let g = self.geometry;
        let end = offset.saturating_add(len).min(g.data_length);
        futures::stream::iter(g.segments_for(offset, len))
            .map(move |segnum| {
                let reader = Arc::clone(&self);
                async move {
                    let segment = reader.read_segment(segnum).await?;
                    let seg_start = segnum * g.segment_size;
                    let from = offset.max(seg_start) - seg_start;
                    let to = end.min(seg_start + segment.len() as u64) - seg_start;
                    Ok(segment[from as usize..to as usize].to_vec())
                }
            })
            .buffered(4)
    }

    /// Validates every share of this version in `map` and returns its block tree (for partial
    /// updates, which must rewrite every share's tree).
    async fn all_trees(&self, map: &ServerMap) -> Vec<(LocatedShare, Arc<Vec<Hash>>)> {
        let mine: Vec<LocatedShare> = map
            .shares
            .iter()
            .filter(|s| s.header.as_ref().is_some_and(|h| h.version() == self.version()))
            .cloned()
            .collect();
        join_all(mine.into_iter().map(|share| async move {
            let validated = self.validate(share.clone()).await.ok()?;
            Some((share, validated.tree))
        }))
        .await
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Erasure-decodes and decrypts one segment from k verified blocks.
fn decode_segment(
    g: &MutableGeometry,
    readkey: &[u8; 16],
    segnum: u64,
    salt: [u8; 16],
    blocks: &[(usize, Vec<u8>)],
) -> Result<Vec<u8>, MutableError> {
    let codec = Codec::new(usize::from(g.needed), usize::from(g.total))
        .map_err(|_| MutableError::Unrecoverable("bad encoding parameters".into()))?;
    let refs: Vec<(usize, &[u8])> = blocks.iter().map(|(i, b)| (*i, b.as_slice())).collect();
    let mut segment = codec
        .decode(&refs)
        .map_err(|e| MutableError::Unrecoverable(e.to_string()))?
        .concat();
    segment.truncate(g.segment_len(segnum) as usize);
    aes_ctr_at(&ssk_readkey_data_hash(&salt, readkey), 0, &mut segment);
    Ok(segment)
}

async fn advise(server: &ServerEntry, storage_index: StorageIndex, shnum: ShareNum, reason: &str) {
    let _ = with_timeout(
        server.request_timeout,
        server
            .client
            .advise_corrupt_share(ShareKind::Mutable, storage_index, shnum, reason),
    )
    .await;
}

/// The most a write at an offset may leave as a zero-filled gap past the end of a file.
pub const MAX_WRITE_GAP: u64 = 64 << 20;

/// Checks a write of `len` bytes at `offset` into a file of `size` bytes: the write may start at
/// most [`MAX_WRITE_GAP`] past the end, and must not overflow. Returns its (start, end).
pub fn checked_write_range(size: u64, offset: u64, len: u64) -> Result<(u64, u64), MutableError> {
    if offset > size.saturating_add(MAX_WRITE_GAP) {
        return Err(MutableError::BadOffset(format!(
            "offset {offset} is more than {} MiB past the end of the file ({size} bytes)",
            MAX_WRITE_GAP >> 20
        )));
    }
    let end = offset
        .checked_add(len)
        .filter(|end| *end <= 1 << 50)
        .ok_or_else(|| MutableError::BadOffset(format!("a write of {len} bytes at {offset} is too large")))?;
    Ok((offset, end))
}

/// Where the bytes of a new version come from: each call yields the next `min(n, remaining)`
/// plaintext bytes.
pub type ChunkSource =
    Box<dyn FnMut(u64) -> futures::future::BoxFuture<'static, std::io::Result<Vec<u8>>> + Send>;

/// A [`ChunkSource`] over bytes in memory.
pub fn chunks_from_bytes(mut data: Vec<u8>) -> ChunkSource {
    let mut at = 0usize;
    Box::new(move |n| {
        let end = (at + n as usize).min(data.len());
        // Small files are asked for whole: hand the buffer over instead of copying it (what is
        // left afterwards is empty, so later calls yield nothing, as at the end).
        let chunk = if at == 0 && end == data.len() {
            std::mem::take(&mut data)
        } else {
            data[at.min(end)..end].to_vec()
        };
        at = end;
        Box::pin(async move { Ok(chunk) })
    })
}

/// A [`ChunkSource`] over a blocking reader (a spooled upload, a local file); reads run on a
/// thread of their own.
pub fn chunks_from_read<R: std::io::Read + Send + 'static>(reader: R) -> ChunkSource {
    let reader = Arc::new(std::sync::Mutex::new(reader));
    Box::new(move |n| {
        let reader = Arc::clone(&reader);
        Box::pin(super::run_blocking(move || {
            let mut reader = reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut chunk = Vec::with_capacity(n as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut *reader, n), &mut chunk)?;
            Ok(chunk)
        }))
    })
}

/// Where one share of a new version goes, and what its test-and-set write must find there.
#[derive(Debug, Clone)]
struct Target {
    server: ServerEntry,
    shnum: ShareNum,
    /// The checkstring expected now (empty: the share must not exist).
    expected: Vec<u8>,
    state: TargetState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetState {
    Alive,
    Failed,
    LostRace,
}

/// One round of writes: per share number, the write vectors.
#[derive(Debug, Default)]
struct Batch {
    writes: BTreeMap<ShareNum, Vec<WriteVector>>,
}

/// The writes of one publish, batch by batch, to every target.
struct WriteSession<'a> {
    secrets: &'a ClientSecrets,
    storage_index: StorageIndex,
    writekey: [u8; 16],
    targets: Vec<Target>,
    /// Written at offset 0 by the first of several batches; tested by the later ones.
    marker: Vec<u8>,
    batches_sent: usize,
    failures: Vec<String>,
    /// Distinct servers the new version must reach to be acknowledged.
    servers_required: usize,
    /// The servers the servermap counted as reachable.
    queried: usize,
    /// A new slot's publish ([`ServerMap::for_new_slot`]): no primary first, and servers that
    /// fail at once do not count towards the quorum (as a servermap would not have counted them).
    fresh: bool,
    /// The map came from this client's own last publish ([`ServerMap::written_here`]): a
    /// single-batch publish has no primary first.
    written_here: bool,
    /// Servers whose write failed at once (not a timeout): down, or refusing us.
    down: BTreeSet<String>,
    /// Servers that answered (or, for a new slot, are thought up) but hold no target, in ring
    /// order: the first homes for the shares of targets that failed.
    spare: Vec<ServerEntry>,
}

impl WriteSession<'_> {
    fn write_enabler(&self, server: &ServerEntry) -> WriteEnabler {
        WriteEnabler(ssk_write_enabler_hash(&self.writekey, &server.lease_seed))
    }

    async fn write_one(
        &self,
        target: &Target,
        mut writes: Vec<WriteVector>,
        first: bool,
        last: bool,
        new_length: Option<u64>,
    ) -> Result<bool, StorageError> {
        if first && !last {
            writes.insert(
                0,
                WriteVector {
                    offset: 0,
                    data: self.marker.clone(),
                },
            );
        }
        let test = if target.expected.is_empty() {
            TestVector {
                offset: 0,
                size: 1,
                specimen: Vec::new(),
            }
        } else {
            TestVector {
                offset: 0,
                size: target.expected.len() as u64,
                specimen: target.expected.clone(),
            }
        };
        let vectors = BTreeMap::from([(
            target.shnum,
            TestWriteVectors {
                test: vec![test],
                write: writes,
                new_length: if last { new_length } else { None },
            },
        )]);
        let lease = self
            .secrets
            .lease_secrets(&self.storage_index.0, &target.server.lease_seed);
        let bytes: u64 = vectors
            .values()
            .flat_map(|v| v.write.iter())
            .map(|w| w.data.len() as u64)
            .sum();
        let answer = target
            .server
            .timed(
                super::WRITE_DEADLINE,
                bytes,
                target.server.client.read_test_write(
                    self.storage_index,
                    &self.write_enabler(&target.server),
                    &lease,
                    &vectors,
                    &[] as &[ReadVector],
                ),
            )
            .await?;
        Ok(answer.success)
    }

    /// Sends one batch to every live target: the primary (first live target) alone first when
    /// this is the first batch, then all others concurrently.
    async fn send(
        &mut self,
        batch: &Batch,
        last: bool,
        new_length: &BTreeMap<ShareNum, u64>,
        final_checkstring: &[u8],
    ) -> Result<(), MutableError> {
        let first = self.batches_sent == 0;
        self.batches_sent += 1;
        let after = if last {
            final_checkstring.to_vec()
        } else {
            self.marker.clone()
        };
        let live: Vec<usize> = (0..self.targets.len())
            .filter(|&i| self.targets[i].state == TargetState::Alive)
            .collect();
        let mut rest = live.as_slice();
        // A batch that is the whole publish, from the map of this client's own last write, has no
        // primary either: see `ServerMap::written_here`. (Later batches of a large write test for
        // a marker that a concurrent writer of the same seqnum would write too, so a write of
        // several batches always orders writers at its primary.)
        if first && !self.fresh && !(self.written_here && last) {
            // Find a primary that answers: its test decides whether this publish goes ahead.
            while let Some((&i, tail)) = rest.split_first() {
                rest = tail;
                let target = self.targets[i].clone();
                let writes = batch.writes.get(&target.shnum).cloned().unwrap_or_default();
                match self
                    .write_one(
                        &target,
                        writes,
                        true,
                        last,
                        new_length.get(&target.shnum).copied(),
                    )
                    .await
                {
                    Ok(true) => {
                        self.targets[i].expected = after.clone();
                        break;
                    }
                    Ok(false) => return Err(MutableError::UncoordinatedWrite),
                    Err(e) => {
                        self.failed(i, &e);
                    }
                }
            }
        }
        let answers = join_all(rest.iter().map(|&i| {
            let target = &self.targets[i];
            let writes = batch.writes.get(&target.shnum).cloned().unwrap_or_default();
            self.write_one(
                target,
                writes,
                first,
                last,
                new_length.get(&target.shnum).copied(),
            )
        }))
        .await;
        for (&i, answer) in rest.iter().zip(answers) {
            match answer {
                Ok(true) => self.targets[i].expected = after.clone(),
                Ok(false) => self.targets[i].state = TargetState::LostRace,
                Err(e) => self.failed(i, &e),
            }
        }
        Ok(())
    }

    /// Records that target `i`'s write failed with `e`.
    fn failed(&mut self, i: usize, e: &StorageError) {
        let target = &mut self.targets[i];
        self.failures
            .push(format!("{} (share {}): {e}", target.server.name(), target.shnum));
        target.state = TargetState::Failed;
        if !matches!(e, StorageError::Timeout) {
            self.down.insert(target.server.server_id.clone());
        }
    }

    /// After a single-batch publish: shares whose server failed are written elsewhere
    /// (create-only), so the version keeps N shares when servers are down: first each to its own
    /// spare server (one that holds no target) in ring order, all at once; what still has no home
    /// then goes to servers that took a share.
    async fn replace_failed(
        &mut self,
        batch: &Batch,
        new_length: &BTreeMap<ShareNum, u64>,
        checkstring: &[u8],
    ) {
        let written: BTreeSet<ShareNum> = self.alive_shnums();
        let mut lost: Vec<ShareNum> = self
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Failed && !written.contains(&t.shnum))
            .map(|t| t.shnum)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if lost.is_empty() {
            return;
        }
        let spares: Vec<ServerEntry> = self
            .spare
            .iter()
            .filter(|s| !self.down.contains(&s.server_id))
            .take(lost.len())
            .cloned()
            .collect();
        let first_tries: Vec<Target> = lost
            .iter()
            .zip(spares)
            .map(|(&shnum, server)| Target {
                server,
                shnum,
                expected: Vec::new(),
                state: TargetState::Alive,
            })
            .collect();
        let answers = join_all(first_tries.iter().map(|target| {
            let writes = batch.writes.get(&target.shnum).cloned().unwrap_or_default();
            self.write_one(target, writes, true, true, new_length.get(&target.shnum).copied())
        }))
        .await;
        for (target, answer) in first_tries.into_iter().zip(answers) {
            self.spare.retain(|s| s.server_id != target.server.server_id);
            match answer {
                Ok(true) => {
                    lost.retain(|&n| n != target.shnum);
                    self.targets.push(Target {
                        expected: checkstring.to_vec(),
                        ..target
                    });
                }
                Ok(false) => {}
                Err(e) => {
                    if !matches!(e, StorageError::Timeout) {
                        self.down.insert(target.server.server_id.clone());
                    }
                }
            }
        }
        let mut hosts: Vec<ServerEntry> = Vec::new();
        for target in self.targets.iter().filter(|t| t.state == TargetState::Alive) {
            if !hosts.iter().any(|h| h.server_id == target.server.server_id) {
                hosts.push(target.server.clone());
            }
        }
        if hosts.is_empty() {
            return;
        }
        for (i, shnum) in lost.into_iter().enumerate() {
            let host = hosts[i % hosts.len()].clone();
            let target = Target {
                server: host,
                shnum,
                expected: Vec::new(),
                state: TargetState::Alive,
            };
            let writes = batch.writes.get(&shnum).cloned().unwrap_or_default();
            if let Ok(true) = self
                .write_one(&target, writes, true, true, new_length.get(&shnum).copied())
                .await
            {
                self.targets.push(Target {
                    expected: checkstring.to_vec(),
                    ..target
                });
            }
        }
    }

    fn alive_shnums(&self) -> BTreeSet<ShareNum> {
        self.targets
            .iter()
            .filter(|t| t.state == TargetState::Alive)
            .map(|t| t.shnum)
            .collect()
    }

    fn finish(self, needed: usize) -> Result<Vec<(ServerEntry, ShareNum)>, MutableError> {
        if self.targets.iter().any(|t| t.state == TargetState::LostRace) {
            return Err(MutableError::UncoordinatedWrite);
        }
        let written = self.alive_shnums().len();
        if written < needed {
            return Err(MutableError::NotEnoughServers {
                written,
                needed,
                detail: if self.failures.is_empty() {
                    "no storage servers answered".into()
                } else {
                    self.failures.join("; ")
                },
            });
        }
        let reached = self
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Alive)
            .map(|t| t.server.server_id.as_str())
            .collect::<BTreeSet<_>>()
            .len();
        let required = if self.fresh {
            // Servers found down now are what a servermap query would have left out.
            self.servers_required
                .min(self.queried.saturating_sub(self.down.len()))
        } else {
            self.servers_required
        };
        if reached < required {
            return Err(MutableError::TooFewServers {
                reached,
                required,
                detail: self.failures.join("; "),
            });
        }
        Ok(self
            .targets
            .into_iter()
            .filter(|t| t.state == TargetState::Alive)
            .map(|t| (t.server, t.shnum))
            .collect())
    }
}

/// Plans where the N shares of a new version go: every share the servermap found keeps its place
/// (its current checkstring is what the write tests for); share numbers found nowhere go to
/// servers that answered, those without shares first, in ring order.
fn plan_targets(map: &ServerMap, total: u8) -> Vec<Target> {
    let mut targets: Vec<Target> = map
        .shares
        .iter()
        .filter(|s| s.shnum < u16::from(total))
        .map(|s| Target {
            server: s.server.clone(),
            shnum: s.shnum,
            expected: s.checkstring(),
            state: TargetState::Alive,
        })
        .collect();
    let present: BTreeSet<ShareNum> = targets.iter().map(|t| t.shnum).collect();
    let mut hosts: Vec<&ServerEntry> = map
        .responders
        .iter()
        .filter(|r| !map.shares.iter().any(|s| s.server.server_id == r.server_id))
        .collect();
    hosts.extend(
        map.responders
            .iter()
            .filter(|r| map.shares.iter().any(|s| s.server.server_id == r.server_id)),
    );
    if hosts.is_empty() {
        return targets;
    }
    let missing = (0..u16::from(total)).filter(|n| !present.contains(n));
    for (i, shnum) in missing.enumerate() {
        targets.push(Target {
            server: hosts[i % hosts.len()].clone(),
            shnum,
            expected: Vec::new(),
            state: TargetState::Alive,
        });
    }
    // The primary is the first target in ring order.
    let order: Vec<&str> = map.responders.iter().map(|r| r.server_id.as_str()).collect();
    targets.sort_by_key(|t| {
        (
            order
                .iter()
                .position(|id| *id == t.server.server_id)
                .unwrap_or(usize::MAX),
            t.shnum,
        )
    });
    targets
}

/// What a publish wrote.
#[derive(Debug, Clone)]
pub struct Published {
    /// The new version.
    pub version: VersionId,
    /// The new checkstring, now on every written share.
    pub checkstring: Vec<u8>,
    /// Where the shares went.
    pub placed: Vec<(ServerEntry, ShareNum)>,
    /// The new size.
    pub size: u64,
}

impl Published {
    /// A servermap describing exactly what this publish left on the grid, for the next write from
    /// this client (its test-and-set still detects anyone else's write in between).
    pub fn as_servermap(&self, header: ShareHeader) -> ServerMap {
        let mut responders: Vec<ServerEntry> = Vec::new();
        for (server, _) in &self.placed {
            if !responders.iter().any(|r| r.server_id == server.server_id) {
                responders.push(server.clone());
            }
        }
        ServerMap {
            shares: self
                .placed
                .iter()
                .map(|(server, shnum)| LocatedShare {
                    server: server.clone(),
                    shnum: *shnum,
                    prefix: Arc::new(self.checkstring.clone()),
                    header: Some(header.clone()),
                })
                .collect(),
            responders,
            failures: Vec::new(),
            timed_out: 0,
            fresh: false,
            written_here: true,
        }
    }
}

/// The context of a write: who we are and what we write.
#[derive(Debug)]
pub struct WriteContext<'a> {
    /// Lease secrets.
    pub secrets: &'a ClientSecrets,
    /// The write cap.
    pub cap: &'a MutableCap,
    /// Its signing key.
    pub key: &'a MutableKey,
    /// The servers a new version must reach before the write is acknowledged (fewer when fewer
    /// servers were queried): see [`ServerMap::quorum`].
    pub happy: usize,
}

impl WriteContext<'_> {
    fn session(&self, map: &ServerMap, targets: Vec<Target>, marker: Vec<u8>) -> WriteSession<'_> {
        let queried = map.reachable();
        // A file of fewer shares than `happy` can reach no more servers than it has shares.
        let shares = targets.iter().map(|t| t.shnum).collect::<BTreeSet<_>>().len();
        let spare = map
            .responders
            .iter()
            .filter(|r| !targets.iter().any(|t| t.server.server_id == r.server_id))
            .cloned()
            .collect();
        WriteSession {
            servers_required: self.happy.min(queried).min(shares),
            queried,
            fresh: map.fresh,
            written_here: map.written_here,
            down: BTreeSet::new(),
            spare,
            secrets: self.secrets,
            storage_index: self.cap.storage_index(),
            writekey: self
                .cap
                .writekey()
                .expect("invariant: write contexts hold write caps"),
            targets,
            marker,
            batches_sent: 0,
            failures: Vec::new(),
        }
    }
}

fn marker(format: MutableFormat, seqnum: u64) -> Vec<u8> {
    let mut marker = vec![if format == MutableFormat::Sdmf { 0 } else { 1 }];
    marker.extend_from_slice(&seqnum.to_be_bytes());
    marker.extend_from_slice(&[0; 32]);
    marker
}

/// Writes a whole new version of `len` bytes from `source` in `format` with k-of-N encoding,
/// replacing whatever `map` found.
pub async fn publish(
    ctx: &WriteContext<'_>,
    map: &ServerMap,
    format: MutableFormat,
    needed: u8,
    total: u8,
    len: u64,
    mut source: ChunkSource,
) -> Result<(Published, ShareHeader), MutableError> {
    let seqnum = map.next_seqnum();
    let geometry = MutableGeometry::new(format, needed, total, len);
    let targets = plan_targets(map, total);
    let mut session = ctx.session(map, targets, marker(format, seqnum));
    let nseg = geometry.num_segments();
    let readkey = ctx.cap.readkey().expect("invariant: write caps read");
    if format == MutableFormat::Sdmf || len <= atomic_write_limit() {
        let plaintext = source(len)
            .await
            .map_err(|e| MutableError::Unrecoverable(e.to_string()))?;
        let key_der = ctx.key.privkey_der().to_vec();
        let (finished, shares) = super::run_on_rayon(move || {
            let key = MutableKey::from_pkcs8_der(&key_der).expect("invariant: our own key re-parses");
            encode::encode_version(&key, format, needed, total, seqnum, &plaintext)
        })
        .await;
        let mut batch = Batch::default();
        let mut lengths = BTreeMap::new();
        for (shnum, share) in shares.into_iter().enumerate() {
            lengths.insert(shnum as ShareNum, share.len() as u64);
            batch.writes.insert(
                shnum as ShareNum,
                vec![WriteVector {
                    offset: 0,
                    data: share,
                }],
            );
        }
        session
            .send(&batch, true, &lengths, &finished.checkstring)
            .await?;
        session
            .replace_failed(&batch, &lengths, &finished.checkstring)
            .await;
        return finish_publish(session, &batch, finished, usize::from(needed), len);
    }
    // Large MDMF: batches of segments (the next one read and encoded while this one is written),
    // then the signed header and the block trees.
    let codec =
        Arc::new(Codec::new(usize::from(needed), usize::from(total)).expect("invariant: valid k-of-N"));
    let mut leaves: Vec<Vec<Hash>> = vec![Vec::with_capacity(nseg as usize); usize::from(total)];
    let mut prepare = |first: u64| -> futures::future::BoxFuture<
        'static,
        Result<Vec<encode::EncodedSegment>, MutableError>,
    > {
        let count = SEGMENTS_PER_BATCH.min(nseg - first);
        let bytes: u64 = (first..first + count).map(|s| geometry.segment_len(s)).sum();
        let read = source(bytes);
        let codec = Arc::clone(&codec);
        Box::pin(async move {
            let plaintext = read
                .await
                .map_err(|e| MutableError::Unrecoverable(e.to_string()))?;
            if plaintext.len() as u64 != bytes {
                return Err(MutableError::Unrecoverable("the input ended early".into()));
            }
            Ok(
                super::run_on_rayon(move || encode_segments(&geometry, &codec, &readkey, first, &plaintext))
                    .await,
            )
        })
    };
    let mut segnum = 0;
    let mut ready = Some(prepare(0).await);
    while let Some(encoded) = ready.take() {
        let encoded = encoded?;
        let batch = batch_of_segments(&geometry, segnum, &encoded);
        for segment in &encoded {
            for (shnum, leaf) in segment.leaves.iter().enumerate() {
                leaves[shnum].push(*leaf);
            }
        }
        segnum += encoded.len() as u64;
        let next = (segnum < nseg).then(|| prepare(segnum));
        let (sent, prepared) =
            futures::future::join(session.send(&batch, false, &BTreeMap::new(), &[]), async {
                match next {
                    Some(job) => Some(job.await),
                    None => None,
                }
            })
            .await;
        sent?;
        ready = prepared;
    }
    let trees: Vec<Vec<Hash>> = leaves.iter().map(|l| encode::block_tree(l)).collect();
    let finished = encode::VersionBuilder {
        key: ctx.key,
        geometry,
        seqnum,
        sdmf_salt: [0; 16],
    }
    .finish(&trees, None);
    let (batch, lengths) = final_batch(&geometry, &finished, &trees, None);
    session
        .send(&batch, true, &lengths, &finished.checkstring)
        .await?;
    finish_publish(session, &batch, finished, usize::from(needed), len)
}

/// The outcome of a publish whose last batch was `batch`.
fn finish_publish(
    session: WriteSession<'_>,
    batch: &Batch,
    finished: encode::FinishedVersion,
    needed: usize,
    size: u64,
) -> Result<(Published, ShareHeader), MutableError> {
    let header = header_of(batch, &finished)?;
    let placed = session.finish(needed)?;
    Ok((
        Published {
            version: (finished.seqnum, finished.root_hash),
            checkstring: finished.checkstring,
            placed,
            size,
        },
        header,
    ))
}

fn header_of(batch: &Batch, finished: &encode::FinishedVersion) -> Result<ShareHeader, MutableError> {
    let first = batch
        .writes
        .values()
        .flatten()
        .find(|w| w.offset == 0)
        .map(|w| w.data.as_slice())
        .unwrap_or(&finished.headers[0]);
    Ok(ShareHeader::parse(first)?)
}

/// Encodes `plaintext`, the consecutive segments starting at `first`, in parallel.
fn encode_segments(
    g: &MutableGeometry,
    codec: &Codec,
    readkey: &[u8; 16],
    first: u64,
    plaintext: &[u8],
) -> Vec<encode::EncodedSegment> {
    use rayon::prelude::*;
    let count = g
        .segments_for(first * g.segment_size, plaintext.len() as u64)
        .count() as u64;
    (first..first + count)
        .into_par_iter()
        .map(|segnum| {
            let start = ((segnum - first) * g.segment_size) as usize;
            let end = start + g.segment_len(segnum) as usize;
            encode::encode_segment(g, codec, readkey, rand::random(), &plaintext[start..end])
        })
        .collect()
}

/// The writes of consecutive encoded segments: one contiguous write per share.
fn batch_of_segments(g: &MutableGeometry, first: u64, encoded: &[encode::EncodedSegment]) -> Batch {
    let mut batch = Batch::default();
    for shnum in 0..usize::from(g.total) {
        let mut data = Vec::new();
        for segment in encoded {
            data.extend_from_slice(&segment.salt);
            data.extend_from_slice(&segment.blocks[shnum]);
        }
        batch.writes.insert(
            shnum as ShareNum,
            vec![WriteVector {
                offset: g.mdmf_block_offset(first),
                data,
            }],
        );
    }
    batch
}

/// The last batch of an MDMF write: each share's header region and block tree. With
/// `changed_nodes`, only those tree nodes are written (the tree's shape is unchanged).
fn final_batch(
    g: &MutableGeometry,
    finished: &encode::FinishedVersion,
    trees: &[Vec<Hash>],
    changed_nodes: Option<&BTreeSet<usize>>,
) -> (Batch, BTreeMap<ShareNum, u64>) {
    let mut batch = Batch::default();
    let mut lengths = BTreeMap::new();
    let tree_offset = g.mdmf_tree_offset();
    for (shnum, (header, tree)) in finished.headers.iter().zip(trees).enumerate() {
        let mut writes = vec![WriteVector {
            offset: 0,
            data: header.clone(),
        }];
        match changed_nodes {
            None => writes.push(WriteVector {
                offset: tree_offset,
                data: encode::tree_bytes(tree),
            }),
            Some(nodes) => writes.extend(nodes.iter().map(|&i| WriteVector {
                offset: tree_offset + 32 * i as u64,
                data: tree[i].to_vec(),
            })),
        }
        batch.writes.insert(shnum as ShareNum, writes);
        lengths.insert(shnum as ShareNum, tree_offset + g.tree_len());
    }
    (batch, lengths)
}

/// Decrypts the signing key from a share's fixed region and checks it belongs to the write cap.
pub fn private_key_from(share: &LocatedShare, cap: &MutableCap) -> Result<Option<MutableKey>, MutableError> {
    cap.writekey().ok_or(MutableError::ReadOnly)?;
    let Some(header) = &share.header else {
        return Ok(None);
    };
    let o = header.offsets;
    let Some(encrypted) = share
        .prefix
        .get(o.enc_privkey as usize..o.enc_privkey_end as usize)
    else {
        return Ok(None);
    };
    // A damaged key in one share must not stop us: the caller tries the next share.
    Ok(decrypt_private_key(encrypted, cap).ok())
}

/// Decrypts an encrypted private key and checks that it hashes to the cap's write key.
fn decrypt_private_key(encrypted: &[u8], cap: &MutableCap) -> Result<MutableKey, MutableError> {
    let writekey = cap.writekey().ok_or(MutableError::ReadOnly)?;
    let mut der = encrypted.to_vec();
    aes_ctr_at(&writekey, 0, &mut der);
    if crate::hashes::ssk_writekey_hash(&der) != writekey {
        return Err(MutableError::BadPrivateKey);
    }
    MutableKey::from_pkcs8_der(&der).map_err(|_| MutableError::BadPrivateKey)
}

/// Reads the signing key of an existing file: from a share's fixed region when the servermap
/// already read it, else from the end of an SDMF share.
pub async fn fetch_private_key(map: &ServerMap, cap: &MutableCap) -> Result<MutableKey, MutableError> {
    for share in &map.shares {
        if let Some(key) = private_key_from(share, cap)? {
            return Ok(key);
        }
    }
    for share in &map.shares {
        let Some(header) = &share.header else { continue };
        let o = header.offsets;
        if o.enc_privkey_end - o.enc_privkey > 4096 {
            continue;
        }
        let Ok(bytes) = read_mutable(
            &share.server,
            cap.storage_index(),
            share.shnum,
            o.enc_privkey,
            o.enc_privkey_end - o.enc_privkey,
        )
        .await
        else {
            continue;
        };
        if let Ok(key) = decrypt_private_key(&bytes, cap) {
            return Ok(key);
        }
    }
    // The shares moved on since the servermap read them (in a longer or shorter new version the
    // key lies elsewhere) when another writer was at work: a fresh servermap finds it.
    if map.write_in_progress() {
        return Err(MutableError::VersionChanged);
    }
    for share in map.shares.iter().filter(|s| s.header.is_some()) {
        let seen = share.checkstring();
        if let Ok(now) = read_mutable(
            &share.server,
            cap.storage_index(),
            share.shnum,
            0,
            seen.len() as u64,
        )
        .await
            && now.as_ref() != seen.as_slice()
        {
            return Err(MutableError::VersionChanged);
        }
    }
    Err(MutableError::Unrecoverable(
        "no share holds a readable signing key".into(),
    ))
}

/// Writes `data` at `offset` of an MDMF file (growing it, zero-filled, when `offset` is past the
/// end), re-encoding only the segments the write touches and rewriting each share's header and
/// block tree. When some share of the current version cannot be read, the whole file is
/// republished instead (streamed), so the new version still has all N shares.
pub async fn update_mdmf(
    ctx: &WriteContext<'_>,
    map: &ServerMap,
    offset: u64,
    data: Arc<Vec<u8>>,
) -> Result<(Published, ShareHeader), MutableError> {
    let reader = Arc::new(MutableReader::open(map, ctx.cap).await?);
    let h = reader.header().clone();
    if h.format != MutableFormat::Mdmf {
        return Err(MutableError::Unsupported(
            "only MDMF files can be written at an offset",
        ));
    }
    let g0 = reader.geometry;
    let (offset, write_end) = checked_write_range(g0.data_length, offset, data.len() as u64)?;
    let new_len = g0.data_length.max(write_end);
    let g1 = MutableGeometry {
        data_length: new_len,
        ..g0
    };
    let shares = reader.all_trees(map).await;
    let covered: BTreeSet<ShareNum> = shares.iter().map(|(s, _)| s.shnum).collect();
    if covered.len() < usize::from(h.total) {
        debug!(
            have = covered.len(),
            total = h.total,
            "partial update falls back to a full publish"
        );
        let source = merged_source(Arc::clone(&reader), g0.data_length, offset, data);
        return publish(ctx, map, MutableFormat::Mdmf, h.needed, h.total, new_len, source).await;
    }
    let start = offset.min(g0.data_length);
    let affected = g1.segments_for(start, write_end - start);
    let n0 = g0.num_segments() as usize;
    let n1 = g1.num_segments() as usize;
    // Every share's leaves: the old ones, then the affected segments' new ones.
    let mut trees_by_shnum: BTreeMap<ShareNum, Vec<Hash>> = BTreeMap::new();
    for (share, tree) in &shares {
        trees_by_shnum.entry(share.shnum).or_insert_with(|| {
            let first_leaf = hashtree::leaf_node_index(n0, 0);
            let mut leaves: Vec<Hash> = (0..n0).map(|i| tree[first_leaf + i]).collect();
            leaves.resize(n1, [0; 32]);
            leaves
        });
    }
    let seqnum = map.next_seqnum();
    let targets: Vec<Target> = shares
        .iter()
        .map(|(share, _)| Target {
            server: share.server.clone(),
            shnum: share.shnum,
            expected: share.checkstring(),
            state: TargetState::Alive,
        })
        .collect();
    let mut session = ctx.session(map, targets, marker(MutableFormat::Mdmf, seqnum));
    let readkey = ctx.cap.readkey().expect("invariant: write caps read");
    let codec =
        Arc::new(Codec::new(usize::from(h.needed), usize::from(h.total)).expect("invariant: valid k-of-N"));
    let span = (affected.end.min(g1.num_segments()) - affected.start) * g1.segment_size;
    let single = span <= atomic_write_limit();
    let mut pending = Batch::default();
    let mut segnum = affected.start;
    while segnum < affected.end {
        let count = if single {
            affected.end - segnum
        } else {
            SEGMENTS_PER_BATCH.min(affected.end - segnum)
        };
        let seg_start = segnum * g1.segment_size;
        let seg_end = ((segnum + count) * g1.segment_size).min(new_len);
        // The new plaintext of these segments: old bytes, zeros past the old end, the write.
        let mut plaintext = vec![0u8; (seg_end - seg_start) as usize];
        let old_end = g0.data_length.min(seg_end);
        let keep_before = if old_end > seg_start {
            offset.clamp(seg_start, old_end)
        } else {
            seg_start
        };
        if keep_before > seg_start {
            let old = reader.read_range(seg_start, keep_before - seg_start).await?;
            plaintext[..old.len()].copy_from_slice(&old);
        }
        if old_end > write_end.max(seg_start) {
            let from = write_end.max(seg_start);
            let old = reader.read_range(from, old_end - from).await?;
            let at = (from - seg_start) as usize;
            plaintext[at..at + old.len()].copy_from_slice(&old);
        }
        let (a, b) = (offset.max(seg_start), write_end.min(seg_end));
        if a < b {
            plaintext[(a - seg_start) as usize..(b - seg_start) as usize]
                .copy_from_slice(&data[(a - offset) as usize..(b - offset) as usize]);
        }
        let (first, c) = (segnum, Arc::clone(&codec));
        let encoded =
            super::run_on_rayon(move || encode_segments(&g1, &c, &readkey, first, &plaintext)).await;
        for (i, segment) in encoded.iter().enumerate() {
            for (shnum, leaves) in trees_by_shnum.iter_mut() {
                leaves[(first as usize) + i] = segment.leaves[usize::from(*shnum)];
            }
        }
        let batch = batch_of_segments(&g1, first, &encoded);
        if single {
            for (shnum, writes) in batch.writes {
                pending.writes.entry(shnum).or_default().extend(writes);
            }
        } else {
            session.send(&batch, false, &BTreeMap::new(), &[]).await?;
        }
        segnum += count;
    }
    let trees: Vec<Vec<Hash>> = (0..h.total)
        .map(|shnum| encode::block_tree(&trees_by_shnum[&u16::from(shnum)]))
        .collect();
    let same_shape = hashtree::node_count(n0) == hashtree::node_count(n1)
        && g0.mdmf_tree_offset() == g1.mdmf_tree_offset();
    let changed: Option<BTreeSet<usize>> = same_shape.then(|| {
        let mut nodes = BTreeSet::new();
        for leaf in affected.clone() {
            let mut here = hashtree::leaf_node_index(n1, leaf as usize);
            loop {
                nodes.insert(here);
                if here == 0 {
                    break;
                }
                here = (here - 1) / 2;
            }
        }
        nodes
    });
    let finished = encode::VersionBuilder {
        key: ctx.key,
        geometry: g1,
        seqnum,
        sdmf_salt: [0; 16],
    }
    .finish(&trees, None);
    let (mut batch, lengths) = final_batch(&g1, &finished, &trees, changed.as_ref());
    for (shnum, writes) in pending.writes {
        batch.writes.entry(shnum).or_default().extend(writes);
    }
    session
        .send(&batch, true, &lengths, &finished.checkstring)
        .await?;
    finish_publish(session, &batch, finished, usize::from(h.needed), new_len)
}

/// The bytes of the file after writing `data` at `offset`, read from the old version as needed.
fn merged_source(reader: Arc<MutableReader>, old_len: u64, offset: u64, data: Arc<Vec<u8>>) -> ChunkSource {
    let mut at = 0u64;
    let end = old_len.max(offset + data.len() as u64);
    Box::new(move |n| {
        let (from, to) = (at, (at + n).min(end));
        at = to;
        let reader = Arc::clone(&reader);
        let data = Arc::clone(&data);
        Box::pin(async move {
            let mut out = vec![0u8; (to - from) as usize];
            let old_to = to.min(old_len);
            if old_to > from {
                let old = reader
                    .read_range(from, old_to - from)
                    .await
                    .map_err(std::io::Error::other)?;
                out[..old.len()].copy_from_slice(&old);
            }
            let (a, b) = (offset.max(from), (offset + data.len() as u64).min(to));
            if a < b {
                out[(a - from) as usize..(b - from) as usize]
                    .copy_from_slice(&data[(a - offset) as usize..(b - offset) as usize]);
            }
            Ok(out)
        })
    })
}
