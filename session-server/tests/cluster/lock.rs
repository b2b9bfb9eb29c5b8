//! A lock recipe under faults: mutual exclusion must hold through server
//! kills, restarts, partitions and a holder cut off in silence, as long as
//! every holder stops holding when its client leaves Connected (the
//! client's Suspended rule: nothing heard for 2/3·T, while the servers
//! expire the session only T after they last heard from it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use session_client::{Client, CreateMode, SessionId, State};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::proxy::{Fault, LinkProxy};
use crate::support::{Cluster, IDS, PATIENCE, T, TICK, serial, two_thirds};

/// Clients contending for the lock.
const LOCKERS: usize = 5;
/// Acquisitions the run must make at least (dozens are made in the calm
/// stretches between faults).
const MIN_ACQUISITIONS: usize = 20;
/// How long a holder holds, at most (it holds 20 ms to this), unless it
/// takes the long turn of the silence fault (2 T, cut short by Suspended).
const MAX_HOLD: Duration = Duration::from_millis(100);
/// A pause after a failed call, so a locker does not spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// Calm between faults.
const CALM: Duration = Duration::from_secs(2);
/// How long a fault lasts.
const FAULT: Duration = Duration::from_secs(2);
/// A delay that stands for silence: nothing through the link within a test.
const SILENCE: Fault = Fault::Delay(Duration::from_secs(3600));
/// How long after its client's Suspended a holder may still be seen
/// holding: its task wakes on the state change (scheduling on a loaded
/// 2-core machine).
const SUSPEND_SLACK: Duration = Duration::from_millis(300);

/// One holder's turn, on the test's monotonic clock.
#[derive(Debug, Clone)]
#[allow(
    dead_code,
    reason = "who and which node: printed when two holds overlap"
)]
struct Hold {
    locker: usize,
    session: SessionId,
    node: String,
    start: Instant,
    end: Instant,
    /// `released`, or the state that cut it short (Suspended, Expired…).
    ended_by: String,
}

/// Who holds the lock now.
#[derive(Debug, Clone, Copy)]
struct Holder {
    locker: usize,
    /// It took the long turn: only a state change ends its hold.
    long: bool,
    /// Where its client is connected (one of its proxies).
    via: Option<SocketAddr>,
}

/// What the lockers share with the test.
#[derive(Debug, Default)]
struct Board {
    holds: Vec<Hold>,
    holder: Option<Holder>,
    /// The next holder takes the long turn.
    long_next: bool,
    /// What each locker is doing now, for a failure message.
    doing: BTreeMap<usize, String>,
    /// Calls that got neither an answer nor an error within [`CALL_BOUND`].
    unanswered: Vec<String>,
}

/// How long a call may go unanswered on a live connection. Writes wait for
/// an election and a forward to the leader (a few seconds at most); a
/// broken connection fails them at once.
const CALL_BOUND: Duration = Duration::from_secs(8);

/// Notes what locker `index` is doing now.
fn doing(shared: &Shared, index: usize, what: String) {
    board(shared).doing.insert(index, what);
}

/// Runs one call of locker `index`, bounded by [`CALL_BOUND`]; a call that
/// outlives it is noted in the board and counts as failed.
async fn call<R>(
    shared: &Shared,
    index: usize,
    client: &Client,
    what: &str,
    call: impl std::future::Future<Output = Result<R, session_client::Error>>,
) -> Result<R, ()> {
    doing(shared, index, format!("{what} via {:?}", client.server()));
    match timeout(CALL_BOUND, call).await {
        Ok(result) => result.map_err(|_| ()),
        Err(_) => {
            crate::support::note(&format!("locker {index}: {what} unanswered"));
            board(shared).unanswered.push(format!(
                "locker {index}: {what} via {:?} ({:?} now)",
                client.server(),
                *client.state().borrow()
            ));
            Err(())
        }
    }
}

type Shared = Arc<Mutex<Board>>;

fn board(shared: &Shared) -> MutexGuard<'_, Board> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The sequence number at the end of a sequential node's name.
fn sequence(name: &str) -> u64 {
    name.rsplit('-')
        .next()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A client, retried until one connects (the cluster may be electing).
async fn connect(servers: &str, seed: u64) -> Client {
    let started = Instant::now();
    loop {
        match Client::builder()
            .servers(servers)
            .session_timeout(T)
            .connect_timeout(T)
            .rng_seed(seed)
            .connect()
            .await
        {
            Ok(client) => return client,
            Err(err) => assert!(
                started.elapsed() < PATIENCE,
                "no session within {PATIENCE:?}: {err}"
            ),
        }
    }
}

/// Waits until `client` is Connected (true) or terminal (false), at most 2 T.
async fn reconnected(client: &Client) -> bool {
    let mut state = client.state();
    let settled = timeout(
        2 * T,
        state.wait_for(|state| *state == State::Connected || state.is_terminal()),
    )
    .await;
    matches!(settled, Ok(Ok(state)) if *state == State::Connected)
}

/// One contender: takes the lock (lowest sequence number under `/lock`
/// holds; the others watch their predecessor), holds it 20–100 ms (or 2 T
/// on the long turn), releases it; over again until `stop`. A holder whose
/// client leaves Connected stops holding at once: the recorded end is when
/// it saw the change.
async fn locker(index: usize, servers: String, stop: watch::Receiver<bool>, shared: Shared) {
    let mut rng = xorshift(index as u64 + 1);
    let mut seed = index as u64 * 1_000;
    let mut client = connect(&servers, seed).await;
    while !*stop.borrow() {
        if client.state().borrow().is_terminal() {
            seed += 1;
            doing(&shared, index, "connecting".to_owned());
            client = connect(&servers, seed).await;
        }
        doing(&shared, index, "reconnecting".to_owned());
        if !reconnected(&client).await {
            continue;
        }
        let session = client.session_id();
        let prefix = format!("{:016x}-", session.as_u64());
        // A node of ours from an interrupted round (or a create whose reply
        // was lost) would block us: remove it first.
        let Ok(children) = call(&shared, index, &client, "list", client.children("/lock")).await
        else {
            sleep(ERROR_BACKOFF).await;
            continue;
        };
        let mut stale = false;
        for child in children.iter().filter(|child| child.starts_with(&prefix)) {
            let path = format!("/lock/{child}");
            stale |= call(
                &shared,
                index,
                &client,
                "delete a stale node",
                client.delete(&path, None),
            )
            .await
            .is_err();
        }
        if stale {
            sleep(ERROR_BACKOFF).await;
            continue;
        }
        let path = format!("/lock/{prefix}");
        let create = client.create(&path, b"", CreateMode::EphemeralSequential);
        let Ok(me) = call(&shared, index, &client, "create", create).await else {
            sleep(ERROR_BACKOFF).await;
            continue;
        };
        let my_name = me.trim_start_matches("/lock/").to_owned();
        while !*stop.borrow() {
            let Ok(mut children) =
                call(&shared, index, &client, "list", client.children("/lock")).await
            else {
                break;
            };
            // A create of ours whose reply was lost (the server died with it
            // in flight) may be applied after we listed and created again:
            // that node, not held by anyone, would block us and all behind.
            let orphans: Vec<String> = children
                .iter()
                .filter(|child| child.starts_with(&prefix) && **child != my_name)
                .map(|child| format!("/lock/{child}"))
                .collect();
            if !orphans.is_empty() {
                for orphan in &orphans {
                    let delete = client.delete(orphan, None);
                    let _ = call(&shared, index, &client, "delete an orphan", delete).await;
                }
                continue;
            }
            children.sort_by_key(|child| sequence(child));
            let Some(position) = children.iter().position(|child| *child == my_name) else {
                // Our node is gone: the session was closed under us.
                break;
            };
            let mut state = client.state();
            if position == 0 {
                let (start, long) = {
                    let mut board = board(&shared);
                    if *state.borrow() != State::Connected {
                        break;
                    }
                    let long = std::mem::take(&mut board.long_next);
                    board.holder = Some(Holder {
                        locker: index,
                        long,
                        via: client.server(),
                    });
                    (Instant::now(), long)
                };
                let hold = if long {
                    2 * T
                } else {
                    Duration::from_millis(20 + rng() % (MAX_HOLD.as_millis() as u64 - 20))
                };
                let ended_by = tokio::select! {
                    () = sleep(hold) => "released".to_owned(),
                    changed = state.wait_for(|state| *state != State::Connected) => {
                        format!("{:?}", changed.map(|state| *state))
                    }
                };
                {
                    // The end is taken, and the board cleared, before the
                    // delete leaves.
                    let mut board = board(&shared);
                    board.holder = None;
                    let end = Instant::now();
                    board.holds.push(Hold {
                        locker: index,
                        session,
                        node: my_name.clone(),
                        start,
                        end,
                        ended_by,
                    });
                }
                let _ = call(&shared, index, &client, "release", client.delete(&me, None)).await;
                break;
            }
            let predecessor = format!("/lock/{}", children[position - 1]);
            let watching = client.exists_and_watch(&predecessor);
            match call(&shared, index, &client, "watch", watching).await {
                Ok((None, _)) => continue,
                Ok((Some(_), watch)) => {
                    doing(&shared, index, format!("waiting on {predecessor}"));
                    tokio::select! {
                        _ = watch => {}
                        _ = state.wait_for(|state| *state != State::Connected) => break,
                        () = sleep(T) => {}
                    }
                }
                Err(_) => break,
            }
        }
    }
    doing(&shared, index, "closing".to_owned());
    client.close().await;
    doing(&shared, index, "done".to_owned());
}

/// A tiny xorshift, so hold times vary without another dependency.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Each locker reaches each server through a proxy of its own, so one
/// locker can be silenced, and its server found.
struct LockerLinks {
    /// `proxies[locker][server - 1]`.
    proxies: Vec<Vec<LinkProxy>>,
}

impl LockerLinks {
    fn new(cluster: &Cluster) -> LockerLinks {
        LockerLinks {
            proxies: (0..LOCKERS)
                .map(|_| IDS.iter().map(|&id| cluster.client_proxy(id)).collect())
                .collect(),
        }
    }

    fn connect_string(&self, locker: usize) -> String {
        self.proxies[locker]
            .iter()
            .map(|proxy| proxy.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn set(&self, locker: usize, fault: Fault) {
        for proxy in &self.proxies[locker] {
            proxy.set(fault);
        }
    }

    /// The server behind `locker`'s proxy at `addr`.
    fn server_of(&self, locker: usize, addr: SocketAddr) -> Option<u32> {
        self.proxies[locker]
            .iter()
            .zip(IDS)
            .find_map(|(proxy, id)| (proxy.addr() == addr).then_some(id))
    }
}

/// Gives the next holder the long turn and waits (at most [`PATIENCE`])
/// until it holds.
async fn long_holder(shared: &Shared) -> Holder {
    board(shared).long_next = true;
    let started = Instant::now();
    loop {
        if let Some(holder) = board(shared).holder.filter(|holder| holder.long) {
            return holder;
        }
        assert!(started.elapsed() < PATIENCE, "nobody took the long turn");
        sleep(Duration::from_millis(2)).await;
    }
}

/// [`LOCKERS`] clients contend for a lock built from ephemeral-sequential
/// nodes while the cluster goes through, [`CALM`] apart: a follower cut
/// from the leader ([`FAULT`] long); the server of the current holder
/// SIGKILLed (restarted after [`FAULT`]); a holder on a long turn silenced
/// (its links hold every byte) for T + 1.5 s; the leader cut from both
/// others ([`FAULT`]); the leader SIGKILLed (restarted after [`FAULT`]).
///
/// The two holders hit on purpose are on a "long turn" (holding 2 T unless
/// their client leaves Connected), so only the fault can end their hold.
///
/// Bound: no two recorded holds overlap (each from the holder's sight of
/// its node lowest to its release or its sight of a state other than
/// Connected, on one monotonic clock); the holder whose server died stops
/// by a state change; the silenced holder stops by a state change at most
/// 2/3·T + [`SUSPEND_SLACK`] after the silence began, and another locker
/// holds the lock before the silence ends (the silent session expired T
/// after its last message); at least [`MIN_ACQUISITIONS`] holds in all,
/// and one after the last fault ended; every call of a locker is answered
/// or fails within [`CALL_BOUND`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_of_ephemeral_sequential_nodes_is_never_held_twice_under_faults() {
    let _serial = serial().await;
    let mut cluster = Cluster::start("lock").await;
    {
        let setup = connect(&cluster.connect_string(), 99).await;
        setup
            .create("/lock", b"", CreateMode::Persistent)
            .await
            .expect("create /lock");
        setup.close().await;
    }
    let links = LockerLinks::new(&cluster);
    let shared: Shared = Arc::default();
    let (stop, stopped) = watch::channel(false);
    let lockers: Vec<_> = (0..LOCKERS)
        .map(|index| {
            tokio::spawn(locker(
                index,
                links.connect_string(index),
                stopped.clone(),
                Arc::clone(&shared),
            ))
        })
        .collect();
    let mut faults = Vec::new();
    sleep(CALM).await;

    let leader = cluster.leader().await;
    let follower = cluster.a_follower(leader);
    faults.push(format!("cut {follower} from leader {leader}"));
    cluster.partition(follower, leader);
    sleep(FAULT).await;
    cluster.heal();
    sleep(CALM).await;

    // The server of a holder on a long turn dies under it: it must stop
    // at once (its connection breaks).
    let holder = long_holder(&shared).await;
    let victim = holder.locker;
    let victim_server = holder
        .via
        .and_then(|via| links.server_of(victim, via))
        .expect("a holder is connected");
    let killed = cluster.kill(victim_server);
    faults.push(format!("kill server {victim_server} under holder {victim}"));
    sleep(FAULT).await;
    cluster.restart(victim_server);
    cluster.ready().await;
    sleep(CALM).await;

    // A holder on a long turn goes silent: it must stop at Suspended, and
    // the lock moves on once its session expired.
    let silent = long_holder(&shared).await.locker;
    let silenced = Instant::now();
    links.set(silent, SILENCE);
    crate::support::note(&format!("silence locker {silent}"));
    faults.push(format!("silence holder {silent}"));
    sleep_until(silenced + T + Duration::from_millis(1500)).await;
    // Cut what was held (its bytes are lost), then let it talk again.
    links.set(silent, Fault::Drop);
    sleep(Duration::from_millis(50)).await;
    links.set(silent, Fault::Pass);
    let silence_over = Instant::now();
    sleep(CALM).await;

    let leader = cluster.leader().await;
    faults.push(format!("isolate leader {leader}"));
    cluster.isolate(leader);
    sleep(FAULT).await;
    cluster.heal();
    sleep(CALM).await;

    let leader = cluster.leader().await;
    faults.push(format!("kill leader {leader}"));
    cluster.kill(leader);
    sleep(FAULT).await;
    cluster.restart(leader);
    let last_fault_over = Instant::now();
    cluster.ready().await;
    sleep(CALM).await;

    let stopping = board(&shared).doing.clone();
    stop.send_replace(true);
    for locker in lockers {
        let stopped = timeout(PATIENCE, locker).await;
        assert!(
            stopped.is_ok(),
            "a locker still runs {PATIENCE:?} after the stop: {:#?}\n{}",
            board(&shared).doing,
            cluster.logs(20)
        );
        assert!(
            stopped.is_ok_and(|joined| joined.is_ok()),
            "no locker panicked"
        );
    }
    let unanswered = board(&shared).unanswered.clone();
    assert!(
        unanswered.is_empty(),
        "calls neither answered nor failed within {CALL_BOUND:?}: {unanswered:#?}\n{}",
        cluster.logs(20)
    );

    let mut holds = board(&shared).holds.clone();
    holds.sort_by_key(|hold| hold.start);
    let mut latest: Option<&Hold> = None;
    for hold in &holds {
        if let Some(before) = latest {
            assert!(
                before.end <= hold.start,
                "two holders at once (faults: {faults:?}):\n  {before:?}\n  {hold:?}\n  overlap {:?}\n{}",
                before.end - hold.start,
                cluster.logs(20)
            );
        }
        if latest.is_none_or(|before| hold.end > before.end) {
            latest = Some(hold);
        }
    }
    let cut_short = holds
        .iter()
        .filter(|hold| hold.ended_by != "released")
        .count();
    eprintln!(
        "{} holds ({cut_short} cut short by a state change) through {faults:?}",
        holds.len()
    );

    let held_at = |locker: usize, at: Instant| {
        holds
            .iter()
            .find(|hold| hold.locker == locker && hold.start <= at && at <= hold.end)
    };
    let killed_hold = held_at(victim, killed).expect("the victim held when its server died");
    assert_ne!(
        killed_hold.ended_by, "released",
        "the holder whose server died stopped by a state change: {killed_hold:?}"
    );
    let silent_hold = held_at(silent, silenced).expect("the silenced locker held");
    assert_ne!(
        silent_hold.ended_by, "released",
        "the silenced holder stopped by a state change: {silent_hold:?}"
    );
    let bound = two_thirds(T) + SUSPEND_SLACK;
    assert!(
        silent_hold.end - silenced <= bound,
        "the silenced holder held {:?} into its silence, bound {bound:?}",
        silent_hold.end - silenced
    );
    let next = holds
        .iter()
        .find(|hold| hold.start > silent_hold.end && hold.locker != silent);
    assert!(
        next.is_some_and(|hold| hold.start < silence_over),
        "another locker took the lock during the silence (after the silent session expired, \
         T + tick = {:?} after its last message): next hold {:?} after the silence began",
        T + TICK,
        next.map(|hold| hold.start - silenced)
    );
    eprintln!(
        "silenced holder stopped {:?} into its silence ({:?}); the next took the lock {:?} into it",
        silent_hold.end - silenced,
        silent_hold.ended_by,
        next.map(|hold| hold.start - silenced)
    );
    assert!(
        holds.len() >= MIN_ACQUISITIONS,
        "only {} holds through {faults:?}",
        holds.len()
    );
    assert!(
        holds.iter().any(|hold| hold.start >= last_fault_over),
        "no hold after the last fault; the lockers when stopped: {stopping:#?}\n{}",
        cluster.logs(20)
    );
}
