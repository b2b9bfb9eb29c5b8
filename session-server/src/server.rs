//! The running server: listeners, the shared state, the expirer and the reaper.
//!
//! Threads and tasks, and what each owns:
//! - the accept loop admits connections within the limits and spawns one task
//!   per connection ([`crate::connection`]);
//! - the expirer task wakes at every tick boundary, takes the due buckets from
//!   the tracker (which marks those sessions closing) and sends their ids over a
//!   crossbeam channel to
//! - the reaper thread, which applies each close (ephemerals deleted, watches
//!   fired) and tells the session's connection, found by id in a `DashMap`.
//!
//! The state lock is a plain mutex that is never held across an `.await`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use session_core::{IdGenerator, OwnerId, PasswordSecret, SessionId, SessionTracker};
use session_wire::v1::{Disconnect, ErrorCode, WatchEvent as WireWatchEvent};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::metrics::{CloseReason, Metrics};
use crate::namespace::WatchEvent;
use crate::state::{Applied, Command, Outcome, State};

/// A running server. Dropping it without [`Server::shutdown`] aborts its tasks.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    reaper: Option<JoinHandle<()>>,
}

/// Something a connection is told from outside its own request loop.
///
/// Payloads are boxed: every connection's mailbox allocates a block of slots
/// up front, so a small `Notice` keeps idle connections small.
#[derive(Debug)]
pub(crate) enum Notice {
    /// A watch the session had set has fired.
    Watch(Box<WireWatchEvent>),
    /// The connection must say why and close: the session moved or expired.
    Disconnect(Box<Disconnect>, CloseReason),
}

/// How to reach the connection that currently holds a session.
#[derive(Debug)]
pub(crate) struct ConnectionHandle {
    pub(crate) owner: OwnerId,
    pub(crate) remote: SocketAddr,
    /// The client's name and version from its handshake, for the admin.
    pub(crate) client: String,
    pub(crate) mailbox: mpsc::UnboundedSender<Notice>,
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
    /// Close this session, which expired (or was expired by the admin) at
    /// this instant and is already marked closing.
    Expired(SessionId, std::time::Instant),
    /// The server is shutting down. (The reaper holds `Shared`, and with it
    /// the channel's sender, so it cannot wait for the channel to close.)
    Stop,
}

/// What every task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    state: Mutex<State>,
    /// Live connections by session id: the reaper and watch delivery find a
    /// session's connection here without scanning (ZOOKEEPER-1669).
    pub(crate) connections: DashMap<SessionId, ConnectionHandle>,
    per_ip: DashMap<IpAddr, usize>,
    open_connections: AtomicUsize,
    next_owner: AtomicU64,
    pub(crate) metrics: Arc<Metrics>,
    reaper: crossbeam_channel::Sender<Reap>,
    pub(crate) session_events: broadcast::Sender<SessionEvent>,
    pub(crate) started: Instant,
}

impl Shared {
    /// The state, locked. Never hold the guard across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; the state it left
        // is still the best there is, so keep serving rather than poison all.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh owner id for a new connection.
    pub(crate) fn next_owner(&self) -> OwnerId {
        OwnerId::new(self.next_owner.fetch_add(1, Ordering::Relaxed))
    }

    /// Applies `command` and delivers the watches it fired while the state is
    /// still locked, so a watch event always reaches its connection before any
    /// reply that reflects the change.
    pub(crate) fn apply(
        &self,
        state: &mut State,
        command: Command,
        now: Instant,
    ) -> Result<Applied, crate::state::ApplyError> {
        let applied = state.apply(command, now.into_std(), wall_clock_ms())?;
        self.deliver(&applied.fired);
        // Derived from the tracker here, where every session change passes.
        self.metrics
            .sessions
            .set(i64::try_from(state.tracker().len()).unwrap_or(i64::MAX));
        Ok(applied)
    }

    /// Hands fired watch events to the connections of their sessions. A
    /// session without a connection loses the event; it re-registers its
    /// watches with its last zxid when it reattaches and is told then.
    pub(crate) fn deliver(&self, fired: &[(SessionId, WatchEvent)]) {
        for (session, event) in fired {
            if let Some(connection) = self.connections.get(session) {
                let event = Box::new(crate::convert::watch_event(event));
                let _ = connection.mailbox.send(Notice::Watch(event));
            }
        }
    }

    /// Marks `id` closing and queues it for the reaper; for the admin's expire.
    /// Returns whether the session existed.
    pub(crate) fn expire_now(&self, id: SessionId) -> bool {
        let marked = self.state().mark_closing(id);
        if marked {
            let _ = self
                .reaper
                .send(Reap::Expired(id, Instant::now().into_std()));
        }
        marked
    }

    /// Tells the admin's `WatchSessionEvents` subscribers; having none is the
    /// common case, not an error.
    pub(crate) fn publish(&self, event: SessionEvent) {
        let _ = self.session_events.send(event);
    }

    /// Admits a connection from `ip` within the limits, or says which is full.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Admission<'_>, CloseReason> {
        let limits = &self.config.limits;
        let open = self.open_connections.fetch_add(1, Ordering::AcqRel);
        if open >= limits.max_connections {
            self.open_connections.fetch_sub(1, Ordering::AcqRel);
            return Err(CloseReason::too_many_connections);
        }
        let mut per_ip = self.per_ip.entry(ip).or_insert(0);
        if *per_ip >= limits.max_connections_per_ip {
            drop(per_ip);
            self.open_connections.fetch_sub(1, Ordering::AcqRel);
            return Err(CloseReason::too_many_connections_per_ip);
        }
        *per_ip += 1;
        drop(per_ip);
        self.metrics.connections.inc();
        Ok(Admission { shared: self, ip })
    }
}

/// A connection slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    shared: &'a Shared,
    ip: IpAddr,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.shared.open_connections.fetch_sub(1, Ordering::AcqRel);
        self.shared.metrics.connections.dec();
        if let dashmap::Entry::Occupied(mut entry) = self.shared.per_ip.entry(self.ip) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
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
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
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
        let tracker = SessionTracker::new(
            config.timeouts,
            // Ids start from the wall clock so they stay above every id an
            // earlier run of this server id handed out (state is in memory).
            IdGenerator::new(
                config.server_id,
                u64::try_from(wall_clock_ms()).unwrap_or(0),
                None,
            ),
            random_secret()?,
            started.into_std(),
        );
        let state = State::new(tracker, config.limits.namespace);
        let (reaper_tx, reaper_rx) = crossbeam_channel::unbounded();
        let (session_events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            config: config.clone(),
            state: Mutex::new(state),
            connections: DashMap::new(),
            per_ip: DashMap::new(),
            open_connections: AtomicUsize::new(0),
            next_owner: AtomicU64::new(1),
            metrics: Arc::new(Metrics::new()),
            reaper: reaper_tx,
            session_events,
            started,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            shutdown_rx.clone(),
        ));
        tasks.spawn(expirer(Arc::clone(&shared), shutdown_rx.clone()));
        if let Some(listener) = admin_listener {
            tasks.spawn(crate::admin::serve(
                listener,
                Arc::clone(&shared),
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
            std::thread::Builder::new()
                .name("session-reaper".into())
                .spawn(move || reaper(&shared, &reaper_rx))?
        };
        info!(
            listen = %local_addr,
            admin = ?admin_addr,
            metrics = ?metrics_addr.map(|addr| format!("http://{addr}/metrics")),
            server_id = config.server_id.get(),
            tick_ms = config.timeouts.tick().as_millis() as u64,
            min_timeout_ms = config.timeouts.min().as_millis() as u64,
            max_timeout_ms = config.timeouts.max().as_millis() as u64,
            "session server started"
        );
        Ok(Server {
            shared,
            local_addr,
            admin_addr,
            metrics_addr,
            shutdown,
            tasks,
            reaper: Some(reaper),
        })
    }

    /// The client protocol address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin gRPC address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The metrics address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Sessions held right now.
    pub fn session_count(&self) -> usize {
        self.shared.state().tracker().len()
    }

    /// Nodes in the namespace right now, the root included.
    pub fn node_count(&self) -> usize {
        self.shared.state().namespace().node_count()
    }

    #[cfg(test)]
    pub(crate) fn shared_for_tests(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Watches registered right now, over all sessions.
    pub fn watch_count(&self) -> usize {
        self.shared.state().namespace().watch_count()
    }

    /// The metrics, as the `/metrics` endpoint shows them.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops accepting, tells every connected client the server is shutting
    /// down, closes their connections and waits for every task to end.
    pub async fn shutdown(mut self) {
        info!("session server shutting down");
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let _ = self.shared.reaper.send(Reap::Stop);
        if let Some(reaper) = self.reaper.take() {
            let _ = tokio::task::spawn_blocking(move || reaper.join()).await;
        }
        info!("session server stopped");
    }
}

/// A fresh per-run password secret from the operating system's generator.
fn random_secret() -> std::io::Result<PasswordSecret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    PasswordSecret::new(&bytes).map_err(std::io::Error::other)
}

/// Resolves once shutdown has begun. (The guard `wait_for` returns is not
/// `Send`, so it must not outlive this function.)
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let shared = Arc::clone(&shared);
                    let shutdown = shutdown.clone();
                    connections.spawn(crate::connection::run(shared, stream, remote, shutdown));
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
    // Buckets end on multiples of the tick from the tracker's origin, so waking
    // exactly then expires each session at the end of its bucket, not later.
    let mut ticks = tokio::time::interval_at(shared.started + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => return,
            _ = ticks.tick() => {}
        }
        let now = Instant::now().into_std();
        let due = shared.state().poll_expired(now);
        for id in due {
            if shared.reaper.send(Reap::Expired(id, now)).is_err() {
                return;
            }
        }
    }
}

/// Closes expired sessions one by one: ephemerals deleted, watches fired, the
/// connection told. Runs on its own thread so an expiry storm does not delay
/// the runtime's workers.
fn reaper(shared: &Shared, due: &crossbeam_channel::Receiver<Reap>) {
    while let Ok(Reap::Expired(id, now)) = due.recv() {
        let (deleted, zxid) = {
            let mut state = shared.state();
            match shared.apply(
                &mut state,
                Command::CloseSession { id },
                Instant::from_std(now),
            ) {
                Ok(applied) => {
                    let deleted = match applied.outcome {
                        Outcome::SessionClosed { ephemerals_deleted } => ephemerals_deleted,
                        _ => 0,
                    };
                    (deleted, applied.zxid)
                }
                // Closed by its client between expiry and now: nothing to do.
                Err(_) => continue,
            }
        };
        shared.metrics.sessions_expired.inc();
        let remote = shared.connections.remove(&id).map(|(_, connection)| {
            let _ = connection.mailbox.send(Notice::Disconnect(
                Box::new(Disconnect {
                    reason: ErrorCode::SessionExpired.into(),
                    detail: format!("session {id} expired"),
                }),
                CloseReason::expired,
            ));
            connection.remote
        });
        shared.publish(SessionEvent {
            id,
            kind: SessionEventKind::Expired,
            remote,
            timeout_ms: 0,
            zxid,
        });
        info!(session = %id, remote = ?remote, ephemerals_deleted = deleted, "session expired");
    }
}
