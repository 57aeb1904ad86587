//! User-facing frontends: the web gateway (Tahoe's web API and the browser UI) and the FTP server
//! (with SFTP to come); `accounts` is the accounts file they share. Frontends reach the grid only
//! through `filenode`.

pub mod accounts;
pub mod ftp;
pub mod web;
