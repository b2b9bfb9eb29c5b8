//! A ZooKeeper-style session server: sessions with negotiated timeouts and
//! bucketed expiry, and a namespace of persistent and ephemeral nodes with
//! one-shot watches, served over `session-wire`'s protocol.
//!
//! Where each concept lives: the session table, the data tree, the
//! transaction model (`prepare`, deterministic `apply`) and the watch rules
//! are `session-core`'s; this crate adds the I/O around them. A request's
//! bytes go through a protocol frontend (the v1 protobuf one, or ZooKeeper's
//! own protocol for ZooKeeper's clients, on a listener of its own) to a
//! generic connection; reads are answered from the local replica, writes are
//! prepared and then ordered and applied by an engine — openraft with its log
//! and snapshots on disk (the default, so a restart keeps every session and
//! node), or, with [`Storage::InMemory`], a single node in memory; the
//! watches they fire and the liveness of sessions are kept per server.
//!
//! Servers given [`ClusterConfig::peers`] form a replicated cluster (three or
//! five): every server accepts clients and answers reads from its own
//! replica, writes are forwarded to the leader, the leader alone expires
//! sessions, and a client whose server dies reattaches to another with the
//! same session.
//!
//! [`TlsConfig`] puts TLS (rustls) on every listener, with client
//! certificates when asked, mutual TLS between peers, and certificates
//! re-read when their files change ([`Server::reload_tls`]).
//!
//! ```no_run
//! use session_server::{Server, ServerConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! // On disk in ./session-data by default; Storage::InMemory keeps nothing.
//! let server = Server::start(ServerConfig::default()).await?;
//! println!("serving clients on {}", server.local_addr());
//! // ... until it is time to stop:
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admin;
mod auth;
mod config;
mod connection;
mod engine;
mod frontend;
mod mailbox;
mod metrics;
mod raft;
mod server;
mod state;
mod tls;
mod transport;

pub use config::{
    Args, ClusterConfig, ConfigError, DEFAULT_PEER_TLS_NAME, Limits, ListenAddr, LogFormat,
    ServerConfig, Storage, TlsConfig, parse_peers,
};
pub use metrics::{CloseReason, Metrics, OpKind};
pub use raft::{SnapshotError, StorageError};
pub use server::Server;
/// The limits on the data tree, from `session-core` (where the tree lives).
pub use session_core::TreeLimits;
pub use tls::TlsError;
