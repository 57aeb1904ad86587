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

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use storage::civil::civil_from_days;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use crate::aliases::{Aliases, DEFAULT_ALIAS, Location};
use crate::cli_client::{Gateway, gateway_status, quote};
use crate::output;

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

/// `tessera ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// Long format: type and permissions, size, and when the link was made.
    #[arg(short = 'l', long)]
    long: bool,
    /// Show each object's cap.
    #[arg(long)]
    uri: bool,
    /// Show each object's read-only cap.
    #[arg(long)]
    readonly_uri: bool,
    /// Append '/' to directory names and '*' to mutable files.
    #[arg(short = 'F', long)]
    classify: bool,
    /// Print the gateway's JSON (`t=json`) as it is.
    #[arg(long)]
    json: bool,
    /// What to list: ALIAS:path, a cap, or a path under `tahoe:` (default `tahoe:`).
    path: Option<String>,
}

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

/// `tessera get`.
#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The file: ALIAS:path, a cap, CAP/path, or a path under `tahoe:`.
    from: String,
    /// Where to write it; `-` or nothing writes to standard output.
    to: Option<String>,
}

/// `tessera cp`.
#[derive(Debug, clap::Args)]
pub(crate) struct CpArgs {
    /// Copy directories recursively.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Say what is being copied.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// When copying grid files to local files, write their caps instead of their contents.
    #[arg(long)]
    caps_only: bool,
    /// FROM... TO: sources, then the destination. Arguments with an alias (`ALIAS:path`) or a cap are in the
    /// grid; others are local paths.
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    paths: Vec<String>,
}

/// `tessera mv` and `tessera ln`.
#[derive(Debug, clap::Args)]
pub(crate) struct MoveArgs {
    /// The existing link: ALIAS:path (or a path under `tahoe:`).
    from: String,
    /// The new link; end it with '/' to keep the name inside a directory.
    to: String,
}

/// `tessera unlink`.
#[derive(Debug, clap::Args)]
pub(crate) struct UnlinkArgs {
    /// The link to remove: ALIAS:path (the object itself stays in the grid).
    path: String,
}

/// `tessera create-alias`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateAliasArgs {
    /// The new alias (a trailing ':' is ignored).
    name: String,
}

/// `tessera add-alias`.
#[derive(Debug, clap::Args)]
pub(crate) struct AddAliasArgs {
    /// The new alias (a trailing ':' is ignored).
    name: String,
    /// An existing directory's cap.
    cap: String,
}

/// `tessera list-aliases`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListAliasesArgs {
    /// Show read-only directory caps instead of read-write ones.
    #[arg(long)]
    readonly_uri: bool,
    /// Print JSON: each alias with its read-write and read-only caps.
    #[arg(long)]
    json: bool,
}

/// What every file-store command needs: the node directory, its aliases and its gateway.
#[derive(Debug)]
pub(crate) struct FileStore {
    node_dir: PathBuf,
    node_url: Option<String>,
    aliases: Aliases,
}

impl FileStore {
    /// Reads the aliases of `node_dir`; the gateway is reached through `node_url`, or else the
    /// node directory's `node.url`.
    pub(crate) fn new(node_dir: &Path, node_url: Option<&str>) -> anyhow::Result<FileStore> {
        Ok(FileStore {
            node_dir: node_dir.to_owned(),
            node_url: node_url.map(str::to_owned),
            aliases: Aliases::load(node_dir)?,
        })
    }

    pub(crate) fn gateway(&self) -> anyhow::Result<Gateway> {
        Gateway::open(&self.node_dir, self.node_url.as_deref())
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

// ------------------------------------------------------------------------------------------- aliases

/// `tessera create-alias NAME`: a new directory, named by a new alias.
pub(crate) fn create_alias(ctx: &mut FileStore, args: &CreateAliasArgs) -> anyhow::Result<()> {
    let name = crate::aliases::valid_name(&args.name)?;
    if ctx.aliases.iter().any(|(existing, _)| existing == name) {
        bail!(
            "alias '{name}' already exists; choose another name (or edit {} to remove it)",
            ctx.aliases.file().display()
        );
    }
    let gateway = ctx.gateway()?;
    let (_, cap) = gateway.call(
        Method::POST,
        &format!("{}?t=mkdir", gateway.unlinked()),
        Bytes::new(),
    )?;
    let cap = String::from_utf8_lossy(&cap).trim().to_owned();
    ctx.aliases.add(name, &cap)?;
    output::line(&format!("Alias '{name}' created"))
}

/// `tessera add-alias NAME CAP`.
pub(crate) fn add_alias(ctx: &mut FileStore, args: &AddAliasArgs) -> anyhow::Result<()> {
    let name = crate::aliases::valid_name(&args.name)?;
    let cap = match filenode::cap::Cap::parse(args.cap.trim()) {
        Ok(cap @ filenode::cap::Cap::Dir(_)) => cap,
        Ok(_) => bail!(
            "'{}' is not a directory cap; an alias names a directory",
            args.cap.trim()
        ),
        Err(e) => bail!("'{}' is not a valid cap: {e}", args.cap.trim()),
    };
    ctx.aliases.add(name, &cap.to_string())?;
    output::line(&format!("Alias '{name}' added"))
}

/// `tessera list-aliases`, formatted as Tahoe formats it.
pub(crate) fn list_aliases(ctx: &FileStore, args: &ListAliasesArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for (name, cap) in ctx.aliases.iter() {
        let parsed = ctx.aliases.dircap(name)?;
        let readonly = parsed
            .readonly()
            .map(|c| c.to_string())
            .unwrap_or_else(|| cap.to_owned());
        rows.push((name, parsed.to_string(), readonly));
    }
    if args.json {
        // Python's json.dumps(indent=4) of {name: {"readwrite": .., "readonly": ..}}, names sorted.
        let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
        let entries: Vec<String> = rows
            .iter()
            .map(|(name, rw, ro)| {
                format!(
                    "    {}: {{\n        \"readwrite\": {},\n        \"readonly\": {}\n    }}",
                    quoted(name),
                    quoted(rw),
                    quoted(ro)
                )
            })
            .collect();
        let text = if entries.is_empty() {
            "{}".to_owned()
        } else {
            format!("{{\n{}\n}}", entries.join(",\n"))
        };
        return output::line(&text);
    }
    // Tahoe pads names to the width of the widest *quoted* name ('name').
    let width = rows
        .iter()
        .map(|(name, _, _)| name.chars().count() + 2)
        .max()
        .unwrap_or(0);
    for (name, rw, ro) in &rows {
        let cap = if args.readonly_uri { ro } else { rw };
        output::line(&format!("{name:>width$}: {cap}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------ ls

/// GNU `ls` style as Tahoe's `ls -l` prints it: `Nov 24 21:27`, or `Nov 24  2025` for times more
/// than six months ago. (Tahoe uses local time; this is UTC.)
fn format_link_time(unix: f64, now: f64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = unix.floor() as i64;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let month = MONTHS[(month - 1) as usize];
    if now - unix > 6.0 * 30.0 * 24.0 * 60.0 * 60.0 {
        format!("{month} {day:02}  {year}")
    } else {
        format!("{month} {day:02} {:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `tessera ls`.
pub(crate) fn ls(ctx: &FileStore, args: &LsArgs) -> anyhow::Result<()> {
    let mut target = args.path.clone().unwrap_or_default();
    if target.ends_with('/') {
        target.pop();
    }
    let (root, path) = ctx.grid(&target)?;
    let gateway = ctx.gateway()?;
    let url = gateway.object(&root, &path);
    let body = match gateway.call(Method::GET, &format!("{url}?t=json"), Bytes::new()) {
        Ok((_, body)) => body,
        Err(e) if gateway_status(&e) == Some(404) => {
            let shown = if target.is_empty() { "tahoe:" } else { &target };
            return Err(Exit {
                code: 2,
                message: format!("No such file or directory: {shown}: {e}"),
            }
            .into());
        }
        Err(e) => return Err(about(&target, e)),
    };
    if args.json {
        // As Tahoe: the gateway's text, then a newline.
        return output::line(&String::from_utf8_lossy(&body));
    }
    let json: Value = serde_json::from_slice(&body).context("the gateway's t=json answer is not JSON")?;
    let (kind, fields) = node_kind(&json)?;
    let children: Vec<(String, Value)> = if kind == "dirnode" {
        let mut children: Vec<(String, Value)> = fields
            .get("children")
            .and_then(Value::as_object)
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        children.sort_by(|a, b| a.0.cmp(&b.0));
        children
    } else {
        let name = path.rsplit('/').next().unwrap_or("").to_owned();
        vec![(name, json.clone())]
    };
    let now = unix_now();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut has_unknowns = false;
    let mut has_quoted = false;
    for (name, child) in &children {
        // A name only a hand-written directory holds (one no path can carry, or with control
        // characters that would forge lines or drive the terminal) is shown quoted with escapes,
        // as Tahoe shows names its terminal cannot print.
        let name = if filenode::node::unusable_as_path(name).is_some() || name.chars().any(char::is_control) {
            has_quoted = true;
            crate::cli_check::quote_output(name, true, true)
        } else {
            name.clone()
        };
        let child_kind = child.get(0).and_then(Value::as_str).unwrap_or("unknown");
        let details = child.get(1).cloned().unwrap_or(Value::Null);
        let metadata = details.get("metadata").cloned().unwrap_or(Value::Null);
        let link_time = |tahoe_key: &str, key: &str| {
            metadata["tahoe"][tahoe_key]
                .as_f64()
                .filter(|t| *t != 0.0)
                .or_else(|| metadata[key].as_f64().filter(|t| *t != 0.0))
        };
        let ctime = link_time("linkcrtime", "ctime");
        let rw_uri = str_field(&details, "rw_uri");
        let ro_uri = str_field(&details, "ro_uri");
        let ctime_s = ctime.map_or_else(|| "-".to_owned(), |t| format_link_time(t, now));
        let (t0, size, mut classify) = match child_kind {
            "dirnode" => ("d", "-".to_owned(), "/"),
            "filenode" => (
                "-",
                details
                    .get("size")
                    .filter(|s| !s.is_null())
                    .map_or_else(|| "?".to_owned(), |s| s.to_string()),
                if rw_uri.is_some() { "*" } else { "" },
            ),
            _ => {
                has_unknowns = true;
                ("?", "?".to_owned(), "?")
            }
        };
        let perms = format!(
            "{t0}{}{}{}",
            if ro_uri.is_some() { "r" } else { "-" },
            if rw_uri.is_some() { "w" } else { "-" },
            if child_kind == "dirnode" { "x" } else { "-" },
        );
        let mut line = Vec::new();
        if args.long {
            line.extend([perms, size, ctime_s]);
        }
        if !args.classify {
            classify = "";
        }
        line.push(format!("{name}{classify}"));
        if args.uri {
            line.push(rw_uri.clone().or_else(|| ro_uri.clone()).unwrap_or_default());
        }
        if args.readonly_uri {
            line.push(ro_uri.clone().unwrap_or_else(|| "-".to_owned()));
        }
        rows.push(line);
    }
    // Tahoe's layout: each column as wide as its widest cell, right-justified unless it holds caps
    // (or is the only column).
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    let mut left = vec![false; columns];
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
            if cell.starts_with("URI") {
                left[i] = true;
            }
        }
    }
    if columns == 1 {
        left[0] = true;
    }
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                if left[i] {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        output::line(cells.join(" ").trim_end())?;
    }
    if has_quoted {
        note(
            "\nThis listing included names that cannot be file names or that hold control characters.\nThey are shown in quotes, with backslash escapes.",
        );
    }
    if has_unknowns {
        note(
            "\nThis listing included unknown objects. Using a webapi server that supports\na later version of Tahoe may help.",
        );
    }
    Ok(())
}

// --------------------------------------------------------------------------------------------- mkdir

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

// ----------------------------------------------------------------------------------------------- put

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

// ----------------------------------------------------------------------------------------------- get

/// Writes a local file through `PATH.part` and a rename, so a failed transfer leaves no half file.
fn write_local(path: &Path, fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>) -> anyhow::Result<()> {
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

// --------------------------------------------------------------------------------------- unlink, ln, mv

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

// ------------------------------------------------------------------------------------------------ cp

/// Tahoe's `abspath_expanduser_unicode`: `~` expanded, made absolute, `.` and `..` removed lexically.
fn local_abspath(path: &str) -> PathBuf {
    let expanded = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    };
    let absolute = if expanded.is_absolute() {
        expanded
    } else {
        std::env::current_dir().unwrap_or_default().join(expanded)
    };
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// `dir/name` for a name that came from the grid (or a grid path), refused unless the name is one
/// plain file name here: a directory's owner can put any bytes in a name (`..`, `/etc/x`, `a/b`),
/// and such a name must never lead outside `dir`.
fn local_child(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let reason = filenode::node::unusable_as_path(name).or_else(|| {
        let mut parts = Path::new(name).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(part)), None) if part == std::ffi::OsStr::new(name) => None,
            _ => Some("the name is not a single file name on this system"),
        }
    });
    match reason {
        Some(reason) => bail!(
            "cannot copy the entry named {}: {reason}",
            crate::cli_check::quote_output(name, true, true)
        ),
        None => Ok(dir.join(name)),
    }
}

fn utf8_name(path: &Path) -> anyhow::Result<String> {
    let name = path.file_name().unwrap_or_default();
    name.to_str().map(str::to_owned).with_context(|| {
        format!(
            "{}: the name is not UTF-8, so it cannot be a name in the grid; rename it",
            path.display()
        )
    })
}

/// A file to copy.
#[derive(Debug, Clone)]
enum FileSource {
    Local(PathBuf),
    Grid {
        mutable: bool,
        writecap: Option<String>,
        readcap: Option<String>,
    },
}

impl FileSource {
    /// Local files and mutable grid files are copied by content; immutable grid files by cap.
    fn needs_bytes(&self) -> bool {
        match self {
            FileSource::Local(_) => true,
            FileSource::Grid { mutable, .. } => *mutable,
        }
    }

    fn best_cap(&self) -> Option<&str> {
        match self {
            FileSource::Local(_) => None,
            FileSource::Grid {
                writecap, readcap, ..
            } => writecap.as_deref().or(readcap.as_deref()),
        }
    }
}

/// A directory to copy from, not yet listed.
#[derive(Debug, Clone)]
enum DirSource {
    Local(PathBuf),
    Grid {
        cap: String,
        children: serde_json::Map<String, Value>,
    },
}

/// A source argument of `cp`; `name` is `None` for a bare cap (its contents are copied).
#[derive(Debug, Clone)]
enum Source {
    File(Option<String>, FileSource),
    Dir(Option<String>, DirSource),
}

/// A listed source directory.
#[derive(Debug)]
struct SourceTree {
    files: Vec<(String, FileSource)>,
    dirs: Vec<(String, SourceTree)>,
}

/// The destination argument of `cp`.
#[derive(Debug)]
enum Target {
    LocalFile(PathBuf),
    LocalMissing(PathBuf),
    LocalDir(PathBuf),
    GridFile(String),
    GridMissing(String),
    GridDir {
        cap: String,
        writecap: Option<String>,
        children: serde_json::Map<String, Value>,
    },
}

/// A child of a destination directory.
#[derive(Debug, Clone)]
enum ChildTarget {
    Dir(usize),
    LocalFile,
    GridFile { mutable: bool, writecap: Option<String> },
}

/// A destination directory: where files go, and (for the grid) the links to add at the end.
#[derive(Debug)]
struct DirTarget {
    place: DirPlace,
    children: Option<BTreeMap<String, ChildTarget>>,
    new_links: BTreeMap<String, String>,
}

#[derive(Debug)]
enum DirPlace {
    Local(PathBuf),
    Grid {
        /// The write cap, or the read cap of a read-only directory.
        cap: String,
        writecap: Option<String>,
        /// The children, once listed.
        listing: Option<serde_json::Map<String, Value>>,
    },
}

/// Tahoe's `Copier`, with destination directories kept in an arena.
struct Copier<'a> {
    ctx: &'a FileStore,
    gateway: Gateway,
    args: &'a CpArgs,
    dirs: Vec<DirTarget>,
}

impl std::fmt::Debug for Copier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copier").field("dirs", &self.dirs.len()).finish()
    }
}

/// `tessera cp [-r] FROM.. TO`.
pub(crate) fn cp(ctx: &FileStore, args: &CpArgs) -> anyhow::Result<()> {
    let mut copier = Copier {
        ctx,
        gateway: ctx.gateway()?,
        args,
        dirs: Vec::new(),
    };
    let message = copier.copy()?;
    output::line(&format!("Success: {message}"))
}

impl Copier<'_> {
    fn progress(&self, message: &str) {
        if self.args.verbose {
            note(message);
        }
    }

    fn copy(&mut self) -> anyhow::Result<&'static str> {
        let (sources_specs, destination) = self.args.paths.split_at(self.args.paths.len() - 1);
        let destination = &destination[0];
        let target = self.target_info(destination)?;
        let mut sources = Vec::new();
        for spec in sources_specs {
            sources.push(self.source_info(spec)?);
        }
        if !self.args.recursive && sources.iter().any(|s| matches!(s, Source::Dir(..))) {
            bail!("cannot copy directories without --recursive (-r)");
        }
        let target_is_file = match &target {
            Target::LocalFile(_) | Target::GridFile(_) => true,
            Target::LocalDir(_) | Target::GridDir { .. } => false,
            Target::LocalMissing(_) | Target::GridMissing(_) => {
                sources.len() == 1 && matches!(sources[0], Source::File(..))
            }
        };
        if target_is_file && destination.ends_with('/') {
            bail!("target {destination} is not a directory, but ends with a slash");
        }
        if target_is_file && sources.len() > 1 {
            bail!("copying multiple things requires the target ({destination}) be a directory");
        }
        if target_is_file {
            let Source::File(_, source) = &sources[0] else {
                bail!("cannot copy a directory into a file ({destination})");
            };
            return self.copy_file_to_file(source, target);
        }
        for (spec, source) in sources_specs.iter().zip(&sources) {
            if let Source::File(None, _) = source {
                bail!(
                    "when copying into a directory, all source files must have names, but {spec} is unnamed; copy it to a file name"
                );
            }
        }
        self.copy_things_to_directory(sources, target)?;
        Ok("files copied")
    }

    // ---- arguments

    fn target_info(&self, spec: &str) -> anyhow::Result<Target> {
        match self.ctx.aliases.resolve(spec, None)? {
            Location::Local(path) => {
                let path = local_abspath(&path);
                Ok(match std::fs::metadata(&path) {
                    Err(_) => Target::LocalMissing(path),
                    Ok(meta) if meta.is_dir() => Target::LocalDir(path),
                    Ok(_) => Target::LocalFile(path),
                })
            }
            Location::Grid { root, path } => {
                check_typed_cap(&root)?;
                let url = self.gateway.object(&root, path.trim_end_matches('/'));
                match self.gateway.json(&url) {
                    Err(e) if gateway_status(&e) == Some(404) => Ok(Target::GridMissing(url)),
                    Err(e) => Err(about(spec, e)),
                    Ok(json) => {
                        let (kind, fields) = node_kind(&json)?;
                        Ok(if kind == "dirnode" {
                            Target::GridDir {
                                cap: str_field(fields, "rw_uri")
                                    .or_else(|| str_field(fields, "ro_uri"))
                                    .unwrap_or(root),
                                writecap: str_field(fields, "rw_uri"),
                                children: fields["children"].as_object().cloned().unwrap_or_default(),
                            }
                        } else {
                            Target::GridFile(url)
                        })
                    }
                }
            }
        }
    }

    fn source_info(&self, spec: &str) -> anyhow::Result<Source> {
        match self.ctx.aliases.resolve(spec, None)? {
            Location::Local(path) => {
                let had_trailing_slash = path.ends_with('/');
                let path = local_abspath(&path);
                let meta = std::fs::metadata(&path)
                    .map_err(|_| anyhow::anyhow!("No such file or directory: {spec}"))?;
                let name = utf8_name(&path)?;
                if meta.is_dir() {
                    Ok(Source::Dir(Some(name), DirSource::Local(path)))
                } else if had_trailing_slash {
                    bail!("source {spec} is not a directory, but ends with a slash");
                } else if !meta.is_file() {
                    bail!("source {spec} is neither a file nor a directory; cannot copy it");
                } else {
                    Ok(Source::File(Some(name), FileSource::Local(path)))
                }
            }
            Location::Grid { root, path } => {
                check_typed_cap(&root)?;
                let had_trailing_slash = path.ends_with('/');
                let path = path.trim_end_matches('/');
                let name = (!path.is_empty()).then(|| split_last(path).1.to_owned());
                let url = self.gateway.object(&root, path);
                let json = self.gateway.json(&url).map_err(|e| about(spec, e))?;
                let (kind, fields) = node_kind(&json)?;
                match kind {
                    "dirnode" => Ok(Source::Dir(
                        name,
                        DirSource::Grid {
                            cap: str_field(fields, "rw_uri")
                                .or_else(|| str_field(fields, "ro_uri"))
                                .unwrap_or(root),
                            children: fields["children"].as_object().cloned().unwrap_or_default(),
                        },
                    )),
                    "filenode" if had_trailing_slash => {
                        bail!("source {spec} is not a directory, but ends with a slash")
                    }
                    "filenode" => Ok(Source::File(name, grid_file(fields))),
                    _ => bail!("cannot copy {spec}: the gateway does not know what kind of object it is"),
                }
            }
        }
    }

    // ---- listing sources

    fn list_source(&self, dir: &DirSource, stack: &mut Vec<String>) -> anyhow::Result<SourceTree> {
        let mut tree = SourceTree {
            files: Vec::new(),
            dirs: Vec::new(),
        };
        match dir {
            DirSource::Local(path) => {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                    .with_context(|| format!("cannot list {}", path.display()))?
                    .map(|entry| entry.map(|e| e.path()))
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("cannot list {}", path.display()))?;
                entries.sort();
                for child in entries {
                    let name = utf8_name(&child)?;
                    self.progress(&format!("examining {}", child.display()));
                    match std::fs::metadata(&child) {
                        Ok(meta) if meta.is_dir() => {
                            let canonical = std::fs::canonicalize(&child)
                                .map(|p| p.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            if stack.contains(&canonical) {
                                bail!(
                                    "{} leads back into a directory being copied (a symlink loop)",
                                    child.display()
                                );
                            }
                            stack.push(canonical);
                            let subtree = self.list_source(&DirSource::Local(child), stack)?;
                            stack.pop();
                            tree.dirs.push((name, subtree));
                        }
                        Ok(meta) if meta.is_file() => tree.files.push((name, FileSource::Local(child))),
                        // Dangling symlinks, sockets, devices: not copyable (Tahoe skips them too).
                        _ => self.progress(&format!("skipping {}", child.display())),
                    }
                }
            }
            DirSource::Grid { cap, children } => {
                stack.push(cap.clone());
                for (name, child) in children {
                    // Whoever wrote the directory chose its names: one that cannot be a file name
                    // (`..`, `/abs`, `a/b`, empty, NUL) is skipped, never joined to a path.
                    if let Some(reason) = filenode::node::unusable_as_path(name) {
                        note(&format!(
                            "skipping the entry named {}: {reason}, so it cannot be copied",
                            crate::cli_check::quote_output(name, true, true)
                        ));
                        continue;
                    }
                    let (kind, fields) = node_kind(child)?;
                    match kind {
                        "filenode" => tree.files.push((name.clone(), grid_file(fields))),
                        "dirnode" => {
                            let child_cap = str_field(fields, "rw_uri")
                                .or_else(|| str_field(fields, "ro_uri"))
                                .with_context(|| {
                                    format!("directory {name} has no cap the gateway will show")
                                })?;
                            if stack.contains(&child_cap) {
                                bail!("directory {name} contains itself (a cycle); cp -r cannot copy it");
                            }
                            self.progress(&format!("examining {name}"));
                            let json = self.gateway.json(&self.gateway.object(&child_cap, ""))?;
                            let (_, child_fields) = node_kind(&json)?;
                            let subtree = self.list_source(
                                &DirSource::Grid {
                                    cap: child_cap,
                                    children: child_fields["children"]
                                        .as_object()
                                        .cloned()
                                        .unwrap_or_default(),
                                },
                                stack,
                            )?;
                            tree.dirs.push((name.clone(), subtree));
                        }
                        _ => bail!(
                            "cannot copy {name}: it is an unknown kind of object (made by a newer version of Tahoe-LAFS?)"
                        ),
                    }
                }
                stack.pop();
            }
        }
        Ok(tree)
    }

    // ---- destination directories

    fn new_dir(&mut self, place: DirPlace, known_empty: bool) -> usize {
        self.dirs.push(DirTarget {
            place,
            children: known_empty.then(BTreeMap::new),
            new_links: BTreeMap::new(),
        });
        self.dirs.len() - 1
    }

    fn populate(&mut self, index: usize) -> anyhow::Result<()> {
        if self.dirs[index].children.is_some() {
            return Ok(());
        }
        let mut children = BTreeMap::new();
        let mut subdirs = Vec::new();
        match &self.dirs[index].place {
            DirPlace::Local(path) => {
                for entry in
                    std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
                {
                    let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    if entry.path().is_dir() {
                        subdirs.push((name, DirPlace::Local(entry.path())));
                    } else {
                        children.insert(name, ChildTarget::LocalFile);
                    }
                }
            }
            DirPlace::Grid { cap, listing, .. } => {
                let fetched;
                let json = match listing {
                    Some(listing) => listing,
                    None => {
                        let json = self.gateway.json(&self.gateway.object(cap, ""))?;
                        fetched = json[1]["children"].as_object().cloned().unwrap_or_default();
                        &fetched
                    }
                };
                for (name, child) in json {
                    let (kind, fields) = node_kind(child)?;
                    match kind {
                        "dirnode" => {
                            let Some(cap) =
                                str_field(fields, "rw_uri").or_else(|| str_field(fields, "ro_uri"))
                            else {
                                continue;
                            };
                            subdirs.push((
                                name.clone(),
                                DirPlace::Grid {
                                    cap,
                                    writecap: str_field(fields, "rw_uri"),
                                    listing: None,
                                },
                            ));
                        }
                        _ => {
                            children.insert(
                                name.clone(),
                                ChildTarget::GridFile {
                                    mutable: fields["mutable"].as_bool().unwrap_or(false),
                                    writecap: str_field(fields, "rw_uri"),
                                },
                            );
                        }
                    }
                }
            }
        }
        for (name, place) in subdirs {
            let child = self.new_dir(place, false);
            children.insert(name, ChildTarget::Dir(child));
        }
        self.dirs[index].children = Some(children);
        Ok(())
    }

    fn describe(&self, index: usize) -> String {
        match &self.dirs[index].place {
            DirPlace::Local(path) => path.display().to_string(),
            DirPlace::Grid { .. } => "the target directory".to_owned(),
        }
    }

    /// The destination directory for a source directory called `name` inside `index`, made if
    /// missing.
    fn child_dir(&mut self, index: usize, name: &str) -> anyhow::Result<usize> {
        self.populate(index)?;
        if let Some(existing) = self.dirs[index].children.as_ref().and_then(|c| c.get(name)) {
            return match existing {
                ChildTarget::Dir(child) => Ok(*child),
                _ => bail!(
                    "cannot copy directory {name} into {}: a file named {name} is in the way",
                    self.describe(index)
                ),
            };
        }
        let place = match &self.dirs[index].place {
            DirPlace::Local(path) => {
                let path = local_child(path, name)?;
                std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
                DirPlace::Local(path)
            }
            DirPlace::Grid { writecap, .. } => {
                let Some(writecap) = writecap else {
                    bail!("cannot create directory {name}: the target directory is read-only");
                };
                let url = format!("{}?t=mkdir", self.gateway.object(writecap, name));
                let (_, cap) = self
                    .gateway
                    .call(Method::POST, &url, Bytes::new())
                    .map_err(|e| about(name, e))?;
                let cap = String::from_utf8_lossy(&cap).trim().to_owned();
                DirPlace::Grid {
                    writecap: Some(cap.clone()),
                    cap,
                    listing: Some(serde_json::Map::new()),
                }
            }
        };
        let child = self.new_dir(place, true);
        if let Some(children) = self.dirs[index].children.as_mut() {
            children.insert(name.to_owned(), ChildTarget::Dir(child));
        }
        Ok(child)
    }

    // ---- copying

    fn copy_things_to_directory(&mut self, sources: Vec<Source>, target: Target) -> anyhow::Result<()> {
        let root = match target {
            Target::LocalMissing(path) => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                self.new_dir(DirPlace::Local(path), true)
            }
            Target::LocalDir(path) => self.new_dir(DirPlace::Local(path), false),
            Target::GridMissing(url) => {
                let (_, cap) = self
                    .gateway
                    .call(Method::POST, &format!("{url}?t=mkdir"), Bytes::new())
                    .map_err(|e| about(self.args.paths.last().map_or("", String::as_str), e))?;
                let cap = String::from_utf8_lossy(&cap).trim().to_owned();
                let place = DirPlace::Grid {
                    writecap: Some(cap.clone()),
                    cap,
                    listing: Some(serde_json::Map::new()),
                };
                self.new_dir(place, true)
            }
            Target::GridDir {
                cap,
                writecap,
                children,
            } => self.new_dir(
                DirPlace::Grid {
                    cap,
                    writecap,
                    listing: Some(children),
                },
                false,
            ),
            Target::LocalFile(_) | Target::GridFile(_) => bail!("the target must be a directory"),
        };
        self.populate(root)?;
        // Which files go to which destination directory, in the order the directories were found.
        let mut plan: Vec<(usize, Vec<(String, FileSource)>)> = vec![(root, Vec::new())];
        for source in sources {
            match source {
                Source::File(name, file) => {
                    let name = name.expect("invariant: unnamed file sources were refused above");
                    plan[0].1.push((name, file));
                }
                Source::Dir(name, dir) => {
                    let mut stack = Vec::new();
                    let tree = self.list_source(&dir, &mut stack)?;
                    let destination = match name {
                        Some(name) => self.child_dir(root, &name)?,
                        None => root,
                    };
                    self.assign(&mut plan, tree, destination)?;
                }
            }
        }
        for (_, files) in &plan {
            let mut seen = std::collections::BTreeSet::new();
            for (name, _) in files {
                if !seen.insert(name) {
                    bail!(
                        "cannot copy multiple files with the same name ({name}) into the same target directory"
                    );
                }
            }
        }
        let total: usize = plan.iter().map(|(_, files)| files.len()).sum();
        let mut copied = 0;
        for (index, files) in plan {
            for (name, file) in files {
                self.copy_file_into_dir(&file, &name, index)?;
                copied += 1;
                self.progress(&format!("{copied}/{total} files"));
            }
            self.set_children(index)?;
        }
        Ok(())
    }

    fn assign(
        &mut self,
        plan: &mut Vec<(usize, Vec<(String, FileSource)>)>,
        tree: SourceTree,
        destination: usize,
    ) -> anyhow::Result<()> {
        let slot = match plan.iter().position(|(index, _)| *index == destination) {
            Some(slot) => slot,
            None => {
                plan.push((destination, Vec::new()));
                plan.len() - 1
            }
        };
        plan[slot].1.extend(tree.files);
        for (name, subtree) in tree.dirs {
            let child = self.child_dir(destination, &name)?;
            self.assign(plan, subtree, child)?;
        }
        Ok(())
    }

    /// Copies a file's bytes into a writer (the source may be local or in the grid).
    fn read_source(&self, source: &FileSource, sink: &mut dyn Write, label: &str) -> anyhow::Result<()> {
        match source {
            FileSource::Local(path) => {
                let mut file =
                    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                std::io::copy(&mut file, sink).with_context(|| format!("cannot copy {}", path.display()))?;
                Ok(())
            }
            FileSource::Grid {
                readcap, writecap, ..
            } => {
                let cap = readcap
                    .as_deref()
                    .or(writecap.as_deref())
                    .context("the file has no read cap")?;
                if self.args.caps_only {
                    sink.write_all(cap.as_bytes())?;
                    return Ok(());
                }
                let download = self.gateway.start_download(&self.gateway.object(cap, ""))?;
                self.gateway.finish_download(download, sink, label)?;
                Ok(())
            }
        }
    }

    /// A reader over the source's bytes and its size, for an upload.
    fn open_source(
        &self,
        source: &FileSource,
        label: &str,
    ) -> anyhow::Result<(Box<dyn Read + Send>, Option<u64>)> {
        match source {
            FileSource::Local(path) => {
                let file =
                    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let size = file.metadata().ok().map(|m| m.len());
                Ok((Box::new(file), size))
            }
            FileSource::Grid { .. } => {
                let mut spool = tempfile::tempfile().context("cannot create a temporary file")?;
                self.read_source(source, &mut spool, label)?;
                let size = spool.stream_position().ok();
                spool.rewind().context("cannot reread the temporary file")?;
                Ok((Box::new(spool), size))
            }
        }
    }

    fn upload(&self, method: Method, url: &str, source: &FileSource, label: &str) -> anyhow::Result<String> {
        let (input, size) = self.open_source(source, label)?;
        let (_, cap) = self
            .gateway
            .upload(method, url, input, size, label)
            .map_err(|e| about(label, e))?;
        Ok(String::from_utf8_lossy(&cap).trim().to_owned())
    }

    fn copy_file_to_file(&mut self, source: &FileSource, target: Target) -> anyhow::Result<&'static str> {
        let label = match source {
            FileSource::Local(path) => utf8_name(path).unwrap_or_default(),
            FileSource::Grid { .. } => "copying".to_owned(),
        };
        match target {
            Target::LocalFile(path) | Target::LocalMissing(path) => {
                write_local(&path, |sink| self.read_source(source, sink, &label))?;
                Ok("file copied")
            }
            Target::GridFile(url) | Target::GridMissing(url) => {
                if source.needs_bytes() {
                    self.upload(Method::PUT, &url, source, &label)?;
                    Ok("file copied")
                } else {
                    let cap = source.best_cap().context("the file has no cap")?;
                    self.gateway
                        .call(Method::PUT, &format!("{url}?t=uri"), Bytes::from(cap.to_owned()))
                        .map_err(|e| about(self.args.paths.last().map_or("", String::as_str), e))?;
                    Ok("file linked")
                }
            }
            Target::LocalDir(_) | Target::GridDir { .. } => bail!("the target is a directory"),
        }
    }

    fn copy_file_into_dir(&mut self, source: &FileSource, name: &str, index: usize) -> anyhow::Result<()> {
        self.progress(&format!("copying {name}"));
        let writecap = match &self.dirs[index].place {
            DirPlace::Local(dir) => {
                let path = local_child(dir, name)?;
                if path.is_dir() {
                    bail!(
                        "cannot copy file {name} to {}: a directory is in the way",
                        path.display()
                    );
                }
                return write_local(&path, |sink| self.read_source(source, sink, name));
            }
            DirPlace::Grid { writecap, .. } => writecap
                .clone()
                .with_context(|| format!("cannot copy {name}: the target directory is read-only"))?,
        };
        self.populate(index)?;
        let existing = self.dirs[index]
            .children
            .as_ref()
            .and_then(|c| c.get(name))
            .cloned();
        if let Some(ChildTarget::Dir(_)) = existing {
            bail!("cannot copy file {name}: a directory with that name is in the way");
        }
        if !source.needs_bytes() {
            let cap = source.best_cap().context("the file has no cap")?.to_owned();
            self.dirs[index].new_links.insert(name.to_owned(), cap);
            return Ok(());
        }
        // A mutable file already there is overwritten in place, as Tahoe does.
        if let Some(ChildTarget::GridFile {
            mutable: true,
            writecap: Some(_),
        }) = existing
        {
            let url = self.gateway.object(&writecap, name);
            self.upload(Method::PUT, &url, source, name)?;
            return Ok(());
        }
        let url = self.gateway.unlinked();
        let cap = self.upload(Method::PUT, &url, source, name)?;
        self.dirs[index].new_links.insert(name.to_owned(), cap);
        Ok(())
    }

    /// Links everything uploaded into a grid directory in one `t=set_children`.
    fn set_children(&mut self, index: usize) -> anyhow::Result<()> {
        let links = std::mem::take(&mut self.dirs[index].new_links);
        if links.is_empty() {
            return Ok(());
        }
        let DirPlace::Grid {
            writecap: Some(writecap),
            ..
        } = &self.dirs[index].place
        else {
            return Ok(());
        };
        let body: serde_json::Map<String, Value> = links
            .into_iter()
            .map(|(name, cap)| (name, serde_json::json!(["filenode", { "rw_uri": cap }])))
            .collect();
        let body = serde_json::to_vec(&Value::Object(body)).context("cannot write JSON")?;
        let url = format!("{}?t=set_children", self.gateway.object(writecap, ""));
        self.gateway
            .call(Method::POST, &url, Bytes::from(body))
            .context("linking the copied files failed")?;
        Ok(())
    }
}

fn grid_file(fields: &Value) -> FileSource {
    FileSource::Grid {
        mutable: fields["mutable"].as_bool().unwrap_or(false),
        writecap: str_field(fields, "rw_uri"),
        readcap: str_field(fields, "ro_uri"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_times_look_like_tahoes() {
        // 2026-11-24 21:27:06 UTC.
        let t = 1_795_555_626.5;
        assert_eq!(format_link_time(t, t + 60.0), "Nov 24 21:27");
        assert_eq!(format_link_time(t, t + 200.0 * 86_400.0), "Nov 24  2026");
        assert_eq!(format_link_time(0.0, 1.0), "Jan 01 00:00");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

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

    #[test]
    fn local_paths_are_made_absolute_lexically() {
        let cwd = std::env::current_dir().unwrap_or_default();
        assert_eq!(local_abspath("a/./b/../c"), cwd.join("a/c"));
        assert_eq!(local_abspath("/x/y/.."), PathBuf::from("/x"));
    }
}
