//! The FTP frontend with real clients against a real `tessera devgrid`: curl (upload, download,
//! listing, resumed downloads and uploads with `-C -`, FTPS with `--ssl-reqd`, APPE), lftp (a tree
//! mirrored both ways with UTF-8 names, plain and TLS, resume, rename, `rm -r`; uploads resumed
//! with `put -c` and `reput`, keeping the file's time through `SITE UTIME`), Python's ftplib (every command, plain and TLS, PASV and EPSV,
//! `REST`+`STOR`, APPE, `SITE MFMT` then MDTM, and the hostile cases: `ftp/ftplib_check.py`), an
//! upload that fails because too
//! few servers are up, idle sessions, rate-limited failed logins, and (slow tier,
//! `TESSERA_SLOW_TESTS=1`) 256 MiB each way compared byte for byte.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

mod common;
use common::free_port;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `tessera devgrid` with FTP on a free port, stopped on drop.
struct Devgrid {
    child: Option<Child>,
    dir: PathBuf,
    web_port: u16,
    ftp_port: u16,
}

/// Held while a devgrid picks and binds its ports, and by a test across a stop and restart of its
/// grid: devgrid keeps each node's port in the node's tahoe.cfg, so a sibling test's grid created
/// while this one is stopped could otherwise be given one of its ports.
static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ports_lock() -> std::sync::MutexGuard<'static, ()> {
    PORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Devgrid {
    fn start(dir: &Path, servers: usize) -> Devgrid {
        let _ports = ports_lock();
        // A port picked free may be taken by a parallel test before devgrid binds it: try again
        // with fresh ports (in a fresh directory, as the failed attempt may have made some nodes).
        for attempt in 1..3 {
            let (web_port, ftp_port) = (free_port(), free_port());
            if let Ok(grid) = std::panic::catch_unwind(|| Self::start_on(dir, servers, web_port, ftp_port)) {
                return grid;
            }
            let _ = std::fs::rename(dir, dir.with_extension(format!("failed{attempt}")));
        }
        let (web_port, ftp_port) = (free_port(), free_port());
        Self::start_on(dir, servers, web_port, ftp_port)
    }

    fn start_on(dir: &Path, servers: usize, web_port: u16, ftp_port: u16) -> Devgrid {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["devgrid", "--servers", &servers.to_string()])
            .args(["--web-port", &web_port.to_string()])
            .args(["--ftp-port", &ftp_port.to_string()])
            .args(["--sftp-port", "0"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        let mut lines = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let line = line.trim_end().to_owned();
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Press Ctrl-C to stop the grid") {
                // Keep reading, so that devgrid's last lines do not meet a closed pipe.
                let rest = BufReader::new(std::mem::replace(lines.get_mut(), Box::new(std::io::empty())));
                std::thread::spawn(move || rest.lines().for_each(drop));
                // devgrid prints how to connect to its FTP server.
                assert!(
                    printed.contains(&format!("ftp://127.0.0.1:{ftp_port}/")) && printed.contains("-u demo:"),
                    "{printed}"
                );
                return Devgrid {
                    child: Some(child),
                    dir: dir.to_path_buf(),
                    web_port,
                    ftp_port,
                };
            }
        }
        let _ = child.wait();
        panic!("devgrid exited before it was ready: {printed}");
    }

    /// Starts again on ports used before; another test may have taken one meanwhile, so retry.
    fn restart_on(dir: &Path, servers: usize, web_port: u16, ftp_port: u16) -> Devgrid {
        for _ in 0..3 {
            if let Ok(grid) = std::panic::catch_unwind(|| Self::start_on(dir, servers, web_port, ftp_port)) {
                return grid;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        Self::start_on(dir, servers, web_port, ftp_port)
    }

    fn gateway(&self) -> PathBuf {
        self.dir.join("gateway")
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.gateway().join("private").join("demo_ftp_password"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn url(&self) -> String {
        format!("ftp://127.0.0.1:{}", self.ftp_port)
    }

    fn node_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.web_port)
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        common::interrupt_and_wait(&mut child);
    }

    /// Stops one storage node by its process id (found from its command line).
    fn stop_storage(&self, name: &str) {
        let node_dir = self.dir.join(name);
        let node_dir = node_dir.to_str().unwrap();
        for entry in std::fs::read_dir("/proc").unwrap() {
            let entry = entry.unwrap();
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.len() >= 3 && args[1] == b"run" && args[2] == node_dir.as_bytes() {
                let pid = entry.file_name().into_string().unwrap();
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                return;
            }
        }
        panic!("no process runs {node_dir}");
    }
}

impl Drop for Devgrid {
    fn drop(&mut self) {
        self.stop();
    }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "300"])
        .args(args)
        .output()
        .expect("curl must be installed (.ci/run installs it)")
}

fn curl_ok(args: &[&str]) -> Vec<u8> {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The gateway's log holds neither a cap nor the password.
fn assert_log_clean(grid: &Devgrid) {
    let log = common::read_logs(&grid.gateway());
    // (The web access log names a cap's kind, `[URI:DIR2]`, never the cap.)
    for cap_prefix in ["URI:DIR2:", "URI:CHK:", "URI:LIT:", "URI:SSK:"] {
        assert!(!log.contains(cap_prefix), "a cap reached the log:\n{log}");
    }
    assert!(!log.contains(&grid.password()), "the password reached the log");
}

#[test]
fn curl_uploads_downloads_lists_resumes_and_speaks_ftps() {
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let user = format!("demo:{}", grid.password());
    let url = grid.url();
    let data = random_bytes(3_000_000);
    let input = scratch.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    let input = input.to_str().unwrap();

    // Plain upload into a new directory, listing, download.
    curl_ok(&[
        "-u",
        &user,
        "--ftp-create-dirs",
        "-T",
        input,
        &format!("{url}/dir/input.bin"),
    ]);
    let listing = String::from_utf8(curl_ok(&["-u", &user, &format!("{url}/dir/")])).unwrap();
    assert!(
        listing.contains(" 3000000 ") && listing.trim_end().ends_with(" input.bin"),
        "{listing}"
    );
    assert_eq!(curl_ok(&["-u", &user, &format!("{url}/dir/input.bin")]), data);

    // Resume a download with -C - (REST + RETR: a ranged read).
    let partial = scratch.path().join("partial.bin");
    std::fs::write(&partial, &data[..1_234_567]).unwrap();
    curl_ok(&[
        "-u",
        &user,
        "-C",
        "-",
        "-o",
        partial.to_str().unwrap(),
        &format!("{url}/dir/input.bin"),
    ]);
    assert_eq!(std::fs::read(&partial).unwrap(), data);

    // FTPS: AUTH TLS, then protected data channels both ways.
    let tls = ["--ssl-reqd", "-k", "-u", &user];
    let small = scratch.path().join("small.bin");
    std::fs::write(&small, b"over TLS").unwrap();
    curl_ok(
        &[
            &tls[..],
            &["-T", small.to_str().unwrap(), &format!("{url}/dir/tls.txt")],
        ]
        .concat(),
    );
    assert_eq!(
        curl_ok(&[&tls[..], &[&format!("{url}/dir/tls.txt")]].concat()),
        b"over TLS"
    );
    assert_eq!(
        curl_ok(&[&tls[..], &[&format!("{url}/dir/input.bin")]].concat()),
        data
    );

    // APPE (curl -a) onto an existing file appends (the immutable file is uploaded again with
    // its bytes and the new ones).
    curl_ok(&[
        "-u",
        &user,
        "-a",
        "-T",
        small.to_str().unwrap(),
        &format!("{url}/dir/tls.txt"),
    ]);
    assert_eq!(
        curl_ok(&["-u", &user, &format!("{url}/dir/tls.txt")]),
        b"over TLSover TLS"
    );

    // Resume an upload with -C - (SIZE, then APPE of the rest): the server holds the first part.
    let head = scratch.path().join("head.bin");
    std::fs::write(&head, &data[..1_000_003]).unwrap();
    curl_ok(&[
        "-u",
        &user,
        "-T",
        head.to_str().unwrap(),
        &format!("{url}/dir/resumed.bin"),
    ]);
    curl_ok(&[
        "-u",
        &user,
        "-C",
        "-",
        "-T",
        input,
        &format!("{url}/dir/resumed.bin"),
    ]);
    assert!(curl_ok(&["-u", &user, &format!("{url}/dir/resumed.bin")]) == data);

    // A wrong password: 530, and nothing is served.
    let out = curl(&["-u", "demo:wrong", &format!("{url}/dir/")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("530"), "{out:?}");
    assert!(out.stdout.is_empty());
    assert_log_clean(&grid);
}

#[test]
fn ftplib_runs_every_command_plain_and_tls_in_passive_and_extended_passive_mode() {
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ftp/ftplib_check.py");
    for (security, passive) in [
        ("plain", "pasv"),
        ("tls", "epsv"),
        ("tls", "pasv"),
        ("plain", "epsv"),
    ] {
        let out = Command::new("python3")
            .arg(&script)
            .args(["127.0.0.1", &grid.ftp_port.to_string(), "demo", &grid.password()])
            .args([grid.node_url().as_str(), security, passive])
            .output()
            .expect("python3 must be installed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(" passed, 0 failed"),
            "ftplib {security} {passive}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_log_clean(&grid);
}

/// Reads the control connection until it closes (or the deadline); returns what came.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

fn login(stream: &mut TcpStream, password: &str) -> String {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220"), "{line}");
    write!(stream, "USER demo\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("331"), "{line}");
    write!(stream, "PASS {password}\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    line
}

#[test]
fn failed_upload_is_a_failure_reply_idle_sessions_end_and_failed_logins_are_limited() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("grid");
    let mut grid = Devgrid::start(&dir, 3);
    let (web_port, ftp_port, password) = (grid.web_port, grid.ftp_port, grid.password());
    // No other test's grid may pick this grid's ports while it is stopped.
    let ports = ports_lock();
    grid.stop();
    // A short idle timeout, then the same grid again (the demo login is kept).
    let cfg = dir.join("gateway").join("tahoe.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("[ftpd]\n", "[ftpd]\nidle_timeout = 2s\n")).unwrap();
    let grid = Devgrid::restart_on(&dir, 3, web_port, ftp_port);
    drop(ports);
    assert_eq!(grid.password(), password);
    let user = format!("demo:{password}");
    let address = format!("127.0.0.1:{ftp_port}");

    // An idle session is closed after the timeout (libunftp says 221, "Session timed out").
    let mut idle = TcpStream::connect(&address).unwrap();
    assert!(login(&mut idle, &password).starts_with("230"));
    let started = Instant::now();
    let rest = read_until_closed(&mut idle, Duration::from_secs(20));
    assert!(rest.contains("timed out"), "{rest:?}");
    assert!(started.elapsed() < Duration::from_secs(15));

    // Two of three storage nodes stopped: happiness 3 cannot be met. The client gets a failure
    // reply (452: not enough storage servers), never a success, and nothing is linked.
    let input = scratch.path().join("input.bin");
    std::fs::write(&input, random_bytes(200_000)).unwrap();
    grid.stop_storage("storage02");
    grid.stop_storage("storage03");
    std::thread::sleep(Duration::from_millis(500));
    let out = curl(&[
        "-u",
        &user,
        "-T",
        input.to_str().unwrap(),
        &format!("{}/lost.bin", grid.url()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("452"), "{out:?}");
    let listing = curl_ok(&["-u", &user, "-l", &format!("{}/", grid.url())]);
    assert!(!String::from_utf8_lossy(&listing).contains("lost.bin"));

    // Failed logins from one address: after five, even the right password is refused for a while.
    for _ in 0..5 {
        let out = curl(&["-u", "demo:guessed-7f3a", &format!("{}/", grid.url())]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("530"), "{out:?}");
    }
    let out = curl(&["-u", &user, "-l", &format!("{}/", grid.url())]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("530"), "{out:?}");
    let log = common::read_logs(&grid.gateway());
    assert!(log.contains("FTP login failed") && log.contains("too many failed logins"));
    assert!(
        !log.contains("guessed-7f3a") && !log.contains(&password),
        "a password reached the log"
    );
}

#[test]
fn ftp_256_mib_each_way_byte_for_byte() {
    if std::env::var_os("TESSERA_SLOW_TESTS").is_none() {
        eprintln!("skipped: set TESSERA_SLOW_TESTS=1 for the 256 MiB FTP transfers");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let user = format!("demo:{}", grid.password());
    let input = scratch.path().join("input.bin");
    let data = random_bytes(256 << 20);
    std::fs::write(&input, &data).unwrap();
    curl_ok(&[
        "-u",
        &user,
        "-T",
        input.to_str().unwrap(),
        &format!("{}/big.bin", grid.url()),
    ]);
    for tls in [false, true] {
        let output = scratch.path().join("output.bin");
        let mut args = vec!["-u", user.as_str(), "-o", output.to_str().unwrap()];
        if tls {
            args.extend(["--ssl-reqd", "-k"]);
        }
        let url = format!("{}/big.bin", grid.url());
        args.push(&url);
        curl_ok(&args);
        assert!(
            std::fs::read(&output).unwrap() == data,
            "256 MiB differ (tls {tls})"
        );
        std::fs::remove_file(&output).unwrap();
    }
}

/// Every file under `root` (relative path -> contents).
fn tree(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    files
}

/// Runs an lftp script against the grid's FTP server; returns its output.
fn lftp(grid: &Devgrid, settings: &str, script: &str) -> Output {
    Command::new("lftp")
        .arg("-u")
        .arg(format!("demo,{}", grid.password()))
        .arg("-e")
        .arg(format!(
            "set cmd:fail-exit yes; set net:max-retries 3; set net:timeout 60; set net:reconnect-interval-base 1; \
             set ssl:verify-certificate no; {settings}; {script}; bye"
        ))
        .arg(grid.url())
        .output()
        .expect("lftp must be installed (.ci/run installs it)")
}

#[test]
fn lftp_mirrors_a_tree_both_ways_over_tls_and_plain() {
    if Command::new("lftp").arg("--version").output().is_err() {
        eprintln!("skipped: lftp is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let local = scratch.path().join("local");
    for (path, len) in [
        ("top.bin", 2_500_000),
        ("empty.txt", 0),
        ("a/b/deep.txt", 1_000),
        ("a/Grüße ñ.txt", 77),
        ("日本語/ファイル.dat", 4_096),
    ] {
        let path = local.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, random_bytes(len)).unwrap();
    }
    let expected = tree(&local);
    let local_str = local.to_str().unwrap();

    for (name, settings) in [
        (
            "tls-epsv",
            "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:prefer-epsv true",
        ),
        ("plain-pasv", "set ftp:ssl-allow false; set ftp:prefer-epsv false"),
    ] {
        // Upload the tree (MKD, STOR, MLSD to compare), then download it into a fresh directory.
        let back = scratch.path().join(format!("back-{name}"));
        let out = lftp(
            &grid,
            settings,
            &format!(
                "mirror -R {local_str} {name}; cls -l {name}; mirror {name} {}",
                back.to_str().unwrap()
            ),
        );
        assert!(
            out.status.success(),
            "lftp {name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(tree(&back), expected, "{name}: the tree came back different");

        // A resumed download (get -c: REST + RETR), a rename, and removal of the whole tree.
        let partial = scratch.path().join(format!("partial-{name}.bin"));
        std::fs::write(&partial, &expected[Path::new("top.bin")][..1_000_001]).unwrap();
        let out = lftp(
            &grid,
            settings,
            &format!(
                "get -c {name}/top.bin -o {}; mv {name}/top.bin {name}/renamed.bin; \
                 cls {name}/renamed.bin; rm -r {name}",
                partial.to_str().unwrap()
            ),
        );
        assert!(
            out.status.success(),
            "lftp {name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&partial).unwrap(), expected[Path::new("top.bin")]);
        let listing = curl_ok(&[
            "-u",
            &format!("demo:{}", grid.password()),
            "-l",
            &format!("{}/", grid.url()),
        ]);
        assert!(
            !String::from_utf8_lossy(&listing).contains(name),
            "rm -r left {name} behind"
        );
    }
    assert_log_clean(&grid);
}

#[test]
fn lftp_resumes_uploads_with_put_c_and_reput() {
    if Command::new("lftp").arg("--version").output().is_err() {
        eprintln!("skipped: lftp is not installed (.ci/run installs it)");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let grid = Devgrid::start(&scratch.path().join("grid"), 3);
    let user = format!("demo:{}", grid.password());
    let data = random_bytes(3_000_000);
    let full = scratch.path().join("full.bin");
    std::fs::write(&full, &data).unwrap();
    // lftp keeps the file's modification time (SITE UTIME, as libunftp does not dispatch MFMT).
    std::fs::File::options()
        .write(true)
        .open(&full)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    let full = full.to_str().unwrap();
    for (name, settings, kept) in [
        (
            "tls",
            "set ftp:ssl-force true; set ftp:ssl-protect-data true",
            1_234_567,
        ),
        ("plain", "set ftp:ssl-allow false", 2_000_000),
    ] {
        // An interrupted upload: the server holds the first part of the file.
        let head = scratch.path().join(format!("head-{name}.bin"));
        std::fs::write(&head, &data[..kept]).unwrap();
        let head = head.to_str().unwrap();
        for (command, remote) in [
            ("put -c", format!("put-c-{name}.bin")),
            ("reput", format!("reput-{name}.bin")),
        ] {
            let log = scratch.path().join(format!("lftp-{remote}.log"));
            let out = lftp(
                &grid,
                settings,
                &format!(
                    "debug -o {} 9; put {head} -o {remote}; {command} {full} -o {remote}",
                    log.display()
                ),
            );
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                out.status.success(),
                "lftp {name} {command}: {}{}\n{said}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // It resumed where the server's copy ends, rather than sending the file again.
            assert!(
                said.contains(&format!("REST {kept}")) || said.contains("APPE "),
                "lftp {name} {command} did not resume: {said}"
            );
            let back = curl_ok(&["-u", &user, &format!("{}/{remote}", grid.url())]);
            assert!(
                back == data,
                "{name} {command}: the file differs after the resume"
            );
            // curl shows MDTM's answer as Last-Modified.
            let head = String::from_utf8(curl_ok(&["-I", "-u", &user, &format!("{}/{remote}", grid.url())]))
                .unwrap();
            assert!(
                head.contains("Last-Modified: Sun, 09 Sep 2001 01:46:40 GMT"),
                "{name} {command}: {head}\n{said}"
            );
        }
    }
    assert_log_clean(&grid);
}
