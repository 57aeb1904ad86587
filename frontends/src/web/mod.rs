//! The web gateway: Tahoe's web API over the grid (tahoe-interfaces.md §3). For now the file
//! operations the CLI needs: `PUT /uri` (upload, returns the cap), `GET`/`HEAD /uri/$CAP` with Range
//! requests, and `GET /?t=json` (grid status). The full API and the browser UI come with the
//! web-gateway issue.

mod download;
mod error;
mod metrics;
mod pages;

use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use filenode::cap::{Cap, FileCap};
use filenode::grid::Grid;
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

pub use error::WebError;
pub use metrics::{Metrics, redact_path};
pub use pages::Pages;

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
}

impl WebState {
    /// A gateway over `grid` with the built-in (or `TESSERA_TEMPLATES_DIR`) templates.
    pub fn new(grid: Arc<Grid>, nickname: impl Into<String>) -> Self {
        WebState {
            grid,
            nickname: nickname.into(),
            pages: Arc::new(Pages::new()),
            metrics: Arc::default(),
        }
    }
}

/// The gateway's router.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(welcome))
        .route(
            "/uri",
            axum::routing::put(put_uri).get(get_uri_redirect).post(post_uri),
        )
        .route("/uri/{cap}", get(get_uri))
        .route("/named/{cap}/{*name}", get(get_named))
        .route("/statistics", get(statistics))
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

#[derive(Debug, Deserialize)]
struct TQuery {
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
                    serde_json::json!({
                        "server_id": entry.server_id,
                        "nickname": entry.nickname,
                        "connected": status.connected,
                        "connected_since": status.connected_since,
                        "last_seen": status.last_seen,
                        "available_space": status.available_space,
                        "last_error": status.last_error,
                    })
                })
                .collect();
            let params = state.grid.params();
            let body = serde_json::json!({
                "nickname": state.nickname,
                "version": concat!("tessera/", env!("CARGO_PKG_VERSION")),
                "encoding": { "needed": params.needed, "happy": params.happy, "total": params.total },
                "servers": servers,
            });
            Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
        }
        None => welcome_page(&state),
        Some(other) => Err(WebError::BadRequest(format!("unknown t={other} for /"))),
    }
}

/// `PUT /uri`: the body becomes an immutable file; the response is its cap. The body is spooled to
/// an unlinked temporary file (convergent encryption reads the input twice), never held in memory.
#[derive(Debug, Deserialize)]
struct PutQuery {
    /// `false` uploads with a random key (Tessera's extension of Tahoe's API).
    convergence: Option<String>,
    /// Tahoe's `format=`: CHK (the default) is what this gateway stores today.
    format: Option<String>,
}

/// Checks Tahoe's `format=` parameter: immutable CHK is served; mutable formats are not yet.
fn check_format(format: Option<&str>) -> Result<(), WebError> {
    match format.map(str::to_ascii_uppercase).as_deref() {
        None | Some("CHK") => Ok(()),
        Some("SDMF" | "MDMF") => Err(WebError::Unsupported(
            "mutable files (format=SDMF/MDMF) are not supported by this gateway yet".into(),
        )),
        Some(other) => Err(WebError::BadRequest(format!(
            "unknown format={other}: expected CHK, SDMF or MDMF"
        ))),
    }
}

async fn put_uri(
    State(state): State<WebState>,
    Query(query): Query<PutQuery>,
    body: Body,
) -> Result<Response, WebError> {
    check_format(query.format.as_deref())?;
    let convergent = match query.convergence.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "convergence={other}: expected true or false"
            )));
        }
    };
    let result = spool_and_upload(&state, body.into_data_stream(), convergent).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        result.cap.to_string(),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct FileQuery {
    t: Option<String>,
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

/// `GET`/`HEAD /uri/$CAP[?t=json|info|uri|readonly-uri][&filename=NAME][&save=true]`.
async fn get_uri(
    State(state): State<WebState>,
    Path(cap_text): Path<String>,
    Query(query): Query<FileQuery>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let file = parse_file_cap(&cap_text)?;
    let options = download::DownloadOptions {
        filename: query.filename.clone(),
        save: query
            .save
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
    };
    match query.t.as_deref().unwrap_or("") {
        "" => download::serve_file(&state.grid, &file, &method, &headers, &options).await,
        "json" => with_etag(
            &file,
            "json",
            &headers,
            "application/json",
            file_json(&file).to_string(),
        ),
        "uri" => with_etag(&file, "uri", &headers, "text/plain", file.to_string()),
        "readonly-uri" => {
            let readonly = file.readonly().map(|c| c.to_string()).unwrap_or_default();
            with_etag(&file, "readonly-uri", &headers, "text/plain", readonly)
        }
        "info" => file_page(&state, &file, query.filename.as_deref()),
        other => Err(WebError::BadRequest(format!("unknown t={other} for a file"))),
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
    // The "open a cap" form asks for the file's page rather than its bytes.
    if let Some(t) = query.t.filter(|t| t == "info" || t == "json") {
        target.push_str(&format!("?t={t}"));
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
            response
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// `GET /statistics?t=openmetrics`: counters for Prometheus.
async fn statistics(
    State(state): State<WebState>,
    Query(query): Query<TQuery>,
) -> Result<Response, WebError> {
    match query.t.as_deref() {
        Some("openmetrics") => {
            let servers = state.grid.servers_with_status();
            let connected = servers.iter().filter(|(_, s)| s.connected).count();
            Ok((
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                state.metrics.openmetrics(servers.len(), connected),
            )
                .into_response())
        }
        _ => Err(WebError::BadRequest(
            "GET /statistics supports t=openmetrics".into(),
        )),
    }
}

fn html(body: String) -> Response {
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

/// `GET /`: the welcome page.
fn welcome_page(state: &WebState) -> Result<Response, WebError> {
    let servers: Vec<minijinja::Value> = state
        .grid
        .servers_with_status()
        .into_iter()
        .map(|(entry, status)| {
            minijinja::context! {
                nickname => entry.nickname,
                server_id => entry.server_id,
                connected => status.connected,
                last_error => status.last_error,
                available => status.available_space.map(human_size).unwrap_or_else(|| "?".into()),
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

/// `t=info`: the file's page.
fn file_page(state: &WebState, file: &FileCap, name: Option<&str>) -> Result<Response, WebError> {
    let cap_text = file.to_string();
    let encoded =
        percent_encoding::utf8_percent_encode(&cap_text, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut caps = Vec::new();
    if let Some(ro) = file.readonly() {
        caps.push(minijinja::context! { label => "Read cap", value => ro.to_string() });
    }
    if let Some(verifier) = file.verifier() {
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
    let download_url = match name {
        Some(n) => format!(
            "/named/{encoded}/{}",
            percent_encoding::utf8_percent_encode(n, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => format!("/uri/{encoded}"),
    };
    let save_url = format!("/uri/{encoded}?save=true&{name_query}");
    let page = state.pages.render(
        "file.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            name => name,
            kind => file.kind(),
            size_text => file.size().map(|s| format!("{} ({s} bytes)", human_size(s))).unwrap_or_else(|| "unknown".into()),
            storage_index => file.storage_index().map(|si| si.to_string()),
            caps => caps,
            download_url => download_url,
            save_url => save_url,
        },
    )?;
    Ok(html(page))
}

/// Spools an upload's bytes to an unlinked temporary file as they arrive (convergent encryption
/// reads the input twice; nothing is held in memory), then uploads the file.
async fn spool_and_upload<E: std::fmt::Display>(
    state: &WebState,
    chunks: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
    convergent: bool,
) -> Result<filenode::grid::upload::UploadResult, WebError> {
    let spool = tokio::task::spawn_blocking(tempfile::tempfile)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(format!("cannot create a spool file: {e}")))?;
    let mut spool = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(spool));
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| WebError::Body(e.to_string()))?;
        spool
            .write_all(&chunk)
            .await
            .map_err(|e| WebError::Internal(format!("spool write failed: {e}")))?;
    }
    spool
        .flush()
        .await
        .map_err(|e| WebError::Internal(format!("spool write failed: {e}")))?;
    let mut file = spool.into_inner().into_std().await;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let result = if convergent {
        state.grid.upload(file, None).await?
    } else {
        state.grid.upload_without_convergence(file, None).await?
    };
    state.metrics.record_upload(result.size);
    Ok(result)
}

#[derive(Debug, Deserialize)]
struct PostQuery {
    t: Option<String>,
    redirect_to_result: Option<String>,
    convergence: Option<String>,
    format: Option<String>,
}

/// `POST /uri?t=upload`: a multipart form's `file` field becomes an immutable file; the answer is
/// its cap, or with `redirect_to_result=true` a redirect to the file's page. The field is spooled
/// to an unlinked temporary file as it arrives.
async fn post_uri(
    State(state): State<WebState>,
    Query(query): Query<PostQuery>,
    mut multipart: axum::extract::Multipart,
) -> Result<Response, WebError> {
    match query.t.as_deref() {
        Some("upload") => {}
        Some(other) => return Err(WebError::BadRequest(format!("unknown t={other} for POST /uri"))),
        None => return Err(WebError::BadRequest("POST /uri needs t=upload".into())),
    }
    check_format(query.format.as_deref())?;
    let convergent = query.convergence.as_deref() != Some("false");
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| WebError::Body(e.to_string()))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().map(str::to_owned);
        let result = spool_and_upload(&state, field, convergent).await?;
        let cap = result.cap.to_string();
        if query.redirect_to_result.as_deref() == Some("true") {
            let mut target = format!(
                "/uri/{}?t=info",
                percent_encoding::utf8_percent_encode(&cap, percent_encoding::NON_ALPHANUMERIC)
            );
            if let Some(name) = filename {
                target.push_str(&format!(
                    "&filename={}",
                    percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
                ));
            }
            return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response());
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain")], cap).into_response());
    }
    Err(WebError::BadRequest("the form has no `file` field".into()))
}
