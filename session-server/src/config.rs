//! Server configuration: built-in defaults, an optional TOML file, and flags.
//!
//! Precedence is flag, then file, then default. [`ServerConfig::default`] is a
//! working single node on 127.0.0.1; tests start from it and set port 0.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use session_core::{ServerId, TimeoutPolicy};
use thiserror::Error;

use session_core::TreeLimits;

/// Why a configuration was refused. Each variant names the bad value.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// `--super-digest` is not `user:base64-sha1`.
    #[error("--super-digest {given:?} is not user:base64-sha1 (one colon)")]
    SuperDigest {
        /// What was given.
        given: String,
    },
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML for this server.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, with its line and column.
        source: Box<toml::de::Error>,
    },
    /// The server id is outside 1..=255.
    #[error("invalid server id: {0}")]
    ServerId(#[from] session_core::ServerIdError),
    /// The tick or session timeout bounds do not form a valid policy.
    #[error("invalid session timeouts: {0}")]
    Timeouts(#[from] session_core::TimeoutPolicyError),
    /// `--in-memory` and `--data-dir` were both given (the file and the flags
    /// together count).
    #[error("in-memory and data-dir exclude each other: choose one")]
    InMemoryWithDataDir,
    /// A limit that must be positive is zero.
    #[error("limit {name} must be at least 1, got 0")]
    ZeroLimit {
        /// The flag name of the limit.
        name: &'static str,
    },
    /// `--peers` is not a list of `ID=HOST:PORT`.
    #[error("invalid peers {given:?}: {detail} (expected ID=HOST:PORT,ID=HOST:PORT,...)")]
    Peers {
        /// The value given.
        given: String,
        /// What is wrong with it.
        detail: String,
    },
    /// `--peers` does not name this server.
    #[error("peers {given:?} do not include this server's id {id}")]
    NotAPeer {
        /// The value given.
        given: String,
        /// This server's id.
        id: u8,
    },
    /// A cluster was asked for with the state in memory only.
    #[error("a cluster (peers) needs its state on disk: give data-dir, not in-memory")]
    ClusterInMemory,
    /// A TLS setting was given without one it needs.
    #[error("{given} needs {missing} as well")]
    TlsIncomplete {
        /// The flag given.
        given: &'static str,
        /// The flag missing.
        missing: &'static str,
    },
    /// A cluster with TLS has no authority to check its peers' certificates
    /// against: servers talk to each other only over mutual TLS.
    #[error(
        "a cluster with TLS needs the authority its members' certificates chain to: give --peer-tls-ca FILE (or --tls-client-ca FILE)"
    )]
    PeerTlsNeedsCa,
    /// `--peer-tls-name` does not contain `{id}`.
    #[error("--peer-tls-name {given:?} must contain {{id}}, which is replaced by a member's id")]
    PeerTlsName {
        /// What was given.
        given: String,
    },
    /// The admin listens beyond loopback with nothing to authenticate its
    /// callers.
    #[error(
        "the admin listens on {addr}, beyond loopback, without authentication: give --admin-token-file FILE, or --tls-client-ca FILE (with --tls-cert and --tls-key) so callers need a certificate, or listen on a loopback address"
    )]
    AdminExposed {
        /// The admin's address.
        addr: SocketAddr,
    },
    /// The election timeout is too short for the heartbeat.
    #[error(
        "election-timeout-ms ({election_ms}) must be at least twice heartbeat-ms ({heartbeat_ms})"
    )]
    ElectionTimeout {
        /// The heartbeat interval.
        heartbeat_ms: u64,
        /// The election timeout.
        election_ms: u64,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Limits that protect the server from clients; each has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted or sent, in bytes. Default 1 MiB.
    pub max_frame_bytes: usize,
    /// Connections open at once, in total. Default 10,000.
    pub max_connections: usize,
    /// Connections open at once from one IP address. Default 1,000.
    pub max_connections_per_ip: usize,
    /// Time a new connection has to send its handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Requests one connection may have in flight (read, not yet answered on
    /// the wire). Past it, and while a frame's worth of replies waits to be
    /// written, the server reads nothing more from that connection: a client
    /// that pipelines faster than it reads is slowed by TCP, and the server
    /// holds at most this many requests per connection. Default 1,000.
    pub max_requests_in_flight: usize,
    /// Watches one session may hold (each kind on each path counts once).
    /// A read asking for one more is refused with `TOO_MANY_WATCHES`.
    /// Default 100,000.
    pub max_watches_per_session: usize,
    /// Paths one SetWatches request may name. Default 65,536, above what a
    /// 128 KiB batch of short paths (session-client's batches) holds.
    pub max_set_watches_paths: usize,
    /// Node paths, data sizes, ephemerals per session, node count and total
    /// data bytes, checked when a write is prepared.
    pub tree: TreeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1024 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            handshake_timeout: Duration::from_secs(5),
            max_requests_in_flight: 1_000,
            max_watches_per_session: 100_000,
            max_set_watches_paths: 65_536,
            tree: TreeLimits::default(),
        }
    }
}

/// Where the server keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In memory only: a restart forgets every session and node. For tests
    /// and benchmarks (`--in-memory`).
    InMemory,
    /// A Raft log and snapshots in this directory (created if missing):
    /// every write is on disk before it is acknowledged, and a restarted
    /// server keeps every session and node (`--data-dir`).
    Disk(PathBuf),
}

/// Everything a [`Server`](crate::Server) needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Client protocol address. Default 127.0.0.1:7181.
    pub listen: SocketAddr,
    /// Admin gRPC address. Default 127.0.0.1:7182; `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// Prometheus metrics address (`GET /metrics`). Default 127.0.0.1:7183;
    /// `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// ZooKeeper client protocol address (jute, for ZooKeeper's own
    /// clients: the Java client and zkCli.sh, kazoo, `zookeeper-client`),
    /// serving the same sessions and tree as `listen`. Default
    /// 127.0.0.1:2181, ZooKeeper's port; `None` disables it.
    pub zk_listen: Option<SocketAddr>,
    /// This server's id, the top byte of every session id it mints.
    pub server_id: ServerId,
    /// Tick and session timeout bounds (defaults: tick 2 s, 4 s..=40 s).
    pub timeouts: TimeoutPolicy,
    /// Protection limits.
    pub limits: Limits,
    /// How long a shutdown waits for connections to say goodbye and close;
    /// past it, whatever is left is dropped. Default 5 s.
    pub shutdown_grace: Duration,
    /// The cluster this server is a member of. Default: none, a server on
    /// its own.
    pub cluster: ClusterConfig,
    /// Where the state lives. Default: on disk in `./session-data`.
    pub storage: Storage,
    /// A snapshot is taken every this many transactions, and the log behind
    /// it purged, so a restart replays at most about this many. Default
    /// 100,000.
    pub snapshot_every: u64,
    /// How often the leader (or a server on its own) looks for containers
    /// left without children and TTL nodes past their TTL, and deletes them
    /// (ZooKeeper's `znode.container.checkIntervalMs`). Default 60 s.
    pub reap_interval: Duration,
    /// The digest id (`user:base64-sha1`) whose credential makes a
    /// connection a super user, which every access control list allows
    /// (ZooKeeper's `DigestAuthenticationProvider.superDigest`). Default:
    /// none.
    pub super_digest: Option<String>,
    /// TLS on every listener (client, ZooKeeper, admin, peer). Default:
    /// none, plain TCP.
    pub tls: Option<TlsConfig>,
    /// A file holding the bearer token every admin call must carry
    /// (`authorization: Bearer TOKEN`), read at start. Default: none.
    pub admin_token_file: Option<PathBuf>,
}

/// Certificates for TLS on every listener; re-read when the files change and
/// on [`Server::reload_tls`](crate::Server::reload_tls) (SIGHUP for the
/// binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// This server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The authorities client certificates must chain to (PEM). When given,
    /// every client listener and the admin require a client certificate.
    pub client_ca: Option<PathBuf>,
    /// The certificate this server shows its peers, if not `cert`.
    pub peer_cert: Option<PathBuf>,
    /// The key of `peer_cert`.
    pub peer_key: Option<PathBuf>,
    /// The authorities peer certificates chain to, if not `client_ca`.
    pub peer_ca: Option<PathBuf>,
    /// The DNS name member N's certificate must carry, with `{id}` standing
    /// for N. Default `server-{id}`.
    pub peer_name: String,
    /// How often the files are looked at for changes. Default 1 s.
    pub poll: Duration,
}

impl TlsConfig {
    /// TLS with this certificate and key, no client certificates asked,
    /// and the defaults for the rest.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            peer_cert: None,
            peer_key: None,
            peer_ca: None,
            peer_name: DEFAULT_PEER_TLS_NAME.to_owned(),
            poll: Duration::from_millis(DEFAULT_TLS_POLL_MS),
        }
    }

    /// The name member `id`'s certificate must carry.
    pub fn peer_name_of(&self, id: u64) -> String {
        self.peer_name.replace("{id}", &id.to_string())
    }
}

/// The name a member's certificate carries, by default.
pub const DEFAULT_PEER_TLS_NAME: &str = "server-{id}";
const DEFAULT_TLS_POLL_MS: u64 = 1000;

impl ServerConfig {
    /// Checks what the flags cannot check one by one: TLS for a cluster
    /// has an authority for peers, and an admin beyond loopback
    /// authenticates its callers. [`Server::start`](crate::Server::start)
    /// calls it too.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls {
            if self.cluster.is_cluster() && tls.peer_ca.is_none() && tls.client_ca.is_none() {
                return Err(ConfigError::PeerTlsNeedsCa);
            }
            if !tls.peer_name.contains("{id}") {
                return Err(ConfigError::PeerTlsName {
                    given: tls.peer_name.clone(),
                });
            }
        }
        if let Some(addr) = self.admin_listen {
            let certificates = self.tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
            if !addr.ip().is_loopback() && !certificates && self.admin_token_file.is_none() {
                return Err(ConfigError::AdminExposed { addr });
            }
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7181)),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7182))),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7183))),
            zk_listen: Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_ZK_PORT))),
            server_id: ServerId::new(1).expect("invariant: 1 is a valid server id"),
            timeouts: TimeoutPolicy::new(Duration::from_millis(DEFAULT_TICK_MS))
                .expect("invariant: the default tick is a valid policy"),
            limits: Limits::default(),
            shutdown_grace: Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS),
            cluster: ClusterConfig::default(),
            storage: Storage::Disk(PathBuf::from(DEFAULT_DATA_DIR)),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            reap_interval: Duration::from_millis(DEFAULT_REAP_INTERVAL_MS),
            super_digest: None,
            tls: None,
            admin_token_file: None,
        }
    }
}

/// How often containers and TTL nodes are looked at, by default.
const DEFAULT_REAP_INTERVAL_MS: u64 = 60_000;

/// The servers of a cluster and how this one reaches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Every voting member at the cluster's forming, and how this server
    /// reaches each one's peer listener (its own entry: where its own peer
    /// listener binds). Empty: a server on its own. Once the cluster is
    /// formed its membership lives in the data directory; these addresses
    /// still say how to reach each member.
    pub peers: BTreeMap<ServerId, String>,
    /// Where the peer listener binds, overriding this server's entry in
    /// `peers`. Without peers and without this, there is no peer listener.
    pub peer_listen: Option<SocketAddr>,
    /// Raft's heartbeat interval. Default 100 ms.
    pub heartbeat: Duration,
    /// Raft's shortest election timeout; each election waits a random time
    /// between it and twice it. Default 500 ms. Keep session timeouts well
    /// above it.
    pub election_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            peers: BTreeMap::new(),
            peer_listen: None,
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            election_timeout: Duration::from_millis(DEFAULT_ELECTION_TIMEOUT_MS),
        }
    }
}

impl ClusterConfig {
    /// Whether the server has peers (beyond itself).
    pub fn is_cluster(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Where the peer listener binds, if there is one: `peer_listen`, else
    /// this server's own entry in `peers` (which must then be an address).
    pub fn peer_listen_addr(&self, me: ServerId) -> Result<Option<SocketAddr>, ConfigError> {
        if let Some(addr) = self.peer_listen {
            return Ok(Some(addr));
        }
        match self.peers.get(&me) {
            None => Ok(None),
            Some(own) => own.parse().map(Some).map_err(|_| ConfigError::Peers {
                given: own.clone(),
                detail: format!(
                    "server {me}'s own entry must be an IP:PORT to listen on, or give peer-listen"
                ),
            }),
        }
    }
}

/// Parses `--peers`: `ID=HOST:PORT,ID=HOST:PORT,...`.
pub fn parse_peers(given: &str) -> Result<BTreeMap<ServerId, String>, ConfigError> {
    let invalid = |detail: String| ConfigError::Peers {
        given: given.to_owned(),
        detail,
    };
    let mut peers = BTreeMap::new();
    for entry in given
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (id, address) = entry
            .split_once('=')
            .ok_or_else(|| invalid(format!("{entry:?} has no '='")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{:?} is not a server id", id.trim())))?;
        let id = ServerId::new(id).map_err(|err| invalid(err.to_string()))?;
        let address = address.trim();
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| invalid(format!("{address:?} has no port")))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid(format!("{address:?} is not HOST:PORT")));
        }
        if peers.insert(id, address.to_owned()).is_some() {
            return Err(invalid(format!("server {id} is named twice")));
        }
    }
    if peers.is_empty() {
        return Err(invalid("no peer is named".to_owned()));
    }
    Ok(peers)
}

const DEFAULT_DATA_DIR: &str = "./session-data";
const DEFAULT_SNAPSHOT_EVERY: u64 = 100_000;

const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5000;

const DEFAULT_TICK_MS: u64 = 2000;

const DEFAULT_HEARTBEAT_MS: u64 = 100;
const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 500;

const DEFAULT_ZK_PORT: u16 = 2181;

/// A listener's setting: an address, or `off` for none (`--zk-listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ListenAddr {
    /// Listen on this address.
    On(SocketAddr),
    /// Do not listen.
    Off,
}

impl ListenAddr {
    /// The address, `None` for `off`.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            ListenAddr::On(addr) => Some(addr),
            ListenAddr::Off => None,
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "off" {
            return Ok(ListenAddr::Off);
        }
        text.parse().map(ListenAddr::On).map_err(|_| {
            format!("expected an address such as 127.0.0.1:2181, or off; got {text:?}")
        })
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::On(addr) => addr.fmt(f),
            ListenAddr::Off => f.write_str("off"),
        }
    }
}

/// Command-line flags of the `session-server` binary.
///
/// Every flag may also be set in the `--config` TOML file under the same name
/// (kebab-case, without the dashes); a flag overrides the file.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(
    name = "session-server",
    version,
    about = "A ZooKeeper-style session server"
)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Args {
    /// TOML file with any of the settings below; flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Client protocol address [default: 127.0.0.1:7181].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin gRPC address [default: 127.0.0.1:7182].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Prometheus metrics address, served at /metrics [default: 127.0.0.1:7183].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// ZooKeeper client protocol address, for ZooKeeper's own clients, or
    /// `off` [default: 127.0.0.1:2181].
    #[arg(long, value_name = "ADDR|off")]
    pub zk_listen: Option<ListenAddr>,
    /// Server id, 1..=255: the top byte of every session id, and this
    /// server's node id in its cluster [default: 1].
    #[arg(long, visible_alias = "node-id", value_name = "ID")]
    #[serde(alias = "node-id")]
    pub server_id: Option<u32>,
    /// The cluster's servers, ID=HOST:PORT of each one's peer listener,
    /// this one included (e.g. 1=10.0.0.1:7184,2=10.0.0.2:7184,3=10.0.0.3:7184).
    /// The lowest id forms the cluster on first start; the membership is
    /// then kept in the data directory. Needs data-dir.
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub peers: Option<String>,
    /// Where the peer (Raft) listener binds [default: this server's entry
    /// in peers, e.g. 127.0.0.1:7184; none without peers].
    #[arg(long, value_name = "ADDR")]
    pub peer_listen: Option<SocketAddr>,
    /// Raft heartbeat interval in milliseconds [default: 100].
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Shortest Raft election timeout in milliseconds; an election waits a
    /// random time up to twice it. Keep session timeouts well above it
    /// [default: 500].
    #[arg(long, value_name = "MS")]
    pub election_timeout_ms: Option<u64>,
    /// Tick in milliseconds: expiry granularity [default: 2000].
    #[arg(long, value_name = "MS")]
    pub tick_ms: Option<u64>,
    /// Smallest session timeout granted [default: 2 × tick].
    #[arg(long, value_name = "MS")]
    pub min_session_timeout_ms: Option<u64>,
    /// Largest session timeout granted [default: 20 × tick].
    #[arg(long, value_name = "MS")]
    pub max_session_timeout_ms: Option<u64>,
    /// Connections open at once, in total [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections open at once from one IP address [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Largest frame in bytes, either direction [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Milliseconds a new connection has to send its handshake [default: 5000].
    #[arg(long, value_name = "MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// Ephemeral nodes one session may own [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_ephemerals_per_session: Option<usize>,
    /// Longest node path in bytes [default: 1024].
    #[arg(long, value_name = "BYTES")]
    pub max_path_bytes: Option<usize>,
    /// Largest node data in bytes [default: 524288].
    #[arg(long, value_name = "BYTES")]
    pub max_data_bytes: Option<usize>,
    /// Nodes in the namespace, the root included [default: 1000000].
    #[arg(long, value_name = "N")]
    pub max_nodes: Option<usize>,
    /// Bytes of node data in the whole namespace [default: 1073741824].
    #[arg(long, value_name = "BYTES")]
    pub max_total_data_bytes: Option<usize>,
    /// Requests one connection may have in flight before the server stops
    /// reading it [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_requests_in_flight: Option<usize>,
    /// Watches one session may hold [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_watches_per_session: Option<usize>,
    /// Paths one SetWatches request may name [default: 65536].
    #[arg(long, value_name = "N")]
    pub max_set_watches_paths: Option<usize>,
    /// Milliseconds a shutdown waits for connections to close before
    /// dropping them [default: 5000].
    #[arg(long, value_name = "MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Directory of the Raft log and snapshots, created if missing
    /// [default: ./session-data].
    #[arg(long, value_name = "DIR", conflicts_with = "in_memory")]
    pub data_dir: Option<PathBuf>,
    /// Keep the state in memory only: a restart forgets every session and
    /// node (for tests and benchmarks).
    #[arg(long)]
    #[serde(default)]
    pub in_memory: bool,
    /// Take a snapshot every this many transactions and purge the log behind
    /// it [default: 100000].
    #[arg(long, value_name = "N")]
    pub snapshot_every: Option<u64>,
    /// Milliseconds between two looks for empty containers and expired TTL
    /// nodes to delete [default: 60000].
    #[arg(long, value_name = "MS")]
    pub reap_interval_ms: Option<u64>,
    /// The digest id user:base64-sha1 of the super user, whom every ACL
    /// allows (e.g. super:D/InIHSb7yEEbrWz8b9l71RjZJU= for the credential
    /// super:test) [default: none].
    #[arg(long, value_name = "ID")]
    pub super_digest: Option<String>,
    /// TLS: this server's certificate chain (PEM) for every listener
    /// (client, ZooKeeper, admin, peer) [default: none, plain TCP].
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// TLS: the authority client certificates must chain to (PEM); when
    /// given, every client and admin caller needs a certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// TLS: the certificate shown to peers [default: --tls-cert].
    #[arg(long, value_name = "FILE")]
    pub peer_tls_cert: Option<PathBuf>,
    /// TLS: the key of --peer-tls-cert [default: --tls-key].
    #[arg(long, value_name = "FILE")]
    pub peer_tls_key: Option<PathBuf>,
    /// TLS: the authority peer certificates chain to [default:
    /// --tls-client-ca].
    #[arg(long, value_name = "FILE")]
    pub peer_tls_ca: Option<PathBuf>,
    /// TLS: the DNS name member N's certificate must carry, {id} standing
    /// for N [default: server-{id}].
    #[arg(long, value_name = "TEMPLATE")]
    pub peer_tls_name: Option<String>,
    /// TLS: milliseconds between two looks at the certificate files for
    /// changes [default: 1000].
    #[arg(long, value_name = "MS")]
    pub tls_poll_ms: Option<u64>,
    /// A file holding the bearer token every admin call must carry
    /// (authorization: Bearer TOKEN) [default: none].
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Log line format; the RUST_LOG variable sets the filter [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl Args {
    /// Reads the `--config` file, if any, and lets the flags override it.
    pub fn merged(self) -> Result<Args, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = Args::from_file(&path)?;
        Ok(self.over(file))
    }

    fn from_file(path: &Path) -> Result<Args, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// `self`'s settings where given, `base`'s otherwise.
    fn over(self, base: Args) -> Args {
        Args {
            config: self.config,
            listen: self.listen.or(base.listen),
            admin_listen: self.admin_listen.or(base.admin_listen),
            metrics_listen: self.metrics_listen.or(base.metrics_listen),
            zk_listen: self.zk_listen.or(base.zk_listen),
            server_id: self.server_id.or(base.server_id),
            peers: self.peers.or(base.peers),
            peer_listen: self.peer_listen.or(base.peer_listen),
            heartbeat_ms: self.heartbeat_ms.or(base.heartbeat_ms),
            election_timeout_ms: self.election_timeout_ms.or(base.election_timeout_ms),
            tick_ms: self.tick_ms.or(base.tick_ms),
            min_session_timeout_ms: self.min_session_timeout_ms.or(base.min_session_timeout_ms),
            max_session_timeout_ms: self.max_session_timeout_ms.or(base.max_session_timeout_ms),
            max_connections: self.max_connections.or(base.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(base.max_connections_per_ip),
            max_frame_bytes: self.max_frame_bytes.or(base.max_frame_bytes),
            handshake_timeout_ms: self.handshake_timeout_ms.or(base.handshake_timeout_ms),
            max_ephemerals_per_session: self
                .max_ephemerals_per_session
                .or(base.max_ephemerals_per_session),
            max_path_bytes: self.max_path_bytes.or(base.max_path_bytes),
            max_data_bytes: self.max_data_bytes.or(base.max_data_bytes),
            max_nodes: self.max_nodes.or(base.max_nodes),
            max_total_data_bytes: self.max_total_data_bytes.or(base.max_total_data_bytes),
            max_requests_in_flight: self.max_requests_in_flight.or(base.max_requests_in_flight),
            max_watches_per_session: self
                .max_watches_per_session
                .or(base.max_watches_per_session),
            max_set_watches_paths: self.max_set_watches_paths.or(base.max_set_watches_paths),
            shutdown_grace_ms: self.shutdown_grace_ms.or(base.shutdown_grace_ms),
            data_dir: self.data_dir.or(base.data_dir),
            in_memory: self.in_memory || base.in_memory,
            snapshot_every: self.snapshot_every.or(base.snapshot_every),
            reap_interval_ms: self.reap_interval_ms.or(base.reap_interval_ms),
            super_digest: self.super_digest.or(base.super_digest),
            tls_cert: self.tls_cert.or(base.tls_cert),
            tls_key: self.tls_key.or(base.tls_key),
            tls_client_ca: self.tls_client_ca.or(base.tls_client_ca),
            peer_tls_cert: self.peer_tls_cert.or(base.peer_tls_cert),
            peer_tls_key: self.peer_tls_key.or(base.peer_tls_key),
            peer_tls_ca: self.peer_tls_ca.or(base.peer_tls_ca),
            peer_tls_name: self.peer_tls_name.or(base.peer_tls_name),
            tls_poll_ms: self.tls_poll_ms.or(base.tls_poll_ms),
            admin_token_file: self.admin_token_file.or(base.admin_token_file),
            log_format: self.log_format.or(base.log_format),
        }
    }

    /// The log format chosen, or the default.
    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or_default()
    }

    /// Resolves the settings against the defaults and validates them.
    pub fn into_config(self) -> Result<ServerConfig, ConfigError> {
        let defaults = ServerConfig::default();
        let tls = self.tls()?;
        let server_id = match self.server_id {
            None => defaults.server_id,
            Some(raw) => ServerId::new(u64::from(raw))?,
        };
        let tick = Duration::from_millis(self.tick_ms.unwrap_or(DEFAULT_TICK_MS));
        let timeouts = match (self.min_session_timeout_ms, self.max_session_timeout_ms) {
            (None, None) => TimeoutPolicy::new(tick)?,
            (min, max) => TimeoutPolicy::new(tick)?.with_bounds(
                min.map_or(tick * 2, Duration::from_millis),
                max.map_or(tick * 20, Duration::from_millis),
            )?,
        };
        let mut limits = defaults.limits;
        limits.max_connections = positive(
            self.max_connections,
            limits.max_connections,
            "max-connections",
        )?;
        limits.max_connections_per_ip = positive(
            self.max_connections_per_ip,
            limits.max_connections_per_ip,
            "max-connections-per-ip",
        )?;
        limits.max_frame_bytes = positive(
            self.max_frame_bytes,
            limits.max_frame_bytes,
            "max-frame-bytes",
        )?;
        limits.handshake_timeout = positive_ms(
            self.handshake_timeout_ms,
            limits.handshake_timeout,
            "handshake-timeout-ms",
        )?;
        limits.tree.max_ephemerals_per_session = positive(
            self.max_ephemerals_per_session,
            limits.tree.max_ephemerals_per_session,
            "max-ephemerals-per-session",
        )?;
        limits.tree.max_path_bytes = positive(
            self.max_path_bytes,
            limits.tree.max_path_bytes,
            "max-path-bytes",
        )?;
        limits.tree.max_data_bytes = positive(
            self.max_data_bytes,
            limits.tree.max_data_bytes,
            "max-data-bytes",
        )?;
        limits.tree.max_nodes = positive(self.max_nodes, limits.tree.max_nodes, "max-nodes")?;
        limits.tree.max_total_data_bytes = positive(
            self.max_total_data_bytes,
            limits.tree.max_total_data_bytes,
            "max-total-data-bytes",
        )?;
        limits.max_requests_in_flight = positive(
            self.max_requests_in_flight,
            limits.max_requests_in_flight,
            "max-requests-in-flight",
        )?;
        limits.max_watches_per_session = positive(
            self.max_watches_per_session,
            limits.max_watches_per_session,
            "max-watches-per-session",
        )?;
        limits.max_set_watches_paths = positive(
            self.max_set_watches_paths,
            limits.max_set_watches_paths,
            "max-set-watches-paths",
        )?;
        let shutdown_grace = positive_ms(
            self.shutdown_grace_ms,
            defaults.shutdown_grace,
            "shutdown-grace-ms",
        )?;
        let storage = match (self.in_memory, self.data_dir) {
            (true, Some(_)) => return Err(ConfigError::InMemoryWithDataDir),
            (true, None) => Storage::InMemory,
            (false, Some(dir)) => Storage::Disk(dir),
            (false, None) => defaults.storage,
        };
        let snapshot_every = positive(
            self.snapshot_every,
            defaults.snapshot_every,
            "snapshot-every",
        )?;
        let reap_interval = positive_ms(
            self.reap_interval_ms,
            defaults.reap_interval,
            "reap-interval-ms",
        )?;
        if let Some(digest) = &self.super_digest {
            if digest.matches(':').count() != 1 {
                return Err(ConfigError::SuperDigest {
                    given: digest.clone(),
                });
            }
        }
        let mut cluster = defaults.cluster;
        if let Some(given) = &self.peers {
            cluster.peers = parse_peers(given)?;
            if !cluster.peers.contains_key(&server_id) {
                return Err(ConfigError::NotAPeer {
                    given: given.clone(),
                    id: server_id.get(),
                });
            }
            if storage == Storage::InMemory {
                return Err(ConfigError::ClusterInMemory);
            }
        }
        cluster.peer_listen = self.peer_listen;
        cluster.heartbeat = positive_ms(self.heartbeat_ms, cluster.heartbeat, "heartbeat-ms")?;
        cluster.election_timeout = positive_ms(
            self.election_timeout_ms,
            cluster.election_timeout,
            "election-timeout-ms",
        )?;
        if cluster.election_timeout < cluster.heartbeat * 2 {
            return Err(ConfigError::ElectionTimeout {
                heartbeat_ms: cluster.heartbeat.as_millis() as u64,
                election_ms: cluster.election_timeout.as_millis() as u64,
            });
        }
        cluster.peer_listen_addr(server_id)?;
        let config = ServerConfig {
            listen: self.listen.unwrap_or(defaults.listen),
            admin_listen: self.admin_listen.or(defaults.admin_listen),
            metrics_listen: self.metrics_listen.or(defaults.metrics_listen),
            zk_listen: self.zk_listen.map_or(defaults.zk_listen, ListenAddr::addr),
            server_id,
            timeouts,
            limits,
            shutdown_grace,
            cluster,
            storage,
            snapshot_every,
            reap_interval,
            super_digest: self.super_digest,
            tls,
            admin_token_file: self.admin_token_file,
        };
        config.check()?;
        Ok(config)
    }

    /// The TLS settings, if TLS was asked for; refuses half of a pair.
    fn tls(&self) -> Result<Option<TlsConfig>, ConfigError> {
        let incomplete = |given, missing| Err(ConfigError::TlsIncomplete { given, missing });
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (Some(_), None) => return incomplete("--tls-cert", "--tls-key"),
            (None, Some(_)) => return incomplete("--tls-key", "--tls-cert"),
            (None, None) => {
                let dependent = [
                    (self.tls_client_ca.is_some(), "--tls-client-ca"),
                    (self.peer_tls_cert.is_some(), "--peer-tls-cert"),
                    (self.peer_tls_key.is_some(), "--peer-tls-key"),
                    (self.peer_tls_ca.is_some(), "--peer-tls-ca"),
                    (self.peer_tls_name.is_some(), "--peer-tls-name"),
                ];
                return match dependent.iter().find(|(given, _)| *given) {
                    Some((_, flag)) => incomplete(flag, "--tls-cert and --tls-key"),
                    None => Ok(None),
                };
            }
        };
        match (&self.peer_tls_cert, &self.peer_tls_key) {
            (Some(_), None) => return incomplete("--peer-tls-cert", "--peer-tls-key"),
            (None, Some(_)) => return incomplete("--peer-tls-key", "--peer-tls-cert"),
            _ => {}
        }
        let defaults = TlsConfig::new(cert, key);
        Ok(Some(TlsConfig {
            client_ca: self.tls_client_ca.clone(),
            peer_cert: self.peer_tls_cert.clone(),
            peer_key: self.peer_tls_key.clone(),
            peer_ca: self.peer_tls_ca.clone(),
            peer_name: self
                .peer_tls_name
                .clone()
                .unwrap_or(defaults.peer_name.clone()),
            poll: positive_ms(self.tls_poll_ms, defaults.poll, "tls-poll-ms")?,
            ..defaults
        }))
    }
}

/// A setting that must not be zero: the value given, or the default.
fn positive<T: PartialEq + Default>(
    value: Option<T>,
    default: T,
    name: &'static str,
) -> Result<T, ConfigError> {
    match value {
        Some(value) if value == T::default() => Err(ConfigError::ZeroLimit { name }),
        Some(value) => Ok(value),
        None => Ok(default),
    }
}

/// A duration given in milliseconds that must not be zero.
fn positive_ms(
    value: Option<u64>,
    default: Duration,
    name: &'static str,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        ms => positive(ms, 0, name).map(Duration::from_millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "session-server-config-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("temp file writable");
        path
    }

    #[test]
    fn no_flags_give_the_documented_defaults() {
        let config = Args::default().into_config().expect("defaults are valid");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 7181)));
        assert_eq!(
            config.admin_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 7182)))
        );
        assert_eq!(
            config.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 7183)))
        );
        assert_eq!(
            config.zk_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 2181)))
        );
        assert_eq!(config.server_id.get(), 1);
        // Reference defaults: tick 2000 ms, min 2×tick, max 20×tick.
        assert_eq!(config.timeouts.tick(), Duration::from_millis(2000));
        assert_eq!(config.timeouts.min(), Duration::from_millis(4000));
        assert_eq!(config.timeouts.max(), Duration::from_millis(40_000));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.shutdown_grace, Duration::from_secs(5));
        assert_eq!(
            config.storage,
            Storage::Disk(PathBuf::from("./session-data"))
        );
        assert_eq!(config.snapshot_every, 100_000);
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let path = file_with(
            "precedence",
            "listen = \"127.0.0.1:9000\"\ntick-ms = 1000\nmax-connections = 7\nlog-format = \"json\"\n",
        );
        let args = Args::parse_from([
            "session-server",
            "--config",
            path.to_str().expect("utf-8 temp path"),
            "--listen",
            "127.0.0.1:9001",
        ]);
        let args = args.merged().expect("file readable");
        assert_eq!(args.log_format(), LogFormat::Json);
        let config = args.into_config().expect("valid");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9001)));
        assert_eq!(config.timeouts.tick(), Duration::from_millis(1000));
        assert_eq!(config.timeouts.min(), Duration::from_millis(2000));
        assert_eq!(config.limits.max_connections, 7);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn bad_settings_are_refused_with_what_was_wrong() {
        let refused = |flags: &[&str]| {
            let mut argv = vec!["session-server"];
            argv.extend_from_slice(flags);
            Args::parse_from(argv)
                .into_config()
                .expect_err("invalid")
                .to_string()
        };
        assert!(refused(&["--server-id", "0"]).contains("server id"));
        assert!(refused(&["--server-id", "256"]).contains("server id"));
        assert!(refused(&["--tick-ms", "0"]).contains("session timeouts"));
        let min_above_max = refused(&[
            "--min-session-timeout-ms",
            "9000",
            "--max-session-timeout-ms",
            "5000",
        ]);
        assert!(
            min_above_max.contains("session timeouts"),
            "{min_above_max}"
        );
        assert_eq!(
            refused(&["--max-connections", "0"]),
            "limit max-connections must be at least 1, got 0"
        );
    }

    /// The configuration the command line `argv` (and any file it names)
    /// gives, or the error as text.
    fn config(argv: &[&str]) -> Result<ServerConfig, String> {
        let mut all = vec!["session-server"];
        all.extend_from_slice(argv);
        Args::try_parse_from(all)
            .map_err(|err| err.to_string())
            .and_then(|args| args.merged().map_err(|err| err.to_string()))
            .and_then(|args| args.into_config().map_err(|err| err.to_string()))
    }

    #[test]
    fn zk_listen_takes_an_address_or_off_from_flags_and_file() {
        let on = config(&["--zk-listen", "127.0.0.1:2999"]).expect("an address");
        assert_eq!(on.zk_listen, Some(SocketAddr::from(([127, 0, 0, 1], 2999))));
        let off = config(&["--zk-listen", "off"]).expect("off");
        assert_eq!(off.zk_listen, None);
        let bad = config(&["--zk-listen", "nowhere"]).expect_err("not an address");
        assert!(bad.contains("127.0.0.1:2181, or off"), "{bad}");

        let path = file_with("zk-listen", "zk-listen = \"off\"\n");
        let path = path.to_str().expect("utf-8 temp path");
        assert_eq!(config(&["--config", path]).expect("file").zk_listen, None);
        let flag_wins =
            config(&["--config", path, "--zk-listen", "127.0.0.1:2998"]).expect("flag over file");
        assert_eq!(
            flag_wins.zk_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 2998)))
        );
        let _ = std::fs::remove_file(path);
        let path = file_with("zk-listen-bad", "zk-listen = \"2181\"\n");
        let bad = config(&["--config", path.to_str().expect("utf-8")]).expect_err("bad file");
        assert!(bad.contains("zk-listen") || bad.contains("or off"), "{bad}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn peers_form_a_cluster_from_flags_or_the_file() {
        let peers = "1=127.0.0.1:7184,2=10.0.0.2:7184,3=node-3.example:7184";
        let two = config(&["--node-id", "2", "--peers", peers]).expect("a cluster");
        assert_eq!(two.server_id.get(), 2);
        assert_eq!(two.cluster.peers.len(), 3);
        assert_eq!(
            two.cluster.peers[&ServerId::new(3).expect("id")],
            "node-3.example:7184"
        );
        assert_eq!(
            two.cluster
                .peer_listen_addr(two.server_id)
                .expect("own entry"),
            Some(SocketAddr::from(([10, 0, 0, 2], 7184)))
        );
        assert_eq!(two.cluster.heartbeat, Duration::from_millis(100));
        assert_eq!(two.cluster.election_timeout, Duration::from_millis(500));
        // Its own entry a host name: it must say where to listen.
        let three = config(&["--node-id", "3", "--peers", peers]).expect_err("no address");
        assert!(three.contains("peer-listen"), "{three}");
        let listen = config(&[
            "--node-id",
            "3",
            "--peers",
            peers,
            "--peer-listen",
            "0.0.0.0:7184",
        ])
        .expect("peer-listen given");
        assert_eq!(
            listen
                .cluster
                .peer_listen_addr(listen.server_id)
                .expect("given"),
            Some(SocketAddr::from(([0, 0, 0, 0], 7184)))
        );
        // No peers: a server on its own, without a peer listener.
        let alone = config(&[]).expect("defaults");
        assert!(!alone.cluster.is_cluster());
        assert_eq!(
            alone
                .cluster
                .peer_listen_addr(alone.server_id)
                .expect("none"),
            None
        );

        for (given, expected) in [
            ("1=127.0.0.1:1,1=127.0.0.1:2", "named twice"),
            ("1:127.0.0.1:1", "has no '='"),
            ("x=127.0.0.1:1", "not a server id"),
            ("0=127.0.0.1:1", "server id"),
            ("1=127.0.0.1", "has no port"),
            ("1=127.0.0.1:99999", "is not HOST:PORT"),
            ("1=:80", "is not HOST:PORT"),
            (",", "no peer is named"),
        ] {
            let err = config(&["--peers", given]).expect_err(given);
            assert!(err.contains(expected), "{given}: {err}");
        }
        let err = config(&["--node-id", "4", "--peers", peers]).expect_err("not a peer");
        assert!(err.contains("do not include this server's id 4"), "{err}");
        let err = config(&["--peers", peers, "--in-memory"]).expect_err("in memory");
        assert!(err.contains("needs its state on disk"), "{err}");
        let err = config(&["--heartbeat-ms", "300", "--election-timeout-ms", "500"])
            .expect_err("too short");
        assert!(err.contains("at least twice heartbeat-ms"), "{err}");

        let path = file_with(
            "peers",
            "node-id = 2\npeers = \"1=127.0.0.1:7184,2=127.0.0.1:7284\"\nelection-timeout-ms = 800\n",
        );
        let from_file =
            config(&["--config", path.to_str().expect("utf-8")]).expect("peers from the file");
        assert_eq!(from_file.server_id.get(), 2);
        assert_eq!(from_file.cluster.peers.len(), 2);
        assert_eq!(
            from_file.cluster.election_timeout,
            Duration::from_millis(800)
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let path = file_with("unknown", "tick-ms = 1000\ntick_ms = 5\n");
        let err = Args::parse_from(["session-server", "--config", path.to_str().expect("utf-8")])
            .merged()
            .expect_err("unknown key");
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(err.to_string().contains("tick_ms"), "{err}");
        let _ = std::fs::remove_file(path);
        let missing = Args::parse_from(["session-server", "--config", "/nonexistent/session.toml"])
            .merged()
            .expect_err("missing file");
        assert!(matches!(missing, ConfigError::Read { .. }));
    }

    #[test]
    fn tls_flags_come_in_pairs_and_need_the_certificate() {
        let half = Args {
            tls_cert: Some(PathBuf::from("server.pem")),
            ..Args::default()
        };
        let err = half.into_config().expect_err("no key");
        assert!(err.to_string().contains("--tls-key"), "{err}");
        let orphan = Args {
            tls_client_ca: Some(PathBuf::from("ca.pem")),
            ..Args::default()
        };
        let err = orphan.into_config().expect_err("no certificate");
        assert!(
            err.to_string().contains("--tls-cert and --tls-key"),
            "{err}"
        );
        let peer_half = Args {
            tls_cert: Some(PathBuf::from("server.pem")),
            tls_key: Some(PathBuf::from("server.key")),
            peer_tls_cert: Some(PathBuf::from("peer.pem")),
            ..Args::default()
        };
        let err = peer_half.into_config().expect_err("no peer key");
        assert!(err.to_string().contains("--peer-tls-key"), "{err}");
    }

    #[test]
    fn tls_settings_come_from_the_file_and_default_the_rest() {
        let path = file_with(
            "tls",
            "tls-cert = \"s.pem\"\ntls-key = \"s.key\"\ntls-client-ca = \"ca.pem\"\ntls-poll-ms = 250\n",
        );
        let config = Args {
            config: Some(path),
            ..Args::default()
        }
        .merged()
        .and_then(Args::into_config)
        .expect("valid");
        let tls = config.tls.expect("TLS on");
        assert_eq!(tls.cert, PathBuf::from("s.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(tls.poll, Duration::from_millis(250));
        assert_eq!(tls.peer_name, "server-{id}");
        assert_eq!(tls.peer_name_of(3), "server-3");
    }

    #[test]
    fn a_tls_cluster_needs_an_authority_for_its_peers() {
        let args = || Args {
            server_id: Some(1),
            peers: Some("1=127.0.0.1:7190,2=127.0.0.1:7290".to_owned()),
            data_dir: Some(PathBuf::from("data")),
            tls_cert: Some(PathBuf::from("s.pem")),
            tls_key: Some(PathBuf::from("s.key")),
            ..Args::default()
        };
        let err = args().into_config().expect_err("no authority");
        assert!(matches!(err, ConfigError::PeerTlsNeedsCa), "{err}");
        let with_ca = Args {
            peer_tls_ca: Some(PathBuf::from("ca.pem")),
            ..args()
        };
        with_ca.into_config().expect("an authority for peers");
        let bad_name = Args {
            peer_tls_ca: Some(PathBuf::from("ca.pem")),
            peer_tls_name: Some("member".to_owned()),
            ..args()
        };
        let err = bad_name.into_config().expect_err("no {id}");
        assert!(matches!(err, ConfigError::PeerTlsName { .. }), "{err}");
    }

    #[test]
    fn an_admin_beyond_loopback_needs_a_token_or_client_certificates() {
        let exposed = || Args {
            admin_listen: Some(SocketAddr::from(([0, 0, 0, 0], 7182))),
            ..Args::default()
        };
        let err = exposed().into_config().expect_err("unauthenticated");
        assert!(matches!(err, ConfigError::AdminExposed { .. }), "{err}");
        Args {
            admin_token_file: Some(PathBuf::from("token")),
            ..exposed()
        }
        .into_config()
        .expect("a token will do");
        Args {
            tls_cert: Some(PathBuf::from("s.pem")),
            tls_key: Some(PathBuf::from("s.key")),
            tls_client_ca: Some(PathBuf::from("ca.pem")),
            ..exposed()
        }
        .into_config()
        .expect("client certificates will do");
    }
}
