//! Fuzz targets for the parsers of the `tessera` binary that read another party's bytes:
//! `tahoe.cfg`, `private/servers.yaml` and signed announcements (as an introducer receives them
//! and as a client's cache holds them). They run under the stable fuzz runner of the `tests` crate
//! (`tests::fuzz::runner`, seeds in `fuzz/corpus/NAME/`, regressions in `fuzz/regressions/NAME/`):
//! `cargo test -p node fuzz::`, `TESSERA_FUZZ_SECONDS=N` for longer.
//!
//! **Boundary:** cargo-fuzz cannot reach them: node is a binary crate without a library target,
//! and giving it one only for this would move every module behind a `lib.rs`. The parsers are
//! small (an INI reader, serde YAML and JSON, ed25519), and the stable runner's mutations cover
//! them; the coverage-guided targets are the libraries' (`fuzz/`).

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};

use crate::announcement::{self, SignedAnnouncement};
use crate::client;
use crate::config::{NodeConfig, parse_ini};

/// `tahoe.cfg`: the INI reader, then every section and key resolved (sizes, ports, dates, paths).
/// Bad input is an error naming the line or key, never a panic.
fn tahoe_cfg(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/n/tahoe.cfg");
    if let Ok(sections) = parse_ini(text, file) {
        let _ = NodeConfig::from_ini(&sections, Path::new("/n"), file);
    }
}

/// `servers.yaml` (Tahoe's format, YAML aliases and all): each server becomes a grid entry (its
/// fURL's tub id, permutation seed and NURL parsed; no connection is made).
fn servers_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(servers) = client::parse_servers_yaml(text) {
        for (id, ann) in &servers {
            let _ = client::server_entry(id, ann, Default::default());
        }
    }
}

/// `private/introducers.yaml` (Tahoe's format): every entry checked (petname, keys, address);
/// bad input is an error naming the file, never a panic, and never repeats a swissnum.
fn introducers_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::introducer_config::parse(text, Path::new("/n/private/introducers.yaml")) {
        Ok(list) => {
            assert!(list.len() <= crate::introducer_config::MAX_INTRODUCERS);
            for entry in &list {
                assert!(!entry.petname.is_empty() && !entry.petname.contains('/'));
            }
        }
        Err(e) => assert!(format!("{e:#}").starts_with("/n/private/introducers.yaml")),
    }
}

/// The key the `announcement` target re-signs announcements with, so that the announcement JSON
/// (checked only after the signature) is fuzzed too.
const KEY: [u8; 32] = [7; 32];

/// Signed announcements as an introducer receives them (`{"ann", "sig", "key"}` JSON): the
/// signature checked, then (re-signed with [`KEY`]) the announcement itself parsed, and a storage
/// announcement made into a grid entry. An announcement that verifies re-signs to one that
/// verifies to the same announcement.
fn announcement(data: &[u8]) {
    let Ok(signed) = serde_json::from_slice::<SignedAnnouncement>(data) else {
        return;
    };
    let _ = announcement::verify(&signed);
    let key = SigningKey::from_bytes(&KEY);
    let resigned = SignedAnnouncement {
        sig: format!(
            "v0-{}",
            storage::base32::encode(&key.sign(signed.ann.as_bytes()).to_bytes())
        ),
        key: format!("v0-{}", storage::base32::encode(key.verifying_key().as_bytes())),
        ann: signed.ann,
    };
    let Ok((id, body)) = announcement::verify(&resigned) else {
        return;
    };
    let again = announcement::sign(&body, &key).expect("an announcement serializes");
    let (again_id, again_body) = announcement::verify(&again).expect("a signed announcement verifies");
    assert_eq!((again_id, again_body), (id.clone(), body.clone()));
    let _ = client::server_entry(&id, &body.storage, Default::default());
}

fn run(name: &str, body: fn(&[u8]), runs: u64, max_len: usize) {
    let report = tests::fuzz::runner::run(name, body, runs, max_len);
    assert!(report.runs > 0);
}

#[test]
fn fuzz_tahoe_cfg() {
    run("tahoe_cfg", tahoe_cfg, 20_000, 4096);
}

#[test]
fn fuzz_servers_yaml() {
    run("servers_yaml", servers_yaml, 10_000, 4096);
}

#[test]
fn fuzz_introducers_yaml() {
    run("introducers_yaml", introducers_yaml, 10_000, 4096);
}

#[test]
fn fuzz_announcement() {
    run("announcement", announcement, 3_000, 4096);
}
