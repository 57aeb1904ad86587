//! Directories under `/uri/$CAP[/path]`: their `t=json` listings and every `POST` operation
//! (`t=mkdir`, `upload`, `uri`, `set_children`, `unlink`, `rename`, `relink`, `check`, ...).

use axum::http::StatusCode;
use axum::response::Response;
use filenode::cap::Cap;
use filenode::fs::{Fs, FsErrorKind, WriteOptions};
use filenode::node::{Child, DirNode, Node, NodeError, Replace};

use crate::web::{WebError, WebState};

use super::args::{Args, Format, Payload, body_bytes, convergence, required};
use super::file::{file_format, store_new_file};
use super::unlinked::resolve_dir_path;
use super::{Target, text, when_done};

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

pub(super) fn unknown_props(cap: &Cap, link: Option<&Child>) -> serde_json::Value {
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

/// Tahoe's `["dirnode", {...}]`.
pub(super) async fn dir_json(dir: &DirNode, link: Option<&Child>) -> Result<serde_json::Value, WebError> {
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

/// Children given as Tahoe's JSON `{name: [type, {ro_uri, rw_uri, metadata}]}`.
pub(super) fn parse_children(
    bytes: &[u8],
) -> Result<Vec<(String, Cap, Option<filenode::node::Metadata>)>, WebError> {
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

/// The directory a POST operates on (the path must name one).
async fn post_dir(state: &WebState, target: &Target) -> Result<DirNode, WebError> {
    match target.resolve(state).await?.0 {
        Node::Dir(dir) => Ok(dir),
        _ => Err(WebError::BadRequest("this operation needs a directory".into())),
    }
}

/// Links a new directory as `name` in `parent` through the layer (a link marked `no-write` is not
/// replaced).
async fn link_dir(
    fs: &Fs,
    parent: &DirNode,
    name: String,
    dir: &DirNode,
    replace: Replace,
) -> Result<(), WebError> {
    fs.link_in(parent, vec![(name, Cap::Dir(dir.cap().clone()), None)], replace)
        .await?;
    Ok(())
}

pub(super) async fn post(
    state: &WebState,
    target: &Target,
    args: &Args,
    payload: Payload,
) -> Result<Response, WebError> {
    let replace = args.replace()?;
    let fs = super::fs(state);
    let fs = &fs;
    match args.t() {
        "check" => {
            let options =
                crate::web::check::options(args.boolean("verify", false)?, args.boolean("add-lease", false)?);
            let repair = args.boolean("repair", false)?;
            let json_output = args.get("output").is_some_and(|o| o.eq_ignore_ascii_case("json"));
            let (node, _) = target.resolve(state).await?;
            if args.boolean("deep", false)? {
                let Node::Dir(dir) = node else {
                    return Err(WebError::BadRequest(
                        "deep=true checks a directory; this is a file".into(),
                    ));
                };
                return crate::web::check::deep_check_page(state, dir, options, repair).await;
            }
            let response = crate::web::check::check(state, &node.cap(), options, repair, json_output).await?;
            when_done(args, response)
        }
        "stream-deep-check" | "stream-manifest" => {
            let dir = post_dir(state, target).await?;
            let options = (args.t() == "stream-deep-check").then_some(crate::web::check::options(
                args.boolean("verify", false)?,
                args.boolean("add-lease", false)?,
            ));
            let repair = options.is_some() && args.boolean("repair", false)?;
            Ok(crate::web::check::stream_deep(state, dir, options, repair))
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
                link_dir(fs, &parent, name, &dir, replace).await?;
                Ok::<_, WebError>(text(StatusCode::OK, dir.cap().to_string()))
            };
            match args.get("name") {
                Some(name) => make(post_dir(state, target).await?, name.to_owned()).await,
                None if !target.path.is_empty() => {
                    // The path names the new directory: an existing one is simply returned.
                    let (parent_path, name) = target.link_path()?;
                    let parent = fs
                        .mkdir_all_as(&parent_path, args.dir_format()?)
                        .await
                        .map_err(super::file_in_the_way)?;
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
                    // Through the layer: a link marked `no-write` is refused.
                    let mut write = fs
                        .prepare_write_with(&target.fs_path()?, WriteOptions::new(Replace::Always))
                        .await?;
                    if write.in_place().is_none() {
                        return Err(NodeError::NotWritable("the file's cap is read-only").into());
                    }
                    write.keep_link();
                    let len = spooled.len();
                    write.commit(spooled, len, None).await?;
                    Ok(text(StatusCode::OK, file.cap().to_string()))
                }
                Node::Dir(dir) => {
                    let name = args
                        .get("name")
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .or(filename)
                        .ok_or_else(|| WebError::BadRequest("t=upload needs name= or a file name".into()))?;
                    let format = args.format(state.mutable_format)?;
                    let options = WriteOptions {
                        in_place: format.is_none(),
                        ..WriteOptions::new(replace)
                    };
                    let mut write = match fs.prepare_write_in(&dir, &name, options).await {
                        Err(e) if e.kind() == FsErrorKind::IsADirectory && replace != Replace::Always => {
                            return Err(NodeError::ExistingChild(name).into());
                        }
                        other => other?,
                    };
                    write.keep_link();
                    if let Some(file) = write.in_place().cloned() {
                        let len = spooled.len();
                        write.commit(spooled, len, None).await?;
                        return Ok(text(StatusCode::OK, file.cap().to_string()));
                    }
                    let cap =
                        store_new_file(state, spooled, format.unwrap_or(Format::Chk), convergence(args)?)
                            .await?;
                    write.link_stored(&Cap::File(cap.clone()), None).await?;
                    Ok(text(StatusCode::OK, cap.to_string()))
                }
                Node::Unknown(_) => Err(WebError::BadRequest("cannot upload to an unknown object".into())),
            }
        }
        "uri" => {
            let name = required(args, "name")?;
            let cap = Cap::parse(required(args, "uri")?.trim())?;
            fs.link(
                &target.fs_path()?,
                vec![(name.to_owned(), cap.clone(), None)],
                replace,
                None,
            )
            .await?;
            Ok(text(StatusCode::OK, cap.to_string()))
        }
        "unlink" | "delete" => {
            // Given but empty names the child whose name is empty (only a hand-written directory
            // holds one): it can be unlinked like any other (the layer finds names exactly).
            let name = args
                .get("name")
                .ok_or_else(|| WebError::BadRequest("this operation needs name=".into()))?;
            fs.remove_child(&target.fs_path()?, name).await?;
            Ok(text(StatusCode::OK, "thing unlinked".into()))
        }
        "rename" => {
            let from = required(args, "from_name")?;
            let to = required(args, "to_name")?;
            if to.contains('/') {
                return Err(WebError::BadRequest("to_name= may not contain a slash".into()));
            }
            let dir = target.fs_path()?;
            fs.rename_child(&dir, from, &dir, to, replace).await?;
            Ok(text(StatusCode::OK, "thing renamed".into()))
        }
        "relink" => {
            let from = required(args, "from_name")?;
            let to_name = args.get("to_name").filter(|n| !n.is_empty()).unwrap_or(from);
            if to_name.contains('/') {
                return Err(WebError::BadRequest("to_name= may not contain a slash".into()));
            }
            let dir = target.fs_path()?;
            let to_dir = match args.get("to_dir").filter(|d| !d.is_empty()) {
                None => dir.clone(),
                Some(text) => resolve_dir_path(text)?,
            };
            fs.rename_child(&dir, from, &to_dir, to_name, replace).await?;
            Ok(text(StatusCode::OK, "thing moved".into()))
        }
        "set_children" | "set-children" => {
            let children = parse_children(&body_bytes(payload).await?)?;
            let overwrite = args.replace_named("overwrite")?;
            fs.link(&target.fs_path()?, children, overwrite, None).await?;
            Ok(text(StatusCode::OK, "Okay set children".into()))
        }
        "" => Err(WebError::BadRequest("POST needs t=".into())),
        other => Err(WebError::BadRequest(format!(
            "POST to a directory with bad t={other}"
        ))),
    }
}
