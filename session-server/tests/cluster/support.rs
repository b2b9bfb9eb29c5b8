//! The cluster harness: three `session-server` processes on loopback, a
//! fault-injecting proxy on every directed peer link, session-client
//! clients whose state changes are recorded with their instants, and the
//! admin calls that find the leader.
//!
//! Server `i` is started with `--node-id i --peers 1=A1,2=A2,3=A3` where its
//! own entry is its real peer listener and entry `j` is the proxy of link
//! `i -> j` ([`Cluster::link`]), so cutting server `a` from `b` is cutting
//! links `a -> b` and `b -> a`. Clients connect straight to the servers'
//! client listeners (or through a [`LinkProxy`] a test puts in front).
//!
//! Every child process is killed when the [`Cluster`] is dropped, panics
//! included. Each server's stdout and stderr go to `node-<id>.log` in the
//! test's directory under the system temp dir; the directory is removed
//! after a passing test (unless `SESSION_CLUSTER_KEEP` is set) and kept,
//! its path printed, after a failing one.
//!
//! The tests of this binary run one at a time ([`serial`]): each runs three
//! servers and measures times against a 2/3·T bound on a 2-core machine.

#![allow(dead_code, unreachable_pub)] // each test module uses a different part

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use session_client::{Client, State};
use session_core::{ClientConfig, ClientSession};
use session_wire::ClientCodec;
use session_wire::admin::v1::{
    ClusterStatusRequest, ClusterStatusResponse, admin_client::AdminClient,
};
use session_wire::v1::{self as wire, ClientMessage, handshake_reply, server_message};
use tokio::time::{Instant, sleep};
use tokio_util::codec::Framed;

use crate::proxy::{Fault, LinkProxy, ProxyRuntime};
pub use crate::server_support::{Raw, fresh_port, new_session, server_binary};

// ---------------------------------------------------------------------------
// Timing constants. Every bound a test asserts is built from these.

/// `--tick-ms`: the expiry granularity of the servers.
pub const TICK: Duration = Duration::from_millis(100);
/// `--heartbeat-ms`: Raft heartbeats from the leader.
pub const HEARTBEAT: Duration = Duration::from_millis(50);
/// `--election-timeout-ms` E. openraft 0.9 lets a follower stand for
/// election once it has heard no leader for its leader lease (2E) plus a
/// random [E, 2E): 0.9–1.2 s here.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(300);
/// The session timeout T every session of these tests asks for (granted as
/// is: the servers allow 1 s ..= 10 s). The top of the 2–4 s range:
/// the 2/3·T bound on a client's move must absorb an election (see
/// [`ELECTION_TIMEOUT`]) and the client's waits between attempts.
pub const T: Duration = Duration::from_millis(4000);
/// What an upper bound on an expiry adds on top of the server's own
/// deadline (new leader's promotion + T, rounded up to a tick, which `TICK`
/// covers): ClusterStatus reports the new leader a moment before it has
/// applied its first entry and promoted (one round trip and an fsync); the
/// close goes through Raft (an fsync on the leader and one on a follower)
/// and reaches the other follower with the next append (≤ `HEARTBEAT`);
/// the observer polls every [`POLL`]; and on the shared 2-core machine a
/// woken thread may wait tens of milliseconds. A server that waited for
/// another election, another T or a retry still fails.
pub const EXPIRY_SLACK: Duration = Duration::from_millis(400);
/// How often a test polls what it observes (ephemerals, leader).
pub const POLL: Duration = Duration::from_millis(25);
/// How long a test waits for something that must happen promptly (a
/// cluster forming, a connection) before it calls it a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Two thirds of `timeout`: a client's read timeout, and the bound on a
/// client's move to another server.
pub fn two_thirds(timeout: Duration) -> Duration {
    timeout * 2 / 3
}

// ---------------------------------------------------------------------------
// One test at a time.

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole of a cluster test: the next waits for it. (An async
/// mutex: each test runs on its own runtime and holds it across awaits; a
/// failed test releases it like a passing one.)
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

// ---------------------------------------------------------------------------
// The test's directory.

/// A directory of the test's own under the system temp dir: data
/// directories and logs. Removed on drop, kept when the test panicked.
#[derive(Debug)]
pub struct Scratch {
    pub base: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let base = std::env::temp_dir().join(format!(
            "session-cluster-{name}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&base).expect("a scratch directory");
        Scratch { base }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster test failed: logs kept in {}", self.base.display());
        } else if std::env::var_os("SESSION_CLUSTER_KEEP").is_some() {
            eprintln!("logs kept in {}", self.base.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

// ---------------------------------------------------------------------------
// The servers.

/// One server of the cluster: its addresses, data directory and process.
#[derive(Debug)]
pub struct Node {
    pub id: u32,
    /// The v1 client listener.
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("a log file");
        let err = log.try_clone().expect("the log file again");
        let child = Command::new(server_binary())
            .args(&self.args)
            // The server's default filter.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("the server binary starts");
        self.child = Some(child);
    }

    /// Whether the process runs (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the server's log, without colours, without
    /// openraft's per-attempt replication errors (hundreds a second while a
    /// peer is cut off), each cut to 300 characters.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = strip_ansi(&self.log_text());
        let kept: Vec<String> = log
            .lines()
            .filter(|line| {
                !line.contains("openraft::replication") && !line.contains("replication_handler")
            })
            .map(|line| line.chars().take(300).collect())
            .collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }

    /// The admin status, or `None` when the server does not answer within
    /// a second.
    pub async fn status(&self) -> Option<ClusterStatusResponse> {
        let mut admin = admin_client(self.admin).await?;
        admin
            .cluster_status(ClusterStatusRequest {})
            .await
            .ok()
            .map(tonic::Response::into_inner)
    }
}

/// `text` without ANSI colour sequences (ESC `[` … letter).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn admin_client(addr: SocketAddr) -> Option<AdminClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .ok()?;
    Some(AdminClient::new(channel))
}

/// Three servers, their peer links, and the test's directory.
///
/// Field order is drop order: processes, then links, then the proxies'
/// runtime, then the directory.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    links: BTreeMap<(u32, u32), LinkProxy>,
    proxies: ProxyRuntime,
    pub scratch: Scratch,
}

/// The ids of the three servers.
pub const IDS: [u32; 3] = [1, 2, 3];

impl Cluster {
    /// Starts three servers and waits (at most [`PATIENCE`]) until they
    /// agree on a leader and each one grants a new session. A server that
    /// finds one of its ports taken (by another process on the machine,
    /// between the choice and its bind) makes it start over on new ports,
    /// up to three times.
    pub async fn start(name: &str) -> Cluster {
        let mut attempt = 1;
        loop {
            let mut cluster = Cluster::launch(name);
            match cluster.wait_ready().await {
                Ok(()) => return cluster,
                Err(why) if why.contains("Address already in use") && attempt < 3 => {
                    note(&format!("start over on new ports: {why}"));
                    attempt += 1;
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    /// Spawns three servers on new ports, each with its peer links.
    fn launch(name: &str) -> Cluster {
        let scratch = Scratch::new(name);
        let proxies = ProxyRuntime::new();
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let peers: BTreeMap<u32, SocketAddr> =
            IDS.iter().map(|&id| (id, loopback(fresh_port()))).collect();
        let mut links = BTreeMap::new();
        for from in IDS {
            for to in IDS {
                if from != to {
                    links.insert((from, to), LinkProxy::start(&proxies, peers[&to]));
                }
            }
        }
        let mut nodes = Vec::new();
        for id in IDS {
            let view: Vec<String> = IDS
                .iter()
                .map(|&other| {
                    let addr = if other == id {
                        peers[&id]
                    } else {
                        links[&(id, other)].addr()
                    };
                    format!("{other}={addr}")
                })
                .collect();
            let listen = loopback(fresh_port());
            let admin = loopback(fresh_port());
            let data_dir = scratch.base.join(format!("data-{id}"));
            let args: Vec<String> = vec![
                "--node-id".into(),
                id.to_string(),
                "--peers".into(),
                view.join(","),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen".into(),
                listen.to_string(),
                "--admin-listen".into(),
                admin.to_string(),
                "--metrics-listen".into(),
                loopback(fresh_port()).to_string(),
                // ZooKeeper's default port would be shared by every server.
                "--zk-listen".into(),
                "off".into(),
                "--tick-ms".into(),
                TICK.as_millis().to_string(),
                "--min-session-timeout-ms".into(),
                "1000".into(),
                "--max-session-timeout-ms".into(),
                "10000".into(),
                "--heartbeat-ms".into(),
                HEARTBEAT.as_millis().to_string(),
                "--election-timeout-ms".into(),
                ELECTION_TIMEOUT.as_millis().to_string(),
                "--shutdown-grace-ms".into(),
                "500".into(),
            ];
            let log = scratch.base.join(format!("node-{id}.log"));
            nodes.push(Node {
                id,
                listen,
                admin,
                log,
                args,
                child: None,
            });
        }
        for node in &mut nodes {
            node.spawn();
        }
        Cluster {
            nodes,
            links,
            proxies,
            scratch,
        }
    }

    /// Waits until every running server names the same leader and grants a
    /// new session; panics with the logs after [`PATIENCE`].
    pub async fn ready(&mut self) {
        if let Err(why) = self.wait_ready().await {
            panic!("{why}");
        }
    }

    /// [`ready`](Self::ready), with the failure as a value: a server that
    /// exited (with its log), or no agreement within [`PATIENCE`].
    async fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            for node in &mut self.nodes {
                if node.child.is_some() && !node.is_running() {
                    return Err(format!("server {} exited:\n{}", node.id, node.log_tail(40)));
                }
            }
            if self.agreed_leader().await.is_some() && self.every_server_grants().await {
                return Ok(());
            }
            if started.elapsed() > PATIENCE {
                return Err(format!(
                    "the cluster did not form within {PATIENCE:?}:\n{}",
                    self.logs(30)
                ));
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether each running server grants a new session now (closed again
    /// at once).
    async fn every_server_grants(&mut self) -> bool {
        let running: Vec<SocketAddr> = self
            .nodes
            .iter_mut()
            .filter_map(|node| node.is_running().then_some(node.listen))
            .collect();
        for addr in running {
            if !grants(addr).await {
                return false;
            }
        }
        true
    }

    pub fn node(&self, id: u32) -> &Node {
        &self.nodes[usize::try_from(id - 1).expect("small id")]
    }

    pub fn node_mut(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[usize::try_from(id - 1).expect("small id")]
    }

    /// The ids of the servers whose process runs.
    pub fn running(&mut self) -> Vec<u32> {
        self.nodes
            .iter_mut()
            .filter_map(|node| node.is_running().then_some(node.id))
            .collect()
    }

    /// The leader every running server names, if they agree and it is one
    /// of them.
    pub async fn agreed_leader(&mut self) -> Option<u32> {
        let running = self.running();
        let mut leader = None;
        for &id in &running {
            let status = self.node(id).status().await?;
            if status.leader_id == 0 || leader.is_some_and(|known| known != status.leader_id) {
                return None;
            }
            leader = Some(status.leader_id);
        }
        leader.filter(|leader| running.contains(leader))
    }

    /// The leader, once the running servers agree (at most [`PATIENCE`]).
    pub async fn leader(&mut self) -> u32 {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.agreed_leader().await {
                return leader;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no agreed leader within {PATIENCE:?}:\n{}",
                self.logs(20)
            );
            sleep(POLL).await;
        }
    }

    /// Polls the running servers among `among` until one reports a leader
    /// other than `old` that also names itself; returns it and the instant
    /// of the answer (the election happened before it, at most one poll
    /// and one status call earlier).
    pub async fn new_leader(&self, old: u32, among: &[u32]) -> (u32, Instant) {
        let started = Instant::now();
        loop {
            for &id in among {
                let Some(status) = self.node(id).status().await else {
                    continue;
                };
                let leader = status.leader_id;
                if leader == 0 || leader == old || !among.contains(&leader) {
                    continue;
                }
                let at = Instant::now();
                let confirmed = if leader == id {
                    true
                } else {
                    self.node(leader)
                        .status()
                        .await
                        .is_some_and(|status| status.leader_id == leader)
                };
                if confirmed {
                    return (leader, at);
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no new leader among {among:?} within {PATIENCE:?}:\n{}",
                self.logs(30)
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// A server other than `leader` (the lowest id).
    pub fn a_follower(&self, leader: u32) -> u32 {
        IDS.into_iter()
            .find(|&id| id != leader)
            .expect("three servers")
    }

    /// `host:port,…` of every server, in id order.
    pub fn connect_string(&self) -> String {
        self.connect_string_of(&IDS)
    }

    /// `host:port,…` of the servers `ids`, in that order.
    pub fn connect_string_of(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&id| self.node(id).listen.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The connect string for a client seeded with `seed` that tries server
    /// `first` first: the hosts are placed so that session-core's seeded
    /// shuffle puts `first` at the head of its order.
    pub fn connect_string_first(&self, first: u32, seed: u64) -> String {
        let order = host_order(IDS.len(), seed);
        let mut others = IDS.iter().copied().filter(|&id| id != first);
        let mut hosts = vec![0; IDS.len()];
        for (position, &index) in order.iter().enumerate() {
            hosts[index] = if position == 0 {
                first
            } else {
                others.next().expect("two others")
            };
        }
        self.connect_string_of(&hosts)
    }

    /// The link `from -> to` (the proxy server `from` dials to reach `to`).
    pub fn link(&self, from: u32, to: u32) -> &LinkProxy {
        &self.links[&(from, to)]
    }

    /// Cuts `a` from `b`, both ways.
    pub fn partition(&self, a: u32, b: u32) {
        note(&format!("cut {a} <-> {b}"));
        self.link(a, b).set(Fault::Drop);
        self.link(b, a).set(Fault::Drop);
    }

    /// Cuts `id` from every other server.
    pub fn isolate(&self, id: u32) {
        for other in IDS {
            if other != id {
                self.partition(id, other);
            }
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        note("heal every link");
        for link in self.links.values() {
            link.set(Fault::Pass);
        }
    }

    /// A proxy (on the harness's runtime) in front of server `id`'s client
    /// listener, for tests that cut a client from its server.
    pub fn client_proxy(&self, id: u32) -> LinkProxy {
        LinkProxy::start(&self.proxies, self.node(id).listen)
    }

    /// SIGKILLs server `id`; returns the instant just before the signal.
    pub fn kill(&mut self, id: u32) -> Instant {
        note(&format!("SIGKILL server {id}"));
        let at = Instant::now();
        self.node_mut(id).kill();
        at
    }

    /// Starts server `id` again on its data directory and addresses.
    pub fn restart(&mut self, id: u32) {
        note(&format!("restart server {id}"));
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "server {id} still runs");
        node.spawn();
    }

    /// The tail of every server's log, for a failure message, with a word
    /// on each server that exited without the test killing it (a stray
    /// SIGTERM on a shared machine shows here as "exit status: 0" and a
    /// "shutting down" line).
    pub fn logs(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|node| {
                // Not reaped: an exited child is a zombie ("Z") in /proc.
                let exited = node.child.as_ref().is_some_and(|child| {
                    std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                        .map_or(true, |stat| stat.contains(") Z "))
                });
                let exited = if exited {
                    " (EXITED: not killed by the test)"
                } else {
                    ""
                };
                format!(
                    "--- server {}{exited} ---\n{}",
                    node.id,
                    node.log_tail(lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Prints what the test does to the cluster with the UTC time of day, to
/// read beside the servers' logs.
pub fn note(what: &str) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = since_epoch.as_millis() % 86_400_000;
    eprintln!(
        "[{:02}:{:02}:{:02}.{:03}Z] {what}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}

/// Whether the server at `addr` grants a new session now (closed again at
/// once). Any failure (refused connection, refusal, close) is a no.
async fn grants(addr: SocketAddr) -> bool {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut framed = Framed::new(stream, ClientCodec::new());
        framed
            .send(ClientMessage::from(new_session(T)))
            .await
            .ok()?;
        let message = framed.next().await?.ok()?;
        let Some(server_message::Kind::HandshakeReply(reply)) = message.kind else {
            return Some(false);
        };
        let granted = granted_session(&reply).is_some();
        if granted {
            let _ = framed
                .send(ClientMessage::from(wire::CloseSession {}))
                .await;
            let _ = framed.next().await;
        }
        Some(granted)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The order in which a session-core client seeded with `seed` tries
/// `hosts` hosts (indices into its connect string).
pub fn host_order(hosts: usize, seed: u64) -> Vec<usize> {
    let config = ClientConfig {
        hosts: std::num::NonZeroUsize::new(hosts).expect("at least one host"),
        session_timeout: T,
        rng_seed: seed,
    };
    ClientSession::new(config, std::time::Instant::now())
        .host_order()
        .to_vec()
}

// ---------------------------------------------------------------------------
// Clients whose state changes are recorded.

/// A session-client client and every state change it reported, each with
/// the instant the recorder saw it (a moment after the client's own: the
/// recorded times are upper bounds).
#[derive(Debug)]
pub struct Tracked {
    pub client: Client,
    /// The server it was first connected to.
    pub home: u32,
    changes: Arc<Mutex<Vec<(State, Instant)>>>,
    recorder: tokio::task::JoinHandle<()>,
}

impl Tracked {
    /// Connects with the session timeout [`T`], trying server `home` first.
    pub async fn connect(cluster: &Cluster, home: u32, seed: u64) -> Tracked {
        let servers = cluster.connect_string_first(home, seed);
        let client = Client::builder()
            .servers(&servers)
            .session_timeout(T)
            .connect_timeout(PATIENCE)
            .rng_seed(seed)
            .connect()
            .await
            .unwrap_or_else(|err| panic!("connect to {servers}: {err}"));
        assert_eq!(
            client.server(),
            Some(cluster.node(home).listen),
            "a client seeded to try server {home} first is connected to it"
        );
        Tracked::track(client, home)
    }

    /// The server the client is (or was last) connected to.
    pub fn server(&self, cluster: &Cluster) -> Option<u32> {
        let addr = self.client.server()?;
        IDS.into_iter().find(|&id| cluster.node(id).listen == addr)
    }

    /// Starts recording the state changes of `client`.
    pub fn track(client: Client, home: u32) -> Tracked {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let mut events = client.events();
        let recorder = {
            let changes = Arc::clone(&changes);
            tokio::spawn(async move {
                while let Some(state) = events.next().await {
                    let at = Instant::now();
                    changes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((state, at));
                }
            })
        };
        Tracked {
            client,
            home,
            changes,
            recorder,
        }
    }

    /// Every state change recorded so far.
    pub fn changes(&self) -> Vec<(State, Instant)> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The state changes recorded at or after `since`.
    pub fn changes_since(&self, since: Instant) -> Vec<(State, Instant)> {
        self.changes()
            .into_iter()
            .filter(|(_, at)| *at >= since)
            .collect()
    }

    pub fn state(&self) -> State {
        *self.client.state().borrow()
    }

    /// How long after `since` the client was Connected again: `Some(ZERO)`
    /// when it never left Connected, `None` when it is not Connected now.
    pub fn back_after(&self, since: Instant) -> Option<Duration> {
        if self.state() != State::Connected {
            return None;
        }
        let changes = self.changes_since(since);
        match changes.last() {
            None => Some(Duration::ZERO),
            Some((State::Connected, at)) => Some(*at - since),
            Some(_) => None,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.recorder.abort();
    }
}

/// Waits until `done` holds or `deadline` passes, polling every [`POLL`];
/// returns whether it held.
pub async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------
// Reading a server's view with a raw connection.

/// A raw session on one server, for reading its replica.
pub async fn reader(cluster: &Cluster, id: u32) -> Raw {
    let (raw, _) = Raw::open(cluster.node(id).listen, T).await;
    raw
}

/// The children of `path` as server `id` has them, read through `raw`.
pub async fn children(raw: &mut Raw, path: &str) -> Vec<String> {
    let mut names = raw.children(path, false).await.expect("children");
    names.sort();
    names
}

/// Keeps a raw session alive for `total`, pinging every T/3.
pub async fn keep_alive(raw: &mut Raw, total: Duration) {
    let until = Instant::now() + total;
    while Instant::now() < until {
        sleep((T / 3).min(until - Instant::now())).await;
        raw.ping().await;
    }
}

/// The positive outcome of a handshake, if any.
pub fn granted_session(reply: &wire::HandshakeReply) -> Option<&wire::SessionGranted> {
    match &reply.outcome {
        Some(handshake_reply::Outcome::Granted(granted)) => Some(granted),
        _ => None,
    }
}

/// The refusal reason of a handshake, if refused.
pub fn refusal(reply: &wire::HandshakeReply) -> Option<wire::RefusalReason> {
    match &reply.outcome {
        Some(handshake_reply::Outcome::Refused(refused)) => Some(refused.reason()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Many sessions, each holding one ephemeral.

/// How many clients connect at once while [`open_sessions`] runs.
const CONNECTING_AT_ONCE: usize = 50;

/// Opens `count` tracked clients, client `i` seeded with `i` and homed on
/// server `IDS[i % 3]`, each holding the ephemeral `{parent}/s{i}` (whose
/// data is its session id, in hex). `parent` is created first.
pub async fn open_sessions(cluster: &Cluster, parent: &str, count: usize) -> Vec<Tracked> {
    {
        let mut raw = reader(cluster, IDS[0]).await;
        raw.create(parent, b"", wire::NodeKind::Persistent)
            .await
            .unwrap_or_else(|err| panic!("create {parent}: {err:?}"));
    }
    let mut opened: Vec<(usize, Tracked)> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let home = IDS[i % IDS.len()];
            let tracked = Tracked::connect(cluster, home, i as u64).await;
            let id = tracked.client.session_id();
            let path = format!("{parent}/s{i}");
            tracked
                .client
                .create(
                    &path,
                    id.to_string().as_bytes(),
                    session_client::CreateMode::Ephemeral,
                )
                .await
                .unwrap_or_else(|err| panic!("create {path}: {err}"));
            (i, tracked)
        })
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect()
        .await;
    opened.sort_by_key(|(i, _)| *i);
    opened.into_iter().map(|(_, tracked)| tracked).collect()
}

/// Asserts that server `id` holds exactly the ephemerals of `clients`
/// under `parent`, each owned by its client's session.
pub async fn assert_ephemerals(cluster: &Cluster, id: u32, parent: &str, clients: &[Tracked]) {
    let mut raw = reader(cluster, id).await;
    let expected: std::collections::BTreeSet<String> =
        (0..clients.len()).map(|i| format!("s{i}")).collect();
    let found: std::collections::BTreeSet<String> =
        children(&mut raw, parent).await.into_iter().collect();
    let missing: Vec<_> = expected.difference(&found).take(10).collect();
    let extra: Vec<_> = found.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "server {id} under {parent}: {} of {} ephemerals missing (first {missing:?}), extra {extra:?}",
        expected.difference(&found).count(),
        expected.len(),
    );
    for (i, tracked) in clients.iter().enumerate() {
        let path = format!("{parent}/s{i}");
        let stat = raw
            .exists(&path, false)
            .await
            .unwrap_or_else(|| panic!("server {id}: {path} vanished"));
        assert_eq!(
            stat.ephemeral_owner,
            tracked.client.session_id().as_u64(),
            "server {id}: {path} is owned by its session"
        );
    }
}

/// What the clients did after `since`: (how long after `since` each was
/// Connected again, `None` when it is not Connected now).
pub fn back_times(clients: &[Tracked], since: Instant) -> Vec<Option<Duration>> {
    clients.iter().map(|c| c.back_after(since)).collect()
}

/// A summary of the clients whose move took longer than `bound` or that are
/// not Connected, with their recorded state changes since `since`.
pub fn late_clients(clients: &[Tracked], since: Instant, bound: Duration) -> (usize, String) {
    let mut late = 0;
    let mut report = String::new();
    // Back times in 250 ms buckets, and those not back at all.
    let mut buckets = BTreeMap::<u128, usize>::new();
    let mut never = 0;
    for tracked in clients {
        match tracked.back_after(since) {
            Some(back) => *buckets.entry(back.as_millis() / 250 * 250).or_default() += 1,
            None => never += 1,
        }
    }
    report.push_str(&format!(
        "\n  back after (ms bucket: clients): {buckets:?}, not Connected: {never}"
    ));
    for (i, tracked) in clients.iter().enumerate() {
        let back = tracked.back_after(since);
        if back.is_some_and(|back| back <= bound) {
            continue;
        }
        late += 1;
        if late <= 10 {
            let changes: Vec<String> = tracked
                .changes_since(since)
                .iter()
                .map(|(state, at)| format!("{state:?}@{:?}", *at - since))
                .collect();
            report.push_str(&format!(
                "\n  client {i} (home {}): back after {back:?}, now {:?}, changes {changes:?}",
                tracked.home,
                tracked.state()
            ));
        }
    }
    (late, report)
}

/// The largest of the move times (`None` counts as never).
pub fn worst(backs: &[Option<Duration>]) -> Option<Duration> {
    backs.iter().try_fold(Duration::ZERO, |worst, back| {
        back.map(|back| worst.max(back))
    })
}

/// Asserts that every client that was on server `left` is now connected
/// to another server (not `left`, and not one of `dead`).
pub fn assert_moved_off(cluster: &Cluster, clients: &[Tracked], left: u32, dead: &[u32]) {
    for (i, tracked) in clients.iter().enumerate() {
        if tracked.home != left {
            continue;
        }
        let now = tracked.server(cluster);
        assert!(
            now.is_some_and(|id| id != left && !dead.contains(&id)),
            "client {i} of server {left} is now on {now:?}"
        );
    }
}

/// The ids other than `id`.
pub fn others(id: u32) -> Vec<u32> {
    IDS.into_iter().filter(|&other| other != id).collect()
}

// ---------------------------------------------------------------------------
// Observing a server that may drop its clients (while it has no leader).

/// A new session on the server at `addr`, or `None` when the connection is
/// refused, the handshake refused, or no reply comes within 2 s.
pub async fn open_raw(addr: SocketAddr) -> Option<Raw> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut raw = Raw::from_stream(stream);
    raw.framed
        .send(ClientMessage::from(new_session(T)))
        .await
        .ok()?;
    let message = tokio::time::timeout(Duration::from_secs(2), raw.framed.next())
        .await
        .ok()??
        .ok()?;
    match message.kind {
        Some(server_message::Kind::HandshakeReply(reply)) if granted_session(&reply).is_some() => {
            Some(raw)
        }
        _ => None,
    }
}

/// Reads one server's replica through a raw session, opening a new one
/// whenever the server closed the last (it does while it has no leader).
pub struct Observer {
    pub id: u32,
    addr: SocketAddr,
    raw: Option<Raw>,
}

impl Observer {
    pub fn new(cluster: &Cluster, id: u32) -> Observer {
        Observer {
            id,
            addr: cluster.node(id).listen,
            raw: None,
        }
    }

    /// Whether `path` exists on the server now; `None` when the server
    /// cannot be asked now.
    pub async fn exists(&mut self, path: &str) -> Option<bool> {
        let op = wire::request::Op::Exists(wire::Exists {
            path: path.to_owned(),
            watch: false,
        });
        match self.reply(op).await? {
            wire::reply::Result::Exists(exists) => Some(exists.stat.is_some()),
            _ => None,
        }
    }

    /// The sorted children of `path`; `None` when the server cannot be
    /// asked now.
    pub async fn children(&mut self, path: &str) -> Option<Vec<String>> {
        let op = wire::request::Op::GetChildren(wire::GetChildren {
            path: path.to_owned(),
            watch: false,
        });
        match self.reply(op).await? {
            wire::reply::Result::GetChildren(result) => {
                let mut names = result.children;
                names.sort();
                Some(names)
            }
            _ => None,
        }
    }

    async fn reply(&mut self, op: wire::request::Op) -> Option<wire::reply::Result> {
        if self.raw.is_none() {
            self.raw = open_raw(self.addr).await;
        }
        let raw = self.raw.as_mut()?;
        let result = raw.try_reply(op).await.and_then(|reply| reply.result);
        if result.is_none() {
            self.raw = None;
        }
        result
    }
}
