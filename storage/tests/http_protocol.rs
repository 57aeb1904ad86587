//! Exact HTTP behaviour of the storage server for well-formed and malformed requests, sent with a raw
//! client that bypasses `HttpStorageClient`: status codes, headers and bodies per tahoe-interfaces.md
//! §1.3–§1.4, and that no refusal changes a share.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use ciborium::value::Value;
use data_encoding::BASE64;
use storage::api::{ReadVector, TestWriteVectors, WriteVector};
use storage::http::HttpStorageClient;
use storage::server::{StorageConfig, StorageServer};
use storage::testing::{
    HttpsTestServer, RawClient, RawResponse, lease_secrets, pattern, storage_index, upload_secret,
    write_enabler,
};
use storage::{ShareKind, StorageClient, StorageIndex};

struct Fixture {
    server: HttpsTestServer,
    client: HttpStorageClient,
    raw: RawClient,
    store: Arc<StorageServer>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StorageServer::open(StorageConfig::new(dir.path().join("storage"))).unwrap());
    let server = HttpsTestServer::start(store.clone()).await.unwrap();
    Fixture {
        client: server.client(),
        raw: server.raw(),
        server,
        store,
        _dir: dir,
    }
}

fn secret(kind: &str, value: &[u8]) -> String {
    format!("{kind} {}", BASE64.encode(value))
}

fn lease_headers(n: u8) -> [String; 2] {
    let lease = lease_secrets(n);
    [
        secret("lease-renew-secret", &lease.renew),
        secret("lease-cancel-secret", &lease.cancel),
    ]
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn text_map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    )
}

fn set(items: &[u64]) -> Value {
    Value::Tag(
        258,
        Box::new(Value::Array(
            items.iter().map(|n| Value::Integer((*n).into())).collect(),
        )),
    )
}

fn allocate_body(shares: &[u64], size: u64) -> Vec<u8> {
    cbor(&text_map(vec![
        ("share-numbers", set(shares)),
        ("allocated-size", Value::Integer(size.into())),
    ]))
}

fn decode(response: &RawResponse) -> Value {
    ciborium::from_reader(&response.body[..]).unwrap()
}

fn tessera_error(response: &RawResponse) -> Option<String> {
    response
        .headers
        .get("x-tessera-error")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Uploads one complete immutable share.
async fn upload(f: &Fixture, si: StorageIndex, shnum: u16, data: &[u8]) {
    let allocation = f
        .client
        .allocate_buckets(
            si,
            &lease_secrets(1),
            &upload_secret(1),
            &BTreeSet::from([shnum]),
            data.len() as u64,
        )
        .await
        .unwrap();
    assert!(allocation.allocated.contains(&shnum));
    let progress = f
        .client
        .write_share(si, shnum, &upload_secret(1), 0, Bytes::copy_from_slice(data))
        .await
        .unwrap();
    assert!(progress.complete);
}

/// Every endpoint, as (method, path) with valid path segments.
fn endpoints(si: StorageIndex) -> Vec<(&'static str, String)> {
    vec![
        ("GET", "/storage/v1/version".to_owned()),
        ("POST", format!("/storage/v1/immutable/{si}")),
        ("PATCH", format!("/storage/v1/immutable/{si}/0")),
        ("PUT", format!("/storage/v1/immutable/{si}/0/abort")),
        ("POST", format!("/storage/v1/immutable/{si}/0/corrupt")),
        ("GET", format!("/storage/v1/immutable/{si}/shares")),
        ("GET", format!("/storage/v1/immutable/{si}/0")),
        ("POST", format!("/storage/v1/mutable/{si}/read-test-write")),
        ("GET", format!("/storage/v1/mutable/{si}/shares")),
        ("GET", format!("/storage/v1/mutable/{si}/0")),
        ("POST", format!("/storage/v1/mutable/{si}/0/corrupt")),
        ("PUT", format!("/storage/v1/lease/{si}")),
        ("GET", "/storage/v1/tessera/status".to_owned()),
        (
            "POST",
            format!("/storage/v1/tessera/immutable/{si}/0/remove-corrupt"),
        ),
        ("PUT", format!("/storage/v1/tessera/immutable/{si}/0")),
    ]
}

/// Tessera's whole-share request: the lease secrets and nothing else, a body of 1 byte to 1 MiB
/// (413 past it, 400 when empty), and nothing stored by a refusal; 201 when stored, 200 when the
/// same share is sent again.
#[tokio::test]
async fn whole_shares_are_bounded_and_need_exactly_the_lease_secrets() {
    let f = fixture().await;
    let si = storage_index(9);
    let path = format!("/storage/v1/tessera/immutable/{si}/4");
    let put = |lease: bool| {
        let request = f.raw.authorized("PUT", &path);
        if lease {
            let [renew, cancel] = lease_headers(1);
            request
                .header("x-tahoe-authorization", renew)
                .header("x-tahoe-authorization", cancel)
        } else {
            request
        }
    };
    let response = f
        .raw
        .send_with(put(true), vec![7u8; 1024 * 1024 + 1])
        .await
        .unwrap();
    assert_eq!(response.status, 413, "{}", response.text());
    let response = f.raw.send_with(put(true), Vec::new()).await.unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    let response = f.raw.send_with(put(false), vec![7u8; 100]).await.unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    let with_upload_secret = put(true).header(
        "x-tahoe-authorization",
        secret("upload-secret", &upload_secret(1).0),
    );
    let response = f.raw.send_with(with_upload_secret, vec![7u8; 100]).await.unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        f.client
            .list_shares(ShareKind::Immutable, si)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.store.status().uploads_in_progress, 0);
    let response = f.raw.send_with(put(true), vec![7u8; 1024 * 1024]).await.unwrap();
    assert_eq!(response.status, 201, "{}", response.text());
    let response = f.raw.send_with(put(true), vec![7u8; 1024 * 1024]).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let response = f.raw.send_with(put(true), vec![8u8; 1024 * 1024]).await.unwrap();
    assert_eq!(response.status, 409, "{}", response.text());
    assert_eq!(f.store.status().uploads_in_progress, 0);
    let held = f
        .client
        .read_share(ShareKind::Immutable, si, 4, 0, 2 << 20)
        .await
        .unwrap();
    assert!(held.len() == 1 << 20 && held.iter().all(|&b| b == 7));
}

#[tokio::test]
async fn every_endpoint_requires_the_exact_swissnum() {
    let f = fixture().await;
    let si = storage_index(1);
    let wrong = format!("Tahoe-LAFS {}", BASE64.encode(b"not-the-swissnum"));
    let lower_scheme = f.raw.authorization().replace("Tahoe-LAFS", "tahoe-lafs");
    for (method, path) in endpoints(si) {
        let missing = f
            .raw
            .send_with(f.raw.request(method, &path), Bytes::new())
            .await
            .unwrap();
        assert_eq!(missing.status, 401, "{method} {path} without Authorization");
        assert_eq!(tessera_error(&missing).as_deref(), Some("unauthorized"));
        for value in [&wrong, &lower_scheme] {
            let request = f
                .raw
                .request(method, &path)
                .header("authorization", value.as_str());
            let response = f.raw.send_with(request, Bytes::new()).await.unwrap();
            assert_eq!(response.status, 401, "{method} {path} with {value}");
        }
        let non_utf8 = hyper::http::HeaderValue::from_bytes(b"Tahoe-LAFS \xff\xfe").unwrap();
        let request = f.raw.request(method, &path).header("authorization", non_utf8);
        let response = f.raw.send_with(request, Bytes::new()).await.unwrap();
        assert_eq!(
            response.status, 400,
            "{method} {path} with a non-UTF-8 Authorization"
        );
    }
    // The typed client reports a wrong swissnum as Unauthorized, whatever the operation.
    let mut nurl = f.server.nurl.clone();
    nurl.swissnum = "wrong".to_owned();
    let client = HttpStorageClient::new(&nurl).unwrap();
    let error = client.version().await.unwrap_err();
    assert!(matches!(error, storage::StorageError::Unauthorized), "{error:?}");
    let error = client
        .write_share(si, 0, &upload_secret(1), 0, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(error, storage::StorageError::Unauthorized), "{error:?}");
}

#[tokio::test]
async fn bad_paths_are_not_found_and_wrong_methods_not_allowed() {
    let f = fixture().await;
    let si = storage_index(2);
    upload(&f, si, 0, b"data").await;
    let good = si.to_string();
    let mut bad_bits = good.clone();
    bad_bits.pop();
    bad_bits.push('7'); // non-zero trailing bits: not a canonical encoding
    let bad_storage_indexes = [
        good.to_uppercase(),
        good[..25].to_owned(),
        format!("{good}a"),
        "1".repeat(26),
        bad_bits,
    ];
    for bad in &bad_storage_indexes {
        for path in [
            format!("/storage/v1/immutable/{bad}/shares"),
            format!("/storage/v1/immutable/{bad}/0"),
            format!("/storage/v1/mutable/{bad}/shares"),
        ] {
            let response = f
                .raw
                .send_with(f.raw.authorized("GET", &path), Bytes::new())
                .await
                .unwrap();
            assert_eq!(response.status, 404, "{path}");
        }
        let response = f
            .raw
            .send_with(
                f.raw
                    .authorized("PUT", &format!("/storage/v1/lease/{bad}"))
                    .header("x-tahoe-authorization", &lease_headers(1)[0])
                    .header("x-tahoe-authorization", &lease_headers(1)[1]),
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(response.status, 404, "lease {bad}");
    }
    for bad in ["x", "-1", "65536", "1.5", "0x1"] {
        let path = format!("/storage/v1/immutable/{good}/{bad}");
        let response = f
            .raw
            .send_with(f.raw.authorized("GET", &path), Bytes::new())
            .await
            .unwrap();
        assert_eq!(response.status, 404, "{path}");
    }
    for (method, path) in [
        ("DELETE", "/storage/v1/version".to_owned()),
        ("GET", format!("/storage/v1/immutable/{good}")),
        ("POST", format!("/storage/v1/immutable/{good}/0")),
        ("GET", format!("/storage/v1/lease/{good}")),
    ] {
        let response = f
            .raw
            .send_with(f.raw.authorized(method, &path), Bytes::new())
            .await
            .unwrap();
        assert_eq!(response.status, 405, "{method} {path}");
    }
    let response = f
        .raw
        .send_with(f.raw.authorized("GET", "/storage/v2/version"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.status, 404);
    // Leading zeros in a share number are fine (decimal).
    let path = format!("/storage/v1/immutable/{good}/000");
    let response = f
        .raw
        .send_with(f.raw.authorized("GET", &path), Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(&response.body[..], b"data");
}

#[tokio::test]
async fn version_has_tahoe_shape() {
    let f = fixture().await;
    let response = f
        .raw
        .send_with(f.raw.authorized("GET", "/storage/v1/version"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "application/cbor");
    let Value::Map(outer) = decode(&response) else {
        panic!("not a map")
    };
    // Byte-string keys, as Tahoe sends.
    let keys: Vec<&Value> = outer.iter().map(|(k, _)| k).collect();
    assert!(keys.contains(&&Value::Bytes(
        b"http://allmydata.org/tahoe/protocols/storage/v1".to_vec()
    )));
    assert!(keys.contains(&&Value::Bytes(b"application-version".to_vec())));
    let (_, inner) = outer
        .iter()
        .find(|(k, _)| matches!(k, Value::Bytes(b) if b.starts_with(b"http")))
        .unwrap();
    let Value::Map(inner) = inner else {
        panic!("not a map")
    };
    for key in [
        "maximum-immutable-share-size",
        "maximum-mutable-share-size",
        "available-space",
    ] {
        assert!(
            inner
                .iter()
                .any(|(k, v)| *k == Value::Bytes(key.as_bytes().to_vec()) && matches!(v, Value::Integer(_)))
        );
    }
}

#[tokio::test]
async fn secrets_must_be_exactly_the_required_set() {
    let f = fixture().await;
    let si = storage_index(3);
    let path = format!("/storage/v1/immutable/{si}");
    let [renew, cancel] = lease_headers(1);
    let upload = secret("upload-secret", &[1; 20]);
    let short_lease = secret("lease-renew-secret", &[1; 31]);
    let bad_sets: Vec<Vec<String>> = vec![
        vec![],
        vec![renew.clone(), cancel.clone()],
        vec![
            renew.clone(),
            cancel.clone(),
            upload.clone(),
            secret("write-enabler", &[1; 32]),
        ],
        vec![renew.clone(), cancel.clone(), upload.clone(), upload.clone()],
        vec![short_lease, cancel.clone(), upload.clone()],
        vec![
            renew.clone(),
            cancel.clone(),
            "upload-secret !!notbase64".to_owned(),
        ],
        vec![renew.clone(), cancel.clone(), "upload-secret".to_owned()],
        vec![renew.clone(), cancel.clone(), "upload-secret ".to_owned()],
        vec![
            renew.clone(),
            cancel.clone(),
            upload.clone(),
            secret("mystery-secret", &[1; 4]),
        ],
    ];
    for secrets in bad_sets {
        let mut request = f
            .raw
            .authorized("POST", &path)
            .header("content-type", "application/cbor");
        for value in &secrets {
            request = request.header("x-tahoe-authorization", value);
        }
        let response = f.raw.send_with(request, allocate_body(&[0], 10)).await.unwrap();
        assert_eq!(response.status, 400, "{secrets:?}");
        assert!(!response.text().is_empty());
    }
    // Secrets on an endpoint that takes none are refused too.
    let request = f
        .raw
        .authorized("GET", "/storage/v1/version")
        .header("x-tahoe-authorization", &upload);
    assert_eq!(f.raw.send_with(request, Bytes::new()).await.unwrap().status, 400);
    // Nothing was allocated.
    assert_eq!(f.store.status().uploads_in_progress, 0);
    // The correct set works.
    let request = f
        .raw
        .authorized("POST", &path)
        .header("x-tahoe-authorization", &renew)
        .header("x-tahoe-authorization", &cancel)
        .header("x-tahoe-authorization", &upload);
    let response = f.raw.send_with(request, allocate_body(&[0], 10)).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(f.store.status().uploads_in_progress, 1);
}

fn allocate_request(f: &Fixture, si: StorageIndex) -> hyper::http::request::Builder {
    let [renew, cancel] = lease_headers(1);
    f.raw
        .authorized("POST", &format!("/storage/v1/immutable/{si}"))
        .header("x-tahoe-authorization", renew)
        .header("x-tahoe-authorization", cancel)
        .header(
            "x-tahoe-authorization",
            secret("upload-secret", &upload_secret(1).0),
        )
}

#[tokio::test]
async fn media_types_bodies_and_sizes() {
    let f = fixture().await;
    let si = storage_index(4);
    // 415 for a non-CBOR body type.
    for content_type in ["application/json", "text/plain", "application/octet-stream"] {
        let request = allocate_request(&f, si).header("content-type", content_type);
        let response = f.raw.send_with(request, allocate_body(&[0], 10)).await.unwrap();
        assert_eq!(response.status, 415, "{content_type}");
    }
    // 406 when CBOR is not acceptable, checked before anything happens.
    for accept in ["application/json", "text/html, application/cbor;q=0"] {
        let request = allocate_request(&f, si).header("accept", accept);
        let response = f.raw.send_with(request, allocate_body(&[0], 10)).await.unwrap();
        assert_eq!(response.status, 406, "{accept}");
        let request = f
            .raw
            .authorized("GET", "/storage/v1/version")
            .header("accept", accept);
        assert_eq!(f.raw.send_with(request, Bytes::new()).await.unwrap().status, 406);
    }
    for accept in ["application/cbor", "*/*", "application/*;q=0.1"] {
        let request = f
            .raw
            .authorized("GET", "/storage/v1/version")
            .header("accept", accept);
        assert_eq!(
            f.raw.send_with(request, Bytes::new()).await.unwrap().status,
            200,
            "{accept}"
        );
    }
    // 400 for malformed CBOR and for schema violations, with a message.
    let bad_bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0x00, 0x13],
        Vec::new(),
        cbor(&Value::Array(vec![])),
        cbor(&text_map(vec![
            ("share-numbers", Value::Array(vec![Value::Integer(1.into())])),
            ("allocated-size", Value::Integer(1.into())),
        ])),
        cbor(&text_map(vec![
            ("share-numbers", set(&[1])),
            ("allocated-size", Value::Text("big".into())),
        ])),
        cbor(&text_map(vec![("share-numbers", set(&[1]))])),
        cbor(&text_map(vec![
            ("share-numbers", set(&[1])),
            ("allocated-size", Value::Integer(1.into())),
            ("extra", Value::Null),
        ])),
        cbor(&text_map(vec![
            ("share-numbers", set(&[300])),
            ("allocated-size", Value::Integer(1.into())),
        ])),
        [allocate_body(&[0], 10), vec![0]].concat(),
    ];
    for body in bad_bodies {
        let response = f
            .raw
            .send_with(allocate_request(&f, si), body.clone())
            .await
            .unwrap();
        assert_eq!(response.status, 400, "{body:?}");
        assert!(response.text().len() > 5, "{}", response.text());
    }
    // 413 over the caps: allocate 8 KiB, corrupt 32 KiB, bodiless endpoints 1 MiB.
    let response = f
        .raw
        .send_with(allocate_request(&f, si), vec![0u8; 8 * 1024 + 1])
        .await
        .unwrap();
    assert_eq!(response.status, 413);
    upload(&f, si, 0, b"share").await;
    let corrupt = format!("/storage/v1/immutable/{si}/0/corrupt");
    let huge_reason = cbor(&text_map(vec![("reason", Value::Text("x".repeat(33 * 1024)))]));
    let response = f
        .raw
        .send_with(f.raw.authorized("POST", &corrupt), huge_reason)
        .await
        .unwrap();
    assert_eq!(response.status, 413);
    let empty_reason = cbor(&text_map(vec![("reason", Value::Text(String::new()))]));
    let response = f
        .raw
        .send_with(f.raw.authorized("POST", &corrupt), empty_reason)
        .await
        .unwrap();
    assert_eq!(response.status, 400);
    let response = f
        .raw
        .send_with(
            f.raw.authorized("GET", "/storage/v1/version"),
            vec![0u8; 1024 * 1024 + 1],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 413);
    // Nothing was allocated or advised by any refusal.
    assert_eq!(f.store.status().uploads_in_progress, 0);
    assert!(f.store.corruption_advisories().unwrap().is_empty());
    // A valid advisory is 200 with an empty body, and shows in the status endpoint.
    let reason = cbor(&text_map(vec![("reason", Value::Text("hash mismatch".into()))]));
    let response = f
        .raw
        .send_with(f.raw.authorized("POST", &corrupt), reason)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    let status = f.client.status().await.unwrap();
    assert_eq!(status.corruption_advisories.len(), 1);
    assert_eq!(status.corruption_advisories[0].reason, "hash mismatch");
    assert_eq!(status.corruption_advisories[0].storage_index, si);
    assert_eq!(status.immutable_shares, 1);
}

fn patch(f: &Fixture, si: StorageIndex, shnum: u16, upload: u8) -> hyper::http::request::Builder {
    f.raw
        .authorized("PATCH", &format!("/storage/v1/immutable/{si}/{shnum}"))
        .header(
            "x-tahoe-authorization",
            secret("upload-secret", &upload_secret(upload).0),
        )
}

/// Tessera's allocating write: `X-Tessera-Allocate` is the share's size, and the request then
/// carries exactly the lease secrets beside the upload secret; anything else is a 400 that opens
/// nothing. A good one opens the upload and writes (201 when it completes the share).
#[tokio::test]
async fn allocating_patches_need_a_size_and_exactly_the_lease_secrets() {
    let f = fixture().await;
    let si = storage_index(12);
    let data = pattern(100, 12);
    let with_lease = |size: &str| {
        let [renew, cancel] = lease_headers(1);
        patch(&f, si, 3, 1)
            .header("content-range", "bytes 0-99/*")
            .header("x-tessera-allocate", size)
            .header("x-tahoe-authorization", renew)
            .header("x-tahoe-authorization", cancel)
    };
    for size in ["", "-1", "1e3", "18446744073709551616", "ten"] {
        let response = f.raw.send_with(with_lease(size), data.clone()).await.unwrap();
        assert_eq!(response.status, 400, "size {size:?}: {}", response.text());
        assert!(
            response.text().contains("X-Tessera-Allocate"),
            "{}",
            response.text()
        );
    }
    let without_lease = patch(&f, si, 3, 1)
        .header("content-range", "bytes 0-99/*")
        .header("x-tessera-allocate", "100");
    let response = f.raw.send_with(without_lease, data.clone()).await.unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("lease-renew-secret"),
        "{}",
        response.text()
    );
    assert_eq!(f.store.status().uploads_in_progress, 0);
    assert!(
        f.client
            .list_shares(ShareKind::Immutable, si)
            .await
            .unwrap()
            .is_empty()
    );

    let response = f.raw.send_with(with_lease("100"), data.clone()).await.unwrap();
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(f.store.status().uploads_in_progress, 0);
    let held = f
        .client
        .read_share(ShareKind::Immutable, si, 3, 0, 200)
        .await
        .unwrap();
    assert_eq!(held.to_vec(), data);
    // Sent again: the share is held (405, as a write to a complete share).
    let response = f.raw.send_with(with_lease("100"), data.clone()).await.unwrap();
    assert_eq!(response.status, 405, "{}", response.text());
    assert_eq!(
        tessera_error(&response).as_deref(),
        Some("already-complete shnum=3")
    );
}

#[tokio::test]
async fn patch_rules_and_refusals_write_nothing() {
    let f = fixture().await;
    let si = storage_index(5);
    let data = pattern(100, 5);
    f.client
        .allocate_buckets(
            si,
            &lease_secrets(1),
            &upload_secret(1),
            &BTreeSet::from([0]),
            100,
        )
        .await
        .unwrap();
    // 200 with the missing ranges.
    let response = f
        .raw
        .send_with(
            patch(&f, si, 0, 1).header("content-range", "bytes 0-9/*"),
            data[..10].to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let required = decode(&response);
    let expected = text_map(vec![(
        "required",
        Value::Array(vec![text_map(vec![
            ("begin", Value::Integer(10.into())),
            ("end", Value::Integer(100.into())),
        ])]),
    )]);
    assert_eq!(required, expected);

    let junk = vec![0xeeu8; 10];
    let refusals: Vec<(hyper::http::request::Builder, Vec<u8>, u16, Option<&str>)> = vec![
        (patch(&f, si, 0, 1), junk.clone(), 416, None),
        (
            patch(&f, si, 0, 1).header("content-range", "items 10-19/*"),
            junk.clone(),
            416,
            None,
        ),
        (
            patch(&f, si, 0, 1).header("content-range", "bytes */100"),
            junk.clone(),
            416,
            None,
        ),
        (
            patch(&f, si, 0, 1).header("content-range", "bytes 19-10/*"),
            junk.clone(),
            416,
            None,
        ),
        (
            patch(&f, si, 0, 1).header("content-range", "bytes=10-19"),
            junk.clone(),
            416,
            None,
        ),
        // Body longer or shorter than its Content-Range.
        (
            patch(&f, si, 0, 1).header("content-range", "bytes 10-14/*"),
            junk.clone(),
            413,
            None,
        ),
        (
            patch(&f, si, 0, 1).header("content-range", "bytes 10-29/*"),
            junk.clone(),
            400,
            None,
        ),
        // Past the allocated size (Tahoe: 500).
        (
            patch(&f, si, 0, 1).header("content-range", "bytes 95-104/*"),
            junk.clone(),
            416,
            Some("beyond-allocation end=105 allocated=100"),
        ),
        // Overlapping written bytes with different ones.
        (
            patch(&f, si, 0, 1).header("content-range", "bytes 5-14/*"),
            junk.clone(),
            409,
            Some("conflict offset=5"),
        ),
        // Wrong upload secret; unknown share; no secret.
        (
            patch(&f, si, 0, 2).header("content-range", "bytes 10-19/*"),
            junk.clone(),
            401,
            Some("upload-secret-mismatch"),
        ),
        (
            patch(&f, si, 1, 1).header("content-range", "bytes 10-19/*"),
            junk.clone(),
            404,
            Some("not-found"),
        ),
        (
            f.raw
                .authorized("PATCH", &format!("/storage/v1/immutable/{si}/0"))
                .header("content-range", "bytes 10-19/*"),
            junk.clone(),
            400,
            Some("bad-request"),
        ),
    ];
    for (i, (request, body, status, tag)) in refusals.into_iter().enumerate() {
        let response = f.raw.send_with(request, body).await.unwrap();
        assert_eq!(response.status, status, "case {i}: {}", response.text());
        if let Some(tag) = tag {
            assert_eq!(tessera_error(&response).as_deref(), Some(tag), "case {i}");
        }
        assert!(
            !response.text().contains("/tmp"),
            "case {i} leaks a path: {}",
            response.text()
        );
    }
    // Nothing of the refused bodies landed: the true bytes go in without conflict and read back intact.
    let response = f
        .raw
        .send_with(
            patch(&f, si, 0, 1).header("content-range", "bytes 10-99/100"),
            data[10..].to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(
        decode(&response),
        text_map(vec![("required", Value::Array(vec![]))])
    );
    assert_eq!(
        f.store.read_share(ShareKind::Immutable, si, 0, 0, 1000).unwrap(),
        data
    );
    // Writes after completion: the upload is gone (404); abort says 405.
    let response = f
        .raw
        .send_with(
            patch(&f, si, 0, 1).header("content-range", "bytes 0-9/*"),
            data[..10].to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 404);
    let abort = f
        .raw
        .authorized("PUT", &format!("/storage/v1/immutable/{si}/0/abort"))
        .header(
            "x-tahoe-authorization",
            secret("upload-secret", &upload_secret(1).0),
        );
    let response = f.raw.send_with(abort, Bytes::new()).await.unwrap();
    assert_eq!(response.status, 405);
}

#[tokio::test]
async fn abort_statuses() {
    let f = fixture().await;
    let si = storage_index(6);
    f.client
        .allocate_buckets(si, &lease_secrets(1), &upload_secret(1), &BTreeSet::from([0]), 10)
        .await
        .unwrap();
    let abort = |upload: u8, shnum: u16| {
        f.raw
            .authorized("PUT", &format!("/storage/v1/immutable/{si}/{shnum}/abort"))
            .header(
                "x-tahoe-authorization",
                secret("upload-secret", &upload_secret(upload).0),
            )
    };
    assert_eq!(
        f.raw.send_with(abort(2, 0), Bytes::new()).await.unwrap().status,
        401
    );
    assert_eq!(
        f.raw.send_with(abort(1, 1), Bytes::new()).await.unwrap().status,
        404
    );
    assert_eq!(f.store.status().uploads_in_progress, 1);
    let response = f.raw.send_with(abort(1, 0), Bytes::new()).await.unwrap();
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_eq!(f.store.status().uploads_in_progress, 0);
    assert_eq!(
        f.raw.send_with(abort(1, 0), Bytes::new()).await.unwrap().status,
        404
    );
}

async fn get(f: &Fixture, path: &str, range: Option<&str>) -> RawResponse {
    let mut request = f.raw.authorized("GET", path);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    f.raw.send_with(request, Bytes::new()).await.unwrap()
}

#[tokio::test]
async fn read_range_rules() {
    let f = fixture().await;
    let si = storage_index(7);
    let data = pattern(1000, 7);
    upload(&f, si, 3, &data).await;
    let slot = storage_index(8);
    let tw = [(
        1,
        TestWriteVectors {
            write: vec![WriteVector {
                offset: 0,
                data: data.clone(),
            }],
            ..Default::default()
        },
    )]
    .into();
    assert!(
        f.client
            .read_test_write(slot, &write_enabler(1), &lease_secrets(1), &tw, &[])
            .await
            .unwrap()
            .success
    );

    for path in [
        format!("/storage/v1/immutable/{si}/3"),
        format!("/storage/v1/mutable/{slot}/1"),
    ] {
        let whole = get(&f, &path, None).await;
        assert_eq!(whole.status, 200);
        assert_eq!(whole.body, data);
        assert!(whole.headers.get("content-range").is_none());
        assert_eq!(whole.headers["content-length"], "1000");

        let part = get(&f, &path, Some("bytes=10-19")).await;
        assert_eq!(part.status, 206);
        assert_eq!(part.headers["content-range"], "bytes 10-19/1000");
        assert_eq!(part.body, data[10..20]);

        let clamped = get(&f, &path, Some("bytes=990-5000")).await;
        assert_eq!(clamped.status, 206);
        assert_eq!(clamped.headers["content-range"], "bytes 990-999/1000");
        assert_eq!(clamped.body, data[990..]);

        for past in ["bytes=1000-1010", "bytes=5000-6000"] {
            let response = get(&f, &path, Some(past)).await;
            assert_eq!(response.status, 204, "{past}");
            assert!(response.body.is_empty());
        }
        for bad in [
            "bytes=0-9,20-29",
            "bytes=10-",
            "bytes=-10",
            "items=0-9",
            "bytes=9-0",
            "nonsense",
        ] {
            let response = get(&f, &path, Some(bad)).await;
            assert_eq!(response.status, 416, "{bad}");
        }
    }
    // Unknown shares are 404 whatever the Range says.
    for path in [
        format!("/storage/v1/immutable/{si}/4"),
        format!("/storage/v1/mutable/{slot}/2"),
        format!("/storage/v1/mutable/{si}/3"),
    ] {
        assert_eq!(get(&f, &path, Some("bytes=0-9")).await.status, 404, "{path}");
        assert_eq!(get(&f, &path, Some("bytes=5-")).await.status, 404, "{path}");
        assert_eq!(get(&f, &path, None).await.status, 404, "{path}");
    }
    // Share lists are tagged sets; unknown indexes give an empty set, not 404.
    let response = get(&f, &format!("/storage/v1/immutable/{si}/shares"), None).await;
    assert_eq!(response.status, 200);
    assert_eq!(decode(&response), set(&[3]));
    let response = get(
        &f,
        &format!("/storage/v1/mutable/{}/shares", storage_index(9)),
        None,
    )
    .await;
    assert_eq!(decode(&response), set(&[]));
}

#[tokio::test]
async fn big_shares_stream_in_full_and_in_ranges() {
    let f = fixture().await;
    let si = storage_index(10);
    let data = pattern(5 * 1024 * 1024 + 3, 10);
    upload(&f, si, 0, &data).await;
    let path = format!("/storage/v1/immutable/{si}/0");
    let whole = get(&f, &path, None).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == data);
    let range = format!("bytes={}-{}", 1024 * 1024 - 1, 4 * 1024 * 1024);
    let part = get(&f, &path, Some(&range)).await;
    assert_eq!(part.status, 206);
    assert!(part.body[..] == data[1024 * 1024 - 1..=4 * 1024 * 1024]);
}

#[tokio::test]
async fn lease_and_mutable_statuses() {
    let f = fixture().await;
    let si = storage_index(11);
    let lease = |n: u8, path: &str| {
        let [renew, cancel] = lease_headers(n);
        f.raw
            .authorized("PUT", path)
            .header("x-tahoe-authorization", renew)
            .header("x-tahoe-authorization", cancel)
    };
    let path = format!("/storage/v1/lease/{si}");
    assert_eq!(
        f.raw
            .send_with(lease(1, &path), Bytes::new())
            .await
            .unwrap()
            .status,
        404
    );
    upload(&f, si, 0, b"x").await;
    let response = f.raw.send_with(lease(1, &path), Bytes::new()).await.unwrap();
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());

    // read-test-write: a failed test is 200 with success false; a wrong write enabler is 401.
    let slot = storage_index(12);
    let rtw = |we: u8, body: Vec<u8>| {
        let [renew, cancel] = lease_headers(1);
        let request = f
            .raw
            .authorized("POST", &format!("/storage/v1/mutable/{slot}/read-test-write"))
            .header(
                "x-tahoe-authorization",
                secret("write-enabler", &write_enabler(we).0),
            )
            .header("x-tahoe-authorization", renew)
            .header("x-tahoe-authorization", cancel);
        f.raw.send_with(request, body)
    };
    let write = |specimen: Value| {
        cbor(&text_map(vec![
            (
                "test-write-vectors",
                Value::Map(vec![(
                    Value::Integer(0.into()),
                    text_map(vec![
                        (
                            "test",
                            Value::Array(vec![text_map(vec![
                                ("offset", Value::Integer(0.into())),
                                ("size", Value::Integer(1.into())),
                                ("specimen", specimen),
                            ])]),
                        ),
                        (
                            "write",
                            Value::Array(vec![text_map(vec![
                                ("offset", Value::Integer(0.into())),
                                ("data", Value::Bytes(b"v1".to_vec())),
                            ])]),
                        ),
                        ("new-length", Value::Null),
                    ]),
                )]),
            ),
            (
                "read-vector",
                Value::Array(vec![text_map(vec![
                    ("offset", Value::Integer(0.into())),
                    ("size", Value::Integer(2.into())),
                ])]),
            ),
        ]))
    };
    let response = rtw(1, write(Value::Bytes(vec![]))).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        decode(&response),
        text_map(vec![("success", Value::Bool(true)), ("data", Value::Map(vec![]))])
    );
    let response = rtw(1, write(Value::Bytes(vec![]))).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        decode(&response),
        text_map(vec![
            ("success", Value::Bool(false)),
            (
                "data",
                Value::Map(vec![(
                    Value::Integer(0.into()),
                    Value::Array(vec![Value::Bytes(b"v1".to_vec())])
                )])
            ),
        ])
    );
    let response = rtw(2, write(Value::Bytes(b"v".to_vec()))).await.unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(
        tessera_error(&response).as_deref(),
        Some("write-enabler-mismatch")
    );
    // Schema violations: text specimen, missing new-length.
    assert_eq!(rtw(1, write(Value::Text("v".into()))).await.unwrap().status, 400);
    let result = f
        .client
        .read_test_write(
            slot,
            &write_enabler(1),
            &lease_secrets(1),
            &Default::default(),
            &[ReadVector { offset: 0, size: 9 }],
        )
        .await
        .unwrap();
    assert_eq!(result.data[&0], vec![b"v1".to_vec()]);
}

#[tokio::test]
async fn large_patches_are_streamed_into_the_store_in_pieces() {
    let f = fixture().await;
    // One 9 MiB PATCH (three 4 MiB pieces on the server side) completes a 9 MiB share.
    let si = storage_index(13);
    let len = 9 * 1024 * 1024;
    let data = pattern(len, 13);
    f.client
        .allocate_buckets(
            si,
            &lease_secrets(1),
            &upload_secret(1),
            &BTreeSet::from([0]),
            len as u64,
        )
        .await
        .unwrap();
    let range = format!("bytes 0-{}/*", len - 1);
    let response = f
        .raw
        .send_with(
            patch(&f, si, 0, 1).header("content-range", range.as_str()),
            data.clone(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 201, "{}", response.text());
    assert!(
        f.store
            .read_share(ShareKind::Immutable, si, 0, 0, len as u64)
            .unwrap()
            == data
    );

    // A 9 MiB PATCH into a 6 MiB allocation is refused as soon as a piece crosses the allocation,
    // without the server reading (or buffering) the rest.
    let si = storage_index(14);
    f.client
        .allocate_buckets(
            si,
            &lease_secrets(1),
            &upload_secret(1),
            &BTreeSet::from([0]),
            6 << 20,
        )
        .await
        .unwrap();
    let response = f
        .raw
        .send_with(
            patch(&f, si, 0, 1).header("content-range", range.as_str()),
            data.clone(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 416, "{}", response.text());
    assert_eq!(
        tessera_error(&response).as_deref(),
        Some(format!("beyond-allocation end={} allocated={}", 8 << 20, 6 << 20).as_str())
    );
    // The upload is still usable: the client can complete it with writes inside the allocation.
    let progress = f
        .client
        .write_share(
            si,
            0,
            &upload_secret(1),
            0,
            Bytes::copy_from_slice(&data[..6 << 20]),
        )
        .await
        .unwrap();
    assert!(progress.complete);
}

/// Tahoe's server sets `application/octet-stream` before anything else in its share-read handlers, and
/// Tahoe's client checks the type before the status: a 404 of another type reaches its caller as a
/// ValueError, not as ClientException(404). So every read answer is octet-stream, refusals too.
#[tokio::test]
async fn share_read_refusals_are_octet_stream_as_tahoe_client_needs() {
    let f = fixture().await;
    let si = storage_index(21);
    upload(&f, si, 0, &pattern(100, 21)).await;
    let cases = [
        (format!("/storage/v1/immutable/{si}/5"), Some("bytes=0-9"), 404),
        (
            format!("/storage/v1/immutable/{}/0", storage_index(22)),
            Some("bytes=0-9"),
            404,
        ),
        (format!("/storage/v1/mutable/{si}/0"), Some("bytes=0-9"), 404),
        (format!("/storage/v1/immutable/{si}/0"), Some("bytes=5-"), 416),
        (format!("/storage/v1/immutable/{si}/0"), Some("bytes=0-9"), 206),
    ];
    for (path, range, status) in cases {
        let response = get(&f, &path, range).await;
        assert_eq!(response.status, status, "{path}");
        assert_eq!(
            response.headers.get("content-type").unwrap(),
            "application/octet-stream",
            "{path} {range:?}"
        );
    }
}

/// A refusal of a request with a body may come before the body is read (secrets, media type, range,
/// size are checked first), and the server then drops the connection: the answer must say
/// `Connection: close`, or a client puts the connection back in its pool and loses its next request
/// (Twisted, under Tahoe's client, does not retry a POST or PATCH). Found with Tahoe's own client.
#[tokio::test]
async fn refusals_of_requests_with_bodies_close_the_connection() {
    let f = fixture().await;
    let si = storage_index(23);
    let [renew, cancel] = lease_headers(1);
    let no_upload_secret = f
        .raw
        .authorized("POST", &format!("/storage/v1/immutable/{si}"))
        .header("x-tahoe-authorization", renew)
        .header("x-tahoe-authorization", cancel)
        .header("content-type", "application/cbor");
    let no_range = patch(&f, si, 0, 1);
    let json = allocate_request(&f, si).header("content-type", "application/json");
    for (request, status) in [(no_upload_secret, 400), (json, 415)] {
        let response = f.raw.send_with(request, allocate_body(&[0], 10)).await.unwrap();
        assert_eq!(response.status, status);
        assert_eq!(response.headers.get("connection").unwrap(), "close", "{status}");
    }
    let response = f
        .raw
        .send_with(no_range, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    assert_eq!(response.status, 416);
    assert_eq!(response.headers.get("connection").unwrap(), "close");
    // Answers without a request body keep the connection.
    let response = get(&f, &format!("/storage/v1/immutable/{si}/0"), Some("bytes=0-9")).await;
    assert_eq!(response.status, 404);
    assert!(response.headers.get("connection").is_none());
}
