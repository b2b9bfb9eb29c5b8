//! `cargo xtask compat`: kazoo's published test modules against session-server.
//!
//! Installs kazoo, pytest and pytest-timeout (every package pinned in
//! `xtask/compat/requirements.txt`) into a virtual environment under
//! `target/compat/venv`, reused while it holds those pins; builds the dev
//! server; starts three session-servers as one cluster on free loopback
//! ports, their data under `target/compat/cluster/`; runs a scripted
//! zkCli.sh session when Debian's `zookeeper` package is installed; then runs
//! each chosen kazoo test module in a pytest process of its own.
//!
//! Then the TLS run: a new certificate authority and certificates from
//! `session-testkit` under `target/compat/tls/certs`, three fresh
//! session-servers started with `--tls-cert`, `--tls-key` and
//! `--tls-client-ca` (every listener TLS, client certificates required,
//! mutual TLS between the members), and `xtask/compat/kazoo_tls.py`: kazoo
//! with `use_ssl=True` creates a node, sees a data watch fire, holds an
//! ephemeral and closes its session, a second client checks that the
//! ephemeral went; a plaintext kazoo, a plaintext ConnectRequest and a
//! client without a certificate are each refused. With zkCli.sh installed,
//! the scripted zkCli.sh session runs again over TLS (ZooKeeper's Netty
//! client, PEM key and trust stores). Each step is a test of its own in
//! the table and against the known failures.
//!
//! kazoo's harness normally starts a Java ZooKeeper cluster. The pytest
//! plugin `xtask/compat/session_server_cluster.py` gives it these servers
//! instead: when the harness starts, stops or resets a member, the plugin
//! asks this process over a loopback control listener (one line per
//! connection, see the plugin) and the member's process is started, stopped
//! with SIGTERM (its data kept, so its sessions survive) or wiped here.
//!
//! The results come from pytest's junit files (`target/compat/junit/`): a
//! table per module, then every failing test with the first line of its
//! error, checked against `xtask/compat/known-failures.txt`. The task fails
//! on a failure not in that list, and on an entry of the list whose test
//! now passes. The servers are stopped when the task ends, however it ends:
//! killed on errors and panics, reached by Ctrl-C through the terminal's
//! process group, and tied to this process with `setpriv --pdeathsig`
//! (where util-linux has it) against a `kill` of the task alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use session_testkit::{ClusterFiles, write_cluster};

use crate::cluster::{NodeAddrs, node_args, wait_listening};
use crate::cmd::{Error, cargo, exec, target_directory, workspace_root};

const USAGE: &str = "\
usage: cargo xtask compat [--only MODULE,...] [--server PATH]

Runs kazoo's own test modules (kazoo 2.11.0, from PyPI) against three
session-servers on loopback, then prints passed / failed / skipped per
module and every failing test with the first line of its error. Exits
non-zero on a failure not listed in xtask/compat/known-failures.txt, or
when a listed test now passes. With /usr/share/zookeeper/bin/zkCli.sh
(apt-get install zookeeper), a scripted zkCli.sh session runs first.
Last, the TLS run: three session-servers with TLS on every listener and
client certificates required (certificates made on the spot), and
xtask/compat/kazoo_tls.py (kazoo with use_ssl=True: create, watch,
ephemeral, close; plaintext and certificate-less clients refused), then
zkCli.sh over TLS when installed.

  --only MODULE,...   run only these modules (names as in the table, e.g.
                      test_client,test_lock); zkCli.sh is left out unless
                      `zkcli` is named, the TLS run unless `tls` is
  --server PATH       run this session-server binary instead of building
                      target/debug/session-server (cargo build -p session-server)

Everything lives under target/compat/: venv/ (Python packages, pinned in
xtask/compat/requirements.txt; reused), cluster/ (the servers' data and
node-N.log), junit/ (pytest's reports), pytest/ (pytest's output per module),
tls/ (the TLS run: certs/, cluster/, kazoo_tls.log, zkcli.log).
Each test has 60 s (pytest-timeout), each module 15 minutes.
";

/// The pinned Python packages, relative to the workspace root.
const REQUIREMENTS: &str = "xtask/compat/requirements.txt";
/// The pytest settings, relative to the workspace root.
const PYTEST_INI: &str = "xtask/compat/pytest.ini";
/// The directory of the pytest plugin, relative to the workspace root.
const PLUGIN_DIR: &str = "xtask/compat";
/// The plugin that gives kazoo's harness our servers.
const PLUGIN: &str = "session_server_cluster";
/// Failures expected for now, relative to the workspace root.
const KNOWN_FAILURES: &str = "xtask/compat/known-failures.txt";
/// Debian's zkCli.sh (package `zookeeper`).
const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";
/// What zkCli.sh runs (its classpath, from Debian's zkEnv.sh), plus the
/// two Netty jars ZooKeeper's Netty client needs and the jar's manifest
/// leaves out (without them: NoClassDefFoundError io/netty/resolver/...).
const ZKCLI_TLS_CLASSPATH: &[&str] = &[
    "/etc/zookeeper/conf",
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/netty-resolver.jar",
    "/usr/share/java/netty-codec.jar",
];
/// The TLS run's kazoo script, relative to the workspace root.
const KAZOO_TLS: &str = "xtask/compat/kazoo_tls.py";
/// How long the TLS run's kazoo script may run.
const KAZOO_TLS_LIMIT: Duration = Duration::from_secs(180);

/// Servers in the cluster: kazoo's harness assumes three (some tests stop
/// one or two of them).
const MEMBERS: usize = 3;
/// How long a member has to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(15);
/// How long the running members have to take sessions after a start.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long one pytest process may run.
const MODULE_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How long the zkCli.sh session may run.
const ZKCLI_LIMIT: Duration = Duration::from_secs(60);

/// kazoo's modules about connections, sessions, nodes, watches and transactions.
const CORE: &[&str] = &[
    "test_client",
    "test_connection",
    "test_watchers",
    "test_exceptions",
    "test_retry",
    "test_paths",
    "test_hosts",
    "test_interrupt",
];

/// kazoo's recipe modules.
const RECIPES: &[&str] = &[
    "test_lock",
    "test_election",
    "test_barrier",
    "test_party",
    "test_queue",
    "test_counter",
    "test_lease",
    "test_partitioner",
    "test_cache",
];

/// kazoo's test modules not run, and why.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "test_sasl",
        "SASL (DIGEST-MD5, GSSAPI): needs a JAAS-configured server and a Kerberos KDC",
    ),
    (
        "test_eventlet_handler",
        "kazoo's eventlet handler (eventlet not installed; the handler is not what is tested here)",
    ),
    (
        "test_gevent_handler",
        "kazoo's gevent handler (gevent not installed; the handler is not what is tested here)",
    ),
    (
        "test_build",
        "runs only on kazoo's CI, comparing the Java build's version with ZOOKEEPER_VERSION",
    ),
    (
        "test_security",
        "kazoo's ACL helpers alone, no server involved",
    ),
    (
        "test_selectors_select",
        "kazoo's select() wrapper alone, no server involved",
    ),
    (
        "test_threading_handler",
        "kazoo's threading handler alone, no server involved",
    ),
    ("test_utils", "kazoo's helpers alone, no server involved"),
];

/// Tests left out of a module that runs: (module, pytest `-k` expression, why).
const DESELECTED: &[(&str, &str, &str)] = &[(
    "test_client",
    "not TestReconfig",
    "TestReconfig: dynamic reconfiguration (`reconfig`, a Java quorum's server list)",
)];

/// Free loopback addresses for every listener of every member.
fn free_addrs() -> Result<Vec<NodeAddrs>, Error> {
    // Every listener is held until all are bound, so no two are the same.
    let mut held = Vec::with_capacity(5 * MEMBERS);
    let mut next = || -> Result<SocketAddr, Error> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        held.push(listener);
        Ok(addr)
    };
    let mut nodes = Vec::with_capacity(MEMBERS);
    for _ in 0..MEMBERS {
        nodes.push(NodeAddrs {
            client: next()?,
            admin: next()?,
            metrics: next()?,
            peer: next()?,
            zookeeper: Some(next()?),
        });
    }
    Ok(nodes)
}

/// Locks `mutex`, also after a panic elsewhere poisoned it: the members must
/// still be stopped.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request to the launcher thread: a command to spawn, and where to answer.
type Launch = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Starts the servers (and pytest) tied to this process where util-linux's
/// `setpriv --pdeathsig TERM` is there (Linux): the kernel sends them
/// SIGTERM when the thread that started them ends, so none outlives this
/// task, even a `kill` of it alone. Members are started from the control
/// listener's short-lived threads, so one long-lived thread spawns them.
#[derive(Debug, Clone)]
struct Launcher {
    server: PathBuf,
    /// Whether `setpriv` is there.
    tie: bool,
    requests: mpsc::Sender<Launch>,
}

impl Launcher {
    fn new(server: &Path) -> Launcher {
        let (requests, incoming) = mpsc::channel::<Launch>();
        std::thread::spawn(move || {
            for (mut command, reply) in incoming {
                let _ = reply.send(command.spawn());
            }
        });
        let tie = Command::new("setpriv")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        Launcher {
            server: server.to_path_buf(),
            tie,
            requests,
        }
    }

    /// A command running `program`, tied to the thread that spawns it when it can be.
    fn command(&self, program: &Path) -> Command {
        if self.tie {
            let mut command = Command::new("setpriv");
            command.args(["--pdeathsig", "TERM"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts the server with `args`, its output appended to `log`.
    fn start(&self, args: &[String], log: &Path) -> Result<Child, Error> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|err| format!("cannot open {}: {err}", log.display()))?;
        let mut command = self.command(&self.server);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let (reply, answer) = mpsc::channel();
        let gone = "the launcher thread is gone";
        self.requests.send((command, reply)).map_err(|_| gone)?;
        let child = answer.recv().map_err(|_| gone)?;
        Ok(child.map_err(|err| format!("cannot start {}: {err}", self.server.display()))?)
    }
}

/// The settings kazoo's own harness gives ZooKeeper, on top of a member's:
/// ZooKeeper's data limit (its `jute.maxbuffer`, 1 MiB; ours defaults to
/// 512 KiB, and `test_connection_dropped` writes 1,000 KiB) and the
/// super-user digest of the credential `super:test`.
fn compat_args(mut args: Vec<String>) -> Vec<String> {
    args.extend(
        [
            "--max-data-bytes",
            "1048576",
            "--super-digest",
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU=",
        ]
        .map(str::to_owned),
    );
    args
}

/// One session-server of the cluster, started and stopped on request.
#[derive(Debug)]
struct Member {
    /// 1-based, the server's node id.
    number: usize,
    launcher: Launcher,
    args: Vec<String>,
    zookeeper: SocketAddr,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Exits nobody asked for, and stops that needed SIGKILL, to report.
    notes: Vec<String>,
}

impl Member {
    /// Starts the server unless it runs; returns once its ZooKeeper port listens.
    fn start(&mut self) -> Result<(), Error> {
        if self.is_running()? {
            return Ok(());
        }
        let child = self.launcher.start(&self.args, &self.log)?;
        let child = self.child.insert(child);
        let what = format!("member {}", self.number);
        if let Err(err) = wait_listening(child, self.zookeeper, &what, &self.log) {
            self.kill();
            return Err(err);
        }
        Ok(())
    }

    /// Whether the server runs; notes an exit nobody asked for.
    fn is_running(&mut self) -> Result<bool, Error> {
        let Some(child) = &mut self.child else {
            return Ok(false);
        };
        if let Some(status) = child.try_wait()? {
            self.notes.push(format!(
                "member {} exited on its own ({status}); see {}",
                self.number,
                self.log.display()
            ));
            self.child = None;
            return Ok(false);
        }
        Ok(true)
    }

    /// Stops the server with SIGTERM (SIGKILL after [`STOP_LIMIT`]), keeping its data.
    fn stop(&mut self) -> Result<(), Error> {
        if !self.is_running()? {
            return Ok(());
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    self.notes.push(format!(
                        "member {} exited with {status} after SIGTERM; see {}",
                        self.number,
                        self.log.display()
                    ));
                }
                return Ok(());
            }
            if !signalled || Instant::now() >= deadline {
                self.notes.push(format!(
                    "member {} did not stop within {STOP_LIMIT:?} of SIGTERM: killed",
                    self.number
                ));
                let _ = child.kill();
                child.wait()?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server and empties its data directory.
    fn wipe(&mut self) -> Result<(), Error> {
        self.stop()?;
        if self.data.exists() {
            std::fs::remove_dir_all(&self.data)
                .map_err(|err| format!("cannot remove {}: {err}", self.data.display()))?;
        }
        Ok(())
    }

    /// Kills the server at once (the way out of an error or a panic).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The members, shared with the control listener's threads.
type Members = Arc<Vec<Mutex<Member>>>;

/// The cluster: dropping it kills every member still running, on every
/// way out of [`run`]. (The control listener's thread holds the members
/// too, so they are never dropped on their own.)
#[derive(Debug)]
struct Cluster {
    members: Members,
    dir: PathBuf,
}

impl Cluster {
    /// Lays out members on free ports with fresh data under `dir`; starts
    /// none. Member N gets `extra(N)` after its other arguments.
    fn new(
        launcher: &Launcher,
        dir: &Path,
        extra: impl Fn(usize) -> Vec<String>,
    ) -> Result<Cluster, Error> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|err| format!("cannot remove {}: {err}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
        let nodes = free_addrs()?;
        let mut members = Vec::with_capacity(MEMBERS);
        for (index, addrs) in nodes.iter().enumerate() {
            let number = index + 1;
            let data = dir.join(format!("node-{number}"));
            members.push(Mutex::new(Member {
                number,
                launcher: launcher.clone(),
                args: {
                    let mut args = compat_args(node_args(number, &nodes, &data));
                    args.extend(extra(number));
                    args
                },
                zookeeper: addrs.zookeeper.ok_or("a member without a ZooKeeper port")?,
                data,
                log: dir.join(format!("node-{number}.log")),
                child: None,
                notes: Vec::new(),
            }));
        }
        Ok(Cluster {
            members: Arc::new(members),
            dir: dir.to_path_buf(),
        })
    }

    /// Starts every member and waits until each takes sessions.
    fn start(&self) -> Result<(), Error> {
        self.start_listening()?;
        wait_ready(&self.members)
    }

    /// Starts every member and waits until each listens (no more: over
    /// TLS, the client waits for a leader itself).
    fn start_listening(&self) -> Result<(), Error> {
        for member in self.members.iter().rev() {
            lock(member).start()?;
        }
        Ok(())
    }

    /// Stops every member with SIGTERM.
    fn stop(&self) -> Result<(), Error> {
        for member in self.members.iter() {
            lock(member).stop()?;
        }
        Ok(())
    }

    /// The members' ZooKeeper addresses, comma-separated.
    fn zookeeper_addrs(&self) -> String {
        self.members
            .iter()
            .map(|member| lock(member).zookeeper.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Takes the notes the members gathered since the last call.
    fn take_notes(&self) -> Vec<String> {
        self.members
            .iter()
            .flat_map(|member| std::mem::take(&mut lock(member).notes))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in self.members.iter() {
            lock(member).kill();
        }
    }
}

/// Waits until every running member opens a session.
fn wait_ready(members: &[Mutex<Member>]) -> Result<(), Error> {
    for member in members {
        let (number, addr) = {
            let mut member = lock(member);
            if !member.is_running()? {
                continue;
            }
            (member.number, member.zookeeper)
        };
        let deadline = Instant::now() + READY_LIMIT;
        while !takes_sessions(addr) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "member {number} ({addr}) opened no session within {READY_LIMIT:?}"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Whether the ZooKeeper listener at `addr` opens a session now (a server
/// that knows no leader closes the connection instead). The session is
/// closed again at once.
fn takes_sessions(addr: SocketAddr) -> bool {
    fn attempt(addr: SocketAddr) -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        // ConnectRequest: protocol 0, last zxid 0, timeout, session 0,
        // 16-byte zero password, readOnly false; behind its length.
        let mut request = Vec::with_capacity(49);
        request.extend_from_slice(&45_i32.to_be_bytes());
        request.extend_from_slice(&0_i32.to_be_bytes());
        request.extend_from_slice(&0_i64.to_be_bytes());
        request.extend_from_slice(&10_000_i32.to_be_bytes());
        request.extend_from_slice(&0_i64.to_be_bytes());
        request.extend_from_slice(&16_i32.to_be_bytes());
        request.extend_from_slice(&[0; 16]);
        request.push(0);
        stream.write_all(&request)?;
        let mut length = [0; 4];
        stream.read_exact(&mut length)?;
        // A ConnectResponse is 36 or 37 bytes.
        let length = usize::try_from(i32::from_be_bytes(length)).unwrap_or(0);
        if !(36..=64).contains(&length) {
            return Ok(false);
        }
        let mut response = vec![0; length];
        stream.read_exact(&mut response)?;
        // The negotiated timeout: 0 for a refused session.
        let timeout = response
            .get(4..8)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(0, i32::from_be_bytes);
        if timeout <= 0 {
            return Ok(false);
        }
        // closeSession: xid 1, opcode -11.
        let mut close = Vec::with_capacity(12);
        close.extend_from_slice(&8_i32.to_be_bytes());
        close.extend_from_slice(&1_i32.to_be_bytes());
        close.extend_from_slice(&(-11_i32).to_be_bytes());
        stream.write_all(&close)?;
        let _ = stream.read(&mut [0; 64]);
        Ok(true)
    }
    attempt(addr).unwrap_or(false)
}

/// Serves the plugin's commands on a loopback port, one thread per
/// connection (kazoo stops two members at once from two threads).
fn serve_control(members: Members) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let members = Arc::clone(&members);
            std::thread::spawn(move || answer(&members, &stream));
        }
    });
    Ok(addr)
}

/// Reads one command from `stream` and writes `ok [value]` or `error REASON`.
fn answer(members: &[Mutex<Member>], stream: &TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let reply = match BufReader::new(stream).read_line(&mut line) {
        Ok(_) => match carry_out(members, line.trim()) {
            Ok(value) if value.is_empty() => "ok".to_owned(),
            Ok(value) => format!("ok {value}"),
            Err(err) => format!("error {err}"),
        },
        Err(err) => format!("error reading the command: {err}"),
    };
    let mut stream = stream;
    let _ = stream.write_all(format!("{reply}\n").as_bytes());
}

/// Carries out one control command (see the plugin's doc).
fn carry_out(members: &[Mutex<Member>], line: &str) -> Result<String, Error> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or_default();
    if verb == "ready" {
        wait_ready(members)?;
        return Ok(String::new());
    }
    let number: usize = words
        .next()
        .ok_or_else(|| format!("`{verb}` needs a member number"))?
        .parse()
        .map_err(|err| format!("`{line}`: {err}"))?;
    let member = number
        .checked_sub(1)
        .and_then(|index| members.get(index))
        .ok_or_else(|| format!("no member {number}"))?;
    let mut member = lock(member);
    match verb {
        "start" => member.start()?,
        "stop" => member.stop()?,
        "wipe" => member.wipe()?,
        "running" => return Ok(if member.is_running()? { "yes" } else { "no" }.to_owned()),
        other => return Err(format!("unknown command `{other}`").into()),
    }
    Ok(String::new())
}

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

/// One test (or zkCli.sh step) and its outcome.
#[derive(Debug)]
struct Case {
    /// `module::Class::test`, as in the known-failures file.
    id: String,
    outcome: Outcome,
    /// The first line of the error or skip reason; empty when passed.
    message: String,
}

/// The results of one module (or of the zkCli.sh session).
#[derive(Debug)]
struct ModuleRun {
    group: &'static str,
    name: String,
    cases: Vec<Case>,
    seconds: f64,
}

impl ModuleRun {
    fn count(&self, outcome: Outcome) -> usize {
        self.cases
            .iter()
            .filter(|case| case.outcome == outcome)
            .count()
    }
}

/// A child process killed (and reaped) when dropped, also on error paths.
#[derive(Debug)]
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` up to `limit`; `None` when it was still running (it is
/// then killed).
fn wait_limited(child: &mut Reaped, limit: Duration) -> Result<Option<ExitStatus>, Error> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.0.kill();
    let _ = child.0.wait();
    Ok(None)
}

/// Runs `command` (`what` in errors) for up to `limit`; returns its exit
/// status (`None` when it was still running, and then killed) and the
/// seconds it took.
fn run_limited(
    command: &mut Command,
    what: &str,
    limit: Duration,
) -> Result<(Option<ExitStatus>, f64), Error> {
    let started = Instant::now();
    let mut child = Reaped(
        command
            .spawn()
            .map_err(|err| format!("cannot start {what}: {err}"))?,
    );
    let status = wait_limited(&mut child, limit)?;
    Ok((status, started.elapsed().as_secs_f64()))
}

/// What every pytest run needs.
#[derive(Debug)]
struct Pytest {
    /// Ties pytest to this process, as it does the servers.
    launcher: Launcher,
    python: PathBuf,
    root: PathBuf,
    dir: PathBuf,
    control: SocketAddr,
    servers: String,
}

impl Pytest {
    /// Runs `module` in its own pytest process and reads its junit report.
    fn run(&self, group: &'static str, module: &str) -> Result<ModuleRun, Error> {
        let junit = self.dir.join("junit").join(format!("{module}.xml"));
        let output = self.dir.join("pytest").join(format!("{module}.log"));
        for file in [&junit, &output] {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if file.exists() {
                std::fs::remove_file(file)?;
            }
        }
        let log = File::create(&output)
            .map_err(|err| format!("cannot create {}: {err}", output.display()))?;
        let mut command = self.command(module, &junit);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let (status, seconds) = run_limited(&mut command, "pytest", MODULE_LIMIT)?;
        let mut cases = if junit.exists() {
            read_junit(&junit)?
        } else {
            Vec::new()
        };
        // pytest: 0 all passed, 1 some failed, 5 nothing collected.
        let trouble = match status {
            None => Some(format!("still running after {MODULE_LIMIT:?}: killed")),
            Some(status) if !matches!(status.code(), Some(0 | 1 | 5)) => {
                Some(format!("pytest exited with {status}"))
            }
            Some(_) if !junit.exists() => Some("pytest wrote no junit report".to_owned()),
            Some(_) => None,
        };
        if let Some(trouble) = trouble {
            cases.push(Case {
                id: format!("{module}::pytest"),
                outcome: Outcome::Failed,
                message: format!("{trouble}; see {}", output.display()),
            });
        }
        Ok(ModuleRun {
            group,
            name: module.to_owned(),
            cases,
            seconds,
        })
    }

    fn command(&self, module: &str, junit: &Path) -> Command {
        let mut command = self.launcher.command(&self.python);
        command
            .current_dir(&self.dir)
            .args(["-m", "pytest", "-c"])
            .arg(self.root.join(PYTEST_INI))
            .arg("--rootdir")
            .arg(&self.dir)
            .args(["-p", PLUGIN, "--pyargs", &format!("kazoo.tests.{module}")])
            .arg(format!("--junitxml={}", junit.display()));
        for (_, filter, _) in DESELECTED.iter().filter(|(name, ..)| *name == module) {
            command.args(["-k", filter]);
        }
        // The harness's settings come from the plugin alone; without CI,
        // kazoo's tests ask the server for its version instead of trusting
        // ZOOKEEPER_VERSION.
        for name in [
            "CI",
            "ZOOKEEPER_PATH",
            "ZOOKEEPER_CLASSPATH",
            "ZOOKEEPER_PORT_OFFSET",
            "ZOOKEEPER_CLUSTER_SIZE",
            "ZOOKEEPER_VERSION",
            "ZOOKEEPER_OBSERVER_START_ID",
            "ZOOKEEPER_JAAS_AUTH",
            "ZOOKEEPER_LOCAL_SESSION_RO",
        ] {
            command.env_remove(name);
        }
        command
            .env("PYTHONPATH", self.root.join(PLUGIN_DIR))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("SESSION_COMPAT_CONTROL", self.control.to_string())
            .env("SESSION_COMPAT_SERVERS", &self.servers);
        command
    }
}

/// What the TLS run adds to the report.
#[derive(Debug)]
struct TlsRun {
    /// kazoo_tls.py, and zkCli.sh over TLS when installed.
    runs: Vec<ModuleRun>,
    /// What the servers did unasked.
    notes: Vec<String>,
}

impl Pytest {
    /// The TLS run (see the module's doc), under `target/compat/tls/`.
    fn run_tls(&self) -> Result<TlsRun, Error> {
        let dir = self.dir.join("tls");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|err| format!("cannot remove {}: {err}", dir.display()))?;
        }
        let members = u16::try_from(MEMBERS)?;
        let certs = write_cluster(&dir.join("certs"), members)?;
        let cluster = Cluster::new(&self.launcher, &dir.join("cluster"), |number| {
            tls_args(&certs, number)
        })?;
        cluster.start_listening()?;
        let servers = cluster.zookeeper_addrs();
        println!(
            "session-servers with TLS (--tls-cert, --tls-key, --tls-client-ca; ZooKeeper \
             protocol): {servers}; certificates in {}; logs: {}/node-N.log",
            dir.join("certs").display(),
            cluster.dir.display()
        );
        let mut runs = vec![self.run_kazoo_tls(&dir, &certs, &servers)?];
        runs.extend(run_zkcli_tls(&dir, &certs, &servers)?);
        cluster.stop()?;
        Ok(TlsRun {
            runs,
            notes: cluster
                .take_notes()
                .into_iter()
                .map(|note| format!("TLS run: {note}"))
                .collect(),
        })
    }

    /// Runs `xtask/compat/kazoo_tls.py` against the TLS listeners `servers`.
    fn run_kazoo_tls(
        &self,
        dir: &Path,
        certs: &ClusterFiles,
        servers: &str,
    ) -> Result<ModuleRun, Error> {
        let output = dir.join("kazoo_tls.log");
        let log = File::create(&output)
            .map_err(|err| format!("cannot create {}: {err}", output.display()))?;
        let mut command = self.launcher.command(&self.python);
        command
            .arg(self.root.join(KAZOO_TLS))
            .args(["--hosts", servers])
            .arg("--ca")
            .arg(&certs.ca)
            .arg("--cert")
            .arg(&certs.client.cert)
            .arg("--key")
            .arg(&certs.client.key)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        println!(
            "$ python {KAZOO_TLS} --hosts {servers} --ca ca.pem --cert client.pem --key \
             client.key   (output in {})",
            output.display()
        );
        let (status, seconds) = run_limited(&mut command, KAZOO_TLS, KAZOO_TLS_LIMIT)?;
        let text = std::fs::read_to_string(&output)?;
        let mut cases = kazoo_tls_cases(&text);
        for line in text
            .lines()
            .filter(|line| line.starts_with("ok ") || line.starts_with("FAIL "))
        {
            println!("  {line}");
        }
        let failed = cases.iter().any(|case| case.outcome == Outcome::Failed);
        let trouble = match status {
            None => Some(format!("still running after {KAZOO_TLS_LIMIT:?}: killed")),
            Some(status) if !status.success() && !failed => Some(format!("exited with {status}")),
            Some(_) if cases.is_empty() => Some("printed no step".to_owned()),
            Some(_) => None,
        };
        if let Some(trouble) = trouble {
            cases.push(Case {
                id: "kazoo_tls::script".to_owned(),
                outcome: Outcome::Failed,
                message: format!("{trouble}; see {}", output.display()),
            });
        }
        Ok(ModuleRun {
            group: "tls",
            name: "kazoo_tls".to_owned(),
            cases,
            seconds,
        })
    }
}

/// Member `number`'s TLS flags: its own certificate, client certificates
/// required (chaining to the run's authority, which the members' mutual
/// TLS uses too).
fn tls_args(certs: &ClusterFiles, number: usize) -> Vec<String> {
    let server = &certs.servers[number - 1];
    vec![
        "--tls-cert".to_owned(),
        server.cert.display().to_string(),
        "--tls-key".to_owned(),
        server.key.display().to_string(),
        "--tls-client-ca".to_owned(),
        certs.ca.display().to_string(),
    ]
}

/// The scripted zkCli.sh session over TLS: ZooKeeper's Netty client with
/// PEM key and trust stores (the key store one file: the client's key and
/// certificate), hostname verification on (ZooKeeper's default). `None`
/// when zkCli.sh is not installed.
fn run_zkcli_tls(
    dir: &Path,
    certs: &ClusterFiles,
    servers: &str,
) -> Result<Option<ModuleRun>, Error> {
    let key_store = dir.join("certs").join("client-key-store.pem");
    let key = std::fs::read_to_string(&certs.client.key)?;
    let cert = std::fs::read_to_string(&certs.client.cert)?;
    std::fs::write(&key_store, format!("{key}{cert}"))
        .map_err(|err| format!("cannot write {}: {err}", key_store.display()))?;
    let flags = [
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty".to_owned(),
        "-Dzookeeper.client.secure=true".to_owned(),
        format!("-Dzookeeper.ssl.keyStore.location={}", key_store.display()),
        "-Dzookeeper.ssl.keyStore.type=PEM".to_owned(),
        format!("-Dzookeeper.ssl.trustStore.location={}", certs.ca.display()),
        "-Dzookeeper.ssl.trustStore.type=PEM".to_owned(),
    ];
    run_zkcli_as(&ZkCliRun {
        name: "zkCli.sh-tls",
        log: dir.join("zkcli.log"),
        tls_flags: Some(flags.to_vec()),
        servers,
    })
}

/// The steps `kazoo_tls.py` printed: `ok STEP [detail]` or `FAIL STEP: why`.
fn kazoo_tls_cases(output: &str) -> Vec<Case> {
    output
        .lines()
        .filter_map(|line| {
            if let Some(rest) = line.strip_prefix("ok ") {
                let step = rest.split_whitespace().next()?;
                Some(Case {
                    id: format!("kazoo_tls::{step}"),
                    outcome: Outcome::Passed,
                    message: String::new(),
                })
            } else {
                let (step, why) = line.strip_prefix("FAIL ")?.split_once(':')?;
                Some(Case {
                    id: format!("kazoo_tls::{}", step.trim()),
                    outcome: Outcome::Failed,
                    message: why.trim().to_owned(),
                })
            }
        })
        .collect()
}

/// The test cases of a pytest junit report (xunit2).
fn read_junit(path: &Path) -> Result<Vec<Case>, Error> {
    let xml = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let mut cases = Vec::new();
    let mut rest = xml.as_str();
    while let Some(start) = rest.find("<testcase") {
        rest = &rest[start..];
        let tag_end = rest
            .find('>')
            .ok_or_else(|| format!("{}: unterminated <testcase>", path.display()))?;
        let tag = &rest[..tag_end];
        let body = if tag.ends_with('/') {
            ""
        } else {
            let end = rest
                .find("</testcase>")
                .ok_or_else(|| format!("{}: <testcase> without its end", path.display()))?;
            &rest[tag_end + 1..end]
        };
        let classname = attribute(tag, "classname").unwrap_or_default();
        let name = attribute(tag, "name").unwrap_or_default();
        let (outcome, message) = outcome(body);
        cases.push(Case {
            id: test_id(&classname, &name),
            outcome,
            message,
        });
        rest = &rest[tag_end..];
    }
    Ok(cases)
}

/// The outcome in a `<testcase>`'s body and its first line of explanation.
fn outcome(body: &str) -> (Outcome, String) {
    let first = ["<failure", "<error", "<skipped"]
        .iter()
        .filter_map(|tag| body.find(tag).map(|at| (at, *tag)))
        .min();
    let Some((at, tag)) = first else {
        return (Outcome::Passed, String::new());
    };
    let element = &body[at..];
    let tag_end = element.find('>').unwrap_or(element.len());
    let message = attribute(&element[..tag_end], "message")
        .filter(|message| !message.trim().is_empty())
        .unwrap_or_else(|| {
            // No message: the first line of the element's text.
            let text = element.get(tag_end + 1..).unwrap_or_default();
            let text = text.split('<').next().unwrap_or_default();
            unescape(text)
        });
    let first_line = message
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .to_owned();
    let outcome = if tag == "<skipped" {
        Outcome::Skipped
    } else {
        Outcome::Failed
    };
    (outcome, first_line)
}

/// The value of attribute `name` in the start tag `tag`, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + end]))
}

/// Undoes XML's escapes.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity.strip_prefix('#').and_then(|number| {
                let code = match number.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => number.parse().ok(),
                };
                code.and_then(char::from_u32)
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `module::Class::test` from junit's `classname` and `name`. The
/// classname is the test file's path from pytest's rootdir, dotted, then
/// the class: `venv.lib.python3.11.site-packages.kazoo.tests.module.Class`.
fn test_id(classname: &str, name: &str) -> String {
    let package = "kazoo.tests.";
    let path = classname
        .rfind(package)
        .map_or(classname, |at| &classname[at + package.len()..]);
    let mut parts: Vec<&str> = path.split('.').filter(|part| !part.is_empty()).collect();
    parts.push(name);
    parts.join("::")
}

/// One step of the zkCli.sh session: commands, then the line expected next.
struct ZkCliStep {
    id: &'static str,
    commands: &'static [&'static str],
    expect: &'static str,
}

const ZKCLI_STEPS: &[ZkCliStep] = &[
    ZkCliStep {
        id: "create",
        commands: &["create /xtask-compat hello"],
        expect: "Created /xtask-compat",
    },
    ZkCliStep {
        id: "get",
        commands: &["get /xtask-compat"],
        expect: "hello",
    },
    ZkCliStep {
        id: "set",
        commands: &["set /xtask-compat world", "get /xtask-compat"],
        expect: "world",
    },
    ZkCliStep {
        id: "ls",
        commands: &["create /xtask-compat/child c", "ls /xtask-compat"],
        expect: "[child]",
    },
    ZkCliStep {
        id: "stat",
        commands: &["stat /xtask-compat"],
        expect: "dataVersion = 1",
    },
    ZkCliStep {
        id: "create-e",
        commands: &["create -e /xtask-compat/eph e", "ls /xtask-compat"],
        expect: "[child, eph]",
    },
    ZkCliStep {
        id: "delete",
        commands: &["delete /xtask-compat/eph", "ls /xtask-compat"],
        expect: "[child]",
    },
    ZkCliStep {
        id: "deleteall",
        commands: &["deleteall /xtask-compat", "ls /xtask-compat"],
        expect: "Node does not exist: /xtask-compat",
    },
    ZkCliStep {
        id: "quit",
        commands: &["quit"],
        expect: "WatchedEvent state:Closed type:None path:null",
    },
];

/// Runs the scripted zkCli.sh session against `servers` in plain text;
/// `None` when zkCli.sh is not installed.
fn run_zkcli(dir: &Path, servers: &str) -> Result<Option<ModuleRun>, Error> {
    run_zkcli_as(&ZkCliRun {
        name: "zkCli.sh",
        log: dir.join("zkcli.log"),
        tls_flags: None,
        servers,
    })
}

/// One scripted zkCli.sh session.
#[derive(Debug)]
struct ZkCliRun<'a> {
    /// Its name in the table, and the first part of its test ids.
    name: &'static str,
    /// Where its output goes.
    log: PathBuf,
    /// For TLS, the JVM's flags: then zkCli.sh's class is run by `java`
    /// itself, on [`ZKCLI_TLS_CLASSPATH`] (zkCli.sh sets its own).
    tls_flags: Option<Vec<String>>,
    /// The connect string.
    servers: &'a str,
}

/// Runs the scripted zkCli.sh session `run` describes; `None` when
/// zkCli.sh is not installed.
fn run_zkcli_as(run: &ZkCliRun<'_>) -> Result<Option<ModuleRun>, Error> {
    let ZkCliRun {
        name,
        log: output,
        tls_flags,
        servers,
    } = run;
    if !Path::new(ZKCLI).exists() {
        println!("zkCli.sh not installed (apt-get install zookeeper); {name} skipped");
        return Ok(None);
    }
    let mut command = match tls_flags {
        None => Command::new(ZKCLI),
        Some(flags) => {
            if let Some(missing) = ZKCLI_TLS_CLASSPATH
                .iter()
                .find(|path| !Path::new(path).exists())
            {
                println!("{missing} not found (Debian's libnetty-java); {name} skipped");
                return Ok(None);
            }
            let mut java = Command::new("java");
            java.arg("-cp")
                .arg(ZKCLI_TLS_CLASSPATH.join(":"))
                .args(flags)
                .arg("org.apache.zookeeper.ZooKeeperMain");
            java
        }
    };
    let log =
        File::create(output).map_err(|err| format!("cannot create {}: {err}", output.display()))?;
    let script: String = ZKCLI_STEPS
        .iter()
        .flat_map(|step| step.commands)
        .map(|command| format!("{command}\n"))
        .collect();
    let shown: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    println!(
        "$ {} -server {servers}   (a scripted session, output in {})",
        shown.join(" "),
        output.display()
    );
    let started = Instant::now();
    let mut child = Reaped(
        command
            .args(["-server", servers])
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|err| format!("cannot start {ZKCLI}: {err}"))?,
    );
    if let Some(mut stdin) = child.0.stdin.take() {
        // A zkCli.sh that exits early fails the checks below; nothing to add.
        let _ = stdin.write_all(script.as_bytes());
    }
    let status = wait_limited(&mut child, ZKCLI_LIMIT)?;
    let text = std::fs::read_to_string(output)?;
    let mut cases = check_zkcli(name, &text);
    // zkCli.sh exits with the status of the command before `quit` (here an
    // `ls` of the deleted node, which fails as it should): only a hang counts.
    if status.is_none() {
        cases.push(Case {
            id: format!("{name}::exit"),
            outcome: Outcome::Failed,
            message: format!("still running after {ZKCLI_LIMIT:?}: killed"),
        });
    }
    Ok(Some(ModuleRun {
        group: if tls_flags.is_some() { "tls" } else { "zkCli" },
        name: (*name).to_owned(),
        cases,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Checks zkCli.sh's output against [`ZKCLI_STEPS`], in order: each step's
/// line must come after the previous step's.
fn check_zkcli(name: &str, output: &str) -> Vec<Case> {
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    let mut cursor = 0;
    let mut cases = Vec::with_capacity(ZKCLI_STEPS.len());
    for step in ZKCLI_STEPS {
        let found = lines[cursor..].iter().position(|line| *line == step.expect);
        let (outcome, message) = match found {
            Some(offset) => {
                cursor += offset + 1;
                (Outcome::Passed, String::new())
            }
            None => {
                let next = lines[cursor..]
                    .iter()
                    .find(|line| !line.is_empty())
                    .copied()
                    .unwrap_or("(nothing)");
                let expect = step.expect;
                (
                    Outcome::Failed,
                    format!("expected the line `{expect}`; next output: `{next}`"),
                )
            }
        };
        cases.push(Case {
            id: format!("{name}::{}", step.id),
            outcome,
            message,
        });
    }
    cases
}

/// The known failures: test id → reason.
fn read_known(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let mut known = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if known
            .insert(id.to_owned(), reason.trim().to_owned())
            .is_some()
        {
            return Err(format!("{}:{}: `{id}` is listed twice", path.display(), index + 1).into());
        }
    }
    Ok(known)
}

/// Creates (or reuses) the venv under `dir` with every pin of
/// [`REQUIREMENTS`]; returns its python.
fn prepare_venv(root: &Path, dir: &Path) -> Result<PathBuf, Error> {
    let requirements = root.join(REQUIREMENTS);
    let text = std::fs::read_to_string(&requirements)
        .map_err(|err| format!("cannot read {}: {err}", requirements.display()))?;
    let pins: Vec<String> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(normalize_pin)
        .collect();
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    let works = Command::new(&python)
        .args(["-c", "import venv"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !works {
        let mut create = Command::new("python3");
        create.args(["-m", "venv", "--clear"]).arg(&venv);
        exec(create).map_err(|err| format!("{err} (needs CPython 3.8+ with venv and pip)"))?;
    }
    let missing: Vec<&String> = {
        let installed = installed_pins(&python)?;
        pins.iter()
            .filter(|pin| !installed.contains(*pin))
            .collect()
    };
    if missing.is_empty() {
        println!(
            "reusing {}: every pin of {REQUIREMENTS} is installed",
            venv.display()
        );
        return Ok(python);
    }
    let mut install = Command::new(&python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "-r",
        ])
        .arg(&requirements);
    exec(install)?;
    let installed = installed_pins(&python)?;
    if let Some(pin) = pins.iter().find(|pin| !installed.contains(*pin)) {
        return Err(format!("pip installed {REQUIREMENTS}, but `pip freeze` lacks {pin}").into());
    }
    Ok(python)
}

/// `pip freeze` of `python`'s environment, normalized.
fn installed_pins(python: &Path) -> Result<BTreeSet<String>, Error> {
    let output = Command::new(python)
        .args(["-m", "pip", "freeze", "--disable-pip-version-check"])
        .stderr(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {} -m pip: {err}", python.display()))?;
    if !output.status.success() {
        return Err(format!("`{} -m pip freeze` failed", python.display()).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(normalize_pin)
        .collect())
}

/// `Name_X==1.0` → `name-x==1.0`, as pip compares names.
fn normalize_pin(pin: &str) -> String {
    match pin.split_once("==") {
        Some((name, version)) => format!(
            "{}=={}",
            name.trim().to_lowercase().replace(['_', '.'], "-"),
            version.trim()
        ),
        None => pin.trim().to_lowercase(),
    }
}

/// The modules to run, by group, after `--only`.
fn chosen_modules(options: &Options) -> Vec<(&'static str, &'static str)> {
    let all = CORE
        .iter()
        .map(|module| ("core", *module))
        .chain(RECIPES.iter().map(|module| ("recipes", *module)));
    all.filter(|(_, module)| options.runs(module)).collect()
}

/// What the command line asked for.
#[derive(Debug, Default)]
struct Options {
    /// `--only`: the modules (and `zkcli`, `tls`) to run; all when `None`.
    only: Option<BTreeSet<String>>,
    /// `--server`: a server binary to run instead of building one.
    server: Option<PathBuf>,
}

impl Options {
    /// Parses `args`; `None` for `--help` (printed).
    fn parse(args: &[String]) -> Result<Option<Options>, Error> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--help" | "-h" => {
                    print!("{USAGE}");
                    return Ok(None);
                }
                "--only" => {
                    let list = args.next().ok_or("--only needs a list of modules")?;
                    options.only = Some(list.split(',').map(str::to_owned).collect());
                }
                "--server" => {
                    options.server = Some(args.next().ok_or("--server needs a path")?.into());
                }
                other => return Err(format!("unknown argument `{other}`\n\n{USAGE}").into()),
            }
        }
        if let Some(only) = &options.only {
            let known: BTreeSet<&str> = CORE.iter().chain(RECIPES).copied().collect();
            if let Some(unknown) = only.iter().find(|name| {
                !matches!(name.as_str(), "zkcli" | "tls") && !known.contains(name.as_str())
            }) {
                return Err(format!(
                    "--only: no module `{unknown}` (run: {known:?}, zkcli or tls)"
                )
                .into());
            }
        }
        Ok(Some(options))
    }

    /// Whether `name` (a module, `zkcli` or `tls`) runs.
    fn runs(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(name))
    }
}

/// Builds the dev server, unless `--server` names one; returns its launcher.
fn build(options: &Options) -> Result<Launcher, Error> {
    let server = match &options.server {
        Some(server) => {
            println!("running {} (not built by this task)", server.display());
            server.clone()
        }
        None => {
            let mut build = cargo();
            build.args(["build", "-p", "session-server"]);
            exec(build).map_err(|err| {
                format!("{err} (`--server PATH` runs a server binary built before)")
            })?;
            target_directory()?.join("debug").join("session-server")
        }
    };
    let launcher = Launcher::new(&server);
    if !launcher.tie {
        println!("no setpriv: a server outlives this task if it is killed alone");
    }
    Ok(launcher)
}

/// Entry point of `cargo xtask compat ARGS`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let Some(options) = Options::parse(args)? else {
        return Ok(());
    };
    let wall = Instant::now();
    let root = workspace_root();
    let dir = target_directory()?.join("compat");
    std::fs::create_dir_all(&dir)?;
    let known = read_known(&root.join(KNOWN_FAILURES))?;
    let python = prepare_venv(&root, &dir)?;
    let launcher = build(&options)?;

    let cluster = Cluster::new(&launcher, &dir.join("cluster"), |_| Vec::new())?;
    cluster.start()?;
    let control = serve_control(Arc::clone(&cluster.members))?;
    let servers = cluster.zookeeper_addrs();
    println!(
        "session-servers (ZooKeeper protocol): {servers}; logs: {}/node-N.log",
        cluster.dir.display()
    );
    if options.only.is_none() {
        print_left_out();
    }

    let mut runs = Vec::new();
    if options.runs("zkcli") {
        runs.extend(run_zkcli(&dir, &servers)?);
    }
    let pytest = Pytest {
        launcher,
        python,
        root,
        dir,
        control,
        servers,
    };
    let mut notes = Vec::new();
    for (group, module) in chosen_modules(&options) {
        print!("{module} ... ");
        let _ = std::io::stdout().flush();
        let run = pytest.run(group, module)?;
        println!(
            "{} passed, {} failed, {} skipped in {:.0} s",
            run.count(Outcome::Passed),
            run.count(Outcome::Failed),
            run.count(Outcome::Skipped),
            run.seconds
        );
        for note in cluster.take_notes() {
            println!("  note: {note}");
            notes.push(format!("{module}: {note}"));
        }
        runs.push(run);
    }
    cluster.stop()?;
    notes.extend(cluster.take_notes());
    drop(cluster);
    if options.runs("tls") {
        let tls = pytest.run_tls()?;
        notes.extend(tls.notes);
        runs.extend(tls.runs);
    }
    report(&runs, &known, &notes, wall.elapsed())
}

/// Prints the table, the failures and the notes; fails on unknown
/// failures and out-of-date known ones.
fn report(
    runs: &[ModuleRun],
    known: &BTreeMap<String, String>,
    notes: &[String],
    wall: Duration,
) -> Result<(), Error> {
    print!("{}", table(runs));
    let verdict = verdict(runs, known);
    print!("{}", verdict.text);
    if !notes.is_empty() {
        println!("\nthe servers, unasked:");
        for note in notes {
            println!("  {note}");
        }
    }
    let seconds = wall.as_secs();
    println!("\nwall time: {} min {} s", seconds / 60, seconds % 60);
    match (verdict.unknown, verdict.stale) {
        (0, 0) => Ok(()),
        (unknown, stale) => Err(format!(
            "{unknown} unknown failure(s), {stale} entry(ies) of {KNOWN_FAILURES} out of date"
        )
        .into()),
    }
}

/// Says which of kazoo's modules and tests do not run, and why.
fn print_left_out() {
    println!("left out:");
    for (module, why) in LEFT_OUT {
        println!("  {module:<24} {why}");
    }
    for (module, _, why) in DESELECTED {
        println!("  {module:<24} {why}");
    }
}

/// The per-module table.
fn table(runs: &[ModuleRun]) -> String {
    let mut out = format!(
        "\n{:<8} {:<18} {:>7} {:>7} {:>8} {:>8}\n",
        "group", "module", "passed", "failed", "skipped", "time"
    );
    let mut totals = [0; 3];
    let mut seconds = 0.0;
    for run in runs {
        let counts = [
            run.count(Outcome::Passed),
            run.count(Outcome::Failed),
            run.count(Outcome::Skipped),
        ];
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
        seconds += run.seconds;
        let _ = writeln!(
            out,
            "{:<8} {:<18} {:>7} {:>7} {:>8} {:>6.0} s",
            run.group, run.name, counts[0], counts[1], counts[2], run.seconds
        );
    }
    let _ = writeln!(
        out,
        "{:<8} {:<18} {:>7} {:>7} {:>8} {:>6.0} s",
        "all", "", totals[0], totals[1], totals[2], seconds
    );
    out
}

/// The failure list and what the known-failures file says of it.
#[derive(Debug)]
struct Verdict {
    text: String,
    unknown: usize,
    stale: usize,
}

/// Compares the failures of `runs` with `known`.
fn verdict(runs: &[ModuleRun], known: &BTreeMap<String, String>) -> Verdict {
    let mut text = String::new();
    let failures: Vec<&Case> = runs
        .iter()
        .flat_map(|run| &run.cases)
        .filter(|case| case.outcome == Outcome::Failed)
        .collect();
    let _ = writeln!(text, "\nfailures ({}):", failures.len());
    let mut unknown = Vec::new();
    for case in &failures {
        let mark = if known.contains_key(&case.id) {
            "known"
        } else {
            unknown.push(*case);
            "NEW  "
        };
        let _ = writeln!(text, "  {mark} {}  {}", case.id, case.message);
    }
    let mut stale = Vec::new();
    for (id, reason) in known {
        let module = id.split("::").next().unwrap_or_default();
        let Some(run) = runs.iter().find(|run| run.name == module) else {
            continue; // not run this time (--only)
        };
        match run.cases.iter().find(|case| case.id == *id) {
            Some(case) if case.outcome == Outcome::Failed => {}
            Some(case) if case.outcome == Outcome::Passed => {
                stale.push(format!(
                    "{id} now passes, remove it from the list ({reason})"
                ));
            }
            Some(case) => stale.push(format!(
                "{id} is skipped now ({}), remove it from the list",
                case.message
            )),
            None => stale.push(format!("{id} did not run, remove it from the list")),
        }
    }
    if !unknown.is_empty() {
        let _ = writeln!(
            text,
            "\n{} failure(s) not in {KNOWN_FAILURES}; to accept them, add:",
            unknown.len()
        );
        for case in &unknown {
            let _ = writeln!(text, "{}  {}", case.id, case.message);
        }
    }
    if !stale.is_empty() {
        let _ = writeln!(text, "\nout of date in {KNOWN_FAILURES}:");
        for line in &stale {
            let _ = writeln!(text, "  {line}");
        }
    }
    if unknown.is_empty() && stale.is_empty() {
        let _ = writeln!(text, "\nevery failure is known ({KNOWN_FAILURES})");
    }
    Verdict {
        text,
        unknown: unknown.len(),
        stale: stale.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_cases_and_messages() {
        let body = r#"<testcase classname="venv.lib.python3.11.site-packages.kazoo.tests.test_client.TestClient" name="test_a" time="0.1" />
<testcase classname="kazoo.tests.test_client.TestClient" name="test_b" time="0.1"><failure message="kazoo.exceptions.UnimplementedError: ((), {})&#10;more">trace</failure></testcase>
<testcase classname="kazoo.tests.test_paths" name="test_c" time="0"><skipped type="pytest.skip" message="Must use &quot;3.5&quot;">x</skipped></testcase>"#;
        let dir = std::env::temp_dir().join(format!("xtask-compat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("junit.xml");
        std::fs::write(&path, body).expect("write");
        let cases = read_junit(&path).expect("parse");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[0].id, "test_client::TestClient::test_a");
        assert_eq!(cases[0].outcome, Outcome::Passed);
        assert_eq!(cases[1].outcome, Outcome::Failed);
        assert_eq!(
            cases[1].message,
            "kazoo.exceptions.UnimplementedError: ((), {})"
        );
        assert_eq!(cases[2].id, "test_paths::test_c");
        assert_eq!(cases[2].outcome, Outcome::Skipped);
        assert_eq!(cases[2].message, "Must use \"3.5\"");
    }

    #[test]
    fn kazoo_tls_steps() {
        let cases = kazoo_tls_cases(
            "ok connect  session 0x1\nnoise\nFAIL watch: the data watch did not happen: x\n",
        );
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].id, "kazoo_tls::connect");
        assert_eq!(cases[0].outcome, Outcome::Passed);
        assert_eq!(cases[1].id, "kazoo_tls::watch");
        assert_eq!(cases[1].outcome, Outcome::Failed);
        assert_eq!(cases[1].message, "the data watch did not happen: x");
    }

    #[test]
    fn zkcli_steps_in_order() {
        let cases = check_zkcli("zkCli.sh", "Created /xtask-compat\nhello\nworld\n");
        assert_eq!(cases[0].outcome, Outcome::Passed);
        assert_eq!(cases[2].outcome, Outcome::Passed);
        assert_eq!(cases[3].outcome, Outcome::Failed);
    }
}
