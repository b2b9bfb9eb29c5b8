//! Limits on watches, SetWatches, nodes and data bytes: each is refused with
//! its documented code, nothing of the refused request takes effect, and
//! another session does not notice (its requests keep working).

use std::time::Duration;

use session_wire::v1::{self as wire, ErrorCode, NodeKind, WatchEventKind, request};

use crate::support::{self, Raw, code, granted};

fn set_watches(last_zxid_seen: u64, data: &[&str], exist: &[&str], child: &[&str]) -> request::Op {
    let owned = |paths: &[&str]| paths.iter().map(|path| (*path).to_owned()).collect();
    request::Op::SetWatches(wire::SetWatches {
        persistent_paths: Vec::new(),
        persistent_recursive_paths: Vec::new(),
        last_zxid_seen,
        data_paths: owned(data),
        exist_paths: owned(exist),
        child_paths: owned(child),
    })
}

/// A round trip that must bring no watch event first.
async fn no_event(raw: &mut Raw) {
    raw.ping().await;
    assert!(raw.events.is_empty(), "unexpected events: {:?}", raw.events);
}

#[tokio::test]
async fn a_read_past_max_watches_per_session_is_too_many_watches_and_registers_nothing() {
    let server = support::start_with(|config| config.limits.max_watches_per_session = 3).await;
    let addr = server.local_addr();
    let (mut watcher, _) = Raw::open(addr, Duration::from_secs(2)).await;
    let (mut other, _) = Raw::open(addr, Duration::from_secs(2)).await;
    for path in ["/w1", "/w2", "/w3", "/w4"] {
        other
            .create(path, b"", NodeKind::Persistent)
            .await
            .expect("create");
    }
    // One of each kind: the limit counts them all.
    watcher.get("/w1", true).await.expect("data watch");
    assert!(watcher.exists("/w2", true).await.is_some());
    watcher.children("/w3", true).await.expect("child watch");
    assert_eq!(server.watch_count(), 3);

    // Every kind of watching read is refused now, the read included.
    assert_eq!(
        code(watcher.get("/w4", true).await),
        Some(ErrorCode::TooManyWatches)
    );
    let exists = request::Op::Exists(wire::Exists {
        path: "/absent".to_owned(),
        watch: true,
    });
    assert_eq!(
        code(watcher.request(exists).await),
        Some(ErrorCode::TooManyWatches)
    );
    assert_eq!(
        code(watcher.children("/w4", true).await),
        Some(ErrorCode::TooManyWatches)
    );
    assert_eq!(server.watch_count(), 3, "nothing registered");
    // Reads without a watch are not limited.
    watcher.get("/w4", false).await.expect("plain read");

    // The limit is per session: another session watches freely.
    other
        .get("/w4", true)
        .await
        .expect("another session's watch");
    assert_eq!(server.watch_count(), 4);
    other
        .create("/absent", b"", NodeKind::Persistent)
        .await
        .expect("create");
    other.set("/w4", b"x", -1).await.expect("set");
    assert_eq!(other.events.len(), 1, "{:?}", other.events);
    assert_eq!(other.events[0].kind(), WatchEventKind::NodeDataChanged);
    // The refused watches were never set: the watcher hears of neither change.
    no_event(&mut watcher).await;

    // A watch that fired is gone, and makes room for one more.
    other.set("/w1", b"x", -1).await.expect("set");
    assert_eq!(watcher.next_event().await.path, "/w1");
    assert_eq!(server.watch_count(), 2);
    watcher.get("/w4", true).await.expect("room for one more");
    assert_eq!(
        code(watcher.get("/w1", true).await),
        Some(ErrorCode::TooManyWatches)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn asking_again_at_the_limit_for_a_watch_already_held_is_not_one_more() {
    // Limits::max_watches_per_session: "each kind on each path counts once.
    // A read asking for one more is refused". Setting a watch the session
    // already holds adds none (session-core's WatchTable::add keeps one), so
    // the read must not be refused; ZooKeeper clients re-arm watches so.
    let server = support::start_with(|config| config.limits.max_watches_per_session = 2).await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    raw.create("/a", b"", NodeKind::Persistent)
        .await
        .expect("create");
    raw.get("/a", true).await.expect("data watch");
    assert!(raw.exists("/absent", true).await.is_none());
    assert_eq!(server.watch_count(), 2);
    // Exists on an existing node sets a data watch: the one /a has.
    let exists_again = request::Op::Exists(wire::Exists {
        path: "/a".to_owned(),
        watch: true,
    });
    let exists_again = raw.request(exists_again).await;
    let get_again = raw.get("/a", true).await;
    assert_eq!(
        (code(exists_again), code(get_again)),
        (None, None),
        "the same data watch again is not one more"
    );
    assert_eq!(server.watch_count(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn set_watches_past_max_set_watches_paths_is_too_many_watches_and_registers_nothing() {
    let server = support::start_with(|config| config.limits.max_set_watches_paths = 4).await;
    let addr = server.local_addr();
    let (mut watcher, _) = Raw::open(addr, Duration::from_secs(2)).await;
    let (mut other, _) = Raw::open(addr, Duration::from_secs(2)).await;
    for path in ["/d1", "/d2", "/c1"] {
        other
            .create(path, b"", NodeKind::Persistent)
            .await
            .expect("create");
    }
    let zxid = other.exists("/c1", false).await.expect("exists").czxid;

    // Five paths over the three kinds: one more than a request may name.
    let five = set_watches(zxid, &["/d1", "/d2"], &["/e1", "/e2"], &["/c1"]);
    let refused = watcher.request(five).await;
    let detail = refused.as_ref().err().map(|err| err.detail.clone());
    assert_eq!(code(refused), Some(ErrorCode::TooManyWatches));
    assert!(
        detail
            .as_deref()
            .is_some_and(|detail| detail.contains('5') && detail.contains('4')),
        "the detail names the count and the limit: {detail:?}"
    );
    assert_eq!(server.watch_count(), 0, "nothing registered");
    // None of the five paths is watched: changes to each go unheard.
    other.set("/d1", b"x", -1).await.expect("set");
    other
        .create("/e1", b"", NodeKind::Persistent)
        .await
        .expect("create");
    other
        .create("/c1/k", b"", NodeKind::Persistent)
        .await
        .expect("create");
    no_event(&mut watcher).await;
    assert!(
        other.exists("/d2", false).await.is_some(),
        "others unaffected"
    );

    // Four is within the limit.
    let zxid = other.exists("/c1/k", false).await.expect("exists").czxid;
    let four = set_watches(zxid, &["/d1", "/d2"], &["/e2"], &["/c1"]);
    watcher.request(four).await.expect("at the limit");
    assert_eq!(server.watch_count(), 4);
    other.set("/d2", b"x", -1).await.expect("set");
    assert_eq!(watcher.next_event().await.path, "/d2");
    server.shutdown().await;
}

#[tokio::test]
async fn set_watches_after_a_reattach_may_name_the_watches_the_session_already_holds() {
    // The design: "after a reattach ... the client re-registers [its
    // watches] with SetWatches and its last zxid", and the server fires at
    // once those whose node changed meanwhile. On the same server the
    // session's watches are still held, so re-registering them adds none;
    // counting them twice refuses the whole request, and the change made
    // while the client was away is never told.
    let server = support::start_with(|config| config.limits.max_watches_per_session = 4).await;
    let addr = server.local_addr();
    let (mut first, session) = Raw::open(addr, Duration::from_secs(2)).await;
    let (mut writer, _) = Raw::open(addr, Duration::from_secs(2)).await;
    for path in ["/a", "/b", "/c"] {
        writer
            .create(path, b"", NodeKind::Persistent)
            .await
            .expect("create");
    }
    let mut last_zxid = 0;
    for path in ["/a", "/b", "/c"] {
        let (_, stat) = first.get(path, true).await.expect("data watch");
        last_zxid = last_zxid.max(stat.mzxid);
    }
    assert_eq!(server.watch_count(), 3);
    drop(first);
    // While the client is away /a changes: its watch fires into the void.
    writer.set("/a", b"changed", -1).await.expect("set");

    let (mut second, reply) = Raw::reattach(addr, &session).await;
    assert!(granted(reply).reattached);
    let op = set_watches(last_zxid, &["/a", "/b", "/c"], &[], &[]);
    second
        .request(op)
        .await
        .expect("re-registering three watches, two of them held, stays within 4");
    assert_eq!(second.events.len(), 1, "{:?}", second.events);
    assert_eq!(second.events[0].path, "/a");
    assert_eq!(second.events[0].kind(), WatchEventKind::NodeDataChanged);
    assert_eq!(server.watch_count(), 2, "/b and /c, once each");
    server.shutdown().await;
}

#[tokio::test]
async fn creating_past_max_nodes_is_quota_exceeded_and_writes_nothing() {
    // The root counts: 5 nodes are the root and four more.
    let server = support::start_with(|config| config.limits.tree.max_nodes = 5).await;
    let addr = server.local_addr();
    let (mut raw, _) = Raw::open(addr, Duration::from_secs(2)).await;
    let (mut other, _) = Raw::open(addr, Duration::from_secs(2)).await;
    raw.create("/q", b"", NodeKind::Persistent)
        .await
        .expect("create");
    for name in ["a", "b", "c"] {
        raw.create(&format!("/q/{name}"), b"", NodeKind::Persistent)
            .await
            .expect("create");
    }
    assert_eq!(server.node_count(), 5);
    let parent = raw.exists("/q", false).await.expect("parent");

    for (path, kind, sequential) in [
        ("/q/d", NodeKind::Persistent, false),
        ("/q/e", NodeKind::Ephemeral, false),
        ("/q/s-", NodeKind::Persistent, true),
    ] {
        assert_eq!(
            code(raw.create_with(path, b"", kind, sequential).await),
            Some(ErrorCode::QuotaExceeded),
            "{path}"
        );
    }
    // The limit is the server's: another session is refused the same way.
    assert_eq!(
        code(other.create("/other", b"", NodeKind::Persistent).await),
        Some(ErrorCode::QuotaExceeded)
    );
    assert_eq!(server.node_count(), 5, "nothing was written");
    let after = raw.exists("/q", false).await.expect("parent");
    assert_eq!(
        (after.cversion, after.pzxid, after.num_children),
        (parent.cversion, parent.pzxid, parent.num_children),
        "the parent did not change, not even its sequence counter"
    );
    // Everything else keeps working, for both sessions.
    other.get("/q/a", false).await.expect("read");
    other.set("/q/a", b"data", -1).await.expect("set");
    raw.delete("/q/c", -1).await.expect("delete");
    other
        .create("/other", b"", NodeKind::Persistent)
        .await
        .expect("room again after a delete");
    assert_eq!(server.node_count(), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn writes_past_max_total_data_bytes_are_quota_exceeded_and_shrinking_always_passes() {
    let server = support::start_with(|config| config.limits.tree.max_total_data_bytes = 100).await;
    let addr = server.local_addr();
    let (mut raw, _) = Raw::open(addr, Duration::from_secs(2)).await;
    let (mut other, _) = Raw::open(addr, Duration::from_secs(2)).await;
    raw.create("/a", &[1; 60], NodeKind::Persistent)
        .await
        .expect("60 of 100");
    assert_eq!(
        code(raw.create("/b", &[2; 41], NodeKind::Persistent).await),
        Some(ErrorCode::QuotaExceeded),
        "101 of 100"
    );
    assert!(
        raw.exists("/b", false).await.is_none(),
        "nothing was written"
    );
    assert_eq!(server.node_count(), 2);
    raw.create("/b", &[2; 40], NodeKind::Persistent)
        .await
        .expect("exactly 100 of 100");

    // A set that grows the total past the quota is refused, and changes
    // nothing; one that shrinks it passes, and so does one that keeps it.
    assert_eq!(
        code(raw.set("/a", &[3; 61], -1).await),
        Some(ErrorCode::QuotaExceeded)
    );
    let (data, stat) = raw.get("/a", false).await.expect("get");
    assert_eq!((&data[..], stat.version), (&[1u8; 60][..], 0));
    assert_eq!(
        code(other.create("/c", b"x", NodeKind::Persistent).await),
        Some(ErrorCode::QuotaExceeded),
        "the quota is the server's, for every session"
    );
    raw.set("/b", &[4; 40], -1)
        .await
        .expect("same size at the limit");
    raw.set("/a", &[5; 10], -1).await.expect("shrinking passes");
    other
        .create("/c", &[6; 50], NodeKind::Ephemeral)
        .await
        .expect("10 + 40 + 50 = 100");
    other.get("/a", false).await.expect("reads keep working");

    // Bytes come back when their node goes, with its session too.
    assert_eq!(
        code(raw.create("/d", &[7; 50], NodeKind::Persistent).await),
        Some(ErrorCode::QuotaExceeded)
    );
    other.send(wire::CloseSession {}).await;
    while other.recv().await.is_some() {}
    raw.create("/d", &[7; 50], NodeKind::Persistent)
        .await
        .expect("the closed session's ephemeral gave its 50 bytes back");
    server.shutdown().await;
}
