//! `tessera mv` and `tessera ln`: link an object under a new name, and for `mv` unlink the old one.

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;

use crate::cli_client::{gateway_status, quote};
use crate::output;

use super::{Exit, FileStore, about, node_kind, split_last, str_field};

/// `tessera mv` and `tessera ln`.
#[derive(Debug, clap::Args)]
pub(crate) struct MoveArgs {
    /// The existing link: ALIAS:path (or a path under `tahoe:`).
    from: String,
    /// The new link; end it with '/' to keep the name inside a directory.
    to: String,
}

/// The new link's path: `to`, or `to` + the source's name when `to` ends with `/` or is empty.
fn link_target(to_argument: &str, to_path: &str, from_name: &str) -> anyhow::Result<String> {
    if to_path.is_empty() || to_path.ends_with('/') {
        if from_name.is_empty() {
            bail!("{to_argument} names a directory; add the new link's name, e.g. {to_argument}NAME");
        }
        return Ok(format!("{to_path}{from_name}"));
    }
    Ok(to_path.to_owned())
}

/// What `PUT t=uri&replace=only-files` refusing with 409 means.
fn overwrite_error(to: &str, error: anyhow::Error) -> anyhow::Error {
    let text = error.to_string();
    if gateway_status(&error) == Some(409) && !text.contains("in the way") {
        return anyhow::anyhow!(
            "{to} is a directory and cannot be replaced; to put the link inside it, end it with a slash: {}/",
            to.trim_end_matches('/')
        );
    }
    about(to, error)
}

/// `tessera ln FROM TO`: links the object FROM names at TO too (`PUT t=uri`); prints `OK`.
pub(crate) fn ln(ctx: &FileStore, args: &MoveArgs) -> anyhow::Result<()> {
    let (from_root, from_path) = ctx.grid(&args.from)?;
    let gateway = ctx.gateway()?;
    let json = gateway
        .json(&gateway.object(&from_root, &from_path))
        .map_err(|e| about(&args.from, e))?;
    let (_, fields) = node_kind(&json)?;
    let cap = str_field(fields, "rw_uri")
        .or_else(|| str_field(fields, "ro_uri"))
        .with_context(|| format!("{} has no cap the gateway will show", args.from))?;
    let (to_root, to_path) = ctx.grid(&args.to)?;
    let to_path = link_target(&args.to, &to_path, split_last(&from_path).1)?;
    let url = format!("{}?t=uri&replace=only-files", gateway.object(&to_root, &to_path));
    gateway
        .call(Method::PUT, &url, Bytes::from(cap))
        .map_err(|e| overwrite_error(&args.to, e))?;
    output::line("OK")
}

/// `tessera mv FROM TO`: moves a link (prints `OK`). With `t=relink` when the destination
/// directory exists; otherwise as Tahoe: link the cap at TO (making directories), then unlink FROM.
pub(crate) fn mv(ctx: &FileStore, args: &MoveArgs) -> anyhow::Result<()> {
    let (from_root, from_path) = ctx.grid(&args.from)?;
    let (from_parent, from_name) = split_last(&from_path);
    if from_name.is_empty() {
        bail!(
            "{} names no directory entry to move; use `tessera ln {0} TO` to link it somewhere",
            args.from
        );
    }
    let gateway = ctx.gateway()?;
    let parent_json = gateway
        .json(&gateway.object(&from_root, from_parent))
        .map_err(|e| about(&args.from, e))?;
    let (parent_kind, parent) = node_kind(&parent_json)?;
    if parent_kind != "dirnode" {
        bail!("{}: {from_parent} is a file, not a directory", args.from);
    }
    let Some(child) = parent["children"].get(from_name) else {
        bail!("{}: No such child: {from_name}", args.from);
    };
    let (_, child) = node_kind(child)?;
    let cap = str_field(child, "rw_uri")
        .or_else(|| str_field(child, "ro_uri"))
        .with_context(|| format!("{} has no cap the gateway will show", args.from))?;

    let (to_root, to_path) = ctx.grid(&args.to)?;
    let to_path = link_target(&args.to, &to_path, from_name)?;
    let (to_parent, to_name) = split_last(&to_path);
    let destination =
        gateway
            .json(&gateway.object(&to_root, to_parent))
            .ok()
            .and_then(|json| match node_kind(&json) {
                Ok(("dirnode", fields)) => str_field(fields, "rw_uri"),
                _ => None,
            });
    if let (Some(to_dir), Some(from_dir)) = (&destination, str_field(parent, "rw_uri")) {
        if *to_dir == from_dir && to_name == from_name {
            return output::line("OK");
        }
        let url = format!(
            "{}?t=relink&from_name={}&to_dir={}&to_name={}&replace=only-files",
            gateway.object(&from_root, from_parent),
            quote(from_name),
            quote(to_dir),
            quote(to_name)
        );
        gateway
            .call(Method::POST, &url, Bytes::new())
            .map_err(|e| overwrite_error(&args.to, e))?;
        return output::line("OK");
    }
    let url = format!("{}?t=uri&replace=only-files", gateway.object(&to_root, &to_path));
    gateway.call(Method::PUT, &url, Bytes::from(cap)).map_err(|e| {
        let e = overwrite_error(&args.to, e);
        anyhow::anyhow!("{e:#}; {} was not removed", args.from)
    })?;
    if let Err(e) = gateway.call(
        Method::DELETE,
        &gateway.object(&from_root, &from_path),
        Bytes::new(),
    ) {
        return Err(Exit {
            code: 2,
            message: format!(
                "linked {} but could not unlink {}: {e}; unlink it with `tessera unlink {1}`",
                args.to, args.from
            ),
        }
        .into());
    }
    output::line("OK")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_like_tahoe() {
        assert_eq!(split_last("a/b/c"), ("a/b", "c"));
        assert_eq!(split_last("a/b/"), ("a", "b"));
        assert_eq!(split_last("c"), ("", "c"));
        assert_eq!(split_last(""), ("", ""));
        assert_eq!(link_target("t:", "", "x").unwrap(), "x");
        assert_eq!(link_target("t:d/", "d/", "x").unwrap(), "d/x");
        assert_eq!(link_target("t:n", "n", "x").unwrap(), "n");
        assert!(link_target("t:", "", "").is_err());
    }
}
