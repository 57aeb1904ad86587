//! Mutable files on the grid: the servermap (which servers hold which shares of which versions),
//! retrieve (read a version with full verification, fetching only the segments a range needs) and
//! publish (write a new version with test-and-set writes, so that a concurrent writer is detected
//! instead of silently overwritten).
//!
//! Publishing writes the *primary* share (the first one in ring order) before any other: its
//! test-and-set write is the point where two writers that started from the same version are
//! ordered, so the loser fails there, having written nothing. (Only a new slot's publish skips it:
//! no one else can know the slot. A publish from the map of this client's own last write used to
//! skip it too, and then raced a writer that read that version: both could fail, or the loser's
//! leftovers, of a higher seqnum, hid the winner's acknowledged version.) Large MDMF writes go in batches; the
//! first batch replaces the share's checkstring with an in-progress marker (the new seqnum and an
//! all-zero root, which no signature covers), later batches test for that marker, and the last
//! writes the signed header.
//!
//! The work is split as Tahoe splits it: [`servermap`] (which servers hold which shares of which
//! versions), [`retrieve`] (reading a version), [`publish`] (writing a whole new version, and
//! where its bytes come from) and [`update`] (an MDMF write at an offset, re-encoding only the
//! segments it touches). Everything public is re-exported here, so `grid::mutable::X` names
//! every part.

use storage::api::ShareKind;
use storage::{ShareNum, StorageError, StorageIndex};

use super::ServerEntry;
use crate::mutable::layout::MutableShareError;

pub mod publish;
pub mod retrieve;
pub mod servermap;
pub mod update;

pub use publish::{
    ChunkSource, Published, WriteContext, chunks_from_bytes, chunks_from_read, fetch_private_key,
    private_key_from, publish, set_atomic_write_limit,
};
pub use retrieve::{MutableReader, open_latest, read_latest};
pub use servermap::{
    LocatedShare, MapMode, ServerMap, VersionId, update_servermap, update_servermap_reported,
};
pub use update::{MAX_WRITE_GAP, checked_write_range, update_mdmf};

/// Why a mutable operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MutableError {
    /// Fewer than k good shares of any version.
    #[error("the file cannot be read: no version has enough good shares ({0})")]
    Unrecoverable(String),
    /// No shares at all on any server that answered.
    #[error("no shares of this mutable file were found ({0} servers answered)")]
    NotFound(usize),
    /// Another writer replaced the version being read before it could be read whole. Nothing of
    /// it was wrong; reading again from a fresh servermap finds the new version.
    #[error("the file changed while it was being read (another client wrote a new version); read it again")]
    VersionChanged,
    /// Too few servers answered to be sure which version is the latest (one that a writer was
    /// told is written may be on the servers that did not answer).
    #[error("the latest version of the file cannot be known: {0}")]
    Unavailable(String),
    /// Another writer changed the file while we were writing.
    #[error(
        "uncoordinated write: another client changed this mutable file at the same time; the other \
         write won (re-read the file and try again)"
    )]
    UncoordinatedWrite,
    /// Too few servers accepted the new version.
    #[error("only {written} shares of the new version could be written (at least {needed} needed): {detail}")]
    NotEnoughServers {
        /// Distinct shares written.
        written: usize,
        /// k.
        needed: usize,
        /// What went wrong.
        detail: String,
    },
    /// The new version reached too few servers for every reader to be sure to find it.
    #[error(
        "the new version reached only {reached} servers ({required} needed so that every reader \
         finds it): {detail}"
    )]
    TooFewServers {
        /// Distinct servers holding a share of the new version.
        reached: usize,
        /// `happy`, or every server queried when fewer.
        required: usize,
        /// What went wrong.
        detail: String,
    },
    /// The cap cannot do this (read-only or verify cap).
    #[error("this cap is read-only")]
    ReadOnly,
    /// The share's encrypted private key does not belong to the write cap.
    #[error("the file's signing key does not match the write cap")]
    BadPrivateKey,
    /// SDMF files cannot be partially updated.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A write at an offset too far past the end, or past what a file can hold.
    #[error("{0}")]
    BadOffset(String),
    /// A share failed verification in a way that leaves no alternative.
    #[error("share verification failed: {0}")]
    Share(#[from] MutableShareError),
}

async fn read_mutable(
    server: &ServerEntry,
    storage_index: StorageIndex,
    shnum: ShareNum,
    offset: u64,
    len: u64,
) -> Result<bytes::Bytes, StorageError> {
    server
        .timed(
            super::QUICK_DEADLINE,
            len.min(MAX_READ_ESTIMATE),
            server
                .client
                .read_share(ShareKind::Mutable, storage_index, shnum, offset, len),
        )
        .await
}

/// The most bytes a read is expected to move when it asks "to the end" (`u64::MAX`): for its
/// deadline only.
const MAX_READ_ESTIMATE: u64 = 64 << 20;
