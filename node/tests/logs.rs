//! The node's log as an operator reads it: a devgrid gateway with `[node] log_format = json`, a small
//! `log_max_size` and `log_keep = 2`, at `log_level = info,tessera=debug` (and `web.static`, `tempdir`), serving
//! uploads, downloads and directory listings. The log rotates and keeps two old files, every line of every file is a JSON
//! object, each web request's access line carries the request id its response names, and no cap,
//! swissnum or password reaches any file.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;

use std::path::Path;
use std::process::Command;

/// Stops the devgrid (SIGINT, which stops its nodes) when dropped.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> StopOnDrop {
    for _ in 0..3 {
        if let Some(child) = common::start_devgrid(dir, 3, common::free_port()) {
            return StopOnDrop(child);
        }
    }
    panic!("the devgrid did not start");
}

fn tessera(gateway: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("-d")
        .arg(gateway)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tessera {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// GET `url`; returns the response's `X-Request-Id`.
fn request_id_of(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "/dev/null", "-D", "-", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no X-Request-Id from {url}"))
}

/// Adds `lines` at the start of `[node]` in `dir/tahoe.cfg`.
fn add_to_node_section(dir: &Path, lines: &str) {
    let cfg = dir.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("[node]\n"), "{text}");
    std::fs::write(&cfg, text.replacen("[node]\n", &format!("[node]\n{lines}"), 1)).unwrap();
}

#[test]
fn json_logs_rotate_carry_request_ids_and_never_secrets() {
    let root = tempfile::tempdir().unwrap();
    let grid_dir = root.path().join("grid");
    let gateway = grid_dir.join("gateway");
    // Create the grid, then configure the gateway's log and start it again.
    drop(start(&grid_dir));
    add_to_node_section(
        &gateway,
        "log_format = json\nlog_max_size = 8KiB\nlog_keep = 2\nlog_level = info,tessera=debug\n\
         web.static = www\ntempdir = spool-here\n",
    );
    std::fs::create_dir(gateway.join("www")).unwrap();
    std::fs::write(gateway.join("www").join("hello.html"), "<p>static hello</p>").unwrap();
    let grid = start(&grid_dir);
    // `[node] tempdir` is made at start; `web.static` is served at /static.
    assert!(gateway.join("spool-here").is_dir());

    let file = root.path().join("f");
    std::fs::write(&file, vec![3u8; 20_000]).unwrap();
    let caps = vec![
        tessera(&gateway, &["put", file.to_str().unwrap()]),
        tessera(&gateway, &["put", "--mutable", file.to_str().unwrap()]),
        tessera(&gateway, &["mkdir"]),
    ];
    let url = std::fs::read_to_string(gateway.join("node.url"))
        .unwrap()
        .trim()
        .to_owned();
    // Enough requests to rotate the log several times.
    let mut ids = Vec::new();
    for round in 0..100 {
        let cap = &caps[round % caps.len()];
        ids.push(request_id_of(&format!("{url}uri/{cap}?t=json")));
    }
    let page = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "30",
            &format!("{url}static/hello.html"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&page.stdout), "<p>static hello</p>");
    // With `tempdir` replaced by a file, an upload cannot spool: it fails (500), which shows the
    // web API spools there, and the gateway's error line shares the request's id.
    let spool_dir = gateway.join("spool-here");
    std::fs::remove_dir(&spool_dir).unwrap();
    std::fs::write(&spool_dir, "not a directory").unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-X",
            "PUT",
        ])
        .args(["--data-binary", "spooled bytes", &format!("{url}uri")])
        .output()
        .unwrap();
    let headers = String::from_utf8(out.stdout).unwrap();
    assert!(headers.starts_with("HTTP/1.1 500"), "{headers}");
    let failed_id = headers
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_owned();
    std::fs::remove_file(&spool_dir).unwrap();
    std::fs::create_dir(&spool_dir).unwrap();
    let last_id = request_id_of(&format!("{url}uri/{}", caps[0]));
    drop(grid);

    let mut names: Vec<String> = std::fs::read_dir(gateway.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("tessera.log"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["tessera.log", "tessera.log.1", "tessera.log.2"],
        "log_keep = 2"
    );

    let mut secrets: Vec<String> = caps.clone();
    for name in ["storage01", "storage02", "storage03"] {
        // A NURL's last path segment is the server's swissnum.
        let nurl = std::fs::read_to_string(grid_dir.join(name).join("private/storage.nurl")).unwrap();
        let swissnum = nurl
            .trim()
            .rsplit('/')
            .next()
            .unwrap()
            .split('#')
            .next()
            .unwrap()
            .to_owned();
        assert!(swissnum.len() >= 20, "{nurl}");
        secrets.push(swissnum);
    }
    for secret in ["secret", "convergence"] {
        secrets.push(
            std::fs::read_to_string(gateway.join("private").join(secret))
                .unwrap()
                .trim()
                .to_owned(),
        );
    }
    let mut access_ids = Vec::new();
    let mut failure_lines = 0;
    for name in &names {
        let path = gateway.join("logs").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.len() as u64 <= 16 * 1024 + 4096,
            "{name} is {} bytes",
            text.len()
        );
        for line in text.lines() {
            let json: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            assert!(
                json["level"].is_string() && json["timestamp"].is_string(),
                "{line}"
            );
            if json["fields"]["message"] == "web request failed" {
                assert_eq!(json["span"]["request_id"], failed_id.as_str(), "{line}");
                assert!(
                    json["fields"]["detail"].as_str().unwrap().contains("spool"),
                    "{line}"
                );
                failure_lines += 1;
            }
            if json["target"] == "tessera::access" {
                let id = json["span"]["request_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("an access line without a request id: {line}"));
                access_ids.push(id.to_owned());
            }
        }
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} holds a secret ({})",
                &secret[..8]
            );
        }
        for prefix in ["URI:CHK:", "URI:SSK:", "URI:DIR2:", "URI:MDMF:"] {
            assert!(!text.contains(prefix), "{name} holds a cap");
        }
    }
    assert!(access_ids.len() >= 10, "{access_ids:?}");
    assert_eq!(failure_lines, 1, "the failed upload's error line");
    assert!(access_ids.contains(&failed_id));
    assert!(
        access_ids.contains(&last_id),
        "the last request's id {last_id} is in the log"
    );
    // Rotation deleted the oldest lines: not every request is still there, the newest are.
    assert!(
        !access_ids.contains(&ids[0]),
        "the oldest request's line was rotated away"
    );
    let mut unique = access_ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), access_ids.len(), "one access line per request id");
    // The devgrid's copy of the gateway's stderr (text lines) holds no secret either.
    let stderr = std::fs::read_to_string(gateway.join("logs").join("devgrid-stderr.log")).unwrap_or_default();
    for secret in &secrets {
        assert!(!stderr.contains(secret.as_str()), "stderr holds a secret");
    }
}
