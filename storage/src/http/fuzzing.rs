//! Entry points for the fuzz targets (`tests/src/fuzz.rs`, run by the stable runner and by
//! cargo-fuzz under `fuzz/`): the crate-private decoders of the bytes a peer sends, each with the
//! invariants that must hold whatever the bytes. Not an API: hidden from the docs, and nothing
//! but the fuzz targets calls it.

use super::wire;

/// What the server reads from a client: every request body decoder and the `Range` and
/// `Content-Range` request headers. A body that decodes re-encodes to one that decodes to the same
/// request.
#[doc(hidden)]
pub fn server_inputs(bytes: &[u8]) {
    if let Ok(request) = wire::decode_allocate_request(bytes) {
        let again = wire::encode_allocate_request(&request.share_numbers, request.allocated_size);
        assert_eq!(wire::decode_allocate_request(&again), Ok(request));
    }
    if let Ok(reason) = wire::decode_corrupt(bytes) {
        assert_eq!(wire::decode_corrupt(&wire::encode_corrupt(&reason)), Ok(reason));
    }
    if let Ok(request) = wire::decode_rtw_request(bytes) {
        let again = wire::encode_rtw_request(&request.test_write_vectors, &request.read_vector);
        assert_eq!(wire::decode_rtw_request(&again), Ok(request));
    }
    if let Some((start, end)) = wire::parse_range(bytes) {
        assert!(start <= end);
    }
    if let Some((start, end)) = wire::parse_content_range(bytes) {
        assert!(start <= end);
    }
}

/// What the client reads from a server: every response body decoder and `Content-Range`. A
/// response that decodes re-encodes to one that decodes to the same value.
#[doc(hidden)]
pub fn client_inputs(bytes: &[u8]) {
    if let Ok(version) = wire::decode_version(bytes) {
        assert_eq!(wire::decode_version(&wire::encode_version(&version)), Ok(version));
    }
    if let Ok(allocation) = wire::decode_allocation(bytes) {
        assert_eq!(
            wire::decode_allocation(&wire::encode_allocation(&allocation)),
            Ok(allocation)
        );
    }
    if let Ok(progress) = wire::decode_progress(bytes, false) {
        assert!(progress.required.iter().all(|r| r.start <= r.end));
        assert_eq!(
            wire::decode_progress(&wire::encode_progress(&progress), false),
            Ok(progress)
        );
    }
    if let Ok(shares) = wire::decode_share_set(bytes) {
        assert_eq!(
            wire::decode_share_set(&wire::encode_share_set(&shares)),
            Ok(shares)
        );
    }
    if let Ok(result) = wire::decode_rtw_result(bytes) {
        assert_eq!(
            wire::decode_rtw_result(&wire::encode_rtw_result(&result)),
            Ok(result)
        );
    }
    if let Ok(status) = wire::decode_status(bytes) {
        assert_eq!(wire::decode_status(&wire::encode_status(&status)), Ok(status));
    }
    if let Some((start, end, total)) = wire::parse_response_content_range(bytes) {
        assert!(start <= end && total.is_none_or(|t| end < t));
    }
}

/// The `Authorization` header value for a swissnum (for building requests to the router).
#[doc(hidden)]
pub fn authorization(swissnum: &str) -> String {
    wire::authorization_value(swissnum)
}

/// An `X-Tahoe-Authorization` value: kind 0 lease-renew, 1 lease-cancel, 2 upload, 3
/// write-enabler (modulo 4).
#[doc(hidden)]
pub fn secret_header(kind: u8, value: &[u8]) -> String {
    use wire::SecretKind::{LeaseCancel, LeaseRenew, Upload, WriteEnabler};
    let kind = [LeaseRenew, LeaseCancel, Upload, WriteEnabler][usize::from(kind % 4)];
    wire::secret_header_value(kind, value)
}

/// A `POST /immutable/:si` body.
#[doc(hidden)]
pub fn allocate_body(
    share_numbers: &std::collections::BTreeSet<crate::ShareNum>,
    allocated_size: u64,
) -> Vec<u8> {
    wire::encode_allocate_request(share_numbers, allocated_size)
}

/// A `POST /mutable/:si/read-test-write` body.
#[doc(hidden)]
pub fn rtw_body(
    test_write_vectors: &std::collections::BTreeMap<crate::ShareNum, crate::api::TestWriteVectors>,
    read_vector: &[crate::api::ReadVector],
) -> Vec<u8> {
    wire::encode_rtw_request(test_write_vectors, read_vector)
}

/// A `POST …/corrupt` body.
#[doc(hidden)]
pub fn corrupt_body(reason: &str) -> Vec<u8> {
    wire::encode_corrupt(reason)
}
