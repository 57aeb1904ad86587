//! The file-store commands: `ls`, `mkdir`, `put`, `get`, `cp`, `mv`, `ln`, `unlink` and the alias
//! commands, over a gateway's web API. Each follows the Tahoe-LAFS 1.20 command of the same name
//! (`allmydata/scripts/tahoe_*.py`): the same web calls, arguments and output, so scripts written
//! for `tahoe` work. Where Tahoe fails silently, crashes or loses data we report one clear error
//! instead, and a few deliberate differences are noted at the functions:
//!
//! - `mv` uses `t=relink` when the destination directory exists (one step, keeps link metadata);
//!   Tahoe's `PUT t=uri` + `DELETE` is the fallback. Moving an entry onto itself does nothing
//!   (Tahoe's `mv a a` unlinks it).
//! - `cp` links immutable grid files into grid targets by cap (`t=uri`/`t=set_children`) instead of
//!   copying bytes, as Tahoe intends (its 1.20 code always copies: its ticket #3719).
//! - `put FILE ALIAS:dir/` and `mv`/`ln` to `ALIAS:` put the object into that directory under its
//!   own name (Tahoe rejects these).
//!
//! Exit status: 0 on success, 2 for `ls` of a missing path and for a `mv` that linked the new name
//! but could not unlink the old one (as Tahoe), 1 for every other failure.

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::Value;

use crate::aliases::{Aliases, DEFAULT_ALIAS, Location};
use crate::cli_client::{Gateway, GatewayArgs, gateway_status};

mod aliases;
mod cp;
mod get;
mod ls;
mod mkdir;
mod mv;
mod put;
mod unlink;

pub(crate) use aliases::{
    AddAliasArgs, CreateAliasArgs, ListAliasesArgs, add_alias, create_alias, list_aliases,
};
pub(crate) use cp::{CpArgs, cp};
pub(crate) use get::{GetArgs, get};
pub(crate) use ls::{LsArgs, ls};
pub(crate) use mkdir::{MkdirArgs, mkdir};
pub(crate) use mv::{MoveArgs, ln, mv};
pub(crate) use put::{PutArgs, put};
pub(crate) use unlink::{UnlinkArgs, unlink};

/// An error that ends the command with a particular exit status.
#[derive(Debug)]
pub(crate) struct Exit {
    /// The process exit status.
    pub(crate) code: u8,
    /// The one-line explanation.
    pub(crate) message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Prints to standard error (Tahoe's status lines such as `201 Created`).
#[allow(clippy::print_stderr, reason = "the CLI's diagnostic channel")]
fn note(text: &str) {
    eprintln!("{text}");
}

/// `format=` values for files.
fn file_format(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "CHK" | "SDMF" | "MDMF" => Ok(upper),
        _ => Err(format!("{text} is an invalid format: use CHK, SDMF or MDMF")),
    }
}

/// `format=` values for directories.
fn dir_format(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "SDMF" | "MDMF" => Ok(upper),
        _ => Err(format!("{text} is an invalid format: use SDMF or MDMF")),
    }
}

/// What every file-store command needs: the node directory, its aliases and its gateway.
#[derive(Debug)]
pub(crate) struct FileStore {
    node_dir: PathBuf,
    gateway_args: GatewayArgs,
    aliases: Aliases,
}

impl FileStore {
    /// Reads the aliases of `node_dir`; the gateway is reached through `gateway_args.node_url`,
    /// or else the node directory's `node.url`.
    pub(crate) fn new(node_dir: &Path, gateway_args: &GatewayArgs) -> anyhow::Result<FileStore> {
        Ok(FileStore {
            node_dir: node_dir.to_owned(),
            gateway_args: gateway_args.clone(),
            aliases: Aliases::load(node_dir)?,
        })
    }

    pub(crate) fn gateway(&self) -> anyhow::Result<Gateway> {
        Gateway::open(&self.node_dir, &self.gateway_args)
    }

    /// Resolves an argument that must be in the grid (a bare path is under the default alias).
    pub(crate) fn grid(&self, argument: &str) -> anyhow::Result<(String, String)> {
        match self.aliases.resolve(argument, Some(DEFAULT_ALIAS))? {
            Location::Grid { root, path } => {
                check_typed_cap(&root)?;
                Ok((root, path))
            }
            Location::Local(_) => bail!("'{argument}' is not in the grid"),
        }
    }
}

/// A root cap the user typed must parse; alias caps were checked when read.
fn check_typed_cap(root: &str) -> anyhow::Result<()> {
    if let Err(e) = filenode::cap::Cap::parse(root) {
        bail!("'{root}' is not a valid cap: {e}");
    }
    Ok(())
}

/// The last `/`-separated name of a path (ignoring a trailing `/`), and the path before it.
fn split_last(path: &str) -> (&str, &str) {
    let path = path.trim_end_matches('/');
    match path.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", path),
    }
}

/// Adds what the command was doing to a gateway's answer: `ARG: No such child: x`.
pub(crate) fn about(argument: &str, error: anyhow::Error) -> anyhow::Error {
    if gateway_status(&error).is_some() {
        error.context(argument.to_owned())
    } else {
        error
    }
}

fn str_field(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `(type, fields)` of a `t=json` answer.
fn node_kind(json: &Value) -> anyhow::Result<(&str, &Value)> {
    match (json.get(0).and_then(Value::as_str), json.get(1)) {
        (Some(kind), Some(fields)) => Ok((kind, fields)),
        _ => bail!("the gateway's t=json answer is not [type, {{...}}]"),
    }
}
