//! The admin gRPC service and the metrics endpoint.

use std::time::Duration;

use session_wire::admin::v1::{
    DumpExpiryRequest, ExpireSessionRequest, GetSessionRequest, ListSessionsRequest,
    SessionEventKind, SessionState, StatsRequest, WatchSessionEventsRequest,
    admin_client::AdminClient,
};
use session_wire::v1::{ErrorCode, NodeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{self, Raw};

async fn admin(server: &session_server::Server) -> AdminClient<tonic::transport::Channel> {
    let addr = server.admin_addr().expect("admin enabled");
    AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("admin connects")
}

#[tokio::test]
async fn list_get_stats_and_dump() {
    let server = support::start().await;
    let (mut raw, session) = Raw::open(server.local_addr(), Duration::from_millis(1_000)).await;
    raw.create("/e", b"", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    let mut admin = admin(&server).await;

    let list = admin
        .list_sessions(ListSessionsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.sessions.len(), 1);
    let info = &list.sessions[0];
    assert_eq!(info.session_id, session.session_id);
    assert_eq!(info.negotiated_timeout_ms, 1_000);
    assert_eq!(info.ephemeral_count, 1);
    assert_eq!(info.state(), SessionState::Connected);
    assert!(
        info.remote_address.starts_with("127.0.0.1:"),
        "{}",
        info.remote_address
    );
    assert_eq!(info.client, "session-server-tests");

    let one = admin
        .get_session(GetSessionRequest {
            session_id: session.session_id,
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(one.session.map(|s| s.session_id), Some(session.session_id));
    let missing = admin
        .get_session(GetSessionRequest { session_id: 42 })
        .await;
    assert_eq!(
        missing.err().map(|status| status.code()),
        Some(tonic::Code::NotFound)
    );

    let stats = admin
        .stats(StatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.sessions, 1);
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.server_id, 1);
    assert_eq!(stats.ops_by_kind.get("create"), Some(&1));
    assert_eq!(stats.ops_by_kind.get("handshake"), Some(&1));

    let dump = admin
        .dump_expiry(DumpExpiryRequest {})
        .await
        .expect("dump")
        .into_inner();
    assert_eq!(dump.tick_ms, 50);
    let ids: Vec<u64> = dump
        .buckets
        .iter()
        .flat_map(|bucket| bucket.session_ids.clone())
        .collect();
    assert_eq!(ids, vec![session.session_id]);
    assert!(dump.buckets[0].due_in_ms <= 1_050);
    server.shutdown().await;
}

#[tokio::test]
async fn expire_from_admin_closes_the_session_and_streams_events() {
    let server = support::start().await;
    let mut admin = admin(&server).await;
    let mut events = admin
        .watch_session_events(WatchSessionEventsRequest {})
        .await
        .expect("subscribe")
        .into_inner();
    let (mut raw, session) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    raw.create("/e", b"", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");

    tokio::time::timeout(
        support::PATIENCE,
        admin.expire_session(ExpireSessionRequest {
            session_id: session.session_id,
        }),
    )
    .await
    .expect("expire answers in time")
    .expect("expire");
    assert_eq!(
        raw.disconnect_reason().await,
        Some(ErrorCode::SessionExpired)
    );
    assert_eq!(server.session_count(), 0);
    assert_eq!(server.node_count(), 1, "only the root is left");

    let created = tokio::time::timeout(support::PATIENCE, events.message())
        .await
        .expect("created event in time")
        .expect("stream")
        .expect("event");
    assert_eq!(created.kind(), SessionEventKind::Created);
    assert_eq!(created.session_id, session.session_id);
    let expired = tokio::time::timeout(support::PATIENCE, events.message())
        .await
        .expect("expired event in time")
        .expect("stream")
        .expect("event");
    assert_eq!(expired.kind(), SessionEventKind::Expired);

    let again = admin
        .expire_session(ExpireSessionRequest {
            session_id: session.session_id,
        })
        .await;
    assert_eq!(
        again.err().map(|status| status.code()),
        Some(tonic::Code::NotFound)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_endpoint_serves_prometheus_text() {
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(1)).await;
    raw.ping().await;
    let addr = server.metrics_addr().expect("metrics enabled");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("session_server_sessions 1"), "{response}");
    assert!(
        response.contains("session_server_ops_total{op=\"ping\"} 1"),
        "{response}"
    );
    assert!(
        response.contains("session_server_op_latency_seconds_bucket"),
        "{response}"
    );
    server.shutdown().await;
}
