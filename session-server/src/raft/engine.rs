//! [`RaftEngine`]: the engine of a durable server — an openraft group (this
//! server alone, or a cluster of three or five) whose log is on disk. Every
//! transaction is appended, fsynced on a quorum and applied through it.
//!
//! Starting it ([`RaftEngine::start`]) opens the data directory (refusing one
//! of another server or an incompatible layout), loads the newest snapshot
//! and lets openraft replay the log behind it. A server on its own then
//! waits until it leads, and on a fresh directory writes the genesis
//! transaction (the password secret and the first session id every later
//! start reads back); in a cluster, the first leader writes it.
//!
//! In a cluster:
//! - every server prepares the writes of its own clients; the leader orders
//!   them (a follower forwards them over the peer service, in order), and
//!   each server answers a write once its own replica applied it, so its
//!   client reads its own writes;
//! - the leader alone runs expiry, once its first entry of the term is
//!   applied and while a quorum answers it; followers tell it which sessions
//!   they heard from once per tick; taking over or handing on expiry gives
//!   every session a fresh full timeout;
//! - a server with no leader refuses new clients at once, and closes its
//!   connections once it has had none for longer than an election takes, so
//!   that their clients move to a server that has one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use session_core::{ServerId, Txn};
use session_wire::admin::v1::{ClusterMember, ClusterStatusResponse, MemberRole};
use session_wire::peer::v1::{
    ForwardRequest, ReadIndexRequest, StatusRequest, StatusResponse, TouchRequest,
};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::log_codec::Appends;
use super::log_store::{LogStore, LogStoreOptions};
use super::network::{self, Peers};
use super::state_machine::{SnapshotError, StateMachineStore};
use super::{Batch, Tagged, TypeConfig};
use crate::engine::{Engine, EngineError, Proposal, Stopping, Synced};
use crate::frontend::Code;
use crate::state::{Role, StateMachine};

/// The layout of data directories this build reads and writes.
///
/// 2: log entries carry tagged transactions (see [`Tagged`]).
/// 3: nodes carry access control lists and kinds (container, TTL); node
/// transactions carry the ids their permission checks use; multi, setACL
/// and container deletes.
const DATA_FORMAT: u32 = 3;
/// How long a start may take to elect itself and replay the log.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a durable server could not start. Each names the file or directory.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The data directory or a file in it could not be read or written.
    #[error("data directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The data directory belongs to another server or layout.
    #[error("data directory {path} cannot be used: {detail}")]
    Foreign {
        /// The identity file.
        path: PathBuf,
        /// What does not match.
        detail: String,
    },
    /// The Raft log could not be opened (a damaged record, a locked
    /// directory, ...).
    #[error("raft log: {0}")]
    Log(String),
    /// A snapshot could not be read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// openraft refused to start or to become ready.
    #[error("raft: {0}")]
    Raft(String),
}

/// A Raft group (one member, or a cluster) with its log and snapshots on
/// disk.
pub(crate) struct RaftEngine {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::AbortHandle>,
    peer_addr: Option<SocketAddr>,
}

/// What the engine's tasks and the peer service share.
pub(super) struct Inner {
    pub(super) raft: Raft<TypeConfig>,
    pub(super) machine: Arc<StateMachine>,
    /// This server's node id.
    pub(super) me: u64,
    pub(super) peers: Peers,
    /// The next number for a transaction this server proposes.
    seq: AtomicU64,
    /// To the proposer task.
    queue: mpsc::UnboundedSender<Queued>,
    /// openraft's appends to the log store, handed over and flushed.
    appends: watch::Receiver<Appends>,
    pub(super) timing: Timing,
    /// A snapshot is asked for when the zxid reaches this.
    snapshot_at: AtomicU64,
    snapshot_every: u64,
}

/// The times the engine works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Raft's heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Raft's shortest election timeout (the longest is twice it).
    pub(crate) election_timeout: Duration,
    /// How often a follower tells the leader which sessions it heard from:
    /// the server's tick.
    pub(crate) report_every: Duration,
}

impl Timing {
    /// How long a write waits for a leader to be elected before it fails.
    fn leader_wait(&self) -> Duration {
        self.election_timeout * 4
    }

    /// How long a write may take to commit, and a call to the leader (a
    /// forwarded batch is written and fsynced on a quorum first).
    fn leader_call(&self) -> Duration {
        self.election_timeout * 4
    }

    /// How long a server with no leader keeps its client connections
    /// before it closes them, so that their clients move to a server that
    /// has one: as long as an election can take, so that a leader change
    /// goes unnoticed by the clients of followers.
    fn leaderless_grace(&self) -> Duration {
        self.election_timeout * 2
    }
}

/// Transactions for the proposer, and who waits for them to be ordered.
struct Queued {
    items: Vec<Tagged>,
    /// Came from a follower: proposed here only if this server leads.
    forwarded: bool,
    /// Told the zxid after the entry holding them, once it is applied
    /// here (on the leader) or on the leader (forwarded by a follower).
    done: oneshot::Sender<Result<u64, EngineError>>,
}

/// The most transactions, and about the most bytes, one log entry carries.
const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Log entries a leader has handed to openraft and not yet seen applied, at
/// most. On its own a server applies an entry as soon as it is on disk, so
/// this rarely binds; in a cluster it keeps the leader from fsyncing ever
/// smaller entries while its quorum catches up (three servers sharing one
/// disk did a little better with 2 than with 8 under `session-bench churn`).
const MAX_ENTRIES_IN_FLIGHT: usize = 2;
/// How long a write the leader applied may take to be applied here.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// About how many bytes a transaction takes in the log.
fn approximate_size(txn: &Txn) -> usize {
    64 + match txn {
        Txn::CreateNode { path, data, .. } | Txn::SetData { path, data, .. } => {
            path.len() + data.len()
        }
        Txn::DeleteNode { path, .. } => path.len(),
        _ => 0,
    }
}

/// Orders what is queued: the first batch waiting, with every one that
/// arrived meanwhile (up to the caps), as one log entry when this server
/// leads, or as one forward to the leader when it follows. While one is
/// being written (and fsynced), the next gathers: concurrent writes share an
/// fsync, and a follower's writes reach the leader in the order they were
/// proposed.
///
/// openraft 0.9 appends one entry at a time and waits for its fsync before
/// it takes the next write, so a leader hands it the next entry when the one
/// before is on its disk (not when it is applied): that entry then holds
/// every write that arrived during the fsync, and its own fsync starts at
/// once, overlapping the replication and commit of the one before. An entry
/// handed over any earlier would wait for the disk just the same, holding
/// fewer writes. At most [`MAX_ENTRIES_IN_FLIGHT`] wait to be applied.
async fn proposer(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_ENTRIES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        // Waits for a slot first: what arrives meanwhile joins this entry.
        let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let mut bytes: usize = first.items.iter().map(|t| approximate_size(&t.txn)).sum();
        let mut count = first.items.len();
        let mut batch = vec![first];
        while count < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let Ok(next) = queue.try_recv() else {
                break;
            };
            bytes += next
                .items
                .iter()
                .map(|t| approximate_size(&t.txn))
                .sum::<usize>();
            count += next.items.len();
            batch.push(next);
        }
        let leader = inner.known_or_elected_leader().await;
        let (local, forwarded): (Vec<Queued>, Vec<Queued>) =
            batch.into_iter().partition(|queued| !queued.forwarded);
        if leader == Some(inner.me) {
            let all: Vec<Queued> = local.into_iter().chain(forwarded).collect();
            let items: Vec<Tagged> = all.iter().flat_map(|q| q.items.iter().cloned()).collect();
            // openraft 0.9 has no deadline on a write: on a leader cut off
            // from its quorum it waits for ever. Past the bound, the writes
            // are answered UNAVAILABLE (their outcome unknown: a later leader
            // may still commit them).
            // A server on its own waits for its disk as long as it takes.
            let bound = if is_alone(&inner.raft.metrics().borrow(), inner.me) {
                Duration::MAX
            } else {
                inner.timing.leader_call()
            };
            // Handed to openraft here, in order; the wait for it to be
            // committed and applied goes on beside the next entries (at most
            // MAX_ENTRIES_IN_FLIGHT), so the leader's fsync of one entry
            // overlaps the replication of the one before.
            let handed_after = inner.appends.borrow().started;
            let submitted = inner.raft.client_write_ff(Batch(items)).await;
            let waiter = Arc::clone(&inner);
            let (settled, settling) = oneshot::channel::<()>();
            tokio::spawn(async move {
                let outcome = match submitted {
                    Err(fatal) => Err(EngineError::Unavailable(fatal.to_string())),
                    Ok(written) => match tokio::time::timeout(bound, written).await {
                        Ok(Ok(Ok(written))) => Ok(written.data.0),
                        Ok(Ok(Err(refused))) => Err(EngineError::Unavailable(refused.to_string())),
                        Ok(Err(_)) => Err(EngineError::Unavailable(waiter.why_stopped().await)),
                        Err(_) => Err(EngineError::Unavailable(format!(
                            "the write was not committed within {bound:?}: no quorum answers this leader"
                        ))),
                    },
                };
                for queued in all {
                    let _ = queued.done.send(outcome.clone());
                }
                drop(slot);
                drop(settled);
                waiter.maybe_snapshot().await;
            });
            // The next entry gathers until this one is on disk here (an
            // append handed over after it, and none waiting for the disk),
            // or has been settled otherwise (refused, failed).
            let mut appends = inner.appends.clone();
            tokio::select! {
                _ = appends.wait_for(|a| a.started > handed_after && a.flushed >= a.started) => {}
                _ = settling => {}
            }
            continue;
        }
        for queued in forwarded {
            let _ = queued.done.send(Err(EngineError::Unavailable(format!(
                "server {} does not lead (the leader is {})",
                inner.me,
                leader.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
            ))));
        }
        if local.is_empty() {
            continue;
        }
        let outcome = match leader {
            Some(leader) => {
                let items: Vec<Tagged> =
                    local.iter().flat_map(|q| q.items.iter().cloned()).collect();
                inner.forward(leader, &items).await
            }
            None => Err(EngineError::Unavailable(format!(
                "no leader was elected within {:?}",
                inner.timing.leader_wait()
            ))),
        };
        for queued in local {
            let _ = queued.done.send(outcome.clone());
        }
    }
}

impl Inner {
    /// The leader this server knows of.
    pub(super) fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The leader known now, or the one elected within
    /// [`Timing::leader_wait`]; `None` if there is none by then.
    async fn known_or_elected_leader(&self) -> Option<u64> {
        match self.leader() {
            Some(leader) => Some(leader),
            None => self.wait_leader(self.timing.leader_wait()).await,
        }
    }

    /// Waits up to `bound` for a leader to be known.
    async fn wait_leader(&self, bound: Duration) -> Option<u64> {
        self.raft
            .wait(Some(bound))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .ok()
            .and_then(|m| m.current_leader)
    }

    /// Queues transactions for the proposer.
    fn submit(
        &self,
        items: Vec<Tagged>,
        forwarded: bool,
    ) -> Result<oneshot::Receiver<Result<u64, EngineError>>, EngineError> {
        let (done, ordered) = oneshot::channel();
        self.queue
            .send(Queued {
                items,
                forwarded,
                done,
            })
            .map_err(|_| EngineError::Unavailable("the engine has stopped".to_owned()))?;
        Ok(ordered)
    }

    /// Orders transactions a follower forwarded; returns, once they are
    /// applied here, the zxid of the last (or after the entry holding
    /// them).
    ///
    /// The follower forwards its next writes only after this answer, so it
    /// comes as soon as this replica applies the last of them, not when
    /// openraft answers the write (its core does that only between fsyncs,
    /// up to a whole fsync later).
    pub(super) async fn order_forwarded(&self, items: Vec<Tagged>) -> Result<u64, EngineError> {
        let stopped = || EngineError::Unavailable("the engine has stopped".to_owned());
        let last = items.last().map(|tagged| (tagged.origin, tagged.seq));
        let Some((origin, seq)) = last else {
            return Ok(self.machine.zxid());
        };
        let applied = self.machine.await_applied(origin, seq);
        let ordered = match self.submit(items, true) {
            Ok(ordered) => ordered,
            Err(err) => {
                self.machine.forget_waiter(origin, seq);
                return Err(err);
            }
        };
        tokio::select! {
            Ok(applied) = applied => Ok(applied.zxid),
            ordered = ordered => {
                self.machine.forget_waiter(origin, seq);
                ordered.unwrap_or_else(|_| Err(stopped()))
            }
        }
    }

    /// Sends transactions to the leader to order.
    async fn forward(&self, leader: u64, items: &[Tagged]) -> Result<u64, EngineError> {
        let batch = postcard::to_allocvec(items)
            .map_err(|err| EngineError::Unavailable(format!("cannot encode a write: {err}")))?;
        let mut client = self
            .peers
            .client_in(&self.raft, leader)
            .map_err(|err| EngineError::Unavailable(err.to_string()))?;
        let request = ForwardRequest {
            from_node: u32::try_from(self.me).unwrap_or(0),
            batch: batch.into(),
        };
        network::call(leader, self.timing.leader_call(), client.forward(request))
            .await
            .map(|answer| answer.last_zxid)
            .map_err(|err| {
                EngineError::Unavailable(format!("the leader did not take the write: {err}"))
            })
    }

    /// A zxid at least as new as the leader's commit now, confirmed by a
    /// quorum: what `sync` waits for.
    pub(super) async fn read_index(&self) -> Result<u64, EngineError> {
        let leader = self
            .known_or_elected_leader()
            .await
            .ok_or_else(|| EngineError::Unavailable("no leader is known".to_owned()))?;
        if leader == self.me {
            self.raft
                .ensure_linearizable()
                .await
                .map_err(|err| EngineError::Unavailable(err.to_string()))?;
            return Ok(self.machine.zxid());
        }
        let mut client = self
            .peers
            .client_in(&self.raft, leader)
            .map_err(|err| EngineError::Unavailable(err.to_string()))?;
        network::call(
            leader,
            self.timing.leader_call(),
            client.read_index(ReadIndexRequest {}),
        )
        .await
        .map(|answer| answer.zxid)
        .map_err(|err| EngineError::Unavailable(format!("the leader gave no read index: {err}")))
    }

    /// Asks for a snapshot when `snapshot_every` transactions were applied
    /// since the last (openraft's own policy counts entries, and an entry
    /// may carry many transactions).
    async fn maybe_snapshot(&self) {
        let zxid = self.machine.zxid();
        if zxid >= self.snapshot_at.load(Ordering::Relaxed) {
            self.snapshot_at
                .store(zxid.saturating_add(self.snapshot_every), Ordering::Relaxed);
            // Returns at once; the snapshot is built beside the writes.
            let _ = self.raft.trigger().snapshot().await;
        }
    }

    /// Why the Raft engine stopped (a storage error, say), as openraft
    /// reports it once its core has stopped.
    async fn why_stopped(&self) -> String {
        let stopped = self
            .raft
            .wait(Some(Duration::from_secs(1)))
            .metrics(|m| m.running_state.is_err(), "the core stopped")
            .await;
        match stopped.map(|m| m.running_state.err().map(|fatal| fatal.to_string())) {
            Ok(Some(fatal)) => format!("the Raft engine stopped: {fatal}"),
            _ => "the Raft engine stopped before the write was applied".to_owned(),
        }
    }

    /// This server's role, from openraft's metrics, and when it has none,
    /// why.
    fn role_of(&self, m: &RaftMetrics<u64, BasicNode>) -> (Role, String) {
        let alone = is_alone(m, self.me);
        if alone {
            // A server on its own has nobody to defer to: it keeps serving
            // reads and heartbeats even when its storage failed (its writes
            // fail, saying why).
            return (Role::Leading, String::new());
        }
        if let Err(fatal) = &m.running_state {
            return (
                Role::Unavailable,
                format!("server {} stopped replicating: {fatal}", self.me),
            );
        }
        let initialized = self.machine.state().replica.is_initialized();
        let role = match m.state {
            ServerState::Leader if m.current_leader == Some(self.me) => {
                // Promoted once its own first entry of the term is applied:
                // everything an earlier leader committed is applied then.
                let promoted = m
                    .last_applied
                    .is_some_and(|applied| applied.leader_id.term == m.current_term);
                // A leader cut off from its quorum is deposed in all but
                // name: its writes cannot commit, and it must not expire
                // sessions whose clients moved to the majority.
                // (Twice the election timeout: a busy quorum is not a lost
                // one.)
                let backed = m.millis_since_quorum_ack.is_some_and(|ms| {
                    u128::from(ms) <= 2 * self.timing.election_timeout.as_millis()
                });
                if promoted && backed {
                    Role::Leading
                } else {
                    Role::Unavailable
                }
            }
            ServerState::Follower | ServerState::Learner
                if m.current_leader.is_some() && initialized =>
            {
                Role::Following
            }
            _ => Role::Unavailable,
        };
        let why = match (role, m.current_leader) {
            (Role::Unavailable, Some(leader)) if leader == self.me => format!(
                "server {} leads but has not heard from a quorum (or has not applied its first entry) yet",
                self.me
            ),
            (Role::Unavailable, _) => format!(
                "server {} has no leader now (an election, or cut off from the majority)",
                self.me
            ),
            _ => String::new(),
        };
        (role, why)
    }

    /// The callee's side of the peer `Status` call.
    pub(super) fn status(&self) -> StatusResponse {
        let m = self.raft.metrics().borrow().clone();
        StatusResponse {
            node_id: u32::try_from(self.me).unwrap_or(0),
            role: member_role(&m, self.me) as i32,
            applied_zxid: self.machine.zxid(),
            applied_index: m.last_applied.map_or(0, |id| id.index),
            leader_id: m
                .current_leader
                .and_then(|id| u32::try_from(id).ok())
                .unwrap_or(0),
        }
    }

    /// Carries out a membership change on the leader, or forwards it there.
    pub(super) async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<MembershipView, MembershipRefusal> {
        let leader = self
            .known_or_elected_leader()
            .await
            .ok_or_else(|| MembershipRefusal::Unavailable("no leader is known".to_owned()))?;
        if leader != self.me {
            let mut client = self
                .peers
                .client_in(&self.raft, leader)
                .map_err(|err| MembershipRefusal::Unavailable(err.to_string()))?;
            let message = network::encode(&change)
                .map_err(|status| MembershipRefusal::Unavailable(status.to_string()))?;
            // Adding a learner waits for it to catch up: allow for a long
            // log or a large snapshot.
            let answer = network::call(leader, MEMBERSHIP_CALL, client.change_membership(message))
                .await
                .map_err(|err| MembershipRefusal::Unavailable(err.to_string()))?;
            return network::decode::<Result<MembershipView, MembershipRefusal>>(&answer)
                .map_err(|err| MembershipRefusal::Unavailable(err.to_string()))?;
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let is_voter = |node: u64| membership.voter_ids().any(|id| id == node);
        let is_member = |node: u64| membership.nodes().any(|(id, _)| *id == node);
        let written = match change {
            MembershipChange::AddLearner { node, address } => {
                if is_member(node) {
                    return Err(MembershipRefusal::Precondition(format!(
                        "server {node} is a member already"
                    )));
                }
                self.raft
                    .add_learner(node, BasicNode::new(address), true)
                    .await
            }
            MembershipChange::Promote { node } => {
                if !is_member(node) || is_voter(node) {
                    return Err(MembershipRefusal::Precondition(format!(
                        "server {node} is not a learner of this cluster"
                    )));
                }
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
                    .await
            }
            MembershipChange::Remove { node } => {
                if !is_member(node) {
                    return Err(MembershipRefusal::Precondition(format!(
                        "server {node} is not a member of this cluster"
                    )));
                }
                if is_voter(node) {
                    if membership.voter_ids().count() == 1 {
                        return Err(MembershipRefusal::Precondition(format!(
                            "server {node} is the last voter"
                        )));
                    }
                    self.raft
                        .change_membership(
                            ChangeMembers::RemoveVoters(BTreeSet::from([node])),
                            false,
                        )
                        .await
                } else {
                    self.raft
                        .change_membership(
                            ChangeMembers::RemoveNodes(BTreeSet::from([node])),
                            false,
                        )
                        .await
                }
            }
        };
        let written = written.map_err(|err| MembershipRefusal::Unavailable(err.to_string()))?;
        let Some(membership) = written.membership else {
            return Err(MembershipRefusal::Unavailable(
                "the change was written but no membership came back".to_owned(),
            ));
        };
        Ok(MembershipView::of(&membership))
    }
}

/// How long a forwarded membership change may take.
const MEMBERSHIP_CALL: Duration = Duration::from_secs(120);

/// A membership change, as the admin asks for it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum MembershipChange {
    /// Add a server as a learner.
    AddLearner { node: u64, address: String },
    /// Make a learner a voter.
    Promote { node: u64 },
    /// Remove a member.
    Remove { node: u64 },
}

/// The members after a change.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct MembershipView {
    pub(crate) voters: Vec<u64>,
    pub(crate) learners: Vec<u64>,
}

impl MembershipView {
    fn of(membership: &openraft::Membership<u64, BasicNode>) -> MembershipView {
        MembershipView {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }
}

/// Why a membership change was refused.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Error)]
pub(crate) enum MembershipRefusal {
    /// The change does not fit the membership as it is.
    #[error("{0}")]
    Precondition(String),
    /// No leader, or the change could not be written.
    #[error("{0}")]
    Unavailable(String),
}

/// Whether `me` is the only voter (a server on its own). A server that is
/// no voter (a learner, or one waiting to be added) is not alone.
fn is_alone(m: &RaftMetrics<u64, BasicNode>, me: u64) -> bool {
    let mut voters = m.membership_config.membership().voter_ids();
    voters.next() == Some(me) && voters.next().is_none()
}

/// A member's role as the admin shows it.
pub(crate) fn member_role(m: &RaftMetrics<u64, BasicNode>, me: u64) -> MemberRole {
    match m.state {
        ServerState::Leader => MemberRole::Leader,
        ServerState::Candidate => MemberRole::Candidate,
        ServerState::Learner => MemberRole::Learner,
        ServerState::Follower => {
            if m.membership_config
                .membership()
                .voter_ids()
                .any(|id| id == me)
            {
                MemberRole::Follower
            } else {
                MemberRole::Learner
            }
        }
        ServerState::Shutdown => MemberRole::Unreachable,
    }
}

/// Follows openraft's metrics and the clock: sets this server's role,
/// gives every session a fresh full timeout when it starts or stops
/// leading, writes the genesis transaction when it leads a new cluster,
/// closes its client connections when it has had no leader for longer than
/// an election takes, and asks for snapshots.
async fn roles(inner: Arc<Inner>) {
    let mut metrics = inner.raft.metrics();
    let mut ticks = tokio::time::interval(inner.timing.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leaderless_since: Option<tokio::time::Instant> = None;
    let mut disconnected = false;
    let mut genesis_term = None;
    let mut led_term = None;
    loop {
        let stopped = tokio::select! {
            changed = metrics.changed() => changed.is_err(),
            _ = ticks.tick() => false,
        };
        let m = metrics.borrow().clone();
        let alone = is_alone(&m, inner.me);
        if stopped && alone {
            // A server on its own keeps serving what it can without its
            // engine: reads and heartbeats (its writes fail, saying why).
            return;
        }
        let (role, why) = if stopped {
            (
                Role::Unavailable,
                format!("server {}'s Raft engine has stopped", inner.me),
            )
        } else {
            inner.role_of(&m)
        };
        inner.machine.set_unavailable_reason(why);
        let previous = inner.machine.set_role(role);
        if role != previous {
            info!(node = inner.me, ?previous, ?role, term = m.current_term,
                leader = ?m.current_leader, "cluster role changed");
            // Taking over expiry in a new term: no session expires for the
            // time this server did not hear of it. (A leader that lost its
            // quorum for a moment and leads on in the same term kept hearing
            // the touches: it goes on from where it was, so that a busy
            // quorum never postpones expiry.)
            if role == Role::Leading && led_term != Some(m.current_term) {
                led_term = Some(m.current_term);
                inner.machine.refresh_liveness(Instant::now());
            }
        }
        if m.state == ServerState::Leader
            && m.current_leader == Some(inner.me)
            && !inner.machine.state().replica.is_initialized()
            && genesis_term != Some(m.current_term)
            && m.last_applied
                .is_some_and(|applied| applied.leader_id.term == m.current_term)
        {
            genesis_term = Some(m.current_term);
            let inner = Arc::clone(&inner);
            tokio::spawn(async move {
                if let Err(err) = inner.propose_genesis().await {
                    warn!(error = %err, "could not write the genesis transaction");
                }
            });
        }
        if stopped {
            inner
                .machine
                .disconnect_all(Code::Unavailable, &inner.machine.unavailable_reason());
            return;
        }
        if role == Role::Unavailable {
            let since = *leaderless_since.get_or_insert_with(tokio::time::Instant::now);
            if !disconnected && since.elapsed() >= inner.timing.leaderless_grace() {
                disconnected = true;
                let count = inner.machine.connections.len();
                if count > 0 {
                    warn!(
                        node = inner.me,
                        connections = count,
                        "no leader: closing client connections so their clients move on"
                    );
                }
                inner.machine.disconnect_all(
                    Code::Unavailable,
                    &format!("{}: try another server", inner.machine.unavailable_reason()),
                );
            }
        } else {
            leaderless_since = None;
            disconnected = false;
        }
        if role != Role::Leading {
            inner.maybe_snapshot().await;
        }
    }
}

/// Tells the leader, once per tick, which sessions this server heard from.
async fn reporter(inner: Arc<Inner>) {
    let mut ticks = tokio::time::interval(inner.timing.report_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if inner.machine.role() == Role::Leading {
            continue;
        }
        let heard = inner.machine.take_heard();
        if heard.is_empty() {
            continue;
        }
        let Some(leader) = inner.leader().filter(|&leader| leader != inner.me) else {
            inner.machine.heard_again(heard);
            continue;
        };
        let Ok(mut client) = inner.peers.client_in(&inner.raft, leader) else {
            inner.machine.heard_again(heard);
            continue;
        };
        let request = TouchRequest {
            from_node: u32::try_from(inner.me).unwrap_or(0),
            session_ids: heard.iter().map(|id| id.as_u64()).collect(),
        };
        if let Err(err) =
            network::call(leader, inner.timing.report_every, client.touch(request)).await
        {
            debug!(leader, error = %err, "could not report touched sessions; next tick again");
            inner.machine.heard_again(heard);
        }
    }
}

impl Inner {
    /// Writes the first transaction of a new state: the password secret and
    /// the first session id.
    async fn propose_genesis(&self) -> Result<(), String> {
        let genesis = Txn::Genesis {
            secret: crate::server::random_secret().map_err(|err| err.to_string())?,
            // From the wall clock, so it stays above ids an earlier, lost
            // directory of this server id handed out.
            first_id: crate::server::first_session_id(self.machine.server())
                .map_err(|err| err.to_string())?,
        };
        let applied = propose(self, genesis)
            .await
            .map_err(|err| err.to_string())?;
        match applied.result {
            Ok(_) => {
                info!(node = self.me, "new cluster state initialized");
                Ok(())
            }
            // Another leader wrote it first.
            Err(session_core::TxnError::AlreadyInitialized) => Ok(()),
            Err(err) => Err(format!("genesis refused: {err}")),
        }
    }
}

/// Proposes one transaction from this server: queues it for the proposer at
/// once (so a connection's pipelined writes reach the proposer together and
/// share an entry), and returns the wait for it to be applied here, with
/// its tag.
fn propose(inner: &Inner, txn: Txn) -> Proposal {
    let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
    let origin = inner.machine.server().get();
    let applied = inner.machine.await_applied(origin, seq);
    let tagged = Tagged { origin, seq, txn };
    let ordered = inner.submit(vec![tagged], false);
    let machine = Arc::clone(&inner.machine);
    let applied = Box::pin(async move {
        let stopped = || EngineError::Unavailable("the engine has stopped".to_owned());
        let ordered = match ordered {
            Ok(ordered) => ordered,
            Err(err) => {
                machine.forget_waiter(origin, seq);
                return Err(err);
            }
        };
        let (mut applied, mut ordered) = (applied, ordered);
        // This replica's apply hands the result over, often before the
        // proposer hears the entry was applied: openraft's core answers its
        // writes only between fsyncs, so that answer can trail the apply by
        // the next entry's fsync. On the leader, having been applied here is
        // all a write needs; a follower also waits for the leader to have
        // applied it (the answer to its forward), so that a write through any
        // server sees it.
        let ordered = tokio::select! {
            result = &mut applied => {
                let applied = result.map_err(|_| stopped())?;
                if machine.role() == Role::Leading {
                    return Ok(applied);
                }
                return ordered
                    .await
                    .unwrap_or_else(|_| Err(stopped()))
                    .map(|_| applied);
            }
            result = &mut ordered => result.unwrap_or_else(|_| Err(stopped())),
        };
        if let Err(err) = ordered {
            machine.forget_waiter(origin, seq);
            return Err(err);
        }
        match tokio::time::timeout(APPLY_WAIT, applied).await {
            Ok(Ok(applied)) => Ok(applied),
            _ => {
                machine.forget_waiter(origin, seq);
                Err(EngineError::Unavailable(format!(
                    "the leader applied the write, but this server did not within {APPLY_WAIT:?}"
                )))
            }
        }
    });
    Proposal {
        tag: Some((origin, seq)),
        applied,
    }
}

impl std::fmt::Debug for RaftEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftEngine").finish_non_exhaustive()
    }
}

/// Checks (or, for a new directory, writes) the identity file: which server
/// this directory belongs to and its layout version.
fn check_identity(dir: &Path, server: ServerId) -> Result<(), StorageError> {
    let path = dir.join("identity");
    let expected = format!(
        "session-server data\nformat {DATA_FORMAT}\nserver {}\n",
        server.get()
    );
    match fs::read_to_string(&path) {
        Ok(found) if found == expected => Ok(()),
        Ok(found) => Err(StorageError::Foreign {
            path,
            detail: format!(
                "it says {:?}, this server expects {:?} (another server's directory, or another version's layout)",
                found.trim().replace('\n', "; "),
                expected.trim().replace('\n', "; ")
            ),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let is_empty = fs::read_dir(dir)
                .map_err(|source| StorageError::Io {
                    path: dir.to_owned(),
                    source,
                })?
                .next()
                .is_none();
            if !is_empty {
                return Err(StorageError::Foreign {
                    path,
                    detail: "the directory holds files but no identity file; \
                             it is not a session-server data directory"
                        .to_owned(),
                });
            }
            fs::write(&path, expected).map_err(|source| StorageError::Io {
                path: path.clone(),
                source,
            })?;
            Ok(())
        }
        Err(source) => Err(StorageError::Io { path, source }),
    }
}

/// The cluster a durable server belongs to.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSettings {
    /// How this server reaches each member's peer listener, itself
    /// included; empty for a server on its own.
    pub(crate) routes: BTreeMap<u64, String>,
    /// Where this server's peer listener binds, if it has one.
    pub(crate) peer_listen: Option<SocketAddr>,
    pub(crate) timing: Timing,
    /// The certificates, when peers talk over mutual TLS.
    pub(crate) tls: Option<Arc<crate::tls::Tls>>,
}

impl RaftEngine {
    /// Opens `dir` and starts the Raft group; loads the state into
    /// `machine` on the way. A server on its own returns once it leads and
    /// its state is initialized; a member of a cluster returns at once, and
    /// serves clients once a leader is elected.
    pub(crate) async fn start(
        dir: &Path,
        server: ServerId,
        snapshot_every: u64,
        machine: Arc<StateMachine>,
        cluster: ClusterSettings,
    ) -> Result<RaftEngine, StorageError> {
        fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_owned(),
            source,
        })?;
        check_identity(dir, server)?;
        let node_id = u64::from(server.get());
        let alone = cluster.routes.keys().all(|&id| id == node_id);
        // Bound first, so a start that cannot listen changes nothing.
        let peer_listener = match cluster.peer_listen {
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| StorageError::Io {
                            path: PathBuf::from(format!("peer listener {addr}")),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let peer_addr = peer_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(|source| StorageError::Io {
                path: PathBuf::from("peer listener"),
                source,
            })?;
        let options = LogStoreOptions {
            flush_latency: Some(machine.metrics().log_flush.clone()),
            ..LogStoreOptions::default()
        };
        let log_dir = dir.join("log");
        // Opening replays the log from disk: blocking work.
        let log = tokio::task::spawn_blocking(move || LogStore::open_with(&log_dir, &options))
            .await
            .map_err(|err| StorageError::Log(err.to_string()))?
            .map_err(|err| StorageError::Log(err.to_string()))?;
        let log_size = spawn_log_size_gauge(log.clone(), Arc::clone(&machine));
        let appends = log.appends();
        let state_machine = StateMachineStore::open(dir.join("snapshots"), Arc::clone(&machine))?;
        let timing = cluster.timing;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let config = openraft::Config {
            cluster_name: "session-service".to_owned(),
            heartbeat_interval: millis(timing.heartbeat),
            election_timeout_min: millis(timing.election_timeout),
            election_timeout_max: millis(timing.election_timeout * 2),
            // Snapshots are asked for by the engine, by transactions.
            snapshot_policy: SnapshotPolicy::Never,
            // On its own, a server keeps no more log behind a snapshot than
            // a restart must replay; in a cluster, a follower a little
            // behind catches up from the log rather than a whole snapshot.
            max_in_snapshot_log_to_keep: if alone { 0 } else { 1000 },
            // An entry may carry a batch of up to 4 MiB.
            max_payload_entries: 64,
            install_snapshot_timeout: millis(timing.election_timeout * 10).max(5000),
            ..openraft::Config::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|err| StorageError::Raft(err.to_string()))?,
        );
        let peers = Peers::new(cluster.routes.clone(), cluster.tls.clone());
        let raft = Raft::new(node_id, config, peers.clone(), log, state_machine)
            .await
            .map_err(|err| StorageError::Raft(err.to_string()))?;
        let (queue, queued) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            raft: raft.clone(),
            machine: Arc::clone(&machine),
            me: node_id,
            peers,
            // Random, so a restarted server never takes the result of a
            // transaction it proposed before for a new request's.
            seq: AtomicU64::new(random_u64().map_err(|source| StorageError::Io {
                path: dir.to_owned(),
                source,
            })?),
            queue,
            appends,
            timing,
            snapshot_at: AtomicU64::new(machine.zxid().saturating_add(snapshot_every)),
            snapshot_every,
        });
        let mut tasks = vec![log_size];
        if let Some(listener) = peer_listener {
            tasks.push(super::peer::serve(
                listener,
                Arc::clone(&inner),
                cluster.tls.clone(),
            ));
        }
        tasks.push(tokio::spawn(proposer(Arc::clone(&inner), queued)).abort_handle());
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|err| StorageError::Raft(err.to_string()))?;
        if !initialized {
            let first = cluster.routes.keys().next().copied().unwrap_or(node_id);
            if first == node_id {
                let members: BTreeMap<u64, BasicNode> = if cluster.routes.is_empty() {
                    let address = peer_addr.map_or_else(String::new, |addr| addr.to_string());
                    BTreeMap::from([(node_id, BasicNode::new(address))])
                } else {
                    cluster
                        .routes
                        .iter()
                        .map(|(id, address)| (*id, BasicNode::new(address.clone())))
                        .collect()
                };
                info!(dir = %dir.display(), members = ?members.keys().collect::<Vec<_>>(),
                    "new data directory: forming the cluster");
                raft.initialize(members)
                    .await
                    .map_err(|err| StorageError::Raft(err.to_string()))?;
            } else {
                info!(dir = %dir.display(), first,
                    "new data directory: waiting for server {first} to form the cluster");
            }
        }
        let engine = RaftEngine {
            inner: Arc::clone(&inner),
            tasks,
            peer_addr,
        };
        if alone {
            raft.wait(Some(READY_TIMEOUT))
                .state(ServerState::Leader, "become leader")
                .await
                .map_err(|err| StorageError::Raft(err.to_string()))?;
            // Everything in the log is applied once the leader's own first
            // entry of its term is: a read index gives exactly that.
            raft.ensure_linearizable()
                .await
                .map_err(|err| StorageError::Raft(err.to_string()))?;
            if !machine.state().replica.is_initialized() {
                inner.propose_genesis().await.map_err(StorageError::Raft)?;
            }
        } else {
            machine.set_role(Role::Unavailable);
        }
        let mut engine = engine;
        engine
            .tasks
            .push(tokio::spawn(roles(Arc::clone(&inner))).abort_handle());
        if !alone {
            engine
                .tasks
                .push(tokio::spawn(reporter(Arc::clone(&inner))).abort_handle());
        }
        Ok(engine)
    }

    /// Where the peer listener is bound, if there is one.
    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }
}

/// A random number from the operating system's generator.
fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(u64::from_le_bytes(bytes))
}

impl Engine for RaftEngine {
    fn shutdown(&self) -> Stopping {
        for task in &self.tasks {
            task.abort();
        }
        let raft = self.inner.raft.clone();
        Box::pin(async move {
            let _ = raft.shutdown().await;
        })
    }

    fn propose(&self, txn: Txn) -> Proposal {
        propose(&self.inner, txn)
    }

    fn sync(&self) -> Synced {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.read_index().await })
    }

    fn cluster(&self) -> Option<ClusterHandle> {
        Some(ClusterHandle(Arc::clone(&self.inner)))
    }
}

/// The admin's hold on a cluster: status and membership changes.
#[derive(Clone)]
pub(crate) struct ClusterHandle(Arc<Inner>);

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("node", &self.0.me)
            .finish_non_exhaustive()
    }
}

/// How long the admin's cluster status waits for each member.
const STATUS_CALL: Duration = Duration::from_millis(1000);

impl ClusterHandle {
    /// Every member as it reports itself, with its lag behind the leader.
    pub(crate) async fn status(&self) -> ClusterStatusResponse {
        let inner = &self.0;
        let m = inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let nodes: Vec<(u64, String)> = membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        let asked = nodes.iter().map(|(id, address)| {
            let id = *id;
            let address = address.clone();
            async move {
                if id == inner.me {
                    return (id, address, Some(inner.status()));
                }
                let Ok(mut client) = inner.peers.client(id, Some(&address)) else {
                    return (id, address, None);
                };
                let answer = network::call(id, STATUS_CALL, client.status(StatusRequest {}))
                    .await
                    .ok();
                (id, address, answer)
            }
        });
        let answers = futures_util::future::join_all(asked).await;
        let leader_index = m.current_leader.and_then(|leader| {
            answers
                .iter()
                .find(|(id, _, _)| *id == leader)
                .and_then(|(_, _, answer)| answer.as_ref())
                .map(|answer| answer.applied_index)
        });
        let members = answers
            .into_iter()
            .map(|(id, address, answer)| ClusterMember {
                node_id: u32::try_from(id).unwrap_or(0),
                peer_address: address,
                role: answer
                    .as_ref()
                    .map_or(MemberRole::Unreachable as i32, |answer| answer.role),
                voter: voters.contains(&id),
                applied_zxid: answer.as_ref().map_or(0, |answer| answer.applied_zxid),
                lag_entries: match (leader_index, answer.as_ref()) {
                    (Some(leader), Some(answer)) => {
                        Some(leader.saturating_sub(answer.applied_index))
                    }
                    _ => None,
                },
            })
            .collect();
        ClusterStatusResponse {
            node_id: u32::try_from(inner.me).unwrap_or(0),
            leader_id: m
                .current_leader
                .and_then(|id| u32::try_from(id).ok())
                .unwrap_or(0),
            term: m.current_term,
            members,
        }
    }

    /// Carries out a membership change (on the leader, wherever asked).
    pub(crate) async fn change(
        &self,
        change: MembershipChange,
    ) -> Result<MembershipView, MembershipRefusal> {
        self.0.change_membership(change).await
    }
}

/// Keeps the `log_bytes` gauge current, every few seconds, until aborted
/// (its clone of the log keeps the directory locked).
fn spawn_log_size_gauge(log: LogStore, machine: Arc<StateMachine>) -> tokio::task::AbortHandle {
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            let log = log.clone();
            let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || log.disk_bytes()).await else {
                continue;
            };
            machine
                .metrics()
                .log_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    });
    task.abort_handle()
}
