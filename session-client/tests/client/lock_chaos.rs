//! Lock chaos: several clients, each behind its own proxy, take one lock in
//! turn while their connections are partitioned (both ways, or only the
//! server's answers), cut, and their processes killed, for
//! `LOCK_CHAOS_SECS` seconds (10 by default). Every holder records the
//! monotonic interval in which it acted as the holder, from the return of
//! `acquire` to its release, the moment its guard turned invalid, or its
//! kill. The invariant: no two intervals overlap, and the fencing tokens of
//! successive holders strictly increase; at the end no node is left.
//!
//! A long run, with the figures printed:
//!
//! ```text
//! LOCK_CHAOS_SECS=600 cargo test -p session-client --test client lock_chaos -- --nocapture
//! ```
//!
//! `LOCK_CHAOS_SEED` replays a fault schedule (the interleaving with the
//! network is not replayed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use session_client::recipes::{FencingToken, Lock};
use session_client::{Client, Error};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::{PATIENCE, Proxy, connect, eventually, start};

/// The clients taking the lock.
const CLIENTS: usize = 5;
/// Their session timeout.
const T: Duration = Duration::from_secs(1);
/// The lock.
const LOCK: &str = "/chaos/lock";

/// How an interval of holding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The holder released the lock.
    Released,
    /// The guard turned invalid (the client was suspended, or worse).
    Invalidated,
    /// The holder's process was killed while it held the lock.
    Killed,
}

/// One holder's time with the lock.
#[derive(Debug, Clone, Copy)]
struct Interval {
    worker: usize,
    token: FencingToken,
    acquired: Instant,
    ended: Instant,
    end: End,
    /// The fault the holder was under when its interval ended.
    fault: Option<Fault>,
}

/// The fault a worker is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing forwarded either way (`Proxy::stall`).
    Partition,
    /// The server's answers dropped (`Proxy::hold`).
    Hold,
    /// Connections closed (`Proxy::cut`).
    Cut,
    /// The client process killed.
    Kill,
}

impl Fault {
    const ALL: [Fault; 4] = [Fault::Partition, Fault::Hold, Fault::Cut, Fault::Kill];
}

/// What the run counts.
#[derive(Debug, Default)]
struct Counts {
    acquisitions: AtomicU64,
    invalid_at_acquisition: AtomicU64,
    partitions: AtomicU64,
    holds: AtomicU64,
    cuts: AtomicU64,
    kills: AtomicU64,
    kills_of_holders: AtomicU64,
    faults_on_holders: AtomicU64,
    sessions: AtomicU64,
    errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A client process behind its proxy.
struct Worker {
    proxy: Proxy,
    /// The running incarnation; replaced after a kill.
    task: Mutex<Option<JoinHandle<()>>>,
    /// When, and with which token, it took the lock it holds now.
    holding: Mutex<Option<(Instant, FencingToken)>>,
    /// Under a fault now.
    faulted: AtomicBool,
    /// Which one.
    fault: Mutex<Option<Fault>>,
}

/// A fault, once over: on which worker, which, from when to when.
#[derive(Debug, Clone, Copy)]
struct FaultRecord {
    worker: usize,
    started: Instant,
    ended: Instant,
}

struct Run {
    workers: Vec<Worker>,
    intervals: Mutex<Vec<Interval>>,
    faults: Mutex<Vec<FaultRecord>>,
    counts: Counts,
    stop: watch::Sender<bool>,
}

impl Run {
    fn record(&self, interval: Interval) {
        self.intervals
            .lock()
            .expect("intervals lock")
            .push(interval);
    }

    fn spawn_worker(self: &Arc<Self>, index: usize, seed: u64) {
        let run = Arc::clone(self);
        let task = tokio::spawn(async move { run.work(index, seed).await });
        *self.workers[index].task.lock().expect("task lock") = Some(task);
    }

    /// One incarnation of a client process: connects (again after its
    /// session ended), takes the lock, holds it a moment, releases it, and
    /// again, until the run stops.
    async fn work(&self, index: usize, seed: u64) {
        let worker = &self.workers[index];
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut stop = self.stop.subscribe();
        while !*stop.borrow_and_update() {
            let connecting = Client::builder()
                .servers(worker.proxy.addr().to_string())
                .session_timeout(T)
                .connect_timeout(2 * T)
                .rng_seed(rng.u64(..))
                .connect();
            let client = tokio::select! {
                connected = connecting => match connected {
                    Ok(client) => client,
                    Err(_) => continue,
                },
                _ = stop.changed() => return,
            };
            bump(&self.counts.sessions);
            let lock = Lock::new(&client, LOCK).data(format!("worker-{index}"));
            loop {
                let acquired = tokio::select! {
                    acquired = lock.acquire() => acquired,
                    _ = stop.changed() => {
                        client.close().await;
                        return;
                    }
                };
                let guard = match acquired {
                    Ok(guard) => guard,
                    Err(error) if error.is_terminal() => break,
                    Err(error) => {
                        assert!(
                            matches!(error, Error::Unavailable { .. } | Error::System { .. }),
                            "worker {index}: {error}"
                        );
                        bump(&self.counts.errors);
                        continue;
                    }
                };
                let acquired = Instant::now();
                if !guard.is_valid() {
                    // Suspended between the check and now: never acted.
                    bump(&self.counts.invalid_at_acquisition);
                    continue;
                }
                bump(&self.counts.acquisitions);
                *worker.holding.lock().expect("holding lock") = Some((acquired, guard.token()));
                // Mostly a moment; sometimes long enough for a partition
                // to catch the holder.
                let work = if rng.u8(0..8) == 0 {
                    T.mul_f64(1.5 * rng.f64())
                } else {
                    Duration::from_millis(rng.u64(0..50))
                };
                let end = tokio::select! {
                    biased;
                    () = guard.lost() => End::Invalidated,
                    () = tokio::time::sleep(work) => End::Released,
                };
                let ended = Instant::now();
                worker.holding.lock().expect("holding lock").take();
                self.record(Interval {
                    worker: index,
                    token: guard.token(),
                    acquired,
                    ended,
                    end,
                    fault: *worker.fault.lock().expect("fault lock"),
                });
                if end == End::Released {
                    // Errors leave the node to the background delete.
                    let _ = guard.release().await;
                }
            }
        }
    }

    /// Faults, one after another, each on a worker not under one already;
    /// two in three on the holder of the moment, if any.
    async fn chaos(self: &Arc<Self>, until: Instant, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut faults: Vec<JoinHandle<()>> = Vec::new();
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(rng.u64(100..700))).await;
            let holder = (0..CLIENTS).find(|&index| {
                self.workers[index]
                    .holding
                    .lock()
                    .expect("holding lock")
                    .is_some()
            });
            let target = match holder {
                Some(holder) if rng.u8(0..3) > 0 => holder,
                _ => rng.usize(..CLIENTS),
            };
            if self.workers[target].faulted.swap(true, Ordering::SeqCst) {
                continue;
            }
            if Some(target) == holder {
                bump(&self.counts.faults_on_holders);
            }
            // 0.1·T to 3·T.
            let length = T.mul_f64(rng.f64().mul_add(2.9, 0.1));
            let fault = Fault::ALL[rng.usize(..Fault::ALL.len())];
            let seed = rng.u64(..);
            let run = Arc::clone(self);
            faults.push(tokio::spawn(async move {
                *run.workers[target].fault.lock().expect("fault lock") = Some(fault);
                let started = Instant::now();
                run.fault(target, fault, length, seed).await;
                run.faults.lock().expect("faults lock").push(FaultRecord {
                    worker: target,
                    started,
                    ended: Instant::now(),
                });
                *run.workers[target].fault.lock().expect("fault lock") = None;
                run.workers[target].faulted.store(false, Ordering::SeqCst);
            }));
        }
        for fault in faults {
            fault.await.expect("a fault task");
        }
    }

    async fn fault(self: &Arc<Self>, target: usize, fault: Fault, length: Duration, seed: u64) {
        let worker = &self.workers[target];
        match fault {
            // A partition: nothing either way, connections left open.
            Fault::Partition => {
                bump(&self.counts.partitions);
                worker.proxy.stall();
                tokio::time::sleep(length).await;
                worker.proxy.restore();
            }
            // The server's answers lost; the client's requests (its pings)
            // still reach the server.
            Fault::Hold => {
                bump(&self.counts.holds);
                worker.proxy.hold();
                tokio::time::sleep(length).await;
                worker.proxy.cut();
                worker.proxy.restore();
            }
            // Connections closed, new ones refused.
            Fault::Cut => {
                bump(&self.counts.cuts);
                worker.proxy.cut();
                tokio::time::sleep(length).await;
                worker.proxy.restore();
            }
            // kill -9: its connections die with it, and its session is
            // left to expire. Kept cut off until its orphaned client has
            // given up (4/3·T), so that nothing of it acts again.
            Fault::Kill => {
                bump(&self.counts.kills);
                worker.proxy.cut();
                let task = worker.task.lock().expect("task lock").take();
                if let Some(task) = task {
                    task.abort();
                    let _ = task.await;
                }
                if let Some((acquired, token)) = worker.holding.lock().expect("holding lock").take()
                {
                    bump(&self.counts.kills_of_holders);
                    self.record(Interval {
                        worker: target,
                        token,
                        acquired,
                        ended: Instant::now(),
                        end: End::Killed,
                        fault: Some(Fault::Kill),
                    });
                }
                tokio::time::sleep(length.max(T.mul_f64(1.5))).await;
                worker.proxy.restore();
                if !*self.stop.borrow() {
                    self.spawn_worker(target, seed);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_chaos() {
    let seconds: u64 = std::env::var("LOCK_CHAOS_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("LOCK_CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
    println!("lock_chaos: {CLIENTS} clients, T = {T:?}, {seconds} s, LOCK_CHAOS_SEED={seed}");
    let server = start().await;
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        workers.push(Worker {
            proxy: Proxy::start(server.local_addr()).await,
            task: Mutex::new(None),
            holding: Mutex::new(None),
            faulted: AtomicBool::new(false),
            fault: Mutex::new(None),
        });
    }
    let (stop, _) = watch::channel(false);
    let run = Arc::new(Run {
        workers,
        intervals: Mutex::new(Vec::new()),
        faults: Mutex::new(Vec::new()),
        counts: Counts::default(),
        stop,
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    for index in 0..CLIENTS {
        run.spawn_worker(index, rng.u64(..));
    }
    let started = Instant::now();
    run.chaos(started + Duration::from_secs(seconds), rng.u64(..))
        .await;
    run.stop.send_replace(true);
    for worker in &run.workers {
        worker.proxy.restore();
        let task = worker.task.lock().expect("task lock").take();
        if let Some(task) = task {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("a worker stops")
                .expect("a worker's task");
        }
    }
    let elapsed = started.elapsed();

    // Every client closed, every killed one's session expired: no node.
    let observer = connect(&server).await;
    eventually("no lock node is left", async || {
        observer
            .children(LOCK)
            .await
            .map_or(true, |children| children.is_empty())
    })
    .await;

    let mut intervals = run.intervals.lock().expect("intervals lock").clone();
    intervals.sort_by_key(|interval| interval.acquired);
    // From the moment a holder stopped to the next holder's start, by what
    // stopped it.
    // Whether the next holder started while the lost one was still cut off
    // (its node then went with its expired session, not by its own delete).
    let faults = run.faults.lock().expect("faults lock").clone();
    let cut_off_until = |before: &Interval, after: &Interval| {
        faults.iter().any(|fault| {
            fault.worker == before.worker
                && fault.started <= before.ended
                && after.acquired <= fault.ended
        })
    };
    let mut gaps: Vec<(End, Option<Fault>, bool, Duration)> = Vec::new();
    for pair in intervals.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        assert!(
            before.ended <= after.acquired,
            "two holders at once: {before:?} and {after:?}"
        );
        assert!(
            before.token < after.token,
            "tokens not increasing: {before:?} then {after:?}"
        );
        gaps.push((
            before.end,
            before.fault,
            cut_off_until(&before, &after),
            after.acquired - before.ended,
        ));
    }
    let ended = |end| intervals.iter().filter(|i| i.end == end).count();
    let counts = &run.counts;
    println!(
        "lock_chaos: {:.1?}: {} acquisitions ({} released, {} invalidated, {} killed while holding; \
         {} invalid on arrival), {} sessions; faults: {} partitions, {} held answers, {} cuts, \
         {} kills ({} on the holder of the moment); {} retried errors",
        elapsed,
        count(&counts.acquisitions),
        ended(End::Released),
        ended(End::Invalidated),
        ended(End::Killed),
        count(&counts.invalid_at_acquisition),
        count(&counts.sessions),
        count(&counts.partitions),
        count(&counts.holds),
        count(&counts.cuts),
        count(&counts.kills),
        count(&counts.faults_on_holders),
        count(&counts.errors),
    );
    let gap_line = |what: &str, keep: &dyn Fn(End, Option<Fault>, bool) -> bool| {
        let kept: Vec<Duration> = gaps
            .iter()
            .filter(|(end, fault, cut_off, _)| keep(*end, *fault, *cut_off))
            .map(|(_, _, _, gap)| *gap)
            .collect();
        match (kept.iter().min(), kept.iter().max()) {
            (Some(min), Some(max)) => println!(
                "lock_chaos: next holder {what}: {} handovers, gap min {min:.1?} max {max:.1?}",
                kept.len()
            ),
            _ => println!("lock_chaos: next holder {what}: none"),
        }
    };
    gap_line("after a release", &|end, _, _| end == End::Released);
    for fault in Fault::ALL {
        gap_line(
            &format!("after a loss under {fault:?}, the old holder still cut off"),
            &|end, f, cut_off| end != End::Released && f == Some(fault) && cut_off,
        );
        gap_line(
            &format!("after a loss under {fault:?}, once the fault was over"),
            &|end, f, cut_off| end != End::Released && f == Some(fault) && !cut_off,
        );
    }
    gap_line(
        "after any loss, the old holder still cut off (its session expired)",
        &|end, _, cut_off| end != End::Released && cut_off,
    );
    gap_line("after any loss", &|end, _, _| end != End::Released);
    let per_worker: Vec<usize> = (0..CLIENTS)
        .map(|index| intervals.iter().filter(|i| i.worker == index).count())
        .collect();
    println!("lock_chaos: acquisitions per client: {per_worker:?}");
    assert_eq!(intervals.len() as u64, count(&counts.acquisitions));
    assert!(count(&counts.acquisitions) >= 10, "the lock changed hands");
    let faults = count(&counts.partitions)
        + count(&counts.holds)
        + count(&counts.cuts)
        + count(&counts.kills);
    assert!(faults >= 5, "faults were injected: {faults}");
}
