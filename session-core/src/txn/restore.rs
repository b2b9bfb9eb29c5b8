//! [`Replica::restore`]: the inverse of [`Replica::export`], checking
//! everything a corrupt or hand-edited snapshot could break.

use std::collections::BTreeMap;

use crate::{DataTree, Replica, ReplicaSnapshot, RestoreError, SessionEntry, SessionId};

impl Replica {
    /// Rebuilds the replica a [`ReplicaSnapshot`] was exported from: its
    /// tree ([`DataTree::restore`]: nodes, children, the index of each
    /// session's ephemerals, the total of data bytes, the tree's last zxid),
    /// sessions, genesis (or none), id high-water mark and zxid. It then
    /// applies the following transactions exactly as the replica exported
    /// did: `Replica::restore(r.export())?.export() == r.export()`, and the
    /// same transactions give both the same results and changes.
    ///
    /// The snapshot is checked first, and refused with the first problem
    /// found, in this order:
    /// - a snapshot without genesis has no session and no high-water mark
    ///   ([`RestoreError::SessionWithoutGenesis`]);
    /// - sessions: each id once ([`RestoreError::DuplicateSession`]), none
    ///   above the high-water mark, which would let its id be minted again
    ///   ([`RestoreError::SessionAboveHighWater`]);
    /// - the tree: the checks of [`DataTree::restore`];
    /// - every ephemeral's owner is a session of the snapshot
    ///   ([`RestoreError::OwnerNotHeld`]);
    /// - no node's `czxid`, `mzxid` or `pzxid` is above the snapshot's zxid
    ///   ([`RestoreError::ZxidBehindNode`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_core::{
    ///     Outcome, PasswordSecret, Replica, RestoreError, ServerId, SessionId, Txn,
    /// };
    ///
    /// let first_id = SessionId::from_u64(0x0100_0000_0000_0000);
    /// let mut replica = Replica::new(PasswordSecret::new(&[7; 32])?, first_id);
    /// let txn = Txn::CreateSession {
    ///     min_id: first_id,
    ///     timeout: Duration::from_secs(6),
    ///     owner: ServerId::new(1)?,
    /// };
    /// assert!(matches!(replica.apply(1, &txn).result, Ok(Outcome::SessionCreated { .. })));
    ///
    /// let snapshot = replica.export();
    /// let mut restored = Replica::restore(snapshot.clone())?;
    /// assert_eq!(restored.export(), snapshot);
    /// assert_eq!(restored.apply(2, &txn), replica.apply(2, &txn));
    ///
    /// // A snapshot whose high-water mark went back would mint an id twice.
    /// let bad = replica.export();
    /// let id = bad.sessions[1].id;
    /// let bad = Replica::restore(ReplicaSnapshot { high_water: Some(first_id), ..bad });
    /// assert_eq!(
    ///     bad.err(),
    ///     Some(RestoreError::SessionAboveHighWater { id, high_water: Some(first_id) }),
    /// );
    /// # use session_core::ReplicaSnapshot;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RestoreError::SessionWithoutGenesis`],
    /// [`RestoreError::DuplicateSession`],
    /// [`RestoreError::SessionAboveHighWater`], those of [`DataTree::restore`],
    /// [`RestoreError::OwnerNotHeld`], [`RestoreError::ZxidBehindNode`].
    pub fn restore(snapshot: ReplicaSnapshot) -> Result<Self, RestoreError> {
        let ReplicaSnapshot {
            zxid,
            high_water,
            genesis,
            sessions,
            nodes,
        } = snapshot;
        if genesis.is_none() {
            let minted = sessions.iter().map(|entry| entry.id).min().or(high_water);
            if let Some(id) = minted {
                return Err(RestoreError::SessionWithoutGenesis { id });
            }
        }
        let mut held: BTreeMap<SessionId, SessionEntry> = BTreeMap::new();
        for entry in sessions {
            if held.insert(entry.id, entry).is_some() {
                return Err(RestoreError::DuplicateSession { id: entry.id });
            }
        }
        if let Some((&id, _)) = held
            .iter()
            .find(|(id, _)| high_water.is_none_or(|mark| **id > mark))
        {
            return Err(RestoreError::SessionAboveHighWater { id, high_water });
        }

        let tree = DataTree::restore(nodes)?;
        if let Some((owner, path)) = tree
            .ephemeral_owners()
            .find(|(owner, _)| !held.contains_key(&SessionId::from_u64(*owner)))
        {
            return Err(RestoreError::OwnerNotHeld {
                path: path.to_owned(),
                owner: SessionId::from_u64(owner),
            });
        }
        if let Some((path, node_zxid)) = tree.first_node_after(zxid) {
            return Err(RestoreError::ZxidBehindNode {
                path: path.to_owned(),
                node_zxid,
                zxid,
            });
        }

        Ok(Self {
            tree,
            sessions: held,
            genesis,
            high_water,
            zxid,
        })
    }
}

#[cfg(test)]
mod tests;
