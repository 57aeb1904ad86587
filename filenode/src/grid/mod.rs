//! Talking to the grid: which servers hold which shares, and uploading to and downloading from
//! storage servers through `storage::StorageClient` (in process or over HTTPS alike).
//!
//! Runtime-agnostic: futures are driven by whoever awaits them (the node uses tokio), and CPU-bound
//! work runs on its own threads or the rayon pool.

pub mod download;
pub mod placement;
pub mod upload;

use std::sync::Arc;

use storage::StorageClient;
use storage::api::LeaseSecrets;

use crate::hashes;

/// A storage server as a client knows it: from an announcement or `servers.yaml`.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    /// The server id (`v0-<base32 ed25519 key>`), for logs and status.
    pub server_id: String,
    /// The server's nickname.
    pub nickname: String,
    /// Ranks the server on the permuted ring.
    pub permutation_seed: Vec<u8>,
    /// The 20-byte seed of per-server lease secrets (the server's tub id).
    pub lease_seed: [u8; 20],
    /// How to reach it.
    pub client: Arc<dyn StorageClient>,
}

impl ServerEntry {
    /// A short name for messages: the nickname, else the start of the id.
    pub fn name(&self) -> String {
        if self.nickname.is_empty() {
            self.server_id.chars().take(12).collect()
        } else {
            self.nickname.clone()
        }
    }
}

/// The client's long-lived secrets.
#[derive(Clone)]
pub struct ClientSecrets {
    /// The lease secret (`private/secret`) from which all lease secrets derive.
    pub lease_secret: Vec<u8>,
    /// The convergence secret (`private/convergence`); `None` means random keys.
    pub convergence: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecrets(..)")
    }
}

impl ClientSecrets {
    /// The lease secrets for one storage index on one server (tahoe-formats.md §1.3).
    pub fn lease_secrets(&self, storage_index: &[u8; 16], lease_seed: &[u8; 20]) -> LeaseSecrets {
        let renew = hashes::my_renewal_secret_hash(&self.lease_secret);
        let cancel = hashes::my_cancel_secret_hash(&self.lease_secret);
        let file_renew = hashes::file_renewal_secret_hash(&renew, storage_index);
        let file_cancel = hashes::file_cancel_secret_hash(&cancel, storage_index);
        LeaseSecrets {
            renew: hashes::bucket_renewal_secret_hash(&file_renew, lease_seed),
            cancel: hashes::bucket_cancel_secret_hash(&file_cancel, lease_seed),
        }
    }
}

/// Orders servers on the permuted ring for a storage index.
pub fn permuted_servers<'a>(storage_index: &[u8; 16], servers: &'a [ServerEntry]) -> Vec<&'a ServerEntry> {
    let seeds: Vec<&[u8]> = servers.iter().map(|s| s.permutation_seed.as_slice()).collect();
    placement::permuted_order(storage_index, &seeds).into_iter().map(|i| &servers[i]).collect()
}

/// Runs a blocking closure on its own thread and awaits its result without tying up the caller's
/// executor.
pub(crate) async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("tessera-blocking".into())
        .spawn(move || {
            let _ = done.send(work());
        })
        .expect("invariant: the OS can start a thread");
    result.await.expect("invariant: the blocking job sends its result")
}
