//! Test support: servers with short timeouts, clients, a TCP proxy that can
//! hold back the server's answers and cut every connection through it, and a
//! fake server with a fixed handshake reply.

#![allow(dead_code, unreachable_pub)] // each test module uses a different part

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use session_client::{Client, ClientBuilder, State, StateEvents};
use session_server::{Server, ServerConfig};
use session_wire::ServerCodec;
use session_wire::v1::{ClientMessage, HandshakeReply, ServerMessage, client_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::Framed;

/// Tick of the test servers: expiry is checked every 50 ms.
pub const TICK: Duration = Duration::from_millis(50);
/// The largest session timeout test servers grant.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// The smallest session timeout test servers grant: 4 ticks.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(200);
/// The session timeouts fault tests run with: the smallest and the largest.
pub const TIMEOUTS: [Duration; 2] = [MIN_TIMEOUT, MAX_TIMEOUT];
/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// How much later than the protocol's bound a fault test accepts a state
/// change or a server-side effect: scheduling on a loaded machine, not the
/// protocol.
pub const SLACK: Duration = Duration::from_millis(100);

/// The seed of a test client: `SESSION_TEST_SEED` if set, random otherwise;
/// printed, so that a failing run can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("SESSION_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| RandomState::new().build_hasher().finish());
    eprintln!("client seed {seed} (SESSION_TEST_SEED={seed} replays it)");
    seed
}

/// A builder for a client of `servers` with session timeout `timeout` and
/// a logged seed.
pub fn builder_of(servers: &str, timeout: Duration) -> ClientBuilder {
    Client::builder()
        .servers(servers)
        .session_timeout(timeout)
        .connect_timeout(PATIENCE)
        .rng_seed(seed())
}

/// A client of `servers` with session timeout `timeout` and a logged seed.
pub async fn client_of(servers: &str, timeout: Duration) -> Client {
    builder_of(servers, timeout)
        .connect()
        .await
        .unwrap_or_else(|err| panic!("connect to {servers}: {err}"))
}

/// A client through `proxy` with session timeout `timeout`.
pub async fn client_via(proxy: &Proxy, timeout: Duration) -> Client {
    client_of(&proxy.addr().to_string(), timeout).await
}

/// Waits until `condition` holds, checking every 5 ms, and asserts that it
/// did within `bound` of `since`: `what` names the bound in the failure.
/// Returns when it held, measured from `since`.
pub async fn within(
    since: Instant,
    bound: Duration,
    what: &str,
    mut condition: impl AsyncFnMut() -> bool,
) -> Duration {
    loop {
        if condition().await {
            let took = since.elapsed();
            assert!(took <= bound, "{what}: after {took:?}, bound {bound:?}");
            return took;
        }
        assert!(
            since.elapsed() <= bound,
            "{what}: not within the bound {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next state from `events`, asserted to come within `bound` of
/// `since`; returns it and when it came, measured from `since`.
pub async fn state_within(
    events: &mut StateEvents,
    since: Instant,
    bound: Duration,
) -> (State, Duration) {
    let left = bound.saturating_sub(since.elapsed());
    match tokio::time::timeout(left, events.next()).await {
        Ok(Some(state)) => (state, since.elapsed()),
        Ok(None) => panic!("the event stream ended"),
        Err(_) => panic!("no state change within {bound:?}"),
    }
}

/// Every listener on 127.0.0.1 port 0, tick 50 ms, timeouts 200 ms ..= 2 s.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig {
        storage: session_server::Storage::InMemory,
        ..ServerConfig::default()
    };
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen = any_port;
    config.admin_listen = Some(any_port);
    config.metrics_listen = None;
    // ZooKeeper's clients are session-server's tests' business.
    config.zk_listen = None;
    config.timeouts = session_core::TimeoutPolicy::new(TICK)
        .and_then(|policy| policy.with_bounds(Duration::from_millis(200), MAX_TIMEOUT))
        .expect("valid test policy");
    config
}

pub async fn start() -> Server {
    Server::start(test_config()).await.expect("server starts")
}

/// A server listening on `addr` (to restart one on the same port).
pub async fn start_on(addr: SocketAddr) -> Server {
    let mut config = test_config();
    config.listen = addr;
    Server::start(config)
        .await
        .expect("server restarts on its port")
}

pub async fn connect_to(servers: &str, timeout: Duration) -> Client {
    client_of(servers, timeout).await
}

pub async fn connect(server: &Server) -> Client {
    connect_to(&server.local_addr().to_string(), MAX_TIMEOUT).await
}

/// The next state from `events`, within `PATIENCE`.
pub async fn next_state(events: &mut StateEvents) -> State {
    match tokio::time::timeout(PATIENCE, events.next()).await {
        Ok(Some(state)) => state,
        Ok(None) => panic!("the event stream ended"),
        Err(_) => panic!("no state change within {PATIENCE:?}"),
    }
}

/// Waits until `condition` holds, polling every tick.
pub async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(TICK).await;
    }
}

/// A port on which nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    addr
}

/// A TCP proxy in front of a server; `cut` closes every connection through
/// it and refuses new ones until `restore`; `hold` stops every byte from the
/// server to the client (requests still reach the server, no answer comes
/// back) until the connections are cut; `stall` stops forwarding both ways
/// with every socket left open (new connections are accepted and stalled
/// too) until `restore`.
pub struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    hold: watch::Sender<bool>,
    stall: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Copies `from` to `to` until either end closes. While `hold` is true (when
/// given) nothing is written to `to`: bytes read meanwhile are dropped, so
/// that no answer the server sent after `hold` ever reaches the client.
/// While `stall` is true nothing is read from `from` (nor written to `to`):
/// the bytes wait in the sockets' buffers, both ends stay open, and a writer
/// on the far side eventually blocks, as behind a partition or a zero window.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut hold: Option<watch::Receiver<bool>>,
    mut stall: watch::Receiver<bool>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        if stall.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        let read = match hold.as_mut() {
            None => tokio::select! {
                read = from.read(&mut buf) => read,
                _ = stall.wait_for(|stalled| *stalled) => continue,
            },
            Some(hold) => {
                if hold.wait_for(|held| !*held).await.is_err() {
                    return;
                }
                tokio::select! {
                    read = from.read(&mut buf) => read,
                    _ = hold.wait_for(|held| *held) => continue,
                    _ = stall.wait_for(|stalled| *stalled) => continue,
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hold.as_ref().is_some_and(|hold| *hold.borrow()) {
            continue;
        }
        // Read just before a stall began: kept until it ends, not lost.
        if stall.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (hold, _) = watch::channel(false);
        let (stall, _) = watch::channel(false);
        let task = {
            let cut = Arc::clone(&cut);
            let generation = generation.clone();
            let hold = hold.clone();
            let stall = stall.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let mut cuts = generation.subscribe();
                    let held = hold.subscribe();
                    let stalled = stall.subscribe();
                    tokio::spawn(async move {
                        let Ok(outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let (client_read, client_write) = inbound.into_split();
                        let (server_read, server_write) = outbound.into_split();
                        // Either end closing, or a cut, closes both.
                        tokio::select! {
                            () = forward(client_read, server_write, None, stalled.clone()) => {}
                            () = forward(server_read, client_write, Some(held), stalled) => {}
                            _ = cuts.changed() => {}
                        }
                    });
                }
            })
        };
        Proxy {
            addr,
            cut,
            generation,
            hold,
            stall,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// From now on, nothing the server sends reaches the client; what the
    /// client sends still reaches the server. Lasts until `restore`: cut
    /// before, as the held connections have lost bytes.
    pub fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// From now on nothing is forwarded either way, and nothing is closed:
    /// both peers' writes pile up in the socket buffers until they block,
    /// and neither hears the other (a partition that drops packets, or a
    /// peer advertising a zero window). New connections are accepted and
    /// stalled as well. Lasts until `restore`.
    pub fn stall(&self) {
        self.stall.send_replace(true);
    }

    /// Lets connections through again (and ends a `hold` or a `stall`).
    pub fn restore(&self) {
        self.hold.send_replace(false);
        self.stall.send_replace(false);
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fake server speaking session-wire framing on 127.0.0.1 that answers
/// every handshake with one fixed reply and then waits for the client to hang
/// up: for what a client does with a reply a real server would not send.
pub struct FakeServer {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(reply: HandshakeReply) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake server");
        let addr = listener.local_addr().expect("fake server address");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let task = {
            let handshakes = Arc::clone(&handshakes);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let handshakes = Arc::clone(&handshakes);
                    let reply = reply.clone();
                    tokio::spawn(async move {
                        let mut framed = Framed::new(stream, ServerCodec::new());
                        let Some(Ok(ClientMessage {
                            kind: Some(client_message::Kind::Handshake(_)),
                        })) = framed.next().await
                        else {
                            return;
                        };
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        if framed.send(ServerMessage::from(reply)).await.is_err() {
                            return;
                        }
                        // Keep the connection until the client drops it.
                        while let Some(Ok(_)) = framed.next().await {}
                    });
                }
            })
        };
        FakeServer {
            addr,
            handshakes,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many handshakes it has answered.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
