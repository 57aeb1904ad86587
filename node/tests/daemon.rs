//! `tessera create-node` and `tessera run` as an operator uses them: the node directory's shape,
//! startup errors, serving the storage protocol over HTTPS, clean shutdown on SIGTERM, and crash
//! safety (kill -9 mid-upload, restart: no partial share, complete shares intact).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use storage::StorageClient;
use storage::api::{LeaseSecrets, ShareKind, UploadSecret};
use storage::http::client::HttpStorageClient;
use storage::nurl::Nurl;
use storage::{StorageError, StorageIndex};

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

/// Creates a storage node without a web gateway (tests run in parallel; 3456 would clash).
fn create_node(dir: &Path, extra: &[&str]) {
    let out = tessera()
        .arg("create-node")
        .args(["--webport", "none"])
        .args(extra)
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

struct Running {
    child: Child,
    dir: PathBuf,
}

impl Running {
    fn start(dir: &Path) -> Running {
        let _ = std::fs::remove_file(dir.join("private/storage.nurl"));
        let child = tessera()
            .arg("run")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut running = Running {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join("private/storage.nurl").exists() {
            if let Some(status) = running.child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                running
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("tessera run exited early ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "the node did not start in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        running
    }

    fn client(&self) -> HttpStorageClient {
        let text = std::fs::read_to_string(self.dir.join("private/storage.nurl")).unwrap();
        let nurl: Nurl = text.lines().next().unwrap().parse().unwrap();
        HttpStorageClient::new(&nurl).unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the node did not stop in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lease() -> LeaseSecrets {
    LeaseSecrets {
        renew: [1; 32],
        cancel: [2; 32],
    }
}

#[test]
fn create_node_makes_a_tahoe_shaped_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    create_node(&dir, &["--nickname", "alpha", "--listen-port", "0"]);
    let config = std::fs::read_to_string(dir.join("tahoe.cfg")).unwrap();
    assert!(config.contains("[node]\nnickname = alpha\n"), "{config}");
    assert!(config.contains("[storage]\nenabled = true\n"), "{config}");
    assert!(config.contains("reserved_space = 1G"), "{config}");
    assert!(config.contains("[sftpd]\n"), "{config}");
    let host_key = std::fs::read_to_string(dir.join("private/ssh_host_ed25519_key.pub")).unwrap();
    assert!(host_key.starts_with("ssh-ed25519 "), "{host_key}");
    for file in [
        "node.pem",
        "node.privkey",
        "node.pubkey",
        "storage.furl",
        "secret",
        "convergence",
        "ssh_host_ed25519_key",
    ] {
        let meta = std::fs::metadata(dir.join("private").join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
    assert_eq!(
        std::fs::metadata(dir.join("private"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let pem = std::fs::read_to_string(dir.join("private/node.pem")).unwrap();
    assert!(pem.contains("PRIVATE KEY") && pem.contains("CERTIFICATE"));
    // A second create-node on the same directory refuses.
    let out = tessera().arg("create-node").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists and is not empty"));
}

#[test]
fn run_refuses_what_is_not_a_node_and_bad_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tessera().arg("run").arg(tmp.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a Tessera node directory") && err.contains("create-node"),
        "{err}"
    );

    let dir = tmp.path().join("node");
    create_node(&dir, &[]);
    let cfg = dir.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("readonly = false", "readonly = false\nread_only = true"),
    )
    .unwrap();
    let out = tessera().arg("run").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown key `read_only`") && err.contains("tahoe.cfg"),
        "{err}"
    );
}

#[test]
fn run_reports_a_taken_port() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tmp.path().join("node");
    create_node(&dir, &["--listen-port", &port]);
    let out = tessera().arg("run").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("port {port} is already in use")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_node_serves_storage_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    create_node(&dir, &["--nickname", "beta"]);
    let node = Running::start(&dir);
    let client = node.client();
    let version = client.version().await.unwrap();
    assert!(version.available_space > 0);
    assert!(String::from_utf8_lossy(&version.application_version).starts_with("tessera/"));

    let si = StorageIndex([7; 16]);
    let upload = UploadSecret(vec![3; 32]);
    let shares: BTreeSet<u16> = [0, 1].into();
    let allocation = client
        .allocate_buckets(si, &lease(), &upload, &shares, 10)
        .await
        .unwrap();
    assert_eq!(allocation.allocated, shares);
    let progress = client
        .write_share(si, 0, &upload, 0, bytes::Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    assert!(progress.complete);
    assert_eq!(
        &client
            .read_share(ShareKind::Immutable, si, 0, 2, 3)
            .await
            .unwrap()[..],
        b"234"
    );
    assert!(dir.join("logs/tessera.log").exists());

    node.signal("TERM");
    let status = node.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_upload_leaves_no_partial_share() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    create_node(&dir, &[]);
    let node = Running::start(&dir);
    let client = node.client();
    let complete_si = StorageIndex([1; 16]);
    let partial_si = StorageIndex([2; 16]);
    let upload = UploadSecret(vec![9; 32]);
    let one: BTreeSet<u16> = [0].into();
    client
        .allocate_buckets(complete_si, &lease(), &upload, &one, 6)
        .await
        .unwrap();
    client
        .write_share(complete_si, 0, &upload, 0, bytes::Bytes::from_static(b"whole!"))
        .await
        .unwrap();
    client
        .allocate_buckets(partial_si, &lease(), &upload, &one, 1000)
        .await
        .unwrap();
    client
        .write_share(partial_si, 0, &upload, 0, bytes::Bytes::from(vec![5u8; 500]))
        .await
        .unwrap();
    node.signal("KILL");
    let _ = node.wait(Duration::from_secs(10));

    let node = Running::start(&dir);
    let client = node.client();
    assert!(
        client
            .list_shares(ShareKind::Immutable, partial_si)
            .await
            .unwrap()
            .is_empty()
    );
    match client
        .read_share(ShareKind::Immutable, partial_si, 0, 0, 10)
        .await
    {
        Err(StorageError::NotFound(_)) => {}
        other => panic!("a partial upload survived a crash: {other:?}"),
    }
    assert_eq!(
        client
            .list_shares(ShareKind::Immutable, complete_si)
            .await
            .unwrap(),
        one
    );
    assert_eq!(
        &client
            .read_share(ShareKind::Immutable, complete_si, 0, 0, 100)
            .await
            .unwrap()[..],
        b"whole!"
    );
    // The discarded upload can be started afresh.
    let again = client
        .allocate_buckets(partial_si, &lease(), &upload, &one, 1000)
        .await
        .unwrap();
    assert_eq!(again.allocated, one);
}
