//! The immutable share container (tahoe-formats.md §4.2, tahoe-interfaces.md §2.2).
//!
//! ```text
//! 0x00  u32 version       1 = lease secrets in clear, 2 = BLAKE2b-256 of each (what we write)
//! 0x04  u32 data length   min(2^32-1, allocated size); Tahoe ≥ 1.3 ignores it on read
//! 0x08  u32 lease count
//! 0x0c  share data, exactly allocated-size bytes
//! then  lease records, 72 bytes each: u32 owner | 32B renew | 32B cancel | u32 expiry
//! ```
//! All integers are big-endian. As in Tahoe, the data length is worked out from the file size:
//! `file size - 12 - 72 * lease count`.
//!
//! Lease changes are made in place, in an order that a crash can only interrupt harmlessly or in a
//! way [`repair`] detects (it runs on every share whenever the lease index is rebuilt, which happens
//! after every unclean shutdown):
//! - renew: rewrite the 4-byte expiry, fdatasync;
//! - add: append the 72-byte record, fdatasync, then bump the count, fdatasync (a crash between leaves
//!   an uncounted record, which would read as 72 extra data bytes: [`repair`] truncates it);
//! - remove: rewrite the surviving records packed from the first removed slot, fdatasync, lower the
//!   count, fdatasync, truncate (a crash before the count is written leaves a duplicate of a
//!   surviving lease, or a removed one, which the next expiry pass removes again; a crash before the
//!   truncation leaves uncounted records, which [`repair`] truncates).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::container::{LeaseContainer, clamp_read};
use super::fsutil::{read_exact_at, read_vec_at, write_all_at};
use super::lease::{IMMUTABLE_LEASE_LEN, LeaseRecord, SecretStorage};

/// Header length.
pub(super) const HEADER_LEN: u64 = 12;
/// Lease record length.
const LEASE_LEN: u64 = IMMUTABLE_LEASE_LEN as u64;
/// The bytes a complete container has beyond its share data: header plus one lease.
pub(super) const OVERHEAD: u64 = HEADER_LEN + LEASE_LEN;

/// An open immutable container.
#[derive(Debug)]
pub(super) struct ImmutableShare {
    file: File,
    version: u32,
    data_len: u64,
    leases: Vec<LeaseRecord>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed immutable container: {what}"),
    )
}

impl ImmutableShare {
    /// Parses an open container.
    pub(super) fn from_file(file: File) -> io::Result<Self> {
        let file_len = file.metadata()?.len();
        if file_len < HEADER_LEN {
            return Err(invalid("shorter than its header"));
        }
        let mut header = [0u8; 12];
        read_exact_at(&file, &mut header, 0)?;
        let version = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if version != 1 && version != 2 {
            return Err(invalid("unknown version"));
        }
        let count = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let leases_len = u64::from(count) * LEASE_LEN;
        let data_len = file_len
            .checked_sub(HEADER_LEN + leases_len)
            .ok_or_else(|| invalid("lease count exceeds the file"))?;
        let raw = read_vec_at(&file, HEADER_LEN + data_len, leases_len)?;
        let leases = raw
            .chunks_exact(IMMUTABLE_LEASE_LEN)
            .map(|chunk| {
                let mut record = [0u8; IMMUTABLE_LEASE_LEN];
                record.copy_from_slice(chunk);
                LeaseRecord::from_immutable(&record)
            })
            .collect();
        Ok(ImmutableShare {
            file,
            version,
            data_len,
            leases,
        })
    }

    /// Opens and parses `path`.
    pub(super) fn open(path: &Path, writable: bool) -> io::Result<Self> {
        Self::from_file(OpenOptions::new().read(true).write(writable).open(path)?)
    }

    /// The share data length.
    pub(super) fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Reads share data, clamped to its end (so never into the leases).
    pub(super) fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let (offset, len) = clamp_read(self.data_len, offset, len);
        if len == 0 {
            return Ok(Vec::new());
        }
        read_vec_at(&self.file, HEADER_LEN + offset, len)
    }

    fn lease_offset(&self, slot: usize) -> u64 {
        HEADER_LEN + self.data_len + slot as u64 * LEASE_LEN
    }

    fn write_count(&self, count: usize) -> io::Result<()> {
        let count = u32::try_from(count).map_err(|_| invalid("too many leases"))?;
        write_all_at(&self.file, &count.to_be_bytes(), 8)?;
        self.file.sync_data()
    }
}

impl LeaseContainer for ImmutableShare {
    fn secret_storage(&self) -> SecretStorage {
        if self.version == 1 {
            SecretStorage::Plain
        } else {
            SecretStorage::Hashed
        }
    }

    fn leases(&self) -> Vec<(usize, LeaseRecord)> {
        self.leases.iter().cloned().enumerate().collect()
    }

    fn set_expiry(&mut self, slot: usize, expiry: u32) -> io::Result<()> {
        if slot >= self.leases.len() {
            return Err(invalid("no such lease slot"));
        }
        write_all_at(&self.file, &expiry.to_be_bytes(), self.lease_offset(slot) + 68)?;
        self.file.sync_data()?;
        self.leases[slot].expiry = expiry;
        Ok(())
    }

    fn add_lease(&mut self, lease: LeaseRecord) -> io::Result<u64> {
        // Tahoe 1.17 (#3821): the 2^32-th lease is refused.
        if self.leases.len() >= u32::MAX as usize {
            return Err(invalid("too many leases"));
        }
        let slot = self.leases.len();
        write_all_at(&self.file, &lease.to_immutable(), self.lease_offset(slot))?;
        self.file.sync_data()?;
        self.write_count(slot + 1)?;
        self.leases.push(lease);
        Ok(LEASE_LEN)
    }

    fn remove_leases(&mut self, slots: &[usize]) -> io::Result<u64> {
        let Some(first) = slots.iter().copied().filter(|s| *s < self.leases.len()).min() else {
            return Ok(0);
        };
        let kept: Vec<LeaseRecord> = self
            .leases
            .iter()
            .enumerate()
            .filter(|(i, _)| !slots.contains(i))
            .map(|(_, lease)| lease.clone())
            .collect();
        let removed = self.leases.len() - kept.len();
        let tail: Vec<u8> = kept[first..]
            .iter()
            .flat_map(|lease| lease.to_immutable())
            .collect();
        write_all_at(&self.file, &tail, self.lease_offset(first))?;
        self.file.sync_data()?;
        self.write_count(kept.len())?;
        self.file.set_len(self.lease_offset(kept.len()))?;
        self.file.sync_all()?;
        self.leases = kept;
        Ok(removed as u64 * LEASE_LEN)
    }

    fn lease_growth(&self) -> u64 {
        LEASE_LEN
    }

    fn container_len(&self) -> u64 {
        self.lease_offset(self.leases.len())
    }
}

/// Creates an upload's container in `incoming/`: the v2 header (lease count 1), a sparse data area of
/// `allocated` bytes and the uploader's lease after it, as Tahoe's `BucketWriter` does. Nothing is
/// fsynced here: an incoming file only becomes durable when it is complete (see the module docs of
/// `server`).
pub(super) fn create_incoming(path: &Path, allocated: u64, lease: &LeaseRecord) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let mut header = [0u8; 12];
    header[0..4].copy_from_slice(&2u32.to_be_bytes());
    header[4..8].copy_from_slice(&u32::try_from(allocated).unwrap_or(u32::MAX).to_be_bytes());
    header[8..12].copy_from_slice(&1u32.to_be_bytes());
    write_all_at(&file, &header, 0)?;
    write_all_at(&file, &lease.to_immutable(), HEADER_LEN + allocated)?;
    Ok(file)
}

/// Repairs the traces a crash in the middle of a lease change can leave (see the module docs): when
/// the header's data-length field is exact (not saturated, and not the pre-1.3 value modulo 2^32)
/// but disagrees with the length worked out from the file size, the lease area is cut back to the
/// records that are both counted and complete. Returns whether anything changed.
pub(super) fn repair(path: &Path) -> io::Result<bool> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let file_len = file.metadata()?.len();
    if file_len < HEADER_LEN {
        return Ok(false);
    }
    let mut header = [0u8; 12];
    read_exact_at(&file, &mut header, 0)?;
    let version = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if version != 1 && version != 2 {
        return Ok(false);
    }
    let length_field = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let count = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if length_field == u32::MAX {
        return Ok(false);
    }
    let stated = u64::from(length_field);
    let computed = file_len.checked_sub(HEADER_LEN + u64::from(count) * LEASE_LEN);
    if computed == Some(stated) {
        return Ok(false);
    }
    if let Some(computed) = computed
        && computed >= 1 << 32
        && computed % (1 << 32) == stated
    {
        // A pre-1.3 container over 4 GiB: the field holds the length modulo 2^32.
        return Ok(false);
    }
    let Some(lease_area) = file_len.checked_sub(HEADER_LEN + stated) else {
        // Shorter than its own header says: damage we cannot attribute to a lease change.
        return Ok(false);
    };
    let complete_records = lease_area / LEASE_LEN;
    let kept = u64::from(count).min(complete_records);
    let kept_u32 = u32::try_from(kept).unwrap_or(u32::MAX);
    write_all_at(&file, &kept_u32.to_be_bytes(), 8)?;
    file.sync_data()?;
    file.set_len(HEADER_LEN + stated + kept * LEASE_LEN)?;
    file.sync_all()?;
    Ok(true)
}
