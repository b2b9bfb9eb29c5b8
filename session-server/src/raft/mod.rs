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
mod network;
mod peer;
mod state_machine;

pub use engine::StorageError;
pub(crate) use engine::{
    ClusterHandle, ClusterSettings, MembershipChange, MembershipRefusal, RaftEngine, Timing,
};
pub use state_machine::SnapshotError;

use std::io::Cursor;

use openraft::BasicNode;
use session_core::Txn;

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
pub(crate) struct Batch(pub(crate) Vec<Tagged>);

/// A transaction with who waits for it: the server that proposed it (the
/// leader itself, or a follower that forwarded it) and that server's number
/// for the proposal. When a server applies a transaction it proposed, it
/// hands the result to the waiting request (so a follower answers a write
/// once its own replica holds it: its client then reads its own write).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Tagged {
    /// The proposing server's id.
    pub(crate) origin: u8,
    /// The proposing server's number for it; numbers start at a random
    /// value at every start, so a restarted server never takes an old
    /// transaction's result for a new request's.
    pub(crate) seq: u64,
    /// The transaction.
    pub(crate) txn: Txn,
}

/// What applying one log entry gave: the zxid of its last transaction (the
/// replica's zxid after it). Each transaction's own result goes to the
/// request waiting for it (see [`Tagged`]).
///
/// openraft asks that a response be serializable; it never leaves the
/// process, and serialized it carries nothing.
#[derive(Debug, Default)]
pub(crate) struct Response(pub(crate) u64);

impl serde::Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <() as serde::Deserialize>::deserialize(deserializer)?;
        Ok(Response(0))
    }
}
