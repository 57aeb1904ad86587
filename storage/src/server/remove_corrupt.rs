//! Removing a corrupt immutable share at a client's request (a Tessera extension; Tahoe's storage
//! protocol has no way to delete a share). A repairer that found a share corrupt asks its server to
//! drop it, so that a good copy can be uploaded to the same server; the server does so only when
//! its own check ([`super::share_check`]) proves the share corrupt. A client's report alone never
//! removes anything: a share the server finds consistent, or cannot judge, is kept.
//!
//! Order: the share is checked without the SI's stripe lock (it can take a while, and immutable
//! share data never changes in place); then, under the lock, the file is confirmed to be the one
//! that was checked (same device and inode: a removal and a new upload in between would show) and
//! deleted as lease expiry deletes (unlink, fsync the directory, index entries, counters). A
//! report of the removal is written to `corruption-advisories/`, beside clients' reports.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

use super::StorageServer;
use super::advisory::{self, CorruptionAdvisory};
use super::container::{OpenShare, sniff_open_file};
use super::fsutil::remove_dir_if_empty;
use super::immutable::ImmutableShare;
use super::share_check::{ShareCheck, check_immutable_share};
use super::store::{io_error, not_found};
use crate::api::CorruptShareRemoval;
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

impl StorageServer {
    /// Removes immutable share `shnum` of `si` if this server's own check proves it corrupt;
    /// otherwise keeps it and says why. `reason` is the client's report (recorded, never trusted).
    /// `NotFound` if the share is not held; `ReadOnly` on a read-only server.
    pub fn remove_corrupt_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<CorruptShareRemoval, StorageError> {
        if self.config.readonly {
            return Err(StorageError::ReadOnly);
        }
        let path = self.layout.share_path(si, shnum);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(not_found(ShareKind::Immutable, si, shnum));
            }
            Err(e) => return Err(io_error(format!("cannot open share {si}/{shnum}"), e)),
        };
        let cannot_read = |e| io_error(format!("cannot read share {si}/{shnum}"), e);
        if sniff_open_file(&file).map_err(cannot_read)? != Some(ShareKind::Immutable) {
            return Err(not_found(ShareKind::Immutable, si, shnum));
        }
        let identity = file.metadata().map(|m| (m.dev(), m.ino())).map_err(cannot_read)?;
        let share = ImmutableShare::from_file(file).map_err(cannot_read)?;
        let mut read = |offset: u64, len: u64| share.read(offset, len);
        let verdict = check_immutable_share(&mut read, share.data_len(), shnum).map_err(cannot_read)?;
        drop(share);
        let problem = match verdict {
            ShareCheck::Corrupt(problem) => problem,
            ShareCheck::Consistent => {
                tracing::warn!(%si, shnum, reason, "storage: asked to remove a share that checks out; kept");
                return Ok(CorruptShareRemoval::Kept {
                    reason: "this server's check finds the share consistent (a corruption only the cap \
                             shows cannot be proven here)"
                        .to_owned(),
                });
            }
            ShareCheck::Undecided(why) => {
                tracing::warn!(%si, shnum, why, "storage: asked to remove a share it cannot judge; kept");
                return Ok(CorruptShareRemoval::Kept {
                    reason: format!("this server cannot judge the share: {why}"),
                });
            }
        };
        {
            let _si_guard = self.lock_si(si);
            let now = match std::fs::metadata(&path) {
                Ok(meta) => (meta.dev(), meta.ino()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(not_found(ShareKind::Immutable, si, shnum));
                }
                Err(e) => return Err(cannot_read(e)),
            };
            if now != identity {
                return Ok(CorruptShareRemoval::Kept {
                    reason: "the share was replaced while it was being checked".to_owned(),
                });
            }
            let Some(mut open) = OpenShare::open(&path, ShareKind::Immutable, true).map_err(cannot_read)?
            else {
                return Err(not_found(ShareKind::Immutable, si, shnum));
            };
            self.delete_share(ShareKind::Immutable, si, shnum, open.leases_mut())
                .map_err(|e| io_error(format!("cannot delete share {si}/{shnum}"), e))?;
            remove_dir_if_empty(&self.layout.share_dir(si));
        }
        tracing::error!(%si, shnum, problem, reason, "storage: corrupt share removed at a client's request");
        let advisory = CorruptionAdvisory {
            time: self.config.clock.now(),
            kind: ShareKind::Immutable,
            storage_index: si,
            shnum,
            reason: format!(
                "removed by this server: its own check found the share corrupt ({problem}).\nclient's report: {reason}"
            ),
        };
        if (advisory::render(&advisory).len() as u64) <= self.disk_available()
            && let Err(e) = advisory::write(&self.layout.advisories, &advisory)
        {
            tracing::warn!(%si, shnum, error = %e, "storage: cannot write the removal's report");
        }
        Ok(CorruptShareRemoval::Removed { problem })
    }
}
