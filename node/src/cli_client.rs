//! The CLI's client of a gateway's web API (Tahoe's WAPI), found through `NODEDIR/node.url`: a small
//! blocking façade over hyper that the file-store commands (`cli_fs`) use, the one place that turns
//! a gateway's error answer into one line for a person, and `tessera status`. An `https://` gateway
//! is reached over TLS with the trust `cli_tls` chooses; plain `http://` is unchanged.
//!
//! Error answers: Tahoe sends HTML error pages for 4xx and tracebacks for 500, and the CLI must not
//! print caps the user did not type, so [`GatewayError`] keeps only the human sentence (the page's
//! message, or a known exception named in a traceback) with anything cap-like redacted.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::Method;
use hyper::body::Frame;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn node_url(node_dir: &Path) -> anyhow::Result<String> {
    let path = node_dir.join("node.url");
    let url = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: is the node running? Start it with `tessera run {}` (or pass --node-directory)",
            path.display(),
            node_dir.display()
        )
    })?;
    let url = url.trim().trim_end_matches('/').to_owned();
    if !url.starts_with("http://") && !url.starts_with("https://") {
        bail!("{} does not hold an http:// or https:// URL", path.display());
    }
    Ok(url)
}

/// How the CLI reaches its gateway beyond the node directory: `--node-url` and `--ca-file`.
#[derive(Debug, Clone, Default)]
pub(crate) struct GatewayArgs {
    /// The gateway's URL, instead of the node directory's `node.url`.
    pub(crate) node_url: Option<String>,
    /// The only CA certificates to trust for an https gateway (see `cli_tls`).
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A progress bar on standard error, or a hidden one when standard error is not a terminal.
pub(crate) fn progress_bar(total: Option<u64>, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
    } else {
        "{msg} {bytes} {bytes_per_sec}"
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(verb.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A gateway's non-success answer: its status and one human sentence, with caps redacted.
#[derive(Debug)]
pub(crate) struct GatewayError {
    /// The HTTP status.
    pub(crate) status: u16,
    /// What the gateway said, reduced to one line.
    pub(crate) message: String,
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {})", self.message, self.status)
    }
}

impl std::error::Error for GatewayError {}

/// The status of a gateway error inside an `anyhow::Error`, if it is one.
pub(crate) fn gateway_status(error: &anyhow::Error) -> Option<u16> {
    error.downcast_ref::<GatewayError>().map(|e| e.status)
}

/// Replaces every cap-looking word (`URI:…`, `ro.URI:…`, `imm.URI:…`) with `<cap>`.
pub(crate) fn redact_caps(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("URI:") {
        let mut cut = start;
        for prefix in ["ro.", "imm."] {
            if rest[..start].ends_with(prefix) {
                cut = start - prefix.len();
            }
        }
        out.push_str(&rest[..cut]);
        out.push_str("<cap>");
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || "'\"<>,;()[]{}".contains(c))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].trim())
}

/// Exceptions Tahoe reports only as a 500 traceback, and what they mean to a person.
const KNOWN_EXCEPTIONS: [(&str, &str); 5] = [
    (
        "NotWriteableError",
        "that directory or file is read-only here (it was reached through a read-only cap)",
    ),
    (
        "NotMutableError",
        "that object is immutable and cannot be changed in place",
    ),
    (
        "ChildOfWrongTypeError",
        "a file is where a directory is needed (or the other way round)",
    ),
    (
        "UncoordinatedWriteError",
        "someone else changed the same mutable object at the same time; try again",
    ),
    ("NoSuchChildError", "No such child"),
];

/// Reduces a gateway's error body to one line: the message of an HTML error page, a known
/// exception from a traceback, or the first line of plain text.
pub(crate) fn gateway_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
    let text = text.trim();
    // Tahoe answers exceptions it has no status for with a traceback (which may hold caps): only
    // the exception's meaning is shown.
    if text.contains("Traceback") {
        if let Some((_, meaning)) = KNOWN_EXCEPTIONS.iter().find(|(name, _)| text.contains(name)) {
            return (*meaning).to_owned();
        }
        return "the gateway failed with an internal error; its log has the details".to_owned();
    }
    let message = if text.contains("<html") || text.starts_with('<') {
        let paragraph = between(text, "<p>", "</p>").filter(|p| !p.is_empty() && *p != "no details");
        let heading = between(text, "<h1>", "</h1>");
        paragraph
            .or(heading)
            .or_else(|| between(text, "<title>", "</title>"))
            .map(html_unescape)
            .unwrap_or_default()
    } else {
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let message = redact_caps(message.trim());
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        match status {
            404 => "not found".to_owned(),
            409 => "conflict".to_owned(),
            _ => "the gateway refused the request".to_owned(),
        }
    } else {
        message
    }
}

/// Characters kept as they are in a URL path segment (Python's `urllib.parse.quote` minus `/`).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte)
}

/// Percent-encodes one path segment or query value, as `urllib.parse.quote(s, safe="")` does.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if is_unreserved(byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a `/`-separated path segment by segment (Tahoe's `escape_path`).
pub(crate) fn escape_path(path: &str) -> String {
    path.split('/').map(quote).collect::<Vec<_>>().join("/")
}

/// A response whose body has not been read yet.
#[derive(Debug)]
pub(crate) struct Download {
    response: hyper::Response<hyper::body::Incoming>,
}

impl Download {
    /// The Content-Type the gateway sent, if any.
    pub(crate) fn content_type(&self) -> &str {
        self.response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn content_length(&self) -> Option<u64> {
        self.response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    }
}

/// A gateway, reached over HTTP or HTTPS from a blocking caller.
#[derive(Debug)]
pub(crate) struct Gateway {
    url: String,
    runtime: tokio::runtime::Runtime,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// What an https connection trusts, for the error when a certificate is refused.
    trust: String,
}

fn empty() -> Body {
    BodyExt::boxed(http_body_util::Empty::new().map_err(|never| match never {}))
}

fn full(bytes: Bytes) -> Body {
    BodyExt::boxed(Full::new(bytes).map_err(|never| match never {}))
}

impl Gateway {
    /// The gateway of the node in `node_dir` (or at `args.node_url`, which wins when given),
    /// trusting for https what `cli_tls::Trust::choose` says.
    pub(crate) fn open(node_dir: &Path, args: &GatewayArgs) -> anyhow::Result<Gateway> {
        let url = match &args.node_url {
            Some(url) => {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    bail!("--node-url must look like http://127.0.0.1:3456 (or https://…), not '{url}'");
                }
                url.trim_end_matches('/').to_owned()
            }
            None => node_url(node_dir)?,
        };
        let trust =
            crate::cli_tls::Trust::choose(node_dir, &url, args.node_url.is_none(), args.ca_file.as_deref())?;
        let runtime = runtime()?;
        let client = {
            let _guard = runtime.enter();
            let mut http = HttpConnector::new();
            // https:// URLs pass through to the TLS layer around it.
            http.enforce_http(false);
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(trust.client_config()?)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Client::builder(TokioExecutor::new()).build(connector)
        };
        Ok(Gateway {
            url,
            runtime,
            client,
            trust: trust.described().to_owned(),
        })
    }

    /// `NODEURL/uri`, where unlinked objects are created.
    pub(crate) fn unlinked(&self) -> String {
        format!("{}/uri", self.url)
    }

    /// `NODEURL/uri/ROOT[/path]` with the root cap and each path segment percent-encoded.
    pub(crate) fn object(&self, root: &str, path: &str) -> String {
        let mut url = format!("{}/uri/{}", self.url, quote(root));
        if !path.is_empty() {
            url.push('/');
            url.push_str(&escape_path(path));
        }
        url
    }

    fn unreachable(&self, e: hyper_util::client::legacy::Error) -> anyhow::Error {
        if let Some(why) = crate::cli_tls::untrusted(&e) {
            return anyhow::anyhow!(
                "the gateway at {} presented a TLS certificate that is not trusted ({why}); the CLI trusts {}",
                self.url,
                self.trust
            );
        }
        anyhow::anyhow!(
            "cannot reach the gateway at {} ({e}); is its node running (`tessera run NODEDIR`)?",
            self.url
        )
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Body,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header(hyper::header::ACCEPT, "text/plain, application/octet-stream")
            .body(body)
            .context("cannot build the request")?;
        self.client
            .request(request)
            .await
            .map_err(|e| self.unreachable(e))
    }

    async fn read_reply(response: hyper::Response<hyper::body::Incoming>) -> anyhow::Result<(u16, Bytes)> {
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .context("the gateway's answer was cut off")?
            .to_bytes();
        if !(200..300).contains(&status) {
            return Err(GatewayError {
                status,
                message: gateway_message(status, &body),
            }
            .into());
        }
        Ok((status, body))
    }

    /// Sends a request with a small body and returns the status and body of a 2xx answer; any other
    /// answer is a [`GatewayError`].
    pub(crate) fn call(&self, method: Method, url: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        self.runtime.block_on(async {
            let body = if body.is_empty() { empty() } else { full(body) };
            let response = self.send(method, url, body).await?;
            Self::read_reply(response).await
        })
    }

    /// `GET url?t=json`, parsed.
    pub(crate) fn json(&self, url: &str) -> anyhow::Result<serde_json::Value> {
        let (_, body) = self.call(Method::GET, &format!("{url}?t=json"), Bytes::new())?;
        serde_json::from_slice(&body).context("the gateway's t=json answer is not JSON")
    }

    /// Streams `input` as the body of a request (PUT or POST) with a progress bar, and returns the
    /// status and body of a 2xx answer.
    pub(crate) fn upload(
        &self,
        method: Method,
        url: &str,
        mut input: Box<dyn Read + Send>,
        size: Option<u64>,
        label: &str,
    ) -> anyhow::Result<(u16, Bytes)> {
        let bar = progress_bar(size, label);
        let reader_bar = bar.clone();
        let result = self.runtime.block_on(async {
            let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
            let reader = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match input.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let message = e.to_string();
                            let _ = futures::executor::block_on(tx.send(Err(e)));
                            return Err(anyhow::anyhow!("reading the input failed: {message}"));
                        }
                    };
                    reader_bar.inc(n as u64);
                    if futures::executor::block_on(
                        tx.send(Ok(Frame::data(Bytes::copy_from_slice(&buf[..n])))),
                    )
                    .is_err()
                    {
                        return Ok(());
                    }
                }
            });
            let mut request = hyper::Request::builder()
                .method(method)
                .uri(url)
                .header(hyper::header::ACCEPT, "text/plain, application/octet-stream");
            if let Some(size) = size {
                request = request.header(hyper::header::CONTENT_LENGTH, size);
            }
            let request = request
                .body(BodyExt::boxed(StreamBody::new(rx)))
                .context("cannot build the request")?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| self.unreachable(e));
            let read = reader.await.context("the input reader failed")?;
            let response = response?;
            read?;
            bar.set_message("encoded and stored");
            Self::read_reply(response).await
        });
        match &result {
            Ok(_) => bar.finish_and_clear(),
            Err(_) => bar.abandon(),
        }
        result
    }

    /// Starts a GET; a non-2xx answer is a [`GatewayError`].
    pub(crate) fn start_download(&self, url: &str) -> anyhow::Result<Download> {
        self.start(Method::GET, url)
    }

    /// Sends a request without a body and returns the answer before its body is read; a non-2xx
    /// answer is a [`GatewayError`].
    pub(crate) fn start(&self, method: Method, url: &str) -> anyhow::Result<Download> {
        self.runtime.block_on(async {
            let response = self.send(method, url, empty()).await?;
            if !response.status().is_success() {
                Self::read_reply(response).await?;
                bail!("the gateway answered with no success and no error");
            }
            Ok(Download { response })
        })
    }

    /// Hands each chunk of an answer's body to `each` as it arrives (streamed answers such as
    /// `t=stream-deep-check`), without a progress bar.
    pub(crate) fn for_each_chunk(
        &self,
        download: Download,
        mut each: impl FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            let mut body = download.response.into_body().into_data_stream();
            while let Some(chunk) = body.next().await {
                each(&chunk.context("the gateway's answer was cut off")?)?;
            }
            Ok(())
        })
    }

    /// Copies a download into `sink` with a progress bar; returns the number of bytes, and fails
    /// if the body is shorter than the gateway announced.
    pub(crate) fn finish_download(
        &self,
        download: Download,
        sink: &mut dyn Write,
        label: &str,
    ) -> anyhow::Result<u64> {
        let size = download.content_length();
        let bar = progress_bar(size, label);
        let result = self.runtime.block_on(async {
            let mut body = download.response.into_body().into_data_stream();
            let mut received = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.context("the download was cut off (the gateway may have lost too many shares)")?;
                sink.write_all(&chunk).context("writing the output failed")?;
                received += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
            sink.flush().context("writing the output failed")?;
            if size.is_some_and(|expected| expected != received) {
                bail!("the download was cut off after {received} bytes");
            }
            Ok(received)
        });
        match &result {
            Ok(_) => bar.finish_and_clear(),
            Err(_) => bar.abandon(),
        }
        result
    }

    /// Downloads `url` completely into memory (for small objects such as caps).
    pub(crate) fn get_bytes(&self, url: &str) -> anyhow::Result<Bytes> {
        Ok(self.call(Method::GET, url, Bytes::new())?.1)
    }

    fn status_json(&self) -> anyhow::Result<serde_json::Value> {
        let body = self.get_bytes(&format!("{}/?t=json", self.url))?;
        serde_json::from_slice(&body).context("the node's status is not JSON")
    }
}

/// How many storage servers the node at `node_dir` sees connected.
pub(crate) fn connected_servers(node_dir: &Path) -> anyhow::Result<usize> {
    let status = Gateway::open(node_dir, &GatewayArgs::default())?.status_json()?;
    Ok(status["servers"]
        .as_array()
        .map_or(0, |s| s.iter().filter(|s| s["connected"] == true).count()))
}

/// How long `tessera status` waits for the storage servers' own status pages (all at once).
const SERVER_STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The most a storage server's status page may send `tessera status` (the page is another
/// party's; ours is a few kB).
const SERVER_STATUS_LIMIT: usize = 1 << 20;

/// The space each server's shares use, from its own `/storage?t=json` at the web address it
/// announced, asked of every server at once: `None` for one that announced none, did not answer
/// within [`SERVER_STATUS_TIMEOUT`], or sent something other than a status of at most
/// [`SERVER_STATUS_LIMIT`] bytes.
fn servers_used_space(gateway: &Gateway, servers: &[serde_json::Value]) -> Vec<Option<u64>> {
    use http_body_util::BodyExt;
    let used = |server: &serde_json::Value| {
        let url = server["web_url"]
            .as_str()
            .map(|url| format!("{url}storage?t=json"));
        async move {
            let fetch = async {
                let response = gateway.send(Method::GET, &url?, empty()).await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                let body = http_body_util::Limited::new(response.into_body(), SERVER_STATUS_LIMIT)
                    .collect()
                    .await
                    .ok()?
                    .to_bytes();
                let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
                json["tessera"]["used_space"].as_u64()
            };
            tokio::time::timeout(SERVER_STATUS_TIMEOUT, fetch)
                .await
                .ok()
                .flatten()
        }
    };
    gateway
        .runtime
        .block_on(futures::future::join_all(servers.iter().map(used)))
}

/// `tessera status`: the node's view of the storage servers.
pub(crate) fn status(node_dir: &Path, args: &GatewayArgs) -> anyhow::Result<()> {
    let gateway = Gateway::open(node_dir, args)?;
    let status = gateway.status_json()?;
    let servers = status["servers"].as_array().cloned().unwrap_or_default();
    let connected = servers.iter().filter(|s| s["connected"] == true).count();
    crate::output::line(&format!(
        "node {} at {}: {connected} of {} storage servers connected (encoding {}-of-{}, happy {})",
        status["nickname"].as_str().unwrap_or(""),
        gateway.url,
        servers.len(),
        status["encoding"]["needed"],
        status["encoding"]["total"],
        status["encoding"]["happy"],
    ))?;
    let used_space = servers_used_space(&gateway, &servers);
    for (server, used) in servers.iter().zip(used_space) {
        let state = if server["connected"] == true {
            "connected"
        } else {
            "not connected"
        };
        let space = server["available_space"]
            .as_u64()
            .map(frontends::web::human_size)
            .unwrap_or_else(|| "?".into());
        let since = server["connected_since"]
            .as_u64()
            .map(|t| format!(" for {}", ago(t)))
            .unwrap_or_default();
        let contact = server["last_seen"]
            .as_u64()
            .map(|t| format!("last contact {} ago", ago(t)))
            .unwrap_or_else(|| "never contacted".into());
        // Used space comes from the server's own status page, where it announced one.
        let used = used.map(frontends::web::human_size).unwrap_or_else(|| "?".into());
        let error = server["last_error"]
            .as_str()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        crate::output::line(&format!(
            "  {:<14} {}  {state}{since}, {contact}; used {used}, available {space}{error}",
            // Nicknames come from the servers' announcements: control characters escaped.
            crate::announcement::shown_nickname(server["nickname"].as_str().unwrap_or("")),
            server["server_id"].as_str().unwrap_or("").escape_debug(),
        ))?;
    }
    Ok(())
}

/// How long ago a Unix time was, roughly: `42s`, `5m`, `3h`, `2d`.
fn ago(unix_seconds: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let seconds = now.saturating_sub(unix_seconds);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-connection HTTP server on 127.0.0.1 that answers with `head` and then a body of
    /// `body_len` bytes: `text`, padded with spaces (or, with `None`, reads the request and never
    /// answers).
    fn server(answer: Option<(&'static str, &'static str, usize)>) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            match answer {
                Some((head, text, body_len)) => {
                    let _ = write!(stream, "{head}Content-Length: {body_len}\r\n\r\n{text}");
                    let chunk = vec![b' '; 64 << 10];
                    let mut sent = text.len().min(body_len);
                    while sent < body_len {
                        let n = chunk.len().min(body_len - sent);
                        if stream.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        sent += n;
                    }
                }
                None => std::thread::sleep(std::time::Duration::from_secs(30)),
            }
        });
        url
    }

    /// Storage servers' status pages are another party's: `tessera status` asks them all at once
    /// and takes at most a bounded answer from each within one timeout; a server that never
    /// answers, answers with too much or with an error shows as unknown, and the others still
    /// show their figure.
    #[test]
    fn servers_status_pages_are_read_at_once_and_bounded() {
        let body = r#"{"tessera": {"used_space": 1234}}"#;
        let good = server(Some(("HTTP/1.1 200 OK\r\n", body, body.len())));
        let servers: Vec<serde_json::Value> = [
            Some(good),
            Some(server(None)),
            Some(server(None)),
            Some(server(Some(("HTTP/1.1 200 OK\r\n", "", 64 << 20)))),
            Some(server(Some(("HTTP/1.1 500 Oops\r\n", "", 10)))),
            None,
        ]
        .into_iter()
        .map(|url| serde_json::json!({ "web_url": url }))
        .collect();
        let dir = tempfile::tempdir().unwrap();
        let args = GatewayArgs {
            node_url: Some("http://127.0.0.1:9".to_owned()),
            ca_file: None,
        };
        let gateway = Gateway::open(dir.path(), &args).unwrap();
        let started = std::time::Instant::now();
        let used = servers_used_space(&gateway, &servers);
        assert_eq!(used, [Some(1234), None, None, None, None, None]);
        // Two silent servers cost one timeout, not two.
        assert!(
            started.elapsed() < SERVER_STATUS_TIMEOUT * 2,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn quotes_like_python() {
        assert_eq!(quote("URI:DIR2:ab:cd"), "URI%3ADIR2%3Aab%3Acd");
        assert_eq!(escape_path("a b/ü/x~y_z.-"), "a%20b/%C3%BC/x~y_z.-");
        assert_eq!(quote("a/b?c#d%"), "a%2Fb%3Fc%23d%25");
    }

    #[test]
    fn tahoe_error_pages_become_one_line() {
        let page = b"\n<html>\n  <head><title>404 - Error</title></head>\n  <body>\n    <h1>Error</h1>\n    <p>No such child: nope</p>\n  </body>\n</html>\n";
        assert_eq!(gateway_message(404, page), "No such child: nope");
        let page = b"<html><head><title>409 - Unable to create directory &#x27;h.txt&#x27;: a file was in the way</title></head><body><h1>Unable to create directory &#x27;h.txt&#x27;: a file was in the way</h1><p>no details</p></body></html>";
        assert_eq!(
            gateway_message(409, page),
            "Unable to create directory 'h.txt': a file was in the way"
        );
        assert_eq!(gateway_message(400, b"PUT to a directory"), "PUT to a directory");
        let traceback =
            b"Traceback (most recent call last):\nFailure: allmydata.mutable.common.NotWriteableError: \n";
        assert!(gateway_message(500, traceback).contains("read-only"));
        let secret = b"Traceback: something about URI:DIR2:aaaa:bbbb failed";
        let message = gateway_message(500, secret);
        assert!(!message.contains("URI:"), "{message}");
        assert!(message.contains("internal error"), "{message}");
        let unavailable = b"upload failed: only 2 servers, shares.happy is 5\nmore detail\n";
        assert_eq!(
            gateway_message(503, unavailable),
            "upload failed: only 2 servers, shares.happy is 5"
        );
    }

    #[test]
    fn caps_are_redacted() {
        assert_eq!(
            redact_caps("bad URI:CHK:a:b:3:10:99, and ro.URI:DIR2-RO:x:y."),
            "bad <cap>, and <cap>"
        );
        assert_eq!(redact_caps("nothing here"), "nothing here");
    }
}
