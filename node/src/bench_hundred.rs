//! `tessera debug bench-hundred`: a grid of many storage nodes (100 by default) wired by an
//! introducer, each node its own `tessera run` process, with a gateway (`tessera run` too) that
//! learns them from the introducer. It prints:
//!
//! - the spread of shares per server over many small uploads through the gateway's web API
//!   (counted in the servers' share directories), against the ideal (every server the same) and
//!   against what independent random placement gives (binomial spread);
//! - the gateway's resident memory and CPU while idle with every connection held, a storage
//!   node's idle resident memory (min/mean/max over all), the introducer's;
//! - the introducer's load: CPU time and requests (from its `/statistics`) while every node
//!   announces at start, and while every node re-announces (this process signs and publishes each
//!   node's announcement with a new seqnum, as its publisher does every few minutes).
//!
//! Real processes, not sockets in one process: each node is the same binary with its own runtime,
//! so memory and CPU are per node as a deployment has them. On a 2-core machine 100 idle nodes
//! cost little; the uploads are small files, so the figures are about placement and connections,
//! not throughput.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use hyper::Method;

use crate::cli_client::Gateway;
use crate::devgrid::{Children, spawn_node, wait_for_file};
use crate::nodedir::{CreateIntroducerArgs, CreateNodeArgs, create_introducer, create_node};

/// Options of `tessera debug bench-hundred`.
#[derive(Debug, Args)]
pub(crate) struct BenchHundredArgs {
    /// Storage nodes.
    #[arg(long, default_value_t = 100)]
    servers: usize,
    /// Uploads through the gateway.
    #[arg(long, default_value_t = 1000)]
    uploads: usize,
    /// Size of each uploaded file, in bytes (above 55, so that it is not a literal).
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Seconds the idle CPU of the gateway is measured over.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
}

/// Clock ticks per second of /proc's CPU times (Linux's USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process's CPU time so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

/// A process's resident memory now (VmRSS), in MB.
fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kb: f64 = line.split_whitespace().nth(1).context("bad VmRSS")?.parse()?;
    Ok(kb * 1024.0 / 1e6)
}

/// Share files under a storage node's `storage/shares` (not `incoming`).
fn count_shares(dir: &Path) -> usize {
    fn walk(dir: &Path, depth: usize) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| {
                let path = entry.path();
                if path.file_name().is_some_and(|n| n == "incoming") {
                    0
                } else if path.is_dir() {
                    walk(&path, depth + 1)
                } else {
                    usize::from(depth == 2)
                }
            })
            .sum()
    }
    walk(&dir.join("storage").join("shares"), 0)
}

/// `/statistics?t=json`'s counters of the node whose web address is in `dir/node.url`.
fn counters(gateway: &Gateway, node_dir: &Path) -> anyhow::Result<serde_json::Value> {
    let url = std::fs::read_to_string(node_dir.join("node.url"))?;
    let (_, body) = gateway.call(
        Method::GET,
        &format!("{}statistics?t=json", url.trim()),
        Bytes::new(),
    )?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(json["counters"].clone())
}

fn counter(counters: &serde_json::Value, name: &str) -> u64 {
    counters[name].as_u64().unwrap_or(0)
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !done() {
        crate::devgrid::stop_requested()?;
        if start.elapsed() > timeout {
            bail!("{what}: not within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(start.elapsed())
}

struct Grid {
    _root: tempfile::TempDir,
    children: Children,
    introducer: PathBuf,
    storage: Vec<PathBuf>,
    gateway: PathBuf,
}

impl Grid {
    fn pid(&self, name: &str) -> u32 {
        self.children
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, child)| child.id())
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        self.children.stop_all();
    }
}

pub(crate) fn run(args: &BenchHundredArgs) -> anyhow::Result<()> {
    if args.servers < 10 || args.servers > crate::introducer::MAX_SERVERS {
        bail!("--servers must be from 10 to {}", crate::introducer::MAX_SERVERS);
    }
    if args.size <= 55 {
        bail!("--size must be above 55 bytes (smaller files are literals, stored in the cap)");
    }
    let root = tempfile::Builder::new().prefix("bench-hundred").tempdir_in(".")?;
    let introducer = root.path().join("introducer");
    create_introducer(&CreateIntroducerArgs {
        nickname: None,
        listen_port: None,
        location: None,
        // A web port for its /statistics.
        webport: Some("tcp:0:interface=127.0.0.1".into()),
        dir: introducer.clone(),
    })?;
    let mut grid = Grid {
        _root: root,
        children: Children(Vec::new()),
        introducer: introducer.clone(),
        storage: Vec::new(),
        gateway: PathBuf::new(),
    };
    grid.children
        .0
        .push(("introducer".into(), spawn_node(&introducer, "introducer")?));
    {
        let (name, child) = grid.children.0.last_mut().context("just pushed")?;
        wait_for_file(&introducer.join("node.url"), child, name, &introducer)?;
        wait_for_file(
            &introducer.join("private").join("introducer.furl"),
            child,
            name,
            &introducer,
        )?;
    }
    let address = std::fs::read_to_string(introducer.join("private").join("introducer.furl"))?
        .trim()
        .to_owned();
    let root = grid._root.path().to_path_buf();
    let intro_pid = grid.pid("introducer");
    let intro_cpu_before = cpu_seconds(intro_pid)?;

    let started = Instant::now();
    for i in 1..=args.servers {
        let dir = root.join(format!("storage{i:03}"));
        create_node(&CreateNodeArgs::storage_only(
            dir.clone(),
            format!("storage{i:03}"),
            Some(address.clone()),
        ))?;
        let name = format!("storage{i:03}");
        grid.children.0.push((name, spawn_node(&dir, "storage")?));
        grid.storage.push(dir);
    }
    let offset = grid.children.0.len() - args.servers;
    for (dir, (name, child)) in grid.storage.iter().zip(grid.children.0[offset..].iter_mut()) {
        wait_for_file(&dir.join("private").join("storage.nurl"), child, name, dir)?;
    }
    let gateway_dir = root.join("gateway");
    create_node(
        &crate::nodedir::CreateClientArgs {
            nickname: Some("gateway".into()),
            webport: "tcp:0:interface=127.0.0.1".into(),
            introducer: Some(address.clone()),
            dir: gateway_dir.clone(),
        }
        .into_node_args(),
    )?;
    grid.gateway = gateway_dir.clone();
    grid.children
        .0
        .push(("gateway".into(), spawn_node(&gateway_dir, "gateway")?));
    {
        let (name, child) = grid.children.0.last_mut().context("just pushed")?;
        wait_for_file(&gateway_dir.join("node.url"), child, name, &gateway_dir)?;
    }
    let web = Gateway::open(&gateway_dir, &crate::cli_client::GatewayArgs::default())?;
    let servers = args.servers;
    wait_until(
        "the introducer knowing every server",
        Duration::from_secs(120),
        || counters(&web, &introducer).is_ok_and(|c| counter(&c, "introducer.servers") == servers as u64),
    )?;
    let announced = started.elapsed();
    let learned = wait_until(
        "the gateway connected to every server",
        Duration::from_secs(120),
        || crate::cli_client::connected_servers(&gateway_dir).is_ok_and(|n| n == servers),
    )?;
    let intro_cpu_start = cpu_seconds(intro_pid)? - intro_cpu_before;
    let start_counters = counters(&web, &introducer)?;
    println!(
        "{servers} storage nodes (each a `tessera run` process), an introducer and a gateway; \
         all started and announced in {:.1} s, the gateway connected to all {:.1} s later",
        announced.as_secs_f64(),
        learned.as_secs_f64()
    );
    println!(
        "introducer while {servers} nodes announced and the gateway subscribed: {:.2} s CPU, {} publishes, \
         {} lists sent ({:.1} MB)",
        intro_cpu_start,
        counter(&start_counters, "introducer.inbound_message"),
        counter(&start_counters, "introducer.polls"),
        counter(&start_counters, "introducer.list_bytes_sent") as f64 / 1e6
    );

    // Uploads: small files of random bytes, four at a time.
    let upload_start = Instant::now();
    let url = web.unlinked();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < args.uploads {
                    let data: Vec<u8> = (0..args.size).map(|_| rand::random::<u8>()).collect();
                    if let Err(e) = web.call(Method::PUT, &url, Bytes::from(data)) {
                        eprintln!("upload failed: {e:#}");
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let upload_time = upload_start.elapsed().as_secs_f64();
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    let shares: Vec<f64> = grid.storage.iter().map(|d| count_shares(d) as f64).collect();
    let total: f64 = shares.iter().sum();
    let (mean, sd) = mean_sd(&shares);
    let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
    let max = shares.iter().copied().fold(0.0, f64::max);
    let p = 10.0 / servers as f64;
    let random_sd = ((args.uploads - failed) as f64 * p * (1.0 - p)).sqrt();
    println!(
        "{} uploads of {} bytes (3-of-10) in {upload_time:.1} s ({:.0} per second), {failed} failed",
        args.uploads,
        args.size,
        args.uploads as f64 / upload_time
    );
    println!(
        "shares per server: {total} in all; min {min}, max {max}, mean {mean:.1}, stddev {sd:.1} \
         (ideal: {:.1} each, stddev 0; independent random placement: stddev {random_sd:.1}); \
         servers with no share: {}",
        total / servers as f64,
        shares.iter().filter(|s| **s == 0.0).count()
    );

    // Idle: every connection held, nothing asked.
    std::thread::sleep(Duration::from_secs(2));
    let gateway_pid = grid.pid("gateway");
    let storage_pids: Vec<u32> = grid.children.0[offset..offset + servers]
        .iter()
        .map(|(_, c)| c.id())
        .collect();
    let gw_cpu = cpu_seconds(gateway_pid)?;
    let st_cpu: f64 = storage_pids.iter().filter_map(|p| cpu_seconds(*p).ok()).sum();
    let intro_cpu = cpu_seconds(intro_pid)?;
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let window = args.idle_secs as f64;
    let gw_idle = (cpu_seconds(gateway_pid)? - gw_cpu) / window;
    let st_idle = (storage_pids
        .iter()
        .filter_map(|p| cpu_seconds(*p).ok())
        .sum::<f64>()
        - st_cpu)
        / window
        / servers as f64;
    let intro_idle = (cpu_seconds(intro_pid)? - intro_cpu) / window;
    let connected = crate::cli_client::connected_servers(&gateway_dir)?;
    println!(
        "gateway idle with {connected} servers connected: {:.1} MB resident, CPU {:.2}% of a core \
         (over {} s)",
        rss_mb(gateway_pid)?,
        gw_idle * 100.0,
        args.idle_secs
    );
    let rss: Vec<f64> = storage_pids.iter().filter_map(|p| rss_mb(*p).ok()).collect();
    let (rss_mean, _) = mean_sd(&rss);
    println!(
        "storage node idle (after the uploads): resident min {:.1} / mean {rss_mean:.1} / max {:.1} MB, \
         CPU {:.3}% of a core each",
        rss.iter().copied().fold(f64::INFINITY, f64::min),
        rss.iter().copied().fold(0.0, f64::max),
        st_idle * 100.0
    );
    println!(
        "introducer idle: {:.1} MB resident, CPU {:.3}% of a core",
        rss_mb(intro_pid)?,
        intro_idle * 100.0
    );

    // Re-announcement: every node's announcement again with a new seqnum, as its publisher sends
    // it every few minutes.
    let before = counters(&web, &introducer)?;
    let cpu_before = cpu_seconds(intro_pid)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let seqnum = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 1;
    let reannounce_start = Instant::now();
    let intro_address = crate::introducer::parse_address(&address)?;
    for dir in &grid.storage {
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        let pem = read("private/node.pem")?;
        let nurls: Vec<String> = read("private/storage.nurl")?.lines().map(str::to_owned).collect();
        let nickname = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let web_url = read("node.url")?.trim().to_owned();
        let signer = crate::daemon::announcement_signer(dir, &nickname, &pem, nurls, Some(web_url))?;
        let signed = signer(seqnum)?;
        runtime.block_on(crate::introducer::publish_once(&intro_address, &signed))?;
    }
    let reannounce_time = reannounce_start.elapsed().as_secs_f64();
    // Let the subscriber's polls answer.
    std::thread::sleep(Duration::from_secs(2));
    let after = counters(&web, &introducer)?;
    let delta = |name: &str| counter(&after, name).saturating_sub(counter(&before, name));
    println!(
        "re-announcement of all {servers} nodes (one after another, {reannounce_time:.1} s): introducer \
         {:.2} s CPU, {} publishes ({} kept), {} lists sent to the one subscriber ({:.2} MB)",
        cpu_seconds(intro_pid)? - cpu_before,
        delta("introducer.inbound_message"),
        delta("introducer.announcements_accepted"),
        delta("introducer.polls"),
        delta("introducer.list_bytes_sent") as f64 / 1e6
    );
    println!(
        "gateway after it all: {} servers connected, {:.1} MB resident",
        crate::cli_client::connected_servers(&gateway_dir)?,
        rss_mb(gateway_pid)?
    );
    let _ = &grid.introducer;
    Ok(())
}
