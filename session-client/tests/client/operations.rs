//! Establishing a session, every operation, chroot, watches and close.

use std::time::Duration;

use session_client::{Client, CreateMode, Error, EventKind, State};

use crate::support::{self, PATIENCE, connect, connect_to, next_state, start};

#[tokio::test]
async fn establishes_a_session_with_the_negotiated_timeout() {
    let server = start().await;
    // Reference "Timeout negotiation": the request is clamped into the
    // server's bounds (here 200 ms ..= 2 s).
    let client = connect_to(&server.local_addr().to_string(), Duration::from_secs(30)).await;
    assert_eq!(*client.state().borrow(), State::Connected);
    assert_eq!(client.negotiated_timeout(), Duration::from_secs(2));
    assert_eq!(client.session_id().server_id(), 1);
    assert_eq!(server.session_count(), 1);

    let small = connect_to(&server.local_addr().to_string(), Duration::from_millis(10)).await;
    assert_eq!(small.negotiated_timeout(), Duration::from_millis(200));
    assert_ne!(small.session_id(), client.session_id());
    server.shutdown().await;
}

#[tokio::test]
async fn the_session_outlives_idle_periods_by_pinging() {
    let server = start().await;
    let client = connect_to(&server.local_addr().to_string(), Duration::from_millis(300)).await;
    let mut events = client.events();
    // Four timeouts of silence from the application: pings keep it alive.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(*client.state().borrow(), State::Connected);
    assert!(client.exists("/").await.expect("exists").is_some());
    assert!(
        tokio::time::timeout(Duration::from_millis(10), next_state(&mut events))
            .await
            .is_err(),
        "no state change while idle"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn every_operation_and_its_errors() {
    let server = start().await;
    let client = connect(&server).await;

    assert_eq!(
        client.create("/a", b"one", CreateMode::Persistent).await,
        Ok("/a".to_owned())
    );
    assert!(matches!(
        client.create("/a", b"", CreateMode::Persistent).await,
        Err(Error::NodeExists { .. })
    ));
    assert!(matches!(
        client
            .create("/missing/child", b"", CreateMode::Persistent)
            .await,
        Err(Error::NoNode { .. })
    ));

    let (data, stat) = client.get("/a").await.expect("get");
    assert_eq!(&data[..], b"one");
    assert_eq!(stat.version, 0);
    assert_eq!(stat.data_length, 3);
    assert_eq!(stat.ephemeral_owner, 0, "persistent");

    let stat = client
        .set("/a", b"two", Some(0))
        .await
        .expect("set at version 0");
    assert_eq!(stat.version, 1);
    assert!(matches!(
        client.set("/a", b"three", Some(0)).await,
        Err(Error::BadVersion { .. })
    ));
    assert_eq!(
        client.set("/a", b"three", None).await.map(|s| s.version),
        Ok(2)
    );

    assert_eq!(
        client.exists("/a").await.map(|s| s.map(|s| s.version)),
        Ok(Some(2))
    );
    assert_eq!(client.exists("/nope").await, Ok(None));

    for name in ["c", "a", "b"] {
        client
            .create(&format!("/a/{name}"), b"", CreateMode::Persistent)
            .await
            .expect("create child");
    }
    assert_eq!(
        client.children("/a").await,
        Ok(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
    assert!(matches!(
        client.children("/nope").await,
        Err(Error::NoNode { .. })
    ));

    let first = client
        .create("/a/job-", b"", CreateMode::PersistentSequential)
        .await
        .expect("sequential");
    let second = client
        .create("/a/job-", b"", CreateMode::PersistentSequential)
        .await
        .expect("sequential");
    assert!(
        first.starts_with("/a/job-") && first.len() == "/a/job-".len() + 10,
        "{first}"
    );
    assert!(second > first, "{second} after {first}");

    let ephemeral = client
        .create("/e", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let (_, stat) = client.get(&ephemeral).await.expect("get ephemeral");
    assert_eq!(stat.ephemeral_owner, client.session_id().as_u64());
    assert!(matches!(
        client.create("/e/child", b"", CreateMode::Persistent).await,
        Err(Error::NoChildrenForEphemerals { .. })
    ));
    let sequential = client
        .create("/e-", b"", CreateMode::EphemeralSequential)
        .await
        .expect("ephemeral sequential");
    assert!(sequential.starts_with("/e-"));

    assert!(matches!(
        client.delete("/a", None).await,
        Err(Error::NotEmpty { .. })
    ));
    assert!(matches!(
        client.delete("/a/a", Some(5)).await,
        Err(Error::BadVersion { .. })
    ));
    assert_eq!(client.delete("/a/a", Some(0)).await, Ok(()));
    assert!(matches!(
        client.delete("/a/a", None).await,
        Err(Error::NoNode { .. })
    ));

    // Reference "Connect string": path rules, checked before sending.
    for bad in ["relative", "/trailing/", "/a//b", "/a/./b", "/a/../b"] {
        assert!(
            matches!(client.get(bad).await, Err(Error::InvalidPath { ref path, .. }) if path == bad),
            "{bad}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_chroot_is_applied_and_stripped() {
    let server = start().await;
    let plain = connect(&server).await;
    plain
        .create("/app", b"", CreateMode::Persistent)
        .await
        .expect("create the chroot");
    let rooted = connect_to(
        &format!("{}/app", server.local_addr()),
        Duration::from_secs(2),
    )
    .await;

    assert_eq!(
        rooted.create("/x", b"hi", CreateMode::Persistent).await,
        Ok("/x".to_owned())
    );
    assert_eq!(
        plain.get("/app/x").await.map(|(d, _)| d.to_vec()),
        Ok(b"hi".to_vec())
    );
    assert_eq!(rooted.children("/").await, Ok(vec!["x".to_owned()]));
    let sequential = rooted
        .create("/x/n-", b"", CreateMode::PersistentSequential)
        .await
        .expect("sequential under the chroot");
    assert!(sequential.starts_with("/x/n-"), "{sequential}");

    let (_, _, watch) = rooted.get_and_watch("/x").await.expect("watch");
    plain.set("/app/x", b"new", None).await.expect("set");
    let event = tokio::time::timeout(PATIENCE, watch)
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(event.kind, EventKind::NodeDataChanged);
    assert_eq!(event.path, "/x", "the chroot is stripped from event paths");
    server.shutdown().await;
}

#[tokio::test]
async fn watches_fire_once_for_each_kind_of_change() {
    let server = start().await;
    let watcher = connect(&server).await;
    let writer = connect(&server).await;
    let wait = |watch: session_client::Watch| async move {
        tokio::time::timeout(PATIENCE, watch)
            .await
            .expect("event in time")
            .expect("event")
    };

    // exists on a missing node: fired by its creation.
    let (stat, created) = watcher.exists_and_watch("/w").await.expect("exists");
    assert_eq!(stat, None);
    writer
        .create("/w", b"1", CreateMode::Persistent)
        .await
        .expect("create");
    let event = wait(created).await;
    assert_eq!(
        (event.kind, event.path.as_str()),
        (EventKind::NodeCreated, "/w")
    );

    // get: fired by a data change.
    let (_, _, changed) = watcher.get_and_watch("/w").await.expect("get");
    writer.set("/w", b"2", None).await.expect("set");
    assert_eq!(wait(changed).await.kind, EventKind::NodeDataChanged);

    // children: fired by a child's creation.
    let (children, child_added) = watcher.children_and_watch("/w").await.expect("children");
    assert!(children.is_empty());
    writer
        .create("/w/c", b"", CreateMode::Persistent)
        .await
        .expect("create child");
    assert_eq!(wait(child_added).await.kind, EventKind::NodeChildrenChanged);

    // exists on an existing node and get: both fired by its deletion.
    let (stat, deleted) = watcher.exists_and_watch("/w/c").await.expect("exists");
    assert!(stat.is_some());
    let (_, _, deleted_too) = watcher.get_and_watch("/w/c").await.expect("get");
    writer.delete("/w/c", None).await.expect("delete");
    assert_eq!(wait(deleted).await.kind, EventKind::NodeDeleted);
    assert_eq!(wait(deleted_too).await.kind, EventKind::NodeDeleted);

    // A watch on a missing node's data is refused with the read.
    assert!(matches!(
        watcher.get_and_watch("/none").await,
        Err(Error::NoNode { .. })
    ));

    // One-shot: a second change does not fire a consumed watch; the watcher's
    // own writes fire its own watches too.
    let (_, _, again) = watcher.get_and_watch("/w").await.expect("get");
    watcher.set("/w", b"3", None).await.expect("set");
    writer.set("/w", b"4", None).await.expect("set");
    let event = wait(again).await;
    assert_eq!(event.kind, EventKind::NodeDataChanged);
    server.shutdown().await;
}

#[tokio::test]
async fn close_deletes_ephemerals_and_later_calls_fail_with_closed() {
    let server = start().await;
    let owner = connect(&server).await;
    let observer = connect(&server).await;
    owner
        .create("/service", b"10.0.0.1:80", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let (_, gone) = observer.exists_and_watch("/service").await.expect("watch");
    let (_, _, owners_watch) = owner.get_and_watch("/service").await.expect("watch");
    let mut events = owner.events();

    owner.close().await;
    // close() returns once the server closed the session: the node is gone now.
    assert_eq!(observer.exists("/service").await, Ok(None));
    let event = tokio::time::timeout(PATIENCE, gone)
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(event.kind, EventKind::NodeDeleted);
    assert_eq!(next_state(&mut events).await, State::Closed);
    assert_eq!(owner.get("/").await, Err(Error::Closed));
    assert_eq!(owners_watch.await, Err(Error::Closed));
    owner.close().await; // twice is harmless
    assert_eq!(server.session_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_every_handle_closes_the_session() {
    let server = start().await;
    let client = connect(&server).await;
    let clone = client.clone();
    client
        .create("/tmp", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    drop(client);
    assert_eq!(server.session_count(), 1, "a clone still holds the session");
    drop(clone);
    support::eventually("the session is closed", async || {
        server.session_count() == 0
    })
    .await;
    assert_eq!(server.node_count(), 1, "only the root is left");
    server.shutdown().await;
}

#[tokio::test]
async fn connect_errors_are_typed() {
    assert!(matches!(
        Client::builder().servers("").connect().await,
        Err(Error::InvalidConnectString(_))
    ));
    assert!(matches!(
        Client::builder().servers("host:notaport").connect().await,
        Err(Error::InvalidConnectString(_))
    ));
    let dead = support::dead_addr().await;
    let started = std::time::Instant::now();
    let result = Client::builder()
        .servers(dead.to_string())
        .session_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(400))
        .connect()
        .await;
    match result {
        Err(Error::Timeout { after, last_error }) => {
            assert_eq!(after, Duration::from_millis(400));
            let last_error = last_error.expect("the refused connection is reported");
            assert!(last_error.contains(&dead.to_string()), "{last_error}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}
