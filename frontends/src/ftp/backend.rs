//! The libunftp storage backend over `filenode::node`: every FTP command that touches files goes
//! through [`DirNode`] and [`FileNode`], as the web and SFTP frontends do.
//!
//! - Paths are resolved from the user's root (or a `/uri/CAP` prefix) by [`super::paths`].
//! - `get` opens the file once and streams `offset..` of it ([`FileReader::stream`], so REST is a
//!   ranged read that fetches only the segments it needs).
//! - `put` streams the data connection into an encrypted spool file, then uploads it (CHK), or
//!   replaces the contents of a writable mutable file in place, and links it: the reply to STOR
//!   comes only after the file is on the grid and linked, and a failure is a failure reply.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use filenode::cap::{Cap, MutableFormat};
use filenode::grid::Grid;
use filenode::grid::mutable::chunks_from_read;
use filenode::node::{Child, DirNode, FileNode, Node, NodeError, Replace, normalize_name, unusable_as_path};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use unftp_core::storage::{FEATURE_RESTART, Fileinfo, Metadata, Permissions, Result, StorageBackend};

use super::auth::GridUser;
use super::error::FtpError;
use super::paths::{self, Base, GridPath};
use crate::counters::{FrontendCounters, Op};
use crate::prefetch::prefetch;
use crate::spool::Spool;

/// One FTP session's view of the grid (libunftp makes one per session; they share the grid).
#[derive(Clone)]
pub(crate) struct GridBackend {
    pub(crate) grid: Arc<Grid>,
    /// Where uploads are spooled (`None`: the system's temporary directory).
    pub(crate) spool_dir: Option<PathBuf>,
    /// Bytes of uploads in progress per user (`[ftpd] spool.quota`).
    pub(crate) spool_quota: Arc<crate::SpoolQuota>,
    /// The FTP server's figures (bytes, operations, errors, sessions).
    pub(crate) counters: Arc<FrontendCounters>,
}

// libunftp formats the backend with every command (docs/crates.md §2b): one word.
impl std::fmt::Debug for GridBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GridBackend")
    }
}

/// What LIST, MLSD, MLST, SIZE and MDTM show of a file or directory.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    size: u64,
    dir: bool,
    writable: bool,
    modified: Option<SystemTime>,
}

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.size
    }
    fn is_dir(&self) -> bool {
        self.dir
    }
    fn is_file(&self) -> bool {
        !self.dir
    }
    fn is_symlink(&self) -> bool {
        false
    }
    fn modified(&self) -> Result<SystemTime> {
        self.modified
            .ok_or_else(|| unftp_core::storage::ErrorKind::PermanentFileNotAvailable.into())
    }
    fn gid(&self) -> u32 {
        0
    }
    fn uid(&self) -> u32 {
        0
    }
    fn permissions(&self) -> Permissions {
        Permissions(match (self.dir, self.writable) {
            (true, true) => 0o755,
            (true, false) => 0o555,
            (false, true) => 0o644,
            (false, false) => 0o444,
        })
    }
}

/// `tahoe.linkmotime` (or the user's `mtime`) of a link, as a time.
fn link_modified(child: &Child) -> Option<SystemTime> {
    let seconds = child
        .metadata
        .get("tahoe")
        .and_then(|t| t.get("linkmotime"))
        .or_else(|| child.metadata.get("mtime"))
        .and_then(serde_json::Value::as_f64)?;
    (seconds.is_finite() && seconds >= 0.0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

type FtpResult<T> = std::result::Result<T, FtpError>;

impl GridBackend {
    /// Counts an operation and, when it failed, why; the answer as libunftp takes it.
    fn counted<T>(&self, op: Op, result: FtpResult<T>) -> Result<T> {
        self.counters.operation(op);
        result.map_err(|e| {
            self.counters.error(e.counted_kind());
            e.into()
        })
    }

    fn parse(path: &Path) -> FtpResult<GridPath> {
        paths::parse(path).ok_or(FtpError::BadPath)
    }

    /// The node a base stands for.
    fn base_node(&self, user: &GridUser, base: &Base) -> Node {
        match base {
            Base::Root => Node::Dir(DirNode::new(&self.grid, user.root.clone())),
            Base::Cap(cap) => self.grid.node(cap.clone()),
        }
    }

    /// The node at a path.
    async fn resolve(&self, user: &GridUser, path: &GridPath) -> FtpResult<Node> {
        let base = self.base_node(user, &path.base);
        if path.names.is_empty() {
            return Ok(base);
        }
        match base {
            Node::Dir(dir) => Ok(dir.walk(&path.names).await?),
            _ => Err(FtpError::NotADirectory),
        }
    }

    /// The directory at a path.
    async fn resolve_dir(&self, user: &GridUser, path: &GridPath) -> FtpResult<DirNode> {
        match self.resolve(user, path).await {
            Ok(Node::Dir(dir)) => Ok(dir),
            Ok(_) | Err(FtpError::Node(NodeError::NotADirectory(_))) => Err(FtpError::NotADirectory),
            Err(e) => Err(e),
        }
    }

    /// The parent directory of a path and the (normalised) last name.
    async fn resolve_parent(&self, user: &GridUser, path: &Path) -> FtpResult<(DirNode, String)> {
        let path = Self::parse(path)?;
        let (parent, name) = path.split_last().ok_or(FtpError::NoParent)?;
        let name = normalize_name(name)?;
        Ok((self.resolve_dir(user, &parent).await?, name))
    }

    /// The metadata of a link.
    async fn child_meta(child: &Child, grid: &Arc<Grid>, parent_writable: bool) -> Meta {
        // A file in a writable directory can be replaced (STOR), renamed and deleted; a directory
        // can take new children when its own cap is writable.
        let writable = if child.is_dir() {
            !child.cap.is_readonly()
        } else {
            parent_writable
        };
        let size = match (&child.cap, child.size()) {
            (_, Some(size)) => size,
            (Cap::File(file), None) if file.is_mutable() => {
                FileNode::new(grid, file.clone()).size().await.unwrap_or(0)
            }
            _ => 0,
        };
        Meta {
            size,
            dir: child.is_dir(),
            writable,
            modified: link_modified(child),
        }
    }

    async fn metadata_of(&self, user: &GridUser, path: &GridPath) -> FtpResult<Meta> {
        match path.split_last() {
            Some((parent, name)) => {
                let parent = self.resolve_dir(user, &parent).await?;
                let child = parent.get(name).await?;
                Ok(Self::child_meta(&child, &self.grid, !parent.is_readonly()).await)
            }
            None => {
                let node = self.base_node(user, &path.base);
                Ok(match node {
                    Node::Dir(dir) => Meta {
                        size: 0,
                        dir: true,
                        writable: !dir.is_readonly(),
                        modified: None,
                    },
                    Node::File(file) => Meta {
                        size: file.size().await?,
                        dir: false,
                        writable: !file.is_readonly(),
                        modified: None,
                    },
                    Node::Unknown(_) => return Err(FtpError::BadPath),
                })
            }
        }
    }

    async fn list_of(&self, user: &GridUser, path: &Path) -> FtpResult<Vec<Fileinfo<PathBuf, Meta>>> {
        let path = Self::parse(path)?;
        let dir = match self.resolve(user, &path).await? {
            Node::Dir(dir) => dir,
            // `LIST file` lists the file itself, as Unix servers do.
            Node::File(_) | Node::Unknown(_) => {
                let name = path.names.last().cloned().unwrap_or_default();
                let meta = self.metadata_of(user, &path).await?;
                return Ok(vec![Fileinfo {
                    path: PathBuf::from(name),
                    metadata: meta,
                }]);
            }
        };
        let writable = !dir.is_readonly();
        let mut children = dir.list().await?;
        // A name no path can reach (`..`, `a/b`, empty, NUL; only a directory written by hand
        // holds one) is left out, as is one with a line break, which would end the LIST line (and
        // start a forged one) and which no FTP command can carry.
        let before = children.len();
        children
            .retain(|child| unusable_as_path(&child.name).is_none() && !child.name.contains(['\r', '\n']));
        if children.len() < before {
            let left_out = before - children.len();
            tracing::info!(
                left_out,
                "FTP listing: left out entries whose names cannot be paths"
            );
        }
        let metas = futures::stream::iter(children.iter().cloned().map(|child| {
            let grid = Arc::clone(&self.grid);
            async move { Self::child_meta(&child, &grid, writable).await }
        }))
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
        Ok(children
            .into_iter()
            .zip(metas)
            .map(|(child, metadata)| Fileinfo {
                path: PathBuf::from(child.name),
                metadata,
            })
            .collect())
    }

    /// The bytes of the file at `path` from `start` on.
    async fn open_stream(
        &self,
        user: &GridUser,
        path: &Path,
        start: u64,
    ) -> FtpResult<BoxStream<'static, std::result::Result<Bytes, NodeError>>> {
        let path = Self::parse(path)?;
        let file = match self.resolve(user, &path).await? {
            Node::File(file) => file,
            Node::Dir(_) => return Err(FtpError::IsADirectory),
            Node::Unknown(_) => return Err(FtpError::BadPath),
        };
        // Fetching runs ahead of the data connection (which may be slower, e.g. over TLS). A small
        // mutable file is read whole first, so the transfer is one version whole.
        let opened = crate::whole::open(&file).await?;
        let held = opened.held;
        let stream = opened.reader.stream(start, u64::MAX).map(move |chunk| {
            let _held = &held;
            chunk
        });
        Ok(prefetch(stream.boxed(), READ_AHEAD))
    }

    async fn get_reader(&self, user: &GridUser, path: &Path, start: u64) -> FtpResult<GridReader> {
        Ok(GridReader {
            stream: Mutex::new(self.open_stream(user, path, start).await?),
            chunk: Bytes::new(),
            counters: Arc::clone(&self.counters),
        })
    }

    async fn put_from<R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &GridUser,
        mut input: R,
        path: &Path,
        start: u64,
    ) -> FtpResult<u64> {
        let checked = self.check_put(user, path, start).await;
        let (parent, name, existing) = match checked {
            Ok(found) => found,
            Err(e) => {
                // Read (and drop) what the client sends, so that it sees the refusal as a reply
                // rather than as a broken data connection.
                let _ = tokio::io::copy(&mut input, &mut tokio::io::sink()).await;
                return Err(e);
            }
        };
        let spool = self.spool(user, input).await?;
        let len = spool.size();
        match existing {
            Some(file) => {
                if let Some(message) = crate::sdmf_too_large(&file, len) {
                    return Err(FtpError::Exceeded(std::io::Error::new(
                        std::io::ErrorKind::FileTooLarge,
                        message,
                    )));
                }
                file.overwrite(len, chunks_from_read(spool.reader())).await?;
            }
            None => {
                let result = self
                    .grid
                    .upload(spool.reader(), None)
                    .await
                    .map_err(NodeError::from)?;
                parent
                    .set_child(&name, &Cap::File(result.cap), None, Replace::OnlyFiles)
                    .await?;
            }
        }
        Ok(len)
    }

    /// Where a STOR goes: the parent, the name, and the mutable file to overwrite in place if the
    /// name holds a writable one. Refuses appends, directories and read-only parents.
    async fn check_put(
        &self,
        user: &GridUser,
        path: &Path,
        start: u64,
    ) -> FtpResult<(DirNode, String, Option<FileNode>)> {
        if start > 0 {
            return Err(FtpError::NoAppend);
        }
        let (parent, name) = self.resolve_parent(user, path).await?;
        if parent.is_readonly() {
            return Err(NodeError::NotWritable("the directory's cap is read-only").into());
        }
        let existing = match parent.get(&name).await {
            Ok(child) => match child.node(&self.grid) {
                Node::Dir(_) => return Err(FtpError::IsADirectory),
                Node::File(file) if file.is_mutable() && !file.is_readonly() => Some(file),
                _ => None,
            },
            Err(NodeError::NoSuchChild(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok((parent, name, existing))
    }

    /// Streams the upload into an encrypted spool ([`Spool`]: no plaintext reaches the disk).
    /// Past the user's spool quota the rest of the upload is read and dropped (so that the client
    /// sees the 552 reply rather than a broken data connection) and nothing more is written.
    async fn spool<R: AsyncRead + Unpin>(&self, user: &GridUser, mut input: R) -> FtpResult<Spool> {
        let dir = self.spool_dir.clone();
        let quota = Arc::clone(&self.spool_quota);
        let name = user.name.clone();
        let mut spool = tokio::task::spawn_blocking(move || Spool::with_quota(dir.as_deref(), &quota, &name))
            .await
            .map_err(|e| FtpError::Spool(std::io::Error::other(e)))?
            .map_err(FtpError::Spool)?;
        let mut buffer = vec![0u8; SPOOL_CHUNK];
        loop {
            let n = input.read(&mut buffer).await.map_err(FtpError::Transfer)?;
            if n == 0 {
                break;
            }
            self.counters.bytes_in(n as u64);
            let at = spool.size();
            if let Err(e) = spool.write_at(at, &buffer[..n]).await {
                if e.kind() == std::io::ErrorKind::QuotaExceeded {
                    drop(spool);
                    let _ = tokio::io::copy(&mut input, &mut tokio::io::sink()).await;
                    return Err(FtpError::Exceeded(e));
                }
                return Err(FtpError::Spool(e));
            }
        }
        spool.flush().await.map_err(FtpError::Spool)?;
        Ok(spool)
    }

    async fn mkd_at(&self, user: &GridUser, path: &Path) -> FtpResult<()> {
        let (parent, name) = self.resolve_parent(user, path).await?;
        parent
            .create_subdirectory(&name, MutableFormat::Sdmf, Replace::Never)
            .await?;
        Ok(())
    }

    async fn del_at(&self, user: &GridUser, path: &Path) -> FtpResult<()> {
        let (parent, name) = self.resolve_parent(user, path).await?;
        if parent.get(&name).await?.is_dir() {
            return Err(FtpError::IsADirectory);
        }
        parent.unlink(&name).await?;
        Ok(())
    }

    async fn rmd_at(&self, user: &GridUser, path: &Path) -> FtpResult<()> {
        let (parent, name) = self.resolve_parent(user, path).await?;
        match parent.get(&name).await?.node(&self.grid) {
            Node::Dir(dir) => {
                if !dir.list().await?.is_empty() {
                    return Err(FtpError::NotEmpty);
                }
            }
            _ => return Err(FtpError::NotADirectory),
        }
        parent.unlink(&name).await?;
        Ok(())
    }

    async fn rename_at(&self, user: &GridUser, from: &Path, to: &Path) -> FtpResult<()> {
        let (from_dir, from_name) = self.resolve_parent(user, from).await?;
        let (to_dir, to_name) = self.resolve_parent(user, to).await?;
        // RNTO replaces files, never directories.
        if from_dir.cap().to_string() == to_dir.cap().to_string() {
            from_dir.rename(&from_name, &to_name, Replace::OnlyFiles).await?;
        } else {
            from_dir
                .move_child_to(&from_name, &to_dir, &to_name, Replace::OnlyFiles)
                .await?;
        }
        Ok(())
    }

    async fn cwd_at(&self, user: &GridUser, path: &Path) -> FtpResult<()> {
        let path = Self::parse(path)?;
        self.resolve_dir(user, &path).await.map(|_| ())
    }
}

/// Chunks (about a segment each) fetched ahead of the data connection.
const READ_AHEAD: usize = 4;

/// How much of the data connection is read at once (the spool gathers reads into larger writes).
const SPOOL_CHUNK: usize = 256 << 10;

/// A file's bytes as an `AsyncRead` (what libunftp sends on the data connection).
pub(crate) struct GridReader {
    // `Mutex` only makes the stream `Sync`, as libunftp requires; `poll_read` has `&mut self`, so
    // it is never locked (`get_mut`).
    stream: Mutex<BoxStream<'static, std::result::Result<Bytes, NodeError>>>,
    chunk: Bytes,
    counters: Arc<FrontendCounters>,
}

impl AsyncRead for GridReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.chunk.is_empty() {
            let stream = this
                .stream
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match stream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.chunk = chunk,
                Poll::Ready(Some(Err(e))) => {
                    this.counters.error(crate::counters::ErrorKind::of_node(&e));
                    tracing::warn!(reason = %e, "FTP download failed");
                    return Poll::Ready(Err(std::io::Error::other(e)));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk.split_to(n));
        this.counters.bytes_out(n as u64);
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl StorageBackend<GridUser> for GridBackend {
    type Metadata = Meta;

    fn supported_features(&self) -> u32 {
        FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + std::fmt::Debug>(
        &self,
        user: &GridUser,
        path: P,
    ) -> Result<Meta> {
        let result = match Self::parse(path.as_ref()) {
            Ok(path) => self.metadata_of(user, &path).await,
            Err(e) => Err(e),
        };
        self.counted(Op::Stat, result)
    }

    async fn list<P: AsRef<Path> + Send + std::fmt::Debug>(
        &self,
        user: &GridUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Meta>>> {
        let result = self.list_of(user, path.as_ref()).await;
        self.counted(Op::List, result)
    }

    async fn get<P: AsRef<Path> + Send + std::fmt::Debug>(
        &self,
        user: &GridUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let result = self.get_reader(user, path.as_ref(), start_pos).await;
        Ok(Box::new(self.counted(Op::Download, result)?))
    }

    /// RETR: each decoded chunk (a segment or so) is written whole, rather than through
    /// `tokio::io::copy`'s 8 KiB buffer (which makes 8 KiB TLS records and many small writes).
    async fn get_into<'a, P, W>(
        &self,
        user: &GridUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> Result<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + Sync + Send + ?Sized,
        P: AsRef<Path> + Send + std::fmt::Debug,
    {
        let opened = self.open_stream(user, path.as_ref(), start_pos).await;
        let mut stream = self.counted(Op::Download, opened)?;
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let e = FtpError::Node(e);
                    self.counters.error(e.counted_kind());
                    return Err(e.into());
                }
            };
            output.write_all(&chunk).await?;
            self.counters.bytes_out(chunk.len() as u64);
            total += chunk.len() as u64;
        }
        output.flush().await?;
        Ok(total)
    }

    async fn put<P: AsRef<Path> + Send + std::fmt::Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &GridUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        let result = self.put_from(user, input, path.as_ref(), start_pos).await;
        self.counted(Op::Upload, result)
    }

    async fn del<P: AsRef<Path> + Send + std::fmt::Debug>(&self, user: &GridUser, path: P) -> Result<()> {
        let result = self.del_at(user, path.as_ref()).await;
        self.counted(Op::Delete, result)
    }

    async fn mkd<P: AsRef<Path> + Send + std::fmt::Debug>(&self, user: &GridUser, path: P) -> Result<()> {
        let result = self.mkd_at(user, path.as_ref()).await;
        self.counted(Op::Mkdir, result)
    }

    async fn rename<P: AsRef<Path> + Send + std::fmt::Debug>(
        &self,
        user: &GridUser,
        from: P,
        to: P,
    ) -> Result<()> {
        let result = self.rename_at(user, from.as_ref(), to.as_ref()).await;
        self.counted(Op::Rename, result)
    }

    async fn rmd<P: AsRef<Path> + Send + std::fmt::Debug>(&self, user: &GridUser, path: P) -> Result<()> {
        let result = self.rmd_at(user, path.as_ref()).await;
        self.counted(Op::Delete, result)
    }

    async fn cwd<P: AsRef<Path> + Send + std::fmt::Debug>(&self, user: &GridUser, path: P) -> Result<()> {
        let result = self.cwd_at(user, path.as_ref()).await;
        self.counted(Op::Other, result)
    }
}
