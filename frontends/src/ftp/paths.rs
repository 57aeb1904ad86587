//! FTP paths to grid paths: the pure part of path resolution.
//!
//! libunftp hands the backend a path already joined with the session's working directory (which it
//! keeps as text, `..` and all). [`parse`] turns it into components with `.` dropped and `..`
//! applied, clamped at `/`: no path can leave the user's root. `/uri/CAP/rest` names `rest` below
//! any cap (Tahoe's SFTP and FTP convention); everything else starts at the user's root directory.

use std::path::{Component, Path};

use filenode::cap::Cap;

/// Where a path starts.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Base {
    /// The user's root directory.
    Root,
    /// A cap named in the path (`/uri/CAP/...`).
    Cap(Cap),
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Base::Root => f.write_str("Root"),
            // Never the cap itself: it is a secret.
            Base::Cap(cap) => write!(f, "Cap({})", cap.kind()),
        }
    }
}

/// A parsed path: a base and the child names below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GridPath {
    pub(crate) base: Base,
    pub(crate) names: Vec<String>,
}

impl GridPath {
    /// The parent and the last name, when the path names a child of something.
    pub(crate) fn split_last(&self) -> Option<(GridPath, &str)> {
        let (last, parent) = self.names.split_last()?;
        Some((
            GridPath {
                base: self.base.clone(),
                names: parent.to_vec(),
            },
            last.as_str(),
        ))
    }
}

/// Parses a path from libunftp (absolute or relative to `/`). Non-UTF-8 names cannot occur (the
/// control channel is UTF-8) and are refused with `None`.
pub(crate) fn parse(path: &Path) -> Option<GridPath> {
    let mut names: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                names.pop();
            }
            Component::Normal(name) => names.push(name.to_str()?.to_owned()),
        }
    }
    if names.len() >= 2
        && names[0] == "uri"
        && let Ok(cap) = Cap::parse(&names[1])
        && !matches!(cap, Cap::Unknown(_))
    {
        return Some(GridPath {
            base: Base::Cap(cap),
            names: names.split_off(2),
        });
    }
    Some(GridPath {
        base: Base::Root,
        names,
    })
}
