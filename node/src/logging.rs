//! The node's log: human-readable lines on stderr, and `DIR/logs/tessera.log` in text or JSON lines
//! (`[node] log_format`), rotated by size (`[node] log_max_size`, `log_keep`: `tessera.log.1` is the
//! newest rotated file, `tessera.log.N` the oldest, older ones are deleted).
//!
//! The level comes from, first to last: the `TESSERA_LOG` environment variable, `RUST_LOG`,
//! `[node] log_level`, then `info`. Each is an `EnvFilter` directive list (`debug`,
//! `info,tessera::access=warn`); an invalid one stops the node with a message naming it. libunftp is
//! always off: its spans carry FTP paths, and a path may hold a cap.
//!
//! Web requests run in a `request` span with a `request_id` field (see `weblayers`), so every line
//! logged while serving one, the access line included, names the same id.

use std::io;
use std::path::Path;

use anyhow::{Context, anyhow};
use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;

/// `[node] log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// tracing's default line format, without colours.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`), `target`, and
    /// `span` / `spans` for the spans it was logged in (a web request's `request_id`).
    Json,
}

/// The `[node] log_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogConfig {
    /// `log_level`: a filter such as `debug` or `info,tessera::access=warn` (default `info`).
    pub(crate) level: Option<String>,
    /// `log_format = text | json` (default text).
    pub(crate) format: LogFormat,
    /// `log_max_size`: the size at which `tessera.log` is rotated (default 10 MiB).
    pub(crate) max_size: u64,
    /// `log_keep`: how many rotated files are kept (default 5).
    pub(crate) keep: usize,
}

/// The default of `[node] log_max_size`.
pub(crate) const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// The default of `[node] log_keep`.
pub(crate) const DEFAULT_KEEP: usize = 5;
/// The largest `[node] log_keep`.
pub(crate) const MAX_KEEP: usize = 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: None,
            format: LogFormat::Text,
            max_size: DEFAULT_MAX_SIZE,
            keep: DEFAULT_KEEP,
        }
    }
}

/// Checks a `log_level` value (so a typo is a configuration error, not a silent `info`).
pub(crate) fn valid_level(text: &str) -> Result<(), String> {
    EnvFilter::builder()
        .parse(text)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The level filter: `TESSERA_LOG`, else `RUST_LOG`, else `[node] log_level`, else `info`.
pub(crate) fn filter(
    configured: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<EnvFilter> {
    let from_env = ["TESSERA_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| env(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v)));
    let filter = match (from_env, configured) {
        (Some((name, value)), _) => EnvFilter::builder()
            .parse(&value)
            .map_err(|e| anyhow!("the environment variable {name} is not a log filter ({e}): {value:?}"))?,
        (None, Some(level)) => EnvFilter::builder()
            .parse(level)
            .map_err(|e| anyhow!("[node] log_level is not a log filter ({e})"))?,
        (None, None) => EnvFilter::new("info"),
    };
    // libunftp's spans carry the paths of FTP commands, and a path may hold a cap: they are never
    // recorded, so no event of ours inherits them (`frontends::ftp` logs for it).
    Ok(filter.add_directive("libunftp=off".parse().expect("invariant: a valid directive")))
}

/// `logs/tessera.log`, rotated once it has grown past `max_size` (a line is never split across
/// two files), keeping `keep` rotated files.
pub(crate) fn rotating_file(logs: &Path, config: &LogConfig) -> anyhow::Result<FileRotate<AppendCount>> {
    std::fs::create_dir_all(logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let max_size = usize::try_from(config.max_size).unwrap_or(usize::MAX).max(1);
    Ok(FileRotate::new(
        logs.join("tessera.log"),
        AppendCount::new(config.keep),
        ContentLimit::BytesSurpassed(max_size),
        Compression::None,
        None,
    ))
}

/// The file layer in `format`, writing through `writer`.
pub(crate) fn file_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    }
}

/// Lines waiting for the log file's writer thread. Past them, lines are dropped (and counted by
/// tracing-appender) rather than slowing the node. The writer keeps up with thousands of lines a
/// second; tracing-appender's default of 128,000 preallocates 4 MB, a tenth of an idle gateway.
const LOG_LINES_BUFFERED: usize = 8192;

/// Sets up the process's logging for the node in `dir`; the guard flushes the file when dropped.
pub(crate) fn init(
    dir: &Path,
    config: &LogConfig,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = filter(config.level.as_deref(), &|name| std::env::var(name).ok())?;
    let (file_writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .finish(rotating_file(&dir.join("logs"), config)?);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(io::stderr))
        .with(file_layer(config.format, file_writer))
        .try_init()
        .context("cannot set up logging")?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_environment_wins_over_the_file_and_tessera_log_over_rust_log() {
        // The filter's directives, without the libunftp one that is always there.
        let level = |f: EnvFilter| -> String {
            let shown = f.to_string();
            assert!(shown.contains("libunftp=off"), "{shown}");
            shown
                .split(',')
                .filter(|d| *d != "libunftp=off")
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(level(filter(None, &env(&[])).unwrap()), "info");
        assert_eq!(level(filter(Some("debug"), &env(&[])).unwrap()), "debug");
        assert_eq!(
            level(filter(Some("debug"), &env(&[("RUST_LOG", "warn")])).unwrap()),
            "warn"
        );
        let both = env(&[("RUST_LOG", "warn"), ("TESSERA_LOG", "trace")]);
        assert_eq!(level(filter(Some("debug"), &both).unwrap()), "trace");
        // An empty variable is no setting.
        assert_eq!(
            level(filter(Some("debug"), &env(&[("RUST_LOG", " ")])).unwrap()),
            "debug"
        );
        let err = filter(None, &env(&[("RUST_LOG", "info,=[")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RUST_LOG is not a log filter"), "{err}");
        assert!(valid_level("info,tessera::access=warn").is_ok());
        assert!(valid_level("loud=[").is_err());
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            max_size: 1000,
            keep: 3,
            ..LogConfig::default()
        };
        let mut file = rotating_file(dir.path(), &config).unwrap();
        for n in 0..100 {
            file.write_all(format!("line {n:03} {}\n", "x".repeat(90)).as_bytes())
                .unwrap();
        }
        file.flush().unwrap();
        drop(file);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["tessera.log", "tessera.log.1", "tessera.log.2", "tessera.log.3"]
        );
        for name in &names {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            // Rotated once past the limit, never mid-line.
            assert!(text.len() <= 1000 + 100, "{name}: {}", text.len());
            assert!(
                text.lines().all(|l| l.starts_with("line ") && l.len() == 99),
                "{name}"
            );
        }
        let newest = std::fs::read_to_string(dir.path().join("tessera.log")).unwrap();
        assert!(newest.contains("line 099"));
        let oldest = std::fs::read_to_string(dir.path().join("tessera.log.3")).unwrap();
        assert!(!oldest.contains("line 000"), "older files were deleted");
        // A restart appends to the current file and keeps counting its size.
        let mut file = rotating_file(dir.path(), &config).unwrap();
        file.write_all(b"after restart\n").unwrap();
        drop(file);
        let newest_again = std::fs::read_to_string(dir.path().join("tessera.log")).unwrap();
        assert_eq!(newest_again, format!("{newest}after restart\n"));
    }
}
