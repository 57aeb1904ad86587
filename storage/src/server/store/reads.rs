//! Reading shares of either kind: listing, lengths, ranged reads, and shares held open for a
//! long read that must see one version (Tahoe's `remote_get_buckets`/`slot_readv`).

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::Ordering;

use crate::server::container::OpenShare;
use crate::server::mutable;
use crate::server::stats::{Operation, Operations};
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

use super::{StorageServer, io_error, not_found, stripe_of};

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

impl StorageServer {
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
    pub(super) fn open_for_read(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
    ) -> Result<OpenShare, StorageError> {
        let _si_guard = self.lock_si(si);
        self.open_locked(kind, si, shnum)
    }
}
