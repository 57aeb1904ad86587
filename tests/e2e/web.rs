//! The web gateway's router, in process over a real grid: uploads, downloads with every Range
//! shape, ETags and conditional requests, names, types and dispositions, `t=` views, redirects and
//! error statuses.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use filenode::grid::Grid;
use filenode::grid::upload::UploadParams;
use frontends::web::{WebState, router};
use http_body_util::BodyExt;
use tests::grid::TestGrid;
use tower::ServiceExt;

pub(crate) struct Gateway {
    pub(crate) grid: TestGrid,
    app: axum::Router,
    /// The spool quota of the gateway's web uploads (`[node] web.spool.quota`).
    pub(crate) spool_quota: Arc<frontends::SpoolQuota>,
}

impl Gateway {
    pub(crate) fn new() -> Gateway {
        Gateway::with_spool_quota(frontends::web::DEFAULT_SPOOL_QUOTA)
    }

    /// A gateway whose web uploads in progress may spool `bytes` together.
    pub(crate) fn with_spool_quota(bytes: u64) -> Gateway {
        let grid = TestGrid::new(10);
        // Small segments, so that modest files span several of them.
        let params = UploadParams {
            max_segment_size: 4096,
            ..UploadParams::default()
        };
        let client = Arc::new(Grid::new(grid.secrets.clone(), params));
        client.set_servers(grid.entries());
        let state = WebState::new(client, "test").with_spool_quota(bytes);
        let spool_quota = Arc::clone(&state.spool_quota);
        Gateway {
            grid,
            app: router(state),
            spool_quota,
        }
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, body)
    }

    pub(crate) async fn get(
        &self,
        uri: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut request = Request::get(uri);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    pub(crate) async fn put(&self, data: &[u8]) -> String {
        let (status, _, body) = self
            .send(Request::put("/uri").body(Body::from(data.to_vec())).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        String::from_utf8(body).unwrap()
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_of_every_shape() {
    let gw = Gateway::new();
    let content = data(20_000); // five segments of 4 KiB
    let cap = gw.put(&content).await;
    let uri = format!("/uri/{cap}");

    let (status, headers, body) = gw.get(&uri, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, content);
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(headers[header::CONTENT_LENGTH], "20000");
    assert_eq!(headers["content-security-policy"], "sandbox");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");

    let cases: [(&str, usize, usize); 5] = [
        ("bytes=0-0", 0, 0),
        ("bytes=-1", 19_999, 19_999),
        ("bytes=-999999", 0, 19_999),
        ("bytes=4090-8200", 4090, 8200), // spans segment boundaries
        ("bytes=19000-", 19_000, 19_999),
    ];
    for (range, start, end) in cases {
        let (status, headers, body) = gw.get(&uri, &[("range", range)]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            headers[header::CONTENT_RANGE],
            format!("bytes {start}-{end}/20000"),
            "{range}"
        );
        assert_eq!(body, content[start..=end], "{range}");
    }
    let (status, headers, _) = gw.get(&uri, &[("range", "bytes=20000-20010")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes */20000");
    let (status, _, body) = gw.get(&uri, &[("range", "lines=1-2")]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 20_000));

    // Several ranges: multipart/byteranges with each part's bytes.
    let (status, headers, body) = gw.get(&uri, &[("range", "bytes=0-9,15000-15009")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let content_type = headers[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap();
    assert_eq!(headers[header::CONTENT_LENGTH], body.len().to_string());
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(&format!("--{boundary}\r\n")) && text.ends_with(&format!("--{boundary}--\r\n")));
    assert!(
        text.contains("Content-Range: bytes 0-9/20000")
            && text.contains("Content-Range: bytes 15000-15009/20000")
    );
    let first = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&body[first..first + 10], &content[0..10]);

    // HEAD: the same headers, no body.
    let (status, headers, body) = gw
        .send(
            Request::head(&uri)
                .header("range", "bytes=5-9")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers[header::CONTENT_LENGTH], "5");
    assert!(body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_small_files() {
    let gw = Gateway::new();
    let cap = gw.put(b"").await;
    assert_eq!(cap, "URI:LIT:");
    let (status, _, body) = gw.get("/uri/URI:LIT:", &[]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    let (status, headers, _) = gw.get("/uri/URI:LIT:", &[("range", "bytes=0-0")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes */0");
    let cap = gw.put(b"hello").await;
    let (status, _, body) = gw.get(&format!("/uri/{cap}"), &[("range", "bytes=1-3")]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"ell"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_and_conditional_requests() {
    let gw = Gateway::new();
    let content = data(10_000);
    let cap = gw.put(&content).await;
    let uri = format!("/uri/{cap}");
    let (_, headers, _) = gw.get(&uri, &[]).await;
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with("-\""), "{etag}");
    for candidate in [etag.as_str(), etag.trim_matches('"'), "*", "\"other\", W/ETAG"] {
        let candidate = candidate.replace("ETAG", &etag);
        let (status, _, body) = gw.get(&uri, &[("if-none-match", candidate.as_str())]).await;
        if candidate.contains("other") {
            assert_eq!(
                status,
                StatusCode::NOT_MODIFIED,
                "weak form of the tag also matches"
            );
        } else {
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{candidate}");
        }
        assert!(body.is_empty());
    }
    let (status, _, body) = gw.get(&uri, &[("if-none-match", "\"something-else\"")]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 10_000));
    // If-Range: a matching tag keeps the range, anything else gets the whole file.
    let (status, _, body) = gw
        .get(&uri, &[("range", "bytes=0-9"), ("if-range", etag.as_str())])
        .await;
    assert_eq!((status, body.len()), (StatusCode::PARTIAL_CONTENT, 10));
    let (status, _, body) = gw
        .get(&uri, &[("range", "bytes=0-9"), ("if-range", "\"stale\"")])
        .await;
    assert_eq!((status, body.len()), (StatusCode::OK, 10_000));
    // t=json has its own tag.
    let (_, headers, _) = gw.get(&format!("{uri}?t=json"), &[]).await;
    assert!(headers[header::ETAG].to_str().unwrap().ends_with("-json\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_types_and_dispositions() {
    let gw = Gateway::new();
    let cap = gw.put(&data(3000)).await;
    let (_, headers, _) = gw.get(&format!("/named/{cap}/photo.png"), &[]).await;
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    let (_, headers, _) = gw.get(&format!("/named/{cap}/notes.unknownext"), &[]).await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    let (_, headers, _) = gw.get(&format!("/named/{cap}/archive.tar.gz"), &[]).await;
    assert!(
        headers.get(header::CONTENT_ENCODING).is_none(),
        "no Content-Encoding surprise for .gz"
    );
    let (_, headers, _) = gw.get(&format!("/uri/{cap}?filename=movie.mp4"), &[]).await;
    assert_eq!(headers[header::CONTENT_TYPE], "video/mp4");
    let (_, headers, _) = gw
        .get(
            &format!("/uri/{cap}?filename=r%C3%A9sum%C3%A9.pdf&save=true"),
            &[],
        )
        .await;
    let disposition = headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"r_sum_.pdf\""),
        "{disposition}"
    );
    assert!(
        disposition.contains("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"),
        "{disposition}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_redirects_and_errors() {
    let gw = Gateway::new();
    let cap = gw.put(&data(5000)).await;
    let (status, _, body) = gw.get(&format!("/uri/{cap}?t=json"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json[0], "filenode");
    assert_eq!(json[1]["size"], 5000);
    assert_eq!(json[1]["format"], "CHK");
    assert_eq!(json[1]["mutable"], false);
    assert!(
        json[1]["verify_uri"]
            .as_str()
            .unwrap()
            .starts_with("URI:CHK-Verifier:")
    );
    let (_, _, body) = gw.get(&format!("/uri/{cap}?t=uri"), &[]).await;
    assert_eq!(String::from_utf8(body).unwrap(), cap);
    let (_, _, body) = gw.get(&format!("/uri/{cap}?t=readonly-uri"), &[]).await;
    assert_eq!(String::from_utf8(body).unwrap(), cap);
    let (status, headers, body) = gw.get(&format!("/uri/{cap}?t=info"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(String::from_utf8(body).unwrap().contains("URI:CHK-Verifier:"));
    let (status, headers, _) = gw.get(&format!("/uri?uri={cap}"), &[]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(
        headers[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/uri/URI%3ACHK%3A")
    );

    let (status, _, body) = gw.get(&format!("/uri/{cap}?t=bogus"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8(body).unwrap().contains("t=bogus"));
    let (status, _, body) = gw.get("/uri/URI:CHK:nonsense", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8(body).unwrap().contains("URI:CHK"));

    // Tahoe's format= parameter: CHK and the mutable formats work, nonsense is 400.
    let put = |query: &str| {
        Request::put(format!("/uri?{query}"))
            .body(Body::from(vec![1u8; 100]))
            .unwrap()
    };
    assert_eq!(gw.send(put("format=CHK")).await.0, StatusCode::OK);
    let (status, _, body) = gw.send(put("format=MDMF")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8(body).unwrap().starts_with("URI:MDMF:"));
    assert_eq!(gw.send(put("format=ZIP")).await.0, StatusCode::BAD_REQUEST);

    // A browser gets the same error as a readable page.
    let (status, headers, body) = gw
        .get("/uri/URI:CHK:nonsense", &[("accept", "text/html,*/*")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8(body).unwrap();
    assert!(
        page.contains("400 Bad Request") && page.contains("URI:CHK"),
        "{page}"
    );

    for i in 0..8 {
        gw.grid.break_server(i);
    }
    let (status, _, body) = gw.get(&format!("/uri/{cap}"), &[]).await;
    assert_eq!(status, StatusCode::GONE);
    let message = String::from_utf8(body).unwrap();
    assert!(
        message.starts_with("not enough good shares (needed 3, found 2)"),
        "{message}"
    );
    assert!(
        !message.contains(&cap),
        "error bodies never echo caps they did not contain"
    );
}

fn multipart(boundary: &str, filename: &str, content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_uploads_and_pages() {
    let gw = Gateway::new();
    let content = data(3_000_000); // beyond axum's default 2 MB body limit
    let form = |query: &str, name: &str| {
        Request::post(format!("/uri?{query}"))
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
            .body(Body::from(multipart("XyZ", name, &content)))
            .unwrap()
    };
    let (status, _, body) = gw.send(form("t=upload", "a.bin")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let cap = String::from_utf8(body).unwrap();
    assert_eq!(gw.get(&format!("/uri/{cap}"), &[]).await.2, content);
    // The browser form: a redirect to the file's page, keeping the name.
    let (status, headers, _) = gw
        .send(form(
            "t=upload&redirect_to_result=true",
            "<b>r\u{e9}sum\u{e9}.pdf",
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/uri/URI%3ACHK%3A") && location.contains("t=info&filename="),
        "{location}"
    );
    let (status, headers, page) = gw.get(&location, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains(&cap) && page.contains("URI:CHK-Verifier:"),
        "the page lists the caps"
    );
    assert!(
        page.contains("&lt;b&gt;r\u{e9}sum\u{e9}.pdf") && !page.contains("<b>r"),
        "names are escaped"
    );
    assert!(page.contains("save=true"));
    // Bad forms are 400s that say why.
    let (status, _, body) = gw.send(form("t=bogus", "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8(body).unwrap().contains("t=bogus"));

    // The welcome page lists the servers and offers the forms, with no external resources.
    let (status, _, page) = gw.get("/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("server00") && page.contains("Upload a file") && page.contains("Open a cap"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN or network fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_statistics() {
    let gw = Gateway::new();
    gw.put(&data(1000)).await;
    let (status, headers, body) = gw.get("/statistics?t=openmetrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("tessera_uploads_total 1\n"), "{text}");
    assert!(text.contains("tessera_uploaded_bytes_total 1000\n"), "{text}");
    assert!(text.contains("tessera_storage_servers_known 10\n"), "{text}");
    assert!(
        text.contains("tessera_web_responses_total{class=\"2xx\"} 1\n"),
        "{text}"
    );
    // The upload's duration is in the operations histogram: one upload, in some bucket and +Inf.
    assert!(
        text.contains("# TYPE tessera_operation_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(
        text.contains("tessera_operation_duration_seconds_bucket{op=\"upload\",le=\"+Inf\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tessera_operation_duration_seconds_count{op=\"upload\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tessera_operation_failures_total{op=\"upload\"} 0\n"),
        "{text}"
    );
    // The upload is stored: its spool holds nothing any more.
    assert!(text.contains("tessera_web_spool_bytes 0\n"), "{text}");
    assert!(
        text.contains(&format!(
            "tessera_web_spool_quota_bytes {}\n",
            frontends::web::DEFAULT_SPOOL_QUOTA
        )),
        "{text}"
    );
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("tessera_operation_duration_seconds_bucket{op=\"upload\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), filenode::operations::DURATION_BUCKETS.len() + 1);
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    assert!(text.ends_with("# EOF\n"));
    let (status, _, _) = gw.get("/statistics", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A check, a verify and a check-and-repair through the web API are timed in the same
    // histogram (op="check", "verify", "repair"), and count as the web frontend's check operations.
    let cap = gw.put(&data(20_000)).await;
    let encoded = cap.replace(':', "%3A");
    for query in [
        "t=check",
        "t=check&verify=true",
        "t=check&repair=true&output=JSON",
    ] {
        let (status, _, body) = gw
            .send(
                Request::post(format!("/uri/{encoded}?{query}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{query}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A cap that does not parse: the web's bad_request error.
    let (status, _, _) = gw.get("/uri/URI%3ANOPE", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, _, body) = gw.get("/statistics?t=openmetrics", &[]).await;
    let text = String::from_utf8(body).unwrap();
    for line in [
        "tessera_operation_duration_seconds_count{op=\"check\"} 1\n",
        "tessera_operation_duration_seconds_count{op=\"verify\"} 1\n",
        "tessera_operation_duration_seconds_count{op=\"repair\"} 1\n",
        "tessera_operation_duration_seconds_bucket{op=\"check\",le=\"+Inf\"} 1\n",
        "tessera_operation_failures_total{op=\"repair\"} 0\n",
        "tessera_frontend_operations_total{frontend=\"web\",op=\"check\"} 3\n",
        "tessera_frontend_operations_total{frontend=\"web\",op=\"upload\"} 2\n",
        "tessera_frontend_errors_total{frontend=\"web\",kind=\"bad_request\"} 1\n",
        "tessera_frontend_errors_total{frontend=\"web\",kind=\"not_found\"} 0\n",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    let bytes_in = text
        .lines()
        .find_map(|l| l.strip_prefix("tessera_frontend_bytes_total{frontend=\"web\",direction=\"in\"} "))
        .unwrap();
    assert!(bytes_in.parse::<u64>().unwrap() >= 21_000, "{text}");
}

/// A file whose first segment cannot be read fails with 410 and its reason before any header is
/// sent (it used to answer 200 and a Content-Length, then close with nothing); one whose later
/// segment cannot be read starts as 200 and ends short, which a client sees as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_files_fail_before_headers_when_nothing_can_be_sent() {
    let gateway = Gateway::new();
    let contents = data(40_000);
    let cap = gateway.put(&contents).await;
    let si = cap
        .parse::<filenode::cap::Cap>()
        .unwrap()
        .storage_index()
        .unwrap();
    let holders = gateway.grid.find_shares(si);
    assert_eq!(holders.len(), 10);
    // Every share's first block (segment 0: 4096 bytes, blocks of 1366) damaged.
    for &(server, shnum) in &holders {
        gateway.grid.corrupt_share(server, si, shnum, 0x24 + 10);
    }
    let (status, headers, body) = gateway.get(&format!("/uri/{cap}"), &[]).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::GONE, "{text}");
    assert!(headers.get(header::CONTENT_LENGTH).is_none_or(|l| l != "40000"));
    assert!(text.contains("segment") || text.contains("share"), "{text}");
    assert!(!text.contains(&cap), "the cap is in the error body");

    // A range that starts in a readable segment: 206, then the body stops short.
    let contents = data(40_001);
    let cap = gateway.put(&contents).await;
    let si = cap
        .parse::<filenode::cap::Cap>()
        .unwrap()
        .storage_index()
        .unwrap();
    for (server, shnum) in gateway.grid.find_shares(si) {
        // Segment 5's block of each share (after the 0x24-byte header, blocks of 1366 bytes).
        gateway.grid.corrupt_share(server, si, shnum, 0x24 + 5 * 1366 + 3);
    }
    let response = gateway
        .app
        .clone()
        .oneshot(Request::get(format!("/uri/{cap}")).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.into_body().collect().await.is_err(),
        "a cut-off body must end in an error"
    );
}

/// Servers that are full say so, and the gateway passes it on: an upload that no server has room
/// for fails with 503 (as every placement that finds too few servers) and a message that names each
/// full server, for immutable and mutable files alike (issue 14: it was "internal server error").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_servers_are_reported_as_full() {
    let grid = TestGrid::with_config(10, |_, config| config.max_space = Some(16 * 1024));
    let client = Arc::new(Grid::new(grid.secrets.clone(), UploadParams::default()));
    client.set_servers(grid.entries());
    let state = WebState::new(client, "test");
    let gateway = Gateway {
        grid,
        spool_quota: Arc::clone(&state.spool_quota),
        app: router(state),
    };
    for url in ["/uri", "/uri?format=MDMF", "/uri?format=SDMF"] {
        let (status, _, body) = gateway
            .send(Request::put(url).body(Body::from(data(300_000))).unwrap())
            .await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{url}: {body}");
        assert!(body.contains("is full"), "{url}: {body}");
    }
    // Small files still fit.
    let (status, _, body) = gateway
        .send(Request::put("/uri").body(Body::from(data(2_000))).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

/// `[client] mutable.format`: `mutable=true` without `format=` makes the gateway's default format
/// (SDMF unless it is set to MDMF); `format=` still wins, and directories stay SDMF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_true_makes_the_configured_default_format() {
    let mut gw = Gateway::new();
    let put = |uri: &'static str| Request::put(uri).body(Body::from("changing")).unwrap();
    let (status, _, body) = gw.send(put("/uri?mutable=true")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with(b"URI:SSK:"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    let client = Arc::new(Grid::new(gw.grid.secrets.clone(), UploadParams::default()));
    client.set_servers(gw.grid.entries());
    let mut state = WebState::new(client, "test");
    state.mutable_format = filenode::cap::MutableFormat::Mdmf;
    gw.app = router(state);
    let (status, _, body) = gw.send(put("/uri?mutable=true")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with(b"URI:MDMF:"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (_, _, body) = gw.send(put("/uri?mutable=true&format=SDMF")).await;
    assert!(
        body.starts_with(b"URI:SSK:"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (_, _, body) = gw.send(put("/uri?t=mkdir")).await;
    assert!(
        body.starts_with(b"URI:DIR2:"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (_, _, body) = gw.send(put("/uri")).await;
    assert!(
        body.starts_with(b"URI:CHK:") || body.starts_with(b"URI:LIT:"),
        "immutable by default"
    );
}

/// `/status` after known operations: an immutable upload and its download, a mutable file's
/// publish and retrieve (with the retrieve's servermap update), each in Tahoe's `/status?t=json`
/// shape with its size, progress, phases and servers (a servermap update: its mode, each server's
/// answer time and the shares found); the page lists them; neither holds any cap. A `POST` needs
/// the node's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_operations_without_caps() {
    let grid = TestGrid::new(10);
    let params = UploadParams {
        max_segment_size: 4096,
        ..UploadParams::default()
    };
    let client = Arc::new(Grid::new(grid.secrets.clone(), params));
    client.set_servers(grid.entries());
    let state = WebState::new(client, "test").with_api_token("sesame-token");
    let gw = Gateway {
        grid,
        spool_quota: Arc::clone(&state.spool_quota),
        app: router(state),
    };

    let content = data(20_000);
    let cap = gw.put(&content).await;
    let (status, _, body) = gw.get(&format!("/uri/{cap}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, content);
    let (status, _, mutable_cap) = gw
        .send(
            Request::put("/uri?format=MDMF")
                .body(Body::from(data(3_000)))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mutable_cap = String::from_utf8(mutable_cap).unwrap();
    let (status, _, body) = gw.get(&format!("/uri/{mutable_cap}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data(3_000));
    let si = |cap: &str| {
        cap.parse::<filenode::cap::Cap>()
            .unwrap()
            .storage_index()
            .unwrap()
            .to_string()
    };

    // The download ends when its reader is dropped, just after the body was sent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (json, text) = loop {
        let (status, headers, body) = gw.get("/status?t=json", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let text = String::from_utf8(body).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        if json["active"].as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break (json, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(json["active"], serde_json::json!([]), "{json}");
    let recent = json["recent"].as_array().unwrap();
    let find = |kind: &str, si: &str| {
        recent
            .iter()
            .find(|op| op["type"] == kind && op["storage-index-string"] == si)
            .unwrap_or_else(|| panic!("no {kind} of {si} in {json}"))
            .clone()
    };
    let upload = find("upload", &si(&cap));
    assert_eq!(upload["total-size"], 20_000, "{upload}");
    assert_eq!(upload["status"], "Finished");
    for key in ["progress-hash", "progress-ciphertext", "progress-encode-push"] {
        assert_eq!(upload[key], 1.0, "{key}: {upload}");
    }
    for phase in ["hashing", "placing shares", "encoding and pushing"] {
        assert!(
            upload["timings"][phase].as_f64().unwrap() >= 0.0,
            "{phase}: {upload}"
        );
    }
    let servers = upload["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 10, "{upload}");
    assert!(servers[0].as_str().unwrap().starts_with("server0"), "{upload}");
    assert!(servers[0].as_str().unwrap().contains(": shares "), "{upload}");
    assert_eq!(upload["active"], false);

    let download = find("download", &si(&cap));
    assert_eq!(download["total-size"], 20_000, "{download}");
    assert_eq!(download["progress"], 1.0, "{download}");
    assert_eq!(download["status"], "Finished", "{download}");
    assert!(
        download["timings"]["locating and validating shares"].is_f64(),
        "{download}"
    );
    assert!(download["timings"]["first byte"].is_f64(), "{download}");
    // The shares validated to read from: at least k, at most 2k.
    let holders = download["servers"].as_array().unwrap().len();
    assert!((3..=6).contains(&holders), "{download}");

    let publish = find("publish", &si(&mutable_cap));
    assert_eq!(publish["total-size"], 3_000, "{publish}");
    assert_eq!(publish["status"], "Finished");
    assert_eq!(publish["progress"], 1.0);
    assert!(publish["timings"]["pushing shares"].is_f64(), "{publish}");
    assert!(!publish["servers"].as_array().unwrap().is_empty());
    let retrieve = find("retrieve", &si(&mutable_cap));
    assert_eq!(retrieve["total-size"], 3_000, "{retrieve}");
    assert_eq!(retrieve["status"], "Finished", "{retrieve}");
    // The retrieve's servermap update (Tahoe's mapupdate): every server asked and timed, the
    // shares found on each (the new file's ten, one a server), no size (Tahoe's "-NA-").
    let mapupdate = find("mapupdate", &si(&mutable_cap));
    assert_eq!(mapupdate["mode"], "MODE_READ", "{mapupdate}");
    assert_eq!(mapupdate["total-size"], "-NA-", "{mapupdate}");
    assert_eq!(mapupdate["status"], "Finished", "{mapupdate}");
    assert_eq!(mapupdate["progress"], 1.0, "{mapupdate}");
    assert!(mapupdate["timings"]["querying servers"].is_f64(), "{mapupdate}");
    let per_server = mapupdate["per-server"].as_array().unwrap();
    assert_eq!(per_server.len(), 10, "{mapupdate}");
    for answer in per_server {
        assert_eq!(answer["op"], "query", "{mapupdate}");
        assert!(
            answer["server"].as_str().unwrap().starts_with("server"),
            "{mapupdate}"
        );
        assert!(answer["time"].as_f64().unwrap() >= 0.0, "{mapupdate}");
    }
    let found = mapupdate["servers"].as_array().unwrap();
    assert_eq!(found.len(), 10, "{mapupdate}");
    let mut shnums: Vec<u64> = found
        .iter()
        .map(|line| {
            let (_, shares) = line.as_str().unwrap().split_once(": shares ").unwrap();
            shares.parse().unwrap()
        })
        .collect();
    shnums.sort_unstable();
    assert_eq!(shnums, (0..10).collect::<Vec<_>>(), "{mapupdate}");
    // Newest first (the servermap update ends before the retrieve that made it).
    let position = |op: &serde_json::Value| recent.iter().position(|o| o == op).unwrap();
    assert!(position(&retrieve) < position(&mapupdate));
    assert!(position(&mapupdate) < position(&publish));
    assert!(position(&retrieve) < position(&publish));
    assert!(position(&download) < position(&upload));

    let (status, _, page) = gw.get("/status", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("Recent operations (5)"), "{page}");
    assert!(page.contains(&si(&cap)) && page.contains(&si(&mutable_cap)));
    for kind in ["upload", "download", "publish", "retrieve", "mapupdate"] {
        assert!(page.contains(&format!("op-{kind}")), "{kind}: {page}");
    }
    assert!(page.contains("hash: 100.0%, ciphertext: 100.0%, encode: 100.0%"));
    assert!(page.contains("No active operations."));

    // Each operation's own page (Tahoe's /status/up-N, down-N, publish-N, retrieve-N,
    // mapupdate-N), linked from /status, as HTML and as its /status?t=json item.
    let mut op_pages = String::new();
    for (op, prefix) in [
        (&upload, "up"),
        (&download, "down"),
        (&publish, "publish"),
        (&retrieve, "retrieve"),
        (&mapupdate, "mapupdate"),
    ] {
        let link = format!("/status/{prefix}-{}", op["id"]);
        assert!(
            page.replace("&#x2f;", "/").contains(&format!("href=\"{link}\"")),
            "no link to {link}: {page}"
        );
        let (status, headers, body) = gw.get(&format!("{link}?t=json"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{link}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let item: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(&item, op, "{link}");
        let (status, _, body) = gw.get(&link, &[]).await;
        assert_eq!(status, StatusCode::OK, "{link}");
        let op_page = String::from_utf8(body).unwrap();
        assert!(
            op_page.contains(op["storage-index-string"].as_str().unwrap()),
            "{op_page}"
        );
        assert!(op_page.contains(r#"id="servers""#), "{op_page}");
        let server = op["servers"][0].as_str().unwrap();
        assert!(
            op_page.contains(&server.replace('/', "&#x2f;")) || op_page.contains(server),
            "{server}: {op_page}"
        );
        op_pages.push_str(&op_page);
        op_pages.push_str(&String::from_utf8(gw.get(&format!("{link}?t=json"), &[]).await.2).unwrap());
    }
    assert!(op_pages.contains("hashing") && op_pages.contains("first byte"));
    assert!(op_pages.contains("MODE_READ") && op_pages.contains(r#"id="server-timings""#));
    // The id of an upload is not a download's; unknown, malformed and unkept ones are errors.
    let (status, _, _) = gw.get(&format!("/status/down-{}", upload["id"]), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = gw.get("/status/up-999999", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in ["/status/up", "/status/up-x", "/status/check-1", "/status/up--1"] {
        let (status, _, _) = gw.get(bad, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _, _) = gw
        .send(
            Request::post(format!("/status/up-{}?t=json", upload["id"]))
                .body(Body::from("t=json"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a POST needs the token");

    // No cap, nor any of its secret fields, in either form.
    for secret in [cap.as_str(), mutable_cap.as_str()] {
        let parsed = secret.parse::<filenode::cap::Cap>().unwrap();
        let mut forms = vec![secret.to_owned()];
        forms.extend(parsed.readonly().map(|c| c.to_string()));
        // The key field: URI:CHK:<key>:..., URI:MDMF:<writekey>:...
        forms.push(secret.split(':').nth(2).unwrap().to_owned());
        for form in forms {
            assert!(!text.contains(&form), "{form} in /status?t=json");
            assert!(!page.contains(&form), "{form} in /status");
            assert!(!op_pages.contains(&form), "{form} in an operation's page");
        }
    }

    // POST (as `tahoe status` sends it): the token is needed, and must be right.
    let post = |body: &'static str| Request::post("/status?t=json").body(Body::from(body)).unwrap();
    let (status, _, _) = gw.send(post("t=json")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = gw.send(post("t=json&token=sesame-tokeX")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = gw.send(post("t=json&token=sesame-token")).await;
    assert_eq!(status, StatusCode::OK);
    let posted: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(posted["recent"].as_array().unwrap().len(), 5);
    let (status, _, body) = gw
        .send(
            Request::post("/statistics")
                .body(Body::from("t=json&token=sesame-token"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let statistics: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // The immutable file and the mutable one.
    assert_eq!(statistics["counters"]["uploader.files_uploaded"], 2);
    assert_eq!(statistics["counters"]["downloader.files_downloaded"], 1);
    assert_eq!(statistics["counters"]["downloader.bytes_downloaded"], 20_000);
}
