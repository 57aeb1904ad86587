//! [`serve`]: HTTPS on an already-bound listener, with graceful shutdown.
//!
//! One task accepts connections; each connection gets its own task that does the TLS handshake
//! (bounded by [`HANDSHAKE_TIMEOUT`]) and then serves HTTP/1.1 with keep-alive through hyper. A
//! connection that sends no complete request head for [`HEADER_READ_TIMEOUT`] (an idle keep-alive
//! connection included) is closed, and at most [`MAX_CONNECTIONS`] are served at once.
//!
//! **Shutdown.** When the shutdown future completes: the listener is dropped (no new connections),
//! every connection is told to shut down gracefully — hyper finishes the request in flight, including
//! reading its body and writing its response, then closes; idle connections close at once — and
//! `serve` returns once all connection tasks have ended. Handshakes still in progress are abandoned.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::tls::TlsIdentity;

/// Bound on a TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on receiving a request head, and on an idle keep-alive connection.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; a connection past this is closed as soon as it is accepted (the
/// client sees a reset or EOF and may retry). Clients keep one or a few pooled connections per
/// server, so this is room for hundreds of clients.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// hyper's read buffer per connection: a request head must fit (Tahoe's heads are under 1 KiB), and
/// body data arrives in frames of at most this size.
const READ_BUFFER: usize = 64 * 1024;

/// Serves `router` over HTTPS with `identity` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish (see the module docs). Fails only if `identity` cannot be used.
pub async fn serve(
    listener: TcpListener,
    identity: &TlsIdentity,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let config = identity.server_config().map_err(io::Error::other)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (stop_sender, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        tracing::debug!(%peer, limit = MAX_CONNECTIONS, "storage: too many connections; closing a new one");
                        drop(tcp);
                        continue;
                    }
                    if let Err(error) = tcp.set_nodelay(true) {
                        tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
                    }
                    connections.spawn(serve_connection(tcp, acceptor.clone(), router.clone(), stop.clone()));
                }
                Err(error) => {
                    // Usually running out of file descriptors: wait a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::debug!(connections = connections.len(), "storage server shutting down");
    let _ = stop_sender.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let tls = tokio::select! {
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        _ = stop.wait_for(|stopping| *stopping) => return,
    };
    let service =
        hyper::service::service_fn(move |request: Request<Incoming>| router.clone().oneshot(request));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(READ_BUFFER)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "storage connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.await {
        tracing::debug!(%error, "storage connection ended with an error during shutdown");
    }
}
