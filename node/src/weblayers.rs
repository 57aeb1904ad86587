//! What the node puts around every web router it serves (the gateway's and a storage node's status
//! pages): a request id for each request, and `[node] web.static` served at `/static`.
//!
//! The request id is a `request` span with a `request_id` field (16 hex digits, random) that the
//! whole request is served in, so every line logged about it, the access line
//! (`tessera::access`) included, carries the same id; the response's `X-Request-Id` header tells
//! the client, so a user's report can be matched to the log. An id a client sends is not used: it
//! would put the client's text into the log.

use std::path::Path;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The response header that carries the request id.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// `router` with `/static` served from `static_dir` (when that directory exists) and every request
/// in its own `request` span.
pub(crate) fn wrap(router: Router, static_dir: Option<&Path>) -> Router {
    let router = match static_dir {
        Some(dir) if dir.is_dir() => router.nest_service("/static", tower_http::services::ServeDir::new(dir)),
        _ => router,
    };
    router.layer(axum::middleware::from_fn(with_request_id))
}

/// A new request id.
fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

async fn with_request_id(request: Request, next: Next) -> Response {
    let id = new_request_id();
    // At ERROR level, so that the span (and so the id) is kept whatever level the log is filtered to.
    let span = tracing::span!(target: "tessera::request", tracing::Level::ERROR, "request", request_id = %id);
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response.map(|body| axum::body::Body::new(InSpan { body, span }))
}

/// A response body produced inside its request's span: a download or a listing streams after
/// the handler has returned, and what is logged meanwhile carries the request id too.
struct InSpan {
    body: axum::body::Body,
    span: tracing::Span,
}

impl hyper::body::Body for InSpan {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        std::pin::Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    /// A log sink the tests read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// A GET of `path` from the gateway behind the node's layers, logging to `sink` in `format`.
    async fn get(
        format: crate::logging::LogFormat,
        level: &str,
        sink: &Captured,
        static_dir: Option<&Path>,
        path: &str,
    ) -> Response {
        let secrets = filenode::grid::ClientSecrets {
            lease_secret: vec![1; 32],
            convergence: None,
        };
        let params = filenode::grid::upload::UploadParams {
            needed: 1,
            happy: 1,
            total: 1,
            max_segment_size: 128 << 10,
        };
        let grid =
            filenode::grid::Grid::with_key_pool(secrets, params, filenode::mutable::keys::KeyPool::new(0));
        let state = frontends::web::WebState::new(Arc::new(grid), "t");
        let router = wrap(frontends::web::router(state), static_dir);
        get_from(router, format, level, sink, path).await
    }

    async fn get_from(
        router: Router,
        format: crate::logging::LogFormat,
        level: &str,
        sink: &Captured,
        path: &str,
    ) -> Response {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry()
            .with(crate::logging::filter(Some(level), &|_| None).unwrap())
            .with(crate::logging::file_layer(format, sink.clone()));
        let _default = tracing::subscriber::set_default(subscriber);
        router
            .oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_access_line_carries_the_request_id_in_json_and_never_the_cap() {
        let sink = Captured::default();
        // A file no server holds (the grid has none): at debug level the gateway logs more than
        // the access line, and the cap itself never.
        let cap = "URI:CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:3:10:100";
        let response = get(
            crate::logging::LogFormat::Json,
            "debug",
            &sink,
            None,
            &format!("/uri/{cap}"),
        )
        .await;
        let id = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .expect("a request id header")
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 16);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains("aaaaaaaaaaaaaaaaaaaaaaaaaa"),
            "a cap reached the log:\n{text}"
        );
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect();
        let access = lines
            .iter()
            .find(|l| l["target"] == "tessera::access")
            .unwrap_or_else(|| panic!("no access line:\n{text}"));
        assert_eq!(access["span"]["request_id"], id.as_str(), "{access}");
        assert_eq!(access["fields"]["path"], "/uri/[URI:CHK]", "{access}");
        // Every line logged while the request was served carries the id.
        eprintln!("{} lines logged", lines.len());
        for line in &lines {
            assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
        }
    }

    /// Whatever a handler logs while serving a request carries that request's id.
    #[tokio::test]
    async fn lines_logged_by_a_handler_carry_its_request_id() {
        let sink = Captured::default();
        let handler = || async {
            tracing::warn!(step = 1, "working");
            tracing::info!("done");
            "ok"
        };
        let router = wrap(Router::new().route("/work", axum::routing::get(handler)), None);
        let response = get_from(router, crate::logging::LogFormat::Json, "info", &sink, "/work").await;
        let id = response.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_owned();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
            assert_eq!(line["spans"][0]["request_id"], id.as_str(), "{line}");
        }
        assert_eq!(lines[0]["fields"]["message"], "working");
    }

    /// Lines logged while a response body streams (after the handler returned) carry the id too.
    #[tokio::test]
    async fn lines_logged_while_a_body_streams_carry_its_request_id() {
        use futures::StreamExt;
        use http_body_util::BodyExt;
        use tracing_subscriber::layer::SubscriberExt;
        let sink = Captured::default();
        let handler = || async {
            let chunks = futures::stream::iter(0..3).map(|chunk| {
                tracing::info!(chunk, "streaming");
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"data"))
            });
            axum::body::Body::from_stream(chunks)
        };
        let router = wrap(Router::new().route("/stream", axum::routing::get(handler)), None);
        let subscriber = tracing_subscriber::registry()
            .with(crate::logging::filter(Some("info"), &|_| None).unwrap())
            .with(crate::logging::file_layer(
                crate::logging::LogFormat::Json,
                sink.clone(),
            ));
        let _default = tracing::subscriber::set_default(subscriber);
        let response = router
            .oneshot(Request::get("/stream").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let id = response.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"datadatadata");
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["fields"]["message"] == "streaming")
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        for line in &lines {
            assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
        }
    }

    #[tokio::test]
    async fn text_lines_carry_the_id_and_two_requests_have_two_ids() {
        let sink = Captured::default();
        let first = get(crate::logging::LogFormat::Text, "info", &sink, None, "/nowhere").await;
        let second = get(crate::logging::LogFormat::Text, "info", &sink, None, "/nowhere").await;
        let ids: Vec<String> = [first, second]
            .iter()
            .map(|r| r.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_owned())
            .collect();
        assert_ne!(ids[0], ids[1]);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for id in &ids {
            assert!(
                text.lines()
                    .any(|l| l.contains(&format!("request{{request_id={id}}}"))
                        && l.contains("tessera::access")),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn web_static_serves_its_directory_and_nothing_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("public_html");
        std::fs::create_dir(&public).unwrap();
        std::fs::write(public.join("hello.html"), "<p>hello</p>").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "swissnum").unwrap();
        let sink = Captured::default();
        let format = crate::logging::LogFormat::Text;
        let response = get(format, "info", &sink, Some(&public), "/static/hello.html").await;
        assert_eq!(response.status(), 200);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert_eq!(&body[..], b"<p>hello</p>");
        for path in [
            "/static/../secret.txt",
            "/static/%2e%2e/secret.txt",
            "/static/missing.html",
        ] {
            let response = get(format, "info", &sink, Some(&public), path).await;
            assert_eq!(response.status(), 404, "{path}");
        }
        // Without the directory there is no /static.
        let response = get(
            format,
            "info",
            &sink,
            Some(&dir.path().join("absent")),
            "/static/hello.html",
        )
        .await;
        assert_eq!(response.status(), 404);
    }
}
