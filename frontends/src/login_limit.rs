//! The login limit SFTP and FTP share: at most `max_failures` failed logins per source address in a
//! window, counting the logins still being checked.
//!
//! - An attempt is reserved with [`LoginLimiter::begin`] *before* its password is hashed (argon2id
//!   is slow on purpose), and counts against the limit while it runs: parallel guesses from one
//!   address are bounded by the limit, not by how many arrive before the first one fails.
//! - Failures are remembered per user name within the address. A successful login forgets that
//!   user's failures only, so one valid account does not reset the count that stops guessing at
//!   another account's password from the same address.
//! - The source is an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64).
//! - An attempt dropped without an outcome (its connection went away while the password was being
//!   checked) counts as a failure.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Past this many tracked sources, sources whose window has passed are dropped.
const TIDY_ABOVE: usize = 10_000;

/// Whom a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source(IpAddr);

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Source(IpAddr::V6(prefix.into()))
                }
            },
            v4 => Source(v4),
        }
    }
}

/// One source's recent logins.
#[derive(Debug)]
struct Record {
    /// When the window started.
    since: Instant,
    /// Failures in the window, per user (keyed by a keyed hash of the name, so an attacker's long
    /// names take no memory).
    failures: HashMap<u64, u32>,
    /// Attempts reserved and not yet settled.
    in_flight: u32,
}

impl Record {
    fn failed(&self) -> u32 {
        self.failures.values().sum()
    }

    fn used(&self) -> u32 {
        self.failed() + self.in_flight
    }
}

/// Counts logins per source address; see the module documentation.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    names: RandomState,
    records: Mutex<HashMap<Source, Record>>,
}

impl LoginLimiter {
    /// At most `max_failures` failed (or running) logins per source within `window`.
    pub(crate) fn new(max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max_failures,
            window,
            names: RandomState::new(),
            records: Mutex::new(HashMap::new()),
        }
    }

    /// Failures (and running attempts) allowed per window.
    pub(crate) fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// How long failures count.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    fn records(&self) -> MutexGuard<'_, HashMap<Source, Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record of `source` with its window brought up to `now`.
    fn current<'a>(
        &self,
        records: &'a mut HashMap<Source, Record>,
        source: Source,
        now: Instant,
    ) -> &'a mut Record {
        let record = records.entry(source).or_insert_with(|| Record {
            since: now,
            failures: HashMap::new(),
            in_flight: 0,
        });
        if now.saturating_duration_since(record.since) >= self.window {
            record.since = now;
            record.failures.clear();
        }
        record
    }

    /// Whether a login from `ip` would be refused now (without reserving anything).
    pub(crate) fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let records = self.records();
        records.get(&Source::of(ip)).is_some_and(|record| {
            let failed = if now.saturating_duration_since(record.since) >= self.window {
                0
            } else {
                record.failed()
            };
            failed + record.in_flight >= self.max_failures
        })
    }

    /// Reserves an attempt by `user` from `ip`, or `None` when the source's failures and running
    /// attempts have reached the limit. Settle it with [`Attempt::succeeded`] or
    /// [`Attempt::failed`].
    pub(crate) fn begin(&self, ip: IpAddr, user: &str, now: Instant) -> Option<Attempt<'_>> {
        let source = Source::of(ip);
        let mut records = self.records();
        if records.len() > TIDY_ABOVE {
            let window = self.window;
            records.retain(|_, r| r.in_flight > 0 || now.saturating_duration_since(r.since) < window);
        }
        let record = self.current(&mut records, source, now);
        if record.used() >= self.max_failures {
            return None;
        }
        record.in_flight += 1;
        Some(Attempt {
            limiter: self,
            source,
            user: self.names.hash_one(user),
            settled: false,
        })
    }

    fn settle(&self, source: Source, user: u64, failed: bool) -> u32 {
        let mut records = self.records();
        let Some(record) = records.get_mut(&source) else {
            return 0;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        if failed {
            *record.failures.entry(user).or_insert(0) += 1;
        } else {
            record.failures.remove(&user);
        }
        let count = record.failed();
        if count == 0 && record.in_flight == 0 {
            records.remove(&source);
        }
        count
    }
}

/// A login attempt counted against its source's limit until it is settled.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    source: Source,
    user: u64,
    settled: bool,
}

impl Attempt<'_> {
    /// The login succeeded: the user's failures from this source are forgotten (other users'
    /// are not).
    pub(crate) fn succeeded(mut self) {
        self.settled = true;
        self.limiter.settle(self.source, self.user, false);
    }

    /// The login failed; returns the source's failures in the current window.
    pub(crate) fn failed(mut self) -> u32 {
        self.settled = true;
        self.limiter.settle(self.source, self.user, true)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.settle(self.source, self.user, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn failures_lock_a_source_out_for_a_window() {
        let limiter = LoginLimiter::new(5, Duration::from_secs(300));
        let other: IpAddr = [192, 0, 2, 2].into();
        let start = Instant::now();
        for i in 1..5 {
            assert_eq!(limiter.begin(IP, "bob", start).unwrap().failed(), i);
            assert!(!limiter.is_blocked(IP, start));
        }
        limiter.begin(IP, "bob", start).unwrap().failed();
        assert!(limiter.is_blocked(IP, start));
        assert!(limiter.begin(IP, "alice", start).is_none());
        assert!(!limiter.is_blocked(other, start));
        let later = start + Duration::from_secs(301);
        assert!(!limiter.is_blocked(IP, later));
        assert_eq!(limiter.begin(IP, "bob", later).unwrap().failed(), 1);
    }

    #[test]
    fn running_attempts_count_and_a_dropped_one_is_a_failure() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let now = Instant::now();
        let running: Vec<Attempt<'_>> = (0..3).map(|_| limiter.begin(IP, "bob", now).unwrap()).collect();
        assert!(limiter.begin(IP, "bob", now).is_none());
        assert!(limiter.is_blocked(IP, now));
        drop(running);
        assert!(limiter.begin(IP, "bob", now).is_none(), "three failures now");
    }

    #[test]
    fn a_success_forgets_only_its_own_users_failures() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let now = Instant::now();
        limiter.begin(IP, "alice", now).unwrap().failed();
        limiter.begin(IP, "bob", now).unwrap().failed();
        limiter.begin(IP, "alice", now).unwrap().succeeded();
        assert_eq!(limiter.begin(IP, "bob", now).unwrap().failed(), 2);
    }

    #[test]
    fn an_ipv6_source_is_its_64_prefix() {
        let limiter = LoginLimiter::new(1, Duration::from_secs(60));
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.begin(a, "bob", now).unwrap().failed();
        assert!(limiter.is_blocked(b, now));
        assert!(!limiter.is_blocked(c, now));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        limiter.begin(IP, "bob", now).unwrap().failed();
        assert!(limiter.is_blocked(mapped, now));
    }
}
