//! Mutable files and directories on a grid of real storage servers (in process and over HTTPS):
//! publish, retrieve, overwrite, MDMF partial writes, concurrent writers from two clients, servers
//! lost between writes, corrupted shares, and the directory operations.

use std::sync::Arc;

use filenode::cap::{Cap, FileCap, MutableFormat};
use filenode::grid::upload::UploadParams;
use filenode::grid::{ClientSecrets, Grid};
use filenode::mutable::keys::KeyPool;
use filenode::node::{DirNode, FileNode, Node, NodeError, Replace};
use tests::grid::{TestGrid, Transport};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

/// A client of `grid` with its own lease secret (a separate node).
pub(crate) fn client(grid: &TestGrid, name: &str) -> Arc<Grid> {
    let client = Grid::with_key_pool(
        ClientSecrets {
            lease_secret: name.as_bytes().to_vec(),
            convergence: Some(vec![7; 32]),
        },
        UploadParams::default(),
        KeyPool::new(0),
    );
    client.set_servers(grid.entries());
    Arc::new(client)
}

fn file(grid: &Arc<Grid>, cap: &filenode::cap::MutableCap) -> FileNode {
    FileNode::new(grid, FileCap::Mutable(*cap))
}

async fn mutable_files_round_trip_and_overwrite(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let alice = client(&grid, "alice");
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        for size in [0usize, 1, 56, 131_073, 400_000] {
            let original = data(size, 1);
            let cap = alice.create_mutable_file(format, original.clone()).await.unwrap();
            let node = file(&alice, &cap);
            assert_eq!(node.read_all().await.unwrap(), original, "{format:?} {size}");
            assert_eq!(node.size().await.unwrap(), size as u64);
            // A read-only cap reads the same and refuses writes.
            let ro = FileNode::new(&alice, FileCap::Mutable(cap.readonly().unwrap()));
            assert_eq!(ro.read_all().await.unwrap(), original);
            assert!(matches!(
                ro.overwrite_bytes(b"x".to_vec()).await,
                Err(NodeError::NotWritable(_))
            ));
            // Another client sees the overwrite.
            let replacement = data(size / 2 + 3, 2);
            node.overwrite_bytes(replacement.clone()).await.unwrap();
            let bob = client(&grid, "bob");
            assert_eq!(file(&bob, &cap).read_all().await.unwrap(), replacement);
            // Each write from the same client (from its cached servermap) raises the seqnum.
            let seqnum = |reader: &filenode::node::FileReader| match reader {
                filenode::node::FileReader::Mutable(r) => r.version().0,
                _ => panic!("a mutable reader"),
            };
            let before = seqnum(&node.open().await.unwrap());
            node.overwrite_bytes(replacement.clone()).await.unwrap();
            assert_eq!(seqnum(&file(&bob, &cap).open().await.unwrap()), before + 1);
            // A range read fetches just the range.
            let reader = file(&bob, &cap).open().await.unwrap();
            let (offset, len) = (replacement.len() as u64 / 3, 1000u64);
            let end = (offset + len).min(replacement.len() as u64) as usize;
            assert_eq!(
                reader.read(offset, len).await.unwrap(),
                replacement[offset as usize..end]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_files_round_trip_and_overwrite_in_process() {
    mutable_files_round_trip_and_overwrite(Transport::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_files_round_trip_and_overwrite_over_https() {
    mutable_files_round_trip_and_overwrite(Transport::Https).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdmf_partial_writes_match_a_model() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    // Writes above 1 MiB go in several batches here (32 MiB by default), and the file is large
    // enough (> 32 segments) that publishing it streams in several batches too.
    filenode::grid::mutable::set_atomic_write_limit(1 << 20);
    let mut model = data(4_300_000, 3);
    let cap = alice
        .create_mutable_file(MutableFormat::Mdmf, model.clone())
        .await
        .unwrap();
    let node = file(&alice, &cap);
    let writes: [(usize, usize); 7] = [
        (0, 10),              // start of the first segment
        (131_070, 10),        // across a segment boundary
        (4_250_000, 150_000), // across the end: the file grows
        (4_400_000, 1),       // at the very end
        (4_500_000, 5),       // past the end: zero-filled gap
        (10, 1_300_000),      // more than one write batch
        (5, 0),               // empty
    ];
    for (i, (offset, len)) in writes.into_iter().enumerate() {
        let patch = data(len, 10 + i as u8);
        if model.len() < offset + len {
            model.resize(offset + len, 0);
        }
        model[offset..offset + len].copy_from_slice(&patch);
        node.write_at(offset as u64, patch).await.unwrap();
        for (server, s) in grid.servers.iter().enumerate() {
            for shnum in s
                .server
                .list_shares(storage::api::ShareKind::Mutable, cap.storage_index())
                .unwrap()
            {
                let bytes = std::fs::read(grid.share_path(server, cap.storage_index(), shnum)).unwrap();
                let len = u64::from_be_bytes(bytes[84..92].try_into().unwrap()) as usize;
                let share = filenode::mutable::layout::MutableShare::parse(&bytes[468..468 + len]).unwrap();
                share
                    .verify(usize::from(shnum), &cap.fingerprint)
                    .unwrap_or_else(|e| panic!("write {i} share {shnum}: {e}"));
            }
        }
        let bob = client(&grid, "bob");
        assert_eq!(
            file(&bob, &cap).read_all().await.unwrap(),
            model,
            "after write {i} at {offset}+{len}"
        );
    }
    // SDMF files take the same writes (rewritten whole).
    let sdmf = alice
        .create_mutable_file(MutableFormat::Sdmf, b"hello world".to_vec())
        .await
        .unwrap();
    file(&alice, &sdmf)
        .write_at(6, b"there, world".to_vec())
        .await
        .unwrap();
    assert_eq!(
        file(&alice, &sdmf).read_all().await.unwrap(),
        b"hello there, world"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_one_wins_the_other_is_told() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    let bob = client(&grid, "bob");
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        let cap = alice
            .create_mutable_file(format, b"version one".to_vec())
            .await
            .unwrap();
        // Both clients learn the current version, then both write.
        let (a, b) = (file(&alice, &cap), file(&bob, &cap));
        let (a_text, b_text) = (data(5000, 1), data(7000, 2));
        let (ra, rb) = tokio::join!(
            a.overwrite_bytes(a_text.clone()),
            b.overwrite_bytes(b_text.clone())
        );
        let outcomes = [ra.is_ok(), rb.is_ok()];
        let failures: Vec<&NodeError> = [&ra, &rb].into_iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failures
                .iter()
                .all(|e| matches!(e, NodeError::UncoordinatedWrite)),
            "{failures:?}"
        );
        let result = client(&grid, "carol").node(Cap::File(FileCap::Mutable(cap)));
        let Node::File(result) = result else { panic!() };
        let contents = result.read_all().await.unwrap();
        assert!(contents == a_text || contents == b_text, "no corruption");
        match outcomes {
            [true, false] => assert_eq!(contents, a_text),
            [false, true] => assert_eq!(contents, b_text),
            // Writes that did not overlap in time both succeed, one after the other.
            [true, true] => {}
            [false, false] => panic!("both writers failed"),
        }
        // A stale client's next write is refused rather than silently overwriting: bob reads
        // (and remembers the version), carol writes, bob writes.
        file(&bob, &cap).modify(|_| Ok(None)).await.unwrap();
        let carol = client(&grid, "carol");
        file(&carol, &cap)
            .overwrite_bytes(b"alice again".to_vec())
            .await
            .unwrap();
        let stale = file(&bob, &cap).overwrite_bytes(b"bob, stale".to_vec()).await;
        match stale {
            Err(NodeError::UncoordinatedWrite) => {
                assert_eq!(file(&bob, &cap).read_all().await.unwrap(), b"alice again");
            }
            Ok(()) => panic!("a write from a stale servermap went through"),
            Err(e) => panic!("unexpected {e}"),
        }
        // modify() re-reads and retries, so it succeeds.
        file(&bob, &cap)
            .modify(|old| Ok(Some([old, b" + bob"].concat())))
            .await
            .unwrap();
        assert_eq!(file(&carol, &cap).read_all().await.unwrap(), b"alice again + bob");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_lost_between_publish_and_retrieve() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    let text = data(200_000, 4);
    let cap = alice
        .create_mutable_file(MutableFormat::Mdmf, text.clone())
        .await
        .unwrap();
    for i in 0..7 {
        grid.break_server(i);
    }
    assert_eq!(
        client(&grid, "bob").node(Cap::File(FileCap::Mutable(cap))).cap(),
        Cap::File(FileCap::Mutable(cap))
    );
    assert_eq!(file(&client(&grid, "bob"), &cap).read_all().await.unwrap(), text);
    grid.break_server(7);
    let err = file(&client(&grid, "bob"), &cap).read_all().await.unwrap_err();
    assert!(matches!(err, NodeError::Unrecoverable(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_work_with_k_to_n_servers_and_the_newest_version_wins() {
    for available in [3usize, 5, 10] {
        let grid = TestGrid::build(10, Transport::InProcess).await;
        let alice = client(&grid, "alice");
        let cap = alice
            .create_mutable_file(MutableFormat::Sdmf, b"old".to_vec())
            .await
            .unwrap();
        for i in available..10 {
            grid.break_server(i);
        }
        let fresh = client(&grid, "bob");
        file(&fresh, &cap).overwrite_bytes(data(3000, 5)).await.unwrap();
        for i in available..10 {
            grid.restore_server(i);
        }
        // The restored servers still hold the old version; the new one wins.
        assert_eq!(
            file(&client(&grid, "carol"), &cap).read_all().await.unwrap(),
            data(3000, 5)
        );
        // All N shares of the new version went to the available servers.
        for i in available..10 {
            grid.break_server(i);
        }
        assert_eq!(
            file(&client(&grid, "dave"), &cap).read_all().await.unwrap(),
            data(3000, 5)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_mutable_shares_are_routed_around() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    let text = data(300_000, 6);
    let cap = alice
        .create_mutable_file(MutableFormat::Mdmf, text.clone())
        .await
        .unwrap();
    let si = cap.storage_index();
    // Flip a byte in the first block of every share on three servers.
    for server in 0..3 {
        for shnum in grid.servers[server]
            .server
            .list_shares(storage::api::ShareKind::Mutable, si)
            .unwrap()
        {
            let path = grid.share_path(server, si, shnum);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[468 + 2167 + 20] ^= 1;
            std::fs::write(&path, bytes).unwrap();
        }
    }
    assert_eq!(file(&client(&grid, "bob"), &cap).read_all().await.unwrap(), text);
}

async fn dir(grid: &Arc<Grid>) -> DirNode {
    grid.create_directory(MutableFormat::Sdmf).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_operations() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    let root = dir(&alice).await;
    assert!(root.list().await.unwrap().is_empty());
    let small = alice.upload_bytes(b"tiny".to_vec()).await.unwrap();
    let big = alice.upload_bytes(data(10_000, 7)).await.unwrap();
    assert!(
        root.set_child("tiny.txt", &Cap::File(small.clone()), None, Replace::Always)
            .await
            .unwrap()
    );
    assert!(
        root.set_child("big.bin", &Cap::File(big.clone()), None, Replace::Always)
            .await
            .unwrap()
    );
    // NFC: a decomposed name is stored composed.
    root.set_child("cafe\u{301}", &Cap::File(small.clone()), None, Replace::Always)
        .await
        .unwrap();
    let names: Vec<String> = root.list().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["big.bin", "café", "tiny.txt"]);
    let child = root.get("tiny.txt").await.unwrap();
    assert_eq!(child.cap, Cap::File(small.clone()));
    assert!(child.metadata["tahoe"]["linkcrtime"].is_f64());
    // replace=false refuses and changes nothing; only-files replaces files but not directories.
    let err = root
        .set_child("tiny.txt", &Cap::File(big.clone()), None, Replace::Never)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::ExistingChild(_)));
    assert_eq!(root.get("tiny.txt").await.unwrap().cap, Cap::File(small.clone()));
    let sub = root
        .create_subdirectory("sub", MutableFormat::Sdmf, Replace::Never)
        .await
        .unwrap();
    let err = root
        .set_child("sub", &Cap::File(big.clone()), None, Replace::OnlyFiles)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::ExistingChild(_)));
    assert!(
        !root
            .set_child("tiny.txt", &Cap::File(big.clone()), None, Replace::OnlyFiles)
            .await
            .unwrap()
    );
    // The subdirectory's write cap is kept (encrypted) and a read-only view has only read caps.
    let sub_child = root.get("sub").await.unwrap();
    assert_eq!(sub_child.cap, Cap::Dir(sub.cap().clone()));
    let ro_root = DirNode::new(&alice, root.cap().readonly().unwrap());
    let ro_sub = ro_root.get("sub").await.unwrap();
    assert_eq!(ro_sub.cap, Cap::Dir(sub.cap().readonly().unwrap()));
    assert!(matches!(
        ro_root.unlink("big.bin").await,
        Err(NodeError::NotWritable(_))
    ));
    // Walk, rename, move across directories, unlink.
    sub.set_child("inner", &Cap::File(small.clone()), None, Replace::Always)
        .await
        .unwrap();
    let Node::File(inner) = root.walk(&["sub", "inner"]).await.unwrap() else {
        panic!("a file")
    };
    assert_eq!(inner.read_all().await.unwrap(), b"tiny");
    assert!(matches!(
        root.walk(&["big.bin", "x"]).await,
        Err(NodeError::NotADirectory(_))
    ));
    root.rename("big.bin", "renamed.bin", Replace::Always)
        .await
        .unwrap();
    assert!(matches!(
        root.get("big.bin").await,
        Err(NodeError::NoSuchChild(_))
    ));
    root.move_child_to("renamed.bin", &sub, "moved.bin", Replace::Never)
        .await
        .unwrap();
    assert_eq!(sub.get("moved.bin").await.unwrap().cap, Cap::File(big.clone()));
    assert!(matches!(
        root.get("renamed.bin").await,
        Err(NodeError::NoSuchChild(_))
    ));
    let unlinked = root.unlink("café").await.unwrap();
    assert_eq!(unlinked.cap, Cap::File(small.clone()));
    assert!(matches!(
        root.unlink("café").await,
        Err(NodeError::NoSuchChild(_))
    ));
    // Bad names change nothing.
    for bad in ["", "a/b"] {
        assert!(matches!(
            root.set_child(bad, &Cap::File(small.clone()), None, Replace::Always)
                .await,
            Err(NodeError::BadName { .. })
        ));
    }
    // Unknown caps: only marked read-only ones are linked (an unknown cap may be a write cap,
    // which must never sit in the plaintext slot); they survive a move with their slots intact.
    assert!(matches!(
        root.set_child(
            "future",
            &Cap::parse_lenient("URI:NEW-THING:abc"),
            None,
            Replace::Always
        )
        .await,
        Err(NodeError::BadChild(_))
    ));
    root.set_child(
        "future",
        &Cap::parse_lenient("ro.URI:NEW-THING:abc"),
        None,
        Replace::Always,
    )
    .await
    .unwrap();
    let future = root.get("future").await.unwrap();
    assert!(matches!(future.cap, Cap::Unknown(_)));
    root.move_child_to("future", &sub, "future", Replace::Never)
        .await
        .unwrap();
    assert_eq!(sub.get("future").await.unwrap().cap, future.cap);

    // create_path makes intermediate directories and refuses to go through a file.
    let deep = root
        .create_path(&["a", "b", "c"], MutableFormat::Sdmf)
        .await
        .unwrap();
    let Node::Dir(found) = root.walk(&["a", "b", "c"]).await.unwrap() else {
        panic!("a dir")
    };
    assert_eq!(found.cap(), deep.cap());
    assert!(matches!(
        root.create_path(&["tiny.txt", "x"], MutableFormat::Sdmf).await,
        Err(NodeError::WrongType(_))
    ));
    // Immutable directories hold only immutable children.
    let frozen = alice
        .create_immutable_directory(vec![("f".into(), Cap::File(big.clone()), None)])
        .await
        .unwrap();
    assert_eq!(frozen.list().await.unwrap()[0].cap, Cap::File(big.clone()));
    assert!(matches!(
        alice
            .create_immutable_directory(vec![("d".into(), Cap::Dir(sub.cap().clone()), None)])
            .await,
        Err(NodeError::BadChild(_))
    ));
    assert!(matches!(frozen.unlink("f").await, Err(NodeError::NotWritable(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_modified_by_two_clients_keeps_both_changes() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    let bob = client(&grid, "bob");
    let root = dir(&alice).await;
    let root_b = DirNode::new(&bob, root.cap().clone());
    let cap = Cap::File(alice.upload_bytes(b"x".to_vec()).await.unwrap());
    let (a, b) = tokio::join!(
        async {
            for i in 0..5 {
                root.set_child(&format!("a{i}"), &cap, None, Replace::Always)
                    .await
                    .unwrap();
            }
        },
        async {
            for i in 0..5 {
                root_b
                    .set_child(&format!("b{i}"), &cap, None, Replace::Always)
                    .await
                    .unwrap();
            }
        }
    );
    let ((), ()) = (a, b);
    assert_eq!(root.list().await.unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_contents_never_outlive_their_version() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    let cap = alice
        .create_mutable_file(MutableFormat::Sdmf, b"aaaa".to_vec())
        .await
        .unwrap();
    let node = file(&alice, &cap);
    node.write_at(0, b"b".to_vec()).await.unwrap(); // remembers "baaa"
    node.overwrite(3, filenode::grid::mutable::chunks_from_bytes(b"xyz".to_vec()))
        .await
        .unwrap();
    node.write_at(0, b"Q".to_vec()).await.unwrap();
    assert_eq!(
        file(&client(&grid, "bob"), &cap).read_all().await.unwrap(),
        b"Qyz"
    );
    // Far past the end, or overflowing: refused, nothing written.
    for offset in [1u64 << 40, u64::MAX - 1] {
        assert!(matches!(
            node.write_at(offset, b"zz".to_vec()).await,
            Err(NodeError::BadOffset(_))
        ));
    }
    let mdmf = alice
        .create_mutable_file(MutableFormat::Mdmf, b"m".to_vec())
        .await
        .unwrap();
    assert!(matches!(
        file(&alice, &mdmf).write_at(1 << 40, b"z".to_vec()).await,
        Err(NodeError::BadOffset(_))
    ));
    assert_eq!(file(&alice, &mdmf).read_all().await.unwrap(), b"m");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_whose_servers_are_down_is_not_taken_for_empty() {
    // Eleven servers, ten shares: one server answers but holds nothing.
    let grid = TestGrid::build(11, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    let small = Cap::File(alice.upload_bytes(b"x".to_vec()).await.unwrap());
    let root = alice
        .create_directory_with_children(MutableFormat::Sdmf, vec![("keep".into(), small.clone(), None)])
        .await
        .unwrap();
    let si = root.cap().file().storage_index().unwrap();
    let holders: Vec<usize> = (0..11)
        .filter(|&i| {
            !grid.servers[i]
                .server
                .list_shares(storage::api::ShareKind::Mutable, si)
                .unwrap()
                .is_empty()
        })
        .collect();
    assert_eq!(holders.len(), 10);
    for &i in &holders {
        grid.break_server(i);
    }
    let bob = DirNode::new(&client(&grid, "bob"), root.cap().clone());
    let err = bob
        .set_child("new", &small, None, Replace::Always)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Unrecoverable(_)), "{err}");
    for &i in &holders {
        grid.restore_server(i);
    }
    let names: Vec<String> = root.list().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["keep"]);
}

/// A write is acknowledged only once its version is on `happy` of the servers that are up (a
/// server that does not answer in time is up, and may be the one a later reader asks), and a
/// reader that hears in time from too few servers to be sure of meeting such a version says so
/// rather than serve an older one. Servers that fail at once are down, and reads and writes go on
/// without them (the k-to-N test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_happy_servers_and_readers_that_hear_from_too_few_say_so() {
    let grid = TestGrid::build(10, Transport::InProcess).await;
    let alice = client(&grid, "alice");
    let cap = alice
        .create_mutable_file(MutableFormat::Sdmf, b"first".to_vec())
        .await
        .unwrap();
    // Four of ten hang: the new version could reach six servers, one short of happy (seven).
    for i in 0..4 {
        grid.hang_server(i);
    }
    let err = file(&client(&grid, "bob"), &cap)
        .overwrite_bytes(b"second".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, NodeError::NotEnoughServers(_)) && err.to_string().contains("reached only 6 servers"),
        "{err}"
    );
    // Seven hang: three answer, fewer than the four that must (10 - 7 + 1) to meet any
    // acknowledged version, so the reader does not take what it found for the latest.
    for i in 4..7 {
        grid.hang_server(i);
    }
    let err = file(&client(&grid, "carol"), &cap).read_all().await.unwrap_err();
    assert!(
        matches!(err, NodeError::NotEnoughServers(_))
            && err
                .to_string()
                .contains("3 of 10 servers answered in time (at least 4 must)"),
        "{err}"
    );
    // Back up: the file reads, whole, as one of the two versions; a write now succeeds.
    for i in 0..7 {
        grid.restore_server(i);
    }
    let now = file(&client(&grid, "dave"), &cap).read_all().await.unwrap();
    assert!(now == b"first" || now == b"second", "{now:?}");
    file(&client(&grid, "erin"), &cap)
        .overwrite_bytes(b"third".to_vec())
        .await
        .unwrap();
    assert_eq!(
        file(&client(&grid, "frank"), &cap).read_all().await.unwrap(),
        b"third"
    );
}

/// A new mutable file or directory is written without asking the servers first (its key is new,
/// so no server can hold its slot): all N shares at once to the first N servers of its ring, each
/// tested for absence. Servers that turn out to be down pass their shares to the servers after
/// the first N, so the file is spread as widely as when a servermap had left them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_mutable_files_spread_past_servers_found_down() {
    let grid = TestGrid::new(12);
    let alice = client(&grid, "alice");
    // Whatever the ring order, at least two of the first ten servers are down.
    let down = [1usize, 4, 7, 10];
    for i in down {
        grid.break_server(i);
    }
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        let contents = data(5_000, 4);
        let cap = alice.create_mutable_file(format, contents.clone()).await.unwrap();
        let holders = grid.find_mutable_shares(cap.storage_index());
        let servers: std::collections::BTreeSet<usize> = holders.iter().map(|(s, _)| *s).collect();
        let up: std::collections::BTreeSet<usize> = (0..12).filter(|i| !down.contains(i)).collect();
        assert_eq!(servers, up, "{format:?}: every server that is up holds a share");
        let shnums: std::collections::BTreeSet<u16> = holders.iter().map(|(_, n)| *n).collect();
        assert_eq!(shnums, (0..10).collect(), "{format:?}: all ten shares are placed");
        let bob = client(&grid, "bob");
        assert_eq!(file(&bob, &cap).read_all().await.unwrap(), contents);
    }
    // A directory too, and it takes children.
    let dir = alice.create_directory(MutableFormat::Sdmf).await.unwrap();
    dir.set_child(
        "x",
        &Cap::File(FileCap::Lit(filenode::cap::LitCap { data: b"x".to_vec() })),
        None,
        Replace::Always,
    )
    .await
    .unwrap();
    assert_eq!(dir.list().await.unwrap().len(), 1);
}

/// Versions made by the encoder (both formats, empty to three segments) decode through the
/// production retrieve path from k of their N shares (the last three of seven).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_versions_decode_through_retrieve() {
    let key = filenode::mutable::keys::MutableKey::generate().unwrap();
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        let cap = key.write_cap(format).readonly().unwrap();
        for len in [0usize, 1, 55, 1000, 131_072, 131_073, 300_001] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (_, shares) = filenode::mutable::encode::encode_version(&key, format, 3, 7, 5, &plaintext);
            let picked: Vec<(usize, Vec<u8>)> = shares.into_iter().enumerate().skip(4).collect();
            let read = tests::grid::retrieve_from_shares(&cap, &picked).await.unwrap();
            assert!(read == plaintext, "{format:?} {len}: the decoded file differs");
        }
    }
}
