//! The storage protocol's vocabulary, shared by the share store, the HTTPS server, the HTTPS client
//! and the grid client: request and response types, one error type, and the [`StorageClient`] trait
//! that every way of reaching a server implements (the in-process store and HTTPS alike, so one
//! conformance suite tests both).
//!
//! Semantics follow Tahoe-LAFS 1.20's storage server (tahoe-interfaces.md §1.4 and §2).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use bytes::Bytes;

use crate::StorageIndex;

/// A share number: 0..=255.
pub type ShareNum = u16;

/// Whether a share belongs to an immutable bucket or a mutable slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareKind {
    /// An immutable (CHK) share.
    Immutable,
    /// A mutable (SDMF/MDMF) share.
    Mutable,
}

/// The two lease secrets a client presents (32 bytes each; servers store only their BLAKE2b hashes).
#[derive(Clone, PartialEq, Eq)]
pub struct LeaseSecrets {
    /// Renews the lease.
    pub renew: [u8; 32],
    /// Would cancel the lease (no protocol operation uses it).
    pub cancel: [u8; 32],
}

impl std::fmt::Debug for LeaseSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseSecrets(..)")
    }
}

/// The secret that ties the writes of an immutable upload to the client that allocated it.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadSecret(pub Vec<u8>);

impl std::fmt::Debug for UploadSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSecret(..)")
    }
}

/// The per-server secret that authorizes writes to a mutable slot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WriteEnabler(pub [u8; 32]);

impl std::fmt::Debug for WriteEnabler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteEnabler(..)")
    }
}

/// A server's answer to `GET /storage/v1/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The largest immutable share the server would accept now (= available space).
    pub maximum_immutable_share_size: u64,
    /// The largest mutable share (a constant, as in Tahoe).
    pub maximum_mutable_share_size: u64,
    /// Bytes the server can still accept.
    pub available_space: u64,
    /// e.g. `tessera/0.0.0`.
    pub application_version: Vec<u8>,
}

/// The outcome of allocating immutable buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Every share number the server already holds for the storage index.
    pub already_have: BTreeSet<ShareNum>,
    /// The share numbers now open for upload with the presented upload secret.
    pub allocated: BTreeSet<ShareNum>,
    /// Why each share number asked for and not allocated (nor held) was refused, for the user's error
    /// message: e.g. another client's upload of it in progress, or no space. Tahoe's protocol refuses
    /// silently; Tessera's server sends these in `X-Tessera-Refused` headers beside the CBOR answer,
    /// so a Tahoe server's answer simply has none.
    pub refused: BTreeMap<ShareNum, String>,
}

impl Allocation {
    /// Why share `shnum`, asked for, was neither allocated nor held: the server's reason, when it
    /// gave one (a Tahoe server refuses silently).
    pub fn refusal(&self, shnum: ShareNum) -> StorageError {
        StorageError::Refused(
            self.refused
                .get(&shnum)
                .cloned()
                .unwrap_or_else(|| format!("share {shnum} was neither allocated nor held")),
        )
    }
}

/// The state of an immutable upload after a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProgress {
    /// Whether this write completed the share (it is now readable).
    pub complete: bool,
    /// Byte ranges still missing (end exclusive); empty when complete.
    pub required: Vec<Range<u64>>,
}

/// A test of a mutable share's current bytes: `share[offset..offset+size] == specimen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestVector {
    /// Start of the compared range.
    pub offset: u64,
    /// Length of the compared range.
    pub size: u64,
    /// The expected bytes (a missing share reads as empty).
    pub specimen: Vec<u8>,
}

/// A write into a mutable share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteVector {
    /// Where to write.
    pub offset: u64,
    /// What to write.
    pub data: Vec<u8>,
}

/// The tests and writes for one mutable share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestWriteVectors {
    /// All must pass (for every share) before any write happens.
    pub test: Vec<TestVector>,
    /// Applied in order when the tests pass.
    pub write: Vec<WriteVector>,
    /// Truncate or extend the share to this length after writing; 0 deletes it.
    pub new_length: Option<u64>,
}

/// A range to read from every existing share of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadVector {
    /// Start.
    pub offset: u64,
    /// Length.
    pub size: u64,
}

/// The answer to a read-test-write request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadTestWriteResult {
    /// Whether the tests passed (and so the writes happened).
    pub success: bool,
    /// For every share that existed before the request, the bytes of each read vector.
    pub data: BTreeMap<ShareNum, Vec<Vec<u8>>>,
}

/// What a server did when asked to remove a share as corrupt (a Tessera extension: Tahoe's
/// protocol cannot delete a share). The server removes a share only when its own check proves the
/// share corrupt (`server::share_check`); a client's word is never enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptShareRemoval {
    /// The server's check found the share corrupt, and it is gone: a good copy may be uploaded in
    /// its place.
    Removed {
        /// What the server's check found.
        problem: String,
    },
    /// The server could not prove the share corrupt (it may still be, in a way only the file's cap
    /// shows) and keeps it.
    Kept {
        /// Why.
        reason: String,
    },
}

/// What a server did with a whole small share sent in one request
/// ([`StorageClient::put_whole_share`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WholeShare {
    /// The share is stored, complete and readable, with the client's lease.
    Stored,
    /// The server already held this share, byte for byte the same; the client's lease is on it.
    AlreadyHeld,
}

/// The largest share [`StorageClient::put_whole_share`] sends in one request; a Tessera server
/// refuses longer bodies (413).
pub const WHOLE_SHARE_LIMIT: u64 = 1 << 20;

/// Every way a storage operation can fail. Each protocol maps these to its status codes in exactly
/// one place (`http::server` for HTTP).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// No such share, upload or slot.
    #[error("{0}")]
    NotFound(String),
    /// The upload exists but was opened with a different upload secret.
    #[error("the upload secret does not match the one the upload was allocated with")]
    UploadSecretMismatch,
    /// The share is complete, so its upload can no longer be aborted (a write to a complete share is
    /// `NotFound`, as in Tahoe: no upload is open for it).
    #[error("share {shnum} is already complete")]
    AlreadyComplete {
        /// The share number.
        shnum: ShareNum,
    },
    /// A write overlaps bytes already written with different content.
    #[error("write at offset {offset} conflicts with bytes already written")]
    Conflict {
        /// Where the conflicting write starts.
        offset: u64,
    },
    /// A write ends beyond the share's allocated size.
    #[error("write ending at {end} exceeds the allocated size of {allocated} bytes")]
    BeyondAllocation {
        /// End (exclusive) of the write.
        end: u64,
        /// The allocated size.
        allocated: u64,
    },
    /// The write enabler differs from the one stored with the slot.
    #[error("the write enabler does not match the one stored with this slot")]
    WriteEnablerMismatch,
    /// The server is read-only.
    #[error("this storage server is read-only")]
    ReadOnly,
    /// The server would not take a share (another client is uploading it, or there is no room),
    /// for the reason it gave.
    #[error("the storage server refused the share: {0}")]
    Refused(String),
    /// The server cannot hold this much. `needed` 0 means the disk filled while writing (ENOSPC,
    /// EDQUOT, EFBIG), which the server reports the same way as a refusal by `reserved_space`.
    #[error("{}", no_space_message(*needed, *available))]
    NoSpace {
        /// Bytes asked for.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The request is malformed (bad storage index, share number, secret, body or range).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The swissnum is missing or wrong.
    #[error("not authorized: wrong or missing swissnum")]
    Unauthorized,
    /// The server failed internally (disk error); the detail is logged, not sent.
    #[error("storage server error: {0}")]
    Internal(String),
    /// The server could not be reached or the connection broke (client side; transient).
    #[error("cannot reach the storage server: {0}")]
    Transport(String),
    /// The server did not answer in time (client side; transient).
    #[error("the storage server did not answer in time")]
    Timeout,
    /// The server answered something the protocol does not allow (client side).
    #[error("unexpected answer from the storage server: HTTP {status}: {message}")]
    Protocol {
        /// The HTTP status.
        status: u16,
        /// The body or a description.
        message: String,
    },
}

fn no_space_message(needed: u64, available: u64) -> String {
    if needed == 0 {
        "the storage server is full (its disk filled while writing)".to_owned()
    } else {
        format!("the storage server is full: {needed} bytes needed, {available} available")
    }
}

impl StorageError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StorageError::Transport(_) | StorageError::Timeout | StorageError::Internal(_)
        )
    }
}

/// A connection to one storage server, in process or over HTTPS.
#[async_trait::async_trait]
pub trait StorageClient: Send + Sync + std::fmt::Debug {
    /// `GET /storage/v1/version`.
    async fn version(&self) -> Result<VersionInfo, StorageError>;

    /// `POST /storage/v1/immutable/:si`: open uploads of `share_numbers`, each `allocated_size` bytes.
    async fn allocate_buckets(
        &self,
        storage_index: StorageIndex,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        share_numbers: &BTreeSet<ShareNum>,
        allocated_size: u64,
    ) -> Result<Allocation, StorageError>;

    /// `PATCH /storage/v1/immutable/:si/:shnum`: write `data` at `offset` of an open upload.
    async fn write_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError>;

    /// Whether [`StorageClient::write_share_allocating`] is one request (the server has Tessera's
    /// allocating write, as far as this client knows): an upload may then write before any
    /// allocation is answered.
    fn allocates_on_write(&self) -> bool {
        false
    }

    /// Writes `data` at `offset` of the upload of share `shnum` under `upload`, opening that upload
    /// first when none is open under this secret, as an allocation of this share alone
    /// (`allocated_size` bytes, with `lease`) does. A Tessera server does both in one request
    /// (`PATCH /storage/v1/immutable/:si/:shnum` with `X-Tessera-Allocate`); otherwise the
    /// allocation and the write are two ([`write_share_allocating_in_steps`]).
    /// [`StorageError::AlreadyComplete`] when the server holds the share;
    /// [`StorageError::Refused`] when it allocates nothing (another client's upload, no room).
    #[allow(clippy::too_many_arguments)]
    async fn write_share_allocating(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        allocated_size: u64,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError> {
        write_share_allocating_in_steps(
            self,
            storage_index,
            shnum,
            lease,
            upload,
            allocated_size,
            offset,
            data,
        )
        .await
    }

    /// `PUT /storage/v1/immutable/:si/:shnum/abort`.
    async fn abort_upload(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
    ) -> Result<(), StorageError>;

    /// `GET /storage/v1/{immutable,mutable}/:si/shares`: the share numbers held (empty if none).
    async fn list_shares(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
    ) -> Result<BTreeSet<ShareNum>, StorageError>;

    /// `GET /storage/v1/{immutable,mutable}/:si/:shnum` with `Range: bytes=offset-(offset+len-1)`:
    /// up to `len` bytes; fewer at the end of the share, none when `offset` is at or past the end.
    async fn read_share(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError>;

    /// `POST /storage/v1/{immutable,mutable}/:si/:shnum/corrupt`.
    async fn advise_corrupt_share(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<(), StorageError>;

    /// `POST /storage/v1/tessera/immutable/:si/:shnum/remove-corrupt` (a Tessera extension): asks
    /// the server to remove an immutable share that it can itself prove corrupt. A server without
    /// the extension (Tahoe) answers 404, which arrives as [`StorageError::NotFound`], as does a
    /// share the server does not hold.
    async fn remove_corrupt_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<CorruptShareRemoval, StorageError>;

    /// Stores immutable share `shnum` of `storage_index`, all of `data` (at most
    /// [`WHOLE_SHARE_LIMIT`] bytes), with the client's lease: allocation, write and close in one
    /// request where the server has Tessera's `PUT /storage/v1/tessera/immutable/:si/:shnum`, else
    /// as Tahoe's protocol does it ([`put_whole_share_in_steps`]). A share the server already
    /// holds counts only if it is byte for byte `data` ([`WholeShare::AlreadyHeld`]); a different
    /// one is [`StorageError::Conflict`].
    async fn put_whole_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        data: Bytes,
    ) -> Result<WholeShare, StorageError> {
        put_whole_share_in_steps(self, storage_index, shnum, lease, data).await
    }

    /// Opens connections in the background until `connections` are ready for requests at once
    /// (an upload about to write to this server in parallel), so that its writes do not wait for
    /// handshakes. A transport without connections does nothing.
    fn warm(&self, connections: usize) {
        let _ = connections;
    }

    /// `PUT /storage/v1/lease/:si`: add a lease or renew the one with the same renew secret.
    async fn add_or_renew_lease(
        &self,
        storage_index: StorageIndex,
        lease: &LeaseSecrets,
    ) -> Result<(), StorageError>;

    /// `POST /storage/v1/mutable/:si/read-test-write`.
    async fn read_test_write(
        &self,
        storage_index: StorageIndex,
        write_enabler: &WriteEnabler,
        lease: &LeaseSecrets,
        test_write_vectors: &BTreeMap<ShareNum, TestWriteVectors>,
        read_vector: &[ReadVector],
    ) -> Result<ReadTestWriteResult, StorageError>;
}

/// [`StorageClient::write_share_allocating`] as Tahoe's protocol does it: an allocation of share
/// `shnum`, then the write. A repeated allocation of an upload still open (another write of the same
/// upload made it) allocates nothing, and the write under the same secret goes ahead.
#[allow(clippy::too_many_arguments)]
pub async fn write_share_allocating_in_steps<C: StorageClient + ?Sized>(
    client: &C,
    storage_index: StorageIndex,
    shnum: ShareNum,
    lease: &LeaseSecrets,
    upload: &UploadSecret,
    allocated_size: u64,
    offset: u64,
    data: Bytes,
) -> Result<UploadProgress, StorageError> {
    let asked = BTreeSet::from([shnum]);
    let allocation = client
        .allocate_buckets(storage_index, lease, upload, &asked, allocated_size)
        .await?;
    if allocation.already_have.contains(&shnum) {
        return Err(StorageError::AlreadyComplete { shnum });
    }
    match client
        .write_share(storage_index, shnum, upload, offset, data)
        .await
    {
        Err(StorageError::NotFound(_) | StorageError::UploadSecretMismatch)
            if !allocation.allocated.contains(&shnum) =>
        {
            Err(allocation.refusal(shnum))
        }
        written => written,
    }
}

/// [`StorageClient::put_whole_share`] in Tahoe's requests: allocate, then write (which closes the
/// share), or, when the server already holds the share, read it back to compare.
pub async fn put_whole_share_in_steps<C: StorageClient + ?Sized>(
    client: &C,
    storage_index: StorageIndex,
    shnum: ShareNum,
    lease: &LeaseSecrets,
    data: Bytes,
) -> Result<WholeShare, StorageError> {
    let size = data.len() as u64;
    let upload = UploadSecret(rand::random::<[u8; 32]>().to_vec());
    let asked = BTreeSet::from([shnum]);
    let allocation = client
        .allocate_buckets(storage_index, lease, &upload, &asked, size)
        .await?;
    if allocation.allocated.contains(&shnum) {
        let written = client.write_share(storage_index, shnum, &upload, 0, data).await;
        return match written {
            Ok(progress) if progress.complete => Ok(WholeShare::Stored),
            Ok(_) => {
                let _ = client.abort_upload(storage_index, shnum, &upload).await;
                Err(StorageError::Protocol {
                    status: 200,
                    message: "the server took the whole share but says it is incomplete".to_owned(),
                })
            }
            Err(e) => {
                let _ = client.abort_upload(storage_index, shnum, &upload).await;
                Err(e)
            }
        };
    }
    if allocation.already_have.contains(&shnum) {
        let held = client
            .read_share(ShareKind::Immutable, storage_index, shnum, 0, size + 1)
            .await?;
        return if held == data {
            Ok(WholeShare::AlreadyHeld)
        } else {
            Err(StorageError::Conflict { offset: 0 })
        };
    }
    Err(allocation.refusal(shnum))
}
