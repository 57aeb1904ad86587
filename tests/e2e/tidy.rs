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
    // filenode is pure client logic: no web, SSH, FTP, CLI or runtime-specific server crates, and
    // none of those .ci/run keeps it from reaching at all.
    let filenode = normal_dependencies("filenode");
    let direct = ["russh-sftp", "tokio", "hyper"];
    for forbidden in ci_boundary_crates().iter().map(String::as_str).chain(direct) {
        assert!(
            !filenode.contains(forbidden),
            "filenode must not depend on {forbidden}"
        );
    }
    assert!(normal_dependencies("filenode").contains("storage"));
}

/// The crates `.ci/run`'s boundary loop (`for dep in ...; do`, checked with `cargo tree`) keeps
/// filenode from reaching.
fn ci_boundary_crates() -> BTreeSet<String> {
    let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    let line = ci
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("for dep in "))
        .expect(".ci/run has the boundary loop `for dep in ...; do`");
    let list = line
        .strip_prefix("for dep in ")
        .and_then(|rest| rest.split_once("; do"))
        .expect("the loop reads `for dep in A B C; do`")
        .0;
    list.split_whitespace().map(str::to_owned).collect()
}

/// The crates ARCHITECTURE.md says `.ci/run` keeps filenode from reaching (the sentence "...
/// `filenode` reaches none of A, B, C.").
fn architecture_boundary_crates() -> BTreeSet<String> {
    let architecture = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let flat = architecture.split_whitespace().collect::<Vec<_>>().join(" ");
    let marker = "`filenode` reaches none of ";
    let at = flat
        .find(marker)
        .expect("ARCHITECTURE.md names the crates filenode must not reach (\"`filenode` reaches none of\")");
    let list = flat[at + marker.len()..]
        .split_once('.')
        .expect("the list ends with a full stop")
        .0;
    list.split(',')
        .map(|name| {
            name.trim()
                .trim_start_matches("and ")
                .trim_matches('`')
                .to_owned()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn architecture_names_the_crates_ci_keeps_filenode_from() {
    let ci = ci_boundary_crates();
    assert!(ci.len() >= 4, "the boundary loop in .ci/run parsed to {ci:?}");
    assert_eq!(
        architecture_boundary_crates(),
        ci,
        "ARCHITECTURE.md's list of crates filenode must not reach differs from .ci/run's boundary loop"
    );
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
