//! RSA key → write key, read key, storage index and fingerprint (tahoe-formats.md §6.1).

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

    /// Generates a new RSA-2048 key with e = 65537 (slow: 0.1–1 s; use a [`KeyPool`] on hot paths).
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

/// Pre-generated signing keys, so creating a mutable file or directory does not wait for RSA key
/// generation. A background thread refills the pool up to its size; [`KeyPool::take`] falls back
/// to generating a key on a thread of its own when the pool is empty.
#[derive(Debug, Clone)]
pub struct KeyPool {
    shared: std::sync::Arc<PoolShared>,
}

#[derive(Debug, Default)]
struct PoolShared {
    keys: std::sync::Mutex<Vec<MutableKey>>,
    wanted: std::sync::Condvar,
    size: usize,
}

impl KeyPool {
    /// A pool that keeps `size` keys ready (0: generate every key on demand).
    pub fn new(size: usize) -> Self {
        let shared = std::sync::Arc::new(PoolShared {
            size,
            ..Default::default()
        });
        if size > 0 {
            let weak = std::sync::Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name("tessera-keygen".into())
                .spawn(move || refill(&weak))
                .expect("invariant: the OS can start a thread");
        }
        KeyPool { shared }
    }

    /// A fresh key: from the pool if one is ready, else generated now (off the caller's executor).
    pub async fn take(&self) -> Result<MutableKey, KeyError> {
        let ready = {
            let mut keys = self
                .shared
                .keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            keys.pop()
        };
        self.shared.wanted.notify_one();
        match ready {
            Some(key) => Ok(key),
            None => crate::grid::run_blocking(MutableKey::generate).await,
        }
    }

    /// Keys ready right now.
    pub fn ready(&self) -> usize {
        self.shared
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// The refill loop: runs until the pool is dropped.
fn refill(shared: &std::sync::Weak<PoolShared>) {
    loop {
        let Some(pool) = shared.upgrade() else { return };
        let full = {
            let keys = pool
                .keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let keys = pool
                .wanted
                .wait_timeout_while(keys, std::time::Duration::from_secs(1), |k| k.len() >= pool.size)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            keys.len() >= pool.size
        };
        drop(pool);
        if full {
            continue;
        }
        let Ok(key) = MutableKey::generate() else { return };
        let Some(pool) = shared.upgrade() else { return };
        pool.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(key);
    }
}
