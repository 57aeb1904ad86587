//! `check`, `deep-check` and `manifest`: Tahoe-LAFS 1.20's commands of these names
//! (`allmydata/scripts/tahoe_check.py` and `tahoe_manifest.py`) over a gateway's web API, with the
//! same web calls (`POST …?t=check&output=JSON`, `t=stream-deep-check`, `t=stream-manifest`),
//! arguments, text output (Tahoe's quoting of paths and odd characters included) and exit status:
//! 0 when the gateway answered, even for an unhealthy file; 1 for a failed request or an `ERROR:`
//! line in a stream (`--raw` passes streams through and, as Tahoe, exits 0 after them).
//!
//! Deliberate differences from Tahoe, all about failures:
//! - an `ERROR:` line in a stream (a directory that could not be read) is reported once, as the
//!   command's one-line error with caps redacted, instead of copying it and everything after it
//!   (Tahoe's traceback) to standard error. JSON lines after it are still shown, because Tessera's
//!   gateway goes on with the rest of the tree, and `deep-check` still prints its `done:` counts;
//! - a stream line that is not JSON is an error (exit 1), where Tahoe's `deep-check` crashes and its
//!   `manifest` reports it and exits 0;
//! - `check --repair` reads the answer's shape (`repair-attempted` present or not), so a gateway
//!   that answers with plain check results is shown rather than crashing, and a LIT file's
//!   check-and-repair answer (which has no `pre-repair-results`) shows as healthy;
//! - with Tessera's gateway, which says why (`list-corrupt-share-reasons`, `repair-problem`), a
//!   corrupt share's line ends with `: REASON` and `repair failed` with `: PROBLEM`; against a
//!   Tahoe gateway the lines are Tahoe's.

use anyhow::Context;
use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use crate::aliases::DEFAULT_ALIAS;
use crate::cli_client::{Gateway, redact_caps};
use crate::cli_fs::{Exit, FileStore, about};
use crate::output;

/// What `check` and `deep-check` share: Tahoe's flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckFlags {
    /// Print the gateway's JSON (for deep-check: its stream of JSON lines) as it is.
    #[arg(long)]
    raw: bool,
    /// Verify every share's hashes (read every block), instead of only asking where shares are.
    #[arg(long)]
    verify: bool,
    /// Repair whatever the check finds a problem with.
    #[arg(long)]
    repair: bool,
    /// Add or renew this client's lease on every share found.
    #[arg(long)]
    add_lease: bool,
}

/// `tessera check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    flags: CheckFlags,
    /// What to check: ALIAS:path, a cap, CAP/path, or a path under `tahoe:` (default `tahoe:`);
    /// several are checked in turn.
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
}

/// `tessera deep-check`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeepCheckArgs {
    #[command(flatten)]
    flags: CheckFlags,
    /// Print one line per object checked, with its health.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// The directory to start from: ALIAS:path, a cap, CAP/path, or a path under `tahoe:`
    /// (default `tahoe:`); several are checked in turn.
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
}

/// `tessera manifest`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManifestArgs {
    /// Print only storage indexes, not caps and paths.
    #[arg(short = 's', long)]
    storage_index: bool,
    /// Print only verify caps, not caps and paths.
    #[arg(long)]
    verify_cap: bool,
    /// Print only repair caps, not caps and paths.
    #[arg(long)]
    repair_cap: bool,
    /// Print the gateway's stream of JSON lines as it is.
    #[arg(short = 'r', long)]
    raw: bool,
    /// The directory to start from: ALIAS:path, a cap, CAP/path, or a path under `tahoe:`
    /// (default `tahoe:`).
    #[arg(value_name = "TARGET")]
    target: Option<String>,
}

// ------------------------------------------------------------------------------- Tahoe's quoting

/// Characters Tahoe's `quote_output` prints as they are (outside the set: double quotes needed).
fn plain_char(c: char, newline_ok: bool) -> bool {
    matches!(c as u32, 0x20..=0x26 | 0x28..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFDCF | 0xFDF0..=0xFFFC)
        || (newline_ok && c == '\n')
}

/// Characters that stay unescaped inside Tahoe's double quotes.
fn unescaped_char(c: char) -> bool {
    matches!(c as u32, 0x20 | 0x21 | 0x23 | 0x25..=0x5B | 0x5D..=0x5F | 0x61..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFDCF | 0xFDF0..=0xFFFC)
}

/// Tahoe's `quote_output(text, quotemarks, quote_newlines)` for UTF-8 output: the text as it is,
/// or in single quotes (always with `quotemarks`, and when it starts with `"`), or in double
/// quotes with Python-style escapes when it holds a control character, `'`, or a character Tahoe
/// does not print plainly.
pub(crate) fn quote_output(text: &str, quotemarks: bool, quote_newlines: bool) -> String {
    if text.chars().all(|c| plain_char(c, !quote_newlines)) {
        return if quotemarks || text.starts_with('"') {
            format!("'{text}'")
        } else {
            text.to_owned()
        };
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        let code = c as u32;
        match c {
            _ if unescaped_char(c) => out.push(c),
            '"' | '$' | '`' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' if !quote_newlines => out.push(c),
            _ if code > 0xFFFF => out.push_str(&format!("\\U{code:08x}")),
            _ if code > 0xFF => out.push_str(&format!("\\u{code:04x}")),
            _ => out.push_str(&format!("\\x{code:02x}")),
        }
    }
    out.push('"');
    out
}

/// Tahoe's `quote_path`: the names joined with `/`, quoted with newlines escaped.
fn quote_path(path: &[String], quotemarks: bool) -> String {
    quote_output(&path.join("/"), quotemarks, true)
}

/// Python's `%r` of a JSON value, for the numbers Tahoe prints that way.
fn repr(value: &Value) -> String {
    match value {
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        Value::String(text) => format!("'{text}'"),
        other => other.to_string(),
    }
}

/// A string field as Tahoe prints it (`quote_output(.., quotemarks=False)`); non-strings as JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => quote_output(text, false, false),
        other => other.to_string(),
    }
}

fn path_of(object: &Value) -> Vec<String> {
    object
        .get("path")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .map(|n| n.as_str().map_or_else(|| n.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------- check

/// `server X, SI Y, shnum N` for each entry of `list-corrupt-shares`, with `: REASON` when the
/// gateway says why (Tessera's `list-corrupt-share-reasons`: the same triples, the reason last).
fn corrupt_shares(results: &Value) -> Vec<String> {
    let reasons: Vec<&Value> = results
        .get("list-corrupt-share-reasons")
        .and_then(Value::as_array)
        .map(|list| list.iter().collect())
        .unwrap_or_default();
    results
        .get("list-corrupt-shares")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|entry| {
                    let mut line = format!(
                        "server {}, SI {}, shnum {}",
                        plain(&entry[0]),
                        plain(&entry[1]),
                        repr(&entry[2])
                    );
                    let reason = reasons
                        .iter()
                        .find(|r| (0..3).all(|i| r.get(i) == entry.get(i)))
                        .and_then(|r| r.get(3));
                    if let Some(reason) = reason {
                        line.push_str(&format!(": {}", plain(reason)));
                    }
                    line
                })
                .collect()
        })
        .unwrap_or_default()
}

/// ` repair failed`, with `: PROBLEM` when the gateway says why (Tessera's `repair-problem`).
fn repair_failed(answer: &Value) -> String {
    match answer.get("repair-problem") {
        Some(problem) => format!(" repair failed: {}", plain(problem)),
        None => " repair failed".to_owned(),
    }
}

/// The share counts and corrupt shares of a check's `results`, as Tahoe prints them.
fn share_lines(results: &Value, lines: &mut Vec<String>) {
    let fields = [
        "count-shares-good",
        "count-shares-needed",
        "count-shares-expected",
        "count-wrong-shares",
    ];
    if fields.iter().all(|f| results.get(f).is_some()) {
        lines.push(format!(
            " good-shares: {} (encoding is {}-of-{})",
            repr(&results["count-shares-good"]),
            repr(&results["count-shares-needed"]),
            repr(&results["count-shares-expected"])
        ));
        lines.push(format!(" wrong-shares: {}", repr(&results["count-wrong-shares"])));
    }
    let corrupt = corrupt_shares(results);
    if !corrupt.is_empty() {
        lines.push(" corrupt shares:".to_owned());
        lines.extend(corrupt.into_iter().map(|c| format!("  {c}")));
    }
}

/// The text `tahoe check` prints for one answer of `t=check&output=JSON`: check results, or
/// check-and-repair results when the answer has `repair-attempted`.
fn check_text(data: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let storage_index = plain(data.get("storage-index").unwrap_or(&Value::String(String::new())));
    if let Some(attempted) = data.get("repair-attempted") {
        let pre = data.get("pre-repair-results");
        let results = pre.and_then(|p| p.get("results")).unwrap_or(&Value::Null);
        // A LIT file's answer has no pre-repair results: it is healthy.
        let healthy = results["healthy"].as_bool().unwrap_or(pre.is_none());
        lines.push(format!(
            "Summary: {}",
            if healthy { "healthy" } else { "not healthy" }
        ));
        lines.push(format!(" storage index: {storage_index}"));
        share_lines(results, &mut lines);
        if attempted.as_bool() == Some(true) {
            if data["repair-successful"].as_bool() == Some(true) {
                lines.push(" repair successful".to_owned());
            } else {
                lines.push(repair_failed(data));
            }
        }
    } else {
        // LIT files have no summary.
        let summary = data
            .get("summary")
            .map_or_else(|| "Healthy (LIT)".to_owned(), plain);
        lines.push(format!("Summary: {summary}"));
        lines.push(format!(" storage index: {storage_index}"));
        share_lines(data.get("results").unwrap_or(&Value::Null), &mut lines);
    }
    lines
}

/// `ARGUMENT` as a person sees it in messages (`tahoe:` for the default).
fn shown(target: &str) -> String {
    if target.is_empty() {
        format!("{DEFAULT_ALIAS}:")
    } else {
        target.to_owned()
    }
}

/// The URL of `target` (an argument resolved as the other commands resolve it) with `query`.
fn target_url(ctx: &FileStore, gateway: &Gateway, target: &str, query: &str) -> anyhow::Result<String> {
    let (root, path) = ctx.grid(target)?;
    // As Tahoe: `ALIAS:/` and `ALIAS:dir/` name the directory itself.
    let path = path.trim_end_matches('/');
    Ok(format!("{}?{query}", gateway.object(&root, path)))
}

fn flags(verify: bool, repair: bool, add_lease: bool) -> String {
    let mut query = String::new();
    for (on, flag) in [
        (verify, "&verify=true"),
        (repair, "&repair=true"),
        (add_lease, "&add-lease=true"),
    ] {
        if on {
            query.push_str(flag);
        }
    }
    query
}

impl CheckFlags {
    /// The query for `t=T` with these flags.
    fn query(&self, t: &str) -> String {
        format!("t={t}{}", flags(self.verify, self.repair, self.add_lease))
    }
}

/// The targets given, or the default alias (an empty target) when there are none.
fn targets_or_default(targets: &[String]) -> Vec<String> {
    if targets.is_empty() {
        vec![String::new()]
    } else {
        targets.to_vec()
    }
}

/// `tessera check`: each target in turn, stopping at the first that fails.
pub(crate) fn check(ctx: &FileStore, args: &CheckArgs) -> anyhow::Result<()> {
    let gateway = ctx.gateway()?;
    let targets = targets_or_default(&args.targets);
    let query = args.flags.query("check&output=JSON");
    for target in &targets {
        let url = target_url(ctx, &gateway, target, &query)?;
        let (_, body) = gateway
            .call(Method::POST, &url, Bytes::new())
            .map_err(|e| about(&shown(target), e))?;
        let text = String::from_utf8_lossy(&body);
        if args.flags.raw {
            output::line(&text)?;
            continue;
        }
        let data: Value = serde_json::from_str(&text).context("the gateway's check answer is not JSON")?;
        for line in check_text(&data) {
            output::line(&line)?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------- streams

/// What every streamed answer shares: `ERROR:` lines and lines that are not JSON.
#[derive(Debug, Default)]
struct StreamErrors {
    /// After an `ERROR:` line, Tahoe's gateway sends a traceback: lines that are not JSON.
    in_error: bool,
    /// One line per problem, caps redacted.
    errors: Vec<String>,
}

impl StreamErrors {
    /// The JSON object of a line, or `None` for an error line, an empty line or a traceback line.
    fn parse(&mut self, line: &str) -> Option<Value> {
        let line = line.trim_end_matches('\r');
        if line.starts_with("ERROR:") {
            self.in_error = true;
            self.errors.push(redact_caps(line));
            return None;
        }
        if line.trim().is_empty() {
            return None;
        }
        match serde_json::from_str(line) {
            Ok(value) => Some(value),
            Err(_) => {
                if !self.in_error {
                    let start: String = line.chars().take(80).collect();
                    self.errors.push(format!(
                        "the gateway sent a line that is not JSON: {}",
                        redact_caps(&start)
                    ));
                }
                None
            }
        }
    }

    /// The command's one-line error, if the stream had problems.
    fn result(&self, target: &str) -> anyhow::Result<()> {
        let Some(first) = self.errors.first() else {
            return Ok(());
        };
        let more = match self.errors.len() {
            1 => String::new(),
            n => format!(" (and {} more errors)", n - 1),
        };
        Err(Exit {
            code: 1,
            message: format!("{first}{more} (under {})", shown(target)),
        }
        .into())
    }
}

/// Splits a streamed body into lines and hands each to `each` (a last line without a newline too).
fn stream_lines(
    gateway: &Gateway,
    url: &str,
    target: &str,
    raw: bool,
    mut each: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let download = gateway
        .start(Method::POST, url)
        .map_err(|e| about(&shown(target), e))?;
    let mut pending: Vec<u8> = Vec::new();
    gateway.for_each_chunk(download, |chunk| {
        if raw {
            return output::raw(chunk);
        }
        pending.extend_from_slice(chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            each(&String::from_utf8_lossy(&line[..end]))?;
        }
        Ok(())
    })?;
    if !pending.is_empty() {
        each(&String::from_utf8_lossy(&pending))?;
    }
    Ok(())
}

/// `tahoe deep-check`'s running tally and the lines it prints.
#[derive(Debug, Default)]
struct DeepCheckTally {
    verbose: bool,
    repair: bool,
    stream: StreamErrors,
    objects: u64,
    healthy: u64,
    unhealthy: u64,
    post_healthy: u64,
    post_unhealthy: u64,
    repairs_attempted: u64,
    repairs_successful: u64,
}

impl DeepCheckTally {
    fn new(verbose: bool, repair: bool) -> DeepCheckTally {
        DeepCheckTally {
            verbose,
            repair,
            ..DeepCheckTally::default()
        }
    }

    /// The output lines for one line of the stream.
    fn line(&mut self, line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Some(object) = self.stream.parse(line) else {
            return out;
        };
        if !matches!(object["type"].as_str(), Some("file" | "directory")) {
            return out;
        }
        let repaired = object.get("check-and-repair-results");
        let checked = object.get("check-results");
        let (pre, summary) = match (repaired, checked) {
            (Some(crr), _) => {
                let pre = crr.get("pre-repair-results");
                (pre, pre.and_then(|p| p.get("summary")))
            }
            (None, Some(cr)) => (Some(cr), cr.get("summary")),
            (None, None) => {
                self.stream
                    .errors
                    .push("the gateway sent an object without check results".to_owned());
                return out;
            }
        };
        self.objects += 1;
        if self.objects.is_multiple_of(100) {
            out.push(format!("{} objects checked..", self.objects));
        }
        let healthy_in =
            |results: Option<&Value>| results.and_then(|r| r["results"]["healthy"].as_bool()) == Some(true);
        // LIT files (no storage index) count as healthy; their repair results have no
        // pre-repair part.
        let literal = object["storage-index"].as_str().unwrap_or("").is_empty();
        let was_healthy = if repaired.is_some() && literal {
            true
        } else {
            healthy_in(pre)
        };
        if was_healthy {
            self.healthy += 1;
        } else {
            self.unhealthy += 1;
        }
        let (attempted, successful) = match repaired {
            Some(crr) => (
                crr["repair-attempted"].as_bool() == Some(true),
                crr["repair-successful"].as_bool() == Some(true),
            ),
            None => (false, false),
        };
        if self.repair {
            let post_healthy = match repaired {
                Some(crr) if !literal => healthy_in(crr.get("post-repair-results")),
                _ => was_healthy,
            };
            if post_healthy {
                self.post_healthy += 1;
            } else {
                self.post_unhealthy += 1;
            }
            if attempted {
                self.repairs_attempted += 1;
                if successful {
                    self.repairs_successful += 1;
                }
            }
        }
        if self.verbose {
            let mut path = path_of(&object);
            if path.is_empty() {
                path = vec!["<root>".to_owned()];
            }
            let health = if self.repair {
                if was_healthy { "healthy" } else { "not healthy" }.to_owned()
            } else {
                summary.map_or_else(|| "Healthy (LIT)".to_owned(), plain)
            };
            out.push(format!("{}: {health}", quote_path(&path, true)));
        }
        let pre_results = pre.map_or(&Value::Null, |p| &p["results"]);
        out.extend(
            corrupt_shares(pre_results)
                .into_iter()
                .map(|c| format!(" corrupt: {c}")),
        );
        if self.repair && attempted {
            out.push(match (successful, repaired) {
                (true, _) => " repair successful".to_owned(),
                (false, Some(crr)) => repair_failed(crr),
                (false, None) => " repair failed".to_owned(),
            });
        }
        out
    }

    /// The closing lines.
    fn done(&self) -> Vec<String> {
        if !self.repair {
            return vec![format!(
                "done: {} objects checked, {} healthy, {} unhealthy",
                self.objects, self.healthy, self.unhealthy
            )];
        }
        vec![
            format!("done: {} objects checked", self.objects),
            format!(
                " pre-repair: {} healthy, {} unhealthy",
                self.healthy, self.unhealthy
            ),
            format!(
                " {} repairs attempted, {} successful, {} failed",
                self.repairs_attempted,
                self.repairs_successful,
                self.repairs_attempted - self.repairs_successful
            ),
            format!(
                " post-repair: {} healthy, {} unhealthy",
                self.post_healthy, self.post_unhealthy
            ),
        ]
    }
}

/// `tessera deep-check`: each target in turn; an `ERROR:` line makes the exit status 1.
pub(crate) fn deep_check(ctx: &FileStore, args: &DeepCheckArgs) -> anyhow::Result<()> {
    let gateway = ctx.gateway()?;
    let targets = targets_or_default(&args.targets);
    let query = args.flags.query("stream-deep-check");
    let mut failure = Ok(());
    for target in &targets {
        let url = target_url(ctx, &gateway, target, &query)?;
        let mut tally = DeepCheckTally::new(args.verbose, args.flags.repair);
        stream_lines(&gateway, &url, target, args.flags.raw, |line| {
            tally.line(line).iter().try_for_each(|l| output::line(l))
        })?;
        if !args.flags.raw {
            for line in tally.done() {
                output::line(&line)?;
            }
        }
        if failure.is_ok() {
            failure = tally.stream.result(target);
        }
    }
    failure
}

/// What `manifest` prints of each object.
#[derive(Debug, Clone, Copy)]
enum ManifestColumn {
    CapAndPath,
    StorageIndex,
    VerifyCap,
    RepairCap,
}

/// The output line of one stream line of `t=stream-manifest`, if it has one.
fn manifest_line(object: &Value, column: ManifestColumn) -> Option<String> {
    if !matches!(object["type"].as_str(), Some("file" | "directory")) {
        return None;
    }
    let only = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(|v| quote_output(v, false, false))
    };
    match column {
        ManifestColumn::StorageIndex => only("storage-index"),
        ManifestColumn::VerifyCap => only("verifycap"),
        ManifestColumn::RepairCap => only("repaircap"),
        ManifestColumn::CapAndPath => Some(format!(
            "{} {}",
            plain(&object["cap"]),
            quote_path(&path_of(object), false)
        )),
    }
}

/// `tessera manifest`.
pub(crate) fn manifest(ctx: &FileStore, args: &ManifestArgs) -> anyhow::Result<()> {
    let gateway = ctx.gateway()?;
    let target = args.target.clone().unwrap_or_default();
    let url = target_url(ctx, &gateway, &target, "t=stream-manifest")?;
    // Tahoe's precedence when several are given.
    let column = if args.storage_index {
        ManifestColumn::StorageIndex
    } else if args.verify_cap {
        ManifestColumn::VerifyCap
    } else if args.repair_cap {
        ManifestColumn::RepairCap
    } else {
        ManifestColumn::CapAndPath
    };
    let mut stream = StreamErrors::default();
    stream_lines(&gateway, &url, &target, args.raw, |line| {
        match stream
            .parse(line)
            .and_then(|object| manifest_line(&object, column))
        {
            Some(text) => output::line(&text),
            None => Ok(()),
        }
    })?;
    stream.result(&target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quotes_as_tahoe() {
        assert_eq!(quote_output("Healthy", false, false), "Healthy");
        assert_eq!(quote_output("Healthy", true, true), "'Healthy'");
        assert_eq!(quote_output("\"x", false, false), "'\"x'");
        assert_eq!(quote_output("naïve ☃", false, false), "naïve ☃");
        assert_eq!(quote_output("it's", false, false), "\"it's\"");
        assert_eq!(quote_output("a\"$`\\b'", true, true), "\"a\\\"\\$\\`\\\\b'\"");
        assert_eq!(quote_output("a\nb", false, false), "a\nb");
        assert_eq!(quote_output("a\nb", true, true), "\"a\\x0ab\"");
        assert_eq!(quote_output("tab\there", false, false), "\"tab\\x09here\"");
        assert_eq!(
            quote_output("\u{85}\u{fffe}😀", false, false),
            "\"\\x85\\ufffe\\U0001f600\""
        );
        assert_eq!(quote_path(&["<root>".to_owned()], true), "'<root>'");
        assert_eq!(
            quote_path(&["d".to_owned(), "f.txt".to_owned()], false),
            "d/f.txt"
        );
        assert_eq!(quote_path(&[], false), "");
    }

    fn results(healthy: bool, good: u64) -> Value {
        json!({
            "count-shares-good": good, "count-shares-needed": 3, "count-shares-expected": 10,
            "count-wrong-shares": 0, "healthy": healthy, "recoverable": true,
            "list-corrupt-shares": [],
        })
    }

    #[test]
    fn check_text_as_tahoe() {
        let data = json!({"storage-index": "abc", "summary": "Healthy", "results": results(true, 10)});
        assert_eq!(
            check_text(&data),
            [
                "Summary: Healthy",
                " storage index: abc",
                " good-shares: 10 (encoding is 3-of-10)",
                " wrong-shares: 0"
            ]
        );
        let lit = json!({"storage-index": "", "results": {"healthy": true}});
        assert_eq!(check_text(&lit), ["Summary: Healthy (LIT)", " storage index: "]);

        let mut bad = results(false, 9);
        bad["list-corrupt-shares"] = json!([["v0-server", "abc", 4]]);
        let repaired = json!({
            "storage-index": "abc", "repair-attempted": true, "repair-successful": true,
            "pre-repair-results": {"storage-index": "abc", "summary": "Not Healthy", "results": bad},
            "post-repair-results": {"storage-index": "abc", "summary": "Healthy", "results": results(true, 10)},
        });
        assert_eq!(
            check_text(&repaired),
            [
                "Summary: not healthy",
                " storage index: abc",
                " good-shares: 9 (encoding is 3-of-10)",
                " wrong-shares: 0",
                " corrupt shares:",
                "  server v0-server, SI abc, shnum 4",
                " repair successful"
            ]
        );
        let lit_repair = json!({"storage-index": "", "repair-attempted": false});
        assert_eq!(check_text(&lit_repair), ["Summary: healthy", " storage index: "]);
        // Tessera's gateway says why a share is corrupt and why a repair failed.
        let mut bad = results(false, 0);
        bad["list-corrupt-shares"] = json!([["v0-s", "abc", 4], ["v0-t", "abc", 5]]);
        bad["list-corrupt-share-reasons"] = json!([["v0-t", "abc", 5, "block 2 is corrupt"]]);
        let failed = json!({
            "storage-index": "abc", "repair-attempted": true, "repair-successful": false,
            "repair-problem": "the file is not recoverable: 0 good shares are left and 3 are needed",
            "pre-repair-results": {"storage-index": "abc", "summary": "Not Healthy", "results": bad},
            "post-repair-results": {"storage-index": "abc", "summary": "Not Healthy", "results": bad},
        });
        assert_eq!(
            check_text(&failed)[4..],
            [
                " corrupt shares:",
                "  server v0-s, SI abc, shnum 4",
                "  server v0-t, SI abc, shnum 5: block 2 is corrupt",
                " repair failed: the file is not recoverable: 0 good shares are left and 3 are needed"
            ]
        );
    }

    fn object(path: &[&str], si: &str, check: Value) -> String {
        json!({"type": "file", "path": path, "cap": "URI:CHK:x", "storage-index": si, "check-results": check})
            .to_string()
    }

    #[test]
    fn deep_check_tally_as_tahoe() {
        let mut tally = DeepCheckTally::new(true, false);
        let healthy = json!({"storage-index": "a", "summary": "Healthy", "results": results(true, 10)});
        let root = json!({"type": "directory", "path": [], "cap": "URI:DIR2:x", "storage-index": "r", "check-results": healthy});
        assert_eq!(tally.line(&root.to_string()), ["'<root>': Healthy"]);
        let mut bad = results(false, 7);
        bad["list-corrupt-shares"] = json!([["v0-s", "b", 2]]);
        let unhealthy =
            json!({"storage-index": "b", "summary": "Not Healthy: 7 shares (enc 3-of-10)", "results": bad});
        assert_eq!(
            tally.line(&object(&["d", "f"], "b", unhealthy)),
            [
                "'d/f': Not Healthy: 7 shares (enc 3-of-10)",
                " corrupt: server v0-s, SI b, shnum 2"
            ]
        );
        let lit = json!({"storage-index": "", "results": {"healthy": true}});
        assert_eq!(tally.line(&object(&["tiny"], "", lit)), ["'tiny': Healthy (LIT)"]);
        assert!(tally.line(r#"{"type": "stats", "stats": {}}"#).is_empty());
        assert_eq!(tally.done(), ["done: 3 objects checked, 2 healthy, 1 unhealthy"]);
        assert!(tally.stream.result("tahoe:").is_ok());

        // The 100th object brings a progress line; an ERROR line (and a traceback) fails the command.
        let mut quiet = DeepCheckTally::new(false, false);
        let healthy = json!({"storage-index": "a", "summary": "Healthy", "results": results(true, 10)});
        for i in 1..100 {
            assert!(
                quiet
                    .line(&object(&[&i.to_string()], "a", healthy.clone()))
                    .is_empty()
            );
        }
        assert_eq!(
            quiet.line(&object(&["x"], "a", healthy)),
            ["100 objects checked.."]
        );
        assert!(
            quiet
                .line("ERROR: NotEnoughSharesError(URI:DIR2:secret:x)")
                .is_empty()
        );
        assert!(quiet.line("Traceback (most recent call last):").is_empty());
        let error = quiet.stream.result("tahoe:d").unwrap_err().to_string();
        assert_eq!(error, "ERROR: NotEnoughSharesError(<cap>) (under tahoe:d)");
    }

    #[test]
    fn deep_check_and_repair_tally_as_tahoe() {
        let mut tally = DeepCheckTally::new(true, true);
        let crr = json!({
            "storage-index": "b", "repair-attempted": true, "repair-successful": false,
            "pre-repair-results": {"results": results(false, 7)},
            "post-repair-results": {"results": results(false, 8)},
        });
        let line =
            json!({"type": "file", "path": ["f"], "storage-index": "b", "check-and-repair-results": crr});
        assert_eq!(
            tally.line(&line.to_string()),
            ["'f': not healthy", " repair failed"]
        );
        let lit = json!({"type": "file", "path": ["l"], "storage-index": "", "check-and-repair-results": {"storage-index": "", "repair-attempted": false}});
        assert_eq!(tally.line(&lit.to_string()), ["'l': healthy"]);
        assert_eq!(
            tally.done(),
            [
                "done: 2 objects checked",
                " pre-repair: 1 healthy, 1 unhealthy",
                " 1 repairs attempted, 0 successful, 1 failed",
                " post-repair: 1 healthy, 1 unhealthy"
            ]
        );
    }

    #[test]
    fn manifest_lines_as_tahoe() {
        let root = json!({"type": "directory", "path": [], "cap": "URI:DIR2:a:b", "verifycap": "URI:DIR2-Verifier:c:d", "repaircap": "URI:DIR2:a:b", "storage-index": "si1"});
        let lit = json!({"type": "file", "path": ["sub", "tiny"], "cap": "URI:LIT:nbswy3dp", "verifycap": "", "repaircap": "", "storage-index": ""});
        assert_eq!(
            manifest_line(&root, ManifestColumn::CapAndPath).as_deref(),
            Some("URI:DIR2:a:b ")
        );
        assert_eq!(
            manifest_line(&lit, ManifestColumn::CapAndPath).as_deref(),
            Some("URI:LIT:nbswy3dp sub/tiny")
        );
        assert_eq!(
            manifest_line(&root, ManifestColumn::StorageIndex).as_deref(),
            Some("si1")
        );
        assert_eq!(manifest_line(&lit, ManifestColumn::StorageIndex), None);
        assert_eq!(
            manifest_line(&root, ManifestColumn::VerifyCap).as_deref(),
            Some("URI:DIR2-Verifier:c:d")
        );
        assert_eq!(manifest_line(&lit, ManifestColumn::RepairCap), None);
        assert_eq!(
            manifest_line(&json!({"type": "stats"}), ManifestColumn::CapAndPath),
            None
        );
        assert_eq!(
            manifest_line(
                &json!({"type": "unknown", "path": ["u"], "cap": "x"}),
                ManifestColumn::CapAndPath
            ),
            None
        );
    }
}
