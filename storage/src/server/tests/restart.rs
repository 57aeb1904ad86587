//! Restarts and crashes: complete shares and leases survive, uploads in progress do not, the lease
//! index is reused after a clean shutdown and rebuilt (identically) when missing, corrupt or possibly
//! stale, and an interrupted lease change is repaired.

use super::*;
use crate::server::index::LeaseKey;

fn sorted(mut keys: Vec<LeaseKey>) -> Vec<(u64, u8, StorageIndex, ShareNum, [u8; 32])> {
    keys.sort_by_key(|k| (k.expiry, k.si, k.shnum, k.lease_id));
    keys.into_iter()
        .map(|k| (k.expiry, k.kind as u8, k.si, k.shnum, k.lease_id))
        .collect()
}

/// A store with one immutable share (two leases), one mutable share and one partial upload.
fn populated() -> Harness {
    let h = Harness::new();
    let server = h.server();
    upload(server, si(1), 0, b"complete share", 1);
    h.clock.advance(DAY);
    server.add_or_renew_lease(si(1), &lease(2)).unwrap();
    assert!(
        rtw(server, si(2), 1, 3, 4, write_vectors(0, b"mutable"), &[])
            .unwrap()
            .success
    );
    server
        .allocate_buckets(si(3), &lease(1), &upload_secret(1), &shnums(&[0]), 100)
        .unwrap();
    server
        .write_share(si(3), 0, &upload_secret(1), 0, &[1; 50])
        .unwrap();
    h
}

fn assert_contents(h: &Harness) {
    let server = h.server();
    assert_eq!(
        server.read_share(ShareKind::Immutable, si(1), 0, 0, 100).unwrap(),
        b"complete share"
    );
    assert_eq!(
        server.read_share(ShareKind::Mutable, si(2), 4, 0, 100).unwrap(),
        b"mutable"
    );
    assert_eq!(h.leases(ShareKind::Immutable, si(1), 0).len(), 2);
    let status = server.status();
    assert_eq!(status.immutable_shares, 1);
    assert_eq!(status.mutable_shares, 1);
    assert_eq!(status.used_space, h.bytes_on_disk());
}

#[test]
fn restart_keeps_shares_and_leases_and_discards_uploads() {
    let mut h = populated();
    let entries = sorted(h.server().index_entries());
    assert_eq!(entries.len(), 3);
    let used = h.server().status().used_space;
    h.restart();
    assert_contents(&h);
    assert_eq!(sorted(h.server().index_entries()), entries);
    let server = h.server();
    assert_eq!(server.status().used_space, used);
    assert_eq!(server.status().uploads_in_progress, 0);
    assert!(
        server
            .list_shares(ShareKind::Immutable, si(3))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        std::fs::read_dir(h.root().join("shares/incoming"))
            .unwrap()
            .count(),
        0
    );
    assert!(matches!(
        server.write_share(si(3), 0, &upload_secret(1), 50, &[1; 50]),
        Err(StorageError::NotFound(_))
    ));
    // The share number is free again.
    let allocation = server
        .allocate_buckets(si(3), &lease(1), &upload_secret(1), &shnums(&[0]), 100)
        .unwrap();
    assert_eq!(allocation.allocated, shnums(&[0]));
}

#[test]
fn index_is_rebuilt_when_deleted() {
    let mut h = populated();
    let entries = sorted(h.server().index_entries());
    h.stop();
    std::fs::remove_dir_all(h.root().join("leases.sled")).unwrap();
    h.start();
    assert_contents(&h);
    assert_eq!(sorted(h.server().index_entries()), entries);
}

#[test]
fn index_is_rebuilt_when_corrupt() {
    let mut h = populated();
    let entries = sorted(h.server().index_entries());
    h.stop();
    for file in std::fs::read_dir(h.root().join("leases.sled")).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            std::fs::write(&path, vec![0x5a; len.max(64)]).unwrap();
        }
    }
    h.start();
    assert_contents(&h);
    assert_eq!(sorted(h.server().index_entries()), entries);

    // A database that opens but has lost its tail (truncated log) is caught by the epoch check.
    h.stop();
    let db = h.root().join("leases.sled/db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    h.start();
    assert_eq!(sorted(h.server().index_entries()), entries);
}

#[test]
fn index_is_rebuilt_after_a_crash() {
    let mut h = populated();
    let entries = sorted(h.server().index_entries());
    h.crash_and_restart();
    assert_contents(&h);
    assert_eq!(sorted(h.server().index_entries()), entries);
    assert!(!h.root().join("leases.clean").exists(), "consumed at open");
    // Renewals after the rebuild move entries as usual.
    h.clock.advance(DAY);
    h.server().add_or_renew_lease(si(2), &lease(3)).unwrap();
    let moved = sorted(h.server().index_entries());
    assert_eq!(moved.len(), 3);
    assert!(
        moved
            .iter()
            .any(|e| e.3 == 4 && e.0 == h.now_secs() + 31 * 86_400)
    );
}

#[test]
fn rebuild_repairs_an_interrupted_lease_append() {
    let mut h = Harness::new();
    upload(h.server(), si(1), 0, b"0123456789", 1);
    let path = h.share_path(si(1), 0);
    let good = std::fs::read(&path).unwrap();
    h.server.take().unwrap().crash();
    // The crash hit between appending a lease record and bumping the count: Tahoe's rule would
    // read the stray record as 72 extra bytes of share data.
    let mut torn = good.clone();
    torn.extend_from_slice(&[0x77; 72]);
    std::fs::write(&path, &torn).unwrap();
    h.start();
    assert_eq!(std::fs::read(&path).unwrap(), good);
    assert_eq!(
        h.server().share_length(ShareKind::Immutable, si(1), 0).unwrap(),
        10
    );

    // Or mid-record, or after the count but before the truncation of a removal.
    h.server.take().unwrap().crash();
    let mut partial = good.clone();
    partial.extend_from_slice(&[0x77; 30]);
    std::fs::write(&path, &partial).unwrap();
    h.start();
    assert_eq!(std::fs::read(&path).unwrap(), good);
}

#[test]
fn scratch_files_are_removed_at_open() {
    let mut h = Harness::new();
    assert!(
        rtw(h.server(), si(1), 1, 1, 0, write_vectors(0, b"m"), &[])
            .unwrap()
            .success
    );
    let scratch = h.share_path(si(1), 0).with_file_name(".tmp-0");
    h.stop();
    std::fs::write(&scratch, b"half a new version").unwrap();
    h.start();
    assert!(!scratch.exists());
    assert_eq!(
        h.server().list_shares(ShareKind::Mutable, si(1)).unwrap(),
        shnums(&[0])
    );
    assert_eq!(h.server().status().used_space, h.bytes_on_disk());
}

#[test]
fn one_server_per_directory() {
    let h = Harness::new();
    let second = StorageServer::open(h.config.clone());
    assert!(matches!(second, Err(StorageError::Internal(ref m)) if m.contains("in use")));
}

/// A lock released a moment after the open began (as when a process forked elsewhere in this one
/// holds the file until it execs) is waited for; one still held after the grace is another
/// server's.
#[test]
fn a_lock_released_within_the_grace_is_taken() {
    let mut h = Harness::new();
    h.stop();
    let holder = std::fs::File::open(h.config.storage_dir.join("lock")).unwrap();
    holder.lock().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(holder);
    });
    let started = std::time::Instant::now();
    let reopened = StorageServer::open(h.config.clone());
    releaser.join().unwrap();
    assert!(reopened.is_ok(), "{:?}", reopened.err());
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    drop(reopened);
    let held = std::fs::File::open(h.config.storage_dir.join("lock")).unwrap();
    held.lock().unwrap();
    let started = std::time::Instant::now();
    let refused = StorageServer::open(h.config.clone());
    assert!(matches!(refused, Err(StorageError::Internal(ref m)) if m.contains("in use")));
    assert!(started.elapsed() >= crate::server::store::LOCK_BUSY_GRACE);
}

/// Servers opening one directory at once (the grace makes each retry while another holds the
/// lock): exactly one gets it, and the others are told the directory is in use.
#[test]
fn racing_opens_of_one_directory_leave_one_server() {
    let mut h = Harness::new();
    h.stop();
    let start = std::sync::Arc::new(std::sync::Barrier::new(4));
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let config = h.config.clone();
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                StorageServer::open(config)
            })
        })
        .collect();
    let results: Vec<_> = opens.into_iter().map(|open| open.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(refused, StorageError::Internal(m) if m.contains("in use")),
            "{refused:?}"
        );
    }
}
