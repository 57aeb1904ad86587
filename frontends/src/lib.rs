//! User-facing frontends: the web gateway (Tahoe's web API and the browser UI), the SFTP server and
//! the FTP server; `accounts` is the accounts file SFTP and FTP share, `spool` the encrypted temporary
//! file both write uploads to. Frontends reach the grid only through `filenode`.

pub mod accounts;
pub mod ftp;
mod login_limit;
mod prefetch;
pub mod sftp;
mod spool;
#[cfg(test)]
mod testing;
pub mod web;
