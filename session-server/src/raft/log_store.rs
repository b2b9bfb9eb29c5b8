//! The Raft log on disk: openraft's [`RaftLogStorage`] on `raft-log`.
//!
//! `raft-log` (by openraft's author) keeps the vote, the committed log id
//! and the entries as records in chunk files, each record with a CRC32. A
//! flush worker thread writes and fsyncs what the store hands it, batching
//! the requests that arrive while it works (group commit), and calls each
//! request's callback once its data is synced; an `append`'s callback is the
//! openraft [`LogFlushed`], so openraft learns entries are durable only when
//! they are. `save_vote`, `truncate` and `purge` wait for their own fsync.
//!
//! Opening replays the whole log. A record cut short at the end of the last
//! chunk file (a write a crash interrupted) is dropped: the bytes are saved
//! under `torn/` in the directory, the drop is logged, and
//! [`LogStore::recovery`] reports it. Damage anywhere else (a checksum
//! mismatch in any complete record, even the last) is refused with
//! [`LogStoreError::Corrupt`], naming the file and the offset: dropping it
//! could lose entries that were acknowledged.
//!
//! All of it sits behind one `std::sync::Mutex`, held only for in-memory
//! work (buffering records, reading the in-memory index and payload cache,
//! now and then a `pread` of an entry the cache dropped); no lock is held
//! while waiting for a flush.

use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, StorageError,
    Vote,
};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::Span;
use raft_log::{DumpApi, RaftLog, WALRecord};

use super::TypeConfig;
use super::log_codec::{
    Appends, FlushCallback, FlushTiming, FormatMarker, INCOMPATIBLE_TAG, LogTypes, StoredLogId,
    StoredPayload, StoredVote,
};

/// The directory under the log directory where dropped torn tails are kept.
const TORN_DIR: &str = "torn";

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogStoreError {
    /// The directory does not exist and cannot be created.
    #[error("cannot create the Raft log directory {}: {source}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `raft-log` takes its directory as a string.
    #[error("the Raft log directory {} is not a UTF-8 path", dir.display())]
    NonUtf8Path {
        /// The directory.
        dir: PathBuf,
    },
    /// Another process (or another open [`LogStore`]) holds the directory's
    /// lock.
    #[error(
        "the Raft log directory {} is in use by another process (or is already open in this one): {source}",
        dir.display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// What `raft-log` said.
        source: io::Error,
    },
    /// A complete record does not pass its checksum or does not decode, and
    /// it is not an interrupted last write. Nothing was changed on disk.
    #[error(
        "the Raft log file {} is damaged at byte {offset} (record {record} of the file): {reason}; \
         refusing to open the log, since dropping the damaged record and those after it could lose \
         acknowledged entries",
        file.display()
    )]
    Corrupt {
        /// The chunk file.
        file: PathBuf,
        /// Where the damaged record starts in it.
        offset: u64,
        /// Its position in the file, 0 for the first.
        record: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The directory holds a log of another format (another version of this
    /// server, or not this server's at all).
    #[error("the Raft log in {} was written in an incompatible format: {reason}", location.display())]
    IncompatibleFormat {
        /// The chunk file, or the directory.
        location: PathBuf,
        /// What was found.
        reason: String,
    },
    /// A torn tail could not be saved before dropping it.
    #[error("cannot save the torn tail of {} to {}: {source}", file.display(), backup.display())]
    Backup {
        /// The chunk file.
        file: PathBuf,
        /// Where it was to be saved.
        backup: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Any other failure to open or initialise the log (I/O errors, chunk
    /// files missing between others, records that contradict each other).
    #[error("cannot open the Raft log in {}: {source}", dir.display())]
    Open {
        /// The directory.
        dir: PathBuf,
        /// What `raft-log` said.
        source: io::Error,
    },
}

/// Sizes and cache limits; the defaults suit the server.
#[derive(Debug, Clone)]
pub(crate) struct LogStoreOptions {
    /// A chunk file is closed after this many records.
    pub(crate) chunk_max_records: usize,
    /// A chunk file is closed once it reaches this many bytes. Purging
    /// deletes whole chunk files, and the entries of the open chunk file all
    /// stay in memory, so this bounds both the disk a purge leaves and the
    /// memory of the cache.
    pub(crate) chunk_max_size: usize,
    /// The most payloads of closed chunk files kept in memory.
    pub(crate) cache_max_items: usize,
    /// The most bytes of such payloads kept in memory.
    pub(crate) cache_max_bytes: usize,
    /// Where to record how long each append took to reach the disk.
    pub(crate) flush_latency: Option<prometheus_client::metrics::histogram::Histogram>,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        Self {
            chunk_max_records: 1 << 20,
            chunk_max_size: 64 << 20,
            cache_max_items: 100_000,
            cache_max_bytes: 256 << 20,
            flush_latency: None,
        }
    }
}

impl LogStoreOptions {
    fn config(&self, dir: &str, truncate_incomplete_record: bool) -> Arc<raft_log::Config> {
        let mut config = raft_log::Config::new(dir);
        config.wal.chunk_max_records = Some(self.chunk_max_records);
        config.wal.chunk_max_size = Some(self.chunk_max_size);
        config.wal.truncate_incomplete_record = Some(truncate_incomplete_record);
        config.log_cache_max_items = Some(self.cache_max_items);
        config.log_cache_capacity = Some(self.cache_max_bytes);
        Arc::new(config)
    }
}

/// What opening had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// The incomplete last record dropped, if any.
    pub(crate) torn_tail: Option<TornTail>,
    /// Chunk files `raft-log` deleted because not even their first record
    /// was complete (a crash while starting a new chunk file), with their
    /// sizes.
    pub(crate) removed_chunks: Vec<(PathBuf, u64)>,
}

/// An incomplete record dropped from the end of the last chunk file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TornTail {
    /// The chunk file.
    pub(crate) file: PathBuf,
    /// Where the dropped bytes started (the file's length now).
    pub(crate) offset: u64,
    /// How many bytes were dropped.
    pub(crate) dropped_bytes: u64,
    /// Where they were saved; `None` when they were all zeros.
    pub(crate) backup: Option<PathBuf>,
}

/// The Raft log store: the [`RaftLogStorage`] and, cloned, the
/// [`RaftLogReader`] of the server's openraft instance.
///
/// Clones share the log. The directory stays locked until the last clone is
/// dropped; dropping it writes and fsyncs what is pending and joins the
/// flush worker thread.
#[derive(Clone)]
pub(crate) struct LogStore {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    log: Mutex<RaftLog<LogTypes>>,
    recovery: Recovery,
    flush_latency: Option<prometheus_client::metrics::histogram::Histogram>,
    /// openraft's appends handed to the flush worker, and finished.
    appends: Arc<tokio::sync::watch::Sender<Appends>>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.shared.dir)
            .field("recovery", &self.shared.recovery)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens the log in `dir`, creating the directory if it is missing.
    ///
    /// Blocking: it replays the whole log from disk. Call it before starting
    /// Raft, from a blocking context (e.g. `spawn_blocking`).
    #[cfg(test)]
    pub(crate) fn open(dir: &Path) -> Result<Self, LogStoreError> {
        Self::open_with(dir, &LogStoreOptions::default())
    }

    /// [`LogStore::open`] with other sizes.
    pub(crate) fn open_with(dir: &Path, options: &LogStoreOptions) -> Result<Self, LogStoreError> {
        fs::create_dir_all(dir).map_err(|source| LogStoreError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let dir_str = dir.to_str().ok_or_else(|| LogStoreError::NonUtf8Path {
            dir: dir.to_path_buf(),
        })?;
        let open_err = |source| LogStoreError::Open {
            dir: dir.to_path_buf(),
            source,
        };
        let before = list_chunks(dir).map_err(open_err)?;

        let mut recovery = Recovery::default();
        // First without dropping anything: on failure, find out what is
        // wrong before letting `raft-log` cut the tail.
        let mut log = match RaftLog::<LogTypes>::open(options.config(dir_str, false)) {
            Ok(log) => log,
            Err(err) => recover(dir, dir_str, options, err, &mut recovery)?,
        };

        let after = list_chunks(dir).map_err(open_err)?;
        for chunk in &before {
            if !after.iter().any(|c| c.path == chunk.path) {
                tracing::warn!(
                    file = %chunk.path.display(),
                    bytes = chunk.size,
                    "removed a trailing Raft log chunk file whose first record was incomplete \
                     (a crash while starting it)"
                );
                recovery
                    .removed_chunks
                    .push((chunk.path.clone(), chunk.size));
            }
        }

        check_format(dir, &mut log)?;

        Ok(Self {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                log: Mutex::new(log),
                recovery,
                flush_latency: options.flush_latency.clone(),
                appends: Arc::new(tokio::sync::watch::Sender::new(Appends::default())),
            }),
        })
    }

    /// The size of the log's chunk files, in bytes.
    pub(crate) fn disk_bytes(&self) -> io::Result<u64> {
        Ok(list_chunks(&self.shared.dir)?
            .iter()
            .map(|chunk| chunk.size)
            .sum())
    }

    /// What opening repaired.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "for the engine's startup report and metrics; tests use it now"
        )
    )]
    pub(crate) fn recovery(&self) -> &Recovery {
        &self.shared.recovery
    }

    /// Follows openraft's appends: how many were handed to the store and
    /// how many are flushed. openraft 0.9 waits for each append's flush
    /// before it takes the next write, so a proposer that hands it the next
    /// entry only once nothing waits for the disk gathers into that entry
    /// every write that arrived during the flush.
    pub(crate) fn appends(&self) -> tokio::sync::watch::Receiver<Appends> {
        self.shared.appends.subscribe()
    }

    /// The flush worker's counters (batches, fsyncs, latencies).
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "for the engine's startup report and metrics; tests use it now"
        )
    )]
    pub(crate) fn flush_metrics(&self) -> Result<raft_log::FlushMetrics, io::Error> {
        Ok(self.lock()?.stat().flush_metrics)
    }

    fn lock(&self) -> Result<MutexGuard<'_, RaftLog<LogTypes>>, io::Error> {
        self.shared.log.lock().map_err(|_| {
            io::Error::other("the Raft log's lock is poisoned: a thread panicked holding it")
        })
    }

    /// Buffers `entries` and asks for a flush; `callback` is called when
    /// they are synced (or the flush failed). The entries are readable when
    /// this returns.
    #[allow(
        clippy::result_large_err,
        reason = "openraft's StorageError, which the storage traits return anyway"
    )]
    pub(crate) fn append_with<I>(
        &self,
        entries: I,
        callback: FlushCallback,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>>,
    {
        let write_err = |e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Write, e);
        // Encode everything first, so a failure leaves the log untouched.
        let records = entries
            .into_iter()
            .map(|entry| {
                StoredPayload::from_entry_payload(&entry.payload)
                    .map(|payload| (StoredLogId(entry.log_id), payload))
                    .map_err(|e| {
                        StorageError::from_io_error(
                            ErrorSubject::Log(entry.log_id),
                            ErrorVerb::Write,
                            io::Error::new(io::ErrorKind::InvalidInput, e),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut log = self.lock().map_err(write_err)?;
        // Entries at or below the purge point are already in the state
        // machine: nothing to keep. openraft never sends them, but its
        // storage suite does (after `get_initial_state` purged up to the
        // state machine's last applied), and expects them accepted;
        // `raft-log` would refuse them as going backwards.
        let purged = log.log_state().purged().map(|id| id.0.index);
        let records = records
            .into_iter()
            .filter(|(id, _)| purged.is_none_or(|purged| id.0.index > purged));
        log.append(records).map_err(write_err)?;
        let counted = matches!(callback, FlushCallback::Append(..));
        log.flush(true, Some(callback)).map_err(write_err)?;
        // Counted under the lock, in the order the appends were handed over.
        if counted {
            self.shared
                .appends
                .send_modify(|appends| appends.started += 1);
        }
        Ok(())
    }

    /// Runs `write` on the log, asks for a flush, and waits (without a
    /// thread) until it is synced.
    async fn write_synced<F>(
        &self,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
        write: F,
    ) -> Result<(), StorageError<u64>>
    where
        F: FnOnce(&mut RaftLog<LogTypes>) -> io::Result<()>,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.lock().and_then(|mut log| {
            write(&mut log)?;
            log.flush(true, Some(FlushCallback::Async(tx)))
        });
        let fail = |e| StorageError::from_io_error(subject.clone(), verb, e);
        sent.map_err(fail)?;
        rx.await
            .unwrap_or_else(|_| {
                Err(io::Error::other(
                    "the Raft log flush worker stopped before syncing",
                ))
            })
            .map_err(fail)
    }

    #[allow(
        clippy::result_large_err,
        reason = "openraft's StorageError, which the storage traits return anyway"
    )]
    fn read_range(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let read_err = |e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
        let stored = {
            let log = self.lock().map_err(read_err)?;
            log.read(start, end)
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_err)?
        };
        stored
            .into_iter()
            .map(|(id, payload)| {
                let payload = payload.to_entry_payload().map_err(|e| {
                    StorageError::from_io_error(
                        ErrorSubject::Log(id.0),
                        ErrorVerb::Read,
                        e.into_io(),
                    )
                })?;
                Ok(Entry {
                    log_id: id.0,
                    payload,
                })
            })
            .collect()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>>
    where
        RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend,
    {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        self.read_range(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let log = self
            .lock()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let state = log.log_state();
        Ok(LogState {
            last_purged_log_id: state.purged().map(|id| id.0),
            last_log_id: state.last().map(|id| id.0),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = StoredVote(*vote);
        self.write_synced(ErrorSubject::Vote, ErrorVerb::Write, move |log| {
            log.save_vote(vote).map(drop)
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let log = self
            .lock()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Vote, ErrorVerb::Read, e))?;
        Ok(log.log_state().vote().map(|v| v.0))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let Some(committed) = committed else {
            return Ok(());
        };
        let write_err = |e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e);
        let mut log = self.lock().map_err(write_err)?;
        let state = log.log_state();
        let committed = StoredLogId(committed);
        // `raft-log` refuses a committed id that goes back or beyond the
        // last entry. Neither happens in openraft; skip rather than fail, as
        // a lower committed id on restart only means re-applying less.
        if state.committed() >= Some(&committed) || state.last() < Some(&committed) {
            tracing::debug!(
                committed = %committed.0,
                saved = ?state.committed().map(|id| id.0),
                last = ?state.last().map(|id| id.0),
                "not saving a committed log id that is not ahead of the saved one or is past the last entry"
            );
            return Ok(());
        }
        log.commit(committed).map_err(write_err)?;
        // Best effort: written now, synced with the next append or vote.
        log.flush(false, None).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        let log = self
            .lock()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(log.log_state().committed().map(|id| id.0))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let timing = self
            .shared
            .flush_latency
            .as_ref()
            .map(|histogram| FlushTiming {
                started: std::time::Instant::now(),
                histogram: histogram.clone(),
            });
        self.append_with(
            entries,
            FlushCallback::Append(callback, timing, Arc::clone(&self.shared.appends)),
        )
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.write_synced(ErrorSubject::Log(log_id), ErrorVerb::Delete, move |log| {
            let past_last = log
                .log_state()
                .last()
                .is_none_or(|last| log_id.index > last.0.index);
            if past_last {
                return Ok(());
            }
            log.truncate(log_id.index).map(drop)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // The chunk files it empties are deleted by the flush worker after
        // this purge record is synced.
        self.write_synced(ErrorSubject::Log(log_id), ErrorVerb::Delete, move |log| {
            log.purge(StoredLogId(log_id)).map(drop)
        })
        .await
    }
}

/// Writes the format marker into a new log, or refuses a log without it.
fn check_format(dir: &Path, log: &mut RaftLog<LogTypes>) -> Result<(), LogStoreError> {
    let state = log.log_state();
    if state.user_data.is_some() {
        // Decoding it already checked its version.
        return Ok(());
    }
    let empty = state.vote().is_none()
        && state.last().is_none()
        && state.purged().is_none()
        && state.committed().is_none();
    if !empty {
        return Err(LogStoreError::IncompatibleFormat {
            location: dir.to_path_buf(),
            reason: "a raft-log directory without the session-server format marker".to_string(),
        });
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    log.save_user_data(Some(FormatMarker))
        .and_then(|_| log.flush(true, Some(FlushCallback::Blocking(tx))))
        .and_then(|()| {
            rx.recv().unwrap_or_else(|_| {
                Err(io::Error::other(
                    "the Raft log flush worker stopped before syncing",
                ))
            })
        })
        .map_err(|source| LogStoreError::Open {
            dir: dir.to_path_buf(),
            source,
        })
}

/// A chunk file.
#[derive(Debug)]
struct ChunkFile {
    /// Its global offset (its id in `raft-log`).
    offset: u64,
    path: PathBuf,
    size: u64,
}

/// The chunk files in `dir`, oldest first.
fn list_chunks(dir: &Path) -> io::Result<Vec<ChunkFile>> {
    let mut chunks = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Ok(offset) =
            raft_log::chunked_wal::Config::parse_chunk_file_name(&name.to_string_lossy())
        else {
            continue;
        };
        chunks.push(ChunkFile {
            offset,
            path: entry.path(),
            size: entry.metadata()?.len(),
        });
    }
    chunks.sort_by_key(|c| c.offset);
    Ok(chunks)
}

/// The first record that does not read back, found by reading every
/// record the way opening does.
#[derive(Debug)]
struct Damage {
    chunk: u64,
    record: u64,
    /// Where the record starts in its file.
    offset: u64,
    kind: io::ErrorKind,
    message: String,
    /// Whether a record written in this build's format was read before it.
    after_marker: bool,
}

fn find_damage(config: Arc<raft_log::Config>) -> io::Result<Option<Damage>> {
    let dump = raft_log::Dump::<LogTypes>::new(config)?;
    let mut damage: Option<Damage> = None;
    let mut seen_marker = false;
    let mut chunk_end = (u64::MAX, 0u64);
    dump.write_with(|chunk_id, record, res| {
        if chunk_end.0 != chunk_id.0 {
            chunk_end = (chunk_id.0, 0);
        }
        match res {
            Ok((segment, rec)) => {
                chunk_end.1 = segment.end().0;
                if let WALRecord::Checkpoint(state) = &rec {
                    seen_marker |= state.user_data.is_some();
                }
            }
            Err(e) if damage.is_none() => {
                damage = Some(Damage {
                    chunk: chunk_id.0,
                    record,
                    offset: chunk_end.1,
                    kind: e.kind(),
                    message: e.to_string(),
                    after_marker: seen_marker,
                });
            }
            Err(_) => {}
        }
        Ok(())
    })?;
    Ok(damage)
}

/// After a failed strict open: explain the failure, or, for an interrupted
/// last write, save and drop it and open again.
fn recover(
    dir: &Path,
    dir_str: &str,
    options: &LogStoreOptions,
    err: io::Error,
    recovery: &mut Recovery,
) -> Result<RaftLog<LogTypes>, LogStoreError> {
    let open_err = |source| LogStoreError::Open {
        dir: dir.to_path_buf(),
        source,
    };
    if err.kind() == io::ErrorKind::WouldBlock {
        return Err(LogStoreError::Locked {
            dir: dir.to_path_buf(),
            source: err,
        });
    }
    let Some(damage) = find_damage(options.config(dir_str, false)).map_err(open_err)? else {
        // Every record reads back: the failure is something else.
        return Err(open_err(err));
    };
    let chunks = list_chunks(dir).map_err(open_err)?;
    let file = dir.join(raft_log::chunked_wal::Config::chunk_file_name(
        raft_log::ChunkId(damage.chunk),
    ));

    if damage.message.contains(INCOMPATIBLE_TAG) && !damage.after_marker {
        return Err(LogStoreError::IncompatibleFormat {
            location: file,
            reason: damage.message,
        });
    }

    // What `raft-log` itself drops when allowed to: a record in the last
    // chunk file that ends early, or that is followed by nothing but zeros
    // (a file extended before its data reached the disk).
    let is_last_chunk = chunks.last().is_some_and(|c| c.offset == damage.chunk);
    let size = chunks
        .iter()
        .find(|c| c.offset == damage.chunk)
        .map_or(0, |c| c.size);
    let all_zero = is_last_chunk && tail_is_zero(&file, damage.offset).map_err(open_err)?;
    if !is_last_chunk || (damage.kind != io::ErrorKind::UnexpectedEof && !all_zero) {
        return Err(LogStoreError::Corrupt {
            file,
            offset: damage.offset,
            record: damage.record,
            reason: damage.message,
        });
    }

    let backup = if all_zero {
        None
    } else {
        Some(save_tail(dir, &file, damage.offset)?)
    };
    let log = RaftLog::<LogTypes>::open(options.config(dir_str, true)).map_err(open_err)?;
    let now = fs::metadata(&file).map_err(open_err)?.len();
    if now != damage.offset {
        return Err(open_err(io::Error::other(format!(
            "expected {} to be cut to {} bytes, found {now}",
            file.display(),
            damage.offset
        ))));
    }
    let dropped_bytes = size - damage.offset;
    tracing::warn!(
        file = %file.display(),
        offset = damage.offset,
        dropped_bytes,
        backup = ?backup,
        reason = %damage.message,
        "dropped an incomplete last record from the Raft log (a write a crash cut short)"
    );
    recovery.torn_tail = Some(TornTail {
        file,
        offset: damage.offset,
        dropped_bytes,
        backup,
    });
    Ok(log)
}

fn tail_is_zero(file: &Path, offset: u64) -> io::Result<bool> {
    let mut f = fs::File::open(file)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = [0u8; 8192];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// Copies `file` from `offset` on into `dir/torn/`, durably.
fn save_tail(dir: &Path, file: &Path, offset: u64) -> Result<PathBuf, LogStoreError> {
    let torn = dir.join(TORN_DIR);
    let name = file
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let backup = torn.join(format!("{name}.at-{offset}"));
    let result = (|| {
        fs::create_dir_all(&torn)?;
        let mut src = fs::File::open(file)?;
        src.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        src.read_to_end(&mut bytes)?;
        let mut dst = fs::File::create(&backup)?;
        dst.write_all(&bytes)?;
        dst.sync_all()?;
        fs::File::open(&torn)?.sync_all()?;
        fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|source| LogStoreError::Backup {
        file: file.to_path_buf(),
        backup: backup.clone(),
        source,
    })?;
    Ok(backup)
}

#[cfg(test)]
mod tests;
