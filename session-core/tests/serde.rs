//! With the `serde` feature: transactions of every kind and replica
//! snapshots round-trip through a compact binary format (postcard) and a
//! human-readable one (JSON); ids, server ids and secrets are validated on
//! the way in.
#![cfg(feature = "serde")]

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use session_core::{
    Acl, CreateMode, Id, MultiOp, PasswordSecret, Replica, ReplicaSnapshot, ServerId, SessionId,
    Txn, perms,
};

const FIRST: u64 = 0x0100_0000_0001_0000;

fn server(id: u64) -> ServerId {
    ServerId::new(id).expect("in range")
}

fn secret() -> PasswordSecret {
    PasswordSecret::new(&[0xa5; 32]).expect("long enough")
}

/// Serializes `value` both ways, and checks it comes back equal.
fn round_trip<T>(value: &T) -> (Vec<u8>, String)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let binary = postcard::to_allocvec(value).expect("postcard serializes");
    let back: T = postcard::from_bytes(&binary).expect("postcard deserializes");
    assert_eq!(&back, value, "postcard");
    let json = serde_json::to_string(value).expect("JSON serializes");
    let back: T = serde_json::from_str(&json).expect("JSON deserializes");
    assert_eq!(&back, value, "JSON: {json}");
    (binary, json)
}

/// The variant's name; a new variant fails to compile here until the test
/// below covers it.
fn kind(txn: &Txn) -> &'static str {
    match txn {
        Txn::Genesis { .. } => "Genesis",
        Txn::CreateSession { .. } => "CreateSession",
        Txn::UpdateSession { .. } => "UpdateSession",
        Txn::CloseSession { .. } => "CloseSession",
        Txn::CreateNode { .. } => "CreateNode",
        Txn::DeleteNode { .. } => "DeleteNode",
        Txn::SetData { .. } => "SetData",
        Txn::SetAcl { .. } => "SetAcl",
        Txn::Multi { .. } => "Multi",
        Txn::DeleteReapable { .. } => "DeleteReapable",
    }
}

fn every_txn() -> Vec<Txn> {
    let id = SessionId::from_u64(FIRST);
    vec![
        Txn::Genesis {
            secret: secret(),
            first_id: id,
        },
        Txn::CreateSession {
            min_id: id,
            timeout: Duration::from_millis(6_500),
            owner: server(1),
        },
        Txn::UpdateSession {
            id,
            timeout: Duration::from_secs(4),
            owner: server(255),
        },
        Txn::CloseSession { id },
        Txn::CreateNode {
            session: id,
            owner: server(2),
            path: "/app/lock-".into(),
            data: Bytes::from_static(b"\x00\xffbinary"),
            mode: CreateMode::EphemeralSequential,
            acl: Acl::open(),
            auth: Vec::new(),
            time_ms: 1_700_000_000_000,
        },
        Txn::CreateNode {
            session: id,
            owner: server(2),
            path: "/app".into(),
            data: Bytes::new(),
            mode: CreateMode::PersistentWithTtl { ttl_ms: 60_000 },
            acl: vec![Acl::new(perms::READ, Id::new("digest", "alice:hash"))],
            auth: vec![Id::new("ip", "10.0.0.1")],
            time_ms: -1,
        },
        Txn::DeleteNode {
            session: id,
            owner: server(1),
            path: "/app".into(),
            version: Some(-1),
            auth: Vec::new(),
        },
        Txn::DeleteNode {
            session: id,
            owner: server(1),
            path: "/app".into(),
            version: None,
            auth: Vec::new(),
        },
        Txn::SetData {
            session: id,
            owner: server(3),
            path: "/app".into(),
            data: Bytes::from_static(b"new"),
            version: Some(4),
            auth: Vec::new(),
            time_ms: 1_700_000_000_001,
        },
        Txn::SetAcl {
            session: id,
            owner: server(1),
            path: "/app".into(),
            acl: Acl::read_only(),
            version: Some(0),
            auth: Vec::new(),
        },
        Txn::Multi {
            session: id,
            owner: server(1),
            ops: vec![
                MultiOp::Check {
                    path: "/app".into(),
                    version: Some(1),
                },
                MultiOp::Delete {
                    path: "/app/x".into(),
                    version: None,
                },
            ],
            auth: Vec::new(),
            time_ms: 1_700_000_000_002,
        },
        Txn::DeleteReapable {
            path: "/c".into(),
            time_ms: 1_700_000_000_003,
        },
    ]
}

#[test]
fn every_transaction_round_trips() {
    let txns = every_txn();
    let kinds: BTreeSet<&str> = txns.iter().map(kind).collect();
    assert_eq!(kinds.len(), 10, "every variant: {kinds:?}");
    for txn in &txns {
        let (binary, json) = round_trip(txn);
        assert!(binary.len() < 80, "{txn:?} takes {} bytes", binary.len());
        assert!(json.contains(kind(txn)), "{json}");
    }
    // Ids are plain numbers, server ids small ones.
    let (_, json) = round_trip(&Txn::CloseSession {
        id: SessionId::from_u64(FIRST),
    });
    assert_eq!(json, format!(r#"{{"CloseSession":{{"id":{FIRST}}}}}"#));
    let (binary, _) = round_trip(&server(7));
    assert_eq!(binary, [7]);
}

/// A replica from genesis with sessions, persistent and ephemeral nodes and
/// data.
fn replica() -> Replica {
    let mut txns = every_txn();
    txns.truncate(2);
    txns.push(Txn::CreateSession {
        min_id: SessionId::from_u64(FIRST),
        timeout: Duration::from_secs(9),
        owner: server(2),
    });
    let id = SessionId::from_u64(FIRST);
    for (path, mode) in [
        ("/app", CreateMode::Persistent),
        ("/app/lock-", CreateMode::EphemeralSequential),
        ("/app/cfg", CreateMode::Persistent),
    ] {
        txns.push(Txn::CreateNode {
            session: id,
            owner: server(1),
            path: path.into(),
            data: Bytes::from(path.as_bytes().to_vec()),
            mode,
            acl: Acl::open(),
            auth: Vec::new(),
            time_ms: 1_700_000_000_000,
        });
    }
    let mut replica = Replica::uninitialized();
    for (zxid, txn) in (1..).zip(&txns) {
        let applied = replica.apply(zxid, txn);
        assert!(applied.result.is_ok(), "{txn:?}: {applied:?}");
    }
    replica
}

#[test]
fn a_snapshot_round_trips_and_restores() {
    let replica = replica();
    let snapshot = replica.export();
    assert_eq!(snapshot.sessions.len(), 2);
    assert_eq!(snapshot.nodes.len(), 4);
    let (binary, json) = round_trip(&snapshot);
    assert!(json.contains(r#""first_id":72057594037993472"#), "{json}");
    let back: ReplicaSnapshot = postcard::from_bytes(&binary).expect("deserializes");
    let restored = Replica::restore(back).expect("valid");
    assert_eq!(restored.export(), snapshot);
    assert_eq!(restored.tree(), replica.tree());
    // Before a genesis too.
    round_trip(&Replica::uninitialized().export());
}

#[test]
fn bad_values_are_refused_on_the_way_in() {
    // Server id 0.
    assert!(postcard::from_bytes::<ServerId>(&[0]).is_err());
    let err = serde_json::from_str::<ServerId>("0").expect_err("0 is refused");
    assert!(err.to_string().contains("1..=255"), "{err}");
    assert!(serde_json::from_str::<ServerId>("256").is_err());
    assert_eq!(
        serde_json::from_str::<ServerId>("255").ok(),
        Some(server(255))
    );
    // A secret shorter than 16 bytes.
    let short = postcard::to_allocvec(&Bytes::from_static(&[1; 15])).expect("serializes");
    assert!(postcard::from_bytes::<PasswordSecret>(&short).is_err());
    let err = serde_json::from_str::<PasswordSecret>(&format!("{:?}", [1_u8; 15]))
        .expect_err("15 bytes are refused");
    assert!(err.to_string().contains("at least 16 bytes"), "{err}");
    let long = postcard::to_allocvec(&Bytes::from_static(&[1; 16])).expect("serializes");
    assert_eq!(
        postcard::from_bytes::<PasswordSecret>(&long).ok(),
        PasswordSecret::new(&[1; 16]).ok()
    );
    // Inside a transaction.
    let json = serde_json::to_string(&every_txn()[0]).expect("serializes");
    let shortened = json.replacen("165,", "", 20);
    assert!(
        serde_json::from_str::<Txn>(&shortened).is_err(),
        "{shortened}"
    );
    let json = serde_json::to_string(&every_txn()[1]).expect("serializes");
    let zero_owner = json.replace(r#""owner":1"#, r#""owner":0"#);
    assert_ne!(json, zero_owner);
    assert!(serde_json::from_str::<Txn>(&zero_owner).is_err());
}
