//! How the `tessera` CLI trusts a gateway whose web port is served over TLS (`[node] web.port =
//! ssl:…`, so `node.url` says `https://`).
//!
//! - `--ca-file PEM` (or `TESSERA_CA_FILE`), when given: a certificate chaining to one of that
//!   file's certificates and naming the URL's host (WebPKI), and nothing else.
//! - Else, when the URL is the node directory's own `node.url` and its `tahoe.cfg` serves
//!   `web.port` over `ssl:`: exactly the key of the end-entity certificate of that endpoint's
//!   `certKey=` file (pinned by its SPKI hash with `storage::tls::pinned_client_config`, as storage
//!   servers are; the names the certificate holds, who signed it and its validity dates are not
//!   checked, as the node's own configuration vouches for it, so a self-signed certificate for
//!   `localhost` serves `https://127.0.0.1:PORT/`).
//! - Else (`--node-url https://…`, or a configuration that names no readable certificate): a
//!   certificate chaining to one of the system's root certificates and naming the URL's host.
//!
//! The handshake's signature is always verified with the presented certificate's key. A refused
//! certificate becomes one line naming the URL and what was trusted ([`untrusted`]), never what
//! a file holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

/// The environment variable of `--ca-file`.
pub(crate) const CA_FILE_ENV: &str = "TESSERA_CA_FILE";

/// What the CLI trusts when it speaks https.
#[derive(Debug)]
pub(crate) enum Trust {
    /// Exactly the key of this SPKI hash (`storage::tls`'s pin, as storage servers are pinned),
    /// whatever the certificate names and whoever signed it.
    Pinned {
        spki_hash: String,
        /// Where it comes from, for the errors: `the certificate FILE that DIR/tahoe.cfg names`.
        described: String,
    },
    /// Any certificate that chains to one of these roots and names the URL's host.
    Roots {
        roots: rustls::RootCertStore,
        /// Where they come from, for the errors.
        described: String,
    },
}

impl Trust {
    /// What is trusted, for an error message.
    pub(crate) fn described(&self) -> &str {
        match self {
            Trust::Pinned { described, .. } | Trust::Roots { described, .. } => described,
        }
    }

    /// The trust for a gateway at `url`: `ca_file` when given; else the certificate the node
    /// directory's configuration serves `web.port` with, when `url` is that node's own
    /// (`url_from_node_dir`); else the system's roots for an https URL. A plain http gateway needs
    /// none (its storage servers' https status pages are then not trusted, as before).
    pub(crate) fn choose(
        node_dir: &Path,
        url: &str,
        url_from_node_dir: bool,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Trust> {
        if let Some(ca_file) = ca_file {
            return Trust::ca_file(ca_file);
        }
        let https = url.starts_with("https://");
        if https && url_from_node_dir {
            match configured_certificate(node_dir) {
                Ok((spki_hash, file)) => {
                    return Ok(Trust::Pinned {
                        spki_hash,
                        described: format!(
                            "only the certificate {} that {} names for web.port",
                            file.display(),
                            node_dir.join("tahoe.cfg").display()
                        ),
                    });
                }
                Err(why) => {
                    return Ok(Trust::system_roots(&format!(
                        " ({why}; pass --ca-file or set {CA_FILE_ENV} to trust a private CA)"
                    )));
                }
            }
        }
        if https {
            return Ok(Trust::system_roots(&format!(
                " (pass --ca-file or set {CA_FILE_ENV} to trust a private CA)"
            )));
        }
        Ok(Trust::Roots {
            roots: rustls::RootCertStore::empty(),
            described: "no certificate (the gateway's URL is http://)".to_owned(),
        })
    }

    /// The certificates of a PEM file as the only roots.
    fn ca_file(path: &Path) -> anyhow::Result<Trust> {
        let certificates = crate::webtls::pem_certificates(path).context("--ca-file")?;
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            bail!(
                "--ca-file: {} holds no certificate usable as a trust anchor",
                path.display()
            );
        }
        Ok(Trust::Roots {
            roots,
            described: format!(
                "only certificates signed by the CA certificates in {}",
                path.display()
            ),
        })
    }

    /// The system's root certificates (the ones OpenSSL would use: `SSL_CERT_FILE`,
    /// `SSL_CERT_DIR`, or the distribution's bundle); `hint` ends the description.
    fn system_roots(hint: &str) -> Trust {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let found = if roots.is_empty() {
            ", of which none were found"
        } else {
            ""
        };
        Trust::Roots {
            roots,
            described: format!("certificates signed by the system's root certificates{found}{hint}"),
        }
    }

    /// A rustls client configuration (ring, TLS 1.2 and 1.3) that trusts this.
    pub(crate) fn client_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        match self {
            Trust::Pinned { spki_hash, .. } => {
                storage::tls::pinned_client_config(spki_hash).context("cannot pin the gateway's certificate")
            }
            Trust::Roots { roots, .. } => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                Ok(rustls::ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .context("TLS 1.2 and 1.3 are not available")?
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth())
            }
        }
    }
}

/// The SPKI hash of the end-entity certificate `node_dir/tahoe.cfg` serves `[node] web.port`
/// with, and its file; why there is none otherwise. Only `web.port` is read, so a configuration
/// this version would refuse for another key still names its certificate.
fn configured_certificate(node_dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let file = node_dir.join("tahoe.cfg");
    let text = frontends::textfile::read_bounded(&file, frontends::textfile::CONFIG_LIMIT)
        .with_context(|| format!("{} cannot be read", file.display()))?;
    let sections = crate::config::parse_ini(&text, &file)?;
    let Some((value, _)) = sections.get("node").and_then(|node| node.get("web.port")) else {
        bail!("{} has no [node] web.port", file.display());
    };
    let endpoint = crate::config::Endpoint::parse_web(value, node_dir, crate::config::Endpoint::parse)
        .with_context(|| format!("{}: [node] web.port is not a valid endpoint", file.display()))?;
    let Some(tls) = endpoint.tls else {
        bail!("{}: [node] web.port is not an ssl: endpoint", file.display());
    };
    let certificate = crate::webtls::configured_certificate(&tls)?;
    let spki_hash = storage::tls::spki_hash_of_certificate(&certificate).with_context(|| {
        format!(
            "the certificate file {} holds no usable X.509 certificate",
            tls.certificate.display()
        )
    })?;
    Ok((spki_hash, tls.certificate))
}

/// The reason rustls refused the server's certificate, if that is what `error` (a connection
/// error from hyper, with the TLS error wrapped in I/O errors) comes down to.
pub(crate) fn untrusted(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(rustls::Error::InvalidCertificate(why)) = error.downcast_ref::<rustls::Error>() {
            return Some(match why {
                rustls::CertificateError::ApplicationVerificationFailure => {
                    "it is not the pinned certificate".to_owned()
                }
                rustls::CertificateError::UnknownIssuer => "no trusted certificate signed it".to_owned(),
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "it is not for this host name".to_owned()
                }
                other => rustls::Error::InvalidCertificate(other.clone()).to_string(),
            });
        }
        // `io::Error::source` skips the error it wraps: look inside it first.
        if let Some(why) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| untrusted(inner))
        {
            return Some(why);
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cli_client::{Gateway, GatewayArgs};

    /// A self-signed certificate for `names`: (certificate PEM, key PEM).
    fn certificate(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// An https server on 127.0.0.1 with the node's own TLS configuration (`webtls`) over
    /// `node_dir`'s `web.key` and `web.crt`, answering every request with `hello`; its port.
    fn https_server(node_dir: &Path) -> u16 {
        use std::io::{Read, Write};
        let files = crate::config::TlsFiles {
            private_key: node_dir.join("web.key"),
            certificate: node_dir.join("web.crt"),
            extra_chain: None,
        };
        let config =
            crate::webtls::server_config(&files, "[node] web.port", &node_dir.join("tahoe.cfg")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                // A refused handshake ends the read; the next connection is served.
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if head.ends_with(b"\r\n\r\n") {
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        port
    }

    /// A node directory whose `web.port` is `ssl:` with `web.key` and `web.crt` (a self-signed
    /// certificate for `names`) and whose `node.url` is `https://127.0.0.1:PORT/` of a server using
    /// them: the directory, that URL without its slash, and the key's PEM.
    fn tls_node(names: &[&str]) -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate(names);
        std::fs::write(dir.path().join("web.key"), &key).unwrap();
        std::fs::write(dir.path().join("web.crt"), &cert).unwrap();
        std::fs::write(
            dir.path().join("tahoe.cfg"),
            "[node]\nweb.port = ssl:0:privateKey=web.key:certKey=web.crt:interface=127.0.0.1\n",
        )
        .unwrap();
        let port = https_server(dir.path());
        let url = format!("https://127.0.0.1:{port}");
        std::fs::write(dir.path().join("node.url"), format!("{url}/\n")).unwrap();
        (dir, url, key)
    }

    fn get(node_dir: &Path, args: &GatewayArgs) -> anyhow::Result<bytes::Bytes> {
        let gateway = Gateway::open(node_dir, args)?;
        gateway.get_bytes(&format!("{}/", gateway_url(node_dir, args)))
    }

    fn gateway_url(node_dir: &Path, args: &GatewayArgs) -> String {
        args.node_url.clone().unwrap_or_else(|| {
            std::fs::read_to_string(node_dir.join("node.url"))
                .unwrap()
                .trim()
                .trim_end_matches('/')
                .to_owned()
        })
    }

    /// Through its node directory the CLI trusts exactly the configured certificate, though it
    /// names only `localhost` and the URL is 127.0.0.1's; another certificate in the configuration
    /// is refused in one line that names the URL and the file, never their contents.
    #[test]
    fn the_node_directory_pins_its_configured_certificate() {
        let (dir, url, key) = tls_node(&["localhost"]);
        let none = GatewayArgs::default();
        assert_eq!(&get(dir.path(), &none).unwrap()[..], b"hello");

        // The configuration now names another certificate than the server presents.
        let (other, _) = certificate(&["localhost"]);
        std::fs::write(dir.path().join("web.crt"), &other).unwrap();
        let error = format!("{:#}", get(dir.path(), &none).unwrap_err());
        assert!(
            error.contains(&format!(
                "the gateway at {url} presented a TLS certificate that is not trusted"
            )),
            "{error}"
        );
        assert!(error.contains("web.crt") && !error.contains('\n'), "{error}");
        let key_body = key.lines().nth(1).unwrap();
        let other_body = other.lines().nth(1).unwrap();
        assert!(
            !error.contains(key_body) && !error.contains(other_body),
            "{error}"
        );
    }

    /// `--node-url` (or a configuration without a readable certificate) checks the certificate
    /// against the system's roots, which do not hold a self-signed one; `--ca-file` trusts it for
    /// the names it holds.
    #[test]
    fn other_urls_need_a_trusted_issuer_and_the_right_name() {
        let (dir, url, _) = tls_node(&["localhost"]);
        let by_url = GatewayArgs {
            node_url: Some(url.clone()),
            ca_file: None,
        };
        let error = format!("{:#}", get(dir.path(), &by_url).unwrap_err());
        assert!(
            error.contains(&format!("{url} presented a TLS certificate that is not trusted")),
            "{error}"
        );
        assert!(
            error.contains("system's root certificates") && error.contains("--ca-file"),
            "{error}"
        );

        // The configured certificate unreadable: the system's roots, saying why.
        std::fs::remove_file(dir.path().join("web.crt")).unwrap();
        let error = format!("{:#}", get(dir.path(), &GatewayArgs::default()).unwrap_err());
        assert!(
            error.contains("not trusted") && error.contains("web.crt cannot be read"),
            "{error}"
        );

        // A private CA (here the certificate itself): trusted for localhost, not for 127.0.0.1.
        let ca = dir.path().join("ca.pem");
        let (dir2, url2, _) = tls_node(&["localhost"]);
        std::fs::copy(dir2.path().join("web.crt"), &ca).unwrap();
        let port = url2.rsplit(':').next().unwrap();
        let by_name = GatewayArgs {
            node_url: Some(format!("https://localhost:{port}")),
            ca_file: Some(ca.clone()),
        };
        assert_eq!(&get(dir2.path(), &by_name).unwrap()[..], b"hello");
        let by_address = GatewayArgs {
            node_url: None,
            ca_file: Some(ca.clone()),
        };
        let error = format!("{:#}", get(dir2.path(), &by_address).unwrap_err());
        assert!(
            error.contains("not for this host name") && error.contains("ca.pem"),
            "{error}"
        );
        // A CA file that holds no certificate is an error of its own, before any connection.
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let error = format!("{:#}", Gateway::open(dir2.path(), &by_name).unwrap_err());
        assert!(error.contains("--ca-file") && error.contains("ca.pem"), "{error}");
    }
}
