//! The client's watches: the one-shot ones keyed by kind and server-side
//! path, the persistent ones (from `add_watch`) with every handle that
//! shares each, and their re-registration after a reattach in frames of
//! bounded size. Which event fires which kind of watch is session-core's
//! rule ([`WatchKind::fired_by`]), the one the server fires by; the server
//! sends one event per change and path, and this registry hands it to every
//! watch it fires.

use std::collections::BTreeMap;

use session_core::{EventKind, WatchKind};
use session_wire::v1::SetWatches;
use tokio::sync::{mpsc, oneshot};

use crate::{Error, WatchedEvent};

/// Most bytes of paths in one `SetWatches` request: far under the 1 MiB
/// frame limit, so a client with many watches never sends a frame the server
/// must refuse (ZOOKEEPER-706).
pub(crate) const SET_WATCHES_BATCH_BYTES: usize = 128 * 1024;

/// Every kind of watch, in the order `SetWatches` lists them.
const KINDS: [WatchKind; 5] = [
    WatchKind::Data,
    WatchKind::Exist,
    WatchKind::Child,
    WatchKind::Persistent,
    WatchKind::PersistentRecursive,
];

/// The one-shot kinds' slots in [`WatchRegistry::one_shot`], the persistent
/// kinds' in [`WatchRegistry::persistent`].
const fn slot(kind: WatchKind) -> usize {
    match kind {
        WatchKind::Data | WatchKind::Persistent => 0,
        WatchKind::Exist | WatchKind::PersistentRecursive => 1,
        WatchKind::Child => 2,
    }
}

pub(crate) type WatchSender = oneshot::Sender<Result<WatchedEvent, Error>>;
pub(crate) type EventSender = mpsc::UnboundedSender<Result<WatchedEvent, Error>>;

/// One `PersistentWatch` handle.
#[derive(Debug)]
struct Listener {
    id: u64,
    sender: EventSender,
    /// `Some` until the server answered the `AddWatch`: the events that came
    /// meanwhile, held until the answer's zxid says which followed the
    /// watch's registration.
    held: Option<Vec<WatchedEvent>>,
}

/// The watches the server holds for this client, by kind and server path.
#[derive(Debug, Default)]
pub(crate) struct WatchRegistry {
    /// Data, exist and child watches; paths sorted, so re-registration is
    /// deterministic.
    one_shot: [BTreeMap<String, Vec<WatchSender>>; 3],
    /// Persistent and persistent recursive watches.
    persistent: [BTreeMap<String, Vec<Listener>>; 2],
}

impl WatchRegistry {
    /// A one-shot watch the server has set.
    pub(crate) fn add(&mut self, kind: WatchKind, server_path: String, sender: WatchSender) {
        debug_assert!(!kind.is_persistent(), "{kind:?} is not one-shot");
        self.one_shot[slot(kind)]
            .entry(server_path)
            .or_default()
            .push(sender);
    }

    /// Removes and returns the one-shot watches an event of `kind` on
    /// `server_path` fires ([`EventKind::fires`]).
    pub(crate) fn take_fired(&mut self, kind: EventKind, server_path: &str) -> Vec<WatchSender> {
        let mut fired = Vec::new();
        for &watch in kind.fires() {
            if watch.is_persistent() {
                continue;
            }
            if let Some(senders) = self.one_shot[slot(watch)].remove(server_path) {
                fired.extend(senders);
            }
        }
        fired
    }

    /// A persistent watch handle whose `AddWatch` is on its way: events for
    /// it are held until [`confirm`](Self::confirm).
    pub(crate) fn add_persistent(
        &mut self,
        kind: WatchKind,
        server_path: String,
        id: u64,
        sender: EventSender,
    ) {
        debug_assert!(kind.is_persistent(), "{kind:?} is one-shot");
        self.persistent[slot(kind)]
            .entry(server_path)
            .or_default()
            .push(Listener {
                id,
                sender,
                held: Some(Vec::new()),
            });
    }

    /// The server set the watch, answering with `zxid`: the held events of
    /// changes after it are the watch's first.
    pub(crate) fn confirm(&mut self, kind: WatchKind, server_path: &str, id: u64, zxid: u64) {
        let Some(listeners) = self.persistent[slot(kind)].get_mut(server_path) else {
            return;
        };
        if let Some(listener) = listeners.iter_mut().find(|listener| listener.id == id) {
            for event in listener.held.take().unwrap_or_default() {
                if event.zxid > zxid {
                    let _ = listener.sender.send(Ok(event));
                }
            }
        }
    }

    /// Forgets a persistent watch handle. True when it was the last one on
    /// its kind and path, so the server's watch should go too.
    pub(crate) fn remove_persistent(
        &mut self,
        kind: WatchKind,
        server_path: &str,
        id: u64,
    ) -> bool {
        let watches = &mut self.persistent[slot(kind)];
        let Some(listeners) = watches.get_mut(server_path) else {
            return false;
        };
        let before = listeners.len();
        listeners.retain(|listener| listener.id != id);
        let removed = listeners.len() < before;
        let last = listeners.is_empty();
        if last {
            watches.remove(server_path);
        }
        removed && last
    }

    /// Hands an event of `kind` on `server_path` to the persistent watches
    /// it fires: those on the path, and the recursive ones on the path and
    /// above it.
    pub(crate) fn deliver(&mut self, kind: EventKind, server_path: &str, event: &WatchedEvent) {
        let deliver_to = |listeners: &mut Vec<Listener>| {
            for listener in listeners {
                match listener.held.as_mut() {
                    Some(held) => held.push(event.clone()),
                    None => {
                        let _ = listener.sender.send(Ok(event.clone()));
                    }
                }
            }
        };
        if WatchKind::Persistent.fired_by(kind) {
            if let Some(listeners) =
                self.persistent[slot(WatchKind::Persistent)].get_mut(server_path)
            {
                deliver_to(listeners);
            }
        }
        if WatchKind::PersistentRecursive.fired_by(kind) {
            let recursive = &mut self.persistent[slot(WatchKind::PersistentRecursive)];
            for path in self_and_ancestors(server_path) {
                if let Some(listeners) = recursive.get_mut(path) {
                    deliver_to(listeners);
                }
            }
        }
    }

    /// The server removed the watches of `kinds` on `server_path`: one-shot
    /// ones end with `removed`, persistent handles' streams end. Handles
    /// whose `AddWatch` is still on its way stay (the server sets theirs
    /// after this removal).
    pub(crate) fn remove_kinds(&mut self, server_path: &str, kinds: &[WatchKind], removed: &Error) {
        for &kind in kinds {
            if kind.is_persistent() {
                let watches = &mut self.persistent[slot(kind)];
                if let Some(listeners) = watches.get_mut(server_path) {
                    listeners.retain(|listener| listener.held.is_some());
                    if listeners.is_empty() {
                        watches.remove(server_path);
                    }
                }
            } else if let Some(senders) = self.one_shot[slot(kind)].remove(server_path) {
                for sender in senders {
                    let _ = sender.send(Err(removed.clone()));
                }
            }
        }
    }

    /// Ends every watch with `error` (the session is over).
    pub(crate) fn fail_all(&mut self, error: &Error) {
        for watches in &mut self.one_shot {
            for (_, senders) in std::mem::take(watches) {
                for sender in senders {
                    let _ = sender.send(Err(error.clone()));
                }
            }
        }
        for watches in &mut self.persistent {
            for (_, listeners) in std::mem::take(watches) {
                for listener in listeners {
                    let _ = listener.sender.send(Err(error.clone()));
                }
            }
        }
    }

    /// Forgets one-shot watches whose `Watch` was dropped. Persistent
    /// handles are forgotten only by their own `Unwatch`, which also tells
    /// the server.
    pub(crate) fn prune(&mut self) {
        for watches in &mut self.one_shot {
            watches.retain(|_, senders| {
                senders.retain(|sender| !sender.is_closed());
                !senders.is_empty()
            });
        }
    }

    /// Forgets the one-shot watches on `server_path` whose `Watch` was
    /// dropped.
    pub(crate) fn prune_path(&mut self, server_path: &str) {
        for watches in &mut self.one_shot {
            if let Some(senders) = watches.get_mut(server_path) {
                senders.retain(|sender| !sender.is_closed());
                if senders.is_empty() {
                    watches.remove(server_path);
                }
            }
        }
    }

    /// Whether a one-shot watch of one of `kinds` on `server_path` is held
    /// for a `Watch` still waiting for it.
    pub(crate) fn holds(&self, kinds: &[WatchKind], server_path: &str) -> bool {
        kinds.iter().any(|&kind| {
            !kind.is_persistent()
                && self.one_shot[slot(kind)]
                    .get(server_path)
                    .is_some_and(|senders| senders.iter().any(|sender| !sender.is_closed()))
        })
    }

    /// Number of (kind, path) watches held.
    pub(crate) fn len(&self) -> usize {
        self.one_shot.iter().map(BTreeMap::len).sum::<usize>()
            + self.persistent.iter().map(BTreeMap::len).sum::<usize>()
    }

    fn paths(&self, kind: WatchKind) -> Box<dyn Iterator<Item = &String> + '_> {
        if kind.is_persistent() {
            Box::new(
                self.persistent[slot(kind)]
                    .iter()
                    // A handle still waiting for its AddWatch is set by it.
                    .filter(|(_, listeners)| listeners.iter().any(|l| l.held.is_none()))
                    .map(|(path, _)| path),
            )
        } else {
            Box::new(self.one_shot[slot(kind)].keys())
        }
    }

    /// The `SetWatches` requests that re-register every watch, each with at
    /// most about `max_bytes` of paths.
    pub(crate) fn set_watches(&self, last_zxid_seen: u64, max_bytes: usize) -> Vec<SetWatches> {
        let empty = || SetWatches {
            last_zxid_seen,
            ..SetWatches::default()
        };
        let mut batches = Vec::new();
        let mut batch = empty();
        let mut bytes = 0;
        let keys = KINDS
            .into_iter()
            .flat_map(|kind| self.paths(kind).map(move |path| (kind, path)));
        for (kind, path) in keys {
            // A repeated string field costs its bytes plus a tag and a length.
            let cost = path.len() + 6;
            if bytes > 0 && bytes + cost > max_bytes {
                batches.push(std::mem::replace(&mut batch, empty()));
                bytes = 0;
            }
            bytes += cost;
            let list = match kind {
                WatchKind::Data => &mut batch.data_paths,
                WatchKind::Exist => &mut batch.exist_paths,
                WatchKind::Child => &mut batch.child_paths,
                WatchKind::Persistent => &mut batch.persistent_paths,
                WatchKind::PersistentRecursive => &mut batch.persistent_recursive_paths,
            };
            list.push(path.clone());
        }
        if bytes > 0 {
            batches.push(batch);
        }
        batches
    }
}

/// `/a/b/c`, `/a/b`, `/a`, `/`.
fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.rfind('/') {
            _ if current == "/" => None,
            Some(0) => Some("/"),
            Some(at) => Some(&current[..at]),
            None => None,
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn registry_of(
        paths: &[(WatchKind, &str)],
    ) -> (
        WatchRegistry,
        Vec<oneshot::Receiver<Result<WatchedEvent, Error>>>,
    ) {
        let mut registry = WatchRegistry::default();
        let mut receivers = Vec::new();
        for (kind, path) in paths {
            let (tx, rx) = oneshot::channel();
            registry.add(*kind, (*path).to_owned(), tx);
            receivers.push(rx);
        }
        (registry, receivers)
    }

    fn event(kind: EventKind, path: &str, zxid: u64) -> WatchedEvent {
        WatchedEvent {
            kind,
            path: path.to_owned(),
            zxid,
        }
    }

    /// A confirmed persistent watch handle and its stream.
    fn listen(
        registry: &mut WatchRegistry,
        kind: WatchKind,
        path: &str,
        id: u64,
    ) -> mpsc::UnboundedReceiver<Result<WatchedEvent, Error>> {
        let (tx, rx) = mpsc::unbounded_channel();
        registry.add_persistent(kind, path.to_owned(), id, tx);
        registry.confirm(kind, path, id, 0);
        rx
    }

    fn drain(
        rx: &mut mpsc::UnboundedReceiver<Result<WatchedEvent, Error>>,
    ) -> Vec<(EventKind, String)> {
        let mut got = Vec::new();
        while let Ok(item) = rx.try_recv() {
            let event = item.expect("an event, not an error");
            got.push((event.kind, event.path));
        }
        got
    }

    #[test]
    fn events_fire_the_kinds_session_core_says() {
        let (mut registry, _rx) = registry_of(&[
            (WatchKind::Data, "/a"),
            (WatchKind::Exist, "/a"),
            (WatchKind::Child, "/a"),
        ]);
        let mut fired = |kind, path| registry.take_fired(kind, path).len();
        assert_eq!(fired(EventKind::NodeChildrenChanged, "/a"), 1);
        assert_eq!(fired(EventKind::NodeChildrenChanged, "/a"), 0, "one-shot");
        assert_eq!(fired(EventKind::NodeDataChanged, "/b"), 0);
        // The server fires an exist watch only by a create or a delete: a data
        // change must not take it here either, or its later event is lost.
        assert_eq!(fired(EventKind::NodeDataChanged, "/a"), 1);
        assert_eq!(fired(EventKind::NodeCreated, "/a"), 1);
        assert_eq!(registry.len(), 0);

        let (mut registry, _rx) = registry_of(&[
            (WatchKind::Data, "/x"),
            (WatchKind::Exist, "/x"),
            (WatchKind::Child, "/x"),
        ]);
        assert_eq!(registry.take_fired(EventKind::NodeDeleted, "/x").len(), 3);
    }

    #[test]
    fn the_registry_follows_the_rules_table() {
        let events = [
            EventKind::NodeCreated,
            EventKind::NodeDeleted,
            EventKind::NodeDataChanged,
            EventKind::NodeChildrenChanged,
        ];
        for kind in KINDS {
            for change in events {
                let fired = if kind.is_persistent() {
                    let mut registry = WatchRegistry::default();
                    let mut rx = listen(&mut registry, kind, "/p", 1);
                    registry.deliver(change, "/p", &event(change, "/p", 1));
                    let fired = drain(&mut rx).len() == 1;
                    assert_eq!(registry.len(), 1, "a persistent watch stays");
                    fired
                } else {
                    let (mut registry, _rx) = registry_of(&[(kind, "/p")]);
                    registry.take_fired(change, "/p").len() == 1
                };
                assert_eq!(
                    fired,
                    kind.fired_by(change),
                    "{change:?} on a {kind:?} watch"
                );
            }
        }
    }

    #[test]
    fn recursive_watches_hear_their_subtree_and_plain_ones_their_node() {
        let mut registry = WatchRegistry::default();
        let mut root = listen(&mut registry, WatchKind::PersistentRecursive, "/", 1);
        let mut app = listen(&mut registry, WatchKind::PersistentRecursive, "/app", 2);
        let mut plain = listen(&mut registry, WatchKind::Persistent, "/app", 3);
        let mut other = listen(&mut registry, WatchKind::PersistentRecursive, "/ap", 4);

        let set = |registry: &mut WatchRegistry, kind, path: &str| {
            registry.deliver(kind, path, &event(kind, path, 5));
        };
        set(&mut registry, EventKind::NodeCreated, "/app/x/y");
        set(&mut registry, EventKind::NodeChildrenChanged, "/app/x");
        set(&mut registry, EventKind::NodeDataChanged, "/app");
        set(&mut registry, EventKind::NodeChildrenChanged, "/app");

        let created = (EventKind::NodeCreated, "/app/x/y".to_owned());
        let data = (EventKind::NodeDataChanged, "/app".to_owned());
        let children = (EventKind::NodeChildrenChanged, "/app".to_owned());
        assert_eq!(drain(&mut root), [created.clone(), data.clone()]);
        assert_eq!(drain(&mut app), [created, data.clone()]);
        assert_eq!(drain(&mut plain), [data, children]);
        assert_eq!(drain(&mut other), [], "/ap is not above /app");
    }

    #[test]
    fn events_before_the_add_watch_answer_count_only_when_newer() {
        let mut registry = WatchRegistry::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        registry.add_persistent(WatchKind::Persistent, "/n".to_owned(), 1, tx);
        for zxid in [9, 10, 11] {
            registry.deliver(
                EventKind::NodeDataChanged,
                "/n",
                &event(EventKind::NodeDataChanged, "/n", zxid),
            );
        }
        assert!(rx.try_recv().is_err(), "held until the answer");
        assert!(registry.set_watches(1, 1000).is_empty(), "not set yet");
        registry.confirm(WatchKind::Persistent, "/n", 1, 10);
        let zxids: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|event| event.expect("an event").zxid)
            .collect();
        assert_eq!(zxids, [11]);
    }

    #[test]
    fn a_shared_persistent_watch_goes_with_its_last_handle() {
        let mut registry = WatchRegistry::default();
        let _a = listen(&mut registry, WatchKind::Persistent, "/n", 1);
        let _b = listen(&mut registry, WatchKind::Persistent, "/n", 2);
        assert!(!registry.remove_persistent(WatchKind::Persistent, "/n", 1));
        assert!(
            !registry.remove_persistent(WatchKind::Persistent, "/n", 1),
            "twice"
        );
        assert!(
            !registry.remove_persistent(WatchKind::PersistentRecursive, "/n", 2),
            "another kind"
        );
        assert!(registry.remove_persistent(WatchKind::Persistent, "/n", 2));
        assert_eq!(registry.len(), 0);
        assert!(!registry.remove_persistent(WatchKind::Persistent, "/n", 2));
    }

    #[test]
    fn removed_watches_end_one_shot_with_an_error_and_persistent_streams_quietly() {
        let (mut registry, mut receivers) =
            registry_of(&[(WatchKind::Data, "/a"), (WatchKind::Child, "/a")]);
        let mut persistent = listen(&mut registry, WatchKind::Persistent, "/a", 1);
        let (tx, mut pending) = mpsc::unbounded_channel();
        registry.add_persistent(WatchKind::Persistent, "/a".to_owned(), 2, tx);
        let removed = Error::WatchRemoved {
            path: "/a".to_owned(),
        };
        registry.remove_kinds("/a", &[WatchKind::Data, WatchKind::Persistent], &removed);
        assert_eq!(receivers[0].try_recv(), Ok(Err(removed)));
        assert!(receivers[1].try_recv().is_err(), "the child watch stays");
        assert_eq!(
            persistent.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
        assert_eq!(pending.try_recv(), Err(mpsc::error::TryRecvError::Empty));
        assert_eq!(registry.len(), 2, "the child watch and the pending handle");
    }

    #[test]
    fn dropped_watches_are_pruned_and_the_rest_fail_when_the_session_ends() {
        let (mut registry, mut receivers) =
            registry_of(&[(WatchKind::Data, "/a"), (WatchKind::Data, "/b")]);
        let mut persistent = listen(&mut registry, WatchKind::PersistentRecursive, "/", 1);
        drop(receivers.remove(0));
        registry.prune();
        assert_eq!(registry.len(), 2);
        registry.fail_all(&Error::SessionExpired);
        assert_eq!(receivers[0].try_recv(), Ok(Err(Error::SessionExpired)));
        assert_eq!(persistent.try_recv(), Ok(Err(Error::SessionExpired)));
        assert_eq!(
            persistent.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn a_dropped_watch_is_forgotten_and_its_path_still_held_by_another() {
        let (mut registry, mut receivers) = registry_of(&[
            (WatchKind::Data, "/a"),
            (WatchKind::Exist, "/a"),
            (WatchKind::Child, "/a"),
        ]);
        let data = [WatchKind::Data, WatchKind::Exist];
        assert!(registry.holds(&data, "/a"));
        drop(receivers.remove(0));
        assert!(registry.holds(&data, "/a"), "the exist watch waits still");
        drop(receivers.remove(0));
        assert!(
            !registry.holds(&data, "/a"),
            "a closed watch counts for nothing"
        );
        registry.prune_path("/a");
        assert_eq!(registry.len(), 1, "only the child watch is left");
        assert!(registry.holds(&[WatchKind::Child], "/a"));
        assert!(!registry.holds(&[WatchKind::Persistent], "/a"));
    }

    #[test]
    fn ancestors_run_up_to_the_root() {
        assert_eq!(
            self_and_ancestors("/a/b/c").collect::<Vec<_>>(),
            ["/a/b/c", "/a/b", "/a", "/"]
        );
        assert_eq!(self_and_ancestors("/").collect::<Vec<_>>(), ["/"]);
        assert_eq!(self_and_ancestors("/a").collect::<Vec<_>>(), ["/a", "/"]);
    }

    #[test]
    fn set_watches_is_split_under_the_frame_limit() {
        // ZOOKEEPER-706: one SetWatches for every watch could exceed the frame
        // limit; 20,000 watches on 100-byte paths are ~2 MB of paths.
        let mut registry = WatchRegistry::default();
        let mut streams = Vec::new();
        for i in 0..20_000 {
            let path = format!("/{}{i:08}", "p".repeat(91));
            match KINDS[i % 5] {
                kind if kind.is_persistent() => {
                    streams.push(listen(&mut registry, kind, &path, i as u64));
                }
                kind => {
                    let (tx, _rx) = oneshot::channel();
                    registry.add(kind, path, tx);
                }
            }
        }
        let batches = registry.set_watches(42, SET_WATCHES_BATCH_BYTES);
        assert!(batches.len() > 10, "{} batches", batches.len());
        let mut total = 0;
        let mut persistent = 0;
        for batch in &batches {
            assert_eq!(batch.last_zxid_seen, 42);
            assert!(
                batch.encoded_len() <= SET_WATCHES_BATCH_BYTES + 64,
                "{}",
                batch.encoded_len()
            );
            total += batch.data_paths.len() + batch.exist_paths.len() + batch.child_paths.len();
            persistent += batch.persistent_paths.len() + batch.persistent_recursive_paths.len();
        }
        assert_eq!((total, persistent), (12_000, 8_000));
        assert!(WatchRegistry::default().set_watches(1, 100).is_empty());
    }
}
