//! Immutable uploads (Tahoe's buckets): allocation with its refusals and takeover of idle
//! uploads, writes in any order, completion (made durable and moved into `shares/`), aborts and the
//! sweep of idle uploads. The container format itself is `server/immutable.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::api::{Allocation, LeaseSecrets, UploadProgress, UploadSecret};
use crate::server::container::sniff_file;
use crate::server::fsutil::{
    create_dir_durable, read_vec_at, remove_dir_if_empty, start_writeback, sync_dir, write_all_at,
};
use crate::server::immutable::{self, ImmutableShare};
use crate::server::index::LeaseKey;
use crate::server::lease::{LeaseRecord, SecretStorage, ct_eq, expiry_for_renewal_at};
use crate::server::ranges::RangeSet;
use crate::server::stats::{Operation, Operations};
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

use super::{OWNER_ALLOCATE, StorageServer, io_error, is_disk_full, lock};

/// An immutable upload in progress.
#[derive(Debug)]
pub(super) struct Upload {
    secret: Vec<u8>,
    allocated: u64,
    /// Space reserved for it (the whole container).
    reserved: u64,
    last_write: SystemTime,
    lease: LeaseRecord,
    file: Arc<Mutex<UploadFile>>,
}

#[derive(Debug)]
pub(super) struct UploadFile {
    file: File,
    written: RangeSet,
    /// The data before this offset has been handed to the disk's writeback ([`WRITEBACK_EVERY`]).
    writeback_from: u64,
    /// Where the last range handed to writeback began: the next step asks again from here, so
    /// that pages written by then leave the page cache.
    cached_from: u64,
}

/// The data an upload may hold unwritten before the disk is asked to start writing it: the sync
/// that completes a share then waits for about this much, not for the whole share. (Ten servers
/// sharing one disk each synced a whole 5.6 MB share at the end of a 16 MiB upload: 20–25 ms
/// after its last byte, at 50 ms round trips.)
///
/// Each step also asks again for the range of the step before, whose pages the disk has usually
/// written by then: those leave the page cache (the advice skips pages still being written), and
/// once a share is synced all but its last [`CACHED_TAIL`] go, whatever order its writes came in.
/// So an upload passes through the cache instead of filling it, and takes pages the cache just
/// gave back rather than pages from the free pool. On this development VM, whose free pages go
/// back to the host, each fresh page cost the copy that touched it a fault in the host: three
/// 1 GiB uploads in a row each took more of the storage nodes' CPU (2.5, 5.1, then 12.6 s of
/// kernel time), against a steady 2.4–2.7 s with this.
const WRITEBACK_EVERY: u64 = 1 << 20;

/// What a completed share keeps in the page cache: the end of its data, where its hash trees and
/// URI extension are, which a download reads first.
const CACHED_TAIL: u64 = 2 * WRITEBACK_EVERY;

impl StorageServer {
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
                            writeback_from: 0,
                            cached_from: 0,
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
        if end >= upload_file.writeback_from.saturating_add(WRITEBACK_EVERY) {
            let from = upload_file.cached_from;
            start_writeback(&upload_file.file, immutable::HEADER_LEN + from, end - from);
            upload_file.cached_from = upload_file.writeback_from;
            upload_file.writeback_from = end;
        }
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
        // Synced, so clean: all but the share's tail leaves the cache, whatever the steps left.
        let dropped = allocated.saturating_sub(CACHED_TAIL);
        if dropped > 0 {
            start_writeback(&upload_file.file, immutable::HEADER_LEN, dropped);
        }
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

    /// Opens the upload of share `shnum` of `si` under `upload` for an allocating write (a Tessera
    /// extension: `PATCH` with `X-Tessera-Allocate`), unless one is open under that secret already:
    /// allocation as [`Self::allocate_buckets`] does it for this share alone, `allocated_size` bytes,
    /// with `lease`. An upload's writes travel in parallel, so several may arrive before any is
    /// answered; the first opens the upload and the others find it open.
    /// [`StorageError::AlreadyComplete`] when the share is held (its lease added or renewed);
    /// [`StorageError::ReadOnly`] on a read-only server; [`StorageError::Refused`] with the reason
    /// when allocation refuses (another client's upload, no room).
    pub fn open_upload_for_write(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        allocated_size: u64,
    ) -> Result<(), StorageError> {
        let open_here = || {
            lock(&self.state)
                .uploads
                .get(&(si, shnum))
                .is_some_and(|entry| ct_eq(&entry.secret, &upload.0))
        };
        if open_here() {
            return Ok(());
        }
        let allocation =
            self.allocate_buckets(si, lease, upload, &BTreeSet::from([shnum]), allocated_size)?;
        if allocation.allocated.contains(&shnum) {
            return Ok(());
        }
        if allocation.already_have.contains(&shnum) {
            return Err(StorageError::AlreadyComplete { shnum });
        }
        if self.config.readonly {
            return Err(StorageError::ReadOnly);
        }
        // Another write of the same upload opened it since the first look.
        if open_here() {
            return Ok(());
        }
        Err(allocation.refusal(shnum))
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
}
