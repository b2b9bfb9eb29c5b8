//! The Raft engine: openraft with the transaction log on disk, so a server
//! keeps every session and node across restarts (and, later, replicas keep
//! the same state).
//!
//! The Raft log's entries carry [`session_core::Txn`]s; the log index of an
//! entry is the zxid of its transaction.

mod engine;
pub(crate) mod log_codec;
pub(crate) mod log_store;
mod state_machine;

pub(crate) use engine::RaftEngine;
pub use engine::StorageError;
pub use state_machine::SnapshotError;

use std::io::Cursor;

use openraft::BasicNode;
use session_core::Applied;

openraft::declare_raft_types!(
    /// The Raft types of the session service: transactions in, applied
    /// results out, nodes numbered by server id.
    pub(crate) TypeConfig:
        D = session_core::Txn,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// What applying one log entry gave: the transaction applied, for an entry
/// carrying one; `None` for Raft's own entries (blank, membership).
///
/// It goes back to the proposer in this process only. openraft asks that a
/// response be serializable; serialized, it carries nothing, and deserializes
/// as `Response(None)`.
#[derive(Debug, Default)]
pub(crate) struct Response(pub(crate) Option<Applied>);

impl serde::Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <() as serde::Deserialize>::deserialize(deserializer)?;
        Ok(Response(None))
    }
}
