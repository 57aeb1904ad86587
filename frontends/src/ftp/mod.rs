//! The FTP server (explicit FTPS): libunftp with our own storage backend ([`backend`]) over the
//! file-system layer (`filenode::fs`) and our own authenticator ([`auth`]) over the shared
//! accounts file.
//!
//! - [`serve`] takes an already-bound listener and a shutdown future (house style); each control
//!   connection gets its own libunftp `Server` (cheap: the TLS configuration and the
//!   authenticator are shared), served with `Server::service` over a loopback pair behind the
//!   relay (`relay.rs`), which bounds what a client may send without a reply (libunftp's command-line
//!   buffer has no limit of its own).
//! - Logins: passwords only (argon2id hashes in the accounts file); no anonymous login, ever —
//!   libunftp's default authenticator, which accepts anyone, is always replaced. Failed logins
//!   are rate-limited per client address and logged without the password.
//! - TLS: `AUTH TLS` with the node's FTP certificate; [`TlsPolicy`] says whether it is required
//!   (control and data channels) or offered.
//! - Errors map to reply codes in one place: [`error`].
//! - Upload resume: `REST n` + `STOR` and `APPE` keep the file's first `n` bytes (libunftp passes
//!   the start to the backend's `put`; for APPE, the size its `metadata` reports).
//! - Modification times: libunftp 0.24 parses no `MFMT` (it answers `500 Command not
//!   implemented` before any backend sees it, and its FEAT cannot list it), so the time is set
//!   through its SITE hook: `SITE MFMT YYYYMMDDHHMMSS path` (MFMT's syntax) and lftp's two
//!   `SITE UTIME` forms, stored as the link's `mtime` (what SFTP's SETSTAT sets), which MDTM,
//!   LIST and MLSD show. SITE handlers get no working directory: a relative path is refused once
//!   the session has changed directory.
//! - libunftp logs paths (which may hold caps) and Debug-formats the backend and the user on every
//!   command: it gets a discarding logger, and the backend and user print a word.

pub(crate) mod auth;
pub(crate) mod backend;
pub(crate) mod error;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod paths;
mod relay;

use std::future::Future;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use filenode::grid::Grid;
use libunftp::options::{FtpsRequired, PassiveHost};
use tokio::net::TcpListener;

use crate::accounts::AccountsFile;
use crate::counters::Frontend;
use crate::login_limit::LoginLimiter;
use auth::GridAuth;
pub use auth::GridUser;
use backend::{GridBackend, SetModTime};

/// Whether clients must use TLS.
#[derive(Clone)]
pub enum TlsPolicy {
    /// No TLS: `AUTH TLS` is refused (loopback only, by choice).
    Off,
    /// TLS offered (`AUTH TLS`), plaintext allowed.
    Optional(Arc<rustls::ServerConfig>),
    /// TLS required on the control and data channels before login.
    Required(Arc<rustls::ServerConfig>),
}

impl std::fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsPolicy::Off => "Off",
            TlsPolicy::Optional(_) => "Optional",
            TlsPolicy::Required(_) => "Required",
        })
    }
}

/// What the FTP server needs.
#[derive(Debug)]
pub struct FtpConfig {
    /// The grid.
    pub grid: Arc<Grid>,
    /// Who may log in (password users of the shared accounts file).
    pub accounts: Arc<AccountsFile>,
    /// TLS.
    pub tls: TlsPolicy,
    /// Ports for passive data connections.
    pub passive_ports: RangeInclusive<u16>,
    /// The address PASV announces (`None`: the control connection's local address).
    pub passive_host: Option<Ipv4Addr>,
    /// Sessions idle this long are closed.
    pub idle_timeout: Duration,
    /// How long a failed login waits before its reply.
    pub failed_login_delay: Duration,
    /// Where uploads are spooled (`None`: the system's temporary directory).
    pub spool_dir: Option<PathBuf>,
    /// Bytes of uploads in progress per user, across their sessions (`[ftpd] spool.quota`); past
    /// it a STOR gets 552.
    pub spool_quota: Arc<crate::SpoolQuota>,
    /// The node's frontend figures (the FTP server counts into its own).
    pub counters: Arc<crate::Counters>,
}

/// The greeting.
const GREETING: &str = "Tessera FTP server (Tahoe-LAFS grid)";

/// Serves FTP on `listener` until `shutdown` completes; open sessions are then closed.
pub async fn serve(
    listener: TcpListener,
    config: FtpConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let auth = Arc::new(GridAuth {
        accounts: Arc::clone(&config.accounts),
        limiter: LoginLimiter::new(auth::MAX_FAILURES, auth::FAILURE_WINDOW),
        failure_delay: config.failed_login_delay,
        counters: Arc::clone(config.counters.frontend(Frontend::Ftp)),
    });
    let backend = GridBackend {
        grid: Arc::clone(&config.grid),
        spool_dir: config.spool_dir.clone(),
        spool_quota: Arc::clone(&config.spool_quota),
        counters: Arc::clone(config.counters.frontend(Frontend::Ftp)),
        session: Arc::default(),
    };
    backend.counters.set_spool(&config.spool_quota);
    let loopback = relay::Loopback::new().await?;
    let mut sessions = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "FTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "FTP connection lost before it was served");
                continue;
            }
        };
        let server = match build_server(&config, &auth, &backend, peer, local) {
            Ok(server) => server,
            Err(e) => {
                tracing::error!(error = %e, "cannot start an FTP session");
                continue;
            }
        };
        // libunftp gets the loopback end; the relay bounds what the client sends unanswered.
        let (relay_end, session_end) = match loopback.pair().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(error = %e, "cannot start an FTP session");
                continue;
            }
        };
        // Replies are small writes, and over TLS one reply can be several records: without
        // TCP_NODELAY, Nagle's algorithm holds the later ones until the client's delayed ACK
        // (40 ms a command, 200 ms before a TLS transfer starts).
        for socket in [&stream, &relay_end, &session_end] {
            if let Err(e) = socket.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
        }
        tracing::debug!(%peer, "FTP connection");
        let open = backend.counters.session();
        sessions.spawn(async move {
            let _open = open;
            let session = server.service(session_end);
            let relayed = relay::relay(stream, relay_end, relay::MAX_UNANSWERED);
            tokio::pin!(session, relayed);
            tokio::select! {
                result = &mut session => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "FTP session ended with an error");
                    }
                    // Relay what libunftp said last (221 to QUIT) before the client's socket closes.
                    let _ = tokio::time::timeout(Duration::from_secs(5), relayed).await;
                }
                end = &mut relayed => {
                    if let relay::RelayEnd::TooFarAhead = end {
                        tracing::warn!(
                            %peer,
                            limit = relay::MAX_UNANSWERED,
                            "FTP connection closed: the client sent more than the limit without a reply (a command line without its end?)"
                        );
                    } else {
                        // The client left: libunftp sees its end of the relay close and ends the
                        // session (a transfer in flight finishes first).
                        let _ = tokio::time::timeout(SESSION_LINGER, session).await;
                    }
                }
            }
        });
    }
    sessions.shutdown().await;
    Ok(())
}

/// How long a session whose client has gone may take to finish (a transfer in flight).
const SESSION_LINGER: Duration = Duration::from_secs(60);

/// One session's libunftp server, for a client at `peer` that reached us at `local` (libunftp's
/// own connection is the relay's loopback one, so both addresses come from here).
fn build_server(
    config: &FtpConfig,
    auth: &Arc<GridAuth>,
    backend: &GridBackend,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
) -> Result<libunftp::Server<GridBackend, GridUser>, libunftp::ServerError> {
    let backend = backend.clone();
    let provider: Arc<GridAuth> = Arc::clone(auth);
    let authenticator = relay::PeerAuth {
        inner: Arc::clone(auth) as Arc<dyn unftp_core::auth::Authenticator + Send + Sync>,
        peer: peer.ip(),
    };
    let mut builder =
        libunftp::ServerBuilder::with_user_detail_provider(Box::new(move || backend.session()), provider)
            // Never libunftp's default (anonymous) authenticator.
            .authenticator(Arc::new(authenticator) as Arc<dyn unftp_core::auth::Authenticator + Send + Sync>)
            .site_command("MFMT", SetModTime)
            .site_command("UTIME", SetModTime)
            .greeting(GREETING)
            .logger(Some(slog::Logger::root(slog::Discard, slog::o!())))
            .passive_ports(config.passive_ports.clone())
            .binder(relay::OriginalAddress(local.ip()))
            .idle_session_timeout(config.idle_timeout.as_secs().max(1));
    match (config.passive_host, local.ip().to_canonical()) {
        (Some(host), _) => builder = builder.passive_host(PassiveHost::Ip(host)),
        (None, std::net::IpAddr::V4(ip)) => builder = builder.passive_host(PassiveHost::Ip(ip)),
        // PASV cannot name an IPv6 address (EPSV, which names only the port, works).
        (None, std::net::IpAddr::V6(_)) => {}
    }
    builder = match &config.tls {
        TlsPolicy::Off => builder,
        TlsPolicy::Optional(tls) => builder
            .ftps_manual::<PathBuf>(Arc::clone(tls))
            .ftps_required(FtpsRequired::None, FtpsRequired::None),
        TlsPolicy::Required(tls) => builder
            .ftps_manual::<PathBuf>(Arc::clone(tls))
            .ftps_required(FtpsRequired::All, FtpsRequired::All),
    };
    builder.build()
}

#[cfg(test)]
mod tests;
