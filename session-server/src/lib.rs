//! A ZooKeeper-style session server: sessions with negotiated timeouts and
//! bucketed expiry, and a namespace of persistent and ephemeral nodes with
//! one-shot watches, served over `session-wire`'s protocol.
//!
//! ```no_run
//! use session_server::{Server, ServerConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::start(ServerConfig::default()).await?;
//! println!("serving clients on {}", server.local_addr());
//! // ... until it is time to stop:
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admin;
mod config;
mod connection;
mod convert;
mod metrics;
mod namespace;
mod server;
mod state;

pub use config::{Args, ConfigError, Limits, LogFormat, ServerConfig};
pub use metrics::{CloseReason, Metrics, OpKind};
pub use namespace::{
    CreateMode, Namespace, NamespaceError, NamespaceLimits, Stat, WatchEvent, WatchEventKind,
    Written,
};
pub use server::Server;
