//! cargo-fuzz target `ueb`: the body is `tests::fuzz::ueb` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::ueb(data));
