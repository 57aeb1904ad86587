//! cargo-fuzz target `mutable_share`: the body is `tests::fuzz::mutable_share` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::mutable_share(data));
