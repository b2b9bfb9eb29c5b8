//! The values operations return: watch events, and the futures and streams
//! the client hands out. Node kinds ([`CreateMode`](crate::CreateMode)),
//! stats ([`Stat`]), event kinds ([`EventKind`]) and access control lists
//! ([`Acl`]) are session-core's, the same types the server uses; this module
//! converts them from and to the wire.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use session_core::{Acl, ClientState, EventKind, Id, SessionId, Stat, WatchKind, WatcherType};
use session_wire::v1 as wire;
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::driver::{Command, ReplySender};

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
        aversion: stat.aversion,
        ephemeral_owner: stat.ephemeral_owner,
        data_length: stat.data_length,
        num_children: stat.num_children,
    }
}

/// An optional wire stat as a [`Stat`]; a server always sends one, so a
/// missing one reads as all zeros.
pub(crate) fn opt_stat(stat: Option<wire::Stat>) -> Stat {
    stat.map(stat_from_wire).unwrap_or_default()
}

/// An [`Id`] as the wire carries it.
pub(crate) fn id_to_wire(id: &Id) -> wire::Id {
    wire::Id {
        scheme: id.scheme.clone(),
        id: id.id.clone(),
    }
}

/// An [`Id`] from the wire.
pub(crate) fn id_from_wire(id: wire::Id) -> Id {
    Id::new(id.scheme, id.id)
}

/// An [`Acl`] entry as the wire carries it.
pub(crate) fn acl_to_wire(acl: &Acl) -> wire::Acl {
    wire::Acl {
        perms: acl.perms,
        id: Some(id_to_wire(&acl.id)),
    }
}

/// An [`Acl`] entry from the wire; a server always names the id, so a
/// missing one reads as the empty id (which no connection holds).
pub(crate) fn acl_from_wire(acl: wire::Acl) -> Acl {
    Acl::new(
        acl.perms,
        acl.id.map_or_else(|| Id::new("", ""), id_from_wire),
    )
}

/// The [`WatcherType`] as the wire numbers it (the same numbers as
/// ZooKeeper's).
pub(crate) fn watcher_type_to_wire(kind: WatcherType) -> wire::WatcherType {
    match kind {
        WatcherType::Children => wire::WatcherType::Children,
        WatcherType::Data => wire::WatcherType::Data,
        WatcherType::Any => wire::WatcherType::Any,
        WatcherType::Persistent => wire::WatcherType::Persistent,
        WatcherType::PersistentRecursive => wire::WatcherType::PersistentRecursive,
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

/// A fired watch: a one-shot [`Watch`]'s only event, or one of a
/// [`PersistentWatch`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened.
    pub kind: EventKind,
    /// The path of the node that changed, as the client sees it (chroot
    /// removed): the watched node, or for a recursive watch a node under it.
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
/// `Err(Closed)` when the session ends first.
///
/// Dropping it before it fired removes the watch from the server too
/// (ZooKeeper's removeWatches, of the data type for `get_and_watch` and
/// `exists_and_watch`, of the children type for `children_and_watch`),
/// unless another `Watch` of the same client still waits on that path for
/// that type.
///
/// ```no_run
/// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
/// use std::time::Duration;
/// use session_client::WatcherType;
///
/// let (_, _, changed) = client.get_and_watch("/config").await?;
/// // Wait a minute at most; then the server forgets the watch as well.
/// let _ = tokio::time::timeout(Duration::from_secs(60), changed).await;
/// assert!(!client.check_watches("/config", WatcherType::Data).await?);
/// # Ok(()) }
/// ```
#[must_use = "a watch does nothing unless awaited"]
#[derive(Debug)]
pub struct Watch {
    pub(crate) receiver: oneshot::Receiver<Result<WatchedEvent, Error>>,
    /// `None` once it resolved: nothing left to forget.
    pub(crate) forget: Option<ForgetWatch>,
}

/// What the driver needs to forget a dropped [`Watch`]. The sender is weak,
/// so that a watch alone does not keep the session open.
#[derive(Debug)]
pub(crate) struct ForgetWatch {
    pub(crate) commands: mpsc::WeakUnboundedSender<Command>,
    pub(crate) group: WatcherType,
    pub(crate) server_path: String,
}

impl Future for Watch {
    type Output = Result<WatchedEvent, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(Error::Closed)));
        if outcome.is_ready() {
            self.forget = None;
        }
        outcome
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(forget) = self.forget.take() else {
            return;
        };
        // Fired (or ended with the session) already: the server holds
        // nothing for it.
        if !matches!(
            self.receiver.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ) {
            return;
        }
        self.receiver.close();
        if let Some(commands) = forget.commands.upgrade() {
            let _ = commands.send(Command::ForgetWatch {
                group: forget.group,
                server_path: forget.server_path,
            });
        }
    }
}

/// A persistent watch left by [`Client::add_watch`](crate::Client::add_watch):
/// a stream of events that lasts until the watch is removed.
///
/// Unlike a one-shot [`Watch`] it is not removed by firing. A plain
/// persistent watch reports every change of its node (created, deleted,
/// data changed, children changed); a recursive one reports creations,
/// deletions and data changes of its node and of every node under it, each
/// event naming the node that changed (never children changed).
///
/// After a reconnect the client sets the watch again on the new connection;
/// changes made while it was disconnected are not reported (ZooKeeper's
/// rule for persistent watches): read the nodes again if they matter.
///
/// The stream yields `Err(SessionExpired)`, `Err(AuthFailed)` or
/// `Err(Closed)` once when the session ends, and then ends. It ends without
/// an error when the watch is removed by
/// [`Client::remove_watches`](crate::Client::remove_watches). Dropping it
/// (or [`remove`](Self::remove)) removes the watch from the server, unless
/// another `PersistentWatch` of the same client watches the same path the
/// same way.
///
/// ```no_run
/// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
/// use futures_util::StreamExt;
///
/// let mut changes = client.add_watch("/config", true).await?;
/// while let Some(event) = changes.next().await {
///     let event = event?;
///     println!("{} {}", event.kind, event.path);
/// }
/// # Ok(()) }
/// ```
#[must_use = "a persistent watch is removed when dropped"]
#[derive(Debug)]
pub struct PersistentWatch {
    pub(crate) receiver: mpsc::UnboundedReceiver<Result<WatchedEvent, Error>>,
    pub(crate) registration: Option<Registration>,
    pub(crate) path: String,
    pub(crate) recursive: bool,
}

/// What the driver needs to forget a [`PersistentWatch`]. The sender is
/// weak, so that a watch alone does not keep the session open.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) commands: mpsc::WeakUnboundedSender<Command>,
    pub(crate) kind: WatchKind,
    pub(crate) server_path: String,
    pub(crate) id: u64,
}

impl Registration {
    fn forget(self, done: Option<ReplySender>) -> bool {
        let Some(commands) = self.commands.upgrade() else {
            return false;
        };
        commands
            .send(Command::Unwatch {
                kind: self.kind,
                server_path: self.server_path,
                id: self.id,
                done,
            })
            .is_ok()
    }
}

impl PersistentWatch {
    /// The watched path, as given to
    /// [`add_watch`](crate::Client::add_watch).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the watch also reports the nodes under its path.
    #[must_use]
    pub fn is_recursive(&self) -> bool {
        self.recursive
    }

    /// Removes the watch and waits for the server to confirm it, when this
    /// was the client's last handle on it (dropping the watch does the same
    /// without waiting). A watch the server no longer held, or a session
    /// already over, is not an error.
    ///
    /// ```no_run
    /// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
    /// let watch = client.add_watch("/jobs", false).await?;
    /// // ...
    /// watch.remove().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ConnectionLoss`] when the connection dropped before the
    /// server answered (the watch is forgotten by this client all the same,
    /// and not set again after the reconnect), and the server's errors.
    pub async fn remove(mut self) -> Result<(), Error> {
        let Some(registration) = self.registration.take() else {
            return Ok(());
        };
        let (done, answered) = oneshot::channel();
        if !registration.forget(Some(done)) {
            return Ok(());
        }
        match answered.await {
            Ok(Ok(_)) | Ok(Err(Error::NoWatcher { .. })) | Err(_) => Ok(()),
            Ok(Err(error)) if error.is_terminal() => Ok(()),
            Ok(Err(error)) => Err(error),
        }
    }
}

impl Stream for PersistentWatch {
    type Item = Result<WatchedEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for PersistentWatch {
    fn drop(&mut self) {
        if let Some(registration) = self.registration.take() {
            registration.forget(None);
        }
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

/// The new session's id after each automatic renewal of a client built
/// with [`ClientBuilder::auto_renew`](crate::ClientBuilder::auto_renew),
/// once it is connected. From [`Client::renewals`](crate::Client::renewals);
/// ends when the client ends.
#[derive(Debug)]
pub struct Renewals {
    pub(crate) receiver: mpsc::UnboundedReceiver<SessionId>,
}

impl Stream for Renewals {
    type Item = SessionId;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionId>> {
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
            aversion: 11,
        };
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            pzxid: 3,
            ctime: 4,
            mtime: 5,
            version: 6,
            cversion: 7,
            aversion: 11,
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

    #[test]
    fn acls_and_watcher_types_convert_both_ways() {
        let acl = Acl::new(session_core::perms::READ, Id::new("digest", "alice:hash"));
        assert_eq!(acl_from_wire(acl_to_wire(&acl)), acl);
        let nameless = wire::Acl { perms: 1, id: None };
        assert_eq!(acl_from_wire(nameless), Acl::new(1, Id::new("", "")));
        for value in 1..=5 {
            let kind = WatcherType::from_wire(value).expect("1 to 5 are watcher types");
            assert_eq!(watcher_type_to_wire(kind) as i32, value, "{kind:?}");
        }
    }
}
