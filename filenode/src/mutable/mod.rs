//! Mutable files (SDMF and MDMF). For now: the RSA key to cap derivations; the share formats and the
//! publish/retrieve protocol arrive with the mutable-files issue.

pub mod keys;
