//! Protocol frontends: each turns one wire protocol's bytes into the neutral
//! handshakes and requests below, and neutral replies and events back into
//! bytes. A frontend holds no session logic: touch, ordering, limits,
//! SessionMoved and the lingering close live once, in
//! [`crate::connection`], for every protocol.
//!
//! [`v1`] speaks `session-wire`'s protobuf protocol; [`zookeeper`] speaks
//! ZooKeeper's own (jute) client protocol on a listener of its own. Both
//! serve the same sessions and the same tree.

pub(crate) mod four_letter;
pub(crate) mod v1;
pub(crate) mod zookeeper;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use session_core::{
    Acl, CreateMode, Id, MultiOp, SessionId, SessionPassword, Stat, WatchEvent, WatcherType,
};

use crate::metrics::{CloseReason, OpKind};
use four_letter::FourLetterWord;

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

    /// A command instead of a handshake (ZooKeeper's four-letter words),
    /// recognized from the first bytes of a connection; `None` for a
    /// handshake, or while too few bytes are buffered to tell. Asked only
    /// before the handshake; consumes nothing. The connection answers it and
    /// closes. By default a protocol has none.
    fn command(&mut self, _buf: &BytesMut) -> Option<FourLetterWord> {
        None
    }
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
        acl: Vec<Acl>,
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
        persistent: Vec<String>,
        recursive: Vec<String>,
    },
    /// Answered once this server holds every write the leader had committed
    /// when it was asked: at once on a single node, where every read is
    /// already current.
    Sync {
        path: String,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: Option<i32>,
    },
    /// Writes and checks, all applied or none.
    Multi {
        ops: Vec<MultiOp>,
    },
    /// Reads, each answered on its own.
    MultiRead {
        ops: Vec<ReadOp>,
    },
    /// The paths of the session's ephemerals that start with `prefix`.
    GetEphemerals {
        prefix: String,
    },
    /// The number of nodes under `path`, at any depth.
    CountDescendants {
        path: String,
    },
    /// A persistent (or persistent recursive) watch.
    AddWatch {
        path: String,
        recursive: bool,
    },
    /// Removes the session's watches of `kind` on `path`; `NoWatcher` when
    /// there were none.
    RemoveWatches {
        path: String,
        kind: WatcherType,
    },
    /// Whether the session holds a watch of `kind` on `path`.
    CheckWatches {
        path: String,
        kind: WatcherType,
    },
    /// Adds an id to the connection by a credential of `scheme`.
    AddAuth {
        scheme: String,
        credential: Bytes,
    },
    /// The ids the connection holds.
    WhoAmI,
    /// A SASL token: SASL is not supported, and is answered as ZooKeeper
    /// answers it when no SASL server is configured (an empty success that
    /// authenticates nothing).
    Sasl,
}

/// A read of a [`Operation::MultiRead`].
#[derive(Debug)]
pub(crate) enum ReadOp {
    GetData { path: String },
    GetChildren { path: String },
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
            Operation::GetAcl { .. } => OpKind::get_acl,
            Operation::SetAcl { .. } => OpKind::set_acl,
            Operation::Multi { .. } => OpKind::multi,
            Operation::MultiRead { .. } => OpKind::multi_read,
            Operation::GetEphemerals { .. } => OpKind::get_ephemerals,
            Operation::CountDescendants { .. } => OpKind::count_descendants,
            Operation::AddWatch { .. } => OpKind::add_watch,
            Operation::RemoveWatches { .. } | Operation::CheckWatches { .. } => {
                OpKind::remove_watches
            }
            Operation::AddAuth { .. } => OpKind::auth,
            Operation::WhoAmI => OpKind::who_am_i,
            Operation::Sasl => OpKind::auth,
        }
    }
}

/// The result of a successful operation.
#[derive(Debug)]
pub(crate) enum OpResult {
    Create {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    GetData {
        data: Bytes,
        stat: Stat,
    },
    Exists {
        stat: Option<Stat>,
    },
    GetChildren {
        children: Vec<String>,
        stat: Stat,
    },
    SetWatches,
    Sync {
        path: String,
    },
    GetAcl {
        acl: Vec<Acl>,
        stat: Stat,
    },
    SetAcl {
        stat: Stat,
    },
    /// One result per operation; on failure every operation has an error
    /// (`Code::Ok` before the failing one, `Code::RuntimeInconsistency`
    /// after it).
    Multi {
        results: Vec<Result<OpResult, Code>>,
    },
    MultiRead {
        results: Vec<Result<OpResult, Code>>,
    },
    /// The result of a `check` in a multi.
    Checked,
    GetEphemerals {
        paths: Vec<String>,
    },
    CountDescendants {
        count: usize,
    },
    WatchAdded,
    WatchesRemoved,
    WatchesChecked,
    Authenticated,
    /// The empty answer to a SASL token (SASL is not supported).
    SaslAnswered,
    WhoAmI {
        ids: Vec<Id>,
    },
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
    /// The node's access control list refuses.
    NoAuth,
    /// An access control list that cannot be stored.
    InvalidAcl,
    /// A credential refused by its scheme (ZooKeeper then closes the
    /// connection).
    AuthFailed,
    /// RemoveWatches or CheckWatches found no such watch.
    NoWatcher,
    /// In a failed multi: an operation after the failing one.
    RuntimeInconsistency,
    /// In a failed multi: an operation before the failing one.
    Ok,
    Unimplemented,
    /// Dynamic reconfiguration, which this server does not allow (as
    /// ZooKeeper with `reconfigEnabled=false`, its default).
    ReconfigDisabled,
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
