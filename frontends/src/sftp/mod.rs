//! The SFTP frontend: an SSH server (russh) whose only service is the `sftp` subsystem
//! (russh-sftp's protocol types, our own packet loop in `session.rs`), mapping each account of the
//! accounts file to its root directory cap.
//!
//! - `mod.rs`: the listener, logins (public key or argon2id password, per-source rate limit on
//!   failures shared with FTP in `crate::login_limit`, one answer for unknown users and wrong
//!   credentials), channels.
//! - `session.rs`: the SFTP operations, a thin adapter over the file-system layer
//!   (`filenode::fs`: paths, replace rules, renames, read-only links) with SFTP's own handles,
//!   permissions and SETSTAT. `reader.rs`: read-ahead. `crate::spool`: the encrypted write
//!   spool. `error.rs`: `FsErrorKind` → SFTP status, in one place.
//! - `keys.rs`: host and user key files.
//!
//! **Boundary:** a session reaches only its user's root and caps the user names in a path.
//! Passwords and caps never reach a log; paths are not logged (they may hold caps).

mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
mod reader;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use filenode::grid::Grid;
use filenode::node::DirNode;
use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, PublicKeyOffer, Server as _, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};

use crate::accounts::{Account, AccountsFile};
use crate::login_limit::{Attempt, LoginLimiter};

/// Failed (or running) logins from one address within [`FAILURE_WINDOW`] before it is refused
/// outright.
const MAX_FAILURES: u32 = 10;
/// How long failures are remembered (and an address stays refused).
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Everything the SFTP server needs.
#[derive(Debug, Clone)]
pub struct SftpConfig {
    /// The grid the files live in.
    pub grid: Arc<Grid>,
    /// Who may log in.
    pub accounts: Arc<AccountsFile>,
    /// The server's host keys.
    pub host_keys: Vec<PrivateKey>,
    /// Where write spools go (the system's temporary directory when `None`).
    pub spool_dir: Option<PathBuf>,
    /// What one user, connection and session may hold.
    pub limits: SftpLimits,
    /// The node's frontend figures (the SFTP server counts into its own).
    pub counters: Arc<crate::Counters>,
}

/// The SFTP server's bounds (`[sftpd]` keys): what a peer may make the gateway hold.
#[derive(Debug, Clone)]
pub struct SftpLimits {
    /// `spool.quota`: bytes of uploads in progress per user, across all of that user's sessions
    /// (a write or size change past it fails with a message; nothing is written).
    pub spool_quota: Arc<crate::SpoolQuota>,
    /// `sessions.max_per_connection`: SFTP sessions (SSH channels) one connection may have open.
    pub max_sessions: usize,
    /// `session.max_handles`: open files and directories per session.
    pub max_handles: usize,
    /// `session.max_queued_bytes`: request bytes read ahead of the one being answered, per session.
    pub max_queued_bytes: usize,
    /// `connection.max_reading_ahead`: open files of one connection that read ahead at once (about
    /// ten segments each); the others are read request by request.
    pub max_reading_ahead: usize,
}

/// `[sftpd] connection.max_reading_ahead` by default.
pub const DEFAULT_MAX_READING_AHEAD: usize = 8;

/// `[sftpd] spool.quota` by default: 10 GiB per user.
pub const DEFAULT_SPOOL_QUOTA: u64 = 10 << 30;

impl Default for SftpLimits {
    fn default() -> Self {
        SftpLimits {
            spool_quota: crate::SpoolQuota::new(DEFAULT_SPOOL_QUOTA),
            max_sessions: 8,
            max_handles: 256,
            max_queued_bytes: 32 << 20,
            max_reading_ahead: DEFAULT_MAX_READING_AHEAD,
        }
    }
}

/// Runs the SFTP server on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SftpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    config
        .counters
        .frontend(crate::counters::Frontend::Sftp)
        .set_spool(&config.limits.spool_quota);
    let methods = login_methods();
    let ssh_config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard(format!("SSH-2.0-Tessera_{}", env!("CARGO_PKG_VERSION")).into()),
        methods,
        // Every rejection takes this long, whatever was wrong.
        auth_rejection_time: Duration::from_millis(500),
        // OpenSSH probes with "none" first; answering that at once is no information.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: config.host_keys.clone(),
        max_auth_attempts: 6,
        window_size: 8 << 20,
        // The largest channel packet a client may send us (russh's default is 32 KiB; above 65535
        // it complains). OpenSSH `sftp` sends uploads in packets up to this size: with 64 KiB, a
        // 128 MiB put on the devgrid took 1.23-1.29 s against 1.30-1.38 s, with 2-5% less gateway CPU.
        maximum_packet_size: 65535,
        inactivity_timeout: Some(Duration::from_secs(3600)),
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        ..Default::default()
    });
    let mut server = SshServer {
        shared: Arc::new(Shared {
            config,
            limiter: LoginLimiter::new(MAX_FAILURES, FAILURE_WINDOW),
        }),
    };
    let running = server.run_on_socket(ssh_config, &listener);
    let handle = running.handle();
    tokio::select! {
        result = running => result,
        () = shutdown => {
            handle.shutdown("the server is shutting down".into());
            Ok(())
        }
    }
}

fn login_methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..])
}

#[derive(Debug)]
struct Shared {
    config: SftpConfig,
    /// Logins per source address (`crate::login_limit`).
    limiter: LoginLimiter,
}

impl Shared {
    fn counters(&self) -> &Arc<crate::counters::FrontendCounters> {
        self.config.counters.frontend(crate::counters::Frontend::Sftp)
    }

    /// Whether this source has failed too often recently.
    fn refused(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|peer| self.limiter.is_blocked(peer.ip(), Instant::now()))
    }

    /// Reserves a login attempt (before any check, so running ones count); `Err` when the
    /// source is refused (logged). A connection without a peer address is not limited.
    fn begin(
        &self,
        peer: Option<SocketAddr>,
        user: &str,
        method: &'static str,
    ) -> Result<Option<Attempt<'_>>, ()> {
        let Some(peer) = peer else { return Ok(None) };
        match self.limiter.begin(peer.ip(), user, Instant::now()) {
            Some(attempt) => Ok(Some(attempt)),
            None => {
                tracing::warn!(user = ?user, source = %peer.ip(), method, "SFTP login refused: too many failed logins from this source");
                self.counters().login_failed();
                Err(())
            }
        }
    }

    fn record_failure(
        &self,
        peer: Option<SocketAddr>,
        attempt: Option<Attempt<'_>>,
        user: &str,
        method: &'static str,
    ) {
        let source = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        let failures = attempt.map_or(0, Attempt::failed);
        self.counters().login_failed();
        tracing::warn!(user = ?user, %source, method, failures, "SFTP login failed");
        if failures == self.limiter.max_failures() {
            tracing::warn!(%source, window = ?self.limiter.window(), "too many failed SFTP logins; refusing this source for a while");
        }
    }
}

struct SshServer {
    shared: Arc<Shared>,
}

impl russh::server::Server for SshServer {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection {
            shared: Arc::clone(&self.shared),
            peer,
            account: None,
            channels: HashMap::new(),
            sessions: Arc::new(tokio::sync::Semaphore::new(
                self.shared.config.limits.max_sessions,
            )),
            reading_ahead: Arc::new(tokio::sync::Semaphore::new(
                self.shared.config.limits.max_reading_ahead,
            )),
        }
    }
}

/// One SSH connection.
struct Connection {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    account: Option<Account>,
    /// Channels opened and not yet started as SFTP sessions, each with its place among `sessions`.
    channels: HashMap<ChannelId, (Channel<Msg>, tokio::sync::OwnedSemaphorePermit)>,
    /// Places for this connection's sessions: `[sftpd] sessions.max_per_connection`.
    sessions: Arc<tokio::sync::Semaphore>,
    /// Places for this connection's files that read ahead: `[sftpd] connection.max_reading_ahead`.
    reading_ahead: Arc<tokio::sync::Semaphore>,
}

/// The one answer to every failed login: no hint of what was wrong; both methods stay open.
fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(login_methods()),
        partial_success: false,
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.shared.refused(self.peer) {
            return Ok(reject());
        }
        let accounts = &self.shared.config.accounts;
        Ok(match accounts.check_key(user, offer.public_key) {
            Some(_) => Auth::Accept,
            None => reject(),
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let Ok(attempt) = self.shared.begin(self.peer, user, "publickey") else {
            return Ok(reject());
        };
        match self.shared.config.accounts.check_key(user, key.public_key) {
            Some(account) => {
                if let Some(attempt) = attempt {
                    attempt.succeeded();
                }
                tracing::info!(user = ?user, method = "publickey", "SFTP login");
                self.account = Some(account);
                Ok(Auth::Accept)
            }
            None => {
                self.shared.record_failure(self.peer, attempt, user, "publickey");
                Ok(reject())
            }
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        // Reserved before the (slow) hash: parallel guesses count while they run.
        let Ok(attempt) = self.shared.begin(self.peer, user, "password") else {
            return Ok(reject());
        };
        let account = self
            .shared
            .config
            .accounts
            .check_password_off_runtime(user, password)
            .await;
        match account {
            Some(account) => {
                if let Some(attempt) = attempt {
                    attempt.succeeded();
                }
                tracing::info!(user = ?user, method = "password", "SFTP login");
                self.account = Some(account);
                Ok(Auth::Accept)
            }
            None => {
                self.shared.record_failure(self.peer, attempt, user, "password");
                Ok(reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.account.is_none() {
            return Ok(());
        }
        // Each channel holds a place until its session ends: past the cap, new channels are refused
        // and the connection's other sessions go on.
        match Arc::clone(&self.sessions).try_acquire_owned() {
            Ok(place) => {
                self.channels.insert(channel.id(), (channel, place));
                reply.accept().await;
            }
            Err(_) => {
                tracing::warn!(
                    user = ?self.account.as_ref().map(|a| a.name.as_str()),
                    max = self.shared.config.limits.max_sessions,
                    "too many SFTP sessions on one connection; refusing another"
                );
                reply.reject(russh::ChannelOpenFailure::ResourceShortage).await;
            }
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(account), true) = (&self.account, name == "sftp") else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        let Some((channel, place)) = self.channels.remove(&channel_id) else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        session.channel_success(channel_id)?;
        let grid = Arc::clone(&self.shared.config.grid);
        let context = session::SessionContext {
            root: DirNode::new(&grid, account.root.clone()),
            grid,
            user: account.name.clone(),
            spool_dir: self.shared.config.spool_dir.clone(),
            limits: self.shared.config.limits.clone(),
            reading_ahead: Arc::clone(&self.reading_ahead),
            counters: Arc::clone(
                self.shared
                    .config
                    .counters
                    .frontend(crate::counters::Frontend::Sftp),
            ),
        };
        let open = context.counters.session();
        let handle = session.handle();
        tokio::spawn(async move {
            session::run(channel.into_stream(), context).await;
            drop(open);
            let _ = handle.close(channel_id).await;
            drop(place);
        });
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}
