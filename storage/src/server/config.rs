//! The share store's configuration: where it lives, how much it may hold, whether it accepts writes,
//! when leases expire, and the clock it reads (a settable [`FakeClock`] in tests).
//!
//! These are the resolved values of Tahoe's `[storage]` section (`reserved_space`, `readonly`,
//! `expire.*`); parsing `tahoe.cfg` is the node's job, not this crate's.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Everything [`StorageServer::open`](super::StorageServer::open) needs.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The storage directory (`NODEDIR/storage`); `shares/`, `corruption-advisories/` and the lease
    /// index live under it.
    pub storage_dir: PathBuf,
    /// Keep this many bytes of the disk free (measured with statvfs on `storage_dir`).
    pub reserved_space: u64,
    /// Never hold more than this many bytes of shares (container files, leases included). New in
    /// Tessera: Tahoe removed its `sizelimit` (ticket #671).
    pub max_space: Option<u64>,
    /// Refuse new immutable and mutable writes (allocations allocate nothing; read-test-write answers
    /// `ReadOnly` when it would write). Lease renewals still happen.
    pub readonly: bool,
    /// Tahoe's `[storage] expire.*` settings.
    pub expiration: ExpirationPolicy,
    /// This server's 20-byte node id, recorded in new mutable containers (with the write enabler) and
    /// in their lease records.
    pub node_id: [u8; 20],
    /// The clock leases are dated with.
    pub clock: Arc<dyn Clock>,
    /// Reported in [`VersionInfo`](crate::api::VersionInfo), e.g. `tessera/0.0.0`.
    pub application_version: String,
    /// An upload not written to for this long is taken over when another client (another upload
    /// secret) allocates the same share: its partial share is discarded and the new upload proceeds
    /// (`[storage] upload.takeover_after`, Tessera's; default [`UPLOAD_TAKEOVER_AFTER`]). An upload
    /// written to more recently is left alone and the allocation is refused with the reason.
    pub upload_takeover_after: Duration,
}

/// Default of [`StorageConfig::upload_takeover_after`]: far longer than any pause of a live uploader
/// between two writes, short enough that re-uploading after a crashed client works within a minute.
pub const UPLOAD_TAKEOVER_AFTER: Duration = Duration::from_secs(20);

/// Default idle limit after which the node's maintenance aborts an upload nobody asked to take over
/// (`[storage] upload.idle_timeout`, Tessera's; Tahoe aborts after 30 minutes).
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl StorageConfig {
    /// A read-write store in `storage_dir` with no reserved space, no maximum, expiration disabled,
    /// an all-zero node id and the system clock.
    pub fn new(storage_dir: PathBuf) -> Self {
        StorageConfig {
            storage_dir,
            reserved_space: 0,
            max_space: None,
            readonly: false,
            expiration: ExpirationPolicy::default(),
            node_id: [0; 20],
            clock: Arc::new(SystemClock),
            application_version: format!("tessera/{}", env!("CARGO_PKG_VERSION")),
            upload_takeover_after: UPLOAD_TAKEOVER_AFTER,
        }
    }
}

/// When leases expire (Tahoe's `expire.enabled`, `expire.mode`, `expire.immutable`, `expire.mutable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpirationPolicy {
    /// Whether expired leases are removed at all (`expire.enabled`, default false).
    pub enabled: bool,
    /// How a lease's age is judged.
    pub mode: ExpirationMode,
    /// Whether immutable shares are subject to expiry (`expire.immutable`, default true).
    pub immutable: bool,
    /// Whether mutable shares are subject to expiry (`expire.mutable`, default true).
    pub mutable: bool,
}

impl Default for ExpirationPolicy {
    fn default() -> Self {
        ExpirationPolicy {
            enabled: false,
            mode: ExpirationMode::Age {
                override_lease_duration: None,
            },
            immutable: true,
            mutable: true,
        }
    }
}

/// Tahoe's `expire.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirationMode {
    /// A lease expires when it was last renewed longer ago than the lease duration: 31 days, or
    /// `expire.override_lease_duration`.
    Age {
        /// Replaces the 31-day duration when judging a lease's age.
        override_lease_duration: Option<Duration>,
    },
    /// A lease expires when it was last renewed before this time (`expire.cutoff_date`).
    CutoffDate(SystemTime),
}

/// The source of "now" for lease times, expiry and upload idleness.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to. Share it between a test and the server with an `Arc`.
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<SystemTime>,
}

impl FakeClock {
    /// A clock that reads `start` until set or advanced.
    pub fn new(start: SystemTime) -> Self {
        FakeClock {
            now: Mutex::new(start),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Default for FakeClock {
    /// 2023-11-14T22:13:20Z (Unix time 1 700 000 000), a fixed, whole-second start.
    fn default() -> Self {
        FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
