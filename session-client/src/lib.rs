//! Client for the session service: a session that survives server failures,
//! its state as a `watch` value and an event stream, and ZooKeeper's
//! namespace operations (persistent, ephemeral, container and TTL nodes,
//! access control lists and credentials, multi and multi-read, one-shot and
//! persistent watches).
//!
//! ```no_run
//! use std::time::Duration;
//! use session_client::{Client, CreateMode, State};
//!
//! # async fn run() -> Result<(), session_client::Error> {
//! let client = Client::builder()
//!     .servers("127.0.0.1:7181,127.0.0.1:7281/app")
//!     .session_timeout(Duration::from_secs(6))
//!     .connect()
//!     .await?;
//!
//! // Register this instance: the node goes when the session does.
//! if client.exists("/services").await?.is_none() {
//!     client.create("/services", b"", CreateMode::Persistent).await?;
//! }
//! let me = client
//!     .create("/services/web-", b"10.0.0.7:8080", CreateMode::EphemeralSequential)
//!     .await?;
//! println!("registered as {me}");
//!
//! // Watch a config node.
//! let (config, _stat, changed) = client.get_and_watch("/services").await?;
//! println!("config: {config:?}");
//! let event = changed.await?;
//! println!("{} {}", event.kind, event.path);
//!
//! // Stop trusting locks while suspended.
//! let mut state = client.state();
//! while state.changed().await.is_ok() {
//!     if *state.borrow() == State::Suspended {
//!         println!("suspended: the session may be lost");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # States
//!
//! ```text
//! NotConnected ─▶ Connecting ─▶ Connected ◀──────▶ Suspended ─▶ Expired
//!                     │             │                   │
//!                     └─────────────┴── close() ────────┴─▶ Closed
//!        handshake refused: Expired or AuthFailed (from any live state)
//! ```
//!
//! - `Connected`: a server holds the session and answers.
//! - `Suspended`: nothing heard for 2/3 of the timeout, or the connection
//!   broke; the client tries the next server with the same session. Calls
//!   fail with [`Error::ConnectionLoss`]; do not trust locks.
//! - `Expired`: a server said so, or no server answered for 4/3 of the
//!   timeout. Every call fails with [`Error::SessionExpired`]: build a new
//!   client.
//! - `Closed` after [`Client::close`]; `AuthFailed` when a server refused the
//!   password.
//!
//! All timing and failover decisions are made by the sans-IO state machine
//! `session_core::ClientSession`; this crate moves its bytes and time.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod driver;
mod error;
mod ops;
mod types;
mod watches;

pub use client::{Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SESSION_TIMEOUT};
pub use error::{Error, MultiError};
pub use ops::{CreateOptions, Op, OpOutcome, ReadOp, ReadOutcome};
// Node kinds, node stats, watch event kinds, access control lists and
// watcher types are session-core's: one definition for the server and the
// client.
pub use session_core::{Acl, Id, WatcherType, perms};
pub use session_core::{CreateMode, EventKind, Stat};
pub use session_core::{SessionId, SessionPassword};
pub use types::{PersistentWatch, State, StateEvents, Watch, WatchedEvent};
