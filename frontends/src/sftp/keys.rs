//! SSH key files: the server's host key (`private/ssh_host_ed25519_key`, OpenSSH format, no
//! passphrase, 0600, with its `.pub` beside it) and key pairs for accounts (the devgrid's demo
//! user).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not hold a usable key.
    #[error("{path}: not an unencrypted OpenSSH private key ({reason})")]
    BadKey {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
}

/// Reads an OpenSSH private key without a passphrase.
pub fn load_private_key(path: &Path) -> Result<PrivateKey, KeyFileError> {
    russh::keys::load_secret_key(path, None).map_err(|e| KeyFileError::BadKey {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Writes a new ed25519 key pair: `private` (0600, OpenSSH format) and `private.pub`-style
/// `public` (`ssh-ed25519 AAAA... comment`). Returns the public key line.
pub fn generate_ed25519(private: &Path, public: &Path, comment: &str) -> Result<String, KeyFileError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| KeyFileError::Io { path, source }
    };
    let mut key =
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| KeyFileError::BadKey {
            path: private.display().to_string(),
            reason: e.to_string(),
        })?;
    key.set_comment(comment);
    let text = key.to_openssh(LineEnding::LF).map_err(|e| KeyFileError::BadKey {
        path: private.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(private)
        .map_err(io(private))?;
    file.write_all(text.as_bytes()).map_err(io(private))?;
    let line = key.public_key().to_openssh().map_err(|e| KeyFileError::BadKey {
        path: public.display().to_string(),
        reason: e.to_string(),
    })?;
    std::fs::write(public, format!("{line}\n")).map_err(io(public))?;
    Ok(line)
}
