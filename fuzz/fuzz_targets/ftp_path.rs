//! cargo-fuzz target `ftp_path`: the body is `tests::fuzz::ftp_path` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::ftp_path(data));
