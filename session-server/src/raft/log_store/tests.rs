//! Tests of the Raft log store on real directories: openraft's storage
//! suite, restarts, torn and damaged files, the directory lock, and group
//! commit.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, Membership, RaftSnapshotBuilder, RaftTypeConfig,
    Snapshot, SnapshotMeta, StoredMembership,
};
use raft_log::{RaftLogAction, Segment};
use session_core::{CreateMode, ServerId, SessionId, Txn};

use crate::raft::{Batch, Tagged};

use super::*;

/// A directory under the system temp dir, unique to the test, removed on
/// drop. Not created: opening the store creates it.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let unique = format!(
            "session-server-log-store-{name}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self(std::env::temp_dir().join(unique))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        drop(fs::remove_dir_all(&self.0));
    }
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn txn(i: u64) -> Txn {
    if i % 2 == 0 {
        Txn::CloseSession {
            id: SessionId::from_u64(0x0100_0000_0000_0000 + i),
        }
    } else {
        Txn::CreateNode {
            session: SessionId::from_u64(0x0100_0000_0000_0000 + i),
            owner: ServerId::new(1).expect("server id"),
            path: format!("/node-{i}"),
            data: Bytes::from(vec![i as u8; (i % 40) as usize]),
            mode: CreateMode::Ephemeral,
            acl: session_core::Acl::open(),
            auth: Vec::new(),
            time_ms: 1_700_000_000_000 + i as i64,
        }
    }
}

fn normal(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Batch(vec![Tagged {
            origin: 1,
            seq: index,
            txn: txn(index),
        }])),
    }
}

fn membership_entry(term: u64, index: u64) -> Entry<TypeConfig> {
    let mut nodes = BTreeMap::new();
    nodes.insert(1, BasicNode::new("127.0.0.1:2888"));
    nodes.insert(2, BasicNode::new("127.0.0.2:2888"));
    nodes.insert(3, BasicNode::new("learner.example:2888"));
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(
            vec![[1, 2].into_iter().collect()],
            nodes,
        )),
    }
}

fn small_chunks() -> LogStoreOptions {
    LogStoreOptions {
        chunk_max_records: 16,
        ..LogStoreOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Appends entries `first..=last` of term 1, one `append` each, waiting for
/// each to be flushed (through openraft's `LogFlushed`).
async fn fill(store: &mut LogStore, first: u64, last: u64) {
    for i in first..=last {
        store.blocking_append([normal(1, i)]).await.expect("append");
    }
}

async fn all_entries(store: &mut LogStore) -> Vec<Entry<TypeConfig>> {
    store.try_get_log_entries(..).await.expect("read")
}

/// One record as `raft-log` reads it back.
#[derive(Debug)]
struct Record {
    file: PathBuf,
    index: u64,
    offset: u64,
    size: u64,
    /// The log index, for an append.
    append: Option<u64>,
    /// Whether it is a checkpoint carrying the format marker.
    marker: bool,
}

/// Every record of the (closed) log in `dir`, in order.
fn records(dir: &Path, options: &LogStoreOptions) -> Vec<Record> {
    let dump = raft_log::Dump::<LogTypes>::new(options.config(dir.to_str().expect("utf-8"), false))
        .expect("dump");
    let mut out = Vec::new();
    dump.write_with(|chunk, index, res| {
        let (segment, rec): (Segment, _) = res?;
        let append = match &rec {
            WALRecord::Action(RaftLogAction::Append(id, _)) => Some(id.0.index),
            _ => None,
        };
        let marker = matches!(&rec, WALRecord::Checkpoint(state) if state.user_data.is_some());
        out.push(Record {
            file: dir.join(raft_log::chunked_wal::Config::chunk_file_name(chunk)),
            index,
            offset: segment.offset().0,
            size: segment.size().0,
            append,
            marker,
        });
        Ok(())
    })
    .expect("read records");
    out
}

/// The bytes of every chunk file, to check a refused open changed nothing.
fn snapshot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    list_chunks(dir)
        .expect("list")
        .into_iter()
        .map(|c| {
            let bytes = fs::read(&c.path).expect("read chunk");
            (c.path, bytes)
        })
        .collect()
}

fn flip_byte(file: &Path, at: u64) {
    let mut bytes = fs::read(file).expect("read");
    bytes[at as usize] ^= 0x40;
    fs::write(file, bytes).expect("write");
}

// ---------------------------------------------------------------------------
// openraft's conformance suite.

/// A minimal in-memory state machine for the suite: last applied, the
/// membership, and snapshots in memory. It never applies a transaction (the
/// suite builds none).
#[derive(Debug, Clone, Default)]
struct MemStateMachine {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug, Default)]
struct MemInner {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

impl MemStateMachine {
    fn inner(&self) -> MutexGuard<'_, MemInner> {
        self.inner.lock().expect("state machine lock")
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let mut inner = self.inner();
        inner.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: format!("snapshot-{}", inner.snapshots_built),
        };
        let data = format!("{:?}", inner.last_applied).into_bytes();
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let inner = self.inner();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<<TypeConfig as RaftTypeConfig>::R>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner();
        let mut responses = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            if let EntryPayload::Membership(membership) = entry.payload {
                inner.membership = StoredMembership::new(Some(entry.log_id), membership);
            }
            responses.push(Default::default());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self {
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
        let mut inner = self.inner();
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), snapshot.into_inner()));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.inner().snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

struct SuiteBuilder;

impl StoreBuilder<TypeConfig, LogStore, MemStateMachine, TempDir> for SuiteBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, MemStateMachine), StorageError<u64>> {
        let dir = TempDir::new("suite");
        let store = LogStore::open(dir.path()).map_err(|e| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, io::Error::other(e))
        })?;
        Ok((dir, store, MemStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::<TypeConfig, LogStore, MemStateMachine, SuiteBuilder, TempDir>::test_all(SuiteBuilder)
        .expect("openraft storage suite");
}

// ---------------------------------------------------------------------------
// Restarts.

#[test]
fn everything_survives_a_restart() {
    let dir = TempDir::new("restart");
    let rt = runtime();
    rt.block_on(async {
        let mut store = LogStore::open(dir.path()).expect("open");
        assert_eq!(store.recovery(), &Recovery::default());
        store.save_vote(&Vote::new(1, 1)).await.expect("vote");
        store
            .blocking_append([
                Entry {
                    log_id: log_id(1, 1),
                    payload: EntryPayload::Blank,
                },
                membership_entry(1, 2),
            ])
            .await
            .expect("append");
        fill(&mut store, 3, 20).await;
        store
            .save_vote(&Vote::new_committed(1, 1))
            .await
            .expect("vote");
        store
            .save_committed(Some(log_id(1, 12)))
            .await
            .expect("committed");
        // A conflicting suffix replaced by a new leader's entries.
        store.truncate(log_id(1, 18)).await.expect("truncate");
        store
            .blocking_append([normal(2, 18)])
            .await
            .expect("append");
        store.purge(log_id(1, 4)).await.expect("purge");
    });
    let expected_entries: Vec<_> = (5..=17)
        .map(|i| normal(1, i))
        .chain([normal(2, 18)])
        .collect();
    rt.block_on(async {
        let mut store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(store.recovery(), &Recovery::default());
        assert_eq!(
            store.read_vote().await.expect("vote"),
            Some(Vote::new_committed(1, 1))
        );
        assert_eq!(
            store.read_committed().await.expect("committed"),
            Some(log_id(1, 12))
        );
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
        assert_eq!(state.last_log_id, Some(log_id(2, 18)));
        assert_eq!(all_entries(&mut store).await, expected_entries);
        // The reader shares the log.
        let mut reader = store.get_log_reader().await;
        let two = reader.try_get_log_entries(6..=7).await.expect("read");
        assert_eq!(two, vec![normal(1, 6), normal(1, 7)]);
        assert!(
            reader
                .try_get_log_entries(7..7)
                .await
                .expect("read")
                .is_empty()
        );
        assert!(
            reader
                .try_get_log_entries(30..)
                .await
                .expect("read")
                .is_empty()
        );
    });
}

#[test]
fn membership_entries_survive_a_restart_from_disk() {
    // Small chunks and no cache: reads after reopening come from the files.
    let dir = TempDir::new("membership");
    let options = LogStoreOptions {
        chunk_max_records: 4,
        cache_max_items: 1,
        cache_max_bytes: 1,
        ..LogStoreOptions::default()
    };
    let rt = runtime();
    rt.block_on(async {
        let mut store = LogStore::open_with(dir.path(), &options).expect("open");
        for i in 1..=12 {
            let entry = if i % 3 == 0 {
                membership_entry(1, i)
            } else {
                normal(1, i)
            };
            store.blocking_append([entry]).await.expect("append");
        }
    });
    rt.block_on(async {
        let mut store = LogStore::open_with(dir.path(), &options).expect("reopen");
        let got = all_entries(&mut store).await;
        let want: Vec<_> = (1..=12)
            .map(|i| {
                if i % 3 == 0 {
                    membership_entry(1, i)
                } else {
                    normal(1, i)
                }
            })
            .collect();
        assert_eq!(got, want);
        assert!(list_chunks(dir.path()).expect("list").len() > 2);
    });
}

// ---------------------------------------------------------------------------
// Torn writes and damage.

#[test]
fn a_torn_last_record_is_dropped_saved_and_reported() {
    let dir = TempDir::new("torn");
    let options = small_chunks();
    let rt = runtime();
    rt.block_on(async {
        let mut store = LogStore::open_with(dir.path(), &options).expect("open");
        fill(&mut store, 1, 40).await;
    });
    let last = records(dir.path(), &options).pop().expect("a record");
    assert_eq!(last.append, Some(40));
    let chunks = list_chunks(dir.path()).expect("list");
    assert!(chunks.len() > 1, "several chunk files");
    let tail = chunks.last().expect("tail");
    assert_eq!(tail.path, last.file);
    assert_eq!(tail.size, last.offset + last.size);

    // A crash in the middle of writing the last record: its last 5 bytes
    // never reached the disk.
    let whole = fs::read(&tail.path).expect("read");
    let cut = tail.size - 5;
    fs::OpenOptions::new()
        .write(true)
        .open(&tail.path)
        .and_then(|f| f.set_len(cut))
        .expect("cut");

    rt.block_on(async {
        let mut store =
            LogStore::open_with(dir.path(), &options).expect("reopen drops the torn record");
        let torn = store
            .recovery()
            .torn_tail
            .clone()
            .expect("torn tail reported");
        assert_eq!(torn.file, tail.path);
        assert_eq!(torn.offset, last.offset);
        assert_eq!(torn.dropped_bytes, last.size - 5);
        let backup = torn.backup.expect("saved");
        assert!(backup.starts_with(dir.path().join(TORN_DIR)));
        assert_eq!(
            fs::read(&backup).expect("backup"),
            whole[last.offset as usize..cut as usize]
        );
        assert_eq!(fs::metadata(&tail.path).expect("tail").len(), last.offset);

        let entries = all_entries(&mut store).await;
        assert_eq!(entries, (1..=39).map(|i| normal(1, i)).collect::<Vec<_>>());
        assert_eq!(
            store.get_log_state().await.expect("state").last_log_id,
            Some(log_id(1, 39))
        );
        // The log goes on from there.
        fill(&mut store, 40, 45).await;
    });
    rt.block_on(async {
        let mut store = LogStore::open_with(dir.path(), &options).expect("reopen again");
        assert_eq!(store.recovery(), &Recovery::default());
        assert_eq!(
            all_entries(&mut store).await,
            (1..=45).map(|i| normal(1, i)).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_zero_filled_tail_is_dropped_without_a_backup() {
    let dir = TempDir::new("zeros");
    let rt = runtime();
    rt.block_on(async {
        let mut store = LogStore::open(dir.path()).expect("open");
        fill(&mut store, 1, 5).await;
    });
    // The file grew but its data never arrived (ext4 data=writeback).
    let tail = list_chunks(dir.path()).expect("list").pop().expect("tail");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&tail.path)
        .expect("open tail");
    f.write_all(&[0u8; 100]).expect("zeros");
    drop(f);
    rt.block_on(async {
        let mut store = LogStore::open(dir.path()).expect("reopen");
        let torn = store.recovery().torn_tail.clone().expect("reported");
        assert_eq!(
            (torn.offset, torn.dropped_bytes, torn.backup),
            (tail.size, 100, None)
        );
        assert_eq!(
            all_entries(&mut store).await,
            (1..=5).map(|i| normal(1, i)).collect::<Vec<_>>()
        );
    });
}

/// Opens `dir` expecting `Corrupt`, and checks nothing on disk changed.
fn expect_corrupt(dir: &Path, options: &LogStoreOptions) -> (PathBuf, u64, u64, String) {
    let before = snapshot_files(dir);
    let err = LogStore::open_with(dir, options).expect_err("damaged log must be refused");
    assert_eq!(
        snapshot_files(dir),
        before,
        "a refused open must not change the files"
    );
    let message = err.to_string();
    match err {
        LogStoreError::Corrupt {
            file,
            offset,
            record,
            reason,
        } => {
            assert!(message.contains(&file.display().to_string()), "{message}");
            (file, offset, record, reason)
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_flipped_byte_in_an_older_record_is_refused() {
    let dir = TempDir::new("flip-old");
    let options = small_chunks();
    runtime().block_on(async {
        let mut store = LogStore::open_with(dir.path(), &options).expect("open");
        fill(&mut store, 1, 60).await;
    });
    let records = records(dir.path(), &options);
    let chunks = list_chunks(dir.path()).expect("list");
    assert!(chunks.len() >= 3);
    // Entry 5, in the first chunk file, long before the end of the log.
    let victim = records
        .iter()
        .find(|r| r.append == Some(5))
        .expect("entry 5");
    assert_eq!(victim.file, chunks[0].path);
    flip_byte(&victim.file, victim.offset + victim.size / 2);

    let (file, offset, record, reason) = expect_corrupt(dir.path(), &options);
    assert_eq!(
        (file, offset, record),
        (victim.file.clone(), victim.offset, victim.index)
    );
    assert!(reason.contains("checksum"), "{reason}");
}

#[test]
fn a_flipped_byte_in_the_last_chunk_is_refused_even_in_the_last_record() {
    let dir = TempDir::new("flip-tail");
    let options = small_chunks();
    runtime().block_on(async {
        let mut store = LogStore::open_with(dir.path(), &options).expect("open");
        fill(&mut store, 1, 40).await;
    });
    let all = records(dir.path(), &options);
    let tail = list_chunks(dir.path()).expect("list").pop().expect("tail");
    // A record in the middle of the last chunk file…
    let middle = all
        .iter()
        .filter(|r| r.file == tail.path && r.append.is_some())
        .nth(1)
        .expect("a middle record");
    // …and the very last record: complete, so damage, not a torn write.
    let last = all.last().expect("last");
    assert_eq!(last.append, Some(40));
    for victim in [middle, last] {
        // Inside the log id's index: the record still parses, the CRC fails.
        let at = victim.offset + 4 + 1 + 16 + 7;
        flip_byte(&victim.file, at);
        let (file, offset, record, reason) = expect_corrupt(dir.path(), &options);
        assert_eq!(
            (file, offset, record),
            (victim.file.clone(), victim.offset, victim.index)
        );
        assert!(reason.contains("checksum"), "{reason}");
        flip_byte(&victim.file, at);
    }
    // Undamaged again, it opens with everything.
    runtime().block_on(async {
        let mut store = LogStore::open_with(dir.path(), &options).expect("reopen");
        assert_eq!(all_entries(&mut store).await.len(), 40);
    });
}

#[test]
fn a_cut_record_in_an_older_chunk_is_refused() {
    let dir = TempDir::new("cut-old");
    let options = small_chunks();
    runtime().block_on(async {
        let mut store = LogStore::open_with(dir.path(), &options).expect("open");
        fill(&mut store, 1, 40).await;
    });
    let first = list_chunks(dir.path()).expect("list").remove(0);
    fs::OpenOptions::new()
        .write(true)
        .open(&first.path)
        .and_then(|f| f.set_len(first.size - 3))
        .expect("cut");
    let (file, _, _, _) = expect_corrupt(dir.path(), &options);
    assert_eq!(file, first.path);
}

#[test]
fn a_log_of_another_format_version_is_recognised() {
    let dir = TempDir::new("version");
    drop(LogStore::open(dir.path()).expect("create"));
    let options = LogStoreOptions::default();
    let marker = records(dir.path(), &options)
        .into_iter()
        .find(|r| r.marker)
        .expect("the format marker");
    let bytes = fs::read(&marker.file).expect("read");
    let record = &bytes[marker.offset as usize..(marker.offset + marker.size) as usize];
    let at = record
        .windows(5)
        .position(|w| w == b"\x03SSRL")
        .expect("marker bytes");
    // As a build with format version 4 would have written it.
    let mut changed = bytes.clone();
    changed[marker.offset as usize + at] = 4;
    fs::write(&marker.file, changed).expect("write");

    match LogStore::open(dir.path()).expect_err("must refuse") {
        LogStoreError::IncompatibleFormat { location, reason } => {
            assert_eq!(location, marker.file);
            assert!(reason.contains("version 4"), "{reason}");
        }
        other => panic!("expected IncompatibleFormat, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The directory lock.

#[test]
fn a_locked_directory_is_refused() {
    let dir = TempDir::new("locked");
    let first = LogStore::open(dir.path()).expect("open");
    let err = LogStore::open(dir.path()).expect_err("second open must fail");
    assert!(matches!(err, LogStoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    // A clone keeps it locked; dropping the last one releases it.
    let clone = first.clone();
    drop(first);
    assert!(matches!(
        LogStore::open(dir.path()),
        Err(LogStoreError::Locked { .. })
    ));
    drop(clone);
    drop(LogStore::open(dir.path()).expect("open after release"));
}

// ---------------------------------------------------------------------------
// Group commit.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_appends_commit_in_groups() {
    const N: u64 = 1000;
    let dir = TempDir::new("group");
    let store = LogStore::open(dir.path()).expect("open");
    let next = Arc::new(tokio::sync::Mutex::new(1u64));
    let mut tasks = Vec::new();
    for _ in 0..N {
        let store = store.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            // Indexes are taken in order under the lock; the waits overlap.
            {
                let mut next = next.lock().await;
                store
                    .append_with([normal(1, *next)], FlushCallback::Async(tx))
                    .expect("append");
                *next += 1;
            }
            rx.await.expect("callback called").expect("flushed");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let metrics = store.flush_metrics().expect("metrics");
    assert!(metrics.write_request_count >= N, "{metrics:?}");
    assert!(
        metrics.sync_batch_count < N && metrics.batch_size_max > 1,
        "appends in flight together must share fsyncs: {metrics:?}"
    );
    drop(store);

    let mut store = LogStore::open(dir.path()).expect("reopen");
    let entries = all_entries(&mut store).await;
    assert_eq!(entries, (1..=N).map(|i| normal(1, i)).collect::<Vec<_>>());
}

/// The store counts openraft's appends as handed over and as flushed (the
/// engine's proposer hands openraft the next entry once the two are equal);
/// its own synced writes (a vote, a truncation) are not appends.
#[test]
fn openraft_appends_are_counted_handed_over_and_flushed() {
    runtime().block_on(async {
        let dir = TempDir::new("appends");
        let mut store = LogStore::open(dir.path()).expect("open");
        let appends = store.appends();
        assert_eq!(*appends.borrow(), Appends::default());
        fill(&mut store, 1, 3).await;
        assert_eq!(
            *appends.borrow(),
            Appends {
                started: 3,
                flushed: 3
            }
        );
        store.save_vote(&Vote::new(2, 1)).await.expect("save vote");
        store.truncate(log_id(1, 3)).await.expect("truncate");
        let (tx, rx) = tokio::sync::oneshot::channel();
        store
            .append_with([normal(1, 3)], FlushCallback::Async(tx))
            .expect("append");
        rx.await.expect("callback called").expect("flushed");
        assert_eq!(
            *appends.borrow(),
            Appends {
                started: 3,
                flushed: 3
            }
        );
        fill(&mut store, 4, 4).await;
        assert_eq!(
            *appends.borrow(),
            Appends {
                started: 4,
                flushed: 4
            }
        );
    });
}
