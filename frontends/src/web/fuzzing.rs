//! Entry points for the fuzz targets (`tests/src/fuzz.rs`, run by the stable runner and by
//! cargo-fuzz under `fuzz/`): the gateway's `Range`/`If-Range` handling, which is private to
//! `download.rs`. Not an API: hidden from the docs, and nothing but the fuzz targets calls it.

use axum::http::{HeaderMap, HeaderValue, header};

use super::download::{MAX_RANGES, RangeAnswer, requested_ranges};

/// What a download of a `size`-byte file with ETag `tag` answers to these `Range` and `If-Range`
/// headers: `None` for the whole file, `Some(vec![])` for 416, else the inclusive ranges served.
/// Every range served lies within the file, and there are at most 16.
#[doc(hidden)]
pub fn ranges(
    range: &[u8],
    if_range: Option<&[u8]>,
    size: u64,
    tag: Option<&str>,
) -> Option<Vec<(u64, u64)>> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(range) {
        headers.insert(header::RANGE, value);
    }
    if let Some(value) = if_range.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        headers.insert(header::IF_RANGE, value);
    }
    match requested_ranges(&headers, size, tag) {
        RangeAnswer::Whole => None,
        RangeAnswer::Unsatisfiable => Some(Vec::new()),
        RangeAnswer::Parts(parts) => {
            assert!(!parts.is_empty() && parts.len() <= MAX_RANGES);
            let parts: Vec<(u64, u64)> = parts.into_iter().map(|r| (*r.start(), *r.end())).collect();
            assert!(parts.iter().all(|&(start, end)| start <= end && end < size));
            Some(parts)
        }
    }
}
