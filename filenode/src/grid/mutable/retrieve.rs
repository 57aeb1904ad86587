//! Retrieve: reading one version of a mutable file, every block verified against its share's block
//! tree and every tree against the signed root, with bad shares replaced and reads started over
//! when a concurrent writer replaces the version (Tahoe's `mutable/retrieve.py`).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use storage::api::ShareKind;
use storage::{ShareNum, StorageError, StorageIndex};
use tracing::{debug, warn};

use super::servermap::{LocatedShare, MapMode, ServerMap, VersionId, update_servermap_reported};
use super::{MutableError, read_mutable};
use crate::cap::{MutableCap, MutableFormat};
use crate::codec::Codec;
use crate::crypto::aes_ctr_at;
use crate::grid::{ServerEntry, with_timeout};
use crate::hashes::{Hash, block_hash, ssk_readkey_data_hash};
use crate::hashtree;
use crate::mutable::encode::{self, MutableGeometry, checkstring_len};
use crate::mutable::layout::{ShareHeader, parse_chain, parse_hashes};
use crate::operations::Operations;

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

/// Opens the newest recoverable version of `cap`. When a concurrent write gets in the way (the
/// version chosen is replaced while it is validated, or the shares are caught half-way between
/// two versions so none is recoverable yet), starts over from a fresh servermap after a short
/// jittered pause, for [`READ_BUDGET`] (at least [`READ_ATTEMPTS`] times): a reader racing a
/// writer sees the old version or the new one, never an error that only means "a write was
/// happening". A map that may be stale (servers did not answer in time) is retried
/// [`READ_ATTEMPTS`] times.
/// Each servermap update is reported to `operations`, when given (see
/// [`update_servermap_reported`]).
pub async fn open_latest(
    servers: &[ServerEntry],
    cap: &MutableCap,
    happy: usize,
    operations: Option<&Arc<Operations>>,
) -> Result<(ServerMap, MutableReader), MutableError> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        let map = update_servermap_reported(servers, cap, operations.map(|ops| (ops, MapMode::Read))).await;
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
    operations: Option<&Arc<Operations>>,
) -> Result<(ServerMap, Vec<u8>), MutableError> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        let (map, reader) = open_latest(servers, cap, happy, operations).await?;
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
    pub(super) geometry: MutableGeometry,
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
                return crate::grid::run_on_rayon(move || {
                    decode_segment(&g, &readkey, segnum, salt, &blocks)
                })
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
    pub(super) async fn all_trees(&self, map: &ServerMap) -> Vec<(LocatedShare, Arc<Vec<Hash>>)> {
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
