//! Which introducers a node uses: `[client] introducer.furl` in `tahoe.cfg` (petname `default`)
//! and every entry of `private/introducers.yaml`, Tahoe's file for more than one:
//!
//! ```yaml
//! introducers:
//!   petname2:
//!     furl: "pb://…#v=1"
//! ```
//!
//! A storage node publishes its announcement to each of them and a client subscribes to each,
//! merging what they say (`client::follow_introducers`), so no one introducer is a single point of
//! failure. Each introducer's announcements are cached in `private/introducer_PETNAME_cache.yaml`,
//! as Tahoe names them.
//!
//! The file is hostile input like any configuration: at most [`MAX_FILE`] bytes and
//! [`MAX_INTRODUCERS`] entries; a petname is at most 64 letters, digits, `-`, `_` or `.` (it
//! becomes part of a file name); an entry holds `furl` and nothing else. Every error names the
//! file and the entry, never the address (its swissnum is a secret).

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde_yaml_ng::Value;

/// The largest `introducers.yaml` read.
pub(crate) const MAX_FILE: u64 = 64 * 1024;
/// The most introducers a node uses (tahoe.cfg's `default` included).
pub(crate) const MAX_INTRODUCERS: usize = 32;
/// The longest petname.
const MAX_PETNAME: usize = 64;

/// One introducer a node publishes to and subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IntroducerConfig {
    /// `default` for `[client] introducer.furl`, else the key in `introducers.yaml`.
    pub(crate) petname: String,
    /// Its address (a secret: never shown).
    pub(crate) address: storage::nurl::Nurl,
}

/// The petname of `[client] introducer.furl`, as in Tahoe.
pub(crate) const DEFAULT_PETNAME: &str = "default";

fn valid_petname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PETNAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads `private/introducers.yaml` of `node_dir` (absent: none).
pub(crate) fn read(node_dir: &Path) -> anyhow::Result<Vec<IntroducerConfig>> {
    let path = node_dir.join("private").join("introducers.yaml");
    let text = match frontends::textfile::read_bounded(&path, MAX_FILE) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    };
    parse(&text, &path)
}

/// Parses the text of an `introducers.yaml` (`file` names it in errors).
pub(crate) fn parse(text: &str, file: &Path) -> anyhow::Result<Vec<IntroducerConfig>> {
    let file = file.display();
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| anyhow!("{file} is not valid YAML: {e}"))?;
    let top = match value {
        Value::Mapping(top) => top,
        // Tahoe refuses an empty file too.
        Value::Null => bail!(
            "{file} is empty: list introducers under `introducers:`, or delete the file to use none \
             but tahoe.cfg's"
        ),
        _ => bail!("{file}: the file must be a mapping with the one key `introducers`"),
    };
    let mut entries = None;
    for (key, value) in top {
        match key.as_str() {
            Some("introducers") => entries = Some(value),
            Some(other) => bail!(
                "{file}: unknown key `{}` (the file has the one key `introducers`)",
                other.escape_debug()
            ),
            None => bail!("{file}: a key that is not text (the file has the one key `introducers`)"),
        }
    }
    let entries = match entries {
        // Tahoe: no `introducers` key is no introducers.
        None => return Ok(Vec::new()),
        Some(Value::Mapping(entries)) => entries,
        Some(_) => bail!("{file}: `introducers` must be a mapping of petname to {{furl: ADDRESS}}"),
    };
    if entries.len() > MAX_INTRODUCERS {
        bail!("{file}: {} introducers; at most {MAX_INTRODUCERS}", entries.len());
    }
    let mut out: Vec<IntroducerConfig> = Vec::new();
    for (petname, entry) in entries {
        let Some(petname) = petname.as_str().filter(|name| valid_petname(name)) else {
            bail!(
                "{file}: introducer petname {} is not 1 to {MAX_PETNAME} letters, digits, `-`, `_` or `.` \
                 (not starting with `.`)",
                match petname.as_str() {
                    Some(name) if name.len() <= 2 * MAX_PETNAME => format!("`{}`", name.escape_debug()),
                    Some(_) => "(too long)".to_owned(),
                    None => "(not text)".to_owned(),
                }
            );
        };
        let Value::Mapping(fields) = entry else {
            bail!("{file}: introducer `{petname}` must be a mapping with the one key `furl`");
        };
        let mut furl = None;
        for (key, value) in fields {
            match (key.as_str(), value) {
                (Some("furl"), Value::String(text)) => furl = Some(text),
                (Some("furl"), _) => bail!("{file}: introducer `{petname}`: `furl` must be text"),
                (Some(other), _) => bail!(
                    "{file}: introducer `{petname}`: unknown key `{}` (an entry has the one key `furl`)",
                    other.escape_debug()
                ),
                (None, _) => bail!(
                    "{file}: introducer `{petname}`: a key that is not text (an entry has the one key `furl`)"
                ),
            }
        }
        let furl = furl.with_context(|| format!("{file}: introducer `{petname}` has no `furl`"))?;
        // The address is not repeated: its swissnum is a secret.
        let address = match crate::introducer::parse_address(&furl) {
            Ok(nurl) if nurl.scheme == storage::nurl::NurlScheme::Tor => bail!(
                "{file}: introducer `{petname}`: its furl is a pb+tor:// address, which needs Tor, which \
                 Tessera does not support"
            ),
            Ok(nurl) => nurl,
            Err(_) => bail!(
                "{file}: introducer `{petname}`: its furl is not a Tessera introducer's address (pb://…#v=1, \
                 from its private/introducer.furl): Tahoe's Foolscap introducers are not supported"
            ),
        };
        if let Some(same) = out.iter().find(|known| known.address == address) {
            bail!(
                "{file}: introducers `{}` and `{petname}` have the same furl: remove one",
                same.petname
            );
        }
        out.push(IntroducerConfig {
            petname: petname.to_owned(),
            address,
        });
    }
    Ok(out)
}

/// All the node's introducers: tahoe.cfg's (`default`, if set) first, then `introducers.yaml`'s.
/// `default` in both is an error, as in Tahoe.
pub(crate) fn resolve(
    node_dir: &Path,
    from_cfg: Option<storage::nurl::Nurl>,
) -> anyhow::Result<Vec<IntroducerConfig>> {
    let listed = read(node_dir)?;
    let path = node_dir.join("private").join("introducers.yaml");
    let mut all = Vec::new();
    if let Some(address) = from_cfg {
        if listed.iter().any(|entry| entry.petname == DEFAULT_PETNAME) {
            bail!(
                "{}: introducer `default` is also tahoe.cfg's [client] introducer.furl: rename or remove one",
                path.display()
            );
        }
        if let Some(same) = listed.iter().find(|entry| entry.address == address) {
            bail!(
                "{}: introducer `{}` has the same furl as tahoe.cfg's [client] introducer.furl: remove one",
                path.display(),
                same.petname
            );
        }
        all.push(IntroducerConfig {
            petname: DEFAULT_PETNAME.to_owned(),
            address,
        });
    }
    all.extend(listed);
    if all.len() > MAX_INTRODUCERS {
        bail!(
            "{}: with tahoe.cfg's introducer.furl, {} introducers; at most {MAX_INTRODUCERS}",
            path.display(),
            all.len()
        );
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> String {
        let spki = storage::tls::TlsIdentity::generate().unwrap().spki_hash();
        storage::nurl::Nurl::new(spki, "127.0.0.1", port, "sekrit-swissnum").to_string()
    }

    fn error(text: &str) -> String {
        let err = parse(text, Path::new("/n/private/introducers.yaml")).unwrap_err();
        let shown = format!("{err:#}");
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.starts_with("/n/private/introducers.yaml"), "{shown}");
        shown
    }

    #[test]
    fn tahoes_shape_is_read_and_each_mistake_is_named() {
        let (a, b) = (address(1), address(2));
        let text = format!("introducers:\n  one:\n    furl: \"{a}\"\n  two.b:\n    furl: {b}\n");
        let list = parse(&text, Path::new("x")).unwrap();
        assert_eq!(
            list.iter().map(|e| e.petname.as_str()).collect::<Vec<_>>(),
            ["one", "two.b"]
        );
        assert_eq!(list[0].address.to_string(), a);
        assert_eq!(list[1].address.port, 2);
        assert!(parse("introducers: {}\n", Path::new("x")).unwrap().is_empty());
        // The fuzz seed is a valid file.
        let seed = include_str!("../../fuzz/corpus/introducers_yaml/two");
        assert_eq!(parse(seed, Path::new("x")).unwrap().len(), 2);
        assert!(parse("{}\n", Path::new("x")).unwrap().is_empty());

        assert!(error("").contains("is empty"));
        assert!(error("introducers: [\n").contains("is not valid YAML"));
        assert!(error("- a\n").contains("one key `introducers`"));
        assert!(error("introducer: {}\n").contains("unknown key `introducer`"));
        assert!(error("introducers: [a]\n").contains("mapping of petname"));
        let e = error(&format!("introducers:\n  one:\n    furl: {a}\n    nickname: x\n"));
        assert!(e.contains("introducer `one`: unknown key `nickname`"), "{e}");
        let e = error("introducers:\n  one: {}\n");
        assert!(e.contains("introducer `one` has no `furl`"), "{e}");
        let e = error("introducers:\n  one:\n    furl: 7\n");
        assert!(e.contains("`furl` must be text"), "{e}");
        let e = error("introducers:\n  one:\n    furl: pb://tubid@tcp:example.org:1/sekrit\n");
        assert!(
            e.contains("introducer `one`: its furl is not a Tessera introducer's address"),
            "{e}"
        );
        let tor = a.replacen("pb://", "pb+tor://", 1);
        let e = error(&format!("introducers:\n  hidden:\n    furl: {tor}\n"));
        assert!(
            e.contains("introducer `hidden`: its furl is a pb+tor:// address"),
            "{e}"
        );
        let e = error(&format!(
            "introducers:\n  one:\n    furl: {a}\n  two:\n    furl: {a}\n"
        ));
        assert!(
            e.contains("introducers `one` and `two` have the same furl"),
            "{e}"
        );
        // A petname becomes part of a file name (the cache's).
        for bad in ["../../etc/x", ".hidden", "a b", "", "é"] {
            let e = error(&format!("introducers:\n  \"{bad}\":\n    furl: {a}\n"));
            assert!(e.contains("is not 1 to 64 letters"), "{bad}: {e}");
        }
        let e = error(&format!("introducers:\n  {}:\n    furl: {a}\n", "p".repeat(65)));
        assert!(e.contains("is not 1 to 64 letters"), "{e}");
        let many: String = (0..=MAX_INTRODUCERS)
            .map(|i| format!("  i{i}:\n    furl: {}\n", address(i as u16 + 1)))
            .collect();
        let e = error(&format!("introducers:\n{many}"));
        assert!(e.contains("33 introducers; at most 32"), "{e}");
    }

    #[test]
    fn tahoe_cfg_is_the_default_introducer_and_the_file_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("private")).unwrap();
        let cfg: storage::nurl::Nurl = address(9).parse().unwrap();
        // No file: tahoe.cfg's alone.
        let all = resolve(dir.path(), Some(cfg.clone())).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].petname, "default");
        let file = dir.path().join("private").join("introducers.yaml");
        std::fs::write(
            &file,
            format!("introducers:\n  other:\n    furl: {}\n", address(3)),
        )
        .unwrap();
        let all = resolve(dir.path(), Some(cfg.clone())).unwrap();
        assert_eq!(
            all.iter().map(|e| e.petname.as_str()).collect::<Vec<_>>(),
            ["default", "other"]
        );
        std::fs::write(
            &file,
            format!("introducers:\n  default:\n    furl: {}\n", address(3)),
        )
        .unwrap();
        let e = format!("{:#}", resolve(dir.path(), Some(cfg.clone())).unwrap_err());
        assert!(e.contains("introducer `default` is also tahoe.cfg's"), "{e}");
        std::fs::write(&file, format!("introducers:\n  again:\n    furl: {cfg}\n")).unwrap();
        let e = format!("{:#}", resolve(dir.path(), Some(cfg.clone())).unwrap_err());
        assert!(
            e.contains("introducer `again` has the same furl as tahoe.cfg's"),
            "{e}"
        );
        std::fs::write(&file, vec![b'#'; MAX_FILE as usize + 1]).unwrap();
        let e = format!("{:#}", resolve(dir.path(), None).unwrap_err());
        assert!(e.contains("introducers.yaml is larger than 65536 bytes"), "{e}");
    }
}
