//! Connection loss, reattach, failover, expiry, refused passwords and
//! handshake replies in a protocol version the client does not speak.
//!
//! Every client here has a random seed (printed; `SESSION_TEST_SEED`
//! replays one), and the timing tests run with the smallest session timeout
//! the test servers grant (4 ticks, 200 ms) and the largest (2 s). Each
//! asserts the bound it relies on, measured from the fault.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use session_client::{Client, CreateMode, Error, EventKind, SessionPassword, State};
use session_wire::v1::{HandshakeReply, SessionGranted, handshake_reply};
use tokio::net::TcpListener;

use crate::support::{
    self, FakeServer, MAX_TIMEOUT, PATIENCE, Proxy, SLACK, TICK, TIMEOUTS, client_via, connect,
    start, start_on, state_within, within,
};

/// The longest a client waits between losing its only server's connection
/// and trying again once that server answers: a random wait under T/10,
/// and T/10 more after each full round of failed attempts (reference
/// "Heartbeats and the client", scaled to the session: min(1 s, T/10)).
fn retry_bound(timeout: Duration) -> Duration {
    timeout / 5
}

/// How long a server behind the zxid a client has seen waits to catch up
/// before answering its handshake (session-server's `CATCH_UP_WAIT`).
const CATCH_UP_WAIT: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_cut_shorter_than_the_timeout_keeps_the_session_and_its_watches() {
    for timeout in TIMEOUTS {
        cut_shorter_than_the_timeout(timeout).await;
    }
}

async fn cut_shorter_than_the_timeout(timeout: Duration) {
    // Reference "Heartbeats and the client": after losing its server the
    // client reattaches with the same id and password while the server
    // still holds the session. The server expires it T after the last frame
    // it heard, at least 2/3·T after the cut (the client pings every T/3);
    // the client is back within T/8 (the outage) + T/5 (its waits).
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = client_via(&proxy, timeout).await;
    assert_eq!(client.negotiated_timeout(), timeout);
    let direct = connect(&server).await;
    let id = client.session_id();
    client
        .create("/lock", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    direct
        .create("/config", b"v1", CreateMode::Persistent)
        .await
        .expect("config");
    let (_, _, config_changed) = client.get_and_watch("/config").await.expect("watch");
    let (_, untouched) = client.exists_and_watch("/other").await.expect("watch");
    let mut events = client.events();

    let cut = Instant::now();
    proxy.cut();
    // The proxy closes the connection: the client notices at once.
    let (state, after) = state_within(&mut events, cut, SLACK).await;
    assert_eq!(state, State::Suspended, "T {timeout:?}");
    eprintln!("T {timeout:?}: Suspended {after:?} after the cut (bound {SLACK:?})");
    // While cut off: the change fires the watch on the server with no
    // connection to deliver it to.
    direct.set("/config", b"v2", None).await.expect("set");
    assert_eq!(
        client.get("/config").await.map(|_| ()),
        Err(Error::ConnectionLoss)
    );
    tokio::time::sleep((timeout / 8).saturating_sub(cut.elapsed())).await;
    let restored = Instant::now();
    proxy.restore();
    let bound = retry_bound(timeout) + SLACK;
    let (state, after) = state_within(&mut events, restored, bound).await;
    assert_eq!(state, State::Connected, "T {timeout:?}");
    eprintln!("T {timeout:?}: Connected {after:?} after the restore (bound {bound:?})");

    assert_eq!(client.session_id(), id, "same session");
    let (_, stat) = direct.get("/lock").await.expect("the ephemeral survived");
    assert_eq!(stat.ephemeral_owner, id.as_u64());
    // Reference "States and events": SetWatches with the last zxid seen
    // fires at once the watches whose node changed meanwhile.
    let event = tokio::time::timeout(SLACK, config_changed)
        .await
        .expect("fired at once after the reattach")
        .expect("event");
    assert_eq!(
        (event.kind, event.path.as_str()),
        (EventKind::NodeDataChanged, "/config")
    );
    // The other watch was set again and still works.
    direct
        .create("/other", b"", CreateMode::Persistent)
        .await
        .expect("create");
    let event = tokio::time::timeout(PATIENCE, untouched)
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(event.kind, EventKind::NodeCreated);
    assert_eq!(
        client.get("/config").await.map(|(d, _)| d.to_vec()),
        Ok(b"v2".to_vec())
    );
    server.shutdown().await;
}

#[tokio::test]
async fn in_flight_requests_fail_with_connection_loss() {
    for timeout in TIMEOUTS {
        in_flight_requests_are_lost(timeout).await;
    }
}

async fn in_flight_requests_are_lost(timeout: Duration) {
    const CALLS: usize = 20;
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = client_via(&proxy, timeout).await;
    let mut events = client.events();
    assert_eq!(server.node_count(), 1, "only the root");

    // From here on no answer reaches the client, though its requests reach
    // the server: every request sent now stays in flight until the client
    // drops the connection, because of the cut below or, with a short
    // timeout, because it heard nothing for 2/3·T. Either way by 2/3·T
    // after the last frame it heard, which came before the hold.
    let held = Instant::now();
    proxy.hold();
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let path = format!("/n{i}");
                let result = client.create(&path, b"", CreateMode::Persistent).await;
                (path, result)
            })
        })
        .collect();
    let read_timeout = timeout * 2 / 3;
    within(
        held,
        read_timeout + SLACK,
        "the server applied every create",
        async || server.node_count() == 1 + CALLS,
    )
    .await;
    proxy.cut();

    let mut last_ended = Duration::ZERO;
    for call in calls {
        let (path, result) = tokio::time::timeout_at((held + read_timeout + SLACK).into(), call)
            .await
            .unwrap_or_else(|_| panic!("every call ends within 2/3·T + {SLACK:?} of the hold"))
            .expect("task");
        assert_eq!(
            result,
            Err(Error::ConnectionLoss),
            "{path}: no reply reached the client, every call in flight is lost"
        );
        last_ended = last_ended.max(held.elapsed());
    }
    eprintln!(
        "T {timeout:?}: {CALLS} calls in flight lost by {last_ended:?} after the hold (bound {:?})",
        read_timeout + SLACK
    );
    let (state, _) = state_within(&mut events, held, read_timeout + SLACK).await;
    assert_eq!(state, State::Suspended);
    proxy.restore();
    let (state, _) = state_within(&mut events, Instant::now(), retry_bound(timeout) + SLACK).await;
    assert_eq!(state, State::Connected, "T {timeout:?}");

    // ConnectionLoss means "maybe applied": here the server applied them all.
    let created = client.children("/").await.expect("children");
    assert_eq!(
        created.len(),
        CALLS,
        "every create was applied: {created:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_cut_longer_than_the_timeout_expires_the_session() {
    for timeout in TIMEOUTS {
        cut_longer_than_the_timeout(timeout).await;
    }
}

async fn cut_longer_than_the_timeout(timeout: Duration) {
    // Reference: after 4/3·T without any server the client declares the
    // session expired itself (ZOOKEEPER-4508); the server expired it after
    // T (at most a tick late) and deleted its ephemerals.
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = client_via(&proxy, timeout).await;
    let direct = connect(&server).await;
    client
        .create("/lock", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let (_, _, watch) = client.get_and_watch("/lock").await.expect("watch");
    let mut events = client.events();

    // The last frame either side hears is after `heard` and before `cut`.
    client.exists("/").await.expect("round trip");
    let heard = Instant::now();
    proxy.cut();
    let cut = Instant::now();
    // Measured beside the client's states: the server acts before 4/3·T.
    let server_expiry = tokio::spawn({
        let direct = direct.clone();
        async move {
            while direct.exists("/lock").await != Ok(None) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            cut.elapsed()
        }
    });
    let (state, _) = state_within(&mut events, cut, SLACK).await;
    assert_eq!(state, State::Suspended);
    let expiry = timeout * 4 / 3;
    let (state, after) = state_within(&mut events, heard, expiry + SLACK).await;
    assert_eq!(state, State::Expired, "T {timeout:?}");
    assert!(after >= expiry - (cut - heard), "not early: {after:?}");
    eprintln!(
        "T {timeout:?}: Expired {after:?} after the last frame heard (bound {:?})",
        expiry + SLACK
    );
    assert_eq!(
        tokio::time::timeout(SLACK, events.next()).await,
        Ok(None),
        "terminal: the stream ends"
    );
    let deleted = tokio::time::timeout(PATIENCE, server_expiry)
        .await
        .expect("the server expires the session")
        .expect("the server's expiry is measured");
    // The server expires a session T after the last frame it heard, at
    // most a tick late (reference "Expiry (server)").
    let bound = timeout + TICK + SLACK;
    eprintln!(
        "T {timeout:?}: the server deleted the ephemeral {deleted:?} after the cut (bound {bound:?})"
    );
    assert!(
        deleted <= bound,
        "the server expired the session {deleted:?} after the cut, bound T + a tick + {SLACK:?} = {bound:?}"
    );
    proxy.restore();
    assert_eq!(client.get("/").await, Err(Error::SessionExpired));
    assert_eq!(
        client.create("/x", b"", CreateMode::Persistent).await,
        Err(Error::SessionExpired)
    );
    assert_eq!(watch.await, Err(Error::SessionExpired));
    assert_eq!(*client.state().borrow(), State::Expired);
    server.shutdown().await;
}

/// A server going down: it accepts connections and closes them at once,
/// counting them.
struct Closing {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Closing {
    async fn start() -> Closing {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = {
            let accepted = Arc::clone(&accepted);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
            })
        };
        Closing {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn fails_over_to_the_second_server_when_the_first_is_down() {
    let down = Closing::start().await;
    let server = start().await;
    // Random seeds: clients until one has tried the server that is down
    // first (half of them do).
    let mut tried_down_first = false;
    for _ in 0..20 {
        let before = down.accepted.load(Ordering::SeqCst);
        let asked = Instant::now();
        let client = Client::builder()
            .servers(format!("{},{}", down.addr, server.local_addr()))
            .session_timeout(MAX_TIMEOUT)
            .rng_seed(support::seed())
            .connect_timeout(PATIENCE)
            .connect()
            .await
            .expect("connects to the live server");
        // One failed attempt, then a wait under T/10 (no full round yet).
        let took = asked.elapsed();
        assert!(
            took <= MAX_TIMEOUT / 10 + SLACK,
            "connected after {took:?}, bound T/10 + {SLACK:?}"
        );
        assert_eq!(client.server(), Some(server.local_addr()));
        match client.create("/up", b"", CreateMode::Persistent).await {
            Ok(_) | Err(Error::NodeExists { .. }) => {}
            Err(other) => panic!("create on the live server: {other}"),
        }
        client.close().await;
        if down.accepted.load(Ordering::SeqCst) > before {
            tried_down_first = true;
            break;
        }
    }
    assert!(tried_down_first, "no client tried the server that is down");
    server.shutdown().await;
}

#[tokio::test]
async fn a_restarted_server_reports_the_session_expired() {
    // Reference "Known failures": a reattach must keep the id or say Expired,
    // never carry on silently with a new session.
    let server = start().await;
    let addr = server.local_addr();
    let client = connect(&server).await;
    client
        .create("/e", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let mut events = client.events();

    // The server tells its clients it is going away as it shuts down.
    let stopping = Instant::now();
    server.shutdown().await;
    let (state, _) = state_within(&mut events, stopping, stopping.elapsed() + SLACK).await;
    assert_eq!(state, State::Suspended);
    let restarted = start_on(addr).await;
    let up = Instant::now();
    // The client tries again within T/5; the restarted server, behind the
    // zxid the client has seen, waits for up to 500 ms to catch up before
    // it answers that the session is unknown.
    let bound = retry_bound(MAX_TIMEOUT) + CATCH_UP_WAIT + SLACK;
    let (state, after) = state_within(&mut events, up, bound).await;
    assert_eq!(state, State::Expired);
    eprintln!("Expired {after:?} after the restart (bound {bound:?})");
    assert_eq!(client.exists("/e").await, Err(Error::SessionExpired));
    assert_eq!(
        restarted.session_count(),
        0,
        "no new session was opened silently"
    );
    restarted.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_auth_failed() {
    let server = start().await;
    let owner = connect(&server).await;
    let result = Client::builder()
        .servers(server.local_addr().to_string())
        .session(owner.session_id(), SessionPassword::from_bytes([0; 16]))
        .connect_timeout(PATIENCE)
        .connect()
        .await;
    assert!(matches!(result, Err(Error::AuthFailed)), "{result:?}");
    // The owner is not disturbed.
    assert!(owner.exists("/").await.expect("exists").is_some());

    // A session the server does not hold: expired at once.
    let result = Client::builder()
        .servers(server.local_addr().to_string())
        .session(
            session_client::SessionId::from_u64(0x0100_0000_0000_0001),
            owner.password(),
        )
        .connect()
        .await;
    assert!(matches!(result, Err(Error::SessionExpired)), "{result:?}");
    server.shutdown().await;
}

/// The session id the fake server grants: never one a real test server
/// (server id 1) hands out.
const FAKE_SESSION: u64 = 0x6300_0000_0000_0001;

/// A reply granting a well-formed session, in `protocol_version`.
fn granted_in(protocol_version: u32) -> HandshakeReply {
    HandshakeReply {
        protocol_version,
        outcome: Some(handshake_reply::Outcome::Granted(SessionGranted {
            negotiated_timeout_ms: 2000,
            session_id: FAKE_SESSION,
            password: Bytes::from_static(&[7; 16]),
            server_id: 0x63,
            reattached: false,
            zxid: 0,
        })),
    }
}

#[tokio::test]
async fn a_handshake_reply_in_an_unknown_protocol_version_is_refused() {
    // The fake grants a session: only its protocol version is wrong.
    let fake = FakeServer::start(granted_in(99)).await;

    // Alone, it never gets the client Connected: the client notes why and
    // tries again (after a full cycle, 200-400 ms later) until the deadline.
    let alone = Client::builder()
        .servers(fake.addr().to_string())
        .session_timeout(MAX_TIMEOUT)
        .connect_timeout(Duration::from_millis(1000))
        .rng_seed(support::seed())
        .connect()
        .await;
    match alone {
        Err(Error::Timeout {
            last_error: Some(last_error),
            ..
        }) => assert!(last_error.contains("protocol version 99"), "{last_error}"),
        other => panic!("expected a timeout naming version 99, got {other:?}"),
    }
    assert!(
        fake.handshakes() >= 2,
        "tried again: {} handshakes",
        fake.handshakes()
    );

    // With a real server second in the connect string, the client moves on
    // to it and is Connected there, with the real server's session. Random
    // seeds: clients until one has tried the fake first (half of them do).
    let server = start().await;
    let mut tried_fake_first = false;
    for _ in 0..20 {
        let before = fake.handshakes();
        let client = Client::builder()
            .servers(format!("{},{}", fake.addr(), server.local_addr()))
            .session_timeout(MAX_TIMEOUT)
            .rng_seed(support::seed())
            .connect_timeout(PATIENCE)
            .connect()
            .await
            .expect("connects to the real server");
        assert!(
            fake.handshakes() <= before + 1,
            "the fake tried once at most"
        );
        assert_ne!(client.session_id().as_u64(), FAKE_SESSION);
        assert_eq!(client.session_id().server_id(), 1, "the real server's");
        assert_eq!(*client.state().borrow(), State::Connected);
        match client.create("/up", b"", CreateMode::Persistent).await {
            Ok(_) | Err(Error::NodeExists { .. }) => {}
            Err(other) => panic!("create on the real server: {other}"),
        }
        client.close().await;
        if fake.handshakes() == before + 1 {
            tried_fake_first = true;
            break;
        }
    }
    assert!(tried_fake_first, "no client tried the fake first");
    assert_eq!(server.session_count(), 0, "every client closed its session");
    server.shutdown().await;
}
