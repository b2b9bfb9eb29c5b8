//! One-shot watches: the rules of which change fires which watch, defined
//! once for server and client, and the server's table of who waits for what.
//!
//! [`EventKind::fires`] and its inverse [`WatchKind::fired_by`] are the rules.
//! [`WatchTable`] keeps each kind of watch keyed by path with a small set of
//! watchers per path, and a reverse index from watcher to its paths so that
//! forgetting a watcher (its session closed) touches only its own watches.
//! Both indexes share one `Arc<str>` per watched path. Watches are not
//! replicated state: each server keeps the watches of the clients connected
//! to it, and fires them from the [`Change`]s its replica's writes report.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use crate::{Change, DataTree, TreeError, validate_path};

/// What kind of change a [`WatchEvent`] (or a [`Change`]) reports
/// (ZooKeeper's event types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The node was created (fires exist and data watches on its path).
    NodeCreated,
    /// The node was deleted (fires data, exist and child watches on its path).
    NodeDeleted,
    /// The node's data was set (fires data watches on its path).
    NodeDataChanged,
    /// A child of the node was created or deleted (fires child watches on it).
    NodeChildrenChanged,
}

impl std::fmt::Display for EventKind {
    /// `created`, `deleted`, `data-changed` or `children-changed`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NodeCreated => "created",
            Self::NodeDeleted => "deleted",
            Self::NodeDataChanged => "data-changed",
            Self::NodeChildrenChanged => "children-changed",
        })
    }
}

impl EventKind {
    /// The kinds of watch on a path that a change of this kind to that path
    /// fires, in the order they are taken:
    ///
    /// | change | fires |
    /// | --- | --- |
    /// | `NodeCreated` | `Exist`, `Data` |
    /// | `NodeDeleted` | `Data`, `Exist`, `Child` |
    /// | `NodeDataChanged` | `Data` |
    /// | `NodeChildrenChanged` | `Child` |
    ///
    /// ```
    /// use session_core::{EventKind, WatchKind};
    ///
    /// assert_eq!(EventKind::NodeDataChanged.fires(), &[WatchKind::Data]);
    /// assert!(WatchKind::Child.fired_by(EventKind::NodeDeleted));
    /// ```
    #[must_use]
    pub const fn fires(self) -> &'static [WatchKind] {
        match self {
            Self::NodeCreated => &[WatchKind::Exist, WatchKind::Data],
            Self::NodeDeleted => &[WatchKind::Data, WatchKind::Exist, WatchKind::Child],
            Self::NodeDataChanged => &[WatchKind::Data],
            Self::NodeChildrenChanged => &[WatchKind::Child],
        }
    }
}

/// The three kinds of watch a read can leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// Left by a data read (or by `exists` on an existing node): fires when
    /// the node's data changes or it is deleted (or, set on a missing node
    /// by hand, when it is created).
    Data = 0,
    /// Left by `exists` on a missing node: fires when it is created (or
    /// deleted).
    Exist = 1,
    /// Left by a children read: fires when a child is created or deleted, or
    /// the node is deleted.
    Child = 2,
}

impl WatchKind {
    /// Whether a change of `kind` to the watched path fires this watch: the
    /// inverse of [`EventKind::fires`], for a client that keeps its own
    /// watches.
    #[must_use]
    pub fn fired_by(self, kind: EventKind) -> bool {
        kind.fires().contains(&self)
    }
}

/// The watch an `exists` read leaves: on an existing node a
/// [`WatchKind::Data`] watch (its next set or delete), on a missing one a
/// [`WatchKind::Exist`] watch (its create).
///
/// ```
/// use session_core::{WatchKind, watch_kind_for_exists};
///
/// assert_eq!(watch_kind_for_exists(true), WatchKind::Data);
/// assert_eq!(watch_kind_for_exists(false), WatchKind::Exist);
/// ```
#[must_use]
pub const fn watch_kind_for_exists(exists: bool) -> WatchKind {
    if exists {
        WatchKind::Data
    } else {
        WatchKind::Exist
    }
}

/// A fired watch, to be delivered to its watcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// What changed.
    pub kind: EventKind,
    /// The path the watch was set on.
    pub path: Arc<str>,
    /// The zxid of the write that fired it. For events fired at once by
    /// [`WatchTable::set_watches`]: the zxid of the change where the tree
    /// knows it, else the tree's [`last_zxid`](DataTree::last_zxid).
    pub zxid: u64,
}

const KINDS: usize = 3;

/// Watches by kind and path, with the reverse index watcher → paths.
///
/// `W` identifies a watcher; a server uses the session id. Methods: getters
/// ([`len`](Self::len), [`count_of`](Self::count_of)); commands
/// ([`add`](Self::add), [`remove_watcher`](Self::remove_watcher)); and the two
/// that fire, returning `(watcher, event)` pairs whose watches are now gone
/// (one-shot), for the caller to deliver (for a session: before any later
/// reply on its connection): [`fire`](Self::fire) from the changes of a
/// write, [`set_watches`](Self::set_watches) when a client re-registers.
///
/// ```
/// use bytes::Bytes;
/// use session_core::{CreateMode, DataTree, EventKind, WatchKind, WatchTable};
///
/// let mut tree = DataTree::new();
/// let mut watches: WatchTable<u64> = WatchTable::new();
/// // Session 7 reads the children of / and leaves a watch.
/// let (children, _stat) = tree.children("/")?;
/// assert!(children.is_empty());
/// watches.add(WatchKind::Child, "/", 7);
///
/// let written = tree.create("/a", Bytes::new(), CreateMode::Persistent, 0, 1, 1_000)?;
/// let fired = watches.fire(&written.changes, 1);
/// assert_eq!(fired.len(), 1);
/// assert_eq!(fired[0].0, 7);
/// assert_eq!(fired[0].1.kind, EventKind::NodeChildrenChanged);
/// assert_eq!(watches.len(), 0, "a watch fires once");
/// # Ok::<(), session_core::TreeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct WatchTable<W> {
    by_path: [HashMap<Arc<str>, HashSet<W>>; KINDS],
    by_watcher: HashMap<W, [HashSet<Arc<str>>; KINDS]>,
    len: usize,
}

impl<W: Copy + Eq + Hash> Default for WatchTable<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Copy + Eq + Hash> WatchTable<W> {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self {
            by_path: Default::default(),
            by_watcher: HashMap::new(),
            len: 0,
        }
    }

    /// Number of watches held, counting each (kind, path, watcher) once.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no watch is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of watches `watcher` holds, in O(1): for a per-session limit.
    #[must_use]
    pub fn count_of(&self, watcher: W) -> usize {
        self.by_watcher
            .get(&watcher)
            .map_or(0, |paths| paths.iter().map(HashSet::len).sum())
    }

    /// Whether `watcher` holds a watch of `kind` on `path`.
    #[must_use]
    pub fn holds(&self, kind: WatchKind, path: &str, watcher: W) -> bool {
        self.by_path[kind as usize]
            .get(path)
            .is_some_and(|watchers| watchers.contains(&watcher))
    }

    /// Adds a watch; returns false when the watcher already had it, in which
    /// case it will still fire once.
    pub fn add(&mut self, kind: WatchKind, path: &str, watcher: W) -> bool {
        let paths = &mut self.by_path[kind as usize];
        let key = match paths.get_key_value(path) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(path),
        };
        let watchers = paths.entry(Arc::clone(&key)).or_default();
        if !watchers.insert(watcher) {
            return false;
        }
        self.by_watcher.entry(watcher).or_default()[kind as usize].insert(key);
        self.len += 1;
        true
    }

    /// Drops every watch of `watcher` (its session closed) and returns how
    /// many there were. Touches only that watcher's own paths.
    pub fn remove_watcher(&mut self, watcher: W) -> usize {
        let Some(paths_by_kind) = self.by_watcher.remove(&watcher) else {
            return 0;
        };
        let mut removed = 0;
        for (kind, paths) in paths_by_kind.iter().enumerate() {
            for path in paths {
                if let Entry::Occupied(mut entry) = self.by_path[kind].entry(Arc::clone(path)) {
                    if entry.get_mut().remove(&watcher) {
                        removed += 1;
                    }
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                }
            }
        }
        self.len -= removed;
        removed
    }

    /// Fires the watches of a write's `changes`, all stamped with the write's
    /// `zxid`: for each change in order, takes the watches of
    /// [`change.kind.fires()`](EventKind::fires) on `change.path` and returns
    /// one event per watcher, however many of those kinds it had. Within one
    /// change, watchers come in no particular order.
    #[must_use = "the fired events must be delivered to their watchers"]
    pub fn fire(&mut self, changes: &[Change], zxid: u64) -> Vec<(W, WatchEvent)> {
        let mut fired = Vec::new();
        for change in changes {
            self.fire_one(change, zxid, &mut fired);
        }
        fired
    }

    /// Re-registers a reconnecting client's watches, with ZooKeeper's rules
    /// (`DataTree.setWatches`), against `last_zxid`, the last zxid the client
    /// saw; returns the events that fire at once:
    /// - a data watch on a missing node fires [`EventKind::NodeDeleted`], on a
    ///   node with `mzxid > last_zxid` fires [`EventKind::NodeDataChanged`],
    ///   else it is registered;
    /// - an exist watch on an existing node fires [`EventKind::NodeCreated`]
    ///   (whatever the zxid, as ZooKeeper does), else it is registered;
    /// - a child watch on a missing node fires [`EventKind::NodeDeleted`], on
    ///   a node with `pzxid > last_zxid` fires
    ///   [`EventKind::NodeChildrenChanged`], else it is registered.
    ///
    /// Paths are checked for syntax only; check their length first with
    /// [`TreeLimits::check_path`](crate::TreeLimits::check_path).
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`] for the first bad path; then nothing is
    /// registered and nothing fires.
    pub fn set_watches(
        &mut self,
        tree: &DataTree,
        watcher: W,
        last_zxid: u64,
        data_paths: &[String],
        exist_paths: &[String],
        child_paths: &[String],
    ) -> Result<Vec<(W, WatchEvent)>, TreeError> {
        for path in data_paths.iter().chain(exist_paths).chain(child_paths) {
            validate_path(path)?;
        }
        let mut fired = Vec::new();
        let mut fire_now = |kind, path: &str, zxid| {
            let event = WatchEvent {
                kind,
                path: Arc::from(path),
                zxid,
            };
            fired.push((watcher, event));
        };
        for path in data_paths {
            match tree.stat(path) {
                None => fire_now(EventKind::NodeDeleted, path, tree.last_zxid()),
                Some(stat) if stat.mzxid > last_zxid => {
                    fire_now(EventKind::NodeDataChanged, path, stat.mzxid);
                }
                Some(_) => {
                    self.add(WatchKind::Data, path, watcher);
                }
            }
        }
        for path in exist_paths {
            match tree.stat(path) {
                Some(stat) => fire_now(EventKind::NodeCreated, path, stat.czxid),
                None => {
                    self.add(WatchKind::Exist, path, watcher);
                }
            }
        }
        for path in child_paths {
            match tree.stat(path) {
                None => fire_now(EventKind::NodeDeleted, path, tree.last_zxid()),
                Some(stat) if stat.pzxid > last_zxid => {
                    fire_now(EventKind::NodeChildrenChanged, path, stat.pzxid);
                }
                Some(_) => {
                    self.add(WatchKind::Child, path, watcher);
                }
            }
        }
        Ok(fired)
    }

    /// Takes the watches that `change` fires and appends one event per
    /// watcher, however many of those kinds it had.
    fn fire_one(&mut self, change: &Change, zxid: u64, fired: &mut Vec<(W, WatchEvent)>) {
        let mut event: Option<WatchEvent> = None;
        let mut notified: Option<HashSet<W>> = None;
        for &watch_kind in change.kind.fires() {
            let Some(watchers) = self.take(watch_kind, &change.path) else {
                continue;
            };
            let event = event.get_or_insert_with(|| WatchEvent {
                kind: change.kind,
                path: Arc::clone(&change.path),
                zxid,
            });
            match &mut notified {
                None => {
                    fired.extend(watchers.iter().map(|watcher| (*watcher, event.clone())));
                    notified = Some(watchers);
                }
                Some(notified) => {
                    for watcher in watchers {
                        if notified.insert(watcher) {
                            fired.push((watcher, event.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Removes and returns the watchers of `kind` on `path`: a watch fires once.
    fn take(&mut self, kind: WatchKind, path: &str) -> Option<HashSet<W>> {
        let (_, watchers) = self.by_path[kind as usize].remove_entry(path)?;
        for watcher in &watchers {
            if let Entry::Occupied(mut entry) = self.by_watcher.entry(*watcher) {
                entry.get_mut()[kind as usize].remove(path);
                if entry.get().iter().all(HashSet::is_empty) {
                    entry.remove();
                }
            }
        }
        self.len -= watchers.len();
        Some(watchers)
    }

    #[cfg(test)]
    fn paths_held(&self) -> usize {
        self.by_path.iter().map(HashMap::len).sum()
    }

    #[cfg(test)]
    fn watchers_held(&self) -> usize {
        self.by_watcher.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_is_idempotent_per_watcher_kind_and_path() {
        let mut table = WatchTable::new();
        assert!(table.add(WatchKind::Data, "/a", 1_u64));
        assert!(!table.add(WatchKind::Data, "/a", 1));
        assert!(table.add(WatchKind::Child, "/a", 1));
        assert!(table.add(WatchKind::Data, "/a", 2));
        assert_eq!(table.len(), 3);
        assert_eq!(
            (table.count_of(1), table.count_of(2), table.count_of(3)),
            (2, 1, 0)
        );
    }

    #[test]
    fn take_removes_the_path_and_the_reverse_entries() {
        let mut table = WatchTable::new();
        table.add(WatchKind::Data, "/a", 1_u64);
        table.add(WatchKind::Data, "/a", 2);
        table.add(WatchKind::Exist, "/b", 2);
        let taken = table.take(WatchKind::Data, "/a").unwrap_or_default();
        assert_eq!(taken, HashSet::from([1, 2]));
        assert_eq!(table.len(), 1);
        assert_eq!(table.paths_held(), 1);
        // Watcher 1 has nothing left, watcher 2 still has its exist watch.
        assert_eq!(table.watchers_held(), 1);
        assert_eq!((table.count_of(1), table.count_of(2)), (0, 1));
        assert!(table.take(WatchKind::Data, "/a").is_none());
        assert_eq!(table.remove_watcher(1), 0);
        assert_eq!(table.remove_watcher(2), 1);
        assert_eq!(
            (table.len(), table.paths_held(), table.watchers_held()),
            (0, 0, 0)
        );
        assert!(table.is_empty());
    }

    #[test]
    fn remove_watcher_leaves_other_watchers_on_shared_paths() {
        let mut table = WatchTable::new();
        for kind in [WatchKind::Data, WatchKind::Exist, WatchKind::Child] {
            table.add(kind, "/shared", 1_u64);
            table.add(kind, "/shared", 2);
        }
        table.add(WatchKind::Child, "/only-1", 1);
        assert_eq!(table.count_of(1), 4);
        assert_eq!(table.remove_watcher(1), 4);
        assert_eq!(table.count_of(1), 0);
        assert_eq!(table.count_of(2), 3);
        assert_eq!(table.len(), 3);
        assert_eq!(table.paths_held(), 3);
        assert_eq!(
            table.take(WatchKind::Child, "/shared"),
            Some(HashSet::from([2]))
        );
        assert!(table.take(WatchKind::Child, "/only-1").is_none());
    }

    #[test]
    fn the_firing_rules_and_their_inverse() {
        use EventKind::*;
        use WatchKind::*;
        assert_eq!(NodeCreated.fires(), &[Exist, Data]);
        assert_eq!(NodeDeleted.fires(), &[Data, Exist, Child]);
        assert_eq!(NodeDataChanged.fires(), &[Data]);
        assert_eq!(NodeChildrenChanged.fires(), &[Child]);
        let events = [
            NodeCreated,
            NodeDeleted,
            NodeDataChanged,
            NodeChildrenChanged,
        ];
        for watch in [Data, Exist, Child] {
            for event in events {
                assert_eq!(
                    watch.fired_by(event),
                    event.fires().contains(&watch),
                    "{watch:?} {event:?}"
                );
            }
        }
        let fired_by = |watch: WatchKind| -> Vec<EventKind> {
            events.into_iter().filter(|e| watch.fired_by(*e)).collect()
        };
        assert_eq!(
            fired_by(Data),
            vec![NodeCreated, NodeDeleted, NodeDataChanged]
        );
        assert_eq!(fired_by(Exist), vec![NodeCreated, NodeDeleted]);
        assert_eq!(fired_by(Child), vec![NodeDeleted, NodeChildrenChanged]);
        assert_eq!(watch_kind_for_exists(true), Data);
        assert_eq!(watch_kind_for_exists(false), Exist);
    }

    #[test]
    fn fire_takes_each_change_in_order_and_one_event_per_watcher() {
        let mut table = WatchTable::new();
        table.add(WatchKind::Data, "/a", 1_u64);
        table.add(WatchKind::Exist, "/a", 1);
        table.add(WatchKind::Child, "/", 2);
        table.add(WatchKind::Child, "/a", 3);
        let changes = [
            Change {
                kind: EventKind::NodeDeleted,
                path: Arc::from("/a"),
            },
            Change {
                kind: EventKind::NodeChildrenChanged,
                path: Arc::from("/"),
            },
        ];
        let fired = table.fire(&changes, 9);
        let event = |kind, path: &str| WatchEvent {
            kind,
            path: Arc::from(path),
            zxid: 9,
        };
        assert_eq!(fired.len(), 3);
        let first: HashSet<_> = fired[..2].iter().cloned().collect();
        assert_eq!(
            first,
            HashSet::from([
                (1, event(EventKind::NodeDeleted, "/a")),
                (3, event(EventKind::NodeDeleted, "/a")),
            ])
        );
        assert_eq!(fired[2], (2, event(EventKind::NodeChildrenChanged, "/")));
        assert!(table.is_empty());
        assert!(table.fire(&changes, 10).is_empty());
    }
}
