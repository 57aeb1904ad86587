//! Graceful shutdown of the HTTPS server: once asked to stop it accepts no new connections, but an
//! upload whose request is in flight is read to its end, written and answered, and only then does
//! `serve` return.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use data_encoding::BASE64;
use futures::SinkExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use storage::server::{StorageConfig, StorageServer};
use storage::testing::{HttpsTestServer, lease_secrets, pattern, storage_index, upload_secret};
use storage::{ShareKind, StorageClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_upload_finishes_after_shutdown_begins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StorageServer::open(StorageConfig::new(dir.path().join("storage"))).unwrap());
    let mut server = HttpsTestServer::start(store.clone()).await.unwrap();
    let si = storage_index(1);
    let len = 2 * 1024 * 1024;
    let data = pattern(len, 1);
    let client = server.client();
    client
        .allocate_buckets(
            si,
            &lease_secrets(1),
            &upload_secret(1),
            &BTreeSet::from([0]),
            len as u64,
        )
        .await
        .unwrap();

    // A PATCH whose body we feed by hand.
    let config = storage::tls::pinned_client_config(&server.nurl.spki_hash).unwrap();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut frames, receiver) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method("PATCH")
        .uri(format!("/storage/v1/immutable/{si}/0"))
        .header("host", server.nurl.authority())
        .header(
            "authorization",
            format!("Tahoe-LAFS {}", BASE64.encode(server.nurl.swissnum.as_bytes())),
        )
        .header(
            "x-tahoe-authorization",
            format!("upload-secret {}", BASE64.encode(&upload_secret(1).0)),
        )
        .header("content-range", format!("bytes 0-{}/*", len - 1))
        .header("content-length", len.to_string())
        .body(StreamBody::new(receiver))
        .unwrap();
    let response = tokio::spawn(sender.send_request(request));
    let (first, second) = data.split_at(len / 2);
    frames
        .send(Ok(Frame::data(Bytes::copy_from_slice(first))))
        .await
        .unwrap();
    // Give the server time to parse the request head and start on the body (nothing observable
    // marks that moment; a connection whose request has not been read yet would count as idle).
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.begin_shutdown();
    let store_for_check = server.store.clone();
    let addr = server.addr;
    let stopped = tokio::spawn(async move { server.wait().await });
    // No new connections are accepted once the listener is dropped (polled, up to 10 s).
    let mut refused = false;
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener is still open");
    assert!(
        !stopped.is_finished(),
        "serve returned while a request was in flight"
    );

    frames
        .send(Ok(Frame::data(Bytes::copy_from_slice(second))))
        .await
        .unwrap();
    drop(frames);
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
    let _ = response.into_body().collect().await;
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        store_for_check
            .read_share(ShareKind::Immutable, si, 0, 0, len as u64)
            .unwrap(),
        data
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_do_not_delay_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StorageServer::open(StorageConfig::new(dir.path().join("storage"))).unwrap());
    let server = HttpsTestServer::start(store).await.unwrap();
    let client = server.client();
    client.version().await.unwrap(); // leaves an idle pooled connection open
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap()
        .unwrap();
    // The client notices the closed connection and reports a transport error, not a hang.
    let error = client.version().await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}
