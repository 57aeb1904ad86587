//! cargo-fuzz target `accounts`: the body is `tests::fuzz::accounts` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::accounts(data));
