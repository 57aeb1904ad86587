//! Mutable files (SDMF and MDMF). For now: the RSA key to cap derivations, and parsing, verifying
//! and decoding fetched shares; publishing and the servermap protocol arrive with the mutable-files
//! issue.

pub mod keys;
pub mod layout;
