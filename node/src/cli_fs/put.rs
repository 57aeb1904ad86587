//! `tessera put`: upload a local file or standard input, unlinked or to a path.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use hyper::Method;

use crate::cli_client::gateway_status;
use crate::output;

use super::{FileStore, about, check_typed_cap, file_format, note};

/// `tessera put`.
#[derive(Debug, clap::Args)]
pub(crate) struct PutArgs {
    /// Use a random key instead of the convergence secret (no deduplication; one pass).
    #[arg(long)]
    no_convergence: bool,
    /// Create a mutable file (like --format=SDMF).
    #[arg(short = 'm', long)]
    mutable: bool,
    /// The file format: CHK (immutable, default), SDMF or MDMF (mutable).
    #[arg(long, value_parser = file_format)]
    format: Option<String>,
    /// The local file; `-` or nothing reads standard input.
    from: Option<String>,
    /// Where to put it: ALIAS:path (a path under `tahoe:` without an alias), `ALIAS:dir/` for the
    /// file's own name, or a mutable file's write cap to replace its contents. Without it, upload
    /// unlinked. Prints the file's cap.
    to: Option<String>,
}

/// An upload's input: the reader, its size if known, and the local file's name.
type Input = (Box<dyn Read + Send>, Option<u64>, Option<String>);

/// Opens a local file (or standard input for `None`/`-`) with its size.
fn open_input(from: Option<&str>) -> anyhow::Result<Input> {
    match from {
        None | Some("-") => Ok((Box::new(std::io::stdin()), None, None)),
        Some(path) => {
            let handle = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
            let meta = handle.metadata().with_context(|| format!("cannot read {path}"))?;
            if meta.is_dir() {
                bail!(
                    "{path} is a directory; put uploads one file (use `tessera cp -r {path} ALIAS:` for a directory)"
                );
            }
            let name = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            Ok((Box::new(handle), Some(meta.len()), name))
        }
    }
}

/// `tessera put [FROM] [TO]`: uploads, prints Tahoe's `201 Created`/`200 OK` on standard error and
/// the cap on standard output.
pub(crate) fn put(ctx: &FileStore, args: &PutArgs) -> anyhow::Result<()> {
    let (input, size, local_name) = open_input(args.from.as_deref())?;
    let gateway = ctx.gateway()?;
    let mut query = Vec::new();
    if args.mutable {
        query.push("mutable=true".to_owned());
    }
    if let Some(format) = &args.format {
        query.push(format!("format={format}"));
    }
    if args.no_convergence {
        query.push("convergence=false".to_owned());
    }
    let (mut url, shown) = match args.to.as_deref() {
        None => (gateway.unlinked(), String::new()),
        Some(to) if to.starts_with("URI:MDMF:") || to.starts_with("URI:SSK:") => {
            check_typed_cap(to)?;
            (gateway.object(to, ""), to.to_owned())
        }
        Some(to) => {
            let (root, mut path) = ctx.grid(to)?;
            if path.starts_with('/') {
                bail!(
                    "the remote filename must not start with a slash; try {}",
                    to.replacen('/', "", 1)
                );
            }
            let mut shown = to.to_owned();
            if path.is_empty() || path.ends_with('/') {
                let Some(name) = &local_name else {
                    bail!(
                        "{to} is a directory; name the new file, e.g. {to}{}NAME",
                        if to.ends_with(['/', ':']) { "" } else { "/" }
                    );
                };
                path.push_str(name);
                if !shown.ends_with(['/', ':']) {
                    shown.push('/');
                }
                shown.push_str(name);
            }
            (gateway.object(&root, &path), shown)
        }
    };
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let label = local_name.as_deref().unwrap_or("uploading");
    let (status, cap) = match gateway.upload(Method::PUT, &url, input, size, label) {
        Ok(reply) => reply,
        Err(e) => {
            if gateway_status(&e) == Some(400) && e.to_string().contains("PUT to a directory") {
                bail!("{shown} is a directory; name the new file inside it, e.g. {shown}/NAME");
            }
            if shown.is_empty() {
                return Err(e.context("upload failed"));
            }
            return Err(about(&shown, e));
        }
    };
    note(if status == 201 { "201 Created" } else { "200 OK" });
    output::line(String::from_utf8_lossy(&cap).trim())
}
