//! The background task: drives `session_core::ClientSession` with a TCP
//! transport, matches replies to requests, delivers watch events and reports
//! state changes. Every decision about when to connect, ping, give up on a
//! server or declare the session lost is the state machine's.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use session_core::{
    Action, ClientEvent, ClientSession, ConnectString, EventKind, HostPort, Refusal, SessionId,
    SessionPassword, WatchKind, watch_kind_for_exists,
};
use session_wire::v1::{
    self as wire, ClientMessage, CloseSession, ErrorCode, Ping, RefusalReason, ServerMessage,
    handshake_reply, reply, request, server_message,
};
use session_wire::{
    ClientCodec, CodecError, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    XidCounter,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

use crate::types::event_kind_from_wire;
use crate::watches::{SET_WATCHES_BATCH_BYTES, WatchRegistry, WatchSender};
use crate::{Error, State, WatchedEvent};

type Transport = Framed<TcpStream, ClientCodec>;
type Opening = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;
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

/// A request from a [`Client`](crate::Client) handle to the task.
#[derive(Debug)]
pub(crate) enum Command {
    Request {
        op: request::Op,
        /// The client-side path, for error messages.
        path: String,
        watch: Option<(WatchOn, String, WatchSender)>,
        reply: ReplySender,
    },
    /// Close the session; the sender is dropped when the task ends.
    Close(oneshot::Sender<()>),
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
    /// Set when the task has ended: no state change will come.
    pub(crate) finished: bool,
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
}

struct PendingWatch {
    on: WatchOn,
    server_path: String,
    sender: WatchSender,
    /// Events for the path that arrived before the reply (the server sends
    /// events queued while a request ran before its reply).
    early: Vec<(EventKind, u64)>,
}

struct Pending {
    /// `None` for the client's own requests (SetWatches).
    reply: Option<ReplySender>,
    path: String,
    watch: Option<PendingWatch>,
}

pub(crate) struct Driver {
    session: ClientSession,
    servers: Arc<ConnectString>,
    transport: Option<Transport>,
    opening: Option<Opening>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    closers: Vec<oneshot::Sender<()>>,
    state: watch::Sender<State>,
    shared: Arc<Shared>,
    pending: HashMap<i32, Pending>,
    watches: WatchRegistry,
    xids: XidCounter,
    last_zxid: u64,
}

/// What woke the task.
enum Wake {
    Command(Option<Command>),
    Frame(Option<Result<ServerMessage, CodecError>>),
    Opened(io::Result<TcpStream>),
    Timer,
}

async fn next_frame(
    transport: &mut Option<Transport>,
) -> Option<Result<ServerMessage, CodecError>> {
    match transport {
        Some(transport) => transport.next().await,
        None => std::future::pending().await,
    }
}

async fn opened(opening: &mut Option<Opening>) -> io::Result<TcpStream> {
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
/// that answers, before `deadline`.
async fn open(host: HostPort, deadline: std::time::Instant) -> io::Result<TcpStream> {
    let attempt = async {
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
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    match tokio::time::timeout_at(deadline, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(io::Error::new(err.kind(), format!("{host}: {err}"))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{host}: connect timed out"),
        )),
    }
}

impl Driver {
    pub(crate) fn new(
        session: ClientSession,
        servers: Arc<ConnectString>,
        commands: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<State>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            session,
            servers,
            transport: None,
            opening: None,
            commands,
            commands_open: true,
            closers: Vec::new(),
            state,
            shared,
            pending: HashMap::new(),
            watches: WatchRegistry::default(),
            xids: XidCounter::new(),
            last_zxid: 0,
        }
    }

    /// Runs until the session is expired, closed or refused.
    pub(crate) async fn run(mut self) {
        loop {
            self.drain_outputs().await;
            if self.session.state().is_terminal() {
                break;
            }
            let wake = self.session.poll_timeout();
            let woke = tokio::select! {
                command = self.commands.recv(), if self.commands_open => Wake::Command(command),
                frame = next_frame(&mut self.transport) => Wake::Frame(frame),
                result = opened(&mut self.opening) => Wake::Opened(result),
                () = sleep_until(wake) => Wake::Timer,
            };
            match woke {
                Wake::Command(Some(command)) => self.command(command).await,
                Wake::Command(None) => {
                    // Every handle is gone: nobody can use the session any more.
                    self.commands_open = false;
                    self.session.close(now());
                }
                Wake::Frame(frame) => self.frame(frame),
                Wake::Opened(result) => self.opened(result),
                Wake::Timer => self.session.handle_timeout(now()),
            }
        }
        self.finish();
    }

    /// Does every action the state machine asks for, in order, then reports
    /// its state changes; repeats until both are drained.
    async fn drain_outputs(&mut self) {
        loop {
            if let Some(action) = self.session.poll_action() {
                self.act(action).await;
            } else if let Some(ClientEvent::StateChanged(state)) = self.session.poll_event() {
                self.state_changed(state).await;
            } else {
                return;
            }
        }
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Connect { host, deadline } => {
                let Some(host) = self.servers.hosts().get(host).cloned() else {
                    // The state machine names hosts by index into the same list.
                    self.session.handle_connect_failed(now());
                    return;
                };
                debug!(%host, "connecting");
                self.opening = Some(Box::pin(open(host, deadline)));
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
                self.send(message.into()).await;
            }
            Action::SendPing => self.send(Ping {}.into()).await,
            Action::SendClose => self.send_close().await,
            Action::DropTransport => self.drop_transport(),
        }
    }

    async fn state_changed(&mut self, state: State) {
        info!(?state, session = ?self.session.session_id(), "client state changed");
        if state == State::Connected {
            let server = self
                .transport
                .as_ref()
                .and_then(|transport| transport.get_ref().peer_addr().ok());
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
        if let Some(error) = terminal_error(state) {
            self.fail_pending(&error);
            self.watches.fail_all(&error);
        } else if state == State::Connected {
            self.reregister_watches().await;
        }
    }

    /// Sets every watch again on the new connection, with the last zxid seen:
    /// the server fires at once those whose node changed meanwhile.
    async fn reregister_watches(&mut self) {
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
            let xid = self.xids.next_xid().get();
            self.pending.insert(
                xid,
                Pending {
                    reply: None,
                    path: String::new(),
                    watch: None,
                },
            );
            let message = wire::Request {
                xid,
                op: Some(request::Op::SetWatches(batch)),
            };
            self.send(message.into()).await;
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Close(done) => {
                self.closers.push(done);
                self.session.close(now());
            }
            Command::Request {
                op,
                path,
                watch,
                reply,
            } => {
                let state = self.session.state();
                if let Some(error) = terminal_error(state) {
                    let _ = reply.send(Err(error));
                    return;
                }
                if state != State::Connected || self.transport.is_none() {
                    let _ = reply.send(Err(Error::ConnectionLoss));
                    return;
                }
                let xid = self.xids.next_xid().get();
                let watch = watch.map(|(on, server_path, sender)| PendingWatch {
                    on,
                    server_path,
                    sender,
                    early: Vec::new(),
                });
                self.pending.insert(
                    xid,
                    Pending {
                        reply: Some(reply),
                        path,
                        watch,
                    },
                );
                let message = wire::Request { xid, op: Some(op) };
                self.send(message.into()).await;
            }
        }
    }

    /// Writes one frame; a failure is a lost transport.
    async fn send(&mut self, message: ClientMessage) {
        let Some(transport) = self.transport.as_mut() else {
            return;
        };
        match transport.send(message).await {
            Ok(()) => self.session.handle_frame_sent(now()),
            Err(err) => {
                self.note_error(format!("send failed: {err}"));
                self.lose_transport();
            }
        }
    }

    /// Asks the server to close the session and waits (at most the read
    /// timeout) for its answer, so the session's ephemerals are gone when
    /// `close()` returns.
    async fn send_close(&mut self) {
        self.send(CloseSession {}.into()).await;
        let deadline = tokio::time::Instant::now() + self.session.timings().read_timeout;
        while let Some(transport) = self.transport.as_mut() {
            let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, transport.next()).await
            else {
                return;
            };
            match message.kind {
                Some(server_message::Kind::Reply(reply)) => self.reply(reply),
                Some(server_message::Kind::WatchEvent(event)) => self.watch_event(event),
                Some(server_message::Kind::Pong(_)) => {}
                _ => return,
            }
        }
    }

    fn opened(&mut self, result: io::Result<TcpStream>) {
        self.opening = None;
        match result {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                self.transport = Some(Framed::new(stream, ClientCodec::new()));
                self.session.handle_connected(now());
            }
            Err(err) => {
                debug!(error = %err, "connect attempt failed");
                self.note_error(err.to_string());
                self.session.handle_connect_failed(now());
            }
        }
    }

    fn frame(&mut self, frame: Option<Result<ServerMessage, CodecError>>) {
        let now = now();
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
                self.note_error("the server closed the connection".to_owned());
                self.lose_transport();
                return;
            }
        };
        match kind {
            server_message::Kind::HandshakeReply(reply) => self.handshake_reply(reply, now),
            server_message::Kind::Pong(_) | server_message::Kind::CloseAck(_) => {
                self.session.handle_frame_received(now);
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
        match pending.reply {
            Some(sender) => {
                let _ = sender.send(result.map(|result| (result, reply.zxid)));
            }
            None => {
                if let Err(error) = result {
                    warn!(%error, "re-registering watches failed");
                }
            }
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
        let fired = self.watches.take_fired(kind, &event.path);
        if fired.is_empty() {
            return;
        }
        let watched = WatchedEvent {
            kind,
            path: self.client_path(&event.path),
            zxid: event.zxid,
        };
        for sender in fired {
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
        self.drop_transport();
        self.session.handle_transport_lost(now());
    }

    fn drop_transport(&mut self) {
        self.transport = None;
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
        }
    }

    fn note_error(&self, error: String) {
        self.shared.info().last_error = Some(error);
    }

    /// The session is over: answer everything still queued and let every
    /// handle, stream and watch know.
    fn finish(&mut self) {
        let error = terminal_error(self.session.state()).unwrap_or(Error::Closed);
        self.drop_transport();
        self.watches.fail_all(&error);
        {
            let mut info = self.shared.info();
            info.finished = true;
            info.subscribers.clear();
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Request { reply, .. } = command {
                let _ = reply.send(Err(error.clone()));
            }
        }
        self.closers.clear();
    }
}
