//! CHK encode/decode properties over random sizes and parameters: round trips, every k-subset of
//! shares, ranged reads, and detection of any flipped bit.

use std::sync::Arc;

use filenode::immutable::{ChkParams, ChkReader, DownloadError, MemoryShare, ShareSource, encode_bytes};
use proptest::prelude::*;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

fn sources(shares: &[Vec<u8>], pick: &[usize]) -> Vec<Arc<dyn ShareSource>> {
    pick.iter()
        .map(|&i| {
            Arc::new(MemoryShare {
                shnum: i as u16,
                data: Arc::new(shares[i].clone()),
            }) as Arc<dyn ShareSource>
        })
        .collect()
}

fn read_all(
    cap: filenode::cap::ChkCap,
    sources: Vec<Arc<dyn ShareSource>>,
) -> Result<Vec<u8>, DownloadError> {
    futures::executor::block_on(async {
        let reader = ChkReader::open(cap, sources).await?;
        reader.read_to_vec(0, cap.size).await
    })
}

/// All k-element subsets of 0..n.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    fn walk(start: usize, n: usize, k: usize, current: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if current.len() == k {
            out.push(current.clone());
            return;
        }
        for i in start..n {
            current.push(i);
            walk(i + 1, n, k, current, out);
            current.pop();
        }
    }
    walk(0, n, k, &mut current, &mut out);
    out
}

#[test]
fn every_k_subset_decodes() {
    let params = ChkParams {
        needed: 3,
        total: 7,
        max_segment_size: 300,
    };
    let plaintext = data(1000, 7);
    let (encoded, sink) = encode_bytes(&plaintext, [5; 16], &params).unwrap();
    let all = subsets(7, 3);
    assert_eq!(all.len(), 35);
    for pick in all {
        assert_eq!(
            read_all(encoded.cap, sources(&sink.shares, &pick)).unwrap(),
            plaintext,
            "shares {pick:?}"
        );
    }
}

#[test]
fn too_few_shares_is_a_clear_error() {
    let params = ChkParams {
        needed: 3,
        total: 10,
        max_segment_size: 1 << 20,
    };
    let plaintext = data(5000, 1);
    let (encoded, sink) = encode_bytes(&plaintext, [1; 16], &params).unwrap();
    let err = read_all(encoded.cap, sources(&sink.shares, &[4, 9])).unwrap_err();
    assert_eq!(err.to_string(), "not enough good shares (needed 3, found 2)");
    // Two good shares and a corrupt one: the corrupt one is named.
    let mut shares = sink.shares.clone();
    let last = shares[6].len() - 5;
    shares[6][last] ^= 1; // inside the UEB
    let err = read_all(encoded.cap, sources(&shares, &[4, 9, 6]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("not enough good shares (needed 3, found 2)"),
        "{err}"
    );
    assert!(err.contains("share 6"), "{err}");
}

#[test]
fn truncated_and_missing_shares_are_replaced() {
    let params = ChkParams {
        needed: 2,
        total: 5,
        max_segment_size: 128,
    };
    let plaintext = data(2000, 3);
    let (encoded, sink) = encode_bytes(&plaintext, [2; 16], &params).unwrap();
    let mut shares = sink.shares.clone();
    let half = shares[0].len() / 2;
    shares[0].truncate(half);
    shares[1].truncate(100);
    let all = sources(&shares, &[0, 1, 2, 3, 4]);
    let got = futures::executor::block_on(async {
        let reader = ChkReader::open(encoded.cap, all).await.unwrap();
        let got = reader.read_to_vec(0, encoded.cap.size).await.unwrap();
        let bad = reader.bad_shares();
        assert!(bad.iter().any(|b| b.contains("share 0")), "{bad:?}");
        assert!(bad.iter().any(|b| b.contains("share 1")), "{bad:?}");
        got
    });
    assert_eq!(got, plaintext);
}

/// A share in memory that counts the reads and bytes asked of it, and may answer slowly.
struct Instrumented {
    share: MemoryShare,
    delay: std::time::Duration,
    reads: Arc<std::sync::atomic::AtomicU64>,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Instrumented {
    fn new(
        share: MemoryShare,
        delay: std::time::Duration,
        reads: Arc<std::sync::atomic::AtomicU64>,
        bytes: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        Instrumented {
            share,
            delay,
            reads,
            bytes,
        }
    }
}

impl ShareSource for Instrumented {
    fn shnum(&self) -> u16 {
        self.share.shnum()
    }
    fn describe(&self) -> String {
        self.share.describe()
    }
    fn read(
        &self,
        offset: u64,
        len: u64,
    ) -> futures::future::BoxFuture<'_, Result<Vec<u8>, filenode::immutable::ShareReadError>> {
        use std::sync::atomic::Ordering;
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        Box::pin(async move {
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
            }
            self.share.read(offset, len).await
        })
    }
}

#[test]
fn ranged_reads_fetch_only_needed_segments() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    let params = ChkParams {
        needed: 3,
        total: 10,
        max_segment_size: 3000,
    };
    let plaintext = data(300_000, 9);
    let (encoded, sink) = encode_bytes(&plaintext, [3; 16], &params).unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let counted: Vec<Arc<dyn ShareSource>> = (0..10)
        .map(|i| {
            let share = MemoryShare {
                shnum: i,
                data: Arc::new(sink.shares[i as usize].clone()),
            };
            Arc::new(Instrumented::new(
                share,
                Duration::ZERO,
                Arc::new(AtomicU64::new(0)),
                counter.clone(),
            )) as Arc<dyn ShareSource>
        })
        .collect();
    futures::executor::block_on(async {
        let reader = ChkReader::open(encoded.cap, counted).await.unwrap();
        let opened = counter.load(Ordering::Relaxed);
        let got = reader.read_to_vec(150_001, 4000).await.unwrap();
        assert_eq!(got, plaintext[150_001..154_001]);
        // Two or three segments of 3000 bytes: about 3 x 1000 bytes from each of 3 shares.
        let fetched = counter.load(Ordering::Relaxed) - opened;
        assert!(
            fetched <= 3 * 3 * 1000,
            "fetched {fetched} bytes for a 4000-byte range"
        );
        // Edge ranges.
        assert_eq!(
            reader.read_to_vec(299_999, 10).await.unwrap(),
            plaintext[299_999..]
        );
        assert!(reader.read_to_vec(300_000, 0).await.unwrap().is_empty());
        assert!(matches!(
            reader.read_to_vec(300_001, 1).await,
            Err(DownloadError::RangeNotSatisfiable { .. })
        ));
    });
}

/// Flips one bit of one share. Read from all four shares, the file comes back right (survived).
/// Read from the damaged share and just one other, so that the damaged one must be used, the read
/// either succeeds (the bit lies where readers never look: the unused plaintext hash tree or the
/// informational block/data sizes) or fails with the damaged share named (detected).
fn check_flipped_bit(
    shares: &[Vec<u8>],
    cap: filenode::cap::ChkCap,
    plaintext: &[u8],
    target: usize,
    position: usize,
    bit: u8,
) {
    let offsets = filenode::immutable::layout::ShareOffsets::parse(&shares[0]).unwrap();
    let unused = offsets.plaintext_hash_tree..offsets.crypttext_hash_tree;
    let informational = offsets.version == 1 && (4..12).contains(&position);
    let ignorable = unused.contains(&(position as u64)) || informational;
    let mut shares = shares.to_vec();
    shares[target][position] ^= 1 << bit;
    let where_ = format!("bit {bit} of byte {position} of share {target}");

    let all = sources(&shares, &[0, 1, 2, 3]);
    assert_eq!(read_all(cap, all).unwrap(), plaintext, "{where_}: not survived");

    let other = (target + 1) % 4;
    let pair = sources(&shares, &[target, other]);
    let outcome = futures::executor::block_on(async {
        let reader = ChkReader::open(cap, pair).await?;
        reader.read_to_vec(0, cap.size).await
    });
    match outcome {
        Ok(got) => {
            assert_eq!(got, plaintext, "{where_}: wrong bytes");
            assert!(ignorable, "{where_}: went unnoticed");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(&format!("share {target}")),
                "{where_}: {message}"
            );
        }
    }
}

fn flip_fixture() -> (filenode::cap::ChkCap, Vec<Vec<u8>>, Vec<u8>) {
    let params = ChkParams {
        needed: 2,
        total: 4,
        max_segment_size: 256,
    };
    let plaintext = data(1500, 11);
    let (encoded, sink) = encode_bytes(&plaintext, [4; 16], &params).unwrap();
    (encoded.cap, sink.shares, plaintext)
}

#[test]
fn a_flipped_bit_in_every_byte_of_a_share_is_detected_and_survived() {
    let (cap, shares, plaintext) = flip_fixture();
    for position in 0..shares[0].len() {
        check_flipped_bit(&shares, cap, &plaintext, 0, position, (position % 8) as u8);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_flipped_bit_in_any_share_is_detected_and_survived(target in 0usize..4, position: usize, bit in 0u8..8) {
        let (cap, shares, plaintext) = flip_fixture();
        let position = position % shares[target].len();
        check_flipped_bit(&shares, cap, &plaintext, target, position, bit);
    }

    #[test]
    fn round_trip_random_sizes_and_parameters(
        size in 56usize..20_000,
        needed in 1u16..8,
        extra in 0u16..6,
        segment in 1u64..5000,
        seed: u8,
        drop_seed: u64,
    ) {
        let total = needed + extra;
        let params = ChkParams { needed, total, max_segment_size: segment };
        let plaintext = data(size, seed);
        let (encoded, sink) = encode_bytes(&plaintext, [seed; 16], &params).unwrap();
        prop_assert_eq!(sink.shares.len(), total as usize);
        // Any k shares, chosen pseudo-randomly.
        let mut order: Vec<usize> = (0..total as usize).collect();
        let mut state = drop_seed;
        for i in (1..order.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let pick = &order[..needed as usize];
        prop_assert_eq!(read_all(encoded.cap, sources(&sink.shares, pick)).unwrap(), plaintext);
    }
}

#[test]
fn layout_v2_shares_decode_too() {
    // Tahoe writes v2 (64-bit offsets) only for huge shares, but readers accept it at any size:
    // rewrite every v1 share of a small file as v2 and read it back.
    use filenode::immutable::layout::{ShareOffsets, V1_HEADER_LEN};
    let params = ChkParams {
        needed: 3,
        total: 10,
        max_segment_size: 1000,
    };
    let plaintext = data(7000, 5);
    let (encoded, sink) = encode_bytes(&plaintext, [6; 16], &params).unwrap();
    let v2_shares: Vec<Vec<u8>> = sink
        .shares
        .iter()
        .map(|share| {
            let v1 = ShareOffsets::parse(share).unwrap();
            let v2 = ShareOffsets::compute_version(2, v1.block_size, v1.data_size, 7, 5);
            let body_len = (v1.uri_extension - V1_HEADER_LEN) as usize;
            let mut out = v2.to_bytes();
            out.extend_from_slice(&share[V1_HEADER_LEN as usize..V1_HEADER_LEN as usize + body_len]);
            // The UEB length prefix grows from 4 to 8 bytes.
            let ueb = &share[v1.uri_extension as usize + 4..];
            out.extend_from_slice(&(ueb.len() as u64).to_be_bytes());
            out.extend_from_slice(ueb);
            out
        })
        .collect();
    assert_eq!(
        read_all(encoded.cap, sources(&v2_shares, &[9, 4, 7])).unwrap(),
        plaintext
    );
}

#[test]
fn share_size_is_known_before_encoding() {
    for (size, k, n, seg) in [
        (56u64, 1u16, 1u16, 131_072u64),
        (1000, 3, 10, 100),
        (300_000, 7, 20, 4096),
        (5000, 255, 256, 1 << 20),
    ] {
        let params = ChkParams {
            needed: k,
            total: n,
            max_segment_size: seg,
        };
        let plaintext = data(size as usize, 1);
        let predicted = filenode::immutable::ChkEncoder::new([9; 16], &params, size)
            .unwrap()
            .share_size();
        let (_, sink) = encode_bytes(&plaintext, [9; 16], &params).unwrap();
        assert!(
            sink.shares.iter().all(|s| s.len() as u64 == predicted),
            "{size} {k}-of-{n}"
        );
    }
}

#[test]
fn reads_prefer_fast_shares() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    let params = ChkParams {
        needed: 3,
        total: 10,
        max_segment_size: 999,
    };
    let plaintext = data(60_000, 21);
    let (encoded, sink) = encode_bytes(&plaintext, [8; 16], &params).unwrap();
    let counters: Vec<Arc<AtomicU64>> = (0..10).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let sources: Vec<Arc<dyn ShareSource>> = (0..10)
        .map(|i| {
            // Shares 0 and 1, the ones a reader would otherwise prefer, are slow.
            let delay = if i < 2 {
                Duration::from_millis(20)
            } else {
                Duration::ZERO
            };
            let share = MemoryShare {
                shnum: i as u16,
                data: Arc::new(sink.shares[i].clone()),
            };
            let bytes = Arc::new(AtomicU64::new(0));
            Arc::new(Instrumented::new(share, delay, Arc::clone(&counters[i]), bytes)) as Arc<dyn ShareSource>
        })
        .collect();
    let got = futures::executor::block_on(async {
        let reader = ChkReader::open(encoded.cap, sources).await.unwrap();
        reader.read_to_vec(0, encoded.cap.size).await.unwrap()
    });
    assert_eq!(got, plaintext);
    let segments = encoded.uri_extension.num_segments;
    assert!(segments > 50);
    // The slow shares were validated but then barely used.
    for (slow, counter) in counters.iter().enumerate().take(2) {
        let reads = counter.load(Ordering::Relaxed);
        assert!(
            reads < 5,
            "slow share {slow} was read {reads} times for {segments} segments"
        );
    }
}

/// Equally fast shares take turns: a download reads its segments from every good share (2k
/// validated at opening, the others once a long read begins), each carrying an equal part, not
/// from the same k (Tahoe's way, which bounds a download by k servers' links), and the shares
/// beyond the first k decode right.
#[test]
fn segments_are_read_from_every_fast_share_in_turn() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    let params = ChkParams {
        needed: 3,
        total: 10,
        max_segment_size: 999,
    };
    let plaintext = data(60_000, 23);
    let (encoded, sink) = encode_bytes(&plaintext, [9; 16], &params).unwrap();
    let counters: Vec<Arc<AtomicU64>> = (0..10).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let sources: Vec<Arc<dyn ShareSource>> = (0..10)
        .map(|i| {
            let share = MemoryShare {
                shnum: i as u16,
                data: Arc::new(sink.shares[i].clone()),
            };
            let bytes = Arc::new(AtomicU64::new(0));
            Arc::new(Instrumented::new(
                share,
                Duration::ZERO,
                Arc::clone(&counters[i]),
                bytes,
            )) as Arc<dyn ShareSource>
        })
        .collect();
    let (got, opened, after) = futures::executor::block_on(async {
        let reader = ChkReader::open(encoded.cap, sources).await.unwrap();
        let validated: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(
            validated.iter().filter(|&&reads| reads > 0).count(),
            6,
            "opening validates 2k shares: {validated:?}"
        );
        // A short range (its first segment and three behind it) validates no more holders.
        let short = reader.read_to_vec(0, 4 * 999).await.unwrap();
        assert_eq!(short, plaintext[..4 * 999]);
        for (i, counter) in counters.iter().enumerate() {
            if validated[i] == 0 {
                assert_eq!(
                    counter.load(Ordering::Relaxed),
                    0,
                    "a short read touched share {i}"
                );
            }
        }
        let opened: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let got = reader.read_to_vec(0, encoded.cap.size).await.unwrap();
        let after: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        (got, opened, after)
    });
    assert_eq!(got, plaintext);
    let segments = encoded.uri_extension.num_segments;
    assert!(segments > 50);
    let block_reads: Vec<u64> = after.iter().zip(&opened).map(|(a, o)| a - o).collect();
    let used: Vec<usize> = (0..10).filter(|&i| block_reads[i] > 0).collect();
    assert_eq!(used.len(), 10, "block reads per share: {block_reads:?}");
    // An equal part each: k blocks per segment over the ten shares (the four validated during the
    // read count their validation's reads too).
    let part = segments * 3 / 10;
    for &i in &used {
        assert!(
            block_reads[i].abs_diff(part) <= 3,
            "share {i} served {} of {segments} segments' blocks (an equal part: {part}); all: {block_reads:?}",
            block_reads[i]
        );
    }
}

/// Sources that arrive late (servers slower to list their shares than the others) are taken when
/// the first ones are not enough: at open, and by segment reads racing each other after a share
/// proves corrupt. The late sources are looked for once, whoever needs them first, and every
/// racing read comes back right.
#[test]
fn late_sources_are_taken_once_by_racing_reads() {
    use futures::FutureExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    let params = ChkParams {
        needed: 3,
        total: 10,
        max_segment_size: 3000,
    };
    let plaintext = data(60_000, 4);
    let (encoded, sink) = encode_bytes(&plaintext, [5; 16], &params).unwrap();
    let late_sources = |from: usize, runs: Arc<AtomicU64>| {
        let late = sources(&sink.shares, &(from..10).collect::<Vec<_>>());
        async move {
            runs.fetch_add(1, Ordering::Relaxed);
            late
        }
        .boxed()
        .shared()
    };
    futures::executor::block_on(async {
        // Two sources at first, fewer than k: opening takes the late ones.
        let runs = Arc::new(AtomicU64::new(0));
        let reader = ChkReader::open_with_late(
            encoded.cap,
            sources(&sink.shares, &[0, 1]),
            Some(late_sources(2, Arc::clone(&runs))),
            0,
        )
        .await
        .unwrap();
        assert_eq!(reader.read_to_vec(0, encoded.cap.size).await.unwrap(), plaintext);
        assert_eq!(runs.load(Ordering::Relaxed), 1);

        // Three sources, one corrupt in every block: the segments read at once each find it
        // and race for the late sources.
        let mut corrupt = sink.shares[2].clone();
        let header = 0x24;
        let block = 1000;
        for segment in 0..20 {
            corrupt[header + segment * block + 7] ^= 0x40;
        }
        let mut first = sources(&sink.shares, &[0, 1]);
        first.push(Arc::new(MemoryShare {
            shnum: 2,
            data: Arc::new(corrupt),
        }));
        let runs = Arc::new(AtomicU64::new(0));
        let reader =
            ChkReader::open_with_late(encoded.cap, first, Some(late_sources(3, Arc::clone(&runs))), 0)
                .await
                .unwrap();
        let reads = (0..20u64).map(|segment| reader.read_to_vec(segment * 3000, 3000));
        let got = futures::future::join_all(reads).await;
        for (segment, read) in got.into_iter().enumerate() {
            assert_eq!(
                read.unwrap(),
                plaintext[segment * 3000..(segment + 1) * 3000],
                "segment {segment}"
            );
        }
        let bad = reader.bad_shares();
        assert!(bad.iter().any(|b| b.contains("share 2")), "{bad:?}");
        assert_eq!(
            runs.load(Ordering::Relaxed),
            1,
            "the late sources were looked for once"
        );
    });
}
