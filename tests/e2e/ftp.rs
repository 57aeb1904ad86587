//! Issue 13 for FTP: the per-user spool quota (finding 4: a STOR larger than the quota gets 552 with
//! nothing stored; uploads under it go on, in the same session and in another), and the control
//! connection's bound (a client that never ends its command line is cut off before libunftp's
//! codec buffers more than the relay's limit).

use std::sync::Arc;
use std::time::Duration;

use filenode::cap::MutableFormat;
use filenode::grid::Grid;
use filenode::grid::upload::UploadParams;
use filenode::node::DirNode;
use frontends::SpoolQuota;
use frontends::accounts::{AccountsFile, Credential, add_user};
use frontends::ftp::{FtpConfig, TlsPolicy, serve};
use tests::grid::TestGrid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A minimal FTP client over plain TCP (the server is on loopback with TLS off).
struct Ftp {
    control: BufReader<TcpStream>,
}

impl Ftp {
    async fn login(address: std::net::SocketAddr, user: &str, password: &str) -> Ftp {
        let mut ftp = Ftp {
            control: BufReader::new(TcpStream::connect(address).await.unwrap()),
        };
        assert!(ftp.reply().await.starts_with("220"));
        assert!(ftp.command(&format!("USER {user}")).await.starts_with("331"));
        let reply = ftp.command(&format!("PASS {password}")).await;
        assert!(reply.starts_with("230"), "{reply}");
        assert!(ftp.command("TYPE I").await.starts_with("200"));
        ftp
    }

    /// One reply (the last line of a multi-line one).
    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(120), self.control.read_line(&mut line)).await;
            let n = read.expect("a reply from the server").unwrap();
            assert!(n > 0, "the server closed the control connection");
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                return line.trim_end().to_owned();
            }
        }
    }

    async fn command(&mut self, command: &str) -> String {
        self.control
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// STOR of `data`; the final reply.
    async fn stor(&mut self, name: &str, data: &[u8]) -> String {
        let reply = self.command("EPSV").await;
        let port: u16 = reply
            .rsplit("|||")
            .next()
            .and_then(|rest| rest.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("EPSV reply: {reply}"));
        let address = self.control.get_ref().peer_addr().unwrap();
        let mut data_connection = TcpStream::connect((address.ip(), port)).await.unwrap();
        let reply = self.command(&format!("STOR {name}")).await;
        assert!(reply.starts_with("150") || reply.starts_with("125"), "{reply}");
        // The server may stop reading once it has refused the upload: that is not an error here.
        let _ = data_connection.write_all(data).await;
        let _ = data_connection.shutdown().await;
        let mut rest = Vec::new();
        let _ = data_connection.read_to_end(&mut rest).await;
        drop(data_connection);
        self.reply().await
    }
}

/// A grid, a root directory with user `alice` (password `open sesame`) and an FTP server on
/// 127.0.0.1 with TLS off and this spool quota.
async fn start(
    quota: Arc<SpoolQuota>,
) -> (
    TestGrid,
    Arc<Grid>,
    DirNode,
    tempfile::TempDir,
    std::net::SocketAddr,
) {
    let test_grid = TestGrid::new(10);
    let grid = Arc::new(Grid::new(test_grid.secrets.clone(), UploadParams::default()));
    grid.set_servers(test_grid.entries());
    let root = grid.create_directory(MutableFormat::Sdmf).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts");
    add_user(
        &accounts,
        "alice",
        &Credential::Password("open sesame".into()),
        root.cap(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = FtpConfig {
        grid: Arc::clone(&grid),
        accounts: Arc::new(AccountsFile::new(&accounts)),
        tls: TlsPolicy::Off,
        passive_ports: 49152..=65535,
        passive_host: None,
        idle_timeout: Duration::from_secs(600),
        failed_login_delay: Duration::from_millis(10),
        spool_dir: Some(dir.path().to_owned()),
        spool_quota: quota,
        counters: frontends::Counters::new(),
    };
    tokio::spawn(serve(listener, config, std::future::pending()));
    let root = DirNode::new(&grid, root.cap().clone());
    (test_grid, grid, root, dir, address)
}

/// Issue 13: libunftp's control codec buffers a command line until its newline, without a limit
/// (300 MiB sent before logging in raised a gateway's peak RSS from 26 to 334 MB). The relay in
/// front of it closes a connection whose client runs more than 64 KiB ahead of the replies: here
/// 64 MiB without a newline are cut off after a few MiB at most (socket buffers), while a
/// logged-in session goes on, its PASV reply naming the address the client reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_without_its_end_is_cut_off_and_other_sessions_go_on() {
    let (_test_grid, _grid, root, _dir, address) = start(SpoolQuota::new(1 << 30)).await;
    let mut ftp = Ftp::login(address, "alice", "open sesame").await;

    let mut hostile = TcpStream::connect(address).await.unwrap();
    let mut greeting = [0u8; 64];
    let n = hostile.read(&mut greeting).await.unwrap();
    assert!(greeting[..n].starts_with(b"220"));
    let chunk = vec![b'A'; 1 << 20];
    let mut accepted = 0u64;
    let sending = async {
        for _ in 0..64 {
            if hostile.write_all(&chunk).await.is_err() {
                return;
            }
            accepted += chunk.len() as u64;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), sending)
        .await
        .expect("the server neither read nor refused 64 MiB in 60 s");
    assert!(
        accepted < 16 << 20,
        "{} MiB of one unfinished command line were taken in",
        accepted >> 20
    );
    // The server closed it: the next read is the end (or a reset), not a wait.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), hostile.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the connection was left open");

    // The other session goes on, PASV included (its address is the one the client reached).
    let reply = ftp.command("PASV").await;
    assert!(
        reply.starts_with("227") && reply.contains("(127,0,0,1,"),
        "{reply}"
    );
    let reply = ftp.stor("after.txt", b"after").await;
    assert!(reply.starts_with("226"), "{reply}");
    let names: Vec<String> = root.list().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["after.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stor_past_the_spool_quota_gets_552_and_stores_nothing() {
    let quota = SpoolQuota::new(2 << 20);
    let (_test_grid, _grid, root, _dir, address) = start(Arc::clone(&quota)).await;
    let mut ftp = Ftp::login(address, "alice", "open sesame").await;
    let big = vec![5u8; 3 << 20];
    let reply = ftp.stor("big.bin", &big).await;
    assert!(reply.starts_with("552"), "{reply}");
    assert_eq!(quota.used("alice"), 0, "the refused spool gave its space back");
    // The session goes on, and so does another.
    let reply = ftp.stor("small.bin", b"small").await;
    assert!(reply.starts_with("226"), "{reply}");
    let mut other = Ftp::login(address, "alice", "open sesame").await;
    let reply = other.stor("other.bin", &vec![6u8; 1 << 20]).await;
    assert!(reply.starts_with("226"), "{reply}");
    let names: Vec<String> = root
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|child| child.name)
        .collect();
    assert_eq!(
        names,
        ["other.bin", "small.bin"],
        "nothing of the refused upload is stored"
    );
}
