//! Property test: random and malformed requests (methods, paths, credentials, secrets, media types,
//! ranges, CBOR and non-CBOR bodies) never make the HTTPS storage server fail internally (no 500),
//! never change existing shares, and leave it answering normally.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use ciborium::value::Value;
use data_encoding::BASE64;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use storage::api::{TestWriteVectors, WriteVector};
use storage::server::{StorageConfig, StorageServer};
use storage::testing::{
    HttpsTestServer, RawClient, lease_secrets, pattern, storage_index, upload_secret, write_enabler,
};
use storage::{ShareKind, StorageClient, StorageIndex};

/// A request to send, before the storage indexes and credentials are filled in.
#[derive(Debug, Clone)]
struct Spec {
    /// `None`: the method the path's endpoint takes.
    method: Option<&'static str>,
    path: PathSpec,
    authorization: Auth,
    /// `None`: the secrets the endpoint requires, with fitting sizes and the given fill byte.
    secrets: Result<u8, Vec<SecretSpec>>,
    content_type: Option<String>,
    accept: Option<String>,
    range: Option<String>,
    content_range: Option<String>,
    body: Vec<u8>,
}

#[derive(Debug, Clone)]
enum PathSpec {
    Version,
    Status,
    Lease(Segment),
    Kind { mutable: bool, si: Segment, rest: Rest },
    Junk(String),
}

#[derive(Debug, Clone)]
enum Segment {
    /// The storage index holding the immutable share.
    Immutable,
    /// The storage index holding the mutable share.
    Mutable,
    Other(u8),
    Junk(String),
}

#[derive(Debug, Clone)]
enum Rest {
    None,
    Shares,
    ReadTestWrite,
    Share(String),
    Abort(String),
    Corrupt(String),
}

#[derive(Debug, Clone)]
enum Auth {
    Valid,
    Missing,
    Junk(String),
}

#[derive(Debug, Clone)]
enum SecretSpec {
    Kind(&'static str, Vec<u8>),
    Junk(String),
}

fn printable() -> impl Strategy<Value = String> {
    "[ -~]{0,40}"
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        3 => Just(Segment::Immutable),
        3 => Just(Segment::Mutable),
        1 => any::<u8>().prop_map(Segment::Other),
        1 => "[a-z2-7]{20,30}|[A-Z0-9%._-]{0,30}".prop_map(Segment::Junk),
    ]
}

fn shnum() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[0-3]", 1 => "[0-9]{1,7}", 1 => "[a-z%.-]{1,5}"]
}

fn path() -> impl Strategy<Value = PathSpec> {
    let rest = prop_oneof![
        Just(Rest::None),
        Just(Rest::Shares),
        Just(Rest::ReadTestWrite),
        shnum().prop_map(Rest::Share),
        shnum().prop_map(Rest::Abort),
        shnum().prop_map(Rest::Corrupt),
    ];
    prop_oneof![
        1 => Just(PathSpec::Version),
        1 => Just(PathSpec::Status),
        2 => segment().prop_map(PathSpec::Lease),
        8 => (any::<bool>(), segment(), rest).prop_map(|(mutable, si, rest)| PathSpec::Kind { mutable, si, rest }),
        1 => "/[a-zA-Z0-9/._%-]{0,60}".prop_map(PathSpec::Junk),
    ]
}

fn secret() -> impl Strategy<Value = SecretSpec> {
    let kind = prop_oneof![
        Just("lease-renew-secret"),
        Just("lease-cancel-secret"),
        Just("upload-secret"),
        Just("write-enabler"),
    ];
    prop_oneof![
        4 => (kind, prop_oneof![Just(32usize), Just(20usize), 0usize..40]).prop_flat_map(|(k, n)| {
            proptest::collection::vec(any::<u8>(), n).prop_map(move |v| SecretSpec::Kind(k, v))
        }),
        1 => printable().prop_map(SecretSpec::Junk),
    ]
}

fn cbor_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|n| Value::Integer(n.into())),
        (0u64..300).prop_map(|n| Value::Integer(n.into())),
        any::<i64>().prop_map(|n| Value::Integer(n.into())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        prop_oneof![
            Just("share-numbers"),
            Just("allocated-size"),
            Just("reason"),
            Just("test-write-vectors"),
            Just("read-vector"),
            Just("test"),
            Just("write"),
            Just("new-length"),
            Just("offset"),
            Just("size"),
            Just("specimen"),
            Just("data"),
        ]
        .prop_map(|s| Value::Text(s.to_owned())),
        printable().prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|v| Value::Tag(258, Box::new(Value::Array(v)))),
            proptest::collection::vec((inner.clone(), inner), 0..5).prop_map(Value::Map),
        ]
    })
}

/// Bodies that are well-formed for some endpoint, with random numbers in them.
fn plausible_body() -> impl Strategy<Value = Value> {
    let text = |s: &str| Value::Text(s.to_owned());
    let int = |n: u64| Value::Integer(n.into());
    prop_oneof![
        (proptest::collection::vec(0u64..8, 0..4), 0u64..5000).prop_map(move |(shares, size)| Value::Map(
            vec![
                (
                    text("share-numbers"),
                    Value::Tag(258, Box::new(Value::Array(shares.into_iter().map(int).collect())))
                ),
                (text("allocated-size"), int(size)),
            ]
        )),
        printable().prop_map(move |reason| Value::Map(vec![(text("reason"), Value::Text(reason))])),
        (
            0u64..4,
            prop_oneof![4 => 0u64..5000, 1 => any::<u64>(), 1 => Just(u64::MAX)],
            proptest::collection::vec(any::<u8>(), 0..20),
            prop_oneof![
                Just(None),
                (0u64..5000).prop_map(Some),
                any::<u64>().prop_map(Some)
            ],
        )
            .prop_map(move |(shnum, offset, data, new_length)| Value::Map(vec![
                (
                    text("test-write-vectors"),
                    Value::Map(vec![(
                        int(shnum),
                        Value::Map(vec![
                            (text("test"), Value::Array(vec![])),
                            (
                                text("write"),
                                Value::Array(vec![Value::Map(vec![
                                    (text("offset"), int(offset)),
                                    (text("data"), Value::Bytes(data))
                                ])])
                            ),
                            (text("new-length"), new_length.map_or(Value::Null, int)),
                        ]),
                    )]),
                ),
                (
                    text("read-vector"),
                    Value::Array(vec![Value::Map(vec![
                        (text("offset"), int(0)),
                        (text("size"), int(10))
                    ])])
                ),
            ])),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let encode = |value: Value| {
        let mut out = Vec::new();
        ciborium::into_writer(&value, &mut out).unwrap();
        out
    };
    prop_oneof![
        1 => Just(Vec::new()),
        2 => proptest::collection::vec(any::<u8>(), 0..300),
        3 => cbor_value().prop_map(encode),
        3 => plausible_body().prop_map(encode),
    ]
}

fn header_choice(choices: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        2 => proptest::sample::select(choices).prop_map(|s| Some(s.to_owned())),
        1 => printable().prop_map(Some),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![
            3 => Just(None),
            1 => proptest::sample::select(&["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"][..]).prop_map(Some),
        ],
        path(),
        prop_oneof![6 => Just(Auth::Valid), 1 => Just(Auth::Missing), 1 => printable().prop_map(Auth::Junk)],
        prop_oneof![2 => any::<u8>().prop_map(Ok), 1 => proptest::collection::vec(secret(), 0..4).prop_map(Err)],
        header_choice(&["application/cbor", "application/json", "application/octet-stream"]),
        header_choice(&[
            "application/cbor",
            "*/*",
            "application/json",
            "text/html;q=0.9, */*;q=0",
        ]),
        header_choice(&[
            "bytes=0-9",
            "bytes=0-999999",
            "bytes=5-",
            "bytes=-5",
            "bytes=0-1,4-5",
            "bytes=99999-100000",
        ]),
        header_choice(&[
            "bytes 0-9/*",
            "bytes 0-0/*",
            "bytes 5-1/*",
            "bytes */10",
            "bytes 0-99999999999/*",
        ]),
        body(),
    )
        .prop_map(
            |(method, path, authorization, secrets, content_type, accept, range, content_range, body)| Spec {
                method,
                path,
                authorization,
                secrets,
                content_type,
                accept,
                range,
                content_range,
                body,
            },
        )
}

const IMMUTABLE_SI: u8 = 1;
const MUTABLE_SI: u8 = 2;

fn segment_text(segment: &Segment) -> String {
    match segment {
        Segment::Immutable => storage_index(IMMUTABLE_SI).to_string(),
        Segment::Mutable => storage_index(MUTABLE_SI).to_string(),
        Segment::Other(n) => storage_index(n.wrapping_add(100)).to_string(),
        Segment::Junk(text) => text.clone(),
    }
}

fn build(raw: &RawClient, spec: &Spec) -> hyper::Request<http_body_util::Full<Bytes>> {
    let path = match &spec.path {
        PathSpec::Version => "/storage/v1/version".to_owned(),
        PathSpec::Status => "/storage/v1/tessera/status".to_owned(),
        PathSpec::Lease(si) => format!("/storage/v1/lease/{}", segment_text(si)),
        PathSpec::Kind { mutable, si, rest } => {
            let kind = if *mutable { "mutable" } else { "immutable" };
            let si = segment_text(si);
            match rest {
                Rest::None => format!("/storage/v1/{kind}/{si}"),
                Rest::Shares => format!("/storage/v1/{kind}/{si}/shares"),
                Rest::ReadTestWrite => format!("/storage/v1/{kind}/{si}/read-test-write"),
                Rest::Share(n) => format!("/storage/v1/{kind}/{si}/{n}"),
                Rest::Abort(n) => format!("/storage/v1/{kind}/{si}/{n}/abort"),
                Rest::Corrupt(n) => format!("/storage/v1/{kind}/{si}/{n}/corrupt"),
            }
        }
        PathSpec::Junk(path) => path.clone(),
    };
    let fitting = match &spec.path {
        PathSpec::Version | PathSpec::Status | PathSpec::Junk(_) => "GET",
        PathSpec::Lease(_) => "PUT",
        PathSpec::Kind { rest, .. } => match rest {
            Rest::None | Rest::ReadTestWrite | Rest::Corrupt(_) => "POST",
            Rest::Shares => "GET",
            Rest::Share(_) if spec.content_range.is_some() => "PATCH",
            Rest::Share(_) => "GET",
            Rest::Abort(_) => "PUT",
        },
    };
    let method = spec.method.unwrap_or(fitting);
    let mut request = raw.request(method, &path);
    match &spec.authorization {
        Auth::Valid => request = request.header("authorization", raw.authorization()),
        Auth::Missing => {}
        Auth::Junk(value) => request = request.header("authorization", value.trim()),
    }
    let secrets = match &spec.secrets {
        Err(secrets) => secrets.clone(),
        Ok(fill) => {
            let lease = [
                SecretSpec::Kind("lease-renew-secret", vec![*fill; 32]),
                SecretSpec::Kind("lease-cancel-secret", vec![*fill; 32]),
            ];
            let upload = SecretSpec::Kind("upload-secret", vec![*fill; 20]);
            match (method, &spec.path) {
                (_, PathSpec::Lease(_)) => lease.to_vec(),
                ("POST", PathSpec::Kind { rest: Rest::None, .. }) => [lease.to_vec(), vec![upload]].concat(),
                (
                    "POST",
                    PathSpec::Kind {
                        rest: Rest::ReadTestWrite,
                        ..
                    },
                ) => [
                    lease.to_vec(),
                    vec![SecretSpec::Kind("write-enabler", vec![*fill; 32])],
                ]
                .concat(),
                ("PATCH" | "PUT", PathSpec::Kind { .. }) => vec![upload],
                _ => Vec::new(),
            }
        }
    };
    for secret in &secrets {
        let value = match secret {
            SecretSpec::Kind(kind, bytes) => format!("{kind} {}", BASE64.encode(bytes)),
            SecretSpec::Junk(text) => text.trim().to_owned(),
        };
        request = request.header("x-tahoe-authorization", value);
    }
    for (name, value) in [
        ("content-type", &spec.content_type),
        ("accept", &spec.accept),
        ("range", &spec.range),
        ("content-range", &spec.content_range),
    ] {
        if let Some(value) = value {
            request = request.header(name, value.trim());
        }
    }
    request
        .body(http_body_util::Full::new(Bytes::from(spec.body.clone())))
        .unwrap()
}

#[test]
fn random_requests_never_break_the_server_or_its_shares() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(StorageServer::open(StorageConfig::new(dir.path().join("storage"))).unwrap());
    let server = runtime.block_on(HttpsTestServer::start(store.clone())).unwrap();
    let client = server.client();
    let (immutable_si, mutable_si): (StorageIndex, StorageIndex) =
        (storage_index(IMMUTABLE_SI), storage_index(MUTABLE_SI));
    let immutable_data = pattern(3000, 1);
    let mutable_data = pattern(500, 2);
    runtime.block_on(async {
        client
            .allocate_buckets(
                immutable_si,
                &lease_secrets(1),
                &upload_secret(1),
                &BTreeSet::from([0, 1]),
                3000,
            )
            .await
            .unwrap();
        for shnum in [0, 1] {
            client
                .write_share(
                    immutable_si,
                    shnum,
                    &upload_secret(1),
                    0,
                    Bytes::from(immutable_data.clone()),
                )
                .await
                .unwrap();
        }
        let tw = [(
            0,
            TestWriteVectors {
                write: vec![WriteVector {
                    offset: 0,
                    data: mutable_data.clone(),
                }],
                ..Default::default()
            },
        )]
        .into();
        // A write enabler the fuzzer cannot produce (it only sends random bytes).
        assert!(
            client
                .read_test_write(mutable_si, &write_enabler(77), &lease_secrets(1), &tw, &[])
                .await
                .unwrap()
                .success
        );
    });

    let raw = server.raw();
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    runner
        .run(&spec(), |spec| {
            let response = runtime.block_on(raw.send(build(&raw, &spec))).unwrap();
            *statuses
                .lock()
                .unwrap()
                .entry(response.status.as_u16())
                .or_default() += 1;
            // 507 (no space) is a legitimate answer to a huge mutable write; 500 never is.
            prop_assert!(
                response.status.as_u16() < 500 || response.status.as_u16() == 507,
                "{} for {spec:?}: {}",
                response.status,
                response.text()
            );
            Ok(())
        })
        .unwrap();
    let statuses = statuses.into_inner().unwrap();
    eprintln!("statuses seen: {statuses:?}");
    assert!(
        statuses.len() >= 6,
        "the generator should reach many outcomes: {statuses:?}"
    );

    runtime.block_on(async {
        for shnum in [0, 1] {
            let read = client
                .read_share(ShareKind::Immutable, immutable_si, shnum, 0, 10_000)
                .await
                .unwrap();
            assert!(read == immutable_data, "immutable share {shnum} changed");
        }
        let read = client
            .read_share(ShareKind::Mutable, mutable_si, 0, 0, 10_000)
            .await
            .unwrap();
        assert!(read == mutable_data, "mutable share changed");
        assert_eq!(
            client
                .list_shares(ShareKind::Immutable, immutable_si)
                .await
                .unwrap(),
            BTreeSet::from([0, 1])
        );
        assert_eq!(
            client.list_shares(ShareKind::Mutable, mutable_si).await.unwrap(),
            BTreeSet::from([0])
        );
        client.version().await.unwrap();
    });
    runtime.block_on(server.shutdown()).unwrap();
}
