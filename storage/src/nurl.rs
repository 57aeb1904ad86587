//! NURLs (being written).
