//! Immutable (CHK) files: parameters, share layout, encoder and decoder.

mod decode;
mod encode;
pub mod layout;
mod params;

pub use decode::{
    BadShare, ChkReader, DownloadError, HEADER_READ, LateSources, MemoryShare, ShareProblem, ShareReadError,
    ShareSource, validation_reads, verify_share,
};
pub use encode::{
    ChkEncoded, ChkEncoder, ConvergentHasher, DiscardSink, EncodeError, EncodedSegment, MemorySink, Progress,
    ShareSink, ShareTrailerBuilder, convergent_key, encode_bytes, encode_stream, random_key,
};
pub use params::{ChkGeometry, ChkParams, DEFAULT_MAX_SEGMENT_SIZE};
