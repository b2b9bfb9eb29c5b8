//! Bad input and limits: each gets a clear answer or a closed connection, and
//! no other session notices.

use std::time::Duration;

use bytes::Bytes;
use session_wire::v1::{
    self as wire, ErrorCode, Handshake, NodeKind, Ping, RefusalReason, request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, Raw, code, refused};

/// Reads until the server closes the connection; panics if it does not.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(support::PATIENCE, stream.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the server did not close the connection");
    seen
}

#[tokio::test]
async fn oversize_frame_before_the_handshake_closes_only_that_connection() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut bystander, _) = Raw::open(addr, Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // 2 MiB announced; the limit is 1 MiB and nothing is allocated for it.
    stream
        .write_all(&(2u32 << 20).to_be_bytes())
        .await
        .expect("write");
    let answer = closed_by_server(&mut stream).await;
    assert!(!answer.is_empty(), "a refusal is sent before closing");
    bystander.ping().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oversize_frame_after_the_handshake_disconnects_with_a_reason() {
    let server = support::start_with(|config| config.limits.max_frame_bytes = 4096).await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(1)).await;
    let big = request::Op::SetData(wire::SetData {
        path: "/".to_owned(),
        data: Bytes::from(vec![0u8; 8192]),
        expected_version: None,
    });
    // Encode by hand: the client codec's own limit is larger.
    use prost::Message;
    let message = wire::ClientMessage::from(wire::Request {
        xid: 1,
        op: Some(big),
    });
    let body = message.encode_to_vec();
    let stream = raw.framed.get_mut();
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .await
        .expect("write");
    stream.write_all(&body).await.expect("write");
    assert_eq!(raw.disconnect_reason().await, Some(ErrorCode::BadArguments));
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_bytes_are_refused() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut bystander, _) = Raw::open(addr, Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .expect("write");
    closed_by_server(&mut stream).await;
    let mut http = TcpStream::connect(addr).await.expect("connect");
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    closed_by_server(&mut http).await;
    bystander.ping().await;
    server.shutdown().await;
}

#[tokio::test]
async fn half_a_frame_then_silence_is_closed_at_the_handshake_deadline() {
    let server = support::start_with(|config| {
        config.limits.handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream.write_all(&[0, 0, 0, 40, 1, 2]).await.expect("write");
    let started = tokio::time::Instant::now();
    closed_by_server(&mut stream).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    // A connection that sends nothing at all goes the same way.
    let mut silent = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    closed_by_server(&mut silent).await;
    server.shutdown().await;
}

#[tokio::test]
async fn first_message_must_be_a_handshake() {
    let server = support::start().await;
    let mut raw = Raw::connect(server.local_addr()).await;
    raw.send(Ping {}).await;
    let reply = match raw.recv().await.and_then(|message| message.kind) {
        Some(wire::server_message::Kind::HandshakeReply(reply)) => reply,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refused(reply), RefusalReason::BadHandshake);
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_handshake_is_a_protocol_violation() {
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(1)).await;
    raw.send(support::new_session(Duration::from_secs(1))).await;
    assert_eq!(raw.disconnect_reason().await, Some(ErrorCode::BadArguments));
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_protocol_version_is_refused_with_the_supported_range() {
    let server = support::start().await;
    let mut raw = Raw::connect(server.local_addr()).await;
    let reply = raw
        .handshake(Handshake {
            protocol_version: 99,
            requested_timeout_ms: 1000,
            ..Handshake::default()
        })
        .await;
    match reply.outcome {
        Some(wire::handshake_reply::Outcome::Refused(refusal)) => {
            assert_eq!(refusal.reason(), RefusalReason::UnsupportedVersion);
            assert_eq!(
                (refusal.min_supported_version, refusal.max_supported_version),
                (1, 1)
            );
            assert!(refusal.detail.contains("99"), "{}", refusal.detail);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limits_in_total_and_per_ip() {
    let server = support::start_with(|config| {
        config.limits.max_connections = 3;
        config.limits.max_connections_per_ip = 2;
    })
    .await;
    let addr = server.local_addr();
    let (_a, _) = Raw::open(addr, Duration::from_secs(1)).await;
    let (_b, _) = Raw::open(addr, Duration::from_secs(1)).await;
    // Third from 127.0.0.1: over the per-IP limit.
    let mut third = Raw::connect(addr).await;
    let reply = third
        .handshake(support::new_session(Duration::from_secs(1)))
        .await;
    assert_eq!(refused(reply), RefusalReason::TooManyConnections);
    // From 127.0.0.2 (still loopback): the per-IP limit is fine, and so is the total.
    let mut fourth = Raw::connect_from(addr, [127, 0, 0, 2].into()).await;
    let session = support::new_session(Duration::from_secs(1));
    support::granted(fourth.handshake(session).await);
    // Now 3 are open in total: a fourth from anywhere is refused.
    let mut fifth = Raw::connect_from(addr, [127, 0, 0, 3].into()).await;
    let reply = fifth
        .handshake(support::new_session(Duration::from_secs(1)))
        .await;
    assert_eq!(refused(reply), RefusalReason::TooManyConnections);
    server.shutdown().await;
}

#[tokio::test]
async fn ephemerals_per_session_path_and_data_limits() {
    let server = support::start_with(|config| {
        config.limits.tree.max_ephemerals_per_session = 2;
        config.limits.tree.max_path_bytes = 32;
        config.limits.tree.max_data_bytes = 16;
    })
    .await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(1)).await;
    raw.create("/e1", b"", NodeKind::Ephemeral)
        .await
        .expect("first");
    raw.create("/e2", b"", NodeKind::Ephemeral)
        .await
        .expect("second");
    assert_eq!(
        code(raw.create("/e3", b"", NodeKind::Ephemeral).await),
        Some(ErrorCode::TooManyEphemerals)
    );
    let long = format!("/{}", "p".repeat(40));
    assert_eq!(
        code(raw.create(&long, b"", NodeKind::Persistent).await),
        Some(ErrorCode::TooLarge)
    );
    assert_eq!(
        code(raw.create("/d", &[7; 17], NodeKind::Persistent).await),
        Some(ErrorCode::TooLarge)
    );
    // Refusals lose nothing: the session and its nodes are intact.
    raw.create("/d", &[7; 16], NodeKind::Persistent)
        .await
        .expect("at the limit");
    assert!(raw.exists("/e1", false).await.is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn non_positive_xid_is_refused_and_the_connection_stays() {
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(1)).await;
    raw.send(wire::Request {
        xid: 0,
        op: Some(request::Op::Exists(wire::Exists {
            path: "/".to_owned(),
            watch: false,
        })),
    })
    .await;
    match raw.recv().await.and_then(|message| message.kind) {
        Some(wire::server_message::Kind::Reply(reply)) => match reply.result {
            Some(wire::reply::Result::Error(err)) => {
                assert_eq!(err.code(), ErrorCode::BadArguments)
            }
            other => panic!("expected an error, got {other:?}"),
        },
        other => panic!("expected a reply, got {other:?}"),
    }
    raw.ping().await;
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_without_starving_others() {
    // Requests of one connection are handled one at a time; a client that
    // writes faster than it reads is held back by TCP, not buffered by us.
    let server = support::start().await;
    let addr = server.local_addr();
    let (flood, _) = Raw::open(addr, Duration::from_secs(2)).await;
    let (mut bystander, _) = Raw::open(addr, Duration::from_secs(2)).await;
    const N: i32 = 20_000;
    let (mut sink, mut replies) = futures_util::StreamExt::split(flood.framed);
    let writer = tokio::spawn(async move {
        use futures_util::SinkExt;
        for xid in 1..=N {
            let op = request::Op::Exists(wire::Exists {
                path: "/".to_owned(),
                watch: false,
            });
            let message = wire::ClientMessage::from(wire::Request { xid, op: Some(op) });
            sink.feed(message).await.expect("feed");
        }
        sink.flush().await.expect("flush");
        sink
    });
    // Reading nothing yet: the flood backs up in TCP while others are served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    bystander.ping().await;
    for expected in 1..=N {
        let next = tokio::time::timeout(
            support::PATIENCE,
            futures_util::StreamExt::next(&mut replies),
        );
        match next
            .await
            .expect("reply in time")
            .expect("open")
            .expect("decodes")
            .kind
        {
            Some(wire::server_message::Kind::Reply(reply)) => assert_eq!(reply.xid, expected),
            other => panic!("expected reply {expected}, got {other:?}"),
        }
    }
    let _sink = writer.await.expect("writer finishes");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_operation_is_unimplemented_and_the_connection_stays() {
    // Reference: session-wire's versioning rule. A request whose operation
    // this version does not know arrives with the oneof unset.
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(1)).await;
    raw.send(wire::Request { xid: 5, op: None }).await;
    match raw.recv().await.and_then(|message| message.kind) {
        Some(wire::server_message::Kind::Reply(reply)) => {
            assert_eq!(reply.xid, 5);
            match reply.result {
                Some(wire::reply::Result::Error(err)) => {
                    assert_eq!(err.code(), ErrorCode::Unimplemented)
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
        other => panic!("expected a reply, got {other:?}"),
    }
    raw.ping().await;
    assert!(raw.exists("/", false).await.is_some());
    server.shutdown().await;
}
