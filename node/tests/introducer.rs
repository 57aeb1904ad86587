//! A grid wired by an introducer, built with the create-* commands: storage nodes announce
//! themselves, the gateway learns them; with the introducer stopped the gateway keeps working, and
//! a restarted gateway works from its announcement cache alone. With two introducers
//! (`private/introducers.yaml`), the gateway merges what both say and one going away costs nothing.
//! A restarted introducer is announced to at once.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

fn run(args: &[&str], dir: &Path) {
    let out = tessera().args(args).arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Node(Child);

impl Node {
    fn start(dir: &Path, ready_file: &str) -> Node {
        let _ = std::fs::remove_file(dir.join(ready_file));
        let child = tessera()
            .arg("run")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join(ready_file).exists() {
            assert!(Instant::now() < deadline, "{} did not start", dir.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Node(child)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// The gateway's welcome page as JSON (`/?t=json`).
fn welcome_json(gateway: &Path) -> serde_json::Value {
    use std::io::{Read, Write};
    let url = std::fs::read_to_string(gateway.join("node.url")).unwrap();
    let authority = url
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    write!(
        stream,
        "GET /?t=json HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

fn put_get(gateway: &Path, tmp: &Path, seed: u8) {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let input = tmp.join(format!("in{seed}"));
    std::fs::write(&input, &data).unwrap();
    let out = tessera()
        .arg("--node-directory")
        .arg(gateway)
        .arg("put")
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cap = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let output = tmp.join(format!("out{seed}"));
    let out = tessera()
        .arg("--node-directory")
        .arg(gateway)
        .args(["get", &cap])
        .arg(&output)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&output).unwrap(), data);
}

#[test]
fn the_gateway_learns_servers_and_survives_the_introducer_going_away() {
    let tmp = tempfile::tempdir().unwrap();
    let introducer_dir = tmp.path().join("introducer");
    // No web port (the default is one on 127.0.0.1; the operating tests use it).
    run(&["create-introducer", "--webport", "none"], &introducer_dir);
    let cfg = std::fs::read_to_string(introducer_dir.join("tahoe.cfg")).unwrap();
    assert!(!cfg.contains("web.port"), "{cfg}");
    let introducer = Node::start(&introducer_dir, "private/introducer.furl");
    let address = std::fs::read_to_string(introducer_dir.join("private/introducer.furl")).unwrap();
    let address = address.trim();
    assert!(
        address.starts_with("pb://") && address.ends_with("#v=1"),
        "{address}"
    );

    let mut storage = Vec::new();
    for i in 0..3 {
        let dir = tmp.path().join(format!("storage{i}"));
        run(
            &[
                "create-node",
                "--webport",
                "none",
                "--introducer",
                address,
                "--nickname",
                &format!("s{i}"),
            ],
            &dir,
        );
        storage.push(Node::start(&dir, "private/storage.nurl"));
    }
    let gateway = tmp.path().join("gateway");
    let web_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let webport = format!("tcp:{web_port}:interface=127.0.0.1");
    run(
        &["create-client", "--introducer", address, "--webport", &webport],
        &gateway,
    );
    let cfg = gateway.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("shares.happy = 7", "shares.happy = 3");
    std::fs::write(&cfg, text).unwrap();
    let client = Node::start(&gateway, "node.url");
    common::wait_connected(&gateway, 3);
    put_get(&gateway, tmp.path(), 3);
    assert!(gateway.join("private/introducer_default_cache.yaml").exists());
    assert!(!introducer_dir.join("node.url").exists());

    // The introducer goes away: the gateway carries on.
    drop(introducer);
    put_get(&gateway, tmp.path(), 5);

    // A restarted gateway, with the introducer still down, works from its cache.
    drop(client);
    let _client = Node::start(&gateway, "node.url");
    common::wait_connected(&gateway, 3);
    put_get(&gateway, tmp.path(), 7);
    drop(storage);
}

fn create_storage(dir: &Path, introducer: &str, nickname: &str) {
    run(
        &[
            "create-node",
            "--webport",
            "none",
            "--no-client",
            "--introducer",
            introducer,
            "--nickname",
            nickname,
        ],
        dir,
    );
}

fn start_introducer(dir: &Path) -> (Node, String) {
    run(&["create-introducer"], dir);
    let node = Node::start(dir, "private/introducer.furl");
    let address = std::fs::read_to_string(dir.join("private/introducer.furl")).unwrap();
    (node, address.trim().to_owned())
}

fn write_introducers_yaml(node: &Path, entries: &[(&str, &str)]) {
    let mut text = String::from("introducers:\n");
    for (petname, furl) in entries {
        text.push_str(&format!("  {petname}:\n    furl: \"{furl}\"\n"));
    }
    std::fs::write(node.join("private/introducers.yaml"), text).unwrap();
}

#[test]
fn two_introducers_are_merged_and_either_may_go_away() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, first_address) = start_introducer(&tmp.path().join("introducer1"));
    let (_second, second_address) = start_introducer(&tmp.path().join("introducer2"));

    // Each storage node is told one of the two introducers, in tahoe.cfg.
    let mut storage = Vec::new();
    for i in 0..4 {
        let dir = tmp.path().join(format!("storage{i}"));
        let address = if i < 2 { &first_address } else { &second_address };
        create_storage(&dir, address, &format!("s{i}"));
        storage.push(Node::start(&dir, "private/storage.nurl"));
    }
    // The gateway has both: tahoe.cfg's (petname `default`) and introducers.yaml's `second`.
    let gateway = tmp.path().join("gateway");
    let webport = format!("tcp:{}:interface=127.0.0.1", common::free_port());
    run(
        &[
            "create-client",
            "--introducer",
            &first_address,
            "--webport",
            &webport,
        ],
        &gateway,
    );
    write_introducers_yaml(&gateway, &[("second", &second_address)]);
    let cfg = gateway.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("shares.happy = 7", "shares.happy = 3");
    std::fs::write(&cfg, text).unwrap();
    let _client = Node::start(&gateway, "node.url");
    common::wait_connected(&gateway, 4);
    put_get(&gateway, tmp.path(), 3);
    // One cache per introducer, named as Tahoe names them.
    for petname in ["default", "second"] {
        let cache = std::fs::read_to_string(gateway.join(format!("private/introducer_{petname}_cache.yaml")))
            .unwrap();
        assert_eq!(
            cache.matches("anonymous-storage-FURL").count(),
            2,
            "{petname}: {cache}"
        );
    }

    // The welcome page's JSON says which introducers are connected (Tahoe's
    // introducers.statuses), without their swissnums.
    let statuses = |wanted: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let json = welcome_json(&gateway);
            let statuses = json["introducers"]["statuses"].to_string();
            let swissnum = first_address.rsplit('/').next().unwrap().trim_end_matches("#v=1");
            assert!(!statuses.contains(swissnum), "{statuses}");
            if wanted.iter().all(|w| statuses.contains(w)) {
                return;
            }
            assert!(Instant::now() < deadline, "{wanted:?} not in {statuses}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    statuses(&[
        "default: Connected to 127.0.0.1:",
        "second: Connected to 127.0.0.1:",
    ]);

    // The first introducer goes away. A new storage node told both (the first now down) is found
    // through the second, and the servers learned from the first stay connected.
    drop(first);
    statuses(&[
        "default: Not connected to 127.0.0.1:",
        "second: Connected to 127.0.0.1:",
    ]);
    let late = tmp.path().join("storage-late");
    create_storage(&late, &first_address, "late");
    write_introducers_yaml(&late, &[("second", &second_address)]);
    storage.push(Node::start(&late, "private/storage.nurl"));
    common::wait_connected(&gateway, 5);
    put_get(&gateway, tmp.path(), 5);
    let cache = std::fs::read_to_string(gateway.join("private/introducer_second_cache.yaml")).unwrap();
    assert!(cache.contains("late"), "{cache}");
    drop(storage);
}

#[test]
fn a_bad_introducers_yaml_stops_the_node_naming_the_file_and_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let gateway = tmp.path().join("gateway");
    run(
        &["create-client", "--webport", "tcp:0:interface=127.0.0.1"],
        &gateway,
    );
    let file = gateway.join("private/introducers.yaml");
    let cases = [
        (
            "introducers:\n  mine:\n    furl: \"pb://xyzzy@tcp:127.0.0.1:1/sekrit-swiss\"\n",
            "introducer `mine`: its furl is not a Tessera introducer's address",
        ),
        (
            "introducers:\n  mine:\n    furl: x\n    port: 1\n",
            "introducer `mine`: unknown key `port`",
        ),
        ("introducers: [\n", "is not valid YAML"),
    ];
    for (text, expected) in cases {
        std::fs::write(&file, text).unwrap();
        let out = tessera().arg("run").arg(&gateway).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(
            stderr.contains(&file.display().to_string()) && stderr.contains(expected),
            "{text}: {stderr}"
        );
        assert!(!stderr.contains("sekrit"), "{stderr}");
    }
}

#[test]
fn bench_hundred_counts_every_share_and_every_announcement_on_a_small_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tessera()
        .args(["debug", "bench-hundred", "--servers", "10", "--uploads", "20"])
        .args(["--idle-secs", "1"])
        .current_dir(tmp.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 3-of-10 on 10 servers: every server holds one share of every file.
    assert!(stdout.contains("20 uploads of 4096 bytes (3-of-10)"), "{stdout}");
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    assert!(
        stdout.contains("shares per server: 200 in all; min 20, max 20, mean 20.0, stddev 0.0"),
        "{stdout}"
    );
    assert!(stdout.contains("10 publishes"), "{stdout}");
    assert!(
        stdout.contains("gateway idle with 10 servers connected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("re-announcement of all 10 nodes") && stdout.contains("10 publishes (10 kept)"),
        "{stdout}"
    );
}

#[test]
fn a_restarted_introducer_is_announced_to_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let introducer_dir = tmp.path().join("introducer");
    let (introducer, address) = start_introducer(&introducer_dir);
    let mut storage = Vec::new();
    for i in 0..2 {
        let dir = tmp.path().join(format!("storage{i}"));
        create_storage(&dir, &address, &format!("s{i}"));
        storage.push(Node::start(&dir, "private/storage.nurl"));
    }
    let client = |name: &str| {
        let dir = tmp.path().join(name);
        let webport = format!("tcp:{}:interface=127.0.0.1", common::free_port());
        run(
            &["create-client", "--introducer", &address, "--webport", &webport],
            &dir,
        );
        dir
    };
    let first = client("first");
    let _first = Node::start(&first, "node.url");
    common::wait_connected(&first, 2);

    // The introducer restarts (same address, nothing remembered). The storage nodes, which
    // re-announce every 5 minutes, announce to it again at once: a new client without a cache
    // learns them within wait_connected's 30 s.
    drop(introducer);
    let _introducer = Node::start(&introducer_dir, "private/introducer.furl");
    let restarted = std::fs::read_to_string(introducer_dir.join("private/introducer.furl")).unwrap();
    assert_eq!(restarted.trim(), address);
    let second = client("second");
    let _second = Node::start(&second, "node.url");
    common::wait_connected(&second, 2);
    drop(storage);
}
