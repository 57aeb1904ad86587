//! Shared helpers for Tessera's end-to-end tests: the in-process [`grid::TestGrid`], and locating
//! vector files and the reference material.

pub mod fuzz;
pub mod grid;

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: tests/ sits in the workspace")
        .to_path_buf()
}

/// The project's own committed vectors (`tests/vectors/`).
pub fn own_vectors() -> PathBuf {
    workspace_root().join("tests").join("vectors")
}

/// The shared reference material beside the checkout (`../shared`), if present. Tests that need it
/// are skipped with a message when it is absent; the project's own vectors cover the same ground.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TESSERA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root()
                .parent()
                .expect("invariant: the workspace has a parent")
                .join("shared")
        });
    dir.join("vectors").is_dir().then_some(dir)
}

/// Names a directory's owner can write (through the directory's own mutable file) that no path can
/// carry: what [`write_raw_children`] plants to test that listings survive them and that none of
/// them becomes a path.
pub const HOSTILE_NAMES: [&str; 8] = [
    "../escaped.txt",
    "/tmp/absolute.txt",
    "a/b",
    "",
    ".",
    "..",
    "nul\0name",
    "line\r\nbreak",
];

/// Replaces the children of the writable directory `dir` with `children` (name, read cap), packed
/// and written straight into the directory's mutable file: the names bypass every check
/// `DirNode` makes, as a hostile directory owner's would.
pub async fn write_raw_children(
    grid: &std::sync::Arc<filenode::grid::Grid>,
    dir: &filenode::cap::DirCap,
    children: &[(&str, &filenode::cap::Cap)],
) {
    let entries: Vec<filenode::dirnode::DirEntry> = children
        .iter()
        .map(|(name, cap)| filenode::dirnode::DirEntry {
            name: (*name).to_owned(),
            ro_uri: cap.to_string(),
            rw_uri: None,
            metadata_json: "{}".to_owned(),
        })
        .collect();
    filenode::node::FileNode::new(grid, dir.file().clone())
        .overwrite_bytes(filenode::dirnode::pack(&entries, None))
        .await
        .expect("the directory's mutable file takes the packed children");
}
