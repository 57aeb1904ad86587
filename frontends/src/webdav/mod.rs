//! The WebDAV frontend (`[webdav]`): class 1 and 2 (LOCK, so macOS Finder and Windows mount it)
//! over the file-system layer (`filenode::fs`), with dav-server's protocol handling.
//!
//! - **Accounts.** The password accounts SFTP and FTP use (`crate::accounts`), by HTTP Basic
//!   auth; each account's root cap is its `/`. A missing or wrong password gets 401 with
//!   `WWW-Authenticate`; failures count against the client address's login limit
//!   (`crate::login_limit`, as SFTP and FTP), past which a request gets 429. A client sends its
//!   password with every request, and argon2id is slow on purpose: a login that succeeded is
//!   remembered for [`LOGIN_CACHE_TTL`] (a keyed digest of the password, never the password),
//!   and forgotten when the account's entry changes.
//! - **Locks.** dav-server's in-memory lock system, one per user (the same path names different
//!   objects for different users), at most [`MAX_LOCKS`] each.
//! - **Bounds.** Request bodies other than PUT's are read up to 64 KiB (dav-server's bound); a
//!   request target longer than [`MAX_TARGET_BYTES`] gets 414; names and paths are bounded by the
//!   layer's parser; PROPFIND with `Depth: infinity` is refused (403, `propfind-finite-depth`);
//!   a COPY creates at most [`files::MAX_COPY_OBJECTS`] objects; PUT bodies go to the encrypted
//!   spool under the per-user quota, never to memory; connections and header timeouts are the
//!   web server's ([`crate::web::serve`]).
//! - **Paths** are the layer's: `/uri/CAP/...` reaches any cap; names are NFC.

mod files;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem, LsFuture};
use dav_server::memls::MemLs;
use dav_server::{DavHandler, DavMethod, DavMethodSet};
use filenode::fs::Fs;
use filenode::grid::Grid;
use filenode::node::DirNode;
use sha2::{Digest, Sha256};

use crate::SpoolQuota;
use crate::accounts::AccountsFile;
use crate::counters::{Frontend, FrontendCounters, Op};
use crate::login_limit::LoginLimiter;
use files::{DavUser, GridDav};

/// How long a successful login is remembered (see the module).
pub const LOGIN_CACHE_TTL: Duration = Duration::from_secs(60);
/// The longest request target (path and query) accepted, in bytes.
pub const MAX_TARGET_BYTES: usize = 8192;
/// Locks one user may hold at once.
pub const MAX_LOCKS: usize = 1024;
/// Failed logins allowed per source address within [`FAILURE_WINDOW`] (as SFTP and FTP).
const MAX_FAILURES: u32 = 5;
/// How long failures count.
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// The realm of the Basic challenge.
const REALM: &str = "Basic realm=\"Tessera\", charset=\"UTF-8\"";

/// The WebDAV server's configuration.
#[derive(Clone)]
pub struct WebdavConfig {
    /// The grid.
    pub grid: Arc<Grid>,
    /// The accounts (shared with SFTP and FTP).
    pub accounts: Arc<AccountsFile>,
    /// Where uploads are spooled (`None`: the node's temporary directory).
    pub spool_dir: Option<PathBuf>,
    /// Bytes of uploads in progress per user.
    pub spool_quota: Arc<SpoolQuota>,
    /// Connections and header timeouts.
    pub limits: crate::web::ServeLimits,
    /// How long a failed login waits before its 401 (slows guessing on one connection).
    pub failure_delay: Duration,
    /// The node's frontend figures (shared with the web gateway, which shows them), counted
    /// under `frontend="webdav"`.
    pub counters: Arc<crate::Counters>,
}

impl std::fmt::Debug for WebdavConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebdavConfig")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A login remembered: the digest of the password that succeeded, the account's password hash
/// then (a changed entry forgets it) and when it was made.
struct Remembered {
    digest: [u8; 32],
    hash: String,
    at: Instant,
}

struct Server {
    config: WebdavConfig,
    limiter: LoginLimiter,
    /// The key of the remembered passwords' digests (per process).
    digest_key: [u8; 32],
    remembered: Mutex<HashMap<String, Remembered>>,
    /// One handler (and lock system) per user.
    handlers: Mutex<HashMap<String, DavHandler<DavUser>>>,
}

/// Serves WebDAV on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: WebdavConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, config, None, shutdown).await
}

/// [`serve`], over TLS with `tls` when it is given (`[webdav] port = ssl:…`).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: WebdavConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = config.limits;
    crate::web::serve_tls(listener, router(config), limits, tls, shutdown).await
}

/// The WebDAV router (every path, every method).
pub fn router(config: WebdavConfig) -> Router {
    let server = Arc::new(Server {
        config,
        limiter: LoginLimiter::new(MAX_FAILURES, FAILURE_WINDOW),
        digest_key: rand::random(),
        remembered: Mutex::new(HashMap::new()),
        handlers: Mutex::new(HashMap::new()),
    });
    let counters = Arc::clone(server.config.counters.frontend(Frontend::Webdav));
    counters.set_spool(&server.config.spool_quota);
    Router::new()
        .fallback(handle)
        .with_state(server)
        .layer(axum::middleware::from_fn_with_state(counters, count))
}

/// Counts a request's body bytes in and out as they stream, the operation its method asks for
/// and, when it fails, why. A 401 is a login's challenge (every client's first request gets one)
/// or a failed login, counted as such, not as a failed operation.
async fn count(
    State(counters): State<Arc<FrontendCounters>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let op = match request.method().as_str() {
        "PUT" => Op::Upload,
        "GET" | "HEAD" => Op::Download,
        "PROPFIND"
            if request
                .headers()
                .get("depth")
                .is_some_and(|d| d.as_bytes() == b"0") =>
        {
            Op::Stat
        }
        "PROPFIND" => Op::List,
        "MKCOL" => Op::Mkdir,
        "DELETE" => Op::Delete,
        "MOVE" => Op::Rename,
        _ => Op::Other,
    };
    let request = request.map(|body| crate::web::counting_body(body, Arc::clone(&counters), true));
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if status != 401 {
        counters.operation(op);
        if status >= 400 && status != 429 {
            counters.error(crate::web::error_kind_of_status(status));
        }
    }
    response.map(|body| crate::web::counting_body(body, counters, false))
}

fn challenge() -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "a user name and password are needed\n").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    response
}

/// The user and password of a Basic `Authorization` header.
fn basic_credentials(request: &Request) -> Option<(String, String)> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || encoded.len() > 1024 {
        return None;
    }
    let decoded = data_encoding::BASE64.decode(encoded.trim().as_bytes()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

impl Server {
    fn digest(&self, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.digest_key);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// The root of a user whose login is remembered and still current.
    fn remembered_root(&self, user: &str, password: &str) -> Option<filenode::cap::DirCap> {
        let accounts = self.config.accounts.current();
        let account = accounts.get(user)?;
        let hash = account.password_hash.as_deref()?;
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = remembered.get(user)?;
        let fresh = entry.at.elapsed() < LOGIN_CACHE_TTL && entry.hash == hash;
        if !fresh {
            remembered.remove(user);
            return None;
        }
        (entry.digest == self.digest(password)).then(|| account.root.clone())
    }

    fn remember(&self, user: &str, password: &str, hash: String) {
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        remembered.retain(|_, r| r.at.elapsed() < LOGIN_CACHE_TTL);
        remembered.insert(
            user.to_owned(),
            Remembered {
                digest: self.digest(password),
                hash,
                at: Instant::now(),
            },
        );
    }

    /// Checks a request's credentials: the user's name and root, or the response to send.
    async fn login(
        &self,
        credentials: Option<(String, String)>,
        peer: SocketAddr,
    ) -> Result<(String, filenode::cap::DirCap), Response> {
        let Some((user, password)) = credentials else {
            return Err(challenge());
        };
        if let Some(root) = self.remembered_root(&user, &password) {
            return Ok((user, root));
        }
        let ip = peer.ip();
        let Some(attempt) = self.limiter.begin(ip, &user, Instant::now()) else {
            self.config.counters.frontend(Frontend::Webdav).login_failed();
            tracing::warn!(user = %user.escape_debug(), %ip, "WebDAV login refused: too many failed logins from this address");
            tokio::time::sleep(self.config.failure_delay).await;
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins from this address; try again later\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(FAILURE_WINDOW.as_secs()));
            return Err(response);
        };
        let checked = self
            .config
            .accounts
            .check_password_off_runtime(&user, &password)
            .await;
        match checked {
            Some(account) => {
                attempt.succeeded();
                tracing::info!(user = %account.name.escape_debug(), %ip, "WebDAV login");
                if let Some(hash) = account.password_hash.clone() {
                    self.remember(&user, &password, hash);
                }
                Ok((account.name, account.root))
            }
            None => {
                self.config.counters.frontend(Frontend::Webdav).login_failed();
                let failures = attempt.failed();
                tracing::warn!(user = %user.escape_debug(), %ip, failures, "WebDAV login failed");
                tokio::time::sleep(self.config.failure_delay).await;
                Err(challenge())
            }
        }
    }

    /// The handler of `user` (made at their first request).
    fn handler(&self, user: &str) -> DavHandler<DavUser> {
        let mut handlers = self
            .handlers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        handlers
            .entry(user.to_owned())
            .or_insert_with(|| {
                // No PATCH (SabreDAV's partial update): a file is written whole.
                let mut methods = DavMethodSet::all();
                methods.remove(DavMethod::Patch);
                DavHandler::builder()
                    .methods(methods)
                    .filesystem(Box::new(GridDav))
                    .locksystem(Box::new(BoundedLocks::new()))
                    .read_buf_size(256 * 1024)
                    .autoindex(false)
                    .build_handler()
            })
            .clone()
    }
}

/// Refuses what the server does not take before anything else is done.
fn refused(request: &Request) -> Option<Response> {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_TARGET_BYTES {
        return Some((StatusCode::URI_TOO_LONG, "the request target is too long\n").into_response());
    }
    let infinite = request
        .headers()
        .get("depth")
        .and_then(|d| d.to_str().ok())
        .is_some_and(|d| d.trim().eq_ignore_ascii_case("infinity"));
    if request.method().as_str() == "PROPFIND" && infinite {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                    <D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n";
        let mut response = (StatusCode::FORBIDDEN, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        );
        return Some(response);
    }
    None
}

async fn handle(State(server): State<Arc<Server>>, mut request: Request) -> Response {
    if let Some(response) = refused(&request) {
        return response;
    }
    // dav-server lets a litmus test client ask for depth infinity: nobody else may.
    request.headers_mut().remove("x-litmus");
    // Set by the server for each connection (absent only when a test calls the router itself).
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |ConnectInfo(peer)| *peer);
    let (user, root) = match server.login(basic_credentials(&request), peer).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let grid = &server.config.grid;
    let credentials = DavUser {
        name: user.clone(),
        fs: Fs::new(grid, DirNode::new(grid, root)),
        spool_dir: server.config.spool_dir.clone(),
        spool_quota: Arc::clone(&server.config.spool_quota),
        copies_left: Arc::new(AtomicUsize::new(files::MAX_COPY_OBJECTS)),
    };
    let handler = server.handler(&user);
    handler
        .handle_guarded(request, user, credentials)
        .await
        .map(Body::new)
}

/// The longest a lock lasts (a client asking for longer, or for no timeout, gets this).
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// dav-server's in-memory locks, bounded: at most [`MAX_LOCKS`] at once, each for at most
/// [`MAX_LOCK_TIMEOUT`]. `MemLs` never forgets an expired lock by itself, so the locks made are
/// kept here too (token, path, expiry), and the expired ones are unlocked before a new one is
/// counted.
#[derive(Debug, Clone)]
struct BoundedLocks {
    inner: Box<MemLs>,
    held: Arc<Mutex<HashMap<String, (DavPath, Instant)>>>,
}

impl BoundedLocks {
    fn new() -> Self {
        BoundedLocks {
            inner: MemLs::new(),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (DavPath, Instant)>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn bounded(timeout: Option<Duration>) -> Duration {
    timeout.map_or(MAX_LOCK_TIMEOUT, |t| t.min(MAX_LOCK_TIMEOUT))
}

impl DavLockSystem for BoundedLocks {
    fn lock(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        owner: Option<&xmltree::Element>,
        timeout: Option<Duration>,
        shared: bool,
        deep: bool,
    ) -> LsFuture<'_, Result<DavLock, DavLock>> {
        let path = path.clone();
        let principal = principal.map(str::to_owned);
        let owner = owner.cloned();
        let timeout = bounded(timeout);
        Box::pin(async move {
            let now = Instant::now();
            let expired: Vec<(String, DavPath)> = {
                let mut held = self.held();
                let expired = held
                    .iter()
                    .filter(|(_, (_, until))| *until <= now)
                    .map(|(token, (path, _))| (token.clone(), path.clone()))
                    .collect::<Vec<_>>();
                for (token, _) in &expired {
                    held.remove(token);
                }
                expired
            };
            for (token, path) in expired {
                let _ = self.inner.unlock(&path, &token).await;
            }
            if self.held().len() >= MAX_LOCKS {
                tracing::info!(max = MAX_LOCKS, "WebDAV LOCK refused: too many locks");
                // Refused as a conflicting lock would be (423 Locked).
                return Err(DavLock {
                    token: String::new(),
                    path: Box::new(path),
                    principal,
                    owner: None,
                    timeout_at: None,
                    timeout: None,
                    shared: false,
                    deep: false,
                });
            }
            let lock = self
                .inner
                .lock(
                    &path,
                    principal.as_deref(),
                    owner.as_ref(),
                    Some(timeout),
                    shared,
                    deep,
                )
                .await?;
            self.held().insert(lock.token.clone(), (path, now + timeout));
            Ok(lock)
        })
    }

    fn unlock(&'_ self, path: &DavPath, token: &str) -> LsFuture<'_, Result<(), ()>> {
        self.held().remove(token);
        self.inner.unlock(path, token)
    }

    fn refresh(
        &'_ self,
        path: &DavPath,
        token: &str,
        timeout: Option<Duration>,
    ) -> LsFuture<'_, Result<DavLock, ()>> {
        let timeout = bounded(timeout);
        if let Some((_, until)) = self.held().get_mut(token) {
            *until = Instant::now() + timeout;
        }
        self.inner.refresh(path, token, Some(timeout))
    }

    fn check(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        ignore_principal: bool,
        deep: bool,
        submitted_tokens: &[String],
    ) -> LsFuture<'_, Result<(), DavLock>> {
        self.inner
            .check(path, principal, ignore_principal, deep, submitted_tokens)
    }

    fn discover(&'_ self, path: &DavPath) -> LsFuture<'_, Vec<DavLock>> {
        self.inner.discover(path)
    }

    fn delete(&'_ self, path: &DavPath) -> LsFuture<'_, Result<(), ()>> {
        // The locks at and below `path` go with it.
        let prefix = path.as_bytes().to_vec();
        self.held().retain(|_, (held, _)| {
            let held = held.as_bytes();
            !(held.starts_with(&prefix)
                && (held.len() == prefix.len() || prefix.ends_with(b"/") || held[prefix.len()] == b'/'))
        });
        self.inner.delete(path)
    }
}
