//! `TestGrid`: an in-process grid of real storage servers (share files in temporary directories),
//! the Rust counterpart of Tahoe's NoNetworkGrid, with fault injection (break, hang, restore a
//! server) and share surgery (find, corrupt, delete shares).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use bytes::Bytes;
use filenode::grid::{ClientSecrets, ServerEntry};
use storage::api::{
    Allocation, CorruptShareRemoval, LeaseSecrets, ReadTestWriteResult, ReadVector, ShareKind,
    TestWriteVectors, UploadProgress, UploadSecret, VersionInfo, WholeShare, WriteEnabler,
    put_whole_share_in_steps, write_share_allocating_in_steps,
};
use storage::server::{LocalStorageClient, StorageConfig, StorageServer};
use storage::{ShareNum, StorageClient, StorageError, StorageIndex};

const HEALTHY: u8 = 0;
const BROKEN: u8 = 1;
const HANGING: u8 = 2;

/// How the client reaches the grid's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Direct calls into each `StorageServer` (`LocalStorageClient`).
    InProcess,
    /// The real HTTPS protocol to a server bound on 127.0.0.1:0 (`HttpStorageClient`).
    Https,
}

/// A storage client whose server can be made to fail or hang on demand.
#[derive(Debug)]
pub struct FaultyClient {
    inner: std::sync::RwLock<Option<Arc<dyn StorageClient>>>,
    state: AtomicU8,
    /// Answers Tessera's protocol extensions as a Tahoe server does (404).
    tahoe_like: AtomicBool,
    /// Allocation requests (`POST /storage/v1/immutable/:si`) sent through it.
    allocations: std::sync::atomic::AtomicUsize,
}

impl FaultyClient {
    async fn gate(&self) -> Result<Arc<dyn StorageClient>, StorageError> {
        match self.state.load(Ordering::SeqCst) {
            BROKEN => Err(StorageError::Transport("server broken by the test".into())),
            HANGING => futures::future::pending().await,
            _ => self
                .inner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .ok_or_else(|| StorageError::Transport("server restarting".into())),
        }
    }

    fn new(inner: Arc<dyn StorageClient>) -> Self {
        FaultyClient {
            inner: std::sync::RwLock::new(Some(inner)),
            state: AtomicU8::new(HEALTHY),
            tahoe_like: AtomicBool::new(false),
            allocations: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl StorageClient for FaultyClient {
    async fn version(&self) -> Result<VersionInfo, StorageError> {
        self.gate().await?.version().await
    }
    async fn allocate_buckets(
        &self,
        si: StorageIndex,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        shares: &BTreeSet<ShareNum>,
        size: u64,
    ) -> Result<Allocation, StorageError> {
        self.allocations.fetch_add(1, Ordering::SeqCst);
        self.gate()
            .await?
            .allocate_buckets(si, lease, upload, shares, size)
            .await
    }
    async fn write_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError> {
        self.gate()
            .await?
            .write_share(si, shnum, upload, offset, data)
            .await
    }
    fn allocates_on_write(&self) -> bool {
        !self.tahoe_like.load(Ordering::SeqCst)
            && self
                .inner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .is_some_and(|inner| inner.allocates_on_write())
    }
    async fn write_share_allocating(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        size: u64,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError> {
        if self.tahoe_like.load(Ordering::SeqCst) {
            // Tahoe's requests, each through this client's faults.
            return write_share_allocating_in_steps(self, si, shnum, lease, upload, size, offset, data).await;
        }
        self.gate()
            .await?
            .write_share_allocating(si, shnum, lease, upload, size, offset, data)
            .await
    }
    async fn abort_upload(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
    ) -> Result<(), StorageError> {
        self.gate().await?.abort_upload(si, shnum, upload).await
    }
    async fn list_shares(
        &self,
        kind: ShareKind,
        si: StorageIndex,
    ) -> Result<BTreeSet<ShareNum>, StorageError> {
        self.gate().await?.list_shares(kind, si).await
    }
    async fn read_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        self.gate().await?.read_share(kind, si, shnum, offset, len).await
    }
    async fn advise_corrupt_share(
        &self,
        kind: ShareKind,
        si: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<(), StorageError> {
        self.gate()
            .await?
            .advise_corrupt_share(kind, si, shnum, reason)
            .await
    }
    async fn remove_corrupt_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<CorruptShareRemoval, StorageError> {
        let inner = self.gate().await?;
        if self.tahoe_like.load(Ordering::SeqCst) {
            // What a Tahoe server answers for a route it does not have.
            return Err(StorageError::NotFound("404 Not Found".into()));
        }
        inner.remove_corrupt_share(si, shnum, reason).await
    }
    async fn put_whole_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        data: Bytes,
    ) -> Result<WholeShare, StorageError> {
        if self.tahoe_like.load(Ordering::SeqCst) {
            // Tahoe's requests, each through this client's faults.
            return put_whole_share_in_steps(self, si, shnum, lease, data).await;
        }
        self.gate().await?.put_whole_share(si, shnum, lease, data).await
    }
    fn warm(&self, connections: usize) {
        if self.state.load(Ordering::SeqCst) == HEALTHY
            && let Some(inner) = self
                .inner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
        {
            inner.warm(connections);
        }
    }
    async fn add_or_renew_lease(&self, si: StorageIndex, lease: &LeaseSecrets) -> Result<(), StorageError> {
        self.gate().await?.add_or_renew_lease(si, lease).await
    }
    async fn read_test_write(
        &self,
        si: StorageIndex,
        enabler: &WriteEnabler,
        lease: &LeaseSecrets,
        tw: &std::collections::BTreeMap<ShareNum, TestWriteVectors>,
        read: &[ReadVector],
    ) -> Result<ReadTestWriteResult, StorageError> {
        self.gate()
            .await?
            .read_test_write(si, enabler, lease, tw, read)
            .await
    }
}

/// One server of the grid.
#[derive(Debug)]
pub struct TestServer {
    /// The share store.
    pub server: Arc<StorageServer>,
    /// The HTTPS front of the store, with [`Transport::Https`].
    pub https: Option<storage::testing::HttpsTestServer>,
    /// The emulated network link the client reaches the HTTPS front through, with
    /// [`TestGrid::with_links`].
    pub link: Option<storage::testing::EmulatedLink>,
    /// The client the grid hands out (with fault injection).
    pub client: Arc<FaultyClient>,
    /// Its storage directory.
    pub dir: PathBuf,
}

/// An in-process grid.
#[derive(Debug)]
pub struct TestGrid {
    _root: tempfile::TempDir,
    /// The servers, in creation order.
    pub servers: Vec<TestServer>,
    /// The client's secrets.
    pub secrets: ClientSecrets,
    /// How long a request may hang before the client gives up on a server.
    pub request_timeout: std::time::Duration,
}

impl TestGrid {
    /// A grid of `count` healthy servers reached in process, each with default settings.
    pub fn new(count: usize) -> Self {
        Self::with_config(count, |_, _| {})
    }

    /// An in-process grid whose server configurations `adjust` may change (by server index).
    pub fn with_config(count: usize, adjust: impl Fn(usize, &mut StorageConfig)) -> Self {
        let (root, stores) = Self::stores(count, adjust);
        let servers = stores
            .into_iter()
            .map(|(server, dir)| {
                let client = Arc::new(FaultyClient::new(Arc::new(LocalStorageClient::new(Arc::clone(
                    &server,
                )))));
                TestServer {
                    server,
                    https: None,
                    link: None,
                    client,
                    dir,
                }
            })
            .collect();
        Self::assemble(root, servers)
    }

    /// A grid of `count` servers reached over `transport`.
    pub async fn build(count: usize, transport: Transport) -> Self {
        match transport {
            Transport::InProcess => Self::new(count),
            Transport::Https => {
                let (root, stores) = Self::stores(count, |_, _| {});
                let mut servers = Vec::new();
                for (server, dir) in stores {
                    let https = storage::testing::HttpsTestServer::start(Arc::clone(&server))
                        .await
                        .expect("start an HTTPS storage server");
                    let client = Arc::new(FaultyClient::new(Arc::new(https.client())));
                    servers.push(TestServer {
                        server,
                        https: Some(https),
                        link: None,
                        client,
                        dir,
                    });
                }
                Self::assemble(root, servers)
            }
        }
    }

    /// A grid of `count` servers over HTTPS, each behind its own emulated network link of shape
    /// `link` (delay, rate; faults through [`TestGrid::link`]): the client's NURL for each server
    /// names its link's address, so every byte goes through it.
    pub async fn with_links(count: usize, link: storage::testing::LinkConfig) -> Self {
        let (root, stores) = Self::stores(count, |_, _| {});
        let mut servers = Vec::new();
        for (server, dir) in stores {
            let https = storage::testing::HttpsTestServer::start(Arc::clone(&server))
                .await
                .expect("start an HTTPS storage server");
            let emulated = storage::testing::EmulatedLink::start(https.addr, link)
                .await
                .expect("start an emulated link");
            let nurl = https.nurl_via(emulated.addr());
            let client = storage::http::HttpStorageClient::new(&nurl).expect("a client of the link");
            servers.push(TestServer {
                server,
                https: Some(https),
                link: Some(emulated),
                client: Arc::new(FaultyClient::new(Arc::new(client))),
                dir,
            });
        }
        Self::assemble(root, servers)
    }

    /// Server `i`'s emulated link (a grid made by [`TestGrid::with_links`]).
    pub fn link(&self, i: usize) -> &storage::testing::EmulatedLink {
        self.servers[i]
            .link
            .as_ref()
            .expect("the grid was made with links (TestGrid::with_links)")
    }

    fn stores(
        count: usize,
        adjust: impl Fn(usize, &mut StorageConfig),
    ) -> (tempfile::TempDir, Vec<(Arc<StorageServer>, PathBuf)>) {
        let root = tempfile::tempdir().expect("a temporary directory");
        let stores = (0..count)
            .map(|i| {
                let dir = root.path().join(format!("server{i:02}"));
                let mut config = StorageConfig::new(dir.clone());
                config.node_id = [i as u8; 20];
                adjust(i, &mut config);
                (
                    Arc::new(StorageServer::open(config).expect("open a storage server")),
                    dir,
                )
            })
            .collect();
        (root, stores)
    }

    fn assemble(root: tempfile::TempDir, servers: Vec<TestServer>) -> Self {
        TestGrid {
            _root: root,
            servers,
            secrets: ClientSecrets {
                lease_secret: b"test lease secret".to_vec(),
                convergence: Some(vec![7; 32]),
            },
            request_timeout: std::time::Duration::from_secs(2),
        }
    }

    /// The servers as the client sees them.
    pub fn entries(&self) -> Vec<ServerEntry> {
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| ServerEntry {
                server_id: format!("v0-test{i:02}"),
                nickname: format!("server{i:02}"),
                permutation_seed: vec![i as u8; 32],
                preferred: false,
                lease_seed: [i as u8; 20],
                client: Arc::clone(&s.client) as Arc<dyn StorageClient>,
                request_timeout: self.request_timeout,
                speed: Default::default(),
            })
            .collect()
    }

    /// Allocation requests the client has sent to all servers so far (an allocating write to a
    /// Tahoe-like server sends one too).
    pub fn allocation_requests(&self) -> usize {
        self.servers
            .iter()
            .map(|s| s.client.allocations.load(Ordering::SeqCst))
            .sum()
    }

    /// Makes server `i` fail every request.
    pub fn break_server(&self, i: usize) {
        self.servers[i].client.state.store(BROKEN, Ordering::SeqCst);
    }

    /// Makes server `i` never answer.
    pub fn hang_server(&self, i: usize) {
        self.servers[i].client.state.store(HANGING, Ordering::SeqCst);
    }

    /// Makes server `i` answer Tessera's protocol extensions as a Tahoe server does (404), e.g.
    /// the removal of a corrupt share.
    pub fn make_tahoe_like(&self, i: usize) {
        self.servers[i].client.tahoe_like.store(true, Ordering::SeqCst);
    }

    /// Makes server `i` healthy again.
    pub fn restore_server(&self, i: usize) {
        self.servers[i].client.state.store(HEALTHY, Ordering::SeqCst);
    }

    /// Restarts in-process server `i`: the store is closed (uploads in flight are lost, as when the
    /// process dies) and opened again from its directory.
    pub fn restart_server(&mut self, i: usize) {
        let entry = &mut self.servers[i];
        assert!(entry.https.is_none(), "restart_server is for in-process grids");
        let config = entry.server.config().clone();
        // Drop every handle on the old store so that its directory lock is released.
        *entry
            .client
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let scratch = StorageConfig::new(entry.dir.with_extension("restarting"));
        let old = std::mem::replace(
            &mut entry.server,
            Arc::new(StorageServer::open(scratch).expect("scratch store")),
        );
        drop(old);
        let reopened = Arc::new(StorageServer::open(config).expect("reopen the storage server"));
        entry.server = Arc::clone(&reopened);
        *entry
            .client
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Arc::new(LocalStorageClient::new(reopened)));
    }

    /// Every (server index, share number) holding an immutable share of `si`.
    pub fn find_shares(&self, si: StorageIndex) -> Vec<(usize, ShareNum)> {
        let mut found = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            for shnum in s
                .server
                .list_shares(ShareKind::Immutable, si)
                .expect("list shares")
            {
                found.push((i, shnum));
            }
        }
        found
    }

    /// Every (server index, share number) holding a mutable share of `si`.
    pub fn find_mutable_shares(&self, si: StorageIndex) -> Vec<(usize, ShareNum)> {
        let mut found = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            for shnum in s.server.list_shares(ShareKind::Mutable, si).expect("list shares") {
                found.push((i, shnum));
            }
        }
        found
    }

    /// Where a share's data starts in its container file: after the 12-byte header of an
    /// immutable container, at byte 468 of a mutable one.
    fn share_data_start(container: &[u8]) -> usize {
        if container.starts_with(b"Tahoe mutable container v") {
            468
        } else {
            12
        }
    }

    /// The share data of a share of either kind (the container's header and leases left out).
    pub fn share_data(&self, server: usize, si: StorageIndex, shnum: ShareNum) -> Vec<u8> {
        let bytes = std::fs::read(self.share_path(server, si, shnum)).expect("read share file");
        let start = Self::share_data_start(&bytes);
        let len = if start == 12 {
            let leases = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
            bytes.len() - 12 - 72 * leases
        } else {
            u64::from_be_bytes(bytes[84..92].try_into().expect("8 bytes")) as usize
        };
        bytes[start..start + len].to_vec()
    }

    /// Flips one bit of the share data of a share of either kind, `offset` bytes in.
    pub fn corrupt_share_data(&self, server: usize, si: StorageIndex, shnum: ShareNum, offset: u64) {
        let path = self.share_path(server, si, shnum);
        let mut bytes = std::fs::read(&path).expect("read share file");
        let start = Self::share_data_start(&bytes);
        bytes[start + offset as usize] ^= 0x01;
        std::fs::write(&path, bytes).expect("write share file");
    }

    /// The path of a share file on disk.
    pub fn share_path(&self, server: usize, si: StorageIndex, shnum: ShareNum) -> PathBuf {
        self.servers[server]
            .dir
            .join("shares")
            .join(si.prefix())
            .join(si.to_string())
            .join(shnum.to_string())
    }

    /// Flips one bit of a share file at `offset` bytes into its share data (after the 12-byte
    /// container header).
    pub fn corrupt_share(&self, server: usize, si: StorageIndex, shnum: ShareNum, offset: u64) {
        let path = self.share_path(server, si, shnum);
        let mut bytes = std::fs::read(&path).expect("read share file");
        bytes[12 + offset as usize] ^= 0x01;
        std::fs::write(&path, bytes).expect("write share file");
    }

    /// Deletes a share file.
    pub fn delete_share(&self, server: usize, si: StorageIndex, shnum: ShareNum) {
        std::fs::remove_file(self.share_path(server, si, shnum)).expect("delete share file");
    }
}

/// Reads a mutable file from whole shares (share number, share data) through the production
/// retrieve path: the shares are written into the slot of one in-process storage server, and
/// [`filenode::grid::mutable::read_latest`] finds them, checks their signatures, verifies every
/// block tree and chain, picks the newest recoverable version and decodes it, as it does on a grid.
/// Shares that are not valid shares of `cap` are stored too (the reader must pass them over).
pub async fn retrieve_from_shares(
    cap: &filenode::cap::MutableCap,
    shares: &[(usize, Vec<u8>)],
) -> Result<Vec<u8>, filenode::grid::mutable::MutableError> {
    use std::collections::BTreeMap;
    use storage::api::WriteVector;
    let grid = TestGrid::new(1);
    let writes: BTreeMap<ShareNum, TestWriteVectors> = shares
        .iter()
        .map(|(shnum, data)| {
            let shnum = ShareNum::try_from(*shnum).expect("a share number fits in 16 bits");
            let write = TestWriteVectors {
                test: Vec::new(),
                write: vec![WriteVector {
                    offset: 0,
                    data: data.clone(),
                }],
                new_length: None,
            };
            (shnum, write)
        })
        .collect();
    let lease = LeaseSecrets {
        renew: [1; 32],
        cancel: [2; 32],
    };
    let written = grid.servers[0]
        .server
        .read_test_write(cap.storage_index(), &WriteEnabler([3; 32]), &lease, &writes, &[])
        .expect("the shares are stored");
    assert!(written.success, "a new slot takes every share");
    filenode::grid::mutable::read_latest(&grid.entries(), cap, 1, None)
        .await
        .map(|(_, contents)| contents)
}
