//! Issue 13, finding 3: the web gateway holds no more than its bounds, whatever a request sends.
//! Form fields other than `file` are bounded one by one and together (413); SDMF bodies are
//! bounded (413, the file unchanged); no plaintext of an upload reaches the disk (the spool is
//! encrypted); and the served socket closes a connection that does not finish its request head in
//! time and refuses connections past the cap while the others go on; over TLS, a handshake that
//! stalls or fails blocks no one and is closed after the timeout.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use frontends::web::{ServeLimits, serve, serve_tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::web::Gateway;

fn form(boundary: &str, fields: &[(&str, Vec<u8>)], file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

async fn post_form(gw: &Gateway, fields: &[(&str, Vec<u8>)]) -> (StatusCode, String) {
    let request = Request::post("/uri?t=upload")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=B0uNd")
        .body(Body::from(form("B0uNd", fields, b"the file")))
        .unwrap();
    let (status, _, body) = gw.send(request).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_fields_other_than_the_file_are_bounded() {
    let gw = Gateway::new();
    // One long field: 413 naming it.
    let (status, body) = post_form(&gw, &[("format", vec![b'a'; 100 << 10])]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body.contains("form field \"format\" is longer than 65536 bytes"),
        "{body}"
    );
    // Many fields each under the bound: 413 for all of them together.
    let fields: Vec<(&str, Vec<u8>)> = (0..20).map(|_| ("x", vec![b'a'; 60 << 10])).collect();
    let (status, body) = post_form(&gw, &fields).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("together"), "{body}");
    // An ordinary form still works.
    let (status, body) = post_form(&gw, &[("format", b"CHK".to_vec())]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("URI:"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdmf_bodies_are_bounded() {
    let gw = Gateway::new();
    let too_big = vec![7u8; (frontends::SDMF_MAX_SIZE + 1) as usize];
    for uri in ["/uri?format=SDMF", "/uri?mutable=true"] {
        let (status, _, body) = gw
            .send(Request::put(uri).body(Body::from(too_big.clone())).unwrap())
            .await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {body}");
        assert!(body.contains("SDMF") && body.contains("MDMF"), "{body}");
    }
    // Replacing an existing SDMF file with too much: refused, and the file is unchanged.
    let (status, _, cap) = gw
        .send(
            Request::put("/uri?format=SDMF")
                .body(Body::from("small"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let cap = String::from_utf8(cap).unwrap();
    let (status, _, body) = gw
        .send(
            Request::put(format!("/uri/{cap}"))
                .body(Body::from(too_big.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = gw.get(&format!("/uri/{cap}"), &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"small"[..]));
    // The same size as MDMF is fine.
    let (status, _, _) = gw
        .send(
            Request::put("/uri?format=MDMF")
                .body(Body::from(too_big))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Every file this process holds open that is unlinked (the spools are anonymous temporary files),
/// read whole when at most 64 MiB.
/// The contents of every regular file this process has open (the spools, which are unlinked; the
/// in-process storage servers' share files) and of every file in the directories they are in
/// (the temporary directory), each at most 256 MiB; not the kernel's pseudo-files.
fn files_on_disk() -> Vec<(String, Vec<u8>)> {
    let mut paths = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let read = |path: &std::path::Path, name: String, out: &mut Vec<(String, Vec<u8>)>| {
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        if file
            .metadata()
            .map(|m| !m.is_file() || m.len() > 256 << 20)
            .unwrap_or(true)
        {
            return;
        }
        let mut data = Vec::new();
        if (&mut file).take(256 << 20).read_to_end(&mut data).is_ok() {
            out.push((name, data));
        }
    };
    let mut dirs = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        // Pipes, sockets and the like are not files; /proc, /sys and /dev hold no uploads.
        if !target.is_absolute() || ["/proc", "/sys", "/dev"].iter().any(|p| target.starts_with(p)) {
            continue;
        }
        if let Some(dir) = target.parent() {
            dirs.insert(dir.to_owned());
        }
        paths.insert(target.clone());
        read(&entry.path(), target.display().to_string(), &mut out);
    }
    dirs.insert(std::env::temp_dir());
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !paths.contains(&path) {
                read(&path, path.display().to_string(), &mut out);
            }
        }
    }
    out
}

/// Issue 17: during a 64 MiB web upload (while it is spooled, and while the spool is read to encode
/// it), no file this process has open and no file beside them in the temporary directory holds a
/// window of the plaintext: the spool is encrypted under its own key, and the convergent key is
/// hashed from the bytes as they arrive, never from a plaintext copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_of_a_web_upload_reaches_the_disk() {
    let gw = Gateway::new();
    let marker: Vec<u8> = format!("plaintext-marker-{:032x}|", rand::random::<u128>()).into_bytes();
    let chunk: Vec<u8> = marker.iter().copied().cycle().take(1 << 20).collect();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let request = Request::put("/uri").body(Body::from_stream(stream)).unwrap();
    let upload = tokio::spawn(async move {
        let (status, _, body) = gw.send(request).await;
        (status, body)
    });
    let assert_no_plaintext = |when: &str, files: &[(String, Vec<u8>)]| {
        for (name, data) in files {
            // Only where the first byte matches is the rest compared: hundreds of MB per scan,
            // while other tests share the cores.
            let found = data
                .iter()
                .enumerate()
                .filter(|(_, byte)| **byte == marker[0])
                .any(|(at, _)| data[at..].starts_with(&marker));
            assert!(!found, "{when}: plaintext of the upload is on disk in {name}");
        }
    };
    // 32 MiB sent, then 64: with a channel of one, all but the last chunk or two have been spooled.
    for half in ["half of the body sent", "the whole body sent"] {
        for _ in 0..32 {
            sender.send(Ok(bytes::Bytes::from(chunk.clone()))).await.unwrap();
        }
        let files = tokio::task::spawn_blocking(files_on_disk).await.unwrap();
        let spooled: usize = files
            .iter()
            .filter(|(name, _)| name.ends_with("(deleted)"))
            .map(|(_, data)| data.len())
            .sum();
        assert!(
            spooled >= 16 << 20,
            "{half}: the upload is being spooled ({spooled} bytes found)"
        );
        assert_no_plaintext(half, &files);
    }
    // While the upload reads the spool to encode it, and the servers write its shares.
    drop(sender);
    let mut scans = 0;
    // Paced: a scan reads every open file, and the other tests of this binary share the two cores.
    while !upload.is_finished() {
        let files = tokio::task::spawn_blocking(files_on_disk).await.unwrap();
        assert_no_plaintext("while encoding", &files);
        scans += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, body) = upload.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(scans > 0, "the disk was scanned while the upload was encoded");
}

/// The spools of all web uploads in progress hold at most `[node] web.spool.quota` together: an
/// upload that would pass it is refused with 507 and a message naming the key, the upload in
/// progress finishes intact, and the space comes back when it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_uploads_in_progress_share_a_spool_quota() {
    const QUOTA: u64 = 1 << 20;
    let gw = std::sync::Arc::new(Gateway::with_spool_quota(QUOTA));
    let refused = |status: StatusCode, body: &[u8]| {
        let body = String::from_utf8_lossy(body);
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
        assert!(body.contains("web.spool.quota"), "{body}");
    };
    // One body larger than the whole quota.
    let (status, _, body) = gw
        .send(Request::put("/uri").body(Body::from(vec![1u8; 2 << 20])).unwrap())
        .await;
    refused(status, &body);
    assert_eq!(
        gw.spool_quota.used("web"),
        0,
        "a refused upload gives its space back"
    );

    // An upload in progress holds 768 KiB of the quota...
    let first: Vec<u8> = (0..768 << 10).map(|i: u32| (i % 253) as u8).collect();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let request = Request::put("/uri").body(Body::from_stream(stream)).unwrap();
    let upload = tokio::spawn({
        let gw = std::sync::Arc::clone(&gw);
        async move { gw.send(request).await }
    });
    for chunk in first.chunks(256 << 10) {
        sender
            .send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // All of it (a wait for less would race with the last chunk: 512 KiB held plus 512 KiB asked
    // for is exactly the quota, which is allowed).
    while gw.spool_quota.used("web") < 768 << 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first upload is not spooled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The metrics show what the spool holds.
    let (status, _, metrics) = gw.get("/statistics?t=openmetrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8(metrics).unwrap();
    let held: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tessera_web_spool_bytes "))
        .expect("the spool gauge")
        .parse()
        .unwrap();
    assert!((512 << 10..=QUOTA).contains(&held), "{held}");
    // ...so the next 512 KiB, as a PUT or a form, are refused.
    let (status, _, body) = gw
        .send(
            Request::put("/uri")
                .body(Body::from(vec![2u8; 512 << 10]))
                .unwrap(),
        )
        .await;
    refused(status, &body);
    let request = Request::post("/uri?t=upload")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=B0uNd")
        .body(Body::from(form("B0uNd", &[], &vec![3u8; 512 << 10])))
        .unwrap();
    let (status, _, body) = gw.send(request).await;
    refused(status, &body);
    // The first upload is unaffected: it finishes and reads back whole.
    drop(sender);
    let (status, _, cap) = upload.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&cap));
    let (status, _, body) = gw
        .get(&format!("/uri/{}", String::from_utf8(cap).unwrap()), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == first, "the first upload reads back as sent");
    // Its space is back: the refused upload now goes through.
    assert_eq!(gw.spool_quota.used("web"), 0);
    gw.put(&vec![2u8; 512 << 10]).await;
}

fn app() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async { "hello" }))
}

async fn start(limits: ServeLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app(), limits, async move {
        let _ = stopped.await;
    }));
    (address, stop)
}

/// Reads until the server closes the connection (bounded, so a server that never does fails the
/// test instead of hanging it).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_hello(stream: &mut tokio::net::TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_request_head_is_closed_after_the_timeout() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 16,
    };
    let (address, _stop) = start(limits).await;
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(!answer.contains("hello"), "{answer}");
    read_until_closed(&mut idle).await;
    // Others are served as before.
    let mut ok = tokio::net::TcpStream::connect(address).await.unwrap();
    assert!(get_hello(&mut ok).await.ends_with("hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_and_the_others_go_on() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(300),
        max_connections: 2,
    };
    let (address, _stop) = start(limits).await;
    let mut first = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
    first.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    second.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // Both held: the third gets a 503 with a message and is closed.
    let mut third = tokio::net::TcpStream::connect(address).await.unwrap();
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    // The held connections finish their requests.
    first
        .write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until_closed(&mut first).await.ends_with("hello"));
    // A place is free again once a connection ends.
    let mut served = None;
    for _ in 0..100 {
        let mut next = tokio::net::TcpStream::connect(address).await.unwrap();
        let answer = get_hello(&mut next).await;
        if answer.ends_with("hello") {
            served = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.is_some(), "a new connection is served once one has ended");
    second
        .write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until_closed(&mut second).await.ends_with("hello"));
}

/// A web upload's convergent key is hashed from its body as it is spooled: the cap is the one the
/// grid makes from the same bytes in one piece (Tahoe's convergence), whether the body arrives in
/// uneven chunks shorter or longer than a segment, and the same bytes sent again are the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_hashed_as_it_arrives_makes_the_convergent_cap() {
    use filenode::grid::upload::{UploadParams, upload_bytes};
    let gw = Gateway::new();
    let data: Vec<u8> = (0..300_001u32).map(|i| (i * 31 % 255) as u8).collect();
    let params = UploadParams {
        max_segment_size: 4096,
        ..UploadParams::default()
    };
    let expected = upload_bytes(&gw.grid.entries(), &gw.grid.secrets, &params, data.clone())
        .await
        .unwrap()
        .cap
        .to_string();
    for cuts in [vec![1usize, 4095, 4097, 100_000], vec![300_001]] {
        let mut chunks = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at == data.len() {
                break;
            }
            let end = (at + cut).min(data.len());
            chunks.push(Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(
                &data[at..end],
            )));
            at = end;
        }
        let request = Request::put("/uri")
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
        let (status, _, body) = gw.send(request).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(String::from_utf8(body).unwrap(), expected, "cut as {cuts:?}");
    }
}

/// Sends `data` as a PUT body of known length through a channel, calling `midway` after half of it.
async fn put_streamed(
    gw: &std::sync::Arc<Gateway>,
    uri: &str,
    data: &[u8],
    midway: impl FnOnce(),
) -> (StatusCode, String) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let request = Request::put(uri)
        .header(header::CONTENT_LENGTH, data.len())
        .body(Body::from_stream(stream))
        .unwrap();
    let upload = tokio::spawn({
        let gw = std::sync::Arc::clone(gw);
        async move { gw.send(request).await }
    });
    let half = data.len() / 2;
    for chunk in data[..half].chunks(64 << 10) {
        sender
            .send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
        assert_eq!(gw.spool_quota.used("web"), 0, "a streamed upload is not spooled");
    }
    midway();
    for chunk in data[half..].chunks(64 << 10) {
        if sender
            .send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .is_err()
        {
            break; // The upload gave up.
        }
    }
    drop(sender);
    let (status, _, body) = upload.await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Issue 17: an upload with convergence off and a known length streams into the encoder with no
/// spool (nothing is charged to the spool quota), large or small, to /uri or to a path; the file
/// reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_convergence_off_streams_without_a_spool() {
    let gw = std::sync::Arc::new(Gateway::new());
    let dir = {
        let (status, _, body) = gw
            .send(Request::post("/uri?t=mkdir").body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body).unwrap()
    };
    for (len, uri) in [
        (5 << 20, "/uri?convergence=false".to_owned()),
        (100_000, "/uri?convergence=false".to_owned()),
        (3 << 20, format!("/uri/{dir}/streamed?convergence=false")),
    ] {
        let data: Vec<u8> = (0..len).map(|i: u32| (i * 13 % 251) as u8).collect();
        let (status, cap) = put_streamed(&gw, &uri, &data, || {}).await;
        // 201 for a new name under a directory.
        assert!(
            status == StatusCode::OK || status == StatusCode::CREATED,
            "{uri}: {status} {cap}"
        );
        assert!(cap.starts_with("URI:CHK:"), "{cap}");
        let (status, _, back) = gw.get(&format!("/uri/{cap}"), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(back == data, "{uri}: {len} bytes read back");
        // A random key: the same bytes again are another file.
        let (_, again) = put_streamed(&gw, &uri, &data, || {}).await;
        assert_ne!(again, cap, "{uri}: convergence is off");
    }
}

/// A streamed upload cannot send shares again: when servers fail mid-upload it keeps what it
/// placed if that is still happy (the file reads back), and otherwise fails with 503 saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_survives_servers_failing_while_happiness_holds() {
    let gw = std::sync::Arc::new(Gateway::new());
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 241) as u8).collect();
    // Two of ten fail: eight shares placed, happy = 7.
    let (status, cap) = put_streamed(&gw, "/uri?convergence=false", &data, || {
        gw.grid.break_server(3);
        gw.grid.break_server(7);
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{cap}");
    let (status, _, back) = gw.get(&format!("/uri/{cap}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(back == data, "read back after two servers failed");
    gw.grid.restore_server(3);
    gw.grid.restore_server(7);
    // Four fail: six shares, fewer than happy.
    let (status, body) = put_streamed(&gw, "/uri?convergence=false", &data, || {
        for i in [1, 4, 6, 8] {
            gw.grid.break_server(i);
        }
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("happ"), "{body}");
}

/// A client's `Content-Length` is its word: an upload with convergence off announcing far more than
/// `web.spool.quota` (2^50 bytes here) is not streamed on that word (the encoder would size its
/// hash trees by it) but spooled, where the bytes that arrive are counted: the 1,000 sent are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_length_past_the_quota_is_not_believed() {
    let gw = Gateway::with_spool_quota(1 << 20);
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let request = Request::put("/uri?convergence=false")
        .header(header::CONTENT_LENGTH, (1u64 << 50).to_string())
        .body(Body::from(data.clone()))
        .unwrap();
    let (status, _, body) = gw.send(request).await;
    let cap = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK, "{cap}");
    let (status, _, back) = gw.get(&format!("/uri/{cap}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(back, data);
}

/// `serve_tls`: a connection that never starts its handshake, and one that speaks plain HTTP,
/// hold up no one (a TLS client is served at once, well within the timeout) and get no HTTP
/// answer; the stalled one is closed once `header_read_timeout` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_failed_tls_handshake_blocks_no_one() {
    let identity = storage::tls::TlsIdentity::generate().unwrap();
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(5),
        max_connections: 16,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = std::sync::Arc::new(identity.server_config().unwrap());
    tokio::spawn(serve_tls(listener, app(), limits, Some(config), async move {
        let _ = stopped.await;
    }));
    let mut stalled = tokio::net::TcpStream::connect(address).await.unwrap();
    let started = std::time::Instant::now();
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    let answer = get_hello(&mut plain).await;
    assert!(
        !answer.contains("HTTP/1.1") && !answer.contains("hello"),
        "{answer}"
    );
    let client = storage::tls::pinned_client_config(&identity.spki_hash()).unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("tessera").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await; // No close_notify is needed to end it.
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("hello"), "{out}");
    assert!(
        started.elapsed() < limits.header_read_timeout,
        "the TLS client waited for the stalled handshake: {:?}",
        started.elapsed()
    );
    // The stalled connection is closed after the timeout, with nothing sent.
    assert_eq!(read_until_closed(&mut stalled).await, "");
    assert!(started.elapsed() >= limits.header_read_timeout - Duration::from_millis(100));
}
