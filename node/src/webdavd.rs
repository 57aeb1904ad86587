//! The WebDAV server (`[webdav]`): the accounts file shared with SFTP and FTP, the listener (over
//! TLS when `port` is Tahoe's `ssl:` endpoint, as `[node] web.port` may be), and `webdav.url`
//! telling where it listens (`https://` then).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use crate::config::WebdavConfig;
use crate::nodedir;

/// Starts the WebDAV server on `[webdav] port`.
pub(crate) async fn start(
    dir: &Path,
    webdav: &WebdavConfig,
    grid: Arc<filenode::grid::Grid>,
    counters: &Arc<frontends::Counters>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<crate::daemon::ServerTask> {
    let accounts = Arc::new(frontends::accounts::AccountsFile::new(&webdav.accounts_file));
    if accounts.current().is_empty() {
        warn!(
            file = %webdav.accounts_file.display(),
            "the WebDAV accounts file has no usable account yet; add one with `tessera admin add-user`"
        );
    }
    // The key and certificate of an `ssl:` port are read before anything listens.
    let tls = webdav
        .port
        .tls
        .as_ref()
        .map(|files| crate::webtls::server_config(files, "[webdav] port", &dir.join("tahoe.cfg")))
        .transpose()?;
    if tls.is_none() && !crate::config::is_loopback(&webdav.port.interface) {
        warn!(
            "[webdav] port is beyond loopback and WebDAV is served without TLS: passwords and caps cross the network in the clear \
             (ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem serves it over TLS)"
        );
    }
    let listener = crate::daemon::bind(&webdav.port, dir, "[webdav] port").await?;
    let local = listener.local_addr()?;
    let url = format!("{}://{local}/\n", webdav.port.scheme());
    nodedir::write_private(&dir.join("webdav.url"), url.as_bytes())?;
    info!(address = %local, tls = tls.is_some(), "WebDAV server listening");
    let config = frontends::webdav::WebdavConfig {
        grid,
        accounts,
        spool_dir: None,
        spool_quota: frontends::SpoolQuota::new(webdav.spool_quota),
        limits: frontends::web::ServeLimits::default(),
        failure_delay: std::time::Duration::from_secs(1),
        counters: Arc::clone(counters),
    };
    let mut stop = shutdown;
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        frontends::webdav::serve_tls(listener, config, tls, stopped)
            .await
            .context("the WebDAV server failed")
    }))
}

/// How to reach the devgrid's WebDAV server as its demo user (the FTP demo account, whose
/// password is in `private/demo_ftp_password`): the lines `tessera devgrid` prints.
pub(crate) fn demo_lines(gateway_dir: &Path, cacert: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let url = std::fs::read_to_string(gateway_dir.join("webdav.url"))?;
    let url = url.trim();
    let password = std::fs::read_to_string(gateway_dir.join("private").join("demo_ftp_password"))?;
    let password = password.trim();
    // Over TLS (devgrid --tls) the clients trust the devgrid's self-signed certificate.
    let (curl_ca, rclone_ca) = match cacert {
        Some(file) => (
            format!(" --cacert {}", file.display()),
            format!(" --ca-cert {}", file.display()),
        ),
        None => (String::new(), String::new()),
    };
    Ok(vec![
        format!("  webdav:      {url} (user demo, password {password})"),
        format!("               curl{curl_ca} -u demo:{password} -X PROPFIND -H 'Depth: 1' {url}"),
        format!(
            "               rclone lsf :webdav: --webdav-url {url} --webdav-user demo --webdav-pass $(rclone obscure {password}){rclone_ca}"
        ),
        format!("               cadaver {url}   |   sudo mount -t davfs {url} /mnt/tessera"),
    ])
}
