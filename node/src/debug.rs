//! `tessera debug ...`: compute caps without uploading, explain caps, benchmark the core.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use filenode::cap::{Cap, FileCap, LIT_THRESHOLD, LitCap, MutableAccess, MutableFormat};
use filenode::immutable::{
    ChkParams, DEFAULT_MAX_SEGMENT_SIZE, DiscardSink, convergent_key, encode_stream, random_key,
};

/// The debug subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum DebugCommand {
    /// Print the CHK (or LIT) cap Tahoe-LAFS would give FILE, without uploading anything.
    ChkCap {
        /// Convergence secret in base32; without it a random key is used (like `--no-convergence`).
        #[arg(long, value_name = "BASE32")]
        convergence_secret: Option<String>,
        /// Shares needed to read the file (k).
        #[arg(long, default_value_t = 3, value_name = "K")]
        needed: u16,
        /// Shares written (N).
        #[arg(long, default_value_t = 10, value_name = "N")]
        total: u16,
        /// Maximum segment size in bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_SEGMENT_SIZE, value_name = "BYTES")]
        max_segment_size: u64,
        /// The file, or `-` for standard input.
        file: String,
    },
    /// Print a cap's kind and fields, and the caps derived from it.
    DumpCap {
        /// The cap.
        cap: String,
    },
    /// Measure hashing, AES, erasure coding and CHK encode/decode throughput on this machine.
    Bench(crate::bench::BenchArgs),
    /// Measure upload/download throughput, time to first byte and client memory on a local grid.
    BenchGrid(crate::bench_grid::BenchGridArgs),
    /// Measure directory and mutable-file operations on a local grid (10,000-child directories,
    /// MDMF partial writes).
    BenchDir(crate::bench_dir::BenchDirArgs),
    /// Run 100 storage nodes with an introducer and a gateway: spread of shares per server over
    /// 1,000 uploads, idle memory and CPU of the gateway and the nodes, the introducer's load.
    BenchHundred(crate::bench_hundred::BenchHundredArgs),
}

pub(crate) fn run(command: DebugCommand) -> anyhow::Result<()> {
    match command {
        DebugCommand::ChkCap {
            convergence_secret,
            needed,
            total,
            max_segment_size,
            file,
        } => {
            let params = ChkParams {
                needed,
                total,
                max_segment_size,
            };
            params
                .validate()
                .context("invalid --needed/--total/--max-segment-size")?;
            let secret = convergence_secret
                .map(|s| {
                    storage::base32::decode(s.trim())
                        .context("--convergence-secret is not valid base32 (lower case, no padding)")
                })
                .transpose()?;
            let cap = chk_cap(&file, secret.as_deref(), &params)?;
            crate::output::line(&cap)
        }
        DebugCommand::DumpCap { cap } => dump_cap(&cap),
        DebugCommand::Bench(args) => crate::bench::run(&args),
        DebugCommand::BenchHundred(args) => crate::bench_hundred::run(&args),
        DebugCommand::BenchGrid(args) => crate::bench_grid::run(&args),
        DebugCommand::BenchDir(args) => crate::bench_dir::run(&args),
    }
}

/// Opens FILE, or spools standard input to an anonymous temporary file so it can be read twice.
fn open_input(file: &str) -> anyhow::Result<File> {
    if file == "-" {
        let mut spool =
            tempfile::tempfile().context("cannot create a temporary file to spool standard input")?;
        io::copy(&mut io::stdin().lock(), &mut spool).context("reading standard input failed")?;
        spool.seek(SeekFrom::Start(0))?;
        Ok(spool)
    } else {
        let path = PathBuf::from(file);
        let handle = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        if handle.metadata()?.is_dir() {
            bail!("{} is a directory, not a file", path.display());
        }
        Ok(handle)
    }
}

fn chk_cap(file: &str, secret: Option<&[u8]>, params: &ChkParams) -> anyhow::Result<String> {
    let mut input = open_input(file)?;
    let (key, size) = match secret {
        Some(secret) => {
            let (key, size) = convergent_key(BufReader::new(&mut input), secret, params)?;
            input.seek(SeekFrom::Start(0))?;
            (key, size)
        }
        None => (random_key(), input.metadata()?.len()),
    };
    if size <= LIT_THRESHOLD {
        let mut data = Vec::new();
        input.read_to_end(&mut data)?;
        return Ok(Cap::File(FileCap::Lit(LitCap { data })).to_string());
    }
    let encoded = encode_stream(input, size, key, params, &mut DiscardSink::default(), None)?;
    Ok(encoded.cap.to_string())
}

fn dump_cap(text: &str) -> anyhow::Result<()> {
    let cap = Cap::parse(text.trim()).context("cannot parse the cap")?;
    let mut lines = vec![format!("kind: {}", cap.kind())];
    let file = match &cap {
        Cap::File(file) => Some(file.clone()),
        Cap::Dir(dir) => {
            lines.push("directory: yes".into());
            Some(dir.file().clone())
        }
        Cap::Unknown(_) => {
            lines.push("not a cap kind this version understands; kept verbatim".into());
            None
        }
    };
    match &file {
        Some(FileCap::Lit(LitCap { data })) => lines.push(format!("size: {}", data.len())),
        Some(FileCap::Chk(chk)) => {
            lines.push(format!("key: {}", storage::base32::encode(&chk.key)));
            lines.push(format!("UEB hash: {}", storage::base32::encode(&chk.ueb_hash)));
            push_chk_numbers(&mut lines, chk.needed, chk.total, chk.size);
        }
        Some(FileCap::ChkVerifier(v)) => {
            lines.push(format!("UEB hash: {}", storage::base32::encode(&v.ueb_hash)));
            push_chk_numbers(&mut lines, v.needed, v.total, v.size);
        }
        Some(FileCap::Mutable(m)) => {
            let format = match m.format {
                MutableFormat::Sdmf => "SDMF",
                MutableFormat::Mdmf => "MDMF",
            };
            lines.push(format!("format: {format}"));
            match m.access {
                MutableAccess::Write { writekey } => {
                    lines.push(format!("write key: {}", storage::base32::encode(&writekey)));
                }
                MutableAccess::Read { readkey } => {
                    lines.push(format!("read key: {}", storage::base32::encode(&readkey)))
                }
                MutableAccess::Verify { .. } => {}
            }
            if let Some(readkey) = m.readkey().filter(|_| m.writekey().is_some()) {
                lines.push(format!("read key: {}", storage::base32::encode(&readkey)));
            }
            lines.push(format!(
                "fingerprint: {}",
                storage::base32::encode(&m.fingerprint)
            ));
        }
        None => {}
    }
    if let Some(si) = cap.storage_index() {
        lines.push(format!("storage index: {si}"));
    }
    lines.push(format!(
        "read-only: {}",
        if cap.is_readonly() { "yes" } else { "no" }
    ));
    lines.push(format!(
        "mutable: {}",
        if cap.is_mutable() { "yes" } else { "no" }
    ));
    if let Some(ro) = cap.readonly().filter(|ro| ro != &cap) {
        lines.push(format!("read-only cap: {ro}"));
    }
    if let Some(verifier) = cap.verifier().filter(|v| v != &cap) {
        lines.push(format!("verify cap: {verifier}"));
    }
    crate::output::line(&lines.join("\n"))
}

fn push_chk_numbers(lines: &mut Vec<String>, needed: u16, total: u16, size: u64) {
    lines.push(format!("needed shares (k): {needed}"));
    lines.push(format!("total shares (N): {total}"));
    lines.push(format!("size: {size}"));
}
