//! Many clients at once against one HTTPS storage server: 50 concurrent immutable uploads (chunks
//! written out of order, some through shared clients and their connection pool, some through their
//! own) each followed by whole and ranged reads, plus concurrent mutable writers; every byte checked.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use storage::api::{ReadVector, TestVector, TestWriteVectors, WriteVector};
use storage::http::HttpStorageClient;
use storage::server::{StorageConfig, StorageServer};
use storage::testing::{
    HttpsTestServer, lease_secrets, pattern, storage_index, upload_secret, write_enabler,
};
use storage::{ShareKind, StorageClient};

async fn upload_and_verify(client: HttpStorageClient, n: u8) {
    let si = storage_index(n);
    // Sizes from 1 byte to a little over 1.5 MiB, so some shares span several read chunks.
    let len = 1 + (usize::from(n) * 32_771) % (1536 * 1024 + 17);
    let data = pattern(len, n);
    let shnums = BTreeSet::from([0, 1]);
    let allocation = client
        .allocate_buckets(si, &lease_secrets(n), &upload_secret(n), &shnums, len as u64)
        .await
        .unwrap();
    assert_eq!(allocation.allocated, shnums);
    for shnum in [0u16, 1] {
        // Chunks of 256 KiB, written back to front for share 1.
        let chunk = 256 * 1024;
        let mut offsets: Vec<usize> = (0..len).step_by(chunk).collect();
        if shnum == 1 {
            offsets.reverse();
        }
        let mut complete = false;
        for offset in offsets {
            let end = (offset + chunk).min(len);
            let piece = Bytes::copy_from_slice(&data[offset..end]);
            let progress = client
                .write_share(si, shnum, &upload_secret(n), offset as u64, piece)
                .await
                .unwrap();
            complete = progress.complete;
        }
        assert!(complete, "share {n}/{shnum} incomplete");
    }
    for shnum in [0u16, 1] {
        let whole = client
            .read_share(ShareKind::Immutable, si, shnum, 0, len as u64)
            .await
            .unwrap();
        assert!(whole == data, "share {n}/{shnum} differs");
        let start = len / 3;
        let count = (len / 2).max(1);
        let part = client
            .read_share(ShareKind::Immutable, si, shnum, start as u64, count as u64)
            .await
            .unwrap();
        assert!(
            part[..] == data[start..(start + count).min(len)],
            "range of {n}/{shnum} differs"
        );
    }
    assert_eq!(
        client.list_shares(ShareKind::Immutable, si).await.unwrap(),
        shnums
    );
}

/// Appends `rounds` records to a mutable share with compare-and-swap, retrying lost races.
async fn mutable_appender(client: HttpStorageClient, writer: u8, rounds: usize) {
    let si = storage_index(200);
    for round in 0..rounds {
        loop {
            let current = client
                .read_test_write(
                    si,
                    &write_enabler(0),
                    &lease_secrets(0),
                    &BTreeMap::new(),
                    &[ReadVector {
                        offset: 0,
                        size: 1 << 20,
                    }],
                )
                .await
                .unwrap();
            let old = current
                .data
                .get(&0)
                .map(|reads| reads[0].clone())
                .unwrap_or_default();
            let record = [writer, round as u8];
            let vectors = TestWriteVectors {
                test: vec![TestVector {
                    offset: 0,
                    size: old.len() as u64 + 1,
                    specimen: old.clone(),
                }],
                write: vec![WriteVector {
                    offset: old.len() as u64,
                    data: record.to_vec(),
                }],
                new_length: None,
            };
            let result = client
                .read_test_write(
                    si,
                    &write_enabler(0),
                    &lease_secrets(0),
                    &BTreeMap::from([(0, vectors)]),
                    &[],
                )
                .await
                .unwrap();
            if result.success {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_uploads_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StorageServer::open(StorageConfig::new(dir.path().join("storage"))).unwrap());
    let server = HttpsTestServer::start(store.clone()).await.unwrap();
    let shared = server.client();
    let mut tasks = Vec::new();
    for n in 1..=50u8 {
        // Every fifth upload has a client (and connections) of its own.
        let client = if n % 5 == 0 {
            server.client()
        } else {
            shared.clone()
        };
        tasks.push(tokio::spawn(upload_and_verify(client, n)));
    }
    for writer in 0..4u8 {
        tasks.push(tokio::spawn(mutable_appender(shared.clone(), writer, 5)));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Every append landed exactly once.
    let record = shared
        .read_share(ShareKind::Mutable, storage_index(200), 0, 0, 1 << 20)
        .await
        .unwrap();
    assert_eq!(record.len(), 4 * 5 * 2);
    let mut seen: Vec<[u8; 2]> = record.chunks(2).map(|c| [c[0], c[1]]).collect();
    seen.sort_unstable();
    let expected: Vec<[u8; 2]> = (0..4u8).flat_map(|w| (0..5u8).map(move |r| [w, r])).collect();
    assert_eq!(seen, expected);
    let status = store.status();
    assert_eq!(status.immutable_shares, 100);
    assert_eq!(status.uploads_in_progress, 0);
    server.shutdown().await.unwrap();
}
