//! One client connection, for every protocol: the handshake, then requests
//! until the client closes, the session moves or expires, the peer stops
//! reading, or the server shuts down.
//!
//! What a connection guarantees, whatever its [`Frontend`]:
//! - the handshake arrives within the deadline, or the connection closes;
//! - every frame read keeps the session alive (it is touched when the bytes
//!   are read, not when a request is handled);
//! - requests are pipelined: the connection reads the next request while
//!   earlier replies are still being written, and replies go out in request
//!   order. At most [`max_requests_in_flight`](crate::Limits::max_requests_in_flight)
//!   requests are read but unanswered on the wire; past that, or while a
//!   frame's worth of replies waits, nothing more is read and TCP slows the
//!   client down;
//! - watch events (queued in the mailbox by whoever applied the change) are
//!   written before any later reply;
//! - a request from a connection whose session moved away is answered by a
//!   SessionMoved disconnect;
//! - a peer that reads nothing for its session timeout while replies wait is
//!   disconnected, and its slot freed, without waiting on it;
//! - the close lingers so the last message (a refusal, a disconnect notice)
//!   reaches the client instead of being destroyed by a TCP reset.
//!
//! The socket ([`Socket`]: plain TCP, or TLS driven over it) is used
//! through readiness (`readable`/`try_read`, `writable`/`try_write`), so
//! reading and writing never wait on each other and an idle connection
//! holds no buffer at all: buffers are taken when bytes come or go and
//! given back once empty.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use session_core::{Context, Id, Op, Outcome, SessionId, TouchError, Txn, TxnError};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tracing::{debug, info, warn};

use crate::auth;
use crate::engine::{Proposal, Tag};
use crate::frontend::{
    Code, Frontend, Granted, Handshake, Inbound, OpError, OpResult, Operation, Outbound, Refusal,
    Violation, four_letter,
};
use crate::metrics::{CloseReason, OpKind};
use crate::server::{
    Admission, ConnectionHandle, Notice, ReadAnswer, SessionEvent, SessionEventKind, Shared,
};
use crate::state::{DeferredRead, Role, txn_error};
use crate::transport::{Socket, TLS_HANDSHAKE_RECORD, TlsFailure};

/// Read buffers start this small and grow only for large frames. Every
/// buffer is given back once empty, so an idle connection holds none (a
/// few hundred bytes less per held session, for an allocation per read and
/// per write).
const INITIAL_BUFFER: usize = 256;
/// How long a server behind a reattaching client's last zxid waits to
/// catch up before it refuses the client (who then tries another server).
const CATCH_UP_WAIT: Duration = Duration::from_millis(500);
/// How long a `sync` waits for this server's replica to reach the zxid the
/// leader gave.
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// Serves one accepted connection to its end.
///
/// Not an `async fn`, which would keep its arguments for its whole life
/// beside what they become: they go to the admission and the handshake, a
/// boxed future of their own that is gone once the connection is open, so
/// that what they hold (the socket before it is part of the connection,
/// the handshake's session, the shutdown flag) takes no room in the future
/// every open connection is.
pub(crate) fn run<F: Frontend>(
    shared: Arc<Shared>,
    stream: Socket,
    remote: SocketAddr,
    frontend: F,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    let opening = Box::pin(open(shared, stream, remote, frontend, shutdown));
    async move {
        let Some(Opened {
            shared,
            admission,
            io,
            session,
            remote,
            stopping,
        }) = opening.await
        else {
            return;
        };
        let mut connection = Connection {
            shared: &shared,
            io,
            mailbox: session.mailbox,
            id: session.id,
            owner: session.owner,
            remote,
            timeout: session.timeout,
            unanswered: VecDeque::new(),
            written: 0,
            stall: None,
            proposed: VecDeque::new(),
            auth: admission.ids(),
        };
        let reason = if stopping {
            connection
                .notice(Notice::Disconnect(Box::new(shutting_down())))
                .err()
                .flatten()
        } else {
            connection.serve().await
        };
        let (id, owner) = (connection.id, connection.owner);
        // The session stays (the client may reattach elsewhere until it
        // expires); only this connection's registration goes, if the
        // session has not moved meanwhile.
        shared
            .machine
            .connections
            .remove_if(&id, |_, handle| handle.owner() == owner);
        match reason {
            Some(reason) => {
                shared.metrics.count_close(reason);
                info!(session = %id, %remote, ?reason, "connection closed by server");
            }
            None => debug!(session = %id, %remote, "connection closed"),
        }
        // The slot is free from here: lingering is bounded and owes the
        // limits nothing.
        drop(admission);
        // Boxed, as the handshake: the rare and the last steps stay out of
        // the future every open connection is.
        Box::pin(connection.io.linger()).await;
    }
}

/// An admitted connection whose handshake went through: what serving it
/// takes.
struct Opened<F> {
    shared: Arc<Shared>,
    admission: Admission,
    io: Io<F>,
    session: Established,
    remote: SocketAddr,
    /// Shutdown had begun when the connection was registered: it is told
    /// so at once.
    stopping: bool,
}

/// Admits the connection and runs the handshake; `None` when it was
/// refused or the handshake failed (then it has lingered and is closed).
async fn open<F: Frontend>(
    shared: Arc<Shared>,
    stream: Socket,
    remote: SocketAddr,
    frontend: F,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Opened<F>> {
    let mut io = Io {
        stream,
        input: BytesMut::new(),
        output: BytesMut::new(),
        frontend,
    };
    let admission = match shared.admit(remote.ip()) {
        Ok(admission) => admission,
        Err(reason) => {
            shared.metrics.count_close(reason);
            warn!(%remote, ?reason, "refusing connection: limit reached");
            io.encode(
                &shared,
                Outbound::Refused {
                    reason: Refusal::TooManyConnections,
                    detail: format!("connection limit reached ({reason:?})"),
                },
            );
            io.linger().await;
            return None;
        }
    };
    let _ = io.stream.set_nodelay(true);
    let Some(session) = handshake(&shared, &mut io, remote, &mut shutdown).await else {
        drop(admission);
        io.linger().await;
        return None;
    };
    // Shutdown reaches a connection in its mailbox once it is registered
    // (the server tells every registered connection after raising the
    // flag); one registered just as the flag rose sees the flag here.
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    let stopping = *shutdown.borrow();
    Some(Opened {
        shared,
        admission,
        io,
        session,
        remote,
        stopping,
    })
}

/// The socket, its buffers and the protocol spoken on it.
struct Io<F> {
    stream: Socket,
    /// Bytes read and not yet decoded.
    input: BytesMut,
    /// Bytes encoded and not yet written.
    output: BytesMut,
    frontend: F,
}

impl<F: Frontend> Io<F> {
    /// Appends a message to the output and counts its bytes.
    fn encode(&mut self, shared: &Shared, message: Outbound) {
        let before = self.output.len();
        self.frontend.encode(message, &mut self.output);
        let added = self.output.len() - before;
        shared.metrics.bytes_out.inc_by(added as u64);
    }

    /// Writes what the socket takes now without waiting; returns the bytes
    /// written, or an error when the peer is gone.
    fn write_now(&mut self) -> std::io::Result<usize> {
        let mut total = 0;
        while !self.output.is_empty() {
            match self.stream.try_write(&self.output) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    // Advanced, not split: a split makes the buffer shared,
                    // which takes an allocation of its own.
                    self.output.advance(written);
                    total += written;
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        match self.stream.flush_pending() {
            Err(err) if err.kind() != std::io::ErrorKind::WouldBlock => return Err(err),
            _ => {}
        }
        // Given back whatever its capacity: an empty buffer whose capacity
        // was all written still holds its allocation.
        if self.output.is_empty() {
            self.output = BytesMut::new();
        }
        Ok(total)
    }

    /// Reads what the socket has now without waiting; `Ok(0)` is the peer's
    /// end of stream, `WouldBlock` means nothing was there.
    fn read_now(&mut self) -> std::io::Result<usize> {
        if self.input.capacity() - self.input.len() < INITIAL_BUFFER / 2 {
            // Doubling, so a large frame arrives in few reads.
            self.input
                .reserve(self.input.capacity().max(INITIAL_BUFFER));
        }
        self.stream.try_read_buf(&mut self.input)
    }

    /// Gives the input buffer back once everything read was decoded: an
    /// empty buffer can still hold an allocation (shared with the frames
    /// split off it) even when it has no capacity left.
    fn shrink_input(&mut self) {
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
    }

    /// Closes so that the last message sent reaches the client: closing a
    /// socket with unread input makes the kernel send a reset, which can
    /// destroy data still in flight to the client. So the server writes what
    /// is pending, shuts its side, then reads and discards what the client
    /// still sends, for a bounded time and amount. A peer that takes none of
    /// the pending bytes is not waited for.
    async fn linger(mut self) {
        const LINGER: Duration = Duration::from_secs(1);
        const DISCARD: usize = 256 * 1024;
        let deadline = Instant::now() + LINGER;
        while !self.output.is_empty() || self.stream.wants_write() {
            let writable = tokio::time::timeout_at(deadline, self.stream.writable()).await;
            if !matches!(writable, Ok(Ok(()))) || self.write_now().is_err() {
                return;
            }
        }
        if self.stream.shutdown().await.is_err() {
            return;
        }
        // On the heap, and only now: an array here would be part of every
        // connection task's state for the connection's whole life.
        let mut scratch = vec![0u8; 4096];
        let mut discarded = 0;
        while discarded < DISCARD {
            let readable = tokio::time::timeout_at(deadline, self.stream.readable()).await;
            if !matches!(readable, Ok(Ok(()))) {
                return;
            }
            match self.stream.try_discard(&mut scratch) {
                Ok(read) if read > 0 => discarded += read,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => return,
            }
        }
    }
}

struct Established {
    id: SessionId,
    owner: session_core::OwnerId,
    timeout: Duration,
    mailbox: crate::mailbox::Receiver,
}

/// Reads the handshake within the deadline and creates or reattaches the
/// session; on refusal, queues why (the caller lingers) and returns `None`.
async fn handshake<F: Frontend>(
    shared: &Shared,
    io: &mut Io<F>,
    remote: SocketAddr,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Established> {
    let mut stop = std::pin::pin!(crate::server::stopped(shutdown));
    let limits = &shared.config.limits;
    let started = Instant::now();
    let deadline = started + limits.handshake_timeout;
    let handshake = loop {
        if !io.stream.is_tls() && io.input.first() == Some(&TLS_HANDSHAKE_RECORD) {
            shared.metrics.count_close(CloseReason::tls_on_plain_port);
            warn!(%remote, "closing connection: a TLS handshake on a plain-text port");
            return None;
        }
        // Answered instead of a handshake, unframed; the caller's linger
        // writes the answer, then closes.
        if let Some(word) = io.frontend.command(&io.input) {
            let local = io.stream.local_addr().ok();
            let answer = four_letter::answer(shared, word, remote, local);
            shared.metrics.bytes_out.inc_by(answer.len() as u64);
            io.output.extend_from_slice(answer.as_bytes());
            return None;
        }
        match io.frontend.decode_handshake(&mut io.input) {
            Ok(Some(handshake)) => break handshake,
            Ok(None) => {}
            Err(violation) => {
                refuse(shared, io, remote, *violation);
                return None;
            }
        }
        tokio::select! {
            biased;
            () = stop.as_mut() => {
                shared.metrics.count_close(CloseReason::shutdown);
                io.encode(shared, Outbound::Refused {
                    reason: Refusal::ShuttingDown,
                    detail: "the server is shutting down".to_owned(),
                });
                return None;
            }
            () = tokio::time::sleep_until(deadline) => {
                shared.metrics.count_close(CloseReason::handshake_timeout);
                info!(%remote, timeout_ms = limits.handshake_timeout.as_millis() as u64,
                    "closing connection: no handshake in time");
                return None;
            }
            // TLS's own handshake messages, when the socket did not take
            // them at once.
            ready = io.stream.writable(), if io.stream.wants_write() => {
                if ready.is_err() || io.write_now().is_err() {
                    return None;
                }
            }
            ready = io.stream.readable() => {
                if ready.is_err() {
                    return None;
                }
                match io.read_now() {
                    Ok(0) => return None,
                    Ok(read) => {
                        shared.metrics.bytes_in.inc_by(read as u64);
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(err) => {
                        read_failed(shared, remote, &err);
                        return None;
                    }
                }
            }
        }
    };
    let owner = shared.next_owner();
    let (mailbox_tx, mailbox) = crate::mailbox::mailbox(crate::mailbox::Holder {
        owner,
        remote,
        client: handshake.client.as_str().into(),
    });
    let (granted, kind) = match establish(shared, &handshake, owner, mailbox_tx).await {
        Ok(granted) => granted,
        Err((reason, close, detail)) => {
            shared.metrics.count_close(close);
            info!(%remote, ?reason, detail, "refusing handshake");
            io.encode(shared, Outbound::Refused { reason, detail });
            return None;
        }
    };
    let id = granted.session;
    let timeout = granted.timeout;
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    match kind {
        SessionEventKind::Reattached => {
            shared.metrics.reattaches.inc();
            info!(session = %id, %remote, timeout_ms, "session reattached");
        }
        _ => {
            shared.metrics.sessions_created.inc();
            info!(session = %id, %remote, timeout_ms, "session created");
        }
    }
    shared.publish(SessionEvent {
        id,
        kind,
        remote: Some(remote),
        timeout_ms,
        zxid: granted.zxid,
    });
    io.encode(shared, Outbound::Granted(granted));
    shared
        .metrics
        .observe_op(OpKind::handshake, started.elapsed());
    Some(Established {
        id,
        owner,
        timeout,
        mailbox,
    })
}

/// What a connection is told when the server shuts down.
pub(crate) fn shutting_down() -> (Code, String) {
    (Code::ShuttingDown, "server shutting down".to_owned())
}

/// Counts and logs a read that failed for TLS's reasons (plain text on a
/// TLS port, a refused certificate, a corrupt record); other failures are
/// the client going away.
fn read_failed(shared: &Shared, remote: SocketAddr, err: &std::io::Error) {
    match TlsFailure::of(err) {
        Some(TlsFailure::Plaintext(_)) => {
            shared
                .metrics
                .count_close(CloseReason::plaintext_on_tls_port);
            warn!(%remote, error = %err, "closing connection: plain text on a TLS port");
        }
        Some(TlsFailure::Tls(_)) => {
            shared.metrics.count_close(CloseReason::tls_failed);
            warn!(%remote, error = %err, "closing connection: TLS failed");
        }
        None => debug!(%remote, error = %err, "connection read failed"),
    }
}

fn refuse<F: Frontend>(shared: &Shared, io: &mut Io<F>, remote: SocketAddr, violation: Violation) {
    shared.metrics.count_close(violation.reason);
    warn!(%remote, reason = ?violation.reason, detail = violation.detail,
        "closing connection: bad handshake");
    if let Some(reply) = violation.reply {
        io.encode(shared, reply);
    }
}

type Refused = (Refusal, CloseReason, String);

/// Creates or reattaches the session and registers the connection; on
/// refusal, says what to tell the client and why.
async fn establish(
    shared: &Shared,
    handshake: &Handshake,
    owner: session_core::OwnerId,
    mailbox: crate::mailbox::Sender,
) -> Result<(Granted, SessionEventKind), Refused> {
    let machine = &shared.machine;
    if machine.role() == Role::Unavailable {
        return Err((
            Refusal::Unavailable,
            CloseReason::unavailable,
            format!("{}: try another server", machine.unavailable_reason()),
        ));
    }
    let ctx = shared.context();
    let op = match handshake.reattach {
        Some((id, password)) => Op::Reattach {
            id,
            password,
            requested: handshake.requested,
        },
        None => Op::CreateSession {
            requested: handshake.requested,
        },
    };
    // A server behind the client (it saw a newer state through another
    // server) catches up first, for a moment, before it gives up on it: in
    // a cluster, the session may be one this server has not applied yet.
    if handshake.last_zxid_seen > machine.zxid() {
        machine
            .wait_for_zxid(handshake.last_zxid_seen, CATCH_UP_WAIT)
            .await;
    }
    let behind = handshake.last_zxid_seen > machine.zxid();
    let in_cluster = shared.config.cluster.is_cluster();
    // The session is checked before the zxid, so a client of a server on its
    // own that lost its state (in memory) hears that its session expired
    // rather than that it is ahead; a server of a cluster that is behind
    // says so, and the client tries another server, which may know the
    // session.
    let prepared = machine.prepare(op, &ctx).map_err(|err| {
        let reason = match err {
            session_core::TxnError::Reattach(session_core::ReattachError::WrongPassword {
                ..
            }) => (Refusal::AuthFailed, CloseReason::auth_failed),
            session_core::TxnError::Reattach(_) | session_core::TxnError::SessionExpired { .. }
                if behind && in_cluster =>
            {
                (Refusal::ZxidAhead, CloseReason::zxid_ahead)
            }
            session_core::TxnError::Reattach(_) | session_core::TxnError::SessionExpired { .. } => {
                (Refusal::Expired, CloseReason::expired)
            }
            // A cluster's first leader has not written the genesis yet.
            session_core::TxnError::NotInitialized => {
                (Refusal::Unavailable, CloseReason::unavailable)
            }
            _ => (Refusal::BadHandshake, CloseReason::protocol_violation),
        };
        (reason.0, reason.1, err.to_string())
    })?;
    let zxid = machine.zxid();
    if handshake.last_zxid_seen > zxid {
        return Err((
            Refusal::ZxidAhead,
            CloseReason::zxid_ahead,
            format!(
                "the client has seen zxid {:#x}, this server is at {zxid:#x}: try another server",
                handshake.last_zxid_seen
            ),
        ));
    }
    let system = |detail: String| {
        (
            Refusal::BadHandshake,
            CloseReason::protocol_violation,
            detail,
        )
    };
    let (id, timeout, zxid, kind) = match (prepared, handshake.reattach) {
        (Some(txn), _) => {
            let applied = shared.engine.propose(txn).await.map_err(|err| {
                (
                    Refusal::Unavailable,
                    CloseReason::unavailable,
                    err.to_string(),
                )
            })?;
            match applied.result {
                Ok(Outcome::SessionCreated { id, timeout, .. }) => {
                    (id, timeout, applied.zxid, SessionEventKind::Created)
                }
                Ok(Outcome::SessionUpdated { id, timeout, .. }) => {
                    (id, timeout, applied.zxid, SessionEventKind::Reattached)
                }
                Ok(other) => return Err(system(format!("a handshake produced {other:?}"))),
                Err(err) => return Err((Refusal::Expired, CloseReason::expired, err.to_string())),
            }
        }
        (None, Some((id, _))) => {
            // Nothing replicated changes: the timeout and the owning server
            // stay as they are.
            let timeout = machine
                .state()
                .replica
                .session(id)
                .map(|entry| entry.timeout)
                .ok_or_else(|| {
                    (
                        Refusal::Expired,
                        CloseReason::expired,
                        format!("session {id} is unknown"),
                    )
                })?;
            (id, timeout, zxid, SessionEventKind::Reattached)
        }
        (None, None) => return Err(system("a new session prepared no transaction".to_owned())),
    };
    let password = machine.state().replica.password(id).ok_or_else(|| {
        (
            Refusal::Expired,
            CloseReason::expired,
            format!("session {id} is unknown"),
        )
    })?;
    machine
        .liveness()
        .track(id, timeout, Some(owner), Instant::now().into_std())
        .map_err(|err| (Refusal::Expired, CloseReason::expired, err.to_string()))?;
    let previous = machine.connections.insert(id, ConnectionHandle { mailbox });
    if let Some(previous) = previous.filter(|previous| previous.owner() != owner) {
        previous.mailbox.send(Notice::Disconnect(Box::new((
            Code::SessionMoved,
            format!("session {id} moved to another connection"),
        ))));
    }
    Ok((
        Granted {
            session: id,
            password,
            timeout,
            reattached: kind == SessionEventKind::Reattached,
            zxid,
        },
        kind,
    ))
}

struct Connection<'a, F> {
    shared: &'a Shared,
    io: Io<F>,
    mailbox: crate::mailbox::Receiver,
    id: SessionId,
    owner: session_core::OwnerId,
    remote: SocketAddr,
    /// The session's timeout: also how long a peer may leave replies unread.
    timeout: Duration,
    /// For each reply not yet fully written, the output offset (counted
    /// from the start of the connection) where it ends.
    unanswered: VecDeque<u64>,
    /// Bytes written to the socket so far.
    written: u64,
    /// Armed while output waits and the socket takes nothing: when it fires,
    /// the peer has read nothing for the session timeout.
    stall: Option<Pin<Box<Sleep>>>,
    /// Writes handed to the engine, and reads after them, not yet answered,
    /// in request order.
    proposed: VecDeque<Proposed>,
    /// The ids this connection holds: `ip:<address>`, then one per
    /// credential added (ZooKeeper's authInfo; never replicated).
    auth: Arc<[Id]>,
}

/// Where an operation goes: a write to the engine, anything else to the
/// local replica (or the connection itself).
enum Routed {
    Write(OpKind, Box<Op>),
    Other(Operation),
}

/// A request whose reply waits for a write: a write handed to the engine,
/// or a read sent after one.
struct Proposed {
    xid: i32,
    kind: OpKind,
    started: Instant,
    waits: Waits,
    /// For a multi, its number of operations (a failed one answers each).
    multi: Option<usize>,
}

/// What a request in [`Connection::proposed`] waits for.
enum Waits {
    /// A write's proposal, answered once applied.
    Write(Proposal),
    /// A read, answered through the mailbox as the write before it is
    /// applied ([`StateMachine::read_after`](crate::state::StateMachine::read_after)),
    /// so that the connection reads on and proposes the writes after it
    /// meanwhile; the answer, once taken from the mailbox while writes
    /// before the read were still unanswered.
    Read(Option<Box<ReadAnswer>>),
}

/// Why the serve loop ends: `None` when the client left or asked, else the
/// server's reason.
type End = Option<CloseReason>;

impl<F: Frontend> Connection<'_, F> {
    /// Serves until the connection ends; returns why the server closed it, or
    /// `None` when the client did.
    async fn serve(&mut self) -> End {
        if let Err(end) = self.process_and_flush().await {
            return end;
        }
        loop {
            let reading = self.can_take_requests();
            let writing = !self.io.output.is_empty() || self.io.stream.wants_write();
            let stall = self.stall.as_mut();
            let stalled = stall.is_some();
            let result = tokio::select! {
                biased;
                // Watch events, and disconnects: the session moved or
                // expired, or the server is shutting down.
                notice = self.mailbox.recv() => match notice {
                    Some(notice) => self.notice(notice),
                    None => Err(None),
                },
                () = async { if let Some(stall) = stall { stall.await } }, if stalled => {
                    warn!(session = %self.id, remote = %self.remote,
                        timeout_ms = self.timeout.as_millis() as u64, unsent = self.io.output.len(),
                        "closing connection: the peer read nothing for the session timeout");
                    // Nothing more is sent: the peer would not read it.
                    self.io.output.clear();
                    return Some(CloseReason::write_stalled);
                }
                ready = self.io.stream.writable(), if writing => match ready {
                    Ok(()) => Ok(()),
                    Err(_) => Err(None),
                },
                ready = self.io.stream.readable(), if reading => match ready {
                    Ok(()) => self.read(),
                    Err(_) => Err(None),
                },
            };
            if let Err(end) = result {
                return end;
            }
            if let Err(end) = self.process_and_flush().await {
                return end;
            }
        }
    }

    /// Handles what is buffered and writes what the socket takes, until
    /// neither makes progress: replies written may make room for requests
    /// already buffered, which no readiness event would announce.
    async fn process_and_flush(&mut self) -> Result<(), End> {
        loop {
            let held_back = self.process().await?;
            self.flush()?;
            if !(held_back && self.can_take_requests()) {
                return Ok(());
            }
        }
    }

    /// Whether another request may be read: fewer than the limit unanswered
    /// (waiting for a write, or not yet written) and less than a frame's
    /// worth of output waiting.
    fn can_take_requests(&self) -> bool {
        let limits = &self.shared.config.limits;
        self.unanswered.len() + self.proposed.len() < limits.max_requests_in_flight
            && self.io.output.len() < limits.max_frame_bytes
    }

    /// Reads what is there and touches the session: every frame keeps it
    /// alive, from the moment its bytes are read.
    fn read(&mut self) -> Result<(), End> {
        match self.io.read_now() {
            Ok(0) => Err(None),
            Ok(read) => {
                self.shared.metrics.bytes_in.inc_by(read as u64);
                let now = Instant::now().into_std();
                let touched = self
                    .shared
                    .machine
                    .liveness()
                    .touch(self.id, self.owner, now);
                match touched {
                    Ok(()) => {
                        self.shared.machine.heard_from(self.id);
                        Ok(())
                    }
                    Err(err) => {
                        let (code, reason) = match err {
                            TouchError::Moved { .. } => (Code::SessionMoved, CloseReason::moved),
                            TouchError::Unknown { .. } | TouchError::Closing { .. } => {
                                (Code::SessionExpired, CloseReason::expired)
                            }
                        };
                        self.io.encode(
                            self.shared,
                            Outbound::Disconnect {
                                code,
                                detail: err.to_string(),
                            },
                        );
                        Err(Some(reason))
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(err) => {
                read_failed(self.shared, self.remote, &err);
                Err(None)
            }
        }
    }

    /// Handles the whole requests buffered, as far as the in-flight bound
    /// allows; the rest wait in the buffer until replies drain. Returns
    /// whether the bound held bytes back.
    async fn process(&mut self) -> Result<bool, End> {
        loop {
            if !self.can_take_requests() {
                self.settle().await?;
                return Ok(!self.io.input.is_empty());
            }
            // What is awaited here is part of every connection's future,
            // which is memory per idle session: a ping, or a read with no
            // write before it, is answered without awaiting anything, and
            // what waits does so in a boxed future, made in a block of its
            // own so that the request (borrowed here, so kept in the future
            // for as long as it is in scope) is out of scope at the await.
            let waiting = {
                let inbound = match self.io.frontend.decode(&mut self.io.input) {
                    Ok(Some(inbound)) => inbound,
                    // Nothing whole is buffered. With requests waiting for
                    // writes, what the client sent meanwhile is read before
                    // they are waited for: its writes join theirs (a log
                    // entry, a forward to the leader) instead of each
                    // buffer's worth waiting a round of its own.
                    Ok(None) if !self.proposed.is_empty() => {
                        let buffered = self.io.input.len();
                        self.read()?;
                        if self.io.input.len() == buffered {
                            break;
                        }
                        continue;
                    }
                    Ok(None) => break,
                    Err(violation) => {
                        warn!(session = %self.id, remote = %self.remote, reason = ?violation.reason,
                            detail = violation.detail, "closing connection: protocol violation");
                        if let Some(reply) = violation.reply {
                            self.io.encode(self.shared, reply);
                        }
                        return Err(Some(violation.reason));
                    }
                };
                let started = Instant::now();
                if self.proposed.is_empty() && answered_now(&inbound) {
                    self.answer_now(inbound, started)?;
                    None
                } else {
                    Some(Box::pin(self.waiting(inbound, started)))
                }
            };
            if let Some(waiting) = waiting {
                waiting.await?;
            }
        }
        self.settle().await?;
        self.io.shrink_input();
        Ok(false)
    }

    /// Handles a request that waits: a write (handed to the engine), or a
    /// close, a sync, or anything read while writes are unanswered, each
    /// answered after those writes (a read sees them, and replies leave in
    /// request order). A read after writes the engine has yet to apply is
    /// answered as the last of them is, and the connection reads on
    /// meanwhile. Boxed by the caller: what a connection awaits in place is
    /// part of its future.
    async fn waiting(&mut self, inbound: Inbound, started: Instant) -> Result<(), End> {
        match inbound {
            Inbound::Request { xid, op } if is_write(&op) => match self.route(op) {
                Routed::Write(kind, op) => self.propose(xid, (kind, op), started).await,
                Routed::Other(op) => self.answer_now(Inbound::Request { xid, op }, started),
            },
            Inbound::Request { xid, op } if reads_replica(&op) => match self.last_tag() {
                Some(after) => {
                    self.read_after(after, xid, op, started);
                    Ok(())
                }
                None => {
                    self.answer_proposed().await?;
                    self.answer_now(Inbound::Request { xid, op }, started)
                }
            },
            Inbound::Close => {
                self.answer_proposed().await?;
                self.close(started).await
            }
            Inbound::Request {
                xid,
                op: op @ Operation::Sync { .. },
            } => {
                self.answer_proposed().await?;
                let kind = op.kind();
                let (zxid, result) = self.sync_then_read(op).await;
                self.answer(Outbound::Reply { xid, zxid, result })?;
                self.shared.metrics.observe_op(kind, started.elapsed());
                Ok(())
            }
            other => {
                self.answer_proposed().await?;
                self.answer_now(other, started)
            }
        }
    }

    /// Closes the session at its client's request, answers, and ends the
    /// connection.
    async fn close(&mut self, started: Instant) -> Result<(), End> {
        let zxid = self.close_session().await;
        self.answer(Outbound::CloseAck { zxid })?;
        self.shared
            .metrics
            .observe_op(OpKind::close, started.elapsed());
        Err(None)
    }

    /// The write proposed last, if it is not applied yet: where a read sent
    /// now waits.
    fn last_tag(&self) -> Option<Tag> {
        self.proposed
            .iter()
            .rev()
            .find_map(|proposed| match &proposed.waits {
                Waits::Write(proposal) => Some(proposal.tag),
                Waits::Read(_) => None,
            })
            .flatten()
    }

    /// Has `op` answered right after the write `after` is applied, and
    /// queues its reply behind that write's.
    fn read_after(&mut self, after: Tag, xid: i32, op: Operation, started: Instant) {
        let kind = op.kind();
        let read = DeferredRead {
            session: self.id,
            owner: self.owner,
            xid,
            op,
            auth: Arc::clone(&self.auth),
        };
        self.shared.machine.read_after(after, read);
        self.proposed.push_back(Proposed {
            xid,
            kind,
            started,
            waits: Waits::Read(None),
            multi: None,
        });
    }

    /// Answers what needs no waiting: a ping, a read, a credential, a
    /// request the frontend refused.
    fn answer_now(&mut self, inbound: Inbound, started: Instant) -> Result<(), End> {
        let (kind, reply) = match inbound {
            Inbound::Ping => (
                OpKind::ping,
                Outbound::Pong {
                    zxid: self.shared.machine.zxid(),
                },
            ),
            Inbound::Refused { xid, kind, error } => (
                kind,
                Outbound::Reply {
                    xid,
                    zxid: self.shared.machine.zxid(),
                    result: Err(error),
                },
            ),
            Inbound::Request {
                xid,
                op: Operation::AddAuth { scheme, credential },
            } => {
                let result = self.add_auth(&scheme, &credential);
                let failed = result.is_err();
                let reply = Outbound::Reply {
                    xid,
                    zxid: self.shared.machine.zxid(),
                    result,
                };
                if failed {
                    // ZooKeeper answers AUTHFAILED, then closes the
                    // connection; the session lives on until it expires.
                    self.answer(reply)?;
                    self.shared
                        .metrics
                        .observe_op(OpKind::auth, started.elapsed());
                    return Err(Some(CloseReason::auth_failed));
                }
                (OpKind::auth, reply)
            }
            Inbound::Request { xid, op } => {
                let kind = op.kind();
                let (zxid, result) = self.read_replica(op);
                (kind, Outbound::Reply { xid, zxid, result })
            }
            // `waiting` closes the session (it awaits the close); never
            // passed here.
            Inbound::Close => return Err(None),
        };
        self.answer(reply)?;
        self.shared.metrics.observe_op(kind, started.elapsed());
        Ok(())
    }

    /// Queues a reply after every notice already in the mailbox (watch
    /// events of its own and of other sessions' writes), and counts it
    /// unanswered until its last byte is written. A disconnect found there
    /// ends the connection instead.
    fn answer(&mut self, reply: Outbound) -> Result<(), End> {
        self.take_notices()?;
        self.push_reply(reply);
        Ok(())
    }

    /// Queues a reply and counts it unanswered until its last byte is
    /// written.
    fn push_reply(&mut self, reply: Outbound) {
        self.io.encode(self.shared, reply);
        self.unanswered
            .push_back(self.written + self.io.output.len() as u64);
    }

    /// Handles the notices in the mailbox, up to a read's answer that must
    /// wait for the replies before it: what came after that answer waits
    /// behind it.
    fn take_notices(&mut self) -> Result<(), End> {
        // The mailbox is looked at first: it is nearly always empty, and
        // finding the first read walks the requests waiting.
        while !self.mailbox.is_empty() && !self.read_answer_held() {
            let Some(notice) = self.mailbox.try_recv() else {
                break;
            };
            self.notice(notice)?;
        }
        Ok(())
    }

    /// Where in [`proposed`](Self::proposed) the first read waiting behind
    /// writes is.
    fn first_read(&self) -> Option<usize> {
        self.proposed
            .iter()
            .position(|proposed| matches!(proposed.waits, Waits::Read(_)))
    }

    /// Whether the first read waiting behind writes has its answer already.
    fn read_answer_held(&self) -> bool {
        self.first_read()
            .is_some_and(|at| matches!(self.proposed[at].waits, Waits::Read(Some(_))))
    }

    /// A notice from outside: a watch event to write, a disconnect, or the
    /// answer to a read waiting behind writes (held until their replies are
    /// queued).
    fn notice(&mut self, notice: Notice) -> Result<(), End> {
        match notice {
            Notice::Read(answer) => {
                let first = self.first_read().map(|at| &mut self.proposed[at]);
                match first {
                    Some(Proposed {
                        xid,
                        waits: Waits::Read(held @ None),
                        ..
                    }) if *xid == answer.xid => {
                        *held = Some(answer);
                        Ok(())
                    }
                    _ => Err(self.answered_out_of_order(answer.xid)),
                }
            }
            Notice::Watch(event) => {
                self.io.encode(self.shared, Outbound::Watch(*event));
                Ok(())
            }
            Notice::Disconnect(disconnect) => {
                let (code, detail) = *disconnect;
                let reason = match code {
                    Code::SessionMoved => CloseReason::moved,
                    Code::Unavailable => CloseReason::unavailable,
                    Code::ShuttingDown => CloseReason::shutdown,
                    _ => CloseReason::expired,
                };
                self.io
                    .encode(self.shared, Outbound::Disconnect { code, detail });
                Err(Some(reason))
            }
        }
    }

    /// Writes what the socket takes now, retires the replies fully written,
    /// and arms or disarms the stall timer.
    fn flush(&mut self) -> Result<(), End> {
        if self.io.output.is_empty() && !self.io.stream.wants_write() {
            return Ok(());
        }
        let written = self.io.write_now().map_err(|_| None)?;
        self.written += written as u64;
        while self
            .unanswered
            .front()
            .is_some_and(|&end| end <= self.written)
        {
            self.unanswered.pop_front();
        }
        if self.unanswered.is_empty() {
            // Its room given back, as the buffers': an idle connection
            // holds none.
            self.unanswered = VecDeque::new();
        }
        if self.io.output.is_empty() {
            self.stall = None;
        } else if written > 0 || self.stall.is_none() {
            let deadline = Instant::now() + self.timeout;
            match self.stall.as_mut() {
                Some(stall) => stall.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        Ok(())
    }

    /// Closes the session at its client's request; returns the close's
    /// zxid, or the newest applied when nothing was closed.
    async fn close_session(&mut self) -> u64 {
        let shared = self.shared;
        // Deregistered first: the close, when applied, tells the session's
        // connection; this one is answering it already.
        shared
            .machine
            .connections
            .remove_if(&self.id, |_, handle| handle.owner() == self.owner);
        let prepared = shared
            .machine
            .prepare(Op::CloseSession { id: self.id }, &shared.context());
        let Ok(Some(txn)) = prepared else {
            return shared.machine.zxid();
        };
        let Ok(applied) = shared.engine.propose(txn).await else {
            return shared.machine.zxid();
        };
        if let Ok(Outcome::SessionClosed { ephemerals, .. }) = &applied.result {
            shared.metrics.sessions_closed.inc();
            shared.publish(SessionEvent {
                id: self.id,
                kind: SessionEventKind::Closed,
                remote: Some(self.remote),
                timeout_ms: 0,
                zxid: applied.zxid,
            });
            info!(session = %self.id, remote = %self.remote,
                ephemerals_deleted = ephemerals.len(), "session closed");
        }
        applied.zxid
    }

    /// A read (or set watches), against the local replica.
    fn read_replica(&self, op: Operation) -> (u64, Result<OpResult, OpError>) {
        let shared = self.shared;
        shared.machine.read(self.id, op, &self.auth)
    }

    /// A sync: waits until the replica holds every write the leader had
    /// committed when it was asked, then answers as a read.
    async fn sync_then_read(&mut self, op: Operation) -> (u64, Result<OpResult, OpError>) {
        let shared = self.shared;
        let caught_up = match shared.engine.sync().await {
            Ok(zxid) if shared.machine.wait_for_zxid(zxid, SYNC_WAIT).await => Ok(()),
            Ok(zxid) => Err(OpError::new(
                Code::Unavailable,
                format!(
                    "this server did not reach the leader's zxid {zxid:#x} within {SYNC_WAIT:?}"
                ),
            )),
            Err(err) => Err(OpError::new(Code::Unavailable, err.to_string())),
        };
        match caught_up {
            Ok(()) => self.read_replica(op),
            Err(error) => (shared.machine.zxid(), Err(error)),
        }
    }

    /// Adds the ids a credential stands for to this connection.
    fn add_auth(&mut self, scheme: &str, credential: &[u8]) -> Result<OpResult, OpError> {
        let super_digest = self.shared.config.super_digest.as_deref();
        match auth::authenticate(scheme, credential, super_digest) {
            Ok(ids) => {
                let mut held = self.auth.to_vec();
                for id in ids {
                    if !held.contains(&id) {
                        info!(session = %self.id, remote = %self.remote, %id, "authenticated");
                        held.push(id);
                    }
                }
                self.auth = held.into();
                Ok(OpResult::Authenticated)
            }
            Err(detail) => {
                warn!(session = %self.id, remote = %self.remote, scheme, detail,
                    "authentication failed: closing the connection");
                Err(OpError::new(Code::AuthFailed, detail))
            }
        }
    }

    /// The write an operation asks for, or the operation back if it reads
    /// (as [`is_write`] tells).
    fn route(&self, op: Operation) -> Routed {
        let session = self.id;
        let kind = op.kind();
        let op = match op {
            Operation::Create {
                path,
                data,
                mode,
                acl,
            } => Op::Create {
                session,
                path,
                data,
                mode,
                acl,
            },
            Operation::SetAcl { path, acl, version } => Op::SetAcl {
                session,
                path,
                acl,
                version,
            },
            Operation::Multi { ops } => Op::Multi { session, ops },
            Operation::Delete { path, version } => Op::Delete {
                session,
                path,
                version,
            },
            Operation::SetData {
                path,
                data,
                version,
            } => Op::SetData {
                session,
                path,
                data,
                version,
            },
            other => return Routed::Other(other),
        };
        // Boxed: a write waits in `propose` across awaits, and a pointer
        // keeps the (boxed) future of every write in flight small.
        Routed::Write(kind, Box::new(op))
    }

    /// Prepares a write and hands it to the engine without waiting for it,
    /// so the writes of one connection can share a log entry (and an
    /// fsync). Prepared against a state that may not hold this connection's
    /// earlier writes yet: if that refuses it, the earlier writes are
    /// answered first and the write is prepared again, so a refusal never
    /// comes from a state older than the client's own writes. (Apply checks
    /// everything again, so a write prepared early is never wrong either.)
    async fn propose(
        &mut self,
        xid: i32,
        (kind, op): (OpKind, Box<Op>),
        started: Instant,
    ) -> Result<(), End> {
        let shared = self.shared;
        let multi = match &*op {
            Op::Multi { ops, .. } => Some(ops.len()),
            _ => None,
        };
        let auth = Arc::clone(&self.auth);
        let context = Context {
            auth: &auth,
            ..shared.context()
        };
        let prepared = match shared.machine.prepare((*op).clone(), &context) {
            Err(_) => Box::pin(self.prepare_again(*op)).await?,
            prepared => prepared,
        };
        let txn = match prepared {
            Ok(Some(txn)) => txn,
            refused => {
                let result = match refused {
                    Err(err) => write_result(Err(err), multi),
                    _ => Err(OpError::new(
                        Code::SystemError,
                        "the write prepared no transaction",
                    )),
                };
                self.answer_proposed().await?;
                let zxid = shared.machine.zxid();
                self.answer(Outbound::Reply { xid, zxid, result })?;
                shared.metrics.observe_op(kind, started.elapsed());
                return Ok(());
            }
        };
        self.proposed.push_back(Proposed {
            xid,
            kind,
            started,
            waits: Waits::Write(shared.engine.propose(txn)),
            multi,
        });
        Ok(())
    }

    /// Prepares a write again after a refusal, once the refusal could come
    /// from a state older than what the client may know: after this
    /// connection's earlier writes are answered, and on a server that does
    /// not lead, after it caught up with the leader's commit (a read
    /// index), as it would be on the leader. (Boxed by the caller: the rare
    /// path stays out of every connection's future.)
    async fn prepare_again(&mut self, op: Op) -> Result<Result<Option<Txn>, TxnError>, End> {
        let shared = self.shared;
        let auth = Arc::clone(&self.auth);
        let context = || Context {
            auth: &auth,
            ..shared.context()
        };
        let mut prepared = shared.machine.prepare(op.clone(), &context());
        if prepared.is_err() && !self.proposed.is_empty() {
            self.answer_proposed().await?;
            prepared = shared.machine.prepare(op.clone(), &context());
        }
        if prepared.is_err() && shared.machine.role() != Role::Leading {
            if let Ok(zxid) = shared.engine.sync().await {
                if shared.machine.wait_for_zxid(zxid, SYNC_WAIT).await {
                    prepared = shared.machine.prepare(op, &context());
                }
            }
        }
        Ok(prepared)
    }

    /// Answers the proposed writes, if there are any. What it awaits is
    /// boxed: it is part of every connection's future otherwise, and most
    /// requests (pings) find nothing proposed.
    async fn settle(&mut self) -> Result<(), End> {
        if self.proposed.is_empty() {
            return Ok(());
        }
        Box::pin(self.answer_proposed()).await
    }

    /// Waits in the mailbox for the answer to the read `xid`, the first
    /// unanswered request, writing the watch events before it.
    async fn read_answer(&mut self, xid: i32) -> Result<Box<ReadAnswer>, End> {
        loop {
            match self.mailbox.recv().await {
                Some(Notice::Read(answer)) if answer.xid == xid => return Ok(answer),
                Some(Notice::Read(answer)) => return Err(self.answered_out_of_order(answer.xid)),
                Some(notice) => self.notice(notice)?,
                None => return Err(None),
            }
        }
    }

    /// A read's answer came for another request than the next one waiting
    /// (the writes before two reads failed and succeeded out of order): the
    /// connection closes rather than send a reply or an event out of order;
    /// its client reconnects and sets its watches again.
    fn answered_out_of_order(&mut self, xid: i32) -> End {
        warn!(session = %self.id, remote = %self.remote, xid,
            "closing connection: a read was answered out of request order");
        self.io.encode(
            self.shared,
            Outbound::Disconnect {
                code: Code::Unavailable,
                detail: "a read was answered out of request order: reconnect".to_owned(),
            },
        );
        Some(CloseReason::unavailable)
    }

    /// Answers the proposed writes and the reads after them, in order, as
    /// they are applied.
    async fn answer_proposed(&mut self) -> Result<(), End> {
        while let Some(proposed) = self.proposed.pop_front() {
            let shared = self.shared;
            let proposal = match proposed.waits {
                Waits::Write(proposal) => proposal,
                Waits::Read(held) => {
                    let answer = match held {
                        Some(answer) => answer,
                        None => self.read_answer(proposed.xid).await?,
                    };
                    // Not after the notices in the mailbox now: they came
                    // after the read was answered.
                    self.push_reply(Outbound::Reply {
                        xid: proposed.xid,
                        zxid: answer.zxid,
                        result: answer.result,
                    });
                    shared
                        .metrics
                        .observe_op(proposed.kind, proposed.started.elapsed());
                    continue;
                }
            };
            let (zxid, result) = match proposal.await {
                Ok(applied) => (applied.zxid, write_result(applied.result, proposed.multi)),
                Err(err) => (
                    shared.machine.zxid(),
                    Err(OpError::new(Code::Unavailable, err.to_string())),
                ),
            };
            self.answer(Outbound::Reply {
                xid: proposed.xid,
                zxid,
                result,
            })?;
            shared
                .metrics
                .observe_op(proposed.kind, proposed.started.elapsed());
        }
        Ok(())
    }
}

/// Whether `inbound` is answered at once, when no write waits before it:
/// anything but a close, a sync and a write.
fn answered_now(inbound: &Inbound) -> bool {
    match inbound {
        Inbound::Close => false,
        Inbound::Request { op, .. } => !matches!(op, Operation::Sync { .. }) && !is_write(op),
        Inbound::Ping | Inbound::Refused { .. } => true,
    }
}

/// Whether `op` is answered from the replica alone (not a write, a sync or
/// a credential), so may wait behind writes in [`Connection::proposed`].
fn reads_replica(op: &Operation) -> bool {
    !is_write(op) && !matches!(op, Operation::Sync { .. } | Operation::AddAuth { .. })
}

/// Whether `op` writes (goes to the engine), as [`Connection::route`]
/// decides.
fn is_write(op: &Operation) -> bool {
    matches!(
        op,
        Operation::Create { .. }
            | Operation::SetAcl { .. }
            | Operation::Multi { .. }
            | Operation::Delete { .. }
            | Operation::SetData { .. }
    )
}

/// The answer to a node write: its outcome, or its refusal. A multi (of
/// `multi` operations) that failed still succeeds as a request: each of its
/// operations gets an error, `Ok` before the one that failed and
/// `RuntimeInconsistency` after it (ZooKeeper's rule).
fn write_result(
    result: Result<Outcome, TxnError>,
    multi: Option<usize>,
) -> Result<OpResult, OpError> {
    match (result, multi) {
        (Err(TxnError::Multi { index, error }), Some(count)) => {
            let failed = txn_error(&error).code;
            let results = (0..count.max(index + 1))
                .map(|i| {
                    Err(match i.cmp(&index) {
                        std::cmp::Ordering::Less => Code::Ok,
                        std::cmp::Ordering::Equal => failed,
                        std::cmp::Ordering::Greater => Code::RuntimeInconsistency,
                    })
                })
                .collect();
            Ok(OpResult::Multi { results })
        }
        (Err(err), _) => Err(txn_error(&err)),
        (Ok(outcome), _) => outcome_result(outcome),
    }
}

fn outcome_result(outcome: Outcome) -> Result<OpResult, OpError> {
    match outcome {
        Outcome::NodeCreated { path, stat } => Ok(OpResult::Create { path, stat }),
        Outcome::NodeDeleted => Ok(OpResult::Delete),
        Outcome::DataSet { stat } => Ok(OpResult::SetData { stat }),
        Outcome::AclSet { stat } => Ok(OpResult::SetAcl { stat }),
        Outcome::Checked => Ok(OpResult::Checked),
        Outcome::Multi { results } => Ok(OpResult::Multi {
            results: results
                .into_iter()
                .map(|outcome| outcome_result(outcome).map_err(|error| error.code))
                .collect(),
        }),
        other => Err(OpError::new(
            Code::SystemError,
            format!("a node write produced {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    /// Every open connection is one of these futures, alive for as long as
    /// the connection: its size is the server's memory per idle session. A
    /// local buffer in any async fn it awaits would become part of it, as a
    /// 4 KiB one once did (the future was 4.8 KB; after moving it to the
    /// heap, 1.7 KB in a debug build), and so does every future it awaits
    /// in place: boxing the handshake, the close, writes, syncs and the
    /// answering of writes, and telling shutdown through the mailbox
    /// instead of a future held here, brought it from 2,288 to 1,232 bytes
    /// (debug; 1,208 in a release build); admitting and the handshake in a
    /// boxed future of their own, so the socket and the handshake's session
    /// they hold before the connection exists take no room beside it, to
    /// 1,072 (debug; 1,056 release). Then, in a release build: answering a
    /// ping or a read without awaiting (the request was kept in the future
    /// twice, as `inbound`'s argument and local), to 672; `run` a plain
    /// function whose arguments go straight into the boxed handshake
    /// instead of being kept beside it, to 584; waiting for the socket and
    /// the mailbox through plain `poll_fn` futures instead of tokio's
    /// `readable()` (168 bytes each) and `async fn`s, to 536 (544 in a
    /// debug build). tokio adds 104 bytes and rounds the task up to a
    /// multiple of 128: 640 bytes a connection, where a future 8 bytes
    /// larger would take 768.
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
            zk_listen: None,
            storage: crate::Storage::InMemory,
            ..crate::ServerConfig::default()
        };
        let server = crate::Server::start(config).await.expect("start");
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let frontend = crate::frontend::v1::V1::new(1024 * 1024, 1);
        let future = super::run(
            server.shared_for_tests(),
            super::Socket::Plain(stream),
            remote,
            frontend,
            shutdown,
        );
        let size = std::mem::size_of_val(&future);
        drop(future);
        assert!(size <= 544, "a connection task takes {size} bytes");
        // A mailbox allocates its slots in blocks: keep a slot small.
        assert!(std::mem::size_of::<crate::server::Notice>() <= 16);
        server.shutdown().await;
    }
}
