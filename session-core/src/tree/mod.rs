//! The data tree: a ZooKeeper-like tree of persistent and ephemeral nodes,
//! without watches.
//!
//! [`DataTree`] owns the nodes, the index of each session's ephemerals, the
//! running total of data bytes and the zxid of the last write. Its writes are
//! deterministic: each takes the zxid and wall-clock time the caller assigns,
//! checks the tree's structure only, and reports the [`Change`]s it made in
//! the order ZooKeeper fires watches, for a [`WatchTable`](crate::WatchTable)
//! to turn into events. The size limits of [`TreeLimits`] are checked before a
//! write, by the `check_*` methods; the transaction model's
//! [`prepare`](crate::prepare) does so.
//!
//! [`DataTree::export`] lists every node (path, data, stat, children) in path
//! order, and [`DataTree::restore`] rebuilds the tree from such a list,
//! derived indexes included, after checking its structure (see
//! [`RestoreError`](crate::RestoreError)).

mod error;
mod limits;
mod node;
mod restore;

#[cfg(test)]
mod namespace;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::{Acl, EventKind, validate_path, validate_sequential_prefix};

pub use error::TreeError;
pub use limits::TreeLimits;
pub use node::{CONTAINER_OWNER, MAX_TTL_MS, NodeKind, NodeSnapshot, Stat, TTL_OWNER_PREFIX};

use node::Node;

/// Digits of a sequential suffix: the parent's `cversion`, zero-padded.
const SEQUENCE_DIGITS: usize = 10;

/// How [`DataTree::create`] makes a node: persistent or ephemeral, with or
/// without a sequential suffix, a container or a node with a time to live
/// (ZooKeeper's `CreateMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CreateMode {
    /// Lives until deleted.
    #[default]
    Persistent,
    /// Persistent, named by the path given plus a 10-digit counter.
    PersistentSequential,
    /// Deleted with its owner session; cannot have children.
    Ephemeral,
    /// Ephemeral, named by the path given plus a 10-digit counter.
    EphemeralSequential,
    /// Deleted by the server once its last child is gone (a lock's or a
    /// queue's parent); see [`NodeKind::Container`].
    Container,
    /// Deleted by the server once it has no children and was not modified
    /// for `ttl_ms` (1..=[`MAX_TTL_MS`]).
    PersistentWithTtl {
        /// Milliseconds.
        ttl_ms: u64,
    },
    /// [`PersistentWithTtl`](Self::PersistentWithTtl), named with a
    /// sequential suffix.
    PersistentSequentialWithTtl {
        /// Milliseconds.
        ttl_ms: u64,
    },
}

impl CreateMode {
    /// The mode with these two flags (as carried on the wire).
    ///
    /// ```
    /// use session_core::CreateMode;
    ///
    /// assert_eq!(CreateMode::from_flags(true, false), CreateMode::Ephemeral);
    /// assert!(CreateMode::from_flags(false, true).is_sequential());
    /// ```
    #[must_use]
    pub const fn from_flags(ephemeral: bool, sequential: bool) -> Self {
        match (ephemeral, sequential) {
            (false, false) => Self::Persistent,
            (false, true) => Self::PersistentSequential,
            (true, false) => Self::Ephemeral,
            (true, true) => Self::EphemeralSequential,
        }
    }

    /// Whether the node belongs to a session.
    #[must_use]
    pub const fn is_ephemeral(self) -> bool {
        matches!(self, Self::Ephemeral | Self::EphemeralSequential)
    }

    /// Whether the name gets a sequential suffix.
    #[must_use]
    pub const fn is_sequential(self) -> bool {
        matches!(
            self,
            Self::PersistentSequential
                | Self::EphemeralSequential
                | Self::PersistentSequentialWithTtl { .. }
        )
    }

    /// The kind of node this mode creates.
    #[must_use]
    pub const fn kind(self) -> NodeKind {
        match self {
            Self::Persistent | Self::PersistentSequential => NodeKind::Persistent,
            Self::Ephemeral | Self::EphemeralSequential => NodeKind::Ephemeral,
            Self::Container => NodeKind::Container,
            Self::PersistentWithTtl { ttl_ms } | Self::PersistentSequentialWithTtl { ttl_ms } => {
                NodeKind::Ttl { ttl_ms }
            }
        }
    }
}

/// One change a write made to the tree: what a watch on `path` hears of it
/// (see [`EventKind::fires`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// What happened.
    pub kind: EventKind,
    /// The node it happened to (for [`EventKind::NodeChildrenChanged`], the
    /// parent whose children changed).
    pub path: Arc<str>,
}

impl Change {
    fn new(kind: EventKind, path: &str) -> Self {
        Self {
            kind,
            path: Arc::from(path),
        }
    }
}

/// The result of a write, with the changes it made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the changes must be handed to the watch tables, which fire from them"]
pub struct Written<T> {
    /// What the write returns: the created path, the new stat, ...
    pub value: T,
    /// The changes the write made, in the order ZooKeeper fires their watches.
    pub changes: Vec<Change>,
}

/// A ZooKeeper-like tree of nodes, without watches.
///
/// Methods come in three kinds:
/// - reads (`&self`): [`get_data`](Self::get_data), [`exists`](Self::exists),
///   [`children`](Self::children), [`stat`](Self::stat),
///   [`export`](Self::export) and the counts for admin and metrics. Reads
///   check the path's syntax but take no limits: an over-long path is simply
///   not found;
/// - checks (`&self`) of a write against [`TreeLimits`] and the current tree:
///   [`check_create`](Self::check_create), [`check_set`](Self::check_set),
///   [`check_delete`](Self::check_delete). Each returns the error the write
///   would return, or a limit's;
/// - writes (`&mut self`), each taking the zxid the caller assigns, checking
///   the tree's structure but no limit, and returning the [`Change`]s it made
///   in a [`Written`]: [`create`](Self::create), [`delete`](Self::delete),
///   [`set_data`](Self::set_data), [`remove_session`](Self::remove_session).
///
/// A failed write changes nothing. The same writes in the same order give the
/// same tree and the same changes, whatever the machine. A tree is rebuilt
/// from its [`export`](Self::export) with [`restore`](Self::restore).
///
/// ```
/// use bytes::Bytes;
/// use session_core::{Change, CreateMode, DataTree, EventKind, TreeLimits};
///
/// let mut tree = DataTree::new();
/// let session = 0x0100_0003_42b8_0000;
///
/// // Check against the limits first, then write with the zxid assigned.
/// let limits = TreeLimits::default();
/// tree.check_create("/services", 0, CreateMode::Persistent, session, &limits)?;
/// let created = tree.create("/services", Bytes::new(), CreateMode::Persistent, session, 1, 1_000)?;
/// assert_eq!(created.value, "/services");
///
/// let member = tree.create(
///     "/services/web-",
///     Bytes::from_static(b"10.0.0.1:80"),
///     CreateMode::EphemeralSequential,
///     session,
///     2,
///     1_001,
/// )?;
/// assert_eq!(member.value, "/services/web-0000000000");
/// assert_eq!(member.changes[1].kind, EventKind::NodeChildrenChanged);
/// assert_eq!(&*member.changes[1].path, "/services");
///
/// // The session ends: its ephemerals go.
/// let removed = tree.remove_session(session, 3);
/// assert_eq!(removed.value, vec!["/services/web-0000000000".to_string()]);
/// assert_eq!(tree.ephemeral_count(session), 0);
/// assert_eq!(tree.exists("/services")?.map(|stat| stat.num_children), Some(0));
/// # Ok::<(), session_core::TreeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTree {
    nodes: HashMap<String, Node>,
    ephemerals: HashMap<u64, BTreeSet<String>>,
    /// Containers and TTL nodes: the candidates for
    /// [`expired_nodes`](Self::expired_nodes).
    reapable: BTreeSet<String>,
    last_zxid: u64,
    data_bytes: usize,
    /// The open list, shared by every node that has it.
    open_acl: Arc<[Acl]>,
    /// While an atomic group of writes runs: how to undo each.
    journal: Option<Journal>,
}

/// How to undo the writes of an atomic group (a multi), in reverse.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Journal {
    undo: Vec<Undo>,
    last_zxid: u64,
    data_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    /// A node was created under a parent whose counters were these.
    Created {
        path: String,
        parent_cversion: i32,
        parent_pzxid: u64,
    },
    /// A node was deleted from a parent whose counters were these.
    Deleted {
        path: String,
        node: Node,
        parent_cversion: i32,
        parent_pzxid: u64,
    },
    /// A node's data and stat were these.
    DataSet {
        path: String,
        data: Bytes,
        stat: Stat,
    },
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`DataTree::plan_create`] resolved: the final path and the owner.
struct CreatePlan {
    path: String,
    ephemeral_owner: u64,
    kind: NodeKind,
}

impl DataTree {
    /// A tree holding only the root `/`, whose stat is all zeros.
    #[must_use]
    pub fn new() -> Self {
        let open_acl: Arc<[Acl]> = Acl::open().into();
        let mut nodes = HashMap::new();
        let root = Node::new(
            Bytes::new(),
            NodeKind::Persistent,
            0,
            Arc::clone(&open_acl),
            0,
            0,
        );
        nodes.insert("/".to_owned(), root);
        Self {
            nodes,
            ephemerals: HashMap::new(),
            reapable: BTreeSet::new(),
            last_zxid: 0,
            data_bytes: 0,
            open_acl,
            journal: None,
        }
    }

    /// Number of nodes, the root included.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes of node data in the whole tree.
    #[must_use]
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// Number of ephemeral nodes `owner` holds.
    #[must_use]
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

    /// The highest zxid of any write that changed the tree (0 at the start).
    #[must_use]
    pub fn last_zxid(&self) -> u64 {
        self.last_zxid
    }

    /// The data and stat of the node at `path`.
    ///
    /// # Errors
    /// [`TreeError::NoNode`], [`TreeError::InvalidPath`].
    pub fn get_data(&self, path: &str) -> Result<(Bytes, Stat), TreeError> {
        validate_path(path)?;
        let node = self.node(path)?;
        Ok((node.data.clone(), node.stat()))
    }

    /// The stat of the node at `path`, or `None` if there is none.
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`].
    pub fn exists(&self, path: &str) -> Result<Option<Stat>, TreeError> {
        validate_path(path)?;
        Ok(self.stat(path))
    }

    /// The names (not paths) of the children of `path`, sorted, and its stat.
    ///
    /// # Errors
    /// [`TreeError::NoNode`], [`TreeError::InvalidPath`].
    pub fn children(&self, path: &str) -> Result<(Vec<String>, Stat), TreeError> {
        validate_path(path)?;
        let node = self.node(path)?;
        Ok((node.children.iter().cloned().collect(), node.stat()))
    }

    /// The stat of the node at `path`, if there is one; the path is not
    /// validated (an invalid path names no node).
    #[must_use]
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.nodes.get(path).map(Node::stat)
    }

    /// The access control list and stat of the node at `path`.
    ///
    /// # Errors
    /// [`TreeError::NoNode`], [`TreeError::InvalidPath`].
    pub fn acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), TreeError> {
        validate_path(path)?;
        let node = self.node(path)?;
        Ok((node.acl.to_vec(), node.stat()))
    }

    /// The access control list of the node at `path`, if there is one (the
    /// path is not validated), without copying it: for permission checks.
    #[must_use]
    pub fn node_acl(&self, path: &str) -> Option<&[Acl]> {
        self.nodes.get(path).map(|node| &*node.acl)
    }

    /// The kind of the node at `path`, if there is one.
    #[must_use]
    pub fn kind(&self, path: &str) -> Option<NodeKind> {
        self.nodes.get(path).map(|node| node.kind)
    }

    /// The number of nodes below `path`, at any depth (ZooKeeper's
    /// `getAllChildrenNumber`): a walk of the subtree.
    ///
    /// # Errors
    /// [`TreeError::NoNode`], [`TreeError::InvalidPath`].
    pub fn descendant_count(&self, path: &str) -> Result<usize, TreeError> {
        validate_path(path)?;
        let mut pending = vec![path.to_owned()];
        self.node(path)?;
        let mut count = 0;
        while let Some(parent) = pending.pop() {
            let Some(node) = self.nodes.get(&parent) else {
                continue;
            };
            for name in &node.children {
                count += 1;
                let child = child_path(&parent, name);
                if self
                    .nodes
                    .get(&child)
                    .is_some_and(|c| !c.children.is_empty())
                {
                    pending.push(child);
                }
            }
        }
        Ok(count)
    }

    /// Up to `max` containers and TTL nodes that are due to go, in path
    /// order, at wall-clock `now_ms` (ZooKeeper's `ContainerManager`): a
    /// container with no children that has had one (`cversion > 0`), a TTL
    /// node with no children whose `mtime` is more than its TTL ago. Each is
    /// deleted with [`delete_reapable`](Self::delete_reapable), which checks
    /// again.
    #[must_use]
    pub fn expired_nodes(&self, now_ms: i64, max: usize) -> Vec<String> {
        self.reapable
            .iter()
            .filter(|path| {
                self.nodes
                    .get(path.as_str())
                    .is_some_and(|node| node.is_due(now_ms))
            })
            .take(max)
            .cloned()
            .collect()
    }

    /// Number of containers and TTL nodes.
    #[must_use]
    pub fn reapable_count(&self) -> usize {
        self.reapable.len()
    }

    /// Every node, sorted by path, with its data, stat and children: what is
    /// replicated of the tree, in an order that does not depend on hashing.
    #[must_use]
    pub fn export(&self) -> Vec<NodeSnapshot> {
        let mut nodes: Vec<NodeSnapshot> = self
            .nodes
            .iter()
            .map(|(path, node)| NodeSnapshot {
                path: path.clone(),
                data: node.data.clone(),
                stat: node.stat(),
                children: node.children.iter().cloned().collect(),
                acl: node.acl.to_vec(),
                kind: node.kind,
            })
            .collect();
        nodes.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        nodes
    }

    /// Whether [`create`](Self::create) with these arguments would succeed
    /// now, and within `limits`: returns the error it would return, or that of
    /// a limit, in the order the checks are made: path length (for a
    /// sequential mode, counting the 10-digit suffix), path syntax, data
    /// size, owner, parent, name taken, ephemerals of `owner`, node count,
    /// data quota.
    ///
    /// # Errors
    /// Those of [`create`](Self::create), and [`TreeError::PathTooLong`],
    /// [`TreeError::DataTooLarge`], [`TreeError::TooManyEphemerals`],
    /// [`TreeError::TooManyNodes`], [`TreeError::DataQuotaExceeded`].
    pub fn check_create(
        &self,
        path: &str,
        data_len: usize,
        mode: CreateMode,
        owner: u64,
        limits: &TreeLimits,
    ) -> Result<(), TreeError> {
        self.plan_create(path, mode, owner, Some((limits, data_len)))
            .map(|_| ())
    }

    /// Whether [`set_data`](Self::set_data) with these arguments would
    /// succeed now, and within `limits`: path length and syntax, data size,
    /// node, version, and the data quota (only growth counts).
    ///
    /// # Errors
    /// Those of [`set_data`](Self::set_data), and [`TreeError::PathTooLong`],
    /// [`TreeError::DataTooLarge`], [`TreeError::DataQuotaExceeded`].
    pub fn check_set(
        &self,
        path: &str,
        data_len: usize,
        expected_version: Option<i32>,
        limits: &TreeLimits,
    ) -> Result<(), TreeError> {
        limits.check_path(path)?;
        limits.check_data(path, data_len)?;
        let node = self.node(path)?;
        check_version(path, expected_version, node.stat.version)?;
        let old_len = node.data.len();
        if data_len > old_len {
            self.check_quota(data_len, data_len - old_len, limits)?;
        }
        Ok(())
    }

    /// Whether [`delete`](Self::delete) with these arguments would succeed
    /// now; of the limits only the path length applies.
    ///
    /// # Errors
    /// Those of [`delete`](Self::delete), and [`TreeError::PathTooLong`].
    pub fn check_delete(
        &self,
        path: &str,
        expected_version: Option<i32>,
        limits: &TreeLimits,
    ) -> Result<(), TreeError> {
        limits.check_path_len(path.len())?;
        self.check_delete_structure(path, expected_version)
    }

    /// Creates a node and returns its path: `path` itself, or for a sequential
    /// mode `path` followed by the parent's [`Stat::cversion`] as 10 zero-padded
    /// digits (so the counter also rises on deletes of children, as in
    /// ZooKeeper).
    ///
    /// `owner` is the creating session's raw id; it becomes the node's
    /// [`Stat::ephemeral_owner`] for an ephemeral mode and is ignored for a
    /// persistent one. Whether the session may create at all is the caller's
    /// check: a session that is closed must not create ephemerals, or they
    /// would outlive it (ZOOKEEPER-1208).
    ///
    /// Reports [`EventKind::NodeCreated`] on the path, then
    /// [`EventKind::NodeChildrenChanged`] on the parent. The parent's
    /// `cversion` rises by one and its `pzxid` becomes `zxid`. No limit is
    /// checked: see [`check_create`](Self::check_create).
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`], [`TreeError::ZeroOwner`] (ephemeral with
    /// owner 0), [`TreeError::NoNode`] naming the missing parent,
    /// [`TreeError::NoChildrenForEphemerals`], [`TreeError::SequenceExhausted`],
    /// [`TreeError::NodeExists`] (also for `/`).
    pub fn create(
        &mut self,
        path: &str,
        data: Bytes,
        mode: CreateMode,
        owner: u64,
        zxid: u64,
        time_ms: i64,
    ) -> Result<Written<String>, TreeError> {
        let acl = Arc::clone(&self.open_acl);
        self.create_node(path, data, acl, mode, owner, zxid, time_ms)
    }

    /// [`create`](Self::create) with an access control list other than the
    /// open one. The list is stored as given: fix it up first
    /// ([`fixup_acl`](crate::fixup_acl)); checking the caller's permission
    /// on the parent is the caller's job too ([`check_acl`](crate::check_acl)).
    ///
    /// # Errors
    /// Those of [`create`](Self::create).
    #[allow(clippy::too_many_arguments)]
    pub fn create_with_acl(
        &mut self,
        path: &str,
        data: Bytes,
        acl: &[Acl],
        mode: CreateMode,
        owner: u64,
        zxid: u64,
        time_ms: i64,
    ) -> Result<Written<String>, TreeError> {
        let acl = if *acl == *self.open_acl {
            Arc::clone(&self.open_acl)
        } else {
            Arc::from(acl)
        };
        self.create_node(path, data, acl, mode, owner, zxid, time_ms)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        data: Bytes,
        acl: Arc<[Acl]>,
        mode: CreateMode,
        owner: u64,
        zxid: u64,
        time_ms: i64,
    ) -> Result<Written<String>, TreeError> {
        let CreatePlan {
            path,
            ephemeral_owner,
            kind,
        } = self.plan_create(path, mode, owner, None)?;
        let (parent_path, name_start) = split_parent(&path);
        let parent = self.node_mut(parent_path);
        let undo = Undo::Created {
            path: path.clone(),
            parent_cversion: parent.stat.cversion,
            parent_pzxid: parent.stat.pzxid,
        };
        parent.children.insert(path[name_start..].to_owned());
        parent.stat.cversion = parent.stat.cversion.saturating_add(1);
        parent.stat.pzxid = parent.stat.pzxid.max(zxid);
        self.data_bytes += data.len();
        let node = Node::new(data, kind, ephemeral_owner, acl, zxid, time_ms);
        self.index(&path, &node);
        self.nodes.insert(path.clone(), node);
        self.record(undo);
        self.advance(zxid);
        let changes = vec![
            Change::new(EventKind::NodeCreated, &path),
            Change::new(EventKind::NodeChildrenChanged, parent_path),
        ];
        Ok(Written {
            value: path,
            changes,
        })
    }

    /// Deletes the node at `path` if its version is `expected_version`
    /// (`None` or `Some(-1)`, ZooKeeper's wire value, match any version).
    ///
    /// Reports [`EventKind::NodeDeleted`] on the path, then
    /// [`EventKind::NodeChildrenChanged`] on the parent. The parent's
    /// `cversion` rises by one and its `pzxid` becomes `zxid`.
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`], [`TreeError::RootDelete`],
    /// [`TreeError::NoNode`], [`TreeError::BadVersion`],
    /// [`TreeError::NotEmpty`].
    pub fn delete(
        &mut self,
        path: &str,
        expected_version: Option<i32>,
        zxid: u64,
    ) -> Result<Written<()>, TreeError> {
        self.check_delete_structure(path, expected_version)?;
        let mut changes = Vec::with_capacity(2);
        self.remove_leaf(path, zxid, &mut changes);
        self.advance(zxid);
        Ok(Written { value: (), changes })
    }

    /// Replaces the data of the node at `path` if its version is
    /// `expected_version` (`None` or `Some(-1)` match any), and returns the new
    /// stat: version + 1, `mzxid` = `zxid`, `mtime` = `time_ms`.
    ///
    /// Reports [`EventKind::NodeDataChanged`] on the path. No limit is
    /// checked: see [`check_set`](Self::check_set).
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`], [`TreeError::NoNode`],
    /// [`TreeError::BadVersion`].
    pub fn set_data(
        &mut self,
        path: &str,
        data: Bytes,
        expected_version: Option<i32>,
        zxid: u64,
        time_ms: i64,
    ) -> Result<Written<Stat>, TreeError> {
        validate_path(path)?;
        let node = self
            .nodes
            .get_mut(path)
            .ok_or_else(|| TreeError::NoNode { path: path.into() })?;
        check_version(path, expected_version, node.stat.version)?;
        let undo = self.journal.is_some().then(|| Undo::DataSet {
            path: path.to_owned(),
            data: node.data.clone(),
            stat: node.stat,
        });
        self.data_bytes = self.data_bytes - node.data.len() + data.len();
        node.data = data;
        node.stat.version = node.stat.version.wrapping_add(1);
        node.stat.mzxid = zxid;
        node.stat.mtime = time_ms;
        let stat = node.stat();
        if let Some(undo) = undo {
            self.record(undo);
        }
        self.advance(zxid);
        Ok(Written {
            value: stat,
            changes: vec![Change::new(EventKind::NodeDataChanged, path)],
        })
    }

    /// Replaces the access control list of the node at `path` if its ACL
    /// version (`aversion`) is `expected_version` (`None` or `Some(-1)` match
    /// any), and returns the new stat: `aversion` + 1. Fires no watch, and
    /// changes no other stat field (as ZooKeeper's setACL). The list is
    /// stored as given: fix it up first ([`fixup_acl`](crate::fixup_acl)).
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`], [`TreeError::NoNode`],
    /// [`TreeError::BadVersion`] (against the ACL version).
    pub fn set_acl(
        &mut self,
        path: &str,
        acl: &[Acl],
        expected_version: Option<i32>,
        zxid: u64,
    ) -> Result<Written<Stat>, TreeError> {
        validate_path(path)?;
        let shared = if *acl == *self.open_acl {
            Arc::clone(&self.open_acl)
        } else {
            Arc::from(acl)
        };
        let node = self
            .nodes
            .get_mut(path)
            .ok_or_else(|| TreeError::NoNode { path: path.into() })?;
        check_version(path, expected_version, node.stat.aversion)?;
        node.acl = shared;
        node.stat.aversion = node.stat.aversion.wrapping_add(1);
        let stat = node.stat();
        self.advance(zxid);
        Ok(Written {
            value: stat,
            changes: Vec::new(),
        })
    }

    /// Whether the node at `path` exists with this data version: the
    /// `check` operation of a multi.
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`], [`TreeError::NoNode`],
    /// [`TreeError::BadVersion`].
    pub fn check_version(
        &self,
        path: &str,
        expected_version: Option<i32>,
    ) -> Result<(), TreeError> {
        validate_path(path)?;
        let node = self.node(path)?;
        check_version(path, expected_version, node.stat.version)
    }

    /// Deletes a container or TTL node that is due at `now_ms` (see
    /// [`expired_nodes`](Self::expired_nodes)), as ZooKeeper's
    /// `deleteContainer`; reports the changes of a delete.
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`], [`TreeError::NoNode`],
    /// [`TreeError::NotEmpty`], [`TreeError::NotReapable`] (neither a
    /// container nor a TTL node, or not due yet).
    pub fn delete_reapable(
        &mut self,
        path: &str,
        now_ms: i64,
        zxid: u64,
    ) -> Result<Written<()>, TreeError> {
        validate_path(path)?;
        let node = self.node(path)?;
        if !node.children.is_empty() {
            return Err(TreeError::NotEmpty {
                path: path.into(),
                children: node.children.len(),
            });
        }
        if !node.is_due(now_ms) {
            return Err(TreeError::NotReapable { path: path.into() });
        }
        let mut changes = Vec::with_capacity(2);
        self.remove_leaf(path, zxid, &mut changes);
        self.advance(zxid);
        Ok(Written { value: (), changes })
    }

    /// Deletes every ephemeral node `owner` holds, all under one `zxid` (as
    /// ZooKeeper's closeSession), and returns their paths in sorted order.
    /// Used when a session closes or expires; an owner with no ephemerals
    /// changes nothing.
    ///
    /// Reports the changes of each delete (as [`delete`](Self::delete)), in
    /// sorted path order.
    pub fn remove_session(&mut self, owner: u64, zxid: u64) -> Written<Vec<String>> {
        let Some(paths) = self.ephemerals.remove(&owner) else {
            return Written {
                value: Vec::new(),
                changes: Vec::new(),
            };
        };
        let mut changes = Vec::with_capacity(2 * paths.len());
        for path in &paths {
            self.remove_leaf(path, zxid, &mut changes);
        }
        self.advance(zxid);
        Written {
            value: paths.into_iter().collect(),
            changes,
        }
    }

    /// Resolves and checks a create: the tree's structure always, and
    /// `limits` (with the data's length) when given, in the order
    /// [`check_create`](Self::check_create) documents.
    fn plan_create(
        &self,
        path: &str,
        mode: CreateMode,
        owner: u64,
        limits: Option<(&TreeLimits, usize)>,
    ) -> Result<CreatePlan, TreeError> {
        if let Some((limits, _)) = limits {
            limits.check_path_len(path.len())?;
        }
        if mode.is_sequential() {
            validate_sequential_prefix(path)?;
        } else {
            validate_path(path)?;
            if path == "/" {
                return Err(TreeError::NodeExists { path: path.into() });
            }
        }
        if let Some((limits, data_len)) = limits {
            limits.check_data(path, data_len)?;
        }
        let kind = mode.kind();
        if let NodeKind::Ttl { ttl_ms } = kind {
            if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
                return Err(TreeError::BadTtl { ttl_ms });
            }
        }
        let ephemeral_owner = if mode.is_ephemeral() {
            if owner == 0 {
                return Err(TreeError::ZeroOwner { path: path.into() });
            }
            owner
        } else {
            0
        };
        let (parent_path, _) = split_parent(path);
        let parent = self.node(parent_path)?;
        if parent.is_ephemeral() {
            return Err(TreeError::NoChildrenForEphemerals {
                path: path.into(),
                parent: parent_path.into(),
            });
        }
        let path = if mode.is_sequential() {
            let cversion = parent.stat.cversion;
            if cversion == i32::MAX {
                return Err(TreeError::SequenceExhausted {
                    parent: parent_path.into(),
                    cversion,
                });
            }
            if let Some((limits, _)) = limits {
                limits.check_path_len(path.len() + SEQUENCE_DIGITS)?;
            }
            format!("{path}{cversion:0width$}", width = SEQUENCE_DIGITS)
        } else {
            path.to_owned()
        };
        if self.nodes.contains_key(&path) {
            return Err(TreeError::NodeExists { path });
        }
        if let Some((limits, data_len)) = limits {
            if ephemeral_owner != 0 {
                let max = limits.max_ephemerals_per_session;
                if self.ephemeral_count(ephemeral_owner) >= max {
                    return Err(TreeError::TooManyEphemerals {
                        owner: ephemeral_owner,
                        max,
                    });
                }
            }
            let max = limits.max_nodes;
            if self.nodes.len() >= max {
                return Err(TreeError::TooManyNodes { max });
            }
            self.check_quota(data_len, data_len, limits)?;
        }
        Ok(CreatePlan {
            path,
            ephemeral_owner,
            kind,
        })
    }

    /// Refuses a write of `size` bytes that grows the tree's data by `growth`
    /// past the quota.
    fn check_quota(
        &self,
        size: usize,
        growth: usize,
        limits: &TreeLimits,
    ) -> Result<(), TreeError> {
        let max = limits.max_total_data_bytes;
        let total = self.data_bytes;
        if growth > 0 && total.saturating_add(growth) > max {
            return Err(TreeError::DataQuotaExceeded { size, total, max });
        }
        Ok(())
    }

    fn check_delete_structure(
        &self,
        path: &str,
        expected_version: Option<i32>,
    ) -> Result<(), TreeError> {
        validate_path(path)?;
        if path == "/" {
            return Err(TreeError::RootDelete);
        }
        let node = self.node(path)?;
        check_version(path, expected_version, node.stat.version)?;
        if !node.children.is_empty() {
            return Err(TreeError::NotEmpty {
                path: path.into(),
                children: node.children.len(),
            });
        }
        Ok(())
    }

    /// Removes a node known to exist and to have no children, with its entry
    /// in its owner's index and its parent's child list, and reports it.
    fn remove_leaf(&mut self, path: &str, zxid: u64, changes: &mut Vec<Change>) {
        let Some(node) = self.nodes.remove(path) else {
            return;
        };
        self.data_bytes -= node.data.len();
        self.unindex(path, &node);
        let (parent_path, name_start) = split_parent(path);
        let parent = self.node_mut(parent_path);
        let (parent_cversion, parent_pzxid) = (parent.stat.cversion, parent.stat.pzxid);
        parent.children.remove(&path[name_start..]);
        parent.stat.cversion = parent.stat.cversion.saturating_add(1);
        parent.stat.pzxid = parent.stat.pzxid.max(zxid);
        changes.push(Change::new(EventKind::NodeDeleted, path));
        changes.push(Change::new(EventKind::NodeChildrenChanged, parent_path));
        if self.journal.is_some() {
            self.record(Undo::Deleted {
                path: path.to_owned(),
                node,
                parent_cversion,
                parent_pzxid,
            });
        }
    }

    /// Adds a node about to be inserted to the indexes of its kind.
    fn index(&mut self, path: &str, node: &Node) {
        match node.kind {
            NodeKind::Ephemeral => {
                self.ephemerals
                    .entry(node.stat.ephemeral_owner)
                    .or_default()
                    .insert(path.to_owned());
            }
            NodeKind::Container | NodeKind::Ttl { .. } => {
                self.reapable.insert(path.to_owned());
            }
            NodeKind::Persistent => {}
        }
    }

    /// Removes a node just taken out from the indexes of its kind.
    fn unindex(&mut self, path: &str, node: &Node) {
        match node.kind {
            NodeKind::Ephemeral => {
                let owner = node.stat.ephemeral_owner;
                if let Some(paths) = self.ephemerals.get_mut(&owner) {
                    paths.remove(path);
                    if paths.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
            NodeKind::Container | NodeKind::Ttl { .. } => {
                self.reapable.remove(path);
            }
            NodeKind::Persistent => {}
        }
    }

    fn record(&mut self, undo: Undo) {
        if let Some(journal) = &mut self.journal {
            journal.undo.push(undo);
        }
    }

    /// Starts an atomic group of writes: until [`commit`](Self::commit) or
    /// [`rollback`](Self::rollback), every write records how to undo it.
    /// Groups do not nest: a second `begin` keeps the first group.
    pub(crate) fn begin(&mut self) {
        if self.journal.is_none() {
            self.journal = Some(Journal {
                undo: Vec::new(),
                last_zxid: self.last_zxid,
                data_bytes: self.data_bytes,
            });
        }
    }

    /// Keeps the writes of the group.
    pub(crate) fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes the writes of the group, newest first: the tree is as it was
    /// at [`begin`](Self::begin), indexes and counters included.
    pub(crate) fn rollback(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for undo in journal.undo.into_iter().rev() {
            match undo {
                Undo::Created {
                    path,
                    parent_cversion,
                    parent_pzxid,
                } => {
                    if let Some(node) = self.nodes.remove(&path) {
                        self.unindex(&path, &node);
                    }
                    let (parent_path, name_start) = split_parent(&path);
                    let parent = self.node_mut(parent_path);
                    parent.children.remove(&path[name_start..]);
                    parent.stat.cversion = parent_cversion;
                    parent.stat.pzxid = parent_pzxid;
                }
                Undo::Deleted {
                    path,
                    node,
                    parent_cversion,
                    parent_pzxid,
                } => {
                    let (parent_path, name_start) = split_parent(&path);
                    let parent = self.node_mut(parent_path);
                    parent.children.insert(path[name_start..].to_owned());
                    parent.stat.cversion = parent_cversion;
                    parent.stat.pzxid = parent_pzxid;
                    self.index(&path, &node);
                    self.nodes.insert(path, node);
                }
                Undo::DataSet { path, data, stat } => {
                    let node = self.node_mut(&path);
                    node.data = data;
                    node.stat = stat;
                }
            }
        }
        self.last_zxid = journal.last_zxid;
        self.data_bytes = journal.data_bytes;
    }

    fn advance(&mut self, zxid: u64) {
        self.last_zxid = self.last_zxid.max(zxid);
    }

    fn node(&self, path: &str) -> Result<&Node, TreeError> {
        self.nodes
            .get(path)
            .ok_or_else(|| TreeError::NoNode { path: path.into() })
    }

    fn node_mut(&mut self, path: &str) -> &mut Node {
        self.nodes
            .get_mut(path)
            .expect("invariant: every node but the root has its parent in the tree")
    }
}

/// The path of child `name` of `parent`.
fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
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

fn check_version(path: &str, expected: Option<i32>, actual: i32) -> Result<(), TreeError> {
    match expected {
        Some(expected) if expected != -1 && expected != actual => Err(TreeError::BadVersion {
            path: path.into(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}
