//! The immutable upload lifecycle: allocation, writes in any order, conflicts, completion, aborts,
//! secrets, idle uploads and concurrent uploads.

use super::*;

#[test]
fn out_of_order_writes_complete_the_share() {
    let h = Harness::new();
    let server = h.server();
    let s = si(1);
    let data = content(s, 0, 100);
    let allocation = server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0, 1]), 100)
        .unwrap();
    assert_eq!(allocation.allocated, shnums(&[0, 1]));
    assert!(allocation.already_have.is_empty());
    assert_eq!(server.status().uploads_in_progress, 2);

    let progress = server
        .write_share(s, 0, &upload_secret(1), 50, &data[50..])
        .unwrap();
    assert!(!progress.complete);
    assert_eq!(progress.required, vec![0..50]);
    let progress = server
        .write_share(s, 0, &upload_secret(1), 0, &data[..20])
        .unwrap();
    assert_eq!(progress.required, vec![20..50]);
    // Not readable until complete.
    assert!(server.list_shares(ShareKind::Immutable, s).unwrap().is_empty());
    assert!(matches!(
        server.read_share(ShareKind::Immutable, s, 0, 0, 10),
        Err(StorageError::NotFound(_))
    ));
    let progress = server
        .write_share(s, 0, &upload_secret(1), 20, &data[20..50])
        .unwrap();
    assert!(progress.complete);
    assert!(progress.required.is_empty());

    assert_eq!(server.list_shares(ShareKind::Immutable, s).unwrap(), shnums(&[0]));
    assert_eq!(server.share_length(ShareKind::Immutable, s, 0).unwrap(), 100);
    assert_eq!(
        server.read_share(ShareKind::Immutable, s, 0, 0, 1000).unwrap(),
        data
    );
    assert_eq!(
        server.read_share(ShareKind::Immutable, s, 0, 90, 5).unwrap(),
        &data[90..95]
    );
    assert!(
        server
            .read_share(ShareKind::Immutable, s, 0, 100, 5)
            .unwrap()
            .is_empty()
    );
    assert!(
        server
            .read_share(ShareKind::Immutable, s, 0, u64::MAX, 5)
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        server.read_share(ShareKind::Mutable, s, 0, 0, 5),
        Err(StorageError::NotFound(_))
    ));
    let status = server.status();
    assert_eq!(status.immutable_shares, 1);
    assert_eq!(status.uploads_in_progress, 1);
    assert_eq!(status.used_space, 12 + 100 + 72);
    // Share 1's upload still holds the incoming directory; finishing it removes it.
    let incoming_prefix = h.root().join("shares/incoming").join(s.prefix());
    assert!(incoming_prefix.exists());
    server
        .write_share(s, 1, &upload_secret(1), 0, &content(s, 1, 100))
        .unwrap();
    assert!(!incoming_prefix.exists());
    assert!(h.root().join("shares/incoming").exists());
}

#[test]
fn overlapping_writes_must_agree() {
    let h = Harness::new();
    let server = h.server();
    let s = si(2);
    server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[3]), 20)
        .unwrap();
    server.write_share(s, 3, &upload_secret(1), 0, &[1; 10]).unwrap();
    // The same bytes again, overlapping and extending: fine.
    let progress = server.write_share(s, 3, &upload_secret(1), 5, &[1; 8]).unwrap();
    assert_eq!(progress.required, vec![13..20]);
    // Different bytes in the overlap: a conflict, and nothing of the write lands.
    let mut conflicting = vec![1u8; 12];
    conflicting[2] = 9;
    assert!(matches!(
        server.write_share(s, 3, &upload_secret(1), 5, &conflicting),
        Err(StorageError::Conflict { offset: 5 })
    ));
    let progress = server.write_share(s, 3, &upload_secret(1), 13, &[2; 7]).unwrap();
    assert!(progress.complete);
    let mut expected = vec![1u8; 13];
    expected.extend_from_slice(&[2; 7]);
    assert_eq!(
        server.read_share(ShareKind::Immutable, s, 3, 0, 20).unwrap(),
        expected
    );
}

#[test]
fn writes_beyond_the_allocation_are_refused() {
    let h = Harness::new();
    let server = h.server();
    let s = si(3);
    server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0]), 100)
        .unwrap();
    assert!(matches!(
        server.write_share(s, 0, &upload_secret(1), 95, &[0; 10]),
        Err(StorageError::BeyondAllocation {
            end: 105,
            allocated: 100
        })
    ));
    assert!(matches!(
        server.write_share(s, 0, &upload_secret(1), u64::MAX, &[0; 10]),
        Err(StorageError::BeyondAllocation { allocated: 100, .. })
    ));
    // Up to the end is fine.
    let progress = server.write_share(s, 0, &upload_secret(1), 90, &[0; 10]).unwrap();
    assert_eq!(progress.required, vec![0..90]);
}

#[test]
fn secrets_and_missing_uploads() {
    let h = Harness::new();
    let server = h.server();
    let s = si(4);
    assert!(matches!(
        server.write_share(s, 0, &upload_secret(1), 0, b"x"),
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        server.abort_upload(s, 0, &upload_secret(1)),
        Err(StorageError::NotFound(_))
    ));
    server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0]), 4)
        .unwrap();
    assert!(matches!(
        server.write_share(s, 0, &upload_secret(2), 0, b"x"),
        Err(StorageError::UploadSecretMismatch)
    ));
    assert!(matches!(
        server.abort_upload(s, 0, &upload_secret(2)),
        Err(StorageError::UploadSecretMismatch)
    ));
    // Errors never carry secrets.
    let error = server.write_share(s, 0, &upload_secret(2), 0, b"x").unwrap_err();
    assert!(!format!("{error} {error:?}").contains("2, 2, 2"));
    // The upload is untouched by the failed attempts.
    assert!(
        server
            .write_share(s, 0, &upload_secret(1), 0, b"abcd")
            .unwrap()
            .complete
    );
    // Complete: abort says so; writing finds no upload.
    assert!(matches!(
        server.abort_upload(s, 0, &upload_secret(1)),
        Err(StorageError::AlreadyComplete { shnum: 0 })
    ));
    assert!(matches!(
        server.write_share(s, 0, &upload_secret(1), 0, b"a"),
        Err(StorageError::NotFound(_))
    ));
}

#[test]
fn abort_deletes_the_partial_file_and_releases_space() {
    let h = Harness::with(|c| c.max_space = Some(10_000));
    let server = h.server();
    let s = si(5);
    let before = server.version().available_space;
    assert_eq!(before, 10_000 - 84);
    server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0]), 1000)
        .unwrap();
    assert_eq!(server.version().available_space, before - 1084);
    server.write_share(s, 0, &upload_secret(1), 0, &[7; 10]).unwrap();
    let partial = h
        .root()
        .join("shares/incoming")
        .join(s.prefix())
        .join(s.to_string())
        .join("0");
    assert!(partial.exists());
    server.abort_upload(s, 0, &upload_secret(1)).unwrap();
    assert!(!partial.exists());
    assert!(!h.root().join("shares/incoming").join(s.prefix()).exists());
    assert_eq!(server.version().available_space, before);
    assert_eq!(server.status().uploads_in_progress, 0);
    assert!(server.list_shares(ShareKind::Immutable, s).unwrap().is_empty());
    // The share number can be allocated again, by anyone.
    let allocation = server
        .allocate_buckets(s, &lease(2), &upload_secret(2), &shnums(&[0]), 10)
        .unwrap();
    assert_eq!(allocation.allocated, shnums(&[0]));
    // And the aborted bytes are gone.
    let progress = server.write_share(s, 0, &upload_secret(2), 0, &[8; 10]).unwrap();
    assert!(progress.complete);
    assert_eq!(
        server.read_share(ShareKind::Immutable, s, 0, 0, 10).unwrap(),
        vec![8; 10]
    );
}

#[test]
fn allocation_reports_every_held_share_and_skips_uploads_in_progress() {
    let h = Harness::new();
    let server = h.server();
    let s = si(6);
    upload(server, s, 0, b"zero", 1);
    upload(server, s, 7, b"seven", 1);
    server
        .allocate_buckets(s, &lease(1), &upload_secret(3), &shnums(&[2]), 10)
        .unwrap();
    // Asking for 1, 2 and 7: 7 is held (and so are 0 and 7 reported), 2 is busy, 1 is allocated.
    let allocation = server
        .allocate_buckets(s, &lease(2), &upload_secret(4), &shnums(&[1, 2, 7]), 10)
        .unwrap();
    assert_eq!(allocation.already_have, shnums(&[0, 7]));
    assert_eq!(allocation.allocated, shnums(&[1]));
    // The same again with the original secret: 2 is still in neither set.
    let allocation = server
        .allocate_buckets(s, &lease(2), &upload_secret(3), &shnums(&[2]), 10)
        .unwrap();
    assert!(allocation.allocated.is_empty());
    // The original upload carries on with its own secret.
    assert!(
        !server
            .write_share(s, 2, &upload_secret(3), 0, &[1])
            .unwrap()
            .complete
    );
    // The held shares got lease 2 added (owner 0, as Tahoe's allocation leases).
    let ids: Vec<([u8; 32], u32)> = h
        .leases(ShareKind::Immutable, s, 0)
        .into_iter()
        .map(|(id, _, owner)| (id, owner))
        .collect();
    assert_eq!(ids, vec![(lease_id(1), 0), (lease_id(2), 0)]);
}

#[test]
fn zero_length_share() {
    let h = Harness::new();
    let server = h.server();
    let s = si(7);
    server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0]), 0)
        .unwrap();
    let progress = server.write_share(s, 0, &upload_secret(1), 0, &[]).unwrap();
    assert!(progress.complete);
    assert_eq!(server.share_length(ShareKind::Immutable, s, 0).unwrap(), 0);
    assert!(
        server
            .read_share(ShareKind::Immutable, s, 0, 0, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn idle_uploads_are_aborted() {
    let h = Harness::new();
    let server = h.server();
    let s = si(8);
    server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0, 1]), 10)
        .unwrap();
    let idle = Duration::from_secs(30 * 60);
    h.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(server.abort_idle_uploads(idle), 0);
    // A write resets share 0's timer.
    server.write_share(s, 0, &upload_secret(1), 0, &[1]).unwrap();
    h.clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(server.abort_idle_uploads(idle), 1);
    assert!(matches!(
        server.write_share(s, 1, &upload_secret(1), 0, &[1]),
        Err(StorageError::NotFound(_))
    ));
    assert!(
        !server
            .write_share(s, 0, &upload_secret(1), 1, &[1])
            .unwrap()
            .complete
    );
    h.clock.advance(idle);
    assert_eq!(server.abort_idle_uploads(idle), 1);
    assert_eq!(server.status().uploads_in_progress, 0);
    assert!(!h.root().join("shares/incoming").join(s.prefix()).exists());
}

#[test]
fn concurrent_uploads() {
    let h = Harness::new();
    let server = h.server();
    std::thread::scope(|scope| {
        for t in 0..8u8 {
            scope.spawn(move || {
                // Threads 0..3 share one storage index; the others have their own (some sharing a
                // stripe or a prefix directory).
                let s = if t < 4 { si(100) } else { si(100 + t) };
                let shnum = ShareNum::from(t);
                let data = content(s, shnum, 4000);
                let allocation = server
                    .allocate_buckets(s, &lease(t), &upload_secret(t), &shnums(&[shnum]), 4000)
                    .unwrap();
                assert_eq!(allocation.allocated, shnums(&[shnum]));
                for chunk in (0..4000).step_by(500).rev() {
                    server
                        .write_share(
                            s,
                            shnum,
                            &upload_secret(t),
                            chunk as u64,
                            &data[chunk..chunk + 500],
                        )
                        .unwrap();
                }
                assert_eq!(
                    server
                        .read_share(ShareKind::Immutable, s, shnum, 0, 4000)
                        .unwrap(),
                    data
                );
            });
        }
    });
    let status = server.status();
    assert_eq!(status.immutable_shares, 8);
    assert_eq!(status.uploads_in_progress, 0);
    // Shares of si(100) completed early got the later uploaders' leases too (allocation renews or
    // adds leases on held shares), so count the bytes on disk.
    assert!(status.used_space >= 8 * (12 + 4000 + 72));
    assert_eq!(status.used_space, h.bytes_on_disk());
    assert_eq!(
        server.list_shares(ShareKind::Immutable, si(100)).unwrap(),
        shnums(&[0, 1, 2, 3])
    );
}

#[test]
fn an_idle_upload_of_another_client_is_taken_over() {
    let h = Harness::with(|c| c.max_space = Some(1_000_000));
    h.server().set_disk_free(Some(1 << 40));
    let server = h.server();
    let s = si(9);
    let data = content(s, 0, 100);
    let first = server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0, 1]), 100)
        .unwrap();
    assert_eq!(first.allocated, shnums(&[0, 1]));
    server
        .write_share(s, 0, &upload_secret(1), 0, &data[..10])
        .unwrap();

    // Written 10 s ago: still somebody's live upload, so refused, and the answer says why.
    h.clock.advance(Duration::from_secs(10));
    let refused = server
        .allocate_buckets(s, &lease(2), &upload_secret(2), &shnums(&[0, 1]), 100)
        .unwrap();
    assert!(refused.allocated.is_empty());
    assert_eq!(
        refused.refused.keys().copied().collect::<BTreeSet<_>>(),
        shnums(&[0, 1])
    );
    assert!(
        refused.refused[&0].contains(
            "share 0 of this storage index is being uploaded by another client, last written 10 s ago"
        ),
        "{:?}",
        refused.refused
    );

    // The first client writes share 1 now; share 0 stays quiet past the takeover limit.
    h.clock.advance(Duration::from_secs(5));
    server
        .write_share(s, 1, &upload_secret(1), 0, &data[..10])
        .unwrap();
    h.clock
        .advance(crate::server::UPLOAD_TAKEOVER_AFTER - Duration::from_secs(5));
    let second = server
        .allocate_buckets(s, &lease(2), &upload_secret(2), &shnums(&[0, 1]), 100)
        .unwrap();
    assert_eq!(second.allocated, shnums(&[0]), "{:?}", second.refused);
    assert!(
        second.refused[&1].contains("last written 15 s ago"),
        "{:?}",
        second.refused
    );
    assert_eq!(server.status().uploads_in_progress, 2);

    // The vanished client's writes find no upload of theirs; the new one starts from nothing.
    assert!(matches!(
        server.write_share(s, 0, &upload_secret(1), 10, &data[10..]),
        Err(StorageError::UploadSecretMismatch)
    ));
    let progress = server
        .write_share(s, 0, &upload_secret(2), 50, &data[50..])
        .unwrap();
    assert_eq!(progress.required, vec![0..50]);
    assert!(
        server
            .write_share(s, 0, &upload_secret(2), 0, &data[..50])
            .unwrap()
            .complete
    );
    assert_eq!(
        server.read_share(ShareKind::Immutable, s, 0, 0, 100).unwrap(),
        data
    );
    // The same client asking again for a share it has open is refused with its own reason.
    let again = server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[1]), 100)
        .unwrap();
    assert!(again.allocated.is_empty());
    assert!(
        again.refused[&1].contains("already allocated to this upload"),
        "{:?}",
        again.refused
    );
    // Space: the taken-over upload's reservation was released, not leaked.
    server.abort_upload(s, 1, &upload_secret(1)).unwrap();
    let status = server.status();
    assert_eq!(status.uploads_in_progress, 0);
    assert_eq!(
        status.available_space + status.used_space + crate::server::immutable::OVERHEAD,
        1_000_000
    );
}

#[test]
fn full_disks_are_reported_as_no_space() {
    use crate::server::store::is_disk_full;
    assert!(is_disk_full(&std::io::Error::from_raw_os_error(28))); // ENOSPC
    assert!(is_disk_full(&std::io::Error::from_raw_os_error(122))); // EDQUOT
    assert!(is_disk_full(&std::io::Error::from_raw_os_error(27))); // EFBIG
    assert!(!is_disk_full(&std::io::Error::from_raw_os_error(5))); // EIO
    let h = Harness::with(|c| c.readonly = true);
    let refused = h
        .server()
        .allocate_buckets(si(3), &lease(1), &upload_secret(1), &shnums(&[0]), 100)
        .unwrap();
    assert_eq!(refused.refused[&0], "this storage server is read-only");
}

/// A write that the file system refuses for lack of room (here EFBIG, from a file size limit the
/// child process runs under: the same path as ENOSPC without needing a small disk) is the protocol's
/// "no space" refusal (507 `no-space` over HTTP), and its message says the server is full.
#[test]
fn a_disk_filling_mid_write_is_no_space() {
    const CHILD: &str = "TESSERA_DISK_FULL_CHILD";
    if std::env::var_os(CHILD).is_none() {
        // Re-run this test alone under `ulimit -f` (1 MiB) with SIGXFSZ ignored, so writes past
        // 1 MiB fail with EFBIG instead of killing the process.
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 1024; exec \"$0\" \"$@\"")
            .arg(exe)
            .args([
                "--exact",
                "server::tests::upload::a_disk_filling_mid_write_is_no_space",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the child run failed: {status}");
        return;
    }
    let h = Harness::new();
    let server = h.server();
    // A new upload larger than the room left is refused, saying the server is full.
    let allocation = server
        .allocate_buckets(si(4), &lease(1), &upload_secret(1), &shnums(&[0]), 4 << 20)
        .unwrap();
    assert!(allocation.allocated.is_empty());
    assert!(
        allocation.refused[&0].contains("this server is full"),
        "{:?}",
        allocation.refused
    );
    assert_eq!(server.status().uploads_in_progress, 0);
    // A write that runs out of room half-way (a mutable share's new version) is "no space".
    let vectors: BTreeMap<ShareNum, TestWriteVectors> = [(
        0,
        TestWriteVectors {
            test: Vec::new(),
            write: vec![WriteVector {
                offset: 0,
                data: vec![7; 2 << 20],
            }],
            new_length: None,
        },
    )]
    .into();
    let error = server
        .read_test_write(si(5), &WriteEnabler([1; 32]), &lease(1), &vectors, &[])
        .expect_err("a write past the file size limit fails");
    assert!(matches!(error, StorageError::NoSpace { .. }), "{error:?}");
    assert!(error.to_string().contains("storage server is full"), "{error}");
    let http = crate::http::server::storage_error_status(&error);
    assert!(format!("{http:?}").contains("status: 507"), "{http:?}");
    println!("disk-full child: {error}");
}

/// Clients racing to send the same share whole: exactly one stores it; each other finds it held
/// (the same bytes), conflicts (other bytes) or is refused while the first upload is open. The
/// share read back is the one stored, whole, and no upload is left open.
#[test]
fn whole_shares_sent_at_once_store_one_and_refuse_or_find_the_rest() {
    let h = Harness::new();
    let server = h.server();
    for (round, s) in [si(40), si(41)].into_iter().enumerate() {
        let ours = content(s, 0, 50_000);
        let theirs = content(s, 1, 50_000);
        // Round 0: everyone sends the same share; round 1: half send other bytes.
        let bodies: Vec<&[u8]> = (0..8)
            .map(|i| {
                if round == 1 && i % 2 == 1 {
                    &theirs[..]
                } else {
                    &ours[..]
                }
            })
            .collect();
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let runs: Vec<_> = bodies
                .iter()
                .enumerate()
                .map(|(i, body)| scope.spawn(move || server.put_whole_share(s, 0, &lease(i as u8), body)))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let stored: Vec<usize> = (0..8)
            .filter(|&i| matches!(outcomes[i], Ok(crate::api::WholeShare::Stored)))
            .collect();
        assert_eq!(stored.len(), 1, "round {round}: {outcomes:?}");
        let winner = bodies[stored[0]];
        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Ok(crate::api::WholeShare::Stored) => {}
                Ok(crate::api::WholeShare::AlreadyHeld) => assert!(bodies[i] == winner, "round {round}"),
                Err(StorageError::Conflict { .. }) => assert!(bodies[i] != winner, "round {round}"),
                Err(StorageError::Refused(_)) => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(
            server.read_share(ShareKind::Immutable, s, 0, 0, 60_000).unwrap(),
            winner
        );
        assert_eq!(server.status().uploads_in_progress, 0, "round {round}");
    }
}

/// Clients racing to open one share with allocating writes, each sending its share in two halves
/// at once under its own upload secret: one client's upload opens and completes; every write of
/// the others is refused (the share is another client's upload) or finds it complete. The share
/// read back is the winner's, whole, and no upload is left open.
#[test]
fn allocating_writes_of_racing_clients_open_one_upload() {
    let h = Harness::new();
    let server = h.server();
    let s = si(42);
    let len = 40_000;
    let bodies: Vec<Vec<u8>> = (0..4).map(|c| content(s, c, len)).collect();
    let outcomes: Vec<(usize, Result<crate::api::UploadProgress, StorageError>)> =
        std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|i| {
                    let (client, half) = (i / 2, i % 2);
                    let body = &bodies[client];
                    scope.spawn(move || {
                        let at = half * len / 2;
                        let written = server
                            .open_upload_for_write(
                                s,
                                0,
                                &lease(client as u8),
                                &upload_secret(client as u8),
                                len as u64,
                            )
                            .and_then(|()| {
                                server.write_share(
                                    s,
                                    0,
                                    &upload_secret(client as u8),
                                    at as u64,
                                    &body[at..at + len / 2],
                                )
                            });
                        (client, written)
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
    let winners: BTreeSet<usize> = outcomes
        .iter()
        .filter(|(_, written)| written.is_ok())
        .map(|(client, _)| *client)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = *winners.iter().next().unwrap();
    let completed = outcomes
        .iter()
        .filter(|(_, written)| matches!(written, Ok(p) if p.complete))
        .count();
    assert_eq!(completed, 1, "{outcomes:?}");
    for (client, written) in &outcomes {
        if *client == winner {
            assert!(written.is_ok(), "{outcomes:?}");
        } else {
            assert!(
                matches!(
                    written,
                    Err(StorageError::Refused(_) | StorageError::AlreadyComplete { shnum: 0 })
                ),
                "{outcomes:?}"
            );
        }
    }
    assert_eq!(
        server.read_share(ShareKind::Immutable, s, 0, 0, 50_000).unwrap(),
        bodies[winner]
    );
    assert_eq!(server.status().uploads_in_progress, 0);
}

/// Bytes of `path` resident in the page cache, by util-linux `fincore`; `None` where it is missing.
#[cfg(target_os = "linux")]
fn resident_bytes(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

#[cfg(target_os = "linux")]
#[test]
fn an_upload_passes_through_the_page_cache() {
    let h = Harness::new();
    // Whether this filesystem drops clean pages when asked (tmpfs keeps them).
    let probe = h.root().join("probe");
    std::fs::write(&probe, vec![7u8; 1 << 20]).unwrap();
    let file = std::fs::File::open(&probe).unwrap();
    file.sync_all().unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    match resident_bytes(&probe) {
        Some(0) => {}
        other => {
            eprintln!("skipped: fincore is missing or this filesystem keeps clean pages ({other:?})");
            return;
        }
    }
    let server = h.server();
    let size = 16 << 20;
    let piece = 256 << 10;
    let mib = 1u64 << 20;

    // In order, the disk done with each step before the next (the test syncs after each write
    // that ends a MiB): every step drops what the step before wrote, so no more than about two
    // steps stay cached at any time.
    let s = si(40);
    let data = content(s, 0, size);
    server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0]), size as u64)
        .unwrap();
    let incoming = server.layout.incoming_path(s, 0);
    let mut most = 0;
    for (i, bytes) in data.chunks(piece).enumerate() {
        let end = ((i + 1) * piece) as u64;
        let progress = server
            .write_share(s, 0, &upload_secret(1), (i * piece) as u64, bytes)
            .unwrap();
        if !progress.complete {
            if end.is_multiple_of(mib) {
                std::fs::File::open(&incoming).unwrap().sync_all().unwrap();
            }
            most = most.max(resident_bytes(&incoming).unwrap());
        }
    }
    assert!(
        most > 0 && most <= 2 * mib + mib / 4,
        "{most} bytes cached during the upload"
    );
    assert_eq!(
        server
            .read_share(ShareKind::Immutable, s, 0, 0, size as u64)
            .unwrap(),
        data
    );

    // Out of order, unsynced: the first write is the last piece, so no step comes after it; the
    // sync that completes the share leaves all but its last 2 MiB to be dropped.
    let s = si(41);
    let data = content(s, 0, size);
    server
        .allocate_buckets(s, &lease(1), &upload_secret(1), &shnums(&[0]), size as u64)
        .unwrap();
    let pieces: Vec<_> = data.chunks(piece).enumerate().collect();
    let mut complete = false;
    for (i, bytes) in pieces
        .iter()
        .rev()
        .take(1)
        .chain(pieces.iter().take(pieces.len() - 1))
    {
        complete = server
            .write_share(s, 0, &upload_secret(1), (i * piece) as u64, bytes)
            .unwrap()
            .complete;
    }
    assert!(complete);
    let resident = resident_bytes(&server.layout.share_path(s, 0)).unwrap();
    assert!(
        resident <= 2 * mib + mib / 4,
        "{resident} bytes of a 16 MiB share still cached"
    );
    assert_eq!(
        server
            .read_share(ShareKind::Immutable, s, 0, 0, size as u64)
            .unwrap(),
        data
    );
}
