//! Watches: the rules of which change fires which watch, defined once for
//! server and client, and the server's table of who waits for what.
//!
//! [`EventKind::fires`] and its inverse [`WatchKind::fired_by`] are the rules.
//! Three kinds of watch are one-shot, left by reads and removed when they
//! fire; two are persistent, left by ZooKeeper's `addWatch` and removed only
//! on request ([`WatchTable::remove`]) or when their watcher goes. A
//! persistent recursive watch also hears of every node under its path.
//!
//! [`WatchTable`] keeps each kind of watch keyed by path with a small set of
//! watchers per path, and a reverse index from watcher to its paths so that
//! forgetting a watcher (its session closed) touches only its own watches.
//! Both indexes share one `Arc<str>` per watched path and kind. Watches are
//! not replicated state: each server keeps the watches of the clients
//! connected to it, and fires them from the [`Change`]s its replica's writes
//! report.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use crate::{Change, DataTree, TreeError, validate_path};

/// What kind of change a [`WatchEvent`] (or a [`Change`]) reports
/// (ZooKeeper's event types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The node was created (fires exist, data and persistent watches on its
    /// path, and recursive watches on it and above it).
    NodeCreated,
    /// The node was deleted (fires data, exist, child and persistent watches
    /// on its path, and recursive watches on it and above it).
    NodeDeleted,
    /// The node's data was set (fires data and persistent watches on its
    /// path, and recursive watches on it and above it).
    NodeDataChanged,
    /// A child of the node was created or deleted (fires child and persistent
    /// watches on it; never a recursive watch).
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
    /// fires, one-shot kinds first:
    ///
    /// | change | fires |
    /// | --- | --- |
    /// | `NodeCreated` | `Exist`, `Data`, `Persistent`, `PersistentRecursive` |
    /// | `NodeDeleted` | `Data`, `Exist`, `Child`, `Persistent`, `PersistentRecursive` |
    /// | `NodeDataChanged` | `Data`, `Persistent`, `PersistentRecursive` |
    /// | `NodeChildrenChanged` | `Child`, `Persistent` |
    ///
    /// A change that fires `PersistentRecursive` also fires the
    /// `PersistentRecursive` watches on every ancestor of its path (ZooKeeper
    /// keeps them in the data table only, so `NodeChildrenChanged` never
    /// reaches them). The one-shot kinds are removed by firing, the
    /// persistent ones stay.
    ///
    /// ```
    /// use session_core::{EventKind, WatchKind};
    ///
    /// assert_eq!(
    ///     EventKind::NodeDataChanged.fires(),
    ///     &[WatchKind::Data, WatchKind::Persistent, WatchKind::PersistentRecursive],
    /// );
    /// assert!(WatchKind::Child.fired_by(EventKind::NodeDeleted));
    /// assert!(!WatchKind::PersistentRecursive.fired_by(EventKind::NodeChildrenChanged));
    /// ```
    #[must_use]
    pub const fn fires(self) -> &'static [WatchKind] {
        use WatchKind::{Child, Data, Exist, Persistent, PersistentRecursive};
        match self {
            Self::NodeCreated => &[Exist, Data, Persistent, PersistentRecursive],
            Self::NodeDeleted => &[Data, Exist, Child, Persistent, PersistentRecursive],
            Self::NodeDataChanged => &[Data, Persistent, PersistentRecursive],
            Self::NodeChildrenChanged => &[Child, Persistent],
        }
    }
}

/// The kinds of watch: three one-shot ones that a read leaves, two
/// persistent ones that ZooKeeper's `addWatch` leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKind {
    /// Left by a data read (or by `exists` on an existing node): fires when
    /// the node's data changes or it is deleted (or, set on a missing node
    /// by hand, when it is created). One-shot.
    Data = 0,
    /// Left by `exists` on a missing node: fires when it is created (or
    /// deleted). One-shot.
    Exist = 1,
    /// Left by a children read: fires when a child is created or deleted, or
    /// the node is deleted. One-shot.
    Child = 2,
    /// Left by `addWatch` mode 0: fires on every change to the node (created,
    /// deleted, data changed, children changed) until removed.
    Persistent = 3,
    /// Left by `addWatch` mode 1: fires when the node or any node under it is
    /// created, deleted or has its data changed (never for children
    /// changed), with the changed node's path, until removed.
    PersistentRecursive = 4,
}

impl WatchKind {
    /// Whether a change of `kind` to the watched path fires this watch: the
    /// inverse of [`EventKind::fires`], for a client that keeps its own
    /// watches. For [`PersistentRecursive`](Self::PersistentRecursive) it
    /// also answers for a change to a node under the watched path.
    #[must_use]
    pub fn fired_by(self, kind: EventKind) -> bool {
        kind.fires().contains(&self)
    }

    /// Whether the watch stays after firing: true for
    /// [`Persistent`](Self::Persistent) and
    /// [`PersistentRecursive`](Self::PersistentRecursive).
    ///
    /// ```
    /// use session_core::WatchKind;
    ///
    /// assert!(WatchKind::Persistent.is_persistent());
    /// assert!(!WatchKind::Data.is_persistent());
    /// ```
    #[must_use]
    pub const fn is_persistent(self) -> bool {
        matches!(self, Self::Persistent | Self::PersistentRecursive)
    }

    /// The watch an `addWatch` request's `mode` asks for (ZooKeeper's
    /// `AddWatchMode`): 0 [`Persistent`](Self::Persistent), 1
    /// [`PersistentRecursive`](Self::PersistentRecursive), anything else
    /// `None`.
    ///
    /// ```
    /// use session_core::WatchKind;
    ///
    /// assert_eq!(WatchKind::from_add_watch_mode(1), Some(WatchKind::PersistentRecursive));
    /// assert_eq!(WatchKind::from_add_watch_mode(2), None);
    /// ```
    #[must_use]
    pub const fn from_add_watch_mode(mode: i32) -> Option<Self> {
        match mode {
            0 => Some(Self::Persistent),
            1 => Some(Self::PersistentRecursive),
            _ => None,
        }
    }

    /// Index of this kind in the table's per-kind arrays.
    const fn slot(self) -> usize {
        self as usize
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

/// Which watches a `removeWatches` or `checkWatches` request names
/// (ZooKeeper's `Watcher.WatcherType`, numbered as on the wire).
///
/// ```
/// use session_core::{WatchKind, WatcherType};
///
/// let ty = WatcherType::from_wire(2).expect("2 is Data");
/// assert_eq!(ty, WatcherType::Data);
/// assert_eq!(ty.as_wire(), 2);
/// assert_eq!(ty.kinds(), &[WatchKind::Data, WatchKind::Exist]);
/// assert_eq!(WatcherType::from_wire(6), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatcherType {
    /// 1: the one-shot [`WatchKind::Child`] watch.
    Children = 1,
    /// 2: the one-shot [`WatchKind::Data`] and [`WatchKind::Exist`] watches
    /// (ZooKeeper keeps both in its data table).
    Data = 2,
    /// 3: every kind of watch on the path, persistent ones included.
    Any = 3,
    /// 4: the [`WatchKind::Persistent`] watch (since ZooKeeper 3.9.0).
    Persistent = 4,
    /// 5: the [`WatchKind::PersistentRecursive`] watch (since ZooKeeper
    /// 3.9.0).
    PersistentRecursive = 5,
}

impl WatcherType {
    /// The type numbered `value` on the wire (1 to 5), or `None`.
    #[must_use]
    pub const fn from_wire(value: i32) -> Option<Self> {
        match value {
            1 => Some(Self::Children),
            2 => Some(Self::Data),
            3 => Some(Self::Any),
            4 => Some(Self::Persistent),
            5 => Some(Self::PersistentRecursive),
            _ => None,
        }
    }

    /// The type's number on the wire (1 to 5).
    #[must_use]
    pub const fn as_wire(self) -> i32 {
        self as i32
    }

    /// The kinds of watch this type names, as ZooKeeper's
    /// `DataTree.removeWatch` and `containsWatcher` read it.
    #[must_use]
    pub const fn kinds(self) -> &'static [WatchKind] {
        match self {
            Self::Children => &[WatchKind::Child],
            Self::Data => &[WatchKind::Data, WatchKind::Exist],
            Self::Any => &ALL_KINDS,
            Self::Persistent => &[WatchKind::Persistent],
            Self::PersistentRecursive => &[WatchKind::PersistentRecursive],
        }
    }
}

/// A fired watch, to be delivered to its watcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// What changed.
    pub kind: EventKind,
    /// The path of the node that changed: for a one-shot or persistent watch
    /// the path it was set on, for a recursive watch the node under it.
    pub path: Arc<str>,
    /// The zxid of the write that fired it. For events fired at once by
    /// [`WatchTable::set_watches`]: the zxid of the change where the tree
    /// knows it, else the tree's [`last_zxid`](DataTree::last_zxid).
    pub zxid: u64,
}

/// The path lists of a `SetWatches2` request (`SetWatches` has the first
/// three only), for [`WatchTable::set_watches2`].
///
/// ```
/// use session_core::{SetWatchesPaths, WatchKind};
///
/// let persistent = vec!["/config".to_owned()];
/// let paths = SetWatchesPaths { persistent: &persistent, ..SetWatchesPaths::default() };
/// assert_eq!(paths.len(), 1);
/// assert_eq!(paths.iter().collect::<Vec<_>>(), [(WatchKind::Persistent, "/config")]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SetWatchesPaths<'a> {
    /// Paths of [`WatchKind::Data`] watches.
    pub data: &'a [String],
    /// Paths of [`WatchKind::Exist`] watches.
    pub exist: &'a [String],
    /// Paths of [`WatchKind::Child`] watches.
    pub child: &'a [String],
    /// Paths of [`WatchKind::Persistent`] watches.
    pub persistent: &'a [String],
    /// Paths of [`WatchKind::PersistentRecursive`] watches.
    pub persistent_recursive: &'a [String],
}

impl<'a> SetWatchesPaths<'a> {
    /// Number of paths over all five lists.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lists().iter().map(|(_, paths)| paths.len()).sum()
    }

    /// Whether all five lists are empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every path with the kind of watch it asks for, list by list in the
    /// order above.
    pub fn iter(&self) -> impl Iterator<Item = (WatchKind, &'a str)> + 'a {
        self.lists()
            .into_iter()
            .flat_map(|(kind, paths)| paths.iter().map(move |path| (kind, path.as_str())))
    }

    fn lists(&self) -> [(WatchKind, &'a [String]); KINDS] {
        [
            (WatchKind::Data, self.data),
            (WatchKind::Exist, self.exist),
            (WatchKind::Child, self.child),
            (WatchKind::Persistent, self.persistent),
            (WatchKind::PersistentRecursive, self.persistent_recursive),
        ]
    }
}

const KINDS: usize = 5;

/// Every kind, in slot order.
const ALL_KINDS: [WatchKind; KINDS] = [
    WatchKind::Data,
    WatchKind::Exist,
    WatchKind::Child,
    WatchKind::Persistent,
    WatchKind::PersistentRecursive,
];

/// Watches by kind and path, with the reverse index watcher → paths.
///
/// `W` identifies a watcher; a server uses the session id. Methods: getters
/// ([`len`](Self::len), [`count_of`](Self::count_of), [`holds`](Self::holds),
/// [`contains`](Self::contains), [`path_count`](Self::path_count),
/// [`watcher_count`](Self::watcher_count)); commands ([`add`](Self::add),
/// [`remove`](Self::remove), [`remove_watcher`](Self::remove_watcher)); and
/// the ones that fire, returning `(watcher, event)` pairs for the caller to
/// deliver (for a session: before any later reply on its connection):
/// [`fire`](Self::fire) from the changes of a write, which removes the
/// one-shot watches it fires, and [`set_watches`](Self::set_watches) /
/// [`set_watches2`](Self::set_watches2) when a client re-registers.
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

    /// Number of distinct paths with at least one watch of any kind (the
    /// `<p> paths` of ZooKeeper's `wchs`). Costs one pass over the watched
    /// paths: for an admin command, not for every request.
    ///
    /// ```
    /// use session_core::{WatchKind, WatchTable};
    ///
    /// let mut watches: WatchTable<u64> = WatchTable::new();
    /// watches.add(WatchKind::Data, "/a", 1);
    /// watches.add(WatchKind::Persistent, "/a", 2);
    /// watches.add(WatchKind::Child, "/b", 2);
    /// assert_eq!(watches.path_count(), 2);
    /// ```
    #[must_use]
    pub fn path_count(&self) -> usize {
        self.by_path
            .iter()
            .enumerate()
            .map(|(slot, paths)| {
                let earlier = &self.by_path[..slot];
                paths
                    .keys()
                    .filter(|path| !earlier.iter().any(|other| other.contains_key(&***path)))
                    .count()
            })
            .sum()
    }

    /// Every watch held, as (kind, path, watcher), in no particular order:
    /// for listings (ZooKeeper's `wchc` and `wchp`). Walks the whole table.
    ///
    /// ```
    /// use session_core::{WatchKind, WatchTable};
    ///
    /// let mut watches: WatchTable<u64> = WatchTable::new();
    /// watches.add(WatchKind::Data, "/a", 1);
    /// watches.add(WatchKind::Child, "/a", 2);
    /// let mut all: Vec<_> = watches.iter().collect();
    /// all.sort();
    /// assert_eq!(all, [(WatchKind::Data, "/a", 1), (WatchKind::Child, "/a", 2)]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (WatchKind, &str, W)> + '_ {
        ALL_KINDS.iter().flat_map(move |kind| {
            self.by_path[kind.slot()]
                .iter()
                .flat_map(move |(path, watchers)| {
                    watchers
                        .iter()
                        .map(move |watcher| (*kind, &**path, *watcher))
                })
        })
    }

    /// Number of watchers holding at least one watch (the `<c> connections`
    /// of ZooKeeper's `wchs`), in O(1).
    ///
    /// ```
    /// use session_core::{WatchKind, WatchTable};
    ///
    /// let mut watches: WatchTable<u64> = WatchTable::new();
    /// watches.add(WatchKind::Data, "/a", 1);
    /// watches.add(WatchKind::PersistentRecursive, "/", 1);
    /// watches.add(WatchKind::Data, "/a", 2);
    /// assert_eq!(watches.watcher_count(), 2);
    /// ```
    #[must_use]
    pub fn watcher_count(&self) -> usize {
        self.by_watcher.len()
    }

    /// Whether `watcher` holds a watch of `kind` on `path`.
    #[must_use]
    pub fn holds(&self, kind: WatchKind, path: &str, watcher: W) -> bool {
        self.by_path[kind.slot()]
            .get(path)
            .is_some_and(|watchers| watchers.contains(&watcher))
    }

    /// Whether `watcher` holds a watch on `path` of any kind that `ty` names
    /// ([`WatcherType::kinds`]), as ZooKeeper's `checkWatches` asks
    /// (`DataTree.containsWatcher`); false is ZooKeeper's `NOWATCHER`.
    ///
    /// ```
    /// use session_core::{WatchKind, WatchTable, WatcherType};
    ///
    /// let mut watches: WatchTable<u64> = WatchTable::new();
    /// watches.add(WatchKind::Exist, "/a", 1);
    /// assert!(watches.contains("/a", WatcherType::Data, 1));
    /// assert!(watches.contains("/a", WatcherType::Any, 1));
    /// assert!(!watches.contains("/a", WatcherType::Children, 1));
    /// ```
    #[must_use]
    pub fn contains(&self, path: &str, ty: WatcherType, watcher: W) -> bool {
        ty.kinds()
            .iter()
            .any(|&kind| self.holds(kind, path, watcher))
    }

    /// Adds a watch; returns false when the watcher already had it, in which
    /// case a one-shot watch will still fire once and a persistent one
    /// still needs one removal.
    pub fn add(&mut self, kind: WatchKind, path: &str, watcher: W) -> bool {
        let paths = &mut self.by_path[kind.slot()];
        let key = match paths.get_key_value(path) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(path),
        };
        let watchers = paths.entry(Arc::clone(&key)).or_default();
        if !watchers.insert(watcher) {
            return false;
        }
        self.by_watcher.entry(watcher).or_default()[kind.slot()].insert(key);
        self.len += 1;
        true
    }

    /// Removes the watches of `watcher` on `path` of every kind that `ty`
    /// names ([`WatcherType::kinds`]), as ZooKeeper's `removeWatches` does
    /// (`DataTree.removeWatch`), and returns how many there were: 0 is
    /// ZooKeeper's `NOWATCHER`. No event fires.
    ///
    /// ```
    /// use session_core::{WatchKind, WatchTable, WatcherType};
    ///
    /// let mut watches: WatchTable<u64> = WatchTable::new();
    /// watches.add(WatchKind::Data, "/a", 1);
    /// watches.add(WatchKind::Persistent, "/a", 1);
    /// assert_eq!(watches.remove("/a", WatcherType::Children, 1), 0);
    /// assert_eq!(watches.remove("/a", WatcherType::Any, 1), 2);
    /// assert!(watches.is_empty());
    /// ```
    pub fn remove(&mut self, path: &str, ty: WatcherType, watcher: W) -> usize {
        ty.kinds()
            .iter()
            .filter(|&&kind| self.remove_one(kind, path, watcher))
            .count()
    }

    /// Drops every watch of `watcher` (its session closed) and returns how
    /// many there were. Touches only that watcher's own paths.
    pub fn remove_watcher(&mut self, watcher: W) -> usize {
        let Some(paths_by_kind) = self.by_watcher.remove(&watcher) else {
            return 0;
        };
        let mut removed = 0;
        for (slot, paths) in paths_by_kind.iter().enumerate() {
            for path in paths {
                if let Entry::Occupied(mut entry) = self.by_path[slot].entry(Arc::clone(path)) {
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
    /// `zxid`. For each change in order: the watches of
    /// [`change.kind.fires()`](EventKind::fires) on `change.path`, and, when
    /// that includes [`WatchKind::PersistentRecursive`], the recursive
    /// watches on every ancestor of `change.path`; one event per watcher
    /// however many of its watches match, with the change's kind and path.
    /// The one-shot watches that fire are removed, the persistent ones stay.
    /// Within one change, watchers come in no particular order.
    ///
    /// A change costs one hash lookup per kind it fires, plus, while the
    /// table holds any recursive watch, one per ancestor of its path.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use session_core::{Change, EventKind, WatchKind, WatchTable};
    ///
    /// let mut watches: WatchTable<u64> = WatchTable::new();
    /// watches.add(WatchKind::PersistentRecursive, "/app", 1);
    /// watches.add(WatchKind::Data, "/app/x", 1);
    /// let change = Change { kind: EventKind::NodeDataChanged, path: Arc::from("/app/x") };
    /// let fired = watches.fire(&[change], 5);
    /// assert_eq!(fired.len(), 1, "one event per watcher and change");
    /// assert_eq!(&*fired[0].1.path, "/app/x");
    /// assert_eq!(watches.len(), 1, "the recursive watch stays");
    /// ```
    #[must_use = "the fired events must be delivered to their watchers"]
    pub fn fire(&mut self, changes: &[Change], zxid: u64) -> Vec<(W, WatchEvent)> {
        let mut fired = Vec::new();
        for change in changes {
            self.fire_one(change, zxid, &mut fired);
        }
        fired
    }

    /// Re-registers a reconnecting client's watches of a `SetWatches`
    /// request: [`set_watches2`](Self::set_watches2) with the three lists of
    /// one-shot watches and no persistent ones.
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
        let paths = SetWatchesPaths {
            data: data_paths,
            exist: exist_paths,
            child: child_paths,
            ..SetWatchesPaths::default()
        };
        self.set_watches2(tree, watcher, last_zxid, paths)
    }

    /// Re-registers a reconnecting client's watches of a `SetWatches2`
    /// request, with ZooKeeper's rules (`DataTree.setWatches`), against
    /// `last_zxid`, the last zxid the client saw; returns the events that
    /// fire at once:
    /// - a data watch on a missing node fires [`EventKind::NodeDeleted`], on a
    ///   node with `mzxid > last_zxid` fires [`EventKind::NodeDataChanged`],
    ///   else it is registered;
    /// - an exist watch on an existing node fires [`EventKind::NodeCreated`]
    ///   (whatever the zxid, as ZooKeeper does), else it is registered;
    /// - a child watch on a missing node fires [`EventKind::NodeDeleted`], on
    ///   a node with `pzxid > last_zxid` fires
    ///   [`EventKind::NodeChildrenChanged`], else it is registered;
    /// - a persistent or persistent recursive watch is registered, with no
    ///   event, whether its node exists or not.
    ///
    /// Paths are checked for syntax only; check their length first with
    /// [`TreeLimits::check_path`](crate::TreeLimits::check_path).
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`] for the first bad path; then nothing is
    /// registered and nothing fires.
    ///
    /// ```
    /// use session_core::{DataTree, SetWatchesPaths, WatchKind, WatchTable};
    ///
    /// let tree = DataTree::new();
    /// let mut watches: WatchTable<u64> = WatchTable::new();
    /// let recursive = vec!["/".to_owned(), "/not-yet".to_owned()];
    /// let paths = SetWatchesPaths { persistent_recursive: &recursive, ..SetWatchesPaths::default() };
    /// let fired = watches.set_watches2(&tree, 7, 0, paths)?;
    /// assert!(fired.is_empty(), "persistent watches replay nothing");
    /// assert!(watches.holds(WatchKind::PersistentRecursive, "/not-yet", 7));
    /// # Ok::<(), session_core::TreeError>(())
    /// ```
    pub fn set_watches2(
        &mut self,
        tree: &DataTree,
        watcher: W,
        last_zxid: u64,
        paths: SetWatchesPaths<'_>,
    ) -> Result<Vec<(W, WatchEvent)>, TreeError> {
        for (_, path) in paths.iter() {
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
        for path in paths.data {
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
        for path in paths.exist {
            match tree.stat(path) {
                Some(stat) => fire_now(EventKind::NodeCreated, path, stat.czxid),
                None => {
                    self.add(WatchKind::Exist, path, watcher);
                }
            }
        }
        for path in paths.child {
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
        for path in paths.persistent {
            self.add(WatchKind::Persistent, path, watcher);
        }
        for path in paths.persistent_recursive {
            self.add(WatchKind::PersistentRecursive, path, watcher);
        }
        Ok(fired)
    }

    /// Appends one event per watcher that `change` fires, and takes the
    /// one-shot watches among them.
    fn fire_one(&mut self, change: &Change, zxid: u64, fired: &mut Vec<(W, WatchEvent)>) {
        let path: &str = &change.path;
        let start = fired.len();
        let mut notify = Notify {
            start,
            fired,
            seen: None,
            event: WatchEvent {
                kind: change.kind,
                path: Arc::clone(&change.path),
                zxid,
            },
        };
        for &kind in change.kind.fires() {
            if kind.is_persistent() {
                if let Some(watchers) = self.by_path[kind.slot()].get(path) {
                    notify.all(watchers);
                }
            } else if let Some(watchers) = self.take(kind, path) {
                notify.all(&watchers);
            }
        }
        if WatchKind::PersistentRecursive.fired_by(change.kind) {
            let recursive = &self.by_path[WatchKind::PersistentRecursive.slot()];
            // Most tables hold no recursive watch: then the walk up is skipped.
            if !recursive.is_empty() {
                for ancestor in ancestors(path) {
                    if let Some(watchers) = recursive.get(ancestor) {
                        notify.all(watchers);
                    }
                }
            }
        }
    }

    /// Removes and returns the watchers of `kind` on `path`: a one-shot
    /// watch fires once.
    fn take(&mut self, kind: WatchKind, path: &str) -> Option<HashSet<W>> {
        let (_, watchers) = self.by_path[kind.slot()].remove_entry(path)?;
        for watcher in &watchers {
            self.unindex(*watcher, kind, path);
        }
        self.len -= watchers.len();
        Some(watchers)
    }

    /// Removes one watch; false when it was not held.
    fn remove_one(&mut self, kind: WatchKind, path: &str, watcher: W) -> bool {
        let paths = &mut self.by_path[kind.slot()];
        let Some(watchers) = paths.get_mut(path) else {
            return false;
        };
        if !watchers.remove(&watcher) {
            return false;
        }
        if watchers.is_empty() {
            paths.remove(path);
        }
        self.unindex(watcher, kind, path);
        self.len -= 1;
        true
    }

    /// Removes `path` from the reverse index of `watcher` for `kind`, and
    /// the watcher with its last path.
    fn unindex(&mut self, watcher: W, kind: WatchKind, path: &str) {
        if let Entry::Occupied(mut entry) = self.by_watcher.entry(watcher) {
            entry.get_mut()[kind.slot()].remove(path);
            if entry.get().iter().all(HashSet::is_empty) {
                entry.remove();
            }
        }
    }
}

/// The events of one change: one per watcher, however many of its watches
/// match.
struct Notify<'a, W> {
    /// Where this change's events begin in `fired`.
    start: usize,
    fired: &'a mut Vec<(W, WatchEvent)>,
    /// The watchers notified so far, built only when a second set of
    /// watchers matches (most changes match one set or none).
    seen: Option<HashSet<W>>,
    event: WatchEvent,
}

impl<W: Copy + Eq + Hash> Notify<'_, W> {
    fn all(&mut self, watchers: &HashSet<W>) {
        let event = &self.event;
        if self.fired.len() == self.start {
            self.fired
                .extend(watchers.iter().map(|watcher| (*watcher, event.clone())));
            return;
        }
        let (start, fired) = (self.start, &mut *self.fired);
        let seen = self
            .seen
            .get_or_insert_with(|| fired[start..].iter().map(|(watcher, _)| *watcher).collect());
        for &watcher in watchers {
            if seen.insert(watcher) {
                fired.push((watcher, event.clone()));
            }
        }
    }
}

/// The proper ancestors of `path`, nearest first: `/a/b/c` gives `/a/b`,
/// `/a`, `/`; `/` gives none. Never panics, whatever the input.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        if rest == "/" {
            return None;
        }
        let cut = rest.rfind('/')?;
        rest = if cut == 0 { "/" } else { &rest[..cut] };
        Some(rest)
    })
}

#[cfg(test)]
impl<W: Copy + Eq + Hash + std::fmt::Debug> WatchTable<W> {
    fn paths_held(&self) -> usize {
        self.by_path.iter().map(HashMap::len).sum()
    }

    fn watchers_held(&self) -> usize {
        self.by_watcher.len()
    }

    /// Both indexes name the same watches, no set is left empty, and `len`
    /// counts them.
    fn assert_consistent(&self) {
        let mut counted = 0;
        for (slot, paths) in self.by_path.iter().enumerate() {
            for (path, watchers) in paths {
                assert!(!watchers.is_empty(), "empty watcher set on {path}");
                for watcher in watchers {
                    let indexed = self
                        .by_watcher
                        .get(watcher)
                        .is_some_and(|by_kind| by_kind[slot].contains(path));
                    assert!(indexed, "{watcher:?} on {path} not in the reverse index");
                }
                counted += watchers.len();
            }
        }
        assert_eq!(counted, self.len, "len");
        let mut reverse = 0;
        for (watcher, by_kind) in &self.by_watcher {
            assert!(by_kind.iter().any(|paths| !paths.is_empty()), "{watcher:?}");
            reverse += by_kind.iter().map(HashSet::len).sum::<usize>();
        }
        assert_eq!(reverse, self.len, "reverse index size");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: EventKind, path: &str) -> Change {
        Change {
            kind,
            path: Arc::from(path),
        }
    }

    fn event(kind: EventKind, path: &str, zxid: u64) -> WatchEvent {
        WatchEvent {
            kind,
            path: Arc::from(path),
            zxid,
        }
    }

    fn fired_set(fired: Vec<(u64, WatchEvent)>) -> HashSet<(u64, WatchEvent)> {
        let len = fired.len();
        let set: HashSet<_> = fired.into_iter().collect();
        assert_eq!(set.len(), len, "an event came twice");
        set
    }

    const EVENTS: [EventKind; 4] = [
        EventKind::NodeCreated,
        EventKind::NodeDeleted,
        EventKind::NodeDataChanged,
        EventKind::NodeChildrenChanged,
    ];

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
        table.assert_consistent();
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
        table.assert_consistent();
    }

    #[test]
    fn the_firing_rules_and_their_inverse() {
        // zookeeper-wire.md §7: the table of which write fires which table,
        // and "Persistent (addWatch ...)": mode 0 hears all four event types
        // on its path, mode 1 never NodeChildrenChanged.
        use EventKind::*;
        use WatchKind::*;
        assert_eq!(
            NodeCreated.fires(),
            &[Exist, Data, Persistent, PersistentRecursive]
        );
        assert_eq!(
            NodeDeleted.fires(),
            &[Data, Exist, Child, Persistent, PersistentRecursive]
        );
        assert_eq!(
            NodeDataChanged.fires(),
            &[Data, Persistent, PersistentRecursive]
        );
        assert_eq!(NodeChildrenChanged.fires(), &[Child, Persistent]);
        for watch in ALL_KINDS {
            for event in EVENTS {
                assert_eq!(
                    watch.fired_by(event),
                    event.fires().contains(&watch),
                    "{watch:?} {event:?}"
                );
            }
        }
        let fired_by = |watch: WatchKind| -> Vec<EventKind> {
            EVENTS.into_iter().filter(|e| watch.fired_by(*e)).collect()
        };
        assert_eq!(
            fired_by(Data),
            vec![NodeCreated, NodeDeleted, NodeDataChanged]
        );
        assert_eq!(fired_by(Exist), vec![NodeCreated, NodeDeleted]);
        assert_eq!(fired_by(Child), vec![NodeDeleted, NodeChildrenChanged]);
        assert_eq!(fired_by(Persistent), EVENTS.to_vec());
        assert_eq!(
            fired_by(PersistentRecursive),
            vec![NodeCreated, NodeDeleted, NodeDataChanged]
        );
        assert_eq!(watch_kind_for_exists(true), Data);
        assert_eq!(watch_kind_for_exists(false), Exist);
        let persistent: Vec<_> = ALL_KINDS
            .into_iter()
            .filter(|k| k.is_persistent())
            .collect();
        assert_eq!(persistent, vec![Persistent, PersistentRecursive]);
        // Slots follow the discriminants the arrays are indexed by.
        for (slot, kind) in ALL_KINDS.into_iter().enumerate() {
            assert_eq!(kind.slot(), slot);
        }
    }

    #[test]
    fn add_watch_modes() {
        // zookeeper-wire.md §5/§7: AddWatchRequest mode 0 persistent, 1
        // persistent recursive.
        assert_eq!(
            WatchKind::from_add_watch_mode(0),
            Some(WatchKind::Persistent)
        );
        assert_eq!(
            WatchKind::from_add_watch_mode(1),
            Some(WatchKind::PersistentRecursive)
        );
        for mode in [-1, 2, 3, i32::MIN, i32::MAX] {
            assert_eq!(WatchKind::from_add_watch_mode(mode), None, "{mode}");
        }
    }

    #[test]
    fn fire_takes_each_change_in_order_and_one_event_per_watcher() {
        // zookeeper-wire.md §7: "a connection gets one event per (path,
        // trigger) however often it registered"; delete fires data and child
        // tables, "not twice for the same watcher".
        let mut table = WatchTable::new();
        table.add(WatchKind::Data, "/a", 1_u64);
        table.add(WatchKind::Exist, "/a", 1);
        table.add(WatchKind::Child, "/", 2);
        table.add(WatchKind::Child, "/a", 3);
        let changes = [
            change(EventKind::NodeDeleted, "/a"),
            change(EventKind::NodeChildrenChanged, "/"),
        ];
        let fired = table.fire(&changes, 9);
        assert_eq!(fired.len(), 3);
        assert_eq!(
            fired_set(fired[..2].to_vec()),
            HashSet::from([
                (1, event(EventKind::NodeDeleted, "/a", 9)),
                (3, event(EventKind::NodeDeleted, "/a", 9)),
            ])
        );
        assert_eq!(fired[2], (2, event(EventKind::NodeChildrenChanged, "/", 9)));
        assert!(table.is_empty());
        assert!(table.fire(&changes, 10).is_empty());
        table.assert_consistent();
    }

    #[test]
    fn a_persistent_watch_hears_every_change_to_its_path_and_stays() {
        // zookeeper-wire.md §7: "mode 0 PERSISTENT on P: ...
        // NodeCreated/Deleted/DataChanged for P and NodeChildrenChanged for
        // P"; "never removed by firing".
        let mut table = WatchTable::new();
        table.add(WatchKind::Persistent, "/p", 1_u64);
        for (zxid, kind) in (1..).zip(EVENTS) {
            let fired = table.fire(&[change(kind, "/p")], zxid);
            assert_eq!(fired, vec![(1, event(kind, "/p", zxid))], "{kind:?}");
        }
        assert!(table.holds(WatchKind::Persistent, "/p", 1));
        assert_eq!(table.len(), 1);
        // Not for a child, a parent or a sibling sharing its prefix.
        for path in ["/p/c", "/", "/pp"] {
            for kind in EVENTS {
                assert!(
                    table.fire(&[change(kind, path)], 9).is_empty(),
                    "{kind:?} {path}"
                );
            }
        }
        table.assert_consistent();
    }

    #[test]
    fn a_recursive_watch_hears_its_subtree_with_the_changed_path() {
        // zookeeper-wire.md §7: "mode 1 PERSISTENT_RECURSIVE on P: ...
        // NodeCreated/Deleted/DataChanged for P and every descendant (event
        // path = changed node); never NodeChildrenChanged".
        let mut table = WatchTable::new();
        table.add(WatchKind::PersistentRecursive, "/r", 1_u64);
        let data_events = [
            EventKind::NodeCreated,
            EventKind::NodeDeleted,
            EventKind::NodeDataChanged,
        ];
        for path in ["/r", "/r/a", "/r/a/b/c"] {
            for kind in data_events {
                let fired = table.fire(&[change(kind, path)], 4);
                assert_eq!(fired, vec![(1, event(kind, path, 4))], "{kind:?} {path}");
            }
            let children = table.fire(&[change(EventKind::NodeChildrenChanged, path)], 4);
            assert!(children.is_empty(), "children changed on {path}");
        }
        for path in ["/", "/rr", "/rr/a", "/q/r"] {
            for kind in EVENTS {
                assert!(
                    table.fire(&[change(kind, path)], 4).is_empty(),
                    "{kind:?} {path}"
                );
            }
        }
        assert_eq!(table.len(), 1, "never removed by firing");
        table.assert_consistent();
    }

    #[test]
    fn a_recursive_watch_on_the_root_hears_every_node() {
        // zookeeper-wire.md §7: "every descendant" of P = / is every node.
        let mut table = WatchTable::new();
        table.add(WatchKind::PersistentRecursive, "/", 5_u64);
        for path in ["/", "/a", "/a/b"] {
            let fired = table.fire(&[change(EventKind::NodeCreated, path)], 1);
            assert_eq!(fired, vec![(5, event(EventKind::NodeCreated, path, 1))]);
        }
    }

    #[test]
    fn one_event_per_watcher_per_change_however_many_watches_match() {
        // zookeeper-wire.md §7: "a connection gets one event per (path,
        // trigger)"; ZooKeeper's triggerWatch collects watchers into one set
        // over the path and its ancestors.
        let mut table = WatchTable::new();
        for kind in ALL_KINDS {
            table.add(kind, "/a/b", 1_u64);
        }
        table.add(WatchKind::PersistentRecursive, "/a", 1);
        table.add(WatchKind::PersistentRecursive, "/", 1);
        table.add(WatchKind::PersistentRecursive, "/", 2);
        table.add(WatchKind::Data, "/a/b", 3);
        table.add(WatchKind::Persistent, "/a", 4);
        let fired = table.fire(&[change(EventKind::NodeDeleted, "/a/b")], 7);
        let deleted = |watcher| (watcher, event(EventKind::NodeDeleted, "/a/b", 7));
        assert_eq!(
            fired_set(fired),
            HashSet::from([deleted(1), deleted(2), deleted(3)])
        );
        // The three one-shot watches of 1 and the data watch of 3 are gone.
        assert_eq!(table.len(), 6);
        assert_eq!(table.count_of(1), 4);
        assert_eq!(table.count_of(3), 0);
        table.assert_consistent();
        // A second change in the same write gets its own events.
        let fired = table.fire(
            &[
                change(EventKind::NodeCreated, "/a/b"),
                change(EventKind::NodeCreated, "/a/b"),
            ],
            8,
        );
        assert_eq!(fired.len(), 4, "watchers 1 and 2, twice");
    }

    #[test]
    fn firing_removes_only_the_standard_watch_of_a_watcher_with_both() {
        // zookeeper-wire.md §7: "Firing removes only the standard watch of a
        // connection that has both on the same path."
        let mut table = WatchTable::new();
        table.add(WatchKind::Data, "/a", 1_u64);
        table.add(WatchKind::Persistent, "/a", 1);
        table.add(WatchKind::Child, "/a", 1);
        table.add(WatchKind::PersistentRecursive, "/a", 1);
        let fired = table.fire(&[change(EventKind::NodeDataChanged, "/a")], 3);
        assert_eq!(fired, vec![(1, event(EventKind::NodeDataChanged, "/a", 3))]);
        assert!(!table.holds(WatchKind::Data, "/a", 1));
        assert!(
            table.holds(WatchKind::Child, "/a", 1),
            "not fired by a data change"
        );
        assert!(table.holds(WatchKind::Persistent, "/a", 1));
        assert!(table.holds(WatchKind::PersistentRecursive, "/a", 1));
        table.assert_consistent();
    }

    #[test]
    fn ancestors_walk_up_to_the_root_and_never_panic() {
        // zookeeper-wire.md §7: recursive watches on "every descendant",
        // found by walking the changed path's ancestors (ZooKeeper's
        // PathParentIterator).
        let up = |path| ancestors(path).collect::<Vec<_>>();
        assert_eq!(up("/a/b/c"), ["/a/b", "/a", "/"]);
        assert_eq!(up("/a"), ["/"]);
        assert!(up("/").is_empty());
        // Not valid paths, but a Change's fields are public: no panic, and
        // nothing outside the input.
        assert!(up("").is_empty());
        assert!(up("a").is_empty());
        assert_eq!(up("//"), ["/"]);
        assert_eq!(up("/a/"), ["/a", "/"]);
        assert_eq!(up("a/b"), ["a"]);
        assert_eq!(up("/é/ü"), ["/é", "/"]);
    }

    #[test]
    fn watcher_type_wire_numbers() {
        // zookeeper-wire.md §5: "WatcherType ...: Children 1, Data 2, Any 3,
        // Persistent 4, PersistentRecursive 5".
        let types = [
            (1, WatcherType::Children),
            (2, WatcherType::Data),
            (3, WatcherType::Any),
            (4, WatcherType::Persistent),
            (5, WatcherType::PersistentRecursive),
        ];
        for (wire, ty) in types {
            assert_eq!(WatcherType::from_wire(wire), Some(ty));
            assert_eq!(ty.as_wire(), wire);
        }
        for wire in [0, 6, -1, -121, i32::MIN, i32::MAX] {
            assert_eq!(WatcherType::from_wire(wire), None, "{wire}");
        }
    }

    /// A table with every kind on `/a` for watchers 1 and 2, and a data
    /// watch of 1 on `/b`.
    fn full_table() -> WatchTable<u64> {
        let mut table = WatchTable::new();
        for kind in ALL_KINDS {
            table.add(kind, "/a", 1);
            table.add(kind, "/a", 2);
        }
        table.add(WatchKind::Data, "/b", 1);
        table
    }

    #[test]
    fn remove_and_contains_follow_zookeepers_watcher_types() {
        // zookeeper-wire.md §5/§7 (DataTree.removeWatch/containsWatcher):
        // Children = the child table's standard watch; Data = the data
        // table's standard watch, which holds data and exist watches; Any =
        // both tables, every mode; Persistent; PersistentRecursive.
        let cases: [(WatcherType, &[WatchKind]); 5] = [
            (WatcherType::Children, &[WatchKind::Child]),
            (WatcherType::Data, &[WatchKind::Data, WatchKind::Exist]),
            (WatcherType::Any, &ALL_KINDS),
            (WatcherType::Persistent, &[WatchKind::Persistent]),
            (
                WatcherType::PersistentRecursive,
                &[WatchKind::PersistentRecursive],
            ),
        ];
        for (ty, kinds) in cases {
            assert_eq!(ty.kinds(), kinds, "{ty:?}");
            let mut table = full_table();
            assert!(table.contains("/a", ty, 1), "{ty:?}");
            assert_eq!(table.remove("/a", ty, 1), kinds.len(), "{ty:?}");
            assert!(!table.contains("/a", ty, 1), "{ty:?}");
            // 0 is NOWATCHER: nothing left to remove.
            assert_eq!(table.remove("/a", ty, 1), 0, "{ty:?}");
            for kind in ALL_KINDS {
                assert_eq!(
                    table.holds(kind, "/a", 1),
                    !kinds.contains(&kind),
                    "{ty:?} {kind:?}"
                );
                assert!(table.holds(kind, "/a", 2), "other watchers stay");
            }
            assert!(table.holds(WatchKind::Data, "/b", 1), "other paths stay");
            assert_eq!(table.len(), 11 - kinds.len());
            assert_eq!(table.count_of(1), 6 - kinds.len());
            table.assert_consistent();
        }
    }

    #[test]
    fn data_removes_an_exist_watch_alone_and_reports_nowatcher_for_strangers() {
        // zookeeper-wire.md §7: exists registers in the data table, so a
        // Data removal reaches it; nothing matched → NOWATCHER (§5).
        let mut table = WatchTable::new();
        table.add(WatchKind::Exist, "/x", 1_u64);
        assert!(!table.contains("/x", WatcherType::Children, 1));
        assert!(!table.contains("/x", WatcherType::Data, 2));
        assert!(!table.contains("/y", WatcherType::Any, 1));
        assert_eq!(table.remove("/x", WatcherType::Persistent, 1), 0);
        assert_eq!(table.remove("/x", WatcherType::Data, 2), 0);
        assert_eq!(table.remove("/x", WatcherType::Data, 1), 1);
        assert_eq!(
            (table.len(), table.paths_held(), table.watchers_held()),
            (0, 0, 0)
        );
    }

    #[test]
    fn counts_cover_all_five_kinds() {
        // zookeeper-wire.md §7/§10 (wchs: "<c> connections watching <p>
        // paths"): persistent watches are watches like the others.
        let mut table = full_table();
        assert_eq!(table.len(), 11);
        assert_eq!((table.count_of(1), table.count_of(2)), (6, 5));
        assert_eq!(table.path_count(), 2, "distinct paths over every kind");
        assert_eq!(table.watcher_count(), 2);
        for kind in ALL_KINDS {
            assert!(table.holds(kind, "/a", 1), "{kind:?}");
        }
        table.add(WatchKind::PersistentRecursive, "/c", 3);
        assert_eq!((table.path_count(), table.watcher_count()), (3, 3));
        // Firing a change takes the one-shot watches and keeps the rest.
        let fired = table.fire(&[change(EventKind::NodeDeleted, "/a")], 1);
        assert_eq!(fired.len(), 2);
        assert_eq!(table.len(), 6);
        assert_eq!((table.count_of(1), table.count_of(2)), (3, 2));
        assert_eq!((table.path_count(), table.watcher_count()), (3, 3));
        assert_eq!(table.remove_watcher(1), 3);
        assert_eq!(table.remove_watcher(3), 1);
        assert_eq!((table.path_count(), table.watcher_count()), (1, 1));
        assert_eq!(table.remove("/a", WatcherType::Any, 2), 2);
        assert_eq!((table.path_count(), table.watcher_count()), (0, 0));
        assert!(table.is_empty());
        table.assert_consistent();
    }

    #[test]
    fn set_watches2_registers_persistent_watches_without_replay() {
        // zookeeper-wire.md §7, SetWatches replay: "persistent /
        // persistentRecursive | register | register (no replay event)".
        let tree = DataTree::new();
        let mut table = WatchTable::new();
        let data = vec!["/gone".to_owned()];
        let persistent = vec!["/".to_owned(), "/gone".to_owned()];
        let recursive = vec!["/".to_owned(), "/gone/x".to_owned()];
        let paths = SetWatchesPaths {
            data: &data,
            persistent: &persistent,
            persistent_recursive: &recursive,
            ..SetWatchesPaths::default()
        };
        assert_eq!(paths.len(), 5);
        let fired = table.set_watches2(&tree, 7_u64, 0, paths);
        assert_eq!(
            fired,
            Ok(vec![(7, event(EventKind::NodeDeleted, "/gone", 0))]),
            "only the data watch replays"
        );
        assert!(table.holds(WatchKind::Persistent, "/", 7));
        assert!(table.holds(WatchKind::Persistent, "/gone", 7));
        assert!(table.holds(WatchKind::PersistentRecursive, "/", 7));
        assert!(table.holds(WatchKind::PersistentRecursive, "/gone/x", 7));
        assert_eq!(table.len(), 4);
        // Re-registering what is held adds nothing.
        assert_eq!(
            table.set_watches2(&tree, 7, 0, paths).map(|f| f.len()),
            Ok(1)
        );
        assert_eq!(table.len(), 4);
        table.assert_consistent();
    }

    #[test]
    fn set_watches2_with_a_bad_path_registers_nothing() {
        // zookeeper-wire.md §7 SetWatches; a bad path in any list, the
        // persistent ones included, fails the whole request.
        let tree = DataTree::new();
        let mut table = WatchTable::new();
        let good = vec!["/ok".to_owned()];
        let bad = vec!["/ok".to_owned(), "no-slash".to_owned()];
        let paths = SetWatchesPaths {
            exist: &good,
            persistent: &good,
            persistent_recursive: &bad,
            ..SetWatchesPaths::default()
        };
        let result = table.set_watches2(&tree, 1_u64, 0, paths);
        assert!(
            matches!(result, Err(TreeError::InvalidPath(_))),
            "{result:?}"
        );
        assert!(table.is_empty());
    }

    #[test]
    fn set_watches_is_set_watches2_without_persistent_lists() {
        // zookeeper-wire.md §7 SetWatches replay table, first three rows.
        let tree = DataTree::new();
        let mut table = WatchTable::new();
        let root = vec!["/".to_owned()];
        let missing = vec!["/m".to_owned()];
        let fired = table.set_watches(&tree, 2_u64, 0, &root, &missing, &root);
        assert_eq!(fired, Ok(Vec::new()));
        assert!(table.holds(WatchKind::Data, "/", 2));
        assert!(table.holds(WatchKind::Exist, "/m", 2));
        assert!(table.holds(WatchKind::Child, "/", 2));
        let fired = table.set_watches(&tree, 2, 0, &missing, &root, &missing);
        // List by list: data, exist, child (the same event twice, as
        // ZooKeeper sends it).
        assert_eq!(
            fired,
            Ok(vec![
                (2, event(EventKind::NodeDeleted, "/m", 0)),
                (2, event(EventKind::NodeCreated, "/", 0)),
                (2, event(EventKind::NodeDeleted, "/m", 0)),
            ])
        );
        let iter: Vec<_> = SetWatchesPaths {
            data: &root,
            exist: &missing,
            child: &root,
            persistent: &missing,
            persistent_recursive: &root,
        }
        .iter()
        .collect();
        assert_eq!(
            iter,
            [
                (WatchKind::Data, "/"),
                (WatchKind::Exist, "/m"),
                (WatchKind::Child, "/"),
                (WatchKind::Persistent, "/m"),
                (WatchKind::PersistentRecursive, "/"),
            ]
        );
        assert!(SetWatchesPaths::default().is_empty());
    }
}

/// `fire`, `add`, `remove`, `contains` and the counts against a naive model:
/// a list of (kind, path, watcher) scanned linearly (zookeeper-wire.md §7).
#[cfg(test)]
mod model_tests {
    use proptest::prelude::*;

    use super::*;

    /// Small alphabet with nesting, the root, and a sibling sharing a prefix
    /// (`/ab` is not under `/a`).
    const PATHS: [&str; 8] = ["/", "/a", "/b", "/ab", "/a/b", "/a/c", "/a/b/c", "/b/a"];
    const WATCHERS: u8 = 4;
    const TYPES: [WatcherType; 5] = [
        WatcherType::Children,
        WatcherType::Data,
        WatcherType::Any,
        WatcherType::Persistent,
        WatcherType::PersistentRecursive,
    ];
    const EVENTS: [EventKind; 4] = [
        EventKind::NodeCreated,
        EventKind::NodeDeleted,
        EventKind::NodeDataChanged,
        EventKind::NodeChildrenChanged,
    ];

    #[derive(Debug, Clone)]
    enum Step {
        Add(WatchKind, usize, u8),
        Remove(usize, WatcherType, u8),
        RemoveWatcher(u8),
        Fire(Vec<(EventKind, usize)>),
    }

    fn step() -> impl Strategy<Value = Step> {
        let path = 0..PATHS.len();
        let watcher = 0..WATCHERS;
        prop_oneof![
            4 => (prop::sample::select(ALL_KINDS.to_vec()), path.clone(), watcher.clone())
                .prop_map(|(kind, path, watcher)| Step::Add(kind, path, watcher)),
            1 => (path.clone(), prop::sample::select(TYPES.to_vec()), watcher.clone())
                .prop_map(|(path, ty, watcher)| Step::Remove(path, ty, watcher)),
            1 => watcher.prop_map(Step::RemoveWatcher),
            3 => prop::collection::vec((prop::sample::select(EVENTS.to_vec()), path), 1..4)
                .prop_map(Step::Fire),
        ]
    }

    /// The rules written out again from the reference table, not from
    /// `EventKind::fires`.
    fn model_fires(kind: WatchKind, event: EventKind) -> bool {
        use EventKind::*;
        match kind {
            WatchKind::Data => matches!(event, NodeCreated | NodeDeleted | NodeDataChanged),
            WatchKind::Exist => matches!(event, NodeCreated | NodeDeleted),
            WatchKind::Child => matches!(event, NodeDeleted | NodeChildrenChanged),
            WatchKind::Persistent => true,
            WatchKind::PersistentRecursive => event != NodeChildrenChanged,
        }
    }

    fn strictly_under(ancestor: &str, path: &str) -> bool {
        if ancestor == "/" {
            path != "/"
        } else {
            path.strip_prefix(ancestor)
                .is_some_and(|rest| rest.starts_with('/'))
        }
    }

    fn model_types(ty: WatcherType, kind: WatchKind) -> bool {
        match ty {
            WatcherType::Children => kind == WatchKind::Child,
            WatcherType::Data => matches!(kind, WatchKind::Data | WatchKind::Exist),
            WatcherType::Any => true,
            WatcherType::Persistent => kind == WatchKind::Persistent,
            WatcherType::PersistentRecursive => kind == WatchKind::PersistentRecursive,
        }
    }

    #[derive(Default)]
    struct Model {
        watches: Vec<(WatchKind, &'static str, u8)>,
    }

    impl Model {
        fn add(&mut self, watch: (WatchKind, &'static str, u8)) -> bool {
            if self.watches.contains(&watch) {
                return false;
            }
            self.watches.push(watch);
            true
        }

        fn remove(&mut self, path: &str, ty: WatcherType, watcher: u8) -> usize {
            let before = self.watches.len();
            self.watches
                .retain(|(k, p, w)| !(*p == path && *w == watcher && model_types(ty, *k)));
            before - self.watches.len()
        }

        fn contains(&self, path: &str, ty: WatcherType, watcher: u8) -> bool {
            self.watches
                .iter()
                .any(|(k, p, w)| *p == path && *w == watcher && model_types(ty, *k))
        }

        fn remove_watcher(&mut self, watcher: u8) -> usize {
            let before = self.watches.len();
            self.watches.retain(|(_, _, w)| *w != watcher);
            before - self.watches.len()
        }

        /// One set of events per change, in order.
        fn fire(&mut self, changes: &[Change], zxid: u64) -> Vec<HashSet<(u8, WatchEvent)>> {
            let mut out = Vec::new();
            for change in changes {
                let hit = |(kind, path, _): &(WatchKind, &str, u8)| {
                    model_fires(*kind, change.kind)
                        && (*path == &*change.path
                            || (*kind == WatchKind::PersistentRecursive
                                && strictly_under(path, &change.path)))
                };
                let event = WatchEvent {
                    kind: change.kind,
                    path: Arc::clone(&change.path),
                    zxid,
                };
                out.push(
                    self.watches
                        .iter()
                        .filter(|w| hit(w))
                        .map(|(_, _, watcher)| (*watcher, event.clone()))
                        .collect(),
                );
                self.watches.retain(|w| w.0.is_persistent() || !hit(w));
            }
            out
        }

        fn check(&self, table: &WatchTable<u8>) -> Result<(), TestCaseError> {
            table.assert_consistent();
            prop_assert_eq!(table.len(), self.watches.len());
            prop_assert_eq!(table.is_empty(), self.watches.is_empty());
            let paths: HashSet<_> = self.watches.iter().map(|(_, p, _)| *p).collect();
            prop_assert_eq!(table.path_count(), paths.len());
            let watchers: HashSet<_> = self.watches.iter().map(|(_, _, w)| *w).collect();
            prop_assert_eq!(table.watcher_count(), watchers.len());
            for watcher in 0..WATCHERS {
                let held = self
                    .watches
                    .iter()
                    .filter(|(_, _, w)| *w == watcher)
                    .count();
                prop_assert_eq!(table.count_of(watcher), held);
                for path in PATHS {
                    for kind in ALL_KINDS {
                        let holds = self.watches.contains(&(kind, path, watcher));
                        prop_assert_eq!(table.holds(kind, path, watcher), holds);
                    }
                    for ty in TYPES {
                        let contains = self.contains(path, ty, watcher);
                        prop_assert_eq!(table.contains(path, ty, watcher), contains);
                    }
                }
            }
            Ok(())
        }
    }

    proptest! {
        // No regression files: a failure prints its minimal input to copy into a unit test.
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn the_table_fires_as_the_naive_model(steps in prop::collection::vec(step(), 1..60)) {
            let mut table: WatchTable<u8> = WatchTable::new();
            let mut model = Model::default();
            for (zxid, step) in (1..).zip(&steps) {
                match step {
                    Step::Add(kind, path, watcher) => {
                        let path = PATHS[*path];
                        let added = model.add((*kind, path, *watcher));
                        prop_assert_eq!(table.add(*kind, path, *watcher), added);
                    }
                    Step::Remove(path, ty, watcher) => {
                        let path = PATHS[*path];
                        let removed = model.remove(path, *ty, *watcher);
                        prop_assert_eq!(table.remove(path, *ty, *watcher), removed);
                    }
                    Step::RemoveWatcher(watcher) => {
                        let removed = model.remove_watcher(*watcher);
                        prop_assert_eq!(table.remove_watcher(*watcher), removed);
                    }
                    Step::Fire(changes) => {
                        let changes: Vec<Change> = changes
                            .iter()
                            .map(|(kind, path)| Change { kind: *kind, path: Arc::from(PATHS[*path]) })
                            .collect();
                        let expected = model.fire(&changes, zxid);
                        let fired = table.fire(&changes, zxid);
                        // In change order; within a change, one event per
                        // watcher in any order.
                        let mut rest = fired.as_slice();
                        for want in expected {
                            prop_assert!(rest.len() >= want.len(), "too few events: {:?}", fired);
                            let (these, after) = rest.split_at(want.len());
                            let got: HashSet<_> = these.iter().cloned().collect();
                            prop_assert_eq!(got.len(), these.len(), "a watcher heard a change twice");
                            prop_assert_eq!(got, want);
                            rest = after;
                        }
                        prop_assert!(rest.is_empty(), "extra events: {:?}", rest);
                    }
                }
                model.check(&table)?;
            }
        }
    }
}
