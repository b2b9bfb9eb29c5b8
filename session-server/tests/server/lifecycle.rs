//! Sessions from handshake to close, reattach, moved sessions and restarts.

use std::time::Duration;

use session_wire::v1::{
    CloseAck, CloseSession, ErrorCode, NodeKind, RefusalReason, server_message,
};

use crate::support::{self, Raw, granted, refused};

#[tokio::test]
async fn handshake_ping_close() {
    let server = support::start().await;
    let (mut raw, session) = Raw::open(server.local_addr(), Duration::from_millis(500)).await;
    assert_ne!(session.session_id, 0);
    assert_eq!(session.password.len(), 16);
    assert_eq!(session.negotiated_timeout_ms, 500);
    assert_eq!(session.session_id >> 56, 1, "server id 1 in the top byte");
    assert!(!session.reattached);
    assert_eq!(server.session_count(), 1);

    raw.ping().await;
    raw.send(CloseSession {}).await;
    let ack = raw.recv().await.and_then(|message| message.kind);
    assert_eq!(ack, Some(server_message::Kind::CloseAck(CloseAck {})));
    assert!(
        raw.recv().await.is_none(),
        "the server closes after the ack"
    );
    assert_eq!(server.session_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn timeouts_are_negotiated_into_bounds() {
    // Reference: negotiated = clamp(requested, min, max); ZooKeeper clamps a
    // zero or huge request the same way.
    let server = support::start().await;
    for (requested_ms, expected_ms) in [(1, 200), (300, 300), (2_000, 2_000), (u32::MAX, 2_000)] {
        let mut raw = Raw::connect(server.local_addr()).await;
        let mut handshake = support::new_session(Duration::ZERO);
        handshake.requested_timeout_ms = requested_ms;
        let session = granted(raw.handshake(handshake).await);
        assert_eq!(
            session.negotiated_timeout_ms, expected_ms,
            "requested {requested_ms}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn ids_are_distinct_and_increasing() {
    let server = support::start().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_raw, session) = Raw::open(server.local_addr(), Duration::from_millis(500)).await;
        ids.push(session.session_id);
    }
    assert!(
        ids.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{ids:x?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ephemerals_go_with_a_closed_session() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut owner, _) = Raw::open(addr, Duration::from_millis(500)).await;
    let (mut observer, _) = Raw::open(addr, Duration::from_millis(500)).await;
    owner
        .create("/svc", b"", NodeKind::Persistent)
        .await
        .expect("parent");
    owner
        .create("/svc/a", b"10.0.0.1", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    assert!(observer.exists("/svc/a", true).await.is_some());

    owner.send(CloseSession {}).await;
    assert!(matches!(
        owner.recv().await.and_then(|message| message.kind),
        Some(server_message::Kind::CloseAck(_))
    ));
    let event = observer.next_event().await;
    assert_eq!(event.path, "/svc/a");
    assert_eq!(event.kind(), session_wire::v1::WatchEventKind::NodeDeleted);
    assert!(observer.exists("/svc/a", false).await.is_none());
    assert!(
        observer.exists("/svc", false).await.is_some(),
        "persistent parent stays"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn reattach_keeps_the_session_and_moves_it() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut first, session) = Raw::open(addr, Duration::from_millis(1_000)).await;
    first
        .create("/lock", b"me", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");

    let (mut second, reply) = Raw::reattach(addr, &session).await;
    let again = granted(reply);
    assert_eq!(again.session_id, session.session_id);
    assert_eq!(again.password, session.password);
    assert!(again.reattached);

    // The old connection is told the session moved, and closed.
    assert_eq!(
        first.disconnect_reason().await,
        Some(ErrorCode::SessionMoved)
    );
    // The ephemeral survived the move and still belongs to the session.
    let (data, stat) = second.get("/lock", false).await.expect("still there");
    assert_eq!(&data[..], b"me");
    assert_eq!(stat.ephemeral_owner, session.session_id);
    assert_eq!(server.session_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn reattach_after_a_dropped_connection_within_the_timeout() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut first, session) = Raw::open(addr, Duration::from_millis(1_000)).await;
    first
        .create("/e", b"", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut second, reply) = Raw::reattach(addr, &session).await;
    assert!(granted(reply).reattached);
    assert!(second.exists("/e", false).await.is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_auth_failed_and_changes_nothing() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut owner, mut session) = Raw::open(addr, Duration::from_millis(1_000)).await;
    let mut password = session.password.to_vec();
    password[0] ^= 0xff;
    session.password = password.into();
    let (mut thief, reply) = Raw::reattach(addr, &session).await;
    assert_eq!(refused(reply), RefusalReason::AuthFailed);
    assert!(thief.recv().await.is_none(), "closed after the refusal");
    // The real owner is undisturbed.
    owner.ping().await;

    // A password of the wrong length is a malformed handshake (the protocol
    // says so), refused without a decode error and without telling whether
    // the session exists.
    session.password = vec![1, 2, 3].into();
    let (_, reply) = Raw::reattach(addr, &session).await;
    assert_eq!(refused(reply), RefusalReason::BadHandshake);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_session_is_expired() {
    let server = support::start().await;
    let (_, mut session) = Raw::open(server.local_addr(), Duration::from_millis(500)).await;
    session.session_id += 1000;
    let (_, reply) = Raw::reattach(server.local_addr(), &session).await;
    // The password cannot match another id either; what matters is that the
    // client learns nothing beyond "no": it is never handed a new session.
    assert!(matches!(
        refused(reply),
        RefusalReason::AuthFailed | RefusalReason::Expired
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn after_a_restart_sessions_are_expired() {
    // State is in memory: a restarted server knows no session, and a client
    // reattaching must hear Expired, never silently get a new session.
    let server = support::start().await;
    let addr = server.local_addr();
    let (_raw, session) = Raw::open(addr, Duration::from_millis(1_000)).await;
    server.shutdown().await;

    let restarted = support::start_with(|config| config.listen = addr).await;
    let (_, reply) = Raw::reattach(addr, &session).await;
    let reason = refused(reply);
    assert!(
        matches!(reason, RefusalReason::Expired | RefusalReason::AuthFailed),
        "got {reason:?}"
    );
    // A new session works, with an id above the old one (ids never repeat).
    let (_raw, fresh) = Raw::open(addr, Duration::from_millis(500)).await;
    assert!(fresh.session_id > session.session_id);
    restarted.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_connected_clients() {
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_millis(500)).await;
    let shutdown = tokio::spawn(server.shutdown());
    assert_eq!(
        raw.disconnect_reason().await,
        Some(ErrorCode::ServerShuttingDown)
    );
    shutdown.await.expect("shutdown completes");
}
