//! User-facing frontends: the web gateway (today: the file subset of Tahoe's web API), with SFTP and
//! FTP to come. Frontends reach the grid only through `filenode`.

pub mod web;
