//! The storage conformance suite: scenario bodies written once against [`StorageClient`] and run
//! against every implementation, each scenario on a fresh, empty server.
//!
//! What it pins down (tahoe-interfaces.md §1.4 and §2): every operation of the trait; every error a
//! client can provoke through it (`NotFound`, `UploadSecretMismatch`, `AlreadyComplete`, `Conflict`,
//! `BeyondAllocation`, `WriteEnablerMismatch`); that a refused operation changes nothing; immutable
//! upload in and out of order with matching overlaps, abort and re-upload, repeated allocation;
//! ranged reads inside, across, at and past the end; mutable read-test-write (create, compare-and-swap,
//! create-only-if-absent, all-or-nothing over several shares, reads of every share before the writes,
//! zero-fill, truncation, deletion by length 0); leases; share lists; corruption advisories;
//! Tessera's removal of a share the server proves corrupt.
//!
//! Conditions that only a transport can produce (bad secrets, malformed bodies) are tested by the
//! HTTP tests instead; inputs whose handling the trait leaves open (empty writes, empty reasons, share
//! numbers above 255) are not used.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{lease_secrets, pattern, storage_index, upload_secret, write_enabler};
use crate::api::{CorruptShareRemoval, ReadVector, TestVector, TestWriteVectors, WholeShare, WriteVector};
use crate::{ShareKind, ShareNum, StorageClient, StorageError, StorageIndex};

/// One scenario: runs against a client of a fresh, empty server and panics on a violation.
pub type Scenario = for<'a> fn(&'a dyn StorageClient) -> BoxFuture<'a, ()>;

/// Runs every scenario, each with a fresh `(client, guard)` from `make` (the guard keeps whatever the
/// client needs alive, such as a temporary directory or a server task), and panics at the end listing
/// every scenario that failed.
pub async fn conformance<C, G, F, Fut>(mut make: F)
where
    C: StorageClient,
    F: FnMut() -> Fut,
    Fut: Future<Output = (C, G)>,
{
    let mut failures = Vec::new();
    for (name, scenario) in scenarios() {
        let (client, guard) = make().await;
        let outcome = AssertUnwindSafe(scenario(&client)).catch_unwind().await;
        drop(client);
        drop(guard);
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} conformance scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every scenario, by name.
pub fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        ("version_is_consistent", version_is_consistent),
        ("upload_in_order", upload_in_order),
        (
            "upload_out_of_order_with_matching_overlap",
            upload_out_of_order_with_matching_overlap,
        ),
        (
            "conflicting_overlap_is_refused_and_writes_nothing",
            conflicting_overlap_is_refused_and_writes_nothing,
        ),
        (
            "write_past_allocation_is_refused_and_writes_nothing",
            write_past_allocation_is_refused_and_writes_nothing,
        ),
        ("wrong_upload_secret_is_refused", wrong_upload_secret_is_refused),
        (
            "writes_and_aborts_without_an_upload_are_not_found",
            writes_and_aborts_without_an_upload_are_not_found,
        ),
        (
            "complete_shares_cannot_be_written_or_aborted",
            complete_shares_cannot_be_written_or_aborted,
        ),
        ("abort_discards_the_upload", abort_discards_the_upload),
        (
            "repeated_allocation_while_uploading",
            repeated_allocation_while_uploading,
        ),
        (
            "already_have_lists_every_held_share",
            already_have_lists_every_held_share,
        ),
        (
            "allocation_larger_than_available_space_is_refused",
            allocation_larger_than_available_space_is_refused,
        ),
        ("empty_allocation", empty_allocation),
        (
            "unknown_storage_indexes_list_no_shares",
            unknown_storage_indexes_list_no_shares,
        ),
        ("immutable_ranged_reads", immutable_ranged_reads),
        (
            "missing_and_incomplete_shares_are_not_found",
            missing_and_incomplete_shares_are_not_found,
        ),
        ("large_share_round_trip", large_share_round_trip),
        ("corruption_advisories", corruption_advisories),
        ("corrupt_share_removal", corrupt_share_removal),
        ("whole_shares", whole_shares),
        ("allocating_writes", allocating_writes),
        ("leases", leases),
        (
            "mutable_create_and_compare_and_swap",
            mutable_create_and_compare_and_swap,
        ),
        (
            "mutable_failed_test_writes_nothing",
            mutable_failed_test_writes_nothing,
        ),
        ("mutable_create_only_if_absent", mutable_create_only_if_absent),
        ("mutable_write_enabler_mismatch", mutable_write_enabler_mismatch),
        (
            "mutable_zero_fill_truncate_and_delete",
            mutable_zero_fill_truncate_and_delete,
        ),
        (
            "mutable_read_vector_covers_every_share",
            mutable_read_vector_covers_every_share,
        ),
        ("mutable_ranged_reads", mutable_ranged_reads),
    ]
}

// ---- Helpers ----

fn shares(numbers: &[ShareNum]) -> BTreeSet<ShareNum> {
    numbers.iter().copied().collect()
}

/// Allocates one share of `data.len()` bytes with upload secret 1 and writes it in one go.
async fn upload(client: &dyn StorageClient, si: StorageIndex, shnum: ShareNum, data: &[u8]) {
    let allocation = client
        .allocate_buckets(
            si,
            &lease_secrets(1),
            &upload_secret(1),
            &shares(&[shnum]),
            data.len() as u64,
        )
        .await
        .expect("allocate");
    assert!(
        allocation.allocated.contains(&shnum),
        "share {shnum} not allocated: {allocation:?}"
    );
    let progress = client
        .write_share(si, shnum, &upload_secret(1), 0, Bytes::copy_from_slice(data))
        .await
        .expect("write");
    assert!(progress.complete, "one full write must complete the share");
}

async fn read(
    client: &dyn StorageClient,
    kind: ShareKind,
    si: StorageIndex,
    shnum: ShareNum,
    offset: u64,
    len: u64,
) -> Vec<u8> {
    client
        .read_share(kind, si, shnum, offset, len)
        .await
        .expect("read")
        .to_vec()
}

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

/// Creates mutable share `shnum` holding `data` with write enabler 1 (no test).
async fn create_slot_share(client: &dyn StorageClient, si: StorageIndex, shnum: ShareNum, data: &[u8]) {
    let tw = BTreeMap::from([(shnum, write_vectors(0, data))]);
    let result = client
        .read_test_write(si, &write_enabler(1), &lease_secrets(1), &tw, &[])
        .await
        .expect("read-test-write");
    assert!(result.success);
}

// ---- Scenarios ----

fn version_is_consistent(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let version = client.version().await.expect("version");
        assert_eq!(version.maximum_immutable_share_size, version.available_space);
        assert!(version.maximum_mutable_share_size > 0);
        assert!(!version.application_version.is_empty());
    })
}

fn upload_in_order(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(1);
        let data = pattern(1000, 1);
        let allocation = client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &shares(&[0, 1]), 1000)
            .await
            .expect("allocate");
        assert_eq!(allocation.allocated, shares(&[0, 1]));
        assert!(allocation.already_have.is_empty());

        let secret = upload_secret(1);
        let p = client
            .write_share(si, 0, &secret, 0, Bytes::copy_from_slice(&data[..300]))
            .await
            .expect("write");
        assert!(!p.complete);
        assert_eq!(p.required, vec![300..1000]);
        let p = client
            .write_share(si, 0, &secret, 300, Bytes::copy_from_slice(&data[300..700]))
            .await
            .expect("write");
        assert!(!p.complete);
        assert_eq!(p.required, vec![700..1000]);
        // Incomplete shares are not listed.
        assert!(
            client
                .list_shares(ShareKind::Immutable, si)
                .await
                .expect("list")
                .is_empty()
        );
        let p = client
            .write_share(si, 0, &secret, 700, Bytes::copy_from_slice(&data[700..]))
            .await
            .expect("write");
        assert!(p.complete);
        assert!(p.required.is_empty());

        assert_eq!(
            client.list_shares(ShareKind::Immutable, si).await.expect("list"),
            shares(&[0])
        );
        assert_eq!(read(client, ShareKind::Immutable, si, 0, 0, 1000).await, data);
        assert!(
            client
                .list_shares(ShareKind::Mutable, si)
                .await
                .expect("list")
                .is_empty()
        );
    })
}

fn upload_out_of_order_with_matching_overlap(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(2);
        let data = pattern(1000, 2);
        let secret = upload_secret(1);
        client
            .allocate_buckets(si, &lease_secrets(1), &secret, &shares(&[5]), 1000)
            .await
            .expect("allocate");
        let p = client
            .write_share(si, 5, &secret, 500, Bytes::copy_from_slice(&data[500..]))
            .await
            .expect("write");
        assert_eq!(p.required, vec![0..500]);
        let p = client
            .write_share(si, 5, &secret, 100, Bytes::copy_from_slice(&data[100..200]))
            .await
            .expect("write");
        assert_eq!(p.required, vec![0..100, 200..500]);
        // Rewriting identical bytes over written ones is allowed.
        let p = client
            .write_share(si, 5, &secret, 150, Bytes::copy_from_slice(&data[150..600]))
            .await
            .expect("write");
        assert_eq!(p.required, vec![0..100]);
        let p = client
            .write_share(si, 5, &secret, 0, Bytes::copy_from_slice(&data[..150]))
            .await
            .expect("write");
        assert!(p.complete);
        assert_eq!(read(client, ShareKind::Immutable, si, 5, 0, 1000).await, data);
    })
}

fn conflicting_overlap_is_refused_and_writes_nothing(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(3);
        let data = pattern(1000, 3);
        let secret = upload_secret(1);
        client
            .allocate_buckets(si, &lease_secrets(1), &secret, &shares(&[0]), 1000)
            .await
            .expect("allocate");
        client
            .write_share(si, 0, &secret, 0, Bytes::copy_from_slice(&data[..100]))
            .await
            .expect("write");
        // Overlaps [50, 100) with different bytes, and would also cover [100, 150).
        let conflicting = pattern(100, 99);
        let error = client
            .write_share(si, 0, &secret, 50, Bytes::from(conflicting))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::Conflict { .. }), "{error:?}");
        // Nothing of the refused write landed: writing the true bytes over [100, 150) is no conflict.
        let p = client
            .write_share(si, 0, &secret, 100, Bytes::copy_from_slice(&data[100..]))
            .await
            .expect("write");
        assert!(p.complete);
        assert_eq!(read(client, ShareKind::Immutable, si, 0, 0, 1000).await, data);
    })
}

fn write_past_allocation_is_refused_and_writes_nothing(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(4);
        let data = pattern(100, 4);
        let secret = upload_secret(1);
        client
            .allocate_buckets(si, &lease_secrets(1), &secret, &shares(&[0]), 100)
            .await
            .expect("allocate");
        let error = client
            .write_share(si, 0, &secret, 90, Bytes::from(vec![7u8; 20]))
            .await
            .expect_err("the operation must be refused");
        assert!(
            matches!(
                error,
                StorageError::BeyondAllocation {
                    end: 110,
                    allocated: 100
                }
            ),
            "{error:?}"
        );
        let error = client
            .write_share(si, 0, &secret, 100, Bytes::from(vec![7u8; 1]))
            .await
            .expect_err("the operation must be refused");
        assert!(
            matches!(error, StorageError::BeyondAllocation { .. }),
            "{error:?}"
        );
        let p = client
            .write_share(si, 0, &secret, 0, Bytes::copy_from_slice(&data))
            .await
            .expect("write");
        assert!(p.complete);
        assert_eq!(read(client, ShareKind::Immutable, si, 0, 0, 100).await, data);
    })
}

fn wrong_upload_secret_is_refused(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(5);
        client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &shares(&[0]), 10)
            .await
            .expect("allocate");
        let error = client
            .write_share(si, 0, &upload_secret(2), 0, Bytes::from(vec![1u8; 10]))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::UploadSecretMismatch), "{error:?}");
        let error = client
            .abort_upload(si, 0, &upload_secret(2))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::UploadSecretMismatch), "{error:?}");
        // The upload is intact and still belongs to its owner.
        let p = client
            .write_share(si, 0, &upload_secret(1), 0, Bytes::from(vec![1u8; 10]))
            .await
            .expect("write");
        assert!(p.complete);
    })
}

fn writes_and_aborts_without_an_upload_are_not_found(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(6);
        let error = client
            .write_share(si, 0, &upload_secret(1), 0, Bytes::from_static(b"x"))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
        let error = client
            .abort_upload(si, 0, &upload_secret(1))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
        // Another share number of an SI that has an upload is not found either.
        client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &shares(&[0]), 10)
            .await
            .expect("allocate");
        let error = client
            .write_share(si, 1, &upload_secret(1), 0, Bytes::from_static(b"x"))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
    })
}

fn complete_shares_cannot_be_written_or_aborted(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(7);
        let data = pattern(64, 7);
        upload(client, si, 3, &data).await;
        // As in Tahoe, the upload no longer exists once its share is complete: writes are NotFound
        // (HTTP 404), aborts are refused as AlreadyComplete (HTTP 405).
        let error = client
            .write_share(si, 3, &upload_secret(1), 0, Bytes::copy_from_slice(&data))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
        let error = client
            .abort_upload(si, 3, &upload_secret(1))
            .await
            .expect_err("the operation must be refused");
        assert!(
            matches!(error, StorageError::AlreadyComplete { shnum: 3 }),
            "{error:?}"
        );
        assert_eq!(read(client, ShareKind::Immutable, si, 3, 0, 64).await, data);
    })
}

fn abort_discards_the_upload(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(8);
        let secret = upload_secret(1);
        client
            .allocate_buckets(si, &lease_secrets(1), &secret, &shares(&[0]), 100)
            .await
            .expect("allocate");
        client
            .write_share(si, 0, &secret, 0, Bytes::from(vec![9u8; 50]))
            .await
            .expect("write");
        client.abort_upload(si, 0, &secret).await.expect("abort");
        assert!(
            client
                .list_shares(ShareKind::Immutable, si)
                .await
                .expect("list")
                .is_empty()
        );
        let error = client
            .write_share(si, 0, &secret, 50, Bytes::from(vec![9u8; 50]))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
        let error = client
            .read_share(ShareKind::Immutable, si, 0, 0, 10)
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
        // The share can be allocated afresh, with another secret, and the old bytes are gone.
        let allocation = client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(2), &shares(&[0]), 100)
            .await
            .expect("allocate");
        assert_eq!(allocation.allocated, shares(&[0]));
        let data = pattern(100, 8);
        let p = client
            .write_share(si, 0, &upload_secret(2), 0, Bytes::copy_from_slice(&data))
            .await
            .expect("write");
        assert!(p.complete);
        assert_eq!(read(client, ShareKind::Immutable, si, 0, 0, 100).await, data);
    })
}

fn repeated_allocation_while_uploading(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(9);
        client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &shares(&[0]), 10)
            .await
            .expect("allocate");
        // Share 0 is being uploaded: neither allocated nor already held, whichever secret asks.
        for secret in [upload_secret(1), upload_secret(2)] {
            let allocation = client
                .allocate_buckets(si, &lease_secrets(2), &secret, &shares(&[0, 1]), 10)
                .await
                .expect("allocate");
            assert!(!allocation.allocated.contains(&0), "{allocation:?}");
            assert!(allocation.already_have.is_empty(), "{allocation:?}");
            // Tessera says why (over HTTP in `X-Tessera-Refused`, beside Tahoe's CBOR answer).
            let reason = allocation.refused.get(&0).expect("a reason for share 0");
            if secret == upload_secret(2) {
                assert!(
                    reason.starts_with(
                        "share 0 of this storage index is being uploaded by another client, last written"
                    ),
                    "{reason}"
                );
            }
        }
        // The original upload carries on with its own secret.
        let p = client
            .write_share(si, 0, &upload_secret(1), 0, Bytes::from(vec![1u8; 10]))
            .await
            .expect("write");
        assert!(p.complete);
    })
}

fn already_have_lists_every_held_share(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(10);
        for shnum in [0, 1, 2] {
            upload(client, si, shnum, &pattern(32, shnum as u8)).await;
        }
        let allocation = client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(3), &shares(&[2, 3]), 32)
            .await
            .expect("allocate");
        assert_eq!(allocation.already_have, shares(&[0, 1, 2]));
        assert_eq!(allocation.allocated, shares(&[3]));
        assert_eq!(
            client.list_shares(ShareKind::Immutable, si).await.expect("list"),
            shares(&[0, 1, 2])
        );
    })
}

fn allocation_larger_than_available_space_is_refused(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(11);
        let available = client.version().await.expect("version").available_space;
        // Free disk space moves while other processes run: ask for far more than is available.
        let Some(too_much) = available.checked_add(available / 2 + (1 << 32)) else {
            return;
        };
        let allocation = client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &shares(&[0]), too_much)
            .await
            .expect("allocate");
        assert!(allocation.allocated.is_empty(), "{allocation:?}");
        assert!(allocation.already_have.is_empty(), "{allocation:?}");
        assert!(
            allocation.refused[&0].starts_with("this server is full"),
            "{allocation:?}"
        );
    })
}

fn empty_allocation(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let allocation = client
            .allocate_buckets(
                storage_index(12),
                &lease_secrets(1),
                &upload_secret(1),
                &BTreeSet::new(),
                10,
            )
            .await
            .expect("allocate");
        assert!(allocation.allocated.is_empty() && allocation.already_have.is_empty());
    })
}

fn unknown_storage_indexes_list_no_shares(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        for kind in [ShareKind::Immutable, ShareKind::Mutable] {
            assert!(
                client
                    .list_shares(kind, storage_index(13))
                    .await
                    .expect("list")
                    .is_empty()
            );
        }
    })
}

fn immutable_ranged_reads(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(14);
        let data = pattern(1000, 14);
        upload(client, si, 0, &data).await;
        let kind = ShareKind::Immutable;
        assert_eq!(read(client, kind, si, 0, 0, 1000).await, data);
        assert_eq!(read(client, kind, si, 0, 100, 50).await, data[100..150]);
        assert_eq!(read(client, kind, si, 0, 999, 1).await, data[999..]);
        // Past the end: truncated.
        assert_eq!(read(client, kind, si, 0, 990, 100).await, data[990..]);
        assert_eq!(read(client, kind, si, 0, 0, 5000).await, data);
        // At and beyond the end: empty.
        assert!(read(client, kind, si, 0, 1000, 10).await.is_empty());
        assert!(read(client, kind, si, 0, 5000, 10).await.is_empty());
        // Zero length.
        assert!(read(client, kind, si, 0, 10, 0).await.is_empty());
    })
}

fn missing_and_incomplete_shares_are_not_found(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(15);
        upload(client, si, 0, &pattern(10, 15)).await;
        client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &shares(&[1]), 10)
            .await
            .expect("allocate");
        client
            .write_share(si, 1, &upload_secret(1), 0, Bytes::from(vec![0u8; 5]))
            .await
            .expect("write");
        let cases = [
            (ShareKind::Immutable, si, 1),                // incomplete
            (ShareKind::Immutable, si, 2),                // never allocated
            (ShareKind::Immutable, storage_index(16), 0), // unknown storage index
            (ShareKind::Mutable, si, 0),                  // wrong kind
        ];
        for (kind, si, shnum) in cases {
            let error = client
                .read_share(kind, si, shnum, 0, 10)
                .await
                .expect_err("the operation must be refused");
            assert!(
                matches!(error, StorageError::NotFound(_)),
                "{kind:?} {shnum}: {error:?}"
            );
        }
    })
}

fn large_share_round_trip(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(17);
        let len = 3 * 1024 * 1024 + 7;
        let data = pattern(len, 17);
        let secret = upload_secret(1);
        client
            .allocate_buckets(si, &lease_secrets(1), &secret, &shares(&[0]), len as u64)
            .await
            .expect("allocate");
        let mut last = None;
        for (i, chunk) in data.chunks(1024 * 1024).enumerate() {
            let offset = (i * 1024 * 1024) as u64;
            last = Some(
                client
                    .write_share(si, 0, &secret, offset, Bytes::copy_from_slice(chunk))
                    .await
                    .expect("write"),
            );
        }
        assert!(last.expect("written").complete);
        let kind = ShareKind::Immutable;
        assert!(
            read(client, kind, si, 0, 0, len as u64).await == data,
            "whole share differs"
        );
        let (start, count) = (1024 * 1024 - 10, 2 * 1024 * 1024);
        assert!(read(client, kind, si, 0, start as u64, count as u64).await == data[start..start + count]);
        assert!(
            read(client, kind, si, 0, 0, u64::MAX).await == data,
            "read to the end differs"
        );
    })
}

/// Tessera's removal of a corrupt immutable share: only a share the server can prove corrupt goes
/// (here, a layout-1 header whose offsets run backwards); one it cannot judge stays.
/// A whole share in one call: stored and readable; sent again, found identical; a different share
/// of the same number conflicts and changes nothing; a share another client is uploading is
/// refused, and that upload goes on.
fn whole_shares(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        // Over HTTPS, the version tells the client the server has the one-request form.
        client.version().await.expect("version");
        let si = storage_index(23);
        let data = Bytes::from(pattern(3000, 23));
        let stored = client
            .put_whole_share(si, 2, &lease_secrets(1), data.clone())
            .await
            .expect("store a whole share");
        assert_eq!(stored, WholeShare::Stored);
        assert_eq!(
            read(client, ShareKind::Immutable, si, 2, 0, 4000).await,
            data.to_vec()
        );
        assert_eq!(
            client.list_shares(ShareKind::Immutable, si).await.expect("list"),
            shares(&[2])
        );
        let again = client
            .put_whole_share(si, 2, &lease_secrets(2), data.clone())
            .await
            .expect("send the same share again");
        assert_eq!(again, WholeShare::AlreadyHeld);
        let other = Bytes::from(pattern(3000, 24));
        let conflict = client.put_whole_share(si, 2, &lease_secrets(1), other).await;
        assert!(
            matches!(conflict, Err(StorageError::Conflict { .. })),
            "a different share of a held number must conflict: {conflict:?}"
        );
        assert_eq!(
            read(client, ShareKind::Immutable, si, 2, 0, 4000).await,
            data.to_vec()
        );

        // Share 5 is being uploaded by another client: refused, and its upload is untouched.
        let allocation = client
            .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &shares(&[5]), 10)
            .await
            .expect("allocate");
        assert!(allocation.allocated.contains(&5));
        let refused = client
            .put_whole_share(si, 5, &lease_secrets(1), Bytes::from(pattern(10, 5)))
            .await;
        assert!(
            matches!(refused, Err(StorageError::Refused(_))),
            "a share being uploaded must be refused: {refused:?}"
        );
        let progress = client
            .write_share(si, 5, &upload_secret(1), 0, Bytes::from(pattern(10, 6)))
            .await
            .expect("the other upload goes on");
        assert!(progress.complete);
        assert_eq!(
            read(client, ShareKind::Immutable, si, 5, 0, 10).await,
            pattern(10, 6)
        );
    })
}

fn allocating_writes(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        // Over HTTPS, the version tells the client the server allocates with a write.
        client.version().await.expect("version");
        assert!(client.allocates_on_write());
        let si = storage_index(31);
        let data = pattern(3000, 31);
        let piece = |at: usize| Bytes::copy_from_slice(&data[at..at + 1000]);
        let lease = lease_secrets(1);
        let secrets = [upload_secret(7), upload_secret(8)];
        let write = |offset: usize, secret: u8| {
            let upload = &secrets[usize::from(secret - 7)];
            client.write_share_allocating(si, 1, &lease, upload, 3000, offset as u64, piece(offset))
        };
        // Three writes at once: one opens the upload, the others find it open.
        let (first, second, third) = futures::join!(write(0, 7), write(1000, 7), write(2000, 7));
        let completed = [first, second, third]
            .into_iter()
            .map(|written| written.expect("an allocating write").complete)
            .filter(|complete| *complete)
            .count();
        assert_eq!(completed, 1, "the last of three writes completes the share");
        assert_eq!(read(client, ShareKind::Immutable, si, 1, 0, 4000).await, data);
        assert_eq!(
            client.list_shares(ShareKind::Immutable, si).await.expect("list"),
            shares(&[1])
        );
        // A held share is not written again, whoever asks.
        for secret in [7, 8] {
            let again = write(0, secret).await;
            assert!(
                matches!(again, Err(StorageError::AlreadyComplete { shnum: 1 })),
                "a held share: {again:?}"
            );
        }
        assert_eq!(read(client, ShareKind::Immutable, si, 1, 0, 4000).await, data);

        // Share 5 is being uploaded by another client: refused, and its upload goes on.
        let allocation = client
            .allocate_buckets(si, &lease_secrets(2), &upload_secret(2), &shares(&[5]), 10)
            .await
            .expect("allocate");
        assert!(allocation.allocated.contains(&5));
        let refused = client
            .write_share_allocating(
                si,
                5,
                &lease_secrets(1),
                &upload_secret(3),
                10,
                0,
                Bytes::from(pattern(10, 1)),
            )
            .await;
        assert!(
            matches!(&refused, Err(StorageError::Refused(reason)) if reason.contains("another client")),
            "a share another client is uploading: {refused:?}"
        );
        let progress = client
            .write_share(si, 5, &upload_secret(2), 0, Bytes::from(pattern(10, 2)))
            .await
            .expect("the other upload goes on");
        assert!(progress.complete);
        assert_eq!(
            read(client, ShareKind::Immutable, si, 5, 0, 10).await,
            pattern(10, 2)
        );

        // No room: refused with the reason, and nothing is left open.
        let huge = client
            .write_share_allocating(
                si,
                6,
                &lease_secrets(1),
                &upload_secret(4),
                1 << 62,
                0,
                Bytes::from(pattern(10, 3)),
            )
            .await;
        assert!(
            matches!(&huge, Err(StorageError::Refused(reason)) if reason.contains("full")),
            "a share larger than the disk: {huge:?}"
        );
        let written = client
            .write_share(si, 6, &upload_secret(4), 0, Bytes::from(pattern(10, 3)))
            .await;
        assert!(matches!(written, Err(StorageError::NotFound(_))), "{written:?}");
    })
}

fn corrupt_share_removal(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(21);
        // An unknown layout version: the server cannot judge it.
        let mut unknown = pattern(100, 21);
        unknown[..4].copy_from_slice(&[0, 0, 0, 9]);
        upload(client, si, 0, &unknown).await;
        // Layout 1 with the plaintext hash tree before the blocks: no uploader writes that.
        let mut backwards = vec![0u8; 100];
        for (i, value) in [1u32, 0, 0, 0x24, 0x10, 0x30, 0x30, 0x30, 0x30]
            .iter()
            .enumerate()
        {
            backwards[4 * i..4 * i + 4].copy_from_slice(&value.to_be_bytes());
        }
        upload(client, si, 1, &backwards).await;
        create_slot_share(client, storage_index(22), 0, b"mutable").await;

        let kept = client
            .remove_corrupt_share(si, 0, "the client says so")
            .await
            .expect("remove");
        assert!(matches!(kept, CorruptShareRemoval::Kept { .. }), "{kept:?}");
        let removed = client
            .remove_corrupt_share(si, 1, "the client says so")
            .await
            .expect("remove");
        assert!(
            matches!(&removed, CorruptShareRemoval::Removed { problem } if problem.contains("offsets")),
            "{removed:?}"
        );
        assert_eq!(
            client.list_shares(ShareKind::Immutable, si).await.expect("list"),
            shares(&[0])
        );
        // The slot is free again: a good copy can be uploaded in its place.
        upload(client, si, 1, &pattern(100, 23)).await;
        for (si, shnum) in [(si, 5), (storage_index(22), 0), (storage_index(23), 0)] {
            let error = client
                .remove_corrupt_share(si, shnum, "bad")
                .await
                .expect_err("no such immutable share");
            assert!(matches!(error, StorageError::NotFound(_)), "{shnum}: {error:?}");
        }
    })
}

fn corruption_advisories(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(18);
        upload(client, si, 0, &pattern(10, 18)).await;
        create_slot_share(client, storage_index(19), 2, b"mutable").await;
        client
            .advise_corrupt_share(ShareKind::Immutable, si, 0, "block hash mismatch")
            .await
            .expect("advise");
        client
            .advise_corrupt_share(ShareKind::Mutable, storage_index(19), 2, "signature mismatch")
            .await
            .expect("advise");
        let refused = [
            (ShareKind::Immutable, si, 1),
            (ShareKind::Immutable, storage_index(20), 0),
            (ShareKind::Mutable, storage_index(19), 0),
            (ShareKind::Mutable, si, 0),
        ];
        for (kind, si, shnum) in refused {
            let error = client
                .advise_corrupt_share(kind, si, shnum, "bad")
                .await
                .expect_err("the operation must be refused");
            assert!(
                matches!(error, StorageError::NotFound(_)),
                "{kind:?} {shnum}: {error:?}"
            );
        }
        // Advising changes nothing about the share.
        assert_eq!(
            read(client, ShareKind::Immutable, si, 0, 0, 10).await,
            pattern(10, 18)
        );
    })
}

fn leases(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let error = client
            .add_or_renew_lease(storage_index(21), &lease_secrets(1))
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
        let si = storage_index(22);
        upload(client, si, 0, &pattern(10, 22)).await;
        client
            .add_or_renew_lease(si, &lease_secrets(1))
            .await
            .expect("renew");
        client
            .add_or_renew_lease(si, &lease_secrets(1))
            .await
            .expect("renew again");
        client
            .add_or_renew_lease(si, &lease_secrets(2))
            .await
            .expect("add");
        let slot = storage_index(23);
        create_slot_share(client, slot, 0, b"data").await;
        client
            .add_or_renew_lease(slot, &lease_secrets(3))
            .await
            .expect("mutable lease");
        // Leases change no data.
        assert_eq!(
            read(client, ShareKind::Immutable, si, 0, 0, 10).await,
            pattern(10, 22)
        );
        assert_eq!(read(client, ShareKind::Mutable, slot, 0, 0, 10).await, b"data");
    })
}

fn mutable_create_and_compare_and_swap(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(24);
        let (we, lease) = (write_enabler(1), lease_secrets(1));
        let tw = BTreeMap::from([(0, write_vectors(0, b"hello"))]);
        let read_all = [ReadVector { offset: 0, size: 100 }];
        let result = client
            .read_test_write(si, &we, &lease, &tw, &read_all)
            .await
            .expect("rtw");
        assert!(result.success);
        assert!(result.data.is_empty(), "no share existed before: {result:?}");
        assert_eq!(
            client.list_shares(ShareKind::Mutable, si).await.expect("list"),
            shares(&[0])
        );
        assert!(
            client
                .list_shares(ShareKind::Immutable, si)
                .await
                .expect("list")
                .is_empty()
        );

        let mut swap = write_vectors(5, b" world");
        swap.test.push(TestVector {
            offset: 0,
            size: 5,
            specimen: b"hello".to_vec(),
        });
        let result = client
            .read_test_write(
                si,
                &we,
                &lease,
                &BTreeMap::from([(0, swap)]),
                &[ReadVector { offset: 0, size: 5 }],
            )
            .await
            .expect("rtw");
        assert!(result.success);
        assert_eq!(result.data, BTreeMap::from([(0, vec![b"hello".to_vec()])]));
        assert_eq!(
            read(client, ShareKind::Mutable, si, 0, 0, 100).await,
            b"hello world"
        );
    })
}

fn mutable_failed_test_writes_nothing(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(25);
        create_slot_share(client, si, 0, b"zero").await;
        create_slot_share(client, si, 1, b"one!").await;
        // The test on share 0 passes, the one on share 1 fails: nothing is written anywhere.
        let mut first = write_vectors(0, b"ZERO");
        first.test.push(TestVector {
            offset: 0,
            size: 4,
            specimen: b"zero".to_vec(),
        });
        let mut second = write_vectors(0, b"ONE!");
        second.test.push(TestVector {
            offset: 0,
            size: 4,
            specimen: b"nope".to_vec(),
        });
        let third = write_vectors(0, b"two");
        let tw = BTreeMap::from([(0, first), (1, second), (2, third)]);
        let result = client
            .read_test_write(
                si,
                &write_enabler(1),
                &lease_secrets(1),
                &tw,
                &[ReadVector { offset: 0, size: 4 }],
            )
            .await
            .expect("rtw");
        assert!(!result.success);
        assert_eq!(
            result.data,
            BTreeMap::from([(0, vec![b"zero".to_vec()]), (1, vec![b"one!".to_vec()])])
        );
        assert_eq!(read(client, ShareKind::Mutable, si, 0, 0, 10).await, b"zero");
        assert_eq!(read(client, ShareKind::Mutable, si, 1, 0, 10).await, b"one!");
        assert_eq!(
            client.list_shares(ShareKind::Mutable, si).await.expect("list"),
            shares(&[0, 1])
        );
    })
}

fn mutable_create_only_if_absent(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(26);
        let only_if_absent = |data: &[u8]| {
            let mut v = write_vectors(0, data);
            v.test.push(TestVector {
                offset: 0,
                size: 1,
                specimen: Vec::new(),
            });
            BTreeMap::from([(0, v)])
        };
        let (we, lease) = (write_enabler(1), lease_secrets(1));
        let result = client
            .read_test_write(si, &we, &lease, &only_if_absent(b"first"), &[])
            .await
            .expect("rtw");
        assert!(result.success);
        let result = client
            .read_test_write(si, &we, &lease, &only_if_absent(b"second"), &[])
            .await
            .expect("rtw");
        assert!(!result.success);
        assert_eq!(read(client, ShareKind::Mutable, si, 0, 0, 10).await, b"first");
    })
}

fn mutable_write_enabler_mismatch(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(27);
        create_slot_share(client, si, 0, b"owned").await;
        let tw = BTreeMap::from([(0, write_vectors(0, b"stolen"))]);
        let error = client
            .read_test_write(
                si,
                &write_enabler(2),
                &lease_secrets(1),
                &tw,
                &[ReadVector { offset: 0, size: 5 }],
            )
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::WriteEnablerMismatch), "{error:?}");
        // Writing a new share of the same slot with the wrong enabler is refused too.
        let tw = BTreeMap::from([(1, write_vectors(0, b"squat"))]);
        let error = client
            .read_test_write(si, &write_enabler(2), &lease_secrets(1), &tw, &[])
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::WriteEnablerMismatch), "{error:?}");
        assert_eq!(read(client, ShareKind::Mutable, si, 0, 0, 10).await, b"owned");
        assert_eq!(
            client.list_shares(ShareKind::Mutable, si).await.expect("list"),
            shares(&[0])
        );
    })
}

fn mutable_zero_fill_truncate_and_delete(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(28);
        let (we, lease) = (write_enabler(1), lease_secrets(1));
        create_slot_share(client, si, 0, b"abc").await;
        // A write past the end fills the gap with zeros.
        let tw = BTreeMap::from([(0, write_vectors(6, b"xyz"))]);
        assert!(
            client
                .read_test_write(si, &we, &lease, &tw, &[])
                .await
                .expect("rtw")
                .success
        );
        assert_eq!(
            read(client, ShareKind::Mutable, si, 0, 0, 100).await,
            b"abc\0\0\0xyz"
        );
        // new-length shorter truncates.
        let truncate = BTreeMap::from([(
            0,
            TestWriteVectors {
                new_length: Some(4),
                ..TestWriteVectors::default()
            },
        )]);
        assert!(
            client
                .read_test_write(si, &we, &lease, &truncate, &[])
                .await
                .expect("rtw")
                .success
        );
        assert_eq!(read(client, ShareKind::Mutable, si, 0, 0, 100).await, b"abc\0");
        // new-length 0 deletes the share.
        let delete = BTreeMap::from([(
            0,
            TestWriteVectors {
                new_length: Some(0),
                ..TestWriteVectors::default()
            },
        )]);
        assert!(
            client
                .read_test_write(si, &we, &lease, &delete, &[])
                .await
                .expect("rtw")
                .success
        );
        assert!(
            client
                .list_shares(ShareKind::Mutable, si)
                .await
                .expect("list")
                .is_empty()
        );
        let error = client
            .read_share(ShareKind::Mutable, si, 0, 0, 1)
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
    })
}

fn mutable_read_vector_covers_every_share(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(29);
        for (shnum, data) in [(0, b"aaaa"), (1, b"bbbb"), (2, b"cccc")] {
            create_slot_share(client, si, shnum, data).await;
        }
        let tw = BTreeMap::from([(0, write_vectors(0, b"AAAA"))]);
        let reads = [
            ReadVector { offset: 1, size: 2 },
            ReadVector { offset: 3, size: 5 },
        ];
        let result = client
            .read_test_write(si, &write_enabler(1), &lease_secrets(1), &tw, &reads)
            .await
            .expect("rtw");
        assert!(result.success);
        let expected: BTreeMap<ShareNum, Vec<Vec<u8>>> = [
            (0, vec![b"aa".to_vec(), b"a".to_vec()]),
            (1, vec![b"bb".to_vec(), b"b".to_vec()]),
            (2, vec![b"cc".to_vec(), b"c".to_vec()]),
        ]
        .into();
        assert_eq!(
            result.data, expected,
            "reads happen before writes, over every share"
        );
        assert_eq!(read(client, ShareKind::Mutable, si, 0, 0, 10).await, b"AAAA");
    })
}

fn mutable_ranged_reads(client: &dyn StorageClient) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let si = storage_index(30);
        let data = pattern(300, 30);
        create_slot_share(client, si, 4, &data).await;
        let kind = ShareKind::Mutable;
        assert_eq!(read(client, kind, si, 4, 0, 300).await, data);
        assert_eq!(read(client, kind, si, 4, 10, 20).await, data[10..30]);
        assert_eq!(read(client, kind, si, 4, 250, 100).await, data[250..]);
        assert!(read(client, kind, si, 4, 300, 10).await.is_empty());
        assert!(read(client, kind, si, 4, 1000, 10).await.is_empty());
        let error = client
            .read_share(kind, si, 5, 0, 10)
            .await
            .expect_err("the operation must be refused");
        assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
    })
}
