//! Tahoe's packed directory format (tahoe-formats.md §7): the plaintext of a directory is the
//! concatenation of `netstring(entry)` per child, sorted by name, where
//! `entry = netstring(name) ‖ netstring(ro_uri) ‖ netstring(rwcapdata) ‖ netstring(metadata_json)`.
//! In a writable directory `rwcapdata = salt ‖ AES-CTR(key)(rw_uri) ‖ mac`, with the salt derived from
//! the child's write cap and the key from the salt and the directory's write key. Pure: no IO.

use crate::crypto::{aes_ctr_at, tahoe_hmac};
use crate::hashes::{mutable_rwcap_key_hash, mutable_rwcap_salt_hash};
use crate::netstring::{split_netstring, write_netstring};

/// One child of a directory.
#[derive(Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The child's name (NFC-normalised UTF-8).
    pub name: String,
    /// The child's read-only cap (empty for none).
    pub ro_uri: String,
    /// The child's write cap, when the directory is writable and the child has one.
    pub rw_uri: Option<String>,
    /// The metadata, as the JSON text Tahoe stores.
    pub metadata_json: String,
}

impl std::fmt::Debug for DirEntry {
    /// Never prints a cap.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A packed directory that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirnodeError {
    /// The netstring framing is broken.
    #[error("directory entry {0} is malformed")]
    Malformed(usize),
    /// A name or cap is not UTF-8.
    #[error("directory entry {0} is not UTF-8")]
    NotUtf8(usize),
    /// The encrypted write cap is too short.
    #[error("directory entry {0} has a truncated write cap")]
    BadRwcap(usize),
}

/// Parses a directory's plaintext; with the directory's write key, the children's write caps are
/// decrypted too.
pub fn unpack(plaintext: &[u8], writekey: Option<&[u8; 16]>) -> Result<Vec<DirEntry>, DirnodeError> {
    let mut rest = plaintext;
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let index = entries.len();
        let malformed = |_| DirnodeError::Malformed(index);
        let (entry, after) = split_netstring(rest).map_err(malformed)?;
        rest = after;
        let (name, entry) = split_netstring(entry).map_err(malformed)?;
        let (ro_uri, entry) = split_netstring(entry).map_err(malformed)?;
        let (rwcapdata, entry) = split_netstring(entry).map_err(malformed)?;
        let (metadata, entry) = split_netstring(entry).map_err(malformed)?;
        if !entry.is_empty() {
            return Err(DirnodeError::Malformed(index));
        }
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| DirnodeError::NotUtf8(index));
        let rw_uri = match writekey {
            Some(writekey) if !rwcapdata.is_empty() => {
                if rwcapdata.len() < 48 {
                    return Err(DirnodeError::BadRwcap(index));
                }
                let (salt, body) = rwcapdata.split_at(16);
                let mut cap = body[..body.len() - 32].to_vec();
                aes_ctr_at(&mutable_rwcap_key_hash(salt, writekey), 0, &mut cap);
                let cap = text(&cap)?.trim_end_matches(' ').to_owned();
                (!cap.is_empty()).then_some(cap)
            }
            _ => None,
        };
        entries.push(DirEntry {
            name: text(name)?,
            ro_uri: text(ro_uri)?.trim_end_matches(' ').to_owned(),
            rw_uri,
            metadata_json: text(metadata)?,
        });
    }
    Ok(entries)
}

/// Packs children into a directory's plaintext, sorted by name (code point order). With a write
/// key (a mutable directory) every child gets the encrypted write-cap structure (around an empty
/// string when it has no write cap); without one (an immutable directory) `rwcapdata` is empty.
pub fn pack(entries: &[DirEntry], writekey: Option<&[u8; 16]>) -> Vec<u8> {
    let mut sorted: Vec<&DirEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for entry in sorted {
        let rwcapdata = match writekey {
            Some(writekey) => {
                let rw = entry.rw_uri.as_deref().unwrap_or("").as_bytes();
                let salt = mutable_rwcap_salt_hash(rw);
                let key = mutable_rwcap_key_hash(&salt, writekey);
                let mut encrypted = rw.to_vec();
                aes_ctr_at(&key, 0, &mut encrypted);
                let mut data = salt.to_vec();
                data.extend_from_slice(&encrypted);
                let mac = tahoe_hmac(&key, &data);
                data.extend_from_slice(&mac);
                data
            }
            None => Vec::new(),
        };
        let ro = entry.ro_uri.strip_prefix("ro.").unwrap_or(&entry.ro_uri);
        let mut inner = Vec::new();
        write_netstring(&mut inner, entry.name.as_bytes());
        write_netstring(&mut inner, ro.as_bytes());
        write_netstring(&mut inner, &rwcapdata);
        write_netstring(&mut inner, entry.metadata_json.as_bytes());
        write_netstring(&mut out, &inner);
    }
    out
}
