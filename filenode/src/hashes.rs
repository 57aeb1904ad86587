//! Tahoe's tagged SHA-256d hashes (tahoe-formats.md §1.3).
//!
//! Every hash in the formats is `sha256d(netstring(tag) || value)`, optionally truncated to 16 bytes
//! *after* the second SHA-256. Each derivation has its own function here so callers never spell a tag.

use sha2::{Digest, Sha256};

use crate::netstring::{netstring, write_netstring};

/// A 32-byte hash value.
pub type Hash = [u8; 32];

/// Hash tags, exactly as Tahoe spells them.
pub mod tags {
    #![allow(missing_docs)]
    pub const CONVERGENCE_PREFIX: &[u8] = b"allmydata_immutable_content_to_key_with_added_secret_v1+";
    pub const CHK_STORAGE_INDEX: &[u8] = b"allmydata_immutable_key_to_storage_index_v1";
    pub const BLOCK: &[u8] = b"allmydata_encoded_subshare_v1";
    pub const URI_EXTENSION: &[u8] = b"allmydata_uri_extension_v1";
    pub const PLAINTEXT: &[u8] = b"allmydata_plaintext_v1";
    pub const PLAINTEXT_SEGMENT: &[u8] = b"allmydata_plaintext_segment_v1";
    pub const CRYPTTEXT: &[u8] = b"allmydata_crypttext_v1";
    pub const CRYPTTEXT_SEGMENT: &[u8] = b"allmydata_crypttext_segment_v1";
    pub const MERKLE_INTERNAL: &[u8] = b"Merkle tree internal node";
    pub const MERKLE_EMPTY_LEAF: &[u8] = b"Merkle tree empty leaf";
    pub const SSK_WRITEKEY: &[u8] = b"allmydata_mutable_privkey_to_writekey_v1";
    pub const SSK_READKEY: &[u8] = b"allmydata_mutable_writekey_to_readkey_v1";
    pub const SSK_STORAGE_INDEX: &[u8] = b"allmydata_mutable_readkey_to_storage_index_v1";
    pub const SSK_PUBKEY_FINGERPRINT: &[u8] = b"allmydata_mutable_pubkey_to_fingerprint_v1";
    pub const SSK_DATAKEY: &[u8] = b"allmydata_mutable_readkey_to_datakey_v1";
    pub const WRITE_ENABLER_MASTER: &[u8] = b"allmydata_mutable_writekey_to_write_enabler_master_v1";
    pub const WRITE_ENABLER: &[u8] = b"allmydata_mutable_write_enabler_master_and_nodeid_to_write_enabler_v1";
    pub const DIRNODE_CHILD_SALT: &[u8] = b"allmydata_dirnode_child_rwcap_to_salt_v1";
    pub const DIRNODE_CHILD_KEY: &[u8] = b"allmydata_mutable_writekey_and_salt_to_dirnode_child_capkey_v1";
    pub const CLIENT_RENEWAL: &[u8] = b"allmydata_client_renewal_secret_v1";
    pub const CLIENT_CANCEL: &[u8] = b"allmydata_client_cancel_secret_v1";
    pub const FILE_RENEWAL: &[u8] = b"allmydata_file_renewal_secret_v1";
    pub const FILE_CANCEL: &[u8] = b"allmydata_file_cancel_secret_v1";
    pub const BUCKET_RENEWAL: &[u8] = b"allmydata_bucket_renewal_secret_v1";
    pub const BUCKET_CANCEL: &[u8] = b"allmydata_bucket_cancel_secret_v1";
    pub const MUTABLE_CONTAINER_HEADER: &[u8] = b"allmydata_mutable_container_header";
}

/// Plain SHA-256 (used for checksums, not in the share formats).
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// `SHA256(SHA256(data))`.
pub fn sha256d(data: &[u8]) -> Hash {
    Sha256::digest(Sha256::digest(data)).into()
}

/// An incremental `H(tag, ...)`, for values too large to hold in memory at once.
#[derive(Debug, Clone)]
pub struct TaggedHasher {
    inner: Sha256,
}

impl TaggedHasher {
    /// Starts `H(tag, ...)`.
    pub fn new(tag: &[u8]) -> Self {
        let mut inner = Sha256::new();
        inner.update(netstring(tag));
        TaggedHasher { inner }
    }

    /// Feeds more of the value.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    /// Finishes the double hash.
    pub fn finalize(self) -> Hash {
        Sha256::digest(self.inner.finalize()).into()
    }
}

/// `H(tag, value)`: `sha256d(netstring(tag) || value)`.
pub fn tagged_hash(tag: &[u8], value: &[u8]) -> Hash {
    let mut hasher = TaggedHasher::new(tag);
    hasher.update(value);
    hasher.finalize()
}

/// `Hpair(tag, a, b)`: `sha256d(netstring(tag) || netstring(a) || netstring(b))`.
pub fn tagged_pair_hash(tag: &[u8], a: &[u8], b: &[u8]) -> Hash {
    let mut buf = Vec::with_capacity(tag.len() + a.len() + b.len() + 24);
    write_netstring(&mut buf, tag);
    write_netstring(&mut buf, a);
    write_netstring(&mut buf, b);
    sha256d(&buf)
}

/// The first 16 bytes of a hash.
pub fn truncate16(hash: Hash) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

/// The tag under which a CHK file's convergent key is computed for these encoding parameters.
pub fn convergence_tag(convergence_secret: &[u8], needed: usize, total: usize, segment_size: u64) -> Vec<u8> {
    let mut tag = tags::CONVERGENCE_PREFIX.to_vec();
    write_netstring(&mut tag, convergence_secret);
    write_netstring(&mut tag, format!("{needed},{total},{segment_size}").as_bytes());
    tag
}

/// Starts the convergent-key hash of a CHK file; feed it the whole plaintext, then call
/// [`TaggedHasher::finalize`] and [`truncate16`].
pub fn convergence_hasher(
    convergence_secret: &[u8],
    needed: usize,
    total: usize,
    segment_size: u64,
) -> TaggedHasher {
    TaggedHasher::new(&convergence_tag(convergence_secret, needed, total, segment_size))
}

/// The convergent CHK key of `plaintext`.
pub fn convergence_hash(
    needed: usize,
    total: usize,
    segment_size: u64,
    plaintext: &[u8],
    convergence_secret: &[u8],
) -> [u8; 16] {
    let mut hasher = convergence_hasher(convergence_secret, needed, total, segment_size);
    hasher.update(plaintext);
    truncate16(hasher.finalize())
}

/// CHK storage index from the read key.
pub fn storage_index_hash(key: &[u8]) -> [u8; 16] {
    truncate16(tagged_hash(tags::CHK_STORAGE_INDEX, key))
}

/// Leaf of a share's block hash tree.
pub fn block_hash(block: &[u8]) -> Hash {
    tagged_hash(tags::BLOCK, block)
}

/// An MDMF block-tree leaf, `H(block-tag, salt || block)`, without concatenating them.
pub fn salted_block_hash(salt: &[u8; 16], block: &[u8]) -> Hash {
    let mut hasher = TaggedHasher::new(tags::BLOCK);
    hasher.update(salt);
    hasher.update(block);
    hasher.finalize()
}

/// Hash of the URI extension block (it goes into the CHK cap).
pub fn uri_extension_hash(ueb: &[u8]) -> Hash {
    tagged_hash(tags::URI_EXTENSION, ueb)
}

/// Defined by Tahoe but not stored anywhere in current formats.
pub fn plaintext_hash(data: &[u8]) -> Hash {
    tagged_hash(tags::PLAINTEXT, data)
}

/// Defined by Tahoe but not stored anywhere in current formats.
pub fn plaintext_segment_hash(data: &[u8]) -> Hash {
    tagged_hash(tags::PLAINTEXT_SEGMENT, data)
}

/// Hash of a file's whole ciphertext.
pub fn crypttext_hash(data: &[u8]) -> Hash {
    tagged_hash(tags::CRYPTTEXT, data)
}

/// Leaf of the ciphertext segment hash tree (over the unpadded segment).
pub fn crypttext_segment_hash(segment: &[u8]) -> Hash {
    tagged_hash(tags::CRYPTTEXT_SEGMENT, segment)
}

/// A client's master lease-renewal secret. Tag and value are swapped compared with every other hash.
pub fn my_renewal_secret_hash(lease_secret: &[u8]) -> Hash {
    tagged_hash(lease_secret, tags::CLIENT_RENEWAL)
}

/// A client's master lease-cancel secret. Tag and value are swapped compared with every other hash.
pub fn my_cancel_secret_hash(lease_secret: &[u8]) -> Hash {
    tagged_hash(lease_secret, tags::CLIENT_CANCEL)
}

/// Per-file lease renewal secret.
pub fn file_renewal_secret_hash(client_renewal_secret: &[u8], storage_index: &[u8]) -> Hash {
    tagged_pair_hash(tags::FILE_RENEWAL, client_renewal_secret, storage_index)
}

/// Per-file lease cancel secret.
pub fn file_cancel_secret_hash(client_cancel_secret: &[u8], storage_index: &[u8]) -> Hash {
    tagged_pair_hash(tags::FILE_CANCEL, client_cancel_secret, storage_index)
}

/// Per-server (bucket) lease renewal secret; `lease_seed` is the server's 20-byte id.
pub fn bucket_renewal_secret_hash(file_renewal_secret: &[u8], lease_seed: &[u8]) -> Hash {
    tagged_pair_hash(tags::BUCKET_RENEWAL, file_renewal_secret, lease_seed)
}

/// Per-server (bucket) lease cancel secret; `lease_seed` is the server's 20-byte id.
pub fn bucket_cancel_secret_hash(file_cancel_secret: &[u8], lease_seed: &[u8]) -> Hash {
    tagged_pair_hash(tags::BUCKET_CANCEL, file_cancel_secret, lease_seed)
}

/// SSK write key from the RSA private key's PKCS#8 DER.
pub fn ssk_writekey_hash(privkey_der: &[u8]) -> [u8; 16] {
    truncate16(tagged_hash(tags::SSK_WRITEKEY, privkey_der))
}

/// SSK read key from the write key.
pub fn ssk_readkey_hash(writekey: &[u8]) -> [u8; 16] {
    truncate16(tagged_hash(tags::SSK_READKEY, writekey))
}

/// SSK storage index from the read key.
pub fn ssk_storage_index_hash(readkey: &[u8]) -> [u8; 16] {
    truncate16(tagged_hash(tags::SSK_STORAGE_INDEX, readkey))
}

/// SSK public-key fingerprint from the SubjectPublicKeyInfo DER.
pub fn ssk_pubkey_fingerprint_hash(pubkey_der: &[u8]) -> Hash {
    tagged_hash(tags::SSK_PUBKEY_FINGERPRINT, pubkey_der)
}

/// Per-salt data key of a mutable file (salt first).
pub fn ssk_readkey_data_hash(salt: &[u8], readkey: &[u8]) -> [u8; 16] {
    truncate16(tagged_pair_hash(tags::SSK_DATAKEY, salt, readkey))
}

/// Write-enabler master secret from the write key.
pub fn ssk_write_enabler_master_hash(writekey: &[u8]) -> Hash {
    tagged_hash(tags::WRITE_ENABLER_MASTER, writekey)
}

/// Per-server write enabler, from the write key and the server's 20-byte id.
pub fn ssk_write_enabler_hash(writekey: &[u8], server_id: &[u8]) -> Hash {
    tagged_pair_hash(
        tags::WRITE_ENABLER,
        &ssk_write_enabler_master_hash(writekey),
        server_id,
    )
}

/// Dirnode child salt, derived from the child's read-write cap.
pub fn mutable_rwcap_salt_hash(child_rw_uri: &[u8]) -> [u8; 16] {
    truncate16(tagged_hash(tags::DIRNODE_CHILD_SALT, child_rw_uri))
}

/// Dirnode child cap key from the salt and the directory's write key.
pub fn mutable_rwcap_key_hash(salt: &[u8], dir_writekey: &[u8]) -> [u8; 16] {
    truncate16(tagged_pair_hash(tags::DIRNODE_CHILD_KEY, salt, dir_writekey))
}

/// The permuted-ring position of a server for a storage index: `SHA1(SI || seed)`.
pub fn permute_server_hash(storage_index: &[u8], permutation_seed: &[u8]) -> [u8; 20] {
    use sha1::{Digest as _, Sha1};
    let mut hasher = Sha1::new();
    hasher.update(storage_index);
    hasher.update(permutation_seed);
    hasher.finalize().into()
}

/// The first five bytes of a v2 mutable container's magic.
pub fn mutable_container_v2_magic() -> [u8; 5] {
    let hash = tagged_hash(tags::MUTABLE_CONTAINER_HEADER, b"Tahoe mutable container v2\n");
    [hash[0], hash[1], hash[2], hash[3], hash[4]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_happens_after_the_second_hash() {
        let full = tagged_hash(tags::CHK_STORAGE_INDEX, b"key");
        assert_eq!(storage_index_hash(b"key"), full[..16]);
    }

    #[test]
    fn container_magic_matches_the_spec() {
        assert_eq!(mutable_container_v2_magic(), [0xc3, 0x55, 0x21, 0x99, 0x25]);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut hasher = TaggedHasher::new(tags::CRYPTTEXT);
        for chunk in data.chunks(777) {
            hasher.update(chunk);
        }
        assert_eq!(hasher.finalize(), crypttext_hash(&data));
    }
}
