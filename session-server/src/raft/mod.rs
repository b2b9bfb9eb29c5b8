//! The Raft engine: openraft with the transaction log on disk, so a server
//! keeps every session and node across restarts (and, later, replicas keep
//! the same state).
//!
//! A normal Raft log entry carries a [`Batch`] of [`session_core::Txn`]s,
//! applied in order, each with the next zxid: the zxid counts transactions,
//! and every replica applying the same log gives the same transaction the
//! same zxid. (The design's first plan was zxid = log index; but openraft
//! 0.9 writes and fsyncs each appended entry before the next, so writes can
//! share an fsync only by sharing an entry — the engine gathers the
//! proposals that arrive while one entry is being written into the next.)

mod engine;
pub(crate) mod log_codec;
pub(crate) mod log_store;
mod state_machine;

pub(crate) use engine::RaftEngine;
pub use engine::StorageError;
pub use state_machine::SnapshotError;

use std::io::Cursor;

use openraft::BasicNode;
use session_core::{Applied, Txn};

openraft::declare_raft_types!(
    /// The Raft types of the session service: transactions in, applied
    /// results out, nodes numbered by server id.
    pub(crate) TypeConfig:
        D = Batch,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// The transactions of one log entry, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Batch(pub(crate) Vec<Txn>);

/// What applying one log entry gave: each transaction of its batch applied,
/// in order; empty for Raft's own entries (blank, membership).
///
/// It goes back to the proposer in this process only. openraft asks that a
/// response be serializable; serialized, it carries nothing, and deserializes
/// as an empty `Response`.
#[derive(Debug, Default)]
pub(crate) struct Response(pub(crate) Vec<Applied>);

impl serde::Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <() as serde::Deserialize>::deserialize(deserializer)?;
        Ok(Response(Vec::new()))
    }
}
