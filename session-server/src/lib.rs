//! A ZooKeeper-style session server.
