//! The share store (being written).
