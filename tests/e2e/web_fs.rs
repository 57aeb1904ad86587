//! The web API's filesystem operations (tahoe-interfaces.md §3.3) over a real grid: directory
//! trees created, filled, moved and deleted; mutable files replaced and partially updated; the
//! documented statuses for bad input, with the directory left unchanged.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;

use crate::web::Gateway;

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn call(gw: &Gateway, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .unwrap();
    let (status, _, body) = gw.send(request).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn ok(gw: &Gateway, method: &str, uri: &str, body: impl Into<Body>) -> String {
    let (status, text) = call(gw, method, uri, body).await;
    assert!(status.is_success(), "{method} {uri}: {status} {text}");
    text
}

async fn listing(gw: &Gateway, dir: &str) -> serde_json::Map<String, Value> {
    let text = ok(gw, "GET", &format!("{dir}?t=json"), Body::empty()).await;
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value[0], "dirnode", "{text}");
    value[1]["children"].as_object().unwrap().clone()
}

fn names(children: &serde_json::Map<String, Value>) -> Vec<String> {
    children.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_trees_through_the_web_api() {
    let gw = Gateway::new();
    let root_cap = ok(&gw, "POST", "/uri?t=mkdir", Body::empty()).await;
    assert!(root_cap.starts_with("URI:DIR2:"), "{root_cap}");
    let root = format!("/uri/{}", enc(&root_cap));

    // PUT into a path creates the intermediate directories; 201 when new, 200 when replacing.
    let content = vec![7u8; 5000];
    let (status, cap) = call(
        &gw,
        "PUT",
        &format!("{root}/docs/2024/report.bin"),
        content.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{cap}");
    assert!(cap.starts_with("URI:CHK:"));
    let (status, _) = call(
        &gw,
        "PUT",
        &format!("{root}/docs/2024/report.bin"),
        vec![8u8; 100],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = call(
        &gw,
        "PUT",
        &format!("{root}/docs/2024/report.bin?replace=false"),
        vec![9u8; 100],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    let (_, _, body) = gw.get(&format!("{root}/docs/2024/report.bin"), &[]).await;
    assert_eq!(body, vec![8u8; 100], "replace=false left the file alone");
    // Served with the child's name deciding the type, and ranges work through paths.
    let (status, headers, body) = gw
        .get(
            &format!("{root}/docs/2024/report.bin"),
            &[("range", "bytes=10-19")],
        )
        .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, vec![8u8; 10]);
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");

    // t=json of a directory: Tahoe's shape, write caps only with write access, link metadata.
    let docs = listing(&gw, &format!("{root}/docs")).await;
    assert_eq!(names(&docs), ["2024"]);
    let sub = &docs["2024"];
    assert_eq!(sub[0], "dirnode");
    assert!(sub[1]["rw_uri"].as_str().unwrap().starts_with("URI:DIR2:"));
    assert!(sub[1]["ro_uri"].as_str().unwrap().starts_with("URI:DIR2-RO:"));
    assert!(sub[1]["metadata"]["tahoe"]["linkcrtime"].is_f64());
    let files = listing(&gw, &format!("{root}/docs/2024")).await;
    assert_eq!(files["report.bin"][1]["size"], 100);
    assert_eq!(files["report.bin"][1]["format"], "CHK");
    let file_json: Value = serde_json::from_str(
        &ok(
            &gw,
            "GET",
            &format!("{root}/docs/2024/report.bin?t=json"),
            Body::empty(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(file_json[0], "filenode");
    assert!(file_json[1]["metadata"]["tahoe"]["linkmotime"].is_f64());

    // mkdir by PUT (idempotent for a directory, 409 with a file in the way), by POST with name=.
    let made = ok(&gw, "PUT", &format!("{root}/docs/new?t=mkdir"), Body::empty()).await;
    assert_eq!(
        ok(&gw, "PUT", &format!("{root}/docs/new?t=mkdir"), Body::empty()).await,
        made
    );
    let (status, text) = call(
        &gw,
        "PUT",
        &format!("{root}/docs/2024/report.bin?t=mkdir"),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    let mdmf = ok(
        &gw,
        "POST",
        &format!("{root}?t=mkdir&name=fast&format=MDMF"),
        Body::empty(),
    )
    .await;
    assert!(mdmf.starts_with("URI:DIR2-MDMF:"), "{mdmf}");

    // Link, rename, relink across directories, unlink, DELETE.
    ok(
        &gw,
        "POST",
        &format!("{root}?t=uri&name=link.bin&uri={}", enc(&cap)),
        Body::empty(),
    )
    .await;
    ok(
        &gw,
        "POST",
        &format!("{root}?t=rename&from_name=link.bin&to_name=renamed.bin"),
        Body::empty(),
    )
    .await;
    let top = listing(&gw, &root).await;
    assert_eq!(names(&top), ["docs", "fast", "renamed.bin"]);
    let to_dir = enc(&format!("{root_cap}/docs/new"));
    ok(
        &gw,
        "POST",
        &format!("{root}?t=relink&from_name=renamed.bin&to_dir={to_dir}&to_name=moved.bin"),
        Body::empty(),
    )
    .await;
    assert_eq!(names(&listing(&gw, &root).await), ["docs", "fast"]);
    assert_eq!(
        names(&listing(&gw, &format!("{root}/docs/new")).await),
        ["moved.bin"]
    );
    let (status, _) = call(
        &gw,
        "POST",
        &format!("{root}/docs/new?t=unlink&name=moved.bin"),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(listing(&gw, &format!("{root}/docs/new")).await.is_empty());
    let unlinked = ok(&gw, "DELETE", &format!("{root}/fast"), Body::empty()).await;
    assert_eq!(unlinked, mdmf);
    let (status, text) = call(&gw, "DELETE", &format!("{root}/fast"), Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("No such child"), "{text}");

    // Uploads into a directory from a form (fields in any order), with when_done.
    let boundary = "XyZ";
    let mut form = Vec::new();
    form.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\nContent-Type: text/plain\r\n\r\n").as_bytes());
    form.extend_from_slice(b"hello from a form");
    form.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nupload\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"when_done\"\r\n\r\n/done\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::post(format!("{root}/docs"))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(form))
        .unwrap();
    let (status, headers, _) = gw.send(request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/done");
    let (_, _, body) = gw.get(&format!("{root}/docs/hello.txt"), &[]).await;
    assert_eq!(body, b"hello from a form");
    // An urlencoded form works like query arguments.
    let request = Request::post(root.clone())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("t=mkdir&name=from+form"))
        .unwrap();
    assert_eq!(gw.send(request).await.0, StatusCode::OK);
    assert!(listing(&gw, &root).await.contains_key("from form"));
    // when_done may not leave the gateway.
    let (status, _) = call(
        &gw,
        "POST",
        &format!("{root}?t=mkdir&name=x&when_done=https://evil.example/"),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // set_children and mkdir-with-children / mkdir-immutable with Tahoe's JSON.
    let children = serde_json::json!({
        "a.bin": ["filenode", {"ro_uri": cap, "metadata": {"mtime": 5.0}}],
        "dir": ["dirnode", {"rw_uri": made}],
    });
    ok(
        &gw,
        "POST",
        &format!("{root}/docs?t=set_children"),
        children.to_string(),
    )
    .await;
    let docs = listing(&gw, &format!("{root}/docs")).await;
    assert_eq!(docs["a.bin"][1]["metadata"]["mtime"], 5.0);
    assert_eq!(docs["dir"][1]["rw_uri"], made.as_str());
    let with_children = ok(&gw, "POST", "/uri?t=mkdir-with-children", children.to_string()).await;
    assert_eq!(
        names(&listing(&gw, &format!("/uri/{}", enc(&with_children))).await),
        ["a.bin", "dir"]
    );
    let frozen_children = serde_json::json!({"a.bin": ["filenode", {"ro_uri": cap}]});
    let frozen = ok(&gw, "POST", "/uri?t=mkdir-immutable", frozen_children.to_string()).await;
    assert!(
        frozen.starts_with("URI:DIR2-CHK:") || frozen.starts_with("URI:DIR2-LIT:"),
        "{frozen}"
    );
    let (status, text) = call(&gw, "POST", "/uri?t=mkdir-immutable", children.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");

    // The whole tree goes away with one unlink at the top.
    ok(&gw, "DELETE", &format!("{root}/docs"), Body::empty()).await;
    let (status, _) = call(&gw, "GET", &format!("{root}/docs/2024/report.bin"), Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_documented_status_and_changes_nothing() {
    let gw = Gateway::new();
    let root_cap = ok(&gw, "POST", "/uri?t=mkdir", Body::empty()).await;
    let root = format!("/uri/{}", enc(&root_cap));
    ok(&gw, "PUT", &format!("{root}/a.txt"), "aaaa").await;
    ok(&gw, "PUT", &format!("{root}/sub?t=mkdir"), Body::empty()).await;
    let before = listing(&gw, &root).await;

    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "POST",
            format!("{root}?t=rename&from_name=a.txt&to_name=b/c"),
            StatusCode::BAD_REQUEST,
            "slash",
        ),
        (
            "POST",
            format!("{root}?t=rename&from_name=a.txt&to_name=sub&replace=false"),
            StatusCode::CONFLICT,
            "already",
        ),
        (
            "POST",
            format!("{root}?t=rename&from_name=a.txt&to_name=sub&replace=only-files"),
            StatusCode::CONFLICT,
            "already",
        ),
        (
            "POST",
            format!("{root}?t=rename&from_name=nothing&to_name=x"),
            StatusCode::NOT_FOUND,
            "No such child",
        ),
        (
            "POST",
            format!("{root}?t=uri&name=x&uri=URI:CHK:broken"),
            StatusCode::BAD_REQUEST,
            "URI:CHK",
        ),
        (
            "POST",
            format!("{root}?t=mkdir&name="),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            "POST",
            format!("{root}?t=bogus"),
            StatusCode::BAD_REQUEST,
            "t=bogus",
        ),
        (
            "POST",
            format!("{root}?t=mkdir&name=a.txt&replace=false"),
            StatusCode::CONFLICT,
            "already",
        ),
        (
            "GET",
            format!("{root}//a.txt"),
            StatusCode::BAD_REQUEST,
            "empty pathname",
        ),
        (
            "GET",
            format!("{root}/a.txt/child"),
            StatusCode::BAD_REQUEST,
            "no children",
        ),
        (
            "GET",
            format!("{root}/missing"),
            StatusCode::NOT_FOUND,
            "No such child",
        ),
        (
            "PUT",
            format!("{root}/a.txt/x?t=mkdir"),
            StatusCode::CONFLICT,
            "in the way",
        ),
        (
            "POST",
            format!("{root}?t=mkdir&name=x&replace=maybe"),
            StatusCode::BAD_REQUEST,
            "boolean",
        ),
        (
            "POST",
            format!("{root}?t=mkdir&name=y&when_done=/%09/evil.example/"),
            StatusCode::BAD_REQUEST,
            "when_done",
        ),
        (
            "POST",
            format!("{root}?t=mkdir&name=y&when_done=%20//evil.example/"),
            StatusCode::BAD_REQUEST,
            "when_done",
        ),
    ];
    for (method, uri, want, words) in cases {
        let (status, text) = call(&gw, method, &uri, Body::empty()).await;
        assert_eq!(status, want, "{method} {uri}: {text}");
        assert!(
            text.contains(words),
            "{method} {uri}: {text:?} should mention {words:?}"
        );
    }
    // Non-UTF-8 names in the path are refused.
    let (status, _) = call(&gw, "PUT", &format!("{root}/%FF%FE"), "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Writes through a read-only cap: 403 with a message.
    let ro = ok(&gw, "GET", &format!("{root}?t=readonly-uri"), Body::empty()).await;
    let ro_root = format!("/uri/{}", enc(&ro));
    for (method, uri) in [
        ("PUT", format!("{ro_root}/new.txt")),
        ("POST", format!("{ro_root}?t=mkdir&name=d")),
        ("DELETE", format!("{ro_root}/a.txt")),
    ] {
        let (status, text) = call(&gw, method, &uri, "x").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {text}");
        assert!(text.contains("read-only"), "{text}");
    }
    // A read-only listing shows no write caps.
    let ro_listing = listing(&gw, &ro_root).await;
    assert!(ro_listing["sub"][1].get("rw_uri").is_none());
    assert_eq!(listing(&gw, &root).await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_files_through_the_web_api() {
    let gw = Gateway::new();
    for format in ["SDMF", "MDMF"] {
        let original: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let cap = ok(&gw, "PUT", &format!("/uri?format={format}"), original.clone()).await;
        let url = format!("/uri/{}", enc(&cap));
        let (_, _, body) = gw.get(&url, &[]).await;
        assert_eq!(body, original);
        let json: Value =
            serde_json::from_str(&ok(&gw, "GET", &format!("{url}?t=json"), Body::empty()).await).unwrap();
        assert_eq!(json[1]["format"], format);
        assert_eq!(json[1]["mutable"], true);
        assert_eq!(json[1]["size"], 300_000);
        // Replace, then update in place at an offset, then a range read.
        let replaced: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
        assert_eq!(ok(&gw, "PUT", &url, replaced.clone()).await, cap);
        ok(&gw, "PUT", &format!("{url}?offset=150000"), vec![0xAAu8; 100_000]).await;
        let mut expected = replaced.clone();
        expected.resize(250_000, 0);
        expected[150_000..].fill(0xAA);
        let (status, _, body) = gw.get(&url, &[("range", "bytes=149990-150009")]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, expected[149_990..150_010]);
        let (_, _, body) = gw.get(&url, &[]).await;
        assert_eq!(body.len(), expected.len());
        assert!(body == expected, "{format} contents after the partial update");
        // The read cap reads and refuses writes.
        let ro = ok(&gw, "GET", &format!("{url}?t=readonly-uri"), Body::empty()).await;
        let (status, text) = call(&gw, "PUT", &format!("/uri/{}", enc(&ro)), "x").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    }
    // In a directory: PUT to an existing mutable child updates it in place (the link stays).
    let root_cap = ok(&gw, "POST", "/uri?t=mkdir", Body::empty()).await;
    let root = format!("/uri/{}", enc(&root_cap));
    let cap = ok(&gw, "PUT", &format!("{root}/notes.txt?format=MDMF"), "first").await;
    assert_eq!(
        ok(&gw, "PUT", &format!("{root}/notes.txt"), "second version").await,
        cap
    );
    ok(&gw, "PUT", &format!("{root}/notes.txt?offset=7"), "VERSION").await;
    let (_, _, body) = gw.get(&format!("{root}/notes.txt"), &[]).await;
    assert_eq!(body, b"second VERSION");
    // offset= on an immutable file is a 400.
    let chk = ok(&gw, "PUT", &format!("{root}/frozen.bin"), vec![1u8; 100]).await;
    let (status, _) = call(&gw, "PUT", &format!("/uri/{}?offset=3", enc(&chk)), "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&gw, "PUT", &format!("{root}/frozen.bin?offset=3"), "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Content-Range on a PUT to a new name is not supported.
    let request = Request::put(format!("{root}/new.bin"))
        .header(header::CONTENT_RANGE, "bytes 0-0/1")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(gw.send(request).await.0, StatusCode::NOT_IMPLEMENTED);
}

/// What the browser UI relies on: the directory page's URL ends with a slash (a slash-less one
/// redirects), and its forms' `when_done=.` brings the browser back to the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_page_urls_and_relative_when_done() {
    let gw = Gateway::new();
    let root = enc(ok(&gw, "POST", "/uri?t=mkdir", Body::empty()).await.trim());
    ok(
        &gw,
        "POST",
        &format!("/uri/{root}/?t=mkdir&name=sub%20dir"),
        Body::empty(),
    )
    .await;
    for (url, expected) in [
        (format!("/uri/{root}"), format!("/uri/{root}/")),
        (
            format!("/uri/{root}/sub%20dir"),
            format!("/uri/{root}/sub%20dir/"),
        ),
    ] {
        let (status, headers, _) = gw.get(&url, &[("accept", "text/html")]).await;
        assert_eq!(status, StatusCode::FOUND, "{url}");
        assert_eq!(headers[header::LOCATION], expected.as_str());
        let (status, headers, page) = gw.get(&expected, &[("accept", "text/html")]).await;
        assert_eq!(status, StatusCode::OK, "{expected}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(String::from_utf8(page).unwrap().contains(r#"id="listing""#));
    }
    // "Open a cap" with a directory cap goes to its listing.
    let (status, headers, _) = gw.get(&format!("/uri?uri={root}&t=info"), &[]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers[header::LOCATION], format!("/uri/{root}/").as_str());
    // A form posted to the page comes back to it.
    let (status, headers, _) = gw
        .send(
            Request::post(format!("/uri/{root}/sub%20dir/?t=mkdir"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("name=inner&when_done=."))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], ".");
    assert!(names(&listing(&gw, &format!("/uri/{root}/sub%20dir")).await).contains(&"inner".to_owned()));
    // Never elsewhere.
    for bad in [
        "https://example.com/",
        "//example.com/x",
        "javascript:alert(1)",
        "\\\\host",
    ] {
        let (status, _) = call(
            &gw,
            "POST",
            &format!("/uri/{root}/?t=mkdir&name=x&when_done={}", enc(bad)),
            Body::empty(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_deep_check_manifest_and_repair_through_the_web_api() {
    let gw = Gateway::new();
    let root_cap = ok(&gw, "POST", "/uri?t=mkdir", Body::empty()).await;
    let root = format!("/uri/{}", enc(&root_cap));
    let file_cap = ok(&gw, "PUT", &format!("{root}/sub/data.bin"), vec![5u8; 20_000]).await;
    ok(&gw, "PUT", &format!("{root}/tiny.txt"), b"small".to_vec()).await;

    // t=check&output=JSON in Tahoe's shape, through a path.
    let text = ok(
        &gw,
        "POST",
        &format!("{root}/sub/data.bin?t=check&output=JSON"),
        Body::empty(),
    )
    .await;
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["results"]["healthy"], true, "{text}");
    assert_eq!(report["results"]["count-shares-good"], 10);
    assert_eq!(report["results"]["count-shares-needed"], 3);
    assert_eq!(report["results"]["sharemap"].as_object().unwrap().len(), 10);
    assert_eq!(report["summary"], "Healthy");
    // Tahoe's share ids: share numbers for an immutable file.
    assert!(report["results"]["sharemap"]["0"].is_array(), "{text}");
    assert_eq!(report["storage-index"].as_str().unwrap().len(), 26);
    // Without output=JSON: a page.
    let (status, page) = call(
        &gw,
        "POST",
        &format!("{root}/sub/data.bin?t=check&verify=true"),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<h1>Healthy</h1>") && page.contains("10 (encoding 3-of-10)"),
        "{page}"
    );

    // Lose four shares: check says so; repair puts them back.
    let cap = filenode::cap::Cap::parse(&file_cap).unwrap();
    let si = cap.storage_index().unwrap();
    for (server, shnum) in gw.grid.find_shares(si).into_iter().take(4) {
        gw.grid.delete_share(server, si, shnum);
    }
    let text = ok(
        &gw,
        "POST",
        &format!("/uri/{}?t=check&output=JSON", enc(&file_cap)),
        Body::empty(),
    )
    .await;
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["results"]["healthy"], false);
    assert_eq!(report["results"]["count-shares-good"], 6);
    let text = ok(
        &gw,
        "POST",
        &format!("/uri/{}?t=check&repair=true&output=JSON", enc(&file_cap)),
        Body::empty(),
    )
    .await;
    let repaired: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(repaired["repair-attempted"], true, "{text}");
    assert_eq!(repaired["repair-successful"], true, "{text}");
    assert_eq!(repaired["pre-repair-results"]["results"]["count-shares-good"], 6);
    assert_eq!(
        repaired["post-repair-results"]["results"]["count-shares-good"],
        10
    );

    // The info page offers the check form; posting it (as a browser does) shows the outcome.
    let (_, _, info) = gw.get(&format!("/uri/{}?t=info", enc(&file_cap)), &[]).await;
    let info = String::from_utf8(info).unwrap();
    assert!(
        info.contains(r#"id="check""#) && info.contains("?t=check"),
        "{info}"
    );
    let request = Request::builder()
        .method("POST")
        .uri(format!("/uri/{}?t=check", enc(&file_cap)))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("verify=true&repair=true"))
        .unwrap();
    let (status, _, page) = gw.send(request).await;
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("Repair attempted") && page.contains("<h1>Healthy</h1>"),
        "{page}"
    );

    // stream-manifest and stream-deep-check: a line per object, then the stats.
    let text = ok(&gw, "POST", &format!("{root}?t=stream-manifest"), Body::empty()).await;
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let paths: Vec<String> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            l["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    assert_eq!(paths, ["", "sub", "tiny.txt", "sub/data.bin"], "{text}");
    let stats = &lines.last().unwrap()["stats"];
    assert_eq!(
        (stats["count-directories"].as_u64(), stats["count-files"].as_u64()),
        (Some(2), Some(2))
    );
    // Repair caps as Tahoe gives them: a verify cap for an immutable file (never its read cap),
    // nothing for a LIT file, the write cap for a writable directory.
    assert_eq!(lines[3]["repaircap"], lines[3]["verifycap"], "{text}");
    assert!(
        lines[3]["repaircap"]
            .as_str()
            .unwrap()
            .starts_with("URI:CHK-Verifier:")
    );
    assert_eq!(lines[2]["repaircap"], "", "{text}");
    assert_eq!(lines[0]["repaircap"], lines[0]["cap"]);
    assert_eq!(stats["count-immutable-files"], 1);
    assert_eq!(stats["count-literal-files"], 1);
    assert_eq!(stats["size-immutable-files"], 20_000);
    let text = ok(
        &gw,
        "POST",
        &format!("{root}?t=stream-deep-check&add-lease=true"),
        Body::empty(),
    )
    .await;
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[..4]
            .iter()
            .all(|l| l["check-results"]["results"]["healthy"] == true),
        "{text}"
    );
    let stats = &lines[4]["stats"];
    assert_eq!(stats["count-objects-checked"], 4);
    assert_eq!(stats["count-objects-healthy"], 4);
    // Three objects live on the servers (the LIT file does not): ten leases each.
    assert_eq!(stats["count-leases-renewed"], 30, "{text}");

    // The info page's Check form with "everything in it": a page with a row per object.
    let request = Request::builder()
        .method("POST")
        .uri(format!("{root}?t=check"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("deep=true&verify=true"))
        .unwrap();
    let (status, _, page) = gw.send(request).await;
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("All 4 objects are healthy"), "{page}");
    // (minijinja escapes "/" in text as &#x2f;.)
    assert!(
        page.contains("sub&#x2f;data.bin") && page.contains("10&#x2f;10"),
        "{page}"
    );
    let (status, _) = call(
        &gw,
        "POST",
        &format!("{root}/tiny.txt?t=check&deep=true"),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Bad input: deep-check of a file, an unknown t.
    let (status, _) = call(
        &gw,
        "POST",
        &format!("{root}/tiny.txt?t=stream-deep-check"),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// The page's child links (`<td class="n"><a href="…">`), unescaped.
fn child_links(html: &str) -> Vec<String> {
    html.split(r#"<td class="n"><a href=""#)
        .skip(1)
        .map(|rest| {
            rest[..rest.find('"').unwrap()]
                .replace("&#x2f;", "/")
                .replace("&amp;", "&")
        })
        .collect()
}

/// Where a browser takes a link on the page `page` (which ends with `/`): relative links are
/// joined to it and dot segments removed, percent-encoded ones too (as the URL standard says).
fn follow(page: &str, href: &str) -> String {
    let (path, query) = href.split_once('?').unwrap_or((href, ""));
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{page}{path}")
    };
    let mut out: Vec<&str> = Vec::new();
    for segment in joined.split('/') {
        match segment.to_ascii_lowercase().as_str() {
            "." | "%2e" => {}
            ".." | ".%2e" | "%2e." | "%2e%2e" => {
                if out.len() > 1 {
                    out.pop();
                }
            }
            _ => out.push(segment),
        }
    }
    let path = out.join("/");
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_no_path_can_carry_are_listed_and_linked_by_cap() {
    let gw = Gateway::new();
    let file = ok(&gw, "PUT", "/uri", b"planted".to_vec()).await;
    let dircap = ok(&gw, "POST", "/uri?t=mkdir", Body::empty()).await;
    let mut planted: Vec<&str> = tests::HOSTILE_NAMES.to_vec();
    planted.push("fine.txt");
    // What the directory's owner can write: packed children, straight into its mutable file with
    // `PUT /uri/SSKWRITECAP`, past every check on names.
    let entries: Vec<filenode::dirnode::DirEntry> = planted
        .iter()
        .map(|name| filenode::dirnode::DirEntry {
            name: (*name).to_owned(),
            ro_uri: file.clone(),
            rw_uri: None,
            metadata_json: "{}".to_owned(),
        })
        .collect();
    let ssk = dircap.replacen("URI:DIR2:", "URI:SSK:", 1);
    ok(
        &gw,
        "PUT",
        &format!("/uri/{}", enc(&ssk)),
        filenode::dirnode::pack(&entries, None),
    )
    .await;

    // t=json lists every name as it is.
    let dir = format!("/uri/{}", enc(&dircap));
    let mut listed = names(&listing(&gw, &dir).await);
    listed.sort();
    let mut expected: Vec<String> = planted.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);

    // The page lists every child, escaped, and every link leads to that child's file.
    let page = format!("{dir}/");
    let html = ok(&gw, "GET", &page, Body::empty()).await;
    assert_eq!(
        html.matches(r#"<tr><td class="t">"#).count(),
        planted.len(),
        "{html}"
    );
    // Control characters are shown escaped, never raw (a NUL would be dropped by the browser).
    assert!(!html.contains(['\0', '\r']), "{html}");
    assert!(
        html.contains(r"nul\u{0}name") && html.contains(r"line\r\nbreak"),
        "{html}"
    );
    assert!(html.contains("(empty name)"));
    // Every name a form can send exactly gets Unlink (all but those with NUL or a line break,
    // which browsers rewrite); only names the gateway itself would write get Rename: `.`, `..`
    // and `fine.txt`.
    let sendable = planted.iter().filter(|n| !n.contains(['\0', '\r', '\n'])).count();
    assert_eq!(sendable, 7);
    assert_eq!(
        html.matches(r#"action="?t=unlink&amp;when_done=.""#).count(),
        sendable,
        "{html}"
    );
    assert_eq!(html.matches(r#"class="rename js-only""#).count(), 3, "{html}");
    let links = child_links(&html);
    assert_eq!(links.len(), planted.len(), "{html}");
    for href in &links {
        let target = follow(&page, href);
        let (status, body) = call(&gw, "GET", &target, Body::empty()).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "planted"),
            "{href} led to {target}"
        );
    }
}

/// A link marked read-only (Tahoe's `no-write`, as SFTP's `chmod 444` marks it; here planted with
/// `set_children` metadata) is honoured through the web API as by every frontend on the
/// file-system layer: a `PUT` over it, a `DELETE` or `t=unlink` of it, and a `t=rename` or
/// `t=relink` over it are refused with 403 saying the link is read-only, and change nothing;
/// renaming the marked link away is allowed and keeps the mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_marked_no_write_are_refused_changes_through_the_web_api() {
    let gw = Gateway::new();
    let root_cap = ok(&gw, "POST", "/uri?t=mkdir", Body::empty()).await;
    let root = format!("/uri/{}", enc(&root_cap));
    let kept = ok(&gw, "PUT", "/uri", "kept contents").await;
    let mutable = ok(&gw, "PUT", "/uri?format=MDMF", "mutable contents").await;
    let children = serde_json::json!({
        "ro.txt": ["filenode", {"ro_uri": kept, "metadata": {"no-write": true}}],
        "ro-mutable": ["filenode", {"rw_uri": mutable, "metadata": {"no-write": true}}],
    });
    ok(
        &gw,
        "POST",
        &format!("{root}?t=set_children"),
        children.to_string(),
    )
    .await;
    ok(&gw, "PUT", &format!("{root}/other.txt"), "other").await;
    ok(&gw, "PUT", &format!("{root}/sub?t=mkdir"), Body::empty()).await;
    ok(&gw, "PUT", &format!("{root}/sub/x"), "x").await;
    let before = listing(&gw, &root).await;

    let to_dir = enc(&root_cap);
    let refused: Vec<(&str, String)> = vec![
        ("PUT", format!("{root}/ro.txt")),
        ("PUT", format!("{root}/ro-mutable")),
        ("PUT", format!("{root}/ro-mutable?offset=2")),
        ("DELETE", format!("{root}/ro.txt")),
        ("POST", format!("{root}?t=unlink&name=ro.txt")),
        (
            "POST",
            format!("{root}?t=rename&from_name=other.txt&to_name=ro.txt"),
        ),
        (
            "POST",
            format!("{root}/sub?t=relink&from_name=x&to_dir={to_dir}&to_name=ro.txt"),
        ),
        ("POST", format!("{root}?t=uri&name=ro.txt&uri={}", enc(&kept))),
    ];
    for (method, uri) in refused {
        let (status, text) = call(&gw, method, &uri, "new contents").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {text}");
        assert!(
            text.contains("read-only") && text.contains("no-write"),
            "{method} {uri}: {text}"
        );
    }
    assert_eq!(listing(&gw, &root).await, before, "nothing changed");
    let (_, _, body) = gw.get(&format!("{root}/ro.txt"), &[]).await;
    assert_eq!(body, b"kept contents");
    let (_, _, body) = gw.get(&format!("{root}/ro-mutable"), &[]).await;
    assert_eq!(body, b"mutable contents");
    assert_eq!(
        names(&listing(&gw, &format!("{root}/sub")).await),
        ["x"],
        "the relinked file stayed"
    );

    // Renaming the marked link away is allowed; the mark goes with it.
    ok(
        &gw,
        "POST",
        &format!("{root}?t=rename&from_name=ro.txt&to_name=moved.txt"),
        Body::empty(),
    )
    .await;
    let after = listing(&gw, &root).await;
    assert!(!after.contains_key("ro.txt"));
    assert_eq!(after["moved.txt"][1]["metadata"]["no-write"], true);
    let (status, _) = call(&gw, "DELETE", &format!("{root}/moved.txt"), Body::empty()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The name it left is free again.
    ok(&gw, "PUT", &format!("{root}/ro.txt"), "a new file").await;
}
