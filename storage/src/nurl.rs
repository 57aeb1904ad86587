//! NURLs: the addresses of HTTPS storage servers (tahoe-interfaces.md §1.2).
//!
//! The only form Tahoe-LAFS produces (and the only one accepted here) is
//!
//! ```text
//! pb://<SPKI-HASH>@<host>:<port>/<SWISSNUM>#v=1
//! ```
//!
//! - `SPKI-HASH`: 43 characters of unpadded URL-safe base64 (the TLS key pin, see [`crate::tls`]);
//! - `host`: a DNS name, an IPv4 address, or an IPv6 address in brackets;
//! - `port`: decimal, required;
//! - `SWISSNUM`: the shared secret that authorizes requests (never logged, never in `Debug`);
//! - `#v=1`: marks an HTTP (version 1) NURL, as opposed to a Foolscap fURL.
//!
//! The `pb+tor` scheme is parsed (and kept: [`NurlScheme::Tor`]) so announcements carrying it can be
//! read, but [`crate::http::client::HttpStorageClient`] refuses to dial it: Tessera has no Tor support.

use std::fmt;
use std::str::FromStr;

use rand::RngExt;

use crate::tls::{SPKI_HASH_LEN, decode_spki_hash};

/// How a NURL is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NurlScheme {
    /// `pb://`: plain TCP, then TLS.
    Tcp,
    /// `pb+tor://`: through Tor (not dialled by Tessera).
    Tor,
}

impl NurlScheme {
    fn prefix(self) -> &'static str {
        match self {
            NurlScheme::Tcp => "pb://",
            NurlScheme::Tor => "pb+tor://",
        }
    }
}

/// A parsed NURL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Nurl {
    /// `pb` or `pb+tor`.
    pub scheme: NurlScheme,
    /// The pinned SPKI hash (43 characters).
    pub spki_hash: String,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The swissnum (a secret).
    pub swissnum: String,
}

impl fmt::Debug for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nurl")
            .field("scheme", &self.scheme)
            .field("spki_hash", &self.spki_hash)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("swissnum", &"..")
            .finish()
    }
}

impl Nurl {
    /// A plain-TCP NURL.
    pub fn new(
        spki_hash: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        swissnum: impl Into<String>,
    ) -> Self {
        Nurl {
            scheme: NurlScheme::Tcp,
            spki_hash: spki_hash.into(),
            host: host.into(),
            port,
            swissnum: swissnum.into(),
        }
    }

    /// `host:port`, with brackets around an IPv6 host (the HTTP `Host` header form).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Nurl {
    /// Prints the full NURL, swissnum included: this is the NURL's only textual form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}@{}/{}#v=1",
            self.scheme.prefix(),
            self.spki_hash,
            self.authority(),
            self.swissnum
        )
    }
}

/// Why a string is not a NURL; each variant names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNurlError {
    /// Not `pb://` or `pb+tor://`.
    #[error("NURL scheme must be pb:// or pb+tor://, got {0:?}")]
    Scheme(String),
    /// The fragment is missing or not `v=1` (e.g. a Foolscap fURL).
    #[error("NURL must end in #v=1 (an HTTP storage NURL), got {0:?}")]
    Version(String),
    /// No `@` between the SPKI hash and the host.
    #[error("NURL has no '@' between the SPKI hash and the host")]
    MissingAt,
    /// The SPKI hash is not 43 characters of unpadded URL-safe base64.
    #[error("NURL SPKI hash {0:?} is not {SPKI_HASH_LEN} characters of unpadded URL-safe base64")]
    SpkiHash(String),
    /// No `/` between `host:port` and the swissnum.
    #[error("NURL has no '/' before the swissnum")]
    MissingPath,
    /// The host is empty or malformed.
    #[error("NURL host {0:?} is invalid")]
    Host(String),
    /// The port is missing or not a number in 1..=65535.
    #[error("NURL port {0:?} is invalid (a number in 1..=65535 is required)")]
    Port(String),
    /// The swissnum is empty or has characters outside `[A-Za-z0-9._~-]`.
    #[error("NURL swissnum is empty or has characters outside [A-Za-z0-9._~-]")]
    Swissnum,
}

impl FromStr for Nurl {
    type Err = ParseNurlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("pb://") {
            (NurlScheme::Tcp, rest)
        } else if let Some(rest) = text.strip_prefix("pb+tor://") {
            (NurlScheme::Tor, rest)
        } else {
            let shown = text.split("://").next().unwrap_or(text);
            return Err(ParseNurlError::Scheme(shown.chars().take(16).collect()));
        };
        let (rest, fragment) = match rest.rsplit_once('#') {
            Some((rest, fragment)) => (rest, fragment),
            None => return Err(ParseNurlError::Version(String::new())),
        };
        if fragment != "v=1" {
            return Err(ParseNurlError::Version(fragment.chars().take(16).collect()));
        }
        let (spki_hash, rest) = rest.split_once('@').ok_or(ParseNurlError::MissingAt)?;
        if decode_spki_hash(spki_hash).is_none() {
            return Err(ParseNurlError::SpkiHash(spki_hash.chars().take(64).collect()));
        }
        let (authority, swissnum) = rest.split_once('/').ok_or(ParseNurlError::MissingPath)?;
        let (host, port) = split_authority(authority)?;
        if swissnum.is_empty()
            || !swissnum
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            return Err(ParseNurlError::Swissnum);
        }
        Ok(Nurl {
            scheme,
            spki_hash: spki_hash.to_owned(),
            host,
            port,
            swissnum: swissnum.to_owned(),
        })
    }
}

fn split_authority(authority: &str) -> Result<(String, u16), ParseNurlError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| ParseNurlError::Host(authority.to_owned()))?;
        if host.is_empty() || host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(ParseNurlError::Host(host.to_owned()));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| ParseNurlError::Port(after.to_owned()))?;
        (host, port)
    } else {
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| ParseNurlError::Port(String::new()))?;
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err(ParseNurlError::Host(host.to_owned()));
        }
        (host, port)
    };
    let port_number = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        port.parse::<u16>().ok().filter(|p| *p != 0)
    } else {
        None
    };
    let port_number = port_number.ok_or_else(|| ParseNurlError::Port(port.to_owned()))?;
    Ok((host.to_owned(), port_number))
}

/// A fresh random swissnum: 32 characters of Tahoe base32 (160 bits), the shape Tahoe generates.
pub fn generate_swissnum() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    crate::base32::encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn round_trip() {
        let text = format!("pb://{HASH}@127.0.0.1:34399/swissnum123#v=1");
        let nurl: Nurl = text.parse().unwrap();
        assert_eq!(nurl.scheme, NurlScheme::Tcp);
        assert_eq!(nurl.spki_hash, HASH);
        assert_eq!(nurl.host, "127.0.0.1");
        assert_eq!(nurl.port, 34399);
        assert_eq!(nurl.swissnum, "swissnum123");
        assert_eq!(nurl.to_string(), text);
        assert!(!format!("{nurl:?}").contains("swissnum123"));
    }

    #[test]
    fn ipv6_and_dns_hosts() {
        let nurl: Nurl = format!("pb://{HASH}@[::1]:80/s#v=1").parse().unwrap();
        assert_eq!(nurl.host, "::1");
        assert_eq!(nurl.authority(), "[::1]:80");
        assert_eq!(nurl.to_string(), format!("pb://{HASH}@[::1]:80/s#v=1"));
        let nurl: Nurl = format!("pb://{HASH}@storage.example.org:3457/s#v=1")
            .parse()
            .unwrap();
        assert_eq!(nurl.host, "storage.example.org");
    }

    #[test]
    fn tor_is_parsed_and_marked() {
        let text = format!("pb+tor://{HASH}@abcdefgh.onion:1234/s#v=1");
        let nurl: Nurl = text.parse().unwrap();
        assert_eq!(nurl.scheme, NurlScheme::Tor);
        assert_eq!(nurl.to_string(), text);
    }

    #[test]
    fn errors_name_the_bad_part() {
        let cases = [
            (format!("http://{HASH}@h:1/s#v=1"), "scheme"),
            (format!("pb://{HASH}@h:1/s"), "#v=1"),
            (format!("pb://{HASH}@h:1/s#v=2"), "#v=1"),
            (format!("pb://{HASH}h:1/s#v=1"), "'@'"),
            ("pb://short@h:1/s#v=1".to_owned(), "SPKI hash"),
            (format!("pb://{HASH}@h:1#v=1"), "'/'"),
            (format!("pb://{HASH}@:1/s#v=1"), "host"),
            (format!("pb://{HASH}@h/s#v=1"), "port"),
            (format!("pb://{HASH}@h:0/s#v=1"), "port"),
            (format!("pb://{HASH}@h:65536/s#v=1"), "port"),
            (format!("pb://{HASH}@h:x1/s#v=1"), "port"),
            (format!("pb://{HASH}@[nothex]:1/s#v=1"), "host"),
            (format!("pb://{HASH}@h:1/#v=1"), "swissnum"),
            (format!("pb://{HASH}@h:1/a/b#v=1"), "swissnum"),
            // A Foolscap fURL with location hints is not a NURL.
            (format!("pb://{HASH}@tcp:h:1/s"), "#v=1"),
        ];
        for (text, part) in cases {
            let err = text.parse::<Nurl>().unwrap_err().to_string();
            assert!(err.contains(part), "{text}: {err}");
        }
    }

    #[test]
    fn swissnums_are_fresh_base32() {
        let a = generate_swissnum();
        assert_eq!(a.len(), 32);
        assert_ne!(a, generate_swissnum());
        let nurl = Nurl::new(HASH, "127.0.0.1", 1, a.clone());
        assert_eq!(nurl.to_string().parse::<Nurl>().unwrap().swissnum, a);
    }
}
