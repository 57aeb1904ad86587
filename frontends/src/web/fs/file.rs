//! Files under `/uri/$CAP[/path]`: reading them (ranged, `t=json`, `t=info`), `PUT` of a file into
//! a path (Tahoe's replace rules, mutable files written in place, `?offset=`), and storing a
//! spooled body as a new file.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use filenode::cap::{Cap, FileCap, MutableFormat};
use filenode::fs::{Fs, FsErrorKind, WriteOptions};
use filenode::grid::mutable::chunks_from_read;
use filenode::node::{Child, FileNode, Node, NodeError, Replace};

use crate::web::{WebError, WebState, download};

use super::args::{Args, Format, convergence, offset_arg};
use super::{Spooled, Target, body_limit, json, mutable_format, spool, text};

/// The largest body of a `PUT ?offset=` (a partial write is held in memory while it is encoded).
const OFFSET_WRITE_LIMIT: u64 = 64 << 20;
/// The largest file a `PUT` to a path uploads while it looks the name up.
const SPECULATE_MAX: u64 = 1 << 20;

/// A `PUT` body: not read yet, or (a small file) spooled and uploaded already.
enum Incoming {
    Unread(Body),
    Stored {
        /// The bytes again, for a mutable file at the name, written in place instead.
        again: Spooled,
        stored: Result<FileCap, WebError>,
    },
}

pub(super) async fn get_file(
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
            let mut value = crate::web::file_json(cap);
            if cap.size().is_none() {
                value[1]["size"] = file.size().await?.into();
            }
            if let Some(link) = link {
                value[1]["metadata"] = serde_json::Value::Object(link.metadata.clone());
            }
            if link.is_some() || cap.is_mutable() {
                return Ok(json(value));
            }
            crate::web::with_etag(
                cap,
                "json",
                headers,
                "application/json",
                crate::web::ascii_json(&value),
            )
        }
        "uri" => crate::web::with_etag(cap, "uri", headers, "text/plain", cap.to_string()),
        "readonly-uri" => {
            let readonly = cap.readonly().map(|c| c.to_string()).unwrap_or_default();
            crate::web::with_etag(cap, "readonly-uri", headers, "text/plain", readonly)
        }
        "info" => crate::web::cap_page(state, &Cap::File(cap.clone()), filename.as_deref()),
        other => Err(WebError::BadRequest(format!("GET file: bad t={other}"))),
    }
}

pub(super) fn file_format(file: &FileCap) -> &'static str {
    match file {
        FileCap::Lit(_) => "LIT",
        FileCap::Chk(_) | FileCap::ChkVerifier(_) => "CHK",
        FileCap::Mutable(m) if m.format == MutableFormat::Mdmf => "MDMF",
        FileCap::Mutable(_) => "SDMF",
    }
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
pub(super) async fn update_mutable(
    file: &FileNode,
    spooled: Spooled,
    offset: Option<u64>,
) -> Result<(), WebError> {
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

pub(super) async fn put(
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
    let fs = super::fs(state);
    match t {
        "uri" => {
            let bytes = axum::body::to_bytes(body, 64 * 1024)
                .await
                .map_err(|e| WebError::Body(e.to_string()))?;
            let cap_text = String::from_utf8_lossy(&bytes).trim().to_owned();
            let cap = Cap::parse(&cap_text)?;
            let (parent, name) = target.link_path()?;
            fs.link(
                &parent,
                vec![(name, cap.clone(), None)],
                replace,
                Some(MutableFormat::Sdmf),
            )
            .await
            .map_err(super::file_in_the_way)?;
            Ok(text(StatusCode::OK, cap.to_string()))
        }
        "mkdir" => {
            // An existing directory is returned; a file in the way is a 409.
            let dir = fs
                .mkdir_all_as(&target.fs_path()?, args.dir_format()?)
                .await
                .map_err(super::file_in_the_way)?;
            Ok(text(StatusCode::OK, dir.cap().to_string()))
        }
        "" => put_into_path(state, &fs, target, args, headers, body, replace).await,
        other => Err(WebError::BadRequest(format!("PUT: bad t={other}"))),
    }
}

/// `PUT /uri/$CAP/path`: a file stored and linked at the path (missing directories made), or a
/// writable mutable file there written in place, as the file-system layer decides
/// ([`Fs::prepare_write_with`], which also refuses a link marked `no-write`); the web API's own
/// rules on top: `format=` asks for a new file, `?offset=` writes into the mutable file there, a
/// read-only mutable file is refused (403, as Tahoe refuses it) rather than replaced, and the link
/// is left as Tahoe's web API leaves it (`WriteTarget::keep_link`).
async fn put_into_path(
    state: &WebState,
    fs: &Fs,
    target: &Target,
    args: &Args,
    headers: &HeaderMap,
    body: Body,
    replace: Replace,
) -> Result<Response, WebError> {
    let format = args.format(state.mutable_format)?;
    let offset = offset_arg(args)?;
    let options = WriteOptions {
        replace,
        create_parents: Some(MutableFormat::Sdmf),
        // An existing mutable file is updated in place unless a format asks for a new file.
        in_place: format.is_none() || offset.is_some(),
    };
    let convergent = convergence(args)?;
    let chk = matches!(format, None | Some(Format::Chk));
    // A small new file is uploaded while the name is looked up, a round trip sooner than one
    // after the other. When the name turns out to hold a mutable file to write in place (or the
    // write is refused), that upload is not linked: its shares are left for their leases to
    // expire, as those of any unlinked upload (`PUT /uri`).
    let small = crate::web::streamed::known_length(state, headers, &body)
        .filter(|len| *len <= SPECULATE_MAX && chk && offset.is_none())
        .filter(|_| !headers.contains_key(header::CONTENT_RANGE));
    let path = target.fs_path()?;
    let (prepared, body) = match small {
        Some(_) => {
            let spooled = spool(state, body.into_data_stream(), body_limit(format), convergent).await?;
            let again = spooled.another();
            let (prepared, stored) = tokio::join!(
                fs.prepare_write_with(&path, options),
                store_new_file(state, spooled, Format::Chk, convergent),
            );
            (prepared, Incoming::Stored { again, stored })
        }
        None => (
            fs.prepare_write_with(&path, options).await,
            Incoming::Unread(body),
        ),
    };
    let mut write = match prepared {
        Ok(write) => write,
        Err(e) if e.kind() == FsErrorKind::IsADirectory && replace == Replace::OnlyFiles => {
            return Err(WebError::Conflict(format!(
                "There was already a child named {:?}, and you asked not to replace it.",
                target.path.last().cloned().unwrap_or_default()
            )));
        }
        Err(e) if e.kind() == FsErrorKind::IsADirectory => {
            // Tahoe: a file never replaces a directory by PUT.
            return Err(WebError::BadRequest(format!(
                "PUT to a directory: {:?} is a directory; unlink it first or use another name",
                target.path.last().cloned().unwrap_or_default()
            )));
        }
        Err(e) => return Err(super::file_in_the_way(e)),
    };
    write.keep_link();
    if write.is_new() && headers.contains_key(header::CONTENT_RANGE) {
        return Err(WebError::Unsupported(
            "Content-Range in PUT not yet supported".into(),
        ));
    }
    if let Some(file) = write.in_place().cloned() {
        let limit = if offset.is_none() {
            body_limit(mutable_format(&file))
        } else {
            None
        };
        let spooled = match body {
            Incoming::Unread(body) => spool(state, body.into_data_stream(), limit, false).await?,
            Incoming::Stored { again, .. } => again,
        };
        match offset {
            Some(_) => update_mutable(&file, spooled, offset).await?,
            None => {
                let len = spooled.len();
                write.commit(spooled, len, None).await?;
            }
        }
        return Ok(text(StatusCode::OK, file.cap().to_string()));
    }
    if let Some(Node::File(old)) = write.existing()
        && old.is_mutable()
        && (format.is_none() || offset.is_some())
    {
        // Tahoe's web API does not replace a mutable file it cannot write.
        return Err(NodeError::NotWritable("the file's cap is read-only").into());
    }
    if offset.is_some() {
        return Err(WebError::BadRequest(
            "offset= needs an existing mutable file".into(),
        ));
    }
    let cap = match body {
        Incoming::Stored { stored, .. } => stored?,
        Incoming::Unread(body) => match crate::web::streamed::known_length(state, headers, &body) {
            // With a random key and a known length, straight into the encoder.
            Some(size) if chk && !convergent => {
                crate::web::streamed::store_streamed(state, body, size).await?
            }
            _ => {
                let hash = convergent && chk;
                let spooled = spool(state, body.into_data_stream(), body_limit(format), hash).await?;
                store_new_file(state, spooled, format.unwrap_or(Format::Chk), convergent).await?
            }
        },
    };
    let created = write.link_stored(&Cap::File(cap.clone()), None).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(text(status, cap.to_string()))
}
