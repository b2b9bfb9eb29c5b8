//! Unit tests of prepare and apply: every error, ids, owners, closes, zxids,
//! sequential names, and that apply re-checks what prepare saw.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::{EventKind, PathError, WatchKind, WatchTable};

const WALL: i64 = 1_700_000_000_000;

fn server(id: u64) -> ServerId {
    ServerId::new(id).expect("test server ids are in range")
}

fn secret() -> PasswordSecret {
    PasswordSecret::new(&[0x5e; 32]).expect("long enough")
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The first id of server 1 started a minute before `WALL`.
fn first_id() -> SessionId {
    initial_session_id(server(1), (WALL - 60_000) as u64, None).expect("ids left")
}

fn replica() -> Replica {
    Replica::new(secret(), first_id())
}

/// A server's configuration for the tests: tick 1 s (timeouts 2..=20 s).
struct Env {
    policy: TimeoutPolicy,
    limits: TreeLimits,
}

impl Env {
    fn new() -> Self {
        Self {
            policy: TimeoutPolicy::new(ms(1000)).expect("valid tick"),
            limits: TreeLimits::default(),
        }
    }

    fn ctx(&self, server_id: u64, wall_ms: i64) -> Context<'_> {
        Context {
            auth: &[],
            server: server(server_id),
            policy: &self.policy,
            limits: &self.limits,
            wall_ms,
        }
    }
}

/// Prepares `op` (which must need a transaction) and applies it at the next zxid.
fn run(replica: &mut Replica, op: Op, ctx: &Context<'_>) -> Applied {
    let txn = match prepare(replica, op, ctx) {
        Ok(Some(txn)) => txn,
        other => panic!("prepare: {other:?}"),
    };
    let zxid = replica.zxid() + 1;
    replica.apply(zxid, &txn)
}

/// Opens a session from `ctx`'s server.
fn open(replica: &mut Replica, ctx: &Context<'_>) -> (SessionId, SessionPassword) {
    let applied = run(
        replica,
        Op::CreateSession {
            requested: ms(6000),
        },
        ctx,
    );
    match applied.result {
        Ok(Outcome::SessionCreated { id, password, .. }) => (id, password),
        other => panic!("create session: {other:?}"),
    }
}

fn create(session: SessionId, path: &str, mode: CreateMode) -> Op {
    Op::Create {
        acl: crate::Acl::open(),
        session,
        path: path.into(),
        data: Bytes::new(),
        mode,
    }
}

/// Creates a node that must be created (test setup).
fn must_create(
    replica: &mut Replica,
    id: SessionId,
    path: &str,
    mode: CreateMode,
    ctx: &Context<'_>,
) {
    let applied = run(replica, create(id, path, mode), ctx);
    assert!(applied.result.is_ok(), "create {path}: {applied:?}");
}

fn created_path(applied: &Applied) -> String {
    match &applied.result {
        Ok(Outcome::NodeCreated { path, .. }) => path.clone(),
        other => panic!("create: {other:?}"),
    }
}

fn prepare_err(replica: &Replica, op: Op, ctx: &Context<'_>) -> TxnError {
    match prepare(replica, op, ctx) {
        Err(error) => error,
        Ok(txn) => panic!("prepared {txn:?}"),
    }
}

// ---- sessions ----

#[test]
fn a_server_mints_consecutive_ids_whatever_its_clock_does() {
    let env = Env::new();
    let mut r = replica();
    let mut ids = Vec::new();
    for (step, wall) in [WALL, WALL + 5_000, WALL - 90_000, WALL + 86_400_000]
        .into_iter()
        .enumerate()
    {
        let ctx = env.ctx(1, wall);
        let applied = run(&mut r, Op::CreateSession { requested: ms(500) }, &ctx);
        let Ok(Outcome::SessionCreated { id, .. }) = applied.result else {
            panic!("step {step}: {applied:?}");
        };
        ids.push(id.as_u64());
    }
    let first = first_id().as_u64();
    assert_eq!(ids, vec![first, first + 1, first + 2, first + 3]);
    // Another server's first session is seeded from its clock, above all.
    let ctx = env.ctx(2, WALL);
    let applied = run(&mut r, Op::CreateSession { requested: ms(500) }, &ctx);
    let Ok(Outcome::SessionCreated { id, .. }) = applied.result else {
        panic!("{applied:?}");
    };
    assert_eq!(
        Some(id),
        initial_session_id(server(2), WALL as u64, None),
        "server 2's floor is above server 1's ids"
    );
}

#[test]
fn create_session_negotiates_mints_and_records_the_owner() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let txn = prepare(&r, Op::CreateSession { requested: ms(500) }, &ctx);
    // Server 1's ids start at the replica's first id, whatever the clock says
    // now; the clock only seeds another server's first id here.
    let min_id = first_id();
    assert_eq!(
        txn,
        Ok(Some(Txn::CreateSession {
            min_id,
            timeout: ms(2000),
            owner: server(1),
        }))
    );
    let applied = run(&mut r, Op::CreateSession { requested: ms(500) }, &ctx);
    assert_eq!(applied.zxid, 1);
    assert!(applied.changes.is_empty());
    let Ok(Outcome::SessionCreated {
        id,
        password,
        timeout,
    }) = applied.result
    else {
        panic!("{applied:?}");
    };
    assert_eq!((id, timeout), (min_id, ms(2000)));
    assert!(r.secret().expect("initialized").verify(id, &password));
    assert_eq!(
        r.password(id).map(|p| *p.as_bytes()),
        Some(*password.as_bytes())
    );
    assert_eq!(
        r.session(id),
        Some(&SessionEntry {
            id,
            timeout: ms(2000),
            owner: server(1)
        })
    );
    assert_eq!(
        (r.session_count(), r.high_water(), r.zxid()),
        (1, Some(id), 1)
    );
    // The upper bound clamps too.
    let long = run(
        &mut r,
        Op::CreateSession {
            requested: ms(99_000),
        },
        &ctx,
    );
    assert!(
        matches!(long.result, Ok(Outcome::SessionCreated { timeout, .. }) if timeout == ms(20_000))
    );
}

#[test]
fn ids_strictly_increase_and_never_collide_when_prepared_from_the_same_state() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let op = || Op::CreateSession {
        requested: ms(5000),
    };
    let a = prepare(&r, op(), &ctx);
    let b = prepare(&r, op(), &ctx);
    assert_eq!(a, b, "same state, same clock: the same transaction");
    let (Ok(Some(a)), Ok(Some(b))) = (a, b) else {
        panic!("both prepare");
    };
    let first = r.apply(1, &a);
    let second = r.apply(2, &b);
    let id = |applied: &Applied| match applied.result {
        Ok(Outcome::SessionCreated { id, .. }) => id,
        ref other => panic!("{other:?}"),
    };
    let (first, second) = (id(&first), id(&second));
    assert_eq!(second.as_u64(), first.as_u64() + 1);
    // A clock that went back does not take ids back.
    let earlier = run(&mut r, op(), &env.ctx(1, WALL - 3_600_000));
    assert_eq!(id(&earlier).as_u64(), second.as_u64() + 1);
    // Another server's floor is higher: ids jump, then keep rising.
    let other = id(&run(&mut r, op(), &env.ctx(2, WALL)));
    assert_eq!(other.server_id(), 2);
    let back = id(&run(&mut r, op(), &env.ctx(1, WALL)));
    assert_eq!(back.as_u64(), other.as_u64() + 1);
    assert_eq!(r.high_water(), Some(back));
    assert_eq!(r.session_count(), 5);
}

#[test]
fn the_first_id_is_the_floor_until_an_id_is_minted() {
    let env = Env::new();
    let mut r = replica();
    // A clock an hour behind the start-up clock.
    let applied = run(
        &mut r,
        Op::CreateSession {
            requested: ms(5000),
        },
        &env.ctx(1, WALL - 3_600_000),
    );
    assert!(matches!(applied.result, Ok(Outcome::SessionCreated { id, .. }) if id == first_id()));
    // A clock before the epoch floors at 0.
    let mut r = Replica::new(secret(), SessionId::from_u64(0));
    let applied = run(
        &mut r,
        Op::CreateSession {
            requested: ms(5000),
        },
        &env.ctx(3, -5),
    );
    assert!(
        matches!(applied.result, Ok(Outcome::SessionCreated { id, .. }) if id.as_u64() == 3 << 56)
    );
}

#[test]
fn ids_exhausted_when_the_counter_would_leave_the_server_byte() {
    let env = Env::new();
    let mut r = replica();
    let last = SessionId::from_u64(0x01ff_ffff_ffff_ffff);
    let txn = Txn::CreateSession {
        min_id: last,
        timeout: ms(5000),
        owner: server(1),
    };
    assert!(r.apply(1, &txn).result.is_ok());
    assert_eq!(r.high_water(), Some(last));
    let op = || Op::CreateSession {
        requested: ms(5000),
    };
    assert_eq!(
        prepare_err(&r, op(), &env.ctx(1, WALL)),
        TxnError::IdsExhausted { server: server(1) }
    );
    // Applied anyway (prepared elsewhere earlier): refused, zxid consumed.
    let before = r.export();
    let refused = r.apply(2, &txn);
    assert_eq!(
        refused.result,
        Err(TxnError::IdsExhausted { server: server(1) })
    );
    assert_eq!(r.zxid(), 2);
    assert_eq!(r.export(), ReplicaSnapshot { zxid: 2, ..before });
    // A server whose floor is above the mark still mints.
    let applied = run(&mut r, op(), &env.ctx(2, WALL));
    assert!(
        matches!(applied.result, Ok(Outcome::SessionCreated { id, .. }) if id.server_id() == 2)
    );
}

#[test]
fn reattach_without_a_change_needs_no_transaction() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, password) = open(&mut r, &ctx);
    let same = Op::Reattach {
        id,
        password,
        requested: ms(6000),
    };
    assert_eq!(prepare(&r, same.clone(), &ctx), Ok(None));
    // A request that negotiates to the same timeout is no change either, and
    // the clock plays no part.
    let clamped = Op::Reattach {
        id,
        password,
        requested: ms(6000),
    };
    assert_eq!(prepare(&r, clamped, &env.ctx(1, WALL + 5)), Ok(None));
    let short = run(
        &mut r,
        Op::Reattach {
            id,
            password,
            requested: ms(1),
        },
        &ctx,
    );
    assert!(short.result.is_ok());
    let shorter = Op::Reattach {
        id,
        password,
        requested: ms(1500),
    };
    assert_eq!(
        prepare(&r, shorter, &ctx),
        Ok(None),
        "both negotiate to the minimum"
    );
    let longer = Op::Reattach {
        id,
        password,
        requested: ms(9000),
    };
    assert_eq!(
        prepare(&r, longer, &ctx),
        Ok(Some(Txn::UpdateSession {
            id,
            timeout: ms(9000),
            owner: server(1)
        }))
    );
    assert_eq!(
        prepare(&r, same, &env.ctx(2, WALL)),
        Ok(Some(Txn::UpdateSession {
            id,
            timeout: ms(6000),
            owner: server(2)
        }))
    );
}

#[test]
fn reattach_moves_the_session_and_reports_the_previous_owner() {
    let env = Env::new();
    let mut r = replica();
    let (id, password) = open(&mut r, &env.ctx(1, WALL));
    let op = Op::Reattach {
        id,
        password,
        requested: ms(12_000),
    };
    let applied = run(&mut r, op, &env.ctx(3, WALL + 10));
    assert_eq!(
        applied.result,
        Ok(Outcome::SessionUpdated {
            id,
            timeout: ms(12_000),
            previous_owner: server(1)
        })
    );
    assert_eq!(
        r.session(id).map(|s| (s.timeout, s.owner)),
        Some((ms(12_000), server(3)))
    );
}

#[test]
fn reattach_refusals_follow_the_trackers_rule() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, password) = open(&mut r, &ctx);
    let wrong = SessionPassword::from_bytes([0; 16]);
    let reattach = |id, password| Op::Reattach {
        id,
        password,
        requested: ms(6000),
    };
    let refused = |r: &Replica, id, password| match prepare_err(r, reattach(id, password), &ctx) {
        TxnError::Reattach(error) => error,
        other => panic!("{other:?}"),
    };
    // Held, wrong password.
    assert_eq!(refused(&r, id, wrong), ReattachError::WrongPassword { id });
    assert_eq!(
        r.check_reattach(id, &wrong).err(),
        Some(ReattachError::WrongPassword { id })
    );
    // Not held but could have been minted here: the password is checked
    // first, so a wrong one reveals nothing.
    let unminted = SessionId::from_u64(id.as_u64() + 100);
    assert_eq!(
        refused(&r, unminted, wrong),
        ReattachError::WrongPassword { id: unminted }
    );
    let right = secret().derive(unminted);
    assert_eq!(
        refused(&r, unminted, right),
        ReattachError::Unknown { id: unminted }
    );
    // Below the first id, or another server byte: unknown before the password.
    let old = SessionId::from_u64(first_id().as_u64() - 1);
    assert_eq!(refused(&r, old, wrong), ReattachError::Unknown { id: old });
    let foreign = SessionId::from_u64((2 << 56) | 5);
    assert_eq!(
        refused(&r, foreign, wrong),
        ReattachError::Unknown { id: foreign }
    );
    // Closed: unknown, with the right password.
    assert!(run(&mut r, Op::CloseSession { id }, &ctx).result.is_ok());
    assert_eq!(refused(&r, id, password), ReattachError::Unknown { id });
    assert_eq!(r.password(id).map(|p| *p.as_bytes()), None);
    assert_eq!(
        r.check_reattach(id, &password).err(),
        Some(ReattachError::Unknown { id })
    );
}

#[test]
fn an_update_applied_after_the_close_is_session_expired() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, password) = open(&mut r, &ctx);
    let op = Op::Reattach {
        id,
        password,
        requested: ms(8000),
    };
    let Ok(Some(update)) = prepare(&r, op, &env.ctx(2, WALL)) else {
        panic!("an update");
    };
    assert!(run(&mut r, Op::CloseSession { id }, &ctx).result.is_ok());
    let applied = r.apply(10, &update);
    assert_eq!(applied.result, Err(TxnError::SessionExpired { id }));
    assert_eq!(r.zxid(), 10);
    assert_eq!(r.session_count(), 0);
}

// ---- owners ----

#[test]
fn node_writes_from_a_server_that_lost_the_session_are_session_moved() {
    let env = Env::new();
    let mut r = replica();
    let (one, two) = (env.ctx(1, WALL), env.ctx(2, WALL));
    let (id, password) = open(&mut r, &one);
    assert!(
        run(&mut r, create(id, "/a", CreateMode::Persistent), &one)
            .result
            .is_ok()
    );
    // Prepared on server 1 while it owns the session...
    let Ok(Some(late_create)) = prepare(&r, create(id, "/b", CreateMode::Ephemeral), &one) else {
        panic!("prepares");
    };
    let late_set = prepare(
        &r,
        Op::SetData {
            session: id,
            path: "/a".into(),
            data: Bytes::from_static(b"x"),
            version: None,
        },
        &one,
    );
    let late_delete = prepare(
        &r,
        Op::Delete {
            session: id,
            path: "/a".into(),
            version: None,
        },
        &one,
    );
    let (Ok(Some(late_set)), Ok(Some(late_delete))) = (late_set, late_delete) else {
        panic!("prepare");
    };
    // ...then the client reattaches on server 2.
    let moved = Op::Reattach {
        id,
        password,
        requested: ms(6000),
    };
    assert!(run(&mut r, moved, &two).result.is_ok());
    let expected = TxnError::SessionMoved {
        id,
        owner: server(2),
    };
    assert_eq!(
        prepare_err(&r, create(id, "/c", CreateMode::Persistent), &one),
        expected
    );
    let before = r.export();
    for (offset, txn) in [late_create, late_set, late_delete].iter().enumerate() {
        let zxid = before.zxid + 1 + offset as u64;
        let applied = r.apply(zxid, txn);
        assert_eq!(applied.result, Err(expected.clone()), "{txn:?}");
        assert!(applied.changes.is_empty());
    }
    assert_eq!(
        r.export(),
        ReplicaSnapshot {
            zxid: before.zxid + 3,
            ..before
        }
    );
    // The new owner writes.
    assert!(
        run(&mut r, create(id, "/c", CreateMode::Persistent), &two)
            .result
            .is_ok()
    );
}

// ---- close ----

#[test]
fn close_deletes_the_ephemerals_under_one_zxid_and_later_creates_are_expired() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, _) = open(&mut r, &ctx);
    let (other, _) = open(&mut r, &ctx);
    must_create(&mut r, id, "/svc", CreateMode::Persistent, &ctx);
    for path in ["/svc/b", "/svc/a"] {
        assert!(
            run(&mut r, create(id, path, CreateMode::Ephemeral), &ctx)
                .result
                .is_ok()
        );
    }
    assert!(
        run(&mut r, create(other, "/svc/o", CreateMode::Ephemeral), &ctx)
            .result
            .is_ok()
    );
    // Prepared before the close, applied after.
    let Ok(Some(late)) = prepare(&r, create(id, "/svc/late", CreateMode::Ephemeral), &ctx) else {
        panic!("prepares");
    };
    let closed = run(&mut r, Op::CloseSession { id }, &ctx);
    let zxid = closed.zxid;
    assert_eq!(
        closed.result,
        Ok(Outcome::SessionClosed {
            id,
            ephemerals: vec!["/svc/a".into(), "/svc/b".into()]
        })
    );
    let kinds: Vec<(EventKind, &str)> = closed.changes.iter().map(|c| (c.kind, &*c.path)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::NodeDeleted, "/svc/a"),
            (EventKind::NodeChildrenChanged, "/svc"),
            (EventKind::NodeDeleted, "/svc/b"),
            (EventKind::NodeChildrenChanged, "/svc"),
        ]
    );
    assert_eq!(
        r.tree().stat("/svc").map(|s| (s.pzxid, s.num_children)),
        Some((zxid, 1))
    );
    assert_eq!(r.tree().ephemeral_count(id.as_u64()), 0);
    assert_eq!(r.tree().ephemeral_count(other.as_u64()), 1);
    assert!(r.session(id).is_none());

    let applied = r.apply(zxid + 1, &late);
    assert_eq!(applied.result, Err(TxnError::SessionExpired { id }));
    assert_eq!(r.tree().stat("/svc/late"), None);
    assert_eq!(
        prepare_err(&r, create(id, "/svc/late", CreateMode::Ephemeral), &ctx),
        TxnError::SessionExpired { id }
    );
    assert_eq!(
        prepare_err(&r, Op::CloseSession { id }, &ctx),
        TxnError::SessionExpired { id }
    );
    // A second close that was already in flight changes nothing.
    let again = r.apply(zxid + 2, &Txn::CloseSession { id });
    assert_eq!(again.result, Err(TxnError::SessionExpired { id }));
    assert!(again.changes.is_empty());
}

#[test]
fn node_writes_need_a_held_session() {
    let env = Env::new();
    let r = replica();
    let ctx = env.ctx(1, WALL);
    let id = SessionId::from_u64(first_id().as_u64() + 7);
    let ops = [
        create(id, "/a", CreateMode::Persistent),
        Op::Delete {
            session: id,
            path: "/a".into(),
            version: None,
        },
        Op::SetData {
            session: id,
            path: "/".into(),
            data: Bytes::new(),
            version: None,
        },
    ];
    for op in ops {
        assert_eq!(prepare_err(&r, op, &ctx), TxnError::SessionExpired { id });
    }
}

// ---- zxids ----

#[test]
fn a_stale_zxid_changes_nothing_and_an_error_consumes_its_zxid() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, _) = open(&mut r, &ctx);
    must_create(&mut r, id, "/a", CreateMode::Persistent, &ctx);
    let before = r.export();
    let txn = Txn::CreateNode {
        acl: crate::Acl::open(),
        auth: Vec::new(),
        session: id,
        owner: server(1),
        path: "/b".into(),
        data: Bytes::new(),
        mode: CreateMode::Persistent,
        time_ms: WALL,
    };
    for zxid in [0, 1, 2] {
        let applied = r.apply(zxid, &txn);
        assert_eq!(
            applied,
            Applied {
                zxid,
                result: Err(TxnError::ZxidNotAfter { zxid, last: 2 }),
                changes: vec![],
            }
        );
    }
    assert_eq!(r.export(), before);
    // An error consumes its zxid: the next must be after it.
    let exists = Txn::CreateNode {
        acl: crate::Acl::open(),
        auth: Vec::new(),
        session: id,
        owner: server(1),
        path: "/a".into(),
        data: Bytes::new(),
        mode: CreateMode::Persistent,
        time_ms: WALL,
    };
    let applied = r.apply(7, &exists);
    assert_eq!(
        applied.result,
        Err(TxnError::Tree(TreeError::NodeExists { path: "/a".into() }))
    );
    assert_eq!(r.export(), ReplicaSnapshot { zxid: 7, ..before });
    assert!(matches!(
        r.apply(7, &txn).result,
        Err(TxnError::ZxidNotAfter { zxid: 7, last: 7 })
    ));
    // Gaps are fine; the node's zxids are the transaction's.
    let applied = r.apply(9, &txn);
    assert!(matches!(applied.result, Ok(Outcome::NodeCreated { stat, .. }) if stat.czxid == 9));
}

// ---- node writes ----

#[test]
fn node_transactions_carry_owner_and_time_and_apply_them() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, _) = open(&mut r, &ctx);
    let op = Op::Create {
        acl: crate::Acl::open(),
        session: id,
        path: "/a".into(),
        data: Bytes::from_static(b"hello"),
        mode: CreateMode::Ephemeral,
    };
    let later = env.ctx(1, WALL + 1234);
    let txn = prepare(&r, op, &later);
    assert_eq!(
        txn,
        Ok(Some(Txn::CreateNode {
            // The open list travels as an empty one.
            acl: Vec::new(),
            auth: Vec::new(),
            session: id,
            owner: server(1),
            path: "/a".into(),
            data: Bytes::from_static(b"hello"),
            mode: CreateMode::Ephemeral,
            time_ms: WALL + 1234,
        }))
    );
    let Ok(Some(txn)) = txn else { panic!() };
    assert_eq!(txn.session(), Some(id));
    let applied = r.apply(2, &txn);
    let Ok(Outcome::NodeCreated { path, stat }) = &applied.result else {
        panic!("{applied:?}");
    };
    assert_eq!(path, "/a");
    assert_eq!(
        (
            stat.czxid,
            stat.ctime,
            stat.mtime,
            stat.ephemeral_owner,
            stat.data_length
        ),
        (2, WALL + 1234, WALL + 1234, id.as_u64(), 5)
    );
    let set = Op::SetData {
        session: id,
        path: "/a".into(),
        data: Bytes::from_static(b"bye"),
        version: Some(0),
    };
    let applied = run(&mut r, set, &env.ctx(1, WALL + 2000));
    let Ok(Outcome::DataSet { stat }) = applied.result else {
        panic!("{applied:?}");
    };
    assert_eq!(
        (stat.version, stat.mzxid, stat.mtime, stat.ctime),
        (1, 3, WALL + 2000, WALL + 1234)
    );
    assert_eq!(
        applied.changes,
        vec![Change {
            kind: EventKind::NodeDataChanged,
            path: "/a".into()
        }]
    );
    let delete = Op::Delete {
        session: id,
        path: "/a".into(),
        version: Some(1),
    };
    let applied = run(&mut r, delete, &ctx);
    assert_eq!(applied.result, Ok(Outcome::NodeDeleted));
    assert_eq!(applied.changes.len(), 2);
    assert_eq!(r.tree().node_count(), 1);
}

#[test]
fn sequential_names_are_resolved_at_apply() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, _) = open(&mut r, &ctx);
    must_create(&mut r, id, "/q", CreateMode::Persistent, &ctx);
    let op = || create(id, "/q/n-", CreateMode::EphemeralSequential);
    let (Ok(Some(a)), Ok(Some(b))) = (prepare(&r, op(), &ctx), prepare(&r, op(), &ctx)) else {
        panic!("prepare");
    };
    assert_eq!(a, b, "the prefix is logged, not a name");
    // Something else moves the counter in between.
    must_create(&mut r, id, "/q/plain", CreateMode::Persistent, &ctx);
    let zxid = r.zxid();
    let first = r.apply(zxid + 1, &a);
    let second = r.apply(zxid + 2, &b);
    assert_eq!(created_path(&first), "/q/n-0000000001");
    assert_eq!(created_path(&second), "/q/n-0000000002");
    assert_eq!(r.tree().ephemeral_count(id.as_u64()), 2);
}

#[test]
fn prepare_answers_the_trees_errors_without_proposing() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, _) = open(&mut r, &ctx);
    must_create(&mut r, id, "/a", CreateMode::Persistent, &ctx);
    must_create(&mut r, id, "/a/b", CreateMode::Persistent, &ctx);
    must_create(&mut r, id, "/e", CreateMode::Ephemeral, &ctx);
    let tree = |error: TreeError| TxnError::Tree(error);
    let cases: Vec<(Op, TxnError)> = vec![
        (
            create(id, "a", CreateMode::Persistent),
            tree(TreeError::InvalidPath(PathError::NotAbsolute {
                path: "a".into(),
            })),
        ),
        (
            create(id, "/x/y", CreateMode::Persistent),
            tree(TreeError::NoNode { path: "/x".into() }),
        ),
        (
            create(id, "/a", CreateMode::Persistent),
            tree(TreeError::NodeExists { path: "/a".into() }),
        ),
        (
            create(id, "/e/c", CreateMode::Persistent),
            tree(TreeError::NoChildrenForEphemerals {
                path: "/e/c".into(),
                parent: "/e".into(),
            }),
        ),
        (
            Op::Delete {
                session: id,
                path: "/a".into(),
                version: None,
            },
            tree(TreeError::NotEmpty {
                path: "/a".into(),
                children: 1,
            }),
        ),
        (
            Op::Delete {
                session: id,
                path: "/".into(),
                version: None,
            },
            tree(TreeError::RootDelete),
        ),
        (
            Op::Delete {
                session: id,
                path: "/a/b".into(),
                version: Some(4),
            },
            tree(TreeError::BadVersion {
                path: "/a/b".into(),
                expected: 4,
                actual: 0,
            }),
        ),
        (
            Op::SetData {
                session: id,
                path: "/nope".into(),
                data: Bytes::new(),
                version: None,
            },
            tree(TreeError::NoNode {
                path: "/nope".into(),
            }),
        ),
    ];
    for (op, expected) in cases {
        assert_eq!(prepare_err(&r, op.clone(), &ctx), expected, "{op:?}");
    }
}

#[test]
fn prepare_checks_every_limit_of_the_context() {
    let env = Env {
        limits: TreeLimits {
            max_path_bytes: 16,
            max_data_bytes: 4,
            max_ephemerals_per_session: 1,
            max_nodes: 4,
            max_total_data_bytes: 6,
        },
        ..Env::new()
    };
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, _) = open(&mut r, &ctx);
    let with_data = |path: &str, data: &'static [u8], mode| Op::Create {
        acl: crate::Acl::open(),
        session: id,
        path: path.into(),
        data: Bytes::from_static(data),
        mode,
    };
    let tree = |error: TreeError| TxnError::Tree(error);
    assert_eq!(
        prepare_err(
            &r,
            create(id, "/0123456789abcdef", CreateMode::Persistent),
            &ctx
        ),
        tree(TreeError::PathTooLong { len: 17, max: 16 })
    );
    assert_eq!(
        prepare_err(
            &r,
            create(id, "/0123456", CreateMode::PersistentSequential),
            &ctx
        ),
        tree(TreeError::PathTooLong { len: 18, max: 16 })
    );
    assert_eq!(
        prepare_err(&r, with_data("/a", b"12345", CreateMode::Persistent), &ctx),
        tree(TreeError::DataTooLarge {
            path: "/a".into(),
            size: 5,
            max: 4
        })
    );
    assert!(
        run(
            &mut r,
            with_data("/a", b"1234", CreateMode::Ephemeral),
            &ctx
        )
        .result
        .is_ok()
    );
    assert_eq!(
        prepare_err(&r, create(id, "/b", CreateMode::Ephemeral), &ctx),
        tree(TreeError::TooManyEphemerals {
            owner: id.as_u64(),
            max: 1
        })
    );
    assert_eq!(
        prepare_err(&r, with_data("/b", b"123", CreateMode::Persistent), &ctx),
        tree(TreeError::DataQuotaExceeded {
            size: 3,
            total: 4,
            max: 6
        })
    );
    let set = Op::SetData {
        session: id,
        path: "/a".into(),
        data: Bytes::from_static(b"12345"),
        version: None,
    };
    assert_eq!(
        prepare_err(&r, set, &ctx),
        tree(TreeError::DataTooLarge {
            path: "/a".into(),
            size: 5,
            max: 4
        })
    );
    must_create(&mut r, id, "/b", CreateMode::Persistent, &ctx);
    must_create(&mut r, id, "/c", CreateMode::Persistent, &ctx);
    assert_eq!(
        prepare_err(&r, create(id, "/d", CreateMode::Persistent), &ctx),
        tree(TreeError::TooManyNodes { max: 4 })
    );
    let long_delete = Op::Delete {
        session: id,
        path: "/0123456789abcdef".into(),
        version: None,
    };
    assert_eq!(
        prepare_err(&r, long_delete, &ctx),
        tree(TreeError::PathTooLong { len: 17, max: 16 })
    );
}

#[test]
fn apply_rechecks_what_changed_since_prepare_but_not_limits() {
    let env = Env {
        limits: TreeLimits {
            max_nodes: 2,
            ..TreeLimits::default()
        },
        ..Env::new()
    };
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, _) = open(&mut r, &ctx);
    let (Ok(Some(a)), Ok(Some(b))) = (
        prepare(&r, create(id, "/x", CreateMode::Persistent), &ctx),
        prepare(&r, create(id, "/x", CreateMode::Persistent), &ctx),
    ) else {
        panic!("prepare");
    };
    assert!(r.apply(2, &a).result.is_ok());
    assert_eq!(
        r.apply(3, &b).result,
        Err(TxnError::Tree(TreeError::NodeExists { path: "/x".into() }))
    );
    let conditional = Op::Delete {
        session: id,
        path: "/x".into(),
        version: Some(0),
    };
    let Ok(Some(delete)) = prepare(&r, conditional, &ctx) else {
        panic!("prepare");
    };
    let set = Op::SetData {
        session: id,
        path: "/x".into(),
        data: Bytes::new(),
        version: None,
    };
    assert!(run(&mut r, set, &ctx).result.is_ok());
    assert_eq!(
        r.apply(r.zxid() + 1, &delete).result,
        Err(TxnError::Tree(TreeError::BadVersion {
            path: "/x".into(),
            expected: 0,
            actual: 1
        }))
    );
    // Limits are the prepare's: two creates prepared with one slot left
    // both apply, overshooting by the one in flight (documented).
    assert!(
        run(
            &mut r,
            Op::Delete {
                session: id,
                path: "/x".into(),
                version: None
            },
            &ctx
        )
        .result
        .is_ok()
    );
    let (Ok(Some(c)), Ok(Some(d))) = (
        prepare(&r, create(id, "/c", CreateMode::Persistent), &ctx),
        prepare(&r, create(id, "/d", CreateMode::Persistent), &ctx),
    ) else {
        panic!("prepare");
    };
    assert!(r.apply(r.zxid() + 1, &c).result.is_ok());
    assert!(r.apply(r.zxid() + 1, &d).result.is_ok());
    assert_eq!(r.tree().node_count(), 3);
}

// ---- changes, watches, export ----

#[test]
fn applied_changes_fire_a_servers_watches() {
    let env = Env::new();
    let mut r = replica();
    let ctx = env.ctx(1, WALL);
    let (id, _) = open(&mut r, &ctx);
    let (watcher, _) = open(&mut r, &ctx);
    let mut watches: WatchTable<SessionId> = WatchTable::new();
    assert_eq!(r.tree().exists("/a"), Ok(None));
    watches.add(WatchKind::Exist, "/a", watcher);
    watches.add(WatchKind::Child, "/", watcher);
    let applied = run(&mut r, create(id, "/a", CreateMode::Ephemeral), &ctx);
    let fired = watches.fire(&applied.changes, applied.zxid);
    let kinds: Vec<(SessionId, EventKind, &str, u64)> = fired
        .iter()
        .map(|(w, e)| (*w, e.kind, &*e.path, e.zxid))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (watcher, EventKind::NodeCreated, "/a", 3),
            (watcher, EventKind::NodeChildrenChanged, "/", 3),
        ]
    );
    // The closing session's own watches go first, then its ephemerals fire
    // the others' watches.
    watches.add(WatchKind::Data, "/a", watcher);
    watches.add(WatchKind::Data, "/a", id);
    assert_eq!(watches.remove_watcher(id), 1);
    let closed = run(&mut r, Op::CloseSession { id }, &ctx);
    let fired = watches.fire(&closed.changes, closed.zxid);
    assert_eq!(fired.len(), 1);
    assert_eq!(
        (fired[0].0, fired[0].1.kind),
        (watcher, EventKind::NodeDeleted)
    );
}

#[test]
fn export_is_sorted_hides_the_secret_and_matches_a_replay() {
    let env = Env::new();
    let mut a = replica();
    let mut log = Vec::new();
    let mut record = |r: &mut Replica, op: Op, server_id: u64| {
        let ctx = env.ctx(server_id, WALL + log.len() as i64);
        if let Ok(Some(txn)) = prepare(r, op, &ctx) {
            let zxid = r.zxid() + 1;
            let applied = r.apply(zxid, &txn);
            log.push((zxid, txn, applied.clone()));
            applied
        } else {
            panic!("prepare");
        }
    };
    let created = record(
        &mut a,
        Op::CreateSession {
            requested: ms(4000),
        },
        2,
    );
    let Ok(Outcome::SessionCreated { id: second, .. }) = created.result else {
        panic!()
    };
    let created = record(
        &mut a,
        Op::CreateSession {
            requested: ms(4000),
        },
        1,
    );
    let Ok(Outcome::SessionCreated { id: third, .. }) = created.result else {
        panic!()
    };
    for path in ["/z", "/b", "/m"] {
        let _ = record(&mut a, create(second, path, CreateMode::Persistent), 2);
    }
    let _ = record(&mut a, create(third, "/b/e", CreateMode::Ephemeral), 1);
    let snapshot = a.export();
    assert_eq!(snapshot.zxid, 6);
    let genesis = snapshot.genesis.as_ref().expect("initialized");
    assert_eq!(genesis.first_id, first_id());
    assert_eq!(snapshot.high_water, Some(third));
    assert_eq!(genesis.secret.as_bytes(), &[0x5e; 32][..]);
    let ids: Vec<SessionId> = snapshot.sessions.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![second, third]);
    assert!(second < third);
    let paths: Vec<&str> = snapshot.nodes.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(paths, vec!["/", "/b", "/b/e", "/m", "/z"]);
    let debug = format!("{snapshot:?}");
    assert!(debug.contains("PasswordSecret(..)"), "{debug}");
    assert!(!debug.contains("94, 94"), "{debug}");

    let mut b = replica();
    for (zxid, txn, applied) in &log {
        assert_eq!(&b.apply(*zxid, txn), applied);
    }
    assert_eq!(b.export(), snapshot);
    // Another secret or first id is another state.
    let mut c = Replica::new(PasswordSecret::new(&[1; 32]).expect("long"), first_id());
    for (zxid, txn, _) in &log {
        let _ = c.apply(*zxid, txn);
    }
    assert_ne!(c.export(), snapshot);
}

#[test]
fn outcomes_compare_passwords_too() {
    let id = SessionId::from_u64(1);
    let created = |byte| Outcome::SessionCreated {
        id,
        password: SessionPassword::from_bytes([byte; 16]),
        timeout: ms(1),
    };
    assert_eq!(created(1), created(1));
    assert_ne!(created(1), created(2));
    assert_ne!(created(1), Outcome::NodeDeleted);
    assert_eq!(Outcome::NodeDeleted, Outcome::NodeDeleted);
}

#[test]
fn txn_sessions_and_error_messages() {
    let id = SessionId::from_u64(0x0100_0000_0000_0002);
    assert_eq!(
        Txn::CreateSession {
            min_id: id,
            timeout: ms(1),
            owner: server(1)
        }
        .session(),
        None
    );
    assert_eq!(Txn::CloseSession { id }.session(), Some(id));
    let cases = [
        (
            TxnError::SessionExpired { id },
            "session 0x0100000000000002 is expired or closed",
        ),
        (
            TxnError::SessionMoved {
                id,
                owner: server(3),
            },
            "session 0x0100000000000002 has moved to server 3",
        ),
        (
            TxnError::IdsExhausted { server: server(2) },
            "server 2 has no session ids left",
        ),
        (
            TxnError::ZxidNotAfter { zxid: 4, last: 9 },
            "zxid 4 is not after the last applied zxid 9",
        ),
        (
            TxnError::Tree(TreeError::RootDelete),
            "the root node / cannot be deleted",
        ),
        (
            TxnError::Reattach(ReattachError::WrongPassword { id }),
            "wrong password for session 0x0100000000000002",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

// ---- genesis ----

fn genesis_txn() -> Txn {
    Txn::Genesis {
        secret: secret(),
        first_id: first_id(),
    }
}

#[test]
fn an_uninitialized_replica_creates_no_session_and_knows_no_password() {
    let env = Env::new();
    let ctx = env.ctx(1, WALL);
    let mut r = Replica::uninitialized();
    assert!(!r.is_initialized());
    assert_eq!(r.genesis(), None);
    assert_eq!(r.secret(), None);
    assert_eq!(r.first_id(), None);
    let op = || Op::CreateSession {
        requested: ms(6000),
    };
    assert_eq!(prepare_err(&r, op(), &ctx), TxnError::NotInitialized);
    // A create prepared elsewhere (by a replica that had its genesis) is
    // refused at apply too, consuming its zxid.
    let txn = Txn::CreateSession {
        min_id: first_id(),
        timeout: ms(6000),
        owner: server(1),
    };
    let before = r.export();
    let refused = r.apply(1, &txn);
    assert_eq!(refused.result, Err(TxnError::NotInitialized));
    assert!(refused.changes.is_empty());
    assert_eq!(r.export(), ReplicaSnapshot { zxid: 1, ..before });
    // Every id is unknown whatever the password: there is no secret that
    // could verify one.
    let id = first_id();
    assert!(r.password(id).is_none());
    assert_eq!(
        r.check_reattach(id, &secret().derive(id)).err(),
        Some(ReattachError::Unknown { id })
    );
    let reattach = Op::Reattach {
        id,
        password: secret().derive(id),
        requested: ms(6000),
    };
    assert_eq!(
        prepare_err(&r, reattach, &ctx),
        TxnError::Reattach(ReattachError::Unknown { id })
    );
    assert_eq!(
        prepare_err(&r, Op::CloseSession { id }, &ctx),
        TxnError::SessionExpired { id }
    );
    assert_eq!(
        prepare_err(&r, create(id, "/a", CreateMode::Persistent), &ctx),
        TxnError::SessionExpired { id }
    );
}

#[test]
fn genesis_gives_the_secret_and_first_id_once() {
    let env = Env::new();
    let mut r = Replica::uninitialized();
    let applied = r.apply(1, &genesis_txn());
    assert_eq!(applied.result, Ok(Outcome::Initialized));
    assert!(applied.changes.is_empty());
    assert!(r.is_initialized());
    assert_eq!(r.secret(), Some(&secret()));
    assert_eq!(r.first_id(), Some(first_id()));
    assert_eq!(
        r.genesis(),
        Some(&Genesis {
            secret: secret(),
            first_id: first_id()
        })
    );
    assert_eq!(r.zxid(), 1);
    // Sessions now: the first id is the floor, passwords verify.
    let (id, password) = open(&mut r, &env.ctx(1, WALL));
    assert_eq!(id, first_id());
    assert!(secret().verify(id, &password));
    assert_eq!(
        r.password(id).map(|p| *p.as_bytes()),
        Some(*password.as_bytes())
    );

    // A second genesis, even the same one, changes nothing but the zxid.
    let other = Txn::Genesis {
        secret: PasswordSecret::new(&[1; 32]).expect("long enough"),
        first_id: SessionId::from_u64(7),
    };
    for txn in [genesis_txn(), other] {
        let before = r.export();
        let zxid = r.zxid() + 1;
        let refused = r.apply(zxid, &txn);
        assert_eq!(refused.result, Err(TxnError::AlreadyInitialized));
        assert!(refused.changes.is_empty());
        assert_eq!(r.export(), ReplicaSnapshot { zxid, ..before });
        assert_eq!(r.secret(), Some(&secret()));
    }
    // A stale zxid is refused before anything else.
    assert_eq!(
        r.apply(1, &genesis_txn()).result,
        Err(TxnError::ZxidNotAfter { zxid: 1, last: 4 })
    );
}

#[test]
fn a_replica_made_with_new_is_initialized_and_refuses_a_genesis() {
    let mut r = replica();
    assert!(r.is_initialized());
    assert_eq!(r.secret(), Some(&secret()));
    assert_eq!(r.first_id(), Some(first_id()));
    assert_eq!(
        r.apply(1, &genesis_txn()).result,
        Err(TxnError::AlreadyInitialized)
    );
    // Same state as an uninitialized replica given the same genesis.
    let mut g = Replica::uninitialized();
    assert_eq!(g.apply(1, &genesis_txn()).result, Ok(Outcome::Initialized));
    assert_eq!(g.export(), r.export());
}

#[test]
fn replaying_a_log_from_genesis_gives_the_same_passwords() {
    let env = Env::new();
    let mut a = Replica::uninitialized();
    let mut log = vec![(1, genesis_txn())];
    assert!(a.apply(1, &genesis_txn()).result.is_ok());
    let mut passwords = Vec::new();
    for step in 0..3_i64 {
        let ctx = env.ctx(1, WALL + step);
        let txn = prepare(
            &a,
            Op::CreateSession {
                requested: ms(6000),
            },
            &ctx,
        )
        .expect("prepared")
        .expect("a transaction");
        let zxid = a.zxid() + 1;
        let applied = a.apply(zxid, &txn);
        let Ok(Outcome::SessionCreated { id, password, .. }) = applied.result else {
            panic!("{applied:?}");
        };
        passwords.push((id, password));
        log.push((zxid, txn));
    }
    let mut b = Replica::uninitialized();
    for (zxid, txn) in &log {
        let _ = b.apply(*zxid, txn);
    }
    assert_eq!(b.export(), a.export());
    for (id, password) in passwords {
        assert_eq!(b.check_reattach(id, &password).map(|e| e.id), Ok(id));
    }
}

#[test]
fn genesis_txn_and_errors_describe_themselves() {
    assert_eq!(genesis_txn().session(), None);
    assert!(!format!("{:?}", genesis_txn()).contains("94"));
    assert_eq!(
        TxnError::NotInitialized.to_string(),
        "the replica has no genesis yet: no session can be created"
    );
    assert_eq!(
        TxnError::AlreadyInitialized.to_string(),
        "the replica already has its genesis"
    );
    assert_eq!(Outcome::Initialized, Outcome::Initialized);
    assert_ne!(Outcome::Initialized, Outcome::NodeDeleted);
}
