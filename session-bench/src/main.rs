//! The load generator behind `cargo xtask bench`: each subcommand runs one
//! scenario against one server (session-server in its own v1 protocol,
//! session-server's ZooKeeper listener, or ZooKeeper) and prints one
//! `RESULT key=value ...` line on stdout for xtask to tabulate. Progress and
//! problems go to stderr.
//!
//! `--addr` is a server's address or, for a cluster, a connect string
//! listing every server (`host:port,host:port,...`); `leader` waits until a
//! cluster has agreed on a leader and says which server it is, and `kill`
//! times the sessions' way back after a server of the cluster is killed.
//!
//! `exec-server` raises the open-files limit and replaces itself with the
//! server command, so xtask can start servers with enough file descriptors
//! without needing any system calls of its own.

mod client;
mod cluster;
mod etcd;
mod floor;
mod kill;
mod pipelined;
mod proxy;
mod raw;
mod restart;
mod scenarios;
mod sys;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Which server a scenario runs against, and in which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Target {
    /// session-server's v1 listener, through session-client (or the lean
    /// raw client).
    Ours,
    /// session-server's ZooKeeper listener (`--zk-listen`), through the
    /// zookeeper-client crate: exactly the load ZooKeeper gets.
    OursZk,
    /// ZooKeeper, through the zookeeper-client crate.
    Zk,
    /// etcd 3.4's v3 gRPC API: a lease per session with one key attached
    /// (see the `etcd` module for the mapping of each scenario).
    Etcd,
    /// The floor (`session-bench floor`): a server that answers the v1
    /// handshake and pings with the same framing and keeps no state, to
    /// show what the machine costs at all. Spoken to with raw v1 frames.
    Floor,
}

/// The protocol, and so the client code, a scenario uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// session-server's v1 protocol: session-client or raw frames.
    V1,
    /// ZooKeeper's protocol (jute): the zookeeper-client crate.
    Zk,
    /// etcd's v3 gRPC API.
    Etcd,
}

impl Target {
    /// The name used in RESULT lines (and by `--target`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::OursZk => "ours-zk",
            Target::Zk => "zk",
            Target::Etcd => "etcd",
            Target::Floor => "floor",
        }
    }

    /// The protocol spoken to the server.
    pub(crate) fn protocol(self) -> Protocol {
        match self {
            Target::Ours | Target::Floor => Protocol::V1,
            Target::OursZk | Target::Zk => Protocol::Zk,
            Target::Etcd => Protocol::Etcd,
        }
    }

    /// Whether the server is session-server (in either protocol), which
    /// has an admin gRPC listener.
    pub(crate) fn is_session_server(self) -> bool {
        matches!(self, Target::Ours | Target::OursZk)
    }
}

/// Where to run a scenario.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Endpoint {
    /// Which kind of server listens at `--addr`.
    #[arg(long, value_enum)]
    pub(crate) target: Target,
    /// The server's client address, e.g. 127.0.0.1:7181, or a cluster's
    /// connect string, e.g. 127.0.0.1:7181,127.0.0.1:7191,127.0.0.1:7201.
    #[arg(long)]
    pub(crate) addr: String,
}

impl Endpoint {
    /// Every server address in `--addr`, in its order.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.addr
            .split(',')
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The address a lean raw session number `index` uses: the servers in
    /// turn, so raw sessions spread evenly over a cluster.
    pub(crate) fn address_for(&self, index: usize) -> String {
        let addresses = self.addresses();
        if addresses.is_empty() {
            return self.addr.clone();
        }
        addresses[index % addresses.len()].clone()
    }
}

#[derive(Debug, Parser)]
#[command(name = "session-bench", about = "Load generator for cargo xtask bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open N sessions with a fixed number in flight; sessions per second.
    Establish {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Sessions to open.
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// v1 only: open lean raw sessions (one socket each, as hold does)
        /// instead of session-client ones; implied by `--tls-ca`.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        tls: tls::TlsArgs,
    },
    /// Hold N sessions for a while; the servers' CPU and RSS per session
    /// (and, v1, CPU per ping).
    Hold {
        #[command(flatten)]
        endpoint: Endpoint,
        #[command(flatten)]
        tls: tls::TlsArgs,
        /// Sessions to hold.
        #[arg(long, default_value_t = 15_000)]
        sessions: usize,
        /// Requested session timeout in milliseconds.
        #[arg(long, default_value_t = 6000)]
        timeout_ms: u64,
        /// How long to hold them, in seconds.
        #[arg(long, default_value_t = 30)]
        hold_s: u64,
        /// The server's process id, for /proc; a cluster's, comma-separated
        /// (CPU and RSS are summed over them).
        #[arg(long, value_delimiter = ',', required = true)]
        server_pid: Vec<u32>,
        /// Record the servers' stacks with `perf record -g` while the
        /// sessions are held (steady state only), into this file.
        #[arg(long)]
        perf_out: Option<std::path::PathBuf>,
        /// etcd only: the gRPC connections the leases share, each with one
        /// keep-alive stream (default 8, as one clientv3 process would;
        /// `--connections N` with N sessions gives each its own, as each
        /// session of the other targets has).
        #[arg(long)]
        connections: Option<usize>,
    },
    /// Create and delete ephemerals from many sessions; ops/s and latency.
    Churn {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Sessions working at once, one operation in flight each.
        #[arg(long, default_value_t = 64)]
        sessions: usize,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 10)]
        duration_s: u64,
        /// Upper bound on operations per session.
        #[arg(long, default_value_t = 1_000_000)]
        max_ops: u64,
    },
    /// One session with up to W requests in flight: setData of a 64-byte
    /// payload alternating with getData, on one node; ops/s and latency.
    Pipelined {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Requests to send in all.
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 1000)]
        window: usize,
    },
    /// Kill a process holding K sessions with an ephemeral each; time until
    /// every ephemeral is gone.
    Expiry {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Sessions (and ephemerals) the killed process holds.
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        /// Requested session timeout in milliseconds.
        #[arg(long, default_value_t = 6000)]
        timeout_ms: u64,
        /// The server's tick in milliseconds, for the expected window.
        #[arg(long, default_value_t = 2000)]
        tick_ms: u64,
    },
    /// The child process of `expiry` (not for direct use).
    ExpiryHolder {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        sessions: usize,
        #[arg(long)]
        timeout_ms: u64,
    },
    /// Cut the connections of N sessions at once through a proxy (one per
    /// server); time until all are connected again with their old ids.
    Failover {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Sessions to cut off.
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Requested session timeout in milliseconds.
        #[arg(long, default_value_t = 6000)]
        timeout_ms: u64,
    },
    /// A cluster: wait until its servers agree on a leader, then print which
    /// server it is (its place in `--addr`, from 0, and its node id).
    Leader(cluster::LeaderArgs),
    /// A cluster: SIGKILL its leader, or a follower (holding about 1/N of
    /// the sessions), while N sessions with an ephemeral each are held; time
    /// until every session is connected again with its old id, count the
    /// lost ones.
    Kill(kill::KillArgs),
    /// Durable session-server only: fill a server started on a data
    /// directory with sessions and persistent nodes, stop it (SIGTERM, then
    /// SIGKILL) and time each start on the same directory until everything
    /// is back.
    Restart(restart::RestartArgs),
    /// The floor server: answers the v1 handshake (a made-up session id,
    /// the requested timeout) and pings, with session-wire's framing, and
    /// keeps nothing; for `--target floor`.
    Floor(floor::FloorArgs),
    /// Raise the open-files limit to the hard limit, ask for SIGTERM when
    /// the parent process ends (Linux), then run the command in this
    /// process's place (same process id).
    ExecServer {
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = sys::raise_nofile_limit() {
        eprintln!("session-bench: cannot raise the open-files limit: {err}");
    }
    if let Command::ExecServer { command } = &cli.command {
        return exec_server(command);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("session-bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scenarios::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("session-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn exec_server(command: &[String]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        eprintln!("session-bench exec-server: no command given");
        return ExitCode::from(2);
    };
    // A server started by `cargo xtask bench` or `cargo xtask cluster` must
    // not outlive it, however it ends (Ctrl-C reaches the whole process
    // group anyway; a `kill` of xtask alone would not).
    if let Err(err) = sys::terminate_with_parent() {
        eprintln!("session-bench exec-server: cannot tie {program} to its parent: {err}");
    }
    let err = std::process::Command::new(program).args(args).exec();
    eprintln!("session-bench exec-server: cannot run {program}: {err}");
    ExitCode::FAILURE
}
