//! Node status for operators: a storage server's `/storage` page and JSON (Tahoe 1.20's shape,
//! `allmydata/web/storage.py`), the figures of `/statistics` for every node kind, and the small
//! web server of a node without a gateway (a storage-only node or an introducer): `/`,
//! `/storage`, `/statistics`.
//!
//! Nothing here sees a cap: a storage server holds none. Corruption advisories show their
//! storage index, share number, kind, time and the reporting client's reason (escaped in HTML).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use storage::ShareKind;
use storage::server::{
    ByKind, ExpirationMode, LeaseCheckerState, LeaseCycle, PERCENTILES, StorageServer, StorageStats,
};

use super::metrics::{Exposition, MetricsFormat};
use super::{Pages, TQuery, WebError, ascii_json, html, human_size};

/// The most corruption advisories the status shows (the newest); the total is always given.
pub const ADVISORIES_SHOWN: usize = 100;

/// Figures a node kind adds to `/statistics` and its status page (the introducer's).
pub trait StatusSource: Send + Sync + std::fmt::Debug {
    /// Its metric families.
    fn write_metrics(&self, out: &mut Exposition);
    /// Its Tahoe-style counters for `/statistics?t=json`.
    fn counters(&self) -> Vec<(String, u64)>;
    /// Lines for the node's front page: (label, value).
    fn summary(&self) -> Vec<(String, String)>;
    /// The node's own front page (`/` with the query's `t`), replacing the generic one when it
    /// has one (the introducer's welcome page and its `?t=json`).
    fn front_page(&self, _pages: &Pages, _t: Option<&str>) -> Option<Result<Response, WebError>> {
        None
    }
}

fn unix_float(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Tahoe's `get_stats()` keys of a storage server (`storage_server.*`).
pub fn tahoe_storage_stats(stats: &StorageStats) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(format!("storage_server.{key}"), value);
    };
    put("allocated", json!(stats.allocated));
    put("reserved_space", json!(stats.reserved_space));
    for op in stats.operations.iter().filter(|op| op.samplesize > 0) {
        let name = op.operation.name();
        put(&format!("latencies.{name}.samplesize"), json!(op.samplesize));
        put(&format!("latencies.{name}.mean"), json!(op.mean));
        for ((_, suffix, _), value) in PERCENTILES.iter().zip(op.percentiles) {
            put(&format!("latencies.{name}.{suffix}"), json!(value));
        }
    }
    if let Some(disk) = stats.disk {
        put("disk_total", json!(disk.total));
        put("disk_used", json!(disk.used));
        put("disk_free_for_root", json!(disk.free_for_root));
        put("disk_free_for_nonroot", json!(disk.free_for_nonroot));
        put("disk_avail", json!(disk.avail));
    }
    put(
        "accepting_immutable_shares",
        json!(u8::from(stats.accepting_immutable_shares)),
    );
    if let Some(count) = stats.bucket_count.filter(|c| *c > 0) {
        put("total_bucket_count", json!(count));
    }
    out
}

/// Tahoe's `space-recovered` dictionary.
fn space_recovered_json(cycle: &LeaseCycle) -> Value {
    let sr = &cycle.space_recovered;
    let mut out = Map::new();
    for (a, by_kind) in [
        ("actual", &sr.actual),
        ("original", &sr.original),
        ("configured", &sr.configured),
        ("examined", &sr.examined),
    ] {
        for (c, counts) in [
            ("", &by_kind.all),
            ("-mutable", &by_kind.mutable),
            ("-immutable", &by_kind.immutable),
        ] {
            for (b, value) in [
                ("buckets", counts.buckets),
                ("shares", counts.shares),
                ("sharebytes", counts.sharebytes),
                ("diskbytes", counts.diskbytes),
            ] {
                out.insert(format!("{a}-{b}{c}"), json!(value));
            }
        }
    }
    Value::Object(out)
}

/// Tahoe's `configured-expiration-mode`: `[mode, override_lease_duration, cutoff_date, sharetypes]`.
fn expiration_mode_json(cycle: &LeaseCycle) -> Value {
    let policy = cycle.policy;
    let (mode, duration, cutoff) = match policy.mode {
        ExpirationMode::Age {
            override_lease_duration,
        } => ("age", override_lease_duration.map(|d| d.as_secs()), None),
        ExpirationMode::CutoffDate(date) => ("cutoff-date", None, Some(unix_secs(date))),
    };
    let mut types = Vec::new();
    if policy.immutable {
        types.push("immutable");
    }
    if policy.mutable {
        types.push("mutable");
    }
    json!([mode, duration, cutoff, types])
}

/// One cycle in Tahoe's shape (a `history` entry, or `cycle-to-date` while it runs).
fn cycle_json(cycle: &LeaseCycle) -> Value {
    let histogram: Map<String, Value> = cycle
        .leases_per_share
        .iter()
        .map(|(leases, shares)| (leases.to_string(), json!(shares)))
        .collect();
    let corrupt: Vec<Value> = cycle
        .corrupt_shares
        .iter()
        .map(|(si, shnum)| json!([si.to_string(), shnum]))
        .collect();
    let mut out = json!({
        "expiration-enabled": cycle.expiration_enabled,
        "configured-expiration-mode": expiration_mode_json(cycle),
        "lease-age-histogram": [],
        "leases-per-share-histogram": histogram,
        "corrupt-shares": corrupt,
        "space-recovered": space_recovered_json(cycle),
    });
    if let Some(finished) = cycle.finished {
        out["cycle-start-finish-times"] = json!([unix_float(cycle.started), unix_float(finished)]);
    }
    out
}

/// The `lease-checker` state in Tahoe's shape, plus `state` and `last-cycle` (ours).
pub fn lease_checker_json(state: &LeaseCheckerState) -> Value {
    let history: Map<String, Value> = state
        .history
        .iter()
        .map(|cycle| (cycle.number.to_string(), cycle_json(cycle)))
        .collect();
    let mut out = json!({
        "state": if state.current.is_some() { "running" } else if state.history.is_empty() { "not-started" } else { "idle" },
        "last-cycle-finished": state.last().map(|c| c.number),
        "current-cycle": state.current.as_ref().map(|c| c.number),
        "current-cycle-start-time": state.current.as_ref().map(|c| unix_float(c.started)),
        "history": history,
        "last-cycle": state.last().map(cycle_json),
    });
    if let Some(current) = &state.current {
        out["cycle-to-date"] = cycle_json(current);
    }
    out
}

fn lease_checker_progress_json(state: &LeaseCheckerState) -> Value {
    let per_cycle = state.last().and_then(|c| {
        c.finished
            .and_then(|f| f.duration_since(c.started).ok())
            .map(|d| d.as_secs_f64())
    });
    match &state.current {
        Some(current) => json!({
            "cycle-in-progress": true,
            "cycle-complete-percentage": current.complete_percentage(),
            "estimated-time-per-cycle": per_cycle,
        }),
        None => json!({ "cycle-in-progress": false, "estimated-time-per-cycle": per_cycle }),
    }
}

fn kind_name(kind: ShareKind) -> &'static str {
    match kind {
        ShareKind::Immutable => "immutable",
        ShareKind::Mutable => "mutable",
    }
}

/// The advisories received, newest first (at most [`ADVISORIES_SHOWN`]), and how many there are.
fn advisories(server: &StorageServer) -> (Vec<Value>, usize) {
    let (newest, total) = server
        .recent_corruption_advisories(ADVISORIES_SHOWN)
        .unwrap_or_default();
    let shown = newest
        .iter()
        .rev()
        .map(|a| {
            json!({
                "storage_index": a.storage_index.to_string(),
                "share_number": a.shnum,
                "kind": kind_name(a.kind),
                "reason": a.reason,
                "time": unix_float(a.time),
            })
        })
        .collect();
    (shown, total)
}

/// `GET /storage?t=json`: Tahoe's `stats`, `bucket-counter`, `lease-checker` and
/// `lease-checker-progress`, plus `tessera` (our figures).
pub fn storage_json(server: &StorageServer) -> Value {
    let stats = server.stats();
    let lease_checker = server.lease_checker();
    let (advisories, advisory_count) = advisories(server);
    let operations: Map<String, Value> = stats
        .operations
        .iter()
        .map(|op| (op.operation.name().to_owned(), json!(op.count)))
        .collect();
    let status = &stats.status;
    json!({
        "stats": tahoe_storage_stats(&stats),
        "bucket-counter": { "last-complete-bucket-count": stats.bucket_count },
        "lease-checker": lease_checker_json(&lease_checker),
        "lease-checker-progress": lease_checker_progress_json(&lease_checker),
        "tessera": {
            "max_space": status.max_space,
            "used_space": status.used_space,
            "available_space": status.available_space,
            "readonly": status.readonly,
            "immutable_shares": status.immutable_shares,
            "mutable_shares": status.mutable_shares,
            "uploads_in_progress": status.uploads_in_progress,
            "buckets": stats.bucket_count,
            "operations": operations,
            "bytes_added": stats.bytes_added,
            "bytes_read": stats.bytes_read,
            "corruption_advisories": advisories,
            "corruption_advisory_count": advisory_count,
        },
    })
}

fn recovered_row(label: &str, by_kind: &ByKind) -> minijinja::Value {
    minijinja::context! {
        label => label,
        shares => by_kind.all.shares,
        buckets => by_kind.all.buckets,
        mutable => format!("{} / {}", by_kind.mutable.shares, human_size(by_kind.mutable.sharebytes)),
        immutable => format!("{} / {}", by_kind.immutable.shares, human_size(by_kind.immutable.sharebytes)),
        bytes => human_size(by_kind.all.sharebytes),
        diskbytes => human_size(by_kind.all.diskbytes),
    }
}

fn cycle_context(cycle: &LeaseCycle) -> minijinja::Value {
    let sr = &cycle.space_recovered;
    let ago = cycle
        .finished
        .and_then(|f| SystemTime::now().duration_since(f).ok())
        .map(|d| human_duration(d.as_secs()));
    minijinja::context! {
        number => cycle.number,
        percent => format!("{:.1}", cycle.complete_percentage()),
        finished_ago => ago,
        enabled => cycle.expiration_enabled,
        rows => vec![
            recovered_row("examined", &sr.examined),
            recovered_row(if cycle.expiration_enabled { "expired under the settings" } else { "would expire under the settings" }, &sr.configured),
            recovered_row("expired by the leases' own 31-day terms", &sr.original),
            recovered_row("actually deleted", &sr.actual),
        ],
        corrupt => cycle.corrupt_shares.iter().map(|(si, shnum)| format!("{si} share {shnum}")).collect::<Vec<_>>(),
    }
}

/// `3 h 5 min`, `42 s`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs / 60 % 60),
        _ => format!("{} d {} h", secs / 86_400, secs / 3600 % 24),
    }
}

fn mode_text(server: &StorageServer) -> String {
    let policy = server.config().expiration;
    let mut text = match policy.mode {
        ExpirationMode::Age {
            override_lease_duration: None,
        } => "Leases expire 31 days after they were created or last renewed.".to_owned(),
        ExpirationMode::Age {
            override_lease_duration: Some(d),
        } => format!(
            "Leases created or last renewed more than {} ago count as expired.",
            human_duration(d.as_secs())
        ),
        ExpirationMode::CutoffDate(date) => format!(
            "Leases created or last renewed before {} (Unix time) count as expired.",
            unix_secs(date)
        ),
    };
    let kinds = match (policy.immutable, policy.mutable) {
        (true, true) => " Immutable and mutable shares are subject to expiry.",
        (true, false) => " Only immutable shares are subject to expiry.",
        (false, true) => " Only mutable shares are subject to expiry.",
        (false, false) => " No share kind is subject to expiry.",
    };
    text.push_str(kinds);
    text
}

/// The `/storage` HTML page.
pub fn storage_page(pages: &Pages, server: &StorageServer, nickname: &str) -> Result<String, WebError> {
    let stats = server.stats();
    let lease_checker = server.lease_checker();
    let (advisories, advisory_count) = advisories(server);
    let space = |v: Option<u64>| match v {
        Some(v) => format!("{} ({v} bytes)", human_size(v)),
        None => "?".to_owned(),
    };
    let disk = stats.disk;
    let status = &stats.status;
    let latencies: Vec<minijinja::Value> = stats
        .operations
        .iter()
        .map(|op| {
            let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |s| format!("{:.2}", s * 1000.0));
            minijinja::context! {
                name => op.operation.name(),
                count => op.count,
                samples => op.samplesize,
                mean => ms(op.mean),
                p50 => ms(op.percentiles[2]),
                p90 => ms(op.percentiles[3]),
                p99 => ms(op.percentiles[5]),
            }
        })
        .collect();
    let advisories: Vec<minijinja::Value> = advisories
        .iter()
        .map(|a| {
            minijinja::context! {
                storage_index => a["storage_index"].as_str(),
                share_number => a["share_number"].as_u64(),
                kind => a["kind"].as_str(),
                reason => a["reason"].as_str(),
                time => a["time"].as_f64().map(|t| iso_time(t as u64)),
            }
        })
        .collect();
    pages.render(
        "storage.html",
        minijinja::context! {
            nickname => nickname,
            node_id => storage::base32::encode(&server.config().node_id),
            accepting => stats.accepting_immutable_shares,
            readonly => status.readonly,
            disk_total => space(disk.map(|d| d.total)),
            disk_used => space(disk.map(|d| d.used)),
            disk_free_for_root => space(disk.map(|d| d.free_for_root)),
            disk_free_for_nonroot => space(disk.map(|d| d.free_for_nonroot)),
            reserved_space => space(Some(stats.reserved_space)),
            disk_avail => space(disk.map(|d| d.avail)),
            max_space => status.max_space.map_or_else(|| "no limit".to_owned(), |m| space(Some(m))),
            used_space => space(Some(status.used_space)),
            available_space => space(Some(status.available_space)),
            immutable_shares => status.immutable_shares,
            mutable_shares => status.mutable_shares,
            uploads => status.uploads_in_progress,
            buckets => stats.bucket_count,
            expiration_enabled => server.config().expiration.enabled,
            mode_text => mode_text(server),
            current => lease_checker.current.as_ref().map(cycle_context),
            last => lease_checker.last().map(cycle_context),
            latencies => latencies,
            advisories => advisories,
            advisory_count => advisory_count,
            advisories_shown => ADVISORIES_SHOWN,
        },
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn iso_time(secs: u64) -> String {
    let (year, month, day) = storage::civil::civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// A storage server's metric families: Tahoe's `tahoe_stats_storage_server_*` and
/// `tahoe_counters_storage_server_*` names, and ours (`tessera_storage_*`).
pub fn write_storage_metrics(out: &mut Exposition, server: &StorageServer) {
    let stats = server.stats();
    let status = &stats.status;
    let tahoe = |out: &mut Exposition, key: &str, help: &str, value: f64| {
        out.gauge(&format!("tahoe_stats_storage_server_{key}"), help, &[("", value)]);
    };
    tahoe(
        out,
        "accepting_immutable_shares",
        "1 if the server accepts new immutable shares.",
        f64::from(u8::from(stats.accepting_immutable_shares)),
    );
    tahoe(
        out,
        "allocated",
        "Bytes reserved for immutable uploads in progress.",
        stats.allocated as f64,
    );
    tahoe(
        out,
        "reserved_space",
        "Bytes of disk kept free ([storage] reserved_space).",
        stats.reserved_space as f64,
    );
    if let Some(disk) = stats.disk {
        // Tahoe's `..._disk_total` and `..._total_bucket_count` break Prometheus's naming rules
        // (`_total` is for counters, `_count` for summaries): those two are ours.
        out.gauge(
            "tessera_storage_disk_size_bytes",
            "Size of the storage disk in bytes (Tahoe's storage_server.disk_total).",
            &[("", disk.total as f64)],
        );
        tahoe(
            out,
            "disk_used",
            "Bytes used on the storage disk.",
            disk.used as f64,
        );
        tahoe(
            out,
            "disk_free_for_root",
            "Bytes free on the storage disk.",
            disk.free_for_root as f64,
        );
        tahoe(
            out,
            "disk_free_for_nonroot",
            "Bytes free on the storage disk for unprivileged users.",
            disk.free_for_nonroot as f64,
        );
        tahoe(
            out,
            "disk_avail",
            "Bytes available for shares: free for non-root minus the reserved space.",
            disk.avail as f64,
        );
    }
    if let Some(count) = stats.bucket_count {
        out.gauge(
            "tessera_storage_buckets",
            "Buckets counted by the last lease-checker cycle (Tahoe's storage_server.total_bucket_count).",
            &[("", count as f64)],
        );
    }
    for op in &stats.operations {
        let name = op.operation.name().replace('-', "_");
        // Tahoe's percentile keys as quantile labels (`01_0_percentile` → "0.010").
        let quantiles: Vec<(String, f64)> = PERCENTILES
            .iter()
            .zip(op.percentiles)
            .map(|((_, suffix, _), value)| {
                let digits: String = suffix.chars().filter(char::is_ascii_digit).collect();
                (format!("0.{digits}"), value.unwrap_or(f64::NAN))
            })
            .collect();
        let quantiles: Vec<(&str, f64)> = quantiles.iter().map(|(q, v)| (q.as_str(), *v)).collect();
        out.summary(
            &format!("tahoe_stats_storage_server_latencies_{name}"),
            &format!(
                "Seconds per {} operation (quantiles over the last 1000).",
                op.operation.name()
            ),
            &quantiles,
            op.total_seconds,
            op.count,
        );
        out.untyped(
            &format!("tahoe_counters_storage_server_{name}"),
            &format!("{} operations since the server started.", op.operation.name()),
            op.count as f64,
        );
    }
    out.untyped(
        "tahoe_counters_storage_server_bytes_added",
        "Bytes written to shares since the server started.",
        stats.bytes_added as f64,
    );
    out.counter(
        "tessera_storage_read_bytes",
        "Bytes of share data read since the server started.",
        &[("", stats.bytes_read as f64)],
    );
    out.gauge(
        "tessera_storage_max_space_bytes",
        "[storage] max_space, or NaN when there is no limit.",
        &[("", status.max_space.map_or(f64::NAN, |m| m as f64))],
    );
    out.gauge(
        "tessera_storage_used_bytes",
        "Bytes of share containers held.",
        &[("", status.used_space as f64)],
    );
    out.gauge(
        "tessera_storage_available_bytes",
        "The largest immutable share accepted now (what the server advertises).",
        &[("", status.available_space as f64)],
    );
    out.gauge(
        "tessera_storage_shares",
        "Shares held, by kind.",
        &[
            ("{kind=\"immutable\"}", status.immutable_shares as f64),
            ("{kind=\"mutable\"}", status.mutable_shares as f64),
        ],
    );
    out.gauge(
        "tessera_storage_uploads_in_progress",
        "Immutable uploads open.",
        &[("", status.uploads_in_progress as f64)],
    );
    out.gauge(
        "tessera_storage_readonly",
        "1 if the server refuses writes ([storage] readonly).",
        &[("", f64::from(u8::from(status.readonly)))],
    );
    let advisories = server
        .recent_corruption_advisories(0)
        .map(|(_, total)| total)
        .unwrap_or(0);
    out.gauge(
        "tessera_storage_corruption_advisories",
        "Corruption advisories received and kept in corruption-advisories/.",
        &[("", advisories as f64)],
    );
    let lease_checker = server.lease_checker();
    out.gauge(
        "tessera_storage_lease_checker_expiration_enabled",
        "1 if expired leases are removed ([storage] expire.enabled), 0 in scan-only mode.",
        &[("", f64::from(u8::from(server.config().expiration.enabled)))],
    );
    out.gauge(
        "tessera_storage_lease_checker_cycle_in_progress",
        "1 while a lease-checker cycle runs.",
        &[("", f64::from(u8::from(lease_checker.current.is_some())))],
    );
    if let Some(last) = lease_checker.last() {
        let sr = &last.space_recovered;
        let figures = |by: &ByKind| -> [f64; 2] { [by.all.shares as f64, by.all.sharebytes as f64] };
        let rows = [
            ("examined", figures(&sr.examined)),
            ("configured", figures(&sr.configured)),
            ("original", figures(&sr.original)),
            ("actual", figures(&sr.actual)),
        ];
        let shares: Vec<(String, f64)> = rows
            .iter()
            .map(|(which, [n, _])| (format!("{{figure=\"{which}\"}}"), *n))
            .collect();
        let bytes: Vec<(String, f64)> = rows
            .iter()
            .map(|(which, [_, b])| (format!("{{figure=\"{which}\"}}"), *b))
            .collect();
        let refs = |v: &[(String, f64)]| -> Vec<(String, f64)> { v.to_vec() };
        let shares = refs(&shares);
        let bytes = refs(&bytes);
        out.gauge(
            "tessera_storage_lease_checker_last_cycle_shares",
            "The last lease-checker cycle: shares examined, expired under the settings (configured; in scan-only mode what would be), by their own terms (original), and deleted (actual).",
            &shares.iter().map(|(l, v)| (l.as_str(), *v)).collect::<Vec<_>>(),
        );
        out.gauge(
            "tessera_storage_lease_checker_last_cycle_bytes",
            "The last lease-checker cycle's figures in share bytes (see ..._last_cycle_shares).",
            &bytes.iter().map(|(l, v)| (l.as_str(), *v)).collect::<Vec<_>>(),
        );
        if let Some(finished) = last.finished {
            out.gauge(
                "tessera_storage_lease_checker_last_cycle_finished_seconds",
                "When the last lease-checker cycle finished (Unix time).",
                &[("", unix_float(finished))],
            );
        }
    }
}

/// `/statistics?t=json` in Tahoe's shape: `{"stats": {...}, "counters": {...}}`.
pub fn statistics_json(
    started: Instant,
    storage: Option<&StorageServer>,
    counters: Vec<(String, u64)>,
) -> Value {
    let mut stats = Map::new();
    stats.insert("node.uptime".into(), json!(started.elapsed().as_secs_f64()));
    let mut counter_map = Map::new();
    if let Some(server) = storage {
        let storage_stats = server.stats();
        stats.extend(tahoe_storage_stats(&storage_stats));
        for op in &storage_stats.operations {
            counter_map.insert(format!("storage_server.{}", op.operation.name()), json!(op.count));
        }
        counter_map.insert(
            "storage_server.bytes_added".into(),
            json!(storage_stats.bytes_added),
        );
    }
    for (name, value) in counters {
        counter_map.insert(name, json!(value));
    }
    json!({ "stats": stats, "counters": counter_map })
}

/// The node's uptime family (Tahoe's `node.uptime`).
pub fn write_uptime(out: &mut Exposition, started: Instant) {
    out.gauge(
        "tahoe_stats_node_uptime",
        "Seconds since the node started.",
        &[("", started.elapsed().as_secs_f64())],
    );
}

/// Answers `/statistics` in the asked format from a closure that writes the metric families.
pub(super) fn statistics_response(
    query: &TQuery,
    headers: &HeaderMap,
    write: impl FnOnce(&mut Exposition),
    json: impl FnOnce() -> Value,
) -> Result<Response, WebError> {
    match query.t.as_deref() {
        Some("openmetrics") => {
            let format =
                MetricsFormat::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
            let mut out = Exposition::new(format);
            write(&mut out);
            Ok(([(header::CONTENT_TYPE, format.content_type())], out.finish()).into_response())
        }
        Some("json") => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", ascii_json(&json())),
        )
            .into_response()),
        _ => Err(WebError::BadRequest(
            "GET /statistics supports t=openmetrics and t=json".into(),
        )),
    }
}

/// Answers `/storage` (HTML) and `/storage?t=json`.
pub(super) fn storage_response(
    pages: &Pages,
    storage: Option<&Arc<StorageServer>>,
    nickname: &str,
    query: &TQuery,
) -> Result<Response, WebError> {
    let Some(server) = storage else {
        return Err(WebError::NotFound("this node runs no storage server".into()));
    };
    match query.t.as_deref() {
        None => Ok(html(storage_page(pages, server, nickname)?)),
        Some("json") => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", ascii_json(&storage_json(server))),
        )
            .into_response()),
        Some(other) => Err(WebError::BadRequest(format!("unknown t={other} for /storage"))),
    }
}

/// What the web server of a node without a gateway serves.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The node's nickname.
    pub nickname: String,
    /// The page renderer.
    pub pages: Arc<Pages>,
    /// The node's storage server, if it runs one.
    pub storage: Option<Arc<StorageServer>>,
    /// Other figures (the introducer's).
    pub source: Option<Arc<dyn StatusSource>>,
    /// When the node started.
    pub started: Instant,
}

impl NodeStatus {
    /// A node's status with the built-in templates.
    pub fn new(nickname: impl Into<String>) -> Self {
        NodeStatus {
            nickname: nickname.into(),
            pages: Arc::new(Pages::new()),
            storage: None,
            source: None,
            started: Instant::now(),
        }
    }
}

/// The router of a node without a gateway: `/` (what the node is), `/storage`, `/statistics`.
pub fn status_router(state: NodeStatus) -> Router {
    Router::new()
        .route("/", get(node_page))
        .route("/storage", get(node_storage))
        .route("/statistics", get(node_statistics))
        .with_state(state)
        .layer(axum::middleware::map_response(super::security_headers))
}

async fn node_page(
    State(state): State<NodeStatus>,
    Query(query): Query<TQuery>,
) -> Result<Response, WebError> {
    if let Some(page) = state
        .source
        .as_ref()
        .and_then(|source| source.front_page(&state.pages, query.t.as_deref()))
    {
        return page;
    }
    let summary: Vec<minijinja::Value> = state
        .source
        .as_ref()
        .map(|source| source.summary())
        .unwrap_or_default()
        .into_iter()
        .map(|(label, value)| minijinja::context! { label => label, value => value })
        .collect();
    let page = state.pages.render(
        "node.html",
        minijinja::context! {
            nickname => state.nickname,
            version => concat!("tessera/", env!("CARGO_PKG_VERSION")),
            storage => state.storage.is_some(),
            summary => summary,
            uptime => human_duration(state.started.elapsed().as_secs()),
        },
    )?;
    Ok(html(page))
}

async fn node_storage(
    State(state): State<NodeStatus>,
    Query(query): Query<TQuery>,
) -> Result<Response, WebError> {
    let pages = Arc::clone(&state.pages);
    tokio::task::spawn_blocking(move || {
        storage_response(&pages, state.storage.as_ref(), &state.nickname, &query)
    })
    .await
    .map_err(|e| WebError::Internal(format!("the storage status failed: {e}")))?
}

async fn node_statistics(
    State(state): State<NodeStatus>,
    Query(query): Query<TQuery>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    tokio::task::spawn_blocking(move || {
        statistics_response(
            &query,
            &headers,
            |out| {
                write_uptime(out, state.started);
                if let Some(server) = &state.storage {
                    write_storage_metrics(out, server);
                }
                if let Some(source) = &state.source {
                    source.write_metrics(out);
                }
            },
            || {
                let counters = state.source.as_ref().map(|s| s.counters()).unwrap_or_default();
                statistics_json(state.started, state.storage.as_deref(), counters)
            },
        )
    })
    .await
    .map_err(|e| WebError::Internal(format!("the statistics failed: {e}")))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(super::iso_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::iso_time(1_800_000_000), "2027-01-15 08:00:00 UTC");
        assert_eq!(super::iso_time(951_868_799), "2000-02-29 23:59:59 UTC");
    }
}
