//! RSA key → write key, read key, storage index and fingerprint (tahoe-formats.md §6.1).
//!
//! Pure but for [`MutableKey::generate`], which draws from the OS's random source. Keeping keys
//! generated ahead on a thread is [`KeyPool`](crate::grid::KeyPool)'s job, in `grid`.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};

use crate::cap::{MutableAccess, MutableCap, MutableFormat};
use crate::hashes::{ssk_pubkey_fingerprint_hash, ssk_writekey_hash};

/// A key that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM or DER does not hold an RSA private key.
    #[error("not an RSA private key: {0}")]
    Parse(String),
    /// The key cannot be re-encoded (should not happen for a parsed key).
    #[error("cannot encode the RSA key: {0}")]
    Encode(String),
}

/// A mutable file's signing key with the encodings its derivations hash.
pub struct MutableKey {
    private_key: rsa::RsaPrivateKey,
    privkey_der: Vec<u8>,
    pubkey_der: Vec<u8>,
}

impl std::fmt::Debug for MutableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MutableKey(..)")
    }
}

impl MutableKey {
    /// Wraps a private key.
    pub fn new(private_key: rsa::RsaPrivateKey) -> Result<Self, KeyError> {
        let privkey_der = private_key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?
            .as_bytes()
            .to_vec();
        let pubkey_der = private_key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?
            .as_bytes()
            .to_vec();
        Ok(MutableKey {
            private_key,
            privkey_der,
            pubkey_der,
        })
    }

    /// Generates a new RSA-2048 key with e = 65537 (slow: 0.1–1 s; use a [`KeyPool`](crate::grid::KeyPool) on hot paths).
    pub fn generate() -> Result<Self, KeyError> {
        let key =
            rsa::RsaPrivateKey::new(&mut rand::rng(), 2048).map_err(|e| KeyError::Encode(e.to_string()))?;
        Self::new(key)
    }

    /// Loads a PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
            .map_err(|e| KeyError::Parse(e.to_string()))?;
        Self::new(key)
    }

    /// Loads a PKCS#8 DER private key, as stored (encrypted) in mutable shares.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| KeyError::Parse(e.to_string()))?;
        Self::new(key)
    }

    /// The private key.
    pub fn private_key(&self) -> &rsa::RsaPrivateKey {
        &self.private_key
    }

    /// PKCS#8 DER of the private key.
    pub fn privkey_der(&self) -> &[u8] {
        &self.privkey_der
    }

    /// SubjectPublicKeyInfo DER of the public key.
    pub fn pubkey_der(&self) -> &[u8] {
        &self.pubkey_der
    }

    /// `H(writekey-tag, PKCS#8 DER)[:16]`.
    pub fn writekey(&self) -> [u8; 16] {
        ssk_writekey_hash(&self.privkey_der)
    }

    /// `H(pubkey-tag, SPKI DER)`.
    pub fn fingerprint(&self) -> [u8; 32] {
        ssk_pubkey_fingerprint_hash(&self.pubkey_der)
    }

    /// The write cap of a mutable file with this key in `format`.
    pub fn write_cap(&self, format: MutableFormat) -> MutableCap {
        MutableCap {
            format,
            access: MutableAccess::Write {
                writekey: self.writekey(),
            },
            fingerprint: self.fingerprint(),
        }
    }
}

/// The key pool lives in `grid` (it runs a thread); this path to it is kept for the code that
/// names it so.
pub use crate::grid::KeyPool;
