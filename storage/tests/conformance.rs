//! The storage conformance suite (`storage::testing::conformance`) run against every client: the
//! in-process `LocalStorageClient` and the HTTPS `HttpStorageClient` talking to the real server on
//! `127.0.0.1:0`. Each scenario gets a fresh store in its own temporary directory.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use storage::server::{LocalStorageClient, StorageConfig, StorageServer};
use storage::testing::{HttpsTestServer, conformance};

fn open_store() -> (Arc<StorageServer>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = StorageServer::open(StorageConfig::new(dir.path().join("storage"))).unwrap();
    (Arc::new(store), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_client_conforms() {
    conformance(|| async {
        let (store, dir) = open_store();
        (LocalStorageClient::new(store), dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_client_conforms() {
    conformance(|| async {
        let (store, dir) = open_store();
        let server = HttpsTestServer::start(store).await.unwrap();
        (server.client(), (server, dir))
    })
    .await;
}
