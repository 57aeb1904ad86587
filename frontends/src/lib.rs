//! User-facing frontends: the web gateway (Tahoe's web API and the browser UI), the SFTP server and
//! the FTP server; `accounts` is the accounts file SFTP and FTP share, `spool` the encrypted temporary
//! file both write uploads to. Frontends reach the grid only through `filenode`.

pub mod accounts;
pub mod counters;
pub mod ftp;
mod login_limit;
mod prefetch;
pub mod sftp;
mod spool;
mod streamed;
#[cfg(test)]
mod testing;
pub mod textfile;
pub mod web;
pub mod webdav;
mod whole;

pub use counters::Counters;
pub use spool::{SpoolQuota, set_default_spool_dir};

/// The largest SDMF file any frontend writes. An SDMF file is one segment, encoded and published
/// whole in memory (plaintext, ciphertext and N/k times that in shares: about 5 times its size at
/// 3-of-10), so the gateway bounds it; larger mutable files are MDMF, which streams. Tahoe's SDMF
/// files are directories and small files (its publisher once refused SDMF over 3.5 MB); 16 MiB
/// leaves room for directories of tens of thousands of entries. The file-system layer's bound
/// (`filenode::fs`, which WebDAV writes through), so that the frontends cannot drift apart.
pub const SDMF_MAX_SIZE: u64 = filenode::fs::SDMF_MAX_SIZE;

/// Why an SDMF file larger than [`SDMF_MAX_SIZE`] is refused (the start of every such message).
pub(crate) const SDMF_TOO_LARGE: &str = "an SDMF file is one segment, encoded in memory, and is bounded \
     (use format=MDMF for larger mutable files)";

/// The message for the client when an SDMF file would hold `len` bytes, past [`SDMF_MAX_SIZE`].
pub(crate) fn sdmf_size_error(len: u64) -> Option<String> {
    (len > SDMF_MAX_SIZE)
        .then(|| format!("{SDMF_TOO_LARGE}: this file would be {len} bytes, more than {SDMF_MAX_SIZE}"))
}
