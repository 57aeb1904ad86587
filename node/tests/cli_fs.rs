//! The file-store commands (`tessera ls`, `mkdir`, `put`, `get`, `cp`, `mv`, `ln`, `unlink` and
//! the alias commands) run as a person runs them, against a real gateway.
//!
//! The gateway comes from [`start_gateway`], the one place that chooses it: `TESSERA_CLI_GATEWAY`
//! = `tahoe` (the default: a one-node Tahoe-LAFS 1.20 grid, `$TAHOE` or
//! `/opt/tahoe-venv/bin/tahoe`, or the virtualenv `tests/interop/tahoe.sh` installs) or `tessera`
//! (`tessera devgrid`). Each test gets its own gateway on
//! 127.0.0.1; the tests skip with a printed reason when the chosen gateway cannot be had (Tahoe
//! not installed).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;
use common::free_port;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------- the gateway

/// A running gateway: a node directory with `node.url` (and, once made, `private/aliases`), and the
/// processes that serve it, stopped on drop.
struct TestGateway {
    _scratch: tempfile::TempDir,
    node_dir: PathBuf,
    /// Processes to stop, with the signal that stops each gracefully.
    processes: Vec<(Child, &'static str)>,
    /// The `tahoe` executable, when the gateway is Tahoe's (for cross-checks with Tahoe's CLI).
    tahoe: Option<PathBuf>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        for (child, signal) in &mut self.processes {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
        }
        for (child, _) in &mut self.processes {
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` on a local web server, with plain HTTP/1.0 (enough for a status poll).
fn http_get(node_url: &str, path: &str) -> Option<String> {
    let address = node_url
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// The gateway the tests run against; `None` (after saying why) when it cannot be had here.
fn start_gateway() -> Option<TestGateway> {
    match std::env::var("TESSERA_CLI_GATEWAY").as_deref() {
        Ok("tessera") | Err(_) => Some(tessera_gateway()),
        Ok("tahoe") => tahoe_gateway(),
        Ok(other) => panic!("TESSERA_CLI_GATEWAY={other}: use tahoe or tessera"),
    }
}

/// `tessera devgrid` with three storage nodes; the gateway's node directory.
fn tessera_gateway() -> TestGateway {
    let scratch = tempfile::tempdir().unwrap();
    let grid = scratch.path().join("grid");
    let log = std::fs::File::create(scratch.path().join("devgrid.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "devgrid",
            "--servers",
            "3",
            "--web-port",
            &free_port().to_string(),
            "--sftp-port",
            "0",
            "--ftp-port",
            "0",
            "--dir",
        ])
        .arg(&grid)
        .stdout(log)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let gateway = TestGateway {
        node_dir: grid.join("gateway"),
        processes: vec![(child, "INT")],
        tahoe: None,
        _scratch: scratch,
    };
    let log = gateway._scratch.path().join("devgrid.log");
    wait_until("tessera devgrid", Duration::from_secs(120), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Press Ctrl-C")
    });
    gateway
}

/// One Tahoe-LAFS node that is its own storage server (`servers.yaml` names itself; 1-of-1
/// encoding), with its web gateway on 127.0.0.1.
fn tahoe_gateway() -> Option<TestGateway> {
    // $TAHOE, else a usual install, else the virtualenv tests/interop/tahoe.sh makes.
    let tmp = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let candidates = match std::env::var_os("TAHOE") {
        Some(tahoe) => vec![PathBuf::from(tahoe)],
        None => vec![
            PathBuf::from("/opt/tahoe-venv/bin/tahoe"),
            tmp.join("tessera-tahoe-venv/bin/tahoe"),
        ],
    };
    let Some(tahoe) = candidates.iter().find(|c| c.exists()).cloned() else {
        eprintln!(
            "skipped: no Tahoe-LAFS at {candidates:?} (set TAHOE, or TESSERA_CLI_GATEWAY=tessera once the gateway serves directories)"
        );
        return None;
    };
    let scratch = tempfile::tempdir().unwrap();
    let node = scratch.path().join("node");
    let (tub_port, web_port) = (free_port(), free_port());
    let created = Command::new(&tahoe)
        .args([
            "create-node",
            "--nickname=cli-test",
            &format!("--port=tcp:{tub_port}:interface=127.0.0.1"),
            &format!("--location=tcp:127.0.0.1:{tub_port}"),
            &format!("--webport=tcp:{web_port}:interface=127.0.0.1"),
            "--shares-needed=1",
            "--shares-happy=1",
            "--shares-total=1",
        ])
        .arg(&node)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let run = || {
        Command::new(&tahoe)
            .arg("-d")
            .arg(&node)
            .args(["run", "--allow-stdin-close"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The first run writes the storage FURL and keys; the node then learns of itself from
    // servers.yaml on the second.
    let mut gateway = TestGateway {
        node_dir: node.clone(),
        processes: vec![(run(), "TERM")],
        tahoe: Some(tahoe.clone()),
        _scratch: scratch,
    };
    let ready = [
        "private/storage.furl",
        "node.pubkey",
        "permutation-seed",
        "node.url",
    ];
    wait_until("tahoe's first start", Duration::from_secs(60), || {
        ready.iter().all(|f| node.join(f).exists())
    });
    let (mut first, _) = gateway.processes.pop().unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(first.id().to_string())
        .status()
        .unwrap();
    first.wait().unwrap();
    let read = |f: &str| std::fs::read_to_string(node.join(f)).unwrap().trim().to_owned();
    let servers = format!(
        "storage:\n  v0-{key}:\n    ann:\n      nickname: cli-test\n      anonymous-storage-FURL: {furl}\n      permutation-seed-base32: {seed}\n",
        key = read("node.pubkey").trim_start_matches("pub-v0-"),
        furl = read("private/storage.furl"),
        seed = read("permutation-seed"),
    );
    std::fs::write(node.join("private/servers.yaml"), servers).unwrap();
    std::fs::remove_file(node.join("node.url")).unwrap();
    gateway.processes.push((run(), "TERM"));
    wait_until("tahoe to connect to itself", Duration::from_secs(60), || {
        let Ok(url) = std::fs::read_to_string(node.join("node.url")) else {
            return false;
        };
        http_get(&url, "/?t=json").is_some_and(|json| json.contains("\"connection_status\": \"Connected"))
    });
    Some(gateway)
}

// ------------------------------------------------------------------------------------------ the CLI

struct Output {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8(self.stdout.clone()).unwrap()
    }

    fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    #[track_caller]
    fn ok(self) -> Output {
        assert_eq!(self.code, 0, "failed: {}", self.stderr);
        self
    }

    /// Asserts failure with `code` and one line of error containing every `part` (clap's usage
    /// errors, status 2 and starting with `error:`, come with a usage hint after the line).
    #[track_caller]
    fn fails(self, code: i32, parts: &[&str]) -> Output {
        assert_eq!(
            self.code,
            code,
            "stdout: {}\nstderr: {}",
            self.text(),
            self.stderr
        );
        if !self.stderr.starts_with("error:") {
            assert_eq!(
                self.stderr.trim_end().lines().count(),
                1,
                "one line: {}",
                self.stderr
            );
        }
        for part in parts {
            assert!(self.stderr.contains(part), "{part:?} not in {}", self.stderr);
        }
        self
    }
}

impl TestGateway {
    fn run_in(&self, cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("--node-directory")
            .arg(&self.node_dir)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            match input.write_all(bytes) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.unwrap(),
            }
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&self.node_dir, args, None)
    }

    fn ls(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["ls"];
        all.extend(args);
        self.run(&all).ok().lines()
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect()
}

/// Every file and directory under `root`, relative, with file contents (`None` for directories).
fn tree(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                found.push((relative, None));
                pending.push(path);
            } else {
                found.push((relative, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    found.sort();
    found
}

// ------------------------------------------------------------------------------------------ the tests

#[test]
fn aliases_live_in_tahoes_file_and_unknown_ones_are_explained() {
    let Some(gw) = start_gateway() else { return };
    // No aliases yet: a bare path needs the default alias.
    gw.run(&["ls"]).fails(
        1,
        &[
            "default alias 'tahoe' does not exist",
            "tessera create-alias tahoe",
        ],
    );

    let out = gw.run(&["create-alias", "tahoe"]).ok();
    assert_eq!(out.text(), "Alias 'tahoe' created\n");
    gw.run(&["create-alias", "tahoe:"])
        .fails(1, &["alias 'tahoe' already exists"]);
    gw.run(&["create-alias", "a b"])
        .fails(1, &["cannot contain spaces"]);
    let aliases_file = gw.node_dir.join("private/aliases");
    let text = std::fs::read_to_string(&aliases_file).unwrap();
    let (name, cap) = text.trim_end().split_once(": ").unwrap();
    assert_eq!(name, "tahoe");
    assert!(cap.starts_with("URI:DIR2:"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&aliases_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // An existing directory by cap; a file cap is refused without being echoed back as a dir.
    let dir = gw.run(&["mkdir"]).ok().text().trim().to_owned();
    assert_eq!(
        gw.run(&["add-alias", "work", &dir]).ok().text(),
        "Alias 'work' added\n"
    );
    gw.run(&["add-alias", "work2", "URI:LIT:nbswy3dp"])
        .fails(1, &["not a directory cap"]);
    gw.run(&["add-alias", "work", &dir])
        .fails(1, &["alias 'work' already exists"]);

    // Lines Tahoe (or a person) wrote by hand are read too.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&aliases_file)
        .unwrap();
    writeln!(file, "# a comment\n\n  hand: {dir}  ").unwrap();
    drop(file);
    let listing = gw.run(&["list-aliases"]).ok().lines();
    assert_eq!(
        listing,
        [
            format!("   hand: {dir}"),
            format!("  tahoe: {cap}"),
            format!("   work: {dir}")
        ]
    );
    let json: serde_json::Value =
        serde_json::from_slice(&gw.run(&["list-aliases", "--json"]).ok().stdout).unwrap();
    assert_eq!(json["work"]["readwrite"], dir.as_str());
    assert!(
        json["work"]["readonly"]
            .as_str()
            .unwrap()
            .starts_with("URI:DIR2-RO:")
    );
    let readonly = gw.run(&["list-aliases", "--readonly-uri"]).ok().text();
    assert!(readonly.contains(&format!(
        "   work: {}",
        json["work"]["readonly"].as_str().unwrap()
    )));

    // Unknown aliases name the known ones; the error never shows a cap.
    let out = gw.run(&["ls", "nope:x"]).fails(
        1,
        &["unknown alias 'nope'", "hand: tahoe: work:", "create-alias nope"],
    );
    assert!(!out.stderr.contains("URI:"), "{}", out.stderr);

    // Tahoe's own CLI reads the file we wrote, and we read what it writes.
    if let Some(tahoe) = &gw.tahoe {
        let theirs = Command::new(tahoe)
            .arg("-d")
            .arg(&gw.node_dir)
            .arg("list-aliases")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(theirs.stdout).unwrap(),
            gw.run(&["list-aliases"]).ok().text()
        );
        let made = Command::new(tahoe)
            .arg("-d")
            .arg(&gw.node_dir)
            .args(["create-alias", "fromtahoe"])
            .output()
            .unwrap();
        assert!(made.status.success());
        gw.run(&["put", "-", "fromtahoe:x"]).ok();
        assert_eq!(gw.ls(&["fromtahoe:"]), ["x"]);
    }
}

#[test]
fn put_and_get_round_trip_byte_for_byte() {
    let Some(gw) = start_gateway() else { return };
    gw.run(&["create-alias", "tahoe"]).ok();
    let work = tempfile::tempdir().unwrap();
    let big = random_bytes(700_000, 1);
    std::fs::write(work.path().join("big.bin"), &big).unwrap();
    std::fs::write(work.path().join("empty"), b"").unwrap();
    let run = |args: &[&str], stdin: Option<&[u8]>| gw.run_in(work.path(), args, stdin);

    // Unlinked: `put FILE` prints a cap that `get CAP` reads back (to a file and to stdout).
    let cap = run(&["put", "big.bin"], None).ok().text().trim().to_owned();
    assert!(cap.starts_with("URI:CHK:"), "{cap}");
    run(&["get", &cap, "out.bin"], None).ok();
    assert_eq!(std::fs::read(work.path().join("out.bin")).unwrap(), big);
    assert_eq!(run(&["get", &cap], None).ok().stdout, big);
    assert_eq!(run(&["get", &cap, "-"], None).ok().stdout, big);

    // Linked, with intermediate directories made; Tahoe's status line on stderr.
    let out = run(&["put", "big.bin", "tahoe:a/b/big.bin"], None).ok();
    assert_eq!(out.text().trim(), cap, "the same convergent cap");
    assert_eq!(out.stderr, "201 Created\n");
    let out = run(&["put", "big.bin", "a/b/big.bin"], None).ok();
    assert_eq!(out.stderr, "200 OK\n", "replacing");
    let out = run(&["get", "a/b/big.bin", "named.bin"], None).ok();
    assert_eq!(out.stderr, "a/b/big.bin retrieved and written to named.bin\n");
    assert_eq!(std::fs::read(work.path().join("named.bin")).unwrap(), big);
    assert_eq!(run(&["get", "tahoe:a/b/big.bin"], None).ok().stdout, big);
    let root = run(&["list-aliases"], None)
        .ok()
        .text()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(
        run(&["get", &format!("{root}/a/b/big.bin")], None).ok().stdout,
        big,
        "CAP/path"
    );
    assert_eq!(
        run(&["get", &format!("{root}:./a/b/big.bin")], None).ok().stdout,
        big,
        "CAP:./path"
    );

    // Standard input, an empty file, and a directory as the destination (trailing slash).
    run(&["put", "-", "tahoe:stdin.txt"], Some(b"from stdin\n")).ok();
    assert_eq!(
        run(&["get", "tahoe:stdin.txt"], None).ok().stdout,
        b"from stdin\n"
    );
    run(&["put", "empty", "tahoe:a/"], None).ok();
    assert_eq!(run(&["get", "tahoe:a/empty", "got-empty"], None).ok().stdout, b"");
    assert_eq!(std::fs::read(work.path().join("got-empty")).unwrap(), b"");
    assert_eq!(gw.ls(&["tahoe:a"]), ["b", "empty"]);

    // Mutable files: created with --mutable or --format, replaced in place through the write cap.
    let mutable = run(&["put", "--mutable", "-", "tahoe:m.txt"], Some(b"version 1"))
        .ok()
        .text()
        .trim()
        .to_owned();
    assert!(mutable.starts_with("URI:SSK:"), "{mutable}");
    run(&["put", "-", &mutable], Some(b"version 2")).ok();
    assert_eq!(run(&["get", "tahoe:m.txt"], None).ok().stdout, b"version 2");
    let mdmf = run(&["put", "--format=mdmf", "big.bin"], None)
        .ok()
        .text()
        .trim()
        .to_owned();
    assert!(mdmf.starts_with("URI:MDMF:"), "{mdmf}");
    assert_eq!(run(&["get", &mdmf], None).ok().stdout, big);
    run(&["put", "--format=xyz", "big.bin"], None).fails(2, &["xyz is an invalid format"]);

    // Errors: each one line saying what is wrong.
    run(&["put", "big.bin", "tahoe:a/b/big.bin/inside"], None).fails(1, &["a file was in the way"]);
    run(&["put", "big.bin", "tahoe:a"], None).fails(1, &["tahoe:a is a directory", "tahoe:a/NAME"]);
    run(&["put", "big.bin", "tahoe:/a/x"], None).fails(1, &["must not start with a slash", "tahoe:a/x"]);
    run(&["put", "missing.bin"], None).fails(1, &["cannot open missing.bin"]);
    run(&["put", "big.bin", "nope:x"], None).fails(1, &["unknown alias 'nope'", "known aliases: tahoe:"]);
    let out = run(&["get", "tahoe:a/nope", "never"], None).fails(1, &["tahoe:a/nope", "No such child: nope"]);
    assert!(!out.stderr.contains("URI:"), "{}", out.stderr);
    assert!(!work.path().join("never").exists() && !work.path().join("never.part").exists());
    run(&["get", "tahoe:a"], None).fails(1, &["tahoe:a is a directory", "tessera ls tahoe:a"]);
    run(&["get", "URI:CHK:not-a-cap"], None).fails(1, &["is not a valid cap"]);
}

#[test]
fn ls_prints_what_tahoe_prints() {
    let Some(gw) = start_gateway() else { return };
    gw.run(&["create-alias", "tahoe"]).ok();
    gw.run_in(&gw.node_dir, &["put", "-", "tahoe:file.txt"], Some(b"12345"))
        .ok();
    gw.run_in(&gw.node_dir, &["put", "-m", "-", "tahoe:mutable.txt"], Some(b"m"))
        .ok();
    gw.run(&["mkdir", "tahoe:dir"]).ok();

    assert_eq!(gw.ls(&[]), ["dir", "file.txt", "mutable.txt"]);
    assert_eq!(gw.ls(&["tahoe:"]), gw.ls(&["tahoe:/"]));
    assert_eq!(gw.ls(&["-F"]), ["dir/", "file.txt", "mutable.txt*"]);
    let long = gw.ls(&["-l"]);
    assert_eq!(long.len(), 3);
    let fields: Vec<Vec<&str>> = long.iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!((fields[0][0], fields[0][1]), ("drwx", "-"));
    assert_eq!((fields[1][0], fields[1][1]), ("-r--", "5"));
    assert_eq!(fields[2][0], "-rw-");
    assert_eq!(
        fields.iter().map(|f| *f.last().unwrap()).collect::<Vec<_>>(),
        ["dir", "file.txt", "mutable.txt"]
    );
    // `Mon DD HH:MM` between the size and the name, right-justified names (Tahoe's layout).
    assert_eq!(fields[1].len(), 6, "{long:?}");
    assert!(long[0].ends_with("      dir"), "{long:?}");
    let with_caps = gw.ls(&["--uri"]);
    assert!(with_caps[0].starts_with("        dir URI:DIR2:"), "{with_caps:?}");
    assert!(with_caps[1].starts_with("   file.txt URI:LIT:"), "{with_caps:?}");

    // A file lists as itself; JSON is the gateway's.
    let file = gw.ls(&["-l", "tahoe:file.txt"]);
    assert!(
        file[0].starts_with("-r-- 5 ") && file[0].ends_with(" file.txt"),
        "{file:?}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&gw.run(&["ls", "--json", "tahoe:"]).ok().stdout).unwrap();
    assert_eq!(json[0], "dirnode");
    assert_eq!(json[1]["children"]["file.txt"][1]["size"], 5);

    gw.run(&["ls", "tahoe:missing"])
        .fails(2, &["No such file or directory", "No such child: missing"]);
    gw.run(&["ls", "tahoe:file.txt/x"])
        .fails(1, &["tahoe:file.txt/x"]);
}

#[test]
fn mkdir_and_unlink() {
    let Some(gw) = start_gateway() else { return };
    gw.run(&["create-alias", "tahoe"]).ok();
    let unlinked = gw.run(&["mkdir"]).ok().text();
    assert!(unlinked.starts_with("URI:DIR2:"), "{unlinked}");
    let mdmf = gw.run(&["mkdir", "--format=MDMF"]).ok().text();
    assert!(mdmf.starts_with("URI:DIR2-MDMF:"), "{mdmf}");
    gw.run(&["mkdir", "--format=CHK"])
        .fails(2, &["CHK is an invalid format"]);

    let deep = gw.run(&["mkdir", "tahoe:a/b/c"]).ok().text();
    assert!(deep.starts_with("URI:DIR2:"), "{deep}");
    assert_eq!(
        gw.run(&["mkdir", "tahoe:a/b/c/"]).ok().text(),
        deep,
        "an existing directory"
    );
    assert_eq!(gw.ls(&["tahoe:a/b"]), ["c"]);
    gw.run_in(&gw.node_dir, &["put", "-", "tahoe:a/f"], Some(b"x"))
        .ok();
    gw.run(&["mkdir", "tahoe:a/f"])
        .fails(1, &["tahoe:a/f is a file, not a directory"]);
    gw.run(&["mkdir", "tahoe:a/f/g"])
        .fails(1, &["a file was in the way"]);

    assert_eq!(gw.run(&["unlink", "tahoe:a/f"]).ok().text(), "200 OK\n");
    assert_eq!(gw.ls(&["tahoe:a"]), ["b"]);
    gw.run(&["unlink", "tahoe:a/f"])
        .fails(1, &["tahoe:a/f", "No such child: f"]);
    gw.run(&["unlink", "tahoe:"]).fails(1, &["a path must be given"]);
    // A read-only directory cannot be changed, and the error says why without showing caps.
    let readonly: serde_json::Value =
        serde_json::from_slice(&gw.run(&["list-aliases", "--json"]).ok().stdout).unwrap();
    let readonly = readonly["tahoe"]["readonly"].as_str().unwrap().to_owned();
    let out = gw
        .run(&["unlink", &format!("{readonly}/a")])
        .fails(1, &["read-only"]);
    assert_eq!(
        out.stderr.matches("URI:").count(),
        1,
        "only the cap typed: {}",
        out.stderr
    );
}

#[test]
fn cp_copies_trees_both_ways_and_links_grid_files_by_cap() {
    let Some(gw) = start_gateway() else { return };
    gw.run(&["create-alias", "tahoe"]).ok();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("tree");
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::create_dir_all(src.join("sübdir/déeper")).unwrap();
    std::fs::write(src.join("top.txt"), b"top\n").unwrap();
    std::fs::write(src.join("sübdir/big.bin"), random_bytes(300_000, 2)).unwrap();
    std::fs::write(src.join("sübdir/déeper/naïve file ☃.txt"), "snow\n").unwrap();
    std::fs::write(src.join("sübdir/déeper/empty-file"), b"").unwrap();
    let run = |args: &[&str]| gw.run_in(work.path(), args, None);

    run(&["cp", "tree", "tahoe:"]).fails(1, &["cannot copy directories without --recursive"]);
    assert_eq!(
        run(&["cp", "-r", "tree", "tahoe:"]).ok().text(),
        "Success: files copied\n"
    );
    assert_eq!(gw.ls(&["tahoe:tree"]), ["empty", "sübdir", "top.txt"]);
    assert_eq!(
        gw.ls(&["tahoe:tree/sübdir/déeper"]),
        ["empty-file", "naïve file ☃.txt"]
    );
    assert!(gw.ls(&["tahoe:tree/empty"]).is_empty());

    // Back to a new local directory: the same tree, byte for byte, empty directory included.
    run(&["cp", "-r", "tahoe:tree", "back"]).ok();
    assert_eq!(tree(&work.path().join("back/tree")), tree(&src));
    // A bare dircap copies its contents, not itself.
    let root = run(&["ls", "--uri", "tahoe:"]).ok().text();
    let tree_cap = root.split_whitespace().nth(1).unwrap().to_owned();
    run(&["cp", "-r", &tree_cap, "contents"]).ok();
    assert_eq!(tree(&work.path().join("contents")), tree(&src));

    // Grid to grid: immutable files are linked by cap, not copied.
    run(&["cp", "-r", "tahoe:tree", "tahoe:copy"]).ok();
    let caps = |dir: &str| {
        let out = run(&["ls", "--uri", dir]).ok().lines();
        out.iter()
            .filter(|l| l.contains("URI:CHK:") || l.contains("URI:LIT:"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(caps("tahoe:copy/tree/sübdir"), caps("tahoe:tree/sübdir"));
    assert_eq!(caps("tahoe:copy/tree/sübdir").len(), 1);

    // Files: local to grid file, grid to local file, several files into a grid directory.
    assert_eq!(
        run(&["cp", "tree/top.txt", "tahoe:one.txt"]).ok().text(),
        "Success: file copied\n"
    );
    assert_eq!(run(&["get", "tahoe:one.txt"]).ok().stdout, b"top\n");
    run(&["cp", "tahoe:tree/sübdir/big.bin", "big-copy"]).ok();
    assert_eq!(
        std::fs::read(work.path().join("big-copy")).unwrap(),
        std::fs::read(src.join("sübdir/big.bin")).unwrap()
    );
    assert_eq!(
        run(&["cp", "tahoe:one.txt", "tahoe:two.txt"]).ok().text(),
        "Success: file linked\n"
    );
    run(&["cp", "tree/top.txt", "big-copy", "tahoe:files"]).ok();
    assert_eq!(gw.ls(&["tahoe:files"]), ["big-copy", "top.txt"]);
    // A mutable file already in the target directory is overwritten in place (its cap stays).
    let mutable = gw
        .run_in(
            work.path(),
            &["put", "-m", "-", "tahoe:mutables/top.txt"],
            Some(b"old"),
        )
        .ok()
        .text();
    run(&["cp", "tree/top.txt", "tahoe:mutables"]).ok();
    let listing = run(&["ls", "--uri", "tahoe:mutables"]).ok().text();
    assert!(listing.contains(mutable.trim()), "{listing} vs {mutable}");
    assert_eq!(run(&["get", "tahoe:mutables/top.txt"]).ok().stdout, b"top\n");
    // --caps-only writes the cap instead of the contents.
    run(&["cp", "--caps-only", "tahoe:one.txt", "one.cap"]).ok();
    let one = run(&["ls", "--uri", "tahoe:one.txt"]).ok().text();
    assert_eq!(
        std::fs::read_to_string(work.path().join("one.cap")).unwrap(),
        one.split_whitespace().nth(1).unwrap()
    );

    // Errors.
    run(&["cp", "tree/missing", "tahoe:"]).fails(1, &["No such file or directory: tree/missing"]);
    run(&["cp", "tree/top.txt", "tree/sübdir/big.bin", "tahoe:one.txt"])
        .fails(1, &["requires the target", "be a directory"]);
    run(&["cp", "-r", "tree", "tahoe:one.txt"]).fails(1, &["cannot copy a directory into a file"]);
    run(&["cp", "tree/top.txt/", "tahoe:x"]).fails(1, &["not a directory, but ends with a slash"]);
    let clash = work.path().join("clash");
    std::fs::create_dir_all(clash.join("tree")).unwrap();
    std::fs::write(clash.join("tree/empty"), b"in the way").unwrap();
    run(&["cp", "-r", "tree", "clash"]).fails(1, &["a file named empty is in the way"]);
    run(&["cp", "tahoe:nope", "x"]).fails(1, &["tahoe:nope", "No such child: nope"]);
}

#[test]
fn mv_and_ln_move_and_copy_links() {
    let Some(gw) = start_gateway() else { return };
    gw.run(&["create-alias", "tahoe"]).ok();
    let put = |path: &str, bytes: &[u8]| gw.run_in(&gw.node_dir, &["put", "-", path], Some(bytes)).ok();
    put("tahoe:a.txt", b"A");
    put("tahoe:b.txt", b"B");
    gw.run(&["mkdir", "tahoe:dir"]).ok();

    // Rename within a directory, move into a directory by a trailing slash, and to a new nested
    // path (whose directories are made).
    assert_eq!(gw.run(&["mv", "tahoe:a.txt", "tahoe:a2.txt"]).ok().text(), "OK\n");
    assert_eq!(gw.ls(&[]), ["a2.txt", "b.txt", "dir"]);
    gw.run(&["mv", "tahoe:a2.txt", "tahoe:dir/"]).ok();
    assert_eq!(gw.ls(&["tahoe:dir"]), ["a2.txt"]);
    gw.run(&["mv", "tahoe:dir/a2.txt", "tahoe:new/deeper/a3.txt"])
        .ok();
    assert_eq!(gw.ls(&["tahoe:new/deeper"]), ["a3.txt"]);
    assert!(gw.ls(&["tahoe:dir"]).is_empty());
    assert_eq!(gw.run(&["get", "tahoe:new/deeper/a3.txt"]).ok().stdout, b"A");
    // Moving a link onto itself keeps it (Tahoe's own mv would unlink it).
    gw.run(&["mv", "tahoe:b.txt", "tahoe:b.txt"]).ok();
    assert_eq!(gw.run(&["get", "b.txt"]).ok().stdout, b"B");
    // Replacing a file is allowed; replacing a directory is not.
    put("tahoe:c.txt", b"C");
    gw.run(&["mv", "tahoe:c.txt", "tahoe:b.txt"]).ok();
    assert_eq!(gw.run(&["get", "b.txt"]).ok().stdout, b"C");
    gw.run(&["mv", "tahoe:b.txt", "tahoe:dir"])
        .fails(1, &["tahoe:dir is a directory", "tahoe:dir/"]);
    assert_eq!(gw.run(&["get", "b.txt"]).ok().stdout, b"C", "the source stays");
    gw.run(&["mv", "tahoe:nope", "tahoe:x"])
        .fails(1, &["tahoe:nope", "No such child: nope"]);
    gw.run(&["mv", "tahoe:b.txt", "nope:x"])
        .fails(1, &["unknown alias 'nope'"]);

    // ln: both names lead to the same object.
    assert_eq!(gw.run(&["ln", "tahoe:b.txt", "tahoe:dir/"]).ok().text(), "OK\n");
    assert_eq!(gw.run(&["get", "tahoe:dir/b.txt"]).ok().stdout, b"C");
    assert_eq!(gw.ls(&["tahoe:"]), ["b.txt", "dir", "new"]);
    gw.run(&["ln", "tahoe:b.txt", "tahoe:new"])
        .fails(1, &["tahoe:new is a directory"]);
    // A directory can be linked (and moved) too.
    gw.run(&["ln", "tahoe:new", "tahoe:dir/new-link"]).ok();
    assert_eq!(gw.ls(&["tahoe:dir/new-link/deeper"]), ["a3.txt"]);
    gw.run(&["mv", "tahoe:new", "tahoe:dir/new-moved"]).ok();
    assert_eq!(gw.ls(&["tahoe:"]), ["b.txt", "dir"]);
    assert_eq!(gw.ls(&["tahoe:dir"]), ["b.txt", "new-link", "new-moved"]);
}

/// `PUT path` with `body` on the gateway (plain HTTP/1.0); the status and body.
fn http_put(node_url: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_send(node_url, "PUT", path, "", body)
}

/// `METHOD path` with `headers` (each ending in CRLF) and `body` on the gateway (plain HTTP/1.0);
/// the status and body.
fn http_send(node_url: &str, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let address = node_url
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Replaces the children of the writable directory `dircap` with `children` (name, cap) as packed
/// bytes written straight into the directory's mutable file, so the names bypass every check a
/// gateway makes: what a hostile directory owner can write.
fn write_raw_children(gw: &TestGateway, dircap: &str, children: &[(&str, &str)]) {
    let entries: Vec<filenode::dirnode::DirEntry> = children
        .iter()
        .map(|(name, cap)| filenode::dirnode::DirEntry {
            name: (*name).to_owned(),
            ro_uri: (*cap).to_owned(),
            rw_uri: None,
            metadata_json: "{}".to_owned(),
        })
        .collect();
    let packed = filenode::dirnode::pack(&entries, None);
    let ssk = dircap.replacen("URI:DIR2:", "URI:SSK:", 1);
    let node_url = std::fs::read_to_string(gw.node_dir.join("node.url")).unwrap();
    let (status, body) = http_put(&node_url, &format!("/uri/{ssk}"), &packed);
    assert!((200..300).contains(&status), "{status} {body}");
}

#[test]
fn cp_r_from_a_hostile_directory_writes_nothing_outside_the_target() {
    let Some(gw) = start_gateway() else { return };
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&[u8]>| gw.run_in(work.path(), args, stdin);
    let file = run(&["put", "-"], Some(b"planted\n"))
        .ok()
        .text()
        .trim()
        .to_owned();
    // A directory holding one file, to be linked under the name `..`.
    let inner = run(&["mkdir"], None).ok().text().trim().to_owned();
    run(&["put", "-", &format!("{inner}/inner.txt")], Some(b"inner\n")).ok();
    let node_url = std::fs::read_to_string(gw.node_dir.join("node.url")).unwrap();
    let json = http_get(&node_url, &format!("/uri/{inner}?t=json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let inner = json[1]["ro_uri"].as_str().unwrap().to_owned();
    let hostile = run(&["mkdir"], None).ok().text().trim().to_owned();
    // An absolute name aimed at a directory the test watches.
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let absolute = outside.join("absolute.txt").to_str().unwrap().to_owned();
    write_raw_children(
        &gw,
        &hostile,
        &[
            ("../escaped.txt", &file),
            (&absolute, &file),
            ("a/b", &file),
            ("", &file),
            (".", &file),
            ("..", &inner),
            ("nul\0name", &file),
            ("fine.txt", &file),
        ],
    );
    // The listing itself still works.
    let listed = run(&["ls", &hostile], None).ok().text();
    assert!(listed.contains("fine.txt"), "{listed}");

    let out = run(&["cp", "-r", &hostile, "dest"], None).ok();
    assert_eq!(out.text(), "Success: files copied\n");
    for (shown, reason) in [
        ("'../escaped.txt'", "contains '/'"),
        (&format!("'{absolute}'"), "absolute"),
        ("'a/b'", "contains '/'"),
        ("''", "empty"),
        ("'.'", "dot segment"),
        ("'..'", "dot segment"),
        ("\"nul\\x00name\"", "NUL"),
    ] {
        let line = format!("skipping the entry named {shown}: ");
        let said = out.stderr.lines().find(|l| l.starts_with(&line));
        assert!(
            said.is_some_and(|l| l.contains(reason)),
            "{line} ... {reason} not in {}",
            out.stderr
        );
    }
    // Only the one good name arrived, and nothing appeared anywhere else.
    assert_eq!(
        tree(&work.path().join("dest")),
        [("fine.txt".to_owned(), Some(b"planted\n".to_vec()))]
    );
    assert_eq!(tree(&outside), []);
    let mut beside: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["dest", "outside"]);
}

/// `POST path` with an urlencoded form on the gateway (plain HTTP/1.0); the status and body.
fn http_post_form(node_url: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    http_send(
        node_url,
        "POST",
        path,
        "Content-Type: application/x-www-form-urlencoded\r\n",
        body.join("&").as_bytes(),
    )
}

/// Names that only a hand-written directory holds are listed quoted with escapes by `tessera ls`
/// (a line break or a terminal escape in a name forges nothing), and the web API unlinks them by
/// their exact name; the directory page offers an Unlink button for each.
#[test]
fn hostile_names_are_listed_quoted_and_can_be_unlinked() {
    let Some(gw) = start_gateway() else { return };
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&[u8]>| gw.run_in(work.path(), args, stdin);
    let file = run(&["put", "-"], Some(b"planted\n"))
        .ok()
        .text()
        .trim()
        .to_owned();
    let hostile = run(&["mkdir"], None).ok().text().trim().to_owned();
    let not_nfc = "e\u{301}t\u{e9}";
    write_raw_children(
        &gw,
        &hostile,
        &[
            ("forged\nfine.txt", &file),
            ("\u{1b}[2Jcleared", &file),
            ("a/b", &file),
            ("", &file),
            ("..", &file),
            (not_nfc, &file),
            ("fine.txt", &file),
        ],
    );
    let out = run(&["ls", &hostile], None).ok();
    let listed = out.text();
    assert!(
        !listed.contains('\u{1b}'),
        "a terminal escape reached the output: {listed:?}"
    );
    let mut lines: Vec<&str> = listed.lines().map(str::trim).collect();
    lines.sort_unstable();
    let mut expected = vec![
        "\"forged\\x0afine.txt\"",
        "\"\\x1b[2Jcleared\"",
        "'a/b'",
        "''",
        "'..'",
        // Tahoe normalizes names to NFC as it unpacks a directory; Tessera lists them as stored.
        if gw.tahoe.is_some() {
            "\u{e9}t\u{e9}"
        } else {
            not_nfc
        },
        "fine.txt",
    ];
    expected.sort_unstable();
    assert_eq!(lines, expected, "{listed}");
    assert!(out.stderr.contains("shown in quotes"), "{}", out.stderr);
    if gw.tahoe.is_some() {
        // Tahoe's gateway normalizes names before it looks them up (and refuses an empty one).
        return;
    }
    let node_url = std::fs::read_to_string(gw.node_dir.join("node.url")).unwrap();
    let page = http_get(&node_url, &format!("/uri/{hostile}/")).unwrap();
    for value in [
        "value=\"a&#x2f;b\"",
        "value=\"\"",
        "value=\"..\"",
        "value=\"fine.txt\"",
    ] {
        assert!(page.contains(value), "no Unlink button with {value}");
    }
    for name in ["a/b", "", "..", not_nfc, "\u{1b}[2Jcleared"] {
        let (status, body) =
            http_post_form(&node_url, &format!("/uri/{hostile}?t=unlink"), &[("name", name)]);
        assert_eq!(status, 200, "unlink {name:?}: {body}");
    }
    let json = http_get(&node_url, &format!("/uri/{hostile}?t=json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut names: Vec<&str> = json[1]["children"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["fine.txt", "forged\nfine.txt"]);
    // Once gone, such a name is refused as a name (nothing could have made it), and a name given
    // in another normal form still finds its NFC child.
    let (status, body) = http_post_form(&node_url, &format!("/uri/{hostile}?t=unlink"), &[("name", "a/b")]);
    assert_eq!(status, 400, "{body}");
    let (status, body) = http_post_form(
        &node_url,
        &format!("/uri/{hostile}?t=unlink"),
        &[("name", "fine.txt")],
    );
    assert_eq!(status, 200, "{body}");
    run(&["put", "-", &format!("{hostile}/caf\u{e9}")], Some(b"nfc\n")).ok();
    let (status, body) = http_post_form(
        &node_url,
        &format!("/uri/{hostile}?t=unlink"),
        &[("name", "cafe\u{301}")],
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_post_form(
        &node_url,
        &format!("/uri/{hostile}?t=unlink"),
        &[("name", "fine.txt")],
    );
    assert_eq!(status, 404);
}
