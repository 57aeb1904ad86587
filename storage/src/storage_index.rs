//! The storage index: the 16-byte public name of a file's shares on the servers.

use std::fmt;
use std::str::FromStr;

use crate::base32;

/// A storage index (SI): 16 bytes derived from a file's read key by a one-way hash, so a server holding
/// shares cannot learn the key. Displayed as 26 characters of Tahoe base32.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageIndex(pub [u8; 16]);

impl StorageIndex {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The two-character directory prefix under which servers file this index's shares.
    pub fn prefix(&self) -> String {
        self.to_string()[..2].to_owned()
    }
}

impl fmt::Display for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0))
    }
}

impl fmt::Debug for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageIndex({self})")
    }
}

/// A string that is not a base32 storage index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid storage index: {0}")]
pub struct ParseStorageIndexError(#[from] base32::DecodeError);

impl FromStr for StorageIndex {
    type Err = ParseStorageIndexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(StorageIndex(base32::decode_exact::<16>(s)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_prefix() {
        let si = StorageIndex([0x47; 16]);
        let text = si.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text.parse::<StorageIndex>().unwrap(), si);
        assert_eq!(si.prefix(), &text[..2]);
        assert!("not-base32".parse::<StorageIndex>().is_err());
    }
}
