//! The file-system layer's one error type: a kind each protocol maps in its one place, and a
//! message for people that never holds a cap.

use crate::node::NodeError;

/// What kind of failure an [`FsError`] is: the distinctions every protocol makes (HTTP status,
/// SFTP status code, FTP reply code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsErrorKind {
    /// Nothing at that path (or a step of it is missing).
    NotFound,
    /// The name is taken and replacing it was not asked for (or is not allowed).
    Exists,
    /// A step of the path, or the object an operation needs a directory for, is not one.
    NotADirectory,
    /// A file operation on a directory.
    IsADirectory,
    /// A directory that must be empty is not (rmdir).
    NotEmpty,
    /// A write through a read-only cap, a change to a link marked read-only (Tahoe's `no-write`),
    /// or a change to a link that does not exist (the root, an object reached by its cap).
    ReadOnly,
    /// A path or name that cannot be used (a bad cap after `/uri/`, NUL, too long, not UTF-8).
    BadPath,
    /// Too few servers answered or have room: reading or writing cannot be done now (or another
    /// client's write kept replacing what was being read).
    Unavailable,
    /// The object cannot be read: too few of its shares exist or verify, or a directory's
    /// contents are damaged.
    Gone,
    /// Other clients' writes of the same directory or file kept overtaking this change for the
    /// whole retry budget: try again later.
    Conflict,
    /// Past a size bound (an SDMF file's size, a quota, a copy's entry bound).
    TooLarge,
    /// Anything else (an unknown kind of object, a child an immutable directory cannot hold,
    /// reading the input failed).
    Other,
}

/// Why a file-system operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FsError {
    kind: FsErrorKind,
    message: String,
}

impl FsError {
    /// An error of `kind` with `message` (which must not hold a cap).
    pub fn new(kind: FsErrorKind, message: impl Into<String>) -> Self {
        FsError {
            kind,
            message: message.into(),
        }
    }

    /// The kind.
    pub fn kind(&self) -> FsErrorKind {
        self.kind
    }

    /// The message (never a cap).
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn bad_path(what: impl Into<String>) -> Self {
        Self::new(FsErrorKind::BadPath, what)
    }
}

impl From<NodeError> for FsError {
    fn from(e: NodeError) -> Self {
        let kind = match &e {
            NodeError::NoSuchChild(_) => FsErrorKind::NotFound,
            NodeError::ExistingChild(_) => FsErrorKind::Exists,
            NodeError::NotWritable(_) | NodeError::MarkedReadOnly(_) => FsErrorKind::ReadOnly,
            NodeError::NotADirectory(_) => FsErrorKind::NotADirectory,
            // Only "a file was in the way" of a directory path.
            NodeError::WrongType(_) => FsErrorKind::NotADirectory,
            NodeError::BadName { .. } => FsErrorKind::BadPath,
            NodeError::NotEnoughServers(_) | NodeError::VersionChanged(_) => FsErrorKind::Unavailable,
            NodeError::Unrecoverable(_) | NodeError::CorruptDirectory(_) => FsErrorKind::Gone,
            NodeError::Conflict(_) | NodeError::UncoordinatedWrite => FsErrorKind::Conflict,
            NodeError::BadChild(_)
            | NodeError::Unsupported(_)
            | NodeError::Input(_)
            | NodeError::BadOffset(_) => FsErrorKind::Other,
        };
        // NodeError's messages name children and reasons, never caps (a BadChild names a kind).
        FsError::new(kind, e.to_string())
    }
}
