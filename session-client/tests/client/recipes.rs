//! The recipes against an in-process server: a lock's order, exclusion,
//! fencing tokens and validity; a lost create's node found again; leader
//! election with takeover on a closed and on an expired session; a
//! membership's joins and leaves; barriers.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use session_client::recipes::{
    Barrier, DoubleBarrier, LeaderElection, Lock, MemberEvent, Membership, NodeLayout,
};
use session_client::{Client, Error, State};

use crate::support::{PATIENCE, Proxy, connect, connect_to, eventually, next_state, start};

/// A client whose session has timeout `timeout`, through `proxy`.
async fn through(proxy: &Proxy, timeout: Duration) -> Client {
    connect_to(&proxy.addr().to_string(), timeout).await
}

/// Runs `future` within `PATIENCE`.
async fn soon<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("not within {PATIENCE:?}: {what}"))
}

/// Whether `future` is still pending after `wait`.
async fn still_pending<T>(future: &mut (impl Future<Output = T> + Unpin), wait: Duration) -> bool {
    tokio::time::timeout(wait, future).await.is_err()
}

#[tokio::test]
async fn a_lock_is_exclusive_first_come_first_served_and_fenced() {
    let server = start().await;
    let (a, b, c) = (
        connect(&server).await,
        connect(&server).await,
        connect(&server).await,
    );
    let lock_a = Lock::new(&a, "/locks/db").data("a");
    let lock_b = Lock::new(&b, "/locks/db").data("b");
    // kazoo's names in the same queue as Curator's.
    let lock_c = Lock::new(&c, "/locks/db/")
        .data("c")
        .layout(NodeLayout::Kazoo);

    let first = lock_a.acquire().await.expect("a free lock");
    assert!(first.is_valid());
    let name = first.node().rsplit('/').next().expect("a name");
    assert!(
        name.starts_with("_c_") && name.len() == 3 + 36 + 1 + 5 + 10 && name.contains("-lock-"),
        "Curator's protected name: {name}"
    );
    assert!(lock_b.try_acquire().await.expect("try").is_none(), "held");
    assert!(
        lock_b
            .acquire_timeout(Duration::from_millis(200))
            .await
            .expect("timeout")
            .is_none()
    );
    assert_eq!(
        b.children("/locks/db").await.expect("children").len(),
        1,
        "a failed try leaves no node"
    );

    let mut second = Box::pin(lock_b.acquire());
    assert!(still_pending(&mut second, Duration::from_millis(100)).await);
    let mut third = Box::pin(lock_c.acquire());
    assert!(still_pending(&mut third, Duration::from_millis(100)).await);
    let queue = lock_a.contenders().await.expect("contenders");
    let data: Vec<&[u8]> = queue.iter().map(|p| &p.data[..]).collect();
    assert_eq!(data, [&b"a"[..], b"b", b"c"], "in order of arrival");
    assert_eq!(queue[0].token, first.token());
    assert!(queue[2].node.contains("__lock__"), "{}", queue[2].node);

    let first_token = first.token();
    first.release().await.expect("release");
    let second = soon("b gets the lock", second).await.expect("b");
    assert!(
        still_pending(&mut third, Duration::from_millis(100)).await,
        "one holder at a time"
    );
    assert!(second.token() > first_token, "fencing tokens grow");
    let second_token = second.token();
    drop(second); // releases in the background
    let third = soon("c gets the lock", third).await.expect("c");
    assert!(third.token() > second_token);
    third.release().await.expect("release");
    assert!(
        a.children("/locks/db")
            .await
            .map_or(true, |children| children.is_empty()),
        "no node left"
    );
    // A cancelled acquire leaves no node either.
    let held = lock_a.acquire().await.expect("free again");
    let mut cancelled = Box::pin(lock_b.acquire());
    assert!(still_pending(&mut cancelled, Duration::from_millis(100)).await);
    drop(cancelled);
    eventually("the cancelled contender's node is deleted", async || {
        a.children("/locks/db").await.expect("children").len() == 1
    })
    .await;
    held.release().await.expect("release");
}

#[tokio::test]
async fn a_suspended_holder_is_invalid_before_the_next_one_holds_the_lock() {
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let timeout = Duration::from_secs(1);
    let holder = through(&proxy, timeout).await;
    let next = connect_to(&server.local_addr().to_string(), timeout).await;
    let guard = Lock::new(&holder, "/l").acquire().await.expect("the lock");
    let mut validity = guard.validity();
    assert!(*validity.borrow());
    let waiting = tokio::spawn(async move {
        let guard = Lock::new(&next, "/l").acquire().await.expect("next");
        (Instant::now(), guard.token(), next, guard)
    });

    // Nothing from the server reaches the holder any more; its pings still
    // reach the server, which keeps its session alive until the client,
    // suspended, gives up on it.
    proxy.hold();
    soon("invalid", validity.wait_for(|valid| !valid))
        .await
        .expect("the guard lives");
    let invalid_at = Instant::now();
    assert_eq!(*holder.state().borrow(), State::Suspended);
    assert!(!guard.is_valid());
    let (acquired_at, token, _next, _guard) = soon("the next holder", waiting).await.expect("task");
    assert!(
        invalid_at < acquired_at,
        "the old holder stopped before the new one started"
    );
    assert!(token > guard.token());
    proxy.cut();
}

#[tokio::test]
async fn a_guard_turns_invalid_when_its_node_is_deleted_and_stays_invalid() {
    let server = start().await;
    let client = connect(&server).await;
    let other = connect(&server).await;
    let guard = Lock::new(&client, "/l").acquire().await.expect("lock");
    other
        .delete(guard.node(), None)
        .await
        .expect("deleted by hand");
    soon("invalid", guard.lost()).await;
    assert!(!guard.is_valid());

    // A short cut: the session survives, the guard does not.
    let proxy = Proxy::start(server.local_addr()).await;
    let client = through(&proxy, Duration::from_secs(2)).await;
    let mut events = client.events();
    let guard = Lock::new(&client, "/m").acquire().await.expect("lock");
    proxy.cut();
    assert_eq!(next_state(&mut events).await, State::Suspended);
    proxy.restore();
    assert_eq!(next_state(&mut events).await, State::Connected);
    assert!(!guard.is_valid(), "the session was in doubt");
    assert!(
        other.exists(guard.node()).await.expect("exists").is_some(),
        "the node lives with the session"
    );
    let node = guard.node().to_owned();
    guard.release().await.expect("release");
    assert_eq!(other.exists(&node).await.expect("exists"), None);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_finds_its_node_again() {
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = through(&proxy, Duration::from_secs(1)).await;
    let observer = connect(&server).await;
    let mut events = client.events();
    observer
        .create("/l", b"", session_client::CreateMode::Persistent)
        .await
        .expect("parent");
    // The create reaches the server; its answer does not come back.
    proxy.hold();
    let lock = Lock::new(&client, "/l");
    let acquiring = tokio::spawn(async move { lock.acquire().await });
    eventually("the node is created", async || {
        observer.children("/l").await.expect("children").len() == 1
    })
    .await;
    assert_eq!(next_state(&mut events).await, State::Suspended);
    proxy.cut();
    proxy.restore();
    assert_eq!(next_state(&mut events).await, State::Connected);
    let guard = soon("acquired", acquiring)
        .await
        .expect("task")
        .expect("lock");
    let children = observer.children("/l").await.expect("children");
    assert_eq!(children.len(), 1, "no orphan: {children:?}");
    assert!(guard.node().ends_with(&children[0]));
}

#[tokio::test]
async fn one_leader_at_a_time_and_the_next_takes_over_when_its_session_ends() {
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let timeout = Duration::from_secs(1);
    let a = connect_to(&server.local_addr().to_string(), timeout).await;
    let b = through(&proxy, timeout).await;
    let c = connect_to(&server.local_addr().to_string(), timeout).await;
    let observer = LeaderElection::new(&connect(&server).await, "/election");
    assert_eq!(observer.leader().await.expect("leader"), None);

    let leader_a = LeaderElection::new(&a, "/election")
        .id("a")
        .campaign()
        .await
        .expect("a leads");
    assert!(leader_a.node().contains("-latch-"), "{}", leader_a.node());
    let b_election = LeaderElection::new(&b, "/election").id("b");
    let mut b_campaign = Box::pin(b_election.campaign());
    assert!(still_pending(&mut b_campaign, Duration::from_millis(100)).await);
    let c_election = LeaderElection::new(&c, "/election").id("c");
    let mut c_campaign = Box::pin(c_election.campaign());
    assert!(still_pending(&mut c_campaign, Duration::from_millis(100)).await);
    let ids: Vec<_> = observer
        .participants()
        .await
        .expect("participants")
        .into_iter()
        .map(|p| p.data)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);

    // a's session closes: b takes over, not c.
    a.close().await;
    assert!(!leader_a.is_valid());
    let leader_b = soon("b leads", &mut b_campaign).await.expect("b");
    assert!(still_pending(&mut c_campaign, Duration::from_millis(100)).await);
    assert!(leader_b.token() > leader_a.token());
    assert_eq!(
        observer.leader().await.expect("leader").map(|p| p.data),
        Some("b".into())
    );

    // b is cut off: it stops leading at once, c leads once the server has
    // expired b's session.
    proxy.cut();
    soon("b steps down", leader_b.lost()).await;
    let b_stopped = Instant::now();
    let leader_c = soon("c leads", &mut c_campaign).await.expect("c");
    let c_started = Instant::now();
    assert!(b_stopped < c_started);
    assert!(leader_c.token() > leader_b.token());
    assert!(leader_c.is_valid());
    leader_c.resign().await.expect("resign");
    assert_eq!(observer.leader().await.expect("leader"), None);
    // The kazoo layout names nodes as kazoo's Election does.
    let kazoo = LeaderElection::new(&c, "/kazoo-election")
        .layout(NodeLayout::Kazoo)
        .campaign()
        .await
        .expect("leads");
    assert!(kazoo.node().contains("__lock__"), "{}", kazoo.node());
}

#[tokio::test]
async fn a_membership_sees_joins_and_leaves_including_an_expired_member() {
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let watcher = connect(&server).await;
    let a = connect(&server).await;
    let b = through(&proxy, Duration::from_secs(1)).await;
    let group = Membership::new(&watcher, "/services/web");
    assert_eq!(group.members().await.expect("members"), []);

    let a_joined = Membership::new(&a, "/services/web")
        .join("a", b"10.0.0.1:80")
        .await
        .expect("a joins");
    let mut changes = group.watch();
    let next = async |changes: &mut session_client::recipes::MemberWatch| {
        soon("a change", changes.next())
            .await
            .expect("the stream goes on")
            .expect("no error")
    };
    match next(&mut changes).await {
        MemberEvent::Joined(member) => {
            assert_eq!(
                (member.id.as_str(), &member.data[..]),
                ("a", &b"10.0.0.1:80"[..])
            );
            assert_eq!(member.stat.ephemeral_owner, a.session_id().as_u64());
        }
        other => panic!("{other:?}"),
    }
    let _b_joined = Membership::new(&b, "/services/web")
        .join("b", b"10.0.0.2:80")
        .await
        .expect("b joins");
    assert!(matches!(next(&mut changes).await, MemberEvent::Joined(m) if m.id == "b"));
    let ids: Vec<String> = group
        .members()
        .await
        .expect("members")
        .into_iter()
        .map(|member| member.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(matches!(
        Membership::new(&watcher, "/services/web")
            .join("a", b"")
            .await,
        Err(Error::NodeExists { .. })
    ));
    assert!(matches!(
        group.join("x/y", b"").await,
        Err(Error::InvalidPath { .. })
    ));

    a_joined.leave().await.expect("a leaves");
    assert_eq!(next(&mut changes).await, MemberEvent::Left("a".into()));
    // b is cut off and not heard from again: it leaves when its session
    // expires.
    proxy.cut();
    let cut_at = Instant::now();
    assert_eq!(next(&mut changes).await, MemberEvent::Left("b".into()));
    assert!(cut_at.elapsed() >= Duration::from_millis(900), "at expiry");
    assert_eq!(group.members().await.expect("members"), []);
}

#[tokio::test]
async fn a_barrier_holds_waiters_until_removed() {
    let server = start().await;
    let coordinator = connect(&server).await;
    let barrier = Barrier::new(&coordinator, "/barriers/start");
    barrier.wait().await.expect("no barrier, no wait");
    barrier.set().await.expect("set");
    barrier.set().await.expect("set twice");
    assert!(barrier.is_set().await.expect("is set"));
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let client = connect(&server).await;
        waiters.push(tokio::spawn(async move {
            Barrier::new(&client, "/barriers/start").wait().await
        }));
    }
    assert!(
        !barrier
            .wait_timeout(Duration::from_millis(200))
            .await
            .expect("wait")
    );
    assert!(waiters.iter().all(|waiter| !waiter.is_finished()));
    barrier.remove().await.expect("remove");
    for waiter in waiters {
        soon("released", waiter)
            .await
            .expect("task")
            .expect("waited");
    }
    barrier.remove().await.expect("remove twice");
}

#[tokio::test]
async fn a_double_barrier_lets_members_in_and_out_together() {
    let server = start().await;
    let observer = connect(&server).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        let client = connect(&server).await;
        members.push(DoubleBarrier::new(&client, "/barriers/round", 3));
    }
    let mut entering: Vec<_> = members[..2]
        .iter()
        .cloned()
        .map(|member| tokio::spawn(async move { member.enter().await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(entering.iter().all(|task| !task.is_finished()), "2 of 3");
    let last = members[2].clone();
    entering.push(tokio::spawn(async move { last.enter().await }));
    for task in entering {
        soon("entered", task).await.expect("task").expect("enter");
    }
    assert!(
        observer
            .exists("/barriers/round/ready")
            .await
            .expect("exists")
            .is_some()
    );

    let first = members[0].clone();
    let mut leaving = vec![tokio::spawn(async move { first.leave().await })];
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!leaving[0].is_finished(), "the others are still in");
    for member in members.drain(1..) {
        leaving.push(tokio::spawn(async move { member.leave().await }));
    }
    for task in leaving {
        soon("left", task).await.expect("task").expect("leave");
    }
    assert_eq!(
        observer.children("/barriers/round").await.map(|c| c.len()),
        Ok(0)
    );
}
