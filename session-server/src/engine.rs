//! The engine orders prepared transactions and applies them: the seam
//! between "what a request wants to change" and "the change, applied with
//! its zxid on every replica".
//!
//! [`LocalEngine`] is a single node with its state in memory: it applies each
//! transaction at once, as the next zxid. [`RaftEngine`](crate::raft::RaftEngine)
//! is openraft with its log on disk (one member, or a cluster); nothing above
//! this trait knows which one runs.

use std::fmt;
use std::future::{Future, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use session_core::{Applied, Txn};
use thiserror::Error;

use crate::state::StateMachine;

/// Names a transaction this server proposed, as its replica knows it while
/// it waits to be applied: the proposing server and that server's number for
/// it (see [`crate::raft::Tagged`]).
pub(crate) type Tag = (u8, u64);

/// A proposed transaction.
pub(crate) struct Proposal {
    /// Where this server's replica hands it over once applied: a read that
    /// must see it, and nothing proposed after it, is answered there
    /// ([`StateMachine::read_after`]). `None` when it was applied before
    /// `propose` returned.
    pub(crate) tag: Option<Tag>,
    /// Resolves once it is applied.
    pub(crate) applied: Pin<Box<dyn Future<Output = Result<Applied, EngineError>> + Send>>,
}

impl Future for Proposal {
    type Output = Result<Applied, EngineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.applied.as_mut().poll(cx)
    }
}

/// Why a transaction could not be ordered. (A transaction that was ordered
/// but refused by the state machine is an `Applied` with an error result.)
#[derive(Debug, Clone, Error)]
pub(crate) enum EngineError {
    /// The engine cannot order transactions now (for a replicated engine:
    /// no leader, or this server is not it).
    #[error("the server cannot order writes now: {0}")]
    Unavailable(String),
}

/// An engine stopping.
pub(crate) type Stopping = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A `sync`: resolves with a zxid at least as new as every write the
/// leader had committed when it was asked.
pub(crate) type Synced = Pin<Box<dyn Future<Output = Result<u64, EngineError>> + Send>>;

/// Orders and applies prepared transactions.
pub(crate) trait Engine: Send + Sync + fmt::Debug {
    /// Stops ordering; for an engine with storage, its files are left
    /// consistent. Proposals after it fail.
    fn shutdown(&self) -> Stopping {
        Box::pin(ready(()))
    }

    /// Proposes `txn`; the returned future resolves with it applied (its
    /// zxid, its result, and its watches already fired). The transaction is
    /// queued when this is called, not when the future is first polled: a
    /// caller may propose several before it awaits any (they are ordered as
    /// proposed, and may share a log entry).
    fn propose(&self, txn: Txn) -> Proposal;

    /// A zxid this server's replica must reach before a `sync` is answered.
    /// An engine that applies every write here before acknowledging it has
    /// nothing to wait for.
    fn sync(&self) -> Synced {
        Box::pin(ready(Ok(0)))
    }

    /// The cluster this engine is part of, for the admin; `None` for a
    /// server whose state is in memory only.
    fn cluster(&self) -> Option<crate::raft::ClusterHandle> {
        None
    }
}

/// A single node with its state in memory: a transaction is applied as soon
/// as it is proposed.
#[derive(Debug)]
pub(crate) struct LocalEngine {
    machine: Arc<StateMachine>,
}

impl LocalEngine {
    pub(crate) fn new(machine: Arc<StateMachine>) -> Self {
        LocalEngine { machine }
    }
}

impl Engine for LocalEngine {
    fn propose(&self, txn: Txn) -> Proposal {
        Proposal {
            tag: None,
            applied: Box::pin(ready(Ok(self.machine.apply_next(&txn, Instant::now())))),
        }
    }
}
