//! cargo-fuzz target `nurl`: the body is `tests::fuzz::nurl` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::nurl(data));
