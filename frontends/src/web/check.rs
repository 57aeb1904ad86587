//! Checking from the web API: `POST /uri/$CAP[/path]?t=check` (`verify=`, `add-lease=`,
//! `output=JSON`), `t=stream-deep-check` and `t=stream-manifest` (newline-delimited JSON, one line
//! per reachable object and a final `stats` line), with Tahoe's JSON shapes.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use filenode::cap::Cap;
use filenode::grid::check::{CheckOptions, CheckReport, RepairReport};
use filenode::node::DirNode;
use futures::StreamExt;
use serde_json::{Value, json};

use super::WebState;
use super::error::WebError;

/// The options of a check request.
pub(crate) fn options(verify: bool, add_lease: bool) -> CheckOptions {
    CheckOptions { verify, add_lease }
}

/// Tahoe's `json_check_and_repair_results`.
pub(crate) fn repair_json(report: &RepairReport) -> Value {
    if report.pre.storage_index.is_none() {
        return json!({"storage-index": "", "repair-attempted": false});
    }
    let mut value = json!({
        "storage-index": report.pre.storage_index.map(|si| si.to_string()).unwrap_or_default(),
        "repair-attempted": report.attempted,
        "repair-successful": report.successful,
        "pre-repair-results": report_json(&report.pre),
        "post-repair-results": report_json(&report.post),
    });
    if let Some(problem) = &report.problem {
        value["repair-problem"] = json!(problem);
    }
    value
}

/// Tahoe's `json_check_results`.
pub(crate) fn report_json(report: &CheckReport) -> Value {
    let Some(storage_index) = report.storage_index else {
        return json!({"storage-index": "", "results": {"healthy": true}});
    };
    let si = storage_index.to_string();
    let sharemap: BTreeMap<String, &Vec<String>> = report
        .sharemap
        .iter()
        .map(|(shnum, servers)| (format!("sh{shnum}"), servers))
        .collect();
    json!({
        "storage-index": si,
        "summary": report.summary(),
        "results": {
            "count-happiness": report.happiness,
            "count-shares-good": report.good_shares,
            "count-shares-needed": report.needed,
            "count-shares-expected": report.expected,
            "count-good-share-hosts": report.good_share_hosts,
            "count-corrupt-shares": report.corrupt.len(),
            "list-corrupt-shares": report
                .corrupt
                .iter()
                .map(|c| json!([c.server_id, si, c.shnum]))
                .collect::<Vec<_>>(),
            "servers-responding": report.servers_responding,
            "sharemap": sharemap,
            "count-wrong-shares": report.wrong_shares,
            "count-recoverable-versions": report.recoverable_versions,
            "count-unrecoverable-versions": report.unrecoverable_versions,
            "healthy": report.healthy,
            "recoverable": report.recoverable,
            // Tessera's additions: the outcome of add-lease=true.
            "count-leases-renewed": report.leases_renewed,
            "lease-failures": report
                .lease_failures
                .iter()
                .map(|(server, error)| json!([server, error]))
                .collect::<Vec<_>>(),
        }
    })
}

/// `t=check` on one object.
pub(crate) async fn check(
    state: &WebState,
    cap: &Cap,
    options: CheckOptions,
    repair: bool,
    json_output: bool,
) -> Result<Response, WebError> {
    let unknown = || WebError::BadRequest("this cap is of a kind this gateway cannot check".into());
    let (report, repaired) = if repair {
        let repaired = state
            .grid
            .check_and_repair(cap, options)
            .await
            .ok_or_else(unknown)?;
        (repaired.post.clone(), Some(repaired))
    } else {
        (state.grid.check(cap, options).await.ok_or_else(unknown)?, None)
    };
    if json_output {
        let body = match &repaired {
            Some(repaired) => repair_json(repaired),
            None => report_json(&report),
        };
        return Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response());
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut rows = Vec::new();
    if let Some(repaired) = &repaired {
        rows.push(("Before repair", repaired.pre.summary()));
        rows.push(("Repair attempted", yes_no(repaired.attempted)));
        if repaired.attempted {
            rows.push(("Repair successful", yes_no(repaired.successful)));
        }
        if let Some(problem) = &repaired.problem {
            rows.push(("Repair problem", problem.clone()));
        }
    }
    rows.push(("Healthy", yes_no(report.healthy)));
    rows.push(("Recoverable", yes_no(report.recoverable)));
    if report.storage_index.is_some() {
        rows.extend([
            (
                "Good shares",
                format!(
                    "{} (encoding {}-of-{})",
                    report.good_shares, report.needed, report.expected
                ),
            ),
            (
                "Servers holding good shares",
                format!("{} (happiness {})", report.good_share_hosts, report.happiness),
            ),
            ("Wrong shares", report.wrong_shares.to_string()),
            ("Corrupt shares", report.corrupt.len().to_string()),
            ("Recoverable versions", report.recoverable_versions.to_string()),
            (
                "Unrecoverable versions",
                report.unrecoverable_versions.to_string(),
            ),
        ]);
    }
    if options.add_lease {
        rows.push(("Leases added or renewed", report.leases_renewed.to_string()));
    }
    let page = state.pages.render(
        "check.html",
        minijinja::context! {
            summary => report.summary(),
            storage_index => report.storage_index.map(|si| si.to_string()).unwrap_or_default(),
            rows => rows,
            corrupt => report.corrupt.iter().map(|c| format!("share {} on {}: {}", c.shnum, c.server_id, c.reason)).collect::<Vec<_>>(),
            sharemap => report.sharemap.iter().map(|(shnum, servers)| (format!("sh{shnum}"), servers.join(", "))).collect::<Vec<_>>(),
        },
    )?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response())
}

/// The verify cap and storage index of a cap (`""` where there is none).
fn identity(cap: &Cap) -> (String, String) {
    let verifier = cap.verifier().map(|v| v.to_string()).unwrap_or_default();
    let storage_index = cap.storage_index().map(|si| si.to_string()).unwrap_or_default();
    (verifier, storage_index)
}

fn kind(cap: &Cap) -> &'static str {
    match cap {
        Cap::Dir(_) => "directory",
        Cap::File(_) => "file",
        Cap::Unknown(_) => "unknown",
    }
}

/// `t=stream-manifest` (`check: None`) and `t=stream-deep-check`: one JSON line per object found
/// from `dir`, then a `stats` line; an unreadable directory is an `ERROR:` line (Tahoe's form).
pub(crate) fn stream_deep(
    state: &WebState,
    dir: DirNode,
    check: Option<CheckOptions>,
    repair: bool,
) -> Response {
    let grid = std::sync::Arc::clone(&state.grid);
    let lines = async_stream_lines(grid, dir, check, repair);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(lines.map(Ok::<_, std::convert::Infallible>)),
    )
        .into_response()
}

fn async_stream_lines(
    grid: std::sync::Arc<filenode::grid::Grid>,
    dir: DirNode,
    check: Option<CheckOptions>,
    repair: bool,
) -> futures::stream::BoxStream<'static, String> {
    let stats = std::sync::Arc::new(std::sync::Mutex::new(Stats::default()));
    let totals = std::sync::Arc::clone(&stats);
    // The walk comes first (directories are read once each); then each object is checked and its
    // line sent as soon as it is known.
    futures::stream::once(async move { dir.manifest().await })
        .flat_map(futures::stream::iter)
        .then(move |entry| {
            let grid = std::sync::Arc::clone(&grid);
            let stats = std::sync::Arc::clone(&stats);
            async move {
                let (verifycap, storage_index) = identity(&entry.cap);
                let mut line = json!({
                    "type": kind(&entry.cap),
                    "path": entry.path,
                    "cap": entry.cap.to_string(),
                    "verifycap": verifycap,
                    "repaircap": entry.cap.to_string(),
                    "storage-index": storage_index,
                });
                let (report, repaired) = match check {
                    Some(options) if repair => match grid.check_and_repair(&entry.cap, options).await {
                        Some(repaired) => (Some(repaired.post.clone()), Some(repaired)),
                        None => (None, None),
                    },
                    Some(options) => (grid.check(&entry.cap, options).await, None),
                    None => (None, None),
                };
                {
                    let mut stats = stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    stats.count(&entry.cap);
                    if let Some(report) = &report {
                        stats.checked(report);
                    }
                }
                match (&repaired, &report) {
                    (Some(repaired), _) => {
                        stats
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .repaired(repaired);
                        line["check-and-repair-results"] = repair_json(repaired);
                    }
                    (None, Some(report)) => line["check-results"] = report_json(report),
                    (None, None) => {}
                }
                let mut text = format!("{line}\n");
                if let Some(error) = entry.error {
                    text.push_str(&format!("ERROR: a directory could not be read: {error}\n"));
                }
                text
            }
        })
        .chain(futures::stream::once(async move {
            let stats = totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            format!(
                "{}\n",
                json!({"type": "stats", "stats": stats.json(check.is_some(), repair)})
            )
        }))
        .boxed()
}

/// Counts for the final `stats` line.
#[derive(Default)]
struct Stats {
    directories: u64,
    files: u64,
    unknown: u64,
    checked: u64,
    healthy: u64,
    unhealthy: u64,
    unrecoverable: u64,
    corrupt_shares: u64,
    leases_renewed: u64,
    repairs_attempted: u64,
    repairs_successful: u64,
    repairs_unsuccessful: u64,
}

impl Stats {
    fn count(&mut self, cap: &Cap) {
        match cap {
            Cap::Dir(_) => self.directories += 1,
            Cap::File(_) => self.files += 1,
            Cap::Unknown(_) => self.unknown += 1,
        }
    }

    fn checked(&mut self, report: &CheckReport) {
        self.checked += 1;
        if report.healthy {
            self.healthy += 1;
        } else {
            self.unhealthy += 1;
        }
        if !report.recoverable {
            self.unrecoverable += 1;
        }
        self.corrupt_shares += report.corrupt.len() as u64;
        self.leases_renewed += report.leases_renewed as u64;
    }

    fn repaired(&mut self, report: &RepairReport) {
        if report.attempted {
            self.repairs_attempted += 1;
            if report.successful {
                self.repairs_successful += 1;
            } else {
                self.repairs_unsuccessful += 1;
            }
        }
    }

    fn json(&self, checked: bool, repaired: bool) -> Value {
        let mut stats = json!({
            "count-directories": self.directories,
            "count-files": self.files,
            "count-unknown": self.unknown,
        });
        if checked {
            stats["count-objects-checked"] = json!(self.checked);
            stats["count-objects-healthy"] = json!(self.healthy);
            stats["count-objects-unhealthy"] = json!(self.unhealthy);
            stats["count-objects-unrecoverable"] = json!(self.unrecoverable);
            stats["count-corrupt-shares"] = json!(self.corrupt_shares);
            stats["count-leases-renewed"] = json!(self.leases_renewed);
        }
        if repaired {
            stats["count-repairs-attempted"] = json!(self.repairs_attempted);
            stats["count-repairs-successful"] = json!(self.repairs_successful);
            stats["count-repairs-unsuccessful"] = json!(self.repairs_unsuccessful);
        }
        stats
    }
}
