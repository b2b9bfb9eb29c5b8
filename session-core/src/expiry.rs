//! Bucketed expiry: ZooKeeper's `ExpiryQueue`, laid out for millions of keys.
//!
//! Deadlines become tick numbers relative to an origin `Instant` given at
//! construction, always rounded **up** to the next tick boundary (an exact
//! multiple too: a deadline at `origin + 3·tick` lands in bucket 4). A key is
//! therefore handed out by [`ExpiryQueue::poll`] in
//! `(deadline, deadline + tick]` if `poll` is called at [`ExpiryQueue::next_deadline`]:
//! never early, at most one tick late.
//!
//! # Layout
//!
//! Keys live in a slab addressed by [`ExpiryHandle`] (a `u32` index and a
//! generation), which the caller keeps in its own record, so a touch costs no
//! hash lookup here. Each bucket is a vector of handles plus a count of the keys
//! really in it. Moving a key to a later bucket only pushes its handle there and
//! decrements the old bucket's count; the old handle becomes stale and is
//! skipped when that bucket is polled, dropped with the bucket when its count
//! reaches zero, or swept by an occasional compaction once stale handles
//! outnumber keys.
//!
//! The buckets of the next [`RING`] ticks sit in a ring indexed by tick number
//! modulo its size, so a move (leave one bucket, join another) is two array
//! indexings; the window slides forward as `poll` hands buckets out, or as
//! touches reach just past its end. Buckets outside the window (further ahead,
//! or left behind by a slide before they were polled) wait in an ordered map
//! and enter the ring when the window reaches them. A touch is O(1) in the
//! number of keys, and O(log b) in the number of buckets outside the window
//! only for a key going to or coming from one of them.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Why an expiry queue could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ExpiryQueueError {
    /// The tick is zero.
    #[error("expiry tick must be longer than zero")]
    ZeroTick,
}

/// A key's place in an [`ExpiryQueue`]; stale once the key is removed or polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExpiryHandle {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Entry<K> {
    key: Option<K>,
    /// The bucket (tick number) holding the key, when `key` is `Some`.
    tick: u64,
    generation: u32,
}

#[derive(Debug, Default)]
struct Bucket {
    handles: Vec<ExpiryHandle>,
    /// How many keys are really in this bucket; `handles` may also hold stale ones.
    live: u32,
}

/// Ticks in the ring window: 64, so that one `u64` says which slots hold keys.
/// Sessions' timeouts span at most 20 ticks, well inside it.
const RING: u64 = 64;

/// A ring bucket that empties keeps a vector up to this capacity, so a bucket
/// that a few keys keep leaving and rejoining does not allocate every time.
const KEEP_CAPACITY: usize = 64;

/// The ring slot of `tick`.
fn slot(tick: u64) -> usize {
    (tick % RING) as usize
}

/// Keys with deadlines, grouped in tick-wide buckets and handed out a bucket at
/// a time.
///
/// ```
/// use std::time::{Duration, Instant};
/// use session_core::ExpiryQueue;
///
/// let origin = Instant::now();
/// let ms = Duration::from_millis;
/// let mut queue = ExpiryQueue::new(origin, ms(2000))?;
/// let a = queue.insert("a", origin + ms(4000)); // exact multiple: bucket 6000
/// let _b = queue.insert("b", origin + ms(4500)); // bucket 6000 too
/// assert_eq!(queue.next_deadline(), Some(origin + ms(6000)));
///
/// queue.touch(a, origin + ms(9000)); // bucket 10000
/// assert!(queue.poll(origin + ms(5999)).is_empty());
/// assert_eq!(queue.poll(origin + ms(6000)), vec!["b"]);
/// assert_eq!(queue.poll(origin + ms(60_000)), vec!["a"]);
/// assert!(queue.is_empty());
/// # Ok::<(), session_core::ExpiryQueueError>(())
/// ```
#[derive(Debug)]
pub struct ExpiryQueue<K> {
    origin: Instant,
    tick: Duration,
    tick_nanos: u128,
    /// The tick in 64 bits when it fits (any tick under 584 years).
    tick_nanos_u64: Option<u64>,
    entries: Vec<Entry<K>>,
    free: Vec<u32>,
    /// The buckets of ticks `ring_base..ring_base + RING`, each at
    /// [`slot`]`(tick)`; an empty one has `live == 0` and no handle.
    ring: Box<[Bucket; RING as usize]>,
    /// The first tick of the ring window; at most `u64::MAX - RING`, so the
    /// window's end never overflows.
    ring_base: u64,
    /// Bit `slot` is set when that ring bucket holds a key.
    ring_live: u64,
    /// Non-empty buckets outside the ring window, before or after it.
    far: BTreeMap<u64, Bucket>,
    len: usize,
    /// Handles held by all buckets, stale ones included.
    handles: usize,
    /// Every deadline in `recent_from..recent_until` falls in `recent_tick`:
    /// touches in a burst share a bucket, and this skips the division.
    recent_from: Instant,
    recent_until: Instant,
    recent_tick: u64,
}

impl<K> ExpiryQueue<K> {
    /// An empty queue whose bucket boundaries are `origin + n·tick`.
    pub fn new(origin: Instant, tick: Duration) -> Result<Self, ExpiryQueueError> {
        if tick.is_zero() {
            return Err(ExpiryQueueError::ZeroTick);
        }
        Ok(Self {
            origin,
            tick,
            tick_nanos: tick.as_nanos(),
            tick_nanos_u64: u64::try_from(tick.as_nanos()).ok(),
            entries: Vec::new(),
            free: Vec::new(),
            ring: Box::new(std::array::from_fn(|_| Bucket::default())),
            // Bucket numbers start at 1.
            ring_base: 1,
            ring_live: 0,
            far: BTreeMap::new(),
            len: 0,
            handles: 0,
            recent_from: origin,
            recent_until: origin,
            recent_tick: 0,
        })
    }

    /// The bucket width.
    #[must_use]
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// The instant bucket boundaries are counted from.
    #[must_use]
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// How many keys the queue holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the queue holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `key`, due at `deadline` (rounded up to the next tick boundary).
    ///
    /// # Panics
    ///
    /// If the queue would hold more than `u32::MAX` keys at once.
    pub fn insert(&mut self, key: K, deadline: Instant) -> ExpiryHandle {
        let tick = self.bucket_of(deadline);
        let handle = match self.free.pop() {
            Some(index) => {
                let entry = &mut self.entries[index as usize];
                entry.key = Some(key);
                entry.tick = tick;
                ExpiryHandle {
                    index,
                    generation: entry.generation,
                }
            }
            None => {
                let index = u32::try_from(self.entries.len())
                    .ok()
                    .filter(|index| *index != u32::MAX)
                    .expect("invariant: an expiry queue holds fewer than u32::MAX keys");
                self.entries.push(Entry {
                    key: Some(key),
                    tick,
                    generation: 0,
                });
                ExpiryHandle {
                    index,
                    generation: 0,
                }
            }
        };
        self.len += 1;
        self.join(tick, handle);
        handle
    }

    /// Moves the key of `handle` to the bucket of `deadline`; a no-op when the
    /// bucket does not change. Returns `false` for a stale handle.
    pub fn touch(&mut self, handle: ExpiryHandle, deadline: Instant) -> bool {
        let tick = self.bucket_of(deadline);
        let Some(entry) = self.entry_mut(handle) else {
            return false;
        };
        let old = entry.tick;
        if old != tick {
            entry.tick = tick;
            self.leave(old);
            self.join(tick, handle);
        }
        true
    }

    /// Takes the key of `handle` out of the queue.
    pub fn remove(&mut self, handle: ExpiryHandle) -> Option<K> {
        let entry = self.entry_mut(handle)?;
        let key = entry.key.take();
        entry.generation = entry.generation.wrapping_add(1);
        let tick = entry.tick;
        self.leave(tick);
        self.free.push(handle.index);
        self.len -= 1;
        key
    }

    /// The key of `handle`, if it is still in the queue.
    #[must_use]
    pub fn get(&self, handle: ExpiryHandle) -> Option<&K> {
        self.entries
            .get(handle.index as usize)
            .filter(|entry| entry.generation == handle.generation)
            .and_then(|entry| entry.key.as_ref())
    }

    /// The key of `handle`, mutably, if it is still in the queue.
    #[must_use]
    pub fn get_mut(&mut self, handle: ExpiryHandle) -> Option<&mut K> {
        self.entry_mut(handle).and_then(|entry| entry.key.as_mut())
    }

    /// When the key of `handle` is due: the boundary of its bucket.
    #[must_use]
    pub fn deadline(&self, handle: ExpiryHandle) -> Option<Instant> {
        self.get(handle)?;
        self.instant_of(self.entries[handle.index as usize].tick)
    }

    /// When the earliest non-empty bucket is due; `None` when the queue is
    /// empty (or its earliest bucket lies beyond what `Instant` can hold).
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.instant_of(self.first_tick()?)
    }

    /// Removes and returns the keys of every bucket due at `now`, earliest bucket
    /// first, each bucket whole and in the order its keys arrived.
    #[must_use = "the keys handed out are no longer in the queue"]
    pub fn poll(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        self.poll_into(now, &mut due);
        due
    }

    /// Like [`poll`](Self::poll), appending to `due`; returns how many were added.
    pub fn poll_into(&mut self, now: Instant, due: &mut Vec<K>) -> usize {
        let before = due.len();
        let elapsed = now.saturating_duration_since(self.origin).as_nanos() / self.tick_nanos;
        let now_tick = u64::try_from(elapsed).unwrap_or(u64::MAX);
        while let Some(tick) = self.first_tick().filter(|tick| *tick <= now_tick) {
            let bucket = self.take_bucket(tick);
            self.handles -= bucket.handles.len();
            for handle in bucket.handles {
                let entry = &mut self.entries[handle.index as usize];
                if entry.generation != handle.generation || entry.tick != tick {
                    continue;
                }
                // A key that left this bucket and came back has two handles in it:
                // the first one takes it, the second finds the slot empty.
                if let Some(key) = entry.key.take() {
                    entry.generation = entry.generation.wrapping_add(1);
                    self.free.push(handle.index);
                    self.len -= 1;
                    due.push(key);
                }
            }
        }
        // Every bucket up to `now_tick` is gone: the window starts after it.
        self.slide(now_tick.saturating_add(1));
        due.len() - before
    }

    /// Every key with its handle and due instant, in slab order.
    pub fn iter(&self) -> impl Iterator<Item = (ExpiryHandle, &K, Option<Instant>)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let key = entry.key.as_ref()?;
                let handle = ExpiryHandle {
                    index: index as u32,
                    generation: entry.generation,
                };
                Some((handle, key, self.instant_of(entry.tick)))
            })
    }

    /// The non-empty buckets, earliest first, as (due instant, number of keys):
    /// what an admin "dump" shows.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<Instant>, usize)> + '_ {
        let base = self.ring_base;
        let before = self.far.range(..base);
        let ring = (base..base + RING).filter_map(|tick| {
            let bucket = &self.ring[slot(tick)];
            (bucket.live > 0).then_some((tick, bucket))
        });
        let after = self.far.range(base + RING..);
        before
            .map(|(&tick, bucket)| (tick, bucket))
            .chain(ring)
            .chain(after.map(|(&tick, bucket)| (tick, bucket)))
            .map(|(tick, bucket)| (self.instant_of(tick), bucket.live as usize))
    }

    fn entry_mut(&mut self, handle: ExpiryHandle) -> Option<&mut Entry<K>> {
        self.entries
            .get_mut(handle.index as usize)
            .filter(|entry| entry.generation == handle.generation && entry.key.is_some())
    }

    /// The tick number of the bucket for `deadline`: `floor(offset / tick) + 1`.
    #[inline]
    fn bucket_of(&mut self, deadline: Instant) -> u64 {
        if self.recent_from <= deadline && deadline < self.recent_until {
            return self.recent_tick;
        }
        self.bucket_of_new(deadline)
    }

    #[inline(never)]
    fn bucket_of_new(&mut self, deadline: Instant) -> u64 {
        let offset = deadline.saturating_duration_since(self.origin).as_nanos();
        // Divide in 64 bits when both fit, as a 128-bit division is a slow
        // library call.
        let (Ok(offset), Some(tick_nanos)) = (u64::try_from(offset), self.tick_nanos_u64) else {
            return u64::try_from(offset / self.tick_nanos)
                .map_or(u64::MAX, |tick| tick.saturating_add(1));
        };
        let tick = (offset / tick_nanos).saturating_add(1);
        // The bucket's span, from the deadline itself: no 128-bit arithmetic.
        // A deadline before the origin is in bucket 1 without being in its
        // span, and is not remembered.
        let since_boundary = Duration::from_nanos(offset % tick_nanos);
        if let Some(from) = deadline
            .checked_sub(since_boundary)
            .filter(|_| deadline >= self.origin)
        {
            if let Some(until) = from.checked_add(self.tick) {
                self.recent_from = from;
                self.recent_until = until;
                self.recent_tick = tick;
            }
        }
        tick
    }

    fn instant_of(&self, tick: u64) -> Option<Instant> {
        let nanos = self.tick_nanos.checked_mul(u128::from(tick))?;
        let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
        let offset = Duration::new(secs, (nanos % 1_000_000_000) as u32);
        self.origin.checked_add(offset)
    }

    fn in_ring(&self, tick: u64) -> bool {
        tick.wrapping_sub(self.ring_base) < RING
    }

    /// The tick a ring slot stands for in the current window.
    fn ring_tick(&self, slot: u64) -> u64 {
        self.ring_base + (slot.wrapping_sub(self.ring_base) % RING)
    }

    /// The earliest non-empty bucket: far ones before the window, then the
    /// window, then far ones after it.
    fn first_tick(&self) -> Option<u64> {
        let far = self.far.first_key_value().map(|(&tick, _)| tick);
        if far.is_some_and(|tick| tick < self.ring_base) || self.ring_live == 0 {
            return far;
        }
        let from_base = self.ring_live.rotate_right(slot(self.ring_base) as u32);
        Some(self.ring_base + u64::from(from_base.trailing_zeros()))
    }

    fn take_bucket(&mut self, tick: u64) -> Bucket {
        if self.in_ring(tick) {
            self.ring_live &= !(1 << slot(tick));
            std::mem::take(&mut self.ring[slot(tick)])
        } else {
            self.far
                .remove(&tick)
                .expect("invariant: a far tick handed out by first_tick is in the map")
        }
    }

    #[inline]
    fn join(&mut self, tick: u64, handle: ExpiryHandle) {
        if !self.in_ring(tick) {
            return self.join_outside(tick, handle);
        }
        self.ring_live |= 1 << slot(tick);
        let bucket = &mut self.ring[slot(tick)];
        bucket.handles.push(handle);
        bucket.live += 1;
        self.joined();
    }

    /// [`join`](Self::join) for a tick outside the window.
    #[inline(never)]
    fn join_outside(&mut self, tick: u64, handle: ExpiryHandle) {
        // A tick just past the window (time moving on between polls) slides
        // it; one much further ahead (a long timeout) must not drag the
        // window away from the near buckets, and waits in the map.
        let end = self.ring_base + RING;
        if tick >= end && tick < end.saturating_add(RING) {
            self.slide(tick - RING + 1);
            return self.join(tick, handle);
        }
        let bucket = self.far.entry(tick).or_default();
        bucket.handles.push(handle);
        bucket.live += 1;
        self.joined();
    }

    #[inline]
    fn joined(&mut self) {
        self.handles += 1;
        if self.handles > 2 * self.len + 1024 {
            self.compact();
        }
    }

    #[inline]
    fn leave(&mut self, tick: u64) {
        if !self.in_ring(tick) {
            return self.leave_outside(tick);
        }
        let bucket = &mut self.ring[slot(tick)];
        bucket.live -= 1;
        if bucket.live == 0 {
            self.handles -= bucket.handles.len();
            if bucket.handles.capacity() > KEEP_CAPACITY {
                bucket.handles = Vec::new();
            } else {
                bucket.handles.clear();
            }
            self.ring_live &= !(1 << slot(tick));
        }
    }

    /// [`leave`](Self::leave) for a tick outside the window.
    #[inline(never)]
    fn leave_outside(&mut self, tick: u64) {
        if let btree_map::Entry::Occupied(mut bucket) = self.far.entry(tick) {
            bucket.get_mut().live -= 1;
            if bucket.get().live == 0 {
                self.handles -= bucket.remove().handles.len();
            }
        }
    }

    /// Moves the window to start at `base` (never backwards): ring buckets
    /// before it go to the map, map buckets inside it come to the ring.
    fn slide(&mut self, base: u64) {
        let base = base.min(u64::MAX - RING);
        let old = self.ring_base;
        if base <= old {
            return;
        }
        let mut live = self.ring_live;
        while live != 0 {
            let slot = u64::from(live.trailing_zeros());
            live &= live - 1;
            let tick = self.ring_tick(slot);
            if tick < base {
                self.ring_live &= !(1 << slot);
                let bucket = std::mem::take(&mut self.ring[slot as usize]);
                self.far.insert(tick, bucket);
            }
        }
        self.ring_base = base;
        // Map buckets with ticks in the old window were in the ring already.
        let (from, until) = ((old + RING).max(base), base + RING);
        while let Some((&tick, _)) = self.far.range(from..until).next() {
            let bucket = self
                .far
                .remove(&tick)
                .expect("invariant: a tick just found is in the map");
            self.ring_live |= 1 << slot(tick);
            self.ring[slot(tick)] = bucket;
        }
    }

    /// Drops stale handles once they outnumber the keys, so memory stays
    /// proportional to the number of keys; amortised O(1) per touch. Each
    /// check reads the key's slab entry (a cache miss at scale), so buckets
    /// whose handles are all live (as many as their count) are skipped.
    fn compact(&mut self) {
        let entries = &self.entries;
        let compact_bucket = |tick: u64, bucket: &mut Bucket| {
            if bucket.handles.len() > bucket.live as usize {
                bucket.handles.retain(|handle| {
                    let entry = &entries[handle.index as usize];
                    entry.generation == handle.generation
                        && entry.tick == tick
                        && entry.key.is_some()
                });
                bucket.handles.shrink_to(bucket.handles.len() * 2);
            }
            bucket.handles.len()
        };
        let mut kept = 0;
        for (&tick, bucket) in &mut self.far {
            kept += compact_bucket(tick, bucket);
        }
        let base = self.ring_base;
        for tick in base..base + RING {
            kept += compact_bucket(tick, &mut self.ring[slot(tick)]);
        }
        self.handles = kept;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn queue(origin: Instant, tick: u64) -> ExpiryQueue<u32> {
        ExpiryQueue::new(origin, ms(tick)).expect("non-zero tick")
    }

    #[test]
    fn deadlines_round_up_even_on_exact_multiples() {
        // Reference "Expiry (server)": bucket = (t / tick + 1) * tick.
        let origin = Instant::now();
        let mut q = queue(origin, 2000);
        for (deadline, bucket) in [
            (0, 2000),
            (1, 2000),
            (1999, 2000),
            (2000, 4000),
            (4000, 6000),
            (4001, 6000),
        ] {
            let handle = q.insert(deadline as u32, origin + ms(deadline));
            assert_eq!(q.deadline(handle), Some(origin + ms(bucket)), "{deadline}");
        }
        // A deadline before the origin lands in the first bucket, not in the past.
        let handle = q.insert(99, origin.checked_sub(ms(5)).unwrap_or(origin));
        assert_eq!(q.deadline(handle), Some(origin + ms(2000)));
        assert_eq!(
            ExpiryQueue::<u32>::new(origin, Duration::ZERO).err(),
            Some(ExpiryQueueError::ZeroTick)
        );
    }

    #[test]
    fn touch_moves_only_when_the_bucket_changes() {
        let origin = Instant::now();
        let mut q = queue(origin, 1000);
        let a = q.insert(1, origin + ms(4100));
        let b = q.insert(2, origin + ms(4200));
        assert!(q.touch(a, origin + ms(4900)));
        assert_eq!(q.buckets().count(), 1);
        assert_eq!(q.handles, 2, "same bucket: no handle pushed");
        assert!(q.touch(a, origin + ms(5100)));
        assert_eq!(q.buckets().map(|(_, n)| n).collect::<Vec<_>>(), vec![1, 1]);
        assert_eq!(q.poll(origin + ms(5000)), vec![2]);
        assert!(!q.touch(b, origin + ms(9000)), "polled handle is stale");
        assert_eq!(q.remove(b), None);
        assert_eq!(q.remove(a), Some(1));
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
        assert_eq!(q.handles, 0, "empty buckets are dropped with their handles");
    }

    #[test]
    fn poll_hands_out_whole_buckets_in_order_after_a_stall() {
        let origin = Instant::now();
        let mut q = queue(origin, 100);
        for key in 0..30u32 {
            q.insert(key, origin + ms(u64::from(key % 3) * 100 + 50));
        }
        assert_eq!(q.next_deadline(), Some(origin + ms(100)));
        // Stalled for several ticks: three buckets at once, earliest first.
        let due = q.poll(origin + ms(1000));
        let expected: Vec<u32> = (0..3)
            .flat_map(|r| (0..30).filter(move |k| k % 3 == r))
            .collect();
        assert_eq!(due, expected);
        assert!(q.is_empty());
    }

    #[test]
    fn slots_are_reused_and_stale_handles_never_touch_new_keys() {
        let origin = Instant::now();
        let mut q = queue(origin, 10);
        let old = q.insert(1, origin + ms(5));
        assert_eq!(q.remove(old), Some(1));
        let new = q.insert(2, origin + ms(5));
        assert_eq!(new.index, old.index);
        assert!(!q.touch(old, origin + ms(500)));
        assert_eq!(q.get(old), None);
        assert_eq!(q.get(new), Some(&2));
        assert_eq!(q.iter().map(|(_, k, _)| *k).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn key_coming_back_to_a_bucket_is_handed_out_once() {
        let origin = Instant::now();
        let mut q = queue(origin, 10);
        let _anchor = q.insert(0, origin + ms(100));
        let a = q.insert(1, origin + ms(100));
        q.touch(a, origin + ms(200));
        q.touch(a, origin + ms(100));
        assert_eq!(q.poll(origin + ms(1000)), vec![0, 1]);
    }

    #[test]
    fn stale_handles_are_compacted() {
        let origin = Instant::now();
        let mut q = queue(origin, 1);
        let anchor = q.insert(0, origin + ms(1_000_000));
        let handles: Vec<_> = (1..100u32).map(|k| q.insert(k, origin)).collect();
        for round in 1..200u64 {
            for handle in &handles {
                q.touch(*handle, origin + ms(round));
            }
            // Keep every visited bucket alive so stale handles cannot be dropped
            // with an emptied bucket.
            let _keep = q.insert(1000, origin + ms(round));
        }
        assert!(
            q.handles <= 2 * q.len + 1024,
            "{} handles for {} keys",
            q.handles,
            q.len
        );
        assert_eq!(q.get(anchor), Some(&0));
    }

    /// The ring, the map and the counts agree with the slab: every key's
    /// bucket is where its tick says (ring inside the window, map outside),
    /// holds a valid handle for it, and counts it; no empty bucket lingers.
    fn check_layout(q: &ExpiryQueue<u32>) {
        let mut expected: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for (index, entry) in q.entries.iter().enumerate() {
            if entry.key.is_some() {
                expected.entry(entry.tick).or_default().push(index as u32);
            }
        }
        let valid = |tick: u64, bucket: &Bucket| {
            let mut held: Vec<u32> = bucket
                .handles
                .iter()
                .filter(|h| {
                    let entry = &q.entries[h.index as usize];
                    entry.generation == h.generation && entry.tick == tick && entry.key.is_some()
                })
                .map(|h| h.index)
                .collect();
            held.sort_unstable();
            held.dedup();
            held
        };
        let mut found = BTreeMap::new();
        let mut handles = 0;
        for (&tick, bucket) in &q.far {
            assert!(!q.in_ring(tick), "map bucket {tick} inside the window");
            assert!(bucket.live > 0, "empty map bucket {tick}");
            assert_eq!(
                bucket.live as usize,
                valid(tick, bucket).len(),
                "count of {tick}"
            );
            found.insert(tick, valid(tick, bucket));
            handles += bucket.handles.len();
        }
        for slot in 0..RING {
            let bucket = &q.ring[slot as usize];
            let tick = q.ring_tick(slot);
            assert!(q.in_ring(tick));
            assert_eq!(
                q.ring_live >> slot & 1 == 1,
                bucket.live > 0,
                "bit of slot {slot}"
            );
            if bucket.live > 0 {
                assert_eq!(
                    bucket.live as usize,
                    valid(tick, bucket).len(),
                    "count of {tick}"
                );
                found.insert(tick, valid(tick, bucket));
            } else {
                assert!(
                    bucket.handles.is_empty(),
                    "stale handles in empty slot {slot}"
                );
            }
            handles += bucket.handles.len();
        }
        assert_eq!(found, expected);
        assert_eq!(handles, q.handles);
        assert!(q.ring_base <= u64::MAX - RING);
    }

    #[test]
    fn window_follows_touches_without_polls() {
        // The bench's pattern: time moves one tick per round, nobody polls.
        let origin = Instant::now();
        let mut q = queue(origin, 10);
        let still = q.insert(0, origin + ms(100));
        let far = q.insert(1, origin + ms(100_000));
        let moving: Vec<_> = (2..50u32).map(|k| q.insert(k, origin + ms(100))).collect();
        assert_eq!(q.far.len(), 1, "only the long deadline waits in the map");
        for round in 1..1000u64 {
            for handle in &moving {
                assert!(q.touch(*handle, origin + ms(100 + 10 * round)));
            }
        }
        check_layout(&q);
        // The window slid along; the bucket left behind went to the map.
        assert!(q.in_ring(1000 + 10));
        assert!(q.far.contains_key(&11));
        assert_eq!(q.next_deadline(), Some(origin + ms(110)));
        assert_eq!(q.poll(origin + ms(110)), vec![0]);
        assert_eq!(q.get(still), None);
        // The long deadline enters the ring when the window reaches it.
        assert_eq!(q.poll(origin + ms(99_990)).len(), moving.len());
        assert!(q.in_ring(10_001) && q.far.is_empty());
        check_layout(&q);
        assert!(q.poll(origin + ms(100_009)).is_empty());
        assert_eq!(q.poll(origin + ms(100_010)), vec![1]);
        assert_eq!(q.get(far), None);
        assert!(q.is_empty());
    }

    #[test]
    fn deadlines_behind_the_window_come_out_first() {
        let origin = Instant::now();
        let mut q = queue(origin, 10);
        let later = q.insert(0, origin + ms(500));
        assert!(q.poll(origin + ms(300)).is_empty());
        // Behind the window (already due), in it, and beyond it.
        let past = q.insert(1, origin + ms(50));
        let beyond = q.insert(2, origin + ms(5000));
        check_layout(&q);
        assert_eq!(q.next_deadline(), Some(origin + ms(60)));
        let counts: Vec<_> = q.buckets().collect();
        assert_eq!(
            counts,
            vec![
                (Some(origin + ms(60)), 1),
                (Some(origin + ms(510)), 1),
                (Some(origin + ms(5010)), 1)
            ]
        );
        assert_eq!(q.poll(origin + ms(300)), vec![1]);
        assert!(q.touch(beyond, origin + ms(400)));
        assert!(q.touch(later, origin + ms(6000)));
        check_layout(&q);
        assert_eq!(q.poll(origin + ms(10_000)), vec![2, 0]);
        assert_eq!(q.get(past), None);
        check_layout(&q);
    }

    #[test]
    fn window_stops_short_of_the_largest_tick() {
        let origin = Instant::now();
        let mut q = ExpiryQueue::new(origin, Duration::from_nanos(1)).expect("non-zero tick");
        let nanos = |n: u64| origin + Duration::from_nanos(n);
        let a = q.insert(1u32, nanos(u64::MAX - 10));
        let b = q.insert(2, nanos(u64::MAX - 3));
        assert!(q.poll(nanos(u64::MAX - 200)).is_empty());
        assert_eq!(q.ring_base, u64::MAX - 199);
        check_layout(&q);
        assert!(q.poll(nanos(u64::MAX - 11)).is_empty());
        assert_eq!(q.ring_base, u64::MAX - RING, "clamped");
        // Past `u64::MAX` nanoseconds: the last bucket, u64::MAX.
        assert!(q.touch(a, nanos(u64::MAX) + Duration::from_secs(1)));
        assert!(q.touch(b, nanos(u64::MAX - 2)));
        check_layout(&q);
        assert_eq!(q.deadline(b), Some(nanos(u64::MAX - 1)));
        assert_eq!(q.poll(nanos(u64::MAX - 1)), vec![2]);
        check_layout(&q);
        assert_eq!(q.remove(a), Some(1));
        check_layout(&q);
        assert!(q.is_empty());
    }

    #[test]
    fn compaction_skips_buckets_without_stale_handles() {
        let origin = Instant::now();
        let mut q = queue(origin, 1);
        let _big: Vec<_> = (0..5000u32).map(|k| q.insert(k, origin + ms(40))).collect();
        let movers: Vec<_> = (0..100u32).map(|k| q.insert(k, origin + ms(30))).collect();
        for round in 0..200u64 {
            for handle in &movers {
                q.touch(*handle, origin + ms(20 + round % 2));
            }
            let _keep = q.insert(9, origin + ms(20 + round % 2));
        }
        check_layout(&q);
        let big = &q.ring[slot(41)];
        assert_eq!(big.handles.len(), 5000, "nothing stale, left alone");
        assert!(q.handles <= 2 * q.len + 1024);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { delay: u64 },
        Touch { which: usize, delay: u64 },
        Remove { which: usize },
        Advance { by: u64 },
        Poll { back: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..500u64).prop_map(|delay| Op::Insert { delay }),
            (any::<usize>(), 0..500u64).prop_map(|(which, delay)| Op::Touch { which, delay }),
            any::<usize>().prop_map(|which| Op::Remove { which }),
            (0..300u64).prop_map(|by| Op::Advance { by }),
        ]
    }

    proptest! {
        /// Against a naive model (key → exact deadline): nothing is handed out
        /// before its deadline, nothing later than one tick after it when polled
        /// at every step, and every key is handed out or removed exactly once.
        #[test]
        fn matches_naive_model(tick in 1..50u64, ops in proptest::collection::vec(op(), 1..300)) {
            let origin = Instant::now();
            let mut q = queue(origin, tick);
            let mut model: BTreeMap<u32, (ExpiryHandle, Instant)> = BTreeMap::new();
            let mut seen = HashSet::new();
            let mut now = origin;
            let mut next_key = 0u32;
            for op in ops {
                match op {
                    Op::Insert { delay } => {
                        let deadline = now + ms(delay);
                        let handle = q.insert(next_key, deadline);
                        model.insert(next_key, (handle, deadline));
                        next_key += 1;
                    }
                    Op::Touch { which, delay } if !model.is_empty() => {
                        let key = *model.keys().nth(which % model.len()).expect("in range");
                        let deadline = now + ms(delay);
                        let entry = model.get_mut(&key).expect("present");
                        prop_assert!(q.touch(entry.0, deadline));
                        entry.1 = deadline;
                    }
                    Op::Remove { which } if !model.is_empty() => {
                        let key = *model.keys().nth(which % model.len()).expect("in range");
                        let (handle, _) = model.remove(&key).expect("present");
                        prop_assert_eq!(q.remove(handle), Some(key));
                        prop_assert!(seen.insert(key));
                    }
                    Op::Advance { by } => now += ms(by),
                    _ => {}
                }
                // Poll at every wake-up between the previous step and now.
                while let Some(wake) = q.next_deadline().filter(|w| *w <= now) {
                    for key in q.poll(wake) {
                        let (_, deadline) = model.remove(&key).expect("handed out once, and only known keys");
                        prop_assert!(deadline < wake, "early: {:?} < {:?}", wake, deadline);
                        prop_assert!(wake <= deadline + ms(tick), "late");
                        prop_assert!(seen.insert(key));
                    }
                }
                check_layout(&q);
                prop_assert_eq!(q.len(), model.len());
                if let Some(earliest) = model.values().map(|(_, d)| *d).min() {
                    let wake = q.next_deadline().expect("non-empty queue has a deadline");
                    prop_assert!(wake > earliest && wake <= earliest + ms(tick));
                } else {
                    prop_assert_eq!(q.next_deadline(), None);
                }
            }
            // Nothing lost: far in the future everything left comes out.
            let rest = q.poll(now + ms(10_000));
            prop_assert_eq!(rest.len(), model.len());
            for key in rest {
                prop_assert!(model.remove(&key).is_some());
                prop_assert!(seen.insert(key));
            }
            prop_assert_eq!(seen.len(), next_key as usize);
        }

        /// Against a model of bucket numbers (key -> tick), with deadlines
        /// spread far past the ring window and polls at any instant, earlier
        /// ones too: the same keys due, in bucket order, the same buckets, and
        /// the ring and the map laid out as `check_layout` demands.
        #[test]
        fn ring_and_map_match_bucket_model(
            tick in 1..20u64,
            ops in proptest::collection::vec(
                prop_oneof![
                    (0..3000u64).prop_map(|delay| Op::Insert { delay }),
                    (any::<usize>(), 0..3000u64).prop_map(|(which, delay)| Op::Touch { which, delay }),
                    any::<usize>().prop_map(|which| Op::Remove { which }),
                    (0..400u64).prop_map(|by| Op::Advance { by }),
                    (0..200u64).prop_map(|back| Op::Poll { back }),
                ],
                1..300,
            ),
        ) {
            let origin = Instant::now();
            let mut q = queue(origin, tick);
            let bucket = |at: u64| at / tick + 1;
            let mut model: BTreeMap<u32, (ExpiryHandle, u64)> = BTreeMap::new();
            let mut now = 0u64;
            let mut next_key = 0u32;
            for op in ops {
                match op {
                    Op::Insert { delay } => {
                        let handle = q.insert(next_key, origin + ms(now + delay));
                        model.insert(next_key, (handle, bucket(now + delay)));
                        next_key += 1;
                    }
                    Op::Touch { which, delay } if !model.is_empty() => {
                        let key = *model.keys().nth(which % model.len()).expect("in range");
                        let entry = model.get_mut(&key).expect("present");
                        prop_assert!(q.touch(entry.0, origin + ms(now + delay)));
                        entry.1 = bucket(now + delay);
                    }
                    Op::Remove { which } if !model.is_empty() => {
                        let key = *model.keys().nth(which % model.len()).expect("in range");
                        let (handle, _) = model.remove(&key).expect("present");
                        prop_assert_eq!(q.remove(handle), Some(key));
                        prop_assert!(!q.touch(handle, origin + ms(now)), "removed: stale");
                    }
                    Op::Advance { by } => now += by,
                    Op::Poll { back } => {
                        let at = now.saturating_sub(back);
                        let due = q.poll(origin + ms(at));
                        let mut expected: Vec<u32> = model
                            .iter()
                            .filter(|(_, (_, b))| *b <= at / tick)
                            .map(|(k, _)| *k)
                            .collect();
                        let ticks: Vec<u64> = due.iter().map(|k| model[k].1).collect();
                        prop_assert!(ticks.windows(2).all(|w| w[0] <= w[1]), "bucket order: {:?}", ticks);
                        for key in &due {
                            let (handle, _) = model.remove(key).expect("known key");
                            prop_assert_eq!(q.get(handle), None, "polled: stale");
                        }
                        let mut got = due;
                        got.sort_unstable();
                        expected.sort_unstable();
                        prop_assert_eq!(got, expected);
                    }
                    _ => {}
                }
                check_layout(&q);
                prop_assert_eq!(q.len(), model.len());
                let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
                for (_, b) in model.values() {
                    *counts.entry(*b).or_default() += 1;
                }
                let expected: Vec<_> = counts
                    .iter()
                    .map(|(b, n)| (Some(origin + ms(b * tick)), *n))
                    .collect();
                prop_assert_eq!(q.buckets().collect::<Vec<_>>(), expected);
                prop_assert_eq!(
                    q.next_deadline(),
                    counts.keys().next().map(|b| origin + ms(b * tick))
                );
                for (handle, b) in model.values() {
                    prop_assert_eq!(q.deadline(*handle), Some(origin + ms(b * tick)));
                }
            }
        }
    }
}
