//! cargo-fuzz target `web`: the body is `tests::fuzz::web` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::web(data));
