//! The storage side of Tessera.
//!
//! A storage server keeps shares: opaque ciphertext blobs addressed by a [`StorageIndex`] and a share
//! number. It never sees a cap, a key or plaintext; this crate therefore depends on no other workspace
//! crate, and everything above it (filenode, frontends, node) may depend on it.
//!
//! For now the crate holds the two primitives that both sides of the wire share: Tahoe's base32
//! alphabet and the storage index type. The share store and the HTTP storage protocol arrive with the
//! storage-server issue.

pub mod base32;
mod storage_index;

pub use storage_index::{ParseStorageIndexError, StorageIndex};
