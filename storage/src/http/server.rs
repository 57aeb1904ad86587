//! The HTTPS storage server's request handling: [`router`] turns a [`StorageServer`] into an axum
//! `Router` implementing every endpoint of tahoe-interfaces.md §1.4 (status table in [`super`]).
//!
//! Every handler checks, in this order, before touching the store: the `Authorization` header (401,
//! or 400 when not UTF-8), the path (404 for a storage index that is not 26 base32 characters or a
//! share number that is not a decimal `u16`, as Tahoe's URL converters give), `Accept` (406), the
//! `X-Tahoe-Authorization` secrets (400), `Content-Type` (415), `Content-Range`/`Range` (416), and the
//! body's size (413) and schema (400). A refused request therefore never changes a share.
//!
//! The store is blocking (files, fsync, sled), so every call goes through `spawn_blocking`. Share reads
//! are streamed in 1 MiB chunks read one ahead of the network, so a large share is never held in
//! memory; PATCH bodies up to 4 MiB are written in one store call (so a refused write writes nothing),
//! longer ones in 4 MiB pieces as they arrive (so memory stays bounded; like Tahoe, a conflict found
//! in a later piece leaves the earlier pieces written, which the client's abort discards).
//!
//! `StorageError`s become responses in one exhaustive match, [`storage_error_status`].

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, RANGE};

use super::wire::{
    self, ALLOCATE_HEADER, CBOR_MIME, ERROR_HEADER, LEASE_SECRETS, OCTET_STREAM, SECRET_HEADER, SecretKind,
    Secrets, StatusReport,
};
use crate::api::{UploadProgress, WHOLE_SHARE_LIMIT, WholeShare};
use crate::server::{ShareReader, StorageServer};
use crate::tls::constant_time_eq;
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

pub use super::serve::serve;

/// Body caps (tahoe-interfaces.md §1.3). Tahoe allows read-test-write bodies of 2^48 bytes; ours
/// is [`HttpLimits::read_test_write_body`].
const ALLOCATE_BODY_LIMIT: u64 = 8 * 1024;
const CORRUPT_BODY_LIMIT: u64 = 32 * 1024;
const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;

/// What the HTTP layer holds in memory for its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// The largest read-test-write body (`[storage] max_mutable_request`). The body is held whole
    /// while the request is served. Tahoe's clients write a mutable share in one request (its whole
    /// contents for SDMF), so this bounds the mutable shares this server accepts from them; our
    /// client writes at most 32 MiB of a file per share and request.
    pub read_test_write_body: u64,
    /// Request bodies held in memory at once, all connections together (`[storage]
    /// request_memory`): read-test-write bodies and the pieces PATCH writes in. A request whose
    /// body does not fit waits for room, so memory stays bounded however many peers send.
    pub request_memory: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            read_test_write_body: 256 << 20,
            request_memory: 1 << 30,
        }
    }
}
/// PATCH bodies up to this size are written in one store call; longer ones in pieces of this size.
const WRITE_PIECE: usize = 4 * 1024 * 1024;
/// Share reads are streamed in chunks of this size.
const READ_CHUNK: u64 = 1024 * 1024;

struct AppState {
    store: Arc<StorageServer>,
    /// The exact expected `Authorization` value.
    authorization: Vec<u8>,
    limits: HttpLimits,
    /// Permits of [`BUDGET_UNIT`] bytes: request bodies held in memory.
    body_budget: tokio::sync::Semaphore,
}

/// The unit of the body budget (permits are `u32`).
const BUDGET_UNIT: u64 = 1024;

type Shared = State<Arc<AppState>>;

/// The storage protocol's routes over `server`, authorized by `swissnum`, with the default
/// [`HttpLimits`].
pub fn router(server: Arc<StorageServer>, swissnum: String) -> Router {
    router_with_limits(server, swissnum, HttpLimits::default())
}

/// [`router`] with these limits. `request_memory` is raised to at least one largest body.
pub fn router_with_limits(server: Arc<StorageServer>, swissnum: String, limits: HttpLimits) -> Router {
    let budget = limits
        .request_memory
        .max(limits.read_test_write_body)
        .max(WRITE_PIECE as u64)
        .div_ceil(BUDGET_UNIT)
        .min(u64::from(u32::MAX) >> 3);
    let state = Arc::new(AppState {
        store: server,
        authorization: wire::authorization_value(&swissnum).into_bytes(),
        limits,
        body_budget: tokio::sync::Semaphore::new(usize::try_from(budget).unwrap_or(u32::MAX as usize >> 3)),
    });
    Router::new()
        .route("/storage/v1/version", get(version))
        .route("/storage/v1/immutable/{si}", post(allocate_buckets))
        .route("/storage/v1/immutable/{si}/shares", get(list_immutable))
        .route(
            "/storage/v1/immutable/{si}/{shnum}",
            get(read_immutable).patch(write_share),
        )
        .route("/storage/v1/immutable/{si}/{shnum}/abort", put(abort_upload))
        .route(
            "/storage/v1/immutable/{si}/{shnum}/corrupt",
            post(corrupt_immutable),
        )
        .route("/storage/v1/mutable/{si}/read-test-write", post(read_test_write))
        .route("/storage/v1/mutable/{si}/shares", get(list_mutable))
        .route("/storage/v1/mutable/{si}/{shnum}", get(read_mutable))
        .route("/storage/v1/mutable/{si}/{shnum}/corrupt", post(corrupt_mutable))
        .route("/storage/v1/lease/{si}", put(add_or_renew_lease))
        .route("/storage/v1/tessera/status", get(tessera_status))
        .route("/storage/v1/tessera/immutable/{si}/{shnum}", put(put_whole_share))
        .route(
            "/storage/v1/tessera/immutable/{si}/{shnum}/remove-corrupt",
            post(remove_corrupt),
        )
        .layer(axum::middleware::from_fn(close_after_refusing_a_body))
        .with_state(state)
}

/// An error answer to a request that carries a body says `Connection: close`. The refusal may come
/// before the body is read (secrets, media type, range and size are checked first), and then the
/// connection cannot be reused; without the header a client puts it back in its pool and loses its
/// next request (Twisted, under Tahoe's client, does not retry a POST or PATCH on a reused connection).
async fn close_after_refusing_a_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(hyper::header::TRANSFER_ENCODING)
        || !matches!(declared_length(headers), Ok(None | Some(0)));
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::http::HeaderValue::from_static("close"),
        );
    }
    response
}

// ---- Errors ----

/// A refusal: status, optional `X-Tessera-Error` tag, plain-text message.
#[derive(Debug)]
pub(crate) struct HttpError {
    status: StatusCode,
    tag: Option<String>,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            tag: None,
            message: message.into(),
        }
    }
}

impl From<StorageError> for HttpError {
    fn from(error: StorageError) -> Self {
        storage_error_status(&error)
    }
}

/// The one place where store errors become HTTP statuses. No catch-all arm: a new variant must be
/// given a status here before the crate compiles. 5xx bodies carry no detail (it is logged).
pub(crate) fn storage_error_status(error: &StorageError) -> HttpError {
    let (status, tag, message) = match error {
        StorageError::NotFound(message) => (StatusCode::NOT_FOUND, "not-found".to_owned(), message.clone()),
        StorageError::UploadSecretMismatch => (
            StatusCode::UNAUTHORIZED,
            "upload-secret-mismatch".to_owned(),
            error.to_string(),
        ),
        StorageError::AlreadyComplete { shnum } => (
            StatusCode::METHOD_NOT_ALLOWED,
            format!("already-complete shnum={shnum}"),
            error.to_string(),
        ),
        StorageError::Conflict { offset } => (
            StatusCode::CONFLICT,
            format!("conflict offset={offset}"),
            error.to_string(),
        ),
        // Tahoe answers 500 here (an uncaught DataTooLargeError); the write's range is what is wrong.
        StorageError::BeyondAllocation { end, allocated } => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("beyond-allocation end={end} allocated={allocated}"),
            error.to_string(),
        ),
        StorageError::WriteEnablerMismatch => (
            StatusCode::UNAUTHORIZED,
            "write-enabler-mismatch".to_owned(),
            error.to_string(),
        ),
        StorageError::ReadOnly => (StatusCode::FORBIDDEN, "read-only".to_owned(), error.to_string()),
        StorageError::Refused(_) => (StatusCode::CONFLICT, "refused".to_owned(), error.to_string()),
        StorageError::NoSpace { needed, available } => (
            StatusCode::INSUFFICIENT_STORAGE,
            format!("no-space needed={needed} available={available}"),
            error.to_string(),
        ),
        StorageError::BadRequest(_) => (
            StatusCode::BAD_REQUEST,
            "bad-request".to_owned(),
            error.to_string(),
        ),
        StorageError::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            "unauthorized".to_owned(),
            error.to_string(),
        ),
        StorageError::Internal(detail) => {
            tracing::error!(%detail, "storage server error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal".to_owned(),
                "internal server error".to_owned(),
            )
        }
        // Client-side conditions; a store never returns them. Treat one as an internal error.
        StorageError::Transport(_) | StorageError::Timeout | StorageError::Protocol { .. } => {
            tracing::error!(%error, "storage server returned a client-side error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal".to_owned(),
                "internal server error".to_owned(),
            )
        }
    };
    HttpError {
        status,
        tag: Some(tag),
        message,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response();
        if let Some(tag) = self.tag
            && let Ok(value) = tag.parse()
        {
            response.headers_mut().insert(ERROR_HEADER, value);
        }
        response
    }
}

type Handled = Result<Response, HttpError>;

// ---- Common checks ----

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(StorageError::Unauthorized.into());
    };
    if std::str::from_utf8(value.as_bytes()).is_err() {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "the Authorization header is not UTF-8",
        ));
    }
    if constant_time_eq(value.as_bytes(), &state.authorization) {
        Ok(())
    } else {
        Err(StorageError::Unauthorized.into())
    }
}

/// A storage index path segment: 26 lowercase base32 characters that decode strictly, else 404 (the
/// route does not exist, as with Tahoe's converter).
fn parse_storage_index(text: &str) -> Result<StorageIndex, HttpError> {
    let shaped = text.len() == 26
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    shaped.then(|| text.parse().ok()).flatten().ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "not a storage index: 26 base32 characters expected",
        )
    })
}

/// A share number path segment: decimal digits fitting a `u16`, else 404.
fn parse_share_number(text: &str) -> Result<ShareNum, HttpError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "not a share number"))
}

/// `Accept` absent, or naming `application/cbor`, `application/*` or `*/*` with a non-zero quality.
fn check_accept(headers: &HeaderMap) -> Result<(), HttpError> {
    let mut values = headers.get_all(ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return Ok(());
    }
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for entry in text.split(',') {
            let mut parts = entry.split(';');
            let media = parts.next().unwrap_or("").trim();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let matches = ["application/cbor", "application/*", "*/*"]
                .iter()
                .any(|m| media.eq_ignore_ascii_case(m));
            if matches && quality > 0.0 {
                return Ok(());
            }
        }
    }
    Err(HttpError::new(
        StatusCode::NOT_ACCEPTABLE,
        "only application/cbor responses are available",
    ))
}

/// `Content-Type` absent or `application/cbor` (parameters ignored).
fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if media.eq_ignore_ascii_case(CBOR_MIME) {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request bodies must be application/cbor",
        ))
    }
}

fn secrets(headers: &HeaderMap, required: &[SecretKind]) -> Result<Secrets, HttpError> {
    let values = headers.get_all(SECRET_HEADER).iter().map(|v| v.as_bytes());
    Secrets::parse(values, required).map_err(|message| StorageError::BadRequest(message).into())
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    match headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| HttpError::new(StatusCode::BAD_REQUEST, "bad Content-Length")),
    }
}

fn too_large(limit: u64) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds {limit} bytes"),
    )
}

/// Refuses a declared body over the default cap on endpoints that take none (their bodies are ignored).
fn check_no_body(headers: &HeaderMap) -> Result<(), HttpError> {
    match declared_length(headers)? {
        Some(length) if length > DEFAULT_BODY_LIMIT => Err(too_large(DEFAULT_BODY_LIMIT)),
        _ => Ok(()),
    }
}

/// Waits until `bytes` more of request bodies may be held in memory; the room is given back when
/// the permit drops.
async fn reserve_body_memory(
    state: &AppState,
    bytes: u64,
) -> Result<tokio::sync::SemaphorePermit<'_>, HttpError> {
    let units = u32::try_from(bytes.div_ceil(BUDGET_UNIT).max(1)).unwrap_or(u32::MAX);
    state
        .body_budget
        .acquire_many(units)
        .await
        .map_err(|_| HttpError::from(StorageError::Internal("the body budget is closed".to_owned())))
}

/// Reads a whole body of at most `limit` bytes (413 beyond, checked on Content-Length first).
async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, HttpError> {
    if declared_length(headers)?.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let mut body = body;
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| HttpError::new(StatusCode::BAD_REQUEST, "could not read the request body"))?;
        if let Ok(data) = frame.into_data() {
            if (buffer.len() + data.len()) as u64 > limit {
                return Err(too_large(limit));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

fn bad_body(message: String) -> HttpError {
    StorageError::BadRequest(message).into()
}

/// Runs a blocking store call on the blocking pool.
async fn blocking<T, F>(store: &Arc<StorageServer>, call: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce(&StorageServer) -> Result<T, StorageError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|e| StorageError::Internal(format!("store task failed: {e}")))?
}

fn cbor(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(CONTENT_TYPE, CBOR_MIME)], body).into_response()
}

// ---- Handlers ----

async fn version(State(state): Shared, headers: HeaderMap) -> Handled {
    authorize(&state, &headers)?;
    check_accept(&headers)?;
    secrets(&headers, &[])?;
    check_no_body(&headers)?;
    let info = blocking(&state.store, |store| Ok(store.version())).await?;
    Ok(cbor(StatusCode::OK, wire::encode_version(&info)))
}

async fn allocate_buckets(
    State(state): Shared,
    Path(si): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    check_accept(&headers)?;
    let secrets = secrets(
        &headers,
        &[
            SecretKind::LeaseRenew,
            SecretKind::LeaseCancel,
            SecretKind::Upload,
        ],
    )?;
    check_content_type(&headers)?;
    let body = read_body(&headers, body, ALLOCATE_BODY_LIMIT).await?;
    let request = wire::decode_allocate_request(&body).map_err(bad_body)?;
    let (lease, upload) = (secrets.lease(), secrets.upload());
    let allocation = blocking(&state.store, move |store| {
        store.allocate_buckets(
            si,
            &lease,
            &upload,
            &request.share_numbers,
            request.allocated_size,
        )
    })
    .await?;
    let mut response = cbor(StatusCode::OK, wire::encode_allocation(&allocation));
    for (shnum, reason) in allocation.refused.iter().take(wire::MAX_REFUSALS) {
        let mut text: String = reason
            .chars()
            .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
            .collect();
        text.truncate(wire::MAX_REFUSAL_LEN);
        if let Ok(value) = hyper::http::HeaderValue::from_str(&format!("{shnum} {text}")) {
            response.headers_mut().append(wire::REFUSED_HEADER, value);
        }
    }
    Ok(response)
}

async fn write_share(
    State(state): Shared,
    Path((si, shnum)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    let shnum = parse_share_number(&shnum)?;
    check_accept(&headers)?;
    // Tessera's allocating write carries the share's size and the lease secrets of its allocation.
    let allocate = headers
        .get(ALLOCATE_HEADER)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    HttpError::new(
                        StatusCode::BAD_REQUEST,
                        "X-Tessera-Allocate must be the share's allocated size in bytes",
                    )
                })
        })
        .transpose()?;
    let given = if allocate.is_some() {
        secrets(
            &headers,
            &[
                SecretKind::LeaseRenew,
                SecretKind::LeaseCancel,
                SecretKind::Upload,
            ],
        )?
    } else {
        secrets(&headers, &[SecretKind::Upload])?
    };
    let upload = given.upload();
    let (start, end) = headers
        .get(CONTENT_RANGE)
        .and_then(|v| wire::parse_content_range(v.as_bytes()))
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "PATCH needs Content-Range: bytes START-END/*",
            )
        })?;
    // `bytes 0-18446744073709551615/*` names 2^64 bytes: no share is that large.
    let expected = (end - start).checked_add(1).ok_or_else(|| {
        HttpError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("Content-Range bytes {start}-{end} is larger than any share"),
        )
    })?;
    match declared_length(&headers)? {
        Some(length) if length > expected => return Err(body_longer_than_range()),
        Some(length) if length < expected => return Err(body_shorter_than_range()),
        _ => {}
    }
    if let Some(allocated_size) = allocate {
        let (lease, upload) = (given.lease(), upload.clone());
        blocking(&state.store, move |store| {
            store.open_upload_for_write(si, shnum, &lease, &upload, allocated_size)
        })
        .await?;
    }

    // The buffer holds at most a piece and the frame that completed it.
    let _room = reserve_body_memory(&state, expected.min(WRITE_PIECE as u64 + (1 << 20))).await?;
    let mut body = body;
    let mut buffer =
        BytesMut::with_capacity(usize::try_from(expected).unwrap_or(WRITE_PIECE).min(WRITE_PIECE));
    let mut received: u64 = 0;
    let mut offset = start;
    let mut progress: Option<UploadProgress> = None;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| HttpError::new(StatusCode::BAD_REQUEST, "could not read the request body"))?;
        let Ok(data) = frame.into_data() else { continue };
        received += data.len() as u64;
        if received > expected {
            return Err(body_longer_than_range());
        }
        buffer.extend_from_slice(&data);
        // Write full pieces only while more body is due: the last piece waits for the length check.
        while buffer.len() >= WRITE_PIECE && received < expected {
            let piece = buffer.split_to(WRITE_PIECE).freeze();
            progress = Some(write_piece(&state, si, shnum, &upload, offset, piece).await?);
            offset += WRITE_PIECE as u64;
        }
    }
    if received != expected {
        return Err(body_shorter_than_range());
    }
    if !buffer.is_empty() {
        progress = Some(write_piece(&state, si, shnum, &upload, offset, buffer.freeze()).await?);
    }
    let progress =
        progress.ok_or_else(|| HttpError::from(StorageError::Internal("PATCH wrote nothing".to_owned())))?;
    let status = if progress.complete {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(cbor(status, wire::encode_progress(&progress)))
}

fn body_longer_than_range() -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body is longer than its Content-Range",
    )
}

fn body_shorter_than_range() -> HttpError {
    bad_body("the body is shorter than its Content-Range".to_owned())
}

async fn write_piece(
    state: &AppState,
    si: StorageIndex,
    shnum: ShareNum,
    upload: &crate::api::UploadSecret,
    offset: u64,
    piece: Bytes,
) -> Result<UploadProgress, HttpError> {
    let upload = upload.clone();
    Ok(blocking(&state.store, move |store| {
        store.write_share(si, shnum, &upload, offset, &piece)
    })
    .await?)
}

async fn abort_upload(
    State(state): Shared,
    Path((si, shnum)): Path<(String, String)>,
    headers: HeaderMap,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    let shnum = parse_share_number(&shnum)?;
    let upload = secrets(&headers, &[SecretKind::Upload])?.upload();
    check_no_body(&headers)?;
    blocking(&state.store, move |store| store.abort_upload(si, shnum, &upload)).await?;
    Ok(StatusCode::OK.into_response())
}

async fn corrupt_immutable(
    state: Shared,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    advise_corrupt(ShareKind::Immutable, state, path, headers, body).await
}

async fn corrupt_mutable(
    state: Shared,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    advise_corrupt(ShareKind::Mutable, state, path, headers, body).await
}

async fn advise_corrupt(
    kind: ShareKind,
    State(state): Shared,
    Path((si, shnum)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    let shnum = parse_share_number(&shnum)?;
    secrets(&headers, &[])?;
    check_content_type(&headers)?;
    let body = read_body(&headers, body, CORRUPT_BODY_LIMIT).await?;
    let reason = wire::decode_corrupt(&body).map_err(bad_body)?;
    blocking(&state.store, move |store| {
        store.advise_corrupt_share(kind, si, shnum, &reason)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /storage/v1/tessera/immutable/:si/:shnum` (a Tessera extension): the body is the whole
/// share, at most [`WHOLE_SHARE_LIMIT`] bytes; allocated, written and closed at once with the
/// request's lease. 201 when stored, 200 when the same share was already held.
async fn put_whole_share(
    State(state): Shared,
    Path((si, shnum)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    let shnum = parse_share_number(&shnum)?;
    check_accept(&headers)?;
    let lease = secrets(&headers, &[SecretKind::LeaseRenew, SecretKind::LeaseCancel])?.lease();
    let room = declared_length(&headers)?
        .unwrap_or(WHOLE_SHARE_LIMIT)
        .min(WHOLE_SHARE_LIMIT);
    let _room = reserve_body_memory(&state, room).await?;
    let data = read_body(&headers, body, WHOLE_SHARE_LIMIT).await?;
    let outcome = blocking(&state.store, move |store| {
        store.put_whole_share(si, shnum, &lease, &data)
    })
    .await?;
    let status = match outcome {
        WholeShare::Stored => StatusCode::CREATED,
        WholeShare::AlreadyHeld => StatusCode::OK,
    };
    Ok(status.into_response())
}

/// The Tessera extension: remove an immutable share if the server's own check proves it corrupt
/// (`StorageServer::remove_corrupt_share`). The body is a corruption advisory's.
async fn remove_corrupt(
    State(state): Shared,
    Path((si, shnum)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    let shnum = parse_share_number(&shnum)?;
    check_accept(&headers)?;
    secrets(&headers, &[])?;
    check_content_type(&headers)?;
    let body = read_body(&headers, body, CORRUPT_BODY_LIMIT).await?;
    let reason = wire::decode_corrupt(&body).map_err(bad_body)?;
    let removal = blocking(&state.store, move |store| {
        store.remove_corrupt_share(si, shnum, &reason)
    })
    .await?;
    Ok(cbor(StatusCode::OK, wire::encode_removal(&removal)))
}

async fn list_immutable(state: Shared, path: Path<String>, headers: HeaderMap) -> Handled {
    list_shares(ShareKind::Immutable, state, path, headers).await
}

async fn list_mutable(state: Shared, path: Path<String>, headers: HeaderMap) -> Handled {
    list_shares(ShareKind::Mutable, state, path, headers).await
}

async fn list_shares(
    kind: ShareKind,
    State(state): Shared,
    Path(si): Path<String>,
    headers: HeaderMap,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    check_accept(&headers)?;
    secrets(&headers, &[])?;
    check_no_body(&headers)?;
    let shares = blocking(&state.store, move |store| store.list_shares(kind, si)).await?;
    Ok(cbor(StatusCode::OK, wire::encode_share_set(&shares)))
}

async fn read_immutable(state: Shared, path: Path<(String, String)>, headers: HeaderMap) -> Response {
    read_share(ShareKind::Immutable, state, path, headers).await
}

async fn read_mutable(state: Shared, path: Path<(String, String)>, headers: HeaderMap) -> Response {
    read_share(ShareKind::Mutable, state, path, headers).await
}

/// Every answer to a share read is `application/octet-stream`, refusals too: Tahoe's server sets that
/// type first, and Tahoe's client checks the type before the status (a 404 of another type reaches its
/// caller as a ValueError instead of ClientException(404)).
async fn read_share(
    kind: ShareKind,
    state: Shared,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match read_share_answer(kind, state, path, headers).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = error.into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, hyper::http::HeaderValue::from_static(OCTET_STREAM));
            response
        }
    }
}

async fn read_share_answer(
    kind: ShareKind,
    State(state): Shared,
    Path((si, shnum)): Path<(String, String)>,
    headers: HeaderMap,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    let shnum = parse_share_number(&shnum)?;
    secrets(&headers, &[])?;
    check_no_body(&headers)?;
    // One open file for the whole answer: its chunks are all of one version of the share.
    let reader = Arc::new(blocking(&state.store, move |store| store.open_share(kind, si, shnum)).await?);
    let length = reader.data_len();
    let Some(range) = headers.get(RANGE) else {
        let body = share_body(&state.store, &reader, 0, length).await?;
        return Ok(octets(StatusCode::OK, length, body, None));
    };
    let (start, end) = wire::parse_range(range.as_bytes()).ok_or_else(|| {
        HttpError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "Range must be exactly one bytes=START-END",
        )
    })?;
    if start >= length {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let end = end.min(length - 1);
    let count = end - start + 1;
    let body = share_body(&state.store, &reader, start, count).await?;
    let content_range = format!("bytes {start}-{end}/{length}");
    Ok(octets(
        StatusCode::PARTIAL_CONTENT,
        count,
        body,
        Some(content_range),
    ))
}

fn octets(status: StatusCode, length: u64, body: Body, content_range: Option<String>) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, hyper::http::HeaderValue::from_static(OCTET_STREAM));
    headers.insert(CONTENT_LENGTH, length.into());
    if let Some(range) = content_range.and_then(|r| r.parse().ok()) {
        headers.insert(CONTENT_RANGE, range);
    }
    response
}

/// `count` bytes of a share from `start`. One chunk is read before answering (so a failing store gives a
/// proper status); longer ranges are streamed by a task that reads one chunk ahead.
async fn share_body(
    store: &Arc<StorageServer>,
    reader: &Arc<ShareReader>,
    start: u64,
    count: u64,
) -> Result<Body, HttpError> {
    if count == 0 {
        return Ok(Body::empty());
    }
    let first = read_chunk(store, reader, start, count.min(READ_CHUNK)).await?;
    if count <= READ_CHUNK {
        return Ok(Body::from(first));
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(2);
    let (store, reader) = (store.clone(), reader.clone());
    tokio::spawn(async move {
        let end = start + count;
        let mut offset = start + first.len() as u64;
        if sender.send(Ok(first)).await.is_err() {
            return;
        }
        while offset < end {
            let item = read_chunk(&store, &reader, offset, (end - offset).min(READ_CHUNK))
                .await
                .map_err(|e| {
                    tracing::debug!(error = ?e, "share read ended early");
                    io::Error::other("share read failed")
                });
            if let Ok(chunk) = &item {
                offset += chunk.len() as u64;
            }
            let failed = item.is_err();
            // A closed channel means the client went away.
            if sender.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Ok(Body::from_stream(stream))
}

/// Exactly `len` bytes at `offset`; a share that shrank meanwhile is an error (the response already
/// promised a Content-Length).
async fn read_chunk(
    store: &Arc<StorageServer>,
    reader: &Arc<ShareReader>,
    offset: u64,
    len: u64,
) -> Result<Bytes, HttpError> {
    let open = reader.clone();
    let mut data = blocking(store, move |store| store.read_open_share(&open, offset, len)).await?;
    if (data.len() as u64) < len {
        tracing::warn!("share shrank while being read");
        return Err(StorageError::Internal("share shrank while being read".to_owned()).into());
    }
    data.truncate(len as usize);
    Ok(Bytes::from(data))
}

async fn read_test_write(
    State(state): Shared,
    Path(si): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    check_accept(&headers)?;
    let secrets = secrets(
        &headers,
        &[
            SecretKind::WriteEnabler,
            SecretKind::LeaseRenew,
            SecretKind::LeaseCancel,
        ],
    )?;
    check_content_type(&headers)?;
    let limit = state.limits.read_test_write_body;
    // Room in the body budget for what the body may hold (its declared length, or the limit).
    let declared = declared_length(&headers)?;
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let _room = reserve_body_memory(&state, declared.unwrap_or(limit)).await?;
    let body = read_body(&headers, body, limit).await?;
    let request = wire::decode_rtw_request(&body).map_err(bad_body)?;
    drop(body);
    let (write_enabler, lease) = (secrets.write_enabler(), secrets.lease());
    let result = blocking(&state.store, move |store| {
        store.read_test_write(
            si,
            &write_enabler,
            &lease,
            &request.test_write_vectors,
            &request.read_vector,
        )
    })
    .await?;
    Ok(cbor(StatusCode::OK, wire::encode_rtw_result(&result)))
}

async fn add_or_renew_lease(State(state): Shared, Path(si): Path<String>, headers: HeaderMap) -> Handled {
    authorize(&state, &headers)?;
    let si = parse_storage_index(&si)?;
    let lease = secrets(&headers, &LEASE_SECRETS)?.lease();
    check_no_body(&headers)?;
    blocking(&state.store, move |store| store.add_or_renew_lease(si, &lease)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tessera_status(State(state): Shared, headers: HeaderMap) -> Handled {
    authorize(&state, &headers)?;
    check_accept(&headers)?;
    secrets(&headers, &[])?;
    check_no_body(&headers)?;
    let report = blocking(&state.store, |store| {
        let status = store.status();
        let advisories = store.corruption_advisories()?;
        Ok(StatusReport {
            available_space: status.available_space,
            used_space: status.used_space,
            reserved_space: status.reserved_space,
            max_space: status.max_space,
            readonly: status.readonly,
            immutable_shares: status.immutable_shares,
            mutable_shares: status.mutable_shares,
            uploads_in_progress: status.uploads_in_progress,
            last_expiration: status.last_expiration.map(|e| wire::ExpirationSummary {
                time: wire::unix_seconds(e.time),
                enabled: e.enabled,
                examined_leases: e.examined_leases,
                expired_leases: e.expired_leases,
                skipped_leases: e.skipped_leases,
                deleted_shares: e.deleted_shares,
                reclaimed_bytes: e.reclaimed_bytes,
                stale_index_entries: e.stale_index_entries,
            }),
            corruption_advisories: advisories
                .into_iter()
                .map(|a| wire::AdvisoryReport {
                    time: wire::unix_seconds(a.time),
                    kind: a.kind,
                    storage_index: a.storage_index,
                    shnum: a.shnum,
                    reason: a.reason,
                })
                .collect(),
        })
    })
    .await?;
    Ok(cbor(StatusCode::OK, wire::encode_status(&report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments() {
        let si = StorageIndex([7; 16]);
        assert_eq!(parse_storage_index(&si.to_string()).unwrap(), si);
        for bad in [
            "",
            "short",
            &si.to_string().to_uppercase(),
            &format!("{si}a"),
            "aaaaaaaaaaaaaaaaaaaaaaaaa7",
        ] {
            assert_eq!(
                parse_storage_index(bad).unwrap_err().status,
                StatusCode::NOT_FOUND,
                "{bad}"
            );
        }
        assert_eq!(parse_share_number("0").unwrap(), 0);
        assert_eq!(parse_share_number("007").unwrap(), 7);
        for bad in ["", "-1", "x", "65536", "1.0"] {
            assert_eq!(
                parse_share_number(bad).unwrap_err().status,
                StatusCode::NOT_FOUND,
                "{bad}"
            );
        }
    }

    #[test]
    fn accept_rules() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, value.parse().unwrap());
            check_accept(&headers).is_ok()
        };
        assert!(check_accept(&HeaderMap::new()).is_ok());
        assert!(with("application/cbor"));
        assert!(with("*/*"));
        assert!(with("application/json, application/cbor;q=0.5"));
        assert!(with("APPLICATION/CBOR"));
        assert!(!with("application/json"));
        assert!(!with("text/html, application/cbor;q=0"));
    }

    #[test]
    fn content_type_rules() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            check_content_type(&headers).is_ok()
        };
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        assert!(with("application/cbor"));
        assert!(with("application/cbor; charset=binary"));
        assert!(!with("application/json"));
        assert!(!with("text/plain"));
    }

    #[test]
    fn every_store_error_has_a_status_and_internal_details_stay_inside() {
        let cases = [
            (StorageError::NotFound("x".into()), 404),
            (StorageError::UploadSecretMismatch, 401),
            (StorageError::AlreadyComplete { shnum: 1 }, 405),
            (StorageError::Conflict { offset: 1 }, 409),
            (StorageError::BeyondAllocation { end: 2, allocated: 1 }, 416),
            (StorageError::WriteEnablerMismatch, 401),
            (StorageError::ReadOnly, 403),
            (
                StorageError::NoSpace {
                    needed: 2,
                    available: 1,
                },
                507,
            ),
            (StorageError::BadRequest("x".into()), 400),
            (StorageError::Unauthorized, 401),
            (StorageError::Internal("/secret/path".into()), 500),
            (StorageError::Timeout, 500),
        ];
        for (error, status) in cases {
            let mapped = storage_error_status(&error);
            assert_eq!(mapped.status.as_u16(), status, "{error:?}");
            if status >= 500 {
                assert!(!mapped.message.contains("secret"), "{}", mapped.message);
            }
        }
    }
}
