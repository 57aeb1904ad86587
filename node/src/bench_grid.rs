//! `tessera debug bench-grid`: upload and download throughput on a real local grid — N storage nodes,
//! each its own `tessera run` process, all on this machine's disk — with this process as the client,
//! so its peak memory is the client's. Also the time to the first byte of a 1 MiB range in the middle
//! of the largest file, how long checking it takes (with add-lease, and verifying every share), and
//! the disk's own fsync'd write rate: with every share on one disk, uploads
//! cannot beat disk rate / (N/k).
//!
//! With `--rtt-ms`, `--rate-mbit` or `--slow-servers`, each node sits behind its own emulated link
//! (`storage::testing::EmulatedLink`, a relay in this process that the client's NURLs name), and
//! every figure is printed with its time in round trips and the requests the links saw (the times
//! a connection's traffic turned towards the server: TLS handshake flights count too, so a new
//! connection adds one or two); throughput is given as a share of the links' bound (k links in
//! parallel for a download; for an upload, N links carrying N/k times the file, which is the same).
//! The directory figures (mkdir, adding a 1 KiB file, listing 200 entries) are taken after the
//! files', through the same client.

use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use filenode::cap::{Cap, FileCap, LitCap, MutableFormat};
use filenode::crypto::AesCtr;
use filenode::grid::upload::UploadParams;
use filenode::grid::{ClientSecrets, Grid, ServerEntry};
use filenode::node::{DirNode, Replace};
use futures::StreamExt;
use storage::testing::{EmulatedLink, LinkConfig, LinkStats};

use crate::devgrid::{Children, spawn_node, wait_for_file};
use crate::nodedir::{CreateNodeArgs, create_node};

/// The pause after a figure that abandons a download after its first byte, so that the reads it
/// left in flight are not counted in the next figure (a probe then reconnects where they closed
/// connections, as the gateway's prober would).
const SETTLE: Duration = Duration::from_millis(500);

/// Options of `tessera debug bench-grid`.
#[derive(Debug, Args)]
pub(crate) struct BenchGridArgs {
    /// Storage nodes.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Round trip of each node's emulated link, in milliseconds (0: none).
    #[arg(long, default_value_t = 0.0)]
    rtt_ms: f64,
    /// Rate of each node's emulated link, each way, in Mbit/s (default: no cap).
    #[arg(long)]
    rate_mbit: Option<f64>,
    /// How many of the nodes sit behind a 1 Mbit/s link instead.
    #[arg(long, default_value_t = 0)]
    slow_servers: usize,
    /// File sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    sizes_mib: Vec<u64>,
    /// Also take the figures through the web API: a gateway in this process, on 127.0.0.1, over
    /// the same client (PUT /uri, GET /uri/CAP, POST /uri?t=mkdir, PUT /uri/DIR/name, ?t=json).
    #[arg(long)]
    web: bool,
    /// Sample the bytes the links carry towards the servers every 5 ms, and print for each
    /// operation that sends a MiB or more (uploads) when its first 64 KiB, half and 99% of them
    /// had passed (where its time goes).
    #[arg(long)]
    timeline: bool,
}

pub(crate) fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

/// The process's peak resident memory (VmHWM), in MB.
pub(crate) fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0 / 1e6)
}

/// Writes `size` bytes with 1 MiB writes and fsync, as a share upload does; returns MB/s.
fn disk_rate(dir: &Path, size: u64) -> anyhow::Result<f64> {
    let path = dir.join("disk-probe");
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..size.div_ceil(1 << 20) {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    let rate = mb_per_s(size, start.elapsed().as_secs_f64());
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// The client's entry for the storage node in `dir`; with `via`, its NURL names that address (an
/// emulated link in front of the node) instead of the node's own.
fn server_entry(dir: &Path, via: Option<SocketAddr>) -> anyhow::Result<ServerEntry> {
    let read = |name: &str| std::fs::read_to_string(dir.join("private").join(name));
    let key = read("node.pubkey")?
        .trim()
        .trim_start_matches("pub-v0-")
        .to_owned();
    let mut nurls: Vec<String> = read("storage.nurl")?.lines().map(str::to_owned).collect();
    if let Some(addr) = via {
        nurls = nurls
            .iter()
            .filter_map(|text| text.parse::<storage::nurl::Nurl>().ok())
            .map(|mut nurl| {
                nurl.host = addr.ip().to_string();
                nurl.port = addr.port();
                nurl.to_string()
            })
            .collect();
    }
    let ann = crate::client::Announcement {
        nickname: String::new(),
        furl: read("storage.furl")?.trim().to_owned(),
        nurls,
        permutation_seed_base32: Some(key.clone()),
        web_url: None,
    };
    crate::client::server_entry(&format!("v0-{key}"), &ann, Default::default())
}

/// Storage nodes started as `tessera run` processes in a scratch directory, stopped on drop.
pub(crate) struct LocalGrid {
    /// The scratch directory (removed on drop).
    pub(crate) root: tempfile::TempDir,
    children: Children,
    /// The storage nodes' directories.
    pub(crate) dirs: Vec<std::path::PathBuf>,
}

impl LocalGrid {
    /// Starts `servers` storage nodes and waits until each serves.
    pub(crate) fn start(servers: usize, prefix: &str) -> anyhow::Result<LocalGrid> {
        let root = tempfile::Builder::new().prefix(prefix).tempdir_in(".")?;
        let mut grid = LocalGrid {
            root,
            children: Children(Vec::new()),
            dirs: Vec::new(),
        };
        for i in 1..=servers {
            let dir = grid.root.path().join(format!("storage{i:02}"));
            create_node(&CreateNodeArgs::storage_only(
                dir.clone(),
                format!("storage{i:02}"),
                None,
            ))?;
            let child = spawn_node(&dir, "storage")?;
            grid.children.0.push((format!("storage{i:02}"), child));
            grid.dirs.push(dir);
        }
        for (dir, (name, child)) in grid.dirs.iter().zip(grid.children.0.iter_mut()) {
            wait_for_file(&dir.join("private").join("storage.nurl"), child, name, dir)?;
        }
        Ok(grid)
    }

    /// A client of these servers (call from inside a runtime).
    pub(crate) async fn client(&self, params: UploadParams) -> anyhow::Result<Arc<Grid>> {
        self.client_via(params, None).await
    }

    /// A client of these servers that reaches server `i` through `via[i]` (an emulated link).
    pub(crate) async fn client_via(
        &self,
        params: UploadParams,
        via: Option<&[SocketAddr]>,
    ) -> anyhow::Result<Arc<Grid>> {
        let entries = self
            .dirs
            .iter()
            .enumerate()
            .map(|(i, d)| server_entry(d, via.map(|v| v[i])))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let secrets = ClientSecrets {
            lease_secret: vec![1; 32],
            convergence: Some(rand::random::<[u8; 32]>().to_vec()),
        };
        let grid = Arc::new(Grid::new(secrets, params));
        grid.set_servers(entries);
        grid.probe().await;
        Ok(grid)
    }
}

impl LocalGrid {
    /// The address node `i` serves on (from its NURL).
    fn address(&self, i: usize) -> anyhow::Result<SocketAddr> {
        let text = std::fs::read_to_string(self.dirs[i].join("private").join("storage.nurl"))?;
        let nurl = text
            .lines()
            .find_map(|line| line.parse::<storage::nurl::Nurl>().ok())
            .context("no NURL")?;
        let ip: std::net::IpAddr = nurl.host.parse().context("the NURL's host is not an address")?;
        Ok(SocketAddr::new(ip, nurl.port))
    }
}

impl Drop for LocalGrid {
    fn drop(&mut self) {
        self.children.stop_all();
    }
}

/// The emulated links in front of the storage nodes, and what they have counted.
struct Links {
    links: Vec<EmulatedLink>,
    rtt: Duration,
}

/// What the links carried during one operation.
struct Traffic {
    requests: u64,
    most_on_one: u64,
    connections: u64,
}

impl Links {
    fn snapshot(&self) -> Vec<LinkStats> {
        self.links.iter().map(EmulatedLink::stats).collect()
    }

    fn since(&self, before: &[LinkStats]) -> Traffic {
        let deltas: Vec<LinkStats> = self
            .links
            .iter()
            .zip(before)
            .map(|(link, old)| link.stats().since(old))
            .collect();
        Traffic {
            requests: deltas.iter().map(|d| d.requests).sum(),
            most_on_one: deltas.iter().map(|d| d.requests).max().unwrap_or(0),
            connections: deltas.iter().map(|d| d.connections).sum(),
        }
    }
}

/// `--timeline`'s line for one operation from its samples (seconds since its start, bytes up so
/// far): when the first 64 KiB, half and 99% of the bytes it sent had passed the links; nothing
/// for an operation that sent less than a MiB.
fn timeline(samples: &[(f64, u64)], seconds: f64) -> Option<String> {
    let (&(_, first), &(_, last)) = (samples.first()?, samples.last()?);
    let total = last.saturating_sub(first);
    // Reads send only requests: their timeline says nothing.
    if total < 1 << 20 {
        return None;
    }
    let when = |bytes: u64| {
        samples
            .iter()
            .find(|(_, up)| up - first >= bytes)
            .map_or(f64::NAN, |(at, _)| at * 1e3)
    };
    Some(format!(
        "    links towards the servers: first 64 KiB by {:.0} ms, half by {:.0} ms, 99% by {:.0} ms of {:.0} ms ({:.1} MB)",
        when(1 << 16),
        when(total / 2),
        when(total - total / 100),
        seconds * 1e3,
        total as f64 / 1e6
    ))
}

/// Times operations and reports each with its round trips.
struct Meter<'a> {
    links: Option<&'a Links>,
    /// `--timeline`.
    timeline: bool,
}

impl Meter<'_> {
    /// Runs `op`, then prints `what` with its time, the time in round trips of the link and the
    /// requests the links saw.
    async fn measure<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(T, f64)> {
        let before = self.links.map(Links::snapshot);
        let start = Instant::now();
        let mut samples: Vec<(f64, u64)> = Vec::new();
        let value = match self.links.filter(|_| self.timeline) {
            Some(links) => {
                let sampler = async {
                    let mut tick = tokio::time::interval(Duration::from_millis(5));
                    loop {
                        tick.tick().await;
                        let up: u64 = links.links.iter().map(|l| l.stats().bytes_up).sum();
                        samples.push((start.elapsed().as_secs_f64(), up));
                    }
                };
                let op = std::pin::pin!(op);
                let sampler = std::pin::pin!(sampler);
                match futures::future::select(op, sampler).await {
                    futures::future::Either::Left((value, _)) => value,
                    futures::future::Either::Right(((), _)) => unreachable!("the sampler never ends"),
                }
            }
            None => op.await,
        }?;
        let seconds = start.elapsed().as_secs_f64();
        self.report(what, seconds, before.as_deref(), "")?;
        if let Some(line) = timeline(&samples, seconds) {
            crate::output::line(&line)?;
        }
        Ok((value, seconds))
    }

    fn report(
        &self,
        what: &str,
        seconds: f64,
        before: Option<&[LinkStats]>,
        extra: &str,
    ) -> anyhow::Result<()> {
        let traffic = match (self.links, before) {
            (Some(links), Some(before)) => {
                let t = links.since(before);
                // With --rtt-ms 0 (only a rate cap) there is no round trip to count in.
                let round_trips = if links.rtt.is_zero() {
                    "    - RTT".to_owned()
                } else {
                    format!("{:5.1} RTT", seconds / links.rtt.as_secs_f64())
                };
                format!(
                    "{round_trips}   requests {:4} (most to one server {:3}), new connections {}",
                    t.requests, t.most_on_one, t.connections
                )
            }
            _ => String::new(),
        };
        crate::output::line(&format!(
            "  {what:<44} {:9.1} ms  {traffic}{extra}",
            seconds * 1e3
        ))
    }
}

pub(crate) fn run(args: &BenchGridArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.servers >= 1, "--servers must be at least 1");
    anyhow::ensure!(
        args.slow_servers <= args.servers,
        "--slow-servers ({}) is more than --servers ({})",
        args.slow_servers,
        args.servers
    );
    anyhow::ensure!(
        args.rtt_ms >= 0.0 && args.rtt_ms.is_finite(),
        "--rtt-ms must be a non-negative number"
    );
    if let Some(rate) = args.rate_mbit {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate-mbit must be positive");
    }
    let shaped = args.rtt_ms > 0.0 || args.rate_mbit.is_some() || args.slow_servers > 0;
    let local = LocalGrid::start(args.servers, "tessera-bench-grid")?;
    let root = &local.root;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let params = UploadParams::default();
    let largest = args.sizes_mib.iter().copied().max().unwrap_or(1) << 20;
    let disk = disk_rate(root.path(), largest.min(1 << 30))?;
    let expansion = params.total as f64 / params.needed as f64;
    let disk_bound = disk / expansion;
    // Each link's rate in MB/s; a download's bound is k links in parallel, an upload's N links
    // carrying N/k times the file, which is again k links.
    let link_rate = args.rate_mbit.map(|m| m / 8.0);
    let link_bound = link_rate.map(|r| r * f64::from(params.needed));
    let upload_bound = link_bound.map_or(disk_bound, |l| l.min(disk_bound));
    crate::output::line(&format!(
        "bench-grid: {} storage nodes (separate processes), {}-of-{}, happy {}, this process is the client",
        args.servers, params.needed, params.total, params.happy
    ))?;
    crate::output::line(&format!(
        "disk: {disk:.0} MB/s with fsync -> upload bound {disk_bound:.0} MB/s (every share on this one disk, N/k = {expansion:.2})",
    ))?;
    let rtt = Duration::from_secs_f64(args.rtt_ms / 1e3);
    let links = if shaped {
        let fast = LinkConfig::with_rtt_and_rate(rtt, args.rate_mbit);
        let slow = LinkConfig::with_rtt_and_rate(rtt, Some(1.0));
        let mut links = Vec::new();
        for i in 0..args.servers {
            let target = local.address(i)?;
            let config = if i < args.slow_servers { slow } else { fast };
            links.push(runtime.block_on(EmulatedLink::start(target, config))?);
        }
        crate::output::line(&format!(
            "links: each node behind its own emulated link (a relay in this process): {} ms RTT, {} each way{}; link bound {}",
            args.rtt_ms,
            args.rate_mbit
                .map_or("no rate cap".to_owned(), |m| format!("{m} Mbit/s")),
            if args.slow_servers > 0 {
                format!(", {} of them at 1 Mbit/s", args.slow_servers)
            } else {
                String::new()
            },
            link_bound.map_or("none".to_owned(), |b| format!(
                "{b:.1} MB/s (k = {} links)",
                params.needed
            )),
        ))?;
        Some(Links { links, rtt })
    } else {
        crate::output::line(
            "links: none (loopback; --rtt-ms, --rate-mbit or --slow-servers put each node behind an emulated link and count round trips)",
        )?;
        None
    };
    let meter = Meter {
        links: links.as_ref(),
        timeline: args.timeline,
    };
    let ratio = |rate: f64, bound: Option<f64>| {
        bound.map_or(String::new(), |b| {
            format!(" ({:3.0}% of the {b:.1} MB/s bound)", 100.0 * rate / b)
        })
    };
    let result = runtime.block_on(async {
        let via: Option<Vec<SocketAddr>> = links
            .as_ref()
            .map(|l| l.links.iter().map(EmulatedLink::addr).collect());
        let grid = local.client_via(params, via.as_deref()).await?;
        // Warm up: a gateway in steady state has its TLS connections to every server open already.
        let warm = grid
            .upload(std::io::Cursor::new(vec![7u8; 1 << 20]), None)
            .await?;
        if let FileCap::Chk(cap) = warm.cap {
            let reader = Arc::new(grid.open_chk(cap).await?);
            let mut chunks = reader.stream_range(0, cap.size)?;
            while let Some(chunk) = chunks.next().await {
                chunk?;
            }
        }
        for &mib in &args.sizes_mib {
            let size = mib << 20;
            let mut input = tempfile::tempfile_in(root.path())?;
            let mut buf = vec![0u8; 1 << 20];
            let mut stream = AesCtr::new(&rand::random());
            for _ in 0..mib {
                buf.fill(0);
                stream.apply(&mut buf);
                input.write_all(&buf)?;
            }
            input.seek(SeekFrom::Start(0))?;
            crate::output::line(&format!("{mib} MiB:"))?;
            let (uploaded, seconds) = meter
                .measure("upload", async { Ok(grid.upload(input, None).await?) })
                .await?;
            let up = mb_per_s(size, seconds);
            crate::output::line(&format!(
                "    upload {up:.1} MB/s{}",
                ratio(up, Some(upload_bound))
            ))?;
            let FileCap::Chk(cap) = uploaded.cap else {
                anyhow::bail!("expected a CHK cap")
            };
            let (read, seconds) = meter
                .measure("download (a fresh reader)", async {
                    let reader = Arc::new(grid.open_chk(cap).await?);
                    let mut chunks = Arc::clone(&reader).stream_range(0, size)?;
                    let mut read = 0u64;
                    while let Some(chunk) = chunks.next().await {
                        read += chunk?.len() as u64;
                    }
                    Ok(read)
                })
                .await?;
            anyhow::ensure!(read == size, "read {read} of {size} bytes");
            let down = mb_per_s(size, seconds);
            crate::output::line(&format!("    download {down:.1} MB/s{}", ratio(down, link_bound)))?;
            if size == largest {
                meter
                    .measure("download first byte (a fresh reader)", async {
                        let reader = grid.open_chk(cap).await?;
                        let mut chunks = Arc::new(reader).stream_range(0, size)?;
                        chunks.next().await.context("no data")??;
                        Ok(())
                    })
                    .await?;
                tokio::time::sleep(SETTLE).await;
                grid.probe().await;
                let before = links.as_ref().map(Links::snapshot);
                let start = Instant::now();
                // 1 MiB from the middle (less where the file is smaller: up to its end).
                let range_len = (1u64 << 20).min(size - size / 2);
                let reader = grid.open_chk_at(cap, size / 2).await?;
                let mut range = Arc::new(reader).stream_range(size / 2, range_len)?;
                let mut got = range.next().await.context("no data")??.len();
                let first = start.elapsed().as_secs_f64();
                while let Some(chunk) = range.next().await {
                    got += chunk?.len();
                }
                anyhow::ensure!(
                    got as u64 == range_len,
                    "the range read {got} of {range_len} bytes"
                );
                meter.report(
                    "1 MiB range mid-file (a fresh reader), total",
                    start.elapsed().as_secs_f64(),
                    before.as_deref(),
                    &format!("; first byte {:.1} ms", first * 1e3),
                )?;
                // Checking the file: locating its shares, renewing leases, verifying every share.
                let file = filenode::cap::Cap::File(FileCap::Chk(cap));
                for (what, options) in [
                    ("check", filenode::grid::check::CheckOptions::default()),
                    (
                        "check with add-lease",
                        filenode::grid::check::CheckOptions {
                            add_lease: true,
                            ..Default::default()
                        },
                    ),
                    (
                        "verify every share",
                        filenode::grid::check::CheckOptions {
                            verify: true,
                            ..Default::default()
                        },
                    ),
                ] {
                    let (report, _) = meter
                        .measure(what, async {
                            grid.check(&file, options).await.context("no report")
                        })
                        .await?;
                    anyhow::ensure!(
                        report.healthy || args.slow_servers > 0,
                        "the file is not healthy: {}",
                        report.summary()
                    );
                }
            }
        }
        crate::output::line("directories (this client, as a gateway that made them):")?;
        while grid.key_pool().ready() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (dir, _) = meter
            .measure("mkdir (RSA key from the pool)", async {
                Ok(grid.create_directory(MutableFormat::Sdmf).await?)
            })
            .await?;
        meter
            .measure("add a 1 KiB file (upload + link)", async {
                let body: [u8; 1024] = std::array::from_fn(|_| rand::random());
                let uploaded = grid.upload(std::io::Cursor::new(body.to_vec()), None).await?;
                dir.set_child("one-kib.bin", &Cap::File(uploaded.cap), None, Replace::Always)
                    .await?;
                Ok(())
            })
            .await?;
        let child = Cap::File(FileCap::Lit(LitCap {
            data: b"child".to_vec(),
        }));
        let children: Vec<_> = (0..200)
            .map(|i| (format!("file-{i:03}.txt"), child.clone(), None))
            .collect();
        let big = grid
            .create_directory_with_children(MutableFormat::Sdmf, children)
            .await?;
        let (listed, _) = meter
            .measure("list a 200-entry directory", async { Ok(big.list().await?) })
            .await?;
        anyhow::ensure!(listed.len() == 200, "listed {} children", listed.len());
        let fresh = local.client_via(params, via.as_deref()).await?;
        let cold = DirNode::new(&fresh, big.cap().clone());
        let (listed, _) = meter
            .measure("list it from a fresh client (connected)", async {
                Ok(cold.list().await?)
            })
            .await?;
        anyhow::ensure!(listed.len() == 200, "listed {} children", listed.len());
        if args.web {
            let bounds = (Some(upload_bound), link_bound);
            web_figures(&meter, &grid, &args.sizes_mib, bounds).await?;
        }
        Ok::<(), anyhow::Error>(())
    });
    drop(links);
    drop(local);
    result?;
    if let Some(peak) = peak_memory_mb() {
        crate::output::line(&format!(
            "client peak memory (VmHWM of this process): {peak:.0} MB"
        ))?;
    }
    Ok(())
}

/// Throughput and round trips through the web API: a gateway over `grid` on 127.0.0.1, asked by
/// an HTTP client in this process. `bounds` are the upload's and the download's.
async fn web_figures(
    meter: &Meter<'_>,
    grid: &Arc<Grid>,
    sizes_mib: &[u64],
    bounds: (Option<f64>, Option<f64>),
) -> anyhow::Result<()> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::{Method, Request};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = frontends::web::router(frontends::web::WebState::new(Arc::clone(grid), "bench-grid"));
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    // Sends a request; returns the status and the body (or only its first piece).
    let call = |method: Method, path: String, body: Bytes, first_piece_only: bool| {
        let http = http.clone();
        async move {
            let request = Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"))
                .body(Full::new(body))?;
            let response = http.request(request).await?;
            let status = response.status();
            let mut body = response.into_body();
            let mut got = Vec::new();
            let mut length = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    length += data.len() as u64;
                    if got.len() < 4096 {
                        got.extend_from_slice(&data[..data.len().min(4096 - got.len())]);
                    }
                    if first_piece_only && length > 0 {
                        break;
                    }
                }
            }
            anyhow::ensure!(
                status.is_success(),
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&got)
            );
            Ok::<_, anyhow::Error>((got, length))
        }
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    let ratio = |rate: f64, bound: Option<f64>| {
        bound.map_or(String::new(), |b| {
            format!(" ({:3.0}% of the {b:.1} MB/s bound)", 100.0 * rate / b)
        })
    };
    crate::output::line(&format!(
        "through the web API (a gateway in this process at http://{addr}, over the same client):"
    ))?;
    for &mib in sizes_mib {
        let size = mib << 20;
        let mut body = vec![0u8; usize::try_from(size)?];
        AesCtr::new(&rand::random()).apply(&mut body);
        let body = Bytes::from(body);
        crate::output::line(&format!("{mib} MiB:"))?;
        let ((cap, _), seconds) = meter
            .measure("web PUT /uri", call(Method::PUT, "/uri".to_owned(), body, false))
            .await?;
        let cap = text(&cap);
        let up = mb_per_s(size, seconds);
        crate::output::line(&format!("    upload {up:.1} MB/s{}", ratio(up, bounds.0)))?;
        let ((_, read), seconds) = meter
            .measure(
                "web GET /uri/CAP",
                call(Method::GET, format!("/uri/{cap}"), Bytes::new(), false),
            )
            .await?;
        anyhow::ensure!(read == size, "read {read} of {size} bytes through the web API");
        let down = mb_per_s(size, seconds);
        crate::output::line(&format!("    download {down:.1} MB/s{}", ratio(down, bounds.1)))?;
        meter
            .measure(
                "web GET /uri/CAP, first byte",
                call(Method::GET, format!("/uri/{cap}"), Bytes::new(), true),
            )
            .await?;
        // The abandoned download's reads in flight end before the next figure starts, and a
        // probe (as the gateway's prober makes every 10 s) reconnects to servers whose
        // connection the abandoned reads closed.
        tokio::time::sleep(SETTLE).await;
        grid.probe().await;
    }
    // As for the client's own mkdir: a gateway in steady state has keys in its pool.
    while grid.key_pool().ready() == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ((dir, _), _) = meter
        .measure(
            "web POST /uri?t=mkdir",
            call(Method::POST, "/uri?t=mkdir".to_owned(), Bytes::new(), false),
        )
        .await?;
    let dir = text(&dir);
    let kib: [u8; 1024] = std::array::from_fn(|_| rand::random());
    meter
        .measure(
            "web PUT /uri/DIR/name (a 1 KiB file)",
            call(
                Method::PUT,
                format!("/uri/{dir}/one-kib.bin"),
                Bytes::copy_from_slice(&kib),
                false,
            ),
        )
        .await?;
    let ((listing, _), _) = meter
        .measure(
            "web GET /uri/DIR?t=json",
            call(Method::GET, format!("/uri/{dir}?t=json"), Bytes::new(), false),
        )
        .await?;
    anyhow::ensure!(
        text(&listing).contains("one-kib.bin"),
        "the listing lacks the file just added"
    );
    server.abort();
    Ok(())
}
