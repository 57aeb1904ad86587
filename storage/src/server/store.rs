//! [`StorageServer`]: the operations of Tahoe's storage server over the containers, the lease index
//! and the in-memory upload table. See the `server` module docs for the design.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::advisory::{self, CorruptionAdvisory};
use super::config::{ExpirationMode, StorageConfig};
use super::container::{LeaseContainer, OpenShare, clamp_read, sniff_file};
use super::fsutil::{
    JOURNAL_PREFIX, Layout, TEMP_PREFIX, create_dir_durable, parse_shnum, read_vec_at, remove_dir_if_empty,
    sync_dir, write_all_at,
};
use super::immutable::{self, ImmutableShare};
use super::index::{IndexState, LeaseIndex, LeaseKey};
use super::lease::{LEASE_DURATION, LeaseRecord, SecretStorage, ct_eq, expiry_for_renewal_at};
use super::lease_checker::LeaseCheckerState;
use super::mutable::{self, MAX_MUTABLE_SHARE_SIZE, MutableShare, NewVersion};
use super::ranges::RangeSet;
use super::stats::{DiskStats, Operation, OperationStats, Operations};
use crate::api::{
    Allocation, LeaseSecrets, ReadTestWriteResult, ReadVector, TestWriteVectors, UploadProgress,
    UploadSecret, VersionInfo, WriteEnabler,
};
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

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

/// The result of one expiry pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpirationReport {
    /// When the pass ran (by the server's clock).
    pub time: SystemTime,
    /// Whether expiration was enabled (a disabled pass examines nothing).
    pub enabled: bool,
    /// Index entries with an expiry that made them candidates.
    pub examined_leases: u64,
    /// Leases removed from their containers.
    pub expired_leases: u64,
    /// Candidates left alone because their share kind is not subject to expiry.
    pub skipped_leases: u64,
    /// Shares deleted because their last lease expired (or they had none).
    pub deleted_shares: u64,
    /// Bytes freed: deleted containers plus truncated lease records.
    pub reclaimed_bytes: u64,
    /// Index entries that no longer matched a container and were dropped or corrected.
    pub stale_index_entries: u64,
}

impl ExpirationReport {
    fn empty(time: SystemTime, enabled: bool) -> Self {
        ExpirationReport {
            time,
            enabled,
            examined_leases: 0,
            expired_leases: 0,
            skipped_leases: 0,
            deleted_shares: 0,
            reclaimed_bytes: 0,
            stale_index_entries: 0,
        }
    }
}

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

/// A share held open for reading (see [`StorageServer::open_share`]).
#[derive(Debug)]
pub struct ShareReader {
    kind: ShareKind,
    si: StorageIndex,
    shnum: ShareNum,
    share: OpenShare,
    edits_seen: u64,
}

impl ShareReader {
    /// The length of the share's data as opened.
    pub fn data_len(&self) -> u64 {
        self.share.data_len()
    }
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

/// An immutable upload in progress.
#[derive(Debug)]
struct Upload {
    secret: Vec<u8>,
    allocated: u64,
    /// Space reserved for it (the whole container).
    reserved: u64,
    last_write: SystemTime,
    lease: LeaseRecord,
    file: Arc<Mutex<UploadFile>>,
}

#[derive(Debug)]
struct UploadFile {
    file: File,
    written: RangeSet,
}

/// What read-test-write does to one share once its tests pass.
#[derive(Debug)]
enum SharePlan<'a> {
    /// Nothing (leases aside).
    Keep,
    /// Delete the share (new length 0).
    Delete,
    /// Write this new version.
    Rewrite(PlannedVersion<'a>),
}

/// The next version of a mutable share, as planned before anything is written.
#[derive(Debug)]
struct PlannedVersion<'a> {
    version: u8,
    nodeid: [u8; 20],
    write_enabler: [u8; 32],
    writes: &'a [crate::api::WriteVector],
    new_length: Option<u64>,
    /// The data length after the writes and `new_length`.
    data_len: u64,
    /// The lease slots with the request's lease added or renewed.
    slots: Vec<Option<LeaseRecord>>,
    /// The expiry the request's lease had, if it was renewed.
    renewed_from: Option<u32>,
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
        match dir_lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Internal(format!(
                    "the storage directory {} is in use by another server",
                    layout.root.display()
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error("cannot lock the storage directory", e)),
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

    /// Opens immutable uploads (tahoe-interfaces.md §2.4). `already_have` lists every immutable share
    /// held for `si`, whose leases are renewed (or added) with `lease`; a share number with an upload
    /// in progress is in neither set (unless that upload has been idle for
    /// [`StorageConfig::upload_takeover_after`] and was allocated with another upload secret: then it
    /// is aborted and the share allocated to the caller); the others are allocated while space
    /// remains. Each refusal's reason is in [`Allocation::refused`]. A read-only store allocates
    /// nothing.
    pub fn allocate_buckets(
        &self,
        si: StorageIndex,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        share_numbers: &BTreeSet<ShareNum>,
        allocated_size: u64,
    ) -> Result<Allocation, StorageError> {
        let _timer = self.operations.time(Operation::Allocate);
        let _si_guard = self.lock_si(si);
        let existing = self.shares_of(si)?;
        let now = self.config.clock.now();
        let mut already_have = BTreeSet::new();
        for (&shnum, &kind) in &existing {
            if kind != ShareKind::Immutable {
                continue;
            }
            already_have.insert(shnum);
            let path = self.layout.share_path(si, shnum);
            let mut share = ImmutableShare::open(&path, true)
                .map_err(|e| io_error(format!("cannot open share {si}/{shnum}"), e))?;
            self.add_or_renew(
                &mut share,
                ShareKind::Immutable,
                si,
                shnum,
                lease,
                OWNER_ALLOCATE,
                now,
                false,
            )?;
        }
        let mut allocated = BTreeSet::new();
        let mut refused = BTreeMap::new();
        let wanted = || {
            share_numbers
                .iter()
                .copied()
                .filter(|s| !existing.contains_key(s))
        };
        if self.config.readonly {
            refused.extend(wanted().map(|shnum| (shnum, "this storage server is read-only".to_owned())));
            return Ok(Allocation {
                already_have,
                allocated,
                refused,
            });
        }
        let Some(reserve) = allocated_size.checked_add(immutable::OVERHEAD) else {
            refused.extend(
                wanted().map(|shnum| (shnum, format!("a share of {allocated_size} bytes is too large"))),
            );
            return Ok(Allocation {
                already_have,
                allocated,
                refused,
            });
        };
        let disk = self.disk_available();
        for shnum in wanted() {
            let stale = {
                let mut state = lock(&self.state);
                let mut stale = None;
                if let Some(current) = state.uploads.get(&(si, shnum)) {
                    let idle = now.duration_since(current.last_write).unwrap_or_default();
                    if ct_eq(&current.secret, &upload.0) {
                        refused.insert(
                            shnum,
                            format!(
                                "share {shnum} of this storage index is already allocated to this upload"
                            ),
                        );
                        continue;
                    }
                    if idle < self.config.upload_takeover_after {
                        refused.insert(
                            shnum,
                            format!(
                                "share {shnum} of this storage index is being uploaded by another client, \
                                 last written {} s ago (taken over after {} s idle)",
                                idle.as_secs(),
                                self.config.upload_takeover_after.as_secs()
                            ),
                        );
                        continue;
                    }
                    // The other upload has gone quiet: its client most likely vanished. Its space is
                    // released here and its partial file replaced below; its writes now find no upload.
                    stale = state.uploads.remove(&(si, shnum));
                    if let Some(entry) = &stale {
                        state.pending_space = state.pending_space.saturating_sub(entry.reserved);
                    }
                }
                let (disk_left, max_left) = self.space_left(&state, disk);
                if allocated_size > disk_left || reserve > max_left {
                    refused.insert(
                        shnum,
                        format!(
                            "this server is full: share {shnum} needs {allocated_size} bytes, {} available",
                            disk_left.min(max_left)
                        ),
                    );
                    stale.map(|entry| (entry, false))
                } else {
                    state.pending_space += reserve;
                    stale.map(|entry| (entry, true))
                }
            };
            let proceed = match stale {
                Some((entry, proceed)) => {
                    let idle = now.duration_since(entry.last_write).unwrap_or_default();
                    tracing::info!(%si, shnum, idle_secs = idle.as_secs(), "storage: took over an idle upload for a new client");
                    drop(entry);
                    self.discard_incoming(si, shnum);
                    proceed
                }
                None => !refused.contains_key(&shnum),
            };
            if !proceed {
                continue;
            }
            match self.create_upload(si, shnum, allocated_size, lease, now) {
                Ok((file, record)) => {
                    let upload = Upload {
                        secret: upload.0.clone(),
                        allocated: allocated_size,
                        reserved: reserve,
                        last_write: now,
                        lease: record,
                        file: Arc::new(Mutex::new(UploadFile {
                            file,
                            written: RangeSet::default(),
                        })),
                    };
                    lock(&self.state).uploads.insert((si, shnum), upload);
                    allocated.insert(shnum);
                }
                Err(e) => {
                    {
                        let mut state = lock(&self.state);
                        state.pending_space = state.pending_space.saturating_sub(reserve);
                    }
                    self.discard_incoming(si, shnum);
                    if is_disk_full(&e) {
                        tracing::warn!(%si, shnum, error = %e, "storage: no room for a new upload");
                        refused.insert(
                            shnum,
                            format!("this server is full: no room for share {shnum} ({e})"),
                        );
                        continue;
                    }
                    return Err(io_error(format!("cannot create upload {si}/{shnum}"), e));
                }
            }
        }
        if !allocated.is_empty() {
            tracing::debug!(%si, allocated = ?allocated, allocated_size, "storage: allocated buckets");
        }
        Ok(Allocation {
            already_have,
            allocated,
            refused,
        })
    }

    fn create_upload(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        allocated_size: u64,
        lease: &LeaseSecrets,
        now: SystemTime,
    ) -> io::Result<(File, LeaseRecord)> {
        let record = LeaseRecord::new(
            SecretStorage::Hashed,
            OWNER_ALLOCATE,
            &lease.renew,
            &lease.cancel,
            expiry_for_renewal_at(now),
            [0; 20],
        );
        let _dirs = lock(&self.incoming_dirs);
        fs::create_dir_all(self.layout.incoming_dir(si))?;
        let file =
            immutable::create_incoming(&self.layout.incoming_path(si, shnum), allocated_size, &record)?;
        Ok((file, record))
    }

    /// Writes `data` at `offset` of an open upload. Ranges may come in any order and may overlap
    /// bytes already written if they agree. When the last missing byte arrives the share is made
    /// durable and moved into place, and the answer says `complete`.
    pub fn write_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
        offset: u64,
        data: &[u8],
    ) -> Result<UploadProgress, StorageError> {
        let _timer = self.operations.time(Operation::Write);
        let _si_guard = self.lock_si(si);
        let (handle, allocated) = {
            let state = lock(&self.state);
            let Some(entry) = state.uploads.get(&(si, shnum)) else {
                return Err(StorageError::NotFound(format!(
                    "no upload in progress for share {shnum} of storage index {si}"
                )));
            };
            if !ct_eq(&entry.secret, &upload.0) {
                return Err(StorageError::UploadSecretMismatch);
            }
            (entry.file.clone(), entry.allocated)
        };
        let end = offset.saturating_add(data.len() as u64);
        if end > allocated {
            return Err(StorageError::BeyondAllocation { end, allocated });
        }
        let mut upload_file = lock(&handle);
        for overlap in upload_file.written.intersections(offset, end) {
            let on_disk = read_vec_at(
                &upload_file.file,
                immutable::HEADER_LEN + overlap.start,
                overlap.end - overlap.start,
            )
            .map_err(|e| io_error(format!("cannot read upload {si}/{shnum}"), e))?;
            let offered = &data[(overlap.start - offset) as usize..(overlap.end - offset) as usize];
            if on_disk != offered {
                return Err(StorageError::Conflict { offset });
            }
        }
        write_all_at(&upload_file.file, data, immutable::HEADER_LEN + offset)
            .map_err(|e| io_error(format!("cannot write upload {si}/{shnum}"), e))?;
        Operations::add_bytes(&self.operations.bytes_added, data.len() as u64);
        upload_file.written.insert(offset, end);
        let required = upload_file.written.gaps(0, allocated);
        let now = self.config.clock.now();
        if let Some(entry) = lock(&self.state).uploads.get_mut(&(si, shnum)) {
            entry.last_write = now;
        }
        if !required.is_empty() {
            return Ok(UploadProgress {
                complete: false,
                required,
            });
        }
        self.finish_upload(si, shnum, &upload_file.file)?;
        Ok(UploadProgress {
            complete: true,
            required: Vec::new(),
        })
    }

    /// Makes a complete upload durable and moves it into `shares/` (see the module docs for the
    /// order). Called with the SI stripe held.
    fn finish_upload(&self, si: StorageIndex, shnum: ShareNum, file: &File) -> Result<(), StorageError> {
        let _timer = self.operations.time(Operation::Close);
        let (lease, reserved) = {
            let state = lock(&self.state);
            let entry = state
                .uploads
                .get(&(si, shnum))
                .ok_or_else(|| StorageError::Internal("upload vanished while completing".to_owned()))?;
            (entry.lease.clone(), entry.reserved)
        };
        let what = || format!("cannot complete share {si}/{shnum}");
        file.sync_all().map_err(|e| io_error(what(), e))?;
        let final_dir = self.layout.share_dir(si);
        create_dir_durable(&final_dir).map_err(|e| io_error(what(), e))?;
        let final_path = self.layout.share_path(si, shnum);
        if final_path.exists() {
            // Only a mutable share with the same storage index could be here; never clobber it.
            return Err(StorageError::Internal(format!(
                "share {si}/{shnum} already exists"
            )));
        }
        self.index_insert(&LeaseKey {
            expiry: u64::from(lease.expiry),
            kind: ShareKind::Immutable,
            si,
            shnum,
            lease_id: SecretStorage::Hashed.index_id(&lease.renew),
        });
        fs::rename(self.layout.incoming_path(si, shnum), &final_path).map_err(|e| io_error(what(), e))?;
        sync_dir(&final_dir).map_err(|e| io_error(what(), e))?;
        {
            let mut state = lock(&self.state);
            state.uploads.remove(&(si, shnum));
            state.pending_space = state.pending_space.saturating_sub(reserved);
            state.used_space += reserved;
            state.immutable_shares += 1;
        }
        self.remove_incoming_dirs(si);
        tracing::debug!(%si, shnum, "storage: share complete");
        Ok(())
    }

    fn remove_incoming_dirs(&self, si: StorageIndex) {
        let _dirs = lock(&self.incoming_dirs);
        if remove_dir_if_empty(&self.layout.incoming_dir(si)) {
            remove_dir_if_empty(&self.layout.incoming_prefix_dir(si));
        }
    }

    /// Aborts an upload: deletes the partial file and releases its space.
    pub fn abort_upload(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
    ) -> Result<(), StorageError> {
        let _timer = self.operations.time(Operation::Abort);
        let _si_guard = self.lock_si(si);
        let removed = {
            let mut state = lock(&self.state);
            match state.uploads.get(&(si, shnum)) {
                Some(entry) if !ct_eq(&entry.secret, &upload.0) => {
                    return Err(StorageError::UploadSecretMismatch);
                }
                Some(_) => {
                    let entry = state.uploads.remove(&(si, shnum));
                    if let Some(entry) = &entry {
                        state.pending_space = state.pending_space.saturating_sub(entry.reserved);
                    }
                    entry
                }
                None => None,
            }
        };
        if removed.is_none() {
            let path = self.layout.share_path(si, shnum);
            return match sniff_file(&path) {
                Ok(Some(ShareKind::Immutable)) => Err(StorageError::AlreadyComplete { shnum }),
                _ => Err(StorageError::NotFound(format!(
                    "no upload in progress for share {shnum} of storage index {si}"
                ))),
            };
        }
        self.discard_incoming(si, shnum);
        tracing::info!(%si, shnum, "storage: upload aborted");
        Ok(())
    }

    fn discard_incoming(&self, si: StorageIndex, shnum: ShareNum) {
        match fs::remove_file(self.layout.incoming_path(si, shnum)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(%si, shnum, error = %e, "storage: cannot delete an aborted upload"),
        }
        self.remove_incoming_dirs(si);
    }

    /// Aborts every upload that has not been written to for `idle` (Tahoe: 30 minutes); returns how
    /// many.
    pub fn abort_idle_uploads(&self, idle: Duration) -> usize {
        let now = self.config.clock.now();
        let is_idle = |upload: &Upload| now.duration_since(upload.last_write).is_ok_and(|d| d >= idle);
        let candidates: Vec<(StorageIndex, ShareNum)> = lock(&self.state)
            .uploads
            .iter()
            .filter(|(_, upload)| is_idle(upload))
            .map(|(key, _)| *key)
            .collect();
        let mut aborted = 0;
        for (si, shnum) in candidates {
            let _si_guard = self.lock_si(si);
            let removed = {
                let mut state = lock(&self.state);
                if state.uploads.get(&(si, shnum)).is_some_and(is_idle) {
                    let entry = state.uploads.remove(&(si, shnum));
                    if let Some(entry) = &entry {
                        state.pending_space = state.pending_space.saturating_sub(entry.reserved);
                    }
                    entry.is_some()
                } else {
                    false
                }
            };
            if removed {
                self.discard_incoming(si, shnum);
                tracing::info!(%si, shnum, "storage: idle upload aborted");
                aborted += 1;
            }
        }
        aborted
    }

    /// The share numbers of `kind` held for `si` (empty if none).
    pub fn list_shares(&self, kind: ShareKind, si: StorageIndex) -> Result<BTreeSet<ShareNum>, StorageError> {
        let _timer = self.operations.time(Operation::Get);
        Ok(self
            .shares_of(si)?
            .into_iter()
            .filter(|(_, k)| *k == kind)
            .map(|(shnum, _)| shnum)
            .collect())
    }

    /// The length of a share's data (not of its container).
    pub fn share_length(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> Result<u64, StorageError> {
        Ok(self.open_for_read(kind, si, shnum)?.data_len())
    }

    /// Reads up to `len` bytes of share data at `offset`: fewer at the end, none at or past it.
    /// A mutable share is read under its stripe lock, so the bytes are all of one version; an
    /// immutable one holds the stripe only while it is opened (other reads of the stripe go on).
    pub fn read_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let _timer = self.operations.time(Operation::Read);
        // Immutable data never changes once visible: only the open needs the stripe.
        let _si_guard = (kind == ShareKind::Mutable).then(|| self.lock_si(si));
        let share = match kind {
            ShareKind::Mutable => self.open_locked(kind, si, shnum)?,
            ShareKind::Immutable => self.open_for_read(kind, si, shnum)?,
        };
        let data = share
            .read(offset, len)
            .map_err(|e| io_error(format!("cannot read share {si}/{shnum}"), e))?;
        Operations::add_bytes(&self.operations.bytes_read, data.len() as u64);
        Ok(data)
    }

    /// Opens a share for several reads that must all see one version of it (a long range read in
    /// chunks): see [`ShareReader`].
    pub fn open_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> Result<ShareReader, StorageError> {
        let _si_guard = self.lock_si(si);
        let share = self.open_locked(kind, si, shnum)?;
        Ok(ShareReader {
            kind,
            si,
            shnum,
            share,
            edits_seen: self.edits_in_place[stripe_of(si)].load(Ordering::SeqCst),
        })
    }

    /// Reads from a share opened by [`open_share`](Self::open_share): up to `len` bytes at
    /// `offset`, clamped to the share's end. A mutable share edited in place since it was opened
    /// is refused (the bytes would mix two versions); one replaced by a new file is not (the open
    /// file still holds the old version whole).
    pub fn read_open_share(
        &self,
        reader: &ShareReader,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let _timer = self.operations.time(Operation::Read);
        let (si, shnum) = (reader.si, reader.shnum);
        let read = || {
            let data = reader
                .share
                .read(offset, len)
                .map_err(|e| io_error(format!("cannot read share {si}/{shnum}"), e))?;
            Operations::add_bytes(&self.operations.bytes_read, data.len() as u64);
            Ok(data)
        };
        if reader.kind == ShareKind::Immutable {
            return read();
        }
        let _si_guard = self.lock_si(si);
        if self.edits_in_place[stripe_of(si)].load(Ordering::SeqCst) != reader.edits_seen {
            return Err(StorageError::Internal(format!(
                "mutable share {si}/{shnum} was rewritten while being read"
            )));
        }
        read()
    }

    /// Opens a share for reading, with its stripe held by the caller. A mutable share whose
    /// in-place write failed half-way (an IO error, not a crash: startup replays those) is
    /// finished from its journal first, so no reader sees it half-edited.
    fn open_locked(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> Result<OpenShare, StorageError> {
        if kind == ShareKind::Mutable {
            let journal = self.layout.mutable_journal_path(si, shnum);
            if journal.exists() {
                mutable::recover_journal(&journal, &self.layout.share_path(si, shnum))
                    .map_err(|e| io_error(format!("cannot recover share {si}/{shnum}"), e))?;
            }
        }
        match OpenShare::open(&self.layout.share_path(si, shnum), kind, false) {
            Ok(Some(share)) => Ok(share),
            Ok(None) => Err(not_found(kind, si, shnum)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(kind, si, shnum)),
            Err(e) => Err(io_error(format!("cannot open share {si}/{shnum}"), e)),
        }
    }

    /// Opens a share to learn its length or that it exists; the stripe is held only while the
    /// container's layout is parsed (lease changes move the end of an immutable share's data area).
    fn open_for_read(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> Result<OpenShare, StorageError> {
        let _si_guard = self.lock_si(si);
        self.open_locked(kind, si, shnum)
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

    /// Adds a lease to every share (immutable or mutable) of `si`, or renews the one with the same
    /// renew secret to now + 31 days. `NotFound` if no share is held; `NoSpace` (and nothing changed)
    /// if new lease records do not fit, as in Tahoe (so a read-only store renews but never adds).
    pub fn add_or_renew_lease(&self, si: StorageIndex, lease: &LeaseSecrets) -> Result<(), StorageError> {
        let _timer = self.operations.time(Operation::AddLease);
        let _si_guard = self.lock_si(si);
        let existing = self.shares_of(si)?;
        if existing.is_empty() {
            return Err(StorageError::NotFound(format!("no shares of storage index {si}")));
        }
        let mut shares = Vec::new();
        for (&shnum, &kind) in &existing {
            match OpenShare::open(&self.layout.share_path(si, shnum), kind, true) {
                Ok(Some(share)) => shares.push((shnum, kind, share)),
                Ok(None) => {}
                Err(e) => return Err(io_error(format!("cannot open share {si}/{shnum}"), e)),
            }
        }
        let mut adds = 0;
        let mut needed = 0;
        for (_, _, share) in &mut shares {
            let share = share.leases_mut();
            let storage = share.secret_storage();
            let has = share
                .leases()
                .iter()
                .any(|(_, record)| storage.matches(&record.renew, &lease.renew));
            if !has {
                adds += 1;
                needed += share.lease_growth();
            }
        }
        if adds > 0 && !self.fits(needed) {
            return Err(StorageError::NoSpace {
                needed,
                available: self.available_space(),
            });
        }
        let now = self.config.clock.now();
        for (shnum, kind, mut share) in shares {
            self.add_or_renew(share.leases_mut(), kind, si, shnum, lease, OWNER_ADD, now, true)?;
        }
        Ok(())
    }

    /// Renews the lease matching `lease.renew` (only ever forward), or adds one (when `always_add`, or
    /// else only if it fits), keeping the index in step: new key before the container changes, old
    /// key removed after.
    #[allow(clippy::too_many_arguments)]
    fn add_or_renew(
        &self,
        share: &mut dyn LeaseContainer,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        owner: u32,
        now: SystemTime,
        always_add: bool,
    ) -> Result<(), StorageError> {
        let storage = share.secret_storage();
        let new_expiry = expiry_for_renewal_at(now);
        let what = || format!("cannot update the leases of share {si}/{shnum}");
        let key = |expiry: u32, record: &LeaseRecord| LeaseKey {
            expiry: u64::from(expiry),
            kind,
            si,
            shnum,
            lease_id: storage.index_id(&record.renew),
        };
        if let Some((slot, record)) = share
            .leases()
            .into_iter()
            .find(|(_, record)| storage.matches(&record.renew, &lease.renew))
        {
            if new_expiry > record.expiry {
                self.index_insert(&key(new_expiry, &record));
                share
                    .set_expiry(slot, new_expiry)
                    .map_err(|e| io_error(what(), e))?;
                self.index_remove(&key(record.expiry, &record));
            }
            return Ok(());
        }
        if !always_add && !self.fits(share.lease_growth()) {
            tracing::debug!(%si, shnum, "storage: no space for another lease; not added");
            return Ok(());
        }
        let nodeid = match kind {
            ShareKind::Immutable => [0; 20],
            ShareKind::Mutable => self.config.node_id,
        };
        let record = LeaseRecord::new(storage, owner, &lease.renew, &lease.cancel, new_expiry, nodeid);
        self.index_insert(&key(new_expiry, &record));
        let grown = share.add_lease(record).map_err(|e| io_error(what(), e))?;
        lock(&self.state).used_space += grown;
        Ok(())
    }

    /// Tahoe's `slot_testv_and_readv_and_writev` (tahoe-interfaces.md §1.4): check the write enabler
    /// against every existing share, evaluate the tests, read the read vector from every existing
    /// share, then (if the tests passed) write, truncate, extend, create or delete shares and add or
    /// renew the lease on every surviving share.
    pub fn read_test_write(
        &self,
        si: StorageIndex,
        write_enabler: &WriteEnabler,
        lease: &LeaseSecrets,
        test_write_vectors: &BTreeMap<ShareNum, TestWriteVectors>,
        read_vector: &[ReadVector],
    ) -> Result<ReadTestWriteResult, StorageError> {
        let written: u64 = test_write_vectors
            .values()
            .flat_map(|vectors| &vectors.write)
            .map(|vector| vector.data.len() as u64)
            .sum();
        let writes = written > 0 || test_write_vectors.values().any(|v| v.new_length.is_some());
        let _timer = self.operations.time(if writes {
            Operation::Writev
        } else {
            Operation::Readv
        });
        let _si_guard = self.lock_si(si);
        let kinds = self.shares_of(si)?;
        let mut shares: BTreeMap<ShareNum, MutableShare> = BTreeMap::new();
        for (&shnum, &kind) in &kinds {
            if kind == ShareKind::Mutable {
                // An in-place write that failed half-way (an IO error, not a crash) left its
                // journal: finish it before the share is tested, read or written.
                let journal = self.layout.mutable_journal_path(si, shnum);
                if journal.exists() {
                    mutable::recover_journal(&journal, &self.layout.share_path(si, shnum))
                        .map_err(|e| io_error(format!("cannot recover share {si}/{shnum}"), e))?;
                }
                let share = MutableShare::open(&self.layout.share_path(si, shnum), true)
                    .map_err(|e| io_error(format!("cannot open share {si}/{shnum}"), e))?;
                shares.insert(shnum, share);
            }
        }
        let read_err = |shnum: ShareNum| move |e| io_error(format!("cannot read share {si}/{shnum}"), e);

        // 1. The write enabler must match every existing share.
        for (&shnum, share) in &shares {
            if !ct_eq(&share.write_enabler(), &write_enabler.0) {
                tracing::warn!(
                    %si,
                    shnum,
                    recorded_by = %crate::base32::encode(&share.nodeid()),
                    "storage: bad write enabler"
                );
                return Err(StorageError::WriteEnablerMismatch);
            }
        }

        // 2. Every test must pass; a missing share reads as empty. A test compares its specimen
        //    with `size` bytes of the share, so reading one byte more than the specimen decides it
        //    as reading all of them would: a peer's `size` never sets how much is read.
        let mut passed = true;
        'tests: for (&shnum, vectors) in test_write_vectors {
            for test in &vectors.test {
                let enough = test.size.min(test.specimen.len() as u64 + 1);
                let current = match shares.get(&shnum) {
                    Some(share) => share.read(test.offset, enough).map_err(read_err(shnum))?,
                    None => Vec::new(),
                };
                if current != test.specimen {
                    passed = false;
                    break 'tests;
                }
            }
        }

        // 3. Read from every existing share, before any write, if the answer stays within
        //    MAX_READ_VECTOR_ANSWER (counted before anything is read or written).
        let answer: u64 = shares
            .values()
            .flat_map(|share| {
                read_vector
                    .iter()
                    .map(|r| clamp_read(share.data_len(), r.offset, r.size).1)
            })
            .fold(0, u64::saturating_add);
        if answer > MAX_READ_VECTOR_ANSWER {
            return Err(StorageError::BadRequest(format!(
                "the read vectors ask for {answer} bytes of share data; at most {MAX_READ_VECTOR_ANSWER} \
                 are answered in one request (read larger parts with GET and a Range)"
            )));
        }
        let mut data = BTreeMap::new();
        for (&shnum, share) in &shares {
            let reads = read_vector
                .iter()
                .map(|r| share.read(r.offset, r.size))
                .collect::<io::Result<Vec<_>>>()
                .map_err(read_err(shnum))?;
            data.insert(shnum, reads);
        }
        if !passed {
            return Ok(ReadTestWriteResult { success: false, data });
        }

        // 4. Plan the writes, check that they are allowed and fit, then apply them: deletions, new
        //    versions, and the lease on the untouched survivors.
        let now = self.config.clock.now();
        let plans =
            self.plan_mutable_writes(si, &kinds, &shares, write_enabler, lease, test_write_vectors, now)?;
        let share_dir = self.layout.share_dir(si);
        let mut deleted_any = false;
        for (&shnum, plan) in &plans {
            match plan {
                SharePlan::Keep => {}
                SharePlan::Delete => {
                    if let Some(share) = shares.remove(&shnum) {
                        self.delete_share(ShareKind::Mutable, si, shnum, &share)
                            .map_err(|e| io_error(format!("cannot delete share {si}/{shnum}"), e))?;
                        deleted_any = true;
                    }
                }
                SharePlan::Rewrite(next) => {
                    self.write_mutable_version(si, shnum, shares.get(&shnum), next, lease)?;
                }
            }
        }
        for (&shnum, share) in shares.iter_mut() {
            if matches!(plans.get(&shnum), Some(SharePlan::Rewrite(_))) {
                continue;
            }
            self.add_or_renew(share, ShareKind::Mutable, si, shnum, lease, OWNER_ADD, now, false)?;
        }
        if deleted_any {
            remove_dir_if_empty(&share_dir);
        }
        Operations::add_bytes(&self.operations.bytes_added, written);
        Ok(ReadTestWriteResult { success: true, data })
    }

    /// What read-test-write will do to each named share once its tests have passed, with the lease
    /// each rewritten share will carry. Refuses (with nothing changed) writes to a read-only store,
    /// past the mutable size limit, over immutable shares, or beyond the space left.
    #[allow(clippy::too_many_arguments)]
    fn plan_mutable_writes<'a>(
        &self,
        si: StorageIndex,
        kinds: &BTreeMap<ShareNum, ShareKind>,
        shares: &BTreeMap<ShareNum, MutableShare>,
        write_enabler: &WriteEnabler,
        lease: &LeaseSecrets,
        test_write_vectors: &'a BTreeMap<ShareNum, TestWriteVectors>,
        now: SystemTime,
    ) -> Result<BTreeMap<ShareNum, SharePlan<'a>>, StorageError> {
        let new_expiry = expiry_for_renewal_at(now);
        let mut plans = BTreeMap::new();
        let mut growth: i128 = 0;
        for (&shnum, vectors) in test_write_vectors {
            let current = shares.get(&shnum);
            if vectors.new_length == Some(0) {
                if let Some(share) = current {
                    growth -= i128::from(share.container_len());
                    plans.insert(shnum, SharePlan::Delete);
                } else {
                    plans.insert(shnum, SharePlan::Keep);
                }
                continue;
            }
            let old_len = current.map_or(0, MutableShare::data_len);
            let largest_end = vectors
                .write
                .iter()
                .map(|w| w.offset.checked_add(w.data.len() as u64))
                .try_fold(vectors.new_length.unwrap_or(0), |acc, end| {
                    end.map(|end| acc.max(end))
                });
            let data_len = mutable::planned_data_len(old_len, &vectors.write, vectors.new_length);
            let (Some(largest_end), Some(data_len)) = (largest_end, data_len) else {
                return Err(StorageError::BeyondAllocation {
                    end: u64::MAX,
                    allocated: MAX_MUTABLE_SHARE_SIZE,
                });
            };
            if largest_end > MAX_MUTABLE_SHARE_SIZE {
                return Err(StorageError::BeyondAllocation {
                    end: largest_end,
                    allocated: MAX_MUTABLE_SHARE_SIZE,
                });
            }
            if current.is_some() && vectors.write.is_empty() && data_len == old_len {
                plans.insert(shnum, SharePlan::Keep);
                continue;
            }
            if kinds.get(&shnum) == Some(&ShareKind::Immutable)
                || lock(&self.state).uploads.contains_key(&(si, shnum))
            {
                return Err(StorageError::BadRequest(format!(
                    "share {shnum} of storage index {si} is immutable"
                )));
            }
            let (mut slots, storage, old_container) = match current {
                Some(share) => (
                    share.slots().to_vec(),
                    share.secret_storage(),
                    share.container_len(),
                ),
                None => (vec![None; 4], SecretStorage::Hashed, 0),
            };
            let renewed_from = apply_lease(&mut slots, storage, lease, new_expiry, self.config.node_id);
            growth += i128::from(mutable::container_len_for(data_len, &slots)) - i128::from(old_container);
            plans.insert(
                shnum,
                SharePlan::Rewrite(PlannedVersion {
                    version: current.map_or(2, MutableShare::version),
                    nodeid: current.map_or(self.config.node_id, MutableShare::nodeid),
                    write_enabler: current.map_or(write_enabler.0, MutableShare::write_enabler),
                    writes: &vectors.write,
                    new_length: vectors.new_length,
                    data_len,
                    slots,
                    renewed_from,
                }),
            );
        }
        let writes = plans.values().any(|plan| !matches!(plan, SharePlan::Keep));
        if writes && self.config.readonly {
            return Err(StorageError::ReadOnly);
        }
        if writes && growth > 0 {
            let needed = u64::try_from(growth).unwrap_or(u64::MAX);
            if !self.fits(needed) {
                return Err(StorageError::NoSpace {
                    needed,
                    available: self.available_space(),
                });
            }
        }
        Ok(plans)
    }

    /// Replaces (or creates) a mutable share with its planned next version, crash-safely: index entry
    /// of the new lease, scratch file written and fsynced, renamed over the share, directory fsynced,
    /// old index entry removed.
    fn write_mutable_version(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        existing: Option<&MutableShare>,
        next: &PlannedVersion<'_>,
        lease: &LeaseSecrets,
    ) -> Result<(), StorageError> {
        let what = || format!("cannot write share {si}/{shnum}");
        let share_dir = self.layout.share_dir(si);
        let path = self.layout.share_path(si, shnum);
        let scratch = self.layout.mutable_temp_path(si, shnum);
        let storage = existing.map_or(SecretStorage::Hashed, MutableShare::secret_storage);
        let lease_id = storage.index_id(&storage.store(&lease.renew));
        let key = |expiry: u32| LeaseKey {
            expiry: u64::from(expiry),
            kind: ShareKind::Mutable,
            si,
            shnum,
            lease_id,
        };
        if let Some(record) = next
            .slots
            .iter()
            .flatten()
            .find(|record| storage.matches(&record.renew, &lease.renew))
        {
            self.index_insert(&key(record.expiry));
        }
        create_dir_durable(&share_dir).map_err(|e| io_error(what(), e))?;
        let version = NewVersion {
            version: next.version,
            nodeid: next.nodeid,
            write_enabler: next.write_enabler,
            writes: next.writes,
            new_length: next.new_length,
            slots: &next.slots,
        };
        let journal = self.layout.mutable_journal_path(si, shnum);
        let base = existing.map(|share| (path.as_path(), share.data_len()));
        let in_place =
            existing.is_some_and(|share| mutable::write_in_place_pays(share.container_len(), &version));
        let written = if in_place {
            // Readers holding this share open see the edit as a conflict from now on (the stripe
            // is held, so none reads half of it).
            self.edits_in_place[stripe_of(si)].fetch_add(1, Ordering::SeqCst);
            let old_len = existing.map_or(0, MutableShare::data_len);
            mutable::write_version_in_place(&path, &journal, old_len, &version)
        } else {
            mutable::write_version(base, &scratch, &version).and_then(|new_len| {
                fs::rename(&scratch, &path)?;
                sync_dir(&share_dir)?;
                Ok(new_len)
            })
        };
        let new_len = match written {
            Ok(new_len) => new_len,
            Err(e) => {
                let _ = fs::remove_file(&scratch);
                return Err(io_error(what(), e));
            }
        };
        debug_assert_eq!(new_len, mutable::container_len_for(next.data_len, &next.slots));
        if let Some(old_expiry) = next.renewed_from {
            self.index_remove(&key(old_expiry));
        }
        let mut state = lock(&self.state);
        match existing {
            Some(share) => {
                state.used_space = (state.used_space + new_len).saturating_sub(share.container_len());
            }
            None => {
                state.used_space += new_len;
                state.mutable_shares += 1;
            }
        }
        Ok(())
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

    /// One garbage-collection pass (tahoe-interfaces.md §2.9) driven by the lease index: only the
    /// entries below the policy's threshold are read, each is checked against its container, expired
    /// leases are removed and shares left without a lease are deleted. A no-op when expiration is
    /// disabled.
    pub fn expire_leases(&self) -> Result<ExpirationReport, StorageError> {
        let now = self.config.clock.now();
        let policy = self.config.expiration;
        let mut report = ExpirationReport::empty(now, policy.enabled);
        if !policy.enabled {
            return Ok(report);
        }
        let threshold = expiry_threshold(policy.mode, now);
        let candidates = self
            .index
            .expiring_before(threshold)
            .map_err(|e| io_error("cannot read the lease index", io::Error::other(e)))?;
        let mut by_share: BTreeMap<(u8, StorageIndex, ShareNum), Vec<LeaseKey>> = BTreeMap::new();
        for key in candidates {
            report.examined_leases += 1;
            let (subject, kind_byte) = match key.kind {
                ShareKind::Immutable => (policy.immutable, 0),
                ShareKind::Mutable => (policy.mutable, 1),
            };
            if !subject {
                report.skipped_leases += 1;
                continue;
            }
            by_share
                .entry((kind_byte, key.si, key.shnum))
                .or_default()
                .push(key);
        }
        for ((_, si, shnum), keys) in by_share {
            let kind = keys[0].kind;
            if let Err(e) = self.expire_share(kind, si, shnum, &keys, threshold, &mut report) {
                // One bad share must not stop the pass.
                tracing::error!(%si, shnum, error = %e, "storage: cannot expire leases of a share");
            }
        }
        tracing::info!(
            examined = report.examined_leases,
            expired = report.expired_leases,
            deleted_shares = report.deleted_shares,
            reclaimed_bytes = report.reclaimed_bytes,
            "storage: lease expiry pass"
        );
        lock(&self.state).last_expiration = Some(report.clone());
        Ok(report)
    }

    fn expire_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        keys: &[LeaseKey],
        threshold: u64,
        report: &mut ExpirationReport,
    ) -> io::Result<()> {
        let _si_guard = self.lock_si(si);
        let path = self.layout.share_path(si, shnum);
        let mut share = match OpenShare::open(&path, kind, true) {
            Ok(Some(share)) => share,
            Ok(None) => {
                self.drop_stale(keys, report);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.drop_stale(keys, report);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let container = share.leases_mut();
        let storage = container.secret_storage();
        let leases = container.leases();
        let mut expired_slots = BTreeSet::new();
        let mut sentinel = false;
        for key in keys {
            if key.is_sentinel() {
                if leases.is_empty() {
                    sentinel = true;
                } else {
                    self.drop_stale(std::slice::from_ref(key), report);
                }
                continue;
            }
            let same_lease: Vec<&(usize, LeaseRecord)> = leases
                .iter()
                .filter(|(_, record)| storage.index_id(&record.renew) == key.lease_id)
                .collect();
            let matching: Vec<usize> = same_lease
                .iter()
                .filter(|(_, record)| u64::from(record.expiry) == key.expiry)
                .map(|(slot, _)| *slot)
                .collect();
            if matching.is_empty() {
                // Renewed (or gone) since this key was written: drop it, and make sure the lease's
                // current key is present.
                self.drop_stale(std::slice::from_ref(key), report);
                for (_, record) in same_lease {
                    self.index_insert(&LeaseKey {
                        expiry: u64::from(record.expiry),
                        ..*key
                    });
                }
            } else if key.expiry < threshold {
                expired_slots.extend(matching);
            }
        }
        let remaining = leases.len() - expired_slots.len();
        if remaining == 0 && (!expired_slots.is_empty() || sentinel) {
            let freed = self.delete_share(kind, si, shnum, container)?;
            for key in keys {
                self.index_remove(key);
            }
            remove_dir_if_empty(&self.layout.share_dir(si));
            report.expired_leases += expired_slots.len() as u64;
            report.deleted_shares += 1;
            report.reclaimed_bytes += freed;
            tracing::info!(%si, shnum, ?kind, "storage: share deleted: its last lease expired");
        } else if !expired_slots.is_empty() {
            let slots: Vec<usize> = expired_slots.iter().copied().collect();
            let freed = container.remove_leases(&slots)?;
            for (slot, record) in &leases {
                if expired_slots.contains(slot) {
                    self.index_remove(&LeaseKey {
                        expiry: u64::from(record.expiry),
                        kind,
                        si,
                        shnum,
                        lease_id: storage.index_id(&record.renew),
                    });
                }
            }
            let mut state = lock(&self.state);
            state.used_space = state.used_space.saturating_sub(freed);
            report.expired_leases += slots.len() as u64;
            report.reclaimed_bytes += freed;
        }
        Ok(())
    }

    fn drop_stale(&self, keys: &[LeaseKey], report: &mut ExpirationReport) {
        for key in keys {
            self.index_remove(key);
            report.stale_index_entries += 1;
        }
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

    fn index_insert(&self, key: &LeaseKey) {
        if let Err(e) = self.index.insert(key) {
            self.index_failed(e);
        }
    }

    fn index_remove(&self, key: &LeaseKey) {
        if let Err(e) = self.index.remove(key) {
            self.index_failed(e);
        }
    }

    fn index_failed(&self, err: sled::Error) {
        tracing::error!(error = %err, "storage: lease index update failed; it will be rebuilt at the next start");
        lock(&self.state).index_dirty = true;
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

/// Applies add-or-renew of `lease` to in-memory mutable lease slots; returns the old expiry if an
/// existing lease was renewed.
fn apply_lease(
    slots: &mut Vec<Option<LeaseRecord>>,
    storage: SecretStorage,
    lease: &LeaseSecrets,
    new_expiry: u32,
    nodeid: [u8; 20],
) -> Option<u32> {
    for record in slots.iter_mut().flatten() {
        if storage.matches(&record.renew, &lease.renew) {
            if new_expiry > record.expiry {
                let old = record.expiry;
                record.expiry = new_expiry;
                return Some(old);
            }
            return None;
        }
    }
    let record = LeaseRecord::new(
        storage,
        OWNER_ADD,
        &lease.renew,
        &lease.cancel,
        new_expiry,
        nodeid,
    );
    match slots.iter().position(Option::is_none) {
        Some(slot) => slots[slot] = Some(record),
        None => slots.push(Some(record)),
    }
    None
}

/// Leases whose stored expiry is below this many Unix seconds are expired under `mode` at `now`.
///
/// Tahoe judges a lease by when it was last renewed (`expiry - 31 days`): in age mode it is expired
/// when `now - renewed > duration`, i.e. `expiry < now + 31 days - duration`; in cutoff mode when
/// `renewed < cutoff`, i.e. `expiry < cutoff + 31 days`. Both are a bound on the stored expiry, which
/// is what the index is sorted by. For whole-second expiries, `expiry < t` is `expiry < ceil(t)`.
pub(super) fn expiry_threshold(mode: ExpirationMode, now: SystemTime) -> u64 {
    let ceil_secs = |time: Option<SystemTime>| -> u64 {
        let Some(time) = time else { return 0 };
        let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        since.as_secs() + u64::from(since.subsec_nanos() > 0)
    };
    match mode {
        ExpirationMode::Age {
            override_lease_duration: None,
        } => ceil_secs(Some(now)),
        ExpirationMode::Age {
            override_lease_duration: Some(duration),
        } => ceil_secs((now + LEASE_DURATION).checked_sub(duration)),
        ExpirationMode::CutoffDate(cutoff) => ceil_secs(Some(cutoff + LEASE_DURATION)),
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
