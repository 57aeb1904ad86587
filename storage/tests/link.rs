//! The emulated link (`storage::testing::link`): its delay, rate and faults have the effects
//! configured, measured through it over loopback. Timing bounds are generous (a loaded machine
//! adds time; it never removes it), so the lower bounds are the sharp ones.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use storage::StorageClient;
use storage::http::HttpStorageClient;
use storage::server::{StorageConfig, StorageServer};
use storage::testing::{EmulatedLink, HttpsTestServer, LinkConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server that echoes every byte back; returns its address.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A server that swallows everything and answers each connection with `total` bytes, then closes.
async fn source_server(total: usize) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0x5au8; 64 * 1024];
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    addr
}

async fn ping(stream: &mut TcpStream) -> std::io::Result<Duration> {
    let start = Instant::now();
    stream.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    assert_eq!(&byte, b"x");
    Ok(start.elapsed())
}

fn shape(rtt_ms: u64, mbit: Option<f64>) -> LinkConfig {
    LinkConfig::with_rtt_and_rate(Duration::from_millis(rtt_ms), mbit)
}

#[tokio::test]
async fn a_round_trip_takes_the_configured_rtt() {
    let link = EmulatedLink::start(echo_server().await, shape(100, None))
        .await
        .expect("link");
    let mut stream = TcpStream::connect(link.addr()).await.expect("connect");
    for _ in 0..3 {
        let rtt = ping(&mut stream).await.expect("ping");
        println!("round trip through a 100 ms link: {rtt:?}");
        assert!(rtt >= Duration::from_millis(98), "{rtt:?}");
        assert!(rtt < Duration::from_millis(400), "{rtt:?}");
    }
    // Changed at run time, the next round trip follows.
    link.set_config(shape(20, None));
    let rtt = ping(&mut stream).await.expect("ping");
    assert!(rtt >= Duration::from_millis(19), "{rtt:?}");
    assert!(rtt < Duration::from_millis(90), "{rtt:?}");
    let stats = link.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.requests, 4, "each ping is a request: {stats:?}");
    assert_eq!((stats.bytes_up, stats.bytes_down), (4, 4));
}

#[tokio::test]
async fn jitter_adds_to_the_delay_and_keeps_the_order() {
    let mut config = shape(40, None);
    config.jitter = Duration::from_millis(30);
    let link = EmulatedLink::start(echo_server().await, config)
        .await
        .expect("link");
    let mut stream = TcpStream::connect(link.addr()).await.expect("connect");
    let mut most = Duration::ZERO;
    for _ in 0..10 {
        let rtt = ping(&mut stream).await.expect("ping");
        assert!(rtt >= Duration::from_millis(39), "{rtt:?}");
        assert!(rtt < Duration::from_millis(400), "{rtt:?}");
        most = most.max(rtt);
    }
    assert!(
        most > Duration::from_millis(45),
        "ten round trips without any jitter: {most:?}"
    );
    // Many small writes arrive whole and in order.
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = stream.into_split();
    let expected = sent.clone();
    let writer = tokio::spawn(async move {
        for piece in sent.chunks(1000) {
            write.write_all(piece).await.expect("write");
        }
        write
    });
    let mut got = vec![0u8; expected.len()];
    read.read_exact(&mut got).await.expect("read");
    assert!(got == expected, "bytes reordered or changed");
    drop(writer.await.expect("writer"));
}

#[tokio::test]
async fn the_rate_is_capped_each_way() {
    // 8 Mbit/s = 1 MB/s: 1.5 MB takes about 1.5 s (plus the 10 ms round trip).
    let size = 1_500_000;
    let link = EmulatedLink::start(source_server(size).await, shape(10, Some(8.0)))
        .await
        .expect("link");
    let mut stream = TcpStream::connect(link.addr()).await.expect("connect");
    let start = Instant::now();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.expect("read");
    let elapsed = start.elapsed();
    let rate = got.len() as f64 / elapsed.as_secs_f64() / 1e6;
    println!("1.5 MB through an 8 Mbit/s link: {elapsed:?}, {rate:.2} MB/s");
    assert_eq!(got.len(), size);
    assert!(
        elapsed >= Duration::from_millis(1300),
        "faster than the cap: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "far below the cap: {elapsed:?}");
    assert_eq!(link.stats().bytes_down, size as u64);

    // Upwards too: 1 MB of echo at 8 Mbit/s each way.
    let echo = EmulatedLink::start(echo_server().await, shape(10, Some(8.0)))
        .await
        .expect("link");
    let stream = TcpStream::connect(echo.addr()).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        write.write_all(&vec![1u8; 1_000_000]).await.expect("write");
        write
    });
    let mut got = vec![0u8; 1_000_000];
    read.read_exact(&mut got).await.expect("read");
    let elapsed = start.elapsed();
    drop(writer.await.expect("writer"));
    println!("1 MB echoed through an 8 Mbit/s link: {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(850), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn connections_through_one_link_share_its_rate() {
    // Four connections at once through an 8 Mbit/s (1 MB/s) link, 400 kB each: 1.6 MB together
    // take about 1.6 s, not the 0.4 s of four links.
    let size = 400_000;
    let link = EmulatedLink::start(source_server(size).await, shape(10, Some(8.0)))
        .await
        .expect("link");
    let start = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let addr = link.addr();
        readers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.expect("read");
            got.len()
        }));
    }
    for reader in readers {
        assert_eq!(reader.await.expect("reader"), size);
    }
    let elapsed = start.elapsed();
    println!("4 × 400 kB through one 8 Mbit/s link: {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(1400),
        "the connections did not share the rate: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn delay_does_not_serialize_a_long_fat_link() {
    // 16 MiB over a 400 ms round trip without a rate cap: a sleep per read (16 KiB) would take
    // 1024 × 200 ms; a queue of timestamped chunks takes one delay plus the copying.
    let size = 16 << 20;
    let link = EmulatedLink::start(source_server(size).await, shape(400, None))
        .await
        .expect("link");
    let mut stream = TcpStream::connect(link.addr()).await.expect("connect");
    let start = Instant::now();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.expect("read");
    let elapsed = start.elapsed();
    println!("16 MiB through a 400 ms link: {elapsed:?}");
    assert_eq!(got.len(), size);
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(8),
        "delay serialized the stream: {elapsed:?}"
    );

    // With a cap, a long fat link still runs at its rate: 2 MB at 16 Mbit/s (2 MB/s) and a 400 ms
    // round trip is about 1 s, not 2 MB / window per round trip.
    let size = 2_000_000;
    let link = EmulatedLink::start(source_server(size).await, shape(400, Some(16.0)))
        .await
        .expect("link");
    let mut stream = TcpStream::connect(link.addr()).await.expect("connect");
    let start = Instant::now();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.expect("read");
    let elapsed = start.elapsed();
    println!("2 MB through a 400 ms, 16 Mbit/s link: {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(1100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_stall_holds_everything_for_its_time() {
    let link = EmulatedLink::start(echo_server().await, shape(10, None))
        .await
        .expect("link");
    let mut stream = TcpStream::connect(link.addr()).await.expect("connect");
    ping(&mut stream).await.expect("ping");
    link.stall(Duration::from_millis(800));
    let held = ping(&mut stream).await.expect("ping during a stall");
    println!("a round trip during an 800 ms stall: {held:?}");
    assert!(held >= Duration::from_millis(750), "{held:?}");
    assert!(held < Duration::from_secs(3), "{held:?}");
    let after = ping(&mut stream).await.expect("ping after");
    assert!(after < Duration::from_millis(300), "{after:?}");
}

#[tokio::test]
async fn a_blackhole_accepts_and_never_answers_until_lifted() {
    let link = EmulatedLink::start(echo_server().await, shape(10, None))
        .await
        .expect("link");
    let mut old = TcpStream::connect(link.addr()).await.expect("connect");
    ping(&mut old).await.expect("ping");
    link.set_blackhole(true);
    // An existing connection goes silent.
    let silent = tokio::time::timeout(Duration::from_millis(600), ping(&mut old)).await;
    assert!(silent.is_err(), "a blackholed link answered: {silent:?}");
    // A new connection is accepted, and silent too.
    let mut new = TcpStream::connect(link.addr())
        .await
        .expect("a blackhole accepts");
    let silent = tokio::time::timeout(Duration::from_millis(600), ping(&mut new)).await;
    assert!(silent.is_err(), "a blackholed link answered a new connection");
    link.set_blackhole(false);
    // What was held flows: the bytes sent during the blackhole come back now.
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(3), old.read_exact(&mut byte))
        .await
        .expect("the held byte arrives")
        .expect("read");
    assert_eq!(&byte, b"x");
    ping(&mut old).await.expect("the old connection works again");
    let mut fresh = TcpStream::connect(link.addr()).await.expect("connect");
    ping(&mut fresh).await.expect("a new connection works");
}

#[tokio::test]
async fn a_reset_closes_existing_connections_with_rst() {
    let link = EmulatedLink::start(echo_server().await, shape(10, None))
        .await
        .expect("link");
    let mut stream = TcpStream::connect(link.addr()).await.expect("connect");
    ping(&mut stream).await.expect("ping");
    link.reset();
    let mut byte = [0u8; 1];
    let result = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte))
        .await
        .expect("the reset arrives");
    match result {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("a clean read of {n} bytes instead of a reset"),
    }
    let mut fresh = TcpStream::connect(link.addr()).await.expect("connect");
    ping(&mut fresh)
        .await
        .expect("new connections are carried after a reset");
    assert_eq!(link.stats().connections, 2);
}

#[tokio::test]
async fn refusing_closes_the_listener_and_keeps_existing_connections() {
    let link = EmulatedLink::start(echo_server().await, shape(10, None))
        .await
        .expect("link");
    let mut old = TcpStream::connect(link.addr()).await.expect("connect");
    // Accepted by the relay (not just waiting in the listener's backlog, which closing resets).
    ping(&mut old).await.expect("ping");
    link.set_refuse(true);
    // The accept loop drops its listener as soon as it sees the change.
    let mut refused = false;
    for _ in 0..100 {
        match TcpStream::connect(link.addr()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            // A connection that was waiting in the closed listener's backlog is reset.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{e}"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(refused, "connections were still accepted");
    ping(&mut old).await.expect("an existing connection goes on");
    link.set_refuse(false);
    let mut back = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(link.addr()).await {
            back = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut back = back.expect("the link listens again on its port");
    ping(&mut back).await.expect("ping");
}

#[tokio::test]
async fn the_tls_storage_protocol_passes_through_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        std::sync::Arc::new(StorageServer::open(StorageConfig::new(dir.path().join("s"))).expect("store"));
    let server = HttpsTestServer::start(store).await.expect("server");
    let link = EmulatedLink::start(server.addr, shape(60, Some(100.0)))
        .await
        .expect("link");
    let client = HttpStorageClient::new(&server.nurl_via(link.addr())).expect("client");
    let start = Instant::now();
    let version = client.version().await.expect("version through the link");
    let first = start.elapsed();
    assert!(version.maximum_immutable_share_size > 0);
    let start = Instant::now();
    client.version().await.expect("again");
    let second = start.elapsed();
    println!("version through a 60 ms link: first {first:?} (connection, TLS), then {second:?}");
    // TCP connect (not seen by the relay, so not delayed) + TLS handshake + request >= 2 RTT; a
    // request on the pooled connection is one.
    assert!(first >= Duration::from_millis(115), "{first:?}");
    assert!(second >= Duration::from_millis(58), "{second:?}");
    assert!(second < Duration::from_millis(500), "{second:?}");
    let stats = link.stats();
    assert_eq!(stats.connections, 1, "{stats:?}");
    assert!(stats.requests >= 3, "TLS flights and two requests: {stats:?}");
}
