//! Verifying mutable shares whole (`t=check&verify=true` on SDMF and MDMF files): every share the
//! servermap found is read in full and checked on its own, so that each bad share is named with
//! its server and what is wrong with it.
//!
//! For each share: the header's signature over the signed prefix (and the verification key
//! against the cap's fingerprint: the servermap query did this, and its reason is recovered here);
//! the layout against the signed geometry; the block hash tree (internally consistent) and its root
//! through the share hash chain to the signed root hash; every block (for MDMF the salt with it:
//! the leaf is the hash of salt and block) against its leaf; and, with a write cap, the encrypted
//! signing key against the cap's write key. A verify cap can check everything but the last.
//!
//! Reads go a piece at a time (MDMF shares can be large); a share that cannot be read (the server
//! failed or timed out) is unreadable, not corrupt.

use futures::future::join_all;
use storage::StorageError;
use storage::api::ShareKind;

use super::mutable::LocatedShare;
use super::with_timeout;
use crate::cap::{MutableCap, MutableFormat};
use crate::crypto::aes_ctr_at;
use crate::hashes::{Hash, TaggedHasher, ssk_writekey_hash, tags};
use crate::hashtree;
use crate::mutable::encode::{MDMF_SHARE_DATA_OFFSET, MutableGeometry};
use crate::mutable::layout::{ShareHeader, parse_chain, parse_hashes};

/// Blocks are read in pieces of about this many bytes.
const READ_PIECE: u64 = 1 << 20;

/// What verifying one share found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareVerdict {
    /// Every check passed.
    Good,
    /// The share's bytes are wrong; why.
    Corrupt(String),
    /// The share could not be read; why.
    Unreadable(String),
}

/// Why a share's signed header was rejected by the servermap query (which keeps only the verdict).
pub fn header_problem(share: &LocatedShare, cap: &MutableCap) -> String {
    let marker = share
        .prefix
        .get(9..41)
        .is_some_and(|root| root.iter().all(|b| *b == 0));
    match ShareHeader::parse(&share.prefix) {
        Err(e) => format!("header: {e}"),
        Ok(_) if marker => "an interrupted write left this share unfinished (in-progress marker)".to_owned(),
        Ok(header) => match header.verify_signature(&share.prefix, &cap.fingerprint) {
            Err(e) => format!("header: {e}"),
            // The servermap query reads at most 64 KiB to find them.
            Ok(()) => "header: its key and signature lie past 64 KiB, where no writer puts them".to_owned(),
        },
    }
}

/// Verifies every share in `shares` (those with a signed header) against `cap`, concurrently.
pub async fn verify_shares(shares: &[&LocatedShare], cap: &MutableCap) -> Vec<ShareVerdict> {
    join_all(shares.iter().map(|share| verify_share(share, cap))).await
}

/// Verifies one share whose header the servermap query found signed.
pub async fn verify_share(share: &LocatedShare, cap: &MutableCap) -> ShareVerdict {
    match check(share, cap).await {
        Ok(()) => ShareVerdict::Good,
        Err(Problem::Corrupt(why)) => ShareVerdict::Corrupt(why),
        Err(Problem::Unreadable(why)) => ShareVerdict::Unreadable(why),
    }
}

enum Problem {
    Corrupt(String),
    Unreadable(String),
}

fn corrupt(why: impl Into<String>) -> Problem {
    Problem::Corrupt(why.into())
}

/// Reads `start..end` of the share (from the prefix the servermap read, when it holds it).
async fn fetch(share: &LocatedShare, cap: &MutableCap, start: u64, end: u64) -> Result<Vec<u8>, Problem> {
    if let Some(bytes) = share.prefix.get(start as usize..end as usize) {
        return Ok(bytes.to_vec());
    }
    let read = with_timeout(
        share.server.request_timeout,
        share.server.client.read_share(
            ShareKind::Mutable,
            cap.storage_index(),
            share.shnum,
            start,
            end - start,
        ),
    )
    .await
    .map_err(|e: StorageError| Problem::Unreadable(e.to_string()))?;
    if (read.len() as u64) < end - start {
        return Err(corrupt("the share is truncated"));
    }
    Ok(read.to_vec())
}

async fn check(share: &LocatedShare, cap: &MutableCap) -> Result<(), Problem> {
    let header = share
        .header
        .as_ref()
        .ok_or_else(|| corrupt(header_problem(share, cap)))?;
    if header.format != cap.format {
        return Err(corrupt("the share is of another format than the cap"));
    }
    let g = MutableGeometry {
        format: header.format,
        needed: header.needed,
        total: header.total,
        segment_size: header.segment_size,
        data_length: header.data_length,
    };
    if u16::from(header.total) <= share.shnum {
        return Err(corrupt("its share number is not below N"));
    }
    let o = header.offsets;
    // The layout follows from the signed geometry (offsets are not signed).
    let nseg = g.num_segments();
    let (tree_start, tree_end, data_len) = match g.format {
        MutableFormat::Sdmf => (o.block_hash_tree, o.share_data, o.enc_privkey - o.share_data),
        MutableFormat::Mdmf => (o.block_hash_tree, o.eof, o.block_hash_tree - o.share_data),
    };
    let expected_data = match g.format {
        MutableFormat::Sdmf => g.block_len(0),
        MutableFormat::Mdmf => g.mdmf_tree_offset() - MDMF_SHARE_DATA_OFFSET,
    };
    if tree_end - tree_start != g.tree_len()
        || data_len != expected_data
        || o.share_hash_chain_end - o.share_hash_chain > 34 * 16
    {
        return Err(corrupt("its layout does not match its signed geometry"));
    }
    // The block hash tree, and its root through the share hash chain to the signed root.
    let chain = parse_chain(&fetch(share, cap, o.share_hash_chain, o.share_hash_chain_end).await?);
    let tree = parse_hashes(&fetch(share, cap, tree_start, tree_end).await?);
    let leaves: Vec<Hash> = if nseg > 0 {
        hashtree::verify_full_tree(nseg as usize, &tree, &tree[0])
            .map_err(|e| corrupt(format!("block hash tree: {e}")))?
    } else {
        Vec::new()
    };
    hashtree::verify_leaf(
        usize::from(header.total),
        usize::from(share.shnum),
        &tree[0],
        &chain,
        &header.root_hash,
    )
    .map_err(|e| corrupt(format!("share hash chain: {e}")))?;
    // Every block (MDMF: salt and block, as they lie in the share) against its leaf, streamed a
    // piece at a time whatever the segment size.
    let entry_len = |segnum: u64| match g.format {
        MutableFormat::Sdmf => g.block_len(0),
        MutableFormat::Mdmf => 16 + g.block_len(segnum),
    };
    let entries = match g.format {
        MutableFormat::Sdmf => 1,
        MutableFormat::Mdmf => nseg,
    };
    let mut segnum = 0;
    let mut left = if entries > 0 { entry_len(0) } else { 0 };
    let mut hasher = TaggedHasher::new(tags::BLOCK);
    let mut at = 0;
    while segnum < entries {
        let piece = (data_len - at).min(READ_PIECE);
        if piece == 0 && left > 0 {
            return Err(corrupt("the share is truncated"));
        }
        let bytes = fetch(share, cap, o.share_data + at, o.share_data + at + piece).await?;
        at += piece;
        let mut rest = bytes.as_slice();
        loop {
            let take = (left as usize).min(rest.len());
            hasher.update(&rest[..take]);
            rest = &rest[take..];
            left -= take as u64;
            if left > 0 {
                break;
            }
            let leaf = std::mem::replace(&mut hasher, TaggedHasher::new(tags::BLOCK)).finalize();
            if leaf != leaves[segnum as usize] {
                return Err(corrupt(match g.format {
                    MutableFormat::Sdmf => "block 0 does not match its hash".to_owned(),
                    MutableFormat::Mdmf => format!("block {segnum} (with its salt) does not match its hash"),
                }));
            }
            segnum += 1;
            if segnum == entries {
                break;
            }
            left = entry_len(segnum);
            if rest.is_empty() {
                break;
            }
        }
    }
    // The signing key: only a write cap can tell whether it decrypts to the right key.
    if let Some(writekey) = cap.writekey() {
        if o.enc_privkey_end - o.enc_privkey > 4096 {
            return Err(corrupt("its encrypted signing key is too long"));
        }
        let mut key = fetch(share, cap, o.enc_privkey, o.enc_privkey_end).await?;
        aes_ctr_at(&writekey, 0, &mut key);
        if ssk_writekey_hash(&key) != writekey {
            return Err(corrupt("its encrypted signing key does not match the write cap"));
        }
    }
    Ok(())
}
