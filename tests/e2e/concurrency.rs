//! Writers racing readers, with a checker. Each scenario records every version any writer tried to
//! write (before it tries) and every write that was acknowledged, then asserts:
//! - every read returned a version some writer wrote, or the initial one, whole (never a mix, never
//!   an error that only means "a write was happening");
//! - every acknowledged write is there at the end (the last one for a file, every child for a
//!   directory);
//! - no server received a corruption advisory (readers that met a share mid-rewrite must not
//!   blame it).
//!
//! The default tier runs small numbers of writers and readers for a second or two; with
//! `TESSERA_SLOW_TESTS=1` the same scenarios run with 20 writers and 50 readers, one scenario at
//! a time.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use filenode::cap::{Cap, FileCap, MutableCap, MutableFormat};
use filenode::hashes::sha256d;
use filenode::node::{DirNode, FileNode, Replace};
use tests::grid::{TestGrid, Transport};

// A separate client node of the grid (its own servermaps and caches, as another gateway).
use super::mutable::client;

fn slow() -> bool {
    std::env::var_os("TESSERA_SLOW_TESTS").is_some()
}

/// The long tier's scenarios each load the whole machine: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn contents(len: usize, writer: usize, version: usize) -> Vec<u8> {
    let seed = (writer * 7919 + version * 104_729) as u32;
    (0..len)
        .map(|i| ((i as u32).wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// What the checker knows: the digests of every version written or attempted.
#[derive(Default)]
struct Versions {
    attempted: HashSet<[u8; 32]>,
}

fn advisories(grid: &TestGrid) -> usize {
    grid.servers
        .iter()
        .map(|s| s.server.corruption_advisories().unwrap().len())
        .sum()
}

/// Acknowledged writes: when each started and when it was acknowledged, and the digest of the whole
/// file after it.
type Acknowledged = Vec<(Instant, Instant, [u8; 32])>;

/// Readers never run longer than this, whatever the writers do.
fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// `writers` clients write new versions of one mutable file while `readers` clients read it whole.
/// With `partial`, there is one writer and it changes 1 KiB in place each time (MDMF's partial
/// update: the in-place edit of large shares on the servers); otherwise each writer replaces the
/// whole file.
async fn file_scenario(
    format: MutableFormat,
    size: usize,
    writers: usize,
    readers: usize,
    partial: bool,
    secs: u64,
) {
    let _one = ONE_AT_A_TIME.lock().await;
    let grid = TestGrid::build(10, Transport::Https).await;
    let creator = client(&grid, "creator");
    let initial = contents(size, 999, 0);
    let cap: MutableCap = creator
        .create_mutable_file(format, initial.clone())
        .await
        .unwrap();
    let versions = Arc::new(Mutex::new(Versions::default()));
    versions.lock().unwrap().attempted.insert(sha256d(&initial));
    let acknowledged: Arc<Mutex<Acknowledged>> = Arc::new(Mutex::new(Vec::new()));
    // Writes that were told they lost a race: (began, told, digest).
    let unknown: Arc<Mutex<Acknowledged>> = Arc::new(Mutex::new(Vec::new()));
    let stop = deadline(secs);

    let mut writer_tasks = Vec::new();
    for w in 0..writers {
        let node = FileNode::new(&client(&grid, &format!("writer{w}")), FileCap::Mutable(cap));
        let (versions, acknowledged, unknown) = (
            Arc::clone(&versions),
            Arc::clone(&acknowledged),
            Arc::clone(&unknown),
        );
        let mut current = initial.clone();
        writer_tasks.push(tokio::spawn(async move {
            let (mut ok, mut conflicts) = (0usize, 0usize);
            let mut v = 1;
            while Instant::now() < stop {
                let began = Instant::now();
                let (next, result) = if partial {
                    let offset = (v * 7919) % (size - 1024);
                    let patch = contents(1024, w, v);
                    let mut next = current.clone();
                    next[offset..offset + 1024].copy_from_slice(&patch);
                    versions.lock().unwrap().attempted.insert(sha256d(&next));
                    (next, node.write_at(offset as u64, patch).await)
                } else {
                    let next = contents(size, w, v);
                    versions.lock().unwrap().attempted.insert(sha256d(&next));
                    (next.clone(), node.overwrite_bytes(next).await)
                };
                v += 1;
                match result {
                    Ok(()) => {
                        acknowledged
                            .lock()
                            .unwrap()
                            .push((began, Instant::now(), sha256d(&next)));
                        current = next;
                        ok += 1;
                    }
                    // Two writers of one file without coordination: the loser is told, and its
                    // version may or may not have landed (on the servers it reached first; a
                    // later write may build on it): the checker allows it while it lasted.
                    Err(filenode::node::NodeError::UncoordinatedWrite) if writers > 1 => {
                        unknown
                            .lock()
                            .unwrap()
                            .push((began, Instant::now(), sha256d(&next)));
                        conflicts += 1;
                    }
                    Err(e) => panic!("writer {w}: {e}"),
                }
            }
            (ok, conflicts)
        }));
    }
    let mut reader_tasks = Vec::new();
    for r in 0..readers {
        let node = FileNode::new(
            &client(&grid, &format!("reader{r}")),
            FileCap::Mutable(cap.readonly().unwrap()),
        );
        let versions = Arc::clone(&versions);
        reader_tasks.push(tokio::spawn(async move {
            let mut reads = 0usize;
            while Instant::now() < stop {
                let got = node
                    .read_all()
                    .await
                    .unwrap_or_else(|e| panic!("reader {r}: {e}"));
                assert_eq!(got.len(), size, "reader {r}: a read of the wrong length");
                assert!(
                    versions.lock().unwrap().attempted.contains(&sha256d(&got)),
                    "reader {r}: read a version nobody wrote (torn or corrupt)"
                );
                reads += 1;
            }
            reads
        }));
    }
    let mut written = 0;
    for task in writer_tasks {
        let (ok, conflicts) = task.await.unwrap();
        written += ok;
        eprintln!("{format:?}: a writer: {ok} acknowledged, {conflicts} lost to another writer");
    }
    let mut reads = 0;
    for task in reader_tasks {
        reads += task.await.unwrap();
    }
    eprintln!("{format:?} size {size}: {written} writes acknowledged, {reads} whole reads");
    assert!(written > 0 && reads > 0, "the scenario did nothing");
    // A fresh client reads the last acknowledged write: one that no other acknowledged write
    // began after (writes that overlapped in time may have landed in either order; one begun
    // after another's acknowledgement is ordered after it), or a write whose outcome its writer
    // was not told (a lost race) that was still under way when the last acknowledged one began:
    // it may have landed after that one. A write whose outcome was reported before the last
    // acknowledged one began cannot be the last.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let last_began = acknowledged.iter().map(|(began, _, _)| *began).max().unwrap();
    let candidates: HashSet<[u8; 32]> = acknowledged
        .iter()
        .chain(unknown.lock().unwrap().iter())
        .filter(|(_, done, _)| *done >= last_began)
        .map(|(_, _, digest)| *digest)
        .collect();
    let fresh = FileNode::new(&client(&grid, "checker"), FileCap::Mutable(cap));
    assert!(
        candidates.contains(&sha256d(&fresh.read_all().await.unwrap())),
        "the last acknowledged write is lost ({} candidates)",
        candidates.len()
    );
    assert_eq!(
        advisories(&grid),
        0,
        "readers blamed shares that were only being rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdmf_readers_racing_one_partial_writer_read_whole_versions() {
    let (readers, secs) = if slow() { (50, 20) } else { (4, 3) };
    file_scenario(MutableFormat::Mdmf, 1_500_000, 1, readers, true, secs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_readers_racing_several_writers_read_whole_versions() {
    let (writers, readers, secs) = if slow() { (20, 50, 20) } else { (2, 3, 2) };
    file_scenario(MutableFormat::Sdmf, 20_000, writers, readers, false, secs).await;
    file_scenario(MutableFormat::Mdmf, 300_000, writers, readers, false, secs).await;
}

/// `writers` clients each add `adds` children to one directory while `readers` clients list it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_add_to_a_shared_directory_succeeds_and_listings_never_fail() {
    let (writers, adds, readers) = if slow() { (20, 20, 50) } else { (6, 4, 3) };
    let _one = ONE_AT_A_TIME.lock().await;
    let grid = TestGrid::build(10, Transport::Https).await;
    let creator = client(&grid, "creator");
    let dir = creator.create_directory(MutableFormat::Sdmf).await.unwrap();
    let dircap = dir.cap().clone();
    let child_cap = Cap::File(
        creator
            .upload_bytes(b"a small child file".to_vec())
            .await
            .unwrap(),
    );
    let acknowledged: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let writers_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();

    let mut writer_tasks = Vec::new();
    for w in 0..writers {
        let node = DirNode::new(&client(&grid, &format!("writer{w}")), dircap.clone());
        let (acknowledged, child_cap, done) = (
            Arc::clone(&acknowledged),
            child_cap.clone(),
            Arc::clone(&writers_done),
        );
        writer_tasks.push(tokio::spawn(async move {
            let mut longest = Duration::ZERO;
            for a in 0..adds {
                let name = format!("w{w:02}-child{a:02}");
                let began = Instant::now();
                node.set_child(&name, &child_cap, None, Replace::Always)
                    .await
                    .unwrap_or_else(|e| panic!("add {name}: {e}"));
                longest = longest.max(began.elapsed());
                acknowledged.lock().unwrap().insert(name, Instant::now());
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            longest
        }));
    }
    let mut reader_tasks = Vec::new();
    for r in 0..readers {
        let node = DirNode::new(&client(&grid, &format!("reader{r}")), dircap.readonly().unwrap());
        let (acknowledged, done) = (Arc::clone(&acknowledged), Arc::clone(&writers_done));
        reader_tasks.push(tokio::spawn(async move {
            let mut listings = 0usize;
            while done.load(std::sync::atomic::Ordering::SeqCst) < writers {
                // Children acknowledged before this listing began must all be in it.
                let before: BTreeSet<String> = acknowledged.lock().unwrap().keys().cloned().collect();
                let names: BTreeSet<String> = node
                    .list()
                    .await
                    .unwrap_or_else(|e| panic!("reader {r}: listing failed: {e}"))
                    .into_iter()
                    .map(|c| c.name)
                    .collect();
                let missing: Vec<&String> = before.difference(&names).collect();
                assert!(
                    missing.is_empty(),
                    "reader {r}: acknowledged children missing: {missing:?}"
                );
                listings += 1;
            }
            listings
        }));
    }
    let mut longest = Duration::ZERO;
    for task in writer_tasks {
        longest = longest.max(task.await.unwrap());
    }
    let mut listings = 0;
    for task in reader_tasks {
        listings += task.await.unwrap();
    }
    let names: BTreeSet<String> = DirNode::new(&client(&grid, "checker"), dircap)
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    let expected: BTreeSet<String> = acknowledged.lock().unwrap().keys().cloned().collect();
    assert_eq!(expected.len(), writers * adds);
    assert_eq!(
        names, expected,
        "the directory does not hold exactly the acknowledged children"
    );
    eprintln!(
        "{} adds by {writers} writers, all acknowledged, in {:.1} s (the longest add {:.1} s); \
         {listings} listings by {readers} readers",
        writers * adds,
        started.elapsed().as_secs_f64(),
        longest.as_secs_f64()
    );
    assert_eq!(
        advisories(&grid),
        0,
        "readers blamed shares that were only being rewritten"
    );
}
