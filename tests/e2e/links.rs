//! A grid whose servers are each behind an emulated network link (`TestGrid::with_links`,
//! `storage::testing::EmulatedLink`): the real HTTPS storage protocol over a 20 ms round trip and
//! a capped rate, with servers partitioned from the client mid-download (blackholed: connections
//! stay open and nothing is ever answered, as when a route disappears).

use std::sync::Arc;
use std::time::{Duration, Instant};

use filenode::cap::FileCap;
use filenode::grid::ServerEntry;
use filenode::grid::download::open_chk;
use filenode::grid::upload::{UploadParams, upload_bytes};
use filenode::immutable::DownloadError;
use futures::StreamExt;
use storage::testing::LinkConfig;
use tests::grid::TestGrid;

/// The configured per-request ceiling (Tahoe's `timeout.disconnect`; the production default is
/// 30 s): a partition must cost a download no more than about this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The partitioned file: 12 MiB, or the 256 MiB in the slow tier (`TESSERA_SLOW_TESTS`).
fn size() -> usize {
    if std::env::var_os("TESSERA_SLOW_TESTS").is_some() {
        256 << 20
    } else {
        12 << 20
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

async fn grid_with_file() -> (TestGrid, Vec<ServerEntry>, filenode::cap::ChkCap, Vec<u8>) {
    let grid = TestGrid::with_links(
        10,
        LinkConfig::with_rtt_and_rate(Duration::from_millis(20), Some(80.0)),
    )
    .await;
    let entries: Vec<ServerEntry> = grid
        .entries()
        .into_iter()
        .map(|mut e| {
            e.request_timeout = REQUEST_TIMEOUT;
            e
        })
        .collect();
    let plain = data(size());
    let uploaded = upload_bytes(&entries, &grid.secrets, &UploadParams::default(), plain.clone())
        .await
        .expect("upload through the links");
    let FileCap::Chk(cap) = uploaded.cap else {
        panic!("a CHK cap was expected")
    };
    assert_eq!((cap.needed, cap.total), (3, 10));
    // One share per server.
    let mut holders = servers_holding(&grid, cap);
    holders.dedup();
    assert_eq!(holders.len(), 10);
    (grid, entries, cap, plain)
}

/// The server of each of `cap`'s shares, sorted (a server holding two shares shows twice).
fn servers_holding(grid: &TestGrid, cap: filenode::cap::ChkCap) -> Vec<usize> {
    let mut holders: Vec<usize> = grid
        .find_shares(cap.storage_index())
        .iter()
        .map(|(s, _)| *s)
        .collect();
    holders.sort_unstable();
    holders
}

/// The whole file, read through a fresh reader.
async fn read_whole(entries: &[ServerEntry], cap: filenode::cap::ChkCap) -> Vec<u8> {
    let reader = Arc::new(open_chk(entries, cap).await.expect("open"));
    Box::pin(reader.stream_range(0, cap.size).expect("range"))
        .map(|piece| piece.expect("read"))
        .collect::<Vec<_>>()
        .await
        .concat()
}

/// A grid client of `grid`'s servers (no key-generating thread: its keys are made when asked).
/// Waits until no link has carried anything for 200 ms (at most 5 s): what an earlier step left
/// going (a connection the client's pool closes, with TLS's close alerts, or a read's late
/// answers) then does not count against the step measured next.
async fn settle(grid: &TestGrid, links: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut last: Vec<_> = (0..links).map(|i| grid.link(i).stats()).collect();
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now: Vec<_> = (0..links).map(|i| grid.link(i).stats()).collect();
        if now == last {
            return;
        }
        last = now;
    }
}

fn client_of(grid: &TestGrid) -> Arc<filenode::grid::Grid> {
    let client = Arc::new(filenode::grid::Grid::with_key_pool(
        grid.secrets.clone(),
        UploadParams::default(),
        filenode::mutable::keys::KeyPool::new(0),
    ));
    client.set_servers(grid.entries());
    client
}

/// What a download partitioned from servers did after the partition.
struct AfterPartition {
    /// The time from the partition to the end (the last byte, or the error).
    elapsed: Duration,
    /// The longest wait for the next piece of the file after the partition.
    longest_stall: Duration,
}

/// Starts a download, reads a quarter of the file, then blackholes the `count` servers that have
/// sent the most (those the download is using) and reads on. Returns what was read (or the error)
/// and how the download fared after the partition.
async fn partition_mid_download(
    grid: &TestGrid,
    entries: &[ServerEntry],
    cap: filenode::cap::ChkCap,
    count: usize,
) -> (Result<Vec<u8>, DownloadError>, AfterPartition) {
    let before: Vec<u64> = (0..10).map(|i| grid.link(i).stats().bytes_down).collect();
    let reader = Arc::new(open_chk(entries, cap).await.expect("open"));
    let mut stream = Box::pin(reader.stream_range(0, cap.size).expect("range"));
    let mut read = Vec::new();
    let mut partitioned = None;
    let mut longest_stall = Duration::ZERO;
    loop {
        if partitioned.is_none() && read.len() as u64 >= cap.size / 4 {
            let mut busiest: Vec<usize> = (0..10).collect();
            busiest.sort_by_key(|&i| std::cmp::Reverse(grid.link(i).stats().bytes_down - before[i]));
            for &i in &busiest[..count] {
                grid.link(i).set_blackhole(true);
            }
            println!(
                "partitioned from {count} servers after {} MiB: {:?}",
                read.len() >> 20,
                &busiest[..count]
            );
            partitioned = Some(Instant::now());
        }
        let waited = Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(120), stream.next()).await;
        if partitioned.is_some() {
            longest_stall = longest_stall.max(waited.elapsed());
        }
        match next {
            Err(_) => panic!("the download hung for 120 s after the partition"),
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => read.extend_from_slice(&chunk),
            Ok(Some(Err(e))) => {
                let elapsed = partitioned.expect("partitioned before the error").elapsed();
                return (
                    Err(e),
                    AfterPartition {
                        elapsed,
                        longest_stall,
                    },
                );
            }
        }
    }
    let elapsed = partitioned.expect("partitioned before the end").elapsed();
    (
        Ok(read),
        AfterPartition {
            elapsed,
            longest_stall,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_partitioned_from_7_of_10_servers_finishes() {
    let (grid, entries, cap, plain) = grid_with_file().await;
    let (result, after) = partition_mid_download(&grid, &entries, cap, 7).await;
    println!(
        "partitioned from 7 of 10 servers: finished {:.2} s after the partition, longest stall {:.2} s",
        after.elapsed.as_secs_f64(),
        after.longest_stall.as_secs_f64()
    );
    let read = result.expect("3 servers still hold 3 distinct shares");
    assert!(read == plain, "the download differs from the upload");
    assert!(
        after.longest_stall < 3 * REQUEST_TIMEOUT,
        "failing over stalled the download {:?} with a {REQUEST_TIMEOUT:?} request timeout",
        after.longest_stall
    );
    // The rest comes from the three links left, 10 MB/s each: allow half that.
    let rest = Duration::from_secs_f64(0.75 * cap.size as f64 / 15e6);
    assert!(
        after.elapsed < 3 * REQUEST_TIMEOUT + rest,
        "finishing took {:?} after the partition",
        after.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_partitioned_from_8_of_10_servers_fails_in_bounded_time() {
    let (grid, entries, cap, _) = grid_with_file().await;
    let (result, after) = partition_mid_download(&grid, &entries, cap, 8).await;
    let elapsed = after.elapsed;
    let error = result.expect_err("2 shares cannot rebuild a 3-of-10 file");
    println!(
        "partitioned from 8 of 10 servers: failed {:.2} s after the partition: {error}",
        elapsed.as_secs_f64()
    );
    match &error {
        DownloadError::NotEnoughShares { needed, found, .. } => {
            assert_eq!(*needed, 3);
            assert!(*found <= 2, "found {found}");
        }
        other => panic!("unexpected error: {other}"),
    }
    let text = error.to_string();
    assert!(text.contains("needed 3") && text.contains("found"), "{text}");
    assert!(
        elapsed < 3 * REQUEST_TIMEOUT,
        "giving up took {elapsed:?} with a {REQUEST_TIMEOUT:?} request timeout"
    );
}

/// A grid of ten servers at 20 ms and 80 Mbit/s, server 0's link slowed to 1 Mbit/s.
async fn grid_with_a_slow_server() -> (TestGrid, Vec<ServerEntry>) {
    let grid = TestGrid::with_links(
        10,
        LinkConfig::with_rtt_and_rate(Duration::from_millis(20), Some(80.0)),
    )
    .await;
    grid.link(0).set_config(LinkConfig::with_rtt_and_rate(
        Duration::from_millis(20),
        Some(1.0),
    ));
    // The production ceiling: a write of a 1 MiB segment's block takes 3 s on the slow link.
    let entries = grid
        .entries()
        .into_iter()
        .map(|mut e| {
            e.request_timeout = Duration::from_secs(30);
            e
        })
        .collect();
    (grid, entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_leaves_a_slow_server_behind_once_the_others_are_happy() {
    let (grid, entries) = grid_with_a_slow_server().await;
    let slow = entries[0].name();
    let plain = data(12 << 20);
    let started = Instant::now();
    let uploaded = upload_bytes(&entries, &grid.secrets, &UploadParams::default(), plain.clone())
        .await
        .expect("the upload finishes without the slow server");
    let elapsed = started.elapsed();
    // The slow server's 4 MiB share alone needs 34 s at 1 Mbit/s; the others' shares about 1 s.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    assert_eq!(uploaded.stragglers, vec![slow.clone()]);
    let unplaced = uploaded.unplaced_shares();
    assert_eq!(unplaced.len(), 1, "the slow server's share is reported unplaced");
    assert!(!uploaded.placement.contains_key(&unplaced[0]));
    assert!(
        uploaded.placement.values().flatten().all(|name| *name != slow),
        "{:?}",
        uploaded.placement
    );
    assert_eq!(uploaded.happiness, 9);
    let FileCap::Chk(cap) = uploaded.cap else {
        panic!("a CHK cap was expected")
    };
    // Nine shares are stored whole (the slow server's partial bucket is not a share).
    let mut holders = servers_holding(&grid, cap);
    holders.dedup();
    assert_eq!(holders.len(), 9, "{holders:?}");
    assert!(!holders.contains(&0));
    // The file reads back from the nine.
    grid.link(0).set_config(LinkConfig::unlimited());
    let read = read_whole(&entries, cap).await;
    assert!(read == plain, "the file reads back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_waits_for_a_slow_server_that_happiness_needs() {
    let (grid, entries) = grid_with_a_slow_server().await;
    let params = UploadParams {
        happy: 10,
        ..UploadParams::default()
    };
    // 1 MiB: the slow server's share takes about 3 s.
    let uploaded = upload_bytes(&entries, &grid.secrets, &params, data(1 << 20))
        .await
        .expect("the upload waits for the slow server");
    assert!(uploaded.stragglers.is_empty(), "{:?}", uploaded.stragglers);
    assert!(uploaded.unplaced_shares().is_empty());
    assert_eq!(uploaded.happiness, 10);
    assert!(
        uploaded
            .placement
            .values()
            .flatten()
            .any(|name| *name == entries[0].name())
    );
}

/// A new directory costs one request per server (its shares written at once, nothing asked
/// first), and listing a healthy directory at most two (the listing and, beside it, the share
/// the ring puts there): counted by the links, over warm connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_directory_is_one_request_per_server() {
    let grid = TestGrid::with_links(10, LinkConfig::with_rtt_and_rate(Duration::from_millis(2), None)).await;
    let client = client_of(&grid);
    // Warm the connections.
    let first = client
        .create_directory(filenode::cap::MutableFormat::Sdmf)
        .await
        .expect("mkdir");
    first.list().await.expect("list");
    let before: Vec<_> = (0..10).map(|i| grid.link(i).stats()).collect();
    let dir = client
        .create_directory(filenode::cap::MutableFormat::Sdmf)
        .await
        .expect("mkdir");
    let made: Vec<_> = (0..10).map(|i| grid.link(i).stats().since(&before[i])).collect();
    assert!(
        made.iter().all(|s| s.connections == 0),
        "warm connections: {made:?}"
    );
    assert!(
        made.iter().all(|s| s.requests == 1),
        "one request per server: {made:?}"
    );
    let fresh = client_of(&grid);
    let reader = filenode::node::DirNode::new(&fresh, dir.cap().clone());
    assert!(reader.list().await.expect("list").is_empty());
    let before: Vec<_> = (0..10).map(|i| grid.link(i).stats()).collect();
    assert!(reader.list().await.expect("list").is_empty());
    let listed: Vec<_> = (0..10).map(|i| grid.link(i).stats().since(&before[i])).collect();
    assert!(
        listed.iter().all(|s| s.connections == 0 && s.requests <= 2),
        "a listing and the guessed share: {listed:?}"
    );
}

/// A small file costs one request per server: each share goes whole (Tessera's one-request
/// allocation, write and close), share r to the ring's r-th server. Sent again, each server finds
/// its share byte for byte the same, again in one request, and the file reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_is_one_request_per_server() {
    let grid = TestGrid::with_links(10, LinkConfig::with_rtt_and_rate(Duration::from_millis(2), None)).await;
    let entries = grid.entries();
    // The version says a server is Tessera's (and warms the connections).
    for entry in &entries {
        entry.client.version().await.expect("version");
    }
    let plain = data(5000);
    for round in 0..2 {
        // The previous round's read-back may still be closing a connection.
        settle(&grid, 10).await;
        let before: Vec<_> = (0..10).map(|i| grid.link(i).stats()).collect();
        let uploaded = upload_bytes(&entries, &grid.secrets, &UploadParams::default(), plain.clone())
            .await
            .expect("upload a small file");
        let made: Vec<_> = (0..10).map(|i| grid.link(i).stats().since(&before[i])).collect();
        assert!(
            made.iter().all(|s| s.requests == 1 && s.connections == 0),
            "round {round}: one request per server on warm connections: {made:?}"
        );
        assert_eq!(uploaded.happiness, 10, "round {round}: {uploaded:?}");
        assert!(uploaded.unplaced_shares().is_empty() && uploaded.stragglers.is_empty());
        let FileCap::Chk(cap) = uploaded.cap else {
            panic!("a CHK cap was expected")
        };
        let holders = servers_holding(&grid, cap);
        assert_eq!(
            holders,
            (0..10).collect::<Vec<_>>(),
            "round {round}: one share per server"
        );
        let read = read_whole(&entries, cap).await;
        assert!(read == plain, "round {round}: the file reads back");
    }
}

/// Adding a small file to a directory this client wrote last is two requests per server: the
/// file's share, sent whole, and the directory's new version (its primary first, then every other
/// share at once, from the map of the client's own last write, with no servermap read). Once
/// another client has written the directory, the first write tests against a stale map and fails
/// at the primary having changed nothing, and the retry (from a servermap read from the servers)
/// lands the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_small_file_is_two_requests_per_server() {
    let grid = TestGrid::with_links(10, LinkConfig::with_rtt_and_rate(Duration::from_millis(2), None)).await;
    let client = client_of(&grid);
    client.probe().await;
    let dir = client
        .create_directory(filenode::cap::MutableFormat::Sdmf)
        .await
        .expect("mkdir");
    let add = |name: &'static str, seed: usize| {
        let client = Arc::clone(&client);
        let dir = dir.clone();
        async move {
            let body: Vec<u8> = data(1024 + seed);
            let uploaded = client
                .upload(std::io::Cursor::new(body), None)
                .await
                .expect("upload");
            dir.set_child(
                name,
                &filenode::cap::Cap::File(uploaded.cap),
                None,
                filenode::node::Replace::Always,
            )
            .await
            .expect("link")
        }
    };
    add("first", 0).await;
    let before: Vec<_> = (0..10).map(|i| grid.link(i).stats()).collect();
    add("second", 1).await;
    let made: Vec<_> = (0..10).map(|i| grid.link(i).stats().since(&before[i])).collect();
    assert!(
        made.iter().all(|s| s.requests == 2 && s.connections == 0),
        "a whole share and a directory share per server: {made:?}"
    );
    // Another client changes the directory; this one's next add starts from a stale map.
    let other = client_of(&grid);
    let theirs = filenode::node::DirNode::new(&other, dir.cap().clone());
    theirs
        .set_child(
            "theirs",
            &filenode::cap::Cap::File(filenode::cap::FileCap::Lit(filenode::cap::LitCap {
                data: b"theirs".to_vec(),
            })),
            None,
            filenode::node::Replace::Always,
        )
        .await
        .expect("the other client's change");
    add("third", 2).await;
    let mut names: Vec<String> = child_names(&other, &dir).await;
    names.sort();
    assert_eq!(names, ["first", "second", "theirs", "third"]);
}

/// The names in `dir` as `client` lists them.
async fn child_names(client: &Arc<filenode::grid::Grid>, dir: &filenode::node::DirNode) -> Vec<String> {
    filenode::node::DirNode::new(client, dir.cap().clone())
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|child| child.name)
        .collect()
}

/// Warming a client opens connections ahead of use, up to the number asked for, and requests
/// that then run at once open none of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmed_connections_are_ready_for_parallel_requests() {
    let grid = TestGrid::with_links(1, LinkConfig::with_rtt_and_rate(Duration::from_millis(20), None)).await;
    let entry = grid.entries().remove(0);
    entry.client.version().await.expect("version");
    let before = grid.link(0).stats();
    entry.client.warm(4);
    entry.client.warm(4);
    let started = Instant::now();
    while grid.link(0).stats().since(&before).connections < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "warm opened no connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let any extra connection show (there must be none: one was idle, three were opened).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(grid.link(0).stats().since(&before).connections, 3);
    let warmed = grid.link(0).stats();
    let si = storage::StorageIndex([7; 16]);
    let lists = futures::future::join_all(
        (0..4).map(|_| entry.client.list_shares(storage::ShareKind::Immutable, si)),
    )
    .await;
    assert!(lists.iter().all(Result::is_ok), "{lists:?}");
    let made = grid.link(0).stats().since(&warmed);
    assert_eq!((made.connections, made.requests), (0, 4), "{made:?}");
}

/// A download does not keep waiting for a server far slower than the others: once the other
/// blocks of a segment are in, a slow block read is covered by a spare share's, and a share that
/// had to be covered is not chosen again while others answer (counted as requests on its link).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_leaves_a_slow_share_behind() {
    let (grid, entries, cap, plain) = grid_with_file().await;
    // The server of share 0, which a reader prefers (shares 0..k need no decoding).
    let (slow, _) = grid
        .find_shares(cap.storage_index())
        .into_iter()
        .find(|(_, shnum)| *shnum == 0)
        .expect("share 0 is placed");
    grid.link(slow).set_config(LinkConfig::with_rtt_and_rate(
        Duration::from_millis(20),
        Some(1.0),
    ));
    let before = grid.link(slow).stats();
    let started = Instant::now();
    let read = read_whole(&entries, cap).await;
    let elapsed = started.elapsed();
    assert!(read == plain, "the file reads back");
    let used = grid.link(slow).stats().since(&before);
    eprintln!("12 MiB with share 0 behind 1 Mbit/s: {elapsed:?}, {used:?}");
    // Its connection, listing and guessed reads take about 6 requests; asked for a block of each
    // of the 12 segments it would take 18 or more. (Runs here took 6 or 12.)
    assert!(
        used.requests < 18,
        "the slow share was asked for every segment: {used:?}"
    );
}

/// A large upload's connections open while its body still arrives: once the web spool holds a
/// mebibyte, every server of a grid of at most 2N is warmed to its share of the writes in flight
/// (`Grid::warm_for_upload`), so the first writes do not wait for TLS handshakes once the storage
/// index is known. The upload then completes and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_web_upload_opens_its_connections_while_the_body_arrives() {
    use axum::body::Body;
    use axum::http::Request;
    use futures::SinkExt;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let grid = TestGrid::with_links(10, LinkConfig::with_rtt_and_rate(Duration::from_millis(2), None)).await;
    let client = client_of(&grid);
    client.probe().await;
    settle(&grid, 10).await;
    let app = frontends::web::router(frontends::web::WebState::new(Arc::clone(&client), "test"));
    let contents = data(3 << 20);
    let (mut body, chunks) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let request = Request::put("/uri").body(Body::from_stream(chunks)).unwrap();
    let upload = tokio::spawn(app.clone().oneshot(request));
    let before: Vec<_> = (0..10).map(|i| grid.link(i).stats()).collect();
    // The first 2 MiB, then nothing until every link has seen new connections.
    for piece in contents[..2 << 20].chunks(256 << 10) {
        body.send(Ok(bytes::Bytes::copy_from_slice(piece))).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let opened: Vec<u64> = (0..10)
            .map(|i| grid.link(i).stats().since(&before[i]).connections)
            .collect();
        // The probe left two or three idle on each; warming brings each to eight.
        if opened.iter().all(|n| *n >= 4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections opened while the body arrives, per server: {opened:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!upload.is_finished(), "the body is not complete yet");
    for piece in contents[2 << 20..].chunks(256 << 10) {
        body.send(Ok(bytes::Bytes::copy_from_slice(piece))).await.unwrap();
    }
    drop(body);
    let response = upload.await.unwrap().unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    let cap = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let filenode::cap::Cap::File(FileCap::Chk(cap)) = filenode::cap::Cap::parse(cap.trim()).unwrap() else {
        panic!("not a CHK cap: {cap}");
    };
    assert!(
        read_whole(&grid.entries(), cap).await == contents,
        "the file reads back"
    );
}
