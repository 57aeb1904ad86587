//! `tessera run DIR`: run a node in the foreground until SIGINT or SIGTERM.
//!
//! Startup order: read the configuration (errors name the file and key; a Tahoe key Tessera does not
//! act on is refused, see `refused`), set up logging to stderr and `DIR/logs/tessera.log` (`logging`),
//! bind the storage port (a taken port is a one-line error), open the share
//! store (which discards incomplete uploads), then serve HTTPS and write `private/storage.nurl` and
//! `node.url`. On a signal the listener stops accepting, in-flight requests finish, and the process
//! exits 0; an upload cut off by the shutdown stays in `incoming/` and is discarded at the next start.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use storage::server::{ExpirationMode, ExpirationPolicy, StorageConfig, StorageServer};
use tracing::{info, warn};

use crate::config::{ExpireMode, NodeConfig};
use crate::nodedir;

/// How often the lease checker runs a cycle.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs the node in `dir` until a shutdown signal.
pub(crate) fn run(dir: &Path) -> anyhow::Result<()> {
    if !dir.join("tahoe.cfg").is_file() {
        bail!(
            "{} is not a Tessera node directory (it has no tahoe.cfg); create one with `tessera create-node {}`",
            dir.display(),
            dir.display()
        );
    }
    let config = NodeConfig::load(dir)?;
    let _log_guard = crate::logging::init(dir, &config.log)?;
    if let Some(tempdir) = &config.tempdir {
        std::fs::create_dir_all(tempdir).with_context(|| {
            format!(
                "cannot create {} ([node] tempdir in {})",
                tempdir.display(),
                dir.join("tahoe.cfg").display()
            )
        })?;
        frontends::set_default_spool_dir(tempdir.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tessera")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_node(dir.to_path_buf(), config))
}

async fn run_node(dir: PathBuf, config: NodeConfig) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let introducer = dir.join(nodedir::INTRODUCER_MARKER).exists();
    let mut introducer_state = None;
    if introducer {
        let (task, state) = start_introducer(&dir, &config, shutdown_rx.clone()).await?;
        tasks.push(task);
        introducer_state = Some(state);
    }
    // The web port is taken first: a storage node announces its address (tcp:0 picks it now).
    let web = match &config.web_port {
        Some(web) => {
            // The key and certificate of an `ssl:` web port are read before anything listens.
            let tls = web
                .tls
                .as_ref()
                .map(|files| crate::webtls::server_config(files, "[node] web.port", &dir.join("tahoe.cfg")))
                .transpose()?;
            let listener = bind(web, &dir, "[node] web.port").await?;
            let url = announced_web_url(&listener, web, &config.tub_location)?;
            Some((WebListener { listener, web, tls }, url))
        }
        None => None,
    };
    let storage = if config.storage_enabled {
        let url = web.as_ref().map(|(_, url)| url.clone());
        let (task, server) = start_storage(&dir, &config, url, shutdown_rx.clone()).await?;
        tasks.push(task);
        Some(server)
    } else {
        None
    };
    let gateway = config.client_enabled && !introducer;
    if gateway
        && (config.web_port.is_some() || config.sftp.enabled || config.ftp.enabled || config.webdav.enabled)
    {
        let listener = web.map(|(listener, _)| listener);
        tasks.extend(start_gateway(&dir, &config, storage, listener, shutdown_rx.clone()).await?);
    } else if let Some((listener, _)) = web {
        let mut status = frontends::web::status::NodeStatus::new(config.nickname.clone());
        status.storage = storage;
        // An introducer's web port shows its announcements, subscribers and counters.
        status.source = introducer_state.map(|state| state as Arc<dyn frontends::web::status::StatusSource>);
        let router = frontends::web::status::status_router(status);
        tasks.push(serve_on(
            &dir,
            listener,
            &config,
            router,
            "node status",
            shutdown_rx.clone(),
        )?);
    }
    info!(nickname = %config.nickname, "node running; stop it with Ctrl-C or SIGTERM");
    // Run until a signal, or until a server task ends on its own (which is a failure to report).
    let mut running = futures::future::select_all(tasks.iter_mut());
    let failed = tokio::select! {
        signal = wait_for_signal() => { signal?; None }
        (ended, _, _) = &mut running => Some(ended),
    };
    drop(running);
    if let Some(ended) = failed {
        let _ = shutdown_tx.send(true);
        return match ended {
            Ok(Ok(())) => Err(anyhow::anyhow!("a server stopped unexpectedly; see the log")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a server task panicked: {e}")),
        };
    }
    info!("shutting down: finishing in-flight requests");
    let _ = shutdown_tx.send(true);
    for task in tasks {
        task.await.context("a server task panicked")??;
    }
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

pub(crate) type ServerTask = tokio::task::JoinHandle<anyhow::Result<()>>;

/// An introducer node: the HTTPS introducer service on `tub.port`, and its state for the web port.
async fn start_introducer(
    dir: &Path,
    config: &NodeConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(ServerTask, Arc<crate::introducer::IntroducerState>)> {
    let endpoint = config
        .tub_port
        .clone()
        .with_context(|| format!("{}: [node] tub.port is required for an introducer", dir.display()))?;
    let pem_path = dir.join("private").join("node.pem");
    let pem =
        std::fs::read_to_string(&pem_path).with_context(|| format!("cannot read {}", pem_path.display()))?;
    let identity = storage::tls::TlsIdentity::from_pem(&pem)
        .with_context(|| format!("{} does not hold a valid key and certificate", pem_path.display()))?;
    let listener = bind(&endpoint, dir, "[node] tub.port").await?;
    crate::introducer::serve(
        dir,
        &config.nickname,
        listener,
        identity,
        &config.tub_location,
        shutdown,
    )
    .await
}

/// Builds this storage node's signed announcement for a given seqnum.
pub(crate) fn announcement_signer(
    dir: &Path,
    nickname: &str,
    pem: &str,
    nurls: Vec<String>,
    web_url: Option<String>,
) -> anyhow::Result<
    impl Fn(u64) -> anyhow::Result<crate::announcement::SignedAnnouncement> + Send + Sync + 'static,
> {
    let key = crate::announcement::load_signing_key(dir)?;
    let furl_path = dir.join("private").join("storage.furl");
    let furl = std::fs::read_to_string(&furl_path)
        .with_context(|| format!("cannot read {}", furl_path.display()))?;
    let _ = nodedir::tubid(pem)?;
    let storage = crate::client::Announcement {
        nickname: nickname.to_owned(),
        furl: furl.trim().to_owned(),
        nurls,
        permutation_seed_base32: Some(storage::base32::encode(key.verifying_key().as_bytes())),
        web_url,
    };
    let version = format!("tessera/{}", env!("CARGO_PKG_VERSION"));
    Ok(move |seqnum| {
        let body = crate::announcement::AnnouncementBody {
            version: 0,
            service_name: "storage".into(),
            seqnum,
            nonce: storage::base32::encode(&rand::random::<[u8; 16]>()),
            my_version: version.clone(),
            oldest_supported: version.clone(),
            storage: storage.clone(),
        };
        crate::announcement::sign(&body, &key)
    })
}

pub(crate) async fn bind(
    endpoint: &crate::config::Endpoint,
    dir: &Path,
    key: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    let address = endpoint.socket_address();
    tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "port {} is already in use (is this node already running?); stop the other process or change \
             {key} in {}",
                endpoint.port,
                dir.join("tahoe.cfg").display()
            ),
            _ => anyhow::Error::new(e).context(format!("cannot listen on {address}")),
        })
}

/// The client gateway: the grid from the configured servers, the web API on `web.port` and, when
/// enabled, the SFTP (`[sftpd]`), FTP (`[ftpd]`) and WebDAV (`[webdav]`) servers.
async fn start_gateway(
    dir: &Path,
    config: &NodeConfig,
    storage: Option<Arc<StorageServer>>,
    web_listener: Option<WebListener<'_>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<ServerTask>> {
    let grid = crate::client::build_grid(dir, config)?;
    // The servers' web addresses, for the welcome page's links to their status.
    let links = frontends::web::ServerLinks::default();
    {
        let mut map = links.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, ann) in crate::client::read_servers_yaml(dir)? {
            if let Some(url) = crate::client::web_url(&ann) {
                map.insert(id, url);
            }
        }
    }
    let introducer_statuses = frontends::web::IntroducerStatuses::default();
    if !config.introducers.is_empty() {
        crate::client::follow_introducers(
            dir,
            &config.introducers,
            Arc::clone(&grid),
            config.timeouts,
            links.clone(),
            introducer_statuses.clone(),
            &config.nickname,
            shutdown.clone(),
        )?;
    }
    let mut tasks = Vec::new();
    // One set of figures for every frontend, shown by the web gateway's /statistics.
    let counters = frontends::Counters::new();
    if config.sftp.enabled {
        tasks.push(start_sftp(dir, config, Arc::clone(&grid), &counters, shutdown.clone()).await?);
    }
    if config.ftp.enabled {
        let ftp = crate::ftpd::start(dir, &config.ftp, Arc::clone(&grid), &counters, shutdown.clone());
        tasks.push(ftp.await?);
    }
    if config.webdav.enabled {
        let webdav = crate::webdavd::start(
            dir,
            &config.webdav,
            Arc::clone(&grid),
            &counters,
            shutdown.clone(),
        );
        tasks.push(webdav.await?);
    }
    grid.probe().await;
    crate::client::spawn_prober(std::sync::Arc::clone(&grid), shutdown.clone());
    let Some(listener) = web_listener else {
        return Ok(tasks);
    };
    if listener.tls.is_none() && !crate::config::is_loopback(&listener.web.interface) {
        warn!(
            "[node] web.port is beyond loopback and the web gateway is served without TLS: caps cross the \
             network in the clear (Tahoe's ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem serves it over TLS)"
        );
    }
    // Tahoe makes the token anew each time a client node starts.
    let token = nodedir::write_api_auth_token(dir)?;
    let mut state = frontends::web::WebState::new(grid, config.nickname.clone())
        .with_api_token(token)
        .with_spool_quota(config.web_spool_quota)
        .with_counters(counters);
    state.mutable_format = config.mutable_format;
    state.server_links = links;
    state.introducer_statuses = introducer_statuses;
    if let Some(storage) = storage {
        state = state.with_storage(storage);
    }
    let router = frontends::web::router(state);
    tasks.push(serve_on(dir, listener, config, router, "web gateway", shutdown)?);
    Ok(tasks)
}

/// The node's bound web port, its configuration, and its TLS configuration when it is `ssl:`.
struct WebListener<'a> {
    listener: tokio::net::TcpListener,
    web: &'a crate::config::Endpoint,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The URL of a node's web port as `node.url` gives it (127.0.0.1 for a port on every interface).
fn web_url(listener: &tokio::net::TcpListener, web: &crate::config::Endpoint) -> anyhow::Result<String> {
    let port = listener.local_addr()?.port();
    let host = if web.interface == "0.0.0.0" {
        "127.0.0.1"
    } else {
        web.interface.as_str()
    };
    Ok(format!("{}://{}:{port}/", web.scheme(), url_host(host)))
}

/// An address as a URL's host: an IPv6 address in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The web address a storage node announces (`tessera-web-url`): `node.url`'s, except that a web
/// port on every interface is announced at the host of the first `tub.location` hint, the address
/// other machines reach this node at (node.url's 127.0.0.1 is this machine's own).
fn announced_web_url(
    listener: &tokio::net::TcpListener,
    web: &crate::config::Endpoint,
    tub_location: &[String],
) -> anyhow::Result<String> {
    let every_interface = matches!(web.interface.as_str(), "0.0.0.0" | "::" | "[::]");
    let location_host = tub_location
        .first()
        .and_then(|hint| hint.rsplit_once(':'))
        .map(|(host, _)| host)
        .filter(|host| !host.is_empty());
    match location_host {
        Some(host) if every_interface => Ok(format!(
            "{}://{}:{}/",
            web.scheme(),
            url_host(host),
            listener.local_addr()?.port()
        )),
        _ => web_url(listener, web),
    }
}

/// Serves `router` on `listener` with the web limits, after writing `node.url` (Tahoe's: the
/// URL of the node's web port).
fn serve_on(
    dir: &Path,
    web: WebListener<'_>,
    config: &NodeConfig,
    router: axum::Router,
    what: &'static str,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ServerTask> {
    let WebListener { listener, web, tls } = web;
    let port = listener.local_addr()?.port();
    nodedir::write_private(
        &dir.join("node.url"),
        format!("{}\n", web_url(&listener, web)?).as_bytes(),
    )?;
    info!(port, tls = tls.is_some(), "{what} listening");
    let router = crate::weblayers::wrap(router, Some(&config.web_static));
    let mut stop = shutdown;
    let limits = config.web_limits;
    Ok(tokio::spawn(async move {
        frontends::web::serve_tls(listener, router, limits, tls, async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        })
        .await
        .with_context(|| format!("the {what} failed"))
    }))
}

/// The SFTP server (`[sftpd]`): its host key (made now if the default one is missing), the
/// accounts file (re-read when it changes) and the listener; `sftp.url` tells where it listens.
async fn start_sftp(
    dir: &Path,
    config: &NodeConfig,
    grid: Arc<filenode::grid::Grid>,
    counters: &Arc<frontends::Counters>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ServerTask> {
    let sftp = &config.sftp;
    if !sftp.host_privkey_file.exists() {
        frontends::sftp::keys::generate_ed25519(
            &sftp.host_privkey_file,
            &sftp.host_pubkey_file,
            "tessera host key",
        )?;
        info!(file = %sftp.host_privkey_file.display(), "generated an SSH host key");
    }
    let host_key = frontends::sftp::keys::load_private_key(&sftp.host_privkey_file)?;
    let accounts = Arc::new(frontends::accounts::AccountsFile::new(&sftp.accounts_file));
    if accounts.current().is_empty() {
        warn!(
            file = %sftp.accounts_file.display(),
            "the SFTP accounts file has no usable account yet; add one with `tessera admin add-user`"
        );
    }
    let listener = bind(&sftp.port, dir, "[sftpd] port").await?;
    let address = listener.local_addr()?;
    nodedir::write_private(&dir.join("sftp.url"), format!("sftp://{address}/\n").as_bytes())?;
    info!(%address, "SFTP server listening");
    let config = frontends::sftp::SftpConfig {
        grid,
        accounts,
        host_keys: vec![host_key],
        spool_dir: None,
        limits: frontends::sftp::SftpLimits {
            spool_quota: frontends::SpoolQuota::new(sftp.spool_quota),
            max_sessions: sftp.max_sessions,
            max_handles: sftp.max_handles,
            max_queued_bytes: usize::try_from(sftp.max_queued_bytes).unwrap_or(usize::MAX),
            max_reading_ahead: sftp.max_reading_ahead,
        },
        counters: Arc::clone(counters),
    };
    let mut stop = shutdown;
    Ok(tokio::spawn(async move {
        frontends::sftp::serve(listener, config, async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        })
        .await
        .context("the SFTP server failed")
    }))
}

async fn start_storage(
    dir: &Path,
    config: &NodeConfig,
    web_url: Option<String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(ServerTask, Arc<StorageServer>)> {
    let endpoint = config.tub_port.clone().with_context(|| {
        format!(
            "{}: [node] tub.port is required when storage is enabled",
            dir.display()
        )
    })?;
    let pem_path = dir.join("private").join("node.pem");
    let pem =
        std::fs::read_to_string(&pem_path).with_context(|| format!("cannot read {}", pem_path.display()))?;
    let identity = storage::tls::TlsIdentity::from_pem(&pem)
        .with_context(|| format!("{} does not hold a valid key and certificate", pem_path.display()))?;
    let swissnum = nodedir::read_swissnum(dir)?;
    let listener = bind(&endpoint, dir, "[node] tub.port").await?;
    let port = listener.local_addr()?.port();

    let tubid = nodedir::tubid(&pem)?;
    let mut node_id = [0u8; 20];
    node_id.copy_from_slice(&storage::base32::decode(&tubid).context("invalid tub id")?);
    let mut store_config = StorageConfig::new(config.storage_dir.clone());
    store_config.reserved_space = config.reserved_space;
    store_config.max_space = config.max_space;
    store_config.readonly = config.readonly;
    store_config.upload_takeover_after = config.upload_takeover_after;
    store_config.node_id = node_id;
    store_config.application_version = format!("tessera/{}", env!("CARGO_PKG_VERSION"));
    store_config.expiration = ExpirationPolicy {
        enabled: config.expire.enabled,
        mode: match config.expire.mode {
            ExpireMode::Age {
                override_lease_duration,
            } => ExpirationMode::Age {
                override_lease_duration,
            },
            ExpireMode::CutoffDate(date) => ExpirationMode::CutoffDate(date),
        },
        immutable: config.expire.immutable,
        mutable: config.expire.mutable,
    };
    let storage_dir = config.storage_dir.clone();
    let server = tokio::task::spawn_blocking(move || StorageServer::open(store_config))
        .await?
        .with_context(|| format!("cannot open the share store in {}", storage_dir.display()))?;
    let server = Arc::new(server);

    let hints: Vec<String> = if config.tub_location.is_empty() {
        vec![format!("127.0.0.1:{port}")]
    } else {
        config.tub_location.clone()
    };
    let mut nurls = Vec::new();
    for hint in &hints {
        let (host, hint_port) = hint
            .rsplit_once(':')
            .with_context(|| format!("tub.location hint {hint:?} is not HOST:PORT"))?;
        let port: u16 = hint_port
            .parse()
            .with_context(|| format!("tub.location hint {hint:?} has a bad port"))?;
        let nurl = storage::nurl::Nurl::new(identity.spki_hash(), host, port, swissnum.clone());
        nurls.push(nurl.to_string());
    }
    nodedir::write_private(
        &dir.join("private").join("storage.nurl"),
        format!("{}\n", nurls.join("\n")).as_bytes(),
    )?;
    // The NURL holds the swissnum, a secret: say where it is, not what it is.
    crate::output::line(&format!(
        "storage server running; its NURL is in {}",
        dir.join("private").join("storage.nurl").display()
    ))?;
    info!(port, "storage server listening");

    spawn_maintenance(Arc::clone(&server), config.upload_idle_timeout, shutdown.clone());
    // To every introducer, each on its own schedule: one that is down costs only its retries.
    if !config.introducers.is_empty() {
        let signer = Arc::new(announcement_signer(
            dir,
            &config.nickname,
            &pem,
            nurls.clone(),
            web_url,
        )?);
        for introducer in &config.introducers {
            let signer = Arc::clone(&signer);
            crate::introducer::spawn_publisher(
                introducer.clone(),
                move |seqnum| signer(seqnum),
                shutdown.clone(),
            );
        }
    }
    let router = storage::http::router_with_limits(Arc::clone(&server), swissnum, config.storage_limits);
    let mut stop = shutdown;
    let shutdown_future = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    Ok((
        tokio::spawn(async move {
            storage::http::serve(listener, &identity, router, shutdown_future)
                .await
                .context("the storage server failed")
        }),
        server,
    ))
}

/// Background work: abort uploads idle for `upload_idle` (checked every minute, or every half of
/// `upload_idle` when that is shorter), and run a lease-checker cycle at start and hourly (it
/// expires leases when `expire.enabled`; otherwise it only reports what expiry would recover).
fn spawn_maintenance(
    server: Arc<StorageServer>,
    upload_idle: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let check_every = (upload_idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut minute = tokio::time::interval(check_every);
        let mut hour = tokio::time::interval(EXPIRY_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = minute.tick() => {
                    let server = Arc::clone(&server);
                    let aborted = tokio::task::spawn_blocking(move || server.abort_idle_uploads(upload_idle)).await;
                    if let Ok(count @ 1..) = aborted {
                        info!(count, idle_secs = upload_idle.as_secs(), "aborted idle uploads");
                    }
                }
                _ = hour.tick() => {
                    let server = Arc::clone(&server);
                    match tokio::task::spawn_blocking(move || server.run_lease_cycle()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => warn!(error = %e, "lease checker cycle failed"),
                        Err(e) => warn!(error = %e, "lease checker cycle panicked"),
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_web_port_on_every_interface_is_announced_at_the_location_host() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = |interface: &str| crate::config::Endpoint {
            port: 0,
            interface: interface.to_owned(),
            tls: None,
        };
        let hints = ["10.231.7.12:3457".to_owned(), "example.org:3457".to_owned()];
        let announced = |interface: &str, hints: &[String]| {
            announced_web_url(&listener, &endpoint(interface), hints).unwrap()
        };
        assert_eq!(
            announced("0.0.0.0", &hints),
            format!("http://10.231.7.12:{port}/")
        );
        // node.url stays this machine's own address.
        assert_eq!(
            web_url(&listener, &endpoint("0.0.0.0")).unwrap(),
            format!("http://127.0.0.1:{port}/")
        );
        // A port on one interface is announced at it; with no location, at 127.0.0.1.
        assert_eq!(announced("10.1.2.3", &hints), format!("http://10.1.2.3:{port}/"));
        assert_eq!(announced("0.0.0.0", &[]), format!("http://127.0.0.1:{port}/"));
        assert_eq!(announced("::1", &[]), format!("http://[::1]:{port}/"));
        assert_eq!(
            announced("::", &["[fd00::5]:3457".to_owned()]),
            format!("http://[fd00::5]:{port}/")
        );
        // An `ssl:` web port is https:// in node.url and in what is announced (and linked).
        let tls = crate::config::Endpoint {
            tls: Some(crate::config::TlsFiles {
                private_key: "k.pem".into(),
                certificate: "c.pem".into(),
                extra_chain: None,
            }),
            ..endpoint("0.0.0.0")
        };
        assert_eq!(
            announced_web_url(&listener, &tls, &hints).unwrap(),
            format!("https://10.231.7.12:{port}/")
        );
        assert_eq!(
            web_url(&listener, &tls).unwrap(),
            format!("https://127.0.0.1:{port}/")
        );
    }
}
