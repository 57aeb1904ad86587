//! Capability strings (tahoe-formats.md §2): parse, format, derive read-only and verify caps.
//!
//! A cap both names and authorizes. Parsing is strict: a string with a known prefix whose fields are
//! malformed is an error that names the field; a string with an unknown prefix is kept verbatim as
//! [`Cap::Unknown`] so that directories written by newer software survive a round trip.
//!
//! `Display` prints the full cap (it is the cap's only textual form). `Debug` never prints a secret:
//! it shows the kind, an abbreviated storage index and the public parameters.

use std::fmt;
use std::str::FromStr;

use storage::{StorageIndex, base32};

use crate::hashes::{ssk_readkey_hash, ssk_storage_index_hash, storage_index_hash};

/// The largest file whose contents live in the cap itself (`URI:LIT:`).
pub const LIT_THRESHOLD: u64 = 55;

/// The "alleged read-only" prefix on caps stored in a dirnode's read-only slot.
pub const ALLEGED_READONLY_PREFIX: &str = "ro.";
/// The "alleged immutable" prefix on caps stored in a dirnode's read-only slot.
pub const ALLEGED_IMMUTABLE_PREFIX: &str = "imm.";

/// A parsed capability.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Cap {
    /// A file cap.
    File(FileCap),
    /// A directory cap: a file cap whose contents are a packed directory.
    Dir(DirCap),
    /// A cap this version does not understand, kept verbatim.
    Unknown(String),
}

/// A file cap of any kind.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum FileCap {
    /// `URI:LIT:`: the file's bytes themselves.
    Lit(LitCap),
    /// `URI:CHK:`: an immutable file's read cap.
    Chk(ChkCap),
    /// `URI:CHK-Verifier:`: lets a checker verify an immutable file's shares without reading it.
    ChkVerifier(ChkVerifierCap),
    /// `URI:SSK*:` and `URI:MDMF*:`: a mutable file cap.
    Mutable(MutableCap),
}

/// A directory cap: the `DIR2` form of a file cap.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DirCap(FileCap);

/// `URI:LIT:<data>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LitCap {
    /// The whole file.
    pub data: Vec<u8>,
}

/// `URI:CHK:<key>:<ueb_hash>:<k>:<N>:<size>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChkCap {
    /// The AES-128 read key.
    pub key: [u8; 16],
    /// The hash of the URI extension block.
    pub ueb_hash: [u8; 32],
    /// Shares needed to read (k).
    pub needed: u16,
    /// Shares written (N).
    pub total: u16,
    /// Plaintext size in bytes.
    pub size: u64,
}

/// `URI:CHK-Verifier:<SI>:<ueb_hash>:<k>:<N>:<size>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChkVerifierCap {
    /// The storage index.
    pub storage_index: StorageIndex,
    /// The hash of the URI extension block.
    pub ueb_hash: [u8; 32],
    /// Shares needed to read (k).
    pub needed: u16,
    /// Shares written (N).
    pub total: u16,
    /// Plaintext size in bytes.
    pub size: u64,
}

/// The share format of a mutable file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MutableFormat {
    /// Single-segment (`URI:SSK`).
    Sdmf,
    /// Multi-segment (`URI:MDMF`).
    Mdmf,
}

/// What a mutable cap grants, with the secret that grants it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum MutableAccess {
    /// Read and write: the write key.
    Write {
        /// The 16-byte write key.
        writekey: [u8; 16],
    },
    /// Read only: the read key.
    Read {
        /// The 16-byte read key.
        readkey: [u8; 16],
    },
    /// Verify only: the storage index.
    Verify {
        /// The storage index.
        storage_index: StorageIndex,
    },
}

/// A mutable file cap (SDMF or MDMF; write, read-only or verify).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MutableCap {
    /// SDMF or MDMF.
    pub format: MutableFormat,
    /// The access level and its key.
    pub access: MutableAccess,
    /// The hash of the file's RSA public key.
    pub fingerprint: [u8; 32],
}

/// Why a cap string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The cap has the wrong number of `:`-separated fields.
    #[error("{kind} cap has {found} fields, expected {expected}")]
    FieldCount {
        /// The cap kind, e.g. `URI:CHK`.
        kind: &'static str,
        /// How many fields were found after the prefix.
        found: usize,
        /// How many fields this kind has.
        expected: &'static str,
    },
    /// A field is malformed.
    #[error("{kind} cap has an invalid {field}: {reason}")]
    BadField {
        /// The cap kind, e.g. `URI:CHK`.
        kind: &'static str,
        /// The field name, e.g. `key`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A cap with an alleged-read-only or alleged-immutable prefix grants more than the prefix claims.
    #[error("{kind} cap used where a {wanted} cap is required")]
    PrefixViolation {
        /// The cap kind.
        kind: &'static str,
        /// "read-only" or "immutable".
        wanted: &'static str,
    },
}

impl Cap {
    /// Parses a cap, honouring `ro.`/`imm.` prefixes: a cap that grants more than its prefix claims is
    /// an error. Unknown prefixes yield [`Cap::Unknown`].
    pub fn parse(text: &str) -> Result<Cap, CapError> {
        let text = text.trim_end_matches(' ');
        if let Some(rest) = text.strip_prefix(ALLEGED_IMMUTABLE_PREFIX) {
            let cap = Cap::parse_plain(rest)?;
            if cap.is_mutable() {
                return Err(CapError::PrefixViolation {
                    kind: cap.kind(),
                    wanted: "immutable",
                });
            }
            return Ok(cap);
        }
        if let Some(rest) = text.strip_prefix(ALLEGED_READONLY_PREFIX) {
            let cap = Cap::parse_plain(rest)?;
            if !cap.is_readonly() {
                return Err(CapError::PrefixViolation {
                    kind: cap.kind(),
                    wanted: "read-only",
                });
            }
            return Ok(cap);
        }
        Cap::parse_plain(text)
    }

    /// Parses like [`Cap::parse`] but turns every error into [`Cap::Unknown`], as Tahoe does for the
    /// children of a directory.
    pub fn parse_lenient(text: &str) -> Cap {
        Cap::parse(text).unwrap_or_else(|_| Cap::Unknown(text.to_owned()))
    }

    fn parse_plain(text: &str) -> Result<Cap, CapError> {
        const DIR_PREFIXES: [(&str, &str); 9] = [
            ("URI:DIR2:", "URI:SSK:"),
            ("URI:DIR2-RO:", "URI:SSK-RO:"),
            ("URI:DIR2-Verifier:", "URI:SSK-Verifier:"),
            ("URI:DIR2-MDMF:", "URI:MDMF:"),
            ("URI:DIR2-MDMF-RO:", "URI:MDMF-RO:"),
            ("URI:DIR2-MDMF-Verifier:", "URI:MDMF-Verifier:"),
            ("URI:DIR2-CHK:", "URI:CHK:"),
            ("URI:DIR2-CHK-Verifier:", "URI:CHK-Verifier:"),
            ("URI:DIR2-LIT:", "URI:LIT:"),
        ];
        for (dir_prefix, file_prefix) in DIR_PREFIXES {
            if let Some(body) = text.strip_prefix(dir_prefix) {
                let inner = FileCap::parse_file(&format!("{file_prefix}{body}"))?
                    .expect("invariant: the file prefix is recognised");
                return Ok(Cap::Dir(DirCap(inner)));
            }
        }
        Ok(match FileCap::parse_file(text)? {
            Some(file) => Cap::File(file),
            None => Cap::Unknown(text.to_owned()),
        })
    }

    /// The cap kind, e.g. `URI:CHK` or `URI:DIR2-MDMF-RO`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cap::File(f) => f.kind(),
            Cap::Dir(d) => d.kind(),
            Cap::Unknown(_) => "unknown",
        }
    }

    /// Whether the cap grants no write access.
    pub fn is_readonly(&self) -> bool {
        match self {
            Cap::File(f) => f.is_readonly(),
            Cap::Dir(d) => d.0.is_readonly(),
            Cap::Unknown(_) => false,
        }
    }

    /// Whether the object can change.
    pub fn is_mutable(&self) -> bool {
        match self {
            Cap::File(f) => f.is_mutable(),
            Cap::Dir(d) => d.0.is_mutable(),
            Cap::Unknown(_) => true,
        }
    }

    /// The read-only cap for the same object, or `None` if this cap cannot read (a verifier) or is
    /// unknown.
    pub fn readonly(&self) -> Option<Cap> {
        match self {
            Cap::File(f) => f.readonly().map(Cap::File),
            Cap::Dir(d) => d.readonly().map(Cap::Dir),
            Cap::Unknown(_) => None,
        }
    }

    /// The verify cap for the same object (`None` for LIT and unknown caps).
    pub fn verifier(&self) -> Option<Cap> {
        match self {
            Cap::File(f) => f.verifier().map(Cap::File),
            Cap::Dir(d) => d.verifier().map(Cap::Dir),
            Cap::Unknown(_) => None,
        }
    }

    /// The storage index of the object's shares (`None` for LIT and unknown caps).
    pub fn storage_index(&self) -> Option<StorageIndex> {
        match self {
            Cap::File(f) => f.storage_index(),
            Cap::Dir(d) => d.0.storage_index(),
            Cap::Unknown(_) => None,
        }
    }
}

impl FromStr for Cap {
    type Err = CapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cap::parse(s)
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cap::File(file) => file.fmt(f),
            Cap::Dir(dir) => dir.fmt(f),
            Cap::Unknown(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cap::File(file) => file.fmt_debug(f, ""),
            Cap::Dir(dir) => fmt::Debug::fmt(dir, f),
            Cap::Unknown(text) => write!(f, "Unknown({} chars)", text.len()),
        }
    }
}

/// Splits the fields after a prefix and checks their count.
fn fields<'a>(
    kind: &'static str,
    body: &'a str,
    expected: usize,
    allow_extra: bool,
) -> Result<Vec<&'a str>, CapError> {
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() == expected || (allow_extra && parts.len() > expected) {
        Ok(parts)
    } else {
        Err(CapError::FieldCount {
            kind,
            found: parts.len(),
            expected: if allow_extra {
                "at least 2"
            } else {
                expected_text(expected)
            },
        })
    }
}

fn expected_text(n: usize) -> &'static str {
    match n {
        1 => "1",
        2 => "2",
        5 => "5",
        _ => "another number of",
    }
}

fn b32_field<const N: usize>(
    kind: &'static str,
    field: &'static str,
    text: &str,
) -> Result<[u8; N], CapError> {
    let want = base32::encoded_len(N);
    if text.len() != want {
        return Err(CapError::BadField {
            kind,
            field,
            reason: format!("expected {want} base32 characters, found {}", text.len()),
        });
    }
    base32::decode_exact::<N>(text).map_err(|e| CapError::BadField {
        kind,
        field,
        reason: e.to_string(),
    })
}

fn decimal_field(kind: &'static str, field: &'static str, text: &str, max: u64) -> Result<u64, CapError> {
    let bad = |reason: String| CapError::BadField { kind, field, reason };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{text:?} is not a decimal number")));
    }
    let value: u64 = text.parse().map_err(|_| bad(format!("{text} is too large")))?;
    if value > max {
        return Err(bad(format!("{value} is larger than {max}")));
    }
    Ok(value)
}

/// Parses `k:N:size` and checks 1 ≤ k ≤ N ≤ 256.
fn chk_numbers(kind: &'static str, parts: &[&str]) -> Result<(u16, u16, u64), CapError> {
    let needed = decimal_field(kind, "needed shares (k)", parts[0], 256)? as u16;
    let total = decimal_field(kind, "total shares (N)", parts[1], 256)? as u16;
    if needed == 0 || needed > total {
        return Err(CapError::BadField {
            kind,
            field: "needed shares (k)",
            reason: format!("k={needed} must be between 1 and N={total}"),
        });
    }
    let size = decimal_field(kind, "size", parts[2], u64::MAX)?;
    Ok((needed, total, size))
}

impl FileCap {
    /// Parses a file cap; `Ok(None)` if the prefix is not a file-cap prefix.
    fn parse_file(text: &str) -> Result<Option<FileCap>, CapError> {
        const MUTABLE: [(&str, &str, MutableFormat, u8); 6] = [
            ("URI:SSK:", "URI:SSK", MutableFormat::Sdmf, 0),
            ("URI:SSK-RO:", "URI:SSK-RO", MutableFormat::Sdmf, 1),
            ("URI:SSK-Verifier:", "URI:SSK-Verifier", MutableFormat::Sdmf, 2),
            ("URI:MDMF:", "URI:MDMF", MutableFormat::Mdmf, 0),
            ("URI:MDMF-RO:", "URI:MDMF-RO", MutableFormat::Mdmf, 1),
            ("URI:MDMF-Verifier:", "URI:MDMF-Verifier", MutableFormat::Mdmf, 2),
        ];
        if let Some(body) = text.strip_prefix("URI:LIT:") {
            let kind = "URI:LIT";
            let data = base32::decode(body).map_err(|e| CapError::BadField {
                kind,
                field: "data",
                reason: e.to_string(),
            })?;
            return Ok(Some(FileCap::Lit(LitCap { data })));
        }
        if let Some(body) = text.strip_prefix("URI:CHK:") {
            let kind = "URI:CHK";
            let parts = fields(kind, body, 5, false)?;
            let key = b32_field::<16>(kind, "key", parts[0])?;
            let ueb_hash = b32_field::<32>(kind, "UEB hash", parts[1])?;
            let (needed, total, size) = chk_numbers(kind, &parts[2..])?;
            return Ok(Some(FileCap::Chk(ChkCap {
                key,
                ueb_hash,
                needed,
                total,
                size,
            })));
        }
        if let Some(body) = text.strip_prefix("URI:CHK-Verifier:") {
            let kind = "URI:CHK-Verifier";
            let parts = fields(kind, body, 5, false)?;
            let si = b32_field::<16>(kind, "storage index", parts[0])?;
            let ueb_hash = b32_field::<32>(kind, "UEB hash", parts[1])?;
            let (needed, total, size) = chk_numbers(kind, &parts[2..])?;
            return Ok(Some(FileCap::ChkVerifier(ChkVerifierCap {
                storage_index: StorageIndex(si),
                ueb_hash,
                needed,
                total,
                size,
            })));
        }
        for (prefix, kind, format, level) in MUTABLE {
            if let Some(body) = text.strip_prefix(prefix) {
                // MDMF caps may carry extra fields, which are ignored (Tahoe never emits them).
                let parts = fields(kind, body, 2, format == MutableFormat::Mdmf)?;
                let key_name = ["write key", "read key", "storage index"][level as usize];
                let key = b32_field::<16>(kind, key_name, parts[0])?;
                let fingerprint = b32_field::<32>(kind, "fingerprint", parts[1])?;
                let access = match level {
                    0 => MutableAccess::Write { writekey: key },
                    1 => MutableAccess::Read { readkey: key },
                    _ => MutableAccess::Verify {
                        storage_index: StorageIndex(key),
                    },
                };
                return Ok(Some(FileCap::Mutable(MutableCap {
                    format,
                    access,
                    fingerprint,
                })));
            }
        }
        Ok(None)
    }

    /// The cap kind, e.g. `URI:CHK`.
    pub fn kind(&self) -> &'static str {
        match self {
            FileCap::Lit(_) => "URI:LIT",
            FileCap::Chk(_) => "URI:CHK",
            FileCap::ChkVerifier(_) => "URI:CHK-Verifier",
            FileCap::Mutable(m) => m.kind(),
        }
    }

    /// Whether the cap grants no write access.
    pub fn is_readonly(&self) -> bool {
        match self {
            FileCap::Mutable(m) => !matches!(m.access, MutableAccess::Write { .. }),
            _ => true,
        }
    }

    /// Whether the file can change.
    pub fn is_mutable(&self) -> bool {
        matches!(self, FileCap::Mutable(_))
    }

    /// The read-only cap, or `None` for a verify cap.
    pub fn readonly(&self) -> Option<FileCap> {
        match self {
            FileCap::Lit(_) | FileCap::Chk(_) => Some(self.clone()),
            FileCap::ChkVerifier(_) => None,
            FileCap::Mutable(m) => m.readonly().map(FileCap::Mutable),
        }
    }

    /// The verify cap, or `None` for a LIT cap (it has no shares to verify).
    pub fn verifier(&self) -> Option<FileCap> {
        match self {
            FileCap::Lit(_) => None,
            FileCap::Chk(c) => Some(FileCap::ChkVerifier(c.verifier())),
            FileCap::ChkVerifier(_) => Some(self.clone()),
            FileCap::Mutable(m) => Some(FileCap::Mutable(m.verifier())),
        }
    }

    /// The storage index (`None` for LIT).
    pub fn storage_index(&self) -> Option<StorageIndex> {
        match self {
            FileCap::Lit(_) => None,
            FileCap::Chk(c) => Some(c.storage_index()),
            FileCap::ChkVerifier(v) => Some(v.storage_index),
            FileCap::Mutable(m) => Some(m.storage_index()),
        }
    }

    /// The plaintext size if the cap states it (LIT and CHK).
    pub fn size(&self) -> Option<u64> {
        match self {
            FileCap::Lit(l) => Some(l.data.len() as u64),
            FileCap::Chk(c) => Some(c.size),
            FileCap::ChkVerifier(v) => Some(v.size),
            FileCap::Mutable(_) => None,
        }
    }

    fn fmt_debug(&self, f: &mut fmt::Formatter<'_>, dir: &str) -> fmt::Result {
        let kind = self.kind();
        match self {
            FileCap::Lit(l) => write!(f, "{dir}{kind}({} bytes)", l.data.len()),
            FileCap::Chk(c) => {
                write!(
                    f,
                    "{dir}{kind}(si={}, {}-of-{}, {} bytes)",
                    short_si(c.storage_index()),
                    c.needed,
                    c.total,
                    c.size
                )
            }
            FileCap::ChkVerifier(c) => {
                write!(
                    f,
                    "{dir}{kind}(si={}, {}-of-{}, {} bytes)",
                    short_si(c.storage_index),
                    c.needed,
                    c.total,
                    c.size
                )
            }
            FileCap::Mutable(m) => write!(f, "{dir}{kind}(si={})", short_si(m.storage_index())),
        }
    }
}

fn short_si(si: StorageIndex) -> String {
    si.to_string()[..8].to_owned()
}

impl fmt::Display for FileCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileCap::Lit(l) => write!(f, "URI:LIT:{}", base32::encode(&l.data)),
            FileCap::Chk(c) => write!(
                f,
                "URI:CHK:{}:{}:{}:{}:{}",
                base32::encode(&c.key),
                base32::encode(&c.ueb_hash),
                c.needed,
                c.total,
                c.size
            ),
            FileCap::ChkVerifier(c) => write!(
                f,
                "URI:CHK-Verifier:{}:{}:{}:{}:{}",
                c.storage_index,
                base32::encode(&c.ueb_hash),
                c.needed,
                c.total,
                c.size
            ),
            FileCap::Mutable(m) => {
                let key = match m.access {
                    MutableAccess::Write { writekey } => base32::encode(&writekey),
                    MutableAccess::Read { readkey } => base32::encode(&readkey),
                    MutableAccess::Verify { storage_index } => storage_index.to_string(),
                };
                write!(f, "{}:{}:{}", m.kind(), key, base32::encode(&m.fingerprint))
            }
        }
    }
}

impl fmt::Debug for FileCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_debug(f, "")
    }
}

impl ChkCap {
    /// The storage index derived from the key.
    pub fn storage_index(&self) -> StorageIndex {
        StorageIndex(storage_index_hash(&self.key))
    }

    /// The verify cap.
    pub fn verifier(&self) -> ChkVerifierCap {
        ChkVerifierCap {
            storage_index: self.storage_index(),
            ueb_hash: self.ueb_hash,
            needed: self.needed,
            total: self.total,
            size: self.size,
        }
    }
}

impl fmt::Debug for ChkCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FileCap::Chk(*self).fmt_debug(f, "")
    }
}

impl fmt::Display for ChkCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FileCap::Chk(*self).fmt(f)
    }
}

impl fmt::Debug for ChkVerifierCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FileCap::ChkVerifier(*self).fmt_debug(f, "")
    }
}

impl fmt::Display for ChkVerifierCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FileCap::ChkVerifier(*self).fmt(f)
    }
}

impl fmt::Debug for LitCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "URI:LIT({} bytes)", self.data.len())
    }
}

impl MutableCap {
    /// The cap kind, e.g. `URI:MDMF-RO`.
    pub fn kind(&self) -> &'static str {
        match (self.format, &self.access) {
            (MutableFormat::Sdmf, MutableAccess::Write { .. }) => "URI:SSK",
            (MutableFormat::Sdmf, MutableAccess::Read { .. }) => "URI:SSK-RO",
            (MutableFormat::Sdmf, MutableAccess::Verify { .. }) => "URI:SSK-Verifier",
            (MutableFormat::Mdmf, MutableAccess::Write { .. }) => "URI:MDMF",
            (MutableFormat::Mdmf, MutableAccess::Read { .. }) => "URI:MDMF-RO",
            (MutableFormat::Mdmf, MutableAccess::Verify { .. }) => "URI:MDMF-Verifier",
        }
    }

    /// The write key, if this is a write cap.
    pub fn writekey(&self) -> Option<[u8; 16]> {
        match self.access {
            MutableAccess::Write { writekey } => Some(writekey),
            _ => None,
        }
    }

    /// The read key, if this cap can read.
    pub fn readkey(&self) -> Option<[u8; 16]> {
        match self.access {
            MutableAccess::Write { writekey } => Some(ssk_readkey_hash(&writekey)),
            MutableAccess::Read { readkey } => Some(readkey),
            MutableAccess::Verify { .. } => None,
        }
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        match self.access {
            MutableAccess::Verify { storage_index } => storage_index,
            _ => StorageIndex(ssk_storage_index_hash(
                &self
                    .readkey()
                    .expect("invariant: write and read caps have a read key"),
            )),
        }
    }

    /// The read-only cap, or `None` for a verify cap.
    pub fn readonly(&self) -> Option<MutableCap> {
        let readkey = self.readkey()?;
        Some(MutableCap {
            access: MutableAccess::Read { readkey },
            ..*self
        })
    }

    /// The verify cap.
    pub fn verifier(&self) -> MutableCap {
        MutableCap {
            access: MutableAccess::Verify {
                storage_index: self.storage_index(),
            },
            ..*self
        }
    }
}

impl fmt::Debug for MutableAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MutableAccess::Write { .. } => f.write_str("Write"),
            MutableAccess::Read { .. } => f.write_str("Read"),
            MutableAccess::Verify { storage_index } => write!(f, "Verify({})", short_si(*storage_index)),
        }
    }
}

impl fmt::Debug for MutableCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FileCap::Mutable(*self).fmt_debug(f, "")
    }
}

impl DirCap {
    /// Wraps a file cap as a directory cap. Every file-cap kind has a directory form except
    /// `CHK-Verifier`'s `LIT` counterpart, which does not exist (a LIT directory has no verifier).
    pub fn new(file: FileCap) -> Self {
        DirCap(file)
    }

    /// The underlying file cap.
    pub fn file(&self) -> &FileCap {
        &self.0
    }

    /// The cap kind, e.g. `URI:DIR2-MDMF-RO`.
    pub fn kind(&self) -> &'static str {
        match self.0.kind() {
            "URI:LIT" => "URI:DIR2-LIT",
            "URI:CHK" => "URI:DIR2-CHK",
            "URI:CHK-Verifier" => "URI:DIR2-CHK-Verifier",
            "URI:SSK" => "URI:DIR2",
            "URI:SSK-RO" => "URI:DIR2-RO",
            "URI:SSK-Verifier" => "URI:DIR2-Verifier",
            "URI:MDMF" => "URI:DIR2-MDMF",
            "URI:MDMF-RO" => "URI:DIR2-MDMF-RO",
            _ => "URI:DIR2-MDMF-Verifier",
        }
    }

    /// The read-only directory cap, or `None` for a verifier.
    pub fn readonly(&self) -> Option<DirCap> {
        self.0.readonly().map(DirCap)
    }

    /// The directory verify cap (`None` for LIT directories).
    pub fn verifier(&self) -> Option<DirCap> {
        self.0.verifier().map(DirCap)
    }
}

impl fmt::Display for DirCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.0.to_string();
        let body = file
            .strip_prefix(self.0.kind())
            .expect("invariant: a file cap starts with its kind");
        write!(f, "{}{}", self.kind(), body)
    }
}

impl fmt::Debug for DirCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dir(")?;
        self.0.fmt_debug(f, "")?;
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests;
