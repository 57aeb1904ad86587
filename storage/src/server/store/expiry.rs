//! Lease expiry driven by the lease index: the pass that removes expired leases and deletes shares
//! left without one, and the threshold each expiration mode sets.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::SystemTime;

use crate::server::config::ExpirationMode;
use crate::server::container::OpenShare;
use crate::server::fsutil::remove_dir_if_empty;
use crate::server::index::LeaseKey;
use crate::server::lease::{LEASE_DURATION, LeaseRecord};
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

use super::{StorageServer, io_error, lock};

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

/// Leases whose stored expiry is below this many Unix seconds are expired under `mode` at `now`.
///
/// Tahoe judges a lease by when it was last renewed (`expiry - 31 days`): in age mode it is expired
/// when `now - renewed > duration`, i.e. `expiry < now + 31 days - duration`; in cutoff mode when
/// `renewed < cutoff`, i.e. `expiry < cutoff + 31 days`. Both are a bound on the stored expiry, which
/// is what the index is sorted by. For whole-second expiries, `expiry < t` is `expiry < ceil(t)`.
pub(in crate::server) fn expiry_threshold(mode: ExpirationMode, now: SystemTime) -> u64 {
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

impl StorageServer {
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
}
