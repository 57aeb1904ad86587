//! User-facing frontends: the web gateway (Tahoe's web API and the browser UI) and the SFTP server,
//! with FTP to come; `accounts` is the accounts file they share. Frontends reach the grid only
//! through `filenode`.

pub mod accounts;
pub mod sftp;
pub mod web;
