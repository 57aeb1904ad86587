//! The storage side of Tessera.
//!
//! A storage server keeps shares: opaque ciphertext blobs addressed by a [`StorageIndex`] and a share
//! number. It never sees a cap, a key or plaintext; this crate therefore depends on no other workspace
//! crate, and everything above it (filenode, frontends, node) may depend on it.
//!
//! - [`api`]: the protocol vocabulary and the [`StorageClient`] trait;
//! - [`base32`], [`StorageIndex`]: the primitives both sides of the wire share;
//! - [`server`] (feature `server`): the share store: containers on disk, leases, space, expiry;
//! - [`http`]: the HTTPS storage protocol — client always, server behind feature `server`;
//! - [`nurl`], [`tls`]: NURLs and the self-signed, SPKI-pinned TLS identity;
//! - [`testing`] (feature `server`): the conformance suite every [`StorageClient`] must pass.

pub mod api;
pub mod base32;
pub mod civil;
pub mod http;
pub mod nurl;
#[cfg(feature = "server")]
pub mod server;
mod storage_index;
#[cfg(feature = "server")]
pub mod testing;
pub mod tls;

pub use api::{ShareKind, ShareNum, StorageClient, StorageError};

pub use storage_index::{ParseStorageIndexError, StorageIndex};
