//! Signed storage announcements, in Tahoe's shape: `(msg, sig, key)` where `msg` is the UTF-8 JSON
//! of the announcement dictionary, `sig` is `v0-` + base32 of its ed25519 signature and `key` is
//! `v0-` + base32 of the signing public key (tahoe-interfaces.md §2.11). The server id is the key.

use anyhow::{Context, bail};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::client::Announcement;

/// The longest announcement text (`ann`, the JSON of [`AnnouncementBody`]) taken; a real one is
/// under 1 KiB.
pub(crate) const MAX_ANNOUNCEMENT_TEXT: usize = 4096;
/// The longest nickname taken, in bytes (it is logged and shown with every server).
pub(crate) const MAX_NICKNAME: usize = 256;

/// The announcement dictionary a storage server publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AnnouncementBody {
    /// Always 0.
    pub(crate) version: u32,
    #[serde(rename = "service-name")]
    pub(crate) service_name: String,
    /// Newer seqnums replace older announcements from the same key.
    pub(crate) seqnum: u64,
    pub(crate) nonce: String,
    #[serde(rename = "my-version")]
    pub(crate) my_version: String,
    #[serde(rename = "oldest-supported")]
    pub(crate) oldest_supported: String,
    #[serde(flatten)]
    pub(crate) storage: Announcement,
}

/// An announcement with its signature, as sent to and from an introducer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SignedAnnouncement {
    /// The JSON text of [`AnnouncementBody`].
    pub(crate) ann: String,
    /// `v0-<base32 signature>`.
    pub(crate) sig: String,
    /// `v0-<base32 public key>`.
    pub(crate) key: String,
}

/// Signs an announcement.
pub(crate) fn sign(body: &AnnouncementBody, key: &SigningKey) -> anyhow::Result<SignedAnnouncement> {
    let ann = serde_json::to_string(body)?;
    let signature = key.sign(ann.as_bytes());
    Ok(SignedAnnouncement {
        sig: format!("v0-{}", storage::base32::encode(&signature.to_bytes())),
        key: format!("v0-{}", storage::base32::encode(key.verifying_key().as_bytes())),
        ann,
    })
}

/// Checks the signature and returns the server id (`v0-<key>`) and the announcement.
/// Announcements over [`MAX_ANNOUNCEMENT_TEXT`] bytes or with a nickname over [`MAX_NICKNAME`]
/// bytes are refused. The nickname may hold any character: log or show it escaped
/// ([`shown_nickname`]).
pub(crate) fn verify(signed: &SignedAnnouncement) -> anyhow::Result<(String, AnnouncementBody)> {
    if signed.ann.len() > MAX_ANNOUNCEMENT_TEXT {
        bail!(
            "announcement is {} bytes; at most {MAX_ANNOUNCEMENT_TEXT} are taken",
            signed.ann.len()
        );
    }
    let key_bytes = signed
        .key
        .strip_prefix("v0-")
        .and_then(|k| storage::base32::decode_exact::<32>(k).ok())
        .context("announcement key is not v0-<base32 ed25519 key>")?;
    let sig_bytes = signed
        .sig
        .strip_prefix("v0-")
        .and_then(|s| storage::base32::decode_exact::<64>(s).ok())
        .context("announcement signature is not v0-<base32 signature>")?;
    let key = VerifyingKey::from_bytes(&key_bytes).context("announcement key is not a valid ed25519 key")?;
    key.verify(signed.ann.as_bytes(), &Signature::from_bytes(&sig_bytes))
        .context("announcement signature does not verify")?;
    let body: AnnouncementBody =
        serde_json::from_str(&signed.ann).context("announcement is not valid JSON")?;
    if body.service_name != "storage" {
        bail!("announcement is for service {:?}, not storage", body.service_name);
    }
    if body.storage.nickname.len() > MAX_NICKNAME {
        bail!(
            "announcement nickname is {} bytes; at most {MAX_NICKNAME} are taken",
            body.storage.nickname.len()
        );
    }
    Ok((signed.key.clone(), body))
}

/// A nickname from an announcement as logs and terminals may show it: control characters
/// (a newline would forge a log line) and quotes escaped.
pub(crate) fn shown_nickname(nickname: &str) -> String {
    nickname.escape_debug().to_string()
}

/// Loads `private/node.privkey` (`priv-v0-<base32 seed>`).
pub(crate) fn load_signing_key(dir: &std::path::Path) -> anyhow::Result<SigningKey> {
    let path = dir.join("private").join("node.privkey");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let seed = text
        .trim()
        .strip_prefix("priv-v0-")
        .and_then(|s| storage::base32::decode_exact::<32>(s).ok())
        .with_context(|| format!("{} is not priv-v0-<base32 seed>", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A storage announcement for tests: server `nickname` at 127.0.0.1:`port`, its TLS key `spki`.
#[cfg(test)]
pub(crate) fn test_body(seqnum: u64, nickname: &str, spki: &str, port: u16) -> AnnouncementBody {
    AnnouncementBody {
        version: 0,
        service_name: "storage".into(),
        seqnum,
        nonce: "n".into(),
        my_version: "tessera/0".into(),
        oldest_supported: "tessera/0".into(),
        storage: Announcement {
            nickname: nickname.into(),
            furl: format!("pb://{}@tcp:127.0.0.1:{port}/swiss", "a".repeat(32)),
            nurls: vec![storage::nurl::Nurl::new(spki, "127.0.0.1", port, "swiss").to_string()],
            permutation_seed_base32: None,
            web_url: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> AnnouncementBody {
        AnnouncementBody {
            version: 0,
            service_name: "storage".into(),
            seqnum: 1,
            nonce: "n".into(),
            my_version: "tessera/0".into(),
            oldest_supported: "tessera/0".into(),
            storage: Announcement {
                nickname: "s1".into(),
                furl: "pb://aaaa@tcp:127.0.0.1:1/bbbb".into(),
                nurls: vec!["pb://x@127.0.0.1:1/bbbb#v=1".into()],
                permutation_seed_base32: None,
                web_url: None,
            },
        }
    }

    #[test]
    fn signed_announcements_verify_and_tampering_fails() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign(&body(), &key).unwrap();
        let (id, parsed) = verify(&signed).unwrap();
        assert_eq!(parsed, body());
        assert_eq!(
            id,
            format!("v0-{}", storage::base32::encode(key.verifying_key().as_bytes()))
        );
        assert!(signed.ann.contains("\"anonymous-storage-FURL\""));
        let mut tampered = signed.clone();
        tampered.ann = tampered.ann.replace("s1", "s2");
        assert!(verify(&tampered).is_err());
        let mut wrong_key = signed;
        wrong_key.key = format!(
            "v0-{}",
            storage::base32::encode(SigningKey::from_bytes(&[8; 32]).verifying_key().as_bytes())
        );
        assert!(verify(&wrong_key).is_err());
    }

    #[test]
    fn long_announcements_and_nicknames_are_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut long_name = body();
        long_name.storage.nickname = "n".repeat(MAX_NICKNAME + 1);
        let error = verify(&sign(&long_name, &key).unwrap()).unwrap_err().to_string();
        assert!(error.contains("nickname is 257 bytes; at most 256"), "{error}");
        long_name.storage.nickname.pop();
        verify(&sign(&long_name, &key).unwrap()).unwrap();
        let mut long_text = body();
        long_text.nonce = "x".repeat(MAX_ANNOUNCEMENT_TEXT);
        let error = verify(&sign(&long_text, &key).unwrap()).unwrap_err().to_string();
        assert!(error.contains("at most 4096 are taken"), "{error}");
    }
}
