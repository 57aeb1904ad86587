//! The HTTPS storage protocol (being written).
