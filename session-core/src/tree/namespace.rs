//! Test support: the server's former `Namespace` (a tree with watches and
//! limits), rebuilt from the split parts the way a server composes them, so
//! that its unit tests and model test run against the split unchanged.
//!
//! Every write checks the limits first (`check_*`), then writes the tree, then
//! fires the watch table from the write's changes. When the check fails on
//! structure rather than a limit, the write runs anyway and must fail with the
//! same error: that keeps the checks and the writes in agreement.

use std::hash::Hash;

use bytes::Bytes;

use super::{CreateMode, DataTree, Stat, TreeError, TreeLimits};
use crate::{WatchEvent, WatchKind, WatchTable, watch_kind_for_exists};

/// The result of a write, with the watch events it fired (the old shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Written<T, W> {
    pub(super) value: T,
    pub(super) fired: Vec<(W, WatchEvent)>,
}

#[derive(Debug)]
pub(super) struct Namespace<W> {
    pub(super) tree: DataTree,
    pub(super) watches: WatchTable<W>,
    limits: TreeLimits,
}

impl<W: Copy + Eq + Hash + std::fmt::Debug> Namespace<W> {
    pub(super) fn new(limits: TreeLimits) -> Self {
        Self {
            tree: DataTree::new(),
            watches: WatchTable::new(),
            limits,
        }
    }

    pub(super) fn limits(&self) -> &TreeLimits {
        &self.limits
    }

    pub(super) fn node_count(&self) -> usize {
        self.tree.node_count()
    }

    pub(super) fn watch_count(&self) -> usize {
        self.watches.len()
    }

    pub(super) fn ephemeral_count(&self, owner: u64) -> usize {
        self.tree.ephemeral_count(owner)
    }

    pub(super) fn ephemerals(&self, owner: u64) -> impl Iterator<Item = &str> + '_ {
        self.tree.ephemerals(owner)
    }

    pub(super) fn last_zxid(&self) -> u64 {
        self.tree.last_zxid()
    }

    pub(super) fn get_data(&self, path: &str) -> Result<(Bytes, Stat), TreeError> {
        self.tree.get_data(path)
    }

    pub(super) fn exists(&self, path: &str) -> Result<Option<Stat>, TreeError> {
        self.tree.exists(path)
    }

    pub(super) fn children(&self, path: &str) -> Result<(Vec<String>, Stat), TreeError> {
        self.tree.children(path)
    }

    pub(super) fn get_data_and_watch(
        &mut self,
        path: &str,
        watcher: W,
    ) -> Result<(Bytes, Stat), TreeError> {
        let found = self.tree.get_data(path)?;
        self.watches.add(WatchKind::Data, path, watcher);
        Ok(found)
    }

    pub(super) fn exists_and_watch(
        &mut self,
        path: &str,
        watcher: W,
    ) -> Result<Option<Stat>, TreeError> {
        let found = self.tree.exists(path)?;
        self.watches
            .add(watch_kind_for_exists(found.is_some()), path, watcher);
        Ok(found)
    }

    pub(super) fn children_and_watch(
        &mut self,
        path: &str,
        watcher: W,
    ) -> Result<(Vec<String>, Stat), TreeError> {
        let found = self.tree.children(path)?;
        self.watches.add(WatchKind::Child, path, watcher);
        Ok(found)
    }

    pub(super) fn create(
        &mut self,
        path: &str,
        data: Bytes,
        mode: CreateMode,
        owner: u64,
        zxid: u64,
        time_ms: i64,
    ) -> Result<Written<String, W>, TreeError> {
        let checked = self
            .tree
            .check_create(path, data.len(), mode, owner, &self.limits);
        if let Err(error) = &checked {
            if error.is_limit() {
                return Err(error.clone());
            }
        }
        let written = self.tree.create(path, data, mode, owner, zxid, time_ms);
        assert_eq!(
            checked.as_ref().err(),
            written.as_ref().err(),
            "check_create and create disagree on {path}"
        );
        let written = written?;
        let fired = self.watches.fire(&written.changes, zxid);
        Ok(Written {
            value: written.value,
            fired,
        })
    }

    pub(super) fn delete(
        &mut self,
        path: &str,
        expected_version: Option<i32>,
        zxid: u64,
    ) -> Result<Written<(), W>, TreeError> {
        let checked = self.tree.check_delete(path, expected_version, &self.limits);
        if let Err(error) = &checked {
            if error.is_limit() {
                return Err(error.clone());
            }
        }
        let written = self.tree.delete(path, expected_version, zxid);
        assert_eq!(
            checked.as_ref().err(),
            written.as_ref().err(),
            "check_delete and delete disagree on {path}"
        );
        let written = written?;
        let fired = self.watches.fire(&written.changes, zxid);
        Ok(Written { value: (), fired })
    }

    pub(super) fn set_data(
        &mut self,
        path: &str,
        data: Bytes,
        expected_version: Option<i32>,
        zxid: u64,
        time_ms: i64,
    ) -> Result<Written<Stat, W>, TreeError> {
        let checked = self
            .tree
            .check_set(path, data.len(), expected_version, &self.limits);
        if let Err(error) = &checked {
            if error.is_limit() {
                return Err(error.clone());
            }
        }
        let written = self
            .tree
            .set_data(path, data, expected_version, zxid, time_ms);
        assert_eq!(
            checked.as_ref().err(),
            written.as_ref().err(),
            "check_set and set_data disagree on {path}"
        );
        let written = written?;
        let fired = self.watches.fire(&written.changes, zxid);
        Ok(Written {
            value: written.value,
            fired,
        })
    }

    pub(super) fn remove_session(&mut self, owner: u64, zxid: u64) -> Written<Vec<String>, W> {
        let written = self.tree.remove_session(owner, zxid);
        let fired = self.watches.fire(&written.changes, zxid);
        Written {
            value: written.value,
            fired,
        }
    }

    pub(super) fn remove_watcher(&mut self, watcher: W) -> usize {
        self.watches.remove_watcher(watcher)
    }

    /// As a server does it: every path's length checked against the limits
    /// first, then the watch table's own rules.
    pub(super) fn set_watches(
        &mut self,
        watcher: W,
        last_zxid: u64,
        data_paths: &[String],
        exist_paths: &[String],
        child_paths: &[String],
    ) -> Result<Vec<(W, WatchEvent)>, TreeError> {
        for path in data_paths.iter().chain(exist_paths).chain(child_paths) {
            self.limits.check_path(path)?;
        }
        self.watches.set_watches(
            &self.tree,
            watcher,
            last_zxid,
            data_paths,
            exist_paths,
            child_paths,
        )
    }

    /// Direct access to a node, to set up states hard to reach by writes.
    pub(super) fn node_mut(&mut self, path: &str) -> &mut super::Node {
        self.tree.node_mut(path)
    }
}
