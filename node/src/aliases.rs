//! Aliases: short names for directory caps, kept in `NODEDIR/private/aliases` exactly as Tahoe-LAFS
//! 1.20 keeps them (`allmydata/scripts/common.py`, `get_aliases` and `get_alias`), so `tahoe` and
//! `tessera` share one file.
//!
//! Format: one `name: cap` per line; blank lines and lines starting with `#` are ignored; the name
//! is everything before the first `:` of the (whitespace-stripped) line and the cap is the rest,
//! stripped. A later line wins over an earlier one. `private/root_dir.cap`, when present, is the
//! `tahoe` alias unless the aliases file names it too. New aliases are appended (the file is rewritten
//! through a temporary file and a rename, mode 0600).
//!
//! Arguments name grid objects as `ALIAS:path`, `CAP`, `CAP/path` (or the old `CAP:./path`), or a
//! bare `path` relative to the default alias. Commands that also take local files (`cp`) treat an
//! argument without an alias (no `:`, or a `/` before the first `:`) as a local path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use filenode::cap::Cap;

/// The alias a bare path is relative to.
pub(crate) const DEFAULT_ALIAS: &str = "tahoe";

/// The aliases of one node directory, by name.
#[derive(Debug, Default)]
pub(crate) struct Aliases {
    by_name: BTreeMap<String, String>,
    file: PathBuf,
}

/// Where a command argument points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A local file or directory (only for commands that take local paths).
    Local(String),
    /// A grid object: a root cap and a `/`-separated path of child names under it (maybe empty).
    Grid {
        /// The root cap, as typed or from the alias.
        root: String,
        /// Child names under the root, separated by `/`; may end with `/`.
        path: String,
    },
}

fn has_cap_prefix(text: &str) -> bool {
    text.starts_with("URI:") || text.starts_with("ro.URI:") || text.starts_with("imm.URI:")
}

impl Aliases {
    /// Reads `NODEDIR/private/aliases` (and `private/root_dir.cap`); a missing file means no aliases.
    pub(crate) fn load(node_dir: &Path) -> anyhow::Result<Aliases> {
        let private = node_dir.join("private");
        let file = private.join("aliases");
        let mut by_name = BTreeMap::new();
        match std::fs::read_to_string(private.join("root_dir.cap")) {
            Ok(root) if !root.trim().is_empty() => {
                by_name.insert(DEFAULT_ALIAS.to_owned(), root.trim().to_owned());
            }
            _ => {}
        }
        match std::fs::read(&file) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes)
                    .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
                for (number, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let Some((name, cap)) = line.split_once(':') else {
                        bail!(
                            "{} line {}: expected `NAME: CAP`; fix or remove that line",
                            file.display(),
                            number + 1
                        );
                    };
                    by_name.insert(name.to_owned(), cap.trim().to_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        }
        Ok(Aliases { by_name, file })
    }

    /// The file the aliases live in.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// The aliases, sorted by name, with their caps.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_name
            .iter()
            .map(|(name, cap)| (name.as_str(), cap.as_str()))
    }

    /// The directory cap an alias names, checked to be a directory cap.
    pub(crate) fn dircap(&self, name: &str) -> anyhow::Result<Cap> {
        let cap = self
            .by_name
            .get(name)
            .with_context(|| self.unknown_alias_message(name))?;
        match Cap::parse(cap) {
            Ok(cap @ Cap::Dir(_)) => Ok(cap),
            _ => bail!(
                "alias '{name}' in {} is not a directory cap; fix its line in that file",
                self.file.display()
            ),
        }
    }

    fn unknown_alias_message(&self, name: &str) -> String {
        let known = if self.by_name.is_empty() {
            "there are no aliases yet".to_owned()
        } else {
            let names: Vec<String> = self.by_name.keys().map(|n| format!("{n}:")).collect();
            format!("known aliases: {}", names.join(" "))
        };
        format!(
            "unknown alias '{name}' ({known}); create it with `tessera create-alias {name}`, or name an existing directory with `tessera add-alias {name} DIRCAP`"
        )
    }

    /// Resolves a command argument as Tahoe's `get_alias` does. With `default = Some(alias)` an
    /// argument without an alias is a path under that alias; with `None` it is a local path.
    pub(crate) fn resolve(&self, argument: &str, default: Option<&str>) -> anyhow::Result<Location> {
        let argument = argument.trim_matches(' ');
        if has_cap_prefix(argument) {
            if let Some(sep) = argument.find(":./") {
                return Ok(Location::Grid {
                    root: argument[..sep].to_owned(),
                    path: argument[sep + 3..].to_owned(),
                });
            }
            let (root, path) = argument.split_once('/').unwrap_or((argument, ""));
            return Ok(Location::Grid {
                root: root.to_owned(),
                path: path.to_owned(),
            });
        }
        let (alias, path) = match argument.split_once(':') {
            Some((alias, path)) if !alias.contains('/') => (Some(alias), path),
            _ => (None, argument),
        };
        let alias = match (alias, default) {
            (Some(alias), _) => alias,
            (None, None) => return Ok(Location::Local(argument.to_owned())),
            (None, Some(default)) => {
                if !self.by_name.contains_key(default) {
                    bail!(
                        "no alias given in '{argument}', and the default alias '{default}' does not exist; create it with `tessera create-alias {default}`, or write ALIAS:{argument}"
                    );
                }
                default
            }
        };
        Ok(Location::Grid {
            root: self.dircap(alias)?.to_string(),
            path: path.to_owned(),
        })
    }

    /// Adds `name: cap` to the file, refusing a name that exists. The name must already be valid.
    pub(crate) fn add(&mut self, name: &str, cap: &str) -> anyhow::Result<()> {
        if self.by_name.contains_key(name) {
            bail!(
                "alias '{name}' already exists; choose another name (or edit {} to remove it)",
                self.file.display()
            );
        }
        let mut contents = match std::fs::read(&self.file) {
            Ok(bytes) => String::from_utf8(bytes)
                .with_context(|| format!("{} is not UTF-8 text", self.file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.file.display())),
        };
        if !contents.is_empty() && !contents.ends_with('\n') {
            contents.push('\n');
        }
        contents.push_str(&format!("{name}: {cap}\n"));
        if let Some(private) = self.file.parent()
            && !private.exists()
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(private)
                .with_context(|| format!("cannot create {}", private.display()))?;
            std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o700))?;
        }
        crate::nodedir::write_private(&self.file, contents.as_bytes())?;
        self.by_name.insert(name.to_owned(), cap.to_owned());
        Ok(())
    }
}

/// Checks a new alias name (after removing one trailing `:`) as Tahoe does, plus the names Tahoe
/// accepts but could never resolve (empty, containing `/`, or a line break).
pub(crate) fn valid_name(name: &str) -> anyhow::Result<&str> {
    let name = name.strip_suffix(':').unwrap_or(name);
    if name.contains(':') {
        bail!("alias names cannot contain colons: '{name}'");
    }
    if name.contains(' ') {
        bail!("alias names cannot contain spaces: '{name}'");
    }
    if name.is_empty() || name.contains('/') || name.contains(['\n', '\r', '\t']) || name.starts_with('#') {
        bail!("'{name}' cannot be an alias name: use letters, digits, '-' or '_'");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    const DIR: &str =
        "URI:DIR2:omyst36rj6avlpmbl4erndqwbm:rlj74udti7zgbu7odjmkhzgvyhymav7k7li7ji6blqurokh6ebcq";
    const DIR_RO: &str =
        "URI:DIR2-RO:tktyb34ygvebj4bty7egnuscpi:rlj74udti7zgbu7odjmkhzgvyhymav7k7li7ji6blqurokh6ebcq";

    fn node_with(aliases: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("private")).unwrap();
        std::fs::write(dir.path().join("private/aliases"), aliases).unwrap();
        dir
    }

    fn grid(root: &str, path: &str) -> Location {
        Location::Grid {
            root: root.to_owned(),
            path: path.to_owned(),
        }
    }

    #[test]
    fn parses_tahoes_format() {
        let node = node_with(&format!(
            "# comment\n\ntahoe: {DIR}\n  work:{DIR_RO}  \nwork2 :  {DIR}\n"
        ));
        let aliases = Aliases::load(node.path()).unwrap();
        let names: Vec<&str> = aliases.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["tahoe", "work", "work2 "]);
        assert_eq!(aliases.resolve("work:a/b", None).unwrap(), grid(DIR_RO, "a/b"));
        assert_eq!(aliases.resolve("work:", None).unwrap(), grid(DIR_RO, ""));
    }

    #[test]
    fn resolves_like_get_alias() {
        let node = node_with(&format!("tahoe: {DIR}\n"));
        let aliases = Aliases::load(node.path()).unwrap();
        assert_eq!(aliases.resolve("a/b", Some("tahoe")).unwrap(), grid(DIR, "a/b"));
        assert_eq!(aliases.resolve("", Some("tahoe")).unwrap(), grid(DIR, ""));
        assert_eq!(
            aliases.resolve("a/b", None).unwrap(),
            Location::Local("a/b".into())
        );
        // A colon after a slash is part of a name, not an alias.
        assert_eq!(
            aliases.resolve("d/x:y", None).unwrap(),
            Location::Local("d/x:y".into())
        );
        assert_eq!(
            aliases.resolve("d/x:y", Some("tahoe")).unwrap(),
            grid(DIR, "d/x:y")
        );
        assert_eq!(aliases.resolve(" tahoe:x ", None).unwrap(), grid(DIR, "x"));
        // Caps, with and without a path, in both spellings.
        assert_eq!(aliases.resolve(DIR_RO, None).unwrap(), grid(DIR_RO, ""));
        assert_eq!(
            aliases.resolve(&format!("{DIR_RO}/a/b"), None).unwrap(),
            grid(DIR_RO, "a/b")
        );
        assert_eq!(
            aliases.resolve(&format!("{DIR_RO}:./a"), None).unwrap(),
            grid(DIR_RO, "a")
        );
        let cap = "ro.URI:LIT:nbswy3dp";
        assert_eq!(aliases.resolve(cap, Some("tahoe")).unwrap(), grid(cap, ""));
    }

    #[test]
    fn unknown_aliases_name_the_known_ones() {
        let node = node_with(&format!("tahoe: {DIR}\nwork: {DIR}\n"));
        let aliases = Aliases::load(node.path()).unwrap();
        let error = aliases.resolve("nope:x", None).unwrap_err().to_string();
        assert!(error.contains("unknown alias 'nope'"), "{error}");
        assert!(error.contains("known aliases: tahoe: work:"), "{error}");
        assert!(error.contains("tessera create-alias nope"), "{error}");
        let empty = node_with("");
        let error = Aliases::load(empty.path())
            .unwrap()
            .resolve("x", Some("tahoe"))
            .unwrap_err();
        assert!(
            error.to_string().contains("tessera create-alias tahoe"),
            "{error}"
        );
    }

    #[test]
    fn a_file_cap_is_not_an_alias() {
        let node = node_with("f: URI:LIT:nbswy3dp\n");
        let aliases = Aliases::load(node.path()).unwrap();
        let error = aliases.resolve("f:x", None).unwrap_err().to_string();
        assert!(error.contains("not a directory cap"), "{error}");
        assert!(!error.contains("URI:"), "{error}");
    }

    #[test]
    fn root_dir_cap_is_the_default_unless_overridden() {
        let node = node_with("");
        std::fs::write(node.path().join("private/root_dir.cap"), format!("{DIR_RO}\n")).unwrap();
        let aliases = Aliases::load(node.path()).unwrap();
        assert_eq!(aliases.resolve("x", Some("tahoe")).unwrap(), grid(DIR_RO, "x"));
        std::fs::write(node.path().join("private/aliases"), format!("tahoe: {DIR}\n")).unwrap();
        let aliases = Aliases::load(node.path()).unwrap();
        assert_eq!(aliases.resolve("x", Some("tahoe")).unwrap(), grid(DIR, "x"));
    }

    #[test]
    fn add_appends_with_mode_0600_and_refuses_duplicates() {
        use std::os::unix::fs::PermissionsExt;
        let node = node_with(&format!("tahoe: {DIR}"));
        let mut aliases = Aliases::load(node.path()).unwrap();
        aliases.add("work", DIR_RO).unwrap();
        let text = std::fs::read_to_string(node.path().join("private/aliases")).unwrap();
        assert_eq!(text, format!("tahoe: {DIR}\nwork: {DIR_RO}\n"));
        let mode = std::fs::metadata(node.path().join("private/aliases"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let error = aliases.add("tahoe", DIR).unwrap_err().to_string();
        assert!(error.contains("alias 'tahoe' already exists"), "{error}");
        // A fresh node directory without private/ gets one.
        let fresh = tempfile::tempdir().unwrap();
        Aliases::load(fresh.path()).unwrap().add("a", DIR).unwrap();
        assert!(fresh.path().join("private/aliases").exists());
    }

    #[test]
    fn alias_names() {
        assert_eq!(valid_name("work:").unwrap(), "work");
        assert_eq!(valid_name("bücher").unwrap(), "bücher");
        for bad in ["a:b", "a b", "", ":", "a/b", "#x"] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
    }
}
