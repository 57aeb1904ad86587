//! Reading the text files an operator (or a tool) writes, with a size bound: the accounts file here,
//! `tahoe.cfg`, `servers.yaml` and the node's other files in `node`. A file past its bound is an
//! error that names the file and the bound, not a read of whatever size it has grown to.

use std::io::{self, Read};
use std::path::Path;

/// `tahoe.cfg` and the node's other small files.
pub const CONFIG_LIMIT: u64 = 1 << 20;
/// Files with a line per user or server (`private/accounts`, `private/servers.yaml`).
pub const LIST_LIMIT: u64 = 16 << 20;

/// Reads `path` as UTF-8 if it holds at most `limit` bytes. Past the bound the error is
/// `InvalidData` with a message naming the file and the bound.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {} bytes", path.display(), limit),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_up_to_the_bound_and_refuses_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), "12345");
        let error = read_bounded(&path, 4).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("larger than 4 bytes"), "{error}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(
            read_bounded(&path, 5)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
    }
}
