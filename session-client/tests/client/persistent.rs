//! Persistent and recursive watches: what fires them, that firing does not
//! remove them, removal by `remove_watches` and by dropping the last handle,
//! `check_watches`, and re-registration after a reattach.

use std::time::Duration;

use futures_util::StreamExt;
use session_client::{CreateMode, Error, EventKind, PersistentWatch, State, WatcherType};

use crate::support::{
    MAX_TIMEOUT, PATIENCE, Proxy, client_via, connect, eventually, next_state, start,
};

/// The next event of `watch`, within `PATIENCE`.
async fn next_event(watch: &mut PersistentWatch) -> (EventKind, String) {
    match tokio::time::timeout(PATIENCE, watch.next()).await {
        Ok(Some(Ok(event))) => (event.kind, event.path),
        Ok(Some(Err(error))) => panic!("the watch failed: {error}"),
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("no event within {PATIENCE:?}"),
    }
}

/// Nothing more arrives on `watch` for a while.
async fn quiet(watch: &mut PersistentWatch) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
        panic!("expected nothing, got {item:?}");
    }
}

fn event(kind: EventKind, path: &str) -> (EventKind, String) {
    (kind, path.to_owned())
}

#[tokio::test]
async fn a_persistent_watch_reports_every_change_of_its_node_and_stays() {
    let server = start().await;
    let watcher = connect(&server).await;
    let writer = connect(&server).await;
    // The node need not exist.
    let mut watch = watcher.add_watch("/p", false).await.expect("add watch");
    assert_eq!(watch.path(), "/p");
    assert!(!watch.is_recursive());

    writer
        .create("/p", b"", CreateMode::Persistent)
        .await
        .expect("create");
    assert_eq!(
        next_event(&mut watch).await,
        event(EventKind::NodeCreated, "/p")
    );
    for value in [b"1", b"2"] {
        writer.set("/p", value, None).await.expect("set");
        assert_eq!(
            next_event(&mut watch).await,
            event(EventKind::NodeDataChanged, "/p"),
            "not removed by firing"
        );
    }
    writer
        .create("/p/c", b"", CreateMode::Persistent)
        .await
        .expect("create");
    assert_eq!(
        next_event(&mut watch).await,
        event(EventKind::NodeChildrenChanged, "/p")
    );
    // A grandchild is not its business.
    writer
        .create("/p/c/g", b"", CreateMode::Persistent)
        .await
        .expect("create");
    writer.set("/p/c", b"x", None).await.expect("set");
    writer.delete("/p/c/g", None).await.expect("delete");
    writer.delete("/p/c", None).await.expect("delete");
    assert_eq!(
        next_event(&mut watch).await,
        event(EventKind::NodeChildrenChanged, "/p")
    );
    writer.delete("/p", None).await.expect("delete");
    assert_eq!(
        next_event(&mut watch).await,
        event(EventKind::NodeDeleted, "/p")
    );
    writer
        .create("/p", b"", CreateMode::Persistent)
        .await
        .expect("create again");
    assert_eq!(
        next_event(&mut watch).await,
        event(EventKind::NodeCreated, "/p"),
        "still there after its node was deleted"
    );
    quiet(&mut watch).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_recursive_watch_reports_its_subtree_by_the_changed_path() {
    let server = start().await;
    let watcher = connect(&server).await;
    let writer = connect(&server).await;
    let mut watch = watcher.add_watch("/r", true).await.expect("add watch");
    assert!(watch.is_recursive());
    // A one-shot watch on a descendant works beside it: one event from the
    // server, handed to both.
    writer
        .create("/r", b"", CreateMode::Persistent)
        .await
        .expect("create");
    writer
        .create("/r/a", b"", CreateMode::Persistent)
        .await
        .expect("create");
    assert_eq!(
        next_event(&mut watch).await,
        event(EventKind::NodeCreated, "/r")
    );
    assert_eq!(
        next_event(&mut watch).await,
        event(EventKind::NodeCreated, "/r/a"),
        "no children-changed for /r"
    );
    let (_, _, one_shot) = watcher.get_and_watch("/r/a").await.expect("get and watch");

    writer
        .create("/r/a/b", b"", CreateMode::Persistent)
        .await
        .expect("create");
    writer.set("/r/a", b"x", None).await.expect("set");
    writer.set("/r/a/b", b"y", None).await.expect("set");
    writer.delete("/r/a/b", None).await.expect("delete");
    writer
        .create("/elsewhere", b"", CreateMode::Persistent)
        .await
        .expect("create");
    writer
        .create("/rr", b"", CreateMode::Persistent)
        .await
        .expect("create: /rr is not under /r");
    writer.set("/r/a", b"z", None).await.expect("set");
    for expected in [
        event(EventKind::NodeCreated, "/r/a/b"),
        event(EventKind::NodeDataChanged, "/r/a"),
        event(EventKind::NodeDataChanged, "/r/a/b"),
        event(EventKind::NodeDeleted, "/r/a/b"),
        event(EventKind::NodeDataChanged, "/r/a"),
    ] {
        assert_eq!(next_event(&mut watch).await, expected);
    }
    let fired = tokio::time::timeout(PATIENCE, one_shot)
        .await
        .expect("the one-shot watch fired")
        .expect("an event");
    assert_eq!(
        (fired.kind, fired.path.as_str()),
        (EventKind::NodeDataChanged, "/r/a")
    );
    quiet(&mut watch).await;
    server.shutdown().await;
}

#[tokio::test]
async fn remove_watches_ends_them_and_check_watches_sees_them() {
    let server = start().await;
    let client = connect(&server).await;
    let writer = connect(&server).await;
    writer
        .create("/w", b"", CreateMode::Persistent)
        .await
        .expect("create");
    let mut persistent = client.add_watch("/w", false).await.expect("add watch");
    let _recursive = client.add_watch("/w", true).await.expect("add watch");
    let (_, _, data_watch) = client.get_and_watch("/w").await.expect("get and watch");
    let (_, child_watch) = client
        .children_and_watch("/w")
        .await
        .expect("children and watch");

    for kind in [
        WatcherType::Persistent,
        WatcherType::PersistentRecursive,
        WatcherType::Data,
        WatcherType::Children,
        WatcherType::Any,
    ] {
        assert_eq!(client.check_watches("/w", kind).await, Ok(true), "{kind:?}");
    }
    assert_eq!(
        client.check_watches("/other", WatcherType::Any).await,
        Ok(false)
    );
    assert_eq!(
        writer.check_watches("/w", WatcherType::Any).await,
        Ok(false),
        "watches are per session"
    );

    client
        .remove_watches("/w", WatcherType::Persistent)
        .await
        .expect("remove the persistent watch");
    match tokio::time::timeout(PATIENCE, persistent.next()).await {
        Ok(None) => {}
        other => panic!("the stream ends quietly: {other:?}"),
    }
    assert_eq!(
        client.check_watches("/w", WatcherType::Persistent).await,
        Ok(false)
    );
    assert_eq!(
        client
            .check_watches("/w", WatcherType::PersistentRecursive)
            .await,
        Ok(true),
        "only the type named goes"
    );
    assert!(matches!(
        client.remove_watches("/w", WatcherType::Persistent).await,
        Err(Error::NoWatcher { .. })
    ));

    client
        .remove_watches("/w", WatcherType::Data)
        .await
        .expect("remove the data watch");
    let removed = tokio::time::timeout(PATIENCE, data_watch)
        .await
        .expect("the one-shot watch ends");
    assert_eq!(
        removed,
        Err(Error::WatchRemoved {
            path: "/w".to_owned()
        })
    );
    // Nothing fires the removed watches; the child watch is still there.
    writer.set("/w", b"x", None).await.expect("set");
    writer
        .create("/w/c", b"", CreateMode::Persistent)
        .await
        .expect("create");
    let fired = tokio::time::timeout(PATIENCE, child_watch)
        .await
        .expect("the child watch fired")
        .expect("an event");
    assert_eq!(fired.kind, EventKind::NodeChildrenChanged);
    server.shutdown().await;
}

#[tokio::test]
async fn the_servers_watch_goes_with_the_last_handle() {
    let server = start().await;
    let client = connect(&server).await;
    let writer = connect(&server).await;
    let first = client.add_watch("/h", false).await.expect("add watch");
    let mut second = client.add_watch("/h", false).await.expect("add watch");
    drop(first);
    writer
        .create("/h", b"", CreateMode::Persistent)
        .await
        .expect("create");
    assert_eq!(
        next_event(&mut second).await,
        event(EventKind::NodeCreated, "/h"),
        "the other handle still hears"
    );
    assert_eq!(
        client.check_watches("/h", WatcherType::Persistent).await,
        Ok(true)
    );
    second.remove().await.expect("remove");
    assert_eq!(
        client.check_watches("/h", WatcherType::Persistent).await,
        Ok(false)
    );

    let dropped = client.add_watch("/h", true).await.expect("add watch");
    drop(dropped);
    eventually("the dropped watch is removed from the server", async || {
        client
            .check_watches("/h", WatcherType::PersistentRecursive)
            .await
            == Ok(false)
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn persistent_watches_are_set_again_after_a_reattach() {
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = client_via(&proxy, MAX_TIMEOUT).await;
    let writer = connect(&server).await;
    let mut recursive = client.add_watch("/a", true).await.expect("add watch");
    let mut plain = client.add_watch("/b", false).await.expect("add watch");

    let mut events = client.events();
    proxy.cut();
    assert_eq!(next_state(&mut events).await, State::Suspended);
    // Missed while disconnected: persistent watches are not replayed.
    writer
        .create("/b", b"", CreateMode::Persistent)
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.restore();
    assert_eq!(next_state(&mut events).await, State::Connected);

    for (path, kind) in [
        ("/a", WatcherType::PersistentRecursive),
        ("/b", WatcherType::Persistent),
    ] {
        assert_eq!(
            client.check_watches(path, kind).await,
            Ok(true),
            "{path} set again"
        );
    }
    writer
        .create("/a", b"", CreateMode::Persistent)
        .await
        .expect("create");
    writer
        .create("/a/deep", b"", CreateMode::Persistent)
        .await
        .expect("create");
    writer.set("/b", b"x", None).await.expect("set");
    assert_eq!(
        next_event(&mut recursive).await,
        event(EventKind::NodeCreated, "/a")
    );
    assert_eq!(
        next_event(&mut recursive).await,
        event(EventKind::NodeCreated, "/a/deep")
    );
    assert_eq!(
        next_event(&mut plain).await,
        event(EventKind::NodeDataChanged, "/b"),
        "the create while cut off was not replayed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn persistent_watches_end_with_the_session() {
    let server = start().await;
    let client = connect(&server).await;
    let mut watch = client.add_watch("/x", true).await.expect("add watch");
    client.close().await;
    match tokio::time::timeout(PATIENCE, watch.next()).await {
        Ok(Some(Err(Error::Closed))) => {}
        other => panic!("the stream says the session ended: {other:?}"),
    }
    match tokio::time::timeout(PATIENCE, watch.next()).await {
        Ok(None) => {}
        other => panic!("then ends: {other:?}"),
    }
    assert_eq!(
        watch.remove().await,
        Ok(()),
        "removing after the end is fine"
    );
    server.shutdown().await;
}
