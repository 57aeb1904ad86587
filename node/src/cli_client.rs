//! The everyday commands that talk to a running node through its web API, found via
//! `NODEDIR/node.url`: `put`, `get`, `status`. Progress bars appear only on a terminal.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn node_url(node_dir: &Path) -> anyhow::Result<String> {
    let path = node_dir.join("node.url");
    let url = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: is the node running? Start it with `tessera run {}` (or pass --node-directory)",
            path.display(),
            node_dir.display()
        )
    })?;
    let url = url.trim().trim_end_matches('/').to_owned();
    if !url.starts_with("http://") {
        bail!("{} does not hold an http:// URL", path.display());
    }
    Ok(url)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn progress_bar(total: Option<u64>, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
    } else {
        "{msg} {bytes} {bytes_per_sec}"
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(verb.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

async fn fail_with_body(action: &str, response: hyper::Response<hyper::body::Incoming>) -> anyhow::Error {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(2000)])
        .trim()
        .to_owned();
    anyhow::anyhow!("{action} failed: HTTP {}: {text}", status.as_u16())
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot reach the node at {url} ({e}); is `tessera run` running for this node directory?")
}

/// `tessera put [FILE|-]`: uploads and prints the cap.
pub(crate) fn put(node_dir: &Path, file: Option<&str>, convergent: bool) -> anyhow::Result<()> {
    let url = node_url(node_dir)?;
    let (mut input, size): (Box<dyn Read + Send>, Option<u64>) = match file {
        None | Some("-") => (Box::new(std::io::stdin()), None),
        Some(path) => {
            let handle = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
            let meta = handle.metadata()?;
            if meta.is_dir() {
                bail!("{path} is a directory; put uploads one file");
            }
            (Box::new(handle), Some(meta.len()))
        }
    };
    let bar = progress_bar(size, "uploading");
    let reader_bar = bar.clone();
    runtime()?.block_on(async move {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let message = e.to_string();
                        let _ = futures::executor::block_on(tx.send(Err(e)));
                        return Err(anyhow::anyhow!("reading the input failed: {message}"));
                    }
                };
                reader_bar.inc(n as u64);
                if futures::executor::block_on(tx.send(Ok(Frame::data(Bytes::copy_from_slice(&buf[..n])))))
                    .is_err()
                {
                    return Ok(());
                }
            }
        });
        let body: Body = BodyExt::boxed(StreamBody::new(rx));
        let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
        let query = if convergent { "" } else { "?convergence=false" };
        let request = hyper::Request::put(format!("{url}/uri{query}")).body(body)?;
        let response = client.request(request).await.map_err(|e| unreachable(&url, e))?;
        reader.await??;
        if !response.status().is_success() {
            bar.abandon();
            return Err(fail_with_body("upload", response).await);
        }
        bar.set_message("encoded and stored");
        let cap = response.into_body().collect().await?.to_bytes();
        bar.finish_and_clear();
        crate::output::line(String::from_utf8_lossy(&cap).trim())
    })
}

/// `tessera get CAP [OUTFILE|-]`: downloads to a file or standard output.
pub(crate) fn get(node_dir: &Path, cap: &str, out: Option<&str>) -> anyhow::Result<()> {
    let url = node_url(node_dir)?;
    let cap = cap.trim();
    filenode::cap::Cap::parse(cap).context("that is not a valid cap")?;
    runtime()?.block_on(async move {
        let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
        let request = hyper::Request::get(format!("{url}/uri/{cap}")).body(BodyExt::boxed(
            http_body_util::Empty::new().map_err(|never| match never {}),
        ))?;
        let response = client.request(request).await.map_err(|e| unreachable(&url, e))?;
        if !response.status().is_success() {
            return Err(fail_with_body("download", response).await);
        }
        let size = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let (mut sink, target): (Box<dyn Write + Send>, Option<PathBuf>) = match out {
            None | Some("-") => (Box::new(std::io::stdout()), None),
            Some(path) => {
                let part = PathBuf::from(format!("{path}.part"));
                let file = std::fs::File::create(&part)
                    .with_context(|| format!("cannot create {}", part.display()))?;
                (
                    Box::new(std::io::BufWriter::with_capacity(1 << 20, file)),
                    Some(part),
                )
            }
        };
        let bar = progress_bar(size, "downloading");
        let mut body = response.into_body().into_data_stream();
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("the download was cut off (the node may have lost too many shares)")?;
            sink.write_all(&chunk).context("writing the output failed")?;
            received += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
        sink.flush()?;
        drop(sink);
        bar.finish_and_clear();
        if size.is_some_and(|expected| expected != received) {
            bail!("the download was cut off after {received} bytes");
        }
        if let (Some(part), Some(path)) = (target, out) {
            std::fs::rename(&part, path).with_context(|| format!("cannot move the download to {path}"))?;
        }
        Ok(())
    })
}

async fn fetch_status(url: &str) -> anyhow::Result<serde_json::Value> {
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::get(format!("{url}/?t=json")).body(BodyExt::boxed(
        http_body_util::Empty::new().map_err(|never| match never {}),
    ))?;
    let response = client.request(request).await.map_err(|e| unreachable(url, e))?;
    if !response.status().is_success() {
        return Err(fail_with_body("status", response).await);
    }
    let body = response.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&body).context("the node's status is not JSON")
}

/// How many storage servers the node at `node_dir` sees connected.
pub(crate) fn connected_servers(node_dir: &Path) -> anyhow::Result<usize> {
    let url = node_url(node_dir)?;
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fetch_status(&url))?;
    Ok(status["servers"]
        .as_array()
        .map_or(0, |s| s.iter().filter(|s| s["connected"] == true).count()))
}

/// `tessera status`: the node's view of the storage servers.
pub(crate) fn status(node_dir: &Path) -> anyhow::Result<()> {
    let url = node_url(node_dir)?;
    runtime()?.block_on(async move {
        let status = fetch_status(&url).await?;
        let servers = status["servers"].as_array().cloned().unwrap_or_default();
        let connected = servers.iter().filter(|s| s["connected"] == true).count();
        crate::output::line(&format!(
            "node {} at {url}: {connected} of {} storage servers connected (encoding {}-of-{}, happy {})",
            status["nickname"].as_str().unwrap_or(""),
            servers.len(),
            status["encoding"]["needed"],
            status["encoding"]["total"],
            status["encoding"]["happy"],
        ))?;
        for server in servers {
            let state = if server["connected"] == true {
                "connected"
            } else {
                "not connected"
            };
            let space = server["available_space"]
                .as_u64()
                .map(frontends::web::human_size)
                .unwrap_or_else(|| "?".into());
            let since = server["connected_since"]
                .as_u64()
                .map(|t| format!(" for {}", ago(t)))
                .unwrap_or_default();
            let error = server["last_error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            crate::output::line(&format!(
                "  {:<14} {}  {state}{since}, {space} free{error}",
                server["nickname"].as_str().unwrap_or(""),
                server["server_id"].as_str().unwrap_or(""),
            ))?;
        }
        Ok(())
    })
}

/// How long ago a Unix time was, roughly: `42s`, `5m`, `3h`, `2d`.
fn ago(unix_seconds: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let seconds = now.saturating_sub(unix_seconds);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}
