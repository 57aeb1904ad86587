//! The `tessera` binary, run as users run it. (These live beside the binary because Cargo only tells
//! a package's own integration tests where its binaries are.)

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::io::Write;
use std::process::{Command, Stdio};

const GOLDEN_1024: &str =
    "URI:CHK:dx7tvyr2fc4u7lxjc6kehq2svq:tiy4qh2g6lqejxcaym3rr7ymkdkinn4qised6kgxloj7sptsqu4a:3:10:1024";

fn tessera(args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        // The command may refuse its arguments and exit before reading standard input.
        match input.write_all(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn secret_a16() -> String {
    storage::base32::encode(b"aaaaaaaaaaaaaaaa")
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file
}

#[test]
fn chk_cap_matches_tahoe_for_a_file_and_for_stdin() {
    let file = write_temp(&[b'a'; 1024]);
    let path = file.path().to_str().unwrap();
    let secret = secret_a16();
    let (ok, out, err) = tessera(
        &[
            "debug",
            "chk-cap",
            "--convergence-secret",
            &secret,
            "--max-segment-size",
            "131072",
            path,
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), GOLDEN_1024);
    // A 1024-byte file has one 1026-byte segment under the 1 MiB default too, so the cap is the same.
    let (ok, out, err) = tessera(
        &["debug", "chk-cap", "--convergence-secret", &secret, "-"],
        Some(&[b'a'; 1024]),
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), GOLDEN_1024);
    // Different k/N give a different cap with those numbers in it.
    let (ok, out, _) = tessera(
        &[
            "debug",
            "chk-cap",
            "--convergence-secret",
            &secret,
            "--needed",
            "2",
            "--total",
            "5",
            path,
        ],
        None,
    );
    assert!(ok);
    assert!(out.trim().ends_with(":2:5:1024"), "{out}");
}

#[test]
fn chk_cap_without_a_secret_uses_a_random_key() {
    let file = write_temp(&[7u8; 5000]);
    let path = file.path().to_str().unwrap();
    let (ok1, first, _) = tessera(&["debug", "chk-cap", path], None);
    let (ok2, second, _) = tessera(&["debug", "chk-cap", path], None);
    assert!(ok1 && ok2);
    assert!(
        first.starts_with("URI:CHK:") && first.trim().ends_with(":3:10:5000"),
        "{first}"
    );
    assert_ne!(first, second);
}

#[test]
fn small_files_get_lit_caps() {
    let (ok, out, _) = tessera(&["debug", "chk-cap", "-"], Some(b"hello world"));
    assert!(ok);
    assert_eq!(
        out.trim(),
        format!("URI:LIT:{}", storage::base32::encode(b"hello world"))
    );
    let (ok, out, _) = tessera(&["debug", "chk-cap", "-"], Some(b""));
    assert!(ok);
    assert_eq!(out.trim(), "URI:LIT:");
}

#[test]
fn chk_cap_reports_bad_input() {
    let (ok, _, err) = tessera(&["debug", "chk-cap", "/nonexistent/file"], None);
    assert!(!ok);
    assert!(err.contains("cannot open /nonexistent/file"), "{err}");
    let (ok, _, err) = tessera(
        &["debug", "chk-cap", "--convergence-secret", "NOT-BASE32", "-"],
        Some(b"x"),
    );
    assert!(!ok);
    assert!(err.contains("--convergence-secret"), "{err}");
    let (ok, _, err) = tessera(&["debug", "chk-cap", "--needed", "11", "-"], Some(b"x"));
    assert!(!ok);
    assert!(err.contains("1 <= k <= N <= 256"), "{err}");
}

#[test]
fn dump_cap_explains_a_cap() {
    let (ok, out, err) = tessera(&["debug", "dump-cap", GOLDEN_1024], None);
    assert!(ok, "{err}");
    assert!(out.contains("kind: URI:CHK\n"), "{out}");
    assert!(out.contains("needed shares (k): 3\n"), "{out}");
    assert!(out.contains("total shares (N): 10\n"), "{out}");
    assert!(out.contains("size: 1024\n"), "{out}");
    assert!(out.contains("storage index: "), "{out}");
    assert!(out.contains("verify cap: URI:CHK-Verifier:"), "{out}");

    let mdmf = "URI:MDMF:tn2ekpkmearz7k3bivm3ikuz3i:wcqgxw6ta2u3gajlvnw6czx4i6zmq3ydfcuy3qz5ns4ogvvpiyya";
    let (ok, out, _) = tessera(&["debug", "dump-cap", mdmf], None);
    assert!(ok);
    assert!(out.contains("format: MDMF"), "{out}");
    assert!(
        out.contains("read-only cap: URI:MDMF-RO:ttnh3ep5nzw4caqoalpk65peba:"),
        "{out}"
    );
    assert!(
        out.contains("verify cap: URI:MDMF-Verifier:ehx7n7d4rpyqiayoha5ym4ae4u:"),
        "{out}"
    );
    assert!(out.contains("storage index: ehx7n7d4rpyqiayoha5ym4ae4u"), "{out}");

    let (ok, _, err) = tessera(
        &["debug", "dump-cap", &GOLDEN_1024.replace(":3:10:", ":3:x:")],
        None,
    );
    assert!(!ok);
    assert!(err.contains("total shares (N)"), "{err}");
}
