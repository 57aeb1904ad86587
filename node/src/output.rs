//! The CLI's standard output: one place that prints, and treats a closed pipe as success.

use std::io::{self, Write};

/// Prints one line to stdout.
#[allow(clippy::print_stdout, reason = "this is the CLI's output channel")]
pub(crate) fn line(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Writes bytes to stdout as they are (a gateway's answer passed through) and flushes them.
pub(crate) fn raw(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
