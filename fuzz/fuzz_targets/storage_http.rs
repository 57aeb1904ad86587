//! cargo-fuzz target `storage_http`: the body is `tests::fuzz::storage_http` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::storage_http(data));
