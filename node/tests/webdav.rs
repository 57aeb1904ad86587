//! The WebDAV frontend with real clients against a real `tessera devgrid --webdav-port 0`: curl
//! (PROPFIND depth 0 and 1 (and infinity refused), PUT, ranged GET, MKCOL, MOVE, COPY, DELETE of a
//! collection linked twice (its link goes, its children stay), LOCK/UNLOCK, a wrong password's
//! 401 and the login limit's 429) and rclone's webdav backend (a tree with UTF-8 names copied up
//! and back byte for byte, then `sync` with a deletion), cadaver (MKCOL, PUT, LS, GET) and a
//! davfs2 kernel mount (skipped, with the reason, where mounting is not allowed). Each is skipped,
//! with a note, when its client is not installed (.ci/run installs them).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;
use common::free_port;
use common::{data, installed};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `tessera devgrid` with WebDAV on any free port, stopped on drop.
struct Devgrid {
    child: Option<Child>,
    dir: PathBuf,
    web_port: u16,
    printed: String,
}

impl Devgrid {
    fn start(dir: &Path, servers: usize) -> Devgrid {
        for attempt in 1..4 {
            if let Some(grid) = Self::start_on(dir, servers, free_port()) {
                return grid;
            }
            // A port taken meanwhile: a fresh directory, fresh ports.
            let _ = std::fs::rename(dir, dir.with_extension(format!("failed{attempt}")));
        }
        panic!("devgrid did not start");
    }

    fn start_on(dir: &Path, servers: usize, web_port: u16) -> Option<Devgrid> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["devgrid", "--servers", &servers.to_string()])
            .args(["--web-port", &web_port.to_string()])
            .args(["--sftp-port", "0", "--ftp-port", "0", "--webdav-port", "0"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = String::new();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Press Ctrl-C to stop the grid") {
                std::thread::spawn(move || lines.for_each(drop));
                return Some(Devgrid {
                    child: Some(child),
                    dir: dir.to_path_buf(),
                    web_port,
                    printed,
                });
            }
        }
        let _ = child.wait();
        eprintln!("devgrid exited before it was ready: {printed}");
        None
    }

    fn gateway(&self) -> PathBuf {
        self.dir.join("gateway")
    }

    /// `http://127.0.0.1:PORT/`, from `webdav.url`.
    fn url(&self) -> String {
        std::fs::read_to_string(self.gateway().join("webdav.url"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.gateway().join("private").join("demo_ftp_password"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The demo account's root cap, from the accounts file.
    fn root_cap(&self) -> String {
        let accounts = std::fs::read_to_string(self.gateway().join("private").join("accounts")).unwrap();
        let line = accounts.lines().find(|l| l.starts_with("demo ")).unwrap();
        line.split_whitespace().last().unwrap().to_owned()
    }
}

impl Drop for Devgrid {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        common::interrupt_and_wait(&mut child);
    }
}

/// One curl request: the status, the response headers and the body.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn curl(user: &str, args: &[&str]) -> Reply {
    let scratch = tempfile::tempdir().unwrap();
    let (head, body) = (scratch.path().join("head"), scratch.path().join("body"));
    let mut command = Command::new("curl");
    if !user.is_empty() {
        command.args(["-u", user]);
    }
    let out = command
        .args(["-sS", "--max-time", "120", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl must be installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Reply {
        status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
        headers: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

/// curl against the devgrid: every method the issue names, with the statuses RFC 4918 gives.
#[test]
fn curl_drives_every_method() {
    if !installed("curl") {
        eprintln!("skipping: curl is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let url = grid.url();
    assert!(
        grid.printed.contains(&url),
        "devgrid prints the WebDAV address: {}",
        grid.printed
    );
    assert!(
        grid.printed.contains("rclone") && grid.printed.contains("davfs"),
        "{}",
        grid.printed
    );
    let user = format!("demo:{}", grid.password());
    let user = user.as_str();

    // PUT a file (streamed from disk), then GET it whole and by range.
    let file = scratch.path().join("upload.bin");
    let contents = data(1_500_000, 1);
    std::fs::write(&file, &contents).unwrap();
    let put = curl(user, &["-T", file.to_str().unwrap(), &format!("{url}docs.bin")]);
    assert_eq!(put.status, 201, "{}", put.text());
    let get = curl(user, &[&format!("{url}docs.bin")]);
    assert_eq!((get.status, get.body.len()), (200, contents.len()));
    assert!(get.body == contents, "the file came back different");
    let ranged = curl(user, &["-r", "1000000-1000099", &format!("{url}docs.bin")]);
    assert_eq!(ranged.status, 206, "{}", ranged.headers);
    assert_eq!(ranged.body, contents[1_000_000..1_000_100]);
    assert!(
        ranged
            .headers
            .to_ascii_lowercase()
            .contains("content-range: bytes 1000000-1000099/1500000")
    );
    // Replacing it: 204.
    std::fs::write(&file, b"replaced").unwrap();
    let put = curl(user, &["-T", file.to_str().unwrap(), &format!("{url}docs.bin")]);
    assert_eq!(put.status, 204, "{}", put.text());
    assert_eq!(curl(user, &[&format!("{url}docs.bin")]).body, b"replaced");

    // MKCOL: 201; again 405; below a missing parent 409. A PUT below a missing parent: 409.
    assert_eq!(curl(user, &["-X", "MKCOL", &format!("{url}dir")]).status, 201);
    assert_eq!(curl(user, &["-X", "MKCOL", &format!("{url}dir")]).status, 405);
    assert_eq!(
        curl(user, &["-X", "MKCOL", &format!("{url}none/dir")]).status,
        409
    );
    let put = curl(user, &["-T", file.to_str().unwrap(), &format!("{url}none/x")]);
    assert_eq!(put.status, 409, "{}", put.text());
    // A UTF-8 name, percent-encoded.
    let put = curl(
        user,
        &[
            "-T",
            file.to_str().unwrap(),
            &format!("{url}dir/na%C3%AFve%20%E2%98%83.txt"),
        ],
    );
    assert_eq!(put.status, 201);

    // PROPFIND depth 0 and 1; infinity refused.
    let depth0 = curl(user, &["-X", "PROPFIND", "-H", "Depth: 0", &format!("{url}dir/")]);
    assert_eq!(depth0.status, 207, "{}", depth0.text());
    assert!(depth0.text().contains("collection") && !depth0.text().contains("na%C3%AFve"));
    let depth1 = curl(user, &["-X", "PROPFIND", "-H", "Depth: 1", &url]);
    assert_eq!(depth1.status, 207);
    let listing = depth1.text();
    assert!(
        listing.contains("/docs.bin") && listing.contains("/dir/"),
        "{listing}"
    );
    assert!(
        listing.contains("<D:getcontentlength>8</D:getcontentlength>"),
        "{listing}"
    );
    let inner = curl(user, &["-X", "PROPFIND", "-H", "Depth: 1", &format!("{url}dir/")]).text();
    assert!(inner.contains("na%C3%AFve%20%E2%98%83.txt"), "{inner}");
    let infinite = curl(user, &["-X", "PROPFIND", "-H", "Depth: infinity", &url]);
    assert_eq!(infinite.status, 403);
    assert!(infinite.text().contains("propfind-finite-depth"));

    // MOVE (rename across directories) and COPY; the destination exists: Overwrite: F gives 412.
    let moved = curl(
        user,
        &[
            "-X",
            "MOVE",
            "-H",
            &format!("Destination: {url}dir/moved.bin"),
            &format!("{url}docs.bin"),
        ],
    );
    assert_eq!(moved.status, 201, "{}", moved.text());
    assert_eq!(curl(user, &[&format!("{url}docs.bin")]).status, 404);
    assert_eq!(curl(user, &[&format!("{url}dir/moved.bin")]).body, b"replaced");
    let copied = curl(
        user,
        &[
            "-X",
            "COPY",
            "-H",
            &format!("Destination: {url}copy/"),
            &format!("{url}dir/"),
        ],
    );
    assert_eq!(copied.status, 201, "{}", copied.text());
    assert_eq!(curl(user, &[&format!("{url}copy/moved.bin")]).body, b"replaced");
    let refused = curl(
        user,
        &[
            "-X",
            "COPY",
            "-H",
            "Overwrite: F",
            "-H",
            &format!("Destination: {url}copy/moved.bin"),
            &format!("{url}dir/moved.bin"),
        ],
    );
    assert_eq!(refused.status, 412);

    // DELETE of a collection removes its link only: linked a second time (through the web API),
    // its children are still there.
    let web = format!("http://127.0.0.1:{}", grid.web_port);
    let root = grid.root_cap();
    let dircap = Command::new("curl")
        .args(["-sS", &format!("{web}/uri/{root}/dir?t=uri")])
        .output()
        .unwrap();
    let dircap = String::from_utf8(dircap.stdout).unwrap();
    assert!(dircap.starts_with("URI:DIR2:"), "{dircap}");
    let linked = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "PUT",
            "--data",
            &dircap,
            &format!("{web}/uri/{root}/also?t=uri"),
        ])
        .output()
        .unwrap();
    assert!(linked.status.success());
    assert_eq!(curl(user, &["-X", "DELETE", &format!("{url}dir/")]).status, 204);
    assert_eq!(curl(user, &[&format!("{url}dir/moved.bin")]).status, 404);
    assert_eq!(curl(user, &[&format!("{url}also/moved.bin")]).body, b"replaced");
    assert_eq!(
        curl(user, &["-X", "DELETE", &format!("{url}also/moved.bin")]).status,
        204
    );
    assert_eq!(curl(user, &[&format!("{url}also/moved.bin")]).status, 404);

    // LOCK: a PUT without the token is 423, with it 204; UNLOCK frees it.
    let body = r#"<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>"#;
    let locked = curl(
        user,
        &[
            "-X",
            "LOCK",
            "-H",
            "Timeout: Second-60",
            "--data",
            body,
            &format!("{url}copy/moved.bin"),
        ],
    );
    assert_eq!(locked.status, 200, "{}", locked.text());
    let token = locked
        .headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("lock-token:")
                .then(|| l[11..].trim().to_owned())
        })
        .unwrap();
    let put = curl(
        user,
        &["-T", file.to_str().unwrap(), &format!("{url}copy/moved.bin")],
    );
    assert_eq!(put.status, 423);
    let put = curl(
        user,
        &[
            "-T",
            file.to_str().unwrap(),
            "-H",
            &format!("If: ({token})"),
            &format!("{url}copy/moved.bin"),
        ],
    );
    assert_eq!(put.status, 204, "{}", put.text());
    let unlocked = curl(
        user,
        &[
            "-X",
            "UNLOCK",
            "-H",
            &format!("Lock-Token: {token}"),
            &format!("{url}copy/moved.bin"),
        ],
    );
    assert_eq!(unlocked.status, 204);
    assert_eq!(
        curl(
            user,
            &["-T", file.to_str().unwrap(), &format!("{url}copy/moved.bin")]
        )
        .status,
        204
    );

    // OPTIONS says class 2.
    let options = curl(user, &["-X", "OPTIONS", &url]);
    assert!(
        options.headers.to_ascii_lowercase().contains("dav: 1,2"),
        "{}",
        options.headers
    );

    // A wrong password: 401 with a challenge, five times; then the address is refused (429),
    // while a login remembered from before still works.
    for _ in 0..5 {
        let wrong = curl("demo:wrong", &[&url]);
        assert_eq!(wrong.status, 401);
        assert!(
            wrong
                .headers
                .to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{}",
            wrong.headers
        );
    }
    assert_eq!(curl("demo:wrong", &[&url]).status, 429);
    assert_eq!(curl("", &[&url]).status, 401);
    assert_eq!(
        curl(user, &["-X", "PROPFIND", "-H", "Depth: 0", &url]).status,
        207
    );
    // The password reaches no log.
    let logs = common::read_logs(&grid.gateway());
    assert!(!logs.contains(&grid.password()) && !logs.contains(&root));
}

/// rclone's webdav backend: a tree with UTF-8 names up and back byte for byte, then `sync` with a
/// deletion.
#[test]
fn rclone_copies_and_syncs_a_tree() {
    if !installed("rclone") {
        eprintln!("skipping: rclone is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let obscured = Command::new("rclone")
        .args(["obscure", &grid.password()])
        .output()
        .unwrap();
    let obscured = String::from_utf8(obscured.stdout).unwrap().trim().to_owned();
    let remote = format!(":webdav,url='{}',user=demo,pass='{obscured}':", grid.url());
    let rclone = |args: &[&str]| common::rclone(scratch.path(), args);
    let source = scratch.path().join("source");
    std::fs::create_dir_all(source.join("a/b")).unwrap();
    let names = [
        "big.bin",
        "a/x.txt",
        "a/b/naïve ☃.txt",
        "a/b/日本語 ファイル",
        "empty",
    ];
    for (i, name) in names.iter().enumerate() {
        let len = [3_000_000, 100, 10, 70_000, 0][i];
        std::fs::write(source.join(name), data(len, i as u32 + 7)).unwrap();
    }
    let tree = format!("{remote}tree");
    rclone(&["copy", source.to_str().unwrap(), &tree]);
    let back = scratch.path().join("back");
    rclone(&["copy", &tree, back.to_str().unwrap()]);
    for name in names {
        assert!(
            std::fs::read(back.join(name)).unwrap() == std::fs::read(source.join(name)).unwrap(),
            "{name} came back different"
        );
    }

    // sync: a file the source lost goes, a new one comes.
    std::fs::remove_file(source.join("a/b/naïve ☃.txt")).unwrap();
    std::fs::write(source.join("new.txt"), b"new").unwrap();
    rclone(&["sync", source.to_str().unwrap(), &tree]);
    let listing = rclone(&["lsf", "-R", &tree]);
    assert!(!listing.contains("naïve"), "{listing}");
    assert!(listing.lines().any(|l| l == "new.txt"), "{listing}");
    assert!(listing.lines().any(|l| l == "a/b/日本語 ファイル"), "{listing}");
    rclone(&["check", source.to_str().unwrap(), &tree]);
}

/// cadaver (a command-line WebDAV client of its own: neon) reading commands from stdin, with the
/// password from `~/.netrc`: MKCOL, PUT, LS, GET.
#[test]
fn cadaver_puts_lists_and_gets() {
    if Command::new("cadaver").arg("--version").output().is_err() {
        eprintln!("skipping: cadaver is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let netrc = home.join(".netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1 login demo password {}\n", grid.password()),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&netrc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    std::fs::set_permissions(&netrc, permissions).unwrap();
    let local = scratch.path().join("local.bin");
    let contents = data(200_000, 42);
    std::fs::write(&local, &contents).unwrap();
    let fetched = scratch.path().join("fetched.bin");
    let script = format!(
        "mkcol cad\nput {} cad/f.bin\nls cad\nget cad/f.bin {}\nquit\n",
        local.display(),
        fetched.display()
    );
    let mut child = Command::new("cadaver")
        .arg(grid.url())
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("f.bin"), "{printed}");
    assert!(
        std::fs::read(&fetched).is_ok_and(|f| f == contents),
        "cadaver's GET came back different: {printed}"
    );
}

/// Unmounts a davfs2 mount when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// davfs2, the kernel mount (FUSE): files written through the mount reach the grid when they are
/// closed and the mount is flushed, and read back through it. Skipped, with the reason, where
/// mounting is not allowed.
#[test]
fn davfs2_mount_writes_and_reads() {
    if !Path::new("/usr/sbin/mount.davfs").exists() && !Path::new("/sbin/mount.davfs").exists() {
        eprintln!("skipping: davfs2 is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let url = grid.url();
    let secrets = scratch.path().join("secrets");
    std::fs::write(&secrets, format!("{url} demo {}\n", grid.password())).unwrap();
    let mut permissions = std::fs::metadata(&secrets).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    std::fs::set_permissions(&secrets, permissions).unwrap();
    let conf = scratch.path().join("davfs2.conf");
    // buf_size 64: davfs2 before 1.7.2 answers directory reads with a buffer Linux 6.16 and later
    // refuse (EINVAL), unless it is at least 64 KiB (alisarctl/davfs2#22).
    std::fs::write(
        &conf,
        format!(
            "secrets {}\nuse_locks 1\ndelay_upload 0\nbuf_size 64\n",
            secrets.display()
        ),
    )
    .unwrap();
    let mountpoint = scratch.path().join("mnt");
    std::fs::create_dir_all(&mountpoint).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "davfs", &url])
        .arg(&mountpoint)
        .arg("-o")
        .arg(format!("conf={}", conf.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !mounted.status.success() {
        eprintln!(
            "skipping: davfs2 could not mount here (no mount privileges or FUSE?): {}",
            String::from_utf8_lossy(&mounted.stderr).trim()
        );
        return;
    }
    let guard = Mounted(mountpoint.clone());
    let contents = data(300_000, 9);
    std::fs::create_dir(mountpoint.join("davfs")).unwrap();
    std::fs::write(mountpoint.join("davfs/naïve.bin"), &contents).unwrap();
    let listed: Vec<String> = std::fs::read_dir(mountpoint.join("davfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed, ["naïve.bin"]);
    // Unmounting uploads what is still cached; the server then has it.
    drop(guard);
    let user = format!("demo:{}", grid.password());
    let get = curl(&user, &[&format!("{url}davfs/na%C3%AFve.bin")]);
    assert_eq!(get.status, 200);
    assert!(
        get.body == contents,
        "the file written through davfs2 came back different"
    );
}
