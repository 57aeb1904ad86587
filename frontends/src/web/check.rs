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
use filenode::operations::OpKind;
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
        // A LIT file has nothing to repair (a single check answers with plain check results).
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
    // Tahoe's share ids: the share number for an immutable file, `seq<N>-<root>-sh<shnum>` (the
    // version, then the share) for a mutable one.
    let version = report.version.map(|(seqnum, root)| {
        let root = storage::base32::encode(&root);
        format!("seq{seqnum}-{}", &root[..4])
    });
    let sharemap: BTreeMap<String, &Vec<String>> = report
        .sharemap
        .iter()
        .map(|(shnum, servers)| {
            let id = match &version {
                Some(version) => format!("{version}-sh{shnum}"),
                None => shnum.to_string(),
            };
            (id, servers)
        })
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
            // Tessera's additions: why each corrupt share is corrupt, and shares that could not
            // be read whole during verification (as `list-corrupt-shares`, with the reason last);
            // the outcome of add-lease=true.
            "list-corrupt-share-reasons": report
                .corrupt
                .iter()
                .map(|c| json!([c.server_id, si, c.shnum, c.reason]))
                .collect::<Vec<_>>(),
            "list-unreadable-shares": report
                .unreadable
                .iter()
                .map(|c| json!([c.server_id, si, c.shnum, c.reason]))
                .collect::<Vec<_>>(),
            "count-leases-renewed": report.leases_renewed,
            "lease-failures": report
                .lease_failures
                .iter()
                .map(|(server, error)| json!([server, error]))
                .collect::<Vec<_>>(),
        }
    })
}

/// Checks an object, or checks and repairs it: the (post-repair) check and the repair report.
/// `None` for a cap of a kind this version cannot check. Every check, verify and repair (of one
/// object, or each of a deep check's) is timed into the operation duration histogram; a repair
/// attempted and not successful counts as a failed repair.
async fn check_or_repair(
    grid: &std::sync::Arc<filenode::grid::Grid>,
    cap: &Cap,
    options: CheckOptions,
    repair: bool,
) -> Option<(CheckReport, Option<RepairReport>)> {
    let started = std::time::Instant::now();
    let kind = match (repair, options.verify) {
        (true, _) => OpKind::Repair,
        (false, true) => OpKind::Verify,
        (false, false) => OpKind::Check,
    };
    let result = if repair {
        let repaired = grid.check_and_repair(cap, options).await?;
        (repaired.post.clone(), Some(repaired))
    } else {
        (grid.check(cap, options).await?, None)
    };
    let failed = result
        .1
        .as_ref()
        .is_some_and(|repaired| repaired.attempted && !repaired.successful);
    grid.operations().record_duration(kind, started.elapsed(), failed);
    Some(result)
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
    let (report, repaired) = check_or_repair(&state.grid, cap, options, repair)
        .await
        .ok_or_else(unknown)?;
    if json_output {
        let body = match &repaired {
            // As Tahoe's gateway: a LIT file's check with repair=true answers as a plain check.
            Some(repaired) if repaired.pre.storage_index.is_some() => repair_json(repaired),
            _ => report_json(&report),
        };
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            super::ascii_json(&body),
        )
            .into_response());
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
    // Servers by nickname, as the welcome page shows them.
    let nicknames: BTreeMap<String, String> = state
        .grid
        .servers_with_status()
        .into_iter()
        .map(|(entry, _)| (entry.server_id.clone(), entry.name()))
        .collect();
    let named = |id: &String| match nicknames.get(id) {
        Some(name) => format!("{name} ({id})"),
        None => id.clone(),
    };
    let page = state.pages.render(
        "check.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            summary => report.summary(),
            storage_index => report.storage_index.map(|si| si.to_string()).unwrap_or_default(),
            rows => rows,
            corrupt => report.corrupt.iter().map(|c| format!("share {} on {}: {}", c.shnum, named(&c.server_id), c.reason)).collect::<Vec<_>>(),
            sharemap => report.sharemap.iter().map(|(shnum, servers)| (format!("sh{shnum}"), servers.iter().map(named).collect::<Vec<_>>().join(", "))).collect::<Vec<_>>(),
        },
    )?;
    Ok(super::html(page))
}

/// The Check form's "everything in it" (`t=check&deep=true` on a directory): every object reachable
/// from `dir` checked (and repaired, with `repair`), on one page with a row per object.
pub(crate) async fn deep_check_page(
    state: &WebState,
    dir: DirNode,
    options: CheckOptions,
    repair: bool,
) -> Result<Response, WebError> {
    let entries = dir.manifest().await;
    let mut rows = Vec::with_capacity(entries.len());
    let (mut healthy, mut unhealthy, mut unrecoverable, mut repaired_count) = (0u64, 0u64, 0u64, 0u64);
    let mut errors = Vec::new();
    for entry in entries {
        let path = if entry.path.is_empty() {
            "<root>".to_owned()
        } else {
            entry.path.join("/")
        };
        if let Some(error) = &entry.error {
            errors.push(format!("{path}: {error}"));
        }
        let Some((report, repaired)) = check_or_repair(&state.grid, &entry.cap, options, repair).await else {
            continue;
        };
        if report.healthy {
            healthy += 1;
        } else {
            unhealthy += 1;
        }
        if !report.recoverable {
            unrecoverable += 1;
        }
        let repair_note = match &repaired {
            Some(r) if r.attempted && r.successful => {
                repaired_count += 1;
                "repaired".to_owned()
            }
            Some(r) if r.attempted => format!("repair failed: {}", r.problem.clone().unwrap_or_default()),
            _ => String::new(),
        };
        let href = format!(
            "/uri/{}?t=info",
            percent_encoding::utf8_percent_encode(&entry.cap.to_string(), percent_encoding::NON_ALPHANUMERIC)
        );
        rows.push(minijinja::context! {
            path => path,
            summary => report.summary(),
            healthy => report.healthy,
            shares => report.storage_index.map(|_| format!("{}/{}", report.good_shares, report.expected)).unwrap_or_default(),
            repair => repair_note,
            href => href,
        });
    }
    let page = state.pages.render(
        "deep-check.html",
        minijinja::context! {
            nickname => state.nickname.clone(),
            rows => rows,
            healthy => healthy,
            unhealthy => unhealthy,
            unrecoverable => unrecoverable,
            repaired => repair.then_some(repaired_count),
            errors => errors,
        },
    )?;
    Ok(super::html(page))
}

/// The verify cap, repair cap and storage index of a cap (`""` where there is none). The repair cap
/// is the weakest cap that can repair the object, as in Tahoe: an immutable file's verify cap, a
/// mutable file's write cap (and nothing for a read-only one or a LIT file).
fn identity(cap: &Cap) -> (String, String, String) {
    let verifier = cap.verifier().map(|v| v.to_string()).unwrap_or_default();
    let storage_index = cap.storage_index().map(|si| si.to_string()).unwrap_or_default();
    let file = match cap {
        Cap::File(file) => Some(file),
        Cap::Dir(dir) => Some(dir.file()),
        Cap::Unknown(_) => None,
    };
    let repaircap = match file {
        Some(filenode::cap::FileCap::Chk(_) | filenode::cap::FileCap::ChkVerifier(_)) => verifier.clone(),
        Some(filenode::cap::FileCap::Mutable(_)) if !cap.is_readonly() => cap.to_string(),
        _ => String::new(),
    };
    (verifier, repaircap, storage_index)
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
                let (verifycap, repaircap, storage_index) = identity(&entry.cap);
                let mut line = json!({
                    "type": kind(&entry.cap),
                    "path": entry.path,
                    "cap": entry.cap.to_string(),
                    "verifycap": verifycap,
                    "repaircap": repaircap,
                    "storage-index": storage_index,
                });
                let (report, repaired) = match check {
                    Some(options) => match check_or_repair(&grid, &entry.cap, options, repair).await {
                        Some((report, repaired)) => (Some(report), repaired),
                        None => (None, None),
                    },
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
                let mut text = format!("{}\n", super::ascii_json(&line));
                let failed = entry.error.is_some();
                if let Some(error) = entry.error {
                    // As Tahoe: the stream ends at an error, whose lines the client reports.
                    text.push_str(&format!("ERROR: a directory could not be read\n{error}\n"));
                    stats
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .ended = true;
                }
                (text, failed)
            }
        })
        .scan(false, |ended, (text, failed)| {
            let item = (!*ended).then_some(text);
            *ended |= failed;
            futures::future::ready(item)
        })
        .chain(futures::stream::once(async move {
            let stats = totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if stats.ended {
                return String::new();
            }
            format!(
                "{}\n",
                super::ascii_json(&json!({"type": "stats", "stats": stats.json(check.is_some(), repair)}))
            )
        }))
        .boxed()
}

/// Counts for the final `stats` line: Tahoe's deep-stats (`api-version` 1: object counts, sizes
/// of immutable and literal files, a histogram of file sizes) and, after a deep-check, the check
/// and repair counts.
#[derive(Default)]
struct Stats {
    directories: u64,
    files: u64,
    immutable_files: u64,
    mutable_files: u64,
    literal_files: u64,
    unknown: u64,
    size_immutable: u64,
    size_literal: u64,
    largest_immutable: u64,
    /// Files per size bucket, keyed by the bucket's lower bound.
    histogram: BTreeMap<u64, (u64, u64)>,
    checked: u64,
    healthy: u64,
    unhealthy: u64,
    unrecoverable: u64,
    corrupt_shares: u64,
    leases_renewed: u64,
    repairs_attempted: u64,
    repairs_successful: u64,
    repairs_unsuccessful: u64,
    /// The walk met an error and the stream ended there.
    ended: bool,
}

/// Tahoe's file-size buckets: (0,0), (1,3), (4,10), (11,31), (32,100), (101,316), ... two per
/// decade, each upper bound the next power of sqrt(10) (as a float, truncated).
fn size_bucket(size: u64) -> (u64, u64) {
    if size == 0 {
        return (0, 0);
    }
    let (mut low, mut high) = (1u64, 3u64);
    while size > high {
        low = high + 1;
        let mut power = 1.0f64;
        while power < low as f64 {
            power *= 10f64.sqrt();
        }
        high = power as u64;
    }
    (low, high)
}

impl Stats {
    fn count(&mut self, cap: &Cap) {
        match cap {
            Cap::Dir(_) => self.directories += 1,
            Cap::Unknown(_) => self.unknown += 1,
            Cap::File(file) => {
                self.files += 1;
                match file {
                    filenode::cap::FileCap::Mutable(_) => self.mutable_files += 1,
                    filenode::cap::FileCap::Lit(lit) => {
                        let size = lit.data.len() as u64;
                        self.literal_files += 1;
                        self.size_literal += size;
                        self.histogram_add(size);
                    }
                    other => {
                        let size = other.size().unwrap_or(0);
                        self.immutable_files += 1;
                        self.size_immutable += size;
                        self.largest_immutable = self.largest_immutable.max(size);
                        self.histogram_add(size);
                    }
                }
            }
        }
    }

    fn histogram_add(&mut self, size: u64) {
        let (low, high) = size_bucket(size);
        self.histogram.entry(low).or_insert((high, 0)).1 += 1;
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
            "api-version": 1,
            "count-immutable-files": self.immutable_files,
            "count-mutable-files": self.mutable_files,
            "count-literal-files": self.literal_files,
            "count-files": self.files,
            "count-directories": self.directories,
            "count-unknown": self.unknown,
            "size-immutable-files": self.size_immutable,
            "size-literal-files": self.size_literal,
            "largest-immutable-file": self.largest_immutable,
            "size-files-histogram": self
                .histogram
                .iter()
                .map(|(low, (high, count))| json!([low, high, count]))
                .collect::<Vec<_>>(),
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

#[cfg(test)]
mod tests {
    use super::size_bucket;

    #[test]
    fn size_buckets_are_tahoes() {
        let buckets: Vec<(u64, u64)> = [0, 1, 3, 4, 10, 11, 31, 32, 100, 101, 316, 317, 1000, 1001]
            .iter()
            .map(|s| size_bucket(*s))
            .collect();
        assert_eq!(
            buckets,
            [
                (0, 0),
                (1, 3),
                (1, 3),
                (4, 10),
                (4, 10),
                (11, 31),
                (11, 31),
                (32, 100),
                (32, 100),
                (101, 316),
                (101, 316),
                (317, 1000),
                (317, 1000),
                (1001, 3162)
            ]
        );
    }
}
