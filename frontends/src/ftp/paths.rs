//! libunftp's paths as the file-system layer's: libunftp hands the backend a path already joined
//! with the session's working directory (which it keeps as text, `..` and all); the layer's one
//! parser ([`FsPath::parse`]) drops `.`, applies `..` clamped at `/`, normalises names to NFC and
//! reads `/uri/CAP/...` (a second name after `uri` that is not a cap is refused, never taken for a
//! child: see `filenode::fs::path`).

use std::path::Path;

use filenode::fs::{FsError, FsErrorKind, FsPath};

/// Parses a path from libunftp. libunftp decodes the control channel lossily, so a name that was
/// not UTF-8 arrives holding U+FFFD, which the layer refuses.
pub(crate) fn parse(path: &Path) -> Result<FsPath, FsError> {
    let text = path
        .to_str()
        .ok_or_else(|| FsError::new(FsErrorKind::BadPath, "the path is not UTF-8"))?;
    FsPath::parse(text)
}
