//! Logins: passwords checked against the shared accounts file (argon2id hashes), with logins
//! rate-limited per client address (`crate::login_limit`: attempts reserved before the hash, a
//! success forgets only its own user's failures) and failures logged without the password.
//!
//! There is no anonymous login: libunftp's default authenticator accepts everyone, so the server
//! is always built with [`GridAuth`], which knows only the accounts file's password users.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use filenode::cap::DirCap;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

use crate::accounts::AccountsFile;
use crate::login_limit::{Attempt, LoginLimiter};

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

/// Failed logins allowed per source address within [`FAILURE_WINDOW`].
pub(crate) const MAX_FAILURES: u32 = 5;
/// How long failures count (and an address stays refused).
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// The authenticator and user provider: the accounts file's password users.
pub(crate) struct GridAuth {
    pub(crate) accounts: Arc<AccountsFile>,
    pub(crate) limiter: LoginLimiter,
    /// How long a failed login waits before its reply (slows guessing on one connection).
    pub(crate) failure_delay: Duration,
    /// The FTP server's figures (failed logins).
    pub(crate) counters: Arc<crate::counters::FrontendCounters>,
}

impl std::fmt::Debug for GridAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GridAuth")
    }
}

impl GridAuth {
    async fn refuse(
        &self,
        attempt: Attempt<'_>,
        username: &str,
        ip: IpAddr,
        why: &'static str,
    ) -> AuthenticationError {
        let count = attempt.failed();
        self.counters.login_failed();
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
        // Reserved before the (slow) hash: parallel guesses count while they run.
        let Some(attempt) = self.limiter.begin(ip, username, Instant::now()) else {
            tracing::warn!(user = %username.escape_debug(), %ip, "FTP login refused: too many failed logins from this address");
            self.counters.login_failed();
            tokio::time::sleep(self.failure_delay).await;
            return Err(AuthenticationError::IpDisallowed);
        };
        let Some(password) = creds.password.clone() else {
            return Err(self.refuse(attempt, username, ip, "no password").await);
        };
        let checked = self
            .accounts
            .check_password_off_runtime(username, &password)
            .await;
        match checked {
            Some(account) => {
                attempt.succeeded();
                tracing::info!(user = %account.name.escape_debug(), %ip, "FTP login");
                Ok(Principal {
                    username: account.name,
                })
            }
            None => Err(self
                .refuse(attempt, username, ip, "unknown user or wrong password")
                .await),
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
