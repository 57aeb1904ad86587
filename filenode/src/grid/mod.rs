//! Talking to the grid: which servers hold which shares, and uploading to and downloading from
//! storage servers through `storage::StorageClient` (in process or over HTTPS alike).
//!
//! Runtime-agnostic: futures are driven by whoever awaits them (the node uses tokio), and CPU-bound
//! work runs on its own threads or the rayon pool.

pub mod check;
pub mod download;
mod key_pool;
pub mod mutable;
pub mod placement;
mod small_upload;
mod stragglers;
pub mod upload;
pub mod verify;

pub use key_pool::KeyPool;

use std::sync::Arc;
use std::time::Duration;

use storage::StorageClient;
use storage::api::LeaseSecrets;

use crate::hashes;

/// A storage server as a client knows it: from an announcement or `servers.yaml`.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    /// The server id (`v0-<base32 ed25519 key>`), for logs and status.
    pub server_id: String,
    /// The server's nickname.
    pub nickname: String,
    /// Ranks the server on the permuted ring.
    pub permutation_seed: Vec<u8>,
    /// Whether `[client] peers.preferred` names it: preferred servers come first on every
    /// permuted ring, so uploads place shares on them first and downloads ask them first
    /// (Tahoe's `get_servers_for_psi`).
    pub preferred: bool,
    /// The 20-byte seed of per-server lease secrets (the server's tub id).
    pub lease_seed: [u8; 20],
    /// How to reach it.
    pub client: Arc<dyn StorageClient>,
    /// The longest one request may take before the server counts as failed ([`REQUEST_TIMEOUT`],
    /// or `[node] timeout.disconnect`, or shorter in tests): the ceiling of the adaptive deadline
    /// [`ServerEntry::deadline`] sets from `speed`.
    pub request_timeout: std::time::Duration,
    /// What this client has seen of the server's latency and throughput (shared by the entry's
    /// clones; [`Grid::set_servers`] keeps it for servers that stay).
    pub speed: Arc<ServerSpeed>,
}

/// Connections to each connected server that every probe leaves ready (see [`Grid::probe`]).
pub const IDLE_CONNECTIONS_KEPT: usize = 2;

/// The smallest deadline of a small request (version, listing, allocation, block read): a server
/// that has not answered in this long while it usually answers in milliseconds is taken for hung.
pub const QUICK_DEADLINE: Duration = Duration::from_secs(3);

/// The smallest deadline of a share write: the write that completes a share waits for the server
/// to fsync the whole share, which a healthy but busy disk can take seconds to do.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// The deadline of a request to a server this client has not heard from yet (connection set-up
/// and TLS included), unless the request's own floor is higher.
pub const FIRST_CONTACT_DEADLINE: Duration = Duration::from_secs(5);

/// A deadline is at least this many times the server's recent latency.
const LATENCY_MULTIPLE: u32 = 10;

/// Bytes moved get at least this rate in a deadline (the observed rate is used when it is faster
/// than four times this), so a large read or write on a slow link is not cut off for its size.
const MIN_RATE: f64 = 256.0 * 1024.0;

/// A moving estimate of one server's speed, fed by every request that succeeds.
#[derive(Debug, Default)]
pub struct ServerSpeed {
    state: std::sync::Mutex<SpeedState>,
}

#[derive(Debug, Default, Clone, Copy)]
struct SpeedState {
    /// Moving average of request durations, in seconds (`None` before the first answer).
    latency: Option<f64>,
    /// Moving average of the transfer rate of requests that moved 64 KiB or more, in bytes/s.
    rate: Option<f64>,
    /// Moving average of the durations of requests that moved less, in seconds: about the round
    /// trip, without the time big transfers queue behind each other.
    round_trip: Option<f64>,
    /// The quickest of those, drifting up by [`FASTEST_DRIFT`] of the gap at each slower one:
    /// the link's own round trip, which a server busy with an upload's writes (its small answers
    /// queued behind them) or a request that opened a connection does not inflate.
    fastest: Option<f64>,
}

/// How far the quickest small request's duration moves towards each slower one (so a server that
/// moved away is seen as far, in a few dozen requests).
const FASTEST_DRIFT: f64 = 0.05;

impl ServerSpeed {
    fn snapshot(&self) -> SpeedState {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a request that succeeded after `elapsed`, having moved `bytes`.
    pub fn record(&self, elapsed: Duration, bytes: u64) {
        let seconds = elapsed.as_secs_f64();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.latency = Some(match state.latency {
            Some(old) => old * 0.8 + seconds * 0.2,
            None => seconds,
        });
        if bytes >= 64 * 1024 && seconds > 0.0 {
            let rate = bytes as f64 / seconds;
            state.rate = Some(match state.rate {
                Some(old) => old * 0.8 + rate * 0.2,
                None => rate,
            });
        } else {
            state.round_trip = Some(match state.round_trip {
                Some(old) => old * 0.8 + seconds * 0.2,
                None => seconds,
            });
            state.fastest = Some(match state.fastest {
                Some(old) if seconds < old => seconds,
                Some(old) => old + (seconds - old) * FASTEST_DRIFT,
                None => seconds,
            });
        }
    }

    /// The link's round trip as the quickest recent small request saw it (see
    /// `SpeedState::fastest`), once one answered.
    pub fn fastest_round_trip(&self) -> Option<Duration> {
        self.snapshot().fastest.map(Duration::from_secs_f64)
    }

    /// The recent rate of requests that moved 64 KiB or more, in bytes per second, once one did.
    pub fn rate(&self) -> Option<f64> {
        self.snapshot().rate
    }

    /// The recent average duration of small requests (about the round trip), once one answered.
    pub fn round_trip(&self) -> Option<Duration> {
        self.snapshot().round_trip.map(Duration::from_secs_f64)
    }

    /// The recent average request duration, once the server has answered.
    pub fn latency(&self) -> Option<Duration> {
        self.snapshot().latency.map(Duration::from_secs_f64)
    }
}

impl ServerEntry {
    /// How long a request that moves `bytes` may take on this server: at least `floor` (or
    /// [`FIRST_CONTACT_DEADLINE`] before the server has answered anything), at least
    /// [`LATENCY_MULTIPLE`] times its recent latency, plus the time `bytes` take at a quarter of
    /// its observed rate (never slower than 256 KiB/s); never more than `request_timeout`.
    pub fn deadline(&self, floor: Duration, bytes: u64) -> Duration {
        let state = self.speed.snapshot();
        let base = match state.latency {
            Some(latency) => floor.max(Duration::from_secs_f64(latency) * LATENCY_MULTIPLE),
            None => floor.max(FIRST_CONTACT_DEADLINE),
        };
        let rate = state.rate.map_or(MIN_RATE, |r| (r / 4.0).max(MIN_RATE));
        let transfer = Duration::from_secs_f64(bytes as f64 / rate);
        (base + transfer).min(self.request_timeout)
    }

    /// Runs `request` (moving about `bytes`) under [`ServerEntry::deadline`], and learns from its
    /// duration when it succeeds. A request past its deadline fails with
    /// [`storage::StorageError::Timeout`] and its connection is dropped.
    pub async fn timed<T>(
        &self,
        floor: Duration,
        bytes: u64,
        request: impl std::future::Future<Output = Result<T, storage::StorageError>>,
    ) -> Result<T, storage::StorageError> {
        let started = std::time::Instant::now();
        let result = with_timeout(self.deadline(floor, bytes), request).await;
        if result.is_ok() {
            self.speed.record(started.elapsed(), bytes);
        }
        result
    }
}

impl ServerEntry {
    /// A short name for messages: the nickname, else the start of the id.
    pub fn name(&self) -> String {
        if self.nickname.is_empty() {
            self.server_id.chars().take(12).collect()
        } else {
            self.nickname.clone()
        }
    }
}

/// The client's long-lived secrets.
#[derive(Clone)]
pub struct ClientSecrets {
    /// The lease secret (`private/secret`) from which all lease secrets derive.
    pub lease_secret: Vec<u8>,
    /// The convergence secret (`private/convergence`); `None` means random keys.
    pub convergence: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecrets(..)")
    }
}

impl ClientSecrets {
    /// The lease secrets for one storage index on one server (tahoe-formats.md §1.3).
    pub fn lease_secrets(&self, storage_index: &[u8; 16], lease_seed: &[u8; 20]) -> LeaseSecrets {
        let renew = hashes::my_renewal_secret_hash(&self.lease_secret);
        let cancel = hashes::my_cancel_secret_hash(&self.lease_secret);
        let file_renew = hashes::file_renewal_secret_hash(&renew, storage_index);
        let file_cancel = hashes::file_cancel_secret_hash(&cancel, storage_index);
        LeaseSecrets {
            renew: hashes::bucket_renewal_secret_hash(&file_renew, lease_seed),
            cancel: hashes::bucket_cancel_secret_hash(&file_cancel, lease_seed),
        }
    }
}

/// Orders servers on the permuted ring for a storage index, preferred servers first.
pub fn permuted_servers<'a>(storage_index: &[u8; 16], servers: &'a [ServerEntry]) -> Vec<&'a ServerEntry> {
    let seeds: Vec<&[u8]> = servers.iter().map(|s| s.permutation_seed.as_slice()).collect();
    let preferred: Vec<bool> = servers.iter().map(|s| s.preferred).collect();
    placement::permuted_order_preferring(storage_index, &seeds, &preferred)
        .into_iter()
        .map(|i| &servers[i])
        .collect()
}

/// How long one request to a storage server may take before the server is treated as failed (the
/// download moves to another share; the upload drops the server).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `request`, failing with [`storage::StorageError::Timeout`] after `limit`.
pub async fn with_timeout<T>(
    limit: std::time::Duration,
    request: impl std::future::Future<Output = Result<T, storage::StorageError>>,
) -> Result<T, storage::StorageError> {
    use futures::future::{Either, select};
    let request = std::pin::pin!(request);
    match select(request, futures_timer::Delay::new(limit)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(storage::StorageError::Timeout),
    }
}

/// Runs a blocking closure on its own thread and awaits its result without tying up the caller's
/// executor.
pub(crate) async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("tessera-blocking".into())
        .spawn(move || {
            let _ = done.send(work());
        })
        .expect("invariant: the OS can start a thread");
    result
        .await
        .expect("invariant: the blocking job sends its result")
}

/// Runs CPU-bound work on the rayon pool and awaits its result.
pub(crate) async fn run_on_rayon<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = futures::channel::oneshot::channel();
    rayon::spawn(move || {
        let _ = done.send(work());
    });
    result.await.expect("invariant: the rayon job sends its result")
}

/// What the client knows about a server's connection right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStatus {
    /// Whether the last probe succeeded.
    pub connected: bool,
    /// When the current connection was first seen (Unix seconds).
    pub connected_since: Option<u64>,
    /// When the server last answered (Unix seconds).
    pub last_seen: Option<u64>,
    /// Space the server reported free.
    pub available_space: Option<u64>,
    /// The last error, when not connected.
    pub last_error: Option<String>,
}

/// The client's view of the grid: the known servers, the secrets, the encoding parameters. Frontends
/// upload and download through it; the node keeps its server list current.
#[derive(Debug)]
pub struct Grid {
    servers: std::sync::RwLock<Vec<(ServerEntry, ServerStatus)>>,
    secrets: ClientSecrets,
    params: upload::UploadParams,
    keys: KeyPool,
    mutable_states: std::sync::Mutex<
        std::collections::HashMap<storage::StorageIndex, std::sync::Arc<futures::lock::Mutex<MutableState>>>,
    >,
    operations: Arc<crate::operations::Operations>,
    /// The ids of `[client] peers.preferred`: [`Grid::set_servers`] marks these servers
    /// [`ServerEntry::preferred`].
    preferred: std::sync::RwLock<std::collections::BTreeSet<String>>,
}

/// How many mutable files' states (see [`MutableState`]) a client keeps between operations.
const MUTABLE_STATES_KEPT: usize = 32;

/// The largest contents kept in a [`MutableState`].
pub const MUTABLE_CONTENTS_KEPT: usize = 8 << 20;

/// What this client knows about a mutable file between its own writes: the shares its last
/// publish left, the signing key, and the contents. Held behind a per-file lock, which also
/// serialises this client's writes to the file.
#[derive(Debug, Default)]
pub struct MutableState {
    /// The grid as our last publish left it (tested by the next write, so a change by another
    /// client is still detected).
    pub map: Option<mutable::ServerMap>,
    /// The contents of that version, when small enough to keep.
    pub contents: Option<std::sync::Arc<Vec<u8>>>,
    /// The file's signing key.
    pub key: Option<std::sync::Arc<crate::mutable::keys::MutableKey>>,
}

impl Grid {
    /// A grid client with no servers yet.
    pub fn new(secrets: ClientSecrets, params: upload::UploadParams) -> Self {
        Grid::with_key_pool(secrets, params, KeyPool::new(2))
    }

    /// A grid client with its own key pool (tests use `KeyPool::new(0)` to avoid a keygen thread).
    pub fn with_key_pool(secrets: ClientSecrets, params: upload::UploadParams, keys: KeyPool) -> Self {
        Grid {
            servers: Default::default(),
            secrets,
            params,
            keys,
            mutable_states: Default::default(),
            operations: Arc::default(),
            preferred: Default::default(),
        }
    }

    /// Sets the preferred servers (Tahoe's `[client] peers.preferred`, server ids such as
    /// `v0-…`): they come first on every permuted ring, for uploads and downloads alike. Marks the
    /// servers known now and those set later.
    pub fn set_preferred_peers(&self, ids: impl IntoIterator<Item = String>) {
        let ids: std::collections::BTreeSet<String> = ids.into_iter().collect();
        let mut current = self
            .servers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (entry, _) in current.iter_mut() {
            entry.preferred = ids.contains(&entry.server_id);
        }
        *self
            .preferred
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ids;
    }

    /// The operations registry (`/status`): this grid's uploads, downloads, publishes and
    /// retrieves, active and recent.
    pub fn operations(&self) -> &Arc<crate::operations::Operations> {
        &self.operations
    }

    /// The client's secrets.
    pub fn secrets(&self) -> &ClientSecrets {
        &self.secrets
    }

    /// The pool of pre-generated signing keys.
    pub fn key_pool(&self) -> &KeyPool {
        &self.keys
    }

    /// The lock and cached state of one mutable file.
    pub fn mutable_state(
        &self,
        storage_index: storage::StorageIndex,
    ) -> std::sync::Arc<futures::lock::Mutex<MutableState>> {
        let mut states = self
            .mutable_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(state) = states.get(&storage_index) {
            return std::sync::Arc::clone(state);
        }
        if states.len() >= MUTABLE_STATES_KEPT {
            // Forget files nobody is using right now.
            states.retain(|_, state| std::sync::Arc::strong_count(state) > 1);
        }
        let state = std::sync::Arc::new(futures::lock::Mutex::new(MutableState::default()));
        states.insert(storage_index, std::sync::Arc::clone(&state));
        state
    }

    /// Replaces the server list, keeping the status of servers that stay.
    pub fn set_servers(&self, servers: Vec<ServerEntry>) {
        let preferred = self
            .preferred
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut current = self
            .servers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = servers
            .into_iter()
            .map(|mut entry| {
                entry.preferred = preferred.contains(&entry.server_id);
                let old = current.iter().find(|(old, _)| old.server_id == entry.server_id);
                if let Some((old, _)) = old {
                    entry.speed = Arc::clone(&old.speed);
                }
                let status = old.map(|(_, s)| s.clone()).unwrap_or_default();
                (entry, status)
            })
            .collect();
        *current = next;
    }

    /// Every known server with its status.
    pub fn servers_with_status(&self) -> Vec<(ServerEntry, ServerStatus)> {
        self.servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The servers to use: those whose last probe succeeded, or all of them if none was probed yet.
    pub fn usable_servers(&self) -> Vec<ServerEntry> {
        let all = self.servers_with_status();
        let connected: Vec<ServerEntry> = all
            .iter()
            .filter(|(_, s)| s.connected)
            .map(|(e, _)| e.clone())
            .collect();
        if connected.is_empty() {
            all.into_iter().map(|(e, _)| e).collect()
        } else {
            connected
        }
    }

    /// Probes every server once (`GET /version`) and records the outcome; a server that answers
    /// is left with [`IDLE_CONNECTIONS_KEPT`] connections ready.
    pub async fn probe(&self) {
        let servers = self.servers_with_status();
        let answers = futures::future::join_all(
            servers
                .iter()
                .map(|(entry, _)| entry.timed(QUICK_DEADLINE, 0, entry.client.version())),
        )
        .await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut current = self
            .servers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((entry, _), answer) in servers.iter().zip(answers) {
            let Some((_, status)) = current.iter_mut().find(|(e, _)| e.server_id == entry.server_id) else {
                continue;
            };
            match answer {
                Ok(version) => {
                    if !status.connected {
                        status.connected_since = Some(now);
                    }
                    status.connected = true;
                    status.last_seen = Some(now);
                    status.available_space = Some(version.available_space);
                    status.last_error = None;
                    // A read asks each server for its listing and a share at once: two
                    // connections ready, so the first read after a quiet spell does not wait
                    // for a handshake.
                    entry.client.warm(IDLE_CONNECTIONS_KEPT);
                }
                Err(e) => {
                    status.connected = false;
                    status.connected_since = None;
                    status.last_error = Some(e.to_string());
                }
            }
        }
    }

    /// Opens ahead the connections an upload's writes will want while its body still arrives,
    /// before its storage index (and so its servers) is known: each usable server is warmed to its
    /// share of the writes in flight ([`upload::WRITES_IN_FLIGHT`] × N / servers). Nothing on a
    /// grid of more than 2N servers, where most would get no share: the upload warms its own
    /// servers once it knows them. Without it, a first upload after a quiet spell wrote on the two
    /// connections each server keeps and waited a TLS handshake (a round trip) for the rest.
    pub fn warm_for_upload(&self) {
        let servers = self.usable_servers();
        let total = usize::from(self.params.total);
        if servers.is_empty() || servers.len() > 2 * total {
            return;
        }
        let depth = (upload::WRITES_IN_FLIGHT * total).div_ceil(servers.len());
        for server in servers {
            server.client.warm(depth.min(upload::WRITES_IN_FLIGHT));
        }
    }

    /// The encoding parameters.
    pub fn params(&self) -> upload::UploadParams {
        self.params
    }

    /// Uploads an immutable file, convergently if the client has a convergence secret.
    pub async fn upload<R: std::io::Read + std::io::Seek + Send + 'static>(
        &self,
        input: R,
        progress: Option<upload::UploadProgress>,
    ) -> Result<upload::UploadResult, upload::UploadError> {
        self.reported_upload(self.secrets.clone(), input, None, progress)
            .await
    }

    /// A hasher for the convergent key of a plaintext as it arrives, when this client uploads
    /// convergently: feed it the whole plaintext, in order, then hand its key to
    /// [`Grid::upload_hashed`] with the same plaintext.
    pub fn convergent_hasher(&self) -> Option<crate::immutable::ConvergentHasher> {
        let secret = self.secrets.convergence.as_ref()?;
        let params = crate::immutable::ChkParams {
            needed: self.params.needed,
            total: self.params.total,
            max_segment_size: self.params.max_segment_size,
        };
        crate::immutable::ConvergentHasher::new(secret, &params).ok()
    }

    /// Uploads `size` bytes read once from `input` as they arrive, with a fresh random key (no
    /// convergence: that would need a first pass), and no spool: what a web upload with
    /// convergence off does with its body. An upload small enough for one request per share is
    /// read into memory first (at most [`upload::streamed_in_memory_limit`]). A larger one cannot
    /// be read again, so shares of servers that fail mid-upload are not re-placed: the upload
    /// succeeds if the shares placed still make it happy, and fails saying so otherwise.
    /// `input` is read on a blocking thread.
    pub async fn upload_streamed<R: std::io::Read + Send + 'static>(
        &self,
        input: R,
        size: u64,
        progress: Option<upload::UploadProgress>,
    ) -> Result<upload::UploadResult, upload::UploadError> {
        let secrets = ClientSecrets {
            convergence: None,
            ..self.secrets.clone()
        };
        let key = crate::immutable::random_key();
        if size <= upload::streamed_in_memory_limit(&self.params) {
            let data = run_blocking(move || -> std::io::Result<Vec<u8>> {
                let mut data = Vec::with_capacity(size as usize);
                std::io::Read::read_to_end(&mut std::io::Read::take(input, size), &mut data)?;
                Ok(data)
            })
            .await
            .map_err(upload::UploadError::Read)?;
            if data.len() as u64 != size {
                return Err(upload::UploadError::Encode(
                    crate::immutable::EncodeError::ShortInput {
                        got: data.len() as u64,
                        expected: size,
                    },
                ));
            }
            return self
                .reported_upload(secrets, std::io::Cursor::new(data), Some((key, size)), progress)
                .await;
        }
        self.reported_upload(secrets, upload::OnePass::new(input), Some((key, size)), progress)
            .await
    }

    /// Uploads `input` (`size` bytes) as [`Grid::upload`] would, under the convergent key a
    /// [`Grid::convergent_hasher`] computed from the same bytes as they arrived: the input is read
    /// once, to encode it, instead of once more to hash it.
    pub async fn upload_hashed<R: std::io::Read + std::io::Seek + Send + 'static>(
        &self,
        input: R,
        key: [u8; 16],
        size: u64,
        progress: Option<upload::UploadProgress>,
    ) -> Result<upload::UploadResult, upload::UploadError> {
        self.reported_upload(self.secrets.clone(), input, Some((key, size)), progress)
            .await
    }

    /// Uploads an immutable file with a fresh random key, whatever the client's convergence setting
    /// (`tessera put --no-convergence`): one pass over the input, and no deduplication.
    pub async fn upload_without_convergence<R: std::io::Read + std::io::Seek + Send + 'static>(
        &self,
        input: R,
        progress: Option<upload::UploadProgress>,
    ) -> Result<upload::UploadResult, upload::UploadError> {
        let secrets = ClientSecrets {
            convergence: None,
            ..self.secrets.clone()
        };
        self.reported_upload(secrets, input, None, progress).await
    }

    /// An upload reported to the operations registry: its phases are seen from how the upload
    /// reads its input (the convergence pass, the rewind, the encoding pass) and from its
    /// progress callback, so the upload itself knows nothing of the registry.
    async fn reported_upload<R: std::io::Read + std::io::Seek + Send + 'static>(
        &self,
        secrets: ClientSecrets,
        input: R,
        hashed: Option<([u8; 16], u64)>,
        progress: Option<upload::UploadProgress>,
    ) -> Result<upload::UploadResult, upload::UploadError> {
        use crate::operations::{OpKind, ReportedInput};
        let op = Arc::new(self.operations.start(OpKind::Upload));
        let convergent = secrets.convergence.is_some();
        let input = match hashed {
            Some((_, size)) => ReportedInput::hashed(input, Arc::clone(&op), size),
            None => {
                op.phase(if convergent { "hashing" } else { "choosing a key" });
                ReportedInput::new(input, Arc::clone(&op), convergent)
            }
        };
        let reporting = Arc::clone(&op);
        let mut progress = progress;
        let progress: upload::UploadProgress = Box::new(move |done| {
            reporting.set_progress(2, done);
            if let Some(callback) = progress.as_mut() {
                callback(done);
            }
        });
        let servers = self.usable_servers();
        let result = match hashed {
            Some((key, size)) => {
                upload::upload_with_key(
                    &servers,
                    &secrets,
                    &self.params,
                    input,
                    key,
                    size,
                    Some(progress),
                    upload::KnownShares::default(),
                )
                .await
            }
            None => upload::upload(&servers, &secrets, &self.params, input, Some(progress)).await,
        };
        if let Ok(uploaded) = &result {
            if let Some(si) = uploaded.cap.storage_index() {
                op.set_storage_index(si);
            }
            op.set_size(uploaded.size);
            for which in 0..3 {
                op.set_progress(which, uploaded.size);
            }
            let mut by_server: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
            for (shnum, names) in &uploaded.placement {
                for name in names {
                    by_server.entry(name).or_default().push(shnum.to_string());
                }
            }
            op.set_servers(
                by_server
                    .into_iter()
                    .map(|(name, shares)| format!("{name}: shares {}", shares.join(","))),
            );
        }
        op.result(&result);
        result
    }

    /// Checks an object's shares (a directory through its file cap); `None` for a cap this
    /// version does not know.
    pub async fn check(
        &self,
        cap: &crate::cap::Cap,
        options: check::CheckOptions,
    ) -> Option<check::CheckReport> {
        let file = match cap {
            crate::cap::Cap::File(file) => file,
            crate::cap::Cap::Dir(dir) => dir.file(),
            crate::cap::Cap::Unknown(_) => return None,
        };
        let servers = self.usable_servers();
        Some(check::check_file(&servers, &self.secrets, file, options).await)
    }

    /// Opens an immutable file for reading.
    pub async fn open_chk(
        &self,
        cap: crate::cap::ChkCap,
    ) -> Result<crate::immutable::ChkReader, crate::immutable::DownloadError> {
        download::open_chk(&self.usable_servers(), cap).await
    }

    /// Opens an immutable file for reading, starting the reads for byte `offset` as it locates the
    /// shares ([`download::open_chk_at`]).
    pub async fn open_chk_at(
        &self,
        cap: crate::cap::ChkCap,
        offset: u64,
    ) -> Result<crate::immutable::ChkReader, crate::immutable::DownloadError> {
        download::open_chk_at(&self.usable_servers(), cap, offset).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quickest_small_request_is_the_round_trip() {
        let ms = Duration::from_millis;
        let near = ServerSpeed::default();
        // A first request that opened a connection, then quick ones, then ones queued behind an
        // upload's writes: the average says far, the quickest still says near.
        near.record(ms(30), 0);
        for _ in 0..3 {
            near.record(ms(1), 0);
        }
        for _ in 0..3 {
            near.record(ms(40), 0);
        }
        // Big transfers say nothing of the round trip.
        near.record(ms(200), 1 << 20);
        let fastest = near.fastest_round_trip().expect("answered");
        assert!(fastest < ms(10), "{fastest:?}");
        assert!(near.round_trip().expect("answered") > ms(10));

        let far = ServerSpeed::default();
        for _ in 0..5 {
            far.record(ms(50), 0);
        }
        assert_eq!(far.fastest_round_trip(), Some(ms(50)));
        // A server that moved away is seen as far again within a few dozen requests.
        for _ in 0..60 {
            near.record(ms(80), 0);
        }
        assert!(near.fastest_round_trip().expect("answered") > ms(50));
    }
}
