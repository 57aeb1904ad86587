//! The fuzz targets that need a server: the storage protocol's router over a real
//! `StorageServer`, share containers on a real server's disk, the web gateway's router over an
//! in-process grid, and FTP command lines sent to a real FTP server over TCP. Each target's server
//! is made once per process (a temporary directory, 127.0.0.1 only) and kept; requests are built
//! from the input through `arbitrary`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use filenode::grid::Grid;
use filenode::grid::upload::UploadParams;
use http_body_util::BodyExt;
use storage::api::{LeaseSecrets, ReadVector, TestVector, TestWriteVectors, WriteVector};
use storage::server::{StorageConfig, StorageServer};
use storage::{ShareKind, StorageIndex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::grid::TestGrid;

/// The most of a response body a target reads (a body may legitimately be a whole share).
const MAX_BODY: usize = 1 << 20;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Reads at most [`MAX_BODY`] bytes of a response.
async fn read_body(body: Body) -> Vec<u8> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
            if out.len() >= MAX_BODY {
                break;
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A value that is usually absent (one input byte in 16 makes it present), for the parts of a
/// request that are mostly right: a fuzzed request that is always broken in five ways never reaches
/// the handler.
#[derive(Debug)]
struct Rare<T>(Option<T>);

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Rare<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Rare(if u.arbitrary::<u8>()? >= 240 {
            Some(u.arbitrary()?)
        } else {
            None
        }))
    }
}

// ---- Storage: the router ----

const SWISSNUM: &str = "fuzz-swissnum-not-a-secret-elsewhere";
const RENEW: [u8; 32] = [0x11; 32];
const CANCEL: [u8; 32] = [0x22; 32];
const UPLOAD: [u8; 32] = [0x33; 32];
const WRITE_ENABLER: [u8; 32] = [0x44; 32];

struct StorageFixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
}

fn storage_fixture() -> &'static StorageFixture {
    static FIXTURE: OnceLock<StorageFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server =
            StorageServer::open(StorageConfig::new(dir.path().join("storage"))).expect("a storage server");
        let app = storage::http::router(Arc::new(server), SWISSNUM.to_owned());
        StorageFixture { _dir: dir, app }
    })
}

#[derive(Debug, Arbitrary)]
enum Endpoint {
    Version,
    Allocate,
    ListImmutable,
    ReadImmutable,
    WriteImmutable,
    Abort,
    CorruptImmutable,
    ReadTestWrite,
    ListMutable,
    ReadMutable,
    CorruptMutable,
    Lease,
    Status,
    /// Any path under the prefix, any method.
    Raw {
        method: u8,
        path: String,
    },
}

/// A header value: well-formed numbers, or any text, or any bytes.
#[derive(Debug, Arbitrary)]
enum RangeHeader {
    Bytes {
        start: u32,
        end: u32,
    },
    Total {
        start: u64,
        end: u64,
        total: Option<u64>,
    },
    Text(String),
    Raw(Vec<u8>),
}

impl RangeHeader {
    fn value(&self, content_range: bool) -> Vec<u8> {
        match self {
            RangeHeader::Bytes { start, end } if content_range => {
                format!("bytes {start}-{end}/*").into_bytes()
            }
            RangeHeader::Bytes { start, end } => format!("bytes={start}-{end}").into_bytes(),
            RangeHeader::Total { start, end, total } => {
                let total = total.map_or("*".to_owned(), |t| t.to_string());
                if content_range {
                    format!("bytes {start}-{end}/{total}").into_bytes()
                } else {
                    format!("bytes={start}-{end}").into_bytes()
                }
            }
            RangeHeader::Text(text) => text.clone().into_bytes(),
            RangeHeader::Raw(bytes) => bytes.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Secrets {
    /// Exactly the ones the endpoint needs, with the fixture's values.
    ForEndpoint,
    /// Any subset of the four kinds (bit i: kind i), with the fixture's values.
    Kinds(u8),
    /// Header values as given.
    Raw(Vec<String>),
}

#[derive(Debug, Clone, Arbitrary)]
struct TestWrite {
    shnum: u8,
    tests: Vec<(u16, u8, Vec<u8>)>,
    writes: Vec<(u16, Vec<u8>)>,
    new_length: Option<u16>,
}

#[derive(Debug, Arbitrary)]
enum StorageBody {
    Empty,
    Raw(Vec<u8>),
    Allocate {
        shares: BTreeSet<u8>,
        size: u32,
    },
    ReadTestWrite {
        vectors: Vec<TestWrite>,
        read: Vec<(u16, u16)>,
    },
    Corrupt(String),
}

/// The body and `Content-Range` an endpoint expects, from structured values.
#[derive(Debug, Arbitrary)]
struct Natural {
    shares: BTreeSet<u8>,
    size: u16,
    vectors: Vec<TestWrite>,
    read: Vec<(u16, u16)>,
    offset: u16,
    data: Vec<u8>,
    reason: String,
}

#[derive(Debug, Arbitrary)]
struct StorageRequest {
    endpoint: Endpoint,
    /// One of four storage indexes, so that requests meet each other's shares.
    index: u8,
    shnum: u8,
    unauthorized: Rare<()>,
    /// Absent: the endpoint's secrets.
    secrets: Rare<Secrets>,
    range: Option<RangeHeader>,
    /// Absent: the natural body's range, for a `PATCH`.
    content_range: Rare<RangeHeader>,
    content_type: Rare<String>,
    accept: Rare<String>,
    /// Absent: the natural body.
    body: Rare<StorageBody>,
    natural: Natural,
}

fn secret_kinds(endpoint: &Endpoint) -> &'static [u8] {
    match endpoint {
        Endpoint::Allocate => &[0, 1, 2],
        Endpoint::WriteImmutable | Endpoint::Abort => &[2],
        Endpoint::ReadTestWrite => &[0, 1, 3],
        Endpoint::Lease => &[0, 1],
        _ => &[],
    }
}

fn secret_value(kind: u8) -> &'static [u8; 32] {
    [&RENEW, &CANCEL, &UPLOAD, &WRITE_ENABLER][usize::from(kind % 4)]
}

impl StorageRequest {
    fn build(&self) -> Option<Request<Body>> {
        let si = StorageIndex([self.index % 4; 16]);
        let shnum = self.shnum % 12;
        let (method, path) = match &self.endpoint {
            Endpoint::Version => (Method::GET, "version".to_owned()),
            Endpoint::Allocate => (Method::POST, format!("immutable/{si}")),
            Endpoint::ListImmutable => (Method::GET, format!("immutable/{si}/shares")),
            Endpoint::ReadImmutable => (Method::GET, format!("immutable/{si}/{shnum}")),
            Endpoint::WriteImmutable => (Method::PATCH, format!("immutable/{si}/{shnum}")),
            Endpoint::Abort => (Method::PUT, format!("immutable/{si}/{shnum}/abort")),
            Endpoint::CorruptImmutable => (Method::POST, format!("immutable/{si}/{shnum}/corrupt")),
            Endpoint::ReadTestWrite => (Method::POST, format!("mutable/{si}/read-test-write")),
            Endpoint::ListMutable => (Method::GET, format!("mutable/{si}/shares")),
            Endpoint::ReadMutable => (Method::GET, format!("mutable/{si}/{shnum}")),
            Endpoint::CorruptMutable => (Method::POST, format!("mutable/{si}/{shnum}/corrupt")),
            Endpoint::Lease => (Method::PUT, format!("lease/{si}")),
            Endpoint::Status => (Method::GET, "tessera/status".to_owned()),
            Endpoint::Raw { method, path } => (
                [
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                    Method::HEAD,
                ][usize::from(method % 6)]
                .clone(),
                path.clone(),
            ),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/storage/v1/{path}"));
        if self.unauthorized.0.is_none() {
            request = request.header("authorization", storage::http::fuzzing::authorization(SWISSNUM));
        }
        match self.secrets.0.as_ref().unwrap_or(&Secrets::ForEndpoint) {
            Secrets::ForEndpoint => {
                for &kind in secret_kinds(&self.endpoint) {
                    request = request.header(
                        "x-tahoe-authorization",
                        storage::http::fuzzing::secret_header(kind, secret_value(kind)),
                    );
                }
            }
            Secrets::Kinds(mask) => {
                for kind in (0..4).filter(|k| mask & (1 << k) != 0) {
                    request = request.header(
                        "x-tahoe-authorization",
                        storage::http::fuzzing::secret_header(kind, secret_value(kind)),
                    );
                }
            }
            Secrets::Raw(values) => {
                for value in values {
                    request = request.header("x-tahoe-authorization", value.as_bytes());
                }
            }
        }
        if let Some(range) = &self.range {
            request = request.header("range", range.value(false));
        }
        let natural = &self.natural;
        let body = match (&self.body.0, &self.endpoint) {
            (Some(body), _) => body,
            (None, Endpoint::Allocate) => &StorageBody::Allocate {
                shares: natural.shares.clone(),
                size: u32::from(natural.size),
            },
            (None, Endpoint::ReadTestWrite) => &StorageBody::ReadTestWrite {
                vectors: natural.vectors.clone(),
                read: natural.read.clone(),
            },
            (None, Endpoint::CorruptImmutable | Endpoint::CorruptMutable) => {
                &StorageBody::Corrupt(natural.reason.clone())
            }
            (None, Endpoint::WriteImmutable | Endpoint::Raw { .. }) => {
                &StorageBody::Raw(natural.data.clone())
            }
            (None, _) => &StorageBody::Empty,
        };
        match &self.content_range.0 {
            Some(range) => request = request.header("content-range", range.value(true)),
            None if matches!(self.endpoint, Endpoint::WriteImmutable) && !natural.data.is_empty() => {
                let start = u64::from(natural.offset);
                let end = start + natural.data.len() as u64 - 1;
                request = request.header("content-range", format!("bytes {start}-{end}/*"));
            }
            None => {}
        }
        let cbor = matches!(
            body,
            StorageBody::Allocate { .. } | StorageBody::ReadTestWrite { .. } | StorageBody::Corrupt(_)
        );
        match &self.content_type.0 {
            Some(value) => request = request.header("content-type", value.as_bytes()),
            None if cbor => request = request.header("content-type", "application/cbor"),
            None if matches!(body, StorageBody::Raw(_)) => {
                request = request.header("content-type", "application/octet-stream")
            }
            None => {}
        }
        if let Some(value) = &self.accept.0 {
            request = request.header("accept", value.as_bytes());
        }
        let body = match body {
            StorageBody::Empty => Vec::new(),
            StorageBody::Raw(bytes) => bytes.clone(),
            StorageBody::Allocate { shares, size } => {
                let shares: BTreeSet<u16> = shares.iter().map(|&s| u16::from(s)).collect();
                storage::http::fuzzing::allocate_body(&shares, u64::from(*size))
            }
            StorageBody::ReadTestWrite { vectors, read } => {
                let mut tw = BTreeMap::new();
                for v in vectors {
                    tw.insert(
                        u16::from(v.shnum % 12),
                        TestWriteVectors {
                            test: v
                                .tests
                                .iter()
                                .map(|(offset, size, specimen)| TestVector {
                                    offset: u64::from(*offset),
                                    size: u64::from(*size),
                                    specimen: specimen.clone(),
                                })
                                .collect(),
                            write: v
                                .writes
                                .iter()
                                .map(|(offset, data)| WriteVector {
                                    offset: u64::from(*offset),
                                    data: data.clone(),
                                })
                                .collect(),
                            new_length: v.new_length.map(u64::from),
                        },
                    );
                }
                let read: Vec<ReadVector> = read
                    .iter()
                    .map(|&(offset, size)| ReadVector {
                        offset: u64::from(offset),
                        size: u64::from(size),
                    })
                    .collect();
                storage::http::fuzzing::rtw_body(&tw, &read)
            }
            StorageBody::Corrupt(reason) => storage::http::fuzzing::corrupt_body(reason),
        };
        request.body(Body::from(body)).ok()
    }
}

/// The storage protocol's router over a real `StorageServer` (up to four requests per input, over
/// four storage indexes, so that uploads, reads, mutable writes and leases meet): every endpoint
/// with valid or broken authorization and secrets, CBOR bodies built from structured values or
/// raw, and `Range`/`Content-Range` headers well-formed or not. No answer is a 500, and no answer
/// carries the swissnum or a secret.
pub fn storage_http(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok(requests) = input.arbitrary_iter::<StorageRequest>() else {
        return;
    };
    let requests: Vec<StorageRequest> = requests.take(4).filter_map(Result::ok).collect();
    let fixture = storage_fixture();
    runtime().block_on(async {
        for request in requests {
            let Some(http) = request.build() else {
                continue;
            };
            let response = fixture
                .app
                .clone()
                .oneshot(http)
                .await
                .expect("the router is infallible");
            let status = response.status();
            let body = read_body(response.into_body()).await;
            assert_ne!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 for {request:?}: {}",
                String::from_utf8_lossy(&body)
            );
            let auth = storage::http::fuzzing::authorization(SWISSNUM);
            for secret in [
                SWISSNUM.as_bytes(),
                auth.as_bytes(),
                &storage::http::fuzzing::secret_header(2, &UPLOAD).into_bytes(),
            ] {
                assert!(!contains(&body, secret), "a response echoes a secret");
            }
        }
    });
}

// ---- Storage: share containers on disk ----

struct ContainerFixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    server: StorageServer,
}

fn container_fixture() -> &'static ContainerFixture {
    static FIXTURE: OnceLock<ContainerFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().join("storage");
        let server = StorageServer::open(StorageConfig::new(root.clone())).expect("a storage server");
        ContainerFixture {
            _dir: dir,
            root,
            server,
        }
    })
}

/// See [`super::share_container`]. The first 8 bytes give the offset of the ranged read.
pub(super) fn share_container(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (offset, container) = data.split_at(8);
    let offset = u64::from_be_bytes(offset.try_into().expect("8 bytes"));
    let fixture = container_fixture();
    let si = StorageIndex([0xc0; 16]);
    let dir = fixture.root.join("shares").join(si.prefix()).join(si.to_string());
    std::fs::create_dir_all(&dir).expect("create the share directory");
    std::fs::write(dir.join("0"), container).expect("write the share file");
    let server = &fixture.server;
    let lease = LeaseSecrets {
        renew: RENEW,
        cancel: CANCEL,
    };
    for kind in [ShareKind::Immutable, ShareKind::Mutable] {
        let _ = server.list_shares(kind, si);
        if let Ok(len) = server.share_length(kind, si, 0) {
            if let Ok(whole) = server.read_share(kind, si, 0, 0, len.min(1 << 16)) {
                assert!(whole.len() as u64 <= len);
            }
            if let Ok(part) = server.read_share(kind, si, 0, offset, 1 << 12) {
                assert!(part.len() as u64 <= (1 << 12));
            }
        }
    }
    let _ = server.add_or_renew_lease(si, &lease);
    let _ = server.read_test_write(
        si,
        &storage::api::WriteEnabler(WRITE_ENABLER),
        &lease,
        &BTreeMap::new(),
        &[ReadVector {
            offset: offset % (1 << 20),
            size: 1 << 10,
        }],
    );
    let _ = std::fs::remove_file(dir.join("0"));
}

// ---- The web gateway ----

struct WebFixture {
    _grid: TestGrid,
    app: axum::Router,
    /// A 20 000-byte immutable file.
    file_cap: String,
    /// An immutable directory holding that file as `file`.
    dir_cap: String,
}

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    (status, read_body(response.into_body()).await)
}

fn web_fixture() -> &'static WebFixture {
    static FIXTURE: OnceLock<WebFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        runtime().block_on(async {
            let grid = TestGrid::new(4);
            let params = UploadParams {
                needed: 2,
                happy: 2,
                total: 4,
                max_segment_size: 4096,
            };
            let client = Arc::new(Grid::new(grid.secrets.clone(), params));
            client.set_servers(grid.entries());
            let app = frontends::web::router(frontends::web::WebState::new(client, "fuzz"));
            let content: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let (status, body) = send(
                &app,
                Request::put("/uri").body(Body::from(content)).expect("request"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "fixture upload");
            let file_cap = String::from_utf8(body).expect("a cap");
            let children =
                format!(r#"{{"file": ["filenode", {{"ro_uri": "{file_cap}", "metadata": {{}}}}]}}"#);
            let (status, body) = send(
                &app,
                Request::post("/uri?t=mkdir-immutable")
                    .body(Body::from(children))
                    .expect("request"),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::OK,
                "fixture mkdir-immutable: {}",
                String::from_utf8_lossy(&body)
            );
            let dir_cap = String::from_utf8(body).expect("a cap");
            WebFixture {
                _grid: grid,
                app,
                file_cap,
                dir_cap,
            }
        })
    })
}

#[derive(Debug, Arbitrary)]
enum PartName {
    File,
    T,
    Name,
    Format,
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Part {
    name: PartName,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum WebRequest {
    /// `POST /uri?t=upload` (or a directory's `?t=upload`) with a multipart body built from parts.
    Multipart {
        to_dir: bool,
        /// Absent: a well-formed boundary.
        boundary: Rare<String>,
        parts: Vec<Part>,
        /// Bytes appended after the closing boundary (or instead of it).
        tail: Vec<u8>,
        close: bool,
    },
    /// A directory `POST` with any content type and body (forms: urlencoded, multipart, or junk).
    DirPost {
        t: DirAction,
        query: String,
        content_type: Rare<String>,
        body: Vec<u8>,
    },
    /// `POST /uri?t=mkdir-immutable` with a children JSON body.
    MkdirImmutable(Vec<u8>),
    /// `GET`/`HEAD` of the file with `Range`, `If-Range`, `If-None-Match` and a query.
    Download {
        head: bool,
        range: Option<Vec<u8>>,
        if_range: Option<Vec<u8>>,
        if_none_match: Option<Vec<u8>>,
        query: String,
    },
    /// `GET` of the directory or a path under it with a query (`t=json`, `t=info`, ...).
    DirGet {
        child: bool,
        path: Rare<String>,
        t: Option<ViewT>,
        query: Rare<String>,
    },
    /// `PUT /uri` of an immutable file.
    Put(Vec<u8>),
}

/// The `t=` of a directory `POST` (none that makes a mutable object).
#[derive(Debug, Arbitrary)]
enum DirAction {
    Upload,
    Uri,
    SetChildren,
    Unlink,
    Delete,
    Rename,
    Relink,
    Check,
    Other(String),
}

impl DirAction {
    fn text(&self) -> String {
        match self {
            DirAction::Upload => "upload".into(),
            DirAction::Uri => "uri".into(),
            DirAction::SetChildren => "set_children".into(),
            DirAction::Unlink => "unlink".into(),
            DirAction::Delete => "delete".into(),
            DirAction::Rename => "rename".into(),
            DirAction::Relink => "relink".into(),
            DirAction::Check => "check".into(),
            DirAction::Other(text) => query_text(text),
        }
    }
}

/// The `t=` of a `GET`.
#[derive(Debug, Arbitrary)]
enum ViewT {
    Json,
    Info,
    Uri,
    ReadonlyUri,
    Check,
    Other(String),
}

fn query_text(text: &str) -> String {
    // Keep the request inside the fixture's immutable objects: nothing makes a mutable file or
    // directory (an RSA key each), and nothing names a different cap than the fixture's.
    text.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '#')
        .collect::<String>()
        .replace("format", "fmt")
        .replace("mkdir", "mk")
}

impl WebRequest {
    fn build(&self, fixture: &WebFixture) -> Option<Request<Body>> {
        let dir = &fixture.dir_cap;
        let file = &fixture.file_cap;
        match self {
            WebRequest::Multipart {
                to_dir,
                boundary,
                parts,
                tail,
                close,
            } => {
                let boundary = boundary.0.clone().unwrap_or_else(|| "fuzzboundary".to_owned());
                let mut body = Vec::new();
                for part in parts {
                    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                    body.extend_from_slice(b"Content-Disposition: form-data; name=\"");
                    let name = match &part.name {
                        PartName::File => "file",
                        PartName::T => "t",
                        PartName::Name => "name",
                        PartName::Format => "fmt",
                        PartName::Other(name) => name,
                    };
                    body.extend_from_slice(name.as_bytes());
                    body.push(b'"');
                    if let Some(filename) = &part.filename {
                        body.extend_from_slice(b"; filename=\"");
                        body.extend_from_slice(filename.as_bytes());
                        body.push(b'"');
                    }
                    body.extend_from_slice(b"\r\n");
                    if let Some(content_type) = &part.content_type {
                        body.extend_from_slice(b"Content-Type: ");
                        body.extend_from_slice(content_type.as_bytes());
                        body.extend_from_slice(b"\r\n");
                    }
                    body.extend_from_slice(b"\r\n");
                    body.extend_from_slice(&part.data);
                    body.extend_from_slice(b"\r\n");
                }
                if *close {
                    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                }
                body.extend_from_slice(tail);
                let uri = if *to_dir {
                    format!("/uri/{dir}/?t=upload")
                } else {
                    "/uri?t=upload".to_owned()
                };
                Request::post(uri)
                    .header(
                        "content-type",
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(Body::from(body))
                    .ok()
            }
            WebRequest::DirPost {
                t,
                query,
                content_type,
                body,
            } => {
                let content_type = content_type
                    .0
                    .clone()
                    .unwrap_or_else(|| "application/x-www-form-urlencoded".to_owned());
                Request::post(format!("/uri/{dir}/?t={}&{}", t.text(), query_text(query)))
                    .header("content-type", content_type.as_bytes())
                    .body(Body::from(body.clone()))
                    .ok()
            }
            WebRequest::MkdirImmutable(body) => Request::post("/uri?t=mkdir-immutable")
                .body(Body::from(body.clone()))
                .ok(),
            WebRequest::Download {
                head,
                range,
                if_range,
                if_none_match,
                query,
            } => {
                let mut request = Request::builder()
                    .method(if *head { Method::HEAD } else { Method::GET })
                    .uri(format!("/uri/{file}?{}", query_text(query)));
                for (name, value) in [
                    ("range", range),
                    ("if-range", if_range),
                    ("if-none-match", if_none_match),
                ] {
                    if let Some(value) = value {
                        request = request.header(name, value.as_slice());
                    }
                }
                request.body(Body::empty()).ok()
            }
            WebRequest::DirGet {
                child,
                path,
                t,
                query,
            } => {
                let path: String = match &path.0 {
                    Some(path) => path
                        .chars()
                        .filter(|c| c.is_ascii_graphic() && !matches!(c, '?' | '#'))
                        .collect(),
                    None if *child => "file".to_owned(),
                    None => String::new(),
                };
                let t = match t {
                    None => String::new(),
                    Some(ViewT::Json) => "t=json".into(),
                    Some(ViewT::Info) => "t=info".into(),
                    Some(ViewT::Uri) => "t=uri".into(),
                    Some(ViewT::ReadonlyUri) => "t=readonly-uri".into(),
                    Some(ViewT::Check) => "t=check&output=JSON".into(),
                    Some(ViewT::Other(text)) => format!("t={}", query_text(text)),
                };
                let extra = query.0.as_deref().map(query_text).unwrap_or_default();
                Request::get(format!("/uri/{dir}/{path}?{t}&{extra}"))
                    .body(Body::empty())
                    .ok()
            }
            WebRequest::Put(body) => Request::put("/uri").body(Body::from(body.clone())).ok(),
        }
    }
}

/// The web gateway's router over an in-process grid: multipart uploads (to `/uri` and into a
/// directory), form `POST`s of any content type to a directory, `mkdir-immutable` children JSON,
/// downloads with any `Range`/`If-Range`/`If-None-Match`, directory views. The fixture's
/// directory is immutable and the queries cannot ask for a mutable object, so each input costs no
/// RSA key. No answer is a 500.
pub fn web(data: &[u8]) {
    let Ok(request) = WebRequest::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let fixture = web_fixture();
    let Some(http) = request.build(fixture) else {
        return;
    };
    runtime().block_on(async {
        let (status, body) = send(&fixture.app, http).await;
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 for {request:?}: {}",
            String::from_utf8_lossy(&body)
        );
    });
}

// ---- FTP command lines ----

struct FtpFixture {
    _grid: TestGrid,
    _dir: tempfile::TempDir,
    address: std::net::SocketAddr,
}

/// The fixture account's password (its argon2id hash is in the fixture's accounts file).
const FTP_PASSWORD: &str = "fuzz password";

fn ftp_fixture() -> &'static FtpFixture {
    static FIXTURE: OnceLock<FtpFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        runtime().block_on(async {
            let grid = TestGrid::new(4);
            let params = UploadParams {
                needed: 2,
                happy: 2,
                total: 4,
                max_segment_size: 4096,
            };
            let client = Arc::new(Grid::new(grid.secrets.clone(), params));
            client.set_servers(grid.entries());
            // An immutable root: commands that would change it are refused after parsing.
            let root = client
                .create_immutable_directory(Vec::new())
                .await
                .expect("an immutable directory");
            let dir = tempfile::tempdir().expect("a temporary directory");
            let accounts = dir.path().join("accounts");
            let hash = frontends::accounts::hash_password(FTP_PASSWORD);
            std::fs::write(&accounts, format!("fuzz {hash} {}\n", root.cap()))
                .expect("write the accounts file");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            let address = listener.local_addr().expect("its address");
            let config = frontends::ftp::FtpConfig {
                grid: client,
                accounts: Arc::new(frontends::accounts::AccountsFile::new(accounts)),
                tls: frontends::ftp::TlsPolicy::Off,
                passive_ports: 0..=0,
                passive_host: None,
                idle_timeout: Duration::from_secs(2),
                failed_login_delay: Duration::ZERO,
                spool_dir: Some(dir.path().to_owned()),
                spool_quota: frontends::SpoolQuota::new(1 << 30),
                counters: frontends::Counters::new(),
            };
            tokio::spawn(frontends::ftp::serve(listener, config, std::future::pending()));
            FtpFixture {
                _grid: grid,
                _dir: dir,
                address,
            }
        })
    })
}

/// Whether `replies` ends a final reply: a line `DDD text` (a multi-line reply's last line has the
/// same shape; its other lines start `DDD-` or with a space).
fn has_final_reply(replies: &[u8]) -> bool {
    replies.split(|&b| b == b'\n').any(|line| {
        line.len() >= 4
            && line[..3].iter().all(u8::is_ascii_digit)
            && line[3] == b' '
            && !line[..3].starts_with(b"1")
    })
}

/// Command lines sent to a real FTP server over TCP (libunftp parses them; our authenticator and
/// backend act on them): after the greeting, optionally a good login (first byte odd), then the
/// input's lines one at a time (each waits for its reply, up to 2 s), then `QUIT`. `PASS` lines are dropped from the input (a
/// failed login costs an argon2id hash; the login limiter would then lock the fuzzer out), and so
/// the session must end within 10 s of the `QUIT`, whatever it was sent before.
pub fn ftp_session(data: &[u8]) {
    let Some((&mode, lines)) = data.split_first() else {
        return;
    };
    let mut script = Vec::new();
    for line in lines.split(|&b| b == b'\n') {
        let upper = line.trim_ascii_start().to_ascii_uppercase();
        if upper.starts_with(b"PASS") {
            continue;
        }
        script.extend_from_slice(line);
        script.push(b'\n');
    }
    let fixture = ftp_fixture();
    runtime().block_on(async {
        let mut stream = tokio::net::TcpStream::connect(fixture.address)
            .await
            .expect("connect to the FTP fixture");
        let mut replies = Vec::new();
        if mode & 1 == 1 {
            // Log in and wait for the answer (libunftp checks the password on a task of its own and
            // answers later commands "530" meanwhile).
            let login = format!("USER fuzz\r\nPASS {FTP_PASSWORD}\r\n");
            let _ = stream.write_all(login.as_bytes()).await;
            let logged_in = tokio::time::timeout(Duration::from_secs(10), async {
                let mut buffer = [0u8; 1024];
                while !contains(&replies, b"\n230 ") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => replies.extend_from_slice(&buffer[..n]),
                    }
                }
            })
            .await;
            assert!(
                logged_in.is_ok() && contains(&replies, b"\n230 "),
                "the fixture's login failed: {}",
                String::from_utf8_lossy(&replies)
            );
        }
        // One command at a time, as FTP clients speak (RFC 959: a command, then its reply): a
        // line gets up to 2 s for its final reply before the next is sent. (Pipelined commands
        // after a data command that found no data connection go unanswered in libunftp:
        // fuzz/findings/README.md.)
        for line in script.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if stream.write_all(line).await.is_err() || stream.write_all(b"\r\n").await.is_err() {
                break;
            }
            let seen = replies.len();
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let mut buffer = [0u8; 4096];
                while !has_final_reply(&replies[seen..]) {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if replies.len() < MAX_BODY {
                                replies.extend_from_slice(&buffer[..n]);
                            } else {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
        }
        let _ = stream.write_all(b"QUIT\r\n").await;
        let _ = stream.shutdown().await;
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buffer = [0u8; 4096];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if replies.len() < MAX_BODY {
                            replies.extend_from_slice(&buffer[..n]);
                        }
                    }
                }
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "the FTP session did not end within 10 s of QUIT: {}",
            String::from_utf8_lossy(&replies)
        );
        assert!(
            !contains(&replies, FTP_PASSWORD.as_bytes()),
            "a reply echoes the password"
        );
    });
}
