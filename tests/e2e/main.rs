//! The single end-to-end test binary. Modules:
//! - `tidy`: workspace shape and the crate dependency direction;
//! - `vectors`: Tahoe's published vectors, golden shares from Tahoe 1.20, zfec outputs, Tahoe 1.2.0
//!   share files (from `../shared`, skipped with a message when absent) and our own committed vectors
//!   (always run);
//! - `chk`: CHK encode/decode properties: round trips, every k-subset, corruption detection;
//! - `concurrency`: writers racing readers on one mutable file and one directory, with a checker;
//! - `grid`: upload/download over a grid of real storage servers, with faults;
//! - `links`: a grid behind emulated network links (delay, rate), partitioned mid-download;
//! - `corruption`: corrupt shares of CHK, SDMF and MDMF files named by verify and replaced by
//!   repair (also against servers without Tessera's removal request, and through the web API);
//! - `web`: the web gateway's router over a real grid;
//! - `web_limits`: the web gateway's bounds (form fields, SDMF bodies, the encrypted spool, the
//!   served socket's header timeout and connection cap);
//! - `fs`: the file-system layer beneath the frontends (`filenode::fs`) over a real grid;
//! - `ftp`: the FTP server's spool quota over a real grid with a minimal FTP client;
//! - `webdav`: the WebDAV router's bounds, logins and per-user roots and locks over a real grid;
//! - `sftp`: the SFTP server over a real grid with a pure-Rust client (russh, russh-sftp).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod check;
mod chk;
mod concurrency;
mod corruption;
mod fs;
mod ftp;
mod grid;
mod hung;
mod links;
mod mutable;
mod sftp;
mod tidy;
mod vectors;
mod web;
mod web_fs;
mod web_limits;
mod webdav;
