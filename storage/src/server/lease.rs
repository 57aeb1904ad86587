//! Lease records as Tahoe stores them inside share containers (tahoe-interfaces.md §2.8).
//!
//! A lease is (owner number, renew secret, cancel secret, expiry in Unix seconds); mutable containers
//! also record the node id that accepted it. Version-1 containers hold the two secrets in clear;
//! version-2 containers (what Tahoe 1.17+ and Tessera write) hold their BLAKE2b-256 hashes, and a
//! presented secret is compared against the hash. Both are compared in constant time.
//!
//! The lease index (`index.rs`) names a lease by the BLAKE2b-256 of its renew secret (for v1 leases
//! the hash is computed from the stored plaintext), so no plaintext secret ever reaches it.

use std::time::{Duration, SystemTime};

use blake2::{Blake2b256, Digest};

/// Tahoe's fixed lease term (`DEFAULT_RENEWAL_TIME`): 31 days from the last add or renew.
pub(super) const LEASE_DURATION: Duration = Duration::from_secs(LEASE_DURATION_SECS);
/// [`LEASE_DURATION`] in seconds.
pub(super) const LEASE_DURATION_SECS: u64 = 31 * 24 * 60 * 60;

/// Size of an immutable lease record: owner, renew, cancel, expiry.
pub(super) const IMMUTABLE_LEASE_LEN: usize = 72;
/// Size of a mutable lease record: owner, expiry, renew, cancel, node id.
pub(super) const MUTABLE_LEASE_LEN: usize = 92;

/// BLAKE2b with a 32-byte digest (Python's `blake2b(secret, digest_size=32)`), as Tahoe hashes lease
/// secrets.
pub(super) fn hash_secret(secret: &[u8]) -> [u8; 32] {
    Blake2b256::digest(secret).into()
}

/// Constant-time equality (for secrets, their hashes and write enablers).
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seconds since the Unix epoch (0 for earlier times).
pub(super) fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The expiry of a lease added or renewed at `now`: now + 31 days, saturating at the u32 field.
pub(super) fn expiry_for_renewal_at(now: SystemTime) -> u32 {
    let secs = unix_secs(now).saturating_add(LEASE_DURATION_SECS);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// How a container stores lease secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SecretStorage {
    /// Version-1 containers: the secrets themselves.
    Plain,
    /// Version-2 containers: BLAKE2b-256 of each secret.
    Hashed,
}

impl SecretStorage {
    /// The bytes to store for `secret`.
    pub(super) fn store(self, secret: &[u8; 32]) -> [u8; 32] {
        match self {
            SecretStorage::Plain => *secret,
            SecretStorage::Hashed => hash_secret(secret),
        }
    }

    /// Whether a stored field matches a presented secret.
    pub(super) fn matches(self, stored: &[u8; 32], presented: &[u8; 32]) -> bool {
        ct_eq(stored, &self.store(presented))
    }

    /// The name of a lease in the lease index: the hash of its renew secret.
    pub(super) fn index_id(self, stored_renew: &[u8; 32]) -> [u8; 32] {
        match self {
            SecretStorage::Plain => hash_secret(stored_renew),
            SecretStorage::Hashed => *stored_renew,
        }
    }
}

/// One lease as stored (secrets in the container's [`SecretStorage`] form).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct LeaseRecord {
    /// Owner number; in mutable containers 0 marks an empty slot.
    pub(super) owner: u32,
    /// Stored renew secret (plain or hashed).
    pub(super) renew: [u8; 32],
    /// Stored cancel secret (plain or hashed).
    pub(super) cancel: [u8; 32],
    /// Expiry, Unix seconds.
    pub(super) expiry: u32,
    /// The node that accepted the lease (mutable containers only; zeros for immutable ones).
    pub(super) nodeid: [u8; 20],
}

impl std::fmt::Debug for LeaseRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets (v1 containers hold them in clear).
        f.debug_struct("LeaseRecord")
            .field("owner", &self.owner)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl LeaseRecord {
    /// A new lease for presented secrets.
    pub(super) fn new(
        storage: SecretStorage,
        owner: u32,
        renew: &[u8; 32],
        cancel: &[u8; 32],
        expiry: u32,
        nodeid: [u8; 20],
    ) -> Self {
        LeaseRecord {
            owner,
            renew: storage.store(renew),
            cancel: storage.store(cancel),
            expiry,
            nodeid,
        }
    }

    /// The 72-byte immutable form: `>L32s32sL` (owner, renew, cancel, expiry).
    pub(super) fn to_immutable(&self) -> [u8; IMMUTABLE_LEASE_LEN] {
        let mut out = [0u8; IMMUTABLE_LEASE_LEN];
        out[0..4].copy_from_slice(&self.owner.to_be_bytes());
        out[4..36].copy_from_slice(&self.renew);
        out[36..68].copy_from_slice(&self.cancel);
        out[68..72].copy_from_slice(&self.expiry.to_be_bytes());
        out
    }

    /// Parses the 72-byte immutable form.
    pub(super) fn from_immutable(bytes: &[u8; IMMUTABLE_LEASE_LEN]) -> Self {
        LeaseRecord {
            owner: be_u32(&bytes[0..4]),
            renew: be_array(&bytes[4..36]),
            cancel: be_array(&bytes[36..68]),
            expiry: be_u32(&bytes[68..72]),
            nodeid: [0; 20],
        }
    }

    /// The 92-byte mutable form: `>LL32s32s20s` (owner, expiry, renew, cancel, node id).
    pub(super) fn to_mutable(&self) -> [u8; MUTABLE_LEASE_LEN] {
        let mut out = [0u8; MUTABLE_LEASE_LEN];
        out[0..4].copy_from_slice(&self.owner.to_be_bytes());
        out[4..8].copy_from_slice(&self.expiry.to_be_bytes());
        out[8..40].copy_from_slice(&self.renew);
        out[40..72].copy_from_slice(&self.cancel);
        out[72..92].copy_from_slice(&self.nodeid);
        out
    }

    /// Parses the 92-byte mutable form.
    pub(super) fn from_mutable(bytes: &[u8; MUTABLE_LEASE_LEN]) -> Self {
        LeaseRecord {
            owner: be_u32(&bytes[0..4]),
            expiry: be_u32(&bytes[4..8]),
            renew: be_array(&bytes[8..40]),
            cancel: be_array(&bytes[40..72]),
            nodeid: be_array(&bytes[72..92]),
        }
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(be_array(bytes))
}

fn be_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake2b_256_known_answer() {
        // BLAKE2b-256("abc") from RFC 7693's reference implementation (digest length 32).
        assert_eq!(
            data_encoding::HEXLOWER.encode(&hash_secret(b"abc")),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
    }

    #[test]
    fn record_layouts_round_trip() {
        let record = LeaseRecord {
            owner: 7,
            renew: [1; 32],
            cancel: [2; 32],
            expiry: 0x0102_0304,
            nodeid: [3; 20],
        };
        let imm = record.to_immutable();
        assert_eq!(&imm[0..4], &[0, 0, 0, 7]);
        assert_eq!(&imm[68..72], &[1, 2, 3, 4]);
        let back = LeaseRecord::from_immutable(&imm);
        assert_eq!(back.renew, record.renew);
        assert_eq!(back.nodeid, [0; 20]);
        let mutable = record.to_mutable();
        assert_eq!(&mutable[4..8], &[1, 2, 3, 4]);
        assert_eq!(&mutable[72..92], &[3; 20]);
        assert_eq!(LeaseRecord::from_mutable(&mutable), record);
    }

    #[test]
    fn secrets_are_hashed_in_v2_and_plain_in_v1() {
        let secret = [9u8; 32];
        let hashed = SecretStorage::Hashed.store(&secret);
        assert_eq!(hashed, hash_secret(&secret));
        assert!(SecretStorage::Hashed.matches(&hashed, &secret));
        assert!(!SecretStorage::Hashed.matches(&secret, &secret));
        assert!(SecretStorage::Plain.matches(&secret, &secret));
        assert_eq!(
            SecretStorage::Plain.index_id(&secret),
            SecretStorage::Hashed.index_id(&hashed)
        );
        assert!(
            format!(
                "{:?}",
                LeaseRecord::new(SecretStorage::Plain, 1, &secret, &secret, 5, [0; 20])
            )
            .find("9, 9")
            .is_none()
        );
    }

    #[test]
    fn expiry_saturates() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX));
        assert_eq!(expiry_for_renewal_at(far), u32::MAX);
        assert_eq!(
            expiry_for_renewal_at(SystemTime::UNIX_EPOCH + Duration::from_secs(10)),
            10 + 31 * 86400
        );
    }
}
