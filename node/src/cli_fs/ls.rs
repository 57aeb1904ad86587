//! `tessera ls`: a directory's children (or one file), in Tahoe's formats (`-l`, `--json`, `--uri`, ...).

use storage::civil::civil_from_days;

use anyhow::Context;
use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use crate::cli_client::gateway_status;
use crate::output;

use super::{Exit, FileStore, about, node_kind, note, str_field};

/// `tessera ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// Long format: type and permissions, size, and when the link was made.
    #[arg(short = 'l', long)]
    long: bool,
    /// Show each object's cap.
    #[arg(long)]
    uri: bool,
    /// Show each object's read-only cap.
    #[arg(long)]
    readonly_uri: bool,
    /// Append '/' to directory names and '*' to mutable files.
    #[arg(short = 'F', long)]
    classify: bool,
    /// Print the gateway's JSON (`t=json`) as it is.
    #[arg(long)]
    json: bool,
    /// What to list: ALIAS:path, a cap, or a path under `tahoe:` (default `tahoe:`).
    path: Option<String>,
}

/// GNU `ls` style as Tahoe's `ls -l` prints it: `Nov 24 21:27`, or `Nov 24  2025` for times more
/// than six months ago. (Tahoe uses local time; this is UTC.)
fn format_link_time(unix: f64, now: f64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = unix.floor() as i64;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let month = MONTHS[(month - 1) as usize];
    if now - unix > 6.0 * 30.0 * 24.0 * 60.0 * 60.0 {
        format!("{month} {day:02}  {year}")
    } else {
        format!("{month} {day:02} {:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `tessera ls`.
pub(crate) fn ls(ctx: &FileStore, args: &LsArgs) -> anyhow::Result<()> {
    let mut target = args.path.clone().unwrap_or_default();
    if target.ends_with('/') {
        target.pop();
    }
    let (root, path) = ctx.grid(&target)?;
    let gateway = ctx.gateway()?;
    let url = gateway.object(&root, &path);
    let body = match gateway.call(Method::GET, &format!("{url}?t=json"), Bytes::new()) {
        Ok((_, body)) => body,
        Err(e) if gateway_status(&e) == Some(404) => {
            let shown = if target.is_empty() { "tahoe:" } else { &target };
            return Err(Exit {
                code: 2,
                message: format!("No such file or directory: {shown}: {e}"),
            }
            .into());
        }
        Err(e) => return Err(about(&target, e)),
    };
    if args.json {
        // As Tahoe: the gateway's text, then a newline.
        return output::line(&String::from_utf8_lossy(&body));
    }
    let json: Value = serde_json::from_slice(&body).context("the gateway's t=json answer is not JSON")?;
    let (kind, fields) = node_kind(&json)?;
    let children: Vec<(String, Value)> = if kind == "dirnode" {
        let mut children: Vec<(String, Value)> = fields
            .get("children")
            .and_then(Value::as_object)
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        children.sort_by(|a, b| a.0.cmp(&b.0));
        children
    } else {
        let name = path.rsplit('/').next().unwrap_or("").to_owned();
        vec![(name, json.clone())]
    };
    let now = unix_now();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut has_unknowns = false;
    let mut has_quoted = false;
    for (name, child) in &children {
        // A name only a hand-written directory holds (one no path can carry, or with control
        // characters that would forge lines or drive the terminal) is shown quoted with escapes,
        // as Tahoe shows names its terminal cannot print.
        let name = if filenode::node::unusable_as_path(name).is_some() || name.chars().any(char::is_control) {
            has_quoted = true;
            crate::cli_check::quote_output(name, true, true)
        } else {
            name.clone()
        };
        let child_kind = child.get(0).and_then(Value::as_str).unwrap_or("unknown");
        let details = child.get(1).cloned().unwrap_or(Value::Null);
        let metadata = details.get("metadata").cloned().unwrap_or(Value::Null);
        let link_time = |tahoe_key: &str, key: &str| {
            metadata["tahoe"][tahoe_key]
                .as_f64()
                .filter(|t| *t != 0.0)
                .or_else(|| metadata[key].as_f64().filter(|t| *t != 0.0))
        };
        let ctime = link_time("linkcrtime", "ctime");
        let rw_uri = str_field(&details, "rw_uri");
        let ro_uri = str_field(&details, "ro_uri");
        let ctime_s = ctime.map_or_else(|| "-".to_owned(), |t| format_link_time(t, now));
        let (t0, size, mut classify) = match child_kind {
            "dirnode" => ("d", "-".to_owned(), "/"),
            "filenode" => (
                "-",
                details
                    .get("size")
                    .filter(|s| !s.is_null())
                    .map_or_else(|| "?".to_owned(), |s| s.to_string()),
                if rw_uri.is_some() { "*" } else { "" },
            ),
            _ => {
                has_unknowns = true;
                ("?", "?".to_owned(), "?")
            }
        };
        let perms = format!(
            "{t0}{}{}{}",
            if ro_uri.is_some() { "r" } else { "-" },
            if rw_uri.is_some() { "w" } else { "-" },
            if child_kind == "dirnode" { "x" } else { "-" },
        );
        let mut line = Vec::new();
        if args.long {
            line.extend([perms, size, ctime_s]);
        }
        if !args.classify {
            classify = "";
        }
        line.push(format!("{name}{classify}"));
        if args.uri {
            line.push(rw_uri.clone().or_else(|| ro_uri.clone()).unwrap_or_default());
        }
        if args.readonly_uri {
            line.push(ro_uri.clone().unwrap_or_else(|| "-".to_owned()));
        }
        rows.push(line);
    }
    // Tahoe's layout: each column as wide as its widest cell, right-justified unless it holds caps
    // (or is the only column).
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    let mut left = vec![false; columns];
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
            if cell.starts_with("URI") {
                left[i] = true;
            }
        }
    }
    if columns == 1 {
        left[0] = true;
    }
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                if left[i] {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        output::line(cells.join(" ").trim_end())?;
    }
    if has_quoted {
        note(
            "\nThis listing included names that cannot be file names or that hold control characters.\nThey are shown in quotes, with backslash escapes.",
        );
    }
    if has_unknowns {
        note(
            "\nThis listing included unknown objects. Using a webapi server that supports\na later version of Tahoe may help.",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_times_look_like_tahoes() {
        // 2026-11-24 21:27:06 UTC.
        let t = 1_795_555_626.5;
        assert_eq!(format_link_time(t, t + 60.0), "Nov 24 21:27");
        assert_eq!(format_link_time(t, t + 200.0 * 86_400.0), "Nov 24  2026");
        assert_eq!(format_link_time(0.0, 1.0), "Jan 01 00:00");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
