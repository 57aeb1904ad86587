//! Tahoe-LAFS base32: RFC 4648 alphabet in lower case, no padding, strict decoding.
//!
//! Decoding rejects upper case, padding, impossible lengths (length mod 8 of 1, 3 or 6) and non-zero
//! unused bits in the last character, exactly as Tahoe's cap parsers do (tahoe-formats.md §1.2).

use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};

static TAHOE_BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.check_trailing_bits = true;
    spec.encoding()
        .expect("invariant: the base32 specification is valid")
});

/// The error returned for a string that is not strict Tahoe base32.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid base32: {reason}")]
pub struct DecodeError {
    reason: String,
}

/// Encodes bytes as Tahoe base32 (lower case, unpadded).
pub fn encode(bytes: &[u8]) -> String {
    TAHOE_BASE32.encode(bytes)
}

/// Decodes strict Tahoe base32.
pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    TAHOE_BASE32.decode(text.as_bytes()).map_err(|e| DecodeError {
        reason: e.to_string(),
    })
}

/// Decodes strict Tahoe base32 that must yield exactly `N` bytes.
pub fn decode_exact<const N: usize>(text: &str) -> Result<[u8; N], DecodeError> {
    let bytes = decode(text)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| DecodeError {
        reason: format!("decodes to {len} bytes, expected {N}"),
    })
}

/// The length of the base32 encoding of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_lengths() {
        assert_eq!(encode(&[0u8; 16]).len(), 26);
        assert_eq!(encode(&[0u8; 32]).len(), 52);
        assert_eq!(encode(&[0u8; 20]).len(), 32);
        assert_eq!(encoded_len(16), 26);
        assert_eq!(encoded_len(32), 52);
    }

    #[test]
    fn rfc4648_examples_in_lower_case() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "my");
        assert_eq!(encode(b"foobar"), "mzxw6ytboi");
        assert_eq!(decode("mzxw6ytboi").unwrap(), b"foobar");
    }

    #[test]
    fn strict_decoding() {
        // Upper case, padding and impossible lengths are refused.
        assert!(decode("MZXW6YTBOI").is_err());
        assert!(decode("my======").is_err());
        assert!(decode("a").is_err());
        assert!(decode("abc").is_err());
        // A 16-byte field must end in one of "aqiyemu4": non-zero trailing bits are refused.
        let good = encode(&[0xffu8; 16]);
        assert!(good.ends_with('4'));
        let mut bad = good.clone();
        bad.pop();
        bad.push('7');
        assert!(decode(&bad).is_err());
        assert!(decode_exact::<16>(&good).is_ok());
        assert!(decode_exact::<32>(&good).is_err());
    }
}
