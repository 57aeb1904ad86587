//! Model-based test (sled's `fuzz_model` shape): random sequences of uploads, writes, aborts,
//! read-test-writes, lease renewals, reads, clock jumps, expiry passes, clean restarts, crashes and
//! lost lease indexes, run against the store and against a plain in-memory model. After every step
//! the two must agree on every share's data and leases, the counters, the space used, and the lease
//! index (exactly one entry per lease in the containers).
//!
//! Immutable storage indexes are 0 and 1, mutable ones 2 and 3 (lease renewals touch all four).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::*;
use crate::server::lease::LEASE_DURATION_SECS;
use crate::server::{ExpirationMode, ExpirationPolicy};

#[derive(Debug, Clone, Copy)]
enum TestKind {
    None,
    CreateIfAbsent,
    Prefix { correct: bool },
}

#[derive(Debug, Clone)]
enum Op {
    Allocate {
        si: u8,
        shares: Vec<ShareNum>,
        size: u64,
        lease: u8,
        secret: u8,
    },
    Write {
        si: u8,
        shnum: ShareNum,
        secret: u8,
        offset: u64,
        len: u64,
        corrupt: bool,
    },
    Abort {
        si: u8,
        shnum: ShareNum,
        secret: u8,
    },
    Rtw {
        si: u8,
        shnum: ShareNum,
        we: u8,
        lease: u8,
        test: TestKind,
        write: Option<(u64, u64, u8)>,
        new_length: Option<u64>,
    },
    AddLease {
        si: u8,
        lease: u8,
    },
    Read {
        mutable: bool,
        si: u8,
        shnum: ShareNum,
        offset: u64,
        len: u64,
    },
    Advance {
        secs: u64,
    },
    Expire,
    Restart,
    Crash,
    LoseIndex,
}

fn op() -> impl Strategy<Value = Op> {
    let test_kind = prop_oneof![
        2 => Just(TestKind::None),
        1 => Just(TestKind::CreateIfAbsent),
        2 => any::<bool>().prop_map(|correct| TestKind::Prefix { correct }),
    ];
    let new_length = prop_oneof![
        6 => Just(None),
        1 => Just(Some(0)),
        2 => (1..30u64).prop_map(Some),
    ];
    prop_oneof![
        4 => (0..2u8, vec(0..3 as ShareNum, 1..3), 0..40u64, 0..2u8, 0..2u8)
            .prop_map(|(si, shares, size, lease, secret)| Op::Allocate { si, shares, size, lease, secret }),
        8 => (0..2u8, 0..3 as ShareNum, 0..2u8, 0..40u64, 0..24u64, prop::bool::weighted(0.15))
            .prop_map(|(si, shnum, secret, offset, len, corrupt)| Op::Write { si, shnum, secret, offset, len, corrupt }),
        1 => (0..2u8, 0..3 as ShareNum, 0..2u8).prop_map(|(si, shnum, secret)| Op::Abort { si, shnum, secret }),
        5 => (
            2..4u8,
            0..3 as ShareNum,
            prop_oneof![9 => Just(0u8), 1 => Just(1u8)],
            0..2u8,
            test_kind,
            proptest::option::of((0..30u64, 0..10u64, any::<u8>())),
            new_length,
        )
            .prop_map(|(si, shnum, we, lease, test, write, new_length)| Op::Rtw {
                si,
                shnum,
                we,
                lease,
                test,
                write,
                new_length
            }),
        3 => (0..4u8, 0..6u8).prop_map(|(si, lease)| Op::AddLease { si, lease }),
        3 => (any::<bool>(), 0..4u8, 0..3 as ShareNum, 0..40u64, 0..50u64)
            .prop_map(|(mutable, si, shnum, offset, len)| Op::Read { mutable, si, shnum, offset, len }),
        2 => prop_oneof![0..100u64, 10 * 86_400..40 * 86_400u64].prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Expire),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
        1 => Just(Op::LoseIndex),
    ]
}

/// Errors compared by kind and the fields that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    NotFound,
    UploadSecretMismatch,
    AlreadyComplete(ShareNum),
    Conflict(u64),
    BeyondAllocation(u64, u64),
    WriteEnablerMismatch,
    Other(String),
}

fn failure(error: StorageError) -> Failure {
    match error {
        StorageError::NotFound(_) => Failure::NotFound,
        StorageError::UploadSecretMismatch => Failure::UploadSecretMismatch,
        StorageError::AlreadyComplete { shnum } => Failure::AlreadyComplete(shnum),
        StorageError::Conflict { offset } => Failure::Conflict(offset),
        StorageError::BeyondAllocation { end, allocated } => Failure::BeyondAllocation(end, allocated),
        StorageError::WriteEnablerMismatch => Failure::WriteEnablerMismatch,
        other => Failure::Other(other.to_string()),
    }
}

/// `(success, reads)` of a read-test-write, or how it failed.
type RtwOutcome = Result<(bool, BTreeMap<ShareNum, Vec<Vec<u8>>>), Failure>;

#[derive(Debug, Clone)]
struct ModelShare {
    kind: ShareKind,
    data: Vec<u8>,
    /// lease number → expiry
    leases: BTreeMap<u8, u64>,
    we: u8,
}

#[derive(Debug, Clone)]
struct ModelUpload {
    secret: u8,
    size: u64,
    written: Vec<Option<u8>>,
    lease: u8,
    expiry: u64,
    /// Model time of the allocation or the last successful write.
    last_write: u64,
}

#[derive(Debug, Default)]
struct Model {
    shares: BTreeMap<(u8, ShareNum), ModelShare>,
    uploads: BTreeMap<(u8, ShareNum), ModelUpload>,
    now: u64,
}

fn renew(leases: &mut BTreeMap<u8, u64>, lease: u8, expiry: u64) {
    let entry = leases.entry(lease).or_insert(expiry);
    *entry = (*entry).max(expiry);
}

fn clamped(data: &[u8], offset: u64, len: u64) -> Vec<u8> {
    let start = (offset as usize).min(data.len());
    let end = (offset.saturating_add(len) as usize).min(data.len());
    data[start..end].to_vec()
}

fn byte(si: u8, shnum: ShareNum, position: u64) -> u8 {
    (position as u8).wrapping_mul(13) ^ si.wrapping_mul(41) ^ (shnum as u8)
}

impl Model {
    fn expiry(&self) -> u64 {
        self.now + LEASE_DURATION_SECS
    }

    fn shnums(&self, si: u8, kind: ShareKind) -> BTreeSet<ShareNum> {
        self.shares
            .iter()
            .filter(|((s, _), share)| *s == si && share.kind == kind)
            .map(|((_, shnum), _)| *shnum)
            .collect()
    }

    fn allocate(
        &mut self,
        si: u8,
        shares: &[ShareNum],
        size: u64,
        lease: u8,
        secret: u8,
    ) -> (Vec<u16>, Vec<u16>) {
        let expiry = self.expiry();
        let already: Vec<ShareNum> = self.shnums(si, ShareKind::Immutable).into_iter().collect();
        for shnum in &already {
            if let Some(share) = self.shares.get_mut(&(si, *shnum)) {
                renew(&mut share.leases, lease, expiry);
            }
        }
        let mut allocated = Vec::new();
        for shnum in shares.iter().copied().collect::<BTreeSet<_>>() {
            if self.shares.contains_key(&(si, shnum)) {
                continue;
            }
            // Another client's upload idle for the takeover limit is replaced; any other is kept.
            let takeover = crate::server::UPLOAD_TAKEOVER_AFTER.as_secs();
            if let Some(current) = self.uploads.get(&(si, shnum))
                && (current.secret == secret || self.now.saturating_sub(current.last_write) < takeover)
            {
                continue;
            }
            self.uploads.insert(
                (si, shnum),
                ModelUpload {
                    secret,
                    size,
                    written: vec![None; size as usize],
                    lease,
                    expiry,
                    last_write: self.now,
                },
            );
            allocated.push(shnum);
        }
        (already, allocated)
    }

    fn write(
        &mut self,
        si: u8,
        shnum: ShareNum,
        secret: u8,
        offset: u64,
        data: &[u8],
    ) -> Result<(bool, Vec<std::ops::Range<u64>>), Failure> {
        let upload = self.uploads.get_mut(&(si, shnum)).ok_or(Failure::NotFound)?;
        if upload.secret != secret {
            return Err(Failure::UploadSecretMismatch);
        }
        let end = offset + data.len() as u64;
        if end > upload.size {
            return Err(Failure::BeyondAllocation(end, upload.size));
        }
        for (i, b) in data.iter().enumerate() {
            if let Some(old) = upload.written[offset as usize + i]
                && old != *b
            {
                return Err(Failure::Conflict(offset));
            }
        }
        for (i, b) in data.iter().enumerate() {
            upload.written[offset as usize + i] = Some(*b);
        }
        upload.last_write = self.now;
        let mut required = Vec::new();
        let mut i = 0;
        while i < upload.written.len() {
            if upload.written[i].is_none() {
                let start = i;
                while i < upload.written.len() && upload.written[i].is_none() {
                    i += 1;
                }
                required.push(start as u64..i as u64);
            } else {
                i += 1;
            }
        }
        if !required.is_empty() {
            return Ok((false, required));
        }
        let upload = self.uploads.remove(&(si, shnum)).expect("present");
        self.shares.insert(
            (si, shnum),
            ModelShare {
                kind: ShareKind::Immutable,
                data: upload.written.into_iter().map(|b| b.expect("complete")).collect(),
                leases: [(upload.lease, upload.expiry)].into_iter().collect(),
                we: 0,
            },
        );
        Ok((true, Vec::new()))
    }

    fn abort(&mut self, si: u8, shnum: ShareNum, secret: u8) -> Result<(), Failure> {
        match self.uploads.get(&(si, shnum)) {
            Some(upload) if upload.secret != secret => Err(Failure::UploadSecretMismatch),
            Some(_) => {
                self.uploads.remove(&(si, shnum));
                Ok(())
            }
            None => match self.shares.get(&(si, shnum)) {
                Some(share) if share.kind == ShareKind::Immutable => Err(Failure::AlreadyComplete(shnum)),
                _ => Err(Failure::NotFound),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rtw(
        &mut self,
        si: u8,
        shnum: ShareNum,
        we: u8,
        lease: u8,
        test: TestKind,
        write: Option<(u64, u64, u8)>,
        new_length: Option<u64>,
    ) -> RtwOutcome {
        let existing = self.shnums(si, ShareKind::Mutable);
        for n in &existing {
            if self.shares[&(si, *n)].we != we {
                return Err(Failure::WriteEnablerMismatch);
            }
        }
        let current = self
            .shares
            .get(&(si, shnum))
            .map(|s| s.data.clone())
            .unwrap_or_default();
        let passed = match test {
            TestKind::None => true,
            TestKind::CreateIfAbsent => clamped(&current, 0, 1).is_empty(),
            TestKind::Prefix { correct } => {
                let mut specimen = clamped(&current, 0, 4);
                if !correct {
                    specimen.push(b'!');
                }
                clamped(&current, 0, 4) == specimen
            }
        };
        let reads: BTreeMap<ShareNum, Vec<Vec<u8>>> = existing
            .iter()
            .map(|n| (*n, vec![clamped(&self.shares[&(si, *n)].data, 0, 8)]))
            .collect();
        if !passed {
            return Ok((false, reads));
        }
        if new_length == Some(0) {
            self.shares.remove(&(si, shnum));
        } else {
            let mut data = current;
            if let Some((offset, len, b)) = write {
                let end = (offset + len) as usize;
                if end > data.len() {
                    data.resize(end, 0);
                }
                data[offset as usize..end].fill(b);
            }
            if let Some(n) = new_length {
                data.resize(n as usize, 0);
            }
            let share = self.shares.entry((si, shnum)).or_insert_with(|| ModelShare {
                kind: ShareKind::Mutable,
                data: Vec::new(),
                leases: BTreeMap::new(),
                we,
            });
            share.data = data;
        }
        let expiry = self.expiry();
        for ((s, _), share) in self.shares.iter_mut() {
            if *s == si && share.kind == ShareKind::Mutable {
                renew(&mut share.leases, lease, expiry);
            }
        }
        Ok((true, reads))
    }

    fn add_lease(&mut self, si: u8, lease: u8) -> Result<(), Failure> {
        let expiry = self.expiry();
        let mut found = false;
        for ((s, _), share) in self.shares.iter_mut() {
            if *s == si {
                found = true;
                renew(&mut share.leases, lease, expiry);
            }
        }
        if found { Ok(()) } else { Err(Failure::NotFound) }
    }

    fn expire(&mut self) -> (u64, u64) {
        let now = self.now;
        let (mut expired, mut deleted) = (0, 0);
        self.shares.retain(|_, share| {
            let before = share.leases.len();
            share.leases.retain(|_, expiry| *expiry >= now);
            expired += (before - share.leases.len()) as u64;
            if share.leases.is_empty() {
                deleted += 1;
                false
            } else {
                true
            }
        });
        (expired, deleted)
    }
}

fn apply(h: &mut Harness, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op.clone() {
        Op::Allocate {
            si: s,
            shares,
            size,
            lease: l,
            secret,
        } => {
            let (already, allocated) = model.allocate(s, &shares, size, l, secret);
            let actual = h
                .server()
                .allocate_buckets(
                    si(s),
                    &lease(l),
                    &upload_secret(secret),
                    &shares.iter().copied().collect(),
                    size,
                )
                .map_err(failure);
            prop_assert_eq!(
                actual.map(|a| (a.already_have, a.allocated)),
                Ok((already.into_iter().collect(), allocated.into_iter().collect()))
            );
        }
        Op::Write {
            si: s,
            shnum,
            secret,
            offset,
            len,
            corrupt,
        } => {
            let mut data: Vec<u8> = (offset..offset + len).map(|p| byte(s, shnum, p)).collect();
            if corrupt && !data.is_empty() {
                data[0] ^= 0xff;
            }
            let expected = model.write(s, shnum, secret, offset, &data);
            let actual = h
                .server()
                .write_share(si(s), shnum, &upload_secret(secret), offset, &data)
                .map(|p| (p.complete, p.required))
                .map_err(failure);
            prop_assert_eq!(actual, expected);
        }
        Op::Abort { si: s, shnum, secret } => {
            let expected = model.abort(s, shnum, secret);
            let actual = h
                .server()
                .abort_upload(si(s), shnum, &upload_secret(secret))
                .map_err(failure);
            prop_assert_eq!(actual, expected);
        }
        Op::Rtw {
            si: s,
            shnum,
            we,
            lease: l,
            test,
            write,
            new_length,
        } => {
            let expected = model.rtw(s, shnum, we, l, test, write, new_length);
            let current = h
                .server()
                .read_share(ShareKind::Mutable, si(s), shnum, 0, 4)
                .unwrap_or_default();
            let tests = match test {
                TestKind::None => Vec::new(),
                TestKind::CreateIfAbsent => vec![test_vector(0, 1, b"")],
                TestKind::Prefix { correct } => {
                    let mut specimen = current;
                    if !correct {
                        specimen.push(b'!');
                    }
                    vec![test_vector(0, 4, &specimen)]
                }
            };
            let vectors = TestWriteVectors {
                test: tests,
                write: write
                    .map(|(offset, len, b)| WriteVector {
                        offset,
                        data: vec![b; len as usize],
                    })
                    .into_iter()
                    .collect(),
                new_length,
            };
            let actual = rtw(
                h.server(),
                si(s),
                we,
                l,
                shnum,
                vectors,
                &[ReadVector { offset: 0, size: 8 }],
            )
            .map(|r| (r.success, r.data))
            .map_err(failure);
            prop_assert_eq!(actual, expected);
        }
        Op::AddLease { si: s, lease: l } => {
            let expected = model.add_lease(s, l);
            let actual = h.server().add_or_renew_lease(si(s), &lease(l)).map_err(failure);
            prop_assert_eq!(actual, expected);
        }
        Op::Read {
            mutable,
            si: s,
            shnum,
            offset,
            len,
        } => {
            let kind = if mutable {
                ShareKind::Mutable
            } else {
                ShareKind::Immutable
            };
            let expected = match model.shares.get(&(s, shnum)) {
                Some(share) if share.kind == kind => Ok(clamped(&share.data, offset, len)),
                _ => Err(Failure::NotFound),
            };
            let actual = h
                .server()
                .read_share(kind, si(s), shnum, offset, len)
                .map_err(failure);
            prop_assert_eq!(actual, expected);
        }
        Op::Advance { secs } => {
            model.now += secs;
            h.clock.advance(Duration::from_secs(secs));
        }
        Op::Expire => {
            let expected = model.expire();
            let report = h
                .server()
                .expire_leases()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!((report.expired_leases, report.deleted_shares), expected);
            prop_assert_eq!(report.stale_index_entries, 0);
        }
        Op::Restart => {
            h.restart();
            model.uploads.clear();
        }
        Op::Crash => {
            h.crash_and_restart();
            model.uploads.clear();
        }
        Op::LoseIndex => {
            h.stop();
            std::fs::remove_dir_all(h.root().join("leases.sled")).unwrap();
            h.start();
            model.uploads.clear();
        }
    }
    h.server().set_disk_free(Some(1 << 40));
    Ok(())
}

fn check(h: &Harness, model: &Model) -> Result<(), TestCaseError> {
    let server = h.server();
    let mut container_leases = Vec::new();
    for s in 0..4u8 {
        for kind in [ShareKind::Immutable, ShareKind::Mutable] {
            prop_assert_eq!(server.list_shares(kind, si(s)).unwrap(), model.shnums(s, kind));
        }
    }
    for ((s, shnum), share) in &model.shares {
        let data = server
            .read_share(share.kind, si(*s), *shnum, 0, u64::MAX)
            .unwrap();
        prop_assert_eq!(&data, &share.data);
        let mut actual: Vec<([u8; 32], u32)> = h
            .leases(share.kind, si(*s), *shnum)
            .into_iter()
            .map(|(id, expiry, _)| (id, expiry))
            .collect();
        actual.sort();
        let mut expected: Vec<([u8; 32], u32)> = share
            .leases
            .iter()
            .map(|(n, expiry)| (lease_id(*n), *expiry as u32))
            .collect();
        expected.sort();
        prop_assert_eq!(&actual, &expected);
        for (id, expiry) in actual {
            container_leases.push((u64::from(expiry), share.kind as u8, si(*s), *shnum, id));
        }
    }
    let status = server.status();
    prop_assert_eq!(status.immutable_shares, model.shnums_count(ShareKind::Immutable));
    prop_assert_eq!(status.mutable_shares, model.shnums_count(ShareKind::Mutable));
    prop_assert_eq!(status.uploads_in_progress, model.uploads.len() as u64);
    prop_assert_eq!(status.used_space, h.bytes_on_disk());
    let mut index: Vec<_> = server
        .index_entries()
        .into_iter()
        .map(|k| (k.expiry, k.kind as u8, k.si, k.shnum, k.lease_id))
        .collect();
    index.sort();
    container_leases.sort();
    prop_assert_eq!(index, container_leases);
    Ok(())
}

impl Model {
    fn shnums_count(&self, kind: ShareKind) -> u64 {
        self.shares.values().filter(|share| share.kind == kind).count() as u64
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES=2000 for a deeper run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "src/server/tests/model.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_agrees_with_model(ops in vec(op(), 1..48)) {
        let mut h = Harness::with(|config| {
            config.expiration = ExpirationPolicy {
                enabled: true,
                mode: ExpirationMode::Age { override_lease_duration: None },
                immutable: true,
                mutable: true,
            };
        });
        h.server().set_disk_free(Some(1 << 40));
        let mut model = Model { now: h.now_secs(), ..Model::default() };
        for op in &ops {
            apply(&mut h, &mut model, op)?;
            check(&h, &model)?;
        }
    }
}
