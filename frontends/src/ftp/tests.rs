//! Unit tests of the pure parts: path resolution, the error mapping, the login limiter.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use filenode::node::NodeError;
use unftp_core::storage::ErrorKind;

use super::auth::LoginLimiter;
use super::error::FtpError;
use super::paths::{Base, parse};

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

#[test]
fn failed_logins_lock_an_address_out_for_a_window() {
    let limiter = LoginLimiter::default();
    let ip: IpAddr = [192, 0, 2, 1].into();
    let other: IpAddr = [192, 0, 2, 2].into();
    let start = Instant::now();
    for i in 1..LoginLimiter::MAX_FAILURES {
        assert_eq!(limiter.failed(ip, start), i);
        assert!(!limiter.is_blocked(ip, start));
    }
    limiter.failed(ip, start);
    assert!(limiter.is_blocked(ip, start));
    assert!(!limiter.is_blocked(other, start));
    let later = start + LoginLimiter::WINDOW + Duration::from_secs(1);
    assert!(!limiter.is_blocked(ip, later));
    assert_eq!(limiter.failed(ip, later), 1);
    limiter.succeeded(ip);
    assert!(!limiter.is_blocked(ip, later));
}
