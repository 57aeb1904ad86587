//! The introducer: where storage servers publish signed announcements and clients learn about them.
//!
//! Tahoe's introducer speaks Foolscap only; Tessera's speaks HTTPS with the same pinning as the
//! storage protocol. Its address (`private/introducer.furl`, written at every start) has the NURL form
//! `pb://<SPKI hash>@host:port/<swissnum>#v=1`. Every request carries
//! `Authorization: Tahoe-LAFS <base64 swissnum>`.
//!
//! - `POST /introducer/v1/publish`: a signed announcement (JSON `{ann, sig, key}`); the introducer
//!   verifies the ed25519 signature and keeps the highest seqnum per key. 200 with `{epoch}` (its
//!   run), or 400 with a reason.
//! - `GET /introducer/v1/epoch?known=E&wait=S`: `{epoch}`, at once when it is not `E`, else after
//!   at most `S` ≤ 60 seconds. Publishers hold it between re-announcements, so that an
//!   introducer that restarts is re-announced to at once (as Tahoe's Foolscap publishers do on
//!   reconnecting), not up to 5 minutes later.
//! - `GET /introducer/v1/announcements?since=G&epoch=E&wait=S`: as soon as the generation exceeds
//!   `since` (a long poll of at most `S` ≤ 60 seconds), `{generation, epoch, announcements}`: the
//!   announcements kept after generation `since` when `epoch` is this run's (a random number
//!   drawn at start, given in every answer), else every announcement, at once (a subscriber of an
//!   earlier run, or one that names no epoch, as before epochs). A change thus costs each
//!   subscriber the changed announcements, not the whole list.
//!
//! Bounds: a publish body is at most [`MAX_PUBLISH_BODY`] bytes (413 past it), an announcement's
//! text at most 4 KiB and its nickname at most 256 bytes (400), and the introducer keeps at most
//! [`MAX_SERVERS`] servers (503 for a new one past that). Clients read at most
//! [`MAX_LIST_BODY`] bytes of an announcement list and [`MAX_PUBLISH_REPLY`] of a publish reply
//! (an error past them). Nicknames are logged escaped.
//!
//! Servers re-publish every few minutes, so a restarted introducer relearns the grid; clients keep
//! what they learned (and cache it in `private/introducer_PETNAME_cache.yaml`, `default` for
//! `[client] introducer.furl`), so they go on working while the introducer is down. A node may use
//! several introducers (`introducer_config`): one publisher and one subscriber per introducer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::announcement::{AnnouncementBody, SignedAnnouncement, shown_nickname, verify};

/// The longest a subscriber's poll is held open.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a storage server re-publishes.
const REPUBLISH: Duration = Duration::from_secs(300);
/// The largest publish request body: one signed announcement (its text at most
/// [`crate::announcement::MAX_ANNOUNCEMENT_TEXT`] bytes) with room for JSON escapes, the
/// signature and the key.
pub(crate) const MAX_PUBLISH_BODY: usize = 16 * 1024;
/// The most servers an introducer keeps announcements of.
pub(crate) const MAX_SERVERS: usize = 1000;
/// The largest announcement list a subscriber reads: every server's announcement at its largest.
pub(crate) const MAX_LIST_BODY: usize = MAX_SERVERS * (MAX_PUBLISH_BODY + 64) + 1024;
/// The largest answer to a publish a publisher reads (a reason line).
pub(crate) const MAX_PUBLISH_REPLY: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnnouncementList {
    generation: u64,
    /// The introducer's run (absent from an introducer before epochs).
    #[serde(default)]
    epoch: Option<u64>,
    announcements: Vec<SignedAnnouncement>,
}

#[derive(Debug)]
struct IntroducerState {
    swissnum: String,
    /// Ends long polls when the introducer shuts down (graceful shutdown waits for open requests).
    stopping: watch::Receiver<bool>,
    /// Per server: seqnum, the generation it was kept at, the announcement.
    announcements: Mutex<BTreeMap<String, (u64, u64, SignedAnnouncement)>>,
    /// Bumped (under the `announcements` lock) for each announcement kept.
    generation: watch::Sender<u64>,
    /// This run's: a subscriber that names it gets only what changed since its generation.
    epoch: u64,
    counts: Counts,
}

/// What the introducer has done since it started (its `/statistics` and front page).
#[derive(Debug, Default)]
struct Counts {
    /// Publish requests answered (any answer).
    publishes: AtomicU64,
    /// Announcements kept (newer than the one known from their server).
    kept: AtomicU64,
    /// Announcement lists sent to subscribers.
    lists: AtomicU64,
    /// Bytes of those lists.
    list_bytes: AtomicU64,
}

impl frontends::web::status::StatusSource for IntroducerState {
    fn write_metrics(&self, out: &mut frontends::web::Exposition) {
        let servers = self
            .announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        out.gauge(
            "tessera_introducer_servers",
            "Storage servers the introducer holds an announcement of.",
            &[("", servers as f64)],
        );
        for (name, help, value) in [
            (
                "tessera_introducer_publishes",
                "Publish requests answered.",
                &self.counts.publishes,
            ),
            (
                "tessera_introducer_announcements_kept",
                "Announcements kept (newer than the known one).",
                &self.counts.kept,
            ),
            (
                "tessera_introducer_lists_sent",
                "Announcement lists sent to subscribers.",
                &self.counts.lists,
            ),
            (
                "tessera_introducer_list_bytes_sent",
                "Bytes of announcement lists sent.",
                &self.counts.list_bytes,
            ),
        ] {
            out.counter(name, help, &[("", value.load(Ordering::Relaxed) as f64)]);
        }
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let servers = self
            .announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        vec![
            ("introducer.servers".into(), servers as u64),
            (
                "introducer.publishes".into(),
                self.counts.publishes.load(Ordering::Relaxed),
            ),
            (
                "introducer.announcements_kept".into(),
                self.counts.kept.load(Ordering::Relaxed),
            ),
            (
                "introducer.lists_sent".into(),
                self.counts.lists.load(Ordering::Relaxed),
            ),
            (
                "introducer.list_bytes_sent".into(),
                self.counts.list_bytes.load(Ordering::Relaxed),
            ),
        ]
    }

    fn summary(&self) -> Vec<(String, String)> {
        let servers = self
            .announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        vec![
            ("Storage servers announced".into(), servers.to_string()),
            (
                "Announcements received".into(),
                self.counts.publishes.load(Ordering::Relaxed).to_string(),
            ),
            (
                "Announcement lists sent".into(),
                self.counts.lists.load(Ordering::Relaxed).to_string(),
            ),
        ]
    }
}

fn authorized(state: &IntroducerState, headers: &HeaderMap) -> bool {
    let expected = format!("Tahoe-LAFS {}", data_encoding_base64(state.swissnum.as_bytes()));
    headers
        .get("authorization")
        .is_some_and(|v| storage::tls::constant_time_eq(v.as_bytes(), expected.as_bytes()))
}

fn data_encoding_base64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "not authorized: wrong or missing swissnum\n",
    )
        .into_response()
}

async fn publish(State(state): State<Arc<IntroducerState>>, headers: HeaderMap, body: Body) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    state.counts.publishes.fetch_add(1, Ordering::Relaxed);
    let body = match Limited::new(body, MAX_PUBLISH_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an announcement is at most {MAX_PUBLISH_BODY} bytes\n"),
            )
                .into_response();
        }
        Err(_) => return (StatusCode::BAD_REQUEST, "the request body was cut off\n").into_response(),
    };
    let signed: SignedAnnouncement = match serde_json::from_slice(&body) {
        Ok(signed) => signed,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not an announcement: {e}\n")).into_response(),
    };
    let (server_id, parsed) = match verify(&signed) {
        Ok(verified) => verified,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
    };
    match keep(&state, &server_id, parsed.seqnum, signed) {
        Some(true) => {
            state.counts.kept.fetch_add(1, Ordering::Relaxed);
            info!(server = %server_id, nickname = %shown_nickname(&parsed.storage.nickname), "announcement received");
        }
        Some(false) => {}
        None => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the introducer already knows {MAX_SERVERS} servers and takes no more\n"),
            )
                .into_response();
        }
    }
    axum::Json(Epoch { epoch: state.epoch }).into_response()
}

/// The introducer's run: the answer to a publish and to `GET /introducer/v1/epoch`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Epoch {
    epoch: u64,
}

#[derive(Debug, Deserialize)]
struct EpochQuery {
    known: Option<u64>,
    wait: Option<u64>,
}

/// `GET /introducer/v1/epoch?known=E&wait=S`: the introducer's epoch, at once when it is not `E`,
/// else after `S` ≤ 60 seconds (or at shutdown). A publisher holds this poll between
/// re-announcements: a restarted introducer (new epoch), or one that went away and came back, is
/// re-announced to at once instead of at the next round.
async fn epoch(
    State(state): State<Arc<IntroducerState>>,
    headers: HeaderMap,
    Query(query): Query<EpochQuery>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    if query.known == Some(state.epoch) {
        let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(MAX_WAIT);
        let mut stopping = state.stopping.clone();
        let _ = tokio::time::timeout(wait, stopping.wait_for(|stop| *stop)).await;
    }
    axum::Json(Epoch { epoch: state.epoch }).into_response()
}

/// Keeps an announcement if it is newer than the one known from its server; whether it was, or
/// `None` for a new server past [`MAX_SERVERS`] (refused).
fn keep(state: &IntroducerState, server_id: &str, seqnum: u64, signed: SignedAnnouncement) -> Option<bool> {
    let mut announcements = state.announcements.lock().unwrap_or_else(PoisonError::into_inner);
    match announcements.get(server_id) {
        Some((known, _, _)) if *known >= seqnum => Some(false),
        None if announcements.len() >= MAX_SERVERS => None,
        _ => {
            // Under the lock, so that a poll sees each announcement with the generation it
            // belongs to.
            let generation = *state.generation.borrow() + 1;
            announcements.insert(server_id.to_owned(), (seqnum, generation, signed));
            state.generation.send_replace(generation);
            Some(true)
        }
    }
}

#[derive(Debug, Deserialize)]
struct PollQuery {
    since: Option<u64>,
    epoch: Option<u64>,
    wait: Option<u64>,
}

async fn announcements(
    State(state): State<Arc<IntroducerState>>,
    headers: HeaderMap,
    Query(query): Query<PollQuery>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    // A subscriber of this run gets what changed since its generation. One of another run gets
    // everything at once (its generation means nothing here); one that names no run (as before
    // epochs) gets everything once the generation passes its own, as it always did.
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(MAX_WAIT);
    let (wait_past, since, wait) = match query.epoch {
        Some(epoch) if epoch == state.epoch => {
            let since = query.since.unwrap_or(0);
            (since, since, wait)
        }
        Some(_) => (0, 0, Duration::ZERO),
        None => (query.since.unwrap_or(0), 0, wait),
    };
    let mut generation = state.generation.subscribe();
    let mut stopping = state.stopping.clone();
    tokio::select! {
        _ = tokio::time::timeout(wait, generation.wait_for(|g| *g > wait_past)) => {}
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    let list = {
        let announcements = state.announcements.lock().unwrap_or_else(PoisonError::into_inner);
        AnnouncementList {
            generation: *state.generation.borrow(),
            epoch: Some(state.epoch),
            announcements: announcements
                .values()
                .filter(|(_, kept_at, _)| *kept_at > since)
                .map(|(_, _, a)| a.clone())
                .collect(),
        }
    };
    let body = match serde_json::to_vec(&list) {
        Ok(body) => body,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    state.counts.lists.fetch_add(1, Ordering::Relaxed);
    state
        .counts
        .list_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn new_state(swissnum: String, stopping: watch::Receiver<bool>) -> Arc<IntroducerState> {
    Arc::new(IntroducerState {
        swissnum,
        stopping,
        announcements: Mutex::new(BTreeMap::new()),
        generation: watch::Sender::new(0),
        epoch: rand::random(),
        counts: Counts::default(),
    })
}

fn router_with_state(state: Arc<IntroducerState>) -> Router {
    Router::new()
        .route("/introducer/v1/publish", post(publish))
        .route("/introducer/v1/announcements", get(announcements))
        .route("/introducer/v1/epoch", get(epoch))
        .with_state(state)
}

#[cfg(test)]
fn router(swissnum: String, stopping: watch::Receiver<bool>) -> Router {
    router_with_state(new_state(swissnum, stopping))
}

/// The introducer's service task and its figures (for the node's status pages).
pub(crate) type Serving = (
    tokio::task::JoinHandle<anyhow::Result<()>>,
    Arc<dyn frontends::web::status::StatusSource>,
);

/// Runs the introducer service of node `dir` until `shutdown` resolves.
pub(crate) async fn serve(
    dir: &Path,
    listener: tokio::net::TcpListener,
    identity: storage::tls::TlsIdentity,
    location: &[String],
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Serving> {
    let swissnum_path = dir.join("private").join("introducer.swissnum");
    let swissnum = std::fs::read_to_string(&swissnum_path)
        .with_context(|| format!("cannot read {}", swissnum_path.display()))?
        .trim()
        .to_owned();
    let port = listener.local_addr()?.port();
    let hint = location
        .first()
        .cloned()
        .unwrap_or_else(|| format!("127.0.0.1:{port}"));
    let (host, hint_port) = hint.rsplit_once(':').context("tub.location must be HOST:PORT")?;
    let address = storage::nurl::Nurl::new(identity.spki_hash(), host, hint_port.parse()?, swissnum.clone());
    crate::nodedir::write_private(
        &dir.join("private").join("introducer.furl"),
        format!("{address}\n").as_bytes(),
    )?;
    // The address holds the swissnum, a secret: it goes to a 0600 file, not to the console or log.
    crate::output::line(&format!(
        "introducer running; its address is in {}",
        dir.join("private").join("introducer.furl").display()
    ))?;
    let state = new_state(swissnum, shutdown.clone());
    let router = router_with_state(Arc::clone(&state));
    let mut stop = shutdown;
    let stopped = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let task = tokio::spawn(async move {
        storage::http::serve(listener, &identity, router, stopped)
            .await
            .context("the introducer failed")
    });
    Ok((task, state))
}

/// One HTTPS request to a pinned peer on a fresh connection; an answer over `limit` bytes is an
/// error.
async fn request(
    address: &storage::nurl::Nurl,
    method: hyper::Method,
    path_and_query: &str,
    body: Bytes,
    timeout: Duration,
    limit: usize,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let work = async {
        let config = storage::tls::pinned_client_config(&address.spki_hash)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect((address.host.as_str(), address.port)).await?;
        let name = rustls::pki_types::ServerName::try_from(address.host.clone()).unwrap_or_else(|_| {
            rustls::pki_types::ServerName::try_from("tessera").expect("invariant: a valid name")
        });
        let tls = connector.connect(name, tcp).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", address.authority())
            .header(
                "authorization",
                format!("Tahoe-LAFS {}", data_encoding_base64(address.swissnum.as_bytes())),
            )
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = match Limited::new(response.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                bail!("the introducer's answer is larger than {limit} bytes; it was not read")
            }
            Err(e) => return Err(anyhow::anyhow!(e).context("the introducer's answer was cut off")),
        };
        Ok::<_, anyhow::Error>((status, bytes))
    };
    tokio::time::timeout(timeout, work)
        .await
        .context("the introducer did not answer in time")?
}

/// Reads `[client] introducer.furl`.
pub(crate) fn parse_address(text: &str) -> anyhow::Result<storage::nurl::Nurl> {
    text.trim()
        .parse()
        // The address is not repeated: its swissnum is a secret.
        .map_err(|e| anyhow::anyhow!("introducer.furl is not a pb://…#v=1 address: {e}"))
}

/// Publishes one signed announcement to the introducer at `address` (`tessera debug
/// bench-hundred` re-announces its nodes with it).
pub(crate) async fn publish_once(
    address: &storage::nurl::Nurl,
    signed: &SignedAnnouncement,
) -> anyhow::Result<()> {
    let body = Bytes::from(serde_json::to_vec(signed)?);
    let (status, reply) = request(
        address,
        hyper::Method::POST,
        "/introducer/v1/publish",
        body,
        Duration::from_secs(30),
        MAX_PUBLISH_REPLY,
    )
    .await?;
    if !status.is_success() {
        bail!("HTTP {status}: {:?}", String::from_utf8_lossy(&reply).trim());
    }
    Ok(())
}

/// Publishes this storage node's announcement to `introducer` now and every few minutes (one task
/// per introducer: one that is down costs only its own retries).
pub(crate) fn spawn_publisher(
    introducer: crate::introducer_config::IntroducerConfig,
    signed_for: impl Fn(u64) -> anyhow::Result<SignedAnnouncement> + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    let address = introducer.address;
    let petname = introducer.petname;
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            let seqnum = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let next = match signed_for(seqnum) {
                Ok(signed) => {
                    let body = Bytes::from(serde_json::to_vec(&signed).unwrap_or_default());
                    match request(
                        &address,
                        hyper::Method::POST,
                        "/introducer/v1/publish",
                        body,
                        Duration::from_secs(30),
                        MAX_PUBLISH_REPLY,
                    )
                    .await
                    {
                        Ok((status, body)) if status.is_success() => {
                            debug!(introducer = %petname, "announcement published");
                            delay = Duration::from_millis(200);
                            // An introducer before epochs answers 204 without one.
                            match serde_json::from_slice::<Epoch>(&body) {
                                Ok(Epoch { epoch }) => {
                                    tokio::select! {
                                        _ = shutdown.changed() => return,
                                        _ = watch_epoch(&address, epoch, REPUBLISH) => {}
                                    }
                                    Duration::ZERO
                                }
                                Err(_) => REPUBLISH,
                            }
                        }
                        Ok((status, body)) => {
                            warn!(introducer = %petname, status = %status, reason = ?String::from_utf8_lossy(&body).trim(), "introducer refused the announcement");
                            REPUBLISH
                        }
                        Err(e) => {
                            debug!(introducer = %petname, error = %e, "cannot reach the introducer; retrying");
                            delay = (delay * 2).min(Duration::from_secs(10));
                            delay
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot build the announcement");
                    REPUBLISH
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(next) => {}
            }
        }
    });
}

/// Waits until `within` has passed, or the introducer at `address` is of another run than `epoch`
/// (restarted, or replaced), whichever comes first, holding a long poll of its epoch. While it is
/// unreachable it is asked again every few seconds; one without the epoch poll (404) is simply
/// waited for.
async fn watch_epoch(address: &storage::nurl::Nurl, epoch: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut delay = Duration::from_millis(200);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let wait = left.min(MAX_WAIT - Duration::from_secs(5)).as_secs().max(1);
        let path = format!("/introducer/v1/epoch?known={epoch}&wait={wait}");
        let asked = request(
            address,
            hyper::Method::GET,
            &path,
            Bytes::new(),
            Duration::from_secs(wait) + Duration::from_secs(10),
            MAX_PUBLISH_REPLY,
        );
        let pause = match tokio::time::timeout_at(deadline, asked).await {
            Err(_) => return,
            Ok(Ok((status, body))) if status.is_success() => match serde_json::from_slice::<Epoch>(&body) {
                Ok(now) if now.epoch == epoch => {
                    delay = Duration::from_millis(200);
                    Duration::ZERO
                }
                Ok(_) => return,
                Err(_) => left,
            },
            Ok(Ok((StatusCode::NOT_FOUND, _))) => left,
            Ok(_) => {
                delay = (delay * 2).min(Duration::from_secs(10));
                delay
            }
        };
        if !pause.is_zero() {
            let _ = tokio::time::timeout_at(deadline, tokio::time::sleep(pause)).await;
        }
    }
}

/// What a client learned from an introducer.
pub(crate) type Learned = BTreeMap<String, AnnouncementBody>;

/// Where the announcements learned from introducer `petname` are cached (Tahoe's name).
pub(crate) fn cache_path(dir: &Path, petname: &str) -> PathBuf {
    dir.join("private")
        .join(format!("introducer_{petname}_cache.yaml"))
}

/// Announcements cached by an earlier run: at most [`MAX_LIST_BODY`] bytes of file and
/// [`MAX_SERVERS`] announcements (a larger file is not read).
pub(crate) fn load_cache(path: &Path) -> Vec<SignedAnnouncement> {
    let mut list: Vec<SignedAnnouncement> = frontends::textfile::read_bounded(path, MAX_LIST_BODY as u64)
        .ok()
        .and_then(|text| serde_yaml_ng::from_str(&text).ok())
        .unwrap_or_default();
    list.truncate(MAX_SERVERS);
    list
}

/// Verifies announcements, dropping (and logging) bad ones.
pub(crate) fn verified(list: &[SignedAnnouncement]) -> Learned {
    let mut learned = Learned::new();
    for signed in list {
        match verify(signed) {
            Ok((id, body)) => {
                let newer = learned.get(&id).is_none_or(|known| known.seqnum < body.seqnum);
                if newer {
                    learned.insert(id, body);
                }
            }
            Err(e) => warn!("ignoring an announcement: {e:#}"),
        }
    }
    learned
}

/// One long poll: the introducer's announcements once its generation passes `generation` (or its
/// wait ends); of run `epoch`, only those kept since. The answer is read up to [`MAX_LIST_BODY`]
/// bytes.
async fn poll(
    address: &storage::nurl::Nurl,
    generation: u64,
    epoch: Option<u64>,
) -> anyhow::Result<AnnouncementList> {
    let epoch = epoch.map(|e| format!("&epoch={e}")).unwrap_or_default();
    let path = format!(
        "/introducer/v1/announcements?since={generation}{epoch}&wait={}",
        MAX_WAIT.as_secs() - 5
    );
    let (status, body) = request(
        address,
        hyper::Method::GET,
        &path,
        Bytes::new(),
        MAX_WAIT + Duration::from_secs(10),
        MAX_LIST_BODY,
    )
    .await?;
    if !status.is_success() {
        bail!("HTTP {status}: {:?}", String::from_utf8_lossy(&body).trim());
    }
    Ok(serde_json::from_slice::<AnnouncementList>(&body)?)
}

/// Subscribes to `introducer`, calling `update` with every announcement it knows so far (the cache
/// first, then each change), and keeps its cache file (`cache_path`) current.
pub(crate) fn spawn_subscriber(
    dir: PathBuf,
    introducer: crate::introducer_config::IntroducerConfig,
    update: impl Fn(&Learned) + Send + 'static,
    statuses: frontends::web::IntroducerStatuses,
    mut shutdown: watch::Receiver<bool>,
) {
    let cache = cache_path(&dir, &introducer.petname);
    let (address, petname) = (introducer.address, introducer.petname);
    // The address without its swissnum (a secret).
    let shown = format!("{}:{}", address.host, address.port);
    let set_status = move |petname: &str, connected: bool| {
        let summary = if connected {
            format!("{petname}: Connected to {shown}")
        } else {
            format!("{petname}: Not connected to {shown}")
        };
        statuses
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(petname.to_owned(), summary);
    };
    set_status(&petname, false);
    tokio::spawn(async move {
        let mut known: BTreeMap<String, SignedAnnouncement> = BTreeMap::new();
        for signed in load_cache(&cache) {
            if let Ok((id, _)) = verify(&signed) {
                known.insert(id, signed);
            }
        }
        if !known.is_empty() {
            update(&verified(&known.values().cloned().collect::<Vec<_>>()));
        }
        let mut generation = 0u64;
        let mut epoch = None;
        let mut delay = Duration::from_millis(200);
        loop {
            let outcome = tokio::select! {
                _ = shutdown.changed() => return,
                outcome = poll(&address, generation, epoch) => outcome,
            };
            let pause = match outcome {
                Ok(list) => {
                    set_status(&petname, true);
                    // A restarted introducer starts again at generation 0, in a new epoch (and
                    // answers a subscriber of its earlier run with everything).
                    generation = list.generation;
                    epoch = list.epoch;
                    delay = Duration::from_millis(200);
                    let mut changed = false;
                    for signed in list.announcements {
                        if let Ok((id, body)) = verify(&signed) {
                            let newer = known
                                .get(&id)
                                .and_then(|old| verify(old).ok())
                                .is_none_or(|(_, old)| old.seqnum < body.seqnum);
                            // As many servers as an introducer keeps; a hostile one cannot
                            // grow this by answering with new keys poll after poll.
                            let room = known.contains_key(&id) || known.len() < MAX_SERVERS;
                            if newer && room {
                                known.insert(id, signed);
                                changed = true;
                            }
                        }
                    }
                    if changed {
                        let all: Vec<SignedAnnouncement> = known.values().cloned().collect();
                        update(&verified(&all));
                        if let Ok(text) = serde_yaml_ng::to_string(&all)
                            && let Err(e) = crate::nodedir::write_private(&cache, text.as_bytes())
                        {
                            warn!(error = %e, "cannot write the introducer cache");
                        }
                    }
                    Duration::ZERO
                }
                Err(e) => {
                    set_status(&petname, false);
                    debug!(introducer = %petname, error = %e, "introducer poll failed; retrying");
                    delay = (delay * 2).min(Duration::from_secs(10));
                    delay
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::announcement::sign;
    use crate::client::Announcement;

    const SWISSNUM: &str = "test-swissnum";

    fn announcement(seed: u8, nickname: &str) -> SignedAnnouncement {
        announcement_at(seed, nickname, 1)
    }

    fn announcement_at(seed: u8, nickname: &str, seqnum: u64) -> SignedAnnouncement {
        let spki = storage::tls::TlsIdentity::generate().unwrap().spki_hash();
        let body = AnnouncementBody {
            version: 0,
            service_name: "storage".into(),
            seqnum,
            nonce: "n".into(),
            my_version: "tessera/0".into(),
            oldest_supported: "tessera/0".into(),
            storage: Announcement {
                nickname: nickname.into(),
                furl: format!("pb://{}@tcp:127.0.0.1:1/swiss", "a".repeat(32)),
                nurls: vec![storage::nurl::Nurl::new(spki, "127.0.0.1", 1, "swiss").to_string()],
                permutation_seed_base32: None,
                web_url: None,
            },
        };
        sign(&body, &SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    /// Serves `router` over TLS on 127.0.0.1:0 until the sender is dropped or set.
    async fn serve_router(router: Router) -> (storage::nurl::Nurl, watch::Sender<bool>) {
        let identity = storage::tls::TlsIdentity::generate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let address = storage::nurl::Nurl::new(identity.spki_hash(), "127.0.0.1", port, SWISSNUM);
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            storage::http::serve(listener, &identity, router, stopped).await
        });
        (address, stop)
    }

    async fn publish_raw(address: &storage::nurl::Nurl, body: Vec<u8>) -> (StatusCode, String) {
        let (status, reply) = request(
            address,
            hyper::Method::POST,
            "/introducer/v1/publish",
            Bytes::from(body),
            Duration::from_secs(30),
            MAX_PUBLISH_REPLY,
        )
        .await
        .unwrap();
        (status, String::from_utf8_lossy(&reply).into_owned())
    }

    #[tokio::test]
    async fn publish_bodies_and_the_server_count_are_bounded() {
        let (_stopping_tx, stopping) = watch::channel(false);
        let (address, _stop) = serve_router(router(SWISSNUM.into(), stopping.clone())).await;
        let (status, reply) = publish_raw(&address, vec![b' '; MAX_PUBLISH_BODY + 1]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
        assert_eq!(reply, "an announcement is at most 16384 bytes\n");
        let signed = serde_json::to_vec(&announcement(1, "fine")).unwrap();
        assert_eq!(publish_raw(&address, signed).await.0, StatusCode::OK);
        let long = serde_json::to_vec(&announcement(2, &"n".repeat(300))).unwrap();
        let (status, reply) = publish_raw(&address, long).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(reply.contains("nickname is 300 bytes; at most 256"), "{reply}");

        // A new server past the limit is refused; known ones still update.
        let state = new_state(SWISSNUM.into(), stopping);
        let signed = announcement(3, "one of many");
        for i in 0..MAX_SERVERS {
            assert!(keep(&state, &format!("v0-{i}"), 1, signed.clone()).unwrap());
        }
        assert_eq!(keep(&state, "v0-new", 1, signed.clone()), None);
        assert!(keep(&state, "v0-7", 2, signed).unwrap());
    }

    #[tokio::test]
    async fn the_introducer_counts_what_it_is_asked_and_sends() {
        use frontends::web::status::StatusSource;
        let (_stopping_tx, stopping) = watch::channel(false);
        let state = new_state(SWISSNUM.into(), stopping);
        let (address, _stop) = serve_router(router_with_state(Arc::clone(&state))).await;
        let signed = announcement(5, "counted");
        publish_once(&address, &signed).await.unwrap();
        // The same announcement again is answered but not kept; a hostile body is answered too.
        publish_once(&address, &signed).await.unwrap();
        assert_eq!(
            publish_raw(&address, b"{}".to_vec()).await.0,
            StatusCode::BAD_REQUEST
        );
        let list = poll(&address, 0, None).await.unwrap();
        assert_eq!(list.announcements.len(), 1);
        let sent = serde_json::to_vec(&list).unwrap().len() as u64;
        let counters: BTreeMap<String, u64> = state.counters().into_iter().collect();
        assert_eq!(counters["introducer.servers"], 1);
        assert_eq!(counters["introducer.publishes"], 3);
        assert_eq!(counters["introducer.announcements_kept"], 1);
        assert_eq!(counters["introducer.lists_sent"], 1);
        assert_eq!(counters["introducer.list_bytes_sent"], sent);
        let mut metrics = frontends::web::Exposition::new(frontends::web::MetricsFormat::Prometheus);
        state.write_metrics(&mut metrics);
        let text = metrics.finish();
        assert!(text.contains("tessera_introducer_publishes_total 3\n"), "{text}");
        assert!(text.contains("tessera_introducer_servers 1\n"), "{text}");
    }

    #[tokio::test]
    async fn a_subscriber_of_this_run_gets_only_what_changed() {
        let (_stopping_tx, stopping) = watch::channel(false);
        let state = new_state(SWISSNUM.into(), stopping);
        let (address, _stop) = serve_router(router_with_state(Arc::clone(&state))).await;
        let nicknames = |list: &AnnouncementList| -> Vec<String> {
            let mut names: Vec<String> = verified(&list.announcements)
                .into_values()
                .map(|body| body.storage.nickname)
                .collect();
            names.sort();
            names
        };
        publish_once(&address, &announcement(1, "a")).await.unwrap();
        publish_once(&address, &announcement(2, "b")).await.unwrap();
        let first = poll(&address, 0, None).await.unwrap();
        assert_eq!(
            (first.generation, nicknames(&first)),
            (2, vec!["a".into(), "b".into()])
        );
        let epoch = first.epoch.unwrap();
        publish_once(&address, &announcement(3, "c")).await.unwrap();
        let next = poll(&address, 2, Some(epoch)).await.unwrap();
        assert_eq!((next.generation, nicknames(&next)), (3, vec!["c".into()]));
        // A re-announcement is a change too; an old one is not.
        publish_once(&address, &announcement_at(1, "a", 5)).await.unwrap();
        publish_once(&address, &announcement_at(2, "b", 1)).await.unwrap();
        let next = poll(&address, 3, Some(epoch)).await.unwrap();
        assert_eq!((next.generation, nicknames(&next)), (4, vec!["a".into()]));
        // A subscriber of another run (a restarted introducer) gets everything, at once.
        let started = std::time::Instant::now();
        let other = poll(&address, 9, Some(epoch.wrapping_add(1))).await.unwrap();
        assert_eq!(nicknames(&other), ["a", "b", "c"]);
        assert_eq!(other.epoch, Some(epoch));
        assert!(started.elapsed() < Duration::from_secs(5));
        // One that names no run gets everything once the generation has passed its own.
        assert_eq!(
            nicknames(&poll(&address, 3, None).await.unwrap()),
            ["a", "b", "c"]
        );
    }

    #[tokio::test]
    async fn answers_from_a_hostile_introducer_are_read_up_to_a_bound() {
        // Valid JSON (trailing whitespace is allowed) past the bound, and a long publish reply.
        let mut list = br#"{"generation": 1, "announcements": []}"#.to_vec();
        list.resize(MAX_LIST_BODY + 1, b' ');
        let hostile = Router::new()
            .route(
                "/introducer/v1/announcements",
                get(move || {
                    let list = list.clone();
                    async move { list }
                }),
            )
            .route(
                "/introducer/v1/publish",
                post(|| async { (StatusCode::BAD_REQUEST, "x".repeat(MAX_PUBLISH_REPLY + 1)) }),
            );
        let (address, _stop) = serve_router(hostile).await;
        let error = poll(&address, 0, None).await.unwrap_err().to_string();
        assert!(error.contains("answer is larger than"), "{error}");
        let error = request(
            &address,
            hyper::Method::POST,
            "/introducer/v1/publish",
            Bytes::new(),
            Duration::from_secs(30),
            MAX_PUBLISH_REPLY,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(error.contains("larger than 4096 bytes"), "{error}");
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(bytes)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn nicknames_cannot_forge_log_lines() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        // A current-thread runtime: every task of the test logs through this subscriber.
        let _guard = tracing::subscriber::set_default(subscriber);
        let (stopping_tx, stopping) = watch::channel(false);
        let (address, _stop) = serve_router(router(SWISSNUM.into(), stopping.clone())).await;
        let forged = "evil\n2026-01-01T00:00:00.000000Z  INFO tessera: FORGED admin logged in";
        let signed = serde_json::to_vec(&announcement(4, forged)).unwrap();
        assert_eq!(publish_raw(&address, signed).await.0, StatusCode::OK);

        // A client learns the server from the introducer and logs it too.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("private")).unwrap();
        let grid = Arc::new(filenode::grid::Grid::new(
            filenode::grid::ClientSecrets {
                lease_secret: vec![1; 32],
                convergence: None,
            },
            filenode::grid::upload::UploadParams::default(),
        ));
        crate::client::follow_introducers(
            dir.path(),
            &[crate::introducer_config::IntroducerConfig {
                petname: "default".into(),
                address,
            }],
            Arc::clone(&grid),
            Default::default(),
            Default::default(),
            Default::default(),
            stopping,
        )
        .unwrap();
        while grid.servers_with_status().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stopping_tx.send(true);
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("announcement received"), "{log}");
        assert!(log.contains("learned a storage server"), "{log}");
        assert!(log.contains(r"evil\n2026-01-01"), "{log}");
        assert!(
            !log.lines()
                .any(|line| line.contains("FORGED") && !line.contains("evil")),
            "{log}"
        );
    }
}
