//! The gateway's counters and `/statistics?t=openmetrics` (Prometheus text format), plus the access
//! log, which records every request with caps in the path replaced by their kind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

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

    /// The OpenMetrics text exposition, with the grid's server counts.
    pub fn openmetrics(&self, servers_known: usize, servers_connected: usize) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            out.push_str(&format!("# TYPE {name} {kind}\n# HELP {name} {help}\n"));
            for (labels, value) in samples {
                let suffix = if kind == "counter" { "_total" } else { "" };
                out.push_str(&format!("{name}{suffix}{labels} {value}\n"));
            }
        };
        metric(
            "tessera_web_requests",
            "counter",
            "HTTP requests received.",
            &[("", get(&self.requests))],
        );
        metric(
            "tessera_web_responses",
            "counter",
            "HTTP responses by status class.",
            &[
                ("{class=\"2xx\"}", get(&self.responses_2xx)),
                ("{class=\"3xx\"}", get(&self.responses_3xx)),
                ("{class=\"4xx\"}", get(&self.responses_4xx)),
                ("{class=\"5xx\"}", get(&self.responses_5xx)),
            ],
        );
        metric(
            "tessera_uploads",
            "counter",
            "Files uploaded.",
            &[("", get(&self.uploads))],
        );
        metric(
            "tessera_uploaded_bytes",
            "counter",
            "Plaintext bytes uploaded.",
            &[("", get(&self.uploaded_bytes))],
        );
        metric(
            "tessera_storage_servers_known",
            "gauge",
            "Storage servers known.",
            &[("", servers_known as u64)],
        );
        metric(
            "tessera_storage_servers_connected",
            "gauge",
            "Storage servers that answered the last probe.",
            &[("", servers_connected as u64)],
        );
        out.push_str("# EOF\n");
        out
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
/// `filename=` may carry secrets or private names).
pub(super) async fn access_log(State(state): State<WebState>, request: Request, next: Next) -> Response {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let path = redact_path(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.record_response(status);
    tracing::info!(target: "tessera::access", %method, %path, status, ms = started.elapsed().as_millis() as u64, "request");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_never_reach_the_log() {
        let path = "/uri/URI%3ACHK%3Asecretkey%3Ahash%3A3%3A10%3A99/named/URI:LIT:abc/x.png";
        let redacted = redact_path(path);
        assert_eq!(redacted, "/uri/[URI:CHK]/named/[URI:LIT]/x.png");
        assert!(!redacted.contains("secretkey"));
    }
}
