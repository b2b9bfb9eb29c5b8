//! The server's state: the replicated [`Replica`] (sessions and the data
//! tree, changed only by applying transactions), and what applying a
//! transaction does locally on this server: the watches it fires, the
//! sessions' liveness, and the connections it tells.
//!
//! Writes are prepared here ([`StateMachine::prepare`], reading the replica)
//! and applied here ([`StateMachine::apply`], by the [`Engine`](crate::engine::Engine)
//! that ordered them). Reads go straight to the replica, under the same lock
//! as applies, so a read that leaves a watch can never miss a change.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use session_core::{
    Applied, Context, DataTree, Id, Liveness, Op, Outcome, OwnerId, Replica, ReplicaSnapshot,
    ServerId, SessionId, SetWatchesPaths, Stat, Txn, TxnError, WatchEvent, WatchKind, WatchTable,
    WatcherType, check_acl, perms, watch_kind_for_exists,
};
use tokio::sync::{Notify, oneshot};

use crate::config::Limits;
use crate::engine::Tag;
use crate::frontend::{Code, OpError, OpResult, Operation, ReadOp};
use crate::metrics::Metrics;
use crate::server::{ConnectionHandle, Notice, ReadAnswer};

/// The replicated state with the watches set on it: one lock, so applying a
/// change and firing its watches is atomic with respect to reads.
#[derive(Debug)]
pub(crate) struct Replicated {
    pub(crate) replica: Replica,
    pub(crate) watches: WatchTable<SessionId>,
}

/// The replica and the local effects of applying to it.
#[derive(Debug)]
pub(crate) struct StateMachine {
    state: Mutex<Replicated>,
    /// The replica's zxid, readable without the lock (every pong carries it).
    zxid: AtomicU64,
    /// When each session was last heard from and its expiry bucket; local to
    /// the server that runs expiry. Locked after `state` when both are held.
    liveness: Mutex<Liveness>,
    /// Live connections by session id: watch delivery and expiry find a
    /// session's connection here without scanning (ZOOKEEPER-1669).
    pub(crate) connections: DashMap<SessionId, ConnectionHandle>,
    metrics: Arc<Metrics>,
    /// This server: a session owned by another is not served here.
    server: ServerId,
    /// What this server does in its cluster now ([`Role`]).
    role: AtomicU8,
    /// Sessions heard from since the leader was last told (kept only while
    /// this server does not lead).
    heard: Mutex<HashSet<SessionId>>,
    /// Who waits for a transaction to be applied here, by the server that
    /// proposed it and that server's number for it (see
    /// [`crate::raft::Tagged`]): requests of this server's clients, and, on
    /// a leader, followers' forwarded writes.
    waiters: Mutex<HashMap<Tag, Waiter>>,
    /// What a read may leave behind: watches per session, paths per
    /// SetWatches.
    limits: Limits,
    /// Woken whenever the zxid moves.
    advanced: Notify,
    /// Why the role is [`Role::Unavailable`], for the clients refused.
    unavailable: Mutex<String>,
}

/// Who waits for one transaction to be applied here.
#[derive(Debug)]
struct Waiter {
    /// Its proposer, told the result.
    applied: oneshot::Sender<Applied>,
    /// Reads its connection sent after it (and before anything it proposed
    /// next), answered right after it is applied, before anything else is.
    reads: Vec<DeferredRead>,
}

/// A read that must see the writes its connection sent before it, and none
/// sent after it: answered as the last of those writes is applied, into the
/// connection's mailbox (so it reaches the client after the watch events of
/// changes applied before it, and before those of changes after it).
#[derive(Debug)]
pub(crate) struct DeferredRead {
    pub(crate) session: SessionId,
    /// The connection that asked: a reply for a connection since replaced
    /// is dropped (that connection is closing).
    pub(crate) owner: OwnerId,
    pub(crate) xid: i32,
    pub(crate) op: Operation,
    /// The ids the connection held when it asked.
    pub(crate) auth: Arc<[Id]>,
}

/// What a server does in its cluster now. A single server always leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// It knows no leader (an election, a partition from the majority, a
    /// state not yet initialized): it serves no client.
    Unavailable = 0,
    /// Another server leads: writes go there, and so do the sessions this
    /// server heard from.
    Following = 1,
    /// This server leads, with a quorum behind it: it runs expiry.
    Leading = 2,
}

impl Role {
    fn from_u8(raw: u8) -> Role {
        match raw {
            0 => Role::Unavailable,
            1 => Role::Following,
            _ => Role::Leading,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is a bug elsewhere; the state it left is
    // still the best there is, so keep serving rather than poison everything.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateMachine {
    pub(crate) fn new(
        server: ServerId,
        replica: Replica,
        liveness: Liveness,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Self {
        StateMachine {
            zxid: AtomicU64::new(replica.zxid()),
            state: Mutex::new(Replicated {
                replica,
                watches: WatchTable::new(),
            }),
            liveness: Mutex::new(liveness),
            connections: DashMap::new(),
            metrics,
            server,
            role: AtomicU8::new(Role::Leading as u8),
            heard: Mutex::new(HashSet::new()),
            waiters: Mutex::new(HashMap::new()),
            limits,
            advanced: Notify::new(),
            unavailable: Mutex::new(String::new()),
        }
    }

    /// Why this server serves no client now (empty while it does).
    pub(crate) fn unavailable_reason(&self) -> String {
        lock(&self.unavailable).clone()
    }

    /// Says why this server serves no client now.
    pub(crate) fn set_unavailable_reason(&self, why: String) {
        *lock(&self.unavailable) = why;
    }

    /// This server's id.
    pub(crate) fn server(&self) -> ServerId {
        self.server
    }

    /// What this server does in its cluster now.
    pub(crate) fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Acquire))
    }

    /// Sets the role; returns the previous one.
    pub(crate) fn set_role(&self, role: Role) -> Role {
        Role::from_u8(self.role.swap(role as u8, Ordering::AcqRel))
    }

    /// Notes that `id`'s client was heard from, for the next report to the
    /// leader; a no-op while this server leads.
    pub(crate) fn heard_from(&self, id: SessionId) {
        if self.role() != Role::Leading {
            lock(&self.heard).insert(id);
        }
    }

    /// The sessions heard from since the last call.
    pub(crate) fn take_heard(&self) -> Vec<SessionId> {
        lock(&self.heard).drain().collect()
    }

    /// Puts back sessions whose report did not reach the leader.
    pub(crate) fn heard_again(&self, ids: Vec<SessionId>) {
        lock(&self.heard).extend(ids);
    }

    /// Registers a wait for the transaction server `origin` proposes as its
    /// number `seq`: the receiver gets it once applied here.
    pub(crate) fn await_applied(&self, origin: u8, seq: u64) -> oneshot::Receiver<Applied> {
        let (applied, rx) = oneshot::channel();
        let waiter = Waiter {
            applied,
            reads: Vec::new(),
        };
        lock(&self.waiters).insert((origin, seq), waiter);
        rx
    }

    /// Drops the wait for `origin`'s number `seq` (its proposal failed, or
    /// its proposer stopped waiting). Reads waiting behind it are refused
    /// `UNAVAILABLE`, as the write is: by now the replica may hold writes
    /// their connection sent after them, which they must not see.
    pub(crate) fn forget_waiter(&self, origin: u8, seq: u64) {
        let waiter = lock(&self.waiters).remove(&(origin, seq));
        for read in waiter.map(|waiter| waiter.reads).unwrap_or_default() {
            let result = Err(OpError::new(
                Code::Unavailable,
                "the write before this read was not applied here in time: its outcome is unknown",
            ));
            self.send_answer(read.session, read.owner, read.xid, self.zxid(), result);
        }
    }

    /// Answers `read` once the transaction `after` (proposed here, not
    /// answered yet) is applied, before anything else is: the read sees it
    /// and every write before it, and nothing its connection sends later.
    /// The answer goes to the connection's mailbox as [`Notice::Read`];
    /// answered at once when `after` is applied already.
    pub(crate) fn read_after(&self, after: Tag, read: DeferredRead) {
        let read = match lock(&self.waiters).get_mut(&after) {
            Some(waiter) => {
                waiter.reads.push(read);
                return;
            }
            None => read,
        };
        // Applied (the waiter is removed under the state lock, after the
        // apply) or failed; either way, the connection proposed nothing
        // after it yet.
        let mut state = self.state();
        self.answer_read(&mut state, read);
    }

    /// Evaluates `read` against the replica as it is and hands the answer
    /// to its connection, under the state lock: in the connection's mailbox
    /// it follows the watch events of every change applied before it and
    /// precedes those of every change after it.
    fn answer_read(&self, state: &mut Replicated, read: DeferredRead) {
        let DeferredRead {
            session,
            owner,
            xid,
            op,
            auth,
        } = read;
        let (zxid, result) = self.read_locked(state, session, op, &auth);
        self.send_answer(session, owner, xid, zxid, result);
    }

    /// Hands a read's answer to the connection `owner` of `session`.
    fn send_answer(
        &self,
        session: SessionId,
        owner: OwnerId,
        xid: i32,
        zxid: u64,
        result: Result<OpResult, OpError>,
    ) {
        match self.connections.get(&session) {
            Some(connection) if connection.owner() == owner => {
                connection
                    .mailbox
                    .send(Notice::Read(Box::new(ReadAnswer { xid, zxid, result })));
            }
            // Replaced or gone: that connection has been told to close.
            _ => {}
        }
    }

    /// Applies `txn`, proposed by server `origin` as its number `seq`, as
    /// the next transaction; answers the reads waiting behind it before the
    /// state lock is released, then hands the result to whoever waits for
    /// it.
    pub(crate) fn apply_proposed(&self, origin: u8, seq: u64, txn: &Txn, now: Instant) {
        let mut state = self.state();
        let zxid = state.replica.zxid() + 1;
        let applied = self.apply_locked(&mut state, zxid, txn, now);
        let waiter = lock(&self.waiters).remove(&(origin, seq));
        if let Some(waiter) = waiter {
            for read in waiter.reads {
                self.answer_read(&mut state, read);
            }
            drop(state);
            let _ = waiter.applied.send(applied);
        }
    }

    /// Waits until the replica's zxid is at least `zxid`, for at most
    /// `bound`; returns whether it got there.
    pub(crate) async fn wait_for_zxid(&self, zxid: u64, bound: Duration) -> bool {
        let wait = async {
            loop {
                let advanced = self.advanced.notified();
                tokio::pin!(advanced);
                advanced.as_mut().enable();
                if self.zxid() >= zxid {
                    return;
                }
                advanced.await;
            }
        };
        tokio::time::timeout(bound, wait).await.is_ok()
    }

    /// Closes every local connection with `code`: their clients reconnect
    /// (here or elsewhere) and set their watches again.
    pub(crate) fn disconnect_all(&self, code: Code, detail: &str) {
        let ids: Vec<SessionId> = self.connections.iter().map(|entry| *entry.key()).collect();
        for id in ids {
            if let Some((_, connection)) = self.connections.remove(&id) {
                connection
                    .mailbox
                    .send(Notice::Disconnect(Box::new((code, detail.to_owned()))));
            }
        }
    }

    /// The replicated state, locked. Never hold the guard across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, Replicated> {
        lock(&self.state)
    }

    /// The local liveness table, locked. Never hold the guard across an
    /// `.await`, and never lock [`state`](Self::state) while holding it.
    pub(crate) fn liveness(&self) -> MutexGuard<'_, Liveness> {
        lock(&self.liveness)
    }

    /// The metrics the state keeps up to date.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The zxid of the last applied transaction.
    pub(crate) fn zxid(&self) -> u64 {
        self.zxid.load(Ordering::Acquire)
    }

    /// Resolves `op` against the current replica into a transaction to
    /// propose, or `None` when it changes nothing replicated.
    pub(crate) fn prepare(&self, op: Op, ctx: &Context<'_>) -> Result<Option<Txn>, TxnError> {
        session_core::prepare(&self.state().replica, op, ctx)
    }

    /// Applies `txn` as the next transaction, with the next zxid (both
    /// engines apply in the order they chose).
    pub(crate) fn apply_next(&self, txn: &Txn, now: Instant) -> Applied {
        let mut state = self.state();
        let zxid = state.replica.zxid() + 1;
        self.apply_locked(&mut state, zxid, txn, now)
    }

    /// Everything replicated, for a snapshot.
    pub(crate) fn export(&self) -> ReplicaSnapshot {
        self.state().replica.export()
    }

    /// Replaces the replica (a snapshot loaded at start, or installed from
    /// another server). Watches set on the old state are dropped: their
    /// clients set them again with their last zxid when they reattach.
    pub(crate) fn restore(&self, replica: Replica, now: Instant) {
        let mut state = self.state();
        state.replica = replica;
        state.watches = WatchTable::new();
        self.zxid.store(state.replica.zxid(), Ordering::Release);
        self.advanced.notify_waiters();
        self.metrics
            .applied_zxid
            .set(i64::try_from(state.replica.zxid()).unwrap_or(i64::MAX));
        self.metrics
            .sessions
            .set(i64::try_from(state.replica.session_count()).unwrap_or(i64::MAX));
        drop(state);
        // Their watches were on the old state: their clients set them again
        // against this one when they reconnect.
        self.disconnect_all(
            Code::Unavailable,
            "this server's state was replaced by a snapshot from the leader: reconnect",
        );
        self.refresh_liveness(now);
    }

    /// Gives every session held a fresh full timeout from `now`, with no
    /// connection, and forgets what liveness knew of sessions no longer
    /// held: ZooKeeper's rule when a server starts serving a state it did
    /// not keep alive itself (after a restart, or on taking over expiry), so
    /// nothing expires early and there is no expiry storm.
    pub(crate) fn refresh_liveness(&self, now: Instant) {
        let state = self.state();
        let mut liveness = self.liveness();
        let stale: Vec<SessionId> = liveness
            .sessions()
            .map(|info| info.id)
            .filter(|id| state.replica.session(*id).is_none())
            .collect();
        for id in stale {
            liveness.forget(id);
        }
        for entry in state.replica.sessions() {
            let owner = liveness.owner(entry.id);
            // A session marked closing whose close was never applied (the
            // leader that proposed it lost its leadership) is open again.
            if liveness.track(entry.id, entry.timeout, owner, now).is_err() {
                liveness.forget(entry.id);
                let _ = liveness.track(entry.id, entry.timeout, owner, now);
            }
        }
    }

    /// Applies `txn` with `zxid`, then, before the lock is released: drops a
    /// closed session's watches (so it is not told of its own ephemerals),
    /// fires and delivers the watches the changes hit (so an event always
    /// reaches its connection before any reply that reflects the change),
    /// and keeps liveness in step with the replicated session table.
    fn apply_locked(&self, state: &mut Replicated, zxid: u64, txn: &Txn, now: Instant) -> Applied {
        let applied = state.replica.apply(zxid, txn);
        self.zxid.store(state.replica.zxid(), Ordering::Release);
        self.advanced.notify_waiters();
        self.metrics
            .applied_zxid
            .set(i64::try_from(state.replica.zxid()).unwrap_or(i64::MAX));
        match &applied.result {
            Ok(Outcome::SessionCreated { id, timeout, .. }) => {
                // Tracked at once, so a session whose connection never comes
                // to claim it still expires.
                let _ = self.liveness().track(*id, *timeout, None, now);
            }
            Ok(Outcome::SessionUpdated { id, timeout, .. }) => {
                let moved_away = state
                    .replica
                    .session(*id)
                    .is_some_and(|entry| entry.owner != self.server);
                let mut liveness = self.liveness();
                if moved_away {
                    // Its client reattached on another server: a connection
                    // here is stale.
                    let _ = liveness.track(*id, *timeout, None, now);
                    drop(liveness);
                    if let Some((_, connection)) = self.connections.remove(id) {
                        connection.mailbox.send(Notice::Disconnect(Box::new((
                            Code::SessionMoved,
                            format!("session {id} moved to another server"),
                        ))));
                    }
                } else {
                    let owner = liveness.owner(*id);
                    let _ = liveness.track(*id, *timeout, owner, now);
                }
            }
            Ok(Outcome::SessionClosed { id, .. }) => {
                state.watches.remove_watcher(*id);
                self.liveness().forget(*id);
                if let Some((_, connection)) = self.connections.remove(id) {
                    connection.mailbox.send(Notice::Disconnect(Box::new((
                        Code::SessionExpired,
                        format!("session {id} expired or was closed"),
                    ))));
                }
            }
            _ => {}
        }
        if !applied.changes.is_empty() {
            let fired = state.watches.fire(&applied.changes, zxid);
            self.deliver(fired);
        }
        self.metrics
            .sessions
            .set(i64::try_from(state.replica.session_count()).unwrap_or(i64::MAX));
        applied
    }

    /// Hands fired watch events to the connections of their sessions. A
    /// session without a connection loses the event; it re-registers its
    /// watches with its last zxid when it reattaches and is told then.
    fn deliver(&self, fired: Vec<(SessionId, WatchEvent)>) {
        for (session, event) in fired {
            if let Some(connection) = self.connections.get(&session) {
                connection.mailbox.send(Notice::Watch(Box::new(event)));
            }
        }
    }

    /// Answers a read for `session` (or a watch operation, or whoAmI), on a
    /// connection holding the ids `auth`, leaving the watch it asks for
    /// within the limits; returns the result and the zxid it reflects.
    pub(crate) fn read(
        &self,
        session: SessionId,
        op: Operation,
        auth: &[Id],
    ) -> (u64, Result<OpResult, OpError>) {
        self.read_locked(&mut self.state(), session, op, auth)
    }

    /// [`read`](Self::read), with the state locked by the caller.
    fn read_locked(
        &self,
        state: &mut Replicated,
        session: SessionId,
        op: Operation,
        auth: &[Id],
    ) -> (u64, Result<OpResult, OpError>) {
        let zxid = state.replica.zxid();
        let reader = Reader {
            tree: state.replica.tree(),
            session,
            limits: &self.limits,
            auth,
        };
        let watches = &mut state.watches;
        let result = match op {
            Operation::GetData { path, watch } => reader.get_data(&path).and_then(|result| {
                if watch {
                    reader.watch(watches, WatchKind::Data, &path)?;
                }
                Ok(result)
            }),
            Operation::Exists { path, watch } => reader.exists(&path).and_then(|stat| {
                if watch {
                    reader.watch(watches, watch_kind_for_exists(stat.is_some()), &path)?;
                }
                Ok(OpResult::Exists { stat })
            }),
            Operation::GetChildren { path, watch } => {
                reader.get_children(&path).and_then(|result| {
                    if watch {
                        reader.watch(watches, WatchKind::Child, &path)?;
                    }
                    Ok(result)
                })
            }
            Operation::MultiRead { ops } => Ok(OpResult::MultiRead {
                results: ops
                    .into_iter()
                    .map(|op| {
                        match op {
                            ReadOp::GetData { path } => reader.get_data(&path),
                            ReadOp::GetChildren { path } => reader.get_children(&path),
                        }
                        .map_err(|error| error.code)
                    })
                    .collect(),
            }),
            Operation::GetAcl { path } => reader.get_acl(&path),
            Operation::CountDescendants { path } => reader.checked(&path).and_then(|()| {
                reader.permit(&path, perms::READ)?;
                let count = reader
                    .tree
                    .descendant_count(&path)
                    .map_err(|e| tree_error(&e))?;
                Ok(OpResult::CountDescendants { count })
            }),
            Operation::GetEphemerals { prefix } => {
                let all = prefix.trim().is_empty() || prefix == "/";
                let paths = reader
                    .tree
                    .ephemerals(session.as_u64())
                    .filter(|path| all || path.starts_with(&prefix))
                    .map(str::to_owned)
                    .collect();
                Ok(OpResult::GetEphemerals { paths })
            }
            Operation::AddWatch { path, recursive } => reader.checked(&path).and_then(|()| {
                let kind = if recursive {
                    WatchKind::PersistentRecursive
                } else {
                    WatchKind::Persistent
                };
                reader.watch(watches, kind, &path)?;
                Ok(OpResult::WatchAdded)
            }),
            Operation::RemoveWatches { path, kind } => reader.checked(&path).and_then(|()| {
                if watches.remove(&path, kind, session) == 0 {
                    return Err(no_watcher(&path, kind));
                }
                Ok(OpResult::WatchesRemoved)
            }),
            Operation::CheckWatches { path, kind } => reader.checked(&path).and_then(|()| {
                if !watches.contains(&path, kind, session) {
                    return Err(no_watcher(&path, kind));
                }
                Ok(OpResult::WatchesChecked)
            }),
            Operation::WhoAmI => Ok(OpResult::WhoAmI { ids: auth.to_vec() }),
            Operation::Sasl => {
                tracing::info!(%session, "a SASL token: SASL is not supported, nothing authenticated");
                Ok(OpResult::SaslAnswered)
            }
            Operation::SetWatches {
                last_zxid_seen,
                data,
                exist,
                child,
                persistent,
                recursive,
            } => {
                let paths = SetWatchesPaths {
                    data: &data,
                    exist: &exist,
                    child: &child,
                    persistent: &persistent,
                    persistent_recursive: &recursive,
                };
                reader
                    .set_watches(watches, last_zxid_seen, paths)
                    .map(|fired| {
                        self.deliver(fired);
                        OpResult::SetWatches
                    })
            }
            // The connection has waited for the leader's read index before
            // (the engine's `sync`): the replica is current. (ZooKeeper
            // checks no path for sync either.)
            Operation::Sync { path } => Ok(OpResult::Sync { path }),
            Operation::Create { .. }
            | Operation::Delete { .. }
            | Operation::SetData { .. }
            | Operation::SetAcl { .. }
            | Operation::Multi { .. }
            | Operation::AddAuth { .. } => Err(OpError::new(
                Code::SystemError,
                "a write or an auth was routed as a read",
            )),
        };
        (zxid, result)
    }
}

/// The reads of one request, against the replica under the state lock.
struct Reader<'a> {
    tree: &'a DataTree,
    session: SessionId,
    limits: &'a Limits,
    auth: &'a [Id],
}

impl Reader<'_> {
    /// The tree's reads check syntax only; the limit on length is the
    /// server's, and over it a read is TOO_LARGE, as a write is.
    fn checked(&self, path: &str) -> Result<(), OpError> {
        self.limits
            .tree
            .check_path(path)
            .map_err(|e| tree_error(&e))
    }

    /// Refuses when the node exists and its list grants none of `wanted`.
    fn permit(&self, path: &str, wanted: u32) -> Result<(), OpError> {
        match self.tree.node_acl(path) {
            Some(acl) if !check_acl(acl, wanted, self.auth) => Err(OpError::new(
                Code::NoAuth,
                format!("no permission {wanted:#x} on {path}"),
            )),
            _ => Ok(()),
        }
    }

    fn get_data(&self, path: &str) -> Result<OpResult, OpError> {
        self.checked(path)?;
        let (data, stat) = self.tree.get_data(path).map_err(|e| tree_error(&e))?;
        self.permit(path, perms::READ)?;
        Ok(OpResult::GetData { data, stat })
    }

    fn exists(&self, path: &str) -> Result<Option<Stat>, OpError> {
        self.checked(path)?;
        let stat = self.tree.exists(path).map_err(|e| tree_error(&e))?;
        if stat.is_some() {
            self.permit(path, perms::READ)?;
        }
        Ok(stat)
    }

    fn get_children(&self, path: &str) -> Result<OpResult, OpError> {
        self.checked(path)?;
        let (children, stat) = self.tree.children(path).map_err(|e| tree_error(&e))?;
        self.permit(path, perms::READ)?;
        Ok(OpResult::GetChildren { children, stat })
    }

    /// READ or ADMIN is enough; without ADMIN, digest ids are shown as
    /// `user:x`, as ZooKeeper does.
    fn get_acl(&self, path: &str) -> Result<OpResult, OpError> {
        self.checked(path)?;
        let (mut acl, stat) = self.tree.acl(path).map_err(|e| tree_error(&e))?;
        self.permit(path, perms::READ | perms::ADMIN)?;
        if !check_acl(&acl, perms::ADMIN, self.auth) {
            for entry in acl.iter_mut().filter(|entry| entry.id.scheme == "digest") {
                let user = entry.id.id.split(':').next().unwrap_or_default();
                entry.id.id = format!("{user}:x");
            }
        }
        Ok(OpResult::GetAcl { acl, stat })
    }

    /// Leaves a watch, unless the session holds the limit already (asking
    /// again for a watch already held is not one more).
    fn watch(
        &self,
        watches: &mut WatchTable<SessionId>,
        kind: WatchKind,
        path: &str,
    ) -> Result<(), OpError> {
        let max = self.limits.max_watches_per_session;
        let session = self.session;
        if !watches.holds(kind, path, session) && watches.count_of(session) >= max {
            return Err(OpError::new(
                Code::TooManyWatches,
                format!("session {session} already holds {max} watches, the limit"),
            ));
        }
        watches.add(kind, path, session);
        Ok(())
    }

    fn set_watches(
        &self,
        watches: &mut WatchTable<SessionId>,
        last_zxid_seen: u64,
        paths: SetWatchesPaths<'_>,
    ) -> Result<Vec<(SessionId, WatchEvent)>, OpError> {
        let count = paths.len();
        let max_paths = self.limits.max_set_watches_paths;
        if count > max_paths {
            return Err(OpError::new(
                Code::TooManyWatches,
                format!(
                    "set watches names {count} paths, over the limit of {max_paths} per request"
                ),
            ));
        }
        for (_, path) in paths.iter() {
            self.checked(path)?;
        }
        // Watches the session holds already (re-registered after a
        // reattach to the same server) are not more.
        let session = self.session;
        let new = paths
            .iter()
            .filter(|(kind, path)| !watches.holds(*kind, path, session))
            .count();
        let held = watches.count_of(session);
        let max = self.limits.max_watches_per_session;
        if held + new > max {
            return Err(OpError::new(
                Code::TooManyWatches,
                format!(
                    "session {session} holds {held} watches; {new} more would pass the limit of {max}"
                ),
            ));
        }
        watches
            .set_watches2(self.tree, session, last_zxid_seen, paths)
            .map_err(|e| tree_error(&e))
    }
}

fn no_watcher(path: &str, kind: WatcherType) -> OpError {
    OpError::new(
        Code::NoWatcher,
        format!("no watch of type {kind:?} on {path}"),
    )
}

/// The code and message a client sees for a refused transaction.
pub(crate) fn txn_error(err: &TxnError) -> OpError {
    match err {
        TxnError::Tree(err) => tree_error(err),
        TxnError::SessionExpired { .. } | TxnError::Reattach(_) => {
            OpError::new(Code::SessionExpired, err.to_string())
        }
        TxnError::SessionMoved { .. } => OpError::new(Code::SessionMoved, err.to_string()),
        TxnError::NoAuth { .. } => OpError::new(Code::NoAuth, err.to_string()),
        TxnError::InvalidAcl(_) => OpError::new(Code::InvalidAcl, err.to_string()),
        TxnError::Multi { error, .. } => OpError::new(txn_error(error).code, err.to_string()),
        _ => OpError::new(Code::SystemError, err.to_string()),
    }
}

/// The code and message a client sees for a tree error.
pub(crate) fn tree_error(err: &session_core::TreeError) -> OpError {
    use session_core::TreeError as E;
    let code = match err {
        E::NoNode { .. } => Code::NoNode,
        E::NodeExists { .. } => Code::NodeExists,
        E::BadVersion { .. } => Code::BadVersion,
        E::NotEmpty { .. } => Code::NotEmpty,
        E::NoChildrenForEphemerals { .. } => Code::NoChildrenForEphemerals,
        E::InvalidPath(_) | E::RootDelete => Code::InvalidPath,
        E::DataTooLarge { .. } | E::PathTooLong { .. } => Code::TooLarge,
        E::TooManyEphemerals { .. } => Code::TooManyEphemerals,
        E::TooManyNodes { .. } | E::DataQuotaExceeded { .. } => Code::QuotaExceeded,
        _ => Code::BadArguments,
    };
    OpError::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use session_core::{Liveness, OwnerId, Replica, ServerId, SessionId, Txn};

    use super::*;
    use crate::mailbox::{Holder, Receiver, mailbox};
    use crate::server::{first_session_id, random_secret};

    const SERVER: u8 = 1;

    /// A state machine with one connection, of session `session` and owner
    /// 7, whose mailbox is returned.
    fn machine_with_connection(session: SessionId) -> (StateMachine, Receiver) {
        let server = ServerId::new(u64::from(SERVER)).expect("server id");
        let replica = Replica::new(
            random_secret().expect("secret"),
            first_session_id(server).expect("first id"),
        );
        let liveness = Liveness::new(Duration::from_millis(100), Instant::now()).expect("liveness");
        let machine = StateMachine::new(
            server,
            replica,
            liveness,
            Arc::new(Metrics::new()),
            Limits::default(),
        );
        let (sender, receiver) = mailbox(Holder {
            owner: OwnerId::new(7),
            remote: SocketAddr::from(([127, 0, 0, 1], 2181)),
            client: "test".into(),
        });
        machine
            .connections
            .insert(session, ConnectionHandle { mailbox: sender });
        (machine, receiver)
    }

    fn exists_root(session: SessionId, owner: u64, xid: i32) -> DeferredRead {
        DeferredRead {
            session,
            owner: OwnerId::new(owner),
            xid,
            op: Operation::Exists {
                path: "/".to_owned(),
                watch: false,
            },
            auth: Arc::from(Vec::new()),
        }
    }

    /// The read answers in the mailbox, as (xid, zxid, error code if
    /// refused).
    fn answers(mailbox: &mut Receiver) -> Vec<(i32, u64, Option<Code>)> {
        std::iter::from_fn(|| mailbox.try_recv())
            .map(|notice| match notice {
                Notice::Read(answer) => (
                    answer.xid,
                    answer.zxid,
                    answer.result.err().map(|error| error.code),
                ),
                other => panic!("a read's answer, not {other:?}"),
            })
            .collect()
    }

    /// A read behind a write is answered as that write is applied, before
    /// the proposer hears of it, from the state just after it; behind a
    /// write applied already, at once; behind one whose proposal failed,
    /// refused UNAVAILABLE when the wait for it is dropped (never left
    /// unanswered, never from a state that may hold later writes); and
    /// never into a connection that replaced the one that asked.
    #[test]
    fn a_read_behind_a_write_is_answered_where_that_write_is_applied() {
        let session = SessionId::from_u64(0x100);
        let (machine, mut mailbox) = machine_with_connection(session);
        let create = Txn::CreateSession {
            min_id: SessionId::from_u64(0x200),
            timeout: Duration::from_secs(6),
            owner: machine.server(),
        };

        // Behind a write not applied yet: nothing until it is.
        let mut applied = machine.await_applied(SERVER, 1);
        machine.read_after((SERVER, 1), exists_root(session, 7, 10));
        machine.read_after((SERVER, 1), exists_root(session, 7, 11));
        assert_eq!(answers(&mut mailbox), []);
        assert!(applied.try_recv().is_err());
        let before = machine.zxid();
        machine.apply_proposed(SERVER, 1, &create, Instant::now());
        let zxid = applied.try_recv().expect("the proposer is told").zxid;
        assert_eq!(zxid, before + 1);
        assert_eq!(answers(&mut mailbox), [(10, zxid, None), (11, zxid, None)]);

        // Behind a write applied already: at once.
        machine.read_after((SERVER, 1), exists_root(session, 7, 12));
        assert_eq!(answers(&mut mailbox), [(12, zxid, None)]);

        // Behind a write whose proposal failed: when its wait is dropped.
        let _failed = machine.await_applied(SERVER, 2);
        machine.read_after((SERVER, 2), exists_root(session, 7, 13));
        assert_eq!(answers(&mut mailbox), []);
        machine.forget_waiter(SERVER, 2);
        assert_eq!(answers(&mut mailbox), [(13, zxid, Some(Code::Unavailable))]);

        // For a connection since replaced (another owner): dropped.
        machine.read_after((SERVER, 3), exists_root(session, 8, 14));
        assert_eq!(answers(&mut mailbox), []);
    }
}
