//! Client-side file logic of Tessera: everything between a user's bytes and the shares a storage
//! server holds.
//!
//! Pure modules (no IO, no async runtime): [`netstring`], [`hashes`], [`hashtree`], [`crypto`],
//! [`codec`], [`cap`], [`immutable::layout`], [`mutable::keys`]. Orchestration that touches shares goes
//! through traits ([`immutable::ShareSink`], [`immutable::ShareSource`]) so it runs over memory, disk
//! or the network alike.

pub mod cap;
pub mod codec;
pub mod crypto;
pub mod dirnode;
pub mod fs;
pub mod grid;
pub mod hashes;
pub mod hashtree;
pub mod immutable;
pub mod mutable;
pub mod netstring;
pub mod node;
pub mod operations;

pub use storage::{StorageIndex, base32};
