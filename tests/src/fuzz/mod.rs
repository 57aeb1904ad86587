//! Fuzz targets for every parser that takes bytes from another party, in one place for both
//! runners: the stable runner ([`runner`], `tests/fuzz/main.rs`, part of `cargo test`) and
//! cargo-fuzz (`fuzz/fuzz_targets/*.rs`, nightly, coverage-guided), which call the same bodies.
//!
//! Each body takes arbitrary bytes, must never panic, and asserts what must hold whatever the
//! bytes: a parse that succeeds re-serializes to bytes that parse to the same value, genuine inputs
//! are accepted, resolved paths never climb above their root, servers never answer 500 and never
//! echo a secret. Structured targets (the routers, the FTP session) read their requests from the
//! bytes through `arbitrary`, so mutations of the bytes are mutations of the requests.
//!
//! `tahoe.cfg`, `servers.yaml` and announcements are parsed by the `tessera` binary (node has no
//! library target), so their targets are unit tests in `node/src/fuzz.rs`, run by the same runner.

mod http;
pub mod runner;

use std::sync::Arc;

use filenode::cap::{Cap, MutableCap};
use filenode::dirnode::{self, DirEntry};
use filenode::immutable::MemoryShare;
use filenode::immutable::layout::{ShareOffsets, UriExtension};
use filenode::mutable::layout::{MutableShare, ShareHeader as MutableShareHeader, parse_chain, parse_hashes};

pub use http::{ftp_session, storage_http, web};

/// A fuzz target: a name (its corpus is `fuzz/corpus/NAME/`), its body, how many mutated inputs
/// the stable runner's default tier runs, and the longest input it makes.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The target's name (also the cargo-fuzz target's).
    pub name: &'static str,
    /// Runs one input.
    pub body: fn(&[u8]),
    /// Mutated inputs in the default tier.
    pub runs: u64,
    /// The longest input the stable runner makes.
    pub max_len: usize,
}

/// Every target of this crate (node's are in `node/src/fuzz.rs`).
pub const TARGETS: &[Target] = &[
    Target {
        name: "cap",
        body: cap,
        runs: 20_000,
        max_len: 512,
    },
    Target {
        name: "ueb",
        body: ueb,
        runs: 20_000,
        max_len: 2048,
    },
    Target {
        name: "chk_share",
        body: chk_share,
        runs: 3_000,
        max_len: 8192,
    },
    Target {
        name: "mutable_share",
        body: mutable_share,
        runs: 1_000,
        max_len: 8192,
    },
    Target {
        name: "dirnode",
        body: dirnode,
        runs: 5_000,
        max_len: 8192,
    },
    Target {
        name: "share_container",
        body: share_container,
        runs: 2_000,
        max_len: 4096,
    },
    Target {
        name: "nurl",
        body: nurl,
        runs: 20_000,
        max_len: 512,
    },
    Target {
        name: "storage_wire",
        body: storage_wire,
        runs: 20_000,
        max_len: 2048,
    },
    Target {
        name: "storage_http",
        body: storage_http,
        runs: 3_000,
        max_len: 4096,
    },
    Target {
        name: "web_range",
        body: web_range,
        runs: 20_000,
        max_len: 512,
    },
    Target {
        name: "web",
        body: web,
        runs: 1_000,
        max_len: 8192,
    },
    Target {
        name: "sftp_packet",
        body: sftp_packet,
        runs: 20_000,
        max_len: 4096,
    },
    Target {
        name: "ftp_path",
        body: ftp_path,
        runs: 20_000,
        max_len: 1024,
    },
    Target {
        name: "fs_path",
        body: fs_path,
        runs: 20_000,
        max_len: 1024,
    },
    Target {
        name: "ftp_session",
        body: ftp_session,
        // Each run is a real session with a reply awaited per line: about 0.2 s.
        runs: 150,
        max_len: 2048,
    },
    Target {
        name: "accounts",
        body: accounts,
        runs: 3_000,
        max_len: 4096,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Runs a future to completion on the calling thread (for the pure async readers of shares).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// Cap strings: `Cap::parse` either refuses or gives a cap whose text parses to the same cap, and
/// whose read-only and verify caps parse too; `parse_lenient` takes anything.
pub fn cap(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Cap::parse_lenient(text);
    let Ok(cap) = Cap::parse(text) else {
        return;
    };
    let again = Cap::parse(&cap.to_string()).expect("a parsed cap's text parses");
    assert!(again == cap, "a cap's text parses to another cap");
    for derived in [cap.readonly(), cap.verifier()].into_iter().flatten() {
        assert!(Cap::parse(&derived.to_string()).is_ok_and(|c| c == derived));
        assert!(derived.is_readonly());
    }
    let _ = (
        cap.storage_index(),
        cap.kind(),
        cap.is_mutable(),
        format!("{cap:?}"),
    );
}

/// URI extension blocks: a parsed UEB serializes to bytes that parse to the same UEB.
pub fn ueb(data: &[u8]) {
    if let Ok(ueb) = UriExtension::parse(data) {
        assert_eq!(UriExtension::parse(&ueb.to_bytes()), Ok(ueb));
    }
}

/// The file whose share 0..9 the `chk_share` seeds are (Tahoe 1.20's golden shares: 1024 bytes,
/// 3-of-10).
pub const CHK_CAP: &str =
    "URI:CHK:dx7tvyr2fc4u7lxjc6kehq2svq:tiy4qh2g6lqejxcaym3rr7ymkdkinn4qised6kgxloj7sptsqu4a:3:10:1024";

/// Immutable share data (first byte: the share number, modulo 10; then the share): the header is
/// parsed, and the whole share verified against [`CHK_CAP`] (header, UEB against the cap, block
/// tree, share hash chain, every block), as `verify` and the download's validation do.
pub fn chk_share(data: &[u8]) {
    let Some((&shnum, share)) = data.split_first() else {
        return;
    };
    let _ = ShareOffsets::parse(share);
    let Ok(Cap::File(filenode::cap::FileCap::Chk(cap))) = Cap::parse(CHK_CAP) else {
        unreachable!("CHK_CAP is a CHK cap");
    };
    let source = Arc::new(MemoryShare {
        shnum: u16::from(shnum % 10),
        data: Arc::new(share.to_vec()),
    });
    let _ = block_on(filenode::immutable::verify_share(&cap, source));
}

/// The caps of the `mutable_share` seeds (Tahoe 1.20's golden SDMF and MDMF shares).
pub const SDMF_CAP: &str =
    "URI:SSK-RO:65ruo2zytr3uxnaxkptdoqkth4:hncpinwszbggrurbvuaaexnftk3j5wfr7473pj2g734mo2isxlbq";
pub const MDMF_CAP: &str =
    "URI:MDMF-RO:ttnh3ep5nzw4caqoalpk65peba:wcqgst36kymoirczlkok5pqdekt5lgsyfw3oh7ecoro3rj5aiyya";

fn mutable_cap(text: &str) -> Option<MutableCap> {
    match Cap::parse(text) {
        Ok(Cap::File(filenode::cap::FileCap::Mutable(cap))) => Some(cap),
        _ => None,
    }
}

/// Mutable share data (first byte: the share number, modulo 10; then the share, SDMF or MDMF by
/// its first byte), read as the client reads shares from servers: the header parsed and its
/// signature checked against the golden file's fingerprint (the servermap's work), the share hash
/// chain and block hash tree parsed from where the header says they lie (retrieve's next
/// reads); and the whole share parsed and verified (key, signature, block and share hash trees).
pub fn mutable_share(data: &[u8]) {
    let Some((&shnum, share)) = data.split_first() else {
        return;
    };
    let shnum = usize::from(shnum % 10);
    let text = if share.first() == Some(&0) {
        SDMF_CAP
    } else {
        MDMF_CAP
    };
    let cap = mutable_cap(text).expect("the golden read caps parse");
    if let Ok(header) = MutableShareHeader::parse(share) {
        let _ = (header.version(), header.fixed_region_end());
        let _ = header.verify_signature(share, &cap.fingerprint);
        let o = header.offsets;
        let region =
            |start: u64, end: u64| share.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?);
        if let Some(chain) = region(o.share_hash_chain, o.share_hash_chain_end) {
            let _ = parse_chain(chain);
        }
        let tree_end = match header.format {
            filenode::cap::MutableFormat::Sdmf => o.share_data,
            filenode::cap::MutableFormat::Mdmf => o.eof,
        };
        if let Some(tree) = region(o.block_hash_tree, tree_end) {
            let _ = parse_hashes(tree);
        }
    }
    let Ok(parsed) = MutableShare::parse(share) else {
        return;
    };
    let _ = parsed.verify(shnum, &cap.fingerprint);
}

/// The write key the `dirnode` target decrypts children's write caps with.
pub const DIRNODE_WRITEKEY: [u8; 16] = *b"fuzz dir writkey";

/// Packed directories (tahoe-formats.md §7), read-only and with a write key: a directory that
/// unpacks packs to one that unpacks to the same children (sorted by name, `ro.` dropped as
/// packing does), and each child's caps and metadata are read as `DirNode` reads them.
pub fn dirnode(data: &[u8]) {
    for writekey in [None, Some(&DIRNODE_WRITEKEY)] {
        let Ok(entries) = dirnode::unpack(data, writekey) else {
            continue;
        };
        for entry in &entries {
            for text in std::iter::once(&entry.ro_uri).chain(&entry.rw_uri) {
                let _ = Cap::parse_lenient(text);
            }
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&entry.metadata_json) {
                let value = serde_json::Value::Object(map);
                let text = filenode::node::python_json(&value);
                let again: serde_json::Value = serde_json::from_str(&text).expect("python_json writes JSON");
                assert_eq!(again, value, "python_json changes the metadata");
            }
        }
        let packed = dirnode::pack(&entries, writekey);
        let again = dirnode::unpack(&packed, writekey).expect("a packed directory unpacks");
        let mut expected: Vec<DirEntry> = entries
            .into_iter()
            .map(|mut e| {
                e.ro_uri = e
                    .ro_uri
                    .strip_prefix("ro.")
                    .unwrap_or(&e.ro_uri)
                    .trim_end_matches(' ')
                    .to_owned();
                e
            })
            .collect();
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert!(again == expected, "pack then unpack changes a directory");
    }
}

/// Storage share containers on disk (Tahoe's immutable v1/v2 and mutable containers, as a server
/// operator may copy them in): the bytes become share 0 of a storage index on a real
/// `StorageServer`, which lists, measures, reads (whole and at an offset taken from the input) and
/// renews its lease.
pub fn share_container(data: &[u8]) {
    http::share_container(data);
}

/// NURLs (from announcements and `servers.yaml`): one that parses prints as text that parses to
/// the same NURL.
pub fn nurl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(nurl) = text.parse::<storage::nurl::Nurl>() {
        let again: storage::nurl::Nurl = nurl.to_string().parse().expect("a NURL's text parses");
        assert!(again == nurl, "a NURL's text parses to another NURL");
    }
}

/// The storage protocol's CBOR bodies and range headers, decoded directly: requests as the server
/// reads them, responses as the client reads them (round trips checked in
/// `storage::http::fuzzing`). The router target sends them through the real server too.
pub fn storage_wire(data: &[u8]) {
    storage::http::fuzzing::server_inputs(data);
    storage::http::fuzzing::client_inputs(data);
}

/// The web gateway's `Range`/`If-Range` handling (first 8 bytes: the file size; then the header,
/// a newline and optionally an `If-Range`): every range served lies within the file.
pub fn web_range(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (size, rest) = data.split_at(8);
    let size = u64::from_be_bytes(size.try_into().expect("8 bytes")) % (1 << 40);
    let (range, if_range) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let _ = frontends::web::fuzzing::ranges(range, if_range, size, Some("\"tag\""));
}

/// SFTP packets as the session decodes them (russh-sftp), with every path in them resolved.
pub fn sftp_packet(data: &[u8]) {
    frontends::sftp::fuzzing::packet(data);
    if let Ok(text) = std::str::from_utf8(data) {
        frontends::sftp::fuzzing::path_text(text);
    }
}

/// FTP paths as the backend parses them (libunftp parses the command line; `ftp_session` sends
/// whole command lines to a real server).
pub fn ftp_path(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        frontends::ftp::fuzzing::path(text);
    }
}

/// Paths as the file-system layer parses them (`filenode::fs::FsPath`, WebDAV's paths): what
/// parses has only usable names, and its text parses to the same path again.
pub fn fs_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = filenode::fs::FsPath::parse(text) else {
        return;
    };
    for name in path.names() {
        assert!(!name.is_empty() && name != "." && name != "..", "{name:?}");
        assert!(!name.contains(['/', '\0']), "{name:?}");
    }
    assert_eq!(
        filenode::fs::FsPath::parse(&path.to_text()).ok().as_ref(),
        Some(&path)
    );
}

/// Accounts files: every line is an account or an error naming its line.
pub fn accounts(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let accounts = frontends::accounts::Accounts::parse(text, "accounts");
    let lines = text.lines().count();
    assert!(accounts.len() + accounts.errors.len() <= lines);
    assert!(accounts.errors.iter().all(|e| e.line >= 1 && e.line <= lines));
}
