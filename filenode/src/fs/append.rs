//! Writes that keep part of what a name holds: resuming or appending to a file (FTP's `REST n` +
//! `STOR` and `APPE`), and setting a link's modification time (FTP's `MFMT`, SFTP's SETSTAT).
//!
//! A resumed write of `path` from `offset` makes the file hold its first `offset` bytes followed
//! by the new bytes (whatever came after `offset` is replaced, as a file written from a position
//! and then cut there). The destination is [`Fs::prepare_write`]'s: a writable mutable file gets a
//! new version in place (its cap, and every other link to it, see the result); anything else is
//! uploaded as a new immutable file with the resulting bytes and linked under the name. Either way
//! the kept bytes are read from the grid by the frontend ([`Resume::prefix`], streamed in bounded
//! memory) into the same spool as the new ones, and the whole is stored by [`Resume::commit`]: a
//! mutable file is never read while its own new version is published.

use bytes::Bytes;
use futures::stream::BoxStream;

use super::{Fs, FsError, FsErrorKind, FsPath, WriteTarget};
use crate::cap::Cap;
use crate::node::metadata::Metadata;
use crate::node::{FileReader, NodeError, Replace};

/// Why a resumed write cannot start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResumeError {
    /// The offset is past the end of the file (a missing file has 0 bytes): there would be a gap.
    #[error("the write starts at byte {offset}, past the end of the file ({size} bytes)")]
    PastEnd {
        /// Where the write was to start.
        offset: u64,
        /// The file's size.
        size: u64,
    },
    /// The write cannot go there at all ([`Fs::prepare_write`]'s refusals, or the file cannot be
    /// read).
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A write checked by [`Fs::prepare_resume`]: where it goes, and the bytes it keeps.
#[derive(Debug)]
pub struct Resume {
    target: WriteTarget,
    /// The existing file's version whose first `offset` bytes are kept (none when `offset` is 0).
    kept: Option<FileReader>,
    offset: u64,
}

impl Resume {
    /// A hasher for the convergent key of the bytes to commit ([`WriteTarget::convergent_hasher`]),
    /// when nothing is kept (a resume's bytes arrive in two parts).
    pub fn convergent_hasher(&self) -> Option<crate::immutable::ConvergentHasher> {
        (self.offset == 0)
            .then(|| self.target.convergent_hasher())
            .flatten()
    }

    /// The convergent key of the bytes to commit ([`WriteTarget::set_convergent_key`]).
    pub fn set_convergent_key(&mut self, hashed: Option<([u8; 16], u64)>) {
        self.target.set_convergent_key(hashed);
    }

    /// How many bytes of the existing file are kept.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the write makes a new name.
    pub fn is_new(&self) -> bool {
        self.target.is_new()
    }

    /// The kept bytes (`0..offset` of the file's version found when the write was prepared),
    /// streamed a segment or so at a time; empty when nothing is kept.
    pub fn prefix(&self) -> BoxStream<'static, Result<Bytes, NodeError>> {
        match &self.kept {
            Some(reader) => reader.stream(0, self.offset),
            None => Box::pin(futures::stream::empty()),
        }
    }

    /// Refuses `len` new bytes (the file would be `offset + len` bytes) when the destination
    /// cannot take them (an SDMF file's bound), before they arrive.
    pub fn check_size(&self, len: u64) -> Result<(), FsError> {
        let total = self
            .offset
            .checked_add(len)
            .ok_or_else(|| FsError::new(FsErrorKind::TooLarge, "a file cannot pass 2^64 bytes"))?;
        self.target.check_size(total)
    }

    /// Stores the file: `input` holds all `len` bytes of the result (the kept prefix, then the new
    /// bytes), as [`WriteTarget::commit`].
    pub async fn commit<R>(self, input: R, len: u64, metadata: Option<Metadata>) -> Result<(), FsError>
    where
        R: std::io::Read + std::io::Seek + Send + 'static,
    {
        if len < self.offset {
            return Err(FsError::new(
                FsErrorKind::Other,
                "the input is shorter than the bytes it was to keep",
            ));
        }
        self.target.commit(input, len, metadata).await.map(|_| ())
    }
}

impl Fs {
    /// Prepares a write of `path` that keeps its first `offset` bytes (see the module). Checked
    /// before any byte is received: [`Fs::prepare_write`]'s refusals (a directory, a read-only
    /// directory, a missing parent), then an offset past the end of the file
    /// ([`ResumeError::PastEnd`]; a name that holds nothing has 0 bytes). An offset of 0 is a
    /// plain write.
    pub async fn prepare_resume(&self, path: &FsPath, offset: u64) -> Result<Resume, ResumeError> {
        let target = self.prepare_write(path, Replace::OnlyFiles).await?;
        if offset == 0 {
            return Ok(Resume {
                target,
                kept: None,
                offset,
            });
        }
        if target.is_new() {
            return Err(ResumeError::PastEnd { offset, size: 0 });
        }
        let reader = match target.in_place() {
            Some(file) => file.open().await.map_err(FsError::from)?,
            None => self.open(path).await?,
        };
        let size = reader.size();
        if offset > size {
            return Err(ResumeError::PastEnd { offset, size });
        }
        Ok(Resume {
            target,
            kept: Some(reader),
            offset,
        })
    }

    /// Sets the modification time of the link at `path` to `mtime` (Unix seconds): the user's
    /// `mtime` in the link's metadata, which [`Fs::stat`] and [`Fs::list`] show before Tahoe's
    /// `linkmotime`. One directory write; the object itself is not changed. A path's base (the
    /// root, an object reached by its cap) has no link to hold a time.
    pub async fn set_mtime(&self, path: &FsPath, mtime: f64) -> Result<(), FsError> {
        if !mtime.is_finite() || mtime < 0.0 {
            return Err(FsError::new(
                FsErrorKind::Other,
                "a modification time is a number of seconds since 1970",
            ));
        }
        let (parent, name) = self.parent(path).await?;
        if parent.is_readonly() {
            return Err(FsError::new(FsErrorKind::ReadOnly, "the directory is read-only"));
        }
        let child = parent.get(&name).await?;
        let mut metadata = child.metadata.clone();
        metadata.shift_remove("tahoe");
        metadata.insert(
            "mtime".into(),
            serde_json::Number::from_f64(mtime).map_or(serde_json::Value::Null, serde_json::Value::Number),
        );
        // The same object again; a directory linked under the name since it was read is never
        // replaced by a file's link.
        let replace = if matches!(child.cap, Cap::Dir(_)) {
            Replace::Always
        } else {
            Replace::OnlyFiles
        };
        parent
            .set_child(&name, &child.cap, Some(metadata), replace)
            .await?;
        Ok(())
    }
}
