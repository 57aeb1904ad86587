//! One SFTP session (protocol version 3) over an SSH channel: the packet loop, and every operation
//! as a thin adapter over the file-system layer (`filenode::fs`): paths are `FsPath`s, operations
//! are `Fs` calls, and errors map from `FsErrorKind` in `error.rs`. What stays here is SFTP's own:
//! handles, the read-ahead window, the write spool, Tahoe's synthetic permissions, and SETSTAT's
//! permissions as Tahoe's `no-write` mark.
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
use filenode::fs::{
    EntryKind, Fs, FsError, FsErrorKind, FsPath, MetadataChange, Stat, WriteOptions, WriteTarget,
};
use filenode::grid::Grid;
use filenode::node::{DirNode, Node, Replace};
use futures::StreamExt;
use russh_sftp::protocol::{
    Attrs, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::SftpError;
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
/// The piece copied at a time from a file being written into another handle's spool.
const COPY_CHUNK: u32 = 1 << 20;

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
    let (mut reader, writer) = tokio::io::split(stream);
    let mut replies = Replies {
        writer,
        gathered: Vec::new(),
    };
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
        fs: Fs::new(&context.grid, context.root.clone()),
        context,
        handles: HashMap::new(),
        next_handle: 0,
        initialised: false,
    };
    while let Some((packet, permit)) = requests.recv().await {
        let reply = {
            let mut handling = std::pin::pin!(session.handle(packet));
            match futures::poll!(handling.as_mut()) {
                std::task::Poll::Ready(reply) => reply,
                // An answer that takes time (the grid, the disk): the replies gathered go first.
                std::task::Poll::Pending => {
                    if replies.flush().await.is_err() {
                        break;
                    }
                    handling.await
                }
            }
        };
        drop(permit);
        let Some(reply) = reply else {
            tracing::warn!(user = ?session.context.user, "unexpected SFTP packet; closing the channel");
            break;
        };
        if replies.send(reply).await.is_err() {
            break;
        }
        if requests.is_empty() && replies.flush().await.is_err() {
            break;
        }
    }
    reading.abort();
    let _ = replies.flush().await;
    let _ = replies.writer.shutdown().await;
    // Handles still open are dropped: their spools are discarded, nothing is uploaded.
}

/// A reply: a packet, or read data sent from the read-ahead window's buffers without a copy.
enum Outgoing {
    Packet(Packet),
    Data { id: u32, data: Vec<Bytes> },
}

/// Small replies gathered up to this many bytes while the client has more requests queued.
const GATHERED_REPLIES: usize = 16 << 10;

/// The channel's writing half. Small replies (statuses, handles, attributes) are gathered while
/// the client has more requests queued, so that a pipelined upload's acknowledgements (one per
/// 32 KiB write from OpenSSH) share SSH packets instead of taking one each; they go out when the
/// queue is empty, when an answer takes time, before read data, or at [`GATHERED_REPLIES`]. Read
/// data goes out as it comes, from the read-ahead window's buffers. Measured with OpenSSH `sftp`
/// on the devgrid, 128 MiB, four runs each: the gateway's CPU per MiB put 14.65 -> 13.75 ms, per
/// MiB got 6.35 -> 6.0, put rate 68 -> 71 MiB/s. (Gathering read data too, in a 256 KiB buffer,
/// made gets slower.)
struct Replies<W> {
    writer: W,
    gathered: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Replies<W> {
    async fn send(&mut self, reply: Outgoing) -> std::io::Result<()> {
        match reply {
            Outgoing::Packet(packet) => {
                let bytes = Bytes::try_from(packet).map_err(std::io::Error::other)?;
                self.gathered.extend_from_slice(&bytes);
                if self.gathered.len() >= GATHERED_REPLIES {
                    self.flush().await?;
                }
                Ok(())
            }
            Outgoing::Data { id, data } => {
                self.write_gathered().await?;
                // SSH_FXP_DATA: length, type 103, request id, then the data as an SSH string.
                let len: usize = data.iter().map(Bytes::len).sum();
                let mut header = Vec::with_capacity(13);
                header.extend_from_slice(&(9 + len as u32).to_be_bytes());
                header.push(103);
                header.extend_from_slice(&id.to_be_bytes());
                header.extend_from_slice(&(len as u32).to_be_bytes());
                self.writer.write_all(&header).await?;
                for chunk in data {
                    self.writer.write_all(&chunk).await?;
                }
                self.writer.flush().await
            }
        }
    }

    /// Sends what is gathered.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        self.write_gathered().await?;
        self.writer.flush().await
    }

    /// Writes what is gathered (if anything) to the channel, ahead of what follows.
    async fn write_gathered(&mut self) -> std::io::Result<()> {
        if !self.gathered.is_empty() {
            self.writer.write_all(&self.gathered).await?;
            self.gathered.clear();
        }
        Ok(())
    }
}

enum OpenHandle {
    Dir {
        entries: Vec<File>,
        next: usize,
    },
    Read {
        file: Box<ReadAhead>,
        /// The path it was opened by, when it names a link (whose metadata FSETSTAT changes).
        link: Option<FsPath>,
    },
    Write(Box<WriteHandle>),
    /// A file opened for reading while this session was writing it: a copy of what had been
    /// written when it was opened.
    Snapshot(Box<Spool>),
}

/// A file open for writing is what its path names until it is closed (Tahoe's "heisenfiles"):
/// a `stat`, a listing, another open, a rename or a removal of the path sees it. FUSE clients
/// (sshfs) need this: the kernel sends a file's release after `close(2)` has returned, so the
/// SFTP CLOSE that stores a file may come after the next request about its path (`cat f` after
/// `echo x > f`, `mv part f` after `cp f part`).
struct WriteHandle {
    /// The handle's number: handles opened later have greater numbers.
    seq: u64,
    /// The path it was opened by, so that a `stat` of it sees the file being written.
    path: FsPath,
    spool: Spool,
    /// Where the bytes go at close (checked by the layer when the file was opened).
    target: WriteTarget,
    /// Whether there is anything to commit on close.
    changed: bool,
    append: bool,
    readable: bool,
    /// An mtime set through fsetstat, stored in the link at close.
    mtime: Option<f64>,
    /// A read-only mark set through fsetstat (permissions without a write bit), stored at close.
    no_write: Option<bool>,
    /// Why a write was refused (the spool quota): the upload is then not stored at close.
    refused: Option<String>,
    /// The handle opened on the same path while this one was open (it started from this one's
    /// contents, or truncated them): once that one is stored, this one's contents are older than
    /// the file's, and closing this one stores nothing.
    superseded_by: Option<u64>,
    superseded: bool,
    /// The path was removed while the file was open (as an unlinked file on a disk): closing it
    /// stores nothing.
    unlinked: bool,
}

impl WriteHandle {
    fn names_its_path(&self) -> bool {
        !self.unlinked && !self.superseded
    }
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

/// Tahoe's `no-write` as SFTP permissions say it: no owner write bit marks the link read-only,
/// one clears the mark (Tahoe's `_attrs_to_metadata` reads `S_IWUSR`).
fn no_write_of(permissions: Option<u32>) -> Option<bool> {
    permissions.map(|p| p & 0o200 == 0)
}

/// The metadata a SETSTAT or FSETSTAT changes: the mtime and the read-only mark.
fn change_of(attrs: &FileAttributes) -> MetadataChange {
    MetadataChange {
        mtime: attrs.mtime.map(f64::from),
        no_write: no_write_of(attrs.permissions),
    }
}

/// A path's text as the layer parses it.
fn parse(text: &str) -> Result<FsPath, SftpError> {
    Ok(FsPath::parse(text)?)
}

/// A path that names a directory where a file was asked for is a failure (not "no such file").
fn not_a_directory_fails(e: FsError) -> SftpError {
    if e.kind() == FsErrorKind::NotADirectory {
        SftpError::failure("not a directory")
    } else {
        e.into()
    }
}

struct Session {
    context: SessionContext,
    fs: Fs,
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

/// The SFTP attributes of what a path names (Tahoe's synthetic permissions): directories
/// `rwxrwxrwx`, files `rw-rw-rw-`, never executable; the write bits are cleared for a link marked
/// `no-write`, below a read-only directory, for a read-only mutable file or directory, and for an
/// immutable file reached by its cap (`/uri/CAP`, which has no link to replace). Unknown objects
/// have no permission bits.
fn attributes(stat: &Stat, is_base: bool, user: &str) -> FileAttributes {
    let parent_readonly = !is_base && !stat.link_writable;
    let mut attrs = FileAttributes::empty();
    match stat.kind {
        EntryKind::Dir => {
            attrs.set_dir(true);
            let bits = if !stat.writable || parent_readonly || stat.no_write {
                0o555
            } else {
                0o777
            };
            attrs.permissions = Some(0o040000 | bits);
            attrs.size = Some(0);
        }
        EntryKind::File => {
            let read_only =
                parent_readonly || stat.no_write || if stat.mutable { !stat.writable } else { is_base };
            let bits = if read_only { 0o444 } else { 0o666 };
            attrs.permissions = Some(0o100000 | bits);
            attrs.size = Some(stat.size);
        }
        EntryKind::Unknown => {
            attrs.permissions = Some(0o100000);
            attrs.size = Some(0);
        }
    }
    if let Some(mtime) = stat.mtime {
        attrs.mtime = Some(mtime as u32);
        attrs.atime = Some(mtime as u32);
    }
    attrs.uid = Some(0);
    attrs.gid = Some(0);
    attrs.user = Some(user.to_owned());
    attrs.group = Some(user.to_owned());
    attrs
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

    async fn stat(&mut self, id: u32, path: &str) -> Reply {
        let path = parse(path)?;
        // A file open for writing is what its path names until it is closed (and uploaded), as
        // clients that stat a file right after creating it expect (sshfs does).
        if let Some(write) = self.pending(&path) {
            let attrs = write_attributes(write);
            return Ok(Packet::Attrs(Attrs { id, attrs }));
        }
        let stat = self.fs.stat(&path).await?;
        let attrs = attributes(&stat, path.names().is_empty(), &self.context.user);
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
            Some(OpenHandle::Snapshot(spool)) => {
                let mut attrs = FileAttributes::empty();
                attrs.permissions = Some(0o100444);
                attrs.size = Some(spool.size());
                attrs
            }
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

    /// SETSTAT: the link's mtime, and Tahoe's `no-write` from the permissions (`chmod 444` marks
    /// the link read-only, `chmod 644` clears the mark). A path's base (the root, `/uri/CAP`) has
    /// no link: nothing is stored for it.
    async fn setstat(&mut self, id: u32, path: &str, attrs: &FileAttributes) -> Reply {
        if attrs.size.is_some() {
            return Err(SftpError::unsupported(
                "changing the size of a file by path is not supported (open it and write instead)",
            ));
        }
        let path = parse(path)?;
        if path.names().is_empty() {
            self.fs.stat(&path).await?;
            return Ok(ok(id));
        }
        self.fs.set_metadata(&path, change_of(attrs)).await?;
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
                if let Some(no_write) = no_write_of(attrs.permissions) {
                    write.no_write = Some(no_write);
                }
                Ok(ok(id))
            }
            Some(OpenHandle::Read { link, .. }) => {
                if attrs.size.is_some() {
                    return Err(SftpError::denied("the file is open for reading only"));
                }
                let change = change_of(attrs);
                if let Some(path) = link.clone()
                    && change != MetadataChange::default()
                {
                    self.fs.set_metadata(&path, change).await?;
                }
                Ok(ok(id))
            }
            Some(OpenHandle::Snapshot(_)) if attrs.size.is_some() => {
                Err(SftpError::denied("the file is open for reading only"))
            }
            Some(OpenHandle::Snapshot(_)) => Err(SftpError::failure(
                "the file is still being written: set its attributes through the handle writing it",
            )),
            Some(OpenHandle::Dir { .. }) => Ok(ok(id)),
            None => Err(SftpError::bad_handle()),
        }
    }

    async fn opendir(&mut self, id: u32, path: &str) -> Reply {
        let path = parse(path)?;
        let listing = self.fs.list(&path).await.map_err(not_a_directory_fails)?;
        // Names no path can reach (`..`, `a/b`, empty, NUL; only a directory written by hand holds
        // one) are left out by the layer: a client would join them to a local path.
        let mut entries: Vec<File> = listing
            .into_iter()
            .map(|entry| {
                let attrs = attributes(&entry.stat, false, &self.context.user);
                File::new(entry.name, attrs)
            })
            .collect();
        // Files this session is creating here are listed too, as `stat` shows them.
        let mut creating: Vec<&WriteHandle> = self
            .writing()
            .map(|(_, write)| write)
            .filter(|write| write.path.parent().as_ref() == Some(&path))
            .collect();
        creating.sort_by_key(|write| std::cmp::Reverse(write.seq));
        for write in creating {
            let Some(name) = write.path.name() else { continue };
            if !entries.iter().any(|entry| entry.filename == name) {
                entries.push(File::new(name, write_attributes(write)));
            }
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
        let path = parse(path)?;
        let handle = if writing {
            OpenHandle::Write(Box::new(self.open_for_write(path, flags).await?))
        } else if let Some(pending) = self.pending_name(&path) {
            // Reading a file this session is writing: what has been written so far.
            let mut spool = self.new_spool()?;
            self.copy_pending(&pending, &mut spool).await?;
            OpenHandle::Snapshot(Box::new(spool))
        } else {
            let found = self.fs.find(&path).await?;
            match found.node {
                // A small mutable file is read whole now: the handle reads one version.
                Node::File(file) => OpenHandle::Read {
                    file: Box::new(ReadAhead::opened(
                        crate::whole::open(&file).await?,
                        Some(Arc::clone(&self.context.reading_ahead)),
                    )),
                    link: found.link.is_some().then_some(path),
                },
                Node::Dir(_) => return Err(SftpError::failure("is a directory")),
                Node::Unknown(_) => {
                    return Err(SftpError::denied("this version cannot read that kind of object"));
                }
            }
        };
        let handle = self.new_handle(handle)?;
        let seq = self.next_handle;
        if let Some(OpenHandle::Write(write)) = self.handles.get_mut(&handle) {
            write.seq = seq;
            let path = write.path.clone();
            // The newest handle on a path holds its contents (it started from the others').
            for other in self.handles.values_mut() {
                if let OpenHandle::Write(other) = other
                    && other.seq != seq
                    && other.path == path
                {
                    other.superseded_by = Some(seq);
                }
            }
        }
        Ok(Packet::Handle(Handle { id, handle }))
    }

    /// The open write handles, by name, that still name their path (not removed while open,
    /// nor superseded by a newer handle already stored).
    fn writing(&self) -> impl Iterator<Item = (&String, &WriteHandle)> {
        self.handles.iter().filter_map(|(name, handle)| match handle {
            OpenHandle::Write(write) if write.names_its_path() => Some((name, &**write)),
            _ => None,
        })
    }

    /// The newest handle writing `path`, and its name, if this session is writing it.
    fn newest_writing(&self, path: &FsPath) -> Option<(&String, &WriteHandle)> {
        self.writing()
            .filter(|(_, write)| write.path == *path)
            .max_by_key(|(_, write)| write.seq)
    }

    /// The newest handle writing `path`.
    fn pending(&self, path: &FsPath) -> Option<&WriteHandle> {
        self.newest_writing(path).map(|(_, write)| write)
    }

    /// The name of [`Session::pending`]'s handle.
    fn pending_name(&self, path: &FsPath) -> Option<String> {
        self.newest_writing(path).map(|(name, _)| name.clone())
    }

    /// The names of the handles writing `path`.
    fn pending_names(&self, path: &FsPath) -> Vec<String> {
        self.writing()
            .filter(|(_, write)| write.path == *path)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn new_spool(&self) -> Result<Spool, SftpError> {
        Ok(Spool::with_quota(
            self.context.spool_dir.as_deref(),
            &self.context.limits.spool_quota,
            &self.context.user,
        )?)
    }

    /// Copies what the open write handle `pending` holds into `spool`, in order from the start
    /// (so that the copy is hashed for its convergent key as it goes).
    async fn copy_pending(&mut self, pending: &str, spool: &mut Spool) -> Result<(), SftpError> {
        let Some(OpenHandle::Write(write)) = self.handles.get_mut(pending) else {
            return Err(SftpError::bad_handle());
        };
        let mut at = 0u64;
        loop {
            let chunk = write.spool.read_at(at, COPY_CHUNK).await?;
            if chunk.is_empty() {
                return Ok(());
            }
            spool.write_at(at, &chunk).await?;
            at += chunk.len() as u64;
        }
    }

    /// Opens a file for writing: the layer decides where the bytes go (Tahoe's replace semantics,
    /// the mutable-in-place rule, read-only directories and links marked `no-write` refused) before
    /// anything is received.
    async fn open_for_write(&mut self, path: FsPath, flags: OpenFlags) -> Result<WriteHandle, SftpError> {
        let exclusive = flags.contains(OpenFlags::CREATE | OpenFlags::EXCLUDE);
        let pending = self.pending_name(&path);
        if exclusive && pending.is_some() {
            return Err(SftpError::failure("the file exists (this session is writing it)"));
        }
        let replace = if exclusive {
            Replace::Never
        } else {
            Replace::Always
        };
        let target = self.fs.prepare_write(&path, replace).await?;
        if target.is_new() && !flags.contains(OpenFlags::CREATE) && pending.is_none() {
            return Err(SftpError::no_such_file());
        }
        // Tahoe's SFTP rules beyond the layer's: an unknown object or a read-only mutable file is
        // not opened for writing (the layer would replace it by a new immutable file).
        let existing = match target.existing() {
            Some(Node::Unknown(_)) => return Err(SftpError::denied("that object cannot be written")),
            Some(Node::File(file)) if file.is_mutable() && file.is_readonly() => {
                return Err(SftpError::denied("the file's cap is read-only"));
            }
            Some(Node::File(file)) => Some(file),
            Some(Node::Dir(_)) => return Err(SftpError::failure("is a directory")),
            None => None,
        };
        let mut spool = self.new_spool()?;
        // Hashed for the convergent key while the client writes in order from the start (the
        // old contents first, when kept), so that close reads the spool once.
        spool.hash_with(target.convergent_hasher());
        let truncate = flags.contains(OpenFlags::TRUNCATE);
        if let Some(pending) = pending.as_deref().filter(|_| !truncate) {
            // The file as this session is writing it, not as the grid holds it yet.
            self.copy_pending(pending, &mut spool).await?;
        } else if let Some(file) = existing.filter(|_| !truncate) {
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
        // The client's own writes, past a mebibyte, open the connections the upload at close will
        // want (the old contents copied above do not: an unchanged file is not uploaded).
        spool.warm_when_large(&self.context.grid);
        Ok(WriteHandle {
            seq: 0,
            path,
            spool,
            changed: truncate || target.is_new() || pending.is_some(),
            target,
            append: flags.contains(OpenFlags::APPEND),
            readable: flags.contains(OpenFlags::READ),
            mtime: None,
            no_write: None,
            refused: None,
            superseded_by: None,
            superseded: false,
            unlinked: false,
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
            Some(OpenHandle::Snapshot(spool)) => {
                let data = spool.read_at(offset, len).await?;
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
                if write.unlinked || write.superseded {
                    // Removed while open, or a newer handle on its path has been stored.
                    return Ok(ok(id));
                }
                let seq = write.seq;
                if let Err(e) = self.commit(*write).await {
                    tracing::warn!(user = ?self.context.user, error = %e.message, "SFTP upload failed at close");
                    return Err(e);
                }
                for other in self.handles.values_mut() {
                    if let OpenHandle::Write(other) = other
                        && other.superseded_by == Some(seq)
                    {
                        other.superseded = true;
                    }
                }
                Ok(ok(id))
            }
            Some(_) => Ok(ok(id)),
            None => Err(SftpError::bad_handle()),
        }
    }

    /// Uploads a written file and links it (through the layer); returns once the grid holds it.
    async fn commit(&self, write: WriteHandle) -> Result<(), SftpError> {
        let WriteHandle {
            path,
            mut spool,
            mut target,
            changed,
            mtime,
            no_write,
            ..
        } = write;
        if !changed {
            // Nothing written: only what FSETSTAT set, on the link (if the path has one).
            let change = MetadataChange { mtime, no_write };
            if change != MetadataChange::default() && target.link().is_some() {
                self.fs.set_metadata(&path, change).await?;
            }
            return Ok(());
        }
        spool.flush().await?;
        let size = spool.size();
        let has_link = target.link().is_some();
        target.set_mtime(mtime);
        let mut reader = spool.into_reader();
        target.set_convergent_key(reader.convergent_key());
        target.commit(reader, size, None).await.map_err(|e| {
            let unavailable = e.kind() == FsErrorKind::Unavailable;
            let error = SftpError::from(e);
            if unavailable {
                error.counted_as(ErrorKind::NotEnoughServers)
            } else {
                error
            }
        })?;
        // A read-only mark set on the open file (`put -p` of a file without write bits), as
        // Tahoe stores the attributes of a file at close. (The layer refused the open when the
        // link was marked already, so there is no mark to clear.)
        if no_write == Some(true) && has_link {
            self.fs
                .set_metadata(
                    &path,
                    MetadataChange {
                        mtime: None,
                        no_write: Some(true),
                    },
                )
                .await?;
        }
        Ok(())
    }

    async fn remove(&mut self, id: u32, path: &str) -> Reply {
        let path = parse(path)?;
        let pending = self.pending_names(&path);
        match self.fs.unlink(&path).await {
            Ok(()) => {}
            // Only this session's open file has the name: removing it is all there is to do.
            Err(e) if e.kind() == FsErrorKind::NotFound && !pending.is_empty() => {}
            Err(e) if e.kind() == FsErrorKind::IsADirectory => {
                return Err(SftpError::failure("is a directory (use rmdir)"));
            }
            Err(e) => return Err(e.into()),
        }
        for name in pending {
            if let Some(OpenHandle::Write(write)) = self.handles.get_mut(&name) {
                write.unlinked = true;
            }
        }
        Ok(ok(id))
    }

    /// MKDIR, with Tahoe's rule that missing parents are created too; the name itself must be
    /// free.
    async fn mkdir(&mut self, id: u32, path: &str) -> Reply {
        let path = parse(path)?;
        let Some(parent) = path.parent() else {
            return Err(SftpError::failure("the directory already exists"));
        };
        self.fs.mkdir_all(&parent).await.map_err(|e| match e.kind() {
            FsErrorKind::NotADirectory => SftpError::failure("a file is in the way"),
            _ => e.into(),
        })?;
        self.fs.mkdir(&path).await?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: &str) -> Reply {
        let path = parse(path)?;
        self.fs.rmdir(&path).await.map_err(not_a_directory_fails)?;
        Ok(ok(id))
    }

    fn realpath(&mut self, id: u32, path: &str) -> Reply {
        let path = parse(path)?;
        Ok(Packet::Name(Name {
            id,
            files: vec![File::dummy(path.to_text())],
        }))
    }

    async fn rename(&mut self, id: u32, from: &str, to: &str, replace: Replace) -> Reply {
        let (from, to) = (parse(from)?, parse(to)?);
        let pending = self.pending_names(&from);
        let replaced: Vec<String> = self
            .pending_names(&to)
            .into_iter()
            .filter(|name| !pending.contains(name))
            .collect();
        if replace == Replace::Never && !replaced.is_empty() {
            return Err(SftpError::failure(
                "the name exists already (this session is writing it)",
            ));
        }
        let mut replace_at_close = replace;
        match self.fs.rename(&from, &to, replace).await {
            // The grid's file moved; the one being written follows it over whatever it replaced.
            Ok(()) => replace_at_close = Replace::Always,
            // Only this session's open file has the name: it moves alone.
            Err(e) if e.kind() == FsErrorKind::NotFound && !pending.is_empty() => {}
            Err(e) => return Err(e.into()),
        }
        // A file being written moves with its name: its close stores it at the new one. A file
        // written in place (a mutable file) moved with its link and keeps its target.
        let options = WriteOptions {
            in_place: false,
            ..WriteOptions::new(replace_at_close)
        };
        let mut moved = Vec::with_capacity(pending.len());
        for name in pending {
            let in_place = matches!(
                self.handles.get(&name),
                Some(OpenHandle::Write(write)) if write.target.in_place().is_some()
            );
            let target = if in_place {
                None
            } else {
                Some(self.fs.prepare_write_with(&to, options).await?)
            };
            moved.push((name, target));
        }
        // A file this session was writing at the new name is replaced: closing it stores
        // nothing, as for a removed one.
        for name in replaced {
            if let Some(OpenHandle::Write(write)) = self.handles.get_mut(&name) {
                write.unlinked = true;
            }
        }
        for (name, target) in moved {
            if let Some(OpenHandle::Write(write)) = self.handles.get_mut(&name) {
                if let Some(target) = target {
                    write.target = target;
                }
                write.path = to.clone();
            }
        }
        Ok(ok(id))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records each write it is given, as the channel would make SSH packets of them.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.push(buf.to_vec());
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn encoded(packet: Packet) -> Vec<u8> {
        Bytes::try_from(packet).unwrap().to_vec()
    }

    /// Statuses gathered go out in one write, in order, at a flush or ahead of read data (never
    /// after it), and what is written is the replies byte for byte.
    #[tokio::test]
    async fn small_replies_share_a_write_and_keep_their_order() {
        let mut replies = Replies {
            writer: Writes::default(),
            gathered: Vec::new(),
        };
        for id in 0..10 {
            replies.send(Outgoing::Packet(ok(id))).await.unwrap();
        }
        assert!(replies.writer.0.is_empty(), "nothing goes out before a flush");
        replies.flush().await.unwrap();
        let statuses: Vec<u8> = (0..10).flat_map(|id| encoded(ok(id))).collect();
        assert_eq!(replies.writer.0, vec![statuses]);

        replies.send(Outgoing::Packet(ok(10))).await.unwrap();
        let data = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")];
        replies.send(Outgoing::Data { id: 11, data }).await.unwrap();
        let sent: Vec<u8> = replies.writer.0[1..].concat();
        let mut expected = encoded(ok(10));
        expected.extend_from_slice(&[0, 0, 0, 14, 103, 0, 0, 0, 11, 0, 0, 0, 5]);
        expected.extend_from_slice(b"abcde");
        assert_eq!(sent, expected);
        assert!(replies.gathered.is_empty());

        // Past the bound, gathered replies go out without waiting for a flush.
        replies.writer.0.clear();
        let mut id = 12;
        while replies.writer.0.is_empty() {
            replies.send(Outgoing::Packet(ok(id))).await.unwrap();
            id += 1;
        }
        assert!(replies.writer.0[0].len() >= GATHERED_REPLIES);
    }
}
