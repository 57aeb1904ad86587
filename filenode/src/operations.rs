//! The operations registry behind a gateway's `/status` (Tahoe's `History`): every upload,
//! download, mutable publish and retrieve of a [`Grid`](crate::grid::Grid) reports into it, and
//! the status pages read [`Operations::snapshot`].
//!
//! Bounded and cheap: the active operations (as many as run at once, which the frontends bound)
//! plus the last [`RECENT_KEPT`] finished ones. Progress is a few atomics updated per read or
//! per chunk, never per byte; the one lock is held for a list edit or a copy, never across an
//! await. An operation holds its storage index (which names ciphertext, not a key: Tahoe shows it
//! too), sizes, timings and server names: never a cap, a key or plaintext.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use storage::StorageIndex;

/// How many finished operations are kept for `/status`.
pub const RECENT_KEPT: usize = 100;

/// The most server names one operation keeps (N is at most 255; names are short).
const SERVERS_KEPT: usize = 256;

/// The longest status message kept (an error's text, cut).
const STATUS_LEN: usize = 300;

/// What an operation is, in Tahoe's words (`/status?t=json` `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// An immutable upload.
    Upload,
    /// A read of an immutable file.
    Download,
    /// A new version of a mutable file (or directory).
    Publish,
    /// A read of a mutable file (or directory).
    Retrieve,
    /// A servermap update: every server asked which shares of a mutable file it holds (before a
    /// retrieve, or before a publish that has no map of its own last write).
    Mapupdate,
    /// A check of an object's shares (timed only: checks are not listed in `/status`, as in
    /// Tahoe).
    Check,
    /// A check that read and verified every share (`verify=true`; timed only).
    Verify,
    /// A check and repair (timed only).
    Repair,
}

impl OpKind {
    /// Every kind.
    pub const ALL: [OpKind; 8] = [
        OpKind::Upload,
        OpKind::Download,
        OpKind::Publish,
        OpKind::Retrieve,
        OpKind::Mapupdate,
        OpKind::Check,
        OpKind::Verify,
        OpKind::Repair,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Tahoe's name: `upload`, `download`, `publish`, `retrieve`, `mapupdate`; ours `check`,
    /// `verify`, `repair`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Upload => "upload",
            OpKind::Download => "download",
            OpKind::Publish => "publish",
            OpKind::Retrieve => "retrieve",
            OpKind::Mapupdate => "mapupdate",
            OpKind::Check => "check",
            OpKind::Verify => "verify",
            OpKind::Repair => "repair",
        }
    }
}

/// The registry: active operations and the recent finished ones.
#[derive(Debug, Default)]
pub struct Operations {
    next_id: AtomicU64,
    lists: Mutex<Lists>,
    /// Immutable downloads finished, and the bytes they delivered (Tahoe's
    /// `downloader.files_downloaded` and `downloader.bytes_downloaded`).
    downloads: AtomicU64,
    downloaded_bytes: AtomicU64,
    /// How long finished operations took, per kind ([`OpKind::ALL`] order).
    durations: [Histogram; OpKind::ALL.len()],
    /// Operations that ended failed, per kind.
    failures: [AtomicU64; OpKind::ALL.len()],
}

/// The upper bounds, in seconds, of [`Operations::durations`]' buckets (the last, `+Inf`, is
/// implied): from a loopback round trip to a large file over a slow link.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counts of durations per bucket (not cumulative; the last counts those above every bound), and
/// their sum in microseconds.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

/// A histogram as the metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationHistogram {
    /// The kind of operation.
    pub kind: OpKind,
    /// Cumulative counts, one per bound of [`DURATION_BUCKETS`], then the count of all (`+Inf`).
    pub cumulative: Vec<u64>,
    /// The sum of the durations, in seconds.
    pub sum_seconds: f64,
    /// Operations that ended failed (not counted in the histogram).
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Lists {
    active: BTreeMap<u64, Weak<Entry>>,
    recent: VecDeque<OpSnapshot>,
}

/// One operation as the status pages show it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpSnapshot {
    /// A number unique within this node's run.
    pub id: u64,
    /// What it is.
    pub kind: OpKind,
    /// When it started.
    pub started: SystemTime,
    /// The file's storage index, once known (a LIT file has none).
    pub storage_index: Option<StorageIndex>,
    /// The file's size (or the range's, for a read), once known; for a servermap update, the
    /// number of servers asked (its progress counts those that have answered; Tahoe shows no
    /// size for it).
    pub size: Option<u64>,
    /// Whether it is still running.
    pub active: bool,
    /// The status message (`Finished`, `Failed: …`, or the running phase).
    pub status: String,
    /// Uploads: the fractions hashed, read for encoding, and encoded and sent; reads and
    /// publishes: the fraction done (in the first place; the others are equal to it).
    pub progress: [f64; 3],
    /// Each phase with how long it took, in order.
    pub timings: Vec<(&'static str, Duration)>,
    /// How long it ran (until now while it runs).
    pub elapsed: Duration,
    /// The servers it used (by name), for a write with the share numbers each holds.
    pub servers: Vec<String>,
    /// What a servermap update was for, in Tahoe's words (`MODE_READ`, `MODE_WRITE`).
    pub mode: Option<&'static str>,
    /// Per server (by name), each request timed on its own, in the order they ended: what it was
    /// (Tahoe's `query`, or how it failed) and how long it took. Servermap updates only.
    pub server_timings: Vec<(String, &'static str, Duration)>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    kind: OpKind,
    started: SystemTime,
    started_at: Instant,
    storage_index: OnceLock<StorageIndex>,
    size: AtomicU64,
    progress: [AtomicU64; 3],
    detail: Mutex<Detail>,
}

#[derive(Debug, Default)]
struct Detail {
    status: String,
    phase_started: Option<(&'static str, Instant)>,
    timings: Vec<(&'static str, Duration)>,
    servers: Vec<String>,
    mode: Option<&'static str>,
    server_timings: Vec<(String, &'static str, Duration)>,
    outcome: Option<String>,
    ended: Option<Duration>,
    success_on_drop: bool,
}

const UNKNOWN: u64 = u64::MAX;

impl Operations {
    /// A new, empty registry.
    pub fn new() -> Self {
        Operations::default()
    }

    /// Starts an operation; it is active until the returned [`Op`] (and every clone of an
    /// [`Arc`] holding it) is dropped.
    pub fn start(self: &Arc<Self>, kind: OpKind) -> Op {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(Entry {
            id,
            kind,
            started: SystemTime::now(),
            started_at: Instant::now(),
            storage_index: OnceLock::new(),
            size: AtomicU64::new(UNKNOWN),
            progress: Default::default(),
            detail: Mutex::new(Detail {
                status: "starting".into(),
                ..Detail::default()
            }),
        });
        self.lock().active.insert(id, Arc::downgrade(&entry));
        Op {
            entry,
            registry: Arc::clone(self),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The active operations (newest first) and the recent finished ones (newest first).
    pub fn snapshot(&self) -> (Vec<OpSnapshot>, Vec<OpSnapshot>) {
        let (active, recent): (Vec<Arc<Entry>>, Vec<OpSnapshot>) = {
            let lists = self.lock();
            (
                lists.active.values().rev().filter_map(Weak::upgrade).collect(),
                lists.recent.iter().rev().cloned().collect(),
            )
        };
        (active.iter().map(|e| e.snapshot(true)).collect(), recent)
    }

    /// Immutable downloads ended without failing, and the bytes they delivered.
    pub fn download_totals(&self) -> (u64, u64) {
        (
            self.downloads.load(Ordering::Relaxed),
            self.downloaded_bytes.load(Ordering::Relaxed),
        )
    }

    /// How long finished operations took, per kind, and how many failed.
    pub fn duration_histograms(&self) -> Vec<DurationHistogram> {
        OpKind::ALL
            .iter()
            .map(|&kind| {
                let histogram = &self.durations[kind.index()];
                let mut total = 0;
                let cumulative = histogram
                    .buckets
                    .iter()
                    .map(|count| {
                        total += count.load(Ordering::Relaxed);
                        total
                    })
                    .collect();
                DurationHistogram {
                    kind,
                    cumulative,
                    sum_seconds: histogram.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
                    failures: self.failures[kind.index()].load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Records an operation that is timed but not listed (a check, verify or repair): how long
    /// it took, or that it failed.
    pub fn record_duration(&self, kind: OpKind, took: Duration, failed: bool) {
        if failed {
            self.failures[kind.index()].fetch_add(1, Ordering::Relaxed);
        } else {
            self.durations[kind.index()].record(took);
        }
    }

    fn finish(&self, snapshot: OpSnapshot, delivered: u64) {
        let failed = snapshot.status.starts_with("Failed");
        if snapshot.kind == OpKind::Download && !failed {
            self.downloads.fetch_add(1, Ordering::Relaxed);
            self.downloaded_bytes.fetch_add(delivered, Ordering::Relaxed);
        }
        if failed {
            self.failures[snapshot.kind.index()].fetch_add(1, Ordering::Relaxed);
        } else if snapshot.status == "Finished" {
            // (An operation whose caller went away is neither.)
            self.durations[snapshot.kind.index()].record(snapshot.elapsed);
        }
        let mut lists = self.lock();
        lists.active.remove(&snapshot.id);
        if lists.recent.len() >= RECENT_KEPT {
            lists.recent.pop_front();
        }
        lists.recent.push_back(snapshot);
    }
}

impl Histogram {
    fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

impl Entry {
    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot(&self, active: bool) -> OpSnapshot {
        let size = self.size.load(Ordering::Relaxed);
        let size = (size != UNKNOWN).then_some(size);
        let fraction = |i: usize| {
            let done = self.progress[i].load(Ordering::Relaxed);
            match size {
                Some(0) => 1.0,
                Some(size) => (done as f64 / size as f64).min(1.0),
                None => 0.0,
            }
        };
        let detail = self.detail();
        let mut timings = detail.timings.clone();
        if let Some((name, since)) = detail.phase_started {
            timings.push((name, since.elapsed()));
        }
        let status = match &detail.outcome {
            Some(outcome) => outcome.clone(),
            None if active => detail.status.clone(),
            None if detail.success_on_drop => "Finished".into(),
            None => "Stopped (the caller went away)".into(),
        };
        OpSnapshot {
            id: self.id,
            kind: self.kind,
            started: self.started,
            storage_index: self.storage_index.get().copied(),
            size,
            active,
            status,
            progress: [fraction(0), fraction(1), fraction(2)],
            timings,
            elapsed: detail.ended.unwrap_or_else(|| self.started_at.elapsed()),
            servers: detail.servers.clone(),
            mode: detail.mode,
            server_timings: detail.server_timings.clone(),
        }
    }
}

/// A running operation: its reporting handle. Dropping it ends the operation (as `Stopped` unless
/// [`Op::finished`] or [`Op::failed`] said how it ended).
#[derive(Debug)]
pub struct Op {
    entry: Arc<Entry>,
    registry: Arc<Operations>,
}

impl Op {
    /// The file's storage index, once known.
    pub fn set_storage_index(&self, storage_index: StorageIndex) {
        let _ = self.entry.storage_index.set(storage_index);
    }

    /// The size the progress fractions are of.
    pub fn set_size(&self, size: u64) {
        self.entry.size.store(size.min(UNKNOWN - 1), Ordering::Relaxed);
    }

    /// Adds `bytes` to progress counter `which` (0: hashed or done, 1: read for encoding, 2:
    /// encoded and sent).
    /// Returns the count before.
    pub fn add_progress(&self, which: usize, bytes: u64) -> u64 {
        self.entry
            .progress
            .get(which)
            .map_or(0, |counter| counter.fetch_add(bytes, Ordering::Relaxed))
    }

    /// How long the operation has run.
    pub fn elapsed(&self) -> Duration {
        self.entry.started_at.elapsed()
    }

    /// Dropping the operation without a failure is its success (a reader: it ends when its
    /// reader goes, and each of its reads may fail it).
    pub fn ends_when_dropped(&self) {
        self.entry.detail().success_on_drop = true;
    }

    /// Sets progress counter `which` to `bytes`.
    pub fn set_progress(&self, which: usize, bytes: u64) {
        if let Some(counter) = self.entry.progress.get(which) {
            counter.store(bytes, Ordering::Relaxed);
        }
    }

    /// The size set so far (0 before it is known).
    pub fn size(&self) -> u64 {
        match self.entry.size.load(Ordering::Relaxed) {
            UNKNOWN => 0,
            size => size,
        }
    }

    /// Bytes counted in progress counter `which`.
    pub fn progress(&self, which: usize) -> u64 {
        self.entry
            .progress
            .get(which)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Ends the running phase (timing it) and starts `name`, which is also the status message.
    pub fn phase(&self, name: &'static str) {
        let mut detail = self.entry.detail();
        let now = Instant::now();
        if let Some((previous, since)) = detail.phase_started.take() {
            detail.timings.push((previous, now.duration_since(since)));
        }
        detail.phase_started = Some((name, now));
        detail.status = name.to_owned();
    }

    /// Records a phase that was timed elsewhere (it is not the running one).
    pub fn timed_phase(&self, name: &'static str, took: Duration) {
        self.entry.detail().timings.push((name, took));
    }

    /// The servers used (kept to a few hundred names).
    pub fn set_servers(&self, servers: impl IntoIterator<Item = String>) {
        let servers: Vec<String> = servers.into_iter().take(SERVERS_KEPT).collect();
        self.entry.detail().servers = servers;
    }

    /// What a servermap update is for (Tahoe's mode: `MODE_READ`, `MODE_WRITE`).
    pub fn set_mode(&self, mode: &'static str) {
        self.entry.detail().mode = Some(mode);
    }

    /// Records one server's request: what it was (`query`, or how it failed) and how long it
    /// took (kept for the first few hundred).
    pub fn server_time(&self, server: String, what: &'static str, took: Duration) {
        let mut detail = self.entry.detail();
        if detail.server_timings.len() < SERVERS_KEPT {
            detail.server_timings.push((server, what, took));
        }
    }

    /// The operation succeeded.
    pub fn finished(&self) {
        self.end("Finished".into());
    }

    /// The operation failed with `error` (its text, which never holds a cap, is shown cut).
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let mut text = format!("Failed: {error}");
        if text.len() > STATUS_LEN {
            let mut cut = STATUS_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        self.end(text);
    }

    fn end(&self, outcome: String) {
        let mut detail = self.entry.detail();
        if detail.outcome.is_none() {
            let now = Instant::now();
            if let Some((previous, since)) = detail.phase_started.take() {
                detail.timings.push((previous, now.duration_since(since)));
            }
            detail.outcome = Some(outcome);
            detail.ended = Some(self.entry.started_at.elapsed());
        }
    }

    /// Times the running phase up to now (at drop, when nobody said how it ended).
    fn end_quietly(&self) {
        let mut detail = self.entry.detail();
        if detail.outcome.is_none() {
            if let Some((previous, since)) = detail.phase_started.take() {
                detail.timings.push((previous, since.elapsed()));
            }
            detail.ended = Some(self.entry.started_at.elapsed());
        }
    }

    /// Ends the operation by `result`.
    pub fn result<T, E: std::fmt::Display>(&self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.finished(),
            Err(e) => self.failed(e),
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        self.end_quietly();
        let delivered = self.progress(0);
        self.registry.finish(self.entry.snapshot(false), delivered);
    }
}

/// An upload's input that reports the upload's phases as it is read: the first pass (the
/// convergent key's hashing), the rewind before placement, the encoding pass. One atomic add per
/// read call.
#[derive(Debug)]
pub struct ReportedInput<R> {
    inner: R,
    op: Arc<Op>,
    convergent: bool,
    /// 0: before the rewind (hashing); 1: placing shares; 2: encoding and pushing.
    pass: u8,
    sized: bool,
}

impl<R> ReportedInput<R> {
    /// Reports `inner`'s reads into `op`.
    pub fn new(inner: R, op: Arc<Op>, convergent: bool) -> Self {
        ReportedInput {
            inner,
            op,
            convergent,
            pass: 0,
            sized: false,
        }
    }

    /// Reports `inner`'s reads into `op` for an upload whose key was computed as its plaintext
    /// arrived ([`crate::immutable::ConvergentHasher`]): the hashing is done, and the upload goes
    /// straight to placing shares.
    pub fn hashed(inner: R, op: Arc<Op>, size: u64) -> Self {
        op.set_size(size);
        // The hashing phase is there, and took no time of the upload's own.
        op.phase("hashing");
        op.set_progress(0, size);
        op.phase("placing shares");
        ReportedInput {
            inner,
            op,
            convergent: true,
            pass: 1,
            sized: true,
        }
    }
}

impl<R: std::io::Read + std::io::Seek> std::io::Read for ReportedInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::SeekFrom;
        if !self.sized {
            self.sized = true;
            let here = self.inner.stream_position()?;
            let end = self.inner.seek(SeekFrom::End(0))?;
            self.inner.seek(SeekFrom::Start(here))?;
            self.op.set_size(end);
        }
        if self.pass == 1 {
            self.pass = 2;
            self.op.phase("encoding and pushing");
        }
        let n = self.inner.read(buf)?;
        self.op.add_progress(if self.pass == 0 { 0 } else { 1 }, n as u64);
        Ok(n)
    }
}

impl<R: std::io::Seek> std::io::Seek for ReportedInput<R> {
    fn seek(&mut self, position: std::io::SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(position)?;
        if position == std::io::SeekFrom::End(0) {
            self.sized = true;
            self.op.set_size(at);
        }
        if at == 0 && matches!(position, std::io::SeekFrom::Start(_)) {
            match self.pass {
                0 => {
                    if !self.convergent {
                        // Nothing to hash: a random key.
                        self.op.set_progress(0, self.op.size());
                    }
                    self.pass = 1;
                    self.op.phase("placing shares");
                }
                // Rewound again: servers failed mid-upload, their shares go elsewhere.
                _ => self.op.set_progress(1, 0),
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_move_from_active_to_recent_and_only_the_last_hundred_stay() {
        let ops = Arc::new(Operations::new());
        let op = ops.start(OpKind::Upload);
        op.set_storage_index(StorageIndex([7; 16]));
        op.set_size(1000);
        op.phase("hashing");
        op.add_progress(0, 1000);
        op.phase("pushing");
        op.add_progress(2, 250);
        let (active, recent) = ops.snapshot();
        assert_eq!(active.len(), 1);
        assert!(recent.is_empty());
        let a = &active[0];
        assert!(a.active);
        assert_eq!(a.status, "pushing");
        assert_eq!(a.progress, [1.0, 0.0, 0.25]);
        assert_eq!(a.size, Some(1000));
        assert_eq!(a.storage_index, Some(StorageIndex([7; 16])));
        assert_eq!(
            a.timings.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["hashing", "pushing"]
        );
        op.set_servers(["alpha".to_owned(), "beta".to_owned()]);
        op.finished();
        drop(op);
        let (active, recent) = ops.snapshot();
        assert!(active.is_empty());
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].status, "Finished");
        assert!(!recent[0].active);
        assert_eq!(recent[0].servers, ["alpha", "beta"]);

        // Dropped without an outcome: stopped. Failures keep a cut message.
        drop(ops.start(OpKind::Download));
        let failed = ops.start(OpKind::Retrieve);
        failed.failed(&"x".repeat(1000));
        drop(failed);
        let (_, recent) = ops.snapshot();
        assert!(recent[1].status.starts_with("Stopped"), "{}", recent[1].status);
        assert!(recent[0].status.starts_with("Failed: xxx"));
        assert!(recent[0].status.len() < 400);

        for _ in 0..250 {
            let op = ops.start(OpKind::Publish);
            op.finished();
        }
        let (active, recent) = ops.snapshot();
        assert!(active.is_empty());
        assert_eq!(recent.len(), RECENT_KEPT);
        // Newest first.
        assert!(recent[0].id > recent[1].id);
        assert_eq!(recent[0].id, 253);
    }

    /// Finished operations land in their kind's duration histogram, failed ones are counted apart,
    /// and one whose caller went away is in neither.
    #[test]
    fn durations_and_failures_are_counted_per_kind() {
        let ops = Arc::new(Operations::new());
        for _ in 0..3 {
            ops.start(OpKind::Upload).finished();
        }
        ops.start(OpKind::Upload).failed(&"no servers");
        ops.start(OpKind::Retrieve).finished();
        drop(ops.start(OpKind::Download));
        let histograms = ops.duration_histograms();
        let of = |kind| histograms.iter().find(|h| h.kind == kind).unwrap().clone();
        let upload = of(OpKind::Upload);
        assert_eq!(upload.cumulative.len(), DURATION_BUCKETS.len() + 1);
        assert_eq!(*upload.cumulative.last().unwrap(), 3);
        // Ended at once: in the first bucket already.
        assert_eq!(upload.cumulative[0], 3);
        assert_eq!(upload.failures, 1);
        assert!(upload.sum_seconds < 1.0);
        assert_eq!(*of(OpKind::Retrieve).cumulative.last().unwrap(), 1);
        let download = of(OpKind::Download);
        assert_eq!((*download.cumulative.last().unwrap(), download.failures), (0, 0));

        // Checks are timed without being listed.
        ops.record_duration(OpKind::Check, Duration::from_millis(30), false);
        ops.record_duration(OpKind::Repair, Duration::from_secs(100), false);
        ops.record_duration(OpKind::Repair, Duration::ZERO, true);
        let histograms = ops.duration_histograms();
        let of = |kind| histograms.iter().find(|h| h.kind == kind).unwrap().clone();
        let check = of(OpKind::Check);
        // 30 ms: above 0.025 s, within 0.05 s.
        assert_eq!((check.cumulative[2], check.cumulative[3]), (0, 1));
        assert!((check.sum_seconds - 0.03).abs() < 1e-9);
        let repair = of(OpKind::Repair);
        assert_eq!(
            repair.cumulative[DURATION_BUCKETS.len() - 1],
            0,
            "past the last bound"
        );
        assert_eq!((*repair.cumulative.last().unwrap(), repair.failures), (1, 1));
        assert!(ops.snapshot().1.iter().all(|op| op.kind != OpKind::Check));
    }

    /// Many operations starting, reporting and ending on several threads while status pages read
    /// the registry: every one ends up recent exactly once (the newest hundred kept), none stays
    /// active, and the download totals count every finished download's bytes.
    #[test]
    fn operations_from_racing_threads_are_each_recorded_once() {
        const THREADS: u64 = 8;
        const EACH: u64 = 40;
        let ops = Arc::new(Operations::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (ops, stop) = (Arc::clone(&ops), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (active, recent) = ops.snapshot();
                    assert!(recent.len() <= RECENT_KEPT);
                    assert!(active.iter().all(|op| op.active) && recent.iter().all(|op| !op.active));
                    reads += 1;
                }
                reads
            })
        };
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let ops = Arc::clone(&ops);
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let op = ops.start(if i % 2 == 0 {
                            OpKind::Download
                        } else {
                            OpKind::Upload
                        });
                        op.set_size(100);
                        op.phase("reading");
                        op.add_progress(0, 60);
                        op.add_progress(0, 40);
                        if (t + i) % 5 == 0 {
                            op.failed(&"lost");
                        } else {
                            op.ends_when_dropped();
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let (active, recent) = ops.snapshot();
        assert!(active.is_empty());
        assert_eq!(recent.len(), RECENT_KEPT);
        let mut ids: Vec<u64> = recent.iter().map(|op| op.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RECENT_KEPT, "an operation recorded twice");
        // Downloads are the even `i`; those with (t + i) % 5 == 0 failed.
        let finished_downloads = (0..THREADS)
            .flat_map(|t| (0..EACH).map(move |i| (t, i)))
            .filter(|(t, i)| i % 2 == 0 && (t + i) % 5 != 0)
            .count() as u64;
        assert_eq!(
            ops.download_totals(),
            (finished_downloads, finished_downloads * 100)
        );
    }
}
