//! Logins: passwords checked against the shared accounts file (argon2id hashes), with failed logins
//! rate-limited per client address and logged without the password.
//!
//! There is no anonymous login: libunftp's default authenticator accepts everyone, so the server
//! is always built with [`GridAuth`], which knows only the accounts file's password users.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use filenode::cap::DirCap;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

use crate::accounts::AccountsFile;

/// A logged-in user: the name and the root directory.
#[derive(Clone)]
pub struct GridUser {
    pub(crate) name: String,
    pub(crate) root: DirCap,
}

// libunftp logs the user (Debug and Display) with every command: the name only, never the cap.
impl std::fmt::Debug for GridUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GridUser({:?})", self.name)
    }
}

impl std::fmt::Display for GridUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl UserDetail for GridUser {}

/// Failed logins from one address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Counts failed logins per client address: after [`LoginLimiter::MAX_FAILURES`] failures within
/// [`LoginLimiter::WINDOW`], every login from that address is refused (without checking the
/// password) until the window has passed.
#[derive(Debug, Default)]
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginLimiter {
    /// Failures allowed per window.
    pub(crate) const MAX_FAILURES: u32 = 5;
    /// How long failures count.
    pub(crate) const WINDOW: Duration = Duration::from_secs(300);

    /// Whether `ip` is locked out now.
    pub(crate) fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures
            .get(&ip)
            .is_some_and(|f| f.count >= Self::MAX_FAILURES && now.duration_since(f.since) < Self::WINDOW)
    }

    /// Records a failure; returns the number of failures in the current window.
    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() > 10_000 {
            failures.retain(|_, f| now.duration_since(f.since) < Self::WINDOW);
        }
        let entry = failures.entry(ip).or_insert(Failures { count: 0, since: now });
        if now.duration_since(entry.since) >= Self::WINDOW {
            *entry = Failures { count: 0, since: now };
        }
        entry.count += 1;
        entry.count
    }

    /// Forgets the failures of an address that logged in.
    pub(crate) fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ip);
    }
}

/// The authenticator and user provider: the accounts file's password users.
pub(crate) struct GridAuth {
    pub(crate) accounts: Arc<AccountsFile>,
    pub(crate) limiter: LoginLimiter,
    /// How long a failed login waits before its reply (slows guessing on one connection).
    pub(crate) failure_delay: Duration,
}

impl std::fmt::Debug for GridAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GridAuth")
    }
}

impl GridAuth {
    async fn refuse(&self, username: &str, ip: IpAddr, why: &'static str) -> AuthenticationError {
        let count = self.limiter.failed(ip, Instant::now());
        tracing::warn!(user = %username.escape_debug(), %ip, failures = count, why, "FTP login failed");
        tokio::time::sleep(self.failure_delay).await;
        AuthenticationError::BadPassword
    }
}

#[async_trait]
impl Authenticator for GridAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let ip = creds.source_ip;
        if self.limiter.is_blocked(ip, Instant::now()) {
            tracing::warn!(user = %username.escape_debug(), %ip, "FTP login refused: too many failed logins from this address");
            tokio::time::sleep(self.failure_delay).await;
            return Err(AuthenticationError::IpDisallowed);
        }
        let Some(password) = creds.password.clone() else {
            return Err(self.refuse(username, ip, "no password").await);
        };
        let accounts = Arc::clone(&self.accounts);
        let user = username.to_owned();
        // argon2id is slow on purpose: off the async runtime.
        let checked = tokio::task::spawn_blocking(move || accounts.check_password(&user, &password))
            .await
            .ok()
            .flatten();
        match checked {
            Some(account) => {
                self.limiter.succeeded(ip);
                tracing::info!(user = %account.name.escape_debug(), %ip, "FTP login");
                Ok(Principal {
                    username: account.name,
                })
            }
            None => Err(self.refuse(username, ip, "unknown user or wrong password").await),
        }
    }
}

#[async_trait]
impl UserDetailProvider for GridAuth {
    type User = GridUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<GridUser, UserDetailError> {
        let accounts = self.accounts.current();
        let account = accounts
            .get(&principal.username)
            .ok_or_else(|| UserDetailError::UserNotFound {
                username: principal.username.clone(),
            })?;
        Ok(GridUser {
            name: account.name.clone(),
            root: account.root.clone(),
        })
    }
}
