//! The size limits the namespace enforces on every write.

/// Limits on what a client may store, each refused with its own
/// [`NamespaceError`](super::NamespaceError) variant.
///
/// The defaults keep every reply well inside the 1 MiB frame the wire layer
/// allows: a `get_data` reply carries at most 512 KiB of data, a 1 KiB path and
/// a stat.
///
/// ```
/// use session_server::NamespaceLimits;
///
/// let limits = NamespaceLimits::default();
/// assert_eq!(limits.max_path_bytes, 1024);
/// assert_eq!(limits.max_data_bytes, 512 * 1024);
/// assert_eq!(limits.max_ephemerals_per_session, 10_000);
///
/// let small = NamespaceLimits { max_data_bytes: 16, ..NamespaceLimits::default() };
/// assert_eq!(small.max_path_bytes, 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NamespaceLimits {
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
}

impl NamespaceLimits {
    /// Default for [`max_path_bytes`](Self::max_path_bytes).
    pub const DEFAULT_MAX_PATH_BYTES: usize = 1024;
    /// Default for [`max_data_bytes`](Self::max_data_bytes).
    pub const DEFAULT_MAX_DATA_BYTES: usize = 512 * 1024;
    /// Default for [`max_ephemerals_per_session`](Self::max_ephemerals_per_session).
    pub const DEFAULT_MAX_EPHEMERALS_PER_SESSION: usize = 10_000;
}

impl Default for NamespaceLimits {
    fn default() -> Self {
        Self {
            max_path_bytes: Self::DEFAULT_MAX_PATH_BYTES,
            max_data_bytes: Self::DEFAULT_MAX_DATA_BYTES,
            max_ephemerals_per_session: Self::DEFAULT_MAX_EPHEMERALS_PER_SESSION,
        }
    }
}
