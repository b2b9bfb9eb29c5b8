//! The names of the recipes' nodes: whose layout they follow
//! ([`NodeLayout`]), the random part that finds a node again after a
//! connection loss, and the sequence number every contender is ordered by.

use crate::protected::protect;
pub(crate) use crate::protected::random_uuid;

/// Whose node names a [`Lock`](super::Lock) or a
/// [`LeaderElection`](super::LeaderElection) gives its nodes, so that
/// Curator's or kazoo's recipes on the same path take part in the same
/// queue. Either way the name starts with a random part unique to one
/// attempt, which is how a create whose answer was lost (connection loss)
/// finds its node again instead of leaving an orphan.
///
/// | layout | [`Lock`](super::Lock) node | [`LeaderElection`](super::LeaderElection) node |
/// | --- | --- | --- |
/// | `Curator` (default) | `_c_<uuid>-lock-<seq>` (InterProcessMutex) | `_c_<uuid>-latch-<seq>` (LeaderLatch) |
/// | `Kazoo` | `<32 hex digits>__lock__<seq>` (Lock) | `<32 hex digits>__lock__<seq>` (Election) |
///
/// Whatever the layout, a lock counts as contenders the children named
/// `…lock-<seq>`, `…__lock__<seq>` and `…__rlock__<seq>` (kazoo's read
/// lock), an election those named `…latch-<seq>` and `…__lock__<seq>`, each
/// ordered by its 10-digit sequence number; other children are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum NodeLayout {
    /// Apache Curator's protected names (`_c_` + a UUID + `-`), then
    /// `lock-` (InterProcessMutex, LeaderSelector) or `latch-`
    /// (LeaderLatch).
    #[default]
    Curator,
    /// kazoo's names: 32 hexadecimal digits, then `__lock__` (Lock, and
    /// Election, which is a Lock).
    Kazoo,
}

/// Which recipe a queue of sequential nodes belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    /// A mutual exclusion lock.
    Lock,
    /// A leader election.
    Election,
}

impl Queue {
    /// What comes between the random part and the sequence number in this
    /// client's own nodes.
    fn marker(self, layout: NodeLayout) -> &'static str {
        match (layout, self) {
            (NodeLayout::Curator, Queue::Lock) => "lock-",
            (NodeLayout::Curator, Queue::Election) => "latch-",
            (NodeLayout::Kazoo, _) => "__lock__",
        }
    }

    /// The markers of the nodes counted as contenders, whichever library
    /// made them.
    fn contender_markers(self) -> &'static [&'static str] {
        match self {
            Queue::Lock => &["lock-", "__lock__", "__rlock__"],
            Queue::Election => &["latch-", "__lock__"],
        }
    }

    /// The name, before the sequence number, of a new node of this queue:
    /// a fresh random part, then the marker. Unique to one attempt, so a
    /// child starting with it after a connection loss is the node that
    /// attempt created.
    pub(crate) fn fresh_prefix(self, layout: NodeLayout) -> String {
        let uuid = random_uuid();
        match layout {
            NodeLayout::Curator => protect(&uuid, self.marker(layout)),
            // Python's uuid4().hex.
            NodeLayout::Kazoo => format!("{}{}", uuid.replace('-', ""), self.marker(layout)),
        }
    }

    /// A child's sequence number if it is a contender of this queue: its
    /// name ends with one of the markers and 10 digits.
    pub(crate) fn sequence(self, name: &str) -> Option<u64> {
        let digits_at = name.len().checked_sub(SEQUENCE_DIGITS)?;
        let digits = &name.as_bytes()[digits_at..];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // The last 10 bytes are ASCII, so this is a character boundary.
        let head = &name[..digits_at];
        self.contender_markers()
            .iter()
            .any(|marker| head.ends_with(marker))
            .then(|| name[digits_at..].parse().ok())
            .flatten()
    }

    /// The contenders among `children`, in queue order (by sequence number).
    pub(crate) fn order(self, children: Vec<String>) -> Vec<String> {
        let mut contenders: Vec<(u64, String)> = children
            .into_iter()
            .filter_map(|name| Some((self.sequence(&name)?, name)))
            .collect();
        contenders.sort_unstable();
        contenders.into_iter().map(|(_, name)| name).collect()
    }
}

/// ZooKeeper's sequential suffix: 10 decimal digits.
const SEQUENCE_DIGITS: usize = 10;

/// `dir/name`, for a `dir` that may be `/`.
pub(crate) fn child_path(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The last component of a path.
pub(crate) fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A recipe's path as given, without a trailing `/` (except for the root).
pub(crate) fn normalize(path: String) -> String {
    match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed if trimmed.len() == path.len() => path,
        trimmed => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_follow_curators_and_kazoos_layouts() {
        let curator = Queue::Lock.fresh_prefix(NodeLayout::Curator);
        // _c_ + 36-character UUID + '-' + "lock-", as Curator's ProtectedUtils checks it.
        assert_eq!(curator.len(), 3 + 36 + 1 + 5, "{curator}");
        assert!(curator.starts_with("_c_") && curator.ends_with("-lock-"));
        let uuid = &curator[3..39];
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
        assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
        assert!("89ab".contains(&uuid[19..20]), "variant: {uuid}");
        let latch = Queue::Election.fresh_prefix(NodeLayout::Curator);
        assert!(latch.ends_with("-latch-"), "{latch}");

        let kazoo = Queue::Election.fresh_prefix(NodeLayout::Kazoo);
        assert_eq!(kazoo.len(), 32 + 8, "{kazoo}");
        assert!(kazoo[..32].bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(kazoo.ends_with("__lock__"));
        assert_ne!(
            Queue::Lock.fresh_prefix(NodeLayout::Kazoo),
            Queue::Lock.fresh_prefix(NodeLayout::Kazoo),
            "random"
        );
    }

    #[test]
    fn contenders_are_ordered_by_sequence_whoever_made_them() {
        let children = vec![
            "b3c1e0a2d4f54c6e8a9b0c1d2e3f4a5b__lock__0000000007".to_owned(),
            "_c_0b8c3c1e-63a4-4a5e-9c8f-1f2e3d4c5b6a-lock-0000000003".to_owned(),
            "leases".to_owned(),
            "x__rlock__0000000005".to_owned(),
            "_c_0b8c3c1e-63a4-4a5e-9c8f-1f2e3d4c5b6a-latch-0000000001".to_owned(),
            "lock-12".to_owned(),
            "lock-000000000x".to_owned(),
        ];
        assert_eq!(
            Queue::Lock.order(children.clone()),
            [
                "_c_0b8c3c1e-63a4-4a5e-9c8f-1f2e3d4c5b6a-lock-0000000003",
                "x__rlock__0000000005",
                "b3c1e0a2d4f54c6e8a9b0c1d2e3f4a5b__lock__0000000007",
            ]
        );
        assert_eq!(
            Queue::Election.order(children),
            [
                "_c_0b8c3c1e-63a4-4a5e-9c8f-1f2e3d4c5b6a-latch-0000000001",
                "b3c1e0a2d4f54c6e8a9b0c1d2e3f4a5b__lock__0000000007",
            ]
        );
        // Multi-byte characters before the digits are no trouble.
        assert_eq!(Queue::Lock.sequence("é-lock-0000000042"), Some(42));
        assert_eq!(Queue::Lock.sequence("é"), None);
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(child_path("/locks/a", "x"), "/locks/a/x");
        assert_eq!(child_path("/", "x"), "/x");
        assert_eq!(name_of("/locks/a/x"), "x");
        assert_eq!(normalize("/locks/a/".to_owned()), "/locks/a");
        assert_eq!(normalize("/".to_owned()), "/");
        assert_eq!(normalize("/a".to_owned()), "/a");
    }
}
