//! Writers racing readers through a real `tessera devgrid`'s web API, with curl as the client and a
//! checker: an MDMF file updated in place 1 KiB at a time while readers GET it whole, and a
//! directory that several writers add children to while readers list it with `?t=json`. Asserts
//! that every GET is a complete 200 of a version some writer wrote (curl's exit status 0, so no
//! body cut short of its Content-Length), every listing is a 200 holding every child acknowledged
//! before it began, every add succeeds, and no storage node received a corruption advisory.
//! `TESSERA_SLOW_TESTS=1` runs it with 20 writers and 50 readers.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

struct Devgrid {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Devgrid {
    fn start(dir: &Path, servers: usize) -> Devgrid {
        for _ in 0..3 {
            let web_port = common::free_port();
            if let Some(child) = common::start_devgrid(dir, servers, web_port) {
                return Devgrid {
                    child,
                    dir: dir.to_path_buf(),
                    base: format!("http://127.0.0.1:{web_port}"),
                };
            }
            // The port was taken meanwhile: try again in a fresh directory.
            let _ = std::fs::remove_dir_all(dir);
        }
        panic!("devgrid did not start");
    }

    /// Every corruption advisory any storage node received.
    fn advisories(&self) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let reports = entry
                .unwrap()
                .path()
                .join("storage")
                .join("corruption-advisories");
            if let Ok(reports) = std::fs::read_dir(reports) {
                found.extend(reports.map(|r| r.unwrap().file_name().to_string_lossy().into_owned()));
            }
        }
        found
    }
}

impl Drop for Devgrid {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn slow() -> bool {
    std::env::var_os("TESSERA_SLOW_TESTS").is_some()
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .output()
        .unwrap()
}

/// A successful curl's body; anything else panics with what curl said.
fn curl_ok(args: &[&str]) -> Vec<u8> {
    let out = curl(&["-f"].iter().chain(args).copied().collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "curl {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    filenode::hashes::sha256d(bytes)
}

fn contents(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i as u32)
                .wrapping_add(seed as u32 * 7919)
                .wrapping_mul(2_654_435_761)
                >> 13) as u8
        })
        .collect()
}

#[test]
fn devgrid_readers_racing_writers_see_whole_versions_and_every_add_lands() {
    let (readers, dir_writers, adds, secs) = if slow() { (50, 20, 20, 30) } else { (5, 4, 4, 4) };
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 5);
    let base = grid.base.clone();

    // An MDMF file of 1.5 MB, one writer changing 1 KiB of it in place each time.
    const SIZE: usize = 1_500_000;
    let initial = contents(SIZE, 0);
    let input = scratch.path().join("initial");
    std::fs::write(&input, &initial).unwrap();
    let cap = String::from_utf8(curl_ok(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", input.display()),
        &format!("{base}/uri?format=MDMF"),
    ]))
    .unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&curl_ok(&[&format!("{base}/uri/{cap}?t=json")])).unwrap();
    let readcap = info[1]["ro_uri"].as_str().unwrap().to_owned();
    let attempted = Arc::new(Mutex::new(HashSet::from([digest(&initial)])));
    let stop = Instant::now() + Duration::from_secs(secs);

    let writer = {
        let (attempted, base, cap, dir) = (
            Arc::clone(&attempted),
            base.clone(),
            cap.clone(),
            scratch.path().to_owned(),
        );
        std::thread::spawn(move || {
            let mut current = initial;
            let mut written = 0;
            while Instant::now() < stop {
                let offset = (written * 7919 + 1) % (SIZE - 1024);
                let patch = contents(1024, written + 1);
                current[offset..offset + 1024].copy_from_slice(&patch);
                attempted.lock().unwrap().insert(digest(&current));
                let file = dir.join("patch");
                std::fs::write(&file, &patch).unwrap();
                curl_ok(&[
                    "-X",
                    "PUT",
                    "--data-binary",
                    &format!("@{}", file.display()),
                    &format!("{base}/uri/{cap}?offset={offset}"),
                ]);
                written += 1;
            }
            (written, digest(&current))
        })
    };
    let reader_threads: Vec<_> = (0..readers)
        .map(|r| {
            let (attempted, url) = (Arc::clone(&attempted), format!("{base}/uri/{readcap}"));
            std::thread::spawn(move || {
                let mut reads = 0;
                while Instant::now() < stop {
                    // -f: any status but 2xx fails; a body cut short is curl's exit status 18.
                    let out = curl(&["-f", &url]);
                    assert!(
                        out.status.success(),
                        "reader {r}: {} after {} bytes: {}",
                        out.status,
                        out.stdout.len(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert_eq!(out.stdout.len(), SIZE, "reader {r}");
                    assert!(
                        attempted.lock().unwrap().contains(&digest(&out.stdout)),
                        "reader {r}: a version nobody wrote"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let (written, last) = writer.join().unwrap();
    let reads: usize = reader_threads.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("MDMF: {written} in-place writes acknowledged, {reads} whole GETs by {readers} readers");
    assert!(written > 0 && reads > 0);
    assert_eq!(
        digest(&curl_ok(&[&format!("{base}/uri/{cap}")])),
        last,
        "the last write is lost"
    );

    // A directory: writers add children while readers list it.
    let dircap = String::from_utf8(curl_ok(&["-X", "POST", &format!("{base}/uri?t=mkdir")])).unwrap();
    let child = String::from_utf8(curl_ok(&[
        "-X",
        "PUT",
        "--data-binary",
        "child",
        &format!("{base}/uri"),
    ]))
    .unwrap();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let writers_left = Arc::new(std::sync::atomic::AtomicUsize::new(dir_writers));
    let writer_threads: Vec<_> = (0..dir_writers)
        .map(|w| {
            let (acknowledged, left) = (Arc::clone(&acknowledged), Arc::clone(&writers_left));
            let (base, dircap, child) = (base.clone(), dircap.clone(), child.clone());
            std::thread::spawn(move || {
                for a in 0..adds {
                    let name = format!("w{w:02}-{a:02}");
                    curl_ok(&[
                        "-X",
                        "PUT",
                        "--data-binary",
                        &child,
                        &format!("{base}/uri/{dircap}/{name}?t=uri"),
                    ]);
                    acknowledged.lock().unwrap().insert(name);
                }
                left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    let lister_threads: Vec<_> = (0..readers)
        .map(|r| {
            let (acknowledged, left) = (Arc::clone(&acknowledged), Arc::clone(&writers_left));
            let url = format!("{base}/uri/{dircap}?t=json");
            std::thread::spawn(move || {
                let mut listings = 0;
                while left.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                    let before: BTreeSet<String> = acknowledged.lock().unwrap().clone();
                    let out = curl(&["-f", &url]);
                    assert!(
                        out.status.success(),
                        "lister {r}: {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let json = String::from_utf8(out.stdout).unwrap();
                    for name in &before {
                        assert!(
                            json.contains(&format!("\"{name}\"")),
                            "lister {r}: {name} missing"
                        );
                    }
                    listings += 1;
                }
                listings
            })
        })
        .collect();
    for t in writer_threads {
        t.join().unwrap();
    }
    let listings: usize = lister_threads.into_iter().map(|t| t.join().unwrap()).sum();
    let json = String::from_utf8(curl_ok(&[&format!("{base}/uri/{dircap}?t=json")])).unwrap();
    let acknowledged = acknowledged.lock().unwrap();
    assert_eq!(acknowledged.len(), dir_writers * adds);
    for name in acknowledged.iter() {
        assert!(
            json.contains(&format!("\"{name}\"")),
            "{name} is missing at the end"
        );
    }
    eprintln!(
        "directory: {} adds by {dir_writers} writers all acknowledged; {listings} listings",
        dir_writers * adds
    );
    assert_eq!(
        grid.advisories(),
        Vec::<String>::new(),
        "readers blamed shares being rewritten"
    );
}
