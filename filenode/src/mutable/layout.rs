//! SDMF and MDMF share data (tahoe-formats.md §6.2–6.3): parsing and verification against a read
//! cap. Pure: no IO. [`ShareHeader`] and the hash-list parsers are what the servermap and the
//! reader (`grid::mutable`) use on the bytes they fetch; [`MutableShare`] parses and verifies a
//! whole share at once (tests, the fuzz targets and debugging tools). Decoding a version is the
//! reader's: `grid::mutable::retrieve`.

use std::collections::BTreeMap;

use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;

use crate::cap::MutableFormat;
use crate::hashes::{Hash, block_hash, salted_block_hash, ssk_pubkey_fingerprint_hash};
use crate::hashtree;

/// Why a mutable share cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutableShareError {
    /// The bytes end before a field.
    #[error("share is truncated")]
    Truncated,
    /// Neither SDMF (0) nor MDMF (1).
    #[error("unknown mutable share version {0}")]
    UnknownVersion(u8),
    /// Offsets point outside the share or backwards.
    #[error("share offsets are inconsistent")]
    BadOffsets,
    /// The verification key does not hash to the cap's fingerprint.
    #[error("verification key does not match the cap's fingerprint")]
    FingerprintMismatch,
    /// The RSA-PSS signature over the header does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A block, block tree or share hash chain does not verify.
    #[error("hash tree does not verify: {0}")]
    HashTree(String),
}

/// One parsed mutable share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableShare {
    /// SDMF or MDMF.
    pub format: MutableFormat,
    /// The version number.
    pub seqnum: u64,
    /// Root of the share hash tree.
    pub root_hash: Hash,
    /// k.
    pub needed: u8,
    /// N.
    pub total: u8,
    /// Segment size.
    pub segment_size: u64,
    /// Plaintext length.
    pub data_length: u64,
    /// SubjectPublicKeyInfo DER of the RSA key.
    pub verification_key: Vec<u8>,
    /// RSA-PSS signature over the signed prefix.
    pub signature: Vec<u8>,
    /// The signed prefix of the header.
    pub signed_prefix: Vec<u8>,
    /// (node index, hash) of the share hash chain (siblings only).
    pub share_hash_chain: BTreeMap<usize, Hash>,
    /// All nodes of this share's block hash tree.
    pub block_hash_tree: Vec<Hash>,
    /// Per segment: the salt and this share's block.
    pub blocks: Vec<([u8; 16], Vec<u8>)>,
    /// The private key, encrypted with the write key.
    pub encrypted_private_key: Vec<u8>,
}

fn take(bytes: &[u8], start: u64, end: u64) -> Result<&[u8], MutableShareError> {
    if start > end {
        return Err(MutableShareError::BadOffsets);
    }
    bytes
        .get(start as usize..end as usize)
        .ok_or(MutableShareError::Truncated)
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| c.try_into().expect("invariant: 32-byte chunk"))
        .collect()
}

fn chain(bytes: &[u8]) -> BTreeMap<usize, Hash> {
    bytes
        .chunks_exact(34)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]) as usize,
                c[2..].try_into().expect("invariant: 32 bytes"),
            )
        })
        .collect()
}

fn next_multiple(n: u64, k: u64) -> u64 {
    n.div_ceil(k) * k
}

impl MutableShare {
    /// Parses share data of either format.
    pub fn parse(bytes: &[u8]) -> Result<Self, MutableShareError> {
        match bytes.first() {
            Some(0) => Self::parse_sdmf(bytes),
            Some(1) => Self::parse_mdmf(bytes),
            Some(other) => Err(MutableShareError::UnknownVersion(*other)),
            None => Err(MutableShareError::Truncated),
        }
    }

    fn parse_sdmf(bytes: &[u8]) -> Result<Self, MutableShareError> {
        let header = take(bytes, 0, 107)?;
        let salt: [u8; 16] = header[41..57].try_into().expect("invariant: 16 bytes");
        let (needed, total) = (header[57], header[58]);
        let offsets: Vec<u64> = (0..4)
            .map(|i| be(&header[75 + 4 * i..79 + 4 * i]))
            .chain((0..2).map(|i| be(&header[91 + 8 * i..99 + 8 * i])))
            .collect();
        let [
            signature,
            share_hash_chain,
            block_hash_tree,
            share_data,
            enc_privkey,
            eof,
        ] = <[u64; 6]>::try_from(offsets).expect("invariant: six offsets");
        let block = take(bytes, share_data, enc_privkey)?.to_vec();
        Ok(MutableShare {
            format: MutableFormat::Sdmf,
            seqnum: be(&header[1..9]),
            root_hash: header[9..41].try_into().expect("invariant: 32 bytes"),
            needed,
            total,
            segment_size: be(&header[59..67]),
            data_length: be(&header[67..75]),
            verification_key: take(bytes, 107, signature)?.to_vec(),
            signature: take(bytes, signature, share_hash_chain)?.to_vec(),
            signed_prefix: header[..75].to_vec(),
            share_hash_chain: chain(take(bytes, share_hash_chain, block_hash_tree)?),
            block_hash_tree: hashes(take(bytes, block_hash_tree, share_data)?),
            blocks: vec![(salt, block)],
            encrypted_private_key: take(bytes, enc_privkey, eof)?.to_vec(),
        })
    }

    fn parse_mdmf(bytes: &[u8]) -> Result<Self, MutableShareError> {
        let header = take(bytes, 0, 123)?;
        let (needed, total) = (header[41], header[42]);
        if needed == 0 || needed > total {
            return Err(MutableShareError::BadOffsets);
        }
        let offsets: Vec<u64> = (0..8).map(|i| be(&header[59 + 8 * i..67 + 8 * i])).collect();
        let [
            enc_privkey,
            share_hash_chain,
            signature,
            verification_key,
            verification_key_end,
            share_data,
            block_hash_tree,
            eof,
        ] = <[u64; 8]>::try_from(offsets).expect("invariant: eight offsets");
        let segment_size = be(&header[43..51]);
        let data_length = be(&header[51..59]);
        let k = u64::from(needed);
        if segment_size == 0 || !segment_size.is_multiple_of(k) {
            return Err(MutableShareError::BadOffsets);
        }
        let num_segments = data_length.div_ceil(segment_size);
        let data = take(bytes, share_data, block_hash_tree)?;
        let mut blocks = Vec::new();
        let mut at = 0usize;
        for segnum in 0..num_segments {
            let plain = (data_length - segnum * segment_size).min(segment_size);
            let block_len = (next_multiple(plain, k) / k) as usize;
            let salt: [u8; 16] = data
                .get(at..at + 16)
                .ok_or(MutableShareError::Truncated)?
                .try_into()
                .expect("16");
            let block = data
                .get(at + 16..at + 16 + block_len)
                .ok_or(MutableShareError::Truncated)?
                .to_vec();
            at += 16 + block_len;
            blocks.push((salt, block));
        }
        Ok(MutableShare {
            format: MutableFormat::Mdmf,
            seqnum: be(&header[1..9]),
            root_hash: header[9..41].try_into().expect("invariant: 32 bytes"),
            needed,
            total,
            segment_size,
            data_length,
            verification_key: take(bytes, verification_key, verification_key_end)?.to_vec(),
            signature: take(bytes, signature, verification_key)?.to_vec(),
            signed_prefix: header[..59].to_vec(),
            share_hash_chain: chain(take(bytes, share_hash_chain, signature)?),
            block_hash_tree: hashes(take(bytes, block_hash_tree, eof)?),
            blocks,
            encrypted_private_key: take(bytes, enc_privkey, share_hash_chain)?.to_vec(),
        })
    }

    /// Verifies share `shnum` against the cap's fingerprint: the key's fingerprint, the signature
    /// over the header, every block against the block hash tree, and the block tree root against
    /// the signed root hash through the share hash chain.
    pub fn verify(&self, shnum: usize, fingerprint: &Hash) -> Result<(), MutableShareError> {
        if &ssk_pubkey_fingerprint_hash(&self.verification_key) != fingerprint {
            return Err(MutableShareError::FingerprintMismatch);
        }
        let key = rsa::RsaPublicKey::from_public_key_der(&self.verification_key)
            .map_err(|_| MutableShareError::BadSignature)?;
        let verifier = rsa::pss::VerifyingKey::<sha2::Sha256>::new(key);
        let signature = rsa::pss::Signature::try_from(self.signature.as_slice())
            .map_err(|_| MutableShareError::BadSignature)?;
        verifier
            .verify(&self.signed_prefix, &signature)
            .map_err(|_| MutableShareError::BadSignature)?;
        let leaves: Vec<Hash> = self
            .blocks
            .iter()
            .map(|(salt, block)| match self.format {
                MutableFormat::Sdmf => block_hash(block),
                MutableFormat::Mdmf => salted_block_hash(salt, block),
            })
            .collect();
        let tree_leaves = hashtree::verify_full_tree(
            leaves.len(),
            &self.block_hash_tree,
            self.block_hash_tree.first().unwrap_or(&[0; 32]),
        )
        .map_err(|e| MutableShareError::HashTree(format!("block hash tree: {e}")))?;
        if tree_leaves != leaves {
            return Err(MutableShareError::HashTree(
                "a block does not match its hash".into(),
            ));
        }
        hashtree::verify_leaf(
            self.total as usize,
            shnum,
            &self.block_hash_tree[0],
            &self.share_hash_chain,
            &self.root_hash,
        )
        .map_err(|e| MutableShareError::HashTree(format!("share hash chain: {e}")))
    }
}

const SDMF_HEADER_LEN: u64 = 107;
const MDMF_HEADER_LEN: u64 = 123;

/// Where the parts of a mutable share lie, from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareOffsets {
    /// The verification key.
    pub verification_key: u64,
    /// End of the verification key.
    pub verification_key_end: u64,
    /// The signature.
    pub signature: u64,
    /// End of the signature.
    pub signature_end: u64,
    /// The share hash chain.
    pub share_hash_chain: u64,
    /// End of the share hash chain.
    pub share_hash_chain_end: u64,
    /// The block hash tree.
    pub block_hash_tree: u64,
    /// The share data (blocks; salts too for MDMF).
    pub share_data: u64,
    /// The encrypted private key.
    pub enc_privkey: u64,
    /// End of the encrypted private key.
    pub enc_privkey_end: u64,
    /// End of the share.
    pub eof: u64,
}

/// A mutable share's header: the version it claims and where its parts are. Enough to plan reads;
/// nothing in it is trusted until [`ShareHeader::verify_signature`] passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeader {
    /// SDMF or MDMF.
    pub format: MutableFormat,
    /// The version number.
    pub seqnum: u64,
    /// Root of the share hash tree.
    pub root_hash: Hash,
    /// SDMF's IV (zeros for MDMF).
    pub sdmf_salt: [u8; 16],
    /// k.
    pub needed: u8,
    /// N.
    pub total: u8,
    /// Segment size.
    pub segment_size: u64,
    /// Plaintext length.
    pub data_length: u64,
    /// The signed bytes.
    pub signed_prefix: Vec<u8>,
    /// Where the parts lie.
    pub offsets: ShareOffsets,
}

impl ShareHeader {
    /// How many leading bytes of a share [`ShareHeader::parse`] needs.
    pub fn header_len(first_byte: u8) -> usize {
        if first_byte == 0 { 107 } else { 123 }
    }

    /// Parses the header of either format from the first bytes of a share.
    pub fn parse(bytes: &[u8]) -> Result<Self, MutableShareError> {
        let version = *bytes.first().ok_or(MutableShareError::Truncated)?;
        let header = match version {
            0 | 1 => take(bytes, 0, Self::header_len(version) as u64)?,
            other => return Err(MutableShareError::UnknownVersion(other)),
        };
        let mut parsed = if version == 0 {
            let o: Vec<u64> = (0..4)
                .map(|i| be(&header[75 + 4 * i..79 + 4 * i]))
                .chain((0..2).map(|i| be(&header[91 + 8 * i..99 + 8 * i])))
                .collect();
            ShareHeader {
                format: MutableFormat::Sdmf,
                seqnum: be(&header[1..9]),
                root_hash: header[9..41].try_into().expect("invariant: 32 bytes"),
                sdmf_salt: header[41..57].try_into().expect("invariant: 16 bytes"),
                needed: header[57],
                total: header[58],
                segment_size: be(&header[59..67]),
                data_length: be(&header[67..75]),
                signed_prefix: header[..75].to_vec(),
                offsets: ShareOffsets {
                    verification_key: 107,
                    verification_key_end: o[0],
                    signature: o[0],
                    signature_end: o[1],
                    share_hash_chain: o[1],
                    share_hash_chain_end: o[2],
                    block_hash_tree: o[2],
                    share_data: o[3],
                    enc_privkey: o[4],
                    enc_privkey_end: o[5],
                    eof: o[5],
                },
            }
        } else {
            let o: Vec<u64> = (0..8).map(|i| be(&header[59 + 8 * i..67 + 8 * i])).collect();
            ShareHeader {
                format: MutableFormat::Mdmf,
                seqnum: be(&header[1..9]),
                root_hash: header[9..41].try_into().expect("invariant: 32 bytes"),
                sdmf_salt: [0; 16],
                needed: header[41],
                total: header[42],
                segment_size: be(&header[43..51]),
                data_length: be(&header[51..59]),
                signed_prefix: header[..59].to_vec(),
                offsets: ShareOffsets {
                    enc_privkey: o[0],
                    enc_privkey_end: o[1],
                    share_hash_chain: o[1],
                    share_hash_chain_end: o[2],
                    signature: o[2],
                    signature_end: o[3],
                    verification_key: o[3],
                    verification_key_end: o[4],
                    share_data: o[5],
                    block_hash_tree: o[6],
                    eof: o[7],
                },
            }
        };
        let o = &parsed.offsets;
        // The offsets are not signed: every part must follow the one before, in the format's order.
        let order: Vec<u64> = match parsed.format {
            MutableFormat::Sdmf => vec![
                SDMF_HEADER_LEN,
                o.verification_key_end,
                o.signature_end,
                o.share_hash_chain_end,
                o.share_data,
                o.enc_privkey,
                o.eof,
            ],
            MutableFormat::Mdmf => vec![
                MDMF_HEADER_LEN,
                o.enc_privkey_end,
                o.share_hash_chain_end,
                o.signature_end,
                o.verification_key_end,
                o.share_data,
                o.block_hash_tree,
                o.eof,
            ],
        };
        let start_ok = match parsed.format {
            MutableFormat::Sdmf => true,
            MutableFormat::Mdmf => o.enc_privkey == MDMF_HEADER_LEN,
        };
        let k = u64::from(parsed.needed);
        if parsed.needed == 0
            || parsed.needed > parsed.total
            || !start_ok
            || order.windows(2).any(|w| w[0] > w[1])
            || o.eof > (1 << 46)
            || (parsed.format == MutableFormat::Mdmf
                && (parsed.segment_size == 0 || !parsed.segment_size.is_multiple_of(k)))
        {
            return Err(MutableShareError::BadOffsets);
        }
        parsed.offsets.eof = o.eof;
        Ok(parsed)
    }

    /// The version this share claims: (seqnum, root hash).
    pub fn version(&self) -> (u64, Hash) {
        (self.seqnum, self.root_hash)
    }

    /// Checks the verification key (found at `self.offsets` in `bytes`, the share's first bytes)
    /// against the cap's fingerprint and the signature over the header.
    pub fn verify_signature(&self, bytes: &[u8], fingerprint: &Hash) -> Result<(), MutableShareError> {
        let o = &self.offsets;
        let key = take(bytes, o.verification_key, o.verification_key_end)?;
        let signature = take(bytes, o.signature, o.signature_end)?;
        if &ssk_pubkey_fingerprint_hash(key) != fingerprint {
            return Err(MutableShareError::FingerprintMismatch);
        }
        let key = rsa::RsaPublicKey::from_public_key_der(key).map_err(|_| MutableShareError::BadSignature)?;
        let signature =
            rsa::pss::Signature::try_from(signature).map_err(|_| MutableShareError::BadSignature)?;
        rsa::pss::VerifyingKey::<sha2::Sha256>::new(key)
            .verify(&self.signed_prefix, &signature)
            .map_err(|_| MutableShareError::BadSignature)
    }

    /// How many leading bytes hold everything but the blocks and block tree (MDMF) or the whole
    /// share (SDMF): what a servermap query wants to have read.
    pub fn fixed_region_end(&self) -> u64 {
        match self.format {
            MutableFormat::Sdmf => self.offsets.eof,
            MutableFormat::Mdmf => self.offsets.share_data,
        }
    }
}

/// Parses a share hash chain (u16 index, 32-byte hash pairs).
pub fn parse_chain(bytes: &[u8]) -> BTreeMap<usize, Hash> {
    chain(bytes)
}

/// Parses a serialized hash tree.
pub fn parse_hashes(bytes: &[u8]) -> Vec<Hash> {
    hashes(bytes)
}
