//! Mutable shares (Tahoe's slots): `slot_testv_and_readv_and_writev`, planned whole before
//! anything is written, then each share rewritten by copy-and-rename or edited in place behind its
//! journal. The container format itself is `server/mutable.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::api::{LeaseSecrets, ReadTestWriteResult, ReadVector, TestWriteVectors, WriteEnabler};
use crate::server::container::{LeaseContainer, clamp_read};
use crate::server::fsutil::{create_dir_durable, remove_dir_if_empty, sync_dir};
use crate::server::index::LeaseKey;
use crate::server::lease::{LeaseRecord, SecretStorage, ct_eq, expiry_for_renewal_at};
use crate::server::mutable::{self, MAX_MUTABLE_SHARE_SIZE, MutableShare, NewVersion};
use crate::server::stats::{Operation, Operations};
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

use super::leases::apply_lease;
use super::{MAX_READ_VECTOR_ANSWER, OWNER_ADD, StorageServer, io_error, lock, stripe_of};

/// What read-test-write does to one share once its tests pass.
#[derive(Debug)]
pub(super) enum SharePlan<'a> {
    /// Nothing (leases aside).
    Keep,
    /// Delete the share (new length 0).
    Delete,
    /// Write this new version.
    Rewrite(PlannedVersion<'a>),
}

/// The next version of a mutable share, as planned before anything is written.
#[derive(Debug)]
pub(super) struct PlannedVersion<'a> {
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

impl StorageServer {
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
}
