//! [`LocalStorageClient`]: the in-process [`StorageClient`], which runs each call of a shared
//! [`StorageServer`] on tokio's blocking pool. Grid tests use it as the loopback transport, and the
//! conformance suite runs against it as well as against HTTPS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use super::StorageServer;
use crate::api::{
    Allocation, CorruptShareRemoval, LeaseSecrets, ReadTestWriteResult, ReadVector, StorageClient,
    TestWriteVectors, UploadProgress, UploadSecret, VersionInfo, WholeShare, WriteEnabler,
};
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

/// A [`StorageClient`] that calls a [`StorageServer`] in the same process.
#[derive(Debug, Clone)]
pub struct LocalStorageClient {
    server: Arc<StorageServer>,
}

impl LocalStorageClient {
    /// Wraps a shared server.
    pub fn new(server: Arc<StorageServer>) -> Self {
        LocalStorageClient { server }
    }

    /// The server behind this client.
    pub fn server(&self) -> &Arc<StorageServer> {
        &self.server
    }

    async fn run<T, F>(&self, call: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&StorageServer) -> Result<T, StorageError> + Send + 'static,
    {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || call(&server))
            .await
            .map_err(|e| StorageError::Internal(format!("storage task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl StorageClient for LocalStorageClient {
    async fn version(&self) -> Result<VersionInfo, StorageError> {
        self.run(|server| Ok(server.version())).await
    }

    async fn allocate_buckets(
        &self,
        storage_index: StorageIndex,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        share_numbers: &BTreeSet<ShareNum>,
        allocated_size: u64,
    ) -> Result<Allocation, StorageError> {
        let (lease, upload, share_numbers) = (lease.clone(), upload.clone(), share_numbers.clone());
        self.run(move |server| {
            server.allocate_buckets(storage_index, &lease, &upload, &share_numbers, allocated_size)
        })
        .await
    }

    async fn write_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError> {
        let upload = upload.clone();
        self.run(move |server| server.write_share(storage_index, shnum, &upload, offset, &data))
            .await
    }

    fn allocates_on_write(&self) -> bool {
        true
    }

    async fn write_share_allocating(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        upload: &UploadSecret,
        allocated_size: u64,
        offset: u64,
        data: Bytes,
    ) -> Result<UploadProgress, StorageError> {
        let (lease, upload) = (lease.clone(), upload.clone());
        self.run(move |server| {
            server.open_upload_for_write(storage_index, shnum, &lease, &upload, allocated_size)?;
            server.write_share(storage_index, shnum, &upload, offset, &data)
        })
        .await
    }

    async fn abort_upload(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        upload: &UploadSecret,
    ) -> Result<(), StorageError> {
        let upload = upload.clone();
        self.run(move |server| server.abort_upload(storage_index, shnum, &upload))
            .await
    }

    async fn list_shares(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
    ) -> Result<BTreeSet<ShareNum>, StorageError> {
        self.run(move |server| server.list_shares(kind, storage_index))
            .await
    }

    async fn read_share(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        self.run(move |server| server.read_share(kind, storage_index, shnum, offset, len))
            .await
            .map(Bytes::from)
    }

    async fn advise_corrupt_share(
        &self,
        kind: ShareKind,
        storage_index: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<(), StorageError> {
        let reason = reason.to_owned();
        self.run(move |server| server.advise_corrupt_share(kind, storage_index, shnum, &reason))
            .await
    }

    async fn remove_corrupt_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        reason: &str,
    ) -> Result<CorruptShareRemoval, StorageError> {
        let reason = reason.to_owned();
        self.run(move |server| server.remove_corrupt_share(storage_index, shnum, &reason))
            .await
    }

    async fn put_whole_share(
        &self,
        storage_index: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        data: Bytes,
    ) -> Result<WholeShare, StorageError> {
        let lease = lease.clone();
        self.run(move |server| server.put_whole_share(storage_index, shnum, &lease, &data))
            .await
    }

    async fn add_or_renew_lease(
        &self,
        storage_index: StorageIndex,
        lease: &LeaseSecrets,
    ) -> Result<(), StorageError> {
        let lease = lease.clone();
        self.run(move |server| server.add_or_renew_lease(storage_index, &lease))
            .await
    }

    async fn read_test_write(
        &self,
        storage_index: StorageIndex,
        write_enabler: &WriteEnabler,
        lease: &LeaseSecrets,
        test_write_vectors: &BTreeMap<ShareNum, TestWriteVectors>,
        read_vector: &[ReadVector],
    ) -> Result<ReadTestWriteResult, StorageError> {
        let (write_enabler, lease) = (*write_enabler, lease.clone());
        let (test_write_vectors, read_vector) = (test_write_vectors.clone(), read_vector.to_vec());
        self.run(move |server| {
            server.read_test_write(
                storage_index,
                &write_enabler,
                &lease,
                &test_write_vectors,
                &read_vector,
            )
        })
        .await
    }
}
