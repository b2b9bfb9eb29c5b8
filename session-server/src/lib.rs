//! A ZooKeeper-style session server.

mod namespace;

pub use namespace::{
    CreateMode, Namespace, NamespaceError, NamespaceLimits, Stat, WatchEvent, WatchEventKind,
    Written,
};
