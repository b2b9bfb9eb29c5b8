//! Integration tests of session-client against an in-process session-server
//! on 127.0.0.1 port 0. One binary, several modules, to keep link time down.

mod cli;
mod failover;
mod operations;
mod support;
