//! Building SDMF and MDMF share data (tahoe-formats.md §6.2–6.3): encryption with per-segment
//! salts, erasure coding, block and share hash trees, the signed header. Pure: no IO.
//!
//! A version is built in two steps so that large MDMF files can be streamed: segments are encoded
//! one at a time ([`encode_segment`]), and once every share's block-tree leaves are known,
//! [`VersionBuilder::finish`] computes the share hash tree, signs the header and lays out each
//! share's fixed region.

use std::collections::BTreeMap;

use rsa::signature::RandomizedSigner;

use crate::cap::MutableFormat;
use crate::codec::Codec;
use crate::crypto::aes_ctr_at;
use crate::hashes::{Hash, block_hash, salted_block_hash, ssk_readkey_data_hash};
use crate::hashtree::{self, HashTree};
use crate::mutable::keys::MutableKey;

/// MDMF's maximum segment size before rounding up to a multiple of k.
pub const MDMF_SEGMENT_SIZE: u64 = 131_072;

/// Where MDMF share data starts: Tahoe reserves room for the largest key, chain, signature and
/// verification key, so the header region has a fixed size.
pub const MDMF_SHARE_DATA_OFFSET: u64 = 2167;

/// The size of an MDMF header (before the encrypted private key).
pub const MDMF_HEADER_SIZE: u64 = 123;

/// The size of an SDMF header (before the verification key).
pub const SDMF_HEADER_SIZE: u64 = 107;

/// How many bytes of a share identify its version in test-and-set writes (the "checkstring").
pub fn checkstring_len(format: MutableFormat) -> usize {
    match format {
        MutableFormat::Sdmf => 57,
        MutableFormat::Mdmf => 41,
    }
}

fn next_multiple(n: u64, k: u64) -> u64 {
    n.div_ceil(k) * k
}

/// The shape of one version of a mutable file: segment and block sizes, and where everything lies
/// in a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutableGeometry {
    /// SDMF or MDMF.
    pub format: MutableFormat,
    /// k.
    pub needed: u8,
    /// N.
    pub total: u8,
    /// Segment size (a multiple of k).
    pub segment_size: u64,
    /// Plaintext length.
    pub data_length: u64,
}

impl MutableGeometry {
    /// The geometry Tahoe uses for a new version of `data_length` bytes.
    pub fn new(format: MutableFormat, needed: u8, total: u8, data_length: u64) -> Self {
        let k = u64::from(needed);
        let segment_size = match format {
            MutableFormat::Sdmf => next_multiple(data_length, k),
            MutableFormat::Mdmf => next_multiple(MDMF_SEGMENT_SIZE, k),
        };
        MutableGeometry {
            format,
            needed,
            total,
            segment_size,
            data_length,
        }
    }

    /// Number of segments (SDMF always has one, even when empty).
    pub fn num_segments(&self) -> u64 {
        match self.format {
            MutableFormat::Sdmf => 1,
            MutableFormat::Mdmf => self.data_length.div_ceil(self.segment_size),
        }
    }

    /// Plaintext bytes in segment `segnum`.
    pub fn segment_len(&self, segnum: u64) -> u64 {
        (self.data_length - (segnum * self.segment_size).min(self.data_length)).min(self.segment_size)
    }

    /// Bytes of one share's block of segment `segnum` (without the MDMF salt).
    pub fn block_len(&self, segnum: u64) -> u64 {
        let k = u64::from(self.needed);
        next_multiple(self.segment_len(segnum), k) / k
    }

    /// Offset of segment `segnum`'s entry (salt, then block, for MDMF) within an MDMF share.
    pub fn mdmf_block_offset(&self, segnum: u64) -> u64 {
        let full = 16 + self.segment_size / u64::from(self.needed);
        MDMF_SHARE_DATA_OFFSET + segnum * full
    }

    /// Offset of the MDMF block hash tree (right after the last block).
    pub fn mdmf_tree_offset(&self) -> u64 {
        let n = self.num_segments();
        if n == 0 {
            return MDMF_SHARE_DATA_OFFSET;
        }
        self.mdmf_block_offset(n - 1) + 16 + self.block_len(n - 1)
    }

    /// Length of a share's block hash tree in bytes.
    pub fn tree_len(&self) -> u64 {
        hashtree::node_count(self.num_segments() as usize) as u64 * 32
    }

    /// The segments holding plaintext bytes `offset..offset+len` (empty for an empty range).
    pub fn segments_for(&self, offset: u64, len: u64) -> std::ops::Range<u64> {
        if len == 0 || offset >= self.data_length || self.segment_size == 0 {
            return 0..0;
        }
        let end = (offset + len).min(self.data_length);
        offset / self.segment_size..end.div_ceil(self.segment_size)
    }
}

/// One encoded segment: every share's block and its block-tree leaf.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    /// The segment's salt (for SDMF, the file's IV).
    pub salt: [u8; 16],
    /// Block of each share, indexed by share number.
    pub blocks: Vec<Vec<u8>>,
    /// Block-tree leaf of each share.
    pub leaves: Vec<Hash>,
}

/// Encrypts and erasure-codes one segment of plaintext.
pub fn encode_segment(
    geometry: &MutableGeometry,
    codec: &Codec,
    readkey: &[u8; 16],
    salt: [u8; 16],
    plaintext: &[u8],
) -> EncodedSegment {
    let k = usize::from(geometry.needed);
    let mut data = plaintext.to_vec();
    aes_ctr_at(&ssk_readkey_data_hash(&salt, readkey), 0, &mut data);
    data.resize(next_multiple(data.len() as u64, k as u64) as usize, 0);
    let piece = data.len() / k;
    let blocks = if piece == 0 {
        vec![Vec::new(); usize::from(geometry.total)]
    } else {
        let pieces: Vec<&[u8]> = (0..k).map(|i| &data[i * piece..(i + 1) * piece]).collect();
        codec.encode(&pieces)
    };
    let leaves = blocks
        .iter()
        .map(|block| match geometry.format {
            MutableFormat::Sdmf => block_hash(block),
            MutableFormat::Mdmf => salted_block_hash(&salt, block),
        })
        .collect();
    EncodedSegment { salt, blocks, leaves }
}

/// A block hash tree, also for zero leaves (an empty MDMF file: one padding leaf, as Tahoe).
pub fn block_tree(leaves: &[Hash]) -> Vec<Hash> {
    if leaves.is_empty() {
        vec![hashtree::empty_leaf_hash(0)]
    } else {
        HashTree::new(leaves).nodes().to_vec()
    }
}

/// The signed, per-share fixed parts of a version.
#[derive(Debug, Clone)]
pub struct FinishedVersion {
    /// The version number.
    pub seqnum: u64,
    /// Root of the share hash tree.
    pub root_hash: Hash,
    /// Every share's header region: for MDMF bytes `0..MDMF_SHARE_DATA_OFFSET`; for SDMF the
    /// whole share (header, key, signature, chain, tree, block, encrypted key).
    pub headers: Vec<Vec<u8>>,
    /// The new checkstring every share carries.
    pub checkstring: Vec<u8>,
}

/// Everything needed to sign and lay out a version once the blocks are known.
#[derive(Debug)]
pub struct VersionBuilder<'a> {
    /// The file's signing key.
    pub key: &'a MutableKey,
    /// The shape.
    pub geometry: MutableGeometry,
    /// The version number.
    pub seqnum: u64,
    /// SDMF's IV (the salt of its one segment); ignored for MDMF.
    pub sdmf_salt: [u8; 16],
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&(value as u32).to_be_bytes());
}

fn chain_bytes(chain: &BTreeMap<usize, Hash>) -> Vec<u8> {
    let mut out = Vec::with_capacity(chain.len() * 34);
    for (index, hash) in chain {
        out.extend_from_slice(&(*index as u16).to_be_bytes());
        out.extend_from_slice(hash);
    }
    out
}

impl VersionBuilder<'_> {
    /// Signs the version whose share `i` has block hash tree `trees[i]` (all nodes) and lays out
    /// each share's fixed region. For SDMF, `sdmf_blocks` holds every share's one block.
    pub fn finish(&self, trees: &[Vec<Hash>], sdmf_blocks: Option<&[Vec<u8>]>) -> FinishedVersion {
        let g = &self.geometry;
        let roots: Vec<Hash> = trees.iter().map(|t| t[0]).collect();
        let share_tree = HashTree::new(&roots);
        let root_hash = share_tree.root();
        let mut prefix = Vec::with_capacity(75);
        match g.format {
            MutableFormat::Sdmf => {
                prefix.push(0);
                put_u64(&mut prefix, self.seqnum);
                prefix.extend_from_slice(&root_hash);
                prefix.extend_from_slice(&self.sdmf_salt);
            }
            MutableFormat::Mdmf => {
                prefix.push(1);
                put_u64(&mut prefix, self.seqnum);
                prefix.extend_from_slice(&root_hash);
            }
        }
        let checkstring = prefix.clone();
        prefix.push(g.needed);
        prefix.push(g.total);
        put_u64(&mut prefix, g.segment_size);
        put_u64(&mut prefix, g.data_length);
        let signing = rsa::pss::SigningKey::<sha2::Sha256>::new(self.key.private_key().clone());
        let signature: Box<[u8]> = signing.sign_with_rng(&mut rand::rng(), &prefix).into();
        let verification_key = self.key.pubkey_der();
        let mut enc_privkey = self.key.privkey_der().to_vec();
        aes_ctr_at(&self.key.writekey(), 0, &mut enc_privkey);
        let headers = (0..usize::from(g.total))
            .map(|shnum| {
                let chain: BTreeMap<usize, Hash> = hashtree::needed_hashes(usize::from(g.total), shnum)
                    .into_iter()
                    .map(|i| (i, share_tree.node(i)))
                    .collect();
                let chain = chain_bytes(&chain);
                match g.format {
                    MutableFormat::Sdmf => {
                        let block = &sdmf_blocks.expect("invariant: SDMF versions pass their blocks")[shnum];
                        sdmf_share(
                            &prefix,
                            verification_key,
                            &signature,
                            &chain,
                            &trees[shnum],
                            block,
                            &enc_privkey,
                        )
                    }
                    MutableFormat::Mdmf => {
                        mdmf_header(g, &prefix, verification_key, &signature, &chain, &enc_privkey)
                    }
                }
            })
            .collect();
        FinishedVersion {
            seqnum: self.seqnum,
            root_hash,
            headers,
            checkstring,
        }
    }
}

fn sdmf_share(
    prefix: &[u8],
    verification_key: &[u8],
    signature: &[u8],
    chain: &[u8],
    tree: &[Hash],
    block: &[u8],
    enc_privkey: &[u8],
) -> Vec<u8> {
    let o_signature = SDMF_HEADER_SIZE + verification_key.len() as u64;
    let o_chain = o_signature + signature.len() as u64;
    let o_tree = o_chain + chain.len() as u64;
    let o_data = o_tree + 32 * tree.len() as u64;
    let o_privkey = o_data + block.len() as u64;
    let o_eof = o_privkey + enc_privkey.len() as u64;
    let mut out = Vec::with_capacity(o_eof as usize);
    out.extend_from_slice(prefix);
    for offset in [o_signature, o_chain, o_tree, o_data] {
        put_u32(&mut out, offset);
    }
    put_u64(&mut out, o_privkey);
    put_u64(&mut out, o_eof);
    out.extend_from_slice(verification_key);
    out.extend_from_slice(signature);
    out.extend_from_slice(chain);
    for node in tree {
        out.extend_from_slice(node);
    }
    out.extend_from_slice(block);
    out.extend_from_slice(enc_privkey);
    out
}

fn mdmf_header(
    g: &MutableGeometry,
    prefix: &[u8],
    verification_key: &[u8],
    signature: &[u8],
    chain: &[u8],
    enc_privkey: &[u8],
) -> Vec<u8> {
    let o_privkey = MDMF_HEADER_SIZE;
    let o_chain = o_privkey + enc_privkey.len() as u64;
    let o_signature = o_chain + chain.len() as u64;
    let o_vk = o_signature + signature.len() as u64;
    let o_vk_end = o_vk + verification_key.len() as u64;
    assert!(
        o_vk_end <= MDMF_SHARE_DATA_OFFSET,
        "invariant: an RSA-2048 key, its signature and chain fit the reserved header"
    );
    let o_tree = g.mdmf_tree_offset();
    let o_eof = o_tree + g.tree_len();
    let mut out = Vec::with_capacity(MDMF_SHARE_DATA_OFFSET as usize);
    out.extend_from_slice(prefix);
    for offset in [
        o_privkey,
        o_chain,
        o_signature,
        o_vk,
        o_vk_end,
        MDMF_SHARE_DATA_OFFSET,
        o_tree,
        o_eof,
    ] {
        put_u64(&mut out, offset);
    }
    out.extend_from_slice(enc_privkey);
    out.extend_from_slice(chain);
    out.extend_from_slice(signature);
    out.extend_from_slice(verification_key);
    out.resize(MDMF_SHARE_DATA_OFFSET as usize, 0);
    out
}

/// The serialized block hash tree.
pub fn tree_bytes(tree: &[Hash]) -> Vec<u8> {
    tree.concat()
}

/// A whole version in memory: every share's complete data. For small files and tests; the
/// publisher streams large MDMF files segment by segment instead.
pub fn encode_version(
    key: &MutableKey,
    format: MutableFormat,
    needed: u8,
    total: u8,
    seqnum: u64,
    plaintext: &[u8],
) -> (FinishedVersion, Vec<Vec<u8>>) {
    let geometry = MutableGeometry::new(format, needed, total, plaintext.len() as u64);
    let codec = Codec::new(usize::from(needed), usize::from(total)).expect("invariant: 1 <= k <= N <= 255");
    let readkey = crate::hashes::ssk_readkey_hash(&key.writekey());
    let segments: Vec<EncodedSegment> = (0..geometry.num_segments())
        .map(|segnum| {
            let start = (segnum * geometry.segment_size) as usize;
            let end = start + geometry.segment_len(segnum) as usize;
            encode_segment(
                &geometry,
                &codec,
                &readkey,
                rand::random(),
                &plaintext[start..end],
            )
        })
        .collect();
    let trees: Vec<Vec<Hash>> = (0..usize::from(total))
        .map(|shnum| block_tree(&segments.iter().map(|s| s.leaves[shnum]).collect::<Vec<_>>()))
        .collect();
    let builder = VersionBuilder {
        key,
        geometry,
        seqnum,
        sdmf_salt: segments.first().map_or([0; 16], |s| s.salt),
    };
    let sdmf_blocks: Option<Vec<Vec<u8>>> = (format == MutableFormat::Sdmf).then(|| {
        (0..usize::from(total))
            .map(|i| segments[0].blocks[i].clone())
            .collect()
    });
    let finished = builder.finish(&trees, sdmf_blocks.as_deref());
    let shares = (0..usize::from(total))
        .map(|shnum| match format {
            MutableFormat::Sdmf => finished.headers[shnum].clone(),
            MutableFormat::Mdmf => {
                let mut share = finished.headers[shnum].clone();
                for segment in &segments {
                    share.extend_from_slice(&segment.salt);
                    share.extend_from_slice(&segment.blocks[shnum]);
                }
                share.extend_from_slice(&tree_bytes(&trees[shnum]));
                share
            }
        })
        .collect();
    (finished, shares)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutable::layout::{MutableShare, ShareHeader};

    fn key() -> MutableKey {
        MutableKey::generate().expect("keygen")
    }

    /// (That the encoded versions decode, through the production retrieve path, is
    /// `tests/e2e/mutable.rs`'s `encoded_versions_decode_through_retrieve`.)
    #[test]
    fn encoded_versions_verify_in_both_formats() {
        let key = key();
        for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
            let cap = key.write_cap(format).readonly().expect("read cap");
            for len in [0usize, 1, 55, 1000, 131_072, 131_073, 300_001] {
                let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let (finished, shares) = encode_version(&key, format, 3, 7, 5, &plaintext);
                for (shnum, share) in shares.iter().enumerate() {
                    let parsed = MutableShare::parse(share).expect("parse");
                    parsed.verify(shnum, &cap.fingerprint).expect("verify");
                    assert_eq!(parsed.seqnum, 5);
                    let header = ShareHeader::parse(share).expect("header");
                    assert_eq!(header.version(), (5, finished.root_hash));
                    assert_eq!(header.offsets.eof as usize, share.len());
                    header
                        .verify_signature(share, &cap.fingerprint)
                        .expect("signature");
                    assert_eq!(&share[..checkstring_len(format)], &finished.checkstring[..]);
                }
            }
        }
    }

    #[test]
    fn geometry_matches_tahoe() {
        let g = MutableGeometry::new(MutableFormat::Mdmf, 3, 10, 300_000);
        assert_eq!(g.segment_size, 131_073);
        assert_eq!(g.num_segments(), 3);
        assert_eq!(g.block_len(2), (300_000 - 2 * 131_073u64).div_ceil(3));
        assert_eq!(g.segments_for(131_073, 1), 1..2);
        assert_eq!(g.segments_for(0, 0), 0..0);
        assert_eq!(g.segments_for(131_072, 2), 0..2);
        let s = MutableGeometry::new(MutableFormat::Sdmf, 3, 10, 10);
        assert_eq!((s.segment_size, s.num_segments(), s.block_len(0)), (12, 1, 4));
    }
}
