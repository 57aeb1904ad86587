//! `tessera check`, `deep-check` and `manifest` run as a person runs them, against a real
//! `tessera devgrid` (three storage nodes; 3-of-10 encoding, happiness 3): a healthy file in text
//! and `--raw`, LIT files, directories and mutable files, `--verify`, `--add-lease`, a tree walked
//! by `deep-check` and `manifest` (every output form), a share corrupted on disk (named with its
//! reason; `check --verify --repair` replaces it, and a second repair does nothing; a file with
//! every share corrupt cannot be repaired and says why), a storage node stopped (the file becomes
//! unhealthy but stays recoverable), and one-line errors for bad targets.
//!
//! Each test starts its own grid on 127.0.0.1 (the pattern of `cli_fs.rs` and `ftp.rs`).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;
use common::free_port;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `tessera devgrid` with three storage nodes, stopped on drop.
struct Grid {
    scratch: tempfile::TempDir,
    dir: PathBuf,
    child: Child,
}

impl Drop for Grid {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// The JSON object of each line (a streamed answer).
    fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    #[track_caller]
    fn ok(self) -> Output {
        assert_eq!(self.code, 0, "failed: {}", self.stderr);
        self
    }

    /// Asserts exit status `code` and an error of one line holding every `part`.
    #[track_caller]
    fn fails(self, code: i32, parts: &[&str]) -> Output {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "one line: {}",
            self.stderr
        );
        for part in parts {
            assert!(self.stderr.contains(part), "{part:?} not in {}", self.stderr);
        }
        self
    }
}

impl Grid {
    fn start() -> Grid {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("grid");
        let log = std::fs::File::create(scratch.path().join("devgrid.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["devgrid", "--servers", "3"])
            .args(["--web-port", &free_port().to_string()])
            .args(["--sftp-port", "0", "--ftp-port", "0"])
            .arg("--dir")
            .arg(&dir)
            .stdout(log)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let grid = Grid { scratch, dir, child };
        let log = grid.scratch.path().join("devgrid.log");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Press Ctrl-C")
        {
            assert!(Instant::now() < deadline, "tessera devgrid did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        grid.run(&["create-alias", "tahoe"]).ok();
        grid
    }

    fn run_with(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("--node-directory")
            .arg(self.dir.join("gateway"))
            .args(args)
            .current_dir(self.scratch.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, b"")
    }

    /// `tessera put - WHERE` with `data`; the new file's cap.
    fn put(&self, extra: &[&str], data: &[u8], to: &str) -> String {
        let mut args = vec!["put"];
        args.extend(extra);
        args.extend(["-", to]);
        self.run_with(&args, data).ok().stdout.trim().to_owned()
    }

    /// `check --raw TARGET`, parsed.
    fn raw_check(&self, args: &[&str]) -> Value {
        let mut all = vec!["check", "--raw"];
        all.extend(args);
        self.run(&all).ok().json()
    }

    /// Stops one storage node (`storage01`…) by the process id of its `tessera run`.
    fn stop_storage(&self, name: &str) {
        let node_dir = self.dir.join(name);
        for entry in std::fs::read_dir("/proc").unwrap() {
            let entry = entry.unwrap();
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.len() >= 3 && args[1] == b"run" && args[2] == node_dir.as_os_str().as_encoded_bytes() {
                let pid = entry.file_name().into_string().unwrap();
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                let stopped = Instant::now() + Duration::from_secs(30);
                while entry.path().join("cmdline").exists() {
                    assert!(Instant::now() < stopped, "{name} did not stop");
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
        }
        panic!("no process runs {}", node_dir.display());
    }

    /// Every share file of `storage_index` on the storage nodes: (node, share number, path).
    fn share_files(&self, storage_index: &str) -> Vec<(String, u32, PathBuf)> {
        let mut found = Vec::new();
        for node in ["storage01", "storage02", "storage03"] {
            let dir = self
                .dir
                .join(node)
                .join("storage/shares")
                .join(&storage_index[..2])
                .join(storage_index);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let shnum = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
                found.push((node.to_owned(), shnum, path));
            }
        }
        found.sort();
        found
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect()
}

fn field<'a>(json: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(json, |value, key| &value[*key])
}

/// Tahoe's check text for a healthy CHK or mutable object of this grid.
fn healthy_text(storage_index: &str, summary: &str) -> String {
    format!(
        "Summary: {summary}\n storage index: {storage_index}\n good-shares: 10 (encoding is 3-of-10)\n wrong-shares: 0\n"
    )
}

#[test]
fn check_reports_healthy_files_directories_and_leases() {
    let grid = Grid::start();
    let big = random_bytes(300_000, 1);
    let cap = grid.put(&[], &big, "tahoe:big.bin");
    assert!(cap.starts_with("URI:CHK:"), "{cap}");

    // --raw: Tahoe's JSON as the gateway sent it, with every field of a healthy 3-of-10 file.
    let raw = grid.run(&["check", "--raw", "tahoe:big.bin"]).ok();
    assert!(
        raw.stdout.ends_with('\n') && raw.lines().len() == 1,
        "{}",
        raw.stdout
    );
    let json = raw.json();
    let storage_index = json["storage-index"].as_str().unwrap().to_owned();
    assert_eq!(storage_index.len(), 26, "{json}");
    let results = &json["results"];
    assert_eq!(results["healthy"], true);
    assert_eq!(results["recoverable"], true);
    assert_eq!(results["count-shares-good"], 10);
    assert_eq!(results["count-shares-needed"], 3);
    assert_eq!(results["count-shares-expected"], 10);
    assert_eq!(results["count-good-share-hosts"], 3);
    assert_eq!(results["count-happiness"], 3);
    assert_eq!(results["count-wrong-shares"], 0);
    assert_eq!(results["count-corrupt-shares"], 0);
    assert_eq!(results["list-corrupt-shares"], serde_json::json!([]));
    assert_eq!(results["servers-responding"].as_array().unwrap().len(), 3);
    assert_eq!(results["count-recoverable-versions"], 1);
    assert_eq!(results["count-unrecoverable-versions"], 0);
    assert_eq!(results["count-leases-renewed"], 0, "no lease without --add-lease");
    // The sharemap agrees with the share files on the storage nodes' disks.
    let sharemap = results["sharemap"].as_object().unwrap();
    assert_eq!(sharemap.len(), 10, "{json}");
    let on_disk = grid.share_files(&storage_index);
    assert_eq!(on_disk.len(), 10, "{on_disk:?}");
    let shnums: BTreeSet<u32> = on_disk.iter().map(|(_, shnum, _)| *shnum).collect();
    assert_eq!(shnums, (0..10).collect());

    // The text form, as Tahoe prints it; the same object by cap.
    let summary = json["summary"].as_str().unwrap();
    assert!(summary.starts_with("Healthy"), "{summary}");
    let text = grid.run(&["check", "tahoe:big.bin"]).ok();
    assert_eq!(text.stdout, healthy_text(&storage_index, summary));
    assert_eq!(grid.run(&["check", &cap]).ok().stdout, text.stdout);
    // --verify reads every share whole: still healthy.
    let verified = grid.raw_check(&["--verify", &cap]);
    assert_eq!(field(&verified, &["results", "count-shares-good"]), 10);
    assert_eq!(field(&verified, &["results", "healthy"]), true);
    assert_eq!(grid.run(&["check", "--verify", &cap]).ok().stdout, text.stdout);

    // --add-lease renews a lease on every share; the storage nodes say so.
    let leased = grid.raw_check(&["--add-lease", "tahoe:big.bin"]);
    let renewed = field(&leased, &["results", "count-leases-renewed"])
        .as_u64()
        .unwrap();
    assert!(renewed > 0, "{leased}");
    assert_eq!(
        field(&leased, &["results", "lease-failures"]),
        &serde_json::json!([])
    );
    assert_eq!(
        grid.run(&["check", "--add-lease", "tahoe:big.bin"]).ok().stdout,
        text.stdout
    );

    // A LIT file has no shares: Tahoe's "Healthy (LIT)" and an empty storage index.
    let lit = grid.put(&[], b"tiny", "tahoe:tiny.txt");
    assert!(lit.starts_with("URI:LIT:"), "{lit}");
    assert_eq!(
        grid.run(&["check", "tahoe:tiny.txt"]).ok().stdout,
        "Summary: Healthy (LIT)\n storage index: \n"
    );
    assert_eq!(
        grid.raw_check(&[&lit]),
        serde_json::json!({"storage-index": "", "results": {"healthy": true}})
    );

    // Directories (the default target is `tahoe:`) and mutable files are checked too.
    let root = grid.raw_check(&[]);
    assert_eq!(field(&root, &["results", "healthy"]), true);
    assert_eq!(field(&root, &["results", "count-shares-good"]), 10);
    let root_si = root["storage-index"].as_str().unwrap();
    assert_ne!(root_si, storage_index);
    assert_eq!(
        grid.run(&["check", "tahoe:"]).ok().stdout,
        grid.run(&["check"]).ok().stdout
    );
    assert_eq!(
        grid.run(&["check", "tahoe:/"]).ok().stdout,
        healthy_text(root_si, root["summary"].as_str().unwrap())
    );
    let mutable = grid.put(&["--mutable"], b"mutable contents", "tahoe:mutable.txt");
    assert!(mutable.starts_with("URI:SSK:"), "{mutable}");
    let checked = grid.raw_check(&["tahoe:mutable.txt"]);
    assert_eq!(field(&checked, &["results", "healthy"]), true);
    assert_eq!(field(&checked, &["results", "count-recoverable-versions"]), 1);

    // Several targets are checked in turn.
    let both = grid.run(&["check", "tahoe:big.bin", "tahoe:tiny.txt"]).ok();
    assert_eq!(
        both.stdout,
        format!("{}Summary: Healthy (LIT)\n storage index: \n", text.stdout)
    );

    // --repair: the gateway's check-and-repair answer when it has one; until then its refusal,
    // as one line.
    let repair = grid.run(&["check", "--repair", "tahoe:big.bin"]);
    if repair.code == 0 {
        assert_eq!(
            repair.lines()[..2],
            ["Summary: healthy", &format!(" storage index: {storage_index}")]
        );
    } else {
        repair.fails(1, &["tahoe:big.bin", "repair"]);
    }
}

#[test]
fn bad_targets_fail_with_one_line() {
    let grid = Grid::start();
    grid.put(&[], &random_bytes(5_000, 2), "tahoe:file.bin");
    grid.run(&["check", "nope:x"])
        .fails(1, &["unknown alias 'nope'", "known aliases: tahoe:"]);
    grid.run(&["deep-check", "nope:"])
        .fails(1, &["unknown alias 'nope'"]);
    grid.run(&["manifest", "nope:"])
        .fails(1, &["unknown alias 'nope'"]);
    let missing = grid
        .run(&["check", "tahoe:missing.bin"])
        .fails(1, &["tahoe:missing.bin", "No such child: missing.bin", "404"]);
    assert!(missing.stdout.is_empty());
    grid.run(&["deep-check", "tahoe:missing"])
        .fails(1, &["tahoe:missing", "No such child: missing"]);
    grid.run(&["manifest", "tahoe:missing"])
        .fails(1, &["tahoe:missing", "No such child: missing"]);
    grid.run(&["check", "URI:CHK:not-a-cap"])
        .fails(1, &["is not a valid cap"]);
    // deep-check and manifest walk directories; a file is refused.
    grid.run(&["deep-check", "tahoe:file.bin"])
        .fails(1, &["tahoe:file.bin", "directory", "400"]);
    grid.run(&["manifest", "tahoe:file.bin"])
        .fails(1, &["tahoe:file.bin", "directory", "400"]);
    // A healthy first target is printed before a bad second one stops the command.
    let out = grid
        .run(&["check", "tahoe:file.bin", "tahoe:missing.bin"])
        .fails(1, &["No such child: missing.bin"]);
    assert!(out.stdout.starts_with("Summary: Healthy"), "{}", out.stdout);
    // A gateway that is not there.
    let out = grid.run(&[
        "--node-url",
        &format!("http://127.0.0.1:{}", free_port()),
        "check",
        "URI:LIT:nbswy3dp",
    ]);
    out.fails(1, &["cannot reach the gateway"]);
    // No cap appears in these errors.
    let out = grid.run(&["check", "tahoe:file.bin/inside"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!out.stderr.contains("URI:"), "{}", out.stderr);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
    // Usage errors are clap's (status 2).
    assert_eq!(grid.run(&["manifest", "tahoe:", "tahoe:"]).code, 2);
    assert_eq!(grid.run(&["check", "--bogus"]).code, 2);
}

#[test]
fn deep_check_and_manifest_walk_a_tree() {
    let grid = Grid::start();
    let mut caps = BTreeMap::new();
    caps.insert(
        "big.bin",
        grid.put(&[], &random_bytes(200_000, 3), "tahoe:big.bin"),
    );
    caps.insert("tiny.txt", grid.put(&[], b"tiny", "tahoe:tiny.txt"));
    caps.insert(
        "docs/a.txt",
        grid.put(&[], &random_bytes(1_000, 4), "tahoe:docs/a.txt"),
    );
    caps.insert(
        "docs/deeper/naïve ☃.txt",
        grid.put(&[], &random_bytes(2_000, 5), "tahoe:docs/deeper/naïve ☃.txt"),
    );
    caps.insert(
        "docs/deeper/mutable.txt",
        grid.put(&["--mutable"], b"mutable", "tahoe:docs/deeper/mutable.txt"),
    );
    // 3 directories and 5 files (one of them LIT).
    let expected_paths: BTreeSet<String> = ["", "docs", "docs/deeper"]
        .into_iter()
        .chain(caps.keys().copied())
        .map(str::to_owned)
        .collect();

    // The summary line, and with -v one line per object in Tahoe's quoting.
    let out = grid.run(&["deep-check", "tahoe:"]).ok();
    assert_eq!(out.stdout, "done: 8 objects checked, 8 healthy, 0 unhealthy\n");
    assert_eq!(grid.run(&["deep-check"]).ok().stdout, out.stdout);
    let verbose = grid.run(&["deep-check", "-v", "tahoe:"]).ok();
    let lines = verbose.lines();
    assert_eq!(lines.len(), 9, "{}", verbose.stdout);
    assert_eq!(lines[8], "done: 8 objects checked, 8 healthy, 0 unhealthy");
    let by_path: BTreeMap<&str, &str> = lines[..8].iter().map(|l| l.split_once(": ").unwrap()).collect();
    let quoted: BTreeSet<String> = expected_paths
        .iter()
        .map(|p| {
            if p.is_empty() {
                "'<root>'".to_owned()
            } else {
                format!("'{p}'")
            }
        })
        .collect();
    assert_eq!(
        by_path.keys().map(|k| (*k).to_owned()).collect::<BTreeSet<_>>(),
        quoted
    );
    assert_eq!(by_path["'tiny.txt'"], "Healthy (LIT)");
    for (path, summary) in &by_path {
        assert!(summary.starts_with("Healthy"), "{path}: {summary}");
    }
    // A subdirectory only; --verify reads every share.
    assert_eq!(
        grid.run(&["deep-check", "tahoe:docs"]).ok().stdout,
        "done: 5 objects checked, 5 healthy, 0 unhealthy\n"
    );
    assert_eq!(
        grid.run(&["deep-check", "--verify", "tahoe:docs/"]).ok().stdout,
        "done: 5 objects checked, 5 healthy, 0 unhealthy\n"
    );
    // Two targets: each gets its done line.
    assert_eq!(
        grid.run(&["deep-check", "tahoe:docs/deeper", "tahoe:docs"])
            .ok()
            .stdout,
        "done: 3 objects checked, 3 healthy, 0 unhealthy\ndone: 5 objects checked, 5 healthy, 0 unhealthy\n"
    );

    // --raw: the stream as sent: one line per object with its check results, then the stats.
    let raw = grid.run(&["deep-check", "--raw", "tahoe:"]).ok().json_lines();
    assert_eq!(raw.len(), 9);
    let stats = &raw[8];
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["stats"]["count-directories"], 3);
    assert_eq!(stats["stats"]["count-files"], 5);
    assert_eq!(stats["stats"]["count-objects-checked"], 8);
    assert_eq!(stats["stats"]["count-objects-healthy"], 8);
    assert_eq!(stats["stats"]["count-leases-renewed"], 0);
    for object in &raw[..8] {
        assert_eq!(
            field(object, &["check-results", "results", "healthy"]),
            true,
            "{object}"
        );
    }
    // --add-lease renews leases on every object with shares.
    let leased = grid
        .run(&["deep-check", "--raw", "--add-lease", "tahoe:"])
        .ok()
        .json_lines();
    assert!(
        leased[8]["stats"]["count-leases-renewed"].as_u64().unwrap() > 0,
        "{}",
        leased[8]
    );
    for object in &leased[..8] {
        let renewed = field(object, &["check-results", "results", "count-leases-renewed"]);
        if object["storage-index"] != "" {
            assert!(renewed.as_u64().unwrap() > 0, "{object}");
        }
    }

    // manifest: "CAP PATH" per object (the root's path is empty), the caps `put` printed.
    let manifest = grid.run(&["manifest", "tahoe:"]).ok();
    let lines = manifest.lines();
    assert_eq!(lines.len(), 8, "{}", manifest.stdout);
    let listed: BTreeMap<&str, &str> = lines
        .iter()
        .map(|l| {
            let (cap, path) = l.split_once(' ').unwrap();
            (path, cap)
        })
        .collect();
    assert_eq!(
        listed.keys().map(|k| (*k).to_owned()).collect::<BTreeSet<_>>(),
        expected_paths
    );
    for (path, cap) in &caps {
        assert_eq!(listed[path], cap, "{path}");
    }
    let aliases = std::fs::read_to_string(grid.dir.join("gateway/private/aliases")).unwrap();
    assert_eq!(aliases.trim(), format!("tahoe: {}", listed[""]));
    assert_eq!(grid.run(&["manifest"]).ok().stdout, manifest.stdout);

    // --raw, and the one-column forms: each is the stream's field, where it is not empty.
    let raw = grid.run(&["manifest", "--raw", "tahoe:"]).ok().json_lines();
    assert_eq!(raw.len(), 9);
    assert_eq!(raw[8]["type"], "stats");
    assert_eq!(raw[8]["stats"]["count-directories"], 3);
    assert_eq!(raw[8]["stats"]["count-files"], 5);
    assert!(raw[..8].iter().all(|o| o.get("check-results").is_none()));
    let column = |key: &str| -> Vec<String> {
        raw[..8]
            .iter()
            .filter_map(|o| o[key].as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for (flag, key) in [
        ("--storage-index", "storage-index"),
        ("-s", "storage-index"),
        ("--verify-cap", "verifycap"),
        ("--repair-cap", "repaircap"),
    ] {
        let out = grid.run(&["manifest", flag, "tahoe:"]).ok();
        let mut printed: Vec<String> = out.lines().iter().map(|l| (*l).to_owned()).collect();
        let mut expected = column(key);
        printed.sort();
        expected.sort();
        assert_eq!(printed, expected, "{flag}");
    }
    // Seven objects have storage indexes (not the LIT file), each of 26 base32 characters.
    let indexes = column("storage-index");
    assert_eq!(indexes.len(), 7);
    assert!(indexes.iter().all(|si| si.len() == 26));
    let verify_caps = column("verifycap");
    assert_eq!(verify_caps.len(), 7);
    assert!(
        verify_caps.iter().all(|v| v.contains("Verifier")),
        "{verify_caps:?}"
    );
    // A subdirectory's manifest names paths from there.
    let sub = grid.run(&["manifest", "tahoe:docs/deeper"]).ok();
    let mut paths: Vec<&str> = sub.lines().iter().map(|l| l.split_once(' ').unwrap().1).collect();
    paths.sort();
    assert_eq!(paths, ["", "mutable.txt", "naïve ☃.txt"]);

    // A directory whose shares are all gone cannot be read: the gateway's ERROR line becomes the
    // command's one-line error (exit 1), after everything that could be checked or listed.
    let deeper = raw
        .iter()
        .find(|o| o["path"] == serde_json::json!(["docs", "deeper"]))
        .unwrap();
    let deeper_si = deeper["storage-index"].as_str().unwrap();
    let shares = grid.share_files(deeper_si);
    assert_eq!(shares.len(), 10);
    for (_, _, path) in &shares {
        std::fs::remove_file(path).unwrap();
    }
    let out = grid
        .run(&["deep-check", "-v", "tahoe:"])
        .fails(1, &["ERROR:", "(under tahoe:)"]);
    assert!(!out.stderr.contains("URI:"), "{}", out.stderr);
    let lines = out.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("'docs/deeper': Unhealthy: no versions are recoverable")),
        "{}",
        out.stdout
    );
    assert_eq!(
        lines.last().unwrap(),
        &"done: 6 objects checked, 5 healthy, 1 unhealthy"
    );
    let out = grid
        .run(&["manifest", "tahoe:"])
        .fails(1, &["ERROR:", "(under tahoe:)"]);
    assert_eq!(out.lines().len(), 6, "{}", out.stdout);
    // --raw passes the stream through, ERROR line and all, and exits 0 as Tahoe's does.
    let raw = grid.run(&["manifest", "--raw", "tahoe:"]).ok();
    assert!(
        raw.lines().iter().any(|l| l.starts_with("ERROR:")),
        "{}",
        raw.stdout
    );
}

#[test]
fn corrupt_shares_and_a_stopped_server_make_files_unhealthy() {
    let grid = Grid::start();
    let cap = grid.put(&[], &random_bytes(300_000, 6), "tahoe:big.bin");
    grid.put(&[], b"tiny", "tahoe:tiny.txt");
    let before = grid.raw_check(&["tahoe:big.bin"]);
    let storage_index = before["storage-index"].as_str().unwrap().to_owned();

    // Flip a byte in the middle of one share (its blocks): --verify finds it, a plain check
    // (which only asks where shares are) does not.
    let shares = grid.share_files(&storage_index);
    let (node, shnum, path) = shares
        .iter()
        .find(|(node, _, _)| node == "storage01")
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        field(
            &grid.raw_check(&["tahoe:big.bin"]),
            &["results", "count-shares-good"]
        ),
        10
    );
    let verified = grid.raw_check(&["--verify", "tahoe:big.bin"]);
    let results = &verified["results"];
    assert_eq!(results["healthy"], false, "{verified}");
    assert_eq!(results["recoverable"], true);
    assert_eq!(results["count-shares-good"], 9);
    assert_eq!(results["count-corrupt-shares"], 1);
    let corrupt = &results["list-corrupt-shares"][0];
    assert_eq!(corrupt[1], storage_index.as_str());
    assert_eq!(corrupt[2], shnum, "the share corrupted on {node}");
    let server = corrupt[0].as_str().unwrap().to_owned();
    // Tessera's addition: why.
    let reason = results["list-corrupt-share-reasons"][0][3]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("block"), "{verified}");
    let out = grid.run(&["check", "--verify", "tahoe:big.bin"]).ok();
    assert_eq!(
        out.stdout,
        format!(
            "Summary: {}\n storage index: {storage_index}\n good-shares: 9 (encoding is 3-of-10)\n wrong-shares: 0\n corrupt shares:\n  server {server}, SI {storage_index}, shnum {shnum}: {reason}\n",
            results_summary(&verified)
        )
    );
    assert!(out.stdout.starts_with("Summary: Not Healthy"), "{}", out.stdout);
    // deep-check always prints corrupt shares, under -v after the object's line.
    let deep = grid.run(&["deep-check", "--verify", "-v", "tahoe:"]).ok();
    let lines = deep.lines();
    let at = lines
        .iter()
        .position(|l| l.starts_with("'big.bin': Not Healthy"))
        .unwrap();
    assert_eq!(
        lines[at + 1],
        format!(" corrupt: server {server}, SI {storage_index}, shnum {shnum}: {reason}")
    );
    assert_eq!(
        lines.last().unwrap(),
        &"done: 3 objects checked, 2 healthy, 1 unhealthy"
    );
    let quiet = grid.run(&["deep-check", "--verify", "tahoe:"]).ok();
    assert_eq!(
        quiet.stdout,
        format!(
            " corrupt: server {server}, SI {storage_index}, shnum {shnum}: {reason}\ndone: 3 objects checked, 2 healthy, 1 unhealthy\n"
        )
    );
    std::fs::write(&path, {
        bytes[middle] ^= 0x5a;
        &bytes
    })
    .unwrap();
    assert_eq!(
        field(&grid.raw_check(&["--verify", &cap]), &["results", "healthy"]),
        true,
        "the share is whole again"
    );

    // One storage node stopped: its shares are missing. Not healthy, still recoverable, and the
    // count is exactly the shares the other two servers hold.
    grid.stop_storage("storage03");
    let after = grid.raw_check(&["tahoe:big.bin"]);
    let responding: BTreeSet<String> = after["results"]["servers-responding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(responding.len(), 2, "{after}");
    let remaining = before["results"]["sharemap"]
        .as_object()
        .unwrap()
        .values()
        .filter(|servers| {
            servers
                .as_array()
                .unwrap()
                .iter()
                .any(|s| responding.contains(s.as_str().unwrap()))
        })
        .count();
    assert!((3..10).contains(&remaining), "{before}");
    let results = &after["results"];
    assert_eq!(results["healthy"], false);
    assert_eq!(results["recoverable"], true);
    assert_eq!(results["count-shares-good"], remaining);
    assert_eq!(results["count-good-share-hosts"], 2);
    let text = grid.run(&["check", "tahoe:big.bin"]).ok();
    assert_eq!(
        text.stdout,
        format!(
            "Summary: {}\n storage index: {storage_index}\n good-shares: {remaining} (encoding is 3-of-10)\n wrong-shares: 0\n",
            results_summary(&after)
        )
    );
    assert!(text.stdout.starts_with("Summary: Not Healthy"), "{}", text.stdout);
    // The root directory lost shares too; the LIT file cannot.
    let deep = grid.run(&["deep-check", "-v", "tahoe:"]).ok();
    let lines = deep.lines();
    assert_eq!(lines.len(), 4, "{}", deep.stdout);
    assert!(lines.contains(&"'tiny.txt': Healthy (LIT)"), "{}", deep.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with("'<root>': Unhealthy: ")),
        "{}",
        deep.stdout
    );
    assert!(
        lines.contains(&format!("'big.bin': Not Healthy: {remaining} shares (enc 3-of-10)").as_str())
            || lines.contains(&format!("'big.bin': {}", results_summary(&after)).as_str()),
        "{}",
        deep.stdout
    );
    assert_eq!(lines[3], "done: 3 objects checked, 1 healthy, 2 unhealthy");
    // The file still reads: unhealthy is not lost.
    grid.run(&["get", &cap, "out.bin"]).ok();
    assert_eq!(
        std::fs::read(grid.scratch.path().join("out.bin")).unwrap(),
        random_bytes(300_000, 6)
    );
}

#[test]
fn check_verify_repair_replaces_corrupt_shares() {
    let grid = Grid::start();
    let contents = random_bytes(300_000, 7);
    for (name, extra) in [("big.bin", &[][..]), ("mdmf.bin", &["--format=MDMF"][..])] {
        let target = format!("tahoe:{name}");
        grid.put(extra, &contents, &target);
        let storage_index = grid.raw_check(&[&target])["storage-index"]
            .as_str()
            .unwrap()
            .to_owned();
        // Flip a byte in the middle of one share on storage01 (in its blocks).
        let shares = grid.share_files(&storage_index);
        let (_, shnum, path) = shares
            .iter()
            .find(|(node, _, _)| node == "storage01")
            .unwrap()
            .clone();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();

        // check --verify --repair: names the share and why, repairs it.
        let pre = grid.raw_check(&["--verify", &target]);
        let server = pre["results"]["list-corrupt-shares"][0][0]
            .as_str()
            .unwrap()
            .to_owned();
        let reason = pre["results"]["list-corrupt-share-reasons"][0][3]
            .as_str()
            .unwrap()
            .to_owned();
        let out = grid.run(&["check", "--verify", "--repair", &target]).ok();
        assert_eq!(
            out.lines(),
            [
                "Summary: not healthy",
                &format!(" storage index: {storage_index}"),
                " good-shares: 9 (encoding is 3-of-10)",
                " wrong-shares: 0",
                " corrupt shares:",
                &format!("  server {server}, SI {storage_index}, shnum {shnum}: {reason}"),
                " repair successful",
            ],
            "{name}"
        );
        let post = grid.raw_check(&["--verify", &target]);
        assert_eq!(post["results"]["healthy"], true, "{name}: {post}");
        assert_eq!(post["results"]["count-shares-good"], 10);
        assert_eq!(post["results"]["count-corrupt-shares"], 0);
        // A second repair has nothing to do.
        let again = grid.run(&["check", "--verify", "--repair", &target]).ok();
        assert_eq!(
            again.lines(),
            [
                "Summary: healthy",
                &format!(" storage index: {storage_index}"),
                " good-shares: 10 (encoding is 3-of-10)",
                " wrong-shares: 0",
            ],
            "{name}"
        );
        grid.run(&["get", &target, "out.bin"]).ok();
        assert_eq!(
            std::fs::read(grid.scratch.path().join("out.bin")).unwrap(),
            contents
        );
    }

    // Every share of a file corrupt: unrecoverable, and the repair says why.
    grid.put(&[], &random_bytes(100_000, 8), "tahoe:lost.bin");
    let storage_index = grid.raw_check(&["tahoe:lost.bin"])["storage-index"]
        .as_str()
        .unwrap()
        .to_owned();
    for (_, _, path) in grid.share_files(&storage_index) {
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
    }
    let out = grid
        .run(&["check", "--verify", "--repair", "tahoe:lost.bin"])
        .ok();
    assert_eq!(
        out.lines().last().unwrap(),
        &" repair failed: the file is not recoverable: 0 good shares are left and 3 are needed; 10 shares are corrupt",
        "{}",
        out.stdout
    );
}

fn results_summary(json: &Value) -> &str {
    json["summary"].as_str().unwrap()
}
