//! The client side of a node: which storage servers it knows (`private/servers.yaml` in Tahoe's
//! format), the grid built from them, and the web gateway on `[node] web.port`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use filenode::grid::upload::UploadParams;
use filenode::grid::{ClientSecrets, Grid, ServerEntry};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::NodeConfig;

/// How often the client probes each server.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// A storage server's announcement, with Tahoe's key names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Announcement {
    #[serde(default)]
    pub(crate) nickname: String,
    #[serde(rename = "anonymous-storage-FURL")]
    pub(crate) furl: String,
    #[serde(rename = "anonymous-storage-NURLs", default)]
    pub(crate) nurls: Vec<String>,
    #[serde(
        rename = "permutation-seed-base32",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) permutation_seed_base32: Option<String>,
    /// Tessera's: the server's web address (its `node.url`: status pages, `/storage`), when it
    /// has a web port. An extra key, which Tahoe's clients ignore; taken only when
    /// [`web_url`] accepts it.
    #[serde(rename = "tessera-web-url", default, skip_serializing_if = "Option::is_none")]
    pub(crate) web_url: Option<String>,
}

/// The longest announced web address taken.
const MAX_WEB_URL: usize = 256;

/// An announced web address, if it is one a page may link to: `http://` or `https://`, at most
/// [`MAX_WEB_URL`] bytes, printable ASCII without quotes, angle brackets, backslashes or spaces.
pub(crate) fn web_url(ann: &Announcement) -> Option<String> {
    let url = ann.web_url.as_deref()?.trim();
    let fine = url.len() <= MAX_WEB_URL
        && (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`'));
    fine.then(|| {
        let mut url = url.to_owned();
        if !url.ends_with('/') {
            url.push('/');
        }
        url
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct ServersFile {
    storage: BTreeMap<String, ServerSection>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ServerSection {
    ann: Announcement,
}

/// Reads `private/servers.yaml` (absent: no static servers).
pub(crate) fn read_servers_yaml(dir: &Path) -> anyhow::Result<BTreeMap<String, Announcement>> {
    let path = dir.join("private").join("servers.yaml");
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = frontends::textfile::read_bounded(&path, frontends::textfile::LIST_LIMIT)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_servers_yaml(&text).with_context(|| format!("{} is not a valid servers.yaml", path.display()))
}

/// Parses the text of a `servers.yaml`.
pub(crate) fn parse_servers_yaml(text: &str) -> Result<BTreeMap<String, Announcement>, serde_yaml_ng::Error> {
    let file: ServersFile = serde_yaml_ng::from_str(text)?;
    Ok(file
        .storage
        .into_iter()
        .map(|(id, section)| (id, section.ann))
        .collect())
}

/// Tahoe's `[node] timeout.keepalive` and `timeout.disconnect`, as they apply to this client's
/// connections to storage servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// `timeout.keepalive` (Tahoe's default 240 s): after this long without traffic on a
    /// connection, TCP keepalive probes ask the server to say something (then every as long again).
    pub(crate) keepalive: Duration,
    /// `timeout.disconnect` (Tahoe: none): a server silent this long in the middle of a request is
    /// dropped (the connection is closed and the request fails). It replaces the 60 s bounds on
    /// connecting and on waiting for an answer, and the 30 s ceiling of a request's deadline.
    pub(crate) disconnect: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            keepalive: Duration::from_secs(240),
            disconnect: None,
        }
    }
}

/// Turns an announcement into a server the grid can use (HTTPS, pinned by the NURL).
pub(crate) fn server_entry(
    server_id: &str,
    ann: &Announcement,
    timeouts: Timeouts,
) -> anyhow::Result<ServerEntry> {
    let tubid = ann
        .furl
        .strip_prefix("pb://")
        .and_then(|rest| rest.split('@').next())
        .with_context(|| {
            format!(
                "server {server_id}: anonymous-storage-FURL {:?} has no tub id",
                ann.furl
            )
        })?;
    let tub_bytes = storage::base32::decode(tubid).ok().filter(|b| b.len() == 20);
    let Some(tub_bytes) = tub_bytes else {
        bail!("server {server_id}: the tub id in its fURL is not 20 bytes of base32");
    };
    let mut lease_seed = [0u8; 20];
    lease_seed.copy_from_slice(&tub_bytes);
    let permutation_seed = match &ann.permutation_seed_base32 {
        Some(seed) => storage::base32::decode(seed)
            .map_err(|e| anyhow::anyhow!("server {server_id}: bad permutation-seed-base32: {e}"))?,
        None => tub_bytes,
    };
    let nurl = ann
        .nurls
        .iter()
        .find_map(|text| text.parse::<storage::nurl::Nurl>().ok())
        .with_context(|| {
            format!("server {server_id}: no usable anonymous-storage-NURLs (Tessera speaks HTTPS only)")
        })?;
    let mut options = storage::http::client::HttpClientOptions {
        tcp_keepalive: Some(timeouts.keepalive),
        ..Default::default()
    };
    if let Some(disconnect) = timeouts.disconnect {
        options.connect_timeout = disconnect;
        options.header_timeout = disconnect;
        options.body_silence_timeout = disconnect;
    }
    let client = storage::http::client::HttpStorageClient::with_options(&nurl, options)
        .with_context(|| format!("server {server_id}: cannot set up an HTTPS client"))?;
    Ok(ServerEntry {
        server_id: server_id.to_owned(),
        nickname: ann.nickname.clone(),
        permutation_seed,
        preferred: false,
        lease_seed,
        client: Arc::new(client),
        request_timeout: timeouts.disconnect.unwrap_or(filenode::grid::REQUEST_TIMEOUT),
        speed: Default::default(),
    })
}

fn read_secret(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join("private").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    storage::base32::decode(text.trim()).map_err(|e| anyhow::anyhow!("{} is not base32: {e}", path.display()))
}

/// Builds the grid client from the node's configuration and secrets.
pub(crate) fn build_grid(dir: &Path, config: &NodeConfig) -> anyhow::Result<Arc<Grid>> {
    let secrets = ClientSecrets {
        lease_secret: read_secret(dir, "secret")?,
        convergence: if config.convergence {
            Some(read_secret(dir, "convergence")?)
        } else {
            None
        },
    };
    let params = UploadParams {
        needed: config.shares_needed,
        happy: config.shares_happy,
        total: config.shares_total,
        ..UploadParams::default()
    };
    let grid = Arc::new(Grid::new(secrets, params));
    if !config.preferred_peers.is_empty() {
        info!(
            count = config.preferred_peers.len(),
            "preferred storage servers ([client] peers.preferred) come first for every file"
        );
    }
    grid.set_preferred_peers(config.preferred_peers.iter().cloned());
    let mut entries = Vec::new();
    for (id, ann) in read_servers_yaml(dir)? {
        match server_entry(&id, &ann, config.timeouts) {
            Ok(entry) => entries.push(entry),
            Err(e) => warn!("ignoring a server in servers.yaml: {e:#}"),
        }
    }
    info!(
        servers = entries.len(),
        "storage servers configured in servers.yaml"
    );
    grid.set_servers(entries);
    Ok(grid)
}

/// What the client learned from all its introducers, merged: per server, the announcement with
/// the highest seqnum (from whichever introducer brought it) and the grid's entry built from it.
#[derive(Default)]
struct Merged {
    servers: BTreeMap<String, (u64, Announcement, ServerEntry)>,
}

impl Merged {
    /// Takes what one introducer says; whether an entry changed. An announcement no newer than the
    /// one known is ignored; a newer one with the same content keeps the entry (and its
    /// connection). At most [`crate::introducer::MAX_SERVERS`] servers, whatever the introducers
    /// say between them.
    fn learn(
        &mut self,
        learned: &crate::introducer::Learned,
        static_servers: &BTreeMap<String, Announcement>,
        timeouts: Timeouts,
        links: &frontends::web::ServerLinks,
    ) -> bool {
        let mut changed = false;
        for (id, body) in learned {
            if static_servers.contains_key(id) {
                continue;
            }
            let full = self.servers.len() >= crate::introducer::MAX_SERVERS;
            match self.servers.get_mut(id) {
                Some((seqnum, _, _)) if *seqnum >= body.seqnum => continue,
                Some((seqnum, ann, _)) if ann == &body.storage => {
                    *seqnum = body.seqnum;
                    continue;
                }
                None if full => continue,
                _ => {}
            }
            match server_entry(id, &body.storage, timeouts) {
                Ok(entry) => {
                    info!(server = %id, nickname = %crate::announcement::shown_nickname(&body.storage.nickname), "learned a storage server");
                    let mut links = links.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match web_url(&body.storage) {
                        Some(url) => links.insert(id.clone(), url),
                        None => links.remove(id),
                    };
                    self.servers
                        .insert(id.clone(), (body.seqnum, body.storage.clone(), entry));
                    changed = true;
                }
                Err(e) => warn!("ignoring an announced server: {e:#}"),
            }
        }
        changed
    }
}

/// Adds the servers that `introducers` announce to the grid (alongside those of `servers.yaml`):
/// one subscription per introducer, what they say merged (the newest announcement of each server
/// wins, whichever introducer brought it; none is passed on to another introducer). Entries are
/// rebuilt only when a server's announcement changes, so connections are kept; an introducer that
/// goes away takes nothing with it.
#[allow(
    clippy::too_many_arguments,
    reason = "the gateway's grid, web state and identity, each named at the call sites"
)]
pub(crate) fn follow_introducers(
    dir: &Path,
    introducers: &[crate::introducer_config::IntroducerConfig],
    grid: Arc<Grid>,
    timeouts: Timeouts,
    links: frontends::web::ServerLinks,
    statuses: frontends::web::IntroducerStatuses,
    nickname: &str,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let static_servers = Arc::new(read_servers_yaml(dir)?);
    let merged: Arc<std::sync::Mutex<Merged>> = Default::default();
    // How this client names itself to each introducer (which lists its subscribers).
    let me = crate::introducer::SubscriberInfo::new(nickname);
    for introducer in introducers {
        let (static_servers, merged, grid, links) = (
            Arc::clone(&static_servers),
            Arc::clone(&merged),
            Arc::clone(&grid),
            links.clone(),
        );
        let update = move |learned: &crate::introducer::Learned| {
            let mut merged = merged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !merged.learn(learned, &static_servers, timeouts, &links) {
                return;
            }
            // Static servers keep the entries (and connections) the grid already has for them.
            let current = grid.servers_with_status();
            let mut entries: Vec<ServerEntry> = static_servers
                .iter()
                .filter_map(|(id, ann)| {
                    current
                        .iter()
                        .find(|(entry, _)| &entry.server_id == id)
                        .map(|(entry, _)| entry.clone())
                        .or_else(|| server_entry(id, ann, timeouts).ok())
                })
                .collect();
            entries.extend(merged.servers.values().map(|(_, _, entry)| entry.clone()));
            grid.set_servers(entries);
            let grid = Arc::clone(&grid);
            tokio::spawn(async move { grid.probe().await });
        };
        crate::introducer::spawn_subscriber(
            dir.to_path_buf(),
            introducer.clone(),
            me.clone(),
            update,
            statuses.clone(),
            shutdown.clone(),
        );
    }
    Ok(())
}

/// Keeps each server's connection state current.
pub(crate) fn spawn_prober(grid: Arc<Grid>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => grid.probe().await,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[client] peers.preferred` reaches the grid: the named servers (of `servers.yaml` here)
    /// are marked preferred, the others not.
    #[test]
    fn preferred_peers_of_the_config_mark_the_grids_servers() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::write(private.join("secret"), storage::base32::encode(&[1; 32])).unwrap();
        std::fs::write(private.join("convergence"), storage::base32::encode(&[2; 32])).unwrap();
        let spki = storage::tls::TlsIdentity::generate().unwrap().spki_hash();
        let mut yaml = String::from("storage:\n");
        for i in 1..=3u8 {
            let nurl = storage::nurl::Nurl::new(spki.clone(), "127.0.0.1", 1, "swiss");
            yaml.push_str(&format!(
                "  v0-server{i}:\n    ann:\n      nickname: s{i}\n      anonymous-storage-FURL: pb://{}@tcp:127.0.0.1:1/swiss\n      anonymous-storage-NURLs: [\"{nurl}\"]\n",
                storage::base32::encode(&[i; 20])
            ));
        }
        std::fs::write(private.join("servers.yaml"), yaml).unwrap();
        std::fs::write(
            dir.path().join("tahoe.cfg"),
            "[client]\npeers.preferred = v0-server3, v0-elsewhere\n[storage]\nenabled = false\n",
        )
        .unwrap();
        let config = NodeConfig::load(dir.path()).unwrap();
        let grid = build_grid(dir.path(), &config).unwrap();
        let marks: Vec<(String, bool)> = grid
            .servers_with_status()
            .into_iter()
            .map(|(entry, _)| (entry.server_id, entry.preferred))
            .collect();
        assert_eq!(
            marks,
            [
                ("v0-server1".to_owned(), false),
                ("v0-server2".to_owned(), false),
                ("v0-server3".to_owned(), true)
            ]
        );
    }

    fn body(seqnum: u64, nickname: &str, port: u16) -> crate::announcement::AnnouncementBody {
        static SPKI: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let spki = SPKI.get_or_init(|| storage::tls::TlsIdentity::generate().unwrap().spki_hash());
        crate::announcement::test_body(seqnum, nickname, spki, port)
    }

    #[test]
    fn what_several_introducers_say_is_merged_newest_first() {
        let mut merged = Merged::default();
        let links = frontends::web::ServerLinks::default();
        let none = BTreeMap::new();
        let learn = |merged: &mut Merged, list: &[(&str, crate::announcement::AnnouncementBody)]| {
            let learned: crate::introducer::Learned =
                list.iter().map(|(id, b)| ((*id).to_owned(), b.clone())).collect();
            merged.learn(&learned, &none, Timeouts::default(), &links)
        };
        // Introducer one knows a and b; introducer two knows b (older) and c.
        assert!(learn(
            &mut merged,
            &[("a", body(5, "a", 1)), ("b", body(9, "b-new", 2))]
        ));
        assert!(learn(
            &mut merged,
            &[("b", body(3, "b-old", 2)), ("c", body(1, "c", 3))]
        ));
        let nick = |merged: &Merged, id: &str| merged.servers[id].1.nickname.clone();
        assert_eq!(merged.servers.len(), 3);
        assert_eq!(nick(&merged, "b"), "b-new");
        // The same announcement again, or an older one, changes nothing.
        assert!(!learn(
            &mut merged,
            &[("a", body(5, "a", 1)), ("b", body(8, "b-x", 2))]
        ));
        // A newer seqnum with the same content keeps the entry (and its connections).
        let client = Arc::clone(&merged.servers["a"].2.client);
        assert!(!learn(&mut merged, &[("a", body(6, "a", 1))]));
        assert_eq!(merged.servers["a"].0, 6);
        assert!(Arc::ptr_eq(&client, &merged.servers["a"].2.client));
        // A newer one with new content from either introducer replaces it.
        assert!(learn(&mut merged, &[("a", body(7, "a-moved", 4))]));
        assert_eq!(nick(&merged, "a"), "a-moved");
        // Bounded, whatever the introducers say between them.
        let many: Vec<(String, crate::announcement::AnnouncementBody)> = (0..crate::introducer::MAX_SERVERS)
            .map(|i| (format!("s{i}"), body(1, "s", 5)))
            .collect();
        let refs: Vec<(&str, crate::announcement::AnnouncementBody)> =
            many.iter().map(|(id, b)| (id.as_str(), b.clone())).collect();
        learn(&mut merged, &refs);
        assert_eq!(merged.servers.len(), crate::introducer::MAX_SERVERS);
        // Known servers still update when the map is full.
        assert!(learn(&mut merged, &[("b", body(10, "b-newer", 2))]));
        assert_eq!(nick(&merged, "b"), "b-newer");
    }

    #[test]
    fn only_plain_http_web_addresses_are_linked() {
        let with = |url: Option<&str>| Announcement {
            nickname: String::new(),
            furl: String::new(),
            nurls: Vec::new(),
            permutation_seed_base32: None,
            web_url: url.map(str::to_owned),
        };
        assert_eq!(
            web_url(&with(Some("http://127.0.0.1:3456/"))).as_deref(),
            Some("http://127.0.0.1:3456/")
        );
        assert_eq!(
            web_url(&with(Some("https://example.test:8443"))).as_deref(),
            Some("https://example.test:8443/")
        );
        for bad in [
            "javascript:alert(1)",
            "http://a/\"onmouseover=x",
            "http://a/<b>",
            "http://a b/",
            "ftp://a/",
            &format!("http://{}/", "a".repeat(300)),
        ] {
            assert_eq!(web_url(&with(Some(bad))), None, "{bad}");
        }
        assert_eq!(web_url(&with(None)), None);
        // An extra key that Tahoe's clients ignore; absent when the server has no web port.
        let text = serde_json::to_string(&with(None)).unwrap();
        assert!(!text.contains("tessera-web-url"), "{text}");
        let text = serde_json::to_string(&with(Some("http://127.0.0.1:1/"))).unwrap();
        assert!(
            text.contains(r#""tessera-web-url":"http://127.0.0.1:1/""#),
            "{text}"
        );
    }
}
