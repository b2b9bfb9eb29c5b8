//! Why a snapshot could not be restored.
//!
//! [`Replica::restore`](crate::Replica::restore) and
//! [`DataTree::restore`](crate::DataTree::restore) are the inverses of the
//! `export`s: they rebuild the state, and the indexes and totals derived from
//! it, from a [`ReplicaSnapshot`](crate::ReplicaSnapshot) or a list of
//! [`NodeSnapshot`](crate::NodeSnapshot)s. A snapshot read from a file or
//! received from a peer is not trusted: anything a corrupt or hand-edited
//! snapshot could break (a structure `apply` relies on, a derived field that
//! disagrees, an id that could be minted twice) is refused with a
//! [`RestoreError`] naming the offending path or id. The checks run in a fixed
//! order over sorted paths and ids, so the same snapshot always gives the
//! same error.

use thiserror::Error;

use crate::{PathError, SessionId};

/// Why a snapshot was refused by [`Replica::restore`](crate::Replica::restore)
/// or [`DataTree::restore`](crate::DataTree::restore). Every variant names the
/// offending path or id; nothing is restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RestoreError {
    /// A node's path breaks ZooKeeper's path rules.
    #[error("snapshot node path is invalid: {0}")]
    InvalidPath(#[from] PathError),
    /// Two nodes have the same path.
    #[error("snapshot has node {path} twice")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// There is no root node `/`.
    #[error("snapshot has no root node /")]
    MissingRoot,
    /// The root is ephemeral; it must be persistent (it can never be deleted).
    #[error("snapshot's root node / is ephemeral (owner {owner})")]
    EphemeralRoot {
        /// Its owner.
        owner: SessionId,
    },
    /// A node's `ephemeral_owner` does not fit its kind (a persistent node
    /// with an owner, an ephemeral without one, a container or TTL node
    /// without ZooKeeper's encoding of its kind), or a TTL is out of range.
    #[error(
        "snapshot node {path} has ephemeral owner {owner:#x}, which does not fit its kind {kind}"
    )]
    OwnerMismatch {
        /// The node.
        path: String,
        /// Its recorded owner.
        owner: u64,
        /// Its recorded kind.
        kind: String,
    },
    /// A node's parent is not in the snapshot.
    #[error("snapshot node {path} has no parent node {parent}")]
    MissingParent {
        /// The node.
        path: String,
        /// Its missing parent.
        parent: String,
    },
    /// An ephemeral node has a child; ephemerals have none.
    #[error("snapshot node {path} is ephemeral but has the child {child}")]
    EphemeralWithChildren {
        /// The ephemeral node.
        path: String,
        /// One of its children (the first in path order).
        child: String,
    },
    /// A node exists whose parent's children list does not name it.
    #[error("snapshot node {child} is missing from the children of {parent}")]
    ChildNotListed {
        /// The parent.
        parent: String,
        /// The node (its path) not listed.
        child: String,
    },
    /// A children list names a node that does not exist (or a name that is
    /// not a single path component).
    #[error("snapshot node {parent} lists a child {name:?} that is not in the snapshot")]
    UnknownChild {
        /// The parent.
        parent: String,
        /// The name listed.
        name: String,
    },
    /// A children list names the same child twice.
    #[error("snapshot node {parent} lists the child {name:?} twice")]
    DuplicateChild {
        /// The parent.
        parent: String,
        /// The name listed twice.
        name: String,
    },
    /// A node's `stat.num_children` is not the number of its children.
    #[error("snapshot node {path} has num_children {recorded}, but {actual} children")]
    NumChildrenMismatch {
        /// The node.
        path: String,
        /// Its `stat.num_children`.
        recorded: u32,
        /// The number of its children (saturating at `u32::MAX`).
        actual: u32,
    },
    /// A node's `stat.data_length` is not the length of its data.
    #[error("snapshot node {path} has data_length {recorded}, but {actual} bytes of data")]
    DataLengthMismatch {
        /// The node.
        path: String,
        /// Its `stat.data_length`.
        recorded: u32,
        /// The length of its data (saturating at `u32::MAX`).
        actual: u32,
    },
    /// An ephemeral node's owner is not a session of the snapshot.
    #[error("snapshot node {path} is owned by session {owner}, which is not held")]
    OwnerNotHeld {
        /// The ephemeral node (the first in path order of its owner's).
        path: String,
        /// The owner.
        owner: SessionId,
    },
    /// Two sessions have the same id.
    #[error("snapshot has session {id} twice")]
    DuplicateSession {
        /// The id.
        id: SessionId,
    },
    /// A session's id is above the id high-water mark, so it could be minted
    /// again.
    #[error(
        "snapshot session {id} is above the id high-water mark ({})",
        .high_water.map_or_else(|| "none".to_owned(), |mark| mark.to_string())
    )]
    SessionAboveHighWater {
        /// The session.
        id: SessionId,
        /// The high-water mark of the snapshot.
        high_water: Option<SessionId>,
    },
    /// A snapshot without a genesis holds a session or a high-water mark: a
    /// replica can create sessions only after its genesis.
    #[error("snapshot without a genesis has minted session id {id}")]
    SessionWithoutGenesis {
        /// The first session held, or else the high-water mark.
        id: SessionId,
    },
    /// The snapshot's zxid is below a zxid recorded in a node's stat
    /// (`czxid`, `mzxid` or `pzxid`).
    #[error("snapshot zxid {zxid} is below zxid {node_zxid} of node {path}")]
    ZxidBehindNode {
        /// The node (the first in path order).
        path: String,
        /// The highest of its `czxid`, `mzxid` and `pzxid`.
        node_zxid: u64,
        /// The snapshot's zxid.
        zxid: u64,
    },
}
