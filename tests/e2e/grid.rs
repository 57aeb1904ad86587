//! Upload and download across a grid of real storage servers, with servers broken, hung or failing
//! mid-upload, shares corrupted or deleted, and happiness out of reach. Every scenario runs twice:
//! with the servers reached in process and over the real HTTPS protocol on 127.0.0.1.

use filenode::cap::FileCap;
use filenode::grid::download::open_chk;
use filenode::grid::upload::{UploadError, UploadParams, upload_bytes};
use tests::grid::{TestGrid, Transport};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

/// Uploads with 4 KiB segments (many segments from small files) and unwraps.
async fn put(grid: &TestGrid, plaintext: &[u8]) -> filenode::grid::upload::UploadResult {
    upload_bytes(
        &grid.entries(),
        &grid.secrets,
        &small_segments(),
        plaintext.to_vec(),
    )
    .await
    .unwrap()
}

fn small_segments() -> UploadParams {
    UploadParams {
        max_segment_size: 4096,
        ..UploadParams::default()
    }
}

async fn read_back(grid: &TestGrid, cap: &FileCap) -> Vec<u8> {
    match cap {
        FileCap::Lit(lit) => lit.data.clone(),
        FileCap::Chk(chk) => {
            let reader = open_chk(&grid.entries(), *chk).await.expect("open");
            reader.read_to_vec(0, chk.size).await.expect("read")
        }
        other => panic!("unexpected cap {other:?}"),
    }
}

async fn files_of_interesting_sizes_round_trip(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let params = small_segments();
    for size in [0usize, 1, 55, 56, 4095, 4096, 4097, 3 * 4096 + 7, 100_000] {
        let plaintext = data(size, size as u8);
        let result = upload_bytes(&grid.entries(), &grid.secrets, &params, plaintext.clone())
            .await
            .unwrap();
        assert_eq!(result.size, size as u64);
        if size <= 55 {
            assert!(matches!(result.cap, FileCap::Lit(_)));
        } else {
            assert_eq!(result.happiness, 10, "size {size}");
            assert_eq!(result.placement.len(), 10);
        }
        assert_eq!(read_back(&grid, &result.cap).await, plaintext, "size {size}");
    }
}

async fn download_survives_n_minus_k_broken_servers(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let plaintext = data(50_000, 3);
    let result = put(&grid, &plaintext).await;
    for i in 0..7 {
        grid.break_server(i);
    }
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
    grid.break_server(7);
    let FileCap::Chk(chk) = result.cap else {
        panic!("CHK expected")
    };
    let err = match open_chk(&grid.entries(), chk).await {
        Ok(reader) => reader.read_to_vec(0, chk.size).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        err.to_string()
            .starts_with("not enough good shares (needed 3, found 2)"),
        "{err}"
    );
}

async fn corrupt_shares_are_routed_around_and_reported(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let plaintext = data(30_000, 5);
    let result = put(&grid, &plaintext).await;
    let FileCap::Chk(chk) = result.cap.clone() else {
        panic!("CHK expected")
    };
    let si = chk.storage_index();
    let holders = grid.find_shares(si);
    assert_eq!(holders.len(), 10);
    // Corrupt a block in the data area of shares 0, 1 and 2 (the ones a reader prefers).
    for &(server, shnum) in holders.iter().filter(|(_, shnum)| *shnum < 3) {
        grid.corrupt_share(server, si, shnum, 0x24 + 10);
    }
    // Each server holding a corrupted share receives an advisory from a reader that reads it. A
    // reader does not wait for a server that lists its shares much later than the others (on a
    // loaded machine the ring's first server sometimes does), and then never reads that share; a
    // later reader does. So up to three fresh readers, each of which must read the file right.
    let reported = |server: usize, shnum: u16| {
        grid.servers[server]
            .server
            .corruption_advisories()
            .unwrap()
            .iter()
            .any(|a| a.shnum == shnum && a.storage_index == si)
    };
    for _ in 0..3 {
        assert_eq!(read_back(&grid, &result.cap).await, plaintext);
        if holders
            .iter()
            .filter(|(_, shnum)| *shnum < 3)
            .all(|&(server, shnum)| reported(server, shnum))
        {
            break;
        }
    }
    for &(server, shnum) in holders.iter().filter(|(_, shnum)| *shnum < 3) {
        assert!(reported(server, shnum), "server {server} share {shnum}");
    }
}

async fn deleted_shares_do_not_matter_while_k_remain(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let plaintext = data(20_000, 9);
    let result = put(&grid, &plaintext).await;
    let FileCap::Chk(chk) = result.cap.clone() else {
        panic!("CHK expected")
    };
    let si = chk.storage_index();
    for (server, shnum) in grid.find_shares(si).into_iter().take(7) {
        grid.delete_share(server, si, shnum);
    }
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
}

async fn unhappy_upload_is_a_clear_error(transport: Transport) {
    let grid = TestGrid::build(5, transport).await;
    let err = upload_bytes(
        &grid.entries(),
        &grid.secrets,
        &UploadParams::default(),
        data(10_000, 1),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            UploadError::NotHappy {
                happy: 7,
                achieved: 5,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("at least 7 servers") && message.contains("only 5"),
        "{message}"
    );

    // Broken servers count against happiness too.
    let grid = TestGrid::build(10, transport).await;
    for i in 0..4 {
        grid.break_server(i);
    }
    let err = upload_bytes(
        &grid.entries(),
        &grid.secrets,
        &UploadParams::default(),
        data(10_000, 1),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, UploadError::NotHappy { achieved: 6, .. }), "{err}");
    assert!(err.to_string().contains("server broken by the test"), "{err}");
}

async fn a_second_upload_reuses_existing_shares(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let plaintext = data(40_000, 2);
    let first = put(&grid, &plaintext).await;
    let used: u64 = grid.servers.iter().map(|s| s.server.status().used_space).sum();
    let second = put(&grid, &plaintext).await;
    assert_eq!(first.cap, second.cap);
    let used_after: u64 = grid.servers.iter().map(|s| s.server.status().used_space).sum();
    assert_eq!(used, used_after, "no share stored twice");
    assert_eq!(second.happiness, 10);
}

async fn few_servers_hold_several_shares_each(transport: Transport) {
    let grid = TestGrid::build(4, transport).await;
    let params = UploadParams {
        happy: 4,
        ..small_segments()
    };
    let plaintext = data(25_000, 4);
    let result = upload_bytes(&grid.entries(), &grid.secrets, &params, plaintext.clone())
        .await
        .unwrap();
    assert_eq!(result.happiness, 4);
    assert_eq!(result.placement.len(), 10);
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
}

async fn hung_servers_are_given_up_on(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let plaintext = data(60_000, 8);
    let result = put(&grid, &plaintext).await;
    // Three servers stop answering: reads time out on them and move to other shares.
    for i in 0..3 {
        grid.hang_server(i);
    }
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
    // An upload with hung servers places its shares on the rest (7 remain: still happy).
    let other = data(30_000, 9);
    let result = put(&grid, &other).await;
    assert!(result.happiness >= 7);
    for i in 0..3 {
        grid.restore_server(i);
    }
    assert_eq!(read_back(&grid, &result.cap).await, other);
}

async fn shares_of_servers_failing_mid_upload_are_placed_elsewhere(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let plaintext = data(400_000, 6);
    let entries = grid.entries();
    // Break two servers shortly after the upload starts writing.
    let breaker = async {
        while grid
            .servers
            .iter()
            .all(|s| s.server.status().uploads_in_progress == 0)
        {
            tokio::task::yield_now().await;
        }
        grid.break_server(0);
        grid.break_server(1);
    };
    let params = UploadParams {
        max_segment_size: 1024,
        ..UploadParams::default()
    };
    let (result, ()) = tokio::join!(
        upload_bytes(&entries, &grid.secrets, &params, plaintext.clone()),
        breaker
    );
    let result = result.unwrap();
    assert!(result.happiness >= 7, "happiness {}", result.happiness);
    grid.restore_server(0);
    grid.restore_server(1);
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
    // The broken servers' partial uploads were aborted or left incomplete: no half share is visible.
    let FileCap::Chk(chk) = result.cap else {
        panic!("CHK expected")
    };
    let holders = grid.find_shares(chk.storage_index());
    assert!(holders.len() >= 7);
}

/// A file whose shares (about 500 KB at 3-of-10) are past the one-request path: the general upload.
const LARGE: usize = 1_500_000;

fn large_segments() -> UploadParams {
    UploadParams {
        max_segment_size: 64 * 1024,
        ..UploadParams::default()
    }
}

/// Asks each server's version, as a connected client's probe does: over HTTPS, that is how the
/// client learns that a server allocates with its writes.
async fn probe_versions(grid: &TestGrid) {
    for entry in grid.entries() {
        entry.client.version().await.expect("version");
    }
}

/// Uploads `plaintext` with [`large_segments`] to `entries` (the grid's servers, as some client
/// ranks them) and unwraps; gives the result and the storage index.
async fn put_large(
    grid: &TestGrid,
    entries: &[filenode::grid::ServerEntry],
    plaintext: &[u8],
) -> (filenode::grid::upload::UploadResult, storage::StorageIndex) {
    let result = upload_bytes(entries, &grid.secrets, &large_segments(), plaintext.to_vec())
        .await
        .unwrap();
    let FileCap::Chk(chk) = result.cap else {
        panic!("CHK expected")
    };
    (result, chk.storage_index())
}

fn uploads_in_progress(grid: &TestGrid) -> Vec<u64> {
    grid.servers
        .iter()
        .map(|s| s.server.status().uploads_in_progress)
        .collect()
}

async fn a_fresh_upload_allocates_with_its_first_writes(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    probe_versions(&grid).await;
    let plaintext = data(LARGE, 11);
    let (result, si) = put_large(&grid, &grid.entries(), &plaintext).await;
    assert_eq!(
        grid.allocation_requests(),
        0,
        "the writes allocate: no allocation round before them"
    );
    assert_eq!(result.happiness, 10);
    let holders = grid.find_shares(si);
    let servers: std::collections::BTreeSet<usize> = holders.iter().map(|(server, _)| *server).collect();
    assert_eq!((holders.len(), servers.len()), (10, 10), "{holders:?}");
    assert_eq!(uploads_in_progress(&grid), vec![0; 10]);
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
}

/// The same file again, three of its shares deleted since: each server is sent its share at once,
/// as the first time; those that hold it say so, and it counts once verified. Only the missing
/// shares are stored, and nothing is allocated first.
async fn a_file_uploaded_again_sends_only_its_missing_shares(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    probe_versions(&grid).await;
    let plaintext = data(LARGE, 12);
    let (first, si) = put_large(&grid, &grid.entries(), &plaintext).await;
    let holders = grid.find_shares(si);
    for &(server, shnum) in holders.iter().take(3) {
        grid.delete_share(server, si, shnum);
    }
    let allocated_before = grid.allocation_requests();
    let (second, _) = put_large(&grid, &grid.entries(), &plaintext).await;
    assert_eq!(second.cap, first.cap);
    assert_eq!(second.happiness, 10);
    assert_eq!(
        grid.allocation_requests(),
        allocated_before,
        "nothing allocated first"
    );
    assert_eq!(
        grid.find_shares(si),
        holders,
        "the deleted shares are back where they were, and none is stored twice"
    );
    assert_eq!(uploads_in_progress(&grid), vec![0; 10]);
    assert_eq!(read_back(&grid, &second.cap).await, plaintext);
}

/// The file's shares are already on the grid, but not where this upload's ring puts them (the
/// client ranks the servers differently): the probes see it, the pass that began writing is
/// called off, and the upload places the file as allocation would, finds every share and stores
/// none again. What the called-off pass opened is aborted: no upload is left open.
async fn an_upload_finding_shares_elsewhere_than_guessed_starts_again_allocating(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    probe_versions(&grid).await;
    let plaintext = data(LARGE, 15);
    let (first, si) = put_large(&grid, &grid.entries(), &plaintext).await;
    let holders = grid.find_shares(si);
    let mut reranked = grid.entries();
    let seeds: Vec<Vec<u8>> = reranked.iter().map(|e| e.permutation_seed.clone()).collect();
    for (i, entry) in reranked.iter_mut().enumerate() {
        entry.permutation_seed = seeds[(i + 3) % seeds.len()].clone();
    }
    let (second, _) = put_large(&grid, &reranked, &plaintext).await;
    assert_eq!(second.cap, first.cap);
    assert_eq!(second.happiness, 10);
    // Had the pass gone on, each server would hold a second share (its guessed one).
    assert_eq!(grid.find_shares(si), holders, "no share stored again");
    assert_eq!(uploads_in_progress(&grid), vec![0; 10], "nothing left open");
    assert_eq!(read_back(&grid, &second.cap).await, plaintext);
}

/// Tahoe servers allocate in a request of their own: the upload asks before it writes.
async fn tahoe_servers_are_asked_before_the_writes(transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    probe_versions(&grid).await;
    for i in 0..10 {
        grid.make_tahoe_like(i);
    }
    let plaintext = data(LARGE, 13);
    let (result, _) = put_large(&grid, &grid.entries(), &plaintext).await;
    assert_eq!(result.happiness, 10);
    assert!(grid.allocation_requests() >= 10, "{}", grid.allocation_requests());
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
}

/// Runs each scenario over both transports, as `in_process::NAME` and `https::NAME`.
macro_rules! over_both_transports {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Transport::InProcess).await
            })*
        }
        mod https {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Transport::Https).await
            })*
        }
    };
}

over_both_transports!(
    files_of_interesting_sizes_round_trip,
    download_survives_n_minus_k_broken_servers,
    corrupt_shares_are_routed_around_and_reported,
    deleted_shares_do_not_matter_while_k_remain,
    unhappy_upload_is_a_clear_error,
    a_second_upload_reuses_existing_shares,
    few_servers_hold_several_shares_each,
    hung_servers_are_given_up_on,
    shares_of_servers_failing_mid_upload_are_placed_elsewhere,
    a_fresh_upload_allocates_with_its_first_writes,
    a_file_uploaded_again_sends_only_its_missing_shares,
    an_upload_finding_shares_elsewhere_than_guessed_starts_again_allocating,
    tahoe_servers_are_asked_before_the_writes,
);

/// A server with room for its guessed share and no more takes it: its own reservation for this
/// upload does not make the probe call it full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_room_for_one_share_takes_its_guessed_share() {
    let grid = TestGrid::with_config(10, |i, config| {
        if i == 4 {
            config.max_space = Some(800_000);
        }
    });
    let plaintext = data(LARGE, 16);
    let (result, si) = put_large(&grid, &grid.entries(), &plaintext).await;
    assert_eq!(grid.allocation_requests(), 0, "the guess held");
    assert_eq!(result.happiness, 10);
    let on_four = grid
        .find_shares(si)
        .into_iter()
        .filter(|(server, _)| *server == 4)
        .count();
    assert_eq!(on_four, 1);
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
}

/// A server in the guess is full: its allocating write is refused, and the upload places its share
/// elsewhere; the full server holds nothing, not even an open upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_guessed_for_a_share_is_passed_over() {
    let grid = TestGrid::with_config(10, |i, config| {
        if i == 4 {
            config.max_space = Some(100_000);
        }
    });
    let plaintext = data(LARGE, 14);
    let (result, si) = put_large(&grid, &grid.entries(), &plaintext).await;
    assert_eq!(result.happiness, 9);
    let holders = grid.find_shares(si);
    assert_eq!(holders.len(), 10, "{holders:?}");
    assert!(holders.iter().all(|(server, _)| *server != 4), "{holders:?}");
    assert_eq!(uploads_in_progress(&grid), vec![0; 10]);
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_servers_keep_their_shares() {
    let mut grid = TestGrid::new(10);
    let plaintext = data(80_000, 12);
    let result = put(&grid, &plaintext).await;
    for i in 0..10 {
        grid.restart_server(i);
    }
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
    // A second upload after the restarts is as good as the first.
    let other = data(30_000, 13);
    let second = put(&grid, &other).await;
    assert_eq!(second.happiness, 10);
    assert_eq!(read_back(&grid, &second.cap).await, other);
}

/// An endless deterministic input (an AES-CTR keystream), seekable like a file, generated on the fly
/// so that the test itself holds no large buffer.
struct Generated {
    size: u64,
    position: u64,
}

impl std::io::Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.size - self.position).min(buf.len() as u64) as usize;
        buf[..n].fill(0);
        filenode::crypto::aes_ctr_at(&[3; 16], self.position, &mut buf[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for Generated {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.position = match to {
            std::io::SeekFrom::Start(n) => n,
            std::io::SeekFrom::End(d) => (self.size as i64 + d) as u64,
            std::io::SeekFrom::Current(d) => (self.position as i64 + d) as u64,
        };
        Ok(self.position)
    }
}

fn peak_memory_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// 1 GiB up and down with flat memory. Slow tier: runs when TESSERA_SLOW_TESTS is set (.ci/run
/// sets it for this test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_round_trip_with_flat_memory() {
    if std::env::var_os("TESSERA_SLOW_TESTS").is_none() {
        eprintln!("note: set TESSERA_SLOW_TESTS=1 to run the 1 GiB test");
        return;
    }
    let grid = TestGrid::new(10);
    let size = 1u64 << 30;
    let before = peak_memory_bytes();
    let input = Generated { size, position: 0 };
    let result = filenode::grid::upload::upload(
        &grid.entries(),
        &grid.secrets,
        &UploadParams::default(),
        input,
        None,
    )
    .await
    .unwrap();
    let FileCap::Chk(chk) = result.cap else {
        panic!("CHK expected")
    };
    let reader = std::sync::Arc::new(open_chk(&grid.entries(), chk).await.unwrap());
    let mut stream = reader.stream_range(0, size).unwrap();
    let mut expected = Generated { size, position: 0 };
    let mut offset = 0u64;
    use futures::StreamExt;
    use std::io::Read;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let mut want = vec![0u8; chunk.len()];
        expected.read_exact(&mut want).unwrap();
        assert!(chunk == want, "mismatch at offset {offset}");
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, size);
    let grown = peak_memory_bytes().saturating_sub(before);
    assert!(
        grown < 200_000_000,
        "peak memory grew by {grown} bytes for a 1 GiB round trip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_stops_encoding() {
    use std::sync::atomic::{AtomicU64, Ordering};
    /// A large input that counts how much of it was read.
    struct Counted(Generated, Arc<AtomicU64>);
    impl std::io::Read for Counted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }
    impl std::io::Seek for Counted {
        fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
            self.0.seek(to)
        }
    }
    use std::sync::Arc;
    let grid = TestGrid::new(10);
    let read = Arc::new(AtomicU64::new(0));
    let size = 512u64 << 20;
    let input = Counted(Generated { size, position: 0 }, Arc::clone(&read));
    let no_convergence = filenode::grid::ClientSecrets {
        convergence: None,
        ..grid.secrets.clone()
    };
    let params = UploadParams {
        max_segment_size: 64 << 10,
        ..UploadParams::default()
    };
    let entries = grid.entries();
    let upload = filenode::grid::upload::upload(&entries, &no_convergence, &params, input, None);
    // Give up on the upload once it is well under way.
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(300), upload).await;
    assert!(outcome.is_err(), "the upload should still have been running");
    let at_drop = read.load(Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let later = read.load(Ordering::Relaxed);
    assert!(
        later < size,
        "the whole input was encoded after the upload was dropped"
    );
    assert!(
        later - at_drop < 32 << 20,
        "encoding went on after the drop: {at_drop} -> {later}"
    );
}

/// `[client] peers.preferred`: the preferred servers come first on the permuted ring, so an
/// upload places its first shares on them, even when the ring alone would give them none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_peers_get_shares_first() {
    use filenode::grid::Grid;
    use filenode::mutable::keys::KeyPool;
    let plaintext = data(30_000, 11);
    let client = |grid: &TestGrid, preferred: &[String]| {
        let client = Grid::with_key_pool(grid.secrets.clone(), small_segments(), KeyPool::new(0));
        client.set_preferred_peers(preferred.iter().cloned());
        client.set_servers(grid.entries());
        client
    };
    // Without preferences: 10 shares on 20 servers go to the first 10 of the ring.
    let plain_grid = TestGrid::new(20);
    let result = client(&plain_grid, &[])
        .upload(std::io::Cursor::new(plaintext.clone()), None)
        .await
        .unwrap();
    let si = result.cap.storage_index().unwrap();
    let entries = plain_grid.entries();
    let ring: Vec<usize> = filenode::grid::permuted_servers(si.as_bytes(), &entries)
        .iter()
        .map(|e| entries.iter().position(|x| x.server_id == e.server_id).unwrap())
        .collect();
    // The ring's last three servers.
    let last: Vec<usize> = ring[17..].to_vec();
    let holders = |grid: &TestGrid| -> std::collections::BTreeMap<usize, Vec<u16>> {
        let mut holders = std::collections::BTreeMap::<usize, Vec<u16>>::new();
        for (server, shnum) in grid.find_shares(si) {
            holders.entry(server).or_default().push(shnum);
        }
        holders
    };
    let plain = holders(&plain_grid);
    assert!(last.iter().all(|i| !plain.contains_key(i)), "{plain:?} {last:?}");

    // With those three preferred (in any order in the setting), they get shares 0, 1 and 2, in
    // ring order, and the other seven shares go to the ring's first seven of the rest.
    let grid = TestGrid::new(20);
    let preferred: Vec<String> = last.iter().rev().map(|i| entries[*i].server_id.clone()).collect();
    let result = client(&grid, &preferred)
        .upload(std::io::Cursor::new(plaintext.clone()), None)
        .await
        .unwrap();
    assert_eq!(result.cap.storage_index(), Some(si));
    assert_eq!(result.happiness, 10);
    let held = holders(&grid);
    for (rank, server) in last.iter().enumerate() {
        assert_eq!(held.get(server), Some(&vec![rank as u16]), "{held:?}");
    }
    let rest: Vec<usize> = ring[..7].to_vec();
    for server in &rest {
        assert!(held.contains_key(server), "{held:?} {rest:?}");
    }
    assert_eq!(held.len(), 10);
    assert_eq!(read_back(&grid, &result.cap).await, plaintext);
}
