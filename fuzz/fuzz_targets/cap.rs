//! cargo-fuzz target `cap`: the body is `tests::fuzz::cap` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::cap(data));
