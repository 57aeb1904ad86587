//! A storage server's own check of an immutable share: what it can prove about a share without the
//! file's cap. Used by [`StorageServer::remove_corrupt_share`](super::StorageServer::remove_corrupt_share),
//! the Tessera extension that lets a repairer free the slot of a corrupt share.
//!
//! An immutable share (tahoe-formats.md §4.1) carries everything needed to check its own
//! consistency except the hash of its URI extension block (UEB), which only the cap holds:
//!
//! 1. the UEB gives k, N, the segment size and the file size, hence every block's place and length,
//!    the share root hash and the ciphertext root hash;
//! 2. every block must hash (`H("allmydata_encoded_subshare_v1", block)`) to its leaf of the share's
//!    block hash tree, and that tree must be internally consistent (every internal node the hash of
//!    its children, padding leaves the empty-leaf hashes);
//! 3. the block tree's root must lead, through the share hash chain, to the UEB's share root hash;
//! 4. the ciphertext hash tree must be internally consistent and have the UEB's ciphertext root.
//!
//! # Why a share that fails is never a good share
//!
//! An uploader that follows the format writes all of this consistently, whatever the file. So a
//! share that fails one of these checks differs from every share any uploader wrote: no reader can
//! use all of it (readers check the same hashes, and more). Only failures of that kind count as
//! proof ([`ShareCheck::Corrupt`]): a hash that does not match, a share hash chain without a node
//! every reader needs, header offsets out of order, or a share shorter than its own header and UEB
//! say it is. Anything the check cannot interpret (an unknown layout version, a UEB
//! it cannot parse, parameters that disagree with each other) is
//! [`ShareCheck::Undecided`]: possibly a format this server does not know, so it is kept.
//!
//! What the server cannot see: a share that is internally consistent but belongs to another file,
//! or whose UEB was replaced wholesale with a consistent one. Those pass here
//! ([`ShareCheck::Consistent`]) and are kept; a repairer then places the replacement on another
//! server, as it must for servers without this extension.
//!
//! The hash functions are Tahoe's (tahoe-formats.md §1.3, §1.6), written out here because `storage`
//! depends on no other crate of the workspace; `tests/e2e` checks them against the client's on every
//! golden share.

use std::collections::BTreeMap;
use std::io;

use sha2::{Digest, Sha256};

/// What a server can say about one of its immutable shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareCheck {
    /// Every hash the share carries agrees with its contents.
    Consistent,
    /// Proof that the share is not what any uploader wrote, and why.
    Corrupt(String),
    /// The share cannot be judged without the cap; why.
    Undecided(String),
}

type Hash = [u8; 32];

const BLOCK_TAG: &[u8] = b"allmydata_encoded_subshare_v1";
const INTERNAL_TAG: &[u8] = b"Merkle tree internal node";
const EMPTY_LEAF_TAG: &[u8] = b"Merkle tree empty leaf";

/// The largest UEB read (readers refuse larger ones too).
const UEB_LIMIT: u64 = 1 << 20;
/// Blocks are hashed in pieces of at most this many bytes.
const READ_PIECE: u64 = 1 << 20;

fn netstring(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(value.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(value);
    out.push(b',');
}

fn tagged_hasher(tag: &[u8]) -> Sha256 {
    let mut prefix = Vec::with_capacity(tag.len() + 4);
    netstring(&mut prefix, tag);
    let mut hasher = Sha256::new();
    hasher.update(&prefix);
    hasher
}

fn finish(hasher: Sha256) -> Hash {
    Sha256::digest(hasher.finalize()).into()
}

fn tagged_hash(tag: &[u8], value: &[u8]) -> Hash {
    let mut hasher = tagged_hasher(tag);
    hasher.update(value);
    finish(hasher)
}

fn internal_node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = Vec::with_capacity(INTERNAL_TAG.len() + 64 + 12);
    netstring(&mut buf, INTERNAL_TAG);
    netstring(&mut buf, left);
    netstring(&mut buf, right);
    Sha256::digest(Sha256::digest(&buf)).into()
}

fn leaf_slots(num_leaves: u64) -> u64 {
    num_leaves.max(1).next_power_of_two()
}

/// Checks a whole serialized tree: padding leaves, internal nodes, root. Returns the real leaves.
fn check_full_tree(num_leaves: u64, nodes: &[Hash], root: &Hash) -> Result<Vec<Hash>, String> {
    let slots = leaf_slots(num_leaves) as usize;
    let first_leaf = slots - 1;
    if &nodes[0] != root {
        return Err("its root does not match".to_owned());
    }
    for i in num_leaves as usize..slots {
        if nodes[first_leaf + i] != tagged_hash(EMPTY_LEAF_TAG, i.to_string().as_bytes()) {
            return Err(format!("padding leaf {i} does not match"));
        }
    }
    for j in 0..first_leaf {
        if nodes[j] != internal_node_hash(&nodes[2 * j + 1], &nodes[2 * j + 2]) {
            return Err(format!("node {j} is not the hash of its children"));
        }
    }
    Ok(nodes[first_leaf..first_leaf + num_leaves as usize].to_vec())
}

/// How a climb from a leaf to a root ended.
enum Climb {
    Matches,
    Mismatch(String),
    MissingNode(usize),
}

/// Climbs from leaf `leaf` (of `num_leaves`) with `leaf_hash` through `chain` to `root`.
fn climb(num_leaves: u64, leaf: u64, leaf_hash: &Hash, chain: &BTreeMap<usize, Hash>, root: &Hash) -> Climb {
    let mut here = (leaf_slots(num_leaves) - 1 + leaf) as usize;
    let mut value = *leaf_hash;
    if chain.get(&here).is_some_and(|claimed| claimed != &value) {
        return Climb::Mismatch(format!("its entry {here} is not the block tree's root"));
    }
    while here != 0 {
        let (sibling, is_left) = if here % 2 == 1 {
            (here + 1, true)
        } else {
            (here - 1, false)
        };
        let Some(sibling_hash) = chain.get(&sibling) else {
            return Climb::MissingNode(sibling);
        };
        value = if is_left {
            internal_node_hash(&value, sibling_hash)
        } else {
            internal_node_hash(sibling_hash, &value)
        };
        here = (here - 1) / 2;
        if chain.get(&here).is_some_and(|claimed| claimed != &value) {
            return Climb::Mismatch(format!("its entry {here} does not match"));
        }
    }
    if &value == root {
        Climb::Matches
    } else {
        Climb::Mismatch("it does not lead to the share root hash of the URI extension block".to_owned())
    }
}

/// Where the parts of the share data lie (its header).
struct Offsets {
    data: u64,
    crypttext_hash_tree: u64,
    block_hashes: u64,
    share_hashes: u64,
    uri_extension: u64,
    /// 4 (v1) or 8 (v2): the size of the UEB's length prefix.
    ueb_length_size: u64,
}

/// The UEB fields the check needs.
struct Ueb {
    needed: u64,
    total: u64,
    segment_size: u64,
    size: u64,
    num_segments: Option<u64>,
    share_root_hash: Hash,
    crypttext_root_hash: Hash,
}

fn parse_ueb(mut bytes: &[u8]) -> Option<Ueb> {
    let mut fields: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
    while !bytes.is_empty() {
        let colon = bytes.iter().position(|&b| b == b':')?;
        let key = &bytes[..colon];
        let rest = &bytes[colon + 1..];
        let len_end = rest.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&rest[..len_end]).ok()?.parse().ok()?;
        let value = rest.get(len_end + 1..len_end + 1 + len)?;
        if rest.get(len_end + 1 + len) != Some(&b',') {
            return None;
        }
        fields.insert(key, value);
        bytes = &rest[len_end + 2 + len..];
    }
    let number = |name: &str| -> Option<u64> {
        std::str::from_utf8(fields.get(name.as_bytes())?)
            .ok()?
            .parse()
            .ok()
    };
    let hash = |name: &str| -> Option<Hash> { (*fields.get(name.as_bytes())?).try_into().ok() };
    Some(Ueb {
        needed: number("needed_shares")?,
        total: number("total_shares")?,
        segment_size: number("segment_size")?,
        size: number("size")?,
        num_segments: fields
            .contains_key(b"num_segments".as_slice())
            .then(|| number("num_segments"))
            .flatten(),
        share_root_hash: hash("share_root_hash")?,
        crypttext_root_hash: hash("crypttext_root_hash")?,
    })
}

/// Reads exactly `len` bytes at `offset` through `read` (which returns fewer at the end).
fn read_exact(
    read: &mut dyn FnMut(u64, u64) -> io::Result<Vec<u8>>,
    offset: u64,
    len: u64,
) -> io::Result<Option<Vec<u8>>> {
    let bytes = read(offset, len)?;
    Ok((bytes.len() as u64 == len).then_some(bytes))
}

/// Checks immutable share data of `data_len` bytes, read through `read(offset, len)`, as share
/// number `shnum`. Disk errors are returned as errors, never as a verdict.
pub fn check_immutable_share(
    read: &mut dyn FnMut(u64, u64) -> io::Result<Vec<u8>>,
    data_len: u64,
    shnum: u16,
) -> io::Result<ShareCheck> {
    let undecided = |why: &str| Ok(ShareCheck::Undecided(why.to_owned()));
    let truncated = |what: &str| Ok(ShareCheck::Corrupt(format!("the share ends before its {what}")));

    // The header (tahoe-formats.md §4.1): v1 with 4-byte fields, v2 with 8-byte ones.
    let Some(first) = read_exact(read, 0, 4)? else {
        return truncated("header");
    };
    let version = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    let (header_len, width) = match version {
        1 => (0x24u64, 4usize),
        2 => (0x44u64, 8usize),
        _ => return undecided("unknown share layout version"),
    };
    let Some(header) = read_exact(read, 0, header_len)? else {
        return truncated("header");
    };
    let field = |i: usize| -> u64 {
        // Fields after the version: block size, data size, then six offsets.
        let at = 4 + i * width;
        header[at..at + width]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    let offsets = Offsets {
        data: field(2),
        crypttext_hash_tree: field(4),
        block_hashes: field(5),
        share_hashes: field(6),
        uri_extension: field(7),
        ueb_length_size: width as u64,
    };
    let ordered = [
        header_len,
        offsets.data,
        field(3),
        offsets.crypttext_hash_tree,
        offsets.block_hashes,
        offsets.share_hashes,
        offsets.uri_extension,
    ];
    if ordered.windows(2).any(|w| w[0] > w[1]) {
        return Ok(ShareCheck::Corrupt(
            "its header's offsets are out of order".to_owned(),
        ));
    }
    if offsets.uri_extension > data_len {
        return truncated("URI extension block");
    }

    // The UEB: length-prefixed at its offset.
    let Some(length) = read_exact(read, offsets.uri_extension, offsets.ueb_length_size)? else {
        return truncated("URI extension block");
    };
    let ueb_len = length.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if ueb_len > UEB_LIMIT {
        return undecided("its URI extension block is larger than any reader accepts");
    }
    let Some(ueb_bytes) = read_exact(read, offsets.uri_extension + offsets.ueb_length_size, ueb_len)? else {
        return truncated("URI extension block");
    };
    let Some(ueb) = parse_ueb(&ueb_bytes) else {
        return undecided("its URI extension block cannot be parsed");
    };
    let (k, n) = (ueb.needed, ueb.total);
    if k == 0 || k > n || n > 256 || u64::from(shnum) >= n {
        return undecided("its encoding parameters do not fit its share number");
    }
    if ueb.size == 0 || ueb.segment_size == 0 || !ueb.segment_size.is_multiple_of(k) {
        return undecided("its segment size does not fit its encoding parameters");
    }
    let num_segments = ueb.size.div_ceil(ueb.segment_size);
    if num_segments > data_len {
        // Every block is at least a byte long.
        return truncated("last block");
    }
    if ueb.num_segments.is_some_and(|stated| stated != num_segments) {
        return undecided("its URI extension block's segment count disagrees with its sizes");
    }
    let block_size = ueb.segment_size / k;
    let tail_len = ueb.size - (num_segments - 1) * ueb.segment_size;
    let tail_block = tail_len.div_ceil(k);
    let block_len = |segnum: u64| {
        if segnum + 1 == num_segments {
            tail_block
        } else {
            block_size
        }
    };

    // The trees must fit where the header puts them.
    let nodes = 2 * leaf_slots(num_segments) - 1;
    let tree_bytes = 32 * nodes;
    if offsets.block_hashes - offsets.crypttext_hash_tree < tree_bytes
        || offsets.share_hashes - offsets.block_hashes < tree_bytes
    {
        return undecided("its hash trees do not fit its header's offsets");
    }
    let read_tree =
        |read: &mut dyn FnMut(u64, u64) -> io::Result<Vec<u8>>, at: u64| -> io::Result<Option<Vec<Hash>>> {
            Ok(read_exact(read, at, tree_bytes)?.map(|bytes| {
                bytes
                    .chunks_exact(32)
                    .map(|c| c.try_into().expect("invariant: 32-byte chunk"))
                    .collect()
            }))
        };
    let Some(crypttext_nodes) = read_tree(read, offsets.crypttext_hash_tree)? else {
        return truncated("ciphertext hash tree");
    };
    if let Err(why) = check_full_tree(num_segments, &crypttext_nodes, &ueb.crypttext_root_hash) {
        return Ok(ShareCheck::Corrupt(format!("ciphertext hash tree: {why}")));
    }
    let Some(block_nodes) = read_tree(read, offsets.block_hashes)? else {
        return truncated("block hash tree");
    };
    let leaves = match check_full_tree(num_segments, &block_nodes, &block_nodes[0]) {
        Ok(leaves) => leaves,
        Err(why) => return Ok(ShareCheck::Corrupt(format!("block hash tree: {why}"))),
    };

    // The share hash chain: (u16 index, hash) pairs.
    let chain_len = offsets.uri_extension - offsets.share_hashes;
    if chain_len > 34 * 64 {
        return undecided("its share hash chain is longer than any N allows");
    }
    let Some(chain_bytes) = read_exact(read, offsets.share_hashes, chain_len)? else {
        return truncated("share hash chain");
    };
    let chain: BTreeMap<usize, Hash> = chain_bytes
        .chunks_exact(34)
        .map(|entry| {
            (
                usize::from(u16::from_be_bytes([entry[0], entry[1]])),
                entry[2..].try_into().expect("invariant: 32 bytes"),
            )
        })
        .collect();
    match climb(n, u64::from(shnum), &block_nodes[0], &chain, &ueb.share_root_hash) {
        Climb::Matches => {}
        Climb::Mismatch(why) => return Ok(ShareCheck::Corrupt(format!("share hash chain: {why}"))),
        // Every reader needs each sibling on the path to check the block tree's root.
        Climb::MissingNode(node) => {
            return Ok(ShareCheck::Corrupt(format!(
                "share hash chain: it lacks node {node}, which every reader needs"
            )));
        }
    }

    // Every block against its leaf, hashed a piece at a time.
    if offsets.data + (num_segments - 1) * block_size + tail_block > data_len {
        return truncated("last block");
    }
    for (segnum, leaf) in (0..num_segments).zip(&leaves) {
        let start = offsets.data + segnum * block_size;
        let len = block_len(segnum);
        let mut hasher = tagged_hasher(BLOCK_TAG);
        let mut at = 0;
        while at < len {
            let piece = (len - at).min(READ_PIECE);
            let Some(bytes) = read_exact(read, start + at, piece)? else {
                return truncated("last block");
            };
            hasher.update(&bytes);
            at += piece;
        }
        if &finish(hasher) != leaf {
            return Ok(ShareCheck::Corrupt(format!(
                "block {segnum} does not match its hash"
            )));
        }
    }
    Ok(ShareCheck::Consistent)
}

/// [`check_immutable_share`] over share data in memory.
pub fn check_immutable_share_bytes(data: &[u8], shnum: u16) -> ShareCheck {
    let mut read = |offset: u64, len: u64| -> io::Result<Vec<u8>> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(data.len());
        Ok(data[start..end].to_vec())
    };
    check_immutable_share(&mut read, data.len() as u64, shnum)
        .expect("invariant: reading from memory cannot fail")
}
