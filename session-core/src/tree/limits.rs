//! The size limits checked before a write reaches the tree.

use crate::validate_path;

use super::TreeError;

/// Limits on what clients may store, each refused with its own [`TreeError`]
/// variant.
///
/// The tree's writes do not check them: they are checked before, against the
/// current tree, by [`DataTree::check_create`](super::DataTree::check_create),
/// [`check_set`](super::DataTree::check_set) and
/// [`check_delete`](super::DataTree::check_delete) (which the transaction
/// model's [`prepare`](crate::prepare) calls). Limits are configuration, which
/// replicas need not share, so the deterministic
/// [`Replica::apply`](crate::Replica::apply) cannot depend on them.
///
/// The defaults keep every reply well inside the 1 MiB frame the wire layer
/// allows: a `get_data` reply carries at most 512 KiB of data, a 1 KiB path and
/// a stat.
///
/// ```
/// use session_core::TreeLimits;
///
/// let limits = TreeLimits::default();
/// assert_eq!(limits.max_path_bytes, 1024);
/// assert_eq!(limits.max_data_bytes, 512 * 1024);
/// assert_eq!(limits.max_ephemerals_per_session, 10_000);
/// assert_eq!(limits.max_nodes, 1_000_000);
/// assert_eq!(limits.max_total_data_bytes, 1 << 30);
///
/// let small = TreeLimits { max_data_bytes: 16, ..TreeLimits::default() };
/// assert_eq!(small.max_path_bytes, 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeLimits {
    /// Longest path accepted, in bytes of UTF-8, counting the leading `/`; for
    /// a sequential create the limit applies to the final name with its
    /// 10-digit suffix. Default 1024
    /// ([`DEFAULT_MAX_PATH_BYTES`](Self::DEFAULT_MAX_PATH_BYTES)).
    pub max_path_bytes: usize,
    /// Largest node data accepted, in bytes. Default 512 KiB
    /// ([`DEFAULT_MAX_DATA_BYTES`](Self::DEFAULT_MAX_DATA_BYTES)), half of the
    /// default 1 MiB frame, so that any reply carrying the data fits a frame.
    pub max_data_bytes: usize,
    /// Most ephemeral nodes one session may own at a time. Default 10,000
    /// ([`DEFAULT_MAX_EPHEMERALS_PER_SESSION`](Self::DEFAULT_MAX_EPHEMERALS_PER_SESSION)),
    /// which bounds the work of closing or expiring one session.
    pub max_ephemerals_per_session: usize,
    /// Most nodes in the tree, the root included. Default 1,000,000
    /// ([`DEFAULT_MAX_NODES`](Self::DEFAULT_MAX_NODES)).
    pub max_nodes: usize,
    /// Most bytes of node data in the whole tree (paths and stats not
    /// counted). Default 1 GiB
    /// ([`DEFAULT_MAX_TOTAL_DATA_BYTES`](Self::DEFAULT_MAX_TOTAL_DATA_BYTES)).
    /// Only growth is refused: a write that shrinks the total always passes.
    pub max_total_data_bytes: usize,
}

impl TreeLimits {
    /// Default for [`max_path_bytes`](Self::max_path_bytes): 1024.
    pub const DEFAULT_MAX_PATH_BYTES: usize = 1024;
    /// Default for [`max_data_bytes`](Self::max_data_bytes): 512 KiB.
    pub const DEFAULT_MAX_DATA_BYTES: usize = 512 * 1024;
    /// Default for [`max_ephemerals_per_session`](Self::max_ephemerals_per_session): 10,000.
    pub const DEFAULT_MAX_EPHEMERALS_PER_SESSION: usize = 10_000;
    /// Default for [`max_nodes`](Self::max_nodes): 1,000,000.
    pub const DEFAULT_MAX_NODES: usize = 1_000_000;
    /// Default for [`max_total_data_bytes`](Self::max_total_data_bytes): 1 GiB.
    pub const DEFAULT_MAX_TOTAL_DATA_BYTES: usize = 1 << 30;

    /// Checks a path a client sent, for length and syntax: what a write's
    /// check does first, and what to check of the paths of a
    /// [`WatchTable::set_watches`](crate::WatchTable::set_watches) before
    /// calling it (the watch table takes no limits).
    ///
    /// # Errors
    /// [`TreeError::PathTooLong`], [`TreeError::InvalidPath`].
    pub fn check_path(&self, path: &str) -> Result<(), TreeError> {
        self.check_path_len(path.len())?;
        validate_path(path)?;
        Ok(())
    }

    pub(crate) fn check_path_len(&self, len: usize) -> Result<(), TreeError> {
        let max = self.max_path_bytes;
        if len > max {
            return Err(TreeError::PathTooLong { len, max });
        }
        Ok(())
    }

    pub(crate) fn check_data(&self, path: &str, size: usize) -> Result<(), TreeError> {
        let max = self.max_data_bytes;
        if size > max {
            return Err(TreeError::DataTooLarge {
                path: path.into(),
                size,
                max,
            });
        }
        Ok(())
    }
}

impl Default for TreeLimits {
    fn default() -> Self {
        Self {
            max_path_bytes: Self::DEFAULT_MAX_PATH_BYTES,
            max_data_bytes: Self::DEFAULT_MAX_DATA_BYTES,
            max_ephemerals_per_session: Self::DEFAULT_MAX_EPHEMERALS_PER_SESSION,
            max_nodes: Self::DEFAULT_MAX_NODES,
            max_total_data_bytes: Self::DEFAULT_MAX_TOTAL_DATA_BYTES,
        }
    }
}
