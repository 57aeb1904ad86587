//! The relay in front of libunftp's control connection.
//!
//! libunftp's control-channel codec buffers a command line until its newline, with no limit, so a
//! client that never sends a newline grows the gateway's memory for as long as it keeps sending
//! (before logging in; 300 MiB sent raised a gateway's peak RSS from 26 to 334 MB).
//! `Server::service` takes a concrete `TcpStream`, so the stream cannot be wrapped. Instead each
//! control connection is relayed to libunftp over a loopback connection, and the relay counts the
//! bytes the client sends that the server has not answered yet: FTP is one reply per command, so
//! a client more than [`MAX_UNANSWERED`] ahead of the server's replies is not speaking FTP, and
//! its connection is closed. Over TLS (after `AUTH TLS`) the relay sees ciphertext, and the count
//! holds the same. Data connections are not relayed.
//!
//! While the control connection is plaintext (before `AUTH TLS`), the relay also reads the server's
//! replies: after a `221` (the reply to `QUIT`) it closes the client's connection itself. libunftp
//! sometimes kept the connection open after its `221` (fuzz/findings/README.md), and a client that
//! waits for the server to close (as RFC 959 has it) then waited for the idle timeout.
//!
//! What libunftp would otherwise take from the socket comes from the client's own connection:
//! the passive address (`PASV` and the data listener's bind address) and the client's address for
//! the login limit (`PeerAuth`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, Principal};

/// How far (in bytes) a client may run ahead of the server's replies. FTP command lines are short
/// (a path of a few KiB at most) and a TLS handshake's client flights are a few KiB.
pub(crate) const MAX_UNANSWERED: u64 = 64 * 1024;

/// Making a loopback connection pair: a moment at most.
const PAIR_TIMEOUT: Duration = Duration::from_secs(5);

/// A loopback listener that hands out connected pairs (one end for the relay, one for libunftp).
#[derive(Debug)]
pub(crate) struct Loopback {
    listener: TcpListener,
    address: SocketAddr,
    /// One pair at a time, so the accepted end is the one just connected.
    pairing: tokio::sync::Mutex<()>,
}

impl Loopback {
    pub(crate) async fn new() -> io::Result<Loopback> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        Ok(Loopback {
            listener,
            address,
            pairing: tokio::sync::Mutex::new(()),
        })
    }

    /// A connected pair: (the relay's end, libunftp's end). A connection from anyone else on the
    /// host that arrives meanwhile is closed.
    pub(crate) async fn pair(&self) -> io::Result<(TcpStream, TcpStream)> {
        let _one_at_a_time = self.pairing.lock().await;
        let pairing = async {
            let ours = TcpStream::connect(self.address).await?;
            let expected = ours.local_addr()?;
            loop {
                let (theirs, peer) = self.listener.accept().await?;
                if peer == expected {
                    return Ok((ours, theirs));
                }
            }
        };
        tokio::time::timeout(PAIR_TIMEOUT, pairing)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the loopback pair did not connect"))?
    }
}

/// Why a relay ended.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// Either side closed, or a socket failed.
    Closed,
    /// The client ran more than [`MAX_UNANSWERED`] bytes ahead of the replies.
    TooFarAhead,
    /// The server said goodbye (`221`) on a plaintext connection: the relay closed it.
    Quit,
}

/// Reads the server's replies while the control connection is plaintext.
#[derive(Debug, Default)]
struct Replies {
    /// The current reply line so far (its first bytes only: a code is all that matters).
    line: Vec<u8>,
    /// `AUTH TLS` was accepted: from here on the bytes are ciphertext.
    encrypted: bool,
}

/// What a reply line says to the relay.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    Nothing,
    Goodbye,
}

impl Replies {
    /// How much of a line is kept: the code and its separator.
    const KEEP: usize = 4;

    fn feed(&mut self, bytes: &[u8]) -> Said {
        for &byte in bytes {
            if self.encrypted {
                return Said::Nothing;
            }
            if byte == b'\n' {
                match self.line.as_slice() {
                    b"221 " => return Said::Goodbye,
                    // "234 AUTH command OK": the TLS handshake follows.
                    b"234 " => self.encrypted = true,
                    _ => {}
                }
                self.line.clear();
            } else if self.line.len() < Self::KEEP {
                self.line.push(byte);
            }
        }
        Said::Nothing
    }
}

/// Copies bytes both ways between the client and libunftp until either side closes, or until the
/// client has sent more than `limit` bytes since the server last sent anything.
pub(crate) async fn relay(client: TcpStream, server: TcpStream, limit: u64) -> RelayEnd {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    let mut unanswered: u64 = 0;
    let mut client_open = true;
    let mut replies = Replies::default();
    loop {
        tokio::select! {
            read = client_read.read(&mut from_client), if client_open => match read {
                Ok(0) | Err(_) => {
                    // The client is done sending: let libunftp see the end, then relay what it
                    // still says.
                    client_open = false;
                    let _ = server_write.shutdown().await;
                }
                Ok(n) => {
                    unanswered += n as u64;
                    if unanswered > limit {
                        return RelayEnd::TooFarAhead;
                    }
                    if server_write.write_all(&from_client[..n]).await.is_err() {
                        return RelayEnd::Closed;
                    }
                }
            },
            read = server_read.read(&mut from_server) => match read {
                Ok(0) | Err(_) => {
                    let _ = client_write.shutdown().await;
                    return RelayEnd::Closed;
                }
                Ok(n) => {
                    unanswered = 0;
                    if client_write.write_all(&from_server[..n]).await.is_err() {
                        return RelayEnd::Closed;
                    }
                    if replies.feed(&from_server[..n]) == Said::Goodbye {
                        let _ = client_write.shutdown().await;
                        return RelayEnd::Quit;
                    }
                }
            },
        }
    }
}

/// Binds libunftp's passive listeners on the address the client reached (libunftp would bind the
/// loopback address its relayed connection has).
#[derive(Debug)]
pub(crate) struct OriginalAddress(pub(crate) IpAddr);

#[async_trait]
impl libunftp::options::Binder for OriginalAddress {
    async fn bind(&mut self, _relayed: IpAddr, ports: RangeInclusive<u16>) -> io::Result<TcpSocket> {
        let (first, last) = (*ports.start(), *ports.end());
        let count = u32::from(last.saturating_sub(first)) + 1;
        // Start at a random port of the range, as libunftp does, so sessions do not all race for
        // the first one.
        let start = rand::random::<u32>() % count;
        let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no passive port is free");
        for i in 0..count {
            let port = first as u32 + (start + i) % count;
            let socket = match self.0 {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            match socket.bind(SocketAddr::new(self.0, port as u16)) {
                Ok(()) => return Ok(socket),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }
}

/// The accounts' authenticator with the client's own address (libunftp sees the relay's).
#[derive(Debug)]
pub(crate) struct PeerAuth {
    pub(crate) inner: Arc<dyn Authenticator + Send + Sync>,
    pub(crate) peer: IpAddr,
}

#[async_trait]
impl Authenticator for PeerAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let creds = Credentials {
            source_ip: self.peer,
            ..creds.clone()
        };
        self.inner.authenticate(username, &creds).await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Sessions starting at once each get their own pair: what one end writes arrives at the end
    /// handed out with it, never at another session's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pairs_made_at_once_are_each_connected_to_each_other() {
        let loopback = Arc::new(Loopback::new().await.unwrap());
        let sessions = (0..32u8).map(|n| {
            let loopback = Arc::clone(&loopback);
            tokio::spawn(async move {
                let (mut ours, mut theirs) = loopback.pair().await.unwrap();
                ours.write_all(&[n; 4]).await.unwrap();
                let mut got = [0u8; 4];
                theirs.read_exact(&mut got).await.unwrap();
                assert_eq!(got, [n; 4]);
            })
        });
        for session in sessions.collect::<Vec<_>>() {
            session.await.unwrap();
        }
    }

    #[test]
    fn a_plaintext_goodbye_is_seen_and_nothing_after_auth_tls() {
        let mut replies = Replies::default();
        assert_eq!(
            replies.feed(b"220 Welcome\r\n211-Features:\r\n 221 not a code\r\n211 End\r\n"),
            Said::Nothing
        );
        // A reply split across reads.
        assert_eq!(replies.feed(b"22"), Said::Nothing);
        assert_eq!(replies.feed(b"1 Bye!\r"), Said::Nothing);
        assert_eq!(replies.feed(b"\n"), Said::Goodbye);
        let mut replies = Replies::default();
        assert_eq!(replies.feed(b"221-Goodbye,\r\n"), Said::Nothing);
        assert_eq!(replies.feed(b"221 for now\r\n"), Said::Goodbye);
        // After AUTH TLS the bytes are ciphertext, whatever they look like.
        let mut replies = Replies::default();
        assert_eq!(replies.feed(b"234 AUTH command OK\r\n221 \n"), Said::Nothing);
        assert_eq!(replies.feed(b"\n221 Bye\r\n"), Said::Nothing);
    }

    /// A server that says 221 and then keeps its end open: the relay closes the client's.
    #[tokio::test]
    async fn the_relay_closes_the_connection_after_a_plaintext_goodbye() {
        let loopback = Loopback::new().await.unwrap();
        let (relay_end, mut server) = loopback.pair().await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let relaying = tokio::spawn(relay(accepted, relay_end, MAX_UNANSWERED));
        server.write_all(b"220 Hello\r\n").await.unwrap();
        client.write_all(b"QUIT\r\n").await.unwrap();
        let mut got = [0u8; 6];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"QUIT\r\n");
        server.write_all(b"221 Bye!\r\n").await.unwrap();
        let mut replies = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut replies))
            .await
            .expect("the client's connection was not closed")
            .unwrap();
        assert_eq!(replies, b"220 Hello\r\n221 Bye!\r\n");
        assert!(matches!(relaying.await.unwrap(), RelayEnd::Quit));
        // The server's end is still open here (`server` lives on): the relay did not wait for it.
        drop(server);
    }
}
