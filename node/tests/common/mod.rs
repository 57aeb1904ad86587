//! Helpers shared by the `tessera` binary's integration tests (each test file is its own crate and
//! includes this module with `mod common;`).

/// A port on 127.0.0.1 that was free a moment ago (a test that loses the race retries), chosen
/// as `tessera create-node` chooses a node's port: outside the kernel's ephemeral range, so that
/// no outgoing connection or port-0 bind of a test running beside takes it before the node that is
/// given it binds it, or while that node is stopped to be restarted.
#[allow(dead_code, reason = "not every test file needs a free port")]
pub(crate) fn free_port() -> u16 {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut fields = text.split_whitespace().map(|f| f.parse::<u16>().ok());
            Some((fields.next()??, fields.next()??))
        })
        .unwrap_or((49152, 65535));
    for _ in 0..200 {
        let port: u16 = rand::random_range(10000..=u16::MAX);
        if !(low..=high).contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}

/// Starts `tessera devgrid` with `servers` storage nodes in `dir` (web port `web_port`, SFTP and
/// FTP on any free port) and returns it once it says it is ready, with the rest of its output
/// drained; `None` if it exited first (a port taken meanwhile: the caller retries).
#[allow(dead_code, reason = "not every test file starts a devgrid")]
pub(crate) fn start_devgrid(
    dir: &std::path::Path,
    servers: usize,
    web_port: u16,
) -> Option<std::process::Child> {
    start_devgrid_with(dir, servers, web_port, &[]).map(|(child, _)| child)
}

/// [`start_devgrid`] with more devgrid options (`--tls`, `--webdav-port P`); also returns the
/// lines devgrid printed up to its ready line.
#[allow(dead_code, reason = "not every test file starts a devgrid")]
pub(crate) fn start_devgrid_with(
    dir: &std::path::Path,
    servers: usize,
    web_port: u16,
    options: &[&str],
) -> Option<(std::process::Child, Vec<String>)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "devgrid",
            "--servers",
            &servers.to_string(),
            "--web-port",
            &web_port.to_string(),
        ])
        .args(["--sftp-port", "0", "--ftp-port", "0"])
        .args(options)
        .arg("--dir")
        .arg(dir)
        // The nodes log at the level their tahoe.cfg gives (tests read the logs), whatever the
        // environment the tests run in says.
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn tessera devgrid");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("Press Ctrl-C to stop the grid") {
            std::thread::spawn(move || lines.for_each(drop));
            return Some((child, printed));
        }
        printed.push(line);
    }
    let _ = child.wait();
    None
}

/// Everything in a node's log: `logs/tessera.log` and its rotated files (`tessera.log.N`, oldest
/// first), so that a test of what never reaches the log reads all of it.
#[allow(dead_code, reason = "not every test file reads a log")]
pub(crate) fn read_logs(node_dir: &std::path::Path) -> String {
    let logs = node_dir.join("logs");
    let mut rotated: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(&logs)
        .expect("the node's logs/ folder")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let n = path
                .file_name()?
                .to_str()?
                .strip_prefix("tessera.log.")?
                .parse()
                .ok()?;
            Some((n, path))
        })
        .collect();
    rotated.sort();
    let mut text = String::new();
    for (_, path) in rotated.iter().rev() {
        text.push_str(&std::fs::read_to_string(path).expect("a rotated log file"));
    }
    text.push_str(&std::fs::read_to_string(logs.join("tessera.log")).expect("logs/tessera.log"));
    text
}

/// How many storage servers `tessera status` says the gateway in `gateway` is connected to (0
/// when it cannot tell).
#[allow(dead_code, reason = "not every test file runs a gateway with several servers")]
pub(crate) fn connected(gateway: &std::path::Path) -> usize {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_LOG")
        .arg("--node-directory")
        .arg(gateway)
        .arg("status")
        .output()
        .expect("run tessera status");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits (30 s at most) until the gateway in `gateway` is connected to `count` servers.
#[allow(dead_code, reason = "not every test file runs a gateway with several servers")]
pub(crate) fn wait_connected(gateway: &std::path::Path, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while connected(gateway) < count {
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not see {count} servers",
            gateway.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Interrupts `child` (SIGINT, as Ctrl-C does) and waits for it to exit: 60 s at most, then kills it.
#[allow(dead_code, reason = "not every test file runs a long-lived process")]
pub(crate) fn interrupt_and_wait(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("wait for the child").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.wait();
}

/// Runs rclone with no config file and `home` as its home, asserting that it succeeds; its output.
#[allow(dead_code, reason = "not every test file drives rclone")]
pub(crate) fn rclone(home: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("rclone")
        .args(["--config", "/nonexistent/rclone.conf", "-q", "--retries", "1"])
        .args(args)
        .env("HOME", home)
        .output()
        .expect("run rclone");
    assert!(
        out.status.success(),
        "rclone {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("rclone's output is UTF-8")
}

/// Whether `program` runs (`program --version`): real clients a test drives when present.
#[allow(dead_code, reason = "each test binary uses its own part of the helpers")]
pub(crate) fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// `len` bytes of a xorshift stream from `seed`: test contents that compress badly.
#[allow(dead_code, reason = "each test binary uses its own part of the helpers")]
pub(crate) fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}
