//! The Raft state machine: the server's [`StateMachine`] (the replica, its
//! watches and liveness) fed from the Raft log, with snapshots in files.
//!
//! Each normal log entry carries a batch of transactions, applied in order,
//! each with the next zxid. Blank and membership entries are Raft's own; they
//! advance the applied log id but no zxid.
//!
//! A snapshot is the replica's [`ReplicaSnapshot`] (sessions with their
//! timeouts and owners, the tree, the password secret, the id high-water
//! mark) with the last applied log id and membership, in one file written
//! atomically (a temporary file, fsynced, renamed, the directory fsynced),
//! checksummed, and named by its last log index. The newest snapshot is the
//! one loaded at start; older ones are removed once a newer one is durable.

use std::fs;
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use openraft::BasicNode;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use session_core::{Replica, ReplicaSnapshot};
use thiserror::Error;
use tracing::{info, warn};

use super::{Response, TypeConfig};
use crate::state::StateMachine;

/// The first bytes of every snapshot file.
const MAGIC: &[u8; 8] = b"SESSNAP\0";
/// The layout of snapshot files this build reads and writes.
const FORMAT: u32 = 1;
/// Magic, format, payload length, CRC-32 of the payload.
const HEADER: usize = 8 + 4 + 8 + 4;

/// What a snapshot file holds after its header.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    replica: ReplicaSnapshot,
}

/// Why the snapshots directory could not be used. Each names the file.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Reading or writing a snapshot file failed.
    #[error("snapshot file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a snapshot of this service, or was cut short, or its
    /// checksum does not match: it was damaged on disk.
    #[error("snapshot file {path} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The file was written by a build with another snapshot layout.
    #[error("snapshot file {path} has format {found}; this server reads format {FORMAT}")]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// The format it has.
        found: u32,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// The snapshot files of one data directory.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    pub(crate) fn open(dir: PathBuf) -> Result<SnapshotDir, SnapshotError> {
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(SnapshotDir { dir })
    }

    fn file_name(meta: &SnapshotMeta<u64, BasicNode>) -> String {
        let index = meta.last_log_id.map_or(0, |id| id.index);
        format!("snapshot-{index:020}.bin")
    }

    /// The snapshot files, newest (highest index) first.
    fn files(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map_err(io_error(&self.dir))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("snapshot-") && name.ends_with(".bin"))
            })
            .collect();
        files.sort();
        files.reverse();
        Ok(files)
    }

    /// Writes a snapshot durably and removes the older ones; returns its
    /// bytes (the payload openraft hands on) and its size.
    fn write(&self, file: &SnapshotFile) -> Result<Vec<u8>, SnapshotError> {
        let name = Self::file_name(&file.meta);
        let path = self.dir.join(&name);
        let payload = postcard::to_allocvec(file)
            .map_err(|err| corrupt(&path, format!("cannot encode: {err}")))?;
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT.to_be_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
        bytes.extend_from_slice(&payload);
        let temporary = self.dir.join(format!("{name}.tmp"));
        {
            let mut out = fs::File::create(&temporary).map_err(io_error(&temporary))?;
            out.write_all(&bytes).map_err(io_error(&temporary))?;
            out.sync_all().map_err(io_error(&temporary))?;
        }
        fs::rename(&temporary, &path).map_err(io_error(&path))?;
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&self.dir))?;
        for older in self.files()?.into_iter().filter(|older| *older != path) {
            if let Err(err) = fs::remove_file(&older) {
                warn!(file = %older.display(), error = %err, "could not remove an old snapshot");
            }
        }
        Ok(bytes)
    }

    /// Reads and checks one snapshot file's bytes.
    fn decode(path: &Path, bytes: &[u8]) -> Result<SnapshotFile, SnapshotError> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(corrupt(path, "no snapshot header"));
        }
        let word = |at: usize| -> [u8; 4] {
            let mut out = [0; 4];
            out.copy_from_slice(&bytes[at..at + 4]);
            out
        };
        let format = u32::from_be_bytes(word(8));
        if format != FORMAT {
            return Err(SnapshotError::Incompatible {
                path: path.to_owned(),
                found: format,
            });
        }
        let mut len = [0; 8];
        len.copy_from_slice(&bytes[12..20]);
        let len = u64::from_be_bytes(len);
        let crc = u32::from_be_bytes(word(20));
        let payload = &bytes[HEADER..];
        if payload.len() as u64 != len {
            return Err(corrupt(
                path,
                format!(
                    "the header says {len} bytes, the file holds {}",
                    payload.len()
                ),
            ));
        }
        if crc32fast::hash(payload) != crc {
            return Err(corrupt(path, "checksum mismatch"));
        }
        postcard::from_bytes(payload).map_err(|err| corrupt(path, err.to_string()))
    }

    /// The newest snapshot with its bytes, if any. A damaged newest snapshot
    /// is an error, never a reason to fall back silently.
    fn newest(&self) -> Result<Option<(SnapshotFile, Vec<u8>)>, SnapshotError> {
        let Some(path) = self.files()?.into_iter().next() else {
            return Ok(None);
        };
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        let file = Self::decode(&path, &bytes)?;
        Ok(Some((file, bytes)))
    }

    /// Removes snapshots that were never renamed into place (a crash while
    /// writing one).
    fn remove_temporaries(&self) -> Result<(), SnapshotError> {
        for entry in fs::read_dir(&self.dir)
            .map_err(io_error(&self.dir))?
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "tmp") {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

fn storage_error(err: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageError::from_io_error(
        ErrorSubject::Snapshot(None),
        ErrorVerb::Write,
        io::Error::other(err.to_string()),
    )
}

/// A snapshot's meta and its file's bytes.
type Current = (SnapshotMeta<u64, BasicNode>, Arc<Vec<u8>>);

/// The state machine openraft drives.
#[derive(Debug, Clone)]
pub(crate) struct StateMachineStore {
    machine: Arc<StateMachine>,
    snapshots: SnapshotDir,
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// The newest snapshot's meta and bytes, as openraft asks for them.
    current: Option<Current>,
}

impl StateMachineStore {
    /// Opens the snapshots in `dir` and loads the newest into `machine`.
    pub(crate) fn open(
        dir: PathBuf,
        machine: Arc<StateMachine>,
    ) -> Result<StateMachineStore, SnapshotError> {
        let snapshots = SnapshotDir::open(dir)?;
        let mut store = StateMachineStore {
            machine,
            snapshots,
            applied: None,
            membership: StoredMembership::default(),
            current: None,
        };
        if let Some((file, bytes)) = store.snapshots.newest()? {
            let path = store.snapshots.dir.join(SnapshotDir::file_name(&file.meta));
            store.load(&path, file, bytes)?;
        }
        // Only once the start is known to go on: a refused start changes
        // nothing on disk.
        store.snapshots.remove_temporaries()?;
        Ok(store)
    }

    fn load(
        &mut self,
        path: &Path,
        file: SnapshotFile,
        bytes: Vec<u8>,
    ) -> Result<(), SnapshotError> {
        let replica = Replica::restore(file.replica)
            .map_err(|err| corrupt(path, format!("inconsistent state: {err}")))?;
        info!(
            file = %path.display(),
            zxid = replica.zxid(),
            sessions = replica.session_count(),
            nodes = replica.tree().node_count(),
            "loaded snapshot"
        );
        let zxid = replica.zxid();
        self.machine.restore(replica, Instant::now());
        self.applied = file.meta.last_log_id;
        self.membership = file.meta.last_membership.clone();
        self.set_current(file.meta, zxid, Arc::new(bytes));
        Ok(())
    }

    /// Keeps the newest snapshot, and says so in the metrics.
    fn set_current(&mut self, meta: SnapshotMeta<u64, BasicNode>, zxid: u64, bytes: Arc<Vec<u8>>) {
        let metrics = self.machine.metrics();
        metrics
            .snapshot_zxid
            .set(i64::try_from(zxid).unwrap_or(i64::MAX));
        metrics
            .snapshot_bytes
            .set(i64::try_from(bytes.len()).unwrap_or(i64::MAX));
        self.current = Some((meta, bytes));
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.applied.map_or(0, |id| id.leader_id.term),
                self.applied.map_or(0, |id| id.index)
            ),
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            replica: self.machine.export(),
        };
        let zxid = file.replica.zxid;
        let snapshots = self.snapshots.clone();
        let bytes = tokio::task::spawn_blocking(move || snapshots.write(&file))
            .await
            .map_err(storage_error)?
            .map_err(storage_error)?;
        info!(
            index = meta.last_log_id.map_or(0, |id| id.index),
            zxid,
            bytes = bytes.len(),
            "snapshot written"
        );
        let bytes = Arc::new(bytes);
        self.set_current(meta.clone(), zxid, Arc::clone(&bytes));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes.as_ref().clone())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let now = Instant::now();
        let mut responses = Vec::new();
        for entry in entries {
            self.applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                // Each transaction with the next zxid, as every replica does.
                EntryPayload::Normal(batch) => {
                    for tagged in &batch.0 {
                        self.machine
                            .apply_proposed(tagged.origin, tagged.seq, &tagged.txn, now);
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            responses.push(Response(self.machine.zxid()));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let path = self.snapshots.dir.join(SnapshotDir::file_name(meta));
        let file = SnapshotDir::decode(&path, &bytes).map_err(storage_error)?;
        // Never go back: a snapshot older than what is applied is ignored
        // (openraft #531).
        if file.meta.last_log_id <= self.applied {
            return Ok(());
        }
        let snapshots = self.snapshots.clone();
        let written = tokio::task::spawn_blocking(move || {
            let bytes = snapshots.write(&file)?;
            Ok::<_, SnapshotError>((file, bytes))
        })
        .await
        .map_err(storage_error)?
        .map_err(storage_error)?;
        let (file, bytes) = written;
        self.load(&path, file, bytes).map_err(storage_error)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.current.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.as_ref().clone())),
        }))
    }
}
