//! The accounts file: parsing with line-numbered errors, password hashes, edits and reloading.

use super::*;

const ROOT: &str = "URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER_ROOT: &str =
    "URI:DIR2:qqqqqqqqqqqqqqqqqqqqqqqqqq:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBGegjL3RjkEM0lZKeNnDcFJtGlh3d1BiBMskJ/i6g9h";

fn key(line: &str) -> PublicKey {
    PublicKey::from_openssh(line).unwrap()
}

#[test]
fn keys_passwords_and_bad_lines_with_their_numbers() {
    let hash = hash_password("secret words");
    let text = format!(
        "# users\n\nalice {ED25519} alice@laptop {ROOT}\nbob plaintext {ROOT}\nalice {hash} {ROOT}\n\
         carol ssh-dss AAAAB3NzaC1kc3M {ROOT}\ndave {ED25519} URI:CHK:not-a-dir\nalice {ED25519} {OTHER_ROOT}\n"
    );
    let accounts = Accounts::parse(&text, "private/accounts");
    let lines: Vec<usize> = accounts.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![4, 6, 7, 8], "{:?}", accounts.errors);
    assert!(
        accounts.errors[0]
            .reason
            .contains("plaintext passwords are not accepted")
    );
    assert!(
        accounts.errors[0]
            .to_string()
            .starts_with("private/accounts, line 4:")
    );
    assert!(
        !accounts.errors.iter().any(|e| e.reason.contains(&hash)),
        "no secret in errors"
    );
    let alice = accounts.get("alice").unwrap();
    assert_eq!(alice.keys.len(), 1);
    assert!(alice.password_hash.is_some());
    assert!(accounts.key_allowed("alice", &key(ED25519)).is_some());
    assert!(accounts.key_allowed("bob", &key(ED25519)).is_none());
    assert!(verify_password(
        "secret words",
        alice.password_hash.as_deref().unwrap()
    ));
    assert!(!verify_password(
        "secret word",
        alice.password_hash.as_deref().unwrap()
    ));
}

#[test]
fn the_file_is_edited_and_reloaded_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts");
    let root = match Cap::parse(ROOT).unwrap() {
        Cap::Dir(dir) => dir,
        _ => unreachable!(),
    };
    let file = AccountsFile::new(&path);
    assert!(file.current().is_empty());
    add_user(&path, "erin", &Credential::Password("pw one".into()), &root).unwrap();
    assert!(file.check_password("erin", "pw one").is_some());
    assert!(file.check_password("erin", "pw two").is_none());
    assert!(file.check_password("nobody", "pw one").is_none());
    set_password(&path, "erin", "pw two").unwrap();
    assert!(file.check_password("erin", "pw two").is_some());
    assert!(file.check_password("erin", "pw one").is_none());
    add_user(
        &path,
        "erin",
        &Credential::Key(format!("{ED25519} erin@host")),
        &root,
    )
    .unwrap();
    assert!(file.check_key("erin", &key(ED25519)).is_some());
    assert!(
        file.check_password("erin", "pw two").is_some(),
        "keys and password together"
    );
    assert!(matches!(
        add_user(&path, "erin", &Credential::Password("x".into()), &root),
        Err(EditError::UserExists(_))
    ));
    assert!(matches!(
        set_password(&path, "frank", "x"),
        Err(EditError::NoSuchUser(_))
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("pw two") && text.contains("$argon2id$"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
