//! The WebDAV router (`frontends::webdav`) over a real in-process grid: its bounds (the spool
//! quota, a body that ends early, request targets, non-PUT bodies), logins (401 with a challenge,
//! a remembered login that costs no second argon2id), and users kept apart (each has their own
//! root and their own locks), and links marked read-only (Tahoe's `no-write`, as SFTP's chmod sets
//! it) refused with 403. The real clients are in `node/tests/webdav.rs`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use filenode::cap::MutableFormat;
use filenode::grid::Grid;
use filenode::grid::upload::UploadParams;
use filenode::node::DirNode;
use frontends::SpoolQuota;
use frontends::accounts::{AccountsFile, Credential, add_user};
use frontends::counters::{ErrorKind, Frontend, Op};
use frontends::webdav::{WebdavConfig, router};
use http_body_util::BodyExt;
use tests::grid::TestGrid;
use tower::ServiceExt;

struct Setup {
    _grid: TestGrid,
    _dir: tempfile::TempDir,
    router: axum::Router,
    accounts: Arc<AccountsFile>,
    counters: Arc<frontends::Counters>,
    quota: Arc<SpoolQuota>,
    alice: DirNode,
    bob: DirNode,
}

async fn setup(quota: u64) -> Setup {
    setup_with(quota, true).await
}

/// A WebDAV router over a 5-server grid whose client uploads convergently or, as with `[client]
/// convergence = false`, with random keys.
async fn setup_with(quota: u64, convergent: bool) -> Setup {
    let grid = TestGrid::new(5);
    let mut secrets = grid.secrets.clone();
    if !convergent {
        secrets.convergence = None;
    }
    let client = Arc::new(Grid::with_key_pool(
        secrets,
        UploadParams {
            needed: 2,
            happy: 3,
            total: 4,
            max_segment_size: 64 * 1024,
        },
        filenode::mutable::keys::KeyPool::new(1),
    ));
    client.set_servers(grid.entries());
    let alice = client.create_directory(MutableFormat::Sdmf).await.unwrap();
    let bob = client.create_directory(MutableFormat::Sdmf).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts");
    add_user(
        &path,
        "alice",
        &Credential::Password("alice pw".into()),
        alice.cap(),
    )
    .unwrap();
    add_user(&path, "bob", &Credential::Password("bob pw".into()), bob.cap()).unwrap();
    let accounts = Arc::new(AccountsFile::new(&path));
    let counters = frontends::Counters::new();
    let spool_quota = SpoolQuota::new(quota);
    let router = router(WebdavConfig {
        grid: Arc::clone(&client),
        accounts: Arc::clone(&accounts),
        spool_dir: Some(dir.path().to_owned()),
        spool_quota: Arc::clone(&spool_quota),
        limits: frontends::web::ServeLimits::default(),
        failure_delay: std::time::Duration::ZERO,
        counters: Arc::clone(&counters),
    });
    Setup {
        _grid: grid,
        _dir: dir,
        router,
        counters,
        quota: spool_quota,
        accounts,
        alice,
        bob,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
    )
}

async fn call(
    s: &Setup,
    who: Option<(&str, &str)>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some((user, password)) = who {
        request = request.header(header::AUTHORIZATION, basic(user, password));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = s
        .router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

const ALICE: Option<(&str, &str)> = Some(("alice", "alice pw"));
const BOB: Option<(&str, &str)> = Some(("bob", "bob pw"));

#[tokio::test]
async fn logins_bounds_and_users_kept_apart() {
    let s = setup(1 << 20).await;
    // No credentials, a wrong password: 401 with a Basic challenge.
    for who in [None, Some(("alice", "wrong")), Some(("nobody", "x"))] {
        let (status, headers, _) = call(&s, who, "PROPFIND", "/", &[("depth", "0")], Body::empty()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic realm=")
        );
    }
    // A login is checked once, then remembered (no second argon2id for the same password).
    let (status, _, _) = call(&s, ALICE, "PUT", "/a.txt", &[], Body::from("alice's")).await;
    assert_eq!(status, StatusCode::CREATED);
    let checks = s.accounts.password_checks();
    let (status, _, body) = call(&s, ALICE, "GET", "/a.txt", &[], Body::empty()).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"alice's"[..]));
    assert_eq!(s.accounts.password_checks(), checks);
    // A wrong password for a remembered user is still checked, and refused.
    let (status, _, _) = call(&s, Some(("alice", "guess")), "GET", "/a.txt", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Each user's `/` is their root; locks are per user, so alice's lock on /a.txt does not
    // touch bob's /a.txt.
    let lockinfo = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
    let (status, _, _) = call(&s, ALICE, "LOCK", "/a.txt", &[], Body::from(lockinfo)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&s, ALICE, "PUT", "/a.txt", &[], Body::from("again")).await;
    assert_eq!(status, StatusCode::LOCKED);
    let (status, _, _) = call(&s, BOB, "PUT", "/a.txt", &[], Body::from("bob's")).await;
    assert_eq!(status, StatusCode::CREATED);
    let alice_file = s.alice.get("a.txt").await.unwrap().cap;
    assert_ne!(alice_file, s.bob.get("a.txt").await.unwrap().cap);

    // Bounds: a target too long (414), a non-PUT body over 64 KiB (413), depth infinity (403).
    let long = format!("/{}", "a".repeat(9000));
    let (status, _, _) = call(&s, ALICE, "GET", &long, &[], Body::empty()).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    let (status, _, _) = call(
        &s,
        ALICE,
        "PROPFIND",
        "/",
        &[("depth", "1")],
        Body::from(vec![b' '; 70_000]),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, body) = call(
        &s,
        ALICE,
        "PROPFIND",
        "/",
        &[("depth", "infinity"), ("x-litmus", "1")],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("propfind-finite-depth"));
    // A name longer than the layer takes: refused, nothing made.
    let (status, _, _) = call(
        &s,
        ALICE,
        "MKCOL",
        &format!("/{}", "n".repeat(1100)),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // `/uri/not-a-cap` is refused, not taken for a child of a directory named `uri`.
    let (status, _, _) = call(&s, ALICE, "MKCOL", "/uri", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = call(&s, ALICE, "PUT", "/uri/not-a-cap", &[], Body::from("x")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(s.alice.get("uri").await.is_ok());

    // DELETE of the root (or of any path's base) is refused whole: nothing below it is unlinked.
    // (Bob: alice's lock would refuse it with 423 first.)
    let (status, _, _) = call(&s, BOB, "MKCOL", "/sub", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::CREATED);
    let before = s.bob.list().await.unwrap().len();
    let (status, _, _) = call(&s, BOB, "DELETE", "/", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let root_cap = s.bob.cap().to_string();
    let (status, _, _) = call(
        &s,
        BOB,
        "DELETE",
        &format!("/uri/{root_cap}/"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.bob.list().await.unwrap().len(), before);
    let (status, _, body) = call(&s, BOB, "GET", "/a.txt", &[], Body::empty()).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"bob's"[..]));
    let (status, _, _) = call(&s, BOB, "PROPFIND", "/sub", &[("depth", "0")], Body::empty()).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);

    // The node's figures: three wrong passwords (a request without any is a challenge, not a
    // failure), the uploads and downloads, their bytes, the refusals by kind.
    let dav = s.counters.frontend(Frontend::Webdav);
    assert_eq!(dav.login_failures(), 3);
    assert!(dav.operations(Op::Upload) >= 3 && dav.operations(Op::Download) >= 2);
    assert!(dav.operations(Op::Mkdir) >= 2 && dav.operations(Op::Stat) >= 1);
    assert!(
        dav.total_in() >= 12 && dav.total_out() >= 12,
        "{} in, {} out",
        dav.total_in(),
        dav.total_out()
    );
    assert!(
        dav.errors(ErrorKind::Permission) >= 4,
        "403s: {}",
        dav.errors(ErrorKind::Permission)
    );
    assert_eq!(dav.errors(ErrorKind::Conflict), 1, "the locked PUT");
    let mut text = frontends::web::Exposition::new(frontends::web::MetricsFormat::OpenMetrics);
    s.counters.write(&mut text);
    let text = text.finish();
    assert!(
        text.contains("tessera_frontend_login_failures_total{frontend=\"webdav\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn uploads_past_the_quota_or_cut_short_store_nothing() {
    let s = setup(100_000).await;
    // Announced past the quota: refused before any byte is spooled.
    let (status, _, _) = call(
        &s,
        ALICE,
        "PUT",
        "/big.bin",
        &[("content-length", "200000")],
        Body::from(vec![7u8; 200_000]),
    )
    .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    // Unannounced (chunked) and past the quota: refused when the spool is full.
    let chunks = futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 10_000]))),
    );
    let (status, _, _) = call(&s, ALICE, "PUT", "/big.bin", &[], Body::from_stream(chunks)).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    // A body that ends before its Content-Length: not stored.
    let (status, _, _) = call(
        &s,
        ALICE,
        "PUT",
        "/short.bin",
        &[("content-length", "5000")],
        Body::from(vec![2u8; 3000]),
    )
    .await;
    assert!(!status.is_success(), "{status}");
    let names: Vec<String> = s
        .alice
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // Within the quota: stored, and the quota is free again afterwards.
    let contents: Vec<u8> = (0..90_000u32).map(|i| (i % 251) as u8).collect();
    let (status, _, _) = call(&s, ALICE, "PUT", "/ok.bin", &[], Body::from(contents.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = call(
        &s,
        ALICE,
        "GET",
        "/ok.bin",
        &[("range", "bytes=80000-")],
        Body::empty(),
    )
    .await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &contents[80_000..])
    );
    let (status, _, _) = call(&s, ALICE, "PUT", "/ok2.bin", &[], Body::from(contents.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// A link marked `no-write` (through the file-system layer, as SFTP's `chmod 444` marks it): a
/// PUT over it, a DELETE of it and a MOVE over it are refused with 403 and change nothing; once
/// the mark is cleared (`chmod 644`), the PUT works.
#[tokio::test]
async fn a_file_marked_no_write_is_forbidden_to_put_until_cleared() {
    use filenode::fs::{Fs, FsPath, MetadataChange};
    let s = setup(1 << 20).await;
    let (status, _, _) = call(&s, ALICE, "PUT", "/locked.txt", &[], Body::from("original")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = call(&s, ALICE, "PUT", "/other.txt", &[], Body::from("other")).await;
    assert_eq!(status, StatusCode::CREATED);
    let fs = Fs::new(s.alice.grid(), s.alice.clone());
    let path = FsPath::parse("/locked.txt").unwrap();
    let mark = |no_write| MetadataChange {
        mtime: None,
        no_write: Some(no_write),
    };
    fs.set_metadata(&path, mark(true)).await.unwrap();

    let (status, _, _) = call(&s, ALICE, "PUT", "/locked.txt", &[], Body::from("replaced")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(&s, ALICE, "DELETE", "/locked.txt", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // dav-server removes a MOVE's destination first and reports that removal's refusal in a
    // multistatus.
    let (status, _, body) = call(
        &s,
        ALICE,
        "MOVE",
        "/other.txt",
        &[("destination", "/locked.txt"), ("overwrite", "T")],
        Body::empty(),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert!(body.contains("403 Forbidden"), "{body}");
    let (status, _, body) = call(&s, ALICE, "GET", "/locked.txt", &[], Body::empty()).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"original"[..]));
    assert!(fs.stat(&path).await.unwrap().no_write);

    fs.set_metadata(&path, mark(false)).await.unwrap();
    let (status, _, _) = call(&s, ALICE, "PUT", "/locked.txt", &[], Body::from("replaced")).await;
    assert!(status.is_success(), "{status}");
    let (_, _, body) = call(&s, ALICE, "GET", "/locked.txt", &[], Body::empty()).await;
    assert_eq!(body, b"replaced");
}

/// A PUT's convergent key is hashed from the body as it is spooled (through the layer's
/// `WriteTarget::convergent_hasher`): the file linked is the one the grid makes from the same
/// bytes in one piece, body cut unevenly or not.
#[tokio::test]
async fn a_put_hashed_as_it_arrives_links_the_convergent_file() {
    use filenode::grid::upload::upload_bytes;
    let s = setup(16 << 20).await;
    let data: Vec<u8> = (0..400_003u32).map(|i| (i * 17 % 253) as u8).collect();
    let params = UploadParams {
        needed: 2,
        happy: 3,
        total: 4,
        max_segment_size: 64 * 1024,
    };
    let expected = upload_bytes(&s._grid.entries(), &s._grid.secrets, &params, data.clone())
        .await
        .unwrap()
        .cap;
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = data
        .chunks(65_537)
        .map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk)))
        .collect();
    let length = data.len().to_string();
    let (status, _, _) = call(
        &s,
        ALICE,
        "PUT",
        "/converged.bin",
        &[("content-length", length.as_str())],
        Body::from_stream(futures::stream::iter(chunks)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let child = s.alice.get("converged.bin").await.unwrap();
    assert_eq!(child.cap.to_string(), expected.to_string());
}

/// Issue 17: with convergence off (`[client] convergence = false`), a PUT of a new immutable file
/// whose length is announced streams into the encoder as it arrives: nothing is charged to the
/// spool quota while it does (large, past the one-request size, or small), it reads back byte for
/// byte, and the same bytes again are another file (a random key). A body cut short stores
/// nothing; a body without a length still goes through the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_convergence_off_streams_without_a_spool() {
    let s = Arc::new(setup_with(64 << 20, false).await);
    for (name, len) in [("big.bin", 5_000_000usize), ("small.bin", 100_000)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let (status, cap) = put_streamed(&s, name, &data, data.len()).await;
        assert_eq!(status, StatusCode::CREATED, "{name}");
        assert!(cap.starts_with("URI:CHK:"), "{cap}");
        let (status, _, back) = call(&s, ALICE, "GET", &format!("/{name}"), &[], Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(back == data, "{name}: {len} bytes read back");
        let (status, again) = put_streamed(&s, name, &data, data.len()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{name} replaced");
        assert_ne!(again, cap, "{name}: convergence is off");
    }
    // Cut short: 600,000 of 1,000,000 bytes arrive, and nothing is linked.
    let data = vec![9u8; 600_000];
    let (status, _) = put_streamed(&s, "short.bin", &data, 1_000_000).await;
    assert!(!status.is_success(), "{status}");
    assert!(s.alice.get("short.bin").await.is_err(), "nothing stored");
    // No length announced: spooled (and still a random key).
    let chunks = futures::stream::iter(
        (0..3).map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![i as u8; 70_000]))),
    );
    let (status, _, _) = call(&s, ALICE, "PUT", "/chunked.bin", &[], Body::from_stream(chunks)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, back) = call(&s, ALICE, "GET", "/chunked.bin", &[], Body::empty()).await;
    assert_eq!(back.len(), 210_000);
    assert_eq!(s.quota.used("alice"), 0, "every spool given back");
}

/// PUTs `data` to `/name` announcing `announced` bytes, through a channel, checking after each
/// chunk that nothing is charged to the spool quota; the status and the cap linked (if any).
async fn put_streamed(s: &Arc<Setup>, name: &str, data: &[u8], announced: usize) -> (StatusCode, String) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let put = tokio::spawn({
        let (s, uri, length) = (Arc::clone(s), format!("/{name}"), announced.to_string());
        async move {
            call(
                &s,
                ALICE,
                "PUT",
                &uri,
                &[("content-length", length.as_str())],
                Body::from_stream(stream),
            )
            .await
        }
    });
    for chunk in data.chunks(64 << 10) {
        if sender
            .send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .is_err()
        {
            break;
        }
        assert_eq!(s.quota.used("alice"), 0, "a streamed PUT is not spooled");
    }
    drop(sender);
    let (status, _, _) = put.await.unwrap();
    let cap = match s.alice.get(name).await {
        Ok(child) => child.cap.to_string(),
        Err(_) => String::new(),
    };
    (status, cap)
}
