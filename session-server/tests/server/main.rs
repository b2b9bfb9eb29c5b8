//! Integration tests of session-server over real TCP on 127.0.0.1 port 0.
//!
//! One test binary, a module per concern, so CI links it once.

mod support;

mod admin;
mod durable;
mod expiry;
mod four_letter;
mod hostile;
mod lifecycle;
mod limits;
mod pipelining;
mod promises;
mod replicated;
mod tls;
mod watches;
mod zookeeper;
mod zookeeper_ops;
// Reads /proc/net/tcp to see how far the server's writes got, and signals
// the binary with kill(1).
#[cfg(target_os = "linux")]
mod stalled;
