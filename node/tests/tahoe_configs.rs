//! `tahoe.cfg` files made by the real Tahoe-LAFS 1.20 (`tahoe create-node`, `create-client`,
//! `create-introducer`, with and without `--hide-ip`) under `tessera run`: each configuration is
//! either accepted or refused with a message naming the file, the line, the key and why. A private
//! one (`--hide-ip`) is always refused, never run with its privacy setting dropped.
//!
//! Tahoe's node directories lack the key files Tessera's `create-node` writes (`private/node.pem` is
//! made by Tahoe's first start), so an accepted configuration stops there, with a message about
//! that file, not about `tahoe.cfg`. Skipped (with a note) without Tahoe: `$TAHOE`, or the
//! virtualenv `tests/interop/tahoe.sh` makes.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::path::PathBuf;
use std::process::Command;

fn tahoe() -> Option<PathBuf> {
    let tmp = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let candidates = match std::env::var_os("TAHOE") {
        Some(tahoe) => vec![PathBuf::from(tahoe)],
        None => vec![
            PathBuf::from("/opt/tahoe-venv/bin/tahoe"),
            tmp.join("tessera-tahoe-venv/bin/tahoe"),
        ],
    };
    let found = candidates.iter().find(|c| c.exists()).cloned();
    if found.is_none() {
        eprintln!("SKIP: no Tahoe-LAFS at {candidates:?} (set TAHOE; .ci/run installs it)");
    }
    found
}

#[test]
fn tahoe_made_configurations_run_or_are_refused_by_name() {
    let Some(tahoe) = tahoe() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let web = ["--webport", "tcp:0:interface=127.0.0.1"];
    let cases: Vec<(&str, Vec<&str>, bool)> = vec![
        (
            "node",
            vec!["create-node", "--hostname", "127.0.0.1", web[0], web[1]],
            false,
        ),
        ("client", vec!["create-client", web[0], web[1]], false),
        (
            "introducer",
            vec!["create-introducer", "--hostname", "127.0.0.1"],
            false,
        ),
        (
            "private-client",
            vec!["create-client", "--hide-ip", web[0], web[1]],
            true,
        ),
        (
            "private-introducer",
            vec!["create-introducer", "--hide-ip", "--listen", "none"],
            true,
        ),
        (
            "private-node",
            vec!["create-node", "--hide-ip", "--listen", "none", web[0], web[1]],
            true,
        ),
    ];
    let mut refused = 0;
    for (name, args, private) in cases {
        let dir = scratch.path().join(name);
        let out = Command::new(&tahoe).args(&args).arg(&dir).output().unwrap();
        if !out.status.success() {
            // Tahoe itself refuses some combinations (e.g. an introducer with no listener).
            eprintln!(
                "tahoe {args:?} refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            continue;
        }
        let cfg = dir.join("tahoe.cfg");
        let config = std::fs::read_to_string(&cfg).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("run")
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: Tahoe's node directory has no Tessera keys"
        );
        if private {
            assert!(
                stderr.contains(&format!("{}, line ", cfg.display()))
                    && stderr.contains("[node] reveal-IP-address = false needs Tor or I2P, which Tessera does not support: remove the key to connect directly"),
                "{name} ({args:?}):\n{config}\n{stderr}"
            );
            refused += 1;
        } else {
            assert!(
                !stderr.contains("tahoe.cfg"),
                "{name}: Tahoe's defaults are accepted:\n{config}\n{stderr}"
            );
            assert!(stderr.contains("private/"), "{name}: {stderr}");
        }
    }
    assert!(refused >= 1, "no --hide-ip configuration was tried");
}
