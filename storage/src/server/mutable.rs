//! The mutable share container (tahoe-formats.md §6.4, tahoe-interfaces.md §2.3).
//!
//! ```text
//! 0     32B magic      "Tahoe mutable container v1\n" 75 09 44 03 8e  (lease secrets in clear)
//!                      "Tahoe mutable container v2\n" c3 55 21 99 25  (BLAKE2b-256 of each; we write v2)
//! 32    20B node id of the server that recorded the write enabler
//! 52    32B write enabler
//! 84    u64 data length
//! 92    u64 offset of the extra-lease area
//! 100   4 × 92-byte lease slots: u32 owner (0 = empty) | u32 expiry | 32B renew | 32B cancel | 20B node id
//! 468   share data
//! then  u32 extra-lease count, then that many 92-byte lease records
//! ```
//!
//! # Crash safety of writes
//!
//! Tahoe edits the container in place; a crash in the middle can leave half-written data or moved
//! leases. We instead write every new version of a share to a scratch file in the same directory
//! ([`write_version`]: a copy of the old container made with `std::fs::copy`, which the kernel does
//! with `copy_file_range` and reflinks where the filesystem can, then the edits), fsync it and rename
//! it over the share, then fsync the directory. A reader or a crash sees the old version or the new
//! one, never a mix. The cost is a copy of the share per write, which for the small SDMF shares that
//! dominate (directories) is negligible.
//!
//! Lease changes on a share that is not otherwise being written are made in place, as in Tahoe: a
//! renewal rewrites the 4-byte expiry, an addition fills an empty slot or appends a record before
//! bumping the extra-lease count, and a removal zeroes the record (owner 0 marks an empty slot, and
//! Tahoe never compacts). Each is followed by fdatasync.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::container::{LeaseContainer, clamp_read};
use super::fsutil::{read_exact_at, read_vec_at, write_all_at};
use super::lease::{LeaseRecord, MUTABLE_LEASE_LEN, SecretStorage};
use crate::api::WriteVector;

/// Magic of version-1 containers.
pub(super) const MAGIC_V1: [u8; 32] = *b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e";
/// Magic of version-2 containers: the 27 readable bytes plus the first 5 bytes of
/// `tagged_hash("allmydata_mutable_container_header", readable)`.
pub(super) const MAGIC_V2: [u8; 32] = *b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";
/// Where the share data starts.
pub(super) const DATA_OFFSET: u64 = 468;
/// Where the four lease slots start.
const LEASE_SLOTS_OFFSET: u64 = 100;
/// Lease record length.
const LEASE_LEN: u64 = MUTABLE_LEASE_LEN as u64;
/// Tahoe's `MAX_MUTABLE_SHARE_SIZE`, also advertised as `maximum-mutable-share-size`.
pub(super) const MAX_MUTABLE_SHARE_SIZE: u64 = 69_105 * 1000 * 1000 * 1000 * 1000;

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed mutable container: {what}"),
    )
}

/// An open mutable container.
#[derive(Debug)]
pub(super) struct MutableShare {
    file: File,
    version: u8,
    nodeid: [u8; 20],
    write_enabler: [u8; 32],
    data_len: u64,
    extra_lease_offset: u64,
    /// The four header slots followed by the extra leases; `None` is an empty slot.
    slots: Vec<Option<LeaseRecord>>,
    file_len: u64,
}

fn parse_slot(bytes: &[u8]) -> Option<LeaseRecord> {
    let mut record = [0u8; MUTABLE_LEASE_LEN];
    record.copy_from_slice(bytes);
    let lease = LeaseRecord::from_mutable(&record);
    (lease.owner != 0).then_some(lease)
}

impl MutableShare {
    /// Parses an open container.
    pub(super) fn from_file(file: File) -> io::Result<Self> {
        let file_len = file.metadata()?.len();
        if file_len < DATA_OFFSET {
            return Err(invalid("shorter than its header"));
        }
        let mut header = [0u8; DATA_OFFSET as usize];
        read_exact_at(&file, &mut header, 0)?;
        let version = if header[..32] == MAGIC_V1 {
            1
        } else if header[..32] == MAGIC_V2 {
            2
        } else {
            return Err(invalid("unknown magic"));
        };
        let mut nodeid = [0u8; 20];
        nodeid.copy_from_slice(&header[32..52]);
        let mut write_enabler = [0u8; 32];
        write_enabler.copy_from_slice(&header[52..84]);
        let data_len = u64::from_be_bytes(header[84..92].try_into().map_err(|_| invalid("header"))?);
        let extra_lease_offset =
            u64::from_be_bytes(header[92..100].try_into().map_err(|_| invalid("header"))?);
        if DATA_OFFSET
            .checked_add(data_len)
            .is_none_or(|end| end > extra_lease_offset)
        {
            return Err(invalid("data overlaps the extra leases"));
        }
        let mut slots: Vec<Option<LeaseRecord>> = header[LEASE_SLOTS_OFFSET as usize..]
            .chunks_exact(MUTABLE_LEASE_LEN)
            .map(parse_slot)
            .collect();
        if extra_lease_offset.saturating_add(4) <= file_len {
            let mut count = [0u8; 4];
            read_exact_at(&file, &mut count, extra_lease_offset)?;
            let count = u64::from(u32::from_be_bytes(count));
            let extras_len = count * LEASE_LEN;
            if extra_lease_offset + 4 + extras_len > file_len {
                return Err(invalid("extra-lease count exceeds the file"));
            }
            let raw = read_vec_at(&file, extra_lease_offset + 4, extras_len)?;
            slots.extend(raw.chunks_exact(MUTABLE_LEASE_LEN).map(parse_slot));
        } else if extra_lease_offset > file_len {
            return Err(invalid("extra-lease offset beyond the file"));
        }
        Ok(MutableShare {
            file,
            version,
            nodeid,
            write_enabler,
            data_len,
            extra_lease_offset,
            slots,
            file_len,
        })
    }

    /// Opens and parses `path`.
    pub(super) fn open(path: &Path, writable: bool) -> io::Result<Self> {
        Self::from_file(OpenOptions::new().read(true).write(writable).open(path)?)
    }

    /// The container version (1 or 2).
    pub(super) fn version(&self) -> u8 {
        self.version
    }

    /// The node id that recorded the write enabler.
    pub(super) fn nodeid(&self) -> [u8; 20] {
        self.nodeid
    }

    /// The stored write enabler.
    pub(super) fn write_enabler(&self) -> [u8; 32] {
        self.write_enabler
    }

    /// The share data length.
    pub(super) fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The lease slots (header slots then extras; `None` = empty).
    pub(super) fn slots(&self) -> &[Option<LeaseRecord>] {
        &self.slots
    }

    /// Reads share data, clamped to its end.
    pub(super) fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let (offset, len) = clamp_read(self.data_len, offset, len);
        if len == 0 {
            return Ok(Vec::new());
        }
        read_vec_at(&self.file, DATA_OFFSET + offset, len)
    }

    fn slot_offset(&self, slot: usize) -> u64 {
        if slot < 4 {
            LEASE_SLOTS_OFFSET + slot as u64 * LEASE_LEN
        } else {
            self.extra_lease_offset + 4 + (slot - 4) as u64 * LEASE_LEN
        }
    }
}

impl LeaseContainer for MutableShare {
    fn secret_storage(&self) -> SecretStorage {
        if self.version == 1 {
            SecretStorage::Plain
        } else {
            SecretStorage::Hashed
        }
    }

    fn leases(&self) -> Vec<(usize, LeaseRecord)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, lease)| lease.clone().map(|lease| (slot, lease)))
            .collect()
    }

    fn set_expiry(&mut self, slot: usize, expiry: u32) -> io::Result<()> {
        let Some(Some(lease)) = self.slots.get(slot) else {
            return Err(invalid("no lease in that slot"));
        };
        let mut lease = lease.clone();
        write_all_at(&self.file, &expiry.to_be_bytes(), self.slot_offset(slot) + 4)?;
        self.file.sync_data()?;
        lease.expiry = expiry;
        self.slots[slot] = Some(lease);
        Ok(())
    }

    fn add_lease(&mut self, lease: LeaseRecord) -> io::Result<u64> {
        if let Some(slot) = self.slots.iter().position(Option::is_none) {
            write_all_at(&self.file, &lease.to_mutable(), self.slot_offset(slot))?;
            self.file.sync_data()?;
            self.slots[slot] = Some(lease);
            return Ok(0);
        }
        let slot = self.slots.len();
        let extras = u32::try_from(slot - 3).map_err(|_| invalid("too many leases"))?;
        write_all_at(&self.file, &lease.to_mutable(), self.slot_offset(slot))?;
        self.file.sync_data()?;
        write_all_at(&self.file, &extras.to_be_bytes(), self.extra_lease_offset)?;
        self.file.sync_data()?;
        self.slots.push(Some(lease));
        let new_len = self.file_len.max(self.slot_offset(slot) + LEASE_LEN);
        let grown = new_len - self.file_len;
        self.file_len = new_len;
        Ok(grown)
    }

    fn remove_leases(&mut self, slots: &[usize]) -> io::Result<u64> {
        for &slot in slots {
            if matches!(self.slots.get(slot), Some(Some(_))) {
                write_all_at(&self.file, &[0u8; MUTABLE_LEASE_LEN], self.slot_offset(slot))?;
                self.slots[slot] = None;
            }
        }
        self.file.sync_data()?;
        Ok(0)
    }

    fn lease_growth(&self) -> u64 {
        if self.slots.iter().any(Option::is_none) {
            0
        } else {
            LEASE_LEN
        }
    }

    fn container_len(&self) -> u64 {
        self.file_len
    }
}

/// The data length after applying `writes` then `new_length` to a share of `old_len` bytes: each
/// write extends the share to its end (zero-filling any gap, even for an empty write), and
/// `new_length` truncates or extends. `None` on overflow.
pub(super) fn planned_data_len(old_len: u64, writes: &[WriteVector], new_length: Option<u64>) -> Option<u64> {
    let mut len = old_len;
    for write in writes {
        len = len.max(write.offset.checked_add(write.data.len() as u64)?);
    }
    Some(new_length.unwrap_or(len))
}

/// The size of a container holding `data_len` bytes and these lease slots (extras packed).
pub(super) fn container_len_for(data_len: u64, slots: &[Option<LeaseRecord>]) -> u64 {
    let extras = slots.iter().skip(4).flatten().count() as u64;
    DATA_OFFSET + data_len + 4 + extras * LEASE_LEN
}

/// Everything that makes up the next version of a mutable share.
#[derive(Debug)]
pub(super) struct NewVersion<'a> {
    /// Container version to write (that of the existing share, or 2).
    pub(super) version: u8,
    /// Node id that recorded the write enabler.
    pub(super) nodeid: [u8; 20],
    /// The write enabler.
    pub(super) write_enabler: [u8; 32],
    /// The writes, in order.
    pub(super) writes: &'a [WriteVector],
    /// Applied after the writes.
    pub(super) new_length: Option<u64>,
    /// The final lease slots; the first four go in the header, the rest (packed) after the data.
    pub(super) slots: &'a [Option<LeaseRecord>],
}

/// One step of turning a container into its next version.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Truncate or extend (with zeros) the file to this length.
    SetLen(u64),
    /// Write bytes at an absolute file offset.
    Write(u64, Vec<u8>),
}

/// The steps that turn a container whose data is `old_len` bytes into `next`. Replaying them is
/// idempotent: they depend only on `old_len` and `next`, never on what the file holds.
fn plan_ops(old_len: u64, next: &NewVersion<'_>) -> io::Result<Vec<Op>> {
    // Drop the old extra leases (and anything after the data): growth must read as zeros.
    let mut ops = vec![Op::SetLen(DATA_OFFSET + old_len)];
    let mut len = old_len;
    for write in next.writes {
        let end = write.offset + write.data.len() as u64;
        if end > len {
            ops.push(Op::SetLen(DATA_OFFSET + end));
            len = end;
        }
        ops.push(Op::Write(DATA_OFFSET + write.offset, write.data.clone()));
    }
    if let Some(new_length) = next.new_length {
        ops.push(Op::SetLen(DATA_OFFSET + new_length));
        len = new_length;
    }
    let extras: Vec<&LeaseRecord> = next.slots.iter().skip(4).flatten().collect();
    let extra_count = u32::try_from(extras.len()).map_err(|_| invalid("too many leases"))?;
    let mut trailer = Vec::with_capacity(4 + extras.len() * MUTABLE_LEASE_LEN);
    trailer.extend_from_slice(&extra_count.to_be_bytes());
    for lease in extras {
        trailer.extend_from_slice(&lease.to_mutable());
    }
    let end = DATA_OFFSET + len + trailer.len() as u64;
    ops.push(Op::Write(DATA_OFFSET + len, trailer));
    ops.push(Op::SetLen(end));
    let mut header = [0u8; DATA_OFFSET as usize];
    header[..32].copy_from_slice(if next.version == 1 { &MAGIC_V1 } else { &MAGIC_V2 });
    header[32..52].copy_from_slice(&next.nodeid);
    header[52..84].copy_from_slice(&next.write_enabler);
    header[84..92].copy_from_slice(&len.to_be_bytes());
    header[92..100].copy_from_slice(&(DATA_OFFSET + len).to_be_bytes());
    for (slot, lease) in next.slots.iter().take(4).enumerate() {
        if let Some(lease) = lease {
            let at = LEASE_SLOTS_OFFSET as usize + slot * MUTABLE_LEASE_LEN;
            header[at..at + MUTABLE_LEASE_LEN].copy_from_slice(&lease.to_mutable());
        }
    }
    ops.push(Op::Write(0, header.to_vec()));
    Ok(ops)
}

fn apply_ops(file: &File, ops: &[Op]) -> io::Result<u64> {
    let mut len = 0;
    for op in ops {
        match op {
            Op::SetLen(new_len) => {
                file.set_len(*new_len)?;
                len = *new_len;
            }
            Op::Write(offset, data) => write_all_at(file, data, *offset)?,
        }
    }
    reserve_holes(file, len)?;
    Ok(len)
}

/// Gives every byte of a container disk blocks. A write far past the end (or a `new-length` that
/// extends) leaves a hole that statvfs does not count, so without this the space the server
/// promised would not show as used, and `reserved_space` and the free-space checks would let peers
/// promise the same disk away many times. Files without holes are left alone (one `fstat`).
/// Filesystems that cannot preallocate keep the hole (logged).
fn reserve_holes(file: &File, len: u64) -> io::Result<()> {
    match fs4::FileExt::allocate(file, len) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            tracing::warn!(error = %e, "storage: cannot preallocate a sparse mutable share on this filesystem");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Writes the next version of a share to `scratch` and fsyncs it; the caller renames it into place.
/// `base` is the current container and its data length, if the share exists. Returns the new
/// container's size.
pub(super) fn write_version(
    base: Option<(&Path, u64)>,
    scratch: &Path,
    next: &NewVersion<'_>,
) -> io::Result<u64> {
    match std::fs::remove_file(scratch) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let old_len = match base {
        Some((path, old_len)) => {
            std::fs::copy(path, scratch)?;
            old_len
        }
        None => 0,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(scratch)?;
    let len = apply_ops(&file, &plan_ops(old_len, next)?)?;
    file.sync_all()?;
    Ok(len)
}

/// Whether a write to an existing share should be made in place (behind a journal) rather than to a
/// copy: when the share is large and the write small next to it (MDMF partial updates of big
/// files), copying the whole share per write would cost far more than the write.
pub(super) fn write_in_place_pays(container_len: u64, next: &NewVersion<'_>) -> bool {
    let written: u64 = next.writes.iter().map(|w| w.data.len() as u64).sum();
    container_len >= IN_PLACE_MIN && written.saturating_mul(2) < container_len
}

/// Shares at least this large are written in place when the write is small next to them.
const IN_PLACE_MIN: u64 = 1 << 20;

const JOURNAL_MAGIC: &[u8; 16] = b"TESSERA-JOURNAL1";

fn encode_journal(ops: &[Op]) -> Vec<u8> {
    use blake2::Digest;
    let mut out = JOURNAL_MAGIC.to_vec();
    out.extend_from_slice(&(ops.len() as u64).to_be_bytes());
    for op in ops {
        match op {
            Op::SetLen(len) => {
                out.push(0);
                out.extend_from_slice(&len.to_be_bytes());
            }
            Op::Write(offset, data) => {
                out.push(1);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&(data.len() as u64).to_be_bytes());
                out.extend_from_slice(data);
            }
        }
    }
    let digest = blake2::Blake2b::<blake2::digest::consts::U32>::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Parses a journal; `None` if it is incomplete or damaged (a crash while writing it, before the
/// share was touched).
fn decode_journal(bytes: &[u8]) -> Option<Vec<Op>> {
    use blake2::Digest;
    let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake2::Blake2b::<blake2::digest::consts::U32>::digest(body).as_slice() != digest {
        return None;
    }
    let mut rest = body.strip_prefix(JOURNAL_MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let u64_of = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
    let count = u64_of(take(8)?);
    let mut ops = Vec::new();
    for _ in 0..count {
        match take(1)?[0] {
            0 => ops.push(Op::SetLen(u64_of(take(8)?))),
            1 => {
                let offset = u64_of(take(8)?);
                let len = usize::try_from(u64_of(take(8)?)).ok()?;
                ops.push(Op::Write(offset, take(len)?.to_vec()));
            }
            _ => return None,
        }
    }
    Some(ops)
}

/// Writes the next version of a share in place: the steps go to `journal` first (fsynced, with its
/// directory), then to the share (fsynced), then the journal is removed. After a crash,
/// [`recover_journal`] replays a complete journal, so the share is the old version or the new one.
pub(super) fn write_version_in_place(
    path: &Path,
    journal: &Path,
    old_len: u64,
    next: &NewVersion<'_>,
) -> io::Result<u64> {
    let ops = plan_ops(old_len, next)?;
    {
        let mut file = File::create(journal)?;
        io::Write::write_all(&mut file, &encode_journal(&ops))?;
        file.sync_all()?;
    }
    if let Some(dir) = journal.parent() {
        File::open(dir)?.sync_all()?;
    }
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = apply_ops(&file, &ops)?;
    file.sync_all()?;
    remove_journal(journal)?;
    Ok(len)
}

/// Removes a replayed journal durably, so that a crash cannot bring it back to undo later lease
/// changes made in place.
fn remove_journal(journal: &Path) -> io::Result<()> {
    std::fs::remove_file(journal)?;
    if let Some(dir) = journal.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The journal an in-place write of `next` over a share of `old_len` data bytes would write (tests
/// use it to simulate a crash).
#[cfg(test)]
pub(super) fn journal_bytes(old_len: u64, next: &NewVersion<'_>) -> io::Result<Vec<u8>> {
    Ok(encode_journal(&plan_ops(old_len, next)?))
}

/// Replays the journal of an interrupted in-place write onto `share` (when the journal is complete)
/// and removes it. Returns whether it was replayed.
pub(super) fn recover_journal(journal: &Path, share: &Path) -> io::Result<bool> {
    let bytes = std::fs::read(journal)?;
    let replayed = match decode_journal(&bytes) {
        Some(ops) => {
            let file = OpenOptions::new().read(true).write(true).open(share)?;
            apply_ops(&file, &ops)?;
            file.sync_all()?;
            true
        }
        None => false,
    };
    remove_journal(journal)?;
    Ok(replayed)
}
