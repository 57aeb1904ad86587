//! cargo-fuzz target `sftp_packet`: the body is `tests::fuzz::sftp_packet` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::sftp_packet(data));
