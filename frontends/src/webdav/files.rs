//! dav-server's `GuardedFileSystem` over the file-system layer (`filenode::fs`): each request's
//! credentials are the logged-in user's [`Fs`] (their root), so one adapter serves every user.
//!
//! - A directory's *link* is what DELETE removes and what a MOVE or COPY over it replaces: its
//!   `symlink_metadata` calls it a link (dav-server then removes it with one `remove_file`), so a
//!   DELETE of a collection unlinks it as Tahoe does, and never empties a directory that may be
//!   linked elsewhere too; the root (any path's base) has no link, so its DELETE is refused
//!   whole. Listings (`read_dir`) and `metadata` show directories as collections.
//! - GET streams the requested range ([`FileReader::stream`], fetched a few segments ahead).
//! - PUT is checked when the file is opened (a directory, a read-only parent, an SDMF bound),
//!   spooled encrypted ([`Spool`], per-user quota) as it arrives, and stored when dav-server
//!   flushes the file: only if every byte the request announced arrived (dav-server flushes a
//!   body that ended early, then answers 400).
//! - A PUT that makes a new immutable file on a gateway whose convergence is off
//!   (`[client] convergence = false`), with its length announced (`Content-Length`, or macOS's
//!   `X-Expected-Entity-Length`: dav-server gives it to `open` as `OpenOptions::size`), is not
//!   spooled: its bytes stream into the encoder as they arrive ([`StreamedUpload`], as the web
//!   gateway's `convergence=false` uploads) and the file is linked at the flush, only if exactly
//!   the announced bytes arrived. Nothing is charged to the spool quota.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavMetaData, FsError as DavError, FsFuture, FsStream, GuardedFileSystem,
    OpenOptions, ReadDirMeta,
};
use filenode::fs::{EntryKind, Fs, FsError, FsErrorKind, FsPath, Stat, WriteTarget};
use filenode::node::{FileReader, NodeError, Replace};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use crate::SpoolQuota;
use crate::spool::Spool;
use crate::streamed::StreamedUpload;

/// Objects one COPY request may create or link (dav-server copies a tree one object at a time).
pub(crate) const MAX_COPY_OBJECTS: usize = filenode::fs::MAX_COPY_ENTRIES;

/// Chunks (about a segment each) fetched ahead of a GET's response body.
const READ_AHEAD: usize = 4;

/// One request's user: their file system, their spool, and what this request may still copy.
#[derive(Clone)]
pub(crate) struct DavUser {
    pub(crate) name: String,
    pub(crate) fs: Fs,
    pub(crate) spool_dir: Option<PathBuf>,
    pub(crate) spool_quota: Arc<SpoolQuota>,
    pub(crate) copies_left: Arc<AtomicUsize>,
}

/// The adapter (stateless: everything is in the credentials).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GridDav;

/// The layer's error as dav-server's status, logged (kind and message: never a cap) when it is
/// not the client's everyday not-found.
fn dav_error(e: FsError) -> DavError {
    let mapped = match e.kind() {
        FsErrorKind::NotFound | FsErrorKind::NotADirectory => DavError::NotFound,
        FsErrorKind::Exists => DavError::Exists,
        FsErrorKind::IsADirectory | FsErrorKind::NotEmpty | FsErrorKind::ReadOnly | FsErrorKind::BadPath => {
            DavError::Forbidden
        }
        FsErrorKind::TooLarge => DavError::TooLarge,
        FsErrorKind::Unavailable | FsErrorKind::Gone | FsErrorKind::Conflict | FsErrorKind::Other => {
            DavError::GeneralFailure
        }
    };
    if mapped != DavError::NotFound {
        tracing::info!(kind = ?e.kind(), error = %e, "WebDAV request refused");
    }
    mapped
}

/// A dav-server path as a layer path: decoded bytes, which must be UTF-8.
fn fs_path(path: &DavPath) -> Result<FsPath, DavError> {
    let text = std::str::from_utf8(path.as_bytes()).map_err(|_| DavError::Forbidden)?;
    FsPath::parse(text).map_err(|e| match e.kind() {
        FsErrorKind::BadPath if text.len() > filenode::fs::path::MAX_PATH_BYTES => DavError::PathTooLong,
        _ => dav_error(e),
    })
}

fn time(seconds: Option<f64>) -> Option<SystemTime> {
    seconds.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s))
}

/// What PROPFIND shows of an object.
#[derive(Debug, Clone)]
struct Meta {
    len: u64,
    dir: bool,
    /// A directory's link (see the module): neither a file nor a collection.
    link: bool,
    modified: Option<SystemTime>,
    created: Option<SystemTime>,
    writable: bool,
    format: &'static str,
}

impl Meta {
    fn of(stat: &Stat) -> Meta {
        Meta {
            len: stat.size,
            dir: stat.kind == EntryKind::Dir,
            link: false,
            modified: time(stat.mtime),
            created: time(stat.ctime),
            writable: stat.writable,
            format: stat.format,
        }
    }
}

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.len
    }
    fn modified(&self) -> dav_server::fs::FsResult<SystemTime> {
        self.modified.ok_or(DavError::NotImplemented)
    }
    fn is_dir(&self) -> bool {
        self.dir && !self.link
    }
    fn is_file(&self) -> bool {
        !self.dir && !self.link
    }
    fn is_symlink(&self) -> bool {
        self.link
    }
    fn created(&self) -> dav_server::fs::FsResult<SystemTime> {
        self.created.ok_or(DavError::NotImplemented)
    }
    fn executable(&self) -> dav_server::fs::FsResult<bool> {
        Ok(false)
    }
    fn etag(&self) -> Option<String> {
        let modified = self.modified?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        Some(format!(
            "{:x}-{:x}-{}{}",
            self.len,
            modified.as_micros(),
            self.format,
            if self.writable { "w" } else { "r" }
        ))
    }
}

/// One child in a listing.
struct Entry {
    name: String,
    meta: Meta,
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.as_bytes().to_vec()
    }
    fn metadata(&'_ self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(meta) }.boxed()
    }
}

/// A file open for reading: one version, streamed from the position on.
struct ReadFile {
    reader: FileReader,
    /// The whole-read budget a small mutable file's contents hold.
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
    meta: Meta,
    position: u64,
    /// The stream from `position` on (started at the first read after a seek), and what is left
    /// of its last chunk.
    stream: Mutex<Option<BoxStream<'static, Result<Bytes, NodeError>>>>,
    left: Bytes,
}

impl std::fmt::Debug for ReadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadFile")
            .field("size", &self.reader.size())
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl ReadFile {
    async fn read(&mut self, count: usize) -> Result<Bytes, DavError> {
        let size = self.reader.size();
        if count == 0 || self.position >= size {
            return Ok(Bytes::new());
        }
        if self.left.is_empty() {
            let mut stream = self
                .stream
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .unwrap_or_else(|| {
                    crate::prefetch::prefetch(self.reader.stream(self.position, u64::MAX), READ_AHEAD)
                });
            let next = stream.next().await;
            *self
                .stream
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stream);
            match next {
                Some(Ok(chunk)) => self.left = chunk,
                Some(Err(e)) => return Err(dav_error(e.into())),
                // Never an empty read before the end: dav-server would send zeros in its place.
                None => {
                    tracing::warn!("WebDAV read: the file ended before its size");
                    return Err(DavError::GeneralFailure);
                }
            }
        }
        let take = count.min(self.left.len());
        let chunk = self.left.split_to(take);
        self.position += chunk.len() as u64;
        Ok(chunk)
    }
}

/// A file open for writing: the checked target and where the bytes go as they arrive.
struct WriteFile {
    target: Option<WriteTarget>,
    sink: Option<Sink>,
    /// The size the request announced (Content-Length), if any.
    expected: Option<u64>,
    written: u64,
    meta: Meta,
}

impl std::fmt::Debug for WriteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFile")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// Where a PUT's bytes go.
enum Sink {
    /// The encrypted spool, stored at the flush.
    Spool(Box<Spool>),
    /// Straight into the encoder (convergence off, the length announced).
    Stream(StreamedUpload),
}

/// A streamed upload's failure as dav-server's status (the layer's mapping, so a grid without
/// enough servers is what it is for a spooled PUT).
fn upload_error(e: filenode::grid::upload::UploadError) -> DavError {
    dav_error(FsError::from(NodeError::from(e)))
}

fn spool_error(e: std::io::Error) -> DavError {
    if e.kind() == std::io::ErrorKind::QuotaExceeded {
        tracing::info!("WebDAV upload refused: past the user's spool quota");
        DavError::InsufficientStorage
    } else {
        tracing::warn!(error = %e, "WebDAV spool failed");
        DavError::GeneralFailure
    }
}

impl WriteFile {
    async fn write(&mut self, data: Bytes) -> Result<(), DavError> {
        let len = data.len() as u64;
        if self
            .expected
            .is_some_and(|expected| self.written + len > expected)
        {
            // Past the announced length: nothing more is taken (and nothing will be stored).
            self.sink = None;
            return Err(DavError::GeneralFailure);
        }
        match self.sink.as_mut().ok_or(DavError::GeneralFailure)? {
            Sink::Spool(spool) => spool.write_at(self.written, &data).await.map_err(spool_error)?,
            Sink::Stream(upload) => {
                if upload.send(data).await.is_err() {
                    // The upload failed: say why.
                    let Some(Sink::Stream(upload)) = self.sink.take() else {
                        return Err(DavError::GeneralFailure);
                    };
                    return Err(match upload.finish().await {
                        Err(e) => upload_error(e),
                        Ok(_) => DavError::GeneralFailure,
                    });
                }
            }
        }
        self.written += len;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), DavError> {
        let (Some(target), Some(sink)) = (self.target.take(), self.sink.take()) else {
            return Ok(());
        };
        if self.expected.is_some_and(|expected| expected != self.written) {
            // The body ended early (or ran long): storing it would store a wrong file (a streamed
            // upload dropped here ends short, and stores nothing).
            return Err(DavError::GeneralFailure);
        }
        let mut spool = match sink {
            Sink::Spool(spool) => *spool,
            Sink::Stream(upload) => {
                let result = upload.finish().await.map_err(upload_error)?;
                target
                    .link_stored(&filenode::cap::Cap::File(result.cap), None)
                    .await
                    .map_err(dav_error)?;
                self.meta.len = result.size;
                self.meta.modified = Some(SystemTime::now());
                return Ok(());
            }
        };
        spool.flush().await.map_err(spool_error)?;
        let len = spool.size();
        let mut reader = spool.into_reader();
        let mut target = target;
        target.set_convergent_key(reader.convergent_key());
        target.commit(reader, len, None).await.map_err(dav_error)?;
        self.meta.len = len;
        self.meta.modified = Some(SystemTime::now());
        Ok(())
    }
}

#[derive(Debug)]
enum OpenFile {
    Read(Box<ReadFile>),
    Write(Box<WriteFile>),
}

impl DavFile for OpenFile {
    fn metadata(&'_ mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = match self {
            OpenFile::Read(file) => Box::new(file.meta.clone()),
            OpenFile::Write(file) => Box::new(file.meta.clone()),
        };
        async move { Ok(meta) }.boxed()
    }

    fn write_buf(&'_ mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async move {
            let OpenFile::Write(file) = self else {
                return Err(DavError::Forbidden);
            };
            // One copy at most (none when the buffer is already `Bytes`).
            let bytes = buf.copy_to_bytes(buf.remaining());
            file.write(bytes).await
        }
        .boxed()
    }

    fn write_bytes(&'_ mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move {
            let OpenFile::Write(file) = self else {
                return Err(DavError::Forbidden);
            };
            file.write(buf).await
        }
        .boxed()
    }

    fn read_bytes(&'_ mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            let OpenFile::Read(file) = self else {
                return Err(DavError::Forbidden);
            };
            file.read(count).await
        }
        .boxed()
    }

    fn seek(&'_ mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            match self {
                OpenFile::Read(file) => {
                    let size = file.reader.size();
                    let to = match pos {
                        SeekFrom::Start(p) => Some(p),
                        SeekFrom::End(d) => size.checked_add_signed(d),
                        SeekFrom::Current(d) => file.position.checked_add_signed(d),
                    }
                    .ok_or(DavError::GeneralFailure)?;
                    if to != file.position {
                        file.position = to;
                        file.left = Bytes::new();
                        *file
                            .stream
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    }
                    Ok(to)
                }
                // A write starts at 0 and goes on: partial PUTs (Content-Range) are refused.
                OpenFile::Write(file) => match pos {
                    SeekFrom::Start(0) if file.written == 0 => Ok(0),
                    _ => Err(DavError::NotImplemented),
                },
            }
        }
        .boxed()
    }

    fn flush(&'_ mut self) -> FsFuture<'_, ()> {
        async move {
            match self {
                OpenFile::Read(_) => Ok(()),
                OpenFile::Write(file) => file.commit().await,
            }
        }
        .boxed()
    }
}

/// Takes one object from the request's copy budget.
fn spend_copy(user: &DavUser) -> Result<(), DavError> {
    user.copies_left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
        .map(|_| ())
        .map_err(|_| {
            tracing::info!(max = MAX_COPY_OBJECTS, "WebDAV COPY refused: too many objects");
            DavError::InsufficientStorage
        })
}

impl GuardedFileSystem<DavUser> for GridDav {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
        user: &'a DavUser,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            let path = fs_path(path)?;
            if !options.write {
                let file = user.fs.file(&path).await.map_err(dav_error)?;
                let stat = user.fs.stat(&path).await.map_err(dav_error)?;
                let opened = crate::whole::open(&file).await.map_err(|e| dav_error(e.into()))?;
                let mut meta = Meta::of(&stat);
                meta.len = opened.reader.size();
                let file: Box<dyn DavFile> = Box::new(OpenFile::Read(Box::new(ReadFile {
                    reader: opened.reader,
                    _held: opened.held,
                    meta,
                    position: 0,
                    stream: Mutex::new(None),
                    left: Bytes::new(),
                })));
                return Ok(file);
            }
            if options.append {
                return Err(DavError::NotImplemented);
            }
            if !options.create && !options.create_new {
                // If-Match: * — the file must exist.
                user.fs.stat(&path).await.map_err(dav_error)?;
            }
            let replace = if options.create_new {
                Replace::Never
            } else {
                Replace::OnlyFiles
            };
            let target = user.fs.prepare_write(&path, replace).await.map_err(dav_error)?;
            if let Some(size) = options.size {
                target.check_size(size).map_err(dav_error)?;
                if size > user.spool_quota.limit() {
                    tracing::info!("WebDAV upload refused: larger than the spool quota");
                    return Err(DavError::InsufficientStorage);
                }
            }
            let meta = Meta {
                len: 0,
                dir: false,
                link: false,
                modified: None,
                created: None,
                writable: true,
                format: "CHK",
            };
            if let Some(size) = options.size.filter(|_| target.uploads_without_convergence()) {
                // Convergence off and the length known: streamed, no spool (see the module).
                let upload = StreamedUpload::start(Arc::clone(user.fs.grid()), size);
                let file: Box<dyn DavFile> = Box::new(OpenFile::Write(Box::new(WriteFile {
                    target: Some(target),
                    sink: Some(Sink::Stream(upload)),
                    expected: Some(size),
                    written: 0,
                    meta,
                })));
                return Ok(file);
            }
            let (dir, quota, name) = (
                user.spool_dir.clone(),
                Arc::clone(&user.spool_quota),
                user.name.clone(),
            );
            let mut spool =
                tokio::task::spawn_blocking(move || Spool::with_quota(dir.as_deref(), &quota, &name))
                    .await
                    .map_err(|_| DavError::GeneralFailure)?
                    .map_err(spool_error)?;
            // Hashed for the convergent key as the body arrives, so the commit reads it once.
            spool.hash_with(target.convergent_hasher());
            spool.warm_when_large(target.grid());
            let file: Box<dyn DavFile> = Box::new(OpenFile::Write(Box::new(WriteFile {
                target: Some(target),
                sink: Some(Sink::Spool(Box::new(spool))),
                expected: options.size,
                written: 0,
                meta,
            })));
            Ok(file)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
        user: &'a DavUser,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let path = fs_path(path)?;
            let entries = user.fs.list(&path).await.map_err(dav_error)?;
            let mut shown: Vec<dav_server::fs::FsResult<Box<dyn DavDirEntry>>> =
                Vec::with_capacity(entries.len());
            for entry in entries {
                // An object this version cannot open is not shown (it cannot be read or listed).
                if entry.stat.kind == EntryKind::Unknown {
                    continue;
                }
                let meta = Meta::of(&entry.stat);
                let boxed: Box<dyn DavDirEntry> = Box::new(Entry {
                    name: entry.name,
                    meta,
                });
                shown.push(Ok(boxed));
            }
            let stream: FsStream<Box<dyn DavDirEntry>> = Box::pin(futures::stream::iter(shown));
            Ok(stream)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let path = fs_path(path)?;
            let stat = user.fs.stat(&path).await.map_err(dav_error)?;
            Ok(Box::new(Meta::of(&stat)) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn symlink_metadata<'a>(
        &'a self,
        path: &'a DavPath,
        user: &'a DavUser,
    ) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let stat = user.fs.stat(&fs_path(path)?).await.map_err(dav_error)?;
            let mut meta = Meta::of(&stat);
            // Every directory is reached through a link (see the module). A path's base (the
            // root, `/uri/CAP`) too: it has no link to remove, so a DELETE of it is refused
            // whole, instead of dav-server unlinking every child below it one by one.
            meta.link = meta.dir;
            Ok(Box::new(meta) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, ()> {
        async move {
            spend_copy(user)?;
            let path = fs_path(path)?;
            user.fs.mkdir(&path).await.map(|_| ()).map_err(dav_error)
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, ()> {
        async move {
            let path = fs_path(path)?;
            user.fs.remove(&path).await.map_err(dav_error)
        }
        .boxed()
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, ()> {
        async move {
            let path = fs_path(path)?;
            user.fs.remove(&path).await.map_err(dav_error)
        }
        .boxed()
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, ()> {
        async move {
            let (from, to) = (fs_path(from)?, fs_path(to)?);
            user.fs
                .rename(&from, &to, Replace::OnlyFiles)
                .await
                .map_err(dav_error)
        }
        .boxed()
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, ()> {
        async move {
            spend_copy(user)?;
            let (from, to) = (fs_path(from)?, fs_path(to)?);
            user.fs
                .copy(&from, &to, Replace::OnlyFiles)
                .await
                .map(|_| ())
                .map_err(dav_error)
        }
        .boxed()
    }
}
