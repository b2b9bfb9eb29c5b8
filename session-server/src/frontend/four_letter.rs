//! ZooKeeper's four-letter words (`ruok`, `srvr`, `mntr`, ...): which words
//! this server answers, and their text, in ZooKeeper's formats
//! (`zookeeper-server/.../server/command/*Command.java`), from this server's
//! own state and metrics.
//!
//! A word comes instead of a handshake, as the first four bytes of a
//! ZooKeeper connection; the connection writes the text, unframed, and
//! closes. Every word this server carries out is enabled (ZooKeeper's
//! `4lw.commands.whitelist=*`); the words ZooKeeper knows and this server
//! does not carry out get ZooKeeper's text for a word left out of the
//! whitelist. A server that cannot serve (no leader) answers as ZooKeeper's
//! does when it is not running: `ruok` and `envi` as always, `isro` with
//! `null`, the others with [`NOT_SERVING`].
//!
//! Gathering ([`Stats`], [`Client`], [`Configuration`], [`Environment`]) is kept apart
//! from formatting, so the formats are tested on values made up by hand.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::config::Storage;
use crate::metrics::{CloseReason, Latency};
use crate::server::{Shared, wall_clock_ms};
use crate::state::Role;

/// The ZooKeeper release whose client protocol this server speaks, at the
/// front of the version it reports: clients parse the digits before the
/// first `-` (kazoo's `server_version()` reads them from `envi`).
pub(crate) const ZOOKEEPER_VERSION: &str = "3.9.5";

/// What a server that cannot serve answers (ZooKeeper's `ZK_NOT_SERVING`).
pub(crate) const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

/// A four-letter word, recognized from the first 4 bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FourLetterWord {
    /// `imok`, whatever the server's state.
    Ruok,
    /// `rw` (this server has no read-only mode).
    Isro,
    /// The server's statistics.
    Srvr,
    /// `srvr` with a line per client connection.
    Stat,
    /// `zk_<key>\t<value>` lines, for monitoring.
    Mntr,
    /// A line per client connection, with its session.
    Cons,
    /// How many sessions watch how many paths.
    Wchs,
    /// The version and the host, operating system and user.
    Envi,
    /// The server's configuration, ZooKeeper's keys.
    Conf,
    /// The sizes of the snapshot and log directories.
    Dirs,
    /// The watched paths of each session.
    Wchc,
    /// The watching sessions of each path.
    Wchp,
    /// A word ZooKeeper knows that this server does not carry out: `crst`,
    /// `dump`, `gtmk`, `stmk`, `srst`, `hash`.
    NotExecuted(&'static str),
}

/// The words ZooKeeper knows (`FourLetterCommands`) that this server does
/// not carry out. (`stmk` would be followed by an 8-byte trace mask; the
/// connection closes without reading it.)
const NOT_EXECUTED: [&str; 6] = ["crst", "dump", "gtmk", "stmk", "srst", "hash"];

impl FourLetterWord {
    /// The word ZooKeeper knows by these bytes, or `None` (then they are a
    /// frame length, as in ZooKeeper). Telnet's close sequence, which
    /// ZooKeeper also lists, is no command when every word is enabled: it
    /// stays a (negative) length.
    pub(crate) fn parse(bytes: &[u8; 4]) -> Option<FourLetterWord> {
        use FourLetterWord::*;
        let word = match bytes {
            b"ruok" => Ruok,
            b"isro" => Isro,
            b"srvr" => Srvr,
            b"stat" => Stat,
            b"mntr" => Mntr,
            b"cons" => Cons,
            b"wchs" => Wchs,
            b"wchc" => Wchc,
            b"wchp" => Wchp,
            b"envi" => Envi,
            b"conf" => Conf,
            b"dirs" => Dirs,
            _ => {
                return NOT_EXECUTED
                    .into_iter()
                    .find(|word| word.as_bytes() == bytes)
                    .map(NotExecuted);
            }
        };
        Some(word)
    }

    /// The word itself, for log lines.
    pub(crate) fn name(self) -> &'static str {
        use FourLetterWord::*;
        match self {
            Ruok => "ruok",
            Isro => "isro",
            Srvr => "srvr",
            Stat => "stat",
            Mntr => "mntr",
            Cons => "cons",
            Wchs => "wchs",
            Wchc => "wchc",
            Wchp => "wchp",
            Envi => "envi",
            Conf => "conf",
            Dirs => "dirs",
            NotExecuted(word) => word,
        }
    }
}

/// The answer to `word` asked on the connection from `remote` to `local`
/// (this server's address, for `conf`'s `clientPort`); counts it in the
/// metrics (a request read, a connection the server closes) and logs it.
pub(crate) fn answer(
    shared: &Shared,
    word: FourLetterWord,
    remote: SocketAddr,
    local: Option<SocketAddr>,
) -> String {
    use FourLetterWord::*;
    shared.metrics.count_packet_received();
    shared.metrics.count_close(CloseReason::four_letter_word);
    let serving = shared.machine.role() != Role::Unavailable;
    let text = match word {
        Ruok => "imok".to_owned(),
        NotExecuted(word) => {
            format!("{word} is not executed because it is not in the whitelist.\n")
        }
        Envi => envi(&Environment::here()),
        Isro if !serving => "null".to_owned(),
        _ if !serving => NOT_SERVING.to_owned(),
        Isro => "rw".to_owned(),
        Srvr => srvr(&Stats::take(shared), None),
        Stat => srvr(&Stats::take(shared), Some(&clients(shared, remote))),
        Mntr => mntr(&Stats::take(shared), &Monitor::take(shared)),
        Cons => cons(&clients(shared, remote)),
        Wchs => {
            let state = shared.machine.state();
            let watches = &state.watches;
            wchs(watches.watcher_count(), watches.path_count(), watches.len())
        }
        Wchc | Wchp => {
            let state = shared.machine.state();
            let pairs = state
                .watches
                .iter()
                .map(|(_, path, session)| (path.to_owned(), session.as_u64()))
                .collect();
            drop(state);
            watch_listing(pairs, word == Wchp)
        }
        Conf => conf(&Configuration::take(shared, local)),
        Dirs => {
            let (data, log) = directory_sizes(&shared.config.storage);
            dirs(data, log)
        }
    };
    debug!(%remote, word = word.name(), bytes = text.len(), "four-letter word answered");
    text
}

/// The version every word reports: ZooKeeper's, then this server's.
fn full_version() -> String {
    format!(
        "{ZOOKEEPER_VERSION}-compatible session-server {}",
        env!("CARGO_PKG_VERSION")
    )
}

/// What `srvr`, `stat` and `mntr` report of the server as a whole.
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    version: String,
    latency: Latency,
    received: u64,
    sent: u64,
    connections: u64,
    /// Requests read and not yet answered. Not tracked across connections
    /// (each bounds its own in-flight requests): always 0.
    outstanding: u64,
    zxid: u64,
    /// `standalone`, `leader` or `follower`.
    mode: &'static str,
    nodes: usize,
}

impl Stats {
    fn take(shared: &Shared) -> Stats {
        let machine = &shared.machine;
        let mode = if !shared.config.cluster.is_cluster() {
            "standalone"
        } else if machine.role() == Role::Leading {
            "leader"
        } else {
            "follower"
        };
        let metrics = &shared.metrics;
        Stats {
            version: full_version(),
            latency: metrics.latency(),
            received: metrics.packets_received(),
            sent: metrics.packets_sent(),
            connections: u64::try_from(metrics.connections.get()).unwrap_or(0),
            outstanding: 0,
            zxid: machine.zxid(),
            mode,
            nodes: machine.state().replica.tree().node_count(),
        }
    }
}

/// What `mntr` reports beyond [`Stats`].
#[derive(Debug, Clone, PartialEq)]
struct Monitor {
    uptime: Duration,
    watches: usize,
    ephemerals: usize,
    /// Bytes of node data (ZooKeeper adds the paths' lengths; this server
    /// does not keep their sum).
    data_bytes: usize,
    sessions: usize,
    /// Open and the most file descriptors (the soft limit), where the
    /// operating system tells (Linux).
    file_descriptors: Option<(u64, u64)>,
}

impl Monitor {
    fn take(shared: &Shared) -> Monitor {
        let state = shared.machine.state();
        let tree = state.replica.tree();
        let ephemerals = state
            .replica
            .sessions()
            .map(|session| tree.ephemeral_count(session.id.as_u64()))
            .sum();
        let monitor = Monitor {
            uptime: shared.started.elapsed(),
            watches: state.watches.len(),
            ephemerals,
            data_bytes: tree.data_bytes(),
            sessions: state.replica.session_count(),
            file_descriptors: None,
        };
        drop(state);
        Monitor {
            file_descriptors: file_descriptors(),
            ..monitor
        }
    }
}

/// One client connection, as `cons` and `stat` show it.
#[derive(Debug, Clone, PartialEq)]
struct Client {
    remote: SocketAddr,
    /// `None` for the connection asking (it has no session).
    session: Option<ClientSession>,
}

/// What the server knows of a connection's session. Per-connection request
/// counters and latencies are not kept: `cons` shows ZooKeeper's values for
/// a connection whose statistics were just reset (`crst`).
#[derive(Debug, Clone, PartialEq)]
struct ClientSession {
    id: u64,
    timeout: Duration,
    /// When the client was last heard from, in milliseconds since the Unix
    /// epoch (ZooKeeper's `lresp`, its last response).
    last_heard_ms: i64,
}

/// Every connection holding a session, by session id, then the one asking
/// (ZooKeeper lists it too).
fn clients(shared: &Shared, asking: SocketAddr) -> Vec<Client> {
    let machine = &shared.machine;
    // Copied out first: applying a write locks the state, then the
    // connections; holding a connection entry while locking the state
    // could deadlock with it.
    let mut held: Vec<(u64, SocketAddr)> = machine
        .connections
        .iter()
        .map(|entry| (entry.key().as_u64(), entry.value().remote()))
        .collect();
    held.sort_unstable();
    let timeouts: Vec<Option<Duration>> = {
        let state = machine.state();
        held.iter()
            .map(|(id, _)| {
                let id = session_core::SessionId::from_u64(*id);
                state.replica.session(id).map(|entry| entry.timeout)
            })
            .collect()
    };
    let now = Instant::now();
    let wall_now = wall_clock_ms();
    let liveness = machine.liveness();
    let mut clients: Vec<Client> = held
        .into_iter()
        .zip(timeouts)
        .filter_map(|((id, remote), timeout)| {
            let info = liveness.info(session_core::SessionId::from_u64(id))?;
            let silent = now.saturating_duration_since(info.last_touch);
            Some(Client {
                remote,
                session: Some(ClientSession {
                    id,
                    timeout: timeout?,
                    last_heard_ms: wall_now
                        .saturating_sub(i64::try_from(silent.as_millis()).unwrap_or(i64::MAX)),
                }),
            })
        })
        .collect();
    drop(liveness);
    clients.push(Client {
        remote: asking,
        session: None,
    });
    clients
}

/// The server's configuration under ZooKeeper's `conf` keys.
#[derive(Debug, Clone, PartialEq)]
struct Configuration {
    client_port: u16,
    /// The snapshot and log directories, with their sizes; `None` in
    /// memory.
    directories: Option<Directories>,
    tick: Duration,
    max_connections_per_ip: usize,
    min_session_timeout: Duration,
    max_session_timeout: Duration,
    server_id: u8,
    /// `(id, address)` of every member, in a cluster.
    peers: Vec<(u8, String)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Directories {
    snapshots: PathBuf,
    snapshots_bytes: u64,
    log: PathBuf,
    log_bytes: u64,
}

impl Configuration {
    fn take(shared: &Shared, local: Option<SocketAddr>) -> Configuration {
        let config = &shared.config;
        let directories = match &config.storage {
            Storage::InMemory => None,
            Storage::Disk(dir) => {
                let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
                let (snapshots, log) = (dir.join("snapshots"), dir.join("log"));
                Some(Directories {
                    snapshots_bytes: dir_size(&snapshots),
                    log_bytes: dir_size(&log),
                    snapshots,
                    log,
                })
            }
        };
        let client_port = local
            .or(config.zk_listen)
            .map_or(0, |address| address.port());
        Configuration {
            client_port,
            directories,
            tick: config.timeouts.tick(),
            max_connections_per_ip: config.limits.max_connections_per_ip,
            min_session_timeout: config.timeouts.min(),
            max_session_timeout: config.timeouts.max(),
            server_id: config.server_id.get(),
            peers: config
                .cluster
                .peers
                .iter()
                .map(|(id, address)| (id.get(), address.clone()))
                .collect(),
        }
    }
}

/// What `envi` reports besides the version: ZooKeeper's keys that are not
/// Java's.
#[derive(Debug, Clone, PartialEq)]
struct Environment {
    version: String,
    host: String,
    os: String,
    arch: String,
    os_version: String,
    user: String,
    home: String,
    working_dir: String,
}

/// ZooKeeper's value for what it cannot tell.
const NA: &str = "<NA>";

impl Environment {
    fn here() -> Environment {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| NA.to_owned());
        let proc_text = |path: &str| {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| NA.to_owned())
        };
        let os = match std::env::consts::OS {
            "linux" => "Linux",
            "macos" => "Mac OS X",
            "windows" => "Windows",
            other => other,
        };
        Environment {
            version: full_version(),
            host: std::env::var("HOSTNAME")
                .unwrap_or_else(|_| proc_text("/proc/sys/kernel/hostname")),
            os: os.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            os_version: proc_text("/proc/sys/kernel/osrelease"),
            user: std::env::var("USER").unwrap_or_else(|_| var("LOGNAME")),
            home: var("HOME"),
            working_dir: std::env::current_dir()
                .map(|dir| dir.display().to_string())
                .unwrap_or_else(|_| NA.to_owned()),
        }
    }
}

/// A least latency in whole milliseconds, as ZooKeeper prints it: rounded
/// down, and a greatest one ([`max_millis`]) rounded up, so that the mean,
/// which has decimals, lies between them as in ZooKeeper's own reports.
fn min_millis(duration: Duration) -> u128 {
    duration.as_millis()
}

/// A greatest latency in whole milliseconds, rounded up.
fn max_millis(duration: Duration) -> u128 {
    duration.as_micros().div_ceil(1000)
}

/// A double as Java prints it, for the usual values: `2.0`, `0.1234`.
fn java_double(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e7 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// `/ip:port`, as Java prints a socket address without a host name.
fn java_address(address: SocketAddr) -> String {
    format!("/{}:{}", address.ip(), address.port())
}

/// `srvr`, or `stat` when given the clients.
fn srvr(stats: &Stats, clients: Option<&[Client]>) -> String {
    let mut text = format!("Zookeeper version: {}\n", stats.version);
    if let Some(clients) = clients {
        text.push_str("Clients:\n");
        for client in clients {
            connection_line(&mut text, client, true);
            text.push('\n');
        }
        text.push('\n');
    }
    let Latency { min, max, .. } = stats.latency;
    let _ = write!(
        text,
        "Latency min/avg/max: {}/{}/{}\n\
         Received: {}\n\
         Sent: {}\n\
         Connections: {}\n\
         Outstanding: {}\n\
         Zxid: 0x{:x}\n\
         Mode: {}\n\
         Node count: {}\n",
        min_millis(min),
        java_double(stats.latency.mean_ms()),
        max_millis(max),
        stats.received,
        stats.sent,
        stats.connections,
        stats.outstanding,
        stats.zxid,
        stats.mode,
        stats.nodes,
    );
    text
}

/// One line of `cons` (or, `brief`, of `stat`), without its newline:
/// ZooKeeper's `ServerCnxn.dumpConnectionInfo`.
fn connection_line(text: &mut String, client: &Client, brief: bool) {
    // The asking connection is out of its selector (ZooKeeper's 0); the
    // others wait to read (OP_READ, 1).
    let (interest, received) = match client.session {
        Some(_) => (1, 0),
        None => (0, 1),
    };
    let _ = write!(
        text,
        " {}[{interest}](queued=0,recved={received},sent=0",
        java_address(client.remote)
    );
    if let (false, Some(session)) = (brief, &client.session) {
        // Not kept per connection: ZooKeeper's values after `crst` (no last
        // operation or cxid, last zxid -1, latencies 0); nor when it was
        // established (0).
        let _ = write!(
            text,
            ",sid=0x{:x},lop=NA,est=0,to={},lzxid=0xffffffffffffffff,lresp={},\
             llat=0,minlat=0,avglat=0,maxlat=0",
            session.id,
            session.timeout.as_millis(),
            session.last_heard_ms,
        );
    }
    text.push(')');
}

/// `cons`: a line per connection, then an empty line.
fn cons(clients: &[Client]) -> String {
    let mut text = String::new();
    for client in clients {
        connection_line(&mut text, client, false);
        text.push('\n');
    }
    text.push('\n');
    text
}

/// `mntr`: ZooKeeper's keys, in its order.
fn mntr(stats: &Stats, monitor: &Monitor) -> String {
    let mut text = String::new();
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(text, "zk_{key}\t{value}");
    };
    line("version", &stats.version);
    line("server_state", &stats.mode);
    line("avg_latency", &java_double(stats.latency.mean_ms()));
    line("max_latency", &max_millis(stats.latency.max));
    line("min_latency", &min_millis(stats.latency.min));
    line("packets_received", &stats.received);
    line("packets_sent", &stats.sent);
    line("num_alive_connections", &stats.connections);
    line("outstanding_requests", &stats.outstanding);
    line("uptime", &monitor.uptime.as_millis());
    line("znode_count", &stats.nodes);
    line("watch_count", &monitor.watches);
    line("ephemerals_count", &monitor.ephemerals);
    line("approximate_data_size", &monitor.data_bytes);
    line("global_sessions", &monitor.sessions);
    // Every session is global: there are no local sessions here.
    line("local_sessions", &0);
    if let Some((open, max)) = monitor.file_descriptors {
        line("open_file_descriptor_count", &open);
        line("max_file_descriptor_count", &max);
    }
    text
}

/// `wchs`: ZooKeeper counts connections; a session holds one at most.
fn wchs(watchers: usize, paths: usize, watches: usize) -> String {
    format!("{watchers} connections watching {paths} paths\nTotal watches:{watches}\n")
}

/// `envi`.
/// ZooKeeper's `wchc` (by session: `0x<id>` then a tab-indented line per
/// path) or, `by_path`, `wchp` (by path: the path then a tab-indented
/// `0x<id>` per session), from (path, session) pairs, each listed once and
/// sorted.
fn watch_listing(pairs: Vec<(String, u64)>, by_path: bool) -> String {
    let mut grouped: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for (path, session) in pairs {
        let session = format!("0x{session:x}");
        let (key, value) = if by_path {
            (path, session)
        } else {
            (session, path)
        };
        grouped.entry(key).or_default().insert(value);
    }
    let mut text = String::new();
    for (key, values) in grouped {
        text.push_str(&key);
        text.push('\n');
        for value in values {
            text.push('\t');
            text.push_str(&value);
            text.push('\n');
        }
    }
    text
}

fn envi(env: &Environment) -> String {
    let mut text = String::from("Environment:\n");
    for (key, value) in [
        ("zookeeper.version", &env.version),
        ("host.name", &env.host),
        ("os.name", &env.os),
        ("os.arch", &env.arch),
        ("os.version", &env.os_version),
        ("user.name", &env.user),
        ("user.home", &env.home),
        ("user.dir", &env.working_dir),
    ] {
        let _ = writeln!(text, "{key}={value}");
    }
    text
}

/// `conf`: ZooKeeper's keys (`ZooKeeperServer.dumpConf`); the directories
/// only with a data directory, the members only in a cluster.
fn conf(conf: &Configuration) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "clientPort={}", conf.client_port);
    // No TLS listener.
    text.push_str("secureClientPort=-1\n");
    if let Some(dirs) = &conf.directories {
        let _ = writeln!(text, "dataDir={}", dirs.snapshots.display());
        let _ = writeln!(text, "dataDirSize={}", dirs.snapshots_bytes);
        let _ = writeln!(text, "dataLogDir={}", dirs.log.display());
        let _ = writeln!(text, "dataLogSize={}", dirs.log_bytes);
    }
    let _ = writeln!(text, "tickTime={}", conf.tick.as_millis());
    let _ = writeln!(text, "maxClientCnxns={}", conf.max_connections_per_ip);
    let _ = writeln!(
        text,
        "minSessionTimeout={}",
        conf.min_session_timeout.as_millis()
    );
    let _ = writeln!(
        text,
        "maxSessionTimeout={}",
        conf.max_session_timeout.as_millis()
    );
    // The operating system's default backlog.
    text.push_str("clientPortListenBacklog=-1\n");
    let _ = writeln!(text, "serverId={}", conf.server_id);
    if !conf.peers.is_empty() {
        text.push_str("membership: \n");
        for (id, address) in &conf.peers {
            let _ = writeln!(text, "server.{id}={address}");
        }
    }
    text
}

/// `dirs`.
fn dirs(data_bytes: u64, log_bytes: u64) -> String {
    format!("datadir_size: {data_bytes}\nlogdir_size: {log_bytes}\n")
}

/// The bytes in the snapshot and log directories; zero in memory.
fn directory_sizes(storage: &Storage) -> (u64, u64) {
    match storage {
        Storage::InMemory => (0, 0),
        Storage::Disk(dir) => (dir_size(&dir.join("snapshots")), dir_size(&dir.join("log"))),
    }
}

/// The bytes of the files under `dir`, a few levels deep, symbolic links
/// not followed; what cannot be read counts nothing.
fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: usize) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| match entry.metadata() {
                Ok(meta) if meta.is_file() => meta.len(),
                Ok(meta) if meta.is_dir() && depth > 0 => walk(&entry.path(), depth - 1),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 4)
}

/// Open file descriptors and the soft limit, from `/proc/self` (Linux);
/// `None` elsewhere or when the limit is unlimited.
fn file_descriptors() -> Option<(u64, u64)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count();
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let max = max_open_files(&limits)?;
    Some((u64::try_from(open).unwrap_or(u64::MAX), max))
}

/// The soft limit in the `Max open files` line of `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        Stats {
            version: "3.9.5-compatible session-server 0.1.0".to_owned(),
            latency: Latency {
                min: Duration::from_micros(300),
                max: Duration::from_micros(7_900),
                total: Duration::from_micros(10_000),
                count: 8,
            },
            received: 42,
            sent: 41,
            connections: 3,
            outstanding: 0,
            zxid: 0x1f,
            mode: "standalone",
            nodes: 5,
        }
    }

    fn clients() -> Vec<Client> {
        vec![
            Client {
                remote: "127.0.0.1:40000".parse().expect("address"),
                session: Some(ClientSession {
                    id: 0x0100_0000_0000_0002,
                    timeout: Duration::from_secs(4),
                    last_heard_ms: 1_700_000_000_123,
                }),
            },
            Client {
                remote: "[::1]:40001".parse().expect("address"),
                session: None,
            },
        ]
    }

    #[test]
    fn words_are_known_by_their_four_bytes() {
        for word in [
            "ruok", "isro", "srvr", "stat", "mntr", "cons", "wchs", "envi", "conf", "dirs",
        ] {
            let bytes: [u8; 4] = word.as_bytes().try_into().expect("four bytes");
            let parsed = FourLetterWord::parse(&bytes).expect("known");
            assert_eq!(parsed.name(), word);
            assert!(!matches!(parsed, FourLetterWord::NotExecuted(_)));
        }
        for word in NOT_EXECUTED {
            let bytes: [u8; 4] = word.as_bytes().try_into().expect("four bytes");
            assert_eq!(
                FourLetterWord::parse(&bytes),
                Some(FourLetterWord::NotExecuted(word))
            );
        }
        // A word ZooKeeper does not know, a length, telnet's close: lengths.
        for bytes in [*b"abcd", *b"RUOK", [0, 0, 0, 44], [0xff, 0xf4, 0xff, 0xfd]] {
            assert_eq!(FourLetterWord::parse(&bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn srvr_is_zookeepers_lines() {
        assert_eq!(
            srvr(&stats(), None),
            "Zookeeper version: 3.9.5-compatible session-server 0.1.0\n\
             Latency min/avg/max: 0/1.25/8\n\
             Received: 42\n\
             Sent: 41\n\
             Connections: 3\n\
             Outstanding: 0\n\
             Zxid: 0x1f\n\
             Mode: standalone\n\
             Node count: 5\n"
        );
    }

    #[test]
    fn stat_lists_the_clients_briefly_after_the_version() {
        assert_eq!(
            srvr(&stats(), Some(&clients())),
            "Zookeeper version: 3.9.5-compatible session-server 0.1.0\n\
             Clients:\n \
             /127.0.0.1:40000[1](queued=0,recved=0,sent=0)\n \
             /::1:40001[0](queued=0,recved=1,sent=0)\n\
             \n\
             Latency min/avg/max: 0/1.25/8\n\
             Received: 42\n\
             Sent: 41\n\
             Connections: 3\n\
             Outstanding: 0\n\
             Zxid: 0x1f\n\
             Mode: standalone\n\
             Node count: 5\n"
        );
    }

    #[test]
    fn cons_shows_the_session_of_each_connection() {
        assert_eq!(
            cons(&clients()),
            " /127.0.0.1:40000[1](queued=0,recved=0,sent=0,sid=0x100000000000002,lop=NA,\
             est=0,to=4000,lzxid=0xffffffffffffffff,lresp=1700000000123,llat=0,minlat=0,\
             avglat=0,maxlat=0)\n \
             /::1:40001[0](queued=0,recved=1,sent=0)\n\
             \n"
        );
    }

    #[test]
    fn mntr_has_zookeepers_keys_in_its_order() {
        let monitor = Monitor {
            uptime: Duration::from_millis(12_345),
            watches: 4,
            ephemerals: 2,
            data_bytes: 100,
            sessions: 2,
            file_descriptors: Some((17, 1024)),
        };
        assert_eq!(
            mntr(&stats(), &monitor),
            "zk_version\t3.9.5-compatible session-server 0.1.0\n\
             zk_server_state\tstandalone\n\
             zk_avg_latency\t1.25\n\
             zk_max_latency\t8\n\
             zk_min_latency\t0\n\
             zk_packets_received\t42\n\
             zk_packets_sent\t41\n\
             zk_num_alive_connections\t3\n\
             zk_outstanding_requests\t0\n\
             zk_uptime\t12345\n\
             zk_znode_count\t5\n\
             zk_watch_count\t4\n\
             zk_ephemerals_count\t2\n\
             zk_approximate_data_size\t100\n\
             zk_global_sessions\t2\n\
             zk_local_sessions\t0\n\
             zk_open_file_descriptor_count\t17\n\
             zk_max_file_descriptor_count\t1024\n"
        );
        let elsewhere = Monitor {
            file_descriptors: None,
            ..monitor
        };
        assert!(!mntr(&stats(), &elsewhere).contains("file_descriptor"));
    }

    #[test]
    fn an_average_prints_as_a_java_double() {
        for (value, printed) in [(0.0, "0.0"), (2.0, "2.0"), (0.1234, "0.1234"), (1.5, "1.5")] {
            assert_eq!(java_double(value), printed);
        }
    }

    #[test]
    fn wchc_and_wchp_group_watches_by_session_and_by_path() {
        let pairs = vec![
            ("/b".to_owned(), 0x1a),
            ("/a".to_owned(), 0x1a),
            ("/a".to_owned(), 0x2b),
            ("/a".to_owned(), 0x1a),
        ];
        assert_eq!(
            watch_listing(pairs.clone(), false),
            "0x1a\n\t/a\n\t/b\n0x2b\n\t/a\n"
        );
        assert_eq!(
            watch_listing(pairs, true),
            "/a\n\t0x1a\n\t0x2b\n/b\n\t0x1a\n"
        );
    }

    #[test]
    fn wchs_envi_conf_and_dirs() {
        assert_eq!(
            wchs(2, 3, 5),
            "2 connections watching 3 paths\nTotal watches:5\n"
        );
        let env = Environment {
            version: "3.9.5-compatible session-server 0.1.0".to_owned(),
            host: "h".to_owned(),
            os: "Linux".to_owned(),
            arch: "x86_64".to_owned(),
            os_version: "6.1".to_owned(),
            user: "u".to_owned(),
            home: "/home/u".to_owned(),
            working_dir: "/srv".to_owned(),
        };
        let text = envi(&env);
        assert!(text.starts_with("Environment:\nzookeeper.version=3.9.5-compatible"));
        assert!(text.ends_with("user.dir=/srv\n"));
        let mut conf_values = Configuration {
            client_port: 2181,
            directories: Some(Directories {
                snapshots: PathBuf::from("/data/snapshots"),
                snapshots_bytes: 10,
                log: PathBuf::from("/data/log"),
                log_bytes: 20,
            }),
            tick: Duration::from_secs(2),
            max_connections_per_ip: 60,
            min_session_timeout: Duration::from_secs(4),
            max_session_timeout: Duration::from_secs(40),
            server_id: 1,
            peers: Vec::new(),
        };
        assert_eq!(
            conf(&conf_values),
            "clientPort=2181\n\
             secureClientPort=-1\n\
             dataDir=/data/snapshots\n\
             dataDirSize=10\n\
             dataLogDir=/data/log\n\
             dataLogSize=20\n\
             tickTime=2000\n\
             maxClientCnxns=60\n\
             minSessionTimeout=4000\n\
             maxSessionTimeout=40000\n\
             clientPortListenBacklog=-1\n\
             serverId=1\n"
        );
        conf_values.directories = None;
        conf_values.peers = vec![
            (1, "10.0.0.1:7190".to_owned()),
            (2, "10.0.0.2:7190".to_owned()),
        ];
        let text = conf(&conf_values);
        assert!(!text.contains("dataDir"));
        assert!(text.ends_with(
            "serverId=1\nmembership: \nserver.1=10.0.0.1:7190\nserver.2=10.0.0.2:7190\n"
        ));
        assert_eq!(dirs(10, 20), "datadir_size: 10\nlogdir_size: 20\n");
    }

    #[test]
    fn the_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63456                63456                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[test]
    fn the_version_lets_clients_parse_a_zookeeper_release() {
        // kazoo takes the digits and dots before anything else.
        let version = full_version();
        let digits: String = version
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        assert_eq!(digits, ZOOKEEPER_VERSION);
        assert!(version.ends_with(env!("CARGO_PKG_VERSION")));
    }
}
