//! The background task: drives `session_core::ClientSession` with a TCP
//! transport, matches replies to requests, delivers watch events, reports
//! state changes, and after every (re)connection sends the remembered
//! credentials and then the watches again. Every decision about when to
//! connect, ping, give up on a server or declare the session lost is the
//! state machine's.
//!
//! One event loop owns the socket's reads, its writes and the timers: a
//! request is encoded into a buffer that the loop writes as the socket
//! takes it, so a write that cannot finish (a partition, a peer advertising
//! a zero window) never keeps the loop from noticing `2/3·T` of silence.
//!
//! The socket is plain TCP or, with TLS configured, rustls over TCP; the
//! handshake is part of opening a connection, under the same deadline. A
//! TLS failure (a certificate that does not verify, ours refused) is not a
//! lost connection: the server is skipped, and once every server of the
//! connect string has failed so the client ends with [`Error::Tls`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use session_core::{
    Action, ClientConfig, ClientEvent, ClientSession, ConnectString, EventKind, HostPort, Refusal,
    SessionId, SessionPassword, WatchKind, WatcherType, watch_kind_for_exists,
};
use session_wire::v1::{
    self as wire, ClientMessage, CloseSession, ErrorCode, Ping, RefusalReason, ServerMessage,
    handshake_reply, reply, request, server_message,
};
use session_wire::{
    ClientCodec, CodecError, DecodeError, FrameError, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION, XidCounter,
};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{Encoder, FramedRead};
use tracing::{debug, info, warn};

#[cfg(feature = "tls")]
use crate::TlsConfig;
use crate::tls::is_tls_record_prefix;
use crate::types::{event_kind_from_wire, watcher_type_to_wire};
use crate::watches::{EventSender, SET_WATCHES_BATCH_BYTES, WatchRegistry, WatchSender};
use crate::{Error, State, TlsFailure, WatchedEvent};

#[cfg(feature = "tls")]
type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

type Opening = Pin<Box<dyn Future<Output = Result<Transport, OpenError>> + Send>>;
pub(crate) type ReplySender = oneshot::Sender<Result<(reply::Result, u64), Error>>;

/// The current instant on tokio's clock (so paused-time tests work).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// What the session-level terminal states mean for a call.
pub(crate) fn terminal_error(state: State) -> Option<Error> {
    match state {
        State::Expired => Some(Error::SessionExpired),
        State::AuthFailed => Some(Error::AuthFailed),
        State::Closed => Some(Error::Closed),
        State::NotConnected | State::Connecting | State::Connected | State::Suspended => None,
    }
}

/// Which watch a read leaves if it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchOn {
    /// `get`: a data watch.
    Get,
    /// `exists`: a data watch on an existing node, an exist watch otherwise.
    Exists,
    /// `children`: a child watch.
    Children,
}

impl WatchOn {
    /// The watcher type that removes this watch from the server: `Data`
    /// takes data and exist watches, `Children` child watches.
    pub(crate) fn group(self) -> WatcherType {
        match self {
            Self::Get | Self::Exists => WatcherType::Data,
            Self::Children => WatcherType::Children,
        }
    }
}

/// What a request does besides its answer, for the task to keep track of.
#[derive(Debug)]
pub(crate) enum Extra {
    /// Nothing.
    None,
    /// A read that leaves a one-shot watch on the server path if it succeeds.
    Watch(WatchOn, String, WatchSender),
    /// An `AddWatch`: the persistent watch handle `id` of `kind` on the
    /// server path, fed by `sender` once the server set it.
    Listen {
        kind: WatchKind,
        server_path: String,
        id: u64,
        sender: EventSender,
    },
    /// A `RemoveWatches`: on success the client's own watches of that type
    /// on the server path go too.
    RemoveWatches {
        server_path: String,
        kind: WatcherType,
    },
    /// An `AddAuth`: the credential is remembered, and sent again after
    /// every reconnect, unless the server refuses it.
    AddAuth(Credential),
}

/// A credential given to `add_auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    pub(crate) scheme: String,
    pub(crate) credential: Bytes,
}

/// A request from a [`Client`](crate::Client) handle (or a
/// [`PersistentWatch`](crate::PersistentWatch)) to the task.
#[derive(Debug)]
pub(crate) enum Command {
    Request {
        op: request::Op,
        /// The client-side path, for error messages.
        path: String,
        extra: Extra,
        reply: ReplySender,
    },
    /// A persistent watch handle is gone: forget it, and remove the server's
    /// watch when it was the last handle on it. `done`, if any, gets the
    /// server's answer (or an empty success when nothing had to be asked).
    Unwatch {
        kind: WatchKind,
        server_path: String,
        id: u64,
        done: Option<ReplySender>,
    },
    /// A one-shot [`Watch`](crate::Watch) was dropped before it fired:
    /// forget it, and remove the server's watch of that type on the path
    /// when no other watch of the client needs it.
    ForgetWatch {
        /// `Data` (data and exist watches) or `Children`.
        group: WatcherType,
        server_path: String,
    },
    /// Close the session; the sender is dropped when the task ends.
    Close(oneshot::Sender<()>),
}

/// How the task runs, from the builder.
#[derive(Debug, Clone)]
pub(crate) struct DriverOptions {
    /// The session timeout to request, for a renewed session too.
    pub(crate) session_timeout: Duration,
    pub(crate) rng_seed: u64,
    /// `None`: session-core's `min(1 s, T/10)`.
    pub(crate) max_jitter: Option<Duration>,
    /// How long a close may try to reach a server.
    pub(crate) close_timeout: Duration,
    /// Open a new session when this one expires.
    pub(crate) auto_renew: bool,
    /// Dial every server with TLS, with these settings.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsConfig>,
}

/// What the session looks like from outside the task.
#[derive(Debug, Default)]
pub(crate) struct SessionInfo {
    pub(crate) session: Option<(SessionId, SessionPassword)>,
    pub(crate) negotiated: Option<Duration>,
    /// The server of the connection the session was last connected on.
    pub(crate) server: Option<std::net::SocketAddr>,
    pub(crate) last_error: Option<String>,
    pub(crate) subscribers: Vec<mpsc::UnboundedSender<State>>,
    /// Told the new session's id after each automatic renewal.
    pub(crate) renewal_subscribers: Vec<mpsc::UnboundedSender<SessionId>>,
    /// Set when the task has ended: no state change will come.
    pub(crate) finished: bool,
    /// Why the session ended, when the state alone does not say it (every
    /// server failed TLS: the state is `Closed`, the error [`Error::Tls`]).
    pub(crate) ended_by: Option<Error>,
}

/// Shared between the task and the handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    info: Mutex<SessionInfo>,
}

impl Shared {
    pub(crate) fn info(&self) -> MutexGuard<'_, SessionInfo> {
        // A panic while holding this lock leaves plain data behind: use it.
        self.info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What a call gets in `state`: [`terminal_error`], or the error that
    /// ended the session when it says more.
    pub(crate) fn terminal_error(&self, state: State) -> Option<Error> {
        let error = terminal_error(state)?;
        // Only looked up once terminal: a live session's calls take no lock.
        Some(self.info().ended_by.clone().unwrap_or(error))
    }
}

struct PendingWatch {
    on: WatchOn,
    server_path: String,
    sender: WatchSender,
    /// Events for the path that arrived before the reply (the server sends
    /// events queued while a request ran before its reply).
    early: Vec<(EventKind, u64)>,
}

/// What to do with a request's answer besides passing it on.
enum Purpose {
    /// Nothing.
    Plain,
    /// An `AddWatch`: confirm the handle, or drop it if the server refused.
    AddWatch {
        kind: WatchKind,
        server_path: String,
        id: u64,
    },
    /// A caller's `RemoveWatches`: drop the client's own watches too.
    RemoveWatches {
        server_path: String,
        kind: WatcherType,
    },
    /// An `AddAuth`: forget the credential if the server refused it.
    AddAuth(Credential),
}

struct Pending {
    /// `None` for the client's own requests (SetWatches, re-sent credentials,
    /// the RemoveWatches of a dropped persistent watch).
    reply: Option<ReplySender>,
    path: String,
    watch: Option<PendingWatch>,
    purpose: Purpose,
}

/// A newly opened byte stream to a server.
enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

/// Why a connection could not be opened.
enum OpenError {
    /// A network failure: the next server is tried as usual.
    Io(io::Error),
    /// TLS failed (a certificate did not verify): see [`Driver::tls_failed`].
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls(TlsFailure),
}

/// The reading half of a connection, framed.
enum Reader {
    Plain(FramedRead<OwnedReadHalf, ClientCodec>),
    #[cfg(feature = "tls")]
    Tls(FramedRead<tokio::io::ReadHalf<TlsStream>, ClientCodec>),
}

impl Reader {
    /// The next frame; cancel-safe, as `FramedRead::next` is: a frame half
    /// read stays in its buffer (and rustls keeps a record half read).
    async fn next(&mut self) -> Option<Result<ServerMessage, CodecError>> {
        match self {
            Self::Plain(reader) => reader.next().await,
            #[cfg(feature = "tls")]
            Self::Tls(reader) => reader.next().await,
        }
    }
}

/// The writing half of a connection.
enum Writer {
    Plain(OwnedWriteHalf),
    #[cfg(feature = "tls")]
    Tls(tokio::io::WriteHalf<TlsStream>),
}

impl Writer {
    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(writer) => Pin::new(writer).poll_write(cx, bytes),
            #[cfg(feature = "tls")]
            Self::Tls(writer) => Pin::new(writer).poll_write(cx, bytes),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(writer) => Pin::new(writer).poll_flush(cx),
            #[cfg(feature = "tls")]
            Self::Tls(writer) => Pin::new(writer).poll_flush(cx),
        }
    }
}

/// An open connection: frames are read as they come; frames to send are
/// encoded into `out`, which the event loop writes as the socket takes it.
struct Connection {
    reader: Reader,
    writer: Writer,
    out: BytesMut,
    /// rustls took bytes it has not yet written to the socket all: flush it
    /// (never set on a plain connection, whose writes go straight out).
    flush_due: bool,
    codec: ClientCodec,
    peer: Option<SocketAddr>,
    /// The connect string entry dialed, by index.
    host: usize,
    /// Whether a frame came: until then an error reading may be the
    /// server's refusal of our TLS certificate (TLS 1.3 reports it after
    /// the client's end of the handshake), or a TLS record on a plain
    /// connection.
    heard: bool,
}

impl Connection {
    fn new(transport: Transport, host: usize) -> Self {
        let (reader, writer, peer) = match transport {
            Transport::Plain(stream) => {
                let _ = stream.set_nodelay(true);
                let peer = stream.peer_addr().ok();
                let (read, writer) = stream.into_split();
                (
                    Reader::Plain(FramedRead::new(read, ClientCodec::new())),
                    Writer::Plain(writer),
                    peer,
                )
            }
            #[cfg(feature = "tls")]
            Transport::Tls(stream) => {
                let peer = stream.get_ref().0.peer_addr().ok();
                let (read, writer) = tokio::io::split(*stream);
                (
                    Reader::Tls(FramedRead::new(read, ClientCodec::new())),
                    Writer::Tls(writer),
                    peer,
                )
            }
        };
        Self {
            reader,
            writer,
            out: BytesMut::new(),
            flush_due: false,
            codec: ClientCodec::new(),
            peer,
            host,
            heard: false,
        }
    }

    fn is_tls(&self) -> bool {
        !matches!(self.writer, Writer::Plain(_))
    }

    /// Writes what is queued if the socket takes it at once, without
    /// waiting: the last bytes before the connection is dropped.
    fn flush_now(&mut self) {
        match &mut self.writer {
            Writer::Plain(writer) => {
                while !self.out.is_empty() {
                    match writer.try_write(&self.out) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => self.out.advance(n),
                    }
                }
            }
            #[cfg(feature = "tls")]
            Writer::Tls(_) => {
                // Polled once without a waker: what the socket takes now.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                while !self.out.is_empty() {
                    match self.writer.poll_write(&mut cx, &self.out) {
                        Poll::Ready(Ok(n)) if n > 0 => self.out.advance(n),
                        _ => break,
                    }
                }
                let _ = self.writer.poll_flush(&mut cx);
            }
        }
    }
}

/// What happened on the connection.
enum Io {
    Frame(Option<Result<ServerMessage, CodecError>>),
    Wrote(io::Result<usize>),
    Flushed(io::Result<()>),
}

/// The next frame read, or the next write (or TLS flush) the socket took;
/// never resolves without a connection. Both halves are cancel-safe: a
/// frame half read stays in the reader's buffer, a write that did not
/// complete wrote nothing (rustls returns `Pending` only when it took no
/// byte), and a flush not completed is done again.
async fn connection_io(connection: &mut Option<Connection>) -> Io {
    let Some(Connection {
        reader,
        writer,
        out,
        flush_due,
        ..
    }) = connection
    else {
        return std::future::pending().await;
    };
    let flush_due = *flush_due;
    let send = std::future::poll_fn(|cx| {
        if out.is_empty() {
            writer.poll_flush(cx).map(Io::Flushed)
        } else {
            writer.poll_write(cx, out).map(Io::Wrote)
        }
    });
    tokio::select! {
        frame = reader.next() => Io::Frame(frame),
        io = send, if !out.is_empty() || flush_due => io,
    }
}

pub(crate) struct Driver {
    session: ClientSession,
    servers: Arc<ConnectString>,
    options: DriverOptions,
    connection: Option<Connection>,
    opening: Option<Opening>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    /// `close()` was asked for (or every handle is gone).
    close_requested: bool,
    closers: Vec<oneshot::Sender<()>>,
    state: watch::Sender<State>,
    shared: Arc<Shared>,
    pending: HashMap<i32, Pending>,
    watches: WatchRegistry,
    /// Sent again, in order, first thing on every new connection.
    credentials: Vec<Credential>,
    xids: XidCounter,
    last_zxid: u64,
    /// Sessions opened after an expiry (auto-renew).
    renewals: u64,
    /// A renewed session is on its way: tell the subscribers once connected.
    renewing: bool,
    /// The connect string entry being dialed, by index.
    dialing: Option<usize>,
    /// The connect string entries whose last TLS handshake failed; every
    /// one of them in it ends the session with [`Error::Tls`].
    tls_failed: HashSet<usize>,
}

/// What woke the task.
enum Wake {
    Command(Option<Command>),
    Io(Io),
    Opened(Result<Transport, OpenError>),
    Timer,
}

async fn opened(opening: &mut Option<Opening>) -> Result<Transport, OpenError> {
    match opening {
        Some(opening) => opening.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(wake: Option<std::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Resolves `host` again (ZOOKEEPER-2184) and connects to the first address
/// that answers, then makes the TLS handshake when `tls` is given, all
/// before `deadline`.
async fn open(
    host: HostPort,
    deadline: std::time::Instant,
    #[cfg(feature = "tls")] tls: Option<TlsConfig>,
) -> Result<Transport, OpenError> {
    let attempt = async {
        let stream = dial(&host).await.map_err(OpenError::Io)?;
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            return handshake(&tls, &host, stream).await;
        }
        Ok(Transport::Plain(stream))
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    match tokio::time::timeout_at(deadline, attempt).await {
        Ok(Ok(transport)) => Ok(transport),
        Ok(Err(OpenError::Io(err))) => Err(OpenError::Io(io::Error::new(
            err.kind(),
            format!("{host}: {err}"),
        ))),
        Ok(Err(failure @ OpenError::Tls(_))) => Err(failure),
        Err(_) => Err(OpenError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{host}: connect timed out"),
        ))),
    }
}

/// A TCP connection to the first address of `host` that answers.
async fn dial(host: &HostPort) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host.host.as_str(), host.port)).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address")
    }))
}

/// The TLS handshake on `stream`, verifying the certificate against the
/// configured server name or else `host`'s.
#[cfg(feature = "tls")]
async fn handshake(
    tls: &TlsConfig,
    host: &HostPort,
    stream: TcpStream,
) -> Result<Transport, OpenError> {
    let _ = stream.set_nodelay(true);
    let name = tls.server_name_for(&host.host).map_err(|err| {
        OpenError::Tls(TlsFailure::Handshake {
            detail: err.to_string(),
        })
    })?;
    match tls.connector().connect(name.clone(), stream).await {
        Ok(stream) => Ok(Transport::Tls(Box::new(stream))),
        Err(err) => match crate::tls::tls_failure(&err, tls.has_client_cert()) {
            Some(failure) => Err(OpenError::Tls(crate::tls::with_name(failure, &name))),
            None => Err(OpenError::Io(err)),
        },
    }
}

/// A new state machine for `options`, renewal `renewals` (its own seed).
pub(crate) fn new_session(
    servers: &ConnectString,
    options: &DriverOptions,
    renewals: u64,
    now: std::time::Instant,
) -> ClientSession {
    let seed = options.rng_seed.wrapping_add(renewals);
    let session = ClientSession::new(
        ClientConfig::new(servers, options.session_timeout, seed),
        now,
    );
    match options.max_jitter {
        Some(max) => session.with_max_jitter(max),
        None => session,
    }
}

impl Driver {
    pub(crate) fn new(
        session: ClientSession,
        servers: Arc<ConnectString>,
        options: DriverOptions,
        commands: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<State>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            session,
            servers,
            options,
            connection: None,
            opening: None,
            commands,
            commands_open: true,
            close_requested: false,
            closers: Vec::new(),
            state,
            shared,
            pending: HashMap::new(),
            watches: WatchRegistry::default(),
            credentials: Vec::new(),
            xids: XidCounter::new(),
            last_zxid: 0,
            renewals: 0,
            renewing: false,
            dialing: None,
            tls_failed: HashSet::new(),
        }
    }

    /// Runs until the session is expired (and not renewed), closed or
    /// refused.
    pub(crate) async fn run(mut self) {
        loop {
            self.drain_outputs();
            if self.session.state().is_terminal() {
                if self.should_renew() {
                    self.renew();
                    continue;
                }
                break;
            }
            let wake = self.session.poll_timeout();
            let woke = tokio::select! {
                command = self.commands.recv(), if self.commands_open => Wake::Command(command),
                io = connection_io(&mut self.connection) => Wake::Io(io),
                result = opened(&mut self.opening) => Wake::Opened(result),
                () = sleep_until(wake) => Wake::Timer,
            };
            match woke {
                Wake::Command(Some(command)) => self.command(command),
                Wake::Command(None) => {
                    // Every handle is gone: nobody can use the session any more.
                    self.commands_open = false;
                    self.close();
                }
                Wake::Io(Io::Frame(frame)) => self.frame(frame),
                Wake::Io(Io::Wrote(wrote)) => self.wrote(wrote),
                Wake::Io(Io::Flushed(flushed)) => self.flushed(flushed),
                Wake::Opened(result) => self.opened(result),
                Wake::Timer => self.session.handle_timeout(now()),
            }
        }
        self.finish();
    }

    fn should_renew(&self) -> bool {
        self.options.auto_renew
            && self.session.state() == State::Expired
            && self.commands_open
            && !self.close_requested
    }

    /// The session expired and the builder asked for a new one: start over
    /// with a new session, keeping the credentials (sent again on its first
    /// connection) and the last zxid seen.
    fn renew(&mut self) {
        self.renewals += 1;
        info!(
            expired = ?self.session.session_id(),
            renewal = self.renewals,
            "session expired: opening a new one"
        );
        self.drop_connection();
        self.session = new_session(&self.servers, &self.options, self.renewals, now());
        self.renewing = true;
    }

    /// Does every action the state machine asks for, in order, then reports
    /// its state changes; repeats until both are drained.
    fn drain_outputs(&mut self) {
        loop {
            if let Some(action) = self.session.poll_action() {
                self.act(action);
            } else if let Some(ClientEvent::StateChanged(state)) = self.session.poll_event() {
                self.state_changed(state);
            } else {
                return;
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect {
                host: index,
                deadline,
            } => {
                let Some(host) = self.servers.hosts().get(index).cloned() else {
                    // The state machine names hosts by index into the same list.
                    self.session.handle_connect_failed(now());
                    return;
                };
                debug!(%host, "connecting");
                self.dialing = Some(index);
                self.opening = Some(Box::pin(open(
                    host,
                    deadline,
                    #[cfg(feature = "tls")]
                    self.options.tls.clone(),
                )));
            }
            Action::SendHandshake(handshake) => {
                let message = wire::Handshake {
                    protocol_version: PROTOCOL_VERSION,
                    requested_timeout_ms: u32::try_from(handshake.requested_timeout.as_millis())
                        .unwrap_or(u32::MAX),
                    session_id: handshake.session.map_or(0, |(id, _)| id.as_u64()),
                    password: handshake
                        .session
                        .map(|(_, password)| Bytes::copy_from_slice(password.as_bytes()))
                        .unwrap_or_default(),
                    last_zxid_seen: self.last_zxid,
                    client_name: env!("CARGO_PKG_NAME").to_owned(),
                    client_version: env!("CARGO_PKG_VERSION").to_owned(),
                };
                self.send(&message.into());
            }
            Action::SendPing => self.send(&Ping {}.into()),
            Action::SendClose => self.send(&CloseSession {}.into()),
            Action::DropTransport => {
                if let Some(connection) = self.connection.as_mut() {
                    connection.flush_now();
                }
                self.drop_connection();
            }
        }
    }

    fn state_changed(&mut self, state: State) {
        info!(?state, session = ?self.session.session_id(), "client state changed");
        if state == State::Connected {
            let server = self
                .connection
                .as_ref()
                .and_then(|connection| connection.peer);
            let mut info = self.shared.info();
            info.session = self.session.session_id().zip(self.session.password());
            info.negotiated = self.session.negotiated_timeout();
            info.server = server;
        }
        self.state.send_replace(state);
        {
            let mut info = self.shared.info();
            info.subscribers
                .retain(|subscriber| subscriber.send(state).is_ok());
        }
        if let Some(error) = self.shared.terminal_error(state) {
            self.fail_pending(&error);
            self.watches.fail_all(&error);
        } else if state == State::Connected {
            // Credentials first: the server checks the watches' (and every
            // later request's) access with the connection's identities.
            self.send_credentials();
            self.reregister_watches();
            if std::mem::take(&mut self.renewing) {
                if let Some(id) = self.session.session_id() {
                    let mut info = self.shared.info();
                    info.renewal_subscribers
                        .retain(|subscriber| subscriber.send(id).is_ok());
                }
            }
        }
    }

    /// Sends a request of the client's own: its answer is only logged.
    fn send_own(&mut self, op: request::Op, purpose: Purpose) {
        let xid = self.xids.next_xid().get();
        self.pending.insert(
            xid,
            Pending {
                reply: None,
                path: String::new(),
                watch: None,
                purpose,
            },
        );
        self.send_request(xid, op);
    }

    /// Authenticates the new connection as the previous ones were: the
    /// server keeps identities per connection, not per session.
    fn send_credentials(&mut self) {
        if !self.credentials.is_empty() {
            debug!(
                credentials = self.credentials.len(),
                "sending the credentials again"
            );
        }
        for credential in self.credentials.clone() {
            let op = request::Op::AddAuth(wire::AddAuth {
                scheme: credential.scheme.clone(),
                credential: credential.credential.clone(),
            });
            self.send_own(op, Purpose::AddAuth(credential));
        }
    }

    /// Sets every watch again on the new connection, with the last zxid seen:
    /// the server fires at once those whose node changed meanwhile.
    fn reregister_watches(&mut self) {
        self.watches.prune();
        if self.watches.len() == 0 {
            return;
        }
        let batches = self
            .watches
            .set_watches(self.last_zxid, SET_WATCHES_BATCH_BYTES);
        debug!(
            watches = self.watches.len(),
            frames = batches.len(),
            "re-registering watches"
        );
        for batch in batches {
            self.send_own(request::Op::SetWatches(batch), Purpose::Plain);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Close(done) => {
                self.closers.push(done);
                self.close();
            }
            Command::Request {
                op,
                path,
                extra,
                reply,
            } => self.request(op, path, extra, reply),
            Command::Unwatch {
                kind,
                server_path,
                id,
                done,
            } => self.unwatch(kind, server_path, id, done),
            Command::ForgetWatch { group, server_path } => {
                self.watches.prune_path(&server_path);
                self.remove_unused_watch(group, &server_path);
            }
        }
    }

    /// Asks the state machine to close the session: it reaches a server
    /// if one answers before the close timeout.
    fn close(&mut self) {
        self.close_requested = true;
        let now = now();
        self.session.close(now, now + self.options.close_timeout);
    }

    fn request(&mut self, op: request::Op, path: String, extra: Extra, reply: ReplySender) {
        let state = self.session.state();
        if let Some(error) = self.shared.terminal_error(state) {
            let _ = reply.send(Err(error));
            return;
        }
        if self.close_requested {
            let _ = reply.send(Err(Error::Closed));
            return;
        }
        if state != State::Connected || self.connection.is_none() {
            let _ = reply.send(Err(Error::ConnectionLoss));
            return;
        }
        let (watch, purpose) = match extra {
            Extra::None => (None, Purpose::Plain),
            Extra::Watch(on, server_path, sender) => (
                Some(PendingWatch {
                    on,
                    server_path,
                    sender,
                    early: Vec::new(),
                }),
                Purpose::Plain,
            ),
            Extra::Listen {
                kind,
                server_path,
                id,
                sender,
            } => {
                // Registered now, so that a handle dropped meanwhile on the
                // same path does not remove the server's watch after this
                // request set it.
                self.watches
                    .add_persistent(kind, server_path.clone(), id, sender);
                (
                    None,
                    Purpose::AddWatch {
                        kind,
                        server_path,
                        id,
                    },
                )
            }
            Extra::RemoveWatches { server_path, kind } => {
                (None, Purpose::RemoveWatches { server_path, kind })
            }
            Extra::AddAuth(credential) => {
                // Remembered from now: if the connection drops before the
                // answer, the next one gets it too.
                if !self.credentials.contains(&credential) {
                    self.credentials.push(credential.clone());
                }
                (None, Purpose::AddAuth(credential))
            }
        };
        let xid = self.xids.next_xid().get();
        self.pending.insert(
            xid,
            Pending {
                reply: Some(reply),
                path,
                watch,
                purpose,
            },
        );
        self.send_request(xid, op);
    }

    /// Forgets a persistent watch handle; the server's watch goes with the
    /// last handle on it.
    fn unwatch(
        &mut self,
        kind: WatchKind,
        server_path: String,
        id: u64,
        done: Option<ReplySender>,
    ) {
        let last = self.watches.remove_persistent(kind, &server_path, id);
        if !(last && self.connected()) {
            // Nothing to ask: another handle still uses the watch, or there
            // is no connection (and it will not be set again on the next).
            if let Some(done) = done {
                let nothing = reply::Result::RemoveWatches(wire::RemoveWatchesResult {});
                let _ = done.send(Ok((nothing, self.last_zxid)));
            }
            return;
        }
        let watcher_type = if kind == WatchKind::PersistentRecursive {
            WatcherType::PersistentRecursive
        } else {
            WatcherType::Persistent
        };
        let op = request::Op::RemoveWatches(wire::RemoveWatches {
            path: server_path.clone(),
            watcher_type: watcher_type_to_wire(watcher_type).into(),
        });
        let xid = self.xids.next_xid().get();
        self.pending.insert(
            xid,
            Pending {
                reply: done,
                path: self.client_path(&server_path),
                watch: None,
                purpose: Purpose::Plain,
            },
        );
        self.send_request(xid, op);
    }

    /// Removes the server's one-shot watches of `group` on `server_path`
    /// when no watch of the client needs them any more: none held, and none
    /// on its way in a request not yet answered (the server would set it
    /// before this removal, and the removal would take it too).
    fn remove_unused_watch(&mut self, group: WatcherType, server_path: &str) {
        if self.watches.holds(group.kinds(), server_path) {
            return;
        }
        let on_its_way = self.pending.values().any(|pending| {
            pending.watch.as_ref().is_some_and(|watch| {
                watch.server_path == server_path
                    && watch.on.group() == group
                    && !watch.sender.is_closed()
            })
        });
        if on_its_way || !self.connected() {
            // Without a connection the watch is not set again on the next.
            return;
        }
        debug!(
            path = server_path,
            ?group,
            "removing a dropped watch from the server"
        );
        let op = request::Op::RemoveWatches(wire::RemoveWatches {
            path: server_path.to_owned(),
            watcher_type: watcher_type_to_wire(group).into(),
        });
        self.send_own(op, Purpose::Plain);
    }

    fn connected(&self) -> bool {
        self.session.state() == State::Connected && self.connection.is_some()
    }

    /// Queues one request; one too large for a frame fails alone, the
    /// connection unharmed.
    fn send_request(&mut self, xid: i32, op: request::Op) {
        let message = ClientMessage::from(wire::Request { xid, op: Some(op) });
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if let Err(err) = connection.codec.encode(&message, &mut connection.out) {
            if let Some(pending) = self.pending.remove(&xid) {
                if let Some(reply) = pending.reply {
                    let _ = reply.send(Err(Error::TooLarge {
                        detail: err.to_string(),
                    }));
                }
            }
        }
    }

    /// Queues one frame of the session's own (handshake, ping, close).
    fn send(&mut self, message: &ClientMessage) {
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if let Err(err) = connection.codec.encode(message, &mut connection.out) {
            self.note_error(format!("send failed: {err}"));
            self.lose_transport();
        }
    }

    /// The socket took `wrote` bytes of the queue (or failed).
    fn wrote(&mut self, wrote: io::Result<usize>) {
        match wrote {
            Ok(n) if n > 0 => {
                if let Some(connection) = self.connection.as_mut() {
                    connection.out.advance(n);
                    // rustls may hold some of it back until flushed.
                    connection.flush_due = connection.is_tls();
                }
                self.session.handle_frame_sent(now());
            }
            Ok(_) => {
                self.note_error("send failed: the connection took no bytes".to_owned());
                self.lose_transport();
            }
            Err(err) => {
                self.note_error(format!("send failed: {err}"));
                self.lose_transport();
            }
        }
    }

    /// rustls wrote out what it held back (or failed to).
    fn flushed(&mut self, flushed: io::Result<()>) {
        match flushed {
            Ok(()) => {
                if let Some(connection) = self.connection.as_mut() {
                    connection.flush_due = false;
                }
            }
            Err(err) => {
                self.note_error(format!("send failed: {err}"));
                self.lose_transport();
            }
        }
    }

    fn opened(&mut self, result: Result<Transport, OpenError>) {
        self.opening = None;
        let Some(index) = self.dialing.take() else {
            // Every attempt is dialed by `act`, which names its host.
            self.session.handle_connect_failed(now());
            return;
        };
        match result {
            Ok(transport) => {
                self.connection = Some(Connection::new(transport, index));
                self.session.handle_connected(now());
            }
            Err(OpenError::Io(err)) => {
                debug!(error = %err, "connect attempt failed");
                self.note_error(err.to_string());
                self.session.handle_connect_failed(now());
            }
            Err(OpenError::Tls(failure)) => self.tls_failed(index, failure),
        }
    }

    /// Whether the connections present a client certificate.
    fn client_cert(&self) -> bool {
        #[cfg(feature = "tls")]
        return self
            .options
            .tls
            .as_ref()
            .is_some_and(TlsConfig::has_client_cert);
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The connect string entry `index` as `host:port`.
    fn server_name(&self, index: usize) -> String {
        self.servers
            .hosts()
            .get(index)
            .map_or_else(String::new, ToString::to_string)
    }

    /// TLS with connect string entry `index` failed: not a network failure,
    /// so the server is skipped rather than counted as lost. Once every
    /// entry's last handshake failed so, retrying cannot help (the
    /// certificates or the CA are wrong): the session ends with
    /// [`Error::Tls`], at once if it was never established.
    fn tls_failed(&mut self, index: usize, reason: TlsFailure) {
        let server = self.server_name(index);
        warn!(%server, %reason, "TLS with the server failed");
        self.note_error(format!("TLS with {server} failed: {reason}"));
        self.tls_failed.insert(index);
        let now = now();
        if self.tls_failed.len() < self.servers.hosts().len() {
            if self.connection.is_some() {
                self.lose_transport();
            } else {
                self.session.handle_connect_failed(now);
            }
            return;
        }
        self.shared.info().ended_by = Some(Error::Tls { server, reason });
        self.drop_connection();
        // Closed at once: no server is left to send a close to.
        self.session.close(now, now);
    }

    fn frame(&mut self, frame: Option<Result<ServerMessage, CodecError>>) {
        let now = now();
        let client_cert = self.client_cert();
        if let Some(connection) = self.connection.as_mut() {
            if !connection.heard {
                let index = connection.host;
                if let Some(reason) =
                    first_read_tls_failure(connection.is_tls(), client_cert, &frame)
                {
                    self.tls_failed(index, reason);
                    return;
                }
                if matches!(frame, Some(Ok(_))) {
                    connection.heard = true;
                    // This server's TLS works (or TLS is off).
                    self.tls_failed.remove(&index);
                }
            }
        }
        let kind = match frame {
            Some(Ok(ServerMessage { kind: Some(kind) })) => kind,
            Some(Ok(ServerMessage { kind: None })) => {
                self.note_error("the server sent a message of unknown kind".to_owned());
                self.lose_transport();
                return;
            }
            Some(Err(err)) => {
                self.note_error(format!("bad frame from the server: {err}"));
                self.lose_transport();
                return;
            }
            None => {
                let plain_and_unheard = self
                    .connection
                    .as_ref()
                    .is_some_and(|connection| !connection.heard && !connection.is_tls());
                self.note_error(if plain_and_unheard {
                    // What a TLS port does to a plain-text handshake.
                    "the server closed the connection before answering the handshake (is it a TLS port? use tls:// and a CA)".to_owned()
                } else {
                    "the server closed the connection".to_owned()
                });
                self.lose_transport();
                return;
            }
        };
        match kind {
            server_message::Kind::HandshakeReply(reply) => self.handshake_reply(reply, now),
            server_message::Kind::Pong(_) => self.session.handle_frame_received(now),
            server_message::Kind::CloseAck(_) => {
                self.session.handle_frame_received(now);
                self.session.handle_close_acknowledged(now);
            }
            server_message::Kind::Reply(reply) => {
                self.session.handle_frame_received(now);
                self.reply(reply);
            }
            server_message::Kind::WatchEvent(event) => {
                self.session.handle_frame_received(now);
                self.watch_event(event);
            }
            server_message::Kind::Disconnect(disconnect) => {
                info!(reason = ?disconnect.reason(), detail = %disconnect.detail,
                    "the server closed the connection");
                match disconnect.reason() {
                    ErrorCode::SessionExpired => self.session.handle_refused(Refusal::Expired, now),
                    ErrorCode::AuthFailed => self.session.handle_refused(Refusal::AuthFailed, now),
                    reason => {
                        self.note_error(format!(
                            "disconnected by the server ({reason:?}): {}",
                            disconnect.detail
                        ));
                        self.lose_transport();
                    }
                }
            }
        }
    }

    fn handshake_reply(&mut self, reply: wire::HandshakeReply, now: std::time::Instant) {
        let version = reply.protocol_version;
        if !(MIN_PROTOCOL_VERSION..=MAX_PROTOCOL_VERSION).contains(&version) {
            // Another server may speak ours; this one's answer cannot be read.
            self.note_error(format!(
                "the server answered in protocol version {version}; this client speaks {MIN_PROTOCOL_VERSION}..={MAX_PROTOCOL_VERSION}"
            ));
            self.lose_transport();
            return;
        }
        match reply.outcome {
            Some(handshake_reply::Outcome::Granted(granted)) => {
                let Some(password) = SessionPassword::from_slice(&granted.password) else {
                    self.note_error(format!(
                        "the server granted a session with a {}-byte password",
                        granted.password.len()
                    ));
                    self.lose_transport();
                    return;
                };
                self.session.handle_handshake_accepted(
                    SessionId::from_u64(granted.session_id),
                    password,
                    Duration::from_millis(u64::from(granted.negotiated_timeout_ms)),
                    now,
                );
            }
            Some(handshake_reply::Outcome::Refused(refusal)) => match refusal.reason() {
                RefusalReason::Expired => self.session.handle_refused(Refusal::Expired, now),
                RefusalReason::AuthFailed => self.session.handle_refused(Refusal::AuthFailed, now),
                reason => {
                    // Another server may do better (shutting down, full, behind).
                    self.note_error(format!(
                        "handshake refused ({reason:?}): {}",
                        refusal.detail
                    ));
                    self.lose_transport();
                }
            },
            None => {
                self.note_error("handshake reply without an outcome".to_owned());
                self.lose_transport();
            }
        }
    }

    fn reply(&mut self, reply: wire::Reply) {
        self.last_zxid = self.last_zxid.max(reply.zxid);
        let Some(pending) = self.pending.remove(&reply.xid) else {
            warn!(xid = reply.xid, "reply to no request in flight");
            return;
        };
        let result = match reply.result {
            None => Err(Error::System {
                detail: format!("reply to xid {} without a result", reply.xid),
            }),
            Some(reply::Result::Error(error)) => Err(Error::from_op(error, &pending.path)),
            Some(result) => Ok(result),
        };
        if let (Ok(result), Some(watch)) = (&result, pending.watch) {
            self.register_watch(watch, result, reply.zxid);
        }
        match pending.purpose {
            Purpose::Plain => {}
            Purpose::AddWatch {
                kind,
                server_path,
                id,
            } => match &result {
                Ok(reply::Result::AddWatch(_)) => {
                    self.watches.confirm(kind, &server_path, id, reply.zxid);
                }
                _ => {
                    self.watches.remove_persistent(kind, &server_path, id);
                }
            },
            Purpose::RemoveWatches { server_path, kind } => {
                if matches!(result, Ok(reply::Result::RemoveWatches(_))) {
                    let removed = Error::WatchRemoved {
                        path: self.client_path(&server_path),
                    };
                    self.watches
                        .remove_kinds(&server_path, kind.kinds(), &removed);
                }
            }
            Purpose::AddAuth(credential) => {
                if let Err(error @ Error::AuthRefused { .. }) = &result {
                    warn!(scheme = %credential.scheme, %error, "credential refused: forgotten");
                    self.credentials.retain(|kept| *kept != credential);
                }
            }
        }
        match pending.reply {
            Some(sender) => {
                let _ = sender.send(result.map(|result| (result, reply.zxid)));
            }
            None => match result {
                Ok(_) | Err(Error::NoWatcher { .. }) => {}
                Err(error) => warn!(%error, "a request of the client's own failed"),
            },
        }
    }

    fn register_watch(&mut self, watch: PendingWatch, result: &reply::Result, zxid: u64) {
        let kind = match (watch.on, result) {
            (WatchOn::Get, reply::Result::GetData(_)) => WatchKind::Data,
            (WatchOn::Exists, reply::Result::Exists(exists)) => {
                watch_kind_for_exists(exists.stat.is_some())
            }
            (WatchOn::Children, reply::Result::GetChildren(_)) => WatchKind::Child,
            _ => return,
        };
        // An event stamped after the reply's zxid came from a change made after
        // the server set this watch: it fired the watch already.
        let fired = watch
            .early
            .iter()
            .find(|(event, event_zxid)| *event_zxid > zxid && kind.fired_by(*event));
        match fired {
            Some(&(event, event_zxid)) => {
                let event = WatchedEvent {
                    kind: event,
                    path: self.client_path(&watch.server_path),
                    zxid: event_zxid,
                };
                let _ = watch.sender.send(Ok(event));
            }
            // The caller dropped its `Watch` (or gave up on the answer)
            // before the server set it: remove it there again.
            None if watch.sender.is_closed() => {
                self.remove_unused_watch(watch.on.group(), &watch.server_path);
            }
            None => self.watches.add(kind, watch.server_path, watch.sender),
        }
    }

    fn watch_event(&mut self, event: wire::WatchEvent) {
        self.last_zxid = self.last_zxid.max(event.zxid);
        let Some(kind) = event_kind_from_wire(event.kind()) else {
            return;
        };
        for pending in self.pending.values_mut() {
            if let Some(watch) = pending.watch.as_mut() {
                if watch.server_path == event.path {
                    watch.early.push((kind, event.zxid));
                }
            }
        }
        let watched = WatchedEvent {
            kind,
            path: self.client_path(&event.path),
            zxid: event.zxid,
        };
        self.watches.deliver(kind, &event.path, &watched);
        for sender in self.watches.take_fired(kind, &event.path) {
            let _ = sender.send(Ok(watched.clone()));
        }
    }

    fn client_path(&self, server_path: &str) -> String {
        self.servers
            .strip_path(server_path)
            .unwrap_or(server_path)
            .to_owned()
    }

    /// The transport broke: tell the state machine and fail what was in flight.
    fn lose_transport(&mut self) {
        self.drop_connection();
        self.session.handle_transport_lost(now());
    }

    fn drop_connection(&mut self) {
        self.connection = None;
        self.opening = None;
        self.fail_pending(&Error::ConnectionLoss);
    }

    fn fail_pending(&mut self, error: &Error) {
        for (_, pending) in self.pending.drain() {
            if let Some(sender) = pending.reply {
                let _ = sender.send(Err(error.clone()));
            }
            // A watch not yet set on the server is not set at all.
            if let Some(watch) = pending.watch {
                drop(watch.sender);
            }
            if let Purpose::AddWatch {
                kind,
                server_path,
                id,
            } = pending.purpose
            {
                self.watches.remove_persistent(kind, &server_path, id);
            }
        }
    }

    fn note_error(&self, error: String) {
        self.shared.info().last_error = Some(error);
    }

    /// The session is over: answer everything still queued and let every
    /// handle, stream and watch know.
    fn finish(&mut self) {
        let error = self
            .shared
            .terminal_error(self.session.state())
            .unwrap_or(Error::Closed);
        self.drop_connection();
        self.watches.fail_all(&error);
        {
            let mut info = self.shared.info();
            info.finished = true;
            info.subscribers.clear();
            info.renewal_subscribers.clear();
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Request { reply, .. }
                | Command::Unwatch {
                    done: Some(reply), ..
                } => {
                    let _ = reply.send(Err(error.clone()));
                }
                Command::Unwatch { done: None, .. }
                | Command::ForgetWatch { .. }
                | Command::Close(_) => {}
            }
        }
        self.closers.clear();
    }
}

/// What the first read on a connection says about TLS, if anything: on a
/// TLS connection, the server's refusal of our certificate (TLS 1.3 sends
/// it after the client has finished its end of the handshake); on a plain
/// one, a TLS record (the server's alert at our plain-text handshake) read
/// as a frame length.
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
fn first_read_tls_failure(
    tls: bool,
    client_cert: bool,
    frame: &Option<Result<ServerMessage, CodecError>>,
) -> Option<TlsFailure> {
    match frame {
        #[cfg(feature = "tls")]
        Some(Err(CodecError::Io(err))) if tls => crate::tls::tls_failure(err, client_cert),
        Some(Err(CodecError::Decode(DecodeError::Frame(FrameError::Oversize { len, .. }))))
            if !tls && is_tls_record_prefix(*len) =>
        {
            Some(TlsFailure::ServerRequiresTls)
        }
        _ => None,
    }
}
