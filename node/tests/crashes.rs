//! Real `tessera` processes crashing and hanging (issue 14): a gateway killed with SIGKILL in the
//! middle of an upload leaves partial shares on every server, and re-uploading the same file through
//! a new gateway succeeds promptly (the servers take over the vanished upload); a SIGSTOPped storage
//! node costs an upload and a download seconds, not the 30 s request ceiling. Timings are asserted
//! loosely and printed precisely.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

/// A grid of real processes: introducer, storage nodes and a gateway, each `tessera run`, laid out
/// by `tessera devgrid` (run once to create the directories) and then run by the test itself so
/// that it can kill, stop and restart single nodes.
struct Grid {
    root: PathBuf,
    nodes: Vec<(String, Child)>,
}

impl Grid {
    /// `servers` storage nodes whose `[storage]` sections get `storage_extra`, and a gateway with
    /// `shares.happy = happy`.
    fn start(root: &Path, servers: usize, storage_extra: &str, happy: usize) -> Grid {
        // devgrid creates every node directory; it is stopped as soon as it is ready.
        let mut devgrid =
            common::start_devgrid(root, servers, common::free_port()).expect("devgrid did not start");
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(devgrid.id().to_string())
            .status();
        let status = devgrid.wait().unwrap();
        assert!(status.success(), "devgrid: {status}");

        for i in 1..=servers {
            let cfg = root.join(format!("storage{i:02}/tahoe.cfg"));
            let text = std::fs::read_to_string(&cfg).unwrap();
            let text = text.replacen("[storage]\n", &format!("[storage]\n{storage_extra}\n"), 1);
            std::fs::write(&cfg, text).unwrap();
        }
        let cfg = root.join("gateway/tahoe.cfg");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text: String = text
            .lines()
            .map(|line| {
                if line.trim_start().starts_with("shares.happy") {
                    format!("shares.happy = {happy}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(&cfg, text).unwrap();

        let mut grid = Grid {
            root: root.to_path_buf(),
            nodes: Vec::new(),
        };
        grid.spawn("introducer", "private/introducer.furl");
        for i in 1..=servers {
            grid.spawn(&format!("storage{i:02}"), "private/storage.nurl");
        }
        grid.spawn("gateway", "node.url");
        grid.wait_connected(servers);
        grid
    }

    fn spawn(&mut self, name: &str, ready_file: &str) {
        let dir = self.root.join(name);
        let ready = dir.join(ready_file);
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::File::create(dir.join("logs").join("test-stderr.log")).unwrap();
        let mut child = tessera()
            .arg("run")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(dir.join("logs").join("test-stderr.log")).unwrap_or_default();
                panic!("{name} exited early ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.nodes.push((name.to_owned(), child));
    }

    fn child(&mut self, name: &str) -> &mut Child {
        &mut self.nodes.iter_mut().find(|(n, _)| n == name).unwrap().1
    }

    fn signal(&mut self, name: &str, signal: &str) {
        let pid = self.child(name).id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    fn kill9(&mut self, name: &str) {
        self.signal(name, "-KILL");
        self.child(name).wait().unwrap();
        self.nodes.retain(|(n, _)| n != name);
    }

    fn gateway(&self) -> PathBuf {
        self.root.join("gateway")
    }

    fn wait_connected(&self, servers: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = tessera()
                .arg("--node-directory")
                .arg(self.gateway())
                .arg("status")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains(&format!(": {servers} of {servers} storage servers connected")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not see the servers: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn put(&self, file: &Path) -> Result<String, String> {
        let out = tessera()
            .arg("--node-directory")
            .arg(self.gateway())
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

    fn get(&self, cap: &str, out: &Path) {
        let result = tessera()
            .arg("--node-directory")
            .arg(self.gateway())
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

    /// Partial shares in the storage nodes' `incoming/` directories.
    fn incoming(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack: Vec<PathBuf> = std::fs::read_dir(&self.root)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("storage/shares/incoming"))
            .filter(|p| p.is_dir())
            .collect();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    found.push(entry.path());
                }
            }
        }
        found
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            // A stopped process must be continued to act on its SIGKILL promptly and be reaped.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write_file(path: &Path, len: usize, seed: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect();
    std::fs::write(path, data).unwrap();
}

#[test]
fn a_gateway_killed_mid_upload_does_not_block_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut grid = Grid::start(&dir.path().join("grid"), 5, "upload.takeover_after = 2s", 5);
    let file = dir.path().join("big");
    write_file(&file, 96 << 20, 7);

    let mut put = tessera()
        .arg("--node-directory")
        .arg(grid.gateway())
        .arg("put")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the gateway once every server holds a partial share of the file.
    let deadline = Instant::now() + Duration::from_secs(120);
    while grid.incoming().len() < 10 {
        assert!(
            put.try_wait().unwrap().is_none(),
            "the upload ended before the kill"
        );
        assert!(Instant::now() < deadline, "the upload did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    grid.kill9("gateway");
    let killed = Instant::now();
    assert!(!put.wait().unwrap().success());
    let partial = grid.incoming();
    assert!(partial.len() >= 10, "partial shares left: {partial:?}");

    grid.spawn("gateway", "node.url");
    grid.wait_connected(5);
    let restarted = killed.elapsed();
    // The servers take over an upload not written to for 2 s (as configured above).
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(restarted));
    let started = Instant::now();
    let cap = grid
        .put(&file)
        .expect("re-uploading the file through a new gateway");
    let upload = started.elapsed();
    println!(
        "gateway crash: new gateway ready {:.3} s after the kill; re-upload of 96 MiB took {:.3} s; \
         done {:.3} s after the kill",
        restarted.as_secs_f64(),
        upload.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    assert!(
        killed.elapsed() < Duration::from_secs(120),
        "{:?}",
        killed.elapsed()
    );
    assert!(grid.incoming().is_empty(), "{:?}", grid.incoming());
    let back = dir.path().join("back");
    grid.get(&cap, &back);
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&file).unwrap());
}

#[test]
fn a_stopped_storage_node_costs_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let mut grid = Grid::start(&dir.path().join("grid"), 5, "", 4);
    let first = dir.path().join("first");
    write_file(&first, 8 << 20, 1);
    let started = Instant::now();
    let cap = grid.put(&first).unwrap();
    println!(
        "stopped node: baseline upload of 8 MiB: {:.3} s",
        started.elapsed().as_secs_f64()
    );

    grid.signal("storage03", "-STOP");
    let second = dir.path().join("second");
    write_file(&second, 8 << 20, 2);
    let started = Instant::now();
    let result = grid.put(&second);
    let upload = started.elapsed();
    println!(
        "stopped node: upload of 8 MiB with 1 of 5 nodes stopped: {:.3} s",
        upload.as_secs_f64()
    );
    result.unwrap();
    assert!(upload < Duration::from_secs(15), "{upload:?}");

    grid.signal("storage05", "-STOP");
    let back = dir.path().join("back");
    let started = Instant::now();
    grid.get(&cap, &back);
    let download = started.elapsed();
    println!(
        "stopped node: download of 8 MiB with 2 of 5 nodes stopped: {:.3} s",
        download.as_secs_f64()
    );
    assert!(download < Duration::from_secs(15), "{download:?}");
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&first).unwrap());
    grid.signal("storage03", "-CONT");
    grid.signal("storage05", "-CONT");
}
