//! The [`Client`] handle and its [`ClientBuilder`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use session_core::{
    ClientConfig, ClientSession, ConnectString, SessionId, SessionPassword, validate_path,
    validate_sequential_prefix,
};
use session_wire::v1::{self as wire, NodeKind, reply, request};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::{Command, Driver, Shared, WatchOn, terminal_error};
use crate::types::stat_from_wire;
use crate::{CreateMode, Error, Stat, State, StateEvents, Watch};

/// The session timeout asked for when none is set: 10 s.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`ClientBuilder::connect`] waits for a session when no deadline
/// is set: 15 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Sets up a [`Client`]; from [`Client::builder`].
///
/// ```no_run
/// # async fn run() -> Result<(), session_client::Error> {
/// use std::time::Duration;
/// use session_client::Client;
///
/// let client = Client::builder()
///     .servers("127.0.0.1:7181,127.0.0.1:7281/app")
///     .session_timeout(Duration::from_secs(6))
///     .connect_timeout(Duration::from_secs(3))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    servers: String,
    session_timeout: Duration,
    connect_timeout: Duration,
    rng_seed: Option<u64>,
    resume: Option<(SessionId, SessionPassword)>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            servers: "127.0.0.1:7181".to_owned(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            rng_seed: None,
            resume: None,
        }
    }
}

impl ClientBuilder {
    /// The servers and optional chroot, ZooKeeper style:
    /// `host:port,host:port/chroot` (default `127.0.0.1:7181`). Names are
    /// resolved again on every connection attempt.
    #[must_use]
    pub fn servers(mut self, connect_string: impl Into<String>) -> Self {
        self.servers = connect_string.into();
        self
    }

    /// The session timeout to ask for (default 10 s); the server clamps it
    /// into its own bounds, see [`Client::negotiated_timeout`].
    #[must_use]
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long [`connect`](Self::connect) may take before it fails with
    /// [`Error::Timeout`] (default 15 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Seeds the host shuffle and the delays between attempts, so a run can
    /// be replayed (random by default).
    #[must_use]
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Reattaches to an existing session (say, one opened before this process
    /// restarted) instead of opening a new one. A wrong password ends in
    /// [`Error::AuthFailed`], a session the servers no longer hold in
    /// [`Error::SessionExpired`].
    #[must_use]
    pub fn session(mut self, id: SessionId, password: SessionPassword) -> Self {
        self.resume = Some((id, password));
        self
    }

    /// Starts the client's background task (on the current tokio runtime) and
    /// waits until a server has granted the session.
    ///
    /// # Errors
    /// [`Error::InvalidConnectString`] at once for a bad connect string;
    /// [`Error::AuthFailed`] or [`Error::SessionExpired`] at once when a
    /// server refuses the session; [`Error::Timeout`] when no session is
    /// established within the connect timeout.
    pub async fn connect(self) -> Result<Client, Error> {
        let servers = Arc::new(ConnectString::parse(&self.servers)?);
        let seed = self
            .rng_seed
            .unwrap_or_else(|| RandomState::new().build_hasher().finish());
        let config = ClientConfig::new(&servers, self.session_timeout, seed);
        let now = tokio::time::Instant::now().into_std();
        let session = match self.resume {
            Some((id, password)) => ClientSession::resume(config, id, password, now),
            None => ClientSession::new(config, now),
        };
        let (state_tx, mut state) = watch::channel(session.state());
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let driver = Driver::new(
            session,
            Arc::clone(&servers),
            commands_rx,
            state_tx,
            Arc::clone(&shared),
        );
        tokio::spawn(driver.run());

        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        loop {
            let current = *state.borrow_and_update();
            if current == State::Connected {
                break;
            }
            if let Some(error) = terminal_error(current) {
                return Err(error);
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => {
                    // Dropping the last sender ends the task.
                    drop(commands);
                    let last_error = shared.info().last_error.clone();
                    return Err(Error::Timeout {
                        after: self.connect_timeout,
                        last_error,
                    });
                }
            }
        }
        let (session_id, password) = shared
            .info()
            .session
            .expect("invariant: the session is known once connected");
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                state,
                servers,
                shared,
                session_id,
                password,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<State>,
    servers: Arc<ConnectString>,
    shared: Arc<Shared>,
    session_id: SessionId,
    password: SessionPassword,
}

/// A session with the service, and the namespace operations done in it.
///
/// Cheap to clone: clones share the session. A background task (spawned by
/// [`ClientBuilder::connect`]) keeps the session alive, reconnects to the
/// next server with the same session after a failure and re-registers the
/// watches. When the last clone is dropped, the session is closed.
///
/// Paths are as the application sees them: with a chroot in the connect
/// string (`host:port/app`), `/x` is `/app/x` on the server, and paths coming
/// back (created nodes, watch events) have the chroot removed.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A builder: servers, timeouts, seed.
    #[must_use]
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The session's id.
    #[must_use]
    pub fn session_id(&self) -> SessionId {
        self.inner.session_id
    }

    /// The session's password: with [`session_id`](Self::session_id), what
    /// [`ClientBuilder::session`] needs to reattach from another process.
    #[must_use]
    pub fn password(&self) -> SessionPassword {
        self.inner.password
    }

    /// The address of the server the session is (or was last) connected
    /// to: after a failover, the server it moved to.
    #[must_use]
    pub fn server(&self) -> Option<std::net::SocketAddr> {
        self.inner.shared.info().server
    }

    /// The session timeout the last server granted.
    #[must_use]
    pub fn negotiated_timeout(&self) -> Duration {
        self.inner
            .shared
            .info()
            .negotiated
            .expect("invariant: a connected client has a negotiated timeout")
    }

    /// The state now and its later changes, as a `watch` receiver (which
    /// keeps only the latest; see [`events`](Self::events) for every change).
    #[must_use]
    pub fn state(&self) -> watch::Receiver<State> {
        self.inner.state.clone()
    }

    /// Every state change from now on, in order, never the same state twice
    /// in a row; the stream ends after a terminal state.
    #[must_use]
    pub fn events(&self) -> StateEvents {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut info = self.inner.shared.info();
        if !info.finished {
            info.subscribers.push(sender);
        }
        StateEvents { receiver }
    }

    /// Closes the session: the server deletes its ephemeral nodes and drops
    /// its watches. Returns once the server has answered (or the connection
    /// is gone). Later calls fail with [`Error::Closed`]; closing twice, or
    /// after expiry, does nothing.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.inner.commands.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    /// Creates a node and returns its path (with the sequence number for a
    /// sequential mode). The parent must exist.
    ///
    /// # Errors
    /// `NodeExists`, `NoNode` (no parent), `NoChildrenForEphemerals`,
    /// `InvalidPath`, `TooLarge`, `TooManyEphemerals`, and the session errors.
    pub async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String, Error> {
        if mode.is_sequential() {
            validate_sequential_prefix(path).map_err(|err| invalid(path, &err))?;
        } else {
            validate_path(path).map_err(|err| invalid(path, &err))?;
        }
        let op = request::Op::Create(wire::Create {
            path: self.inner.servers.prefix_path(path),
            data: Bytes::copy_from_slice(data),
            kind: if mode.is_ephemeral() {
                NodeKind::Ephemeral
            } else {
                NodeKind::Persistent
            }
            .into(),
            sequential: mode.is_sequential(),
        });
        match self.call(path, op, None).await?.0 {
            reply::Result::Create(created) => Ok(self.client_path(&created.path)),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes a node without children; `version` `Some(v)` deletes only if
    /// the node is at version `v`.
    ///
    /// # Errors
    /// `NoNode`, `BadVersion`, `NotEmpty`, `InvalidPath`, and the session errors.
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<(), Error> {
        let op = request::Op::Delete(wire::Delete {
            path: self.server_path(path)?,
            expected_version: version,
        });
        match self.call(path, op, None).await?.0 {
            reply::Result::Delete(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// A node's data and stat.
    ///
    /// # Errors
    /// `NoNode`, `InvalidPath`, and the session errors.
    pub async fn get(&self, path: &str) -> Result<(Bytes, Stat), Error> {
        self.get_inner(path, false)
            .await
            .map(|(data, stat, _)| (data, stat))
    }

    /// A node's data and stat, and a watch fired by the next change of its
    /// data or its deletion.
    ///
    /// # Errors
    /// As [`get`](Self::get); no watch is left when the node is missing.
    pub async fn get_and_watch(&self, path: &str) -> Result<(Bytes, Stat, Watch), Error> {
        let (data, stat, watch) = self.get_inner(path, true).await?;
        let watch = watch.expect("invariant: a watching call returns a watch");
        Ok((data, stat, watch))
    }

    async fn get_inner(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Bytes, Stat, Option<Watch>), Error> {
        let op = request::Op::GetData(wire::GetData {
            path: self.server_path(path)?,
            watch,
        });
        let on = watch.then_some(WatchOn::Get);
        match self.call(path, op, on).await? {
            (reply::Result::GetData(result), watch) => Ok((
                result.data,
                result.stat.map(stat_from_wire).unwrap_or_default(),
                watch,
            )),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Replaces a node's data; `version` `Some(v)` only if the node is at
    /// version `v`. Returns the new stat.
    ///
    /// # Errors
    /// `NoNode`, `BadVersion`, `TooLarge`, `InvalidPath`, and the session errors.
    pub async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat, Error> {
        let op = request::Op::SetData(wire::SetData {
            path: self.server_path(path)?,
            data: Bytes::copy_from_slice(data),
            expected_version: version,
        });
        match self.call(path, op, None).await?.0 {
            reply::Result::SetData(result) => {
                Ok(result.stat.map(stat_from_wire).unwrap_or_default())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// A node's stat, or `None` when it does not exist.
    ///
    /// # Errors
    /// `InvalidPath`, and the session errors.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, Error> {
        self.exists_inner(path, false).await.map(|(stat, _)| stat)
    }

    /// Waits until the server this client is connected to holds every write
    /// the cluster's leader had committed when it was asked: reads after it
    /// are at least that new (ZooKeeper's `sync`). Reads are otherwise
    /// answered from the connected server's replica, which may be a moment
    /// behind the leader, never behind this client's own writes. `path` is
    /// echoed back; it need not exist.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot reach a leader, and the session
    /// errors.
    pub async fn sync(&self, path: &str) -> Result<(), Error> {
        let op = request::Op::Sync(wire::Sync {
            path: self.server_path(path)?,
        });
        match self.call(path, op, None).await? {
            (reply::Result::Sync(_), _) => Ok(()),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// A node's stat if it exists, and a watch: fired by the node's creation
    /// if it is missing, by its next data change or deletion otherwise.
    ///
    /// # Errors
    /// As [`exists`](Self::exists).
    pub async fn exists_and_watch(&self, path: &str) -> Result<(Option<Stat>, Watch), Error> {
        let (stat, watch) = self.exists_inner(path, true).await?;
        let watch = watch.expect("invariant: a watching call returns a watch");
        Ok((stat, watch))
    }

    async fn exists_inner(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Option<Stat>, Option<Watch>), Error> {
        let op = request::Op::Exists(wire::Exists {
            path: self.server_path(path)?,
            watch,
        });
        let on = watch.then_some(WatchOn::Exists);
        match self.call(path, op, on).await? {
            (reply::Result::Exists(result), watch) => Ok((result.stat.map(stat_from_wire), watch)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// The names of a node's children, sorted.
    ///
    /// # Errors
    /// `NoNode`, `InvalidPath`, and the session errors.
    pub async fn children(&self, path: &str) -> Result<Vec<String>, Error> {
        self.children_inner(path, false)
            .await
            .map(|(children, _)| children)
    }

    /// The names of a node's children, and a watch fired when a child is
    /// created or deleted, or the node itself is deleted.
    ///
    /// # Errors
    /// As [`children`](Self::children).
    pub async fn children_and_watch(&self, path: &str) -> Result<(Vec<String>, Watch), Error> {
        let (children, watch) = self.children_inner(path, true).await?;
        let watch = watch.expect("invariant: a watching call returns a watch");
        Ok((children, watch))
    }

    async fn children_inner(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, Option<Watch>), Error> {
        let op = request::Op::GetChildren(wire::GetChildren {
            path: self.server_path(path)?,
            watch,
        });
        let on = watch.then_some(WatchOn::Children);
        match self.call(path, op, on).await? {
            (reply::Result::GetChildren(result), watch) => Ok((result.children, watch)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    fn server_path(&self, path: &str) -> Result<String, Error> {
        validate_path(path).map_err(|err| invalid(path, &err))?;
        Ok(self.inner.servers.prefix_path(path))
    }

    fn client_path(&self, server_path: &str) -> String {
        self.inner
            .servers
            .strip_path(server_path)
            .unwrap_or(server_path)
            .to_owned()
    }

    /// The error a call gets when the task is gone or refuses it.
    fn gone(&self) -> Error {
        terminal_error(*self.inner.state.borrow()).unwrap_or(Error::Closed)
    }

    async fn call(
        &self,
        path: &str,
        op: request::Op,
        watch: Option<WatchOn>,
    ) -> Result<(reply::Result, Option<Watch>), Error> {
        if let Some(error) = terminal_error(*self.inner.state.borrow()) {
            return Err(error);
        }
        let (reply, replied) = oneshot::channel();
        let (watch, watch_handle) = match watch {
            Some(on) => {
                let (sender, receiver) = oneshot::channel();
                let server_path = match &op {
                    request::Op::GetData(get) => get.path.clone(),
                    request::Op::Exists(exists) => exists.path.clone(),
                    request::Op::GetChildren(children) => children.path.clone(),
                    _ => String::new(),
                };
                (Some((on, server_path, sender)), Some(Watch { receiver }))
            }
            None => (None, None),
        };
        let command = Command::Request {
            op,
            path: path.to_owned(),
            watch,
            reply,
        };
        if self.inner.commands.send(command).is_err() {
            return Err(self.gone());
        }
        match replied.await {
            Ok(Ok((result, _zxid))) => Ok((result, watch_handle)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(self.gone()),
        }
    }
}

fn invalid(path: &str, error: &session_core::PathError) -> Error {
    Error::InvalidPath {
        path: path.to_owned(),
        detail: error.to_string(),
    }
}

fn unexpected(result: &reply::Result) -> Error {
    Error::System {
        detail: format!("the server answered with an unexpected result: {result:?}"),
    }
}
