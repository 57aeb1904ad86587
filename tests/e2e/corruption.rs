//! Corrupt shares, found and replaced: for CHK, SDMF and MDMF files (3-of-10 on ten servers) with
//! block data corrupted in 1, 7 and all 10 shares, `verify` names every corrupt share (server,
//! share number, reason) with the right counts while a plain check cannot see them; repair
//! restores health when the file is recoverable and a second repair writes nothing; with every
//! share corrupt, the file is unrecoverable and repair says so. Also: servers without Tessera's
//! removal request (Tahoe's), uploading the same file again over corrupt shares, and the web API's
//! `t=check&verify=true&repair=true&output=JSON`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use filenode::cap::{Cap, FileCap, MutableFormat};
use filenode::grid::Grid;
use filenode::grid::check::CheckReport;
use filenode::node::FileNode;
use serde_json::Value;
use storage::StorageIndex;
use tests::grid::{TestGrid, Transport};

use crate::web::Gateway;

// The check tests' client (3-of-10, happiness 7, 4 KiB segments), data and options.
use crate::check::{PLAIN, VERIFY, client, data};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chk,
    Sdmf,
    Mdmf,
}

/// Makes a file of `kind`; returns its cap and contents.
async fn make_file(alice: &Arc<Grid>, kind: Kind) -> (Cap, Vec<u8>) {
    match kind {
        Kind::Chk => {
            let contents = data(50_000, 1);
            let result = alice
                .upload(std::io::Cursor::new(contents.clone()), None)
                .await
                .unwrap();
            (Cap::File(result.cap), contents)
        }
        Kind::Sdmf | Kind::Mdmf => {
            let (format, contents) = if kind == Kind::Sdmf {
                (MutableFormat::Sdmf, data(20_000, 2))
            } else {
                // Three segments of MDMF's 128 KiB.
                (MutableFormat::Mdmf, data(300_000, 3))
            };
            let cap = alice.create_mutable_file(format, contents.clone()).await.unwrap();
            (Cap::File(FileCap::Mutable(cap)), contents)
        }
    }
}

/// Every share of `si`, one per server on this grid.
fn located(grid: &TestGrid, kind: Kind, si: StorageIndex) -> Vec<(usize, u16)> {
    match kind {
        Kind::Chk => grid.find_shares(si),
        Kind::Sdmf | Kind::Mdmf => grid.find_mutable_shares(si),
    }
}

/// Flips a bit of the block data of a share (`which` varies the spot: a block's bytes, or an MDMF
/// segment's salt, which its block's hash covers).
fn corrupt_block(grid: &TestGrid, kind: Kind, server: usize, si: StorageIndex, shnum: u16, which: usize) {
    let share = grid.share_data(server, si, shnum);
    let offset = match kind {
        Kind::Chk => {
            filenode::immutable::layout::ShareOffsets::parse(&share)
                .unwrap()
                .data
                + 5
        }
        Kind::Sdmf => {
            filenode::mutable::layout::ShareHeader::parse(&share)
                .unwrap()
                .offsets
                .share_data
                + 5
        }
        Kind::Mdmf => {
            let data = filenode::mutable::layout::ShareHeader::parse(&share)
                .unwrap()
                .offsets
                .share_data;
            // Segment 0's salt (16 bytes), then its block.
            if which.is_multiple_of(2) {
                data + 16 + 5
            } else {
                data + 3
            }
        }
    };
    grid.corrupt_share_data(server, si, shnum, offset);
}

/// Reads the whole file.
async fn read(alice: &Arc<Grid>, cap: &Cap) -> Result<Vec<u8>, String> {
    match cap {
        Cap::File(FileCap::Chk(chk)) => {
            let reader = alice.open_chk(*chk).await.map_err(|e| e.to_string())?;
            reader.read_to_vec(0, chk.size).await.map_err(|e| e.to_string())
        }
        Cap::File(file) => FileNode::new(alice, file.clone())
            .read_all()
            .await
            .map_err(|e| e.to_string()),
        _ => panic!("not a file"),
    }
}

/// Every share file's bytes on every server.
fn snapshot(grid: &TestGrid) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &std::path::Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    for server in &grid.servers {
        walk(&server.dir.join("shares"), &mut out);
    }
    out
}

fn corrupt_set(report: &CheckReport) -> BTreeSet<(String, u16)> {
    report
        .corrupt
        .iter()
        .map(|c| (c.server_id.clone(), c.shnum))
        .collect()
}

/// The whole scenario for one kind of file and one number of corrupt shares.
async fn corrupt_verify_repair(kind: Kind, count: usize, transport: Transport) {
    let grid = TestGrid::build(10, transport).await;
    let alice = client(&grid);
    let (cap, contents) = make_file(&alice, kind).await;
    let si = cap.storage_index().unwrap();
    let shares = located(&grid, kind, si);
    assert_eq!(shares.len(), 10, "{kind:?}: one share per server");
    let ids: Vec<String> = grid.entries().into_iter().map(|e| e.server_id).collect();
    let mut bad = BTreeSet::new();
    for (i, (server, shnum)) in shares.iter().take(count).enumerate() {
        corrupt_block(&grid, kind, *server, si, *shnum, i);
        bad.insert((ids[*server].clone(), *shnum));
    }
    let what = format!("{kind:?} with {count} of 10 shares corrupt");

    // A plain check only asks where the shares are (and checks mutable headers): it cannot see it.
    let plain = alice.check(&cap, PLAIN).await.unwrap();
    assert!(plain.healthy && plain.corrupt.is_empty(), "{what}: {plain:?}");

    // Verify names every corrupt share, with its server and reason; the counts follow.
    let report = alice.check(&cap, VERIFY).await.unwrap();
    assert_eq!(corrupt_set(&report), bad, "{what}: {report:?}");
    for share in &report.corrupt {
        assert!(share.shnum < 10, "{what}: no invented share numbers: {share:?}");
        assert!(share.reason.contains("block"), "{what}: {share:?}");
    }
    assert_eq!(report.good_shares, 10 - count, "{what}");
    assert_eq!((report.needed, report.expected), (3, 10));
    assert!(report.unreadable.is_empty(), "{what}: {report:?}");
    let recoverable = count <= 7;
    assert_eq!(report.recoverable, recoverable, "{what}: {report:?}");
    assert!(!report.healthy, "{what}");
    if kind != Kind::Chk {
        assert_eq!(
            (report.recoverable_versions, report.unrecoverable_versions),
            if recoverable { (1, 0) } else { (0, 1) },
            "{what}"
        );
        assert!(
            report.summary().contains("Corrupt Shares:"),
            "{}",
            report.summary()
        );
    }
    for (server_id, shnum) in &bad {
        assert!(
            !report.sharemap.get(shnum).is_some_and(|h| h.contains(server_id)),
            "{what}"
        );
    }
    // What a download sees agrees.
    match read(&alice, &cap).await {
        Ok(read) => {
            assert!(recoverable, "{what}: read although verify says unrecoverable");
            assert_eq!(read, contents, "{what}");
        }
        Err(e) => assert!(!recoverable, "{what}: read failed although recoverable: {e}"),
    }

    let repaired = alice.check_and_repair(&cap, VERIFY).await.unwrap();
    assert!(repaired.attempted, "{what}");
    if !recoverable {
        assert!(!repaired.successful, "{what}");
        let problem = repaired.problem.unwrap();
        assert!(
            problem.contains("not recoverable") && problem.contains("10 shares are corrupt"),
            "{what}: {problem}"
        );
        assert!(!repaired.post.recoverable);
        return;
    }
    assert!(repaired.successful, "{what}: {repaired:?}");
    assert!(repaired.post.healthy, "{what}: {:?}", repaired.post);
    assert_eq!(repaired.post.good_shares, 10, "{what}");
    assert!(repaired.post.corrupt.is_empty(), "{what}: {:?}", repaired.post);
    assert_eq!(read(&alice, &cap).await.unwrap(), contents, "{what}");
    if kind == Kind::Chk {
        // Each server removed its corrupt share (its own check proved it) and took the good copy:
        // one share per server again, and the removal is on record.
        let now = grid.find_shares(si);
        assert_eq!(now.len(), 10, "{what}: {now:?}");
        assert_eq!(now.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>().len(), 10);
        let (server, _) = shares[0];
        let records = grid.servers[server].server.corruption_advisories().unwrap();
        assert!(
            records
                .iter()
                .any(|r| r.reason.starts_with("removed by this server")),
            "{what}: {records:?}"
        );
    }

    // A second repair finds the file healthy and writes nothing at all.
    let before = snapshot(&grid);
    let again = alice.check_and_repair(&cap, VERIFY).await.unwrap();
    assert!(!again.attempted && again.pre.healthy, "{what}: {again:?}");
    assert!(
        snapshot(&grid) == before,
        "{what}: a second repair changed share files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chk_corrupt_shares_are_named_and_replaced() {
    for count in [1, 7, 10] {
        corrupt_verify_repair(Kind::Chk, count, Transport::InProcess).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chk_corrupt_shares_are_replaced_over_https() {
    // Through the HTTPS protocol, removal request included.
    corrupt_verify_repair(Kind::Chk, 7, Transport::Https).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdmf_corrupt_shares_are_named_and_replaced() {
    for count in [1, 7, 10] {
        corrupt_verify_repair(Kind::Sdmf, count, Transport::InProcess).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdmf_corrupt_shares_are_named_and_replaced() {
    for count in [1, 7, 10] {
        corrupt_verify_repair(Kind::Mdmf, count, Transport::InProcess).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_shares_with_bad_signatures_or_keys_are_named() {
    let grid = TestGrid::new(10);
    let alice = client(&grid);
    for kind in [Kind::Sdmf, Kind::Mdmf] {
        let (cap, _) = make_file(&alice, kind).await;
        let si = cap.storage_index().unwrap();
        let shares = located(&grid, kind, si);
        // One share with a flipped signature byte, one with a flipped block-tree node, one with a
        // flipped signing-key byte (only a write cap can tell).
        let mut spots = Vec::new();
        for (i, (server, shnum)) in shares.iter().take(3).enumerate() {
            let share = grid.share_data(*server, si, *shnum);
            let o = filenode::mutable::layout::ShareHeader::parse(&share)
                .unwrap()
                .offsets;
            let offset = [o.signature + 7, o.block_hash_tree + 3, o.enc_privkey + 9][i];
            grid.corrupt_share_data(*server, si, *shnum, offset);
            spots.push(*shnum);
        }
        let report = alice.check(&cap, VERIFY).await.unwrap();
        let reasons: BTreeMap<u16, String> = report
            .corrupt
            .iter()
            .map(|c| (c.shnum, c.reason.clone()))
            .collect();
        assert_eq!(reasons.len(), 3, "{kind:?}: {report:?}");
        assert!(reasons[&spots[0]].contains("signature"), "{reasons:?}");
        // (An SDMF share's block tree is its one leaf, which the share hash chain covers.)
        assert!(
            reasons[&spots[1]].contains("block hash tree") || reasons[&spots[1]].contains("share hash chain"),
            "{reasons:?}"
        );
        assert!(reasons[&spots[2]].contains("signing key"), "{reasons:?}");
        assert_eq!(report.good_shares, 7);
        // A read-only cap cannot check the signing key: that share is good to it.
        let readonly = alice.check(&cap.readonly().unwrap(), VERIFY).await.unwrap();
        assert_eq!(readonly.corrupt.len(), 2, "{kind:?}: {readonly:?}");
        // The verify cap checks the rest as well.
        let verifier = alice.check(&cap.verifier().unwrap(), VERIFY).await.unwrap();
        assert_eq!(verifier.corrupt.len(), 2, "{kind:?}: {verifier:?}");
        // Repair with the write cap rewrites them all.
        let repaired = alice.check_and_repair(&cap, VERIFY).await.unwrap();
        assert!(repaired.successful, "{kind:?}: {repaired:?}");
        assert!(repaired.post.corrupt.is_empty() && repaired.post.good_shares == 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_without_the_removal_request_get_their_copy_elsewhere() {
    // Every server answers Tessera's removal request as Tahoe's does (404): the corrupt share stays
    // where it is, its good copy goes to another server, and the file is healthy.
    let grid = TestGrid::new(10);
    for i in 0..10 {
        grid.make_tahoe_like(i);
    }
    let alice = client(&grid);
    let (cap, contents) = make_file(&alice, Kind::Chk).await;
    let si = cap.storage_index().unwrap();
    let shares = located(&grid, Kind::Chk, si);
    let (server, shnum) = shares[0];
    corrupt_block(&grid, Kind::Chk, server, si, shnum, 0);
    let repaired = alice.check_and_repair(&cap, VERIFY).await.unwrap();
    assert!(repaired.attempted && repaired.successful, "{repaired:?}");
    let post = &repaired.post;
    assert!(post.healthy && post.good_shares == 10, "{post:?}");
    // The corrupt copy is still there (and still named); the good one lives on another server.
    assert_eq!(post.corrupt.len(), 1);
    assert_eq!(post.corrupt[0].shnum, shnum);
    let holders = &post.sharemap[&shnum];
    assert_eq!(holders.len(), 1);
    assert_ne!(holders[0], grid.entries()[server].server_id);
    assert_eq!(read(&alice, &cap).await.unwrap(), contents);
    // A second repair: nothing to do.
    let before = snapshot(&grid);
    let again = alice.check_and_repair(&cap, VERIFY).await.unwrap();
    assert!(!again.attempted, "{again:?}");
    assert!(snapshot(&grid) == before);
    // Mutable files need no extension: their shares are overwritten with the write enabler.
    let (cap, contents) = make_file(&alice, Kind::Mdmf).await;
    let si = cap.storage_index().unwrap();
    for (i, (server, shnum)) in located(&grid, Kind::Mdmf, si).into_iter().take(7).enumerate() {
        corrupt_block(&grid, Kind::Mdmf, server, si, shnum, i);
    }
    let repaired = alice.check_and_repair(&cap, VERIFY).await.unwrap();
    assert!(
        repaired.successful && repaired.post.corrupt.is_empty(),
        "{repaired:?}"
    );
    assert_eq!(read(&alice, &cap).await.unwrap(), contents);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_again_over_corrupt_shares_leaves_a_readable_file() {
    // The same file uploaded again finds its shares already there; it counts them only once they
    // verify, so seven corrupt ones are replaced (on our servers in place, on servers without the
    // removal request elsewhere) and the file reads.
    for tahoe_like in [false, true] {
        let grid = TestGrid::new(10);
        if tahoe_like {
            for i in 0..10 {
                grid.make_tahoe_like(i);
            }
        }
        let alice = client(&grid);
        let (cap, contents) = make_file(&alice, Kind::Chk).await;
        let si = cap.storage_index().unwrap();
        for (i, (server, shnum)) in located(&grid, Kind::Chk, si).into_iter().take(7).enumerate() {
            corrupt_block(&grid, Kind::Chk, server, si, shnum, i);
        }
        let again = alice
            .upload(std::io::Cursor::new(contents.clone()), None)
            .await
            .unwrap();
        assert_eq!(Cap::File(again.cap), cap);
        let report = alice.check(&cap, VERIFY).await.unwrap();
        assert_eq!(report.good_shares, 10, "tahoe-like {tahoe_like}: {report:?}");
        assert!(report.healthy, "tahoe-like {tahoe_like}: {report:?}");
        assert_eq!(report.corrupt.len(), if tahoe_like { 7 } else { 0 });
        assert_eq!(read(&alice, &cap).await.unwrap(), contents);
        // And once more: every share verifies now, nothing is written.
        let before = snapshot(&grid);
        alice
            .upload(std::io::Cursor::new(contents.clone()), None)
            .await
            .unwrap();
        let after = snapshot(&grid);
        let changed: Vec<&PathBuf> = after
            .iter()
            .filter(|(path, bytes)| before.get(*path) != Some(*bytes))
            .map(|(path, _)| path)
            .collect();
        // Only lease renewals (the allocation renews the uploader's lease, as Tahoe's does) may
        // touch a share file; no share is added.
        assert_eq!(after.len(), before.len(), "{changed:?}");
    }
}

async fn post_json(gw: &Gateway, uri: &str) -> Value {
    let request = Request::post(uri).body(Body::empty()).unwrap();
    let (status, _, body) = gw.send(request).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(status.is_success(), "{uri}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {text}"))
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_api_verifies_and_repairs_corrupt_shares() {
    let gw = Gateway::new();
    for format in ["", "?format=MDMF", "?format=SDMF"] {
        let kind = match format {
            "" => Kind::Chk,
            "?format=MDMF" => Kind::Mdmf,
            _ => Kind::Sdmf,
        };
        let contents = data(40_000, 9);
        let request = Request::put(format!("/uri{format}"))
            .body(Body::from(contents.clone()))
            .unwrap();
        let (status, _, body) = gw.send(request).await;
        assert!(status.is_success(), "{status}");
        let cap_text = String::from_utf8(body).unwrap();
        let cap = Cap::parse(&cap_text).unwrap();
        let si = cap.storage_index().unwrap();
        let shares = located(&gw.grid, kind, si);
        let mut bad = BTreeSet::new();
        for (i, (server, shnum)) in shares.iter().take(2).enumerate() {
            corrupt_block(&gw.grid, kind, *server, si, *shnum, i);
            bad.insert((*shnum, gw.grid.entries()[*server].server_id.clone()));
        }
        let object = format!("/uri/{}", enc(&cap_text));

        // t=check&verify=true&output=JSON: Tahoe's shape, plus the reasons.
        let checked = post_json(&gw, &format!("{object}?t=check&verify=true&output=JSON")).await;
        let results = &checked["results"];
        assert_eq!(results["healthy"], false, "{kind:?}: {checked}");
        assert_eq!(results["recoverable"], true);
        assert_eq!(results["count-shares-good"], 8);
        assert_eq!(results["count-corrupt-shares"], 2);
        let listed: BTreeSet<(u16, String)> = results["list-corrupt-shares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                assert_eq!(entry.as_array().unwrap().len(), 3, "Tahoe's triple: {entry}");
                assert_eq!(entry[1], si.to_string());
                (
                    entry[2].as_u64().unwrap() as u16,
                    entry[0].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(listed, bad, "{kind:?}: {checked}");
        let reasons = results["list-corrupt-share-reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), 2, "{checked}");
        assert!(
            reasons.iter().all(|r| r[3].as_str().unwrap().contains("block")),
            "{checked}"
        );

        // t=check&verify=true&repair=true&output=JSON: repaired, healthy after.
        let repaired = post_json(
            &gw,
            &format!("{object}?t=check&verify=true&repair=true&output=JSON"),
        )
        .await;
        assert_eq!(repaired["repair-attempted"], true, "{kind:?}: {repaired}");
        assert_eq!(repaired["repair-successful"], true, "{kind:?}: {repaired}");
        assert_eq!(
            repaired["pre-repair-results"]["results"]["count-corrupt-shares"],
            2
        );
        let post = &repaired["post-repair-results"]["results"];
        assert_eq!(post["healthy"], true, "{repaired}");
        assert_eq!(post["count-shares-good"], 10);
        assert_eq!(post["count-corrupt-shares"], 0);
        let again = post_json(
            &gw,
            &format!("{object}?t=check&verify=true&repair=true&output=JSON"),
        )
        .await;
        assert_eq!(again["repair-attempted"], false, "{again}");
        let (_, _, body) = gw.get(&object, &[]).await;
        assert_eq!(body, contents);
    }
}
