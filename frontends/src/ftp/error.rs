//! Every FTP failure mapped to a libunftp [`ErrorKind`] (and so to an FTP reply code), in one place.
//!
//! libunftp chooses the reply text from the kind alone, so the kind carries the reason: a grid that
//! has too few servers for an upload answers `452 Insufficient storage space`, a write through a
//! read-only cap `550 Permission denied`, a name that cannot be a child `553 File name not
//! allowed`. The full reason goes to the node's log (never with a cap or a path, which may hold
//! one).

use filenode::node::NodeError;
use unftp_core::storage::{Error, ErrorKind};

/// Why an FTP operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FtpError {
    /// A filesystem operation on the grid failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The path is the user's root or a cap itself, which has no parent to change.
    #[error("the root of a path cannot be changed")]
    NoParent,
    /// A file operation on a directory (RETR, DELE, STOR over a directory).
    #[error("that is a directory")]
    IsADirectory,
    /// A directory operation on something else (CWD, RMD, LIST of a file's children).
    #[error("that is not a directory")]
    NotADirectory,
    /// RMD of a directory that still has children.
    #[error("the directory is not empty")]
    NotEmpty,
    /// Appending, or resuming an upload: immutable files cannot be extended.
    #[error("files cannot be appended to or resumed (immutable files)")]
    NoAppend,
    /// A path that is not UTF-8 or names a cap this version cannot open.
    #[error("unusable path")]
    BadPath,
    /// Reading the upload from the client failed.
    #[error("reading the upload failed: {0}")]
    Transfer(std::io::Error),
    /// The spool file failed.
    #[error("local spool file failed: {0}")]
    Spool(std::io::Error),
    /// The upload would pass the user's spool quota (`[ftpd] spool.quota`) or the SDMF size bound.
    #[error("{0}")]
    Exceeded(std::io::Error),
}

impl FtpError {
    /// The libunftp error kind, and so the FTP reply.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            FtpError::Node(e) => match e {
                // BadOffset: a write or read beyond what the file allows (FTP's REST is checked
                // before it reaches the grid, so this is unexpected; 550 rather than a syntax code).
                NodeError::NoSuchChild(_)
                | NodeError::WrongType(_)
                | NodeError::ExistingChild(_)
                | NodeError::BadOffset(_) => ErrorKind::PermanentFileNotAvailable,
                NodeError::NotADirectory(_) => ErrorKind::PermanentDirectoryNotAvailable,
                NodeError::NotWritable(_) => ErrorKind::PermissionDenied,
                NodeError::BadName { .. } | NodeError::BadChild(_) => ErrorKind::FileNameNotAllowedError,
                NodeError::UncoordinatedWrite | NodeError::Conflict(_) | NodeError::VersionChanged(_) => {
                    ErrorKind::TransientFileNotAvailable
                }
                NodeError::Unrecoverable(_) | NodeError::CorruptDirectory(_) => ErrorKind::LocalError,
                NodeError::NotEnoughServers(_) => ErrorKind::InsufficientStorageSpaceError,
                NodeError::Unsupported(_) => ErrorKind::CommandNotImplemented,
                NodeError::Input(_) => ErrorKind::ConnectionClosed,
            },
            FtpError::NoParent => ErrorKind::PermissionDenied,
            FtpError::IsADirectory => ErrorKind::PermanentFileNotAvailable,
            FtpError::NotADirectory => ErrorKind::PermanentDirectoryNotAvailable,
            FtpError::NotEmpty => ErrorKind::PermanentDirectoryNotEmpty,
            FtpError::NoAppend => ErrorKind::CommandNotImplemented,
            FtpError::BadPath => ErrorKind::FileNameNotAllowedError,
            FtpError::Transfer(_) => ErrorKind::ConnectionClosed,
            FtpError::Spool(_) => ErrorKind::LocalError,
            FtpError::Exceeded(_) => ErrorKind::ExceededStorageAllocationError,
        }
    }
}

impl FtpError {
    /// Why, as the frontends' error figures count it.
    pub(crate) fn counted_kind(&self) -> crate::counters::ErrorKind {
        use crate::counters::ErrorKind as Kind;
        match self {
            FtpError::Node(e) => Kind::of_node(e),
            FtpError::NoParent => Kind::Permission,
            FtpError::IsADirectory | FtpError::NotADirectory | FtpError::BadPath => Kind::BadRequest,
            FtpError::NotEmpty => Kind::Conflict,
            FtpError::NoAppend => Kind::Unsupported,
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
