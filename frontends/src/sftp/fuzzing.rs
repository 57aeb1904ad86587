//! Entry points for the fuzz targets (`tests/src/fuzz.rs`, run by the stable runner and by
//! cargo-fuzz under `fuzz/`): what the SFTP session does with a packet's bytes before it touches
//! the grid. Not an API: hidden from the docs, and nothing but the fuzz targets calls it.

use bytes::Bytes;
use russh_sftp::protocol::Packet;

use filenode::fs::FsPath;

use super::session::{MAX_PACKET, ssh_string};

/// One packet as the session's reader sees it (after the length prefix, which it bounds): decoded
/// by russh-sftp, and every path in it parsed as the session parses paths (the layer's `FsPath`).
/// A parsed path's text parses to itself, and never climbs above the root.
#[doc(hidden)]
pub fn packet(bytes: &[u8]) {
    if bytes.is_empty() || bytes.len() > MAX_PACKET as usize {
        return; // the reader closes the channel before decoding
    }
    let mut bytes = Bytes::copy_from_slice(bytes);
    let Ok(packet) = Packet::try_from(&mut bytes) else {
        return;
    };
    let paths: Vec<String> = match packet {
        Packet::Open(p) => vec![p.filename],
        Packet::Lstat(p) => vec![p.path],
        Packet::Stat(p) => vec![p.path],
        Packet::SetStat(p) => vec![p.path],
        Packet::OpenDir(p) => vec![p.path],
        Packet::Remove(p) => vec![p.filename],
        Packet::MkDir(p) => vec![p.path],
        Packet::RmDir(p) => vec![p.path],
        Packet::RealPath(p) => vec![p.path],
        Packet::Rename(p) => vec![p.oldpath, p.newpath],
        Packet::Extended(p) if p.request == "posix-rename@openssh.com" => {
            let mut data = Bytes::from(p.data);
            [ssh_string(&mut data), ssh_string(&mut data)]
                .into_iter()
                .flatten()
                .collect()
        }
        _ => Vec::new(),
    };
    for path in paths {
        path_text(&path);
    }
}

/// Parses a path as the session does.
#[doc(hidden)]
pub fn path_text(path: &str) {
    let Ok(parsed) = FsPath::parse(path) else {
        return;
    };
    assert!(
        parsed
            .names()
            .iter()
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains(['/', '\0']))
    );
    assert_eq!(FsPath::parse(&parsed.to_text()).ok().as_ref(), Some(&parsed));
}
