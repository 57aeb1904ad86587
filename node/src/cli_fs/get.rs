//! `tessera get`: download a file to a local path or standard output.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{FileStore, about, note, split_last};

/// `tessera get`.
#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The file: ALIAS:path, a cap, CAP/path, or a path under `tahoe:`.
    from: String,
    /// Where to write it; `-` or nothing writes to standard output.
    to: Option<String>,
}

/// Writes a local file through `PATH.part` and a rename, so a failed transfer leaves no half file.
pub(super) fn write_local(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let file = std::fs::File::create(&part).with_context(|| format!("cannot create {}", part.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let result = fill(&mut writer).and_then(|()| {
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the output failed")?
            .sync_all()
            .context("writing the output failed")
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, path).with_context(|| format!("cannot move the download to {}", path.display()))
}

/// `tessera get FROM [TO|-]`.
pub(crate) fn get(ctx: &FileStore, args: &GetArgs) -> anyhow::Result<()> {
    let (root, path) = ctx.grid(&args.from)?;
    let gateway = ctx.gateway()?;
    let url = gateway.object(&root, &path);
    let download = gateway.start_download(&url).map_err(|e| about(&args.from, e))?;
    if download.content_type().starts_with("text/html") {
        // A directory answers GET with its HTML listing: say so instead of saving the page.
        if let Ok(json) = gateway.json(&url)
            && json.get(0).and_then(Value::as_str) == Some("dirnode")
        {
            bail!(
                "{} is a directory; list it with `tessera ls {0}` or copy it with `tessera cp -r {0} LOCALDIR`",
                args.from
            );
        }
    }
    let label = split_last(&path).1;
    let label = if label.is_empty() { "downloading" } else { label };
    match args.to.as_deref() {
        None | Some("-") => {
            let mut stdout = std::io::stdout().lock();
            match gateway.finish_download(download, &mut stdout, label) {
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    }) =>
                {
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        }
        Some(to) => {
            write_local(Path::new(to), |sink| {
                gateway.finish_download(download, sink, label).map(|_| ())
            })?;
            note(&format!("{} retrieved and written to {to}", args.from));
            Ok(())
        }
    }
}
