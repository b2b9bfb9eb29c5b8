//! The one error type of data tree operations.

use thiserror::Error;

use crate::PathError;

/// Why a tree operation (or its check against [`TreeLimits`](super::TreeLimits))
/// was refused. Every variant says which path or value was wrong; the tree is
/// unchanged when an operation fails.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TreeError {
    /// The node does not exist. For a create, this names the missing *parent*.
    #[error("no node at {path}")]
    NoNode {
        /// The missing node.
        path: String,
    },
    /// A create named a node that already exists.
    #[error("node {path} already exists")]
    NodeExists {
        /// The existing node.
        path: String,
    },
    /// A conditional delete or set named a version the node does not have.
    #[error("node {path} has version {actual}, not the expected {expected}")]
    BadVersion {
        /// The node.
        path: String,
        /// The version the caller expected.
        expected: i32,
        /// The node's version.
        actual: i32,
    },
    /// A delete named a node that still has children.
    #[error("node {path} cannot be deleted: it has {children} children")]
    NotEmpty {
        /// The node.
        path: String,
        /// How many children it has.
        children: usize,
    },
    /// A create named a parent that is ephemeral; ephemerals have no children.
    #[error("cannot create {path}: its parent {parent} is ephemeral")]
    NoChildrenForEphemerals {
        /// The refused path.
        path: String,
        /// Its ephemeral parent.
        parent: String,
    },
    /// The path breaks ZooKeeper's path rules.
    #[error("invalid path: {0}")]
    InvalidPath(#[from] PathError),
    /// A delete named the root, which always exists.
    #[error("the root node / cannot be deleted")]
    RootDelete,
    /// The data is over [`TreeLimits::max_data_bytes`](super::TreeLimits::max_data_bytes).
    #[error("data for {path} is {size} bytes, over the limit of {max}")]
    DataTooLarge {
        /// The node written.
        path: String,
        /// The data's size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The path is over [`TreeLimits::max_path_bytes`](super::TreeLimits::max_path_bytes).
    /// The path itself is not repeated: it may be huge.
    #[error("path of {len} bytes is over the limit of {max}")]
    PathTooLong {
        /// The path's length in bytes (with the sequential suffix, if any).
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The session already owns
    /// [`TreeLimits::max_ephemerals_per_session`](super::TreeLimits::max_ephemerals_per_session)
    /// ephemeral nodes.
    #[error("session 0x{owner:016x} already owns {max} ephemeral nodes, the limit")]
    TooManyEphemerals {
        /// The session.
        owner: u64,
        /// The limit.
        max: usize,
    },
    /// An ephemeral create named owner 0, which means "persistent".
    #[error("ephemeral node {path} needs a nonzero owner session id")]
    ZeroOwner {
        /// The refused path.
        path: String,
    },
    /// The parent's change counter, which numbers sequential children, has
    /// reached its maximum (`i32::MAX`, ZooKeeper's width); ZooKeeper would wrap
    /// to negative numbers and reuse names.
    #[error("sequential counter of {parent} is exhausted at {cversion}")]
    SequenceExhausted {
        /// The parent whose counter is exhausted.
        parent: String,
        /// The counter's value.
        cversion: i32,
    },
    /// A TTL outside 1..=[`MAX_TTL_MS`](super::MAX_TTL_MS) milliseconds.
    #[error("a node's TTL must be 1 to 1099511627775 ms, not {ttl_ms}")]
    BadTtl {
        /// The TTL given.
        ttl_ms: u64,
    },
    /// A container or TTL node delete named a node that is neither, or is
    /// not due yet.
    #[error("{path} is not a container or TTL node that is due for deletion")]
    NotReapable {
        /// The node.
        path: String,
    },
    /// The tree already holds
    /// [`TreeLimits::max_nodes`](super::TreeLimits::max_nodes) nodes.
    #[error("the tree already holds {max} nodes, the limit")]
    TooManyNodes {
        /// The limit, the root included.
        max: usize,
    },
    /// The write would take the tree's data over
    /// [`TreeLimits::max_total_data_bytes`](super::TreeLimits::max_total_data_bytes).
    #[error(
        "data of {size} bytes would take the tree's {total} bytes of data over the quota of {max}"
    )]
    DataQuotaExceeded {
        /// The size of the data written.
        size: usize,
        /// The tree's data bytes before the write.
        total: usize,
        /// The quota in bytes.
        max: usize,
    },
}

impl TreeError {
    /// Whether this is a limit of [`TreeLimits`](super::TreeLimits) (path or
    /// data size, ephemerals, nodes, data quota) rather than a rule of the
    /// tree's structure. Only the tree's `check_*` methods return limit errors;
    /// its writes never do.
    #[must_use]
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::DataTooLarge { .. }
                | Self::PathTooLong { .. }
                | Self::TooManyEphemerals { .. }
                | Self::TooManyNodes { .. }
                | Self::DataQuotaExceeded { .. }
        )
    }
}
