//! Helpers shared by the `tessera` binary's integration tests (each test file is its own crate and
//! includes this module with `mod common;`).

/// A port on 127.0.0.1 that was free a moment ago (a test that loses the race retries).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}
