//! A node of the tree, the [`Stat`] a client sees of it, and its snapshot form.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::Acl;

/// The `ephemeral_owner` ZooKeeper gives a container node.
pub const CONTAINER_OWNER: u64 = 0x8000_0000_0000_0000;
/// The top byte of the `ephemeral_owner` ZooKeeper gives a TTL node; its low
/// 40 bits are the TTL in milliseconds.
pub const TTL_OWNER_PREFIX: u64 = 0xFF00_0000_0000_0000;
/// The longest TTL a node can have: 40 bits of milliseconds (ZooKeeper's
/// `EphemeralType.MAX_TTL`, about 34.8 years).
pub const MAX_TTL_MS: u64 = 0xFF_FFFF_FFFF;

/// What kind of node it is, beyond its data: how it goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum NodeKind {
    /// Lives until deleted.
    #[default]
    Persistent,
    /// Deleted with its owner session; [`Stat::ephemeral_owner`] is the
    /// session.
    Ephemeral,
    /// Deleted by the server once its last child is gone (after it had at
    /// least one); [`Stat::ephemeral_owner`] is [`CONTAINER_OWNER`].
    Container,
    /// Deleted by the server once it has no children and was not modified
    /// for `ttl_ms`; [`Stat::ephemeral_owner`] is
    /// [`TTL_OWNER_PREFIX`]` | ttl_ms`.
    Ttl {
        /// Milliseconds, 1..=[`MAX_TTL_MS`].
        ttl_ms: u64,
    },
}

impl NodeKind {
    /// The [`Stat::ephemeral_owner`] a node of this kind has, for `session`
    /// as its creator: ZooKeeper's encoding.
    #[must_use]
    pub const fn ephemeral_owner(self, session: u64) -> u64 {
        match self {
            Self::Persistent => 0,
            Self::Ephemeral => session,
            Self::Container => CONTAINER_OWNER,
            Self::Ttl { ttl_ms } => TTL_OWNER_PREFIX | (ttl_ms & MAX_TTL_MS),
        }
    }
}

/// A node's metadata, with ZooKeeper's `Stat` fields.
///
/// Zxids are the caller's transaction ids; times are wall-clock milliseconds
/// given by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stat {
    /// Zxid of the create.
    pub czxid: u64,
    /// Zxid of the last data change (the create's zxid until the first set).
    pub mzxid: u64,
    /// Zxid of the last change to the children (create or delete of a child),
    /// or of the node's create.
    pub pzxid: u64,
    /// Wall-clock milliseconds of the create.
    pub ctime: i64,
    /// Wall-clock milliseconds of the last data change.
    pub mtime: i64,
    /// Number of data changes; wraps after `i32::MAX` as ZooKeeper's does.
    pub version: i32,
    /// Number of child creates and deletes, saturating at `i32::MAX`; it also
    /// numbers sequential children.
    pub cversion: i32,
    /// Number of ACL changes; wraps as `version` does.
    pub aversion: i32,
    /// The owning session's raw id for an ephemeral node, 0 for a persistent
    /// one, [`CONTAINER_OWNER`] for a container and [`TTL_OWNER_PREFIX`]` |
    /// ttl` for a TTL node (ZooKeeper's encoding; see [`NodeKind`]).
    pub ephemeral_owner: u64,
    /// Length of the data in bytes.
    pub data_length: u32,
    /// Number of children.
    pub num_children: u32,
}

/// One node as exported by [`DataTree::export`](super::DataTree::export):
/// everything that is replicated of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeSnapshot {
    /// The node's path.
    pub path: String,
    /// Its data.
    pub data: Bytes,
    /// Its stat, with `data_length` and `num_children` filled in.
    pub stat: Stat,
    /// The names (not paths) of its children, sorted.
    pub children: Vec<String>,
    /// Its access control list.
    pub acl: Vec<Acl>,
    /// How it goes away.
    pub kind: NodeKind,
}

/// A node as stored: data, stat fields and child names (not paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) data: Bytes,
    /// `data_length` and `num_children` here are stale; [`Node::stat`] fills them.
    pub(super) stat: Stat,
    pub(super) children: BTreeSet<String>,
    /// Shared between nodes with the same list (most have the open one).
    pub(super) acl: Arc<[Acl]>,
    pub(super) kind: NodeKind,
}

impl Node {
    pub(super) fn new(
        data: Bytes,
        kind: NodeKind,
        session: u64,
        acl: Arc<[Acl]>,
        zxid: u64,
        time_ms: i64,
    ) -> Self {
        Self {
            acl,
            kind,
            data,
            stat: Stat {
                czxid: zxid,
                mzxid: zxid,
                pzxid: zxid,
                ctime: time_ms,
                mtime: time_ms,
                version: 0,
                cversion: 0,
                aversion: 0,
                ephemeral_owner: kind.ephemeral_owner(session),
                data_length: 0,
                num_children: 0,
            },
            children: BTreeSet::new(),
        }
    }

    pub(super) fn stat(&self) -> Stat {
        Stat {
            data_length: saturating_u32(self.data.len()),
            num_children: saturating_u32(self.children.len()),
            ..self.stat
        }
    }

    /// Whether a container or TTL node is due to be deleted at `now_ms`.
    pub(super) fn is_due(&self, now_ms: i64) -> bool {
        if !self.children.is_empty() {
            return false;
        }
        match self.kind {
            NodeKind::Container => self.stat.cversion > 0,
            NodeKind::Ttl { ttl_ms } => {
                let age = now_ms.saturating_sub(self.stat.mtime);
                u64::try_from(age).is_ok_and(|age| age > ttl_ms)
            }
            NodeKind::Persistent | NodeKind::Ephemeral => false,
        }
    }

    pub(super) fn is_ephemeral(&self) -> bool {
        self.kind == NodeKind::Ephemeral
    }
}

pub(super) fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
