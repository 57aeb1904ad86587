//! The filesystem interface every frontend uses (web, SFTP, FTP): a [`Node`] is a file (immutable
//! or mutable) or a directory, reached from a cap through a [`Grid`].
//!
//! - [`FileNode`]: size, ranged reads as a stream ([`FileReader`]); for mutable files also
//!   overwrite, write at an offset (MDMF) and modify-with-retry.
//! - [`DirNode`]: list, get, set/replace a child (`replace` semantics as Tahoe's), create a
//!   subdirectory, unlink, rename within, move across directories, walk a path.
//!
//! Read-only caps give read-only nodes: every write fails with [`NodeError::NotWritable`]. Writes
//! from this client to one mutable file or directory are serialised (one lock per file in the
//! grid); writes from other clients are detected by test-and-set and surface as
//! [`NodeError::UncoordinatedWrite`] (modify operations retry a few times first).

mod dir;
pub mod metadata;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

pub use dir::{Child, DirNode, EntryGuard, ManifestEntry, Replace, normalize_name, unusable_as_path};
pub(crate) use dir::{entry_to_child, find_child};
pub use metadata::{Metadata, python_json};

use crate::cap::{Cap, DirCap, FileCap, LitCap, MutableAccess, MutableCap, MutableFormat};
use crate::grid::check::{CheckOptions, RepairReport};
use crate::grid::mutable::{
    self as gm, ChunkSource, MutableError, MutableReader, WriteContext, chunks_from_bytes,
};
use crate::grid::upload::UploadError;
use crate::grid::{Grid, MUTABLE_CONTENTS_KEPT, MutableState};
use crate::immutable::{ChkReader, DownloadError};
use crate::operations::{Op, OpKind};

/// Why a filesystem operation failed. Frontends map these to their status codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The directory has no child of that name.
    #[error("No such child: {0}")]
    NoSuchChild(String),
    /// `replace=false` (or only-files over a directory) and the name exists.
    #[error("There was already a child named {0:?}, and you asked not to replace it.")]
    ExistingChild(String),
    /// A write through a read-only cap.
    #[error("this is read-only: {0}")]
    NotWritable(&'static str),
    /// A path walked through something that is not a directory.
    #[error("{0:?} is not a directory")]
    NotADirectory(String),
    /// A file operation on a directory or the reverse.
    #[error("{0}")]
    WrongType(String),
    /// A child name that cannot be used.
    #[error("bad child name {name:?}: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A child that an immutable directory cannot hold, or an unusable cap.
    #[error("{0}")]
    BadChild(String),
    /// Other clients kept writing: the change could not be applied within the retry budget.
    #[error("{0}")]
    Conflict(String),
    /// Another client kept replacing the file while it was being read.
    #[error("{0}")]
    VersionChanged(String),
    /// Another client changed the file at the same time.
    #[error(
        "uncoordinated write: another client changed this file or directory at the same time; \
         the other write won (re-read and try again)"
    )]
    UncoordinatedWrite,
    /// A change to a link whose metadata marks it read-only (Tahoe's `no-write`), refused by a
    /// caller that honours the mark (the file-system layer, `crate::fs`).
    #[error("{0} is marked read-only (no-write): clear the mark first (chmod u+w)")]
    MarkedReadOnly(String),
    /// Not enough shares to read.
    #[error("{0}")]
    Unrecoverable(String),
    /// Not enough servers to write.
    #[error("{0}")]
    NotEnoughServers(String),
    /// Not possible for this kind of object.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The directory's contents do not parse.
    #[error("the directory is damaged: {0}")]
    CorruptDirectory(String),
    /// Reading the input failed.
    #[error("reading the input failed: {0}")]
    Input(String),
    /// A write at an offset that cannot be honoured.
    #[error("{0}")]
    BadOffset(String),
}

impl From<MutableError> for NodeError {
    fn from(e: MutableError) -> Self {
        match e {
            MutableError::UncoordinatedWrite => NodeError::UncoordinatedWrite,
            MutableError::VersionChanged => NodeError::VersionChanged(e.to_string()),
            MutableError::ReadOnly => NodeError::NotWritable("the cap is read-only"),
            MutableError::NotEnoughServers { .. } | MutableError::TooFewServers { .. } => {
                NodeError::NotEnoughServers(e.to_string())
            }
            // Too few servers answered in time (after the read's own retries): as too few servers.
            MutableError::Unavailable(_) => NodeError::NotEnoughServers(e.to_string()),
            MutableError::Unsupported(what) => NodeError::Unsupported(what),
            MutableError::BadOffset(what) => NodeError::BadOffset(what),
            other => NodeError::Unrecoverable(other.to_string()),
        }
    }
}

impl From<DownloadError> for NodeError {
    fn from(e: DownloadError) -> Self {
        NodeError::Unrecoverable(e.to_string())
    }
}

impl From<UploadError> for NodeError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Read(e) => NodeError::Input(e.to_string()),
            other => NodeError::NotEnoughServers(other.to_string()),
        }
    }
}

/// Any object in the grid.
#[derive(Debug, Clone)]
pub enum Node {
    /// A file.
    File(FileNode),
    /// A directory.
    Dir(DirNode),
    /// A cap this version cannot interpret (kept and shown, never opened).
    Unknown(Cap),
}

impl Node {
    /// The node a cap names.
    pub fn from_cap(grid: &Arc<Grid>, cap: Cap) -> Node {
        match cap {
            Cap::File(file) => Node::File(FileNode::new(grid, file)),
            Cap::Dir(dir) => Node::Dir(DirNode::new(grid, dir)),
            unknown @ Cap::Unknown(_) => Node::Unknown(unknown),
        }
    }

    /// The cap (write cap when held).
    pub fn cap(&self) -> Cap {
        match self {
            Node::File(file) => Cap::File(file.cap.clone()),
            Node::Dir(dir) => Cap::Dir(dir.cap().clone()),
            Node::Unknown(cap) => cap.clone(),
        }
    }
}

/// A file: immutable (LIT, CHK) or mutable (SDMF, MDMF).
#[derive(Debug, Clone)]
pub struct FileNode {
    grid: Arc<Grid>,
    cap: FileCap,
}

/// An open file: one version, ready for ranged reads.
#[derive(Debug, Clone)]
pub enum FileReader {
    /// A literal file.
    Lit(Bytes),
    /// An immutable file.
    Chk(Reported<ChkReader>),
    /// One version of a mutable file.
    Mutable(Reported<MutableReader>),
}

/// A reader with the operation (`/status`: a download or retrieve) that its reads report into;
/// the operation ends when the reader and every stream from it are dropped.
#[derive(Debug)]
pub struct Reported<T> {
    reader: Arc<T>,
    op: Option<Arc<Op>>,
}

impl<T> Clone for Reported<T> {
    fn clone(&self) -> Self {
        Reported {
            reader: Arc::clone(&self.reader),
            op: self.op.clone(),
        }
    }
}

impl<T> Reported<T> {
    /// A reader that reports nowhere.
    pub fn unreported(reader: T) -> Self {
        Reported {
            reader: Arc::new(reader),
            op: None,
        }
    }

    fn new(reader: T, op: Op) -> Self {
        op.phase("reading");
        op.ends_when_dropped();
        Reported {
            reader: Arc::new(reader),
            op: Some(Arc::new(op)),
        }
    }
}

impl<T> std::ops::Deref for Reported<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.reader
    }
}

/// Counts a read's bytes into its operation (one atomic add per chunk), and a failure as the
/// operation's outcome.
fn reporting(
    op: Option<Arc<Op>>,
    stream: BoxStream<'static, Result<Bytes, NodeError>>,
) -> BoxStream<'static, Result<Bytes, NodeError>> {
    let Some(op) = op else { return stream };
    stream
        .inspect(move |item| match item {
            Ok(chunk) => {
                if op.add_progress(0, chunk.len() as u64) == 0 && !chunk.is_empty() {
                    op.timed_phase("first byte", op.elapsed());
                }
            }
            Err(e) => op.failed(e),
        })
        .boxed()
}

impl FileReader {
    /// The size of the file (of this version).
    pub fn size(&self) -> u64 {
        match self {
            FileReader::Lit(bytes) => bytes.len() as u64,
            FileReader::Chk(reader) => reader.size(),
            FileReader::Mutable(reader) => reader.size(),
        }
    }

    /// Bytes `offset..offset+len` (clipped to the file) as a stream of chunks; only the segments
    /// that hold them are fetched.
    pub fn stream(&self, offset: u64, len: u64) -> BoxStream<'static, Result<Bytes, NodeError>> {
        let end = offset.saturating_add(len).min(self.size());
        let offset = offset.min(end);
        match self {
            FileReader::Lit(bytes) => {
                let chunk = bytes.slice(offset as usize..end as usize);
                futures::stream::iter((!chunk.is_empty()).then_some(Ok(chunk))).boxed()
            }
            FileReader::Chk(reader) => match Arc::clone(&reader.reader).stream_range(offset, end - offset) {
                Ok(stream) => reporting(
                    reader.op.clone(),
                    stream
                        .map(|r| r.map(Bytes::from).map_err(NodeError::from))
                        .boxed(),
                ),
                Err(e) => futures::stream::iter([Err(NodeError::from(e))]).boxed(),
            },
            FileReader::Mutable(reader) => reporting(
                reader.op.clone(),
                Arc::clone(&reader.reader)
                    .stream_range(offset, end - offset)
                    .map(|r| r.map(Bytes::from).map_err(NodeError::from))
                    .boxed(),
            ),
        }
    }

    /// Bytes `offset..offset+len` (clipped to the file) in memory.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, NodeError> {
        let mut out = Vec::new();
        let mut stream = self.stream(offset, len);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

impl FileNode {
    /// The file a cap names.
    pub fn new(grid: &Arc<Grid>, cap: FileCap) -> Self {
        FileNode {
            grid: Arc::clone(grid),
            cap,
        }
    }

    /// The cap.
    pub fn cap(&self) -> &FileCap {
        &self.cap
    }

    /// Whether the file can change.
    pub fn is_mutable(&self) -> bool {
        self.cap.is_mutable()
    }

    /// Whether writes are refused (immutable files, read-only and verify caps).
    pub fn is_readonly(&self) -> bool {
        self.cap.is_readonly()
    }

    /// `CHK`, `SDMF`, `MDMF` (Tahoe's names; LIT files report `CHK`).
    pub fn format(&self) -> &'static str {
        match &self.cap {
            FileCap::Mutable(m) if m.format == MutableFormat::Mdmf => "MDMF",
            FileCap::Mutable(_) => "SDMF",
            _ => "CHK",
        }
    }

    /// The size: from the cap for immutable files, from the current version for mutable ones.
    pub async fn size(&self) -> Result<u64, NodeError> {
        match &self.cap {
            FileCap::Lit(lit) => Ok(lit.data.len() as u64),
            FileCap::Chk(chk) => Ok(chk.size),
            _ => Ok(self.open().await?.size()),
        }
    }

    /// Opens the file (for a mutable file: its current version).
    pub async fn open(&self) -> Result<FileReader, NodeError> {
        self.open_at(0).await
    }

    /// Opens the file for reads that start at byte `offset`: for an immutable file, the first
    /// segment's reads start as its shares are located, saving round trips.
    pub async fn open_at(&self, offset: u64) -> Result<FileReader, NodeError> {
        match &self.cap {
            FileCap::Lit(lit) => Ok(FileReader::Lit(Bytes::copy_from_slice(&lit.data))),
            FileCap::Chk(chk) => {
                let op = self.grid.operations().start(OpKind::Download);
                op.set_storage_index(chk.storage_index());
                op.set_size(chk.size);
                op.phase("locating and validating shares");
                match self.grid.open_chk_at(*chk, offset).await {
                    Ok(reader) => {
                        op.set_servers(reader.share_holders());
                        Ok(FileReader::Chk(Reported::new(reader, op)))
                    }
                    Err(e) => {
                        op.failed(&e);
                        Err(e.into())
                    }
                }
            }
            FileCap::Mutable(cap) => {
                if cap.readkey().is_none() {
                    return Err(NodeError::Unsupported("a verify cap cannot read the file"));
                }
                let op = self.grid.operations().start(OpKind::Retrieve);
                op.set_storage_index(cap.storage_index());
                op.phase("servermap and first segments");
                let opened = gm::open_latest(
                    &self.grid.usable_servers(),
                    cap,
                    usize::from(self.grid.params().happy),
                    Some(self.grid.operations()),
                )
                .await;
                match opened {
                    Ok((map, reader)) => {
                        op.set_size(reader.size());
                        op.set_servers(version_holders(&map));
                        Ok(FileReader::Mutable(Reported::new(reader, op)))
                    }
                    Err(e) => {
                        op.failed(&e);
                        Err(e.into())
                    }
                }
            }
            FileCap::ChkVerifier(_) => Err(NodeError::Unsupported("a verify cap cannot read the file")),
        }
    }

    /// The whole file in memory (for a mutable file: one version whole, read again from the
    /// start if a writer replaces it meanwhile).
    pub async fn read_all(&self) -> Result<Vec<u8>, NodeError> {
        if let FileCap::Mutable(cap) = &self.cap
            && cap.readkey().is_some()
        {
            return Ok(retrieve_whole(&self.grid, cap).await?.1);
        }
        self.open().await?.read(0, u64::MAX).await
    }

    /// Reads the whole current version, as [`FileNode::read_all`]; for a writable mutable file
    /// the read (its servermap and contents) is also kept for this client's next write of the
    /// file, which then starts from it instead of reading again (its test-and-set still catches
    /// another client's write in between, which is then re-read and the change applied again).
    /// For a write that first looks at the contents (the file-system layer's `prepare_write`
    /// reads the directory, then links the new file in it): one read instead of two.
    pub async fn read_for_update(&self) -> Result<Arc<Vec<u8>>, NodeError> {
        let Ok(cap) = self.mutable_write_cap() else {
            return self.read_all().await.map(Arc::new);
        };
        let cap = *cap;
        let state = self.grid.mutable_state(cap.storage_index());
        let mut state = state.lock().await;
        let (map, contents) = retrieve_whole(&self.grid, &cap).await?;
        let contents = Arc::new(contents);
        // A map that sees another writer's newer version half-written is not one to write from:
        // the write reads again and waits for it (`modify_once`).
        if map.newer_unreadable().is_none() && contents.len() <= MUTABLE_CONTENTS_KEPT {
            state.map = Some(map);
            state.contents = Some(Arc::clone(&contents));
        }
        Ok(contents)
    }

    fn mutable_write_cap(&self) -> Result<&MutableCap, NodeError> {
        match &self.cap {
            FileCap::Mutable(cap) if matches!(cap.access, MutableAccess::Write { .. }) => Ok(cap),
            FileCap::Mutable(_) => Err(NodeError::NotWritable("the file's cap is read-only")),
            _ => Err(NodeError::NotWritable("immutable files cannot be changed")),
        }
    }

    /// Replaces the contents of a mutable file with `len` bytes from `source`.
    pub async fn overwrite(&self, len: u64, source: ChunkSource) -> Result<(), NodeError> {
        self.overwrite_keeping(len, source, None).await
    }

    /// Replaces the contents of a mutable file with `data`.
    pub async fn overwrite_bytes(&self, data: Vec<u8>) -> Result<(), NodeError> {
        let len = data.len() as u64;
        let keep = (data.len() <= MUTABLE_CONTENTS_KEPT).then(|| Arc::new(data.clone()));
        self.overwrite_keeping(len, chunks_from_bytes(data), keep).await
    }

    /// Overwrites, and remembers `keep` (the new contents) under the same lock as the new version.
    async fn overwrite_keeping(
        &self,
        len: u64,
        source: ChunkSource,
        keep: Option<Arc<Vec<u8>>>,
    ) -> Result<(), NodeError> {
        let cap = *self.mutable_write_cap()?;
        let state = self.grid.mutable_state(cap.storage_index());
        let mut state = state.lock().await;
        let result = write_version(&self.grid, &cap, &mut state, len, |ctx, map, needed, total| {
            Box::pin(gm::publish(ctx, map, cap.format, needed, total, len, source))
        })
        .await;
        match result {
            Ok(()) => state.contents = keep,
            Err(_) => *state = MutableState::default(),
        }
        result
    }

    /// Writes `data` at `offset` of an MDMF file (extending it, zero-filled, if needed); only the
    /// touched segments are re-encoded. SDMF files are rewritten whole.
    pub async fn write_at(&self, offset: u64, data: Vec<u8>) -> Result<(), NodeError> {
        let cap = *self.mutable_write_cap()?;
        if cap.format == MutableFormat::Sdmf {
            return self
                .modify(move |old| {
                    let (start, end) = gm::checked_write_range(old.len() as u64, offset, data.len() as u64)?;
                    let mut new = old.to_vec();
                    if new.len() < end as usize {
                        new.resize(end as usize, 0);
                    }
                    new[start as usize..end as usize].copy_from_slice(&data);
                    Ok(Some(new))
                })
                .await;
        }
        let state = self.grid.mutable_state(cap.storage_index());
        let mut state = state.lock().await;
        // A partial update reads the current shares' trees, so it needs a fresh servermap (the
        // remembered one holds checkstrings only).
        state.map = None;
        let written = data.len() as u64;
        let data = Arc::new(data);
        let result = write_version(&self.grid, &cap, &mut state, written, |ctx, map, _, _| {
            Box::pin(gm::update_mdmf(ctx, map, offset, Arc::clone(&data)))
        })
        .await;
        if result.is_err() {
            *state = MutableState::default();
        }
        result.map(|_| ())
    }

    /// Reads the current contents, applies `modify` and publishes the result; if another client
    /// wrote in between, re-reads and applies the change again, as Tahoe's directory modifier
    /// does, for up to [`MODIFY_BUDGET`] (a shared directory with twenty writers adding at once
    /// still takes every add). Only when that budget is spent is the conflict reported. `modify`
    /// returning `None` means "no change".
    pub async fn modify<F>(&self, mut modify: F) -> Result<(), NodeError>
    where
        F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, NodeError> + Send,
    {
        let cap = *self.mutable_write_cap()?;
        let state = self.grid.mutable_state(cap.storage_index());
        let mut state = state.lock().await;
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        let mut newer_seen = None;
        loop {
            let result = modify_once(&self.grid, &cap, &mut state, &mut modify, &mut newer_seen).await;
            // The signing key outlives any version: a retry need not fetch it again.
            let key = state.key.clone();
            match result {
                // Another writer got in first, or replaced the version while this one was read.
                Err(NodeError::UncoordinatedWrite | NodeError::VersionChanged(_))
                    if started.elapsed() < MODIFY_BUDGET =>
                {
                    *state = MutableState {
                        key,
                        ..MutableState::default()
                    };
                    attempt += 1;
                    tracing::debug!(
                        attempt,
                        "uncoordinated write: re-reading and applying the change again"
                    );
                    futures_timer::Delay::new(modify_backoff(attempt, started.elapsed())).await;
                }
                Err(e @ (NodeError::UncoordinatedWrite | NodeError::VersionChanged(_))) => {
                    *state = MutableState::default();
                    return Err(NodeError::Conflict(format!(
                        "the change could not be applied in {} s ({} attempts), try again later; \
                         the last attempt: {e}",
                        MODIFY_BUDGET.as_secs(),
                        attempt + 1
                    )));
                }
                Err(e) => {
                    *state = MutableState::default();
                    return Err(e);
                }
                Ok(()) => return Ok(()),
            }
        }
    }
}

/// How long [`FileNode::modify`] keeps applying a change that other writers keep overtaking
/// before it reports the conflict. Long, because a change that waits still lands and a refused one
/// is work lost: with 20 writers adding to one directory while 50 clients list it on a loaded
/// two-core machine, the longest add took 112 s.
pub const MODIFY_BUDGET: std::time::Duration = std::time::Duration::from_secs(300);

/// The pause before modify attempt `attempt` (1-based), `waited` into the change: 25 ms growing by
/// half each time up to 1 s, times a random factor in 0.5..1.5 so that writers that collided do
/// not collide again. A lower ceiling for everyone makes twenty writers of one directory spend
/// the machine on attempts that lose (measured: a 250 ms ceiling took 400 adds six times as long);
/// but a writer that has waited long goes back to short pauses, so that it is not forever beaten
/// by writers that just started their next change (with a 1 s ceiling for all, one of twenty
/// writers went 120 s without a turn).
fn modify_backoff(attempt: u32, waited: std::time::Duration) -> std::time::Duration {
    let base = if waited > MODIFY_PATIENCE {
        25.0
    } else {
        (25.0 * 1.5f64.powi(attempt.min(20) as i32)).min(1000.0)
    };
    let factor = 0.5 + rand::random::<f64>();
    std::time::Duration::from_millis((base * factor) as u64)
}

/// How long a change waits with growing pauses before it retries with short ones.
const MODIFY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a writer waits for a newer version it sees but cannot read (another writer's publish
/// caught half-way) to become readable before it writes over it. A live writer's publish finishes
/// or fails well within this (its writes have deadlines); only a crashed writer's leftovers last
/// longer, and those were never acknowledged to anyone.
const NEWER_VERSION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn modify_once<F>(
    grid: &Arc<Grid>,
    cap: &MutableCap,
    state: &mut MutableState,
    modify: &mut F,
    newer_seen: &mut Option<(gm::VersionId, std::time::Instant)>,
) -> Result<(), NodeError>
where
    F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, NodeError> + Send,
{
    let old = match (&state.map, &state.contents) {
        (Some(_), Some(contents)) => Arc::clone(contents),
        _ => {
            // No special case for "no shares found": that is as likely servers that did not
            // answer as a new file, and treating it as empty would publish over the real contents.
            let (map, contents) = retrieve_whole(grid, cap).await?;
            // A change built on an older version than one already on some servers would, were
            // that newer write acknowledged meanwhile, undo it (and our higher sequence number
            // would win): wait for it to finish, unless it has stood unfinished for long.
            if let Some(newer) = map.newer_unreadable() {
                let since = match newer_seen {
                    Some((seen, since)) if *seen == newer => *since,
                    _ => newer_seen.insert((newer, std::time::Instant::now())).1,
                };
                if since.elapsed() < NEWER_VERSION_WAIT {
                    return Err(NodeError::VersionChanged(
                        "another client's write of a newer version is in progress".into(),
                    ));
                }
            }
            state.map = Some(map);
            Arc::new(contents)
        }
    };
    let Some(new) = modify(&old)? else {
        state.contents = Some(old);
        return Ok(());
    };
    let len = new.len() as u64;
    let keep = (new.len() <= MUTABLE_CONTENTS_KEPT).then(|| Arc::new(new.clone()));
    let format = cap.format;
    write_version(grid, cap, state, len, |ctx, map, needed, total| {
        Box::pin(gm::publish(
            ctx,
            map,
            format,
            needed,
            total,
            len,
            chunks_from_bytes(new),
        ))
    })
    .await?;
    state.contents = keep;
    Ok(())
}

type WriteFuture<'a> = futures::future::BoxFuture<
    'a,
    Result<(gm::Published, crate::mutable::layout::ShareHeader), MutableError>,
>;

/// Runs one write of a mutable file with the servermap (cached from our last write, or fresh) and
/// the signing key, and remembers what it left on the grid.
async fn write_version<'s, W>(
    grid: &Arc<Grid>,
    cap: &MutableCap,
    state: &'s mut MutableState,
    size: u64,
    write: W,
) -> Result<(), NodeError>
where
    W: for<'a> FnOnce(&'a WriteContext<'a>, &'a gm::ServerMap, u8, u8) -> WriteFuture<'a>,
{
    let op = grid.operations().start(OpKind::Publish);
    op.set_storage_index(cap.storage_index());
    op.set_size(size);
    let result = write_version_reported(grid, cap, state, write, &op).await;
    if result.is_ok() {
        op.set_progress(0, size);
    }
    op.result(&result);
    result
}

async fn write_version_reported<'s, W>(
    grid: &Arc<Grid>,
    cap: &MutableCap,
    state: &'s mut MutableState,
    write: W,
    op: &Op,
) -> Result<(), NodeError>
where
    W: for<'a> FnOnce(&'a WriteContext<'a>, &'a gm::ServerMap, u8, u8) -> WriteFuture<'a>,
{
    // The remembered contents belong to the version being replaced; callers that know the new
    // contents set them again after this returns.
    state.contents = None;
    let map = match state.map.take() {
        Some(map) => map,
        None => {
            op.phase("updating the servermap");
            gm::update_servermap_reported(
                &grid.usable_servers(),
                cap,
                Some((grid.operations(), gm::MapMode::Write)),
            )
            .await
        }
    };
    let key = match &state.key {
        Some(key) => Arc::clone(key),
        None => {
            op.phase("fetching the signing key");
            let key = Arc::new(gm::fetch_private_key(&map, cap).await?);
            state.key = Some(Arc::clone(&key));
            key
        }
    };
    op.phase("pushing shares");
    let (needed, total) = existing_encoding(&map).unwrap_or_else(|| mutable_encoding(grid));
    let ctx = WriteContext {
        secrets: grid.secrets(),
        cap,
        key: &key,
        happy: usize::from(grid.params().happy),
    };
    let (published, header) = write(&ctx, &map, needed, total).await?;
    let mut by_server: Vec<(String, Vec<String>)> = Vec::new();
    for (server, shnum) in &published.placed {
        match by_server.iter_mut().find(|(id, _)| *id == server.server_id) {
            Some((_, shares)) => shares.push(shnum.to_string()),
            None => by_server.push((server.server_id.clone(), vec![shnum.to_string()])),
        }
    }
    op.set_servers(by_server.into_iter().map(|(id, shares)| {
        let name = published
            .placed
            .iter()
            .find(|(s, _)| s.server_id == id)
            .map(|(s, _)| s.name())
            .unwrap_or(id);
        format!("{name}: shares {}", shares.join(","))
    }));
    state.map = Some(published.as_servermap(header));
    Ok(())
}

/// Reads the current version of a mutable file whole, reported as a retrieve.
async fn retrieve_whole(grid: &Arc<Grid>, cap: &MutableCap) -> Result<(gm::ServerMap, Vec<u8>), NodeError> {
    let op = grid.operations().start(OpKind::Retrieve);
    op.set_storage_index(cap.storage_index());
    op.phase("retrieving");
    let result = gm::read_latest(
        &grid.usable_servers(),
        cap,
        usize::from(grid.params().happy),
        Some(grid.operations()),
    )
    .await;
    if let Ok((map, contents)) = &result {
        op.set_size(contents.len() as u64);
        op.set_progress(0, contents.len() as u64);
        op.set_servers(version_holders(map));
    }
    op.result(&result);
    Ok(result?)
}

/// The servers holding shares of the version a servermap would read, with their share numbers.
fn version_holders(map: &gm::ServerMap) -> Vec<String> {
    let Some((_, shares)) = map.best_recoverable() else {
        return Vec::new();
    };
    let mut by_server: Vec<(&str, String, Vec<String>)> = Vec::new();
    for share in shares {
        match by_server
            .iter_mut()
            .find(|(id, _, _)| *id == share.server.server_id)
        {
            Some((_, _, held)) => held.push(share.shnum.to_string()),
            None => by_server.push((
                &share.server.server_id,
                share.server.name(),
                vec![share.shnum.to_string()],
            )),
        }
    }
    by_server
        .into_iter()
        .map(|(_, name, held)| format!("{name}: shares {}", held.join(",")))
        .collect()
}

/// k and N of the file's current version, kept across writes.
fn existing_encoding(map: &gm::ServerMap) -> Option<(u8, u8)> {
    map.best_recoverable()
        .and_then(|(_, shares)| shares[0].header.as_ref().map(|h| (h.needed, h.total)))
}

/// k and N for new mutable files: the client's, with N at most 255 (a byte in the share header).
fn mutable_encoding(grid: &Grid) -> (u8, u8) {
    let params = grid.params();
    let total = params.total.min(255) as u8;
    (params.needed.min(u16::from(total)) as u8, total)
}

/// The largest mutable file `check_and_repair` republishes (it is read into memory).
const REPAIR_IN_MEMORY_LIMIT: u64 = 64 << 20;

impl Grid {
    /// Checks an object and, when it is not healthy, repairs it (Tahoe's `t=check&repair=true`):
    /// an immutable file is uploaded again with its own key, which writes just the missing shares;
    /// a mutable file is published again with its contents (a new version on all N shares; this
    /// needs its write cap). A directory is repaired through its file.
    pub async fn check_and_repair(
        self: &Arc<Self>,
        cap: &Cap,
        options: CheckOptions,
    ) -> Option<RepairReport> {
        let pre = self.check(cap, options).await?;
        let file = match cap {
            Cap::File(file) => file.clone(),
            Cap::Dir(dir) => dir.file().clone(),
            Cap::Unknown(_) => return None,
        };
        if pre.healthy {
            return Some(RepairReport {
                post: pre.clone(),
                pre,
                attempted: false,
                successful: false,
                problem: None,
            });
        }
        let repaired: Result<(), String> = match (&file, pre.recoverable) {
            (_, false) => Err(crate::grid::check::unrecoverable_message(&pre)),
            (FileCap::Chk(chk), true) => crate::grid::check::repair_chk(
                &self.usable_servers(),
                self.secrets(),
                *chk,
                options.verify.then_some(&pre),
            )
            .await
            .map(|_| ()),
            (FileCap::Mutable(mutable), true) if !file.is_readonly() => {
                {
                    // What this client remembers is where its last write left the shares, which
                    // is what the repair is about to correct: start from the grid as it is.
                    let state = self.mutable_state(mutable.storage_index());
                    let mut state = state.lock().await;
                    state.map = None;
                    state.contents = None;
                }
                let node = FileNode::new(self, FileCap::Mutable(*mutable));
                match node.size().await {
                    Ok(size) if size <= REPAIR_IN_MEMORY_LIMIT => match node.read_all().await {
                        Ok(data) => node.overwrite_bytes(data).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    Ok(size) => Err(format!(
                        "mutable files over {} MiB are not repaired yet ({size} bytes)",
                        REPAIR_IN_MEMORY_LIMIT >> 20
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            (FileCap::Mutable(_), true) => Err("repairing a mutable file needs its write cap".into()),
            (FileCap::ChkVerifier(_), true) => {
                Err("repairing an immutable file needs its read cap (this is a verify cap)".into())
            }
            (FileCap::Lit(_), true) => Ok(()),
        };
        let post = self.check(cap, options).await?;
        Some(RepairReport {
            attempted: true,
            successful: repaired.is_ok() && post.healthy,
            problem: repaired.err().or_else(|| {
                (!post.healthy)
                    .then(|| "the file is still not healthy after the repair (too few servers?)".to_owned())
            }),
            pre,
            post,
        })
    }

    /// Creates a mutable file holding `data`, with a key from the pool.
    pub async fn create_mutable_file(
        self: &Arc<Self>,
        format: MutableFormat,
        data: Vec<u8>,
    ) -> Result<MutableCap, NodeError> {
        self.create_mutable(format, data.len() as u64, chunks_from_bytes(data))
            .await
    }

    /// Creates a mutable file from `len` bytes of `source`, with a key from the pool. The slot is
    /// new, so nothing is asked before its shares are written ([`gm::ServerMap::for_new_slot`]):
    /// one round trip where a given key costs three.
    pub async fn create_mutable(
        self: &Arc<Self>,
        format: MutableFormat,
        len: u64,
        source: ChunkSource,
    ) -> Result<MutableCap, NodeError> {
        let key = self.fresh_key().await?;
        self.create_mutable_with_new_key(format, key, len, source).await
    }

    /// [`Grid::create_mutable`] with a key the caller took from [`Grid::fresh_key`] (and needed
    /// before, e.g. to encrypt a new directory's children): a key never used, so its slot is new.
    pub async fn create_mutable_with_new_key(
        self: &Arc<Self>,
        format: MutableFormat,
        key: crate::mutable::keys::MutableKey,
        len: u64,
        source: ChunkSource,
    ) -> Result<MutableCap, NodeError> {
        let map = gm::ServerMap::for_new_slot(&self.usable_servers(), key.write_cap(format).storage_index());
        self.create_mutable_in(format, key, Some(map), len, source).await
    }

    /// A new signing key (from the pool when one is ready).
    pub async fn fresh_key(&self) -> Result<crate::mutable::keys::MutableKey, NodeError> {
        self.key_pool()
            .take()
            .await
            .map_err(|e| NodeError::NotEnoughServers(format!("cannot make a signing key: {e}")))
    }

    /// Creates a mutable file from `len` bytes of `source` with a given signing key (Tahoe's
    /// `private-key=`).
    pub async fn create_mutable_with_key(
        self: &Arc<Self>,
        format: MutableFormat,
        key: crate::mutable::keys::MutableKey,
        len: u64,
        source: ChunkSource,
    ) -> Result<MutableCap, NodeError> {
        // A given key may have been used before (Tahoe's `private-key=`): ask the servers.
        self.create_mutable_in(format, key, None, len, source).await
    }

    async fn create_mutable_in(
        self: &Arc<Self>,
        format: MutableFormat,
        key: crate::mutable::keys::MutableKey,
        map: Option<gm::ServerMap>,
        len: u64,
        source: ChunkSource,
    ) -> Result<MutableCap, NodeError> {
        let cap = key.write_cap(format);
        let state = self.mutable_state(cap.storage_index());
        let mut state = state.lock().await;
        state.key = Some(Arc::new(key));
        state.map = map;
        let result = write_version(self, &cap, &mut state, len, |ctx, map, needed, total| {
            Box::pin(gm::publish(ctx, map, format, needed, total, len, source))
        })
        .await;
        if let Err(e) = result {
            *state = MutableState::default();
            return Err(e);
        }
        state.contents = (len == 0).then(|| Arc::new(Vec::new()));
        Ok(cap)
    }

    /// Creates an empty mutable directory (always SDMF unless `format` is MDMF).
    pub async fn create_directory(self: &Arc<Self>, format: MutableFormat) -> Result<DirNode, NodeError> {
        let cap = self.create_mutable_file(format, Vec::new()).await?;
        Ok(DirNode::new(self, DirCap::new(FileCap::Mutable(cap))))
    }

    /// Opens any cap.
    pub fn node(self: &Arc<Self>, cap: Cap) -> Node {
        Node::from_cap(self, cap)
    }

    /// Uploads bytes as an immutable file (LIT when ≤ 55 bytes).
    pub async fn upload_bytes(self: &Arc<Self>, data: Vec<u8>) -> Result<FileCap, NodeError> {
        if data.len() as u64 <= crate::cap::LIT_THRESHOLD {
            return Ok(FileCap::Lit(LitCap { data }));
        }
        Ok(self.upload(std::io::Cursor::new(data), None).await?.cap)
    }
}
