//! cargo-fuzz target `ftp_session`: the body is `tests::fuzz::ftp_session` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::ftp_session(data));
