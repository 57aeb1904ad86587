//! `tessera mkdir`: a new directory, unlinked or linked at a path.

use anyhow::bail;
use bytes::Bytes;
use hyper::Method;

use crate::cli_client::gateway_status;
use crate::output;

use super::{FileStore, about, dir_format};

/// `tessera mkdir`.
#[derive(Debug, clap::Args)]
pub(crate) struct MkdirArgs {
    /// The directory format: SDMF (default) or MDMF.
    #[arg(long, value_parser = dir_format)]
    format: Option<String>,
    /// Where to make it (ALIAS:path; intermediate directories are made too). Without it, make an
    /// unlinked directory. Prints the new directory's cap.
    path: Option<String>,
}

/// `tessera mkdir [PATH]`: prints the new (or existing) directory's cap.
pub(crate) fn mkdir(ctx: &FileStore, args: &MkdirArgs) -> anyhow::Result<()> {
    let format = args
        .format
        .as_ref()
        .map(|f| format!("&format={f}"))
        .unwrap_or_default();
    let gateway = ctx.gateway()?;
    let location = match &args.path {
        Some(argument) if !argument.is_empty() => Some((argument, ctx.grid(argument)?)),
        _ => None,
    };
    let url = match &location {
        Some((_, (root, path))) if !path.is_empty() => {
            format!(
                "{}?t=mkdir{format}",
                gateway.object(root, path.trim_end_matches('/'))
            )
        }
        _ => format!("{}?t=mkdir{format}", gateway.unlinked()),
    };
    let cap = match gateway.call(Method::POST, &url, Bytes::new()) {
        Ok((_, cap)) => cap,
        Err(e) => {
            let argument = location.map(|(a, _)| a.as_str()).unwrap_or("");
            if gateway_status(&e) == Some(400) && e.to_string().contains("POST to file") {
                bail!("{argument} is a file, not a directory");
            }
            return Err(about(argument, e));
        }
    };
    output::line(String::from_utf8_lossy(&cap).trim())
}
