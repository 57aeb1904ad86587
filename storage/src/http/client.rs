//! [`HttpStorageClient`]: a [`StorageClient`] that speaks the HTTPS storage protocol to one server.
//!
//! **TLS and pinning.** Each connection is TCP, then TLS 1.2/1.3 (rustls, ring) with
//! [`crate::tls::pinned_client_config`]: the server's certificate is accepted if and only if the
//! SHA-256 of its SubjectPublicKeyInfo equals the NURL's hash (constant-time comparison); CA, host
//! name and validity are not checked, exactly as Tahoe does. The handshake signature is verified
//! against that key. A pin mismatch is a permanent error (`Protocol` with status 0), never retried.
//!
//! **Connections.** HTTP/1.1 over `hyper::client::conn::http1`, with a small pool of idle
//! connections (at most [`HttpClientOptions::max_idle_connections`], dropped after
//! [`HttpClientOptions::idle_timeout`], below the server's 60 s idle cut-off). hyper-util's pooled
//! `Client` is not used because its connector must be a `tower_service::Service`, a crate this
//! package does not depend on without feature `server`; one NURL is one host, so a per-client pool is
//! all that is needed. A request that the pool's connection could not even send (it was closed) is
//! re-sent on a fresh connection, whatever the method.
//!
//! **Timeouts and retries.** Connecting (TCP + TLS) and receiving the response head are each bounded
//! ([`HttpClientOptions::connect_timeout`], [`HttpClientOptions::header_timeout`], 60 s by default), and
//! the body may not stall longer than [`HttpClientOptions::body_silence_timeout`] between chunks.
//! Transient failures ([`StorageError::is_transient`]) are retried with exponential backoff only for
//! idempotent requests: `version`, `list_shares`, `read_share`, `add_or_renew_lease` and `status`.
//! Allocation, writes, aborts, read-test-write and advisories are never retried: repeating them is not
//! harmless (a repeated allocate answers "neither", a repeated write after completion 404s).
//!
//! **Limits.** CBOR responses are capped at 30 MiB, share reads at the requested length, error bodies
//! are read up to 10 KB and become the error message.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HOST, HeaderName, RANGE,
};
use hyper::http::HeaderValue;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::wire::{
    self, ALLOCATE_HEADER, CBOR_MIME, ERROR_HEADER, LEASE_SECRETS, OCTET_STREAM, SECRET_HEADER, SecretKind,
    StatusReport,
};
use crate::api::{
    Allocation, CorruptShareRemoval, LeaseSecrets, ReadTestWriteResult, ReadVector, TestWriteVectors,
    UploadProgress, UploadSecret, VersionInfo, WHOLE_SHARE_LIMIT, WholeShare, WriteEnabler,
    put_whole_share_in_steps, write_share_allocating_in_steps,
};
use crate::nurl::{Nurl, NurlScheme};
use crate::{ShareKind, ShareNum, StorageClient, StorageError, StorageIndex};

/// Largest CBOR response accepted (as Tahoe's client).
const MAX_CBOR_RESPONSE: usize = 30 * 1024 * 1024;
/// How much of an error body becomes the error message.
const MAX_ERROR_BODY: usize = 10_000;

/// The most `read_body` sets aside for a body before its bytes arrive: a
/// block of a 1 MiB segment at k = 1, with room.
const PRESIZE_MAX: usize = 2 << 20;

/// What to set aside for a body the server declared `declared` bytes long, read up to `cap`: all
/// of it, so that it lands in one buffer rather than one regrown (and copied) as frames arrive,
/// but never more than `cap` or [`PRESIZE_MAX`] before the bytes come (a server may declare any
/// length and stall).
fn presize(declared: Option<u64>, cap: usize) -> usize {
    usize::try_from(declared.unwrap_or(0))
        .unwrap_or(usize::MAX)
        .min(cap)
        .min(PRESIZE_MAX)
}
/// The most a connection buffers for reading or writing (hyper's `max_buf_size`).
const CONNECTION_BUFFER: usize = 64 * 1024;
/// Idle connections made ready when a request is dropped before its answer (see
/// `HttpStorageClient::call_once`): as many as the busiest small operation sends one server at
/// once (a web add: its speculative upload, and the directory's listing and first share read).
/// With two, a web add after an abandoned download waited for a handshake in half the runs.
pub const REPLACED_WHEN_DROPPED: usize = 3;

/// Armed while a request is on its way; dropped armed, the request was abandoned by its caller.
struct Abandoned<'a> {
    client: &'a HttpStorageClient,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.client.warm(REPLACED_WHEN_DROPPED);
        }
    }
}

/// Tunables of an [`HttpStorageClient`]; [`Default`] gives Tahoe's values.
#[derive(Debug, Clone)]
pub struct HttpClientOptions {
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Bound on waiting for the response head after sending a request.
    pub header_timeout: Duration,
    /// Longest silence allowed between two chunks of a response body.
    pub body_silence_timeout: Duration,
    /// Idle connections kept for reuse.
    pub max_idle_connections: usize,
    /// Idle connections older than this are closed rather than reused.
    pub idle_timeout: Duration,
    /// Extra attempts for idempotent requests that failed transiently.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// TCP keepalive on each connection: probes start after this long without traffic and repeat
    /// as often (Tahoe's `timeout.keepalive`); `None` leaves the system's setting.
    pub tcp_keepalive: Option<Duration>,
}

impl Default for HttpClientOptions {
    fn default() -> Self {
        HttpClientOptions {
            connect_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(60),
            body_silence_timeout: Duration::from_secs(60),
            max_idle_connections: 10,
            idle_timeout: Duration::from_secs(20),
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            tcp_keepalive: None,
        }
    }
}

/// A storage client over HTTPS. Cheap to clone (clones share the connection pool).
#[derive(Clone)]
pub struct HttpStorageClient {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    port: u16,
    spki_hash: String,
    host_header: HeaderValue,
    authorization: HeaderValue,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    options: HttpClientOptions,
    idle: Mutex<IdlePool>,
    /// Whether the server has Tessera's whole-share request: [`UNKNOWN`] until its version says
    /// (a Tessera server's application version starts `tessera/`), [`WITHOUT`] once it answered
    /// that request 404 or 405 (an older Tessera).
    whole_share: AtomicU8,
    /// Whether the server has Tessera's allocating write, in the same way ([`WITHOUT`] once it
    /// answered one 400, as an older Tessera does).
    allocating_write: AtomicU8,
    /// Connections being opened by [`StorageClient::warm`].
    opening: AtomicUsize,
}

const UNKNOWN: u8 = 0;
const WITH: u8 = 1;
const WITHOUT: u8 = 2;

/// The idle connections, and whether a task closes them as they expire
/// ([`HttpStorageClient::reap_idle_later`]): at most one per client, however often the pool
/// empties and fills under load.
#[derive(Default)]
struct IdlePool {
    connections: Vec<IdleConnection>,
    reaping: bool,
}

struct IdleConnection {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

impl std::fmt::Debug for HttpStorageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The swissnum is a secret: never printed.
        f.debug_struct("HttpStorageClient")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("spki_hash", &self.inner.spki_hash)
            .finish_non_exhaustive()
    }
}

/// What a request was, for mapping error statuses back to [`StorageError`]s.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Version,
    Allocate,
    Write { shnum: ShareNum, offset: u64 },
    Abort { shnum: ShareNum },
    ListShares,
    Read,
    Corrupt,
    RemoveCorrupt,
    PutWhole,
    Lease,
    ReadTestWrite,
    Status,
}

impl Operation {
    fn idempotent(self) -> bool {
        match self {
            Operation::Version
            | Operation::ListShares
            | Operation::Read
            | Operation::Lease
            | Operation::Status => true,
            Operation::Allocate
            | Operation::Write { .. }
            | Operation::Abort { .. }
            | Operation::Corrupt
            | Operation::RemoveCorrupt
            | Operation::PutWhole
            | Operation::ReadTestWrite => false,
        }
    }
}

/// One request, rebuildable for retries.
struct Call {
    operation: Operation,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, String)>,
    body: Bytes,
    /// Largest successful response body accepted.
    body_cap: usize,
}

/// A successful (2xx) response, fully read.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl HttpStorageClient {
    /// A client for the server a NURL names, with default options. No connection is made yet.
    pub fn new(nurl: &Nurl) -> Result<Self, StorageError> {
        Self::with_options(nurl, HttpClientOptions::default())
    }

    /// A client with explicit options (tests shorten the timeouts).
    pub fn with_options(nurl: &Nurl, options: HttpClientOptions) -> Result<Self, StorageError> {
        if nurl.scheme == NurlScheme::Tor {
            return Err(StorageError::BadRequest(
                "this NURL is reached through Tor (pb+tor://), which Tessera does not support".to_owned(),
            ));
        }
        let config = crate::tls::pinned_client_config(&nurl.spki_hash)
            .map_err(|e| StorageError::BadRequest(format!("bad NURL: {e}")))?;
        let server_name = ServerName::try_from(nurl.host.clone())
            .map_err(|_| StorageError::BadRequest(format!("bad NURL host {:?}", nurl.host)))?;
        let header = |text: String, what: &str| {
            HeaderValue::try_from(text).map_err(|_| StorageError::BadRequest(format!("bad NURL {what}")))
        };
        Ok(HttpStorageClient {
            inner: Arc::new(Inner {
                host: nurl.host.clone(),
                port: nurl.port,
                spki_hash: nurl.spki_hash.clone(),
                host_header: header(nurl.authority(), "host")?,
                authorization: header(wire::authorization_value(&nurl.swissnum), "swissnum")?,
                connector: TlsConnector::from(Arc::new(config)),
                server_name,
                options,
                idle: Mutex::new(IdlePool::default()),
                whole_share: AtomicU8::new(UNKNOWN),
                allocating_write: AtomicU8::new(UNKNOWN),
                opening: AtomicUsize::new(0),
            }),
        })
    }

    /// `PATCH /storage/v1/immutable/:si/:shnum`; with `allocation` (the lease and the share's size),
    /// Tessera's allocating write.
    async fn patch_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
        allocation: Option<(&LeaseSecrets, u64)>,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError> {
        if data.is_empty() {
            return Err(StorageError::BadRequest(
                "an empty write cannot be expressed with Content-Range".to_owned(),
            ));
        }
        let len = data.len() as u64;
        if offset.checked_add(len).is_none() {
            return Err(StorageError::BadRequest("write extends past 2^64".to_owned()));
        }
        let mut call = Call {
            operation: Operation::Write { shnum, offset },
            method: Method::PATCH,
            path: format!("/storage/v1/immutable/{storage_index}/{shnum}"),
            headers: vec![
                (ACCEPT, CBOR_MIME.to_owned()),
                (CONTENT_TYPE, OCTET_STREAM.to_owned()),
                (CONTENT_RANGE, wire::format_content_range(offset, len)),
            ],
            body: data,
            body_cap: MAX_CBOR_RESPONSE,
        }
        .secret(SecretKind::Upload, &upload.0);
        if let Some((lease, allocated_size)) = allocation {
            call = call.lease(lease);
            call.headers.push((
                HeaderName::from_static(ALLOCATE_HEADER),
                allocated_size.to_string(),
            ));
        }
        let answer = self.call(call).await?;
        expect_status(&answer, &[StatusCode::OK, StatusCode::CREATED])?;
        wire::decode_progress(&answer.body, answer.status == StatusCode::CREATED).map_err(bad_answer)
    }

    /// `GET /storage/v1/tessera/status`: the server's counters and corruption advisories.
    pub async fn status(&self) -> Result<StatusReport, StorageError> {
        let answer = self
            .call(Call::cbor_get(
                Operation::Status,
                "/storage/v1/tessera/status".to_owned(),
            ))
            .await?;
        expect_status(&answer, &[StatusCode::OK])?;
        wire::decode_status(&answer.body).map_err(bad_answer)
    }

    async fn call(&self, call: Call) -> Result<Answer, StorageError> {
        let attempts = if call.operation.idempotent() {
            self.inner.options.retries + 1
        } else {
            1
        };
        let mut backoff = self.inner.options.retry_backoff;
        let mut attempt = 1;
        loop {
            match self.call_once(&call).await {
                Err(error) if error.is_transient() && attempt < attempts => {
                    tracing::debug!(%error, attempt, path = %call.path, "retrying idempotent storage request");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One attempt of `call`. A caller that gives up on it before its answer (a download
    /// abandoned, a range read when the reader seeks) drops a connection mid-request, which
    /// cannot be reused: [`REPLACED_WHEN_DROPPED`] are then opened ahead of the next request, so
    /// that it does not wait for a TLS handshake.
    async fn call_once(&self, call: &Call) -> Result<Answer, StorageError> {
        let mut abandoned = Abandoned {
            client: self,
            armed: true,
        };
        let result = self.call_once_unguarded(call).await;
        abandoned.armed = false;
        result
    }

    async fn call_once_unguarded(&self, call: &Call) -> Result<Answer, StorageError> {
        let options = &self.inner.options;
        let (mut sender, pooled) = match self.take_idle().await {
            Some(sender) => (sender, true),
            None => (self.connect().await?, false),
        };
        let mut request = self.build_request(call)?;
        let sent = tokio::time::timeout(options.header_timeout, sender.try_send_request(request)).await;
        let response = match sent {
            Err(_) => return Err(StorageError::Timeout),
            Ok(Ok(response)) => response,
            Ok(Err(mut error)) => match error.take_message() {
                // The pooled connection had closed before anything was sent: send on a fresh one.
                Some(unsent) if pooled => {
                    request = unsent;
                    sender = self.connect().await?;
                    match tokio::time::timeout(options.header_timeout, sender.send_request(request)).await {
                        Err(_) => return Err(StorageError::Timeout),
                        Ok(Ok(response)) => response,
                        Ok(Err(error)) => return Err(transport(&error)),
                    }
                }
                _ => return Err(transport(error.error())),
            },
        };
        let (parts, body) = response.into_parts();
        if parts.status.is_success() {
            if let Some(length) = content_length(&parts.headers)
                && length > call.body_cap as u64
            {
                return Err(bad_answer(format!(
                    "response of {length} bytes exceeds the {} allowed",
                    call.body_cap
                )));
            }
            let (body, complete) = self.read_body(body, call.body_cap).await?;
            if !complete {
                return Err(bad_answer(format!(
                    "response exceeds the {} bytes allowed",
                    call.body_cap
                )));
            }
            self.put_idle(sender);
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        } else {
            let (body, complete) = self.read_body(body, MAX_ERROR_BODY).await.unwrap_or_default();
            if complete {
                self.put_idle(sender);
            }
            Err(error_from_response(
                parts.status,
                &parts.headers,
                &body,
                call.operation,
            ))
        }
    }

    fn build_request(&self, call: &Call) -> Result<Request<Full<Bytes>>, StorageError> {
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(call.path.as_str())
            .header(HOST, self.inner.host_header.clone())
            .header(AUTHORIZATION, self.inner.authorization.clone());
        for (name, value) in &call.headers {
            builder = builder.header(name, value.as_str());
        }
        builder
            .body(Full::new(call.body.clone()))
            .map_err(|e| StorageError::BadRequest(format!("cannot build the request: {e}")))
    }

    /// Reads a body up to `cap` bytes; `complete` is false when it was longer (then the rest is left
    /// unread and the connection must not be reused).
    async fn read_body(&self, mut body: Incoming, cap: usize) -> Result<(Bytes, bool), StorageError> {
        let silence = self.inner.options.body_silence_timeout;
        let declared = hyper::body::Body::size_hint(&body).exact();
        let mut buffer = BytesMut::with_capacity(presize(declared, cap));
        loop {
            let frame = match tokio::time::timeout(silence, body.frame()).await {
                Err(_) => return Err(StorageError::Timeout),
                Ok(None) => return Ok((buffer.freeze(), true)),
                Ok(Some(Err(error))) => return Err(transport(&error)),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > cap {
                    let room = cap - buffer.len();
                    buffer.extend_from_slice(&data[..room]);
                    return Ok((buffer.freeze(), false));
                }
                buffer.extend_from_slice(&data);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, StorageError> {
        let inner = &self.inner;
        let deadline = inner.options.connect_timeout;
        let tcp = tokio::time::timeout(deadline, TcpStream::connect((inner.host.as_str(), inner.port)))
            .await
            .map_err(|_| StorageError::Timeout)?
            .map_err(|e| {
                StorageError::Transport(format!("cannot connect to {}: {e}", inner.host_header_text()))
            })?;
        // Small requests (version polls, CBOR answers) must not wait for Nagle.
        tcp.set_nodelay(true)
            .map_err(|e| StorageError::Transport(format!("cannot configure the socket: {e}")))?;
        if let Some(every) = inner.options.tcp_keepalive {
            let keepalive = socket2::TcpKeepalive::new().with_time(every).with_interval(every);
            socket2::SockRef::from(&tcp)
                .set_tcp_keepalive(&keepalive)
                .map_err(|e| StorageError::Transport(format!("cannot configure the socket: {e}")))?;
        }
        let tls = tokio::time::timeout(deadline, inner.connector.connect(inner.server_name.clone(), tcp))
            .await
            .map_err(|_| StorageError::Timeout)?
            .map_err(|e| tls_error(&e))?;
        // hyper grows a connection's buffers to ~400 KB for a block's request or answer and keeps
        // them while the connection lasts: a gateway's pooled connections held 10 MiB between
        // transfers. 64 KiB is four TLS records a read, enough for a link's rate.
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(CONNECTION_BUFFER)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport(&e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "storage connection ended");
            }
        });
        Ok(sender)
    }

    async fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let candidate = {
                let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.connections.pop()
            }?;
            if candidate.since.elapsed() >= self.inner.options.idle_timeout || candidate.sender.is_closed() {
                continue;
            }
            let mut sender = candidate.sender;
            // The previous response was read to its end; the connection becomes ready at once.
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), sender.ready()).await {
                return Some(sender);
            }
        }
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.connections.len() < self.inner.options.max_idle_connections {
            idle.connections.push(IdleConnection {
                sender,
                since: Instant::now(),
            });
            if !idle.reaping {
                idle.reaping = true;
                drop(idle);
                if !self.reap_idle_later() {
                    self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()).reaping = false;
                }
            }
        }
    }

    /// Closes idle connections as they pass the idle timeout, so that a client left idle holds
    /// no connection (nor its buffers) rather than waiting for its next request to drop them. One
    /// task runs while the pool is not empty: [`put_idle`](Self::put_idle) starts it when none
    /// runs (`IdlePool::reaping`), and it ends when the pool is empty; both decide under the
    /// pool's lock. Returns whether the task started.
    fn reap_idle_later(&self) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false; // no runtime (a blocking caller): the next request drops them
        };
        let inner = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                let wake = {
                    let Some(inner) = inner.upgrade() else { return };
                    let timeout = inner.options.idle_timeout;
                    let mut idle = inner.idle.lock().unwrap_or_else(|e| e.into_inner());
                    idle.connections
                        .retain(|c| c.since.elapsed() < timeout && !c.sender.is_closed());
                    match idle.connections.iter().map(|c| c.since).min() {
                        Some(oldest) => oldest + timeout,
                        None => {
                            idle.reaping = false;
                            return;
                        }
                    }
                };
                tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
            }
        });
        true
    }
}

impl Inner {
    fn host_header_text(&self) -> String {
        String::from_utf8_lossy(self.host_header.as_bytes()).into_owned()
    }
}

impl Call {
    fn cbor_get(operation: Operation, path: String) -> Self {
        Call {
            operation,
            method: Method::GET,
            path,
            headers: vec![(ACCEPT, CBOR_MIME.to_owned())],
            body: Bytes::new(),
            body_cap: MAX_CBOR_RESPONSE,
        }
    }

    fn cbor_post(operation: Operation, method: Method, path: String, body: Vec<u8>) -> Self {
        Call {
            operation,
            method,
            path,
            headers: vec![
                (ACCEPT, CBOR_MIME.to_owned()),
                (CONTENT_TYPE, CBOR_MIME.to_owned()),
            ],
            body: body.into(),
            body_cap: MAX_CBOR_RESPONSE,
        }
    }

    fn secret(mut self, kind: SecretKind, value: &[u8]) -> Self {
        self.headers.push((
            HeaderName::from_static(SECRET_HEADER),
            wire::secret_header_value(kind, value),
        ));
        self
    }

    fn lease(self, lease: &LeaseSecrets) -> Self {
        let [renew, cancel] = LEASE_SECRETS;
        self.secret(renew, &lease.renew).secret(cancel, &lease.cancel)
    }
}

fn kind_path(kind: ShareKind) -> &'static str {
    wire::kind_name(kind)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn expect_status(answer: &Answer, allowed: &[StatusCode]) -> Result<(), StorageError> {
    if allowed.contains(&answer.status) {
        Ok(())
    } else {
        Err(StorageError::Protocol {
            status: answer.status.as_u16(),
            message: format!("unexpected success status (expected one of {allowed:?})"),
        })
    }
}

fn bad_answer(message: impl Into<String>) -> StorageError {
    StorageError::Protocol {
        status: 200,
        message: message.into(),
    }
}

fn transport(error: &hyper::Error) -> StorageError {
    if error.is_timeout() {
        StorageError::Timeout
    } else {
        StorageError::Transport(error.to_string())
    }
}

/// A failed TLS handshake. A certificate the pin refuses is permanent, not a transport hiccup.
fn tls_error(error: &std::io::Error) -> StorageError {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(reason)) => StorageError::Protocol {
            status: 0,
            message: format!(
                "the server's TLS certificate does not match the NURL's SPKI hash ({reason:?}); refusing to talk to it"
            ),
        },
        _ => StorageError::Transport(format!("TLS handshake failed: {error}")),
    }
}

/// The reasons a Tessera server gave for refusing share numbers (`X-Tessera-Refused`), for those asked
/// for only, each cut to [`wire::MAX_REFUSAL_LEN`] bytes of visible ASCII.
fn refusals(headers: &HeaderMap, asked: &BTreeSet<ShareNum>) -> BTreeMap<ShareNum, String> {
    let mut refused = BTreeMap::new();
    for value in headers
        .get_all(wire::REFUSED_HEADER)
        .iter()
        .take(wire::MAX_REFUSALS)
    {
        let Some((shnum, reason)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
            continue;
        };
        let Some(shnum) = shnum.parse::<ShareNum>().ok().filter(|s| asked.contains(s)) else {
            continue;
        };
        let mut reason = reason.to_owned();
        reason.truncate(wire::MAX_REFUSAL_LEN);
        refused.insert(shnum, reason);
    }
    refused
}

/// Rebuilds a [`StorageError`] from an error response: from `X-Tessera-Error` when present (exact), else
/// from the status and what the request was (Tahoe servers).
fn error_from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    operation: Operation,
) -> StorageError {
    let message = String::from_utf8_lossy(body).trim().to_owned();
    if let Some(error) = headers
        .get(ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|tag| parse_error_tag(tag, &message))
    {
        return error;
    }
    let message_or = |default: &str| {
        if message.is_empty() {
            default.to_owned()
        } else {
            message.clone()
        }
    };
    match (status.as_u16(), operation) {
        (400, _) => StorageError::BadRequest(message_or("the server refused the request")),
        // A server without the extension (Tahoe, an older Tessera) has no such route.
        (404 | 405, Operation::PutWhole) => StorageError::Protocol {
            status: status.as_u16(),
            message: "the server has no whole-share request".to_owned(),
        },
        (401, Operation::Write { .. } | Operation::Abort { .. }) => StorageError::UploadSecretMismatch,
        (401, Operation::ReadTestWrite) => StorageError::WriteEnablerMismatch,
        (401, _) => StorageError::Unauthorized,
        (404, _) => StorageError::NotFound(message_or("not found")),
        (405, Operation::Abort { shnum } | Operation::Write { shnum, .. }) => {
            StorageError::AlreadyComplete { shnum }
        }
        (409, Operation::Write { offset, .. }) => StorageError::Conflict { offset },
        (502..=504, _) => StorageError::Transport(format!("HTTP {status}: {message}")),
        (500..=599, _) => StorageError::Internal(message_or("server error")),
        (code, _) => StorageError::Protocol {
            status: code,
            message,
        },
    }
}

/// Parses `X-Tessera-Error: <kind>[ <field>=<u64>]*` (see the `http` module docs).
fn parse_error_tag(tag: &str, message: &str) -> Option<StorageError> {
    let mut words = tag.split_ascii_whitespace();
    let kind = words.next()?;
    let fields: BTreeMap<&str, u64> = words
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let field = |name: &str| fields.get(name).copied();
    Some(match kind {
        "not-found" => StorageError::NotFound(message.to_owned()),
        "upload-secret-mismatch" => StorageError::UploadSecretMismatch,
        "already-complete" => StorageError::AlreadyComplete {
            shnum: ShareNum::try_from(field("shnum")?).ok()?,
        },
        "conflict" => StorageError::Conflict {
            offset: field("offset")?,
        },
        "beyond-allocation" => StorageError::BeyondAllocation {
            end: field("end")?,
            allocated: field("allocated")?,
        },
        "write-enabler-mismatch" => StorageError::WriteEnablerMismatch,
        "read-only" => StorageError::ReadOnly,
        "refused" => StorageError::Refused(
            message
                .strip_prefix("the storage server refused the share: ")
                .unwrap_or(message)
                .to_owned(),
        ),
        "no-space" => StorageError::NoSpace {
            needed: field("needed")?,
            available: field("available")?,
        },
        "bad-request" => StorageError::BadRequest(
            message
                .strip_prefix("bad request: ")
                .unwrap_or(message)
                .to_owned(),
        ),
        "unauthorized" => StorageError::Unauthorized,
        "internal" => StorageError::Internal(message.to_owned()),
        _ => return None,
    })
}

#[async_trait::async_trait]
impl StorageClient for HttpStorageClient {
    async fn version(&self) -> Result<VersionInfo, StorageError> {
        let answer = self
            .call(Call::cbor_get(
                Operation::Version,
                "/storage/v1/version".to_owned(),
            ))
            .await?;
        expect_status(&answer, &[StatusCode::OK])?;
        let info = wire::decode_version(&answer.body).map_err(bad_answer)?;
        for extension in [&self.inner.whole_share, &self.inner.allocating_write] {
            if info.application_version.starts_with(b"tessera/") {
                let _ = extension.compare_exchange(UNKNOWN, WITH, Ordering::Relaxed, Ordering::Relaxed);
            } else {
                extension.store(WITHOUT, Ordering::Relaxed);
            }
        }
        Ok(info)
    }

    async fn allocate_buckets(
        &self,
        storage_index: StorageIndex,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        share_numbers: &BTreeSet<ShareNum>,
        allocated_size: u64,
    ) -> Result<Allocation, StorageError> {
        let call = Call::cbor_post(
            Operation::Allocate,
            Method::POST,
            format!("/storage/v1/immutable/{storage_index}"),
            wire::encode_allocate_request(share_numbers, allocated_size),
        )
        .lease(lease)
        .secret(SecretKind::Upload, &upload.0);
        let answer = self.call(call).await?;
        expect_status(&answer, &[StatusCode::OK])?;
        let mut allocation = wire::decode_allocation(&answer.body).map_err(bad_answer)?;
        allocation.refused = refusals(&answer.headers, share_numbers);
        Ok(allocation)
    }

    async fn write_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError> {
        self.patch_share(storage_index, shnum, upload, None, offset, data)
            .await
    }

    fn allocates_on_write(&self) -> bool {
        self.inner.allocating_write.load(Ordering::Relaxed) == WITH
    }

    async fn write_share_allocating(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        allocated_size: u64,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError> {
        if self.allocates_on_write() {
            let allocation = Some((lease, allocated_size));
            match self
                .patch_share(storage_index, shnum, upload, allocation, offset, data.clone())
                .await
            {
                // An older Tessera server takes the lease secrets for extra ones.
                Err(StorageError::BadRequest(_)) => {
                    self.inner.allocating_write.store(WITHOUT, Ordering::Relaxed);
                }
                written => return written,
            }
        }
        write_share_allocating_in_steps(
            self,
            storage_index,
            shnum,
            lease,
            upload,
            allocated_size,
            offset,
            data,
        )
        .await
    }

    async fn abort_upload(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
    ) -> Result<(), StorageError> {
        let call = Call {
            operation: Operation::Abort { shnum },
            method: Method::PUT,
            path: format!("/storage/v1/immutable/{storage_index}/{shnum}/abort"),
            headers: Vec::new(),
            body: Bytes::new(),
            body_cap: MAX_ERROR_BODY,
        }
        .secret(SecretKind::Upload, &upload.0);
        let answer = self.call(call).await?;
        expect_status(&answer, &[StatusCode::OK, StatusCode::NO_CONTENT])
    }

    async fn list_shares(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
    ) -> Result<BTreeSet<ShareNum>, StorageError> {
        let path = format!("/storage/v1/{}/{storage_index}/shares", kind_path(kind));
        let answer = self.call(Call::cbor_get(Operation::ListShares, path)).await?;
        expect_status(&answer, &[StatusCode::OK])?;
        wire::decode_share_set(&answer.body).map_err(bad_answer)
    }

    async fn read_share(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        // A zero-length read still asks for one byte, so that a missing share is reported.
        let asked = len.max(1);
        let call = Call {
            operation: Operation::Read,
            method: Method::GET,
            path: format!("/storage/v1/{}/{storage_index}/{shnum}", kind_path(kind)),
            headers: vec![(RANGE, wire::format_range(offset, asked))],
            body: Bytes::new(),
            body_cap: usize::try_from(asked).unwrap_or(usize::MAX),
        };
        let call = if offset.checked_add(asked).is_none() {
            // The range cannot be written; read the whole share and cut locally.
            Call {
                headers: Vec::new(),
                body_cap: usize::MAX,
                ..call
            }
        } else {
            call
        };
        let answer = self.call(call).await?;
        let data = match answer.status {
            StatusCode::NO_CONTENT => Bytes::new(),
            StatusCode::PARTIAL_CONTENT => {
                let range = answer
                    .headers
                    .get(CONTENT_RANGE)
                    .and_then(|v| wire::parse_response_content_range(v.as_bytes()));
                match range {
                    // `end - start + 1` overflows for a hostile `bytes 0-18446744073709551615/*`.
                    Some((start, end, _))
                        if start == offset
                            && (end - start).checked_add(1) == Some(answer.body.len() as u64) =>
                    {
                        answer.body
                    }
                    _ => {
                        return Err(bad_answer(
                            "206 response whose Content-Range does not match the request",
                        ));
                    }
                }
            }
            StatusCode::OK => {
                // The whole share: keep the asked part.
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(answer.body.len());
                let end = start
                    .saturating_add(usize::try_from(asked).unwrap_or(usize::MAX))
                    .min(answer.body.len());
                answer.body.slice(start..end)
            }
            other => {
                return Err(StorageError::Protocol {
                    status: other.as_u16(),
                    message: "unexpected status for a share read".to_owned(),
                });
            }
        };
        let keep = usize::try_from(len).unwrap_or(usize::MAX).min(data.len());
        Ok(data.slice(..keep))
    }

    async fn advise_corrupt_share(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<(), StorageError> {
        let mut call = Call::cbor_post(
            Operation::Corrupt,
            Method::POST,
            format!("/storage/v1/{}/{storage_index}/{shnum}/corrupt", kind_path(kind)),
            wire::encode_corrupt(reason),
        );
        call.body_cap = MAX_ERROR_BODY;
        let answer = self.call(call).await?;
        expect_status(&answer, &[StatusCode::OK, StatusCode::NO_CONTENT])
    }

    async fn remove_corrupt_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<CorruptShareRemoval, StorageError> {
        let call = Call::cbor_post(
            Operation::RemoveCorrupt,
            Method::POST,
            format!("/storage/v1/tessera/immutable/{storage_index}/{shnum}/remove-corrupt"),
            wire::encode_corrupt(&wire::bounded_reason(reason)),
        );
        let answer = self.call(call).await?;
        expect_status(&answer, &[StatusCode::OK])?;
        wire::decode_removal(&answer.body).map_err(bad_answer)
    }

    async fn put_whole_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        data: Bytes,
    ) -> Result<WholeShare, StorageError> {
        if self.inner.whole_share.load(Ordering::Relaxed) != WITH || data.len() as u64 > WHOLE_SHARE_LIMIT {
            return put_whole_share_in_steps(self, storage_index, shnum, lease, data).await;
        }
        let call = Call {
            operation: Operation::PutWhole,
            method: Method::PUT,
            path: format!("/storage/v1/tessera/immutable/{storage_index}/{shnum}"),
            headers: vec![(CONTENT_TYPE, OCTET_STREAM.to_owned())],
            body: data.clone(),
            body_cap: MAX_ERROR_BODY,
        }
        .lease(lease);
        match self.call(call).await {
            Ok(answer) if answer.status == StatusCode::CREATED => Ok(WholeShare::Stored),
            Ok(answer) => {
                expect_status(&answer, &[StatusCode::OK])?;
                Ok(WholeShare::AlreadyHeld)
            }
            Err(StorageError::Protocol {
                status: 404 | 405, ..
            }) => {
                self.inner.whole_share.store(WITHOUT, Ordering::Relaxed);
                put_whole_share_in_steps(self, storage_index, shnum, lease, data).await
            }
            Err(e) => Err(e),
        }
    }

    fn warm(&self, connections: usize) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let wanted = connections.min(self.inner.options.max_idle_connections);
        // Counted and reserved under the pool's lock: callers at once (every request of an
        // abandoned download) open `wanted` between them, not each.
        let missing = {
            let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            let missing =
                wanted.saturating_sub(idle.connections.len() + self.inner.opening.load(Ordering::Relaxed));
            self.inner.opening.fetch_add(missing, Ordering::Relaxed);
            missing
        };
        for _ in 0..missing {
            let client = self.clone();
            runtime.spawn(async move {
                match client.connect().await {
                    Ok(sender) => client.put_idle(sender),
                    Err(error) => tracing::debug!(%error, "a connection opened ahead of use failed"),
                }
                client.inner.opening.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    async fn add_or_renew_lease(
        &self,
        storage_index: StorageIndex,
        lease: &LeaseSecrets,
    ) -> Result<(), StorageError> {
        let call = Call {
            operation: Operation::Lease,
            method: Method::PUT,
            path: format!("/storage/v1/lease/{storage_index}"),
            headers: Vec::new(),
            body: Bytes::new(),
            body_cap: MAX_ERROR_BODY,
        }
        .lease(lease);
        let answer = self.call(call).await?;
        expect_status(&answer, &[StatusCode::NO_CONTENT, StatusCode::OK])
    }

    async fn read_test_write(
        &self,
        storage_index: StorageIndex,
        write_enabler: &WriteEnabler,
        lease: &LeaseSecrets,
        test_write_vectors: &BTreeMap<ShareNum, TestWriteVectors>,
        read_vector: &[ReadVector],
    ) -> Result<ReadTestWriteResult, StorageError> {
        let call = Call::cbor_post(
            Operation::ReadTestWrite,
            Method::POST,
            format!("/storage/v1/mutable/{storage_index}/read-test-write"),
            wire::encode_rtw_request(test_write_vectors, read_vector),
        )
        .secret(SecretKind::WriteEnabler, &write_enabler.0)
        .lease(lease);
        let answer = self.call(call).await?;
        expect_status(&answer, &[StatusCode::OK])?;
        wire::decode_rtw_result(&answer.body).map_err(bad_answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's declared length sets aside that much, never more than the read's cap or 2 MiB,
    /// whatever it declares (none, 0, past the cap, past `usize`).
    #[test]
    fn a_declared_length_sets_aside_at_most_the_cap_or_two_mib() {
        assert_eq!(presize(Some(349_526), 349_526), 349_526);
        assert_eq!(presize(Some(349_526), 1000), 1000);
        assert_eq!(presize(None, 349_526), 0);
        assert_eq!(presize(Some(0), 349_526), 0);
        assert_eq!(presize(Some(1 << 40), usize::MAX), PRESIZE_MAX);
        assert_eq!(presize(Some(u64::MAX), usize::MAX), PRESIZE_MAX);
        assert_eq!(presize(Some(u64::MAX), 10), 10);
    }

    #[test]
    fn tor_nurls_are_refused() {
        let nurl: Nurl = format!("pb+tor://{}@abc.onion:1/s#v=1", "A".repeat(43))
            .parse()
            .unwrap();
        let error = HttpStorageClient::new(&nurl).unwrap_err();
        assert!(error.to_string().contains("Tor"), "{error}");
    }

    #[test]
    fn debug_hides_the_swissnum() {
        let nurl = Nurl::new("A".repeat(43), "127.0.0.1", 9, "topsecretswissnum");
        let client = HttpStorageClient::new(&nurl).unwrap();
        assert!(!format!("{client:?}").contains("topsecret"));
    }

    #[test]
    fn statuses_map_back_by_context_without_the_tessera_header() {
        let none = HeaderMap::new();
        let write = Operation::Write { shnum: 3, offset: 7 };
        let map = |code: u16, op| error_from_response(StatusCode::from_u16(code).unwrap(), &none, b"msg", op);
        assert!(matches!(map(401, write), StorageError::UploadSecretMismatch));
        assert!(matches!(
            map(401, Operation::ReadTestWrite),
            StorageError::WriteEnablerMismatch
        ));
        assert!(matches!(map(401, Operation::Version), StorageError::Unauthorized));
        assert!(matches!(
            map(405, Operation::Abort { shnum: 2 }),
            StorageError::AlreadyComplete { shnum: 2 }
        ));
        assert!(matches!(map(409, write), StorageError::Conflict { offset: 7 }));
        assert!(matches!(map(404, Operation::Read), StorageError::NotFound(m) if m == "msg"));
        assert!(matches!(map(400, Operation::Read), StorageError::BadRequest(_)));
        assert!(map(500, Operation::Read).is_transient());
        assert!(map(503, Operation::Read).is_transient());
        assert!(matches!(
            map(416, write),
            StorageError::Protocol { status: 416, .. }
        ));
    }

    #[test]
    fn tessera_error_tags_parse() {
        assert!(matches!(
            parse_error_tag("beyond-allocation end=10 allocated=8", ""),
            Some(StorageError::BeyondAllocation {
                end: 10,
                allocated: 8
            })
        ));
        assert!(matches!(
            parse_error_tag("bad-request", "bad request: nope"),
            Some(StorageError::BadRequest(m)) if m == "nope"
        ));
        assert!(parse_error_tag("conflict", "").is_none());
        assert!(parse_error_tag("mystery", "").is_none());
    }

    /// A hostile server's `X-Tessera-Refused` headers: too many, too long, malformed, for share
    /// numbers not asked for, or not text. The client keeps at most the bound, each cut short,
    /// and only for shares it asked for.
    #[test]
    fn hostile_refusal_headers_are_bounded() {
        let mut headers = HeaderMap::new();
        let long = "x".repeat(10_000);
        headers.append(wire::REFUSED_HEADER, format!("1 {long}").parse().unwrap());
        headers.append(wire::REFUSED_HEADER, "no-space-at-all".parse().unwrap());
        headers.append(wire::REFUSED_HEADER, "99 not asked for".parse().unwrap());
        headers.append(wire::REFUSED_HEADER, "-1 negative".parse().unwrap());
        headers.append(
            wire::REFUSED_HEADER,
            hyper::http::HeaderValue::from_bytes(b"2 \xff\xfe").unwrap(),
        );
        for _ in 0..1000 {
            headers.append(wire::REFUSED_HEADER, "3 repeated".parse().unwrap());
        }
        headers.append(wire::REFUSED_HEADER, "4 past the count".parse().unwrap());
        let asked: BTreeSet<ShareNum> = (0..10).collect();
        let refused = refusals(&headers, &asked);
        assert_eq!(refused.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(refused[&1].len(), wire::MAX_REFUSAL_LEN);
        assert_eq!(refused[&3], "repeated");
    }
}
