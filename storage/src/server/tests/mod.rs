//! Tests of the share store, by topic:
//! - `containers`: byte layouts of both container versions, including Tahoe 1.2.0's share files;
//! - `upload`: the immutable upload lifecycle;
//! - `mutable_writes`: read-test-write semantics;
//! - `restart`: restarts, crashes, the lease index rebuild and crash repair;
//! - `expiry`: lease expiry in both modes and with the per-kind switches;
//! - `space`: reserved space, `max_space` and read-only mode;
//! - `advisories`: corruption reports;
//! - `model`: random operation sequences (with restarts) against an in-memory model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::container::OpenShare;
use super::lease::{LeaseRecord, SecretStorage};
use super::{FakeClock, StorageConfig, StorageServer};
use crate::api::{
    LeaseSecrets, ReadTestWriteResult, ReadVector, TestVector, TestWriteVectors, UploadSecret, WriteEnabler,
    WriteVector,
};
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

mod advisories;
mod containers;
mod expiry;
mod model;
mod mutable_writes;
mod restart;
mod space;
mod upload;

/// One day.
const DAY: Duration = Duration::from_secs(86_400);

/// A store in a temporary directory with a fake clock, reopenable.
struct Harness {
    _dir: tempfile::TempDir,
    clock: Arc<FakeClock>,
    config: StorageConfig,
    server: Option<StorageServer>,
}

impl Harness {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(configure: impl FnOnce(&mut StorageConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock::default());
        let mut config = StorageConfig::new(dir.path().join("storage"));
        config.clock = clock.clone();
        config.node_id = [0xab; 20];
        configure(&mut config);
        let server = StorageServer::open(config.clone()).unwrap();
        Harness {
            _dir: dir,
            clock,
            config,
            server: Some(server),
        }
    }

    fn server(&self) -> &StorageServer {
        self.server.as_ref().unwrap()
    }

    fn root(&self) -> &Path {
        &self.config.storage_dir
    }

    /// A clean shutdown and start.
    fn restart(&mut self) {
        drop(self.server.take());
        self.server = Some(StorageServer::open(self.config.clone()).unwrap());
    }

    /// A crash (the index is not marked clean) and start.
    fn crash_and_restart(&mut self) {
        self.server.take().unwrap().crash();
        self.server = Some(StorageServer::open(self.config.clone()).unwrap());
    }

    fn stop(&mut self) {
        drop(self.server.take());
    }

    fn start(&mut self) {
        self.server = Some(StorageServer::open(self.config.clone()).unwrap());
    }

    fn share_path(&self, si: StorageIndex, shnum: ShareNum) -> PathBuf {
        self.root()
            .join("shares")
            .join(si.prefix())
            .join(si.to_string())
            .join(shnum.to_string())
    }

    fn now_secs(&self) -> u64 {
        super::lease::unix_secs(crate::server::Clock::now(&*self.clock))
    }

    /// The leases of a share as (index id, expiry, owner), read from its container.
    fn leases(&self, kind: ShareKind, si: StorageIndex, shnum: ShareNum) -> Vec<([u8; 32], u32, u32)> {
        let mut share = OpenShare::open(&self.share_path(si, shnum), kind, false)
            .unwrap()
            .unwrap();
        let container = share.leases_mut();
        let storage = container.secret_storage();
        container
            .leases()
            .into_iter()
            .map(|(_, record)| (storage.index_id(&record.renew), record.expiry, record.owner))
            .collect()
    }

    /// The sum of the sizes of every share file on disk.
    fn bytes_on_disk(&self) -> u64 {
        let mut total = 0;
        let shares = self.root().join("shares");
        for prefix in std::fs::read_dir(&shares).unwrap() {
            let prefix = prefix.unwrap();
            if prefix.file_name() == "incoming" {
                continue;
            }
            for bucket in std::fs::read_dir(prefix.path()).unwrap() {
                for file in std::fs::read_dir(bucket.unwrap().path()).unwrap() {
                    total += file.unwrap().metadata().unwrap().len();
                }
            }
        }
        total
    }
}

fn si(n: u8) -> StorageIndex {
    let mut bytes = [n; 16];
    bytes[15] = 0x5a;
    StorageIndex(bytes)
}

fn lease(n: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: [n; 32],
        cancel: [n ^ 0xff; 32],
    }
}

fn lease_id(n: u8) -> [u8; 32] {
    super::lease::hash_secret(&[n; 32])
}

fn upload_secret(n: u8) -> UploadSecret {
    UploadSecret(vec![n; 20])
}

fn write_enabler(n: u8) -> WriteEnabler {
    WriteEnabler([n; 32])
}

fn shnums(numbers: &[ShareNum]) -> BTreeSet<ShareNum> {
    numbers.iter().copied().collect()
}

/// Deterministic share bytes.
fn content(si: StorageIndex, shnum: ShareNum, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ si.0[0] ^ (shnum as u8).wrapping_mul(7))
        .collect()
}

/// Allocates and writes a whole immutable share in one write.
fn upload(server: &StorageServer, si: StorageIndex, shnum: ShareNum, data: &[u8], lease_n: u8) {
    let allocation = server
        .allocate_buckets(
            si,
            &lease(lease_n),
            &upload_secret(1),
            &shnums(&[shnum]),
            data.len() as u64,
        )
        .unwrap();
    assert!(allocation.allocated.contains(&shnum), "{allocation:?}");
    let progress = server.write_share(si, shnum, &upload_secret(1), 0, data).unwrap();
    assert!(progress.complete);
}

/// A read-test-write with one share's vectors.
fn rtw(
    server: &StorageServer,
    si: StorageIndex,
    we: u8,
    lease_n: u8,
    shnum: ShareNum,
    vectors: TestWriteVectors,
    reads: &[ReadVector],
) -> Result<ReadTestWriteResult, StorageError> {
    let mut tw = BTreeMap::new();
    tw.insert(shnum, vectors);
    server.read_test_write(si, &write_enabler(we), &lease(lease_n), &tw, reads)
}

/// Writes `data` at `offset`, no tests.
fn write_vectors(offset: u64, data: &[u8]) -> TestWriteVectors {
    TestWriteVectors {
        test: Vec::new(),
        write: vec![WriteVector {
            offset,
            data: data.to_vec(),
        }],
        new_length: None,
    }
}

fn test_vector(offset: u64, size: u64, specimen: &[u8]) -> TestVector {
    TestVector {
        offset,
        size,
        specimen: specimen.to_vec(),
    }
}

/// Builds a lease record as stored in a v1 (plaintext) container.
fn plain_lease(owner: u32, n: u8, expiry: u32, nodeid: [u8; 20]) -> LeaseRecord {
    LeaseRecord::new(
        SecretStorage::Plain,
        owner,
        &[n; 32],
        &[n ^ 0xff; 32],
        expiry,
        nodeid,
    )
}

#[test]
fn server_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StorageServer>();
    assert_send_sync::<super::LocalStorageClient>();
    assert_send_sync::<FakeClock>();
}
