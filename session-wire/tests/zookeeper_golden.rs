//! Golden byte vectors of ZooKeeper's client protocol, captured from a real
//! ZooKeeper 3.8.0 server talking to zkCli.sh (the Java client) and to the
//! Rust `zookeeper-client` 0.11.2; `tests/golden/zookeeper/README.md` says
//! how. Every frame must decode, say what the capture says, and re-encode
//! to the same bytes; every prefix of it must be a typed error.
#![cfg(feature = "zookeeper")]

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use session_wire::zookeeper::{
    Acl, ClientInfo, ConnectRequest, ConnectResponse, ErrorCode, ErrorResponse, EventType,
    JUTE_MAX_BUFFER, JuteRecord, KeeperState, MultiOp, MultiResult, OpCode, Reply, Request,
    Response, decode_reply, decode_request, encode_frame, encode_request, perms,
};
use session_wire::{FrameDecoder, FrameError};

/// What a golden frame is, as far as decoding needs to know.
#[derive(Debug, Clone, Copy)]
enum Kind {
    ConnectRequest,
    ConnectResponse,
    /// A request with this opcode.
    Request(OpCode),
    /// The reply to a request with this opcode (or a notification).
    Reply(OpCode),
}

use Kind::{ConnectRequest as Connect, ConnectResponse as Connected, Reply as R, Request as Q};

const GOLDEN: &[(&str, Kind)] = &[
    // zkCli.sh session (Java client 3.8.0).
    ("c2s-connect-request.bin", Connect),
    ("s2c-connect-response.bin", Connected),
    ("c2s-create-persistent.bin", Q(OpCode::Create)),
    ("s2c-create-persistent.bin", R(OpCode::Create)),
    ("c2s-create-ephemeral.bin", Q(OpCode::Create)),
    ("s2c-create-ephemeral.bin", R(OpCode::Create)),
    ("c2s-create-persistent-sequential.bin", Q(OpCode::Create)),
    ("s2c-create-persistent-sequential.bin", R(OpCode::Create)),
    ("c2s-get-data.bin", Q(OpCode::GetData)),
    ("s2c-get-data.bin", R(OpCode::GetData)),
    ("c2s-set-data.bin", Q(OpCode::SetData)),
    ("s2c-set-data.bin", R(OpCode::SetData)),
    ("c2s-exists-missing.bin", Q(OpCode::Exists)),
    ("s2c-exists-missing.bin", R(OpCode::Exists)),
    ("c2s-get-children2-watch.bin", Q(OpCode::GetChildren2)),
    ("s2c-get-children2-watch.bin", R(OpCode::GetChildren2)),
    ("c2s-create-watched-child.bin", Q(OpCode::Create)),
    (
        "s2c-notification-node-children-changed.bin",
        R(OpCode::Notification),
    ),
    ("s2c-create-watched-child.bin", R(OpCode::Create)),
    ("c2s-sync.bin", Q(OpCode::Sync)),
    ("s2c-sync.bin", R(OpCode::Sync)),
    ("c2s-ping.bin", Q(OpCode::Ping)),
    ("s2c-ping.bin", R(OpCode::Ping)),
    ("c2s-close-session.bin", Q(OpCode::CloseSession)),
    ("s2c-close-session.bin", R(OpCode::CloseSession)),
    // zkCli.sh reconnecting with watches.
    ("c2s-connect-request-reattach.bin", Connect),
    ("s2c-connect-response-reattach.bin", Connected),
    ("c2s-set-watches.bin", Q(OpCode::SetWatches)),
    ("s2c-set-watches.bin", R(OpCode::SetWatches)),
    // zookeeper-client 0.11.2 (Rust) session.
    ("c2s-auth.bin", Q(OpCode::Auth)),
    ("s2c-auth.bin", R(OpCode::Auth)),
    ("c2s-create2.bin", Q(OpCode::Create2)),
    ("s2c-create2.bin", R(OpCode::Create2)),
    ("c2s-multi-check.bin", Q(OpCode::Multi)),
    ("s2c-multi-check.bin", R(OpCode::Multi)),
    ("c2s-multi-check-failed.bin", Q(OpCode::Multi)),
    ("s2c-multi-check-failed.bin", R(OpCode::Multi)),
    ("c2s-multi-read.bin", Q(OpCode::MultiRead)),
    ("s2c-multi-read.bin", R(OpCode::MultiRead)),
    ("c2s-add-watch.bin", Q(OpCode::AddWatch)),
    ("s2c-add-watch.bin", R(OpCode::AddWatch)),
    ("c2s-get-ephemerals.bin", Q(OpCode::GetEphemerals)),
    ("s2c-get-ephemerals.bin", R(OpCode::GetEphemerals)),
    (
        "c2s-get-all-children-number.bin",
        Q(OpCode::GetAllChildrenNumber),
    ),
    (
        "s2c-get-all-children-number.bin",
        R(OpCode::GetAllChildrenNumber),
    ),
    ("c2s-who-am-i.bin", Q(OpCode::WhoAmI)),
    ("s2c-who-am-i.bin", R(OpCode::WhoAmI)),
    ("c2s-get-acl.bin", Q(OpCode::GetAcl)),
    ("s2c-get-acl.bin", R(OpCode::GetAcl)),
    ("s2c-notification-node-deleted.bin", R(OpCode::Notification)),
    ("c2s-delete.bin", Q(OpCode::Delete)),
    ("s2c-delete.bin", R(OpCode::Delete)),
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/zookeeper")
}

fn read_golden(name: &str) -> Vec<u8> {
    let path = golden_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The one frame body in a golden file, cut by the crate's `FrameDecoder`
/// with ZooKeeper's limit.
fn body(name: &str) -> Bytes {
    let mut decoder = FrameDecoder::with_max_frame_len(JUTE_MAX_BUFFER);
    decoder.push(&read_golden(name));
    let frame = match decoder.next_frame() {
        Ok(Some(frame)) => frame,
        other => panic!("{name}: expected one frame, got {other:?}"),
    };
    assert_eq!(decoder.finish(), Ok(()), "{name}: bytes after the frame");
    frame
}

/// A decoded golden frame.
#[derive(Debug)]
enum Decoded {
    Connect(ConnectRequest),
    Connected(ConnectResponse),
    Request(i32, Request),
    Reply(Reply),
}

fn decode(kind: Kind, frame: Bytes) -> Result<Decoded, String> {
    match kind {
        Kind::ConnectRequest => ConnectRequest::decode(frame)
            .map(Decoded::Connect)
            .map_err(|err| err.to_string()),
        Kind::ConnectResponse => ConnectResponse::decode(frame)
            .map(Decoded::Connected)
            .map_err(|err| err.to_string()),
        Kind::Request(_) => decode_request(frame)
            .map(|(header, request)| Decoded::Request(header.xid, request))
            .map_err(|err| err.to_string()),
        Kind::Reply(op) => decode_reply(frame, |_| Some(op))
            .map(Decoded::Reply)
            .map_err(|err| err.to_string()),
    }
}

fn encode(decoded: &Decoded) -> BytesMut {
    let mut out = BytesMut::new();
    let result = match decoded {
        Decoded::Connect(request) => encode_frame(request, JUTE_MAX_BUFFER, &mut out),
        Decoded::Connected(response) => encode_frame(response, JUTE_MAX_BUFFER, &mut out),
        Decoded::Request(xid, request) => encode_request(*xid, request, JUTE_MAX_BUFFER, &mut out),
        Decoded::Reply(reply) => reply.encode(JUTE_MAX_BUFFER, &mut out),
    };
    assert_eq!(result, Ok(()));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn decoded(name: &str) -> Decoded {
    let kind = GOLDEN
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, kind)| *kind)
        .unwrap_or_else(|| panic!("{name} is not in GOLDEN"));
    decode(kind, body(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

fn request(name: &str) -> (i32, Request) {
    match decoded(name) {
        Decoded::Request(xid, request) => (xid, request),
        other => panic!("{name}: not a request: {other:?}"),
    }
}

/// The header and body of a golden reply.
fn reply(name: &str) -> (session_wire::zookeeper::ReplyHeader, Option<Response>) {
    match decoded(name) {
        Decoded::Reply(Reply::Response { header, body, .. }) => (header, body),
        other => panic!("{name}: not a reply: {other:?}"),
    }
}

fn open_acl() -> Vec<Acl> {
    vec![Acl::world_anyone(perms::ALL)]
}

#[test]
fn every_golden_file_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(golden_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".bin"))
                .collect()
        })
        .unwrap_or_default();
    on_disk.sort();
    let mut listed: Vec<String> = GOLDEN.iter().map(|(name, _)| (*name).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    let readme = std::fs::read_to_string(golden_dir().join("README.md")).unwrap_or_default();
    for (name, _) in GOLDEN {
        assert!(
            readme.contains(name),
            "{name} is not described in README.md"
        );
    }
}

#[test]
fn every_golden_frame_decodes_and_re_encodes_to_the_same_bytes() {
    for (name, kind) in GOLDEN {
        let golden = read_golden(name);
        let decoded = decode(*kind, body(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        match (&decoded, kind) {
            (Decoded::Request(_, request), Kind::Request(op)) => {
                assert_eq!(request.op_code(), *op, "{name}");
            }
            (Decoded::Reply(Reply::Notification { .. }), Kind::Reply(OpCode::Notification)) => {}
            (Decoded::Reply(Reply::Response { op: got, .. }), Kind::Reply(op)) => {
                assert_eq!(got, op, "{name}");
            }
            (Decoded::Connect(_), Kind::ConnectRequest)
            | (Decoded::Connected(_), Kind::ConnectResponse) => {}
            other => panic!("{name}: decoded as {other:?}"),
        }
        assert_eq!(hex(&encode(&decoded)), hex(&golden), "{name}");
    }
}

#[test]
fn every_prefix_of_a_golden_frame_is_a_typed_error() {
    for (name, kind) in GOLDEN {
        let frame = body(name);
        for cut in 0..frame.len() {
            // An old client's handshake has no readOnly byte: the one prefix
            // that is a whole message.
            let optional_read_only = match kind {
                Kind::ConnectRequest => cut == 44,
                Kind::ConnectResponse => cut == 36,
                _ => false,
            };
            let result = decode(*kind, frame.slice(..cut));
            assert_eq!(
                result.is_ok(),
                optional_read_only,
                "{name} cut at {cut}: {result:?}"
            );
        }
        // And the stream cut anywhere is a truncated frame.
        let golden = read_golden(name);
        for cut in 1..golden.len() {
            let mut decoder = FrameDecoder::with_max_frame_len(JUTE_MAX_BUFFER);
            decoder.push(&golden[..cut]);
            assert_eq!(decoder.next_frame(), Ok(None), "{name} cut at {cut}");
            assert!(
                matches!(decoder.finish(), Err(FrameError::Truncated { .. })),
                "{name} cut at {cut}"
            );
        }
    }
}

#[test]
fn handshake_from_zkcli() {
    let Decoded::Connect(request) = decoded("c2s-connect-request.bin") else {
        panic!("not a connect request");
    };
    assert_eq!(
        request,
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 3000,
            session_id: 0,
            passwd: Some(Bytes::from_static(&[0; 16])),
            read_only: Some(false),
        }
    );
    let Decoded::Connected(response) = decoded("s2c-connect-response.bin") else {
        panic!("not a connect response");
    };
    // 3000 ms asked, clamped up to 2 ticks of 2000 ms.
    assert_eq!(response.time_out, 4000);
    assert_eq!(response.session_id, 0x0100_0017_11d7_0000);
    assert_eq!(response.passwd.map(|passwd| passwd.len()), Some(16));
    assert_eq!(response.read_only, Some(false));

    let Decoded::Connect(reattach) = decoded("c2s-connect-request-reattach.bin") else {
        panic!("not a connect request");
    };
    let Decoded::Connected(reattached) = decoded("s2c-connect-response-reattach.bin") else {
        panic!("not a connect response");
    };
    assert_eq!(reattach.last_zxid_seen, 0xe);
    assert_eq!(reattach.session_id, 0x0100_0017_11d7_0002);
    assert_eq!(
        (
            reattached.session_id,
            reattached.passwd,
            reattached.time_out
        ),
        (reattach.session_id, reattach.passwd, reattach.time_out)
    );
}

#[test]
fn creates_in_three_modes() {
    let (xid, Request::Create(persistent)) = request("c2s-create-persistent.bin") else {
        panic!("not a create");
    };
    assert_eq!(xid, 1);
    assert_eq!(persistent.path, "/golden");
    assert_eq!(persistent.data, Some(Bytes::from_static(b"hello")));
    assert_eq!(persistent.acl, open_acl());
    assert_eq!(persistent.flags, 0);

    // zkCli sends null data when none is given.
    let (_, Request::Create(ephemeral)) = request("c2s-create-ephemeral.bin") else {
        panic!("not a create");
    };
    assert_eq!((ephemeral.data, ephemeral.flags), (None, 1));

    let (_, Request::Create(sequential)) = request("c2s-create-persistent-sequential.bin") else {
        panic!("not a create");
    };
    assert_eq!(
        (sequential.path.as_str(), sequential.flags),
        ("/golden/seq-", 2)
    );
    let (header, body) = reply("s2c-create-persistent-sequential.bin");
    assert_eq!((header.xid, header.zxid, header.err), (3, 4, 0));
    let Some(Response::Create(created)) = body else {
        panic!("not a create response: {body:?}");
    };
    assert_eq!(created.path, "/golden/seq-0000000001");
}

#[test]
fn reads_and_writes() {
    let (_, body) = reply("s2c-get-data.bin");
    let Some(Response::GetData(data)) = body else {
        panic!("not getData: {body:?}");
    };
    assert_eq!(data.data, Some(Bytes::from_static(b"hello")));
    assert_eq!((data.stat.czxid, data.stat.data_length), (2, 5));

    let (_, Request::SetData(set)) = request("c2s-set-data.bin") else {
        panic!("not setData");
    };
    assert_eq!((set.path.as_str(), set.version), ("/golden", -1));
    let (_, body) = reply("s2c-set-data.bin");
    let Some(Response::SetData(set)) = body else {
        panic!("not setData: {body:?}");
    };
    assert_eq!((set.stat.version, set.stat.mzxid), (1, 5));

    // exists on a missing node: NONODE and no body.
    let (_, Request::Exists(exists)) = request("c2s-exists-missing.bin") else {
        panic!("not exists");
    };
    assert!(!exists.watch);
    let (header, body) = reply("s2c-exists-missing.bin");
    assert_eq!(header.error_code(), Some(ErrorCode::NoNode));
    assert_eq!(body, None);
    assert_eq!(read_golden("s2c-exists-missing.bin").len(), 4 + 16);
}

#[test]
fn get_children2_watch_and_its_notification() {
    let (_, Request::GetChildren2(children)) = request("c2s-get-children2-watch.bin") else {
        panic!("not getChildren2");
    };
    assert!(children.watch);
    let (_, body) = reply("s2c-get-children2-watch.bin");
    let Some(Response::GetChildren2(listed)) = body else {
        panic!("not getChildren2: {body:?}");
    };
    assert_eq!(listed.children, ["eph", "seq-0000000001"]);
    assert_eq!(listed.stat.num_children, 2);

    // The event comes before the reply to the create that fired it, with
    // zxid -1 (ZooKeeper 3.8).
    let Decoded::Reply(Reply::Notification { header, event }) =
        decoded("s2c-notification-node-children-changed.bin")
    else {
        panic!("not a notification");
    };
    assert_eq!((header.xid, header.zxid, header.err), (-1, -1, 0));
    assert_eq!(event.event_type(), Some(EventType::NodeChildrenChanged));
    assert_eq!(event.keeper_state(), Some(KeeperState::SyncConnected));
    assert_eq!(event.path, "/golden");
}

#[test]
fn ping_sync_and_close() {
    assert_eq!(request("c2s-ping.bin"), (-2, Request::Ping));
    let (header, body) = reply("s2c-ping.bin");
    assert_eq!(
        (header.xid, header.zxid, body),
        (-2, 6, Some(Response::Empty))
    );
    let (_, body) = reply("s2c-sync.bin");
    let Some(Response::Sync(sync)) = body else {
        panic!("not sync: {body:?}");
    };
    assert_eq!(sync.path, "/golden");
    assert_eq!(
        request("c2s-close-session.bin"),
        (10, Request::CloseSession)
    );
    let (header, body) = reply("s2c-close-session.bin");
    assert_eq!(
        (header.xid, header.err, body),
        (10, 0, Some(Response::Empty))
    );
}

#[test]
fn set_watches_goes_out_with_a_normal_xid() {
    // primeConnection builds it with xid -8, but ClientCnxnSocketNIO.doIO
    // gives every packet but ping and auth the next normal xid.
    let (xid, Request::SetWatches(watches)) = request("c2s-set-watches.bin") else {
        panic!("not setWatches");
    };
    assert_eq!(xid, 3);
    assert_eq!(watches.relative_zxid, 0xe);
    assert_eq!(watches.data_watches, ["/golden"]);
    assert_eq!(watches.exist_watches, ["/golden/absent"]);
    assert!(watches.child_watches.is_empty());
    let (header, body) = reply("s2c-set-watches.bin");
    assert_eq!((header.xid, body), (3, Some(Response::Empty)));
}

#[test]
fn rust_client_auth_uses_a_normal_xid() {
    let (xid, Request::Auth(auth)) = request("c2s-auth.bin") else {
        panic!("not auth");
    };
    assert_eq!(xid, 1);
    assert_eq!((auth.auth_type, auth.scheme.as_str()), (0, "digest"));
    assert_eq!(auth.auth, Some(Bytes::from_static(b"user:secret")));
    let (header, body) = reply("s2c-auth.bin");
    assert_eq!(
        (header.xid, header.zxid, body),
        (1, 0, Some(Response::Empty))
    );
}

#[test]
fn multi_with_check() {
    let (_, Request::Multi(multi)) = request("c2s-multi-check.bin") else {
        panic!("not multi");
    };
    let ops: Vec<OpCode> = multi.ops.iter().map(MultiOp::op_code).collect();
    assert_eq!(ops, [OpCode::Check, OpCode::Create2, OpCode::SetData]);
    let (header, body) = reply("s2c-multi-check.bin");
    assert_eq!(header.err, 0);
    let Some(Response::Multi(response)) = body else {
        panic!("not multi: {body:?}");
    };
    let results: Vec<OpCode> = response.results.iter().map(MultiResult::op_code).collect();
    // ZooKeeper 3.8.0 answers create2 inside a multi as a plain create
    // (ZOOKEEPER-4026, fixed in 3.8.2).
    assert_eq!(results, [OpCode::Check, OpCode::Create, OpCode::SetData]);

    let (header, body) = reply("s2c-multi-check-failed.bin");
    assert_eq!(header.err, 0);
    let Some(Response::Multi(failed)) = body else {
        panic!("not multi: {body:?}");
    };
    assert_eq!(
        failed.results,
        [
            MultiResult::Error(ErrorResponse { err: 0 }),
            MultiResult::Error(ErrorResponse {
                err: ErrorCode::BadVersion.code()
            }),
        ]
    );
}

#[test]
fn multi_read() {
    let (_, Request::MultiRead(multi)) = request("c2s-multi-read.bin") else {
        panic!("not multiRead");
    };
    assert_eq!(multi.ops.len(), 3);
    assert!(multi.ops.iter().all(MultiOp::is_read));
    let (_, body) = reply("s2c-multi-read.bin");
    let Some(Response::Multi(response)) = body else {
        panic!("not multi: {body:?}");
    };
    let results: Vec<OpCode> = response.results.iter().map(MultiResult::op_code).collect();
    assert_eq!(
        results,
        [OpCode::GetData, OpCode::GetChildren, OpCode::Error]
    );
    assert_eq!(
        response.results.get(2),
        Some(&MultiResult::Error(ErrorResponse { err: -101 }))
    );
}

#[test]
fn newer_operations() {
    let (_, Request::AddWatch(add)) = request("c2s-add-watch.bin") else {
        panic!("not addWatch");
    };
    assert_eq!((add.path.as_str(), add.mode), ("/rust", 1));
    let (_, body) = reply("s2c-add-watch.bin");
    assert_eq!(body, Some(Response::AddWatch(ErrorResponse { err: 0 })));

    let (_, Request::GetEphemerals(ephemerals)) = request("c2s-get-ephemerals.bin") else {
        panic!("not getEphemerals");
    };
    assert_eq!(ephemerals.prefix_path.as_deref(), Some("/"));

    let (_, body) = reply("s2c-get-all-children-number.bin");
    let Some(Response::GetAllChildrenNumber(count)) = body else {
        panic!("not getAllChildrenNumber: {body:?}");
    };
    assert_eq!(count.total_number, 1);

    assert_eq!(request("c2s-who-am-i.bin"), (9, Request::WhoAmI));
    let (_, body) = reply("s2c-who-am-i.bin");
    let Some(Response::WhoAmI(who)) = body else {
        panic!("not whoAmI: {body:?}");
    };
    assert_eq!(
        who.client_info,
        [
            ClientInfo {
                auth_scheme: "ip".to_owned(),
                user: "127.0.0.1".to_owned()
            },
            ClientInfo {
                auth_scheme: "digest".to_owned(),
                user: "user".to_owned()
            },
        ]
    );

    let (_, body) = reply("s2c-get-acl.bin");
    let Some(Response::GetAcl(acl)) = body else {
        panic!("not getACL: {body:?}");
    };
    assert_eq!(acl.acl, open_acl());

    let Decoded::Reply(Reply::Notification { event, .. }) =
        decoded("s2c-notification-node-deleted.bin")
    else {
        panic!("not a notification");
    };
    assert_eq!(
        (event.event_type(), event.path.as_str()),
        (Some(EventType::NodeDeleted), "/rust/m")
    );
}
