//! Throughput of one HTTPS storage server over loopback, beside the raw disk in the same run.
//!
//! ```text
//! cargo run --release -p storage --features server --example bench_http -- [--size-mib 256] [--dir /var/tmp] [--reps 3]
//! ```
//!
//! Three measurements, repeated `--reps` times in alternation (median and best are printed):
//! - **raw disk**: what the store must do at minimum, dd-style: create a file, 1 MiB `write`s of the
//!   whole size, `fsync`, rename into another directory, `fsync` that directory;
//! - **HTTPS upload**: allocate one immutable share of the same size, then sequential 1 MiB `PATCH`es
//!   through `HttpStorageClient`; the last one completes the share (fsync + rename by the store);
//! - **HTTPS ranged read**: the share read back with sequential 1 MiB `Range` GETs (page cache warm).
//!
//! The upload overhead is `server time / raw time - 1`; the target is under 25 %.

use std::collections::BTreeSet;
use std::error::Error;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::server::{StorageConfig, StorageServer};
use storage::testing::{HttpsTestServer, lease_secrets, pattern, storage_index, upload_secret};
use storage::{ShareKind, StorageClient};

const CHUNK: usize = 1024 * 1024;

struct Options {
    size: usize,
    dir: PathBuf,
    reps: usize,
}

fn options() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        size: 256 * CHUNK,
        dir: PathBuf::from("/var/tmp"),
        reps: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size-mib" => options.size = value.parse::<usize>()? * CHUNK,
            "--dir" => options.dir = PathBuf::from(value),
            "--reps" => options.reps = value.parse::<usize>()?.max(1),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(options)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

/// dd-style write of `data` in 1 MiB writes, fsync, rename, fsync of the target directory.
fn raw_disk(dir: &Path, data: &[u8]) -> std::io::Result<Duration> {
    let incoming = dir.join("incoming");
    let done = dir.join("done");
    fs::create_dir_all(&incoming)?;
    fs::create_dir_all(&done)?;
    let (from, to) = (incoming.join("file"), done.join("file"));
    let started = Instant::now();
    let mut file = File::create(&from)?;
    for chunk in data.chunks(CHUNK) {
        file.write_all(chunk)?;
    }
    file.sync_all()?;
    fs::rename(&from, &to)?;
    sync_dir(&done)?;
    let elapsed = started.elapsed();
    fs::remove_file(&to)?;
    Ok(elapsed)
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e6
}

fn summary(bytes: usize, times: &mut [Duration]) -> (f64, f64, Duration) {
    times.sort();
    let median = times[times.len() / 2];
    (mb_per_s(bytes, median), mb_per_s(bytes, times[0]), median)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    let work = tempfile::Builder::new()
        .prefix("tessera-bench-")
        .tempdir_in(&options.dir)?;
    let data = Bytes::from(pattern(options.size, 7));
    let store = Arc::new(StorageServer::open(StorageConfig::new(
        work.path().join("storage"),
    ))?);
    let server = HttpsTestServer::start(store.clone()).await?;
    let client = server.client();
    println!(
        "{} MiB per run, {} runs, in {} (cores: {})",
        options.size / CHUNK,
        options.reps,
        options.dir.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let (mut raw_times, mut upload_times, mut read_times) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..options.reps {
        let raw_dir = work.path().join(format!("raw-{rep}"));
        let raw_data = data.clone();
        raw_times.push(tokio::task::spawn_blocking(move || raw_disk(&raw_dir, &raw_data)).await??);

        let si = storage_index(rep as u8);
        let started = Instant::now();
        let allocation = client
            .allocate_buckets(
                si,
                &lease_secrets(1),
                &upload_secret(1),
                &BTreeSet::from([0]),
                options.size as u64,
            )
            .await?;
        if !allocation.allocated.contains(&0) {
            return Err("the server refused the allocation (not enough space?)".into());
        }
        let mut complete = false;
        let mut last_write = Duration::ZERO;
        for offset in (0..options.size).step_by(CHUNK) {
            let chunk = data.slice(offset..(offset + CHUNK).min(options.size));
            let write_started = Instant::now();
            complete = client
                .write_share(si, 0, &upload_secret(1), offset as u64, chunk)
                .await?
                .complete;
            last_write = write_started.elapsed();
        }
        upload_times.push(started.elapsed());
        println!(
            "run {rep}: raw disk {:.3} s; upload {:.3} s, of which the completing PATCH (fsync, rename) {:.3} s",
            raw_times[rep].as_secs_f64(),
            upload_times[rep].as_secs_f64(),
            last_write.as_secs_f64()
        );
        if !complete {
            return Err("the upload did not complete".into());
        }

        let started = Instant::now();
        for offset in (0..options.size).step_by(CHUNK) {
            let chunk = client
                .read_share(ShareKind::Immutable, si, 0, offset as u64, CHUNK as u64)
                .await?;
            if chunk[..] != data[offset..offset + chunk.len()] {
                return Err(format!("read back different bytes at {offset}").into());
            }
        }
        read_times.push(started.elapsed());
    }

    let (raw, raw_best, raw_median) = summary(options.size, &mut raw_times);
    let (upload, upload_best, upload_median) = summary(options.size, &mut upload_times);
    let (read, read_best, _) = summary(options.size, &mut read_times);
    let overhead = (upload_median.as_secs_f64() / raw_median.as_secs_f64() - 1.0) * 100.0;
    println!("{:<48} {:>9} {:>9}", "MB/s (10^6 bytes/s)", "median", "best");
    println!(
        "{:<48} {raw:>9.0} {raw_best:>9.0}",
        "raw disk: 1 MiB writes + fsync + rename"
    );
    println!(
        "{:<48} {upload:>9.0} {upload_best:>9.0}",
        "HTTPS upload: 1 MiB PATCHes, completion fsync"
    );
    println!(
        "{:<48} {read:>9.0} {read_best:>9.0}",
        "HTTPS ranged read: 1 MiB GETs (page cache)"
    );
    println!("upload overhead over raw disk: {overhead:+.1} % (target < 25 %)");
    server.shutdown().await?;
    Ok(())
}
