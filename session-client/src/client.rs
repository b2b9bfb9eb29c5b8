//! The [`Client`] handle and its [`ClientBuilder`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use session_core::{Acl, ConnectString, Id, SessionId, SessionPassword, WatchKind, WatcherType};
use session_wire::v1::{self as wire, reply, request};
use tokio::sync::{mpsc, oneshot, watch};

#[cfg(feature = "tls")]
use crate::TlsConfig;
use crate::TlsConfigError;
use crate::driver::{
    Command, Credential, Driver, DriverOptions, Extra, Shared, WatchOn, new_session,
};
use crate::ops::{self, create_request, op_error, op_outcome, read_outcome};
use crate::protected::{protect, random_uuid};
use crate::retry::random_u64;
use crate::types::{
    ForgetWatch, Registration, acl_from_wire, acl_to_wire, id_from_wire, opt_stat, stat_from_wire,
    watcher_type_to_wire,
};
use crate::{
    CreateMode, CreateOptions, Error, MultiError, Op, OpOutcome, PersistentWatch, ReadOp,
    ReadOutcome, Renewals, RetryPolicy, Stat, State, StateEvents, Watch,
};

/// The session timeout asked for when none is set: 10 s.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`ClientBuilder::connect`] waits for a session when no deadline
/// is set: 15 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Client::close`] tries to reach a server when none is set: 5 s
/// (and never past the session's own expiry, 4/3·T without a server).
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
///     .request_timeout(Duration::from_secs(2))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
///
/// Every option has a default: `127.0.0.1:7181`, a 10 s session, 15 s to
/// connect, no per-request deadline (a request ends with its answer or with
/// the connection, which the client drops after 2/3·T of silence), a random
/// seed, reconnect jitter under `min(1 s, T/10)`, 5 s for `close()` to reach
/// a server, [`RetryPolicy::default`] for protected creates, no automatic
/// renewal.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    servers: String,
    session_timeout: Duration,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    close_timeout: Duration,
    max_jitter: Option<Duration>,
    retry_policy: RetryPolicy,
    auto_renew: bool,
    rng_seed: Option<u64>,
    resume: Option<(SessionId, SessionPassword)>,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            servers: "127.0.0.1:7181".to_owned(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            max_jitter: None,
            retry_policy: RetryPolicy::default(),
            auto_renew: false,
            rng_seed: None,
            resume: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// The servers and optional chroot, ZooKeeper style:
    /// `host:port,host:port/chroot` (default `127.0.0.1:7181`). Names are
    /// resolved again on every connection attempt. A `tls://` prefix
    /// (`tls://host:port,host:port/chroot`) dials every server with TLS,
    /// which needs [`tls`](Self::tls) to say what to trust.
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

    /// A deadline for every request's answer (none by default): a request
    /// unanswered after `timeout` fails with [`Error::RequestTimeout`], and
    /// the connection and session carry on. [`Client::with_timeout`] sets
    /// another for some calls.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), session_client::Error> {
    /// use std::time::Duration;
    /// use session_client::Client;
    ///
    /// let client = Client::builder()
    ///     .request_timeout(Duration::from_millis(500))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long [`Client::close`] may try to reach a server (default 5 s):
    /// when the client is suspended it reconnects only to send the close.
    /// The close never waits past the session's own expiry (4/3·T without a
    /// server).
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Bounds the random wait before each reconnection attempt (exclusive;
    /// `Duration::ZERO` for none). By default it is under
    /// `min(1 s, T/10)` with `T` the negotiated session timeout. The first
    /// attempt after losing a connection never waits, and after a full
    /// round of failed attempts over every server the client pauses
    /// `min(1 s, T/10)` whatever this says.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), session_client::Error> {
    /// use std::time::Duration;
    /// use session_client::Client;
    ///
    /// // Thousands of clients behind one load balancer: spread them wider.
    /// let client = Client::builder()
    ///     .session_timeout(Duration::from_secs(30))
    ///     .reconnect_jitter(Duration::from_secs(2))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn reconnect_jitter(mut self, max: Duration) -> Self {
        self.max_jitter = Some(max);
        self
    }

    /// The retry policy of [`Client::create_protected`] (default
    /// [`RetryPolicy::default`]).
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Opens a new session by itself when the session expires (off by
    /// default). The state goes `Expired`, then `Connecting` and
    /// `Connected` with a new [`Client::session_id`]; calls in between fail
    /// with [`Error::SessionExpired`] or [`Error::ConnectionLoss`]. Every
    /// ephemeral node and watch of the old session is gone: owners of
    /// ephemerals create them again on each [`Client::renewals`] event.
    /// Credentials given to [`Client::add_auth`] are sent again.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), session_client::Error> {
    /// use futures_util::StreamExt;
    /// use session_client::{Client, CreateMode};
    ///
    /// let client = Client::builder().auto_renew(true).connect().await?;
    /// let mut renewals = client.renewals();
    /// client.create("/services/me", b"", CreateMode::Ephemeral).await?;
    /// while let Some(session) = renewals.next().await {
    ///     println!("new session {session}: registering again");
    ///     client.create("/services/me", b"", CreateMode::Ephemeral).await?;
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn auto_renew(mut self, renew: bool) -> Self {
        self.auto_renew = renew;
        self
    }

    /// Seeds the host shuffle and the delays between attempts, so a run can
    /// be replayed (random by default).
    #[must_use]
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Dials every server with TLS, trusting the CAs of `config` and
    /// presenting its client certificate if any (a `tls://` connect string
    /// is not needed then). Off by default. A server whose certificate
    /// does not verify is skipped, and [`connect`](Self::connect) fails
    /// with [`Error::Tls`] when every server's does not: see there.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use session_client::{Client, TlsConfig};
    ///
    /// let client = Client::builder()
    ///     .servers("tls://10.0.0.1:7181,10.0.0.2:7181")
    ///     .tls(TlsConfig::from_ca_file("ca.pem")?)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[must_use]
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
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
    /// [`Error::TlsConfig`] at once for a `tls://` connect string without
    /// [`tls`](Self::tls) (there is no system root store), or a host whose
    /// name cannot be verified; [`Error::AuthFailed`] or
    /// [`Error::SessionExpired`] at once when a server refuses the session;
    /// [`Error::Tls`] as soon as TLS failed with every server of the
    /// connect string (a certificate that does not verify is not retried);
    /// [`Error::Timeout`] when no session is established within the connect
    /// timeout.
    pub async fn connect(self) -> Result<Client, Error> {
        let (servers, tls_asked) = match self.servers.strip_prefix("tls://") {
            Some(servers) => (servers, true),
            None => (self.servers.as_str(), false),
        };
        let servers = Arc::new(ConnectString::parse(servers)?);
        #[cfg(feature = "tls")]
        let tls = match self.tls {
            Some(tls) => {
                for host in servers.hosts() {
                    tls.server_name_for(&host.host)?;
                }
                Some(tls)
            }
            None if tls_asked => return Err(TlsConfigError::MissingCa.into()),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        if tls_asked {
            return Err(TlsConfigError::Unsupported.into());
        }
        let options = DriverOptions {
            session_timeout: self.session_timeout,
            rng_seed: self.rng_seed.unwrap_or_else(random_u64),
            max_jitter: self.max_jitter,
            close_timeout: self.close_timeout,
            auto_renew: self.auto_renew,
            #[cfg(feature = "tls")]
            tls,
        };
        let now = tokio::time::Instant::now().into_std();
        let session = match self.resume {
            Some((id, password)) => {
                let config = session_core::ClientConfig::new(
                    &servers,
                    options.session_timeout,
                    options.rng_seed,
                );
                let session = session_core::ClientSession::resume(config, id, password, now);
                match options.max_jitter {
                    Some(max) => session.with_max_jitter(max),
                    None => session,
                }
            }
            None => new_session(&servers, &options, 0, now),
        };
        let (state_tx, mut state) = watch::channel(session.state());
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let driver = Driver::new(
            session,
            Arc::clone(&servers),
            options,
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
            // With auto-renew an expired (resumed) session is followed by a
            // new one.
            if let Some(error) = shared
                .terminal_error(current)
                .filter(|_| !(self.auto_renew && current == State::Expired))
            {
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
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                state,
                servers,
                shared,
                auto_renew: self.auto_renew,
                retry_policy: self.retry_policy,
                next_watch_id: AtomicU64::new(1),
            }),
            request_timeout: self.request_timeout,
        })
    }
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<State>,
    servers: Arc<ConnectString>,
    shared: Arc<Shared>,
    auto_renew: bool,
    retry_policy: RetryPolicy,
    /// Names each `PersistentWatch` handle for the task.
    next_watch_id: AtomicU64,
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
    /// This handle's deadline for answers.
    request_timeout: Option<Duration>,
}

impl Client {
    /// A builder: servers, timeouts, seed.
    #[must_use]
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The session's id (a new one after an automatic renewal, see
    /// [`ClientBuilder::auto_renew`]).
    #[must_use]
    pub fn session_id(&self) -> SessionId {
        self.session().0
    }

    /// The session's password: with [`session_id`](Self::session_id), what
    /// [`ClientBuilder::session`] needs to reattach from another process.
    #[must_use]
    pub fn password(&self) -> SessionPassword {
        self.session().1
    }

    fn session(&self) -> (SessionId, SessionPassword) {
        self.inner
            .shared
            .info()
            .session
            .expect("invariant: the session is known once connected")
    }

    /// A handle on the same session whose requests fail with
    /// [`Error::RequestTimeout`] when unanswered after `timeout`, instead of
    /// the builder's [`request_timeout`](ClientBuilder::request_timeout).
    /// The connection and the session are not affected by a request that
    /// timed out.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use std::time::Duration;
    ///
    /// let (config, _) = client.with_timeout(Duration::from_millis(200)).get("/config").await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            inner: Arc::clone(&self.inner),
            request_timeout: Some(timeout),
        }
    }

    /// This handle's deadline for answers, if any.
    #[must_use]
    pub fn request_timeout(&self) -> Option<Duration> {
        self.request_timeout
    }

    /// Waits until the client is `Connected` (at once if it is).
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use std::time::Duration;
    ///
    /// client.wait_connected(Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] when not connected within `timeout` (its
    /// `last_error` says why the last attempt failed); the terminal errors
    /// (`SessionExpired` unless [`auto_renew`](ClientBuilder::auto_renew)
    /// is on, `AuthFailed`, `Closed`) as soon as the session ends.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        let mut state = self.inner.state.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = *state.borrow_and_update();
            if current == State::Connected {
                return Ok(());
            }
            if let Some(error) = self
                .inner
                .shared
                .terminal_error(current)
                .filter(|_| !(self.inner.auto_renew && current == State::Expired))
            {
                return Err(error);
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(self.gone()),
                Err(_) => {
                    return Err(Error::Timeout {
                        after: timeout,
                        last_error: self.inner.shared.info().last_error.clone(),
                    });
                }
            }
        }
    }

    /// Runs `operation` until it succeeds, fails with an error not worth
    /// retrying, or `policy` gives up; returns its last outcome.
    ///
    /// Retried: exactly the errors for which [`Error::is_retryable`] holds,
    /// [`ConnectionLoss`](Error::ConnectionLoss) (the connection dropped,
    /// or the client is suspended and reconnecting),
    /// [`RequestTimeout`](Error::RequestTimeout),
    /// [`Unavailable`](Error::Unavailable) and [`System`](Error::System).
    /// Before each retry the client waits the policy's back-off, then until
    /// it is connected again. Not retried: everything else, the terminal
    /// errors (`SessionExpired`, `AuthFailed`, `Closed`) included.
    ///
    /// Use it for idempotent operations (reads, versioned writes, deletes
    /// that treat `NoNode` as done): after a `ConnectionLoss` a write may
    /// have been applied. For sequential creates use
    /// [`create_protected`](Self::create_protected).
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use session_client::RetryPolicy;
    ///
    /// let (config, _) = client
    ///     .retry(&RetryPolicy::default(), || client.get("/config"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The operation's last error: one not retried, or a retried one when
    /// the policy's deadline or attempt limit is reached; a terminal error
    /// if the session ends while waiting to reconnect.
    pub async fn retry<T, F, Fut>(&self, policy: &RetryPolicy, mut operation: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let deadline = tokio::time::Instant::now() + policy.timeout();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match operation().await {
                Err(error) if error.is_retryable() => {
                    self.before_retry(policy, deadline, attempts, error).await?;
                }
                outcome => return outcome,
            }
        }
    }

    /// Waits before the next attempt: the back-off, then until connected.
    /// `Err(error)` when the policy gives up, or the session's end.
    async fn before_retry(
        &self,
        policy: &RetryPolicy,
        deadline: tokio::time::Instant,
        attempts: u32,
        error: Error,
    ) -> Result<(), Error> {
        if !policy.allows_another(attempts) {
            return Err(error);
        }
        let pause = (tokio::time::Instant::now() + policy.wait_after(attempts)).min(deadline);
        tokio::time::sleep_until(pause).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(error);
        }
        match self.wait_connected(left).await {
            Ok(()) => Ok(()),
            Err(Error::Timeout { .. }) => Err(error),
            Err(ended) => Err(ended),
        }
    }

    /// Every automatic renewal from now on: the new session's id, once it is
    /// connected (and the credentials sent again). Only with
    /// [`ClientBuilder::auto_renew`]; the stream ends when the client ends.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use futures_util::StreamExt;
    /// use session_client::CreateMode;
    ///
    /// let mut renewals = client.renewals();
    /// while let Some(session) = renewals.next().await {
    ///     // The old session's ephemerals are gone: create them again.
    ///     client.create("/workers/w-1", b"", CreateMode::Ephemeral).await?;
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn renewals(&self) -> Renewals {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut info = self.inner.shared.info();
        if !info.finished {
            info.renewal_subscribers.push(sender);
        }
        Renewals { receiver }
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
    /// in a row; the stream ends after a terminal state (with
    /// [`auto_renew`](ClientBuilder::auto_renew), `Expired` is followed by
    /// the new session's `Connecting` and `Connected`).
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) {
    /// use futures_util::StreamExt;
    /// use session_client::State;
    ///
    /// let mut events = client.events();
    /// while let Some(state) = events.next().await {
    ///     if state == State::Suspended {
    ///         println!("do not trust locks until Connected again");
    ///     }
    /// }
    /// # }
    /// ```
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
    /// its watches. Returns once a server has acknowledged it. When the
    /// client is suspended it goes on reconnecting, only to send the close,
    /// so that the session's ephemerals (its locks) go as soon as a server
    /// answers rather than after the session timeout; it gives up after the
    /// [`close_timeout`](ClientBuilder::close_timeout) (5 s by default) or
    /// when the session expires, whichever comes first. Later calls fail
    /// with [`Error::Closed`]; closing twice, or after expiry, does nothing.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) {
    /// client.close().await;
    /// assert_eq!(*client.state().borrow(), session_client::State::Closed);
    /// # }
    /// ```
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.inner.commands.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    /// Creates a node open to anyone and returns its path (with the sequence
    /// number for a sequential mode). The parent must exist. Every mode
    /// works here, [`CreateMode::Container`] and the TTL modes included; see
    /// [`create_with`](Self::create_with) for an access control list.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use session_client::CreateMode;
    ///
    /// // Deleted by the server once its last lock node is gone.
    /// client.create("/locks", b"", CreateMode::Container).await?;
    /// // Deleted once it has had no child and no change for a minute.
    /// client
    ///     .create("/leases/a", b"", CreateMode::PersistentWithTtl { ttl_ms: 60_000 })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `NodeExists`, `NoNode` (no parent), `NoChildrenForEphemerals`,
    /// `NoAuth` (no CREATE on the parent), `InvalidPath`, `TooLarge`,
    /// `TooManyEphemerals`, `Unsupported` (a TTL outside 1 to
    /// 1,099,511,627,775 ms), and the session errors.
    pub async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String, Error> {
        self.create_with(path, data, &CreateOptions::new(mode))
            .await
            .map(|(path, _)| path)
    }

    /// Creates a node with `options` (mode and access control list) and
    /// returns its path and stat.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use session_client::{Acl, CreateMode, CreateOptions, perms};
    ///
    /// client.add_auth("digest", b"alice:secret").await?;
    /// // Every permission for the identities this connection holds
    /// // (digest:alice:...), nothing for anyone else.
    /// let options = CreateOptions::new(CreateMode::Persistent).acl(Acl::creator_all());
    /// let (path, stat) = client.create_with("/private", b"", &options).await?;
    /// assert_eq!(stat.aversion, 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`create`](Self::create), and `InvalidAcl` for a list the server
    /// cannot store.
    pub async fn create_with(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
    ) -> Result<(String, Stat), Error> {
        let create = create_request(
            &self.inner.servers,
            path,
            Bytes::copy_from_slice(data),
            options,
        )?;
        match self.call(path, request::Op::Create(create), None).await?.0 {
            reply::Result::Create(created) => {
                Ok((self.client_path(&created.path), opt_stat(created.stat)))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a node whose last path component is protected, Curator's
    /// layout: `/locks/lock-` becomes `/locks/_c_<uuid>-lock-0000000007`
    /// (with a sequential mode; `_c_<uuid>-lock-` without), `<uuid>` a new
    /// random UUID for each call. Returns the path created.
    ///
    /// A create whose answer is lost ([`Error::ConnectionLoss`], or
    /// [`Error::RequestTimeout`]) may have been applied: an
    /// ephemeral-sequential node owned by this live session then blocks
    /// every other contender for a lock. So on those errors the client
    /// waits until it is connected again, lists the parent's children and
    /// returns the node bearing the uuid if there is one, or creates it
    /// again, under the builder's
    /// [`retry_policy`](ClientBuilder::retry_policy). The name layout is
    /// described in [`protected_id`](crate::protected_id); sort contenders
    /// by the sequence number, the last 10 digits.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use session_client::{CreateMode, strip_protected_prefix};
    ///
    /// let me = client
    ///     .create_protected("/locks/job-7/lock-", b"", CreateMode::EphemeralSequential)
    ///     .await?;
    /// let mut contenders = client.children("/locks/job-7").await?;
    /// contenders.sort_by_key(|name| name[name.len() - 10..].to_owned());
    /// let first = strip_protected_prefix(&contenders[0]);
    /// println!("{me}; first in line: {first}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`create_with`](Self::create_with); `ConnectionLoss` or
    /// `RequestTimeout` when the retry policy gave up without learning
    /// whether the node exists; `SessionExpired` when the session ended
    /// meanwhile (an ephemeral node is gone with it).
    pub async fn create_protected(
        &self,
        path: &str,
        data: &[u8],
        options: impl Into<CreateOptions>,
    ) -> Result<String, Error> {
        let options = options.into();
        let (parent, name) = split_last(path)?;
        let protected_name = protect(&random_uuid(), name);
        let protected_path = if parent == "/" {
            format!("/{protected_name}")
        } else {
            format!("{parent}/{protected_name}")
        };
        let policy = self.inner.retry_policy;
        let deadline = tokio::time::Instant::now() + policy.timeout();
        let mut attempts = 0;
        let mut sent = false;
        loop {
            attempts += 1;
            if sent {
                // The last create may have been applied: look for it first.
                match self.children(parent).await {
                    Ok(children) => {
                        if let Some(found) = children
                            .iter()
                            .find(|child| child.starts_with(&protected_name))
                        {
                            return Ok(if parent == "/" {
                                format!("/{found}")
                            } else {
                                format!("{parent}/{found}")
                            });
                        }
                    }
                    Err(error) if error.is_retryable() => {
                        self.before_retry(&policy, deadline, attempts, error)
                            .await?;
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            sent = true;
            match self.create_with(&protected_path, data, &options).await {
                Ok((created, _)) => return Ok(created),
                Err(error) if error.is_retryable() => {
                    self.before_retry(&policy, deadline, attempts, error)
                        .await?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A node's access control list and stat (its `aversion` counts the
    /// list's changes). Needs READ or ADMIN on the node.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// let (acl, stat) = client.get_acl("/config").await?;
    /// for entry in &acl {
    ///     println!("{:#x} to {}", entry.perms, entry.id);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `NoNode`, `NoAuth`, `InvalidPath`, and the session errors.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), Error> {
        let op = request::Op::GetAcl(wire::GetAcl {
            path: self.server_path(path)?,
        });
        match self.call(path, op, None).await?.0 {
            reply::Result::GetAcl(got) => Ok((
                got.acl.into_iter().map(acl_from_wire).collect(),
                opt_stat(got.stat),
            )),
            other => Err(unexpected(&other)),
        }
    }

    /// Replaces a node's access control list; `version` `Some(v)` only if
    /// the list is at version `v` (the stat's `aversion`). Returns the new
    /// stat. Needs ADMIN on the node. An empty list is refused, as in
    /// ZooKeeper ([`Acl::open`] is the open one).
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use session_client::{Acl, Id, perms};
    ///
    /// let (_, stat) = client.get_acl("/config").await?;
    /// let read_only = vec![Acl::new(perms::READ, Id::anyone())];
    /// client.set_acl("/config", &read_only, Some(stat.aversion)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `NoNode`, `NoAuth`, `BadVersion`, `InvalidAcl`, `InvalidPath`, and
    /// the session errors.
    pub async fn set_acl(
        &self,
        path: &str,
        acl: &[Acl],
        version: Option<i32>,
    ) -> Result<Stat, Error> {
        let op = request::Op::SetAcl(wire::SetAcl {
            path: self.server_path(path)?,
            acl: acl.iter().map(acl_to_wire).collect(),
            expected_version: version,
        });
        match self.call(path, op, None).await?.0 {
            reply::Result::SetAcl(set) => Ok(opt_stat(set.stat)),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies `ops` all together, in order, as one change, or none of them
    /// (ZooKeeper's multi): each operation sees the effects of those before
    /// it, and watches fire only once all are applied. Returns one outcome
    /// per operation.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::MultiError> {
    /// use session_client::{CreateMode, Op, OpOutcome};
    ///
    /// // Take job 7 from the queue, only if nobody changed it meanwhile.
    /// let outcomes = client
    ///     .multi(vec![
    ///         Op::delete("/queue/7", Some(0)),
    ///         Op::create("/running/7", b"worker-3".to_vec(), CreateMode::Ephemeral),
    ///     ])
    ///     .await?;
    /// assert!(matches!(outcomes[1], OpOutcome::Created { .. }));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`MultiError::Failed`] naming the first operation that failed and
    /// why (`NoNode`, `BadVersion`, `NodeExists`, `NoAuth`, ..., or
    /// `InvalidPath` found by this client before sending): nothing was
    /// applied. [`MultiError::Request`] for the session errors and
    /// `ConnectionLoss` (applied entirely or not at all).
    pub async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpOutcome>, MultiError> {
        let mut wire_ops = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let op = op
                .to_wire(&self.inner.servers)
                .map_err(|error| MultiError::Failed { index, error })?;
            wire_ops.push(op);
        }
        let path = ops.first().map_or("/", Op::path);
        let op = request::Op::Multi(wire::Multi { ops: wire_ops });
        let results = match self.call(path, op, None).await?.0 {
            reply::Result::Multi(multi) => multi.results,
            other => return Err(unexpected(&other).into()),
        };
        if results.len() != ops.len() {
            return Err(Error::System {
                detail: format!(
                    "the server answered a multi of {} operations with {} results",
                    ops.len(),
                    results.len()
                ),
            }
            .into());
        }
        let results: Vec<_> = results.into_iter().map(|result| result.result).collect();
        // The failing operation is the one whose code is neither OK (before
        // it) nor RUNTIME_INCONSISTENCY (after it).
        let failed = results
            .iter()
            .enumerate()
            .find_map(|(index, result)| match result {
                Some(wire::multi_op_result::Result::Error(error))
                    if !matches!(
                        error.code(),
                        wire::ErrorCode::Ok | wire::ErrorCode::RuntimeInconsistency
                    ) =>
                {
                    Some((index, error.clone()))
                }
                _ => None,
            });
        if let Some((index, error)) = failed {
            return Err(MultiError::Failed {
                index,
                error: op_error(error, ops[index].path()),
            });
        }
        results
            .into_iter()
            .map(|result| match result {
                Some(result) => op_outcome(result, |path| self.client_path(path)),
                None => Err(Error::System {
                    detail: "a multi's result this client does not know".to_owned(),
                }),
            })
            .collect::<Result<_, _>>()
            .map_err(MultiError::Request)
    }

    /// Reads several nodes in one round trip (ZooKeeper's multiRead). Not
    /// atomic: each read has its own outcome, and a failed one (`NoNode`,
    /// `NoAuth`) does not fail the others. Leaves no watch.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use session_client::{ReadOp, ReadOutcome};
    ///
    /// let reads = vec![ReadOp::get_data("/config"), ReadOp::get_children("/services")];
    /// for outcome in client.multi_read(reads).await? {
    ///     match outcome {
    ///         Ok(ReadOutcome::Data { data, .. }) => println!("{data:?}"),
    ///         Ok(ReadOutcome::Children { children, .. }) => println!("{children:?}"),
    ///         Ok(_) => {}
    ///         Err(error) => println!("{error}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `InvalidPath` (for any read, before sending), and the session errors.
    pub async fn multi_read(
        &self,
        ops: Vec<ReadOp>,
    ) -> Result<Vec<Result<ReadOutcome, Error>>, Error> {
        let wire_ops = ops
            .iter()
            .map(|op| op.to_wire(&self.inner.servers))
            .collect::<Result<_, _>>()?;
        let path = ops.first().map_or("/", ReadOp::path);
        let op = request::Op::MultiRead(wire::MultiRead { ops: wire_ops });
        let results = match self.call(path, op, None).await?.0 {
            reply::Result::MultiRead(multi) => multi.results,
            other => return Err(unexpected(&other)),
        };
        if results.len() != ops.len() {
            return Err(Error::System {
                detail: format!(
                    "the server answered a multi-read of {} reads with {} results",
                    ops.len(),
                    results.len()
                ),
            });
        }
        Ok(results
            .into_iter()
            .zip(&ops)
            .map(|(result, op)| read_outcome(result.result, op.path()))
            .collect())
    }

    /// The paths of this session's ephemeral nodes that start with `prefix`,
    /// a plain string prefix (`"/services/web-"` matches
    /// `/services/web-0000000001`); `"/"` or `""` for all of them. With a
    /// chroot, only those under it, the chroot removed.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// for path in client.get_ephemerals("/services/").await? {
    ///     println!("this session holds {path}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `InvalidPath` for a prefix that does not start with `/`, and the
    /// session errors.
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, Error> {
        if !(prefix.is_empty() || prefix.starts_with('/')) {
            return Err(Error::InvalidPath {
                path: prefix.to_owned(),
                detail: "a prefix of paths starts with '/'".to_owned(),
            });
        }
        let server_prefix = match (self.inner.servers.chroot(), prefix) {
            (None, "") => "/".to_owned(),
            (None, prefix) => prefix.to_owned(),
            // Under the chroot, not beside it: "/app/" leaves out "/app2".
            (Some(chroot), "" | "/") => format!("{chroot}/"),
            (Some(chroot), prefix) => format!("{chroot}{prefix}"),
        };
        let op = request::Op::GetEphemerals(wire::GetEphemerals {
            prefix: server_prefix,
        });
        match self.call(prefix, op, None).await?.0 {
            reply::Result::GetEphemerals(got) => Ok(got
                .paths
                .iter()
                .filter_map(|path| self.inner.servers.strip_path(path))
                .map(str::to_owned)
                .collect()),
            other => Err(unexpected(&other)),
        }
    }

    /// The number of nodes under `path`, at any depth, `path` itself not
    /// counted (ZooKeeper's getAllChildrenNumber). Needs READ on the node.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// let jobs = client.count_descendants("/jobs").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `NoNode`, `NoAuth`, `InvalidPath`, and the session errors.
    pub async fn count_descendants(&self, path: &str) -> Result<u64, Error> {
        let op = request::Op::CountDescendants(wire::CountDescendants {
            path: self.server_path(path)?,
        });
        match self.call(path, op, None).await?.0 {
            reply::Result::CountDescendants(count) => Ok(count.count),
            other => Err(unexpected(&other)),
        }
    }

    /// The identities this connection holds: `ip:<address>` always, and one
    /// per credential accepted by [`add_auth`](Self::add_auth).
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// client.add_auth("digest", b"alice:secret").await?;
    /// let ids = client.who_am_i().await?;
    /// assert!(ids.iter().any(|id| id.scheme == "digest" && id.id.starts_with("alice:")));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The session errors.
    pub async fn who_am_i(&self) -> Result<Vec<Id>, Error> {
        let op = request::Op::WhoAmI(wire::WhoAmI {});
        match self.call("/", op, None).await?.0 {
            reply::Result::WhoAmI(got) => Ok(got.ids.into_iter().map(id_from_wire).collect()),
            other => Err(unexpected(&other)),
        }
    }

    /// Authenticates the connection with a credential of `scheme`
    /// (ZooKeeper's addAuth): for `digest`, `user:password`, which makes the
    /// connection hold the id `digest:user:base64(SHA-1("user:password"))`
    /// that access control lists name.
    ///
    /// Identities belong to a connection, so the client remembers the
    /// credential from the moment it is sent and sends it again on every
    /// new connection, before anything else (as ZooKeeper's clients do);
    /// it forgets it if the server refuses it. Adding the same credential
    /// twice is harmless.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// client.add_auth("digest", b"alice:secret").await?;
    /// let (config, _) = client.get("/alice/config").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AuthRefused`] for an unknown scheme or a refused credential
    /// (the server then drops the connection, and the client reconnects to
    /// the same session); `ConnectionLoss` (the credential is still sent on
    /// the next connection); and the session errors.
    pub async fn add_auth(&self, scheme: &str, credential: &[u8]) -> Result<(), Error> {
        let credential = Credential {
            scheme: scheme.to_owned(),
            credential: Bytes::copy_from_slice(credential),
        };
        let op = request::Op::AddAuth(wire::AddAuth {
            scheme: credential.scheme.clone(),
            credential: credential.credential.clone(),
        });
        match self.call_with("/", op, Extra::AddAuth(credential)).await? {
            reply::Result::AddAuth(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Leaves a persistent watch on `path` and returns its stream of events
    /// (ZooKeeper's addWatch). The node need not exist. With `recursive`
    /// false it reports every change of the node (created, deleted, data
    /// changed, children changed); with `recursive` true, creations,
    /// deletions and data changes of the node and of every node under it.
    /// Firing does not remove it; [`PersistentWatch::remove`], dropping it,
    /// or [`remove_watches`](Self::remove_watches) does. It is set again
    /// after every reconnect.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use futures_util::StreamExt;
    ///
    /// let mut members = client.add_watch("/members", true).await?;
    /// while let Some(event) = members.next().await {
    ///     let event = event?;
    ///     println!("{} {}", event.kind, event.path);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `InvalidPath`, `TooManyWatches`, and the session errors.
    pub async fn add_watch(&self, path: &str, recursive: bool) -> Result<PersistentWatch, Error> {
        let server_path = self.server_path(path)?;
        let kind = if recursive {
            WatchKind::PersistentRecursive
        } else {
            WatchKind::Persistent
        };
        let id = self.inner.next_watch_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        // Made before asking, so that a caller giving up on the answer drops
        // it, which removes the watch again.
        let watch = PersistentWatch {
            receiver,
            registration: Some(Registration {
                commands: self.inner.commands.downgrade(),
                kind,
                server_path: server_path.clone(),
                id,
            }),
            path: path.to_owned(),
            recursive,
        };
        let op = request::Op::AddWatch(wire::AddWatch {
            path: server_path.clone(),
            recursive,
        });
        let extra = Extra::Listen {
            kind,
            server_path,
            id,
            sender,
        };
        match self.call_with(path, op, extra).await? {
            reply::Result::AddWatch(_) => Ok(watch),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes this session's watches of `kind` on `path` from the server
    /// (ZooKeeper's removeWatches): [`WatcherType::Data`] the data and exist
    /// watches, [`WatcherType::Children`] the child watch,
    /// [`WatcherType::Persistent`] and
    /// [`WatcherType::PersistentRecursive`] the persistent ones,
    /// [`WatcherType::Any`] all of them. The client's own handles on them
    /// end: a one-shot [`Watch`] with [`Error::WatchRemoved`], a
    /// [`PersistentWatch`] stream without an error.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use session_client::WatcherType;
    ///
    /// client.remove_watches("/config", WatcherType::Any).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `NoWatcher` when the session held no such watch, `InvalidPath`, and
    /// the session errors.
    pub async fn remove_watches(&self, path: &str, kind: WatcherType) -> Result<(), Error> {
        let server_path = self.server_path(path)?;
        let op = request::Op::RemoveWatches(wire::RemoveWatches {
            path: server_path.clone(),
            watcher_type: watcher_type_to_wire(kind).into(),
        });
        let extra = Extra::RemoveWatches { server_path, kind };
        match self.call_with(path, op, extra).await? {
            reply::Result::RemoveWatches(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether the server holds a watch of `kind` on `path` for this
    /// session (ZooKeeper's checkWatches).
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// use session_client::WatcherType;
    ///
    /// let _watch = client.add_watch("/config", false).await?;
    /// assert!(client.check_watches("/config", WatcherType::Persistent).await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `InvalidPath`, and the session errors.
    pub async fn check_watches(&self, path: &str, kind: WatcherType) -> Result<bool, Error> {
        let op = request::Op::CheckWatches(wire::CheckWatches {
            path: self.server_path(path)?,
            watcher_type: watcher_type_to_wire(kind).into(),
        });
        match self.call(path, op, None).await {
            Ok((reply::Result::CheckWatches(_), _)) => Ok(true),
            Err(Error::NoWatcher { .. }) => Ok(false),
            Ok((other, _)) => Err(unexpected(&other)),
            Err(error) => Err(error),
        }
    }

    /// Deletes a node without children; `version` `Some(v)` deletes only if
    /// the node is at version `v`.
    ///
    /// # Errors
    /// `NoNode`, `BadVersion`, `NotEmpty`, `NoAuth` (no DELETE on the
    /// parent), `InvalidPath`, and the session errors.
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
    /// `NoNode`, `NoAuth` (no READ), `InvalidPath`, and the session errors.
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
    /// `NoNode`, `BadVersion`, `NoAuth` (no WRITE), `TooLarge`,
    /// `InvalidPath`, and the session errors.
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
    /// `NoNode`, `NoAuth` (no READ), `InvalidPath`, and the session errors.
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
        ops::server_path(&self.inner.servers, path)
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
        let state = *self.inner.state.borrow();
        self.inner
            .shared
            .terminal_error(state)
            .unwrap_or(Error::Closed)
    }

    async fn call(
        &self,
        path: &str,
        op: request::Op,
        watch: Option<WatchOn>,
    ) -> Result<(reply::Result, Option<Watch>), Error> {
        let (extra, watch_handle) = match watch {
            Some(on) => {
                let (sender, receiver) = oneshot::channel();
                let server_path = match &op {
                    request::Op::GetData(get) => get.path.clone(),
                    request::Op::Exists(exists) => exists.path.clone(),
                    request::Op::GetChildren(children) => children.path.clone(),
                    _ => String::new(),
                };
                let forget = ForgetWatch {
                    commands: self.inner.commands.downgrade(),
                    group: on.group(),
                    server_path: server_path.clone(),
                };
                (
                    Extra::Watch(on, server_path, sender),
                    Some(Watch {
                        receiver,
                        forget: Some(forget),
                    }),
                )
            }
            None => (Extra::None, None),
        };
        let result = self.call_with(path, op, extra).await?;
        Ok((result, watch_handle))
    }

    async fn call_with(
        &self,
        path: &str,
        op: request::Op,
        extra: Extra,
    ) -> Result<reply::Result, Error> {
        let state = *self.inner.state.borrow();
        if let Some(error) = self.inner.shared.terminal_error(state) {
            return Err(error);
        }
        let (reply, replied) = oneshot::channel();
        let command = Command::Request {
            op,
            path: path.to_owned(),
            extra,
            reply,
        };
        if self.inner.commands.send(command).is_err() {
            return Err(self.gone());
        }
        let answer = match self.request_timeout {
            // The task keeps the request: its late answer is absorbed there.
            Some(after) => tokio::time::timeout(after, replied)
                .await
                .map_err(|_| Error::RequestTimeout { after })?,
            None => replied.await,
        };
        match answer {
            Ok(Ok((result, _zxid))) => Ok(result),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(self.gone()),
        }
    }
}

/// The parent of `path` and its last component, for a protected create.
fn split_last(path: &str) -> Result<(&str, &str), Error> {
    let invalid = |detail: &str| Error::InvalidPath {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    match path.rfind('/') {
        Some(0) if path.len() == 1 => Err(invalid("the root has no name to protect")),
        Some(0) => Ok(("/", &path[1..])),
        Some(at) => Ok((&path[..at], &path[at + 1..])),
        None => Err(invalid("a path starts with '/'")),
    }
}

fn unexpected(result: &reply::Result) -> Error {
    Error::System {
        detail: format!("the server answered with an unexpected result: {result:?}"),
    }
}
