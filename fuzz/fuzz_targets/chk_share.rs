//! cargo-fuzz target `chk_share`: the body is `tests::fuzz::chk_share` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::chk_share(data));
