//! The values operations take and return: node kinds, stats, watch events,
//! and the futures and streams the client hands out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use session_core::{ClientState, SessionId};
use session_wire::v1 as wire;
use tokio::sync::{mpsc, oneshot};

use crate::Error;

/// Where the client stands with its session (re-exported from
/// `session_core::ClientState`):
/// `NotConnected → Connecting → Connected ⇄ Suspended → Expired`, and the
/// terminal `Closed` and `AuthFailed`.
pub type State = ClientState;

/// How long a created node lives, and whether the server numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CreateMode {
    /// Lives until deleted.
    #[default]
    Persistent,
    /// Lives until deleted; the server appends a 10-digit sequence number to
    /// the name.
    PersistentSequential,
    /// Deleted when the creating session ends (closed or expired). Cannot
    /// have children.
    Ephemeral,
    /// Ephemeral, and numbered by the server (locks, elections, queues).
    EphemeralSequential,
}

impl CreateMode {
    /// The mode for the two flags of `create`.
    #[must_use]
    pub fn from_flags(ephemeral: bool, sequential: bool) -> Self {
        match (ephemeral, sequential) {
            (false, false) => Self::Persistent,
            (false, true) => Self::PersistentSequential,
            (true, false) => Self::Ephemeral,
            (true, true) => Self::EphemeralSequential,
        }
    }

    /// Whether the node belongs to the session.
    #[must_use]
    pub fn is_ephemeral(self) -> bool {
        matches!(self, Self::Ephemeral | Self::EphemeralSequential)
    }

    /// Whether the server appends a sequence number.
    #[must_use]
    pub fn is_sequential(self) -> bool {
        matches!(self, Self::PersistentSequential | Self::EphemeralSequential)
    }
}

/// The metadata of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// The zxid of the change that created the node.
    pub czxid: u64,
    /// The zxid of the change that last modified the node's data.
    pub mzxid: u64,
    /// The zxid of the change that last added or removed a child.
    pub pzxid: u64,
    /// Creation time, milliseconds since the Unix epoch (server clock).
    pub ctime_ms: i64,
    /// Last data modification time, milliseconds since the Unix epoch.
    pub mtime_ms: i64,
    /// The number of changes to the node's data.
    pub version: i32,
    /// The number of changes to the node's children.
    pub cversion: i32,
    /// The session owning the node if it is ephemeral.
    pub ephemeral_owner: Option<SessionId>,
    /// The length of the node's data in bytes.
    pub data_length: u32,
    /// The number of children.
    pub num_children: u32,
}

impl From<wire::Stat> for Stat {
    fn from(stat: wire::Stat) -> Self {
        Self {
            czxid: stat.czxid,
            mzxid: stat.mzxid,
            pzxid: stat.pzxid,
            ctime_ms: stat.ctime_ms,
            mtime_ms: stat.mtime_ms,
            version: stat.version,
            cversion: stat.cversion,
            ephemeral_owner: (stat.ephemeral_owner != 0)
                .then(|| SessionId::from_u64(stat.ephemeral_owner)),
            data_length: stat.data_length,
            num_children: stat.num_children,
        }
    }
}

/// What happened to a watched node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The node was created (fires watches from `exists` on a missing node).
    NodeCreated,
    /// The node was deleted (fires every kind of watch on it).
    NodeDeleted,
    /// The node's data changed (fires watches from `get` and `exists`).
    NodeDataChanged,
    /// A child was created or deleted (fires watches from `children`).
    NodeChildrenChanged,
}

impl EventKind {
    pub(crate) fn from_wire(kind: wire::WatchEventKind) -> Option<Self> {
        match kind {
            wire::WatchEventKind::NodeCreated => Some(Self::NodeCreated),
            wire::WatchEventKind::NodeDeleted => Some(Self::NodeDeleted),
            wire::WatchEventKind::NodeDataChanged => Some(Self::NodeDataChanged),
            wire::WatchEventKind::NodeChildrenChanged => Some(Self::NodeChildrenChanged),
            wire::WatchEventKind::Unspecified => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NodeCreated => "created",
            Self::NodeDeleted => "deleted",
            Self::NodeDataChanged => "data-changed",
            Self::NodeChildrenChanged => "children-changed",
        })
    }
}

/// A fired one-shot watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened.
    pub kind: EventKind,
    /// The watched node's path, as the client sees it (chroot removed).
    pub path: String,
    /// The zxid of the change that fired the watch.
    pub zxid: u64,
}

/// A one-shot watch left by a `*_and_watch` call: a future of the event.
///
/// It resolves once, with the first change of the watched kind, even if the
/// change happened while the client was reconnecting (watches are set again
/// after a reattach, and the server fires at once those whose node changed
/// meanwhile). It resolves to `Err(SessionExpired)`, `Err(AuthFailed)` or
/// `Err(Closed)` when the session ends first. Dropping it forgets the watch.
#[must_use = "a watch does nothing unless awaited"]
#[derive(Debug)]
pub struct Watch {
    pub(crate) receiver: oneshot::Receiver<Result<WatchedEvent, Error>>,
}

impl Future for Watch {
    type Output = Result<WatchedEvent, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(Error::Closed)))
    }
}

/// The state changes of a client from the moment it was asked for, in order,
/// never the same state twice in a row; ends after a terminal state.
/// From [`Client::events`](crate::Client::events).
#[derive(Debug)]
pub struct StateEvents {
    pub(crate) receiver: mpsc::UnboundedReceiver<State>,
}

impl Stream for StateEvents {
    type Item = State;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<State>> {
        self.receiver.poll_recv(cx)
    }
}
