//! Every FTP failure mapped to a libunftp [`ErrorKind`] (and so to an FTP reply code), in one place:
//! the file-system layer's [`FsErrorKind`] for everything that touches the grid, plus what only
//! FTP has (the data connection, the spool, a resume past the end).
//!
//! libunftp chooses the reply text from the kind alone, so the kind carries the reason: an upload
//! that finds too few servers answers `452 Insufficient storage space`, a write through a read-only
//! cap `550 Permission denied`, a name that cannot be a path `553 File name not allowed`, a
//! `REST n` + `STOR` or an APPE past the end of the file `551` (libunftp's text for it is "Page
//! type unknown"; RFC 1123's 554 is not among its kinds). The full reason goes to the node's log
//! (never with a cap or a path, which may hold one).

use filenode::fs::append::ResumeError;
use filenode::fs::{FsError, FsErrorKind};
use filenode::node::NodeError;
use unftp_core::storage::{Error, ErrorKind};

/// Why an FTP operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FtpError {
    /// A file-system operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Storing an upload on the grid failed (too few servers is then 452, not 451).
    #[error("storing the upload failed: {0}")]
    Store(FsError),
    /// A resumed upload (`REST n` + `STOR`, APPE) would start past the end of the file.
    #[error("the upload starts at byte {offset}, past the end of the file ({size} bytes)")]
    PastEnd { offset: u64, size: u64 },
    /// Reading the upload from the client failed.
    #[error("reading the upload failed: {0}")]
    Transfer(std::io::Error),
    /// The spool file failed.
    #[error("local spool file failed: {0}")]
    Spool(std::io::Error),
    /// The upload would pass the user's spool quota (`[ftpd] spool.quota`).
    #[error("{0}")]
    Exceeded(std::io::Error),
}

impl From<NodeError> for FtpError {
    fn from(e: NodeError) -> Self {
        FtpError::Fs(e.into())
    }
}

impl From<ResumeError> for FtpError {
    fn from(e: ResumeError) -> Self {
        match e {
            ResumeError::PastEnd { offset, size } => FtpError::PastEnd { offset, size },
            ResumeError::Fs(e) => FtpError::Fs(e),
        }
    }
}

/// The reply to a layer failure.
fn fs_kind(kind: FsErrorKind, storing: bool) -> ErrorKind {
    match kind {
        FsErrorKind::NotFound | FsErrorKind::Exists | FsErrorKind::IsADirectory => {
            ErrorKind::PermanentFileNotAvailable
        }
        FsErrorKind::NotADirectory => ErrorKind::PermanentDirectoryNotAvailable,
        FsErrorKind::NotEmpty => ErrorKind::PermanentDirectoryNotEmpty,
        FsErrorKind::ReadOnly => ErrorKind::PermissionDenied,
        FsErrorKind::BadPath => ErrorKind::FileNameNotAllowedError,
        // Too few servers to place an upload; too few shares to read something.
        FsErrorKind::Unavailable if storing => ErrorKind::InsufficientStorageSpaceError,
        FsErrorKind::Unavailable | FsErrorKind::Gone | FsErrorKind::Conflict | FsErrorKind::Other => {
            ErrorKind::LocalError
        }
        FsErrorKind::TooLarge => ErrorKind::ExceededStorageAllocationError,
    }
}

impl FtpError {
    /// The libunftp error kind, and so the FTP reply.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            FtpError::Fs(e) => fs_kind(e.kind(), false),
            FtpError::Store(e) => fs_kind(e.kind(), true),
            FtpError::PastEnd { .. } => ErrorKind::PageTypeUnknown,
            FtpError::Transfer(_) => ErrorKind::ConnectionClosed,
            FtpError::Spool(_) => ErrorKind::LocalError,
            FtpError::Exceeded(_) => ErrorKind::ExceededStorageAllocationError,
        }
    }

    /// Why, as the frontends' error figures count it.
    pub(crate) fn counted_kind(&self) -> crate::counters::ErrorKind {
        use crate::counters::ErrorKind as Kind;
        let fs = |kind: FsErrorKind, storing: bool| match kind {
            FsErrorKind::NotFound => Kind::NotFound,
            FsErrorKind::ReadOnly => Kind::Permission,
            FsErrorKind::NotADirectory | FsErrorKind::IsADirectory | FsErrorKind::BadPath => Kind::BadRequest,
            FsErrorKind::Exists | FsErrorKind::NotEmpty | FsErrorKind::Conflict => Kind::Conflict,
            FsErrorKind::Unavailable if storing => Kind::NotEnoughServers,
            FsErrorKind::Unavailable | FsErrorKind::Gone => Kind::NotEnoughShares,
            FsErrorKind::TooLarge => Kind::Quota,
            FsErrorKind::Other => Kind::Internal,
        };
        match self {
            FtpError::Fs(e) => fs(e.kind(), false),
            FtpError::Store(e) => fs(e.kind(), true),
            FtpError::PastEnd { .. } => Kind::BadRequest,
            FtpError::Transfer(e) if e.kind() == std::io::ErrorKind::TimedOut => Kind::Timeout,
            FtpError::Transfer(_) => Kind::BadRequest,
            FtpError::Spool(e) => Kind::of_io(e),
            FtpError::Exceeded(_) => Kind::Quota,
        }
    }
}

impl From<FtpError> for Error {
    fn from(e: FtpError) -> Self {
        let kind = e.kind();
        match kind {
            // Failures of the node or the grid are worth a line in the log; "no such file" is not.
            ErrorKind::LocalError
            | ErrorKind::InsufficientStorageSpaceError
            | ErrorKind::TransientFileNotAvailable
            | ErrorKind::ExceededStorageAllocationError
            | ErrorKind::ConnectionClosed => {
                tracing::warn!(reply = %kind, reason = %e, "FTP operation failed")
            }
            _ => tracing::debug!(reply = %kind, reason = %e, "FTP operation refused"),
        }
        Error::new(kind, e)
    }
}
