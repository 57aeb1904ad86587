//! cargo-fuzz target `share_container`: the body is `tests::fuzz::share_container` (tests/src/fuzz), shared with the
//! stable runner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tests::fuzz::share_container(data));
