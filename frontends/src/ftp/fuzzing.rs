//! Entry points for the fuzz targets (`tests/src/fuzz.rs`, run by the stable runner and by
//! cargo-fuzz under `fuzz/`): the FTP backend's path parsing (`paths.rs`, libunftp's path text
//! through the file-system layer's parser), which is crate-private.
//! Not an API: hidden from the docs, and nothing but the fuzz targets calls it.

use std::path::Path;

use filenode::fs::Base;

use super::paths;

/// Parses a path as the backend does (libunftp hands it the cwd-joined path). The names never
/// hold `/`, `.` or `..` (nothing climbs above the root), and a `/uri/CAP` base is a known cap.
#[doc(hidden)]
pub fn path(text: &str) {
    let Ok(parsed) = paths::parse(Path::new(text)) else {
        return;
    };
    assert!(
        parsed
            .names()
            .iter()
            .all(|n| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0']))
    );
    if let Base::Cap(cap) = parsed.base() {
        assert!(!matches!(cap, filenode::cap::Cap::Unknown(_)));
    }
    if let Some(parent) = parsed.parent() {
        assert_eq!(parent.names().len() + 1, parsed.names().len());
        assert!(!parsed.name().unwrap_or_default().is_empty());
    }
    if *parsed.base() == Base::Root {
        // The text form parses back to the same path.
        assert_eq!(paths::parse(Path::new(&parsed.to_text())).ok(), Some(parsed));
    }
}
