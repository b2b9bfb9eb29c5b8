//! Protocol frontends: each turns one wire protocol's bytes into the neutral
//! handshakes and requests below, and neutral replies and events back into
//! bytes. A frontend holds no session logic: touch, ordering, limits,
//! SessionMoved and the lingering close live once, in
//! [`crate::connection`], for every protocol.
//!
//! [`v1`] speaks `session-wire`'s protobuf protocol; [`zookeeper`] speaks
//! ZooKeeper's own (jute) client protocol on a listener of its own. Both
//! serve the same sessions and the same tree.

pub(crate) mod v1;
pub(crate) mod zookeeper;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use session_core::{CreateMode, SessionId, SessionPassword, Stat, WatchEvent};

use crate::metrics::{CloseReason, OpKind};

/// A protocol's framing and messages, seen from the generic connection.
///
/// Decoding consumes whole frames from the front of the connection's read
/// buffer and leaves partial ones; encoding appends to its write buffer. A
/// frontend never reads or writes a socket itself.
pub(crate) trait Frontend: Send + 'static {
    /// The first message of a connection: `Ok(None)` until a whole frame is
    /// buffered.
    ///
    /// # Errors
    /// A [`Violation`] when the first frame is not a valid handshake; it
    /// carries the refusal to send before closing.
    fn decode_handshake(&mut self, buf: &mut BytesMut)
    -> Result<Option<Handshake>, Box<Violation>>;

    /// The next message after the handshake: `Ok(None)` until a whole frame
    /// is buffered.
    ///
    /// # Errors
    /// A [`Violation`] for a frame that cannot be decoded or a message not
    /// allowed after the handshake; the connection sends what it carries and
    /// closes.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, Box<Violation>>;

    /// Appends `message`, framed, to `buf`. A reply too large for the
    /// protocol's frame limit is replaced by a `TooLarge` error reply to the
    /// same request, so a client always gets an answer.
    fn encode(&mut self, message: Outbound, buf: &mut BytesMut);
}

/// A protocol error on a connection: what to send, if anything, and why the
/// connection is closed.
#[derive(Debug)]
pub(crate) struct Violation {
    /// Counted in the metrics under this reason.
    pub(crate) reason: CloseReason,
    /// Sent before closing.
    pub(crate) reply: Option<Outbound>,
    /// For the log line.
    pub(crate) detail: String,
}

/// A client's first message, already checked for well-formedness by its
/// frontend.
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    /// The session timeout asked for.
    pub(crate) requested: Duration,
    /// The session to reattach to, with its password; `None` for a new one.
    pub(crate) reattach: Option<(SessionId, SessionPassword)>,
    /// The newest zxid the client has seen; a server behind it refuses.
    pub(crate) last_zxid_seen: u64,
    /// `name/version` as the client gave them, bounded.
    pub(crate) client: String,
}

/// A message after the handshake.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A heartbeat.
    Ping,
    /// End the session.
    Close,
    /// One operation, answered by a [`Outbound::Reply`] with the same xid.
    Request { xid: i32, op: Operation },
    /// A request the frontend understood well enough to answer but not to
    /// carry out (an unknown operation, a bad argument): answered with this
    /// error, the connection stays open.
    Refused {
        xid: i32,
        kind: OpKind,
        error: OpError,
    },
}

/// A protocol-neutral operation.
#[derive(Debug)]
pub(crate) enum Operation {
    Create {
        path: String,
        data: Bytes,
        mode: CreateMode,
    },
    Delete {
        path: String,
        version: Option<i32>,
    },
    SetData {
        path: String,
        data: Bytes,
        version: Option<i32>,
    },
    GetData {
        path: String,
        watch: bool,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetChildren {
        path: String,
        watch: bool,
    },
    SetWatches {
        last_zxid_seen: u64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
    },
    /// Answered once this server holds every write the leader had committed
    /// when it was asked: at once on a single node, where every read is
    /// already current.
    Sync {
        path: String,
    },
}

impl Operation {
    pub(crate) fn kind(&self) -> OpKind {
        match self {
            Operation::Create { .. } => OpKind::create,
            Operation::Delete { .. } => OpKind::delete,
            Operation::SetData { .. } => OpKind::set_data,
            Operation::GetData { .. } => OpKind::get_data,
            Operation::Exists { .. } => OpKind::exists,
            Operation::GetChildren { .. } => OpKind::get_children,
            Operation::SetWatches { .. } => OpKind::set_watches,
            Operation::Sync { .. } => OpKind::sync,
        }
    }
}

/// The result of a successful operation.
#[derive(Debug)]
pub(crate) enum OpResult {
    Create { path: String, stat: Stat },
    Delete,
    SetData { stat: Stat },
    GetData { data: Bytes, stat: Stat },
    Exists { stat: Option<Stat> },
    GetChildren { children: Vec<String>, stat: Stat },
    SetWatches,
    Sync { path: String },
}

/// Why an operation failed (or a connection closes), in the protocol's
/// terms; each frontend maps these to its own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    SessionExpired,
    SessionMoved,
    NoNode,
    NodeExists,
    BadVersion,
    NotEmpty,
    NoChildrenForEphemerals,
    InvalidPath,
    TooLarge,
    TooManyEphemerals,
    TooManyWatches,
    QuotaExceeded,
    BadArguments,
    Unimplemented,
    ShuttingDown,
    /// The engine cannot order writes (its disk refuses them).
    Unavailable,
    SystemError,
}

/// A failed operation: its code and a message naming the offending value.
#[derive(Debug, Clone)]
pub(crate) struct OpError {
    pub(crate) code: Code,
    pub(crate) detail: String,
}

impl OpError {
    pub(crate) fn new(code: Code, detail: impl Into<String>) -> Self {
        OpError {
            code,
            detail: detail.into(),
        }
    }
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Expired,
    AuthFailed,
    UnsupportedVersion,
    TooManyConnections,
    ZxidAhead,
    BadHandshake,
    ShuttingDown,
    /// The engine cannot order writes, so no session can be opened or moved.
    Unavailable,
}

/// A session granted by a handshake.
#[derive(Debug, Clone)]
pub(crate) struct Granted {
    pub(crate) session: SessionId,
    pub(crate) password: SessionPassword,
    pub(crate) timeout: Duration,
    pub(crate) reattached: bool,
    pub(crate) zxid: u64,
}

/// A message to the client.
#[derive(Debug)]
pub(crate) enum Outbound {
    Granted(Granted),
    Refused {
        reason: Refusal,
        detail: String,
    },
    /// The answer to a ping; `zxid` is the newest applied (ZooKeeper's
    /// ping reply carries it).
    Pong {
        zxid: u64,
    },
    /// The answer to a close; `zxid` is the close's own, or the newest
    /// applied when there was nothing left to close.
    CloseAck {
        zxid: u64,
    },
    Reply {
        xid: i32,
        zxid: u64,
        result: Result<OpResult, OpError>,
    },
    Watch(WatchEvent),
    Disconnect {
        code: Code,
        detail: String,
    },
}

/// `name/version` as the client gave them, bounded so a hostile client cannot
/// make the server keep a large string per session.
pub(crate) fn client_label(name: &str, version: &str) -> String {
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
