//! One SFTP session (protocol version 3) over an SSH channel: the packet loop and every operation,
//! mapped onto the filenode interface (`DirNode`, `FileNode`).
//!
//! The loop is ours rather than `russh_sftp::server::run` so that an oversized or malformed packet
//! closes the channel (russh-sftp logs and carries on reading mid-packet) and so that no request is
//! served before `init`. Requests are answered in order, one at a time; reads are served from a
//! per-handle read-ahead window and writes go to a per-handle encrypted spool, so neither waits on
//! the grid per request.
//!
//! Nothing written reaches the grid before `close`: the close uploads the spool (a new immutable
//! file linked in place of the old one, or a new version of a mutable file) and replies only once
//! that is committed, with the failure's reason as the status message otherwise.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use filenode::cap::{Cap, FileCap, MutableFormat};
use filenode::grid::Grid;
use filenode::grid::mutable::chunks_from_read;
use filenode::node::{DirNode, FileNode, Metadata, Node, NodeError, Replace, unusable_as_path};
use futures::StreamExt;
use russh_sftp::protocol::{
    Attrs, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::SftpError;
use super::paths::{self, Start};
use super::reader::ReadAhead;
use crate::counters::{ErrorKind, FrontendCounters, Op};
use crate::spool::Spool;

/// The largest packet a client may send: a 255 KiB write (what `limits@openssh.com` offers) plus
/// its header. Anything larger closes the channel.
pub(crate) const MAX_PACKET: u32 = 256 * 1024 + 1024;
/// The largest read or write we offer in `limits@openssh.com`.
const MAX_IO: u64 = 255 * 1024;
/// Directory entries per `readdir` reply.
const READDIR_BATCH: usize = 200;

/// What a session needs from the server.
#[derive(Debug, Clone)]
pub(crate) struct SessionContext {
    pub(crate) grid: Arc<Grid>,
    pub(crate) user: String,
    pub(crate) root: DirNode,
    pub(crate) spool_dir: Option<PathBuf>,
    pub(crate) limits: super::SftpLimits,
    /// The connection's places for files that read ahead.
    pub(crate) reading_ahead: Arc<tokio::sync::Semaphore>,
    /// The SFTP server's figures (bytes, operations, errors).
    pub(crate) counters: Arc<FrontendCounters>,
}

type Reply = Result<Packet, SftpError>;

/// Requests read ahead of the one being answered (and, in bytes, `[sftpd]
/// session.max_queued_bytes`). A client that sends more without reading the replies only stalls its
/// own channel.
const QUEUED_REQUESTS: usize = 1024;

/// Serves SFTP on `stream` until the client closes it or breaks the protocol.
///
/// A reader task takes requests off the channel as they come while this loop answers them in
/// order: russh stops reading the connection while a channel's incoming buffer is full, so a loop
/// that only read between replies would deadlock against a client that pipelines many requests
/// while the reply in flight waits for window space.
pub(crate) async fn run<S>(stream: S, context: SessionContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (queue, mut requests) = tokio::sync::mpsc::channel(QUEUED_REQUESTS);
    let user = context.user.clone();
    // Each queued packet holds its length in permits until it has been answered.
    let max_queued = context.limits.max_queued_bytes.max(MAX_PACKET as usize);
    let queued_bytes = Arc::new(tokio::sync::Semaphore::new(max_queued));
    let reading = tokio::spawn(async move {
        while let Ok(len) = reader.read_u32().await {
            if len == 0 || len > MAX_PACKET {
                tracing::warn!(user = ?user, len, "SFTP packet too large; closing the channel");
                return;
            }
            let Ok(permit) = Arc::clone(&queued_bytes).acquire_many_owned(len).await else {
                return;
            };
            let mut buffer = vec![0; len as usize];
            if reader.read_exact(&mut buffer).await.is_err() {
                return;
            }
            let mut bytes = Bytes::from(buffer);
            let Ok(packet) = Packet::try_from(&mut bytes) else {
                tracing::warn!(user = ?user, "malformed SFTP packet; closing the channel");
                return;
            };
            if queue.send((packet, permit)).await.is_err() {
                return;
            }
        }
    });
    let mut session = Session {
        context,
        handles: HashMap::new(),
        next_handle: 0,
        initialised: false,
    };
    while let Some((packet, permit)) = requests.recv().await {
        let reply = session.handle(packet).await;
        drop(permit);
        let Some(reply) = reply else {
            tracing::warn!(user = ?session.context.user, "unexpected SFTP packet; closing the channel");
            break;
        };
        if send(&mut writer, reply).await.is_err() {
            break;
        }
    }
    reading.abort();
    let _ = writer.shutdown().await;
    // Handles still open are dropped: their spools are discarded, nothing is uploaded.
}

/// A reply: a packet, or read data sent from the read-ahead window's buffers without a copy.
enum Outgoing {
    Packet(Packet),
    Data { id: u32, data: Vec<Bytes> },
}

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, reply: Outgoing) -> std::io::Result<()> {
    match reply {
        Outgoing::Packet(packet) => {
            let bytes = Bytes::try_from(packet).map_err(std::io::Error::other)?;
            writer.write_all(&bytes).await?;
        }
        Outgoing::Data { id, data } => {
            // SSH_FXP_DATA: length, type 103, request id, then the data as an SSH string.
            let len: usize = data.iter().map(Bytes::len).sum();
            let mut header = Vec::with_capacity(13);
            header.extend_from_slice(&(9 + len as u32).to_be_bytes());
            header.push(103);
            header.extend_from_slice(&id.to_be_bytes());
            header.extend_from_slice(&(len as u32).to_be_bytes());
            writer.write_all(&header).await?;
            for chunk in data {
                writer.write_all(&chunk).await?;
            }
        }
    }
    writer.flush().await
}

enum OpenHandle {
    Dir {
        entries: Vec<File>,
        next: usize,
    },
    Read {
        file: Box<ReadAhead>,
        link: Option<(DirNode, String)>,
    },
    Write(Box<WriteHandle>),
}

/// Where a written file goes on close.
enum Destination {
    /// A new immutable file linked as `name` (replacing a file there).
    Link {
        parent: DirNode,
        name: String,
        old_metadata: Option<Metadata>,
    },
    /// A new version of an existing mutable file (and its link, when reached through one).
    Mutable {
        file: FileNode,
        link: Option<(DirNode, String, Metadata)>,
    },
}

struct WriteHandle {
    /// The path it was opened by (canonical), so that a `stat` of it sees the file being written.
    path: Vec<String>,
    spool: Spool,
    destination: Destination,
    /// Whether there is anything to commit on close.
    changed: bool,
    append: bool,
    readable: bool,
    /// An mtime set through fsetstat, stored in the link at close.
    mtime: Option<f64>,
    /// Why a write was refused (the spool quota): the upload is then not stored at close.
    refused: Option<String>,
}

/// Remembers a spool refusal (the quota) on the handle, so that its upload is not stored at close.
fn refusal(write: &mut WriteHandle, result: std::io::Result<()>) -> Result<(), SftpError> {
    if let Err(e) = &result
        && e.kind() == std::io::ErrorKind::QuotaExceeded
    {
        write.refused = Some(e.to_string());
    }
    result.map_err(SftpError::from)
}

/// The attributes of a file being written: its size so far.
fn write_attributes(write: &WriteHandle) -> FileAttributes {
    let mut attrs = FileAttributes::empty();
    attrs.permissions = Some(0o100666);
    attrs.size = Some(write.spool.size());
    attrs.mtime = write.mtime.map(|m| m as u32);
    attrs
}

/// What a path leads to.
struct Found {
    node: Node,
    /// The directory holding the link and the link's name (none for the root and bare caps).
    link: Option<(DirNode, String)>,
    metadata: Option<Metadata>,
}

struct Session {
    context: SessionContext,
    handles: HashMap<String, OpenHandle>,
    next_handle: u64,
    initialised: bool,
}

fn ok(id: u32) -> Packet {
    Packet::Status(Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    })
}

/// Unix seconds in a metadata value.
fn seconds(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64)
}

/// The mtime of a link: the user's `mtime`, else Tahoe's `linkmotime`.
fn mtime_of(metadata: Option<&Metadata>) -> Option<f64> {
    let metadata = metadata?;
    seconds(metadata.get("mtime"))
        .or_else(|| seconds(metadata.get("tahoe").and_then(|t| t.get("linkmotime"))))
}

/// The user's part of a link's metadata (without Tahoe's own `tahoe` key).
fn user_metadata(metadata: Option<&Metadata>) -> Metadata {
    let mut user = metadata.cloned().unwrap_or_default();
    user.shift_remove("tahoe");
    user
}

/// The operation a request asks for, for the figures (reads, writes and closes of open handles
/// are parts of the open's operation).
fn operation_of(packet: &Packet) -> Option<Op> {
    Some(match packet {
        Packet::Open(p)
            if p.pflags
                .intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE) =>
        {
            Op::Upload
        }
        Packet::Open(_) => Op::Download,
        Packet::OpenDir(_) => Op::List,
        Packet::Stat(_) | Packet::Lstat(_) | Packet::Fstat(_) | Packet::RealPath(_) => Op::Stat,
        Packet::MkDir(_) => Op::Mkdir,
        Packet::Remove(_) | Packet::RmDir(_) => Op::Delete,
        Packet::Rename(_) => Op::Rename,
        Packet::Extended(p) if p.request == "posix-rename@openssh.com" => Op::Rename,
        Packet::SetStat(_) | Packet::FSetStat(_) | Packet::Extended(_) => Op::Other,
        Packet::ReadLink(_) | Packet::Symlink(_) => Op::Other,
        _ => return None,
    })
}

fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

impl Session {
    /// Answers one request; `None` means the packet has no place here (close the channel).
    async fn handle(&mut self, packet: Packet) -> Option<Outgoing> {
        if let Packet::Init(init) = packet {
            if self.initialised {
                return None;
            }
            self.initialised = true;
            tracing::debug!(user = ?self.context.user, version = init.version, "SFTP session started");
            let mut version = Version::new();
            for (name, data) in [
                ("posix-rename@openssh.com", "1"),
                ("statvfs@openssh.com", "2"),
                ("limits@openssh.com", "1"),
            ] {
                version.extensions.insert(name.into(), data.into());
            }
            return Some(Outgoing::Packet(Packet::Version(version)));
        }
        if !self.initialised {
            return None;
        }
        let id = packet.get_request_id();
        if let Some(op) = operation_of(&packet) {
            self.context.counters.operation(op);
        }
        let reply: Reply = match packet {
            Packet::Open(p) => self.open(p.id, &p.filename, p.pflags).await,
            Packet::Close(p) => self.close(p.id, &p.handle).await,
            Packet::Read(p) => match self.read(&p.handle, p.offset, p.len).await {
                Ok(data) => {
                    let len: usize = data.iter().map(Bytes::len).sum();
                    self.context.counters.bytes_out(len as u64);
                    return Some(Outgoing::Data { id: p.id, data });
                }
                Err(e) => Err(e),
            },
            Packet::Write(p) => {
                self.context.counters.bytes_in(p.data.len() as u64);
                self.write(p.id, &p.handle, p.offset, &p.data).await
            }
            Packet::Lstat(p) => self.stat(p.id, &p.path).await,
            Packet::Stat(p) => self.stat(p.id, &p.path).await,
            Packet::Fstat(p) => self.fstat(p.id, &p.handle).await,
            Packet::SetStat(p) => self.setstat(p.id, &p.path, &p.attrs).await,
            Packet::FSetStat(p) => self.fsetstat(p.id, &p.handle, &p.attrs).await,
            Packet::OpenDir(p) => self.opendir(p.id, &p.path).await,
            Packet::ReadDir(p) => self.readdir(p.id, &p.handle),
            Packet::Remove(p) => self.remove(p.id, &p.filename).await,
            Packet::MkDir(p) => self.mkdir(p.id, &p.path).await,
            Packet::RmDir(p) => self.rmdir(p.id, &p.path).await,
            Packet::RealPath(p) => self.realpath(p.id, &p.path),
            Packet::Rename(p) => self.rename(p.id, &p.oldpath, &p.newpath, Replace::Never).await,
            Packet::ReadLink(_) | Packet::Symlink(_) => {
                Err(SftpError::unsupported("symbolic links are not supported"))
            }
            Packet::Extended(p) => self.extended(p.id, &p.request, p.data).await,
            Packet::Init(_)
            | Packet::Version(_)
            | Packet::Status(_)
            | Packet::Handle(_)
            | Packet::Data(_)
            | Packet::Name(_)
            | Packet::Attrs(_)
            | Packet::ExtendedReply(_) => return None,
        };
        Some(Outgoing::Packet(reply.unwrap_or_else(|e| {
            // The end of a file or a listing is an answer, not a failure.
            if e.code != StatusCode::Eof {
                self.context.counters.error(e.kind);
            }
            e.into_packet(id)
        })))
    }

    fn new_handle(&mut self, handle: OpenHandle) -> Result<String, SftpError> {
        if self.handles.len() >= self.context.limits.max_handles {
            return Err(
                SftpError::failure("too many open files in this session").counted_as(ErrorKind::Quota)
            );
        }
        self.next_handle += 1;
        let name = self.next_handle.to_string();
        self.handles.insert(name.clone(), handle);
        Ok(name)
    }

    /// The node where a path starts and the names to follow from it.
    fn start(&self, parts: &[String]) -> Result<(Node, Vec<String>), SftpError> {
        let (start, rest) = paths::start(parts)?;
        let node = match start {
            Start::Root => Node::Dir(self.context.root.clone()),
            Start::Cap(cap) => self.context.grid.node(cap),
        };
        Ok((node, rest.to_vec()))
    }

    /// Follows a path.
    async fn lookup(&self, path: &str) -> Result<Found, SftpError> {
        let parts = paths::canonical(path)?;
        let (mut node, rest) = self.start(&parts)?;
        let mut link = None;
        let mut metadata = None;
        for name in rest {
            let Node::Dir(dir) = node else {
                return Err(SftpError::no_such_file());
            };
            let child = dir.get(&name).await?;
            node = child.node(&self.context.grid);
            metadata = Some(child.metadata);
            link = Some((dir, name));
        }
        Ok(Found { node, link, metadata })
    }

    /// The directory that holds (or would hold) the last name of `path`, and that name.
    async fn parent_of(&self, path: &str) -> Result<(DirNode, String), SftpError> {
        let parts = paths::canonical(path)?;
        let (mut node, mut rest) = self.start(&parts)?;
        let Some(name) = rest.pop() else {
            return Err(SftpError::denied(
                "the root directory (or an object reached by its cap) has no link to change",
            ));
        };
        for part in rest {
            let Node::Dir(dir) = &node else {
                return Err(SftpError::no_such_file());
            };
            node = dir.get(&part).await?.node(&self.context.grid);
        }
        match node {
            Node::Dir(dir) => Ok((dir, name)),
            _ => Err(SftpError::no_such_file()),
        }
    }

    async fn attributes(&self, found: &Found, exact_size: bool) -> Result<FileAttributes, SftpError> {
        let parent_readonly = found
            .link
            .as_ref()
            .is_some_and(|(parent, _)| parent.is_readonly());
        let mut attrs = FileAttributes::empty();
        match &found.node {
            Node::Dir(dir) => {
                attrs.set_dir(true);
                let bits = if dir.is_readonly() || parent_readonly {
                    0o555
                } else {
                    0o777
                };
                attrs.permissions = Some(0o040000 | bits);
                attrs.size = Some(0);
            }
            Node::File(file) => {
                let bits = if file.is_readonly() || parent_readonly {
                    0o444
                } else {
                    0o666
                };
                attrs.permissions = Some(0o100000 | bits);
                attrs.size = match file.cap() {
                    FileCap::Mutable(_) if exact_size => Some(file.size().await?),
                    FileCap::Mutable(_) => None,
                    cap => cap.size(),
                };
            }
            Node::Unknown(_) => {
                attrs.permissions = Some(0o100000);
                attrs.size = Some(0);
            }
        }
        if let Some(mtime) = mtime_of(found.metadata.as_ref()) {
            attrs.mtime = Some(mtime as u32);
            attrs.atime = Some(mtime as u32);
        }
        attrs.uid = Some(0);
        attrs.gid = Some(0);
        attrs.user = Some(self.context.user.clone());
        attrs.group = Some(self.context.user.clone());
        Ok(attrs)
    }

    async fn stat(&mut self, id: u32, path: &str) -> Reply {
        // A file open for writing is what its path names until it is closed (and uploaded), as
        // clients that stat a file right after creating it expect (sshfs does; Tahoe's
        // "heisenfiles").
        if let Ok(parts) = paths::canonical(path)
            && let Some(write) = self.handles.values().find_map(|handle| match handle {
                OpenHandle::Write(write) if write.path == parts => Some(write),
                _ => None,
            })
        {
            let attrs = write_attributes(write);
            return Ok(Packet::Attrs(Attrs { id, attrs }));
        }
        let found = self.lookup(path).await?;
        let attrs = self.attributes(&found, true).await?;
        Ok(Packet::Attrs(Attrs { id, attrs }))
    }

    async fn fstat(&mut self, id: u32, handle: &str) -> Reply {
        let attrs = match self.handles.get(handle) {
            Some(OpenHandle::Read { file, .. }) => {
                let mut attrs = FileAttributes::empty();
                attrs.permissions = Some(0o100444);
                attrs.size = Some(file.size());
                attrs
            }
            Some(OpenHandle::Write(write)) => write_attributes(write),
            Some(OpenHandle::Dir { .. }) => {
                let mut attrs = FileAttributes::empty();
                attrs.set_dir(true);
                attrs.permissions = Some(0o040777);
                attrs
            }
            None => return Err(SftpError::bad_handle()),
        };
        Ok(Packet::Attrs(Attrs { id, attrs }))
    }

    /// Stores `mtime` in the link's metadata (one directory write).
    async fn set_link_mtime(&self, parent: &DirNode, name: &str, mtime: f64) -> Result<(), SftpError> {
        let child = parent.get(name).await?;
        let mut user = user_metadata(Some(&child.metadata));
        user.insert("mtime".into(), float(mtime));
        parent
            .set_child(name, &child.cap, Some(user), Replace::Always)
            .await?;
        Ok(())
    }

    async fn setstat(&mut self, id: u32, path: &str, attrs: &FileAttributes) -> Reply {
        if attrs.size.is_some() {
            return Err(SftpError::unsupported(
                "changing the size of a file by path is not supported (open it and write instead)",
            ));
        }
        let found = self.lookup(path).await?;
        if let (Some(mtime), Some((parent, name))) = (attrs.mtime, &found.link) {
            if parent.is_readonly() {
                return Err(SftpError::denied("the directory is read-only"));
            }
            self.set_link_mtime(parent, name, f64::from(mtime)).await?;
        }
        Ok(ok(id))
    }

    async fn fsetstat(&mut self, id: u32, handle: &str, attrs: &FileAttributes) -> Reply {
        match self.handles.get_mut(handle) {
            Some(OpenHandle::Write(write)) => {
                if let Some(size) = attrs.size {
                    let result = write.spool.set_size(size).await;
                    refusal(write, result)?;
                    write.changed = true;
                }
                if let Some(mtime) = attrs.mtime {
                    write.mtime = Some(f64::from(mtime));
                }
                Ok(ok(id))
            }
            Some(OpenHandle::Read { link, .. }) => {
                if attrs.size.is_some() {
                    return Err(SftpError::denied("the file is open for reading only"));
                }
                if let (Some(mtime), Some((parent, name))) = (attrs.mtime, link.clone()) {
                    self.set_link_mtime(&parent, &name, f64::from(mtime)).await?;
                }
                Ok(ok(id))
            }
            Some(OpenHandle::Dir { .. }) => Ok(ok(id)),
            None => Err(SftpError::bad_handle()),
        }
    }

    async fn opendir(&mut self, id: u32, path: &str) -> Reply {
        let found = self.lookup(path).await?;
        let Node::Dir(dir) = &found.node else {
            return Err(SftpError::failure("not a directory"));
        };
        let children = dir.list().await?;
        let mut entries = Vec::with_capacity(children.len());
        let mut left_out = 0usize;
        for child in children {
            // A name no path can reach (`..`, `a/b`, empty, NUL; only a directory written by hand
            // holds one) is left out: a client would join it to a local path.
            if unusable_as_path(&child.name).is_some() {
                left_out += 1;
                continue;
            }
            let child_found = Found {
                node: child.node(&self.context.grid),
                link: Some((dir.clone(), child.name.clone())),
                metadata: Some(child.metadata),
            };
            let attrs = self.attributes(&child_found, false).await?;
            entries.push(File::new(child.name, attrs));
        }
        if left_out > 0 {
            tracing::info!(
                left_out,
                "SFTP listing: left out entries whose names cannot be paths"
            );
        }
        let handle = self.new_handle(OpenHandle::Dir { entries, next: 0 })?;
        Ok(Packet::Handle(Handle { id, handle }))
    }

    fn readdir(&mut self, id: u32, handle: &str) -> Reply {
        let Some(OpenHandle::Dir { entries, next }) = self.handles.get_mut(handle) else {
            return Err(SftpError::bad_handle());
        };
        if *next >= entries.len() {
            return Err(SftpError::eof());
        }
        let end = (*next + READDIR_BATCH).min(entries.len());
        let files = entries[*next..end].to_vec();
        *next = end;
        Ok(Packet::Name(Name { id, files }))
    }

    async fn open(&mut self, id: u32, path: &str, flags: OpenFlags) -> Reply {
        let writing =
            flags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE);
        let handle = if writing {
            OpenHandle::Write(Box::new(self.open_for_write(path, flags).await?))
        } else {
            let found = self.lookup(path).await?;
            match found.node {
                // A small mutable file is read whole now: the handle reads one version.
                Node::File(file) => OpenHandle::Read {
                    file: Box::new(ReadAhead::opened(
                        crate::whole::open(&file).await?,
                        Some(Arc::clone(&self.context.reading_ahead)),
                    )),
                    link: found.link,
                },
                Node::Dir(_) => return Err(SftpError::failure("is a directory")),
                Node::Unknown(_) => {
                    return Err(SftpError::denied("this version cannot read that kind of object"));
                }
            }
        };
        let handle = self.new_handle(handle)?;
        Ok(Packet::Handle(Handle { id, handle }))
    }

    async fn open_for_write(&self, path: &str, flags: OpenFlags) -> Result<WriteHandle, SftpError> {
        let parts = paths::canonical(path)?;
        let (start, rest) = self.start(&parts)?;
        // `/uri/CAP` of a mutable file: a new version of that file.
        let (destination, existing) = if rest.is_empty() {
            match start {
                Node::File(file) if file.is_mutable() && !file.is_readonly() => {
                    let destination = Destination::Mutable {
                        file: file.clone(),
                        link: None,
                    };
                    (destination, Some(file))
                }
                Node::Dir(_) => return Err(SftpError::failure("is a directory")),
                _ => return Err(SftpError::denied("that object cannot be written")),
            }
        } else {
            let (parent, name) = self.parent_of(path).await?;
            if parent.is_readonly() {
                return Err(SftpError::denied("the directory is read-only"));
            }
            match parent.get(&name).await {
                Ok(child) => {
                    if flags.contains(OpenFlags::CREATE | OpenFlags::EXCLUDE) {
                        return Err(SftpError::failure("the file already exists"));
                    }
                    match child.node(&self.context.grid) {
                        Node::Dir(_) => return Err(SftpError::failure("is a directory")),
                        Node::Unknown(_) => return Err(SftpError::denied("that object cannot be written")),
                        Node::File(file) if file.is_mutable() => {
                            if file.is_readonly() {
                                return Err(SftpError::denied("the file's cap is read-only"));
                            }
                            let destination = Destination::Mutable {
                                file: file.clone(),
                                link: Some((parent, name, child.metadata)),
                            };
                            (destination, Some(file))
                        }
                        Node::File(file) => {
                            let destination = Destination::Link {
                                parent,
                                name,
                                old_metadata: Some(child.metadata),
                            };
                            (destination, Some(file))
                        }
                    }
                }
                Err(NodeError::NoSuchChild(_)) => {
                    if !flags.contains(OpenFlags::CREATE) {
                        return Err(SftpError::no_such_file());
                    }
                    let destination = Destination::Link {
                        parent,
                        name,
                        old_metadata: None,
                    };
                    (destination, None)
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut spool = Spool::with_quota(
            self.context.spool_dir.as_deref(),
            &self.context.limits.spool_quota,
            &self.context.user,
        )?;
        let truncate = flags.contains(OpenFlags::TRUNCATE);
        if let Some(file) = existing.filter(|_| !truncate) {
            // Tahoe's rule: writing into an existing file starts from its contents.
            let reader = file.open().await?;
            let mut stream = reader.stream(0, reader.size());
            let mut at = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                spool.write_at(at, &chunk).await?;
                at += chunk.len() as u64;
            }
        }
        Ok(WriteHandle {
            path: parts.clone(),
            spool,
            changed: truncate
                || matches!(
                    destination,
                    Destination::Link {
                        old_metadata: None,
                        ..
                    }
                ),
            destination,
            append: flags.contains(OpenFlags::APPEND),
            readable: flags.contains(OpenFlags::READ),
            mtime: None,
            refused: None,
        })
    }

    async fn read(&mut self, handle: &str, offset: u64, len: u32) -> Result<Vec<Bytes>, SftpError> {
        let len = len.min(MAX_IO as u32);
        match self.handles.get_mut(handle) {
            Some(OpenHandle::Read { file, .. }) => file.read(offset, len).await,
            Some(OpenHandle::Write(write)) if write.readable => {
                let data = write.spool.read_at(offset, len).await?;
                if data.is_empty() {
                    return Err(SftpError::eof());
                }
                Ok(vec![Bytes::from(data)])
            }
            Some(OpenHandle::Write(_)) => Err(SftpError::denied("the file is open for writing only")),
            Some(OpenHandle::Dir { .. }) | None => Err(SftpError::bad_handle()),
        }
    }

    async fn write(&mut self, id: u32, handle: &str, offset: u64, data: &[u8]) -> Reply {
        let Some(OpenHandle::Write(write)) = self.handles.get_mut(handle) else {
            return match self.handles.get(handle) {
                Some(_) => Err(SftpError::denied("the file is open for reading only")),
                None => Err(SftpError::bad_handle()),
            };
        };
        let offset = if write.append { write.spool.size() } else { offset };
        let result = write.spool.write_at(offset, data).await;
        refusal(write, result)?;
        write.changed = true;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: &str) -> Reply {
        match self.handles.remove(handle) {
            Some(OpenHandle::Write(write)) => {
                if let Some(reason) = &write.refused {
                    // Part of the upload was refused: storing the rest would store a wrong file.
                    return Err(SftpError::failure(format!("the file was not stored: {reason}"))
                        .counted_as(ErrorKind::Quota));
                }
                if let Err(e) = self.commit(*write).await {
                    tracing::warn!(user = ?self.context.user, error = %e.message, "SFTP upload failed at close");
                    return Err(e);
                }
                Ok(ok(id))
            }
            Some(_) => Ok(ok(id)),
            None => Err(SftpError::bad_handle()),
        }
    }

    /// Uploads a written file and links it; returns once the grid holds it.
    async fn commit(&self, write: WriteHandle) -> Result<(), SftpError> {
        let WriteHandle {
            mut spool,
            destination,
            changed,
            mtime,
            ..
        } = write;
        if !changed {
            if let Some(mtime) = mtime {
                let link = match &destination {
                    Destination::Link { parent, name, .. } => Some((parent, name)),
                    Destination::Mutable { link, .. } => link.as_ref().map(|(p, n, _)| (p, n)),
                };
                if let Some((parent, name)) = link {
                    self.set_link_mtime(parent, name, mtime).await?;
                }
            }
            return Ok(());
        }
        spool.flush().await?;
        let size = spool.size();
        match destination {
            Destination::Link {
                parent,
                name,
                old_metadata,
            } => {
                let result = self
                    .context
                    .grid
                    .upload(spool.reader(), None)
                    .await
                    .map_err(NodeError::from)?;
                let mut user = user_metadata(old_metadata.as_ref());
                user.insert(
                    "mtime".into(),
                    float(mtime.unwrap_or_else(filenode::node::metadata::now)),
                );
                parent
                    .set_child(&name, &Cap::File(result.cap), Some(user), Replace::OnlyFiles)
                    .await?;
            }
            Destination::Mutable { file, link } => {
                if let Some(message) = crate::sdmf_too_large(&file, size) {
                    return Err(SftpError::failure(message));
                }
                file.overwrite(size, chunks_from_read(spool.reader())).await?;
                if let (Some(mtime), Some((parent, name, _))) = (mtime, link) {
                    self.set_link_mtime(&parent, &name, mtime).await?;
                }
            }
        }
        Ok(())
    }

    async fn remove(&mut self, id: u32, path: &str) -> Reply {
        let (parent, name) = self.parent_of(path).await?;
        let child = parent.get(&name).await?;
        if child.is_dir() {
            return Err(SftpError::failure("is a directory (use rmdir)"));
        }
        parent.unlink(&name).await?;
        Ok(ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: &str) -> Reply {
        let parts = paths::canonical(path)?;
        let (start, mut rest) = self.start(&parts)?;
        let Some(name) = rest.pop() else {
            return Err(SftpError::failure("the directory already exists"));
        };
        let Node::Dir(start) = start else {
            return Err(SftpError::no_such_file());
        };
        // Tahoe's rule: missing parents are created too.
        let parent = start.create_path(&rest, MutableFormat::Sdmf).await?;
        match parent
            .create_subdirectory(&name, MutableFormat::Sdmf, Replace::Never)
            .await
        {
            Ok(_) => Ok(ok(id)),
            Err(NodeError::ExistingChild(_)) => Err(SftpError::failure("that name exists already")),
            Err(e) => Err(e.into()),
        }
    }

    async fn rmdir(&mut self, id: u32, path: &str) -> Reply {
        let (parent, name) = self.parent_of(path).await?;
        let child = parent.get(&name).await?;
        let Node::Dir(dir) = child.node(&self.context.grid) else {
            return Err(SftpError::failure("not a directory"));
        };
        // Unlike Tahoe, a directory must be empty to be removed (as rmdir(2)).
        if !dir.list().await?.is_empty() {
            return Err(SftpError::failure("the directory is not empty"));
        }
        parent.unlink(&name).await?;
        Ok(ok(id))
    }

    fn realpath(&mut self, id: u32, path: &str) -> Reply {
        let parts = paths::canonical(path)?;
        Ok(Packet::Name(Name {
            id,
            files: vec![File::dummy(paths::display(&parts))],
        }))
    }

    async fn rename(&mut self, id: u32, from: &str, to: &str, replace: Replace) -> Reply {
        let (from_dir, from_name) = self.parent_of(from).await?;
        let (to_dir, to_name) = self.parent_of(to).await?;
        match from_dir
            .move_child_to(&from_name, &to_dir, &to_name, replace)
            .await
        {
            Ok(()) => Ok(ok(id)),
            Err(NodeError::ExistingChild(_)) => Err(SftpError::failure("the target exists already")),
            Err(e) => Err(e.into()),
        }
    }

    async fn extended(&mut self, id: u32, request: &str, data: Vec<u8>) -> Reply {
        match request {
            "posix-rename@openssh.com" => {
                let mut data = Bytes::from(data);
                let (Some(from), Some(to)) = (ssh_string(&mut data), ssh_string(&mut data)) else {
                    return Err(SftpError::new(StatusCode::BadMessage, "malformed posix-rename"));
                };
                // Replaces a file at the target, never a directory.
                self.rename(id, &from, &to, Replace::OnlyFiles).await
            }
            "limits@openssh.com" => {
                let mut reply = Vec::with_capacity(32);
                for value in [
                    u64::from(MAX_PACKET) - 1024,
                    MAX_IO,
                    MAX_IO,
                    self.context.limits.max_handles as u64,
                ] {
                    reply.extend_from_slice(&value.to_be_bytes());
                }
                Ok(Packet::ExtendedReply(ExtendedReply { id, data: reply }))
            }
            "statvfs@openssh.com" => {
                // Made-up numbers (as Tahoe's), so that `df` works: the grid has no single size.
                let block = 65536u64;
                let blocks = (1u64 << 50) / block;
                let mut reply = Vec::with_capacity(88);
                for value in [
                    block,
                    block,
                    blocks,
                    blocks,
                    blocks,
                    1 << 30,
                    1 << 30,
                    1 << 30,
                    0,
                    0,
                    255,
                ] {
                    reply.extend_from_slice(&value.to_be_bytes());
                }
                Ok(Packet::ExtendedReply(ExtendedReply { id, data: reply }))
            }
            _ => Err(SftpError::unsupported("unsupported extension")),
        }
    }
}

/// Reads an SSH string (u32 length, UTF-8 bytes).
pub(super) fn ssh_string(data: &mut Bytes) -> Option<String> {
    let len = data.try_get_u32().ok()? as usize;
    if data.remaining() < len {
        return None;
    }
    String::from_utf8(data.split_to(len).to_vec()).ok()
}
