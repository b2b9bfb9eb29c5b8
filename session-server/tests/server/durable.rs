//! Durability: the server binary killed, restarted, and handed damaged,
//! foreign, locked or full data directories.
//!
//! Every test runs `session-server --data-dir DIR` as a child process (the
//! binary in `SESSION_SERVER_BIN`, else the one cargo built), with a tick of
//! 50 ms, in a fresh directory under the system temp dir that is removed at
//! the end; it is killed with SIGKILL (`Child::kill`) or SIGTERM (`kill(1)`).
//!
//! When a restarted server is ready (R): it logs "state loaded from disk"
//! just before it gives every session a fresh timeout, and "session server
//! started" just after (both in JSON, with their wall-clock time), so R lies
//! between the two timestamps: `ready_lo <= R <= ready_hi`, microseconds
//! apart. A lower bound on an expiry is checked against `ready_lo`, an upper
//! one against `ready_hi`, so neither check can fail a correct server.

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

use crate::support::{PATIENCE, Raw, TICK, granted};

/// The session timeout of every session here unless a test says otherwise.
const T: Duration = Duration::from_millis(1000);

/// What an upper bound on an expiry adds to the server's own deadline
/// (R + T, rounded up to the next tick, which `TICK` covers): the reaper's
/// close goes through Raft (one fsync), the watch event crosses loopback,
/// and on the shared 2-core machine where the suite runs in parallel (each
/// test with its own server process) a woken thread can wait tens of
/// milliseconds. 150 ms is three ticks, far below T, as in stalled.rs.
const MARGIN: Duration = Duration::from_millis(150);

// ---------------------------------------------------------------------------
// The binary and its directory.

/// The server binary as CI ships it (`SESSION_SERVER_BIN`), else the one
/// cargo built for these tests.
fn server_binary() -> PathBuf {
    std::env::var_os("SESSION_SERVER_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_session-server")),
        PathBuf::from,
    )
}

/// A port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

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
                    self.log_text().contains(&format!("\"listen\":\"{}\"", self.addr)),
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
    let stamp = line
        .split("\"timestamp\":\"")
        .nth(1)?
        .split('"')
        .next()?;
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

fn persistent() -> i32 {
    NodeKind::Persistent.into()
}

fn create_op(path: &str, data: &[u8], kind: NodeKind, sequential: bool) -> request::Op {
    request::Op::Create(wire::Create {
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
    let what = format!("{op:?}");
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
                model.insert(format!("{prefix}{:010}", self.sequence), (data.clone(), 0, 0));
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
async fn write_until_killed(mut raw: Raw, mut writer: Writer, acks: std::sync::Arc<AtomicU64>) -> Writer {
    let base = writer.base();
    for k in 0usize.. {
        let load = match k % 4 {
            0 => Load::Create {
                path: format!("{base}/n{k}"),
                data: format!("w{}-n{k}", writer.index).into_bytes(),
            },
            1 => Load::Set {
                path: format!("{base}/counter"),
                data: format!("w{}-c{k}", writer.index).into_bytes(),
            },
            2 => Load::Sequential {
                prefix: format!("{base}/seq/s-"),
                data: format!("w{}-s{k}", writer.index).into_bytes(),
            },
            _ => Load::Delete {
                path: format!("{base}/n{}", k - 3),
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
            (Load::Create { path, data }, Some(reply::Result::Create(created))) => {
                assert_eq!(&created.path, path);
                writer.model.insert(path.clone(), (data.clone(), 0, zxid));
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
        if raw.framed.send(handshake.into()).await.is_err() {
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
            .try_reply(create_op(&ephemeral, b"churned", NodeKind::Ephemeral, false))
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

/// Checks a writer's subtree after the restart against what it was told.
async fn check_writer(reader: &mut Raw, writer: &Writer) {
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
    let applied = writer.sequence + usize::from(with_lost && !acknowledged && matches!(writer.lost, Some(Load::Sequential { .. })));
    assert_eq!(
        usize::try_from(seq.cversion).expect("cversion"),
        applied,
        "writer {}: every sequential create applied once",
        writer.index
    );
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
    must(&mut setup, create_op("/eph", b"", NodeKind::Persistent, false)).await;
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
            let reply = must(&mut raw, create_op(&path, data, NodeKind::Persistent, false)).await;
            model.insert(path, (data.to_vec(), 0, reply.zxid));
        }
        let reply = must(
            &mut raw,
            create_op(&format!("/eph/w{index}"), b"writer", NodeKind::Ephemeral, false),
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
            tokio::spawn(write_until_killed(raw, writer, std::sync::Arc::clone(&acks)))
        })
        .collect();
    let churner = tokio::spawn(churn_until_killed(addr));
    // Kill mid-load: after 90 acknowledged writes or 500 ms, whichever is
    // first (every session was heard from less than T before the kill).
    while acks.load(Ordering::Relaxed) < 90 && load_started.elapsed() < Duration::from_millis(500)
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
    sleep_until_instant(killed + T + Duration::from_millis(100)).await;
    let mut node = start(&mut scratch, &launch).await;
    let addr = node.addr;
    assert!(node.ready_lo - killed > T);

    // The observer sees the lurker's ephemeral go.
    let (mut observer, _) = open(addr, T).await;
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
        check_writer(&mut raw, writer).await;
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
    for churn in &churned {
        let attempt = Instant::now();
        assert!(
            attempt < node.ready_lo + T - MARGIN,
            "the test itself is late: reattaching {:?} after ready",
            attempt - node.ready_lo
        );
        let (mut raw, reply) = reattach_at(addr, &churn.session, 0).await;
        assert!(granted(reply).reattached);
        let stat = raw.exists(&churn.ephemeral, false).await;
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

    // The lurker, never reattached, expires T after the restart was ready,
    // rounded up to a tick: in (T, T + tick + margin].
    let (expired_at, event, mut observer) = loop {
        tokio::select! {
            done = &mut Box::pin(async { timeout(PATIENCE, &mut *Box::leak(Box::new(()))).await }) => { let _ = done; unreachable!() }
        }
    };
}
