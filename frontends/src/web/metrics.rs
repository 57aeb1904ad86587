//! The gateway's counters and `/statistics?t=openmetrics` (Prometheus text format), plus the access
//! log, which records every request with caps in the path replaced by their kind.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};

use crate::counters::{ErrorKind, Frontend, FrontendCounters, Op};

use super::WebState;

/// Request and byte counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    responses_2xx: AtomicU64,
    responses_3xx: AtomicU64,
    responses_4xx: AtomicU64,
    responses_5xx: AtomicU64,
    uploads: AtomicU64,
    uploaded_bytes: AtomicU64,
}

impl Metrics {
    /// Counts a finished upload of `bytes` bytes.
    pub fn record_upload(&self, bytes: u64) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
        self.uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn record_response(&self, status: u16) {
        let counter = match status {
            200..=299 => &self.responses_2xx,
            300..=399 => &self.responses_3xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The gateway's figures: requests, responses by class, uploads, and the grid's servers.
    pub fn write(&self, out: &mut Exposition, servers_known: usize, servers_connected: usize) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.counter(
            "tessera_web_requests",
            "HTTP requests received by the web gateway.",
            &[("", get(&self.requests) as f64)],
        );
        out.counter(
            "tessera_web_responses",
            "HTTP responses of the web gateway by status class.",
            &[
                ("{class=\"2xx\"}", get(&self.responses_2xx) as f64),
                ("{class=\"3xx\"}", get(&self.responses_3xx) as f64),
                ("{class=\"4xx\"}", get(&self.responses_4xx) as f64),
                ("{class=\"5xx\"}", get(&self.responses_5xx) as f64),
            ],
        );
        out.counter(
            "tessera_uploads",
            "Files uploaded through the web gateway.",
            &[("", get(&self.uploads) as f64)],
        );
        out.counter(
            "tessera_uploaded_bytes",
            "Plaintext bytes uploaded through the web gateway.",
            &[("", get(&self.uploaded_bytes) as f64)],
        );
        // Tahoe's names for the same figures (Tahoe counts every uploader, not only the web's).
        out.untyped(
            "tahoe_counters_uploader_files_uploaded",
            "Files uploaded (Tahoe's uploader.files_uploaded).",
            get(&self.uploads) as f64,
        );
        out.untyped(
            "tahoe_counters_uploader_bytes_uploaded",
            "Bytes uploaded (Tahoe's uploader.bytes_uploaded).",
            get(&self.uploaded_bytes) as f64,
        );
        out.gauge(
            "tessera_storage_servers_known",
            "Storage servers known.",
            &[("", servers_known as f64)],
        );
        out.gauge(
            "tessera_storage_servers_connected",
            "Storage servers that answered the last probe.",
            &[("", servers_connected as f64)],
        );
    }

    /// How long the grid operations of this gateway (every frontend's) took, and how many failed.
    pub fn write_operations(out: &mut Exposition, operations: &filenode::operations::Operations) {
        let histograms = operations.duration_histograms();
        let series: Vec<(String, Vec<u64>, f64)> = histograms
            .iter()
            .map(|h| {
                (
                    format!("op=\"{}\"", h.kind.name()),
                    h.cumulative.clone(),
                    h.sum_seconds,
                )
            })
            .collect();
        out.histogram(
            "tessera_operation_duration_seconds",
            "How long finished uploads, downloads, publishes and retrieves (every frontend's) and checks, verifies and repairs took.",
            &filenode::operations::DURATION_BUCKETS,
            &series,
        );
        let failures: Vec<(String, f64)> = histograms
            .iter()
            .map(|h| (format!("{{op=\"{}\"}}", h.kind.name()), h.failures as f64))
            .collect();
        let failures: Vec<(&str, f64)> = failures.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        out.counter(
            "tessera_operation_failures",
            "Uploads, downloads, publishes, retrieves and repairs that failed.",
            &failures,
        );
    }

    /// The figures of `/statistics?t=json` (Tahoe's `counters`).
    pub fn tahoe_counters(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("uploader.files_uploaded", get(&self.uploads)),
            ("uploader.bytes_uploaded", get(&self.uploaded_bytes)),
            ("tessera.web.requests", get(&self.requests)),
        ]
    }
}

/// Which text format `/statistics?t=openmetrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFormat {
    /// OpenMetrics 1.0 (`application/openmetrics-text`), what Tahoe serves and Prometheus asks
    /// for first: a counter family `x` has the sample `x_total`, and the text ends with `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain`), for clients that ask only for it (as
    /// `promtool check metrics` reads): the counter's `TYPE` line names `x_total`.
    Prometheus,
}

impl MetricsFormat {
    /// OpenMetrics unless the `Accept` header asks for `text/plain` and not for OpenMetrics.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("text/plain") && !accept.contains("openmetrics") => {
                MetricsFormat::Prometheus
            }
            _ => MetricsFormat::OpenMetrics,
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            MetricsFormat::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Builds a metrics text: every family with its `TYPE` and `HELP`.
#[derive(Debug)]
pub struct Exposition {
    format: MetricsFormat,
    text: String,
}

/// A sample value as both formats write it (`NaN` for none).
fn value_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

impl Exposition {
    /// An empty text in `format`.
    pub fn new(format: MetricsFormat) -> Self {
        Exposition {
            format,
            text: String::new(),
        }
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        self.text
            .push_str(&format!("# TYPE {name} {kind}\n# HELP {name} {help}\n"));
    }

    fn sample(&mut self, name: &str, labels: &str, value: f64) {
        self.text
            .push_str(&format!("{name}{labels} {}\n", value_text(value)));
    }

    /// A counter family `name` (without `_total`); each sample is `(labels, value)`, labels written
    /// as `{k="v"}` or empty.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(&str, f64)]) {
        let total = format!("{name}_total");
        match self.format {
            MetricsFormat::OpenMetrics => self.header(name, "counter", help),
            MetricsFormat::Prometheus => self.header(&total, "counter", help),
        }
        for (labels, value) in samples {
            self.sample(&total, labels, *value);
        }
    }

    /// A gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(&str, f64)]) {
        self.header(name, "gauge", help);
        for (labels, value) in samples {
            self.sample(name, labels, *value);
        }
    }

    /// One sample of no declared type, under a name Tahoe uses (Tahoe declares no types).
    pub fn untyped(&mut self, name: &str, help: &str, value: f64) {
        let kind = match self.format {
            MetricsFormat::OpenMetrics => "unknown",
            MetricsFormat::Prometheus => "untyped",
        };
        self.header(name, kind, help);
        self.sample(name, "", value);
    }

    /// A summary family: quantile samples (`quantile` label text as given), then `_sum` and
    /// `_count`.
    pub fn summary(&mut self, name: &str, help: &str, quantiles: &[(&str, f64)], sum: f64, count: u64) {
        self.header(name, "summary", help);
        for (quantile, value) in quantiles {
            self.sample(name, &format!("{{quantile=\"{quantile}\"}}"), *value);
        }
        self.sample(&format!("{name}_sum"), "", sum);
        self.sample(&format!("{name}_count"), "", count as f64);
    }

    /// A histogram family: per series (its labels without braces, e.g. `op="upload"`), the
    /// cumulative counts for each of `bounds` and then for `+Inf`, and the sum.
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], series: &[(String, Vec<u64>, f64)]) {
        self.header(name, "histogram", help);
        for (labels, cumulative, sum) in series {
            let sep = if labels.is_empty() { "" } else { "," };
            for (i, count) in cumulative.iter().enumerate() {
                let le = bounds
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| value_text(*b));
                self.sample(
                    &format!("{name}_bucket"),
                    &format!("{{{labels}{sep}le=\"{le}\"}}"),
                    *count as f64,
                );
            }
            let braced = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            self.sample(&format!("{name}_sum"), &braced, *sum);
            self.sample(
                &format!("{name}_count"),
                &braced,
                cumulative.last().copied().unwrap_or(0) as f64,
            );
        }
    }

    /// The finished text (OpenMetrics ends with `# EOF`).
    pub fn finish(mut self) -> String {
        if self.format == MetricsFormat::OpenMetrics {
            self.text.push_str("# EOF\n");
        }
        self.text
    }
}

/// A request path with every cap replaced by `[kind]`, for logs.
pub fn redact_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            if decoded.starts_with("URI:")
                || decoded.starts_with("ro.URI:")
                || decoded.starts_with("imm.URI:")
            {
                let kind: String = decoded.split(':').take(2).collect::<Vec<_>>().join(":");
                format!("[{kind}]")
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Counts requests and responses and writes the access log (no caps, no query strings: `uri=` and
/// `filename=` may carry secrets or private names). The web's frontend figures are kept here too:
/// request and response body bytes as they stream, the operation a request under `/uri` or
/// `/named` asks for, and a failed one's [`ErrorKind`] (which [`super::WebError`] puts in its
/// response; otherwise the status's).
pub(super) async fn access_log(State(state): State<WebState>, request: Request, next: Next) -> Response {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let web = Arc::clone(state.counters.frontend(Frontend::Web));
    let method = request.method().clone();
    let op = operation_of(&method, request.uri().path(), request.uri().query());
    let path = redact_path(request.uri().path());
    let started = Instant::now();
    let request = request.map(|body| {
        Body::new(CountingBody {
            inner: body,
            counters: Arc::clone(&web),
            incoming: true,
        })
    });
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.record_response(status);
    if let Some(op) = op {
        web.operation(response.extensions().get::<Op>().copied().unwrap_or(op));
        if status >= 400 {
            let kind = response.extensions().get::<ErrorKind>().copied();
            web.error(kind.unwrap_or_else(|| error_kind_of_status(status)));
        }
    }
    tracing::info!(target: "tessera::access", %method, %path, status, ms = started.elapsed().as_millis() as u64, "request");
    response.map(|body| {
        Body::new(CountingBody {
            inner: body,
            counters: web,
            incoming: false,
        })
    })
}

/// The operation a request under `/uri` or `/named` asks for (`None` for the gateway's own pages).
/// A directory's handler marks its listing itself (a path does not say what it names).
fn operation_of(method: &Method, path: &str, query: Option<&str>) -> Option<Op> {
    if !(path == "/uri" || path.starts_with("/uri/") || path.starts_with("/named/")) {
        return None;
    }
    let t = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("t="))
        .unwrap_or("");
    if path == "/uri" && matches!(*method, Method::GET | Method::HEAD) {
        // `GET /uri?uri=CAP`: the "open a cap" form's redirect.
        return Some(Op::Other);
    }
    Some(match (method.as_str(), t) {
        (_, "check" | "start-deep-check" | "stream-deep-check") => Op::Check,
        (_, "mkdir" | "mkdir-with-children" | "mkdir-immutable") => Op::Mkdir,
        ("DELETE", _) | ("POST", "unlink" | "delete") => Op::Delete,
        ("POST", "rename" | "relink") => Op::Rename,
        ("PUT", "") | ("POST", "upload") => Op::Upload,
        ("GET" | "HEAD", "") => Op::Download,
        ("GET" | "HEAD", "json" | "info" | "uri" | "readonly-uri") => Op::Stat,
        ("GET" | "HEAD", "manifest" | "deep-size" | "deep-stats" | "stream-manifest") => Op::List,
        _ => Op::Other,
    })
}

/// The kind of a failure answered without a [`super::WebError`] (axum's own refusals, the
/// server's limits), and of every WebDAV failure.
pub(crate) fn error_kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Permission,
        404 | 405 => ErrorKind::NotFound,
        408 | 504 => ErrorKind::Timeout,
        409 | 412 | 423 => ErrorKind::Conflict,
        410 => ErrorKind::NotEnoughShares,
        413 | 507 => ErrorKind::Quota,
        501 => ErrorKind::Unsupported,
        503 => ErrorKind::NotEnoughServers,
        400..=499 => ErrorKind::BadRequest,
        _ => ErrorKind::Internal,
    }
}

/// `body`, its data bytes counted into `counters` (in or out) as they pass.
pub(crate) fn counting_body(body: Body, counters: Arc<FrontendCounters>, incoming: bool) -> Body {
    Body::new(CountingBody {
        inner: body,
        counters,
        incoming,
    })
}

/// A body whose data bytes are counted (in or out) as they pass; its size and end are the inner
/// body's, so `Content-Length` and `HEAD` answers are unchanged.
struct CountingBody {
    inner: Body,
    counters: Arc<FrontendCounters>,
    incoming: bool,
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let len = data.len() as u64;
            if self.incoming {
                self.counters.bytes_in(len);
            } else {
                self.counters.bytes_out(len);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_as_the_operation_they_ask_for() {
        let op = |method: Method, path: &str, query: Option<&str>| operation_of(&method, path, query);
        assert_eq!(op(Method::PUT, "/uri", None), Some(Op::Upload));
        assert_eq!(op(Method::PUT, "/uri", Some("t=mkdir")), Some(Op::Mkdir));
        assert_eq!(
            op(Method::GET, "/uri", Some("uri=URI%3ALIT%3Aab")),
            Some(Op::Other)
        );
        assert_eq!(op(Method::POST, "/uri", Some("t=upload")), Some(Op::Upload));
        assert_eq!(op(Method::GET, "/uri/URI%3ACHK%3Aa/b", None), Some(Op::Download));
        assert_eq!(
            op(Method::HEAD, "/named/URI%3ACHK%3Aa/b.txt", None),
            Some(Op::Download)
        );
        assert_eq!(
            op(Method::GET, "/uri/X", Some("filename=a&t=json")),
            Some(Op::Stat)
        );
        assert_eq!(
            op(Method::POST, "/uri/X/", Some("t=check&verify=true")),
            Some(Op::Check)
        );
        assert_eq!(
            op(Method::POST, "/uri/X/", Some("t=stream-deep-check")),
            Some(Op::Check)
        );
        assert_eq!(op(Method::DELETE, "/uri/X/a", None), Some(Op::Delete));
        assert_eq!(
            op(Method::POST, "/uri/X/", Some("t=unlink&name=a")),
            Some(Op::Delete)
        );
        assert_eq!(op(Method::POST, "/uri/X/", Some("t=relink")), Some(Op::Rename));
        assert_eq!(op(Method::GET, "/uri/X/", Some("t=manifest")), Some(Op::List));
        assert_eq!(
            op(Method::POST, "/uri/X/", Some("t=set_children")),
            Some(Op::Other)
        );
        // The gateway's own pages are not operations.
        assert_eq!(op(Method::GET, "/statistics", Some("t=openmetrics")), None);
        assert_eq!(op(Method::GET, "/", None), None);
        assert_eq!(op(Method::GET, "/uripath", None), None);
        assert_eq!(error_kind_of_status(404), ErrorKind::NotFound);
        assert_eq!(error_kind_of_status(422), ErrorKind::BadRequest);
        assert_eq!(error_kind_of_status(502), ErrorKind::Internal);
    }

    #[test]
    fn caps_never_reach_the_log() {
        let path = "/uri/URI%3ACHK%3Asecretkey%3Ahash%3A3%3A10%3A99/named/URI:LIT:abc/x.png";
        let redacted = redact_path(path);
        assert_eq!(redacted, "/uri/[URI:CHK]/named/[URI:LIT]/x.png");
        assert!(!redacted.contains("secretkey"));
    }
}
