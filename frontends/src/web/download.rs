//! Serving a file: `GET`/`HEAD /uri/$CAP` and `/named/$CAP/NAME`, with single and multiple byte
//! ranges, a strong ETag for immutable files, `If-None-Match`, `If-Range`, a Content-Type guessed
//! from the file name, and `save=true` downloads with RFC 6266/5987 file names.
//!
//! Only the segments a range covers are fetched. Once headers are sent, a failure aborts the
//! connection (the body stream errors), so a client sees a truncated transfer, never a short
//! "success".

use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use filenode::cap::FileCap;
use filenode::grid::Grid;
use filenode::node::{FileNode, FileReader, NodeError};
use futures::{StreamExt, TryStreamExt, stream};

use super::WebError;

/// How a download was asked for.
#[derive(Debug, Default)]
pub(crate) struct DownloadOptions {
    /// The file name, for Content-Type and Content-Disposition.
    pub(crate) filename: Option<String>,
    /// `save=true`: ask the browser to save rather than show.
    pub(crate) save: bool,
}

/// The strong ETag of an immutable file (its storage index); LIT files, whose only name is their
/// content, get none.
pub(crate) fn etag(file: &FileCap, variant: &str) -> Option<String> {
    match file {
        FileCap::Chk(chk) => Some(format!("\"{}-{variant}\"", chk.storage_index())),
        _ => None,
    }
}

/// Whether `If-None-Match` matches `tag` (quoted, weak-prefixed or Tahoe's unquoted form, or `*`).
pub(crate) fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    let bare = tag.trim_matches('"');
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            value
                .split([',', ' '])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .any(|candidate| {
                    candidate == "*" || candidate.trim_start_matches("W/").trim_matches('"') == bare
                })
        })
}

fn content_type(filename: Option<&str>) -> String {
    filename
        .and_then(|name| mime_guess::from_path(name).first_raw())
        .map(str::to_owned)
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266 and 5987).
fn disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // RFC 5987 attr-char: letters, digits and !#$&+-.^_`|~ stay as they are.
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(filename, ESCAPED);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

pub(super) enum RangeAnswer {
    Whole,
    Parts(Vec<RangeInclusive<u64>>),
    Unsatisfiable,
}

pub(super) fn requested_ranges(headers: &HeaderMap, size: u64, tag: Option<&str>) -> RangeAnswer {
    let Some(text) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Whole;
    };
    // If-Range with anything but our current strong ETag (we have no dates) means: send it all.
    if let Some(condition) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        let matches =
            tag.is_some_and(|tag| condition.trim() == tag || condition.trim() == tag.trim_matches('"'));
        if !matches {
            return RangeAnswer::Whole;
        }
    }
    if size == 0 {
        // No byte range of an empty file is satisfiable; an unparsable header is still ignored.
        return match http_range_header::parse_range_header(text) {
            Ok(_) => RangeAnswer::Unsatisfiable,
            Err(_) => RangeAnswer::Whole,
        };
    }
    match http_range_header::parse_range_header(text).and_then(|ranges| ranges.validate(size)) {
        Ok(ranges) if ranges.is_empty() || ranges.len() > MAX_RANGES => RangeAnswer::Whole,
        Ok(ranges) => RangeAnswer::Parts(ranges),
        Err(http_range_header::RangeUnsatisfiableError::Invalid(_)) => RangeAnswer::Whole,
        Err(_) => RangeAnswer::Unsatisfiable,
    }
}

type ByteStream = futures::stream::BoxStream<'static, Result<Bytes, WebError>>;

/// Where a file's bytes come from: one reader (one version, for a mutable file), opened once per
/// request however many ranges it asks for.
struct Source {
    node: FileNode,
    opened: Option<FileReader>,
}

impl Source {
    /// The file and its size: from the cap for immutable files (nothing is fetched yet, so a HEAD
    /// costs nothing), from the current version for mutable ones.
    async fn new(grid: &Arc<Grid>, file: &FileCap) -> Result<(Source, u64), WebError> {
        let node = FileNode::new(grid, file.clone());
        match file.size() {
            Some(size) => Ok((Source { node, opened: None }, size)),
            None => {
                let reader = node.open().await?;
                let size = reader.size();
                Ok((
                    Source {
                        node,
                        opened: Some(reader),
                    },
                    size,
                ))
            }
        }
    }

    /// The reader, opened for reads from byte `start` if not yet open.
    async fn reader(&mut self, start: u64) -> Result<FileReader, WebError> {
        if self.opened.is_none() {
            self.opened = Some(self.node.open_at(start).await?);
        }
        Ok(self.opened.clone().expect("invariant: just opened"))
    }

    /// A stream of the plaintext bytes `start .. start + len`, its first chunk already read: a
    /// file that cannot produce its first segment fails here, before any header is sent, with
    /// the status that says why. A later segment that fails ends the stream (the client sees the
    /// connection close short of Content-Length) and is logged with the reason.
    ///
    /// A range of a mutable file of at most [`crate::whole::WHOLE_READ_LIMIT`] bytes is read whole
    /// before the answer starts (while the gateway-wide budget allows: `crate::whole`), so that
    /// a writer replacing the version part-way makes the download start over on the new version
    /// rather than end short: the client gets one version whole.
    async fn stream(&mut self, start: u64, len: u64) -> Result<ByteStream, WebError> {
        let reader = self.reader(start).await?;
        if let FileReader::Mutable(_) = reader {
            let wanted = len.min(reader.size().saturating_sub(start));
            if wanted <= crate::whole::WHOLE_READ_LIMIT
                && let Some(permit) = crate::whole::reserve(wanted)
            {
                let bytes = Bytes::from(reader.read(start, len).await?);
                // The permit is held until the body is sent.
                return Ok(stream::once(async move {
                    let _permit = permit;
                    Ok(bytes)
                })
                .boxed());
            }
        }
        let mut stream = reader.stream(start, len).map_err(WebError::from);
        let Some(first) = stream.next().await else {
            return Ok(stream::empty().boxed());
        };
        let first = first?;
        let mut sent = first.len() as u64;
        let rest = stream.inspect(move |item| match item {
            Ok(chunk) => sent += chunk.len() as u64,
            Err(e) => tracing::warn!(
                error = %e,
                sent = start + sent,
                "download aborted part-way: a later segment could not be read"
            ),
        });
        Ok(stream::once(async move { Ok(first) }).chain(rest).boxed())
    }
}

/// More ranges than this in one request are answered with the whole file (RFC 9110 lets a server
/// ignore Range), so a request cannot multiply the work.
pub(super) const MAX_RANGES: usize = 16;

/// How many times a download of a mutable file starts over when a writer replaces the version
/// before the answer starts (between opening it and reading its first segment, or while a small
/// range is read whole): nothing has been sent yet.
const FIRST_SEGMENT_ATTEMPTS: u32 = 8;

/// Serves a file.
pub(crate) async fn serve_file(
    grid: &Arc<Grid>,
    file: &FileCap,
    method: &Method,
    headers: &HeaderMap,
    options: &DownloadOptions,
) -> Result<Response, WebError> {
    let mut attempt = 1;
    loop {
        match serve_file_once(grid, file, method, headers, options).await {
            Err(WebError::Node(NodeError::VersionChanged(_))) if attempt < FIRST_SEGMENT_ATTEMPTS => {
                attempt += 1;
                tracing::debug!(
                    attempt,
                    "download starts over: the file changed before its first segment was read"
                );
            }
            answer => return answer,
        }
    }
}

async fn serve_file_once(
    grid: &Arc<Grid>,
    file: &FileCap,
    method: &Method,
    headers: &HeaderMap,
    options: &DownloadOptions,
) -> Result<Response, WebError> {
    if matches!(file, FileCap::ChkVerifier(_)) || matches!(file, FileCap::Mutable(m) if m.readkey().is_none())
    {
        return Err(WebError::BadRequest("a verify cap cannot read the file".into()));
    }
    let (mut source, size) = Source::new(grid, file).await?;
    let tag = etag(file, "");
    if let Some(tag) = &tag
        && none_match(headers, tag)
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag.clone())]).into_response());
    }
    let content_type = content_type(options.filename.as_deref());
    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header("content-security-policy", "sandbox");
    if let Some(tag) = &tag {
        builder = builder.header(header::ETAG, tag);
    }
    if options.save {
        let name = options.filename.clone().unwrap_or_else(|| "download".into());
        let value =
            HeaderValue::from_str(&disposition(&name)).map_err(|e| WebError::Internal(e.to_string()))?;
        builder = builder.header(header::CONTENT_DISPOSITION, value);
    }
    let head = method == Method::HEAD;
    let response = match requested_ranges(headers, size, tag.as_deref()) {
        RangeAnswer::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .map_err(|e| WebError::Internal(e.to_string()));
        }
        RangeAnswer::Whole => {
            let body = if head || size == 0 {
                Body::empty()
            } else {
                Body::from_stream(source.stream(0, size).await?)
            };
            builder
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, &content_type)
                .header(header::CONTENT_LENGTH, size)
                .body(body)
        }
        RangeAnswer::Parts(ranges) if ranges.len() == 1 => {
            let (start, end) = (*ranges[0].start(), *ranges[0].end());
            let len = end - start + 1;
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(source.stream(start, len).await?)
            };
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, &content_type)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
                .header(header::CONTENT_LENGTH, len)
                .body(body)
        }
        RangeAnswer::Parts(ranges) => {
            // multipart/byteranges (RFC 9110 §14.6): Tahoe serves only the first range.
            let boundary = format!("tessera-{:016x}", rand_boundary());
            let heads: Vec<String> = ranges
                .iter()
                .map(|r| {
                    format!(
                        "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                        r.start(),
                        r.end()
                    )
                })
                .collect();
            let tail = format!("\r\n--{boundary}--\r\n");
            let total: u64 = heads.iter().map(|h| h.len() as u64).sum::<u64>()
                + ranges.iter().map(|r| r.end() - r.start() + 1).sum::<u64>()
                + 2 * (ranges.len() as u64 - 1)
                + tail.len() as u64;
            let body = if head {
                Body::empty()
            } else {
                let mut parts: Vec<ByteStream> = Vec::new();
                for (i, (range, part_head)) in ranges.iter().zip(heads).enumerate() {
                    let prefix = if i == 0 {
                        part_head
                    } else {
                        format!("\r\n{part_head}")
                    };
                    parts.push(stream::once(async move { Ok(Bytes::from(prefix)) }).boxed());
                    parts.push(
                        source
                            .stream(*range.start(), range.end() - range.start() + 1)
                            .await?,
                    );
                }
                parts.push(stream::once(async move { Ok(Bytes::from(tail)) }).boxed());
                Body::from_stream(stream::iter(parts).flatten())
            };
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/byteranges; boundary={boundary}"),
                )
                .header(header::CONTENT_LENGTH, total)
                .body(body)
        }
    };
    response.map_err(|e| WebError::Internal(e.to_string()))
}

fn rand_boundary() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
