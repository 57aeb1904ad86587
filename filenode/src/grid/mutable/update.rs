//! Partial updates of MDMF files: a write at an offset re-encodes only the segments it touches and
//! rewrites each share's header and the changed block-tree nodes (Tahoe's `MutableFileVersion.update`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use storage::ShareNum;
use tracing::debug;

use super::MutableError;
use super::publish::{
    Batch, ChunkSource, Published, SEGMENTS_PER_BATCH, Target, TargetState, WriteContext, atomic_write_limit,
    batch_of_segments, encode_segments, final_batch, finish_publish, marker, publish,
};
use super::retrieve::MutableReader;
use super::servermap::ServerMap;
use crate::cap::MutableFormat;
use crate::codec::Codec;
use crate::hashes::Hash;
use crate::hashtree;
use crate::mutable::encode::{self, MutableGeometry};
use crate::mutable::layout::ShareHeader;

/// The most a write at an offset may leave as a zero-filled gap past the end of a file.
pub const MAX_WRITE_GAP: u64 = 64 << 20;

/// Checks a write of `len` bytes at `offset` into a file of `size` bytes: the write may start at
/// most [`MAX_WRITE_GAP`] past the end, and must not overflow. Returns its (start, end).
pub fn checked_write_range(size: u64, offset: u64, len: u64) -> Result<(u64, u64), MutableError> {
    if offset > size.saturating_add(MAX_WRITE_GAP) {
        return Err(MutableError::BadOffset(format!(
            "offset {offset} is more than {} MiB past the end of the file ({size} bytes)",
            MAX_WRITE_GAP >> 20
        )));
    }
    let end = offset
        .checked_add(len)
        .filter(|end| *end <= 1 << 50)
        .ok_or_else(|| MutableError::BadOffset(format!("a write of {len} bytes at {offset} is too large")))?;
    Ok((offset, end))
}

/// Writes `data` at `offset` of an MDMF file (growing it, zero-filled, when `offset` is past the
/// end), re-encoding only the segments the write touches and rewriting each share's header and
/// block tree. When some share of the current version cannot be read, the whole file is
/// republished instead (streamed), so the new version still has all N shares.
pub async fn update_mdmf(
    ctx: &WriteContext<'_>,
    map: &ServerMap,
    offset: u64,
    data: Arc<Vec<u8>>,
) -> Result<(Published, ShareHeader), MutableError> {
    let reader = Arc::new(MutableReader::open(map, ctx.cap).await?);
    let h = reader.header().clone();
    if h.format != MutableFormat::Mdmf {
        return Err(MutableError::Unsupported(
            "only MDMF files can be written at an offset",
        ));
    }
    let g0 = reader.geometry;
    let (offset, write_end) = checked_write_range(g0.data_length, offset, data.len() as u64)?;
    let new_len = g0.data_length.max(write_end);
    let g1 = MutableGeometry {
        data_length: new_len,
        ..g0
    };
    let shares = reader.all_trees(map).await;
    let covered: BTreeSet<ShareNum> = shares.iter().map(|(s, _)| s.shnum).collect();
    if covered.len() < usize::from(h.total) {
        debug!(
            have = covered.len(),
            total = h.total,
            "partial update falls back to a full publish"
        );
        let source = merged_source(Arc::clone(&reader), g0.data_length, offset, data);
        return publish(ctx, map, MutableFormat::Mdmf, h.needed, h.total, new_len, source).await;
    }
    let start = offset.min(g0.data_length);
    let affected = g1.segments_for(start, write_end - start);
    let n0 = g0.num_segments() as usize;
    let n1 = g1.num_segments() as usize;
    // Every share's leaves: the old ones, then the affected segments' new ones.
    let mut trees_by_shnum: BTreeMap<ShareNum, Vec<Hash>> = BTreeMap::new();
    for (share, tree) in &shares {
        trees_by_shnum.entry(share.shnum).or_insert_with(|| {
            let first_leaf = hashtree::leaf_node_index(n0, 0);
            let mut leaves: Vec<Hash> = (0..n0).map(|i| tree[first_leaf + i]).collect();
            leaves.resize(n1, [0; 32]);
            leaves
        });
    }
    let seqnum = map.next_seqnum();
    let targets: Vec<Target> = shares
        .iter()
        .map(|(share, _)| Target {
            server: share.server.clone(),
            shnum: share.shnum,
            expected: share.checkstring(),
            state: TargetState::Alive,
        })
        .collect();
    let mut session = ctx.session(map, targets, marker(MutableFormat::Mdmf, seqnum));
    let readkey = ctx.cap.readkey().expect("invariant: write caps read");
    let codec =
        Arc::new(Codec::new(usize::from(h.needed), usize::from(h.total)).expect("invariant: valid k-of-N"));
    let span = (affected.end.min(g1.num_segments()) - affected.start) * g1.segment_size;
    let single = span <= atomic_write_limit();
    let mut pending = Batch::default();
    let mut segnum = affected.start;
    while segnum < affected.end {
        let count = if single {
            affected.end - segnum
        } else {
            SEGMENTS_PER_BATCH.min(affected.end - segnum)
        };
        let seg_start = segnum * g1.segment_size;
        let seg_end = ((segnum + count) * g1.segment_size).min(new_len);
        // The new plaintext of these segments: old bytes, zeros past the old end, the write.
        let mut plaintext = vec![0u8; (seg_end - seg_start) as usize];
        let old_end = g0.data_length.min(seg_end);
        let keep_before = if old_end > seg_start {
            offset.clamp(seg_start, old_end)
        } else {
            seg_start
        };
        if keep_before > seg_start {
            let old = reader.read_range(seg_start, keep_before - seg_start).await?;
            plaintext[..old.len()].copy_from_slice(&old);
        }
        if old_end > write_end.max(seg_start) {
            let from = write_end.max(seg_start);
            let old = reader.read_range(from, old_end - from).await?;
            let at = (from - seg_start) as usize;
            plaintext[at..at + old.len()].copy_from_slice(&old);
        }
        let (a, b) = (offset.max(seg_start), write_end.min(seg_end));
        if a < b {
            plaintext[(a - seg_start) as usize..(b - seg_start) as usize]
                .copy_from_slice(&data[(a - offset) as usize..(b - offset) as usize]);
        }
        let (first, c) = (segnum, Arc::clone(&codec));
        let encoded =
            crate::grid::run_on_rayon(move || encode_segments(&g1, &c, &readkey, first, &plaintext)).await;
        for (i, segment) in encoded.iter().enumerate() {
            for (shnum, leaves) in trees_by_shnum.iter_mut() {
                leaves[(first as usize) + i] = segment.leaves[usize::from(*shnum)];
            }
        }
        let batch = batch_of_segments(&g1, first, &encoded);
        if single {
            for (shnum, writes) in batch.writes {
                pending.writes.entry(shnum).or_default().extend(writes);
            }
        } else {
            session.send(&batch, false, &BTreeMap::new(), &[]).await?;
        }
        segnum += count;
    }
    let trees: Vec<Vec<Hash>> = (0..h.total)
        .map(|shnum| encode::block_tree(&trees_by_shnum[&u16::from(shnum)]))
        .collect();
    let same_shape = hashtree::node_count(n0) == hashtree::node_count(n1)
        && g0.mdmf_tree_offset() == g1.mdmf_tree_offset();
    let changed: Option<BTreeSet<usize>> = same_shape.then(|| {
        let mut nodes = BTreeSet::new();
        for leaf in affected.clone() {
            let mut here = hashtree::leaf_node_index(n1, leaf as usize);
            loop {
                nodes.insert(here);
                if here == 0 {
                    break;
                }
                here = (here - 1) / 2;
            }
        }
        nodes
    });
    let finished = encode::VersionBuilder {
        key: ctx.key,
        geometry: g1,
        seqnum,
        sdmf_salt: [0; 16],
    }
    .finish(&trees, None);
    let (mut batch, lengths) = final_batch(&g1, &finished, &trees, changed.as_ref());
    for (shnum, writes) in pending.writes {
        batch.writes.entry(shnum).or_default().extend(writes);
    }
    session
        .send(&batch, true, &lengths, &finished.checkstring)
        .await?;
    finish_publish(session, &batch, finished, usize::from(h.needed), new_len)
}

/// The bytes of the file after writing `data` at `offset`, read from the old version as needed.
fn merged_source(reader: Arc<MutableReader>, old_len: u64, offset: u64, data: Arc<Vec<u8>>) -> ChunkSource {
    let mut at = 0u64;
    let end = old_len.max(offset + data.len() as u64);
    Box::new(move |n| {
        let (from, to) = (at, (at + n).min(end));
        at = to;
        let reader = Arc::clone(&reader);
        let data = Arc::clone(&data);
        Box::pin(async move {
            let mut out = vec![0u8; (to - from) as usize];
            let old_to = to.min(old_len);
            if old_to > from {
                let old = reader
                    .read_range(from, old_to - from)
                    .await
                    .map_err(std::io::Error::other)?;
                out[..old.len()].copy_from_slice(&old);
            }
            let (a, b) = (offset.max(from), (offset + data.len() as u64).min(to));
            if a < b {
                out[(a - from) as usize..(b - from) as usize]
                    .copy_from_slice(&data[(a - offset) as usize..(b - offset) as usize]);
            }
            Ok(out)
        })
    })
}
