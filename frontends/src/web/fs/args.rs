//! The one parser of a filesystem request's arguments: the query string and, for `POST`, an
//! urlencoded or multipart form (query arguments win; fields other than `file` are bounded), and
//! the typed arguments read from them (`format`, `convergence`, `offset`, ...).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use filenode::cap::MutableFormat;
use filenode::node::Replace;

use crate::web::{WebError, WebState};

use super::{Spooled, spool};

/// Every argument of a request, from the query string and (for POST) the form.
#[derive(Debug, Default)]
pub(super) struct Args(HashMap<String, String>);

impl Args {
    /// The arguments of a query string (a form's are added by `read_form`).
    pub(super) fn new(query: HashMap<String, String>) -> Args {
        Args(query)
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(super) fn t(&self) -> &str {
        self.get("t").unwrap_or("")
    }

    /// Tahoe's booleans: true/t/1/on, false/f/0/off (any case).
    pub(super) fn boolean(&self, name: &str, default: bool) -> Result<bool, WebError> {
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
    pub(super) fn replace(&self) -> Result<Replace, WebError> {
        self.replace_named("replace")
    }

    pub(super) fn replace_named(&self, name: &str) -> Result<Replace, WebError> {
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
    pub(super) fn format(&self, mutable_default: MutableFormat) -> Result<Option<Format>, WebError> {
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
    pub(super) fn dir_format(&self) -> Result<MutableFormat, WebError> {
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
pub(super) enum Payload {
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

/// Reads a POST's form (urlencoded or multipart) into `args`; a multipart `file` field is spooled
/// to an unlinked temporary file so that fields may come in any order.
pub(super) async fn read_form(
    state: &WebState,
    request: Request,
    args: &mut Args,
) -> Result<Payload, WebError> {
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

pub(super) fn offset_arg(args: &Args) -> Result<Option<u64>, WebError> {
    args.get("offset")
        .map(|text| {
            text.parse::<u64>()
                .map_err(|_| WebError::BadRequest(format!("offset={text} is not a non-negative number")))
        })
        .transpose()
}

pub(super) fn convergence(args: &Args) -> Result<bool, WebError> {
    args.boolean("convergence", true)
}

pub(super) async fn body_bytes(payload: Payload) -> Result<Vec<u8>, WebError> {
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

pub(super) fn required<'a>(args: &'a Args, name: &str) -> Result<&'a str, WebError> {
    args.get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| WebError::BadRequest(format!("this operation needs {name}=")))
}

/// Parses `format=` for unlinked uploads.
pub(crate) fn upload_format(
    query: &HashMap<String, String>,
    mutable_default: MutableFormat,
) -> Result<Option<Format>, WebError> {
    Args(query.clone()).format(mutable_default)
}
