//! [`DataTree::restore`]: the inverse of [`DataTree::export`], checking
//! everything a corrupt snapshot could break.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::Arc;

use crate::{Acl, NodeKind, NodeSnapshot, RestoreError, SessionId, Stat, validate_path};

use super::MAX_TTL_MS;

use super::node::{Node, saturating_u32};
use super::{DataTree, child_path, split_parent};

impl DataTree {
    /// Rebuilds a tree from the nodes [`export`](Self::export) gave: the
    /// nodes with their data, stat and children, the index of each owner's
    /// ephemerals, the total of data bytes and [`last_zxid`](Self::last_zxid)
    /// (the highest `czxid`, `mzxid` or `pzxid` of any node, which is what
    /// the writes left it at when their zxids rose). The nodes may come in
    /// any order; `restore(tree.export())` equals `tree`.
    ///
    /// Everything is checked, in this order, and the first problem found
    /// (in path order) is returned:
    /// - every path is valid and appears once;
    /// - the root `/` is there, and is persistent;
    /// - every other node's parent is there and is persistent;
    /// - each node's `stat.data_length` is the length of its data;
    /// - each children list names exactly the node's children, once each;
    /// - each node's `stat.num_children` is the number of its children.
    ///
    /// Whether the owners of ephemerals are sessions is the caller's check
    /// (see [`Replica::restore`](crate::Replica::restore)).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use session_core::{CreateMode, DataTree, RestoreError};
    ///
    /// let mut tree = DataTree::new();
    /// tree.create("/a", Bytes::from_static(b"x"), CreateMode::Persistent, 0, 1, 1_000)?;
    /// let restored = DataTree::restore(tree.export())?;
    /// assert_eq!(restored, tree);
    ///
    /// // A hand-edited snapshot whose root forgot its child is refused.
    /// let mut nodes = tree.export();
    /// nodes[0].children.clear();
    /// nodes[0].stat.num_children = 0;
    /// assert_eq!(
    ///     DataTree::restore(nodes),
    ///     Err(RestoreError::ChildNotListed { parent: "/".into(), child: "/a".into() }),
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RestoreError::InvalidPath`], [`RestoreError::DuplicatePath`],
    /// [`RestoreError::MissingRoot`], [`RestoreError::EphemeralRoot`],
    /// [`RestoreError::MissingParent`], [`RestoreError::EphemeralWithChildren`],
    /// [`RestoreError::DataLengthMismatch`], [`RestoreError::DuplicateChild`],
    /// [`RestoreError::UnknownChild`], [`RestoreError::ChildNotListed`],
    /// [`RestoreError::NumChildrenMismatch`].
    pub fn restore(nodes: Vec<NodeSnapshot>) -> Result<Self, RestoreError> {
        let mut by_path: BTreeMap<String, NodeSnapshot> = BTreeMap::new();
        for node in nodes {
            validate_path(&node.path)?;
            if by_path.contains_key(&node.path) {
                return Err(RestoreError::DuplicatePath { path: node.path });
            }
            by_path.insert(node.path.clone(), node);
        }
        for (path, node) in &by_path {
            let owner = node.stat.ephemeral_owner;
            let fits = match node.kind {
                NodeKind::Ephemeral => owner != 0,
                NodeKind::Ttl { ttl_ms } if ttl_ms == 0 || ttl_ms > MAX_TTL_MS => false,
                kind => owner == kind.ephemeral_owner(owner),
            };
            if !fits {
                return Err(RestoreError::OwnerMismatch {
                    path: path.clone(),
                    owner,
                    kind: format!("{:?}", node.kind),
                });
            }
        }
        let root = by_path.get("/").ok_or(RestoreError::MissingRoot)?;
        if root.kind != NodeKind::Persistent {
            return Err(RestoreError::EphemeralRoot {
                owner: SessionId::from_u64(root.stat.ephemeral_owner),
            });
        }

        // The children each node really has, from the paths.
        let mut actual: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for path in by_path.keys().filter(|path| *path != "/") {
            let (parent_path, name_start) = split_parent(path);
            let parent = by_path
                .get(parent_path)
                .ok_or_else(|| RestoreError::MissingParent {
                    path: path.clone(),
                    parent: parent_path.to_owned(),
                })?;
            if parent.kind == NodeKind::Ephemeral {
                return Err(RestoreError::EphemeralWithChildren {
                    path: parent_path.to_owned(),
                    child: path.clone(),
                });
            }
            actual
                .entry(parent_path)
                .or_default()
                .insert(&path[name_start..]);
        }

        for (path, node) in &by_path {
            let data_length = saturating_u32(node.data.len());
            if node.stat.data_length != data_length {
                return Err(RestoreError::DataLengthMismatch {
                    path: path.clone(),
                    recorded: node.stat.data_length,
                    actual: data_length,
                });
            }
            let children = actual.get(path.as_str());
            let mut listed = BTreeSet::new();
            for name in &node.children {
                if !listed.insert(name.as_str()) {
                    return Err(RestoreError::DuplicateChild {
                        parent: path.clone(),
                        name: name.clone(),
                    });
                }
                if !children.is_some_and(|children| children.contains(name.as_str())) {
                    return Err(RestoreError::UnknownChild {
                        parent: path.clone(),
                        name: name.clone(),
                    });
                }
            }
            if let Some(name) = children
                .into_iter()
                .flatten()
                .find(|name| !listed.contains(*name))
            {
                return Err(RestoreError::ChildNotListed {
                    parent: path.clone(),
                    child: child_path(path, name),
                });
            }
            let num_children = saturating_u32(listed.len());
            if node.stat.num_children != num_children {
                return Err(RestoreError::NumChildrenMismatch {
                    path: path.clone(),
                    recorded: node.stat.num_children,
                    actual: num_children,
                });
            }
        }

        let mut tree = Self {
            nodes: HashMap::with_capacity(by_path.len()),
            ..Self::new()
        };
        tree.nodes.clear();
        let mut shared: HashMap<Vec<Acl>, Arc<[Acl]>> = HashMap::new();
        shared.insert(tree.open_acl.to_vec(), Arc::clone(&tree.open_acl));
        for (path, node) in by_path {
            let NodeSnapshot {
                data,
                stat,
                children,
                acl,
                kind,
                ..
            } = node;
            let acl = match shared.get(&acl) {
                Some(acl) => Arc::clone(acl),
                None => {
                    let new: Arc<[Acl]> = acl.clone().into();
                    shared.insert(acl, Arc::clone(&new));
                    new
                }
            };
            tree.data_bytes += data.len();
            tree.last_zxid = tree
                .last_zxid
                .max(stat.czxid)
                .max(stat.mzxid)
                .max(stat.pzxid);
            let node = Node {
                data,
                // As stored by the writes: `Node::stat` fills these two.
                stat: Stat {
                    data_length: 0,
                    num_children: 0,
                    ..stat
                },
                children: children.into_iter().collect(),
                acl,
                kind,
            };
            tree.index(&path, &node);
            tree.nodes.insert(path, node);
        }
        Ok(tree)
    }

    /// The owners of ephemeral nodes, each with its first ephemeral in path
    /// order, sorted by owner.
    pub(crate) fn ephemeral_owners(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        let mut owners: Vec<(u64, &str)> = self
            .ephemerals
            .iter()
            .filter_map(|(owner, paths)| Some((*owner, paths.first()?.as_str())))
            .collect();
        owners.sort_unstable();
        owners.into_iter()
    }

    /// The node, first in path order, with a `czxid`, `mzxid` or `pzxid`
    /// above `zxid`, and the highest of the three.
    pub(crate) fn first_node_after(&self, zxid: u64) -> Option<(&str, u64)> {
        self.nodes
            .iter()
            .map(|(path, node)| {
                let stat = &node.stat;
                (path.as_str(), stat.czxid.max(stat.mzxid).max(stat.pzxid))
            })
            .filter(|(_, node_zxid)| *node_zxid > zxid)
            .min()
    }
}

#[cfg(test)]
mod tests;
