//! The servermap: every server is asked which shares of a slot it holds, and the fixed region of
//! each share is read and its signature checked against the cap (Tahoe's `mutable/servermap.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::join_all;
use storage::api::ShareKind;
use storage::{ShareNum, StorageError, StorageIndex};
use tracing::debug;

use super::read_mutable;
use crate::cap::{MutableCap, MutableFormat};
use crate::grid::{ServerEntry, permuted_servers};
use crate::hashes::Hash;
use crate::mutable::encode::checkstring_len;
use crate::mutable::layout::ShareHeader;
use crate::operations::{OpKind, Operations};

/// How much of each MDMF share a servermap query reads: the whole fixed region.
const PREFIX_READ: u64 = 4096;

/// How much of each SDMF share a servermap query reads: the whole share of any SDMF file or
/// directory up to about 700 kB (k = 3), in one request. One request reads one version, so such a
/// share is decoded from what the servermap read, with no second read that a concurrent writer
/// could overtake (readers of a busy shared directory never start over), and listing a directory
/// costs no round trip after the servermap's.
const SDMF_PREFIX_READ: u64 = 256 * 1024;

/// How many servers, first in the file's ring order (where its shares are placed, share 0 first),
/// a servermap reads SDMF shares whole from: k (3 by default) and one spare. The others' fixed
/// regions are enough to know their versions; reading every share whole cost a busy directory's
/// listers three times the bytes (and the machine's CPU, on TLS) for nothing.
const SDMF_WHOLE_READS: usize = 4;

/// The servers, first in a slot's ring order, whose guessed share (share r on the r-th) a
/// servermap query reads beside the listing: every share of a file of up to 16 shares placed
/// by a publish that found its servers up. A wrong guess costs a small read that finds nothing.
const GUESSED_POSITIONS: usize = 16;

/// The most a servermap query reads to find a share's key and signature.
const PREFIX_LIMIT: u64 = 64 * 1024;

/// One share found by a servermap query.
#[derive(Debug, Clone)]
pub struct LocatedShare {
    /// The server that holds it.
    pub server: ServerEntry,
    /// Share number.
    pub shnum: ShareNum,
    /// The first bytes of the share (at least its checkstring, usually its whole fixed region).
    pub prefix: Arc<Vec<u8>>,
    /// The header, if it parsed and its signature verified against the cap.
    pub header: Option<ShareHeader>,
}

impl LocatedShare {
    /// The bytes a test-and-set write must find to replace this share: its checkstring as seen.
    pub fn checkstring(&self) -> Vec<u8> {
        let len = match self.prefix.first() {
            Some(0) => checkstring_len(MutableFormat::Sdmf),
            _ => checkstring_len(MutableFormat::Mdmf),
        };
        self.prefix[..len.min(self.prefix.len())].to_vec()
    }
}

/// A version: (seqnum, root hash).
pub type VersionId = (u64, Hash);

/// What a servermap query found.
#[derive(Debug, Clone, Default)]
pub struct ServerMap {
    /// Every share found, in ring order of its server.
    pub shares: Vec<LocatedShare>,
    /// The servers that answered, in ring order.
    pub responders: Vec<ServerEntry>,
    /// Servers that failed, with the error.
    pub failures: Vec<(String, String)>,
    /// How many of those did not answer in time (alive, as far as anyone knows, and perhaps
    /// holding the newest version), as opposed to failing at once (down, or refusing).
    pub timed_out: usize,
    /// Made without asking anyone ([`ServerMap::for_new_slot`]): the slot of a key made for it,
    /// which no server can hold yet.
    pub fresh: bool,
}

impl ServerMap {
    /// The map of a slot whose signing key was just made (from the key pool: random, never given
    /// out before), so no server holds a share of it and there is nothing to ask: every server
    /// counts as a responder, in the slot's ring order. Its publish writes all N shares at once,
    /// each tested for absence, with no primary first (no other writer can know the slot), which
    /// saves a mkdir the servermap's round trip and the primary's.
    pub fn for_new_slot(servers: &[ServerEntry], storage_index: StorageIndex) -> ServerMap {
        ServerMap {
            responders: permuted_servers(&storage_index.0, servers)
                .into_iter()
                .cloned()
                .collect(),
            fresh: true,
            ..ServerMap::default()
        }
    }

    /// The highest seqnum any verified share carries (0 when there are none).
    pub fn highest_seqnum(&self) -> u64 {
        self.shares
            .iter()
            .filter_map(|s| s.header.as_ref().map(|h| h.seqnum))
            .max()
            .unwrap_or(0)
    }

    /// The seqnum of a new version: one more than any share claims (verified or not, so that a
    /// half-written version is superseded too).
    pub fn next_seqnum(&self) -> u64 {
        let verified = self.highest_seqnum();
        // An interrupted batched write leaves our in-progress marker (its new seqnum and a zero
        // root, unsigned): supersede it too, but trust no other unsigned number.
        let marker = self
            .shares
            .iter()
            .filter(|s| {
                s.header.is_none()
                    && s.prefix
                        .get(9..41)
                        .is_some_and(|root| root.iter().all(|b| *b == 0))
            })
            .filter_map(|s| {
                s.prefix
                    .get(1..9)
                    .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
            })
            .filter(|seqnum| *seqnum <= verified.saturating_add(1))
            .max()
            .unwrap_or(0);
        verified.max(marker).saturating_add(1)
    }

    /// Verified versions with their shares, highest first.
    pub fn versions(&self) -> Vec<(VersionId, Vec<&LocatedShare>)> {
        let mut versions: BTreeMap<VersionId, Vec<&LocatedShare>> = BTreeMap::new();
        for share in &self.shares {
            if let Some(header) = &share.header {
                versions.entry(header.version()).or_default().push(share);
            }
        }
        versions.into_iter().rev().collect()
    }

    /// The highest version with at least k distinct shares. Of two recoverable versions with the
    /// same sequence number (two writers that both began from the same version, when one's
    /// test-and-set primary did not answer), the one on more shares: an acknowledged write is on
    /// `happy` servers, so the other can only be the loser's leftovers on the servers the winner
    /// could not reach. (Tahoe takes the higher root hash, which picks the loser half the time.)
    pub fn best_recoverable(&self) -> Option<(VersionId, Vec<&LocatedShare>)> {
        let distinct =
            |shares: &[&LocatedShare]| shares.iter().map(|s| s.shnum).collect::<BTreeSet<_>>().len();
        let recoverable: Vec<(VersionId, Vec<&LocatedShare>)> = self
            .versions()
            .into_iter()
            .filter(|(_, shares)| {
                let needed = shares[0]
                    .header
                    .as_ref()
                    .map_or(usize::MAX, |h| usize::from(h.needed));
                distinct(shares) >= needed
            })
            .collect();
        let top = recoverable.first()?.0.0;
        recoverable
            .into_iter()
            .take_while(|(version, _)| version.0 == top)
            .max_by_key(|(version, shares)| (distinct(shares), version.1))
    }

    /// Each server that holds shares, in ring order, with their numbers (`server03: shares 0,4`;
    /// a share whose signature did not verify is marked `?`).
    pub fn share_holders(&self) -> Vec<String> {
        let mut holders: Vec<(&str, String, Vec<String>)> = Vec::new();
        for share in &self.shares {
            let shnum = match share.header {
                Some(_) => share.shnum.to_string(),
                None => format!("{}?", share.shnum),
            };
            match holders
                .iter_mut()
                .find(|(id, _, _)| *id == share.server.server_id)
            {
                Some((_, _, held)) => held.push(shnum),
                None => holders.push((&share.server.server_id, share.server.name(), vec![shnum])),
            }
        }
        holders
            .into_iter()
            .map(|(_, name, held)| format!("{name}: shares {}", held.join(",")))
            .collect()
    }

    /// The newest version seen when it cannot be read (too few of its shares were found): a write
    /// in progress, or one that stopped half-way.
    pub fn newer_unreadable(&self) -> Option<VersionId> {
        let newest = self.versions().first()?.0;
        let readable = self.best_recoverable().map(|(version, _)| version);
        (readable.is_none_or(|r| r.0 < newest.0)).then_some(newest)
    }
}

/// What a servermap update is for, in Tahoe's words (shown on its `/status` page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    /// Before reading the file (Tahoe's `MODE_READ`).
    Read,
    /// Before writing a new version (Tahoe's `MODE_WRITE`).
    Write,
}

impl MapMode {
    /// Tahoe's name: `MODE_READ`, `MODE_WRITE`.
    pub fn name(self) -> &'static str {
        match self {
            MapMode::Read => "MODE_READ",
            MapMode::Write => "MODE_WRITE",
        }
    }
}

/// Asks every server which shares of `cap`'s slot it holds and reads each share's fixed region;
/// headers are checked against the cap's fingerprint and signature.
pub async fn update_servermap(servers: &[ServerEntry], cap: &MutableCap) -> ServerMap {
    update_servermap_reported(servers, cap, None).await
}

/// [`update_servermap`], reported to `report`'s operations registry as a `mapupdate` in its mode
/// (Tahoe's `/status/mapupdate-N`): the storage index, each server's answer time, the servers
/// answered so far as its progress, and at the end the shares each server holds.
pub async fn update_servermap_reported(
    servers: &[ServerEntry],
    cap: &MutableCap,
    report: Option<(&Arc<Operations>, MapMode)>,
) -> ServerMap {
    let storage_index = cap.storage_index();
    let ordered = permuted_servers(&storage_index.0, servers);
    let op = report.map(|(operations, mode)| {
        let op = operations.start(OpKind::Mapupdate);
        op.set_storage_index(storage_index);
        op.set_mode(mode.name());
        op.set_size(ordered.len() as u64);
        op.phase("querying servers");
        op
    });
    let op = op.as_ref();
    let answers = join_all(ordered.iter().enumerate().map(|(position, server)| async move {
        let asked = std::time::Instant::now();
        let answer: Result<Vec<LocatedShare>, StorageError> = async {
            let first_read = match cap.format {
                MutableFormat::Sdmf if position < SDMF_WHOLE_READS => SDMF_PREFIX_READ,
                MutableFormat::Sdmf | MutableFormat::Mdmf => PREFIX_READ,
            };
            // A publish puts share r on the r-th server of the ring (`plan_targets`): read it in the
            // same round trip as the listing, so a healthy file's servermap costs one round trip.
            let guess = (position < GUESSED_POSITIONS).then_some(position as ShareNum);
            let (listed, guessed) = futures::join!(
                server.timed(
                    crate::grid::QUICK_DEADLINE,
                    0,
                    server.client.list_shares(ShareKind::Mutable, storage_index),
                ),
                async {
                    match guess {
                        Some(shnum) => read_mutable(server, storage_index, shnum, 0, first_read)
                            .await
                            .ok(),
                        None => None,
                    }
                }
            );
            let shnums = listed?;
            let guessed = &guessed;
            let reads = join_all(shnums.iter().map(|&shnum| async move {
                let mut prefix = match guessed {
                    Some(bytes) if guess == Some(shnum) => bytes.to_vec(),
                    _ => read_mutable(server, storage_index, shnum, 0, first_read)
                        .await?
                        .to_vec(),
                };
                let header = ShareHeader::parse(&prefix).ok();
                if let Some(header) = &header {
                    let want = header
                        .offsets
                        .signature_end
                        .max(header.offsets.verification_key_end);
                    if want > prefix.len() as u64 && want <= PREFIX_LIMIT {
                        let more = read_mutable(
                            server,
                            storage_index,
                            shnum,
                            prefix.len() as u64,
                            want - prefix.len() as u64,
                        )
                        .await?;
                        prefix.extend_from_slice(&more);
                    }
                }
                let header = header.filter(|h| h.verify_signature(&prefix, &cap.fingerprint).is_ok());
                Ok::<_, StorageError>(LocatedShare {
                    server: (*server).clone(),
                    shnum,
                    prefix: Arc::new(prefix),
                    header,
                })
            }))
            .await;
            reads.into_iter().collect::<Result<Vec<_>, _>>()
        }
        .await;
        if let Some(op) = op {
            let what = match &answer {
                Ok(_) => "query",
                Err(StorageError::Timeout) => "timed out",
                Err(_) => "failed",
            };
            op.server_time(server.name(), what, asked.elapsed());
            op.add_progress(0, 1);
        }
        answer
    }))
    .await;
    let mut map = ServerMap::default();
    for (server, answer) in ordered.into_iter().zip(answers) {
        match answer {
            Ok(shares) => {
                map.responders.push(server.clone());
                map.shares.extend(shares);
            }
            Err(e) => {
                debug!(server = %server.name(), error = %e, "servermap query failed");
                if matches!(e, StorageError::Timeout) {
                    map.timed_out += 1;
                }
                map.failures.push((server.name(), e.to_string()));
            }
        }
    }
    if let Some(op) = op {
        op.set_servers(map.share_holders());
        op.finished();
    }
    map
}

impl ServerMap {
    /// The servers that count for a quorum: those that answered and those that did not answer in
    /// time. A server that failed at once is down (or refusing us): Tahoe reads and writes
    /// without such servers, and so does Tessera (a partition may then hide a newer version,
    /// as in Tahoe). A slow server is another matter: it is up, and may hold the newest version.
    pub fn reachable(&self) -> usize {
        self.responders.len() + self.timed_out
    }

    /// How many servers must answer a servermap query for it to see at least one share of any
    /// version a publish acknowledged: a publish is acknowledged only once its version is on
    /// `happy` of the reachable servers (or on every one, when fewer), so any
    /// `reachable - happy + 1` of them include one that holds it.
    pub fn quorum(&self, happy: usize) -> usize {
        let reachable = self.reachable();
        reachable.saturating_sub(happy.min(reachable)) + 1
    }

    /// Whether a newer version than the one this map reads may exist unseen, so that reading it
    /// (or, worse, writing a change on top of it) could miss an acknowledged write: servers did
    /// not answer in time, and either fewer than [`ServerMap::quorum`] answered or shares of a newer
    /// version were seen but too few to read it (the rest may be on the servers that did not
    /// answer). A map where no server timed out is never stale: a newer version it cannot read
    /// is a write still in progress, not yet acknowledged.
    pub fn may_be_stale(&self, happy: usize) -> bool {
        if self.timed_out == 0 {
            return false;
        }
        if self.responders.len() < self.quorum(happy) {
            return true;
        }
        self.best_recoverable().is_some() && self.newer_unreadable().is_some()
    }

    /// Whether the shares found disagree (more than one checkstring: versions, or a writer's
    /// in-progress marker), which is what a write in progress looks like from outside.
    pub fn write_in_progress(&self) -> bool {
        let checkstrings: BTreeSet<Vec<u8>> = self.shares.iter().map(LocatedShare::checkstring).collect();
        checkstrings.len() > 1
    }
}
