//! The web gateway: Tahoe's web API over the grid (tahoe-interfaces.md §3). For now the file
//! operations the CLI needs: `PUT /uri` (upload, returns the cap), `GET`/`HEAD /uri/$CAP` with Range
//! requests, and `GET /?t=json` (grid status). The full API and the browser UI come with the
//! web-gateway issue.

mod download;
mod error;

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

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct WebState {
    /// The grid this gateway serves.
    pub grid: Arc<Grid>,
    /// The node's nickname, shown in status.
    pub nickname: String,
}

/// The gateway's router.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(welcome))
        .route("/uri", axum::routing::put(put_uri).get(get_uri_redirect))
        .route("/uri/{cap}", get(get_uri))
        .route("/named/{cap}/{*name}", get(get_named))
        .with_state(state)
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
        None => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "Tessera gateway {}\nGET /?t=json for the grid status.\n",
                state.nickname
            ),
        )
            .into_response()),
        Some(other) => Err(WebError::BadRequest(format!("unknown t={other} for /"))),
    }
}

/// `PUT /uri`: the body becomes an immutable file; the response is its cap. The body is spooled to
/// an unlinked temporary file (convergent encryption reads the input twice), never held in memory.
#[derive(Debug, Deserialize)]
struct PutQuery {
    /// `false` uploads with a random key (Tessera's extension of Tahoe's API).
    convergence: Option<String>,
}

async fn put_uri(
    State(state): State<WebState>,
    Query(query): Query<PutQuery>,
    body: Body,
) -> Result<Response, WebError> {
    let convergent = match query.convergence.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "convergence={other}: expected true or false"
            )));
        }
    };
    let spool = tokio::task::spawn_blocking(tempfile::tempfile)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(format!("cannot create a spool file: {e}")))?;
    let mut spool = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(spool));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
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
        "info" => Ok((
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            info_page(&file),
        )
            .into_response()),
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
}

/// `GET /uri?uri=$CAP`: a redirect to `/uri/$CAP` (the "open a cap" form).
async fn get_uri_redirect(Query(query): Query<UriQuery>) -> Result<Response, WebError> {
    let text = query
        .uri
        .ok_or_else(|| WebError::BadRequest("GET /uri needs ?uri=CAP".into()))?;
    let cap = Cap::parse(text.trim())?;
    let target = format!(
        "/uri/{}",
        percent_encoding::utf8_percent_encode(&cap.to_string(), percent_encoding::NON_ALPHANUMERIC)
    );
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

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `t=info`: the file's facts and caps, as HTML.
fn info_page(file: &FileCap) -> String {
    let mut rows = vec![("Kind", file.kind().to_owned())];
    if let Some(size) = file.size() {
        rows.push(("Size", format!("{size} bytes")));
    }
    if let Some(si) = file.storage_index() {
        rows.push(("Storage index", si.to_string()));
    }
    if let Some(ro) = file.readonly() {
        rows.push(("Read-only cap", ro.to_string()));
    }
    if let Some(verifier) = file.verifier() {
        rows.push(("Verify cap", verifier.to_string()));
    }
    let body: String = rows
        .into_iter()
        .map(|(k, v)| format!("<tr><th>{}</th><td><code>{}</code></td></tr>", k, escape_html(&v)))
        .collect();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>File info</title></head><body><h1>File info</h1><table>{body}</table></body></html>"
    )
}
