//! The namespace: a ZooKeeper-like tree of persistent and ephemeral nodes with
//! one-shot watches, as a pure, synchronous data structure.
//!
//! This module owns the nodes, the index of each session's ephemerals and the
//! watch tables. It does no I/O and reads no clock: every write takes the zxid
//! and wall-clock time the caller assigns, and returns the watch events it
//! fired for the caller to deliver.

mod error;
mod limits;
mod node;
mod watches;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use bytes::Bytes;
use session_core::{validate_path, validate_sequential_prefix};

pub use error::NamespaceError;
pub use limits::NamespaceLimits;
pub use node::Stat;
pub use watches::{WatchEvent, WatchEventKind};

use node::Node;
use watches::{WatchKind, WatchTable};

/// How [`Namespace::create`] makes a node: persistent or ephemeral, with or
/// without a sequential suffix (ZooKeeper's `CreateMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateMode {
    /// Lives until deleted.
    Persistent,
    /// Persistent, named by the path given plus a 10-digit counter.
    PersistentSequential,
    /// Deleted with its owner session; cannot have children.
    Ephemeral,
    /// Ephemeral, named by the path given plus a 10-digit counter.
    EphemeralSequential,
}

impl CreateMode {
    /// Whether the node belongs to a session.
    pub fn is_ephemeral(self) -> bool {
        matches!(self, Self::Ephemeral | Self::EphemeralSequential)
    }

    /// Whether the name gets a sequential suffix.
    pub fn is_sequential(self) -> bool {
        matches!(self, Self::PersistentSequential | Self::EphemeralSequential)
    }
}

/// The result of a write, with the watch events it fired.
///
/// Each `(watcher, event)` pair is a one-shot watch that has now been removed;
/// the caller must deliver the events (for a session: before any later reply
/// on its connection).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the fired watch events must be delivered to their watchers"]
pub struct Written<T, W> {
    /// What the write returns: the created path, the new stat, ...
    pub value: T,
    /// The watches the write fired, in the order ZooKeeper fires them.
    pub fired: Vec<(W, WatchEvent)>,
}

/// A ZooKeeper-like tree of nodes with one-shot watches.
///
/// `W` identifies a watcher; the server uses the session id. Methods come in
/// three kinds:
/// - reads (`&self`): [`get_data`](Self::get_data), [`exists`](Self::exists),
///   [`children`](Self::children), and the counts for admin and metrics;
/// - reads that also leave a watch (`&mut self`, atomic with the read):
///   [`get_data_and_watch`](Self::get_data_and_watch),
///   [`exists_and_watch`](Self::exists_and_watch),
///   [`children_and_watch`](Self::children_and_watch),
///   [`set_watches`](Self::set_watches) after a reconnect;
/// - writes (`&mut self`), each taking the zxid the caller assigns and
///   returning the watches it fired in a [`Written`]:
///   [`create`](Self::create), [`delete`](Self::delete),
///   [`set_data`](Self::set_data), [`remove_session`](Self::remove_session);
///   and [`remove_watcher`](Self::remove_watcher), which fires nothing.
///
/// A failed operation changes nothing. Zxids should rise from write to write,
/// as they do when every write goes through the server's single `apply`.
///
/// ```
/// use bytes::Bytes;
/// use session_server::{CreateMode, Namespace, NamespaceLimits, WatchEventKind};
///
/// let mut ns: Namespace<u64> = Namespace::new(NamespaceLimits::default());
/// let session = 0x0100_0003_42b8_0000;
///
/// let created = ns.create("/services", Bytes::new(), CreateMode::Persistent, session, 1, 1_000)?;
/// assert_eq!(created.value, "/services");
///
/// // Another session watches the children of /services.
/// let (children, _stat) = ns.children_and_watch("/services", 7)?;
/// assert!(children.is_empty());
///
/// let member = ns.create(
///     "/services/web-",
///     Bytes::from_static(b"10.0.0.1:80"),
///     CreateMode::EphemeralSequential,
///     session,
///     2,
///     1_001,
/// )?;
/// assert_eq!(member.value, "/services/web-0000000000");
/// assert_eq!(member.fired.len(), 1);
/// assert_eq!(member.fired[0].0, 7);
/// assert_eq!(member.fired[0].1.kind, WatchEventKind::NodeChildrenChanged);
///
/// // The session ends: its ephemerals go.
/// let removed = ns.remove_session(session, 3);
/// assert_eq!(removed.value, vec!["/services/web-0000000000".to_string()]);
/// assert_eq!(ns.ephemeral_count(session), 0);
/// assert_eq!(ns.exists("/services")?.map(|stat| stat.num_children), Some(0));
/// # Ok::<(), session_server::NamespaceError>(())
/// ```
#[derive(Debug)]
pub struct Namespace<W> {
    nodes: HashMap<String, Node>,
    ephemerals: HashMap<u64, BTreeSet<String>>,
    watches: WatchTable<W>,
    limits: NamespaceLimits,
    last_zxid: u64,
}

impl<W: Copy + Eq + Hash> Namespace<W> {
    /// A namespace holding only the root `/`, whose stat is all zeros.
    pub fn new(limits: NamespaceLimits) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert("/".to_owned(), Node::new(Bytes::new(), 0, 0, 0));
        Self {
            nodes,
            ephemerals: HashMap::new(),
            watches: WatchTable::new(),
            limits,
            last_zxid: 0,
        }
    }

    /// The limits this namespace enforces.
    pub fn limits(&self) -> &NamespaceLimits {
        &self.limits
    }

    /// Number of nodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of watches held, counting each (watcher, kind, path) once.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    /// Number of ephemeral nodes `owner` holds.
    pub fn ephemeral_count(&self, owner: u64) -> usize {
        self.ephemerals.get(&owner).map_or(0, BTreeSet::len)
    }

    /// The paths of the ephemeral nodes `owner` holds, in sorted order.
    pub fn ephemerals(&self, owner: u64) -> impl Iterator<Item = &str> + '_ {
        self.ephemerals
            .get(&owner)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The highest zxid of any write applied so far (0 at the start).
    pub fn last_zxid(&self) -> u64 {
        self.last_zxid
    }

    /// The data and stat of the node at `path`.
    ///
    /// # Errors
    /// [`NamespaceError::NoNode`], [`NamespaceError::InvalidPath`],
    /// [`NamespaceError::PathTooLong`].
    pub fn get_data(&self, path: &str) -> Result<(Bytes, Stat), NamespaceError> {
        self.check_path(path)?;
        let node = self.node(path)?;
        Ok((node.data.clone(), node.stat()))
    }

    /// The stat of the node at `path`, or `None` if there is none.
    ///
    /// # Errors
    /// [`NamespaceError::InvalidPath`], [`NamespaceError::PathTooLong`].
    pub fn exists(&self, path: &str) -> Result<Option<Stat>, NamespaceError> {
        self.check_path(path)?;
        Ok(self.nodes.get(path).map(Node::stat))
    }

    /// The names (not paths) of the children of `path`, sorted, and its stat.
    ///
    /// # Errors
    /// [`NamespaceError::NoNode`], [`NamespaceError::InvalidPath`],
    /// [`NamespaceError::PathTooLong`].
    pub fn children(&self, path: &str) -> Result<(Vec<String>, Stat), NamespaceError> {
        self.check_path(path)?;
        let node = self.node(path)?;
        Ok((node.children.iter().cloned().collect(), node.stat()))
    }

    /// [`get_data`](Self::get_data), leaving a data watch for `watcher` that
    /// fires on the node's next set ([`WatchEventKind::NodeDataChanged`]) or
    /// delete ([`WatchEventKind::NodeDeleted`]). A missing node leaves no watch.
    ///
    /// # Errors
    /// As [`get_data`](Self::get_data).
    pub fn get_data_and_watch(
        &mut self,
        path: &str,
        watcher: W,
    ) -> Result<(Bytes, Stat), NamespaceError> {
        let found = self.get_data(path)?;
        self.watches.add(WatchKind::Data, path, watcher);
        Ok(found)
    }

    /// [`exists`](Self::exists), leaving a watch for `watcher`: on an existing
    /// node a data watch (next set or delete), on a missing one an exist watch
    /// (its create, [`WatchEventKind::NodeCreated`]).
    ///
    /// # Errors
    /// As [`exists`](Self::exists); an invalid path leaves no watch.
    pub fn exists_and_watch(
        &mut self,
        path: &str,
        watcher: W,
    ) -> Result<Option<Stat>, NamespaceError> {
        let found = self.exists(path)?;
        let kind = if found.is_some() {
            WatchKind::Data
        } else {
            WatchKind::Exist
        };
        self.watches.add(kind, path, watcher);
        Ok(found)
    }

    /// [`children`](Self::children), leaving a child watch for `watcher` that
    /// fires on the next create or delete of a child
    /// ([`WatchEventKind::NodeChildrenChanged`]) or the node's delete
    /// ([`WatchEventKind::NodeDeleted`]). A missing node leaves no watch.
    ///
    /// # Errors
    /// As [`children`](Self::children).
    pub fn children_and_watch(
        &mut self,
        path: &str,
        watcher: W,
    ) -> Result<(Vec<String>, Stat), NamespaceError> {
        let found = self.children(path)?;
        self.watches.add(WatchKind::Child, path, watcher);
        Ok(found)
    }

    /// Creates a node and returns its path: `path` itself, or for a sequential
    /// mode `path` followed by the parent's [`Stat::cversion`] as 10 zero-padded
    /// digits (so the counter also rises on deletes of children, as in
    /// ZooKeeper).
    ///
    /// `owner` is the creating session's raw id; it becomes the node's
    /// [`Stat::ephemeral_owner`] for an ephemeral mode and is ignored for a
    /// persistent one. Whether the session may create at all is the caller's
    /// check, made before calling: a session that is closing or expiring must
    /// not create ephemerals, or they would outlive it (ZOOKEEPER-1208).
    ///
    /// Fires [`WatchEventKind::NodeCreated`] to exist (and data) watches on the
    /// path, then [`WatchEventKind::NodeChildrenChanged`] to child watches on
    /// the parent. The parent's `cversion` rises by one and its `pzxid`
    /// becomes `zxid`.
    ///
    /// # Errors
    /// [`NamespaceError::PathTooLong`] (the final name counts),
    /// [`NamespaceError::InvalidPath`], [`NamespaceError::DataTooLarge`],
    /// [`NamespaceError::ZeroOwner`] (ephemeral with owner 0),
    /// [`NamespaceError::NoNode`] naming the missing parent,
    /// [`NamespaceError::NoChildrenForEphemerals`],
    /// [`NamespaceError::SequenceExhausted`], [`NamespaceError::NodeExists`]
    /// (also for `/`), [`NamespaceError::TooManyEphemerals`].
    pub fn create(
        &mut self,
        path: &str,
        data: Bytes,
        mode: CreateMode,
        owner: u64,
        zxid: u64,
        time_ms: i64,
    ) -> Result<Written<String, W>, NamespaceError> {
        self.check_path_len(path.len())?;
        if mode.is_sequential() {
            validate_sequential_prefix(path)?;
        } else {
            validate_path(path)?;
            if path == "/" {
                return Err(NamespaceError::NodeExists { path: path.into() });
            }
        }
        self.check_data(path, &data)?;
        let ephemeral_owner = if mode.is_ephemeral() {
            if owner == 0 {
                return Err(NamespaceError::ZeroOwner { path: path.into() });
            }
            owner
        } else {
            0
        };
        let (parent_path, name_start) = split_parent(path);
        let parent = self.node(parent_path)?;
        if parent.is_ephemeral() {
            return Err(NamespaceError::NoChildrenForEphemerals {
                path: path.into(),
                parent: parent_path.into(),
            });
        }
        let path = if mode.is_sequential() {
            let cversion = parent.stat.cversion;
            if cversion == i32::MAX {
                return Err(NamespaceError::SequenceExhausted {
                    parent: parent_path.into(),
                    cversion,
                });
            }
            let full = format!("{path}{cversion:010}");
            self.check_path_len(full.len())?;
            full
        } else {
            path.to_owned()
        };
        if self.nodes.contains_key(&path) {
            return Err(NamespaceError::NodeExists { path });
        }
        if ephemeral_owner != 0 {
            let max = self.limits.max_ephemerals_per_session;
            if self.ephemeral_count(ephemeral_owner) >= max {
                return Err(NamespaceError::TooManyEphemerals {
                    owner: ephemeral_owner,
                    max,
                });
            }
        }

        let parent_path = parent_path.to_owned();
        let parent = self.node_mut(&parent_path);
        parent.children.insert(path[name_start..].to_owned());
        parent.stat.cversion = parent.stat.cversion.saturating_add(1);
        parent.stat.pzxid = parent.stat.pzxid.max(zxid);
        self.nodes.insert(
            path.clone(),
            Node::new(data, ephemeral_owner, zxid, time_ms),
        );
        if ephemeral_owner != 0 {
            self.ephemerals
                .entry(ephemeral_owner)
                .or_default()
                .insert(path.clone());
        }
        self.advance(zxid);

        let mut fired = Vec::new();
        self.fire(
            &[WatchKind::Exist, WatchKind::Data],
            &path,
            WatchEventKind::NodeCreated,
            zxid,
            &mut fired,
        );
        self.fire(
            &[WatchKind::Child],
            &parent_path,
            WatchEventKind::NodeChildrenChanged,
            zxid,
            &mut fired,
        );
        Ok(Written { value: path, fired })
    }

    /// Deletes the node at `path` if its version is `expected_version`
    /// (`None` or `Some(-1)`, ZooKeeper's wire value, match any version).
    ///
    /// Fires [`WatchEventKind::NodeDeleted`] once to each watcher with a data,
    /// exist or child watch on the path, then
    /// [`WatchEventKind::NodeChildrenChanged`] to child watches on the parent.
    /// The parent's `cversion` rises by one and its `pzxid` becomes `zxid`.
    ///
    /// # Errors
    /// [`NamespaceError::PathTooLong`], [`NamespaceError::InvalidPath`],
    /// [`NamespaceError::RootDelete`], [`NamespaceError::NoNode`],
    /// [`NamespaceError::BadVersion`], [`NamespaceError::NotEmpty`].
    pub fn delete(
        &mut self,
        path: &str,
        expected_version: Option<i32>,
        zxid: u64,
    ) -> Result<Written<(), W>, NamespaceError> {
        self.check_path(path)?;
        if path == "/" {
            return Err(NamespaceError::RootDelete);
        }
        let node = self.node(path)?;
        check_version(path, expected_version, node.stat.version)?;
        if !node.children.is_empty() {
            return Err(NamespaceError::NotEmpty {
                path: path.into(),
                children: node.children.len(),
            });
        }
        let mut fired = Vec::new();
        self.remove_leaf(path, zxid, &mut fired);
        self.advance(zxid);
        Ok(Written { value: (), fired })
    }

    /// Replaces the data of the node at `path` if its version is
    /// `expected_version` (`None` or `Some(-1)` match any), and returns the new
    /// stat: version + 1, `mzxid` = `zxid`, `mtime` = `time_ms`.
    ///
    /// Fires [`WatchEventKind::NodeDataChanged`] to data watches on the path.
    ///
    /// # Errors
    /// [`NamespaceError::PathTooLong`], [`NamespaceError::InvalidPath`],
    /// [`NamespaceError::DataTooLarge`], [`NamespaceError::NoNode`],
    /// [`NamespaceError::BadVersion`].
    pub fn set_data(
        &mut self,
        path: &str,
        data: Bytes,
        expected_version: Option<i32>,
        zxid: u64,
        time_ms: i64,
    ) -> Result<Written<Stat, W>, NamespaceError> {
        self.check_path(path)?;
        self.check_data(path, &data)?;
        let node = self
            .nodes
            .get_mut(path)
            .ok_or_else(|| NamespaceError::NoNode { path: path.into() })?;
        check_version(path, expected_version, node.stat.version)?;
        node.data = data;
        node.stat.version = node.stat.version.wrapping_add(1);
        node.stat.mzxid = zxid;
        node.stat.mtime = time_ms;
        let stat = node.stat();
        self.advance(zxid);
        let mut fired = Vec::new();
        self.fire(
            &[WatchKind::Data],
            path,
            WatchEventKind::NodeDataChanged,
            zxid,
            &mut fired,
        );
        Ok(Written { value: stat, fired })
    }

    /// Deletes every ephemeral node `owner` holds, all under one `zxid` (as
    /// ZooKeeper's closeSession), and returns their paths in sorted order.
    /// Used when a session closes or expires; an owner with no ephemerals
    /// changes nothing.
    ///
    /// Each delete fires watches as [`delete`](Self::delete) does. The
    /// session's own watches are not touched: call
    /// [`remove_watcher`](Self::remove_watcher) first so that it is not sent
    /// events about its own ephemerals.
    pub fn remove_session(&mut self, owner: u64, zxid: u64) -> Written<Vec<String>, W> {
        let mut fired = Vec::new();
        let Some(paths) = self.ephemerals.remove(&owner) else {
            return Written {
                value: Vec::new(),
                fired,
            };
        };
        for path in &paths {
            self.remove_leaf(path, zxid, &mut fired);
        }
        self.advance(zxid);
        Written {
            value: paths.into_iter().collect(),
            fired,
        }
    }

    /// Drops every watch `watcher` holds (its session closed) and returns how
    /// many there were. Touches only that watcher's own paths.
    pub fn remove_watcher(&mut self, watcher: W) -> usize {
        self.watches.remove_watcher(watcher)
    }

    /// Re-registers a reconnecting client's watches, with ZooKeeper's rules
    /// (`DataTree.setWatches`), against `last_zxid`, the last zxid the client
    /// saw; returns the events that fire at once:
    /// - a data watch on a missing node fires [`WatchEventKind::NodeDeleted`],
    ///   on a node with `mzxid > last_zxid` fires
    ///   [`WatchEventKind::NodeDataChanged`], else it is registered;
    /// - an exist watch on an existing node fires
    ///   [`WatchEventKind::NodeCreated`] (whatever the zxid, as ZooKeeper
    ///   does), else it is registered;
    /// - a child watch on a missing node fires [`WatchEventKind::NodeDeleted`],
    ///   on a node with `pzxid > last_zxid` fires
    ///   [`WatchEventKind::NodeChildrenChanged`], else it is registered.
    ///
    /// # Errors
    /// [`NamespaceError::PathTooLong`] or [`NamespaceError::InvalidPath`] for
    /// the first bad path; then nothing is registered and nothing fires.
    pub fn set_watches(
        &mut self,
        watcher: W,
        last_zxid: u64,
        data_paths: &[String],
        exist_paths: &[String],
        child_paths: &[String],
    ) -> Result<Vec<(W, WatchEvent)>, NamespaceError> {
        for path in data_paths.iter().chain(exist_paths).chain(child_paths) {
            self.check_path(path)?;
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
            match self.nodes.get(path.as_str()) {
                None => fire_now(WatchEventKind::NodeDeleted, path, self.last_zxid),
                Some(node) if node.stat.mzxid > last_zxid => {
                    fire_now(WatchEventKind::NodeDataChanged, path, node.stat.mzxid);
                }
                Some(_) => {
                    self.watches.add(WatchKind::Data, path, watcher);
                }
            }
        }
        for path in exist_paths {
            match self.nodes.get(path.as_str()) {
                Some(node) => fire_now(WatchEventKind::NodeCreated, path, node.stat.czxid),
                None => {
                    self.watches.add(WatchKind::Exist, path, watcher);
                }
            }
        }
        for path in child_paths {
            match self.nodes.get(path.as_str()) {
                None => fire_now(WatchEventKind::NodeDeleted, path, self.last_zxid),
                Some(node) if node.stat.pzxid > last_zxid => {
                    fire_now(WatchEventKind::NodeChildrenChanged, path, node.stat.pzxid);
                }
                Some(_) => {
                    self.watches.add(WatchKind::Child, path, watcher);
                }
            }
        }
        Ok(fired)
    }

    /// Removes a node known to exist and to have no children, with its entry
    /// in its owner's index and its parent's child list, and fires its watches.
    fn remove_leaf(&mut self, path: &str, zxid: u64, fired: &mut Vec<(W, WatchEvent)>) {
        let Some(node) = self.nodes.remove(path) else {
            return;
        };
        let owner = node.stat.ephemeral_owner;
        if owner != 0 {
            if let Some(paths) = self.ephemerals.get_mut(&owner) {
                paths.remove(path);
                if paths.is_empty() {
                    self.ephemerals.remove(&owner);
                }
            }
        }
        let (parent_path, name_start) = split_parent(path);
        let parent = self.node_mut(parent_path);
        parent.children.remove(&path[name_start..]);
        parent.stat.cversion = parent.stat.cversion.saturating_add(1);
        parent.stat.pzxid = parent.stat.pzxid.max(zxid);
        self.fire(
            &[WatchKind::Data, WatchKind::Exist, WatchKind::Child],
            path,
            WatchEventKind::NodeDeleted,
            zxid,
            fired,
        );
        self.fire(
            &[WatchKind::Child],
            parent_path,
            WatchEventKind::NodeChildrenChanged,
            zxid,
            fired,
        );
    }

    /// Takes the watches of `kinds` on `path` and appends one event per
    /// watcher, however many of those kinds it had.
    fn fire(
        &mut self,
        kinds: &[WatchKind],
        path: &str,
        kind: WatchEventKind,
        zxid: u64,
        fired: &mut Vec<(W, WatchEvent)>,
    ) {
        let mut event: Option<WatchEvent> = None;
        let mut notified: Option<HashSet<W>> = None;
        for &watch_kind in kinds {
            let Some(watchers) = self.watches.take(watch_kind, path) else {
                continue;
            };
            let event = event.get_or_insert_with(|| WatchEvent {
                kind,
                path: Arc::from(path),
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

    fn advance(&mut self, zxid: u64) {
        self.last_zxid = self.last_zxid.max(zxid);
    }

    fn node(&self, path: &str) -> Result<&Node, NamespaceError> {
        self.nodes
            .get(path)
            .ok_or_else(|| NamespaceError::NoNode { path: path.into() })
    }

    fn node_mut(&mut self, path: &str) -> &mut Node {
        self.nodes
            .get_mut(path)
            .expect("invariant: every node but the root has its parent in the tree")
    }

    fn check_path(&self, path: &str) -> Result<(), NamespaceError> {
        self.check_path_len(path.len())?;
        validate_path(path)?;
        Ok(())
    }

    fn check_path_len(&self, len: usize) -> Result<(), NamespaceError> {
        let max = self.limits.max_path_bytes;
        if len > max {
            return Err(NamespaceError::PathTooLong { len, max });
        }
        Ok(())
    }

    fn check_data(&self, path: &str, data: &Bytes) -> Result<(), NamespaceError> {
        let max = self.limits.max_data_bytes;
        if data.len() > max {
            return Err(NamespaceError::DataTooLarge {
                path: path.into(),
                size: data.len(),
                max,
            });
        }
        Ok(())
    }
}

/// The parent of a valid non-root path (or sequential prefix) and the byte
/// offset where the last component starts.
fn split_parent(path: &str) -> (&str, usize) {
    // Valid paths start with '/', so a slash is always found.
    let slash = path.rfind('/').unwrap_or(0);
    let parent = if slash == 0 { "/" } else { &path[..slash] };
    (parent, slash + 1)
}

fn check_version(path: &str, expected: Option<i32>, actual: i32) -> Result<(), NamespaceError> {
    match expected {
        Some(expected) if expected != -1 && expected != actual => Err(NamespaceError::BadVersion {
            path: path.into(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}
