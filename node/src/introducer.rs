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
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use frontends::web::status::StatusSource;
use frontends::web::{Exposition, Pages, WebError};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
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

/// The most subscribers the introducer lists (a new one past that is served but not listed).
pub(crate) const MAX_SUBSCRIBERS: usize = 1000;
/// A subscriber not heard from for this long is no longer listed (it polls every minute).
const SUBSCRIBER_EXPIRY: Duration = Duration::from_secs(180);
/// The longest subscriber id taken (a longer one, or one of other characters, is not listed).
const MAX_SUBSCRIBER_ID: usize = 64;
/// The longest subscriber version shown (a longer one is cut).
const MAX_SUBSCRIBER_VERSION: usize = 128;

/// What the introducer knows of one server.
#[derive(Debug, Clone)]
struct Known {
    seqnum: u64,
    signed: SignedAnnouncement,
    body: AnnouncementBody,
    /// The generation it was kept at: a subscriber of this run past it does not get it again.
    kept_at: u64,
    /// When this announcement arrived.
    when: SystemTime,
}

/// A client that polls for announcements, as it describes itself (bounded, shown escaped).
#[derive(Debug, Clone)]
struct Subscriber {
    nickname: String,
    version: String,
    since: SystemTime,
    last_poll: SystemTime,
    polls: u64,
}

/// Why a publish was refused (the `reason` label of the refusal counter).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Unauthorized,
    TooLarge,
    Malformed,
    BadSignature,
    Full,
}

impl Refusal {
    const ALL: [Refusal; 5] = [
        Refusal::Unauthorized,
        Refusal::TooLarge,
        Refusal::Malformed,
        Refusal::BadSignature,
        Refusal::Full,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
            Refusal::BadSignature => "bad_signature",
            Refusal::Full => "full",
        }
    }
}

/// The introducer's counters since it started.
#[derive(Debug, Default)]
struct Counters {
    /// Every publish request (Tahoe's `inbound_message`).
    received: AtomicU64,
    /// Announcements kept: a new server's, or a newer one of a known server.
    accepted: AtomicU64,
    /// Announcements not newer than the one known (Tahoe's `inbound_duplicate` and
    /// `inbound_old_replay`).
    stale: AtomicU64,
    /// Refusals, by [`Refusal`].
    refused: [AtomicU64; 5],
    /// Announcement lists served to subscribers.
    polls: AtomicU64,
    /// Announcements sent in those lists (Tahoe's `outbound_announcements`).
    sent: AtomicU64,
    /// Bytes of those lists (JSON bodies).
    list_bytes: AtomicU64,
    /// New subscribers (Tahoe's `inbound_subscribe`).
    subscribes: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub(crate) struct IntroducerState {
    /// A secret: never shown, logged or in `Debug`.
    swissnum: String,
    nickname: String,
    started: Instant,
    /// Ends long polls when the introducer shuts down (graceful shutdown waits for open requests).
    stopping: watch::Receiver<bool>,
    announcements: Mutex<BTreeMap<String, Known>>,
    subscribers: Mutex<BTreeMap<String, Subscriber>>,
    counters: Counters,
    /// Bumped (under the `announcements` lock) for each announcement kept.
    generation: watch::Sender<u64>,
    /// This run's: a subscriber that names it gets only what changed since its generation.
    epoch: u64,
}

impl std::fmt::Debug for IntroducerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntroducerState")
            .field("nickname", &self.nickname)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl IntroducerState {
    fn refuse(&self, why: Refusal) {
        bump(&self.counters.refused[why as usize]);
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
    bump(&state.counters.received);
    if !authorized(&state, &headers) {
        state.refuse(Refusal::Unauthorized);
        return unauthorized();
    }
    let body = match Limited::new(body, MAX_PUBLISH_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            state.refuse(Refusal::TooLarge);
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an announcement is at most {MAX_PUBLISH_BODY} bytes\n"),
            )
                .into_response();
        }
        Err(_) => {
            state.refuse(Refusal::Malformed);
            return (StatusCode::BAD_REQUEST, "the request body was cut off\n").into_response();
        }
    };
    let signed: SignedAnnouncement = match serde_json::from_slice(&body) {
        Ok(signed) => signed,
        Err(e) => {
            state.refuse(Refusal::Malformed);
            return (StatusCode::BAD_REQUEST, format!("not an announcement: {e}\n")).into_response();
        }
    };
    let (server_id, parsed) = match verify(&signed) {
        Ok(verified) => verified,
        Err(e) => {
            state.refuse(Refusal::BadSignature);
            return (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response();
        }
    };
    let nickname = shown_nickname(&parsed.storage.nickname);
    match keep(&state, &server_id, parsed, signed) {
        Some(true) => {
            bump(&state.counters.accepted);
            info!(server = %server_id, nickname = %nickname, "announcement received");
        }
        Some(false) => bump(&state.counters.stale),
        None => {
            state.refuse(Refusal::Full);
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
fn keep(
    state: &IntroducerState,
    server_id: &str,
    body: AnnouncementBody,
    signed: SignedAnnouncement,
) -> Option<bool> {
    let mut announcements = state.announcements.lock().unwrap_or_else(PoisonError::into_inner);
    match announcements.get(server_id) {
        Some(known) if known.seqnum >= body.seqnum => Some(false),
        None if announcements.len() >= MAX_SERVERS => None,
        _ => {
            // Under the lock, so that a poll sees each announcement with the generation it
            // belongs to.
            let generation = *state.generation.borrow() + 1;
            let known = Known {
                seqnum: body.seqnum,
                kept_at: generation,
                signed,
                body,
                when: SystemTime::now(),
            };
            announcements.insert(server_id.to_owned(), known);
            state.generation.send_replace(generation);
            Some(true)
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct PollQuery {
    since: Option<u64>,
    epoch: Option<u64>,
    wait: Option<u64>,
    /// The subscriber's id (random, made when it starts following), its nickname and version:
    /// what the introducer lists. Optional: a subscriber without them is served, not listed.
    subscriber: Option<String>,
    nickname: Option<String>,
    version: Option<String>,
}

/// `text` cut to at most `max` bytes at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Notes a poll from the subscriber `query` names (if it names a valid one).
fn note_subscriber(state: &IntroducerState, query: &PollQuery) {
    let Some(id) = query.subscriber.as_deref() else {
        return;
    };
    if id.is_empty() || id.len() > MAX_SUBSCRIBER_ID || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return;
    }
    let now = SystemTime::now();
    let mut subscribers = state.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = subscribers.get_mut(id) {
        known.last_poll = now;
        known.polls += 1;
        return;
    }
    prune_subscribers(&mut subscribers, now);
    if subscribers.len() >= MAX_SUBSCRIBERS {
        return;
    }
    bump(&state.counters.subscribes);
    subscribers.insert(
        id.to_owned(),
        Subscriber {
            nickname: bounded(
                query.nickname.as_deref().unwrap_or("?"),
                crate::announcement::MAX_NICKNAME,
            ),
            version: bounded(query.version.as_deref().unwrap_or("?"), MAX_SUBSCRIBER_VERSION),
            since: now,
            last_poll: now,
            polls: 1,
        },
    );
}

fn prune_subscribers(subscribers: &mut BTreeMap<String, Subscriber>, now: SystemTime) {
    subscribers.retain(|_, s| {
        now.duration_since(s.last_poll)
            .is_ok_and(|age| age < SUBSCRIBER_EXPIRY)
            || now < s.last_poll
    });
}

async fn announcements(
    State(state): State<Arc<IntroducerState>>,
    headers: HeaderMap,
    Query(query): Query<PollQuery>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    note_subscriber(&state, &query);
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
                .filter(|known| known.kept_at > since)
                .map(|known| known.signed.clone())
                .collect(),
        }
    };
    let body = match serde_json::to_vec(&list) {
        Ok(body) => body,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    bump(&state.counters.polls);
    state
        .counters
        .sent
        .fetch_add(list.announcements.len() as u64, Ordering::Relaxed);
    state
        .counters
        .list_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn new_state(swissnum: String, nickname: String, stopping: watch::Receiver<bool>) -> Arc<IntroducerState> {
    Arc::new(IntroducerState {
        swissnum,
        nickname,
        started: Instant::now(),
        stopping,
        announcements: Mutex::new(BTreeMap::new()),
        subscribers: Mutex::new(BTreeMap::new()),
        counters: Counters::default(),
        generation: watch::Sender::new(0),
        epoch: rand::random(),
    })
}

fn router(state: Arc<IntroducerState>) -> Router {
    Router::new()
        .route("/introducer/v1/publish", post(publish))
        .route("/introducer/v1/announcements", get(announcements))
        .route("/introducer/v1/epoch", get(epoch))
        .with_state(state)
}

/// Runs the introducer service of node `dir` until `shutdown` resolves; its state is what the
/// node's web port shows ([`IntroducerState`] is a [`StatusSource`]).
pub(crate) async fn serve(
    dir: &Path,
    nickname: &str,
    listener: tokio::net::TcpListener,
    identity: storage::tls::TlsIdentity,
    location: &[String],
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<anyhow::Result<()>>, Arc<IntroducerState>)> {
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
    let state = new_state(swissnum, nickname.to_owned(), shutdown.clone());
    let router = router(Arc::clone(&state));
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

fn unix_float(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A metric label value written safely (another party's text may hold quotes or newlines).
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The connection hints of an announcement (`tcp:HOST:PORT`, from its NURLs), without the
/// swissnums its NURLs and FURL carry.
fn connection_hints(body: &AnnouncementBody) -> Vec<String> {
    body.storage
        .nurls
        .iter()
        .filter_map(|nurl| nurl.parse::<storage::nurl::Nurl>().ok())
        .map(|nurl| format!("tcp:{}:{}", nurl.host, nurl.port))
        .collect()
}

/// "name: count, …" in name order.
fn summary_text(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(name, count)| format!("{name}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A snapshot of what the introducer knows, for its pages.
struct View {
    announcements: Vec<(String, Known)>,
    subscribers: Vec<Subscriber>,
}

impl IntroducerState {
    fn view(&self) -> View {
        let mut announcements: Vec<(String, Known)> = self
            .announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, known)| (id.clone(), known.clone()))
            .collect();
        announcements.sort_by(|(a_id, a), (b_id, b)| {
            (&a.body.service_name, &a.body.storage.nickname, a_id).cmp(&(
                &b.body.service_name,
                &b.body.storage.nickname,
                b_id,
            ))
        });
        let subscribers = {
            let mut subscribers = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
            prune_subscribers(&mut subscribers, SystemTime::now());
            let mut list: Vec<Subscriber> = subscribers.values().cloned().collect();
            list.sort_by_key(|s| s.since);
            list
        };
        View {
            announcements,
            subscribers,
        }
    }

    /// Current announcements per service.
    fn announcement_counts(view: &View) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (_, known) in &view.announcements {
            *counts.entry(known.body.service_name.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Current subscribers per service (every subscriber follows `storage`).
    fn subscription_counts(view: &View) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        if !view.subscribers.is_empty() {
            counts.insert("storage".to_owned(), view.subscribers.len() as u64);
        }
        counts
    }

    /// `/?t=json`: Tahoe 1.20's `announcement_summary` and `subscription_summary`, and the lists
    /// (Tahoe shows them only in HTML).
    fn json(&self) -> Value {
        let view = self.view();
        let announcements: Vec<Value> = view
            .announcements
            .iter()
            .map(|(id, known)| {
                json!({
                    "server_id": id,
                    "nickname": known.body.storage.nickname,
                    "service_name": known.body.service_name,
                    "version": known.body.my_version,
                    "seqnum": known.seqnum,
                    "announced": unix_float(known.when),
                    "connection_hints": connection_hints(&known.body),
                })
            })
            .collect();
        let subscribers: Vec<Value> = view
            .subscribers
            .iter()
            .map(|s| {
                json!({
                    "nickname": s.nickname,
                    "version": s.version,
                    "service_name": "storage",
                    "since": unix_float(s.since),
                    "last_poll": unix_float(s.last_poll),
                    "polls": s.polls,
                })
            })
            .collect();
        json!({
            "announcement_summary": Self::announcement_counts(&view),
            "subscription_summary": Self::subscription_counts(&view),
            "announcements": announcements,
            "subscribers": subscribers,
        })
    }

    fn page(&self, pages: &Pages) -> Result<String, WebError> {
        let view = self.view();
        let ago = |time: SystemTime| {
            let secs = SystemTime::now()
                .duration_since(time)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            format!(
                "{} ({} ago)",
                frontends::web::status::iso_time(unix_float(time) as u64),
                frontends::web::status::human_duration(secs)
            )
        };
        let announcements: Vec<minijinja::Value> = view
            .announcements
            .iter()
            .map(|(id, known)| {
                minijinja::context! {
                    server_id => id,
                    nickname => &known.body.storage.nickname,
                    service_name => &known.body.service_name,
                    version => &known.body.my_version,
                    announced_text => ago(known.when),
                    connection_hints => connection_hints(&known.body),
                }
            })
            .collect();
        let subscribers: Vec<minijinja::Value> = view
            .subscribers
            .iter()
            .map(|s| {
                minijinja::context! {
                    nickname => &s.nickname,
                    version => &s.version,
                    service_name => "storage",
                    since_text => ago(s.since),
                    last_poll_text => ago(s.last_poll),
                    polls => s.polls,
                }
            })
            .collect();
        pages.render(
            "introducer.html",
            minijinja::context! {
                nickname => &self.nickname,
                version => concat!("tessera/", env!("CARGO_PKG_VERSION")),
                uptime => frontends::web::status::human_duration(self.started.elapsed().as_secs()),
                announcement_summary => summary_text(&Self::announcement_counts(&view)),
                subscription_summary => summary_text(&Self::subscription_counts(&view)),
                announcements => announcements,
                subscribers => subscribers,
                subscriber_expiry => frontends::web::status::human_duration(SUBSCRIBER_EXPIRY.as_secs()),
            },
        )
    }
}

impl StatusSource for IntroducerState {
    fn write_metrics(&self, out: &mut Exposition) {
        let c = &self.counters;
        out.counter(
            "tessera_introducer_announcements_received",
            "Announcements published to the introducer (Tahoe's inbound_message), kept or not.",
            &[("", read(&c.received) as f64)],
        );
        out.counter(
            "tessera_introducer_announcements_accepted",
            "Announcements kept: a new server's, or a newer one of a known server.",
            &[("", read(&c.accepted) as f64)],
        );
        out.counter(
            "tessera_introducer_announcements_stale",
            "Announcements not newer than the one known from their server (duplicates, replays).",
            &[("", read(&c.stale) as f64)],
        );
        let refused: Vec<(String, f64)> = Refusal::ALL
            .iter()
            .map(|why| {
                (
                    format!("{{reason=\"{}\"}}", why.label()),
                    read(&c.refused[*why as usize]) as f64,
                )
            })
            .collect();
        let refused: Vec<(&str, f64)> = refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        out.counter(
            "tessera_introducer_announcements_refused",
            "Announcements refused, by reason.",
            &refused,
        );
        let view = self.view();
        let per_service: Vec<(String, f64)> = Self::announcement_counts(&view)
            .iter()
            .map(|(name, count)| (format!("{{service=\"{}\"}}", label_value(name)), *count as f64))
            .collect();
        let per_service: Vec<(&str, f64)> = per_service.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        out.gauge(
            "tessera_introducer_announcements",
            "Current announcements, per service.",
            &per_service,
        );
        out.gauge(
            "tessera_introducer_subscribers",
            "Clients polling for announcements now.",
            &[("", view.subscribers.len() as f64)],
        );
        out.counter(
            "tessera_introducer_subscribes",
            "New subscribers (Tahoe's inbound_subscribe).",
            &[("", read(&c.subscribes) as f64)],
        );
        out.counter(
            "tessera_introducer_polls",
            "Announcement lists served to subscribers.",
            &[("", read(&c.polls) as f64)],
        );
        out.counter(
            "tessera_introducer_announcements_sent",
            "Announcements sent in those lists (Tahoe's outbound_announcements).",
            &[("", read(&c.sent) as f64)],
        );
        out.counter(
            "tessera_introducer_list_bytes_sent",
            "Bytes of the announcement lists served (a subscriber of this run gets only what changed).",
            &[("", read(&c.list_bytes) as f64)],
        );
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let c = &self.counters;
        let refused: u64 = c.refused.iter().map(read).sum();
        let servers = self
            .announcements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        vec![
            ("introducer.inbound_message".into(), read(&c.received)),
            ("introducer.inbound_subscribe".into(), read(&c.subscribes)),
            ("introducer.outbound_announcements".into(), read(&c.sent)),
            ("introducer.announcements_accepted".into(), read(&c.accepted)),
            ("introducer.announcements_stale".into(), read(&c.stale)),
            ("introducer.announcements_refused".into(), refused),
            ("introducer.polls".into(), read(&c.polls)),
            ("introducer.list_bytes_sent".into(), read(&c.list_bytes)),
            ("introducer.servers".into(), servers as u64),
        ]
    }

    fn summary(&self) -> Vec<(String, String)> {
        let view = self.view();
        vec![
            (
                "Announcement summary".into(),
                summary_text(&Self::announcement_counts(&view)),
            ),
            (
                "Subscription summary".into(),
                summary_text(&Self::subscription_counts(&view)),
            ),
        ]
    }

    fn front_page(&self, pages: &Pages, t: Option<&str>) -> Option<Result<Response, WebError>> {
        Some(match t {
            None => self.page(pages).map(|page| {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    page,
                )
                    .into_response()
            }),
            Some("json") => Ok((
                [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&self.json()).unwrap_or_default()
                ),
            )
                .into_response()),
            Some(other) => Err(WebError::BadRequest(format!(
                "unknown t={} for the introducer's page (t=json is known)",
                bounded(other, 64)
            ))),
        })
    }
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
/// bytes. The poll names the subscriber (`me`), which the introducer lists.
async fn poll(
    address: &storage::nurl::Nurl,
    generation: u64,
    epoch: Option<u64>,
    me: &SubscriberInfo,
) -> anyhow::Result<AnnouncementList> {
    let encode = |text: &str| {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let epoch = epoch.map(|e| format!("&epoch={e}")).unwrap_or_default();
    let path = format!(
        "/introducer/v1/announcements?since={generation}{epoch}&wait={}&subscriber={}&nickname={}&version={}",
        MAX_WAIT.as_secs() - 5,
        me.id,
        encode(&bounded(&me.nickname, crate::announcement::MAX_NICKNAME)),
        encode(concat!("tessera/", env!("CARGO_PKG_VERSION"))),
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

/// How a subscriber names itself to the introducer (which lists its subscribers).
#[derive(Debug, Clone)]
pub(crate) struct SubscriberInfo {
    /// Random, made once per run: the introducer tells subscribers apart by it.
    pub(crate) id: String,
    pub(crate) nickname: String,
}

impl SubscriberInfo {
    pub(crate) fn new(nickname: &str) -> Self {
        SubscriberInfo {
            id: storage::base32::encode(&rand::random::<[u8; 16]>()),
            nickname: nickname.to_owned(),
        }
    }
}

/// Subscribes to `introducer` as `me`, calling `update` with every announcement it knows so far
/// (the cache first, then each change), and keeps its cache file (`cache_path`) current.
pub(crate) fn spawn_subscriber(
    dir: PathBuf,
    introducer: crate::introducer_config::IntroducerConfig,
    me: SubscriberInfo,
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
                outcome = poll(&address, generation, epoch, &me) => outcome,
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

    const SWISSNUM: &str = "test-swissnum";

    fn announcement(seed: u8, nickname: &str) -> SignedAnnouncement {
        announcement_at(seed, nickname, 1)
    }

    fn announcement_at(seed: u8, nickname: &str, seqnum: u64) -> SignedAnnouncement {
        let spki = storage::tls::TlsIdentity::generate().unwrap().spki_hash();
        let body = crate::announcement::test_body(seqnum, nickname, &spki, 1);
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
        let (address, _stop) =
            serve_router(router(new_state(SWISSNUM.into(), "i".into(), stopping.clone()))).await;
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
        let state = new_state(SWISSNUM.into(), "i".into(), stopping);
        let signed = announcement(3, "one of many");
        let (_, body) = verify(&signed).unwrap();
        let mut newer = body.clone();
        newer.seqnum = 2;
        for i in 0..MAX_SERVERS {
            assert!(keep(&state, &format!("v0-{i}"), body.clone(), signed.clone()).unwrap());
        }
        assert_eq!(keep(&state, "v0-new", body, signed.clone()), None);
        assert!(keep(&state, "v0-7", newer, signed).unwrap());
    }

    #[tokio::test]
    async fn the_introducer_counts_what_it_is_asked_and_sends() {
        let me = SubscriberInfo::new("me");
        use frontends::web::status::StatusSource;
        let (_stopping_tx, stopping) = watch::channel(false);
        let state = new_state(SWISSNUM.into(), "i".into(), stopping);
        let (address, _stop) = serve_router(router(Arc::clone(&state))).await;
        let signed = announcement(5, "counted");
        publish_once(&address, &signed).await.unwrap();
        // The same announcement again is answered but not kept; a hostile body is answered too.
        publish_once(&address, &signed).await.unwrap();
        assert_eq!(
            publish_raw(&address, b"{}".to_vec()).await.0,
            StatusCode::BAD_REQUEST
        );
        let list = poll(&address, 0, None, &me).await.unwrap();
        assert_eq!(list.announcements.len(), 1);
        let sent = serde_json::to_vec(&list).unwrap().len() as u64;
        let counters: BTreeMap<String, u64> = state.counters().into_iter().collect();
        assert_eq!(counters["introducer.servers"], 1);
        assert_eq!(counters["introducer.inbound_message"], 3);
        assert_eq!(counters["introducer.announcements_accepted"], 1);
        assert_eq!(counters["introducer.announcements_stale"], 1);
        assert_eq!(counters["introducer.polls"], 1);
        assert_eq!(counters["introducer.outbound_announcements"], 1);
        assert_eq!(counters["introducer.list_bytes_sent"], sent);
        let mut metrics = frontends::web::Exposition::new(frontends::web::MetricsFormat::Prometheus);
        state.write_metrics(&mut metrics);
        let text = metrics.finish();
        assert!(
            text.contains("tessera_introducer_announcements_received_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("tessera_introducer_list_bytes_sent_total {sent}\n")),
            "{text}"
        );
        assert!(
            text.contains("tessera_introducer_announcements{service=\"storage\"} 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_subscriber_of_this_run_gets_only_what_changed() {
        let me = SubscriberInfo::new("me");
        let (_stopping_tx, stopping) = watch::channel(false);
        let state = new_state(SWISSNUM.into(), "i".into(), stopping);
        let (address, _stop) = serve_router(router(Arc::clone(&state))).await;
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
        let first = poll(&address, 0, None, &me).await.unwrap();
        assert_eq!(
            (first.generation, nicknames(&first)),
            (2, vec!["a".into(), "b".into()])
        );
        let epoch = first.epoch.unwrap();
        publish_once(&address, &announcement(3, "c")).await.unwrap();
        let next = poll(&address, 2, Some(epoch), &me).await.unwrap();
        assert_eq!((next.generation, nicknames(&next)), (3, vec!["c".into()]));
        // A re-announcement is a change too; an old one is not.
        publish_once(&address, &announcement_at(1, "a", 5)).await.unwrap();
        publish_once(&address, &announcement_at(2, "b", 1)).await.unwrap();
        let next = poll(&address, 3, Some(epoch), &me).await.unwrap();
        assert_eq!((next.generation, nicknames(&next)), (4, vec!["a".into()]));
        // A subscriber of another run (a restarted introducer) gets everything, at once.
        let started = std::time::Instant::now();
        let other = poll(&address, 9, Some(epoch.wrapping_add(1)), &me).await.unwrap();
        assert_eq!(nicknames(&other), ["a", "b", "c"]);
        assert_eq!(other.epoch, Some(epoch));
        assert!(started.elapsed() < Duration::from_secs(5));
        // One that names no run gets everything once the generation has passed its own.
        assert_eq!(
            nicknames(&poll(&address, 3, None, &me).await.unwrap()),
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
        let error = poll(&address, 0, None, &SubscriberInfo::new("me"))
            .await
            .unwrap_err()
            .to_string();
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

    /// Another party's text (a server's nickname, a subscriber's nickname and version) is
    /// escaped in the page, bounded, and never brings a swissnum to the page or JSON.
    #[tokio::test]
    async fn the_status_page_escapes_and_bounds_what_others_send_and_hides_swissnums() {
        let (_stopping_tx, stopping) = watch::channel(false);
        let state = new_state(SWISSNUM.into(), "intro".into(), stopping);
        let signed = announcement(5, "<script>alert(1)</script>");
        let (id, body) = verify(&signed).unwrap();
        assert_eq!(keep(&state, &id, body, signed), Some(true));
        let query = PollQuery {
            since: None,
            epoch: None,
            wait: None,
            subscriber: Some("abc123".into()),
            nickname: Some(format!("<b>bold</b>{}", "é".repeat(400))),
            version: Some("v".repeat(1000)),
        };
        note_subscriber(&state, &query);
        note_subscriber(&state, &query);
        // Ids of other characters or too long are served but not listed.
        for bad in ["a/b", "", &"x".repeat(65)] {
            let query = PollQuery {
                subscriber: Some(bad.into()),
                ..query.clone()
            };
            note_subscriber(&state, &query);
        }
        let page = state.page(&Pages::new()).unwrap();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;bold"), "{page}");
        assert!(page.contains("storage: 1"), "{page}");
        assert!(!page.contains("swiss"), "a swissnum on the page:\n{page}");
        assert!(page.contains("tcp:127.0.0.1:1"), "{page}");
        let json = state.json();
        assert_eq!(json["announcement_summary"]["storage"], 1, "{json}");
        assert_eq!(json["subscription_summary"]["storage"], 1, "{json}");
        assert_eq!(json["subscribers"].as_array().unwrap().len(), 1, "{json}");
        let subscriber = &json["subscribers"][0];
        assert_eq!(subscriber["polls"], 2);
        let nickname = subscriber["nickname"].as_str().unwrap();
        assert!(nickname.len() <= crate::announcement::MAX_NICKNAME && nickname.len() > 250);
        assert_eq!(
            subscriber["version"].as_str().unwrap().len(),
            MAX_SUBSCRIBER_VERSION
        );
        assert_eq!(json["announcements"][0]["nickname"], "<script>alert(1)</script>");
        assert_eq!(json["announcements"][0]["connection_hints"][0], "tcp:127.0.0.1:1");
        assert!(!json.to_string().contains("swiss"), "{json}");
        assert_eq!(read(&state.counters.subscribes), 1);
    }

    /// A service name is another party's text: in a metric label it is escaped, so it cannot
    /// end the label or add a line.
    #[tokio::test]
    async fn service_names_are_escaped_in_metric_labels() {
        let (_stopping_tx, stopping) = watch::channel(false);
        let state = new_state(SWISSNUM.into(), "intro".into(), stopping);
        let signed = announcement(8, "n");
        let (id, mut body) = verify(&signed).unwrap();
        body.service_name = "a\"} 1\nevil_metric 7\\".into();
        assert_eq!(keep(&state, &id, body, signed), Some(true));
        let mut out = Exposition::new(frontends::web::MetricsFormat::OpenMetrics);
        state.write_metrics(&mut out);
        let text = out.finish();
        assert!(
            text.contains("tessera_introducer_announcements{service=\"a\\\"} 1\\nevil_metric 7\\\\\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.lines().any(|line| line.starts_with("evil_metric")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn subscribers_are_bounded_and_forgotten_when_they_stop_polling() {
        let (_stopping_tx, stopping) = watch::channel(false);
        let state = new_state(SWISSNUM.into(), "intro".into(), stopping);
        for i in 0..MAX_SUBSCRIBERS + 10 {
            note_subscriber(
                &state,
                &PollQuery {
                    since: None,
                    epoch: None,
                    wait: None,
                    subscriber: Some(format!("s{i}")),
                    nickname: None,
                    version: None,
                },
            );
        }
        assert_eq!(state.subscribers.lock().unwrap().len(), MAX_SUBSCRIBERS);
        assert_eq!(state.json()["subscribers"][0]["nickname"], "?");
        // Everyone's last poll long ago: the page forgets them all.
        for s in state.subscribers.lock().unwrap().values_mut() {
            s.last_poll = SystemTime::now() - SUBSCRIBER_EXPIRY - Duration::from_secs(1);
        }
        assert_eq!(state.json()["subscription_summary"], json!({}));
    }

    /// The counters over the wire: accepted, stale (an older seqnum), refused by reason.
    #[tokio::test]
    async fn publishes_are_counted_by_outcome() {
        let (_stopping_tx, stopping) = watch::channel(false);
        let state = new_state(SWISSNUM.into(), "intro".into(), stopping);
        let (address, _stop) = serve_router(router(Arc::clone(&state))).await;
        let signed = serde_json::to_vec(&announcement(6, "counted")).unwrap();
        // Kept or stale, a publish is answered with the introducer's epoch.
        let epoch = format!("{{\"epoch\":{}}}", state.epoch);
        assert_eq!(
            publish_raw(&address, signed.clone()).await,
            (StatusCode::OK, epoch.clone())
        );
        assert_eq!(publish_raw(&address, signed).await, (StatusCode::OK, epoch));
        assert_eq!(
            publish_raw(&address, b"{}".to_vec()).await.0,
            StatusCode::BAD_REQUEST
        );
        let mut forged = announcement(7, "forged");
        forged.ann = forged.ann.replace("forged", "Forged");
        let forged = serde_json::to_vec(&forged).unwrap();
        assert_eq!(publish_raw(&address, forged).await.0, StatusCode::BAD_REQUEST);
        let mut wrong = address.clone();
        wrong.swissnum = "wrong".into();
        assert_eq!(
            publish_raw(&wrong, b"{}".to_vec()).await.0,
            StatusCode::UNAUTHORIZED
        );
        let mut out = Exposition::new(frontends::web::MetricsFormat::Prometheus);
        state.write_metrics(&mut out);
        let text = out.finish();
        for line in [
            "tessera_introducer_announcements_received_total 5\n",
            "tessera_introducer_announcements_accepted_total 1\n",
            "tessera_introducer_announcements_stale_total 1\n",
            "tessera_introducer_announcements_refused_total{reason=\"malformed\"} 1\n",
            "tessera_introducer_announcements_refused_total{reason=\"bad_signature\"} 1\n",
            "tessera_introducer_announcements_refused_total{reason=\"unauthorized\"} 1\n",
            "tessera_introducer_announcements{service=\"storage\"} 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        let counters: BTreeMap<String, u64> = state.counters().into_iter().collect();
        assert_eq!(counters["introducer.inbound_message"], 5);
        assert_eq!(counters["introducer.announcements_refused"], 3);
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
        let (address, _stop) =
            serve_router(router(new_state(SWISSNUM.into(), "i".into(), stopping.clone()))).await;
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
            "client",
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
