//! cargo-fuzz target `fs_path`: the body is `tests::fuzz::fs_path` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::fs_path(data));
