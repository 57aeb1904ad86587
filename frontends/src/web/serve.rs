//! [`serve`]: the gateway's HTTP server on an already-bound listener, with bounds a peer cannot
//! move: a request head must arrive within [`ServeLimits::header_read_timeout`] (an idle keep-alive
//! connection included), and at most [`ServeLimits::max_connections`] connections are served at
//! once; past that a new connection gets a 503 with a message and is closed at once, and the
//! connections already open go on.
//!
//! **TLS.** [`serve_tls`] serves the same over TLS (Tahoe's `ssl:` endpoint for `web.port`, and
//! `[webdav] port`): each connection's handshake runs on that connection's own task and must end
//! within [`ServeLimits::header_read_timeout`], so a peer that stalls or fails its handshake holds
//! only its own place among the connections, for that long at most.
//!
//! **Shutdown.** When the shutdown future completes the listener is dropped, every connection is
//! told to shut down gracefully (the request in flight finishes; idle connections close at once),
//! and `serve` returns once all of them have ended.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The web server's bounds (`[node] web.header_read_timeout`, `[node] web.max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// How long a connection may take to send a request head (and stay idle between requests).
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// The answer to a connection past [`ServeLimits::max_connections`].
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 63\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
\r\n\
the gateway is serving too many connections; try again shortly\n";

/// Serves `router` on `listener` until `shutdown` completes (see the module docs).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_tls(listener, router, limits, None, shutdown).await
}

/// [`serve`], over TLS with `tls` when it is given (HTTP/1.1 inside; see the module docs).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_warning: Option<std::time::Instant> = None;
    let (stop_sender, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match Arc::clone(&places).try_acquire_owned() {
                    Ok(place) => {
                        let _ = tcp.set_nodelay(true);
                        let (router, stop, acceptor) = (router.clone(), stop.clone(), acceptor.clone());
                        connections.spawn(async move {
                            serve_connection(tcp, peer, acceptor, router, limits.header_read_timeout, stop).await;
                            drop(place);
                        });
                    }
                    Err(_) => refuse(tcp, limits.max_connections, acceptor.is_some(), &mut last_warning),
                },
                Err(error) => {
                    // Usually out of file descriptors: wait a little instead of spinning.
                    tracing::warn!(%error, "web accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_sender.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Answers a connection past the cap without reading from it or waiting on it: the 503 fits in the
/// socket's send buffer, and the connection is closed. Warns at most once a minute (a peer that
/// opens connections in a loop must not flood the log).
fn refuse(tcp: TcpStream, max: usize, tls: bool, last_warning: &mut Option<std::time::Instant>) {
    let now = std::time::Instant::now();
    if last_warning.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
        *last_warning = Some(now);
        tracing::warn!(
            max,
            "too many web connections; refusing new ones (logged once a minute)"
        );
    } else {
        tracing::debug!(max, "too many web connections; refusing one");
    }
    // Over TLS the 503 would be plaintext a client cannot read: the connection is only closed.
    if !tls {
        let _ = tcp.try_write(TOO_MANY);
    }
    drop(tcp);
}

async fn serve_connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let Some(acceptor) = acceptor else {
        return serve_http(tcp, peer, router, header_read_timeout, stop).await;
    };
    let tls = tokio::select! {
        handshake = tokio::time::timeout(header_read_timeout, acceptor.accept(tcp)) => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%error, %peer, "web TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "web TLS handshake timed out");
                return;
            }
        },
        _ = stop.wait_for(|stopping| *stopping) => return,
    };
    serve_http(tls, peer, router, header_read_timeout, stop).await;
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends or the server shuts down.
async fn serve_http<S>(
    stream: S,
    peer: std::net::SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The peer's address as axum's `ConnectInfo` (the WebDAV login limit counts by it).
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "web connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.await {
        tracing::debug!(%error, "web connection ended with an error during shutdown");
    }
}
