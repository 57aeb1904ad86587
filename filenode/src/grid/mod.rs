//! Talking to the grid: where shares go (and, with the grid issue, uploading to and downloading from
//! storage servers through `storage::StorageClient`).

pub mod placement;
