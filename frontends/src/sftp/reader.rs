//! Reading an open file with read-ahead: a task streams whole segments from the current position
//! into a bounded queue while the session serves the client's (pipelined, usually 32 KiB or
//! 255 KiB) requests from the segments received. A read far from the window restarts the stream at
//! its offset, so random access and resumed downloads fetch only what they need.
//!
//! Read-ahead holds up to about ten segments per open file, so one connection may have only
//! `[sftpd] connection.max_reading_ahead` files reading ahead at once (a place is taken at a read
//! and kept until the file is closed). A file without a place is read request by request and holds
//! nothing between requests: a peer that opens 2,048 files (8 sessions of 256 handles) holds the
//! read-ahead of a few, not gigabytes.

use std::collections::VecDeque;

use bytes::Bytes;
use filenode::node::{FileReader, NodeError};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::error::SftpError;

/// Chunks (about one segment each) fetched ahead of the client.
const AHEAD: usize = 8;
/// A read this far past the window restarts the stream instead of reading up to it.
const JUMP: u64 = 16 << 20;

pub(crate) struct ReadAhead {
    reader: FileReader,
    size: u64,
    /// Offset of the first byte of `chunks`.
    start: u64,
    /// Offset after the last byte of `chunks`.
    end: u64,
    chunks: VecDeque<Bytes>,
    incoming: Option<mpsc::Receiver<Result<Bytes, NodeError>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The gateway's budget for a small mutable file read whole at open (`crate::whole`).
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The connection's places for files that read ahead (`None`: no limit).
    places: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// This file's place, once it has one.
    place: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("size", &self.size)
            .field("window", &(self.start..self.end))
            .finish_non_exhaustive()
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl ReadAhead {
    #[cfg(test)]
    pub(crate) fn new(reader: FileReader) -> Self {
        Self::opened(crate::whole::Opened { reader, held: None }, None)
    }

    /// Reads a file opened by `crate::whole::open`, keeping the budget it holds until closed;
    /// it reads ahead when it gets one of `places`.
    pub(crate) fn opened(
        opened: crate::whole::Opened,
        places: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    ) -> Self {
        let size = opened.reader.size();
        ReadAhead {
            reader: opened.reader,
            size,
            start: 0,
            end: 0,
            chunks: VecDeque::new(),
            incoming: None,
            task: None,
            _held: opened.held,
            places,
            place: None,
        }
    }

    /// Whether this file may read ahead: it has a place, or takes a free one now.
    fn may_read_ahead(&mut self) -> bool {
        if self.place.is_some() {
            return true;
        }
        let Some(places) = &self.places else {
            return true;
        };
        self.place = std::sync::Arc::clone(places).try_acquire_owned().ok();
        self.place.is_some()
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn restart(&mut self, offset: u64) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.chunks.clear();
        self.start = offset;
        self.end = offset;
        let (sender, receiver) = mpsc::channel(AHEAD);
        let mut stream = self.reader.stream(offset, self.size - offset);
        self.task = Some(tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                if sender.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        }));
        self.incoming = Some(receiver);
    }

    /// Up to `len` bytes at `offset` (as slices of the window); `Eof` at or past the end.
    pub(crate) async fn read(&mut self, offset: u64, len: u32) -> Result<Vec<Bytes>, SftpError> {
        if offset >= self.size {
            return Err(SftpError::eof());
        }
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        if !self.may_read_ahead() {
            // No place to read ahead: exactly this range, and nothing kept.
            let data = self
                .reader
                .read(offset, end - offset)
                .await
                .map_err(SftpError::from)?;
            if data.is_empty() {
                return Err(SftpError::failure("the file ended early"));
            }
            return Ok(vec![Bytes::from(data)]);
        }
        if self.incoming.is_none() || offset < self.start || offset > self.end + JUMP {
            self.restart(offset);
        }
        // Forget what the client has read.
        while let Some(front) = self.chunks.front() {
            if self.start + front.len() as u64 > offset {
                break;
            }
            self.start += front.len() as u64;
            self.chunks.pop_front();
        }
        while self.end < end {
            let Some(incoming) = self.incoming.as_mut() else {
                break;
            };
            match incoming.recv().await {
                Some(Ok(chunk)) => {
                    self.end += chunk.len() as u64;
                    self.chunks.push_back(chunk);
                }
                Some(Err(e)) => {
                    self.incoming = None;
                    return Err(e.into());
                }
                None => {
                    self.incoming = None;
                    break;
                }
            }
            // A jump forward within reach: drop what lies before it as it arrives.
            while let Some(front) = self.chunks.front() {
                if self.start + front.len() as u64 > offset {
                    break;
                }
                self.start += front.len() as u64;
                self.chunks.pop_front();
            }
        }
        // Slices of the received chunks: the reply is written from them without a copy.
        let mut out = Vec::with_capacity(2);
        let mut at = self.start;
        for chunk in &self.chunks {
            let chunk_end = at + chunk.len() as u64;
            if chunk_end > offset && at < end {
                let from = offset.saturating_sub(at) as usize;
                let to = (end.min(chunk_end) - at) as usize;
                out.push(chunk.slice(from..to));
            }
            if chunk_end >= end {
                break;
            }
            at = chunk_end;
        }
        if out.is_empty() {
            return Err(SftpError::failure("the file ended early"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sequential_random_and_backward_reads() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut reader = ReadAhead::new(FileReader::Lit(Bytes::from(data.clone())));
        let mut offset = 0u64;
        while offset < data.len() as u64 {
            let got = reader.read(offset, 32768).await.unwrap().concat();
            assert_eq!(got, data[offset as usize..offset as usize + got.len()]);
            offset += got.len() as u64;
        }
        assert_eq!(
            reader.read(offset, 10).await.unwrap_err().code,
            russh_sftp::protocol::StatusCode::Eof
        );
        assert_eq!(reader.read(10, 5).await.unwrap().concat(), data[10..15]);
        assert_eq!(reader.read(999_990, 100).await.unwrap().concat(), data[999_990..]);
    }

    /// Files beyond the connection's places read without read-ahead (no task, nothing kept), and
    /// take a place when one is freed.
    #[tokio::test]
    async fn only_files_with_a_place_read_ahead() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let places = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
        let open = || {
            ReadAhead::opened(
                crate::whole::Opened {
                    reader: FileReader::Lit(Bytes::from(data.clone())),
                    held: None,
                },
                Some(std::sync::Arc::clone(&places)),
            )
        };
        let mut files: Vec<ReadAhead> = (0..5).map(|_| open()).collect();
        for file in &mut files {
            assert_eq!(file.read(1000, 5000).await.unwrap().concat(), data[1000..6000]);
            assert_eq!(file.read(6000, 100).await.unwrap().concat(), data[6000..6100]);
        }
        let reading_ahead = files.iter().filter(|f| f.task.is_some()).count();
        assert_eq!(reading_ahead, 2);
        assert!(
            files[2..]
                .iter()
                .all(|f| f.chunks.is_empty() && f.place.is_none())
        );
        assert_eq!(places.available_permits(), 0);
        // Closing a file frees its place for the next read of another.
        files.remove(0);
        assert_eq!(files[2].read(0, 10).await.unwrap().concat(), data[..10]);
        assert!(files[2].place.is_some() && files[2].task.is_some());
    }
}
