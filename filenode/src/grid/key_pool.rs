//! Pre-generated RSA signing keys for new mutable files and directories, made on a thread of the
//! pool's own so that `mkdir` does not wait for key generation.

use crate::mutable::keys::{KeyError, MutableKey};

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
