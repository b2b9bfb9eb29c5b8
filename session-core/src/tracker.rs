//! The server's session table: ids, passwords, timeouts, owners and expiry.
//!
//! [`SessionTracker`] holds every session a server knows, open or closing: it
//! mints ids, negotiates timeouts and checks passwords, and keeps owners and
//! expiry in a [`Liveness`]. Each open session sits in an expiry bucket; every
//! frame from its owner touches it; [`SessionTracker::poll_expired`] hands out
//! the sessions whose bucket is due and marks them closing. A closing session
//! refuses touches and reattaches (ZOOKEEPER-1208: nothing may be created for a
//! session being closed) until the server has applied the close and calls
//! [`SessionTracker::remove`].
//!
//! Passwords are not stored: they are derived from the server's
//! [`PasswordSecret`] when needed, so a tracker holds what its `Liveness`
//! holds, about 100 bytes per session.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::{
    IdGenerator, Liveness, LivenessInfo, PasswordSecret, ServerId, SessionId, SessionPassword,
    TimeoutPolicy,
};

/// The connection (or, later, the server) currently holding a session, chosen
/// by the server; opaque to the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerId(u64);

impl OwnerId {
    /// The owner with this value.
    #[must_use]
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The value.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Whether a session is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Alive: touches keep it so.
    Open,
    /// Expired or closed by its client; the server is tearing it down.
    Closing,
}

/// What the tracker knows of one session, for admin listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session.
    pub id: SessionId,
    /// Its negotiated timeout.
    pub timeout: Duration,
    /// The connection holding it; `None` after a restore, until reattached.
    pub owner: Option<OwnerId>,
    /// Open or closing.
    pub state: SessionState,
    /// When it was last touched (created, reattached or restored counts).
    pub last_touch: Instant,
    /// The instant its expiry bucket is due; `None` once closing.
    pub deadline: Option<Instant>,
}

/// A session just created: what the server sends back in its connect reply.
#[derive(Debug, Clone, Copy)]
pub struct NewSession {
    /// The new id.
    pub id: SessionId,
    /// Its password.
    pub password: SessionPassword,
    /// The negotiated timeout.
    pub timeout: Duration,
}

/// A successful reattach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reattached {
    /// The timeout negotiated again from the new request.
    pub timeout: Duration,
    /// The previous owner, which the server tells `SessionMoved` (if it is
    /// another connection than the new owner).
    pub previous_owner: Option<OwnerId>,
}

/// Why a session could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CreateError {
    /// This server has handed out all 2^56 of its ids.
    #[error("server {server} has no session ids left")]
    IdsExhausted {
        /// The server.
        server: ServerId,
    },
}

/// Why a touch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TouchError {
    /// No such session: it expired and was removed, or never existed. The
    /// server answers `SessionExpired`.
    #[error("session {id} is unknown")]
    Unknown {
        /// The session.
        id: SessionId,
    },
    /// The session is being closed. The server answers `SessionExpired`.
    #[error("session {id} is closing")]
    Closing {
        /// The session.
        id: SessionId,
    },
    /// The request came from a connection that no longer owns the session
    /// (the client reattached elsewhere). The server answers `SessionMoved`
    /// and closes that connection, as ZooKeeper does.
    #[error("session {id} has moved to another owner")]
    Moved {
        /// The session.
        id: SessionId,
        /// Its current owner.
        current: Option<OwnerId>,
    },
}

/// Why a reattach was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReattachError {
    /// The password does not belong to the id; checked first, so a wrong
    /// password reveals nothing about whether the session exists. The server
    /// answers `AuthFailed` (ZooKeeper answers as for an expired session).
    #[error("wrong password for session {id}")]
    WrongPassword {
        /// The session.
        id: SessionId,
    },
    /// No such session (expired and removed, or from before a restart that lost
    /// it). The server answers `SessionExpired`.
    #[error("session {id} is unknown")]
    Unknown {
        /// The session.
        id: SessionId,
    },
    /// The session expired or is being closed. The server answers
    /// `SessionExpired`.
    #[error("session {id} is closing")]
    Closing {
        /// The session.
        id: SessionId,
    },
}

impl ReattachError {
    /// Whether the server should answer `SessionExpired` (all but a wrong password).
    #[must_use]
    pub fn is_expired(&self) -> bool {
        !matches!(self, Self::WrongPassword { .. })
    }
}

/// The session is not in the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("session {id} is unknown")]
pub struct UnknownSession {
    /// The session.
    pub id: SessionId,
}

/// One session in a [`TrackerSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSession {
    /// The session.
    pub id: SessionId,
    /// Its negotiated timeout.
    pub timeout: Duration,
    /// Open, or closing (the server still has a close to apply).
    pub state: SessionState,
}

/// What to persist to restore a tracker after a restart (or a leader change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerSnapshot {
    /// Every session, open and closing.
    pub sessions: Vec<SnapshotSession>,
    /// The highest id handed out, so a restart never repeats an id.
    pub high_water: Option<SessionId>,
}

/// The server's table of sessions.
///
/// Drive it from the server loop: [`create`](Self::create) on a new connect,
/// [`touch`](Self::touch) on every frame, [`reattach`](Self::reattach) when a
/// client comes back with an id and password, and
/// [`poll_expired`](Self::poll_expired) at [`next_deadline`](Self::next_deadline).
///
/// ```
/// use std::time::{Duration, Instant};
/// use session_core::{
///     IdGenerator, OwnerId, PasswordSecret, ServerId, SessionTracker, TimeoutPolicy,
///     TouchError,
/// };
///
/// let start = Instant::now();
/// let ms = Duration::from_millis;
/// let policy = TimeoutPolicy::new(ms(2000))?;
/// let ids = IdGenerator::new(ServerId::new(1)?, 1_700_000_000_000, None);
/// let secret = PasswordSecret::new(&[42; 32])?;
/// let mut tracker = SessionTracker::new(policy, ids, secret, start);
///
/// let conn = OwnerId::new(1);
/// let session = tracker.create(ms(5000), conn, start)?;
/// assert_eq!(session.timeout, ms(5000));
/// tracker.touch(session.id, conn, start + ms(3000))?;
///
/// // The client moves to another connection with its id and password.
/// let moved = tracker.reattach(session.id, &session.password, ms(5000), OwnerId::new(2), start + ms(4000))?;
/// assert_eq!(moved.previous_owner, Some(conn));
/// assert!(matches!(tracker.touch(session.id, conn, start + ms(4100)), Err(TouchError::Moved { .. })));
///
/// // Left alone, it expires in (4000 + 5000, 4000 + 5000 + 2000] ms.
/// let wake = tracker.next_deadline().expect("one session");
/// assert_eq!(wake, start + ms(10_000));
/// assert_eq!(tracker.poll_expired(wake), vec![session.id]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SessionTracker {
    policy: TimeoutPolicy,
    ids: IdGenerator,
    /// The first id this tracker could mint: ids of this server below it come
    /// from an earlier run (or a snapshot) and are live only if held here.
    first_id: Option<SessionId>,
    secret: PasswordSecret,
    liveness: Liveness,
}

impl SessionTracker {
    /// An empty tracker. `origin` is the instant expiry buckets are counted
    /// from (the server's start).
    #[must_use]
    pub fn new(
        policy: TimeoutPolicy,
        ids: IdGenerator,
        secret: PasswordSecret,
        origin: Instant,
    ) -> Self {
        let liveness = Liveness::new(policy.tick(), origin)
            .expect("invariant: a TimeoutPolicy's tick is never zero");
        Self {
            policy,
            first_id: ids.peek(),
            ids,
            secret,
            liveness,
        }
    }

    /// A tracker holding the sessions of `snapshot`, each with a fresh full
    /// timeout (clamped into `policy`) from `now` (as ZooKeeper does after a restart or leader change),
    /// no owner until its client reattaches, and ids continuing above both
    /// the snapshot's high-water mark and every restored id.
    #[must_use]
    pub fn restore(
        policy: TimeoutPolicy,
        mut ids: IdGenerator,
        secret: PasswordSecret,
        origin: Instant,
        snapshot: &TrackerSnapshot,
        now: Instant,
    ) -> Self {
        if let Some(mark) = snapshot.high_water {
            ids.observe(mark);
        }
        let mut tracker = Self::new(policy, ids, secret, origin);
        for session in &snapshot.sessions {
            if tracker.contains(session.id) {
                continue;
            }
            tracker.ids.observe(session.id);
            // Clamped into the current policy, which may have changed meanwhile.
            let timeout = tracker.policy.negotiate(session.timeout);
            // Not held yet (checked above), so there is no closing session to refuse it.
            let tracked = tracker.liveness.track(session.id, timeout, None, now);
            debug_assert_eq!(tracked, Ok(None));
            if session.state == SessionState::Closing {
                tracker.liveness.mark_closing(session.id);
            }
        }
        tracker
    }

    /// Everything needed to [`restore`](Self::restore) the sessions later.
    #[must_use]
    pub fn export(&self) -> TrackerSnapshot {
        TrackerSnapshot {
            sessions: self
                .sessions()
                .map(|info| SnapshotSession {
                    id: info.id,
                    timeout: info.timeout,
                    state: info.state,
                })
                .collect(),
            high_water: self.ids.high_water(),
        }
    }

    /// The timeout policy.
    #[must_use]
    pub fn policy(&self) -> &TimeoutPolicy {
        &self.policy
    }

    /// The highest id handed out: persist it to never repeat an id.
    #[must_use]
    pub fn high_water(&self) -> Option<SessionId> {
        self.ids.high_water()
    }

    /// Sessions held, open and closing.
    #[must_use]
    pub fn len(&self) -> usize {
        self.liveness.len()
    }

    /// Whether no session is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.liveness.is_empty()
    }

    /// Whether `id` is held, open or closing.
    #[must_use]
    pub fn contains(&self, id: SessionId) -> bool {
        self.liveness.contains(id)
    }

    /// Creates a session for a new connection `owner`: negotiates `requested`,
    /// mints an id and derives its password.
    pub fn create(
        &mut self,
        requested: Duration,
        owner: OwnerId,
        now: Instant,
    ) -> Result<NewSession, CreateError> {
        let id = self.ids.next().ok_or(CreateError::IdsExhausted {
            server: self.ids.server_id(),
        })?;
        let timeout = self.policy.negotiate(requested);
        // A minted id is above every id held (restored ones are observed), so
        // it is new to the liveness table.
        let tracked = self.liveness.track(id, timeout, Some(owner), now);
        debug_assert_eq!(tracked, Ok(None));
        Ok(NewSession {
            id,
            password: self.secret.derive(id),
            timeout,
        })
    }

    /// Keeps session `id` alive: called for every frame its connection `owner`
    /// sends, not only pings.
    pub fn touch(&mut self, id: SessionId, owner: OwnerId, now: Instant) -> Result<(), TouchError> {
        self.liveness.touch(id, owner, now)
    }

    /// A client comes back on connection `owner` with its id and password and a
    /// newly requested timeout: checks the password (constant time, first),
    /// negotiates again, takes ownership and touches the session.
    ///
    /// One case is decided before the password: an id this tracker does not
    /// hold and could not have minted (another server's, or one from before
    /// this tracker started) is [`ReattachError::Unknown`]. Such an id is dead
    /// whoever asks, so saying so reveals nothing, and it is how a client whose
    /// server restarted with a new secret hears "expired" rather than
    /// "wrong password".
    pub fn reattach(
        &mut self,
        id: SessionId,
        password: &SessionPassword,
        requested: Duration,
        owner: OwnerId,
        now: Instant,
    ) -> Result<Reattached, ReattachError> {
        if !self.contains(id) && !self.could_have_minted(id) {
            return Err(ReattachError::Unknown { id });
        }
        if !self.secret.verify(id, password) {
            return Err(ReattachError::WrongPassword { id });
        }
        if !self.liveness.contains(id) {
            return Err(ReattachError::Unknown { id });
        }
        let timeout = self.policy.negotiate(requested);
        match self.liveness.track(id, timeout, Some(owner), now) {
            Ok(previous_owner) => Ok(Reattached {
                timeout,
                previous_owner,
            }),
            Err(TouchError::Closing { .. }) => Err(ReattachError::Closing { id }),
            // `track` refuses closing sessions only.
            Err(TouchError::Unknown { .. } | TouchError::Moved { .. }) => {
                Err(ReattachError::Unknown { id })
            }
        }
    }

    /// The password of a session held here, for the connect reply of a
    /// reattach (the client already has it; ZooKeeper sends it again).
    #[must_use]
    pub fn password(&self, id: SessionId) -> Option<SessionPassword> {
        self.contains(id).then(|| self.secret.derive(id))
    }

    /// Marks session `id` closing (its client asked to close it, or the server
    /// expires it by hand): it leaves expiry and refuses touches and reattaches
    /// until [`remove`](Self::remove). Marking a closing session again is a no-op.
    pub fn mark_closing(&mut self, id: SessionId) -> Result<(), UnknownSession> {
        if self.liveness.mark_closing(id) {
            Ok(())
        } else {
            Err(UnknownSession { id })
        }
    }

    /// Forgets session `id` (open or closing) once the server has applied its
    /// close; returns what was known of it.
    pub fn remove(&mut self, id: SessionId) -> Option<SessionInfo> {
        let info = self.info(id)?;
        self.liveness.forget(id);
        Some(info)
    }

    /// Marks closing, and returns, every open session whose expiry bucket is due
    /// at `now`, earliest bucket first. Each is returned once.
    #[must_use = "expired sessions must be closed by the server"]
    pub fn poll_expired(&mut self, now: Instant) -> Vec<SessionId> {
        self.liveness.poll_expired(now)
    }

    /// When [`poll_expired`](Self::poll_expired) next has something to return.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.liveness.next_deadline()
    }

    /// What is known of session `id`.
    #[must_use]
    pub fn info(&self, id: SessionId) -> Option<SessionInfo> {
        self.liveness.info(id).map(session_info)
    }

    /// Every session, open ones first, for admin listings.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.liveness.sessions().map(session_info)
    }

    /// Whether `id` is one this tracker minted or may still mint.
    fn could_have_minted(&self, id: SessionId) -> bool {
        id.server_id() == self.ids.server_id().get()
            && self.first_id.is_some_and(|first| id >= first)
    }

    /// The expiry buckets, earliest first: each due instant with its sessions,
    /// for an admin dump. (A deadline too far out for an `Instant` is listed
    /// last, as `None`.) Walks every session: for admin use, not a hot path.
    #[must_use]
    pub fn expiry_buckets(&self) -> Vec<(Option<Instant>, Vec<SessionId>)> {
        self.liveness.expiry_buckets()
    }
}

fn session_info(info: LivenessInfo) -> SessionInfo {
    SessionInfo {
        id: info.id,
        timeout: info.timeout,
        owner: info.owner,
        state: if info.closing {
            SessionState::Closing
        } else {
            SessionState::Open
        },
        last_touch: info.last_touch,
        deadline: info.deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn tracker(start: Instant) -> SessionTracker {
        let policy = TimeoutPolicy::new(ms(2000)).expect("valid tick");
        let ids = IdGenerator::new(ServerId::new(1).expect("valid"), 0x0003_42b8, None);
        let secret = PasswordSecret::new(&[5; 32]).expect("long enough");
        SessionTracker::new(policy, ids, secret, start)
    }

    /// Polls at every wake-up up to `until`, as the server's expirer does.
    fn expire_until(t: &mut SessionTracker, until: Instant) -> Vec<(Instant, SessionId)> {
        let mut out = Vec::new();
        while let Some(wake) = t.next_deadline().filter(|w| *w <= until) {
            out.extend(t.poll_expired(wake).into_iter().map(|id| (wake, id)));
        }
        out
    }

    #[test]
    fn create_negotiates_and_mints_zookeeper_style_ids() {
        let start = Instant::now();
        let mut t = tracker(start);
        let owner = OwnerId::new(7);
        let a = t.create(ms(1000), owner, start).expect("ids left");
        let b = t.create(ms(60_000), owner, start).expect("ids left");
        // Reference: 0x0100000342b80000 then ...0001; 1000→4000, 60000→40000.
        assert_eq!(a.id.to_string(), "0x0100000342b80000");
        assert_eq!(b.id.to_string(), "0x0100000342b80001");
        assert_eq!((a.timeout, b.timeout), (ms(4000), ms(40_000)));
        assert_eq!(
            t.password(a.id).map(|p| *p.as_bytes()),
            Some(*a.password.as_bytes())
        );
        let info = t.info(a.id).expect("held");
        assert_eq!(info.owner, Some(owner));
        assert_eq!(info.state, SessionState::Open);
        assert_eq!(info.last_touch, start);
        assert_eq!(info.deadline, Some(start + ms(6000)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.high_water(), Some(b.id));
    }

    #[test]
    fn touched_every_third_of_the_timeout_never_expires() {
        let start = Instant::now();
        let mut t = tracker(start);
        let owner = OwnerId::new(1);
        let s = t.create(ms(6000), owner, start).expect("ids left");
        let mut now = start;
        for _ in 0..300 {
            now += ms(2000);
            assert!(
                expire_until(&mut t, now).is_empty(),
                "expired at {:?}",
                now - start
            );
            t.touch(s.id, owner, now).expect("open");
        }
        assert_eq!(t.info(s.id).map(|i| i.last_touch), Some(now));
    }

    #[test]
    fn left_alone_expires_within_timeout_and_one_tick() {
        // Reference "Expiry (server)": fires in (last_touch + T, last_touch + T + tick].
        let start = Instant::now();
        for offset in [0, 1, 999, 1000, 1999, 2000, 3333] {
            let mut t = tracker(start);
            let owner = OwnerId::new(1);
            let touched = start + ms(offset);
            let s = t.create(ms(4000), owner, start).expect("ids left");
            t.touch(s.id, owner, touched).expect("open");
            let expired = expire_until(&mut t, start + ms(60_000));
            assert_eq!(expired.len(), 1);
            let (when, id) = expired[0];
            assert_eq!(id, s.id);
            assert!(when > touched + ms(4000), "early at offset {offset}");
            assert!(when <= touched + ms(6000), "late at offset {offset}");
            assert_eq!(t.info(s.id).map(|i| i.state), Some(SessionState::Closing));
        }
    }

    #[test]
    fn many_sessions_killed_at_once_expire_in_one_bucket() {
        // Reference: 200 sessions killed at once, all removed in the same instant.
        let start = Instant::now();
        let mut t = tracker(start);
        let ids: Vec<_> = (0..200)
            .map(|n| {
                t.create(ms(4000), OwnerId::new(n), start + ms(n % 7))
                    .expect("ids left")
                    .id
            })
            .collect();
        let expired = expire_until(&mut t, start + ms(10_000));
        assert_eq!(expired.iter().map(|(_, id)| *id).collect::<Vec<_>>(), ids);
        assert!(expired.iter().all(|(when, _)| *when == start + ms(6000)));
    }

    #[test]
    fn closing_sessions_refuse_touch_and_reattach() {
        let start = Instant::now();
        let mut t = tracker(start);
        let owner = OwnerId::new(1);
        let s = t.create(ms(4000), owner, start).expect("ids left");
        t.mark_closing(s.id).expect("held");
        t.mark_closing(s.id).expect("idempotent");
        assert_eq!(
            t.touch(s.id, owner, start),
            Err(TouchError::Closing { id: s.id })
        );
        let err = t
            .reattach(s.id, &s.password, ms(4000), owner, start)
            .expect_err("closing");
        assert_eq!(err, ReattachError::Closing { id: s.id });
        assert!(err.is_expired());
        assert_eq!(t.next_deadline(), None, "closing sessions leave expiry");
        assert!(expire_until(&mut t, start + ms(60_000)).is_empty());
        let info = t.remove(s.id).expect("held");
        assert_eq!(info.state, SessionState::Closing);
        assert_eq!(
            t.touch(s.id, owner, start),
            Err(TouchError::Unknown { id: s.id })
        );
        assert_eq!(t.mark_closing(s.id), Err(UnknownSession { id: s.id }));
        assert!(t.is_empty());
    }

    #[test]
    fn reattach_after_expiry_says_expired() {
        let start = Instant::now();
        let mut t = tracker(start);
        let s = t
            .create(ms(4000), OwnerId::new(1), start)
            .expect("ids left");
        assert_eq!(expire_until(&mut t, start + ms(7000)).len(), 1);
        let again = t.reattach(
            s.id,
            &s.password,
            ms(4000),
            OwnerId::new(2),
            start + ms(7000),
        );
        assert_eq!(again, Err(ReattachError::Closing { id: s.id }));
        t.remove(s.id);
        let again = t.reattach(
            s.id,
            &s.password,
            ms(4000),
            OwnerId::new(2),
            start + ms(7000),
        );
        assert_eq!(again, Err(ReattachError::Unknown { id: s.id }));
        assert!(again.expect_err("unknown").is_expired());
    }

    #[test]
    fn reattach_checks_password_renegotiates_and_moves_ownership() {
        let start = Instant::now();
        let mut t = tracker(start);
        let (old, new) = (OwnerId::new(1), OwnerId::new(2));
        let s = t.create(ms(4000), old, start).expect("ids left");
        let wrong = SessionPassword::from_bytes([0; 16]);
        let err = t
            .reattach(s.id, &wrong, ms(4000), new, start)
            .expect_err("wrong password");
        assert_eq!(err, ReattachError::WrongPassword { id: s.id });
        assert!(!err.is_expired());
        // A wrong password for an unknown id this tracker could mint says the
        // same: no probing for live ids.
        let unknown = SessionId::from_u64(s.id.as_u64() + 100);
        assert_eq!(
            t.reattach(unknown, &wrong, ms(4000), new, start),
            Err(ReattachError::WrongPassword { id: unknown })
        );
        let back = t
            .reattach(s.id, &s.password, ms(30_000), new, start + ms(1000))
            .expect("right password");
        assert_eq!(
            back,
            Reattached {
                timeout: ms(30_000),
                previous_owner: Some(old)
            }
        );
        assert_eq!(
            t.touch(s.id, old, start + ms(1001)),
            Err(TouchError::Moved {
                id: s.id,
                current: Some(new)
            })
        );
        t.touch(s.id, new, start + ms(1002)).expect("new owner");
        let info = t.info(s.id).expect("held");
        assert_eq!((info.timeout, info.owner), (ms(30_000), Some(new)));
        // The renegotiated timeout is the one expiry uses.
        assert!(expire_until(&mut t, start + ms(31_000)).is_empty());
        assert_eq!(expire_until(&mut t, start + ms(40_000)).len(), 1);
    }

    #[test]
    fn export_and_restore_give_a_fresh_full_timeout_and_new_ids() {
        let start = Instant::now();
        let mut t = tracker(start);
        let owner = OwnerId::new(1);
        let a = t.create(ms(4000), owner, start).expect("ids left");
        let b = t.create(ms(10_000), owner, start).expect("ids left");
        let c = t.create(ms(10_000), owner, start).expect("ids left");
        t.mark_closing(c.id).expect("held");
        let snapshot = t.export();
        assert_eq!(snapshot.sessions.len(), 3);
        assert_eq!(snapshot.high_water, Some(c.id));

        // Restart 3 s later with a wall clock that went backwards.
        let now = start + ms(3000);
        let ids = IdGenerator::new(
            ServerId::new(1).expect("valid"),
            0x0003_4200,
            snapshot.high_water,
        );
        let policy = *t.policy();
        let secret = PasswordSecret::new(&[5; 32]).expect("long enough");
        let mut r = SessionTracker::restore(policy, ids, secret, now, &snapshot, now);
        assert_eq!(r.len(), 3);
        let info = r.info(a.id).expect("restored");
        assert_eq!(
            (info.timeout, info.owner, info.last_touch),
            (ms(4000), None, now)
        );
        assert_eq!(r.info(c.id).map(|i| i.state), Some(SessionState::Closing));
        // Fresh full timeout from the restore, not from the last touch before it.
        assert!(expire_until(&mut r, now + ms(4000)).is_empty());
        let expired = expire_until(&mut r, now + ms(6000));
        assert_eq!(
            expired.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
            vec![a.id]
        );
        // Reattach still works with the same secret; ids resume above the mark.
        r.reattach(b.id, &b.password, ms(10_000), OwnerId::new(9), now)
            .expect("restored session");
        let d = r.create(ms(4000), owner, now).expect("ids left");
        assert!(d.id > c.id);
    }

    #[test]
    fn sessions_lists_open_and_closing() {
        let start = Instant::now();
        let mut t = tracker(start);
        let a = t
            .create(ms(4000), OwnerId::new(1), start)
            .expect("ids left");
        let b = t
            .create(ms(4000), OwnerId::new(2), start)
            .expect("ids left");
        t.mark_closing(b.id).expect("held");
        let listed: Vec<_> = t.sessions().map(|i| (i.id, i.state)).collect();
        assert_eq!(
            listed,
            vec![(a.id, SessionState::Open), (b.id, SessionState::Closing)]
        );
        assert_eq!(
            t.expiry_buckets(),
            vec![(Some(start + ms(6000)), vec![a.id])]
        );
        assert_eq!(t.remove(a.id).map(|i| i.state), Some(SessionState::Open));
        assert_eq!(t.sessions().count(), 1);
    }

    #[test]
    fn expiry_buckets_list_ids_earliest_first() {
        let start = Instant::now();
        let mut t = tracker(start);
        let late = t
            .create(ms(8000), OwnerId::new(1), start)
            .expect("ids left");
        let early = t
            .create(ms(4000), OwnerId::new(2), start)
            .expect("ids left");
        let early_too = t
            .create(ms(4000), OwnerId::new(3), start + ms(100))
            .expect("ids left");
        assert_eq!(
            t.expiry_buckets(),
            vec![
                (Some(start + ms(6000)), vec![early.id, early_too.id]),
                (Some(start + ms(10_000)), vec![late.id]),
            ]
        );
    }

    #[test]
    fn ids_from_before_this_tracker_are_unknown_whatever_the_password() {
        // A restart: the first run's secret and ids are gone. Its clients must
        // hear "expired" (Unknown), not "wrong password", although their
        // passwords no longer verify under the new secret.
        let start = Instant::now();
        let mut first_run = tracker(start);
        let old = first_run
            .create(ms(4000), OwnerId::new(1), start)
            .expect("ids left");
        let policy = TimeoutPolicy::new(ms(2000)).expect("valid tick");
        let ids = IdGenerator::new(ServerId::new(1).expect("valid"), 0x0003_42b8 + 60_000, None);
        let secret = PasswordSecret::new(&[6; 32]).expect("long enough");
        let mut second_run = SessionTracker::new(policy, ids, secret, start);
        assert_eq!(
            second_run.reattach(old.id, &old.password, ms(4000), OwnerId::new(2), start),
            Err(ReattachError::Unknown { id: old.id })
        );
        // Another server's id is not this tracker's to judge by password either.
        let foreign = SessionId::from_u64(0x0200_0003_42b8_0000);
        let any = SessionPassword::from_bytes([0; 16]);
        assert_eq!(
            second_run.reattach(foreign, &any, ms(4000), OwnerId::new(2), start),
            Err(ReattachError::Unknown { id: foreign })
        );
        // Ids of this run still need the right password.
        let fresh = second_run
            .create(ms(4000), OwnerId::new(3), start)
            .expect("ids left");
        let next = SessionId::from_u64(fresh.id.as_u64() + 1);
        assert_eq!(
            second_run.reattach(next, &any, ms(4000), OwnerId::new(4), start),
            Err(ReattachError::WrongPassword { id: next })
        );
    }
}
