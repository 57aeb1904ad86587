//! The lease checker: Tahoe's `LeaseCheckingCrawler` figures, from a cycle over every share.
//!
//! A cycle reads the leases of every share (holding the share's stripe lock only while reading it)
//! and counts, per bucket (storage index) and per share, what it examined and what would be
//! recovered: `original` if every lease were held to its own 31-day term, `configured` under the
//! `expire.*` settings. With `expire.enabled = false` that is all it does (Tahoe's scan-only mode:
//! an operator sees what turning GC on would delete). With expiry enabled the cycle then runs the
//! index-driven expiry pass ([`StorageServer::expire_leases`]) and counts as `actual` the shares
//! and buckets the scan judged expired that are gone afterwards.
//!
//! The last [`HISTORY`] cycles are kept in memory (a restart forgets them; Tahoe keeps them in
//! `lease_checker.history`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::PoisonError;
use std::time::SystemTime;

use super::config::ExpirationPolicy;
use super::container::{OpenShare, sniff_file};
use super::fsutil::parse_shnum;
use super::lease::unix_secs;
use super::store::{StorageServer, expiry_threshold};
use crate::api::StorageError;
use crate::{ShareKind, ShareNum, StorageIndex};

/// How many finished cycles are kept.
pub const HISTORY: usize = 10;

/// Buckets, shares and bytes (file sizes and disk blocks) of one kind of figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Storage indexes (bucket directories).
    pub buckets: u64,
    /// Share files.
    pub shares: u64,
    /// Bytes of share files (their sizes).
    pub sharebytes: u64,
    /// Bytes of disk they take (allocated blocks × 512; directories included for buckets).
    pub diskbytes: u64,
}

/// [`Counts`] over all shares and per share kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByKind {
    /// Every share.
    pub all: Counts,
    /// Mutable shares only.
    pub mutable: Counts,
    /// Immutable shares only.
    pub immutable: Counts,
}

impl ByKind {
    fn kind(&mut self, kind: ShareKind) -> &mut Counts {
        match kind {
            ShareKind::Mutable => &mut self.mutable,
            ShareKind::Immutable => &mut self.immutable,
        }
    }

    fn add_share(&mut self, kind: ShareKind, sharebytes: u64, diskbytes: u64) {
        let add = |counts: &mut Counts| {
            counts.shares += 1;
            counts.sharebytes += sharebytes;
            counts.diskbytes += diskbytes;
        };
        add(&mut self.all);
        add(self.kind(kind));
    }

    fn add_bucket(&mut self, kind: Option<ShareKind>, diskbytes: u64) {
        self.all.buckets += 1;
        self.all.diskbytes += diskbytes;
        if let Some(kind) = kind {
            let counts = self.kind(kind);
            counts.buckets += 1;
            counts.diskbytes += diskbytes;
        }
    }
}

/// Tahoe's `space-recovered`: what a cycle looked at and what it recovered or would recover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpaceRecovered {
    /// Everything examined.
    pub examined: ByKind,
    /// What was deleted (nothing when expiry is disabled).
    pub actual: ByKind,
    /// What would go if each lease were held to its own term (31 days from its last renewal).
    pub original: ByKind,
    /// What goes under the configured `expire.*` settings (or would, were expiry enabled).
    pub configured: ByKind,
}

/// One cycle of the lease checker, running or finished.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseCycle {
    /// The cycle's number (0 for the first since the server started).
    pub number: u64,
    /// When it started (the server's clock).
    pub started: SystemTime,
    /// When it finished; `None` while it runs.
    pub finished: Option<SystemTime>,
    /// Whether expired leases were removed (`expire.enabled`).
    pub expiration_enabled: bool,
    /// The `expire.*` settings it judged leases by.
    pub policy: ExpirationPolicy,
    /// The figures so far (or of the whole cycle, once finished).
    pub space_recovered: SpaceRecovered,
    /// How many shares had each number of leases.
    pub leases_per_share: BTreeMap<u64, u64>,
    /// Shares whose container could not be read: (storage index, share number).
    pub corrupt_shares: Vec<(StorageIndex, ShareNum)>,
    /// Prefix directories done of those present when the cycle started.
    pub prefixes_done: u64,
    /// Prefix directories present when the cycle started.
    pub prefixes_total: u64,
}

impl LeaseCycle {
    /// How far the cycle is, 0.0 to 100.0.
    pub fn complete_percentage(&self) -> f64 {
        if self.finished.is_some() || self.prefixes_total == 0 {
            return 100.0;
        }
        100.0 * self.prefixes_done as f64 / self.prefixes_total as f64
    }
}

/// The lease checker's state: the running cycle, if any, and the last finished ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseCheckerState {
    /// The cycle running now.
    pub current: Option<LeaseCycle>,
    /// Finished cycles, oldest first (at most [`HISTORY`]).
    pub history: Vec<LeaseCycle>,
}

impl LeaseCheckerState {
    /// The last finished cycle.
    pub fn last(&self) -> Option<&LeaseCycle> {
        self.history.last()
    }
}

/// What the scan found of one share.
struct ShareVerdict {
    kind: ShareKind,
    /// Would go under the original terms / the configured policy.
    original: bool,
    configured: bool,
}

/// A share the scan judged expired under the configured policy, to count as `actual` if it is
/// gone after the expiry pass.
struct Expirable {
    kind: ShareKind,
    path: std::path::PathBuf,
    sharebytes: u64,
    diskbytes: u64,
}

fn disk_bytes(meta: &fs::Metadata) -> u64 {
    meta.blocks() * 512
}

impl StorageServer {
    /// The lease checker's state now.
    pub fn lease_checker(&self) -> LeaseCheckerState {
        self.lease_checker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update_cycle(&self, cycle: &LeaseCycle) {
        self.lease_checker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current = Some(cycle.clone());
    }

    /// Runs one whole lease-checker cycle (see the module documentation) and returns it. Cycles do
    /// not overlap: a second caller waits for the first to finish.
    pub fn run_lease_cycle(&self) -> Result<LeaseCycle, StorageError> {
        let _one_at_a_time = self
            .lease_cycle_running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let policy = self.config.expiration;
        let now = self.config.clock.now();
        let number = {
            let state = self.lease_checker.lock().unwrap_or_else(PoisonError::into_inner);
            state.history.last().map_or(0, |last| last.number + 1)
        };
        let prefixes = self.prefix_dirs().map_err(|e| self.scan_error(e))?;
        let mut cycle = LeaseCycle {
            number,
            started: now,
            finished: None,
            expiration_enabled: policy.enabled,
            policy,
            space_recovered: SpaceRecovered::default(),
            leases_per_share: BTreeMap::new(),
            corrupt_shares: Vec::new(),
            prefixes_done: 0,
            prefixes_total: prefixes.len() as u64,
        };
        self.update_cycle(&cycle);
        let configured_threshold = expiry_threshold(policy.mode, now);
        let original_threshold = unix_secs(now);
        let mut expirable: Vec<(std::path::PathBuf, Option<ShareKind>, u64, Vec<Expirable>)> = Vec::new();
        for prefix in prefixes {
            let buckets = match fs::read_dir(&prefix) {
                Ok(entries) => entries.filter_map(Result::ok).collect::<Vec<_>>(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.scan_error(e)),
            };
            for bucket in buckets {
                let Some(si) = bucket
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<StorageIndex>().ok())
                else {
                    continue;
                };
                let found = self.scan_bucket(
                    si,
                    &bucket.path(),
                    policy,
                    configured_threshold,
                    original_threshold,
                    &mut cycle,
                );
                if let Some(found) = found {
                    expirable.push(found);
                }
            }
            cycle.prefixes_done += 1;
            self.update_cycle(&cycle);
        }
        if policy.enabled {
            self.expire_leases()?;
            for (bucket_dir, bucket_kind, bucket_disk, shares) in expirable {
                for share in &shares {
                    if !share.path.exists() {
                        cycle
                            .space_recovered
                            .actual
                            .add_share(share.kind, share.sharebytes, share.diskbytes);
                    }
                }
                if !bucket_dir.exists() {
                    cycle.space_recovered.actual.add_bucket(bucket_kind, bucket_disk);
                }
            }
        }
        cycle.finished = Some(self.config.clock.now());
        let mut state = self.lease_checker.lock().unwrap_or_else(PoisonError::into_inner);
        state.current = None;
        state.history.push(cycle.clone());
        if state.history.len() > HISTORY {
            state.history.remove(0);
        }
        drop(state);
        let sr = &cycle.space_recovered;
        tracing::info!(
            cycle = cycle.number,
            expiration_enabled = policy.enabled,
            examined_shares = sr.examined.all.shares,
            configured_shares = sr.configured.all.shares,
            configured_sharebytes = sr.configured.all.sharebytes,
            actual_shares = sr.actual.all.shares,
            "storage: lease checker cycle finished"
        );
        Ok(cycle)
    }

    fn scan_error(&self, e: io::Error) -> StorageError {
        super::store::io_error("the lease checker cannot read the shares directory", e)
    }

    /// The prefix directories under `shares/`, sorted.
    fn prefix_dirs(&self) -> io::Result<Vec<std::path::PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.layout.shares)? {
            let entry = entry?;
            if entry.file_name() != "incoming" && entry.file_type()?.is_dir() {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Scans one bucket; returns it with its configured-expired shares when any (for `actual`).
    #[allow(clippy::type_complexity)]
    fn scan_bucket(
        &self,
        si: StorageIndex,
        dir: &Path,
        policy: ExpirationPolicy,
        configured_threshold: u64,
        original_threshold: u64,
        cycle: &mut LeaseCycle,
    ) -> Option<(std::path::PathBuf, Option<ShareKind>, u64, Vec<Expirable>)> {
        let bucket_disk = fs::metadata(dir).map(|m| disk_bytes(&m)).ok()?;
        let mut names: Vec<(ShareNum, std::path::PathBuf)> = fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|f| {
                let shnum = f.file_name().to_str().and_then(parse_shnum)?;
                Some((shnum, f.path()))
            })
            .collect();
        names.sort();
        let mut verdicts = Vec::new();
        let mut expirable = Vec::new();
        for (shnum, path) in names {
            let verdict = {
                let _stripe = self.lock_si(si);
                scan_share(&path, policy, configured_threshold, original_threshold)
            };
            match verdict {
                Ok(Some((verdict, leases, meta))) => {
                    *cycle.leases_per_share.entry(leases).or_default() += 1;
                    let (size, disk) = (meta.len(), disk_bytes(&meta));
                    let sr = &mut cycle.space_recovered;
                    sr.examined.add_share(verdict.kind, size, disk);
                    if verdict.original {
                        sr.original.add_share(verdict.kind, size, disk);
                    }
                    if verdict.configured {
                        sr.configured.add_share(verdict.kind, size, disk);
                        expirable.push(Expirable {
                            kind: verdict.kind,
                            path: path.clone(),
                            sharebytes: size,
                            diskbytes: disk,
                        });
                    }
                    verdicts.push(verdict);
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(%si, shnum, error = %e, "storage: the lease checker cannot read a share");
                    cycle.corrupt_shares.push((si, shnum));
                }
            }
        }
        // Tahoe types a bucket by its last share.
        let kind = verdicts.last().map(|v| v.kind);
        let sr = &mut cycle.space_recovered;
        sr.examined.add_bucket(kind, bucket_disk);
        if verdicts.is_empty() {
            return None;
        }
        if verdicts.iter().all(|v| v.original) {
            sr.original.add_bucket(kind, bucket_disk);
        }
        let all_configured = verdicts.iter().all(|v| v.configured);
        if all_configured {
            sr.configured.add_bucket(kind, bucket_disk);
        }
        (!expirable.is_empty()).then(|| (dir.to_path_buf(), kind, bucket_disk, expirable))
    }
}

/// Reads one share's leases: its verdict, its lease count and its metadata; `None` when the file
/// is not a share container.
fn scan_share(
    path: &Path,
    policy: ExpirationPolicy,
    configured_threshold: u64,
    original_threshold: u64,
) -> io::Result<Option<(ShareVerdict, u64, fs::Metadata)>> {
    let Some(kind) = sniff_file(path)? else {
        return Ok(None);
    };
    let Some(mut share) = OpenShare::open(path, kind, false)? else {
        return Ok(None);
    };
    let meta = fs::metadata(path)?;
    let leases = share.leases_mut().leases();
    let subject = match kind {
        ShareKind::Immutable => policy.immutable,
        ShareKind::Mutable => policy.mutable,
    };
    // A lease is live under the original terms while its expiry is in the future; under the
    // configured policy while its expiry is at or above the policy's threshold (see
    // `expiry_threshold`). A share with no live lease goes (one with no lease at all too).
    let original = leases
        .iter()
        .all(|(_, lease)| u64::from(lease.expiry) <= original_threshold);
    let configured = subject
        && leases
            .iter()
            .all(|(_, lease)| u64::from(lease.expiry) < configured_threshold);
    Ok(Some((
        ShareVerdict {
            kind,
            original,
            configured,
        },
        leases.len() as u64,
        meta,
    )))
}
