//! `tessera unlink` (Tahoe's `rm`): remove a name from its directory.

use anyhow::bail;
use bytes::Bytes;
use hyper::Method;

use crate::aliases::DEFAULT_ALIAS;
use crate::output;

use super::{FileStore, about};

/// `tessera unlink`.
#[derive(Debug, clap::Args)]
pub(crate) struct UnlinkArgs {
    /// The link to remove: ALIAS:path (the object itself stays in the grid).
    path: String,
}

/// `tessera unlink PATH`: prints Tahoe's `200 OK`.
pub(crate) fn unlink(ctx: &FileStore, args: &UnlinkArgs) -> anyhow::Result<()> {
    let (root, path) = ctx.grid(&args.path)?;
    if path.is_empty() {
        bail!(
            "'tessera unlink' can only unlink directory entries, so a path must be given (e.g. {}:NAME)",
            DEFAULT_ALIAS
        );
    }
    let gateway = ctx.gateway()?;
    gateway
        .call(Method::DELETE, &gateway.object(&root, &path), Bytes::new())
        .map_err(|e| about(&args.path, e))?;
    output::line("200 OK")
}
