//! SFTP paths: every path is absolute from the user's root (`/`); `.` and `..` are resolved here,
//! and `..` at the root stays at the root, so no path leaves the root. `/uri/CAP/...` names any cap
//! directly (Tahoe's rule: holding a cap is the authority to use it).

use filenode::cap::Cap;

use super::error::SftpError;

/// The components of `path` after resolving `.` and `..` (relative paths start at `/`).
pub(crate) fn canonical(path: &str) -> Result<Vec<String>, SftpError> {
    // russh-sftp decodes names lossily; a name that was not UTF-8 names nothing (Tahoe: #1089).
    if path.contains('\u{FFFD}') {
        return Err(SftpError::no_such_file());
    }
    let mut parts: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name.to_owned()),
        }
    }
    Ok(parts)
}

/// The canonical text of a path.
pub(crate) fn display(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

/// Where a path starts: the user's root, or a cap named by `/uri/CAP`.
pub(crate) enum Start {
    Root,
    Cap(Cap),
}

/// Splits `/uri/CAP/rest` into the cap and the rest; other paths start at the root.
pub(crate) fn start(parts: &[String]) -> Result<(Start, &[String]), SftpError> {
    if parts.len() >= 2 && parts[0] == "uri" {
        return match Cap::parse(&parts[1]) {
            Ok(Cap::Unknown(_)) | Err(_) => Err(SftpError::no_such_file()),
            Ok(cap) => Ok((Start::Cap(cap), &parts[2..])),
        };
    }
    Ok((Start::Root, parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_resolve_and_stay_under_the_root() {
        assert_eq!(canonical("/a/./b/../c").unwrap(), vec!["a", "c"]);
        assert_eq!(canonical("../../..").unwrap(), Vec::<String>::new());
        assert_eq!(canonical("/../a/../../b").unwrap(), vec!["b"]);
        assert_eq!(canonical("a//b/").unwrap(), vec!["a", "b"]);
        assert_eq!(display(&canonical(".").unwrap()), "/");
        assert_eq!(display(&canonical("x/y/..").unwrap()), "/x");
        assert!(canonical("bad\u{FFFD}name").is_err());
    }

    #[test]
    fn uri_paths_name_caps() {
        let parts = canonical("/uri/URI:LIT:mfrgg/x").unwrap();
        let (start, rest) = start(&parts).unwrap();
        assert!(matches!(start, Start::Cap(_)));
        assert_eq!(rest, ["x"]);
        let parts = canonical("/uri").unwrap();
        assert!(matches!(super::start(&parts).unwrap().0, Start::Root));
        assert!(super::start(&canonical("/uri/not-a-cap").unwrap()).is_err());
    }
}
