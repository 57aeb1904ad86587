//! Adding and renewing leases on held shares, and keeping the lease index in step with the
//! containers (new key before a container changes, old key removed after).

use std::time::SystemTime;

use crate::api::LeaseSecrets;
use crate::server::container::{LeaseContainer, OpenShare};
use crate::server::index::LeaseKey;
use crate::server::lease::{LeaseRecord, SecretStorage, expiry_for_renewal_at};
use crate::server::stats::Operation;
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

use super::{OWNER_ADD, StorageServer, io_error, lock};

/// Applies add-or-renew of `lease` to in-memory mutable lease slots; returns the old expiry if an
/// existing lease was renewed.
pub(super) fn apply_lease(
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

impl StorageServer {
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
    pub(super) fn add_or_renew(
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

    pub(super) fn index_insert(&self, key: &LeaseKey) {
        if let Err(e) = self.index.insert(key) {
            self.index_failed(e);
        }
    }

    pub(super) fn index_remove(&self, key: &LeaseKey) {
        if let Err(e) = self.index.remove(key) {
            self.index_failed(e);
        }
    }

    fn index_failed(&self, err: sled::Error) {
        tracing::error!(error = %err, "storage: lease index update failed; it will be rebuilt at the next start");
        lock(&self.state).index_dirty = true;
    }
}
