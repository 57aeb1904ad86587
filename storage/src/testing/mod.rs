//! Test support (feature `server`): the storage conformance suite and the harness to run it over HTTPS.
//!
//! - [`conformance`]: one suite, written once against the [`StorageClient`] trait, that every way of
//!   reaching a server must pass (Tahoe's `test_istorageserver.py` idea). `storage/tests/conformance.rs`
//!   runs it over the in-process [`crate::server::LocalStorageClient`] and over
//!   [`crate::http::HttpStorageClient`] against a real HTTPS server on `127.0.0.1:0`.
//! - [`HttpsTestServer`]: a [`StorageServer`] served over HTTPS on a loopback port with a fresh identity
//!   and swissnum, shut down gracefully on [`HttpsTestServer::shutdown`] (or aborted on drop).
//! - [`RawClient`]: sends arbitrary requests over a pinned TLS connection, bypassing the typed client,
//!   so tests can check exact status codes for malformed input.
//! - [`link`]: [`EmulatedLink`], a TCP relay that puts a server behind an emulated network link
//!   (delay, jitter, rate, and faults switchable at run time), used by the test grid in `tests/`
//!   and by `tessera debug bench-grid`.
//! - Deterministic secrets and data: [`storage_index`], [`lease_secrets`], [`upload_secret`],
//!   [`write_enabler`], [`pattern`].

mod conformance;
pub mod link;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub use conformance::{Scenario, conformance, scenarios};
pub use link::{EmulatedLink, LinkConfig, LinkStats};

use crate::StorageIndex;
use crate::api::{LeaseSecrets, UploadSecret, WriteEnabler};
use crate::http::{HttpClientOptions, HttpStorageClient};
use crate::nurl::{Nurl, generate_swissnum};
use crate::server::StorageServer;
use crate::tls::{TlsIdentity, pinned_client_config};

/// A storage index derived from `n` (distinct for distinct `n`).
pub fn storage_index(n: u8) -> StorageIndex {
    let mut bytes = [0x5a; 16];
    bytes[0] = n;
    bytes[15] = n.wrapping_mul(37);
    StorageIndex(bytes)
}

/// Lease secrets derived from `n`.
pub fn lease_secrets(n: u8) -> LeaseSecrets {
    LeaseSecrets {
        renew: [n; 32],
        cancel: [n ^ 0xff; 32],
    }
}

/// A 20-byte upload secret derived from `n` (the stock client's size).
pub fn upload_secret(n: u8) -> UploadSecret {
    UploadSecret(vec![n.wrapping_add(1); 20])
}

/// A write enabler derived from `n`.
pub fn write_enabler(n: u8) -> WriteEnabler {
    WriteEnabler([n.wrapping_add(0x33); 32])
}

/// `len` bytes of a deterministic pattern that differs with `seed` and has no short period.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            // xorshift32
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// A [`StorageServer`] behind the real HTTPS server on `127.0.0.1:<free port>`.
#[derive(Debug)]
pub struct HttpsTestServer {
    /// The NURL clients use.
    pub nurl: Nurl,
    /// The bound address.
    pub addr: SocketAddr,
    /// The server's TLS identity.
    pub identity: TlsIdentity,
    /// The store behind it.
    pub store: Arc<StorageServer>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl HttpsTestServer {
    /// Starts serving `store` with a fresh identity and swissnum.
    pub async fn start(store: Arc<StorageServer>) -> io::Result<Self> {
        Self::start_wrapped(store, |router| router).await
    }

    /// As [`start`](Self::start), with the storage router passed through `wrap` first (a layer
    /// that makes the server misbehave, or behave as an older one).
    pub async fn start_wrapped(
        store: Arc<StorageServer>,
        wrap: impl FnOnce(axum::Router) -> axum::Router,
    ) -> io::Result<Self> {
        let identity = TlsIdentity::generate().map_err(io::Error::other)?;
        let swissnum = generate_swissnum();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let nurl = Nurl::new(
            identity.spki_hash(),
            addr.ip().to_string(),
            addr.port(),
            swissnum.clone(),
        );
        let router = wrap(crate::http::router(store.clone(), swissnum));
        let (shutdown, stop) = oneshot::channel::<()>();
        let served_identity = identity.clone();
        let task = tokio::spawn(async move {
            crate::http::serve(listener, &served_identity, router, async move {
                let _ = stop.await;
            })
            .await
        });
        Ok(HttpsTestServer {
            nurl,
            addr,
            identity,
            store,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// A typed client with default options.
    pub fn client(&self) -> HttpStorageClient {
        HttpStorageClient::new(&self.nurl).expect("invariant: the test server's NURL is valid")
    }

    /// A typed client with the given options.
    pub fn client_with(&self, options: HttpClientOptions) -> HttpStorageClient {
        HttpStorageClient::with_options(&self.nurl, options)
            .expect("invariant: the test server's NURL is valid")
    }

    /// The NURL of this server as reached through `addr` (an [`EmulatedLink`] in front of it):
    /// the same identity and swissnum, another address.
    pub fn nurl_via(&self, addr: SocketAddr) -> Nurl {
        Nurl::new(
            self.identity.spki_hash(),
            addr.ip().to_string(),
            addr.port(),
            self.nurl.swissnum.clone(),
        )
    }

    /// A raw client for this server.
    pub fn raw(&self) -> RawClient {
        RawClient::new(&self.nurl)
    }

    /// Asks the server to stop and waits until in-flight requests have finished.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.begin_shutdown();
        self.wait().await
    }

    /// Asks the server to stop, without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits for the server task to end (after [`Self::begin_shutdown`]).
    pub async fn wait(&mut self) -> io::Result<()> {
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for HttpsTestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A response as [`RawClient`] saw it.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl RawResponse {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends hand-made requests over a fresh pinned TLS connection each (so a refusal that closes the
/// connection cannot affect the next request).
#[derive(Clone)]
pub struct RawClient {
    nurl: Nurl,
    connector: TlsConnector,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient")
            .field("nurl", &self.nurl)
            .finish_non_exhaustive()
    }
}

impl RawClient {
    /// A raw client for the server a NURL names.
    pub fn new(nurl: &Nurl) -> Self {
        let config = pinned_client_config(&nurl.spki_hash).expect("invariant: the NURL's SPKI hash is valid");
        RawClient {
            nurl: nurl.clone(),
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// The correct `Authorization` value.
    pub fn authorization(&self) -> String {
        crate::http::wire::authorization_value(&self.nurl.swissnum)
    }

    /// A request builder for `path` with `Host` set (no `Authorization`).
    pub fn request(&self, method: &str, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.nurl.authority())
    }

    /// A request builder with the correct `Authorization` too.
    pub fn authorized(&self, method: &str, path: &str) -> hyper::http::request::Builder {
        self.request(method, path)
            .header("authorization", self.authorization())
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> io::Result<RawResponse> {
        let tcp = TcpStream::connect((self.nurl.host.as_str(), self.nurl.port)).await?;
        let name =
            rustls::pki_types::ServerName::try_from(self.nurl.host.clone()).map_err(io::Error::other)?;
        let tls = self.connector.connect(name, tcp).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(io::Error::other)?;
        let connection = tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(io::Error::other)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
        drop(sender);
        connection.abort();
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request built from `builder` with `body`.
    pub async fn send_with(
        &self,
        builder: hyper::http::request::Builder,
        body: impl Into<Bytes>,
    ) -> io::Result<RawResponse> {
        let request = builder.body(Full::new(body.into())).map_err(io::Error::other)?;
        self.send(request).await
    }
}
