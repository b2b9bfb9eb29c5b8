#![doc = include_str!("../README.md")]

mod client;
mod connect_string;
mod expiry;
mod id;
mod password;
mod path;
mod timeout;
mod tracker;

pub use client::{
    Action, ClientConfig, ClientEvent, ClientSession, ClientState, Handshake, Refusal,
};
pub use connect_string::{ConnectString, ConnectStringError, DEFAULT_PORT, HostPort};
pub use expiry::{ExpiryHandle, ExpiryQueue, ExpiryQueueError};
pub use id::{IdGenerator, ServerId, ServerIdError, SessionId, initial_session_id};
pub use password::{
    MIN_SECRET_LEN, PASSWORD_LEN, PasswordSecret, PasswordSecretError, SessionPassword,
};
pub use path::{PathError, validate_path, validate_sequential_prefix};
pub use timeout::{ClientTimings, TimeoutPolicy, TimeoutPolicyError};
pub use tracker::{
    CreateError, NewSession, OwnerId, ReattachError, Reattached, SessionInfo, SessionState,
    SessionTracker, SnapshotSession, TouchError, TrackerSnapshot, UnknownSession,
};
