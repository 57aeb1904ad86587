//! Publish: writing a whole new version with test-and-set writes, the primary share first, large
//! MDMF versions in batches behind an in-progress marker (Tahoe's `mutable/publish.py`); where the
//! new version's bytes come from ([`ChunkSource`]); and reading the signing key of an existing file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::join_all;
use storage::api::{ReadVector, TestVector, TestWriteVectors, WriteEnabler, WriteVector};
use storage::{ShareNum, StorageError, StorageIndex};

use super::servermap::{LocatedShare, ServerMap, VersionId};
use super::{MutableError, read_mutable};
use crate::cap::{MutableCap, MutableFormat};
use crate::codec::Codec;
use crate::crypto::aes_ctr_at;
use crate::grid::{ClientSecrets, ServerEntry};
use crate::hashes::{Hash, ssk_write_enabler_hash};
use crate::mutable::encode::{self, MutableGeometry};
use crate::mutable::keys::MutableKey;
use crate::mutable::layout::ShareHeader;

/// Segments per write batch of a large MDMF publish (4 MiB of plaintext at k = 3).
pub(super) const SEGMENTS_PER_BATCH: u64 = 32;

/// Writes of up to this many bytes go to each share in one test-and-set request, so every share
/// holds the old version or the new one whatever fails. Larger MDMF writes are batched behind the
/// in-progress marker: a failure in the middle leaves the touched shares unreadable until the next
/// successful write (reported as an error, never as success). 32 MiB keeps a write's encoded
/// shares (N/k times its size) comfortably in memory.
static ATOMIC_WRITE_LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(32 << 20);

pub(super) fn atomic_write_limit() -> u64 {
    ATOMIC_WRITE_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Lowers the size up to which writes are sent in one request (tests use it to exercise the
/// batched path with small files).
#[doc(hidden)]
pub fn set_atomic_write_limit(bytes: u64) {
    ATOMIC_WRITE_LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// Where the bytes of a new version come from: each call yields the next `min(n, remaining)`
/// plaintext bytes.
pub type ChunkSource =
    Box<dyn FnMut(u64) -> futures::future::BoxFuture<'static, std::io::Result<Vec<u8>>> + Send>;

/// A [`ChunkSource`] over bytes in memory.
pub fn chunks_from_bytes(mut data: Vec<u8>) -> ChunkSource {
    let mut at = 0usize;
    Box::new(move |n| {
        let end = (at + n as usize).min(data.len());
        // Small files are asked for whole: hand the buffer over instead of copying it (what is
        // left afterwards is empty, so later calls yield nothing, as at the end).
        let chunk = if at == 0 && end == data.len() {
            std::mem::take(&mut data)
        } else {
            data[at.min(end)..end].to_vec()
        };
        at = end;
        Box::pin(async move { Ok(chunk) })
    })
}

/// A [`ChunkSource`] over a blocking reader (a spooled upload, a local file); reads run on a
/// thread of their own.
pub fn chunks_from_read<R: std::io::Read + Send + 'static>(reader: R) -> ChunkSource {
    let reader = Arc::new(std::sync::Mutex::new(reader));
    Box::new(move |n| {
        let reader = Arc::clone(&reader);
        Box::pin(crate::grid::run_blocking(move || {
            let mut reader = reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut chunk = Vec::with_capacity(n as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut *reader, n), &mut chunk)?;
            Ok(chunk)
        }))
    })
}

/// Where one share of a new version goes, and what its test-and-set write must find there.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) server: ServerEntry,
    pub(super) shnum: ShareNum,
    /// The checkstring expected now (empty: the share must not exist).
    pub(super) expected: Vec<u8>,
    pub(super) state: TargetState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TargetState {
    Alive,
    Failed,
    LostRace,
}

/// One round of writes: per share number, the write vectors.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) writes: BTreeMap<ShareNum, Vec<WriteVector>>,
}

/// The writes of one publish, batch by batch, to every target.
pub(super) struct WriteSession<'a> {
    secrets: &'a ClientSecrets,
    storage_index: StorageIndex,
    writekey: [u8; 16],
    targets: Vec<Target>,
    /// Written at offset 0 by the first of several batches; tested by the later ones.
    marker: Vec<u8>,
    batches_sent: usize,
    failures: Vec<String>,
    /// Distinct servers the new version must reach to be acknowledged.
    servers_required: usize,
    /// The servers the servermap counted as reachable.
    queried: usize,
    /// A new slot's publish ([`ServerMap::for_new_slot`]): no primary first, and servers that
    /// fail at once do not count towards the quorum (as a servermap would not have counted them).
    fresh: bool,
    /// Servers whose write failed at once (not a timeout): down, or refusing us.
    down: BTreeSet<String>,
    /// Servers that answered (or, for a new slot, are thought up) but hold no target, in ring
    /// order: the first homes for the shares of targets that failed.
    spare: Vec<ServerEntry>,
}

impl WriteSession<'_> {
    fn write_enabler(&self, server: &ServerEntry) -> WriteEnabler {
        WriteEnabler(ssk_write_enabler_hash(&self.writekey, &server.lease_seed))
    }

    async fn write_one(
        &self,
        target: &Target,
        mut writes: Vec<WriteVector>,
        first: bool,
        last: bool,
        new_length: Option<u64>,
    ) -> Result<bool, StorageError> {
        if first && !last {
            writes.insert(
                0,
                WriteVector {
                    offset: 0,
                    data: self.marker.clone(),
                },
            );
        }
        let test = if target.expected.is_empty() {
            TestVector {
                offset: 0,
                size: 1,
                specimen: Vec::new(),
            }
        } else {
            TestVector {
                offset: 0,
                size: target.expected.len() as u64,
                specimen: target.expected.clone(),
            }
        };
        let vectors = BTreeMap::from([(
            target.shnum,
            TestWriteVectors {
                test: vec![test],
                write: writes,
                new_length: if last { new_length } else { None },
            },
        )]);
        let lease = self
            .secrets
            .lease_secrets(&self.storage_index.0, &target.server.lease_seed);
        let bytes: u64 = vectors
            .values()
            .flat_map(|v| v.write.iter())
            .map(|w| w.data.len() as u64)
            .sum();
        let answer = target
            .server
            .timed(
                crate::grid::WRITE_DEADLINE,
                bytes,
                target.server.client.read_test_write(
                    self.storage_index,
                    &self.write_enabler(&target.server),
                    &lease,
                    &vectors,
                    &[] as &[ReadVector],
                ),
            )
            .await?;
        Ok(answer.success)
    }

    /// Sends one batch to every live target: the primary (first live target) alone first when
    /// this is the first batch, then all others concurrently.
    pub(super) async fn send(
        &mut self,
        batch: &Batch,
        last: bool,
        new_length: &BTreeMap<ShareNum, u64>,
        final_checkstring: &[u8],
    ) -> Result<(), MutableError> {
        let first = self.batches_sent == 0;
        self.batches_sent += 1;
        let after = if last {
            final_checkstring.to_vec()
        } else {
            self.marker.clone()
        };
        let live: Vec<usize> = (0..self.targets.len())
            .filter(|&i| self.targets[i].state == TargetState::Alive)
            .collect();
        let mut rest = live.as_slice();
        // Every publish to an existing slot orders writers at its primary, even from the map of
        // this client's own last write: skipping it there let a writer that read that version
        // race this one past the primary, so that both failed, or the loser's leftovers (of a
        // higher seqnum) hid the winner's acknowledged version from readers.
        if first && !self.fresh {
            // Find a primary that answers: its test decides whether this publish goes ahead.
            while let Some((&i, tail)) = rest.split_first() {
                rest = tail;
                let target = self.targets[i].clone();
                let writes = batch.writes.get(&target.shnum).cloned().unwrap_or_default();
                match self
                    .write_one(
                        &target,
                        writes,
                        true,
                        last,
                        new_length.get(&target.shnum).copied(),
                    )
                    .await
                {
                    Ok(true) => {
                        self.targets[i].expected = after.clone();
                        break;
                    }
                    Ok(false) => return Err(MutableError::UncoordinatedWrite),
                    Err(e) => {
                        self.failed(i, &e);
                    }
                }
            }
        }
        let answers = join_all(rest.iter().map(|&i| {
            let target = &self.targets[i];
            let writes = batch.writes.get(&target.shnum).cloned().unwrap_or_default();
            self.write_one(
                target,
                writes,
                first,
                last,
                new_length.get(&target.shnum).copied(),
            )
        }))
        .await;
        for (&i, answer) in rest.iter().zip(answers) {
            match answer {
                Ok(true) => self.targets[i].expected = after.clone(),
                Ok(false) => self.targets[i].state = TargetState::LostRace,
                Err(e) => self.failed(i, &e),
            }
        }
        Ok(())
    }

    /// Records that target `i`'s write failed with `e`.
    fn failed(&mut self, i: usize, e: &StorageError) {
        let target = &mut self.targets[i];
        self.failures
            .push(format!("{} (share {}): {e}", target.server.name(), target.shnum));
        target.state = TargetState::Failed;
        if !matches!(e, StorageError::Timeout) {
            self.down.insert(target.server.server_id.clone());
        }
    }

    /// After a single-batch publish: shares whose server failed are written elsewhere
    /// (create-only), so the version keeps N shares when servers are down: first each to its own
    /// spare server (one that holds no target) in ring order, all at once; what still has no home
    /// then goes to servers that took a share.
    async fn replace_failed(
        &mut self,
        batch: &Batch,
        new_length: &BTreeMap<ShareNum, u64>,
        checkstring: &[u8],
    ) {
        let written: BTreeSet<ShareNum> = self.alive_shnums();
        let mut lost: Vec<ShareNum> = self
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Failed && !written.contains(&t.shnum))
            .map(|t| t.shnum)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if lost.is_empty() {
            return;
        }
        let spares: Vec<ServerEntry> = self
            .spare
            .iter()
            .filter(|s| !self.down.contains(&s.server_id))
            .take(lost.len())
            .cloned()
            .collect();
        let first_tries: Vec<Target> = lost
            .iter()
            .zip(spares)
            .map(|(&shnum, server)| Target {
                server,
                shnum,
                expected: Vec::new(),
                state: TargetState::Alive,
            })
            .collect();
        let answers = join_all(first_tries.iter().map(|target| {
            let writes = batch.writes.get(&target.shnum).cloned().unwrap_or_default();
            self.write_one(target, writes, true, true, new_length.get(&target.shnum).copied())
        }))
        .await;
        for (target, answer) in first_tries.into_iter().zip(answers) {
            self.spare.retain(|s| s.server_id != target.server.server_id);
            match answer {
                Ok(true) => {
                    lost.retain(|&n| n != target.shnum);
                    self.targets.push(Target {
                        expected: checkstring.to_vec(),
                        ..target
                    });
                }
                Ok(false) => {}
                Err(e) => {
                    if !matches!(e, StorageError::Timeout) {
                        self.down.insert(target.server.server_id.clone());
                    }
                }
            }
        }
        let mut hosts: Vec<ServerEntry> = Vec::new();
        for target in self.targets.iter().filter(|t| t.state == TargetState::Alive) {
            if !hosts.iter().any(|h| h.server_id == target.server.server_id) {
                hosts.push(target.server.clone());
            }
        }
        if hosts.is_empty() {
            return;
        }
        for (i, shnum) in lost.into_iter().enumerate() {
            let host = hosts[i % hosts.len()].clone();
            let target = Target {
                server: host,
                shnum,
                expected: Vec::new(),
                state: TargetState::Alive,
            };
            let writes = batch.writes.get(&shnum).cloned().unwrap_or_default();
            if let Ok(true) = self
                .write_one(&target, writes, true, true, new_length.get(&shnum).copied())
                .await
            {
                self.targets.push(Target {
                    expected: checkstring.to_vec(),
                    ..target
                });
            }
        }
    }

    fn alive_shnums(&self) -> BTreeSet<ShareNum> {
        self.targets
            .iter()
            .filter(|t| t.state == TargetState::Alive)
            .map(|t| t.shnum)
            .collect()
    }

    fn finish(self, needed: usize) -> Result<Vec<(ServerEntry, ShareNum)>, MutableError> {
        if self.targets.iter().any(|t| t.state == TargetState::LostRace) {
            return Err(MutableError::UncoordinatedWrite);
        }
        let written = self.alive_shnums().len();
        if written < needed {
            return Err(MutableError::NotEnoughServers {
                written,
                needed,
                detail: if self.failures.is_empty() {
                    "no storage servers answered".into()
                } else {
                    self.failures.join("; ")
                },
            });
        }
        let reached = self
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Alive)
            .map(|t| t.server.server_id.as_str())
            .collect::<BTreeSet<_>>()
            .len();
        let required = if self.fresh {
            // Servers found down now are what a servermap query would have left out.
            self.servers_required
                .min(self.queried.saturating_sub(self.down.len()))
        } else {
            self.servers_required
        };
        if reached < required {
            return Err(MutableError::TooFewServers {
                reached,
                required,
                detail: self.failures.join("; "),
            });
        }
        Ok(self
            .targets
            .into_iter()
            .filter(|t| t.state == TargetState::Alive)
            .map(|t| (t.server, t.shnum))
            .collect())
    }
}

/// Plans where the N shares of a new version go: every share the servermap found keeps its place
/// (its current checkstring is what the write tests for); share numbers found nowhere go to
/// servers that answered, those without shares first, in ring order.
fn plan_targets(map: &ServerMap, total: u8) -> Vec<Target> {
    let mut targets: Vec<Target> = map
        .shares
        .iter()
        .filter(|s| s.shnum < u16::from(total))
        .map(|s| Target {
            server: s.server.clone(),
            shnum: s.shnum,
            expected: s.checkstring(),
            state: TargetState::Alive,
        })
        .collect();
    let present: BTreeSet<ShareNum> = targets.iter().map(|t| t.shnum).collect();
    let mut hosts: Vec<&ServerEntry> = map
        .responders
        .iter()
        .filter(|r| !map.shares.iter().any(|s| s.server.server_id == r.server_id))
        .collect();
    hosts.extend(
        map.responders
            .iter()
            .filter(|r| map.shares.iter().any(|s| s.server.server_id == r.server_id)),
    );
    if hosts.is_empty() {
        return targets;
    }
    let missing = (0..u16::from(total)).filter(|n| !present.contains(n));
    for (i, shnum) in missing.enumerate() {
        targets.push(Target {
            server: hosts[i % hosts.len()].clone(),
            shnum,
            expected: Vec::new(),
            state: TargetState::Alive,
        });
    }
    // The primary is the first target in ring order.
    let order: Vec<&str> = map.responders.iter().map(|r| r.server_id.as_str()).collect();
    targets.sort_by_key(|t| {
        (
            order
                .iter()
                .position(|id| *id == t.server.server_id)
                .unwrap_or(usize::MAX),
            t.shnum,
        )
    });
    targets
}

/// What a publish wrote.
#[derive(Debug, Clone)]
pub struct Published {
    /// The new version.
    pub version: VersionId,
    /// The new checkstring, now on every written share.
    pub checkstring: Vec<u8>,
    /// Where the shares went.
    pub placed: Vec<(ServerEntry, ShareNum)>,
    /// The new size.
    pub size: u64,
}

impl Published {
    /// A servermap describing exactly what this publish left on the grid, for the next write from
    /// this client (its test-and-set still detects anyone else's write in between).
    pub fn as_servermap(&self, header: ShareHeader) -> ServerMap {
        let mut responders: Vec<ServerEntry> = Vec::new();
        for (server, _) in &self.placed {
            if !responders.iter().any(|r| r.server_id == server.server_id) {
                responders.push(server.clone());
            }
        }
        ServerMap {
            shares: self
                .placed
                .iter()
                .map(|(server, shnum)| LocatedShare {
                    server: server.clone(),
                    shnum: *shnum,
                    prefix: Arc::new(self.checkstring.clone()),
                    header: Some(header.clone()),
                })
                .collect(),
            responders,
            failures: Vec::new(),
            timed_out: 0,
            fresh: false,
        }
    }
}

/// The context of a write: who we are and what we write.
#[derive(Debug)]
pub struct WriteContext<'a> {
    /// Lease secrets.
    pub secrets: &'a ClientSecrets,
    /// The write cap.
    pub cap: &'a MutableCap,
    /// Its signing key.
    pub key: &'a MutableKey,
    /// The servers a new version must reach before the write is acknowledged (fewer when fewer
    /// servers were queried): see [`ServerMap::quorum`].
    pub happy: usize,
}

impl WriteContext<'_> {
    pub(super) fn session(&self, map: &ServerMap, targets: Vec<Target>, marker: Vec<u8>) -> WriteSession<'_> {
        let queried = map.reachable();
        // A file of fewer shares than `happy` can reach no more servers than it has shares.
        let shares = targets.iter().map(|t| t.shnum).collect::<BTreeSet<_>>().len();
        let spare = map
            .responders
            .iter()
            .filter(|r| !targets.iter().any(|t| t.server.server_id == r.server_id))
            .cloned()
            .collect();
        WriteSession {
            servers_required: self.happy.min(queried).min(shares),
            queried,
            fresh: map.fresh,
            down: BTreeSet::new(),
            spare,
            secrets: self.secrets,
            storage_index: self.cap.storage_index(),
            writekey: self
                .cap
                .writekey()
                .expect("invariant: write contexts hold write caps"),
            targets,
            marker,
            batches_sent: 0,
            failures: Vec::new(),
        }
    }
}

pub(super) fn marker(format: MutableFormat, seqnum: u64) -> Vec<u8> {
    let mut marker = vec![if format == MutableFormat::Sdmf { 0 } else { 1 }];
    marker.extend_from_slice(&seqnum.to_be_bytes());
    marker.extend_from_slice(&[0; 32]);
    marker
}

/// Writes a whole new version of `len` bytes from `source` in `format` with k-of-N encoding,
/// replacing whatever `map` found.
pub async fn publish(
    ctx: &WriteContext<'_>,
    map: &ServerMap,
    format: MutableFormat,
    needed: u8,
    total: u8,
    len: u64,
    mut source: ChunkSource,
) -> Result<(Published, ShareHeader), MutableError> {
    let seqnum = map.next_seqnum();
    let geometry = MutableGeometry::new(format, needed, total, len);
    let targets = plan_targets(map, total);
    let mut session = ctx.session(map, targets, marker(format, seqnum));
    let nseg = geometry.num_segments();
    let readkey = ctx.cap.readkey().expect("invariant: write caps read");
    if format == MutableFormat::Sdmf || len <= atomic_write_limit() {
        let plaintext = source(len)
            .await
            .map_err(|e| MutableError::Unrecoverable(e.to_string()))?;
        let key_der = ctx.key.privkey_der().to_vec();
        let (finished, shares) = crate::grid::run_on_rayon(move || {
            let key = MutableKey::from_pkcs8_der(&key_der).expect("invariant: our own key re-parses");
            encode::encode_version(&key, format, needed, total, seqnum, &plaintext)
        })
        .await;
        let mut batch = Batch::default();
        let mut lengths = BTreeMap::new();
        for (shnum, share) in shares.into_iter().enumerate() {
            lengths.insert(shnum as ShareNum, share.len() as u64);
            batch.writes.insert(
                shnum as ShareNum,
                vec![WriteVector {
                    offset: 0,
                    data: share,
                }],
            );
        }
        session
            .send(&batch, true, &lengths, &finished.checkstring)
            .await?;
        session
            .replace_failed(&batch, &lengths, &finished.checkstring)
            .await;
        return finish_publish(session, &batch, finished, usize::from(needed), len);
    }
    // Large MDMF: batches of segments (the next one read and encoded while this one is written),
    // then the signed header and the block trees.
    let codec =
        Arc::new(Codec::new(usize::from(needed), usize::from(total)).expect("invariant: valid k-of-N"));
    let mut leaves: Vec<Vec<Hash>> = vec![Vec::with_capacity(nseg as usize); usize::from(total)];
    let mut prepare = |first: u64| -> futures::future::BoxFuture<
        'static,
        Result<Vec<encode::EncodedSegment>, MutableError>,
    > {
        let count = SEGMENTS_PER_BATCH.min(nseg - first);
        let bytes: u64 = (first..first + count).map(|s| geometry.segment_len(s)).sum();
        let read = source(bytes);
        let codec = Arc::clone(&codec);
        Box::pin(async move {
            let plaintext = read
                .await
                .map_err(|e| MutableError::Unrecoverable(e.to_string()))?;
            if plaintext.len() as u64 != bytes {
                return Err(MutableError::Unrecoverable("the input ended early".into()));
            }
            Ok(crate::grid::run_on_rayon(move || {
                encode_segments(&geometry, &codec, &readkey, first, &plaintext)
            })
            .await)
        })
    };
    let mut segnum = 0;
    let mut ready = Some(prepare(0).await);
    while let Some(encoded) = ready.take() {
        let encoded = encoded?;
        let batch = batch_of_segments(&geometry, segnum, &encoded);
        for segment in &encoded {
            for (shnum, leaf) in segment.leaves.iter().enumerate() {
                leaves[shnum].push(*leaf);
            }
        }
        segnum += encoded.len() as u64;
        let next = (segnum < nseg).then(|| prepare(segnum));
        let (sent, prepared) =
            futures::future::join(session.send(&batch, false, &BTreeMap::new(), &[]), async {
                match next {
                    Some(job) => Some(job.await),
                    None => None,
                }
            })
            .await;
        sent?;
        ready = prepared;
    }
    let trees: Vec<Vec<Hash>> = leaves.iter().map(|l| encode::block_tree(l)).collect();
    let finished = encode::VersionBuilder {
        key: ctx.key,
        geometry,
        seqnum,
        sdmf_salt: [0; 16],
    }
    .finish(&trees, None);
    let (batch, lengths) = final_batch(&geometry, &finished, &trees, None);
    session
        .send(&batch, true, &lengths, &finished.checkstring)
        .await?;
    finish_publish(session, &batch, finished, usize::from(needed), len)
}

/// The outcome of a publish whose last batch was `batch`.
pub(super) fn finish_publish(
    session: WriteSession<'_>,
    batch: &Batch,
    finished: encode::FinishedVersion,
    needed: usize,
    size: u64,
) -> Result<(Published, ShareHeader), MutableError> {
    let header = header_of(batch, &finished)?;
    let placed = session.finish(needed)?;
    Ok((
        Published {
            version: (finished.seqnum, finished.root_hash),
            checkstring: finished.checkstring,
            placed,
            size,
        },
        header,
    ))
}

fn header_of(batch: &Batch, finished: &encode::FinishedVersion) -> Result<ShareHeader, MutableError> {
    let first = batch
        .writes
        .values()
        .flatten()
        .find(|w| w.offset == 0)
        .map(|w| w.data.as_slice())
        .unwrap_or(&finished.headers[0]);
    Ok(ShareHeader::parse(first)?)
}

/// Encodes `plaintext`, the consecutive segments starting at `first`, in parallel.
pub(super) fn encode_segments(
    g: &MutableGeometry,
    codec: &Codec,
    readkey: &[u8; 16],
    first: u64,
    plaintext: &[u8],
) -> Vec<encode::EncodedSegment> {
    use rayon::prelude::*;
    let count = g
        .segments_for(first * g.segment_size, plaintext.len() as u64)
        .count() as u64;
    (first..first + count)
        .into_par_iter()
        .map(|segnum| {
            let start = ((segnum - first) * g.segment_size) as usize;
            let end = start + g.segment_len(segnum) as usize;
            encode::encode_segment(g, codec, readkey, rand::random(), &plaintext[start..end])
        })
        .collect()
}

/// The writes of consecutive encoded segments: one contiguous write per share.
pub(super) fn batch_of_segments(
    g: &MutableGeometry,
    first: u64,
    encoded: &[encode::EncodedSegment],
) -> Batch {
    let mut batch = Batch::default();
    for shnum in 0..usize::from(g.total) {
        let mut data = Vec::new();
        for segment in encoded {
            data.extend_from_slice(&segment.salt);
            data.extend_from_slice(&segment.blocks[shnum]);
        }
        batch.writes.insert(
            shnum as ShareNum,
            vec![WriteVector {
                offset: g.mdmf_block_offset(first),
                data,
            }],
        );
    }
    batch
}

/// The last batch of an MDMF write: each share's header region and block tree. With
/// `changed_nodes`, only those tree nodes are written (the tree's shape is unchanged).
pub(super) fn final_batch(
    g: &MutableGeometry,
    finished: &encode::FinishedVersion,
    trees: &[Vec<Hash>],
    changed_nodes: Option<&BTreeSet<usize>>,
) -> (Batch, BTreeMap<ShareNum, u64>) {
    let mut batch = Batch::default();
    let mut lengths = BTreeMap::new();
    let tree_offset = g.mdmf_tree_offset();
    for (shnum, (header, tree)) in finished.headers.iter().zip(trees).enumerate() {
        let mut writes = vec![WriteVector {
            offset: 0,
            data: header.clone(),
        }];
        match changed_nodes {
            None => writes.push(WriteVector {
                offset: tree_offset,
                data: encode::tree_bytes(tree),
            }),
            Some(nodes) => writes.extend(nodes.iter().map(|&i| WriteVector {
                offset: tree_offset + 32 * i as u64,
                data: tree[i].to_vec(),
            })),
        }
        batch.writes.insert(shnum as ShareNum, writes);
        lengths.insert(shnum as ShareNum, tree_offset + g.tree_len());
    }
    (batch, lengths)
}

/// Decrypts the signing key from a share's fixed region and checks it belongs to the write cap.
pub fn private_key_from(share: &LocatedShare, cap: &MutableCap) -> Result<Option<MutableKey>, MutableError> {
    cap.writekey().ok_or(MutableError::ReadOnly)?;
    let Some(header) = &share.header else {
        return Ok(None);
    };
    let o = header.offsets;
    let Some(encrypted) = share
        .prefix
        .get(o.enc_privkey as usize..o.enc_privkey_end as usize)
    else {
        return Ok(None);
    };
    // A damaged key in one share must not stop us: the caller tries the next share.
    Ok(decrypt_private_key(encrypted, cap).ok())
}

/// Decrypts an encrypted private key and checks that it hashes to the cap's write key.
fn decrypt_private_key(encrypted: &[u8], cap: &MutableCap) -> Result<MutableKey, MutableError> {
    let writekey = cap.writekey().ok_or(MutableError::ReadOnly)?;
    let mut der = encrypted.to_vec();
    aes_ctr_at(&writekey, 0, &mut der);
    if crate::hashes::ssk_writekey_hash(&der) != writekey {
        return Err(MutableError::BadPrivateKey);
    }
    MutableKey::from_pkcs8_der(&der).map_err(|_| MutableError::BadPrivateKey)
}

/// Reads the signing key of an existing file: from a share's fixed region when the servermap
/// already read it, else from the end of an SDMF share.
pub async fn fetch_private_key(map: &ServerMap, cap: &MutableCap) -> Result<MutableKey, MutableError> {
    for share in &map.shares {
        if let Some(key) = private_key_from(share, cap)? {
            return Ok(key);
        }
    }
    for share in &map.shares {
        let Some(header) = &share.header else { continue };
        let o = header.offsets;
        if o.enc_privkey_end - o.enc_privkey > 4096 {
            continue;
        }
        let Ok(bytes) = read_mutable(
            &share.server,
            cap.storage_index(),
            share.shnum,
            o.enc_privkey,
            o.enc_privkey_end - o.enc_privkey,
        )
        .await
        else {
            continue;
        };
        if let Ok(key) = decrypt_private_key(&bytes, cap) {
            return Ok(key);
        }
    }
    // The shares moved on since the servermap read them (in a longer or shorter new version the
    // key lies elsewhere) when another writer was at work: a fresh servermap finds it.
    if map.write_in_progress() {
        return Err(MutableError::VersionChanged);
    }
    for share in map.shares.iter().filter(|s| s.header.is_some()) {
        let seen = share.checkstring();
        if let Ok(now) = read_mutable(
            &share.server,
            cap.storage_index(),
            share.shnum,
            0,
            seen.len() as u64,
        )
        .await
            && now.as_ref() != seen.as_slice()
        {
            return Err(MutableError::VersionChanged);
        }
    }
    Err(MutableError::Unrecoverable(
        "no share holds a readable signing key".into(),
    ))
}
