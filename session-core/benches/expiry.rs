//! `ExpiryQueue` throughput: touches on a 1M-key queue (staying, moving, and
//! moving to spread timeouts with compaction running), and polling a 100k-key
//! bucket.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use session_core::{ExpiryHandle, ExpiryQueue, SessionId};

const KEYS: usize = 1_000_000;
const BATCH: usize = 100_000;
const TICK: Duration = Duration::from_millis(2000);
const TIMEOUT: Duration = Duration::from_millis(10_000);

fn filled(origin: Instant) -> (ExpiryQueue<SessionId>, Vec<ExpiryHandle>) {
    let mut queue = ExpiryQueue::new(origin, TICK).expect("non-zero tick");
    let handles = (0..KEYS as u64)
        .map(|n| queue.insert(SessionId::from_u64(n), origin + TIMEOUT))
        .collect();
    (queue, handles)
}

fn touches(c: &mut Criterion) {
    let origin = Instant::now();
    let (mut queue, handles) = filled(origin);
    let mut rng = fastrand::Rng::with_seed(1);
    let order: Vec<ExpiryHandle> = (0..BATCH).map(|_| handles[rng.usize(..KEYS)]).collect();
    let mut group = c.benchmark_group("expiry_queue_1M");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(4));
    // Same tick: the common case between ticks, no move.
    group.bench_function("touch_same_bucket", |b| {
        b.iter(|| {
            for handle in &order {
                black_box(queue.touch(*handle, origin + TIMEOUT));
            }
        })
    });
    // Time advances one tick per batch, so (nearly) every touch moves its key.
    let mut now = origin;
    group.bench_function("touch_moving_bucket", |b| {
        b.iter(|| {
            now += TICK;
            for handle in &order {
                black_box(queue.touch(*handle, now + TIMEOUT));
            }
        })
    });
    // Timeouts spread over 2..=20 ticks, as negotiated ones are: buckets
    // rarely empty whole, so stale handles pile up and compaction runs.
    let timeouts: Vec<Duration> = (0..KEYS)
        .map(|_| TICK * rng.u32(2..=20) + Duration::from_millis(rng.u64(..2000)))
        .collect();
    let spread: Vec<(ExpiryHandle, Duration)> = (0..BATCH)
        .map(|_| {
            let n = rng.usize(..KEYS);
            (handles[n], timeouts[n])
        })
        .collect();
    group.bench_function("touch_spread_timeouts", |b| {
        b.iter(|| {
            now += TICK;
            for (handle, timeout) in &spread {
                black_box(queue.touch(*handle, now + *timeout));
            }
        })
    });
    group.finish();
}

fn poll_bucket(c: &mut Criterion) {
    let origin = Instant::now();
    let mut group = c.benchmark_group("expiry_queue_poll");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("poll_100k_bucket", |b| {
        b.iter_batched(
            || {
                let mut queue = ExpiryQueue::new(origin, TICK).expect("non-zero tick");
                for n in 0..BATCH as u64 {
                    queue.insert(SessionId::from_u64(n), origin + TIMEOUT);
                }
                queue
            },
            |mut queue| black_box(queue.poll(origin + TIMEOUT + TICK)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, touches, poll_bucket);
criterion_main!(benches);
