//! An upload with convergence off, streamed straight into the encoder: no spool, no second pass.
//! Convergence needs the whole plaintext hashed before the first share can be encrypted, so only
//! an upload with a random key can start encoding as its bytes arrive; and the encoder needs the
//! length first, so only bytes whose length is announced are streamed. The web gateway
//! (`PUT /uri?convergence=false`, `web/streamed.rs`) and WebDAV (a PUT of a new immutable file on
//! a gateway with `[client] convergence = false`) both stream through [`StreamedUpload`]; FTP's
//! STOR announces no length, so it spools.
//!
//! The frontend sends the bytes as they arrive ([`StreamedUpload::send`]); the encoder reads them
//! on its own blocking thread through a channel of [`CHUNKS_IN_FLIGHT`] chunks, so the memory a
//! streamed upload takes beyond the encoder's own pipeline is that many of the frontend's chunks,
//! and a client faster than the grid waits (its connection's flow control) instead of filling
//! memory.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use filenode::grid::Grid;
use filenode::grid::upload::{UploadError, UploadResult};
use tokio::sync::mpsc;

/// Chunks held between the frontend and the encoder.
pub(crate) const CHUNKS_IN_FLIGHT: usize = 4;

/// An upload of a known size in progress on a task of its own (see the module).
pub(crate) struct StreamedUpload {
    sender: Option<mpsc::Sender<Result<Bytes, String>>>,
    upload: tokio::task::JoinHandle<Result<UploadResult, UploadError>>,
}

impl std::fmt::Debug for StreamedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedUpload").finish_non_exhaustive()
    }
}

/// The upload ended before taking every byte sent (it failed: [`StreamedUpload::finish`] says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended;

impl StreamedUpload {
    /// Starts uploading `size` bytes with a random key ([`Grid::upload_streamed`]).
    pub(crate) fn start(grid: Arc<Grid>, size: u64) -> StreamedUpload {
        let (sender, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let reader = ChunkReader {
            chunks,
            current: Bytes::new(),
        };
        let upload = tokio::spawn(async move { grid.upload_streamed(reader, size, None).await });
        StreamedUpload {
            sender: Some(sender),
            upload,
        }
    }

    /// Hands the encoder the next bytes, waiting while it is [`CHUNKS_IN_FLIGHT`] chunks behind.
    pub(crate) async fn send(&mut self, chunk: Bytes) -> Result<(), Ended> {
        if chunk.is_empty() {
            return Ok(());
        }
        match &self.sender {
            Some(sender) => sender.send(Ok(chunk)).await.map_err(|_| Ended),
            None => Err(Ended),
        }
    }

    /// Ends the input with an error (the client's body failed): the upload fails with it.
    pub(crate) async fn fail(&mut self, why: String) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Err(why)).await;
        }
    }

    /// Ends the input and waits for the upload: it succeeds only if exactly the announced size
    /// was sent (a shorter input is the encoder's `ShortInput`). An upload dropped instead (the
    /// request went away) ends the same way, short, and its task stops.
    pub(crate) async fn finish(mut self) -> Result<UploadResult, UploadError> {
        drop(self.sender.take());
        match (&mut self.upload).await {
            Ok(result) => result,
            Err(e) => Err(UploadError::Read(io::Error::other(format!(
                "the upload task failed: {e}"
            )))),
        }
    }
}

/// The encoder's end of the channel, as a blocking [`Read`]. Dropping it (the upload failed)
/// makes every later [`StreamedUpload::send`] fail.
struct ChunkReader {
    chunks: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChunkReader {
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
