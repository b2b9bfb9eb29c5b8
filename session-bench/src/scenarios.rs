//! The scenarios (the pipelined one is in its own module). Each is bounded in count and in time, and ends by
//! printing one `RESULT` line.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use crate::client::{BenchClient, BenchError, Liveness};
use crate::proxy::Proxy;
use crate::raw::RawSession;
use crate::sys;
use crate::tls::TlsDialer;
use crate::{Command, Endpoint, Protocol, Target};

/// Parallelism when opening many sessions for the scenarios that are not
/// about establishment.
pub(crate) const OPEN_IN_FLIGHT: usize = 64;

/// Runs one subcommand.
pub(crate) async fn run(command: Command) -> Result<(), BenchError> {
    if command_target(&command) == Some(Target::Etcd) {
        return crate::etcd::run(command).await;
    }
    match command {
        Command::Establish {
            endpoint,
            sessions,
            in_flight,
            raw,
            tls,
        } => {
            let tls = tls.dialer()?;
            if raw || tls.is_some() {
                establish_raw(&endpoint, sessions, in_flight, tls.as_ref()).await
            } else {
                establish(&endpoint, sessions, in_flight).await
            }
        }
        Command::Hold {
            endpoint,
            tls,
            sessions,
            timeout_ms,
            hold_s,
            server_pid,
            perf_out,
            connections,
        } => {
            if connections.is_some() {
                return Err("--connections is for --target etcd".into());
            }
            hold(
                &endpoint,
                tls.dialer()?.as_ref(),
                sessions,
                Duration::from_millis(timeout_ms),
                Duration::from_secs(hold_s),
                &server_pid,
                perf_out.as_deref(),
            )
            .await
        }
        Command::Churn {
            endpoint,
            sessions,
            duration_s,
            max_ops,
        } => {
            churn(
                &endpoint,
                sessions,
                Duration::from_secs(duration_s),
                max_ops,
            )
            .await
        }
        Command::Pipelined {
            endpoint,
            requests,
            window,
        } => crate::pipelined::pipelined(&endpoint, requests, window).await,
        Command::Expiry {
            endpoint,
            sessions,
            timeout_ms,
            tick_ms,
        } => expiry(&endpoint, sessions, timeout_ms, tick_ms).await,
        Command::ExpiryHolder {
            endpoint,
            sessions,
            timeout_ms,
        } => expiry_holder(&endpoint, sessions, Duration::from_millis(timeout_ms)).await,
        Command::Failover {
            endpoint,
            sessions,
            timeout_ms,
        } => failover(&endpoint, sessions, Duration::from_millis(timeout_ms)).await,
        Command::Leader(args) => crate::cluster::leader(&args).await,
        Command::Kill(args) => crate::kill::kill(&args).await,
        Command::Restart(args) => crate::restart::restart(&args).await,
        Command::Floor(args) => crate::floor::serve(&args).await,
        Command::ExecServer { .. } => Err("exec-server is handled before the runtime".into()),
    }
}

/// The target a scenario subcommand runs against.
fn command_target(command: &Command) -> Option<Target> {
    match command {
        Command::Establish { endpoint, .. }
        | Command::Hold { endpoint, .. }
        | Command::Churn { endpoint, .. }
        | Command::Pipelined { endpoint, .. }
        | Command::Expiry { endpoint, .. }
        | Command::ExpiryHolder { endpoint, .. }
        | Command::Failover { endpoint, .. } => Some(endpoint.target),
        Command::Leader(args) => Some(args.endpoint.target),
        Command::Kill(args) => Some(args.endpoint.target),
        Command::Restart(_) | Command::Floor(_) | Command::ExecServer { .. } => None,
    }
}

/// Prints the RESULT line: `fields` as `key=value` pairs.
pub(crate) fn result(scenario: &str, target: Target, fields: &[(&str, String)]) {
    let mut line = format!("RESULT scenario={scenario} target={}", target.name());
    for (key, value) in fields {
        let _ = write!(line, " {key}={value}");
    }
    println!("{line}");
}

pub(crate) fn progress(message: impl AsRef<str>) {
    eprintln!("session-bench: {}", message.as_ref());
}

/// Opens `count` sessions like [`open_many`], failing unless every one opened.
pub(crate) async fn open_all(
    endpoint: &Endpoint,
    count: usize,
    in_flight: usize,
    timeout: Duration,
    limit: Duration,
) -> Result<Vec<BenchClient>, BenchError> {
    let (clients, failed) = open_clients(endpoint, count, in_flight, timeout, limit).await?;
    if failed > 0 {
        return Err(format!("{failed} of {count} sessions failed to open").into());
    }
    Ok(clients)
}

/// Opens `count` client sessions (session-client or zookeeper-client, each
/// given the whole of `--addr`) like [`open_many`].
async fn open_clients(
    endpoint: &Endpoint,
    count: usize,
    in_flight: usize,
    timeout: Duration,
    limit: Duration,
) -> Result<(Vec<BenchClient>, usize), BenchError> {
    let open = |_| BenchClient::connect(endpoint.target, &endpoint.addr, timeout);
    open_many(endpoint, count, in_flight, limit, open).await
}

/// Opens `count` sessions with `open` (given the address of one server of
/// `endpoint`, the servers in turn), `in_flight` at a time, within `limit`;
/// returns the sessions opened and the errors.
async fn open_many<T, F, Fut>(
    endpoint: &Endpoint,
    count: usize,
    in_flight: usize,
    limit: Duration,
    open: F,
) -> Result<(Vec<T>, usize), BenchError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, BenchError>>,
{
    let opening = stream::iter(0..count)
        .map(|index| open(endpoint.address_for(index)))
        .buffer_unordered(in_flight.max(1))
        .collect::<Vec<_>>();
    let outcomes = tokio::time::timeout(limit, opening)
        .await
        .map_err(|_| format!("opening {count} sessions took longer than {limit:?}"))?;
    let mut sessions = Vec::with_capacity(count);
    let mut failed = 0;
    for outcome in outcomes {
        match outcome {
            Ok(session) => sessions.push(session),
            Err(err) => {
                if failed == 0 {
                    progress(format!("a session failed to open: {err}"));
                }
                failed += 1;
            }
        }
    }
    Ok((sessions, failed))
}

async fn establish(
    endpoint: &Endpoint,
    sessions: usize,
    in_flight: usize,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let (clients, failed) = open_clients(
        endpoint,
        sessions,
        in_flight,
        Duration::from_secs(30),
        Duration::from_secs(300),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let opened = clients.len();
    result(
        "establish",
        endpoint.target,
        &[
            ("sessions", opened.to_string()),
            ("failed", failed.to_string()),
            ("elapsed_s", format!("{elapsed:.3}")),
            ("sessions_per_s", format!("{:.0}", opened as f64 / elapsed)),
        ],
    );
    // The server is restarted after each scenario; no need to close them
    // one by one.
    drop(clients);
    Ok(())
}

/// Fails unless `endpoint` is session-server's v1 listener, the only one
/// the lean raw sessions (and so TLS in this benchmark) speak to.
fn require_v1(endpoint: &Endpoint, what: &str) -> Result<(), BenchError> {
    if endpoint.target.protocol() == Protocol::V1 {
        Ok(())
    } else {
        Err(format!(
            "{what} is for --target ours (v1), not {}",
            endpoint.target.name()
        )
        .into())
    }
}

/// `establish` with lean raw sessions, over TLS when `tls` is given: the
/// client side of a handshake is then one socket, one TLS handshake and one
/// frame each way, so the rate is the server's (and the TLS cost shows
/// undiluted by session-client's).
async fn establish_raw(
    endpoint: &Endpoint,
    sessions: usize,
    in_flight: usize,
    tls: Option<&TlsDialer>,
) -> Result<(), BenchError> {
    require_v1(endpoint, "establish --raw (or --tls-ca)")?;
    let timeout = Duration::from_secs(30);
    let limit = Duration::from_secs(300);
    let started = Instant::now();
    // The sessions are closed (dropped) after the clock has stopped.
    let (opened, failed, elapsed) = match tls {
        None => {
            let open = |addr: String| async move { RawSession::open(&addr, timeout).await };
            let (held, failed) = open_many(endpoint, sessions, in_flight, limit, open).await?;
            (held.len(), failed, started.elapsed())
        }
        Some(tls) => {
            let open =
                |addr: String| async move { RawSession::open_tls(&addr, timeout, tls).await };
            let (held, failed) = open_many(endpoint, sessions, in_flight, limit, open).await?;
            (held.len(), failed, started.elapsed())
        }
    };
    let elapsed = elapsed.as_secs_f64();
    result(
        "establish",
        endpoint.target,
        &[
            ("client", "raw".to_owned()),
            ("tls", u8::from(tls.is_some()).to_string()),
            ("sessions", opened.to_string()),
            ("failed", failed.to_string()),
            ("elapsed_s", format!("{elapsed:.3}")),
            ("sessions_per_s", format!("{:.0}", opened as f64 / elapsed)),
        ],
    );
    Ok(())
}

/// A set of held sessions and how many of them were lost.
struct Held {
    stop: Arc<Notify>,
    lost: Arc<AtomicUsize>,
    /// Pings the raw (v1) sessions sent; zookeeper-client's are not counted.
    pings: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    count: usize,
}

impl Held {
    async fn finish(self) -> usize {
        self.stop.notify_waiters();
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            for task in self.tasks {
                let _ = task.await;
            }
        })
        .await;
        self.lost.load(Ordering::Relaxed)
    }

    /// Keeps a raw session alive in a task of its own, counting its pings,
    /// from the moment it is open: opening them all can take longer than
    /// their timeout (15,000 over TLS take about 5 s).
    fn keep_raw<S>(&self, mut session: RawSession<S>) -> tokio::task::JoinHandle<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        session.count_pings_in(Arc::clone(&self.pings));
        let stop = Arc::clone(&self.stop);
        let lost = Arc::clone(&self.lost);
        tokio::spawn(async move {
            if let Err(err) = session.keep_alive(stop.notified()).await {
                if lost.fetch_add(1, Ordering::Relaxed) == 0 {
                    progress(format!("a held session was lost: {err}"));
                }
            }
        })
    }

    /// Takes the keep-alive tasks of the sessions opened; fails when any
    /// of the `count` failed to open.
    fn kept(
        &mut self,
        tasks: Vec<tokio::task::JoinHandle<()>>,
        failed: usize,
    ) -> Result<(), BenchError> {
        self.tasks.extend(tasks);
        if failed > 0 {
            return Err(
                format!("{failed} of {} sessions to hold failed to open", self.count).into(),
            );
        }
        Ok(())
    }
}

/// Opens and keeps alive `count` sessions: lean raw sessions in v1 (over
/// TLS when `tls` is given), zookeeper-client sessions in ZooKeeper's
/// protocol (ZooKeeper, or ours through its ZooKeeper listener).
async fn hold_sessions(
    endpoint: &Endpoint,
    tls: Option<&TlsDialer>,
    count: usize,
    timeout: Duration,
) -> Result<Held, BenchError> {
    let mut held = Held {
        stop: Arc::new(Notify::new()),
        lost: Arc::new(AtomicUsize::new(0)),
        pings: Arc::new(AtomicU64::new(0)),
        tasks: Vec::new(),
        count,
    };
    let limit = Duration::from_secs(300);
    if tls.is_some() {
        require_v1(endpoint, "hold --tls-ca")?;
    }
    match (endpoint.target.protocol(), tls) {
        (Protocol::V1, None) => {
            let keeping = &held;
            let open = |addr: String| async move {
                Ok(keeping.keep_raw(RawSession::open(&addr, timeout).await?))
            };
            let (tasks, failed) = open_many(endpoint, count, OPEN_IN_FLIGHT, limit, open).await?;
            held.kept(tasks, failed)?;
        }
        (Protocol::V1, Some(tls)) => {
            let keeping = &held;
            let open = |addr: String| async move {
                Ok(keeping.keep_raw(RawSession::open_tls(&addr, timeout, tls).await?))
            };
            let (tasks, failed) = open_many(endpoint, count, OPEN_IN_FLIGHT, limit, open).await?;
            held.kept(tasks, failed)?;
        }
        (Protocol::Etcd, _) => return Err(crate::client::NOT_ETCD.into()),
        (Protocol::Zk, _) => {
            let clients = open_all(endpoint, count, OPEN_IN_FLIGHT, timeout, limit).await?;
            for client in clients {
                let stop = Arc::clone(&held.stop);
                let lost = Arc::clone(&held.lost);
                held.tasks.push(tokio::spawn(async move {
                    let mut follower = client.follow();
                    let mut state = follower.now();
                    let stopped = stop.notified();
                    tokio::pin!(stopped);
                    while state == Liveness::Connected {
                        tokio::select! {
                            () = &mut stopped => break,
                            next = follower.changed() => state = next,
                        }
                    }
                    if state != Liveness::Connected {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(client);
                }));
            }
        }
    }
    Ok(held)
}

/// The servers a hold measures: their CPU and RSS summed over their
/// process ids (a cluster's together).
pub(crate) struct Servers<'a>(pub(crate) &'a [u32]);

impl Servers<'_> {
    pub(crate) fn rss_bytes(&self) -> std::io::Result<u64> {
        self.0.iter().map(|&pid| sys::rss_bytes(pid)).sum()
    }

    pub(crate) fn cpu_seconds(&self) -> std::io::Result<f64> {
        self.0.iter().map(|&pid| sys::cpu_seconds(pid)).sum()
    }

    /// Waits for the servers to settle after start-up, then reads their
    /// idle RSS, the baseline the sessions' memory is measured against.
    pub(crate) async fn baseline_rss(&self, sessions: usize) -> std::io::Result<u64> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let baseline = self.rss_bytes()?;
        progress(format!(
            "holding: idle server RSS {:.1} MiB; opening {sessions} sessions",
            baseline as f64 / 1048576.0
        ));
        Ok(baseline)
    }
}

/// What a hold measured, for its RESULT line.
pub(crate) struct HoldMeasure {
    pub(crate) tls: bool,
    pub(crate) sessions: usize,
    pub(crate) servers: usize,
    pub(crate) elapsed_s: f64,
    pub(crate) cpu_s: f64,
    pub(crate) baseline_rss: u64,
    pub(crate) rss: u64,
    pub(crate) lost: usize,
    /// Heartbeats sent in the window (0: not counted).
    pub(crate) pings: u64,
}

impl HoldMeasure {
    /// The RESULT fields every target's hold prints.
    pub(crate) fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("tls", u8::from(self.tls).to_string()),
            ("sessions", self.sessions.to_string()),
            ("servers", self.servers.to_string()),
            ("held_s", format!("{:.1}", self.elapsed_s)),
            ("cpu_s", format!("{:.3}", self.cpu_s)),
            (
                "cpu_pct",
                format!("{:.2}", 100.0 * self.cpu_s / self.elapsed_s),
            ),
            (
                "baseline_rss_mib",
                format!("{:.1}", self.baseline_rss as f64 / 1048576.0),
            ),
            ("rss_mib", format!("{:.1}", self.rss as f64 / 1048576.0)),
            (
                "rss_per_session_b",
                format!(
                    "{:.0}",
                    self.rss.saturating_sub(self.baseline_rss) as f64 / self.sessions.max(1) as f64
                ),
            ),
            ("lost", self.lost.to_string()),
        ];
        if self.pings > 0 {
            fields.push(("pings", self.pings.to_string()));
            fields.push((
                "cpu_per_ping_us",
                format!("{:.2}", self.cpu_s * 1e6 / self.pings as f64),
            ));
        }
        fields
    }
}

async fn hold(
    endpoint: &Endpoint,
    tls: Option<&TlsDialer>,
    sessions: usize,
    timeout: Duration,
    duration: Duration,
    server_pids: &[u32],
    perf_out: Option<&std::path::Path>,
) -> Result<(), BenchError> {
    let servers = Servers(server_pids);
    let baseline_rss = servers.baseline_rss(sessions).await?;
    let held = hold_sessions(endpoint, tls, sessions, timeout).await?;
    // One full ping round before measuring, so the window is steady state.
    tokio::time::sleep(timeout / 3).await;
    let cpu_before = servers.cpu_seconds()?;
    let pings_before = held.pings.load(Ordering::Relaxed);
    let started = Instant::now();
    progress(format!("holding {} sessions for {duration:?}", held.count));
    let perf = match perf_out {
        Some(out) => Some(record_stacks(server_pids, duration, out)?),
        None => None,
    };
    tokio::time::sleep(duration).await;
    if let Some(mut perf) = perf {
        let status = perf.wait().await?;
        if !status.success() {
            return Err(format!("perf record failed with {status}").into());
        }
    }
    let cpu_after = servers.cpu_seconds()?;
    let pings = held.pings.load(Ordering::Relaxed) - pings_before;
    let elapsed = started.elapsed().as_secs_f64();
    let rss = servers.rss_bytes()?;
    let count = held.count;
    let lost = held.finish().await;
    let fields = HoldMeasure {
        tls: tls.is_some(),
        sessions: count,
        servers: server_pids.len(),
        elapsed_s: elapsed,
        cpu_s: cpu_after - cpu_before,
        baseline_rss,
        rss,
        lost,
        // Counted on the raw v1 sessions only: zookeeper-client pings on
        // its own.
        pings,
    }
    .fields();
    result("hold", endpoint.target, &fields);
    Ok(())
}

/// Starts `perf record` sampling the call stacks of `pids` (999 Hz, the
/// frame-pointer chain) for `duration`, into `out`.
fn record_stacks(
    pids: &[u32],
    duration: Duration,
    out: &std::path::Path,
) -> Result<tokio::process::Child, BenchError> {
    let pids = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    tokio::process::Command::new("perf")
        .args(["record", "-F", "999", "-g", "-p", &pids, "-o"])
        .arg(out)
        .args(["--", "sleep", &duration.as_secs_f64().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot run perf (Debian package linux-perf): {err}").into())
}

/// Failed operations by what failed and why, so a run with errors says
/// which ones; the first error of each kind is shown in full on stderr.
#[derive(Debug, Default)]
pub(crate) struct ErrorTally(std::collections::BTreeMap<String, u64>);

impl ErrorTally {
    /// Counts `err`; errors that differ only in numbers (paths, ids)
    /// count as one kind, and a gRPC error (etcd's) is its status code.
    pub(crate) fn count(&mut self, operation: &str, err: &BenchError) {
        let mut kind = format!("{operation}: ");
        match err.downcast_ref::<tonic::Status>() {
            Some(status) => kind.push_str(&format!("{:?}", status.code())),
            None => {
                for c in err.to_string().chars() {
                    match c {
                        '0'..='9' if kind.ends_with('N') => {}
                        '0'..='9' => kind.push('N'),
                        c => kind.push(c),
                    }
                }
            }
        }
        let count = self.0.entry(kind).or_default();
        if *count == 0 {
            progress(format!("{operation}: {err}"));
        }
        *count += 1;
    }

    /// Adds `other`'s counts.
    pub(crate) fn merge(&mut self, other: ErrorTally) {
        for (what, count) in other.0 {
            *self.0.entry(what).or_default() += count;
        }
    }

    /// All errors counted.
    pub(crate) fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Prints each kind of error with its count.
    pub(crate) fn report(&self, scenario: &str) {
        for (what, count) in &self.0 {
            progress(format!("{scenario}: {count} × {what}"));
        }
    }
}

/// The value at quantile `q` of sorted `values`.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn churn(
    endpoint: &Endpoint,
    sessions: usize,
    duration: Duration,
    max_ops: u64,
) -> Result<(), BenchError> {
    const PARENT: &str = "/bench-churn";
    let timeout = Duration::from_secs(10);
    let clients = open_all(
        endpoint,
        sessions,
        OPEN_IN_FLIGHT,
        timeout,
        Duration::from_secs(60),
    )
    .await?;
    clients
        .first()
        .ok_or("no sessions")?
        .ensure_persistent(PARENT)
        .await?;
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (worker, client) in clients.iter().cloned().enumerate() {
        workers.spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = ErrorTally::default();
            let mut op = 0u64;
            while Instant::now() < deadline && op < max_ops {
                let path = format!("{PARENT}/w{worker}-{op}");
                let began = Instant::now();
                match client.create_ephemeral(&path, b"churn").await {
                    Ok(()) => latencies_us.push(began.elapsed().as_micros() as u64),
                    Err(err) => errors.count("create", &err),
                }
                let began = Instant::now();
                match client.delete(&path).await {
                    Ok(()) => latencies_us.push(began.elapsed().as_micros() as u64),
                    Err(err) => errors.count("delete", &err),
                }
                op += 1;
            }
            (latencies_us, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = ErrorTally::default();
    while let Some(joined) = workers.join_next().await {
        let (worker_latencies, worker_errors) = joined?;
        latencies.extend(worker_latencies);
        errors.merge(worker_errors);
    }
    errors.report("churn");
    let errors = errors.total();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    result(
        "churn",
        endpoint.target,
        &[
            ("sessions", sessions.to_string()),
            ("ops", latencies.len().to_string()),
            ("errors", errors.to_string()),
            ("elapsed_s", format!("{elapsed:.2}")),
            (
                "ops_per_s",
                format!("{:.0}", latencies.len() as f64 / elapsed),
            ),
            ("p50_us", quantile(&latencies, 0.50).to_string()),
            ("p99_us", quantile(&latencies, 0.99).to_string()),
        ],
    );
    for client in clients {
        client.close().await;
    }
    Ok(())
}

const EXPIRY_PARENT: &str = "/bench-expiry";

/// The pipes of an `expiry-holder` child: what is written to it, and its
/// stdout's lines.
pub(crate) type HolderPipes = (
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
);

/// Starts this program's `expiry-holder` for `endpoint` with `sessions`
/// sessions of `timeout_ms`, and waits (up to 300 s) until it says READY.
pub(crate) async fn spawn_holder(
    endpoint: &Endpoint,
    sessions: usize,
    timeout_ms: u64,
) -> Result<HolderPipes, BenchError> {
    let exe = std::env::current_exe()?;
    let mut holder = tokio::process::Command::new(exe)
        .args([
            "expiry-holder",
            "--target",
            endpoint.target.name(),
            "--addr",
            &endpoint.addr,
            "--sessions",
            &sessions.to_string(),
            "--timeout-ms",
            &timeout_ms.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let to_holder = holder.stdin.take().ok_or("holder stdin")?;
    let mut from_holder = BufReader::new(holder.stdout.take().ok_or("holder stdout")?).lines();
    let ready = tokio::time::timeout(Duration::from_secs(300), from_holder.next_line())
        .await
        .map_err(|_| "the holder did not get ready within 300 s")??;
    if ready.as_deref() != Some("READY") {
        return Err(format!("the holder failed: {ready:?}").into());
    }
    Ok((holder, to_holder, from_holder))
}

/// Kills a holder of `sessions` ephemerals and times their disappearance.
async fn expiry(
    endpoint: &Endpoint,
    sessions: usize,
    timeout_ms: u64,
    tick_ms: u64,
) -> Result<(), BenchError> {
    let observer =
        BenchClient::connect(endpoint.target, &endpoint.addr, Duration::from_secs(30)).await?;
    observer.ensure_persistent(EXPIRY_PARENT).await?;
    let before = observer.child_count(EXPIRY_PARENT).await?;
    if before != 0 {
        return Err(format!("{EXPIRY_PARENT} already has {before} children").into());
    }
    let (mut holder, mut to_holder, mut from_holder) =
        spawn_holder(endpoint, sessions, timeout_ms).await?;
    // The observer may be on another server of a cluster than the holder's
    // last creates, and a server's replica may trail the leader by a few
    // writes (reads are not linearizable, as in ZooKeeper): it gets up to
    // 5 s to show them all.
    let counted = Instant::now();
    let held = loop {
        let held = observer.child_count(EXPIRY_PARENT).await?;
        if held == sessions as u64 || counted.elapsed() > Duration::from_secs(5) {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if held != sessions as u64 {
        return Err(format!("{held} ephemerals held, expected {sessions}").into());
    }
    to_holder.write_all(b"freeze\n").await?;
    to_holder.flush().await?;
    // "HB <index> <before ms> <after ms>" for each session whose last
    // heartbeat is known (ours in v1), then "LAST_PING <first ms> <last ms>
    // <known 0|1>"; times are CLOCK_MONOTONIC, the same in both processes.
    let mut heartbeats: HashMap<String, (i64, i64)> = HashMap::new();
    let (ping_first, ping_last, known) = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), from_holder.next_line())
            .await
            .map_err(|_| "the holder did not report its last heartbeats")??
            .ok_or("the holder exited before its last heartbeat")?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["HB", index, before, after] => {
                heartbeats.insert(format!("h{index}"), (before.parse()?, after.parse()?));
            }
            ["LAST_PING", first, last, known] => {
                break (first.parse::<i64>()?, last.parse::<i64>()?, *known == "1");
            }
            _ => return Err(format!("unexpected holder line: {line}").into()),
        }
    };
    holder.start_kill()?;
    let killed = sys::monotonic_ms();
    let _ = holder.wait().await;
    progress(format!(
        "holder of {sessions} sessions killed; watching {EXPIRY_PARENT}"
    ));

    let timeout = i64::try_from(timeout_ms)?;
    let tick = i64::try_from(tick_ms)?;
    let give_up = killed + 4 * timeout + 10_000;
    // Each ephemeral's disappearance, between two looks at the children:
    // gone after `seen` (the last look that listed it) and by `missed`.
    let mut present: HashSet<String> = observer
        .children(EXPIRY_PARENT)
        .await?
        .into_iter()
        .collect();
    let mut gone: HashMap<String, (i64, i64)> = HashMap::new();
    let mut seen = sys::monotonic_ms();
    let mut polls = tokio::time::interval(Duration::from_millis(10));
    polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !present.is_empty() && sys::monotonic_ms() < give_up {
        polls.tick().await;
        let listed = observer.children(EXPIRY_PARENT).await?;
        let missed = sys::monotonic_ms();
        let still: HashSet<String> = listed.into_iter().collect();
        present.retain(|name| {
            let stays = still.contains(name);
            if !stays {
                gone.insert(name.clone(), (seen, missed));
            }
            stays
        });
        seen = missed;
    }
    let remaining = present.len();
    let first = gone
        .values()
        .map(|&(_, missed)| missed)
        .min()
        .unwrap_or(give_up);
    let last = gone
        .values()
        .map(|&(_, missed)| missed)
        .max()
        .unwrap_or(give_up);
    // Per session, when its last heartbeat is known (ours in v1): early
    // when it was certainly gone (`missed`) no later than T after the
    // heartbeat was sent (`before`: the server heard it no earlier); late
    // when it was certainly still there (`seen`) more than T + tick + 50 ms
    // after the heartbeat was answered (`after`). Without (zookeeper-client
    // pings on its own), the kill time stands in.
    let heartbeat = |name: &str| {
        heartbeats
            .get(name)
            .copied()
            .filter(|_| known)
            .unwrap_or((killed, killed))
    };
    let mut early_sessions = 0usize;
    let mut late_sessions = 0usize;
    let mut soonest = i64::MAX;
    let mut latest = i64::MIN;
    for (name, &(seen, missed)) in &gone {
        let (before, after) = heartbeat(name);
        if missed - before <= timeout {
            early_sessions += 1;
        }
        if seen - after > timeout + tick + 50 {
            late_sessions += 1;
        }
        soonest = soonest.min(missed - before);
        latest = latest.max(seen - after);
    }
    if known && heartbeats.len() != held as usize {
        return Err(format!(
            "the holder reported {} heartbeats for {held} sessions",
            heartbeats.len()
        )
        .into());
    }
    let (hb_first, hb_last) = if known {
        (ping_first, ping_last)
    } else {
        (killed, killed)
    };
    let mut fields = vec![
        ("sessions", sessions.to_string()),
        ("timeout_ms", timeout_ms.to_string()),
        ("heartbeat_known", u8::from(known).to_string()),
        ("last_round_ms", (ping_last - ping_first).to_string()),
        ("kill_to_first_ms", (first - killed).to_string()),
        ("kill_to_last_ms", (last - killed).to_string()),
        ("spread_ms", (last - first).to_string()),
        ("hb_to_first_ms", (first - hb_first).to_string()),
        ("hb_to_last_ms", (last - hb_last).to_string()),
        ("survivors", remaining.to_string()),
    ];
    if known {
        fields.extend([
            ("own_hb_to_gone_min_ms", soonest.to_string()),
            ("own_hb_to_seen_max_ms", latest.to_string()),
            ("early_sessions", early_sessions.to_string()),
            ("late_sessions", late_sessions.to_string()),
            ("early", u8::from(early_sessions > 0).to_string()),
            (
                "late",
                u8::from(late_sessions > 0 || remaining > 0).to_string(),
            ),
        ]);
    } else {
        // Each session's last heartbeat is somewhere before the kill (its
        // client pings on its own): only lateness against the kill can be
        // told.
        let late = last - killed > timeout + tick + 50 || remaining > 0;
        fields.extend([
            ("early", "0".to_owned()),
            ("late", u8::from(late).to_string()),
        ]);
    }
    result("expiry", endpoint.target, &fields);
    observer.close().await;
    Ok(())
}

/// The killed process of the expiry scenario: holds `sessions` sessions with
/// one ephemeral each, says READY, and on `freeze` sends a last heartbeat on
/// every session (v1) and reports when, then waits to be killed.
async fn expiry_holder(
    endpoint: &Endpoint,
    sessions: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    // Bounded: the parent kills this process; if the parent dies instead,
    // stdin closes and the holder ends too.
    let mut keep = Vec::new();
    match endpoint.target.protocol() {
        Protocol::V1 => {
            let opening = stream::iter(0..sessions)
                .map(|index| {
                    let addr = endpoint.address_for(index);
                    async move {
                        let mut session = RawSession::open(&addr, timeout).await?;
                        session
                            .create_ephemeral(&format!("{EXPIRY_PARENT}/h{index}"))
                            .await?;
                        Ok::<_, BenchError>((index, session))
                    }
                })
                .buffer_unordered(OPEN_IN_FLIGHT);
            let mut opening = std::pin::pin!(opening);
            let freeze = Arc::new(Notify::new());
            let (pinged_tx, mut pinged_rx) = mpsc::unbounded_channel::<(usize, i64, i64)>();
            // Each session pings from the moment it is open: opening them
            // all may take longer than their timeout.
            while let Some(opened) = opening.next().await {
                let (index, mut session) = opened?;
                let freeze = Arc::clone(&freeze);
                let pinged = pinged_tx.clone();
                keep.push(tokio::spawn(async move {
                    if session.keep_alive(freeze.notified()).await.is_ok() {
                        let before = sys::monotonic_ms();
                        if session.ping().await.is_ok() {
                            let _ = pinged.send((index, before, sys::monotonic_ms()));
                        }
                    }
                    // Hold the socket open, silent, until killed.
                    std::future::pending::<()>().await;
                }));
            }
            drop(pinged_tx);
            println!("READY");
            wait_for_freeze(&mut stdin).await?;
            freeze.notify_waiters();
            let mut first = i64::MAX;
            let mut last = i64::MIN;
            for _ in 0..sessions {
                let (index, before, after) =
                    tokio::time::timeout(Duration::from_secs(30), pinged_rx.recv())
                        .await
                        .map_err(|_| "last heartbeats took longer than 30 s")?
                        .ok_or("a held session was lost before the last heartbeat")?;
                println!("HB {index} {before} {after}");
                first = first.min(before);
                last = last.max(after);
            }
            println!("LAST_PING {first} {last} 1");
        }
        Protocol::Zk => {
            let clients = open_all(
                endpoint,
                sessions,
                OPEN_IN_FLIGHT,
                timeout,
                Duration::from_secs(300),
            )
            .await?;
            let creating = stream::iter(clients.iter().enumerate())
                .map(|(index, client)| async move {
                    client
                        .create_ephemeral(&format!("{EXPIRY_PARENT}/h{index}"), b"")
                        .await
                })
                .buffer_unordered(OPEN_IN_FLIGHT)
                .collect::<Vec<_>>();
            for created in creating.await {
                created?;
            }
            println!("READY");
            wait_for_freeze(&mut stdin).await?;
            let now = sys::monotonic_ms();
            println!("LAST_PING {now} {now} 0");
            keep.push(tokio::spawn(async move {
                let _clients = clients;
                std::future::pending::<()>().await;
            }));
        }
        Protocol::Etcd => return Err(crate::client::NOT_ETCD.into()),
    }
    // Wait to be killed; stop if the parent has gone (stdin closed).
    while let Ok(Some(_)) = stdin.next_line().await {}
    drop(keep);
    Ok(())
}

async fn wait_for_freeze(
    stdin: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>,
) -> Result<(), BenchError> {
    match stdin.next_line().await? {
        Some(line) if line.trim() == "freeze" => Ok(()),
        other => Err(format!("expected `freeze` from the parent, got {other:?}").into()),
    }
}

async fn failover(
    endpoint: &Endpoint,
    sessions: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    // One proxy in front of each server; the clients get the proxies'
    // connect string, so after the cut they may come back through any.
    let (proxies, through) = Proxy::in_front_of(endpoint).await?;
    let clients = open_all(
        &through,
        sessions,
        OPEN_IN_FLIGHT,
        timeout,
        Duration::from_secs(300),
    )
    .await?;
    let mut followers: Vec<_> = clients.iter().map(BenchClient::follow).collect();
    for follower in &mut followers {
        if follower.now() != Liveness::Connected {
            return Err("a session was not connected before the cut".into());
        }
    }
    let ids: Vec<u64> = clients.iter().map(BenchClient::session_id).collect();
    let limit = timeout * 2;
    let cut = Instant::now();
    for proxy in &proxies {
        proxy.cut_all();
    }
    let mut waits = tokio::task::JoinSet::new();
    for (index, mut follower) in followers.into_iter().enumerate() {
        waits.spawn(async move {
            let back = tokio::time::timeout(limit, async {
                // The cut must be noticed first (a change away from
                // Connected), then the session must come back.
                let mut state = follower.changed().await;
                while state != Liveness::Connected {
                    if state == Liveness::Lost {
                        return None;
                    }
                    state = follower.changed().await;
                }
                Some(cut.elapsed())
            })
            .await;
            (index, back.ok().flatten())
        });
    }
    let mut times = Vec::with_capacity(sessions);
    let mut lost = 0;
    while let Some(joined) = waits.join_next().await {
        let (index, back) = joined?;
        match back {
            Some(elapsed) if clients[index].session_id() == ids[index] => {
                times.push(elapsed.as_micros() as u64);
            }
            _ => lost += 1,
        }
    }
    times.sort_unstable();
    result(
        "failover",
        endpoint.target,
        &[
            ("sessions", sessions.to_string()),
            ("reattached", times.len().to_string()),
            ("lost", lost.to_string()),
            (
                "all_back_ms",
                format!("{:.1}", times.last().copied().unwrap_or(0) as f64 / 1000.0),
            ),
            (
                "p50_ms",
                format!("{:.1}", quantile(&times, 0.5) as f64 / 1000.0),
            ),
        ],
    );
    for client in clients {
        client.close().await;
    }
    drop(proxies);
    Ok(())
}
