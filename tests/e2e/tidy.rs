//! Workspace tidiness: the crate dependency direction storage ← filenode ← frontends ← node, and the
//! files every checkout must carry.

use std::collections::BTreeSet;

use tests::workspace_root;

/// The names in a manifest's `[dependencies]` section (not dev- or build-dependencies).
fn normal_dependencies(krate: &str) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(workspace_root().join(krate).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut deps = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap().trim();
            deps.insert(name.to_owned());
        }
    }
    deps
}

#[test]
fn crate_dependencies_point_one_way() {
    let workspace_crates = ["storage", "filenode", "frontends", "node"];
    let allowed: [(&str, &[&str]); 4] = [
        ("storage", &[]),
        ("filenode", &["storage"]),
        ("frontends", &["filenode", "storage"]),
        ("node", &["storage", "filenode", "frontends"]),
    ];
    for (krate, may_use) in allowed {
        let deps = normal_dependencies(krate);
        for dep in deps.iter().filter(|d| workspace_crates.contains(&d.as_str())) {
            assert!(
                may_use.contains(&dep.as_str()),
                "{krate} must not depend on {dep}"
            );
        }
    }
    // filenode is pure client logic: no web, SSH, FTP, CLI or runtime-specific server crates.
    let filenode = normal_dependencies("filenode");
    for forbidden in [
        "axum",
        "russh",
        "russh-sftp",
        "libunftp",
        "clap",
        "tokio",
        "hyper",
    ] {
        assert!(
            !filenode.contains(forbidden),
            "filenode must not depend on {forbidden}"
        );
    }
    assert!(normal_dependencies("filenode").contains("storage"));
}

#[test]
fn every_source_file_starts_with_module_docs() {
    let mut missing = Vec::new();
    for krate in ["storage", "filenode", "frontends", "node", "tests"] {
        let mut stack = vec![workspace_root().join(krate)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if !path.ends_with("target") {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let is_test_module = path.file_name().is_some_and(|n| n == "tests.rs");
                    if !is_test_module && !text.starts_with("//!") {
                        missing.push(path.display().to_string());
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "files without a //! header: {missing:?}");
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    let start = readme
        .find("<!-- test-command -->")
        .expect("README marks its test command");
    let block = &readme[start..];
    let command = block
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .nth(1)
        .expect("a code block follows the marker")
        .trim();
    assert!(
        ci.lines().any(|l| l.trim() == command),
        ".ci/run must run the README test command {command:?}"
    );
    for doc in ["ARCHITECTURE.md", "Cargo.lock"] {
        assert!(workspace_root().join(doc).exists(), "{doc} is missing");
    }
}
