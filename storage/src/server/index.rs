//! The lease index: a sled database (`storage_dir/leases.sled`) with one key per lease, ordered by
//! expiry, so that an expiry pass reads only the leases that have expired instead of walking every
//! share file.
//!
//! Key (59 bytes): `u64 BE expiry ‖ u8 kind (0 immutable, 1 mutable) ‖ 16B SI ‖ u16 BE shnum ‖
//! 32B lease id`, where the lease id is the BLAKE2b-256 of the renew secret; the value is empty. A
//! share that has no lease at all (found only when rebuilding) gets a sentinel entry with expiry 0
//! and an all-zero lease id, so that expiry deletes it as Tahoe's crawler would.
//!
//! # The index is derived data
//!
//! The share containers are the source of truth. While the server runs, every lease change updates
//! the index under the same per-SI lock, adding the new key before changing the container and
//! removing the old key after, so the index never lacks a live lease (at worst it holds stale keys,
//! which an expiry pass checks against the container and drops).
//!
//! sled makes writes durable only when it flushes, so the index is trusted after a restart only if
//! the previous server shut down cleanly: on drop the server writes a random epoch into the database,
//! flushes it, then writes the same epoch to `storage_dir/leases.clean` (fsync, rename, fsync dir).
//! `open` deletes that file before doing anything else and reuses the database only if its epoch
//! matches; sled recovers a prefix of its log, so a matching epoch (written last) means nothing
//! before it was lost. Otherwise, or when the database is missing, unopenable or corrupt, it is
//! deleted and rebuilt from the share files (and `open` logs that it did).

use std::fs;
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use super::fsutil::sync_dir;
use crate::{ShareKind, ShareNum, StorageIndex};

/// The database directory under `storage_dir`.
pub(super) const DB_DIR: &str = "leases.sled";
/// The clean-shutdown marker under `storage_dir`.
const CLEAN_MARKER: &str = "leases.clean";
/// Meta key: the epoch of the last clean shutdown.
const META_CLEAN_EPOCH: &[u8] = b"clean-epoch";
/// Meta key: the key format.
const META_FORMAT: &[u8] = b"format";
/// The current key format.
const FORMAT: &[u8] = b"1";
/// Length of an encoded key.
const KEY_LEN: usize = 59;

/// One lease's index entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct LeaseKey {
    /// Expiry, Unix seconds (0 for the no-lease sentinel).
    pub(super) expiry: u64,
    /// Share kind.
    pub(super) kind: ShareKind,
    /// Storage index.
    pub(super) si: StorageIndex,
    /// Share number.
    pub(super) shnum: ShareNum,
    /// BLAKE2b-256 of the renew secret (zeros for the sentinel).
    pub(super) lease_id: [u8; 32],
}

impl std::fmt::Debug for LeaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKey")
            .field("expiry", &self.expiry)
            .field("kind", &self.kind)
            .field("si", &self.si)
            .field("shnum", &self.shnum)
            .finish_non_exhaustive()
    }
}

impl LeaseKey {
    /// The entry for a share that has no lease.
    pub(super) fn sentinel(kind: ShareKind, si: StorageIndex, shnum: ShareNum) -> Self {
        LeaseKey {
            expiry: 0,
            kind,
            si,
            shnum,
            lease_id: [0; 32],
        }
    }

    /// Whether this is the no-lease sentinel.
    pub(super) fn is_sentinel(&self) -> bool {
        self.expiry == 0 && self.lease_id == [0; 32]
    }

    fn encode(&self) -> [u8; KEY_LEN] {
        let mut key = [0u8; KEY_LEN];
        key[0..8].copy_from_slice(&self.expiry.to_be_bytes());
        key[8] = match self.kind {
            ShareKind::Immutable => 0,
            ShareKind::Mutable => 1,
        };
        key[9..25].copy_from_slice(self.si.as_bytes());
        key[25..27].copy_from_slice(&self.shnum.to_be_bytes());
        key[27..59].copy_from_slice(&self.lease_id);
        key
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != KEY_LEN {
            return None;
        }
        let kind = match bytes[8] {
            0 => ShareKind::Immutable,
            1 => ShareKind::Mutable,
            _ => return None,
        };
        Some(LeaseKey {
            expiry: u64::from_be_bytes(bytes[0..8].try_into().ok()?),
            kind,
            si: StorageIndex(bytes[9..25].try_into().ok()?),
            shnum: u16::from_be_bytes(bytes[25..27].try_into().ok()?),
            lease_id: bytes[27..59].try_into().ok()?,
        })
    }
}

/// Why the index is being rebuilt, or that it is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IndexState {
    /// The database is consistent with the share files.
    Reused,
    /// It must be rebuilt from the share files, for this reason.
    Rebuild(String),
}

/// The open lease index.
#[derive(Debug)]
pub(super) struct LeaseIndex {
    db: sled::Db,
    leases: sled::Tree,
}

fn open_db(path: &Path) -> Result<sled::Db, String> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(64 * 1024 * 1024)
        .flush_every_ms(Some(1000));
    match catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("sled panicked while opening it".to_owned()),
    }
}

fn read_marker(root: &Path) -> io::Result<Option<Vec<u8>>> {
    let path = root.join(CLEAN_MARKER);
    let contents = match fs::read(&path) {
        Ok(contents) => Some(contents),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    fs::remove_file(&path)?;
    sync_dir(root)?;
    Ok(contents)
}

impl LeaseIndex {
    /// Opens the index under `root`, deciding whether it can be trusted (see the module docs). On
    /// [`IndexState::Rebuild`] the returned index is empty and the caller must fill it.
    pub(super) fn open(root: &Path) -> io::Result<(LeaseIndex, IndexState)> {
        let db_path = root.join(DB_DIR);
        // Remove the marker first: from here on, a crash must lead to a rebuild.
        let marker = read_marker(root)?;
        let reason = if !db_path.exists() {
            Some("the lease index is missing".to_owned())
        } else {
            match open_db(&db_path) {
                Err(e) => Some(format!("the lease index cannot be opened ({e})")),
                Ok(db) => match Self::check(&db, marker.as_deref()) {
                    None => {
                        let leases = db.open_tree("leases").map_err(io::Error::other)?;
                        db.remove(META_CLEAN_EPOCH).map_err(io::Error::other)?;
                        return Ok((LeaseIndex { db, leases }, IndexState::Reused));
                    }
                    Some(reason) => Some(reason),
                },
            }
        };
        let reason = reason.unwrap_or_default();
        let removed = if db_path.is_dir() {
            fs::remove_dir_all(&db_path)
        } else {
            fs::remove_file(&db_path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let db = open_db(&db_path).map_err(io::Error::other)?;
        db.insert(META_FORMAT, FORMAT).map_err(io::Error::other)?;
        let leases = db.open_tree("leases").map_err(io::Error::other)?;
        Ok((LeaseIndex { db, leases }, IndexState::Rebuild(reason)))
    }

    /// Why an opened database cannot be trusted, if it cannot.
    fn check(db: &sled::Db, marker: Option<&[u8]>) -> Option<String> {
        match db.get(META_FORMAT) {
            Ok(Some(format)) if format == FORMAT => {}
            Ok(_) => return Some("the lease index has an unknown format".to_owned()),
            Err(e) => return Some(format!("the lease index is corrupt ({e})")),
        }
        let Some(marker) = marker else {
            return Some("the server did not shut down cleanly".to_owned());
        };
        match db.get(META_CLEAN_EPOCH) {
            Ok(Some(epoch)) if epoch == marker => None,
            Ok(_) => Some("the lease index is older than the last clean shutdown".to_owned()),
            Err(e) => Some(format!("the lease index is corrupt ({e})")),
        }
    }

    /// Adds an entry.
    pub(super) fn insert(&self, key: &LeaseKey) -> Result<(), sled::Error> {
        self.leases.insert(key.encode(), &[])?;
        Ok(())
    }

    /// Removes an entry (absent entries are fine).
    pub(super) fn remove(&self, key: &LeaseKey) -> Result<(), sled::Error> {
        self.leases.remove(key.encode())?;
        Ok(())
    }

    /// Every entry whose expiry is below `threshold`, in expiry order.
    pub(super) fn expiring_before(&self, threshold: u64) -> Result<Vec<LeaseKey>, sled::Error> {
        let mut out = Vec::new();
        for entry in self.leases.range(..threshold.to_be_bytes()) {
            let (key, _) = entry?;
            match LeaseKey::decode(&key) {
                Some(key) => out.push(key),
                None => {
                    // Not ours: drop it so it is not met again.
                    self.leases.remove(key)?;
                }
            }
        }
        Ok(out)
    }

    /// Every entry (tests).
    #[cfg(test)]
    pub(super) fn all(&self) -> Result<Vec<LeaseKey>, sled::Error> {
        self.leases
            .iter()
            .map(|entry| entry.map(|(key, _)| LeaseKey::decode(&key)))
            .filter_map(Result::transpose)
            .collect()
    }

    /// Makes everything written so far durable.
    pub(super) fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush()?;
        Ok(())
    }

    /// Records a clean shutdown (see the module docs).
    pub(super) fn mark_clean(&self, root: &Path) -> io::Result<()> {
        let epoch: [u8; 16] = rand::random();
        let epoch = data_encoding::HEXLOWER.encode(&epoch);
        self.db
            .insert(META_CLEAN_EPOCH, epoch.as_bytes())
            .map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;
        let scratch = root.join(format!("{CLEAN_MARKER}.tmp"));
        {
            let mut file = fs::File::create(&scratch)?;
            file.write_all(epoch.as_bytes())?;
            file.sync_all()?;
        }
        fs::rename(&scratch, root.join(CLEAN_MARKER))?;
        sync_dir(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_expiry() {
        let a = LeaseKey {
            expiry: 5,
            kind: ShareKind::Mutable,
            si: StorageIndex([0xff; 16]),
            shnum: 300,
            lease_id: [7; 32],
        };
        let b = LeaseKey {
            expiry: 6,
            kind: ShareKind::Immutable,
            si: StorageIndex([0; 16]),
            shnum: 0,
            lease_id: [0; 32],
        };
        assert_eq!(LeaseKey::decode(&a.encode()), Some(a));
        assert_eq!(LeaseKey::decode(&b.encode()), Some(b));
        assert!(a.encode() < b.encode());
        assert!(LeaseKey::sentinel(ShareKind::Immutable, b.si, 1).is_sentinel());
        assert!(!a.is_sentinel());
        assert_eq!(LeaseKey::decode(&[0; 10]), None);
    }

    #[test]
    fn reused_only_after_a_clean_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let key = LeaseKey::sentinel(ShareKind::Immutable, StorageIndex([1; 16]), 2);
        let (index, state) = LeaseIndex::open(dir.path()).unwrap();
        assert_eq!(
            state,
            IndexState::Rebuild("the lease index is missing".to_owned())
        );
        index.insert(&key).unwrap();
        index.mark_clean(dir.path()).unwrap();
        drop(index);

        let (index, state) = LeaseIndex::open(dir.path()).unwrap();
        assert_eq!(state, IndexState::Reused);
        assert_eq!(index.all().unwrap(), vec![key]);
        assert_eq!(index.expiring_before(1).unwrap(), vec![key]);
        assert_eq!(index.expiring_before(0).unwrap(), vec![]);
        // Dropped without marking clean: a crash.
        drop(index);
        let (index, state) = LeaseIndex::open(dir.path()).unwrap();
        assert_eq!(
            state,
            IndexState::Rebuild("the server did not shut down cleanly".to_owned())
        );
        assert!(index.all().unwrap().is_empty());
        drop(index);
        // Something that is not a database at all is replaced.
        std::fs::remove_dir_all(dir.path().join(DB_DIR)).unwrap();
        std::fs::write(dir.path().join(DB_DIR), b"not a database").unwrap();
        let (index, state) = LeaseIndex::open(dir.path()).unwrap();
        assert!(matches!(state, IndexState::Rebuild(_)));
        index.insert(&key).unwrap();
        assert_eq!(index.all().unwrap(), vec![key]);
    }
}
