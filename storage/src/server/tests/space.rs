//! Space limits (`reserved_space`, `max_space`) and read-only mode.

use super::*;

#[test]
fn max_space_limits_allocations() {
    let h = Harness::with(|c| c.max_space = Some(1000));
    let server = h.server();
    assert_eq!(server.version().available_space, 1000 - 84);
    assert_eq!(server.version().maximum_immutable_share_size, 1000 - 84);
    // Two 500-byte shares do not fit; the first is allocated, the second silently refused.
    let allocation = server
        .allocate_buckets(si(1), &lease(1), &upload_secret(1), &shnums(&[0, 1]), 500)
        .unwrap();
    assert_eq!(allocation.allocated, shnums(&[0]));
    assert_eq!(server.version().available_space, 1000 - 584 - 84);
    server
        .write_share(si(1), 0, &upload_secret(1), 0, &[0; 500])
        .unwrap();
    let status = server.status();
    assert_eq!(status.used_space, 584);
    assert_eq!(status.available_space, 1000 - 584 - 84);
    // Exactly the advertised size fits.
    let available = status.available_space;
    let allocation = server
        .allocate_buckets(si(2), &lease(1), &upload_secret(1), &shnums(&[0]), available + 1)
        .unwrap();
    assert!(allocation.allocated.is_empty());
    let allocation = server
        .allocate_buckets(si(2), &lease(1), &upload_secret(1), &shnums(&[0]), available)
        .unwrap();
    assert_eq!(allocation.allocated, shnums(&[0]));
    assert_eq!(server.version().available_space, 0);
    // Absurd sizes are refused, not overflowed.
    let allocation = server
        .allocate_buckets(si(3), &lease(1), &upload_secret(1), &shnums(&[0]), u64::MAX)
        .unwrap();
    assert!(allocation.allocated.is_empty());
}

#[test]
fn max_space_limits_mutable_growth() {
    let h = Harness::with(|c| c.max_space = Some(1000));
    let server = h.server();
    assert!(
        rtw(server, si(1), 1, 1, 0, write_vectors(0, &[1; 400]), &[])
            .unwrap()
            .success
    );
    let before = std::fs::read(h.share_path(si(1), 0)).unwrap();
    let error = rtw(server, si(1), 1, 1, 0, write_vectors(400, &[2; 200]), &[]).unwrap_err();
    assert!(
        matches!(error, StorageError::NoSpace { needed: 200, .. }),
        "{error:?}"
    );
    assert_eq!(std::fs::read(h.share_path(si(1), 0)).unwrap(), before);
    // Shrinking and rewriting in place always fit.
    let shrink = TestWriteVectors {
        new_length: Some(100),
        ..write_vectors(0, &[3; 100])
    };
    assert!(rtw(server, si(1), 1, 1, 0, shrink, &[]).unwrap().success);
    assert_eq!(server.status().used_space, 468 + 100 + 4);
}

#[test]
fn reserved_space_is_kept_free() {
    let h = Harness::with(|c| c.reserved_space = 9_000);
    let server = h.server();
    server.set_disk_free(Some(10_000));
    assert_eq!(server.version().available_space, 1_000);
    let allocation = server
        .allocate_buckets(si(1), &lease(1), &upload_secret(1), &shnums(&[0]), 1_001)
        .unwrap();
    assert!(allocation.allocated.is_empty());
    let allocation = server
        .allocate_buckets(si(1), &lease(1), &upload_secret(1), &shnums(&[0, 1]), 600)
        .unwrap();
    // Pending uploads count against the disk too.
    assert_eq!(allocation.allocated, shnums(&[0]));
    server.set_disk_free(Some(5_000));
    assert_eq!(server.version().available_space, 0);

    // With the real disk: a reservation larger than any disk refuses everything.
    let h = Harness::with(|c| c.reserved_space = u64::MAX / 2);
    let allocation = h
        .server()
        .allocate_buckets(si(1), &lease(1), &upload_secret(1), &shnums(&[0]), 1)
        .unwrap();
    assert!(allocation.allocated.is_empty());
    assert_eq!(h.server().version().available_space, 0);
    assert!(matches!(
        rtw(h.server(), si(2), 1, 1, 0, write_vectors(0, b"x"), &[]),
        Err(StorageError::NoSpace { .. })
    ));
}

#[test]
fn readonly_refuses_writes_but_answers_reads() {
    let mut h = Harness::new();
    upload(h.server(), si(1), 0, b"immutable", 1);
    assert!(
        rtw(h.server(), si(2), 1, 1, 0, write_vectors(0, b"mutable"), &[])
            .unwrap()
            .success
    );
    h.stop();
    h.config.readonly = true;
    h.start();
    let server = h.server();
    assert_eq!(server.version().available_space, 0);
    assert!(server.status().readonly);
    // Allocation reports what is held and allocates nothing.
    let allocation = server
        .allocate_buckets(si(1), &lease(1), &upload_secret(1), &shnums(&[0, 1]), 10)
        .unwrap();
    assert_eq!(allocation.already_have, shnums(&[0]));
    assert!(allocation.allocated.is_empty());
    // A whole share: one it holds is found; a new one is refused as read-only.
    assert_eq!(
        server.put_whole_share(si(1), 0, &lease(1), b"immutable").unwrap(),
        crate::api::WholeShare::AlreadyHeld
    );
    assert!(matches!(
        server.put_whole_share(si(1), 1, &lease(1), b"immutable"),
        Err(StorageError::ReadOnly)
    ));
    // Mutable writes are refused (Tahoe accepts them: bug #390); tests-only requests answer.
    let before = std::fs::read(h.share_path(si(2), 0)).unwrap();
    assert!(matches!(
        rtw(server, si(2), 1, 1, 0, write_vectors(0, b"M"), &[]),
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(
        rtw(server, si(2), 1, 1, 5, write_vectors(0, b"new share"), &[]),
        Err(StorageError::ReadOnly)
    ));
    let delete = TestWriteVectors {
        new_length: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        rtw(server, si(2), 1, 1, 0, delete, &[]),
        Err(StorageError::ReadOnly)
    ));
    let failing = TestWriteVectors {
        test: vec![test_vector(0, 1, b"x")],
        ..write_vectors(0, b"M")
    };
    let result = rtw(
        server,
        si(2),
        1,
        1,
        0,
        failing,
        &[ReadVector { offset: 0, size: 7 }],
    )
    .unwrap();
    assert!(!result.success);
    assert_eq!(result.data[&0], vec![b"mutable".to_vec()]);
    let tests_only = TestWriteVectors {
        test: vec![test_vector(0, 1, b"m")],
        ..Default::default()
    };
    assert!(rtw(server, si(2), 1, 1, 0, tests_only, &[]).unwrap().success);
    assert_eq!(std::fs::read(h.share_path(si(2), 0)).unwrap().len(), before.len());
    // Renewing works; adding a lease does not (as in Tahoe, whose read-only server has no space).
    h.clock.advance(DAY);
    server.add_or_renew_lease(si(1), &lease(1)).unwrap();
    assert!(matches!(
        server.add_or_renew_lease(si(1), &lease(2)),
        Err(StorageError::NoSpace { .. })
    ));
    assert_eq!(h.leases(ShareKind::Immutable, si(1), 0).len(), 1);
    assert_eq!(
        server.read_share(ShareKind::Immutable, si(1), 0, 0, 100).unwrap(),
        b"immutable"
    );
}
