//! Storing a whole small share in one request (a Tessera extension, `PUT
//! /storage/v1/tessera/immutable/:si/:shnum`): allocation, write and close together, which saves a
//! small upload the round trip between Tahoe's allocation and its write. The share is allocated,
//! written and closed (fsynced) exactly as by those requests, under a fresh upload secret that
//! never leaves the server, so nothing else can write to it; a share already held is compared byte
//! for byte instead.

use std::collections::BTreeSet;

use super::StorageServer;
use crate::api::{LeaseSecrets, UploadSecret, WHOLE_SHARE_LIMIT, WholeShare};
use crate::{ShareKind, ShareNum, StorageError, StorageIndex};

impl StorageServer {
    /// Stores `data` as the whole of immutable share `shnum` of `si` with `lease`. A share already
    /// held counts ([`WholeShare::AlreadyHeld`], the lease added or renewed) only when it is
    /// byte for byte `data`; a different one is [`StorageError::Conflict`], as a conflicting write
    /// is. [`StorageError::Refused`] when allocation refuses (another client's upload, no room);
    /// [`StorageError::ReadOnly`] on a read-only server, which still finds a share it holds.
    pub fn put_whole_share(
        &self,
        si: StorageIndex,
        shnum: ShareNum,
        lease: &LeaseSecrets,
        data: &[u8],
    ) -> Result<WholeShare, StorageError> {
        let size = data.len() as u64;
        if size == 0 || size > WHOLE_SHARE_LIMIT {
            return Err(StorageError::BadRequest(format!(
                "a whole share must be 1 to {WHOLE_SHARE_LIMIT} bytes, not {size}"
            )));
        }
        let upload = UploadSecret(rand::random::<[u8; 32]>().to_vec());
        let allocation = self.allocate_buckets(si, lease, &upload, &BTreeSet::from([shnum]), size)?;
        if allocation.allocated.contains(&shnum) {
            return match self.write_share(si, shnum, &upload, 0, data) {
                Ok(progress) if progress.complete => Ok(WholeShare::Stored),
                Ok(_) => {
                    let _ = self.abort_upload(si, shnum, &upload);
                    Err(StorageError::Internal(
                        "a whole share's write left it incomplete".to_owned(),
                    ))
                }
                Err(e) => {
                    let _ = self.abort_upload(si, shnum, &upload);
                    Err(e)
                }
            };
        }
        if allocation.already_have.contains(&shnum) {
            let held = self.read_share(ShareKind::Immutable, si, shnum, 0, size + 1)?;
            return if held == data {
                Ok(WholeShare::AlreadyHeld)
            } else {
                Err(StorageError::Conflict { offset: 0 })
            };
        }
        if self.config.readonly {
            return Err(StorageError::ReadOnly);
        }
        Err(allocation.refusal(shnum))
    }
}
