//! `tahoe.cfg`: the node's configuration file, in Tahoe's INI shape and with Tahoe's section and key
//! names where they exist.
//!
//! Reading is two steps: [`parse_ini`] turns the text into sections of raw strings (with line numbers
//! for errors), then [`NodeConfig::from_ini`] checks every key against the list of known keys (an
//! unknown section or key is an error naming it and the file) and resolves the values into one typed
//! struct. The format follows Python's ConfigParser as Tahoe uses it: `key = value` or `key: value`,
//! `#` and `;` comments, indented continuation lines, keys case-sensitive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};

/// One section's raw key/value pairs, with the line each key came from.
pub(crate) type RawSection = BTreeMap<String, (String, usize)>;

/// Parses INI text into sections.
pub(crate) fn parse_ini(text: &str, file: &Path) -> anyhow::Result<BTreeMap<String, RawSection>> {
    let mut sections: BTreeMap<String, RawSection> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let at = || format!("{}, line {line_no}", file.display());
        if raw.starts_with([' ', '\t']) {
            // A continuation line extends the previous value.
            let (Some(section), Some(key)) = (&current, &last_key) else {
                bail!("{}: unexpected indented line", at());
            };
            let entry = sections
                .get_mut(section)
                .and_then(|s| s.get_mut(key))
                .expect("invariant: key exists");
            entry.0.push('\n');
            entry.0.push_str(trimmed);
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| anyhow!("{}: section header lacks ']'", at()))?;
            let name = name.trim().to_owned();
            if sections.contains_key(&name) {
                bail!("{}: section [{name}] appears twice", at());
            }
            sections.insert(name.clone(), RawSection::new());
            current = Some(name);
            last_key = None;
            continue;
        }
        let Some(section) = &current else {
            bail!("{}: a setting appears before any [section]", at());
        };
        let split = trimmed
            .find(['=', ':'])
            .ok_or_else(|| anyhow!("{}: expected `key = value`", at()))?;
        let key = trimmed[..split].trim().to_owned();
        let value = trimmed[split + 1..].trim().to_owned();
        if key.is_empty() {
            bail!("{}: empty key", at());
        }
        let entries = sections
            .get_mut(section)
            .expect("invariant: current section exists");
        if entries.insert(key.clone(), (value, line_no)).is_some() {
            bail!("{}: [{section}] {key} is set twice", at());
        }
        last_key = Some(key);
    }
    Ok(sections)
}

/// Sizes as Tahoe writes them: `1G`, `100MB`, `1GiB`, `1 G`, `123` (bytes). `k`/`K`/`M`/`G`/`T`/`P`
/// are powers of 1000, `Ki`…`Pi` powers of 1024; a trailing `B` is optional.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let digits_end = compact
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(compact.len());
    if digits_end == 0 {
        return None;
    }
    let number: u64 = compact[..digits_end].parse().ok()?;
    let mut suffix = &compact[digits_end..];
    suffix = suffix.strip_suffix(['B', 'b']).unwrap_or(suffix);
    let (unit, binary) = match suffix.strip_suffix(['i', 'I']) {
        Some(unit) => (unit, true),
        None => (suffix, false),
    };
    let power = match unit.to_ascii_uppercase().as_str() {
        "" if !binary => 0,
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        "P" => 5,
        _ => return None,
    };
    let base: u64 = if binary { 1024 } else { 1000 };
    number.checked_mul(base.checked_pow(power)?)
}

/// A duration: `30s`, `2min`, `1h` (humantime), or a number of seconds.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    humantime::parse_duration(text)
        .ok()
        .or_else(|| text.parse::<u64>().ok().map(std::time::Duration::from_secs))
        .filter(|d| !d.is_zero())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// `YYYY-MM-DD` at UTC midnight.
fn parse_date(text: &str) -> Option<SystemTime> {
    let mut parts = text.split('-');
    let (year, month, day): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    // Years are bounded, so that the arithmetic below cannot overflow (a fuzzed year of 2^63 did).
    if parts.next().is_some()
        || !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    // Days from 1970-01-01 (Howard Hinnant's civil-from-days inverse).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A Twisted-style endpoint as Tahoe writes `tub.port` and `web.port`: `tcp:PORT[:interface=ADDR]`,
/// and for the web ports (`[node] web.port`, `[webdav] port`) Twisted's TLS form
/// `ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem][:interface=ADDR]` ([`Endpoint::parse_web`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) port: u16,
    pub(crate) interface: String,
    /// The key and certificate files of an `ssl:` endpoint (served over TLS).
    pub(crate) tls: Option<TlsFiles>,
}

/// The files of an `ssl:` endpoint, resolved against the node directory (Tahoe runs in it, so
/// Twisted opens relative names there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// `privateKey=`: the PEM private key.
    pub(crate) private_key: PathBuf,
    /// `certKey=`: the PEM certificate (and any chain after it); Twisted's default is the
    /// `privateKey` file itself.
    pub(crate) certificate: PathBuf,
    /// `extraCertChain=`: PEM certificates sent after the certificate.
    pub(crate) extra_chain: Option<PathBuf>,
}

/// Splits a Twisted endpoint description at its colons; `\` escapes the next character (so a
/// path may hold `\:`), as Twisted's `serverFromString` reads it.
fn endpoint_fields(text: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("never empty").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

impl Endpoint {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        // Tahoe's strports also take a bare port number.
        if let Ok(port) = text.trim().parse() {
            return Some(Endpoint {
                port,
                interface: "0.0.0.0".to_owned(),
                tls: None,
            });
        }
        let mut parts = text.split(':');
        if parts.next()? != "tcp" {
            return None;
        }
        let port = parts.next()?.parse().ok()?;
        let mut interface = "0.0.0.0".to_owned();
        for option in parts {
            interface = option.strip_prefix("interface=")?.to_owned();
        }
        Some(Endpoint {
            port,
            interface,
            tls: None,
        })
    }

    /// A web port: [`Endpoint::parse`]'s forms (`plain`: [`Endpoint::parse_listen`]'s), or
    /// Twisted's `ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem][:extraCertChain=CHAIN.pem]
    /// [:interface=ADDR]` (the port may also be given as `port=PORT`), whose file names are
    /// resolved against `node_dir`. Other `ssl:` options (`sslmethod`, `dhParameters`, …) are
    /// refused rather than ignored.
    pub(crate) fn parse_web(text: &str, node_dir: &Path, plain: fn(&str) -> Option<Self>) -> Option<Self> {
        let text = text.trim();
        if !text.starts_with("ssl:") {
            return plain(text);
        }
        let mut fields = endpoint_fields(text);
        fields.remove(0);
        let (mut port, mut interface, mut key, mut cert, mut chain) = (None, None, None, None, None);
        if fields.first().is_some_and(|first| !first.contains('=')) {
            port = Some(fields.remove(0).parse::<u16>().ok()?);
        }
        for field in fields {
            let (name, value) = field.split_once('=')?;
            if value.is_empty() {
                return None;
            }
            let slot = match name {
                "port" if port.is_none() => {
                    port = Some(value.parse::<u16>().ok()?);
                    continue;
                }
                "interface" => &mut interface,
                "privateKey" => &mut key,
                "certKey" => &mut cert,
                "extraCertChain" => &mut chain,
                _ => return None,
            };
            if slot.replace(value.to_owned()).is_some() {
                return None;
            }
        }
        let private_key = node_dir.join(key?);
        Some(Endpoint {
            port: port?,
            interface: interface
                .map(|i| i.trim_matches(['[', ']']).to_owned())
                .unwrap_or_else(|| "0.0.0.0".to_owned()),
            tls: Some(TlsFiles {
                certificate: cert.map_or_else(|| private_key.clone(), |c| node_dir.join(c)),
                private_key,
                extra_chain: chain.map(|c| node_dir.join(c)),
            }),
        })
    }

    /// The URL scheme of this port: `https` when it is served over TLS.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// A frontend's listening address: Tahoe's `tcp:PORT:interface=HOST` or plain `HOST:PORT`.
    pub(crate) fn parse_listen(text: &str) -> Option<Self> {
        Endpoint::parse(text).or_else(|| {
            let (host, port) = text.rsplit_once(':')?;
            Some(Endpoint {
                port: port.parse().ok()?,
                interface: host.trim_matches(['[', ']']).to_owned(),
                tls: None,
            })
        })
    }

    pub(crate) fn socket_address(&self) -> String {
        if self.interface.contains(':') {
            format!("[{}]:{}", self.interface, self.port)
        } else {
            format!("{}:{}", self.interface, self.port)
        }
    }
}

/// How lease expiry is configured (`[storage] expire.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpireConfig {
    pub(crate) enabled: bool,
    pub(crate) mode: ExpireMode,
    pub(crate) immutable: bool,
    pub(crate) mutable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpireMode {
    Age {
        override_lease_duration: Option<Duration>,
    },
    CutoffDate(SystemTime),
}

/// The resolved configuration of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeConfig {
    pub(crate) nickname: String,
    pub(crate) web_port: Option<Endpoint>,
    /// `[node] web.max_connections` and `web.header_read_timeout` (Tessera's).
    pub(crate) web_limits: frontends::web::ServeLimits,
    /// `[node] web.spool.quota` (Tessera's): bytes that all web uploads in progress may hold in
    /// their spools together (default 10 GiB); past it an upload is refused with 507.
    pub(crate) web_spool_quota: u64,
    pub(crate) tub_port: Option<Endpoint>,
    /// Advertised `host:port` hints for the storage service.
    pub(crate) tub_location: Vec<String>,
    pub(crate) shares_needed: u16,
    pub(crate) shares_happy: u16,
    pub(crate) shares_total: u16,
    /// The introducers: `[client] introducer.furl` (petname `default`) first, then those of
    /// `private/introducers.yaml` (`introducer_config`).
    pub(crate) introducers: Vec<crate::introducer_config::IntroducerConfig>,
    /// `[client] convergence` (Tessera's): false uploads with random keys.
    pub(crate) convergence: bool,
    /// `[client] enabled` (Tessera's, default true): false runs no client (no web gateway, SFTP
    /// or FTP); `web.port` then serves only the node's status (`/`, `/storage`, `/statistics`).
    pub(crate) client_enabled: bool,
    pub(crate) storage_enabled: bool,
    pub(crate) storage_dir: PathBuf,
    pub(crate) reserved_space: u64,
    pub(crate) max_space: Option<u64>,
    pub(crate) readonly: bool,
    /// `[storage] max_mutable_request` (Tessera's): the largest read-test-write body.
    /// `[storage] request_memory` (Tessera's): request bodies held in memory at once.
    pub(crate) storage_limits: storage::http::HttpLimits,
    /// `[storage] upload.takeover_after` (Tessera's, default 20 s): another client's upload idle this
    /// long is aborted when a new upload asks for the same share.
    pub(crate) upload_takeover_after: Duration,
    /// `[storage] upload.idle_timeout` (Tessera's, default 5 min; Tahoe: 30 min): uploads idle this
    /// long are aborted by the node's maintenance.
    pub(crate) upload_idle_timeout: Duration,
    pub(crate) expire: ExpireConfig,
    /// `[node] timeout.keepalive` and `timeout.disconnect` (Tahoe's; integral seconds).
    pub(crate) timeouts: crate::client::Timeouts,
    pub(crate) sftp: SftpdConfig,
    pub(crate) ftp: FtpdConfig,
    pub(crate) webdav: WebdavConfig,
    /// `[node] log_level`, `log_format`, `log_max_size`, `log_keep` (Tessera's).
    pub(crate) log: crate::logging::LogConfig,
    /// `[node] web.static` (Tahoe's, default `public_html`): served at `/static` when it exists.
    pub(crate) web_static: PathBuf,
    /// `[node] tempdir` (Tahoe's): where upload spools go (default: the system's temporary
    /// directory). Relative to the node directory.
    pub(crate) tempdir: Option<PathBuf>,
    /// `[client] mutable.format = sdmf | mdmf` (Tahoe's, default SDMF): the format of new mutable
    /// files made through the web API with `mutable=true` and no `format=`.
    pub(crate) mutable_format: filenode::cap::MutableFormat,
    /// `[client] peers.preferred` (Tahoe's): server ids (`v0-…`) put first on every permuted
    /// ring, so uploads place shares on them first and downloads ask them first.
    pub(crate) preferred_peers: Vec<String>,
}

/// The most server ids `[client] peers.preferred` takes (an introducer keeps as many servers).
pub(crate) const MAX_PREFERRED_PEERS: usize = 1000;
/// The longest server id `[client] peers.preferred` takes (a `v0-` id is 55 characters).
pub(crate) const MAX_SERVER_ID: usize = 128;

/// Parses `[client] peers.preferred`: comma-separated server ids (Tahoe's; blanks dropped), each
/// of visible ASCII, at most [`MAX_SERVER_ID`] long, at most [`MAX_PREFERRED_PEERS`] of them.
fn parse_preferred_peers(value: &str) -> Option<Vec<String>> {
    let ids: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    let valid = ids.len() <= MAX_PREFERRED_PEERS
        && ids
            .iter()
            .all(|id| id.len() <= MAX_SERVER_ID && id.bytes().all(|b| b.is_ascii_graphic()));
    valid.then_some(ids)
}

/// `[sftpd]`: the SFTP frontend of a client node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SftpdConfig {
    pub(crate) enabled: bool,
    /// `port`: Tahoe's `tcp:8022:interface=127.0.0.1`, or `HOST:PORT`.
    pub(crate) port: Endpoint,
    pub(crate) host_privkey_file: PathBuf,
    pub(crate) host_pubkey_file: PathBuf,
    pub(crate) accounts_file: PathBuf,
    /// `spool.quota` (default 10 GiB per user), `connection.max_sessions` (8),
    /// `session.max_handles` (256), `session.max_queued_bytes` (32 MiB),
    /// `connection.max_reading_ahead` (8). Tessera's keys.
    pub(crate) spool_quota: u64,
    pub(crate) max_sessions: usize,
    pub(crate) max_handles: usize,
    pub(crate) max_queued_bytes: u64,
    pub(crate) max_reading_ahead: usize,
}

impl SftpdConfig {
    /// The defaults, relative to the node directory.
    pub(crate) fn defaults(node_dir: &Path) -> Self {
        SftpdConfig {
            enabled: false,
            port: Endpoint {
                port: 8022,
                interface: "127.0.0.1".into(),
                tls: None,
            },
            host_privkey_file: node_dir.join("private").join("ssh_host_ed25519_key"),
            host_pubkey_file: node_dir.join("private").join("ssh_host_ed25519_key.pub"),
            accounts_file: node_dir.join("private").join("accounts"),
            spool_quota: frontends::sftp::DEFAULT_SPOOL_QUOTA,
            max_sessions: 8,
            max_handles: 256,
            max_queued_bytes: 32 << 20,
            max_reading_ahead: frontends::sftp::DEFAULT_MAX_READING_AHEAD,
        }
    }
}

/// Every key each section may hold. Tahoe keys that Tessera does not act on are listed in
/// [`crate::refused`] instead: setting one stops the node with a message saying why.
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "node",
        &[
            "nickname",
            "web.port",
            "web.static",
            "tub.port",
            "tub.location",
            "tempdir",
            "timeout.keepalive",
            "timeout.disconnect",
            "web.max_connections",
            "web.header_read_timeout",
            "web.spool.quota",
            "log_level",
            "log_format",
            "log_max_size",
            "log_keep",
        ],
    ),
    (
        "client",
        &[
            "introducer.furl",
            "helper.furl",
            "shares.needed",
            "shares.happy",
            "shares.total",
            "mutable.format",
            "peers.preferred",
            "convergence",
            "enabled",
        ],
    ),
    (
        "storage",
        &[
            "enabled",
            "anonymous",
            "readonly",
            "reserved_space",
            "max_space",
            "max_mutable_request",
            "request_memory",
            "upload.takeover_after",
            "upload.idle_timeout",
            "storage_dir",
            "expire.enabled",
            "expire.mode",
            "expire.override_lease_duration",
            "expire.cutoff_date",
            "expire.immutable",
            "expire.mutable",
        ],
    ),
    (
        "sftpd",
        &[
            "enabled",
            "port",
            "host_pubkey_file",
            "host_privkey_file",
            "accounts.file",
            "spool.quota",
            "connection.max_sessions",
            "session.max_handles",
            "session.max_queued_bytes",
            "connection.max_reading_ahead",
        ],
    ),
    (
        "ftpd",
        &[
            "enabled",
            "port",
            "passive_ports",
            "passive_host",
            "tls",
            "tls.certificate_file",
            "accounts.file",
            "idle_timeout",
            "spool.quota",
        ],
    ),
    ("webdav", &["enabled", "port", "accounts.file", "spool.quota"]),
    ("helper", &[]),
    ("connections", &[]),
];

impl NodeConfig {
    /// Reads and resolves `DIR/tahoe.cfg`.
    pub(crate) fn load(node_dir: &Path) -> anyhow::Result<Self> {
        let file = node_dir.join("tahoe.cfg");
        let text = frontends::textfile::read_bounded(&file, frontends::textfile::CONFIG_LIMIT)
            .with_context(|| format!("cannot read {}", file.display()))?;
        Self::from_ini(&parse_ini(&text, &file)?, node_dir, &file)
    }

    /// Resolves parsed sections, rejecting unknown sections and keys.
    pub(crate) fn from_ini(
        sections: &BTreeMap<String, RawSection>,
        node_dir: &Path,
        file: &Path,
    ) -> anyhow::Result<Self> {
        crate::refused::check(sections, file)?;
        for (section, entries) in sections {
            if crate::refused::refused_section(section).is_some() {
                continue;
            }
            let Some((_, keys)) = KNOWN_KEYS.iter().find(|(name, _)| name == section) else {
                bail!("{}: unknown section [{section}]", file.display());
            };
            for (key, (_, line)) in entries {
                if !keys.contains(&key.as_str()) && !crate::refused::is_refused_key(section, key) {
                    bail!(
                        "{}, line {line}: unknown key `{key}` in section [{section}]",
                        file.display()
                    );
                }
            }
        }
        let get = |section: &str, key: &str| -> Option<(&str, usize)> {
            sections
                .get(section)?
                .get(key)
                .map(|(v, l)| (v.as_str(), *l))
                .filter(|(v, _)| !v.is_empty())
        };
        let invalid = |section: &str, key: &str, line: usize, what: &str| {
            anyhow!(
                "{}, line {line}: [{section}] {key} must be {what}",
                file.display()
            )
        };
        let boolean = |section: &str, key: &str, default: bool| -> anyhow::Result<bool> {
            match get(section, key) {
                None => Ok(default),
                Some((v, line)) => parse_bool(v).ok_or_else(|| invalid(section, key, line, "true or false")),
            }
        };
        let size = |section: &str, key: &str| -> anyhow::Result<Option<u64>> {
            match get(section, key) {
                None => Ok(None),
                Some((v, line)) => parse_size(v)
                    .map(Some)
                    .ok_or_else(|| invalid(section, key, line, "a size such as 1G, 500MB or 2GiB")),
            }
        };
        let number = |key: &str, default: u16| -> anyhow::Result<u16> {
            match get("client", key) {
                None => Ok(default),
                Some((v, line)) => v
                    .parse()
                    .map_err(|_| invalid("client", key, line, "a number from 1 to 256")),
            }
        };
        let endpoint = |key: &str| -> anyhow::Result<Option<Endpoint>> {
            match get("node", key) {
                None => Ok(None),
                Some((v, line)) => Endpoint::parse(v).map(Some).ok_or_else(|| {
                    invalid(
                        "node",
                        key,
                        line,
                        "an endpoint such as tcp:3457:interface=127.0.0.1",
                    )
                }),
            }
        };

        let count = |section: &str, key: &str, default: usize| -> anyhow::Result<usize> {
            match get(section, key) {
                None => Ok(default),
                Some((v, line)) => v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(section, key, line, "a positive whole number")),
            }
        };
        let duration =
            |section: &str, key: &str, default: std::time::Duration| -> anyhow::Result<std::time::Duration> {
                match get(section, key) {
                    None => Ok(default),
                    Some((v, line)) => parse_duration(v)
                        .ok_or_else(|| invalid(section, key, line, "a duration such as 30s or 2min")),
                }
            };
        let positive_size = |section: &str, key: &str, default: u64| -> anyhow::Result<u64> {
            match size(section, key)? {
                Some(0) => Err(invalid(
                    section,
                    key,
                    get(section, key).map_or(0, |(_, l)| l),
                    "a size above zero",
                )),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        let web_defaults = frontends::web::ServeLimits::default();
        let web_limits = frontends::web::ServeLimits {
            max_connections: count("node", "web.max_connections", web_defaults.max_connections)?,
            header_read_timeout: duration(
                "node",
                "web.header_read_timeout",
                web_defaults.header_read_timeout,
            )?,
        };

        let shares_needed = number("shares.needed", 3)?;
        let shares_happy = number("shares.happy", 7)?;
        let shares_total = number("shares.total", 10)?;
        if shares_needed == 0
            || shares_needed > shares_total
            || shares_total > 256
            || shares_happy > shares_total
            || shares_happy < shares_needed
        {
            bail!(
                "{}: [client] needs 1 <= shares.needed <= shares.happy <= shares.total <= 256 \
                 (got {shares_needed}/{shares_happy}/{shares_total})",
                file.display()
            );
        }
        let expire_mode = match get("storage", "expire.mode") {
            None | Some(("age", _)) => ExpireMode::Age {
                override_lease_duration: match get("storage", "expire.override_lease_duration") {
                    None => None,
                    Some((v, line)) => Some(humantime::parse_duration(v).map_err(|_| {
                        invalid(
                            "storage",
                            "expire.override_lease_duration",
                            line,
                            "a duration such as 60 days",
                        )
                    })?),
                },
            },
            Some(("cutoff-date", line)) => {
                let (date, date_line) = get("storage", "expire.cutoff_date").ok_or_else(|| {
                    invalid(
                        "storage",
                        "expire.cutoff_date",
                        line,
                        "set when expire.mode = cutoff-date",
                    )
                })?;
                ExpireMode::CutoffDate(parse_date(date).ok_or_else(|| {
                    invalid("storage", "expire.cutoff_date", date_line, "a date YYYY-MM-DD")
                })?)
            }
            Some((_, line)) => return Err(invalid("storage", "expire.mode", line, "age or cutoff-date")),
        };
        let storage_dir = match get("storage", "storage_dir") {
            Some((dir, _)) => node_dir.join(dir),
            None => node_dir.join("storage"),
        };
        let mut sftp = SftpdConfig::defaults(node_dir);
        sftp.enabled = boolean("sftpd", "enabled", false)?;
        if let Some((v, line)) = get("sftpd", "port") {
            sftp.port = Endpoint::parse_listen(v).ok_or_else(|| {
                invalid(
                    "sftpd",
                    "port",
                    line,
                    "an endpoint such as tcp:8022:interface=127.0.0.1 or 127.0.0.1:8022",
                )
            })?;
        }
        for (key, slot) in [
            ("host_privkey_file", &mut sftp.host_privkey_file),
            ("host_pubkey_file", &mut sftp.host_pubkey_file),
            ("accounts.file", &mut sftp.accounts_file),
        ] {
            if let Some((v, _)) = get("sftpd", key) {
                *slot = node_dir.join(v);
            }
        }
        sftp.spool_quota = positive_size("sftpd", "spool.quota", sftp.spool_quota)?;
        sftp.max_sessions = count("sftpd", "connection.max_sessions", sftp.max_sessions)?;
        sftp.max_handles = count("sftpd", "session.max_handles", sftp.max_handles)?;
        sftp.max_queued_bytes = positive_size("sftpd", "session.max_queued_bytes", sftp.max_queued_bytes)?;
        sftp.max_reading_ahead = count("sftpd", "connection.max_reading_ahead", sftp.max_reading_ahead)?;
        let ftp_quota = positive_size("ftpd", "spool.quota", frontends::sftp::DEFAULT_SPOOL_QUOTA)?;
        let web_spool_quota = positive_size("node", "web.spool.quota", frontends::web::DEFAULT_SPOOL_QUOTA)?;
        let storage_enabled = boolean("storage", "enabled", true)?;
        let needs_a_port = |key: &str, line: usize| {
            anyhow!(
                "{}, line {line}: [node] {key} = disabled, but a storage server needs a port that \
                 clients reach: set [storage] enabled = false, or give {key} a value",
                file.display()
            )
        };
        let tub_port = match get("node", "tub.port") {
            Some((v, line)) if v.eq_ignore_ascii_case("disabled") => {
                if storage_enabled {
                    return Err(needs_a_port("tub.port", line));
                }
                None
            }
            _ => endpoint("tub.port")?,
        };
        let mut tub_location = Vec::new();
        match get("node", "tub.location") {
            None => {}
            Some((v, line)) if v.eq_ignore_ascii_case("disabled") && storage_enabled => {
                return Err(needs_a_port("tub.location", line));
            }
            Some((v, _)) if v.eq_ignore_ascii_case("disabled") => {}
            Some((v, line)) => {
                for hint in v.split(',').map(str::trim).filter(|hint| !hint.is_empty()) {
                    if hint.eq_ignore_ascii_case("AUTO") {
                        bail!(
                            "{}, line {line}: [node] tub.location = AUTO (guess this machine's addresses) is \
                             not supported: name the addresses clients should use, such as tcp:example.org:3457",
                            file.display()
                        );
                    }
                    if let Some(kind) = ["tor", "i2p"]
                        .into_iter()
                        .find(|k| hint.starts_with(&format!("{k}:")))
                    {
                        bail!(
                            "{}, line {line}: [node] tub.location has a {kind}: hint, which needs Tor or I2P, \
                             which Tessera does not support: give tcp:HOST:PORT hints only",
                            file.display()
                        );
                    }
                    tub_location.push(hint.trim_start_matches("tcp:").to_owned());
                }
            }
        }
        let log = {
            let defaults = crate::logging::LogConfig::default();
            crate::logging::LogConfig {
                level: match get("node", "log_level") {
                    None => None,
                    Some((v, line)) => {
                        crate::logging::valid_level(v).map_err(|why| {
                            invalid(
                                "node",
                                "log_level",
                                line,
                                &format!(
                                    "a level or filter such as info or debug,tessera::access=warn ({why})"
                                ),
                            )
                        })?;
                        Some(v.to_owned())
                    }
                },
                format: match get("node", "log_format") {
                    None => defaults.format,
                    Some((v, _)) if v.eq_ignore_ascii_case("text") => crate::logging::LogFormat::Text,
                    Some((v, _)) if v.eq_ignore_ascii_case("json") => crate::logging::LogFormat::Json,
                    Some((_, line)) => return Err(invalid("node", "log_format", line, "text or json")),
                },
                max_size: positive_size("node", "log_max_size", defaults.max_size)?,
                keep: match count("node", "log_keep", defaults.keep)? {
                    n if n <= crate::logging::MAX_KEEP => n,
                    _ => {
                        let line = get("node", "log_keep").map_or(0, |(_, l)| l);
                        return Err(invalid("node", "log_keep", line, "a whole number from 1 to 1000"));
                    }
                },
            }
        };
        Ok(NodeConfig {
            sftp,
            nickname: get("node", "nickname")
                .map(|(v, _)| v.to_owned())
                .unwrap_or_default(),
            web_port: match get("node", "web.port") {
                None => None,
                Some((v, line)) => {
                    Some(Endpoint::parse_web(v, node_dir, Endpoint::parse).ok_or_else(|| {
                        invalid(
                            "node",
                            "web.port",
                            line,
                            "an endpoint such as tcp:3456:interface=127.0.0.1, or \
                         ssl:3456:privateKey=KEY.pem:certKey=CERT.pem:interface=127.0.0.1",
                        )
                    })?)
                }
            },
            web_limits,
            web_spool_quota,
            tub_port,
            tub_location,
            shares_needed,
            shares_happy,
            shares_total,
            convergence: boolean("client", "convergence", true)?,
            client_enabled: boolean("client", "enabled", true)?,
            introducers: crate::introducer_config::resolve(
                node_dir,
                match get("client", "introducer.furl") {
                    None => None,
                    // Checked now, so that a Tahoe (Foolscap) FURL stops the node by name; the value
                    // is not repeated: its swissnum is a secret.
                    Some((v, line)) => match crate::introducer::parse_address(v) {
                        Ok(nurl) if nurl.scheme == storage::nurl::NurlScheme::Tor => {
                            bail!(
                                "{}, line {line}: [client] introducer.furl is a pb+tor:// address, which needs \
                             Tor, which Tessera does not support",
                                file.display()
                            );
                        }
                        Ok(nurl) => Some(nurl),
                        Err(_) => {
                            return Err(invalid(
                                "client",
                                "introducer.furl",
                                line,
                                "a Tessera introducer's address (pb://…#v=1, from its private/introducer.furl): \
                             Tahoe's Foolscap introducers are not supported",
                            ));
                        }
                    },
                },
            )?,
            storage_enabled,
            storage_dir,
            reserved_space: size("storage", "reserved_space")?.unwrap_or(0),
            max_space: size("storage", "max_space")?,
            readonly: boolean("storage", "readonly", false)?,
            storage_limits: {
                let defaults = storage::http::HttpLimits::default();
                storage::http::HttpLimits {
                    read_test_write_body: size("storage", "max_mutable_request")?
                        .unwrap_or(defaults.read_test_write_body),
                    request_memory: size("storage", "request_memory")?.unwrap_or(defaults.request_memory),
                }
            },
            timeouts: {
                let seconds = |key: &str| -> anyhow::Result<Option<Duration>> {
                    match get("node", key) {
                        None => Ok(None),
                        Some((v, line)) => v
                            .trim()
                            .parse::<u64>()
                            .ok()
                            .filter(|n| *n > 0)
                            .map(|n| Some(Duration::from_secs(n)))
                            .ok_or_else(|| {
                                invalid("node", key, line, "a whole number of seconds above zero")
                            }),
                    }
                };
                let defaults = crate::client::Timeouts::default();
                crate::client::Timeouts {
                    keepalive: seconds("timeout.keepalive")?.unwrap_or(defaults.keepalive),
                    disconnect: seconds("timeout.disconnect")?,
                }
            },
            upload_takeover_after: duration(
                "storage",
                "upload.takeover_after",
                storage::server::UPLOAD_TAKEOVER_AFTER,
            )?,
            upload_idle_timeout: duration(
                "storage",
                "upload.idle_timeout",
                storage::server::UPLOAD_IDLE_TIMEOUT,
            )?,
            expire: ExpireConfig {
                enabled: boolean("storage", "expire.enabled", false)?,
                mode: expire_mode,
                immutable: boolean("storage", "expire.immutable", true)?,
                mutable: boolean("storage", "expire.mutable", true)?,
            },
            ftp: FtpdConfig {
                spool_quota: ftp_quota,
                ..FtpdConfig::resolve(node_dir, &get, &invalid, boolean("ftpd", "enabled", false)?)?
            },
            webdav: WebdavConfig {
                spool_quota: positive_size("webdav", "spool.quota", frontends::sftp::DEFAULT_SPOOL_QUOTA)?,
                ..WebdavConfig::resolve(node_dir, &get, &invalid, boolean("webdav", "enabled", false)?)?
            },
            log,
            web_static: match get("node", "web.static") {
                None => node_dir.join("public_html"),
                // Tahoe expands `~` (this user's home); `~username` is not supported.
                Some((v, line)) if v.starts_with('~') => {
                    match (v.strip_prefix('~'), std::env::var_os("HOME")) {
                        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                            PathBuf::from(home).join(rest.trim_start_matches('/'))
                        }
                        _ => {
                            return Err(invalid(
                                "node",
                                "web.static",
                                line,
                                "a directory (~username is not supported: give its path)",
                            ));
                        }
                    }
                }
                Some((v, _)) => node_dir.join(v),
            },
            tempdir: get("node", "tempdir").map(|(v, _)| node_dir.join(v)),
            mutable_format: match get("client", "mutable.format") {
                None => filenode::cap::MutableFormat::Sdmf,
                Some((v, _)) if v.eq_ignore_ascii_case("sdmf") => filenode::cap::MutableFormat::Sdmf,
                Some((v, _)) if v.eq_ignore_ascii_case("mdmf") => filenode::cap::MutableFormat::Mdmf,
                Some((_, line)) => return Err(invalid("client", "mutable.format", line, "sdmf or mdmf")),
            },
            preferred_peers: match get("client", "peers.preferred") {
                None => Vec::new(),
                Some((v, line)) => parse_preferred_peers(v).ok_or_else(|| {
                    invalid(
                        "client",
                        "peers.preferred",
                        line,
                        &format!(
                            "a comma-separated list of server ids such as v0-… (at most \
                             {MAX_PREFERRED_PEERS}, each at most {MAX_SERVER_ID} characters without spaces)"
                        ),
                    )
                })?,
            },
        })
    }
}

/// `[ftpd]`: the FTP frontend of a client node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FtpdConfig {
    pub(crate) enabled: bool,
    /// `port`: `HOST:PORT` or Tahoe's `tcp:8021:interface=127.0.0.1` (default 127.0.0.1:8021).
    pub(crate) port: Endpoint,
    /// `passive_ports = LOW-HIGH` (default 49152-65535).
    pub(crate) passive_ports: std::ops::RangeInclusive<u16>,
    /// `passive_host`: the IPv4 address PASV announces (default: the control connection's).
    pub(crate) passive_host: Option<std::net::Ipv4Addr>,
    /// `tls = required|optional|off` (default: required unless `port` is on loopback).
    pub(crate) tls: FtpTls,
    /// `tls.certificate_file`: PEM with the certificate and its private key (default
    /// `private/ftpd.pem`, made by create-node, or at the first start if missing).
    pub(crate) certificate_file: PathBuf,
    /// `accounts.file` (default `private/accounts`, shared with `[sftpd]`).
    pub(crate) accounts_file: PathBuf,
    /// `idle_timeout`: sessions idle this long are closed (default 10 minutes).
    pub(crate) idle_timeout: std::time::Duration,
    /// `spool.quota` (Tessera's): bytes of uploads in progress per user (default 10 GiB).
    pub(crate) spool_quota: u64,
}

/// `[ftpd] tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FtpTls {
    Required,
    Optional,
    Off,
}

/// Whether an interface name is a loopback address.
pub(crate) fn is_loopback(interface: &str) -> bool {
    interface == "localhost"
        || interface
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A key's value and line (`get` of [`NodeConfig::from_ini`]).
type Lookup<'a> = dyn Fn(&str, &str) -> Option<(&'a str, usize)> + 'a;

/// `[section] port`: `HOST:PORT` or Tahoe's `tcp:PORT:interface=HOST`; `127.0.0.1:default_port`
/// when absent.
fn listen_port(
    get: &Lookup<'_>,
    invalid: &dyn Fn(&str, &str, usize, &str) -> anyhow::Error,
    section: &str,
    default_port: u16,
) -> anyhow::Result<Endpoint> {
    match get(section, "port") {
        None => Ok(Endpoint {
            port: default_port,
            interface: "127.0.0.1".into(),
            tls: None,
        }),
        Some((v, line)) => Endpoint::parse_listen(v)
            .ok_or_else(|| invalid(section, "port", line, "HOST:PORT or tcp:PORT:interface=HOST")),
    }
}

impl FtpdConfig {
    fn resolve<'a>(
        node_dir: &Path,
        get: &Lookup<'a>,
        invalid: &dyn Fn(&str, &str, usize, &str) -> anyhow::Error,
        enabled: bool,
    ) -> anyhow::Result<Self> {
        let port = listen_port(get, invalid, "ftpd", 8021)?;
        let passive_ports = match get("ftpd", "passive_ports") {
            None => 49152..=65535,
            Some((v, line)) => v
                .split_once('-')
                .and_then(|(low, high)| {
                    Some((low.trim().parse::<u16>().ok()?, high.trim().parse::<u16>().ok()?))
                })
                .filter(|(low, high)| *low > 0 && low <= high)
                .map(|(low, high)| low..=high)
                .ok_or_else(|| invalid("ftpd", "passive_ports", line, "a port range such as 50000-50100"))?,
        };
        let passive_host = match get("ftpd", "passive_host") {
            None => None,
            Some((v, line)) => Some(
                v.parse()
                    .map_err(|_| invalid("ftpd", "passive_host", line, "an IPv4 address"))?,
            ),
        };
        let tls = match get("ftpd", "tls") {
            None if is_loopback(&port.interface) => FtpTls::Optional,
            None | Some(("required", _)) => FtpTls::Required,
            Some(("optional", _)) => FtpTls::Optional,
            Some(("off", _)) => FtpTls::Off,
            Some((_, line)) => return Err(invalid("ftpd", "tls", line, "required, optional or off")),
        };
        let idle_timeout = match get("ftpd", "idle_timeout") {
            None => std::time::Duration::from_secs(600),
            Some((v, line)) => humantime::parse_duration(v)
                .or_else(|_| v.parse::<u64>().map(std::time::Duration::from_secs))
                .ok()
                .filter(|d| d.as_secs() > 0)
                .ok_or_else(|| {
                    invalid(
                        "ftpd",
                        "idle_timeout",
                        line,
                        "a duration such as 10min or 600 (seconds)",
                    )
                })?,
        };
        let path = |key: &str, default: &str| match get("ftpd", key) {
            Some((v, _)) => node_dir.join(v),
            None => node_dir.join("private").join(default),
        };
        Ok(FtpdConfig {
            enabled,
            port,
            passive_ports,
            passive_host,
            tls,
            certificate_file: path("tls.certificate_file", "ftpd.pem"),
            accounts_file: path("accounts.file", "accounts"),
            idle_timeout,
            spool_quota: frontends::sftp::DEFAULT_SPOOL_QUOTA,
        })
    }
}

/// `[webdav]`: the WebDAV frontend of a client node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebdavConfig {
    pub(crate) enabled: bool,
    /// `port`: `HOST:PORT` or Tahoe's `tcp:8080:interface=127.0.0.1` (default 127.0.0.1:8080), or
    /// `ssl:8080:privateKey=KEY.pem:certKey=CERT.pem:interface=HOST` for WebDAV over TLS (as
    /// `[node] web.port`).
    pub(crate) port: Endpoint,
    /// `accounts.file` (default `private/accounts`, shared with `[sftpd]` and `[ftpd]`).
    pub(crate) accounts_file: PathBuf,
    /// `spool.quota` (Tessera's): bytes of uploads in progress per user (default 10 GiB).
    pub(crate) spool_quota: u64,
}

impl WebdavConfig {
    fn resolve<'a>(
        node_dir: &Path,
        get: &Lookup<'a>,
        invalid: &dyn Fn(&str, &str, usize, &str) -> anyhow::Error,
        enabled: bool,
    ) -> anyhow::Result<Self> {
        let port = match get("webdav", "port") {
            Some((v, line)) => Endpoint::parse_web(v, node_dir, Endpoint::parse_listen).ok_or_else(|| {
                invalid(
                    "webdav",
                    "port",
                    line,
                    "HOST:PORT, tcp:PORT:interface=HOST or \
                     ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem:interface=HOST",
                )
            })?,
            None => listen_port(get, invalid, "webdav", 8080)?,
        };
        let accounts_file = match get("webdav", "accounts.file") {
            Some((v, _)) => node_dir.join(v),
            None => node_dir.join("private").join("accounts"),
        };
        Ok(WebdavConfig {
            enabled,
            port,
            accounts_file,
            spool_quota: frontends::sftp::DEFAULT_SPOOL_QUOTA,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_preferred_is_a_bounded_list_of_server_ids() {
        let config = load("[client]\npeers.preferred = v0-aaa, v0-bbb ,,\n").unwrap();
        assert_eq!(config.preferred_peers, ["v0-aaa", "v0-bbb"]);
        assert!(load("[client]\n").unwrap().preferred_peers.is_empty());
        let too_many = vec!["v0-x"; MAX_PREFERRED_PEERS + 1].join(",");
        let long = format!("v0-{}", "a".repeat(MAX_SERVER_ID));
        for bad in [too_many.as_str(), long.as_str(), "v0-a b, v0-c"] {
            let error = load(&format!("[client]\npeers.preferred = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("[client] peers.preferred must be a comma-separated list of server ids"),
                "{error}"
            );
        }
    }

    fn load(text: &str) -> anyhow::Result<NodeConfig> {
        let file = Path::new("/n/tahoe.cfg");
        NodeConfig::from_ini(&parse_ini(text, file)?, Path::new("/n"), file)
    }

    #[test]
    fn a_cutoff_date_with_a_huge_year_is_an_error_not_an_overflow() {
        for year in ["9223372036854775807", "10000", "1969", "-5"] {
            let text = format!(
                "[storage]\nexpire.enabled = true\nexpire.mode = cutoff-date\nexpire.cutoff_date = {year}-01-31\n"
            );
            let error = load(&text).expect_err("a year out of range is refused");
            assert!(format!("{error:#}").contains("cutoff_date"), "{error:#}");
        }
        assert!(load("[storage]\nexpire.mode = cutoff-date\nexpire.cutoff_date = 2024-01-31\n").is_ok());
    }

    #[test]
    fn timeout_and_upload_keys() {
        let config = load("[node]\nnickname = x\n").unwrap();
        assert_eq!(config.timeouts.keepalive, Duration::from_secs(240));
        assert_eq!(config.timeouts.disconnect, None);
        assert_eq!(config.upload_takeover_after, Duration::from_secs(20));
        assert_eq!(config.upload_idle_timeout, Duration::from_secs(300));
        assert_eq!(config.mutable_format, filenode::cap::MutableFormat::Sdmf);
        assert_eq!(config.web_static, Path::new("/n/public_html"));
        assert_eq!(config.tempdir, None);
        let config = load("[node]\nweb.static = /srv/www\ntempdir = spool\n").unwrap();
        assert_eq!(config.web_static, Path::new("/srv/www"));
        assert_eq!(config.tempdir.as_deref(), Some(Path::new("/n/spool")));
        if let Some(home) = std::env::var_os("HOME") {
            let config = load("[node]\nweb.static = ~/www\n").unwrap();
            assert_eq!(config.web_static, Path::new(&home).join("www"));
        }
        let err = load("[node]\nweb.static = ~bob/www\n").unwrap_err().to_string();
        assert!(
            err.contains("[node] web.static must be a directory (~username"),
            "{err}"
        );
        assert_eq!(
            load("[client]\nmutable.format = MDMF\n").unwrap().mutable_format,
            filenode::cap::MutableFormat::Mdmf
        );
        assert!(
            load("[client]\nmutable.format = ldmf\n")
                .unwrap_err()
                .to_string()
                .contains("[client] mutable.format must be sdmf or mdmf")
        );
        let config = load(
            "[node]\ntimeout.keepalive = 60\ntimeout.disconnect = 1800\n\
             [storage]\nupload.takeover_after = 5s\nupload.idle_timeout = 2min\n",
        )
        .unwrap();
        assert_eq!(config.timeouts.keepalive, Duration::from_secs(60));
        assert_eq!(config.timeouts.disconnect, Some(Duration::from_secs(1800)));
        assert_eq!(config.upload_takeover_after, Duration::from_secs(5));
        assert_eq!(config.upload_idle_timeout, Duration::from_secs(120));
        // Tahoe's keys are whole seconds.
        for bad in [
            "timeout.keepalive = 4min",
            "timeout.disconnect = 0",
            "timeout.disconnect = -1",
        ] {
            let error = load(&format!("[node]\n{bad}\n")).expect_err(bad);
            assert!(
                format!("{error:#}").contains("whole number of seconds"),
                "{error:#}"
            );
        }
        assert!(load("[storage]\nupload.takeover_after = soon\n").is_err());
    }

    /// Tahoe's `ssl:` endpoint (Twisted's) for the web ports: files resolved against the node
    /// directory, `certKey` defaulting to `privateKey`, `port=` and escaped colons; storage's
    /// `tub.port` and the FTP/SFTP ports stay plain; anything else in an `ssl:` endpoint is refused.
    #[test]
    fn web_ports_take_tahoes_ssl_endpoint() {
        let config = load(
            "[node]\nweb.port = ssl:3456:privateKey=private/web.key:certKey=/etc/web.crt:interface=127.0.0.1\n\
             [webdav]\nport = ssl:port=0:privateKey=both.pem:extraCertChain=chain\\:1.pem\n",
        )
        .unwrap();
        let web = config.web_port.unwrap();
        assert_eq!(web.socket_address(), "127.0.0.1:3456");
        assert_eq!(web.scheme(), "https");
        assert_eq!(
            web.tls,
            Some(TlsFiles {
                private_key: "/n/private/web.key".into(),
                certificate: "/etc/web.crt".into(),
                extra_chain: None,
            })
        );
        let dav = config.webdav.port;
        assert_eq!(
            (dav.port, dav.interface.as_str(), dav.scheme()),
            (0, "0.0.0.0", "https")
        );
        assert_eq!(
            dav.tls,
            Some(TlsFiles {
                private_key: "/n/both.pem".into(),
                certificate: "/n/both.pem".into(),
                extra_chain: Some("/n/chain:1.pem".into()),
            })
        );
        let plain = load("[node]\nweb.port = tcp:3456\n[webdav]\nport = [::1]:8080\n").unwrap();
        assert_eq!(plain.web_port.unwrap().scheme(), "http");
        assert_eq!(plain.webdav.port.tls, None);
        assert_eq!(plain.webdav.port.socket_address(), "[::1]:8080");
        for (text, needle) in [
            ("[node]\nweb.port = ssl:3456\n", "[node] web.port must be"),
            (
                "[node]\nweb.port = ssl:3456:certKey=c.pem\n",
                "[node] web.port must be",
            ),
            (
                "[node]\nweb.port = ssl:privateKey=k.pem\n",
                "[node] web.port must be",
            ),
            (
                "[node]\nweb.port = ssl:3456:privateKey=k.pem:sslmethod=TLSv1\n",
                "[node] web.port must be",
            ),
            (
                "[node]\nweb.port = ssl:3456:privateKey=k.pem:privateKey=j.pem\n",
                "[node] web.port must be",
            ),
            (
                "[node]\nweb.port = ssl:99999:privateKey=k.pem\n",
                "[node] web.port must be",
            ),
            (
                "[node]\nweb.port = ssl:3456:privateKey=\n",
                "[node] web.port must be",
            ),
            (
                "[webdav]\nport = ssl:8080:interface=127.0.0.1\n",
                "[webdav] port must be",
            ),
            (
                "[node]\ntub.port = ssl:3457:privateKey=k.pem\n",
                "[node] tub.port must be",
            ),
            ("[ftpd]\nport = ssl:21:privateKey=k.pem\n", "[ftpd] port must be"),
        ] {
            let error = format!("{:#}", load(text).expect_err(text));
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn webdav_defaults_and_keys() {
        let config = load("[node]\nnickname = x\n").unwrap();
        assert!(!config.webdav.enabled);
        assert_eq!(config.webdav.port.socket_address(), "127.0.0.1:8080");
        assert_eq!(config.webdav.accounts_file, Path::new("/n/private/accounts"));
        assert_eq!(config.webdav.spool_quota, frontends::sftp::DEFAULT_SPOOL_QUOTA);
        let config = load(
            "[webdav]\nenabled = true\nport = tcp:0:interface=127.0.0.1\naccounts.file = dav-users\n\
             spool.quota = 1MiB\n",
        )
        .unwrap();
        assert!(config.webdav.enabled);
        assert_eq!(config.webdav.port.socket_address(), "127.0.0.1:0");
        assert_eq!(config.webdav.accounts_file, Path::new("/n/dav-users"));
        assert_eq!(config.webdav.spool_quota, 1 << 20);
        for (text, key) in [
            ("[webdav]\nenabled = maybe\n", "[webdav] enabled"),
            ("[webdav]\nport = nowhere\n", "[webdav] port must be"),
            ("[webdav]\nspool.quota = 0\n", "[webdav] spool.quota"),
            ("[webdav]\ntls = on\n", "unknown key `tls`"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn ftpd_defaults_and_keys() {
        let config = load("[node]\nnickname = x\n").unwrap();
        assert!(!config.ftp.enabled);
        assert_eq!(config.ftp.port.socket_address(), "127.0.0.1:8021");
        assert_eq!(config.ftp.tls, FtpTls::Optional, "loopback: TLS offered");
        assert_eq!(config.ftp.accounts_file, Path::new("/n/private/accounts"));
        assert_eq!(config.ftp.certificate_file, Path::new("/n/private/ftpd.pem"));
        assert_eq!(config.ftp.passive_ports, 49152..=65535);
        let config = load(
            "[ftpd]\nenabled = true\nport = 0.0.0.0:2121\npassive_ports = 50000-50010\n\
             passive_host = 192.0.2.7\nidle_timeout = 30s\ntls.certificate_file = ftp.pem\n",
        )
        .unwrap();
        assert!(config.ftp.enabled);
        assert_eq!(config.ftp.port.port, 2121);
        assert_eq!(config.ftp.tls, FtpTls::Required, "beyond loopback: TLS required");
        assert_eq!(config.ftp.passive_ports, 50000..=50010);
        assert_eq!(config.ftp.passive_host, Some([192, 0, 2, 7].into()));
        assert_eq!(config.ftp.idle_timeout.as_secs(), 30);
        assert_eq!(config.ftp.certificate_file, Path::new("/n/ftp.pem"));
        let config = load("[ftpd]\nport = tcp:0:interface=0.0.0.0\ntls = off\n").unwrap();
        assert_eq!((config.ftp.port.port, config.ftp.tls), (0, FtpTls::Off));
        for (text, key) in [
            ("[ftpd]\ntls = maybe\n", "[ftpd] tls must be"),
            ("[ftpd]\npassive_ports = 9-1\n", "[ftpd] passive_ports must be"),
            ("[ftpd]\nport = nowhere\n", "[ftpd] port must be"),
            ("[ftpd]\nanonymous = true\n", "unknown key `anonymous`"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn sizes_as_tahoe_writes_them() {
        assert_eq!(parse_size("1G"), Some(1_000_000_000));
        assert_eq!(parse_size("100MB"), Some(100_000_000));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1 G"), Some(1_000_000_000));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("5kB"), Some(5000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("1X"), None);
    }

    #[test]
    fn dates_are_utc_midnight() {
        let t = parse_date("2024-01-01").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_704_067_200
        );
        assert!(parse_date("2024-13-01").is_none());
    }

    #[test]
    fn a_full_config_resolves() {
        let config = load(
            "# comment\n[node]\nnickname = alpha\ntub.port = tcp:3457:interface=127.0.0.1\n\
             tub.location = tcp:example.org:3457\nweb.port = tcp:3456:interface=127.0.0.1\n\n\
             [client]\nshares.needed: 2\nshares.happy = 3\nshares.total = 4\n\n\
             [storage]\nenabled = true\nreserved_space = 1G\nmax_space = 10GiB\nreadonly = false\n\
             expire.enabled = true\nexpire.mode = cutoff-date\nexpire.cutoff_date = 2024-01-01\n",
        )
        .unwrap();
        assert_eq!(config.nickname, "alpha");
        assert_eq!(
            config.tub_port,
            Some(Endpoint {
                port: 3457,
                interface: "127.0.0.1".into(),
                tls: None,
            })
        );
        assert_eq!(config.tub_location, vec!["example.org:3457".to_owned()]);
        assert_eq!(
            (config.shares_needed, config.shares_happy, config.shares_total),
            (2, 3, 4)
        );
        assert_eq!(config.reserved_space, 1_000_000_000);
        assert_eq!(config.max_space, Some(10 << 30));
        assert_eq!(config.storage_dir, Path::new("/n/storage"));
        assert!(config.expire.enabled);
        assert!(matches!(config.expire.mode, ExpireMode::CutoffDate(_)));
    }

    #[test]
    fn storage_request_limits_default_and_resolve() {
        let config = load("[storage]\nenabled = true\n").unwrap();
        assert_eq!(config.storage_limits, storage::http::HttpLimits::default());
        let config = load("[storage]\nmax_mutable_request = 64MiB\nrequest_memory = 512MiB\n").unwrap();
        assert_eq!(config.storage_limits.read_test_write_body, 64 << 20);
        assert_eq!(config.storage_limits.request_memory, 512 << 20);
        let err = load("[storage]\nrequest_memory = plenty\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("request_memory must be a size"), "{err}");
    }

    /// Issue 13: `tahoe.cfg` is read only up to `CONFIG_LIMIT`; a larger file is refused by name.
    #[test]
    fn an_oversized_tahoe_cfg_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = "[node]\nnickname = x\n".to_owned();
        while (text.len() as u64) <= frontends::textfile::CONFIG_LIMIT {
            text.push_str("# padding padding padding padding padding padding padding padding\n");
        }
        std::fs::write(dir.path().join("tahoe.cfg"), &text).unwrap();
        let err = format!("{:#}", NodeConfig::load(dir.path()).unwrap_err());
        assert!(
            err.contains("tahoe.cfg") && err.contains("larger than 1048576 bytes"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_sections_are_named() {
        let err = load("[storage]\nenabled = true\nreserved_spaec = 1G\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key `reserved_spaec`") && err.contains("/n/tahoe.cfg, line 3"),
            "{err}"
        );
        let err = load("[nodes]\n").unwrap_err().to_string();
        assert!(err.contains("unknown section [nodes]"), "{err}");
        let err = load("[storage]\nreserved_space = lots\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserved_space must be a size"), "{err}");
        let err = load("[client]\nshares.needed = 11\n").unwrap_err().to_string();
        assert!(err.contains("shares.happy <= shares.total"), "{err}");
        let err = load("nickname = x\n").unwrap_err().to_string();
        assert!(err.contains("before any [section]"), "{err}");
    }

    #[test]
    fn sftpd_defaults_and_keys() {
        let config = load("[node]\nnickname = x\n").unwrap();
        assert!(!config.sftp.enabled);
        assert_eq!(config.sftp.port.socket_address(), "127.0.0.1:8022");
        assert_eq!(config.sftp.accounts_file, Path::new("/n/private/accounts"));
        let config = load(
            "[sftpd]\nenabled = true\nport = tcp:0:interface=127.0.0.1\naccounts.file = private/users\n\
             host_privkey_file = private/key\nhost_pubkey_file = private/key.pub\n",
        )
        .unwrap();
        assert!(config.sftp.enabled);
        assert_eq!(config.sftp.port.port, 0);
        assert_eq!(config.sftp.accounts_file, Path::new("/n/private/users"));
        assert_eq!(config.sftp.host_privkey_file, Path::new("/n/private/key"));
        assert_eq!(
            load("[sftpd]\nport = 127.0.0.1:2222\n").unwrap().sftp.port.port,
            2222
        );
        let err = load("[sftpd]\nport = nowhere\n").unwrap_err().to_string();
        assert!(err.contains("[sftpd] port must be"), "{err}");
        let err = load("[sftpd]\npassword = x\n").unwrap_err().to_string();
        assert!(err.contains("unknown key `password`"), "{err}");
    }

    #[test]
    fn gateway_bounds_have_defaults_keys_and_errors() {
        let config = load("[node]\nnickname = x\n").unwrap();
        assert_eq!(config.web_limits, frontends::web::ServeLimits::default());
        assert_eq!(config.sftp.spool_quota, 10 << 30);
        assert_eq!(config.ftp.spool_quota, 10 << 30);
        assert_eq!(config.web_spool_quota, 10 << 30);
        assert_eq!(
            (
                config.sftp.max_sessions,
                config.sftp.max_handles,
                config.sftp.max_queued_bytes
            ),
            (8, 256, 32 << 20)
        );
        let config = load(
            "[node]\nweb.max_connections = 20\nweb.header_read_timeout = 5s\nweb.spool.quota = 2GiB\n\
             [sftpd]\nspool.quota = 1GiB\nconnection.max_sessions = 2\nsession.max_handles = 16\n\
             session.max_queued_bytes = 4MiB\nconnection.max_reading_ahead = 3\n[ftpd]\nspool.quota = 500MB\n",
        )
        .unwrap();
        assert_eq!(config.web_limits.max_connections, 20);
        assert_eq!(config.web_limits.header_read_timeout.as_secs(), 5);
        assert_eq!(config.web_spool_quota, 2 << 30);
        assert_eq!(config.sftp.spool_quota, 1 << 30);
        assert_eq!((config.sftp.max_sessions, config.sftp.max_handles), (2, 16));
        assert_eq!(config.sftp.max_queued_bytes, 4 << 20);
        assert_eq!(config.sftp.max_reading_ahead, 3);
        assert_eq!(config.ftp.spool_quota, 500_000_000);
        for (text, message) in [
            (
                "[node]\nweb.max_connections = 0\n",
                "[node] web.max_connections must be a positive",
            ),
            (
                "[node]\nweb.header_read_timeout = soon\n",
                "[node] web.header_read_timeout must be a duration",
            ),
            (
                "[node]\nweb.spool.quota = 0\n",
                "[node] web.spool.quota must be a size above zero",
            ),
            (
                "[sftpd]\nspool.quota = 0\n",
                "[sftpd] spool.quota must be a size above zero",
            ),
            (
                "[ftpd]\nspool.quota = lots\n",
                "[ftpd] spool.quota must be a size",
            ),
            (
                "[sftpd]\nconnection.max_sessions = -1\n",
                "[sftpd] connection.max_sessions must be",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(message), "{text}: {err}");
        }
    }

    #[test]
    fn age_mode_takes_a_duration() {
        let config = load(
            "[storage]\nexpire.enabled = true\nexpire.mode = age\nexpire.override_lease_duration = 60 days\n",
        )
        .unwrap();
        assert_eq!(
            config.expire.mode,
            ExpireMode::Age {
                override_lease_duration: Some(Duration::from_secs(60 * 86_400))
            }
        );
    }
}
