//! The write spool of an upload (an SFTP handle open for writing, an FTP STOR): an anonymous
//! temporary file holding the bytes written so far,
//! encrypted with AES-128-CTR under a random key of its own, so plaintext never reaches the disk.
//! Contiguous writes are gathered in memory and written in large blocks off the async runtime.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use filenode::crypto::aes_ctr_at;

/// Writes gathered before they go to disk.
const GATHER: usize = 1 << 20;

pub(crate) struct Spool {
    file: Arc<File>,
    key: [u8; 16],
    /// Logical size, including `pending`.
    size: u64,
    /// Plaintext not yet written, which belongs at `pending_at`.
    pending: Vec<u8>,
    pending_at: u64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// An empty spool in `dir` (the system's temporary directory by default).
    pub(crate) fn new(dir: Option<&Path>) -> io::Result<Spool> {
        let file = match dir {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        Ok(Spool {
            file: Arc::new(file),
            key: rand::random(),
            size: 0,
            pending: Vec::new(),
            pending_at: 0,
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Writes `data` at `offset` (a gap after the current end reads as zeros).
    pub(crate) async fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        while self.size < offset {
            let gap = (offset - self.size).min(GATHER as u64) as usize;
            let at = self.size;
            self.put(at, &vec![0; gap]).await?;
        }
        self.put(offset, data).await
    }

    async fn put(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let contiguous = offset == self.pending_at + self.pending.len() as u64;
        if !(contiguous && self.pending.len() + data.len() <= GATHER) {
            self.flush().await?;
            self.pending_at = offset;
        }
        self.pending.extend_from_slice(data);
        self.size = self.size.max(offset + data.len() as u64);
        if self.pending.len() >= GATHER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes gathered bytes to the file.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut block = std::mem::take(&mut self.pending);
        let at = self.pending_at;
        self.pending_at += block.len() as u64;
        let file = Arc::clone(&self.file);
        let key = self.key;
        let mut block = tokio::task::spawn_blocking(move || {
            aes_ctr_at(&key, at, &mut block);
            file.write_all_at(&block, at).map(|()| block)
        })
        .await
        .map_err(io::Error::other)??;
        block.clear();
        self.pending = block;
        Ok(())
    }

    /// Up to `len` bytes at `offset`.
    pub(crate) async fn read_at(&mut self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        self.flush().await?;
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut reader = self.reader();
        tokio::task::spawn_blocking(move || {
            reader.seek(SeekFrom::Start(offset))?;
            let mut out = vec![0; (end - offset) as usize];
            reader.read_exact(&mut out)?;
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Cuts or extends (with zeros) the contents to `size` bytes.
    pub(crate) async fn set_size(&mut self, size: u64) -> io::Result<()> {
        if size > self.size {
            return self.write_at(size, &[]).await;
        }
        self.flush().await?;
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || file.set_len(size))
            .await
            .map_err(io::Error::other)??;
        self.size = size;
        Ok(())
    }

    /// A reader of the plaintext (call [`Spool::flush`] first).
    pub(crate) fn reader(&self) -> SpoolReader {
        SpoolReader {
            file: Arc::clone(&self.file),
            key: self.key,
            size: self.size,
            position: 0,
        }
    }
}

/// Reads the plaintext of a spool (for the upload, which may read it twice).
pub(crate) struct SpoolReader {
    file: Arc<File>,
    key: [u8; 16],
    size: u64,
    position: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size.saturating_sub(self.position);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buf[..n], self.position)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spool is shorter than written",
            ));
        }
        aes_ctr_at(&self.key, self.position, &mut buf[..read]);
        self.position += read as u64;
        Ok(read)
    }
}

impl Seek for SpoolReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let position = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position =
            position.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spooled_bytes_read_back_and_are_encrypted_on_disk() {
        let mut spool = Spool::new(None).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        // Out of order, with a rewrite and a gap that must read as zeros.
        spool.write_at(1000, &data[1000..2_500_000]).await.unwrap();
        spool.write_at(0, &data[..1000]).await.unwrap();
        spool.write_at(2_500_000, &data[2_500_000..]).await.unwrap();
        spool.write_at(3_100_000, b"tail").await.unwrap();
        spool.flush().await.unwrap();
        let mut expected = data.clone();
        expected.resize(3_100_000, 0);
        expected.extend_from_slice(b"tail");
        let mut all = Vec::new();
        spool.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, expected);
        assert_eq!(
            spool.read_at(2_999_990, 20).await.unwrap(),
            expected[2_999_990..3_000_010]
        );
        let mut raw = vec![0; 1000];
        spool.file.read_exact_at(&mut raw, 0).unwrap();
        assert_ne!(raw, data[..1000], "the disk holds ciphertext");
        spool.set_size(10).await.unwrap();
        assert_eq!(spool.read_at(0, 100).await.unwrap(), data[..10]);
        spool.set_size(20).await.unwrap();
        assert_eq!(spool.read_at(0, 100).await.unwrap()[10..], [0; 10]);
    }
}
