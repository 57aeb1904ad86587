//! A grid whose storage nodes are `tessera run` processes in network namespaces of their own, each
//! with its own address on a bridge this test makes (10.231.S.0/24), so that nothing may assume
//! 127.0.0.1: the introducer and the gateway run in this namespace on the bridge's address. The
//! test checks the announced NURLs and web addresses, a `servers.yaml` built from what the nodes
//! say, the gateway's server list and its links, FTP's PASV address, and an upload and download
//! through the gateway (and through a second client that knows the servers from `servers.yaml`
//! alone).
//!
//! It needs root (to make namespaces, a bridge and veth pairs); without it, it says so and passes.
//! Everything it makes is removed on drop, even when it fails.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const STORAGE_NODES: usize = 3;
const STORAGE_PORT: u16 = 3457;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces, bridge and veth pairs this test made; removed on drop.
struct Network {
    subnet: u8,
    bridge: String,
    namespaces: Vec<String>,
    veths: Vec<String>,
}

impl Network {
    /// A bridge with `10.231.S.1/24` in this namespace and `count` namespaces, namespace `i` with
    /// `10.231.S.(10+i)/24` on a veth pair to the bridge.
    fn make(count: usize) -> Result<Network, String> {
        let tag = std::process::id() % 100_000;
        let taken = Command::new("ip")
            .args(["-o", "addr", "show"])
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        let taken = String::from_utf8_lossy(&taken.stdout).into_owned();
        let subnet = (0..250u32)
            .map(|i| ((tag + i) % 250 + 1) as u8)
            .find(|s| !taken.contains(&format!("10.231.{s}.")))
            .ok_or("no free 10.231.x.0/24")?;
        let mut net = Network {
            subnet,
            bridge: format!("tbr{tag}"),
            namespaces: Vec::new(),
            veths: Vec::new(),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway_address()),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..count {
            let ns = format!("tessera-t{tag}-{i}");
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let (outside, inside) = (format!("tvh{tag}x{i}"), format!("tvn{tag}x{i}"));
            ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
            net.veths.push(outside.clone());
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&["link", "set", &outside, "master", &net.bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let address = format!("{}/24", net.node_address(i));
            for args in [
                vec![
                    "netns", "exec", &ns, "ip", "addr", "add", &address, "dev", &inside,
                ],
                vec!["netns", "exec", &ns, "ip", "link", "set", &inside, "up"],
                vec!["netns", "exec", &ns, "ip", "link", "set", "lo", "up"],
            ] {
                ip(&args)?;
            }
        }
        Ok(net)
    }

    fn gateway_address(&self) -> String {
        format!("10.231.{}.1", self.subnet)
    }

    fn node_address(&self, i: usize) -> String {
        format!("10.231.{}.{}", self.subnet, 10 + i)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // A namespace takes its end of a veth pair with it, and the pair's other end too.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        for veth in &self.veths {
            let _ = ip(&["link", "del", veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

fn tessera() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command.env_remove("RUST_LOG").env_remove("TESSERA_LOG");
    command
}

fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `tessera run` process (in a namespace: through `ip netns exec`, which becomes it), stopped
/// on drop.
struct Node(Child);

impl Node {
    fn start(dir: &Path, namespace: Option<&str>, ready_file: &str) -> Node {
        let _ = std::fs::remove_file(dir.join(ready_file));
        let mut command = match namespace {
            Some(ns) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", ns])
                    .arg(env!("CARGO_BIN_EXE_tessera"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_tessera")),
        };
        let child = command
            .arg("run")
            .arg(dir)
            .env_remove("RUST_LOG")
            .env_remove("TESSERA_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let mut node = Node(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join(ready_file).exists() {
            assert!(
                node.0.try_wait().unwrap().is_none(),
                "{} exited at start: {}",
                dir.display(),
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "{} did not start", dir.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        node
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

/// A free port on `address` (in this namespace).
fn free_port(address: &str) -> u16 {
    std::net::TcpListener::bind((address, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn set_cfg(dir: &Path, from: &str, to: &str) {
    let cfg = dir.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&cfg, text.replacen(from, to, 1)).unwrap();
}

fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{url}: {text}");
    text
}

/// A gateway in this namespace with its web port on `address`, shares 2-of-3.
fn create_gateway(dir: &Path, address: &str, introducer: Option<&str>) -> u16 {
    let port = free_port(address);
    let mut command = tessera();
    command
        .args(["create-client", "--webport"])
        .arg(format!("tcp:{port}:interface={address}"));
    if let Some(introducer) = introducer {
        command.args(["--introducer", introducer]);
    }
    run_ok(command.arg(dir));
    let cfg = dir.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace("shares.needed = 3", "shares.needed = 2")
        .replace("shares.happy = 7", "shares.happy = 3")
        .replace("shares.total = 10", "shares.total = 3");
    std::fs::write(&cfg, text).unwrap();
    port
}

/// Logs in to the FTP server at `address:port` and asks for passive mode: the 227 reply.
fn ftp_pasv(address: &str, port: u16, user: &str, password: &str) -> String {
    let stream = std::net::TcpStream::connect((address, port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut reply = || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line
    };
    assert!(reply().starts_with("220"));
    writeln!(writer, "USER {user}\r").unwrap();
    assert!(reply().starts_with("331"));
    writeln!(writer, "PASS {password}\r").unwrap();
    let login = reply();
    assert!(login.starts_with("230"), "{login}");
    writeln!(writer, "PASV\r").unwrap();
    let pasv = reply();
    writeln!(writer, "QUIT\r").unwrap();
    pasv
}

#[test]
fn storage_nodes_in_their_own_network_namespaces_are_reached_at_their_own_addresses() {
    let net = match Network::make(STORAGE_NODES) {
        Ok(net) => net,
        Err(why) => {
            eprintln!("skipped: cannot make network namespaces here (root is needed): {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let here = net.gateway_address();

    // The introducer, in this namespace on the bridge's address.
    let introducer_dir = tmp.path().join("introducer");
    let port = free_port(&here);
    run_ok(
        tessera()
            .args(["create-introducer", "--listen-port", &port.to_string()])
            .args(["--location", &format!("{here}:{port}")])
            .arg(&introducer_dir),
    );
    set_cfg(
        &introducer_dir,
        &format!("tub.port = tcp:{port}\n"),
        &format!("tub.port = tcp:{port}:interface={here}\n"),
    );
    let _introducer = Node::start(&introducer_dir, None, "private/introducer.furl");
    let introducer = std::fs::read_to_string(introducer_dir.join("private/introducer.furl")).unwrap();
    let introducer = introducer.trim().to_owned();
    assert!(introducer.contains(&format!("@{here}:{port}/")), "{introducer}");

    // Storage nodes, each in its namespace, listening on every interface there (the same port in
    // each), with its own address as its location.
    let mut storage = Vec::new();
    let mut storage_dirs = Vec::new();
    for i in 0..STORAGE_NODES {
        let dir = tmp.path().join(format!("storage{i}"));
        let location = format!("{}:{STORAGE_PORT}", net.node_address(i));
        run_ok(
            tessera()
                .args(["create-node", "--no-client", "--webport", "tcp:0"])
                .args(["--listen-port", &STORAGE_PORT.to_string()])
                .args(["--location", &location, "--introducer", &introducer])
                .args(["--nickname", &format!("ns{i}")])
                .arg(&dir),
        );
        storage.push(Node::start(
            &dir,
            Some(&net.namespaces[i]),
            "private/storage.nurl",
        ));
        let nurl = std::fs::read_to_string(dir.join("private/storage.nurl")).unwrap();
        assert!(nurl.contains(&format!("@{location}/")), "{nurl}");
        assert!(!nurl.contains("127.0.0.1"), "{nurl}");
        let furl = std::fs::read_to_string(dir.join("private/storage.furl")).unwrap();
        assert!(furl.contains(&location) && !furl.contains("127.0.0.1"), "{furl}");
        storage_dirs.push(dir);
    }

    // The gateway, in this namespace on the bridge's address, with FTP there too.
    let gateway = tmp.path().join("gateway");
    let web_port = create_gateway(&gateway, &here, Some(&introducer));
    let ftp_port = free_port(&here);
    set_cfg(
        &gateway,
        "enabled = false\nport = 127.0.0.1:8021\n",
        &format!("enabled = true\nport = tcp:{ftp_port}:interface={here}\ntls = optional\n"),
    );
    let _gateway_node = Node::start(&gateway, None, "node.url");
    let node_url = std::fs::read_to_string(gateway.join("node.url")).unwrap();
    assert_eq!(node_url.trim(), format!("http://{here}:{web_port}/"));
    common::wait_connected(&gateway, STORAGE_NODES);

    // What the gateway learned names the nodes' own addresses: their NURLs, and their web
    // addresses (a port on every interface is announced at the location's host).
    let cache = std::fs::read_to_string(gateway.join("private/introducer_default_cache.yaml")).unwrap();
    let welcome = http_get(&format!("{}?t=json", node_url.trim()));
    let page = http_get(node_url.trim());
    for (i, dir) in storage_dirs.iter().enumerate() {
        let address = net.node_address(i);
        assert!(cache.contains(&format!("@{address}:{STORAGE_PORT}/")), "{cache}");
        let node_web = std::fs::read_to_string(dir.join("node.url")).unwrap();
        let web_port = node_web.trim().rsplit(':').next().unwrap().trim_end_matches('/');
        let announced = format!("http://{address}:{web_port}/");
        assert!(cache.contains(&announced), "{announced} not in {cache}");
        assert!(
            welcome.contains(&format!("\"web_url\":\"{announced}\"")),
            "{welcome}"
        );
        // (The page escapes `/` in attributes.)
        let href = format!("href=\"{announced}storage\"").replace('/', "&#x2f;");
        assert!(page.contains(&href), "{href} not in {page}");
        // The link leads to the node's status, across the bridge.
        assert!(http_get(&format!("{announced}storage?t=json")).contains("\"tessera\""));
    }
    assert!(!cache.contains("127.0.0.1"), "{cache}");
    assert!(!welcome.contains("127.0.0.1"), "{welcome}");

    // Upload and download through the gateway.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let input = tmp.path().join("input");
    std::fs::write(&input, &data).unwrap();
    let cap = run_ok(
        tessera()
            .arg("--node-directory")
            .arg(&gateway)
            .arg("put")
            .arg(&input),
    )
    .trim()
    .to_owned();
    let get = |node: &Path, out: &str| -> Vec<u8> {
        let output = tmp.path().join(out);
        run_ok(
            tessera()
                .arg("--node-directory")
                .arg(node)
                .args(["get", &cap])
                .arg(&output),
        );
        std::fs::read(&output).unwrap()
    };
    assert!(get(&gateway, "out1") == data, "the download differs");
    // Every node holds a share (2-of-3 on 3 servers).
    for dir in &storage_dirs {
        let shares = dir.join("storage/shares");
        assert!(
            std::fs::read_dir(&shares).unwrap().next().is_some(),
            "{} holds no share",
            dir.display()
        );
    }

    // A second client that knows the servers from servers.yaml alone (built from what each node
    // says of itself) reads the file.
    let second: PathBuf = tmp.path().join("second");
    create_gateway(&second, &here, None);
    let mut yaml = String::from("storage:\n");
    for (i, dir) in storage_dirs.iter().enumerate() {
        let read = |name: &str| std::fs::read_to_string(dir.join("private").join(name)).unwrap();
        let key = read("node.pubkey")
            .trim()
            .trim_start_matches("pub-v0-")
            .to_owned();
        yaml.push_str(&format!(
            "  v0-{key}:\n    ann:\n      nickname: ns{i}\n      anonymous-storage-FURL: \"{}\"\n      \
             anonymous-storage-NURLs:\n        - \"{}\"\n      permutation-seed-base32: {key}\n",
            read("storage.furl").trim(),
            read("storage.nurl").trim(),
        ));
    }
    assert!(!yaml.contains("127.0.0.1"), "{yaml}");
    std::fs::write(second.join("private/servers.yaml"), yaml).unwrap();
    let _second_node = Node::start(&second, None, "node.url");
    common::wait_connected(&second, STORAGE_NODES);
    assert!(
        get(&second, "out2") == data,
        "the download through servers.yaml differs"
    );

    // FTP's PASV names the address the client reached, not 127.0.0.1.
    let password = "netns-test-password";
    let mut add = tessera();
    add.arg("--node-directory")
        .arg(&gateway)
        .args(["admin", "add-user", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = add.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pasv = ftp_pasv(&here, ftp_port, "alice", password);
    let expected = format!("({},", here.replace('.', ","));
    assert!(pasv.starts_with("227") && pasv.contains(&expected), "{pasv}");

    drop(storage);
    drop(net);
}
