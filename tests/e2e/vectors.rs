//! Known answers: Tahoe's published vectors, golden shares made by Tahoe 1.20, zfec outputs,
//! share files written by Tahoe 1.2.0, and the project's own vectors from real Tahoe 1.20.
//!
//! Tests over `../shared` print a note and return when that folder is absent; the project's own
//! vectors in `tests/vectors/` are always checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use data_encoding::{BASE64, HEXLOWER};
use filenode::cap::{Cap, FileCap, LitCap, MutableFormat};
use filenode::codec::Codec;
use filenode::crypto::{aes_ctr_at, tahoe_hmac};
use filenode::hashes;
use filenode::immutable::{ChkParams, ChkReader, MemoryShare, ShareSource, convergent_key, encode_bytes};
use filenode::mutable::keys::MutableKey;
use serde::Deserialize;
use storage::server::share_check::{ShareCheck, check_immutable_share_bytes};

fn sha256_hex(data: &[u8]) -> String {
    HEXLOWER.encode(&hashes::sha256(data))
}

fn shared(path: &str) -> Option<PathBuf> {
    match tests::shared_dir() {
        Some(dir) => Some(dir.join(path)),
        None => {
            eprintln!("note: ../shared is absent; skipping the check of {path}");
            None
        }
    }
}

fn b64(text: &str) -> Vec<u8> {
    BASE64.decode(text.as_bytes()).unwrap()
}

/// Tahoe's sample rule: the seed repeated and truncated to `length`.
fn sample(seed: &[u8], length: usize) -> Vec<u8> {
    seed.iter().copied().cycle().take(length).collect()
}

/// The cap for `plaintext` as Tahoe would make it: LIT up to 55 bytes, else convergent CHK.
fn chk_cap(plaintext: &[u8], convergence: &[u8], params: &ChkParams) -> (String, Vec<Vec<u8>>) {
    if plaintext.len() as u64 <= filenode::cap::LIT_THRESHOLD {
        let cap = Cap::File(FileCap::Lit(LitCap {
            data: plaintext.to_vec(),
        }));
        return (cap.to_string(), Vec::new());
    }
    let (key, size) = convergent_key(plaintext, convergence, params).unwrap();
    assert_eq!(size, plaintext.len() as u64);
    let (encoded, shares) = encode_bytes(plaintext, key, params).unwrap();
    (encoded.cap.to_string(), shares.shares)
}

fn memory_sources(shares: &[(u16, Vec<u8>)]) -> Vec<Arc<dyn ShareSource>> {
    shares
        .iter()
        .map(|(shnum, data)| {
            Arc::new(MemoryShare {
                shnum: *shnum,
                data: Arc::new(data.clone()),
            }) as Arc<dyn ShareSource>
        })
        .collect()
}

fn download(cap: &str, shares: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let Cap::File(FileCap::Chk(chk)) = Cap::parse(cap).unwrap() else {
        panic!("not a CHK cap: {cap}")
    };
    // A storage server's own check (which has no cap) finds every share written by Tahoe or by us
    // consistent: it never takes a good share for a corrupt one.
    for (shnum, data) in shares {
        assert_eq!(
            check_immutable_share_bytes(data, *shnum),
            ShareCheck::Consistent,
            "share {shnum} of {cap}"
        );
    }
    futures::executor::block_on(async {
        let reader = ChkReader::open(chk, memory_sources(shares)).await.unwrap();
        reader.read_to_vec(0, chk.size).await.unwrap()
    })
}

/// The server's check (no cap) against the client's verifier (with the cap), every byte of a
/// share flipped in turn: whatever the server calls corrupt, the client rejects too (so a server
/// never removes a share a reader could use), and every flip in a block or a hash tree the server
/// does catch (a flipped index in the share hash chain may leave an unused entry, which it lets
/// pass).
#[test]
fn a_servers_own_check_is_sound_against_every_flipped_byte() {
    let params = ChkParams {
        needed: 3,
        total: 10,
        max_segment_size: 999,
    };
    let plaintext = sample(b"server-side share check", 4000);
    let (key, _) = convergent_key(plaintext.as_slice(), b"secret", &params).unwrap();
    let (encoded, shares) = encode_bytes(&plaintext, key, &params).unwrap();
    let cap = encoded.cap;
    for shnum in [0u16, 7] {
        let good = shares.shares[shnum as usize].clone();
        assert_eq!(check_immutable_share_bytes(&good, shnum), ShareCheck::Consistent);
        let offsets = filenode::immutable::layout::ShareOffsets::parse(&good).unwrap();
        let (mut corrupt, mut undecided, mut consistent) = (0, 0, 0);
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            let server = check_immutable_share_bytes(&bad, shnum);
            let source = Arc::new(MemoryShare {
                shnum,
                data: Arc::new(bad),
            }) as Arc<dyn ShareSource>;
            let client = futures::executor::block_on(filenode::immutable::verify_share(&cap, source));
            match &server {
                ShareCheck::Corrupt(why) => {
                    corrupt += 1;
                    assert!(
                        client.is_err(),
                        "byte {at}: the server calls a usable share corrupt ({why})"
                    );
                }
                ShareCheck::Undecided(_) => undecided += 1,
                ShareCheck::Consistent => consistent += 1,
            }
            let at = at as u64;
            let in_blocks_or_trees = (offsets.data..offsets.plaintext_hash_tree).contains(&at)
                || (offsets.crypttext_hash_tree..offsets.share_hashes).contains(&at);
            if in_blocks_or_trees {
                assert!(
                    matches!(server, ShareCheck::Corrupt(_)),
                    "byte {at} (blocks and trees): {server:?}"
                );
            }
        }
        assert!(
            corrupt > good.len() / 2,
            "{corrupt} corrupt, {undecided} undecided, {consistent} consistent"
        );
    }
}

#[derive(Deserialize)]
struct KnownAnswers {
    cases: Vec<KnownAnswer>,
}

#[derive(Deserialize)]
struct KnownAnswer {
    function: String,
    args: Vec<serde_json::Value>,
    expected_base32: String,
}

#[test]
fn hashutil_known_answers() {
    let Some(path) = shared("vectors/tahoe/hashutil_known_answers.json") else {
        return;
    };
    let answers: KnownAnswers = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(answers.cases.len(), 26);
    for case in &answers.cases {
        let bytes = |i: usize| b64(case.args[i]["bytes_b64"].as_str().unwrap());
        let int = |i: usize| case.args[i]["int"].as_u64().unwrap();
        let got: Vec<u8> = match case.function.as_str() {
            "storage_index_hash" => hashes::storage_index_hash(&bytes(0)).to_vec(),
            "block_hash" => hashes::block_hash(&bytes(0)).to_vec(),
            "uri_extension_hash" => hashes::uri_extension_hash(&bytes(0)).to_vec(),
            "plaintext_hash" => hashes::plaintext_hash(&bytes(0)).to_vec(),
            "crypttext_hash" => hashes::crypttext_hash(&bytes(0)).to_vec(),
            "crypttext_segment_hash" => hashes::crypttext_segment_hash(&bytes(0)).to_vec(),
            "plaintext_segment_hash" => hashes::plaintext_segment_hash(&bytes(0)).to_vec(),
            "convergence_hash" => {
                hashes::convergence_hash(int(0) as usize, int(1) as usize, int(2), &bytes(3), &bytes(4))
                    .to_vec()
            }
            "my_renewal_secret_hash" => hashes::my_renewal_secret_hash(&bytes(0)).to_vec(),
            "my_cancel_secret_hash" => hashes::my_cancel_secret_hash(&bytes(0)).to_vec(),
            "file_renewal_secret_hash" => hashes::file_renewal_secret_hash(&bytes(0), &bytes(1)).to_vec(),
            "file_cancel_secret_hash" => hashes::file_cancel_secret_hash(&bytes(0), &bytes(1)).to_vec(),
            "bucket_renewal_secret_hash" => hashes::bucket_renewal_secret_hash(&bytes(0), &bytes(1)).to_vec(),
            "bucket_cancel_secret_hash" => hashes::bucket_cancel_secret_hash(&bytes(0), &bytes(1)).to_vec(),
            "hmac" => tahoe_hmac(&bytes(0), &bytes(1)).to_vec(),
            "mutable_rwcap_key_hash" => hashes::mutable_rwcap_key_hash(&bytes(0), &bytes(1)).to_vec(),
            "ssk_writekey_hash" => hashes::ssk_writekey_hash(&bytes(0)).to_vec(),
            "ssk_write_enabler_master_hash" => hashes::ssk_write_enabler_master_hash(&bytes(0)).to_vec(),
            "ssk_write_enabler_hash" => hashes::ssk_write_enabler_hash(&bytes(0), &bytes(1)).to_vec(),
            "ssk_pubkey_fingerprint_hash" => hashes::ssk_pubkey_fingerprint_hash(&bytes(0)).to_vec(),
            "ssk_readkey_hash" => hashes::ssk_readkey_hash(&bytes(0)).to_vec(),
            "ssk_readkey_data_hash" => hashes::ssk_readkey_data_hash(&bytes(0), &bytes(1)).to_vec(),
            "ssk_storage_index_hash" => hashes::ssk_storage_index_hash(&bytes(0)).to_vec(),
            "permute_server_hash" => hashes::permute_server_hash(&bytes(0), &bytes(1)).to_vec(),
            other => panic!("unknown known-answer function {other}"),
        };
        assert_eq!(
            filenode::base32::encode(&got),
            case.expected_base32,
            "{}",
            case.function
        );
    }
}

#[test]
fn aes_known_answer() {
    // tahoe-formats.md §1.5: the key of "hello world" at 3-of-10 with 128 KiB segments.
    let params = ChkParams {
        needed: 3,
        total: 10,
        max_segment_size: 128 * 1024,
    };
    let segment_size = filenode::immutable::ChkGeometry::new(&params, 11).segment_size;
    let key = hashes::convergence_hash(3, 10, segment_size, b"hello world", &[0x42; 16]);
    let mut data = b"hello world".to_vec();
    aes_ctr_at(&key, 0, &mut data);
    assert_eq!(BASE64.encode(&data), "Jd2LHCRXozwrEJc=");
}

#[derive(Deserialize)]
struct TahoeVectors {
    vector: Vec<TahoeVector>,
}

#[derive(Deserialize)]
struct TahoeVector {
    convergence: String,
    expected: String,
    format: VectorFormat,
    sample: Sample,
    zfec: Zfec,
}

#[derive(Deserialize)]
struct VectorFormat {
    kind: String,
    params: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct Sample {
    length: usize,
    seed: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Zfec {
    required: u16,
    total: u16,
    segment_size: u64,
}

fn tahoe_vectors() -> Option<Vec<TahoeVector>> {
    let path = shared("vectors/tahoe/test_vectors.yaml")?;
    let parsed: TahoeVectors = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Some(parsed.vector)
}

#[test]
fn published_chk_caps() {
    let Some(vectors) = tahoe_vectors() else { return };
    let chk: Vec<&TahoeVector> = vectors.iter().filter(|v| v.format.kind == "chk").collect();
    assert_eq!(chk.len(), 120);
    let mut failures = Vec::new();
    for v in chk {
        let params = ChkParams {
            needed: v.zfec.required,
            total: v.zfec.total,
            max_segment_size: v.zfec.segment_size,
        };
        let plaintext = sample(&b64(&v.sample.seed), v.sample.length);
        let (cap, _) = chk_cap(&plaintext, &b64(&v.convergence), &params);
        if cap != v.expected {
            failures.push(format!(
                "{}-of-{} size {}: got {cap}, want {}",
                params.needed, params.total, v.sample.length, v.expected
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn published_mutable_caps() {
    let Some(vectors) = tahoe_vectors() else { return };
    let ssk: Vec<&TahoeVector> = vectors.iter().filter(|v| v.format.kind == "ssk").collect();
    assert_eq!(ssk.len(), 240);
    for v in ssk {
        let params = v.format.params.as_ref().unwrap();
        let format = match params["format"].as_str() {
            "sdmf" => MutableFormat::Sdmf,
            "mdmf" => MutableFormat::Mdmf,
            other => panic!("unknown mutable format {other}"),
        };
        let key = MutableKey::from_pem(&params["key"]).unwrap();
        let cap = FileCap::Mutable(key.write_cap(format));
        assert_eq!(cap.to_string(), v.expected);
        // The derived caps parse back to the same object.
        let parsed = Cap::parse(&v.expected).unwrap();
        assert_eq!(parsed.readonly().unwrap().verifier(), parsed.verifier());
    }
}

#[derive(Deserialize)]
struct GoldenShares {
    cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
struct GoldenCase {
    sample: GoldenSample,
    convergence_b64: String,
    k: u16,
    n: u16,
    max_segment_size: u64,
    cap: String,
    share_data_b64: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct GoldenSample {
    seed_b64: String,
    length: usize,
}

#[test]
fn golden_share_data_is_byte_identical() {
    let Some(path) = shared("vectors/golden/chk_golden_shares.json") else {
        return;
    };
    let golden: GoldenShares = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(golden.cases.len(), 5);
    for case in golden.cases {
        let params = ChkParams {
            needed: case.k,
            total: case.n,
            max_segment_size: case.max_segment_size,
        };
        let plaintext = sample(&b64(&case.sample.seed_b64), case.sample.length);
        let (cap, shares) = chk_cap(&plaintext, &b64(&case.convergence_b64), &params);
        assert_eq!(cap, case.cap);
        assert_eq!(shares.len(), case.share_data_b64.len());
        let mut tahoe_shares = Vec::new();
        for (shnum, data) in &case.share_data_b64 {
            let shnum: usize = shnum.parse().unwrap();
            let expected = b64(data);
            assert_eq!(shares[shnum], expected, "share {shnum} of {cap}");
            tahoe_shares.push((shnum as u16, expected));
        }
        // And Tahoe's shares decode with our decoder.
        assert_eq!(download(&cap, &tahoe_shares), plaintext);
    }
}

#[test]
fn erasure_coding_matches_zfec() {
    let Some(dir) = shared("vectors/zfec") else { return };
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(stem) = name.strip_suffix(".in") else {
            continue;
        };
        let mut numbers = stem
            .trim_start_matches("case_")
            .split('_')
            .map(|n| n.parse::<usize>().unwrap());
        let (k, n) = (numbers.next().unwrap(), numbers.next().unwrap());
        let input = std::fs::read(&path).unwrap();
        let expected = std::fs::read(dir.join(format!("{stem}.zfec"))).unwrap();
        let piece = input.len() / k;
        let pieces: Vec<&[u8]> = input.chunks(piece).collect();
        let codec = Codec::new(k, n).unwrap();
        let blocks = codec.encode(&pieces);
        assert_eq!(blocks.concat(), expected, "{k}-of-{n}");
        // The last k blocks decode back to the input.
        let last: Vec<(usize, &[u8])> = (n - k..n).map(|i| (i, blocks[i].as_slice())).collect();
        assert_eq!(codec.decode(&last).unwrap().concat(), input, "{k}-of-{n} decode");
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} zfec cases found");
}

#[derive(Deserialize)]
struct StoredShares {
    immutable_plaintext_b64: String,
    immutable_cap: String,
    immutable_share_files_b64: BTreeMap<String, BTreeMap<String, String>>,
}

/// Strips a v1/v2 immutable container (12-byte header, leases of 72 bytes at the end).
fn container_share_data(file: &[u8]) -> Vec<u8> {
    let lease_count = u32::from_be_bytes(file[8..12].try_into().unwrap()) as usize;
    file[12..file.len() - 72 * lease_count].to_vec()
}

#[test]
fn tahoe_1_2_share_files_decode() {
    let Some(path) = shared("vectors/tahoe/test_download_stored_shares.json") else {
        return;
    };
    let stored: StoredShares = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut shares = Vec::new();
    for by_share in stored.immutable_share_files_b64.values() {
        for (shnum, file) in by_share {
            shares.push((shnum.parse::<u16>().unwrap(), container_share_data(&b64(file))));
        }
    }
    shares.sort();
    assert_eq!(shares.len(), 10);
    let plaintext = b64(&stored.immutable_plaintext_b64);
    assert_eq!(download(&stored.immutable_cap, &shares), plaintext);
    // Any three of them suffice, including three parity shares.
    assert_eq!(download(&stored.immutable_cap, &shares[7..]), plaintext);
}

#[derive(Deserialize)]
struct OwnVectors {
    cases: Vec<OwnCase>,
}

#[derive(Deserialize)]
struct OwnCase {
    name: String,
    seed_b64: String,
    length: usize,
    convergence_b64: String,
    k: u16,
    n: u16,
    max_segment_size: u64,
    cap: String,
    share_sha256: BTreeMap<String, String>,
    share_size: usize,
    #[serde(default)]
    share_data_b64: Option<BTreeMap<String, String>>,
}

#[test]
fn own_vectors_from_tahoe_1_20() {
    let path = tests::own_vectors().join("chk_vectors.json");
    let vectors: OwnVectors = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(vectors.cases.len() >= 15, "expected the committed vector set");
    for case in vectors.cases {
        let params = ChkParams {
            needed: case.k,
            total: case.n,
            max_segment_size: case.max_segment_size,
        };
        let plaintext = sample(&b64(&case.seed_b64), case.length);
        let (cap, shares) = chk_cap(&plaintext, &b64(&case.convergence_b64), &params);
        assert_eq!(cap, case.cap, "{}", case.name);
        assert_eq!(shares.len(), case.share_sha256.len(), "{}", case.name);
        for (shnum, digest) in &case.share_sha256 {
            let share = &shares[shnum.parse::<usize>().unwrap()];
            assert_eq!(share.len(), case.share_size, "{} share {shnum}", case.name);
            assert_eq!(&sha256_hex(share), digest, "{} share {shnum}", case.name);
        }
        if let Some(data) = &case.share_data_b64 {
            let tahoe_shares: Vec<(u16, Vec<u8>)> = data
                .iter()
                .map(|(shnum, d)| (shnum.parse().unwrap(), b64(d)))
                .collect();
            assert_eq!(download(&cap, &tahoe_shares), plaintext, "{}", case.name);
        }
    }
}

#[derive(Deserialize)]
struct GoldenMutable {
    cap: String,
    readcap: String,
    plaintext_b64: Option<String>,
    shares: BTreeMap<String, String>,
}

fn mutable_cap(text: &str) -> filenode::cap::MutableCap {
    match Cap::parse(text).unwrap() {
        Cap::File(FileCap::Mutable(m)) => m,
        Cap::Dir(dir) => match dir.file() {
            FileCap::Mutable(m) => *m,
            other => panic!("not mutable: {other:?}"),
        },
        other => panic!("not mutable: {other:?}"),
    }
}

#[tokio::test]
async fn tahoe_1_20_mutable_shares_verify_and_decode() {
    use filenode::mutable::layout::MutableShare;
    use tests::grid::retrieve_from_shares;
    for name in ["sdmf_small", "sdmf_big", "mdmf_small", "mdmf_big", "dirnode"] {
        let Some(path) = shared(&format!("vectors/golden/mutable/{name}.json")) else {
            return;
        };
        let golden: GoldenMutable = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let shares: Vec<(usize, Vec<u8>)> = golden
            .shares
            .iter()
            .map(|(n, b)| (n.parse().unwrap(), b64(b)))
            .collect();
        let write = mutable_cap(&golden.cap);
        let read = mutable_cap(&golden.readcap);
        assert_eq!(write.readonly().unwrap(), read, "{name}");
        for (shnum, bytes) in &shares {
            let share = MutableShare::parse(bytes).unwrap();
            share
                .verify(*shnum, &write.fingerprint)
                .unwrap_or_else(|e| panic!("{name} share {shnum}: {e}"));
            // A flipped bit in a block is caught.
            let mut damaged = bytes.clone();
            // SDMF: a byte of the block (just before the encrypted key); MDMF: the block hash tree's
            // last byte (the share ends with the tree).
            let at = match share.format {
                MutableFormat::Sdmf => damaged.len() - share.encrypted_private_key.len() - 3,
                MutableFormat::Mdmf => damaged.len() - 1,
            };
            damaged[at] ^= 1;
            if let Ok(bad) = MutableShare::parse(&damaged) {
                assert!(
                    bad.verify(*shnum, &write.fingerprint).is_err(),
                    "{name} share {shnum}: damage unnoticed"
                );
            }
        }
        let plaintext = retrieve_from_shares(&read, &shares).await.unwrap();
        if let Some(expected) = &golden.plaintext_b64 {
            assert_eq!(plaintext, b64(expected), "{name}");
        }
        assert_eq!(
            retrieve_from_shares(&write, &shares).await.unwrap(),
            plaintext,
            "{name}: write cap reads too"
        );
    }
}

#[derive(Deserialize)]
struct OldSdmf {
    cap: String,
    plaintext_b64: String,
    share_files_b64: BTreeMap<String, String>,
}

#[tokio::test]
async fn old_sdmf_share_files_decode() {
    let Some(path) = shared("vectors/tahoe/sdmf_old_shares.json") else {
        return;
    };
    let old: OldSdmf = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // Strip the 468-byte mutable container header; the data length is the u64 at offset 84.
    let shares: Vec<(usize, Vec<u8>)> = old
        .share_files_b64
        .iter()
        .map(|(n, file)| {
            let file = b64(file);
            let len = u64::from_be_bytes(file[84..92].try_into().unwrap()) as usize;
            (n.parse().unwrap(), file[468..468 + len].to_vec())
        })
        .collect();
    let cap = mutable_cap(&old.cap);
    let plaintext = tests::grid::retrieve_from_shares(&cap, &shares).await.unwrap();
    assert_eq!(plaintext, b64(&old.plaintext_b64));
}

#[tokio::test]
async fn tahoe_directory_unpacks_and_packs_back_byte_for_byte() {
    use filenode::dirnode::{pack, unpack};
    let Some(path) = shared("vectors/golden/mutable/dirnode.json") else {
        return;
    };
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let shares: Vec<(usize, Vec<u8>)> = value["shares"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, b)| (n.parse().unwrap(), b64(b.as_str().unwrap())))
        .collect();
    let cap = mutable_cap(value["cap"].as_str().unwrap());
    let plaintext = tests::grid::retrieve_from_shares(&cap, &shares).await.unwrap();
    let writekey = cap.writekey().unwrap();
    let entries = unpack(&plaintext, Some(&writekey)).unwrap();
    assert!(!entries.is_empty());
    let subdir = value["subdir_cap"].as_str().unwrap();
    assert!(
        entries.iter().any(|e| e.rw_uri.as_deref() == Some(subdir)),
        "the subdirectory's write cap decrypts"
    );
    // Names are sorted and metadata is Tahoe's JSON.
    assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
    assert!(entries.iter().all(|e| e.metadata_json.starts_with('{')));
    // Packing what was read gives Tahoe's bytes back exactly (salts from caps, the non-RFC MAC).
    assert_eq!(pack(&entries, Some(&writekey)), plaintext);
    // A reader with only the read cap sees names and read caps but no write caps.
    let read_only = unpack(&plaintext, None).unwrap();
    assert!(read_only.iter().all(|e| e.rw_uri.is_none()));
    assert_eq!(read_only.len(), entries.len());
}
