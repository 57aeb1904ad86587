//! TLS identity (being written).
