//! Determinism: random operations, prepared against one replica with a
//! varying wall clock and varying servers, applied in the same order to two
//! independently built replicas (both uninitialized, given the same genesis
//! as the log's first transaction), must leave the same state, results and
//! changes; also when transactions are applied long after they were prepared,
//! and out of the order they were prepared in. The invariants of sessions
//! (ids never repeat, no ephemeral outlives its session) are checked on the
//! way.
//!
//! Snapshots: a replica restored from another's export exports the same,
//! prepares the same and applies further transactions the same.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const START_MS: i64 = 1_700_000_000_000;
const FIXED: [&str; 5] = ["/a", "/b", "/a/x", "/a/y", "/b/x"];
const SEQ_PREFIXES: [&str; 2] = ["/a/s-", "/b/"];

#[derive(Debug, Clone)]
enum Step {
    CreateSession {
        requested_ms: u64,
    },
    Reattach {
        session: usize,
        right_password: bool,
        requested_ms: u64,
    },
    Close {
        session: usize,
    },
    Create {
        session: usize,
        path: usize,
        ephemeral: bool,
        sequential: bool,
        len: usize,
    },
    Delete {
        session: usize,
        path: usize,
        version: Option<i32>,
    },
    Set {
        session: usize,
        path: usize,
        version: Option<i32>,
        len: usize,
    },
}

/// One step of a run: an operation, the server and clock it is prepared
/// with, and what happens to its transaction.
#[derive(Debug, Clone)]
struct Input {
    step: Step,
    server: u64,
    /// For a node write: prepare it on the server owning the session (if
    /// held) rather than on `server`, as a client's own connection would.
    on_owner: bool,
    /// Added to the wall clock before preparing; may be negative.
    clock_delta: i64,
    /// Keep the transaction pending instead of applying it now.
    hold: bool,
    /// Pending transactions to apply after this step...
    flush: usize,
    /// ...from the newest (out of prepare order) instead of the oldest.
    newest_first: bool,
}

fn version() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![Just(None), Just(Some(-1)), (0..3_i32).prop_map(Some)]
}

fn step() -> impl Strategy<Value = Step> {
    let session = || 0..8_usize;
    prop_oneof![
        2 => (0..30_000_u64).prop_map(|requested_ms| Step::CreateSession { requested_ms }),
        2 => (session(), any::<bool>(), 0..30_000_u64).prop_map(
            |(session, right_password, requested_ms)| Step::Reattach {
                session,
                right_password,
                requested_ms,
            }
        ),
        1 => session().prop_map(|session| Step::Close { session }),
        5 => (session(), 0..FIXED.len(), any::<bool>(), any::<bool>(), 0..4_usize).prop_map(
            |(session, path, ephemeral, sequential, len)| Step::Create {
                session,
                path,
                ephemeral,
                sequential,
                len,
            }
        ),
        2 => (session(), 0..FIXED.len(), version())
            .prop_map(|(session, path, version)| Step::Delete { session, path, version }),
        2 => (session(), 0..FIXED.len(), version(), 0..4_usize).prop_map(
            |(session, path, version, len)| Step::Set { session, path, version, len }
        ),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    (
        step(),
        1..=3_u64,
        prop::bool::weighted(0.8),
        -2_000..5_000_i64,
        prop::bool::weighted(0.3),
        0..3_usize,
        any::<bool>(),
    )
        .prop_map(
            |(step, server, on_owner, clock_delta, hold, flush, newest_first)| Input {
                step,
                server,
                on_owner,
                clock_delta,
                hold,
                flush,
                newest_first,
            },
        )
}

fn secret() -> PasswordSecret {
    PasswordSecret::new(&[0xc3; 32]).expect("long enough")
}

fn first_id() -> SessionId {
    let server = ServerId::new(1).expect("in range");
    initial_session_id(server, (START_MS - 1_000) as u64, None).expect("ids left")
}

fn genesis() -> Txn {
    Txn::Genesis {
        secret: secret(),
        first_id: first_id(),
    }
}

/// Small limits, so that every limit is reached in short runs.
fn limits() -> TreeLimits {
    TreeLimits {
        max_path_bytes: 1024,
        max_data_bytes: 3,
        max_ephemerals_per_session: 2,
        max_nodes: 8,
        max_total_data_bytes: 10,
    }
}

/// The sessions a run knows of (created ones, closed or not, and two that
/// never existed), each with its password.
struct Known {
    sessions: Vec<(SessionId, SessionPassword)>,
}

impl Known {
    fn new(secret: &PasswordSecret) -> Self {
        let never = SessionId::from_u64(first_id().as_u64() + 1_000_000);
        let foreign = SessionId::from_u64((9 << 56) | 77);
        Self {
            sessions: vec![
                (never, secret.derive(never)),
                (foreign, secret.derive(foreign)),
            ],
        }
    }

    /// Mostly (`index` < 6) a session `replica` holds, else any known one,
    /// counted from the newest.
    fn get(&self, index: usize, replica: &Replica) -> (SessionId, SessionPassword) {
        let live: Vec<SessionId> = replica.sessions().map(|entry| entry.id).collect();
        if index < 6 && !live.is_empty() {
            let id = live[live.len() - 1 - index % live.len()];
            let password = replica.password(id).expect("a held session has a password");
            return (id, password);
        }
        let len = self.sessions.len();
        self.sessions[len - 1 - index % len]
    }
}

fn op_for(step: &Step, known: &Known, replica: &Replica) -> Op {
    let ms = Duration::from_millis;
    match step {
        Step::CreateSession { requested_ms } => Op::CreateSession {
            requested: ms(*requested_ms),
        },
        Step::Reattach {
            session,
            right_password,
            requested_ms,
        } => {
            let (id, password) = known.get(*session, replica);
            let password = if *right_password {
                password
            } else {
                SessionPassword::from_bytes([0xee; 16])
            };
            Op::Reattach {
                id,
                password,
                requested: ms(*requested_ms),
            }
        }
        Step::Close { session } => Op::CloseSession {
            id: known.get(*session, replica).0,
        },
        Step::Create {
            session,
            path,
            ephemeral,
            sequential,
            len,
        } => Op::Create {
            acl: crate::Acl::open(),
            session: known.get(*session, replica).0,
            path: if *sequential {
                SEQ_PREFIXES[path % SEQ_PREFIXES.len()].into()
            } else {
                FIXED[*path].into()
            },
            data: Bytes::from(vec![b'c'; *len]),
            mode: CreateMode::from_flags(*ephemeral, *sequential),
        },
        Step::Delete {
            session,
            path,
            version,
        } => Op::Delete {
            session: known.get(*session, replica).0,
            path: FIXED[*path].into(),
            version: *version,
        },
        Step::Set {
            session,
            path,
            version,
            len,
        } => Op::SetData {
            session: known.get(*session, replica).0,
            path: FIXED[*path].into(),
            data: Bytes::from(vec![b's'; *len]),
            version: *version,
        },
    }
}

/// The server an input is prepared on.
fn server_for(input: &Input, known: &Known, replica: &Replica) -> ServerId {
    let session = match &input.step {
        Step::Create { session, .. } | Step::Delete { session, .. } | Step::Set { session, .. } => {
            Some(known.get(*session, replica).0)
        }
        _ => None,
    };
    let owner = session
        .filter(|_| input.on_owner)
        .and_then(|id| replica.session(id))
        .map(|entry| entry.owner);
    owner.unwrap_or_else(|| ServerId::new(input.server).expect("in range"))
}

/// The invariants every replica keeps, whatever the order of transactions.
fn check_invariants(replica: &Replica) -> Result<(), TestCaseError> {
    let snapshot = replica.export();
    let held: BTreeSet<u64> = snapshot.sessions.iter().map(|s| s.id.as_u64()).collect();
    for node in &snapshot.nodes {
        let owner = node.stat.ephemeral_owner;
        prop_assert!(
            owner == 0 || held.contains(&owner),
            "{} outlives its session 0x{:016x}",
            node.path,
            owner
        );
    }
    for session in &snapshot.sessions {
        prop_assert!(Some(session.id) <= snapshot.high_water);
    }
    let data: usize = snapshot.nodes.iter().map(|n| n.data.len()).sum();
    prop_assert_eq!(replica.tree().data_bytes(), data);
    prop_assert_eq!(replica.tree().node_count(), snapshot.nodes.len());
    Ok(())
}

/// Two replicas built apart, fed the same log; every application compared.
struct Pair {
    a: Replica,
    b: Replica,
    log: Vec<(u64, Txn, Applied)>,
    minted: Vec<SessionId>,
}

impl Pair {
    /// Two uninitialized replicas, given the genesis as the first
    /// transaction of the log.
    fn new() -> Result<Self, TestCaseError> {
        let mut pair = Self {
            a: Replica::uninitialized(),
            b: Replica::uninitialized(),
            log: Vec::new(),
            minted: Vec::new(),
        };
        prop_assert!(!pair.a.is_initialized());
        pair.apply(genesis(), &mut Known::new(&secret()))?;
        prop_assert_eq!(&pair.log[0].2.result, &Ok(Outcome::Initialized));
        prop_assert!(pair.a.is_initialized() && pair.b.is_initialized());
        prop_assert_eq!(pair.a.secret(), Some(&secret()));
        prop_assert_eq!(pair.a.first_id(), Some(first_id()));
        Ok(pair)
    }

    fn apply(&mut self, txn: Txn, known: &mut Known) -> Result<(), TestCaseError> {
        let zxid = self.a.zxid() + 1;
        let from_a = self.a.apply(zxid, &txn);
        let from_b = self.b.apply(zxid, &txn);
        prop_assert_eq!(&from_a, &from_b, "{:?}", txn);
        prop_assert_eq!(self.a.export(), self.b.export(), "after {:?}", txn);
        prop_assert_eq!(self.a.zxid(), zxid);
        if let Ok(Outcome::SessionCreated { id, password, .. }) = &from_a.result {
            prop_assert!(
                self.minted.last().is_none_or(|last| last < id),
                "id {} not above {:?}",
                id,
                self.minted.last()
            );
            prop_assert!(secret().verify(*id, password));
            self.minted.push(*id);
            known.sessions.push((*id, *password));
        }
        if from_a.result.is_err() {
            prop_assert!(from_a.changes.is_empty());
        }
        check_invariants(&self.a)?;
        self.log.push((zxid, txn, from_a));
        Ok(())
    }

    /// A third replica replaying the whole log from an empty, uninitialized
    /// state agrees too, and so does one restored from the export.
    /// Prepares each input against replica `a` (the clock moving by its
    /// delta) and applies what prepares to both replicas.
    fn build(
        &mut self,
        inputs: &[Input],
        known: &mut Known,
        policy: &TimeoutPolicy,
        limits: &TreeLimits,
        wall_ms: &mut i64,
    ) -> Result<(), TestCaseError> {
        for input in inputs {
            *wall_ms += input.clock_delta;
            let server = server_for(input, known, &self.a);
            let ctx = Context {
                auth: &[],
                server,
                policy,
                limits,
                wall_ms: *wall_ms,
            };
            if let Ok(Some(txn)) = prepare(&self.a, op_for(&input.step, known, &self.a), &ctx) {
                self.apply(txn, known)?;
            }
        }
        Ok(())
    }

    fn replay(&self) -> Result<(), TestCaseError> {
        let mut c = Replica::uninitialized();
        for (zxid, txn, applied) in &self.log {
            prop_assert_eq!(&c.apply(*zxid, txn), applied);
        }
        prop_assert_eq!(c.export(), self.a.export());
        let restored = restore(self.a.export())?;
        prop_assert_eq!(restored.export(), self.a.export());
        prop_assert_eq!(restored.tree(), self.a.tree());
        Ok(())
    }
}

fn restore(snapshot: ReplicaSnapshot) -> Result<Replica, TestCaseError> {
    Replica::restore(snapshot).map_err(|err| TestCaseError::fail(format!("restore: {err}")))
}

proptest! {
    // No regression files: a failure prints its minimal input to copy into a unit test.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn replicas_fed_the_same_transactions_agree(inputs in proptest::collection::vec(input(), 1..120)) {
        let policy = TimeoutPolicy::new(Duration::from_millis(500)).expect("valid tick");
        let limits = limits();
        let mut pair = Pair::new()?;
        let mut known = Known::new(&secret());
        let mut pending: VecDeque<Txn> = VecDeque::new();
        let mut wall_ms = START_MS;
        for input in &inputs {
            wall_ms += input.clock_delta;
            let server = server_for(input, &known, &pair.a);
            let ctx = Context { auth: &[], server, policy: &policy, limits: &limits, wall_ms };
            let op = op_for(&input.step, &known, &pair.a);
            let before = pair.a.export();
            let prepared = prepare(&pair.a, op, &ctx);
            prop_assert_eq!(pair.a.export(), before, "prepare changes nothing");
            match prepared {
                Ok(Some(txn)) => {
                    if let Some(owner) = match &txn {
                        Txn::CreateSession { owner, .. }
                        | Txn::UpdateSession { owner, .. }
                        | Txn::CreateNode { owner, .. }
                        | Txn::DeleteNode { owner, .. }
                        | Txn::SetData { owner, .. }
                        | Txn::SetAcl { owner, .. }
                        | Txn::Multi { owner, .. } => Some(*owner),
                        Txn::Genesis { .. }
                        | Txn::CloseSession { .. }
                        | Txn::DeleteReapable { .. } => None,
                    } {
                        prop_assert_eq!(owner, server);
                    }
                    if input.hold {
                        pending.push_back(txn);
                    } else {
                        pair.apply(txn, &mut known)?;
                    }
                }
                Ok(None) => {
                    let reattach = matches!(input.step, Step::Reattach { .. });
                    prop_assert!(reattach, "only a reattach may need no transaction");
                }
                Err(_) => {}
            }
            for _ in 0..input.flush {
                let next = if input.newest_first { pending.pop_back() } else { pending.pop_front() };
                let Some(txn) = next else { break };
                pair.apply(txn, &mut known)?;
            }
        }
        while let Some(txn) = pending.pop_front() {
            pair.apply(txn, &mut known)?;
        }
        pair.replay()?;
    }

    #[test]
    fn transactions_prepared_from_one_old_state_apply_deterministically_in_any_order(
        setup in proptest::collection::vec(input(), 0..40),
        batch in proptest::collection::vec(input(), 1..40),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 40),
    ) {
        let policy = TimeoutPolicy::new(Duration::from_millis(500)).expect("valid tick");
        let limits = limits();
        let mut pair = Pair::new()?;
        let mut known = Known::new(&secret());
        let mut wall_ms = START_MS;
        // Build some state, applying as we go.
        pair.build(&setup, &mut known, &policy, &limits, &mut wall_ms)?;
        // Prepare a whole batch against that one state, as concurrent
        // requests on several servers would be...
        let mut batch_txns = Vec::new();
        for input in &batch {
            wall_ms += input.clock_delta;
            let server = server_for(input, &known, &pair.a);
            let ctx = Context { auth: &[], server, policy: &policy, limits: &limits, wall_ms };
            if let Ok(Some(txn)) = prepare(&pair.a, op_for(&input.step, &known, &pair.a), &ctx) {
                batch_txns.push(txn);
            }
        }
        // ...and apply it in a shuffled order.
        for index in &order {
            if batch_txns.is_empty() {
                break;
            }
            let txn = batch_txns.swap_remove(index.index(batch_txns.len()));
            pair.apply(txn, &mut known)?;
        }
        for txn in batch_txns {
            pair.apply(txn, &mut known)?;
        }
        pair.replay()?;
    }

    #[test]
    fn a_restored_replica_goes_on_as_the_one_exported(
        setup in proptest::collection::vec(input(), 0..100),
        further in proptest::collection::vec(input(), 1..40),
    ) {
        let policy = TimeoutPolicy::new(Duration::from_millis(500)).expect("valid tick");
        let limits = limits();
        let mut pair = Pair::new()?;
        let mut known = Known::new(&secret());
        let mut wall_ms = START_MS;
        pair.build(&setup, &mut known, &policy, &limits, &mut wall_ms)?;
        let snapshot = pair.a.export();
        let mut restored = restore(snapshot.clone())?;
        prop_assert_eq!(restored.export(), snapshot);
        prop_assert_eq!(restored.tree(), pair.a.tree());
        prop_assert_eq!(restored.zxid(), pair.a.zxid());
        prop_assert_eq!(restored.high_water(), pair.a.high_water());
        prop_assert_eq!(restored.genesis(), pair.a.genesis());
        for input in &further {
            wall_ms += input.clock_delta;
            let server = server_for(input, &known, &pair.a);
            let ctx = Context { auth: &[], server, policy: &policy, limits: &limits, wall_ms };
            let op = op_for(&input.step, &known, &pair.a);
            let prepared = prepare(&pair.a, op.clone(), &ctx);
            prop_assert_eq!(&prepare(&restored, op, &ctx), &prepared);
            if let Ok(Some(txn)) = prepared {
                let from_restored = restored.apply(pair.a.zxid() + 1, &txn);
                pair.apply(txn, &mut known)?;
                let (_, _, from_original) = pair.log.last().expect("just applied");
                prop_assert_eq!(&from_restored, from_original);
                prop_assert_eq!(restored.export(), pair.a.export());
            }
        }
        prop_assert_eq!(restored.tree(), pair.a.tree());
        pair.replay()?;
    }

    #[test]
    fn restore_refuses_or_reproduces_a_corrupted_snapshot(
        setup in proptest::collection::vec(input(), 0..60),
        corruptions in proptest::collection::vec(corruption(), 1..4),
    ) {
        let policy = TimeoutPolicy::new(Duration::from_millis(500)).expect("valid tick");
        let limits = limits();
        let mut pair = Pair::new()?;
        let mut known = Known::new(&secret());
        let mut wall_ms = START_MS;
        pair.build(&setup, &mut known, &policy, &limits, &mut wall_ms)?;
        let mut snapshot = pair.a.export();
        for corruption in &corruptions {
            corrupt(&mut snapshot, corruption);
        }
        let Ok(mut restored) = Replica::restore(snapshot.clone()) else {
            return Ok(());
        };
        // Accepted: it is exactly what was given, up to order...
        prop_assert_eq!(restored.export(), normalized(snapshot));
        prop_assert_eq!(restore(restored.export())?.export(), restored.export());
        // ...and every write applies without a panic.
        let mut zxid = restored.zxid();
        let mut next = || {
            zxid += 1;
            zxid
        };
        let ids: Vec<SessionId> = restored.sessions().map(|entry| entry.id).collect();
        let owner = ServerId::new(1).expect("in range");
        for id in &ids {
            for path in ["/a/n", "/b/s-"] {
                let _ = restored.apply(next(), &Txn::CreateNode { acl: crate::Acl::open(), auth: Vec::new(),
                    session: *id,
                    owner,
                    path: path.into(),
                    data: Bytes::from_static(b"x"),
                    mode: CreateMode::EphemeralSequential,
                    time_ms: START_MS,
                });
            }
        }
        let _ = restored.apply(next(), &Txn::CreateSession {
            min_id: first_id(),
            timeout: Duration::from_secs(1),
            owner,
        });
        for id in &ids {
            let _ = restored.apply(next(), &Txn::CloseSession { id: *id });
        }
        let mut paths: Vec<String> = restored.export().nodes.into_iter().map(|n| n.path).collect();
        paths.reverse();
        for path in paths {
            let holder = restored.sessions().next().map(|entry| entry.id);
            if let Some(id) = holder {
                let _ = restored.apply(next(), &Txn::SetData { auth: Vec::new(),
                    session: id,
                    owner: restored.session(id).expect("held").owner,
                    path: path.clone(),
                    data: Bytes::new(),
                    version: None,
                    time_ms: START_MS,
                });
                let _ = restored.apply(next(), &Txn::DeleteNode { auth: Vec::new(),
                    session: id,
                    owner: restored.session(id).expect("held").owner,
                    path,
                    version: None,
                });
            }
        }
        prop_assert_eq!(restore(restored.export())?.export(), restored.export());
    }
}

/// One hand edit of a snapshot (indexes are taken modulo the lengths).
#[derive(Debug, Clone)]
enum Corruption {
    DropNode(usize),
    DuplicateNode(usize),
    MoveNode(usize, usize),
    SetOwner(usize, usize),
    SetNumChildren(usize, u32),
    SetDataLength(usize, u32),
    RaiseZxid(usize, u8, u64),
    DropChild(usize),
    AddChild(usize, usize),
    ReplaceData(usize, usize),
    DropSession(usize),
    DuplicateSession(usize),
    LowerHighWater(u64),
    DropGenesis,
    LowerZxid(u64),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let i = || any::<usize>();
    prop_oneof![
        i().prop_map(Corruption::DropNode),
        i().prop_map(Corruption::DuplicateNode),
        (i(), 0..FIXED.len() + 2).prop_map(|(n, p)| Corruption::MoveNode(n, p)),
        (i(), i()).prop_map(|(n, s)| Corruption::SetOwner(n, s)),
        (i(), 0..4_u32).prop_map(|(n, v)| Corruption::SetNumChildren(n, v)),
        (i(), 0..4_u32).prop_map(|(n, v)| Corruption::SetDataLength(n, v)),
        (i(), 0..3_u8, 0..3_u64).prop_map(|(n, f, d)| Corruption::RaiseZxid(n, f, d)),
        i().prop_map(Corruption::DropChild),
        (i(), i()).prop_map(|(n, c)| Corruption::AddChild(n, c)),
        (i(), 0..4_usize).prop_map(|(n, len)| Corruption::ReplaceData(n, len)),
        i().prop_map(Corruption::DropSession),
        i().prop_map(Corruption::DuplicateSession),
        (0..3_u64).prop_map(Corruption::LowerHighWater),
        Just(Corruption::DropGenesis),
        (0..3_u64).prop_map(Corruption::LowerZxid),
    ]
}

fn corrupt(snapshot: &mut ReplicaSnapshot, corruption: &Corruption) {
    let nodes = snapshot.nodes.len();
    let sessions = snapshot.sessions.len();
    let names = ["a", "b", "x", "zz", "a/x", ""];
    match *corruption {
        Corruption::DropNode(n) if nodes > 0 => {
            snapshot.nodes.remove(n % nodes);
        }
        Corruption::DuplicateNode(n) if nodes > 0 => {
            snapshot.nodes.push(snapshot.nodes[n % nodes].clone());
        }
        Corruption::MoveNode(n, p) if nodes > 0 => {
            let path = FIXED
                .get(p)
                .copied()
                .unwrap_or(if p == FIXED.len() { "/" } else { "/c/d" });
            snapshot.nodes[n % nodes].path = path.into();
        }
        Corruption::SetOwner(n, s) if nodes > 0 => {
            let owner = if sessions > 0 && s % 3 != 0 {
                snapshot.sessions[s % sessions].id.as_u64()
            } else {
                (s % 2) as u64 * 77
            };
            snapshot.nodes[n % nodes].stat.ephemeral_owner = owner;
        }
        Corruption::SetNumChildren(n, v) if nodes > 0 => {
            snapshot.nodes[n % nodes].stat.num_children = v;
        }
        Corruption::SetDataLength(n, v) if nodes > 0 => {
            snapshot.nodes[n % nodes].stat.data_length = v;
        }
        Corruption::RaiseZxid(n, field, delta) if nodes > 0 => {
            let zxid = snapshot.zxid + delta;
            let stat = &mut snapshot.nodes[n % nodes].stat;
            match field {
                0 => stat.czxid = zxid,
                1 => stat.mzxid = zxid,
                _ => stat.pzxid = zxid,
            }
        }
        Corruption::DropChild(n) if nodes > 0 => {
            snapshot.nodes[n % nodes].children.pop();
        }
        Corruption::AddChild(n, c) if nodes > 0 => {
            snapshot.nodes[n % nodes]
                .children
                .push(names[c % names.len()].into());
        }
        Corruption::ReplaceData(n, len) if nodes > 0 => {
            snapshot.nodes[n % nodes].data = Bytes::from(vec![b'r'; len]);
        }
        Corruption::DropSession(s) if sessions > 0 => {
            snapshot.sessions.remove(s % sessions);
        }
        Corruption::DuplicateSession(s) if sessions > 0 => {
            snapshot.sessions.push(snapshot.sessions[s % sessions]);
        }
        Corruption::LowerHighWater(by) => {
            snapshot.high_water = match by {
                0 => None,
                _ => snapshot
                    .high_water
                    .map(|mark| SessionId::from_u64(mark.as_u64().saturating_sub(by))),
            };
        }
        Corruption::DropGenesis => snapshot.genesis = None,
        Corruption::LowerZxid(by) => snapshot.zxid = snapshot.zxid.saturating_sub(by),
        _ => {}
    }
}

/// The snapshot as an export would list it: sessions by id, nodes by path,
/// children sorted.
fn normalized(mut snapshot: ReplicaSnapshot) -> ReplicaSnapshot {
    snapshot.sessions.sort_by_key(|entry| entry.id);
    snapshot.nodes.sort_by(|a, b| a.path.cmp(&b.path));
    for node in &mut snapshot.nodes {
        node.children.sort();
    }
    snapshot
}
