//! Lease expiry driven by the index: age mode (with and without an overridden duration), cutoff-date
//! mode, the immutable/mutable switches, renewals moving entries, and partial expiry.

use std::time::SystemTime;

use super::*;
use crate::server::store::expiry_threshold;
use crate::server::{ExpirationMode, ExpirationPolicy};

fn enabled(mode: ExpirationMode) -> impl FnOnce(&mut StorageConfig) {
    move |config: &mut StorageConfig| {
        config.expiration = ExpirationPolicy {
            enabled: true,
            mode,
            immutable: true,
            mutable: true,
        };
    }
}

const AGE: ExpirationMode = ExpirationMode::Age {
    override_lease_duration: None,
};

/// One immutable share (si 1) and one mutable share (si 2), both leased at the clock's start.
fn two_shares(h: &Harness) {
    upload(h.server(), si(1), 0, b"immutable", 1);
    assert!(
        rtw(h.server(), si(2), 1, 1, 0, write_vectors(0, b"mutable"), &[])
            .unwrap()
            .success
    );
}

#[test]
fn disabled_expiry_does_nothing() {
    let h = Harness::new();
    two_shares(&h);
    h.clock.advance(400 * DAY);
    let report = h.server().expire_leases().unwrap();
    assert!(!report.enabled);
    assert_eq!(report.examined_leases, 0);
    assert_eq!(h.server().status().immutable_shares, 1);
    assert_eq!(h.server().status().last_expiration, None);
}

#[test]
fn age_mode_deletes_shares_after_31_days() {
    let h = Harness::with(enabled(AGE));
    two_shares(&h);
    let sizes = h.bytes_on_disk();
    h.clock.advance(31 * DAY);
    // Exactly at the expiry: not yet (Tahoe expires when the age exceeds the duration).
    let report = h.server().expire_leases().unwrap();
    assert_eq!((report.examined_leases, report.deleted_shares), (0, 0));
    h.clock.advance(Duration::from_secs(1));
    let report = h.server().expire_leases().unwrap();
    assert_eq!(report.examined_leases, 2);
    assert_eq!(report.expired_leases, 2);
    assert_eq!(report.deleted_shares, 2);
    assert_eq!(report.reclaimed_bytes, sizes);
    let status = h.server().status();
    assert_eq!(
        (status.immutable_shares, status.mutable_shares, status.used_space),
        (0, 0, 0)
    );
    assert_eq!(status.last_expiration, Some(report));
    assert!(
        h.server()
            .list_shares(ShareKind::Immutable, si(1))
            .unwrap()
            .is_empty()
    );
    assert!(
        h.server()
            .list_shares(ShareKind::Mutable, si(2))
            .unwrap()
            .is_empty()
    );
    assert!(!h.share_path(si(1), 0).parent().unwrap().exists());
    assert!(h.server().index_entries().is_empty());
    assert!(matches!(
        h.server().add_or_renew_lease(si(1), &lease(1)),
        Err(StorageError::NotFound(_))
    ));
}

#[test]
fn renewal_moves_the_index_entry() {
    let h = Harness::with(enabled(AGE));
    two_shares(&h);
    h.clock.advance(20 * DAY);
    h.server().add_or_renew_lease(si(1), &lease(1)).unwrap();
    h.clock.advance(12 * DAY);
    // The mutable share's lease expired; the renewed immutable one is not even looked at.
    let report = h.server().expire_leases().unwrap();
    assert_eq!(report.examined_leases, 1);
    assert_eq!(report.deleted_shares, 1);
    assert_eq!(report.stale_index_entries, 0);
    assert_eq!(
        h.server().list_shares(ShareKind::Immutable, si(1)).unwrap(),
        shnums(&[0])
    );
    h.clock.advance(20 * DAY);
    let report = h.server().expire_leases().unwrap();
    assert_eq!(report.deleted_shares, 1);
    assert!(
        h.server()
            .list_shares(ShareKind::Immutable, si(1))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn partial_expiry_removes_only_expired_leases() {
    let h = Harness::with(enabled(AGE));
    two_shares(&h);
    h.clock.advance(10 * DAY);
    h.server().add_or_renew_lease(si(1), &lease(2)).unwrap();
    h.server().add_or_renew_lease(si(2), &lease(2)).unwrap();
    let immutable_before = std::fs::metadata(h.share_path(si(1), 0)).unwrap().len();
    let mutable_before = std::fs::metadata(h.share_path(si(2), 0)).unwrap().len();
    h.clock.advance(22 * DAY);
    let report = h.server().expire_leases().unwrap();
    assert_eq!(report.expired_leases, 2);
    assert_eq!(report.deleted_shares, 0);
    // The immutable container shrinks by one record; the mutable slot is zeroed in place.
    assert_eq!(report.reclaimed_bytes, 72);
    assert_eq!(
        std::fs::metadata(h.share_path(si(1), 0)).unwrap().len(),
        immutable_before - 72
    );
    assert_eq!(
        std::fs::metadata(h.share_path(si(2), 0)).unwrap().len(),
        mutable_before
    );
    for (kind, s) in [(ShareKind::Immutable, si(1)), (ShareKind::Mutable, si(2))] {
        let leases = h.leases(kind, s, 0);
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].0, lease_id(2));
    }
    assert_eq!(
        h.server()
            .read_share(ShareKind::Immutable, si(1), 0, 0, 100)
            .unwrap(),
        b"immutable"
    );
    assert_eq!(
        h.server()
            .read_share(ShareKind::Mutable, si(2), 0, 0, 100)
            .unwrap(),
        b"mutable"
    );
    assert_eq!(h.server().status().used_space, h.bytes_on_disk());
    // The freed mutable slot is reused by the next new lease.
    h.server().add_or_renew_lease(si(2), &lease(3)).unwrap();
    assert_eq!(
        std::fs::metadata(h.share_path(si(2), 0)).unwrap().len(),
        mutable_before
    );
    h.clock.advance(40 * DAY);
    assert_eq!(h.server().expire_leases().unwrap().deleted_shares, 2);
}

#[test]
fn age_mode_with_an_overridden_duration() {
    let h = Harness::with(enabled(ExpirationMode::Age {
        override_lease_duration: Some(DAY),
    }));
    two_shares(&h);
    h.clock.advance(DAY);
    assert_eq!(h.server().expire_leases().unwrap().deleted_shares, 0);
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.server().expire_leases().unwrap().deleted_shares, 2);

    // A longer override keeps leases past their stored expiry.
    let h = Harness::with(enabled(ExpirationMode::Age {
        override_lease_duration: Some(60 * DAY),
    }));
    two_shares(&h);
    h.clock.advance(59 * DAY);
    assert_eq!(h.server().expire_leases().unwrap().deleted_shares, 0);
    h.clock.advance(2 * DAY);
    assert_eq!(h.server().expire_leases().unwrap().deleted_shares, 2);
}

#[test]
fn cutoff_date_mode() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let cutoff = start + Duration::from_secs(1);
    let h = Harness::with(enabled(ExpirationMode::CutoffDate(cutoff)));
    two_shares(&h);
    // Share si(3) is leased after the cutoff.
    h.clock.advance(Duration::from_secs(2));
    upload(h.server(), si(3), 0, b"later", 1);
    // Leases renewed before the cutoff expire at once, whatever the time.
    let report = h.server().expire_leases().unwrap();
    assert_eq!(report.deleted_shares, 2);
    assert_eq!(
        h.server().list_shares(ShareKind::Immutable, si(3)).unwrap(),
        shnums(&[0])
    );
    h.clock.advance(365 * DAY);
    assert_eq!(h.server().expire_leases().unwrap().deleted_shares, 0);
}

#[test]
fn switches_restrict_expiry_to_one_kind() {
    for (immutable, mutable) in [(false, true), (true, false)] {
        let h = Harness::with(|config| {
            config.expiration = ExpirationPolicy {
                enabled: true,
                mode: AGE,
                immutable,
                mutable,
            };
        });
        two_shares(&h);
        h.clock.advance(32 * DAY);
        let report = h.server().expire_leases().unwrap();
        assert_eq!(report.examined_leases, 2);
        assert_eq!(report.skipped_leases, 1);
        assert_eq!(report.deleted_shares, 1);
        let status = h.server().status();
        assert_eq!(status.immutable_shares, u64::from(!immutable));
        assert_eq!(status.mutable_shares, u64::from(!mutable));
    }
}

#[test]
fn expiry_reads_the_index_not_the_directory() {
    let mut h = Harness::with(enabled(AGE));
    two_shares(&h);
    // A share copied in behind the server's back has no index entry...
    h.stop();
    let stray = h.share_path(si(9), 0);
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::copy(h.share_path(si(1), 0), &stray).unwrap();
    h.start();
    h.clock.advance(32 * DAY);
    let report = h.server().expire_leases().unwrap();
    assert_eq!(report.deleted_shares, 2);
    // ...so it is not found by a pass, until a rebuild indexes it.
    assert_eq!(
        h.server().list_shares(ShareKind::Immutable, si(9)).unwrap(),
        shnums(&[0])
    );
    h.crash_and_restart();
    assert_eq!(h.server().expire_leases().unwrap().deleted_shares, 1);
}

#[test]
fn shares_without_leases_are_deleted_after_a_rebuild() {
    let mut h = Harness::with(enabled(AGE));
    upload(h.server(), si(1), 0, b"data", 1);
    h.stop();
    // Remove the lease by hand (count 0, record truncated).
    let path = h.share_path(si(1), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 72);
    bytes[8..12].copy_from_slice(&0u32.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    std::fs::remove_dir_all(h.root().join("leases.sled")).unwrap();
    h.start();
    let report = h.server().expire_leases().unwrap();
    assert_eq!(report.deleted_shares, 1);
    assert_eq!(report.expired_leases, 0);
}

#[test]
fn thresholds() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    assert_eq!(expiry_threshold(AGE, now), 1000);
    assert_eq!(expiry_threshold(AGE, now + Duration::from_millis(1)), 1001);
    let day_override = ExpirationMode::Age {
        override_lease_duration: Some(DAY),
    };
    assert_eq!(expiry_threshold(day_override, now), 1000 + 30 * 86_400);
    let huge = ExpirationMode::Age {
        override_lease_duration: Some(1000 * DAY),
    };
    assert_eq!(expiry_threshold(huge, now), 0);
    assert_eq!(
        expiry_threshold(ExpirationMode::CutoffDate(now), now + 400 * DAY),
        1000 + 31 * 86_400
    );
}

/// Scan-only mode (Tahoe's with `expire.enabled = false`): the cycle deletes nothing but reports
/// what the configured policy would recover, and what the original lease terms would.
#[test]
fn scan_only_cycle_reports_what_expiry_would_recover() {
    let h = Harness::with(|config| {
        config.expiration = ExpirationPolicy {
            enabled: false,
            mode: ExpirationMode::Age {
                override_lease_duration: Some(5 * DAY),
            },
            immutable: true,
            mutable: false,
        };
    });
    two_shares(&h);
    let immutable_size = std::fs::metadata(h.share_path(si(1), 0)).unwrap().len();
    let mutable_size = std::fs::metadata(h.share_path(si(2), 0)).unwrap().len();

    // Day 1: nothing is old enough under either judgement.
    h.clock.advance(DAY);
    let cycle = h.server().run_lease_cycle().unwrap();
    let sr = cycle.space_recovered;
    assert!(!cycle.expiration_enabled);
    assert_eq!(sr.examined.all.shares, 2);
    assert_eq!(sr.examined.all.buckets, 2);
    assert_eq!(sr.examined.immutable.sharebytes, immutable_size);
    assert_eq!(sr.examined.mutable.sharebytes, mutable_size);
    assert_eq!(sr.configured, Default::default());
    assert_eq!(sr.original, Default::default());
    assert_eq!(cycle.leases_per_share.get(&1), Some(&2));

    // Day 6: past the configured 5 days. Only the immutable share is subject to expiry
    // (expire.mutable = false); it would go, but nothing is deleted.
    h.clock.advance(5 * DAY);
    let cycle = h.server().run_lease_cycle().unwrap();
    let sr = cycle.space_recovered;
    assert_eq!(sr.configured.all.shares, 1);
    assert_eq!(sr.configured.immutable.shares, 1);
    assert_eq!(sr.configured.immutable.sharebytes, immutable_size);
    assert_eq!(sr.configured.all.buckets, 1);
    assert_eq!(sr.configured.mutable, Default::default());
    assert_eq!(sr.original, Default::default(), "31-day leases are still live");
    assert_eq!(sr.actual, Default::default(), "scan-only deletes nothing");
    assert!(h.share_path(si(1), 0).exists());
    assert_eq!(h.server().status().immutable_shares, 1);

    // Day 33: both leases' own terms have passed too.
    h.clock.advance(27 * DAY);
    let cycle = h.server().run_lease_cycle().unwrap();
    assert_eq!(cycle.space_recovered.original.all.shares, 2);
    assert_eq!(cycle.space_recovered.original.all.buckets, 2);
    assert_eq!(cycle.space_recovered.actual, Default::default());
    assert!(h.share_path(si(2), 0).exists());

    let state = h.server().lease_checker();
    assert_eq!(state.current, None);
    assert_eq!(
        state.history.iter().map(|c| c.number).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(h.server().stats().bucket_count, Some(2));
}

/// With expiry enabled the same cycle deletes, and reports what it deleted as `actual`: the
/// figures an operator saw in scan-only mode.
#[test]
fn enabled_cycle_deletes_what_scan_only_predicted() {
    let h = Harness::with(enabled(AGE));
    two_shares(&h);
    upload(h.server(), si(3), 0, b"kept: renewed", 1);
    h.clock.advance(20 * DAY);
    h.server().add_or_renew_lease(si(3), &lease(3)).unwrap();
    h.clock.advance(12 * DAY);
    let cycle = h.server().run_lease_cycle().unwrap();
    let sr = cycle.space_recovered;
    assert!(cycle.expiration_enabled);
    assert_eq!(sr.examined.all.shares, 3);
    assert_eq!(sr.configured.all.shares, 2);
    assert_eq!(sr.actual, sr.configured);
    assert_eq!(sr.actual.all.buckets, 2);
    assert!(!h.share_path(si(1), 0).exists());
    assert!(!h.share_path(si(2), 0).exists());
    assert!(h.share_path(si(3), 0).exists());
    // The next cycle sees only what is left.
    let next = h.server().run_lease_cycle().unwrap();
    assert_eq!(next.space_recovered.examined.all.shares, 1);
    assert_eq!(next.space_recovered.actual, Default::default());
}

#[test]
fn history_keeps_the_last_ten_cycles() {
    let h = Harness::new();
    for _ in 0..12 {
        h.server().run_lease_cycle().unwrap();
    }
    let history = h.server().lease_checker().history;
    assert_eq!(history.len(), crate::server::HISTORY);
    assert_eq!(history.first().unwrap().number, 2);
    assert_eq!(history.last().unwrap().number, 11);
    assert!(history.iter().all(|c| c.complete_percentage() == 100.0));
}

#[test]
fn stats_count_operations_bytes_and_disk() {
    let h = Harness::with(|config| config.reserved_space = 1000);
    two_shares(&h);
    h.server()
        .read_share(ShareKind::Immutable, si(1), 0, 0, 4)
        .unwrap();
    h.server().set_disk_free(Some(5000));
    let stats = h.server().stats();
    let count =
        |op: crate::server::Operation| stats.operations.iter().find(|s| s.operation == op).unwrap().count;
    use crate::server::Operation;
    assert_eq!(count(Operation::Allocate), 1);
    assert_eq!(count(Operation::Close), 1);
    assert_eq!(count(Operation::Writev), 1);
    assert_eq!(count(Operation::Read), 1);
    assert_eq!(count(Operation::AddLease), 0);
    assert_eq!(stats.bytes_read, 4);
    assert_eq!(stats.bytes_added, (b"immutable".len() + b"mutable".len()) as u64);
    let disk = stats.disk.unwrap();
    assert_eq!((disk.free_for_nonroot, disk.avail), (5000, 4000));
    assert!(stats.accepting_immutable_shares);
    assert_eq!(stats.reserved_space, 1000);
    assert_eq!(stats.bucket_count, None, "no cycle has run yet");
}
