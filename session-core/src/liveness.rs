//! The local half of session tracking: which connection holds each session,
//! when it was last heard from, and when it expires.
//!
//! [`Liveness`] is the bookkeeping that only the server running expiry keeps.
//! It mints no ids and knows no passwords: sessions come to it already
//! identified, with their negotiated timeouts, from a new connect, a reattach,
//! or a replicated session table restored after a restart or leader change.
//! [`SessionTracker`](crate::SessionTracker) is a `Liveness` plus an id
//! generator and a password secret.
//!
//! Each open session sits in an [`ExpiryQueue`] bucket; every frame from its
//! owner touches it; [`Liveness::poll_expired`] hands out the sessions whose
//! bucket is due and marks them closing. A closing session refuses touches and
//! tracking (ZOOKEEPER-1208: nothing may be created for a session being
//! closed) until the close has been applied and [`Liveness::forget`] is called.
//!
//! A session record in the expiry slab is 56 bytes; with the id index, a
//! `Liveness` holds about 100 bytes per session.

use std::collections::{BTreeMap, HashMap, hash_map};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::{ExpiryHandle, ExpiryQueue, ExpiryQueueError, OwnerId, SessionId, TouchError};

/// What a [`Liveness`] knows of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessInfo {
    /// The session.
    pub id: SessionId,
    /// The connection holding it; `None` until one does (after a restore, say).
    /// A closing session keeps its owner, the connection to close.
    pub owner: Option<OwnerId>,
    /// Its timeout.
    pub timeout: Duration,
    /// When it was last heard from (tracking it counts).
    pub last_touch: Instant,
    /// The instant its expiry bucket is due; `None` once closing (or when that
    /// instant lies beyond what `Instant` can hold).
    pub deadline: Option<Instant>,
    /// Whether it expired or was marked closing: it refuses touches and
    /// tracking until forgotten.
    pub closing: bool,
}

/// A session as kept in the expiry slab: 40 bytes (56 with the slab's own
/// fields).
#[derive(Debug, Clone, Copy)]
struct Record {
    id: SessionId,
    owner: Option<OwnerId>,
    timeout_nanos: u64,
    /// Nanoseconds after the queue's origin.
    last_touch_nanos: u64,
}

/// Session ids are minted by servers, not chosen by clients, so a fast
/// multiplicative mix is enough (no hash-flooding by insertion is possible).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, value: u64) {
        // The finaliser of MurmurHash3: every input bit reaches the top 7 bits
        // (hashbrown's control byte) and the low bits (its bucket index).
        let mut x = value ^ (value >> 33);
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        self.0 = x ^ (x >> 33);
    }
}

type IdMap<V> = HashMap<SessionId, V, BuildHasherDefault<IdHasher>>;

const LIVE_HANDLE: &str = "invariant: every open session has a live expiry handle";

/// The local half of session tracking: which connection holds each session,
/// when it was last heard from, and its expiry bucket.
///
/// A session expires in `(last touch + timeout, last touch + timeout + tick]`
/// when [`poll_expired`](Self::poll_expired) is called at
/// [`next_deadline`](Self::next_deadline): never early, at most one tick late.
/// Nothing here reads a clock; every input carries its `now`.
///
/// The methods fall in four kinds:
///
/// - inputs, each with its `now`: [`track`](Self::track) (a new session, a
///   reattach, or a restore), [`touch`](Self::touch) for every frame from the
///   session's owner, and [`touch_any`](Self::touch_any) when the session was
///   heard from elsewhere;
/// - commands: [`mark_closing`](Self::mark_closing) when its client closes it,
///   [`forget`](Self::forget) once its close has been applied;
/// - outputs: [`poll_expired`](Self::poll_expired), which drains the due
///   sessions earliest bucket first and may be called at any time (an early
///   call returns nothing), and [`next_deadline`](Self::next_deadline), when
///   to call it next;
/// - getters: [`owner`](Self::owner), [`info`](Self::info),
///   [`sessions`](Self::sessions), [`expiry_buckets`](Self::expiry_buckets),
///   [`len`](Self::len), [`contains`](Self::contains).
///
/// ```
/// use std::time::{Duration, Instant};
/// use session_core::{Liveness, OwnerId, SessionId, TouchError};
///
/// let start = Instant::now();
/// let ms = Duration::from_millis;
/// let mut live = Liveness::new(ms(2000), start)?;
///
/// let id = SessionId::from_u64(0x0100_0003_42b8_0000);
/// let conn = OwnerId::new(1);
/// assert_eq!(live.track(id, ms(5000), Some(conn), start)?, None);
/// live.touch(id, conn, start + ms(3000))?;
///
/// // The client reattaches on another connection: the old one hears it moved.
/// let other = OwnerId::new(2);
/// assert_eq!(live.track(id, ms(5000), Some(other), start + ms(4000))?, Some(conn));
/// assert!(matches!(live.touch(id, conn, start + ms(4100)), Err(TouchError::Moved { .. })));
///
/// // Left alone, it expires in (4000 + 5000, 4000 + 5000 + 2000] ms.
/// let wake = live.next_deadline().expect("one session");
/// assert_eq!(wake, start + ms(10_000));
/// assert_eq!(live.poll_expired(wake), vec![id]);
/// assert_eq!(live.owner(id), Some(other), "the connection to close");
/// assert!(live.forget(id));
/// assert!(live.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Liveness {
    open: IdMap<ExpiryHandle>,
    queue: ExpiryQueue<Record>,
    closing: IdMap<Record>,
}

impl Liveness {
    /// Tracks nothing yet. Expiry buckets are `tick` wide, counted from
    /// `origin` (the server's start).
    pub fn new(tick: Duration, origin: Instant) -> Result<Self, ExpiryQueueError> {
        Ok(Self {
            open: IdMap::default(),
            queue: ExpiryQueue::new(origin, tick)?,
            closing: IdMap::default(),
        })
    }

    /// Sessions tracked, open and closing.
    #[must_use]
    pub fn len(&self) -> usize {
        self.open.len() + self.closing.len()
    }

    /// Whether no session is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is tracked, open or closing.
    #[must_use]
    pub fn contains(&self, id: SessionId) -> bool {
        self.open.contains_key(&id) || self.closing.contains_key(&id)
    }

    /// Whether `id` is marked closing (its close is proposed, not applied).
    #[must_use]
    pub fn is_closing(&self, id: SessionId) -> bool {
        self.closing.contains_key(&id)
    }

    /// Starts tracking `id` (a new session, a reattach, or a restore after a
    /// restart or leader change), held by `owner` (`None`: no connection yet),
    /// with a full `timeout` from `now`. An open session already tracked takes
    /// the new owner and timeout; the previous owner is returned, for the
    /// server to tell `SessionMoved` if it is another connection.
    ///
    /// A closing session stays closing: [`TouchError::Closing`] (the only error).
    /// A timeout above `u64::MAX` nanoseconds (584 years) is kept as that.
    pub fn track(
        &mut self,
        id: SessionId,
        timeout: Duration,
        owner: Option<OwnerId>,
        now: Instant,
    ) -> Result<Option<OwnerId>, TouchError> {
        let timeout_nanos = nanos(timeout);
        let last_touch_nanos = self.nanos_since_origin(now);
        let deadline = deadline_after(now, timeout_nanos);
        match self.open.entry(id) {
            hash_map::Entry::Occupied(held) => {
                let handle = *held.get();
                let record = self.queue.get_mut(handle).expect(LIVE_HANDLE);
                let previous = std::mem::replace(&mut record.owner, owner);
                record.timeout_nanos = timeout_nanos;
                record.last_touch_nanos = last_touch_nanos;
                self.queue.touch(handle, deadline);
                Ok(previous)
            }
            hash_map::Entry::Vacant(slot) => {
                if self.closing.contains_key(&id) {
                    return Err(TouchError::Closing { id });
                }
                let record = Record {
                    id,
                    owner,
                    timeout_nanos,
                    last_touch_nanos,
                };
                slot.insert(self.queue.insert(record, deadline));
                Ok(None)
            }
        }
    }

    /// Keeps session `id` alive: called for every frame its connection `owner`
    /// sends, not only pings. Refused as [`TouchError::Moved`] when another
    /// owner (or none) holds it, [`TouchError::Closing`] or
    /// [`TouchError::Unknown`] otherwise.
    pub fn touch(&mut self, id: SessionId, owner: OwnerId, now: Instant) -> Result<(), TouchError> {
        let Some(&handle) = self.open.get(&id) else {
            return Err(self.not_open(id));
        };
        let last_touch_nanos = self.nanos_since_origin(now);
        let record = self.queue.get_mut(handle).expect(LIVE_HANDLE);
        if record.owner != Some(owner) {
            return Err(TouchError::Moved {
                id,
                current: record.owner,
            });
        }
        record.last_touch_nanos = last_touch_nanos;
        let deadline = deadline_after(now, record.timeout_nanos);
        self.queue.touch(handle, deadline);
        Ok(())
    }

    /// Keeps session `id` alive whoever holds it (another server reporting
    /// that it heard from the session). Returns `false` if `id` is not open.
    pub fn touch_any(&mut self, id: SessionId, now: Instant) -> bool {
        let Some(&handle) = self.open.get(&id) else {
            return false;
        };
        let last_touch_nanos = self.nanos_since_origin(now);
        let record = self.queue.get_mut(handle).expect(LIVE_HANDLE);
        record.last_touch_nanos = last_touch_nanos;
        let deadline = deadline_after(now, record.timeout_nanos);
        self.queue.touch(handle, deadline);
        true
    }

    /// The connection holding session `id`, open or closing; `None` if the
    /// session has no owner or is not tracked.
    #[must_use]
    pub fn owner(&self, id: SessionId) -> Option<OwnerId> {
        match self.open.get(&id) {
            Some(&handle) => self.queue.get(handle)?.owner,
            None => self.closing.get(&id)?.owner,
        }
    }

    /// Marks session `id` closing (its client asked to close it, or the server
    /// expires it by hand): it leaves expiry and refuses touches and tracking
    /// until [`forget`](Self::forget). Marking a closing session again is a
    /// no-op. Returns `false` if `id` is not tracked.
    pub fn mark_closing(&mut self, id: SessionId) -> bool {
        if self.closing.contains_key(&id) {
            return true;
        }
        let Some(handle) = self.open.remove(&id) else {
            return false;
        };
        let record = self.queue.remove(handle).expect(LIVE_HANDLE);
        self.closing.insert(id, record);
        true
    }

    /// Marks closing, and returns, every open session whose expiry bucket is
    /// due at `now`, earliest bucket first. Each is returned once.
    #[must_use = "expired sessions must be closed by the server"]
    pub fn poll_expired(&mut self, now: Instant) -> Vec<SessionId> {
        let due = self.queue.poll(now);
        let mut expired = Vec::with_capacity(due.len());
        for record in due {
            self.open.remove(&record.id);
            self.closing.insert(record.id, record);
            expired.push(record.id);
        }
        expired
    }

    /// When [`poll_expired`](Self::poll_expired) next has something to return.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.next_deadline()
    }

    /// Stops tracking session `id`, open or closing, once the server has
    /// applied its close. Returns `false` if `id` was not tracked.
    pub fn forget(&mut self, id: SessionId) -> bool {
        match self.open.remove(&id) {
            Some(handle) => self.queue.remove(handle).is_some(),
            None => self.closing.remove(&id).is_some(),
        }
    }

    /// What is known of session `id`.
    #[must_use]
    pub fn info(&self, id: SessionId) -> Option<LivenessInfo> {
        if let Some(&handle) = self.open.get(&id) {
            let record = self.queue.get(handle)?;
            return Some(self.describe(record, self.queue.deadline(handle), false));
        }
        let record = self.closing.get(&id)?;
        Some(self.describe(record, None, true))
    }

    /// Every session, open ones first, for admin listings.
    pub fn sessions(&self) -> impl Iterator<Item = LivenessInfo> + '_ {
        let open = self
            .queue
            .iter()
            .map(|(_, record, deadline)| self.describe(record, deadline, false));
        let closing = self
            .closing
            .values()
            .map(|record| self.describe(record, None, true));
        open.chain(closing)
    }

    /// The expiry buckets, earliest first: each due instant with its sessions
    /// in id order, for an admin dump. (A deadline too far out for an
    /// `Instant` is listed last, as `None`.) Walks every session: for admin
    /// use, not a hot path.
    #[must_use]
    pub fn expiry_buckets(&self) -> Vec<(Option<Instant>, Vec<SessionId>)> {
        let mut buckets: BTreeMap<(bool, Option<Instant>), Vec<SessionId>> = BTreeMap::new();
        for (_, record, due) in self.queue.iter() {
            buckets
                .entry((due.is_none(), due))
                .or_default()
                .push(record.id);
        }
        buckets
            .into_iter()
            .map(|((_, due), mut ids)| {
                ids.sort_unstable();
                (due, ids)
            })
            .collect()
    }

    fn not_open(&self, id: SessionId) -> TouchError {
        if self.closing.contains_key(&id) {
            TouchError::Closing { id }
        } else {
            TouchError::Unknown { id }
        }
    }

    fn nanos_since_origin(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.queue.origin()))
    }

    fn describe(&self, record: &Record, deadline: Option<Instant>, closing: bool) -> LivenessInfo {
        LivenessInfo {
            id: record.id,
            owner: record.owner,
            timeout: Duration::from_nanos(record.timeout_nanos),
            last_touch: self.queue.origin() + Duration::from_nanos(record.last_touch_nanos),
            deadline,
            closing,
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// `now + timeout`, or the latest instant after `now` that `Instant` can hold
/// where it cannot hold that one: centuries away either way, never early.
fn deadline_after(now: Instant, timeout_nanos: u64) -> Instant {
    let timeout = Duration::from_nanos(timeout_nanos);
    now.checked_add(timeout)
        .unwrap_or_else(|| latest_within(now, timeout))
}

/// The latest instant in `now..=now + timeout` that `Instant` can hold, by
/// adding halving steps: at most two additions per halving.
#[cold]
fn latest_within(now: Instant, timeout: Duration) -> Instant {
    let (mut at, mut left, mut step) = (now, timeout, timeout);
    while !step.is_zero() {
        match at.checked_add(step).filter(|_| step <= left) {
            Some(later) => {
                at = later;
                left -= step;
            }
            None => step /= 2,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const TICK: Duration = Duration::from_millis(2000);

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn id(value: u64) -> SessionId {
        SessionId::from_u64(value)
    }

    fn liveness(start: Instant) -> Liveness {
        Liveness::new(TICK, start).expect("non-zero tick")
    }

    /// Polls at every wake-up up to `until`, as the server's expirer does.
    fn expire_until(live: &mut Liveness, until: Instant) -> Vec<(Instant, SessionId)> {
        let mut out = Vec::new();
        while let Some(wake) = live.next_deadline().filter(|w| *w <= until) {
            out.extend(live.poll_expired(wake).into_iter().map(|id| (wake, id)));
        }
        out
    }

    #[test]
    fn a_zero_tick_is_refused() {
        assert_eq!(
            Liveness::new(Duration::ZERO, Instant::now()).err(),
            Some(ExpiryQueueError::ZeroTick)
        );
    }

    #[test]
    fn track_records_owner_timeout_and_a_rounded_up_deadline() {
        let start = Instant::now();
        let mut live = liveness(start);
        let owner = OwnerId::new(7);
        assert_eq!(live.track(id(1), ms(4000), Some(owner), start), Ok(None));
        assert_eq!(live.track(id(2), ms(5000), None, start + ms(100)), Ok(None));
        assert_eq!(
            live.info(id(1)),
            Some(LivenessInfo {
                id: id(1),
                owner: Some(owner),
                timeout: ms(4000),
                last_touch: start,
                // Exactly on a boundary: the next one, so never early.
                deadline: Some(start + ms(6000)),
                closing: false,
            })
        );
        assert_eq!(
            live.info(id(2)).and_then(|i| i.deadline),
            Some(start + ms(6000))
        );
        assert_eq!(
            (live.len(), live.owner(id(1)), live.owner(id(2))),
            (2, Some(owner), None)
        );
        assert!(live.contains(id(2)) && !live.contains(id(3)));
        assert_eq!(live.info(id(3)), None);
    }

    #[test]
    fn left_alone_expires_never_early_and_at_most_one_tick_late() {
        let start = Instant::now();
        for offset in [0, 1, 999, 1000, 1999, 2000, 3333] {
            let mut live = liveness(start);
            let owner = OwnerId::new(1);
            let touched = start + ms(offset);
            live.track(id(1), ms(4000), Some(owner), start)
                .expect("new");
            live.touch(id(1), owner, touched).expect("open");
            let expired = expire_until(&mut live, start + ms(60_000));
            assert_eq!(expired.len(), 1);
            let (when, expired_id) = expired[0];
            assert_eq!(expired_id, id(1));
            assert!(when > touched + ms(4000), "early at offset {offset}");
            assert!(when <= touched + ms(4000) + TICK, "late at offset {offset}");
            assert!(live.info(id(1)).is_some_and(|i| i.closing));
        }
    }

    #[test]
    fn touch_moves_the_deadline_only_when_the_bucket_changes() {
        let start = Instant::now();
        let mut live = liveness(start);
        let owner = OwnerId::new(1);
        live.track(id(1), ms(4000), Some(owner), start + ms(100))
            .expect("new");
        let first = live.info(id(1)).and_then(|i| i.deadline);
        assert_eq!(first, Some(start + ms(6000)));
        // Same bucket: the deadline stays, the last touch moves.
        live.touch(id(1), owner, start + ms(1900)).expect("open");
        let info = live.info(id(1)).expect("open");
        assert_eq!((info.deadline, info.last_touch), (first, start + ms(1900)));
        // The next bucket.
        live.touch(id(1), owner, start + ms(2000)).expect("open");
        assert_eq!(
            live.expiry_buckets(),
            vec![(Some(start + ms(8000)), vec![id(1)])]
        );
        assert!(live.touch_any(id(1), start + ms(4500)));
        assert_eq!(
            live.next_deadline(),
            Some(start + ms(10_000)),
            "touch_any renews too"
        );
    }

    #[test]
    fn a_closing_session_refuses_touch_and_track_and_leaves_expiry() {
        let start = Instant::now();
        let mut live = liveness(start);
        let owner = OwnerId::new(1);
        live.track(id(1), ms(4000), Some(owner), start)
            .expect("new");
        assert!(live.mark_closing(id(1)));
        assert!(live.mark_closing(id(1)), "idempotent");
        assert_eq!(
            live.touch(id(1), owner, start),
            Err(TouchError::Closing { id: id(1) })
        );
        assert!(!live.touch_any(id(1), start));
        assert_eq!(
            live.track(id(1), ms(4000), Some(OwnerId::new(2)), start),
            Err(TouchError::Closing { id: id(1) })
        );
        assert_eq!(live.next_deadline(), None);
        assert!(expire_until(&mut live, start + ms(60_000)).is_empty());
        let info = live.info(id(1)).expect("still tracked");
        assert!(info.closing);
        assert_eq!((info.owner, info.deadline), (Some(owner), None));
        assert_eq!(live.owner(id(1)), Some(owner), "the connection to close");
        assert!(!live.mark_closing(id(2)), "unknown");
    }

    #[test]
    fn a_moved_owner_gets_moved_and_track_returns_the_previous_owner() {
        let start = Instant::now();
        let mut live = liveness(start);
        let (old, new) = (OwnerId::new(1), OwnerId::new(2));
        live.track(id(1), ms(4000), Some(old), start).expect("new");
        assert_eq!(
            live.track(id(1), ms(30_000), Some(new), start + ms(1000)),
            Ok(Some(old))
        );
        assert_eq!(
            live.touch(id(1), old, start + ms(1001)),
            Err(TouchError::Moved {
                id: id(1),
                current: Some(new)
            })
        );
        live.touch(id(1), new, start + ms(1002)).expect("new owner");
        let info = live.info(id(1)).expect("open");
        assert_eq!((info.owner, info.timeout), (Some(new), ms(30_000)));
        // The new timeout is the one expiry uses.
        assert!(expire_until(&mut live, start + ms(31_000)).is_empty());
        assert_eq!(expire_until(&mut live, start + ms(40_000)).len(), 1);
    }

    #[test]
    fn an_ownerless_session_refuses_owner_touches_until_tracked_with_one() {
        let start = Instant::now();
        let mut live = liveness(start);
        let conn = OwnerId::new(3);
        live.track(id(1), ms(4000), None, start).expect("new");
        assert_eq!(
            live.touch(id(1), conn, start),
            Err(TouchError::Moved {
                id: id(1),
                current: None
            })
        );
        assert!(live.touch_any(id(1), start + ms(10)));
        assert_eq!(
            live.track(id(1), ms(4000), Some(conn), start + ms(20)),
            Ok(None)
        );
        live.touch(id(1), conn, start + ms(30)).expect("owned now");
    }

    #[test]
    fn unknown_sessions_are_refused_and_not_forgotten() {
        let start = Instant::now();
        let mut live = liveness(start);
        assert_eq!(
            live.touch(id(9), OwnerId::new(1), start),
            Err(TouchError::Unknown { id: id(9) })
        );
        assert!(!live.touch_any(id(9), start));
        assert!(!live.forget(id(9)));
        assert_eq!(live.owner(id(9)), None);
        assert!(live.is_empty(), "a refused touch tracks nothing");
    }

    #[test]
    fn forget_drops_open_and_closing_sessions() {
        let start = Instant::now();
        let mut live = liveness(start);
        let owner = OwnerId::new(1);
        live.track(id(1), ms(4000), Some(owner), start)
            .expect("new");
        live.track(id(2), ms(4000), Some(owner), start)
            .expect("new");
        live.mark_closing(id(2));
        assert!(live.forget(id(1)));
        assert!(live.forget(id(2)));
        assert!(!live.forget(id(1)), "once");
        assert!(live.is_empty());
        assert_eq!(live.next_deadline(), None);
        assert_eq!(
            live.touch(id(1), owner, start),
            Err(TouchError::Unknown { id: id(1) })
        );
        // A forgotten id may be tracked again (a new session with that id).
        assert_eq!(live.track(id(2), ms(4000), None, start), Ok(None));
    }

    #[test]
    fn poll_after_a_stall_returns_every_due_bucket_in_order_each_once() {
        let start = Instant::now();
        let mut live = liveness(start);
        // Buckets at 6, 8 and 10 s; session n in bucket n % 3.
        for n in 0..30 {
            let timeout = ms(4000 + (n % 3) * 2000);
            live.track(id(n), timeout, Some(OwnerId::new(n)), start)
                .expect("new");
        }
        assert!(live.poll_expired(start + ms(5999)).is_empty());
        let due = live.poll_expired(start + ms(60_000));
        let expected: Vec<_> = (0..3)
            .flat_map(|r| (0..30).filter(move |n| n % 3 == r))
            .map(id)
            .collect();
        assert_eq!(due, expected);
        assert!(
            live.poll_expired(start + ms(120_000)).is_empty(),
            "each once"
        );
        assert_eq!(live.len(), 30, "closing until forgotten");
        assert!(live.sessions().all(|i| i.closing));
    }

    #[test]
    fn re_tracking_after_a_restore_gives_a_fresh_full_timeout() {
        let start = Instant::now();
        let owner = OwnerId::new(1);
        let mut before = liveness(start);
        before
            .track(id(1), ms(10_000), Some(owner), start)
            .expect("new");
        // 9 s later the session is nearly due on the old server...
        let now = start + ms(9000);
        assert_eq!(before.next_deadline(), Some(start + ms(12_000)));
        // ...which restarts; the new one tracks it from the replicated table.
        let mut after = liveness(now);
        after.track(id(1), ms(10_000), None, now).expect("restored");
        let info = after.info(id(1)).expect("tracked");
        assert_eq!((info.owner, info.last_touch), (None, now));
        assert!(expire_until(&mut after, now + ms(10_000)).is_empty());
        assert_eq!(
            expire_until(&mut after, now + ms(12_000)),
            vec![(now + ms(12_000), id(1))]
        );
        // Re-tracking a held session also starts its timeout afresh.
        before
            .track(id(1), ms(10_000), Some(owner), now)
            .expect("open");
        assert_eq!(before.next_deadline(), Some(start + ms(20_000)));
    }

    #[test]
    fn sessions_and_expiry_buckets_list_open_and_closing() {
        let start = Instant::now();
        let mut live = liveness(start);
        live.track(id(3), ms(8000), Some(OwnerId::new(1)), start)
            .expect("new");
        live.track(id(2), ms(4000), Some(OwnerId::new(2)), start)
            .expect("new");
        live.track(id(1), ms(4000), Some(OwnerId::new(3)), start + ms(100))
            .expect("new");
        live.track(id(4), ms(4000), Some(OwnerId::new(4)), start)
            .expect("new");
        live.mark_closing(id(4));
        assert_eq!(
            live.expiry_buckets(),
            vec![
                (Some(start + ms(6000)), vec![id(1), id(2)]),
                (Some(start + ms(10_000)), vec![id(3)]),
            ]
        );
        let listed: Vec<_> = live.sessions().map(|i| (i.id, i.closing)).collect();
        assert_eq!(
            listed,
            vec![
                (id(3), false),
                (id(2), false),
                (id(1), false),
                (id(4), true)
            ]
        );
    }

    #[test]
    fn an_enormous_timeout_does_not_panic_and_never_expires() {
        let start = Instant::now();
        let mut live = liveness(start);
        live.track(id(1), Duration::MAX, Some(OwnerId::new(1)), start)
            .expect("new");
        live.touch(id(1), OwnerId::new(1), start + ms(5))
            .expect("open");
        assert_eq!(
            live.info(id(1)).map(|i| i.timeout),
            Some(Duration::from_nanos(u64::MAX))
        );
        assert!(
            live.poll_expired(start + Duration::from_secs(1 << 30))
                .is_empty()
        );
    }

    #[test]
    fn the_latest_reachable_instant_is_found_without_overflow() {
        let start = Instant::now();
        // Where `Instant` can hold the sum, the search reaches it exactly.
        assert_eq!(latest_within(start, ms(12_345)), start + ms(12_345));
        assert_eq!(deadline_after(start, 7), start + Duration::from_nanos(7));
    }

    /// The model's view of one session.
    #[derive(Debug, Clone, Copy)]
    struct Model {
        owner: Option<OwnerId>,
        timeout: Duration,
        last_touch: Instant,
        closing: bool,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Track {
            id: u64,
            timeout: u64,
            owner: Option<u64>,
        },
        Touch {
            id: u64,
            owner: u64,
        },
        TouchAny {
            id: u64,
        },
        MarkClosing {
            id: u64,
        },
        Forget {
            id: u64,
        },
        Advance {
            by: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few ids and owners, so operations meet the same sessions often.
        let ids = 0..6u64;
        let owners = 0..3u64;
        prop_oneof![
            2 => (ids.clone(), 0..400u64, proptest::option::of(owners.clone()))
                .prop_map(|(id, timeout, owner)| Op::Track { id, timeout, owner }),
            3 => (ids.clone(), owners).prop_map(|(id, owner)| Op::Touch { id, owner }),
            1 => ids.clone().prop_map(|id| Op::TouchAny { id }),
            1 => ids.clone().prop_map(|id| Op::MarkClosing { id }),
            1 => ids.prop_map(|id| Op::Forget { id }),
            2 => (0..300u64).prop_map(|by| Op::Advance { by }),
        ]
    }

    proptest! {
        /// Against a naive model (id → owner, timeout, last touch, closing):
        /// every input answers as the model says; polled at every wake-up, a
        /// session expires after its last touch + timeout and at most one tick
        /// later, exactly once, and becomes closing.
        #[test]
        fn matches_naive_model(tick in 1..50u64, ops in proptest::collection::vec(op(), 1..300)) {
            let start = Instant::now();
            let mut live = Liveness::new(ms(tick), start).expect("non-zero tick");
            let mut model: BTreeMap<SessionId, Model> = BTreeMap::new();
            let mut now = start;
            for op in ops {
                match op {
                    Op::Track { id: n, timeout, owner } => {
                        let owner = owner.map(OwnerId::new);
                        let got = live.track(id(n), ms(timeout), owner, now);
                        let fresh = Model { owner, timeout: ms(timeout), last_touch: now, closing: false };
                        match model.get_mut(&id(n)) {
                            Some(held) if held.closing => {
                                prop_assert_eq!(got, Err(TouchError::Closing { id: id(n) }));
                            }
                            Some(held) => {
                                prop_assert_eq!(got, Ok(held.owner));
                                *held = fresh;
                            }
                            None => {
                                prop_assert_eq!(got, Ok(None));
                                model.insert(id(n), fresh);
                            }
                        }
                    }
                    Op::Touch { id: n, owner } => {
                        let owner = OwnerId::new(owner);
                        let got = live.touch(id(n), owner, now);
                        let want = match model.get_mut(&id(n)) {
                            None => Err(TouchError::Unknown { id: id(n) }),
                            Some(held) if held.closing => Err(TouchError::Closing { id: id(n) }),
                            Some(held) if held.owner != Some(owner) => {
                                Err(TouchError::Moved { id: id(n), current: held.owner })
                            }
                            Some(held) => {
                                held.last_touch = now;
                                Ok(())
                            }
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::TouchAny { id: n } => {
                        let want = match model.get_mut(&id(n)) {
                            Some(held) if !held.closing => {
                                held.last_touch = now;
                                true
                            }
                            _ => false,
                        };
                        prop_assert_eq!(live.touch_any(id(n), now), want);
                    }
                    Op::MarkClosing { id: n } => {
                        let want = match model.get_mut(&id(n)) {
                            Some(held) => {
                                held.closing = true;
                                true
                            }
                            None => false,
                        };
                        prop_assert_eq!(live.mark_closing(id(n)), want);
                    }
                    Op::Forget { id: n } => {
                        prop_assert_eq!(live.forget(id(n)), model.remove(&id(n)).is_some());
                    }
                    Op::Advance { by } => now += ms(by),
                }
                // Poll at every wake-up between the previous step and now.
                while let Some(wake) = live.next_deadline().filter(|w| *w <= now) {
                    let expired = live.poll_expired(wake);
                    prop_assert!(!expired.is_empty(), "a wake-up with nothing due");
                    for expired_id in expired {
                        let held = model.get_mut(&expired_id).expect("only tracked sessions expire");
                        prop_assert!(!held.closing, "expired twice, or while closing");
                        let deadline = held.last_touch + held.timeout;
                        prop_assert!(deadline < wake, "early: {:?} < {:?}", wake, deadline);
                        prop_assert!(wake <= deadline + ms(tick), "late");
                        held.closing = true;
                    }
                }
                prop_assert_eq!(live.len(), model.len());
                for (&held_id, held) in &model {
                    let info = live.info(held_id).expect("tracked");
                    prop_assert_eq!(
                        (info.owner, info.timeout, info.last_touch, info.closing),
                        (held.owner, held.timeout, held.last_touch, held.closing)
                    );
                    prop_assert_eq!(info.deadline.is_none(), held.closing);
                    prop_assert_eq!(live.owner(held_id), held.owner);
                }
                let earliest = model
                    .values()
                    .filter(|held| !held.closing)
                    .map(|held| held.last_touch + held.timeout)
                    .min();
                match earliest {
                    Some(earliest) => {
                        let wake = live.next_deadline().expect("an open session has a deadline");
                        prop_assert!(wake > earliest && wake <= earliest + ms(tick));
                    }
                    None => prop_assert_eq!(live.next_deadline(), None),
                }
            }
        }
    }
}
