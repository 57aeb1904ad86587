//! The filesystem part of the web API (tahoe-interfaces.md §3.3): everything under
//! `/uri/$CAP[/path...]` — reading files and directories, uploading into paths, mutable files
//! (`PUT` to replace, `?offset=` to update), `t=mkdir`, `mkdir-with-children`, `mkdir-immutable`,
//! `t=uri`, `set_children`, `t=unlink`/`DELETE`, `t=rename`, `t=relink`, and `t=json` listings.
//!
//! Arguments come from the query string and, for `POST`, also from an urlencoded or multipart
//! form (query arguments win). Differences from Tahoe: writes through read-only caps are 403 with
//! a message (Tahoe: 500 and a traceback); an uncoordinated write is 409; `when_done` only
//! redirects within this gateway.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use filenode::cap::{Cap, DirCap, FileCap, MutableFormat};
use filenode::grid::mutable::chunks_from_read;
use filenode::node::{Child, DirNode, FileNode, Node, NodeError, Replace};
use futures::StreamExt;

use super::{WebError, WebState, download};
use crate::spool::{Spool, SpoolReader};

/// A spooled body: encrypted on disk under a key of its own, read back as plaintext.
pub(crate) type Spooled = SpoolReader;

/// Every argument of a request, from the query string and (for POST) the form.
#[derive(Debug, Default)]
pub(crate) struct Args(HashMap<String, String>);

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn t(&self) -> &str {
        self.get("t").unwrap_or("")
    }

    /// Tahoe's booleans: true/t/1/on, false/f/0/off (any case).
    fn boolean(&self, name: &str, default: bool) -> Result<bool, WebError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => Ok(default),
            Some("true" | "t" | "1" | "on" | "yes") => Ok(true),
            Some("false" | "f" | "0" | "off" | "no") => Ok(false),
            Some(other) => Err(WebError::BadRequest(format!(
                "{name}={other} is not a boolean (use true or false)"
            ))),
        }
    }

    /// `replace=true|false|only-files` (default true).
    fn replace(&self) -> Result<Replace, WebError> {
        self.replace_named("replace")
    }

    fn replace_named(&self, name: &str) -> Result<Replace, WebError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            Some("only-files") => Ok(Replace::OnlyFiles),
            _ => Ok(if self.boolean(name, true)? {
                Replace::Always
            } else {
                Replace::Never
            }),
        }
    }

    /// `format=` for new objects (`mutable=true` means `mutable_default`: the gateway's
    /// `[client] mutable.format`, SDMF unless set, as Tahoe 1.20).
    fn format(&self, mutable_default: MutableFormat) -> Result<Option<Format>, WebError> {
        match self.get("format").map(str::to_ascii_uppercase).as_deref() {
            None | Some("") => Ok(self
                .boolean("mutable", false)?
                .then_some(Format::Mutable(mutable_default))),
            Some("CHK") => Ok(Some(Format::Chk)),
            Some("SDMF") => Ok(Some(Format::Mutable(MutableFormat::Sdmf))),
            Some("MDMF") => Ok(Some(Format::Mutable(MutableFormat::Mdmf))),
            Some(other) => Err(WebError::BadRequest(format!(
                "unknown format={other}: expected CHK, SDMF or MDMF"
            ))),
        }
    }

    /// The format of a new directory (SDMF unless MDMF is asked for; `mutable.format` is for files).
    fn dir_format(&self) -> Result<MutableFormat, WebError> {
        match self.format(MutableFormat::Sdmf)? {
            Some(Format::Mutable(format)) => Ok(format),
            Some(Format::Chk) => Err(WebError::BadRequest(
                "format=CHK makes no mutable directory; use t=mkdir-immutable".into(),
            )),
            None => Ok(MutableFormat::Sdmf),
        }
    }
}

/// What a new file is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Chk,
    Mutable(MutableFormat),
}

/// A request's body: nothing yet read, or a form's file field spooled to disk.
pub(crate) enum Payload {
    Body(Body),
    Spooled(Spooled, Option<String>),
    None,
}

/// The longest form field other than `file` (form arguments are names, caps and flags; JSON bodies
/// come as the request body or the `file` field).
pub(crate) const FORM_FIELD_LIMIT: usize = 64 << 10;

/// All of a form's fields other than `file` together (names included).
pub(crate) const FORM_FIELDS_TOTAL_LIMIT: usize = 1 << 20;

/// The largest JSON body (children of mkdir-with-children, set_children).
const JSON_BODY_LIMIT: u64 = 64 << 20;

/// The largest body of a `PUT ?offset=` (a partial write is held in memory while it is encoded).
const OFFSET_WRITE_LIMIT: u64 = 64 << 20;

/// Reads a POST's form (urlencoded or multipart) into `args`; a multipart `file` field is spooled
/// to an unlinked temporary file so that fields may come in any order.
async fn read_form(state: &WebState, request: Request, args: &mut Args) -> Result<Payload, WebError> {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let original = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let content_type = original.to_ascii_lowercase();
    let mut merge = |name: String, value: String| {
        args.0.entry(name).or_insert(value);
    };
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|e| WebError::Body(e.to_string()))?;
        for (name, value) in form_urlencoded_pairs(&bytes) {
            merge(name, value);
        }
        return Ok(Payload::None);
    }
    if !content_type.starts_with("multipart/form-data") {
        return Ok(Payload::Body(body));
    }
    // The original request's extensions carry the router's body-limit setting (none).
    let mut request = Request::builder()
        .header(header::CONTENT_TYPE, original)
        .body(body)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    *request.extensions_mut() = parts.extensions;
    let mut multipart = axum::extract::Multipart::from_request(request, &())
        .await
        .map_err(|e| WebError::Body(e.to_string()))?;
    let mut file = None;
    // Every field but `file` is held in memory: each is bounded, and so are all of them together
    // (names included), so that no number or size of fields makes the gateway hold more.
    let mut held = 0usize;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| WebError::Body(e.to_string()))?
    {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            if file.is_some() {
                return Err(WebError::BadRequest(
                    "the form has more than one `file` field".into(),
                ));
            }
            let filename = field.file_name().map(str::to_owned);
            file = Some((spool(state, field, None, true).await?, filename));
        } else {
            let shown: String = name.chars().take(64).collect();
            held += name.len();
            let mut field = field;
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| WebError::Body(e.to_string()))? {
                value.extend_from_slice(&chunk);
                if value.len() > FORM_FIELD_LIMIT {
                    return Err(WebError::TooLarge(format!(
                        "form field {shown:?} is longer than {FORM_FIELD_LIMIT} bytes \
                         (send large data as the `file` field or the request body)"
                    )));
                }
                if held + value.len() > FORM_FIELDS_TOTAL_LIMIT {
                    return Err(WebError::TooLarge(format!(
                        "the form's fields other than `file` are longer than \
                         {FORM_FIELDS_TOTAL_LIMIT} bytes together"
                    )));
                }
            }
            held += value.len();
            merge(name, String::from_utf8_lossy(&value).into_owned());
        }
    }
    Ok(match file {
        Some((spooled, filename)) => Payload::Spooled(spooled, filename),
        None => Payload::None,
    })
}

pub(crate) fn form_urlencoded_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(bytes)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Spools a stream of bytes to the encrypted spool ([`Spool`]: an unlinked temporary file under a
/// random key, so no plaintext of an upload reaches the disk) and returns its reader. With a
/// `limit`, a body longer than that is refused with 413 as soon as it passes it. The spools of all
/// web uploads in progress together hold at most the gateway's `[node] web.spool.quota`
/// ([`WebState::spool_quota`]); a body that would pass it is refused with 507.
pub(crate) async fn spool<E: std::fmt::Display>(
    state: &WebState,
    chunks: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
    limit: Option<(u64, &str)>,
    hash: bool,
) -> Result<Spooled, WebError> {
    let quota = std::sync::Arc::clone(&state.spool_quota);
    let mut spool = tokio::task::spawn_blocking(move || Spool::with_quota(None, &quota, WEB_SPOOL_USER))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(format!("cannot create a spool file: {e}")))?;
    if hash {
        spool.hash_with(state.grid.convergent_hasher());
    }
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| WebError::Body(e.to_string()))?;
        let at = spool.size();
        if let Some((limit, what)) = limit
            && at + chunk.len() as u64 > limit
        {
            return Err(WebError::TooLarge(format!(
                "{what}: this body is longer than {limit} bytes"
            )));
        }
        spool.write_at(at, &chunk).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::QuotaExceeded {
                WebError::SpoolFull(format!(
                    "the gateway is holding as many uploads in progress as it takes ([node] web.spool.quota = {} bytes); try again when they have finished",
                    state.spool_quota.limit()
                ))
            } else {
                WebError::Internal(format!("spool write failed: {e}"))
            }
        })?;
    }
    spool
        .flush()
        .await
        .map_err(|e| WebError::Internal(format!("spool write failed: {e}")))?;
    Ok(spool.into_reader())
}

/// The one user that all web uploads are charged to in [`WebState::spool_quota`] (the web API has
/// no accounts).
const WEB_SPOOL_USER: &str = "web";

/// The spool limit of a body that becomes (or replaces) a file of `format`.
fn body_limit(format: Option<Format>) -> Option<(u64, &'static str)> {
    (format == Some(Format::Mutable(MutableFormat::Sdmf)))
        .then_some((crate::SDMF_MAX_SIZE, crate::SDMF_TOO_LARGE))
}

/// The format of an existing mutable file.
fn mutable_format(file: &FileNode) -> Option<Format> {
    match file.cap() {
        FileCap::Mutable(m) => Some(Format::Mutable(m.format)),
        _ => None,
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn json(body: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::ascii_json(&body),
    )
        .into_response()
}

/// The child names in a URL path: empty segments are refused except a trailing one.
fn path_segments(path: &str) -> Result<(Vec<String>, bool), WebError> {
    let trailing_slash = path.ends_with('/');
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok((Vec::new(), trailing_slash));
    }
    let segments: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err(WebError::BadRequest(
            "The webapi does not allow empty pathname components, i.e. a double slash".into(),
        ));
    }
    Ok((segments, trailing_slash))
}

/// What a request's URL names.
struct Target {
    root: Cap,
    path: Vec<String>,
    trailing_slash: bool,
}

impl Target {
    fn root_dir(&self, state: &WebState) -> Result<DirNode, WebError> {
        match &self.root {
            Cap::Dir(dir) => Ok(DirNode::new(&state.grid, dir.clone())),
            Cap::File(_) if !self.path.is_empty() => {
                Err(NodeError::NotADirectory(self.path[0].clone()).into())
            }
            _ => Err(WebError::BadRequest("this cap is not a directory".into())),
        }
    }

    /// The node the path names, with its link (when reached through a directory).
    async fn resolve(&self, state: &WebState) -> Result<(Node, Option<Child>), WebError> {
        if self.path.is_empty() {
            return Ok((state.grid.node(self.root.clone()), None));
        }
        let root = self.root_dir(state)?;
        let (last, parents) = self.path.split_last().expect("invariant: non-empty path");
        let parent = match root.walk(parents).await? {
            Node::Dir(dir) => dir,
            _ => return Err(NodeError::NotADirectory(parents.last().cloned().unwrap_or_default()).into()),
        };
        let child = parent.get(last).await?;
        Ok((child.node(&state.grid), Some(child)))
    }

    /// The parent directory of the last segment (walking, or creating missing directories), and
    /// the last segment.
    async fn parent(
        &self,
        state: &WebState,
        create: bool,
        format: MutableFormat,
    ) -> Result<(DirNode, String), WebError> {
        let root = self.root_dir(state)?;
        let (last, parents) = self.path.split_last().expect("invariant: non-empty path");
        let parent = if create {
            root.create_path(parents, format).await?
        } else {
            match root.walk(parents).await? {
                Node::Dir(dir) => dir,
                _ => {
                    return Err(NodeError::NotADirectory(parents.last().cloned().unwrap_or_default()).into());
                }
            }
        };
        Ok((parent, last.clone()))
    }
}

/// `/uri/{cap}`.
pub(crate) async fn uri_root(
    State(state): State<WebState>,
    Path(cap): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, WebError> {
    dispatch(state, cap, String::new(), false, query, request).await
}

/// `/uri/{cap}/{*path}`.
pub(crate) async fn uri_path(
    State(state): State<WebState>,
    Path((cap, path)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, WebError> {
    dispatch(state, cap, path, false, query, request).await
}

/// `/uri/{cap}/` (the directory page's URL).
pub(crate) async fn uri_slash(
    State(state): State<WebState>,
    Path(cap): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, WebError> {
    dispatch(state, cap, String::new(), true, query, request).await
}

async fn dispatch(
    state: WebState,
    cap: String,
    path: String,
    slash: bool,
    query: HashMap<String, String>,
    request: Request,
) -> Result<Response, WebError> {
    let root = Cap::parse(&cap)?;
    let (path, trailing_slash) = if slash {
        (Vec::new(), true)
    } else {
        path_segments(&path)?
    };
    let target = Target {
        root,
        path,
        trailing_slash,
    };
    let mut args = Args(query);
    let method = request.method().clone();
    let headers = request.headers().clone();
    match method {
        Method::GET | Method::HEAD => get(&state, &target, &args, &method, &headers).await,
        Method::PUT => put(&state, &target, &args, &headers, request.into_body()).await,
        Method::POST => {
            let payload = read_form(&state, request, &mut args).await?;
            check_when_done(&args)?;
            let response = post(&state, &target, &args, payload).await?;
            when_done(&args, response)
        }
        Method::DELETE => {
            if target.path.is_empty() {
                return Err(WebError::BadRequest(
                    "DELETE needs a child name in the path".into(),
                ));
            }
            let (parent, name) = target.parent(&state, false, MutableFormat::Sdmf).await?;
            let child = parent.unlink(&name).await?;
            Ok(text(StatusCode::OK, child.cap.to_string()))
        }
        other => Err(WebError::BadRequest(format!("{other} is not supported here"))),
    }
}

/// `when_done=URL`: a redirect after a successful POST, only within this gateway: a path (`/...`)
/// or a reference relative to the request's URL, such as the `when_done=.` of Tahoe's directory
/// page and ours (`.` is the directory the form was posted to).
fn when_done(args: &Args, response: Response) -> Result<Response, WebError> {
    match check_when_done(args)? {
        Some(url) if response.status().is_success() => {
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, url.to_owned())]).into_response())
        }
        _ => Ok(response),
    }
}

/// Checks `when_done` before anything is done (a refused redirect must not follow a performed
/// operation): only paths on this gateway or references relative to the request's URL.
fn check_when_done(args: &Args) -> Result<Option<&str>, WebError> {
    let Some(url) = args.get("when_done").filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    let path = url.starts_with('/') && !url.starts_with("//");
    // A relative reference has no scheme: no ':' before its first '/', '?' or '#'.
    let first_part = url.split(['/', '?', '#']).next().unwrap_or("");
    let relative = !url.starts_with('/') && !first_part.contains(':');
    // Browsers drop tabs and newlines and trim spaces, which would turn "/\t/host" into
    // "//host": no whitespace or control characters at all.
    let clean = !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\');
    if !(path || relative) || !clean {
        return Err(WebError::BadRequest(
            "when_done must be a path on this gateway (/...) or relative to this URL".into(),
        ));
    }
    Ok(Some(url))
}

async fn get(
    state: &WebState,
    target: &Target,
    args: &Args,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, WebError> {
    if method == Method::HEAD && !args.t().is_empty() {
        return Err(WebError::BadRequest("HEAD does not take t=".into()));
    }
    let (node, link) = target.resolve(state).await?;
    match node {
        Node::File(file) => get_file(state, target, args, method, headers, &file, link.as_ref()).await,
        Node::Dir(dir) => match args.t() {
            "" => {
                // The page's links and forms are relative to its URL, which ends with a slash.
                // (Only browsers are redirected: tools that GET a directory keep Tahoe's answer.)
                let browser = headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|accept| accept.contains("text/html"));
                if !target.trailing_slash
                    && browser
                    && let Cap::Dir(root) = &target.root
                {
                    let location = dir_url(root, &target.path);
                    // Not permanent: the name may later be linked to a file.
                    return Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response());
                }
                if method == Method::HEAD {
                    return Ok(super::html(String::new()));
                }
                super::browse::directory_page(state, &dir, &target.path)
                    .await
                    .map(listing)
            }
            "json" => Ok(listing(json(dir_json(&dir, link.as_ref()).await?))),
            "uri" => Ok(text(StatusCode::OK, dir.cap().to_string())),
            "readonly-uri" => Ok(text(
                StatusCode::OK,
                dir.cap().readonly().map(|c| c.to_string()).unwrap_or_default(),
            )),
            "info" => super::cap_page(
                state,
                &Cap::Dir(dir.cap().clone()),
                target.path.last().map(String::as_str),
            ),
            other => Err(WebError::BadRequest(format!("GET directory: bad t={other}"))),
        },
        Node::Unknown(cap) => match args.t() {
            "json" => Ok(json(serde_json::json!([
                "unknown",
                unknown_props(&cap, link.as_ref())
            ]))),
            _ => Err(WebError::BadRequest(
                "this object's cap is of a kind this gateway does not know".into(),
            )),
        },
    }
}

async fn get_file(
    state: &WebState,
    target: &Target,
    args: &Args,
    method: &Method,
    headers: &HeaderMap,
    file: &FileNode,
    link: Option<&Child>,
) -> Result<Response, WebError> {
    let cap = file.cap();
    if target.trailing_slash && !target.path.is_empty() {
        return Err(NodeError::NotADirectory(target.path.last().cloned().unwrap_or_default()).into());
    }
    let filename = args
        .get("filename")
        .map(str::to_owned)
        .or_else(|| target.path.last().cloned());
    match args.t() {
        "" => {
            let options = download::DownloadOptions {
                filename,
                save: args.boolean("save", false)?,
            };
            download::serve_file(&state.grid, cap, method, headers, &options).await
        }
        "json" => {
            let mut value = super::file_json(cap);
            if cap.size().is_none() {
                value[1]["size"] = file.size().await?.into();
            }
            if let Some(link) = link {
                value[1]["metadata"] = serde_json::Value::Object(link.metadata.clone());
            }
            if link.is_some() || cap.is_mutable() {
                return Ok(json(value));
            }
            super::with_etag(
                cap,
                "json",
                headers,
                "application/json",
                super::ascii_json(&value),
            )
        }
        "uri" => super::with_etag(cap, "uri", headers, "text/plain", cap.to_string()),
        "readonly-uri" => {
            let readonly = cap.readonly().map(|c| c.to_string()).unwrap_or_default();
            super::with_etag(cap, "readonly-uri", headers, "text/plain", readonly)
        }
        "info" => super::cap_page(state, &Cap::File(cap.clone()), filename.as_deref()),
        other => Err(WebError::BadRequest(format!("GET file: bad t={other}"))),
    }
}

/// The JSON of one child in a listing.
fn child_json(child: &Child) -> serde_json::Value {
    let (kind, mut props) = match &child.cap {
        Cap::File(file) => {
            let mut props = serde_json::json!({ "mutable": file.is_mutable(), "format": file_format(file) });
            if let Some(size) = file.size() {
                props["size"] = size.into();
            }
            if let Some(verifier) = file.verifier() {
                props["verify_uri"] = verifier.to_string().into();
            }
            ("filenode", props)
        }
        Cap::Dir(dir) => {
            let mut props = serde_json::json!({
                "mutable": dir.file().is_mutable(),
                "format": file_format(dir.file()),
            });
            if let Some(verifier) = dir.verifier() {
                props["verify_uri"] = verifier.to_string().into();
            }
            ("dirnode", props)
        }
        Cap::Unknown(_) => ("unknown", serde_json::json!({})),
    };
    if let Some(ro) = &child.ro_cap {
        props["ro_uri"] = ro.to_string().into();
    }
    let has_rw = match &child.cap {
        Cap::Unknown(_) => child.ro_cap.as_ref() != Some(&child.cap),
        known => !known.is_readonly(),
    };
    if has_rw {
        props["rw_uri"] = child.cap.to_string().into();
    }
    props["metadata"] = serde_json::Value::Object(child.metadata.clone());
    serde_json::json!([kind, props])
}

fn unknown_props(cap: &Cap, link: Option<&Child>) -> serde_json::Value {
    let mut props = serde_json::json!({});
    match link {
        Some(link) => {
            if let Some(ro) = &link.ro_cap {
                props["ro_uri"] = ro.to_string().into();
            }
            if link.ro_cap.as_ref() != Some(&link.cap) {
                props["rw_uri"] = link.cap.to_string().into();
            }
            props["metadata"] = serde_json::Value::Object(link.metadata.clone());
        }
        None => props["ro_uri"] = cap.to_string().into(),
    }
    props
}

fn file_format(file: &FileCap) -> &'static str {
    match file {
        FileCap::Lit(_) => "LIT",
        FileCap::Chk(_) | FileCap::ChkVerifier(_) => "CHK",
        FileCap::Mutable(m) if m.format == MutableFormat::Mdmf => "MDMF",
        FileCap::Mutable(_) => "SDMF",
    }
}

/// Marks a response as a directory listing for the operation figures (the access log cannot tell
/// a directory's path from a file's).
fn listing(mut response: Response) -> Response {
    response.extensions_mut().insert(crate::counters::Op::List);
    response
}

/// Tahoe's `["dirnode", {...}]`.
async fn dir_json(dir: &DirNode, link: Option<&Child>) -> Result<serde_json::Value, WebError> {
    let children: serde_json::Map<String, serde_json::Value> = dir
        .list()
        .await?
        .iter()
        .map(|child| (child.name.clone(), child_json(child)))
        .collect();
    let cap = dir.cap();
    let mut props = serde_json::json!({
        "mutable": dir.is_mutable(),
        "format": file_format(cap.file()),
        "children": children,
    });
    if let Some(ro) = cap.readonly() {
        props["ro_uri"] = ro.to_string().into();
    }
    if !dir.is_readonly() {
        props["rw_uri"] = cap.to_string().into();
    }
    if let Some(verifier) = cap.verifier() {
        props["verify_uri"] = verifier.to_string().into();
    }
    if let Some(link) = link {
        props["metadata"] = serde_json::Value::Object(link.metadata.clone());
    }
    Ok(serde_json::json!(["dirnode", props]))
}

/// Stores a spooled upload as a new file of `format`.
pub(crate) async fn store_new_file(
    state: &WebState,
    spooled: Spooled,
    format: Format,
    convergent: bool,
) -> Result<FileCap, WebError> {
    match format {
        Format::Chk => {
            let mut spooled = spooled;
            let result = if convergent {
                match spooled.convergent_key() {
                    Some((key, size)) => state.grid.upload_hashed(spooled, key, size, None).await?,
                    None => state.grid.upload(spooled, None).await?,
                }
            } else {
                state.grid.upload_without_convergence(spooled, None).await?
            };
            state.metrics.record_upload(result.size);
            Ok(result.cap)
        }
        Format::Mutable(format) => {
            let len = spooled.len();
            if format == MutableFormat::Sdmf
                && let Some(message) = crate::sdmf_size_error(len)
            {
                return Err(WebError::TooLarge(message));
            }
            let key = state
                .grid
                .key_pool()
                .take()
                .await
                .map_err(|e| WebError::Internal(e.to_string()))?;
            let cap = state
                .grid
                .create_mutable_with_new_key(format, key, len, chunks_from_read(spooled))
                .await?;
            state.metrics.record_upload(len);
            Ok(FileCap::Mutable(cap))
        }
    }
}

/// Replaces a mutable file's contents with a spooled body, or writes it at `offset`.
async fn update_mutable(file: &FileNode, spooled: Spooled, offset: Option<u64>) -> Result<(), WebError> {
    let len = spooled.len();
    if mutable_format(file) == Some(Format::Mutable(MutableFormat::Sdmf)) {
        // An SDMF write at an offset rewrites the whole file, which then holds up to offset + len.
        let end = match offset {
            None => len,
            Some(offset) => offset.saturating_add(len).max(file.size().await?),
        };
        if let Some(message) = crate::sdmf_size_error(end) {
            return Err(WebError::TooLarge(message));
        }
    }
    match offset {
        None => Ok(file.overwrite(len, chunks_from_read(spooled)).await?),
        Some(_) if len > OFFSET_WRITE_LIMIT => Err(WebError::BadRequest(format!(
            "a write at an offset may carry at most {OFFSET_WRITE_LIMIT} bytes (replace the whole file instead)"
        ))),
        Some(offset) => {
            let data = tokio::task::spawn_blocking(move || {
                let mut data = Vec::with_capacity(len as usize);
                std::io::Read::read_to_end(&mut { spooled }, &mut data).map(|_| data)
            })
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?
            .map_err(|e| WebError::Internal(e.to_string()))?;
            Ok(file.write_at(offset, data).await?)
        }
    }
}

fn offset_arg(args: &Args) -> Result<Option<u64>, WebError> {
    args.get("offset")
        .map(|text| {
            text.parse::<u64>()
                .map_err(|_| WebError::BadRequest(format!("offset={text} is not a non-negative number")))
        })
        .transpose()
}

async fn put(
    state: &WebState,
    target: &Target,
    args: &Args,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, WebError> {
    let t = args.t();
    if target.path.is_empty() {
        // PUT to the object itself.
        return match (&target.root, t) {
            (Cap::Dir(dir), "mkdir") => Ok(text(StatusCode::OK, dir.to_string())),
            (Cap::File(file), "") => {
                let node = FileNode::new(&state.grid, file.clone());
                if !node.is_mutable() {
                    return Err(WebError::BadRequest(
                        "this file is immutable; PUT a new file to /uri or to a directory path".into(),
                    ));
                }
                let limit = if offset_arg(args)?.is_none() {
                    body_limit(mutable_format(&node))
                } else {
                    None
                };
                let spooled = spool(state, body.into_data_stream(), limit, false).await?;
                update_mutable(&node, spooled, offset_arg(args)?).await?;
                Ok(text(StatusCode::OK, file.to_string()))
            }
            (_, "") => Err(WebError::BadRequest(
                "PUT to a directory needs a child name".into(),
            )),
            (_, other) => Err(WebError::BadRequest(format!("PUT: bad t={other}"))),
        };
    }
    let replace = args.replace()?;
    match t {
        "uri" => {
            let bytes = axum::body::to_bytes(body, 64 * 1024)
                .await
                .map_err(|e| WebError::Body(e.to_string()))?;
            let cap_text = String::from_utf8_lossy(&bytes).trim().to_owned();
            let cap = Cap::parse(&cap_text)?;
            let (parent, name) = target.parent(state, true, MutableFormat::Sdmf).await?;
            parent.set_child(&name, &cap, None, replace).await?;
            Ok(text(StatusCode::OK, cap.to_string()))
        }
        "mkdir" => {
            let format = args.dir_format()?;
            let (parent, name) = target.parent(state, true, format).await?;
            match parent.get(&name).await {
                Ok(existing) => match existing.node(&state.grid) {
                    Node::Dir(dir) => Ok(text(StatusCode::OK, dir.cap().to_string())),
                    _ => Err(NodeError::WrongType(format!(
                        "Unable to create directory {name:?}: a file was in the way"
                    ))
                    .into()),
                },
                Err(NodeError::NoSuchChild(_)) => {
                    let dir = parent.create_subdirectory(&name, format, replace).await?;
                    Ok(text(StatusCode::OK, dir.cap().to_string()))
                }
                Err(e) => Err(e.into()),
            }
        }
        "" => {
            let format = args.format(state.mutable_format)?;
            let (parent, name) = target.parent(state, true, MutableFormat::Sdmf).await?;
            let existing = parent.lookup(&name).await?;
            if existing.is_none() && headers.contains_key(header::CONTENT_RANGE) {
                return Err(WebError::Unsupported(
                    "Content-Range in PUT not yet supported".into(),
                ));
            }
            // An existing mutable file is updated in place (unless a format asks for a new file).
            if let Some(child) = &existing
                && let Node::File(file) = child.node(&state.grid)
                && file.is_mutable()
                && (format.is_none() || args.get("offset").is_some())
            {
                if file.is_readonly() {
                    return Err(NodeError::NotWritable("the file's cap is read-only").into());
                }
                let limit = if offset_arg(args)?.is_none() {
                    body_limit(mutable_format(&file))
                } else {
                    None
                };
                let spooled = spool(state, body.into_data_stream(), limit, false).await?;
                update_mutable(&file, spooled, offset_arg(args)?).await?;
                return Ok(text(StatusCode::OK, file.cap().to_string()));
            }
            if args.get("offset").is_some() {
                return Err(WebError::BadRequest(
                    "offset= needs an existing mutable file".into(),
                ));
            }
            if let Some(child) = &existing {
                if replace == Replace::Never || (replace == Replace::OnlyFiles && child.is_dir()) {
                    return Err(NodeError::ExistingChild(name).into());
                }
                if child.is_dir() {
                    // Tahoe: a file never replaces a directory by PUT.
                    return Err(WebError::BadRequest(format!(
                        "PUT to a directory: {name:?} is a directory; unlink it first or use another name"
                    )));
                }
            }
            let convergent = convergence(args)?;
            let chk = matches!(format, None | Some(Format::Chk));
            let cap = match super::streamed::known_length(headers, &body) {
                // With a random key and a known length, straight into the encoder.
                Some(size) if chk && !convergent => {
                    super::streamed::store_streamed(state, body, size).await?
                }
                _ => {
                    let hash = convergent && chk;
                    let spooled = spool(state, body.into_data_stream(), body_limit(format), hash).await?;
                    store_new_file(state, spooled, format.unwrap_or(Format::Chk), convergent).await?
                }
            };
            let created = parent
                .set_child(&name, &Cap::File(cap.clone()), None, replace)
                .await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(text(status, cap.to_string()))
        }
        other => Err(WebError::BadRequest(format!("PUT: bad t={other}"))),
    }
}

fn convergence(args: &Args) -> Result<bool, WebError> {
    args.boolean("convergence", true)
}

/// Children given as Tahoe's JSON `{name: [type, {ro_uri, rw_uri, metadata}]}`.
fn parse_children(bytes: &[u8]) -> Result<Vec<(String, Cap, Option<filenode::node::Metadata>)>, WebError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| WebError::BadRequest(format!("the children JSON does not parse: {e}")))?;
    let object = value.as_object().ok_or_else(|| {
        WebError::BadRequest("the children JSON must be an object of name: [type, props]".into())
    })?;
    let mut children = Vec::new();
    for (name, entry) in object {
        let props = entry
            .get(1)
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| WebError::BadRequest(format!("child {name:?} must be [type, {{...}}]")))?;
        let rw = props
            .get("rw_uri")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty());
        let ro = props
            .get("ro_uri")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty());
        let cap = match (rw, ro) {
            (Some(rw), _) => match Cap::parse_lenient(rw) {
                Cap::Unknown(_) if ro.is_none() => {
                    return Err(WebError::BadRequest(format!(
                        "child {name:?} has a write cap of an unknown kind and no read cap"
                    )));
                }
                // A write cap of an unknown kind is kept as its read-only form only.
                Cap::Unknown(_) => read_only_unknown(ro.expect("checked")),
                known => known,
            },
            (None, Some(ro)) => match Cap::parse_lenient(ro) {
                Cap::Unknown(_) => read_only_unknown(ro),
                known => known,
            },
            (None, None) => return Err(WebError::BadRequest(format!("child {name:?} has no cap"))),
        };
        let metadata = props
            .get("metadata")
            .and_then(serde_json::Value::as_object)
            .cloned();
        children.push((name.clone(), cap, metadata));
    }
    Ok(children)
}

/// An unknown cap given as read-only, marked so (`ro.`) unless it already is.
fn read_only_unknown(text: &str) -> Cap {
    if text.starts_with("ro.") || text.starts_with("imm.") {
        Cap::Unknown(text.to_owned())
    } else {
        Cap::Unknown(format!("ro.{text}"))
    }
}

async fn body_bytes(payload: Payload) -> Result<Vec<u8>, WebError> {
    match payload {
        Payload::Body(body) => Ok(axum::body::to_bytes(body, JSON_BODY_LIMIT as usize)
            .await
            .map_err(|e| WebError::Body(e.to_string()))?
            .to_vec()),
        Payload::Spooled(file, _) if file.len() > JSON_BODY_LIMIT => Err(WebError::TooLarge(format!(
            "the JSON body is larger than {JSON_BODY_LIMIT} bytes"
        ))),
        Payload::Spooled(file, _) => tokio::task::spawn_blocking(move || {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut { file }, &mut data).map(|_| data)
        })
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(e.to_string())),
        Payload::None => Ok(Vec::new()),
    }
}

fn required<'a>(args: &'a Args, name: &str) -> Result<&'a str, WebError> {
    args.get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| WebError::BadRequest(format!("this operation needs {name}=")))
}

/// The directory a POST operates on (the path must name one).
async fn post_dir(state: &WebState, target: &Target) -> Result<DirNode, WebError> {
    match target.resolve(state).await?.0 {
        Node::Dir(dir) => Ok(dir),
        _ => Err(WebError::BadRequest("this operation needs a directory".into())),
    }
}

async fn post(
    state: &WebState,
    target: &Target,
    args: &Args,
    payload: Payload,
) -> Result<Response, WebError> {
    let replace = args.replace()?;
    match args.t() {
        "check" => {
            let options =
                super::check::options(args.boolean("verify", false)?, args.boolean("add-lease", false)?);
            let repair = args.boolean("repair", false)?;
            let json_output = args.get("output").is_some_and(|o| o.eq_ignore_ascii_case("json"));
            let (node, _) = target.resolve(state).await?;
            if args.boolean("deep", false)? {
                let Node::Dir(dir) = node else {
                    return Err(WebError::BadRequest(
                        "deep=true checks a directory; this is a file".into(),
                    ));
                };
                return super::check::deep_check_page(state, dir, options, repair).await;
            }
            let response = super::check::check(state, &node.cap(), options, repair, json_output).await?;
            when_done(args, response)
        }
        "stream-deep-check" | "stream-manifest" => {
            let dir = post_dir(state, target).await?;
            let options = (args.t() == "stream-deep-check").then_some(super::check::options(
                args.boolean("verify", false)?,
                args.boolean("add-lease", false)?,
            ));
            let repair = options.is_some() && args.boolean("repair", false)?;
            Ok(super::check::stream_deep(state, dir, options, repair))
        }
        "mkdir" | "mkdir-with-children" | "mkdir-immutable" => {
            let children = if args.t() == "mkdir" {
                Vec::new()
            } else {
                parse_children(&body_bytes(payload).await?)?
            };
            let make = |parent: DirNode, name: String| async move {
                let dir = match args.t() {
                    "mkdir-immutable" => state.grid.create_immutable_directory(children).await?,
                    _ => {
                        state
                            .grid
                            .create_directory_with_children(args.dir_format()?, children)
                            .await?
                    }
                };
                parent
                    .set_child(&name, &Cap::Dir(dir.cap().clone()), None, replace)
                    .await?;
                Ok::<_, WebError>(text(StatusCode::OK, dir.cap().to_string()))
            };
            match args.get("name") {
                Some(name) => make(post_dir(state, target).await?, name.to_owned()).await,
                None if !target.path.is_empty() => {
                    // The path names the new directory: an existing one is simply returned.
                    let (parent, name) = target.parent(state, true, args.dir_format()?).await?;
                    match parent.get(&name).await {
                        Ok(existing) => match existing.node(&state.grid) {
                            Node::Dir(dir) if args.t() == "mkdir" => {
                                Ok(text(StatusCode::OK, dir.cap().to_string()))
                            }
                            Node::Dir(_) if replace != Replace::Always => {
                                Err(NodeError::ExistingChild(name).into())
                            }
                            Node::Dir(_) => make(parent, name).await,
                            // Tahoe's words: the path names a file, which takes no t=mkdir.
                            _ => Err(WebError::BadRequest(format!(
                                "POST to file: bad t={}: {name:?} is a file",
                                args.t()
                            ))),
                        },
                        Err(NodeError::NoSuchChild(_)) => make(parent, name).await,
                        Err(e) => Err(e.into()),
                    }
                }
                None => Err(WebError::BadRequest("t=mkdir on a directory needs name=".into())),
            }
        }
        "upload" => {
            let Payload::Spooled(spooled, filename) = payload else {
                return Err(WebError::BadRequest(
                    "t=upload needs a multipart form with a `file` field".into(),
                ));
            };
            let (node, _) = target.resolve(state).await?;
            match node {
                Node::File(file) => {
                    if !file.is_mutable() {
                        return Err(WebError::BadRequest("this file is immutable".into()));
                    }
                    update_mutable(&file, spooled, None).await?;
                    Ok(text(StatusCode::OK, file.cap().to_string()))
                }
                Node::Dir(dir) => {
                    let name = args
                        .get("name")
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .or(filename)
                        .ok_or_else(|| WebError::BadRequest("t=upload needs name= or a file name".into()))?;
                    let existing = dir.lookup(&name).await?;
                    let format = args.format(state.mutable_format)?;
                    if let Some(child) = &existing {
                        if replace == Replace::Never || (replace == Replace::OnlyFiles && child.is_dir()) {
                            return Err(NodeError::ExistingChild(name).into());
                        }
                        if let Node::File(file) = child.node(&state.grid)
                            && file.is_mutable()
                            && !file.is_readonly()
                            && format.is_none()
                        {
                            update_mutable(&file, spooled, None).await?;
                            return Ok(text(StatusCode::OK, file.cap().to_string()));
                        }
                    }
                    let cap =
                        store_new_file(state, spooled, format.unwrap_or(Format::Chk), convergence(args)?)
                            .await?;
                    dir.set_child(&name, &Cap::File(cap.clone()), None, replace)
                        .await?;
                    Ok(text(StatusCode::OK, cap.to_string()))
                }
                Node::Unknown(_) => Err(WebError::BadRequest("cannot upload to an unknown object".into())),
            }
        }
        "uri" => {
            let dir = post_dir(state, target).await?;
            let name = required(args, "name")?;
            let cap = Cap::parse(required(args, "uri")?.trim())?;
            dir.set_child(name, &cap, None, replace).await?;
            Ok(text(StatusCode::OK, cap.to_string()))
        }
        "unlink" | "delete" => {
            let dir = post_dir(state, target).await?;
            // Given but empty names the child whose name is empty (only a hand-written directory
            // holds one): it can be unlinked like any other.
            let name = args
                .get("name")
                .ok_or_else(|| WebError::BadRequest("this operation needs name=".into()))?;
            dir.unlink(name).await?;
            Ok(text(StatusCode::OK, "thing unlinked".into()))
        }
        "rename" => {
            let dir = post_dir(state, target).await?;
            let from = required(args, "from_name")?;
            let to = required(args, "to_name")?;
            if to.contains('/') {
                return Err(WebError::BadRequest("to_name= may not contain a slash".into()));
            }
            dir.rename(from, to, replace).await?;
            Ok(text(StatusCode::OK, "thing renamed".into()))
        }
        "relink" => {
            let dir = post_dir(state, target).await?;
            let from = required(args, "from_name")?;
            let to_name = args.get("to_name").filter(|n| !n.is_empty()).unwrap_or(from);
            if to_name.contains('/') {
                return Err(WebError::BadRequest("to_name= may not contain a slash".into()));
            }
            let to_dir = match args.get("to_dir").filter(|d| !d.is_empty()) {
                None => dir.clone(),
                Some(text) => resolve_dir_path(state, text).await?,
            };
            dir.move_child_to(from, &to_dir, to_name, replace).await?;
            Ok(text(StatusCode::OK, "thing moved".into()))
        }
        "set_children" | "set-children" => {
            let dir = post_dir(state, target).await?;
            let children = parse_children(&body_bytes(payload).await?)?;
            let overwrite = args.replace_named("overwrite")?;
            dir.set_children(children, overwrite).await?;
            Ok(text(StatusCode::OK, "Okay set children".into()))
        }
        "" => Err(WebError::BadRequest("POST needs t=".into())),
        other => Err(WebError::BadRequest(format!(
            "POST to a directory with bad t={other}"
        ))),
    }
}

/// `to_dir=`: a directory cap, optionally followed by `/child/names` (also as a `/uri/...` URL).
async fn resolve_dir_path(state: &WebState, text: &str) -> Result<DirNode, WebError> {
    let text = text.strip_prefix("/uri/").unwrap_or(text);
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned();
    let (cap_text, rest) = decoded.split_once('/').unwrap_or((&decoded, ""));
    let (path, _) = path_segments(rest)?;
    let dir = match Cap::parse(cap_text)? {
        Cap::Dir(dir) => DirNode::new(&state.grid, dir),
        _ => return Err(WebError::BadRequest("to_dir= must name a directory".into())),
    };
    match dir.walk(&path).await? {
        Node::Dir(dir) => Ok(dir),
        _ => Err(WebError::BadRequest("to_dir= must name a directory".into())),
    }
}

/// `POST /uri?t=mkdir|mkdir-with-children|mkdir-immutable` and `PUT /uri?t=mkdir`: unlinked
/// directories.
pub(crate) async fn make_unlinked_directory(
    state: &WebState,
    query: HashMap<String, String>,
    request: Request,
) -> Result<Response, WebError> {
    let mut args = Args(query);
    let payload = read_form(state, request, &mut args).await?;
    check_when_done(&args)?;
    let children = if args.t() == "mkdir" {
        Vec::new()
    } else {
        parse_children(&body_bytes(payload).await?)?
    };
    let dir = match args.t() {
        "mkdir-immutable" => {
            if children.is_empty() {
                return Err(WebError::BadRequest("t=mkdir-immutable needs children".into()));
            }
            state.grid.create_immutable_directory(children).await?
        }
        _ => {
            state
                .grid
                .create_directory_with_children(args.dir_format()?, children)
                .await?
        }
    };
    let cap = dir.cap().to_string();
    if args.boolean("redirect_to_result", false)? {
        let target = format!(
            "/uri/{}/",
            percent_encoding::utf8_percent_encode(&cap, percent_encoding::NON_ALPHANUMERIC)
        );
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response());
    }
    when_done(&args, text(StatusCode::OK, cap))
}

/// `PUT /uri?format=SDMF|MDMF` (or `mutable=true`): an unlinked mutable file.
pub(crate) async fn put_unlinked_mutable(
    state: &WebState,
    format: MutableFormat,
    body: Body,
) -> Result<Response, WebError> {
    let spooled = spool(
        state,
        body.into_data_stream(),
        body_limit(Some(Format::Mutable(format))),
        false,
    )
    .await?;
    let cap = store_new_file(state, spooled, Format::Mutable(format), true).await?;
    Ok(text(StatusCode::OK, cap.to_string()))
}

/// Makes `DirCap` usable by callers that only have text (the UI's links).
pub(crate) fn dir_url(cap: &DirCap, path: &[String]) -> String {
    let mut url = format!(
        "/uri/{}/",
        percent_encoding::utf8_percent_encode(&cap.to_string(), percent_encoding::NON_ALPHANUMERIC)
    );
    for segment in path {
        url.push_str(
            &percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string(),
        );
        url.push('/');
    }
    url
}

/// Parses `format=` for unlinked uploads.
pub(crate) fn upload_format(
    query: &HashMap<String, String>,
    mutable_default: MutableFormat,
) -> Result<Option<Format>, WebError> {
    Args(query.clone()).format(mutable_default)
}

/// `POST /uri?t=upload`: an unlinked upload from a form.
pub(crate) async fn post_unlinked_upload(
    state: &WebState,
    query: HashMap<String, String>,
    request: Request,
) -> Result<Response, WebError> {
    let mut args = Args(query);
    let Payload::Spooled(spooled, filename) = read_form(state, request, &mut args).await? else {
        return Err(WebError::BadRequest("the form has no `file` field".into()));
    };
    check_when_done(&args)?;
    let format = args.format(state.mutable_format)?.unwrap_or(Format::Chk);
    let cap = store_new_file(state, spooled, format, convergence(&args)?)
        .await?
        .to_string();
    if args.boolean("redirect_to_result", false)? {
        let mut target = format!(
            "/uri/{}?t=info",
            percent_encoding::utf8_percent_encode(&cap, percent_encoding::NON_ALPHANUMERIC)
        );
        if let Some(name) = filename {
            target.push_str(&format!(
                "&filename={}",
                percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response());
    }
    when_done(&args, text(StatusCode::OK, cap))
}
