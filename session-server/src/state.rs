//! The server's replicated-to-be state: the session table and the namespace,
//! changed only through [`State::apply`].
//!
//! Every state change (create, reattach, close or expire a session; create,
//! delete or set a node) is a [`Command`] applied in one place and stamped with
//! the next zxid. That single seam is where a replicated log goes later: the
//! leader would append the command, and every replica would `apply` it in
//! order. Reads and heartbeats (touches) go straight to the state.

use std::time::{Duration, Instant};

use bytes::Bytes;
use session_core::{
    CreateError, NewSession, OwnerId, ReattachError, Reattached, SessionId, SessionPassword,
    SessionState, SessionTracker, TouchError,
};
use thiserror::Error;

use crate::namespace::{CreateMode, Namespace, NamespaceError, NamespaceLimits, Stat, WatchEvent};

/// A state change, applied by [`State::apply`].
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// Open a session for the connection `owner`.
    CreateSession { requested: Duration, owner: OwnerId },
    /// Move a session to the connection `owner`, checking its password.
    ReattachSession {
        id: SessionId,
        password: SessionPassword,
        requested: Duration,
        owner: OwnerId,
    },
    /// Close a session at its client's request or because it expired: its
    /// ephemerals are deleted and its watches dropped.
    CloseSession { id: SessionId },
    /// Create a node on behalf of `session`.
    CreateNode {
        session: SessionId,
        path: String,
        data: Bytes,
        mode: CreateMode,
    },
    /// Delete a node, if its version matches.
    DeleteNode { path: String, version: Option<i32> },
    /// Replace a node's data, if its version matches.
    SetData {
        path: String,
        data: Bytes,
        version: Option<i32>,
    },
}

/// What a successful command produced.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    SessionCreated(NewSession),
    SessionReattached(Reattached),
    SessionClosed { ephemerals_deleted: usize },
    NodeCreated(String),
    NodeDeleted,
    DataSet(Stat),
}

/// A command's result: its zxid, what it produced, and the watches it fired,
/// which the caller delivers before releasing the state.
#[derive(Debug)]
#[must_use = "fired watch events must be delivered"]
pub(crate) struct Applied {
    pub(crate) zxid: u64,
    pub(crate) outcome: Outcome,
    pub(crate) fired: Vec<(SessionId, WatchEvent)>,
}

/// Why a command was refused. A refused command changes nothing.
#[derive(Debug, Clone, Error)]
pub(crate) enum ApplyError {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Reattach(#[from] ReattachError),
    #[error(transparent)]
    CreateSession(#[from] CreateError),
    /// The session is unknown or closing: it may create nothing more
    /// (ZOOKEEPER-1208: an ephemeral created during close outlived its session).
    #[error("session {0} is expired or closing")]
    SessionGone(SessionId),
}

/// The session table and the namespace, with the last zxid handed out.
#[derive(Debug)]
pub(crate) struct State {
    tracker: SessionTracker,
    namespace: Namespace<SessionId>,
    zxid: u64,
}

impl State {
    pub(crate) fn new(tracker: SessionTracker, limits: NamespaceLimits) -> State {
        State {
            tracker,
            namespace: Namespace::new(limits),
            zxid: 0,
        }
    }

    /// The zxid of the last applied command.
    pub(crate) fn zxid(&self) -> u64 {
        self.zxid
    }

    pub(crate) fn tracker(&self) -> &SessionTracker {
        &self.tracker
    }

    pub(crate) fn namespace(&self) -> &Namespace<SessionId> {
        &self.namespace
    }

    /// For reads that leave a watch; they change no replicated state.
    pub(crate) fn namespace_mut(&mut self) -> &mut Namespace<SessionId> {
        &mut self.namespace
    }

    /// A heartbeat or any other frame from `owner` for session `id`.
    pub(crate) fn touch(
        &mut self,
        id: SessionId,
        owner: OwnerId,
        now: Instant,
    ) -> Result<(), TouchError> {
        self.tracker.touch(id, owner, now)
    }

    /// Sessions whose deadline has passed, now marked closing; each must be
    /// closed with [`Command::CloseSession`].
    pub(crate) fn poll_expired(&mut self, now: Instant) -> Vec<SessionId> {
        self.tracker.poll_expired(now)
    }

    /// Marks a session closing (refusing touches and creates) ahead of its
    /// close; used by the admin's expire.
    pub(crate) fn mark_closing(&mut self, id: SessionId) -> bool {
        self.tracker.mark_closing(id).is_ok()
    }

    /// Applies one state change, stamping it with the next zxid.
    pub(crate) fn apply(
        &mut self,
        command: Command,
        now: Instant,
        wall_ms: i64,
    ) -> Result<Applied, ApplyError> {
        let zxid = self.zxid + 1;
        let mut fired = Vec::new();
        let outcome = match command {
            Command::CreateSession { requested, owner } => {
                Outcome::SessionCreated(self.tracker.create(requested, owner, now)?)
            }
            Command::ReattachSession {
                id,
                password,
                requested,
                owner,
            } => Outcome::SessionReattached(
                self.tracker
                    .reattach(id, &password, requested, owner, now)?,
            ),
            Command::CloseSession { id } => {
                if !self.tracker.contains(id) {
                    return Err(ApplyError::SessionGone(id));
                }
                // Closing first: from here the session refuses touches and creates.
                let _ = self.tracker.mark_closing(id);
                // Its own watches go first so it is not told of its own ephemerals.
                self.namespace.remove_watcher(id);
                let removed = self.namespace.remove_session(id.as_u64(), zxid);
                fired = removed.fired;
                self.tracker.remove(id);
                Outcome::SessionClosed {
                    ephemerals_deleted: removed.value.len(),
                }
            }
            Command::CreateNode {
                session,
                path,
                data,
                mode,
            } => {
                let open = self
                    .tracker
                    .info(session)
                    .is_some_and(|info| info.state == SessionState::Open);
                if !open {
                    return Err(ApplyError::SessionGone(session));
                }
                let written =
                    self.namespace
                        .create(&path, data, mode, session.as_u64(), zxid, wall_ms)?;
                fired = written.fired;
                Outcome::NodeCreated(written.value)
            }
            Command::DeleteNode { path, version } => {
                let written = self.namespace.delete(&path, version, zxid)?;
                fired = written.fired;
                Outcome::NodeDeleted
            }
            Command::SetData {
                path,
                data,
                version,
            } => {
                let written = self
                    .namespace
                    .set_data(&path, data, version, zxid, wall_ms)?;
                fired = written.fired;
                Outcome::DataSet(written.value)
            }
        };
        self.zxid = zxid;
        Ok(Applied {
            zxid,
            outcome,
            fired,
        })
    }
}
