//! Helpers for the crate's unit tests.

use std::sync::Arc;

use filenode::grid::upload::UploadParams;
use filenode::grid::{ClientSecrets, Grid, ServerEntry};
use filenode::mutable::keys::KeyPool;
use storage::StorageClient;
use storage::server::{LocalStorageClient, StorageConfig, StorageServer};

/// A client over `count` real storage servers in temporary directories.
pub(crate) fn grid(count: usize) -> (tempfile::TempDir, Arc<Grid>) {
    let root = tempfile::tempdir().unwrap();
    let entries = (0..count)
        .map(|i| {
            let mut config = StorageConfig::new(root.path().join(format!("server{i}")));
            config.node_id = [i as u8; 20];
            let server = Arc::new(StorageServer::open(config).unwrap());
            ServerEntry {
                server_id: format!("v0-test{i}"),
                nickname: format!("server{i}"),
                permutation_seed: vec![i as u8; 32],
                preferred: false,
                lease_seed: [i as u8; 20],
                client: Arc::new(LocalStorageClient::new(server)) as Arc<dyn StorageClient>,
                request_timeout: std::time::Duration::from_secs(5),
                speed: Default::default(),
            }
        })
        .collect();
    let params = UploadParams {
        needed: 2,
        happy: 3,
        total: 4,
        ..UploadParams::default()
    };
    let client = Grid::with_key_pool(
        ClientSecrets {
            lease_secret: b"frontend unit tests".to_vec(),
            convergence: Some(vec![3; 32]),
        },
        params,
        KeyPool::new(0),
    );
    client.set_servers(entries);
    (root, Arc::new(client))
}

/// Replaces the children of the writable directory `dir` with `children` (name, read cap), packed
/// and written straight into the directory's mutable file: the names bypass every check
/// `DirNode` makes, as a hostile directory owner's would.
pub(crate) async fn write_raw_children(
    grid: &Arc<Grid>,
    dir: &filenode::cap::DirCap,
    children: &[(&str, &filenode::cap::Cap)],
) {
    let entries: Vec<filenode::dirnode::DirEntry> = children
        .iter()
        .map(|(name, cap)| filenode::dirnode::DirEntry {
            name: (*name).to_owned(),
            ro_uri: cap.to_string(),
            rw_uri: None,
            metadata_json: "{}".to_owned(),
        })
        .collect();
    filenode::node::FileNode::new(grid, dir.file().clone())
        .overwrite_bytes(filenode::dirnode::pack(&entries, None))
        .await
        .unwrap();
}
