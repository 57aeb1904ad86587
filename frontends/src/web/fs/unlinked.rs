//! Objects made without a parent: `PUT /uri?t=mkdir`, `POST /uri?t=mkdir[-with-children|-immutable]`,
//! `PUT /uri?format=mdmf|sdmf` and `POST /uri?t=upload`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use filenode::cap::{Cap, MutableFormat};
use filenode::fs::FsPath;

use crate::web::{WebError, WebState};

use super::args::{Args, Format, Payload, body_bytes, convergence, read_form};
use super::directory::parse_children;
use super::file::store_new_file;
use super::{body_limit, check_when_done, path_segments, spool, text, when_done};

/// `to_dir=`: a directory cap, optionally followed by `/child/names` (also as a `/uri/...` URL), as
/// the layer's path (whether it names a directory shows when it is used).
pub(super) fn resolve_dir_path(text: &str) -> Result<FsPath, WebError> {
    let text = text.strip_prefix("/uri/").unwrap_or(text);
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned();
    let (cap_text, rest) = decoded.split_once('/').unwrap_or((&decoded, ""));
    let (path, _) = path_segments(rest)?;
    match Cap::parse(cap_text)? {
        cap @ Cap::Dir(_) => Ok(FsPath::at_cap(cap, &path)?),
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
    let mut args = Args::new(query);
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

/// `POST /uri?t=upload`: an unlinked upload from a form.
pub(crate) async fn post_unlinked_upload(
    state: &WebState,
    query: HashMap<String, String>,
    request: Request,
) -> Result<Response, WebError> {
    let mut args = Args::new(query);
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
