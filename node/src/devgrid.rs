//! `tessera devgrid`: a real local grid in one command — N storage nodes and a client gateway, each a
//! separate `tessera run` process on 127.0.0.1 — created on first use and reused afterwards.
//!
//! Layout: `DIR/introducer`, `DIR/storage01..NN` (storage only) and `DIR/gateway` (client with the
//! web gateway). Storage nodes announce themselves to the introducer; the gateway learns them from
//! it. devgrid reports ready once the gateway sees every storage node. With `--tls` the gateway's
//! web port (and WebDAV's) is served over TLS with a self-signed certificate made on the first such
//! start (`DIR/gateway/web.crt`, its key in `DIR/gateway/private/web.key`) and kept afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::nodedir::{CreateNodeArgs, create_node};

/// Options of `tessera devgrid`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevgridArgs {
    /// Number of storage nodes.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Where the node directories live.
    #[arg(long, default_value = "devgrid")]
    dir: PathBuf,
    /// The gateway's web port on 127.0.0.1.
    #[arg(long, default_value_t = 3456)]
    web_port: u16,
    /// The gateway's SFTP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8022)]
    sftp_port: u16,
    /// The gateway's FTP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8021)]
    ftp_port: u16,
    /// Turns on the gateway's WebDAV server on this port on 127.0.0.1 (0: any free port), with
    /// the demo account.
    #[arg(long)]
    webdav_port: Option<u16>,
    /// Serves the gateway's web port (and WebDAV's) over TLS, with a self-signed certificate for
    /// localhost and 127.0.0.1 made on the first such start: GATEWAY/web.crt (what clients trust:
    /// `curl --cacert`), its key in GATEWAY/private/web.key.
    #[arg(long)]
    tls: bool,
}

/// The gateway's certificate and key under `--tls`, relative to its node directory (as `tahoe.cfg`
/// names them).
const TLS_CERTIFICATE: &str = "web.crt";
const TLS_KEY: &str = "private/web.key";

/// The endpoint of one of the gateway's ports (web API, WebDAV, SFTP, FTP) on 127.0.0.1: over TLS
/// with the devgrid's certificate under `--tls`.
fn endpoint(port: u16, tls: bool) -> String {
    if tls {
        format!("ssl:{port}:privateKey={TLS_KEY}:certKey={TLS_CERTIFICATE}:interface=127.0.0.1")
    } else {
        format!("tcp:{port}:interface=127.0.0.1")
    }
}

/// Makes the gateway's self-signed certificate (ECDSA P-256, for `localhost` and `127.0.0.1`) and
/// its key (0600) unless both are there already, so a rerun keeps the certificate clients trust.
fn ensure_tls_certificate(gateway_dir: &Path) -> anyhow::Result<()> {
    let certificate = gateway_dir.join(TLS_CERTIFICATE);
    let key = gateway_dir.join(TLS_KEY);
    if certificate.exists() && key.exists() {
        return Ok(());
    }
    let key_pair = rcgen::KeyPair::generate().context("cannot generate the gateway's TLS key")?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .context("cannot describe the gateway's TLS certificate")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tessera devgrid gateway");
    let cert = params
        .self_signed(&key_pair)
        .context("cannot make the gateway's TLS certificate")?;
    crate::nodedir::write_private(&key, key_pair.serialize_pem().as_bytes())?;
    // The certificate is public (clients are given it); written whole, then renamed into place.
    let partial = certificate.with_extension("tmp");
    std::fs::write(&partial, cert.pem()).with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &certificate).with_context(|| format!("cannot write {}", certificate.display()))
}

/// Set once Ctrl-C or SIGTERM arrives (see [`watch_stop_signals`]); the startup's waits end on it.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn stop_requested() -> anyhow::Result<()> {
    if STOP_REQUESTED.load(Ordering::Relaxed) {
        bail!("interrupted during startup; the nodes started so far are stopped");
    }
    Ok(())
}

/// Takes over SIGINT and SIGTERM before the first node starts: a signal arriving during startup,
/// or just after the ready lines (a script that stops the grid at once), stops the nodes instead
/// of killing devgrid by the default action and leaving them running without a parent. The
/// returned receiver turns true on the first signal.
fn watch_stop_signals(
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let _context = runtime.enter();
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let (sender, receiver) = tokio::sync::watch::channel(false);
    runtime.spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        STOP_REQUESTED.store(true, Ordering::Relaxed);
        let _ = sender.send(true);
    });
    Ok(receiver)
}

/// Waits until the gateway reports `count` connected storage servers.
fn wait_until_connected(gateway_dir: &Path, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        stop_requested()?;
        let connected = crate::cli_client::connected_servers(gateway_dir).unwrap_or(0);
        if connected >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the gateway sees only {connected} of {count} storage servers after 60 s; see the logs/ folders"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) struct Children(pub(crate) Vec<(String, Child)>);

impl Children {
    pub(crate) fn stop_all(&mut self) {
        for (_, child) in &self.0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (name, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                    _ => {
                        eprintln!("devgrid: {name} did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.0.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop_all();
    }
}

pub(crate) fn spawn_node(dir: &Path, name: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the tessera executable")?;
    let log = std::fs::File::create(dir.join("logs").join("devgrid-stderr.log"))?;
    Command::new(exe)
        .arg("run")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}

pub(crate) fn wait_for_file(path: &Path, child: &mut Child, name: &str, dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        stop_requested()?;
        if let Some(status) = child.try_wait()? {
            let log =
                std::fs::read_to_string(dir.join("logs").join("devgrid-stderr.log")).unwrap_or_default();
            let last = log.lines().last().unwrap_or("").to_owned();
            bail!("{name} exited during startup ({status}): {last}");
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not start within 60 s; see {}",
                dir.join("logs").display()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

/// Creates (first time) and runs the local grid until Ctrl-C.
pub(crate) fn run(args: &DevgridArgs) -> anyhow::Result<()> {
    if args.servers == 0 || args.servers > 99 {
        bail!("--servers must be between 1 and 99");
    }
    let root = &args.dir;
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let storage_dirs: Vec<PathBuf> = (1..=args.servers)
        .map(|i| root.join(format!("storage{i:02}")))
        .collect();
    let gateway_dir = root.join("gateway");
    let introducer_dir = root.join("introducer");
    if !introducer_dir.join("tahoe.cfg").exists() {
        crate::nodedir::create_introducer(&crate::nodedir::CreateIntroducerArgs {
            nickname: None,
            listen_port: None,
            location: None,
            // Any free port, chosen when the introducer binds it (a port chosen now could be
            // taken by another process before then); node.url tells where.
            webport: Some("tcp:0:interface=127.0.0.1".into()),
            dir: introducer_dir.clone(),
        })?;
    }
    // One worker thread watches the signals while this thread starts the nodes.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut stop = watch_stop_signals(&runtime)?;
    let mut children = Children(Vec::new());
    let _ = std::fs::remove_file(introducer_dir.join("private").join("introducer.furl"));
    let _ = std::fs::remove_file(introducer_dir.join("node.url"));
    // Each child joins `children` before it is waited on, so a failed start still stops it.
    children
        .0
        .push(("introducer".into(), spawn_node(&introducer_dir, "introducer")?));
    let (name, introducer) = children.0.last_mut().expect("invariant: just pushed");
    wait_for_file(
        &introducer_dir.join("private").join("introducer.furl"),
        introducer,
        name,
        &introducer_dir,
    )?;
    let address = std::fs::read_to_string(introducer_dir.join("private").join("introducer.furl"))?
        .trim()
        .to_owned();
    // The introducer's status page (grids made before introducers had a web port have none).
    let mut status_urls = Vec::new();
    if crate::config::NodeConfig::load(&introducer_dir)?
        .web_port
        .is_some()
    {
        wait_for_file(
            &introducer_dir.join("node.url"),
            introducer,
            name,
            &introducer_dir,
        )?;
        let url = std::fs::read_to_string(introducer_dir.join("node.url"))?
            .trim()
            .to_owned();
        status_urls.push(format!("  introducer status: {url}"));
    }

    for (i, dir) in storage_dirs.iter().enumerate() {
        if !dir.join("tahoe.cfg").exists() {
            create_node(&CreateNodeArgs::storage_only(
                dir.clone(),
                format!("storage{:02}", i + 1),
                Some(address.clone()),
            ))?;
        }
    }
    if !gateway_dir.join("tahoe.cfg").exists() {
        let args = crate::nodedir::CreateClientArgs {
            nickname: Some("gateway".into()),
            webport: endpoint(args.web_port, args.tls),
            introducer: Some(address.clone()),
            dir: gateway_dir.clone(),
        };
        create_node(&args.into_node_args())?;
    }
    if args.tls {
        ensure_tls_certificate(&gateway_dir)?;
    }
    // `--web-port` (and `--tls`) apply to a grid made before, as the SFTP and FTP ports do.
    set_node_keys(&gateway_dir, &[("web.port", endpoint(args.web_port, args.tls))])?;
    enable_frontend(&gateway_dir, "sftpd", &endpoint(args.sftp_port, false))?;
    enable_frontend(&gateway_dir, "ftpd", &endpoint(args.ftp_port, false))?;
    if let Some(port) = args.webdav_port {
        enable_frontend(&gateway_dir, "webdav", &endpoint(port, args.tls))?;
    }
    // The happiness default of 7 needs 7 servers; a smaller grid lowers it to what it has.
    if args.servers < 7 {
        let cfg = gateway_dir.join("tahoe.cfg");
        let text = std::fs::read_to_string(&cfg)?;
        let happy = args.servers.max(1);
        let needed = happy.min(3);
        let fixed = text
            .replace("shares.happy = 7", &format!("shares.happy = {happy}"))
            .replace("shares.needed = 3", &format!("shares.needed = {needed}"));
        std::fs::write(&cfg, fixed)?;
    }

    for dir in &storage_dirs {
        let _ = std::fs::remove_file(dir.join("private").join("storage.nurl"));
        let _ = std::fs::remove_file(dir.join("node.url"));
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let child = spawn_node(dir, &name)?;
        children.0.push((name, child));
    }
    // Each storage node's status pages (grids made before storage nodes had a web port have none).
    for (dir, (name, child)) in storage_dirs.iter().zip(children.0.iter_mut().skip(1)) {
        wait_for_file(&dir.join("private").join("storage.nurl"), child, name, dir)?;
        if crate::config::NodeConfig::load(dir)?.web_port.is_some() {
            wait_for_file(&dir.join("node.url"), child, name, dir)?;
            let url = std::fs::read_to_string(dir.join("node.url"))?.trim().to_owned();
            status_urls.push(format!("  {name} status: {url}storage"));
        }
    }
    let _ = std::fs::remove_file(gateway_dir.join("node.url"));
    let _ = std::fs::remove_file(gateway_dir.join("sftp.url"));
    let _ = std::fs::remove_file(gateway_dir.join("ftp.url"));
    let _ = std::fs::remove_file(gateway_dir.join("webdav.url"));
    children
        .0
        .push(("gateway".into(), spawn_node(&gateway_dir, "gateway")?));
    let (name, gateway) = children.0.last_mut().expect("invariant: just pushed");
    wait_for_file(&gateway_dir.join("node.url"), gateway, name, &gateway_dir)?;
    let url = std::fs::read_to_string(gateway_dir.join("node.url"))?
        .trim()
        .to_owned();
    wait_for_file(&gateway_dir.join("sftp.url"), gateway, name, &gateway_dir)?;
    wait_for_file(&gateway_dir.join("ftp.url"), gateway, name, &gateway_dir)?;
    let webdav = crate::config::NodeConfig::load(&gateway_dir)?.webdav.enabled;
    if webdav {
        wait_for_file(&gateway_dir.join("webdav.url"), gateway, name, &gateway_dir)?;
    }
    wait_until_connected(&gateway_dir, args.servers)?;
    let sftp = demo_account(&gateway_dir)?;
    let ftp_config = crate::config::NodeConfig::load(&gateway_dir)?.ftp;
    let ftp = crate::ftpd::demo_account(&gateway_dir, &ftp_config)?;

    let gw = gateway_dir.display();
    let cacert = args.tls.then(|| gateway_dir.join(TLS_CERTIFICATE));
    // Under --tls, how other clients trust the self-signed certificate.
    let curl = cacert.as_ref().map(|cacert| {
        format!(
            "  web API:     curl --cacert {} {url}uri/CAP   (the certificate is self-signed)",
            cacert.display()
        )
    });
    let head = [
        format!(
            "Tessera devgrid running: {} storage nodes and a gateway (directories in {}).",
            args.servers,
            root.display()
        ),
        format!("  web gateway: {url}"),
    ];
    let tail = [
        format!("  upload:      tessera --node-directory {gw} put FILE"),
        format!("  download:    tessera --node-directory {gw} get CAP OUTFILE"),
        format!("  servers:     tessera --node-directory {gw} status"),
        format!("  sftp:        {sftp}"),
        format!("  ftp:         {ftp}"),
    ];
    for line in head.into_iter().chain(curl).chain(tail) {
        crate::output::line(&line)?;
    }
    // The demo account is the FTP one (the accounts file is shared).
    if webdav {
        for line in crate::webdavd::demo_lines(&gateway_dir, cacert.as_deref())? {
            crate::output::line(&line)?;
        }
    }
    for line in status_urls {
        crate::output::line(&line)?;
    }
    crate::output::line("Press Ctrl-C to stop the grid.")?;

    let exited = runtime.block_on(async {
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        let mut reported = std::collections::BTreeSet::new();
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return None,
                _ = poll.tick() => {
                    for (name, child) in children.0.iter_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            // Without the gateway there is nothing left to use; a stopped storage
                            // node or introducer is a failure the grid should survive (and one
                            // people stop on purpose to see that).
                            if name == "gateway" {
                                return Some(format!("the gateway exited unexpectedly ({status})"));
                            }
                            if reported.insert(name.clone()) {
                                eprintln!("devgrid: {name} exited ({status}); the grid goes on without it");
                            }
                        }
                    }
                }
            }
        }
    });
    // Stopping comes first: the terminal or pipe that reads the line below may be gone already.
    children.stop_all();
    let _ = crate::output::line("Grid stopped.");
    match exited {
        Some(problem) => bail!("{problem}; see the logs/ folder of that node"),
        None => Ok(()),
    }
}

/// Sets `keys` of the `[node]` section in `dir`'s configuration (each replaces its line there).
fn set_node_keys(dir: &Path, keys: &[(&str, String)]) -> anyhow::Result<()> {
    let cfg = dir.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg).with_context(|| format!("cannot read {}", cfg.display()))?;
    let mut out = String::with_capacity(text.len() + 100);
    let mut section = String::new();
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix('[') {
            section = name.trim_end_matches(']').to_owned();
        }
        let key = line.split('=').next().unwrap_or_default().trim();
        match keys.iter().find(|(k, _)| section == "node" && *k == key) {
            Some((k, value)) => out.push_str(&format!("{k} = {value}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    std::fs::write(&cfg, out).with_context(|| format!("cannot write {}", cfg.display()))
}

/// Turns on a frontend's section (`[sftpd]`, `[ftpd]`, `[webdav]`) in the gateway's configuration
/// with the given port endpoint.
fn enable_frontend(gateway_dir: &Path, section_name: &str, endpoint: &str) -> anyhow::Result<()> {
    let cfg = gateway_dir.join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg).with_context(|| format!("cannot read {}", cfg.display()))?;
    let mut out = String::with_capacity(text.len() + 100);
    let mut section = String::new();
    let mut seen = false;
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix('[') {
            section = name.trim_end_matches(']').to_owned();
        }
        if section == section_name {
            seen = true;
            let key = line.split('=').next().unwrap_or_default().trim();
            if key == "enabled" {
                out.push_str("enabled = true\n");
                continue;
            }
            if key == "port" {
                out.push_str(&format!("port = {endpoint}\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if !seen {
        out.push_str(&format!(
            "\n[{section_name}]\nenabled = true\nport = {endpoint}\n"
        ));
    }
    std::fs::write(&cfg, out).with_context(|| format!("cannot write {}", cfg.display()))
}

/// The demo SFTP account: a key pair in the gateway's `private/`, and a home directory made on the
/// first start. Returns the command that connects.
fn demo_account(gateway_dir: &Path) -> anyhow::Result<String> {
    let private = gateway_dir.join("private");
    let key = private.join("demo_ssh_key");
    let public = private.join("demo_ssh_key.pub");
    if !key.exists() {
        frontends::sftp::keys::generate_ed25519(&key, &public, "tessera devgrid demo")?;
    }
    let config = crate::config::NodeConfig::load(gateway_dir)?;
    let accounts_file = config.sftp.accounts_file;
    let known = std::fs::read_to_string(&accounts_file).unwrap_or_default();
    if frontends::accounts::Accounts::parse(&known, "")
        .get("demo")
        .is_none()
    {
        let home = crate::ftpd::make_directory(gateway_dir)?;
        let line = std::fs::read_to_string(&public)?;
        frontends::accounts::add_user(
            &accounts_file,
            "demo",
            &frontends::accounts::Credential::Key(line.trim().to_owned()),
            &home,
        )?;
    }
    let url = std::fs::read_to_string(gateway_dir.join("sftp.url"))?;
    let address = url
        .trim()
        .trim_start_matches("sftp://")
        .trim_end_matches('/')
        .to_owned();
    let port = address
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default();
    // A known_hosts file for this grid, so the first connection needs no confirmation.
    let host_key = std::fs::read_to_string(&config.sftp.host_pubkey_file)?;
    let mut fields = host_key.split_whitespace();
    let known_hosts = private.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{port} {} {}\n",
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default()
        ),
    )?;
    Ok(format!(
        "sftp -P {port} -i {} -o UserKnownHostsFile={} demo@127.0.0.1",
        key.display(),
        known_hosts.display()
    ))
}
