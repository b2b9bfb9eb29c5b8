//! [`RaftEngine`]: the engine of a durable server — a one-member openraft
//! group whose log is on disk. Every transaction is appended, fsynced and
//! applied through it; its log index is the transaction's zxid.
//!
//! Starting it ([`RaftEngine::start`]) opens the data directory (refusing one
//! of another server or an incompatible layout), loads the newest snapshot,
//! lets openraft replay the log behind it, waits until this server leads,
//! and on a fresh directory writes the genesis transaction (the password
//! secret and the first session id every later start reads back).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use session_core::{Applied, ServerId, Txn};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::log_store::{LogStore, LogStoreOptions};
use super::state_machine::{SnapshotError, StateMachineStore};
use super::{Batch, TypeConfig};
use crate::engine::{Engine, EngineError, Proposal, Stopping};
use crate::state::StateMachine;

/// The layout of data directories this build reads and writes.
const DATA_FORMAT: u32 = 1;
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

/// A one-member Raft group with its log and snapshots on disk.
pub(crate) struct RaftEngine {
    raft: Raft<TypeConfig>,
    proposals: mpsc::UnboundedSender<Proposed>,
    batcher: tokio::task::AbortHandle,
    log_size: tokio::task::AbortHandle,
}

/// A transaction waiting for the next log entry, and who waits for it.
struct Proposed {
    txn: Txn,
    reply: oneshot::Sender<Result<Applied, EngineError>>,
}

/// The most transactions, and about the most bytes, one log entry carries.
const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 4 << 20;

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

/// Proposes batches: the first proposal waiting, with every one that arrived
/// meanwhile (up to the caps), as one log entry; while it is being written
/// and fsynced, the next batch gathers. So concurrent writes share an fsync.
///
/// It also asks for a snapshot every `snapshot_every` transactions (a log
/// entry may carry many, so openraft's own policy, which counts entries,
/// would let the log a restart replays grow with the batch size).
async fn batcher(
    raft: Raft<TypeConfig>,
    mut proposals: mpsc::UnboundedReceiver<Proposed>,
    machine: Arc<StateMachine>,
    snapshot_every: u64,
) {
    let mut snapshot_at = machine.zxid().saturating_add(snapshot_every);
    while let Some(first) = proposals.recv().await {
        let mut bytes = approximate_size(&first.txn);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let Ok(next) = proposals.try_recv() else {
                break;
            };
            bytes += approximate_size(&next.txn);
            batch.push(next);
        }
        let (txns, replies): (Vec<Txn>, Vec<_>) = batch
            .into_iter()
            .map(|proposed| (proposed.txn, proposed.reply))
            .unzip();
        match raft.client_write(Batch(txns)).await {
            Ok(written) if written.data.0.len() == replies.len() => {
                for (reply, applied) in replies.into_iter().zip(written.data.0) {
                    let _ = reply.send(Ok(applied));
                }
            }
            Ok(written) => {
                let detail = format!(
                    "a log entry of {} transactions applied {}",
                    replies.len(),
                    written.data.0.len()
                );
                for reply in replies {
                    let _ = reply.send(Err(EngineError::Unavailable(detail.clone())));
                }
            }
            Err(err) => {
                let detail = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(EngineError::Unavailable(detail.clone())));
                }
            }
        }
        if machine.zxid() >= snapshot_at {
            // Returns at once; the snapshot is built beside the writes.
            let _ = raft.trigger().snapshot().await;
            snapshot_at = machine.zxid().saturating_add(snapshot_every);
        }
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

impl RaftEngine {
    /// Opens `dir` and starts the Raft group, ready to take writes; loads
    /// the state into `machine` on the way.
    pub(crate) async fn start(
        dir: &Path,
        server: ServerId,
        advertise: SocketAddr,
        snapshot_every: u64,
        machine: Arc<StateMachine>,
    ) -> Result<RaftEngine, StorageError> {
        fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_owned(),
            source,
        })?;
        check_identity(dir, server)?;
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
        let state_machine = StateMachineStore::open(dir.join("snapshots"), Arc::clone(&machine))?;
        let config = openraft::Config {
            cluster_name: "session-service".to_owned(),
            // Snapshots are asked for by the batcher, by transactions.
            snapshot_policy: SnapshotPolicy::Never,
            // Keep no more log behind a snapshot than a restart must replay.
            max_in_snapshot_log_to_keep: 0,
            ..openraft::Config::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|err| StorageError::Raft(err.to_string()))?,
        );
        let node_id = u64::from(server.get());
        let raft = Raft::new(node_id, config, NoPeers, log, state_machine)
            .await
            .map_err(|err| StorageError::Raft(err.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|err| StorageError::Raft(err.to_string()))?;
        if !initialized {
            info!(dir = %dir.display(), "new data directory: forming a one-member group");
            let members = BTreeMap::from([(node_id, BasicNode::new(advertise.to_string()))]);
            raft.initialize(members)
                .await
                .map_err(|err| StorageError::Raft(err.to_string()))?;
        }
        raft.wait(Some(READY_TIMEOUT))
            .state(ServerState::Leader, "become leader")
            .await
            .map_err(|err| StorageError::Raft(err.to_string()))?;
        // Everything in the log is applied once the leader's own first entry
        // of its term is: a read index gives exactly that.
        raft.ensure_linearizable()
            .await
            .map_err(|err| StorageError::Raft(err.to_string()))?;
        let (proposals, waiting) = mpsc::unbounded_channel();
        let batcher = tokio::spawn(batcher(
            raft.clone(),
            waiting,
            Arc::clone(&machine),
            snapshot_every,
        ))
        .abort_handle();
        let engine = RaftEngine {
            raft,
            proposals,
            batcher,
            log_size,
        };
        if !machine.state().replica.is_initialized() {
            let genesis = Txn::Genesis {
                secret: crate::server::random_secret().map_err(|source| StorageError::Io {
                    path: dir.to_owned(),
                    source,
                })?,
                // From the wall clock, so it stays above ids an earlier, lost
                // directory of this server id handed out.
                first_id: crate::server::first_session_id(server).map_err(|source| {
                    StorageError::Io {
                        path: dir.to_owned(),
                        source,
                    }
                })?,
            };
            let applied = engine
                .propose(genesis)
                .await
                .map_err(|err| StorageError::Raft(err.to_string()))?;
            if let Err(err) = applied.result {
                return Err(StorageError::Raft(format!("genesis refused: {err}")));
            }
        }
        Ok(engine)
    }
}

impl Engine for RaftEngine {
    fn shutdown(&self) -> Stopping {
        self.log_size.abort();
        self.batcher.abort();
        let raft = self.raft.clone();
        Box::pin(async move {
            let _ = raft.shutdown().await;
        })
    }

    fn propose(&self, txn: Txn) -> Proposal {
        let (reply, answer) = oneshot::channel();
        let queued = self.proposals.send(Proposed { txn, reply });
        Box::pin(async move {
            queued.map_err(|_| EngineError::Unavailable("the engine has stopped".to_owned()))?;
            answer.await.map_err(|_| {
                EngineError::Unavailable(
                    "the engine stopped before the write was applied".to_owned(),
                )
            })?
        })
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

/// The network of a one-member group: there is no one to talk to.
#[derive(Debug, Clone, Copy)]
struct NoPeers;

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

fn unreachable<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other(
        "this server has no peers",
    )))
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }
}
