//! A web upload with convergence off, streamed straight into the encoder: no spool, no second
//! pass. Convergence needs the whole plaintext hashed before the first share can be encrypted, so
//! only an upload with a random key can start encoding as its body arrives; and the encoder needs
//! the length first, so only a body whose length is known (`Content-Length`) is streamed. Others
//! go through the spool as before.

use std::io::{self, Read};

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::http::HeaderMap;
use bytes::{Buf, Bytes};
use futures::StreamExt;

use super::WebState;
use super::error::WebError;
use filenode::cap::FileCap;

/// Chunks of the body held between the connection and the encoder: the memory a streamed upload
/// takes beyond the encoder's own pipeline is at most this many of hyper's chunks.
const CHUNKS_IN_FLIGHT: usize = 4;

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

/// Uploads `body` (`size` bytes) with a random key as it arrives ([`filenode::grid::Grid::upload_streamed`]).
pub(crate) async fn store_streamed(state: &WebState, body: Body, size: u64) -> Result<FileCap, WebError> {
    let reader = BodyReader::new(body);
    let result = state.grid.upload_streamed(reader, size, None).await?;
    state.metrics.record_upload(result.size);
    Ok(result.cap)
}

/// A request body as a blocking [`Read`], for the encoder's thread: a task forwards the body's
/// chunks over a bounded channel. Dropping the reader (the upload failed) ends the task, which
/// stops reading the body.
struct BodyReader {
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl BodyReader {
    fn new(body: Body) -> BodyReader {
        let (sender, chunks) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        tokio::spawn(async move {
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| e.to_string());
                let failed = chunk.is_err();
                if sender.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        BodyReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    return Err(io::Error::other(format!("the request body failed: {e}")));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
