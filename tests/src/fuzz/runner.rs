//! The stable fuzz runner: no coverage feedback, but it runs on every toolchain, so every target
//! runs in `cargo test` (the short tier) and for as long as asked (`TESSERA_FUZZ_SECONDS`).
//!
//! For one target it runs, in order: every committed regression input (`fuzz/regressions/NAME/`),
//! every seed (`fuzz/corpus/NAME/`), then mutations of the seeds: bit flips, interesting bytes and
//! big-endian integers, ASCII numbers at the edges of u32/u64, deletions, insertions, duplicated
//! runs, truncations and splices of two seeds, one to four at a time, plus wholly random inputs
//! (which structured targets read through `arbitrary`). A panic fails the run with the input saved
//! under `target/fuzz-crashes/NAME/`, and its path and the reproduction command in the message.
//!
//! - Default: a fixed number of mutated inputs per target (`Target::runs`, scaled by
//!   `TESSERA_FUZZ_RUNS` if set) from a seed fixed per target, so that CI runs the same inputs
//!   every time.
//! - `TESSERA_FUZZ_SECONDS=N`: each target runs for N seconds from a random seed (printed; set
//!   `TESSERA_FUZZ_SEED` to repeat a run).
//! - `TESSERA_FUZZ_INPUT=PATH`: run the target on that one input only.
//!
//! The input being run is also kept in `target/fuzz-crashes/NAME.last`, so that an input that
//! aborts the process (an allocation past the test binary's limit) is not lost.

use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::workspace_root;

/// What one run of a target did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Inputs run (regressions, seeds and mutations).
    pub runs: u64,
    /// Wall-clock seconds the target ran.
    pub seconds: f64,
}

/// Byte strings worth inserting into any input: numbers at the edges, lengths, separators.
const TOKENS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"255",
    b"256",
    b"65535",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b":",
    b",",
    b"=",
    b"\n",
    b"\r\n",
    b"/",
    b"..",
    b"\0",
    b"\xc3\x28",
    b"%",
];

/// The directory of committed seeds of a target.
pub fn corpus_dir(name: &str) -> PathBuf {
    workspace_root().join("fuzz").join("corpus").join(name)
}

/// The directory of committed regression inputs of a target.
pub fn regressions_dir(name: &str) -> PathBuf {
    workspace_root().join("fuzz").join("regressions").join(name)
}

fn crashes_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("fuzz-crashes")
}

fn read_dir_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
        .collect();
    files.sort();
    files
}

/// FNV-1a, to name saved inputs by their content.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Applies one to four mutations.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>], max_len: usize) {
    for _ in 0..rng.random_range(1..=4) {
        let len = input.len();
        match rng.random_range(0..11) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] = [0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b' '][rng.random_range(0..8)];
            }
            2 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..=len.min(start + 64));
                input.drain(start..end);
            }
            3 => {
                let at = rng.random_range(0..=len);
                let count = rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..count).map(|_| rng.random()).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..=len.min(start + 256));
                let copy = input[start..end].to_vec();
                let at = rng.random_range(0..=len);
                input.splice(at..at, copy);
            }
            5 if len > 0 => input.truncate(rng.random_range(0..len)),
            6 if !seeds.is_empty() => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            7 if len >= 4 => {
                let value: u64 = [
                    0,
                    1,
                    0x7fff_ffff,
                    0x8000_0000,
                    0xffff_ffff,
                    u64::MAX,
                    len as u64 * 2,
                ][rng.random_range(0..7)];
                let width = if rng.random() { 4 } else { 8 }.min(len);
                let at = rng.random_range(0..=len - width);
                input[at..at + width].copy_from_slice(&value.to_be_bytes()[8 - width..]);
            }
            8 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                let at = rng.random_range(0..=len);
                input.splice(at..at, token.iter().copied());
            }
            9 if len > 0 => {
                // Replace a run of digits with a token (a number at an edge, mostly).
                let start = rng.random_range(0..len);
                if let Some(offset) = input[start..].iter().position(u8::is_ascii_digit) {
                    let begin = start + offset;
                    let end = input[begin..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(input.len(), |e| begin + e);
                    let token = TOKENS[rng.random_range(0..12)];
                    input.splice(begin..end, token.iter().copied());
                }
            }
            _ => {
                let at = rng.random_range(0..=len);
                let byte = rng.random::<u8>();
                input.insert(at, byte);
            }
        }
    }
    input.truncate(max_len);
}

/// Runs `body` as described in the module docs and returns what ran. Panics (failing the calling
/// test) on the first input that panics.
pub fn run(name: &str, body: fn(&[u8]), default_runs: u64, max_len: usize) -> Report {
    let started = Instant::now();
    let crashes = crashes_dir();
    std::fs::create_dir_all(&crashes).expect("create target/fuzz-crashes");
    let last_path = crashes.join(format!("{name}.last"));
    let last = std::fs::File::create(&last_path).expect("create the last-input file");
    let mut runs = 0u64;
    let mut one = |input: &[u8], origin: &str| {
        let _ = last.set_len(0);
        let _ = last.write_all_at(input, 0);
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
            let dir = crashes.join(name);
            std::fs::create_dir_all(&dir).expect("create the crash directory");
            let path = dir.join(format!("crash-{:016x}", fingerprint(input)));
            std::fs::write(&path, input).expect("save the crashing input");
            panic!(
                "fuzz target {name} panicked on {origin}; input saved as {}\n\
                 reproduce: TESSERA_FUZZ_INPUT={} cargo test -p tests --test fuzz {name}\n\
                 once fixed, commit it as fuzz/regressions/{name}/<what-it-was>",
                path.display(),
                path.display()
            );
        }
    };

    if let Some(path) = std::env::var_os("TESSERA_FUZZ_INPUT") {
        let input = std::fs::read(&path).expect("read TESSERA_FUZZ_INPUT");
        one(&input, "TESSERA_FUZZ_INPUT");
        return Report {
            runs,
            seconds: started.elapsed().as_secs_f64(),
        };
    }

    for (path, input) in read_dir_files(&regressions_dir(name)) {
        one(&input, &format!("regression input {}", path.display()));
    }
    let seeds: Vec<Vec<u8>> = read_dir_files(&corpus_dir(name))
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    for seed in &seeds {
        one(seed, "a seed");
    }

    let seconds: Option<f64> = std::env::var("TESSERA_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let rng_seed: u64 = match std::env::var("TESSERA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => seed,
        None if seconds.is_some() => rand::random(),
        None => fingerprint(name.as_bytes()),
    };
    let scale: f64 = std::env::var("TESSERA_FUZZ_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let deadline = seconds.map(|s| started + Duration::from_secs_f64(s));
    let budget = (default_runs as f64 * scale) as u64;
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let mut mutations = 0u64;
    loop {
        match deadline {
            Some(deadline) if Instant::now() >= deadline => break,
            None if mutations >= budget => break,
            _ => {}
        }
        mutations += 1;
        let input = if seeds.is_empty() || rng.random_range(0..8) == 0 {
            let len = rng.random_range(0..=max_len.min(512));
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut input = seeds[rng.random_range(0..seeds.len())].clone();
            mutate(&mut rng, &mut input, &seeds, max_len);
            input
        };
        one(&input, &format!("mutation {mutations} of seed {rng_seed}"));
    }
    let report = Report {
        runs,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!(
        "fuzz {name}: {} runs in {:.1} s (seed {rng_seed})",
        report.runs, report.seconds
    );
    report
}
