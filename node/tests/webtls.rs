//! TLS on the web ports (issue 17: "TLS as for the web port"): a gateway whose `[node] web.port`
//! and `[webdav] port` are Tahoe's `ssl:0:privateKey=…:certKey=…` endpoint, joined to a real
//! `tessera devgrid`, checked with real clients trusting only the test's own certificate: curl
//! (the welcome page, a PUT and GET through `/uri`, WebDAV PROPFIND, PUT and GET with the devgrid's
//! demo account over basic auth) and rclone's webdav backend (a tree up and back byte for byte);
//! plain HTTP to either TLS port gets no answer, a client that does not trust the certificate is
//! refused, and a missing or wrong key or certificate stops the node with an error naming the key
//! and the file. The gateway runs with `[client] convergence = false`, so its WebDAV PUTs stream
//! into the encoder (no spool) with real clients too. The `tessera` CLI works against it through
//! the node directory (pinning the configured certificate), is refused at its `--node-url` until
//! `--ca-file` or `TESSERA_CA_FILE` trusts the certificate; and `tessera devgrid --tls` makes a
//! gateway that curl (with `--cacert`) and the CLI use, keeping its certificate across runs.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;
use common::{data, installed};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tessera(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .arg(dir)
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_LOG")
        .output()
        .unwrap()
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A `tessera run` of a node directory, interrupted on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        common::interrupt_and_wait(&mut self.0);
    }
}

fn run_node(dir: &Path) -> Running {
    for file in ["node.url", "webdav.url"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("run")
        .arg(dir)
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(dir.join("node.url").exists() && dir.join("webdav.url").exists()) {
        assert!(
            running.0.try_wait().unwrap().is_none(),
            "the TLS gateway exited: {}",
            common::read_logs(dir)
        );
        assert!(Instant::now() < deadline, "the TLS gateway did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    running
}

#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// One curl request trusting only `cacert` (if given): `Err(stderr)` when curl itself fails.
fn curl(cacert: Option<&Path>, args: &[&str]) -> Result<Reply, String> {
    let scratch = tempfile::tempdir().unwrap();
    let body = scratch.path().join("body");
    let mut command = Command::new("curl");
    if let Some(cacert) = cacert {
        command.arg("--cacert").arg(cacert);
    }
    let out = command
        .args(["-sS", "--max-time", "60", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(Reply {
        status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
        body: std::fs::read(&body).unwrap_or_default(),
    })
}

fn start_devgrid(dir: &Path) -> Running {
    for attempt in 1..4 {
        if let Some(child) = common::start_devgrid(dir, 3, common::free_port()) {
            return Running(child);
        }
        let _ = std::fs::rename(dir, dir.with_extension(format!("failed{attempt}")));
    }
    panic!("devgrid did not start");
}

#[test]
fn web_and_webdav_over_tls_with_real_clients() {
    if !installed("curl") {
        eprintln!("skipping: curl is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid_dir = scratch.path().join("grid");
    let _grid = start_devgrid(&grid_dir);
    let furl = std::fs::read_to_string(grid_dir.join("introducer/private/introducer.furl")).unwrap();
    let accounts = grid_dir.join("gateway/private/accounts");
    let password = std::fs::read_to_string(grid_dir.join("gateway/private/demo_ftp_password")).unwrap();
    let password = password.trim().to_owned();

    // A second gateway on the same grid, with both web ports over TLS.
    let node = scratch.path().join("tls-gateway");
    let endpoint = "ssl:0:privateKey=private/web.key:certKey=web.crt:interface=127.0.0.1";
    let created = tessera(
        &[
            "create-client",
            "--introducer",
            furl.trim(),
            "--webport",
            endpoint,
        ],
        &node,
    );
    assert!(created.status.success(), "{created:?}");
    let (cert, key) = certificate();
    std::fs::write(node.join("private/web.key"), &key).unwrap();
    let cacert = node.join("web.crt");
    std::fs::write(&cacert, &cert).unwrap();
    let cfg = node.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("shares.happy = 7", "shares.happy = 3")
        .replace("shares.needed = 3", "shares.needed = 2")
        .replace("[client]\n", "[client]\nconvergence = false\n");
    assert!(
        text.contains("convergence = false") && text.contains("shares.happy = 3"),
        "{text}"
    );
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[webdav]\nenabled = true\nport = {endpoint}\naccounts.file = {}\n",
            accounts.display()
        ),
    )
    .unwrap();
    let running = run_node(&node);
    let web = std::fs::read_to_string(node.join("node.url"))
        .unwrap()
        .trim()
        .to_owned();
    let dav = std::fs::read_to_string(node.join("webdav.url"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(web.starts_with("https://127.0.0.1:"), "node.url: {web}");
    assert!(dav.starts_with("https://127.0.0.1:"), "webdav.url: {dav}");
    let ca = Some(cacert.as_path());

    // The welcome page, and a file up and back through /uri (once the grid is connected).
    let welcome = curl(ca, &[&web]).unwrap();
    assert_eq!(welcome.status, 200);
    assert!(String::from_utf8_lossy(&welcome.body).contains("<html"), "a page");
    let upload = scratch.path().join("upload.bin");
    let contents = data(400_000, 3);
    std::fs::write(&upload, &contents).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let cap = loop {
        let put = curl(ca, &["-T", upload.to_str().unwrap(), &format!("{web}uri")]).unwrap();
        if put.status == 200 {
            break String::from_utf8(put.body).unwrap();
        }
        assert!(Instant::now() < deadline, "PUT /uri: {}", put.status);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(cap.starts_with("URI:CHK:"), "{cap}");
    let get = curl(ca, &[&format!("{web}uri/{cap}")]).unwrap();
    assert_eq!(get.status, 200);
    assert!(get.body == contents, "the file came back different over https");

    // The tessera CLI over https: through the node directory, then at --node-url.
    let cli_cap = cli_round_trip(&node, scratch.path(), &contents);
    cli_trust(&web, &cacert, &cli_cap, &contents, scratch.path());

    // Plain HTTP to a TLS port gets no HTTP answer; nor does a client that does not trust the
    // certificate (curl's own store).
    for url in [&web, &dav] {
        let plain = url.replace("https://", "http://");
        assert!(curl(None, &[&plain]).is_err(), "plain http to {url} was answered");
        let untrusted = curl(None, &[url.as_str()]).unwrap_err();
        assert!(untrusted.contains("certificate"), "{untrusted}");
    }

    // WebDAV over TLS with basic auth: PROPFIND, PUT (streamed: convergence is off), GET.
    let user = format!("demo:{password}");
    let propfind = curl(ca, &["-u", &user, "-X", "PROPFIND", "-H", "Depth: 1", &dav]).unwrap();
    assert_eq!(
        propfind.status,
        207,
        "{}",
        String::from_utf8_lossy(&propfind.body)
    );
    let denied = curl(
        ca,
        &["-u", "demo:wrong", "-X", "PROPFIND", "-H", "Depth: 0", &dav],
    )
    .unwrap();
    assert_eq!(denied.status, 401);
    let put = curl(
        ca,
        &[
            "-u",
            &user,
            "-T",
            upload.to_str().unwrap(),
            &format!("{dav}tls.bin"),
        ],
    )
    .unwrap();
    assert_eq!(put.status, 201);
    let get = curl(ca, &["-u", &user, &format!("{dav}tls.bin")]).unwrap();
    assert_eq!(get.status, 200);
    assert!(get.body == contents, "the WebDAV file came back different");
    let listing = curl(ca, &["-u", &user, "-X", "PROPFIND", "-H", "Depth: 1", &dav]).unwrap();
    assert!(String::from_utf8_lossy(&listing.body).contains("tls.bin"));

    // rclone's webdav backend over https, trusting the certificate: a tree up and back.
    if installed("rclone") {
        let obscured = Command::new("rclone")
            .args(["obscure", &password])
            .output()
            .unwrap();
        let obscured = String::from_utf8(obscured.stdout).unwrap().trim().to_owned();
        let remote = format!(":webdav,url='{dav}',user=demo,pass='{obscured}':tree");
        let source = scratch.path().join("source");
        std::fs::create_dir_all(source.join("a/b")).unwrap();
        let names = ["big.bin", "a/x.txt", "a/b/naïve ☃.txt", "empty"];
        for (i, name) in names.iter().enumerate() {
            std::fs::write(source.join(name), data([2_500_000, 100, 70_000, 0][i], i as u32)).unwrap();
        }
        let rclone = |args: &[&str]| {
            let mut all = vec!["--ca-cert", cacert.to_str().unwrap()];
            all.extend_from_slice(args);
            common::rclone(scratch.path(), &all)
        };
        rclone(&["copy", source.to_str().unwrap(), &remote]);
        let back = scratch.path().join("back");
        rclone(&["copy", &remote, back.to_str().unwrap()]);
        for name in names {
            assert!(
                std::fs::read(back.join(name)).unwrap() == std::fs::read(source.join(name)).unwrap(),
                "{name} came back different"
            );
        }
    } else {
        eprintln!("skipping the rclone part: rclone is not installed (.ci/run installs it)");
    }
    drop(running);

    // A missing certificate, a key that is not the certificate's, and a bad WebDAV key each stop
    // the node naming the key and the file, never the key's contents.
    let (other_cert, _) = certificate();
    std::fs::write(node.join("other.crt"), other_cert).unwrap();
    let configured = std::fs::read_to_string(&cfg).unwrap();
    let key_line = key.lines().nth(1).unwrap().to_owned();
    for (from, to, needles) in [
        (
            "web.port = ssl:0:privateKey=private/web.key:certKey=web.crt",
            "web.port = ssl:0:privateKey=private/web.key:certKey=missing.crt",
            ["[node] web.port", "missing.crt"],
        ),
        (
            "web.port = ssl:0:privateKey=private/web.key:certKey=web.crt",
            "web.port = ssl:0:privateKey=private/web.key:certKey=other.crt",
            ["[node] web.port", "does not match"],
        ),
        (
            "port = ssl:0:privateKey=private/web.key:certKey=web.crt",
            "port = ssl:0:privateKey=tahoe.cfg:certKey=web.crt",
            ["[webdav] port", "holds no PEM private key"],
        ),
    ] {
        let text = if from.starts_with("web.port") {
            configured.replacen(from, to, 1)
        } else {
            // The [webdav] port (the second endpoint in the file).
            let at = configured.rfind(from).unwrap();
            format!("{}{}{}", &configured[..at], to, &configured[at + from.len()..])
        };
        std::fs::write(&cfg, text).unwrap();
        let out = tessera(&["run"], &node);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to}: the node started");
        for needle in needles {
            assert!(stderr.contains(needle), "{to}: {needle} not in {stderr}");
        }
        assert!(!stderr.contains(&key_line), "the key's contents in {stderr}");
        assert!(!node_log_has(&node, &key_line));
    }
    std::fs::write(&cfg, configured).unwrap();
}

/// The `tessera` CLI with `args` and `ca_env` as `TESSERA_CA_FILE` (nothing else from the
/// environment's CA file or node directory); its output.
fn cli(args: &[&str], ca_env: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args(args)
        .env_remove("TESSERA_CA_FILE")
        .env_remove("TESSERA_NODE_DIRECTORY")
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_LOG");
    if let Some(file) = ca_env {
        command.env("TESSERA_CA_FILE", file);
    }
    command.output().unwrap()
}

/// [`cli`] without a CA file, which must succeed; its standard output.
fn cli_ok(args: &[&str]) -> Vec<u8> {
    let out = cli(args, None);
    assert!(
        out.status.success(),
        "tessera {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `tessera put`, `ls` and `get` through the node directory `node`, whose `node.url` is https
/// (the CLI trusts the certificate its `tahoe.cfg` names): a file under a new alias and back, byte
/// for byte, and the same file unlinked, whose cap is returned.
fn cli_round_trip(node: &Path, scratch: &Path, contents: &[u8]) -> String {
    let url = std::fs::read_to_string(node.join("node.url")).unwrap();
    assert!(url.starts_with("https://"), "node.url: {url}");
    let d = node.to_str().unwrap();
    let file = scratch.join("cli-upload.bin");
    std::fs::write(&file, contents).unwrap();
    let file = file.to_str().unwrap();
    cli_ok(&["-d", d, "create-alias", "tahoe"]);
    let linked = String::from_utf8(cli_ok(&["-d", d, "put", file, "tahoe:cli/up.bin"])).unwrap();
    assert!(linked.trim().starts_with("URI:CHK:"), "{linked}");
    let listing = String::from_utf8(cli_ok(&["-d", d, "ls", "-l", "tahoe:cli"])).unwrap();
    assert!(
        listing.contains("up.bin") && listing.contains(&contents.len().to_string()),
        "{listing}"
    );
    let back = scratch.join("cli-download.bin");
    cli_ok(&["-d", d, "get", "tahoe:cli/up.bin", back.to_str().unwrap()]);
    assert!(
        std::fs::read(&back).unwrap() == contents,
        "the CLI's file came back different"
    );
    let cap = String::from_utf8(cli_ok(&["-d", d, "put", file])).unwrap();
    let cap = cap.trim().to_owned();
    assert!(cli_ok(&["-d", d, "get", &cap]) == contents, "get CAP to stdout");
    cap
}

/// The CLI at the https gateway `web` by `--node-url` (from a directory that is no node's):
/// refused, exit status not 0, with one line naming the URL and saying the certificate is not
/// trusted; then `--ca-file CACERT` and `TESSERA_CA_FILE=CACERT` each read `cap` back.
fn cli_trust(web: &str, cacert: &Path, cap: &str, contents: &[u8], scratch: &Path) {
    let url = web.trim_end_matches('/');
    let elsewhere = scratch.join("not-a-node");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let d = elsewhere.to_str().unwrap();
    let refused = cli(&["-d", d, "--node-url", url, "get", cap], None);
    assert_ne!(refused.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "the gateway at {url} presented a TLS certificate that is not trusted"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains(cap), "the cap in {stderr}");
    assert!(refused.stdout.is_empty());
    let ca = cacert.to_str().unwrap();
    let with_flag = cli_ok(&["-d", d, "--node-url", url, "--ca-file", ca, "get", cap]);
    assert!(with_flag == contents, "--ca-file: the file came back different");
    let with_env = cli(&["-d", d, "--node-url", url, "get", cap], Some(cacert));
    assert!(
        with_env.status.success(),
        "{}",
        String::from_utf8_lossy(&with_env.stderr)
    );
    assert!(
        with_env.stdout == contents,
        "TESSERA_CA_FILE: the file came back different"
    );
}

/// `tessera devgrid --tls`: the gateway's web port is https with a self-signed certificate in the
/// gateway's directory (its key 0600 in `private/`); curl trusting that certificate gets the
/// welcome page and curl trusting its own store is refused; the CLI works through the node
/// directory and, with `--ca-file`, at `--node-url`; a second run keeps the certificate.
#[test]
fn devgrid_tls_serves_curl_and_the_cli() {
    use std::os::unix::fs::PermissionsExt;
    if !installed("curl") {
        eprintln!("skipping: curl is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("grid");
    let start = || {
        let (child, printed) =
            common::start_devgrid_with(&dir, 3, 0, &["--tls"]).expect("devgrid --tls did not start");
        (Running(child), printed)
    };
    let (grid, printed) = start();
    let gateway = dir.join("gateway");
    let web = std::fs::read_to_string(gateway.join("node.url"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(web.starts_with("https://127.0.0.1:"), "node.url: {web}");
    let cacert = gateway.join("web.crt");
    let key = gateway.join("private/web.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config = std::fs::read_to_string(gateway.join("tahoe.cfg")).unwrap();
    assert!(
        config.contains("web.port = ssl:0:privateKey=private/web.key:certKey=web.crt:interface=127.0.0.1"),
        "{config}"
    );
    assert!(printed.contains(&format!("  web gateway: {web}")), "{printed:#?}");
    let curl_line = format!("curl --cacert {} {web}uri/CAP", cacert.display());
    assert!(printed.iter().any(|l| l.contains(&curl_line)), "{printed:#?}");

    let welcome = curl(Some(&cacert), &[&web]).unwrap();
    assert_eq!(welcome.status, 200);
    assert!(String::from_utf8_lossy(&welcome.body).contains("<html"), "a page");
    let untrusted = curl(None, &[&web]).unwrap_err();
    assert!(untrusted.contains("certificate"), "{untrusted}");
    // `tessera status` over https sees the grid.
    assert_eq!(common::connected(&gateway), 3);

    let contents = data(300_000, 11);
    let cap = cli_round_trip(&gateway, scratch.path(), &contents);
    cli_trust(&web, &cacert, &cap, &contents, scratch.path());

    // A second run over the same directory keeps the certificate and key.
    let (certificate, key_pem) = (std::fs::read(&cacert).unwrap(), std::fs::read(&key).unwrap());
    drop(grid);
    let (_grid, _) = start();
    assert!(
        std::fs::read(&cacert).unwrap() == certificate,
        "the certificate was made anew"
    );
    assert!(std::fs::read(&key).unwrap() == key_pem, "the key was made anew");
    let d = gateway.to_str().unwrap();
    assert!(cli_ok(&["-d", d, "get", &cap]) == contents, "after the rerun");
}

/// Whether any of the node's log files holds `text`.
fn node_log_has(node: &Path, text: &str) -> bool {
    let logs: PathBuf = node.join("logs");
    std::fs::read_dir(logs).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(text)))
    })
}
