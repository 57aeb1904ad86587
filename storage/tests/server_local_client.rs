//! The share store through its public API only: [`LocalStorageClient`] over a shared
//! [`StorageServer`] (every call on tokio's blocking pool), a restart through the public
//! constructors, and many concurrent async uploads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use storage::api::{
    LeaseSecrets, ReadVector, StorageClient, TestVector, TestWriteVectors, UploadSecret, WriteEnabler,
    WriteVector,
};
use storage::server::{
    ExpirationMode, ExpirationPolicy, FakeClock, LocalStorageClient, StorageConfig, StorageServer,
};
use storage::{ShareKind, StorageError, StorageIndex};

fn lease(n: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: [n; 32],
        cancel: [!n; 32],
    }
}

fn config(dir: &tempfile::TempDir, clock: &Arc<FakeClock>) -> StorageConfig {
    let mut config = StorageConfig::new(dir.path().join("storage"));
    config.clock = clock.clone();
    config.expiration = ExpirationPolicy {
        enabled: true,
        mode: ExpirationMode::Age {
            override_lease_duration: None,
        },
        immutable: true,
        mutable: true,
    };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_client_round_trip_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
    ));
    let server = Arc::new(StorageServer::open(config(&dir, &clock)).unwrap());
    let client = LocalStorageClient::new(server.clone());
    let si = StorageIndex([9; 16]);
    let secret = UploadSecret(vec![1; 20]);

    let version = client.version().await.unwrap();
    assert_eq!(
        version.application_version,
        format!("tessera/{}", env!("CARGO_PKG_VERSION")).into_bytes()
    );
    assert_eq!(version.maximum_mutable_share_size, 69_105_000_000_000_000);

    let wanted: BTreeSet<u16> = [0, 1].into_iter().collect();
    let allocation = client
        .allocate_buckets(si, &lease(1), &secret, &wanted, 6)
        .await
        .unwrap();
    assert_eq!(allocation.allocated, wanted);
    let progress = client
        .write_share(si, 0, &secret, 3, Bytes::from_static(b"def"))
        .await
        .unwrap();
    assert_eq!(progress.required, vec![0..3]);
    let progress = client
        .write_share(si, 0, &secret, 0, Bytes::from_static(b"abc"))
        .await
        .unwrap();
    assert!(progress.complete);
    client.abort_upload(si, 1, &secret).await.unwrap();
    assert!(matches!(
        client.abort_upload(si, 0, &secret).await,
        Err(StorageError::AlreadyComplete { shnum: 0 })
    ));
    assert_eq!(
        client.list_shares(ShareKind::Immutable, si).await.unwrap(),
        [0].into_iter().collect()
    );
    assert_eq!(
        &client
            .read_share(ShareKind::Immutable, si, 0, 1, 100)
            .await
            .unwrap()[..],
        b"bcdef"
    );

    let mutable_si = StorageIndex([10; 16]);
    let mut tw = BTreeMap::new();
    tw.insert(
        2,
        TestWriteVectors {
            test: vec![TestVector {
                offset: 0,
                size: 1,
                specimen: Vec::new(),
            }],
            write: vec![WriteVector {
                offset: 0,
                data: b"slot".to_vec(),
            }],
            new_length: None,
        },
    );
    let result = client
        .read_test_write(
            mutable_si,
            &WriteEnabler([3; 32]),
            &lease(1),
            &tw,
            &[ReadVector { offset: 0, size: 4 }],
        )
        .await
        .unwrap();
    assert!(result.success);
    client.add_or_renew_lease(mutable_si, &lease(2)).await.unwrap();
    assert!(matches!(
        client.add_or_renew_lease(StorageIndex([11; 16]), &lease(2)).await,
        Err(StorageError::NotFound(_))
    ));
    client
        .advise_corrupt_share(ShareKind::Mutable, mutable_si, 2, "signature check failed")
        .await
        .unwrap();

    // Restart through the public API: everything complete is still there.
    drop(client);
    drop(Arc::into_inner(server).expect("the client was the only other owner"));
    let server = Arc::new(StorageServer::open(config(&dir, &clock)).unwrap());
    let client = LocalStorageClient::new(server.clone());
    assert_eq!(
        &client
            .read_share(ShareKind::Immutable, si, 0, 0, 6)
            .await
            .unwrap()[..],
        b"abcdef"
    );
    assert_eq!(
        &client
            .read_share(ShareKind::Mutable, mutable_si, 2, 0, 6)
            .await
            .unwrap()[..],
        b"slot"
    );
    let advisories = server.corruption_advisories().unwrap();
    assert_eq!(advisories.len(), 1);
    assert_eq!(advisories[0].reason, "signature check failed");
    assert_eq!(
        advisories[0].time,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
    );
    let status = server.status();
    assert_eq!((status.immutable_shares, status.mutable_shares), (1, 1));

    // 32 days on, every lease has expired.
    clock.advance(Duration::from_secs(32 * 86_400));
    let report = server.expire_leases().unwrap();
    assert_eq!(report.deleted_shares, 2);
    assert!(
        client
            .list_shares(ShareKind::Mutable, mutable_si)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::default());
    let server = Arc::new(StorageServer::open(config(&dir, &clock)).unwrap());
    let client = LocalStorageClient::new(server.clone());
    let mut tasks = Vec::new();
    for n in 0..32u8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let si = StorageIndex([n % 8; 16]);
            let shnum = u16::from(n);
            let secret = UploadSecret(vec![n; 20]);
            let data: Vec<u8> = (0..10_000u32).map(|i| (i as u8) ^ n).collect();
            let wanted: BTreeSet<u16> = [shnum].into_iter().collect();
            let allocation = client
                .allocate_buckets(si, &lease(n), &secret, &wanted, 10_000)
                .await
                .unwrap();
            assert_eq!(allocation.allocated, wanted);
            for start in (0..10_000).step_by(1_000) {
                client
                    .write_share(
                        si,
                        shnum,
                        &secret,
                        start as u64,
                        Bytes::copy_from_slice(&data[start..start + 1_000]),
                    )
                    .await
                    .unwrap();
            }
            let read = client
                .read_share(ShareKind::Immutable, si, shnum, 0, 10_000)
                .await
                .unwrap();
            assert_eq!(&read[..], &data[..]);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let status = server.status();
    assert_eq!(status.immutable_shares, 32);
    assert_eq!(status.uploads_in_progress, 0);
}
