//! TLS for the web ports (`[node] web.port` and `[webdav] port` as Twisted's
//! `ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem` endpoint, which Tahoe accepts): the key and
//! certificate files read at startup into a rustls server configuration. A file that is missing,
//! unreadable, not PEM, or whose key does not match the certificate stops the node with an error
//! naming the configuration key and the file, never anything the file holds.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// A PEM file of keys and certificates (a chain of a few certificates is a few KiB).
const PEM_LIMIT: u64 = 1 << 20;

/// The server configuration of an `ssl:` endpoint. `key` names the configuration key (`[node]
/// web.port`) and `config_file` the `tahoe.cfg` it is in, for the errors.
pub(crate) fn server_config(
    files: &TlsFiles,
    key: &str,
    config_file: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let context = |what: &str, path: &Path| {
        format!(
            "{}: {key}: the {what} file {}",
            config_file.display(),
            path.display()
        )
    };
    let read = |what: &str, path: &Path| {
        frontends::textfile::read_bounded(path, PEM_LIMIT)
            .with_context(|| format!("{} cannot be read", context(what, path)))
    };
    let key_text = read("private key (privateKey=)", &files.private_key)?;
    let private_key = PrivateKeyDer::from_pem_slice(key_text.as_bytes()).map_err(|_| {
        anyhow!(
            "{} holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
            context("private key (privateKey=)", &files.private_key)
        )
    })?;
    let mut chain = certificates(
        &read("certificate (certKey=)", &files.certificate)?,
        &context("certificate (certKey=)", &files.certificate),
    )?;
    if let Some(extra) = &files.extra_chain {
        chain.extend(certificates(
            &read("certificate chain (extraCertChain=)", extra)?,
            &context("certificate chain (extraCertChain=)", extra),
        )?);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::sign::CertifiedKey::from_der(chain.clone(), private_key.clone_key(), &provider).map_err(
        |_| {
            anyhow!(
                "{}: {key}: the private key in {} does not match the certificate in {} (or is of a \
                 kind TLS cannot use)",
                config_file.display(),
                files.private_key.display(),
                files.certificate.display()
            )
        },
    )?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2 and 1.3 are not available")?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|_| {
            anyhow!(
                "{}: {key}: the key in {} and the certificate in {} cannot be used for TLS",
                config_file.display(),
                files.private_key.display(),
                files.certificate.display()
            )
        })?;
    // The gateway serves HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The end-entity certificate an `ssl:` endpoint serves: the first certificate of its `certKey=`
/// file, read with the same bound as at the node's start (what the CLI pins; see `cli_tls`). The
/// errors name the file, never what it holds.
pub(crate) fn configured_certificate(files: &TlsFiles) -> anyhow::Result<CertificateDer<'static>> {
    let mut chain = pem_certificates(&files.certificate)?;
    Ok(chain.remove(0))
}

/// Every certificate of the PEM file at `path` (at least one), read up to the same bound.
pub(crate) fn pem_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let text = frontends::textfile::read_bounded(path, PEM_LIMIT)
        .with_context(|| format!("the certificate file {} cannot be read", path.display()))?;
    certificates(&text, &format!("the certificate file {}", path.display()))
}

/// Every certificate of a PEM text; at least one.
fn certificates(text: &str, context: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| anyhow!("{context} is not a valid PEM file"))?;
    if chain.is_empty() {
        anyhow::bail!("{context} holds no PEM certificate");
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pem_pair() -> (String, String) {
        let identity = storage::tls::TlsIdentity::generate().unwrap();
        let pem = identity.to_pem();
        let at = pem.find("-----BEGIN PRIVATE KEY-----").unwrap();
        (pem[..at].to_owned(), pem[at..].to_owned())
    }

    /// Good files load; each bad one is named with the key, and the key's text never appears.
    #[test]
    fn key_and_certificate_load_or_fail_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem_pair();
        let (other_cert, _) = pem_pair();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let files = |key: &str, cert: &str| TlsFiles {
            private_key: dir.path().join(key),
            certificate: dir.path().join(cert),
            extra_chain: None,
        };
        write("key.pem", &key);
        write("cert.pem", &cert);
        write("other.pem", &other_cert);
        write("both.pem", &format!("{cert}{key}"));
        write("junk.pem", "not pem at all\n");
        let cfg = Path::new("/n/tahoe.cfg");
        let config = server_config(&files("key.pem", "cert.pem"), "[node] web.port", cfg).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        server_config(&files("both.pem", "both.pem"), "[node] web.port", cfg).unwrap();
        let key_body = key.lines().nth(1).unwrap().to_owned();
        for (files, needles) in [
            (
                files("missing.pem", "cert.pem"),
                vec!["missing.pem", "privateKey=", "cannot be read"],
            ),
            (
                files("key.pem", "missing.pem"),
                vec!["missing.pem", "certKey=", "cannot be read"],
            ),
            (
                files("junk.pem", "cert.pem"),
                vec!["junk.pem", "no PEM private key"],
            ),
            (
                files("key.pem", "junk.pem"),
                vec!["junk.pem", "no PEM certificate"],
            ),
            (
                files("cert.pem", "cert.pem"),
                vec!["cert.pem", "no PEM private key"],
            ),
            (
                files("key.pem", "other.pem"),
                vec!["does not match", "other.pem", "key.pem"],
            ),
        ] {
            let error = format!("{:#}", server_config(&files, "[node] web.port", cfg).unwrap_err());
            assert!(error.starts_with("/n/tahoe.cfg: [node] web.port"), "{error}");
            for needle in needles {
                assert!(error.contains(needle), "{needle}: {error}");
            }
            assert!(!error.contains(&key_body), "{error}");
        }
    }
}
