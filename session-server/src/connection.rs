//! One client connection: the handshake, then requests in order until the
//! client closes, the session moves or expires, or the server shuts down.
//!
//! A connection handles its requests one at a time, in order, and writes each
//! reply before reading the next request; a client that pipelines faster than
//! it reads replies is slowed by TCP itself (as ZooKeeper throttles), so the
//! server never buffers more than one request per connection. Watch events and
//! disconnect notices from other tasks arrive in the connection's mailbox and
//! are written before any later reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message;
use session_core::{OwnerId, ReattachError, SessionId, SessionPassword, TouchError};
use session_wire::v1::{
    self as wire, ClientMessage, CloseAck, Disconnect, ErrorCode, HandshakeRefusal, HandshakeReply,
    NodeKind, Pong, RefusalReason, Reply, ServerMessage, SessionGranted, client_message,
    handshake_reply, reply, request,
};
use session_wire::{
    LENGTH_PREFIX_LEN, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, ServerCodec,
    expect_handshake,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

use crate::convert;
use crate::metrics::{CloseReason, OpKind};
use crate::namespace::CreateMode;
use crate::server::{ConnectionHandle, Notice, SessionEvent, SessionEventKind, Shared};
use crate::state::{ApplyError, Command, Outcome, State};

/// Read and write buffers start this small and grow only for large frames,
/// so an idle connection costs little.
const INITIAL_BUFFER: usize = 256;

type Transport = Framed<TcpStream, ServerCodec>;

/// Serves one accepted connection to its end.
pub(crate) async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _admission = match shared.admit(remote.ip()) {
        Ok(admission) => admission,
        Err(reason) => {
            shared.metrics.count_close(reason);
            warn!(%remote, ?reason, "refusing connection: limit reached");
            let mut transport = transport(&shared, stream);
            let refusal = refusal(
                RefusalReason::TooManyConnections,
                format!("connection limit reached ({reason:?})"),
            );
            let _ = transport.send(refusal).await;
            linger(transport).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut transport = transport(&shared, stream);
    if let Some(session) = handshake(&shared, &mut transport, remote).await {
        let id = session.id;
        let owner = session.owner;
        let mut connection = Connection {
            shared: &shared,
            transport: &mut transport,
            mailbox: session.mailbox,
            id,
            owner,
            remote,
        };
        let reason = connection.serve(shutdown).await;
        // The session stays (the client may reattach elsewhere until it
        // expires); only this connection's registration goes, if the session
        // has not moved meanwhile.
        shared
            .connections
            .remove_if(&id, |_, handle| handle.owner == owner);
        match reason {
            Some(reason) => {
                shared.metrics.count_close(reason);
                info!(session = %id, %remote, ?reason, "connection closed by server");
            }
            None => debug!(session = %id, %remote, "connection closed"),
        }
    }
    linger(transport).await;
}

/// Closes so that the last message sent (a refusal, a disconnect notice)
/// reaches the client: closing a socket with unread input makes the kernel
/// send a reset, which can destroy data still in flight to the client. So the
/// server shuts its side, then reads and discards what the client still sends,
/// for a bounded time and amount.
async fn linger(transport: Transport) {
    const LINGER: Duration = Duration::from_secs(1);
    const DISCARD: usize = 256 * 1024;
    let mut stream = transport.into_inner();
    if stream.shutdown().await.is_err() {
        return;
    }
    // On the heap, and only now: an array here would be part of every
    // connection task's state for the connection's whole life.
    let mut scratch = vec![0u8; 4096];
    let mut discarded = 0;
    let deadline = Instant::now() + LINGER;
    while discarded < DISCARD {
        match tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await {
            Ok(Ok(read)) if read > 0 => discarded += read,
            _ => return,
        }
    }
}

fn transport(shared: &Shared, stream: TcpStream) -> Transport {
    let max = u32::try_from(shared.config.limits.max_frame_bytes).unwrap_or(u32::MAX);
    Framed::with_capacity(stream, ServerCodec::with_max_frame_len(max), INITIAL_BUFFER)
}

fn refusal(reason: RefusalReason, detail: impl Into<String>) -> ServerMessage {
    HandshakeReply {
        protocol_version: PROTOCOL_VERSION,
        outcome: Some(handshake_reply::Outcome::Refused(HandshakeRefusal {
            reason: reason.into(),
            detail: detail.into(),
            min_supported_version: MIN_PROTOCOL_VERSION,
            max_supported_version: MAX_PROTOCOL_VERSION,
        })),
    }
    .into()
}

struct Established {
    id: SessionId,
    owner: OwnerId,
    mailbox: mpsc::UnboundedReceiver<Notice>,
}

/// Reads the handshake within the deadline and creates or reattaches the
/// session; on refusal, says why and returns `None`.
async fn handshake(
    shared: &Shared,
    transport: &mut Transport,
    remote: SocketAddr,
) -> Option<Established> {
    let limits = &shared.config.limits;
    let started = Instant::now();
    let first = match tokio::time::timeout(limits.handshake_timeout, transport.next()).await {
        Err(_) => {
            shared.metrics.count_close(CloseReason::handshake_timeout);
            info!(%remote, timeout_ms = limits.handshake_timeout.as_millis() as u64,
                "closing connection: no handshake in time");
            return None;
        }
        Ok(None) => return None,
        Ok(Some(Err(err))) => {
            shared.metrics.count_close(CloseReason::bad_frame);
            warn!(%remote, error = %err, "closing connection: bad first frame");
            let _ = transport
                .send(refusal(RefusalReason::BadHandshake, err.to_string()))
                .await;
            return None;
        }
        Ok(Some(Ok(first))) => first,
    };
    let handshake = match expect_handshake(first) {
        Ok(handshake) => handshake,
        Err(err) => {
            shared.metrics.count_close(CloseReason::protocol_violation);
            warn!(%remote, error = %err, "closing connection: first message is not a handshake");
            let _ = transport
                .send(refusal(RefusalReason::BadHandshake, err.to_string()))
                .await;
            return None;
        }
    };
    let version = handshake.protocol_version;
    if !(MIN_PROTOCOL_VERSION..=MAX_PROTOCOL_VERSION).contains(&version) {
        shared.metrics.count_close(CloseReason::protocol_violation);
        warn!(%remote, version, "closing connection: unsupported protocol version");
        let detail = format!(
            "protocol version {version} is not supported; this server speaks {MIN_PROTOCOL_VERSION}..={MAX_PROTOCOL_VERSION}"
        );
        let _ = transport
            .send(refusal(RefusalReason::UnsupportedVersion, detail))
            .await;
        return None;
    }
    let requested = Duration::from_millis(u64::from(handshake.requested_timeout_ms));
    let owner = shared.next_owner();
    let (mailbox_tx, mailbox) = mpsc::unbounded_channel();
    let client = client_label(&handshake.client_name, &handshake.client_version);
    let granted = match establish(
        shared, &handshake, requested, owner, remote, client, mailbox_tx,
    ) {
        Ok(granted) => granted,
        Err((reason, close)) => {
            shared.metrics.count_close(close);
            // A wrong password and an unknown session differ only in the
            // reason code; the detail says nothing more.
            let detail = match reason {
                RefusalReason::AuthFailed => "wrong password for the session",
                _ => "session expired",
            };
            let _ = transport.send(refusal(reason, detail)).await;
            return None;
        }
    };
    let id = SessionId::from_u64(granted.session_id);
    let timeout_ms = granted.negotiated_timeout_ms;
    let kind = if granted.reattached {
        shared.metrics.reattaches.inc();
        info!(session = %id, %remote, timeout_ms, "session reattached");
        SessionEventKind::Reattached
    } else {
        shared.metrics.sessions_created.inc();
        info!(session = %id, %remote, timeout_ms, "session created");
        SessionEventKind::Created
    };
    shared.publish(SessionEvent {
        id,
        kind,
        remote: Some(remote),
        timeout_ms,
        zxid: granted.zxid,
    });
    let reply: ServerMessage = HandshakeReply {
        protocol_version: PROTOCOL_VERSION,
        outcome: Some(handshake_reply::Outcome::Granted(granted)),
    }
    .into();
    shared.metrics.bytes_out.inc_by(frame_len(&reply));
    if transport.send(reply).await.is_err() {
        // The client left before hearing the reply: drop the registration made
        // under the lock (the session itself stays until it expires).
        shared
            .connections
            .remove_if(&id, |_, handle| handle.owner == owner);
        return None;
    }
    shared
        .metrics
        .observe_op(OpKind::handshake, started.elapsed());
    Some(Established { id, owner, mailbox })
}

/// Creates or reattaches the session under the state lock and registers the
/// connection; on refusal, returns what to tell the client and why.
fn establish(
    shared: &Shared,
    handshake: &wire::Handshake,
    requested: Duration,
    owner: OwnerId,
    remote: SocketAddr,
    client: String,
    mailbox: mpsc::UnboundedSender<Notice>,
) -> Result<SessionGranted, (RefusalReason, CloseReason)> {
    let reattaching = handshake.session_id != 0;
    let command = if reattaching {
        let id = SessionId::from_u64(handshake.session_id);
        let Some(password) = SessionPassword::from_slice(&handshake.password) else {
            warn!(session = %id, %remote, len = handshake.password.len(),
                "refusing reattach: password of the wrong length");
            return Err((RefusalReason::AuthFailed, CloseReason::auth_failed));
        };
        Command::ReattachSession {
            id,
            password,
            requested,
            owner,
        }
    } else {
        Command::CreateSession { requested, owner }
    };
    let mut state = shared.state();
    let applied = shared
        .apply(&mut state, command, Instant::now())
        .map_err(|err| {
            info!(session = format_args!("{:#018x}", handshake.session_id), %remote,
                error = %err, "refusing handshake");
            match err {
                ApplyError::Reattach(ReattachError::WrongPassword { .. }) => {
                    (RefusalReason::AuthFailed, CloseReason::auth_failed)
                }
                _ => (RefusalReason::Expired, CloseReason::expired),
            }
        })?;
    let (id, password, timeout, moved_from) = match applied.outcome {
        Outcome::SessionCreated(new) => (new.id, new.password, new.timeout, None),
        Outcome::SessionReattached(reattached) => {
            let id = SessionId::from_u64(handshake.session_id);
            let password = state
                .tracker()
                .password(id)
                .expect("invariant: a session just reattached is in the tracker");
            (id, password, reattached.timeout, reattached.previous_owner)
        }
        other => unreachable!("a handshake command produced {other:?}"),
    };
    // Registered under the lock, so no watch event fired after this point can
    // miss the new connection.
    let previous = shared.connections.insert(
        id,
        ConnectionHandle {
            owner,
            remote,
            client,
            mailbox,
        },
    );
    if let Some(previous) = previous.filter(|previous| Some(previous.owner) == moved_from) {
        let _ = previous.mailbox.send(Notice::Disconnect(
            Box::new(Disconnect {
                reason: ErrorCode::SessionMoved.into(),
                detail: format!("session {id} moved to another connection"),
            }),
            CloseReason::moved,
        ));
    }
    Ok(SessionGranted {
        negotiated_timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        session_id: id.as_u64(),
        password: Bytes::copy_from_slice(password.as_bytes()),
        server_id: u32::from(shared.config.server_id.get()),
        reattached: reattaching,
        zxid: state.zxid(),
    })
}

fn frame_len(message: &impl Message) -> u64 {
    (message.encoded_len() + LENGTH_PREFIX_LEN) as u64
}

struct Connection<'a> {
    shared: &'a Shared,
    transport: &'a mut Transport,
    mailbox: mpsc::UnboundedReceiver<Notice>,
    id: SessionId,
    owner: OwnerId,
    remote: SocketAddr,
}

/// The outcome of the synchronous part of a message.
enum Handled {
    /// Send this, counted as an operation of this kind, then go on or close.
    Answer(OpKind, ServerMessage, Next),
    /// Say why and close.
    Disconnect(Disconnect, CloseReason),
}

/// What to do after a message.
enum Next {
    Continue,
    /// Close, giving the server's reason (`None`: the client asked).
    Close(Option<CloseReason>),
}

impl Connection<'_> {
    /// Serves until the connection ends; returns why the server closed it, or
    /// `None` when the client did.
    async fn serve(&mut self, mut shutdown: watch::Receiver<bool>) -> Option<CloseReason> {
        // Made once: a fresh one per turn would register and drop a waiter on
        // the watch channel all connections share, twice per message.
        let mut stop = std::pin::pin!(crate::server::stopped(&mut shutdown));
        loop {
            tokio::select! {
                biased;
                notice = self.mailbox.recv() => {
                    let notice = notice?;
                    if let Next::Close(reason) = self.notice(notice).await {
                        return reason;
                    }
                    if SinkExt::<ServerMessage>::flush(self.transport).await.is_err() {
                        return None;
                    }
                }
                frame = self.transport.next() => match frame {
                    None => return None,
                    Some(Err(err)) => {
                        warn!(session = %self.id, remote = %self.remote, error = %err,
                            "closing connection: bad frame");
                        let _ = self.send(Disconnect {
                            reason: ErrorCode::BadArguments.into(),
                            detail: err.to_string(),
                        }.into()).await;
                        return Some(CloseReason::bad_frame);
                    }
                    Some(Ok(message)) => {
                        if let Next::Close(reason) = self.message(message).await {
                            return reason;
                        }
                    }
                },
                () = &mut stop => {
                    let _ = self.send(Disconnect {
                        reason: ErrorCode::ServerShuttingDown.into(),
                        detail: "server shutting down".to_owned(),
                    }.into()).await;
                    return Some(CloseReason::shutdown);
                }
            }
        }
    }

    /// Queues a notice for writing; the caller flushes.
    async fn notice(&mut self, notice: Notice) -> Next {
        match notice {
            Notice::Watch(event) => {
                let message = ServerMessage::from(*event);
                self.shared.metrics.bytes_out.inc_by(frame_len(&message));
                if self.transport.feed(message).await.is_err() {
                    return Next::Close(None);
                }
                Next::Continue
            }
            Notice::Disconnect(disconnect, reason) => {
                let _ = self.send((*disconnect).into()).await;
                Next::Close(Some(reason))
            }
        }
    }

    async fn send(&mut self, message: ServerMessage) -> Result<(), ()> {
        self.shared.metrics.bytes_out.inc_by(frame_len(&message));
        self.transport.send(message).await.map_err(|_| ())
    }

    async fn message(&mut self, message: ClientMessage) -> Next {
        let started = Instant::now();
        self.shared.metrics.bytes_in.inc_by(frame_len(&message));
        let (kind, response, next) = match self.handle(message, started) {
            Handled::Answer(kind, response, next) => (kind, response, next),
            Handled::Disconnect(disconnect, reason) => {
                let _ = self.send(disconnect.into()).await;
                return Next::Close(Some(reason));
            }
        };
        // Watch events queued while this request ran (its own, and those of
        // other sessions' writes) go out before its reply.
        while let Ok(notice) = self.mailbox.try_recv() {
            if let Next::Close(reason) = self.notice(notice).await {
                return Next::Close(reason);
            }
        }
        if self.send(response).await.is_err() {
            return Next::Close(None);
        }
        self.shared.metrics.observe_op(kind, started.elapsed());
        next
    }

    /// The synchronous part of a message: under the state lock, with no await.
    fn handle(&mut self, message: ClientMessage, now: Instant) -> Handled {
        let mut state = self.shared.state();
        // Every frame keeps the session alive, not only pings.
        if let Err(err) = state.touch(self.id, self.owner, now.into_std()) {
            let (code, reason) = match err {
                TouchError::Moved { .. } => (ErrorCode::SessionMoved, CloseReason::moved),
                TouchError::Unknown { .. } | TouchError::Closing { .. } => {
                    (ErrorCode::SessionExpired, CloseReason::expired)
                }
            };
            let disconnect = Disconnect {
                reason: code.into(),
                detail: err.to_string(),
            };
            return Handled::Disconnect(disconnect, reason);
        }
        match message.kind {
            Some(client_message::Kind::Ping(_)) => {
                Handled::Answer(OpKind::ping, Pong {}.into(), Next::Continue)
            }
            Some(client_message::Kind::CloseSession(_)) => {
                self.close_session(&mut state, now);
                Handled::Answer(OpKind::close, CloseAck {}.into(), Next::Close(None))
            }
            Some(client_message::Kind::Request(request)) => {
                let (kind, reply) = self.request(&mut state, request, now);
                Handled::Answer(kind, reply.into(), Next::Continue)
            }
            Some(client_message::Kind::Handshake(_)) | None => {
                warn!(session = %self.id, remote = %self.remote,
                    "closing connection: handshake sent twice");
                let disconnect = Disconnect {
                    reason: ErrorCode::BadArguments.into(),
                    detail: "a handshake may only be the first message".to_owned(),
                };
                Handled::Disconnect(disconnect, CloseReason::protocol_violation)
            }
        }
    }

    fn close_session(&mut self, state: &mut State, now: Instant) {
        if let Ok(applied) = self
            .shared
            .apply(state, Command::CloseSession { id: self.id }, now)
        {
            let deleted = match applied.outcome {
                Outcome::SessionClosed { ephemerals_deleted } => ephemerals_deleted,
                _ => 0,
            };
            self.shared.metrics.sessions_closed.inc();
            self.shared
                .connections
                .remove_if(&self.id, |_, handle| handle.owner == self.owner);
            self.shared.publish(SessionEvent {
                id: self.id,
                kind: SessionEventKind::Closed,
                remote: Some(self.remote),
                timeout_ms: 0,
                zxid: applied.zxid,
            });
            info!(session = %self.id, remote = %self.remote, ephemerals_deleted = deleted,
                "session closed");
        }
    }

    fn request(
        &mut self,
        state: &mut State,
        request: wire::Request,
        now: Instant,
    ) -> (OpKind, Reply) {
        let xid = request.xid;
        let (kind, result) = match request.op {
            // A newer client's operation: protobuf leaves the oneof unset.
            // The connection stays usable (session-wire's versioning rule).
            None => (
                OpKind::unknown,
                Err(convert::op_error(
                    ErrorCode::Unimplemented,
                    "this server does not know the request's operation",
                )),
            ),
            Some(op) if xid <= 0 => (
                op_kind(&op),
                Err(convert::op_error(
                    ErrorCode::BadArguments,
                    format!("xid {xid} is not positive"),
                )),
            ),
            Some(op) => (op_kind(&op), self.operation(state, op, now)),
        };
        let mut reply = Reply {
            xid,
            zxid: state.zxid(),
            result: Some(result.unwrap_or_else(reply::Result::Error)),
        };
        let max_body = self
            .shared
            .config
            .limits
            .max_frame_bytes
            .saturating_sub(LENGTH_PREFIX_LEN);
        if reply.encoded_len() > max_body {
            reply.result = Some(reply::Result::Error(convert::op_error(
                ErrorCode::TooLarge,
                format!("the reply would exceed the {max_body}-byte frame limit"),
            )));
        }
        (kind, reply)
    }

    fn operation(
        &mut self,
        state: &mut State,
        op: request::Op,
        now: Instant,
    ) -> Result<reply::Result, wire::OpError> {
        let session = self.id;
        let shared = self.shared;
        match op {
            request::Op::Create(create) => {
                let mode = match (NodeKind::try_from(create.kind), create.sequential) {
                    (Ok(NodeKind::Persistent), false) => CreateMode::Persistent,
                    (Ok(NodeKind::Persistent), true) => CreateMode::PersistentSequential,
                    (Ok(NodeKind::Ephemeral), false) => CreateMode::Ephemeral,
                    (Ok(NodeKind::Ephemeral), true) => CreateMode::EphemeralSequential,
                    (kind, _) => {
                        return Err(convert::op_error(
                            ErrorCode::BadArguments,
                            format!("node kind {kind:?} is neither persistent nor ephemeral"),
                        ));
                    }
                };
                // Copied, so a small node does not pin the connection's
                // (possibly large) receive buffer for its lifetime.
                let data = Bytes::copy_from_slice(&create.data);
                let command = Command::CreateNode {
                    session,
                    path: create.path,
                    data,
                    mode,
                };
                let applied = shared
                    .apply(state, command, now)
                    .map_err(|e| convert::apply_error(&e))?;
                let Outcome::NodeCreated(path) = applied.outcome else {
                    unreachable!("create produced {:?}", applied.outcome)
                };
                let stat = state
                    .namespace()
                    .exists(&path)
                    .ok()
                    .flatten()
                    .map(|s| convert::stat(&s));
                Ok(reply::Result::Create(wire::CreateResult { path, stat }))
            }
            request::Op::Delete(delete) => {
                let command = Command::DeleteNode {
                    path: delete.path,
                    version: expected_version(delete.expected_version),
                };
                // `Shared::apply` has delivered the fired watches already.
                let _applied = shared
                    .apply(state, command, now)
                    .map_err(|e| convert::apply_error(&e))?;
                Ok(reply::Result::Delete(wire::DeleteResult {}))
            }
            request::Op::SetData(set) => {
                let command = Command::SetData {
                    path: set.path,
                    data: Bytes::copy_from_slice(&set.data),
                    version: expected_version(set.expected_version),
                };
                let applied = shared
                    .apply(state, command, now)
                    .map_err(|e| convert::apply_error(&e))?;
                let Outcome::DataSet(stat) = applied.outcome else {
                    unreachable!("set produced {:?}", applied.outcome)
                };
                Ok(reply::Result::SetData(wire::SetDataResult {
                    stat: Some(convert::stat(&stat)),
                }))
            }
            request::Op::GetData(get) => {
                let namespace = state.namespace_mut();
                let (data, stat) = if get.watch {
                    namespace.get_data_and_watch(&get.path, session)
                } else {
                    namespace.get_data(&get.path)
                }
                .map_err(|e| convert::namespace_error(&e))?;
                Ok(reply::Result::GetData(wire::GetDataResult {
                    data,
                    stat: Some(convert::stat(&stat)),
                }))
            }
            request::Op::Exists(exists) => {
                let namespace = state.namespace_mut();
                let stat = if exists.watch {
                    namespace.exists_and_watch(&exists.path, session)
                } else {
                    namespace.exists(&exists.path)
                }
                .map_err(|e| convert::namespace_error(&e))?;
                Ok(reply::Result::Exists(wire::ExistsResult {
                    stat: stat.map(|s| convert::stat(&s)),
                }))
            }
            request::Op::GetChildren(get) => {
                let namespace = state.namespace_mut();
                let (children, stat) = if get.watch {
                    namespace.children_and_watch(&get.path, session)
                } else {
                    namespace.children(&get.path)
                }
                .map_err(|e| convert::namespace_error(&e))?;
                Ok(reply::Result::GetChildren(wire::GetChildrenResult {
                    children,
                    stat: Some(convert::stat(&stat)),
                }))
            }
            request::Op::SetWatches(set) => {
                let fired = state
                    .namespace_mut()
                    .set_watches(
                        session,
                        set.last_zxid_seen,
                        &set.data_paths,
                        &set.exist_paths,
                        &set.child_paths,
                    )
                    .map_err(|e| convert::namespace_error(&e))?;
                shared.deliver(&fired);
                Ok(reply::Result::SetWatches(wire::SetWatchesResult {}))
            }
        }
    }
}

/// `name/version` as the client gave them, bounded so a hostile client cannot
/// make the server keep a large string per session.
fn client_label(name: &str, version: &str) -> String {
    const MAX: usize = 64;
    let mut label = match (name.is_empty(), version.is_empty()) {
        (true, _) => String::new(),
        (false, true) => name.to_owned(),
        (false, false) => format!("{name}/{version}"),
    };
    if label.len() > MAX {
        let mut end = MAX;
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        label.truncate(end);
    }
    label
}

/// Absent, or ZooKeeper's -1, matches any version.
fn expected_version(raw: Option<i32>) -> Option<i32> {
    raw.filter(|&version| version != -1)
}

fn op_kind(op: &request::Op) -> OpKind {
    match op {
        request::Op::Create(_) => OpKind::create,
        request::Op::Delete(_) => OpKind::delete,
        request::Op::GetData(_) => OpKind::get_data,
        request::Op::SetData(_) => OpKind::set_data,
        request::Op::Exists(_) => OpKind::exists,
        request::Op::GetChildren(_) => OpKind::get_children,
        request::Op::SetWatches(_) => OpKind::set_watches,
    }
}

#[cfg(test)]
mod tests {
    /// Every open connection is one of these futures, alive for as long as
    /// the connection: its size is the server's memory per idle session. A
    /// local buffer in any async fn it awaits would become part of it, as a
    /// 4 KiB one once did (the future was 4.8 KB; after moving it to the
    /// heap, 1.7 KB in a debug build).
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (stream, remote) = listener.accept().await.expect("accept");
        let config = crate::ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            admin_listen: None,
            metrics_listen: None,
            ..crate::ServerConfig::default()
        };
        let server = crate::Server::start(config).await.expect("start");
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let future = super::run(server.shared_for_tests(), stream, remote, shutdown);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 2560, "a connection task takes {size} bytes");
        drop(future);
        // A mailbox allocates its slots in blocks: keep a slot small.
        assert!(std::mem::size_of::<crate::server::Notice>() <= 16);
        server.shutdown().await;
    }
}
