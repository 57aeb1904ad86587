//! Byte layouts of immutable (CHK) shares: the URI extension block and share data v1/v2
//! (tahoe-formats.md §3 step 9 and §4.1). Pure: no IO.

use crate::hashes::Hash;
use crate::hashtree;
use crate::netstring::{split_netstring, write_netstring};

/// The share-data header length of layout version 1.
pub const V1_HEADER_LEN: u64 = 0x24;
/// The share-data header length of layout version 2.
pub const V2_HEADER_LEN: u64 = 0x44;

/// The URI extension block: the parameters and roots every share carries and the cap hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriExtension {
    /// Padded size of a full segment (a multiple of k).
    pub segment_size: u64,
    /// k.
    pub needed_shares: u16,
    /// N.
    pub total_shares: u16,
    /// Number of segments.
    pub num_segments: u64,
    /// Plaintext length.
    pub size: u64,
    /// Padded size of the last segment.
    pub tail_segment_size: u64,
    /// Hash of the whole ciphertext.
    pub crypttext_hash: Hash,
    /// Root of the ciphertext segment tree.
    pub crypttext_root_hash: Hash,
    /// Root of the tree over the N block-tree roots.
    pub share_root_hash: Hash,
}

/// A URI extension block that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UebError {
    /// The bytes are not a sequence of `key:netstring` entries.
    #[error("URI extension block is malformed: {0}")]
    Malformed(String),
    /// A required field is absent.
    #[error("URI extension block lacks field {0}")]
    MissingField(&'static str),
    /// A field has an invalid value.
    #[error("URI extension block field {0} is invalid")]
    BadField(&'static str),
}

impl UriExtension {
    /// Serializes the UEB: keys in bytewise order, each `key ":" netstring(value)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (k, n) = (self.needed_shares, self.total_shares);
        let entries: [(&str, Vec<u8>); 11] = [
            ("codec_name", b"crs".to_vec()),
            (
                "codec_params",
                format!("{}-{k}-{n}", self.segment_size).into_bytes(),
            ),
            ("crypttext_hash", self.crypttext_hash.to_vec()),
            ("crypttext_root_hash", self.crypttext_root_hash.to_vec()),
            ("needed_shares", k.to_string().into_bytes()),
            ("num_segments", self.num_segments.to_string().into_bytes()),
            ("segment_size", self.segment_size.to_string().into_bytes()),
            ("share_root_hash", self.share_root_hash.to_vec()),
            ("size", self.size.to_string().into_bytes()),
            (
                "tail_codec_params",
                format!("{}-{k}-{n}", self.tail_segment_size).into_bytes(),
            ),
            ("total_shares", n.to_string().into_bytes()),
        ];
        let mut out = Vec::with_capacity(340);
        for (key, value) in entries {
            out.extend_from_slice(key.as_bytes());
            out.push(b':');
            write_netstring(&mut out, &value);
        }
        out
    }

    /// Parses a UEB. Unknown keys are ignored (older Tahoe wrote plaintext hashes too).
    pub fn parse(mut bytes: &[u8]) -> Result<Self, UebError> {
        let mut fields: std::collections::BTreeMap<&[u8], &[u8]> = Default::default();
        while !bytes.is_empty() {
            let colon = bytes
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| UebError::Malformed("entry without ':'".into()))?;
            let key = &bytes[..colon];
            if key.is_empty()
                || !key
                    .iter()
                    .all(|&b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
            {
                return Err(UebError::Malformed("invalid key".into()));
            }
            let (value, rest) =
                split_netstring(&bytes[colon + 1..]).map_err(|e| UebError::Malformed(e.to_string()))?;
            if fields.insert(key, value).is_some() {
                return Err(UebError::Malformed("duplicate key".into()));
            }
            bytes = rest;
        }
        let get = |name: &'static str| {
            fields
                .get(name.as_bytes())
                .copied()
                .ok_or(UebError::MissingField(name))
        };
        let number = |name: &'static str| -> Result<u64, UebError> {
            std::str::from_utf8(get(name)?)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(UebError::BadField(name))
        };
        let hash = |name: &'static str| -> Result<Hash, UebError> {
            get(name)?.try_into().map_err(|_| UebError::BadField(name))
        };
        if get("codec_name")? != b"crs" {
            return Err(UebError::BadField("codec_name"));
        }
        let needed = number("needed_shares")?;
        let total = number("total_shares")?;
        if needed == 0 || needed > total || total > 256 {
            return Err(UebError::BadField("needed_shares"));
        }
        let segment_size = number("segment_size")?;
        let codec_params = |name: &'static str| -> Result<u64, UebError> {
            let text = std::str::from_utf8(get(name)?).map_err(|_| UebError::BadField(name))?;
            let parts: Vec<&str> = text.split('-').collect();
            if parts.len() != 3 || parts[1] != needed.to_string() || parts[2] != total.to_string() {
                return Err(UebError::BadField(name));
            }
            parts[0].parse().map_err(|_| UebError::BadField(name))
        };
        if codec_params("codec_params")? != segment_size {
            return Err(UebError::BadField("codec_params"));
        }
        let tail_segment_size = codec_params("tail_codec_params")?;
        Ok(UriExtension {
            segment_size,
            needed_shares: needed as u16,
            total_shares: total as u16,
            num_segments: number("num_segments")?,
            size: number("size")?,
            tail_segment_size,
            crypttext_hash: hash("crypttext_hash")?,
            crypttext_root_hash: hash("crypttext_root_hash")?,
            share_root_hash: hash("share_root_hash")?,
        })
    }
}

/// Where each field of a share's data lies (tahoe-formats.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareOffsets {
    /// 1 or 2.
    pub version: u32,
    /// Informational block size.
    pub block_size: u64,
    /// Informational total length of the blocks.
    pub data_size: u64,
    /// Start of the blocks.
    pub data: u64,
    /// Start of the (unused, zero-filled) plaintext hash tree.
    pub plaintext_hash_tree: u64,
    /// Start of the ciphertext segment hash tree.
    pub crypttext_hash_tree: u64,
    /// Start of this share's block hash tree.
    pub block_hashes: u64,
    /// Start of the share hash chain.
    pub share_hashes: u64,
    /// Start of the URI extension block's length prefix.
    pub uri_extension: u64,
}

/// A share-data header that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    #[error("share header is truncated")]
    Truncated,
    /// Neither version 1 nor 2.
    #[error("unknown share layout version {0}")]
    UnknownVersion(u32),
    /// Offsets out of order.
    #[error("share header offsets are inconsistent")]
    BadOffsets,
}

impl ShareOffsets {
    /// Computes the layout of a share with `data_size` bytes of blocks, `num_segments` segments and
    /// `share_hash_count` share-hash entries, choosing v1 when everything fits in 32 bits.
    pub fn compute(block_size: u64, data_size: u64, num_segments: u64, share_hash_count: u64) -> Self {
        let v1 = Self::compute_version(1, block_size, data_size, num_segments, share_hash_count);
        let limit = 1u64 << 32;
        if block_size >= limit || data_size >= limit || v1.uri_extension >= limit {
            Self::compute_version(2, block_size, data_size, num_segments, share_hash_count)
        } else {
            v1
        }
    }

    /// The layout in a given version (1: 32-bit fields, 2: 64-bit fields).
    pub fn compute_version(
        version: u32,
        block_size: u64,
        data_size: u64,
        num_segments: u64,
        share_hash_count: u64,
    ) -> Self {
        let tree_len = hashtree::node_count(num_segments as usize) as u64 * 32;
        let data = if version == 1 {
            V1_HEADER_LEN
        } else {
            V2_HEADER_LEN
        };
        let plaintext_hash_tree = data + data_size;
        let crypttext_hash_tree = plaintext_hash_tree + tree_len;
        let block_hashes = crypttext_hash_tree + tree_len;
        let share_hashes = block_hashes + tree_len;
        let uri_extension = share_hashes + share_hash_count * 34;
        ShareOffsets {
            version,
            block_size,
            data_size,
            data,
            plaintext_hash_tree,
            crypttext_hash_tree,
            block_hashes,
            share_hashes,
            uri_extension,
        }
    }

    /// The length prefix size of the UEB (4 in v1, 8 in v2).
    pub fn ueb_length_size(&self) -> u64 {
        if self.version == 1 { 4 } else { 8 }
    }

    /// Serializes the header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let fields = [
            self.data,
            self.plaintext_hash_tree,
            self.crypttext_hash_tree,
            self.block_hashes,
            self.share_hashes,
            self.uri_extension,
        ];
        let mut out = Vec::with_capacity(V2_HEADER_LEN as usize);
        out.extend_from_slice(&self.version.to_be_bytes());
        if self.version == 1 {
            out.extend_from_slice(&(self.block_size as u32).to_be_bytes());
            out.extend_from_slice(&(self.data_size as u32).to_be_bytes());
            for f in fields {
                out.extend_from_slice(&(f as u32).to_be_bytes());
            }
        } else {
            out.extend_from_slice(&self.block_size.to_be_bytes());
            out.extend_from_slice(&self.data_size.to_be_bytes());
            for f in fields {
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        out
    }

    /// Parses a header from the first bytes of share data (at least 0x24 for v1, 0x44 for v2).
    pub fn parse(bytes: &[u8]) -> Result<Self, HeaderError> {
        let u32_at = |at: usize| -> Result<u64, HeaderError> {
            let b = bytes.get(at..at + 4).ok_or(HeaderError::Truncated)?;
            Ok(u32::from_be_bytes(b.try_into().expect("invariant: 4 bytes")) as u64)
        };
        let u64_at = |at: usize| -> Result<u64, HeaderError> {
            let b = bytes.get(at..at + 8).ok_or(HeaderError::Truncated)?;
            Ok(u64::from_be_bytes(b.try_into().expect("invariant: 8 bytes")))
        };
        let version = u32_at(0)? as u32;
        let values: Vec<u64> = match version {
            1 => (1..9).map(|i| u32_at(4 * i)).collect::<Result<_, _>>()?,
            2 => std::iter::once(u64_at(4))
                .chain((0..7).map(|i| u64_at(12 + 8 * i)))
                .collect::<Result<_, _>>()?,
            other => return Err(HeaderError::UnknownVersion(other)),
        };
        let offsets = ShareOffsets {
            version,
            block_size: values[0],
            data_size: values[1],
            data: values[2],
            plaintext_hash_tree: values[3],
            crypttext_hash_tree: values[4],
            block_hashes: values[5],
            share_hashes: values[6],
            uri_extension: values[7],
        };
        let ordered = [
            offsets.data,
            offsets.plaintext_hash_tree,
            offsets.crypttext_hash_tree,
            offsets.block_hashes,
            offsets.share_hashes,
            offsets.uri_extension,
        ];
        let header_len = if version == 1 {
            V1_HEADER_LEN
        } else {
            V2_HEADER_LEN
        };
        if offsets.data < header_len || ordered.windows(2).any(|w| w[0] > w[1]) {
            return Err(HeaderError::BadOffsets);
        }
        Ok(offsets)
    }
}

/// The share-hash-tree node indexes that share `shnum` stores (siblings on its path plus its own leaf),
/// in the order Tahoe 1.20 on CPython 3.11 writes them: the iteration order of a Python `set` built by
/// adding the siblings bottom-up and then the leaf. Readers accept any order.
pub fn share_hash_chain_order(total_shares: usize, shnum: usize) -> Vec<usize> {
    let mut wanted = hashtree::needed_hashes(total_shares, shnum);
    wanted.push(hashtree::leaf_node_index(total_shares, shnum));
    cpython_small_int_set_order(&wanted)
}

/// The iteration order of a CPython 3.11 `set` of small non-negative ints (whose hash is the value)
/// after adding `items` one at a time. Emulates `set_add_entry` (linear probing of up to 9 slots, then
/// perturbed probing) and `set_table_resize` (grow to the smallest power of two above 4 × used when
/// the table is 60 % full, re-inserting in table order).
fn cpython_small_int_set_order(items: &[usize]) -> Vec<usize> {
    const LINEAR_PROBES: usize = 9;
    const PERTURB_SHIFT: u32 = 5;

    fn insert_clean(table: &mut [Option<usize>], key: usize) {
        let mask = table.len() - 1;
        let mut perturb = key;
        let mut i = key & mask;
        loop {
            if table[i].is_none() {
                table[i] = Some(key);
                return;
            }
            if i + LINEAR_PROBES <= mask {
                for j in 1..=LINEAR_PROBES {
                    if table[i + j].is_none() {
                        table[i + j] = Some(key);
                        return;
                    }
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i * 5 + 1 + perturb) & mask;
        }
    }

    let mut table: Vec<Option<usize>> = vec![None; 8];
    let (mut fill, mut used) = (0usize, 0usize);
    'items: for &key in items {
        let mask = table.len() - 1;
        let mut perturb = key;
        let mut i = key & mask;
        let slot = loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            let mut free = None;
            for (j, slot) in table.iter().enumerate().skip(i).take(probes + 1) {
                match slot {
                    None => {
                        free = Some(j);
                        break;
                    }
                    Some(existing) if *existing == key => continue 'items,
                    Some(_) => {}
                }
            }
            if let Some(j) = free {
                break j;
            }
            perturb >>= PERTURB_SHIFT;
            i = (i * 5 + 1 + perturb) & mask;
        };
        table[slot] = Some(key);
        fill += 1;
        used += 1;
        if fill * 5 >= mask * 3 {
            let min_used = if used > 50_000 { used * 2 } else { used * 4 };
            let mut new_size = 8;
            while new_size <= min_used {
                new_size <<= 1;
            }
            let mut new_table = vec![None; new_size];
            for key in table.iter().flatten() {
                insert_clean(&mut new_table, *key);
            }
            table = new_table;
            fill = used;
        }
    }
    table.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_order_examples() {
        // From tahoe-formats.md §4.1: Tahoe 1.20 stores [2, 4, 8, 15, 16] for this tree position.
        assert_eq!(share_hash_chain_order(10, 1), vec![2, 4, 8, 15, 16]);
        assert_eq!(share_hash_chain_order(1, 0), vec![0]);
        // Every order is a permutation of the needed set.
        for n in 1..=256 {
            for sh in [0, n / 2, n - 1] {
                let mut got = share_hash_chain_order(n, sh);
                let mut want = hashtree::needed_hashes(n, sh);
                want.push(hashtree::leaf_node_index(n, sh));
                got.sort();
                want.sort();
                assert_eq!(got, want, "n={n} sh={sh}");
            }
        }
    }

    #[test]
    fn header_round_trip_v1_and_v2() {
        for (block, data) in [(1000u64, 3000u64), (1 << 33, 1 << 34)] {
            let offsets = ShareOffsets::compute(block, data, 3, 5);
            assert_eq!(offsets.version, if block < (1 << 32) { 1 } else { 2 });
            let bytes = offsets.to_bytes();
            assert_eq!(bytes.len() as u64, offsets.data);
            assert_eq!(ShareOffsets::parse(&bytes).unwrap(), offsets);
        }
        assert_eq!(
            ShareOffsets::parse(&[0, 0, 0, 3]),
            Err(HeaderError::UnknownVersion(3))
        );
        assert_eq!(ShareOffsets::parse(&[0, 0, 0, 1, 0]), Err(HeaderError::Truncated));
    }

    #[test]
    fn ueb_round_trip() {
        let ueb = UriExtension {
            segment_size: 1026,
            needed_shares: 3,
            total_shares: 10,
            num_segments: 1,
            size: 1024,
            tail_segment_size: 1026,
            crypttext_hash: [1; 32],
            crypttext_root_hash: [2; 32],
            share_root_hash: [3; 32],
        };
        let bytes = ueb.to_bytes();
        assert!(bytes.starts_with(b"codec_name:3:crs,codec_params:9:1026-3-10,"));
        assert_eq!(UriExtension::parse(&bytes).unwrap(), ueb);
        assert!(UriExtension::parse(&bytes[..bytes.len() - 1]).is_err());
    }
}
