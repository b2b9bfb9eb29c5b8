//! The values operations return: watch events, and the futures and streams
//! the client hands out. Node kinds ([`CreateMode`](crate::CreateMode)),
//! stats ([`Stat`]) and event kinds ([`EventKind`]) are session-core's, the
//! same types the server uses; this module converts them from the wire.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use session_core::{ClientState, EventKind, Stat};
use session_wire::v1 as wire;
use tokio::sync::{mpsc, oneshot};

use crate::Error;

/// Where the client stands with its session (re-exported from
/// `session_core::ClientState`):
/// `NotConnected → Connecting → Connected ⇄ Suspended → Expired`, and the
/// terminal `Closed` and `AuthFailed`.
pub type State = ClientState;

/// A node's [`Stat`] from its wire form: the times are the server's
/// wall-clock milliseconds (`ctime`, `mtime`), `ephemeral_owner` the owning
/// session's raw id (0 for a persistent node).
pub(crate) fn stat_from_wire(stat: wire::Stat) -> Stat {
    Stat {
        czxid: stat.czxid,
        mzxid: stat.mzxid,
        pzxid: stat.pzxid,
        ctime: stat.ctime_ms,
        mtime: stat.mtime_ms,
        version: stat.version,
        cversion: stat.cversion,
        ephemeral_owner: stat.ephemeral_owner,
        data_length: stat.data_length,
        num_children: stat.num_children,
    }
}

/// The [`EventKind`] of a wire event; `None` for an unset kind.
pub(crate) fn event_kind_from_wire(kind: wire::WatchEventKind) -> Option<EventKind> {
    match kind {
        wire::WatchEventKind::NodeCreated => Some(EventKind::NodeCreated),
        wire::WatchEventKind::NodeDeleted => Some(EventKind::NodeDeleted),
        wire::WatchEventKind::NodeDataChanged => Some(EventKind::NodeDataChanged),
        wire::WatchEventKind::NodeChildrenChanged => Some(EventKind::NodeChildrenChanged),
        wire::WatchEventKind::Unspecified => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_stats_and_event_kinds_convert_field_by_field() {
        let wire = wire::Stat {
            czxid: 1,
            mzxid: 2,
            pzxid: 3,
            ctime_ms: 4,
            mtime_ms: 5,
            version: 6,
            cversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
        };
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            pzxid: 3,
            ctime: 4,
            mtime: 5,
            version: 6,
            cversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
        };
        assert_eq!(stat_from_wire(wire), stat);

        use wire::WatchEventKind as W;
        assert_eq!(event_kind_from_wire(W::Unspecified), None);
        for (from, to) in [
            (W::NodeCreated, EventKind::NodeCreated),
            (W::NodeDeleted, EventKind::NodeDeleted),
            (W::NodeDataChanged, EventKind::NodeDataChanged),
            (W::NodeChildrenChanged, EventKind::NodeChildrenChanged),
        ] {
            assert_eq!(event_kind_from_wire(from), Some(to));
        }
    }
}
