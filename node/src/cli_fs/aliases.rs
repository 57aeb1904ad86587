//! `create-alias`, `add-alias` and `list-aliases`: the aliases file (`private/aliases`).

use anyhow::bail;
use bytes::Bytes;
use hyper::Method;

use crate::output;

use super::FileStore;

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
