//! Encoding parameters and the segment geometry they give a file (tahoe-formats.md §3 steps 1 and 5).

use super::layout::{ShareOffsets, UriExtension};
use crate::codec::CodecError;
use crate::hashtree;

/// Tahoe's default maximum immutable segment size: 1 MiB.
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 1024 * 1024;

/// What the uploader chooses: k, N and the maximum segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChkParams {
    /// Shares needed to read (k).
    pub needed: u16,
    /// Shares written (N).
    pub total: u16,
    /// Upper bound of the segment size before rounding up to a multiple of k.
    pub max_segment_size: u64,
}

impl Default for ChkParams {
    fn default() -> Self {
        ChkParams {
            needed: 3,
            total: 10,
            max_segment_size: DEFAULT_MAX_SEGMENT_SIZE,
        }
    }
}

impl ChkParams {
    /// Checks 1 ≤ k ≤ N ≤ 256 and a non-zero segment size.
    pub fn validate(&self) -> Result<(), CodecError> {
        if self.needed == 0 || self.needed > self.total || self.total > 256 || self.max_segment_size == 0 {
            return Err(CodecError::BadParameters {
                needed: self.needed as usize,
                total: self.total as usize,
            });
        }
        Ok(())
    }
}

fn next_multiple(n: u64, k: u64) -> u64 {
    n.div_ceil(k) * k
}

/// The segment geometry of one CHK file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChkGeometry {
    /// Plaintext length (> 0).
    pub size: u64,
    /// k.
    pub needed: u16,
    /// N.
    pub total: u16,
    /// Size of every segment but the last (a multiple of k).
    pub segment_size: u64,
    /// Number of segments.
    pub num_segments: u64,
    /// Padded size of the last segment (a multiple of k).
    pub tail_segment_size: u64,
}

impl ChkGeometry {
    /// The geometry Tahoe picks for a file of `size` bytes (`size` > 0).
    pub fn new(params: &ChkParams, size: u64) -> Self {
        let k = params.needed as u64;
        let segment_size = next_multiple(params.max_segment_size.min(size), k);
        Self::from_segment_size(params.needed, params.total, size, segment_size)
    }

    fn from_segment_size(needed: u16, total: u16, size: u64, segment_size: u64) -> Self {
        let num_segments = size.div_ceil(segment_size);
        let tail = match size % segment_size {
            0 => segment_size,
            rest => rest,
        };
        ChkGeometry {
            size,
            needed,
            total,
            segment_size,
            num_segments,
            tail_segment_size: next_multiple(tail, needed as u64),
        }
    }

    /// The geometry a UEB describes, if it is self-consistent.
    pub fn from_ueb(ueb: &UriExtension) -> Option<Self> {
        let k = ueb.needed_shares as u64;
        if ueb.size == 0 || ueb.segment_size == 0 || !ueb.segment_size.is_multiple_of(k) {
            return None;
        }
        let geometry =
            Self::from_segment_size(ueb.needed_shares, ueb.total_shares, ueb.size, ueb.segment_size);
        (geometry.num_segments == ueb.num_segments && geometry.tail_segment_size == ueb.tail_segment_size)
            .then_some(geometry)
    }

    /// Plaintext offset and unpadded length of segment `segnum`.
    pub fn segment_span(&self, segnum: u64) -> (u64, u64) {
        let start = segnum * self.segment_size;
        (start, (self.size - start).min(self.segment_size))
    }

    /// Padded length of segment `segnum`.
    pub fn padded_segment_len(&self, segnum: u64) -> u64 {
        if segnum + 1 == self.num_segments {
            self.tail_segment_size
        } else {
            self.segment_size
        }
    }

    /// Size of a full block: segment_size / k.
    pub fn block_size(&self) -> u64 {
        self.segment_size / self.needed as u64
    }

    /// Length of block `segnum` in every share.
    pub fn block_len(&self, segnum: u64) -> u64 {
        self.padded_segment_len(segnum) / self.needed as u64
    }

    /// Total bytes of blocks in one share: ceil(size / k).
    pub fn data_size(&self) -> u64 {
        self.size.div_ceil(self.needed as u64)
    }

    /// The number of (index, hash) entries in each share's share-hash chain.
    pub fn share_hash_count(&self) -> u64 {
        hashtree::needed_hashes(self.total as usize, 0).len() as u64 + 1
    }

    /// Where everything lies in each share's data.
    pub fn offsets(&self) -> ShareOffsets {
        ShareOffsets::compute(
            self.block_size(),
            self.data_size(),
            self.num_segments,
            self.share_hash_count(),
        )
    }

    /// The layout in a given share layout version (1 or 2), as a reader checks it.
    pub fn offsets_for_version(&self, version: u32) -> ShareOffsets {
        ShareOffsets::compute_version(
            version,
            self.block_size(),
            self.data_size(),
            self.num_segments,
            self.share_hash_count(),
        )
    }

    /// The segments that hold plaintext bytes `offset .. offset+len` (empty if `len` is 0).
    pub fn segments_for_range(&self, offset: u64, len: u64) -> std::ops::Range<u64> {
        if len == 0 || offset >= self.size {
            return 0..0;
        }
        let end = (offset + len).min(self.size);
        offset / self.segment_size..end.div_ceil(self.segment_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_follow_tahoe() {
        let default = ChkParams::default();
        assert_eq!(ChkGeometry::new(&default, 10 << 20).segment_size, 1_048_578);
        assert_eq!(ChkGeometry::new(&default, 1024).segment_size, 1026);
        let one = ChkParams {
            needed: 1,
            total: 1,
            max_segment_size: 131072,
        };
        assert_eq!(ChkGeometry::new(&one, 56).segment_size, 56);
        let g = ChkGeometry::new(&default, 10 * 1024 * 1024);
        assert_eq!(g.num_segments, 10);
        assert_eq!(g.data_size(), (10 * 1024 * 1024u64).div_ceil(3));
    }

    #[test]
    fn ranges_map_to_segments() {
        let g = ChkGeometry::new(
            &ChkParams {
                needed: 3,
                total: 10,
                max_segment_size: 99,
            },
            1000,
        );
        assert_eq!(g.segment_size, 99);
        assert_eq!(g.num_segments, 11);
        assert_eq!(g.segments_for_range(0, 1), 0..1);
        assert_eq!(g.segments_for_range(98, 2), 0..2);
        assert_eq!(g.segments_for_range(990, 100), 10..11);
        assert_eq!(g.segments_for_range(1000, 5), 0..0);
        assert_eq!(g.segment_span(10), (990, 10));
        assert_eq!(g.tail_segment_size, 12);
        assert_eq!(g.block_len(10), 4);
        assert_eq!(g.data_size(), 334);
    }
}
