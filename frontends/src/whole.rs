//! Reading a small mutable file whole before serving it, so that a reader racing a writer gets one
//! version complete. A version is readable only while its shares hold it: a writer replacing it
//! part-way through a streamed read leaves the rest unreadable, and the transfer would end short.
//! Read whole first, a version change makes the read start over on the new version (filenode's
//! `read_latest`), before the client has been sent anything.

use bytes::Bytes;
use filenode::cap::FileCap;
use filenode::node::{FileNode, FileReader, NodeError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest range of a mutable file read whole before it is served; larger ones stream.
pub(crate) const WHOLE_READ_LIMIT: u64 = 8 << 20;

/// How many bytes of such whole reads the gateway holds at once, over every frontend and client:
/// past it, reads stream (and may end short if a writer replaces the version meanwhile).
const WHOLE_READ_BUDGET: usize = 128 << 20;

fn budget() -> &'static std::sync::Arc<Semaphore> {
    static BUDGET: std::sync::OnceLock<std::sync::Arc<Semaphore>> = std::sync::OnceLock::new();
    BUDGET.get_or_init(|| std::sync::Arc::new(Semaphore::new(WHOLE_READ_BUDGET)))
}

/// Bytes of [`WHOLE_READ_BUDGET`] held for `len` bytes, if it has room now.
pub(crate) fn reserve(len: u64) -> Option<OwnedSemaphorePermit> {
    let permits = u32::try_from(len.max(1)).ok()?;
    std::sync::Arc::clone(budget())
        .try_acquire_many_owned(permits)
        .ok()
}

/// A file opened for reading, with the budget its contents hold (if read whole).
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) reader: FileReader,
    pub(crate) held: Option<OwnedSemaphorePermit>,
}

/// How many times a whole read starts over when the version it reads is replaced meanwhile.
const ATTEMPTS: u32 = 8;

/// Opens `file` for reading: a mutable file of at most [`WHOLE_READ_LIMIT`] bytes is read whole
/// now (see the module), while the budget allows; anything else is opened to stream.
pub(crate) async fn open(file: &FileNode) -> Result<Opened, NodeError> {
    let mutable = matches!(file.cap(), FileCap::Mutable(_));
    for _ in 0..ATTEMPTS {
        let reader = file.open().await?;
        if !mutable || reader.size() > WHOLE_READ_LIMIT {
            return Ok(Opened { reader, held: None });
        }
        let Some(held) = reserve(reader.size()) else {
            return Ok(Opened { reader, held: None });
        };
        match reader.read(0, u64::MAX).await {
            Ok(contents) => {
                return Ok(Opened {
                    reader: FileReader::Lit(Bytes::from(contents)),
                    held: Some(held),
                });
            }
            // Replaced while it was read: open the newest version (its size is checked again).
            Err(NodeError::VersionChanged(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Opened {
        reader: file.open().await?,
        held: None,
    })
}
