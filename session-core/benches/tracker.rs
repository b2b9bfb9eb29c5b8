//! `SessionTracker` throughput: create then expire 1M sessions; touches at 1M.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use session_core::{
    IdGenerator, OwnerId, PasswordSecret, ServerId, SessionId, SessionTracker, TimeoutPolicy,
};

const SESSIONS: u64 = 1_000_000;

fn tracker(origin: Instant) -> SessionTracker {
    let policy = TimeoutPolicy::new(Duration::from_millis(2000)).expect("valid tick");
    let ids = IdGenerator::new(ServerId::new(1).expect("valid"), 1_700_000_000_000, None);
    let secret = PasswordSecret::new(&[9; 32]).expect("long enough");
    SessionTracker::new(policy, ids, secret, origin)
}

fn create_and_expire(c: &mut Criterion) {
    let origin = Instant::now();
    let mut group = c.benchmark_group("tracker_1M");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(SESSIONS));
    group.bench_function("create_then_expire", |b| {
        b.iter(|| {
            let mut t = tracker(origin);
            for n in 0..SESSIONS {
                black_box(
                    t.create(Duration::from_secs(10), OwnerId::new(n), origin)
                        .expect("ids left"),
                );
            }
            let expired = t.poll_expired(origin + Duration::from_secs(60));
            assert_eq!(expired.len() as u64, SESSIONS);
            for id in expired {
                t.remove(id);
            }
            t
        })
    });
    group.finish();
}

fn touches(c: &mut Criterion) {
    let origin = Instant::now();
    let mut t = tracker(origin);
    let ids: Vec<SessionId> = (0..SESSIONS)
        .map(|n| {
            t.create(Duration::from_secs(10), OwnerId::new(n), origin)
                .expect("ids left")
                .id
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(2);
    let order: Vec<(SessionId, OwnerId)> = (0..100_000)
        .map(|_| {
            let n = rng.usize(..ids.len());
            (ids[n], OwnerId::new(n as u64))
        })
        .collect();
    let mut group = c.benchmark_group("tracker_1M");
    group.throughput(Throughput::Elements(order.len() as u64));
    group.measurement_time(Duration::from_secs(4));
    let mut now = origin;
    group.bench_function("touch_moving_bucket", |b| {
        b.iter(|| {
            now += Duration::from_millis(2000);
            for (id, owner) in &order {
                black_box(t.touch(*id, *owner, now)).expect("open session");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, create_and_expire, touches);
criterion_main!(benches);
