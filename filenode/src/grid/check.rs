//! Checking a file's health on the grid (Tahoe's `t=check`): which servers hold which shares,
//! whether the file is recoverable and healthy, optionally every share verified byte for byte, and
//! optionally the client's lease added or renewed on every share found (what keeps files alive on
//! grids whose servers expire leases).
//!
//! - CHK: every server is asked which shares it holds; `verify` reads each share whole and checks
//!   its header, UEB, hash trees, share hash chain and every block ([`verify_share`]).
//! - Mutable (SDMF/MDMF): the servermap query (signatures checked) gives the versions; the file is
//!   healthy when its newest version is recoverable, no other version is around, all N shares of
//!   it are there and none is corrupt (a share whose signature fails is corrupt even without
//!   `verify`); `verify` reads every share whole and checks it on its own ([`super::verify`]), and
//!   only shares that pass count.
//! - LIT: nothing is stored on servers; always healthy.
//!
//! With `verify`, each share that fails is named with its server, number and reason, and its
//! server gets a corruption advisory; a share that cannot be read (its server failed) is
//! `unreadable`, neither good nor corrupt.
//!
//! Repair ([`repair_chk`] for immutable files; `Grid::check_and_repair` republishes mutable ones)
//! replaces corrupt shares: see ARCHITECTURE.md, "Corrupt shares".
//!
//! Healthy means what Tahoe's checker means: all N shares found and good (for a mutable file: of
//! its only version, with no other version around). Happiness is reported beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::join_all;
use storage::StorageIndex;
use storage::api::ShareKind;

use super::{ServerEntry, mutable, with_timeout};
use crate::cap::{ChkCap, FileCap, MutableCap};
use crate::immutable::{ShareProblem, ShareSource, verify_share};

/// What to do beyond locating shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Read every share whole and verify it (`verify=true`).
    pub verify: bool,
    /// Add or renew this client's lease on every share found (`add-lease=true`).
    pub add_lease: bool,
}

/// One share that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptShare {
    /// The server's id.
    pub server_id: String,
    /// The share number.
    pub shnum: u16,
    /// What was wrong.
    pub reason: String,
}

/// The outcome of a check (the fields of Tahoe's check results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The storage index (`None` for LIT files, which have none).
    pub storage_index: Option<StorageIndex>,
    /// k.
    pub needed: u16,
    /// N.
    pub expected: u16,
    /// Servers of happiness the found shares achieve.
    pub happiness: usize,
    /// Distinct good shares (of the newest version, for a mutable file).
    pub good_shares: usize,
    /// Servers holding at least one good share.
    pub good_share_hosts: usize,
    /// Shares that failed verification, each with its server and what is wrong.
    pub corrupt: Vec<CorruptShare>,
    /// Shares that could not be read whole during verification (their server failed or timed
    /// out): neither good nor corrupt.
    pub unreadable: Vec<CorruptShare>,
    /// Shares of other versions (mutable files) or of no known version.
    pub wrong_shares: usize,
    /// Good shares by share number: the ids of the servers holding each.
    pub sharemap: BTreeMap<u16, Vec<String>>,
    /// The ids of the servers that answered.
    pub servers_responding: Vec<String>,
    /// Recoverable versions found (1 for a recoverable immutable file).
    pub recoverable_versions: usize,
    /// Unrecoverable versions found.
    pub unrecoverable_versions: usize,
    /// Whether the file can be read.
    pub recoverable: bool,
    /// Whether nothing needs repair.
    pub healthy: bool,
    /// Leases added or renewed (with `add_lease`).
    pub leases_renewed: usize,
    /// Servers on which adding a lease failed, with the error.
    pub lease_failures: Vec<(String, String)>,
    /// For a mutable file, the version the counts are about: (seqnum, root hash).
    pub version: Option<(u64, [u8; 32])>,
    /// Whether the object is a mutable file (its summary speaks of versions).
    pub is_mutable: bool,
}

impl CheckReport {
    /// Tahoe's one-line summary: `Healthy`, or for an immutable file `Not Healthy: 6 shares (enc
    /// 3-of-10)`, for a mutable one `Unhealthy: ` and what is wrong.
    pub fn summary(&self) -> String {
        if self.healthy {
            return "Healthy".to_owned();
        }
        let counts = format!(
            "{} shares (enc {}-of-{})",
            self.good_shares, self.needed, self.expected
        );
        if !self.is_mutable {
            return format!("Not Healthy: {counts}");
        }
        let mut parts = Vec::new();
        if self.unrecoverable_versions > 0 {
            parts.push("some versions are unrecoverable".to_owned());
        }
        if self.recoverable_versions == 0 {
            parts.push("no versions are recoverable".to_owned());
        }
        if self.recoverable_versions > 1 {
            parts.push("multiple versions are recoverable".to_owned());
        }
        if self.recoverable_versions > 0 && self.good_shares < usize::from(self.expected) {
            parts.push(counts);
        }
        if !self.corrupt.is_empty() {
            parts.push("Corrupt Shares:".to_owned());
            parts.extend(
                self.corrupt
                    .iter()
                    .map(|c| format!("{}-sh{}", c.server_id, c.shnum)),
            );
        }
        format!("Unhealthy: {}", parts.join(" "))
    }

    fn literal() -> Self {
        CheckReport {
            storage_index: None,
            needed: 0,
            expected: 0,
            happiness: 0,
            good_shares: 0,
            good_share_hosts: 0,
            corrupt: Vec::new(),
            unreadable: Vec::new(),
            wrong_shares: 0,
            sharemap: BTreeMap::new(),
            servers_responding: Vec::new(),
            recoverable_versions: 0,
            unrecoverable_versions: 0,
            recoverable: true,
            healthy: true,
            leases_renewed: 0,
            lease_failures: Vec::new(),
            version: None,
            is_mutable: false,
        }
    }
}

/// Checks a file cap (of any kind; a directory is checked through its file cap).
pub async fn check_file(
    servers: &[ServerEntry],
    secrets: &super::ClientSecrets,
    cap: &FileCap,
    options: CheckOptions,
) -> CheckReport {
    let mut report = match cap {
        FileCap::Lit(_) => return CheckReport::literal(),
        FileCap::Chk(chk) => check_chk(servers, *chk, options).await,
        FileCap::ChkVerifier(verifier) => {
            // Verification needs no key: the verify cap carries all the rest of what it checks.
            let chk = ChkCap {
                key: [0; 16],
                ueb_hash: verifier.ueb_hash,
                needed: verifier.needed,
                total: verifier.total,
                size: verifier.size,
            };
            let mut report = check_chk(servers, chk, options).await;
            report.storage_index = Some(verifier.storage_index);
            report
        }
        FileCap::Mutable(mutable) => check_mutable(servers, mutable, options).await,
    };
    if options.add_lease
        && let Some(storage_index) = report.storage_index
    {
        let holders: BTreeSet<&String> = report.sharemap.values().flatten().collect();
        let targets: Vec<&ServerEntry> = servers
            .iter()
            .filter(|s| holders.contains(&s.server_id))
            .collect();
        let results = join_all(targets.iter().map(|server| async move {
            let lease = secrets.lease_secrets(storage_index.as_bytes(), &server.lease_seed);
            let renewed = with_timeout(
                server.request_timeout,
                server.client.add_or_renew_lease(storage_index, &lease),
            )
            .await;
            (server.server_id.clone(), renewed)
        }))
        .await;
        for (server_id, result) in results {
            match result {
                Ok(()) => report.leases_renewed += 1,
                Err(e) => report.lease_failures.push((server_id, e.to_string())),
            }
        }
    }
    report
}

/// One share location of an immutable file.
struct Found {
    server: ServerEntry,
    source: Arc<dyn ShareSource>,
}

async fn check_chk(servers: &[ServerEntry], cap: ChkCap, options: CheckOptions) -> CheckReport {
    let storage_index = cap.storage_index();
    let answers = join_all(servers.iter().map(|server| async move {
        let listed = with_timeout(
            server.request_timeout,
            server.client.list_shares(ShareKind::Immutable, storage_index),
        )
        .await;
        (server, listed)
    }))
    .await;
    let mut responding = Vec::new();
    let mut found = Vec::new();
    for (server, answer) in answers {
        let Ok(shares) = answer else { continue };
        responding.push(server.server_id.clone());
        for shnum in shares {
            let source = super::download::RemoteShare::new(server.clone(), storage_index, shnum);
            found.push(Found {
                server: server.clone(),
                source: Arc::new(source),
            });
        }
    }
    let mut corrupt = Vec::new();
    let mut unreadable = Vec::new();
    // Share numbers outside 0..N cannot be this file's.
    let before = found.len();
    found.retain(|share| share.source.shnum() < cap.total);
    let wrong = before - found.len();
    if options.verify {
        // Every share read whole: header, UEB against the cap, hash trees, chain, every block.
        let verdicts = join_all(
            found
                .iter()
                .map(|share| verify_share(&cap, Arc::clone(&share.source))),
        )
        .await;
        let mut kept = Vec::new();
        for (share, verdict) in found.into_iter().zip(verdicts) {
            let named = |reason: String| CorruptShare {
                server_id: share.server.server_id.clone(),
                shnum: share.source.shnum(),
                reason,
            };
            match verdict {
                Ok(()) => kept.push(share),
                Err(bad) if matches!(bad.problem, ShareProblem::Unreadable(_)) => {
                    unreadable.push(named(bad.problem.to_string()));
                }
                Err(bad) => corrupt.push(named(bad.problem.to_string())),
            }
        }
        found = kept;
    }
    let mut sharemap: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for share in &found {
        sharemap
            .entry(share.source.shnum())
            .or_default()
            .push(share.server.server_id.clone());
    }
    for holders in sharemap.values_mut() {
        holders.sort();
    }
    let mut report = finish(
        storage_index,
        cap.needed,
        cap.total,
        sharemap,
        responding,
        corrupt,
        wrong,
    );
    report.unreadable = unreadable;
    report
}

async fn check_mutable(servers: &[ServerEntry], cap: &MutableCap, options: CheckOptions) -> CheckReport {
    let storage_index = cap.storage_index();
    let map = mutable::update_servermap(servers, cap).await;
    let responding: Vec<String> = map.responders.iter().map(|s| s.server_id.clone()).collect();
    let named = |share: &mutable::LocatedShare, reason: String| CorruptShare {
        server_id: share.server.server_id.clone(),
        shnum: share.shnum,
        reason,
    };
    // Shares whose header is not signed: an unfinished write (ours or another writer's in
    // progress) is of no known version; anything else is corrupt, as the servermap query saw.
    let mut corrupt = Vec::new();
    let mut unreadable = Vec::new();
    let mut wrong = 0;
    let mut signed: Vec<&mutable::LocatedShare> = Vec::new();
    for share in &map.shares {
        if let Some(header) = &share.header {
            // As for immutable files: a share number outside 0..N is not of this version.
            if share.shnum < u16::from(header.total) {
                signed.push(share);
            } else {
                wrong += 1;
            }
        } else if share
            .prefix
            .get(9..41)
            .is_some_and(|root| root.iter().all(|b| *b == 0))
        {
            wrong += 1;
        } else {
            corrupt.push(named(share, super::verify::header_problem(share, cap)));
        }
    }
    // The shares that count: with verify, those that pass every check; else those signed.
    let good: Vec<&mutable::LocatedShare> = if options.verify {
        let verdicts = super::verify::verify_shares(&signed, cap).await;
        let mut good = Vec::new();
        for (share, verdict) in signed.iter().zip(verdicts) {
            match verdict {
                super::verify::ShareVerdict::Good => good.push(*share),
                super::verify::ShareVerdict::Corrupt(reason) => {
                    advise_mutable(share, storage_index, &reason).await;
                    corrupt.push(named(share, reason));
                }
                super::verify::ShareVerdict::Unreadable(reason) => unreadable.push(named(share, reason)),
            }
        }
        good
    } else {
        signed.clone()
    };
    // Every signed version counts, even one whose shares all failed verification; each is
    // recoverable when k of its shares (distinct numbers) are good.
    let versions: Vec<(mutable::VersionId, u8, u8)> = {
        let mut seen = BTreeMap::new();
        for share in &signed {
            let header = share
                .header
                .as_ref()
                .expect("invariant: signed shares have headers");
            seen.entry(header.version())
                .or_insert((header.needed, header.total));
        }
        seen.into_iter().rev().map(|(v, (k, n))| (v, k, n)).collect()
    };
    let good_of = |version: mutable::VersionId| -> Vec<&mutable::LocatedShare> {
        good.iter()
            .copied()
            .filter(|s| s.header.as_ref().is_some_and(|h| h.version() == version))
            .collect()
    };
    let recoverable_of = |version: mutable::VersionId, needed: u8| {
        good_of(version)
            .iter()
            .map(|s| s.shnum)
            .collect::<BTreeSet<_>>()
            .len()
            >= usize::from(needed)
    };
    let recoverable_versions = versions.iter().filter(|(v, k, _)| recoverable_of(*v, *k)).count();
    let unrecoverable_versions = versions.len() - recoverable_versions;
    // The counts are about the best recoverable version (the newest when none is recoverable), as
    // in Tahoe; good shares of any other version are wrong.
    let best = versions
        .iter()
        .find(|(v, k, _)| recoverable_of(*v, *k))
        .or(versions.first())
        .copied();
    let Some((best, needed, total)) = best else {
        // Nothing signed was found: Tahoe's defaults for the encoding.
        let mut report = finish(storage_index, 3, 10, BTreeMap::new(), responding, corrupt, wrong);
        report.unreadable = unreadable;
        report.is_mutable = true;
        report.recoverable_versions = 0;
        report.unrecoverable_versions = 0;
        report.recoverable = false;
        report.healthy = false;
        return report;
    };
    let best_shares = good_of(best);
    wrong += good.len() - best_shares.len();
    let mut sharemap: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for share in &best_shares {
        sharemap
            .entry(share.shnum)
            .or_default()
            .push(share.server.server_id.clone());
    }
    for holders in sharemap.values_mut() {
        holders.sort();
    }
    let mut report = finish(
        storage_index,
        u16::from(needed),
        u16::from(total),
        sharemap,
        responding,
        corrupt,
        wrong,
    );
    report.unreadable = unreadable;
    report.recoverable_versions = recoverable_versions;
    report.unrecoverable_versions = unrecoverable_versions;
    report.is_mutable = true;
    report.version = Some(best);
    report.recoverable = recoverable_of(best, needed);
    report.healthy = report.healthy
        && report.corrupt.is_empty()
        && recoverable_versions == 1
        && unrecoverable_versions == 0;
    report
}

/// Tells a mutable share's server that the share failed verification (a corruption advisory).
async fn advise_mutable(share: &mutable::LocatedShare, storage_index: StorageIndex, reason: &str) {
    let _ = with_timeout(
        share.server.request_timeout,
        share
            .server
            .client
            .advise_corrupt_share(ShareKind::Mutable, storage_index, share.shnum, reason),
    )
    .await;
}

/// Fills in the counts and verdicts from where the good shares are.
#[allow(
    clippy::too_many_arguments,
    reason = "one call per file kind, all fields named there"
)]
fn finish(
    storage_index: StorageIndex,
    needed: u16,
    expected: u16,
    sharemap: BTreeMap<u16, Vec<String>>,
    servers_responding: Vec<String>,
    corrupt: Vec<CorruptShare>,
    wrong_shares: usize,
) -> CheckReport {
    let mut holdings: BTreeMap<usize, BTreeSet<u16>> = BTreeMap::new();
    let mut hosts: Vec<&String> = sharemap.values().flatten().collect();
    hosts.sort();
    hosts.dedup();
    for (shnum, holders) in &sharemap {
        for holder in holders {
            let index = hosts
                .binary_search(&holder)
                .expect("invariant: every holder is a host");
            holdings.entry(index).or_default().insert(*shnum);
        }
    }
    let happiness = super::placement::happiness(&holdings);
    let good_shares = sharemap.len();
    let recoverable = needed > 0 && good_shares >= usize::from(needed);
    // Tahoe's rule: healthy when every one of the N shares is there (and good). Happiness is
    // reported beside it.
    let healthy = recoverable && good_shares >= usize::from(expected);
    CheckReport {
        storage_index: Some(storage_index),
        needed,
        expected,
        happiness,
        good_shares,
        good_share_hosts: hosts.len(),
        corrupt,
        unreadable: Vec::new(),
        wrong_shares,
        sharemap,
        servers_responding,
        recoverable_versions: usize::from(recoverable),
        unrecoverable_versions: usize::from(!recoverable && good_shares > 0),
        recoverable,
        healthy,
        leases_renewed: 0,
        lease_failures: Vec::new(),
        version: None,
        is_mutable: false,
    }
}

/// Repairs an immutable file: reads it (verified, from any k good shares) and uploads it again
/// with its own key and encoding parameters, which makes the very same shares: those still on the
/// servers and good are kept and the missing ones are written where the placement puts them.
///
/// Every share on the servers is verified first (`verified` is a check with verify that already
/// did it): a corrupt share never counts as placed. Once the file is known to be readable, each
/// corrupt share's server is asked to remove it (a Tessera server does when its own check proves
/// the share corrupt), so that its good copy can go back to the same server; a server that keeps
/// it (a Tahoe server has no such request) gets no copy of that share, which goes elsewhere.
///
/// The upload asks for happiness k, not the client's `shares.happy`: a repair writes every share
/// it can place (a server that keeps a corrupt copy may leave fewer servers than `shares.happy`
/// to spread them over), and whether the file is healthy afterwards is the check's verdict.
pub async fn repair_chk(
    servers: &[ServerEntry],
    secrets: &super::ClientSecrets,
    cap: ChkCap,
    verified: Option<&CheckReport>,
) -> Result<super::upload::UploadResult, String> {
    use futures::{SinkExt, StreamExt};

    let report = match verified {
        Some(report) => report.clone(),
        None => {
            let options = CheckOptions {
                verify: true,
                add_lease: false,
            };
            check_chk(servers, cap, options).await
        }
    };
    if !report.recoverable {
        return Err(unrecoverable_message(&report));
    }
    // Read from the shares that verified (the corrupt ones may be removed while it reads).
    let storage_index = cap.storage_index();
    let sources: Vec<Arc<dyn ShareSource>> = report
        .sharemap
        .iter()
        .flat_map(|(shnum, holders)| holders.iter().map(move |id| (*shnum, id)))
        .filter_map(|(shnum, id)| {
            let server = servers.iter().find(|s| s.server_id == *id)?;
            let source = super::download::RemoteShare::new(server.clone(), storage_index, shnum);
            Some(Arc::new(source) as Arc<dyn ShareSource>)
        })
        .collect();
    let reader = crate::immutable::ChkReader::open(cap, sources)
        .await
        .map_err(|e| format!("the file cannot be read: {e}"))?;
    let mut known = super::upload::KnownShares::default();
    for (shnum, holders) in &report.sharemap {
        for server_id in holders {
            known.good.insert((server_id.clone(), *shnum));
        }
    }
    for bad in &report.corrupt {
        let Some(server) = servers.iter().find(|s| s.server_id == bad.server_id) else {
            continue;
        };
        if !super::upload::remove_corrupt(server, storage_index, bad.shnum, &bad.reason).await {
            known.corrupt.insert((bad.server_id.clone(), bad.shnum));
        }
    }
    let params = super::upload::UploadParams {
        needed: cap.needed,
        total: cap.total,
        happy: cap.needed,
        max_segment_size: reader.geometry().segment_size,
    };
    let (mut sender, receiver) = futures::channel::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let feed = async move {
        let stream = match Arc::new(reader).stream_range(0, cap.size) {
            Ok(stream) => stream,
            Err(e) => {
                let _ = sender.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            let failed = chunk.is_err();
            if sender.send(chunk).await.is_err() || failed {
                return;
            }
        }
    };
    let input = ChannelReader {
        receiver,
        chunk: Vec::new(),
        at: 0,
        position: 0,
    };
    let upload =
        super::upload::upload_with_key(servers, secrets, &params, input, cap.key, cap.size, None, known);
    let (result, ()) = futures::join!(upload, feed);
    let result = result.map_err(|e| e.to_string())?;
    if result.cap != FileCap::Chk(cap) {
        return Err("re-encoding gave different shares (the file's parameters were not reproduced)".into());
    }
    Ok(result)
}

/// Why a file cannot be repaired: how many good shares are left of how many needed, and what
/// happened to the others.
pub fn unrecoverable_message(report: &CheckReport) -> String {
    let mut message = format!(
        "the file is not recoverable: {} good shares are left and {} are needed",
        report.good_shares, report.needed
    );
    if !report.corrupt.is_empty() {
        message.push_str(&format!("; {} shares are corrupt", report.corrupt.len()));
    }
    if !report.unreadable.is_empty() {
        message.push_str(&format!("; {} could not be read", report.unreadable.len()));
    }
    message
}

/// The plaintext of a file being repaired, as the encoder's `Read` (it runs on a thread of its
/// own, so waiting for the next chunk there blocks nothing else). It can only be rewound before
/// the first read, so a repair whose servers fail mid-way fails (the next repair goes on).
struct ChannelReader {
    receiver: futures::channel::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    position: u64,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use futures::StreamExt;
        while self.at == self.chunk.len() {
            match futures::executor::block_on(self.receiver.next()) {
                Some(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        self.position += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for ChannelReader {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        match to {
            std::io::SeekFrom::Start(p) if p == self.position => Ok(p),
            std::io::SeekFrom::Current(0) => Ok(self.position),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the repair stream cannot be rewound",
            )),
        }
    }
}

/// A check with repair (Tahoe's check-and-repair results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// The check before repair.
    pub pre: CheckReport,
    /// Whether a repair was tried (not for healthy files).
    pub attempted: bool,
    /// Whether the file is healthy after the repair.
    pub successful: bool,
    /// Why a repair failed or could not be tried.
    pub problem: Option<String>,
    /// The check after repair (the pre-repair check when none was tried).
    pub post: CheckReport,
}
