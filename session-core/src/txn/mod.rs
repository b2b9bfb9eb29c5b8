//! The transaction model: protocol-neutral write operations, `prepare` that
//! turns one into a transaction, and a deterministic `apply`.
//!
//! This module owns the replicated state, [`Replica`]: the [`DataTree`], the
//! session table (id, timeout, owning server), the password secret, the id
//! high-water mark and the zxid of the last applied transaction. A write
//! takes three steps, like ZooKeeper's PrepRequestProcessor and
//! FinalRequestProcessor:
//!
//! 1. [`prepare`]`(replica, op, ctx)` checks an [`Op`] against the current
//!    state and the [`Context`] (limits, timeout policy, this server, the
//!    wall clock) and resolves everything replicas must agree on into a
//!    [`Txn`]: the negotiated timeout, the floor of a new session id, the
//!    owning server, ctime and mtime. Everything non-deterministic enters
//!    here, and only here.
//! 2. The engine (a single node, or a replicated log) orders the transaction
//!    and assigns its zxid.
//! 3. [`Replica::apply`]`(zxid, &txn)` on every replica: deterministic. The
//!    same transactions in the same order give the same state, results and
//!    changes on every replica, whatever was prepared where and when.
//!
//! Apply re-checks everything it depends on (session held, owner, the tree's
//! structure), because transactions prepared concurrently may conflict. It
//! does not check [`TreeLimits`]: limits are configuration, which replicas need
//! not share. So transactions prepared concurrently may together overshoot a
//! limit by at most the number in flight.
//!
//! # Genesis
//!
//! Passwords are derived from a secret, and ids are minted from a first id;
//! every replica must have the same two, and a replica rebuilt by replaying
//! a log from an empty state must get them back. So a durable or replicated
//! state starts with [`Replica::uninitialized`], and the first transaction of
//! its log is a [`Txn::Genesis`] carrying the secret and the first id (the
//! server builds it directly; [`prepare`] never does). Before it, a replica
//! creates no session ([`TxnError::NotInitialized`]), knows no password and
//! answers every reattach [`ReattachError::Unknown`]; a second genesis is
//! [`TxnError::AlreadyInitialized`]. A server that keeps its state only in
//! memory skips all this with [`Replica::new`], which is initialized from the
//! start. Either way the pair is a [`Genesis`], in [`ReplicaSnapshot::genesis`].
//!
//! # Snapshots
//!
//! [`Replica::export`] gives everything replicated as a [`ReplicaSnapshot`],
//! and [`Replica::restore`] rebuilds a replica from one, checking it first
//! (see [`RestoreError`]): a restored replica applies the following
//! transactions exactly as the one exported did. With the `serde` feature,
//! [`Txn`] and [`ReplicaSnapshot`] (and the types in them) implement
//! `Serialize` and `Deserialize`, for the log and for snapshot files.

mod restore;

#[cfg(test)]
mod multi_acl_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::{
    Acl, AclError, Change, CreateMode, DataTree, Id, NodeSnapshot, PasswordSecret, ReattachError,
    ServerId, SessionId, SessionPassword, Stat, TimeoutPolicy, TreeError, TreeLimits, check_acl,
    fixup_acl, initial_session_id, open_to_anyone, perms, validate_path,
    validate_sequential_prefix,
};

#[cfg(doc)]
use crate::RestoreError;

/// Mask of the 56 bits below a session id's server byte: the part a server
/// counts in (as in the `id` module).
const LOW_MASK: u64 = (1 << 56) - 1;

/// What a replica's genesis fixes, and every replica of a group shares: the
/// password secret and the first id it could mint.
///
/// A replica gets it from [`Txn::Genesis`], or at once from [`Replica::new`];
/// [`ReplicaSnapshot::genesis`] carries it. Its `Debug` output does not show
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Genesis {
    /// The secret session passwords are derived from.
    pub secret: PasswordSecret,
    /// The first id the replica could mint: ids of its server byte below it,
    /// and ids of other server bytes, are [`ReattachError::Unknown`] when not
    /// held, before any password check (see [`Replica::check_reattach`]). It
    /// is also the floor of the first id minted.
    pub first_id: SessionId,
}

/// A session as replicated: what every replica knows of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionEntry {
    /// The session.
    pub id: SessionId,
    /// Its negotiated timeout.
    pub timeout: Duration,
    /// The server its client is connected to; node writes are accepted only
    /// from it (others get [`TxnError::SessionMoved`]).
    pub owner: ServerId,
}

/// A write operation as a client asks for it, whatever the protocol.
#[derive(Debug, Clone)]
pub enum Op {
    /// Open a session with a requested timeout.
    CreateSession {
        /// The timeout the client asks for; negotiated by the policy.
        requested: Duration,
    },
    /// A client comes back with its session id and password, on this server.
    Reattach {
        /// The session.
        id: SessionId,
        /// Its password, as the client sent it.
        password: SessionPassword,
        /// The timeout the client asks for now; negotiated again.
        requested: Duration,
    },
    /// Close a session: asked by its client, or its expiry.
    CloseSession {
        /// The session.
        id: SessionId,
    },
    /// Create a node.
    Create {
        /// The session asking (the owner of an ephemeral node).
        session: SessionId,
        /// The path, or for a sequential mode the prefix of the name.
        path: String,
        /// The node's data.
        data: Bytes,
        /// Persistent or ephemeral, sequential or not, container or TTL.
        mode: CreateMode,
        /// The access control list asked for (fixed up by [`prepare`] with
        /// the connection's ids: see [`fixup_acl`]).
        acl: Vec<Acl>,
    },
    /// Delete a node.
    Delete {
        /// The session asking.
        session: SessionId,
        /// The node.
        path: String,
        /// The version it must have; `None` or `Some(-1)` match any.
        version: Option<i32>,
    },
    /// Replace a node's data.
    SetData {
        /// The session asking.
        session: SessionId,
        /// The node.
        path: String,
        /// The new data.
        data: Bytes,
        /// The version it must have; `None` or `Some(-1)` match any.
        version: Option<i32>,
    },
    /// Replace a node's access control list.
    SetAcl {
        /// The session asking.
        session: SessionId,
        /// The node.
        path: String,
        /// The list asked for (fixed up by [`prepare`]).
        acl: Vec<Acl>,
        /// The ACL version (`aversion`) it must have; `None` or `Some(-1)`
        /// match any.
        version: Option<i32>,
    },
    /// Several writes and version checks, all applied or none (ZooKeeper's
    /// `multi`).
    Multi {
        /// The session asking.
        session: SessionId,
        /// The operations, in order.
        ops: Vec<MultiOp>,
    },
    /// Delete a container or TTL node that is due (the server's periodic
    /// sweep, ZooKeeper's `deleteContainer`).
    DeleteReapable {
        /// The node.
        path: String,
    },
}

/// One operation of a [`Op::Multi`] (and of its [`Txn::Multi`], where the
/// access control lists are already fixed up).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MultiOp {
    /// Create a node.
    Create {
        /// The path, or the prefix when sequential.
        path: String,
        /// The data.
        data: Bytes,
        /// The mode.
        mode: CreateMode,
        /// The access control list (fixed up in a [`Txn::Multi`], where an
        /// empty list is the open one, as in [`Txn::CreateNode::acl`]).
        acl: Vec<Acl>,
    },
    /// Delete a node.
    Delete {
        /// The node.
        path: String,
        /// The version it must have; `None` or `Some(-1)` match any.
        version: Option<i32>,
    },
    /// Replace a node's data.
    SetData {
        /// The node.
        path: String,
        /// The new data.
        data: Bytes,
        /// The version it must have; `None` or `Some(-1)` match any.
        version: Option<i32>,
    },
    /// Fail the whole multi unless the node exists with this data version.
    Check {
        /// The node.
        path: String,
        /// The version it must have; `None` or `Some(-1)` match any.
        version: Option<i32>,
    },
}

/// A node write or check as apply reads it, borrowed from its transaction.
#[derive(Debug, Clone, Copy)]
enum NodeOp<'a> {
    Create {
        path: &'a str,
        data: &'a Bytes,
        mode: CreateMode,
        acl: &'a [Acl],
    },
    Delete {
        path: &'a str,
        version: Option<i32>,
    },
    SetData {
        path: &'a str,
        data: &'a Bytes,
        version: Option<i32>,
    },
    Check {
        path: &'a str,
        version: Option<i32>,
    },
}

impl MultiOp {
    fn as_node_op(&self) -> NodeOp<'_> {
        match self {
            Self::Create {
                path,
                data,
                mode,
                acl,
            } => NodeOp::Create {
                path,
                data,
                mode: *mode,
                acl,
            },
            Self::Delete { path, version } => NodeOp::Delete {
                path,
                version: *version,
            },
            Self::SetData {
                path,
                data,
                version,
            } => NodeOp::SetData {
                path,
                data,
                version: *version,
            },
            Self::Check { path, version } => NodeOp::Check {
                path,
                version: *version,
            },
        }
    }

    /// The node the operation names.
    #[must_use]
    pub fn path(&self) -> &str {
        match self {
            Self::Create { path, .. }
            | Self::Delete { path, .. }
            | Self::SetData { path, .. }
            | Self::Check { path, .. } => path,
        }
    }
}

/// What [`prepare`] needs beyond the replica: everything non-deterministic,
/// and this server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The server preparing: it becomes the owner of sessions created or
    /// reattached here, and node writes must come from a session's owner.
    pub server: ServerId,
    /// The timeout policy that negotiates requested timeouts.
    pub policy: &'a TimeoutPolicy,
    /// The limits writes are checked against.
    pub limits: &'a TreeLimits,
    /// The wall clock in milliseconds since the Unix epoch: ctime and mtime
    /// of nodes, and the floor of new session ids.
    pub wall_ms: i64,
    /// The ids the asking connection authenticated as (`ip:<address>`, then
    /// one per addAuth): checked against access control lists, and what an
    /// `auth` entry of a list asked for stands for.
    pub auth: &'a [Id],
}

/// A prepared transaction: what is proposed, logged and applied on every
/// replica. It carries every value replicas must agree on.
///
/// With the `serde` feature it implements `Serialize` and `Deserialize` (a
/// [`Txn::Genesis`] carries the password secret: a log that holds it is as
/// secret as the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Txn {
    /// The first transaction of a durable or replicated state: fixes the
    /// password secret and the first id on a replica made with
    /// [`Replica::uninitialized`], so that every replica, and a replica
    /// replaying the log from an empty state, derives the same passwords and
    /// mints the same ids. Applied only once, and only before any session was
    /// created; else [`TxnError::AlreadyInitialized`]. Never produced by
    /// [`prepare`]: the server builds it when it creates the state.
    Genesis {
        /// The password secret.
        secret: PasswordSecret,
        /// The first id replicas could mint (see [`Genesis::first_id`]).
        first_id: SessionId,
    },
    /// Open a session. Apply mints the id `max(min_id, high water + 1)` (the
    /// replica's first id while it has minted none), so sessions prepared
    /// concurrently from the same state never get the same id.
    CreateSession {
        /// The id floor from the preparing server's wall clock
        /// ([`initial_session_id`] of the server and the clock).
        min_id: SessionId,
        /// The negotiated timeout.
        timeout: Duration,
        /// The server the client is connected to.
        owner: ServerId,
    },
    /// A reattach that changes the timeout or the owning server.
    UpdateSession {
        /// The session.
        id: SessionId,
        /// The timeout negotiated again.
        timeout: Duration,
        /// The server the client is now connected to.
        owner: ServerId,
    },
    /// Close a session and delete its ephemerals, all under one zxid.
    CloseSession {
        /// The session.
        id: SessionId,
    },
    /// Create a node.
    ///
    /// For a sequential mode `path` is the prefix, and apply appends the
    /// parent's `cversion` *at apply time*. This is deliberate (ZooKeeper
    /// resolves the name when preparing): two sequential creates prepared
    /// from the same state never collide, and the name is a function of the
    /// log alone.
    CreateNode {
        /// The session asking; it owns an ephemeral node.
        session: SessionId,
        /// The server that prepared it, which must own the session at apply.
        owner: ServerId,
        /// The path, or the prefix when sequential.
        path: String,
        /// The data.
        data: Bytes,
        /// The mode.
        mode: CreateMode,
        /// The access control list, fixed up; empty for the open list (a
        /// fixed-up list is never empty, and most nodes are open: the log
        /// does not repeat `world:anyone` for each).
        acl: Vec<Acl>,
        /// The ids the permission checks of apply use: the connection's,
        /// or none when the lists that mattered at prepare were open to
        /// anyone (see [`prepare`]).
        auth: Vec<Id>,
        /// The ctime and mtime, wall-clock milliseconds.
        time_ms: i64,
    },
    /// Delete a node.
    DeleteNode {
        /// The session asking.
        session: SessionId,
        /// The server that prepared it, which must own the session at apply.
        owner: ServerId,
        /// The node.
        path: String,
        /// The version it must have; `None` or `Some(-1)` match any.
        version: Option<i32>,
        /// The ids for the permission checks (as in [`Txn::CreateNode`]).
        auth: Vec<Id>,
    },
    /// Replace a node's data.
    SetData {
        /// The session asking.
        session: SessionId,
        /// The server that prepared it, which must own the session at apply.
        owner: ServerId,
        /// The node.
        path: String,
        /// The new data.
        data: Bytes,
        /// The version it must have; `None` or `Some(-1)` match any.
        version: Option<i32>,
        /// The ids for the permission checks (as in [`Txn::CreateNode`]).
        auth: Vec<Id>,
        /// The new mtime, wall-clock milliseconds.
        time_ms: i64,
    },
    /// Replace a node's access control list.
    SetAcl {
        /// The session asking.
        session: SessionId,
        /// The server that prepared it, which must own the session at apply.
        owner: ServerId,
        /// The node.
        path: String,
        /// The new list, fixed up.
        acl: Vec<Acl>,
        /// The ACL version it must have; `None` or `Some(-1)` match any.
        version: Option<i32>,
        /// The ids for the permission checks (as in [`Txn::CreateNode`]).
        auth: Vec<Id>,
    },
    /// Several writes and checks, applied in order, all or none: when one
    /// fails, the ones before it are undone and the result is
    /// [`TxnError::Multi`] naming it. The zxid is consumed either way.
    Multi {
        /// The session asking.
        session: SessionId,
        /// The server that prepared it, which must own the session at apply.
        owner: ServerId,
        /// The operations, access control lists fixed up.
        ops: Vec<MultiOp>,
        /// The ids for the permission checks (as in [`Txn::CreateNode`]).
        auth: Vec<Id>,
        /// The ctime and mtime of what it writes, wall-clock milliseconds.
        time_ms: i64,
    },
    /// Delete a container with no children left, or a TTL node with no
    /// children not modified for its TTL, as of `time_ms` (the preparing
    /// server's clock, so every replica decides alike).
    DeleteReapable {
        /// The node.
        path: String,
        /// The wall-clock milliseconds the TTL is measured to.
        time_ms: i64,
    },
}

impl Txn {
    /// The session the transaction acts for or on (`None` for a session not
    /// yet created, and for a genesis).
    #[must_use]
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Self::Genesis { .. } | Self::CreateSession { .. } | Self::DeleteReapable { .. } => None,
            Self::UpdateSession { id, .. } | Self::CloseSession { id } => Some(*id),
            Self::CreateNode { session, .. }
            | Self::DeleteNode { session, .. }
            | Self::SetData { session, .. }
            | Self::SetAcl { session, .. }
            | Self::Multi { session, .. } => Some(*session),
        }
    }
}

/// What a transaction produced when it applied successfully.
///
/// Two outcomes are equal when every field is; passwords are compared
/// byte by byte without an early exit (for tests and replica comparison, not
/// for authentication: use [`PasswordSecret::verify`]).
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A genesis was applied: the replica has its secret and first id.
    Initialized,
    /// A session was opened.
    SessionCreated {
        /// Its id.
        id: SessionId,
        /// Its password, for the connect reply.
        password: SessionPassword,
        /// Its negotiated timeout.
        timeout: Duration,
    },
    /// A session's timeout or owner changed (a reattach).
    SessionUpdated {
        /// The session.
        id: SessionId,
        /// Its timeout now.
        timeout: Duration,
        /// The server that owned it before; if that is another server, its
        /// connection for the session is to be told `SessionMoved`.
        previous_owner: ServerId,
    },
    /// A session was closed.
    SessionClosed {
        /// The session.
        id: SessionId,
        /// Its ephemeral nodes, deleted with it, in sorted order.
        ephemerals: Vec<String>,
    },
    /// A node was created.
    NodeCreated {
        /// Its path (with the sequential suffix, if any).
        path: String,
        /// Its stat.
        stat: Stat,
    },
    /// A node was deleted.
    NodeDeleted,
    /// A node's data was replaced.
    DataSet {
        /// The node's new stat.
        stat: Stat,
    },
    /// A node's access control list was replaced.
    AclSet {
        /// The node's new stat.
        stat: Stat,
    },
    /// A version check of a multi passed.
    Checked,
    /// Every operation of a multi was applied: one outcome each, in order
    /// ([`Outcome::NodeCreated`], [`Outcome::NodeDeleted`],
    /// [`Outcome::DataSet`] or [`Outcome::Checked`]).
    Multi {
        /// The outcomes.
        results: Vec<Outcome>,
    },
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::SessionCreated {
                    id,
                    password,
                    timeout,
                },
                Self::SessionCreated {
                    id: other_id,
                    password: other_password,
                    timeout: other_timeout,
                },
            ) => {
                let differ = password
                    .as_bytes()
                    .iter()
                    .zip(other_password.as_bytes())
                    .fold(0_u8, |diff, (a, b)| diff | (a ^ b));
                id == other_id && timeout == other_timeout && differ == 0
            }
            (
                Self::SessionUpdated {
                    id,
                    timeout,
                    previous_owner,
                },
                Self::SessionUpdated {
                    id: other_id,
                    timeout: other_timeout,
                    previous_owner: other_owner,
                },
            ) => id == other_id && timeout == other_timeout && previous_owner == other_owner,
            (
                Self::SessionClosed { id, ephemerals },
                Self::SessionClosed {
                    id: other_id,
                    ephemerals: other_ephemerals,
                },
            ) => id == other_id && ephemerals == other_ephemerals,
            (
                Self::NodeCreated { path, stat },
                Self::NodeCreated {
                    path: other_path,
                    stat: other_stat,
                },
            ) => path == other_path && stat == other_stat,
            (Self::Initialized, Self::Initialized)
            | (Self::NodeDeleted, Self::NodeDeleted)
            | (Self::Checked, Self::Checked) => true,
            (Self::DataSet { stat }, Self::DataSet { stat: other_stat })
            | (Self::AclSet { stat }, Self::AclSet { stat: other_stat }) => stat == other_stat,
            (Self::Multi { results }, Self::Multi { results: other }) => results == other,
            _ => false,
        }
    }
}

impl Eq for Outcome {}

/// A transaction applied by [`Replica::apply`]: its zxid, its result and the
/// changes it made to the tree (for the watch tables; empty on error).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the result must be answered and the changes handed to the watch tables"]
pub struct Applied {
    /// The transaction's zxid.
    pub zxid: u64,
    /// What it produced, or why it changed nothing.
    pub result: Result<Outcome, TxnError>,
    /// The changes it made to the tree, in firing order.
    pub changes: Vec<Change>,
}

/// Why an operation could not be prepared, or a transaction changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnError {
    /// The tree refused the write, or it is over a limit.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The session is not held: it expired or was closed, or never existed.
    /// Nothing can be written for it any more (ZOOKEEPER-1208). The server
    /// answers `SessionExpired`.
    #[error("session {id} is expired or closed")]
    SessionExpired {
        /// The session.
        id: SessionId,
    },
    /// The session is owned by another server than the one writing for it:
    /// its client reattached there. The server answers `SessionMoved`.
    #[error("session {id} has moved to server {owner}")]
    SessionMoved {
        /// The session.
        id: SessionId,
        /// The server that owns it now.
        owner: ServerId,
    },
    /// A reattach was refused (unknown session or wrong password).
    #[error(transparent)]
    Reattach(#[from] ReattachError),
    /// No session id is left above the high-water mark without leaving its
    /// server byte.
    #[error("server {server} has no session ids left")]
    IdsExhausted {
        /// The server that asked for a new session.
        server: ServerId,
    },
    /// The replica has had no genesis yet (see [`Replica::uninitialized`]),
    /// so it cannot create a session: it has no secret to derive a password
    /// from, nor a first id.
    #[error("the replica has no genesis yet: no session can be created")]
    NotInitialized,
    /// A [`Txn::Genesis`] on a replica that already has one (or was made with
    /// [`Replica::new`]), or that has created sessions. Nothing changed but
    /// the replica's zxid, which is consumed as by any refused transaction.
    #[error("the replica already has its genesis")]
    AlreadyInitialized,
    /// The connection's ids hold none of the permissions the operation
    /// needs on the node's access control list (ZooKeeper's `NOAUTH`).
    #[error("no permission {wanted:#x} on {path}")]
    NoAuth {
        /// The node whose list refused.
        path: String,
        /// The [`perms`] bits wanted (any one would do).
        wanted: u32,
    },
    /// The access control list given is not valid (ZooKeeper's
    /// `INVALIDACL`).
    #[error(transparent)]
    InvalidAcl(#[from] AclError),
    /// Operation `index` of a multi failed with `error`; nothing of the
    /// multi was applied.
    #[error("operation {index} of the multi failed: {error}")]
    Multi {
        /// Which operation, from 0.
        index: usize,
        /// Why.
        error: Box<TxnError>,
    },
    /// [`Replica::apply`] was given a zxid that is not after the last one
    /// applied; nothing was changed.
    #[error("zxid {zxid} is not after the last applied zxid {last}")]
    ZxidNotAfter {
        /// The zxid given.
        zxid: u64,
        /// The last zxid applied.
        last: u64,
    },
}

/// Everything that is replicated of a [`Replica`], in an order that does not
/// depend on hashing: what determinism tests compare and what a snapshot
/// persists. [`Replica::export`] makes one and [`Replica::restore`] rebuilds
/// the replica from it (the indexes and totals of the tree are derived, so
/// not stored). Its `Debug` output does not show the secret.
///
/// With the `serde` feature it implements `Serialize` and `Deserialize`. A
/// deserialized snapshot is not checked until [`Replica::restore`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReplicaSnapshot {
    /// The zxid of the last applied transaction.
    pub zxid: u64,
    /// The highest session id minted.
    pub high_water: Option<SessionId>,
    /// The secret and first id, or `None` for a replica that has had no
    /// genesis yet ([`Replica::uninitialized`]). The secret is there in
    /// clear (see [`PasswordSecret::as_bytes`]).
    pub genesis: Option<Genesis>,
    /// Every session, sorted by id.
    pub sessions: Vec<SessionEntry>,
    /// Every node, sorted by path.
    pub nodes: Vec<NodeSnapshot>,
}

/// The replicated state: data tree, sessions, genesis (password secret and
/// first id), id high-water mark and last zxid.
///
/// Made with [`new`](Self::new) (initialized at once, for a server that
/// keeps its state in memory), [`uninitialized`](Self::uninitialized) (for a
/// durable or replicated state whose log starts with a [`Txn::Genesis`]), or
/// [`restore`](Self::restore) from a snapshot. Methods: getters (`&self`),
/// [`check_reattach`](Self::check_reattach), [`export`](Self::export), and
/// one command, [`apply`](Self::apply). The state changes only through
/// `apply`; [`prepare`] reads it.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use session_core::{
///     Context, CreateMode, Op, Outcome, PasswordSecret, Replica, ServerId, SessionId,
///     TimeoutPolicy, TreeLimits, WatchKind, WatchTable, prepare,
/// };
///
/// let server = ServerId::new(1)?;
/// let first_id = SessionId::from_u64(0x0100_0000_0000_0000);
/// let mut replica = Replica::new(PasswordSecret::new(&[7; 32])?, first_id);
/// let policy = TimeoutPolicy::new(Duration::from_secs(2))?;
/// let limits = TreeLimits::default();
/// let ctx = Context { server, policy: &policy, limits: &limits, wall_ms: 1_700_000_000_000, auth: &[] };
///
/// // Prepare against the current state, let the engine order it, apply.
/// let txn = prepare(&replica, Op::CreateSession { requested: Duration::from_secs(6) }, &ctx)?
///     .expect("a new session is always a transaction");
/// let applied = replica.apply(1, &txn);
/// let Ok(Outcome::SessionCreated { id, .. }) = applied.result else { panic!() };
///
/// // Another client of this server watches the children of /.
/// let mut watches: WatchTable<SessionId> = WatchTable::new();
/// let other = SessionId::from_u64(42);
/// watches.add(WatchKind::Child, "/", other);
///
/// let op = Op::Create {
///     session: id,
///     path: "/lock-".into(),
///     data: Bytes::new(),
///     mode: CreateMode::EphemeralSequential,
///     acl: session_core::Acl::open(),
/// };
/// let txn = prepare(&replica, op, &ctx)?.expect("a create is a transaction");
/// let applied = replica.apply(2, &txn);
/// assert!(matches!(&applied.result, Ok(Outcome::NodeCreated { path, .. }) if path == "/lock-0000000000"));
/// let fired = watches.fire(&applied.changes, applied.zxid);
/// assert_eq!(fired.len(), 1);
///
/// // Closing the session deletes its ephemerals under the same zxid.
/// let txn = prepare(&replica, Op::CloseSession { id }, &ctx)?.expect("held");
/// let applied = replica.apply(3, &txn);
/// assert!(matches!(applied.result, Ok(Outcome::SessionClosed { ref ephemerals, .. }) if ephemerals.len() == 1));
/// assert_eq!(replica.tree().node_count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Replica {
    tree: DataTree,
    sessions: BTreeMap<SessionId, SessionEntry>,
    /// `None` until a genesis: no secret, so no password can be derived or
    /// verified, and no session created.
    genesis: Option<Genesis>,
    high_water: Option<SessionId>,
    zxid: u64,
}

impl Replica {
    /// An empty replica, already initialized with this secret and first id:
    /// only the root node, no session, zxid 0. For a server that keeps its
    /// state in memory only; a durable or replicated state starts from
    /// [`uninitialized`](Self::uninitialized) and a [`Txn::Genesis`] instead.
    ///
    /// `first_id` is the first id it could mint: ids of its server byte below
    /// it, and ids of other server bytes, are [`ReattachError::Unknown`] when
    /// not held, before any password check (see
    /// [`check_reattach`](Self::check_reattach)). It is also the floor of
    /// the first id minted. Every replica of a group must be built with the
    /// same secret and first id.
    #[must_use]
    pub fn new(secret: PasswordSecret, first_id: SessionId) -> Self {
        Self {
            genesis: Some(Genesis { secret, first_id }),
            ..Self::uninitialized()
        }
    }

    /// An empty replica that has had no genesis: only the root node, no
    /// session, zxid 0, and no secret or first id yet.
    ///
    /// Until it applies a [`Txn::Genesis`] it creates no session
    /// ([`TxnError::NotInitialized`], from [`prepare`] and from
    /// [`apply`](Self::apply)), [`password`](Self::password) is `None` and
    /// [`check_reattach`](Self::check_reattach) answers
    /// [`ReattachError::Unknown`]: there is no placeholder secret that could
    /// verify a password. This is where a state that is replayed from a log
    /// starts, so that the secret and first id come from the log itself.
    ///
    /// ```
    /// use session_core::{Outcome, PasswordSecret, Replica, SessionId, Txn, TxnError};
    ///
    /// let mut replica = Replica::uninitialized();
    /// assert!(!replica.is_initialized());
    /// let genesis = Txn::Genesis {
    ///     secret: PasswordSecret::new(&[7; 32])?,
    ///     first_id: SessionId::from_u64(0x0100_0000_0000_0000),
    /// };
    /// assert_eq!(replica.apply(1, &genesis).result, Ok(Outcome::Initialized));
    /// assert!(replica.is_initialized());
    /// assert_eq!(replica.first_id(), Some(SessionId::from_u64(0x0100_0000_0000_0000)));
    /// // Only once.
    /// assert_eq!(replica.apply(2, &genesis).result, Err(TxnError::AlreadyInitialized));
    /// # Ok::<(), session_core::PasswordSecretError>(())
    /// ```
    #[must_use]
    pub fn uninitialized() -> Self {
        Self {
            tree: DataTree::new(),
            sessions: BTreeMap::new(),
            genesis: None,
            high_water: None,
            zxid: 0,
        }
    }

    /// Whether the replica has its secret and first id: made with
    /// [`new`](Self::new), or after a [`Txn::Genesis`].
    #[must_use]
    pub fn is_initialized(&self) -> bool {
        self.genesis.is_some()
    }

    /// The secret and first id, once initialized.
    #[must_use]
    pub fn genesis(&self) -> Option<&Genesis> {
        self.genesis.as_ref()
    }

    /// The data tree, for reads.
    #[must_use]
    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// The zxid of the last applied transaction (0 at the start).
    #[must_use]
    pub fn zxid(&self) -> u64 {
        self.zxid
    }

    /// The session `id`, if held.
    #[must_use]
    pub fn session(&self, id: SessionId) -> Option<&SessionEntry> {
        self.sessions.get(&id)
    }

    /// Every session held, sorted by id.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionEntry> + '_ {
        self.sessions.values()
    }

    /// Number of sessions held.
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The highest session id minted, if any.
    #[must_use]
    pub fn high_water(&self) -> Option<SessionId> {
        self.high_water
    }

    /// The first id this replica could mint (`None` before its genesis).
    #[must_use]
    pub fn first_id(&self) -> Option<SessionId> {
        self.genesis.as_ref().map(|genesis| genesis.first_id)
    }

    /// The password secret (`None` before its genesis).
    #[must_use]
    pub fn secret(&self) -> Option<&PasswordSecret> {
        self.genesis.as_ref().map(|genesis| &genesis.secret)
    }

    /// The password of a session held here, for the connect reply of a
    /// reattach (the client already has it; ZooKeeper sends it again).
    #[must_use]
    pub fn password(&self, id: SessionId) -> Option<SessionPassword> {
        let genesis = self.genesis.as_ref()?;
        self.sessions
            .contains_key(&id)
            .then(|| genesis.secret.derive(id))
    }

    /// Checks a reattach: returns the session if `password` is its password.
    ///
    /// The rule is the tracker's: an id not held that this replica could not
    /// have minted (another server byte than [`first_id`](Self::first_id)'s,
    /// or below it) is [`ReattachError::Unknown`] *before* the password is
    /// checked: such an id is dead whoever asks, so saying so reveals nothing,
    /// and a client whose server restarted with a new secret hears "expired"
    /// rather than "wrong password". Otherwise a wrong password is
    /// [`ReattachError::WrongPassword`] (checked in constant time, whether the
    /// session is held or not), and a session not held is `Unknown`. Before
    /// its genesis a replica holds no session and has no secret: every id is
    /// `Unknown`.
    ///
    /// # Errors
    /// [`ReattachError::Unknown`], [`ReattachError::WrongPassword`].
    pub fn check_reattach(
        &self,
        id: SessionId,
        password: &SessionPassword,
    ) -> Result<&SessionEntry, ReattachError> {
        let Some(genesis) = &self.genesis else {
            return Err(ReattachError::Unknown { id });
        };
        let held = self.sessions.get(&id);
        if held.is_none() && !could_have_minted(genesis, id) {
            return Err(ReattachError::Unknown { id });
        }
        if !genesis.secret.verify(id, password) {
            return Err(ReattachError::WrongPassword { id });
        }
        held.ok_or(ReattachError::Unknown { id })
    }

    /// Everything replicated, sorted: equal on two replicas that applied the
    /// same transactions in the same order.
    #[must_use]
    pub fn export(&self) -> ReplicaSnapshot {
        ReplicaSnapshot {
            zxid: self.zxid,
            high_water: self.high_water,
            genesis: self.genesis.clone(),
            sessions: self.sessions.values().copied().collect(),
            nodes: self.tree.export(),
        }
    }

    /// Applies `txn` under `zxid`, deterministically: the result and the
    /// changes depend only on the state and the arguments.
    ///
    /// The zxid is consumed even when the result is an error (like a log
    /// index): the replica's [`zxid`](Self::zxid) becomes `zxid` and nothing
    /// else changes. A `zxid` not after the last one is refused with
    /// [`TxnError::ZxidNotAfter`] and changes nothing at all.
    ///
    /// A [`Txn::Genesis`] gives an uninitialized replica its secret and first
    /// id; on a replica that has them, or holds sessions or a high-water
    /// mark, it is [`TxnError::AlreadyInitialized`]. A
    /// [`Txn::CreateSession`] before the genesis is
    /// [`TxnError::NotInitialized`].
    ///
    /// Node transactions re-check that the session is held
    /// ([`TxnError::SessionExpired`]) and owned by the transaction's server
    /// ([`TxnError::SessionMoved`]), then write the tree, which re-checks its
    /// structure. A close removes the session and all its ephemerals under
    /// this one zxid, so nothing can be created for it afterwards
    /// (ZOOKEEPER-1208). Limits are not checked: see the module docs.
    pub fn apply(&mut self, zxid: u64, txn: &Txn) -> Applied {
        if zxid <= self.zxid {
            return Applied {
                zxid,
                result: Err(TxnError::ZxidNotAfter {
                    zxid,
                    last: self.zxid,
                }),
                changes: Vec::new(),
            };
        }
        self.zxid = zxid;
        let mut changes = Vec::new();
        let result = self.apply_txn(zxid, txn, &mut changes);
        Applied {
            zxid,
            result,
            changes,
        }
    }

    fn apply_txn(
        &mut self,
        zxid: u64,
        txn: &Txn,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, TxnError> {
        match txn {
            Txn::Genesis { secret, first_id } => {
                if self.genesis.is_some() || !self.sessions.is_empty() || self.high_water.is_some()
                {
                    return Err(TxnError::AlreadyInitialized);
                }
                self.genesis = Some(Genesis {
                    secret: secret.clone(),
                    first_id: *first_id,
                });
                Ok(Outcome::Initialized)
            }
            Txn::CreateSession {
                min_id,
                timeout,
                owner,
            } => {
                let (id, password) = {
                    let genesis = self.genesis.as_ref().ok_or(TxnError::NotInitialized)?;
                    let id = next_id(genesis, self.high_water, *min_id, *owner)?;
                    (id, genesis.secret.derive(id))
                };
                self.sessions.insert(
                    id,
                    SessionEntry {
                        id,
                        timeout: *timeout,
                        owner: *owner,
                    },
                );
                self.high_water = Some(id);
                Ok(Outcome::SessionCreated {
                    id,
                    password,
                    timeout: *timeout,
                })
            }
            Txn::UpdateSession { id, timeout, owner } => {
                let entry = self
                    .sessions
                    .get_mut(id)
                    .ok_or(TxnError::SessionExpired { id: *id })?;
                let previous_owner = entry.owner;
                entry.timeout = *timeout;
                entry.owner = *owner;
                Ok(Outcome::SessionUpdated {
                    id: *id,
                    timeout: *timeout,
                    previous_owner,
                })
            }
            Txn::CloseSession { id } => {
                if self.sessions.remove(id).is_none() {
                    return Err(TxnError::SessionExpired { id: *id });
                }
                let removed = self.tree.remove_session(id.as_u64(), zxid);
                *changes = removed.changes;
                Ok(Outcome::SessionClosed {
                    id: *id,
                    ephemerals: removed.value,
                })
            }
            Txn::CreateNode {
                session,
                owner,
                path,
                data,
                mode,
                acl,
                auth,
                time_ms,
            } => {
                self.held_by(*session, *owner)?;
                let op = NodeOp::Create {
                    path,
                    data,
                    mode: *mode,
                    acl,
                };
                self.apply_op(*session, op, auth, zxid, *time_ms, changes)
            }
            Txn::DeleteNode {
                session,
                owner,
                path,
                version,
                auth,
            } => {
                self.held_by(*session, *owner)?;
                let op = NodeOp::Delete {
                    path,
                    version: *version,
                };
                self.apply_op(*session, op, auth, zxid, 0, changes)
            }
            Txn::SetData {
                session,
                owner,
                path,
                data,
                version,
                auth,
                time_ms,
            } => {
                self.held_by(*session, *owner)?;
                let op = NodeOp::SetData {
                    path,
                    data,
                    version: *version,
                };
                self.apply_op(*session, op, auth, zxid, *time_ms, changes)
            }
            Txn::SetAcl {
                session,
                owner,
                path,
                acl,
                version,
                auth,
            } => {
                self.held_by(*session, *owner)?;
                self.permit(path, perms::ADMIN, auth)?;
                let written = self.tree.set_acl(path, acl, *version, zxid)?;
                Ok(Outcome::AclSet {
                    stat: written.value,
                })
            }
            Txn::Multi {
                session,
                owner,
                ops,
                auth,
                time_ms,
            } => {
                self.held_by(*session, *owner)?;
                self.tree.begin();
                let mut results = Vec::with_capacity(ops.len());
                for (index, op) in ops.iter().enumerate() {
                    match self.apply_op(*session, op.as_node_op(), auth, zxid, *time_ms, changes) {
                        Ok(outcome) => results.push(outcome),
                        Err(error) => {
                            self.tree.rollback();
                            changes.clear();
                            return Err(TxnError::Multi {
                                index,
                                error: Box::new(error),
                            });
                        }
                    }
                }
                self.tree.commit();
                Ok(Outcome::Multi { results })
            }
            Txn::DeleteReapable { path, time_ms } => {
                let written = self.tree.delete_reapable(path, *time_ms, zxid)?;
                *changes = written.changes;
                Ok(Outcome::NodeDeleted)
            }
        }
    }

    /// One node write or check, with its permission check, appending its
    /// changes.
    fn apply_op(
        &mut self,
        session: SessionId,
        op: NodeOp<'_>,
        auth: &[Id],
        zxid: u64,
        time_ms: i64,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, TxnError> {
        match op {
            NodeOp::Create {
                path,
                data,
                mode,
                acl,
            } => {
                self.permit(parent_of(path), perms::CREATE, auth)?;
                let owner = session.as_u64();
                // An empty list in a transaction is the open one.
                let written = if acl.is_empty() {
                    self.tree
                        .create(path, data.clone(), mode, owner, zxid, time_ms)?
                } else {
                    self.tree.create_with_acl(
                        path,
                        data.clone(),
                        acl,
                        mode,
                        owner,
                        zxid,
                        time_ms,
                    )?
                };
                let stat = self
                    .tree
                    .stat(&written.value)
                    .expect("invariant: a node just created is in the tree");
                changes.extend(written.changes);
                Ok(Outcome::NodeCreated {
                    path: written.value,
                    stat,
                })
            }
            NodeOp::Delete { path, version } => {
                validate_path(path).map_err(TreeError::from)?;
                if path != "/" {
                    self.permit(parent_of(path), perms::DELETE, auth)?;
                }
                let written = self.tree.delete(path, version, zxid)?;
                changes.extend(written.changes);
                Ok(Outcome::NodeDeleted)
            }
            NodeOp::SetData {
                path,
                data,
                version,
            } => {
                self.permit(path, perms::WRITE, auth)?;
                let written = self
                    .tree
                    .set_data(path, data.clone(), version, zxid, time_ms)?;
                changes.extend(written.changes);
                Ok(Outcome::DataSet {
                    stat: written.value,
                })
            }
            NodeOp::Check { path, version } => {
                self.permit(path, perms::READ, auth)?;
                self.tree.check_version(path, version)?;
                Ok(Outcome::Checked)
            }
        }
    }

    /// The ids a transaction must carry for apply's permission check of
    /// `wanted` on `path`: none when its list grants it to anyone now (a
    /// list changed to a stricter one meanwhile then refuses the write at
    /// apply, as it would have had it come later); the connection's when
    /// they pass now or the node is not there yet. Refuses at once what the
    /// current list refuses.
    fn needed_auth(&self, path: &str, wanted: u32, ctx: &Context<'_>) -> Result<Vec<Id>, TxnError> {
        match self.tree.node_acl(path) {
            Some(acl) if open_to_anyone(acl, wanted) => Ok(Vec::new()),
            Some(acl) if !check_acl(acl, wanted, ctx.auth) => Err(TxnError::NoAuth {
                path: path.to_owned(),
                wanted,
            }),
            _ => Ok(ctx.auth.to_vec()),
        }
    }

    /// Refuses when the node at `path` exists and its list grants `ids`
    /// none of `wanted`. A missing node passes: the write itself then says
    /// which node is missing, as ZooKeeper orders its checks.
    fn permit(&self, path: &str, wanted: u32, ids: &[Id]) -> Result<(), TxnError> {
        match self.tree.node_acl(path) {
            Some(acl) if !check_acl(acl, wanted, ids) => Err(TxnError::NoAuth {
                path: path.to_owned(),
                wanted,
            }),
            _ => Ok(()),
        }
    }

    /// The session, if held and owned by `owner`.
    fn held_by(&self, id: SessionId, owner: ServerId) -> Result<&SessionEntry, TxnError> {
        let entry = self
            .sessions
            .get(&id)
            .ok_or(TxnError::SessionExpired { id })?;
        if entry.owner != owner {
            return Err(TxnError::SessionMoved {
                id,
                owner: entry.owner,
            });
        }
        Ok(entry)
    }
}

/// The id a [`Txn::CreateSession`] with `min_id` would mint now:
/// `max(min_id, high water + 1)`, or `max(min_id, first_id)` before the
/// first; refused when high water + 1 would leave its server byte.
fn next_id(
    genesis: &Genesis,
    high_water: Option<SessionId>,
    min_id: SessionId,
    server: ServerId,
) -> Result<SessionId, TxnError> {
    let floor = match high_water {
        None => genesis.first_id,
        Some(mark) if mark >= min_id => {
            if mark.as_u64() & LOW_MASK == LOW_MASK {
                return Err(TxnError::IdsExhausted { server });
            }
            SessionId::from_u64(mark.as_u64() + 1)
        }
        Some(_) => min_id,
    };
    Ok(min_id.max(floor))
}

/// The parent of a path or sequential prefix (`/` for a top-level one, and
/// for `/` itself); the path need not be valid.
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(slash) => &path[..slash],
    }
}

/// A fixed-up list as a create transaction carries it: empty for the open
/// list (see [`Txn::CreateNode::acl`]).
fn compact(acl: Vec<Acl>) -> Vec<Acl> {
    if acl.len() == 1 && acl[0] == Acl::new(perms::ALL, Id::anyone()) {
        Vec::new()
    } else {
        acl
    }
}

/// Checks what one operation of a multi can be checked for before the
/// operations ahead of it are applied: path syntax and length, data size,
/// the access control list asked for. The rest is apply's.
fn prepare_multi_op(op: MultiOp, ctx: &Context<'_>) -> Result<MultiOp, TxnError> {
    let limits = ctx.limits;
    Ok(match op {
        MultiOp::Create {
            path,
            data,
            mode,
            acl,
        } => {
            if mode.is_sequential() {
                limits.check_path_len(path.len() + 10)?;
                validate_sequential_prefix(&path).map_err(TreeError::from)?;
            } else {
                limits.check_path(&path)?;
            }
            limits.check_data(&path, data.len())?;
            MultiOp::Create {
                acl: compact(fixup_acl(&acl, ctx.auth)?),
                path,
                data,
                mode,
            }
        }
        MultiOp::SetData {
            path,
            data,
            version,
        } => {
            limits.check_path(&path)?;
            limits.check_data(&path, data.len())?;
            MultiOp::SetData {
                path,
                data,
                version,
            }
        }
        MultiOp::Delete { path, version } => {
            limits.check_path(&path)?;
            MultiOp::Delete { path, version }
        }
        MultiOp::Check { path, version } => {
            limits.check_path(&path)?;
            MultiOp::Check { path, version }
        }
    })
}

fn could_have_minted(genesis: &Genesis, id: SessionId) -> bool {
    id.server_id() == genesis.first_id.server_id() && id >= genesis.first_id
}

/// Checks `op` against `replica` and `ctx` and resolves it into the
/// transaction to propose, or `None` when nothing needs to change (a reattach
/// on the session's owning server with the same negotiated timeout).
///
/// Checks, in order:
/// - sessions: [`Op::CreateSession`] needs the replica initialized
///   ([`TxnError::NotInitialized`]), negotiates the timeout and computes the
///   id floor from `ctx.server` and `ctx.wall_ms`, refusing when no id would
///   be left; [`Op::Reattach`] runs [`Replica::check_reattach`] and
///   negotiates; [`Op::CloseSession`] needs the session held;
/// - node writes: the session must be held ([`TxnError::SessionExpired`])
///   and owned by `ctx.server` ([`TxnError::SessionMoved`]); then the write
///   is checked against the tree and `ctx.limits` (path syntax and length,
///   data size, node count, data quota, ephemerals per session, and the
///   tree's structure: parent, name taken, version, children), so the
///   common errors are answered without proposing.
///
/// The transaction carries `ctx.server` as owner and `ctx.wall_ms` as the
/// time. [`Replica::apply`] re-checks all but the limits, since the state
/// may have changed between prepare and apply. It never produces a
/// [`Txn::Genesis`]: the server builds that one itself.
///
/// # Errors
/// [`TxnError::Tree`], [`TxnError::SessionExpired`],
/// [`TxnError::SessionMoved`], [`TxnError::Reattach`],
/// [`TxnError::IdsExhausted`], [`TxnError::NotInitialized`].
pub fn prepare(replica: &Replica, op: Op, ctx: &Context<'_>) -> Result<Option<Txn>, TxnError> {
    let txn = match op {
        Op::CreateSession { requested } => {
            let genesis = replica.genesis.as_ref().ok_or(TxnError::NotInitialized)?;
            let timeout = ctx.policy.negotiate(requested);
            // Once this server's ids are running (its high-water mark, or
            // the replica's first id), they go on one by one, as ZooKeeper's
            // do; the clock only seeds the floor of a server that has minted
            // none here yet. (A clock before the epoch gives the lowest
            // floor; the high-water mark keeps ids rising anyway.)
            let mark = replica.high_water.unwrap_or(genesis.first_id);
            let min_id = if mark.server_id() == ctx.server.get() {
                mark
            } else {
                let wall_ms = u64::try_from(ctx.wall_ms).unwrap_or(0);
                initial_session_id(ctx.server, wall_ms, None)
                    .ok_or(TxnError::IdsExhausted { server: ctx.server })?
            };
            next_id(genesis, replica.high_water, min_id, ctx.server)?;
            Txn::CreateSession {
                min_id,
                timeout,
                owner: ctx.server,
            }
        }
        Op::Reattach {
            id,
            password,
            requested,
        } => {
            let entry = replica.check_reattach(id, &password)?;
            let timeout = ctx.policy.negotiate(requested);
            if entry.timeout == timeout && entry.owner == ctx.server {
                return Ok(None);
            }
            Txn::UpdateSession {
                id,
                timeout,
                owner: ctx.server,
            }
        }
        Op::CloseSession { id } => {
            if replica.session(id).is_none() {
                return Err(TxnError::SessionExpired { id });
            }
            Txn::CloseSession { id }
        }
        Op::Create {
            session,
            path,
            data,
            mode,
            acl,
        } => {
            replica.held_by(session, ctx.server)?;
            let acl = compact(fixup_acl(&acl, ctx.auth)?);
            let auth = replica.needed_auth(parent_of(&path), perms::CREATE, ctx)?;
            replica
                .tree
                .check_create(&path, data.len(), mode, session.as_u64(), ctx.limits)?;
            Txn::CreateNode {
                session,
                owner: ctx.server,
                path,
                data,
                mode,
                acl,
                auth,
                time_ms: ctx.wall_ms,
            }
        }
        Op::Delete {
            session,
            path,
            version,
        } => {
            replica.held_by(session, ctx.server)?;
            let auth = if path == "/" {
                Vec::new()
            } else {
                replica.needed_auth(parent_of(&path), perms::DELETE, ctx)?
            };
            replica.tree.check_delete(&path, version, ctx.limits)?;
            Txn::DeleteNode {
                session,
                owner: ctx.server,
                path,
                version,
                auth,
            }
        }
        Op::SetData {
            session,
            path,
            data,
            version,
        } => {
            replica.held_by(session, ctx.server)?;
            let auth = replica.needed_auth(&path, perms::WRITE, ctx)?;
            replica
                .tree
                .check_set(&path, data.len(), version, ctx.limits)?;
            Txn::SetData {
                session,
                owner: ctx.server,
                path,
                data,
                version,
                auth,
                time_ms: ctx.wall_ms,
            }
        }
        Op::SetAcl {
            session,
            path,
            acl,
            version,
        } => {
            replica.held_by(session, ctx.server)?;
            ctx.limits.check_path(&path)?;
            let acl = fixup_acl(&acl, ctx.auth)?;
            let auth = replica.needed_auth(&path, perms::ADMIN, ctx)?;
            let (_, stat) = replica.tree.acl(&path)?;
            if let Some(expected) = version.filter(|v| *v != -1 && *v != stat.aversion) {
                return Err(TreeError::BadVersion {
                    path,
                    expected,
                    actual: stat.aversion,
                }
                .into());
            }
            Txn::SetAcl {
                session,
                owner: ctx.server,
                path,
                acl,
                version,
                auth,
            }
        }
        Op::Multi { session, ops } => {
            replica.held_by(session, ctx.server)?;
            let ops = ops
                .into_iter()
                .enumerate()
                .map(|(index, op)| {
                    prepare_multi_op(op, ctx).map_err(|error| TxnError::Multi {
                        index,
                        error: Box::new(error),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Txn::Multi {
                session,
                owner: ctx.server,
                ops,
                // Earlier operations of the multi may create the nodes later
                // ones are checked against: the ids always go along.
                auth: ctx.auth.to_vec(),
                time_ms: ctx.wall_ms,
            }
        }
        Op::DeleteReapable { path } => {
            validate_path(&path).map_err(TreeError::from)?;
            Txn::DeleteReapable {
                path,
                time_ms: ctx.wall_ms,
            }
        }
    };
    Ok(Some(txn))
}
