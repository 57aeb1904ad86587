//! Corruption advisories (tahoe-interfaces.md §2.10): when a client reports a share it holds as
//! corrupt, the server writes a small UTF-8 report to
//! `corruption-advisories/<ISO time without colons>--<SI>-<shnum>`, as Tahoe does:
//!
//! ```text
//! report: Share Corruption
//! type: immutable
//! storage_index: <SI>
//! share_number: <shnum>
//!
//! <reason>
//! ```
//!
//! Nothing is deleted; operators act on the reports.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::civil::{civil_from_days, days_from_civil};
use crate::{ShareKind, ShareNum, StorageIndex};

/// One recorded corruption report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptionAdvisory {
    /// When it was received (microsecond precision).
    pub time: SystemTime,
    /// The share's kind.
    pub kind: ShareKind,
    /// The share's storage index.
    pub storage_index: StorageIndex,
    /// The share number.
    pub shnum: ShareNum,
    /// The client's explanation.
    pub reason: String,
}

fn kind_name(kind: ShareKind) -> &'static str {
    match kind {
        ShareKind::Immutable => "immutable",
        ShareKind::Mutable => "mutable",
    }
}

/// The report text.
pub(super) fn render(advisory: &CorruptionAdvisory) -> String {
    format!(
        "report: Share Corruption\ntype: {}\nstorage_index: {}\nshare_number: {}\n\n{}\n",
        kind_name(advisory.kind),
        advisory.storage_index,
        advisory.shnum,
        advisory.reason
    )
}

/// `YYYY-MM-DDTHHMMSS.ffffff` (UTC; Tahoe's `iso_utc(sep="T")` with the colons removed).
pub(super) fn format_time(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}{:02}{:02}.{:06}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_micros()
    )
}

/// Parses [`format_time`]'s output (the fraction is optional, as Tahoe omits a zero one).
pub(super) fn parse_time(text: &str) -> Option<SystemTime> {
    let (main, fraction) = match text.split_once('.') {
        Some((main, fraction)) => (main, Some(fraction)),
        None => (text, None),
    };
    let bytes = main.as_bytes();
    if bytes.len() != 17 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = main.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(13..15)?, num(15..17)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let micros = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 6 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u64>().ok()? * 10u64.pow(6 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let days = days_from_civil(year as i64, month as u32, day as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Writes a report; returns its path. Never overwrites: if a report with the same name exists, the
/// time is moved on by a microsecond.
pub(super) fn write(dir: &Path, advisory: &CorruptionAdvisory) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let report = render(advisory);
    let mut time = advisory.time;
    loop {
        let name = format!(
            "{}--{}-{}",
            format_time(time),
            advisory.storage_index,
            advisory.shnum
        );
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(report.as_bytes())?;
                file.sync_all()?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => time += Duration::from_micros(1),
            Err(e) => return Err(e),
        }
    }
}

/// Parses one report file (name and contents); `None` if it is not one of ours.
pub(super) fn parse(name: &str, contents: &str) -> Option<CorruptionAdvisory> {
    let (time, _) = name.split_once("--")?;
    let time = parse_time(time)?;
    let (head, reason) = contents.split_once("\n\n")?;
    let reason = reason.strip_suffix('\n').unwrap_or(reason).to_owned();
    let mut lines = head.lines();
    if lines.next()? != "report: Share Corruption" {
        return None;
    }
    let kind = match lines.next()?.strip_prefix("type: ")? {
        "immutable" => ShareKind::Immutable,
        "mutable" => ShareKind::Mutable,
        _ => return None,
    };
    let storage_index = lines.next()?.strip_prefix("storage_index: ")?.parse().ok()?;
    let shnum = lines.next()?.strip_prefix("share_number: ")?.parse().ok()?;
    Some(CorruptionAdvisory {
        time,
        kind,
        storage_index,
        shnum,
        reason,
    })
}

/// Every report in `dir`, oldest first; files that are not reports are skipped.
pub(super) fn list(dir: &Path) -> io::Result<Vec<CorruptionAdvisory>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(contents) = fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Some(advisory) = parse(&name, &contents) {
            out.push(advisory);
        }
    }
    out.sort_by_key(|a| (a.time, a.storage_index, a.shnum));
    Ok(out)
}

/// The newest `n` reports in `dir` (oldest of them first) and how many reports there are. Only the
/// newest are read: a report's name starts with its time, so names sort in time order, and a
/// status page costs one directory listing however many reports clients have filed.
pub(super) fn newest(dir: &Path, n: usize) -> io::Result<(Vec<CorruptionAdvisory>, usize)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str()
            && name
                .split_once("--")
                .is_some_and(|(time, _)| parse_time(time).is_some())
        {
            names.push(name.to_owned());
        }
    }
    let total = names.len();
    names.sort_unstable();
    let mut out = Vec::new();
    for name in names.iter().rev().take(n) {
        let Ok(contents) = fs::read_to_string(dir.join(name)) else {
            continue;
        };
        if let Some(advisory) = parse(name, &contents) {
            out.push(advisory);
        }
    }
    out.sort_by_key(|a| (a.time, a.storage_index, a.shnum));
    Ok((out, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format_matches_tahoe() {
        // 2009-01-02T03:04:05.000006Z; Python: datetime.utcfromtimestamp(1230865445.000006).isoformat("T")
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_230_865_445) + Duration::from_micros(6);
        assert_eq!(format_time(t), "2009-01-02T030405.000006");
        assert_eq!(parse_time("2009-01-02T030405.000006"), Some(t));
        assert_eq!(
            parse_time("2009-01-02T030405"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_230_865_445))
        );
        assert_eq!(format_time(SystemTime::UNIX_EPOCH), "1970-01-01T000000.000000");
        // A leap day.
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_time(leap), "2000-02-29T000000.000000");
        assert_eq!(parse_time(&format_time(leap)), Some(leap));
        assert_eq!(parse_time("2000-02-29T00:00:00"), None);
        assert_eq!(parse_time("2000-13-29T000000"), None);
    }

    #[test]
    fn days_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn only_the_newest_reports_are_read_and_all_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        // Written out of time order, over a day boundary; plus a file that is not a report.
        for i in [3u64, 0, 4, 1, 2] {
            let advisory = CorruptionAdvisory {
                time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_799_999_000 + i * 700),
                kind: ShareKind::Immutable,
                storage_index: StorageIndex([i as u8; 16]),
                shnum: i as u16,
                reason: format!("report {i}"),
            };
            write(dir.path(), &advisory).unwrap();
        }
        fs::write(dir.path().join("notes.txt"), "not a report").unwrap();
        let (newest, total) = newest(dir.path(), 2).unwrap();
        assert_eq!(total, 5);
        let reasons: Vec<&str> = newest.iter().map(|a| a.reason.as_str()).collect();
        assert_eq!(reasons, ["report 3", "report 4"]);
        let all = list(dir.path()).unwrap();
        assert_eq!(super::newest(dir.path(), 10).unwrap().0, all);
        assert_eq!(super::newest(dir.path(), 0).unwrap(), (Vec::new(), 5));
    }

    #[test]
    fn report_round_trip() {
        let advisory = CorruptionAdvisory {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            kind: ShareKind::Mutable,
            storage_index: StorageIndex([3; 16]),
            shnum: 7,
            reason: "block hash tree failure\nsecond line".to_owned(),
        };
        let text = render(&advisory);
        assert!(text.starts_with("report: Share Corruption\ntype: mutable\nstorage_index: "));
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), &advisory).unwrap();
        let second = write(dir.path(), &advisory).unwrap();
        assert_ne!(first, second);
        let name = first.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            name,
            format!("2023-11-14T221320.123456--{}-7", advisory.storage_index)
        );
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0], advisory);
        assert_eq!(listed[1].time, advisory.time + Duration::from_micros(1));
    }
}
