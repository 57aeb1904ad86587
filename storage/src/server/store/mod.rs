//! [`StorageServer`]: the operations of Tahoe's storage server over the containers, the lease index
//! and the in-memory upload table. See the `server` module docs for the design.
//!
//! The store itself (opening, the stripe locks, space, counters, corruption advisories, deleting
//! a share) is here; its operations are split as Tahoe's server splits them: `reads` (either
//! kind), `uploads` (immutable buckets), `slots` (mutable read-test-write), `leases` and `expiry`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::advisory::{self, CorruptionAdvisory};
use super::config::StorageConfig;
use super::container::{LeaseContainer, OpenShare, sniff_file};
use super::fsutil::{JOURNAL_PREFIX, Layout, TEMP_PREFIX, parse_shnum, sync_dir};
use super::immutable;
use super::index::{IndexState, LeaseIndex, LeaseKey};
use super::lease_checker::LeaseCheckerState;
use super::mutable::{self, MAX_MUTABLE_SHARE_SIZE};
use super::stats::{DiskStats, OperationStats, Operations};
use crate::api::VersionInfo;
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

mod expiry;
mod leases;
mod reads;
mod slots;
mod uploads;

pub use expiry::ExpirationReport;
pub(in crate::server) use expiry::expiry_threshold;
pub use reads::ShareReader;
use uploads::Upload;

/// Number of lock stripes; operations on one storage index are serialized by its stripe.
const STRIPES: usize = 64;

/// The most share data one read-test-write answers through its read vectors (all shares and
/// vectors together). Tahoe's clients read a checkstring there (41 or 57 bytes per share) and read
/// whole shares with GET; without a bound, 30 vectors over every share of a large slot would be
/// held in memory at once.
pub const MAX_READ_VECTOR_ANSWER: u64 = 1 << 20;
/// Owner number Tahoe gives leases created by an allocation.
const OWNER_ALLOCATE: u32 = 0;
/// Owner number Tahoe gives leases added by `add_lease` and by mutable writes (0 marks an empty
/// mutable slot).
const OWNER_ADD: u32 = 1;

/// A snapshot of the store's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageStatus {
    /// What [`StorageServer::version`] advertises: the largest immutable share accepted now.
    pub available_space: u64,
    /// Bytes of complete share containers held.
    pub used_space: u64,
    /// The configured reserved space.
    pub reserved_space: u64,
    /// The configured maximum.
    pub max_space: Option<u64>,
    /// Whether the store refuses writes.
    pub readonly: bool,
    /// Complete immutable shares held.
    pub immutable_shares: u64,
    /// Mutable shares held.
    pub mutable_shares: u64,
    /// Immutable uploads open.
    pub uploads_in_progress: u64,
    /// The last expiry pass with expiration enabled.
    pub last_expiration: Option<ExpirationReport>,
}

/// Everything an operator watches: Tahoe's `get_stats` figures and the store's own.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageStats {
    /// Whether a new immutable share would be accepted (disk space left, not read-only).
    pub accepting_immutable_shares: bool,
    /// Bytes reserved for immutable uploads in progress (Tahoe's `allocated`).
    pub allocated: u64,
    /// The configured reserved space.
    pub reserved_space: u64,
    /// The disk, or `None` when statvfs fails.
    pub disk: Option<DiskStats>,
    /// Each operation's count and latencies.
    pub operations: Vec<OperationStats>,
    /// Bytes written to immutable uploads and mutable shares.
    pub bytes_added: u64,
    /// Bytes of share data read.
    pub bytes_read: u64,
    /// The store's counters.
    pub status: StorageStatus,
    /// Buckets (storage indexes) counted by the last finished lease-checker cycle.
    pub bucket_count: Option<u64>,
}

/// The lock stripe of a storage index.
fn stripe_of(si: StorageIndex) -> usize {
    usize::from(si.0[0]) % STRIPES
}

/// The share store. All methods take `&self`, may block on disk IO, and are safe to call from many
/// threads at once (async callers use `spawn_blocking`, as [`LocalStorageClient`](super::LocalStorageClient)
/// does).
pub struct StorageServer {
    pub(super) config: StorageConfig,
    pub(super) layout: Layout,
    index: LeaseIndex,
    state: Mutex<State>,
    stripes: Vec<Mutex<()>>,
    /// Per stripe, how many mutable shares have been edited in place (behind their journal): a
    /// reader that opened a share before such an edit must not read on from the same file.
    edits_in_place: Vec<AtomicU64>,
    /// Serializes creating and removing directories under `incoming/` (prefix directories are shared
    /// between storage indexes).
    incoming_dirs: Mutex<()>,
    /// Tests replace the statvfs answer with this.
    disk_free_override: Mutex<Option<u64>>,
    /// Operation counts and latencies (Tahoe's `get_stats`).
    pub(super) operations: Operations,
    /// The lease checker's running cycle and history.
    pub(super) lease_checker: Mutex<LeaseCheckerState>,
    /// Held while a lease-checker cycle runs.
    pub(super) lease_cycle_running: Mutex<()>,
    /// Held (locked) for the server's lifetime, so two servers never share a directory.
    _dir_lock: File,
}

impl std::fmt::Debug for StorageServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageServer")
            .field("storage_dir", &self.config.storage_dir)
            .field("readonly", &self.config.readonly)
            .finish_non_exhaustive()
    }
}

/// Counters and the upload table, behind one mutex that is never held across disk IO.
#[derive(Debug, Default)]
struct State {
    uploads: HashMap<(StorageIndex, ShareNum), Upload>,
    used_space: u64,
    pending_space: u64,
    immutable_shares: u64,
    mutable_shares: u64,
    last_expiration: Option<ExpirationReport>,
    /// An index update failed: do not mark the index clean at shutdown, so it is rebuilt.
    index_dirty: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn io_error(what: impl std::fmt::Display, err: io::Error) -> StorageError {
    if is_disk_full(&err) {
        // Not a fault of the server: the disk (or this user's quota) filled while writing. Reported
        // as the same "no space" refusal as `reserved_space`, so clients say the server is full.
        tracing::warn!(error = %err, "storage: {what}: the disk is full");
        return StorageError::NoSpace {
            needed: 0,
            available: 0,
        };
    }
    tracing::error!(error = %err, "storage: {what}");
    StorageError::Internal(format!("{what}: {err}"))
}

/// ENOSPC, EDQUOT, or EFBIG (a file size limit): writing more cannot succeed until space is freed.
pub(super) fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

pub(super) fn not_found(kind: ShareKind, si: StorageIndex, shnum: ShareNum) -> StorageError {
    let kind = match kind {
        ShareKind::Immutable => "immutable",
        ShareKind::Mutable => "mutable",
    };
    StorageError::NotFound(format!("no {kind} share {shnum} of storage index {si}"))
}

/// How long a busy storage-directory lock is retried before the directory counts as another
/// server's (a process forked elsewhere in this one holds a just-released lock until it execs).
pub(crate) const LOCK_BUSY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Totals from walking `shares/` at startup.
#[derive(Debug, Default)]
struct Census {
    used_space: u64,
    immutable_shares: u64,
    mutable_shares: u64,
    indexed_leases: u64,
    repaired: u64,
}

impl StorageServer {
    /// Opens (creating if needed) the store in `config.storage_dir`: locks the directory, wipes
    /// `shares/incoming/`, counts the shares held, and opens the lease index, rebuilding it from the
    /// share files if it cannot be trusted.
    pub fn open(config: StorageConfig) -> Result<StorageServer, StorageError> {
        let layout = Layout::new(&config.storage_dir);
        fs::create_dir_all(&layout.shares).map_err(|e| io_error("cannot create the shares directory", e))?;
        let dir_lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(layout.root.join("lock"))
            .map_err(|e| io_error("cannot open the storage directory lock", e))?;
        // A lock just released can still be held for a moment by a process forked while it was
        // taken (the child has the file until it execs), so a busy lock is retried briefly before
        // it counts as another server's. (POSIX record locks are not inherited by a fork, but they
        // belong to the process: two servers in one process would both get one, and closing any
        // descriptor of the file drops it.)
        let busy_since = std::time::Instant::now();
        loop {
            match dir_lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if busy_since.elapsed() < LOCK_BUSY_GRACE => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(StorageError::Internal(format!(
                        "the storage directory {} is in use by another server",
                        layout.root.display()
                    )));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(io_error("cannot lock the storage directory", e));
                }
            }
        }
        match fs::remove_dir_all(&layout.incoming) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("cannot clear incoming uploads", e)),
        }
        fs::create_dir_all(&layout.incoming)
            .map_err(|e| io_error("cannot create the incoming directory", e))?;

        let (index, index_state) =
            LeaseIndex::open(&layout.root).map_err(|e| io_error("cannot open the lease index", e))?;
        let rebuild = matches!(index_state, IndexState::Rebuild(_));
        let census = census(&layout, rebuild.then_some(&index))
            .map_err(|e| io_error("cannot read the shares directory", e))?;
        if let IndexState::Rebuild(reason) = &index_state {
            index
                .flush()
                .map_err(|e| io_error("cannot write the lease index", io::Error::other(e)))?;
            tracing::warn!(
                reason = %reason,
                shares = census.immutable_shares + census.mutable_shares,
                leases = census.indexed_leases,
                repaired_containers = census.repaired,
                "storage: rebuilt the lease index from the share files"
            );
        }
        tracing::info!(
            storage_dir = %layout.root.display(),
            used_space = census.used_space,
            immutable_shares = census.immutable_shares,
            mutable_shares = census.mutable_shares,
            "storage: share store opened"
        );
        let state = State {
            used_space: census.used_space,
            immutable_shares: census.immutable_shares,
            mutable_shares: census.mutable_shares,
            ..State::default()
        };
        Ok(StorageServer {
            config,
            layout,
            index,
            state: Mutex::new(state),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            edits_in_place: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            incoming_dirs: Mutex::new(()),
            disk_free_override: Mutex::new(None),
            operations: Operations::default(),
            lease_checker: Mutex::new(LeaseCheckerState::default()),
            lease_cycle_running: Mutex::new(()),
            _dir_lock: dir_lock,
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// What `GET /storage/v1/version` reports.
    pub fn version(&self) -> VersionInfo {
        let available = self.available_space();
        VersionInfo {
            maximum_immutable_share_size: available,
            maximum_mutable_share_size: MAX_MUTABLE_SHARE_SIZE,
            available_space: available,
            application_version: self.config.application_version.as_bytes().to_vec(),
        }
    }

    /// Records a client's report that a share is corrupt: a report file and an error log line.
    /// `NotFound` if the share is not held. Skipped (still `Ok`) when the disk has no room for it.
    pub fn advise_corrupt_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<(), StorageError> {
        drop(self.open_for_read(kind, si, shnum)?);
        let advisory = CorruptionAdvisory {
            time: self.config.clock.now(),
            kind,
            storage_index: si,
            shnum,
            reason: reason.to_owned(),
        };
        tracing::error!(%si, shnum, ?kind, reason, "storage: client reports a corrupt share");
        let report_len = advisory::render(&advisory).len() as u64;
        if report_len > self.disk_available() {
            tracing::warn!(%si, shnum, "storage: no disk space for a corruption report; not written");
            return Ok(());
        }
        advisory::write(&self.layout.advisories, &advisory)
            .map_err(|e| io_error("cannot write a corruption report", e))?;
        Ok(())
    }

    /// The newest `n` corruption reports on disk (oldest of them first) and how many there are;
    /// only those `n` are read.
    pub fn recent_corruption_advisories(
        &self,
        n: usize,
    ) -> Result<(Vec<CorruptionAdvisory>, usize), StorageError> {
        advisory::newest(&self.layout.advisories, n)
            .map_err(|e| io_error("cannot read corruption reports", e))
    }

    /// Every corruption report on disk, oldest first.
    pub fn corruption_advisories(&self) -> Result<Vec<CorruptionAdvisory>, StorageError> {
        advisory::list(&self.layout.advisories).map_err(|e| io_error("cannot read corruption reports", e))
    }

    /// Deletes a share file: index entries of its leases, the file, the directory entry (fsynced),
    /// the counters. The caller removes the SI directory if it became empty.
    pub(super) fn delete_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        share: &dyn LeaseContainer,
    ) -> io::Result<u64> {
        let path = self.layout.share_path(si, shnum);
        let len = share.container_len();
        fs::remove_file(&path)?;
        sync_dir(&self.layout.share_dir(si))?;
        let storage = share.secret_storage();
        for (_, record) in share.leases() {
            self.index_remove(&LeaseKey {
                expiry: u64::from(record.expiry),
                kind,
                si,
                shnum,
                lease_id: storage.index_id(&record.renew),
            });
        }
        let mut state = lock(&self.state);
        state.used_space = state.used_space.saturating_sub(len);
        match kind {
            ShareKind::Immutable => state.immutable_shares = state.immutable_shares.saturating_sub(1),
            ShareKind::Mutable => state.mutable_shares = state.mutable_shares.saturating_sub(1),
        }
        Ok(len)
    }

    /// The store's counters now.
    pub fn status(&self) -> StorageStatus {
        let available_space = self.available_space();
        let state = lock(&self.state);
        StorageStatus {
            available_space,
            used_space: state.used_space,
            reserved_space: self.config.reserved_space,
            max_space: self.config.max_space,
            readonly: self.config.readonly,
            immutable_shares: state.immutable_shares,
            mutable_shares: state.mutable_shares,
            uploads_in_progress: state.uploads.len() as u64,
            last_expiration: state.last_expiration.clone(),
        }
    }

    // ----- space -----

    /// The disk's figures (Tahoe's `get_disk_stats`); the tests' override stands for free space.
    pub fn disk_stats(&self) -> Option<DiskStats> {
        let reserved = self.config.reserved_space;
        let (total, free_for_root, free_for_nonroot) = match *lock(&self.disk_free_override) {
            Some(free) => (free.max(1 << 30), free, free),
            None => {
                let stats = fs4::statvfs(&self.layout.root).ok()?;
                (stats.total_space(), stats.free_space(), stats.available_space())
            }
        };
        let avail = if self.config.readonly {
            0
        } else {
            free_for_nonroot.saturating_sub(reserved)
        };
        Some(DiskStats {
            total,
            used: total.saturating_sub(free_for_root),
            free_for_root,
            free_for_nonroot,
            avail,
        })
    }

    /// Every figure of [`StorageStats`] now.
    pub fn stats(&self) -> StorageStats {
        let status = self.status();
        let allocated = lock(&self.state).pending_space;
        let disk = self.disk_stats();
        let bucket_count = lock(&self.lease_checker)
            .last()
            .map(|cycle| cycle.space_recovered.examined.all.buckets);
        StorageStats {
            accepting_immutable_shares: !self.config.readonly && status.available_space > 0,
            allocated,
            reserved_space: self.config.reserved_space,
            disk,
            operations: self.operations.snapshot(),
            bytes_added: self
                .operations
                .bytes_added
                .load(std::sync::atomic::Ordering::Relaxed),
            bytes_read: self
                .operations
                .bytes_read
                .load(std::sync::atomic::Ordering::Relaxed),
            status,
            bucket_count,
        }
    }

    /// Free disk space minus the reservation (statvfs; `u64::MAX` if it cannot be measured, as Tahoe
    /// advertises 2^64 then).
    pub(super) fn disk_available(&self) -> u64 {
        let free = match *lock(&self.disk_free_override) {
            Some(free) => Some(free),
            None => fs4::available_space(&self.layout.root).ok(),
        };
        match free {
            Some(free) => free.saturating_sub(self.config.reserved_space),
            None => u64::MAX,
        }
    }

    /// What is left: (disk, max_space) allowances after pending uploads; zero when read-only.
    fn space_left(&self, state: &State, disk: u64) -> (u64, u64) {
        if self.config.readonly {
            return (0, 0);
        }
        let disk_left = disk.saturating_sub(state.pending_space);
        let max_left = match self.config.max_space {
            Some(max) => max.saturating_sub(state.used_space.saturating_add(state.pending_space)),
            None => u64::MAX,
        };
        (disk_left, max_left)
    }

    /// The largest immutable share that would be accepted now (its data; the container's header and
    /// lease must also fit under `max_space`).
    fn available_space(&self) -> u64 {
        let disk = self.disk_available();
        let state = lock(&self.state);
        let (disk_left, max_left) = self.space_left(&state, disk);
        disk_left.min(max_left.saturating_sub(immutable::OVERHEAD))
    }

    /// Whether `bytes` more of share containers fit.
    fn fits(&self, bytes: u64) -> bool {
        let disk = self.disk_available();
        let state = lock(&self.state);
        let (disk_left, max_left) = self.space_left(&state, disk);
        !self.config.readonly && bytes <= disk_left && bytes <= max_left
    }

    // ----- helpers -----

    pub(super) fn lock_si(&self, si: StorageIndex) -> MutexGuard<'_, ()> {
        lock(&self.stripes[stripe_of(si)])
    }

    /// The share files of `si` and their kinds.
    fn shares_of(&self, si: StorageIndex) -> Result<BTreeMap<ShareNum, ShareKind>, StorageError> {
        let dir = self.layout.share_dir(si);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io_error(format!("cannot list the shares of {si}"), e)),
        };
        let mut out = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(format!("cannot list the shares of {si}"), e))?;
            let Some(shnum) = entry.file_name().to_str().and_then(parse_shnum) else {
                continue;
            };
            match sniff_file(&entry.path()) {
                Ok(Some(kind)) => {
                    out.insert(shnum, kind);
                }
                Ok(None) => {
                    tracing::warn!(%si, shnum, "storage: ignoring a file that is not a share container")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(format!("cannot read share {si}/{shnum}"), e)),
            }
        }
        Ok(out)
    }

    /// Simulates a crash for tests: the server goes away without marking the lease index clean.
    #[cfg(test)]
    pub(super) fn crash(self) {
        lock(&self.state).index_dirty = true;
        drop(self);
    }

    /// Pretends the disk has `free` bytes free (tests).
    #[cfg(test)]
    pub(super) fn set_disk_free(&self, free: Option<u64>) {
        *lock(&self.disk_free_override) = free;
    }

    /// The lease index's entries (tests).
    #[cfg(test)]
    pub(super) fn index_entries(&self) -> Vec<LeaseKey> {
        self.index.all().expect("invariant: the test index is readable")
    }
}

impl Drop for StorageServer {
    fn drop(&mut self) {
        if lock(&self.state).index_dirty {
            tracing::warn!("storage: lease index not marked clean; it will be rebuilt at the next start");
            return;
        }
        if let Err(e) = self.index.mark_clean(&self.layout.root) {
            tracing::warn!(error = %e, "storage: cannot mark the lease index clean; it will be rebuilt");
        }
    }
}

/// Walks `shares/` at startup: removes scratch files, sums container sizes, counts shares, and (when
/// `rebuild` is given) repairs immutable containers and indexes every lease.
fn census(layout: &Layout, rebuild: Option<&LeaseIndex>) -> io::Result<Census> {
    let mut census = Census::default();
    for prefix in fs::read_dir(&layout.shares)? {
        let prefix = prefix?;
        if prefix.file_name() == "incoming" || !prefix.file_type()?.is_dir() {
            continue;
        }
        for bucket in fs::read_dir(prefix.path())? {
            let bucket = bucket?;
            let Some(si) = bucket
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<StorageIndex>().ok())
            else {
                continue;
            };
            if !bucket.file_type()?.is_dir() {
                continue;
            }
            // Journals first: an interrupted in-place write is finished before its share is read.
            let mut files = fs::read_dir(bucket.path())?.collect::<io::Result<Vec<_>>>()?;
            files.sort_by_key(|f| !f.file_name().to_string_lossy().starts_with(JOURNAL_PREFIX));
            for file in files {
                let name = file.file_name();
                let Some(name) = name.to_str() else { continue };
                let path = file.path();
                if let Some(shnum) = name.strip_prefix(JOURNAL_PREFIX) {
                    // An in-place write was interrupted: finish it (or drop a torn journal).
                    let share = bucket.path().join(shnum);
                    match mutable::recover_journal(&path, &share) {
                        Ok(replayed) => {
                            tracing::warn!(%si, shnum, replayed, "storage: recovered an interrupted mutable write")
                        }
                        Err(e) => {
                            tracing::error!(%si, shnum, error = %e, "storage: cannot recover an interrupted mutable write")
                        }
                    }
                    continue;
                }
                if name.starts_with(TEMP_PREFIX) {
                    fs::remove_file(&path)?;
                    continue;
                }
                let Some(shnum) = parse_shnum(name) else { continue };
                let kind = match sniff_file(&path) {
                    Ok(Some(kind)) => kind,
                    Ok(None) => {
                        tracing::warn!(%si, shnum, "storage: ignoring a file that is not a share container");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(%si, shnum, error = %e, "storage: cannot read a share file");
                        continue;
                    }
                };
                if let Some(index) = rebuild
                    && let Err(e) = index_share(index, kind, si, shnum, &path, &mut census)
                {
                    tracing::error!(%si, shnum, error = %e, "storage: cannot index the leases of a share");
                }
                match kind {
                    ShareKind::Immutable => census.immutable_shares += 1,
                    ShareKind::Mutable => census.mutable_shares += 1,
                }
                census.used_space += fs::metadata(&path)?.len();
            }
        }
    }
    Ok(census)
}

/// Adds one share's leases to a rebuilding index (repairing an immutable container first).
fn index_share(
    index: &LeaseIndex,
    kind: ShareKind,
    si: StorageIndex,
    shnum: ShareNum,
    path: &std::path::Path,
    census: &mut Census,
) -> io::Result<()> {
    if kind == ShareKind::Immutable && immutable::repair(path)? {
        tracing::warn!(%si, shnum, "storage: repaired an interrupted lease change");
        census.repaired += 1;
    }
    let mut share = OpenShare::open(path, kind, false)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "container changed kind"))?;
    let container = share.leases_mut();
    let storage = container.secret_storage();
    let leases = container.leases();
    if leases.is_empty() {
        index
            .insert(&LeaseKey::sentinel(kind, si, shnum))
            .map_err(io::Error::other)?;
    }
    for (_, record) in leases {
        index
            .insert(&LeaseKey {
                expiry: u64::from(record.expiry),
                kind,
                si,
                shnum,
                lease_id: storage.index_id(&record.renew),
            })
            .map_err(io::Error::other)?;
        census.indexed_leases += 1;
    }
    Ok(())
}
