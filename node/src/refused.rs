//! Tahoe's `tahoe.cfg` keys and sections that Tessera does not act on: each one, when set, stops
//! `tessera run` with a message that names the file, the line, the key and why, so that no setting
//! (a privacy setting least of all) is silently ignored. README's "Configuration reference" has the
//! table of every Tahoe key, honoured or refused.
//!
//! A key set to its harmless value (`reveal-IP-address = true`, `force_foolscap = false`,
//! `[helper] enabled = false`, …) and a key left empty (`helper.furl =`, as `tahoe create-node`
//! writes it) are accepted: they ask for nothing Tessera does not do.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;

use crate::config::RawSection;

/// When a refused key is accepted after all.
#[derive(Debug, Clone, Copy)]
enum Accept {
    /// Never, whatever its (non-empty) value.
    Never,
    /// When it is a boolean with this value.
    Bool(bool),
    /// When it is one of these words (compared without case).
    Words(&'static [&'static str]),
}

/// `(section, key, accepted values, why)`. The message shows the value only for `Bool` and `Words`
/// keys: a FURL or a plugin setting may hold a secret.
const REFUSED_KEYS: &[(&str, &str, Accept, &str)] = &[
    (
        "node",
        "reveal-IP-address",
        Accept::Bool(true),
        "reveal-IP-address = false needs Tor or I2P, which Tessera does not support: remove the key to \
         connect directly (revealing this node's IP address to servers and the network)",
    ),
    (
        "node",
        "log_gatherer.furl",
        Accept::Never,
        "Foolscap log gatherers are not supported: Tessera logs to logs/tessera.log (see [node] log_format); \
         remove the key",
    ),
    (
        "node",
        "ssh.port",
        Accept::Never,
        "the SSH debugging shell (manhole) is not supported: remove the key",
    ),
    (
        "node",
        "ssh.authorized_keys_file",
        Accept::Never,
        "the SSH debugging shell (manhole) is not supported: remove the key",
    ),
    (
        "connections",
        "tcp",
        Accept::Words(&["tcp"]),
        "only `tcp = tcp` (direct connections) is supported: `tor` needs Tor and `disabled` needs Tor or I2P, \
         which Tessera does not support; remove the key to connect directly (revealing this node's IP address)",
    ),
    (
        "client",
        "helper.furl",
        Accept::Never,
        "upload helpers are not supported: remove the key (or leave it empty) to upload directly to the \
         storage servers",
    ),
    (
        "client",
        "key_generator.furl",
        Accept::Never,
        "key generators are not supported (Tahoe dropped them too): remove the key",
    ),
    (
        "client",
        "stats_gatherer.furl",
        Accept::Never,
        "stats gatherers are not supported (Tahoe dropped them too): remove the key; /statistics serves the \
         node's figures",
    ),
    (
        "client",
        "force_foolscap",
        Accept::Bool(false),
        "force_foolscap = true asks for Foolscap connections only, and Foolscap is not supported (Tessera \
         speaks HTTPS, Tahoe's Great Black Swamp protocol): remove the key",
    ),
    (
        "client",
        "storage.plugins",
        Accept::Never,
        "storage client plugins are not supported: remove the key",
    ),
    (
        "storage",
        "anonymous",
        Accept::Bool(true),
        "anonymous = false restricts the storage service to a plugin's clients, and plugins are not \
         supported, so anyone with the server's NURL could still use it: remove the key",
    ),
    (
        "storage",
        "force_foolscap",
        Accept::Bool(false),
        "force_foolscap = true serves storage over Foolscap only, and Foolscap is not supported (Tessera \
         serves HTTPS, Tahoe's Great Black Swamp protocol): remove the key",
    ),
    (
        "storage",
        "plugins",
        Accept::Never,
        "storage server plugins are not supported: remove the key",
    ),
    (
        "storage",
        "grid_management",
        Accept::Bool(false),
        "grid_management = true needs grid-manager certificates, which Tessera does not support: remove the key",
    ),
    (
        "storage",
        "debug_discard",
        Accept::Bool(false),
        "debug_discard = true (throw shares away) is not supported: remove the key",
    ),
    (
        "helper",
        "enabled",
        Accept::Bool(false),
        "running an upload helper is not supported: remove the key or set enabled = false",
    ),
    (
        "sftpd",
        "accounts.url",
        Accept::Never,
        "account servers are not supported: list accounts in accounts.file (see `tessera admin add-user`)",
    ),
];

/// Sections refused as a whole: `(name, or name prefix ending in '.', why)`. `[tor]` and `[i2p]`
/// are accepted when they hold only `enabled = false` (Tahoe's "no Tor/I2P at all").
const REFUSED_SECTIONS: &[(&str, &str)] = &[
    (
        "tor",
        "Tor is not supported, so this node would connect directly (revealing its IP address): remove the \
         section, or leave only `enabled = false` in it",
    ),
    (
        "i2p",
        "I2P is not supported, so this node would connect directly (revealing its IP address): remove the \
         section, or leave only `enabled = false` in it",
    ),
    (
        "grid_managers",
        "grid managers are not supported, so this client would use servers no grid manager certified: \
         remove the section",
    ),
    (
        "storageserver.plugins.",
        "storage server plugins are not supported: remove the section",
    ),
    (
        "storageclient.plugins.",
        "storage client plugins are not supported: remove the section",
    ),
];

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Whether `section` is one of the refused sections, and why.
pub(crate) fn refused_section(section: &str) -> Option<&'static str> {
    REFUSED_SECTIONS
        .iter()
        .find(|(name, _)| match name.strip_suffix('.') {
            Some(prefix) => section.len() > name.len() && section.starts_with(name) && !prefix.is_empty(),
            None => section == *name,
        })
        .map(|(_, why)| *why)
}

/// Whether `[section] key` is a refused key (known, so not "unknown key").
pub(crate) fn is_refused_key(section: &str, key: &str) -> bool {
    REFUSED_KEYS.iter().any(|(s, k, _, _)| *s == section && *k == key)
}

/// Stops the node if any refused section or key is set, naming each (one a line) with the file,
/// line and key; `reveal-IP-address = false` first, since it is the setting that says why.
pub(crate) fn check(sections: &BTreeMap<String, RawSection>, file: &Path) -> anyhow::Result<()> {
    let file = file.display();
    // (not reveal-IP-address, line, message): that key sorts first, the rest in line order.
    let mut refusals: Vec<(bool, usize, String)> = Vec::new();
    for (section, entries) in sections {
        if let Some(why) = refused_section(section) {
            let tor_off = matches!(section.as_str(), "tor" | "i2p")
                && !entries.is_empty()
                && entries
                    .iter()
                    .all(|(key, (value, _))| key == "enabled" && parse_bool(value) == Some(false));
            if !tor_off {
                refusals.push(
                    match entries
                        .iter()
                        .map(|(key, (_, line))| (key, *line))
                        .min_by_key(|(_, l)| *l)
                    {
                        Some((key, line)) => (
                            true,
                            line,
                            format!("{file}, line {line}: [{section}] {key}: {why}"),
                        ),
                        None => (true, 0, format!("{file}: section [{section}]: {why}")),
                    },
                );
            }
            continue;
        }
        for (key, (value, line)) in entries {
            let Some((_, _, accept, why)) = REFUSED_KEYS.iter().find(|(s, k, _, _)| s == section && k == key)
            else {
                continue;
            };
            if value.trim().is_empty() {
                continue;
            }
            let at = format!("{file}, line {line}: [{section}] {key}");
            // A reason that starts with the setting ("reveal-IP-address = false needs …") says it.
            let refused = || match why.starts_with(&format!("{key} = ")) {
                true => format!("{file}, line {line}: [{section}] {why}"),
                false => format!("{at} = {value}: {why}"),
            };
            let refusal = match accept {
                Accept::Never => Some(format!("{at} is set: {why}")),
                Accept::Bool(ok) => match parse_bool(value) {
                    Some(b) if b == *ok => None,
                    Some(_) => Some(refused()),
                    None => Some(format!("{at} must be true or false")),
                },
                Accept::Words(words) => {
                    (!words.iter().any(|w| w.eq_ignore_ascii_case(value.trim()))).then(refused)
                }
            };
            if let Some(message) = refusal {
                refusals.push((key != "reveal-IP-address", *line, message));
            }
        }
    }
    refusals.sort();
    if refusals.is_empty() {
        return Ok(());
    }
    let messages: Vec<String> = refusals.into_iter().map(|(_, _, message)| message).collect();
    bail!("{}", messages.join("\n"))
}

#[cfg(test)]
mod tests {
    use crate::config::{NodeConfig, parse_ini};
    use std::path::Path;

    /// Every key of Tahoe 1.20's configuration.rst, one `[section] key = value` a line (see the
    /// fixture's header for where it came from).
    const TAHOE_KEYS: &str = include_str!("../tests/fixtures/tahoe-1.20-configuration-keys.txt");

    fn load(text: &str) -> anyhow::Result<NodeConfig> {
        let file = Path::new("/n/tahoe.cfg");
        NodeConfig::from_ini(&parse_ini(text, file)?, Path::new("/n"), file)
    }

    /// The fixture's entries: `(section, key, values)`; a line may give several values to try
    /// (`a | b`).
    fn tahoe_keys() -> Vec<(String, String, Vec<String>)> {
        TAHOE_KEYS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (section, rest) = line
                    .strip_prefix('[')
                    .and_then(|l| l.split_once(']'))
                    .unwrap_or_else(|| panic!("bad fixture line {line}"));
                let (key, values) = rest.split_once('=').unwrap_or((rest, ""));
                let values = values.split(" | ").map(|v| v.trim().to_owned()).collect();
                (section.to_owned(), key.trim().to_owned(), values)
            })
            .collect()
    }

    /// Every key of Tahoe's configuration.rst is either honoured (the node loads with it) or refused
    /// with a message naming the file, the line and the key, and why ("not supported" / "needs").
    #[test]
    fn every_tahoe_key_is_honoured_or_refused_by_name() {
        let keys = tahoe_keys();
        assert!(keys.len() >= 45, "the fixture lists {} keys", keys.len());
        let mut honoured = 0;
        let mut refused = 0;
        for (section, key, values) in &keys {
            for value in values {
                // A storage node with a port, so that keys that need one have it.
                let mut text = format!("[node]\ntub.port = tcp:0\n\n[{section}]\n{key} = {value}\n");
                if section == "storage" && key != "expire.cutoff_date" {
                    // expire.mode = cutoff-date needs its date.
                    text.push_str("expire.cutoff_date = 2024-01-31\n");
                }
                let text = if section == "node" {
                    format!("[{section}]\n{key} = {value}\n")
                } else {
                    text
                };
                match load(&text) {
                    Ok(_) => honoured += 1,
                    Err(error) => {
                        let message = format!("{error:#}");
                        assert!(
                            message.starts_with("/n/tahoe.cfg, line ")
                                && message.contains(&format!("[{section}] {key}"))
                                && !message.contains("unknown")
                                && (message.contains("not supported") || message.contains("needs")),
                            "[{section}] {key} = {value}: {message}"
                        );
                        refused += 1;
                    }
                }
            }
        }
        eprintln!("{honoured} settings honoured, {refused} refused");
        assert!(honoured > 0 && refused > 0);
    }

    #[test]
    fn privacy_settings_are_refused_never_downgraded() {
        for (text, expected) in [
            (
                "[node]\nreveal-IP-address = false\n",
                "reveal-IP-address = false needs Tor or I2P, which Tessera does not support: remove the key \
                 to connect directly",
            ),
            (
                "[connections]\ntcp = tor\n",
                "[connections] tcp = tor: only `tcp = tcp`",
            ),
            ("[connections]\ntcp = disabled\n", "[connections] tcp = disabled"),
            ("[tor]\nlaunch = true\n", "[tor] launch: Tor is not supported"),
            ("[tor]\n", "section [tor]: Tor is not supported"),
            (
                "[i2p]\nsam.port = tcp:127.0.0.1:7656\n",
                "[i2p] sam.port: I2P is not supported",
            ),
            (
                "[grid_managers]\nfluffy = pub-v0-xyz\n",
                "[grid_managers] fluffy: grid managers are not supported",
            ),
            (
                "[storageserver.plugins.acme-foo-v1]\nsecret = 123\n",
                "[storageserver.plugins.acme-foo-v1] secret: storage server plugins",
            ),
            (
                "[client]\nstorage.plugins = acme\n",
                "[client] storage.plugins is set",
            ),
            ("[storage]\nanonymous = false\n", "[storage] anonymous = false"),
            (
                "[node]\ntub.location = tor:abc.onion:3457\n",
                "[node] tub.location",
            ),
        ] {
            let message = format!("{:#}", load(text).unwrap_err());
            assert!(message.starts_with("/n/tahoe.cfg"), "{message}");
            assert!(message.contains(expected), "{text}: {message}");
        }
        // Tahoe's `create-client --hide-ip`: every refusal is named, the privacy flag first.
        let message = format!(
            "{:#}",
            load(
                "[connections]\ntcp = tor\n[node]\nreveal-IP-address = false\ntub.port = disabled\n\
                  tub.location = disabled\n[storage]\nenabled = false\n"
            )
            .unwrap_err()
        );
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 2, "{message}");
        assert!(
            lines[0].contains("line 4: [node] reveal-IP-address = false"),
            "{message}"
        );
        assert!(lines[1].contains("line 2: [connections] tcp = tor"), "{message}");
        // Their harmless values are accepted.
        for text in [
            "[node]\nreveal-IP-address = True\n",
            "[connections]\ntcp = tcp\n",
            "[tor]\nenabled = false\n",
            "[i2p]\nenabled = no\n",
            "[client]\nhelper.furl =\nforce_foolscap = false\n",
            "[helper]\nenabled = false\n",
            "[storage]\nanonymous = true\ngrid_management = false\n",
        ] {
            assert!(load(text).is_ok(), "{text}: {:#}", load(text).unwrap_err());
        }
    }

    #[test]
    fn secrets_in_refused_keys_are_not_repeated() {
        let furl = "pb://soklj4y7eok5c3xkmjeqpw@tcp:helper.example:7054/swissnumsecret";
        for text in [
            format!("[client]\nhelper.furl = {furl}\n"),
            format!("[node]\nlog_gatherer.furl = {furl}\n"),
            "[storageserver.plugins.x]\nauth = swissnumsecret\n".to_owned(),
            format!("[client]\nintroducer.furl = {furl}\n"),
        ] {
            let message = format!("{:#}", load(&text).unwrap_err());
            assert!(!message.contains("swissnumsecret"), "{message}");
        }
    }
}
