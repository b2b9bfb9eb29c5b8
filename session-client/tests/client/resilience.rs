//! What applications build on a session under faults: waiting until
//! connected, per-request deadlines, retrying, protected creates found again
//! after a lost answer, a close that reaches a server while suspended,
//! dropped watches removed from the server, and automatic renewal. Each
//! fault test names the bound it holds and asserts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use session_client::{
    ClientBuilder, CreateMode, Error, RetryPolicy, State, WatcherType, protected_id,
    strip_protected_prefix,
};

use crate::support::{
    self, MAX_TIMEOUT, MIN_TIMEOUT, PATIENCE, Proxy, SLACK, TICK, connect, start, state_within,
    within,
};

/// The longest a client waits before trying its only server again after
/// losing it: under T/10, and T/10 more after each full round.
fn retry_bound(timeout: Duration) -> Duration {
    timeout / 5
}

fn builder_via(proxy: &Proxy, timeout: Duration) -> ClientBuilder {
    support::builder_of(&proxy.addr().to_string(), timeout)
}

/// Lets connections through `proxy` again after `after`.
fn restore_after(proxy: &Arc<Proxy>, after: Duration) -> tokio::task::JoinHandle<()> {
    let proxy = Arc::clone(proxy);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        proxy.restore();
    })
}

#[tokio::test]
async fn wait_connected_waits_for_the_reconnect_or_its_timeout() {
    let server = start().await;
    let proxy = Arc::new(Proxy::start(server.local_addr()).await);
    let client = builder_via(&proxy, MAX_TIMEOUT)
        .connect()
        .await
        .expect("connect");
    let asked = Instant::now();
    assert_eq!(client.wait_connected(Duration::ZERO).await, Ok(()));
    assert!(asked.elapsed() < SLACK, "at once when connected");

    let mut events = client.events();
    proxy.cut();
    let (state, _) = state_within(&mut events, Instant::now(), SLACK).await;
    assert_eq!(state, State::Suspended);
    let asked = Instant::now();
    let waited = client.wait_connected(Duration::from_millis(50)).await;
    let took = asked.elapsed();
    match waited {
        Err(Error::Timeout {
            after,
            last_error: Some(_),
        }) => assert_eq!(after, Duration::from_millis(50)),
        other => panic!("expected a timeout naming the last error, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(50) && took <= Duration::from_millis(50) + SLACK,
        "gave up after {took:?}, bound 50 ms + {SLACK:?}"
    );

    // Back 100 ms from now: the client is connected within T/5 of that.
    let restore = Duration::from_millis(100);
    let restoring = restore_after(&proxy, restore);
    let asked = Instant::now();
    assert_eq!(client.wait_connected(PATIENCE).await, Ok(()));
    let took = asked.elapsed();
    let bound = restore + retry_bound(MAX_TIMEOUT) + SLACK;
    eprintln!("connected again {took:?} after asking (bound {bound:?})");
    assert!(took <= bound, "connected after {took:?}, bound {bound:?}");
    restoring.await.expect("restored");

    client.close().await;
    assert_eq!(
        client.wait_connected(PATIENCE).await,
        Err(Error::Closed),
        "at once once the session is over"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_past_its_deadline_fails_alone_and_the_session_carries_on() {
    const DEADLINE: Duration = Duration::from_millis(100);
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = builder_via(&proxy, MAX_TIMEOUT)
        .request_timeout(DEADLINE)
        .connect()
        .await
        .expect("connect");
    assert_eq!(client.request_timeout(), Some(DEADLINE));
    let id = client.session_id();
    let mut events = client.events();

    // Nothing moves for 300 ms, well under 2/3·T: the connection is kept.
    let stalled = Instant::now();
    proxy.stall();
    let patient = client.with_timeout(PATIENCE);
    let waiting = tokio::spawn(async move { patient.get("/").await });
    let asked = Instant::now();
    let late = client.get("/").await;
    let took = asked.elapsed();
    assert_eq!(
        late.map(|_| ()),
        Err(Error::RequestTimeout { after: DEADLINE })
    );
    eprintln!("RequestTimeout after {took:?} (deadline {DEADLINE:?}, bound + {SLACK:?})");
    assert!(
        took >= DEADLINE && took <= DEADLINE + SLACK,
        "failed after {took:?}, bound the deadline {DEADLINE:?} + {SLACK:?}"
    );
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(stalled.elapsed())).await;
    proxy.restore();

    // The call with the longer deadline gets its answer once bytes move.
    let answered = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("answered")
        .expect("task");
    assert!(answered.is_ok(), "{answered:?}");
    assert_eq!(
        client.get("/").await.map(|_| ()),
        Ok(()),
        "the late answer was absorbed"
    );
    assert_eq!(client.session_id(), id, "same session");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), events.next())
            .await
            .is_err(),
        "no state change: the connection carried on"
    );
    assert_eq!(*client.state().borrow(), State::Connected);
    server.shutdown().await;
}

#[tokio::test]
async fn retry_retries_connection_loss_until_the_client_is_back() {
    let server = start().await;
    let proxy = Arc::new(Proxy::start(server.local_addr()).await);
    let client = builder_via(&proxy, MAX_TIMEOUT)
        .connect()
        .await
        .expect("connect");
    client
        .create("/config", b"v1", CreateMode::Persistent)
        .await
        .expect("create");

    let mut events = client.events();
    let cut = Instant::now();
    proxy.cut();
    let (state, _) = state_within(&mut events, cut, SLACK).await;
    assert_eq!(state, State::Suspended);
    let restore = Duration::from_millis(150);
    let restoring = restore_after(&proxy, restore);
    let attempts = AtomicU32::new(0);
    let got = client
        .retry(&RetryPolicy::new(PATIENCE), || {
            attempts.fetch_add(1, Ordering::SeqCst);
            client.get("/config")
        })
        .await;
    let took = cut.elapsed();
    assert_eq!(got.map(|(data, _)| data.to_vec()), Ok(b"v1".to_vec()));
    let bound = restore + retry_bound(MAX_TIMEOUT) + SLACK;
    eprintln!(
        "retry succeeded {took:?} after the cut, {} attempts (bound {bound:?})",
        attempts.load(Ordering::SeqCst)
    );
    assert!(took <= bound, "retried until {took:?}, bound {bound:?}");
    assert!(
        attempts.load(Ordering::SeqCst) >= 2,
        "the first attempt was lost"
    );
    restoring.await.expect("restored");
    let (state, _) = state_within(&mut events, cut, bound).await;
    assert_eq!(state, State::Connected);

    // Not retried: an answer.
    let attempts = AtomicU32::new(0);
    let missing = client
        .retry(&RetryPolicy::default(), || {
            attempts.fetch_add(1, Ordering::SeqCst);
            client.get("/missing")
        })
        .await;
    assert!(matches!(missing, Err(Error::NoNode { .. })), "{missing:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);

    // The policy gives up with the last error at its deadline.
    proxy.cut();
    let (state, _) = state_within(&mut events, Instant::now(), SLACK).await;
    assert_eq!(state, State::Suspended);
    let asked = Instant::now();
    let policy = RetryPolicy::new(Duration::from_millis(300));
    let gave_up = client.retry(&policy, || client.get("/config")).await;
    let took = asked.elapsed();
    assert_eq!(gave_up.map(|_| ()), Err(Error::ConnectionLoss));
    assert!(
        took <= Duration::from_millis(300) + SLACK,
        "gave up after {took:?}, bound 300 ms + {SLACK:?}"
    );
    // And after its attempt limit: requests timing out on a stalled
    // connection, which stays up (the stall is far shorter than 2/3·T).
    let restored = Instant::now();
    proxy.restore();
    let (state, _) = state_within(&mut events, restored, retry_bound(MAX_TIMEOUT) + SLACK).await;
    assert_eq!(state, State::Connected);
    proxy.stall();
    let impatient = client.with_timeout(Duration::from_millis(30));
    let attempts = AtomicU32::new(0);
    let limited = impatient
        .retry(&RetryPolicy::new(PATIENCE).max_attempts(3), || {
            attempts.fetch_add(1, Ordering::SeqCst);
            impatient.get("/config")
        })
        .await;
    proxy.restore();
    assert_eq!(
        limited.map(|_| ()),
        Err(Error::RequestTimeout {
            after: Duration::from_millis(30)
        })
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(*client.state().borrow(), State::Connected);
    server.shutdown().await;
}

#[tokio::test]
async fn a_protected_create_whose_answer_is_lost_is_found_again() {
    // The create reaches the server and is applied, its answer never
    // reaches the client: the client finds its node by the uuid in its name
    // instead of leaving an orphan that blocks every other contender.
    let server = start().await;
    let proxy = Arc::new(Proxy::start(server.local_addr()).await);
    let client = builder_via(&proxy, MAX_TIMEOUT)
        .connect()
        .await
        .expect("connect");
    let direct = connect(&server).await;
    direct
        .create("/locks", b"", CreateMode::Persistent)
        .await
        .expect("parent");
    let nodes = server.node_count();

    proxy.hold();
    let creating = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .create_protected("/locks/lock-", b"me", CreateMode::EphemeralSequential)
                .await
        }
    });
    let held = Instant::now();
    within(held, SLACK, "the server applied the create", async || {
        server.node_count() == nodes + 1
    })
    .await;
    assert!(!creating.is_finished(), "no answer got through the hold");
    let cut = Instant::now();
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.restore();

    let created = tokio::time::timeout(PATIENCE, creating)
        .await
        .expect("the create ends")
        .expect("task")
        .expect("found again");
    let took = cut.elapsed();
    let bound = Duration::from_millis(50) + retry_bound(MAX_TIMEOUT) + SLACK;
    eprintln!("protected create found again {took:?} after the cut (bound {bound:?})");
    assert!(took <= bound, "found after {took:?}, bound {bound:?}");

    let name = created.strip_prefix("/locks/").expect("under the parent");
    assert!(protected_id(name).is_some(), "{created}");
    let rest = strip_protected_prefix(name);
    assert!(
        rest.len() == "lock-".len() + 10 && rest.starts_with("lock-"),
        "{created}"
    );
    assert_eq!(
        direct.children("/locks").await,
        Ok(vec![name.to_owned()]),
        "one node: no orphan, no duplicate"
    );
    let (data, stat) = direct.get(&created).await.expect("the node");
    assert_eq!(&data[..], b"me");
    assert_eq!(stat.ephemeral_owner, client.session_id().as_u64());

    // Without a fault: the same layout at once.
    let second = client
        .create_protected("/locks/lock-", b"", CreateMode::EphemeralSequential)
        .await
        .expect("create");
    assert!(second.starts_with("/locks/_c_"), "{second}");
    assert_ne!(
        protected_id(&second[7..]),
        protected_id(name),
        "a uuid per call"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn close_while_suspended_reaches_the_server_as_soon_as_one_answers() {
    let server = start().await;
    let proxy = Arc::new(Proxy::start(server.local_addr()).await);
    let client = builder_via(&proxy, MAX_TIMEOUT)
        .connect()
        .await
        .expect("connect");
    let direct = connect(&server).await;
    client
        .create("/lock", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    assert_eq!(server.session_count(), 2);
    let mut events = client.events();

    proxy.cut();
    let (state, _) = state_within(&mut events, Instant::now(), SLACK).await;
    assert_eq!(state, State::Suspended);
    // The proxy is back 100 ms into the close: the close reaches the server
    // within T/5 of that, far sooner than the session's expiry (T = 2 s).
    let restore = Duration::from_millis(100);
    let restoring = restore_after(&proxy, restore);
    let asked = Instant::now();
    client.close().await;
    let took = asked.elapsed();
    let bound = restore + retry_bound(MAX_TIMEOUT) + SLACK;
    eprintln!("close returned {took:?} after asking while suspended (bound {bound:?})");
    assert!(took <= bound, "closed after {took:?}, bound {bound:?}");
    assert_eq!(
        server.session_count(),
        1,
        "the server closed the session when close() returned"
    );
    assert_eq!(
        direct.exists("/lock").await,
        Ok(None),
        "its ephemeral is gone"
    );
    assert_eq!(*client.state().borrow(), State::Closed);
    let (state, _) = state_within(&mut events, asked, bound).await;
    assert_eq!(state, State::Closed, "no Connected reported on the way");
    restoring.await.expect("restored");

    // No server answers: close() gives up at its deadline, and the server
    // expires the session later.
    let closing = builder_via(&proxy, MAX_TIMEOUT)
        .close_timeout(Duration::from_millis(300))
        .connect()
        .await
        .expect("connect");
    let mut events = closing.events();
    proxy.cut();
    let (state, _) = state_within(&mut events, Instant::now(), SLACK).await;
    assert_eq!(state, State::Suspended);
    let asked = Instant::now();
    closing.close().await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took <= Duration::from_millis(300) + SLACK,
        "gave up after {took:?}, bound the close timeout 300 ms + {SLACK:?}"
    );
    assert_eq!(*closing.state().borrow(), State::Closed);
    assert_eq!(server.session_count(), 2, "left for the server to expire");
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_a_watch_removes_it_from_the_server() {
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = builder_via(&proxy, MAX_TIMEOUT)
        .connect()
        .await
        .expect("connect");
    client
        .create("/w", b"", CreateMode::Persistent)
        .await
        .expect("create");

    // Requests from one client are answered in order: the removal sent on
    // drop is done when the next check is answered.
    let (_, _, data) = client.get_and_watch("/w").await.expect("watch");
    let (_, children) = client.children_and_watch("/w").await.expect("watch");
    assert_eq!(
        client.check_watches("/w", WatcherType::Data).await,
        Ok(true)
    );
    assert_eq!(server.watch_count(), 2);
    drop(data);
    assert_eq!(
        client.check_watches("/w", WatcherType::Data).await,
        Ok(false)
    );
    assert_eq!(
        client.check_watches("/w", WatcherType::Children).await,
        Ok(true)
    );
    drop(children);
    assert_eq!(
        client.check_watches("/w", WatcherType::Children).await,
        Ok(false)
    );
    assert_eq!(server.watch_count(), 0);

    // Two watches on one path: the server's goes with the last of them.
    let (_, _, first) = client.get_and_watch("/w").await.expect("watch");
    let (_, second) = client.exists_and_watch("/w").await.expect("watch");
    drop(first);
    assert_eq!(
        client.check_watches("/w", WatcherType::Data).await,
        Ok(true)
    );
    drop(second);
    assert_eq!(
        client.check_watches("/w", WatcherType::Data).await,
        Ok(false)
    );

    // An exist watch on a missing node.
    let (_, creation) = client.exists_and_watch("/missing").await.expect("watch");
    assert_eq!(
        client.check_watches("/missing", WatcherType::Data).await,
        Ok(true)
    );
    drop(creation);
    assert_eq!(
        client.check_watches("/missing", WatcherType::Data).await,
        Ok(false)
    );

    // A fired watch needs no removal, and still resolves.
    let (_, _, fired) = client.get_and_watch("/w").await.expect("watch");
    client.set("/w", b"x", None).await.expect("set");
    assert!(fired.await.is_ok());

    // A watching read that timed out: its watch is set by the late answer,
    // and removed again then.
    proxy.stall();
    let gave_up = client
        .with_timeout(Duration::from_millis(50))
        .get_and_watch("/w")
        .await;
    assert!(
        matches!(gave_up, Err(Error::RequestTimeout { .. })),
        "{gave_up:?}"
    );
    proxy.restore();
    let mut removed = false;
    for _ in 0..20 {
        if client.check_watches("/w", WatcherType::Data).await == Ok(false) {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(removed, "the late watch was removed once its answer came");
    assert_eq!(server.watch_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn auto_renew_opens_a_new_session_after_expiry() {
    let timeout = MIN_TIMEOUT;
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = builder_via(&proxy, timeout)
        .auto_renew(true)
        .connect()
        .await
        .expect("connect");
    let direct = connect(&server).await;
    let old = client.session_id();
    client
        .create("/me", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let mut renewals = client.renewals();
    let mut events = client.events();

    client.exists("/").await.expect("round trip");
    let heard = Instant::now();
    proxy.cut();
    let (state, _) = state_within(&mut events, heard, SLACK).await;
    assert_eq!(state, State::Suspended);
    let expiry = timeout * 4 / 3;
    let (state, after) = state_within(&mut events, heard, expiry + SLACK).await;
    assert_eq!(state, State::Expired);
    eprintln!(
        "Expired {after:?} after the last frame heard (bound {:?})",
        expiry + SLACK
    );
    // Calls between the expiry and the new session fail, without waiting.
    match client.create("/other", b"", CreateMode::Persistent).await {
        Err(Error::SessionExpired | Error::ConnectionLoss) => {}
        other => panic!("the old session's calls fail: {other:?}"),
    }
    let (state, _) = state_within(&mut events, heard, expiry + SLACK).await;
    assert_eq!(state, State::Connecting, "a new session is on its way");

    let restored = Instant::now();
    proxy.restore();
    // A new session tries again within T/5 (T requested: 200 ms).
    let bound = retry_bound(timeout) + SLACK;
    let (state, after) = state_within(&mut events, restored, bound).await;
    assert_eq!(state, State::Connected);
    eprintln!("renewed session connected {after:?} after the restore (bound {bound:?})");
    let renewed = tokio::time::timeout(SLACK, renewals.next())
        .await
        .expect("the renewal is reported")
        .expect("a new session id");
    assert_ne!(renewed, old);
    assert_eq!(client.session_id(), renewed);
    within(
        heard,
        timeout + TICK + SLACK,
        "the server expired the old session: T + a tick after the last frame",
        async || direct.exists("/me").await == Ok(None),
    )
    .await;
    // The owner of the ephemeral creates it again.
    client
        .create("/me", b"", CreateMode::Ephemeral)
        .await
        .expect("created again");
    let (_, stat) = direct.get("/me").await.expect("the new ephemeral");
    assert_eq!(stat.ephemeral_owner, renewed.as_u64());
    assert_eq!(client.wait_connected(Duration::ZERO).await, Ok(()));
    server.shutdown().await;
}

#[tokio::test]
async fn an_auto_renewed_client_joins_its_membership_again() {
    let timeout = MIN_TIMEOUT;
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = builder_via(&proxy, timeout)
        .auto_renew(true)
        .connect()
        .await
        .expect("connect");
    let direct = connect(&server).await;
    let group = session_client::recipes::Membership::new(&client, "/svc");
    let _registration = group.join("me", b"10.0.0.1:80").await.expect("joined");
    let mut renewals = client.renewals();

    client.exists("/").await.expect("round trip");
    let heard = Instant::now();
    proxy.cut();
    // The server expires the old session: the member is gone.
    within(
        heard,
        timeout + TICK + SLACK,
        "the member goes with the old session: T + a tick after the last frame",
        async || direct.exists("/svc/me").await == Ok(None),
    )
    .await;
    proxy.restore();
    let renewed = tokio::time::timeout(timeout * 2 + SLACK, renewals.next())
        .await
        .expect("renewed in time")
        .expect("a new session id");
    // Joined again, under the new session, without being asked.
    let back = Instant::now();
    within(
        back,
        SLACK,
        "the registration joins again under the renewed session",
        async || {
            direct
                .exists("/svc/me")
                .await
                .ok()
                .flatten()
                .is_some_and(|stat| stat.ephemeral_owner == renewed.as_u64())
        },
    )
    .await;
    let (data, _) = direct.get("/svc/me").await.expect("read");
    assert_eq!(&data[..], b"10.0.0.1:80");
}
