//! Integration tests of session-client against an in-process session-server
//! on 127.0.0.1 port 0. One binary, several modules, to keep link time down.

mod access;
mod cli;
mod compound;
mod failover;
mod lock_chaos;
mod operations;
mod persistent;
mod recipes;
mod resilience;
mod stall;
mod support;
mod tls;
