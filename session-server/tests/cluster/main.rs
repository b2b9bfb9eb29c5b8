//! Fault tests of a three-server cluster: real `session-server` processes on
//! 127.0.0.1, a fault-injecting TCP proxy on every directed peer link,
//! session-client clients. Each test states the bound it asserts in its doc
//! comment; the timing constants are in `support`.
//!
//! One binary, a module per fault, run one test at a time (see
//! `support::serial`).

// The raw protocol client and the server binary's path of the
// single-server tests, shared rather than copied.
#[path = "../server/support.rs"]
mod server_support;

mod proxy;
mod support;

mod expiry;
mod failover;
mod lock;
mod partition;
