//! The web gateway: Tahoe's web API over the grid (tahoe-interfaces.md §3) and the browser UI.
//! Unlinked objects under `/uri` are handled here; everything under `/uri/$CAP/...` (files,
//! directories, mutable files) is in [`fs`]; byte serving with Range requests in `download`.

mod browse;
mod check;
mod download;
mod error;
mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
pub(crate) use metrics::{counting_body, error_kind_of_status};
mod operations;
mod pages;
mod serve;
pub mod status;
mod streamed;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use filenode::cap::{Cap, FileCap};
use filenode::grid::Grid;
use serde::Deserialize;

pub use error::WebError;
pub use metrics::{Exposition, Metrics, MetricsFormat, redact_path};
pub use pages::Pages;
pub use serve::{ServeLimits, serve, serve_tls};

/// The default of `[node] web.spool.quota`: bytes that all web uploads in progress may hold
/// together in their spools (10 GiB, as SFTP's and FTP's per-user default).
pub const DEFAULT_SPOOL_QUOTA: u64 = 10 << 30;

/// Storage servers' web addresses by server id (from their announcements' `tessera-web-url` or
/// `servers.yaml`), kept current by the node as it learns servers; the welcome page links each
/// server's `/storage` status through them.
pub type ServerLinks = Arc<std::sync::RwLock<std::collections::BTreeMap<String, String>>>;

/// Each introducer's connection summary by petname (`default: Connected to HOST:PORT`), kept
/// current by the node's subscribers: Tahoe's `introducers.statuses` in the welcome page's JSON.
pub type IntroducerStatuses = Arc<std::sync::RwLock<std::collections::BTreeMap<String, String>>>;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct WebState {
    /// The grid this gateway serves.
    pub grid: Arc<Grid>,
    /// The node's nickname, shown in status.
    pub nickname: String,
    /// The HTML page renderer.
    pub pages: Arc<Pages>,
    /// Counters for `/statistics`.
    pub metrics: Arc<Metrics>,
    /// Every frontend's figures (bytes, operations, errors, sessions, spools), which the node
    /// shares with its SFTP and FTP servers.
    pub counters: Arc<crate::Counters>,
    /// This node's storage server, when it runs one (`/storage`, storage figures in `/statistics`).
    pub storage: Option<Arc<storage::server::StorageServer>>,
    /// When the gateway started (`node.uptime`).
    pub started: std::time::Instant,
    /// Bytes the spools of all web uploads in progress may hold together (`[node]
    /// web.spool.quota`).
    pub spool_quota: Arc<crate::spool::SpoolQuota>,
    /// The format of new mutable files asked for with `mutable=true` and no `format=`
    /// (`[client] mutable.format`; SDMF by default, as Tahoe).
    pub mutable_format: filenode::cap::MutableFormat,
    /// The node's `private/api_auth_token`, which a `POST` to `/status` or `/statistics` must
    /// carry (Tahoe's CLI sends it); without one such a `POST` is refused.
    pub api_token: Option<Arc<str>>,
    /// The storage servers' web addresses (status links on the welcome page).
    pub server_links: ServerLinks,
    /// The introducers' connection summaries (the welcome page's JSON).
    pub introducer_statuses: IntroducerStatuses,
}

impl WebState {
    /// A gateway over `grid` with the built-in (or `TESSERA_TEMPLATES_DIR`) templates.
    pub fn new(grid: Arc<Grid>, nickname: impl Into<String>) -> Self {
        WebState {
            grid,
            nickname: nickname.into(),
            pages: Arc::new(Pages::new()),
            metrics: Arc::default(),
            counters: crate::Counters::new(),
            storage: None,
            started: std::time::Instant::now(),
            spool_quota: crate::spool::SpoolQuota::new(DEFAULT_SPOOL_QUOTA),
            mutable_format: filenode::cap::MutableFormat::Sdmf,
            api_token: None,
            server_links: ServerLinks::default(),
            introducer_statuses: IntroducerStatuses::default(),
        }
    }

    /// The same gateway with a spool quota of `bytes` for all web uploads in progress together.
    pub fn with_spool_quota(mut self, bytes: u64) -> Self {
        self.spool_quota = crate::spool::SpoolQuota::new(bytes);
        self
    }

    /// The same gateway, taking `token` (the node's `private/api_auth_token`) on `POST`s.
    pub fn with_api_token(mut self, token: impl Into<Arc<str>>) -> Self {
        self.api_token = Some(token.into());
        self
    }

    /// The same gateway, counting into (and showing) `counters`, which the node's other frontends
    /// share.
    pub fn with_counters(mut self, counters: Arc<crate::Counters>) -> Self {
        self.counters = counters;
        self
    }

    /// The same gateway, also showing this node's storage server.
    pub fn with_storage(mut self, storage: Arc<storage::server::StorageServer>) -> Self {
        self.storage = Some(storage);
        self
    }
}

/// The gateway's router.
pub fn router(state: WebState) -> Router {
    state
        .counters
        .frontend(crate::counters::Frontend::Web)
        .set_spool(&state.spool_quota);
    Router::new()
        .route("/", get(welcome))
        .route(
            "/uri",
            axum::routing::put(put_uri).get(get_uri_redirect).post(post_uri),
        )
        .route("/uri/{cap}", axum::routing::any(fs::uri_root))
        .route("/uri/{cap}/", axum::routing::any(fs::uri_slash))
        .route("/uri/{cap}/{*path}", axum::routing::any(fs::uri_path))
        .route("/named/{cap}/{*name}", get(get_named))
        .route("/statistics", get(statistics).post(statistics_post))
        .route("/status", get(operations::status).post(operations::status))
        .route("/status/", get(operations::status).post(operations::status))
        .route(
            "/status/{operation}",
            get(operations::operation).post(operations::operation),
        )
        .route("/storage", get(storage_status))
        .layer(axum::middleware::from_fn_with_state(state.clone(), html_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::access_log,
        ))
        .with_state(state)
        // Uploads of any size stream to a spool file; axum's 2 MB default would refuse them.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TQuery {
    t: Option<String>,
}

async fn welcome(State(state): State<WebState>, Query(query): Query<TQuery>) -> Result<Response, WebError> {
    match query.t.as_deref() {
        Some("json") => {
            let servers: Vec<serde_json::Value> = state
                .grid
                .servers_with_status()
                .into_iter()
                .map(|(entry, status)| {
                    let web_url = state.server_link(&entry.server_id);
                    serde_json::json!({
                        "server_id": entry.server_id,
                        "nickname": entry.nickname,
                        "connected": status.connected,
                        "connected_since": status.connected_since,
                        "last_seen": status.last_seen,
                        "available_space": status.available_space,
                        "last_error": status.last_error,
                        "web_url": web_url,
                    })
                })
                .collect();
            let params = state.grid.params();
            let introducers: Vec<String> = state
                .introducer_statuses
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .cloned()
                .collect();
            let body = serde_json::json!({
                "nickname": state.nickname,
                "introducers": { "statuses": introducers },
                "version": concat!("tessera/", env!("CARGO_PKG_VERSION")),
                "encoding": { "needed": params.needed, "happy": params.happy, "total": params.total },
                "servers": servers,
            });
            Ok(([(header::CONTENT_TYPE, "application/json")], ascii_json(&body)).into_response())
        }
        None => welcome_page(&state),
        Some(other) => Err(WebError::BadRequest(format!("unknown t={other} for /"))),
    }
}

/// `PUT /uri`: the body becomes an immutable file (or, with `format=SDMF|MDMF` or
/// `mutable=true`, a mutable one); the response is its cap. `t=mkdir` makes a directory. The body
/// is spooled to an unlinked temporary file (convergent encryption reads the input twice), never
/// held in memory.
async fn put_uri(
    State(state): State<WebState>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    request: axum::extract::Request,
) -> Result<Response, WebError> {
    match query.get("t").map(String::as_str) {
        None | Some("") => {}
        Some("mkdir") => return fs::make_unlinked_directory(&state, query, request).await,
        Some(other) => return Err(WebError::BadRequest(format!("PUT /uri: bad t={other}"))),
    }
    let (parts, body) = request.into_parts();
    if let Some(fs::Format::Mutable(format)) = fs::upload_format(&query, state.mutable_format)? {
        return fs::put_unlinked_mutable(&state, format, body).await;
    }
    let convergent = match query.get("convergence").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "convergence={other}: expected true or false"
            )));
        }
    };
    let cap = match streamed::known_length(&state, &parts.headers, &body) {
        // With a random key and a known length, straight into the encoder.
        Some(size) if !convergent => streamed::store_streamed(&state, body, size).await?,
        // Spooled to an unlinked temporary file as it arrives, encrypted under the spool's own key
        // and hashed for the convergent key on the way (nothing is held in memory), then read
        // once to encode it.
        _ => {
            let spooled = fs::spool(&state, body.into_data_stream(), None, convergent).await?;
            fs::store_new_file(&state, spooled, fs::Format::Chk, convergent).await?
        }
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        cap.to_string(),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct FileQuery {
    filename: Option<String>,
    save: Option<String>,
}

fn parse_file_cap(text: &str) -> Result<FileCap, WebError> {
    match Cap::parse(text)? {
        Cap::File(file) => Ok(file),
        other => Err(WebError::Unsupported(format!(
            "{} caps are not served yet",
            other.kind()
        ))),
    }
}

/// `GET /named/$CAP/NAME`: the file, with its type taken from NAME.
async fn get_named(
    State(state): State<WebState>,
    Path((cap_text, name)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let file = parse_file_cap(&cap_text)?;
    let filename = name
        .rsplit('/')
        .next()
        .map(str::to_owned)
        .filter(|n| !n.is_empty());
    let options = download::DownloadOptions {
        filename: query.filename.or(filename),
        save: query
            .save
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
    };
    download::serve_file(&state.grid, &file, &method, &headers, &options).await
}

#[derive(Debug, Deserialize)]
struct UriQuery {
    uri: Option<String>,
    t: Option<String>,
}

/// `GET /uri?uri=$CAP`: a redirect to `/uri/$CAP` (the "open a cap" form).
async fn get_uri_redirect(Query(query): Query<UriQuery>) -> Result<Response, WebError> {
    let text = query
        .uri
        .ok_or_else(|| WebError::BadRequest("GET /uri needs ?uri=CAP".into()))?;
    let cap = Cap::parse(text.trim())?;
    let mut target = format!(
        "/uri/{}",
        percent_encoding::utf8_percent_encode(&cap.to_string(), percent_encoding::NON_ALPHANUMERIC)
    );
    // The "open a cap" form asks for the file's page rather than its bytes; a directory opens as
    // its listing.
    match query.t.filter(|t| t == "info" || t == "json") {
        Some(t) if t == "info" && matches!(cap, Cap::Dir(_)) => target.push('/'),
        Some(t) => target.push_str(&format!("?t={t}")),
        None => {}
    }
    Ok((StatusCode::FOUND, [(header::LOCATION, target)]).into_response())
}

fn with_etag(
    file: &FileCap,
    variant: &str,
    headers: &HeaderMap,
    content_type: &str,
    body: String,
) -> Result<Response, WebError> {
    let tag = download::etag(file, variant);
    if let Some(tag) = &tag
        && download::none_match(headers, tag)
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag.clone())]).into_response());
    }
    let mut response = ([(header::CONTENT_TYPE, content_type.to_owned())], body).into_response();
    if let Some(tag) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

/// JSON text as Tahoe writes it (Python's `json.dumps`, `ensure_ascii`): every character past
/// ASCII is a `\uXXXX` escape (a surrogate pair past the BMP). Tahoe's own clients rely on that:
/// `tahoe deep-check --raw` decodes the stream 100 bytes at a time, so a raw UTF-8 name split at
/// a chunk boundary kills it. Outside strings JSON text is ASCII, so escaping every non-ASCII
/// character of the serialized text escapes exactly the strings' contents.
pub(crate) fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Tahoe's `t=json` for a file: `["filenode", {...}]`.
fn file_json(file: &FileCap) -> serde_json::Value {
    let format = match file {
        FileCap::Lit(_) => "LIT",
        FileCap::Chk(_) | FileCap::ChkVerifier(_) => "CHK",
        FileCap::Mutable(m) => match m.format {
            filenode::cap::MutableFormat::Sdmf => "SDMF",
            filenode::cap::MutableFormat::Mdmf => "MDMF",
        },
    };
    let mut details = serde_json::json!({ "mutable": file.is_mutable(), "format": format });
    if let Some(size) = file.size() {
        details["size"] = size.into();
    }
    if let Some(ro) = file.readonly() {
        details["ro_uri"] = ro.to_string().into();
    }
    if let Some(verifier) = file.verifier() {
        details["verify_uri"] = verifier.to_string().into();
    }
    if let Some(si) = file.storage_index() {
        details["storage-index"] = si.to_string().into();
    }
    serde_json::json!(["filenode", details])
}

/// Browsers (requests that accept HTML) get errors as a readable page; tools keep the plain text.
async fn html_errors(
    State(state): State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !wants_html || !plain || status.as_u16() < 400 {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let message = String::from_utf8_lossy(&bytes).trim().to_owned();
    let kind = parts.extensions.get::<crate::counters::ErrorKind>().copied();
    let page = state.pages.render(
        "error.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            status => status.as_u16(),
            reason => status.canonical_reason().unwrap_or(""),
            message => message,
        },
    );
    match page {
        Ok(page) => {
            let mut response = html(page);
            *response.status_mut() = status;
            if let Some(kind) = kind {
                response.extensions_mut().insert(kind);
            }
            response
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// `POST /statistics` (as `tahoe status` asks, with the node's token): as `GET`.
async fn statistics_post(
    State(state): State<WebState>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    request: axum::extract::Request,
) -> Result<Response, WebError> {
    let headers = request.headers().clone();
    let args = operations::arguments(&state, &Method::POST, query, request).await?;
    let query = TQuery {
        t: args.get("t").cloned(),
    };
    statistics(State(state), Query(query), headers).await
}

/// `GET /statistics?t=openmetrics`: counters for Prometheus.
async fn statistics(
    State(state): State<WebState>,
    Query(query): Query<TQuery>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    tokio::task::spawn_blocking(move || {
        let servers = state.grid.servers_with_status();
        let connected = servers.iter().filter(|(_, s)| s.connected).count();
        status::statistics_response(
            &query,
            &headers,
            |out| {
                status::write_uptime(out, state.started);
                state.metrics.write(out, servers.len(), connected);
                metrics::Metrics::write_operations(out, state.grid.operations());
                out.gauge(
                    "tessera_web_spool_bytes",
                    "Bytes the web gateway's uploads in progress hold in its spool.",
                    &[("", state.spool_quota.total() as f64)],
                );
                out.gauge(
                    "tessera_web_spool_quota_bytes",
                    "The web gateway's spool quota ([node] web.spool.quota).",
                    &[("", state.spool_quota.limit() as f64)],
                );
                state.counters.write(out);
                if let Some(server) = &state.storage {
                    status::write_storage_metrics(out, server);
                }
            },
            || {
                let mut counters: Vec<(String, u64)> = state
                    .metrics
                    .tahoe_counters()
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect();
                let (files, bytes) = state.grid.operations().download_totals();
                counters.push(("downloader.files_downloaded".into(), files));
                counters.push(("downloader.bytes_downloaded".into(), bytes));
                let (frontend_counters, frontend_gauges) = state.counters.json();
                counters.extend(frontend_counters);
                let mut json = status::statistics_json(state.started, state.storage.as_deref(), counters);
                for (name, value) in frontend_gauges {
                    json["stats"][name] = value.into();
                }
                json
            },
        )
    })
    .await
    .map_err(|e| WebError::Internal(format!("the statistics failed: {e}")))?
}

/// `GET /storage`: this node's storage server (HTML, or Tahoe's JSON with `t=json`).
async fn storage_status(
    State(state): State<WebState>,
    Query(query): Query<TQuery>,
) -> Result<Response, WebError> {
    tokio::task::spawn_blocking(move || {
        status::storage_response(&state.pages, state.storage.as_ref(), &state.nickname, &query)
    })
    .await
    .map_err(|e| WebError::Internal(format!("the storage status failed: {e}")))?
}

pub(crate) fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Sizes for people: 1.5 MB, 320 kB.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

impl WebState {
    /// The web address a server announced, if any.
    fn server_link(&self, server_id: &str) -> Option<String> {
        self.server_links
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(server_id)
            .cloned()
    }
}

/// `GET /`: the welcome page.
fn welcome_page(state: &WebState) -> Result<Response, WebError> {
    let servers: Vec<minijinja::Value> = state
        .grid
        .servers_with_status()
        .into_iter()
        .map(|(entry, status)| {
            let status_url = state
                .server_link(&entry.server_id)
                .map(|url| format!("{url}storage"));
            minijinja::context! {
                nickname => entry.nickname,
                server_id => entry.server_id,
                connected => status.connected,
                last_error => status.last_error,
                available => status.available_space.map(human_size).unwrap_or_else(|| "?".into()),
                status_url => status_url,
            }
        })
        .collect();
    let connected = state
        .grid
        .servers_with_status()
        .iter()
        .filter(|(_, s)| s.connected)
        .count();
    let params = state.grid.params();
    let page = state.pages.render(
        "welcome.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            version => concat!("tessera/", env!("CARGO_PKG_VERSION")),
            servers => servers,
            connected => connected,
            needed => params.needed,
            happy => params.happy,
            total => params.total,
        },
    )?;
    Ok(html(page))
}

/// `t=info`: the page of a file or directory (size, caps, links).
fn cap_page(state: &WebState, cap: &Cap, name: Option<&str>) -> Result<Response, WebError> {
    let cap_text = cap.to_string();
    let encoded =
        percent_encoding::utf8_percent_encode(&cap_text, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut caps = Vec::new();
    if !cap.is_readonly() {
        caps.push(minijinja::context! { label => "Write cap", value => cap_text.clone() });
    }
    if let Some(ro) = cap.readonly() {
        caps.push(minijinja::context! { label => "Read cap", value => ro.to_string() });
    }
    if let Some(verifier) = cap.verifier() {
        caps.push(minijinja::context! { label => "Verify cap", value => verifier.to_string() });
    }
    let name_query = name
        .map(|n| {
            format!(
                "filename={}",
                percent_encoding::utf8_percent_encode(n, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .unwrap_or_default();
    let is_dir = matches!(cap, Cap::Dir(_));
    let download_url = match (name, is_dir) {
        (_, true) => format!("/uri/{encoded}/"),
        (Some(n), false) => format!(
            "/named/{encoded}/{}",
            percent_encoding::utf8_percent_encode(n, percent_encoding::NON_ALPHANUMERIC)
        ),
        (None, false) => format!("/uri/{encoded}"),
    };
    let save_url = format!("/uri/{encoded}?save=true&{name_query}");
    let size = match cap {
        Cap::File(file) => file.size(),
        _ => None,
    };
    let page = state.pages.render(
        "file.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            name => name,
            kind => cap.kind(),
            mutable => cap.is_mutable(),
            is_dir => is_dir,
            size_text => size.map(|s| format!("{} ({s} bytes)", human_size(s))).unwrap_or_else(|| "unknown".into()),
            storage_index => cap.storage_index().map(|si| si.to_string()),
            caps => caps,
            download_url => download_url,
            save_url => save_url,
            check_url => format!("/uri/{encoded}?t=check"),
        },
    )?;
    Ok(html(page))
}

/// `POST /uri?t=upload`: a multipart form's `file` field becomes a file (immutable, or mutable with
/// `format=`); the answer is its cap, or with `redirect_to_result=true` a redirect to the file's
/// page. `t=mkdir`, `t=mkdir-with-children`, `t=mkdir-immutable` make unlinked directories.
async fn post_uri(
    State(state): State<WebState>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    request: axum::extract::Request,
) -> Result<Response, WebError> {
    match query.get("t").map(String::as_str) {
        Some("upload") => fs::post_unlinked_upload(&state, query, request).await,
        Some("mkdir" | "mkdir-with-children" | "mkdir-immutable") => {
            fs::make_unlinked_directory(&state, query, request).await
        }
        Some(other) => Err(WebError::BadRequest(format!("unknown t={other} for POST /uri"))),
        None => Err(WebError::BadRequest(
            "POST /uri needs t=upload, t=mkdir, t=mkdir-with-children or t=mkdir-immutable".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::ascii_json;

    #[test]
    fn json_text_is_ascii_as_tahoes() {
        // Python: json.dumps(["é", "日本", "😀", "a\"b"]) (surrogate pair past the BMP).
        let value = serde_json::json!(["é", "日本", "😀", "a\"b"]);
        let text = ascii_json(&value);
        assert_eq!(text, r#"["\u00e9","\u65e5\u672c","\ud83d\ude00","a\"b"]"#);
        assert!(text.is_ascii());
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), value);
        assert_eq!(ascii_json(&serde_json::json!({"k": 1})), r#"{"k":1}"#);
    }
}
