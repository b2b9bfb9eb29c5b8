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
//!   client, or let [`ClientBuilder::auto_renew`] open a new session.
//! - `Closed` after [`Client::close`]; `AuthFailed` when a server refused the
//!   password.
//!
//! One event loop owns the socket's reads, its writes and the timers, so a
//! write stuck behind a silent peer never delays `Suspended` or `Expired`.
//! After losing a connection the client tries the next server at once, then
//! waits a random time under `min(1 s, T/10)` between attempts
//! ([`ClientBuilder::reconnect_jitter`]).
//!
//! # Under faults
//!
//! - [`Client::wait_connected`] waits for the connection, with a deadline.
//! - [`ClientBuilder::request_timeout`] and [`Client::with_timeout`] give
//!   requests a deadline ([`Error::RequestTimeout`]; the session carries
//!   on).
//! - [`Client::retry`] retries idempotent calls on the errors
//!   [`Error::is_retryable`] names, under a [`RetryPolicy`].
//! - [`Client::create_protected`] finds its ephemeral-sequential node again
//!   after a lost answer (Curator's `_c_<uuid>-` names, see
//!   [`protected_id`]).
//! - [`Client::close`] reaches a server when one answers within
//!   [`ClientBuilder::close_timeout`], suspended or not.
//! - Dropping a [`Watch`] removes it from the server.
//! - [`ClientBuilder::auto_renew`] opens a new session after expiry;
//!   [`Client::renewals`] says when, for owners of ephemerals to create them
//!   again.
//!
//! # TLS
//!
//! With the `tls` feature (default), `ClientBuilder::tls` and `tls://`
//! connect strings dial the servers with rustls, trusting only the CAs of
//! a `TlsConfig`. A certificate that does not verify is
//! [`Error::Tls`], with a [`TlsFailure`] naming the reason, and is not
//! retried as a lost connection is.
//!
//! All timing and failover decisions are made by the sans-IO state machine
//! `session_core::ClientSession`; this crate moves its bytes and time.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod driver;
mod error;
mod ops;
mod protected;
pub mod recipes;
mod retry;
mod tls;
mod types;
mod watches;

pub use client::{
    Client, ClientBuilder, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SESSION_TIMEOUT,
};
pub use error::{Error, MultiError};
pub use ops::{CreateOptions, Op, OpOutcome, ReadOp, ReadOutcome};
pub use protected::{PROTECTED_PREFIX, protected_id, strip_protected_prefix};
pub use retry::{DEFAULT_RETRY_TIMEOUT, RetryPolicy};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::TlsConfig;
pub use tls::{TlsConfigError, TlsFailure};
// Node kinds, node stats, watch event kinds, access control lists and
// watcher types are session-core's: one definition for the server and the
// client.
pub use session_core::{Acl, Id, WatcherType, perms};
pub use session_core::{CreateMode, EventKind, Stat};
pub use session_core::{SessionId, SessionPassword};
pub use types::{PersistentWatch, Renewals, State, StateEvents, Watch, WatchedEvent};
