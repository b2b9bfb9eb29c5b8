//! Unit tests of [`Replica::restore`]: round trips (with and without a
//! genesis), a restored replica going on like the original, and every
//! refusal at the replica's level, named.

use std::time::Duration;

use bytes::Bytes;

use crate::{
    CreateMode, Genesis, Outcome, PasswordSecret, Replica, ReplicaSnapshot, RestoreError, ServerId,
    SessionEntry, SessionId, Txn, TxnError,
};

fn secret() -> PasswordSecret {
    PasswordSecret::new(&[0x42; 32]).expect("long enough")
}

fn server(id: u64) -> ServerId {
    ServerId::new(id).expect("in range")
}

const FIRST: u64 = 0x0100_0000_0001_0000;

fn first_id() -> SessionId {
    SessionId::from_u64(FIRST)
}

fn new_session() -> Txn {
    Txn::CreateSession {
        min_id: first_id(),
        timeout: Duration::from_secs(6),
        owner: server(1),
    }
}

fn create(session: SessionId, path: &str, mode: CreateMode, zxid_time: i64) -> Txn {
    Txn::CreateNode {
        acl: crate::Acl::open(),
        auth: Vec::new(),
        session,
        owner: server(1),
        path: path.into(),
        data: Bytes::from_static(b"d"),
        mode,
        time_ms: zxid_time,
    }
}

/// From genesis: two sessions (the first with two ephemerals), persistent
/// nodes, one closed session; zxid 8.
fn sample() -> Replica {
    let mut r = Replica::uninitialized();
    let log = [
        Txn::Genesis {
            secret: secret(),
            first_id: first_id(),
        },
        new_session(),
        new_session(),
        new_session(),
        create(first_id(), "/app", CreateMode::Persistent, 100),
        create(
            first_id(),
            "/app/lock-",
            CreateMode::EphemeralSequential,
            101,
        ),
        create(first_id(), "/app/e", CreateMode::Ephemeral, 102),
        Txn::CloseSession {
            id: SessionId::from_u64(FIRST + 2),
        },
    ];
    for (zxid, txn) in (1..).zip(&log) {
        let applied = r.apply(zxid, txn);
        assert!(applied.result.is_ok(), "{txn:?}: {applied:?}");
    }
    r
}

fn restored(snapshot: ReplicaSnapshot) -> Replica {
    Replica::restore(snapshot).expect("a valid snapshot")
}

#[test]
fn restore_is_the_inverse_of_export() {
    let r = sample();
    let snapshot = r.export();
    assert_eq!(snapshot.zxid, 8);
    assert_eq!(snapshot.sessions.len(), 2);
    let back = restored(snapshot.clone());
    assert_eq!(back.export(), snapshot);
    assert_eq!(back.tree(), r.tree());
    assert_eq!(back.zxid(), 8);
    assert_eq!(back.high_water(), Some(SessionId::from_u64(FIRST + 2)));
    assert_eq!(back.secret(), Some(&secret()));
    assert_eq!(back.first_id(), Some(first_id()));
    assert!(back.is_initialized());
    // Sessions given in any order are the same sessions.
    let mut reversed = snapshot.clone();
    reversed.sessions.reverse();
    reversed.nodes.reverse();
    assert_eq!(restored(reversed).export(), snapshot);
}

#[test]
fn an_uninitialized_replica_round_trips_and_takes_its_genesis_after() {
    let mut r = Replica::uninitialized();
    let _ = r.apply(3, &new_session()); // refused, consumes zxid 3
    let snapshot = r.export();
    assert_eq!(snapshot.genesis, None);
    let mut back = restored(snapshot.clone());
    assert!(!back.is_initialized());
    assert_eq!(back.export(), snapshot);
    let genesis = Txn::Genesis {
        secret: secret(),
        first_id: first_id(),
    };
    assert_eq!(back.apply(4, &genesis), r.apply(4, &genesis));
    assert_eq!(back.export(), r.export());
    // A restored replica with its genesis refuses another.
    let mut again = restored(r.export());
    assert_eq!(
        again.apply(5, &genesis).result,
        Err(TxnError::AlreadyInitialized)
    );
}

#[test]
fn a_restored_replica_goes_on_like_the_original() {
    let mut r = sample();
    let mut back = restored(r.export());
    let owner = first_id();
    // Passwords come from the restored secret.
    let password = secret().derive(owner);
    assert_eq!(
        back.check_reattach(owner, &password).map(|e| e.id),
        Ok(owner)
    );
    assert_eq!(
        back.password(owner).map(|p| *p.as_bytes()),
        Some(*password.as_bytes())
    );
    let further = [
        // The next id is above the high-water mark.
        new_session(),
        // Sequential names go on from the restored cversion.
        create(owner, "/app/lock-", CreateMode::EphemeralSequential, 200),
        // The ephemeral index was rebuilt: the close deletes all three.
        Txn::CloseSession { id: owner },
        create(owner, "/app/x", CreateMode::Persistent, 201),
    ];
    for (zxid, txn) in (9..).zip(&further) {
        let (a, b) = (r.apply(zxid, txn), back.apply(zxid, txn));
        assert_eq!(a, b, "{txn:?}");
        assert_eq!(r.export(), back.export());
        match (zxid, &b.result) {
            (9, Ok(Outcome::SessionCreated { id, .. })) => {
                assert_eq!(*id, SessionId::from_u64(FIRST + 3));
            }
            (10, Ok(Outcome::NodeCreated { path, .. })) => {
                assert_eq!(path, "/app/lock-0000000002");
            }
            (11, Ok(Outcome::SessionClosed { ephemerals, .. })) => {
                assert_eq!(
                    ephemerals,
                    &["/app/e", "/app/lock-0000000000", "/app/lock-0000000002"]
                );
            }
            (12, Err(TxnError::SessionExpired { id })) => assert_eq!(*id, owner),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(r.tree(), back.tree());
}

#[test]
fn sessions_need_a_genesis_and_must_be_below_the_high_water_mark() {
    let snapshot = sample().export();
    let id = first_id();
    let without_genesis = ReplicaSnapshot {
        genesis: None,
        ..snapshot.clone()
    };
    assert_eq!(
        Replica::restore(without_genesis).err(),
        Some(RestoreError::SessionWithoutGenesis { id })
    );
    let mark = SessionId::from_u64(FIRST + 9);
    let mark_without_genesis = ReplicaSnapshot {
        high_water: Some(mark),
        ..Replica::uninitialized().export()
    };
    assert_eq!(
        Replica::restore(mark_without_genesis).err(),
        Some(RestoreError::SessionWithoutGenesis { id: mark })
    );

    let mut twice = snapshot.clone();
    twice.sessions.push(twice.sessions[0]);
    assert_eq!(
        Replica::restore(twice).err(),
        Some(RestoreError::DuplicateSession { id })
    );

    let newest = SessionId::from_u64(FIRST + 1);
    let mark_back = ReplicaSnapshot {
        high_water: Some(first_id()),
        ..snapshot.clone()
    };
    assert_eq!(
        Replica::restore(mark_back).err(),
        Some(RestoreError::SessionAboveHighWater {
            id: newest,
            high_water: Some(first_id())
        })
    );
    let no_mark = ReplicaSnapshot {
        high_water: None,
        ..snapshot
    };
    let refused = Replica::restore(no_mark).err();
    assert_eq!(
        refused,
        Some(RestoreError::SessionAboveHighWater {
            id,
            high_water: None
        })
    );
    assert_eq!(
        refused.map(|e| e.to_string()).as_deref(),
        Some("snapshot session 0x0100000000010000 is above the id high-water mark (none)")
    );
}

#[test]
fn ephemerals_need_their_owner_held() {
    let mut snapshot = sample().export();
    snapshot.sessions.retain(|entry| entry.id != first_id());
    assert_eq!(
        Replica::restore(snapshot).err(),
        Some(RestoreError::OwnerNotHeld {
            path: "/app/e".into(),
            owner: first_id()
        })
    );
    // Held by another session than the one recorded: refused too.
    let mut snapshot = sample().export();
    let stranger = SessionId::from_u64(FIRST + 2);
    for node in &mut snapshot.nodes {
        if node.stat.ephemeral_owner != 0 {
            node.stat.ephemeral_owner = stranger.as_u64();
        }
    }
    assert_eq!(
        Replica::restore(snapshot).err(),
        Some(RestoreError::OwnerNotHeld {
            path: "/app/e".into(),
            owner: stranger
        })
    );
}

#[test]
fn the_zxid_cannot_be_behind_a_node() {
    let snapshot = sample().export();
    let behind = ReplicaSnapshot {
        zxid: 6,
        ..snapshot.clone()
    };
    // /app's pzxid is 7 (its last child created at 7), and so is /app/e's czxid.
    assert_eq!(
        Replica::restore(behind).err(),
        Some(RestoreError::ZxidBehindNode {
            path: "/app".into(),
            node_zxid: 7,
            zxid: 6
        })
    );
    let mut mzxid_ahead = snapshot;
    for node in &mut mzxid_ahead.nodes {
        if node.path == "/" {
            node.stat.mzxid = 99;
        }
    }
    let refused = Replica::restore(mzxid_ahead).err();
    assert_eq!(
        refused,
        Some(RestoreError::ZxidBehindNode {
            path: "/".into(),
            node_zxid: 99,
            zxid: 8
        })
    );
    assert_eq!(
        refused.map(|e| e.to_string()).as_deref(),
        Some("snapshot zxid 8 is below zxid 99 of node /")
    );
}

#[test]
fn tree_problems_are_refused_through_the_replica() {
    let mut snapshot = sample().export();
    snapshot.nodes.retain(|node| node.path != "/app");
    assert_eq!(
        Replica::restore(snapshot).err(),
        Some(RestoreError::MissingParent {
            path: "/app/e".into(),
            parent: "/app".into()
        })
    );
    // An entry with a session the tree does not mention is fine.
    let mut snapshot = sample().export();
    let extra = SessionEntry {
        id: SessionId::from_u64(FIRST - 5),
        timeout: Duration::from_secs(2),
        owner: server(2),
    };
    snapshot.sessions.insert(0, extra);
    assert!(Replica::restore(snapshot).is_ok());
    // And a genesis carries its own secret.
    let other = Genesis {
        secret: PasswordSecret::new(&[1; 16]).expect("long enough"),
        first_id: first_id(),
    };
    let back = restored(ReplicaSnapshot {
        genesis: Some(other.clone()),
        ..sample().export()
    });
    assert_eq!(back.genesis(), Some(&other));
}
