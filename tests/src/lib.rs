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
