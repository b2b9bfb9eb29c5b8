//! `cargo xtask cluster [N] [--fresh]`: a cluster of N session-servers on
//! loopback, to try replication and failover by hand.
//!
//! Builds the release server (and `session-bench`, which starts each server
//! with enough open files, tied to this process so none outlives it, and
//! asks the servers who leads), starts node i on fixed ports with its data
//! in `target/cluster/node-i` and its log in `target/cluster/node-i.log`,
//! prints every address and process id and the connect string, waits until
//! the servers agree on a leader and says which one, then stays in the
//! foreground until Ctrl-C (which reaches every server: each shuts down
//! gracefully). A server that exits meanwhile, say after `kill <pid>`, is
//! reported with the leader the others agree on next.
//!
//! The launch pieces (`--peers`, the server command, the leader query) are
//! shared with the cluster pass of `cargo xtask bench`.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{Error, cargo, exec, target_directory};

const USAGE: &str = "\
usage: cargo xtask cluster [N] [--fresh]

Starts N session-servers on loopback (1..=7, default 3; a cluster of N
goes on while a majority of its servers runs, so odd sizes are the useful
ones). Node i (1..=N) listens on:
  client protocol (v1)   127.0.0.1:7181 + 10*(i-1)   (7181, 7191, 7201, ...)
  admin gRPC             127.0.0.1:7182 + 10*(i-1)
  metrics (HTTP)         127.0.0.1:7183 + 10*(i-1)   (/metrics)
  peers (Raft gRPC)      127.0.0.1:7184 + 10*(i-1)
  ZooKeeper protocol     127.0.0.1:2181 + 10*(i-1)   (2181, 2191, 2201, ...)
Data: target/cluster/node-i, kept between runs (a restarted cluster keeps
every session and node); --fresh wipes it first. Logs: target/cluster/node-i.log
(RUST_LOG sets the filter). Runs until Ctrl-C, which stops every server.
";

/// The largest cluster this task starts: its ports stay below 7250.
const MAX_NODES: usize = 7;
/// Ports of node 1; node i adds [`PORT_STRIDE`] × (i - 1).
const CLIENT_PORT: u16 = 7181;
const ADMIN_PORT: u16 = 7182;
const METRICS_PORT: u16 = 7183;
const PEER_PORT: u16 = 7184;
const ZOOKEEPER_PORT: u16 = 2181;
const PORT_STRIDE: u16 = 10;
/// How long the servers have to bind their ports and to elect a leader.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long the servers left after an exit have to agree on a leader.
const REELECT_LIMIT_S: u64 = 15;

/// Where one server of a cluster listens.
#[derive(Debug, Clone)]
pub(crate) struct NodeAddrs {
    /// Client protocol (v1).
    pub(crate) client: SocketAddr,
    /// Admin gRPC.
    pub(crate) admin: SocketAddr,
    /// Prometheus metrics.
    pub(crate) metrics: SocketAddr,
    /// Peer (Raft) listener.
    pub(crate) peer: SocketAddr,
    /// ZooKeeper protocol; `None` for `--zk-listen off`.
    pub(crate) zookeeper: Option<SocketAddr>,
}

impl NodeAddrs {
    /// Node `id`'s fixed addresses (see [`USAGE`]).
    pub(crate) fn fixed(id: usize) -> NodeAddrs {
        let offset = PORT_STRIDE * u16::try_from(id - 1).unwrap_or(0);
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port + offset));
        NodeAddrs {
            client: at(CLIENT_PORT),
            admin: at(ADMIN_PORT),
            metrics: at(METRICS_PORT),
            peer: at(PEER_PORT),
            zookeeper: Some(at(ZOOKEEPER_PORT)),
        }
    }

    fn all(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.client, self.admin, self.metrics, self.peer];
        all.extend(self.zookeeper);
        all
    }
}

/// `--peers` for a cluster whose node i is `nodes[i - 1]`.
pub(crate) fn peers_flag(nodes: &[NodeAddrs]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(index, node)| format!("{}={}", index + 1, node.peer))
        .collect::<Vec<_>>()
        .join(",")
}

/// The clients' connect string: every node's client address.
pub(crate) fn connect_string(nodes: &[NodeAddrs]) -> String {
    nodes
        .iter()
        .map(|node| node.client.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The session-server arguments of node `id` (1-based) of `nodes`, its
/// data in `data_dir`.
pub(crate) fn node_args(id: usize, nodes: &[NodeAddrs], data_dir: &Path) -> Vec<String> {
    let node = &nodes[id - 1];
    let zookeeper = node
        .zookeeper
        .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
    vec![
        "--node-id".to_owned(),
        id.to_string(),
        "--peers".to_owned(),
        peers_flag(nodes),
        "--listen".to_owned(),
        node.client.to_string(),
        "--admin-listen".to_owned(),
        node.admin.to_string(),
        "--metrics-listen".to_owned(),
        node.metrics.to_string(),
        "--zk-listen".to_owned(),
        zookeeper,
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
    ]
}

/// A command that runs `server` with `args` through `session-bench
/// exec-server`: more open files, and SIGTERM when this process ends.
pub(crate) fn server_command(bench: &Path, server: &Path, args: &[String]) -> Command {
    let mut command = Command::new(bench);
    command.arg("exec-server").arg("--").arg(server).args(args);
    command
}

/// The leader a cluster agreed on, as `session-bench leader` saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaderSeen {
    /// Its place in the connect string, from 0.
    pub(crate) index: usize,
    /// Its node id.
    pub(crate) node: u32,
    /// The Raft term (ours) or the epoch of the last zxid (ZooKeeper).
    pub(crate) term: u64,
    /// How long the agreement took to come, in milliseconds.
    pub(crate) waited_ms: u64,
    /// How many servers answered.
    pub(crate) answered: usize,
}

/// Waits (up to `wait_s` seconds) until the servers at `connect` agree on a
/// leader; `target` is `ours` (asked over gRPC at `admins`, one per server
/// in the same order) or `zk` (asked with `srvr`). With `majority`, the
/// servers that do not answer are left out while a majority answers.
pub(crate) fn wait_leader(
    bench: &Path,
    target: &str,
    connect: &str,
    admins: &[String],
    wait_s: u64,
    majority: bool,
) -> Result<LeaderSeen, Error> {
    let mut command = Command::new(bench);
    command
        .args(["leader", "--target", target, "--addr", connect])
        .args(["--wait-s", &wait_s.to_string()]);
    if !admins.is_empty() {
        command.args(["--admin", &admins.join(",")]);
    }
    if majority {
        command.arg("--majority");
    }
    let output = command.stdin(Stdio::null()).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|line| line.starts_with("RESULT "));
    let (true, Some(line)) = (output.status.success(), line) else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("no leader: {}", stderr.trim()).into());
    };
    let field = |key: &str| -> Result<u64, Error> {
        let value = line
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("no {key} in `{line}`"))?;
        Ok(value.parse()?)
    };
    Ok(LeaderSeen {
        index: usize::try_from(field("index")?)?,
        node: u32::try_from(field("node")?)?,
        term: field("term")?,
        waited_ms: field("waited_ms")?,
        answered: usize::try_from(field("answered")?)?,
    })
}

/// Waits until `addr` accepts connections; fails when `child` exits first.
pub(crate) fn wait_listening(
    child: &mut Child,
    addr: SocketAddr,
    what: &str,
    log: &Path,
) -> Result<(), Error> {
    let deadline = Instant::now() + START_LIMIT;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("{what} exited with {status}; see {}", log.display()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on {addr} within {START_LIMIT:?}").into())
}

/// One running node of `cargo xtask cluster`.
struct Node {
    id: usize,
    addrs: NodeAddrs,
    child: Child,
    pid: u32,
    log: PathBuf,
    /// The command that starts it again by hand.
    restart: String,
    exited: bool,
}

/// Entry point of `cargo xtask cluster ARGS`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let mut size = 3;
    let mut fresh = false;
    for arg in args {
        match arg.as_str() {
            "--fresh" => fresh = true,
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(());
            }
            number if number.chars().all(|c| c.is_ascii_digit()) => {
                size = number.parse()?;
                if !(1..=MAX_NODES).contains(&size) {
                    return Err(format!("a cluster of 1 to {MAX_NODES} servers, not {size}").into());
                }
            }
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}").into()),
        }
    }

    let nodes: Vec<NodeAddrs> = (1..=size).map(NodeAddrs::fixed).collect();
    for addr in nodes.iter().flat_map(NodeAddrs::all) {
        if TcpListener::bind(addr).is_err() {
            return Err(format!(
                "{addr} is in use (a cluster or a session-server already running?); \
                 nothing was started"
            )
            .into());
        }
    }

    let target = target_directory()?;
    let dir = target.join("cluster");
    prepare_data(&dir, size, fresh)?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "session-server",
        "-p",
        "session-bench",
    ]);
    exec(build)?;
    let server = target.join("release").join("session-server");
    let bench = target.join("release").join("session-bench");

    let mut running = Vec::with_capacity(size);
    for (index, addrs) in nodes.iter().enumerate() {
        let id = index + 1;
        let data = dir.join(format!("node-{id}"));
        let log = dir.join(format!("node-{id}.log"));
        let args = node_args(id, &nodes, &data);
        let file = File::create(&log)?;
        let child = server_command(&bench, &server, &args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", server.display()))?;
        let pid = child.id();
        let restart = format!("{} {}", server.display(), args.join(" "));
        running.push(Node {
            id,
            addrs: addrs.clone(),
            child,
            pid,
            log,
            restart,
            exited: false,
        });
    }
    for node in &mut running {
        let what = format!("node {}", node.id);
        if let Err(err) = wait_listening(&mut node.child, node.addrs.client, &what, &node.log) {
            print_log_tail(&node.log);
            return Err(err);
        }
    }

    let connect = connect_string(&nodes);
    let admins: Vec<String> = nodes.iter().map(|node| node.admin.to_string()).collect();
    print_cluster(&running, &dir, &connect);
    println!("waiting for the servers to agree on a leader ...");
    let wait_s = START_LIMIT.as_secs();
    match wait_leader(&bench, "ours", &connect, &admins, wait_s, false) {
        Ok(leader) => println!(
            "node {} leads (term {}), agreed after {:.1} s",
            leader.node,
            leader.term,
            leader.waited_ms as f64 / 1000.0
        ),
        Err(err) => {
            for node in &running {
                print_log_tail(&node.log);
            }
            return Err(err);
        }
    }
    print_tour(&running, &connect);
    supervise(&mut running, &bench)
}

/// Makes `dir` and checks that the data in it, if any, is a cluster of
/// `size`: a data directory remembers its cluster's members, so nodes
/// added to or left out of a kept cluster would never join it.
fn prepare_data(dir: &Path, size: usize, fresh: bool) -> Result<(), Error> {
    if fresh && dir.exists() {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned());
            if name.is_some_and(|name| name.starts_with("node-")) {
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        println!("--fresh: removed the data and logs under {}", dir.display());
    }
    std::fs::create_dir_all(dir)?;
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(id) = path
            .file_name()
            .and_then(|name| name.to_str()?.strip_prefix("node-")?.parse::<usize>().ok())
        else {
            continue;
        };
        if path.is_dir() && std::fs::read_dir(&path)?.next().is_some() {
            kept.push(id);
        }
    }
    kept.sort_unstable();
    if !kept.is_empty() && kept != (1..=size).collect::<Vec<_>>() {
        let held = kept.len();
        return Err(format!(
            "{} holds the data of nodes {kept:?}, a cluster of {held}: run \
             `cargo xtask cluster {held}` to start it again, or add --fresh to start \
             a new cluster of {size}",
            dir.display()
        )
        .into());
    }
    if !kept.is_empty() {
        println!(
            "keeping the cluster's data under {} (--fresh starts over)",
            dir.display()
        );
    }
    Ok(())
}

fn print_cluster(nodes: &[Node], dir: &Path, connect: &str) {
    let mut table = format!(
        "\n{:<5} {:<8} {:<16} {:<16} {:<16} {:<16} {:<16}\n",
        "node", "pid", "client (v1)", "ZooKeeper", "admin (gRPC)", "metrics", "peer (Raft)"
    );
    for node in nodes {
        let zookeeper = node
            .addrs
            .zookeeper
            .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
        let _ = writeln!(
            table,
            "{:<5} {:<8} {:<16} {:<16} {:<16} {:<16} {:<16}",
            node.id,
            node.pid,
            node.addrs.client,
            zookeeper,
            node.addrs.admin,
            node.addrs.metrics,
            node.addrs.peer
        );
    }
    print!("{table}");
    let zookeeper: Vec<String> = nodes
        .iter()
        .filter_map(|node| node.addrs.zookeeper.map(|addr| addr.to_string()))
        .collect();
    println!();
    println!("connect string:            {connect}");
    println!("ZooKeeper connect string:  {}", zookeeper.join(","));
    println!(
        "data and logs:             {}/node-N, {}/node-N.log",
        dir.display(),
        dir.display()
    );
    println!(
        "metrics:                   http://{}/metrics",
        nodes[0].addrs.metrics
    );
}

fn print_tour(nodes: &[Node], connect: &str) {
    println!();
    println!("try, in another terminal:");
    println!(
        "  cargo run -p session-client --bin session-cli -- --servers {connect} hold /web-1 10.0.0.7:8080"
    );
    if let Some(node) = nodes.get(1) {
        println!("it prints the server it is on; stop that server (its pid is above), e.g.");
        println!(
            "  kill {}    # node {} ({}): its clients move to the others, same sessions",
            node.pid, node.id, node.addrs.client
        );
        println!("and the holder prints `state Connected` on another server, same session.");
    }
    println!("Ctrl-C stops every server.");
}

/// Waits for the servers, reporting each exit and who leads after it
/// (asking every node's address: one started again by hand counts too),
/// until none this task started is left.
fn supervise(nodes: &mut [Node], bench: &Path) -> Result<(), Error> {
    let size = nodes.len();
    let connect: Vec<String> = nodes
        .iter()
        .map(|node| node.addrs.client.to_string())
        .collect();
    let admins: Vec<String> = nodes
        .iter()
        .map(|node| node.addrs.admin.to_string())
        .collect();
    loop {
        let mut changed = false;
        for node in nodes.iter_mut().filter(|node| !node.exited) {
            if let Some(status) = node.child.try_wait()? {
                node.exited = true;
                changed = true;
                println!(
                    "node {} (pid {}) exited with {status}; its log: {}",
                    node.id,
                    node.pid,
                    node.log.display()
                );
                println!("  to start it again: {}", node.restart);
            }
        }
        if nodes.iter().all(|node| node.exited) {
            println!("every server this task started has stopped");
            return Ok(());
        }
        if changed {
            let majority = size / 2 + 1;
            match wait_leader(
                bench,
                "ours",
                &connect.join(","),
                &admins,
                REELECT_LIMIT_S,
                true,
            ) {
                Ok(leader) => println!(
                    "node {} leads (term {}); {} of {size} servers answer",
                    leader.node, leader.term, leader.answered
                ),
                Err(_) => println!(
                    "no leader within {REELECT_LIMIT_S} s: a cluster of {size} needs \
                     {majority} servers running to have one"
                ),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints the last lines of a server's log, to show why it failed.
fn print_log_tail(log: &Path) {
    let Ok(text) = std::fs::read_to_string(log) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    eprintln!("--- the last lines of {} ---", log.display());
    for line in &lines[start..] {
        eprintln!("{line}");
    }
}
