//! Bytes per tracked session at 1M sessions, measured with a counting global
//! allocator (heap bytes live after setup, divided by the number of sessions).
#![allow(unsafe_code)] // A global allocator cannot be written without it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use session_core::{
    ExpiryQueue, IdGenerator, OwnerId, PasswordSecret, ServerId, SessionId, SessionTracker,
    TimeoutPolicy,
};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SESSIONS: u64 = 1_000_000;

fn main() {
    let origin = Instant::now();
    let tick = Duration::from_millis(2000);

    let before = LIVE.load(Ordering::Relaxed);
    let policy = TimeoutPolicy::new(tick).expect("valid tick");
    let ids = IdGenerator::new(ServerId::new(1).expect("valid"), 1_700_000_000_000, None);
    let secret = PasswordSecret::new(&[9; 32]).expect("long enough");
    let mut tracker = SessionTracker::new(policy, ids, secret, origin);
    let mut created = Vec::with_capacity(SESSIONS as usize);
    for n in 0..SESSIONS {
        let session = tracker
            .create(Duration::from_secs(10), OwnerId::new(n), origin)
            .expect("ids left");
        created.push(session.id);
    }
    let vec_bytes = created.capacity() * std::mem::size_of::<SessionId>();
    let after_create = LIVE.load(Ordering::Relaxed) - before - vec_bytes;
    // Steady state: every session pinged every T/3 over two timeouts, so stale
    // bucket handles accumulate as they do on a live server.
    let mut now = origin;
    for _ in 0..6 {
        now += Duration::from_millis(3333);
        for (n, id) in created.iter().enumerate() {
            tracker
                .touch(*id, OwnerId::new(n as u64), now)
                .expect("open");
        }
    }
    let after_touches = LIVE.load(Ordering::Relaxed) - before - vec_bytes;
    println!(
        "tracker, 1M sessions: {:.1} bytes/session after create, {:.1} bytes/session after 6 rounds of touches (target <= 128)",
        after_create as f64 / SESSIONS as f64,
        after_touches as f64 / SESSIONS as f64,
    );
    drop(tracker);
    drop(created);

    let before = LIVE.load(Ordering::Relaxed);
    let mut queue = ExpiryQueue::new(origin, tick).expect("non-zero tick");
    for n in 0..SESSIONS {
        queue.insert(SessionId::from_u64(n), origin + Duration::from_secs(10));
    }
    let queue_bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "expiry queue alone, 1M SessionId keys: {:.1} bytes/key",
        queue_bytes as f64 / SESSIONS as f64
    );
    drop(queue);
}
