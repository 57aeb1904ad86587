//! What the two container formats have in common: telling them apart by their first bytes, reading
//! share data, and the lease operations the server performs on either.

use std::fs::File;
use std::io;
use std::path::Path;

use super::fsutil::read_exact_at;
use super::immutable::ImmutableShare;
use super::lease::{LeaseRecord, SecretStorage};
use super::mutable::{self, MutableShare};
use crate::ShareKind;

/// Recognizes a container from its first (up to) 32 bytes: a mutable magic string, or an immutable
/// version number 1 or 2. Anything else is not a share file.
pub(super) fn sniff(prefix: &[u8]) -> Option<ShareKind> {
    if prefix.len() >= 32 && (prefix[..32] == mutable::MAGIC_V1 || prefix[..32] == mutable::MAGIC_V2) {
        return Some(ShareKind::Mutable);
    }
    if prefix.len() >= 12 {
        let version = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if version == 1 || version == 2 {
            return Some(ShareKind::Immutable);
        }
    }
    None
}

/// Reads a file's first bytes and [`sniff`]s them.
pub(super) fn sniff_file(path: &Path) -> io::Result<Option<ShareKind>> {
    let file = File::open(path)?;
    sniff_open_file(&file)
}

/// [`sniff`] for an open file.
pub(super) fn sniff_open_file(file: &File) -> io::Result<Option<ShareKind>> {
    let len = file.metadata()?.len().min(32);
    let mut prefix = vec![0u8; usize::try_from(len).unwrap_or(32)];
    read_exact_at(file, &mut prefix, 0)?;
    Ok(sniff(&prefix))
}

/// The lease operations the server needs, over either container format.
///
/// Slots are positions in the container's lease list (immutable) or lease slots (mutable, where a
/// slot may be empty). Every mutating method has made its change durable (fdatasync) on return.
pub(super) trait LeaseContainer {
    /// How this container stores secrets (v1 plain, v2 hashed).
    fn secret_storage(&self) -> SecretStorage;
    /// The live leases with their slots.
    fn leases(&self) -> Vec<(usize, LeaseRecord)>;
    /// Rewrites one lease's expiry in place.
    fn set_expiry(&mut self, slot: usize, expiry: u32) -> io::Result<()>;
    /// Stores a new lease; returns by how many bytes the container grew.
    fn add_lease(&mut self, lease: LeaseRecord) -> io::Result<u64>;
    /// Removes leases; returns how many bytes the container shrank by.
    fn remove_leases(&mut self, slots: &[usize]) -> io::Result<u64>;
    /// By how many bytes [`add_lease`](Self::add_lease) would grow the container.
    fn lease_growth(&self) -> u64;
    /// The container's size on disk.
    fn container_len(&self) -> u64;
}

/// An open share of either kind.
#[derive(Debug)]
pub(super) enum OpenShare {
    /// An immutable container.
    Immutable(ImmutableShare),
    /// A mutable container.
    Mutable(MutableShare),
}

impl OpenShare {
    /// Opens `path` and parses it as a container of `kind`; `Ok(None)` if it is a share of the other
    /// kind or not a share at all.
    pub(super) fn open(path: &Path, kind: ShareKind, writable: bool) -> io::Result<Option<OpenShare>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)?;
        if sniff_open_file(&file)? != Some(kind) {
            return Ok(None);
        }
        Ok(Some(match kind {
            ShareKind::Immutable => OpenShare::Immutable(ImmutableShare::from_file(file)?),
            ShareKind::Mutable => OpenShare::Mutable(MutableShare::from_file(file)?),
        }))
    }

    /// The length of the share data.
    pub(super) fn data_len(&self) -> u64 {
        match self {
            OpenShare::Immutable(share) => share.data_len(),
            OpenShare::Mutable(share) => share.data_len(),
        }
    }

    /// Reads share data, clamped to its end.
    pub(super) fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        match self {
            OpenShare::Immutable(share) => share.read(offset, len),
            OpenShare::Mutable(share) => share.read(offset, len),
        }
    }

    /// The lease view.
    pub(super) fn leases_mut(&mut self) -> &mut dyn LeaseContainer {
        match self {
            OpenShare::Immutable(share) => share,
            OpenShare::Mutable(share) => share,
        }
    }
}

/// The `offset..offset+len` window of a `data_len`-byte share, clamped: empty when `offset` is at or
/// past the end.
pub(super) fn clamp_read(data_len: u64, offset: u64, len: u64) -> (u64, u64) {
    if offset >= data_len {
        return (offset, 0);
    }
    (offset, len.min(data_len - offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_both_kinds_and_rejects_others() {
        assert_eq!(sniff(&mutable::MAGIC_V1), Some(ShareKind::Mutable));
        assert_eq!(sniff(&mutable::MAGIC_V2), Some(ShareKind::Mutable));
        let mut imm = [0u8; 32];
        imm[3] = 2;
        assert_eq!(sniff(&imm), Some(ShareKind::Immutable));
        imm[3] = 1;
        assert_eq!(sniff(&imm[..12]), Some(ShareKind::Immutable));
        imm[3] = 3;
        assert_eq!(sniff(&imm), None);
        assert_eq!(sniff(b"Tahoe mutable container v3\n12345"), None);
        assert_eq!(sniff(&[0, 0, 0, 2]), None);
    }

    #[test]
    fn clamping() {
        assert_eq!(clamp_read(10, 0, 100), (0, 10));
        assert_eq!(clamp_read(10, 4, 3), (4, 3));
        assert_eq!(clamp_read(10, 10, 3), (10, 0));
        assert_eq!(clamp_read(10, u64::MAX, u64::MAX), (u64::MAX, 0));
    }
}
