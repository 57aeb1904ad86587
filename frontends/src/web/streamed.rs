//! A web upload with convergence off and a known length, streamed straight into the encoder with
//! no spool (`crate::streamed`, shared with WebDAV): `PUT /uri?convergence=false` and `PUT` to a
//! path. Others go through the spool as before.

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::http::HeaderMap;
use futures::StreamExt;

use super::WebState;
use super::error::WebError;
use crate::streamed::StreamedUpload;
use filenode::cap::FileCap;

/// The length of a body that may be streamed: known before it arrives (`Content-Length`, else the
/// body's exact size, for a body built in this process) and at most what the gateway lets web
/// uploads spool (`[node] web.spool.quota`). The length is the client's word: the encoder sizes
/// its hash trees by it, so a larger one is not believed, and the body goes through the spool,
/// which counts the bytes that really arrive.
pub(crate) fn known_length(state: &WebState, headers: &HeaderMap, body: &Body) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
        .or_else(|| body.size_hint().exact())
        .filter(|len| *len <= state.spool_quota.limit())
}

/// Uploads `body` (`size` bytes) with a random key as it arrives ([`StreamedUpload`]).
pub(crate) async fn store_streamed(state: &WebState, body: Body, size: u64) -> Result<FileCap, WebError> {
    let mut upload = StreamedUpload::start(std::sync::Arc::clone(&state.grid), size);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                if upload.send(chunk).await.is_err() {
                    break; // The upload failed: `finish` says why.
                }
            }
            Err(e) => {
                upload.fail(e.to_string()).await;
                break;
            }
        }
    }
    let result = upload.finish().await?;
    state.metrics.record_upload(result.size);
    Ok(result.cap)
}
