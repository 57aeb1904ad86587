//! Container byte layouts: what we write (v2 of both kinds, byte for byte), what we read (hand-built
//! v1 containers and Tahoe 1.2.0's real share files from `../shared`), and the in-place lease edits.

use std::collections::BTreeMap;

use super::*;
use crate::server::immutable;
use crate::server::lease::{LEASE_DURATION_SECS, hash_secret};
use crate::server::mutable::{MAGIC_V1, MAGIC_V2, MutableShare};

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn be64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn immutable_v2_container_bytes() {
    let h = Harness::new();
    let s = si(1);
    upload(h.server(), s, 3, b"0123456789", 1);
    let expiry = h.now_secs() + LEASE_DURATION_SECS;
    let bytes = std::fs::read(h.share_path(s, 3)).unwrap();
    assert_eq!(bytes.len(), 12 + 10 + 72);
    assert_eq!(&bytes[0..12], &[0, 0, 0, 2, 0, 0, 0, 10, 0, 0, 0, 1]);
    assert_eq!(&bytes[12..22], b"0123456789");
    let lease_bytes = &bytes[22..];
    assert_eq!(be32(lease_bytes, 0), 0, "allocation leases have owner 0");
    assert_eq!(&lease_bytes[4..36], &hash_secret(&[1; 32]));
    assert_eq!(&lease_bytes[36..68], &hash_secret(&[0xfe; 32]));
    assert_eq!(u64::from(be32(lease_bytes, 68)), expiry);

    // A second lease is appended with owner 1 and the count bumped; the data is untouched.
    h.clock.advance(DAY);
    h.server().add_or_renew_lease(s, &lease(2)).unwrap();
    let bytes = std::fs::read(h.share_path(s, 3)).unwrap();
    assert_eq!(bytes.len(), 12 + 10 + 2 * 72);
    assert_eq!(be32(&bytes, 8), 2);
    assert_eq!(be32(&bytes, 22 + 72), 1);
    assert_eq!(u64::from(be32(&bytes, 22 + 72 + 68)), expiry + 86_400);
    assert_eq!(
        h.server().read_share(ShareKind::Immutable, s, 3, 0, 100).unwrap(),
        b"0123456789"
    );

    // Renewing the first rewrites its expiry in place.
    h.server().add_or_renew_lease(s, &lease(1)).unwrap();
    let bytes = std::fs::read(h.share_path(s, 3)).unwrap();
    assert_eq!(bytes.len(), 12 + 10 + 2 * 72);
    assert_eq!(u64::from(be32(&bytes, 22 + 68)), expiry + 86_400);
}

#[test]
fn immutable_length_field_saturates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let record = plain_lease(0, 1, 5, [0; 20]);
    // A sparse file: 4 GiB + 5 bytes of data area.
    let file = immutable::create_incoming(&path, (1 << 32) + 5, &record).unwrap();
    drop(file);
    let bytes = {
        let mut header = [0u8; 12];
        crate::server::fsutil::read_exact_at(&std::fs::File::open(&path).unwrap(), &mut header, 0).unwrap();
        header
    };
    assert_eq!(&bytes, &[0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]);
    let share = immutable::ImmutableShare::open(&path, false).unwrap();
    assert_eq!(share.data_len(), (1 << 32) + 5);
    assert!(!immutable::repair(&path).unwrap());
}

#[test]
fn mutable_v2_container_bytes() {
    let h = Harness::new();
    let s = si(2);
    let result = rtw(h.server(), s, 7, 1, 0, write_vectors(0, b"hello"), &[]).unwrap();
    assert!(result.success);
    let expiry = h.now_secs() + LEASE_DURATION_SECS;
    let bytes = std::fs::read(h.share_path(s, 0)).unwrap();
    assert_eq!(bytes.len(), 468 + 5 + 4);
    assert_eq!(&bytes[0..32], &MAGIC_V2);
    assert_eq!(&bytes[0..27], b"Tahoe mutable container v2\n");
    assert_eq!(&bytes[32..52], &[0xab; 20], "node id");
    assert_eq!(&bytes[52..84], &[7; 32], "write enabler");
    assert_eq!(be64(&bytes, 84), 5);
    assert_eq!(be64(&bytes, 92), 473);
    let slot = &bytes[100..192];
    assert_eq!(be32(slot, 0), 1, "mutable leases have owner 1");
    assert_eq!(u64::from(be32(slot, 4)), expiry);
    assert_eq!(&slot[8..40], &hash_secret(&[1; 32]));
    assert_eq!(&slot[40..72], &hash_secret(&[0xfe; 32]));
    assert_eq!(&slot[72..92], &[0xab; 20]);
    assert!(bytes[192..468].iter().all(|b| *b == 0), "three empty slots");
    assert_eq!(&bytes[468..473], b"hello");
    assert_eq!(be32(&bytes, 473), 0, "no extra leases");

    // Leases 2..=4 fill the header slots in place; lease 5 becomes the first extra lease.
    for n in 2..=5 {
        h.server().add_or_renew_lease(s, &lease(n)).unwrap();
    }
    let bytes = std::fs::read(h.share_path(s, 0)).unwrap();
    assert_eq!(bytes.len(), 468 + 5 + 4 + 92);
    assert_eq!(be32(&bytes, 473), 1);
    assert_eq!(&bytes[473 + 4 + 8..473 + 4 + 40], &hash_secret(&[5; 32]));
    for slot in 0..4 {
        assert_eq!(be32(&bytes, 100 + slot * 92), 1);
    }

    // Growing the data moves the extra leases after it; everything still parses the same.
    let result = rtw(h.server(), s, 7, 1, 0, write_vectors(100, b"tail"), &[]).unwrap();
    assert!(result.success);
    let bytes = std::fs::read(h.share_path(s, 0)).unwrap();
    assert_eq!(be64(&bytes, 84), 104);
    assert_eq!(be64(&bytes, 92), 468 + 104);
    assert_eq!(bytes.len(), 468 + 104 + 4 + 92);
    assert_eq!(&bytes[468..473], b"hello");
    assert!(bytes[473..568].iter().all(|b| *b == 0), "the gap reads as zeros");
    assert_eq!(&bytes[568..572], b"tail");
    let mut ids: Vec<[u8; 32]> = h
        .leases(ShareKind::Mutable, s, 0)
        .into_iter()
        .map(|l| l.0)
        .collect();
    ids.sort();
    let mut expected: Vec<[u8; 32]> = (1..=5).map(lease_id).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(h.server().status().used_space, bytes.len() as u64);
}

/// A v1 immutable container as Tahoe before 1.17 wrote it: plaintext lease secrets.
fn v1_immutable(data: &[u8], leases: &[LeaseRecord]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&(leases.len() as u32).to_be_bytes());
    bytes.extend_from_slice(data);
    for lease in leases {
        bytes.extend_from_slice(&lease.to_immutable());
    }
    bytes
}

/// A v1 mutable container with `leases` in the header slots.
fn v1_mutable(nodeid: [u8; 20], we: [u8; 32], data: &[u8], leases: &[LeaseRecord]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&MAGIC_V1);
    bytes.extend_from_slice(&nodeid);
    bytes.extend_from_slice(&we);
    bytes.extend_from_slice(&(data.len() as u64).to_be_bytes());
    bytes.extend_from_slice(&(468 + data.len() as u64).to_be_bytes());
    for slot in 0..4 {
        match leases.get(slot) {
            Some(lease) => bytes.extend_from_slice(&lease.to_mutable()),
            None => bytes.extend_from_slice(&[0; 92]),
        }
    }
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes
}

fn place(root: &Path, si: StorageIndex, shnum: ShareNum, bytes: &[u8]) {
    let dir = root.join("shares").join(si.prefix()).join(si.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(shnum.to_string()), bytes).unwrap();
}

#[test]
fn reads_and_renews_v1_immutable_containers() {
    let mut h = Harness::new();
    let s = si(3);
    let expiry = h.now_secs() as u32 + 1000;
    h.stop();
    place(
        h.root(),
        s,
        0,
        &v1_immutable(b"old share data", &[plain_lease(0, 9, expiry, [0; 20])]),
    );
    // Placed behind the server's back: a fresh index sees it only after a rebuild.
    std::fs::remove_dir_all(h.root().join("leases.sled")).unwrap();
    h.start();
    let server = h.server();
    assert_eq!(server.list_shares(ShareKind::Immutable, s).unwrap(), shnums(&[0]));
    assert_eq!(server.share_length(ShareKind::Immutable, s, 0).unwrap(), 14);
    assert_eq!(
        server.read_share(ShareKind::Immutable, s, 0, 4, 100).unwrap(),
        b"share data"
    );
    assert_eq!(
        h.leases(ShareKind::Immutable, s, 0),
        vec![(lease_id(9), expiry, 0)]
    );

    // Renewal compares the plaintext secret and rewrites the expiry in place.
    server.add_or_renew_lease(s, &lease(9)).unwrap();
    let renewed = (h.now_secs() + LEASE_DURATION_SECS) as u32;
    assert_eq!(
        h.leases(ShareKind::Immutable, s, 0),
        vec![(lease_id(9), renewed, 0)]
    );
    // A new lease in a v1 container stays in clear, as Tahoe would write it.
    server.add_or_renew_lease(s, &lease(4)).unwrap();
    let bytes = std::fs::read(h.share_path(s, 0)).unwrap();
    assert_eq!(be32(&bytes, 0), 1, "still version 1");
    assert_eq!(be32(&bytes, 8), 2);
    assert_eq!(&bytes[12 + 14 + 72 + 4..12 + 14 + 72 + 36], &[4; 32]);
    // The index names both by the hash of the renew secret.
    let mut ids: Vec<[u8; 32]> = h.server().index_entries().iter().map(|k| k.lease_id).collect();
    ids.sort();
    let mut expected = vec![lease_id(9), lease_id(4)];
    expected.sort();
    assert_eq!(ids, expected);
}

#[test]
fn reads_and_writes_v1_mutable_containers() {
    let mut h = Harness::new();
    let s = si(4);
    let expiry = h.now_secs() as u32 + 1000;
    h.stop();
    place(
        h.root(),
        s,
        1,
        &v1_mutable(
            [0x11; 20],
            [6; 32],
            b"mutable v1 data",
            &[plain_lease(1, 8, expiry, [0x11; 20])],
        ),
    );
    std::fs::remove_dir_all(h.root().join("leases.sled")).unwrap();
    h.start();
    let server = h.server();
    assert_eq!(server.list_shares(ShareKind::Mutable, s).unwrap(), shnums(&[1]));
    assert_eq!(
        server.read_share(ShareKind::Mutable, s, 1, 0, 7).unwrap(),
        b"mutable"
    );
    assert!(matches!(
        rtw(server, s, 5, 8, 1, write_vectors(0, b"X"), &[]),
        Err(StorageError::WriteEnablerMismatch)
    ));
    let result = rtw(
        server,
        s,
        6,
        8,
        1,
        write_vectors(0, b"M"),
        &[ReadVector { offset: 0, size: 7 }],
    )
    .unwrap();
    assert!(result.success);
    assert_eq!(result.data[&1], vec![b"mutable".to_vec()]);
    let bytes = std::fs::read(h.share_path(s, 1)).unwrap();
    assert_eq!(&bytes[0..32], &MAGIC_V1, "the container keeps its version");
    assert_eq!(
        &bytes[32..52],
        &[0x11; 20],
        "and the node id that recorded the write enabler"
    );
    assert_eq!(&bytes[468..483], b"Mutable v1 data");
    // The lease was renewed in the new version, secrets still in clear.
    assert_eq!(&bytes[100 + 8..100 + 40], &[8; 32]);
    let renewed = (h.now_secs() + LEASE_DURATION_SECS) as u32;
    assert_eq!(
        h.leases(ShareKind::Mutable, s, 1),
        vec![(lease_id(8), renewed, 1)]
    );
    let share = MutableShare::open(&h.share_path(s, 1), false).unwrap();
    assert_eq!(share.version(), 1);
}

// ----- Tahoe 1.2.0's share files -----

/// A tiny JSON reader: enough for the vector file (objects, arrays, strings, numbers, literals).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Object(BTreeMap<String, Json>),
    Array(Vec<Json>),
    String(String),
    Other(String),
}

fn parse_json(text: &str) -> Json {
    fn skip_ws(bytes: &[u8], pos: &mut usize) {
        while *pos < bytes.len() && bytes[*pos].is_ascii_whitespace() {
            *pos += 1;
        }
    }
    fn string(bytes: &[u8], pos: &mut usize) -> String {
        assert_eq!(bytes[*pos], b'"');
        *pos += 1;
        let mut out = String::new();
        loop {
            match bytes[*pos] {
                b'"' => {
                    *pos += 1;
                    return out;
                }
                b'\\' => {
                    let escaped = bytes[*pos + 1];
                    *pos += 2;
                    match escaped {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'u' => {
                            let hex = std::str::from_utf8(&bytes[*pos..*pos + 4]).unwrap();
                            out.push(char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap());
                            *pos += 4;
                        }
                        other => out.push(other as char),
                    }
                }
                _ => {
                    let start = *pos;
                    while bytes[*pos] != b'"' && bytes[*pos] != b'\\' {
                        *pos += 1;
                    }
                    out.push_str(std::str::from_utf8(&bytes[start..*pos]).unwrap());
                }
            }
        }
    }
    fn value(bytes: &[u8], pos: &mut usize) -> Json {
        skip_ws(bytes, pos);
        match bytes[*pos] {
            b'{' => {
                *pos += 1;
                let mut map = BTreeMap::new();
                loop {
                    skip_ws(bytes, pos);
                    if bytes[*pos] == b'}' {
                        *pos += 1;
                        return Json::Object(map);
                    }
                    let key = string(bytes, pos);
                    skip_ws(bytes, pos);
                    assert_eq!(bytes[*pos], b':');
                    *pos += 1;
                    map.insert(key, value(bytes, pos));
                    skip_ws(bytes, pos);
                    if bytes[*pos] == b',' {
                        *pos += 1;
                    }
                }
            }
            b'[' => {
                *pos += 1;
                let mut items = Vec::new();
                loop {
                    skip_ws(bytes, pos);
                    if bytes[*pos] == b']' {
                        *pos += 1;
                        return Json::Array(items);
                    }
                    items.push(value(bytes, pos));
                    skip_ws(bytes, pos);
                    if bytes[*pos] == b',' {
                        *pos += 1;
                    }
                }
            }
            b'"' => Json::String(string(bytes, pos)),
            _ => {
                let start = *pos;
                while *pos < bytes.len() && !b",}] \n\r\t".contains(&bytes[*pos]) {
                    *pos += 1;
                }
                Json::Other(String::from_utf8_lossy(&bytes[start..*pos]).into_owned())
            }
        }
    }
    let mut pos = 0;
    value(text.as_bytes(), &mut pos)
}

/// `{server: {shnum: base64 share file}}` → `[(server, shnum, bytes)]`, sorted by share number.
fn share_files(json: &Json, key: &str) -> Vec<(u8, ShareNum, Vec<u8>)> {
    let Json::Object(top) = json else {
        panic!("not an object")
    };
    let Json::Object(servers) = &top[key] else {
        panic!("{key} is not an object")
    };
    let mut out = Vec::new();
    for (server, shares) in servers {
        let Json::Object(shares) = shares else {
            panic!("not an object")
        };
        for (shnum, b64) in shares {
            let Json::String(b64) = b64 else {
                panic!("not a string")
            };
            let bytes = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
            out.push((server.parse().unwrap(), shnum.parse().unwrap(), bytes));
        }
    }
    out.sort_by_key(|(_, shnum, _)| *shnum);
    out
}

fn tahoe_1_2_vectors() -> Option<Json> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors/tahoe/test_download_stored_shares.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(parse_json(&text)),
        Err(_) => {
            eprintln!(
                "note: {} not found; skipping the Tahoe 1.2.0 share-file test",
                path.display()
            );
            None
        }
    }
}

#[test]
fn json_reader_handles_escapes() {
    let json = parse_json(r#"{"a": {"b": "x\"y\u0041\n"}, "c": [1, true, null], "d": ""}"#);
    let Json::Object(top) = json else { panic!() };
    assert_eq!(
        top["a"],
        Json::Object(
            [("b".to_owned(), Json::String("x\"yA\n".to_owned()))]
                .into_iter()
                .collect()
        )
    );
    assert_eq!(top["d"], Json::String(String::new()));
    assert!(matches!(&top["c"], Json::Array(items) if items.len() == 3));
}

#[test]
fn reads_tahoe_1_2_immutable_share_files() {
    let Some(json) = tahoe_1_2_vectors() else { return };
    let files = share_files(&json, "immutable_share_files_b64");
    assert_eq!(files.len(), 10);
    let mut h = Harness::new();
    h.stop();
    let (keep, expire) = (si(10), si(11));
    for (_, shnum, bytes) in &files {
        place(h.root(), keep, *shnum, bytes);
        place(h.root(), expire, *shnum, bytes);
    }
    // Missing index: rebuilt from these files at open.
    std::fs::remove_dir_all(h.root().join("leases.sled")).unwrap();
    h.config.expiration.enabled = true;
    h.start();
    let server = h.server();
    let all: BTreeSet<ShareNum> = (0..10).collect();
    assert_eq!(server.list_shares(ShareKind::Immutable, keep).unwrap(), all);
    assert_eq!(server.status().immutable_shares, 20);
    for (_, shnum, bytes) in &files {
        assert_eq!(be32(bytes, 0), 1, "Tahoe 1.2.0 wrote version 1");
        let data_len = bytes.len() as u64 - 12 - 72;
        assert_eq!(
            server.share_length(ShareKind::Immutable, keep, *shnum).unwrap(),
            data_len
        );
        assert_eq!(
            server
                .read_share(ShareKind::Immutable, keep, *shnum, 0, u64::MAX)
                .unwrap(),
            &bytes[12..12 + data_len as usize]
        );
        // Reads never reach into the lease.
        assert_eq!(
            server
                .read_share(ShareKind::Immutable, keep, *shnum, data_len - 2, 100)
                .unwrap(),
            &bytes[12 + data_len as usize - 2..12 + data_len as usize]
        );
    }
    // The leases are in clear (v1): renew one share's lease with its own secrets.
    let (_, shnum, bytes) = &files[0];
    let record = &bytes[bytes.len() - 72..];
    let old_expiry = be32(record, 68);
    assert_eq!(old_expiry, 1_230_942_425);
    let secrets = LeaseSecrets {
        renew: record[4..36].try_into().unwrap(),
        cancel: record[36..68].try_into().unwrap(),
    };
    server.add_or_renew_lease(keep, &secrets).unwrap();
    let renewed = std::fs::read(h.share_path(keep, *shnum)).unwrap();
    assert_eq!(renewed.len(), bytes.len(), "renewed in place, not added");
    assert_eq!(
        u64::from(be32(&renewed, renewed.len() - 4)),
        h.now_secs() + LEASE_DURATION_SECS
    );
    assert_eq!(&renewed[..renewed.len() - 4], &bytes[..bytes.len() - 4]);

    // The other servers' shares had other secrets, so they got a new lease beside the old one.
    assert_eq!(h.leases(ShareKind::Immutable, keep, 1).len(), 2);

    // Their 2009 leases are long expired: an expiry pass deletes every share of `expire` and removes
    // the old lease from `keep`'s shares that got a new one.
    let report = server.expire_leases().unwrap();
    assert_eq!(report.deleted_shares, 10);
    assert_eq!(report.expired_leases, 18);
    assert!(
        server
            .list_shares(ShareKind::Immutable, expire)
            .unwrap()
            .is_empty()
    );
    assert_eq!(server.list_shares(ShareKind::Immutable, keep).unwrap(), all);
    let fresh = (h.now_secs() + LEASE_DURATION_SECS) as u32;
    for (_, shnum, bytes) in &files {
        let leases = h.leases(ShareKind::Immutable, keep, *shnum);
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].1, fresh);
        let now_bytes = std::fs::read(h.share_path(keep, *shnum)).unwrap();
        assert_eq!(now_bytes.len(), bytes.len());
        assert_eq!(&now_bytes[..12 + 1410], &bytes[..12 + 1410]);
    }
    assert_eq!(server.status().used_space, h.bytes_on_disk());
}

#[test]
fn reads_tahoe_1_2_mutable_share_files() {
    let Some(json) = tahoe_1_2_vectors() else { return };
    let files = share_files(&json, "mutable_share_files_b64");
    assert_eq!(files.len(), 10);
    // Each server's shares go to their own slot: the write enabler is derived per server.
    let slot_of = |server: u8| si(12 + server);
    let mut h = Harness::new();
    h.stop();
    for (server, shnum, bytes) in &files {
        place(h.root(), slot_of(*server), *shnum, bytes);
    }
    std::fs::remove_dir_all(h.root().join("leases.sled")).unwrap();
    h.start();
    let server = h.server();
    assert_eq!(server.status().mutable_shares, 10);
    for (owner, shnum, bytes) in &files {
        let s = slot_of(*owner);
        assert_eq!(&bytes[0..32], &MAGIC_V1);
        let data_len = be64(bytes, 84);
        assert_eq!(data_len, 2170);
        assert_eq!(
            server.share_length(ShareKind::Mutable, s, *shnum).unwrap(),
            data_len
        );
        assert_eq!(
            server
                .read_share(ShareKind::Mutable, s, *shnum, 0, u64::MAX)
                .unwrap(),
            &bytes[468..468 + data_len as usize]
        );
        // The original lease (owner 1, slot 0) is indexed by the hash of its plaintext renew secret.
        let slot = &bytes[100..192];
        assert_eq!(be32(slot, 0), 1);
        let renew: [u8; 32] = slot[8..40].try_into().unwrap();
        assert!(server.index_entries().iter().any(|k| k.si == s
            && k.shnum == *shnum
            && k.lease_id == hash_secret(&renew)
            && k.expiry == u64::from(be32(slot, 4))));
    }

    // A tests-only read-test-write with the stored write enabler reads every share of the slot; a
    // wrong one is refused.
    let (owner, _, first) = &files[0];
    let s = slot_of(*owner);
    let we: [u8; 32] = first[52..84].try_into().unwrap();
    let reads = [ReadVector { offset: 0, size: 41 }];
    let result = server
        .read_test_write(s, &WriteEnabler(we), &lease(1), &BTreeMap::new(), &reads)
        .unwrap();
    assert!(result.success);
    let held: Vec<&(u8, ShareNum, Vec<u8>)> = files.iter().filter(|(o, _, _)| o == owner).collect();
    assert_eq!(result.data.len(), held.len());
    for (_, shnum, bytes) in &held {
        assert_eq!(result.data[shnum], vec![bytes[468..509].to_vec()]);
    }
    let mut other = we;
    other[0] ^= 1;
    assert!(matches!(
        server.read_test_write(s, &WriteEnabler(other), &lease(1), &BTreeMap::new(), &reads),
        Err(StorageError::WriteEnablerMismatch)
    ));

    // A compare-and-swap on the SDMF checkstring (bytes 0..57) with the real write enabler: the
    // container stays v1 and keeps its recorded node id and its old lease beside the new one.
    let (_, shnum, bytes) = held[0];
    let checkstring = bytes[468..468 + 57].to_vec();
    let mut tw = BTreeMap::new();
    tw.insert(
        *shnum,
        TestWriteVectors {
            test: vec![test_vector(0, 57, &checkstring)],
            ..write_vectors(2170, b"appended")
        },
    );
    let result = server
        .read_test_write(s, &WriteEnabler(we), &lease(1), &tw, &[])
        .unwrap();
    assert!(result.success);
    let after = std::fs::read(h.share_path(s, *shnum)).unwrap();
    assert_eq!(&after[0..84], &bytes[0..84]);
    assert_eq!(&after[468..468 + 2170], &bytes[468..468 + 2170]);
    assert_eq!(&after[468 + 2170..468 + 2178], b"appended");
    assert_eq!(h.leases(ShareKind::Mutable, s, *shnum).len(), 2);
}
