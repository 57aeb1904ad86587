//! Every web API error mapped to an HTTP status and a plain-text message, in one place (Tahoe's
//! `humanize_exception` table, tahoe-interfaces.md §3.7). Messages never contain a cap unless the
//! request did, and 5xx bodies never carry internal detail.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use filenode::cap::CapError;
use filenode::fs::{FsError, FsErrorKind};
use filenode::grid::upload::UploadError;
use filenode::immutable::DownloadError;
use filenode::node::NodeError;

use crate::counters::ErrorKind;

/// A failed web API request.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The cap in the URL does not parse.
    #[error("invalid cap: {0}")]
    BadCap(#[from] CapError),
    /// The cap is of a kind this operation does not handle yet.
    #[error("{0}")]
    Unsupported(String),
    /// A query parameter is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// Too few shares could be found or verified.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The upload could not be placed or encoded.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The request (a form field, a body) is larger than the gateway takes; the message says which
    /// bound it passed.
    #[error("{0}")]
    TooLarge(String),
    /// The uploads in progress hold all the spool space the gateway gives them.
    #[error("{0}")]
    SpoolFull(String),
    /// Reading the request body failed.
    #[error("reading the request body failed: {0}")]
    Body(String),
    /// A filesystem operation failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// An operation of the file-system layer (`filenode::fs`, beneath every frontend) failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The name is taken by something the operation cannot use (a file where a directory was
    /// to be made).
    #[error("{0}")]
    Conflict(String),
    /// The request is not allowed (a write through a read-only cap).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing here (a node without storage asked for `/storage`).
    #[error("{0}")]
    NotFound(String),
    /// Local IO (spool files) failed.
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadCap(_) | WebError::BadRequest(_) | WebError::Body(_) => StatusCode::BAD_REQUEST,
            WebError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::SpoolFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            WebError::Download(DownloadError::NotEnoughShares { .. }) => StatusCode::GONE,
            WebError::Download(DownloadError::CiphertextMismatch { .. }) => StatusCode::GONE,
            WebError::Download(DownloadError::RangeNotSatisfiable { .. }) => {
                StatusCode::RANGE_NOT_SATISFIABLE
            }
            WebError::Upload(UploadError::NotHappy { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Upload(UploadError::Encode(_)) => StatusCode::BAD_REQUEST,
            WebError::Upload(UploadError::Read(_)) => StatusCode::BAD_REQUEST,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            // The one mapping of the file-system layer's kinds, as Tahoe's `humanize_exception`
            // maps the same failures (and as the node layer's are mapped below).
            WebError::Fs(e) => match e.kind() {
                FsErrorKind::NotFound => StatusCode::NOT_FOUND,
                FsErrorKind::Exists | FsErrorKind::NotEmpty | FsErrorKind::Conflict => StatusCode::CONFLICT,
                FsErrorKind::ReadOnly => StatusCode::FORBIDDEN,
                FsErrorKind::NotADirectory
                | FsErrorKind::IsADirectory
                | FsErrorKind::BadPath
                | FsErrorKind::Other => StatusCode::BAD_REQUEST,
                FsErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                FsErrorKind::Gone => StatusCode::GONE,
                FsErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            },
            WebError::Node(e) => match e {
                NodeError::NoSuchChild(_) => StatusCode::NOT_FOUND,
                NodeError::ExistingChild(_)
                | NodeError::WrongType(_)
                | NodeError::UncoordinatedWrite
                | NodeError::Conflict(_) => StatusCode::CONFLICT,
                NodeError::NotWritable(_) | NodeError::MarkedReadOnly(_) => StatusCode::FORBIDDEN,
                NodeError::NotADirectory(_)
                | NodeError::BadName { .. }
                | NodeError::BadChild(_)
                | NodeError::Unsupported(_)
                | NodeError::Input(_)
                | NodeError::BadOffset(_) => StatusCode::BAD_REQUEST,
                NodeError::Unrecoverable(_) | NodeError::CorruptDirectory(_) => StatusCode::GONE,
                NodeError::NotEnoughServers(_) | NodeError::VersionChanged(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl WebError {
    /// Why the request failed, as the frontends' error figures count it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WebError::BadCap(_) | WebError::BadRequest(_) | WebError::Body(_) => ErrorKind::BadRequest,
            WebError::Unsupported(_) => ErrorKind::Unsupported,
            WebError::TooLarge(_) | WebError::SpoolFull(_) => ErrorKind::Quota,
            WebError::Download(DownloadError::RangeNotSatisfiable { .. }) => ErrorKind::BadRequest,
            WebError::Download(_) => ErrorKind::NotEnoughShares,
            WebError::Upload(UploadError::NotHappy { .. }) => ErrorKind::NotEnoughServers,
            WebError::Upload(_) => ErrorKind::BadRequest,
            WebError::Forbidden(_) => ErrorKind::Permission,
            WebError::NotFound(_) => ErrorKind::NotFound,
            WebError::Conflict(_) => ErrorKind::Conflict,
            WebError::Node(e) => ErrorKind::of_node(e),
            WebError::Fs(e) => ErrorKind::of_fs(e.kind()),
            WebError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let kind = self.kind();
        let message = match &self {
            WebError::Internal(detail) => {
                tracing::error!(%detail, "web request failed");
                "internal error; see the node's log".to_owned()
            }
            WebError::Node(NodeError::NotADirectory(name)) => {
                format!("Files have no children named {name:?}")
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{message}\n"),
        )
            .into_response();
        // For the access log's error figures (`metrics::access_log`).
        response.extensions_mut().insert(kind);
        response
    }
}
