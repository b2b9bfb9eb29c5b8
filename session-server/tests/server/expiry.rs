//! Expiry: never early, at most a tick late, ephemerals and connections go with it.
//!
//! Reference (zookeeper-sessions.md, "Expiry"): the bucket of a session is
//! `(t / tick + 1) * tick` for `t = last touch + timeout`, so expiry fires in
//! `(last_touch + timeout, last_touch + timeout + tick]`.

use std::time::Duration;

use session_wire::v1::{ErrorCode, NodeKind, RefusalReason, WatchEventKind};
use tokio::time::Instant;

use crate::support::{self, Raw, TICK, refused};

#[tokio::test]
async fn a_silent_session_expires_within_a_tick_of_its_timeout() {
    let server = support::start().await;
    let addr = server.local_addr();
    let timeout = Duration::from_millis(400);
    let (mut silent, session) = Raw::open(addr, timeout).await;
    // The create is the last frame the server hears from this session: it is
    // touched between `sent` and `answered`, so expiry may not come before
    // `sent + T` and should come by `answered + T + tick`.
    let sent = Instant::now();
    silent
        .create("/member", b"", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    let answered = Instant::now();

    let (mut observer, _) = Raw::open(addr, Duration::from_secs(2)).await;
    assert!(observer.exists("/member", true).await.is_some());
    let event = observer.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeDeleted);
    assert_eq!(event.path, "/member");
    let since_sent = sent.elapsed();
    assert!(
        since_sent >= timeout,
        "expired early: {since_sent:?} after the last frame was sent, of a {timeout:?} timeout"
    );
    // The upper bound is T + tick plus scheduling; generous, as machines are shared.
    let since_answered = answered.elapsed();
    assert!(
        since_answered < timeout + TICK + Duration::from_secs(2),
        "expired late: {since_answered:?}"
    );

    // The silent connection is told, and the session cannot come back.
    assert_eq!(
        silent.disconnect_reason().await,
        Some(ErrorCode::SessionExpired)
    );
    let (_, reply) = Raw::reattach(addr, &session).await;
    assert_eq!(refused(reply), RefusalReason::Expired);
    server.shutdown().await;
}

#[tokio::test]
async fn pinging_every_third_of_the_timeout_keeps_a_session() {
    let server = support::start().await;
    let timeout = Duration::from_millis(300);
    let (mut raw, _) = Raw::open(server.local_addr(), timeout).await;
    raw.create("/alive", b"", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    support::ping_for(&mut raw, timeout, timeout * 4).await;
    assert!(raw.exists("/alive", false).await.is_some());
    assert_eq!(server.session_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn any_request_keeps_a_session_not_only_pings() {
    let server = support::start().await;
    let timeout = Duration::from_millis(300);
    let (mut raw, _) = Raw::open(server.local_addr(), timeout).await;
    let started = Instant::now();
    while started.elapsed() < timeout * 4 {
        tokio::time::sleep(timeout / 3).await;
        assert!(raw.exists("/", false).await.is_some());
    }
    assert_eq!(server.session_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn many_sessions_expire_together_and_none_survive() {
    let server = support::start().await;
    let addr = server.local_addr();
    let timeout = Duration::from_millis(300);
    let (mut observer, _) = Raw::open(addr, Duration::from_secs(2)).await;
    observer
        .create("/pool", b"", NodeKind::Persistent)
        .await
        .expect("parent");
    let mut holders = Vec::new();
    for index in 0..200 {
        let (mut raw, _) = Raw::open(addr, timeout).await;
        raw.create(&format!("/pool/m{index}"), b"", NodeKind::Ephemeral)
            .await
            .expect("ephemeral");
        holders.push(raw);
    }
    assert_eq!(
        observer.children("/pool", false).await.expect("list").len(),
        200
    );
    let killed = Instant::now();
    drop(holders);
    while !observer
        .children("/pool", false)
        .await
        .expect("list")
        .is_empty()
    {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "ephemerals outlived their sessions"
        );
        tokio::time::sleep(TICK).await;
    }
    assert!(
        killed.elapsed() >= timeout - TICK,
        "gone before the timeout: {:?}",
        killed.elapsed()
    );
    assert_eq!(server.session_count(), 1, "only the observer is left");
    server.shutdown().await;
}
