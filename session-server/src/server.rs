//! The running server: listeners, the shared state, the expirer and the reaper.
//!
//! Threads and tasks, and what each owns:
//! - an accept loop per client listener (v1, and ZooKeeper's protocol unless
//!   turned off) admits connections within the limits, shared by both, and
//!   spawns one task per connection ([`crate::connection`], speaking the
//!   protocol of that listener's [`Frontend`]);
//! - the expirer task wakes at every tick boundary, takes the due buckets from
//!   the local liveness table (which marks those sessions closing) and sends
//!   their ids over a crossbeam channel to
//! - the reaper thread, which proposes their closes through the
//!   [`Engine`](crate::engine::Engine), those that expired together at once
//!   (so they share log entries); applying a close deletes the ephemerals,
//!   fires watches and tells the session's connection.
//!
//! No lock is ever held across an `.await`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use session_core::{
    Context, Id, Liveness, Op, OwnerId, PasswordSecret, Replica, ServerId, SessionId, WatchEvent,
    initial_session_id,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{ServerConfig, Storage};
use crate::engine::{Engine, LocalEngine};
use crate::frontend::v1::V1;
use crate::frontend::zookeeper::ZooKeeper;
use crate::frontend::{Code, Frontend, OpError, OpResult};
use crate::metrics::{CloseReason, Metrics};
use crate::raft::{ClusterSettings, RaftEngine, Timing};
use crate::state::StateMachine;
use crate::tls::{Tls, TlsError};
use crate::transport::Socket;

/// A running server. Dropping it without [`Server::shutdown`] aborts its tasks.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    zookeeper_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    reaper: Option<JoinHandle<()>>,
}

/// Something a connection is told from outside its own request loop.
///
/// Payloads are boxed, so a notice is two words whatever it carries.
#[derive(Debug)]
pub(crate) enum Notice {
    /// A watch the session had set has fired.
    Watch(Box<WatchEvent>),
    /// The connection must say why and close: the session moved, expired or
    /// was closed elsewhere.
    Disconnect(Box<(Code, String)>),
    /// The answer to a read that waited for the connection's writes before
    /// it to be applied ([`StateMachine::read_after`](crate::state::StateMachine::read_after)).
    Read(Box<ReadAnswer>),
}

/// A read's answer, as the replica gave it.
#[derive(Debug)]
pub(crate) struct ReadAnswer {
    pub(crate) xid: i32,
    /// The zxid the answer reflects.
    pub(crate) zxid: u64,
    pub(crate) result: Result<OpResult, OpError>,
}

/// How to reach the connection that currently holds a session: its
/// mailbox, which also says whose it is. A pointer, so the connections map
/// takes little room a session (it took 177 bytes a session at 15,000 when
/// the handle held the owner, the address and the client itself).
#[derive(Debug)]
pub(crate) struct ConnectionHandle {
    pub(crate) mailbox: crate::mailbox::Sender,
}

impl ConnectionHandle {
    /// The connection.
    pub(crate) fn owner(&self) -> OwnerId {
        self.mailbox.holder().owner
    }

    /// Its peer's address.
    pub(crate) fn remote(&self) -> SocketAddr {
        self.mailbox.holder().remote
    }

    /// The client's name and version from its handshake.
    pub(crate) fn client(&self) -> &str {
        &self.mailbox.holder().client
    }
}

/// A session life-cycle event, for the admin's `WatchSessionEvents`.
#[derive(Debug, Clone)]
pub(crate) struct SessionEvent {
    pub(crate) id: SessionId,
    pub(crate) kind: SessionEventKind,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) timeout_ms: u32,
    pub(crate) zxid: u64,
}

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEventKind {
    Created,
    Reattached,
    Expired,
    Closed,
}

/// Work for the reaper thread.
#[derive(Debug)]
enum Reap {
    /// Close this session, which expired (or was expired by the admin) and
    /// is already marked closing in the liveness table.
    Expired(SessionId),
    /// The server is shutting down. (The reaper holds `Shared`, and with it
    /// the channel's sender, so it cannot wait for the channel to close.)
    Stop,
}

/// What every task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// The replica, the watches, liveness and the connections by session.
    pub(crate) machine: Arc<StateMachine>,
    /// Orders and applies every write.
    pub(crate) engine: Box<dyn Engine>,
    per_ip: DashMap<IpAddr, PerIp>,
    open_connections: AtomicUsize,
    next_owner: AtomicU64,
    pub(crate) metrics: Arc<Metrics>,
    reaper: crossbeam_channel::Sender<Reap>,
    pub(crate) session_events: broadcast::Sender<SessionEvent>,
    pub(crate) started: Instant,
    /// The certificates, when the listeners speak TLS.
    pub(crate) tls: Option<Arc<Tls>>,
}

impl Shared {
    /// A fresh owner id for a new connection.
    pub(crate) fn next_owner(&self) -> OwnerId {
        OwnerId::new(self.next_owner.fetch_add(1, Ordering::Relaxed))
    }

    /// What `prepare` needs from outside the replica: this server, its
    /// policy and limits, and the wall clock now.
    pub(crate) fn context(&self) -> Context<'_> {
        Context {
            server: self.config.server_id,
            policy: &self.config.timeouts,
            limits: &self.config.limits.tree,
            wall_ms: wall_clock_ms(),
            auth: &[],
        }
    }

    /// Marks `id` closing and queues it for the reaper; for the admin's expire.
    /// Returns whether the session was open.
    pub(crate) fn expire_now(&self, id: SessionId) -> bool {
        let marked = self.machine.liveness().mark_closing(id);
        if marked {
            let _ = self.reaper.send(Reap::Expired(id));
        }
        marked
    }

    /// Tells the admin's `WatchSessionEvents` subscribers; having none is the
    /// common case, not an error.
    pub(crate) fn publish(&self, event: SessionEvent) {
        let _ = self.session_events.send(event);
    }

    /// Admits a connection from `ip` within the limits, or says which is full.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, CloseReason> {
        let limits = &self.config.limits;
        let open = self.open_connections.fetch_add(1, Ordering::AcqRel);
        if open >= limits.max_connections {
            self.open_connections.fetch_sub(1, Ordering::AcqRel);
            return Err(CloseReason::too_many_connections);
        }
        let mut per_ip = self.per_ip.entry(ip).or_insert_with(|| PerIp {
            connections: 0,
            ids: Arc::from([Id::ip(ip)]),
        });
        if per_ip.connections >= limits.max_connections_per_ip {
            drop(per_ip);
            self.open_connections.fetch_sub(1, Ordering::AcqRel);
            return Err(CloseReason::too_many_connections_per_ip);
        }
        per_ip.connections += 1;
        let ids = Arc::clone(&per_ip.ids);
        drop(per_ip);
        self.metrics.connections.inc();
        Ok(Admission {
            shared: Arc::clone(self),
            ip,
            ids,
        })
    }
}

/// The connections open from one address, and the ids a connection from
/// it starts with (`ip:<address>`), shared by all of them.
#[derive(Debug)]
struct PerIp {
    connections: usize,
    ids: Arc<[Id]>,
}

/// A connection slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Admission {
    shared: Arc<Shared>,
    ip: IpAddr,
    ids: Arc<[Id]>,
}

impl Admission {
    /// The ids a connection from this address starts with (one allocation
    /// per address, not per connection).
    pub(crate) fn ids(&self) -> Arc<[Id]> {
        Arc::clone(&self.ids)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.open_connections.fetch_sub(1, Ordering::AcqRel);
        self.shared.metrics.connections.dec();
        if let dashmap::Entry::Occupied(mut entry) = self.shared.per_ip.entry(self.ip) {
            entry.get_mut().connections -= 1;
            if entry.get().connections == 0 {
                entry.remove();
            }
        }
    }
}

/// Milliseconds since the Unix epoch, for ctime/mtime and event timestamps.
pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

impl Server {
    /// Binds every listener and starts serving.
    ///
    /// Must be called within a tokio runtime (multi-threaded or not).
    pub async fn start(config: ServerConfig) -> std::io::Result<Server> {
        config
            .check()
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
        let metrics = Arc::new(Metrics::new());
        let tls = match &config.tls {
            Some(tls) => Some(
                Tls::load(tls, Arc::clone(&metrics))
                    .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?,
            ),
            None => None,
        };
        let admin_token = match &config.admin_token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let zk_listener = match config.zk_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!(
                        "cannot listen for ZooKeeper clients on {addr}: {err} \
                         (choose another address with --zk-listen ADDR, or --zk-listen off)"
                    ),
                )
            })?),
            None => None,
        };
        let zookeeper_addr = zk_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let admin_listener = match config.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let metrics_addr = metrics_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;

        let started = Instant::now();
        let liveness = Liveness::new(config.timeouts.tick(), started.into_std())
            .map_err(std::io::Error::other)?;
        let mut peer_addr = None;
        let (machine, engine): (Arc<StateMachine>, Box<dyn Engine>) = match &config.storage {
            Storage::InMemory => {
                info!(
                    "state in memory only (--in-memory): a restart forgets every session and node"
                );
                let replica = Replica::new(random_secret()?, first_session_id(config.server_id)?);
                let machine = Arc::new(StateMachine::new(
                    config.server_id,
                    replica,
                    liveness,
                    Arc::clone(&metrics),
                    config.limits.clone(),
                ));
                let engine = Box::new(LocalEngine::new(Arc::clone(&machine)));
                (machine, engine)
            }
            Storage::Disk(dir) => {
                let machine = Arc::new(StateMachine::new(
                    config.server_id,
                    Replica::uninitialized(),
                    liveness,
                    Arc::clone(&metrics),
                    config.limits.clone(),
                ));
                let cluster = &config.cluster;
                let settings = ClusterSettings {
                    routes: cluster
                        .peers
                        .iter()
                        .map(|(id, address)| (u64::from(id.get()), address.clone()))
                        .collect(),
                    peer_listen: cluster
                        .peer_listen_addr(config.server_id)
                        .map_err(std::io::Error::other)?,
                    timing: Timing {
                        heartbeat: cluster.heartbeat,
                        election_timeout: cluster.election_timeout,
                        report_every: config.timeouts.tick(),
                    },
                    tls: tls.clone(),
                };
                let engine = RaftEngine::start(
                    dir,
                    config.server_id,
                    config.snapshot_every,
                    Arc::clone(&machine),
                    settings,
                )
                .await
                .map_err(std::io::Error::other)?;
                peer_addr = engine.peer_addr();
                info!(
                    data_dir = %dir.display(),
                    zxid = machine.zxid(),
                    sessions = machine.state().replica.session_count(),
                    "state loaded from disk"
                );
                (machine, Box::new(engine))
            }
        };
        // Every session held gets a full timeout from now, when the server
        // is ready: none expires for the time the server was down.
        machine.refresh_liveness(Instant::now().into_std());
        let (reaper_tx, reaper_rx) = crossbeam_channel::unbounded();
        let (session_events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            config: config.clone(),
            engine,
            machine,
            per_ip: DashMap::new(),
            open_connections: AtomicUsize::new(0),
            next_owner: AtomicU64::new(1),
            metrics,
            reaper: reaper_tx,
            session_events,
            started,
            tls: tls.clone(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let max_frame = config.limits.max_frame_bytes;
        let server_id = u32::from(config.server_id.get());
        tasks.spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            shutdown_rx.clone(),
            move || V1::new(max_frame, server_id),
        ));
        if let Some(listener) = zk_listener {
            tasks.spawn(accept_loop(
                listener,
                Arc::clone(&shared),
                shutdown_rx.clone(),
                move || ZooKeeper::new(max_frame),
            ));
        }
        if let Some(tls) = &tls {
            tasks.spawn(Arc::clone(tls).watch_files(shutdown_rx.clone()));
        }
        tasks.spawn(expirer(Arc::clone(&shared), shutdown_rx.clone()));
        tasks.spawn(node_reaper(Arc::clone(&shared), shutdown_rx.clone()));
        if let Some(listener) = admin_listener {
            tasks.spawn(crate::admin::serve(
                listener,
                Arc::clone(&shared),
                admin_token,
                shutdown_rx.clone(),
            ));
        }
        if let Some(listener) = metrics_listener {
            let metrics = Arc::clone(&shared.metrics);
            let shutdown = shutdown_rx.clone();
            tasks.spawn(async move {
                if let Err(err) = crate::metrics::serve(listener, metrics, shutdown).await {
                    warn!(error = %err, "metrics endpoint stopped");
                }
            });
        }
        let reaper = {
            let shared = Arc::clone(&shared);
            let runtime = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name("session-reaper".into())
                .spawn(move || reaper(&shared, &runtime, &reaper_rx))?
        };
        info!(
            listen = %local_addr,
            zookeeper = ?zookeeper_addr,
            admin = ?admin_addr,
            metrics = ?metrics_addr.map(|addr| format!("http://{addr}/metrics")),
            peer = ?peer_addr,
            tls = tls.is_some(),
            server_id = config.server_id.get(),
            tick_ms = config.timeouts.tick().as_millis() as u64,
            min_timeout_ms = config.timeouts.min().as_millis() as u64,
            max_timeout_ms = config.timeouts.max().as_millis() as u64,
            "session server started"
        );
        Ok(Server {
            shared,
            local_addr,
            zookeeper_addr,
            admin_addr,
            metrics_addr,
            peer_addr,
            shutdown,
            tasks,
            reaper: Some(reaper),
        })
    }

    /// The client protocol address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The ZooKeeper client protocol address (with the real port when 0 was
    /// asked for), if enabled.
    pub fn zookeeper_addr(&self) -> Option<SocketAddr> {
        self.zookeeper_addr
    }

    /// The admin gRPC address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The metrics address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The peer (Raft) listener's address, if the server has one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// Reads the TLS certificate and key files again and uses them for new
    /// connections (client, admin and peer); connections already open keep
    /// theirs. When a file is missing or invalid, or a key is not its
    /// certificate's, the error says which, and the certificates in use
    /// stay. The server also does this by itself when the files change;
    /// the binary does it on SIGHUP. Without TLS, does nothing.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.shared.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Sessions held right now.
    pub fn session_count(&self) -> usize {
        self.shared.machine.state().replica.session_count()
    }

    /// Nodes in the namespace right now, the root included.
    pub fn node_count(&self) -> usize {
        self.shared.machine.state().replica.tree().node_count()
    }

    #[cfg(test)]
    pub(crate) fn shared_for_tests(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Watches registered right now, over all sessions.
    pub fn watch_count(&self) -> usize {
        self.shared.machine.state().watches.len()
    }

    /// The metrics, as the `/metrics` endpoint shows them.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops accepting, tells every connected client the server is shutting
    /// down and closes their connections. Returns within the configured
    /// [`shutdown_grace`](ServerConfig::shutdown_grace) whatever the clients
    /// do: connections still open then (a peer that reads nothing) are
    /// dropped.
    pub async fn shutdown(mut self) {
        let grace = self.shared.config.shutdown_grace;
        info!(
            grace_ms = grace.as_millis() as u64,
            "session server shutting down"
        );
        let _ = self.shutdown.send(true);
        // Connections serving a session hear it in their mailbox; one that
        // registers meanwhile sees the flag (see `connection::run`).
        std::sync::atomic::fence(Ordering::SeqCst);
        for connection in self.shared.machine.connections.iter() {
            connection.mailbox.send(Notice::Disconnect(Box::new(
                crate::connection::shutting_down(),
            )));
        }
        let joined = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            warn!(
                grace_ms = grace.as_millis() as u64,
                "connections still open after the shutdown grace period: dropping them"
            );
            // Aborting the accept loop drops its JoinSet, which aborts every
            // connection task it holds.
            self.tasks.shutdown().await;
        }
        let _ = self.shared.reaper.send(Reap::Stop);
        if let Some(reaper) = self.reaper.take() {
            let _ = tokio::task::spawn_blocking(move || reaper.join()).await;
        }
        self.shared.engine.shutdown().await;
        info!("session server stopped");
    }
}

/// The first session id of a new state: from the wall clock, so it stays
/// above every id an earlier run (or a lost data directory) of this server id
/// handed out.
pub(crate) fn first_session_id(server: ServerId) -> std::io::Result<SessionId> {
    initial_session_id(server, u64::try_from(wall_clock_ms()).unwrap_or(0), None)
        .ok_or_else(|| std::io::Error::other(format!("server id {server} has no session ids left")))
}

/// The admin's bearer token from `path`: its content without surrounding
/// white space, which must not be empty.
fn read_token(path: &std::path::Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot read the admin token file {}: {err}", path.display()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the admin token file {} is empty", path.display()),
        ));
    }
    Ok(token.to_owned())
}

/// A fresh password secret from the operating system's generator.
pub(crate) fn random_secret() -> std::io::Result<PasswordSecret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    PasswordSecret::new(&bytes).map_err(std::io::Error::other)
}

/// Resolves once shutdown has begun. (The guard `wait_for` returns is not
/// `Send`, so it must not outlive this function.)
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Accepts connections on `listener` and serves each with a frontend from
/// `frontend`, until shutdown.
async fn accept_loop<F: Frontend>(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    frontend: impl Fn() -> F + Send + 'static,
) {
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let stream = match &shared.tls {
                        None => Socket::Plain(stream),
                        Some(tls) => match Socket::tls(stream, Arc::clone(&tls.current().clients)) {
                            Ok(socket) => socket,
                            Err(err) => {
                                warn!(%remote, error = %err, "cannot start TLS");
                                continue;
                            }
                        },
                    };
                    let shared = Arc::clone(&shared);
                    let shutdown = shutdown.clone();
                    connections.spawn(crate::connection::run(shared, stream, remote, frontend(), shutdown));
                }
                Err(err) => {
                    // Out of file descriptors and the like: keep serving the
                    // connections we have and try again shortly.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Wakes at every tick boundary and hands the due sessions to the reaper.
async fn expirer(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let tick = shared.config.timeouts.tick();
    // Buckets end on multiples of the tick from the liveness table's origin,
    // so waking exactly then expires each session at the end of its bucket,
    // not later.
    let mut ticks = tokio::time::interval_at(shared.started + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => return,
            _ = ticks.tick() => {}
        }
        // Only the leader expires sessions (a single server always leads).
        if shared.machine.role() != crate::state::Role::Leading {
            continue;
        }
        let now = Instant::now().into_std();
        let due = shared.machine.liveness().poll_expired(now);
        for id in due {
            if shared.reaper.send(Reap::Expired(id)).is_err() {
                return;
            }
        }
    }
}

/// The most containers and TTL nodes deleted in one sweep (ZooKeeper's
/// `znode.container.maxPerMinute` default).
const MAX_NODES_REAPED_AT_ONCE: usize = 10_000;

/// Every `reap_interval`, on the leader (or a server on its own): deletes
/// the containers left without children and the TTL nodes past their TTL
/// (ZooKeeper's `ContainerManager`). Each delete is checked again when
/// applied, against the clock of the server that proposed it, so a node
/// given a child or modified meanwhile stays.
async fn node_reaper(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let interval = shared.config.reap_interval;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => return,
            _ = ticks.tick() => {}
        }
        if shared.machine.role() != crate::state::Role::Leading {
            continue;
        }
        let context = shared.context();
        let due = shared
            .machine
            .state()
            .replica
            .tree()
            .expired_nodes(context.wall_ms, MAX_NODES_REAPED_AT_ONCE);
        if due.is_empty() {
            continue;
        }
        let proposals: Vec<_> = due
            .into_iter()
            .filter_map(|path| {
                let op = Op::DeleteReapable { path: path.clone() };
                match shared.machine.prepare(op, &context) {
                    Ok(Some(txn)) => Some((path, shared.engine.propose(txn))),
                    _ => None,
                }
            })
            .collect();
        let (paths, waits): (Vec<_>, Vec<_>) = proposals.into_iter().unzip();
        let results = futures_util::future::join_all(waits).await;
        let mut deleted = 0;
        for (path, result) in paths.iter().zip(results) {
            match result.map(|applied| applied.result) {
                Ok(Ok(_)) => deleted += 1,
                Ok(Err(err)) => debug!(path, error = %err, "a container or TTL node stays"),
                Err(err) => warn!(path, error = %err, "could not delete a container or TTL node"),
            }
        }
        if deleted > 0 {
            info!(deleted, "deleted empty containers and expired TTL nodes");
        }
    }
}

/// How long the reaper waits before it proposes again a close that failed
/// (etcd retries an unapplied lease revoke after 3 s).
const RETRY_CLOSE: Duration = Duration::from_secs(1);
/// The most closes the reaper proposes at once.
const MAX_CLOSES_AT_ONCE: usize = 10_000;

/// Proposes the closes of expired sessions. Runs on its own thread so an
/// expiry storm does not delay the runtime's workers. The sessions that
/// expired together are proposed together, without waiting for each, so
/// their closes share log entries (and fsyncs); applying a close deletes the
/// ephemerals, fires watches and tells the connection.
///
/// A close that fails (no quorum for a moment, a disk refusing writes) is
/// proposed again every [`RETRY_CLOSE`] while this server runs expiry and
/// the session is still marked closing here (a new leader reopens it and
/// expires it itself).
fn reaper(
    shared: &Shared,
    runtime: &tokio::runtime::Handle,
    due: &crossbeam_channel::Receiver<Reap>,
) {
    let mut failed: Vec<SessionId> = Vec::new();
    loop {
        let next = if failed.is_empty() {
            due.recv()
                .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected)
        } else {
            due.recv_timeout(RETRY_CLOSE)
        };
        let (mut batch, retrying) = match next {
            Ok(Reap::Expired(id)) => (vec![id], false),
            Ok(Reap::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if shared.machine.role() != crate::state::Role::Leading {
                    continue;
                }
                // Those closed meanwhile, or reopened by a change of leader,
                // are done with.
                let liveness = shared.machine.liveness();
                let retry: Vec<SessionId> = std::mem::take(&mut failed)
                    .into_iter()
                    .filter(|id| liveness.is_closing(*id))
                    .collect();
                drop(liveness);
                (retry, true)
            }
        };
        let mut stop = false;
        while batch.len() < MAX_CLOSES_AT_ONCE {
            match due.try_recv() {
                Ok(Reap::Expired(id)) => batch.push(id),
                Ok(Reap::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        failed.extend(close_expired(shared, runtime, batch, retrying));
        if stop {
            return;
        }
    }
}

/// Proposes the closes of expired sessions `ids`, all at once, and waits for
/// them; returns those that could not be ordered (to be tried again).
fn close_expired(
    shared: &Shared,
    runtime: &tokio::runtime::Handle,
    ids: Vec<SessionId>,
    retrying: bool,
) -> Vec<SessionId> {
    let proposed: Vec<_> = ids
        .into_iter()
        .filter_map(|id| {
            let txn = match shared
                .machine
                .prepare(Op::CloseSession { id }, &shared.context())
            {
                Ok(Some(txn)) => txn,
                // Closed by its client between expiry and now: nothing to do.
                Ok(None) | Err(_) => return None,
            };
            let remote = shared
                .machine
                .connections
                .get(&id)
                .map(|connection| connection.remote());
            Some((id, remote, shared.engine.propose(txn)))
        })
        .collect();
    let (ids, waits): (Vec<_>, Vec<_>) = proposed
        .into_iter()
        .map(|(id, remote, applied)| ((id, remote), applied))
        .unzip();
    let results = runtime.block_on(futures_util::future::join_all(waits));
    let mut failed = Vec::new();
    for ((id, remote), result) in ids.into_iter().zip(results) {
        let applied = match result {
            Ok(applied) => applied,
            Err(err) => {
                if retrying {
                    debug!(session = %id, error = %err, "could not close an expired session, again");
                } else {
                    warn!(session = %id, error = %err,
                        "could not close an expired session; trying again while this server runs expiry");
                }
                failed.push(id);
                continue;
            }
        };
        let Ok(session_core::Outcome::SessionClosed { ephemerals, .. }) = applied.result else {
            continue;
        };
        shared.metrics.sessions_expired.inc();
        shared.publish(SessionEvent {
            id,
            kind: SessionEventKind::Expired,
            remote,
            timeout_ms: 0,
            zxid: applied.zxid,
        });
        info!(session = %id, remote = ?remote, ephemerals_deleted = ephemerals.len(),
            "session expired");
    }
    failed
}
