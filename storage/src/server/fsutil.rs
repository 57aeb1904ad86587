//! Small filesystem helpers: the on-disk layout's paths, positional reads and writes, directory
//! fsync, durable directory creation and best-effort removal of empty directories.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::{ShareNum, StorageIndex};

/// The paths of a storage directory (tahoe-interfaces.md §2.1).
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// `storage_dir`.
    pub(super) root: PathBuf,
    /// `storage_dir/shares`.
    pub(super) shares: PathBuf,
    /// `storage_dir/shares/incoming`.
    pub(super) incoming: PathBuf,
    /// `storage_dir/corruption-advisories`.
    pub(super) advisories: PathBuf,
}

impl Layout {
    pub(super) fn new(root: &Path) -> Self {
        let shares = root.join("shares");
        Layout {
            root: root.to_owned(),
            incoming: shares.join("incoming"),
            shares,
            advisories: root.join("corruption-advisories"),
        }
    }

    /// `shares/<prefix>/<SI>`.
    pub(super) fn share_dir(&self, si: StorageIndex) -> PathBuf {
        self.shares.join(si.prefix()).join(si.to_string())
    }

    /// `shares/<prefix>/<SI>/<shnum>`.
    pub(super) fn share_path(&self, si: StorageIndex, shnum: ShareNum) -> PathBuf {
        self.share_dir(si).join(shnum.to_string())
    }

    /// `shares/incoming/<prefix>`.
    pub(super) fn incoming_prefix_dir(&self, si: StorageIndex) -> PathBuf {
        self.incoming.join(si.prefix())
    }

    /// `shares/incoming/<prefix>/<SI>`.
    pub(super) fn incoming_dir(&self, si: StorageIndex) -> PathBuf {
        self.incoming_prefix_dir(si).join(si.to_string())
    }

    /// `shares/incoming/<prefix>/<SI>/<shnum>`.
    pub(super) fn incoming_path(&self, si: StorageIndex, shnum: ShareNum) -> PathBuf {
        self.incoming_dir(si).join(shnum.to_string())
    }

    /// The scratch file a mutable share's next version is written to before it is renamed over the
    /// share (`shares/<prefix>/<SI>/.tmp-<shnum>`; never a valid share name).
    pub(super) fn mutable_temp_path(&self, si: StorageIndex, shnum: ShareNum) -> PathBuf {
        self.share_dir(si).join(format!("{TEMP_PREFIX}{shnum}"))
    }
}

impl Layout {
    /// The journal of an in-place write to a mutable share (`shares/<prefix>/<SI>/.journal-<shnum>`);
    /// replayed at startup if a crash interrupted the write.
    pub(super) fn mutable_journal_path(&self, si: StorageIndex, shnum: ShareNum) -> PathBuf {
        self.share_dir(si).join(format!("{JOURNAL_PREFIX}{shnum}"))
    }
}

/// Prefix of in-place write journals inside share directories.
pub(super) const JOURNAL_PREFIX: &str = ".journal-";

/// Prefix of scratch files inside share directories; removed at startup.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// Parses a share file name: a decimal number without sign or leading zeros (except "0").
pub(super) fn parse_shnum(name: &str) -> Option<ShareNum> {
    if name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_digit())
        || (name.len() > 1 && name.starts_with('0'))
    {
        return None;
    }
    name.parse().ok()
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Writes all of `buf` at `offset`.
pub(super) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_write(file, &buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Reads `len` bytes at `offset` into a new vector.
pub(super) fn read_vec_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let len =
        usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "read too large"))?;
    let mut buf = vec![0u8; len];
    read_exact_at(file, &mut buf, offset)?;
    Ok(buf)
}

/// Asks the kernel to start writing the dirty pages of `len` bytes of `file` at `offset` to disk,
/// without waiting for them, and to drop those already clean from the page cache (Linux's
/// `POSIX_FADV_DONTNEED` does both). A sync later then waits only for what is still unwritten.
/// Advice only: a kernel that ignores it changes nothing but the time that sync takes and what
/// stays cached. `len` must not be 0 (that would mean to the end of the file).
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entries changed, so that a file
/// later renamed into `dir` (and `dir` fsynced) survives a crash.
pub(super) fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.is_dir() {
            break;
        }
        missing.push(path);
        cursor = path.parent();
    }
    for path in missing.iter().rev() {
        match std::fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Removes `dir` if it is empty; any failure (not empty, already gone) is ignored, as in Tahoe.
pub(super) fn remove_dir_if_empty(dir: &Path) -> bool {
    std::fs::remove_dir(dir).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_names() {
        assert_eq!(parse_shnum("0"), Some(0));
        assert_eq!(parse_shnum("255"), Some(255));
        assert_eq!(parse_shnum("007"), None);
        assert_eq!(parse_shnum("+1"), None);
        assert_eq!(parse_shnum(".tmp-3"), None);
        assert_eq!(parse_shnum(""), None);
        assert_eq!(parse_shnum("99999999"), None);
    }

    #[test]
    fn layout_paths() {
        let layout = Layout::new(Path::new("/s"));
        let si = StorageIndex([0; 16]);
        let name = si.to_string();
        assert_eq!(
            layout.share_path(si, 3),
            Path::new("/s/shares/aa").join(&name).join("3")
        );
        assert_eq!(
            layout.incoming_path(si, 3),
            Path::new("/s/shares/incoming/aa").join(&name).join("3")
        );
    }
}
