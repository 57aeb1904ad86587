//! `/status`: the gateway's active and recent operations (Tahoe 1.20's `allmydata/web/status.py`
//! `Status`), as a page and as Tahoe's JSON (`{"active": [...], "recent": [...]}`, the items
//! `marshal_json` makes, which `tahoe status` parses), from the grid's operations registry
//! ([`filenode::operations`]). Items hold storage indexes, sizes, timings and server names:
//! never a cap.
//!
//! Each operation has its own page at Tahoe's address, `/status/up-N`, `down-N`, `publish-N`,
//! `retrieve-N` or `mapupdate-N` (N is the operation's `id`), linked from `/status`; Tahoe serves these in HTML
//! only, Tessera also as `?t=json` (the operation's `/status?t=json` item). An operation's page
//! lives as long as the registry keeps it (while active, then among the last [`RECENT_KEPT`]).
//!
//! `private/api_auth_token`: Tahoe's CLI sends it as the `token` form field of a `POST` (`tahoe
//! status` posts `t=json&token=…` to `/status` and `/statistics`), or as `Authorization:
//! tahoe-lafs <token>`. A `POST` to these pages must carry the node's token; a `GET` needs none
//! (as Tahoe's pages).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use filenode::operations::{OpKind, OpSnapshot, RECENT_KEPT};
use serde_json::{Map, Value, json};

use super::{WebError, WebState, ascii_json, html, human_size};

/// The largest form body `POST /status` and `POST /statistics` read.
const FORM_LIMIT: usize = 64 * 1024;

/// The most active operations the status lists (the rest are counted in the page's title only:
/// the frontends bound how many run at once, so this is rarely reached).
const ACTIVE_SHOWN: usize = 1_000;

/// The arguments of a status request: its query, and for a `POST` its urlencoded form, after
/// the token (when the request is a `POST`) has been checked.
pub(super) async fn arguments(
    state: &WebState,
    method: &Method,
    query: HashMap<String, String>,
    request: axum::extract::Request,
) -> Result<HashMap<String, String>, WebError> {
    let mut args = query;
    if method != Method::POST {
        return Ok(args);
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("tahoe-lafs "))
        .map(|v| v.trim().to_owned());
    let body = axum::body::to_bytes(request.into_body(), FORM_LIMIT)
        .await
        .map_err(|_| WebError::TooLarge(format!("the form is larger than {FORM_LIMIT} bytes")))?;
    let mut token = bearer;
    for (name, value) in super::fs::form_urlencoded_pairs(&body) {
        if name == "token" {
            token = Some(value);
        } else {
            args.insert(name, value);
        }
    }
    check_token(state, token.as_deref())?;
    Ok(args)
}

/// A `POST` must carry the node's `private/api_auth_token` (compared in constant time).
fn check_token(state: &WebState, given: Option<&str>) -> Result<(), WebError> {
    let Some(expected) = state.api_token.as_deref() else {
        return Err(WebError::Forbidden(
            "this node has no private/api_auth_token: POST is refused (GET needs no token)".into(),
        ));
    };
    let Some(given) = given else {
        return Err(WebError::Forbidden(
            "a POST needs the node's private/api_auth_token as the token field".into(),
        ));
    };
    let (a, b) = (expected.as_bytes(), given.trim().as_bytes());
    let differs = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
    if differs {
        return Err(WebError::Forbidden("wrong api_auth_token".into()));
    }
    Ok(())
}

/// `GET|POST /status[?t=json]`.
pub(super) async fn status(
    State(state): State<WebState>,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Result<Response, WebError> {
    let args = arguments(&state, &method, query, request).await?;
    let (mut active, recent) = state.grid.operations().snapshot();
    active.truncate(ACTIVE_SHOWN);
    match args.get("t").map(String::as_str) {
        Some("json") => {
            let body = status_json(&active, &recent);
            Ok((
                [(header::CONTENT_TYPE, "application/json")],
                ascii_json(&body) + "\n",
            )
                .into_response())
        }
        None | Some("") | Some("html") => status_page(&state, &active, &recent),
        Some(other) => Err(WebError::BadRequest(format!("unknown t={other} for /status"))),
    }
}

/// Tahoe's name of an operation page's kind (`/status/<prefix>-<id>`).
fn link_prefix(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Upload => "up",
        OpKind::Download => "down",
        OpKind::Publish => "publish",
        OpKind::Retrieve => "retrieve",
        OpKind::Mapupdate => "mapupdate",
        // Timed only, never listed; named for completeness.
        OpKind::Check => "check",
        OpKind::Verify => "verify",
        OpKind::Repair => "repair",
    }
}

/// An operation's page address relative to `/status/` (`up-7`).
fn link(op: &OpSnapshot) -> String {
    format!("{}-{}", link_prefix(op.kind), op.id)
}

/// `GET|POST /status/<kind>-<id>[?t=json]`: one operation, while the registry keeps it.
pub(super) async fn operation(
    State(state): State<WebState>,
    method: Method,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Result<Response, WebError> {
    let args = arguments(&state, &method, query, request).await?;
    let wanted = name
        .split_once('-')
        .and_then(|(prefix, id)| Some((prefix, id.parse::<u64>().ok()?)))
        .filter(|(prefix, _)| ["up", "down", "publish", "retrieve", "mapupdate"].contains(prefix));
    let Some((prefix, id)) = wanted else {
        return Err(WebError::BadRequest(
            "an operation's page is /status/up-N, down-N, publish-N, retrieve-N or mapupdate-N".into(),
        ));
    };
    let (active, recent) = state.grid.operations().snapshot();
    let Some(op) = active
        .iter()
        .chain(&recent)
        .find(|op| op.id == id && link_prefix(op.kind) == prefix)
    else {
        return Err(WebError::NotFound(format!(
            "no operation {prefix}-{id}: the gateway keeps the active operations and the last {RECENT_KEPT} \
             finished ones"
        )));
    };
    match args.get("t").map(String::as_str) {
        Some("json") => Ok((
            [(header::CONTENT_TYPE, "application/json")],
            ascii_json(&op_json(op)) + "\n",
        )
            .into_response()),
        None | Some("") | Some("html") => {
            let page = state.pages.render(
                "operation.html",
                minijinja::context! {
                    nickname => state.nickname.clone(),
                    op => op_row(op),
                },
            )?;
            Ok(html(page))
        }
        Some(_) => Err(WebError::BadRequest(
            "an operation's page supports t=json or no t".into(),
        )),
    }
}

/// Tahoe's `/status?t=json` (plus Tessera's `id`, `started`, `active`, `elapsed`, `timings` and
/// `servers` in each item, and a servermap update's `progress` and `per-server` times).
pub(super) fn status_json(active: &[OpSnapshot], recent: &[OpSnapshot]) -> Value {
    json!({
        "active": active.iter().map(op_json).collect::<Vec<_>>(),
        "recent": recent.iter().map(op_json).collect::<Vec<_>>(),
    })
}

fn op_json(op: &OpSnapshot) -> Value {
    let mut item = Map::new();
    item.insert(
        "storage-index-string".into(),
        op.storage_index.map(|si| si.to_string()).into(),
    );
    // Tahoe gives a servermap update no size.
    let size = match op.kind {
        OpKind::Mapupdate => "-NA-".into(),
        _ => op.size.into(),
    };
    item.insert("total-size".into(), size);
    item.insert("status".into(), op.status.clone().into());
    item.insert("type".into(), op.kind.name().into());
    match op.kind {
        OpKind::Upload => {
            item.insert("progress-hash".into(), op.progress[0].into());
            item.insert("progress-ciphertext".into(), op.progress[1].into());
            item.insert("progress-encode-push".into(), op.progress[2].into());
        }
        OpKind::Mapupdate => {
            item.insert("mode".into(), op.mode.unwrap_or("?").into());
            item.insert("progress".into(), op.progress[0].into());
        }
        OpKind::Download
        | OpKind::Publish
        | OpKind::Retrieve
        | OpKind::Check
        | OpKind::Verify
        | OpKind::Repair => {
            item.insert("progress".into(), op.progress[0].into());
        }
    }
    item.insert("id".into(), op.id.into());
    item.insert(
        "started".into(),
        op.started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
            .into(),
    );
    item.insert("active".into(), op.active.into());
    item.insert("elapsed".into(), op.elapsed.as_secs_f64().into());
    let mut timings = Map::new();
    for (name, took) in &op.timings {
        let sum = timings.get(*name).and_then(Value::as_f64).unwrap_or(0.0) + took.as_secs_f64();
        timings.insert((*name).to_owned(), sum.into());
    }
    item.insert("timings".into(), timings.into());
    item.insert("servers".into(), op.servers.clone().into());
    if op.kind == OpKind::Mapupdate {
        let per_server: Vec<Value> = op
            .server_timings
            .iter()
            .map(|(server, what, took)| json!({"server": server, "op": what, "time": took.as_secs_f64()}))
            .collect();
        item.insert("per-server".into(), per_server.into());
    }
    Value::Object(item)
}

/// `1.2 s`, `35 ms`, `120 µs`.
fn short_time(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.1} s")
    } else if secs >= 0.001 {
        format!("{:.0} ms", secs * 1000.0)
    } else {
        format!("{:.0} µs", secs * 1_000_000.0)
    }
}

/// What the pages show of an operation.
fn op_row(op: &OpSnapshot) -> minijinja::Value {
    let progress = match op.kind {
        OpKind::Upload => format!(
            "hash: {:.1}%, ciphertext: {:.1}%, encode: {:.1}%",
            op.progress[0] * 100.0,
            op.progress[1] * 100.0,
            op.progress[2] * 100.0
        ),
        _ => format!("{:.1}%", op.progress[0] * 100.0),
    };
    let started = op
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let size = match op.kind {
        OpKind::Mapupdate => "-NA-".to_owned(),
        _ => op.size.map(human_size).unwrap_or_else(|| "(unknown)".into()),
    };
    minijinja::context! {
        started => super::status::iso_time(started),
        type => op.kind.name(),
        si => op.storage_index.map(|si| si.to_string()).unwrap_or_else(|| "(None)".into()),
        size => size,
        mode => op.mode,
        server_timings => op.server_timings.iter().map(|(server, what, took)| minijinja::context! {
            server => server.clone(),
            what => *what,
            time => short_time(*took),
        }).collect::<Vec<_>>(),
        progress => progress,
        status => op.status.clone(),
        failed => op.status.starts_with("Failed"),
        timings => op.timings.iter().map(|(name, took)| minijinja::context! {
            name => *name,
            time => short_time(*took),
        }).collect::<Vec<_>>(),
        elapsed => short_time(op.elapsed),
        servers => op.servers.clone(),
        link => link(op),
        id => op.id,
        active => op.active,
    }
}

fn status_page(state: &WebState, active: &[OpSnapshot], recent: &[OpSnapshot]) -> Result<Response, WebError> {
    let rows = |ops: &[OpSnapshot]| -> Vec<minijinja::Value> { ops.iter().map(op_row).collect() };
    let lists = vec![
        minijinja::context! {
            id => "active",
            title => "Active operations",
            ops => rows(active),
            empty => "No active operations.",
        },
        minijinja::context! {
            id => "recent",
            title => "Recent operations",
            ops => rows(recent),
            empty => "No recent operations.",
        },
    ];
    let page = state.pages.render(
        "status.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            lists => lists,
            recent_kept => RECENT_KEPT,
        },
    )?;
    Ok(html(page))
}
