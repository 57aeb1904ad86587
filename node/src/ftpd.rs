//! The node side of the FTP frontend (`[ftpd]`): its TLS certificate, the listener, and the
//! devgrid's demo login. The server itself is `frontends::ftp`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use crate::config::{FtpTls, FtpdConfig};
use crate::nodedir;

/// Writes a fresh self-signed certificate and its key (one PEM, 0600) for FTPS.
pub(crate) fn write_certificate(path: &Path) -> anyhow::Result<()> {
    let identity =
        storage::tls::TlsIdentity::generate().context("cannot generate the FTP server's TLS certificate")?;
    nodedir::write_private(path, identity.to_pem().as_bytes())
}

/// Starts the FTP server on the gateway's grid: binds `[ftpd] port`, writes `ftp.url`, and serves
/// until `shutdown`. The certificate is made now if the default one is missing (a node created
/// before `[ftpd]` existed).
pub(crate) async fn start(
    dir: &Path,
    ftp: &FtpdConfig,
    grid: Arc<filenode::grid::Grid>,
    counters: &Arc<frontends::Counters>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<crate::daemon::ServerTask> {
    let tls = match ftp.tls {
        FtpTls::Off => {
            if !ftp.port.interface.starts_with("127.") && ftp.port.interface != "localhost" {
                warn!("[ftpd] tls = off beyond loopback: passwords and caps cross the network in the clear");
            }
            frontends::ftp::TlsPolicy::Off
        }
        FtpTls::Optional | FtpTls::Required => {
            let file = &ftp.certificate_file;
            if !file.exists() && *file == dir.join("private").join("ftpd.pem") {
                write_certificate(file)?;
                info!(file = %file.display(), "generated the FTP server's TLS certificate");
            }
            let pem =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let identity = storage::tls::TlsIdentity::from_pem(&pem)
                .with_context(|| format!("{} does not hold a valid key and certificate", file.display()))?;
            let config = Arc::new(
                identity
                    .server_config()
                    .with_context(|| format!("{} cannot be used for TLS", file.display()))?,
            );
            if ftp.tls == FtpTls::Required {
                frontends::ftp::TlsPolicy::Required(config)
            } else {
                frontends::ftp::TlsPolicy::Optional(config)
            }
        }
    };
    let accounts = Arc::new(frontends::accounts::AccountsFile::new(&ftp.accounts_file));
    if accounts.current().is_empty() {
        warn!(
            file = %ftp.accounts_file.display(),
            "the FTP accounts file has no usable account yet; add one with `tessera admin add-user`"
        );
    }
    let listener = crate::daemon::bind(&ftp.port, dir, "[ftpd] port").await?;
    let local = listener.local_addr()?;
    nodedir::write_private(&dir.join("ftp.url"), format!("ftp://{local}/\n").as_bytes())?;
    info!(address = %local, tls = ?ftp.tls, "FTP server listening");
    let config = frontends::ftp::FtpConfig {
        grid,
        accounts,
        tls,
        passive_ports: ftp.passive_ports.clone(),
        passive_host: ftp.passive_host,
        idle_timeout: ftp.idle_timeout,
        failed_login_delay: std::time::Duration::from_secs(1),
        spool_dir: None,
        spool_quota: frontends::SpoolQuota::new(ftp.spool_quota),
        counters: Arc::clone(counters),
    };
    let mut stop = shutdown;
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        frontends::ftp::serve(listener, config, stopped)
            .await
            .context("the FTP server failed")
    }))
}

/// The devgrid's demo FTP login: user `demo` with a random password kept in
/// `private/demo_ftp_password`, and a home directory made on the first start (or the SFTP demo
/// account's, when it exists). Returns how to connect.
pub(crate) fn demo_account(gateway_dir: &Path, ftp: &FtpdConfig) -> anyhow::Result<String> {
    let password_file = gateway_dir.join("private").join("demo_ftp_password");
    let accounts_text = std::fs::read_to_string(&ftp.accounts_file).unwrap_or_default();
    let demo = frontends::accounts::Accounts::parse(&accounts_text, "")
        .get("demo")
        .cloned();
    let password = match std::fs::read_to_string(&password_file) {
        Ok(password) if demo.as_ref().is_some_and(|d| d.password_hash.is_some()) => {
            password.trim().to_owned()
        }
        _ => {
            let password = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 8]>());
            match demo {
                Some(_) => frontends::accounts::set_password(&ftp.accounts_file, "demo", &password)?,
                None => {
                    let home = make_directory(gateway_dir)?;
                    frontends::accounts::add_user(
                        &ftp.accounts_file,
                        "demo",
                        &frontends::accounts::Credential::Password(password.clone()),
                        &home,
                    )?;
                }
            }
            nodedir::write_private(&password_file, format!("{password}\n").as_bytes())?;
            password
        }
    };
    let url = std::fs::read_to_string(gateway_dir.join("ftp.url"))?;
    let url = url.trim().trim_end_matches('/');
    let tls = match ftp.tls {
        FtpTls::Off => "",
        // The certificate is self-signed: -k, or --cacert with the certificate.
        _ => " --ssl-reqd -k",
    };
    Ok(format!("curl{tls} -u demo:{password} {url}/"))
}

/// A new directory through the gateway's web API (a demo user's home).
pub(crate) fn make_directory(gateway_dir: &Path) -> anyhow::Result<filenode::cap::DirCap> {
    let gateway = crate::cli_client::Gateway::open(gateway_dir, &crate::cli_client::GatewayArgs::default())?;
    let (_, body) = gateway.call(
        hyper::Method::POST,
        &format!("{}?t=mkdir", gateway.unlinked()),
        bytes::Bytes::new(),
    )?;
    match filenode::cap::Cap::parse(String::from_utf8_lossy(&body).trim()) {
        Ok(filenode::cap::Cap::Dir(home)) => Ok(home),
        _ => anyhow::bail!("the gateway did not make the demo user's home directory"),
    }
}
