//! One-shot watches and their re-registration after a reattach.

use std::time::Duration;

use bytes::Bytes;
use session_wire::v1::{self as wire, NodeKind, WatchEventKind, request};

use crate::support::{self, Raw, code, granted};

#[tokio::test]
async fn data_watch_fires_once_on_set_and_before_the_later_reply() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut watcher, _) = Raw::open(addr, Duration::from_secs(1)).await;
    let (mut writer, _) = Raw::open(addr, Duration::from_secs(1)).await;
    writer
        .create("/config", b"v1", NodeKind::Persistent)
        .await
        .expect("create");
    watcher.get("/config", true).await.expect("get + watch");

    writer.set("/config", b"v2", -1).await.expect("set");
    writer.set("/config", b"v3", -1).await.expect("set again");

    // The watcher's next reply reflects v3, and the event arrives before it.
    let (data, _) = watcher.get("/config", false).await.expect("get");
    assert_eq!(&data[..], b"v3");
    assert_eq!(watcher.events.len(), 1, "one-shot: {:?}", watcher.events);
    let event = watcher.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeDataChanged);
    assert_eq!(event.path, "/config");
    server.shutdown().await;
}

#[tokio::test]
async fn exists_watch_on_a_missing_node_fires_on_create() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut watcher, _) = Raw::open(addr, Duration::from_secs(1)).await;
    let (mut writer, _) = Raw::open(addr, Duration::from_secs(1)).await;
    assert!(watcher.exists("/leader", true).await.is_none());
    writer
        .create("/leader", b"", NodeKind::Ephemeral)
        .await
        .expect("create");
    let event = watcher.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeCreated);
    assert_eq!(event.path, "/leader");
    server.shutdown().await;
}

#[tokio::test]
async fn child_watch_fires_on_create_and_delete_of_a_child() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut watcher, _) = Raw::open(addr, Duration::from_secs(1)).await;
    let (mut writer, _) = Raw::open(addr, Duration::from_secs(1)).await;
    writer
        .create("/q", b"", NodeKind::Persistent)
        .await
        .expect("parent");
    assert!(watcher.children("/q", true).await.expect("list").is_empty());
    let name = writer
        .create_with("/q/job-", b"", NodeKind::Persistent, true)
        .await
        .expect("sequential");
    assert_eq!(name, "/q/job-0000000000");
    let event = watcher.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeChildrenChanged);
    assert_eq!(event.path, "/q");

    assert_eq!(
        watcher.children("/q", true).await.expect("list"),
        vec!["job-0000000000"]
    );
    writer.delete(&name, -1).await.expect("delete");
    assert_eq!(
        watcher.next_event().await.kind(),
        WatchEventKind::NodeChildrenChanged
    );
    server.shutdown().await;
}

#[tokio::test]
async fn own_write_fires_own_watch_before_its_reply() {
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(1)).await;
    raw.create("/x", b"", NodeKind::Persistent)
        .await
        .expect("create");
    raw.get("/x", true).await.expect("watch");
    raw.set("/x", b"1", 0).await.expect("set");
    // `request` stores events that precede the reply.
    assert_eq!(raw.events.len(), 1);
    assert_eq!(raw.events[0].kind(), WatchEventKind::NodeDataChanged);
    server.shutdown().await;
}

#[tokio::test]
async fn set_watches_after_reattach_fires_what_changed_meanwhile() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut first, session) = Raw::open(addr, Duration::from_secs(1)).await;
    let (mut writer, _) = Raw::open(addr, Duration::from_secs(1)).await;
    first
        .create("/cfg", b"a", NodeKind::Persistent)
        .await
        .expect("create");
    let (_, stat) = first.get("/cfg", true).await.expect("get + watch");
    let last_zxid = stat.mzxid;
    drop(first);

    // While the client is away the watch fires into the void.
    writer.set("/cfg", b"b", -1).await.expect("set");

    let (mut second, reply) = Raw::reattach(addr, &session).await;
    assert!(granted(reply).reattached);
    let op = request::Op::SetWatches(wire::SetWatches {
        persistent_paths: Vec::new(),
        persistent_recursive_paths: Vec::new(),
        last_zxid_seen: last_zxid,
        data_paths: vec!["/cfg".to_owned()],
        exist_paths: vec!["/absent".to_owned()],
        child_paths: vec![],
    });
    second.request(op).await.expect("set watches");
    assert_eq!(second.events.len(), 1, "{:?}", second.events);
    assert_eq!(second.events[0].kind(), WatchEventKind::NodeDataChanged);
    second.events.clear();

    // The exists watch was registered, not fired.
    writer
        .create("/absent", b"", NodeKind::Persistent)
        .await
        .expect("create");
    let event = second.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeCreated);
    assert_eq!(event.path, "/absent");
    server.shutdown().await;
}

#[tokio::test]
async fn namespace_errors_reach_the_client_typed() {
    use session_wire::v1::ErrorCode;
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(1)).await;
    assert_eq!(
        code(raw.get("/missing", false).await),
        Some(ErrorCode::NoNode)
    );
    raw.create("/a", b"", NodeKind::Persistent)
        .await
        .expect("create");
    assert_eq!(
        code(raw.create("/a", b"", NodeKind::Persistent).await),
        Some(ErrorCode::NodeExists)
    );
    assert_eq!(
        code(raw.set("/a", b"", 7).await),
        Some(ErrorCode::BadVersion)
    );
    raw.create("/a/b", b"", NodeKind::Persistent)
        .await
        .expect("child");
    assert_eq!(code(raw.delete("/a", -1).await), Some(ErrorCode::NotEmpty));
    raw.create("/e", b"", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    assert_eq!(
        code(raw.create("/e/child", b"", NodeKind::Persistent).await),
        Some(ErrorCode::NoChildrenForEphemerals)
    );
    assert_eq!(
        code(raw.create("a/b", b"", NodeKind::Persistent).await),
        Some(ErrorCode::InvalidPath)
    );
    assert_eq!(
        code(raw.create("/a//b", b"", NodeKind::Persistent).await),
        Some(ErrorCode::InvalidPath)
    );
    let unset = request::Op::Create(wire::Create {
        acl: Vec::new(),
        ttl_ms: 0,
        path: "/k".to_owned(),
        data: Bytes::new(),
        kind: NodeKind::Unspecified.into(),
        sequential: false,
    });
    assert_eq!(
        code(raw.request(unset).await),
        Some(ErrorCode::BadArguments)
    );
    server.shutdown().await;
}
