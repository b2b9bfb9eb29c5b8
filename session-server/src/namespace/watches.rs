//! One-shot watches: who waits for which change of which path.
//!
//! [`WatchTable`] keeps each kind of watch keyed by path with a small set of
//! watchers per path, and a reverse index from watcher to its paths so that
//! forgetting a watcher (its session closed) touches only its own watches.
//! Both indexes share one `Arc<str>` per watched path.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

/// What kind of change a [`WatchEvent`] reports (ZooKeeper's event types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchEventKind {
    /// The node was created (fires exist and data watches on its path).
    NodeCreated,
    /// The node was deleted (fires data, exist and child watches on its path).
    NodeDeleted,
    /// The node's data was set (fires data watches on its path).
    NodeDataChanged,
    /// A child of the node was created or deleted (fires child watches on it).
    NodeChildrenChanged,
}

/// A fired watch, to be delivered to its watcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// What changed.
    pub kind: WatchEventKind,
    /// The path the watch was set on.
    pub path: Arc<str>,
    /// The zxid of the write that fired it. For events fired at once by
    /// [`Namespace::set_watches`](super::Namespace::set_watches): the zxid of
    /// the change where the namespace knows it, else its
    /// [`last_zxid`](super::Namespace::last_zxid).
    pub zxid: u64,
}

/// The three kinds of watch a read can leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum WatchKind {
    /// On an existing node: its data changes or it is deleted.
    Data = 0,
    /// On a missing node: it is created.
    Exist = 1,
    /// On an existing node: a child is created or deleted, or it is deleted.
    Child = 2,
}

const KINDS: usize = 3;

/// Watches by kind and path, with the reverse index watcher → paths.
#[derive(Debug)]
pub(super) struct WatchTable<W> {
    by_path: [HashMap<Arc<str>, HashSet<W>>; KINDS],
    by_watcher: HashMap<W, [HashSet<Arc<str>>; KINDS]>,
    len: usize,
}

impl<W: Copy + Eq + Hash> WatchTable<W> {
    pub(super) fn new() -> Self {
        Self {
            by_path: Default::default(),
            by_watcher: HashMap::new(),
            len: 0,
        }
    }

    /// Number of (kind, path, watcher) watches held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds a watch; returns false when the watcher already had it, in which
    /// case it will still fire once.
    pub(super) fn add(&mut self, kind: WatchKind, path: &str, watcher: W) -> bool {
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

    /// Removes and returns the watchers of `kind` on `path`: a watch fires once.
    pub(super) fn take(&mut self, kind: WatchKind, path: &str) -> Option<HashSet<W>> {
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

    /// Drops every watch of `watcher`; returns how many there were.
    pub(super) fn remove_watcher(&mut self, watcher: W) -> usize {
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

    #[cfg(test)]
    pub(super) fn paths_held(&self) -> usize {
        self.by_path.iter().map(HashMap::len).sum()
    }

    #[cfg(test)]
    pub(super) fn watchers_held(&self) -> usize {
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
        assert!(table.take(WatchKind::Data, "/a").is_none());
        assert_eq!(table.remove_watcher(1), 0);
        assert_eq!(table.remove_watcher(2), 1);
        assert_eq!(
            (table.len(), table.paths_held(), table.watchers_held()),
            (0, 0, 0)
        );
    }

    #[test]
    fn remove_watcher_leaves_other_watchers_on_shared_paths() {
        let mut table = WatchTable::new();
        for kind in [WatchKind::Data, WatchKind::Exist, WatchKind::Child] {
            table.add(kind, "/shared", 1_u64);
            table.add(kind, "/shared", 2);
        }
        table.add(WatchKind::Child, "/only-1", 1);
        assert_eq!(table.remove_watcher(1), 4);
        assert_eq!(table.len(), 3);
        assert_eq!(table.paths_held(), 3);
        assert_eq!(
            table.take(WatchKind::Child, "/shared"),
            Some(HashSet::from([2]))
        );
        assert!(table.take(WatchKind::Child, "/only-1").is_none());
    }
}
