//! User-facing frontends: the web gateway, SFTP and FTP servers.
//!
//! Empty for now: each frontend arrives with its own issue. The crate exists so that the dependency
//! direction storage ← filenode ← frontends ← node is fixed from the start; frontends reach the grid
//! only through `filenode`.
