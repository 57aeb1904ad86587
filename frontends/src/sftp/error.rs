//! The one mapping from the file-system layer's errors (`FsErrorKind`) to SFTP status codes (SFTP
//! v3 has only a few: a failure carries its reason in the status message), plus the errors of the
//! reads that go to a file directly (the read-ahead window) and of the spool.

use filenode::fs::{FsError, FsErrorKind};
use filenode::node::NodeError;
use russh_sftp::protocol::{Packet, Status, StatusCode};

use crate::counters::ErrorKind;

/// An SFTP request's failure: the status code and the message the client shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SftpError {
    pub(crate) code: StatusCode,
    pub(crate) message: String,
    /// Why, as the frontends' error figures count it (a status code alone says too little).
    pub(crate) kind: ErrorKind,
}

impl SftpError {
    pub(crate) fn new(code: StatusCode, message: impl Into<String>) -> Self {
        let kind = match code {
            StatusCode::NoSuchFile => ErrorKind::NotFound,
            StatusCode::PermissionDenied => ErrorKind::Permission,
            StatusCode::OpUnsupported => ErrorKind::Unsupported,
            _ => ErrorKind::BadRequest,
        };
        SftpError {
            code,
            message: message.into(),
            kind,
        }
    }

    /// The same error, counted as `kind`.
    pub(crate) fn counted_as(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub(crate) fn eof() -> Self {
        SftpError::new(StatusCode::Eof, "end of file")
    }

    pub(crate) fn no_such_file() -> Self {
        SftpError::new(StatusCode::NoSuchFile, "No such file or directory")
    }

    pub(crate) fn failure(message: impl Into<String>) -> Self {
        SftpError::new(StatusCode::Failure, message)
    }

    pub(crate) fn denied(message: impl Into<String>) -> Self {
        SftpError::new(StatusCode::PermissionDenied, message)
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        SftpError::new(StatusCode::OpUnsupported, message)
    }

    pub(crate) fn bad_handle() -> Self {
        SftpError::failure("invalid handle")
    }

    /// The status packet answering request `id`.
    pub(crate) fn into_packet(self, id: u32) -> Packet {
        Packet::Status(Status {
            id,
            status_code: self.code,
            error_message: self.message,
            language_tag: "en-US".into(),
        })
    }
}

impl From<FsError> for SftpError {
    fn from(error: FsError) -> Self {
        // Tahoe's SFTP codes: a missing name (or a path that is no path: a bad cap after /uri/,
        // not UTF-8) is "no such file", a read-only cap or link is "permission denied", and
        // everything else a failure with its reason.
        let (code, kind) = match error.kind() {
            FsErrorKind::NotFound | FsErrorKind::NotADirectory => {
                (StatusCode::NoSuchFile, ErrorKind::NotFound)
            }
            FsErrorKind::BadPath => (StatusCode::NoSuchFile, ErrorKind::BadRequest),
            FsErrorKind::ReadOnly => (StatusCode::PermissionDenied, ErrorKind::Permission),
            FsErrorKind::Exists => (StatusCode::Failure, ErrorKind::Conflict),
            FsErrorKind::IsADirectory | FsErrorKind::NotEmpty => (StatusCode::Failure, ErrorKind::BadRequest),
            FsErrorKind::Unavailable | FsErrorKind::Gone => (StatusCode::Failure, ErrorKind::NotEnoughShares),
            FsErrorKind::TooLarge => (StatusCode::Failure, ErrorKind::Quota),
            FsErrorKind::Conflict | FsErrorKind::Other => (StatusCode::Failure, ErrorKind::Conflict),
        };
        SftpError {
            code,
            message: error.message().to_owned(),
            kind,
        }
    }
}

impl From<NodeError> for SftpError {
    fn from(error: NodeError) -> Self {
        let message = error.to_string();
        let kind = ErrorKind::of_node(&error);
        let code = match error {
            NodeError::NoSuchChild(_) | NodeError::NotADirectory(_) => StatusCode::NoSuchFile,
            NodeError::NotWritable(_) | NodeError::MarkedReadOnly(_) => StatusCode::PermissionDenied,
            NodeError::Unsupported(_) => StatusCode::OpUnsupported,
            NodeError::ExistingChild(_)
            | NodeError::WrongType(_)
            | NodeError::BadName { .. }
            | NodeError::BadChild(_)
            | NodeError::UncoordinatedWrite
            | NodeError::VersionChanged(_)
            | NodeError::Conflict(_)
            | NodeError::Unrecoverable(_)
            | NodeError::NotEnoughServers(_)
            | NodeError::CorruptDirectory(_)
            | NodeError::Input(_)
            | NodeError::BadOffset(_) => StatusCode::Failure,
        };
        SftpError { code, message, kind }
    }
}

impl From<std::io::Error> for SftpError {
    fn from(error: std::io::Error) -> Self {
        // The spool is the only local file: its errors (quota or disk full) are worth telling.
        let kind = ErrorKind::of_io(&error);
        if error.kind() == std::io::ErrorKind::QuotaExceeded {
            return SftpError::failure(error.to_string()).counted_as(kind);
        }
        SftpError::failure(format!("the gateway's temporary spool failed: {error}")).counted_as(kind)
    }
}
