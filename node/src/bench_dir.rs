//! `tessera debug bench-dir`: directory and mutable-file speed on a real local grid (N storage
//! nodes as separate `tessera run` processes, this process the client): creating a directory,
//! adding the 10,000th child to a directory (from this client, which remembers the directory's last
//! version, and from a fresh client that must find it first), listing a 10,000-child directory, and
//! a 1 MiB partial write into a 1 GiB MDMF file. Tahoe-LAFS needs about 35 s to modify a
//! 10,000-entry directory.

use std::time::Instant;

use clap::Args;
use filenode::cap::{Cap, FileCap, LitCap, MutableFormat};
use filenode::grid::mutable::chunks_from_read;
use filenode::grid::upload::UploadParams;
use filenode::node::{DirNode, FileNode, Replace};

use crate::bench_grid::{LocalGrid, mb_per_s, peak_memory_mb};

/// Options of `tessera debug bench-dir`.
#[derive(Debug, Args)]
pub(crate) struct BenchDirArgs {
    /// Storage nodes.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Children of the large directory.
    #[arg(long, default_value_t = 10_000)]
    children: usize,
    /// Size of the MDMF file for the partial write, in MiB.
    #[arg(long, default_value_t = 1024)]
    mdmf_mib: u64,
}

fn ms(seconds: f64) -> String {
    format!("{:.0} ms", seconds * 1e3)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

pub(crate) fn run(args: &BenchDirArgs) -> anyhow::Result<()> {
    let local = LocalGrid::start(args.servers, "tessera-bench-dir")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let params = UploadParams::default();
    crate::output::line(&format!(
        "bench-dir: {} storage nodes (separate processes), {}-of-{}, this process is the client",
        args.servers, params.needed, params.total
    ))?;
    runtime.block_on(async {
        let grid = local.client(params).await?;
        // Directory creation, with a signing key ready in the pool (as in steady state).
        let mut creations = Vec::new();
        for _ in 0..5 {
            while grid.key_pool().ready() == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let start = Instant::now();
            grid.create_directory(MutableFormat::Sdmf).await?;
            creations.push(start.elapsed().as_secs_f64());
        }
        crate::output::line(&format!(
            "create a directory: {} (median of 5; RSA key from the pool)",
            ms(median(creations))
        ))?;
        // A directory of n - 1 children (made in one write), then the n-th child.
        let n = args.children;
        let child = Cap::File(FileCap::Lit(LitCap { data: b"child".to_vec() }));
        let children: Vec<_> = (0..n - 1)
            .map(|i| (format!("file-{i:06}.txt"), child.clone(), None))
            .collect();
        let start = Instant::now();
        let big = grid.create_directory_with_children(MutableFormat::Sdmf, children).await?;
        let built = start.elapsed().as_secs_f64();
        let start = Instant::now();
        big.set_child(&format!("file-{:06}.txt", n - 1), &child, None, Replace::Always).await?;
        let warm = start.elapsed().as_secs_f64();
        let fresh = local.client(params).await?;
        let cold_dir = DirNode::new(&fresh, big.cap().clone());
        let start = Instant::now();
        cold_dir.set_child(&format!("file-{n:06}.txt"), &child, None, Replace::Always).await?;
        let cold = start.elapsed().as_secs_f64();
        let lister = local.client(params).await?;
        let start = Instant::now();
        let listed = DirNode::new(&lister, big.cap().clone()).list().await?;
        let list = start.elapsed().as_secs_f64();
        anyhow::ensure!(listed.len() == n + 1, "listed {} children, expected {}", listed.len(), n + 1);
        crate::output::line(&format!("make a {}-child directory in one write: {}", n - 1, ms(built)))?;
        crate::output::line(&format!(
            "add the {n}th child: {} from this client (it knows the last version), {} from a fresh client (Tahoe: ~35 s; target < 1 s)",
            ms(warm),
            ms(cold)
        ))?;
        crate::output::line(&format!("list {} children from a fresh client: {}", n + 1, ms(list)))?;
        // MDMF: a large file, then a 1 MiB write in the middle.
        let size = args.mdmf_mib << 20;
        let start = Instant::now();
        let key = grid.key_pool().take().await?;
        let source = chunks_from_read(std::io::Read::take(std::io::repeat(0x5a), size));
        let cap = grid.create_mutable_with_new_key(MutableFormat::Mdmf, key, size, source).await?;
        let upload = start.elapsed().as_secs_f64();
        let file = FileNode::new(&grid, FileCap::Mutable(cap));
        let patch = vec![0xa5u8; 1 << 20];
        let offset = size / 2 + 12_345;
        let start = Instant::now();
        file.write_at(offset, patch.clone()).await?;
        let write = start.elapsed().as_secs_f64();
        let fresh_file = FileNode::new(&local.client(params).await?, FileCap::Mutable(cap));
        let start = Instant::now();
        let reader = fresh_file.open().await?;
        let back = reader.read(offset, 1 << 20).await?;
        let read = start.elapsed().as_secs_f64();
        anyhow::ensure!(back == patch, "the partial write did not read back");
        crate::output::line(&format!(
            "MDMF {} MiB: publish {:.1} MB/s; 1 MiB write at the middle: {} (from this client); read it back from a fresh client: {}",
            args.mdmf_mib,
            mb_per_s(size, upload),
            ms(write),
            ms(read)
        ))?;
        Ok::<(), anyhow::Error>(())
    })?;
    drop(local);
    if let Some(peak) = peak_memory_mb() {
        crate::output::line(&format!(
            "client peak memory (VmHWM of this process): {peak:.0} MB"
        ))?;
    }
    Ok(())
}
