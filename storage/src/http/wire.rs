//! The protocol's wire forms, shared by the server and the client so that each message has one
//! encoder and one decoder (and one round-trip test): CBOR bodies, the `Authorization` and
//! `X-Tahoe-Authorization` headers, and the `Range`/`Content-Range` grammar (tahoe-interfaces.md
//! §1.3–§1.4).

// Request decoders and response encoders are used only by the server (feature `server`).
#![cfg_attr(not(feature = "server"), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciborium::value::Value;
use data_encoding::BASE64;

use super::cbor::{self, Decoded, Fields, text_map, uint};
use crate::api::{
    Allocation, CorruptShareRemoval, LeaseSecrets, ReadTestWriteResult, ReadVector, TestVector,
    TestWriteVectors, UploadProgress, UploadSecret, VersionInfo, WriteEnabler, WriteVector,
};
use crate::{ShareKind, ShareNum, StorageIndex};

/// Media type of structured bodies.
pub(crate) const CBOR_MIME: &str = "application/cbor";
/// Media type of share data.
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";
/// Header carrying per-operation secrets.
pub(crate) const SECRET_HEADER: &str = "x-tahoe-authorization";
/// Tessera's machine-readable error header (see [`super`] module docs).
pub(crate) const ERROR_HEADER: &str = "x-tessera-error";
/// Tessera's allocating write: on a `PATCH` of an immutable share, the share's allocated size; the
/// server opens the upload (as an allocation of that share alone, with the lease secrets the request
/// then carries) unless one is open under the request's upload secret.
pub(crate) const ALLOCATE_HEADER: &str = "x-tessera-allocate";
/// Tessera's reasons for share numbers an allocation refused: one header per share,
/// `<shnum> <reason>` (a Tahoe client ignores it; the CBOR answer is Tahoe's).
pub(crate) const REFUSED_HEADER: &str = "x-tessera-refused";
/// At most this many bytes of one refusal reason are sent or read.
pub(crate) const MAX_REFUSAL_LEN: usize = 200;
/// At most this many refusal headers are sent or read (hyper reads at most 100 headers).
pub(crate) const MAX_REFUSALS: usize = 32;
/// The key of the version message's inner map.
pub(crate) const VERSION_V1_KEY: &str = "http://allmydata.org/tahoe/protocols/storage/v1";

/// Largest number of entries in the bounded arrays/maps of the CDDL schemas.
const MAX_SHARES_PER_REQUEST: usize = 256;
const MAX_VECTORS: usize = 30;
/// Bounds of a corruption reason, in bytes (`tstr .size (1..32765)`).
pub(crate) const MAX_REASON_LEN: usize = 32765;

/// The value of the `Authorization` header for a swissnum.
pub(crate) fn authorization_value(swissnum: &str) -> String {
    format!("Tahoe-LAFS {}", BASE64.encode(swissnum.as_bytes()))
}

/// The kinds of per-operation secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SecretKind {
    LeaseRenew,
    LeaseCancel,
    Upload,
    WriteEnabler,
}

impl SecretKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SecretKind::LeaseRenew => "lease-renew-secret",
            SecretKind::LeaseCancel => "lease-cancel-secret",
            SecretKind::Upload => "upload-secret",
            SecretKind::WriteEnabler => "write-enabler",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            SecretKind::LeaseRenew,
            SecretKind::LeaseCancel,
            SecretKind::Upload,
            SecretKind::WriteEnabler,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// The secret headers for lease secrets.
pub(crate) const LEASE_SECRETS: [SecretKind; 2] = [SecretKind::LeaseRenew, SecretKind::LeaseCancel];

/// One `X-Tahoe-Authorization` header value.
pub(crate) fn secret_header_value(kind: SecretKind, value: &[u8]) -> String {
    format!("{} {}", kind.name(), BASE64.encode(value))
}

/// The secrets of a request, parsed and checked against the endpoint's required set.
#[derive(Default)]
pub(crate) struct Secrets {
    values: BTreeMap<SecretKind, Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    /// Names the kinds present, never the values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.values.keys().map(|k| k.name()))
            .finish()
    }
}

impl Secrets {
    /// Parses every `X-Tahoe-Authorization` value. The set of kinds must be exactly `required`; each
    /// kind may appear once; values are standard padded base64 and non-empty; lease secrets and the
    /// write enabler are exactly 32 bytes. The error is a message for a 400.
    pub(crate) fn parse<'a>(
        header_values: impl Iterator<Item = &'a [u8]>,
        required: &[SecretKind],
    ) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        for raw in header_values {
            let text =
                std::str::from_utf8(raw).map_err(|_| "X-Tahoe-Authorization is not UTF-8".to_owned())?;
            let (name, encoded) = text
                .trim()
                .split_once(' ')
                .ok_or_else(|| "X-Tahoe-Authorization must be '<kind> <base64>'".to_owned())?;
            let kind = SecretKind::from_name(name).ok_or_else(|| format!("unknown secret kind {name:?}"))?;
            let value = BASE64
                .decode(encoded.trim().as_bytes())
                .map_err(|_| format!("secret {name} is not valid base64"))?;
            if value.is_empty() {
                return Err(format!("secret {name} is empty"));
            }
            if matches!(
                kind,
                SecretKind::LeaseRenew | SecretKind::LeaseCancel | SecretKind::WriteEnabler
            ) && value.len() != 32
            {
                return Err(format!(
                    "secret {name} must be exactly 32 bytes, got {}",
                    value.len()
                ));
            }
            if values.insert(kind, value).is_some() {
                return Err(format!("secret {name} given more than once"));
            }
        }
        let given: BTreeSet<SecretKind> = values.keys().copied().collect();
        let wanted: BTreeSet<SecretKind> = required.iter().copied().collect();
        if given != wanted {
            let names =
                |set: &BTreeSet<SecretKind>| set.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
            return Err(format!(
                "this request needs the secrets [{}], got [{}]",
                names(&wanted),
                names(&given)
            ));
        }
        Ok(Secrets { values })
    }

    fn fixed(&self, kind: SecretKind) -> [u8; 32] {
        // Lengths were checked by `parse`, and only required kinds are asked for.
        self.values
            .get(&kind)
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .unwrap_or([0; 32])
    }

    pub(crate) fn lease(&self) -> LeaseSecrets {
        LeaseSecrets {
            renew: self.fixed(SecretKind::LeaseRenew),
            cancel: self.fixed(SecretKind::LeaseCancel),
        }
    }

    pub(crate) fn upload(&self) -> UploadSecret {
        UploadSecret(self.values.get(&SecretKind::Upload).cloned().unwrap_or_default())
    }

    pub(crate) fn write_enabler(&self) -> WriteEnabler {
        WriteEnabler(self.fixed(SecretKind::WriteEnabler))
    }
}

// ---- Ranges ----

/// Parses a request `Range` header of the only form the protocol allows: `bytes=A-B`, one range, both
/// ends given, A ≤ B (inclusive). Anything else (multi-range, open-ended, suffix, other units) is `None`,
/// answered with 416.
pub(crate) fn parse_range(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (unit, spec) = text.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return None;
    }
    let (start, end) = spec.trim().split_once('-')?;
    let (start, end) = (parse_decimal(start.trim())?, parse_decimal(end.trim())?);
    (start <= end).then_some((start, end))
}

/// Formats a request `Range` header for `len` (> 0) bytes at `offset`.
pub(crate) fn format_range(offset: u64, len: u64) -> String {
    format!("bytes={}-{}", offset, offset.saturating_add(len.max(1) - 1))
}

/// Parses a PATCH `Content-Range: bytes S-E/T` (T a number or `*`; inclusive end; when T is a number
/// it must exceed E). `None` means 416.
pub(crate) fn parse_content_range(value: &[u8]) -> Option<(u64, u64)> {
    let (start, end, _total) = parse_response_content_range(value)?;
    Some((start, end))
}

/// Parses `bytes S-E/T` into (S, E, T), T `None` for `*`.
pub(crate) fn parse_response_content_range(value: &[u8]) -> Option<(u64, u64, Option<u64>)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (unit, spec) = text.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, total) = spec.trim().split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (parse_decimal(start)?, parse_decimal(end)?);
    if start > end {
        return None;
    }
    let total = match total {
        "*" => None,
        total => {
            let total = parse_decimal(total)?;
            if end >= total {
                return None;
            }
            Some(total)
        }
    };
    Some((start, end, total))
}

/// Formats `Content-Range: bytes S-E/*` for a write of `len` (> 0) bytes at `offset`.
pub(crate) fn format_content_range(offset: u64, len: u64) -> String {
    format!("bytes {}-{}/*", offset, offset.saturating_add(len.max(1) - 1))
}

fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

// ---- Messages ----

/// `GET /version` response, with byte-string keys as Tahoe sends them.
pub(crate) fn encode_version(info: &VersionInfo) -> Vec<u8> {
    let key = |k: &str| Value::Bytes(k.as_bytes().to_vec());
    let inner = Value::Map(vec![
        (
            key("maximum-immutable-share-size"),
            uint(info.maximum_immutable_share_size),
        ),
        (
            key("maximum-mutable-share-size"),
            uint(info.maximum_mutable_share_size),
        ),
        (key("available-space"), uint(info.available_space)),
    ]);
    cbor::to_vec(&Value::Map(vec![
        (key(VERSION_V1_KEY), inner),
        (
            key("application-version"),
            Value::Bytes(info.application_version.clone()),
        ),
    ]))
}

pub(crate) fn decode_version(bytes: &[u8]) -> Decoded<VersionInfo> {
    let mut outer = Fields::any_string_keys(cbor::from_slice(bytes)?, "version")?;
    let mut inner = Fields::any_string_keys(outer.take(VERSION_V1_KEY)?, "version v1")?;
    let application_version = match outer.take("application-version")? {
        Value::Text(t) => t.into_bytes(),
        other => cbor::as_bytes(other, "application-version")?,
    };
    Ok(VersionInfo {
        maximum_immutable_share_size: cbor::as_u64(
            inner.take("maximum-immutable-share-size")?,
            "maximum-immutable-share-size",
        )?,
        maximum_mutable_share_size: cbor::as_u64(
            inner.take("maximum-mutable-share-size")?,
            "maximum-mutable-share-size",
        )?,
        available_space: cbor::as_u64(inner.take("available-space")?, "available-space")?,
        application_version,
    })
}

/// `POST /immutable/:si` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllocateRequest {
    pub(crate) share_numbers: BTreeSet<ShareNum>,
    pub(crate) allocated_size: u64,
}

pub(crate) fn encode_allocate_request(share_numbers: &BTreeSet<ShareNum>, allocated_size: u64) -> Vec<u8> {
    cbor::to_vec(&text_map(vec![
        ("share-numbers", cbor::share_set(share_numbers)),
        ("allocated-size", uint(allocated_size)),
    ]))
}

pub(crate) fn decode_allocate_request(bytes: &[u8]) -> Decoded<AllocateRequest> {
    let mut fields = Fields::text_keys(cbor::from_slice(bytes)?, "allocate request")?;
    let items = cbor::as_set(fields.take("share-numbers")?, "share-numbers", true)?;
    if items.len() > MAX_SHARES_PER_REQUEST {
        return Err(format!(
            "share-numbers: at most {MAX_SHARES_PER_REQUEST} entries allowed"
        ));
    }
    let share_numbers = items
        .into_iter()
        .map(|v| cbor::as_share_num(v, "share-numbers"))
        .collect::<Decoded<_>>()?;
    let allocated_size = cbor::as_u64(fields.take("allocated-size")?, "allocated-size")?;
    fields.finish()?;
    Ok(AllocateRequest {
        share_numbers,
        allocated_size,
    })
}

pub(crate) fn encode_allocation(allocation: &Allocation) -> Vec<u8> {
    cbor::to_vec(&text_map(vec![
        ("already-have", cbor::share_set(&allocation.already_have)),
        ("allocated", cbor::share_set(&allocation.allocated)),
    ]))
}

pub(crate) fn decode_allocation(bytes: &[u8]) -> Decoded<Allocation> {
    let mut fields = Fields::text_keys(cbor::from_slice(bytes)?, "allocation")?;
    Ok(Allocation {
        already_have: decode_share_set_value(fields.take("already-have")?, "already-have")?,
        allocated: decode_share_set_value(fields.take("allocated")?, "allocated")?,
        refused: BTreeMap::new(),
    })
}

/// `PATCH` response: `{"required": [{"begin", "end"}*]}`.
pub(crate) fn encode_progress(progress: &UploadProgress) -> Vec<u8> {
    let ranges = progress
        .required
        .iter()
        .map(|r| text_map(vec![("begin", uint(r.start)), ("end", uint(r.end))]))
        .collect();
    cbor::to_vec(&text_map(vec![("required", Value::Array(ranges))]))
}

pub(crate) fn decode_progress(bytes: &[u8], complete: bool) -> Decoded<UploadProgress> {
    let mut fields = Fields::text_keys(cbor::from_slice(bytes)?, "upload progress")?;
    let mut required = Vec::new();
    for item in cbor::as_array(fields.take("required")?, "required")? {
        let mut range = Fields::text_keys(item, "required range")?;
        let begin = cbor::as_u64(range.take("begin")?, "begin")?;
        let end = cbor::as_u64(range.take("end")?, "end")?;
        if begin > end {
            return Err(format!("required range {begin}..{end} is reversed"));
        }
        required.push(begin..end);
    }
    Ok(UploadProgress { complete, required })
}

pub(crate) fn encode_share_set(shares: &BTreeSet<ShareNum>) -> Vec<u8> {
    cbor::to_vec(&cbor::share_set(shares))
}

pub(crate) fn decode_share_set(bytes: &[u8]) -> Decoded<BTreeSet<ShareNum>> {
    decode_share_set_value(cbor::from_slice(bytes)?, "share list")
}

fn decode_share_set_value(value: Value, what: &str) -> Decoded<BTreeSet<ShareNum>> {
    cbor::as_set(value, what, false)?
        .into_iter()
        .map(|v| cbor::as_share_num(v, what))
        .collect()
}

/// `POST …/corrupt` request: `{"reason": tstr .size (1..32765)}`.
pub(crate) fn encode_corrupt(reason: &str) -> Vec<u8> {
    cbor::to_vec(&text_map(vec![("reason", Value::Text(reason.to_owned()))]))
}

/// `reason` made to fit the schema: cut to [`MAX_REASON_LEN`] bytes at a character boundary, and
/// `corrupt` when empty.
pub(crate) fn bounded_reason(reason: &str) -> String {
    if reason.is_empty() {
        return "corrupt".to_owned();
    }
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

pub(crate) fn decode_corrupt(bytes: &[u8]) -> Decoded<String> {
    let mut fields = Fields::text_keys(cbor::from_slice(bytes)?, "corruption advisory")?;
    let reason = cbor::as_text(fields.take("reason")?, "reason")?;
    fields.finish()?;
    if reason.is_empty() || reason.len() > MAX_REASON_LEN {
        return Err(format!(
            "reason: must be 1 to {MAX_REASON_LEN} bytes, got {}",
            reason.len()
        ));
    }
    Ok(reason)
}

/// `POST /tessera/immutable/:si/:shnum/remove-corrupt` answer (a Tessera extension):
/// `{"removed": bool, "detail": tstr}`; the detail is what the server's check found (removed) or
/// why the share was kept.
pub(crate) fn encode_removal(removal: &CorruptShareRemoval) -> Vec<u8> {
    let (removed, detail) = match removal {
        CorruptShareRemoval::Removed { problem } => (true, problem),
        CorruptShareRemoval::Kept { reason } => (false, reason),
    };
    cbor::to_vec(&text_map(vec![
        ("removed", Value::Bool(removed)),
        ("detail", Value::Text(detail.clone())),
    ]))
}

pub(crate) fn decode_removal(bytes: &[u8]) -> Decoded<CorruptShareRemoval> {
    let mut fields = Fields::text_keys(cbor::from_slice(bytes)?, "removal answer")?;
    let removed = cbor::as_bool(fields.take("removed")?, "removed")?;
    let detail = cbor::as_text(fields.take("detail")?, "detail")?;
    fields.finish()?;
    Ok(if removed {
        CorruptShareRemoval::Removed { problem: detail }
    } else {
        CorruptShareRemoval::Kept { reason: detail }
    })
}

/// `POST /mutable/:si/read-test-write` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadTestWriteRequest {
    pub(crate) test_write_vectors: BTreeMap<ShareNum, TestWriteVectors>,
    pub(crate) read_vector: Vec<ReadVector>,
}

pub(crate) fn encode_rtw_request(tw: &BTreeMap<ShareNum, TestWriteVectors>, read: &[ReadVector]) -> Vec<u8> {
    let tw = tw
        .iter()
        .map(|(shnum, v)| {
            let tests = v
                .test
                .iter()
                .map(|t| {
                    text_map(vec![
                        ("offset", uint(t.offset)),
                        ("size", uint(t.size)),
                        ("specimen", Value::Bytes(t.specimen.clone())),
                    ])
                })
                .collect();
            let writes = v
                .write
                .iter()
                .map(|w| {
                    text_map(vec![
                        ("offset", uint(w.offset)),
                        ("data", Value::Bytes(w.data.clone())),
                    ])
                })
                .collect();
            let new_length = v.new_length.map_or(Value::Null, uint);
            (
                uint(u64::from(*shnum)),
                text_map(vec![
                    ("test", Value::Array(tests)),
                    ("write", Value::Array(writes)),
                    ("new-length", new_length),
                ]),
            )
        })
        .collect();
    let read = read
        .iter()
        .map(|r| text_map(vec![("offset", uint(r.offset)), ("size", uint(r.size))]))
        .collect();
    cbor::to_vec(&text_map(vec![
        ("test-write-vectors", Value::Map(tw)),
        ("read-vector", Value::Array(read)),
    ]))
}

pub(crate) fn decode_rtw_request(bytes: &[u8]) -> Decoded<ReadTestWriteRequest> {
    let mut fields = Fields::text_keys(cbor::from_slice(bytes)?, "read-test-write request")?;
    let Value::Map(pairs) = fields.take("test-write-vectors")? else {
        return Err("test-write-vectors: expected a map".to_owned());
    };
    if pairs.len() > MAX_SHARES_PER_REQUEST {
        return Err(format!(
            "test-write-vectors: at most {MAX_SHARES_PER_REQUEST} shares allowed"
        ));
    }
    let mut test_write_vectors = BTreeMap::new();
    for (shnum, vectors) in pairs {
        let shnum = cbor::as_share_num(shnum, "test-write-vectors key")?;
        let mut v = Fields::text_keys(vectors, "test-write vectors")?;
        let tests = cbor::as_array(v.take("test")?, "test")?;
        if tests.len() > MAX_VECTORS {
            return Err(format!(
                "test: at most {MAX_VECTORS} test vectors allowed per share"
            ));
        }
        let test = tests
            .into_iter()
            .map(|t| {
                let mut t = Fields::text_keys(t, "test vector")?;
                let vector = TestVector {
                    offset: cbor::as_u64(t.take("offset")?, "test offset")?,
                    size: cbor::as_u64(t.take("size")?, "test size")?,
                    specimen: cbor::as_bytes(t.take("specimen")?, "specimen")?,
                };
                t.finish()?;
                Ok(vector)
            })
            .collect::<Decoded<Vec<_>>>()?;
        let write = cbor::as_array(v.take("write")?, "write")?
            .into_iter()
            .map(|w| {
                let mut w = Fields::text_keys(w, "write vector")?;
                let vector = WriteVector {
                    offset: cbor::as_u64(w.take("offset")?, "write offset")?,
                    data: cbor::as_bytes(w.take("data")?, "write data")?,
                };
                w.finish()?;
                Ok(vector)
            })
            .collect::<Decoded<Vec<_>>>()?;
        let new_length = match v.take("new-length")? {
            Value::Null => None,
            other => Some(cbor::as_u64(other, "new-length")?),
        };
        v.finish()?;
        if test_write_vectors
            .insert(
                shnum,
                TestWriteVectors {
                    test,
                    write,
                    new_length,
                },
            )
            .is_some()
        {
            return Err(format!("test-write-vectors: share {shnum} appears twice"));
        }
    }
    let reads = cbor::as_array(fields.take("read-vector")?, "read-vector")?;
    if reads.len() > MAX_VECTORS {
        return Err(format!("read-vector: at most {MAX_VECTORS} entries allowed"));
    }
    let read_vector = reads
        .into_iter()
        .map(|r| {
            let mut r = Fields::text_keys(r, "read vector")?;
            let vector = ReadVector {
                offset: cbor::as_u64(r.take("offset")?, "read offset")?,
                size: cbor::as_u64(r.take("size")?, "read size")?,
            };
            r.finish()?;
            Ok(vector)
        })
        .collect::<Decoded<Vec<_>>>()?;
    fields.finish()?;
    Ok(ReadTestWriteRequest {
        test_write_vectors,
        read_vector,
    })
}

pub(crate) fn encode_rtw_result(result: &ReadTestWriteResult) -> Vec<u8> {
    let data = result
        .data
        .iter()
        .map(|(shnum, reads)| {
            (
                uint(u64::from(*shnum)),
                Value::Array(reads.iter().map(|r| Value::Bytes(r.clone())).collect()),
            )
        })
        .collect();
    cbor::to_vec(&text_map(vec![
        ("success", Value::Bool(result.success)),
        ("data", Value::Map(data)),
    ]))
}

pub(crate) fn decode_rtw_result(bytes: &[u8]) -> Decoded<ReadTestWriteResult> {
    let mut fields = Fields::text_keys(cbor::from_slice(bytes)?, "read-test-write result")?;
    let success = cbor::as_bool(fields.take("success")?, "success")?;
    let Value::Map(pairs) = fields.take("data")? else {
        return Err("data: expected a map".to_owned());
    };
    let mut data = BTreeMap::new();
    for (shnum, reads) in pairs {
        let shnum = cbor::as_share_num(shnum, "data key")?;
        let reads = cbor::as_array(reads, "data")?
            .into_iter()
            .map(|r| cbor::as_bytes(r, "data"))
            .collect::<Decoded<Vec<_>>>()?;
        data.insert(shnum, reads);
    }
    Ok(ReadTestWriteResult { success, data })
}

// ---- Tessera status ----

/// The answer of `GET /storage/v1/tessera/status`: the store's counters and its corruption
/// advisories. On the wire it is a CBOR map with text keys named like the fields (kebab-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// Bytes the server can still accept.
    pub available_space: u64,
    /// Bytes used by shares.
    pub used_space: u64,
    /// Free disk space the server keeps in reserve.
    pub reserved_space: u64,
    /// The configured ceiling on used space, if any.
    pub max_space: Option<u64>,
    /// Whether the server refuses new immutable shares.
    pub readonly: bool,
    /// Number of complete immutable shares.
    pub immutable_shares: u64,
    /// Number of mutable shares.
    pub mutable_shares: u64,
    /// Number of immutable uploads in progress.
    pub uploads_in_progress: u64,
    /// The last lease-expiry pass, if any ran.
    pub last_expiration: Option<ExpirationSummary>,
    /// Every corruption advisory the server holds, oldest first.
    pub corruption_advisories: Vec<AdvisoryReport>,
}

/// The last lease-expiry pass in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpirationSummary {
    /// When it ran (Unix seconds, by the server's clock).
    pub time: u64,
    /// Whether expiration was enabled.
    pub enabled: bool,
    /// Leases examined.
    pub examined_leases: u64,
    /// Leases removed.
    pub expired_leases: u64,
    /// Leases left alone because their share kind is not subject to expiry.
    pub skipped_leases: u64,
    /// Shares deleted.
    pub deleted_shares: u64,
    /// Bytes freed.
    pub reclaimed_bytes: u64,
    /// Index entries found stale and corrected.
    pub stale_index_entries: u64,
}

/// One corruption advisory in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryReport {
    /// When it was received (Unix seconds).
    pub time: u64,
    /// Immutable or mutable.
    pub kind: ShareKind,
    /// The share's storage index.
    pub storage_index: StorageIndex,
    /// The share number.
    pub shnum: ShareNum,
    /// The client's reason.
    pub reason: String,
}

/// Seconds since the Unix epoch (0 for earlier times).
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

pub(crate) fn kind_name(kind: ShareKind) -> &'static str {
    match kind {
        ShareKind::Immutable => "immutable",
        ShareKind::Mutable => "mutable",
    }
}

pub(crate) fn encode_status(status: &StatusReport) -> Vec<u8> {
    let optional = |v: Option<u64>| v.map_or(Value::Null, uint);
    let expiration = status.last_expiration.as_ref().map_or(Value::Null, |e| {
        text_map(vec![
            ("time", uint(e.time)),
            ("enabled", Value::Bool(e.enabled)),
            ("examined-leases", uint(e.examined_leases)),
            ("expired-leases", uint(e.expired_leases)),
            ("skipped-leases", uint(e.skipped_leases)),
            ("deleted-shares", uint(e.deleted_shares)),
            ("reclaimed-bytes", uint(e.reclaimed_bytes)),
            ("stale-index-entries", uint(e.stale_index_entries)),
        ])
    });
    let advisories = status
        .corruption_advisories
        .iter()
        .map(|a| {
            text_map(vec![
                ("time", uint(a.time)),
                ("kind", Value::Text(kind_name(a.kind).to_owned())),
                ("storage-index", Value::Text(a.storage_index.to_string())),
                ("share-number", uint(u64::from(a.shnum))),
                ("reason", Value::Text(a.reason.clone())),
            ])
        })
        .collect();
    cbor::to_vec(&text_map(vec![
        ("available-space", uint(status.available_space)),
        ("used-space", uint(status.used_space)),
        ("reserved-space", uint(status.reserved_space)),
        ("max-space", optional(status.max_space)),
        ("readonly", Value::Bool(status.readonly)),
        ("immutable-shares", uint(status.immutable_shares)),
        ("mutable-shares", uint(status.mutable_shares)),
        ("uploads-in-progress", uint(status.uploads_in_progress)),
        ("last-expiration", expiration),
        ("corruption-advisories", Value::Array(advisories)),
    ]))
}

pub(crate) fn decode_status(bytes: &[u8]) -> Decoded<StatusReport> {
    let mut f = Fields::text_keys(cbor::from_slice(bytes)?, "status")?;
    let optional = |v: Value, what: &str| match v {
        Value::Null => Ok(None),
        other => cbor::as_u64(other, what).map(Some),
    };
    let mut corruption_advisories = Vec::new();
    for item in cbor::as_array(f.take("corruption-advisories")?, "corruption-advisories")? {
        let mut a = Fields::text_keys(item, "advisory")?;
        let kind = match cbor::as_text(a.take("kind")?, "kind")?.as_str() {
            "immutable" => ShareKind::Immutable,
            "mutable" => ShareKind::Mutable,
            other => return Err(format!("kind: unknown share kind {other:?}")),
        };
        let storage_index = cbor::as_text(a.take("storage-index")?, "storage-index")?
            .parse()
            .map_err(|e| format!("storage-index: {e}"))?;
        corruption_advisories.push(AdvisoryReport {
            time: cbor::as_u64(a.take("time")?, "time")?,
            kind,
            storage_index,
            shnum: cbor::as_share_num(a.take("share-number")?, "share-number")?,
            reason: cbor::as_text(a.take("reason")?, "reason")?,
        });
    }
    Ok(StatusReport {
        available_space: cbor::as_u64(f.take("available-space")?, "available-space")?,
        used_space: cbor::as_u64(f.take("used-space")?, "used-space")?,
        reserved_space: cbor::as_u64(f.take("reserved-space")?, "reserved-space")?,
        max_space: optional(f.take("max-space")?, "max-space")?,
        readonly: cbor::as_bool(f.take("readonly")?, "readonly")?,
        immutable_shares: cbor::as_u64(f.take("immutable-shares")?, "immutable-shares")?,
        mutable_shares: cbor::as_u64(f.take("mutable-shares")?, "mutable-shares")?,
        uploads_in_progress: cbor::as_u64(f.take("uploads-in-progress")?, "uploads-in-progress")?,
        last_expiration: match f.take("last-expiration")? {
            Value::Null => None,
            other => {
                let mut e = Fields::text_keys(other, "last-expiration")?;
                let mut count = |key: &str| cbor::as_u64(e.take(key)?, key);
                Some(ExpirationSummary {
                    time: count("time")?,
                    examined_leases: count("examined-leases")?,
                    expired_leases: count("expired-leases")?,
                    skipped_leases: count("skipped-leases")?,
                    deleted_shares: count("deleted-shares")?,
                    reclaimed_bytes: count("reclaimed-bytes")?,
                    stale_index_entries: count("stale-index-entries")?,
                    enabled: cbor::as_bool(e.take("enabled")?, "enabled")?,
                })
            }
        },
        corruption_advisories,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_values(values: &[&str]) -> Vec<Vec<u8>> {
        values.iter().map(|v| v.as_bytes().to_vec()).collect()
    }

    fn parse(values: &[&str], required: &[SecretKind]) -> Result<Secrets, String> {
        let owned = header_values(values);
        Secrets::parse(owned.iter().map(|v| v.as_slice()), required)
    }

    #[test]
    fn secrets_need_exactly_the_required_set() {
        let renew = secret_header_value(SecretKind::LeaseRenew, &[1; 32]);
        let cancel = secret_header_value(SecretKind::LeaseCancel, &[2; 32]);
        let upload = secret_header_value(SecretKind::Upload, &[3; 20]);
        let all = [
            SecretKind::LeaseRenew,
            SecretKind::LeaseCancel,
            SecretKind::Upload,
        ];
        let secrets = parse(&[&renew, &cancel, &upload], &all).unwrap();
        assert_eq!(secrets.lease().renew, [1; 32]);
        assert_eq!(secrets.lease().cancel, [2; 32]);
        assert_eq!(secrets.upload().0, vec![3; 20]);
        // Whitespace around the value is tolerated, as Tahoe strips it.
        assert!(parse(&[&format!("  {renew} "), &cancel, &upload], &all).is_ok());

        assert!(
            parse(&[&renew, &cancel], &all)
                .unwrap_err()
                .contains("needs the secrets")
        );
        assert!(parse(&[&renew, &cancel, &upload], &LEASE_SECRETS).is_err());
        assert!(
            parse(&[&renew, &renew, &cancel, &upload], &all)
                .unwrap_err()
                .contains("more than once")
        );
        assert!(
            parse(&["mystery-secret AAAA", &renew, &cancel], &LEASE_SECRETS)
                .unwrap_err()
                .contains("unknown")
        );
        assert!(parse(&["lease-renew-secret", &cancel], &LEASE_SECRETS).is_err());
        assert!(
            parse(&["lease-renew-secret !!!", &cancel], &LEASE_SECRETS)
                .unwrap_err()
                .contains("base64")
        );
        assert!(parse(&["upload-secret ", &renew, &cancel], &all).is_err());
        let short = secret_header_value(SecretKind::LeaseRenew, &[1; 31]);
        assert!(
            parse(&[&short, &cancel], &LEASE_SECRETS)
                .unwrap_err()
                .contains("32 bytes")
        );
        let short_we = secret_header_value(SecretKind::WriteEnabler, &[1; 16]);
        assert!(
            parse(
                &[&short_we, &renew, &cancel],
                &[
                    SecretKind::WriteEnabler,
                    SecretKind::LeaseRenew,
                    SecretKind::LeaseCancel
                ]
            )
            .is_err()
        );
        assert!(parse(&[], &[]).is_ok());
        let non_utf8: Vec<Vec<u8>> = vec![vec![0xff, b' ', b'A']];
        assert!(Secrets::parse(non_utf8.iter().map(|v| v.as_slice()), &[]).is_err());
    }

    #[test]
    fn range_grammar() {
        assert_eq!(parse_range(b"bytes=0-9"), Some((0, 9)));
        assert_eq!(parse_range(b"bytes=5-5"), Some((5, 5)));
        assert_eq!(parse_range(b"Bytes = 1 - 2"), Some((1, 2)));
        for bad in [
            "bytes=5-",
            "bytes=-5",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=9-3",
            "bytes=a-b",
            "0-1",
            "bytes=-",
        ] {
            assert_eq!(parse_range(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_range(b"bytes=0-99999999999999999999999"), None);
        assert_eq!(parse_range(&format_range(10, 5).into_bytes()), Some((10, 14)));
    }

    #[test]
    fn content_range_grammar() {
        assert_eq!(parse_content_range(b"bytes 0-9/*"), Some((0, 9)));
        assert_eq!(parse_content_range(b"bytes 0-9/10"), Some((0, 9)));
        assert_eq!(parse_content_range(b"bytes 0-10/10"), None);
        assert_eq!(parse_content_range(b"bytes */10"), None);
        assert_eq!(parse_content_range(b"items 0-9/*"), None);
        assert_eq!(parse_content_range(b"bytes 9-0/*"), None);
        assert_eq!(parse_content_range(b"bytes=0-9"), None);
        assert_eq!(
            parse_content_range(&format_content_range(7, 3).into_bytes()),
            Some((7, 9))
        );
        assert_eq!(
            parse_response_content_range(b"bytes 2-4/100"),
            Some((2, 4, Some(100)))
        );
    }

    #[test]
    fn messages_round_trip() {
        let version = VersionInfo {
            maximum_immutable_share_size: 5,
            maximum_mutable_share_size: 69_105_000_000_000_000,
            available_space: 5,
            application_version: b"tessera/0".to_vec(),
        };
        assert_eq!(decode_version(&encode_version(&version)).unwrap(), version);

        let shares: BTreeSet<ShareNum> = [0, 3, 255].into();
        let request = decode_allocate_request(&encode_allocate_request(&shares, 1 << 40)).unwrap();
        assert_eq!(request.share_numbers, shares);
        assert_eq!(request.allocated_size, 1 << 40);

        let allocation = Allocation {
            already_have: [1].into(),
            allocated: [2, 3].into(),
            refused: BTreeMap::new(),
        };
        assert_eq!(
            decode_allocation(&encode_allocation(&allocation)).unwrap(),
            allocation
        );

        let progress = UploadProgress {
            complete: false,
            required: vec![0..10, 20..30],
        };
        assert_eq!(
            decode_progress(&encode_progress(&progress), false).unwrap(),
            progress
        );
        assert_eq!(decode_share_set(&encode_share_set(&shares)).unwrap(), shares);
        assert_eq!(decode_corrupt(&encode_corrupt("bad hash")).unwrap(), "bad hash");
        for removal in [
            CorruptShareRemoval::Removed {
                problem: "block 3 does not match its hash".into(),
            },
            CorruptShareRemoval::Kept {
                reason: "consistent".into(),
            },
        ] {
            assert_eq!(decode_removal(&encode_removal(&removal)).unwrap(), removal);
        }

        let mut tw = BTreeMap::new();
        tw.insert(
            3,
            TestWriteVectors {
                test: vec![TestVector {
                    offset: 0,
                    size: 1,
                    specimen: vec![],
                }],
                write: vec![WriteVector {
                    offset: 4,
                    data: b"abc".to_vec(),
                }],
                new_length: Some(9),
            },
        );
        tw.insert(4, TestWriteVectors::default());
        let read = vec![ReadVector { offset: 1, size: 2 }];
        let decoded = decode_rtw_request(&encode_rtw_request(&tw, &read)).unwrap();
        assert_eq!(decoded.test_write_vectors, tw);
        assert_eq!(decoded.read_vector, read);

        let result = ReadTestWriteResult {
            success: true,
            data: [(3, vec![b"xy".to_vec()])].into(),
        };
        assert_eq!(decode_rtw_result(&encode_rtw_result(&result)).unwrap(), result);

        let status = StatusReport {
            available_space: 1,
            used_space: 2,
            reserved_space: 3,
            max_space: None,
            readonly: false,
            immutable_shares: 4,
            mutable_shares: 5,
            uploads_in_progress: 6,
            last_expiration: Some(ExpirationSummary {
                time: 7,
                enabled: true,
                examined_leases: 1,
                expired_leases: 2,
                skipped_leases: 3,
                deleted_shares: 4,
                reclaimed_bytes: 5,
                stale_index_entries: 6,
            }),
            corruption_advisories: vec![AdvisoryReport {
                time: 8,
                kind: ShareKind::Mutable,
                storage_index: StorageIndex([9; 16]),
                shnum: 2,
                reason: "r".into(),
            }],
        };
        assert_eq!(decode_status(&encode_status(&status)).unwrap(), status);
    }

    #[test]
    fn request_schemas_are_strict() {
        // Untagged set.
        let untagged = cbor::to_vec(&text_map(vec![
            ("share-numbers", Value::Array(vec![uint(1)])),
            ("allocated-size", uint(1)),
        ]));
        assert!(decode_allocate_request(&untagged).unwrap_err().contains("set"));
        // Unknown key.
        let extra = cbor::to_vec(&text_map(vec![
            ("share-numbers", cbor::share_set(&[1])),
            ("allocated-size", uint(1)),
            ("bonus", uint(1)),
        ]));
        assert!(decode_allocate_request(&extra).unwrap_err().contains("bonus"));
        // Missing key.
        let missing = cbor::to_vec(&text_map(vec![("share-numbers", cbor::share_set(&[1]))]));
        assert!(
            decode_allocate_request(&missing)
                .unwrap_err()
                .contains("allocated-size")
        );
        // Too many shares.
        let many: Vec<Value> = (0..257).map(|_| uint(1)).collect();
        let too_many = cbor::to_vec(&text_map(vec![
            (
                "share-numbers",
                Value::Tag(cbor::SET_TAG, Box::new(Value::Array(many))),
            ),
            ("allocated-size", uint(1)),
        ]));
        assert!(decode_allocate_request(&too_many).is_err());
        // Empty and over-long reasons.
        assert!(decode_corrupt(&encode_corrupt("")).is_err());
        assert!(decode_corrupt(&encode_corrupt(&"x".repeat(MAX_REASON_LEN + 1))).is_err());
        assert!(decode_corrupt(&encode_corrupt(&"x".repeat(MAX_REASON_LEN))).is_ok());
        // Wrong types.
        let wrong = cbor::to_vec(&text_map(vec![("reason", uint(1))]));
        assert!(decode_corrupt(&wrong).unwrap_err().contains("text string"));
        // read-test-write: new-length must be present (null or uint).
        let no_new_length = cbor::to_vec(&text_map(vec![
            (
                "test-write-vectors",
                Value::Map(vec![(
                    uint(0),
                    text_map(vec![
                        ("test", Value::Array(vec![])),
                        ("write", Value::Array(vec![])),
                    ]),
                )]),
            ),
            ("read-vector", Value::Array(vec![])),
        ]));
        assert!(
            decode_rtw_request(&no_new_length)
                .unwrap_err()
                .contains("new-length")
        );
    }
}
