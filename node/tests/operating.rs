//! Operating a grid: every node of a real `tessera devgrid` shows its status and metrics. A
//! storage node's `/storage` (HTML) and `/storage?t=json` (Tahoe 1.20's shape, with the lease
//! checker in scan-only mode), `/statistics?t=json`, and `/statistics?t=openmetrics` on storage
//! nodes, the gateway and the introducer (with its welcome page and `?t=json`), checked with
//! Prometheus's own `promtool check metrics`; and a real Prometheus server scraping a devgrid.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn curl(url: &str, accept: Option<&str>) -> String {
    let mut command = Command::new("curl");
    command.args(["-sS", "--fail", "--max-time", "30"]);
    if let Some(accept) = accept {
        command.args(["-H", &format!("Accept: {accept}")]);
    }
    let out = command.arg(url).output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn node_url(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node.url"))
        .unwrap()
        .trim()
        .to_owned()
}

/// `promtool check metrics` on `text`; `None` (with a printed reason) when promtool is absent.
fn promtool(text: &str) -> Option<(bool, String)> {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!(
            "SKIP promtool checks: promtool is not installed (Debian's prometheus package; .ci/run installs it)"
        );
        return None;
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), report))
}

/// A devgrid of 3 storage nodes in a new temporary directory (its `grid/`), with `contents`
/// uploaded through `tessera put`; the grid stops when the guard is dropped.
fn devgrid_with_a_file(contents: Vec<u8>) -> (tempfile::TempDir, StopOnDrop) {
    let root = tempfile::tempdir().unwrap();
    let grid_dir = root.path().join("grid");
    let mut grid = None;
    for _ in 0..3 {
        grid = common::start_devgrid(&grid_dir, 3, common::free_port());
        if grid.is_some() {
            break;
        }
    }
    let grid = StopOnDrop(grid.expect("devgrid started"));
    let file = root.path().join("f");
    std::fs::write(&file, contents).unwrap();
    let put = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("-d")
        .arg(grid_dir.join("gateway"))
        .arg("put")
        .arg(&file)
        .output()
        .unwrap();
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    (root, grid)
}

#[test]
fn every_node_shows_its_status_and_metrics() {
    let (root, _grid) = devgrid_with_a_file(vec![7u8; 100_000]);
    let grid_dir = root.path().join("grid");
    let gateway = grid_dir.join("gateway");

    let storage01 = node_url(&grid_dir.join("storage01"));
    assert!(storage01.starts_with("http://127.0.0.1:"), "{storage01}");
    // The first lease-checker cycle runs at start; wait for it to be finished and for the upload's
    // shares to be counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let json = loop {
        let text = curl(&format!("{storage01}storage?t=json"), None);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        if !json["lease-checker"]["last-cycle"].is_null() {
            break json;
        }
        assert!(Instant::now() < deadline, "no lease-checker cycle: {json}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let stats = &json["stats"];
    assert_eq!(stats["storage_server.accepting_immutable_shares"], 1, "{json}");
    assert!(stats["storage_server.disk_total"].as_u64().unwrap() > 0);
    assert!(stats["storage_server.disk_avail"].as_u64().unwrap() > 0);
    assert_eq!(stats["storage_server.reserved_space"], 1_000_000_000u64);
    assert!(
        stats["storage_server.latencies.allocate.samplesize"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let ours = &json["tessera"];
    assert!(ours["immutable_shares"].as_u64().unwrap() >= 1, "{json}");
    assert!(ours["used_space"].as_u64().unwrap() > 0);
    assert_eq!(ours["corruption_advisory_count"], 0);
    let lease_checker = &json["lease-checker"];
    assert_eq!(lease_checker["last-cycle"]["expiration-enabled"], false);
    assert!(
        lease_checker["last-cycle"]["space-recovered"]["examined-shares"].is_u64(),
        "{json}"
    );
    assert!(lease_checker["history"]["0"].is_object());
    assert_eq!(json["lease-checker-progress"]["cycle-in-progress"], false);

    let page = curl(&format!("{storage01}storage"), None);
    assert!(page.contains("Disabled: scan-only mode"), "{page}");
    assert!(page.contains("Corruption advisories (0)"));
    assert!(page.contains("storage01"));
    let front = curl(&storage01, None);
    assert!(front.contains(r#"href="/storage""#), "{front}");

    let gateway_url = node_url(&gateway);
    let statistics: serde_json::Value =
        serde_json::from_str(&curl(&format!("{gateway_url}statistics?t=json"), None)).unwrap();
    assert_eq!(
        statistics["counters"]["uploader.files_uploaded"], 1,
        "{statistics}"
    );
    assert!(statistics["stats"]["node.uptime"].as_f64().unwrap() > 0.0);
    let storage_statistics: serde_json::Value =
        serde_json::from_str(&curl(&format!("{storage01}statistics?t=json"), None)).unwrap();
    assert!(storage_statistics["stats"]["storage_server.disk_total"].is_u64());
    assert!(
        storage_statistics["counters"]["storage_server.allocate"]
            .as_u64()
            .unwrap()
            >= 1
    );

    // The welcome page links each storage server's status: their announcements carry their
    // web address (node.url).
    // (minijinja escapes '/' in attributes as &#x2f;, which a browser reads as '/').
    let welcome = curl(&gateway_url, None).replace("&#x2f;", "/");
    for name in ["storage01", "storage02", "storage03"] {
        let url = node_url(&grid_dir.join(name));
        assert!(
            welcome.contains(&format!(r#"href="{url}storage""#)),
            "no link to {name}'s status:\n{welcome}"
        );
    }
    assert!(welcome.contains(r#"href="/status""#));
    let servers: serde_json::Value =
        serde_json::from_str(&curl(&format!("{gateway_url}?t=json"), None)).unwrap();
    assert!(
        servers["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["web_url"] == storage01.as_str()),
        "{servers}"
    );
    // `tessera status`: each server's used and available space and when it was last heard from.
    let status = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("-d")
        .arg(&gateway)
        .arg("status")
        .output()
        .unwrap();
    assert!(status.status.success());
    let status = String::from_utf8(status.stdout).unwrap();
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with("storage01"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("last contact "), "{status}");
    assert!(line.contains(" ago; used "), "{status}");
    assert!(
        !line.contains("used ?"),
        "storage01's used space is known: {status}"
    );
    assert!(line.contains(", available "), "{status}");
    let used: u64 = ours["used_space"].as_u64().unwrap();
    assert!(used > 0);

    // The introducer's welcome page and its JSON: the three storage servers' announcements and
    // the gateway's subscription; never a swissnum (the introducer's or a server's).
    let introducer_dir = grid_dir.join("introducer");
    let introducer_url = node_url(&introducer_dir);
    assert!(
        introducer_url.starts_with("http://127.0.0.1:"),
        "{introducer_url}"
    );
    let secrets: Vec<String> = std::iter::once(
        std::fs::read_to_string(introducer_dir.join("private").join("introducer.swissnum"))
            .unwrap()
            .trim()
            .to_owned(),
    )
    .chain(["storage01", "storage02", "storage03"].iter().map(|name| {
        let furl = std::fs::read_to_string(grid_dir.join(name).join("private").join("storage.furl")).unwrap();
        furl.trim().rsplit_once('/').unwrap().1.to_owned()
    }))
    .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let intro = loop {
        let intro: serde_json::Value =
            serde_json::from_str(&curl(&format!("{introducer_url}?t=json"), None)).unwrap();
        if intro["subscription_summary"]["storage"] == 1 || Instant::now() > deadline {
            break intro;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(intro["announcement_summary"]["storage"], 3, "{intro}");
    assert_eq!(intro["subscription_summary"]["storage"], 1, "{intro}");
    assert_eq!(intro["subscribers"][0]["nickname"], "gateway", "{intro}");
    let mut nicknames: Vec<&str> = intro["announcements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["nickname"].as_str().unwrap())
        .collect();
    nicknames.sort_unstable();
    assert_eq!(nicknames, ["storage01", "storage02", "storage03"], "{intro}");
    let intro_page = curl(&introducer_url, None);
    assert!(
        intro_page.contains("Welcome to the Tessera Introducer"),
        "{intro_page}"
    );
    assert!(intro_page.contains("storage: 3"), "{intro_page}");
    assert!(intro_page.contains("storage02"), "{intro_page}");
    let intro_statistics = curl(&format!("{introducer_url}statistics?t=json"), None);
    for secret in &secrets {
        for (what, text) in [
            ("JSON", &intro.to_string()),
            ("page", &intro_page),
            ("statistics", &intro_statistics),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "a swissnum in the introducer's {what}"
            );
        }
    }
    let intro_statistics: serde_json::Value = serde_json::from_str(&intro_statistics).unwrap();
    assert!(
        intro_statistics["counters"]["introducer.inbound_message"]
            .as_u64()
            .unwrap()
            >= 3,
        "{intro_statistics}"
    );

    // OpenMetrics (what Prometheus asks for, and the default) and the Prometheus text format
    // (what promtool reads).
    for (name, url) in [
        ("storage", &storage01),
        ("gateway", &gateway_url),
        ("introducer", &introducer_url),
    ] {
        let openmetrics = curl(&format!("{url}statistics?t=openmetrics"), None);
        assert!(openmetrics.ends_with("# EOF\n"), "{name}: {openmetrics}");
        assert!(openmetrics.contains("tahoe_stats_node_uptime "));
        let text = curl(
            &format!("{url}statistics?t=openmetrics"),
            Some("text/plain; version=0.0.4"),
        );
        assert!(!text.contains("# EOF"));
        if name == "storage" {
            assert!(
                text.contains("\ntahoe_stats_storage_server_disk_avail "),
                "{text}"
            );
            assert!(text.contains("tessera_storage_shares{kind=\"immutable\"} "));
            assert!(text.contains("tessera_storage_lease_checker_last_cycle_shares{figure=\"configured\"} "));
        } else if name == "introducer" {
            assert!(
                text.contains("\ntessera_introducer_announcements{service=\"storage\"} 3\n"),
                "{text}"
            );
            assert!(text.contains("\ntessera_introducer_subscribers 1\n"), "{text}");
            assert!(text.contains("# TYPE tessera_introducer_announcements_accepted_total counter\n"));
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "a swissnum in the introducer's metrics"
                );
            }
        } else {
            assert!(
                text.contains("\ntahoe_counters_uploader_files_uploaded 1\n"),
                "{text}"
            );
            assert!(text.contains("# TYPE tessera_uploads_total counter\n"));
        }
        if let Some((ok, report)) = promtool(&text) {
            assert!(
                ok,
                "promtool check metrics on the {name} node's metrics:\n{report}\n{text}"
            );
        }
    }
}

/// Stops the devgrid (SIGINT, which stops its nodes) when the test ends, passed or failed.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// The real Tahoe, when installed: `$TAHOE`, else a usual install, else the virtualenv
/// `tests/interop/tahoe.sh` makes (`.ci/run` makes it, then runs this test again).
fn tahoe() -> Option<std::path::PathBuf> {
    let tmp = std::env::var_os("TMPDIR").map_or_else(|| std::path::PathBuf::from("/tmp"), Into::into);
    let candidates = match std::env::var_os("TAHOE") {
        Some(tahoe) => vec![std::path::PathBuf::from(tahoe)],
        None => vec![
            std::path::PathBuf::from("/opt/tahoe-venv/bin/tahoe"),
            tmp.join("tessera-tahoe-venv/bin/tahoe"),
        ],
    };
    let found = candidates.iter().find(|c| c.exists()).cloned();
    if found.is_none() {
        eprintln!(
            "SKIP the real `tahoe status`: no Tahoe-LAFS at {candidates:?} (set TAHOE; .ci/run makes the virtualenv)"
        );
    }
    found
}

/// Tahoe 1.20's own `tahoe status` against a devgrid gateway's node directory (our `node.url`
/// and `private/api_auth_token`) after an upload and a download: it posts the token to
/// `/status?t=json` and `/statistics?t=json` and lists both operations by storage index.
#[test]
fn real_tahoe_status_lists_our_uploads_and_downloads() {
    let Some(tahoe) = tahoe() else { return };
    let root = tempfile::tempdir().unwrap();
    let grid_dir = root.path().join("grid");
    let mut grid = None;
    for _ in 0..3 {
        grid = common::start_devgrid(&grid_dir, 3, common::free_port());
        if grid.is_some() {
            break;
        }
    }
    let _grid = StopOnDrop(grid.expect("devgrid started"));
    let gateway = grid_dir.join("gateway");
    let token = gateway.join("private").join("api_auth_token");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "api_auth_token mode {mode:o}");
        let text = std::fs::read_to_string(&token).unwrap();
        // Tahoe's form: urlsafe base64 of 32 bytes, then a newline.
        assert_eq!(text.len(), 45, "{text:?}");
        assert!(text.ends_with('\n'));
    }
    let url = node_url(&gateway);
    let file = root.path().join("f");
    std::fs::write(&file, vec![9u8; 150_000]).unwrap();
    let put = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "60", "-T"])
        .arg(&file)
        .arg(format!("{url}uri"))
        .output()
        .unwrap();
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let cap = String::from_utf8(put.stdout).unwrap();
    let got = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "60"])
        .arg(format!("{url}uri/{cap}"))
        .output()
        .unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout.len(), 150_000);
    let si = cap
        .trim()
        .parse::<filenode::cap::Cap>()
        .unwrap()
        .storage_index()
        .unwrap()
        .to_string();

    // The download is recent once its reader is dropped, just after the body went out.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = Command::new(&tahoe)
            .arg("-d")
            .arg(&gateway)
            .arg("status")
            .env("LC_ALL", "C.UTF-8")
            .env("LANG", "C.UTF-8")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tahoe status failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stdout.contains("No active operations.") || Instant::now() > deadline {
            break stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(out.contains("uploaded 150.00 kB in 1 files"), "{out}");
    assert!(out.contains("downloaded 150.00 kB in 1 files"), "{out}");
    assert!(out.contains("No active operations."), "{out}");
    let recent = out
        .split("Recent operations:")
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    let line = |op: &str| {
        recent
            .lines()
            .find(|l| l.contains(op) && l.contains(&si))
            .unwrap_or_else(|| panic!("no {op:?} line for {si} in:\n{out}"))
            .to_owned()
    };
    assert!(line(" put ").contains("Finished"), "{out}");
    assert!(line(" put ").contains("150.00 kB"), "{out}");
    assert!(line(" get ").contains("Finished"), "{out}");
    assert!(!out.contains(cap.trim()), "a cap in tahoe status's output");
}

/// The host:port of a node's web URL (`http://127.0.0.1:P/`).
fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

/// Stops a child process (SIGTERM, then wait) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// One instant query to Prometheus's HTTP API: the result vector.
fn prometheus_query(base: &str, query: &str) -> Vec<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "-G", "--data-urlencode"])
        .arg(format!("query={query}"))
        .arg(format!("{base}/api/v1/query"))
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
    answer["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of a one-series query, once Prometheus has it (polled up to 60 s).
fn prometheus_value(base: &str, query: &str, want: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = prometheus_query(base, query);
        if let [series] = result.as_slice() {
            let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
            if want(value) {
                return value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no wanted value for {query}: {result:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A real Prometheus server (Debian's package) scrapes a devgrid's storage node, gateway and
/// introducer at `/statistics?t=openmetrics`; its HTTP API answers with what the nodes show.
#[test]
fn a_prometheus_server_scrapes_every_node_of_a_devgrid() {
    let prometheus = Path::new("/usr/bin/prometheus");
    if !prometheus.exists() {
        eprintln!(
            "SKIP the Prometheus scrape test: /usr/bin/prometheus is absent (Debian's prometheus package)"
        );
        return;
    }
    let (root, _grid) = devgrid_with_a_file(vec![3u8; 50_000]);
    let grid_dir = root.path().join("grid");
    let gateway = grid_dir.join("gateway");

    let storage01 = node_url(&grid_dir.join("storage01"));
    let gateway_url = node_url(&gateway);
    let introducer_url = node_url(&grid_dir.join("introducer"));
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: tessera\n    metrics_path: /statistics\n    params:\n      t: [openmetrics]\n    static_configs:\n\
         \x20     - targets: ['{}']\n        labels: {{node: storage01}}\n\
         \x20     - targets: ['{}']\n        labels: {{node: gateway}}\n\
         \x20     - targets: ['{}']\n        labels: {{node: introducer}}\n",
        host_port(&storage01),
        host_port(&gateway_url),
        host_port(&introducer_url),
    );
    let config_path = root.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();

    // A free port for Prometheus's web API (retried if another process takes it first).
    let mut server = None;
    for attempt in 0..3 {
        let port = common::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = KillOnDrop(
            Command::new(prometheus)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    root.path().join(format!("tsdb{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = loop {
            let ok = Command::new("curl")
                .args(["-sS", "--fail", "--max-time", "2"])
                .arg(format!("{base}/-/ready"))
                .output()
                .is_ok_and(|out| out.status.success());
            if ok {
                break true;
            }
            if Instant::now() > deadline || child.0.try_wait().unwrap().is_some() {
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if ready {
            server = Some((child, base));
            break;
        }
    }
    let (_prometheus, base) = server.expect("Prometheus started");

    // Every target is up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prometheus_query(&base, "up");
        let all_up = up.len() == 3 && up.iter().all(|series| series["value"][1] == "1");
        if all_up {
            break;
        }
        assert!(Instant::now() < deadline, "targets not up: {up:?}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // A storage metric: the reserved space and the share count, as the node's JSON gives them.
    let storage_json: serde_json::Value =
        serde_json::from_str(&curl(&format!("{storage01}storage?t=json"), None)).unwrap();
    let reserved = storage_json["stats"]["storage_server.reserved_space"]
        .as_f64()
        .unwrap();
    let scraped = prometheus_value(
        &base,
        "tahoe_stats_storage_server_reserved_space{node=\"storage01\"}",
        |_| true,
    );
    assert_eq!(scraped, reserved);
    let shares = storage_json["tessera"]["immutable_shares"].as_f64().unwrap();
    assert!(shares >= 1.0, "{storage_json}");
    let scraped = prometheus_value(
        &base,
        "tessera_storage_shares{node=\"storage01\",kind=\"immutable\"}",
        |v| v == shares,
    );
    assert_eq!(scraped, shares);

    // A gateway metric: the one upload.
    let scraped = prometheus_value(
        &base,
        "tahoe_counters_uploader_files_uploaded{node=\"gateway\"}",
        |v| v >= 1.0,
    );
    assert_eq!(scraped, 1.0);
    let scraped = prometheus_value(&base, "tessera_uploads_total{node=\"gateway\"}", |v| v >= 1.0);
    assert_eq!(scraped, 1.0);

    // An introducer metric: the three storage servers' announcements, as its page counts them.
    let intro: serde_json::Value =
        serde_json::from_str(&curl(&format!("{introducer_url}?t=json"), None)).unwrap();
    assert_eq!(intro["announcement_summary"]["storage"], 3, "{intro}");
    let scraped = prometheus_value(
        &base,
        "tessera_introducer_announcements{node=\"introducer\",service=\"storage\"}",
        |_| true,
    );
    assert_eq!(scraped, 3.0);
    let accepted = prometheus_value(
        &base,
        "tessera_introducer_announcements_accepted_total{node=\"introducer\"}",
        |v| v >= 3.0,
    );
    assert!(accepted >= 3.0);
    eprintln!(
        "Prometheus scraped: reserved {reserved}, immutable shares {shares}, uploads 1, announcements 3, accepted {accepted}"
    );
}

/// The value of the sample `series` (name and labels, as the text writes them) in a metrics text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until the gateway's figure `series` satisfies `want`; its last value.
fn wait_for_sample(gateway_url: &str, series: &str, want: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = curl(&format!("{gateway_url}statistics?t=openmetrics"), None);
        let value = sample(&text, series);
        if want(value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {value}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The devgrid's demo SFTP account: `sftp` with its key and known_hosts, and the user's own
/// configuration and agent kept out, then `extra` options.
fn demo_sftp(gateway: &Path, extra: &[&str]) -> Command {
    let url = std::fs::read_to_string(gateway.join("sftp.url")).unwrap();
    let port = url
        .trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let private = gateway.join("private");
    let config = gateway.join("empty_ssh_config");
    std::fs::write(&config, "").unwrap();
    let mut command = Command::new("sftp");
    command.arg("-F").arg(&config);
    command
        .args(["-P", &port, "-i"])
        .arg(private.join("demo_ssh_key"));
    command.arg("-o").arg(format!(
        "UserKnownHostsFile={}",
        private.join("known_hosts").display()
    ));
    command.args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]);
    command.args(["-o", "StrictHostKeyChecking=yes"]);
    command.args(extra).arg("demo@127.0.0.1");
    command
}

/// Runs `commands` through `sftp -b -` (every command must succeed unless `may_fail`).
fn sftp_batch(gateway: &Path, commands: &str, may_fail: bool) {
    use std::io::Write;
    let mut child = demo_sftp(gateway, &["-b", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sftp");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        may_fail || out.status.success(),
        "sftp {commands}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn curl_ftp(args: &[&str]) -> bool {
    Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .status()
        .unwrap()
        .success()
}

/// Issue 16: SFTP and FTP put and get through a devgrid's gateway show in its
/// `/statistics?t=openmetrics` (bytes each way at least the file's size, the operations), a failed
/// get counts as a `not_found` error of its frontend, the open-sessions gauge rises while a session
/// is open and falls after, and promtool still passes; `?t=json` carries the same figures.
#[test]
fn sftp_and_ftp_transfers_errors_and_sessions_reach_the_gateways_metrics() {
    if Command::new("sftp").arg("-V").output().is_err() {
        eprintln!("SKIP: the OpenSSH sftp client is not installed (apt-get install openssh-client)");
        return;
    }
    let (root, _grid) = devgrid_with_a_file(vec![1u8; 1000]);
    let gateway = root.path().join("grid").join("gateway");
    let gateway_url = node_url(&gateway);
    const SIZE: usize = 300_000;
    let local = root.path().join("local");
    let contents: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &contents).unwrap();
    let back = root.path().join("back");
    let metrics = || curl(&format!("{gateway_url}statistics?t=openmetrics"), None);
    let before = metrics();
    for frontend in ["sftp", "ftp"] {
        for direction in ["in", "out"] {
            let series =
                format!("tessera_frontend_bytes_total{{frontend=\"{frontend}\",direction=\"{direction}\"}}");
            assert_eq!(sample(&before, &series), 0.0, "{before}");
        }
    }

    // SFTP: a put and a get, then a get of a name that is not there.
    sftp_batch(
        &gateway,
        &format!("put {} f.bin\nget f.bin {}\n", local.display(), back.display()),
        false,
    );
    assert_eq!(std::fs::read(&back).unwrap(), contents);
    // (A put looks for the name first: not finding it is an error of its own.)
    let not_found = "tessera_frontend_errors_total{frontend=\"sftp\",kind=\"not_found\"}";
    let not_found_before = sample(&metrics(), not_found);
    sftp_batch(&gateway, &format!("get missing.bin {}\n", back.display()), true);
    let text = metrics();
    assert!(sample(&text, not_found) > not_found_before, "{text}");
    let sftp = |text: &str, labels: &str| sample(text, &format!("tessera_frontend_{labels}"));
    assert!(
        sftp(&text, "bytes_total{frontend=\"sftp\",direction=\"in\"}") >= SIZE as f64,
        "{text}"
    );
    assert!(
        sftp(&text, "bytes_total{frontend=\"sftp\",direction=\"out\"}") >= SIZE as f64,
        "{text}"
    );
    assert!(
        sftp(&text, "operations_total{frontend=\"sftp\",op=\"upload\"}") >= 1.0,
        "{text}"
    );
    assert!(
        sftp(&text, "operations_total{frontend=\"sftp\",op=\"download\"}") >= 1.0,
        "{text}"
    );
    assert!(
        sftp(&text, "errors_total{frontend=\"sftp\",kind=\"not_found\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(
        sftp(&text, "errors_total{frontend=\"ftp\",kind=\"not_found\"}"),
        0.0,
        "{text}"
    );

    // An interactive SFTP session counts while it is open.
    let sessions = "tessera_frontend_sessions{frontend=\"sftp\"}";
    assert_eq!(sample(&text, sessions), 0.0, "{text}");
    let mut open = demo_sftp(&gateway, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_sample(&gateway_url, sessions, |v| v == 1.0);
    drop(open.stdin.take());
    open.wait().unwrap();
    wait_for_sample(&gateway_url, sessions, |v| v == 0.0);

    // FTP: the demo account (plain FTP on loopback), a put, a get and a get of a missing name.
    let ftp_url = std::fs::read_to_string(gateway.join("ftp.url")).unwrap();
    let ftp_url = ftp_url.trim().trim_end_matches('/').to_owned();
    let password = std::fs::read_to_string(gateway.join("private").join("demo_ftp_password")).unwrap();
    let login = format!("demo:{}", password.trim());
    assert!(curl_ftp(&[
        "-u",
        &login,
        "-T",
        local.to_str().unwrap(),
        &format!("{ftp_url}/g.bin")
    ]));
    std::fs::remove_file(&back).unwrap();
    assert!(curl_ftp(&[
        "-u",
        &login,
        "-o",
        back.to_str().unwrap(),
        &format!("{ftp_url}/g.bin")
    ]));
    assert_eq!(std::fs::read(&back).unwrap(), contents);
    let not_found = "tessera_frontend_errors_total{frontend=\"ftp\",kind=\"not_found\"}";
    let not_found_before = sample(&metrics(), not_found);
    let missing = format!("{ftp_url}/missing.bin");
    assert!(!curl_ftp(&["-u", &login, "-o", "/dev/null", &missing]));
    assert!(sample(&metrics(), not_found) > not_found_before);
    let text = metrics();
    let ftp = |labels: &str| sample(&text, &format!("tessera_frontend_{labels}"));
    assert!(
        ftp("bytes_total{frontend=\"ftp\",direction=\"in\"}") >= SIZE as f64,
        "{text}"
    );
    assert!(
        ftp("bytes_total{frontend=\"ftp\",direction=\"out\"}") >= SIZE as f64,
        "{text}"
    );
    assert!(
        ftp("operations_total{frontend=\"ftp\",op=\"upload\"}") >= 1.0,
        "{text}"
    );
    assert!(
        ftp("operations_total{frontend=\"ftp\",op=\"download\"}") >= 1.0,
        "{text}"
    );
    assert!(
        ftp("errors_total{frontend=\"ftp\",kind=\"not_found\"}") >= 1.0,
        "{text}"
    );
    // The spools are empty once the uploads are stored; each frontend's is shown.
    for frontend in ["web", "sftp", "ftp"] {
        assert_eq!(
            ftp(&format!("spool_bytes{{frontend=\"{frontend}\"}}")),
            0.0,
            "{text}"
        );
    }

    // A wrong password counts as a failed login.
    let failures = "tessera_frontend_login_failures_total{frontend=\"ftp\"}";
    assert_eq!(sample(&metrics(), failures), 0.0);
    assert!(!curl_ftp(&["-u", "demo:wrong", &format!("{ftp_url}/")]));
    assert_eq!(sample(&metrics(), failures), 1.0);

    // An FTP control connection counts while it is open.
    let sessions = "tessera_frontend_sessions{frontend=\"ftp\"}";
    let address = ftp_url.trim_start_matches("ftp://").to_owned();
    let connection = std::net::TcpStream::connect(&address).unwrap();
    wait_for_sample(&gateway_url, sessions, |v| v == 1.0);
    drop(connection);
    wait_for_sample(&gateway_url, sessions, |v| v == 0.0);

    // The web's own figures: the file put through the web API at the start.
    let text = metrics();
    assert!(
        sample(
            &text,
            "tessera_frontend_bytes_total{frontend=\"web\",direction=\"in\"}"
        ) >= 1000.0
    );
    assert!(
        sample(
            &text,
            "tessera_frontend_operations_total{frontend=\"web\",op=\"upload\"}"
        ) >= 1.0
    );

    let json: serde_json::Value =
        serde_json::from_str(&curl(&format!("{gateway_url}statistics?t=json"), None)).unwrap();
    assert!(
        json["counters"]["tessera.frontend.sftp.bytes_in"]
            .as_u64()
            .unwrap()
            >= SIZE as u64,
        "{json}"
    );
    assert!(
        json["counters"]["tessera.frontend.ftp.errors.not_found"]
            .as_u64()
            .unwrap()
            >= 1,
        "{json}"
    );
    assert_eq!(json["stats"]["tessera.frontend.ftp.sessions"], 0, "{json}");

    let text = curl(
        &format!("{gateway_url}statistics?t=openmetrics"),
        Some("text/plain; version=0.0.4"),
    );
    if let Some((ok, report)) = promtool(&text) {
        assert!(ok, "promtool check metrics:\n{report}\n{text}");
    }
}
