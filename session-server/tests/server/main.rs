//! Integration tests of session-server over real TCP on 127.0.0.1 port 0.
//!
//! One test binary, a module per concern, so CI links it once.

mod support;

mod admin;
mod expiry;
mod hostile;
mod lifecycle;
mod watches;
