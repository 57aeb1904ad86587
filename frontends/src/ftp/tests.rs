//! Unit tests: path resolution, the error mapping, the login limits, listings of hostile names.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use filenode::fs::{Base, FsError, FsErrorKind};
use filenode::node::NodeError;
use unftp_core::storage::ErrorKind;

use unftp_core::auth::{AuthenticationError, Authenticator, Credentials};

use super::auth::{FAILURE_WINDOW, GridAuth, MAX_FAILURES};
use super::error::FtpError;
use super::paths::parse;
use crate::login_limit::LoginLimiter;

const DIRCAP: &str =
    "URI:DIR2:ovjy4yhylqlfoqg2vcze36dhde:4d4voqxxbyf7p2gvzyidsbxdqyfavejvtmeoowm2mqbsw3vm7lja";

fn names(path: &str) -> Vec<String> {
    let parsed = parse(Path::new(path)).unwrap();
    assert_eq!(*parsed.base(), Base::Root, "{path}");
    parsed.names().to_vec()
}

#[test]
fn dot_and_dotdot_are_clamped_at_the_root() {
    assert!(names("/").is_empty());
    assert_eq!(names("/a/b"), ["a", "b"]);
    assert_eq!(names("a/./b/"), ["a", "b"]);
    assert_eq!(names("/a/../b"), ["b"]);
    assert!(names("/../../..").is_empty());
    assert_eq!(names("/../../etc/passwd"), ["etc", "passwd"]);
    assert_eq!(names("/a/b/../../../c"), ["c"]);
    assert_eq!(names("/été/ü"), ["été", "ü"]);
}

#[test]
fn uri_paths_reach_caps() {
    let parsed = parse(Path::new(&format!("/uri/{DIRCAP}/x/y"))).unwrap();
    assert!(matches!(parsed.base(), Base::Cap(_)));
    assert_eq!(parsed.names(), ["x", "y"]);
    // `..` out of a cap goes back to the user's root, never above it.
    assert_eq!(names(&format!("/uri/{DIRCAP}/../../..")), Vec::<String>::new());
    assert_eq!(names(&format!("/uri/{DIRCAP}/..")), ["uri"]);
    // `uri` followed by something that is not a cap is refused (the layer's one rule: FTP used
    // to take it for the child `notacap` of a root child named `uri`).
    assert_eq!(
        parse(Path::new("/uri/notacap")).unwrap_err().kind(),
        FsErrorKind::BadPath
    );
    assert_eq!(names("/uri"), ["uri"]);
    // A cap's Debug form never shows it.
    let debug = format!("{:?}", parse(Path::new(&format!("/uri/{DIRCAP}"))).unwrap());
    assert!(!debug.contains("URI:DIR2:"), "{debug}");
}

#[test]
fn errors_map_to_reply_codes() {
    let code = |e: FtpError| e.kind().to_string()[..3].to_owned();
    assert_eq!(code(NodeError::NoSuchChild("x".into()).into()), "550");
    assert_eq!(code(NodeError::NotWritable("ro").into()), "550");
    // Too few servers: 452 for an upload, 451 for anything else (a read).
    let unavailable = FsError::from(NodeError::NotEnoughServers("2 of 7".into()));
    assert_eq!(code(FtpError::Store(unavailable.clone())), "452");
    assert_eq!(code(FtpError::Fs(unavailable)), "451");
    assert_eq!(code(NodeError::Unrecoverable("no shares".into()).into()), "451");
    // Another writer's change, a damaged directory and the like: 451, local error.
    assert_eq!(code(NodeError::UncoordinatedWrite.into()), "451");
    assert_eq!(
        code(
            NodeError::BadName {
                name: "a/b".into(),
                reason: "slash"
            }
            .into()
        ),
        "553"
    );
    assert_eq!(code(FtpError::PastEnd { offset: 10, size: 5 }), "551");
    assert_eq!(
        code(FsError::new(FsErrorKind::TooLarge, "SDMF bound").into()),
        "552"
    );
    assert_eq!(
        FtpError::from(FsError::new(FsErrorKind::NotEmpty, "not empty")).kind(),
        ErrorKind::PermanentDirectoryNotEmpty
    );
    // The root (no link to change): 550.
    assert_eq!(code(FsError::new(FsErrorKind::ReadOnly, "no link").into()), "550");
}

/// The FTP authenticator over an accounts file with `alice` and `bob` (passwords `alice-pw`,
/// `bob-pw`), failures answered at once.
fn auth_with_two_users() -> (tempfile::TempDir, Arc<GridAuth>) {
    use crate::accounts::{AccountsFile, Credential, add_user};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts");
    let root: filenode::cap::DirCap = match filenode::cap::Cap::parse(DIRCAP).unwrap() {
        filenode::cap::Cap::Dir(dir) => dir,
        _ => unreachable!(),
    };
    for user in ["alice", "bob"] {
        add_user(&path, user, &Credential::Password(format!("{user}-pw")), &root).unwrap();
    }
    let auth = GridAuth {
        accounts: Arc::new(AccountsFile::new(&path)),
        limiter: LoginLimiter::new(MAX_FAILURES, FAILURE_WINDOW),
        failure_delay: Duration::ZERO,
        counters: Arc::default(),
    };
    (dir, Arc::new(auth))
}

async fn login(auth: &GridAuth, user: &str, password: &str) -> Result<(), AuthenticationError> {
    let mut creds = Credentials::from(password);
    creds.source_ip = IpAddr::from([192, 0, 2, 1]);
    auth.authenticate(user, &creds).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_get_no_more_password_checks_than_the_limit() {
    let (_dir, auth) = auth_with_two_users();
    let guesses = (0..20).map(|i| {
        let auth = Arc::clone(&auth);
        tokio::spawn(async move { login(&auth, "bob", &format!("guess {i}")).await })
    });
    let outcomes = futures::future::join_all(guesses).await;
    let checked = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), Err(AuthenticationError::BadPassword)))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), Err(AuthenticationError::IpDisallowed)))
        .count();
    assert_eq!(checked + refused, 20);
    assert!(checked <= MAX_FAILURES as usize, "{checked} guesses were checked");
    assert_eq!(auth.accounts.password_checks(), checked as u64);
    // The right password is refused too now: the address is locked out.
    assert!(matches!(
        login(&auth, "bob", "bob-pw").await,
        Err(AuthenticationError::IpDisallowed)
    ));
    // Every failure is counted, checked or refused outright.
    assert_eq!(auth.counters.login_failures(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_valid_account_does_not_reset_the_count_for_another() {
    let (_dir, auth) = auth_with_two_users();
    let mut guesses_checked = 0;
    for _ in 0..4 {
        for _ in 0..(MAX_FAILURES - 1) {
            if matches!(
                login(&auth, "bob", "wrong").await,
                Err(AuthenticationError::BadPassword)
            ) {
                guesses_checked += 1;
            }
        }
        // The attacker's own account logs in between the rounds of guesses.
        let _ = login(&auth, "alice", "alice-pw").await;
    }
    assert_eq!(guesses_checked, MAX_FAILURES);
    assert!(matches!(
        login(&auth, "bob", "bob-pw").await,
        Err(AuthenticationError::IpDisallowed)
    ));
}

#[tokio::test]
async fn listings_leave_out_names_no_path_or_line_can_carry() {
    use filenode::cap::{Cap, MutableFormat};
    use unftp_core::storage::StorageBackend;

    let (_dirs, grid) = crate::testing::grid(4);
    let root = grid.create_directory(MutableFormat::Sdmf).await.unwrap();
    let file = Cap::File(grid.upload_bytes(b"planted".to_vec()).await.unwrap());
    let names = [
        "../escaped.txt",
        "/tmp/absolute.txt",
        "a/b",
        "",
        ".",
        "..",
        "nul\0name",
        "forged\r\n-rw-r--r-- 1 0 0 7 Jan 01 00:00 ../../.profile",
        "fine.txt",
    ];
    let children: Vec<(&str, &Cap)> = names.iter().map(|name| (*name, &file)).collect();
    crate::testing::write_raw_children(&grid, root.cap(), &children).await;
    let backend = super::backend::GridBackend {
        grid: Arc::clone(&grid),
        spool_dir: None,
        spool_quota: crate::SpoolQuota::new(1 << 30),
        counters: Arc::default(),
        session: Arc::default(),
    };
    let user = super::auth::GridUser {
        name: "alice".into(),
        root: root.cap().clone(),
    };
    let listed = backend.list(&user, "/").await.unwrap();
    let listed: Vec<String> = listed.iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(listed, ["fine.txt"]);
    // Every LIST line is one line.
    let lines: Vec<String> = backend
        .list(&user, "/")
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(lines.iter().all(|l| !l.contains(['\r', '\n'])), "{lines:?}");
}

/// The layer's resume and mtime operations (`filenode::fs::append`), which FTP's `REST`+`STOR`,
/// APPE and `SITE MFMT` are built on (filenode has no runtime or test grid of its own).
mod layer {
    use std::io::Cursor;

    use filenode::cap::{Cap, MutableFormat};
    use filenode::fs::append::ResumeError;
    use filenode::fs::{EntryKind, Fs, FsError, FsErrorKind, FsPath};
    use filenode::node::Replace;
    use futures::TryStreamExt;

    async fn fs() -> (tempfile::TempDir, Fs) {
        let (dir, grid) = crate::testing::grid(4);
        let root = grid.create_directory(MutableFormat::Sdmf).await.unwrap();
        (dir, Fs::new(&grid, root))
    }

    fn path(text: &str) -> FsPath {
        FsPath::parse(text).unwrap()
    }

    /// Resumes `name` at `offset` with `new`, as a frontend does: the kept prefix, then the new
    /// bytes, in one input.
    async fn resume(fs: &Fs, name: &str, offset: u64, new: &[u8]) -> Result<(), ResumeError> {
        let resume = fs.prepare_resume(&path(name), offset).await?;
        let chunks: Vec<bytes::Bytes> = resume.prefix().try_collect().await.map_err(FsError::from)?;
        let mut all: Vec<u8> = chunks.concat();
        assert_eq!(all.len() as u64, offset);
        all.extend_from_slice(new);
        let len = all.len() as u64;
        resume.check_size(new.len() as u64)?;
        resume.commit(Cursor::new(all), len, None).await?;
        Ok(())
    }

    async fn read(fs: &Fs, name: &str) -> Vec<u8> {
        fs.open(&path(name))
            .await
            .unwrap()
            .read(0, u64::MAX)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_immutable_file_is_uploaded_again_with_the_kept_bytes() {
        let (_dir, fs) = fs().await;
        let old: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        fs.write(
            &path("/f"),
            Cursor::new(old.clone()),
            old.len() as u64,
            Replace::Always,
        )
        .await
        .unwrap();
        // Resume in the middle: the rest is replaced, so the file may get shorter.
        resume(&fs, "/f", 150_000, b"tail").await.unwrap();
        let mut expected = old[..150_000].to_vec();
        expected.extend_from_slice(b"tail");
        assert_eq!(read(&fs, "/f").await, expected);
        // Append at the end.
        resume(&fs, "/f", expected.len() as u64, b"more").await.unwrap();
        expected.extend_from_slice(b"more");
        assert_eq!(read(&fs, "/f").await, expected);
        // Offset 0 is a plain write; a new name can be written from 0 only.
        resume(&fs, "/new", 0, b"fresh").await.unwrap();
        assert_eq!(read(&fs, "/new").await, b"fresh");
        let past = resume(&fs, "/missing", 1, b"x").await.unwrap_err();
        assert!(
            matches!(past, ResumeError::PastEnd { offset: 1, size: 0 }),
            "{past}"
        );
        let past = resume(&fs, "/f", expected.len() as u64 + 1, b"x")
            .await
            .unwrap_err();
        assert!(matches!(past, ResumeError::PastEnd { .. }), "{past}");
        assert_eq!(
            read(&fs, "/f").await,
            expected,
            "a refused resume changes nothing"
        );
        // A directory is never written.
        fs.mkdir(&path("/d")).await.unwrap();
        let refused = resume(&fs, "/d", 0, b"x").await.unwrap_err();
        assert!(
            matches!(&refused, ResumeError::Fs(e) if e.kind() == FsErrorKind::IsADirectory),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_writable_mutable_file_gets_a_new_version_in_place() {
        let (_dir, fs) = fs().await;
        let cap = fs
            .grid()
            .create_mutable_file(MutableFormat::Mdmf, b"0123456789".to_vec())
            .await
            .unwrap();
        let root = fs.dir(&FsPath::root()).await.unwrap();
        root.set_child(
            "m",
            &Cap::File(filenode::cap::FileCap::Mutable(cap)),
            None,
            Replace::Never,
        )
        .await
        .unwrap();
        resume(&fs, "/m", 4, b"abc").await.unwrap();
        assert_eq!(read(&fs, "/m").await, b"0123abc");
        resume(&fs, "/m", 7, b"def").await.unwrap();
        assert_eq!(read(&fs, "/m").await, b"0123abcdef");
        // The same cap: written in place.
        let found = fs.find(&path("/m")).await.unwrap();
        assert_eq!(found.node.cap(), Cap::File(filenode::cap::FileCap::Mutable(cap)));
    }

    #[tokio::test]
    async fn set_mtime_is_what_stat_and_list_show() {
        let (_dir, fs) = fs().await;
        fs.write(&path("/f"), Cursor::new(b"x".to_vec()), 1, Replace::Always)
            .await
            .unwrap();
        fs.mkdir(&path("/d")).await.unwrap();
        fs.set_mtime(&path("/f"), 1_000_000_000.0).await.unwrap();
        fs.set_mtime(&path("/d"), 1_500_000_000.5).await.unwrap();
        assert_eq!(fs.stat(&path("/f")).await.unwrap().mtime, Some(1_000_000_000.0));
        let listed = fs.list(&FsPath::root()).await.unwrap();
        let d = listed.iter().find(|e| e.name == "d").unwrap();
        assert_eq!(
            (d.stat.kind, d.stat.mtime),
            (EntryKind::Dir, Some(1_500_000_000.5))
        );
        assert_eq!(read(&fs, "/f").await, b"x", "the file is unchanged");
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(fs.set_mtime(&path("/f"), bad).await.is_err());
        }
        let base = fs.set_mtime(&FsPath::root(), 1.0).await.unwrap_err();
        assert_eq!(base.kind(), FsErrorKind::ReadOnly);
        let missing = fs.set_mtime(&path("/nope"), 1.0).await.unwrap_err();
        assert_eq!(missing.kind(), FsErrorKind::NotFound);
    }
}

#[test]
fn mfmt_and_utime_times_and_paths_parse() {
    use super::backend::{parse_time, set_time_arguments};
    assert_eq!(parse_time("19700101000000"), Some(0.0));
    assert_eq!(parse_time("20010909014640"), Some(1_000_000_000.0));
    assert_eq!(parse_time("20000229235959"), Some(951_868_799.0));
    assert_eq!(parse_time("20240301000000.25"), Some(1_709_251_200.25));
    for bad in [
        "2024030100000",   // 13 digits
        "202403010000000", // 15
        "20230229000000",  // not a leap year
        "21000229000000",  // nor is 2100
        "20241301000000",
        "20240100000000",
        "20240101240000",
        "20240101006000",
        "20240101000060",
        "19691231235959", // before 1970
        "2024010100000x",
        "20240101000000.",
        "20240101000000.1234567890",
        "+2024010100000",
        "",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
    assert_eq!(
        set_time_arguments("MFMT", "20010909014640 /a b/c.txt"),
        Some(("/a b/c.txt", 1_000_000_000.0))
    );
    assert_eq!(
        set_time_arguments("UTIME", "20010909014640 c.txt"),
        Some(("c.txt", 1_000_000_000.0))
    );
    // lftp's five-argument form: path atime mtime ctime UTC (the path may hold spaces).
    assert_eq!(
        set_time_arguments(
            "UTIME",
            "/x y.bin 19700101000000 20010909014640 19700101000000 UTC"
        ),
        Some(("/x y.bin", 1_000_000_000.0))
    );
    assert_eq!(set_time_arguments("MFMT", "20010909014640"), None);
    assert_eq!(set_time_arguments("MFMT", "20010909014640 "), None);
    assert_eq!(set_time_arguments("MFMT", "yesterday /f"), None);
    assert_eq!(set_time_arguments("UTIME", "f 1 2 3 UTC"), None);
    assert_eq!(set_time_arguments("CHMOD", "20010909014640 /f"), None);
}

/// `REST n` + STOR and APPE as libunftp passes them (a start position to `put`), through the
/// backend: the kept bytes come back, a start past the end is 551 with nothing changed.
#[tokio::test]
async fn put_from_an_offset_keeps_the_start_of_the_file() {
    use filenode::cap::MutableFormat;
    use unftp_core::storage::StorageBackend;

    let (_dirs, grid) = crate::testing::grid(4);
    let root = grid.create_directory(MutableFormat::Sdmf).await.unwrap();
    let quota = crate::SpoolQuota::new(1 << 30);
    let backend = super::backend::GridBackend {
        grid: Arc::clone(&grid),
        spool_dir: None,
        spool_quota: Arc::clone(&quota),
        counters: Arc::default(),
        session: Arc::default(),
    };
    let user = super::auth::GridUser {
        name: "alice".into(),
        root: root.cap().clone(),
    };
    async fn get(backend: &super::backend::GridBackend, user: &super::auth::GridUser) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let mut reader = backend.get(user, "/f", 0).await.unwrap();
        reader.read_to_end(&mut out).await.unwrap();
        out
    }
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(
        backend
            .put(&user, std::io::Cursor::new(data[..100_000].to_vec()), "/f", 0)
            .await
            .unwrap(),
        100_000
    );
    // An interrupted upload resumed where the server has it.
    assert_eq!(
        backend
            .put(
                &user,
                std::io::Cursor::new(data[100_000..].to_vec()),
                "/f",
                100_000
            )
            .await
            .unwrap(),
        200_000
    );
    assert_eq!(get(&backend, &user).await, data);
    // Resumed earlier than the end: the rest is replaced.
    backend.put(&user, &b"end"[..], "/f", 10).await.unwrap();
    let mut expected = data[..10].to_vec();
    expected.extend_from_slice(b"end");
    assert_eq!(get(&backend, &user).await, expected);
    // Past the end: 551, nothing changes.
    let e = backend.put(&user, &b"gap"[..], "/f", 14).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PageTypeUnknown);
    let e = backend.put(&user, &b"x"[..], "/missing", 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PageTypeUnknown);
    assert_eq!(get(&backend, &user).await, expected);
    // A directory: 550, whatever the start.
    backend.mkd(&user, "/d").await.unwrap();
    let e = backend.put(&user, &b"x"[..], "/d", 0).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermanentFileNotAvailable);
    // Every spool is gone (its quota released) once the replies are given.
    assert_eq!(quota.used("alice"), 0);
}
