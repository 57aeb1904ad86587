//! Checking files on a grid of real storage servers: share counts, happiness and health of
//! immutable and mutable files as shares go missing, `verify` finding corrupt shares that a plain
//! check cannot see, `add-lease` keeping files alive through lease expiry, and the manifest of a
//! directory tree.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use filenode::cap::{Cap, FileCap, MutableFormat};
use filenode::grid::check::CheckOptions;
use filenode::grid::upload::UploadParams;
use filenode::grid::{ClientSecrets, Grid};
use filenode::mutable::keys::KeyPool;
use filenode::node::{DirNode, Replace};
use storage::server::{ExpirationMode, ExpirationPolicy, FakeClock};
use tests::grid::{TestGrid, Transport};

pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

/// A client of `grid` (3-of-10, happiness 7, small segments so that files have many blocks).
pub(crate) fn client(grid: &TestGrid) -> Arc<Grid> {
    let client = Grid::with_key_pool(
        grid.secrets.clone(),
        UploadParams {
            max_segment_size: 4096,
            ..UploadParams::default()
        },
        KeyPool::new(0),
    );
    client.set_servers(grid.entries());
    Arc::new(client)
}

pub(crate) const PLAIN: CheckOptions = CheckOptions {
    verify: false,
    add_lease: false,
};
pub(crate) const VERIFY: CheckOptions = CheckOptions {
    verify: true,
    add_lease: false,
};

async fn immutable_health_follows_the_shares(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let alice = client(&grid);
    let result = alice
        .upload(std::io::Cursor::new(data(50_000, 1)), None)
        .await
        .unwrap();
    let cap = Cap::File(result.cap.clone());
    let si = cap.storage_index().unwrap();

    let report = alice.check(&cap, VERIFY).await.unwrap();
    assert!(report.healthy && report.recoverable, "{report:?}");
    assert_eq!((report.good_shares, report.needed, report.expected), (10, 3, 10));
    assert_eq!(report.happiness, 10);
    assert_eq!(report.good_share_hosts, 10);
    assert_eq!(report.servers_responding.len(), 10);
    assert!(report.corrupt.is_empty());
    assert_eq!(report.summary(), "Healthy");

    // Four shares gone: still recoverable, no longer healthy; the sharemap names what is left.
    let located = grid.find_shares(si);
    for (server, shnum) in located.iter().take(4) {
        grid.delete_share(*server, si, *shnum);
    }
    let report = alice.check(&cap, PLAIN).await.unwrap();
    assert!(!report.healthy && report.recoverable, "{report:?}");
    assert_eq!(report.good_shares, 6);
    assert_eq!(report.happiness, 6);
    for (_, shnum) in located.iter().take(4) {
        assert!(!report.sharemap.contains_key(shnum));
    }
    assert_eq!(report.summary(), "Not Healthy: 6 shares (enc 3-of-10)");

    // A corrupt block in one share: a plain check cannot see it, verify names the share.
    let (server, shnum) = located[5];
    grid.corrupt_share(server, si, shnum, 0x100);
    assert_eq!(alice.check(&cap, PLAIN).await.unwrap().good_shares, 6);
    let report = alice.check(&cap, VERIFY).await.unwrap();
    assert_eq!(report.good_shares, 5, "{report:?}");
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].shnum, shnum);
    assert_eq!(report.corrupt[0].server_id, grid.entries()[server].server_id);
    assert!(!report.healthy && report.recoverable);

    // Down to two good shares: not recoverable. A broken server is not among the responders.
    for (server, shnum) in located.iter().skip(6).take(3) {
        grid.delete_share(*server, si, *shnum);
    }
    grid.break_server(located[4].0);
    let report = alice.check(&cap, PLAIN).await.unwrap();
    assert!(!report.recoverable && !report.healthy, "{report:?}");
    assert_eq!(report.servers_responding.len(), 9);
    assert_eq!(report.summary(), "Not Healthy: 2 shares (enc 3-of-10)");

    // The verify cap checks as well as the read cap.
    let verifier = cap.verifier().unwrap();
    let report = alice.check(&verifier, PLAIN).await.unwrap();
    assert_eq!(report.storage_index, Some(si));
    assert!(!report.recoverable);

    // A LIT file has nothing on the servers and is always healthy.
    let lit = alice
        .upload(std::io::Cursor::new(b"tiny".to_vec()), None)
        .await
        .unwrap();
    let report = alice.check(&Cap::File(lit.cap), VERIFY).await.unwrap();
    assert!(report.healthy && report.storage_index.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_health_follows_the_shares_in_process() {
    immutable_health_follows_the_shares(Transport::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_health_follows_the_shares_over_https() {
    immutable_health_follows_the_shares(Transport::Https).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_health_counts_versions_and_shares() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid);
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        let mutable = alice.create_mutable_file(format, data(20_000, 3)).await.unwrap();
        let cap = Cap::File(FileCap::Mutable(mutable));
        let report = alice.check(&cap, VERIFY).await.unwrap();
        assert!(report.healthy, "{format:?}: {report:?}");
        assert_eq!((report.good_shares, report.needed, report.expected), (10, 3, 10));
        assert_eq!(
            (report.recoverable_versions, report.unrecoverable_versions),
            (1, 0)
        );

        // A read-only cap and a verify cap see the same shares.
        for other in [cap.readonly().unwrap(), cap.verifier().unwrap()] {
            let seen = alice.check(&other, PLAIN).await.unwrap();
            assert_eq!(seen.sharemap, report.sharemap, "{format:?}");
        }

        // Shares lost: recoverable, not healthy.
        let si = cap.storage_index().unwrap();
        let ids: Vec<String> = grid.entries().into_iter().map(|e| e.server_id).collect();
        for (shnum, holders) in report.sharemap.iter().take(3) {
            let server = ids.iter().position(|id| *id == holders[0]).unwrap();
            grid.delete_share(server, si, *shnum);
        }
        let report = alice.check(&cap, PLAIN).await.unwrap();
        assert!(report.recoverable && !report.healthy, "{report:?}");
        assert_eq!(report.good_shares, 7);
        assert_eq!(report.summary(), "Unhealthy: 7 shares (enc 3-of-10)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_lease_keeps_files_through_expiry() {
    let clock = Arc::new(FakeClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let server_clock = Arc::clone(&clock);
    let grid = TestGrid::with_config(5, move |_, config| {
        config.clock = server_clock.clone();
        config.expiration = ExpirationPolicy {
            enabled: true,
            mode: ExpirationMode::Age {
                override_lease_duration: None,
            },
            immutable: true,
            mutable: true,
        };
    });
    let alice = Grid::with_key_pool(
        ClientSecrets {
            lease_secret: b"alice".to_vec(),
            convergence: None,
        },
        UploadParams {
            happy: 5,
            ..UploadParams::default()
        },
        KeyPool::new(0),
    );
    alice.set_servers(grid.entries());
    let alice = Arc::new(alice);
    let kept = Cap::File(
        alice
            .upload(std::io::Cursor::new(data(9_000, 5)), None)
            .await
            .unwrap()
            .cap,
    );
    let dropped = Cap::File(
        alice
            .upload(std::io::Cursor::new(data(9_000, 6)), None)
            .await
            .unwrap()
            .cap,
    );
    let mutable = Cap::File(FileCap::Mutable(
        alice
            .create_mutable_file(MutableFormat::Mdmf, data(9_000, 7))
            .await
            .unwrap(),
    ));

    // 20 days on, renew two of the three; 20 more days and the unrenewed lease (31 days) expires.
    clock.advance(Duration::from_secs(20 * 86_400));
    for cap in [&kept, &mutable] {
        let report = alice
            .check(
                cap,
                CheckOptions {
                    verify: false,
                    add_lease: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(report.leases_renewed, 5, "{report:?}");
        assert!(report.lease_failures.is_empty());
    }
    clock.advance(Duration::from_secs(20 * 86_400));
    for server in &grid.servers {
        server.server.expire_leases().unwrap();
    }
    assert!(alice.check(&kept, PLAIN).await.unwrap().healthy);
    assert!(alice.check(&mutable, PLAIN).await.unwrap().healthy);
    let gone = alice.check(&dropped, PLAIN).await.unwrap();
    assert_eq!(gone.good_shares, 0, "the unrenewed file's shares expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_lists_a_tree_once_even_with_cycles() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid);
    let root = alice.create_directory(MutableFormat::Sdmf).await.unwrap();
    let sub = root
        .create_subdirectory("sub", MutableFormat::Mdmf, Replace::Never)
        .await
        .unwrap();
    let file = alice
        .upload(std::io::Cursor::new(data(1_000, 9)), None)
        .await
        .unwrap();
    sub.set_child("file.bin", &Cap::File(file.cap.clone()), None, Replace::Never)
        .await
        .unwrap();
    // A link back up makes a cycle; a second link to the same file is listed under both names.
    sub.set_child("up", &Cap::Dir(root.cap().clone()), None, Replace::Never)
        .await
        .unwrap();
    root.set_child("again.bin", &Cap::File(file.cap.clone()), None, Replace::Never)
        .await
        .unwrap();
    let entries = DirNode::new(&alice, root.cap().clone()).manifest().await;
    let paths: Vec<String> = entries.iter().map(|e| e.path.join("/")).collect();
    assert_eq!(paths, ["", "again.bin", "sub", "sub/file.bin"], "{paths:?}");
    assert!(entries.iter().all(|e| e.error.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_restores_missing_shares() {
    let grid = TestGrid::build(10, Transport::Https).await;
    let alice = client(&grid);
    let original = data(70_000, 11);
    let result = alice
        .upload(std::io::Cursor::new(original.clone()), None)
        .await
        .unwrap();
    let cap = Cap::File(result.cap.clone());
    let si = cap.storage_index().unwrap();

    // A healthy file is left alone.
    let report = alice.check_and_repair(&cap, PLAIN).await.unwrap();
    assert!(!report.attempted && report.post.healthy);

    // Four shares lost: repair writes them back, and the file is healthy again (verified block by
    // block); the surviving share files are not rewritten.
    let located = grid.find_shares(si);
    let lost: Vec<_> = located.iter().take(4).copied().collect();
    for (server, shnum) in &lost {
        grid.delete_share(*server, si, *shnum);
    }
    let kept_path = grid.share_path(located[9].0, si, located[9].1);
    let kept_before = std::fs::read(&kept_path).unwrap();
    let kept_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&kept_path).unwrap());
    let report = alice.check_and_repair(&cap, VERIFY).await.unwrap();
    assert!(report.attempted && report.successful, "{report:?}");
    assert_eq!(report.pre.good_shares, 6);
    assert!(
        report.post.healthy && report.post.good_shares == 10,
        "{:?}",
        report.post
    );
    assert!(report.post.corrupt.is_empty(), "the rewritten shares verify");
    // The surviving share was not rewritten: the same file, the same header and share data. Its
    // lease may have been renewed in place (the repair's allocation renews it, as Tahoe's does),
    // so the lease records at the end are not compared (72 bytes each; the count is at 8..12).
    let kept_after = std::fs::read(&kept_path).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&kept_path).unwrap()),
        kept_inode
    );
    let leases = u32::from_be_bytes(kept_before[8..12].try_into().unwrap()) as usize;
    let data_end = kept_before.len() - 72 * leases;
    assert_eq!(kept_after.len(), kept_before.len());
    assert!(
        kept_after[..data_end] == kept_before[..data_end],
        "the kept share's data changed"
    );
    let FileCap::Chk(chk) = result.cap else {
        panic!("not CHK")
    };
    let reader = alice.open_chk(chk).await.unwrap();
    assert_eq!(reader.read_to_vec(0, chk.size).await.unwrap(), original);

    // Too few shares left: the repair is attempted, fails, and says why.
    for (server, shnum) in grid.find_shares(si).into_iter().take(8) {
        grid.delete_share(server, si, shnum);
    }
    let report = alice.check_and_repair(&cap, PLAIN).await.unwrap();
    assert!(report.attempted && !report.successful);
    assert!(report.problem.unwrap().contains("not recoverable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_republishes_a_mutable_file_with_its_write_cap() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid);
    let contents = data(30_000, 12);
    let mutable = alice
        .create_mutable_file(MutableFormat::Mdmf, contents.clone())
        .await
        .unwrap();
    let cap = Cap::File(FileCap::Mutable(mutable));
    let si = cap.storage_index().unwrap();
    let ids: Vec<String> = grid.entries().into_iter().map(|e| e.server_id).collect();
    let pre = alice.check(&cap, PLAIN).await.unwrap();
    for (shnum, holders) in pre.sharemap.iter().take(4) {
        let server = ids.iter().position(|id| *id == holders[0]).unwrap();
        grid.delete_share(server, si, *shnum);
    }
    // A read-only cap cannot repair; the write cap can.
    let readonly = cap.readonly().unwrap();
    let report = alice.check_and_repair(&readonly, PLAIN).await.unwrap();
    assert!(report.attempted && !report.successful);
    assert!(report.problem.unwrap().contains("write cap"));
    let report = alice.check_and_repair(&cap, PLAIN).await.unwrap();
    assert!(report.successful, "{report:?}");
    assert_eq!(report.post.good_shares, 10);
    let node = filenode::node::FileNode::new(&alice, FileCap::Mutable(mutable));
    assert_eq!(node.read_all().await.unwrap(), contents);
}
