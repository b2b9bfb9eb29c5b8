#![doc = include_str!("../README.md")]

mod acl;
mod client;
mod connect_string;
mod expiry;
mod id;
mod liveness;
mod password;
mod path;
mod restore;
mod timeout;
mod tracker;
mod tree;
mod txn;
mod watch;

pub use acl::{Acl, AclError, Id, check_acl, fixup_acl, open_to_anyone, perms};
pub use client::{
    Action, ClientConfig, ClientEvent, ClientSession, ClientState, Handshake, Refusal,
};
pub use connect_string::{ConnectString, ConnectStringError, DEFAULT_PORT, HostPort};
pub use expiry::{ExpiryHandle, ExpiryQueue, ExpiryQueueError};
pub use id::{IdGenerator, ServerId, ServerIdError, SessionId, initial_session_id};
pub use liveness::{Liveness, LivenessInfo};
pub use password::{
    MIN_SECRET_LEN, PASSWORD_LEN, PasswordSecret, PasswordSecretError, SessionPassword,
};
pub use path::{PathError, validate_path, validate_sequential_prefix};
pub use restore::RestoreError;
pub use timeout::{ClientTimings, TimeoutPolicy, TimeoutPolicyError};
pub use tracker::{
    CreateError, NewSession, OwnerId, ReattachError, Reattached, SessionInfo, SessionState,
    SessionTracker, SnapshotSession, TouchError, TrackerSnapshot, UnknownSession,
};
pub use tree::{
    CONTAINER_OWNER, Change, CreateMode, DataTree, MAX_TTL_MS, NodeKind, NodeSnapshot, Stat,
    TTL_OWNER_PREFIX, TreeError, TreeLimits, Written,
};
pub use txn::{
    Applied, Context, Genesis, MultiOp, Op, Outcome, Replica, ReplicaSnapshot, SessionEntry, Txn,
    TxnError, prepare,
};
pub use watch::{
    EventKind, SetWatchesPaths, WatchEvent, WatchKind, WatchTable, WatcherType,
    watch_kind_for_exists,
};
