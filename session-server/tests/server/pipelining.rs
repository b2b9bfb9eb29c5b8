//! Pipelining: a connection may write many requests before reading any
//! reply; every one is answered, in request order, with the result it would
//! have had alone; and the server holds at most `max_requests_in_flight`
//! requests of a connection read but unanswered on the wire.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use session_server::OpKind;
use session_wire::ClientCodec;
use session_wire::v1::{self as wire, ErrorCode, NodeKind, Ping, reply, request, server_message};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::FramedRead;

use crate::support::{self, BIG, PATIENCE, Raw};

/// What the reply at one position must be, given every request before it.
#[derive(Debug)]
enum Expected {
    Created { path: &'static str, zxid: u64 },
    Set { version: i32, zxid: u64 },
    Deleted { zxid: u64 },
    Data { data: Bytes, version: i32 },
    Exists { version: Option<i32> },
    Error(ErrorCode),
}

/// The nodes of the model: data and version by path.
type Model = HashMap<&'static str, (Bytes, i32)>;

/// Request `index` of the pipeline and what it must be answered; `zxid` is
/// the server's zxid before it, advanced when the request changes the tree.
fn step(index: usize, model: &mut Model, zxid: &mut u64) -> (request::Op, Expected) {
    const PATHS: [&str; 3] = ["/p/a", "/p/b", "/p/c"];
    let path = PATHS[index % PATHS.len()];
    let round = index / PATHS.len();
    let data = Bytes::from(format!("{index}"));
    let node = model.get(path).cloned();
    let mut write = |model: &mut Model, value: Option<(Bytes, i32)>| {
        *zxid += 1;
        match value {
            Some(value) => model.insert(path, value),
            None => model.remove(path),
        };
        *zxid
    };
    match (round % 6, node) {
        (0, None) => {
            let op = create(path, &data);
            let zxid = write(model, Some((data, 0)));
            (op, Expected::Created { path, zxid })
        }
        (0, Some(_)) => (create(path, &data), Expected::Error(ErrorCode::NodeExists)),
        (1, Some((_, version))) => {
            let op = set(path, &data, -1);
            let zxid = write(model, Some((data, version + 1)));
            let version = version + 1;
            (op, Expected::Set { version, zxid })
        }
        (1 | 4, None) => (set(path, &data, -1), Expected::Error(ErrorCode::NoNode)),
        (2, Some((data, version))) => (get(path), Expected::Data { data, version }),
        (2, None) => (get(path), Expected::Error(ErrorCode::NoNode)),
        (3, node) => (
            exists(path),
            Expected::Exists {
                version: node.map(|(_, version)| version),
            },
        ),
        // A set naming the version it expects: right half the time.
        (4, Some((_, version))) if round % 12 == 4 => {
            let op = set(path, &data, version);
            let zxid = write(model, Some((data, version + 1)));
            let version = version + 1;
            (op, Expected::Set { version, zxid })
        }
        (4, Some((_, version))) => (
            set(path, &data, version + 7),
            Expected::Error(ErrorCode::BadVersion),
        ),
        // Deleted one round in three, so that creates succeed again.
        (5, Some((_, version))) if round % 18 == 5 => {
            let op = delete(path, version);
            let zxid = write(model, None);
            (op, Expected::Deleted { zxid })
        }
        (5, node) => (
            exists(path),
            Expected::Exists {
                version: node.map(|(_, version)| version),
            },
        ),
        _ => unreachable!("round % 6 is below 6"),
    }
}

fn create(path: &str, data: &Bytes) -> request::Op {
    request::Op::Create(wire::Create {
        acl: Vec::new(),
        ttl_ms: 0,
        path: path.to_owned(),
        data: data.clone(),
        kind: NodeKind::Persistent.into(),
        sequential: false,
    })
}

fn set(path: &str, data: &Bytes, version: i32) -> request::Op {
    request::Op::SetData(wire::SetData {
        path: path.to_owned(),
        data: data.clone(),
        expected_version: Some(version),
    })
}

fn get(path: &str) -> request::Op {
    request::Op::GetData(wire::GetData {
        path: path.to_owned(),
        watch: false,
    })
}

fn exists(path: &str) -> request::Op {
    request::Op::Exists(wire::Exists {
        path: path.to_owned(),
        watch: false,
    })
}

fn delete(path: &str, version: i32) -> request::Op {
    request::Op::Delete(wire::Delete {
        path: path.to_owned(),
        expected_version: Some(version),
    })
}

fn op_kind(op: &request::Op) -> OpKind {
    match op {
        request::Op::Create(_) => OpKind::create,
        request::Op::Delete(_) => OpKind::delete,
        request::Op::GetData(_) => OpKind::get_data,
        request::Op::SetData(_) => OpKind::set_data,
        request::Op::Exists(_) => OpKind::exists,
        request::Op::GetChildren(_) => OpKind::get_children,
        request::Op::SetWatches(_) => OpKind::set_watches,
        request::Op::Sync(_) => OpKind::sync,
        other => panic!("the pipelining test sends no {other:?}"),
    }
}

/// Checks one reply against its expectation; `zxid` is the server's zxid
/// when it was answered (a read's reply carries it).
fn check(position: usize, reply: &wire::Reply, expected: &Expected, zxid: u64) {
    let at = |what: &str| format!("reply {position} (xid {}): {what}", reply.xid);
    let result = reply.result.as_ref().expect("a result");
    match (expected, result) {
        (Expected::Created { path, zxid }, reply::Result::Create(created)) => {
            let stat = created.stat.as_ref().expect("stat");
            assert_eq!(created.path, *path, "{}", at("path"));
            assert_eq!(
                (reply.zxid, stat.czxid, stat.mzxid, stat.version),
                (*zxid, *zxid, *zxid, 0),
                "{}",
                at("a create is stamped with its own zxid, version 0")
            );
        }
        (Expected::Set { version, zxid }, reply::Result::SetData(set)) => {
            let stat = set.stat.as_ref().expect("stat");
            assert_eq!(
                (reply.zxid, stat.mzxid, stat.version),
                (*zxid, *zxid, *version),
                "{}",
                at("a set is stamped with its zxid and bumps the version by one")
            );
        }
        (Expected::Deleted { zxid }, reply::Result::Delete(_)) => {
            assert_eq!(reply.zxid, *zxid, "{}", at("a delete's zxid"));
        }
        (Expected::Data { data, version }, reply::Result::GetData(got)) => {
            let stat = got.stat.as_ref().expect("stat");
            assert_eq!(
                (&got.data, stat.version),
                (data, *version),
                "{}",
                at("data and version as of the writes before it")
            );
            assert_eq!(reply.zxid, zxid, "{}", at("a read's zxid"));
        }
        (Expected::Exists { version }, reply::Result::Exists(got)) => {
            let got = got.stat.as_ref().map(|stat| stat.version);
            assert_eq!(got, *version, "{}", at("existence and version"));
            assert_eq!(reply.zxid, zxid, "{}", at("a read's zxid"));
        }
        (Expected::Error(code), reply::Result::Error(error)) => {
            assert_eq!(error.code(), *code, "{}: {}", at("error"), error.detail);
            assert_eq!(
                reply.zxid,
                zxid,
                "{}",
                at("a refused write changes nothing")
            );
        }
        (expected, got) => panic!("{}", at(&format!("expected {expected:?}, got {got:?}"))),
    }
}

#[tokio::test]
async fn ten_thousand_pipelined_requests_get_ten_thousand_replies_in_order_each_correct() {
    pipelined_requests_get_replies_in_order_each_correct(support::start().await, 10_000).await;
}

/// The same on a durable server, where a connection hands its writes to the
/// Raft engine without waiting for each (they share log entries): a write
/// prepared before the connection's earlier writes were applied must still
/// get the answer the model gives (BadVersion, NoNode and NodeExists only
/// where due), with its own zxid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_on_a_durable_server_get_replies_in_order_each_correct() {
    let dir = std::env::temp_dir().join(format!(
        "session-server-pipelined-durable-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let server = support::start_with(|config| {
        config.storage = session_server::Storage::Disk(dir.clone());
    })
    .await;
    pipelined_requests_get_replies_in_order_each_correct(server, 3_000).await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn pipelined_requests_get_replies_in_order_each_correct(
    server: session_server::Server,
    n: usize,
) {
    #[allow(non_snake_case)]
    let N = n;
    let (mut raw, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    raw.create("/p", b"", NodeKind::Persistent)
        .await
        .expect("parent");
    let mut zxid = raw.exists("/p", false).await.expect("parent").czxid;
    let metrics = server.metrics();
    let before: Vec<u64> = OpKind::ALL
        .iter()
        .map(|&kind| metrics.op_count(kind))
        .collect();

    let mut model = Model::new();
    let mut wire_bytes = BytesMut::new();
    let mut expected = Vec::with_capacity(N);
    let mut counts: HashMap<OpKind, u64> = HashMap::new();
    for index in 0..N {
        let (op, expect) = step(index, &mut model, &mut zxid);
        *counts.entry(op_kind(&op)).or_default() += 1;
        let xid = i32::try_from(index + 1).expect("small");
        support::frame(wire::Request { xid, op: Some(op) }, &mut wire_bytes);
        let zxid_then = zxid;
        expected.push((expect, zxid_then));
    }
    let final_zxid = zxid;

    let (read, mut write) = raw.framed.into_inner().into_split();
    // Every request is written before any reply is read.
    let writer = tokio::spawn(async move {
        write.write_all(&wire_bytes).await.expect("write");
        write.flush().await.expect("flush");
        write
    });
    let mut write = tokio::time::timeout(PATIENCE, writer)
        .await
        .expect(
            "10,000 requests fit in the socket buffers and the server's in-flight allowance \
             without the client reading",
        )
        .expect("writer");

    let mut replies = FramedRead::new(read, ClientCodec::new());
    for (position, (expected, zxid)) in expected.iter().enumerate() {
        let message = tokio::time::timeout(PATIENCE, replies.next())
            .await
            .expect("the next reply within PATIENCE")
            .expect("the connection stays open")
            .expect("a well-formed message");
        let reply = match message.kind {
            Some(server_message::Kind::Reply(reply)) => reply,
            other => panic!("expected reply {position}, got {other:?}"),
        };
        assert_eq!(
            reply.xid,
            i32::try_from(position + 1).expect("small"),
            "replies in request order"
        );
        check(position, &reply, expected, *zxid);
    }
    // Exactly N: the next message answers a ping sent now.
    let mut ping = BytesMut::new();
    support::frame(Ping {}, &mut ping);
    write.write_all(&ping).await.expect("write");
    let next = tokio::time::timeout(PATIENCE, replies.next())
        .await
        .expect("pong within PATIENCE")
        .expect("open")
        .expect("well-formed");
    assert!(
        matches!(next.kind, Some(server_message::Kind::Pong(_))),
        "after {N} replies the next message is the pong, got {next:?}"
    );
    assert_eq!(
        server.node_count(),
        2 + model.len(),
        "root, /p and the model's nodes"
    );
    for (index, &kind) in OpKind::ALL.iter().enumerate() {
        let want = counts.get(&kind).copied().unwrap_or(0) + u64::from(kind == OpKind::ping);
        assert_eq!(
            metrics.op_count(kind) - before[index],
            want,
            "{kind:?} requests answered"
        );
    }
    assert_eq!(
        raw_zxid_after(&mut write, &mut replies).await,
        final_zxid,
        "the server's zxid is the model's: every successful write applied once"
    );
    server.shutdown().await;
}

/// A client whose own send buffer is small, so that its writes stall after
/// a few tens of KB once the server stops reading.
async fn with_small_send_buffer(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_send_buffer_size(64 * 1024).expect("SO_SNDBUF");
    socket.connect(addr).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_8_in_flight_the_server_reads_no_9th_request_until_replies_are_written() {
    const LIMIT: usize = 8;
    let server = support::start_with(|config| config.limits.max_requests_in_flight = LIMIT).await;
    let addr = server.local_addr();
    let (mut setup, _) = Raw::open(addr, Duration::from_secs(2)).await;
    setup
        .create("/big", &vec![7u8; BIG], NodeKind::Persistent)
        .await
        .expect("a node at the default data limit");
    setup.send(session_wire::v1::CloseSession {}).await;
    while setup.recv().await.is_some() {}

    let mut raw = Raw::from_stream(with_small_send_buffer(addr).await);
    // The longest timeout: the connection must outlive its own stall for
    // the whole test, as a slow reader's would.
    support::granted(
        raw.handshake(support::new_session(Duration::from_secs(2)))
            .await,
    );
    let stream = raw.framed.into_inner();
    let metrics = server.metrics();

    // 1. Large replies, one at a time, until one no longer fits in the
    // kernel's buffers: from then on the server's socket takes nothing, and
    // every reply the server makes stays in its own output, unanswered.
    let mut xid = 0;
    let mut next_xid = move || {
        xid += 1;
        xid
    };
    let mut gets = 0;
    loop {
        assert!(gets < 64, "{gets} replies of 512 KiB were all written");
        let mut bytes = BytesMut::new();
        support::frame(support::get_data(next_xid(), "/big"), &mut bytes);
        let written = support::written_to(&stream).expect("connection listed");
        support::write_all_to(&stream, &bytes).await;
        gets += 1;
        if support::settled_writes(&stream).await - written < BIG as u64 {
            break;
        }
    }

    // 2. Small requests, as fast as the socket takes them, until it takes no
    // more. With the partly written reply, the server may hold 8 requests
    // read but unanswered: so it reads exactly 7 of these, and no more
    // however long they wait.
    let exists_before = metrics.op_count(OpKind::exists);
    let batch = || {
        let mut bytes = BytesMut::new();
        for _ in 0..256 {
            support::frame(support::exists(next_xid(), "/big"), &mut bytes);
        }
        (bytes, 256)
    };
    let flood = support::write_until_stalled(&stream, batch, 64 << 20).await;
    let read_then = metrics.op_count(OpKind::exists) - exists_before;
    tokio::time::sleep(support::QUIET * 3).await;
    let read_later = metrics.op_count(OpKind::exists) - exists_before;
    assert_eq!(
        (read_then, read_later),
        (LIMIT as u64 - 1, LIMIT as u64 - 1),
        "with the 512 KiB reply unwritten, the server answers exactly {} of the {} small \
         requests written ({} bytes) and reads no more",
        LIMIT - 1,
        flood.requests,
        flood.bytes
    );

    // 3. The client reads: everything arrives, in order.
    let mut reader = support::Reader::default();
    let rest = flood.rest.clone();
    let read_all = async {
        for expected in 1..=gets {
            let reply = reader.reply(&stream).await;
            assert_eq!(reply.xid, expected, "the large replies first");
            match reply.result {
                Some(reply::Result::GetData(got)) => assert_eq!(got.data.len(), BIG),
                other => panic!("expected the data, got {other:?}"),
            }
        }
        for expected in gets + 1..=gets + i32::try_from(flood.requests).expect("fits") {
            let reply = reader.reply(&stream).await;
            assert_eq!(reply.xid, expected, "replies in request order");
            assert!(
                matches!(reply.result, Some(reply::Result::Exists(ref got)) if got.stat.is_some()),
                "reply {expected}: {reply:?}"
            );
        }
    };
    tokio::join!(support::write_all_to(&stream, &rest), read_all);
    assert_eq!(
        metrics.op_count(OpKind::exists) - exists_before,
        flood.requests as u64
    );
    server.shutdown().await;
}

/// The zxid of the server's state now, as a read reports it.
async fn raw_zxid_after(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    replies: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, ClientCodec>,
) -> u64 {
    let mut bytes = BytesMut::new();
    support::frame(support::exists(i32::MAX, "/"), &mut bytes);
    write.write_all(&bytes).await.expect("write");
    let message = tokio::time::timeout(PATIENCE, replies.next())
        .await
        .expect("reply within PATIENCE")
        .expect("open")
        .expect("well-formed");
    match message.kind {
        Some(server_message::Kind::Reply(reply)) if reply.xid == i32::MAX => reply.zxid,
        other => panic!("expected the reply to xid {}, got {other:?}", i32::MAX),
    }
}

/// Requests already read into the connection's buffer must be handled once
/// the in-flight room frees, even when the socket has nothing new to read.
/// Bound: all 100 answered, in order, while the session lives (a client
/// waiting for replies sends nothing else, so a server that stops
/// answering lets the 2 s session expire).
#[tokio::test]
async fn a_burst_of_100_requests_past_an_in_flight_limit_of_8_is_answered_in_full() {
    const N: i32 = 100;
    let server = support::start_with(|config| config.limits.max_requests_in_flight = 8).await;
    let (raw, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    let stream = raw.framed.into_inner();
    let mut bytes = BytesMut::new();
    for xid in 1..=N {
        support::frame(support::exists(xid, "/"), &mut bytes);
    }
    support::write_all_to(&stream, &bytes).await;
    let mut reader = support::Reader::default();
    for xid in 1..=N {
        match reader.next(&stream).await.and_then(|message| message.kind) {
            Some(server_message::Kind::Reply(reply)) => assert_eq!(reply.xid, xid),
            other => panic!(
                "reply {xid} of {N}: got {other:?} ({} exists answered by the server)",
                server.metrics().op_count(OpKind::exists)
            ),
        }
    }
    server.shutdown().await;
}
