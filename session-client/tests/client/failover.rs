//! Connection loss, reattach, failover, expiry and refused passwords.

use std::time::Duration;

use futures_util::StreamExt;

use session_client::{Client, CreateMode, Error, EventKind, SessionPassword, State};

use crate::support::{
    self, MAX_TIMEOUT, PATIENCE, Proxy, connect, dead_addr, next_state, plan, start, start_on,
};

#[tokio::test]
async fn a_cut_shorter_than_the_timeout_keeps_the_session_and_its_watches() {
    // Reference "Heartbeats and the client": after losing its server the
    // client reattaches with the same id and password while the server
    // still holds the session. The seed makes the first reattach attempt
    // come 400-900 ms after the cut: after the proxy is back (200 ms), well
    // before the server's expiry (T = 2 s after the last ping, >= 1.33 s).
    let seed = support::seed_with_retry_in(Duration::from_millis(400)..Duration::from_millis(900));
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.restore();
    assert_eq!(next_state(&mut events).await, State::Connected);

    assert_eq!(client.session_id(), id, "same session");
    let (_, stat) = direct.get("/lock").await.expect("the ephemeral survived");
    assert_eq!(stat.ephemeral_owner, Some(id));
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
    let seed = support::seed_with_retry_in(Duration::from_millis(100)..Duration::from_millis(900));
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
    // Requests queued behind a cut never get an answer from that connection.
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .create(&format!("/n{i}"), b"", CreateMode::Persistent)
                    .await
            })
        })
        .collect();
    proxy.cut();
    let mut lost = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => {}
            Err(Error::ConnectionLoss) => lost += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(next_state(&mut events).await, State::Suspended);
    proxy.restore();
    assert_eq!(next_state(&mut events).await, State::Connected);
    // Some may have been applied before the cut: ConnectionLoss means "maybe".
    let created = client.children("/").await.expect("children").len();
    assert!(
        created <= 20 && lost <= 20,
        "{created} created, {lost} lost"
    );
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
