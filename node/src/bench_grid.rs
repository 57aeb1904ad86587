//! `tessera debug bench-grid`: upload and download throughput on a real local grid — N storage nodes,
//! each its own `tessera run` process, all on this machine's disk — with this process as the client,
//! so its peak memory is the client's. Also the time to the first byte of a 1 MiB range in the middle
//! of the largest file, how long checking it takes (with add-lease, and verifying every share), and
//! the disk's own fsync'd write rate: with every share on one disk, uploads
//! cannot beat disk rate / (N/k).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use filenode::cap::FileCap;
use filenode::crypto::AesCtr;
use filenode::grid::upload::UploadParams;
use filenode::grid::{ClientSecrets, Grid, ServerEntry};
use futures::StreamExt;

use crate::devgrid::{Children, spawn_node, wait_for_file};
use crate::nodedir::{CreateNodeArgs, create_node};

/// Options of `tessera debug bench-grid`.
#[derive(Debug, Args)]
pub(crate) struct BenchGridArgs {
    /// Storage nodes.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// File sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    sizes_mib: Vec<u64>,
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

fn server_entry(dir: &Path) -> anyhow::Result<ServerEntry> {
    let read = |name: &str| std::fs::read_to_string(dir.join("private").join(name));
    let key = read("node.pubkey")?
        .trim()
        .trim_start_matches("pub-v0-")
        .to_owned();
    let ann = crate::client::Announcement {
        nickname: String::new(),
        furl: read("storage.furl")?.trim().to_owned(),
        nurls: read("storage.nurl")?.lines().map(str::to_owned).collect(),
        permutation_seed_base32: Some(key.clone()),
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
        let entries = self
            .dirs
            .iter()
            .map(|d| server_entry(d))
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

impl Drop for LocalGrid {
    fn drop(&mut self) {
        self.children.stop_all();
    }
}

pub(crate) fn run(args: &BenchGridArgs) -> anyhow::Result<()> {
    let local = LocalGrid::start(args.servers, "tessera-bench-grid")?;
    let root = &local.root;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let params = UploadParams::default();
    let largest = args.sizes_mib.iter().copied().max().unwrap_or(1) << 20;
    let disk = disk_rate(root.path(), largest.min(1 << 30))?;
    let bound = disk / (params.total as f64 / params.needed as f64);
    crate::output::line(&format!(
        "bench-grid: {} storage nodes (separate processes), {}-of-{}, happy {}, this process is the client",
        args.servers, params.needed, params.total, params.happy
    ))?;
    crate::output::line(&format!(
        "disk: {disk:.0} MB/s with fsync -> upload bound {bound:.0} MB/s (every share on this one disk, N/k = {:.2})",
        params.total as f64 / params.needed as f64
    ))?;
    let result = runtime.block_on(async {
        let grid = local.client(params).await?;
        // Warm up: a gateway in steady state has its TLS connections to every server open already.
        let warm = grid.upload(std::io::Cursor::new(vec![7u8; 1 << 20]), None).await?;
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
            let start = Instant::now();
            let uploaded = grid.upload(input, None).await?;
            let up = mb_per_s(size, start.elapsed().as_secs_f64());
            let FileCap::Chk(cap) = uploaded.cap else { anyhow::bail!("expected a CHK cap") };
            let start = Instant::now();
            let reader = Arc::new(grid.open_chk(cap).await?);
            let mut chunks = Arc::clone(&reader).stream_range(0, size)?;
            let mut read = 0u64;
            while let Some(chunk) = chunks.next().await {
                read += chunk?.len() as u64;
            }
            anyhow::ensure!(read == size, "read {read} of {size} bytes");
            let down = mb_per_s(size, start.elapsed().as_secs_f64());
            crate::output::line(&format!(
                "{mib:>6} MiB: upload {up:7.1} MB/s ({:3.0}% of bound)   download {down:7.1} MB/s",
                100.0 * up / bound
            ))?;
            if size == largest {
                let start = Instant::now();
                let reader = grid.open_chk(cap).await?;
                let mut range = Arc::new(reader).stream_range(size / 2, 1 << 20)?;
                let first = range.next().await.context("no data")??;
                let ttfb = start.elapsed();
                crate::output::line(&format!(
                    "        first byte of a 1 MiB range at the middle: {:.1} ms (a fresh reader: share lookup, validation, one segment; {} bytes)",
                    ttfb.as_secs_f64() * 1e3,
                    first.len()
                ))?;
                // Checking the file: locating its shares, renewing leases, verifying every share.
                let file = filenode::cap::Cap::File(FileCap::Chk(cap));
                let mut timed = Vec::new();
                for options in [
                    filenode::grid::check::CheckOptions::default(),
                    filenode::grid::check::CheckOptions {
                        add_lease: true,
                        ..Default::default()
                    },
                    filenode::grid::check::CheckOptions {
                        verify: true,
                        ..Default::default()
                    },
                ] {
                    let start = Instant::now();
                    let report = grid.check(&file, options).await.context("no report")?;
                    anyhow::ensure!(report.healthy, "the file is not healthy: {}", report.summary());
                    timed.push(start.elapsed().as_secs_f64());
                }
                let shares = size as f64 * f64::from(cap.total) / f64::from(cap.needed);
                crate::output::line(&format!(
                    "        check {:.1} ms, check with add-lease {:.1} ms, verify every share {:.1} s ({:.0} MB/s of share data)",
                    timed[0] * 1e3,
                    timed[1] * 1e3,
                    timed[2],
                    shares / timed[2] / 1e6
                ))?;
            }
        }
        Ok::<(), anyhow::Error>(())
    });
    drop(local);
    result?;
    if let Some(peak) = peak_memory_mb() {
        crate::output::line(&format!(
            "client peak memory (VmHWM of this process): {peak:.0} MB"
        ))?;
    }
    Ok(())
}
