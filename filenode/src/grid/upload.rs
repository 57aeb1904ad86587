//! Uploading immutable files: pick servers on the permuted ring, place shares for happiness,
//! allocate buckets, then stream the encoder's output to every server in parallel.
//!
//! The encoder runs on its own thread (its segments on the rayon pool) and hands each block to a
//! channel per server; a writer per server sends the blocks as HTTP writes, up to
//! [`WRITES_IN_FLIGHT`] at a time. The encoder waits while a server has its depth of writes per share
//! queued or in flight (`stragglers::Flow`), so memory stays bounded whatever the file size; a
//! server far behind the others while they alone keep `shares.happy` is cancelled (long-tail
//! cancellation) and the result names it. A server that fails mid-upload loses its shares; the
//! upload still succeeds if the shares that did land keep `shares.happy`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::future::{AbortHandle, Abortable, join_all};
use storage::api::{CorruptShareRemoval, LeaseSecrets, ShareKind, UploadSecret};
use storage::{ShareNum, StorageError, StorageIndex};
use tracing::{debug, warn};

use super::placement::{Candidate, happiness, place_shares};
use super::small_upload::{self, Small};
use super::stragglers::{Admit, Flow, LaneState, PENDING_PER_SHARE, PENDING_PER_SHARE_NEAR};
use super::{
    ClientSecrets, IDLE_CONNECTIONS_KEPT, QUICK_DEADLINE, ServerEntry, WRITE_DEADLINE, permuted_servers,
    run_blocking,
};
use crate::cap::{ChkCap, FileCap, LIT_THRESHOLD, LitCap};
use crate::immutable::{
    ChkEncoder, ChkParams, EncodeError, ShareSink, convergent_key, encode_stream, random_key,
};

/// Concurrent writes per server. Each is a block of a segment (a third of a MiB at 3-of-10), and a
/// write's answer comes a round trip after its last byte: eight keep about 2.8 MB on the way, well
/// past the bandwidth-delay product of a 100 Mbit/s link at 50 ms (625 KB), so the link does not
/// idle while answers travel. With four, writes finished in bunches and the link idled between
/// them: a 16 MiB upload to ten servers at 50 ms took 690–740 ms; with eight, 636–646 ms.
pub const WRITES_IN_FLIGHT: usize = 8;

/// Encoding and placement parameters (`[client] shares.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadParams {
    /// k.
    pub needed: u16,
    /// Minimum servers of happiness.
    pub happy: u16,
    /// N.
    pub total: u16,
    /// Maximum segment size.
    pub max_segment_size: u64,
}

impl Default for UploadParams {
    fn default() -> Self {
        UploadParams {
            needed: 3,
            happy: 7,
            total: 10,
            max_segment_size: crate::immutable::DEFAULT_MAX_SEGMENT_SIZE,
        }
    }
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Not enough servers could take shares.
    #[error(
        "upload needs shares on at least {happy} servers (shares.happy = {happy}) but only {achieved} could be used \
         ({servers} storage servers known){detail}"
    )]
    NotHappy {
        /// The configured happiness.
        happy: u16,
        /// What was achieved.
        achieved: usize,
        /// Servers known to the client.
        servers: usize,
        /// Why servers dropped out.
        detail: String,
    },
    /// Encoding failed (or the parameters are invalid).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Reading the input failed.
    #[error("reading the input failed: {0}")]
    Read(#[source] io::Error),
}

/// What an upload produced.
#[derive(Debug, Clone)]
pub struct UploadResult {
    /// The file's cap (LIT for ≤ 55 bytes, else CHK).
    pub cap: FileCap,
    /// The file's size.
    pub size: u64,
    /// Which servers hold each share (by server name).
    pub placement: BTreeMap<ShareNum, Vec<String>>,
    /// Servers of happiness achieved (0 for LIT).
    pub happiness: usize,
    /// Servers cancelled from the upload for lagging far behind the others (long-tail
    /// cancellation; their shares are not placed, see [`UploadResult::unplaced_shares`]).
    pub stragglers: Vec<String>,
}

impl UploadResult {
    /// Shares that no server holds: a file uploaded without its stragglers' shares is less than
    /// fully healthy (still at least `shares.happy`) until a repair places them.
    pub fn unplaced_shares(&self) -> Vec<ShareNum> {
        match &self.cap {
            FileCap::Chk(cap) => (0..cap.total)
                .filter(|shnum| !self.placement.contains_key(shnum))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// What the caller already knows about shares on the servers, by (server id, share number): a
/// repairer passes what its verification found, so that nothing is read twice and no corrupt share
/// counts as placed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownShares {
    /// Verified good against the file's cap: counted as placed as they are.
    pub good: BTreeSet<(String, ShareNum)>,
    /// Corrupt, and still on their server (it kept them): never counted, and a good copy goes to
    /// another server (a server holds one copy of a share).
    pub corrupt: BTreeSet<(String, ShareNum)>,
}

/// Called with the number of plaintext bytes encoded and sent so far.
pub type UploadProgress = Box<dyn FnMut(u64) + Send>;

struct Write {
    shnum: ShareNum,
    offset: u64,
    data: Bytes,
}

/// The encoder's sink: routes each share's writes to its server's channel, as the flow admits.
struct ChannelSink {
    routes: Vec<Option<usize>>,
    senders: Vec<mpsc::UnboundedSender<Write>>,
    flow: Arc<Flow>,
    /// Writes handed to each lane (or skipped for it) so far, until `first_writes` fires.
    handed: Vec<usize>,
    /// Lanes handed [`IDLE_CONNECTIONS_KEPT`] writes so far.
    lanes_started: usize,
    /// Fires once every lane has been handed [`IDLE_CONNECTIONS_KEPT`] writes (or dropped, when
    /// encoding ends first): a pass's `check` waits for it, so that the writes, not its probes,
    /// take the connections left idle (see [`send_shares`]).
    first_writes: Option<oneshot::Sender<()>>,
}

impl ChannelSink {
    fn handed(&mut self, lane: usize) {
        if self.first_writes.is_none() {
            return;
        }
        self.handed[lane] += 1;
        if self.handed[lane] == IDLE_CONNECTIONS_KEPT {
            self.lanes_started += 1;
        }
        if self.lanes_started == self.handed.len()
            && let Some(fire) = self.first_writes.take()
        {
            let _ = fire.send(());
        }
    }
}

impl ShareSink for ChannelSink {
    fn write(&mut self, shnum: usize, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_block(shnum, offset, Bytes::copy_from_slice(data))
    }

    /// Queues the block itself: the encoder's buffers travel to the connection without a copy.
    fn write_block(&mut self, shnum: usize, offset: u64, data: Bytes) -> io::Result<()> {
        if let Some(Some(lane)) = self.routes.get(shnum) {
            let sender = &self.senders[*lane];
            // A closed channel whose lane is still wanted means the upload itself was dropped (e.g.
            // the client went away): stop encoding.
            let cancelled = || io::Error::other("the upload was cancelled");
            let lane = *lane;
            match self.flow.admit(lane, || sender.is_closed()) {
                Ok(Admit::Send) => {}
                Ok(Admit::Skip) => {
                    self.handed(lane);
                    return Ok(());
                }
                Err(()) => return Err(cancelled()),
            }
            let write = Write {
                shnum: shnum as u16,
                offset,
                data,
            };
            // A lane dropped as a straggler, or abandoned as silent, has let its channel go.
            if sender.unbounded_send(write).is_err()
                && !matches!(self.flow.states()[lane], LaneState::Dropped | LaneState::Failed)
            {
                return Err(cancelled());
            }
            self.handed(lane);
        }
        Ok(())
    }
}

/// One server taking part in an upload.
struct Bucket {
    server: ServerEntry,
    upload: UploadSecret,
    shares: BTreeSet<ShareNum>,
    /// For a bucket not yet allocated: the lease and the share size its writes allocate with
    /// ([`StorageClient::write_share_allocating`](storage::StorageClient::write_share_allocating)).
    allocating: Option<(LeaseSecrets, u64)>,
}

/// An input read once, front to back, as it arrives (a web upload with convergence off streams its
/// body straight into the encoder, with no spool): it can tell its position, and every other seek
/// fails with [`io::ErrorKind::Unsupported`], so an upload that would have to read it again (to
/// re-place the shares of servers that failed mid-upload) keeps what it placed instead.
#[derive(Debug)]
pub struct OnePass<R> {
    inner: R,
    position: u64,
}

impl<R> OnePass<R> {
    /// `inner`, read from its start.
    pub fn new(inner: R) -> Self {
        OnePass { inner, position: 0 }
    }
}

impl<R: Read> Read for OnePass<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R> Seek for OnePass<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Current(0) => Ok(self.position),
            SeekFrom::Start(at) if at == self.position => Ok(at),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a streamed upload cannot be read again",
            )),
        }
    }
}

/// The largest streamed upload ([`crate::grid::Grid::upload_streamed`]) held in memory instead:
/// one whose shares are small enough for the one-request path (which may fall back to the general
/// one and read the input again), with room for the shares' hashes.
pub fn streamed_in_memory_limit(params: &UploadParams) -> u64 {
    small_upload::SMALL_SHARE_LIMIT * u64::from(params.needed) + (64 << 10)
}

/// The encoding parameters of `params`, checked.
fn chk_params(params: &UploadParams) -> Result<ChkParams, UploadError> {
    let chk_params = ChkParams {
        needed: params.needed,
        total: params.total,
        max_segment_size: params.max_segment_size,
    };
    chk_params.validate().map_err(EncodeError::from)?;
    Ok(chk_params)
}

/// Uploads `input` (read from the start; it is read twice when convergence is on).
pub async fn upload<R: Read + Seek + Send + 'static>(
    servers: &[ServerEntry],
    secrets: &ClientSecrets,
    params: &UploadParams,
    input: R,
    progress: Option<UploadProgress>,
) -> Result<UploadResult, UploadError> {
    let chk_params = chk_params(params)?;
    let convergence = secrets.convergence.clone();
    let (input, key, size) = run_blocking(move || -> Result<_, UploadError> {
        let mut input = input;
        let (key, size) = match convergence {
            Some(secret) => convergent_key(&mut input, &secret, &chk_params)?,
            None => (
                random_key(),
                input.seek(SeekFrom::End(0)).map_err(UploadError::Read)?,
            ),
        };
        input.seek(SeekFrom::Start(0)).map_err(UploadError::Read)?;
        Ok((input, key, size))
    })
    .await?;
    upload_with_key(
        servers,
        secrets,
        params,
        input,
        key,
        size,
        progress,
        KnownShares::default(),
    )
    .await
}

/// Uploads `input` (`size` bytes, read from its current position) encrypted with `key`: what
/// [`upload`] does once it has the key, and what a repairer does with the key of the file it
/// repairs (the same key and parameters make the same shares, so shares already on the servers
/// are kept and only the missing ones are written).
///
/// A share already on a server counts as placed only once it is verified against the file's cap
/// (read whole once the encoding has made the cap), unless `known` says it is good: a corrupt
/// copy left by an earlier upload must not make this one succeed with an unreadable file. A share
/// that fails is reported to its server, which may remove it (a Tessera server does when its own
/// check proves the share corrupt), and is placed again like the shares of a server that failed.
/// `input` is rewound only then, or if servers fail mid-upload.
#[allow(
    clippy::too_many_arguments,
    reason = "the upload's inputs, each named at the two call sites"
)]
pub async fn upload_with_key<R: Read + Seek + Send + 'static>(
    servers: &[ServerEntry],
    secrets: &ClientSecrets,
    params: &UploadParams,
    input: R,
    key: [u8; 16],
    size: u64,
    progress: Option<UploadProgress>,
    known: KnownShares,
) -> Result<UploadResult, UploadError> {
    let chk_params = chk_params(params)?;
    if size <= LIT_THRESHOLD {
        let mut data = Vec::with_capacity(size as usize);
        let mut input = input;
        input.read_to_end(&mut data).map_err(UploadError::Read)?;
        return Ok(UploadResult {
            cap: FileCap::Lit(LitCap { data }),
            size,
            placement: BTreeMap::new(),
            happiness: 0,
            stragglers: Vec::new(),
        });
    }
    let encoder = ChkEncoder::new(key, &chk_params, size)?;
    let share_size = encoder.share_size();
    let storage_index = StorageIndex(crate::hashes::storage_index_hash(&key));
    let mut input = input;
    let mut progress = progress;
    if small_upload::eligible(servers, params, share_size, &known) {
        let start = input.stream_position().map_err(UploadError::Read)?;
        match small_upload::upload_small(
            servers,
            secrets,
            params,
            &chk_params,
            input,
            key,
            size,
            &mut progress,
        )
        .await?
        {
            Small::Done(result) => return Ok(result),
            Small::Fallback(mut returned) => {
                returned.seek(SeekFrom::Start(start)).map_err(UploadError::Read)?;
                input = returned;
            }
        }
    }

    // The servers where placement puts shares on a grid that holds nothing of the file: their
    // extra connections open during the allocation round instead of during the first writes.
    for server in permuted_servers(storage_index.as_bytes(), servers)
        .into_iter()
        .take(usize::from(params.total))
    {
        server.client.warm(WRITES_IN_FLIGHT);
    }
    let mut known = known;
    // Where every server that placement would choose can allocate with its first writes, they
    // start at once, while the probes that confirm the choice travel: the allocation's round trip
    // is no longer spent before the first byte. If the probes disagree (shares of the file are
    // already elsewhere on the grid), the pass is called off and the upload starts again,
    // allocating first.
    let mut first_pass = None;
    let mut speculated = None;
    // Whether allocation may allocate share r on the r-th server before its probe answers: not
    // once a guess was found wrong.
    let mut may_guess = true;
    if let Some(guess) = speculative_buckets(servers, secrets, params, storage_index, share_size, &known)
        && rereadable(&mut input).map_err(UploadError::Read)?
    {
        let check = ring_ready(servers, storage_index, params.total);
        let shared = Shared {
            held: BTreeMap::new(),
            happy: params.happy as usize,
            progress: progress.take(),
        };
        let pass = send_shares(
            input,
            size,
            key,
            &chk_params,
            storage_index,
            &guess,
            shared,
            check,
        )
        .await;
        input = pass.input;
        if pass.checked {
            first_pass = Some(pass.outcome);
            speculated = Some(guess);
        } else {
            debug!("the probes found the grid other than guessed; allocating first");
            may_guess = false;
            progress = pass.progress;
            let nothing = vec![Ok(BTreeSet::new()); guess.len()];
            abort_all(&guess, storage_index, &nothing).await;
            input.seek(SeekFrom::Start(0)).map_err(UploadError::Read)?;
        }
    }
    let (mut kept, mut buckets) = match speculated {
        Some(guess) => (Vec::new(), guess),
        None => {
            allocate(
                servers,
                secrets,
                params,
                storage_index,
                share_size,
                &known,
                may_guess,
            )
            .await?
        }
    };

    // Where shares landed, by server id (for happiness across rounds) and by share (for the result).
    let mut holdings: BTreeMap<String, BTreeSet<ShareNum>> = BTreeMap::new();
    let mut placement: BTreeMap<ShareNum, Vec<String>> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut failed_servers: BTreeSet<String> = BTreeSet::new();
    let mut stragglers: Vec<String> = Vec::new();
    let mut straggler_ids: BTreeSet<String> = BTreeSet::new();
    let mut cap = None;
    // Round 0 sends every allocated share. If servers fail mid-upload, or shares already stored
    // turn out corrupt, round 1 re-places those shares on the servers that did not fail (shares
    // already stored count as held) and encodes the file again, sending only those shares.
    for round in 0..2 {
        // Shares already on servers (placed by an earlier round, or there before the upload and
        // not known corrupt) count towards the happiness that lets a straggler go.
        let mut held = holdings.clone();
        for (server_id, _, shares) in &kept {
            held.entry(server_id.clone()).or_default().extend(shares);
        }
        let outcome = match first_pass.take() {
            Some(outcome) => outcome,
            None => {
                let shared = Shared {
                    held,
                    happy: params.happy as usize,
                    progress: progress.take(),
                };
                let ready = std::future::ready(Verdict::HOLDS);
                let pass = send_shares(
                    input,
                    size,
                    key,
                    &chk_params,
                    storage_index,
                    &buckets,
                    shared,
                    ready,
                )
                .await;
                input = pass.input;
                pass.outcome
            }
        };
        let (encoded, mut written, cancelled) = match outcome {
            Ok(done) => done,
            Err(e) => {
                let nothing = vec![Ok(BTreeSet::new()); buckets.len()];
                abort_all(&buckets, storage_index, &nothing).await;
                return Err(e.into());
            }
        };
        // A guessed share its server already held (a file uploaded again): it counts once
        // verified, as one that allocation finds does, and its server has not failed.
        for (bucket, done) in buckets.iter().zip(written.iter_mut()) {
            if bucket.allocating.is_some()
                && let Err(StorageError::AlreadyComplete { shnum }) = done
            {
                kept.push((
                    bucket.server.server_id.clone(),
                    bucket.server.name(),
                    BTreeSet::from([*shnum]),
                ));
                *done = Ok(BTreeSet::new());
            }
        }
        cap = Some(encoded.cap);
        // Shares that were already there count once verified against the cap.
        let checked = verify_kept(
            servers,
            encoded.cap,
            &kept,
            &mut known,
            &mut holdings,
            &mut placement,
        )
        .await;
        let found_bad = checked.found_bad;
        // A server whose share cannot be read counts as failed: its shares go elsewhere.
        for (server_id, problem) in checked.unreadable {
            failures.push(problem);
            failed_servers.insert(server_id);
        }
        for (bucket, (done, cancelled)) in buckets.iter().zip(written.iter().zip(&cancelled)) {
            if *cancelled {
                warn!(server = %bucket.server.name(), shares = ?bucket.shares, "cancelled a server far behind the others; its shares are not placed");
                stragglers.push(bucket.server.name());
                straggler_ids.insert(bucket.server.server_id.clone());
                continue;
            }
            match done {
                Ok(complete) => {
                    holdings
                        .entry(bucket.server.server_id.clone())
                        .or_default()
                        .extend(complete);
                    for shnum in complete {
                        placement.entry(*shnum).or_default().push(bucket.server.name());
                    }
                }
                Err(e) => {
                    failures.push(format!("{}: {e}", bucket.server.name()));
                    failed_servers.insert(bucket.server.server_id.clone());
                }
            }
        }
        // A straggler's unfinished buckets are left for its server to abort as idle: asking would
        // wait on the same slow link. So are those of a server that timed out (hung).
        let written: Written = written
            .into_iter()
            .zip(&buckets)
            .zip(&cancelled)
            .map(|((done, bucket), cancelled)| {
                if *cancelled || matches!(done, Err(StorageError::Timeout)) {
                    Ok(bucket.shares.clone())
                } else {
                    done
                }
            })
            .collect();
        abort_all(&buckets, storage_index, &written).await;
        let placed: BTreeSet<ShareNum> = holdings.values().flatten().copied().collect();
        if placed.len() >= params.total as usize || round == 1 || (failed_servers.is_empty() && !found_bad) {
            break;
        }
        let remaining: Vec<ServerEntry> = servers
            .iter()
            .filter(|s| !failed_servers.contains(&s.server_id) && !straggler_ids.contains(&s.server_id))
            .cloned()
            .collect();
        // Round 0's shares are where it put them: no guess this time.
        match allocate(
            &remaining,
            secrets,
            params,
            storage_index,
            share_size,
            &known,
            false,
        )
        .await
        {
            Ok((more_kept, more)) if !more.is_empty() => {
                match input.seek(SeekFrom::Start(0)) {
                    Ok(_) => {}
                    // A streamed upload ([`OnePass`]) cannot send its shares again: it keeps what
                    // round 0 placed, and the happiness check below says whether that is enough.
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                        warn!("servers failed during a streamed upload; its shares cannot be sent again");
                        break;
                    }
                    Err(e) => return Err(UploadError::Read(e)),
                }
                debug!(
                    servers = more.len(),
                    "re-placing shares of failed servers or corrupt shares"
                );
                buckets = more;
                // Shares verified in round 0 are known good now; any others are verified again.
                kept = more_kept;
            }
            _ => break,
        }
    }
    let distinct: BTreeSet<ShareNum> = holdings.values().flatten().copied().collect();
    let by_index: BTreeMap<usize, BTreeSet<ShareNum>> = holdings.into_values().enumerate().collect();
    let achieved = happiness(&by_index);
    // Happiness below k could not even rebuild the file; never report that as success.
    if achieved < params.happy.max(params.needed) as usize || distinct.len() < params.needed as usize {
        return Err(UploadError::NotHappy {
            happy: params.happy,
            achieved,
            servers: servers.len(),
            detail: if failures.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", failures.join("; "))
            },
        });
    }
    let cap = cap.expect("invariant: at least one round ran");
    Ok(UploadResult {
        cap: FileCap::Chk(cap),
        size,
        placement,
        happiness: achieved,
        stragglers,
    })
}

type Written = Vec<Result<BTreeSet<ShareNum>, StorageError>>;

/// Below this round trip (of the server's small requests, the allocation just made among them) a
/// link is near: [`PENDING_PER_SHARE_NEAR`] writes per share keep it busy.
const NEAR: std::time::Duration = std::time::Duration::from_millis(10);

/// Writes per share a server may have queued or in flight during an upload: as many as its round
/// trip needs to keep its link busy, and no more, since each holds a block in memory. The round
/// trip is the quickest recent one: small requests answered while the server is busy with writes
/// take longer, and would make a near server look far.
fn write_depth(server: &ServerEntry) -> u64 {
    match server.speed.fastest_round_trip() {
        Some(round_trip) if round_trip < NEAR => PENDING_PER_SHARE_NEAR,
        _ => PENDING_PER_SHARE,
    }
}

/// What one encoding pass shares with its caller beyond the buckets.
struct Shared {
    /// Shares already held, by server id.
    held: BTreeMap<String, BTreeSet<ShareNum>>,
    /// `shares.happy`.
    happy: usize,
    progress: Option<UploadProgress>,
}

/// What a pass's check ([`ring_ready`]) found.
struct Verdict {
    /// The guess holds (else the pass is called off).
    holds: bool,
    /// Lanes whose server did not answer: they leave the pass at once.
    silent: Vec<usize>,
}

impl Verdict {
    /// A pass with nothing to check.
    const HOLDS: Verdict = Verdict {
        holds: true,
        silent: Vec::new(),
    };
}

/// What one encoding pass ([`send_shares`]) gives back.
struct Pass<R> {
    input: R,
    /// The progress callback, for a pass that starts again.
    progress: Option<UploadProgress>,
    /// The encoding's result, with each bucket's outcome and whether it was cancelled as a
    /// straggler.
    outcome: Result<(crate::immutable::ChkEncoded, Written, Vec<bool>), EncodeError>,
    /// Whether `check` passed (else the pass was called off where it stood).
    checked: bool,
}

/// Encodes the file once, streaming the shares of `buckets` to their servers, while `check` runs:
/// the lanes it finds silent leave the pass, and if the guess does not hold, the pass is called
/// off (the encoder stops, the writers send nothing more and wait for what they sent).
#[allow(clippy::too_many_arguments)]
async fn send_shares<R: Read + Send + 'static>(
    input: R,
    size: u64,
    key: [u8; 16],
    chk_params: &ChkParams,
    storage_index: StorageIndex,
    buckets: &[Bucket],
    shared: Shared,
    check: impl std::future::Future<Output = Verdict>,
) -> Pass<R> {
    let mut routes = vec![None; chk_params.total as usize];
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut lanes = Vec::new();
    let mut registrations = Vec::new();
    for (index, bucket) in buckets.iter().enumerate() {
        for &shnum in &bucket.shares {
            routes[shnum as usize] = Some(index);
        }
        let (tx, rx) = mpsc::unbounded();
        senders.push(tx);
        receivers.push(rx);
        let (abort, registration) = AbortHandle::new_pair();
        lanes.push((bucket.shares.clone(), abort, write_depth(&bucket.server)));
        registrations.push(registration);
    }
    let kept = shared
        .held
        .into_iter()
        .map(|(server_id, shares)| {
            let lane = buckets.iter().position(|b| b.server.server_id == server_id);
            (lane, shares)
        })
        .collect();
    let flow = Arc::new(Flow::new(lanes, kept, shared.happy, chk_params.needed as usize));
    let (first_writes, first_writes_handed) = oneshot::channel();
    let mut sink = ChannelSink {
        routes,
        handed: vec![0; senders.len()],
        lanes_started: 0,
        senders,
        flow: Arc::clone(&flow),
        first_writes: Some(first_writes),
    };
    let mut progress = shared.progress;
    let chk_params = *chk_params;
    let encoder_flow = Arc::clone(&flow);
    let encoding = run_blocking(move || {
        let mut input = input;
        let mut report = |done: u64| {
            if let Some(callback) = progress.as_mut() {
                callback(done);
            }
        };
        let result = encode_stream(&mut input, size, key, &chk_params, &mut sink, Some(&mut report));
        drop(sink); // closes the channels, so the writers finish
        // Waits for the writers, cancelling stragglers; only the encoder holds the flow once the
        // writers are gone (the upload was dropped).
        encoder_flow.encoded(|| Arc::strong_count(&encoder_flow) == 1);
        (input, progress, result)
    });
    let writers =
        join_all(buckets.iter().zip(receivers).zip(registrations).enumerate().map(
            |(lane, ((bucket, rx), registration))| {
                let flow = Arc::clone(&flow);
                async move {
                    Abortable::new(write_bucket(bucket, storage_index, rx, &flow, lane), registration).await
                }
            },
        ));
    // The probes of `check` start once the first writes are queued: polled in the same task
    // after the writers (`join!` polls in order), they find the idle connections taken, and open
    // their own while the writes keep the links busy.
    let checking = async {
        let _ = first_writes_handed.await;
        let verdict = check.await;
        // A server that did not answer its probe (hung) would hold its writes until their
        // deadline: it leaves the pass now, and its shares go elsewhere.
        for &lane in &verdict.silent {
            flow.abandon(lane);
        }
        if !verdict.holds {
            flow.cancel();
        }
        verdict.holds
    };
    let ((input, progress, encoded), outcomes, checked) = futures::join!(encoding, writers, checking);
    let states = flow.states();
    let cancelled: Vec<bool> = states.iter().map(|s| *s == LaneState::Dropped).collect();
    let written: Written = outcomes
        .into_iter()
        .zip(&states)
        .map(|(outcome, state)| {
            outcome.unwrap_or_else(|_aborted| match state {
                LaneState::Failed => Err(StorageError::Timeout),
                _ => Ok(BTreeSet::new()),
            })
        })
        .collect();
    Pass {
        input,
        progress,
        outcome: encoded.map(|encoded| (encoded, written, cancelled)),
        checked,
    }
}

/// The buckets of an upload that writes before its allocation is answered: share r on the r-th
/// server of the ring, where placement puts it on a grid of N or more writable servers that hold
/// nothing of the file. Only for a fresh upload (no shares known from an earlier check) whose N
/// servers each allocate with a write in one request (Tessera servers): to a Tahoe server the
/// allocation would still be a request of its own, with nothing gained.
fn speculative_buckets(
    servers: &[ServerEntry],
    secrets: &ClientSecrets,
    params: &UploadParams,
    storage_index: StorageIndex,
    share_size: u64,
    known: &KnownShares,
) -> Option<Vec<Bucket>> {
    if !known.good.is_empty() || !known.corrupt.is_empty() {
        return None;
    }
    let ring: Vec<&ServerEntry> = permuted_servers(storage_index.as_bytes(), servers)
        .into_iter()
        .take(usize::from(params.total))
        .collect();
    if ring.len() < usize::from(params.total) || !ring.iter().all(|s| s.client.allocates_on_write()) {
        return None;
    }
    Some(
        ring.into_iter()
            .enumerate()
            .map(|(r, server)| Bucket {
                server: server.clone(),
                upload: UploadSecret(rand::random::<[u8; 32]>().to_vec()),
                shares: BTreeSet::from([r as ShareNum]),
                allocating: Some((
                    secrets.lease_secrets(storage_index.as_bytes(), &server.lease_seed),
                    share_size,
                )),
            })
            .collect(),
    )
}

/// Whether the input, at its start, can be read again from there (a streamed one cannot: see
/// [`OnePass`]). Relative seeks only: a seek to the start is a rewind to those that watch for it
/// (`operations::ReportedInput`).
fn rereadable<R: Seek>(input: &mut R) -> io::Result<bool> {
    if input.stream_position()? != 0 {
        return Ok(false);
    }
    match input.seek(SeekFrom::Current(1)) {
        Ok(_) => input.seek(SeekFrom::Current(-1)).map(|_| true),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the grid is as [`speculative_buckets`] guessed: none of the first N servers of the ring
/// that answer holds a share of the file but (perhaps) its guessed one, and none of the next N
/// (the rest of those an allocation would ask) holds any. One round trip, the probes of
/// [`allocate`].
async fn ring_ready(servers: &[ServerEntry], storage_index: StorageIndex, total: u16) -> Verdict {
    let answers = probe(&allocation_ring(servers, storage_index, total), storage_index).await;
    let mut verdict = Verdict::HOLDS;
    for (r, answer) in answers.into_iter().enumerate() {
        let placed_here = r < usize::from(total);
        match answer {
            // The guessed share itself may be listed: this upload's own writes may have completed
            // it already, or it was there before (the write then says so, and the share counts
            // once verified). Nor is the server's room checked: it has reserved the guessed share's
            // already, and its allocating write refuses what does not fit.
            (Ok(_), Ok(existing)) if placed_here => {
                verdict.holds &= existing.iter().all(|&shnum| usize::from(shnum) == r);
            }
            (Ok(_), Ok(existing)) => verdict.holds &= existing.is_empty(),
            // One of the first N that does not answer leaves the pass (its lane is the r-th);
            // one beyond them is passed over, as allocation passes it over.
            _ if placed_here => verdict.silent.push(r),
            _ => {}
        }
    }
    verdict
}

/// The servers an allocation asks, in ring order: the first 2N of the ring for `storage_index`.
fn allocation_ring(servers: &[ServerEntry], storage_index: StorageIndex, total: u16) -> Vec<&ServerEntry> {
    permuted_servers(storage_index.as_bytes(), servers)
        .into_iter()
        .take(2 * usize::from(total))
        .collect()
}

/// One server's answers to [`probe`]: its version (its free space) and the shares of the storage
/// index it holds.
type Probe = (
    Result<storage::api::VersionInfo, StorageError>,
    Result<BTreeSet<ShareNum>, StorageError>,
);

/// Asks each of `ordered`, all at once, for its version and the shares of `storage_index` it holds.
async fn probe(ordered: &[&ServerEntry], storage_index: StorageIndex) -> Vec<Probe> {
    join_all(ordered.iter().map(|server| async move {
        futures::join!(
            server.timed(QUICK_DEADLINE, 0, server.client.version()),
            server.timed(
                QUICK_DEADLINE,
                0,
                server.client.list_shares(ShareKind::Immutable, storage_index)
            ),
        )
    }))
    .await
}

type Kept = Vec<(String, String, BTreeSet<ShareNum>)>;

/// Chooses servers and allocates buckets until every share has a home or happiness is out of reach.
async fn allocate(
    servers: &[ServerEntry],
    secrets: &ClientSecrets,
    params: &UploadParams,
    storage_index: StorageIndex,
    share_size: u64,
    known: &KnownShares,
    may_guess: bool,
) -> Result<(Kept, Vec<Bucket>), UploadError> {
    let total = params.total;
    let ordered = allocation_ring(servers, storage_index, total);
    let mut problems: Vec<String> = Vec::new();
    let allocated: BTreeMap<usize, Bucket> = BTreeMap::new();
    // Beside asking each candidate for its free space and the shares it already holds, a fresh
    // upload (no shares known from an earlier check, and `may_guess`: no guess of this upload's
    // was found wrong, and this is not a round re-placing shares) allocates share r on the r-th
    // server of the ring at once, where placement would put it on a grid of N or more writable
    // servers that hold nothing of this file: one round trip less. What the probes then find (a full server,
    // shares already elsewhere) is placed by the rounds below as before; a share allocated
    // twice is written twice, which costs space but never a wrong placement.
    let first_asks: BTreeMap<usize, BTreeSet<ShareNum>> =
        if may_guess && known.good.is_empty() && known.corrupt.is_empty() {
            (0..ordered.len().min(usize::from(total)))
                .map(|i| (i, BTreeSet::from([i as ShareNum])))
                .collect()
        } else {
            BTreeMap::new()
        };
    let (probes, first_answers) = futures::join!(
        probe(&ordered, storage_index),
        ask_allocations(
            &ordered,
            secrets,
            storage_index,
            share_size,
            &first_asks,
            &allocated
        )
    );
    let mut candidates: Vec<Candidate> = Vec::new();
    for (server, (version, existing)) in ordered.iter().zip(probes) {
        let mut candidate = Candidate::default();
        match (version, existing) {
            (Ok(version), Ok(existing)) => {
                candidate.writable = version.available_space >= share_size;
                if !candidate.writable {
                    problems.push(format!("{} is full", server.name()));
                }
                // A corrupt copy a server kept is neither held nor replaceable there.
                for shnum in existing {
                    if known.corrupt.contains(&(server.server_id.clone(), shnum)) {
                        candidate.blocked.insert(shnum);
                    } else {
                        candidate.existing.insert(shnum);
                    }
                }
            }
            (Err(e), _) | (_, Err(e)) => problems.push(format!("{}: {e}", server.name())),
        }
        candidates.push(candidate);
    }
    let mut outcome = Allocations {
        ordered: &ordered,
        total,
        known,
        candidates,
        allocated,
        problems,
    };
    outcome.absorb(first_answers);

    for _round in 0..3 {
        let placement = place_shares(total, &outcome.candidates);
        // Shares not yet allocated anywhere.
        let mut requests: BTreeMap<usize, BTreeSet<ShareNum>> = BTreeMap::new();
        let already: BTreeSet<ShareNum> = outcome
            .allocated
            .values()
            .flat_map(|b| b.shares.iter().copied())
            .collect();
        for (server, shares) in &placement.uploads {
            let fresh: BTreeSet<ShareNum> = shares.difference(&already).copied().collect();
            if !fresh.is_empty() {
                requests.insert(*server, fresh);
            }
        }
        // Existing holders get their leases renewed by an allocate of nothing.
        let holders: Vec<usize> = placement
            .kept
            .keys()
            .copied()
            .filter(|s| !requests.contains_key(s))
            .collect();
        for server in holders {
            requests.insert(server, BTreeSet::new());
        }
        if requests.values().all(BTreeSet::is_empty) && placement.happiness >= params.happy as usize {
            break;
        }
        let answers = ask_allocations(
            &ordered,
            secrets,
            storage_index,
            share_size,
            &requests,
            &outcome.allocated,
        )
        .await;
        if !outcome.absorb(answers) {
            break;
        }
    }
    let Allocations {
        candidates,
        allocated,
        problems,
        ..
    } = outcome;

    // Final check: every share allocated or held, and happy.
    let mut holdings: BTreeMap<usize, BTreeSet<ShareNum>> = BTreeMap::new();
    for (index, candidate) in candidates.iter().enumerate() {
        let shares: BTreeSet<ShareNum> = candidate
            .existing
            .iter()
            .copied()
            .filter(|s| *s < total)
            .collect();
        if !shares.is_empty() {
            holdings.insert(index, shares);
        }
    }
    let achieved = happiness(&holdings);
    if achieved < params.happy as usize {
        let buckets: Vec<Bucket> = allocated.into_values().collect();
        let written = vec![Ok(BTreeSet::new()); buckets.len()];
        abort_all(&buckets, storage_index, &written).await;
        return Err(UploadError::NotHappy {
            happy: params.happy,
            achieved,
            servers: servers.len(),
            detail: if problems.is_empty() {
                String::new()
            } else {
                format!("; {}", problems.join("; "))
            },
        });
    }
    let kept: Kept = candidates
        .iter()
        .enumerate()
        .filter_map(|(index, candidate)| {
            let mine = allocated
                .get(&index)
                .map(|b| b.shares.clone())
                .unwrap_or_default();
            let held: BTreeSet<ShareNum> = candidate
                .existing
                .iter()
                .copied()
                .filter(|s| *s < total && !mine.contains(s))
                .collect();
            (!held.is_empty()).then(|| (ordered[index].server_id.clone(), ordered[index].name(), held))
        })
        .collect();
    Ok((kept, allocated.into_values().collect()))
}

/// One allocation request's answer: the server's index in ring order, the shares asked for, the
/// upload secret used, and the server's answer.
type AllocationAnswer = (
    usize,
    BTreeSet<ShareNum>,
    UploadSecret,
    Result<storage::api::Allocation, StorageError>,
);

/// Sends allocation requests (`requests`: server index to shares) at once; a server that already
/// has a bucket of this upload is asked with its upload secret.
async fn ask_allocations(
    ordered: &[&ServerEntry],
    secrets: &ClientSecrets,
    storage_index: StorageIndex,
    share_size: u64,
    requests: &BTreeMap<usize, BTreeSet<ShareNum>>,
    allocated: &BTreeMap<usize, Bucket>,
) -> Vec<AllocationAnswer> {
    join_all(requests.iter().map(|(&index, shares)| {
        let server = ordered[index];
        let lease = secrets.lease_secrets(storage_index.as_bytes(), &server.lease_seed);
        let upload = allocated
            .get(&index)
            .map(|b| b.upload.clone())
            .unwrap_or_else(|| UploadSecret(rand::random::<[u8; 32]>().to_vec()));
        async move {
            let allocate = server
                .client
                .allocate_buckets(storage_index, &lease, &upload, shares, share_size);
            let answer = server.timed(QUICK_DEADLINE, 0, allocate).await;
            (index, shares.clone(), upload, answer)
        }
    }))
    .await
}

/// What allocation has learnt so far.
struct Allocations<'a> {
    ordered: &'a [&'a ServerEntry],
    total: ShareNum,
    known: &'a KnownShares,
    candidates: Vec<Candidate>,
    allocated: BTreeMap<usize, Bucket>,
    problems: Vec<String>,
}

impl Allocations<'_> {
    /// Takes in allocation answers; returns whether any server refused or failed (so that another
    /// round of placement is worth trying).
    fn absorb(&mut self, answers: Vec<AllocationAnswer>) -> bool {
        let mut refused_any = false;
        for (index, asked, upload, answer) in answers {
            let server = self.ordered[index];
            match answer {
                Ok(mut allocation) => {
                    // Trust only what was asked for: a server may not claim other share numbers.
                    allocation.allocated.retain(|shnum| asked.contains(shnum));
                    allocation.already_have.retain(|shnum| {
                        *shnum < self.total
                            && !self.known.corrupt.contains(&(server.server_id.clone(), *shnum))
                    });
                    self.candidates[index]
                        .existing
                        .extend(allocation.already_have.iter().copied());
                    if allocation.allocated.len() + asked.intersection(&allocation.already_have).count()
                        < asked.len()
                    {
                        refused_any = true;
                        self.candidates[index].writable = false;
                        self.problems
                            .push(refusal_message(&server.name(), &asked, &allocation));
                    }
                    if !allocation.allocated.is_empty() {
                        let bucket = self.allocated.entry(index).or_insert_with(|| Bucket {
                            server: (*server).clone(),
                            upload,
                            shares: BTreeSet::new(),
                            allocating: None,
                        });
                        bucket.shares.extend(allocation.allocated.iter().copied());
                        // Allocated shares count as held when placing the rest.
                        self.candidates[index]
                            .existing
                            .extend(allocation.allocated.iter().copied());
                    }
                }
                Err(e) => {
                    refused_any = true;
                    self.candidates[index] = Candidate::default();
                    self.problems.push(format!("{}: {e}", server.name()));
                }
            }
        }
        refused_any
    }
}

/// "NAME refused share(s) N, M: REASON" (the first reason the server gave, when it gave one: a Tahoe
/// server refuses silently).
fn refusal_message(name: &str, asked: &BTreeSet<ShareNum>, allocation: &storage::api::Allocation) -> String {
    let refused: Vec<String> = asked
        .iter()
        .filter(|s| !allocation.allocated.contains(s) && !allocation.already_have.contains(s))
        .map(ToString::to_string)
        .collect();
    let noun = if refused.len() == 1 { "share" } else { "shares" };
    let mut message = format!("{name} refused {noun} {}", refused.join(", "));
    // The first reason the server gave (they differ only in share numbers and times).
    if let Some(reason) = allocation
        .refused
        .iter()
        .find(|(s, _)| asked.contains(s))
        .map(|(_, r)| r)
    {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

/// What [`verify_kept`] found beyond the good shares.
struct KeptCheck {
    /// Whether any share was corrupt.
    found_bad: bool,
    /// Servers whose share could not be read: (server id, what happened).
    unreadable: Vec<(String, String)>,
}

/// Verifies the shares that were on the servers before this upload (`kept`) against `cap`, except
/// those `known` says are good; records the good ones in `holdings` and `placement` (and in
/// `known.good`) and the corrupt ones in `known.corrupt`, after asking their servers to remove
/// them (a server that does frees the slot for a good copy).
async fn verify_kept(
    servers: &[ServerEntry],
    cap: ChkCap,
    kept: &Kept,
    known: &mut KnownShares,
    holdings: &mut BTreeMap<String, BTreeSet<ShareNum>>,
    placement: &mut BTreeMap<ShareNum, Vec<String>>,
) -> KeptCheck {
    let storage_index = cap.storage_index();
    let mut checks = Vec::new();
    for (server_id, name, shares) in kept {
        for &shnum in shares {
            let held = (server_id.clone(), shnum);
            if holdings.get(server_id).is_some_and(|h| h.contains(&shnum)) {
                continue;
            }
            if known.good.contains(&held) {
                holdings.entry(server_id.clone()).or_default().insert(shnum);
                placement.entry(shnum).or_default().push(name.clone());
                continue;
            }
            if let Some(server) = servers.iter().find(|s| s.server_id == *server_id) {
                checks.push((server.clone(), shnum));
            }
        }
    }
    let verdicts = join_all(checks.iter().map(|(server, shnum)| {
        let source = super::download::RemoteShare::new(server.clone(), storage_index, *shnum);
        crate::immutable::verify_share(&cap, std::sync::Arc::new(source))
    }))
    .await;
    let mut outcome = KeptCheck {
        found_bad: false,
        unreadable: Vec::new(),
    };
    for ((server, shnum), verdict) in checks.into_iter().zip(verdicts) {
        let held = (server.server_id.clone(), shnum);
        match verdict {
            Ok(()) => {
                holdings
                    .entry(server.server_id.clone())
                    .or_default()
                    .insert(shnum);
                placement.entry(shnum).or_default().push(server.name());
                known.good.insert(held);
            }
            Err(bad) if matches!(bad.problem, crate::immutable::ShareProblem::Unreadable(_)) => {
                // Not counted, not corrupt either: its server is treated as failed.
                warn!(server = %server.name(), shnum, problem = %bad.problem, "an existing share could not be read");
                outcome.unreadable.push((
                    server.server_id.clone(),
                    format!("{}: {}", server.name(), bad.problem),
                ));
            }
            Err(bad) => {
                warn!(server = %server.name(), shnum, problem = %bad.problem, "an existing share is corrupt; placing a good copy");
                outcome.found_bad = true;
                let reason = bad.problem.to_string();
                if !remove_corrupt(&server, storage_index, shnum, &reason).await {
                    known.corrupt.insert(held);
                }
            }
        }
    }
    outcome
}

/// Asks `server` to remove its share `shnum` of `storage_index` as corrupt (a Tessera extension;
/// the server removes it only if its own check proves it corrupt). Whether it is gone.
pub(crate) async fn remove_corrupt(
    server: &ServerEntry,
    storage_index: StorageIndex,
    shnum: ShareNum,
    reason: &str,
) -> bool {
    let request = server.client.remove_corrupt_share(storage_index, shnum, reason);
    // The server reads and checks the whole share before it answers: the full request timeout.
    match super::with_timeout(server.request_timeout, request).await {
        Ok(CorruptShareRemoval::Removed { problem }) => {
            debug!(server = %server.name(), shnum, problem, "the server removed a corrupt share");
            true
        }
        Ok(CorruptShareRemoval::Kept { reason }) => {
            debug!(server = %server.name(), shnum, reason, "the server kept a share found corrupt");
            false
        }
        Err(e) => {
            // Tahoe servers have no such request (404); the good copy goes elsewhere.
            debug!(server = %server.name(), shnum, error = %e, "no removal of a corrupt share");
            false
        }
    }
}

/// Sends one server's writes (lane `lane` of `flow`); returns the shares it completed.
async fn write_bucket(
    bucket: &Bucket,
    storage_index: StorageIndex,
    writes: mpsc::UnboundedReceiver<Write>,
    flow: &Flow,
    lane: usize,
) -> Result<BTreeSet<ShareNum>, StorageError> {
    let failed = AtomicBool::new(false);
    let first_error: std::sync::Mutex<Option<StorageError>> = std::sync::Mutex::new(None);
    let complete: std::sync::Mutex<BTreeSet<ShareNum>> = std::sync::Mutex::new(BTreeSet::new());
    // Shares whose upload a write has opened (every write allocates until one has).
    let opened: std::sync::Mutex<BTreeSet<ShareNum>> = std::sync::Mutex::new(BTreeSet::new());
    let is_open = |shnum| {
        opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&shnum)
    };
    writes
        .for_each_concurrent(WRITES_IN_FLIGHT, |write| {
            let (failed, first_error, complete, opened) = (&failed, &first_error, &complete, &opened);
            async move {
                // After a failure, drop what is still queued (the encoder feeds this server no
                // more); so too once the pass is called off.
                if failed.load(Ordering::Relaxed) || flow.is_cancelled() {
                    flow.completed(lane);
                    return;
                }
                let bytes = write.data.len() as u64;
                let client = &bucket.server.client;
                let (shnum, offset, data) = (write.shnum, write.offset, write.data);
                let request = async {
                    match &bucket.allocating {
                        Some((lease, allocated_size)) if !is_open(shnum) => {
                            client
                                .write_share_allocating(
                                    storage_index,
                                    shnum,
                                    lease,
                                    &bucket.upload,
                                    *allocated_size,
                                    offset,
                                    data,
                                )
                                .await
                        }
                        _ => client.write_share(storage_index, shnum, &bucket.upload, offset, data).await,
                    }
                };
                let result = bucket.server.timed(WRITE_DEADLINE, bytes, request).await;
                if result.is_ok() && bucket.allocating.is_some() {
                    opened.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(shnum);
                }
                match result {
                    Ok(progress) if progress.complete => {
                        complete.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(shnum);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let refused = matches!(
                            e,
                            StorageError::AlreadyComplete { .. }
                                | StorageError::Refused(_)
                                | StorageError::NoSpace { .. }
                                | StorageError::ReadOnly
                        );
                        if bucket.allocating.is_some() && refused {
                            // Placement before allocation guessed wrong; the upload re-places.
                            debug!(server = %bucket.server.name(), error = %e, "an allocating write was refused");
                        } else {
                            warn!(server = %bucket.server.name(), error = %e, "write failed; dropping this server from the upload");
                        }
                        failed.store(true, Ordering::Relaxed);
                        flow.failed(lane);
                        first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
                    }
                }
                // What the link turned out to be (the probes beside the first writes answer
                // first): an upload that began before the server's round trip was known, or
                // while it looked longer than it is, settles on the depth it needs.
                flow.set_depth(lane, write_depth(&bucket.server));
                flow.completed(lane);
            }
        })
        .await;
    let failed = failed.load(Ordering::Relaxed);
    flow.finished(lane, failed);
    if let Some(e) = first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    Ok(complete
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// Aborts every allocated share that did not complete.
async fn abort_all(
    buckets: &[Bucket],
    storage_index: StorageIndex,
    written: &[Result<BTreeSet<ShareNum>, StorageError>],
) {
    let aborts = buckets.iter().zip(written).flat_map(|(bucket, done)| {
        let complete = done.as_ref().cloned().unwrap_or_default();
        bucket
            .shares
            .iter()
            .filter(move |s| !complete.contains(s))
            .map(move |&shnum| async move {
                if let Err(e) = bucket
                    .server
                    .timed(
                        QUICK_DEADLINE,
                        0,
                        bucket
                            .server
                            .client
                            .abort_upload(storage_index, shnum, &bucket.upload),
                    )
                    .await
                {
                    debug!(server = %bucket.server.name(), shnum, error = %e, "abort failed");
                }
            })
    });
    join_all(aborts).await;
}

/// The cap type an upload of more than 55 bytes yields, for callers that need it.
pub fn chk_cap(result: &UploadResult) -> Option<ChkCap> {
    match result.cap {
        FileCap::Chk(cap) => Some(cap),
        _ => None,
    }
}

/// Convenience for in-memory data.
pub async fn upload_bytes(
    servers: &[ServerEntry],
    secrets: &ClientSecrets,
    params: &UploadParams,
    data: Vec<u8>,
) -> Result<UploadResult, UploadError> {
    upload(servers, secrets, params, io::Cursor::new(data), None).await
}
