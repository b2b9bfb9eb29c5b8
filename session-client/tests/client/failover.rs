//! Connection loss, reattach, failover, expiry, refused passwords and
//! handshake replies in a protocol version the client does not speak.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use session_client::{Client, CreateMode, Error, EventKind, SessionPassword, State};
use session_wire::v1::{HandshakeReply, SessionGranted, handshake_reply};

use crate::support::{
    self, FakeServer, MAX_TIMEOUT, PATIENCE, Proxy, connect, dead_addr, next_state, plan, start,
    start_on,
};

#[tokio::test]
async fn a_cut_shorter_than_the_timeout_keeps_the_session_and_its_watches() {
    // Reference "Heartbeats and the client": after losing its server the
    // client reattaches with the same id and password while the server
    // still holds the session. The seed makes the first reattach attempt
    // come 150-200 ms after the cut (the client waits up to T/10 = 200 ms):
    // after the proxy is back (some 50 ms), well before the server's expiry
    // (T = 2 s after the last ping, >= 1.33 s).
    let seed = support::seed_with_retry_in(Duration::from_millis(150)..Duration::from_millis(200));
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = Client::builder()
        .servers(proxy.addr().to_string())
        .session_timeout(MAX_TIMEOUT)
        .rng_seed(seed)
        .connect()
        .await
        .expect("connect through the proxy");
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

    proxy.cut();
    // While cut off: the change fires the watch on the server with no
    // connection to deliver it to.
    direct.set("/config", b"v2", None).await.expect("set");
    assert_eq!(next_state(&mut events).await, State::Suspended);
    assert_eq!(
        client.get("/config").await.map(|_| ()),
        Err(Error::ConnectionLoss)
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.restore();
    assert_eq!(next_state(&mut events).await, State::Connected);

    assert_eq!(client.session_id(), id, "same session");
    let (_, stat) = direct.get("/lock").await.expect("the ephemeral survived");
    assert_eq!(stat.ephemeral_owner, id.as_u64());
    // Reference "States and events": SetWatches with the last zxid seen
    // fires at once the watches whose node changed meanwhile.
    let event = tokio::time::timeout(PATIENCE, config_changed)
        .await
        .expect("fired after the reattach")
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
    const CALLS: usize = 20;
    let seed = support::seed_with_retry_in(Duration::from_millis(100)..Duration::from_millis(400));
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = Client::builder()
        .servers(proxy.addr().to_string())
        .session_timeout(MAX_TIMEOUT)
        .rng_seed(seed)
        .connect()
        .await
        .expect("connect");
    let mut events = client.events();
    let nodes_before = server.node_count();
    assert_eq!(nodes_before, 1, "only the root");

    // From here on no answer reaches the client, though its requests reach
    // the server: every request sent now stays in flight until the cut.
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
    // Wait until the server has applied every create (and answered into the
    // void), well before the client would suspend itself (2/3 of 2 s).
    support::eventually("the server applied every create", async || {
        server.node_count() == nodes_before + CALLS
    })
    .await;
    assert!(
        calls.iter().all(|call| !call.is_finished()),
        "no answer got through the hold"
    );
    assert_eq!(*client.state().borrow(), State::Connected);
    proxy.cut();

    let (mut ok, mut lost) = (Vec::new(), 0);
    for call in calls {
        let (path, result) = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("every call ends once the connection is cut")
            .expect("task");
        match result {
            Ok(created) => ok.push(created),
            Err(Error::ConnectionLoss) => lost += 1,
            Err(other) => panic!("{path}: unexpected {other}"),
        }
    }
    assert_eq!(lost + ok.len(), CALLS, "every call answered once");
    assert_eq!(
        lost, CALLS,
        "no reply reached the client: every call in flight is lost"
    );
    assert_eq!(next_state(&mut events).await, State::Suspended);
    proxy.restore();
    assert_eq!(next_state(&mut events).await, State::Connected);

    // ConnectionLoss means "maybe applied": here the server applied them all.
    let created = client.children("/").await.expect("children");
    assert_eq!(
        created.len(),
        server.node_count() - 1,
        "the client sees what the server applied (all but the root)"
    );
    assert!(
        (ok.len()..=CALLS).contains(&created.len()),
        "{} created, {} ok, {lost} lost",
        created.len(),
        ok.len()
    );
    assert_eq!(
        created.len(),
        CALLS,
        "every create was applied: {created:?}"
    );
    for path in &ok {
        assert!(
            client.exists(path).await.expect("exists").is_some(),
            "{path} returned Ok but does not exist"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_cut_longer_than_the_timeout_expires_the_session() {
    // Reference: after 4/3·T without any server the client declares the
    // session expired itself (ZOOKEEPER-4508); the server expired it after T
    // and deleted its ephemerals.
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = Client::builder()
        .servers(proxy.addr().to_string())
        .session_timeout(Duration::from_millis(600))
        .rng_seed(3)
        .connect()
        .await
        .expect("connect");
    let direct = connect(&server).await;
    client
        .create("/lock", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let (_, _, watch) = client.get_and_watch("/lock").await.expect("watch");
    let mut events = client.events();

    proxy.cut();
    assert_eq!(next_state(&mut events).await, State::Suspended);
    assert_eq!(next_state(&mut events).await, State::Expired);
    assert_eq!(
        tokio::time::timeout(PATIENCE, events.next()).await,
        Ok(None),
        "terminal: the stream ends"
    );
    support::eventually("the server expired the session", async || {
        direct.exists("/lock").await == Ok(None)
    })
    .await;
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

#[tokio::test]
async fn fails_over_to_the_second_server_when_the_first_is_down() {
    let dead = dead_addr().await;
    let server = start().await;
    // A seed that tries the dead server (index 0) first.
    let seed = (0..100)
        .find(|&seed| plan(2, seed).0[0] == 0)
        .expect("some seed orders the dead host first");
    let client = Client::builder()
        .servers(format!("{dead},{}", server.local_addr()))
        .session_timeout(MAX_TIMEOUT)
        .rng_seed(seed)
        .connect_timeout(PATIENCE)
        .connect()
        .await
        .expect("connects to the live server");
    assert_eq!(server.session_count(), 1);
    assert_eq!(
        client.create("/up", b"", CreateMode::Persistent).await,
        Ok("/up".to_owned())
    );
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

    server.shutdown().await;
    assert_eq!(next_state(&mut events).await, State::Suspended);
    let restarted = start_on(addr).await;
    assert_eq!(next_state(&mut events).await, State::Expired);
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
    // tries again (after a full cycle, 1-2 s later) until the deadline.
    let alone = Client::builder()
        .servers(fake.addr().to_string())
        .session_timeout(MAX_TIMEOUT)
        .connect_timeout(Duration::from_millis(2500))
        .rng_seed(1)
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
    // to it and is Connected there, with the real server's session.
    let server = start().await;
    let seed = (0..100)
        .find(|&seed| plan(2, seed).0[0] == 0)
        .expect("some seed orders the fake host first");
    let before = fake.handshakes();
    let client = Client::builder()
        .servers(format!("{},{}", fake.addr(), server.local_addr()))
        .session_timeout(MAX_TIMEOUT)
        .rng_seed(seed)
        .connect_timeout(PATIENCE)
        .connect()
        .await
        .expect("connects to the real server");
    assert_eq!(fake.handshakes(), before + 1, "the fake was tried first");
    assert_ne!(client.session_id().as_u64(), FAKE_SESSION);
    assert_eq!(client.session_id().server_id(), 1, "the real server's");
    assert_eq!(server.session_count(), 1);
    assert_eq!(*client.state().borrow(), State::Connected);
    assert_eq!(
        client.create("/up", b"", CreateMode::Persistent).await,
        Ok("/up".to_owned())
    );
    server.shutdown().await;
}
