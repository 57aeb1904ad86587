//! AES-128-CTR with a zero IV and Tahoe's non-standard dirnode "hmac" (tahoe-formats.md §1.4–1.5).

use aes::Aes128;
use cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use sha2::{Digest, Sha256};

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// An AES-128-CTR keystream starting from an all-zero counter block, seekable to any byte offset.
pub struct AesCtr {
    cipher: Aes128Ctr,
}

impl std::fmt::Debug for AesCtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesCtr(..)")
    }
}

impl AesCtr {
    /// A keystream for `key` positioned at byte 0.
    pub fn new(key: &[u8; 16]) -> Self {
        let iv = [0u8; 16];
        AesCtr {
            cipher: Aes128Ctr::new(key.into(), &iv.into()),
        }
    }

    /// A keystream for `key` positioned at byte `offset`.
    pub fn at(key: &[u8; 16], offset: u64) -> Self {
        let mut ctr = AesCtr::new(key);
        ctr.seek(offset);
        ctr
    }

    /// Moves to byte `offset` of the keystream.
    pub fn seek(&mut self, offset: u64) {
        self.cipher.seek(offset);
    }

    /// Encrypts or decrypts `data` in place and advances the keystream.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.cipher.apply_keystream(data);
    }
}

/// Encrypts or decrypts `data` in place with `key` starting at keystream byte `offset`.
pub fn aes_ctr_at(key: &[u8; 16], offset: u64, data: &mut [u8]) {
    AesCtr::at(key, offset).apply(data);
}

/// Tahoe's dirnode MAC: `SHA256((key ⊕ 0x5c…) ‖ SHA256((key ⊕ 0x36…) ‖ data))` with the key XORed as is,
/// not padded to a block. Not RFC 2104; readers ignore it, writers produce it for identical bytes.
pub fn tahoe_hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let inner_key: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
    let outer_key: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Sha256::new();
    inner.update(&inner_key);
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(&outer_key);
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seek_equals_full_decrypt() {
        let key = [7u8; 16];
        let mut whole = vec![0u8; 5000];
        aes_ctr_at(&key, 0, &mut whole);
        for start in [0usize, 1, 15, 16, 17, 4095, 4999] {
            let mut part = vec![0u8; 5000 - start];
            aes_ctr_at(&key, start as u64, &mut part);
            assert_eq!(part, whole[start..]);
        }
    }

    #[test]
    fn encrypt_then_decrypt_is_identity() {
        let key = [9u8; 16];
        let mut data = b"hello world".to_vec();
        aes_ctr_at(&key, 0, &mut data);
        assert_ne!(data, b"hello world");
        aes_ctr_at(&key, 0, &mut data);
        assert_eq!(data, b"hello world");
    }
}
