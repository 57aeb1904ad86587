//! The web gateway: Tahoe's web API over the grid (tahoe-interfaces.md §3). For now the file
//! operations the CLI needs: `PUT /uri` (upload, returns the cap), `GET`/`HEAD /uri/$CAP` with Range
//! requests, and `GET /?t=json` (grid status). The full API and the browser UI come with the
//! web-gateway issue.

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
use futures::{StreamExt, TryStreamExt};
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
        .route("/uri", axum::routing::put(put_uri))
        .route("/uri/{cap}", get(get_uri))
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

/// `GET /uri/$CAP` and `HEAD`: stream the file, honouring single byte ranges.
async fn get_uri(
    State(state): State<WebState>,
    Path(cap_text): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let cap = Cap::parse(&cap_text)?;
    let Cap::File(file) = cap else {
        return Err(WebError::Unsupported(format!(
            "{} caps are not served yet",
            cap.kind()
        )));
    };
    let size = match &file {
        FileCap::Lit(lit) => lit.data.len() as u64,
        FileCap::Chk(chk) => chk.size,
        other => {
            return Err(WebError::Unsupported(format!(
                "{} caps are not served yet",
                other.kind()
            )));
        }
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(text) => match http_range_header::parse_range_header(text).and_then(|r| r.validate(size)) {
            Ok(ranges) if ranges.len() == 1 => Some(ranges[0].clone()),
            Ok(_) => None,
            Err(http_range_header::RangeUnsatisfiableError::Invalid(_)) => None,
            Err(_) => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response());
            }
        },
    };
    let (status, start, len) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, *r.start(), r.end() - r.start() + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("content-security-policy", "sandbox");
    if let Some(r) = &range {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", r.start(), r.end()),
        );
    }
    let body = if method == Method::HEAD || len == 0 {
        Body::empty()
    } else {
        match file {
            FileCap::Lit(lit) => Body::from(lit.data[start as usize..(start + len) as usize].to_vec()),
            FileCap::Chk(chk) => {
                let reader = Arc::new(state.grid.open_chk(chk).await?);
                let stream = reader.stream_range(start, len)?.map_ok(bytes::Bytes::from);
                Body::from_stream(stream)
            }
            _ => Body::empty(),
        }
    };
    response.body(body).map_err(|e| WebError::Internal(e.to_string()))
}
