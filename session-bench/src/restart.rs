//! The restart scenario, session-server only: how long a durable server
//! takes to come back with everything it held.
//!
//! This subcommand starts the server itself (`--server-bin`, on
//! `--data-dir`), so that it can stop it and time the new start from the
//! spawn. It fills the server with `--nodes` persistent nodes (created by a
//! few raw sessions with many creates in flight each) and `--sessions`
//! sessions (raw handshakes whose sockets are closed at once: a session
//! outlives its connection until its timeout, and the timeout asked for is
//! long enough to outlast the fill). Then, for each `--stop` in turn
//! (SIGTERM, SIGKILL), it stops the server, measures the data directory,
//! starts the server again on it and measures from the spawn: when a new
//! session's handshake is answered (`*_handshake_ms`); when that session's
//! `exists` on the nodes' parent has shown all of its children and the
//! oldest session of the fill has reattached with its id and password
//! (`*_all_back_ms`); and, in parallel, when the admin `Stats` shows every
//! session and node of before the stop with none expired (`*_stats_ms`;
//! the first answer on a new gRPC connection, which can add tens of
//! milliseconds). Then it reads the server's RSS.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use session_wire::admin::v1::{StatsRequest, StatsResponse, admin_client::AdminClient};
use session_wire::v1::{
    ClientMessage, Create, ErrorCode, Exists, NodeKind, Request, reply, request, server_message,
};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

use crate::Target;
use crate::client::BenchError;
use crate::raw::{Credentials, RawSession};
use crate::scenarios::{progress, result};
use crate::sys;

/// The parent of every node of the fill.
const PARENT: &str = "/bench-restart";
/// The data of every node of the fill.
const NODE_DATA: [u8; 32] = [0xa5; 32];
/// How long a start may take until everything is back.
const BACK_LIMIT: Duration = Duration::from_secs(300);
/// How long each part of the fill may take.
const FILL_LIMIT: Duration = Duration::from_secs(3600);
/// How long a stopped server may take to exit.
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// How often the probes try again while the server is not up yet.
const RETRY: Duration = Duration::from_millis(2);

/// How the server is stopped before a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Stop {
    /// SIGTERM: a clean shutdown.
    Term,
    /// SIGKILL: a crash.
    Kill,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Term => "term",
            Stop::Kill => "kill",
        }
    }
}

/// The scenario's parameters (the subcommand's flags).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RestartArgs {
    /// The session-server binary to start.
    #[arg(long)]
    server_bin: PathBuf,
    /// The server's data directory: must not exist yet, or be empty.
    #[arg(long)]
    data_dir: PathBuf,
    /// Sessions to create before the restart.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// Persistent nodes to create before the restart.
    #[arg(long, default_value_t = 100_000)]
    nodes: usize,
    /// The server's tick in milliseconds (`--tick-ms`).
    #[arg(long, default_value_t = 2000)]
    tick_ms: u64,
    /// Session timeout asked for, in milliseconds. Past 20 × tick the server
    /// is started with `--max-session-timeout-ms` this. It must outlast the
    /// fill: the sessions' sockets are closed once they are open.
    #[arg(long, default_value_t = 1_800_000)]
    timeout_ms: u64,
    /// How to stop the server, in order; each stop is followed by a timed
    /// start on the same directory.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "term,kill")]
    stops: Vec<Stop>,
    /// Handshakes in flight while creating the sessions.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Sessions creating the nodes, each with `--window` creates in flight.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Creates in flight on each writer session.
    #[arg(long, default_value_t = 250)]
    window: usize,
}

/// Free loopback addresses for the server, kept across its restarts.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: SocketAddr,
    admin: SocketAddr,
    metrics: SocketAddr,
}

/// A started server; killed if dropped while still running.
struct Server {
    child: Child,
    pid: u32,
    spawned: Instant,
}

/// What the server held before a stop.
#[derive(Debug, Clone, Copy)]
struct Expect {
    sessions: u64,
    nodes: u64,
}

/// Runs the scenario and prints its RESULT line.
pub(crate) async fn restart(args: &RestartArgs) -> Result<(), BenchError> {
    if args.stops.is_empty() {
        return Err("--stops names no stop".into());
    }
    if args.data_dir.exists() && std::fs::read_dir(&args.data_dir)?.next().is_some() {
        return Err(format!("{} is not empty", args.data_dir.display()).into());
    }
    let ports = Ports {
        client: free_port()?,
        admin: free_port()?,
        metrics: free_port()?,
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let addr = ports.client.to_string();
    let mut server = spawn(args, ports)?;
    // The first start is on an empty directory: not timed, only awaited.
    let (_, probe) = wait_handshake(&mut server, &addr, timeout).await?;
    drop(probe);

    let mut fields = Fields::default();
    fields.push("sessions", args.sessions.to_string());
    fields.push("nodes", args.nodes.to_string());
    fields.push("node_data_b", NODE_DATA.len().to_string());
    fields.push("timeout_ms", args.timeout_ms.to_string());
    let control = create_parent(&addr, timeout).await?;
    progress(format!(
        "restart: creating {} persistent nodes ({} sessions, {} creates in flight each)",
        args.nodes, args.writers, args.window
    ));
    let started = Instant::now();
    create_nodes(&addr, args, timeout).await?;
    let nodes_s = started.elapsed().as_secs_f64();
    fields.push("fill_nodes_s", format!("{nodes_s:.1}"));
    fields.push(
        "fill_nodes_per_s",
        format!("{:.0}", args.nodes as f64 / nodes_s),
    );
    progress(format!(
        "restart: {} nodes in {nodes_s:.1} s; creating {} sessions ({} handshakes in flight, sockets closed once open)",
        args.nodes, args.sessions, args.in_flight
    ));
    let started = Instant::now();
    let oldest = create_sessions(&addr, args, timeout).await?;
    let sessions_s = started.elapsed().as_secs_f64();
    fields.push("fill_sessions_s", format!("{sessions_s:.1}"));
    fields.push(
        "fill_sessions_per_s",
        format!("{:.0}", args.sessions as f64 / sessions_s),
    );

    let before = stats(ports.admin).await?;
    // Every session of the fill, the writers' and the control session; the
    // root, the parent and every node.
    let want_sessions = (args.sessions + args.writers + 1) as u64;
    let want_nodes = (args.nodes + 2) as u64;
    if before.sessions < want_sessions || before.nodes < want_nodes {
        return Err(format!(
            "after the fill the server holds {} sessions and {} nodes, expected {want_sessions} and \
             {want_nodes} (did sessions expire during the fill? raise --timeout-ms)",
            before.sessions, before.nodes
        )
        .into());
    }
    progress(format!(
        "restart: filled in {sessions_s:.1} s; server holds {} sessions, {} nodes, zxid {}, \
         snapshot at {}",
        before.sessions, before.nodes, before.zxid, before.snapshot_zxid
    ));
    fields.push("zxid", before.zxid.to_string());
    fields.push("snapshot_zxid", before.snapshot_zxid.to_string());
    fields.push(
        "replayed_entries",
        before.zxid.saturating_sub(before.snapshot_zxid).to_string(),
    );
    fields.push("rss_before_mib", mib(sys::rss_bytes(server.pid)?));
    let mut expect = Expect {
        sessions: before.sessions,
        nodes: before.nodes,
    };
    drop(control);

    for &stop in &args.stops {
        let name = stop.name();
        let stop_ms = stop_server(&mut server, stop).await?;
        let dir_bytes = sys::dir_bytes(&args.data_dir)?;
        // The server's layout: the Raft log in `log/`, snapshots in
        // `snapshots/`.
        let part = |name: &str| {
            let dir = args.data_dir.join(name);
            if dir.is_dir() {
                sys::dir_bytes(&dir).map(mib)
            } else {
                Ok("-".to_owned())
            }
        };
        let (log, snapshots) = (part("log")?, part("snapshots")?);
        progress(format!(
            "restart: stopped by SIG{} in {stop_ms:.0} ms; data directory {} MiB; starting again",
            name.to_uppercase(),
            mib(dir_bytes)
        ));
        server = spawn(args, ports)?;
        let probe = Probe {
            addr: &addr,
            admin: ports.admin,
            timeout,
            expect,
            nodes: args.nodes,
            oldest: &oldest,
        };
        let back = wait_back(&mut server, &probe).await?;
        let rss = sys::rss_bytes(server.pid)?;
        progress(format!(
            "restart after SIG{}, from the spawn: handshake {:.0} ms, all nodes seen and oldest \
             session reattached {:.0} ms, Stats shows all {:.0} ms; RSS {} MiB",
            name.to_uppercase(),
            back.handshake_ms,
            back.all_back_ms,
            back.stats_ms,
            mib(rss)
        ));
        fields.push_for(name, "stop_ms", format!("{stop_ms:.0}"));
        fields.push_for(name, "data_dir_mib", mib(dir_bytes));
        fields.push_for(name, "log_mib", log);
        fields.push_for(name, "snapshots_mib", snapshots);
        fields.push_for(name, "handshake_ms", format!("{:.0}", back.handshake_ms));
        fields.push_for(name, "stats_ms", format!("{:.0}", back.stats_ms));
        fields.push_for(name, "all_back_ms", format!("{:.0}", back.all_back_ms));
        fields.push_for(name, "sessions_back", back.sessions.to_string());
        fields.push_for(name, "nodes_back", back.children.to_string());
        fields.push_for(name, "reattached", "1".to_owned());
        fields.push_for(name, "rss_mib", mib(rss));
        // The probe sessions of this start are held from now on as well.
        let now = stats(ports.admin).await?;
        expect = Expect {
            sessions: now.sessions,
            nodes: now.nodes,
        };
    }
    let fields: Vec<(&str, String)> = fields
        .0
        .iter()
        .map(|(key, value)| (key.as_str(), value.clone()))
        .collect();
    result("restart", Target::Ours, &fields);
    let _ = stop_server(&mut server, Stop::Term).await;
    Ok(())
}

/// The RESULT line's fields, in order.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn push(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }

    /// `key` for one stop: `term_key`, `kill_key`.
    fn push_for(&mut self, stop: &str, key: &str, value: String) {
        self.0.push((format!("{stop}_{key}"), value));
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1_048_576.0)
}

/// A free loopback port (closed again before the server binds it).
fn free_port() -> Result<SocketAddr, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Starts the server on `args.data_dir`; the clock of the start runs from
/// just before the spawn.
fn spawn(args: &RestartArgs, ports: Ports) -> Result<Server, BenchError> {
    let mut command = Command::new(&args.server_bin);
    command
        .args(["--listen", &ports.client.to_string()])
        .args(["--admin-listen", &ports.admin.to_string()])
        .args(["--metrics-listen", &ports.metrics.to_string()])
        .args(["--zk-listen", "off"])
        .arg("--data-dir")
        .arg(&args.data_dir)
        .args(["--tick-ms", &args.tick_ms.to_string()])
        .args(["--max-connections", "30000"])
        .args(["--max-connections-per-ip", "30000"]);
    if args.timeout_ms > 20 * args.tick_ms {
        command.args(["--max-session-timeout-ms", &args.timeout_ms.to_string()]);
    }
    command
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let spawned = Instant::now();
    let child = command
        .spawn()
        .map_err(|err| format!("cannot start {}: {err}", args.server_bin.display()))?;
    let pid = child.id().ok_or("the server exited at once")?;
    Ok(Server {
        child,
        pid,
        spawned,
    })
}

/// Stops the server with `stop` and waits for it to exit; returns the
/// milliseconds from the signal to the exit.
async fn stop_server(server: &mut Server, stop: Stop) -> Result<f64, BenchError> {
    let signalled = Instant::now();
    match stop {
        Stop::Term => sys::send_signal(server.pid, libc::SIGTERM)?,
        Stop::Kill => server.child.start_kill()?,
    }
    let status = tokio::time::timeout(STOP_LIMIT, server.child.wait())
        .await
        .map_err(|_| format!("the server did not exit within {STOP_LIMIT:?} of the signal"))??;
    let elapsed = signalled.elapsed().as_secs_f64() * 1000.0;
    if stop == Stop::Term && !status.success() {
        return Err(format!("the server exited with {status} on SIGTERM").into());
    }
    Ok(elapsed)
}

/// Connects and opens a session, retrying while the port refuses (the
/// server is not bound yet); returns the milliseconds from the spawn to the
/// handshake's answer, and the session.
async fn wait_handshake(
    server: &mut Server,
    addr: &str,
    timeout: Duration,
) -> Result<(f64, RawSession), BenchError> {
    let limit = tokio::time::Instant::from_std(server.spawned + BACK_LIMIT);
    loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let session =
                    tokio::time::timeout_at(limit, RawSession::handshake(stream, timeout, None))
                        .await
                        .map_err(|_| {
                            format!("no handshake answered within {BACK_LIMIT:?} of the spawn")
                        })??;
                return Ok((server.spawned.elapsed().as_secs_f64() * 1000.0, session));
            }
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                if let Some(status) = server.child.try_wait()? {
                    return Err(format!("the server exited with {status} while starting").into());
                }
                if tokio::time::Instant::now() >= limit {
                    return Err(format!("the server did not listen within {BACK_LIMIT:?}").into());
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// What a timed start saw, in milliseconds from the spawn.
struct Back {
    /// A new session's handshake answered.
    handshake_ms: f64,
    /// That session's `exists` on the parent showed every node, and the
    /// oldest session of the fill reattached after it.
    all_back_ms: f64,
    /// The admin `Stats` showed every session and node (the first answer
    /// of a new gRPC connection: it can add tens of milliseconds).
    stats_ms: f64,
    /// Sessions `Stats` showed.
    sessions: u64,
    /// Children of the parent `exists` showed.
    children: u32,
}

/// What a timed start is checked against.
struct Probe<'a> {
    addr: &'a str,
    admin: SocketAddr,
    /// The timeout the probe sessions ask for.
    timeout: Duration,
    /// What `Stats` must show at least.
    expect: Expect,
    /// The children the parent must have.
    nodes: usize,
    /// The oldest session of the fill, to reattach.
    oldest: &'a Credentials,
}

/// Times a start: a new session's handshake, its `exists` on the parent
/// and a reattach to the oldest session of the fill; and, at the same
/// time, the admin `Stats` until it shows at least `expect` with no
/// session expired.
async fn wait_back(server: &mut Server, probe: &Probe<'_>) -> Result<Back, BenchError> {
    let Probe {
        addr,
        admin,
        timeout,
        expect,
        nodes,
        oldest,
    } = *probe;
    let spawned = server.spawned;
    let since_spawn = move || spawned.elapsed().as_secs_f64() * 1000.0;
    let session = async {
        let (handshake_ms, mut session) = wait_handshake(server, addr, timeout).await?;
        let exists = request::Op::Exists(Exists {
            path: PARENT.into(),
            watch: false,
        });
        let children = match session.call(exists).await? {
            Some(reply::Result::Exists(found)) => {
                found.stat.ok_or("the nodes' parent is gone")?.num_children
            }
            other => return Err(format!("exists {PARENT} failed: {other:?}").into()),
        };
        if children as usize != nodes {
            return Err(format!(
                "{PARENT} has {children} children after the restart, expected {nodes}"
            )
            .into());
        }
        // The oldest session of the fill is back too, with its password.
        let stream = TcpStream::connect(addr).await?;
        let reattached = RawSession::handshake(stream, timeout, Some(oldest)).await?;
        let all_back_ms = since_spawn();
        drop(reattached);
        Ok::<_, BenchError>((handshake_ms, all_back_ms, children, session))
    };
    let admin = async {
        let endpoint = format!("http://{admin}");
        let limit = spawned + BACK_LIMIT;
        let mut client = loop {
            match AdminClient::connect(endpoint.clone()).await {
                Ok(client) => break client,
                Err(err) if Instant::now() >= limit => {
                    return Err(format!("the admin service did not answer: {err}").into());
                }
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        };
        loop {
            let now = client.stats(StatsRequest {}).await?.into_inner();
            if now.sessions_expired > 0 {
                return Err(format!(
                    "{} sessions expired after the restart",
                    now.sessions_expired
                )
                .into());
            }
            if now.sessions >= expect.sessions && now.nodes >= expect.nodes {
                return Ok::<_, BenchError>((since_spawn(), now.sessions));
            }
            if Instant::now() >= limit {
                return Err(format!(
                    "{BACK_LIMIT:?} after the spawn the server shows {} sessions and {} nodes, \
                     expected {} and {}",
                    now.sessions, now.nodes, expect.sessions, expect.nodes
                )
                .into());
            }
            tokio::time::sleep(RETRY).await;
        }
    };
    // The first error ends both probes.
    let ((handshake_ms, all_back_ms, children, session), (stats_ms, sessions)) =
        tokio::try_join!(session, admin)?;
    drop(session);
    Ok(Back {
        handshake_ms,
        all_back_ms,
        stats_ms,
        sessions,
        children,
    })
}

async fn stats(admin: SocketAddr) -> Result<StatsResponse, BenchError> {
    let mut client = AdminClient::connect(format!("http://{admin}")).await?;
    Ok(client.stats(StatsRequest {}).await?.into_inner())
}

fn create_op(path: String) -> request::Op {
    request::Op::Create(Create {
        path,
        data: Bytes::from_static(&NODE_DATA),
        kind: NodeKind::Persistent.into(),
        sequential: false,
        // Open to anyone, as every node before ACLs; not a TTL node.
        acl: Vec::new(),
        ttl_ms: 0,
    })
}

/// Creates the parent of the nodes; returns the session that did (kept
/// open until the first stop).
async fn create_parent(addr: &str, timeout: Duration) -> Result<RawSession, BenchError> {
    let mut session = RawSession::open(addr, timeout).await?;
    match session.call(create_op(PARENT.to_owned())).await? {
        Some(reply::Result::Create(_)) => Ok(session),
        other => Err(format!("create {PARENT} failed: {other:?}").into()),
    }
}

/// Creates `args.nodes` nodes under the parent from `args.writers` sessions
/// with `args.window` creates in flight each.
async fn create_nodes(addr: &str, args: &RestartArgs, timeout: Duration) -> Result<(), BenchError> {
    let writers = args.writers.clamp(1, args.nodes.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let first = args.nodes * writer / writers;
        let end = args.nodes * (writer + 1) / writers;
        let session = RawSession::open(addr, timeout).await?;
        tasks.spawn(pipelined_creates(session, first..end, args.window));
    }
    let work = async {
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        Ok::<_, BenchError>(())
    };
    tokio::time::timeout(FILL_LIMIT, work).await.map_err(|_| {
        format!(
            "creating {} nodes took longer than {FILL_LIMIT:?}",
            args.nodes
        )
    })?
}

/// Creates the nodes `PARENT/n{index}` for `indexes` on `session` with up
/// to `window` creates in flight.
async fn pipelined_creates(
    session: RawSession,
    indexes: std::ops::Range<usize>,
    window: usize,
) -> Result<(), BenchError> {
    let count = indexes.len();
    let first_xid = session.next_xid();
    let (mut reader, mut writer) = session.into_split();
    let permits = Arc::new(Semaphore::new(window.clamp(1, Semaphore::MAX_PERMITS)));
    let writing = {
        let permits = Arc::clone(&permits);
        tokio::spawn(async move {
            for (index, xid) in indexes.zip(first_xid..) {
                let permit = match permits.try_acquire() {
                    Ok(permit) => permit,
                    Err(_) => {
                        SinkExt::<ClientMessage>::flush(&mut writer).await?;
                        permits.acquire().await?
                    }
                };
                permit.forget();
                let op = create_op(format!("{PARENT}/n{index}"));
                writer
                    .feed(ClientMessage::from(Request { xid, op: Some(op) }))
                    .await?;
            }
            SinkExt::<ClientMessage>::flush(&mut writer).await?;
            // Kept until the last reply is in: dropping it would half-close.
            Ok::<_, BenchError>(writer)
        })
    };
    let mut received = 0;
    while received < count {
        let message = reader
            .next()
            .await
            .ok_or("connection closed by the server")??;
        let answer = match message.kind {
            Some(server_message::Kind::Reply(answer)) => answer,
            Some(server_message::Kind::Disconnect(disconnect)) => {
                return Err(format!("server disconnected a writer: {disconnect:?}").into());
            }
            _ => continue,
        };
        match answer.result {
            Some(reply::Result::Create(_)) => {}
            Some(reply::Result::Error(error)) if error.code == i32::from(ErrorCode::NodeExists) => {
            }
            other => return Err(format!("a create failed: {other:?}").into()),
        }
        permits.add_permits(1);
        received += 1;
    }
    let writer = writing.await??;
    drop(writer);
    Ok(())
}

/// Opens `args.sessions` sessions, `args.in_flight` handshakes at a time,
/// closing each socket once its session is open; returns the credentials of
/// the first one asked for.
async fn create_sessions(
    addr: &str,
    args: &RestartArgs,
    timeout: Duration,
) -> Result<Credentials, BenchError> {
    let opening = stream::iter(0..args.sessions)
        .map(|index| async move {
            let session = RawSession::open(addr, timeout).await?;
            Ok::<_, BenchError>((index, session.credentials.clone()))
        })
        .buffer_unordered(args.in_flight.max(1))
        .collect::<Vec<_>>();
    let opened = tokio::time::timeout(FILL_LIMIT, opening)
        .await
        .map_err(|_| {
            format!(
                "creating {} sessions took longer than {FILL_LIMIT:?}",
                args.sessions
            )
        })?;
    let mut oldest = None;
    let mut failed = 0;
    for outcome in opened {
        match outcome {
            Ok((0, credentials)) => oldest = Some(credentials),
            Ok(_) => {}
            Err(err) => {
                if failed == 0 {
                    progress(format!("a session failed to open: {err}"));
                }
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} sessions failed to open", args.sessions).into());
    }
    oldest.ok_or_else(|| "no session was opened (--sessions 0?)".into())
}
