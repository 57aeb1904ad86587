//! Small immutable files in one round trip per share: the file is encoded in memory first, then
//! each share goes whole to its server on the ring ([`StorageClient::put_whole_share`]), share r to
//! the r-th server, which is where placement puts it on a grid of N or more writable servers that
//! hold nothing of the file. A Tessera server allocates, writes and closes the share in one
//! request; a Tahoe server is sent Tahoe's allocation and write (the client does it in steps).
//!
//! Anything out of the ordinary (a server fails, refuses, or holds a different share of the same
//! number, which may be a corrupt one) falls back to the general upload
//! ([`super::upload::upload_with_key`]'s rounds), which finds the shares stored here as already
//! held and verifies them like any others.
//!
//! [`StorageClient::put_whole_share`]: storage::StorageClient::put_whole_share

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::{Either, select};
use futures::stream::FuturesUnordered;
use storage::{ShareNum, StorageIndex};
use tracing::debug;

use super::upload::{KnownShares, UploadError, UploadParams, UploadProgress, UploadResult};
use super::{ClientSecrets, ServerEntry, WRITE_DEADLINE, permuted_servers, run_blocking};
use crate::cap::FileCap;
use crate::immutable::{ChkParams, MemorySink, encode_stream};

/// The largest share sent whole: files up to about three times this at k = 3 (the encoded shares
/// of one such upload, N of them, are held in memory together).
pub(super) const SMALL_SHARE_LIMIT: u64 = 256 * 1024;

/// The least a straggler is waited for once the others alone keep `shares.happy`, beyond as long
/// again as the others took.
const STRAGGLER_GRACE: Duration = Duration::from_millis(100);

/// What [`upload_small`] did.
pub(super) enum Small<R> {
    /// The file is stored.
    Done(UploadResult),
    /// The general upload must place it; the input is given back (read to its end).
    Fallback(R),
}

/// Whether an upload of shares of `share_size` bytes to `servers` can go whole.
pub(super) fn eligible(
    servers: &[ServerEntry],
    params: &UploadParams,
    share_size: u64,
    known: &KnownShares,
) -> bool {
    share_size <= SMALL_SHARE_LIMIT
        && servers.len() >= usize::from(params.total)
        && known.good.is_empty()
        && known.corrupt.is_empty()
}

/// Encodes `input` in memory and sends each share whole to its server (see the module docs).
#[allow(
    clippy::too_many_arguments,
    reason = "upload_with_key's inputs, passed through from its one call site"
)]
pub(super) async fn upload_small<R: Read + Send + 'static>(
    servers: &[ServerEntry],
    secrets: &ClientSecrets,
    params: &UploadParams,
    chk_params: &ChkParams,
    input: R,
    key: [u8; 16],
    size: u64,
    progress: &mut Option<UploadProgress>,
) -> Result<Small<R>, UploadError> {
    let storage_index = StorageIndex(crate::hashes::storage_index_hash(&key));
    let ordered: Vec<&ServerEntry> = permuted_servers(storage_index.as_bytes(), servers)
        .into_iter()
        .take(usize::from(params.total))
        .collect();
    let chk_params = *chk_params;
    let (input, encoded) = run_blocking(move || {
        let mut input = input;
        let mut sink = MemorySink::default();
        let encoded = encode_stream(&mut input, size, key, &chk_params, &mut sink, None);
        (input, encoded.map(|encoded| (encoded, sink.shares)))
    })
    .await;
    let (encoded, shares) = encoded?;
    if let Some(callback) = progress.as_mut() {
        callback(size);
    }

    let started = Instant::now();
    let mut puts: FuturesUnordered<_> = ordered
        .iter()
        .zip(shares)
        .enumerate()
        .map(|(shnum, (server, share))| {
            let shnum = shnum as ShareNum;
            let lease = secrets.lease_secrets(storage_index.as_bytes(), &server.lease_seed);
            let share = Bytes::from(share);
            async move {
                let put = server
                    .client
                    .put_whole_share(storage_index, shnum, &lease, share.clone());
                (shnum, server.timed(WRITE_DEADLINE, share.len() as u64, put).await)
            }
        })
        .collect();
    let mut placement: BTreeMap<ShareNum, Vec<String>> = BTreeMap::new();
    let mut trouble = false;
    let mut grace: Option<futures_timer::Delay> = None;
    loop {
        let next = match grace.as_mut() {
            None => puts.next().await,
            Some(delay) => match select(puts.next(), delay).await {
                Either::Left((next, _)) => next,
                Either::Right(((), _)) => break,
            },
        };
        let Some((shnum, answer)) = next else { break };
        match answer {
            Ok(_) => {
                placement.insert(shnum, vec![ordered[usize::from(shnum)].name()]);
            }
            Err(e) => {
                debug!(server = %ordered[usize::from(shnum)].name(), shnum, error = %e, "a whole share was not stored; the general upload takes over");
                trouble = true;
            }
        }
        if grace.is_none() && !trouble && placement.len() >= usize::from(params.happy) && !puts.is_empty() {
            grace = Some(futures_timer::Delay::new(started.elapsed().max(STRAGGLER_GRACE)));
        }
    }
    let stragglers: Vec<String> = (0..params.total)
        .filter(|shnum| !placement.contains_key(shnum))
        .map(|shnum| ordered[usize::from(shnum)].name())
        .collect();
    if trouble || placement.len() < usize::from(params.happy.max(params.needed)) {
        return Ok(Small::Fallback(input));
    }
    Ok(Small::Done(UploadResult {
        cap: FileCap::Chk(encoded.cap),
        size,
        happiness: placement.len(),
        placement,
        stragglers,
    }))
}
