//! `cargo xtask bench`: builds the release server and the load generator
//! (`session-bench`), starts session-server — and ZooKeeper when its jar is
//! installed — on loopback ports with benchmark limits, runs each scenario
//! against each server from a fresh start, and prints tables with our /
//! ZooKeeper, etcd and floor ratios.
//!
//! Five targets, five columns: `ours` (session-server in its own v1
//! protocol, through session-client or raw frames), `ours-zk` (a fresh
//! session-server of the same kind, but the load through its ZooKeeper
//! listener, `--zk-listen`, with exactly the `zookeeper-client` code that
//! ZooKeeper gets), `zk` (ZooKeeper), `etcd` (etcd 3.4 when installed: a
//! lease per session with one key attached, see session-bench's `etcd`
//! module) and `floor` (`session-bench floor`: the v1 handshake and pings
//! answered with the same framing and no state; in-memory establish with
//! the lean raw client, and hold). ours-zk is our own server, so it runs
//! without ZooKeeper installed (`--no-ours-zk` leaves it out); the targets
//! are judged on the v1 column.
//!
//! Four passes, all in one run unless `--only` picks one:
//!
//! - **in memory**: every scenario, session-server with `--in-memory` and
//!   ZooKeeper with `forceSync=no`, etcd with `--unsafe-no-fsync`, against
//!   the targets of issues 7 and 16;
//! - **durable**: `establish` and `churn`, session-server with a Raft log on
//!   disk (`--data-dir`, fsync before every acknowledgement) and ZooKeeper
//!   with `forceSync=yes`; no targets, ratios only;
//! - **restart** (session-server v1 only): `session-bench restart` fills a
//!   durable server with sessions and nodes, stops it (SIGTERM, then
//!   SIGKILL) and times each start on the same directory until everything
//!   is back;
//! - **TLS** (session-server v1 only): `establish` and `hold` with lean raw
//!   sessions, each twice on a fresh in-memory server: in plain text, and
//!   with the server started with `--tls-cert`/`--tls-key` (certificates
//!   made on the spot by `session-testkit`) and the sessions speaking TLS
//!   (rustls); a table of both and TLS / plain text.
//!
//! `--cluster` runs a fourth pass instead: every scenario against a cluster
//! of three session-servers (durable, data under `target/bench/cluster`;
//! for ours-zk a second such cluster, the load on its ZooKeeper listeners)
//! and a ZooKeeper ensemble of three (`forceSync=yes`), the clients given
//! all three addresses, plus two server deaths: SIGKILL of the leader, and
//! of a follower (holding about a third of the sessions). Its logs stay in
//! `target/bench/cluster`.
//!
//! This module only builds and runs processes; the load lives in
//! `session-bench`, which prints one `RESULT key=value ...` line per run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{NodeAddrs, connect_string, node_args, server_command, wait_leader};
use crate::cmd::{Error, cargo, exec, target_directory};

const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--only WHAT] [--durable-only] [--cluster] [--no-zookeeper]
                         [--no-ours-zk] [--no-etcd] [--server-log LEVEL] [SIZES]
       cargo xtask bench --flame DIR [SIZES]

columns: session-server in its v1 protocol (ours); session-server's ZooKeeper
listener (--zk-listen) with the zookeeper-client load ZooKeeper gets
(ours-zk; --no-ours-zk leaves it out); ZooKeeper when installed
(--no-zookeeper leaves it out); etcd when /usr/bin/etcd is installed
(Debian etcd-server; --no-etcd leaves it out); the floor (session-bench
floor: handshakes and pings answered with no state; establish with the lean
raw client, and hold); ratios ours / ZooKeeper, ours-zk / ZooKeeper,
ours-zk / ours, ours / etcd and ours / floor; targets judged on ours

--server-log LEVEL  RUST_LOG for session-server (default warn; `default`:
                    the server's own default, info)
--flame DIR         only the hold scenario, on ours and on the floor, each
                    sampled by perf record (Debian linux-perf) and drawn as
                    DIR/hold-ours.svg and DIR/hold-floor.svg by inferno
                    (installed under target/tools when not on the PATH);
                    binaries built with frame pointers in target/profile

passes (all by default; --only WHAT runs one):
  in memory   establish, establish-raw, hold, churn, pipelined, expiry,
              failover (session-server --in-memory, ZooKeeper forceSync=no,
              etcd --unsafe-no-fsync); --only SCENARIO runs one of them
  durable     establish and churn on session-server --data-dir (fsync),
              ZooKeeper forceSync=yes and etcd (fsync); --only durable (or
              --durable-only)
  restart     session-server v1 only: fill a durable server with sessions and
              nodes, SIGTERM / SIGKILL it, time the start until all is back;
              --only restart
  TLS         session-server v1 only, in memory: establish and hold with lean
              raw sessions in plain text, then again with the server started
              with --tls-cert/--tls-key and the sessions over TLS (rustls);
              establish rate, server CPU per ping, RSS per session; --only tls
--cluster runs, instead, the cluster pass: establish, hold, churn,
pipelined, expiry, failover, kill-leader, kill-follower against a cluster of
3 durable session-servers (ours-zk: another, through its ZooKeeper listeners),
a ZooKeeper ensemble of 3 (forceSync=yes) and an etcd cluster of 3 (fsync),
clients given all three addresses (--only SCENARIO runs one of them)
sizes (defaults; --quick: establish 1000, hold 1000 for 10 s, churn 3 s,
pipelined 20000 requests, expiry 1000, failover 200, restart 10000 + 10000,
kill 200, cluster pipelined 5000; the durable pass uses the establish and
churn sizes, the cluster pass all but --pipelined-requests):
  --establish-sessions N   (10000)   --hold-sessions N        (15000)
  --hold-seconds S         (30)      --churn-sessions N       (64)
  --churn-seconds S        (10)      --pipelined-requests N   (200000)
  --pipelined-window W     (1000)    --expiry-sessions N      (10000)
  --failover-sessions N    (1000)    --restart-sessions N     (100000)
  --restart-nodes N        (100000)  --kill-sessions N        (1000)
  --cluster-pipelined-requests N     (20000)
";

/// ZooKeeper's jar as the Debian package `zookeeper` installs it; its
/// manifest's Class-Path names the other jars it needs.
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// A logging binding for ZooKeeper's slf4j that prints nothing, so neither
/// server spends time logging during the runs (ours runs with RUST_LOG=warn).
const SLF4J_NOP_JAR: &str = "/usr/share/java/slf4j-nop.jar";

/// `RUST_LOG` for session-server (`--server-log`); `warn` unless given.
/// `default` gives session-server's own default filter,
/// `info,openraft=warn,chunked_wal=warn`, what it runs with when
/// `RUST_LOG` is not set.
static SERVER_LOG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The `RUST_LOG` session-server runs with in this run.
fn server_log() -> &'static str {
    match SERVER_LOG.get().map(String::as_str) {
        None => "warn",
        Some("default") => "info,openraft=warn,chunked_wal=warn",
        Some(level) => level,
    }
}

/// Both servers use ZooKeeper's default tick and the scenarios' 6 s timeout.
const TICK_MS: u64 = 2000;
const TIMEOUT_MS: u64 = 6000;

/// The most leases etcd's `hold-connections` opens, each on a connection
/// of its own.
const HOLD_CONNECTIONS_MAX: usize = 2000;

/// Servers in each cluster of the cluster pass.
const CLUSTER_SIZE: usize = 3;

/// The targets, in the order they run and the columns show them:
/// session-server in v1, session-server through its ZooKeeper listener,
/// ZooKeeper, etcd, and the floor (session-bench's stateless server).
const TARGETS: [&str; 5] = ["ours", "ours-zk", "zk", "etcd", "floor"];

/// Whether `target` takes part in `scenario`: the floor only answers
/// handshakes and pings (establish with the lean raw client, hold), and
/// that raw establish is run on ours and the floor only.
/// `hold-connections` is etcd's hold with a connection per lease, as every
/// session of the others has one (its `hold` puts the leases on 8 shared
/// connections, as one clientv3 process would).
fn takes_part(scenario: &str, target: &str) -> bool {
    match (scenario, target) {
        ("establish-raw", target) => matches!(target, "ours" | "floor"),
        ("hold-connections", target) => target == "etcd",
        ("hold", _) => true,
        (_, "floor") => false,
        _ => true,
    }
}

#[derive(Debug, Clone)]
struct Sizes {
    establish: usize,
    hold: usize,
    hold_seconds: u64,
    churn_sessions: usize,
    churn_seconds: u64,
    /// Requests of the pipelined scenario, all on one session.
    pipelined_requests: u64,
    /// Requests in flight at once on that session.
    pipelined_window: usize,
    expiry: usize,
    failover: usize,
    /// Sessions held across the restart.
    restart_sessions: usize,
    /// Persistent nodes held across the restart.
    restart_nodes: usize,
    /// Sessions held while a server of a cluster is killed.
    kill: usize,
    /// Requests of the pipelined scenario in the cluster pass: fewer, as
    /// every write there is a Raft round trip.
    cluster_pipelined_requests: u64,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            establish: 10_000,
            hold: 15_000,
            hold_seconds: 30,
            churn_sessions: 64,
            churn_seconds: 10,
            pipelined_requests: 200_000,
            pipelined_window: 1000,
            expiry: 10_000,
            failover: 1000,
            restart_sessions: 100_000,
            restart_nodes: 100_000,
            kill: 1000,
            cluster_pipelined_requests: 20_000,
        }
    }

    fn quick() -> Sizes {
        Sizes {
            establish: 1000,
            hold: 1000,
            hold_seconds: 10,
            churn_sessions: 64,
            churn_seconds: 3,
            pipelined_requests: 20_000,
            pipelined_window: 1000,
            expiry: 1000,
            failover: 200,
            restart_sessions: 10_000,
            restart_nodes: 10_000,
            kill: 200,
            cluster_pipelined_requests: 5000,
        }
    }
}

const SCENARIOS: [&str; 8] = [
    "establish",
    "establish-raw",
    "hold",
    "hold-connections",
    "churn",
    "pipelined",
    "expiry",
    "failover",
];

/// The scenarios of the durable pass.
const DURABLE_SCENARIOS: [&str; 2] = ["establish", "churn"];

/// The scenarios of the cluster pass.
const CLUSTER_SCENARIOS: [&str; 8] = [
    "establish",
    "hold",
    "churn",
    "pipelined",
    "expiry",
    "failover",
    "kill-leader",
    "kill-follower",
];

/// How a server keeps its state in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// session-server `--in-memory`; ZooKeeper `forceSync=no`.
    Memory,
    /// session-server `--data-dir` (a Raft log, fsynced before every
    /// acknowledgement); ZooKeeper `forceSync=yes`.
    Durable,
}

impl Storage {
    /// The prefix of this pass's scenarios in [`Results`].
    fn prefix(self) -> &'static str {
        match self {
            Storage::Memory => "",
            Storage::Durable => "durable ",
        }
    }
}

/// What `--only` picked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Only {
    /// Everything.
    All,
    /// One scenario of the in-memory pass.
    Scenario(String),
    /// The durable pass.
    Durable,
    /// The restart scenario.
    Restart,
    /// The TLS pass.
    Tls,
}

impl Only {
    fn parse(what: &str) -> Result<Only, Error> {
        match what {
            "durable" => Ok(Only::Durable),
            "restart" => Ok(Only::Restart),
            "tls" => Ok(Only::Tls),
            scenario if SCENARIOS.contains(&scenario) => Ok(Only::Scenario(scenario.to_owned())),
            other => Err(format!("unknown scenario `{other}`\n\n{USAGE}").into()),
        }
    }

    fn memory(&self, scenario: &str) -> bool {
        match self {
            Only::All => true,
            Only::Scenario(only) => only == scenario,
            Only::Durable | Only::Restart | Only::Tls => false,
        }
    }

    fn durable(&self) -> bool {
        matches!(self, Only::All | Only::Durable)
    }

    fn restart(&self) -> bool {
        matches!(self, Only::All | Only::Restart)
    }

    fn tls(&self) -> bool {
        matches!(self, Only::All | Only::Tls)
    }
}

/// Entry point of `cargo xtask bench ARGS`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let quick = args.iter().any(|arg| arg == "--quick");
    let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let mut only_asked = None;
    let mut cluster = false;
    let mut zookeeper_wanted = true;
    let mut ours_zk = true;
    let mut etcd_wanted = true;
    let mut flame: Option<PathBuf> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || -> Result<&String, Error> {
            rest.next()
                .ok_or_else(|| format!("{arg} needs a value\n\n{USAGE}").into())
        };
        match arg.as_str() {
            "--quick" => {}
            "--no-zookeeper" => zookeeper_wanted = false,
            "--no-ours-zk" => ours_zk = false,
            "--no-etcd" => etcd_wanted = false,
            "--flame" => flame = Some(PathBuf::from(value()?)),
            "--server-log" => {
                let level = value()?.clone();
                SERVER_LOG
                    .set(level)
                    .map_err(|_| "--server-log given twice".to_owned())?;
            }
            "--only" => only_asked = Some(value()?.clone()),
            "--durable-only" => only_asked = Some("durable".to_owned()),
            "--cluster" => cluster = true,
            "--establish-sessions" => sizes.establish = value()?.parse()?,
            "--hold-sessions" => sizes.hold = value()?.parse()?,
            "--hold-seconds" => sizes.hold_seconds = value()?.parse()?,
            "--churn-sessions" => sizes.churn_sessions = value()?.parse()?,
            "--churn-seconds" => sizes.churn_seconds = value()?.parse()?,
            "--pipelined-requests" => sizes.pipelined_requests = value()?.parse()?,
            "--pipelined-window" => sizes.pipelined_window = value()?.parse()?,
            "--expiry-sessions" => sizes.expiry = value()?.parse()?,
            "--failover-sessions" => sizes.failover = value()?.parse()?,
            "--restart-sessions" => sizes.restart_sessions = value()?.parse()?,
            "--restart-nodes" => sizes.restart_nodes = value()?.parse()?,
            "--kill-sessions" => sizes.kill = value()?.parse()?,
            "--cluster-pipelined-requests" => {
                sizes.cluster_pipelined_requests = value()?.parse()?;
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown flag `{other}`\n\n{USAGE}").into()),
        }
    }
    let only = match (&only_asked, cluster) {
        (None, _) => Only::All,
        (Some(scenario), true) if CLUSTER_SCENARIOS.contains(&scenario.as_str()) => {
            Only::Scenario(scenario.clone())
        }
        (Some(other), true) => {
            return Err(format!("unknown cluster scenario `{other}`\n\n{USAGE}").into());
        }
        (Some(what), false) => Only::parse(what)?,
    };

    if let Some(dir) = flame {
        return flame_graphs(&dir, &sizes);
    }
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
    let release = target_directory()?.join("release");
    let bins = Binaries {
        server: release.join("session-server"),
        bench: release.join("session-bench"),
    };
    let work = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = RemoveDir(work.clone());

    let zookeeper = if !zookeeper_wanted {
        Err("--no-zookeeper was given".to_owned())
    } else if Path::new(ZOOKEEPER_JAR).exists() {
        Ok(())
    } else {
        Err(format!(
            "{ZOOKEEPER_JAR} not found (install the Debian package `zookeeper` to compare)"
        ))
    };
    if let Err(why) = &zookeeper {
        println!("ZooKeeper column skipped: {why}");
    }
    if !ours_zk {
        println!("ours-zk column (session-server's ZooKeeper listener) skipped: --no-ours-zk");
    }
    let etcd = if !etcd_wanted {
        Err("--no-etcd was given".to_owned())
    } else if crate::etcd::installed() {
        Ok(())
    } else {
        Err(format!(
            "{} not found (install the Debian package `etcd-server` to compare)",
            crate::etcd::ETCD
        ))
    };
    if let Err(why) = &etcd {
        println!("etcd column skipped: {why}");
    }
    let columns = Columns {
        zookeeper: zookeeper.is_ok(),
        ours_zk,
        etcd: etcd.is_ok(),
        floor: true,
    };
    let runs = |target: &str| columns.shows(target);

    let mut results = Results::default();
    if cluster {
        run_cluster_pass(&bins, &only, &sizes, runs, &mut results)?;
        let table = results.cluster_table(columns);
        println!();
        println!(
            "Cluster: {CLUSTER_SIZE} servers on loopback, clients given all {CLUSTER_SIZE}; \
             session-server durable (--data-dir, Raft log fsynced; ours-zk: the load on its \
             ZooKeeper listeners), ZooKeeper ensemble forceSync=yes, etcd cluster with fsync. \
             Logs: {}.",
            cluster_dir()?.display()
        );
        println!();
        print!("{table}");
        return Ok(());
    }
    let passes = [
        (Storage::Memory, &SCENARIOS[..]),
        (Storage::Durable, &DURABLE_SCENARIOS[..]),
    ];
    for (storage, scenarios) in passes {
        for &scenario in scenarios {
            let wanted = match storage {
                Storage::Memory => only.memory(scenario),
                Storage::Durable => only.durable(),
            };
            if !wanted {
                continue;
            }
            for target in TARGETS {
                if !runs(target) || !takes_part(scenario, target) {
                    continue;
                }
                let shown = match storage {
                    Storage::Memory => String::new(),
                    Storage::Durable => " (durable)".to_owned(),
                };
                println!("== {scenario}{shown} on {} ==", server_name(target));
                let server = start_single(&bins, &work, storage, target)?;
                let line = run_scenario(
                    &bins,
                    scenario,
                    target,
                    &server.addr,
                    &server.pids,
                    &sizes,
                    &[],
                )?;
                drop(server);
                println!("{line}");
                results.insert(&format!("{}{scenario}", storage.prefix()), target, &line);
            }
        }
    }
    if only.restart() {
        // Neither ours-zk nor ZooKeeper: the scenario starts and stops
        // session-server itself, fills it and checks it with raw v1
        // sessions and the v1 admin Stats.
        println!("== restart on session-server (durable, v1 only) ==");
        let line = run_restart(&bins, &work, &sizes)?;
        println!("{line}");
        results.insert("restart", "ours", &line);
    }
    if only.tls() {
        run_tls_pass(&bins, &work, &sizes, &mut results)?;
    }
    let memory = results.table(columns);
    let durable = results.durable_table(columns);
    let tls = results.tls_table();
    if !memory.is_empty() {
        println!();
        println!(
            "In memory: session-server --in-memory (v1; ours-zk: its ZooKeeper listener; \
             RUST_LOG={}), ZooKeeper forceSync=no, etcd --unsafe-no-fsync, the floor; \
             targets of issues 7 and 16, judged on v1.",
            server_log()
        );
        println!();
        print!("{memory}");
    }
    if !durable.is_empty() {
        println!();
        println!(
            "Durable: session-server --data-dir (Raft log, fsync before every acknowledgement; \
             v1 and, for ours-zk, its ZooKeeper listener), ZooKeeper forceSync=yes, etcd with \
             fsync; no targets. Restart: session-server v1 only."
        );
        println!();
        print!("{durable}");
    }
    if !tls.is_empty() {
        println!();
        println!(
            "TLS: session-server --in-memory, v1, lean raw sessions; plain text, then \
             --tls-cert/--tls-key and the sessions over TLS (rustls, ring); no targets."
        );
        println!();
        print!("{tls}");
    }
    Ok(())
}

/// `--flame DIR`: the hold scenario on session-server (v1) and on the
/// floor, each with its stacks sampled by `perf record` during the steady
/// state, drawn as `DIR/hold-ours.svg` and `DIR/hold-floor.svg` by
/// inferno. The binaries are built with frame pointers and line tables in
/// a target directory of their own (`target/profile`), so the release
/// build the other passes measure is untouched.
fn flame_graphs(dir: &Path, sizes: &Sizes) -> Result<(), Error> {
    let perf_found = Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !perf_found {
        return Err("perf not found: install the Debian package linux-perf".into());
    }
    let profile = target_directory()?.join("profile");
    let mut build = cargo();
    build
        .args([
            "build",
            "--release",
            "-p",
            "session-server",
            "-p",
            "session-bench",
        ])
        .arg("--target-dir")
        .arg(&profile)
        .env("RUSTFLAGS", "-C force-frame-pointers=yes")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
    exec(build)?;
    let inferno = inferno_tools()?;
    let bins = Binaries {
        server: profile.join("release/session-server"),
        bench: profile.join("release/session-bench"),
    };
    let work = std::env::temp_dir().join(format!("xtask-flame-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = RemoveDir(work.clone());
    std::fs::create_dir_all(dir)?;
    for target in ["ours", "floor"] {
        println!("== hold on {}, stacks sampled ==", server_name(target));
        let server = start_single(&bins, &work, Storage::Memory, target)?;
        let recorded = work.join(format!("hold-{target}.perf"));
        let line = run_scenario(
            &bins,
            "hold",
            target,
            &server.addr,
            &server.pids,
            sizes,
            &["--perf-out".to_owned(), recorded.display().to_string()],
        )?;
        drop(server);
        println!("{line}");
        let svg = dir.join(format!("hold-{target}.svg"));
        draw_flame_graph(
            &inferno,
            &recorded,
            &svg,
            &format!("hold on {}: {line}", server_name(target)),
        )?;
        println!("flame graph: {}", svg.display());
    }
    Ok(())
}

/// inferno's `inferno-collapse-perf` and `inferno-flamegraph`: from the
/// PATH when there, else installed from crates.io under `target/tools`.
fn inferno_tools() -> Result<PathBuf, Error> {
    let on_path = Command::new("inferno-flamegraph")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if on_path {
        return Ok(PathBuf::new());
    }
    let root = target_directory()?.join("tools");
    let bin = root.join("bin");
    if !bin.join("inferno-flamegraph").exists() {
        let mut install = cargo();
        install
            .args(["install", "inferno", "--locked", "--root"])
            .arg(&root);
        exec(install)?;
    }
    Ok(bin)
}

/// `perf script` of `recorded`, folded and drawn into `svg`.
fn draw_flame_graph(inferno: &Path, recorded: &Path, svg: &Path, title: &str) -> Result<(), Error> {
    let script = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(recorded)
        .stderr(Stdio::null())
        .output()?;
    if !script.status.success() {
        return Err(format!("perf script failed with {}", script.status).into());
    }
    let folded = pipe(&inferno.join("inferno-collapse-perf"), &[], &script.stdout)?;
    let drawn = pipe(
        &inferno.join("inferno-flamegraph"),
        &["--title", title, "--width", "1600"],
        &folded,
    )?;
    std::fs::write(svg, drawn)?;
    Ok(())
}

/// Runs `program` with `args`, `input` on its stdin; its stdout.
fn pipe(program: &Path, args: &[&str], input: &[u8]) -> Result<Vec<u8>, Error> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run {}: {err}", program.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output()?;
    writer.join().map_err(|_| "writer thread panicked")??;
    if !output.status.success() {
        return Err(format!("{} failed with {}", program.display(), output.status).into());
    }
    Ok(output.stdout)
}

fn server_name(target: &str) -> &'static str {
    match target {
        "ours" => "session-server",
        "ours-zk" => "session-server's ZooKeeper listener",
        "etcd" => "etcd",
        "floor" => "the floor",
        _ => "ZooKeeper",
    }
}

/// Which of session-server's client listeners the load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `--listen`, the v1 protocol (target `ours`).
    V1,
    /// `--zk-listen`, ZooKeeper's protocol (target `ours-zk`).
    Zk,
}

/// The columns a table has besides session-server's v1 one.
#[derive(Debug, Clone, Copy)]
struct Columns {
    /// ZooKeeper ran (installed and not `--no-zookeeper`).
    zookeeper: bool,
    /// ours-zk ran (not `--no-ours-zk`).
    ours_zk: bool,
    /// etcd ran (installed and not `--no-etcd`).
    etcd: bool,
    /// The floor ran (in-memory establish and hold only).
    floor: bool,
}

impl Columns {
    /// Whether the column of `target` is in the table.
    fn shows(self, target: &str) -> bool {
        match target {
            "ours" => true,
            "ours-zk" => self.ours_zk,
            "zk" => self.zookeeper,
            "etcd" => self.etcd,
            "floor" => self.floor,
            _ => false,
        }
    }

    /// The same columns without the floor (tables of scenarios it does not
    /// run).
    fn without_floor(self) -> Columns {
        Columns {
            floor: false,
            ..self
        }
    }
}

/// The value columns of a table, in order: the target's name in
/// [`Results`] and the column's heading.
const COLUMNS: [(&str, &str); 5] = [
    ("ours", "session-server (v1)"),
    ("ours-zk", "session-server (ZooKeeper protocol)"),
    ("zk", "ZooKeeper"),
    ("etcd", "etcd"),
    ("floor", "floor"),
];

/// The ratio columns of a table: over, under, heading.
const RATIOS: [(&str, &str, &str); 5] = [
    ("ours", "zk", "ours / ZooKeeper"),
    ("ours-zk", "zk", "ours-zk / ZooKeeper"),
    ("ours-zk", "ours", "ours-zk / ours"),
    ("ours", "etcd", "ours / etcd"),
    ("ours", "floor", "ours / floor"),
];

struct Binaries {
    server: PathBuf,
    bench: PathBuf,
}

/// Removes a directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A started server: killed (and reaped) when dropped, also on error paths.
struct Running {
    child: Child,
    addr: SocketAddr,
    _data: Option<RemoveDir>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (the listener is closed again before the server
/// binds it; nothing else on this machine is expected to race for it).
fn free_port() -> Result<SocketAddr, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Waits until `addr` accepts connections or the process exits.
fn wait_listening(running: &mut Running, what: &str, log: &Path) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&running.addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = running.child.try_wait()? {
            return Err(format!("{what} exited with {status}; see {}", log.display()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on {} within 60 s", running.addr).into())
}

fn log_file(work: &Path, name: &str) -> Result<(PathBuf, std::fs::File), Error> {
    let path = work.join(name);
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

/// One server of `target` started for one scenario: its client address
/// and process ids; stopped (and its data removed) when dropped.
struct Started {
    addr: String,
    pids: Vec<u32>,
    _server: Box<dyn std::any::Any>,
}

/// Starts the server of `target` alone, in `storage`.
fn start_single(
    bins: &Binaries,
    work: &Path,
    storage: Storage,
    target: &str,
) -> Result<Started, Error> {
    let running = match target {
        "ours" => start_ours(bins, work, storage, Protocol::V1, &[])?,
        "ours-zk" => start_ours(bins, work, storage, Protocol::Zk, &[])?,
        "floor" => start_floor(bins, work)?,
        "etcd" => {
            let etcd = crate::etcd::start_single(&bins.bench, work, storage == Storage::Durable)?;
            return Ok(Started {
                addr: etcd.connect(),
                pids: etcd.pids(),
                _server: Box::new(etcd),
            });
        }
        _ => start_zookeeper(bins, work, storage)?,
    };
    Ok(Started {
        addr: running.addr.to_string(),
        pids: vec![running.child.id()],
        _server: Box::new(running),
    })
}

/// The floor (`session-bench floor`) on a free loopback port.
fn start_floor(bins: &Binaries, work: &Path) -> Result<Running, Error> {
    let addr = free_port()?;
    let (log, file) = log_file(work, "floor.log")?;
    let child = Command::new(&bins.bench)
        .arg("exec-server")
        .arg("--")
        .arg(&bins.bench)
        .args(["floor", "--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    let mut running = Running {
        child,
        addr,
        _data: None,
    };
    wait_listening(&mut running, "the floor", &log)?;
    Ok(running)
}

/// session-server on free loopback ports, `extra` added to its arguments;
/// its [`Running::addr`] is the listener of `protocol` (with
/// [`Protocol::V1`], the ZooKeeper listener is off, as it is not measured).
fn start_ours(
    bins: &Binaries,
    work: &Path,
    storage: Storage,
    protocol: Protocol,
    extra: &[String],
) -> Result<Running, Error> {
    let ports = free_ports(4)?;
    let (addr, admin, metrics) = (ports[0], ports[1], ports[2]);
    let (zk_listen, listening) = match protocol {
        Protocol::V1 => ("off".to_owned(), addr),
        Protocol::Zk => (ports[3].to_string(), ports[3]),
    };
    let (log, file) = log_file(work, "session-server.log")?;
    // `exec-server` raises the open-files limit and becomes the server.
    let mut command = Command::new(&bins.bench);
    command
        .arg("exec-server")
        .arg("--")
        .arg(&bins.server)
        .args(["--listen", &addr.to_string()]);
    // A fresh data directory under the work directory, on the same disk
    // as ZooKeeper's.
    let data = match storage {
        Storage::Memory => {
            command.arg("--in-memory");
            None
        }
        Storage::Durable => {
            let dir = work.join(format!("session-server-data-{}", addr.port()));
            command.arg("--data-dir").arg(&dir);
            Some(RemoveDir(dir))
        }
    };
    let child = command
        .args(["--admin-listen", &admin.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        // Never on ZooKeeper's port 2181: off for v1, a free port for
        // ours-zk.
        .args(["--zk-listen", &zk_listen])
        .args(["--tick-ms", &TICK_MS.to_string()])
        .args(["--max-connections", "30000"])
        .args(["--max-connections-per-ip", "30000"])
        .args(extra)
        .env("RUST_LOG", server_log())
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    let mut running = Running {
        child,
        addr: listening,
        _data: data,
    };
    wait_listening(&mut running, "session-server", &log)?;
    Ok(running)
}

fn start_zookeeper(bins: &Binaries, work: &Path, storage: Storage) -> Result<Running, Error> {
    let addr = free_port()?;
    let data = work.join(format!("zookeeper-data-{}", addr.port()));
    std::fs::create_dir_all(&data)?;
    let config = data.join("zoo.cfg");
    // In memory, forceSync=no: our server keeps everything in memory, so
    // ZooKeeper is not made to wait for the disk either; the comparison is
    // about sessions, not fsync. Durable, forceSync=yes (ZooKeeper's
    // default): its transaction log is fsynced before a write is
    // acknowledged, as our Raft log is.
    let force_sync = match storage {
        Storage::Memory => "no",
        Storage::Durable => "yes",
    };
    std::fs::write(
        &config,
        format!(
            "tickTime={TICK_MS}\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\nadmin.enableServer=false\nforceSync={force_sync}\n",
            data.display(),
            addr.port()
        ),
    )?;
    let mut classpath = ZOOKEEPER_JAR.to_owned();
    if Path::new(SLF4J_NOP_JAR).exists() {
        classpath.push(':');
        classpath.push_str(SLF4J_NOP_JAR);
    }
    let (log, file) = log_file(work, "zookeeper.log")?;
    let child = Command::new(&bins.bench)
        .arg("exec-server")
        .arg("--")
        .arg("java")
        .args(["-cp", &classpath])
        .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    let mut running = Running {
        child,
        addr,
        _data: Some(RemoveDir(data)),
    };
    wait_listening(&mut running, "ZooKeeper", &log)?;
    Ok(running)
}

/// Runs one scenario against one server, or a cluster (`addr` a connect
/// string, `pids` its servers'), `extra` added to session-bench's
/// arguments, and returns its RESULT line.
fn run_scenario(
    bins: &Binaries,
    scenario: &str,
    target: &str,
    addr: &str,
    pids: &[u32],
    sizes: &Sizes,
    extra: &[String],
) -> Result<String, Error> {
    let pids = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new(&bins.bench);
    let subcommand = match scenario {
        "establish-raw" => "establish",
        "hold-connections" => "hold",
        other => other,
    };
    command
        .arg(subcommand)
        .args(["--target", target, "--addr", addr]);
    let timeout = TIMEOUT_MS.to_string();
    match scenario {
        "establish" => {
            command.args(["--sessions", &sizes.establish.to_string()]);
        }
        "establish-raw" => {
            command
                .args(["--sessions", &sizes.establish.to_string()])
                .arg("--raw");
        }
        "hold" => {
            command
                .args(["--sessions", &sizes.hold.to_string()])
                .args(["--hold-s", &sizes.hold_seconds.to_string()])
                .args(["--timeout-ms", &timeout])
                .args(["--server-pid", &pids]);
        }
        "hold-connections" => {
            // A connection (and a keep-alive stream) per lease, as each
            // session of the other targets has. At most 2,000: with 15,000
            // connections etcd, on two cores shared with the load, timed
            // out requests and lost a lease while they were being opened.
            let leases = sizes.hold.min(HOLD_CONNECTIONS_MAX).to_string();
            command
                .args(["--sessions", &leases])
                .args(["--connections", &leases])
                .args(["--hold-s", &sizes.hold_seconds.to_string()])
                .args(["--timeout-ms", &timeout])
                .args(["--server-pid", &pids]);
        }
        "churn" => {
            command
                .args(["--sessions", &sizes.churn_sessions.to_string()])
                .args(["--duration-s", &sizes.churn_seconds.to_string()]);
        }
        "pipelined" => {
            command
                .args(["--requests", &sizes.pipelined_requests.to_string()])
                .args(["--window", &sizes.pipelined_window.to_string()]);
        }
        "expiry" => {
            command
                .args(["--sessions", &sizes.expiry.to_string()])
                .args(["--timeout-ms", &timeout])
                .args(["--tick-ms", &TICK_MS.to_string()]);
        }
        _ => {
            command
                .args(["--sessions", &sizes.failover.to_string()])
                .args(["--timeout-ms", &timeout]);
        }
    }
    command.args(extra);
    result_line(
        command,
        &format!("{scenario} against {}", server_name(target)),
    )
}

/// The scenarios of the TLS pass.
const TLS_SCENARIOS: [&str; 2] = ["establish", "hold"];

/// The TLS pass: each of [`TLS_SCENARIOS`] with lean raw v1 sessions, on a
/// fresh in-memory session-server in plain text (target `plain` in
/// [`Results`]), then on one started with `--tls-cert`/`--tls-key` and the
/// sessions over TLS (`tls`). Certificates from `session-testkit` in the
/// work directory; the sessions verify the server's name 127.0.0.1.
fn run_tls_pass(
    bins: &Binaries,
    work: &Path,
    sizes: &Sizes,
    results: &mut Results,
) -> Result<(), Error> {
    let certs = session_testkit::write_cluster(&work.join("certs"), 1)?;
    let server_cert = certs
        .servers
        .first()
        .ok_or("session-testkit wrote no server certificate")?;
    let path = |path: &Path| path.display().to_string();
    for scenario in TLS_SCENARIOS {
        for tls in [false, true] {
            let (variant, server_args, mut bench_args) = if tls {
                let server_args = vec![
                    "--tls-cert".to_owned(),
                    path(&server_cert.cert),
                    "--tls-key".to_owned(),
                    path(&server_cert.key),
                ];
                (
                    "tls",
                    server_args,
                    vec!["--tls-ca".to_owned(), path(&certs.ca)],
                )
            } else {
                ("plain", Vec::new(), Vec::new())
            };
            let shown = if tls { "TLS" } else { "plain text" };
            println!("== {scenario} on session-server, raw v1 sessions in {shown} ==");
            if scenario == "establish" {
                // Raw sessions in plain text too, so the two rows differ in TLS alone.
                bench_args.push("--raw".to_owned());
            }
            let server = start_ours(bins, work, Storage::Memory, Protocol::V1, &server_args)?;
            let addr = server.addr.to_string();
            let pids = [server.child.id()];
            let line = run_scenario(bins, scenario, "ours", &addr, &pids, sizes, &bench_args)?;
            drop(server);
            println!("{line}");
            results.insert(&format!("tls {scenario}"), variant, &line);
        }
    }
    Ok(())
}

/// Where the cluster pass keeps its servers' data (while each runs) and
/// logs (after the run, to read).
fn cluster_dir() -> Result<PathBuf, Error> {
    Ok(target_directory()?.join("bench").join("cluster"))
}

/// The cluster pass: each scenario against a fresh cluster of ours (for
/// ours-zk another, the load on its ZooKeeper listeners) and a fresh
/// ZooKeeper ensemble, the targets `wanted` says. A scenario that fails is
/// reported and shown as failed in the table; the pass goes on with the
/// next.
fn run_cluster_pass(
    bins: &Binaries,
    only: &Only,
    sizes: &Sizes,
    wanted: impl Fn(&str) -> bool,
    results: &mut Results,
) -> Result<(), Error> {
    let dir = cluster_dir()?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    for scenario in CLUSTER_SCENARIOS {
        if !only.memory(scenario) {
            continue;
        }
        for target in TARGETS {
            if !wanted(target) || target == "floor" || !takes_part(scenario, target) {
                continue;
            }
            let servers = match target {
                "ours" => "session-servers",
                "ours-zk" => "session-servers (their ZooKeeper listeners)",
                "etcd" => "etcd members",
                _ => "ZooKeeper servers",
            };
            println!("== {scenario} on a cluster of {CLUSTER_SIZE} {servers} ==");
            let run = || -> Result<String, Error> {
                let cluster = match target {
                    "ours" => start_our_cluster(bins, &dir, scenario, Protocol::V1)?,
                    "ours-zk" => start_our_cluster(bins, &dir, scenario, Protocol::Zk)?,
                    "etcd" => start_etcd_cluster(bins, &dir)?,
                    _ => start_zookeeper_ensemble(bins, &dir, scenario)?,
                };
                println!(
                    "node {} leads; connect string {}",
                    cluster.leader + 1,
                    cluster.connect
                );
                run_cluster_scenario(bins, scenario, target, &cluster, sizes)
            };
            let stored = format!("cluster {scenario}");
            match run() {
                Ok(line) => {
                    println!("{line}");
                    results.insert(&stored, target, &line);
                }
                Err(err) => {
                    println!("{scenario} on {servers} failed: {err}");
                    results.insert(&stored, target, "RESULT run_failed=1");
                }
            }
        }
    }
    Ok(())
}

/// A running cluster of the cluster pass; dropping it kills every server.
struct ClusterRunning {
    /// The servers, each with the client address the scenarios use.
    servers: Vec<Running>,
    /// etcd's members, when the cluster is etcd's (then `servers` is empty).
    etcd: Option<crate::etcd::Etcd>,
    /// Every server's client address the scenarios use, in node order.
    connect: String,
    /// session-server's admin addresses, in node order; empty for ZooKeeper.
    admins: Vec<String>,
    /// The place (from 0) of the server the cluster agreed leads.
    leader: usize,
}

impl ClusterRunning {
    fn pids(&self) -> Vec<u32> {
        match &self.etcd {
            Some(etcd) => etcd.pids(),
            None => self
                .servers
                .iter()
                .map(|server| server.child.id())
                .collect(),
        }
    }

    /// The client address of the server at `index` (from 0).
    fn addr(&self, index: usize) -> String {
        self.connect
            .split(',')
            .nth(index)
            .unwrap_or_default()
            .to_owned()
    }

    fn len(&self) -> usize {
        self.connect.split(',').count()
    }
}

/// An etcd cluster of [`CLUSTER_SIZE`] members, durable (fsync, as our
/// cluster and ZooKeeper's are), data under `dir`; returns once it has a
/// leader.
fn start_etcd_cluster(bins: &Binaries, dir: &Path) -> Result<ClusterRunning, Error> {
    let etcd = crate::etcd::start_cluster(&bins.bench, dir, true, CLUSTER_SIZE)?;
    let connect = etcd.connect();
    let leader = wait_leader(&bins.bench, "etcd", &connect, &[], 60, false)?;
    Ok(ClusterRunning {
        servers: Vec::new(),
        etcd: Some(etcd),
        connect,
        admins: Vec::new(),
        leader: leader.index,
    })
}

/// `count` distinct free loopback ports (all bound at once, then closed).
pub(crate) fn free_ports(count: usize) -> Result<Vec<SocketAddr>, Error> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<Vec<_>, _>>()?)
}

/// A cluster of [`CLUSTER_SIZE`] durable session-servers on free ports,
/// data and logs under `dir`; returns once they agree on a leader. The
/// scenarios use the listeners of `protocol` (with [`Protocol::V1`], the
/// ZooKeeper listeners are off).
fn start_our_cluster(
    bins: &Binaries,
    dir: &Path,
    scenario: &str,
    protocol: Protocol,
) -> Result<ClusterRunning, Error> {
    let ports = free_ports(5 * CLUSTER_SIZE)?;
    let nodes: Vec<NodeAddrs> = ports
        .chunks(5)
        .map(|chunk| NodeAddrs {
            client: chunk[0],
            admin: chunk[1],
            metrics: chunk[2],
            peer: chunk[3],
            zookeeper: (protocol == Protocol::Zk).then_some(chunk[4]),
        })
        .collect();
    let name = match protocol {
        Protocol::V1 => "ours",
        Protocol::Zk => "ours-zk",
    };
    let mut servers = Vec::with_capacity(CLUSTER_SIZE);
    let mut logs = Vec::with_capacity(CLUSTER_SIZE);
    for (index, node) in nodes.iter().enumerate() {
        let id = index + 1;
        let data = dir.join(format!("{scenario}-{name}-node-{id}"));
        let (log, file) = log_file(dir, &format!("{scenario}-{name}-node-{id}.log"))?;
        let mut args = node_args(id, &nodes, &data);
        args.extend(
            [
                "--tick-ms",
                &TICK_MS.to_string(),
                "--max-connections",
                "30000",
                "--max-connections-per-ip",
                "30000",
            ]
            .map(str::to_owned),
        );
        let child = server_command(&bins.bench, &bins.server, &args)
            .env("RUST_LOG", server_log())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        servers.push(Running {
            child,
            addr: node.zookeeper.unwrap_or(node.client),
            _data: Some(RemoveDir(data)),
        });
        logs.push(log);
    }
    for (index, (server, log)) in servers.iter_mut().zip(&logs).enumerate() {
        wait_listening(server, &format!("session-server node {}", index + 1), log)?;
    }
    let admins: Vec<String> = nodes.iter().map(|node| node.admin.to_string()).collect();
    // Asked over admin gRPC, whichever listener the scenarios use.
    let leader = wait_leader(
        &bins.bench,
        "ours",
        &connect_string(&nodes),
        &admins,
        60,
        false,
    )?;
    let connect = servers
        .iter()
        .map(|server| server.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    Ok(ClusterRunning {
        servers,
        etcd: None,
        connect,
        admins,
        leader: leader.index,
    })
}

/// A ZooKeeper ensemble of [`CLUSTER_SIZE`] on free ports, `forceSync=yes`,
/// data under `dir`; returns once one server leads and the others follow.
fn start_zookeeper_ensemble(
    bins: &Binaries,
    dir: &Path,
    scenario: &str,
) -> Result<ClusterRunning, Error> {
    // Client, quorum and election port of each server.
    let ports = free_ports(3 * CLUSTER_SIZE)?;
    let members: String = ports
        .chunks(3)
        .enumerate()
        .map(|(index, chunk)| {
            format!(
                "server.{}=127.0.0.1:{}:{}\n",
                index + 1,
                chunk[1].port(),
                chunk[2].port()
            )
        })
        .collect();
    let mut classpath = ZOOKEEPER_JAR.to_owned();
    if Path::new(SLF4J_NOP_JAR).exists() {
        classpath.push(':');
        classpath.push_str(SLF4J_NOP_JAR);
    }
    let mut servers = Vec::with_capacity(CLUSTER_SIZE);
    let mut logs = Vec::with_capacity(CLUSTER_SIZE);
    for (index, chunk) in ports.chunks(3).enumerate() {
        let id = index + 1;
        let data = dir.join(format!("{scenario}-zk-node-{id}"));
        std::fs::create_dir_all(&data)?;
        std::fs::write(data.join("myid"), format!("{id}\n"))?;
        let config = data.join("zoo.cfg");
        // forceSync=yes (ZooKeeper's default), as our cluster fsyncs its
        // Raft log; srvr answers who leads.
        std::fs::write(
            &config,
            format!(
                "tickTime={TICK_MS}\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\n\
                 clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
                 forceSync=yes\n4lw.commands.whitelist=srvr,stat,mntr\n{members}",
                data.display(),
                chunk[0].port()
            ),
        )?;
        let (log, file) = log_file(dir, &format!("{scenario}-zk-node-{id}.log"))?;
        let child = Command::new(&bins.bench)
            .arg("exec-server")
            .arg("--")
            .arg("java")
            .args(["-cp", &classpath])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        servers.push(Running {
            child,
            addr: chunk[0],
            _data: Some(RemoveDir(data)),
        });
        logs.push(log);
    }
    for (index, (server, log)) in servers.iter_mut().zip(&logs).enumerate() {
        wait_listening(server, &format!("ZooKeeper server {}", index + 1), log)?;
    }
    let connect = servers
        .iter()
        .map(|server| server.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let leader = wait_leader(&bins.bench, "zk", &connect, &[], 120, false)?;
    Ok(ClusterRunning {
        servers,
        etcd: None,
        connect,
        admins: Vec::new(),
        leader: leader.index,
    })
}

/// Runs one scenario of the cluster pass and returns its RESULT line.
fn run_cluster_scenario(
    bins: &Binaries,
    scenario: &str,
    target: &str,
    cluster: &ClusterRunning,
    sizes: &Sizes,
) -> Result<String, Error> {
    let pids = cluster.pids();
    let victim = match scenario {
        "kill-leader" => "leader",
        "kill-follower" => "follower",
        // One session: on a follower, where two in three of a cluster's
        // clients are, so its writes go through the leader.
        "pipelined" => {
            let addr = cluster.addr((cluster.leader + 1) % cluster.len());
            let sizes = Sizes {
                pipelined_requests: sizes.cluster_pipelined_requests,
                ..sizes.clone()
            };
            return run_scenario(bins, scenario, target, &addr, &pids, &sizes, &[]);
        }
        _ => {
            return run_scenario(bins, scenario, target, &cluster.connect, &pids, sizes, &[]);
        }
    };
    let pids = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new(&bins.bench);
    command
        .arg("kill")
        .args(["--target", target, "--addr", &cluster.connect])
        .args(["--victim", victim, "--pids", &pids])
        .args(["--sessions", &sizes.kill.to_string()])
        .args(["--timeout-ms", &TIMEOUT_MS.to_string()]);
    if !cluster.admins.is_empty() {
        command.args(["--admin", &cluster.admins.join(",")]);
    }
    result_line(command, &format!("{scenario} against {target}"))
}

/// The restart scenario: session-bench starts, stops and restarts
/// session-server itself on a data directory under the work directory.
fn run_restart(bins: &Binaries, work: &Path, sizes: &Sizes) -> Result<String, Error> {
    let data = work.join("session-server-restart-data");
    let _cleanup = RemoveDir(data.clone());
    let mut command = Command::new(&bins.bench);
    command
        .arg("restart")
        .arg("--server-bin")
        .arg(&bins.server)
        .arg("--data-dir")
        .arg(&data)
        .args(["--sessions", &sizes.restart_sessions.to_string()])
        .args(["--nodes", &sizes.restart_nodes.to_string()])
        .args(["--tick-ms", &TICK_MS.to_string()])
        .args(["--stops", "term,kill"]);
    result_line(command, "restart")
}

/// Runs session-bench (stderr passed through) and returns its RESULT line.
fn result_line(mut command: Command, what: &str) -> Result<String, Error> {
    let output = command
        .env("RUST_LOG", server_log())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("RESULT "))
        .map(str::to_owned);
    match (output.status.success(), line) {
        (true, Some(line)) => Ok(line),
        (_, _) => Err(format!("session-bench {what} failed with {}", output.status).into()),
    }
}

/// RESULT fields by scenario and target.
#[derive(Default)]
struct Results(BTreeMap<(String, String), BTreeMap<String, String>>);

impl Results {
    fn insert(&mut self, scenario: &str, target: &str, line: &str) {
        let fields = line
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        self.0
            .insert((scenario.to_owned(), target.to_owned()), fields);
    }

    fn get(&self, scenario: &str, target: &str, key: &str) -> Option<&str> {
        self.0
            .get(&(scenario.to_owned(), target.to_owned()))
            .and_then(|fields| fields.get(key))
            .map(String::as_str)
    }

    fn number(&self, scenario: &str, target: &str, key: &str) -> Option<f64> {
        self.get(scenario, target, key)?.parse().ok()
    }

    fn has(&self, scenario: &str, target: &str) -> bool {
        self.0
            .contains_key(&(scenario.to_owned(), target.to_owned()))
    }

    /// The in-memory pass as a Markdown table; empty when it did not run.
    fn table(&self, columns: Columns) -> String {
        let mut table = Table::new(self, columns);
        let mut row = |scenario: &str, label: &str, key: &str, target: Target| {
            table.row(scenario, scenario, label, key, target);
        };
        row(
            "establish",
            "sessions/s",
            "sessions_per_s",
            Target::Goals(&[Goal::AtLeast("zk", 5.0), Goal::AtLeast("etcd", 3.0)]),
        );
        row("establish", "failed", "failed", Target::Zero);
        row(
            "establish-raw",
            "sessions/s, lean raw client",
            "sessions_per_s",
            Target::Goals(&[Goal::AtLeast("floor", 0.7)]),
        );
        row("establish-raw", "failed", "failed", Target::Zero);
        row("hold", "sessions held", "sessions", Target::None);
        row(
            "hold",
            "server CPU, % of a core",
            "cpu_pct",
            Target::Goals(&[Goal::AtMost("zk", 0.2)]),
        );
        row(
            "hold",
            "server CPU per ping, µs",
            "cpu_per_ping_us",
            Target::Goals(&[Goal::AtMost("floor", 1.5)]),
        );
        row(
            "hold",
            "server RSS per session, bytes",
            "rss_per_session_b",
            Target::Goals(&[
                Goal::Below(2500.0),
                Goal::AtMost("zk", 0.1),
                Goal::AtMost("etcd", 1.0 / 3.0),
            ]),
        );
        row("hold", "lost sessions", "lost", Target::Zero);
        row(
            "hold-connections",
            "etcd, a connection per lease: leases held",
            "sessions",
            Target::None,
        );
        row(
            "hold-connections",
            "etcd, a connection per lease: server CPU per keep-alive, µs",
            "cpu_per_ping_us",
            Target::None,
        );
        row(
            "hold-connections",
            "etcd, a connection per lease: server RSS per lease, bytes",
            "rss_per_session_b",
            Target::None,
        );
        row(
            "hold-connections",
            "etcd, a connection per lease: lost",
            "lost",
            Target::None,
        );
        row(
            "churn",
            "ops/s (create+delete)",
            "ops_per_s",
            Target::Goals(&[Goal::AtLeast("zk", 3.0)]),
        );
        row("churn", "latency p50, µs", "p50_us", Target::None);
        row("churn", "latency p99, µs", "p99_us", Target::None);
        row("churn", "errors", "errors", Target::Zero);
        row("pipelined", "requests in flight", "window", Target::None);
        row(
            "pipelined",
            "ops/s (one session, setData+getData)",
            "ops_per_s",
            Target::Goals(&[Goal::AtLeast("zk", 3.0)]),
        );
        row("pipelined", "latency p50, µs", "p50_us", Target::None);
        row("pipelined", "latency p99, µs", "p99_us", Target::None);
        row("pipelined", "errors", "errors", Target::Zero);
        row(
            "pipelined",
            "replies out of order",
            "out_of_order",
            Target::Zero,
        );
        row("expiry", "ephemerals", "sessions", Target::None);
        row(
            "expiry",
            "kill → first gone, ms",
            "kill_to_first_ms",
            Target::None,
        );
        row(
            "expiry",
            "kill → last gone, ms",
            "kill_to_last_ms",
            Target::None,
        );
        row(
            "expiry",
            "spread first → last, ms",
            "spread_ms",
            Target::None,
        );
        row(
            "expiry",
            "last heartbeat → first gone, ms",
            "hb_to_first_ms",
            Target::ExpiryWindow,
        );
        row(
            "expiry",
            "last heartbeat → last gone, ms",
            "hb_to_last_ms",
            Target::ExpiryWindow,
        );
        row(
            "expiry",
            "per session, soonest certainly gone, ms after its own last heartbeat",
            "own_hb_to_gone_min_ms",
            Target::None,
        );
        row(
            "expiry",
            "per session, latest still listed, ms after its own last heartbeat",
            "own_hb_to_seen_max_ms",
            Target::None,
        );
        row(
            "expiry",
            "sessions gone early (≤ T after their own heartbeat)",
            "early_sessions",
            Target::Zero,
        );
        row(
            "expiry",
            "sessions gone late (> T + tick + 50 ms after it)",
            "late_sessions",
            Target::Zero,
        );
        row("expiry", "survivors", "survivors", Target::Zero);
        row("failover", "sessions cut", "sessions", Target::None);
        row(
            "failover",
            "all back with old ids, ms",
            "all_back_ms",
            Target::None,
        );
        row("failover", "p50 back, ms", "p50_ms", Target::None);
        row("failover", "lost", "lost", Target::Zero);
        table.finish()
    }

    /// The durable pass and the restart scenario as a Markdown table; empty
    /// when neither ran. No targets: the issue states none for them.
    fn durable_table(&self, columns: Columns) -> String {
        let mut table = Table::new(self, columns.without_floor());
        let mut durable = |scenario: &str, label: &str, key: &str, target: Target| {
            let stored = format!("{}{scenario}", Storage::Durable.prefix());
            table.row(
                &stored,
                &format!("{scenario} (durable)"),
                label,
                key,
                target,
            );
        };
        durable("establish", "sessions/s", "sessions_per_s", Target::None);
        durable("establish", "failed", "failed", Target::Zero);
        durable("churn", "ops/s (create+delete)", "ops_per_s", Target::None);
        durable("churn", "latency p50, µs", "p50_us", Target::None);
        durable("churn", "latency p99, µs", "p99_us", Target::None);
        durable("churn", "errors", "errors", Target::Zero);
        let mut restart = |label: &str, key: &str| {
            table.row("restart", "restart", label, key, Target::None);
        };
        restart("sessions held across the restart", "sessions");
        restart("persistent nodes held across the restart", "nodes");
        restart("fill: sessions created/s", "fill_sessions_per_s");
        restart("fill: nodes created/s (pipelined)", "fill_nodes_per_s");
        restart("server RSS before the stop, MiB", "rss_before_mib");
        restart("transactions behind the last snapshot", "replayed_entries");
        restart("data dir after SIGTERM, MiB", "term_data_dir_mib");
        restart("SIGTERM → exit, ms", "term_stop_ms");
        restart(
            "after SIGTERM: spawn → handshake answered, ms",
            "term_handshake_ms",
        );
        restart(
            "after SIGTERM: spawn → all nodes seen, oldest session reattached, ms",
            "term_all_back_ms",
        );
        restart(
            "after SIGTERM: spawn → admin Stats shows all sessions and nodes, ms",
            "term_stats_ms",
        );
        restart("after SIGTERM: server RSS, MiB", "term_rss_mib");
        restart(
            "after SIGKILL: spawn → handshake answered, ms",
            "kill_handshake_ms",
        );
        restart(
            "after SIGKILL: spawn → all nodes seen, oldest session reattached, ms",
            "kill_all_back_ms",
        );
        restart(
            "after SIGKILL: spawn → admin Stats shows all sessions and nodes, ms",
            "kill_stats_ms",
        );
        restart("after SIGKILL: server RSS, MiB", "kill_rss_mib");
        table.finish()
    }
}

impl Results {
    /// The cluster pass as a Markdown table; empty when it did not run.
    /// Targets: the cluster issue's (establishment ≥ 5× ZooKeeper's
    /// ensemble; after a server's death every session back within 2/3 of
    /// its timeout; no session lost anywhere) and the expiry window.
    fn cluster_table(&self, columns: Columns) -> String {
        let mut table = Table::new(self, columns.without_floor());
        let mut row = |scenario: &str, label: &str, key: &str, target: Target| {
            let stored = format!("cluster {scenario}");
            table.row(&stored, &scenario.replace('-', " "), label, key, target);
        };
        row(
            "establish",
            "sessions/s",
            "sessions_per_s",
            Target::Goals(&[Goal::AtLeast("zk", 5.0), Goal::AtLeast("etcd", 3.0)]),
        );
        row("establish", "failed", "failed", Target::Zero);
        row("hold", "sessions held", "sessions", Target::None);
        row(
            "hold",
            "servers' CPU together, % of a core",
            "cpu_pct",
            Target::None,
        );
        row(
            "hold",
            "servers' RSS growth per session, bytes",
            "rss_per_session_b",
            Target::None,
        );
        row("hold", "lost sessions", "lost", Target::Zero);
        row("churn", "ops/s (create+delete)", "ops_per_s", Target::None);
        row("churn", "latency p50, µs", "p50_us", Target::None);
        row("churn", "latency p99, µs", "p99_us", Target::None);
        row("churn", "errors", "errors", Target::Zero);
        row("pipelined", "requests", "requests", Target::None);
        row("pipelined", "requests in flight", "window", Target::None);
        row(
            "pipelined",
            "ops/s (one session on a follower, setData+getData)",
            "ops_per_s",
            Target::None,
        );
        row("pipelined", "latency p50, µs", "p50_us", Target::None);
        row("pipelined", "latency p99, µs", "p99_us", Target::None);
        row("pipelined", "errors", "errors", Target::Zero);
        row(
            "pipelined",
            "replies out of order",
            "out_of_order",
            Target::Zero,
        );
        row("expiry", "ephemerals", "sessions", Target::None);
        row(
            "expiry",
            "kill → last gone, ms",
            "kill_to_last_ms",
            Target::None,
        );
        row(
            "expiry",
            "spread first → last, ms",
            "spread_ms",
            Target::None,
        );
        row(
            "expiry",
            "last heartbeat → first gone, ms",
            "hb_to_first_ms",
            Target::ClusterExpiryWindow,
        );
        row(
            "expiry",
            "last heartbeat → last gone, ms",
            "hb_to_last_ms",
            Target::ClusterExpiryWindow,
        );
        row("expiry", "survivors", "survivors", Target::Zero);
        row(
            "failover",
            "sessions cut (every connection)",
            "sessions",
            Target::None,
        );
        row(
            "failover",
            "all back with old ids, ms",
            "all_back_ms",
            Target::None,
        );
        row("failover", "p50 back, ms", "p50_ms", Target::None);
        row("failover", "lost", "lost", Target::Zero);
        for scenario in ["kill-leader", "kill-follower"] {
            row(scenario, "sessions held", "sessions", Target::None);
            row(
                scenario,
                "sessions disconnected by the kill",
                "disconnected",
                Target::None,
            );
            if scenario == "kill-leader" {
                row(
                    scenario,
                    "kill → new leader agreed, ms",
                    "new_leader_ms",
                    Target::None,
                );
            }
            row(
                scenario,
                "kill → all back with old ids, ms",
                "all_back_ms",
                Target::WithinMs(TIMEOUT_MS * 2 / 3),
            );
            row(scenario, "kill → p50 back, ms", "p50_ms", Target::None);
            row(scenario, "kill → p99 back, ms", "p99_ms", Target::None);
            row(scenario, "lost (expired) sessions", "lost", Target::Zero);
            row(
                scenario,
                "ephemerals missing",
                "ephemerals_missing",
                Target::Zero,
            );
            row(
                scenario,
                "setup: creates refused for want of a parent just created elsewhere (retried)",
                "parent_missing",
                Target::None,
            );
        }
        table.finish()
    }
}

impl Results {
    /// The TLS pass as a Markdown table: plain text, TLS and TLS / plain
    /// text; empty when it did not run. No targets.
    fn tls_table(&self) -> String {
        let mut rows = String::new();
        let mut row = |scenario: &str, label: &str, key: &str| {
            let stored = format!("tls {scenario}");
            if !self.has(&stored, "plain") && !self.has(&stored, "tls") {
                return;
            }
            let cell = |variant: &str| self.get(&stored, variant, key).unwrap_or("-");
            let ratio = match (
                self.number(&stored, "tls", key),
                self.number(&stored, "plain", key),
            ) {
                (Some(tls), Some(plain)) if plain != 0.0 => format!("{:.2}×", tls / plain),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                rows,
                "| {scenario} | {label} | {} | {} | {ratio} |",
                cell("plain"),
                cell("tls")
            );
        };
        row(
            "establish",
            "sessions/s (raw v1 handshakes)",
            "sessions_per_s",
        );
        row("establish", "failed", "failed");
        row("hold", "sessions held", "sessions");
        row("hold", "server CPU, % of a core", "cpu_pct");
        row("hold", "pings in the window", "pings");
        row("hold", "server CPU per ping, µs", "cpu_per_ping_us");
        row("hold", "server RSS per session, bytes", "rss_per_session_b");
        row("hold", "lost sessions", "lost");
        if rows.is_empty() {
            return rows;
        }
        format!(
            "| scenario | measure | plain text | TLS | TLS / plain text |\n\
             | --- | --- | --- | --- | --- |\n{rows}"
        )
    }
}

/// A Markdown table of results being built.
struct Table<'a> {
    results: &'a Results,
    columns: Columns,
    rows: String,
}

impl<'a> Table<'a> {
    fn new(results: &'a Results, columns: Columns) -> Table<'a> {
        Table {
            results,
            columns,
            rows: String::new(),
        }
    }

    /// One row: `key` of scenario `stored` in the results, shown as
    /// scenario `shown`; nothing when no target ran it. The target is
    /// judged on ours (v1); a Zero target that ours-zk misses is noted too.
    fn row(&mut self, stored: &str, shown: &str, label: &str, key: &str, target: Target) {
        let results = self.results;
        if !COLUMNS.iter().any(|(name, _)| results.has(stored, name)) {
            return;
        }
        let columns = self.columns;
        let cell = |target: &str| {
            if !results.has(stored, target) {
                "—"
            } else if results.get(stored, target, "run_failed").is_some() {
                "run failed"
            } else {
                results.get(stored, target, key).unwrap_or("-")
            }
        };
        let ratio = |over: &str, under: &str| -> String {
            match (
                results.number(stored, over, key),
                results.number(stored, under, key),
            ) {
                (Some(over), Some(under)) if under != 0.0 => format!("{:.2}×", over / under),
                _ => "—".to_owned(),
            }
        };
        let verdict = target.judge(results, stored, key);
        let verdict = match (target, results.number(stored, "ours-zk", key)) {
            (Target::Zero, Some(value)) if value != 0.0 => format!("{verdict}; ours-zk **no**"),
            _ => verdict,
        };
        let _ = write!(self.rows, "| {shown} | {label} |");
        for (name, _) in COLUMNS {
            if columns.shows(name) {
                let _ = write!(self.rows, " {} |", cell(name));
            }
        }
        for (over, under, _) in RATIOS {
            if columns.shows(over) && columns.shows(under) {
                let _ = write!(self.rows, " {} |", ratio(over, under));
            }
        }
        let _ = writeln!(self.rows, " {} | {verdict} |", target.describe());
    }

    fn finish(self) -> String {
        if self.rows.is_empty() {
            return String::new();
        }
        let columns = self.columns;
        let mut headings = vec!["scenario", "measure"];
        headings.extend(
            COLUMNS
                .iter()
                .filter(|(name, _)| columns.shows(name))
                .map(|(_, heading)| *heading),
        );
        headings.extend(
            RATIOS
                .iter()
                .filter(|(over, under, _)| columns.shows(over) && columns.shows(under))
                .map(|(_, _, heading)| *heading),
        );
        headings.extend(["target", "met?"]);
        format!(
            "| {} |\n|{}\n{}",
            headings.join(" | "),
            " --- |".repeat(headings.len()),
            self.rows
        )
    }
}

/// What a row is judged against.
#[derive(Clone, Copy)]
enum Target {
    /// No target: shown for reading.
    None,
    /// Ours must be zero.
    Zero,
    /// Every one of these goals.
    Goals(&'static [Goal]),
    /// Ours within (T, T + tick + 50 ms] of the last heartbeat.
    ExpiryWindow,
    /// In a cluster: within (T, T + 2·tick + 50 ms] of the last heartbeat
    /// (a follower tells the leader of its sessions once per tick, so the
    /// leader may hear of a heartbeat up to a tick late).
    ClusterExpiryWindow,
    /// Ours at most this many milliseconds.
    WithinMs(u64),
}

/// One goal for ours (v1) on a row.
#[derive(Clone, Copy)]
enum Goal {
    /// ours / that target's column at least this.
    AtLeast(&'static str, f64),
    /// ours / that target's column at most this.
    AtMost(&'static str, f64),
    /// Ours at most this value, in the row's unit.
    Below(f64),
}

impl Goal {
    fn describe(self) -> String {
        let ratio = |ratio: f64| {
            let inverse = 1.0 / ratio;
            if ratio < 1.0 && (inverse - inverse.round()).abs() < 1e-9 {
                format!("1/{inverse:.0}")
            } else {
                format!("{ratio}×")
            }
        };
        match self {
            Goal::AtLeast(against, want) => format!("≥ {} {}", ratio(want), column_name(against)),
            Goal::AtMost(against, want) => format!("≤ {} {}", ratio(want), column_name(against)),
            Goal::Below(limit) => format!("≤ {limit}"),
        }
    }

    /// Met or missed, or `Err(column)` when a column it needs has no value.
    fn judge(self, results: &Results, scenario: &str, key: &str) -> Result<bool, &'static str> {
        let ours = results.number(scenario, "ours", key).ok_or("ours")?;
        let versus = |against: &'static str| {
            results
                .number(scenario, against, key)
                .filter(|value| *value != 0.0)
                .map(|value| ours / value)
                .ok_or(against)
        };
        Ok(match self {
            Goal::AtLeast(against, want) => versus(against)? >= want,
            Goal::AtMost(against, want) => versus(against)? <= want,
            Goal::Below(limit) => ours <= limit,
        })
    }
}

/// How a column is named in a target or a verdict.
fn column_name(target: &str) -> &'static str {
    match target {
        "zk" => "ZooKeeper",
        "etcd" => "etcd",
        "floor" => "floor",
        "ours-zk" => "ours-zk",
        _ => "ours",
    }
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::None => "—".to_owned(),
            Target::Zero => "0".to_owned(),
            Target::Goals(goals) => goals
                .iter()
                .map(|goal| goal.describe())
                .collect::<Vec<_>>()
                .join(", "),
            Target::ExpiryWindow => format!("({TIMEOUT_MS}, {}] ms", TIMEOUT_MS + TICK_MS + 50),
            Target::ClusterExpiryWindow => {
                format!("({TIMEOUT_MS}, {}] ms", TIMEOUT_MS + 2 * TICK_MS + 50)
            }
            Target::WithinMs(limit) => format!("≤ {limit} ms"),
        }
    }

    /// Whether ours (v1) meets the target.
    fn judge(self, results: &Results, scenario: &str, key: &str) -> String {
        let ours = results.number(scenario, "ours", key);
        let verdict = match self {
            Target::None => "",
            Target::Zero => match ours {
                Some(0.0) => "yes",
                Some(_) => "**no**",
                None => "?",
            },
            Target::Goals(goals) => {
                let mut met = true;
                let mut judged = 0;
                let mut missing = Vec::new();
                for goal in goals {
                    match goal.judge(results, scenario, key) {
                        Ok(true) => judged += 1,
                        Ok(false) => {
                            judged += 1;
                            met = false;
                        }
                        Err(column) => missing.push(format!("no {}", column_name(column))),
                    }
                }
                let verdict = if met { "yes" } else { "**no**" };
                return match (judged, missing.is_empty()) {
                    (_, true) => verdict.to_owned(),
                    (0, false) => missing.join(", "),
                    (_, false) => format!("{verdict} ({})", missing.join(", ")),
                };
            }
            Target::WithinMs(limit) => match ours {
                Some(ours) if ours <= limit as f64 => "yes",
                Some(_) => "**no**",
                None => "?",
            },
            Target::ExpiryWindow => {
                let early = results.get(scenario, "ours", "early") == Some("1");
                let late = results.get(scenario, "ours", "late") == Some("1");
                let known = results.get(scenario, "ours", "heartbeat_known") == Some("1");
                let value = ours.unwrap_or(f64::NAN);
                let inside = if key == "hb_to_first_ms" {
                    !early && value > TIMEOUT_MS as f64
                } else {
                    !late && value <= (TIMEOUT_MS + TICK_MS + 50) as f64
                };
                match (known, inside) {
                    (true, true) => "yes",
                    (true, false) => "**no**",
                    (false, _) => "?",
                }
            }
            Target::ClusterExpiryWindow => {
                let known = results.get(scenario, "ours", "heartbeat_known") == Some("1");
                let inside = ours.is_some_and(|value| {
                    value > TIMEOUT_MS as f64 && value <= (TIMEOUT_MS + 2 * TICK_MS + 50) as f64
                });
                match (known, inside) {
                    (true, true) => "yes",
                    (true, false) => "**no**",
                    (false, _) => "?",
                }
            }
        };
        verdict.to_owned()
    }
}
