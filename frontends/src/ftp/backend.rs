//! The libunftp storage backend: a thin adapter over the file-system layer (`filenode::fs`), as the
//! WebDAV frontend is. Paths go through [`FsPath`] ([`super::paths`]), operations through [`Fs`],
//! failures through [`FtpError`] (one mapping to reply codes, [`super::error`]).
//!
//! - `get` opens the file once and streams `offset..` of it ([`FileReader::stream`], so REST is a
//!   ranged read that fetches only the segments it needs).
//! - `put` is checked before any byte arrives ([`Fs::prepare_resume`]: a directory, a read-only
//!   directory, a missing parent, a start past the end of the file), streams the data connection
//!   into an encrypted spool, and stores the result ([`Resume::commit`]: a new immutable file
//!   linked under the name, or a new version of a writable mutable file in place); the reply to
//!   STOR comes only after the file is on the grid and linked, and a failure is a failure reply.
//! - A non-zero start (`REST n` + `STOR`, and APPE, for which libunftp passes the file's size)
//!   keeps the file's first `n` bytes: they stream from the grid into a second spool while the
//!   upload arrives, and the two spools are stored as one file.
//! - `SITE MFMT` and `SITE UTIME` set a link's modification time ([`SetModTime`]; libunftp 0.24
//!   does not dispatch `MFMT` itself, see `mod.rs`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use filenode::fs::append::Resume;
use filenode::fs::{EntryKind, Fs, FsError, FsErrorKind, FsPath, Stat};
use filenode::grid::Grid;
use filenode::immutable::ConvergentHasher;
use filenode::node::{DirNode, NodeError, Replace};
use futures::StreamExt;
use futures::stream::BoxStream;
use libunftp::options::{Reply, ReplyCode, SiteCommandContext, SiteCommandHandler};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use unftp_core::storage::{FEATURE_RESTART, Fileinfo, Metadata, Permissions, Result, StorageBackend};

use super::auth::GridUser;
use super::error::FtpError;
use super::paths;
use crate::counters::{FrontendCounters, Op};
use crate::prefetch::prefetch;
use crate::spool::{Spool, SpoolReader};

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
    /// What this session's commands leave for later ones (see [`GridBackend::session`]).
    pub(crate) session: Arc<SessionState>,
}

/// What one session remembers between commands.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    /// Whether the session has changed its working directory away from `/` (SITE commands see no
    /// working directory).
    moved: AtomicBool,
    /// The path whose last stat failed for another reason than the path itself (the grid could not
    /// be read, or the like). libunftp's APPE
    /// stats the file for its size and, when that fails, calls `put` from 0, which would replace
    /// the file with the appended bytes alone: a `put` from 0 right after such a failure is
    /// refused (451) instead, once.
    failed_stat: Mutex<Option<PathBuf>>,
}

impl SessionState {
    fn failed_stat(&self) -> std::sync::MutexGuard<'_, Option<PathBuf>> {
        self.failed_stat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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

impl Meta {
    /// A stat as FTP shows it. A file's write bit says whether STOR, RNFR and DELE may change its
    /// link (its directory is writable); a directory's, whether it takes new children. A path's
    /// base (the root, an object reached by its cap) has no link: its own cap says.
    fn of(stat: &Stat, base: bool) -> Meta {
        let dir = stat.kind == EntryKind::Dir;
        Meta {
            size: stat.size,
            dir,
            writable: if dir || base {
                stat.writable
            } else {
                stat.link_writable
            },
            modified: stat
                .mtime
                .map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds)),
        }
    }
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

type FtpResult<T> = std::result::Result<T, FtpError>;

impl GridBackend {
    /// A fresh backend for one session (libunftp asks for one per session): the same grid,
    /// spool and figures, its own working-directory flag.
    pub(crate) fn session(&self) -> GridBackend {
        GridBackend {
            session: Arc::default(),
            ..self.clone()
        }
    }

    /// Counts an operation and, when it failed, why; the answer as libunftp takes it.
    fn counted<T>(&self, op: Op, result: FtpResult<T>) -> Result<T> {
        self.counters.operation(op);
        result.map_err(|e| {
            self.counters.error(e.counted_kind());
            e.into()
        })
    }

    /// The user's file system.
    fn fs(&self, user: &GridUser) -> Fs {
        Fs::new(&self.grid, DirNode::new(&self.grid, user.root.clone()))
    }

    async fn metadata_of(&self, user: &GridUser, path: &Path) -> FtpResult<Meta> {
        let parsed = paths::parse(path)?;
        let stat = self.fs(user).stat(&parsed).await;
        *self.session.failed_stat() = match &stat {
            Err(e)
                if matches!(
                    e.kind(),
                    FsErrorKind::Unavailable | FsErrorKind::Gone | FsErrorKind::Conflict | FsErrorKind::Other
                ) =>
            {
                Some(path.to_path_buf())
            }
            _ => None,
        };
        Ok(Meta::of(&stat?, parsed.names().is_empty()))
    }

    async fn list_of(&self, user: &GridUser, path: &Path) -> FtpResult<Vec<Fileinfo<PathBuf, Meta>>> {
        let path = paths::parse(path)?;
        let fs = self.fs(user);
        let entries = match fs.list(&path).await {
            Ok(entries) => entries,
            // `LIST file` lists the file itself, as Unix servers do.
            Err(e) if e.kind() == FsErrorKind::NotADirectory => {
                let stat = fs.stat(&path).await?;
                if stat.kind == EntryKind::Dir {
                    return Err(e.into());
                }
                return Ok(vec![Fileinfo {
                    path: PathBuf::from(path.name().unwrap_or_default()),
                    metadata: Meta::of(&stat, path.names().is_empty()),
                }]);
            }
            Err(e) => return Err(e.into()),
        };
        // The layer leaves out names no path can reach (`..`, `a/b`, empty, NUL; only a directory
        // written by hand holds one); a name with a line break would end the LIST line (and start
        // a forged one), and no FTP command can carry it: left out too.
        let before = entries.len();
        let entries: Vec<_> = entries
            .into_iter()
            .filter(|entry| !entry.name.contains(['\r', '\n']))
            .collect();
        if entries.len() < before {
            let left_out = before - entries.len();
            tracing::info!(
                left_out,
                "FTP listing: left out entries whose names cannot be carried on a line"
            );
        }
        Ok(entries
            .into_iter()
            .map(|entry| Fileinfo {
                metadata: Meta::of(&entry.stat, false),
                path: PathBuf::from(entry.name),
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
        let path = paths::parse(path)?;
        let file = self.fs(user).file(&path).await?;
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
        let unsure = self
            .session
            .failed_stat()
            .take()
            .is_some_and(|failed| failed == path);
        let prepared = match paths::parse(path) {
            // Perhaps an APPE whose size could not be read (see `SessionState::failed_stat`).
            Ok(_) if start == 0 && unsure => Err(FtpError::Fs(FsError::new(
                FsErrorKind::Unavailable,
                "the file could not be looked at just before: an APPE of it cannot be told from a \
                 STOR now, and is not taken as one (try again)",
            ))),
            Ok(path) => self
                .fs(user)
                .prepare_resume(&path, start)
                .await
                .map_err(FtpError::from),
            Err(e) => Err(e.into()),
        };
        let resume = match prepared {
            Ok(resume) => resume,
            Err(e) => {
                // Read (and drop) what the client sends, so that it sees the refusal as a reply
                // rather than as a broken data connection.
                let _ = tokio::io::copy(&mut input, &mut tokio::io::sink()).await;
                return Err(e);
            }
        };
        // The kept bytes come from the grid while the new ones arrive.
        let hasher = resume.convergent_hasher();
        let (kept, new) = tokio::join!(self.spool_kept(user, &resume), self.spool(user, input, hasher));
        let new = new?;
        let kept = kept?;
        let new_len = new.size();
        resume.check_size(new_len)?;
        let mut second = new.into_reader();
        // Hashed as it arrived: only a whole new file (nothing kept).
        let hashed = if kept.is_none() {
            second.convergent_key()
        } else {
            None
        };
        let mut resume = resume;
        resume.set_convergent_key(hashed);
        let input = Joined {
            first: kept,
            second,
            position: 0,
        };
        let len = input.len();
        resume.commit(input, len, None).await.map_err(FtpError::Store)?;
        Ok(new_len)
    }

    /// The first [`Resume::offset`] bytes of the file, from the grid into an encrypted spool
    /// charged to the user's quota (none when nothing is kept).
    async fn spool_kept(&self, user: &GridUser, resume: &Resume) -> FtpResult<Option<SpoolReader>> {
        if resume.offset() == 0 {
            return Ok(None);
        }
        let mut spool = self.new_spool(user).await?;
        let mut stream = prefetch(resume.prefix(), READ_AHEAD);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let at = spool.size();
            spool.write_at(at, &chunk).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::QuotaExceeded {
                    FtpError::Exceeded(e)
                } else {
                    FtpError::Spool(e)
                }
            })?;
        }
        spool.flush().await.map_err(FtpError::Spool)?;
        if spool.size() != resume.offset() {
            return Err(NodeError::Unrecoverable("the file ended before the bytes to keep".into()).into());
        }
        Ok(Some(spool.into_reader()))
    }

    async fn new_spool(&self, user: &GridUser) -> FtpResult<Spool> {
        let dir = self.spool_dir.clone();
        let quota = Arc::clone(&self.spool_quota);
        let name = user.name.clone();
        tokio::task::spawn_blocking(move || Spool::with_quota(dir.as_deref(), &quota, &name))
            .await
            .map_err(|e| FtpError::Spool(std::io::Error::other(e)))?
            .map_err(FtpError::Spool)
    }

    /// Streams the upload into an encrypted spool ([`Spool`]: no plaintext reaches the disk).
    /// Past the user's spool quota the rest of the upload is read and dropped (so that the client
    /// sees the 552 reply rather than a broken data connection) and nothing more is written.
    /// The data connection's bytes into a new spool, hashed for their convergent key as they
    /// arrive when `hasher` is given.
    async fn spool<R: AsyncRead + Unpin>(
        &self,
        user: &GridUser,
        mut input: R,
        hasher: Option<ConvergentHasher>,
    ) -> FtpResult<Spool> {
        let mut spool = match self.new_spool(user).await {
            Ok(spool) => spool,
            Err(e) => {
                let _ = tokio::io::copy(&mut input, &mut tokio::io::sink()).await;
                return Err(e);
            }
        };
        spool.hash_with(hasher);
        // Past a mebibyte, the connections the upload will want open while the rest arrives.
        spool.warm_when_large(&self.grid);
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

    async fn del_at(&self, user: &GridUser, path: &Path) -> FtpResult<()> {
        Ok(self.fs(user).unlink(&paths::parse(path)?).await?)
    }

    async fn mkd_at(&self, user: &GridUser, path: &Path) -> FtpResult<()> {
        self.fs(user).mkdir(&paths::parse(path)?).await?;
        Ok(())
    }

    async fn rmd_at(&self, user: &GridUser, path: &Path) -> FtpResult<()> {
        Ok(self.fs(user).rmdir(&paths::parse(path)?).await?)
    }

    /// RNFR/RNTO: within or across directories; replaces files, never directories.
    async fn rename_at(&self, user: &GridUser, from: &Path, to: &Path) -> FtpResult<()> {
        let (from, to) = (paths::parse(from)?, paths::parse(to)?);
        Ok(self.fs(user).rename(&from, &to, Replace::OnlyFiles).await?)
    }

    async fn cwd_at(&self, user: &GridUser, path: &Path) -> FtpResult<()> {
        let path = paths::parse(path)?;
        self.fs(user).dir(&path).await?;
        // libunftp now keeps the path as the session's working directory.
        self.session
            .moved
            .store(path != FsPath::root(), Ordering::Relaxed);
        Ok(())
    }

    /// `SITE MFMT` / `SITE UTIME`: the reply.
    async fn set_time(&self, user: &GridUser, command: &str, arguments: &str) -> Reply {
        let Some((path, mtime)) = set_time_arguments(command, arguments) else {
            return Reply::new(
                ReplyCode::ParameterSyntaxError,
                "Syntax: SITE MFMT YYYYMMDDHHMMSS path, SITE UTIME YYYYMMDDHHMMSS path, or \
                 SITE UTIME path atime mtime ctime UTC (times in UTC)",
            );
        };
        // libunftp gives SITE commands no working directory: a relative path is the user's root's
        // only while the session has not left it.
        if !path.starts_with('/') && self.session.moved.load(Ordering::Relaxed) {
            return Reply::new(
                ReplyCode::ParameterSyntaxError,
                "SITE MFMT and SITE UTIME take an absolute path after CWD (they cannot see the \
                 working directory)",
            );
        }
        let result = match paths::parse(Path::new(path)) {
            Ok(parsed) => self
                .fs(user)
                .set_mtime(&parsed, mtime)
                .await
                .map_err(FtpError::from),
            Err(e) => Err(e.into()),
        };
        match self.counted(Op::Other, result) {
            Ok(()) => match command {
                // The draft's MFMT reply, which clients parse.
                "MFMT" => Reply::new_with_string(
                    ReplyCode::FileStatus,
                    format!(
                        "Modify={}; {path}",
                        arguments.split(' ').next().unwrap_or_default()
                    ),
                ),
                _ => Reply::new(ReplyCode::CommandOkay, "Modification time set"),
            },
            Err(e) => match e.kind() {
                unftp_core::storage::ErrorKind::FileNameNotAllowedError => {
                    Reply::new(ReplyCode::BadFileName, "File name not allowed")
                }
                unftp_core::storage::ErrorKind::PermissionDenied => {
                    Reply::new(ReplyCode::FileError, "Permission denied")
                }
                unftp_core::storage::ErrorKind::LocalError => {
                    Reply::new(ReplyCode::LocalError, "Local error")
                }
                _ => Reply::new(ReplyCode::FileError, "File not found"),
            },
        }
    }
}

/// `SITE MFMT` and `SITE UTIME` (lftp's two forms): what they name and the time they set.
#[derive(Debug)]
pub(crate) struct SetModTime;

#[async_trait]
impl SiteCommandHandler<GridBackend, GridUser> for SetModTime {
    async fn handle(&self, context: &SiteCommandContext<GridBackend, GridUser>) -> Reply {
        match context.user.as_ref() {
            Some(user) => {
                context
                    .storage
                    .set_time(user, &context.command, &context.arguments)
                    .await
            }
            None => Reply::new(ReplyCode::NotLoggedIn, "Log in first"),
        }
    }
}

/// The path and the time (Unix seconds) of a `SITE MFMT` or `SITE UTIME`:
/// - `MFMT YYYYMMDDHHMMSS[.sss] path` (draft-somers-ftp-mfxx's MFMT, as a SITE command);
/// - `UTIME YYYYMMDDHHMMSS path` (lftp's `site-utime2`);
/// - `UTIME path atime mtime ctime UTC` (lftp's `site-utime`, ProFTPD's form): the mtime is set.
///
/// Paths may hold spaces. Times are UTC.
pub(crate) fn set_time_arguments<'a>(command: &str, arguments: &'a str) -> Option<(&'a str, f64)> {
    if command == "UTIME"
        && let Some(rest) = arguments.strip_suffix(" UTC")
    {
        let mut fields = rest.rsplitn(4, ' ');
        let (ctime, mtime, atime, path) = (fields.next(), fields.next(), fields.next(), fields.next());
        if let (Some(_), Some(mtime), Some(_), Some(path)) = (
            ctime.and_then(parse_time),
            mtime.and_then(parse_time),
            atime.and_then(parse_time),
            path,
        ) && !path.is_empty()
        {
            return Some((path, mtime));
        }
    }
    if command != "MFMT" && command != "UTIME" {
        return None;
    }
    let (time, path) = arguments.split_once(' ')?;
    if path.is_empty() {
        return None;
    }
    Some((path, parse_time(time)?))
}

/// `YYYYMMDDHHMMSS[.sss]` (UTC) as Unix seconds; `None` unless it is a real time from 1970 to 9999.
pub(crate) fn parse_time(text: &str) -> Option<f64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| whole[range].parse::<u32>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(8..10)?, number(10..12)?, number(12..14)?);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let fraction = match fraction {
        None => 0.0,
        Some(digits) if (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) => {
            format!("0.{digits}").parse::<f64>().ok()?
        }
        Some(_) => return None,
    };
    let days = days_since_epoch(year, month, day);
    Some((days * 86_400 + u64::from(hour * 3600 + minute * 60 + second)) as f64 + fraction)
}

/// Whether a year of the Gregorian calendar has 29 February.
fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Days from 1970-01-01 to a date of the Gregorian calendar (1970 or later).
fn days_since_epoch(year: u32, month: u32, day: u32) -> u64 {
    let whole_years: u64 = (1970..year).map(|y| if is_leap(y) { 366 } else { 365 }).sum();
    const BEFORE: [u64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let mut days = whole_years + BEFORE[(month - 1) as usize] + u64::from(day - 1);
    if month > 2 && is_leap(year) {
        days += 1;
    }
    days
}

/// Chunks (about a segment each) fetched ahead of the data connection.
const READ_AHEAD: usize = 4;

/// How much of the data connection is read at once (the spool gathers reads into larger writes).
const SPOOL_CHUNK: usize = 256 << 10;

/// The kept bytes of a resumed upload followed by the new ones: one input for the layer.
struct Joined {
    first: Option<SpoolReader>,
    second: SpoolReader,
    position: u64,
}

impl Joined {
    fn first_len(&self) -> u64 {
        self.first.as_ref().map_or(0, SpoolReader::len)
    }

    fn len(&self) -> u64 {
        self.first_len() + self.second.len()
    }
}

impl Read for Joined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let first_len = self.first_len();
        let n = match &mut self.first {
            Some(first) if self.position < first_len => {
                let room = usize::try_from(first_len - self.position).unwrap_or(usize::MAX);
                let take = buf.len().min(room);
                first.seek(SeekFrom::Start(self.position))?;
                first.read(&mut buf[..take])?
            }
            _ => {
                self.second.seek(SeekFrom::Start(self.position - first_len))?;
                self.second.read(buf)?
            }
        };
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for Joined {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let position = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = position
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}

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
        let result = self.metadata_of(user, path.as_ref()).await;
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
                    let e = FtpError::from(e);
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

    /// STOR, `REST n` + STOR and APPE (libunftp passes the file's size as the start).
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
