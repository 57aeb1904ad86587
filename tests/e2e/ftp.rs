//! Issue 13, finding 4, for FTP: the FTP server's per-user spool quota. A STOR larger than the
//! quota gets 552 with nothing stored; uploads under it go on, in the same session and in another.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stor_past_the_spool_quota_gets_552_and_stores_nothing() {
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
    let quota = SpoolQuota::new(2 << 20);
    let config = FtpConfig {
        grid: Arc::clone(&grid),
        accounts: Arc::new(AccountsFile::new(&accounts)),
        tls: TlsPolicy::Off,
        passive_ports: 49152..=65535,
        passive_host: None,
        idle_timeout: Duration::from_secs(600),
        failed_login_delay: Duration::from_millis(10),
        spool_dir: Some(dir.path().to_owned()),
        spool_quota: Arc::clone(&quota),
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, config, async move {
        let _ = stopped.await;
    }));

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
    let names: Vec<String> = DirNode::new(&grid, root.cap().clone())
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
