//! Sans-IO building blocks of ZooKeeper-style sessions.
//!
//! Nothing in this crate performs I/O, spawns, sleeps, locks or reads a clock:
//! time comes in as an argument and randomness from a seed.

mod path;

pub use path::{PathError, validate_path, validate_sequential_prefix};
