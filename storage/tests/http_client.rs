//! `HttpStorageClient` behaviour that the conformance suite cannot see: SPKI pinning, TLS versions,
//! connection reuse, timeouts, which requests are retried, and error mapping, against the real
//! server and against small misbehaving fake servers on `127.0.0.1:0`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use storage::http::client::REPLACED_WHEN_DROPPED;
use storage::http::{HttpClientOptions, HttpStorageClient};
use storage::nurl::Nurl;
use storage::server::{StorageConfig, StorageServer};
use storage::testing::{
    EmulatedLink, HttpsTestServer, LinkConfig, lease_secrets, storage_index, upload_secret,
};
use storage::tls::TlsIdentity;
use storage::{ShareKind, StorageClient, StorageError};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

async fn real_server() -> (HttpsTestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StorageServer::open(StorageConfig::new(dir.path().join("storage"))).unwrap());
    (HttpsTestServer::start(store).await.unwrap(), dir)
}

fn quick(retries: u32) -> HttpClientOptions {
    HttpClientOptions {
        connect_timeout: Duration::from_millis(500),
        header_timeout: Duration::from_millis(300),
        body_silence_timeout: Duration::from_millis(300),
        retries,
        retry_backoff: Duration::from_millis(10),
        ..HttpClientOptions::default()
    }
}

#[tokio::test]
async fn a_wrong_pin_is_refused_and_not_retried() {
    let (server, _dir) = real_server().await;
    let (port, connections, _) = counting_proxy(server.addr).await;
    let mut nurl = server.nurl.clone();
    nurl.port = port;
    nurl.spki_hash = TlsIdentity::generate().unwrap().spki_hash();
    let client = HttpStorageClient::with_options(&nurl, quick(3)).unwrap();
    let error = client.version().await.unwrap_err();
    assert!(
        matches!(&error, StorageError::Protocol { status: 0, message } if message.contains("SPKI")),
        "{error:?}"
    );
    assert!(!error.is_transient());
    // The refusal is permanent: one connection, no retries.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    // The right pin works.
    assert!(server.client().version().await.is_ok());
}

#[tokio::test]
async fn tor_nurls_are_refused_with_a_clear_error() {
    let nurl: Nurl = format!("pb+tor://{}@abcdefgh.onion:3457/swiss#v=1", "A".repeat(43))
        .parse()
        .unwrap();
    let error = HttpStorageClient::new(&nurl).unwrap_err();
    assert!(error.to_string().contains("Tor"), "{error}");
}

/// Accepts any certificate (to probe the server's TLS versions independently of the pin).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn the_server_speaks_tls_1_2_and_1_3_and_presents_the_pinned_key() {
    let (server, _dir) = real_server().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let (_, connection) = tls.get_ref();
        assert_eq!(connection.protocol_version(), Some(version.version));
        let presented = &connection.peer_certificates().unwrap()[0];
        assert_eq!(
            storage::tls::spki_hash_of_certificate(presented).unwrap(),
            server.nurl.spki_hash
        );
    }
}

/// A TCP proxy in front of `target`: its port, the connections it has accepted, and those open
/// through it now.
async fn counting_proxy(target: std::net::SocketAddr) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (seen, gauge) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            gauge.fetch_add(1, Ordering::SeqCst);
            let gauge = gauge.clone();
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                gauge.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (port, accepted, open)
}

/// A client whose idle connections expire after 300 ms, to a real server through a
/// [`counting_proxy`]: the client, the gauge of connections open, and what keeps the server up.
async fn idle_timing_out_client() -> (
    HttpStorageClient,
    Arc<AtomicUsize>,
    (HttpsTestServer, tempfile::TempDir),
) {
    let (server, dir) = real_server().await;
    let (port, _, open) = counting_proxy(server.addr).await;
    let mut nurl = server.nurl.clone();
    nurl.port = port;
    let options = HttpClientOptions {
        idle_timeout: Duration::from_millis(300),
        ..HttpClientOptions::default()
    };
    let client = HttpStorageClient::with_options(&nurl, options).unwrap();
    (client, open, (server, dir))
}

/// The connections still open through a [`counting_proxy`] once they have all closed, or after
/// 5 s.
async fn open_after_waiting(open: &AtomicUsize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while open.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    open.load(Ordering::SeqCst)
}

#[tokio::test]
async fn connections_are_reused() {
    let (server, _dir) = real_server().await;
    let (port, connections, _) = counting_proxy(server.addr).await;
    let mut nurl = server.nurl.clone();
    nurl.port = port;
    let client = HttpStorageClient::new(&nurl).unwrap();
    let si = storage_index(1);
    client
        .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &BTreeSet::from([0]), 4)
        .await
        .unwrap();
    client
        .write_share(si, 0, &upload_secret(1), 0, Bytes::from_static(b"data"))
        .await
        .unwrap();
    for _ in 0..20 {
        client.version().await.unwrap();
        assert_eq!(
            client
                .read_share(ShareKind::Immutable, si, 0, 0, 4)
                .await
                .unwrap(),
            &b"data"[..]
        );
        // Error answers leave the connection reusable too.
        assert!(
            client
                .read_share(ShareKind::Immutable, si, 9, 0, 4)
                .await
                .is_err()
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    // Concurrent requests open more connections, which are then kept for reuse.
    let calls: Vec<_> = (0..8).map(|_| client.version()).collect();
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let after_burst = connections.load(Ordering::SeqCst);
    assert!((2..=9).contains(&after_burst), "{after_burst}");
    let calls: Vec<_> = (0..8).map(|_| client.version()).collect();
    futures::future::join_all(calls).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        after_burst,
        "the idle pool was not reused"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout_without_another_request() {
    let (client, open, _server) = idle_timing_out_client().await;
    let calls: Vec<_> = (0..4).map(|_| client.version()).collect();
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let pooled = open.load(Ordering::SeqCst);
    assert!(
        pooled >= 1,
        "the answered connections are kept for reuse: {pooled}"
    );
    // Well within the server's own 60 s idle cut-off: only the client can have closed them.
    assert_eq!(
        open_after_waiting(&open).await,
        0,
        "idle connections outlived the client's idle timeout"
    );
    // The client still works: a new connection.
    client.version().await.unwrap();
    assert_eq!(open.load(Ordering::SeqCst), 1);
}

/// Clients racing on one storage client's pool: bursts of concurrent requests take every idle
/// connection and put them back, over and over (the pool empties and fills each time, which is
/// when the closing task is started or ends); afterwards every idle connection still closes once
/// idle for the timeout, and the client still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_racing_bursts_empty_and_refill_the_pool() {
    let (client, open, _server) = idle_timing_out_client().await;
    for round in 0..20 {
        let calls: Vec<_> = (0..1 + round % 6).map(|_| client.version()).collect();
        for result in futures::future::join_all(calls).await {
            result.unwrap();
        }
        // Sometimes long enough for the pool's connections to expire (and the task to end).
        if round % 7 == 6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    assert_eq!(
        open_after_waiting(&open).await,
        0,
        "idle connections outlived the client's idle timeout"
    );
    client.version().await.unwrap();
}

/// What a fake server does with each request.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Completes TLS, then never answers.
    SilentAfterHandshake,
    /// Sends response headers and 10 of 100 body bytes, then stalls.
    StallsInBody,
    /// Answers with this status and a text body.
    Status(u16),
    /// Answers 206 with an empty body and `Content-Range: bytes 0-18446744073709551615/*`.
    OverflowingRange,
}

struct Fake {
    nurl: Nurl,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

async fn fake_server(behaviour: Misbehaviour) -> Fake {
    let identity = TlsIdentity::generate().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(identity.server_config().unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (seen_connections, seen_requests) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            seen_connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, requests) = (acceptor.clone(), seen_requests.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Misbehaviour::SilentAfterHandshake = behaviour {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(tls);
                    return;
                }
                let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let response = match behaviour {
                            Misbehaviour::StallsInBody => {
                                let first = futures::stream::iter([Ok::<_, Infallible>(Frame::data(
                                    Bytes::from(vec![0u8; 10]),
                                ))]);
                                let body = StreamBody::new(futures::StreamExt::chain(
                                    first,
                                    futures::stream::pending(),
                                ));
                                Response::builder()
                                    .status(200)
                                    .header("content-length", "100")
                                    .body(body.boxed())
                                    .unwrap()
                            }
                            Misbehaviour::Status(code) => Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from_static(b"fake failure")).boxed())
                                .unwrap(),
                            Misbehaviour::OverflowingRange => Response::builder()
                                .status(206)
                                .header("content-range", "bytes 0-18446744073709551615/*")
                                .body(Full::new(Bytes::new()).boxed())
                                .unwrap(),
                            Misbehaviour::SilentAfterHandshake => unreachable!(),
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Fake {
        nurl: Nurl::new(identity.spki_hash(), "127.0.0.1", port, "swissnum"),
        connections,
        requests,
    }
}

#[tokio::test]
async fn a_silent_server_times_out_and_only_idempotent_requests_are_retried() {
    let fake = fake_server(Misbehaviour::SilentAfterHandshake).await;
    let client = HttpStorageClient::with_options(&fake.nurl, quick(2)).unwrap();
    assert!(matches!(
        client.version().await.unwrap_err(),
        StorageError::Timeout
    ));
    assert_eq!(
        fake.connections.load(Ordering::SeqCst),
        3,
        "version is tried 1 + 2 times"
    );
    let before = fake.connections.load(Ordering::SeqCst);
    let error = client
        .allocate_buckets(
            storage_index(1),
            &lease_secrets(1),
            &upload_secret(1),
            &BTreeSet::from([0]),
            10,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::Timeout), "{error:?}");
    assert_eq!(
        fake.connections.load(Ordering::SeqCst) - before,
        1,
        "allocate is never retried"
    );
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let fake = fake_server(Misbehaviour::StallsInBody).await;
    let client = HttpStorageClient::with_options(&fake.nurl, quick(0)).unwrap();
    let started = std::time::Instant::now();
    let error = client
        .read_share(ShareKind::Immutable, storage_index(1), 0, 0, 100)
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::Timeout), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Issue 13: a hostile server's `Content-Range: bytes 0-18446744073709551615/*` overflowed the
/// client's length check (a panic in debug builds; in release an empty body was taken for the data
/// asked for). It is a protocol error now.
#[tokio::test]
async fn an_overflowing_content_range_is_a_protocol_error() {
    let fake = fake_server(Misbehaviour::OverflowingRange).await;
    let client = HttpStorageClient::with_options(&fake.nurl, quick(0)).unwrap();
    let error = client
        .read_share(ShareKind::Immutable, storage_index(1), 0, 0, 100)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StorageError::Protocol { message, .. } if message.contains("Content-Range")),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_for_idempotent_requests_only() {
    for (code, transient) in [(500, true), (503, true), (418, false)] {
        let fake = fake_server(Misbehaviour::Status(code)).await;
        let client = HttpStorageClient::with_options(&fake.nurl, quick(2)).unwrap();
        let error = client
            .list_shares(ShareKind::Immutable, storage_index(1))
            .await
            .unwrap_err();
        assert_eq!(error.is_transient(), transient, "{code}: {error:?}");
        let expected = if transient { 3 } else { 1 };
        assert_eq!(fake.requests.load(Ordering::SeqCst), expected, "{code}");
        // Error bodies become the message.
        assert!(
            error.to_string().contains("fake failure") || code == 503,
            "{error}"
        );
        let before = fake.requests.load(Ordering::SeqCst);
        let _ = client
            .read_test_write(
                storage_index(1),
                &storage::testing::write_enabler(1),
                &lease_secrets(1),
                &Default::default(),
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(
            fake.requests.load(Ordering::SeqCst) - before,
            1,
            "{code}: read-test-write is never retried"
        );
        let before = fake.requests.load(Ordering::SeqCst);
        let _ = client
            .add_or_renew_lease(storage_index(1), &lease_secrets(1))
            .await
            .unwrap_err();
        assert_eq!(
            fake.requests.load(Ordering::SeqCst) - before,
            expected,
            "{code}: lease renewal is retried"
        );
    }
}

#[tokio::test]
async fn unreachable_servers_are_transport_errors() {
    // A port with nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let nurl = Nurl::new(
        TlsIdentity::generate().unwrap().spki_hash(),
        "127.0.0.1",
        port,
        "s",
    );
    let client = HttpStorageClient::with_options(&nurl, quick(1)).unwrap();
    let error = client.version().await.unwrap_err();
    assert!(matches!(error, StorageError::Transport(_)), "{error:?}");
    assert!(error.is_transient());

    // A listener that never accepts: TCP connects (backlog), TLS never completes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let nurl = Nurl::new(
        TlsIdentity::generate().unwrap().spki_hash(),
        "127.0.0.1",
        port,
        "s",
    );
    let client = HttpStorageClient::with_options(&nurl, quick(0)).unwrap();
    assert!(matches!(
        client.version().await.unwrap_err(),
        StorageError::Timeout
    ));
    drop(listener);
}

#[tokio::test]
async fn errors_round_trip_exactly_through_the_tessera_header() {
    let (server, _dir) = real_server().await;
    let client = server.client();
    let si = storage_index(2);
    client
        .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &BTreeSet::from([0]), 10)
        .await
        .unwrap();
    let error = client
        .write_share(si, 0, &upload_secret(1), 5, Bytes::from(vec![0u8; 10]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::BeyondAllocation {
                end: 15,
                allocated: 10
            }
        ),
        "{error:?}"
    );
    let error = client
        .write_share(si, 0, &upload_secret(1), 0, Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::BadRequest(_)), "{error:?}");
}

/// A client to a real server behind an [`EmulatedLink`] (no delay, no limit), with one request
/// answered: one connection in its pool.
async fn client_behind_a_link() -> (
    HttpStorageClient,
    EmulatedLink,
    (HttpsTestServer, tempfile::TempDir),
) {
    let (server, dir) = real_server().await;
    let link = EmulatedLink::start(server.addr, LinkConfig::unlimited())
        .await
        .unwrap();
    let mut nurl = server.nurl.clone();
    nurl.port = link.addr().port();
    let client = HttpStorageClient::with_options(&nurl, HttpClientOptions::default()).unwrap();
    client.version().await.unwrap();
    (client, link, (server, dir))
}

/// A request its caller drops before the answer (an abandoned download, a seek) takes its
/// connection with it; the client opens replacements at once, so the next request does not wait
/// for a TLS handshake.
#[tokio::test]
async fn a_request_dropped_before_its_answer_has_its_connection_replaced_ahead_of_use() {
    let (client, link, _server) = client_behind_a_link().await;
    assert_eq!(link.stats().connections, 1);
    // The answer is held back; the caller gives up on it.
    link.stall(Duration::from_millis(600));
    let gave_up = tokio::time::timeout(Duration::from_millis(100), client.version()).await;
    assert!(gave_up.is_err(), "the stalled request was answered");
    // Connections are opened to replace it, without another request.
    let replaced = 1 + REPLACED_WHEN_DROPPED as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while link.stats().connections < replaced && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        link.stats().connections,
        replaced,
        "no connection replaced the abandoned one"
    );
    // Once the stall is over (and their handshakes done, with a wide margin for a loaded
    // machine), requests use them: no further connection.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let calls: Vec<_> = (0..REPLACED_WHEN_DROPPED).map(|_| client.version()).collect();
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(link.stats().connections, replaced);
}

/// Many requests abandoned at once (every read of a dropped download, on several tasks) open
/// the replacements between them, not a set each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_abandoned_together_open_one_set_of_replacements_between_them() {
    let (client, link, _server) = client_behind_a_link().await;
    link.stall(Duration::from_millis(800));
    let abandoned: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(
                async move { tokio::time::timeout(Duration::from_millis(150), client.version()).await },
            )
        })
        .collect();
    for task in abandoned {
        assert!(task.await.unwrap().is_err(), "a stalled request was answered");
    }
    // Eight requests (one pooled connection, seven new), then one set of replacements at most.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let connections = link.stats().connections;
    assert!(
        (9..=8 + REPLACED_WHEN_DROPPED as u64).contains(&connections),
        "{connections} connections for 8 abandoned requests"
    );
}

/// A Tessera server from before allocating writes refuses a `PATCH` that carries the lease secrets
/// with 400 (here at once, before reading the body, as a server that checks headers first does):
/// the client falls back to allocating first, the share is stored whole, and later writes to that
/// server do not try the extension again.
#[tokio::test]
async fn a_server_without_allocating_writes_gets_the_share_by_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StorageServer::open(StorageConfig::new(dir.path().join("storage"))).unwrap());
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&refused);
    let server = HttpsTestServer::start_wrapped(store, move |router| {
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let counter = Arc::clone(&counter);
                async move {
                    if request.headers().contains_key("x-tessera-allocate") {
                        counter.fetch_add(1, Ordering::Relaxed);
                        return axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::BAD_REQUEST,
                            "expected exactly the upload secret",
                        ));
                    }
                    next.run(request).await
                }
            },
        ))
    })
    .await
    .unwrap();
    let client = server.client();
    client.version().await.unwrap();
    assert!(
        client.allocates_on_write(),
        "a tessera/ server is taken to allocate on write"
    );

    // Larger than the sockets' buffers: the refusal comes while the body is still on its way.
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    let si = storage_index(7);
    let progress = client
        .write_share_allocating(
            si,
            0,
            &lease_secrets(1),
            &upload_secret(1),
            data.len() as u64,
            0,
            Bytes::from(data.clone()),
        )
        .await
        .unwrap();
    assert!(progress.complete, "{progress:?}");
    assert_eq!(refused.load(Ordering::Relaxed), 1);
    assert!(!client.allocates_on_write(), "the refusal is remembered");
    let read = client
        .read_share(ShareKind::Immutable, si, 0, 0, data.len() as u64)
        .await
        .unwrap();
    assert!(read == data[..], "the share reads back whole");

    // The next share goes by allocation straight away.
    client
        .write_share_allocating(
            si,
            1,
            &lease_secrets(1),
            &upload_secret(2),
            4,
            0,
            Bytes::from_static(b"abcd"),
        )
        .await
        .unwrap();
    assert_eq!(refused.load(Ordering::Relaxed), 1);
    assert_eq!(
        client.list_shares(ShareKind::Immutable, si).await.unwrap(),
        BTreeSet::from([0, 1])
    );
}
