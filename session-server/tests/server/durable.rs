//! Durability: the server binary killed, restarted, and handed damaged,
//! foreign, locked or full data directories.
//!
//! Every test runs `session-server --data-dir DIR` as a child process (the
//! binary in `SESSION_SERVER_BIN`, else the one cargo built), tick 50 ms,
//! session timeouts 200 ms ..= 5 s, in a fresh directory under the system
//! temp dir that is removed at the end; it is killed with SIGKILL
//! (`Child::kill`) or SIGTERM (`kill(1)`). Every wait is bounded.
//!
//! When a restarted server is ready (R): it logs "state loaded from disk"
//! just before it gives every session a fresh timeout, and "session server
//! started" just after (both in JSON, with their wall-clock time), so R lies
//! between the two timestamps: `ready_lo <= R <= ready_hi`, well under a
//! millisecond apart. A lower bound on an expiry is checked against
//! `ready_lo`, an upper one against `ready_hi`, so neither check can fail a
//! correct server.
//!
//! The bounds, test by test:
//! - `sigkill_under_load_...`: every write acknowledged before a SIGKILL in
//!   the middle of a load is there after the restart with its data, version
//!   and mzxid; the write each session had in flight is there once or not at
//!   all (versions and sequential names would show it twice); every session
//!   reattaches with its ephemerals when it tries within T of R (at once, and
//!   at 0.6 T), after a downtime longer than T; a session that does not
//!   reattach expires in (T, T + tick + MARGIN] after R.
//! - `a_torn_last_record_...`: a last record cut short is dropped with a
//!   warning naming the file; everything before it is there, it is not.
//! - `a_flipped_byte_...`: a checksum failure in a complete record (an old
//!   one, or the last) stops the start with a non-zero exit and an error
//!   naming the file; the directory is unchanged byte for byte.
//! - `restart_after_snapshots_...`: with `--snapshot-every 20`, one snapshot
//!   file at most 20 entries behind, the first chunk file deleted once a
//!   snapshot covers it, and everything there after a SIGKILL; a flipped byte
//!   in the snapshot stops the start, naming the file, changing nothing.
//! - `session_ids_...`: ids minted after a restart (SIGKILL; SIGTERM after
//!   snapshots) continue at the high-water mark + 1, even when the sessions
//!   holding the highest ids were closed.
//! - `a_change_the_watcher_never_read_...`: after a SIGKILL that beat the
//!   event to the watcher, SetWatches with the watcher's last zxid fires the
//!   data, child and exist watches before its reply, with the changes'
//!   zxids; with a zxid past the changes, nothing fires and the watch holds.
//! - `another_servers_directory_...`: server 2 on server 1's directory, or a
//!   non-empty directory without an identity file: refused, naming the
//!   identity file, nothing written.
//! - `a_second_server_...`: a second server on a directory in use is refused
//!   (locked); the first keeps serving, and the second wrote nothing.
//! - `a_full_disk_...`: under `ulimit -f`, a write that cannot reach the
//!   disk is answered UNAVAILABLE naming the I/O error (EFBIG) within
//!   500 ms, and so is every later one; a new session is refused
//!   UNAVAILABLE; reads and heartbeats go on (sessions live 2 T on pings
//!   alone); a restart with room keeps every acknowledged write.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use session_wire::PROTOCOL_VERSION;
use session_wire::admin::v1::{StatsRequest, StatsResponse, admin_client::AdminClient};
use session_wire::v1::{
    self as wire, ErrorCode, Handshake, NodeKind, SessionGranted, WatchEventKind, reply, request,
};
use tokio::time::{Instant, sleep, timeout};

use crate::support::{PATIENCE, Raw, TICK, free_port, granted, server_binary};

/// The session timeout of every session here unless a test says otherwise.
const T: Duration = Duration::from_millis(1000);

/// What an upper bound on an expiry adds to the server's own deadline
/// (R + T, rounded up to the next tick, which `TICK` covers): the reaper's
/// close goes through Raft (one fsync), the watch event crosses loopback,
/// and on the shared 2-core machine where the suite runs in parallel (each
/// test with its own server process) a woken thread can wait tens of
/// milliseconds, more while CI builds beside it. 250 ms is five ticks and a
/// quarter of T, as in stalled.rs: a server that waited for anything else
/// (another timeout, a retry) would still fail.
const MARGIN: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------
// The binary and its directory.

/// A directory of the test's own under the system temp dir, removed on
/// drop: the data directory (`data`, not created: the server creates it)
/// and the servers' logs next to it.
struct Scratch {
    base: PathBuf,
    runs: u32,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let base = std::env::temp_dir().join(format!(
            "session-durable-{name}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&base).expect("a scratch directory");
        Scratch { base, runs: 0 }
    }

    fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    fn next_log(&mut self) -> PathBuf {
        self.runs += 1;
        self.base.join(format!("server-{}.log", self.runs))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// How to run the binary.
#[derive(Debug, Clone, Default)]
struct Launch {
    server_id: Option<u32>,
    snapshot_every: Option<u64>,
    /// Runs it under `ulimit -f` (512-byte blocks, dash's unit) with
    /// SIGXFSZ ignored: a write past the limit fails with EFBIG.
    file_size_blocks: Option<u64>,
    /// The data directory, when not the scratch's.
    data_dir: Option<PathBuf>,
}

/// The server process. Killed on drop if still running.
struct Process {
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    spawned: Instant,
}

/// A started server, ready (R in `ready_lo..=ready_hi`).
struct Node {
    process: Process,
    ready_lo: Instant,
    ready_hi: Instant,
}

impl std::ops::Deref for Node {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

fn spawn(scratch: &mut Scratch, launch: &Launch) -> Process {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let data = launch.data_dir.clone().unwrap_or_else(|| scratch.data());
    let mut args: Vec<String> = vec![
        "--data-dir".into(),
        data.display().to_string(),
        "--listen".into(),
        listen.to_string(),
        "--admin-listen".into(),
        admin.to_string(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
        // The ZooKeeper port (2181 by default) is shared by every test.
        "--zk-listen".into(),
        "off".into(),
        "--tick-ms".into(),
        TICK.as_millis().to_string(),
        "--min-session-timeout-ms".into(),
        "200".into(),
        "--max-session-timeout-ms".into(),
        "5000".into(),
        "--shutdown-grace-ms".into(),
        "1000".into(),
        "--log-format".into(),
        "json".into(),
    ];
    if let Some(id) = launch.server_id {
        args.extend(["--server-id".into(), id.to_string()]);
    }
    if let Some(every) = launch.snapshot_every {
        args.extend(["--snapshot-every".into(), every.to_string()]);
    }
    let mut command = match launch.file_size_blocks {
        None => Command::new(server_binary()),
        Some(blocks) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!(
                    "trap '' XFSZ; ulimit -f {blocks} || exit 97; exec \"$0\" \"$@\""
                ))
                .arg(server_binary());
            sh
        }
    };
    command
        .args(&args)
        // The server's default filter: info, openraft's warnings.
        .env_remove("RUST_LOG")
        .current_dir(&scratch.base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let log = scratch.next_log();
    let spawned = Instant::now();
    let mut child = command.spawn().expect("the server binary starts");
    // Through pipes, so the log is not under the process's file size limit.
    let file = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::File::create(&log).expect("a log file"),
    ));
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    for pipe in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let file = std::sync::Arc::clone(&file);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
            }
        });
    }
    Process {
        child,
        log,
        addr: listen,
        admin,
        spawned,
    }
}

impl Process {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log_text();
        let lines: Vec<_> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reaped.
    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, and waits for the exit (bounded).
    async fn terminate(&mut self) -> ExitStatus {
        let kill = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(kill.success(), "kill -TERM failed: {kill}");
        self.exit_within(PATIENCE).await
    }

    /// The exit status, waiting at most `within`.
    async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let waited = timeout(within, async {
            loop {
                if let Some(status) = self.child.try_wait().expect("try_wait") {
                    return status;
                }
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        match waited {
            Ok(status) => status,
            Err(_) => panic!(
                "the server still runs after {within:?}:\n{}",
                self.log_tail()
            ),
        }
    }

    /// Waits (bounded) until the log has both start-up lines, and returns
    /// the server with R bracketed.
    async fn ready(mut self) -> Node {
        let waited = timeout(PATIENCE, async {
            loop {
                let log = self.log_text();
                let loaded = log_time(&log, "state loaded from disk");
                let started = log_time(&log, "session server started");
                if let (Some(lo), Some(hi)) = (loaded, started) {
                    return Ok((lo, hi));
                }
                if let Some(status) = self.child.try_wait().expect("try_wait") {
                    return Err(status);
                }
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        match waited {
            Ok(Ok((lo, hi))) => {
                assert!(
                    self.log_text()
                        .contains(&format!("\"listen\":\"{}\"", self.addr)),
                    "the server listens where it was told:\n{}",
                    self.log_tail()
                );
                Node {
                    process: self,
                    ready_lo: instant_of(lo),
                    ready_hi: instant_of(hi),
                }
            }
            Ok(Err(status)) => panic!(
                "the server exited at start with {status}:\n{}",
                self.log_tail()
            ),
            Err(_) => panic!(
                "the server was not ready within {PATIENCE:?}:\n{}",
                self.log_tail()
            ),
        }
    }

    /// Waits (bounded) for a refused start: the exit status and the log.
    async fn refused(mut self) -> (ExitStatus, String) {
        let status = self.exit_within(PATIENCE).await;
        // The pipes drain into the log file on their own threads.
        sleep(Duration::from_millis(50)).await;
        (status, self.log_text())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn start(scratch: &mut Scratch, launch: &Launch) -> Node {
    spawn(scratch, launch).ready().await
}

async fn start_refused(scratch: &mut Scratch, launch: &Launch) -> (ExitStatus, String) {
    spawn(scratch, launch).refused().await
}

/// The wall-clock time of the first JSON log line whose message is
/// `message`.
fn log_time(log: &str, message: &str) -> Option<SystemTime> {
    let needle = format!("\"message\":\"{message}\"");
    let line = log.lines().find(|line| line.contains(&needle))?;
    let stamp = line.split("\"timestamp\":\"").nth(1)?.split('"').next()?;
    parse_rfc3339(stamp)
}

/// `2026-11-29T13:16:10.785893Z` (what tracing-subscriber writes).
fn parse_rfc3339(stamp: &str) -> Option<SystemTime> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut date = date.split('-').map(str::parse::<i64>);
    let (y, m, d) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(str::parse::<u64>);
    let (h, mi, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let nanos: u64 = format!("{fraction:0<9}")[..9].parse().ok()?;
    Some(
        UNIX_EPOCH
            + Duration::from_secs(days * 86_400 + h * 3_600 + mi * 60 + s)
            + Duration::from_nanos(nanos),
    )
}

/// The monotonic instant of a wall-clock time (the clock does not step
/// during a test).
fn instant_of(time: SystemTime) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    match wall.duration_since(time) {
        Ok(ago) => now - ago,
        Err(ahead) => now + ahead.duration(),
    }
}

/// Every file and directory under `dir` with its bytes (`None` for a
/// directory): what "unchanged byte for byte" compares.
fn tree_bytes(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read_dir") {
            let path = entry.expect("entry").path();
            let relative = path.strip_prefix(dir).expect("under dir").to_path_buf();
            if path.is_dir() {
                out.insert(relative, None);
                stack.push(path);
            } else {
                out.insert(relative, Some(std::fs::read(&path).expect("read")));
            }
        }
    }
    out
}

/// The paths whose bytes differ (or that exist on one side only).
fn changed(
    before: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    after: &BTreeMap<PathBuf, Option<Vec<u8>>>,
) -> Vec<PathBuf> {
    before
        .keys()
        .chain(after.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|path| before.get(*path) != after.get(*path))
        .cloned()
        .collect()
}

/// The tree's bytes once a running server has stopped writing to it (the
/// commit record after the last write is written lazily): two readings
/// 100 ms apart that agree.
async fn settled_tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let started = Instant::now();
    let mut last = tree_bytes(dir);
    loop {
        sleep(Duration::from_millis(100)).await;
        let now = tree_bytes(dir);
        if now == last {
            return now;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the server kept writing: {:?}",
            changed(&last, &now)
        );
        last = now;
    }
}

/// The chunk files of the Raft log, oldest first (their names sort by
/// offset).
fn chunk_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .expect("the log directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    files.sort();
    files
}

fn snapshot_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("snapshots"))
        .expect("the snapshots directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("snapshot-") && name.ends_with(".bin"))
        })
        .collect();
    files.sort();
    files
}

/// Where `needle` last occurs in `haystack`.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .rposition(|window| window == needle)
}

fn flip_byte(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).expect("read");
    bytes[at] ^= 0x5a;
    std::fs::write(file, bytes).expect("write");
}

async fn stats(node: &Node) -> StatsResponse {
    let mut admin = timeout(
        PATIENCE,
        AdminClient::connect(format!("http://{}", node.admin)),
    )
    .await
    .expect("admin connects in time")
    .expect("admin connects");
    timeout(PATIENCE, admin.stats(StatsRequest {}))
        .await
        .expect("stats in time")
        .expect("stats")
        .into_inner()
}

// ---------------------------------------------------------------------------
// Clients.

fn create_op(path: &str, data: &[u8], kind: NodeKind, sequential: bool) -> request::Op {
    request::Op::Create(wire::Create {
        acl: Vec::new(),
        ttl_ms: 0,
        path: path.to_owned(),
        data: Bytes::copy_from_slice(data),
        kind: kind.into(),
        sequential,
    })
}

fn set_op(path: &str, data: &[u8], version: i32) -> request::Op {
    request::Op::SetData(wire::SetData {
        path: path.to_owned(),
        data: Bytes::copy_from_slice(data),
        expected_version: Some(version),
    })
}

fn delete_op(path: &str, version: i32) -> request::Op {
    request::Op::Delete(wire::Delete {
        path: path.to_owned(),
        expected_version: Some(version),
    })
}

/// A handshake reattaching `session`, having seen `last_zxid`.
fn reattach(session: &SessionGranted, last_zxid: u64) -> Handshake {
    Handshake {
        protocol_version: PROTOCOL_VERSION,
        requested_timeout_ms: session.negotiated_timeout_ms,
        session_id: session.session_id,
        password: session.password.clone(),
        last_zxid_seen: last_zxid,
        client_name: "session-server-durable-tests".to_owned(),
        ..Handshake::default()
    }
}

/// Opens a session with timeout `t`, bounded.
async fn open(addr: SocketAddr, t: Duration) -> (Raw, SessionGranted) {
    timeout(PATIENCE, Raw::open(addr, t))
        .await
        .expect("a session within PATIENCE")
}

/// Every node under `root` (itself included) with its data and stat.
async fn dump(raw: &mut Raw, root: &str) -> BTreeMap<String, (Bytes, wire::Stat)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let (data, stat) = raw.get(&path, false).await.expect("a listed node");
        for child in raw.children(&path, false).await.expect("children") {
            let child = if path == "/" {
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            };
            stack.push(child);
        }
        out.insert(path, (data, stat));
    }
    out
}

/// Sends a write or read that must succeed; its reply.
async fn must(raw: &mut Raw, op: request::Op) -> wire::Reply {
    // Kind and path only: formatting megabytes of data costs seconds in a
    // debug build.
    let what = match &op {
        request::Op::Create(op) => format!("create {}", op.path),
        request::Op::SetData(op) => format!("set {}", op.path),
        request::Op::Delete(op) => format!("delete {}", op.path),
        request::Op::GetData(op) => format!("get {}", op.path),
        request::Op::Exists(op) => format!("exists {}", op.path),
        other => format!("{other:?}"),
    };
    let reply = raw
        .try_reply(op)
        .await
        .unwrap_or_else(|| panic!("no reply to {what}: the connection closed"));
    if let Some(reply::Result::Error(err)) = &reply.result {
        panic!("{what} failed: {:?} {}", err.code(), err.detail);
    }
    reply
}

/// Reattaches `session` on a new connection (bounded); the connection and
/// the reply.
async fn reattach_at(
    addr: SocketAddr,
    session: &SessionGranted,
    last_zxid: u64,
) -> (Raw, wire::HandshakeReply) {
    timeout(PATIENCE, async {
        let mut raw = Raw::connect(addr).await;
        let reply = raw.handshake(reattach(session, last_zxid)).await;
        (raw, reply)
    })
    .await
    .expect("a handshake reply within PATIENCE")
}

// ---------------------------------------------------------------------------
// 1. SIGKILL in the middle of a write load.

/// One write of the load, as sent.
#[derive(Debug, Clone)]
enum Load {
    Create { path: String, data: Vec<u8> },
    Set { path: String, data: Vec<u8> },
    Sequential { prefix: String, data: Vec<u8> },
    Delete { path: String },
}

/// A writer's subtree as its acknowledged writes left it: each node's
/// data, version and mzxid.
type Model = BTreeMap<String, (Vec<u8>, i32, u64)>;

/// One writing session: what it was told, and the write whose reply the
/// kill cut off (applied or not: either is correct, twice is not).
#[derive(Debug)]
struct Writer {
    index: usize,
    session: SessionGranted,
    model: Model,
    /// Creates under its `seq` node: the next sequence number.
    sequence: usize,
    acked: usize,
    last_zxid: u64,
    lost: Option<Load>,
}

impl Writer {
    fn base(&self) -> String {
        format!("/w{}", self.index)
    }

    /// The subtree with `load` applied on top of the acknowledged writes;
    /// the changed node's mzxid is unknown (0).
    fn model_with(&self, load: &Load) -> Model {
        let mut model = self.model.clone();
        match load {
            Load::Create { path, data } => {
                model.insert(path.clone(), (data.clone(), 0, 0));
            }
            Load::Set { path, data } => {
                let node = model.get_mut(path).expect("set on a known node");
                *node = (data.clone(), node.1 + 1, 0);
            }
            Load::Sequential { prefix, data } => {
                model.insert(
                    format!("{prefix}{:010}", self.sequence),
                    (data.clone(), 0, 0),
                );
            }
            Load::Delete { path } => {
                model.remove(path);
            }
        }
        model
    }
}

/// Writes to its own subtree until the connection dies; each write waits
/// for the previous reply.
async fn write_until_killed(
    mut raw: Raw,
    mut writer: Writer,
    acks: std::sync::Arc<AtomicU64>,
) -> Writer {
    let base = writer.base();
    // Nodes created and not yet deleted, oldest first.
    let mut created = std::collections::VecDeque::new();
    // Each writer starts elsewhere in the cycle, so the writes cut off
    // differ.
    for k in writer.index.. {
        let load = match (k % 4, created.front()) {
            (1, _) => Load::Set {
                path: format!("{base}/counter"),
                data: format!("w{}-c{k}", writer.index).into_bytes(),
            },
            (2, _) => Load::Sequential {
                prefix: format!("{base}/seq/s-"),
                data: format!("w{}-s{k}", writer.index).into_bytes(),
            },
            (3, Some(oldest)) => Load::Delete {
                path: String::clone(oldest),
            },
            _ => Load::Create {
                path: format!("{base}/n{k}"),
                data: format!("w{}-n{k}", writer.index).into_bytes(),
            },
        };
        let op = match &load {
            Load::Create { path, data } => create_op(path, data, NodeKind::Persistent, false),
            Load::Set { path, data } => set_op(path, data, writer.model[path].1),
            Load::Sequential { prefix, data } => {
                create_op(prefix, data, NodeKind::Persistent, true)
            }
            Load::Delete { path } => delete_op(path, 0),
        };
        let Some(reply) = raw.try_reply(op).await else {
            writer.lost = Some(load);
            return writer;
        };
        let zxid = reply.zxid;
        match (&load, reply.result) {
            (Load::Create { path, data }, Some(reply::Result::Create(done))) => {
                assert_eq!(&done.path, path);
                writer.model.insert(path.clone(), (data.clone(), 0, zxid));
                created.push_back(path.clone());
            }
            (Load::Set { path, data }, Some(reply::Result::SetData(set))) => {
                let node = writer.model.get_mut(path).expect("known");
                let stat = set.stat.expect("stat");
                assert_eq!(stat.version, node.1 + 1, "{path}: one more version");
                *node = (data.clone(), stat.version, zxid);
            }
            (Load::Sequential { prefix, data }, Some(reply::Result::Create(created))) => {
                assert_eq!(
                    created.path,
                    format!("{prefix}{:010}", writer.sequence),
                    "sequence numbers run on"
                );
                writer.sequence += 1;
                writer.model.insert(created.path, (data.clone(), 0, zxid));
            }
            (Load::Delete { path }, Some(reply::Result::Delete(_))) => {
                writer.model.remove(path);
                created.pop_front();
            }
            (load, other) => panic!("{load:?} answered {other:?}"),
        }
        writer.acked += 1;
        writer.last_zxid = zxid;
        acks.fetch_add(1, Ordering::Relaxed);
    }
    unreachable!("the loop ends with the connection")
}

/// A session opened during the load, and whether its ephemeral's create
/// was acknowledged (`Some(true)`), refused never, or cut off (`None`).
#[derive(Debug)]
struct Churned {
    session: SessionGranted,
    ephemeral: String,
    acked: Option<bool>,
}

/// Opens sessions, each with an ephemeral, until the server dies (or 40).
async fn churn_until_killed(addr: SocketAddr) -> Vec<Churned> {
    use futures_util::{SinkExt, StreamExt};
    let mut out = Vec::new();
    for n in 0..40 {
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            break;
        };
        let mut raw = Raw::from_stream(stream);
        let handshake = crate::support::new_session(T);
        if raw
            .framed
            .send(wire::ClientMessage::from(handshake))
            .await
            .is_err()
        {
            break;
        }
        let reply = match timeout(PATIENCE, raw.framed.next()).await {
            Err(_) => panic!("no handshake reply within {PATIENCE:?}"),
            Ok(Some(Ok(message))) => message,
            Ok(_) => break,
        };
        let Some(wire::server_message::Kind::HandshakeReply(reply)) = reply.kind else {
            panic!("expected a handshake reply, got {reply:?}");
        };
        let session = granted(reply);
        let ephemeral = format!("/eph/c{n}");
        let acked = match raw
            .try_reply(create_op(
                &ephemeral,
                b"churned",
                NodeKind::Ephemeral,
                false,
            ))
            .await
        {
            None => None,
            Some(reply) => {
                assert!(
                    matches!(reply.result, Some(reply::Result::Create(_))),
                    "{reply:?}"
                );
                Some(true)
            }
        };
        let cut = acked.is_none();
        out.push(Churned {
            session,
            ephemeral,
            acked,
        });
        if cut {
            break;
        }
    }
    out
}

/// Checks a writer's subtree after the restart against what it was told;
/// whether the write cut off was applied.
async fn check_writer(reader: &mut Raw, writer: &Writer) -> bool {
    let found: Model = dump(reader, &writer.base())
        .await
        .into_iter()
        .map(|(path, (data, stat))| (path, (data.to_vec(), stat.version, stat.mzxid)))
        .collect();
    let acknowledged = found == writer.model;
    let with_lost = writer.lost.as_ref().is_some_and(|lost| {
        let expected = writer.model_with(lost);
        // The lost write's node has an mzxid nobody was told.
        found.len() == expected.len()
            && found.iter().zip(&expected).all(|((fp, f), (ep, e))| {
                fp == ep && f.0 == e.0 && f.1 == e.1 && (e.2 == 0 || f.2 == e.2)
            })
    });
    assert!(
        acknowledged || with_lost,
        "writer {}: after the restart the subtree is neither what the {} acknowledged writes \
         left nor that plus the write cut off ({:?}):\nfound    {found:?}\nexpected {:?}",
        writer.index,
        writer.acked,
        writer.lost,
        writer.model
    );
    let (_, seq) = reader
        .get(&format!("{}/seq", writer.base()), false)
        .await
        .expect("seq");
    let applied = writer.sequence
        + usize::from(
            with_lost && !acknowledged && matches!(writer.lost, Some(Load::Sequential { .. })),
        );
    assert_eq!(
        usize::try_from(seq.cversion).expect("cversion"),
        applied,
        "writer {}: every sequential create applied once",
        writer.index
    );
    !acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_write_and_every_session_reattaches() {
    const WRITERS: usize = 3;
    let mut scratch = Scratch::new("kill9-load");
    // Snapshots during the load too: the restart loads one and replays the
    // log behind it.
    let launch = Launch {
        snapshot_every: Some(64),
        ..Launch::default()
    };
    let mut node = start(&mut scratch, &launch).await;
    let addr = node.addr;

    let (mut setup, _) = open(addr, T).await;
    must(
        &mut setup,
        create_op("/eph", b"", NodeKind::Persistent, false),
    )
    .await;
    let mut writers = Vec::new();
    for index in 0..WRITERS {
        let (mut raw, session) = open(addr, T).await;
        let base = format!("/w{index}");
        let mut model = Model::new();
        for (path, data) in [
            (base.clone(), b"".as_slice()),
            (format!("{base}/counter"), b"c".as_slice()),
            (format!("{base}/seq"), b"".as_slice()),
        ] {
            let reply = must(
                &mut raw,
                create_op(&path, data, NodeKind::Persistent, false),
            )
            .await;
            model.insert(path, (data.to_vec(), 0, reply.zxid));
        }
        let reply = must(
            &mut raw,
            create_op(
                &format!("/eph/w{index}"),
                b"writer",
                NodeKind::Ephemeral,
                false,
            ),
        )
        .await;
        let writer = Writer {
            index,
            session,
            model,
            sequence: 0,
            acked: 0,
            last_zxid: reply.zxid,
            lost: None,
        };
        writers.push((raw, writer));
    }
    // The session that will not come back.
    let (mut lurker, lurker_session) = open(addr, T).await;
    must(
        &mut lurker,
        create_op("/eph/lurker", b"gone soon", NodeKind::Ephemeral, false),
    )
    .await;

    let acks = std::sync::Arc::new(AtomicU64::new(0));
    let load_started = Instant::now();
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|(raw, writer)| {
            tokio::spawn(write_until_killed(
                raw,
                writer,
                std::sync::Arc::clone(&acks),
            ))
        })
        .collect();
    let churner = tokio::spawn(churn_until_killed(addr));
    // Kill mid-load: after 60 to 119 acknowledged writes (varying from run
    // to run) or 500 ms, whichever is first (every session was heard from
    // less than T before the kill).
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let kill_after = 60 + u64::from(nanos % 60);
    while acks.load(Ordering::Relaxed) < kill_after
        && load_started.elapsed() < Duration::from_millis(500)
    {
        sleep(Duration::from_millis(5)).await;
    }
    let killed = Instant::now();
    node.kill9();
    let acked_at_kill = acks.load(Ordering::Relaxed);
    let mut writers = Vec::new();
    for task in tasks {
        writers.push(
            timeout(PATIENCE, task)
                .await
                .expect("writers stop with the server")
                .expect("writer task"),
        );
    }
    let churned = timeout(PATIENCE, churner)
        .await
        .expect("the churner stops with the server")
        .expect("churner task");
    drop((setup, lurker));
    let acked: usize = writers.iter().map(|w| w.acked).sum();
    assert!(
        acked >= 12 && writers.iter().all(|w| w.acked >= 4),
        "too little load before the kill: {acked} writes ({:?})",
        writers.iter().map(|w| w.acked).collect::<Vec<_>>()
    );
    assert!(churned.len() >= 2, "too few sessions churned: {churned:?}");
    eprintln!(
        "kill -9 after {:?}: {acked} writes acknowledged ({acked_at_kill} when the signal went), \
         {} sessions churned, writes cut off: {:?}",
        killed - load_started,
        churned.len(),
        writers.iter().map(|w| w.lost.is_some()).collect::<Vec<_>>()
    );

    // Down for longer than every session's timeout: a server counting from
    // before the crash would expire them all at once.
    tokio::time::sleep_until(killed + T + Duration::from_millis(100)).await;
    let mut node = start(&mut scratch, &launch).await;
    let addr = node.addr;
    assert!(node.ready_lo - killed > T);

    // The observer sees the lurker's ephemeral go. (It waits without a
    // word for more than T: its own timeout is longer.)
    let (mut observer, _) = open(addr, 3 * T).await;
    let stat = observer
        .exists("/eph/lurker", true)
        .await
        .expect("the lurker's ephemeral survived the restart");
    assert_eq!(stat.ephemeral_owner, lurker_session.session_id);
    let watching = tokio::spawn(async move {
        let event = observer.next_event().await;
        (Instant::now(), event, observer)
    });

    // Every writer reattaches, with its ephemeral, and every acknowledged
    // write is there once.
    let mut alive: Vec<Raw> = Vec::new();
    let mut max_acked_zxid = 0;
    for writer in &writers {
        let (mut raw, reply) = reattach_at(addr, &writer.session, writer.last_zxid).await;
        let again = granted(reply);
        assert!(again.reattached);
        assert!(Instant::now() < node.ready_lo + T);
        let stat = raw
            .exists(&format!("/eph/w{}", writer.index), false)
            .await
            .expect("the writer's ephemeral");
        assert_eq!(stat.ephemeral_owner, writer.session.session_id);
        let applied = check_writer(&mut raw, writer).await;
        eprintln!(
            "writer {}: {} acknowledged writes there; the one cut off ({:?}) {}",
            writer.index,
            writer.acked,
            writer.lost.as_ref().map(|lost| match lost {
                Load::Create { .. } => "create",
                Load::Set { .. } => "set",
                Load::Sequential { .. } => "sequential create",
                Load::Delete { .. } => "delete",
            }),
            if applied { "applied" } else { "not applied" }
        );
        max_acked_zxid = max_acked_zxid.max(writer.last_zxid);
        alive.push(raw);
    }
    // Nothing is reused: the next sequential name follows the last one
    // applied, and new writes get zxids above every acknowledged one.
    for (writer, raw) in writers.iter().zip(&mut alive) {
        let seq = format!("{}/seq", writer.base());
        let (_, stat) = raw.get(&seq, false).await.expect("seq");
        let reply = must(
            raw,
            create_op(&format!("{seq}/s-"), b"after", NodeKind::Persistent, true),
        )
        .await;
        let Some(reply::Result::Create(created)) = reply.result else {
            unreachable!()
        };
        assert_eq!(created.path, format!("{seq}/s-{:010}", stat.cversion));
        assert!(reply.zxid > max_acked_zxid);
    }

    // The churned sessions reattach late, 0.6 T after the restart was ready:
    // still within their timeout counted from then.
    while Instant::now() < node.ready_hi + T * 6 / 10 {
        sleep(Duration::from_millis(100)).await;
        for raw in &mut alive {
            raw.ping().await;
        }
    }
    // All at once, so that the last is as early as the first.
    let attempt = Instant::now();
    assert!(
        attempt < node.ready_lo + T - MARGIN,
        "the test itself is late: reattaching {:?} after ready",
        attempt - node.ready_lo
    );
    let reattached = futures_util::future::join_all(churned.iter().map(|churn| async move {
        let (mut raw, reply) = reattach_at(addr, &churn.session, 0).await;
        let stat = raw.exists(&churn.ephemeral, false).await;
        (raw, reply, stat)
    }))
    .await;
    for (churn, (raw, reply, stat)) in churned.iter().zip(reattached) {
        assert!(granted(reply).reattached);
        match churn.acked {
            Some(_) => assert_eq!(
                stat.map(|s| s.ephemeral_owner),
                Some(churn.session.session_id),
                "{}: an acknowledged ephemeral",
                churn.ephemeral
            ),
            None => assert!(stat.is_none_or(|s| s.ephemeral_owner == churn.session.session_id)),
        }
        alive.push(raw);
    }
    let late = Instant::now() - node.ready_lo;
    assert!(late < T, "the late reattaches ended {late:?} after ready");

    // The lurker, never reattached, expires T after the restart was ready,
    // rounded up to a tick: in (T, T + tick + margin].
    let mut watching = watching;
    let (expired_at, event, mut observer) = loop {
        tokio::select! {
            done = &mut watching => break done.expect("the observer task"),
            () = sleep(Duration::from_millis(200)) => {
                for raw in &mut alive {
                    raw.ping().await;
                }
            }
        }
    };
    assert_eq!(event.path, "/eph/lurker");
    assert_eq!(event.kind(), WatchEventKind::NodeDeleted);
    let report = format!(
        "expired {:?} after ready (R in [{:?}, {:?}] after spawn), T = {T:?}",
        expired_at - node.ready_lo,
        node.ready_lo - node.spawned,
        node.ready_hi - node.spawned,
    );
    eprintln!("lurker {report}");
    assert!(
        expired_at - node.ready_lo > T,
        "the lurker expired early: {report}"
    );
    assert!(
        expired_at - node.ready_hi <= T + TICK + MARGIN,
        "the lurker expired late: {report}"
    );
    let (_, reply) = reattach_at(addr, &lurker_session, 0).await;
    assert_eq!(crate::support::refused(reply), wire::RefusalReason::Expired);
    // Everyone else is still there, past R + T, with their ephemerals.
    for raw in &mut alive {
        raw.ping().await;
    }
    for writer in &writers {
        assert!(
            observer
                .exists(&format!("/eph/w{}", writer.index), false)
                .await
                .is_some()
        );
    }
    for churn in churned.iter().filter(|c| c.acked.is_some()) {
        assert!(observer.exists(&churn.ephemeral, false).await.is_some());
    }
    assert!(node.terminate().await.success(), "{}", node.log_tail());
}

// ---------------------------------------------------------------------------
// 2. and 3. Damaged log files.

/// A server that wrote `/t` and `/t/n0..n{count}` (each data `data-{i}`),
/// the last one `/t/LAST-ENTRY`, then was SIGKILLed. Returns the zxid of
/// the last write.
async fn write_then_kill(scratch: &mut Scratch, count: usize) -> u64 {
    let mut node = start(scratch, &Launch::default()).await;
    let (mut raw, _) = open(node.addr, T).await;
    must(&mut raw, create_op("/t", b"", NodeKind::Persistent, false)).await;
    for i in 0..count {
        let path = format!("/t/n{i}");
        must(
            &mut raw,
            create_op(
                &path,
                format!("data-{i}").as_bytes(),
                NodeKind::Persistent,
                false,
            ),
        )
        .await;
    }
    let last = must(
        &mut raw,
        create_op("/t/LAST-ENTRY", b"last", NodeKind::Persistent, false),
    )
    .await;
    node.kill9();
    last.zxid
}

/// The commit record `raft-log` writes after an entry when openraft saves
/// the committed index: type 2, a log id (version, term, node, index), an
/// 8-byte checksum.
const COMMIT_RECORD: usize = 4 + 25 + 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_dropped_with_a_warning_and_only_it_is_lost() {
    let mut scratch = Scratch::new("torn-tail");
    let last_zxid = write_then_kill(&mut scratch, 10).await;

    // Cut the newest chunk file a few bytes into the last entry's record:
    // past its end only the commit records openraft saves lazily (at most
    // one here) may follow, and they go too.
    let chunk = chunk_files(&scratch.data()).pop().expect("a chunk file");
    let bytes = std::fs::read(&chunk).expect("read");
    let marker = rfind(&bytes, b"/t/LAST-ENTRY").expect("the last entry is in the newest chunk");
    let mut end = bytes.len();
    let mut commits = 0;
    while end - COMMIT_RECORD > marker && bytes[end - COMMIT_RECORD..].starts_with(&[0, 0, 0, 2, 1])
    {
        end -= COMMIT_RECORD;
        commits += 1;
    }
    assert!(
        commits <= 1,
        "{commits} commit records after the last entry"
    );
    let cut = end - 3;
    assert!(
        cut > marker + "/t/LAST-ENTRY".len(),
        "the cut is inside the last entry's checksum"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&chunk)
        .and_then(|file| file.set_len(cut as u64))
        .expect("truncate");
    eprintln!(
        "cut {} from {} to {cut} bytes ({commits} commit record after the entry)",
        chunk.display(),
        bytes.len()
    );

    let mut node = start(&mut scratch, &Launch::default()).await;
    let log = node.log_text();
    let warning = log
        .lines()
        .find(|line| line.contains("dropped an incomplete last record"))
        .unwrap_or_else(|| panic!("no warning about the torn record:\n{log}"));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(
        warning.contains(&chunk.display().to_string()),
        "the warning names the file: {warning}"
    );
    // The dropped bytes are kept beside the log.
    let torn = std::fs::read_dir(scratch.data().join("log").join("torn"))
        .expect("a torn/ directory")
        .count();
    assert_eq!(torn, 1);

    // Everything but the last entry.
    let (mut raw, _) = open(node.addr, T).await;
    let children: BTreeSet<String> = raw
        .children("/t", false)
        .await
        .expect("/t")
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = (0..10).map(|i| format!("n{i}")).collect();
    assert_eq!(children, expected, "all but /t/LAST-ENTRY");
    for i in 0..10 {
        let (data, _) = raw.get(&format!("/t/n{i}"), false).await.expect("node");
        assert_eq!(data.as_ref(), format!("data-{i}").as_bytes());
    }
    // Its index is taken again by the next entry (the new term's first).
    assert!(raw.zxid().await >= last_zxid);
    must(
        &mut raw,
        create_op("/t/after", b"", NodeKind::Persistent, false),
    )
    .await;
    assert!(node.terminate().await.success(), "{}", node.log_tail());
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_complete_record_is_refused_and_nothing_is_changed() {
    let mut scratch = Scratch::new("flipped");
    write_then_kill(&mut scratch, 10).await;
    let chunk_name = chunk_files(&scratch.data())
        .pop()
        .expect("a chunk file")
        .file_name()
        .expect("name")
        .to_owned();

    // An old record (/t/n2's create) and the last one (complete, not torn).
    for (case, needle) in [
        ("old", b"data-2".as_slice()),
        ("last", b"/t/LAST-ENTRY".as_slice()),
    ] {
        let dir = scratch.base.join(format!("data-{case}"));
        copy_tree(&scratch.data(), &dir);
        let chunk = dir.join("log").join(&chunk_name);
        let bytes = std::fs::read(&chunk).expect("read");
        let at = rfind(&bytes, needle).expect("the record is in the file");
        flip_byte(&chunk, at + 1);
        let before = tree_bytes(&dir);
        let launch = Launch {
            data_dir: Some(dir.clone()),
            ..Launch::default()
        };
        let started = Instant::now();
        let (status, log) = start_refused(&mut scratch, &launch).await;
        assert!(
            !status.success(),
            "{case}: started on a damaged log:\n{log}"
        );
        let error = log
            .lines()
            .find(|line| line.contains("cannot start"))
            .unwrap_or_else(|| panic!("{case}: no start error:\n{log}"));
        assert!(
            error.contains(&chunk.display().to_string()) && error.contains("is damaged at byte"),
            "{case}: the error names the file: {error}"
        );
        let after = tree_bytes(&dir);
        assert!(
            after == before,
            "{case}: a refused start changed {:?}",
            changed(&before, &after)
        );
        eprintln!("{case}: refused in {:?}: {error}", started.elapsed());
    }
}

// ---------------------------------------------------------------------------
// 4. Snapshots and the purged log.

/// The biggest node data (the default limit): big entries fill a 64 MiB
/// chunk file in few writes. (Bigger ones, with `--max-data-bytes`, are
/// slower per byte.)
const BIG: usize = 512 << 10;

fn big_data(round: usize) -> Vec<u8> {
    let mut data = vec![u8::try_from(round % 251).expect("small"); BIG];
    data[..8].copy_from_slice(&(round as u64).to_be_bytes());
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_snapshots_and_purge_keeps_everything_and_a_corrupt_snapshot_is_refused() {
    const NODES: usize = 300;
    let mut scratch = Scratch::new("snapshot");
    let launch = Launch {
        snapshot_every: Some(20),
        ..Launch::default()
    };
    let mut node = start(&mut scratch, &launch).await;
    let (mut raw, _) = open(node.addr, 2 * T).await;
    let first_chunk = chunk_files(&scratch.data())
        .first()
        .cloned()
        .expect("a chunk file");
    must(&mut raw, create_op("/s", b"", NodeKind::Persistent, false)).await;
    for i in 0..NODES {
        must(
            &mut raw,
            create_op(
                &format!("/s/n{i}"),
                format!("data-{i}").as_bytes(),
                NodeKind::Persistent,
                false,
            ),
        )
        .await;
    }
    let zxid = raw.zxid().await;
    let taken = stats(&node).await;
    assert!(
        taken.snapshot_zxid > 0 && taken.snapshot_zxid + 20 >= zxid,
        "a snapshot at most 20 entries behind zxid {zxid}: {taken:?}"
    );
    let snapshots = snapshot_files(&scratch.data());
    assert_eq!(
        snapshots.len(),
        1,
        "older snapshots are removed: {snapshots:?}"
    );

    // `raft-log` purges whole chunk files, and a chunk file is closed at 64
    // MiB (not configurable from the command line): fill one with the
    // biggest entries, until the purge behind the next snapshot deletes it.
    must(
        &mut raw,
        create_op("/big", b"", NodeKind::Persistent, false),
    )
    .await;
    must(
        &mut raw,
        create_op("/small", b"", NodeKind::Persistent, false),
    )
    .await;
    let (mut rounds, mut smalls) = (0, 0);
    let filling = Instant::now();
    while first_chunk.exists() {
        if chunk_files(&scratch.data()).len() < 2 {
            assert!(
                rounds < 200,
                "no second chunk file after {rounds} writes of {BIG} bytes"
            );
            let version = i32::try_from(rounds).expect("small");
            must(&mut raw, set_op("/big", &big_data(rounds), version)).await;
            rounds += 1;
        } else {
            // Closed: small entries up to the next snapshot, whose purge
            // deletes it.
            assert!(
                smalls <= 45,
                "the first chunk file outlived {smalls} more entries"
            );
            let version = i32::try_from(smalls).expect("small");
            must(&mut raw, set_op("/small", b"tick", version)).await;
            smalls += 1;
        }
    }
    eprintln!(
        "first chunk file purged after {rounds} writes of {BIG} bytes and {smalls} small ones \
         in {:?}; chunk files now {:?}",
        filling.elapsed(),
        chunk_files(&scratch.data())
    );
    let before = stats(&node).await;
    assert!(before.snapshot_zxid > taken.snapshot_zxid, "{before:?}");
    let zxid = raw.zxid().await;

    // SIGKILL, restart: everything is there, from the snapshot and the log
    // behind it.
    node.kill9();
    let mut node = start(&mut scratch, &launch).await;
    let (mut raw, _) = open(node.addr, 2 * T).await;
    assert!(raw.zxid().await >= zxid);
    let after = stats(&node).await;
    assert!(after.snapshot_zxid >= before.snapshot_zxid, "{after:?}");
    let children: BTreeSet<String> = raw
        .children("/s", false)
        .await
        .expect("/s")
        .into_iter()
        .collect();
    assert_eq!(children.len(), NODES);
    for i in 0..NODES {
        let (data, stat) = raw.get(&format!("/s/n{i}"), false).await.expect("a node");
        assert_eq!(data.as_ref(), format!("data-{i}").as_bytes());
        assert_eq!(stat.version, 0);
    }
    let (data, stat) = raw.get("/big", false).await.expect("/big");
    assert_eq!(
        data.as_ref(),
        big_data(rounds - 1).as_slice(),
        "the last big write"
    );
    assert_eq!(usize::try_from(stat.version).expect("version"), rounds);
    let (_, stat) = raw.get("/small", false).await.expect("/small");
    assert_eq!(usize::try_from(stat.version).expect("version"), smalls);
    assert!(node.terminate().await.success(), "{}", node.log_tail());

    // A flipped byte in the snapshot: refused, naming the file, nothing
    // changed.
    let snapshot = snapshot_files(&scratch.data()).pop().expect("a snapshot");
    let len = std::fs::metadata(&snapshot).expect("metadata").len();
    flip_byte(&snapshot, usize::try_from(len / 2).expect("small"));
    let before = tree_bytes(&scratch.data());
    let (status, log) = start_refused(&mut scratch, &launch).await;
    assert!(!status.success(), "started on a corrupt snapshot:\n{log}");
    let error = log
        .lines()
        .find(|line| line.contains("cannot start"))
        .unwrap_or_else(|| panic!("no start error:\n{log}"));
    assert!(
        error.contains(&format!("snapshot file {} is corrupt", snapshot.display())),
        "the error names the file: {error}"
    );
    let after = tree_bytes(&scratch.data());
    assert!(
        after == before,
        "a refused start changed {:?}",
        changed(&before, &after)
    );
}

// ---------------------------------------------------------------------------
// 5. Session ids across restarts.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_minted_after_a_restart_are_above_every_earlier_one() {
    // The wall clock plays no part once a server's ids run: session-core's
    // `a_server_mints_consecutive_ids_whatever_its_clock_does` and
    // `ids_strictly_increase_and_never_collide_when_prepared_from_the_same_state`
    // (session-core/src/txn/tests.rs) step the clock back by 90 s and an
    // hour and get the next id all the same. Here: the high-water mark
    // survives a SIGKILL (from the log) and a SIGTERM after snapshots (from
    // the snapshot), even when the sessions with the highest ids are gone.
    let mut scratch = Scratch::new("ids");
    let launch = Launch {
        snapshot_every: Some(5),
        ..Launch::default()
    };
    let mut node = start(&mut scratch, &launch).await;
    let mut before = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..6 {
        let (raw, session) = open(node.addr, T).await;
        before.push(session.session_id);
        connections.push(raw);
    }
    // The two newest sessions close: no session held shows the highest id.
    for mut raw in connections.drain(4..) {
        raw.send(wire::CloseSession {}).await;
        assert!(matches!(
            raw.recv().await.and_then(|m| m.kind),
            Some(wire::server_message::Kind::CloseAck(_))
        ));
    }
    let max_before = *before.iter().max().expect("ids");
    node.kill9();

    let mut node = start(&mut scratch, &launch).await;
    let mut after = Vec::new();
    for _ in 0..3 {
        let (mut raw, session) = open(node.addr, T).await;
        after.push(session.session_id);
        // Writes, so that snapshots cover the ids minted here.
        for i in 0..4 {
            must(
                &mut raw,
                create_op(
                    &format!("/x{}-{i}", session.session_id),
                    b"",
                    NodeKind::Persistent,
                    false,
                ),
            )
            .await;
        }
    }
    assert!(
        after.iter().all(|id| *id > max_before),
        "ids after the SIGKILL {after:x?} not all above those before {before:x?}"
    );
    // Ids run consecutively per server: no id is skipped either.
    assert_eq!(after[0], max_before + 1, "{before:x?} then {after:x?}");
    assert!(stats(&node).await.snapshot_zxid > 0);
    let max_after = *after.iter().max().expect("ids");
    assert!(node.terminate().await.success(), "{}", node.log_tail());

    let mut node = start(&mut scratch, &launch).await;
    let (_raw, session) = open(node.addr, T).await;
    assert_eq!(
        session.session_id,
        max_after + 1,
        "after a snapshot and SIGTERM: {after:x?} then {:x}",
        session.session_id
    );
    assert!(node.terminate().await.success(), "{}", node.log_tail());
}

// ---------------------------------------------------------------------------
// 6. Watches across a restart.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_watcher_never_read_fires_at_once_on_set_watches_after_a_restart() {
    let mut scratch = Scratch::new("watches");
    let mut node = start(&mut scratch, &Launch::default()).await;
    let (mut writer, _) = open(node.addr, T).await;
    must(
        &mut writer,
        create_op("/cfg", b"v1", NodeKind::Persistent, false),
    )
    .await;
    must(
        &mut writer,
        create_op("/dir", b"", NodeKind::Persistent, false),
    )
    .await;

    // The watcher sets a data, a child and an exist watch, and has seen
    // every zxid up to its last reply.
    let (mut watcher, watcher_session) = open(node.addr, 2 * T).await;
    let data_watch = must(
        &mut watcher,
        request::Op::GetData(wire::GetData {
            path: "/cfg".to_owned(),
            watch: true,
        }),
    )
    .await;
    watcher.children("/dir", true).await.expect("child watch");
    assert!(watcher.exists("/later", true).await.is_none());
    let seen = watcher.zxid().await;
    assert!(seen >= data_watch.zxid);
    // Another watcher that will have seen the changes: its watches must be
    // registered, not fired.
    let (mut caught_up, caught_up_session) = open(node.addr, 2 * T).await;

    let changed = must(&mut writer, set_op("/cfg", b"v2", 0)).await.zxid;
    let child = must(
        &mut writer,
        create_op("/dir/c", b"", NodeKind::Persistent, false),
    )
    .await
    .zxid;
    let created = must(
        &mut writer,
        create_op("/later", b"", NodeKind::Persistent, false),
    )
    .await
    .zxid;
    let caught_up_zxid = caught_up.zxid().await;
    assert!(caught_up_zxid >= created);
    // SIGKILL before the watcher reads its events.
    node.kill9();
    drop((watcher, caught_up, writer));

    let mut node = start(&mut scratch, &Launch::default()).await;
    let (mut watcher, reply) = reattach_at(node.addr, &watcher_session, seen).await;
    assert!(granted(reply).reattached);
    let set_watches = |last_zxid_seen| {
        request::Op::SetWatches(wire::SetWatches {
            persistent_paths: Vec::new(),
            persistent_recursive_paths: Vec::new(),
            last_zxid_seen,
            data_paths: vec!["/cfg".to_owned()],
            exist_paths: vec!["/later".to_owned()],
            child_paths: vec!["/dir".to_owned()],
        })
    };
    must(&mut watcher, set_watches(seen)).await;
    // At once: the events come before the SetWatches reply.
    let mut fired: Vec<(WatchEventKind, String, u64)> = watcher
        .events
        .drain(..)
        .map(|event| (event.kind(), event.path.clone(), event.zxid))
        .collect();
    fired.sort();
    let mut expected = vec![
        (WatchEventKind::NodeDataChanged, "/cfg".to_owned(), changed),
        (
            WatchEventKind::NodeChildrenChanged,
            "/dir".to_owned(),
            child,
        ),
        (WatchEventKind::NodeCreated, "/later".to_owned(), created),
    ];
    expected.sort();
    assert_eq!(fired, expected);

    // A watcher that had seen it all: nothing fires, the watches hold. (Its
    // data and child watches only: an exist watch on a node that exists
    // fires whatever the zxid, as in ZooKeeper, since a client that saw the
    // node created no longer holds one.)
    let (mut caught_up, reply) = reattach_at(node.addr, &caught_up_session, caught_up_zxid).await;
    assert!(granted(reply).reattached);
    let op = request::Op::SetWatches(wire::SetWatches {
        persistent_paths: Vec::new(),
        persistent_recursive_paths: Vec::new(),
        last_zxid_seen: caught_up_zxid,
        data_paths: vec!["/cfg".to_owned()],
        exist_paths: vec![],
        child_paths: vec!["/dir".to_owned()],
    });
    must(&mut caught_up, op).await;
    assert!(caught_up.events.is_empty(), "{:?}", caught_up.events);
    let (mut writer, _) = open(node.addr, T).await;
    let again = must(&mut writer, set_op("/cfg", b"v3", 1)).await.zxid;
    let event = timeout(PATIENCE, caught_up.next_event())
        .await
        .expect("an event");
    assert_eq!(
        (event.kind(), event.path.as_str(), event.zxid),
        (WatchEventKind::NodeDataChanged, "/cfg", again)
    );
    assert!(node.terminate().await.success(), "{}", node.log_tail());
}

// ---------------------------------------------------------------------------
// 7. and 8. Directories that are not this server's to use.

/// The first line of a refused start's error.
fn start_error(log: &str) -> &str {
    log.lines()
        .find(|line| line.contains("cannot start"))
        .unwrap_or_else(|| panic!("no start error:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_servers_directory_or_a_foreign_one_is_refused_untouched() {
    let mut scratch = Scratch::new("foreign");
    let mut node = start(&mut scratch, &Launch::default()).await;
    let (mut raw, _) = open(node.addr, T).await;
    must(
        &mut raw,
        create_op("/mine", b"", NodeKind::Persistent, false),
    )
    .await;
    assert!(node.terminate().await.success(), "{}", node.log_tail());
    let identity = scratch.data().join("identity");

    // Server 2 on server 1's directory.
    let before = tree_bytes(&scratch.data());
    let launch = Launch {
        server_id: Some(2),
        ..Launch::default()
    };
    let (status, log) = start_refused(&mut scratch, &launch).await;
    assert!(
        !status.success(),
        "server 2 started on server 1's directory:\n{log}"
    );
    let error = start_error(&log);
    assert!(
        error.contains(&identity.display().to_string()) && error.contains("server 1"),
        "the error names the identity file and what it says: {error}"
    );
    let after = tree_bytes(&scratch.data());
    assert!(
        after == before,
        "a refused start changed {:?}",
        changed(&before, &after)
    );

    // A directory with files but no identity file.
    let other = scratch.base.join("not-a-data-dir");
    std::fs::create_dir_all(other.join("stuff")).expect("mkdir");
    std::fs::write(other.join("notes.txt"), b"my notes").expect("write");
    let before = tree_bytes(&other);
    let launch = Launch {
        data_dir: Some(other.clone()),
        ..Launch::default()
    };
    let (status, log) = start_refused(&mut scratch, &launch).await;
    assert!(!status.success(), "started on a foreign directory:\n{log}");
    let error = start_error(&log);
    assert!(
        error.contains(&other.join("identity").display().to_string())
            && error.contains("no identity file"),
        "the error names the identity file: {error}"
    );
    let after = tree_bytes(&other);
    assert!(
        after == before,
        "a refused start changed {:?}",
        changed(&before, &after)
    );

    // Server 1 still starts on its own, with its data.
    let mut node = start(&mut scratch, &Launch::default()).await;
    let (mut raw, _) = open(node.addr, T).await;
    assert!(raw.exists("/mine", false).await.is_some());
    assert!(node.terminate().await.success(), "{}", node.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_directory_in_use_is_refused_and_the_first_serves_on() {
    let mut scratch = Scratch::new("locked");
    let mut first = start(&mut scratch, &Launch::default()).await;
    let (mut raw, _) = open(first.addr, 2 * T).await;
    must(&mut raw, create_op("/a", b"1", NodeKind::Persistent, false)).await;
    let before = settled_tree(&scratch.data()).await;

    let (status, log) = start_refused(&mut scratch, &Launch::default()).await;
    assert!(
        !status.success(),
        "a second server started on a directory in use:\n{log}"
    );
    let error = start_error(&log);
    assert!(
        error.contains(&scratch.data().join("log").display().to_string())
            && error.contains("in use by another process"),
        "the error says the directory is locked: {error}"
    );
    let after = tree_bytes(&scratch.data());
    assert!(
        after == before,
        "the second server changed {:?}",
        changed(&before, &after)
    );

    // The first serves on: its session, writes, reads, a new session.
    must(&mut raw, set_op("/a", b"2", 0)).await;
    let (data, _) = raw.get("/a", false).await.expect("/a");
    assert_eq!(data.as_ref(), b"2");
    let (mut other, _) = open(first.addr, T).await;
    must(
        &mut other,
        create_op("/b", b"", NodeKind::Persistent, false),
    )
    .await;
    assert!(first.terminate().await.success(), "{}", first.log_tail());
}

// ---------------------------------------------------------------------------
// 9. A full disk.

/// The file size limit of the full-disk test: 64 blocks of 512 bytes
/// (dash's unit for `ulimit -f`), 32 KiB: about 28 writes of 1 KiB.
const FILE_SIZE_BLOCKS: u64 = 64;

/// How long a write may take to fail once the disk is full: far above a
/// loopback round trip and an fsync, far below "hangs until a timeout".
const PROMPT: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_with_unavailable_while_reads_and_heartbeats_go_on() {
    let mut scratch = Scratch::new("full-disk");
    let launch = Launch {
        file_size_blocks: Some(FILE_SIZE_BLOCKS),
        ..Launch::default()
    };
    let mut node = start(&mut scratch, &launch).await;
    let (mut writer, _) = open(node.addr, T).await;
    let (mut reader, _) = open(node.addr, T).await;
    let (mut lurker, _) = open(node.addr, T).await;
    must(
        &mut writer,
        create_op("/full", b"", NodeKind::Persistent, false),
    )
    .await;
    must(
        &mut lurker,
        create_op("/full-lurker", b"", NodeKind::Ephemeral, false),
    )
    .await;

    // Write 1 KiB nodes until a write fails.
    let mut acked = 0;
    let (error, took) = loop {
        assert!(
            acked < 200,
            "{acked} writes of 1 KiB under a {FILE_SIZE_BLOCKS}-block limit"
        );
        let sent = Instant::now();
        let op = create_op(
            &format!("/full/n{acked}"),
            &[7; 1024],
            NodeKind::Persistent,
            false,
        );
        let reply = writer.try_reply(op).await.unwrap_or_else(|| {
            panic!(
                "the connection closed after {acked} writes:\n{}",
                node.log_tail()
            )
        });
        match reply.result {
            Some(reply::Result::Create(_)) => acked += 1,
            Some(reply::Result::Error(error)) => break (error, sent.elapsed()),
            other => panic!("{other:?}"),
        }
    };
    eprintln!(
        "write {acked} failed after {took:?}: {:?} {:?}",
        error.code(),
        error.detail
    );
    assert!(
        acked >= 10,
        "only {acked} writes fit in {FILE_SIZE_BLOCKS} blocks"
    );
    assert_eq!(error.code(), ErrorCode::Unavailable, "{error:?}");
    assert!(
        error.detail.contains("File too large"),
        "the detail names the I/O error: {error:?}"
    );
    assert!(took < PROMPT, "the failure took {took:?}");
    // Every write after it fails the same way, promptly (openraft stopped
    // on the storage error: nothing is written until a restart).
    for i in 0..3 {
        let sent = Instant::now();
        let op = create_op(&format!("/full/again{i}"), b"", NodeKind::Persistent, false);
        let reply = writer.try_reply(op).await.expect("a reply");
        let Some(reply::Result::Error(again)) = reply.result else {
            panic!("a write succeeded after the disk filled: {reply:?}");
        };
        assert_eq!(again.code(), ErrorCode::Unavailable);
        assert!(sent.elapsed() < PROMPT);
    }

    // Reads work, and heartbeats keep sessions alive past their timeout.
    let pinged = Instant::now();
    while pinged.elapsed() < 2 * T {
        sleep(T / 4).await;
        writer.ping().await;
        reader.ping().await;
    }
    for raw in [&mut writer, &mut reader] {
        let (data, _) = raw.get("/full/n0", false).await.expect("a read");
        assert_eq!(data.as_ref(), [7; 1024].as_slice());
        assert!(
            raw.exists(&format!("/full/n{}", acked - 1), false)
                .await
                .is_some()
        );
        assert!(
            raw.exists(&format!("/full/n{acked}"), false)
                .await
                .is_none()
        );
        assert!(raw.exists("/full/again0", false).await.is_none());
    }
    // Found, not asserted (see the report): the lurker's timeout passed
    // long ago, but closing it is a write.
    let lurker_ephemeral = reader.exists("/full-lurker", false).await;
    eprintln!(
        "{:?} after the lurker's timeout, its ephemeral is {}",
        pinged.elapsed(),
        if lurker_ephemeral.is_some() {
            "still there"
        } else {
            "gone"
        }
    );
    // A new session is a write too: refused, saying why.
    let mut fresh = Raw::connect(node.addr).await;
    let reply = timeout(PATIENCE, fresh.handshake(crate::support::new_session(T)))
        .await
        .expect("a handshake reply");
    let Some(wire::handshake_reply::Outcome::Refused(refusal)) = reply.outcome else {
        panic!("a new session on a full disk: {reply:?}");
    };
    eprintln!(
        "new session refused: {:?} {:?}",
        refusal.reason(),
        refusal.detail
    );
    assert_eq!(refusal.reason(), wire::RefusalReason::Unavailable);
    assert!(refusal.detail.contains("File too large"), "{refusal:?}");
    let status = node.child.try_wait().expect("try_wait");
    assert!(status.is_none(), "the server exited: {status:?}");
    drop(lurker);
    node.kill9();

    // With room again: every acknowledged write is there; the torn tail
    // the failed write left is dropped.
    let mut node = start(&mut scratch, &Launch::default()).await;
    assert!(
        node.log_text()
            .contains("dropped an incomplete last record"),
        "{}",
        node.log_tail()
    );
    let (mut raw, _) = open(node.addr, T).await;
    let children = raw.children("/full", false).await.expect("/full");
    for i in 0..acked {
        assert!(
            children.contains(&format!("n{i}")),
            "n{i} lost: {children:?}"
        );
    }
    eprintln!(
        "after the restart: {} nodes (the failed write {})",
        children.len(),
        if children.contains(&format!("n{acked}")) {
            "applied"
        } else {
            "absent"
        }
    );
    assert!(node.terminate().await.success(), "{}", node.log_tail());
}
