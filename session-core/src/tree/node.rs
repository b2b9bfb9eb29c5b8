//! A node of the tree, the [`Stat`] a client sees of it, and its snapshot form.

use std::collections::BTreeSet;

use bytes::Bytes;

/// A node's metadata, with ZooKeeper's `Stat` fields (without ACL version).
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
    /// The owning session's raw id for an ephemeral node, 0 for a persistent one.
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
}

/// A node as stored: data, stat fields and child names (not paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) data: Bytes,
    /// `data_length` and `num_children` here are stale; [`Node::stat`] fills them.
    pub(super) stat: Stat,
    pub(super) children: BTreeSet<String>,
}

impl Node {
    pub(super) fn new(data: Bytes, ephemeral_owner: u64, zxid: u64, time_ms: i64) -> Self {
        Self {
            data,
            stat: Stat {
                czxid: zxid,
                mzxid: zxid,
                pzxid: zxid,
                ctime: time_ms,
                mtime: time_ms,
                version: 0,
                cversion: 0,
                ephemeral_owner,
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

    pub(super) fn is_ephemeral(&self) -> bool {
        self.stat.ephemeral_owner != 0
    }
}

pub(super) fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
