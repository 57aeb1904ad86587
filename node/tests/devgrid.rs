//! The real `tessera devgrid`, used as a person would: start it, `tessera put` and `get` files of
//! several sizes, check `status`, restart the grid on the same directory and read an old cap, and
//! see an upload fail clearly when too few servers are up.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

struct Devgrid(Child);

impl Devgrid {
    fn start(dir: &Path, servers: usize) -> Devgrid {
        let web_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tessera()
            .args([
                "devgrid",
                "--servers",
                &servers.to_string(),
                "--web-port",
                &web_port.to_string(),
                "--sftp-port",
                "0",
                "--ftp-port",
                "0",
                "--dir",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut output = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains("Press Ctrl-C to stop the grid") {
                // The introducer's status page is printed with its address (its node.url).
                let url = std::fs::read_to_string(dir.join("introducer").join("node.url")).unwrap();
                let wanted = format!("  introducer status: {}", url.trim());
                assert!(output.contains(&wanted), "no {wanted:?} in {output:#?}");
                return Devgrid(child);
            }
            output.push(line);
            assert!(Instant::now() < deadline, "devgrid did not become ready");
        }
        panic!("devgrid exited before it was ready: {:?}", child.wait());
    }

    fn stop(mut self) {
        let status = Command::new("kill")
            .arg("-INT")
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "devgrid exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "devgrid did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Devgrid {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn put(gateway: &Path, file: &Path) -> Result<String, String> {
    let out = tessera()
        .arg("--node-directory")
        .arg(gateway)
        .arg("put")
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn get(gateway: &Path, cap: &str, out: &Path) {
    let result = tessera()
        .arg("--node-directory")
        .arg(gateway)
        .args(["get", cap])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn devgrid_put_get_status_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("grid");
    let gateway = dir.join("gateway");
    let grid = Devgrid::start(&dir, 5);
    let mut caps = Vec::new();
    for size in [0usize, 1, 55, 56, 1 << 20, (1 << 20) + 3, 3 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let input = tmp.path().join(format!("in-{size}"));
        std::fs::write(&input, &data).unwrap();
        let cap = put(&gateway, &input).unwrap();
        assert!(
            cap.starts_with(if size <= 55 { "URI:LIT:" } else { "URI:CHK:" }),
            "{cap}"
        );
        let output = tmp.path().join(format!("out-{size}"));
        get(&gateway, &cap, &output);
        assert_eq!(std::fs::read(&output).unwrap(), data, "size {size}");
        caps.push((cap, data));
    }
    let status = tessera()
        .arg("--node-directory")
        .arg(&gateway)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8(status.stdout).unwrap();
    assert!(text.contains("5 of 5 storage servers connected"), "{text}");
    grid.stop();

    // A second devgrid on the same directory reuses it: old caps still work.
    let grid = Devgrid::start(&dir, 5);
    let (cap, data) = caps.last().unwrap();
    let output = tmp.path().join("again");
    get(&gateway, cap, &output);
    assert_eq!(&std::fs::read(&output).unwrap(), data);

    // With three of five storage nodes stopped, happiness (5 here) cannot be met: a clear error.
    for name in ["storage01", "storage02", "storage03"] {
        let pattern = format!("tessera run {}", dir.join(name).display());
        let _ = Command::new("pkill")
            .arg("-TERM")
            .arg("-f")
            .arg(&pattern)
            .status();
    }
    std::thread::sleep(Duration::from_millis(500));
    let input = tmp.path().join("fresh");
    std::fs::write(&input, vec![42u8; 100_000]).unwrap();
    let err = put(&gateway, &input).unwrap_err();
    assert!(
        err.contains("upload failed") && err.contains("shares.happy"),
        "{err}"
    );
    drop(grid);
}

/// Processes whose command line is `tessera run DIR/...` for a node of the grid in `dir`.
fn nodes_running(dir: &Path) -> Vec<String> {
    let prefix = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap() {
        let Ok(cmdline) = std::fs::read(entry.unwrap().path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.len() >= 3 && args[1] == "run" && args[2].starts_with(prefix) {
            found.push(args[2].clone());
        }
    }
    found
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "devgrid did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ctrl-C the moment devgrid says it is ready, and Ctrl-C in the middle of its startup, both stop
/// every node it started (a signal that arrived before devgrid watched for it used to kill devgrid
/// alone and leave its nodes running, holding their ports).
#[test]
fn interrupted_devgrid_leaves_no_node_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("grid");
    let mut grid = Devgrid::start(&dir, 2);
    let pid = grid.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_exit(&mut grid.0);
    assert!(status.success(), "devgrid exited with {status}");
    assert_eq!(nodes_running(&dir), Vec::<String>::new());

    // Again, interrupted once its storage nodes exist but before the gateway is ready.
    let mut child = tessera()
        .args([
            "devgrid",
            "--servers",
            "2",
            "--web-port",
            "0",
            "--sftp-port",
            "0",
            "--ftp-port",
            "0",
            "--dir",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes_running(&dir).is_empty() {
        assert!(Instant::now() < deadline, "devgrid started no node");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_exit(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !status.success() && stderr.contains("interrupted during startup"),
        "{status} {stderr}"
    );
    assert_eq!(nodes_running(&dir), Vec::<String>::new());
}
