//! The stable fuzz runner over every target of `tests::fuzz` (the short tier of `cargo test`; set
//! `TESSERA_FUZZ_SECONDS=N` to run each target for N seconds, see `tests/src/fuzz/runner.rs`).
//! One test per target, so `cargo test -p tests --test fuzz NAME` runs one.
//!
//! The binary's allocator counts and limits memory: an input that makes a parser allocate without
//! bound stops the process (the input is in `target/fuzz-crashes/NAME.last`).

use std::alloc::System;

use cap::Cap;
use tests::fuzz::{self, runner};

/// Everything the fuzz targets hold at once stays far below this.
const MEMORY_LIMIT: usize = 1 << 30;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, MEMORY_LIMIT);

fn run(name: &str) {
    let target = fuzz::target(name).expect("a target of that name");
    let report = runner::run(target.name, target.body, target.runs, target.max_len);
    assert!(report.runs > 0);
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_test_and_seeds() {
            let tested = [$(stringify!($name)),*, "ftp_session"];
            for target in fuzz::TARGETS {
                assert!(tested.contains(&target.name), "no test for target {}", target.name);
                assert!(
                    std::fs::read_dir(runner::corpus_dir(target.name)).is_ok_and(|d| d.count() > 0),
                    "no seeds in fuzz/corpus/{}",
                    target.name
                );
            }
            assert_eq!(tested.len(), fuzz::TARGETS.len());
        }
    };
}

targets!(
    cap,
    ueb,
    chk_share,
    mutable_share,
    dirnode,
    share_container,
    nurl,
    storage_wire,
    storage_http,
    web_range,
    web,
    sftp_packet,
    ftp_path,
    fs_path,
    accounts,
);

/// FTP command lines to a real server, one at a time (pipelined commands after a failed data
/// command go unanswered in libunftp: fuzz/findings/README.md).
#[test]
fn ftp_session() {
    run("ftp_session");
}

/// The seeds of the share targets are genuine shares of the targets' fixed caps, so that their
/// mutations reach the verification past the parsing.
#[test]
fn share_seeds_verify_against_the_targets_caps() {
    use filenode::cap::{Cap, FileCap};
    use filenode::mutable::layout::MutableShare;
    use std::sync::Arc;
    let Ok(Cap::File(FileCap::Chk(chk))) = Cap::parse(fuzz::CHK_CAP) else {
        panic!("CHK_CAP is a CHK cap");
    };
    for entry in std::fs::read_dir(runner::corpus_dir("chk_share")).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let source = Arc::new(filenode::immutable::MemoryShare {
            shnum: u16::from(data[0]),
            data: Arc::new(data[1..].to_vec()),
        });
        futures::executor::block_on(filenode::immutable::verify_share(&chk, source)).unwrap();
    }
    for entry in std::fs::read_dir(runner::corpus_dir("mutable_share")).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let text = if data[1] == 0 {
            fuzz::SDMF_CAP
        } else {
            fuzz::MDMF_CAP
        };
        let Ok(Cap::File(FileCap::Mutable(cap))) = Cap::parse(text) else {
            panic!("a mutable read cap");
        };
        let share = MutableShare::parse(&data[1..]).unwrap();
        share.verify(usize::from(data[0]), &cap.fingerprint).unwrap();
    }
}
