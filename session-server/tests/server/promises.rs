//! The protocol's promises (session-wire/proto/session/v1/session.proto),
//! one test each, where the other files do not already show them: every
//! refusal reason and error code the server produces, as documented.
//!
//! Already shown elsewhere: EXPIRED and AUTH_FAILED (lifecycle, expiry),
//! UNSUPPORTED_VERSION for version 99 and BAD_HANDSHAKE for a first message
//! that is a ping or a 3-byte password (hostile, lifecycle),
//! TOO_MANY_CONNECTIONS in total and per IP (hostile), SESSION_MOVED and
//! SESSION_EXPIRED disconnects (lifecycle, expiry), the namespace codes
//! (watches), TOO_LARGE for paths and data, TOO_MANY_EPHEMERALS,
//! BAD_ARGUMENTS for xids, node kinds, bad frames and a second handshake,
//! UNIMPLEMENTED (hostile), SERVER_SHUTTING_DOWN to a session (lifecycle),
//! TOO_MANY_WATCHES and QUOTA_EXCEEDED (limits).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use session_wire::v1::{
    self as wire, ClientMessage, ErrorCode, Handshake, HandshakeRefusal, NodeKind, RefusalReason,
    handshake_reply, reply, request, server_message,
};
use session_wire::{MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{self, PATIENCE, Raw, code, granted};

/// Sends `handshake` on a new connection; returns the refusal, after
/// checking the server then closes the connection as documented.
async fn refusal(
    addr: std::net::SocketAddr,
    handshake: impl Into<ClientMessage>,
) -> HandshakeRefusal {
    let mut raw = Raw::connect(addr).await;
    raw.send(handshake).await;
    let reply = match raw.recv().await.and_then(|message| message.kind) {
        Some(server_message::Kind::HandshakeReply(reply)) => reply,
        other => panic!("expected a handshake reply, got {other:?}"),
    };
    let refusal = match reply.outcome {
        Some(handshake_reply::Outcome::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        (refusal.min_supported_version, refusal.max_supported_version),
        (MIN_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION),
        "every refusal carries the supported range"
    );
    assert!(!refusal.detail.is_empty(), "a refusal says why");
    assert!(
        raw.recv().await.is_none(),
        "the server closes the connection after a refusal"
    );
    refusal
}

fn handshake(timeout_ms: u32, session_id: u64, password: &[u8], last_zxid_seen: u64) -> Handshake {
    Handshake {
        protocol_version: PROTOCOL_VERSION,
        requested_timeout_ms: timeout_ms,
        session_id,
        password: Bytes::copy_from_slice(password),
        last_zxid_seen,
        ..Handshake::default()
    }
}

#[tokio::test]
async fn a_client_ahead_of_the_server_is_refused_zxid_ahead_and_one_level_with_it_is_granted() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (_first, first) = Raw::open(addr, Duration::from_secs(2)).await;
    // Nothing has happened since: the server is at the zxid it granted with.
    let current = first.zxid;
    for ahead in [current + 1, current + 1_000_000, u64::MAX] {
        let refusal = refusal(addr, handshake(1000, 0, &[], ahead)).await;
        assert_eq!(refusal.reason(), RefusalReason::ZxidAhead, "{ahead:#x}");
        assert!(
            refusal.detail.contains(&format!("{ahead:#x}")),
            "the detail names the client's zxid: {}",
            refusal.detail
        );
    }
    assert_eq!(server.session_count(), 1, "no session was created");
    let mut level = Raw::connect(addr).await;
    let session = granted(level.handshake(handshake(1000, 0, &[], current)).await);
    assert_eq!(
        session.zxid,
        current + 1,
        "granted, and the session's creation is the next zxid"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_reattach_ahead_of_the_server_is_refused_and_leaves_the_session_where_it_was() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut owner, session) = Raw::open(addr, Duration::from_secs(2)).await;
    owner
        .create("/mark", b"", NodeKind::Ephemeral)
        .await
        .expect("create");
    let current = owner.zxid().await;
    let ahead = handshake(2000, session.session_id, &session.password, current + 1);
    assert_eq!(
        refusal(addr, ahead).await.reason(),
        RefusalReason::ZxidAhead
    );
    // The session did not move: its connection works and was told nothing,
    // and nothing was written.
    owner.ping().await;
    assert!(owner.exists("/mark", false).await.is_some());
    assert_eq!(owner.zxid().await, current);

    // The session is checked before the zxid: a closed one is Expired, so a
    // client does not go looking for a server that has it.
    let (mut closing, gone) = Raw::open(addr, Duration::from_secs(2)).await;
    closing.send(wire::CloseSession {}).await;
    while closing.recv().await.is_some() {}
    let ahead = handshake(2000, gone.session_id, &gone.password, u64::MAX);
    assert_eq!(refusal(addr, ahead).await.reason(), RefusalReason::Expired);

    // Level with the server, the reattach is granted and the session moves.
    let zxid_now = owner.zxid().await;
    let mut mover = Raw::connect(addr).await;
    let level = handshake(2000, session.session_id, &session.password, zxid_now);
    let moved = granted(mover.handshake(level).await);
    assert!(moved.reattached);
    assert_eq!(
        owner.disconnect_reason().await,
        Some(ErrorCode::SessionMoved)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn each_documented_malformed_handshake_is_refused_bad_handshake() {
    let server = support::start().await;
    let addr = server.local_addr();
    let (mut owner, session) = Raw::open(addr, Duration::from_secs(2)).await;
    let cases: Vec<(&str, ClientMessage)> = vec![
        (
            "a password without a session id",
            handshake(1000, 0, &session.password, 0).into(),
        ),
        (
            "a 15-byte password",
            handshake(1000, session.session_id, &session.password[..15], 0).into(),
        ),
        (
            "a 17-byte password",
            handshake(
                1000,
                session.session_id,
                &[session.password.to_vec(), vec![0]].concat(),
                0,
            )
            .into(),
        ),
        (
            "an empty password with a session id",
            handshake(1000, session.session_id, &[], 0).into(),
        ),
        ("a zero timeout", handshake(0, 0, &[], 0).into()),
        (
            "a zero timeout on a reattach",
            handshake(0, session.session_id, &session.password, 0).into(),
        ),
        (
            "a first message of a kind the server does not know",
            ClientMessage { kind: None },
        ),
    ];
    for (case, message) in cases {
        let refusal = refusal(addr, message).await;
        assert_eq!(refusal.reason(), RefusalReason::BadHandshake, "{case}");
    }
    assert_eq!(server.session_count(), 1, "no session was created");
    // The session the malformed reattaches named is untouched.
    owner.ping().await;
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_versions_0_and_2_are_refused_unsupported_with_the_range() {
    let server = support::start().await;
    for version in [0, MAX_PROTOCOL_VERSION + 1] {
        let mut message = handshake(1000, 0, &[], 0);
        message.protocol_version = version;
        let refusal = refusal(server.local_addr(), message).await;
        assert_eq!(refusal.reason(), RefusalReason::UnsupportedVersion);
        assert!(
            refusal.detail.contains(&version.to_string()),
            "{}",
            refusal.detail
        );
    }
    assert_eq!(server.session_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_still_in_its_handshake_is_refused_shutting_down_within_the_grace() {
    let grace = Duration::from_secs(1);
    let server = support::start_with(|config| config.shutdown_grace = grace).await;
    let addr = server.local_addr();
    let silent = TcpStream::connect(addr).await.expect("connect");
    let mut halfway = TcpStream::connect(addr).await.expect("connect");
    halfway
        .write_all(&[0, 0, 0, 40, 1, 2])
        .await
        .expect("half a frame");
    // Both accepted, neither has a session.
    let waited = Instant::now();
    while server.metrics().connections.get() < 2 {
        assert!(waited.elapsed() < PATIENCE, "connections not accepted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.session_count(), 0);

    let started = Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    for stream in [&silent, &halfway] {
        let mut reader = support::Reader::default();
        match reader.next(stream).await.and_then(|message| message.kind) {
            Some(server_message::Kind::HandshakeReply(reply)) => match reply.outcome {
                Some(handshake_reply::Outcome::Refused(refusal)) => {
                    assert_eq!(refusal.reason(), RefusalReason::ShuttingDown);
                }
                other => panic!("expected a refusal, got {other:?}"),
            },
            other => panic!("expected a handshake reply, got {other:?}"),
        }
        assert!(reader.next(stream).await.is_none(), "then closed");
    }
    assert!(
        started.elapsed() <= grace,
        "refused after {:?}, beyond the {grace:?} grace",
        started.elapsed()
    );
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown completes")
        .expect("shutdown task");
}

#[tokio::test]
async fn expected_version_below_minus_1_is_bad_arguments_and_minus_1_or_absent_means_any() {
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    raw.create("/v", b"v0", NodeKind::Persistent)
        .await
        .expect("create");
    for version in [-2, i32::MIN] {
        let refused = raw.set("/v", b"no", version).await;
        let detail = refused.as_ref().err().map(|err| err.detail.clone());
        assert_eq!(
            code(refused),
            Some(ErrorCode::BadArguments),
            "set {version}"
        );
        assert!(
            detail.is_some_and(|detail| detail.contains(&version.to_string())),
            "the detail names the version"
        );
        assert_eq!(
            code(raw.delete("/v", version).await),
            Some(ErrorCode::BadArguments),
            "delete {version}"
        );
    }
    let (data, stat) = raw.get("/v", false).await.expect("still there");
    assert_eq!(
        (&data[..], stat.version),
        (&b"v0"[..], 0),
        "nothing changed"
    );

    // -1 and absent both match any version.
    assert_eq!(
        raw.set("/v", b"v1", -1).await.expect("-1 is any").version,
        1
    );
    let absent = request::Op::SetData(wire::SetData {
        path: "/v".to_owned(),
        data: Bytes::from_static(b"v2"),
        expected_version: None,
    });
    match raw.request(absent).await {
        Ok(reply::Result::SetData(set)) => assert_eq!(set.stat.expect("stat").version, 2),
        other => panic!("absent is any: {other:?}"),
    }
    raw.create("/w", b"", NodeKind::Persistent)
        .await
        .expect("create");
    raw.set("/w", b"w1", -1).await.expect("set");
    raw.delete("/v", -1).await.expect("-1 deletes any version");
    let absent = request::Op::Delete(wire::Delete {
        path: "/w".to_owned(),
        expected_version: None,
    });
    raw.request(absent)
        .await
        .expect("absent deletes any version");
    assert_eq!(server.node_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_message_of_unknown_kind_after_the_handshake_disconnects_with_bad_arguments() {
    // "Unset (a kind this peer does not know) is a protocol error: the
    // server closes the connection."
    let server = support::start().await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    raw.send(ClientMessage { kind: None }).await;
    assert_eq!(raw.disconnect_reason().await, Some(ErrorCode::BadArguments));
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_refused_too_many_connections_holds_no_slot_and_a_closed_one_gives_its_back() {
    let server = support::start_with(|config| config.limits.max_connections = 1).await;
    let addr = server.local_addr();
    let (mut first, _) = Raw::open(addr, Duration::from_secs(2)).await;
    for _ in 0..3 {
        let refusal = refusal(addr, support::new_session(Duration::from_secs(2))).await;
        assert_eq!(refusal.reason(), RefusalReason::TooManyConnections);
    }
    assert_eq!(server.metrics().connections.get(), 1);
    first.send(wire::CloseSession {}).await;
    while first.recv().await.is_some() {}
    let (mut second, _) = Raw::open(addr, Duration::from_secs(2)).await;
    second.ping().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reply_over_the_frame_limit_is_too_large_for_that_request_and_the_connection_stays() {
    // "TOO_LARGE: The path, data or frame is larger than the server allows."
    // Every request fits a 4 KiB frame; the list of 120 children of 32
    // bytes each does not.
    let server = support::start_with(|config| config.limits.max_frame_bytes = 4096).await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    raw.create("/kids", b"", NodeKind::Persistent)
        .await
        .expect("create");
    for index in 0..120 {
        let path = format!("/kids/{index:032}");
        raw.create(&path, b"", NodeKind::Persistent)
            .await
            .expect("each request fits");
    }
    let refused = raw.children("/kids", false).await;
    let detail = refused.as_ref().err().map(|err| err.detail.clone());
    assert_eq!(code(refused), Some(ErrorCode::TooLarge));
    assert!(
        detail.is_some_and(|detail| detail.contains("frame")),
        "the detail says it is the frame"
    );
    // Only that request: the connection and everything else carry on.
    let stat = raw.exists("/kids", false).await.expect("the node is there");
    assert_eq!(stat.num_children, 120);
    raw.children(&format!("/kids/{:032}", 7), false)
        .await
        .expect("a short list");
    raw.ping().await;
    server.shutdown().await;
}

/// Writes `request` as one frame of any size (the test codec's own limit is
/// 1 MiB) and returns its reply's result.
async fn big_request(raw: &mut Raw, xid: i32, op: request::Op) -> reply::Result {
    let mut bytes = BytesMut::new();
    support::frame(wire::Request { xid, op: Some(op) }, &mut bytes);
    let stream = raw.framed.get_mut();
    stream.write_all(&bytes).await.expect("write");
    match raw.recv().await.and_then(|message| message.kind) {
        Some(server_message::Kind::Reply(reply)) if reply.xid == xid => {
            reply.result.expect("result")
        }
        other => panic!("expected the reply to {xid}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reply_of_the_largest_size_a_frame_allows_is_sent_or_refused_never_dropped() {
    // Frontend::encode: "A reply too large for the protocol's frame limit is
    // replaced by a TooLarge error reply to the same request, so a client
    // always gets an answer." The frame body is a ServerMessage, one tag and
    // a length varint around the Reply: 5 bytes once the reply reaches
    // 2 MiB. So with 3 MiB frames, a reply of the frame limit less the
    // 4-byte length prefix must be answered one way or the other.
    const MAX_FRAME: usize = 3 << 20;
    let server = support::start_with(|config| {
        config.limits.max_frame_bytes = MAX_FRAME;
        config.limits.tree.max_data_bytes = MAX_FRAME;
    })
    .await;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    const XID: i32 = 1000;
    let target = MAX_FRAME - session_wire::LENGTH_PREFIX_LEN;
    let mut len = target - 100;
    let create = request::Op::Create(wire::Create {
        acl: Vec::new(),
        ttl_ms: 0,
        path: "/edge".to_owned(),
        data: Bytes::from(vec![1; len]),
        kind: NodeKind::Persistent.into(),
        sequential: false,
    });
    big_request(&mut raw, 1, create).await;
    // Size the data so that the GetData reply is exactly `target` bytes: the
    // reply carries the node's stat and the server's zxid, which is the
    // node's mzxid as nothing else is written.
    let mut attempts = 0;
    loop {
        let stat = raw.exists("/edge", false).await.expect("exists");
        let reply = wire::Reply {
            xid: XID,
            zxid: stat.mzxid,
            result: Some(reply::Result::GetData(wire::GetDataResult {
                data: Bytes::from(vec![1; len]),
                stat: Some(stat),
            })),
        };
        let size = reply.encoded_len();
        if size == target {
            break;
        }
        attempts += 1;
        assert!(
            attempts < 10,
            "cannot size the reply: {size} for {len} bytes of data"
        );
        len = len + target - size;
        let set = request::Op::SetData(wire::SetData {
            path: "/edge".to_owned(),
            data: Bytes::from(vec![1; len]),
            expected_version: None,
        });
        big_request(&mut raw, 2 + attempts, set).await;
    }

    let mut stream = raw.framed.into_inner();
    let mut bytes = BytesMut::new();
    support::frame(support::get_data(XID, "/edge"), &mut bytes);
    support::frame(wire::Ping {}, &mut bytes);
    stream.write_all(&bytes).await.expect("write");
    let max = u32::try_from(MAX_FRAME).expect("small");
    let mut reader = support::Reader::with_max_frame_len(max);
    match reader.next(&stream).await.and_then(|message| message.kind) {
        Some(server_message::Kind::Reply(reply)) => {
            assert_eq!(reply.xid, XID);
            match reply.result {
                Some(reply::Result::GetData(got)) => assert_eq!(got.data.len(), len),
                Some(reply::Result::Error(error)) => {
                    assert_eq!(error.code(), ErrorCode::TooLarge);
                }
                other => panic!("unexpected result {other:?}"),
            }
        }
        other => panic!(
            "the reply to xid {XID} ({target} bytes, {len} of data) was not sent: the next \
             message is {other:?}"
        ),
    }
    server.shutdown().await;
}
