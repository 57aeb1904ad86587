//! The filesystem part of the web API (tahoe-interfaces.md §3.3): everything under
//! `/uri/$CAP[/path...]` — reading files and directories, uploading into paths, mutable files
//! (`PUT` to replace, `?offset=` to update), `t=mkdir`, `mkdir-with-children`, `mkdir-immutable`,
//! `t=uri`, `set_children`, `t=unlink`/`DELETE`, `t=rename`, `t=relink`, and `t=json` listings.
//!
//! Arguments come from the query string and, for `POST`, also from an urlencoded or multipart
//! form (query arguments win). Differences from Tahoe: writes through read-only caps are 403 with
//! a message (Tahoe: 500 and a traceback); an uncoordinated write is 409; `when_done` only
//! redirects within this gateway.

//!
//! Every path walk and every change of a link goes through the file-system layer beneath every
//! frontend (`filenode::fs`: [`Fs`], [`FsPath`], `prepare_write`/`commit`, `rename_child`,
//! `remove_child`, `link`), so the web API keeps the same policy as SFTP, FTP and WebDAV: Tahoe's
//! replace rules, the mutable-in-place rule, and links marked read-only (`no-write`, set by an
//! SFTP `chmod`) refused to a `PUT` over them, a `DELETE`/`t=unlink` of them and a rename over
//! them (403). The web API's own rules stay here: the cap in the URL is the path's base, URL path
//! names are taken whole (`.` and `..` are not resolved: a 400), a read-only mutable file is not
//! replaced by a `PUT` (403, as Tahoe refuses it), `format=` asks for a new file, `?offset=`.
//!
//! Here: the routes' entry points, the dispatch by method, the spool and the helpers every handler
//! shares. [`args`] is the one parser of a request's arguments; [`file`] holds the file handlers
//! (reads, `PUT` into a path, storing a new file), [`directory`] the listings and every `POST`
//! operation, [`unlinked`] the objects made without a parent (`/uri?t=mkdir`, `t=upload`, ...).

mod args;
mod directory;
mod file;
mod unlinked;

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use filenode::cap::{Cap, DirCap, FileCap, MutableFormat};
use filenode::fs::{Fs, FsError, FsErrorKind, FsPath};
use filenode::node::{Child, FileNode, Node};
use futures::StreamExt;

use super::{WebError, WebState};
use crate::spool::{Spool, SpoolReader};

use args::{Args, read_form};
pub(crate) use args::{Format, form_urlencoded_pairs, upload_format};
use directory::{dir_json, post, unknown_props};
pub(crate) use file::store_new_file;
use file::{get_file, put};
pub(crate) use unlinked::{make_unlinked_directory, post_unlinked_upload, put_unlinked_mutable};

/// A spooled body: encrypted on disk under a key of its own, read back as plaintext.
pub(crate) type Spooled = SpoolReader;

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
    spool.warm_when_large(&state.grid);
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
    /// The layer's path: the URL's cap as the base, its names below it.
    fn fs_path(&self) -> Result<FsPath, WebError> {
        Ok(FsPath::at_cap(self.root.clone(), &self.path)?)
    }

    /// The path of the directory holding the named link, and the link's name (a request that
    /// names a link: `DELETE`, `PUT` to a path).
    fn link_path(&self) -> Result<(FsPath, String), WebError> {
        let path = self.fs_path()?;
        match (path.parent(), path.name()) {
            (Some(parent), Some(name)) => Ok((parent, name.to_owned())),
            _ => Err(WebError::BadRequest("this needs a child name in the path".into())),
        }
    }

    /// The node the path names, with its link (when reached through a directory).
    async fn resolve(&self, state: &WebState) -> Result<(Node, Option<Child>), WebError> {
        let found = fs(state).find(&self.fs_path()?).await?;
        Ok((found.node, found.link.map(|(_, child)| child)))
    }
}

/// The file system the web API's requests go through: every path starts at the cap its URL
/// names (the gateway has no accounts, so no root of its own).
fn fs(state: &WebState) -> Fs {
    Fs::without_root(&state.grid)
}

/// A failure to make a directory because a file holds a name on the way: 409, as Tahoe answers
/// (a file in the way of a path walk is a 400 elsewhere).
fn file_in_the_way(e: FsError) -> WebError {
    if e.kind() == FsErrorKind::NotADirectory {
        WebError::Conflict(e.message().to_owned())
    } else {
        e.into()
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
    let mut args = Args::new(query);
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
            let (parent, name) = target.link_path()?;
            let cap = fs(&state).remove_child(&parent, &name).await?;
            Ok(text(StatusCode::OK, cap.to_string()))
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

/// Marks a response as a directory listing for the operation figures (the access log cannot tell
/// a directory's path from a file's).
fn listing(mut response: Response) -> Response {
    response.extensions_mut().insert(crate::counters::Op::List);
    response
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
