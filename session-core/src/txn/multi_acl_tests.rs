//! Unit tests of the transactions ZooKeeper 3.9 clients need beyond plain
//! node writes: access control lists (zookeeper-wire.md §9), multi (§5, "multi
//! is atomic"), setACL, containers and TTL nodes (§8).

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::NodeKind;

const WALL: i64 = 1_700_000_000_000;

struct Env {
    policy: TimeoutPolicy,
    limits: TreeLimits,
}

impl Env {
    fn new() -> Self {
        Self {
            policy: TimeoutPolicy::new(Duration::from_secs(1)).expect("valid tick"),
            limits: TreeLimits::default(),
        }
    }

    fn ctx<'a>(&'a self, auth: &'a [Id]) -> Context<'a> {
        Context {
            server: ServerId::new(1).expect("in range"),
            policy: &self.policy,
            limits: &self.limits,
            wall_ms: WALL,
            auth,
        }
    }
}

fn replica() -> Replica {
    let secret = PasswordSecret::new(&[3; 32]).expect("long enough");
    Replica::new(secret, SessionId::from_u64(0x0100_0000_0000_0000))
}

fn run(replica: &mut Replica, op: Op, ctx: &Context<'_>) -> Result<Outcome, TxnError> {
    let txn = prepare(replica, op, ctx)?.expect("a write");
    let zxid = replica.zxid() + 1;
    replica.apply(zxid, &txn).result
}

fn session(replica: &mut Replica, ctx: &Context<'_>) -> SessionId {
    let op = Op::CreateSession {
        requested: Duration::from_secs(6),
    };
    match run(replica, op, ctx) {
        Ok(Outcome::SessionCreated { id, .. }) => id,
        other => panic!("{other:?}"),
    }
}

fn create(session: SessionId, path: &str, acl: Vec<Acl>) -> Op {
    Op::Create {
        session,
        path: path.into(),
        data: Bytes::from_static(b"d"),
        mode: CreateMode::Persistent,
        acl,
    }
}

fn set(session: SessionId, path: &str) -> Op {
    Op::SetData {
        session,
        path: path.into(),
        data: Bytes::from_static(b"new"),
        version: None,
    }
}

fn alice() -> Vec<Id> {
    vec![
        Id::new("ip", "127.0.0.1"),
        Id::new("digest", "alice:digest-of-alice-password"),
    ]
}

fn stranger() -> Vec<Id> {
    vec![Id::new("ip", "127.0.0.1")]
}

#[test]
fn a_digest_acl_refuses_a_session_without_the_credential_at_prepare_and_at_apply() {
    let env = Env::new();
    let (alice, stranger) = (alice(), stranger());
    let mut replica = replica();
    let owner = session(&mut replica, &env.ctx(&alice));
    let other = session(&mut replica, &env.ctx(&stranger));
    run(
        &mut replica,
        create(owner, "/secret", Acl::creator_all()),
        &env.ctx(&alice),
    )
    .expect("as set up");
    let (acl, _) = replica.tree().acl("/secret").expect("as set up");
    assert_eq!(acl, vec![Acl::new(perms::ALL, alice[1].clone())]);

    // Refused at prepare: nothing is proposed.
    let refused = prepare(&replica, set(other, "/secret"), &env.ctx(&stranger));
    assert_eq!(
        refused,
        Err(TxnError::NoAuth {
            path: "/secret".into(),
            wanted: perms::WRITE
        })
    );
    let child = create(other, "/secret/x", Acl::open());
    assert!(matches!(
        prepare(&replica, child, &env.ctx(&stranger)),
        Err(TxnError::NoAuth {
            wanted: perms::CREATE,
            ..
        })
    ));
    // The owner with the credential may.
    assert!(run(&mut replica, set(owner, "/secret"), &env.ctx(&alice)).is_ok());

    // Prepared while the list was open, applied after it was closed: apply
    // refuses, because the write carried no ids.
    run(
        &mut replica,
        create(owner, "/later", Acl::open()),
        &env.ctx(&alice),
    )
    .expect("as set up");
    let early = prepare(&replica, set(other, "/later"), &env.ctx(&stranger))
        .expect("as set up")
        .expect("as set up");
    let close = Op::SetAcl {
        session: owner,
        path: "/later".into(),
        acl: Acl::creator_all(),
        version: Some(0),
    };
    assert!(matches!(
        run(&mut replica, close, &env.ctx(&alice)),
        Ok(Outcome::AclSet { stat }) if stat.aversion == 1
    ));
    let zxid = replica.zxid() + 1;
    assert!(matches!(
        replica.apply(zxid, &early).result,
        Err(TxnError::NoAuth { .. })
    ));
}

#[test]
fn set_acl_checks_admin_and_the_acl_version_and_fixes_up_the_list() {
    let env = Env::new();
    let (alice, stranger) = (alice(), stranger());
    let mut replica = replica();
    let owner = session(&mut replica, &env.ctx(&alice));
    let read_only = vec![Acl::new(perms::READ, Id::anyone())];
    run(
        &mut replica,
        create(owner, "/r", read_only),
        &env.ctx(&alice),
    )
    .expect("as set up");
    let set_acl = |version| Op::SetAcl {
        session: owner,
        path: "/r".into(),
        acl: Acl::open(),
        version,
    };
    assert!(matches!(
        run(&mut replica, set_acl(None), &env.ctx(&alice)),
        Err(TxnError::NoAuth {
            wanted: perms::ADMIN,
            ..
        })
    ));
    run(
        &mut replica,
        create(owner, "/o", Acl::open()),
        &env.ctx(&alice),
    )
    .expect("as set up");
    let bad_version = Op::SetAcl {
        session: owner,
        path: "/o".into(),
        acl: Acl::read_only(),
        version: Some(3),
    };
    assert!(matches!(
        run(&mut replica, bad_version, &env.ctx(&alice)),
        Err(TxnError::Tree(TreeError::BadVersion {
            expected: 3,
            actual: 0,
            ..
        }))
    ));
    let auth_without_ids = Op::SetAcl {
        session: owner,
        path: "/o".into(),
        acl: Acl::creator_all(),
        version: None,
    };
    assert_eq!(
        run(&mut replica, auth_without_ids, &env.ctx(&stranger)),
        Err(TxnError::InvalidAcl(AclError::NotAuthenticated))
    );
    let empty = create(owner, "/e", Vec::new());
    assert_eq!(
        run(&mut replica, empty, &env.ctx(&alice)),
        Err(TxnError::InvalidAcl(AclError::Empty))
    );
}

#[test]
fn a_failed_multi_changes_nothing_but_the_zxid_and_names_the_failing_op() {
    let env = Env::new();
    let auth = stranger();
    let ctx = env.ctx(&auth);
    let mut replica = replica();
    let id = session(&mut replica, &ctx);
    run(&mut replica, create(id, "/a", Acl::open()), &ctx).expect("as set up");
    run(&mut replica, create(id, "/a/old", Acl::open()), &ctx).expect("as set up");
    let before = replica.export();
    let ops = vec![
        MultiOp::Create {
            path: "/b".into(),
            data: Bytes::new(),
            mode: CreateMode::Persistent,
            acl: Acl::open(),
        },
        MultiOp::Create {
            path: "/b/q-".into(),
            data: Bytes::new(),
            mode: CreateMode::EphemeralSequential,
            acl: Acl::open(),
        },
        MultiOp::Delete {
            path: "/a/old".into(),
            version: Some(0),
        },
        MultiOp::SetData {
            path: "/a".into(),
            data: Bytes::from_static(b"x"),
            version: None,
        },
        MultiOp::Check {
            path: "/a".into(),
            version: Some(7),
        },
    ];
    let txn = prepare(
        &replica,
        Op::Multi {
            session: id,
            ops: ops.clone(),
        },
        &ctx,
    )
    .expect("as set up")
    .expect("as set up");
    let zxid = replica.zxid() + 1;
    let applied = replica.apply(zxid, &txn);
    assert!(matches!(
        &applied.result,
        Err(TxnError::Multi { index: 4, error }) if matches!(**error, TxnError::Tree(TreeError::BadVersion { .. }))
    ));
    assert!(applied.changes.is_empty(), "a failed multi fires nothing");
    let after = replica.export();
    assert_eq!(after.nodes, before.nodes, "the tree is as before");
    assert_eq!(after.zxid, zxid, "the zxid is consumed");
    assert_eq!(replica.tree().ephemeral_count(id.as_u64()), 0);

    // The same with the right version applies every op, in order.
    let mut ops = ops;
    ops[4] = MultiOp::Check {
        path: "/a".into(),
        version: Some(1),
    };
    let outcome = run(&mut replica, Op::Multi { session: id, ops }, &ctx).expect("as set up");
    let Outcome::Multi { results } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(matches!(&results[1], Outcome::NodeCreated { path, .. } if path == "/b/q-0000000000"));
    assert_eq!(results[2], Outcome::NodeDeleted);
    assert!(matches!(&results[3], Outcome::DataSet { stat } if stat.version == 1));
    assert_eq!(results[4], Outcome::Checked);
    assert_eq!(replica.tree().ephemeral_count(id.as_u64()), 1);
    assert!(replica.tree().stat("/a/old").is_none());
}

#[test]
fn a_multi_refused_at_prepare_names_its_operation() {
    let env = Env::new();
    let auth = stranger();
    let ctx = env.ctx(&auth);
    let mut replica = replica();
    let id = session(&mut replica, &ctx);
    let ops = vec![
        MultiOp::Check {
            path: "/".into(),
            version: None,
        },
        MultiOp::Create {
            path: "/x".into(),
            data: Bytes::new(),
            mode: CreateMode::Persistent,
            acl: Acl::creator_all(),
        },
    ];
    assert_eq!(
        prepare(&replica, Op::Multi { session: id, ops }, &ctx),
        Err(TxnError::Multi {
            index: 1,
            error: Box::new(TxnError::InvalidAcl(AclError::NotAuthenticated))
        })
    );
}

#[test]
fn containers_and_ttl_nodes_go_when_due_and_not_before() {
    let env = Env::new();
    let auth = stranger();
    let ctx = env.ctx(&auth);
    let mut replica = replica();
    let id = session(&mut replica, &ctx);
    let make = |replica: &mut Replica, path: &str, mode| {
        let op = Op::Create {
            session: id,
            path: path.into(),
            data: Bytes::new(),
            mode,
            acl: Acl::open(),
        };
        run(replica, op, &ctx).expect("as set up");
    };
    make(&mut replica, "/c", CreateMode::Container);
    make(
        &mut replica,
        "/t",
        CreateMode::PersistentWithTtl { ttl_ms: 1_000 },
    );
    assert_eq!(replica.tree().kind("/c"), Some(NodeKind::Container));
    // A container that never had a child stays; a TTL node stays for its TTL.
    assert!(replica.tree().expired_nodes(WALL + 1_000, 10).is_empty());
    assert_eq!(
        replica.tree().expired_nodes(WALL + 1_001, 10),
        vec!["/t".to_string()]
    );
    make(&mut replica, "/c/e", CreateMode::Ephemeral);
    assert!(replica.tree().expired_nodes(WALL, 10).is_empty());
    let close = Op::CloseSession { id };
    run(&mut replica, close, &ctx).expect("as set up");
    assert_eq!(
        replica.tree().expired_nodes(WALL, 10),
        vec!["/c".to_string()]
    );

    let reap = |replica: &mut Replica, path: &str, wall_ms| {
        let ctx = Context {
            wall_ms,
            ..env.ctx(&auth)
        };
        run(replica, Op::DeleteReapable { path: path.into() }, &ctx)
    };
    assert!(matches!(
        reap(&mut replica, "/t", WALL + 500),
        Err(TxnError::Tree(TreeError::NotReapable { .. }))
    ));
    assert_eq!(reap(&mut replica, "/c", WALL), Ok(Outcome::NodeDeleted));
    assert_eq!(
        reap(&mut replica, "/t", WALL + 2_000),
        Ok(Outcome::NodeDeleted)
    );
    assert_eq!(replica.tree().node_count(), 1);
    assert_eq!(replica.tree().reapable_count(), 0);
}

#[test]
fn a_ttl_out_of_range_is_refused_and_the_owner_encodes_the_kind() {
    let env = Env::new();
    let auth = stranger();
    let ctx = env.ctx(&auth);
    let mut replica = replica();
    let id = session(&mut replica, &ctx);
    for ttl_ms in [0, MAX_TTL + 1] {
        let op = Op::Create {
            session: id,
            path: "/t".into(),
            data: Bytes::new(),
            mode: CreateMode::PersistentWithTtl { ttl_ms },
            acl: Acl::open(),
        };
        assert_eq!(
            run(&mut replica, op, &ctx),
            Err(TxnError::Tree(TreeError::BadTtl { ttl_ms }))
        );
    }
    let op = Op::Create {
        session: id,
        path: "/s-".into(),
        data: Bytes::new(),
        mode: CreateMode::PersistentSequentialWithTtl { ttl_ms: 42 },
        acl: Acl::open(),
    };
    let Ok(Outcome::NodeCreated { path, stat }) = run(&mut replica, op, &ctx) else {
        panic!()
    };
    assert_eq!(path, "/s-0000000000");
    assert_eq!(stat.ephemeral_owner, crate::TTL_OWNER_PREFIX | 42);
    assert_eq!(replica.tree().descendant_count("/").expect("as set up"), 1);
}

const MAX_TTL: u64 = crate::MAX_TTL_MS;

mod atomic {
    //! A multi is its operations applied in order under one zxid, or
    //! nothing at all (zookeeper-wire.md §5): checked against the tree's own
    //! writes, one by one, over random operations.
    use proptest::prelude::*;

    use super::*;

    const PATHS: [&str; 5] = ["/a", "/a/b", "/c", "/c/d", "/a/b/x"];

    fn op() -> impl Strategy<Value = MultiOp> {
        let path = prop::sample::select(&PATHS[..]).prop_map(str::to_owned);
        let version = prop_oneof![Just(None), Just(Some(0)), Just(Some(1))];
        prop_oneof![
            (path.clone(), any::<bool>()).prop_map(|(path, ephemeral)| MultiOp::Create {
                path,
                data: Bytes::from_static(b"c"),
                mode: if ephemeral {
                    CreateMode::Ephemeral
                } else {
                    CreateMode::Persistent
                },
                acl: Acl::open(),
            }),
            (path.clone(), version.clone())
                .prop_map(|(path, version)| MultiOp::Delete { path, version }),
            (path.clone(), version.clone()).prop_map(|(path, version)| MultiOp::SetData {
                path,
                data: Bytes::from_static(b"s"),
                version,
            }),
            (path, version).prop_map(|(path, version)| MultiOp::Check { path, version }),
        ]
    }

    /// The tree's own write for one operation, under `zxid`.
    fn one_by_one(
        tree: &mut DataTree,
        op: &MultiOp,
        owner: u64,
        zxid: u64,
    ) -> Result<(), TreeError> {
        match op {
            MultiOp::Create {
                path, data, mode, ..
            } => tree
                .create(path, data.clone(), *mode, owner, zxid, WALL)
                .map(|_| ()),
            MultiOp::Delete { path, version } => tree.delete(path, *version, zxid).map(|_| ()),
            MultiOp::SetData {
                path,
                data,
                version,
            } => tree
                .set_data(path, data.clone(), *version, zxid, WALL)
                .map(|_| ()),
            MultiOp::Check { path, version } => tree.check_version(path, *version),
        }
    }

    proptest! {
        #[test]
        fn a_multi_is_its_operations_in_order_or_nothing(
            setup in prop::collection::vec(op(), 0..6),
            ops in prop::collection::vec(op(), 1..6),
        ) {
            let env = Env::new();
            let auth = stranger();
            let ctx = env.ctx(&auth);
            let mut replica = replica();
            let id = session(&mut replica, &ctx);
            for op in setup {
                let _ = run(&mut replica, Op::Multi { session: id, ops: vec![op] }, &ctx);
            }
            let before = replica.tree().export();
            let mut expected = replica.tree().clone();
            let zxid = replica.zxid() + 1;
            let failed_at = ops
                .iter()
                .position(|op| one_by_one(&mut expected, op, id.as_u64(), zxid).is_err());
            let txn = prepare(&replica, Op::Multi { session: id, ops }, &ctx)
                .expect("prepared")
                .expect("a write");
            let applied = replica.apply(zxid, &txn);
            match failed_at {
                Some(index) => {
                    prop_assert!(
                        matches!(&applied.result, Err(TxnError::Multi { index: at, .. }) if *at == index),
                        "{:?}", applied.result
                    );
                    prop_assert_eq!(replica.tree().export(), before);
                    prop_assert!(applied.changes.is_empty());
                }
                None => {
                    prop_assert!(applied.result.is_ok(), "{:?}", applied.result);
                    prop_assert_eq!(replica.tree().export(), expected.export());
                }
            }
            // The derived indexes agree with the nodes, whatever happened.
            let restored = DataTree::restore(replica.tree().export()).expect("consistent");
            prop_assert_eq!(&restored, replica.tree());
        }
    }
}
