//! The introducer: where storage servers publish signed announcements and clients learn about them.
//!
//! Tahoe's introducer speaks Foolscap only; Tessera's speaks HTTPS with the same pinning as the
//! storage protocol. Its address (`private/introducer.furl`, written at every start) has the NURL form
//! `pb://<SPKI hash>@host:port/<swissnum>#v=1`. Every request carries
//! `Authorization: Tahoe-LAFS <base64 swissnum>`.
//!
//! - `POST /introducer/v1/publish`: a signed announcement (JSON `{ann, sig, key}`); the introducer
//!   verifies the ed25519 signature and keeps the highest seqnum per key. 204, or 400 with a reason.
//! - `GET /introducer/v1/announcements?since=G&wait=S`: every announcement, as
//!   `{generation, announcements}`, as soon as the generation exceeds `since` (a long poll of at most
//!   `S` ≤ 60 seconds).
//!
//! Servers re-publish every few minutes, so a restarted introducer relearns the grid; clients keep
//! what they learned (and cache it in `private/introducer_default_cache.yaml`), so they go on working
//! while the introducer is down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::announcement::{AnnouncementBody, SignedAnnouncement, verify};

/// The longest a subscriber's poll is held open.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a storage server re-publishes.
const REPUBLISH: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnnouncementList {
    generation: u64,
    announcements: Vec<SignedAnnouncement>,
}

#[derive(Debug)]
struct IntroducerState {
    swissnum: String,
    /// Ends long polls when the introducer shuts down (graceful shutdown waits for open requests).
    stopping: watch::Receiver<bool>,
    announcements: Mutex<BTreeMap<String, (u64, SignedAnnouncement)>>,
    generation: watch::Sender<u64>,
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

async fn publish(State(state): State<Arc<IntroducerState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let signed: SignedAnnouncement = match serde_json::from_slice(&body) {
        Ok(signed) => signed,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not an announcement: {e}\n")).into_response(),
    };
    let (server_id, parsed) = match verify(&signed) {
        Ok(verified) => verified,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
    };
    let changed = {
        let mut announcements = state.announcements.lock().unwrap_or_else(PoisonError::into_inner);
        match announcements.get(&server_id) {
            Some((seqnum, _)) if *seqnum >= parsed.seqnum => false,
            _ => {
                announcements.insert(server_id.clone(), (parsed.seqnum, signed));
                true
            }
        }
    };
    if changed {
        info!(server = %server_id, nickname = %parsed.storage.nickname, "announcement received");
        state.generation.send_modify(|g| *g += 1);
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
struct PollQuery {
    since: Option<u64>,
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
    let since = query.since.unwrap_or(0);
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(MAX_WAIT);
    let mut generation = state.generation.subscribe();
    let mut stopping = state.stopping.clone();
    tokio::select! {
        _ = tokio::time::timeout(wait, generation.wait_for(|g| *g > since)) => {}
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    let list = {
        let announcements = state.announcements.lock().unwrap_or_else(PoisonError::into_inner);
        AnnouncementList {
            generation: *state.generation.borrow(),
            announcements: announcements.values().map(|(_, a)| a.clone()).collect(),
        }
    };
    axum::Json(list).into_response()
}

fn router(swissnum: String, stopping: watch::Receiver<bool>) -> Router {
    let state = Arc::new(IntroducerState {
        swissnum,
        stopping,
        announcements: Mutex::new(BTreeMap::new()),
        generation: watch::Sender::new(0),
    });
    Router::new()
        .route("/introducer/v1/publish", post(publish))
        .route("/introducer/v1/announcements", get(announcements))
        .with_state(state)
}

/// Runs the introducer service of node `dir` until `shutdown` resolves.
pub(crate) async fn serve(
    dir: &Path,
    listener: tokio::net::TcpListener,
    identity: storage::tls::TlsIdentity,
    location: &[String],
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
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
    let router = router(swissnum, shutdown.clone());
    let mut stop = shutdown;
    let stopped = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    Ok(tokio::spawn(async move {
        storage::http::serve(listener, &identity, router, stopped)
            .await
            .context("the introducer failed")
    }))
}

/// One HTTPS request to a pinned peer on a fresh connection.
async fn request(
    address: &storage::nurl::Nurl,
    method: hyper::Method,
    path_and_query: &str,
    body: Bytes,
    timeout: Duration,
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
        let bytes = response.into_body().collect().await?.to_bytes();
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
        .map_err(|e| anyhow::anyhow!("introducer.furl {text:?} is not a pb://…#v=1 address: {e}"))
}

/// Publishes this storage node's announcement now and every few minutes.
pub(crate) fn spawn_publisher(
    address: storage::nurl::Nurl,
    signed_for: impl Fn(u64) -> anyhow::Result<SignedAnnouncement> + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
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
                    )
                    .await
                    {
                        Ok((status, _)) if status.is_success() => {
                            debug!("announcement published");
                            delay = Duration::from_millis(200);
                            REPUBLISH
                        }
                        Ok((status, body)) => {
                            warn!(status = %status, reason = %String::from_utf8_lossy(&body).trim(), "introducer refused the announcement");
                            REPUBLISH
                        }
                        Err(e) => {
                            debug!(error = %e, "cannot reach the introducer; retrying");
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

/// What a client learned from its introducer.
pub(crate) type Learned = BTreeMap<String, AnnouncementBody>;

fn cache_path(dir: &Path) -> PathBuf {
    dir.join("private").join("introducer_default_cache.yaml")
}

/// Announcements cached by an earlier run.
pub(crate) fn load_cache(dir: &Path) -> Vec<SignedAnnouncement> {
    std::fs::read_to_string(cache_path(dir))
        .ok()
        .and_then(|text| serde_yaml_ng::from_str(&text).ok())
        .unwrap_or_default()
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

/// Subscribes to the introducer, calling `update` with every announcement known so far (the cache
/// first, then each change), and keeps the cache file current.
pub(crate) fn spawn_subscriber(
    dir: PathBuf,
    address: storage::nurl::Nurl,
    update: impl Fn(&Learned) + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut known: BTreeMap<String, SignedAnnouncement> = BTreeMap::new();
        for signed in load_cache(&dir) {
            if let Ok((id, _)) = verify(&signed) {
                known.insert(id, signed);
            }
        }
        if !known.is_empty() {
            update(&verified(&known.values().cloned().collect::<Vec<_>>()));
        }
        let mut generation = 0u64;
        let mut delay = Duration::from_millis(200);
        loop {
            let path = format!(
                "/introducer/v1/announcements?since={generation}&wait={}",
                MAX_WAIT.as_secs() - 5
            );
            let poll = request(
                &address,
                hyper::Method::GET,
                &path,
                Bytes::new(),
                MAX_WAIT + Duration::from_secs(10),
            );
            let outcome = tokio::select! {
                _ = shutdown.changed() => return,
                outcome = poll => outcome,
            };
            let pause = match outcome.and_then(|(status, body)| {
                if !status.is_success() {
                    bail!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim());
                }
                Ok(serde_json::from_slice::<AnnouncementList>(&body)?)
            }) {
                Ok(list) => {
                    // A restarted introducer starts again at generation 0.
                    generation = list.generation;
                    delay = Duration::from_millis(200);
                    let mut changed = false;
                    for signed in list.announcements {
                        if let Ok((id, body)) = verify(&signed) {
                            let newer = known
                                .get(&id)
                                .and_then(|old| verify(old).ok())
                                .is_none_or(|(_, old)| old.seqnum < body.seqnum);
                            if newer {
                                known.insert(id, signed);
                                changed = true;
                            }
                        }
                    }
                    if changed {
                        let all: Vec<SignedAnnouncement> = known.values().cloned().collect();
                        update(&verified(&all));
                        if let Ok(text) = serde_yaml_ng::to_string(&all)
                            && let Err(e) = crate::nodedir::write_private(&cache_path(&dir), text.as_bytes())
                        {
                            warn!(error = %e, "cannot write the introducer cache");
                        }
                    }
                    Duration::ZERO
                }
                Err(e) => {
                    debug!(error = %e, "introducer poll failed; retrying");
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
