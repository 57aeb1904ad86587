//! The node directory: creating one (`tessera create-node`) and reading its private files.
//!
//! Shape (Tahoe's where Tahoe has one):
//! ```text
//! DIR/tahoe.cfg               configuration (see config.rs)
//! DIR/node.url                written by a running node: its web API URL
//! DIR/logs/                   log files of `tessera run`
//! DIR/storage/                the share store (unless [storage] storage_dir says otherwise)
//! DIR/private/                0700; every file 0600
//!     node.pem                TLS private key + self-signed certificate (SPKI pinned in the NURL)
//!     node.privkey            ed25519 signing key for announcements ("priv-v0-<base32 seed>")
//!     node.pubkey             its public key ("pub-v0-<base32>")
//!     storage.furl            Tahoe-style fURL holding the storage swissnum and the node's tubid
//!     storage.nurl            written by a running node: its storage NURL(s)
//!     secret                  lease secret (base32)
//!     convergence             convergence secret (base32)
//!     ssh_host_ed25519_key    the SFTP server's host key (OpenSSH format; `.pub` beside it)
//!     ftpd.pem                the FTP server's TLS certificate and key (self-signed)
//!     accounts                SFTP and FTP accounts (`tessera admin add-user`; frontends::accounts)
//!     api_auth_token          the web API's token (Tahoe's: urlsafe base64 of 32 random bytes),
//!                             written by create-node/create-client and anew by each `tessera run`
//!                             of a gateway; `tahoe status` and other CLI calls send it on POSTs
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha1::{Digest, Sha1};

/// Options of `tessera create-node`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateNodeArgs {
    /// A human-readable name for this node, shown to other nodes.
    #[arg(long)]
    nickname: Option<String>,
    /// Where shares are stored (default DIR/storage).
    #[arg(long, value_name = "D")]
    storage_dir: Option<PathBuf>,
    /// TCP port the storage server listens on (default: a free port chosen now).
    #[arg(long, value_name = "P")]
    listen_port: Option<u16>,
    /// Address other nodes use to reach this one (default 127.0.0.1:PORT). A non-loopback host makes
    /// the node listen on all interfaces.
    #[arg(long, value_name = "HOST:PORT")]
    location: Option<String>,
    /// Disk space to keep free (Tahoe's reserved_space).
    #[arg(long, default_value = "1G", value_name = "SIZE")]
    reserved_space: String,
    /// The web port's endpoint, or `none` for no web server. Default: the gateway's
    /// tcp:3456:interface=127.0.0.1, or for a `--no-client` node a free port on 127.0.0.1 chosen
    /// now (its status pages).
    #[arg(long, value_name = "ENDPOINT")]
    webport: Option<String>,
    /// Create a client only: no storage server (what `tessera create-client` does).
    #[arg(long)]
    no_storage: bool,
    /// Create a storage-only node: no web gateway, SFTP or FTP; its web port serves only its
    /// status (`/storage`, `/statistics`).
    #[arg(long, conflicts_with = "no_storage")]
    no_client: bool,
    /// The introducer's address (its `private/introducer.furl`).
    #[arg(long, value_name = "ADDRESS")]
    introducer: Option<String>,
    /// The node directory to create.
    dir: PathBuf,
}

/// Options of `tessera create-client`: a gateway without storage.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateClientArgs {
    /// A human-readable name for this node.
    #[arg(long)]
    pub(crate) nickname: Option<String>,
    /// The web gateway's endpoint.
    #[arg(long, default_value = "tcp:3456:interface=127.0.0.1", value_name = "ENDPOINT")]
    pub(crate) webport: String,
    /// The introducer's address (its `private/introducer.furl`).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) introducer: Option<String>,
    /// The node directory to create.
    pub(crate) dir: PathBuf,
}

impl CreateClientArgs {
    /// The equivalent `create-node` options.
    pub(crate) fn into_node_args(self) -> CreateNodeArgs {
        CreateNodeArgs {
            nickname: self.nickname,
            storage_dir: None,
            listen_port: None,
            location: None,
            reserved_space: "1G".into(),
            webport: Some(self.webport),
            no_storage: true,
            no_client: false,
            introducer: self.introducer,
            dir: self.dir,
        }
    }
}

impl CreateNodeArgs {
    /// Options for a storage-only node of a local grid.
    pub(crate) fn storage_only(dir: PathBuf, nickname: String, introducer: Option<String>) -> Self {
        CreateNodeArgs {
            nickname: Some(nickname),
            storage_dir: None,
            listen_port: None,
            location: None,
            reserved_space: "1G".into(),
            // Any free port, taken when the node starts (it writes node.url with it): a port
            // chosen now could be taken by another process before the node binds it, and local
            // grids start many nodes at once.
            webport: Some("tcp:0:interface=127.0.0.1".into()),
            no_storage: false,
            no_client: true,
            introducer,
            dir,
        }
    }
}

/// Creates a node directory.
pub(crate) fn create_node(args: &CreateNodeArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    ensure_new_dir(dir)?;
    if crate::config::parse_size(&args.reserved_space).is_none() {
        bail!(
            "--reserved-space {:?} is not a size such as 1G, 500MB or 2GiB",
            args.reserved_space
        );
    }
    let port = choose_port(args.listen_port)?;
    let location = args
        .location
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{port}"));
    let (host, _) = location
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .with_context(|| format!("--location {location:?} must be HOST:PORT"))?;
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let interface = if loopback { ":interface=127.0.0.1" } else { "" };
    let nickname = args.nickname.clone().unwrap_or_default();
    if nickname.contains('\n') {
        bail!("--nickname must be a single line");
    }
    let storage_dir = args
        .storage_dir
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let webport = match &args.webport {
        Some(webport) => webport.clone(),
        None if args.no_client => format!("tcp:{}:interface=127.0.0.1", choose_port(None)?),
        None => "tcp:3456:interface=127.0.0.1".to_owned(),
    };
    let web_line = web_port_line(&webport)?;
    let client_line = if args.no_client {
        "# No client: the web port serves only this node's status.\nenabled = false\n"
    } else {
        ""
    };
    let storage_enabled = !args.no_storage;
    let introducer_line = match &args.introducer {
        Some(address) => {
            crate::introducer::parse_address(address)?;
            format!("introducer.furl = {}\n", address.trim())
        }
        None => String::new(),
    };

    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let private = dir.join("private");
    fs::create_dir_all(&private)?;
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700))?;
    fs::create_dir_all(dir.join("logs"))?;

    let config = format!(
        "# This file controls the configuration of the Tessera node in this directory.\n\
         # Section and key names follow Tahoe-LAFS's tahoe.cfg.\n\n\
         [node]\n\
         nickname = {nickname}\n\
         tub.port = tcp:{port}{interface}\n\
         tub.location = tcp:{location}\n\
         {web_line}\n\
         [client]\n\
         {client_line}\
         {introducer_line}\
         shares.needed = 3\n\
         shares.happy = 7\n\
         shares.total = 10\n\n\
         [storage]\n\
         enabled = {storage_enabled}\n\
         # Keep this much disk free; refuse shares beyond it.\n\
         reserved_space = {reserved}\n\
         # Never hold more than this much share data (empty: no limit).\n\
         max_space =\n\
         readonly = false\n\
         storage_dir = {storage_dir}\n\
         # Lease expiry and garbage collection (off by default, as in Tahoe).\n\
         expire.enabled = false\n\
         expire.mode = age\n\n\
         [sftpd]\n\
         # The SFTP frontend; accounts are added with `tessera admin add-user`.\n\
         enabled = false\n\
         port = tcp:8022:interface=127.0.0.1\n\
         host_privkey_file = private/ssh_host_ed25519_key\n\
         host_pubkey_file = private/ssh_host_ed25519_key.pub\n\
         accounts.file = private/accounts\n\n\
         [ftpd]\n\
         # The FTP frontend (explicit FTPS); password accounts from accounts.file (`tessera admin\n\
         # add-user`). tls = required|optional|off: required unless the port is on loopback.\n\
         enabled = false\n\
         port = 127.0.0.1:8021\n\
         tls.certificate_file = private/ftpd.pem\n\
         accounts.file = private/accounts\n",
        reserved = args.reserved_space,
    );
    write_new(&dir.join("tahoe.cfg"), config.as_bytes(), 0o644)?;

    let identity =
        storage::tls::TlsIdentity::generate().context("cannot generate the node's TLS certificate")?;
    let pem = identity.to_pem();
    write_new(&private.join("node.pem"), pem.as_bytes(), 0o600)?;
    let seed: [u8; 32] = rand::random();
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public = signing.verifying_key();
    write_new(
        &private.join("node.privkey"),
        format!("priv-v0-{}\n", b32(&seed)).as_bytes(),
        0o600,
    )?;
    write_new(
        &private.join("node.pubkey"),
        format!("pub-v0-{}\n", b32(public.as_bytes())).as_bytes(),
        0o600,
    )?;
    let swissnum = b32(&rand::random::<[u8; 20]>());
    let furl = storage_furl(&tubid(&pem)?, &location, &swissnum);
    write_new(
        &private.join("storage.furl"),
        format!("{furl}\n").as_bytes(),
        0o600,
    )?;
    write_new(
        &private.join("secret"),
        format!("{}\n", b32(&rand::random::<[u8; 32]>())).as_bytes(),
        0o600,
    )?;
    write_new(
        &private.join("convergence"),
        format!("{}\n", b32(&rand::random::<[u8; 32]>())).as_bytes(),
        0o600,
    )?;

    frontends::sftp::keys::generate_ed25519(
        &private.join("ssh_host_ed25519_key"),
        &private.join("ssh_host_ed25519_key.pub"),
        "tessera host key",
    )
    .context("cannot write the SSH host key")?;
    crate::ftpd::write_certificate(&private.join("ftpd.pem"))?;
    if !args.no_client {
        write_api_auth_token(dir)?;
    }

    crate::output::line(&format!("Node created in {}", dir.display()))?;
    if storage_enabled {
        crate::output::line(&format!(
            "  storage server: listens on port {port}, advertised as {location}"
        ))?;
    }
    if !web_line.is_empty() {
        let what = if args.no_client {
            "status pages"
        } else {
            "web gateway"
        };
        crate::output::line(&format!("  {what}: {webport}"))?;
    }
    crate::output::line(&format!("  start it with: tessera run {}", dir.display()))?;
    Ok(())
}

/// Refuses a directory that exists and is not empty.
fn ensure_new_dir(dir: &Path) -> anyhow::Result<()> {
    let occupied = dir.exists()
        && fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
    if occupied {
        bail!(
            "{} already exists and is not empty; choose a new directory",
            dir.display()
        );
    }
    Ok(())
}

/// The given port, or one chosen now for the node to listen on from now on: free now on IPv4's
/// 0.0.0.0 and 127.0.0.1, and outside the kernel's range for ephemeral ports when such a port is
/// free (else any free port). A port in that range can be
/// taken while the node is stopped, by any outgoing connection or by a program binding port 0,
/// and the node would then fail to start again on it; its address (written in its furl or nurl)
/// cannot change.
fn choose_port(listen_port: Option<u16>) -> anyhow::Result<u16> {
    if let Some(port) = listen_port {
        return Ok(port);
    }
    let ephemeral = ephemeral_port_range();
    for _ in 0..200 {
        let port = rand::random_range(FIRST_PERSISTENT_PORT..=u16::MAX);
        if persistent(port, ephemeral)
            && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    // Every candidate taken (or none at all): any free port, as Tahoe does.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free TCP port; pass --listen-port")?
        .port())
}

/// The kernel's range of ephemeral ports (Linux's `ip_local_port_range`; elsewhere IANA's
/// 49152–65535).
fn ephemeral_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut fields = text.split_whitespace().map(str::parse::<u16>);
            match (fields.next(), fields.next()) {
                (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
                _ => None,
            }
        })
        .unwrap_or((49152, 65535))
}

/// The lowest port a node is given for good (below are the well-known services and many others'
/// defaults).
const FIRST_PERSISTENT_PORT: u16 = 10000;

/// Whether a node may be given `port` for good: [`FIRST_PERSISTENT_PORT`] or above, outside the
/// ephemeral range `(low, high)`.
fn persistent(port: u16, (low, high): (u16, u16)) -> bool {
    port >= FIRST_PERSISTENT_PORT && !(low..=high).contains(&port)
}

fn b32(bytes: &[u8]) -> String {
    storage::base32::encode(bytes)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// The Foolscap tub id of a node: base32 of SHA-1 over its certificate's DER, as Foolscap derives it.
/// Tahoe clients take the 20-byte lease seed and write-enabler seed from this id.
pub(crate) fn tubid(node_pem: &str) -> anyhow::Result<String> {
    let identity =
        storage::tls::TlsIdentity::from_pem(node_pem).context("private/node.pem is not a valid identity")?;
    Ok(b32(&Sha1::digest(identity.certificate_der().as_ref())))
}

fn storage_furl(tubid: &str, location: &str, swissnum: &str) -> String {
    format!("pb://{tubid}@tcp:{location}/{swissnum}")
}

/// The storage swissnum, from `private/storage.furl`.
pub(crate) fn read_swissnum(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("private").join("storage.furl");
    let furl = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    furl.trim()
        .rsplit_once('/')
        .map(|(_, swiss)| swiss.to_owned())
        .filter(|swiss| !swiss.is_empty() && storage::base32::decode(swiss).is_ok())
        .with_context(|| format!("{} does not end with a swissnum", path.display()))
}

/// Writes a file readable only by the owner, replacing it atomically.
/// Writes a new `private/api_auth_token` (Tahoe's form: the urlsafe base64 of 32 random bytes and a
/// newline, mode 0600; Tahoe makes it anew each time a client node starts) and returns the token.
pub(crate) fn write_api_auth_token(dir: &Path) -> anyhow::Result<String> {
    let token = data_encoding::BASE64URL.encode(&rand::random::<[u8; 32]>());
    let private = dir.join("private");
    if !private.is_dir() {
        fs::create_dir_all(&private)?;
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700))?;
    }
    write_private(&private.join("api_auth_token"), format!("{token}\n").as_bytes())?;
    Ok(token)
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, contents, 0o600)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Options of `tessera create-introducer`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateIntroducerArgs {
    /// A human-readable name.
    #[arg(long)]
    pub(crate) nickname: Option<String>,
    /// TCP port to listen on (default: a free port chosen now).
    #[arg(long, value_name = "P")]
    pub(crate) listen_port: Option<u16>,
    /// Address nodes use to reach the introducer (default 127.0.0.1:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) location: Option<String>,
    /// The web port's endpoint (the introducer's status page), or `none`. Default: a free port on
    /// 127.0.0.1 chosen now.
    #[arg(long, value_name = "ENDPOINT")]
    pub(crate) webport: Option<String>,
    /// The directory to create.
    pub(crate) dir: PathBuf,
}

/// The file whose presence makes a node directory an introducer (Tahoe's marker).
pub(crate) const INTRODUCER_MARKER: &str = "tahoe-introducer.tac";

/// The `web.port = …` line of `--webport` (none for `none`), refusing what is not an endpoint.
fn web_port_line(webport: &str) -> anyhow::Result<String> {
    if webport == "none" {
        return Ok(String::new());
    }
    // Only checked here: an `ssl:` endpoint's files are read when the node starts.
    if crate::config::Endpoint::parse_web(webport, Path::new("."), crate::config::Endpoint::parse).is_none() {
        bail!(
            "--webport {webport:?} must be an endpoint such as tcp:3456:interface=127.0.0.1 or \
             ssl:3456:privateKey=KEY.pem:certKey=CERT.pem:interface=127.0.0.1, or none"
        );
    }
    Ok(format!("web.port = {webport}\n"))
}

/// Creates an introducer directory; its address is written to `private/introducer.furl` when it
/// first runs.
pub(crate) fn create_introducer(args: &CreateIntroducerArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    ensure_new_dir(dir)?;
    let port = choose_port(args.listen_port)?;
    let location = args
        .location
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{port}"));
    let loopback = location.starts_with("127.") || location.starts_with("localhost:");
    let interface = if loopback { ":interface=127.0.0.1" } else { "" };
    let nickname = args.nickname.clone().unwrap_or_else(|| "introducer".into());
    let webport = match &args.webport {
        Some(webport) => webport.clone(),
        None => format!("tcp:{}:interface=127.0.0.1", choose_port(None)?),
    };
    let web_line = web_port_line(&webport)?;
    fs::create_dir_all(dir.join("private"))?;
    fs::set_permissions(dir.join("private"), fs::Permissions::from_mode(0o700))?;
    fs::create_dir_all(dir.join("logs"))?;
    let config = format!(
        "# This file controls the configuration of the Tessera introducer in this directory.\n\n\
         [node]\n\
         nickname = {nickname}\n\
         tub.port = tcp:{port}{interface}\n\
         tub.location = tcp:{location}\n\
         {web_line}\n\
         [storage]\n\
         enabled = false\n"
    );
    write_new(&dir.join("tahoe.cfg"), config.as_bytes(), 0o644)?;
    write_new(
        &dir.join(INTRODUCER_MARKER),
        b"# This directory holds a Tessera introducer.\n",
        0o644,
    )?;
    let identity = storage::tls::TlsIdentity::generate().context("cannot generate the TLS certificate")?;
    write_new(
        &dir.join("private").join("node.pem"),
        identity.to_pem().as_bytes(),
        0o600,
    )?;
    let swissnum = b32(&rand::random::<[u8; 20]>());
    write_new(
        &dir.join("private").join("introducer.swissnum"),
        format!("{swissnum}\n").as_bytes(),
        0o600,
    )?;
    crate::output::line(&format!("Introducer created in {}", dir.display()))?;
    crate::output::line(&format!("  start it with: tessera run {}", dir.display()))?;
    crate::output::line(&format!(
        "  its address appears in {} once it runs",
        dir.join("private/introducer.furl").display()
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_ports_avoid_the_ephemeral_range_and_the_low_ports() {
        let allowed = |range| -> Vec<std::ops::RangeInclusive<u16>> {
            // The allowed ports as ranges, from a scan of every port.
            let mut ranges: Vec<std::ops::RangeInclusive<u16>> = Vec::new();
            for port in 0..=u16::MAX {
                if !persistent(port, range) {
                    continue;
                }
                match ranges.last_mut() {
                    Some(last) if *last.end() + 1 == port => *last = *last.start()..=port,
                    _ => ranges.push(port..=port),
                }
            }
            ranges
        };
        assert_eq!(allowed((32768, 60999)), vec![10000..=32767, 61000..=65535]);
        assert_eq!(allowed((49152, 65535)), vec![10000..=49151]);
        assert_eq!(allowed((1024, 65535)), Vec::new());
        assert_eq!(allowed((1024, 5000)), vec![10000..=65535]);
    }

    #[test]
    fn a_chosen_port_is_free_and_not_ephemeral() {
        let (low, high) = ephemeral_port_range();
        // A machine whose ephemeral range covers every port above 10000 leaves nothing to choose.
        let avoidable = (FIRST_PERSISTENT_PORT..=u16::MAX).any(|port| persistent(port, (low, high)));
        for _ in 0..20 {
            let port = choose_port(None).unwrap();
            if avoidable {
                assert!(port >= 10000 && !(low..=high).contains(&port), "{port}");
            }
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
        assert_eq!(choose_port(Some(4444)).unwrap(), 4444);
    }
}
