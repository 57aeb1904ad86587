//! Operating figures of a storage server, as Tahoe's `StorageServer.get_stats()` reports them: how
//! often each operation ran and how long the last 1,000 of each took (percentiles), and the disk
//! (statvfs) as Tahoe's `get_disk_stats` measures it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// How many recent samples of each operation are kept (Tahoe keeps 1,000).
pub const LATENCY_SAMPLES: usize = 1000;

/// A storage operation that is counted and timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Allocating immutable shares (`allocate_buckets`).
    Allocate,
    /// Writing to an immutable upload.
    Write,
    /// An immutable upload completing its share.
    Close,
    /// Aborting an immutable upload.
    Abort,
    /// Listing a storage index's immutable shares (Tahoe's `get_buckets`).
    Get,
    /// Reading an immutable or mutable share.
    Read,
    /// Adding or renewing a lease.
    AddLease,
    /// A mutable read-test-write that writes.
    Writev,
    /// A mutable read-test-write that only reads (or tests).
    Readv,
}

impl Operation {
    /// Every operation, in reporting order.
    pub const ALL: [Operation; 9] = [
        Operation::Allocate,
        Operation::Write,
        Operation::Close,
        Operation::Abort,
        Operation::Get,
        Operation::Read,
        Operation::AddLease,
        Operation::Writev,
        Operation::Readv,
    ];

    /// Tahoe's category name (`storage_server.latencies.<name>.*`).
    pub fn name(self) -> &'static str {
        match self {
            Operation::Allocate => "allocate",
            Operation::Write => "write",
            Operation::Close => "close",
            Operation::Abort => "abort",
            Operation::Get => "get",
            Operation::Read => "read",
            Operation::AddLease => "add-lease",
            Operation::Writev => "writev",
            Operation::Readv => "readv",
        }
    }

    fn index(self) -> usize {
        Operation::ALL
            .iter()
            .position(|op| *op == self)
            .expect("invariant: ALL lists every operation")
    }
}

/// Tahoe's percentiles: (fraction, key suffix, fewest samples that make it meaningful).
pub const PERCENTILES: [(f64, &str, usize); 7] = [
    (0.01, "01_0_percentile", 100),
    (0.1, "10_0_percentile", 10),
    (0.5, "50_0_percentile", 10),
    (0.9, "90_0_percentile", 10),
    (0.95, "95_0_percentile", 20),
    (0.99, "99_0_percentile", 100),
    (0.999, "99_9_percentile", 1000),
];

/// One operation's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationStats {
    /// The operation.
    pub operation: Operation,
    /// How many times it ran since the server started.
    pub count: u64,
    /// Seconds spent in it since the server started.
    pub total_seconds: f64,
    /// How many recent samples the latencies are computed from (at most [`LATENCY_SAMPLES`]).
    pub samplesize: usize,
    /// Their mean in seconds (`None` with fewer than two samples, as Tahoe).
    pub mean: Option<f64>,
    /// Each of [`PERCENTILES`] in seconds, `None` where there are too few samples.
    pub percentiles: [Option<f64>; 7],
}

#[derive(Debug, Default)]
struct Samples {
    count: u64,
    total_seconds: f64,
    recent: VecDeque<f64>,
}

/// Counts and recent latencies of every [`Operation`], plus byte counters.
#[derive(Debug)]
pub(super) struct Operations {
    samples: Vec<Mutex<Samples>>,
    pub(super) bytes_added: AtomicU64,
    pub(super) bytes_read: AtomicU64,
}

impl Default for Operations {
    fn default() -> Self {
        Operations {
            samples: Operation::ALL.iter().map(|_| Mutex::default()).collect(),
            bytes_added: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
        }
    }
}

/// Records the operation's latency when dropped.
#[must_use]
pub(super) struct Timer<'a> {
    operations: &'a Operations,
    operation: Operation,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.operations
            .record(self.operation, self.started.elapsed().as_secs_f64());
    }
}

impl Operations {
    /// Starts timing one run of `operation`.
    pub(super) fn time(&self, operation: Operation) -> Timer<'_> {
        Timer {
            operations: self,
            operation,
            started: Instant::now(),
        }
    }

    pub(super) fn record(&self, operation: Operation, seconds: f64) {
        let mut samples = self.samples[operation.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        samples.count += 1;
        samples.total_seconds += seconds;
        if samples.recent.len() == LATENCY_SAMPLES {
            samples.recent.pop_front();
        }
        samples.recent.push_back(seconds);
    }

    pub(super) fn add_bytes(counter: &AtomicU64, bytes: u64) {
        counter.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Every operation's figures (operations never run included, with zero counts).
    pub(super) fn snapshot(&self) -> Vec<OperationStats> {
        Operation::ALL
            .iter()
            .map(|&operation| {
                let (count, total_seconds, mut recent) = {
                    let samples = self.samples[operation.index()]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    (
                        samples.count,
                        samples.total_seconds,
                        samples.recent.iter().copied().collect::<Vec<f64>>(),
                    )
                };
                summarize(operation, count, total_seconds, &mut recent)
            })
            .collect()
    }
}

/// Tahoe's `get_latencies` for one category: the mean (two samples or more) and each percentile
/// as the sample at `floor(fraction × n)` of the sorted samples, when there are enough of them.
fn summarize(operation: Operation, count: u64, total_seconds: f64, recent: &mut [f64]) -> OperationStats {
    recent.sort_by(f64::total_cmp);
    let n = recent.len();
    let mean = (n > 1).then(|| recent.iter().sum::<f64>() / n as f64);
    let mut percentiles = [None; 7];
    for (slot, (fraction, _, minimum)) in percentiles.iter_mut().zip(PERCENTILES) {
        if n >= minimum {
            let at = ((fraction * n as f64) as usize).min(n - 1);
            *slot = Some(recent[at]);
        }
    }
    OperationStats {
        operation,
        count,
        total_seconds,
        samplesize: n,
        mean,
        percentiles,
    }
}

/// The disk holding the storage directory, as Tahoe's `get_disk_stats` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    /// Size of the filesystem.
    pub total: u64,
    /// `total − free_for_root`.
    pub used: u64,
    /// Free blocks (statvfs `f_bfree`).
    pub free_for_root: u64,
    /// Free blocks available to unprivileged users (`f_bavail`).
    pub free_for_nonroot: u64,
    /// `free_for_nonroot − reserved_space` (never negative); 0 when the server is read-only.
    pub avail: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_tahoe() {
        let ops = Operations::default();
        assert_eq!(ops.snapshot()[0].samplesize, 0);
        ops.record(Operation::Get, 0.5);
        let one = &ops.snapshot()[Operation::Get.index()];
        assert_eq!((one.count, one.samplesize, one.mean), (1, 1, None));
        assert_eq!(one.percentiles, [None; 7]);
        for i in 1..=99 {
            ops.record(Operation::Get, f64::from(i));
        }
        let get = &ops.snapshot()[Operation::Get.index()];
        assert_eq!(get.samplesize, 100);
        // Sorted: 0.5, 1, 2, ..., 99. Index floor(0.01 × 100) = 1 → 1.0; 0.5 → index 50 → 50.
        assert_eq!(get.percentiles[0], Some(1.0));
        assert_eq!(get.percentiles[2], Some(50.0));
        assert_eq!(get.percentiles[5], Some(99.0));
        assert_eq!(get.percentiles[6], None, "99.9th needs 1,000 samples");
        let mean = get.mean.unwrap();
        assert!((mean - (0.5 + 4950.0) / 100.0).abs() < 1e-9);
        // The window keeps the last 1,000 samples; the count keeps everything.
        for _ in 0..1500 {
            ops.record(Operation::Get, 2.0);
        }
        let get = &ops.snapshot()[Operation::Get.index()];
        assert_eq!((get.count, get.samplesize), (1600, LATENCY_SAMPLES));
        assert_eq!(get.percentiles[6], Some(2.0));
        assert_eq!(Operation::AddLease.name(), "add-lease");
    }
}
