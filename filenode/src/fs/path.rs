//! Paths: the one parser every frontend's path text goes through.
//!
//! A path is absolute from the user's root directory (relative text starts there too). Empty
//! segments and `.` are dropped; `..` removes the name before it and at the root stays at the root,
//! so no path leaves the root (it is clamped before anything else is looked at: `/uri/CAP/..` is
//! `/uri`, the root's child named `uri`). Names are NFC-normalised UTF-8.
//!
//! `/uri/CAP/rest` names `rest` below any cap (Tahoe's SFTP and FTP convention: holding a cap is
//! the authority to use it). **A path whose first name is `uri` and that has a second name always
//! names a cap**: when the second name is not a cap this version can open, the path is refused
//! ([`FsErrorKind::BadPath`](super::FsErrorKind::BadPath)), as Tahoe's SFTP server does (and
//! Tessera's, which parses its paths here). (Tessera's FTP server took `/uri/not-a-cap` for the child
//! `not-a-cap` of a root child named `uri`; that made one path mean two things depending on what
//! the text after `uri/` happens to parse as, and a cap's typo silently wrote under the root.)
//! `/uri` alone is the root's child named `uri`.

use unicode_normalization::UnicodeNormalization;

use super::FsError;
use crate::cap::Cap;

/// The longest path text accepted, in bytes (a cap after `/uri/` is at most a few hundred).
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest name accepted, in bytes of UTF-8 (Unix file systems take 255; Tahoe directories
/// hold longer names, which other clients may have written).
pub const MAX_NAME_BYTES: usize = 1024;

/// Where a path starts.
#[derive(Clone, PartialEq, Eq)]
pub enum Base {
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

/// A parsed path: where it starts and the child names below it (each NFC, non-empty, without
/// `/` or NUL, not `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsPath {
    base: Base,
    names: Vec<String>,
}

impl FsPath {
    /// The user's root directory.
    pub fn root() -> Self {
        FsPath {
            base: Base::Root,
            names: Vec::new(),
        }
    }

    /// Parses path text (already decoded: no percent escapes).
    pub fn parse(text: &str) -> Result<Self, FsError> {
        if text.len() > MAX_PATH_BYTES {
            return Err(FsError::bad_path(format!(
                "the path is longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        // A frontend that decodes names lossily marks what was not UTF-8 so: it names nothing
        // (Tahoe: #1089), rather than a different name.
        if text.contains('\u{FFFD}') {
            return Err(FsError::bad_path("the path is not UTF-8"));
        }
        if text.contains('\0') {
            return Err(FsError::bad_path("the path contains NUL"));
        }
        let mut names: Vec<String> = Vec::new();
        for segment in text.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    names.pop();
                }
                name => names.push(check_name(name)?),
            }
        }
        if names.len() >= 2 && names[0] == "uri" {
            let cap = match Cap::parse(&names[1]) {
                Ok(Cap::Unknown(_)) | Err(_) => {
                    return Err(FsError::bad_path(
                        "after /uri/ comes a cap, and this is not one this version can open",
                    ));
                }
                Ok(cap) => cap,
            };
            return Ok(FsPath {
                base: Base::Cap(cap),
                names: names.split_off(2),
            });
        }
        Ok(FsPath {
            base: Base::Root,
            names,
        })
    }

    /// The path `names` below `cap`, for a protocol whose requests carry the cap apart from the
    /// names (the web API's `/uri/$CAP/a/b`, whose URL holds the cap in a segment of its own; any
    /// cap, also one this version cannot open: what it is shows when the path is followed). Each
    /// name is checked as [`FsPath::parse`] checks names, and more strictly, as a name is given
    /// whole here: an empty name, `.`, `..`, a `/`, NUL or U+FFFD is refused (it is not resolved
    /// or dropped), and so is one longer than [`MAX_NAME_BYTES`] or names longer than
    /// [`MAX_PATH_BYTES`] together.
    pub fn at_cap<S: AsRef<str>>(cap: Cap, names: &[S]) -> Result<Self, FsError> {
        let total: usize = names.iter().map(|n| n.as_ref().len() + 1).sum();
        if total > MAX_PATH_BYTES {
            return Err(FsError::bad_path(format!(
                "the path is longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        let mut checked = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_ref();
            if let Some(why) = crate::node::unusable_as_path(name) {
                return Err(FsError::bad_path(format!(
                    "a name in the path cannot be used: {why}"
                )));
            }
            if name.contains('\u{FFFD}') {
                return Err(FsError::bad_path("the path is not UTF-8"));
            }
            checked.push(check_name(name)?);
        }
        Ok(FsPath {
            base: Base::Cap(cap),
            names: checked,
        })
    }

    /// Where the path starts.
    pub fn base(&self) -> &Base {
        &self.base
    }

    /// The names below the base.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The last name, unless the path is its base.
    pub fn name(&self) -> Option<&str> {
        self.names.last().map(String::as_str)
    }

    /// The path of the parent, unless the path is its base.
    pub fn parent(&self) -> Option<FsPath> {
        let (_, parent) = self.names.split_last()?;
        Some(FsPath {
            base: self.base.clone(),
            names: parent.to_vec(),
        })
    }

    /// The child `name` of this path.
    pub fn join(&self, name: &str) -> Result<FsPath, FsError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(FsError::bad_path("not a usable name"));
        }
        let mut names = self.names.clone();
        names.push(check_name(name)?);
        Ok(FsPath {
            base: self.base.clone(),
            names,
        })
    }

    /// Whether `self` is `other` or below it (same base, `other`'s names a prefix of ours).
    pub fn is_within(&self, other: &FsPath) -> bool {
        self.base == other.base && self.names.starts_with(&other.names)
    }

    /// The path as text: `/a/b`, or `/uri/CAP/a` (which holds the cap: show it only to the user
    /// whose path it is, never in a log or an error).
    pub fn to_text(&self) -> String {
        let mut text = match &self.base {
            Base::Root => String::new(),
            Base::Cap(cap) => format!("/uri/{cap}"),
        };
        for name in &self.names {
            text.push('/');
            text.push_str(name);
        }
        if text.is_empty() {
            text.push('/');
        }
        text
    }
}

/// Checks and normalises one name of a path.
fn check_name(name: &str) -> Result<String, FsError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(FsError::bad_path(format!(
            "a name is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(name.nfc().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

    use super::*;
    use crate::fs::FsErrorKind;

    fn names(text: &str) -> Vec<String> {
        FsPath::parse(text).unwrap().names().to_vec()
    }

    #[test]
    fn dots_resolve_and_stay_under_the_root() {
        assert_eq!(names("/a/./b/../c"), ["a", "c"]);
        assert!(names("../../..").is_empty());
        assert_eq!(names("/../a/../../b"), ["b"]);
        assert_eq!(names("a//b/"), ["a", "b"]);
        assert_eq!(FsPath::parse(".").unwrap(), FsPath::root());
        assert_eq!(FsPath::parse("x/y/..").unwrap().to_text(), "/x");
        assert_eq!(FsPath::root().to_text(), "/");
    }

    #[test]
    fn names_are_nfc_and_bounded() {
        // "é" as e + combining acute becomes the one code point.
        assert_eq!(names("/caf\u{65}\u{301}"), ["caf\u{e9}"]);
        let kind = |text: &str| FsPath::parse(text).unwrap_err().kind();
        assert_eq!(kind("/bad\u{FFFD}name"), FsErrorKind::BadPath);
        assert_eq!(kind("/a\0b"), FsErrorKind::BadPath);
        assert_eq!(
            kind(&format!("/{}", "n".repeat(MAX_NAME_BYTES + 1))),
            FsErrorKind::BadPath
        );
        assert_eq!(kind(&"/a".repeat(MAX_PATH_BYTES)), FsErrorKind::BadPath);
        assert_eq!(names(&format!("/{}", "n".repeat(MAX_NAME_BYTES))).len(), 1);
    }

    #[test]
    fn uri_paths_name_caps_and_only_caps() {
        let path = FsPath::parse("/uri/URI:LIT:mfrgg/x").unwrap();
        assert!(matches!(path.base(), Base::Cap(_)));
        assert_eq!(path.names(), ["x"]);
        assert_eq!(path.to_text(), "/uri/URI:LIT:mfrgg/x");
        // The cap never shows in Debug.
        assert!(!format!("{path:?}").contains("mfrgg"));
        // `/uri` alone is a child of the root; `/uri/CAP/..` is that child too.
        assert_eq!(FsPath::parse("/uri").unwrap().names(), ["uri"]);
        assert_eq!(FsPath::parse("/uri/URI:LIT:mfrgg/..").unwrap().names(), ["uri"]);
        // The decision: a second name that is not a cap is refused, never taken for a child.
        for text in ["/uri/not-a-cap", "/uri/not-a-cap/x", "/uri/URI:NOPE:x"] {
            assert_eq!(
                FsPath::parse(text).unwrap_err().kind(),
                FsErrorKind::BadPath,
                "{text}"
            );
        }
        // The message never repeats what was given.
        assert!(
            !FsPath::parse("/uri/URI:NOPE:x")
                .unwrap_err()
                .to_string()
                .contains("NOPE")
        );
    }

    #[test]
    fn paths_at_a_cap_take_names_whole() {
        let cap = Cap::parse("URI:LIT:mfrgg").unwrap();
        let path = FsPath::at_cap(cap.clone(), &["a", "caf\u{65}\u{301}"]).unwrap();
        assert_eq!(path.base(), &Base::Cap(cap.clone()));
        assert_eq!(path.names(), ["a", "caf\u{e9}"]);
        assert!(
            FsPath::at_cap::<&str>(cap.clone(), &[])
                .unwrap()
                .names()
                .is_empty()
        );
        // Nothing is resolved or dropped: each of these is refused.
        for bad in ["", ".", "..", "a/b", "nul\0", "bad\u{FFFD}"] {
            assert_eq!(
                FsPath::at_cap(cap.clone(), &["x", bad]).unwrap_err().kind(),
                FsErrorKind::BadPath,
                "{bad:?}"
            );
        }
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            FsPath::at_cap(cap.clone(), &[long.as_str()]).unwrap_err().kind(),
            FsErrorKind::BadPath
        );
        let many = vec!["n".repeat(1000); 5];
        assert_eq!(
            FsPath::at_cap(cap, &many).unwrap_err().kind(),
            FsErrorKind::BadPath
        );
    }

    #[test]
    fn parent_join_and_within() {
        let path = FsPath::parse("/a/b").unwrap();
        assert_eq!(path.name(), Some("b"));
        assert_eq!(path.parent().unwrap().names(), ["a"]);
        assert_eq!(FsPath::root().parent(), None);
        assert_eq!(path.join("c").unwrap().names(), ["a", "b", "c"]);
        assert!(path.join("..").is_err());
        assert!(path.join("x/y").is_err());
        assert!(path.join("c").unwrap().is_within(&path));
        assert!(
            !FsPath::parse("/ab")
                .unwrap()
                .is_within(&FsPath::parse("/a").unwrap())
        );
    }
}
