//! The share store: the synchronous core of a storage server, which keeps shares safe on disk with
//! Tahoe-LAFS 1.20's layout, container formats and semantics (tahoe-interfaces.md §1.4 and §2,
//! tahoe-formats.md §4.2 and §6.4). The HTTPS protocol (`crate::http`) is a façade over
//! [`StorageServer`]; [`LocalStorageClient`] is the in-process one.
//!
//! # Layout
//!
//! ```text
//! storage_dir/
//!   lock                                      held locked (flock) while a server has the directory open
//!   shares/<p>/<SI>/<shnum>                   complete shares (immutable or mutable containers)
//!   shares/<p>/<SI>/.tmp-<shnum>              scratch for the next version of a mutable share
//!   shares/incoming/<p>/<SI>/<shnum>          immutable uploads in progress; wiped at open
//!   corruption-advisories/<time>--<SI>-<shnum>
//!   leases.sled/                              the lease index (derived; rebuilt when in doubt)
//!   leases.clean                              present only between a clean shutdown and the next open
//! ```
//! `<p>` is the first two base32 characters of the 26-character `<SI>`.
//!
//! # Modules
//!
//! - `config`: [`StorageConfig`], [`ExpirationPolicy`], [`Clock`] and [`FakeClock`].
//! - `immutable`, `mutable`: the two container formats, each with its crash-safety rules; `container`
//!   tells them apart and gives the server one view of their leases; `lease`: lease records and
//!   secret hashing.
//! - `index`: the sled lease index, ordered by expiry, and when it is trusted.
//! - `store/`: [`StorageServer`] itself (`mod.rs`: opening, stripe locks, space, counters,
//!   corruption advisories) and its operations as Tahoe's server splits them: `reads` (either
//!   kind), `uploads` (immutable buckets), `slots` (mutable read-test-write), `leases` and `expiry`.
//!   `ranges`: written ranges of an upload; `advisory`: corruption reports; `fsutil`: paths and
//!   fsync helpers; `local`: [`LocalStorageClient`].
//! - `share_check`: what the server can prove about an immutable share on its own (its hashes
//!   against its contents); `remove_corrupt`: the Tessera extension that removes a share only when
//!   that check proves it corrupt.
//!
//! # Durability order
//!
//! Completing an immutable upload (the write that fills the last missing byte):
//! 1. fsync the incoming file (header, data, the uploader's lease, all written since allocation);
//! 2. create `shares/<p>/<SI>/` if needed, fsyncing each parent whose entries changed;
//! 3. add the lease's index entry;
//! 4. rename `incoming/<p>/<SI>/<shnum>` to `shares/<p>/<SI>/<shnum>`;
//! 5. fsync `shares/<p>/<SI>/`; only now does the write answer `complete`;
//! 6. remove the empty `incoming/<p>/<SI>/` and `incoming/<p>/`.
//!
//! Writing a mutable share (read-test-write), for each share written:
//! 1. add the new or renewed lease's index entry;
//! 2. copy the current container to `.tmp-<shnum>` (or create it), apply the writes, truncation or
//!    extension and the lease, fsync it;
//! 3. rename it over `<shnum>`, fsync `shares/<p>/<SI>/`;
//! 4. remove the renewed lease's old index entry.
//!
//! Deleting a share (new length 0, expiry of its last lease, or a removal as corrupt): unlink, fsync the directory, remove
//! its index entries, remove the SI directory if empty. Lease changes on shares that are not being
//! written happen in place, each followed by fdatasync, in the orders given in `immutable` and
//! `mutable`; an interrupted immutable lease change is repaired when the index is next rebuilt.
//!
//! A crash loses only unfinished uploads (whose clients never saw `complete`) and the write in flight
//! (old or new version, never a mix).
//!
//! # Locking
//!
//! Operations on one storage index are serialized by one of 64 stripe mutexes (chosen by the SI's
//! first byte), held across that operation's disk IO; different storage indexes mostly proceed in
//! parallel. Counters and the upload table sit behind one `std::sync::Mutex` that is held only for
//! bookkeeping, never across IO. The order is stripe → state, and stripe → an upload's file.
//! Reads hold the stripe only while opening the container.
//!
//! # Deliberate differences from Tahoe
//!
//! - `readonly` refuses mutable writes too (Tahoe accepts them: bug #390).
//! - `max_space` caps the bytes of share containers held (Tahoe has no such setting: #671). The
//!   advertised available space is `min(disk free − reserved, max_space − used) − pending uploads`,
//!   and growing mutable shares must fit it as well.
//! - A write past an upload's allocated size is `BeyondAllocation`, not an internal error.
//! - `new_length` larger than the share extends it with zeros (Tahoe only truncates).
//! - Expiry is driven by the lease index; the lease checker's cycle (`lease_checker.rs`) reads every
//!   share for Tahoe's figures (examined, would be recovered) and then runs that index-driven pass.

mod advisory;
mod config;
mod container;
mod fsutil;
mod immutable;
mod index;
mod lease;
mod lease_checker;
mod local;
mod mutable;
mod ranges;
mod remove_corrupt;
pub mod share_check;
mod stats;
mod store;
#[cfg(test)]
mod tests;
mod whole_share;

pub use advisory::CorruptionAdvisory;
pub use config::{
    Clock, ExpirationMode, ExpirationPolicy, FakeClock, StorageConfig, SystemClock, UPLOAD_IDLE_TIMEOUT,
    UPLOAD_TAKEOVER_AFTER,
};
pub use lease_checker::{ByKind, Counts, HISTORY, LeaseCheckerState, LeaseCycle, SpaceRecovered};
pub use local::LocalStorageClient;
pub use stats::{DiskStats, LATENCY_SAMPLES, Operation, OperationStats, PERCENTILES};
pub use store::{
    ExpirationReport, MAX_READ_VECTOR_ANSWER, ShareReader, StorageServer, StorageStats, StorageStatus,
};
