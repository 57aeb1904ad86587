//! The accounts file shared by the SFTP (and, later, FTP) frontends: who may log in, how, and which
//! directory cap is their `/`.
//!
//! Format: Tahoe's `private/accounts` line format, extended.
//! ```text
//! # comment
//! USER ssh-ed25519 AAAA... [comment] ROOTCAP        a public key (ed25519, ECDSA or RSA)
//! USER ssh-rsa AAAA... other-key ROOTCAP            several lines: several keys for one user
//! USER $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH ROOTCAP   a password, stored only as its hash
//! ```
//! Every line of a user must name the same root cap. A plaintext password (Tahoe before 1.17) is
//! refused: `tessera admin passwd` writes the argon2id hash.
//!
//! A malformed line is reported with its line number and skipped; the other users still log in.
//! [`AccountsFile`] re-reads the file whenever it changes (checked at each login), so editing it
//! needs no restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use filenode::cap::{Cap, DirCap};
use russh::keys::PublicKey;

/// One user.
#[derive(Clone)]
pub struct Account {
    /// The login name.
    pub name: String,
    /// The user's `/`.
    pub root: DirCap,
    /// Public keys that may log in as this user.
    pub keys: Vec<PublicKey>,
    /// The argon2id hash (PHC string) of the user's password, if the user has one.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("keys", &self.keys.len())
            .field("password", &self.password_hash.is_some())
            .finish_non_exhaustive()
    }
}

/// A line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, line {line}: {reason}")]
pub struct LineError {
    /// The accounts file.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (never the line's secret fields).
    pub reason: String,
}

/// The parsed accounts.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    users: BTreeMap<String, Account>,
    /// Lines that were skipped.
    pub errors: Vec<LineError>,
}

/// The key types accepted for user keys.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-") || field.starts_with("ecdsa-") || field.starts_with("sk-")
}

impl Accounts {
    /// Parses the text of an accounts file (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Accounts {
        let mut accounts = Accounts::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Err(reason) = accounts.add_line(line) {
                accounts.errors.push(LineError {
                    file: file.to_owned(),
                    line: index + 1,
                    reason,
                });
            }
        }
        accounts
    }

    fn add_line(&mut self, line: &str) -> Result<(), String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 {
            return Err(
                "expected `USER KEYTYPE KEY [comment] ROOTCAP` or `USER $argon2id$... ROOTCAP`".into(),
            );
        }
        let name = fields[0];
        let root_text = fields[fields.len() - 1];
        let root = match Cap::parse(root_text) {
            Ok(Cap::Dir(dir)) => dir,
            Ok(_) => return Err("the last field must be a directory cap (URI:DIR2...)".into()),
            Err(_) => return Err("the last field is not a valid directory cap".into()),
        };
        let mut key = None;
        let mut password_hash = None;
        let method = fields[1];
        if is_key_type(method) {
            if !KEY_TYPES.contains(&method) {
                return Err(format!(
                    "key type {method} is not accepted (use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa)"
                ));
            }
            if fields.len() < 4 {
                return Err("a key line needs USER KEYTYPE KEY [comment] ROOTCAP".into());
            }
            let parsed = PublicKey::from_openssh(&format!("{method} {}", fields[2]))
                .map_err(|e| format!("the {method} key does not parse: {e}"))?;
            if parsed.algorithm().as_str() != method {
                return Err(format!(
                    "the key is a {} key but the line says {method}",
                    parsed.algorithm().as_str()
                ));
            }
            key = Some(parsed);
        } else if method.starts_with("$argon2id$") {
            if fields.len() != 3 {
                return Err("a password line is `USER $argon2id$... ROOTCAP`".into());
            }
            argon2::password_hash::phc::PasswordHash::new(method)
                .map_err(|e| format!("the password hash does not parse: {e}"))?;
            password_hash = Some(method.to_owned());
        } else if method.starts_with('$') {
            return Err("only argon2id password hashes are accepted".into());
        } else {
            return Err(
                "plaintext passwords are not accepted; set the password with `tessera admin passwd`".into(),
            );
        }
        match self.users.get_mut(name) {
            Some(existing) => {
                if existing.root.to_string() != root.to_string() {
                    return Err(format!(
                        "user {name:?} is given a different root cap than on an earlier line"
                    ));
                }
                if password_hash.is_some() && existing.password_hash.is_some() {
                    return Err(format!("user {name:?} has a password on an earlier line already"));
                }
                existing.keys.extend(key);
                if password_hash.is_some() {
                    existing.password_hash = password_hash;
                }
            }
            None => {
                self.users.insert(
                    name.to_owned(),
                    Account {
                        name: name.to_owned(),
                        root,
                        keys: key.into_iter().collect(),
                        password_hash,
                    },
                );
            }
        }
        Ok(())
    }

    /// The user of that name.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.users.get(name)
    }

    /// The number of usable accounts.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no account is usable.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `key` may log in as `user`.
    pub fn key_allowed(&self, user: &str, key: &PublicKey) -> Option<&Account> {
        let account = self.users.get(user)?;
        account
            .keys
            .iter()
            .any(|k| k.key_data() == key.key_data())
            .then_some(account)
    }
}

/// A password hash for unknown users and users without a password, so that every password check
/// costs the same.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password: this hash only spends time"))
}

/// The argon2id hash (PHC string, default parameters) of `password`, with a random salt.
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("invariant: argon2 hashes any password with default parameters")
        .to_string()
}

/// Checks `password` against a PHC hash. Slow on purpose (argon2id): call it off the async runtime.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// The accounts file on disk, re-read whenever it changes.
#[derive(Debug)]
pub struct AccountsFile {
    path: PathBuf,
    cached: Mutex<Option<(Stamp, std::sync::Arc<Accounts>)>>,
    /// Passwords checked against a hash so far.
    password_checks: std::sync::atomic::AtomicU64,
}

/// What tells that the file changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

impl AccountsFile {
    /// The accounts in `path` (read at the first use).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AccountsFile {
            path: path.into(),
            cached: Mutex::new(None),
            password_checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current accounts: re-read if the file changed since the last call. Problems are logged
    /// (each bad line with its number) once per change.
    pub fn current(&self) -> std::sync::Arc<Accounts> {
        let now = stamp(&self.path);
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (Some(now), Some((seen, accounts))) = (&now, cached.as_ref())
            && now == seen
        {
            return std::sync::Arc::clone(accounts);
        }
        let shown = self.path.display().to_string();
        let accounts = match crate::textfile::read_bounded(&self.path, crate::textfile::LIST_LIMIT) {
            Ok(text) => Accounts::parse(&text, &shown),
            Err(e) => {
                tracing::warn!(file = %shown, error = %e, "cannot read the accounts file; nobody can log in");
                Accounts::default()
            }
        };
        for error in &accounts.errors {
            tracing::warn!("accounts file: {error}; that line is ignored");
        }
        tracing::info!(file = %shown, users = accounts.len(), "accounts loaded");
        let accounts = std::sync::Arc::new(accounts);
        if let Some(now) = now {
            *cached = Some((now, std::sync::Arc::clone(&accounts)));
        }
        accounts
    }

    /// [`AccountsFile::check_password`] on a blocking thread: argon2id is slow on purpose, and
    /// must not hold up the async runtime. What every frontend's login calls.
    pub async fn check_password_off_runtime(self: &Arc<Self>, user: &str, password: &str) -> Option<Account> {
        let accounts = Arc::clone(self);
        let (user, password) = (user.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || accounts.check_password(&user, &password))
            .await
            .ok()
            .flatten()
    }

    /// Checks a password login. Unknown users, users without a password and wrong passwords all
    /// take the same time and give `None`.
    pub fn check_password(&self, user: &str, password: &str) -> Option<Account> {
        self.password_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let accounts = self.current();
        let account = accounts.get(user);
        let hash = account
            .and_then(|a| a.password_hash.as_deref())
            .unwrap_or_else(|| dummy_hash());
        let ok = verify_password(password, hash);
        match account {
            Some(account) if ok && account.password_hash.is_some() => Some(account.clone()),
            _ => None,
        }
    }

    /// How many passwords [`AccountsFile::check_password`] has checked against a hash (each
    /// costs an argon2id computation; the login limits bound how many a source can ask for).
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks a public-key login.
    pub fn check_key(&self, user: &str, key: &PublicKey) -> Option<Account> {
        self.current().key_allowed(user, key).cloned()
    }
}

/// Why the accounts file could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The user does not exist and no root cap was given.
    #[error("there is no user {0:?} in the accounts file (add-user creates one)")]
    NoSuchUser(String),
    /// The user exists already.
    #[error("user {0:?} exists already (use `passwd` to change the password)")]
    UserExists(String),
    /// A user name that the format cannot hold.
    #[error("bad user name {0:?}: it must be non-empty, without spaces, and not start with #")]
    BadName(String),
    /// A public key line that does not parse.
    #[error("bad public key: {0}")]
    BadKey(String),
}

fn check_name(user: &str) -> Result<(), EditError> {
    if user.is_empty() || user.starts_with('#') || user.chars().any(char::is_whitespace) {
        return Err(EditError::BadName(user.to_owned()));
    }
    Ok(())
}

/// What `add_user` links a new account with.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A password (hashed before it is written).
    Password(String),
    /// An OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
    Key(String),
}

/// Adds a user (or, for an existing user, one more key) to the accounts file, creating the file
/// (0600) if needed. The file is replaced atomically.
pub fn add_user(path: &Path, user: &str, credential: &Credential, root: &DirCap) -> Result<(), EditError> {
    check_name(user)?;
    let text = read_or_empty(path)?;
    let existing = Accounts::parse(&text, "").get(user).map(|a| a.root.to_string());
    let line = match credential {
        Credential::Password(password) => {
            if existing.is_some() {
                return Err(EditError::UserExists(user.to_owned()));
            }
            format!("{user} {} {root}", hash_password(password))
        }
        Credential::Key(key_line) => {
            let mut fields = key_line.split_whitespace();
            let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
                return Err(EditError::BadKey("expected `KEYTYPE BASE64 [comment]`".into()));
            };
            let parsed = PublicKey::from_openssh(&format!("{kind} {blob}"))
                .map_err(|e| EditError::BadKey(e.to_string()))?;
            if !KEY_TYPES.contains(&parsed.algorithm().as_str()) {
                return Err(EditError::BadKey(format!(
                    "{} keys are not accepted",
                    parsed.algorithm().as_str()
                )));
            }
            let comment: Vec<&str> = fields.collect();
            let root = existing.unwrap_or_else(|| root.to_string());
            let comment = if comment.is_empty() {
                String::new()
            } else {
                format!(" {}", comment.join("_"))
            };
            format!("{user} {kind} {blob}{comment} {root}")
        }
    };
    let mut new = text;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&line);
    new.push('\n');
    write_atomically(path, &new)
}

/// Sets (or replaces) the password of an existing user, keeping the user's keys and root cap.
pub fn set_password(path: &Path, user: &str, password: &str) -> Result<(), EditError> {
    check_name(user)?;
    let text = read_or_empty(path)?;
    let Some(account) = Accounts::parse(&text, "").get(user).cloned() else {
        return Err(EditError::NoSuchUser(user.to_owned()));
    };
    let mut out = String::with_capacity(text.len() + 200);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let is_password_line = fields.next() == Some(user) && fields.next().is_some_and(|f| !is_key_type(f));
        if !is_password_line {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("{user} {} {}\n", hash_password(password), account.root));
    write_atomically(path, &out)
}

fn read_or_empty(path: &Path) -> Result<String, EditError> {
    match crate::textfile::read_bounded(path, crate::textfile::LIST_LIMIT) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(EditError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), EditError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| EditError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}

#[cfg(test)]
mod tests;
