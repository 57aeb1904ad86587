//! The write spool of an upload (an SFTP handle open for writing, an FTP STOR): an anonymous
//! temporary file holding the bytes written so far,
//! encrypted with AES-128-CTR under a random key of its own, so plaintext never reaches the disk.
//! Contiguous writes are gathered in memory and written in large blocks off the async runtime,
//! one block at a time behind the writer: while a block is hashed, encrypted and written (the hash
//! on one thread, the encryption and the write on another), the next is gathered.
//!
//! A spool may be charged to a user's [`SpoolQuota`]: every byte its contents grow by (a gap of
//! zeros included) is counted against the user's quota across all of their open spools before it is
//! written, and released when the spool shrinks or is dropped. A write that would pass the quota is
//! refused with [`io::ErrorKind::QuotaExceeded`] and writes nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use filenode::crypto::aes_ctr_at;
use filenode::grid::Grid;
use filenode::immutable::ConvergentHasher;

/// Bytes each user's open spools may hold together (SFTP's `[sftpd] spool.quota`, FTP's
/// `[ftpd] spool.quota`). One quota is shared by all of a frontend's sessions.
#[derive(Debug)]
pub struct SpoolQuota {
    limit: u64,
    used: Mutex<HashMap<String, u64>>,
}

impl SpoolQuota {
    /// A quota of `limit` bytes per user.
    pub fn new(limit: u64) -> Arc<SpoolQuota> {
        Arc::new(SpoolQuota {
            limit,
            used: Mutex::new(HashMap::new()),
        })
    }

    /// The bytes per user.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes `user`'s open spools hold now.
    pub fn used(&self, user: &str) -> u64 {
        self.lock().get(user).copied().unwrap_or(0)
    }

    /// Bytes all users' open spools hold now.
    pub fn total(&self) -> u64 {
        self.lock().values().sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn charge(&self, user: &str, bytes: u64) -> io::Result<()> {
        let mut used = self.lock();
        let now = used.get(user).copied().unwrap_or(0);
        match now.checked_add(bytes).filter(|total| *total <= self.limit) {
            Some(total) => {
                used.insert(user.to_owned(), total);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::QuotaExceeded,
                format!(
                    "the upload would pass this account's spool quota: {} bytes of uploads in progress \
                     are allowed, {now} are in use and {bytes} more were asked for",
                    self.limit
                ),
            )),
        }
    }

    fn release(&self, user: &str, bytes: u64) {
        let mut used = self.lock();
        if let Some(now) = used.get_mut(user) {
            *now = now.saturating_sub(bytes);
            if *now == 0 {
                used.remove(user);
            }
        }
    }
}

/// What a spool has charged to its user's quota.
#[derive(Debug)]
struct Charge {
    quota: Arc<SpoolQuota>,
    user: String,
    bytes: u64,
}

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
    /// The quota the contents are counted against, if any.
    charge: Option<Charge>,
    /// The convergent key of the contents, hashed as they are written, while they are written in
    /// order from the start (dropped at the first write elsewhere). While a block is on its way
    /// to the disk, the hasher is with it.
    hashing: Option<ConvergentHasher>,
    /// The block on its way to the disk, if any.
    behind: Option<Behind>,
    /// Buffers kept between blocks: the next block's, and the ciphertext of a block being hashed.
    spare: Vec<u8>,
    scratch: Vec<u8>,
    /// Called once when the contents first reach [`LARGE`] bytes ([`Spool::when_large`]).
    when_large: Option<Box<dyn FnOnce() + Send + Sync>>,
}

/// The size from which a spool's upload is large enough to want its connections opened ahead.
pub(crate) const LARGE: u64 = 1 << 20;

/// A block on its way to the file: its hash (when the contents are hashed) and its write.
struct Behind {
    hashing: Option<tokio::task::JoinHandle<(ConvergentHasher, Option<Vec<u8>>)>>,
    writing: tokio::task::JoinHandle<io::Result<Written>>,
}

/// A block written to the file, with the buffers it leaves for the next blocks (its ciphertext's,
/// when it was hashed; its own, unless the hash still held it).
struct Written {
    scratch: Option<Vec<u8>>,
    block: Option<Vec<u8>>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.quota.release(&self.user, self.bytes);
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Where spools go when their frontend names no directory (`[node] tempdir`).
static DEFAULT_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Sets the directory for spools whose frontend names none (the web API's always, SFTP's and FTP's
/// unless configured): the node's `[node] tempdir`, as Tahoe sets Python's `tempfile.tempdir`.
/// Once per process: false if it was set already.
pub fn set_default_spool_dir(dir: std::path::PathBuf) -> bool {
    DEFAULT_DIR.set(dir).is_ok()
}

impl Spool {
    /// An empty spool in `dir`, else in the default spool directory, else in the system's
    /// temporary directory.
    pub(crate) fn new(dir: Option<&Path>) -> io::Result<Spool> {
        let file = match dir.or(DEFAULT_DIR.get().map(std::path::PathBuf::as_path)) {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        Ok(Spool {
            file: Arc::new(file),
            key: rand::random(),
            size: 0,
            pending: Vec::new(),
            pending_at: 0,
            charge: None,
            hashing: None,
            behind: None,
            spare: Vec::new(),
            scratch: Vec::new(),
            when_large: None,
        })
    }

    /// Calls `then` once, when the contents first reach [`LARGE`] bytes.
    pub(crate) fn when_large(&mut self, then: impl FnOnce() + Send + Sync + 'static) {
        self.when_large = Some(Box::new(then));
    }

    /// Opens the connections `grid`'s upload of these contents will want
    /// ([`Grid::warm_for_upload`]) once they reach [`LARGE`] bytes, while the rest arrives.
    pub(crate) fn warm_when_large(&mut self, grid: &Arc<Grid>) {
        let grid = Arc::clone(grid);
        self.when_large(move || grid.warm_for_upload());
    }

    /// Hashes the contents for their convergent key as they are written
    /// ([`SpoolReader::convergent_key`]), so that the upload reads the spool once, not twice.
    /// Only contents written in order from the start are hashed: a write anywhere else (an SFTP
    /// client's out-of-order writes, a rewrite, a truncation) stops the hashing, and the upload
    /// then hashes the spool itself.
    pub(crate) fn hash_with(&mut self, hasher: Option<ConvergentHasher>) {
        self.hashing = hasher.filter(|_| self.size == 0);
    }

    /// An empty spool in `dir` whose contents count against `user`'s share of `quota`.
    pub(crate) fn with_quota(dir: Option<&Path>, quota: &Arc<SpoolQuota>, user: &str) -> io::Result<Spool> {
        let mut spool = Spool::new(dir)?;
        spool.charge = Some(Charge {
            quota: Arc::clone(quota),
            user: user.to_owned(),
            bytes: 0,
        });
        Ok(spool)
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Counts growth to `new_size` against the quota; refuses it (changing nothing) past the quota.
    fn reserve(&mut self, new_size: u64) -> io::Result<()> {
        if let Some(charge) = &mut self.charge
            && new_size > charge.bytes
        {
            charge.quota.charge(&charge.user, new_size - charge.bytes)?;
            charge.bytes = new_size;
        }
        Ok(())
    }

    /// Writes `data` at `offset` (a gap after the current end reads as zeros). Growth past the
    /// quota is refused before anything is written.
    pub(crate) async fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a write past 2^64 bytes"))?;
        self.reserve(end.max(self.size))?;
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
            self.send_behind().await?;
            self.pending_at = offset;
        }
        self.pending.extend_from_slice(data);
        self.size = self.size.max(offset + data.len() as u64);
        if self.size >= LARGE
            && let Some(then) = self.when_large.take()
        {
            then();
        }
        if self.pending.len() >= GATHER {
            self.send_behind().await?;
        }
        Ok(())
    }

    /// Writes gathered bytes to the file, and waits until every block is written. The buffers
    /// kept for the next blocks are let go: a handle flushed (read, closed, its size set) may
    /// stay open long, and a session may hold many.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.send_behind().await?;
        self.land().await?;
        self.spare = Vec::new();
        self.scratch = Vec::new();
        Ok(())
    }

    /// Sends the gathered bytes on their way to the file, once the block before them is written
    /// (blocks land in order, one at a time, so a later write over the same bytes wins). A block
    /// being hashed is hashed on one thread while a copy of it is encrypted and written on another.
    async fn send_behind(&mut self) -> io::Result<()> {
        self.land().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut block = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        let at = self.pending_at;
        self.pending_at += block.len() as u64;
        let file = Arc::clone(&self.file);
        let key = self.key;
        // The hash goes on only from where it stopped.
        let behind = match self.hashing.take().filter(|hasher| hasher.size() == at) {
            Some(mut hasher) => {
                let block = Arc::new(block);
                let plaintext = Arc::clone(&block);
                let mut scratch = std::mem::take(&mut self.scratch);
                Behind {
                    hashing: Some(tokio::task::spawn_blocking(move || {
                        hasher.update(&plaintext);
                        (hasher, Arc::try_unwrap(plaintext).ok())
                    })),
                    writing: tokio::task::spawn_blocking(move || {
                        scratch.clear();
                        scratch.extend_from_slice(&block);
                        aes_ctr_at(&key, at, &mut scratch);
                        file.write_all_at(&scratch, at)?;
                        // Whichever of the two ends last keeps the block's buffer.
                        Ok(Written {
                            scratch: Some(scratch),
                            block: Arc::try_unwrap(block).ok(),
                        })
                    }),
                }
            }
            None => Behind {
                hashing: None,
                writing: tokio::task::spawn_blocking(move || {
                    aes_ctr_at(&key, at, &mut block);
                    file.write_all_at(&block, at)?;
                    Ok(Written {
                        scratch: None,
                        block: Some(block),
                    })
                }),
            },
        };
        self.behind = Some(behind);
        Ok(())
    }

    /// Waits for the block on its way to the file, if any.
    async fn land(&mut self) -> io::Result<()> {
        let Some(Behind { hashing, writing }) = self.behind.take() else {
            return Ok(());
        };
        let mut buffer = None;
        if let Some(hashing) = hashing {
            let (hasher, block) = hashing.await.map_err(io::Error::other)?;
            self.hashing = Some(hasher);
            buffer = block;
        }
        let written = writing.await.map_err(io::Error::other)??;
        if let Some(scratch) = written.scratch {
            self.scratch = scratch;
        }
        if let Some(mut block) = buffer.or(written.block) {
            block.clear();
            self.spare = block;
        }
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
        if self.hashing.as_ref().is_some_and(|hasher| hasher.size() > size) {
            self.hashing = None;
        }
        if let Some(charge) = &mut self.charge
            && charge.bytes > size
        {
            charge.quota.release(&charge.user, charge.bytes - size);
            charge.bytes = size;
        }
        Ok(())
    }

    /// A reader of the plaintext (call [`Spool::flush`] first).
    pub(crate) fn reader(&self) -> SpoolReader {
        SpoolReader::of(&self.file, self.key, self.size)
    }

    /// The reader of a finished spool (call [`Spool::flush`] first), which keeps the spool's
    /// charge to its quota until it is dropped (the file stays on disk until then).
    pub(crate) fn into_reader(mut self) -> SpoolReader {
        let mut reader = self.reader();
        reader._charge = self.charge.take();
        reader.hashed = self
            .hashing
            .take()
            .filter(|hasher| hasher.size() == self.size)
            .map(Box::new);
        reader
    }
}

/// Reads the plaintext of a spool (for the upload, which may read it twice).
pub(crate) struct SpoolReader {
    file: Arc<File>,
    key: [u8; 16],
    size: u64,
    position: u64,
    /// What the spool charged to its quota, released when the reader is dropped.
    _charge: Option<Charge>,
    /// The whole contents' convergent key, when the spool hashed them as they were written.
    hashed: Option<Box<ConvergentHasher>>,
}

impl SpoolReader {
    /// The plaintext's length.
    pub(crate) fn len(&self) -> u64 {
        self.size
    }

    /// The contents' convergent key and length, when the spool hashed all of them as they were
    /// written ([`Spool::hash_with`]).
    pub(crate) fn convergent_key(&mut self) -> Option<([u8; 16], u64)> {
        self.hashed.take().map(|hasher| hasher.finish())
    }

    /// Another reader of the same contents, from the start, for a second use of a small spool
    /// while this one is read. It keeps the file, not the quota's charge: the charge goes when
    /// this reader is dropped.
    pub(crate) fn another(&self) -> SpoolReader {
        SpoolReader::of(&self.file, self.key, self.size)
    }

    /// A reader of `size` bytes of `file` encrypted with `key`, from the start, holding no charge.
    fn of(file: &Arc<File>, key: [u8; 16], size: u64) -> SpoolReader {
        SpoolReader {
            file: Arc::clone(file),
            key,
            size,
            position: 0,
            _charge: None,
            hashed: None,
        }
    }
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

    /// `[node] tempdir`: a spool with no directory of its own goes to the default directory once
    /// one is set (the test process's spools all go there afterwards, which changes nothing else).
    #[test]
    fn spools_go_to_the_default_directory_once_set() {
        use std::os::fd::AsRawFd;
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let first = set_default_spool_dir(dir.path().to_owned());
        let expected = DEFAULT_DIR.get().unwrap().clone();
        assert!(first || expected != dir.path(), "the first call wins");
        let spool = Spool::new(None).unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", spool.file.as_raw_fd())).unwrap();
        assert!(link.starts_with(&expected), "{}", link.display());
        assert!(
            link.to_string_lossy().ends_with("(deleted)"),
            "unlinked: {}",
            link.display()
        );
        // A frontend's own directory still wins.
        let own = tempfile::tempdir().unwrap();
        let spool = Spool::new(Some(own.path())).unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", spool.file.as_raw_fd())).unwrap();
        assert!(link.starts_with(own.path()), "{}", link.display());
    }

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

    /// `when_large` runs once, when the contents reach [`LARGE`] bytes (in order or not), and
    /// never for a spool that stays smaller.
    #[tokio::test]
    async fn the_large_callback_runs_once_when_the_contents_reach_a_mebibyte() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let mut spool = Spool::new(None).unwrap();
        spool.when_large(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let piece = vec![7u8; 100_000];
        let mut at = 0u64;
        while at + (piece.len() as u64) < LARGE {
            spool.write_at(at, &piece).await.unwrap();
            at += piece.len() as u64;
            assert_eq!(calls.load(Ordering::Relaxed), 0, "at {at} bytes");
        }
        spool.write_at(at, &piece).await.unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        spool.write_at(3 * LARGE, b"far on").await.unwrap();
        spool.flush().await.unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1, "once only");

        // A write that lands past a mebibyte at once (a gap) counts too.
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let mut spool = Spool::new(None).unwrap();
        spool.when_large(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        spool.write_at(LARGE + 5, b"x").await.unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_quota_is_shared_by_a_users_spools_and_refuses_sparse_growth() {
        let quota = SpoolQuota::new(3 << 20);
        let mut first = Spool::with_quota(None, &quota, "alice").unwrap();
        let mut second = Spool::with_quota(None, &quota, "alice").unwrap();
        let mut other = Spool::with_quota(None, &quota, "bob").unwrap();
        first.write_at(0, &vec![1; 2 << 20]).await.unwrap();
        // One byte far past the end would materialise zeros up to it: refused, nothing written.
        let err = second.write_at(1 << 40, b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::QuotaExceeded);
        assert!(err.to_string().contains("quota"), "{err}");
        assert_eq!(second.size(), 0);
        let err = second.set_size(1 << 40).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::QuotaExceeded);
        // The quota is per user, across that user's spools.
        let err = second.write_at(0, &vec![2; (1 << 20) + 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::QuotaExceeded);
        second.write_at(0, &vec![2; 1 << 20]).await.unwrap();
        other.write_at(0, &vec![3; 3 << 20]).await.unwrap();
        assert_eq!(quota.used("alice"), 3 << 20);
        // Shrinking and dropping give the space back.
        first.set_size(1 << 20).await.unwrap();
        assert_eq!(quota.used("alice"), 2 << 20);
        drop(first);
        drop(second);
        assert_eq!(quota.used("alice"), 0);
        assert_eq!(quota.used("bob"), 3 << 20);
    }

    /// Many sessions of one user writing at once: what the quota lets through never passes it, and
    /// every byte comes back when the spools go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_spools_of_one_user_never_pass_the_quota() {
        let quota = SpoolQuota::new(10 << 20);
        let writers = (0..16).map(|n| {
            let quota = Arc::clone(&quota);
            tokio::spawn(async move {
                let mut spool = Spool::with_quota(None, &quota, "alice").unwrap();
                let mut accepted = 0u64;
                for step in 0..8u64 {
                    let chunk = vec![n as u8; 128 << 10];
                    if spool.write_at(step * (128 << 10), &chunk).await.is_err() {
                        break;
                    }
                    accepted += chunk.len() as u64;
                    assert!(quota.used("alice") <= 10 << 20);
                }
                (spool, accepted)
            })
        });
        let mut spools = Vec::new();
        let mut accepted = 0;
        for writer in writers.collect::<Vec<_>>() {
            let (spool, bytes) = writer.await.unwrap();
            accepted += bytes;
            spools.push(spool);
        }
        // 16 × 1 MiB were asked for; exactly the quota's 10 MiB fit, and that is what is charged.
        assert_eq!(accepted, 10 << 20);
        assert_eq!(quota.used("alice"), accepted);
        drop(spools);
        assert_eq!(quota.used("alice"), 0);
    }

    fn hasher() -> ConvergentHasher {
        let params = filenode::immutable::ChkParams {
            needed: 3,
            total: 10,
            max_segment_size: 128 << 10,
        };
        ConvergentHasher::new(b"spool secret", &params).unwrap()
    }

    fn expected_key(plaintext: &[u8]) -> ([u8; 16], u64) {
        let params = filenode::immutable::ChkParams {
            needed: 3,
            total: 10,
            max_segment_size: 128 << 10,
        };
        filenode::immutable::convergent_key(plaintext, b"spool secret", &params).unwrap()
    }

    /// Blocks go to the disk behind the writer, one at a time: writes over bytes still on their
    /// way (rewrites, overlaps, gaps, truncations between them) read back as a plain buffer
    /// given the same writes does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_over_blocks_on_their_way_land_in_order() {
        let mut spool = Spool::new(None).unwrap();
        spool.hash_with(Some(hasher()));
        let mut model: Vec<u8> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for round in 0..200u32 {
            let size = model.len() as u64;
            let (offset, len) = match next(8) {
                // Mostly appends, as an upload does; then rewrites, overlaps and gaps.
                0..=3 => (size, 1 + next(300_000)),
                4 | 5 => (next(size + 1), 1 + next(200_000)),
                6 => (size + next(100_000), 1 + next(5_000)),
                _ => {
                    let cut = next(size + 1);
                    spool.set_size(cut).await.unwrap();
                    model.truncate(cut as usize);
                    continue;
                }
            };
            let data: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
            spool.write_at(offset, &data).await.unwrap();
            let end = (offset + len) as usize;
            if model.len() < end {
                model.resize(end, 0);
            }
            model[offset as usize..end].copy_from_slice(&data);
            if round % 50 == 49 {
                let at = next(model.len() as u64);
                let got = spool.read_at(at, 70_000).await.unwrap();
                let want_end = (at as usize + 70_000).min(model.len());
                assert_eq!(
                    got,
                    model[at as usize..want_end],
                    "read at {at} after round {round}"
                );
            }
        }
        spool.flush().await.unwrap();
        assert_eq!(spool.size(), model.len() as u64);
        let mut all = Vec::new();
        spool.reader().read_to_end(&mut all).unwrap();
        assert!(
            all == model,
            "the spool's {} bytes differ from the model's",
            all.len()
        );
        // The writes were not all in order, so no key is claimed for them.
        assert_eq!(spool.into_reader().convergent_key(), None);
    }

    /// Written in order from the start (a gap included, which reads as zeros), the contents are
    /// hashed on the way to the disk and the key is that of the whole plaintext.
    #[tokio::test]
    async fn contents_written_in_order_are_hashed_as_they_arrive() {
        let data: Vec<u8> = (0..2_700_000u32).map(|i| (i % 253) as u8).collect();
        let mut spool = Spool::new(None).unwrap();
        spool.hash_with(Some(hasher()));
        for chunk in data.chunks(65_537) {
            let at = spool.size();
            spool.write_at(at, chunk).await.unwrap();
        }
        spool.write_at(2_800_000, b"after a gap").await.unwrap();
        spool.flush().await.unwrap();
        let mut expected = data.clone();
        expected.resize(2_800_000, 0);
        expected.extend_from_slice(b"after a gap");
        let mut reader = spool.into_reader();
        assert_eq!(reader.convergent_key(), Some(expected_key(&expected)));
        assert_eq!(reader.convergent_key(), None, "taken once");
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, expected);
    }

    /// A write out of order, a rewrite or a truncation stops the hashing: no key, so the upload
    /// hashes the spool itself; a hasher set after the first write is not used either.
    #[tokio::test]
    async fn contents_not_written_in_order_have_no_key() {
        let data = vec![7u8; 3 << 20];
        // Out of order.
        let mut spool = Spool::new(None).unwrap();
        spool.hash_with(Some(hasher()));
        spool.write_at(1 << 20, &data[1 << 20..]).await.unwrap();
        spool.write_at(0, &data[..1 << 20]).await.unwrap();
        spool.flush().await.unwrap();
        assert_eq!(spool.into_reader().convergent_key(), None);
        // A rewrite of bytes already hashed.
        let mut spool = Spool::new(None).unwrap();
        spool.hash_with(Some(hasher()));
        spool.write_at(0, &data).await.unwrap();
        spool.write_at(10, b"changed").await.unwrap();
        spool.flush().await.unwrap();
        assert_eq!(spool.into_reader().convergent_key(), None);
        // A truncation.
        let mut spool = Spool::new(None).unwrap();
        spool.hash_with(Some(hasher()));
        spool.write_at(0, &data).await.unwrap();
        spool.set_size(1000).await.unwrap();
        spool.flush().await.unwrap();
        assert_eq!(spool.into_reader().convergent_key(), None);
        // Hashing asked for after the start.
        let mut spool = Spool::new(None).unwrap();
        spool.write_at(0, b"first").await.unwrap();
        spool.hash_with(Some(hasher()));
        spool.write_at(5, b"second").await.unwrap();
        spool.flush().await.unwrap();
        assert_eq!(spool.into_reader().convergent_key(), None);
    }
}
