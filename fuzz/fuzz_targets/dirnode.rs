//! cargo-fuzz target `dirnode`: the body is `tests::fuzz::dirnode` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::dirnode(data));
