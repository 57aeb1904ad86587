//! Unit tests: path resolution, the error mapping, the login limits, listings of hostile names.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use filenode::node::NodeError;
use unftp_core::storage::ErrorKind;

use unftp_core::auth::{AuthenticationError, Authenticator, Credentials};

use super::auth::{FAILURE_WINDOW, GridAuth, MAX_FAILURES};
use super::error::FtpError;
use super::paths::{Base, parse};
use crate::login_limit::LoginLimiter;

const DIRCAP: &str =
    "URI:DIR2:ovjy4yhylqlfoqg2vcze36dhde:4d4voqxxbyf7p2gvzyidsbxdqyfavejvtmeoowm2mqbsw3vm7lja";

fn names(path: &str) -> Vec<String> {
    let parsed = parse(Path::new(path)).unwrap();
    assert_eq!(parsed.base, Base::Root, "{path}");
    parsed.names
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
    assert!(matches!(parsed.base, Base::Cap(_)));
    assert_eq!(parsed.names, ["x", "y"]);
    // `..` out of a cap goes back to the user's root, never above it.
    assert_eq!(names(&format!("/uri/{DIRCAP}/../../..")), Vec::<String>::new());
    assert_eq!(names(&format!("/uri/{DIRCAP}/..")), ["uri"]);
    // `uri` followed by something that is not a cap is an ordinary name.
    assert_eq!(names("/uri/notacap"), ["uri", "notacap"]);
    // A cap's Debug form never shows it.
    let debug = format!("{:?}", parse(Path::new(&format!("/uri/{DIRCAP}"))).unwrap());
    assert!(!debug.contains("URI:DIR2:"), "{debug}");
}

#[test]
fn errors_map_to_reply_codes() {
    let code = |e: FtpError| e.kind().to_string()[..3].to_owned();
    assert_eq!(code(NodeError::NoSuchChild("x".into()).into()), "550");
    assert_eq!(code(NodeError::NotWritable("ro").into()), "550");
    assert_eq!(code(NodeError::NotEnoughServers("2 of 7".into()).into()), "452");
    assert_eq!(code(NodeError::UncoordinatedWrite.into()), "450");
    assert_eq!(code(NodeError::Unrecoverable("no shares".into()).into()), "451");
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
    assert_eq!(code(FtpError::NoAppend), "502");
    assert_eq!(FtpError::NotEmpty.kind(), ErrorKind::PermanentDirectoryNotEmpty);
    assert_eq!(code(FtpError::NoParent), "550");
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
