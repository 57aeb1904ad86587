//! Read-test-write (tahoe-interfaces.md §1.4): the write-enabler check, tests, reads before writes,
//! creation, zero-filled gaps, truncation, extension, deletion and leases.

use super::*;

fn read_all(server: &StorageServer, s: StorageIndex, shnum: ShareNum) -> Vec<u8> {
    server
        .read_share(ShareKind::Mutable, s, shnum, 0, u64::MAX)
        .unwrap()
}

#[test]
fn create_if_absent_idiom() {
    let h = Harness::new();
    let server = h.server();
    let s = si(1);
    let create = |data: &[u8]| TestWriteVectors {
        test: vec![test_vector(0, 1, b"")],
        ..write_vectors(0, data)
    };
    let result = rtw(
        server,
        s,
        1,
        1,
        0,
        create(b"first"),
        &[ReadVector { offset: 0, size: 5 }],
    )
    .unwrap();
    assert!(result.success);
    assert!(result.data.is_empty(), "no share existed before");
    let result = rtw(
        server,
        s,
        1,
        1,
        0,
        create(b"second"),
        &[ReadVector { offset: 0, size: 5 }],
    )
    .unwrap();
    assert!(!result.success);
    assert_eq!(result.data[&0], vec![b"first".to_vec()]);
    assert_eq!(read_all(server, s, 0), b"first");
    assert_eq!(server.status().mutable_shares, 1);
}

#[test]
fn write_enabler_mismatch_reads_and_writes_nothing() {
    let h = Harness::new();
    let server = h.server();
    let s = si(2);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, b"data"), &[])
            .unwrap()
            .success
    );
    let before = std::fs::read(h.share_path(s, 0)).unwrap();
    // Even a request for another share number is refused: every existing share is checked.
    let error = rtw(
        server,
        s,
        2,
        2,
        5,
        write_vectors(0, b"evil"),
        &[ReadVector { offset: 0, size: 4 }],
    );
    assert!(matches!(error, Err(StorageError::WriteEnablerMismatch)));
    assert_eq!(std::fs::read(h.share_path(s, 0)).unwrap(), before);
    assert_eq!(server.list_shares(ShareKind::Mutable, s).unwrap(), shnums(&[0]));
    assert_eq!(
        h.leases(ShareKind::Mutable, s, 0).len(),
        1,
        "no lease added either"
    );
}

#[test]
fn compare_and_swap() {
    let h = Harness::new();
    let server = h.server();
    let s = si(3);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, b"v1-checkstring+body"), &[])
            .unwrap()
            .success
    );
    let swap = |expected: &[u8], new: &[u8]| TestWriteVectors {
        test: vec![test_vector(0, expected.len() as u64, expected)],
        ..write_vectors(0, new)
    };
    let reads = [ReadVector { offset: 0, size: 14 }];
    let result = rtw(
        server,
        s,
        1,
        1,
        0,
        swap(b"v0-checkstring", b"v2-checkstring"),
        &reads,
    )
    .unwrap();
    assert!(!result.success);
    assert_eq!(result.data[&0], vec![b"v1-checkstring".to_vec()]);
    assert_eq!(read_all(server, s, 0), b"v1-checkstring+body");
    // The right checkstring: the write happens, and the read shows the old contents.
    let result = rtw(
        server,
        s,
        1,
        1,
        0,
        swap(b"v1-checkstring", b"v2-checkstring"),
        &reads,
    )
    .unwrap();
    assert!(result.success);
    assert_eq!(result.data[&0], vec![b"v1-checkstring".to_vec()]);
    assert_eq!(read_all(server, s, 0), b"v2-checkstring+body");
    // A test past the end compares against the clamped (short) read.
    let result = rtw(
        server,
        s,
        1,
        1,
        0,
        TestWriteVectors {
            test: vec![test_vector(15, 100, b"body")],
            ..Default::default()
        },
        &[],
    )
    .unwrap();
    assert!(result.success);
}

#[test]
fn one_failing_test_fails_every_share() {
    let h = Harness::new();
    let server = h.server();
    let s = si(4);
    let mut tw = BTreeMap::new();
    tw.insert(0, write_vectors(0, b"zero"));
    tw.insert(1, write_vectors(0, b"one"));
    server
        .read_test_write(s, &write_enabler(1), &lease(1), &tw, &[])
        .unwrap();
    let mut tw = BTreeMap::new();
    tw.insert(
        0,
        TestWriteVectors {
            test: vec![test_vector(0, 4, b"zero")],
            ..write_vectors(0, b"ZERO")
        },
    );
    tw.insert(
        1,
        TestWriteVectors {
            test: vec![test_vector(0, 3, b"two")],
            ..write_vectors(0, b"ONE")
        },
    );
    // Reads cover every existing share, named in the request or not.
    tw.insert(2, write_vectors(0, b"new"));
    let result = server
        .read_test_write(
            s,
            &write_enabler(1),
            &lease(1),
            &tw,
            &[ReadVector { offset: 1, size: 2 }],
        )
        .unwrap();
    assert!(!result.success);
    assert_eq!(result.data.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(result.data[&0], vec![b"er".to_vec()]);
    assert_eq!(read_all(server, s, 0), b"zero");
    assert_eq!(
        server.list_shares(ShareKind::Mutable, s).unwrap(),
        shnums(&[0, 1])
    );
}

#[test]
fn gaps_fill_with_zeros_and_new_length_truncates_or_extends() {
    let h = Harness::new();
    let server = h.server();
    let s = si(5);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(10, b"abc"), &[])
            .unwrap()
            .success
    );
    let mut expected = vec![0u8; 10];
    expected.extend_from_slice(b"abc");
    assert_eq!(read_all(server, s, 0), expected);
    // Several writes apply in order.
    let vectors = TestWriteVectors {
        test: vec![],
        write: vec![
            WriteVector {
                offset: 0,
                data: b"1234".to_vec(),
            },
            WriteVector {
                offset: 2,
                data: b"xy".to_vec(),
            },
        ],
        new_length: None,
    };
    assert!(rtw(server, s, 1, 1, 0, vectors, &[]).unwrap().success);
    assert_eq!(&read_all(server, s, 0)[..4], b"12xy");
    // An empty write past the end still extends the share.
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(20, b""), &[])
            .unwrap()
            .success
    );
    assert_eq!(server.share_length(ShareKind::Mutable, s, 0).unwrap(), 20);
    // Truncate.
    let truncate = TestWriteVectors {
        new_length: Some(3),
        ..Default::default()
    };
    assert!(rtw(server, s, 1, 1, 0, truncate, &[]).unwrap().success);
    assert_eq!(read_all(server, s, 0), b"12x");
    // Extend (with zeros), after a write in the same request.
    let extend = TestWriteVectors {
        new_length: Some(8),
        ..write_vectors(3, b"Q")
    };
    assert!(rtw(server, s, 1, 1, 0, extend, &[]).unwrap().success);
    assert_eq!(read_all(server, s, 0), b"12xQ\0\0\0\0");
    // Truncation after a write that grew the share cuts the write.
    let both = TestWriteVectors {
        new_length: Some(2),
        ..write_vectors(0, b"abcdefghijkl")
    };
    assert!(rtw(server, s, 1, 1, 0, both, &[]).unwrap().success);
    assert_eq!(read_all(server, s, 0), b"ab");
    assert_eq!(server.status().used_space, h.bytes_on_disk());
}

#[test]
fn new_length_zero_deletes() {
    let h = Harness::new();
    let server = h.server();
    let s = si(6);
    let mut tw = BTreeMap::new();
    tw.insert(0, write_vectors(0, b"zero"));
    tw.insert(1, write_vectors(0, b"one"));
    server
        .read_test_write(s, &write_enabler(1), &lease(1), &tw, &[])
        .unwrap();
    assert_eq!(server.status().mutable_shares, 2);
    let delete = || TestWriteVectors {
        new_length: Some(0),
        ..Default::default()
    };
    let result = rtw(server, s, 1, 1, 0, delete(), &[ReadVector { offset: 0, size: 4 }]).unwrap();
    assert!(result.success);
    assert_eq!(result.data[&0], vec![b"zero".to_vec()], "read before the delete");
    assert_eq!(server.list_shares(ShareKind::Mutable, s).unwrap(), shnums(&[1]));
    assert!(matches!(
        server.read_share(ShareKind::Mutable, s, 0, 0, 1),
        Err(StorageError::NotFound(_))
    ));
    // Deleting an absent share creates nothing.
    assert!(rtw(server, s, 1, 1, 7, delete(), &[]).unwrap().success);
    assert_eq!(server.list_shares(ShareKind::Mutable, s).unwrap(), shnums(&[1]));
    // Deleting the last share removes the storage index's directory.
    assert!(rtw(server, s, 1, 1, 1, delete(), &[]).unwrap().success);
    assert!(server.list_shares(ShareKind::Mutable, s).unwrap().is_empty());
    assert!(!h.share_path(s, 1).parent().unwrap().exists());
    assert!(h.server().index_entries().is_empty());
    let status = server.status();
    assert_eq!(status.mutable_shares, 0);
    assert_eq!(status.used_space, 0);
    // The slot is gone: a new write enabler may create it afresh.
    assert!(
        rtw(server, s, 9, 1, 0, write_vectors(0, b"new"), &[])
            .unwrap()
            .success
    );
}

#[test]
fn leases_land_on_every_surviving_share() {
    let h = Harness::new();
    let server = h.server();
    let s = si(7);
    let mut tw = BTreeMap::new();
    tw.insert(0, write_vectors(0, b"zero"));
    tw.insert(1, write_vectors(0, b"one"));
    server
        .read_test_write(s, &write_enabler(1), &lease(1), &tw, &[])
        .unwrap();
    h.clock.advance(DAY);
    // A write to share 0 with lease 2: both shares get lease 2.
    assert!(
        rtw(server, s, 1, 2, 0, write_vectors(0, b"Z"), &[])
            .unwrap()
            .success
    );
    let expiry = (h.now_secs() + 31 * 86_400) as u32;
    for shnum in [0, 1] {
        let leases = h.leases(ShareKind::Mutable, s, shnum);
        assert_eq!(leases.len(), 2);
        assert!(leases.contains(&(lease_id(2), expiry, 1)));
    }
    // A tests-only request that passes renews too (Tahoe renews after any successful request).
    h.clock.advance(DAY);
    let result = rtw(server, s, 1, 1, 1, TestWriteVectors::default(), &[]).unwrap();
    assert!(result.success);
    let renewed = (h.now_secs() + 31 * 86_400) as u32;
    assert!(
        h.leases(ShareKind::Mutable, s, 0)
            .contains(&(lease_id(1), renewed, 1))
    );
    // The index follows: one entry per lease, at its current expiry.
    let mut entries: Vec<(ShareNum, [u8; 32], u64)> = h
        .server()
        .index_entries()
        .iter()
        .map(|k| (k.shnum, k.lease_id, k.expiry))
        .collect();
    entries.sort();
    let mut expected = Vec::new();
    for shnum in [0, 1] {
        for (id, expiry, _) in h.leases(ShareKind::Mutable, s, shnum) {
            expected.push((shnum, id, u64::from(expiry)));
        }
    }
    expected.sort();
    assert_eq!(entries, expected);
}

#[test]
fn mutable_writes_cannot_touch_immutable_shares() {
    let h = Harness::new();
    let server = h.server();
    let s = si(8);
    upload(server, s, 0, b"immutable", 1);
    assert!(matches!(
        rtw(server, s, 1, 1, 0, write_vectors(0, b"x"), &[]),
        Err(StorageError::BadRequest(_))
    ));
    assert_eq!(
        server.read_share(ShareKind::Immutable, s, 0, 0, 100).unwrap(),
        b"immutable"
    );
    assert!(server.list_shares(ShareKind::Mutable, s).unwrap().is_empty());
}

#[test]
fn oversized_writes_are_refused() {
    let h = Harness::new();
    let server = h.server();
    let s = si(9);
    assert!(matches!(
        rtw(
            server,
            s,
            1,
            1,
            0,
            write_vectors(crate::server::mutable::MAX_MUTABLE_SHARE_SIZE, b"x"),
            &[]
        ),
        Err(StorageError::BeyondAllocation { .. })
    ));
    assert!(matches!(
        rtw(server, s, 1, 1, 0, write_vectors(u64::MAX, b"x"), &[]),
        Err(StorageError::BeyondAllocation { .. })
    ));
    assert!(server.list_shares(ShareKind::Mutable, s).unwrap().is_empty());
}

/// A large share with small writes is edited in place behind a journal; the result is exactly what
/// a copy would give (same bytes, same leases, zero-filled growth, truncation), and no journal or
/// scratch file is left.
#[test]
fn large_shares_are_written_in_place_with_the_same_result() {
    let h = Harness::new();
    let server = h.server();
    let s = si(40);
    let mut model = content(s, 0, 3 << 20);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, &model), &[])
            .unwrap()
            .success
    );
    let inode =
        |h: &Harness| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(h.share_path(s, 0)).unwrap());
    let before = inode(&h);
    let edits: [(u64, usize, Option<u64>); 4] = [
        (10, 100, None),              // inside
        ((3 << 20) - 5, 50, None),    // across the end: growth
        ((3 << 20) + 1000, 10, None), // past the end: a zero-filled gap
        (0, 4, Some((2 << 20) + 7)),  // and a truncation
    ];
    for (i, (offset, len, new_length)) in edits.into_iter().enumerate() {
        let data = vec![0xA0 + i as u8; len];
        let end = offset as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(&data);
        if let Some(n) = new_length {
            model.truncate(n as usize);
        }
        let vectors = TestWriteVectors {
            new_length,
            ..write_vectors(offset, &data)
        };
        // A second lease on the way, so the extra-lease trailer moves too.
        assert!(rtw(server, s, 1, 2 + i as u8, 0, vectors, &[]).unwrap().success);
        assert_eq!(read_all(server, s, 0), model, "after edit {i}");
    }
    assert_eq!(inode(&h), before, "edited in place, not replaced by a copy");
    assert_eq!(h.leases(ShareKind::Mutable, s, 0).len(), 5);
    let dir = h.share_path(s, 0).parent().unwrap().to_path_buf();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["0"], "no journal or scratch file is left");
}

/// A crash after the journal is written but before (or while) the share is edited: the restart
/// replays the journal. A torn journal (a crash while writing it) is dropped and the share keeps
/// its old version.
#[test]
fn interrupted_in_place_writes_are_finished_or_dropped_at_restart() {
    let mut h = Harness::new();
    let s = si(41);
    let old = content(s, 0, 2 << 20);
    assert!(
        rtw(h.server(), s, 1, 1, 0, write_vectors(0, &old), &[])
            .unwrap()
            .success
    );
    // Make a journal as an in-place write would, then "crash" before applying it.
    let share = h.share_path(s, 0);
    let journal = share.with_file_name(".journal-0");
    let container = std::fs::read(&share).unwrap();
    let opened = super::super::mutable::MutableShare::open(&share, false).unwrap();
    let next = super::super::mutable::NewVersion {
        version: 2,
        nodeid: container[32..52].try_into().unwrap(),
        write_enabler: container[52..84].try_into().unwrap(),
        writes: &[crate::api::WriteVector {
            offset: 1000,
            data: b"journaled".to_vec(),
        }],
        new_length: None,
        slots: opened.slots(),
    };
    let bytes = super::super::mutable::journal_bytes(old.len() as u64, &next).unwrap();
    std::fs::write(&journal, &bytes).unwrap();
    h.crash_and_restart();
    let mut expected = old.clone();
    expected[1000..1009].copy_from_slice(b"journaled");
    assert_eq!(read_all(h.server(), s, 0), expected);
    assert!(!journal.exists());
    // A torn journal is dropped.
    std::fs::write(&journal, &bytes[..bytes.len() / 2]).unwrap();
    h.crash_and_restart();
    assert_eq!(read_all(h.server(), s, 0), expected);
    assert!(!journal.exists());
}

/// Issue 13: read vectors are answered only up to `MAX_READ_VECTOR_ANSWER` bytes in all (counted
/// over every share before anything is read or written); past it the request is refused whole:
/// its writes do not happen either.
#[test]
fn read_vectors_past_the_answer_bound_are_refused_before_any_write() {
    let h = Harness::new();
    let server = h.server();
    let s = si(40);
    let share = vec![3u8; 600 * 1024];
    for shnum in 0..2 {
        assert!(
            rtw(server, s, 1, 1, shnum, write_vectors(0, &share), &[])
                .unwrap()
                .success
        );
    }
    // 2 shares × 600 KiB is past 1 MiB: refused, and the write in the same request not made.
    let whole = [ReadVector {
        offset: 0,
        size: u64::MAX,
    }];
    let error = rtw(server, s, 1, 1, 0, write_vectors(0, b"changed"), &whole).unwrap_err();
    assert!(
        matches!(&error, StorageError::BadRequest(m) if m.contains("read vectors ask for 1228800 bytes")),
        "{error:?}"
    );
    assert_eq!(read_all(server, s, 0), share);
    // Within the bound (two vectors of 200 KiB each, over 2 shares: 800 KiB) it is answered.
    let parts = [
        ReadVector {
            offset: 0,
            size: 200 * 1024,
        },
        ReadVector {
            offset: 400 * 1024,
            size: 1 << 40,
        },
    ];
    let answer = rtw(server, s, 1, 1, 0, write_vectors(0, b"changed"), &parts).unwrap();
    assert!(answer.success);
    assert_eq!(
        answer.data[&1],
        vec![vec![3u8; 200 * 1024], vec![3u8; 200 * 1024]]
    );
    assert_eq!(&read_all(server, s, 0)[..7], b"changed");
}

/// Issue 13: a test vector's `size` never sets how much is read: a huge size compares as Tahoe
/// compares it (the specimen against `size` bytes of the share), without reading the share whole.
#[test]
fn test_vectors_with_huge_sizes_compare_as_before() {
    let h = Harness::new();
    let server = h.server();
    let s = si(41);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, b"abcdef"), &[])
            .unwrap()
            .success
    );
    let with_test = |size: u64, specimen: &[u8]| TestWriteVectors {
        test: vec![test_vector(0, size, specimen)],
        ..write_vectors(6, b"!")
    };
    // The whole share equals the specimen: size past the end reads what there is.
    assert!(
        !rtw(server, s, 1, 1, 0, with_test(u64::MAX, b"abc"), &[])
            .unwrap()
            .success
    );
    assert!(
        rtw(server, s, 1, 1, 0, with_test(u64::MAX, b"abcdef"), &[])
            .unwrap()
            .success
    );
    assert!(
        !rtw(server, s, 1, 1, 0, with_test(u64::MAX, b"abcdef"), &[])
            .unwrap()
            .success
    );
    assert!(
        rtw(server, s, 1, 1, 0, with_test(3, b"abc"), &[])
            .unwrap()
            .success
    );
    assert_eq!(read_all(server, s, 0), b"abcdef!");
}

/// Issue 13: extending a share with `new_length` (or writing far past its end) gives the new
/// bytes disk blocks, so statvfs counts what was promised.
#[test]
fn extended_mutable_shares_are_not_sparse() {
    use std::os::unix::fs::MetadataExt;
    let h = Harness::new();
    let server = h.server();
    let s = si(42);
    let vectors = TestWriteVectors {
        new_length: Some(64 << 20),
        ..write_vectors(0, b"head")
    };
    assert!(rtw(server, s, 1, 1, 0, vectors, &[]).unwrap().success);
    assert!(
        rtw(server, s, 1, 1, 1, write_vectors(48 << 20, b"tail"), &[])
            .unwrap()
            .success
    );
    for shnum in 0..2 {
        let meta = std::fs::metadata(h.share_path(s, shnum)).unwrap();
        assert!(meta.len() > 48 << 20);
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "share {shnum}: {} bytes, {} allocated",
            meta.len(),
            meta.blocks() * 512
        );
    }
}

/// A mutable share large enough to be edited in place, rewritten over and over in one 256 KiB
/// region (every byte of it the version's number) while readers read the region: every read is
/// one version whole. (Reads used to take the stripe only to open the file and then read outside
/// it; the journal's fsync before each edit made a torn read too rare to show here, so the
/// deterministic proof is the next test. This one guards the property under load.)
#[test]
fn reads_racing_in_place_edits_see_one_version() {
    let h = Harness::new();
    let server = h.server();
    let s = si(40);
    const REGION: usize = 256 * 1024;
    let mut initial = vec![0u8; 4 << 20];
    initial[..REGION].fill(1);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, &initial), &[])
            .unwrap()
            .success
    );
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(h.share_path(s, 0)).unwrap());
    let first_inode = inode();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut reads = 0u32;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let region = server
                            .read_share(ShareKind::Mutable, s, 0, 0, REGION as u64)
                            .unwrap();
                        let first = region[0];
                        assert!(
                            region.iter().all(|b| *b == first),
                            "a read mixed versions {first} and {:?}",
                            region.iter().find(|b| **b != first)
                        );
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for version in 2..=60u8 {
            // In many pieces, as a real update writes its header, blocks and hashes: each is a
            // write of its own to the file.
            let pieces = TestWriteVectors {
                write: (0..REGION / 512)
                    .map(|i| WriteVector {
                        offset: (i * 512) as u64,
                        data: vec![version; 512],
                    })
                    .collect(),
                ..write_vectors(0, b"")
            };
            assert!(rtw(server, s, 1, 1, 0, pieces, &[]).unwrap().success);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    });
    assert_eq!(
        inode(),
        first_inode,
        "the edits replaced the file rather than editing it in place"
    );
}

/// A share opened for a long read keeps the version it opened: a replacement by a new file is
/// invisible to it, an in-place edit makes its next read fail rather than mix versions.
#[test]
fn an_open_share_reads_one_version_or_fails() {
    let h = Harness::new();
    let server = h.server();
    let s = si(41);
    // Small share: a rewrite replaces the file.
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, &[7u8; 1000]), &[])
            .unwrap()
            .success
    );
    let open = server.open_share(ShareKind::Mutable, s, 0).unwrap();
    assert_eq!(open.data_len(), 1000);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, &[8u8; 2000]), &[])
            .unwrap()
            .success
    );
    assert_eq!(server.read_open_share(&open, 500, 1000).unwrap(), vec![7u8; 500]);
    assert_eq!(read_all(server, s, 0), vec![8u8; 2000]);

    // Large share, small write: edited in place; the open reader is refused from then on.
    let s = si(42);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, &vec![1u8; 2 << 20]), &[])
            .unwrap()
            .success
    );
    let open = server.open_share(ShareKind::Mutable, s, 0).unwrap();
    assert_eq!(server.read_open_share(&open, 0, 4).unwrap(), vec![1u8; 4]);
    assert!(
        rtw(server, s, 1, 1, 0, write_vectors(0, &[2u8; 100]), &[])
            .unwrap()
            .success
    );
    let err = server.read_open_share(&open, 0, 4).unwrap_err();
    assert!(err.to_string().contains("rewritten while being read"), "{err}");
    assert_eq!(
        read_all(server, s, 0)[..101],
        [[2u8; 100].as_slice(), &[1]].concat()
    );
}
