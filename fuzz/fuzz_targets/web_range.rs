//! cargo-fuzz target `web_range`: the body is `tests::fuzz::web_range` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::web_range(data));
