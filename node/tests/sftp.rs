//! The SFTP frontend with the real OpenSSH `sftp` client against a real `tessera devgrid`: the demo
//! account's key in batch mode (every operation, a resumed download, an upload that fails when too
//! few servers are up), and password logins through SSH_ASKPASS for an account added with
//! `tessera admin add-user`; `chmod 444` marking a file read-only (Tahoe's `no-write`) and
//! `chmod 644` clearing it; rclone copying, syncing, moving and purging a tree; an sshfs mount used
//! with ordinary file operations. The 256 MiB put and
//! get are in the slow tier (TESSERA_SLOW_TESTS=1). Skipped, with a note, when `sftp` (or rclone)
//! is not installed.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;
use common::free_port;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

fn have_sftp() -> bool {
    let found = Command::new("sftp").arg("-V").output().is_ok();
    if !found {
        eprintln!("skipping: the OpenSSH sftp client is not installed (apt-get install openssh-client)");
    }
    found
}

struct Devgrid {
    child: Child,
    dir: PathBuf,
    sftp_line: String,
}

impl Devgrid {
    fn start(dir: &Path, servers: usize) -> Devgrid {
        let mut child = tessera()
            .args(["devgrid", "--servers", &servers.to_string()])
            .args(["--web-port", &free_port().to_string()])
            .args(["--sftp-port", "0", "--ftp-port", "0", "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut sftp_line = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(command) = line.trim().strip_prefix("sftp:") {
                sftp_line = command.trim().to_owned();
            }
            if line.contains("Press Ctrl-C to stop the grid") {
                assert!(sftp_line.starts_with("sftp -P "), "devgrid prints how to connect");
                return Devgrid {
                    child,
                    dir: dir.to_owned(),
                    sftp_line,
                };
            }
            assert!(Instant::now() < deadline, "devgrid did not become ready");
        }
        panic!("devgrid exited before it was ready: {:?}", child.wait());
    }

    fn gateway(&self) -> PathBuf {
        self.dir.join("gateway")
    }

    fn port(&self) -> String {
        let url = std::fs::read_to_string(self.gateway().join("sftp.url")).unwrap();
        url.trim()
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    }

    /// `sftp` with the demo account's key, as devgrid printed it, plus options that keep the
    /// user's own configuration and agent out of the test, then `extra` options.
    fn sftp_with_key(&self, extra: &[&str]) -> Command {
        let mut words: Vec<&str> = self.sftp_line.split_whitespace().collect();
        assert_eq!(words.remove(0), "sftp");
        let destination = words.pop().unwrap();
        let mut command = Command::new("sftp");
        command.arg("-F").arg(empty_config(&self.dir));
        command.args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]);
        command.args(["-o", "StrictHostKeyChecking=yes"]);
        command.args(words).args(extra).arg(destination);
        command
    }

    /// Runs a batch of sftp commands with the demo key (`-b -`: any failing command fails the run).
    fn batch(&self, commands: &str) -> Output {
        run_with_input(self.sftp_with_key(&["-b", "-"]), commands)
    }

    /// Stops a storage node of the grid by its process id.
    fn stop_storage(&self, name: &str) {
        let wanted = self.dir.join(name);
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.len() >= 3
                && args[1] == b"run"
                && Path::new(std::str::from_utf8(args[2]).unwrap_or("")) == wanted
            {
                let pid = entry.file_name().to_string_lossy().into_owned();
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                let deadline = Instant::now() + Duration::from_secs(20);
                while entry.path().exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// An empty ssh_config, so that the user's own settings stay out of the test.
fn empty_config(dir: &Path) -> PathBuf {
    let path = dir.join("ssh_config");
    if !path.exists() {
        std::fs::write(&path, "").unwrap();
    }
    path
}

impl Drop for Devgrid {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn run_with_input(mut command: Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

#[test]
fn openssh_sftp_against_the_devgrid() {
    if !have_sftp() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&tmp.path().join("grid"), 5);
    let local = tmp.path();
    let medium = random_file(&local.join("medium"), 3 << 20, 1);
    std::fs::write(local.join("small.txt"), b"small file\n").unwrap();

    // Every operation, with the demo key in batch mode (OpenSSH's default 32 KiB requests, -B).
    let l = local.display();
    let out = grid.batch(&format!(
        "pwd\nmkdir docs\ncd docs\nput {l}/small.txt\nput {l}/medium\nls -l\nget medium {l}/medium.back\n\
         rename small.txt renamed.txt\nchmod 644 renamed.txt\nls\ncd ..\nmkdir empty\nrmdir empty\n\
         get docs/renamed.txt {l}/renamed.back\nrm docs/renamed.txt\nls -l docs\n"
    ));
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Remote working directory: /"), "{report}");
    assert!(
        stdout.contains("renamed.txt") && stdout.contains("3145728"),
        "{report}"
    );
    assert_eq!(std::fs::read(local.join("medium.back")).unwrap(), medium);
    assert_eq!(
        std::fs::read(local.join("renamed.back")).unwrap(),
        b"small file\n"
    );

    // A resumed download: the local copy has the first 1 MiB; reget fetches the rest.
    std::fs::write(local.join("partial"), &medium[..1 << 20]).unwrap();
    let out = grid.batch(&format!("reget docs/medium {l}/partial\n"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(local.join("partial")).unwrap(), medium);

    // Larger requests (255 KiB, offered by limits@openssh.com) work too.
    let command = grid.sftp_with_key(&["-B", "261120", "-b", "-"]);
    let out = run_with_input(command, &format!("put {l}/medium big\nget big {l}/big.back\n"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(local.join("big.back")).unwrap(), medium);

    // RSA and ECDSA user keys (ssh-keygen's), added to the demo account with `admin add-user`.
    for kind in ["rsa", "ecdsa"] {
        let key = local.join(format!("id_{kind}"));
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        let added = tessera()
            .arg("--node-directory")
            .arg(grid.gateway())
            .args(["admin", "add-user", "demo", "--key"])
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        assert!(added.status.success(), "{}", text(&added));
        let mut words: Vec<String> = grid.sftp_line.split_whitespace().map(str::to_owned).collect();
        let at = words.iter().position(|w| w == "-i").unwrap();
        words[at + 1] = key.display().to_string();
        let destination = words.pop().unwrap();
        let mut command = Command::new("sftp");
        command
            .arg("-F")
            .arg(empty_config(local))
            .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-b", "-"])
            .args(&words[1..])
            .arg(destination);
        let out = run_with_input(command, "ls docs\n");
        assert!(
            out.status.success() && text(&out).contains("medium"),
            "{kind}: {}",
            text(&out)
        );
    }

    // What is refused: symlinks, removing a non-empty directory, escaping the root.
    for (commands, expected) in [
        ("ln -s docs/medium link\n", "Operation unsupported"),
        ("rmdir docs\n", "Failure"),
        ("get ../../etc/passwd escaped\n", "not found"),
    ] {
        let out = grid.batch(commands);
        assert!(!out.status.success(), "{commands}: {}", text(&out));
        assert!(text(&out).contains(expected), "{commands}: {}", text(&out));
    }

    // Password logins through SSH_ASKPASS, for a user added with `tessera admin add-user`.
    let mut add = tessera();
    add.arg("--node-directory")
        .arg(grid.gateway())
        .args(["admin", "add-user", "carol", "--password-stdin"]);
    let out = run_with_input(add, "correct horse\n");
    assert!(out.status.success(), "{}", text(&out));
    let accounts = std::fs::read_to_string(grid.gateway().join("private/accounts")).unwrap();
    assert!(accounts.contains("carol $argon2id$") && !accounts.contains("correct horse"));
    let password_sftp = |password: &str, commands: &str| {
        let askpass = local.join(format!("askpass-{}", password.len()));
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut command = Command::new("sftp");
        command
            .arg("-F")
            .arg(empty_config(local))
            .args(["-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"])
            .args([
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                local.join("known_hosts").display()
            ))
            .args(["-P", &grid.port(), "carol@127.0.0.1"])
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY");
        run_with_input(command, commands)
    };
    let out = password_sftp("correct horse", &format!("put {l}/small.txt hello.txt\nls -l\n"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello.txt"),
        "{}",
        text(&out)
    );
    let out = password_sftp("wrong horse", "ls\n");
    assert!(
        !out.status.success() && text(&out).contains("Permission denied"),
        "{}",
        text(&out)
    );
    let log = common::read_logs(&grid.gateway());
    assert!(log.contains("SFTP login failed"), "failed logins are logged");
    assert!(
        !log.contains("wrong horse") && !log.contains("correct horse"),
        "never with the password"
    );

    // An upload fails, and the client says so, when too few servers are up (happiness 5 of 5).
    grid.stop_storage("storage01");
    grid.stop_storage("storage02");
    let out = grid.batch(&format!("put {l}/medium doomed\n"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Failure"), "{}", text(&out));
    let out = grid.batch("ls\n");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("doomed"),
        "{}",
        text(&out)
    );
}

/// Tahoe's `no-write` with OpenSSH's `sftp`: `chmod 444` marks a file read-only (`ls -l` shows
/// `r--r--r--`), so a `put` over it and an `rm` of it fail with "Permission denied" and the
/// contents stay; `chmod 644` clears the mark (`rw-rw-rw-`) and the `put` works.
#[test]
fn openssh_chmod_444_makes_a_file_read_only_until_chmod_644() {
    if !have_sftp() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&tmp.path().join("grid"), 3);
    let local = tmp.path();
    std::fs::write(local.join("first.txt"), b"first\n").unwrap();
    std::fs::write(local.join("second.txt"), b"second version\n").unwrap();
    let l = local.display();

    let out = grid.batch(&format!(
        "put {l}/first.txt f.txt\nls -l\nchmod 444 f.txt\nls -l\n"
    ));
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The listings' lines (the batch echoes each command after "sftp> ").
    let listings: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with('-') && line.ends_with(" f.txt"))
        .collect();
    assert_eq!(listings.len(), 2, "{report}");
    assert!(listings[0].starts_with("-rw-rw-rw-"), "{report}");
    assert!(listings[1].starts_with("-r--r--r--"), "{report}");

    for commands in [format!("put {l}/second.txt f.txt\n"), "rm f.txt\n".to_owned()] {
        let out = grid.batch(&commands);
        assert!(!out.status.success(), "{commands}: {}", text(&out));
        assert!(
            text(&out).contains("Permission denied"),
            "{commands}: {}",
            text(&out)
        );
    }
    let out = grid.batch(&format!("get f.txt {l}/back.txt\n"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(local.join("back.txt")).unwrap(), b"first\n");

    let out = grid.batch(&format!(
        "chmod 644 f.txt\nls -l\nput {l}/second.txt f.txt\nget f.txt {l}/back.txt\n"
    ));
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.ends_with(" f.txt") && line.starts_with("-rw-rw-rw-")),
        "{report}"
    );
    assert_eq!(
        std::fs::read(local.join("back.txt")).unwrap(),
        b"second version\n"
    );
}

/// 256 MiB through OpenSSH `sftp` both ways, compared byte for byte.
#[test]
fn openssh_sftp_256_mib_put_and_get() {
    if std::env::var_os("TESSERA_SLOW_TESTS").is_none() {
        eprintln!("skipping the 256 MiB SFTP transfer: set TESSERA_SLOW_TESTS=1 to run it");
        return;
    }
    if !have_sftp() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&tmp.path().join("grid"), 5);
    let local = tmp.path();
    random_file(&local.join("input"), 256 << 20, 7);
    let l = local.display();
    let out = grid.batch(&format!("put {l}/input big\nget big {l}/output\n"));
    assert!(out.status.success(), "{}", text(&out));
    let same = Command::new("cmp")
        .arg(local.join("input"))
        .arg(local.join("output"))
        .status()
        .unwrap();
    assert!(same.success(), "the 256 MiB file came back different");
}

/// rclone (a real SFTP client of another family: Go's x/crypto/ssh and pkg/sftp) against the
/// devgrid: a tree with UTF-8 names copied up and back byte for byte, `sync` deleting what the
/// source lost and keeping modification times (SETSTAT), `moveto`, and `purge` of the whole tree.
#[test]
fn rclone_copies_syncs_moves_and_purges_a_tree() {
    if Command::new("rclone").arg("version").output().is_err() {
        eprintln!("skipping: rclone is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let private = grid.gateway().join("private");
    let remote = format!(
        ":sftp,host=127.0.0.1,port={},user=demo,key_file={},known_hosts_file={},disable_hashcheck=true:",
        grid.port(),
        private.join("demo_ssh_key").display(),
        private.join("known_hosts").display()
    );
    let rclone = |args: &[&str]| common::rclone(scratch.path(), args);
    let source = scratch.path().join("source");
    std::fs::create_dir_all(source.join("a/b")).unwrap();
    let big = random_file(&source.join("big.bin"), 3_000_000, 1);
    random_file(&source.join("a/x.txt"), 100, 2);
    random_file(&source.join("a/b/naïve ☃.txt"), 10, 3);
    let tree = format!("{remote}tree");

    rclone(&["copy", source.to_str().unwrap(), &tree]);
    let back = scratch.path().join("back");
    rclone(&["copy", &tree, back.to_str().unwrap()]);
    for name in ["big.bin", "a/x.txt", "a/b/naïve ☃.txt"] {
        assert_eq!(
            std::fs::read(back.join(name)).unwrap(),
            std::fs::read(source.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(std::fs::read(back.join("big.bin")).unwrap(), big);

    // sync: a file the source lost goes, a new one comes, an old modification time is kept.
    std::fs::remove_file(source.join("a/b/naïve ☃.txt")).unwrap();
    random_file(&source.join("new.txt"), 50, 4);
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_934_245); // 2020-01-02
    std::fs::File::options()
        .write(true)
        .open(source.join("a/x.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    rclone(&["sync", source.to_str().unwrap(), &tree]);
    let listing = rclone(&["lsl", &tree]);
    assert!(!listing.contains("naïve"), "{listing}");
    assert!(listing.contains("new.txt"), "{listing}");
    let x_line = listing.lines().find(|l| l.ends_with("a/x.txt")).unwrap();
    assert!(x_line.contains("2020-01-02"), "{listing}");

    rclone(&[
        "moveto",
        &format!("{tree}/new.txt"),
        &format!("{tree}/a/moved.txt"),
    ]);
    let names = rclone(&["lsf", "-R", &tree]);
    assert!(
        names.lines().any(|l| l == "a/moved.txt") && !names.lines().any(|l| l == "new.txt"),
        "{names}"
    );

    rclone(&["purge", &tree]);
    let top = rclone(&["lsf", &remote]);
    assert!(!top.lines().any(|l| l == "tree/"), "{top}");
}

/// Unmounts an sshfs mount when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("fusermount").arg("-u").arg(&self.0).status();
    }
}

/// sshfs (FUSE over SFTP): files created, written, read back, appended to, renamed and deleted
/// through ordinary file operations. sshfs stats a file right after creating it, before anything
/// is uploaded, so the server must show a file being written at its path. Skipped, with a note,
/// when sshfs is not installed or FUSE mounts are not allowed here.
#[test]
fn sshfs_mount_reads_writes_appends_renames_and_deletes() {
    if Command::new("sshfs").arg("--version").output().is_err() {
        eprintln!("skipping: sshfs is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let private = grid.gateway().join("private");
    let mount = scratch.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let status = Command::new("sshfs")
        .args(["-p", &grid.port()])
        .arg("-F")
        .arg(empty_config(scratch.path()))
        .arg("-o")
        .arg(format!("IdentityFile={}", private.join("demo_ssh_key").display()))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            private.join("known_hosts").display()
        ))
        .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("demo@127.0.0.1:/")
        .arg(&mount)
        .output()
        .unwrap();
    if !status.status.success() {
        eprintln!(
            "skipping: sshfs could not mount here (no FUSE?): {}",
            String::from_utf8_lossy(&status.stderr)
        );
        return;
    }
    let _mounted = Mounted(mount.clone());

    // cp: create, stat, write, close (the upload), then read back.
    let local = scratch.path().join("local.bin");
    let data = random_file(&local, 2_000_000, 7);
    let copied = Command::new("cp")
        .arg(&local)
        .arg(mount.join("copied.bin"))
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert_eq!(std::fs::read(mount.join("copied.bin")).unwrap(), data);
    assert_eq!(
        std::fs::metadata(mount.join("copied.bin")).unwrap().len(),
        2_000_000
    );

    // A shell's `>` and `>>`: create, then append to an immutable file (a new file replaces it).
    std::fs::write(mount.join("notes.txt"), b"hello\n").unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(mount.join("notes.txt"))
        .unwrap();
    file.write_all(b"more\n").unwrap();
    drop(file);
    // FUSE releases a file (sshfs's SFTP CLOSE, which stores the new version) after close(2)
    // has returned, so the new contents show once that CLOSE is answered: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = std::fs::read(mount.join("notes.txt")).unwrap();
    while seen != b"hello\nmore\n" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        seen = std::fs::read(mount.join("notes.txt")).unwrap();
    }
    assert_eq!(seen, b"hello\nmore\n");

    // Directories, rename, delete.
    std::fs::create_dir(mount.join("dir")).unwrap();
    std::fs::rename(mount.join("copied.bin"), mount.join("dir/moved.bin")).unwrap();
    let names: Vec<String> = std::fs::read_dir(mount.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["moved.bin"]);
    assert_eq!(std::fs::read(mount.join("dir/moved.bin")).unwrap(), data);
    std::fs::remove_dir_all(mount.join("dir")).unwrap();
    let mut top: Vec<String> = std::fs::read_dir(&mount)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["notes.txt"]);

    // The same tree through the ordinary sftp client: the gateway holds what sshfs wrote.
    let listing = grid.batch("ls -l\n");
    assert!(text(&listing).contains("notes.txt"), "{}", text(&listing));
}
