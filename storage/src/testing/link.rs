//! An emulated network link in user space: a TCP relay that sits between clients and one server and
//! delays, rate-limits and breaks what passes through, byte for byte unchanged (so the real TLS
//! storage protocol is carried, and the same code paths are measured as on a real network).
//!
//! This machine's kernel has no `netem` qdisc, so the link is modelled here:
//!
//! - **Delay** is a timestamped queue per direction, not a sleep per read: every chunk read from
//!   one side is stamped with the instant it is due at the other (when the link has finished
//!   sending it, plus the one-way delay, plus jitter) and a writer delivers chunks as they fall
//!   due. A long fat link therefore keeps a bandwidth-delay product of bytes in flight, as a real
//!   one does. Jitter never reorders: a chunk is never due before the one ahead of it.
//! - **Rate** is a token bucket per direction, shared by all connections through the link: the link is busy for `len / rate` per chunk, and the
//!   reader stops taking bytes from the sender while the link is booked more than a few
//!   milliseconds ahead, so the excess waits in the sender's own socket buffer (as it does behind
//!   a real bottleneck) rather than in an unbounded queue here.
//! - **Window**: at most [`LinkConfig::window`] bytes are queued per direction (at least twice the
//!   bandwidth-delay product); a receiver that does not read stops the sender, as TCP's window
//!   does.
//! - **Faults**, switchable at run time: [`EmulatedLink::stall`] (nothing is delivered for a
//!   while; bytes queue up and flow afterwards), [`EmulatedLink::set_blackhole`] (connections are
//!   accepted and nothing is ever answered, until it is lifted), [`EmulatedLink::reset`] (every
//!   existing connection is closed with a TCP RST on both sides) and [`EmulatedLink::set_refuse`]
//!   (the listener is closed, so connecting is refused; existing connections go on).
//! - **Counters** ([`LinkStats`]): connections, bytes each way, and requests, counted as the
//!   times a connection's traffic turns from server-to-client to client-to-server (a request
//!   after an answer; the first bytes of a connection count too, and so does the TLS handshake's
//!   second client flight when the client waits for the server's before sending its request).
//!
//! Everything binds 127.0.0.1; the target is whatever address the test gives.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The largest chunk read and delivered at once.
const CHUNK: usize = 16 * 1024;
/// How far ahead the link may be booked before the reader stops taking bytes.
const BOOKING_SLACK: Duration = Duration::from_millis(2);

/// The shape of a link; each direction gets the same.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay (the round trip is twice this).
    pub delay: Duration,
    /// Extra delay per chunk, uniformly random in `0..=jitter` (order is kept).
    pub jitter: Duration,
    /// Bytes per second each way; `None` is unlimited.
    pub rate: Option<u64>,
}

impl LinkConfig {
    /// No delay, no limit.
    pub fn unlimited() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate: None,
        }
    }

    /// A link with round trip `rtt` and `mbit` megabits per second each way (`None`: unlimited).
    pub fn with_rtt_and_rate(rtt: Duration, mbit: Option<f64>) -> Self {
        LinkConfig {
            delay: rtt / 2,
            jitter: Duration::ZERO,
            rate: mbit.map(|m| (m * 1e6 / 8.0).max(1.0) as u64),
        }
    }

    /// The most bytes queued in one direction: twice the bandwidth-delay product, at least 4 MiB.
    pub fn window(&self) -> usize {
        let bdp = match self.rate {
            Some(rate) => rate as f64 * (self.delay + self.jitter).as_secs_f64() * 2.0,
            None => 0.0,
        };
        (2.0 * bdp).max(4.0 * 1024.0 * 1024.0) as usize
    }
}

/// What a link has carried since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests: the times a connection's traffic turned to client-to-server (see the module docs).
    pub requests: u64,
    /// Bytes from client to server.
    pub bytes_up: u64,
    /// Bytes from server to client.
    pub bytes_down: u64,
}

impl LinkStats {
    /// The counts since `earlier`.
    pub fn since(&self, earlier: &LinkStats) -> LinkStats {
        LinkStats {
            connections: self.connections - earlier.connections,
            requests: self.requests - earlier.requests,
            bytes_up: self.bytes_up - earlier.bytes_up,
            bytes_down: self.bytes_down - earlier.bytes_down,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    stalled_until: Option<Instant>,
    blackhole: bool,
    refuse: bool,
    /// Bumped by every reset: connections that saw an older value close with RST.
    resets: u64,
    closed: bool,
}

impl Faults {
    /// Whether bytes may be delivered now; otherwise when to look again (`None`: on a change).
    fn hold(&self, now: Instant) -> Option<Option<Instant>> {
        if self.blackhole {
            return Some(None);
        }
        match self.stalled_until {
            Some(until) if until > now => Some(Some(until)),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    config: Mutex<LinkConfig>,
    faults: watch::Sender<Faults>,
    counters: Counters,
    /// Per direction (up, down): until when the link is busy sending what it has taken. Shared
    /// by every connection through the link, so they share its rate.
    booked: [Mutex<Instant>; 2],
}

impl Shared {
    fn config(&self) -> LinkConfig {
        *self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One emulated link in front of one server: clients connect to [`EmulatedLink::addr`] and reach
/// the target through it. Dropping it closes every connection through it.
#[derive(Debug)]
pub struct EmulatedLink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl EmulatedLink {
    /// Starts a relay on `127.0.0.1:<free port>` to `target`.
    pub async fn start(target: SocketAddr, config: LinkConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::default());
        let shared = Arc::new(Shared {
            target,
            config: Mutex::new(config),
            faults,
            counters: Counters::default(),
            booked: [Mutex::new(Instant::now()), Mutex::new(Instant::now())],
        });
        let accept = tokio::spawn(accept_loop(listener, addr, Arc::clone(&shared)));
        Ok(EmulatedLink { addr, shared, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server behind the link.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// The link's shape.
    pub fn config(&self) -> LinkConfig {
        self.shared.config()
    }

    /// Changes the link's shape; bytes already queued keep the times they were given.
    pub fn set_config(&self, config: LinkConfig) {
        *self
            .shared
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// Delivers nothing, either way, for `duration` from now; what is sent meanwhile is delivered
    /// afterwards.
    pub fn stall(&self, duration: Duration) {
        let until = Instant::now() + duration;
        self.shared.faults.send_modify(|f| f.stalled_until = Some(until));
    }

    /// While on, connections are accepted and nothing is ever delivered either way (existing
    /// connections go silent too); turned off, what was held flows again.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.faults.send_modify(|f| f.blackhole = on);
    }

    /// Closes every existing connection with a TCP RST, on the client's side and the server's.
    pub fn reset(&self) {
        self.shared.faults.send_modify(|f| f.resets += 1);
    }

    /// While on, the listener is closed, so new connections are refused; existing ones go on.
    /// Turned off, the relay listens on the same port again.
    pub fn set_refuse(&self, on: bool) {
        self.shared.faults.send_modify(|f| f.refuse = on);
    }

    /// Whether the link is set to accept connections (false while refusing; after the refusal is
    /// lifted the relay binds its port again within moments).
    pub fn is_listening(&self) -> bool {
        !self.shared.faults.borrow().refuse
    }

    /// Lifts every fault (stall, blackhole, refuse).
    pub fn heal(&self) {
        self.shared.faults.send_modify(|f| {
            f.stalled_until = None;
            f.blackhole = false;
            f.refuse = false;
        });
    }

    /// What the link has carried.
    pub fn stats(&self) -> LinkStats {
        let c = &self.shared.counters;
        LinkStats {
            connections: c.connections.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for EmulatedLink {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.faults.send_modify(|f| f.closed = true);
    }
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut faults = shared.faults.subscribe();
    let mut listener = Some(listener);
    loop {
        let refuse = faults.borrow_and_update().refuse;
        if refuse {
            listener = None;
            if faults.changed().await.is_err() {
                return;
            }
            continue;
        }
        let current = match listener.take() {
            Some(l) => l,
            None => match rebind(addr).await {
                Some(l) => l,
                None => return,
            },
        };
        tokio::select! {
            accepted = current.accept() => {
                if let Ok((client, _)) = accepted {
                    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(connection(client, Arc::clone(&shared)));
                }
            }
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        listener = Some(current);
    }
}

/// Binds the relay's own port again after a refusal (it may take a moment to be free).
async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Waits until the faults let bytes through. `Err` when the connection must end (reset or the
/// link dropped).
async fn passable(faults: &mut watch::Receiver<Faults>, resets: u64) -> Result<(), ()> {
    loop {
        let f = *faults.borrow_and_update();
        if f.closed || f.resets != resets {
            return Err(());
        }
        match f.hold(Instant::now()) {
            None => return Ok(()),
            Some(None) => faults.changed().await.map_err(|_| ())?,
            Some(Some(until)) => {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    changed = faults.changed() => changed.map_err(|_| ())?,
                }
            }
        }
    }
}

/// Resolves when the connection must end (reset or the link dropped).
async fn ended(mut faults: watch::Receiver<Faults>, resets: u64) {
    loop {
        {
            let f = faults.borrow_and_update();
            if f.closed || f.resets != resets {
                return;
            }
        }
        if faults.changed().await.is_err() {
            return;
        }
    }
}

const UP: u8 = 1;
const DOWN: u8 = 2;

async fn connection(mut client: TcpStream, shared: Arc<Shared>) {
    let mut faults = shared.faults.subscribe();
    let resets = faults.borrow().resets;
    // A blackholed or stalled server does not answer the connection either.
    if passable(&mut faults, resets).await.is_err() {
        abort(&client);
        return;
    }
    let mut server = match TcpStream::connect(shared.target).await {
        Ok(s) => s,
        Err(_) => {
            abort(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let last = AtomicU8::new(DOWN);
    let reset = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pipe(client_read, server_write, UP, &last, &shared, resets);
        let down = pipe(server_read, client_write, DOWN, &last, &shared, resets);
        tokio::select! {
            _ = futures::future::try_join(up, down) => false,
            () = ended(shared.faults.subscribe(), resets) => true,
        }
    };
    if reset {
        abort(&client);
        abort(&server);
    }
}

/// Makes closing `stream` send a RST.
fn abort(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// One direction: reads from `from`, queues each chunk with the instant it is due, and writes it to
/// `to` then. Ends after the reader's EOF has been passed on (a half-close), or on an error.
async fn pipe(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    direction: u8,
    last: &AtomicU8,
    shared: &Shared,
    resets: u64,
) -> io::Result<()> {
    let window = shared.config().window();
    let budget = Semaphore::new(window);
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let bytes = if direction == UP {
        &shared.counters.bytes_up
    } else {
        &shared.counters.bytes_down
    };
    let booked = &shared.booked[usize::from(direction == DOWN)];
    let reader = async {
        let mut booked_until = Instant::now();
        let mut last_due = Instant::now();
        loop {
            let Ok(permit) = budget.acquire_many(CHUNK as u32).await else {
                return;
            };
            permit.forget();
            let mut buf = vec![0u8; CHUNK];
            // A read error ends the direction as an EOF would.
            let n: usize = from.read(&mut buf).await.unwrap_or_default();
            budget.add_permits(CHUNK - n);
            let config = shared.config();
            let now = Instant::now();
            if n == 0 {
                let _ = queue.send((last_due.max(now + config.delay), None));
                return;
            }
            buf.truncate(n);
            bytes.fetch_add(n as u64, Ordering::Relaxed);
            if last.swap(direction, Ordering::Relaxed) != direction && direction == UP {
                shared.counters.requests.fetch_add(1, Ordering::Relaxed);
            }
            let sent = match config.rate {
                Some(rate) => {
                    let mut link = booked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    *link = (*link).max(now) + Duration::from_secs_f64(n as f64 / rate as f64);
                    booked_until = *link;
                    booked_until
                }
                None => now,
            };
            let jitter = if config.jitter.is_zero() {
                Duration::ZERO
            } else {
                config.jitter.mul_f64(rand::random::<f64>())
            };
            last_due = last_due.max(sent + config.delay + jitter);
            if queue.send((last_due, Some(buf))).is_err() {
                return;
            }
            if booked_until > now + BOOKING_SLACK {
                tokio::time::sleep_until(booked_until - BOOKING_SLACK).await;
            }
        }
    };
    let writer = async {
        let mut faults = shared.faults.subscribe();
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            passable(&mut faults, resets)
                .await
                .map_err(|()| io::Error::from(io::ErrorKind::ConnectionReset))?;
            match chunk {
                Some(chunk) => {
                    to.write_all(&chunk).await?;
                    budget.add_permits(chunk.len());
                }
                None => {
                    let _ = to.shutdown().await;
                    return Ok(());
                }
            }
        }
        Ok(())
    };
    tokio::select! {
        result = writer => result,
        () = async { reader.await; futures::future::pending::<()>().await } => Ok(()),
    }
}
