//! Test support: servers with short timeouts, clients, and a TCP proxy that
//! can cut every connection through it.

#![allow(dead_code, unreachable_pub)] // each test module uses a different part

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use session_client::{Client, State, StateEvents};
use session_core::{Action, ClientConfig, ClientSession, SessionId, SessionPassword};
use session_server::{Server, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Tick of the test servers: expiry is checked every 50 ms.
pub const TICK: Duration = Duration::from_millis(50);
/// The largest session timeout test servers grant.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Every listener on 127.0.0.1 port 0, tick 50 ms, timeouts 200 ms ..= 2 s.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen = any_port;
    config.admin_listen = Some(any_port);
    config.metrics_listen = None;
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
    Client::builder()
        .servers(servers)
        .session_timeout(timeout)
        .connect_timeout(PATIENCE)
        .rng_seed(1)
        .connect()
        .await
        .unwrap_or_else(|err| panic!("connect to {servers}: {err}"))
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

/// Replays session-core's state machine to learn what a client with `seed`
/// does: the host order, and the delay before its first reattach attempt
/// after losing an established connection.
pub fn plan(hosts: usize, seed: u64) -> (Vec<usize>, Duration) {
    let start = Instant::now();
    let config = ClientConfig {
        hosts: NonZeroUsize::new(hosts).expect("at least one host"),
        session_timeout: MAX_TIMEOUT,
        rng_seed: seed,
    };
    let mut session = ClientSession::new(config, start);
    let order = session.host_order().to_vec();
    while session.poll_action().is_some() {}
    session.handle_connected(start);
    while session.poll_action().is_some() {}
    session.handle_handshake_accepted(
        SessionId::from_u64(1 << 56),
        SessionPassword::from_bytes([1; 16]),
        MAX_TIMEOUT,
        start,
    );
    session.handle_transport_lost(start);
    let retry = session.poll_timeout().expect("a retry is scheduled") - start;
    assert!(!matches!(
        session.poll_action(),
        Some(Action::Connect { .. })
    ));
    (order, retry)
}

/// A seed whose first reattach attempt waits within `range`.
pub fn seed_with_retry_in(range: std::ops::Range<Duration>) -> u64 {
    (0..1000)
        .find(|&seed| range.contains(&plan(1, seed).1))
        .expect("some seed in 0..1000 fits")
}

/// A TCP proxy in front of a server; `cut` closes every connection through
/// it and refuses new ones until `restore`.
pub struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let cut = Arc::clone(&cut);
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let mut cuts = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
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

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
