//! Corruption advisories: a report file per advice, only for shares that are held.

use std::time::SystemTime;

use super::*;
use crate::server::CorruptionAdvisory;

#[test]
fn advice_about_a_held_share_is_recorded() {
    let h = Harness::new();
    let server = h.server();
    upload(server, si(1), 2, b"data", 1);
    assert!(
        rtw(server, si(2), 1, 1, 0, write_vectors(0, b"m"), &[])
            .unwrap()
            .success
    );
    server
        .advise_corrupt_share(ShareKind::Immutable, si(1), 2, "block hash mismatch in segment 0")
        .unwrap();
    h.clock.advance(Duration::from_micros(1_500));
    server
        .advise_corrupt_share(ShareKind::Mutable, si(2), 0, "bad signature")
        .unwrap();

    let dir = h.root().join("corruption-advisories");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("2023-11-14T221320.000000--{}-2", si(1)),
            format!("2023-11-14T221320.001500--{}-0", si(2)),
        ]
    );
    let text = std::fs::read_to_string(dir.join(&names[0])).unwrap();
    assert_eq!(
        text,
        format!(
            "report: Share Corruption\ntype: immutable\nstorage_index: {}\nshare_number: 2\n\nblock hash mismatch in segment 0\n",
            si(1)
        )
    );
    let advisories = server.corruption_advisories().unwrap();
    assert_eq!(
        advisories,
        vec![
            CorruptionAdvisory {
                time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                kind: ShareKind::Immutable,
                storage_index: si(1),
                shnum: 2,
                reason: "block hash mismatch in segment 0".to_owned(),
            },
            CorruptionAdvisory {
                time: SystemTime::UNIX_EPOCH
                    + Duration::from_secs(1_700_000_000)
                    + Duration::from_micros(1_500),
                kind: ShareKind::Mutable,
                storage_index: si(2),
                shnum: 0,
                reason: "bad signature".to_owned(),
            },
        ]
    );
    // Nothing is deleted.
    assert_eq!(
        server.read_share(ShareKind::Immutable, si(1), 2, 0, 10).unwrap(),
        b"data"
    );
}

#[test]
fn advice_about_an_absent_share_is_refused() {
    let h = Harness::new();
    let server = h.server();
    upload(server, si(1), 2, b"data", 1);
    for (kind, s, shnum) in [
        (ShareKind::Immutable, si(1), 3),
        (ShareKind::Mutable, si(1), 2),
        (ShareKind::Immutable, si(9), 0),
    ] {
        assert!(matches!(
            server.advise_corrupt_share(kind, s, shnum, "x"),
            Err(StorageError::NotFound(_))
        ));
    }
    assert!(server.corruption_advisories().unwrap().is_empty());
    assert!(!h.root().join("corruption-advisories").exists());
}
