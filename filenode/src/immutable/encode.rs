//! The CHK encoder (tahoe-formats.md §3): plaintext in, N shares and a cap out.
//!
//! The work splits into a pure per-segment step ([`ChkEncoder::encode_segment`]: encrypt, hash,
//! pad, erasure-code, hash the blocks) that runs on any thread in any order, and an in-order step
//! ([`ShareTrailerBuilder`]) that accumulates the whole-ciphertext hash and the leaves of every tree.
//! [`encode_stream`] wires the two into a pipeline: segments are read one at a time, encoded in
//! parallel on the rayon pool, and handed to a [`ShareSink`] in order, so memory stays
//! O(segment size × N × pipeline depth) whatever the file size.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use bytes::Bytes;

use super::layout::{ShareOffsets, UriExtension, share_hash_chain_order};
use super::params::{ChkGeometry, ChkParams};
use crate::cap::{ChkCap, LIT_THRESHOLD};
use crate::codec::{Codec, CodecError};
use crate::crypto::AesCtr;
use crate::hashes::{
    Hash, TaggedHasher, block_hash, convergence_hasher, crypttext_segment_hash, tags, truncate16,
    uri_extension_hash,
};
use crate::hashtree::HashTree;

/// Why an encode failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Invalid k/N or segment size.
    #[error(transparent)]
    Params(#[from] CodecError),
    /// The file is small enough for a LIT cap and has no shares.
    #[error("a file of {0} bytes is stored in a LIT cap, not in CHK shares")]
    TooSmallForChk(u64),
    /// Reading the input failed.
    #[error("reading the input failed: {0}")]
    Read(#[source] io::Error),
    /// The input ended before the announced size.
    #[error("the input ended after {got} of {expected} bytes")]
    ShortInput {
        /// Bytes read.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The share sink refused a write.
    #[error("writing shares failed: {0}")]
    Write(#[source] io::Error),
}

/// Computes the convergent key of a stream in one pass, returning the key and the stream's length
/// (a [`ConvergentHasher`] fed the whole stream).
pub fn convergent_key<R: Read>(
    mut reader: R,
    convergence_secret: &[u8],
    params: &ChkParams,
) -> Result<([u8; 16], u64), EncodeError> {
    let mut hasher = ConvergentHasher::new(convergence_secret, params)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EncodeError::Read(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// The convergent key of a plaintext fed to it in pieces as it arrives (a frontend's spool hashes
/// an upload while receiving it, so the upload itself reads the plaintext once, not twice).
///
/// The hash tag depends on the effective segment size, which depends on the length only while the
/// file is shorter than the maximum segment size; so up to one maximum segment is buffered before
/// hashing starts. The same key as [`convergent_key`] over the same bytes, however they are cut.
pub struct ConvergentHasher {
    secret: Vec<u8>,
    params: ChkParams,
    /// The first bytes, until they reach the maximum segment size.
    head: Vec<u8>,
    /// Set once the head is full: the tag is then that of the maximum segment size.
    hasher: Option<TaggedHasher>,
    size: u64,
}

impl std::fmt::Debug for ConvergentHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, nor the plaintext held in the head.
        f.debug_struct("ConvergentHasher")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ConvergentHasher {
    /// A hasher for a file encoded with `params` under `convergence_secret`.
    pub fn new(convergence_secret: &[u8], params: &ChkParams) -> Result<ConvergentHasher, EncodeError> {
        params.validate()?;
        Ok(ConvergentHasher {
            secret: convergence_secret.to_vec(),
            params: *params,
            head: Vec::new(),
            hasher: None,
            size: 0,
        })
    }

    /// Feeds the next bytes of the plaintext.
    pub fn update(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        if self.hasher.is_none() {
            let limit = self.params.max_segment_size;
            let room = (limit - self.head.len() as u64).min(data.len() as u64) as usize;
            self.head.extend_from_slice(&data[..room]);
            data = &data[room..];
            if self.head.len() as u64 == limit {
                let mut hasher = self.tagged(limit);
                hasher.update(&std::mem::take(&mut self.head));
                self.hasher = Some(hasher);
            }
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(data);
        }
    }

    /// The bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The key and the plaintext's length.
    pub fn finish(self) -> ([u8; 16], u64) {
        let hasher = match self.hasher {
            Some(hasher) => hasher,
            None => {
                let mut hasher = self.tagged((self.head.len() as u64).max(1));
                hasher.update(&self.head);
                hasher
            }
        };
        (truncate16(hasher.finalize()), self.size)
    }

    fn tagged(&self, hash_len: u64) -> TaggedHasher {
        let segment_size = ChkGeometry::new(&self.params, hash_len).segment_size;
        convergence_hasher(
            &self.secret,
            self.params.needed as usize,
            self.params.total as usize,
            segment_size,
        )
    }
}

/// A fresh random key, for uploads with convergence off.
pub fn random_key() -> [u8; 16] {
    rand::random()
}

/// One segment after encryption and erasure coding.
pub struct EncodedSegment {
    segnum: u64,
    unpadded_len: usize,
    block_len: usize,
    /// k: the blocks that are pieces of the ciphertext.
    needed: usize,
    /// The ciphertext padded to k × block length: the first k blocks.
    ciphertext: Vec<u8>,
    /// Blocks k..N.
    parity: Vec<Vec<u8>>,
    crypttext_hash: Hash,
    block_hashes: Vec<Hash>,
}

impl std::fmt::Debug for EncodedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncodedSegment({}, {} bytes)", self.segnum, self.unpadded_len)
    }
}

impl std::fmt::Debug for ChkEncoder {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChkEncoder")
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

impl EncodedSegment {
    /// The segment's N blocks, in share order, without copying: the first k are views of one
    /// ciphertext buffer, freed once the last of them is dropped.
    pub fn into_blocks(self) -> Vec<Bytes> {
        let block_len = self.block_len;
        let ciphertext = Bytes::from(self.ciphertext);
        let mut blocks: Vec<Bytes> = (0..self.needed)
            .map(|i| ciphertext.slice(i * block_len..(i + 1) * block_len))
            .collect();
        blocks.extend(self.parity.into_iter().map(Bytes::from));
        blocks
    }

    /// The segment number.
    pub fn segnum(&self) -> u64 {
        self.segnum
    }

    /// The unpadded ciphertext of the segment.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext[..self.unpadded_len]
    }

    /// The block for share `shnum`.
    pub fn block(&self, shnum: usize) -> &[u8] {
        if shnum < self.needed {
            &self.ciphertext[shnum * self.block_len..(shnum + 1) * self.block_len]
        } else {
            &self.parity[shnum - self.needed]
        }
    }
}

/// Encodes one file whose key and size are known.
pub struct ChkEncoder {
    key: [u8; 16],
    geometry: ChkGeometry,
    codec: Codec,
}

impl ChkEncoder {
    /// An encoder for a file of `size` (> 55) bytes under `key`.
    pub fn new(key: [u8; 16], params: &ChkParams, size: u64) -> Result<Self, EncodeError> {
        params.validate()?;
        if size <= LIT_THRESHOLD {
            return Err(EncodeError::TooSmallForChk(size));
        }
        let geometry = ChkGeometry::new(params, size);
        let codec = Codec::new(params.needed as usize, params.total as usize)?;
        Ok(ChkEncoder { key, geometry, codec })
    }

    /// The file's geometry.
    pub fn geometry(&self) -> &ChkGeometry {
        &self.geometry
    }

    /// Where everything lies in each share.
    pub fn offsets(&self) -> ShareOffsets {
        self.geometry.offsets()
    }

    /// The exact length of every share's data. The UEB's length is known before encoding because
    /// its hash fields have fixed sizes (Tahoe allocates buckets of exactly this size, and an HTTP
    /// storage server completes a share when every allocated byte is written).
    pub fn share_size(&self) -> u64 {
        let offsets = self.offsets();
        let g = &self.geometry;
        let placeholder = UriExtension {
            segment_size: g.segment_size,
            needed_shares: g.needed,
            total_shares: g.total,
            num_segments: g.num_segments,
            size: g.size,
            tail_segment_size: g.tail_segment_size,
            crypttext_hash: [0; 32],
            crypttext_root_hash: [0; 32],
            share_root_hash: [0; 32],
        };
        offsets.uri_extension + offsets.ueb_length_size() + placeholder.to_bytes().len() as u64
    }

    /// The share-data header, identical for every share of the file.
    pub fn header(&self) -> Vec<u8> {
        self.offsets().to_bytes()
    }

    /// Encrypts and encodes segment `segnum` from its plaintext (exactly the segment's length).
    pub fn encode_segment(&self, segnum: u64, mut plaintext: Vec<u8>) -> EncodedSegment {
        let (start, len) = self.geometry.segment_span(segnum);
        assert_eq!(
            plaintext.len() as u64,
            len,
            "invariant: segment {segnum} has the geometry's length"
        );
        AesCtr::at(&self.key, start).apply(&mut plaintext);
        let crypttext_hash = crypttext_segment_hash(&plaintext);
        let mut ciphertext = plaintext;
        let unpadded_len = ciphertext.len();
        ciphertext.resize(self.geometry.padded_segment_len(segnum) as usize, 0);
        let block_len = self.geometry.block_len(segnum) as usize;
        let k = self.codec.needed();
        let pieces: Vec<&[u8]> = ciphertext.chunks(block_len.max(1)).take(k).collect();
        // Each buffer allocated zeroed, not cloned from a first one (a copy per parity block).
        let mut parity: Vec<Vec<u8>> = (k..self.codec.total()).map(|_| vec![0; block_len]).collect();
        self.codec.encode_parity(&pieces, &mut parity);
        let mut segment = EncodedSegment {
            segnum,
            unpadded_len,
            block_len,
            needed: k,
            ciphertext,
            parity,
            crypttext_hash,
            block_hashes: vec![],
        };
        segment.block_hashes = (0..self.codec.total())
            .map(|j| block_hash(segment.block(j)))
            .collect();
        segment
    }

    /// Starts the in-order accumulation of hashes.
    pub fn trailer_builder(&self) -> ShareTrailerBuilder {
        let n = self.geometry.total as usize;
        let segments = self.geometry.num_segments as usize;
        ShareTrailerBuilder {
            crypttext_hasher: TaggedHasher::new(tags::CRYPTTEXT),
            segment_hashes: Vec::with_capacity(segments),
            block_hashes: vec![Vec::with_capacity(segments); n],
        }
    }
}

/// Accumulates, in segment order, what the share trailers and the UEB need.
#[derive(Debug)]
pub struct ShareTrailerBuilder {
    crypttext_hasher: TaggedHasher,
    segment_hashes: Vec<Hash>,
    block_hashes: Vec<Vec<Hash>>,
}

/// The end product of an encode: the cap, the UEB and each share's trailer.
#[derive(Debug)]
pub struct ChkEncoded {
    /// The read cap.
    pub cap: ChkCap,
    /// The URI extension block.
    pub uri_extension: UriExtension,
    /// For each share, the bytes from the plaintext-hash-tree offset to the end of the share.
    pub trailers: Vec<Vec<u8>>,
    /// Where the trailer starts in every share.
    pub trailer_offset: u64,
}

impl ShareTrailerBuilder {
    /// Adds the next segment; segments must come in order.
    pub fn add(&mut self, segment: &EncodedSegment) {
        assert_eq!(
            segment.segnum as usize,
            self.segment_hashes.len(),
            "invariant: segments arrive in order"
        );
        self.crypttext_hasher.update(segment.ciphertext());
        self.segment_hashes.push(segment.crypttext_hash);
        for (share, hash) in self.block_hashes.iter_mut().zip(&segment.block_hashes) {
            share.push(*hash);
        }
    }

    /// Builds the trees, the UEB and the cap once every segment was added.
    pub fn finish(self, encoder: &ChkEncoder) -> ChkEncoded {
        let geometry = &encoder.geometry;
        assert_eq!(
            self.segment_hashes.len() as u64,
            geometry.num_segments,
            "invariant: every segment was added"
        );
        let crypttext_tree = HashTree::new(&self.segment_hashes);
        let block_trees: Vec<HashTree> = self
            .block_hashes
            .iter()
            .map(|leaves| HashTree::new(leaves))
            .collect();
        let block_roots: Vec<Hash> = block_trees.iter().map(HashTree::root).collect();
        let share_tree = HashTree::new(&block_roots);
        let uri_extension = UriExtension {
            segment_size: geometry.segment_size,
            needed_shares: geometry.needed,
            total_shares: geometry.total,
            num_segments: geometry.num_segments,
            size: geometry.size,
            tail_segment_size: geometry.tail_segment_size,
            crypttext_hash: self.crypttext_hasher.finalize(),
            crypttext_root_hash: crypttext_tree.root(),
            share_root_hash: share_tree.root(),
        };
        let ueb = uri_extension.to_bytes();
        let offsets = encoder.offsets();
        let tree_len = crypttext_tree.nodes().len() * 32;
        let crypttext_bytes = crypttext_tree.to_bytes();
        let trailers = block_trees
            .iter()
            .enumerate()
            .map(|(shnum, block_tree)| {
                let mut out = Vec::with_capacity(3 * tree_len + 34 * 9 + 8 + ueb.len());
                out.resize(tree_len, 0); // the unused plaintext hash tree
                out.extend_from_slice(&crypttext_bytes);
                out.extend_from_slice(&block_tree.to_bytes());
                for index in share_hash_chain_order(geometry.total as usize, shnum) {
                    out.extend_from_slice(&(index as u16).to_be_bytes());
                    out.extend_from_slice(&share_tree.node(index));
                }
                if offsets.version == 1 {
                    out.extend_from_slice(&(ueb.len() as u32).to_be_bytes());
                } else {
                    out.extend_from_slice(&(ueb.len() as u64).to_be_bytes());
                }
                out.extend_from_slice(&ueb);
                out
            })
            .collect();
        let cap = ChkCap {
            key: encoder.key,
            ueb_hash: uri_extension_hash(&ueb),
            needed: geometry.needed,
            total: geometry.total,
            size: geometry.size,
        };
        ChkEncoded {
            cap,
            uri_extension,
            trailers,
            trailer_offset: offsets.plaintext_hash_tree,
        }
    }
}

/// Where encoded shares go: each call writes `data` at `offset` of share `shnum`'s data. Writes to one
/// share arrive in increasing offset order without gaps.
pub trait ShareSink {
    /// Announces, before any write, how many shares there are and each share's exact length
    /// (storage servers allocate space from it; memory sinks reserve it).
    fn begin(&mut self, total_shares: usize, share_size: u64) -> io::Result<()> {
        let _ = (total_shares, share_size);
        Ok(())
    }

    /// Writes part of a share.
    fn write(&mut self, shnum: usize, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Writes a block of a share, handing over its buffer: a sink that keeps or queues the data
    /// takes it as it is instead of copying it (the encoder writes every block this way).
    fn write_block(&mut self, shnum: usize, offset: u64, block: Bytes) -> io::Result<()> {
        self.write(shnum, offset, &block)
    }
}

/// A sink that keeps every share in memory (tests, small files, benchmarks).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemorySink {
    /// The shares' data, indexed by share number.
    pub shares: Vec<Vec<u8>>,
}

impl ShareSink for MemorySink {
    fn begin(&mut self, total_shares: usize, share_size: u64) -> io::Result<()> {
        self.shares.resize_with(total_shares, Vec::new);
        for share in &mut self.shares {
            share.clear();
            share.reserve(share_size as usize);
        }
        Ok(())
    }

    fn write(&mut self, shnum: usize, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.shares.len() <= shnum {
            self.shares.resize(shnum + 1, Vec::new());
        }
        let share = &mut self.shares[shnum];
        if share.len() as u64 != offset {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "share writes must be contiguous",
            ));
        }
        share.extend_from_slice(data);
        Ok(())
    }
}

/// A sink that only counts bytes (for computing caps without storing shares).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiscardSink {
    /// Bytes written to all shares.
    pub bytes: u64,
}

impl ShareSink for DiscardSink {
    fn write(&mut self, _shnum: usize, _offset: u64, data: &[u8]) -> io::Result<()> {
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// Called with the number of plaintext bytes encoded so far.
pub type Progress<'a> = &'a mut (dyn FnMut(u64) + Send);

/// Encodes `size` bytes from `reader` under `key`, writing every share to `sink` as segments complete.
///
/// Segments are encoded in parallel on the rayon pool; at most `threads + 1` segments are in
/// flight, which bounds memory.
pub fn encode_stream<R: Read>(
    mut reader: R,
    size: u64,
    key: [u8; 16],
    params: &ChkParams,
    sink: &mut (dyn ShareSink + Send),
    progress: Option<Progress<'_>>,
) -> Result<ChkEncoded, EncodeError> {
    let encoder = Arc::new(ChkEncoder::new(key, params, size)?);
    let geometry = *encoder.geometry();
    let header = encoder.header();
    sink.begin(geometry.total as usize, encoder.share_size())
        .map_err(EncodeError::Write)?;
    for shnum in 0..geometry.total as usize {
        sink.write(shnum, 0, &header).map_err(EncodeError::Write)?;
    }
    let depth = rayon::current_num_threads() + 1;
    let (queue, pending) = sync_channel::<Receiver<EncodedSegment>>(depth);
    // Each segment's buffers go to the sink as its blocks (no copy) and are freed there once sent.
    // Segments in the pipeline are bounded by `depth`; blocks the sink queues, by the sink.

    std::thread::scope(|scope| {
        let collector_encoder = Arc::clone(&encoder);
        let collector = scope.spawn(move || {
            let collected = collect_segments(&collector_encoder, pending, &mut *sink, progress);
            (collected, sink)
        });
        let mut read_result = Ok(());
        for segnum in 0..geometry.num_segments {
            let (_, len) = geometry.segment_span(segnum);
            // Room for the padding too, so that padding never reallocates.
            let mut buf = Vec::with_capacity(geometry.padded_segment_len(segnum) as usize);
            buf.resize(len as usize, 0);
            if let Err(e) = read_exact_or_short(&mut reader, &mut buf, segnum * geometry.segment_size, size) {
                read_result = Err(e);
                break;
            }
            let (done, result) = sync_channel(1);
            let worker = Arc::clone(&encoder);
            rayon::spawn(move || {
                let _ = done.send(worker.encode_segment(segnum, buf));
            });
            if queue.send(result).is_err() {
                break; // the collector failed; its error is reported below
            }
        }
        drop(queue);
        let (collected, sink) = collector.join().expect("invariant: the collector does not panic");
        read_result?;
        let builder = collected?;
        let encoded = builder.finish(&encoder);
        for (shnum, trailer) in encoded.trailers.iter().enumerate() {
            sink.write(shnum, encoded.trailer_offset, trailer)
                .map_err(EncodeError::Write)?;
        }
        Ok(encoded)
    })
}

fn collect_segments(
    encoder: &ChkEncoder,
    pending: Receiver<Receiver<EncodedSegment>>,
    sink: &mut (dyn ShareSink + Send),
    mut progress: Option<Progress<'_>>,
) -> Result<ShareTrailerBuilder, EncodeError> {
    let mut builder = encoder.trailer_builder();
    let offsets = encoder.offsets();
    let block_size = encoder.geometry().block_size();
    let mut done = 0u64;
    for result in pending {
        let segment = result
            .recv()
            .expect("invariant: every spawned segment job sends its result");
        builder.add(&segment);
        let offset = offsets.data + segment.segnum() * block_size;
        done += segment.ciphertext().len() as u64;
        for (shnum, block) in segment.into_blocks().into_iter().enumerate() {
            sink.write_block(shnum, offset, block)
                .map_err(EncodeError::Write)?;
        }
        if let Some(report) = progress.as_mut() {
            report(done);
        }
    }
    Ok(builder)
}

fn read_exact_or_short<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    at: u64,
    size: u64,
) -> Result<(), EncodeError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(EncodeError::ShortInput {
                    got: at + filled as u64,
                    expected: size,
                });
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(EncodeError::Read(e)),
        }
    }
    Ok(())
}

/// Encodes a whole in-memory file (> 55 bytes) into shares held in memory.
pub fn encode_bytes(
    plaintext: &[u8],
    key: [u8; 16],
    params: &ChkParams,
) -> Result<(ChkEncoded, MemorySink), EncodeError> {
    let mut sink = MemorySink::default();
    let encoded = encode_stream(plaintext, plaintext.len() as u64, key, params, &mut sink, None)?;
    Ok((encoded, sink))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashes::convergence_hash;

    /// The key fed in pieces is the one-shot hash of the whole plaintext under the segment size of
    /// its length, for lengths around the maximum segment and however the pieces are cut.
    #[test]
    fn hashing_in_pieces_is_hashing_the_whole() {
        let params = ChkParams {
            needed: 3,
            total: 10,
            max_segment_size: 4096,
        };
        let data: Vec<u8> = (0..3 * 4096 + 77).map(|i| (i * 7 + i / 251) as u8).collect();
        for len in [0, 1, 55, 56, 4095, 4096, 4097, 8192, data.len()] {
            let plaintext = &data[..len];
            let hash_len = (len as u64).clamp(1, 4096);
            let segment_size = ChkGeometry::new(&params, hash_len).segment_size;
            let expected = convergence_hash(3, 10, segment_size, plaintext, b"secret");
            for piece in [1, 100, 4096, 5000, usize::MAX] {
                let mut hasher = ConvergentHasher::new(b"secret", &params).expect("params");
                for chunk in plaintext.chunks(piece.min(len.max(1))) {
                    hasher.update(chunk);
                }
                assert_eq!(
                    hasher.finish(),
                    (expected, len as u64),
                    "len {len}, pieces of {piece}"
                );
            }
            let (key, size) = convergent_key(plaintext, b"secret", &params).expect("key");
            assert_eq!((key, size), (expected, len as u64), "convergent_key, len {len}");
            let (other, _) = convergent_key(plaintext, b"other secret", &params).expect("key");
            assert_ne!(other, expected, "the secret is part of the key");
        }
    }

    /// A segment's blocks handed over are its blocks as read in place, for a whole segment and a
    /// padded tail, and the first k are pieces of one buffer (no copy was made).
    #[test]
    fn blocks_handed_over_are_the_segments_blocks_uncopied() {
        let params = ChkParams {
            needed: 3,
            total: 10,
            max_segment_size: 4096,
        };
        let size = 4096 + 1000;
        let encoder = ChkEncoder::new([7; 16], &params, size).expect("encoder");
        for segnum in 0..2 {
            let (_, len) = encoder.geometry().segment_span(segnum);
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 13 + segnum) as u8).collect();
            let segment = encoder.encode_segment(segnum, plaintext);
            let expected: Vec<Vec<u8>> = (0..10).map(|j| segment.block(j).to_vec()).collect();
            let block_len = expected[0].len();
            let blocks = segment.into_blocks();
            assert_eq!(blocks.len(), 10);
            for (j, block) in blocks.iter().enumerate() {
                assert_eq!(block[..], expected[j][..], "segment {segnum}, block {j}");
            }
            for i in 1..3 {
                assert_eq!(blocks[i].as_ptr(), blocks[0].as_ptr().wrapping_add(i * block_len));
            }
        }
    }
}
