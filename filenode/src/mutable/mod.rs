//! Mutable files (SDMF and MDMF): keys and caps, share layouts, encoding, and the grid protocols
//! (servermap update, retrieve, publish with test-and-set writes).

pub mod encode;
pub mod keys;
pub mod layout;
