//! Property tests: every message kind survives encode → frame → decode, in
//! any byte split.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use session_wire::v1::{
    Acl, AddAuth, AddAuthResult, AddWatch, AddWatchResult, Check, CheckResult, CheckWatches,
    CheckWatchesResult, ClientMessage, CloseAck, CloseSession, CountDescendants,
    CountDescendantsResult, Create, CreateResult, Delete, DeleteResult, Disconnect, Exists,
    ExistsResult, GetAcl, GetAclResult, GetChildren, GetChildrenResult, GetData, GetDataResult,
    GetEphemerals, GetEphemeralsResult, Handshake, HandshakeRefusal, HandshakeReply, Id, Multi,
    MultiOp, MultiOpResult, MultiRead, MultiReadResult, MultiResult, OpError, Ping, Pong, ReadOp,
    ReadOpResult, RemoveWatches, RemoveWatchesResult, Reply, Request, ServerMessage,
    SessionGranted, SetAcl, SetAclResult, SetData, SetDataResult, SetWatches, SetWatchesResult,
    Stat, Sync, SyncResult, WatchEvent, WhoAmI, WhoAmIResult, handshake_reply, multi_op,
    multi_op_result, read_op, read_op_result, reply, request,
};
use session_wire::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, WireMessage, encode};

fn data() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn paths() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..4)
}

// Enum fields are open in proto3: any i32 must survive, known or not.
fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![0..20i32, any::<i32>()]
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        (any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<i64>(), any::<i64>()),
        (any::<i32>(), any::<i32>(), any::<i32>(), any::<u64>()),
        (any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |(
                (czxid, mzxid, pzxid),
                (ctime_ms, mtime_ms),
                (version, cversion, aversion, ephemeral_owner),
                (data_length, num_children),
            )| Stat {
                czxid,
                mzxid,
                pzxid,
                ctime_ms,
                mtime_ms,
                version,
                cversion,
                ephemeral_owner,
                data_length,
                num_children,
                aversion,
            },
        )
}

fn ids() -> impl Strategy<Value = Vec<Id>> {
    vec(
        (text(), text()).prop_map(|(scheme, id)| Id { scheme, id }),
        0..3,
    )
}

fn acl() -> impl Strategy<Value = Vec<Acl>> {
    vec(
        (any::<u32>(), option::of((text(), text()))).prop_map(|(perms, id)| Acl {
            perms,
            id: id.map(|(scheme, id)| Id { scheme, id }),
        }),
        0..3,
    )
}

fn version() -> impl Strategy<Value = Option<i32>> {
    option::of(any::<i32>())
}

fn create() -> impl Strategy<Value = Create> {
    (
        text(),
        data(),
        enum_value(),
        any::<bool>(),
        acl(),
        any::<u64>(),
    )
        .prop_map(|(path, data, kind, sequential, acl, ttl_ms)| Create {
            path,
            data,
            kind,
            sequential,
            acl,
            ttl_ms,
        })
}

fn multi_op() -> impl Strategy<Value = MultiOp> {
    let op = prop_oneof![
        create().prop_map(multi_op::Op::Create),
        (text(), version()).prop_map(|(path, expected_version)| multi_op::Op::Delete(Delete {
            path,
            expected_version,
        })),
        (text(), data(), version()).prop_map(|(path, data, expected_version)| {
            multi_op::Op::SetData(SetData {
                path,
                data,
                expected_version,
            })
        }),
        (text(), version()).prop_map(|(path, expected_version)| multi_op::Op::Check(Check {
            path,
            expected_version,
        })),
    ];
    option::of(op).prop_map(|op| MultiOp { op })
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    let op = prop_oneof![
        (text(), any::<bool>())
            .prop_map(|(path, watch)| read_op::Op::GetData(GetData { path, watch })),
        (text(), any::<bool>())
            .prop_map(|(path, watch)| read_op::Op::GetChildren(GetChildren { path, watch })),
    ];
    option::of(op).prop_map(|op| ReadOp { op })
}

fn handshake() -> impl Strategy<Value = Handshake> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        data(),
        any::<u64>(),
        text(),
        text(),
    )
        .prop_map(
            |(
                protocol_version,
                requested_timeout_ms,
                session_id,
                password,
                last_zxid_seen,
                client_name,
                client_version,
            )| Handshake {
                protocol_version,
                requested_timeout_ms,
                session_id,
                password,
                last_zxid_seen,
                client_name,
                client_version,
            },
        )
}

fn op() -> impl Strategy<Value = request::Op> {
    prop_oneof![
        create().prop_map(request::Op::Create),
        (text(), proptest::option::of(any::<i32>())).prop_map(|(path, expected_version)| {
            request::Op::Delete(Delete {
                path,
                expected_version,
            })
        }),
        (text(), any::<bool>())
            .prop_map(|(path, watch)| request::Op::GetData(GetData { path, watch })),
        (text(), data(), proptest::option::of(any::<i32>())).prop_map(
            |(path, data, expected_version)| {
                request::Op::SetData(SetData {
                    path,
                    data,
                    expected_version,
                })
            }
        ),
        (text(), any::<bool>())
            .prop_map(|(path, watch)| request::Op::Exists(Exists { path, watch })),
        (text(), any::<bool>())
            .prop_map(|(path, watch)| request::Op::GetChildren(GetChildren { path, watch })),
        (any::<u64>(), paths(), paths(), paths(), paths(), paths()).prop_map(
            |(
                last_zxid_seen,
                data_paths,
                exist_paths,
                child_paths,
                persistent_paths,
                persistent_recursive_paths,
            )| {
                request::Op::SetWatches(SetWatches {
                    last_zxid_seen,
                    data_paths,
                    exist_paths,
                    child_paths,
                    persistent_paths,
                    persistent_recursive_paths,
                })
            }
        ),
        text().prop_map(|path| request::Op::Sync(Sync { path })),
        text().prop_map(|path| request::Op::GetAcl(GetAcl { path })),
        (text(), acl(), version()).prop_map(|(path, acl, expected_version)| {
            request::Op::SetAcl(SetAcl {
                path,
                acl,
                expected_version,
            })
        }),
        vec(multi_op(), 0..4).prop_map(|ops| request::Op::Multi(Multi { ops })),
        vec(read_op(), 0..4).prop_map(|ops| request::Op::MultiRead(MultiRead { ops })),
        text().prop_map(|prefix| request::Op::GetEphemerals(GetEphemerals { prefix })),
        text().prop_map(|path| request::Op::CountDescendants(CountDescendants { path })),
        (text(), any::<bool>())
            .prop_map(|(path, recursive)| request::Op::AddWatch(AddWatch { path, recursive })),
        (text(), enum_value()).prop_map(|(path, watcher_type)| {
            request::Op::RemoveWatches(RemoveWatches { path, watcher_type })
        }),
        (text(), enum_value()).prop_map(|(path, watcher_type)| {
            request::Op::CheckWatches(CheckWatches { path, watcher_type })
        }),
        (text(), data())
            .prop_map(|(scheme, credential)| request::Op::AddAuth(AddAuth { scheme, credential })),
        Just(request::Op::WhoAmI(WhoAmI {})),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        handshake().prop_map(ClientMessage::from),
        Just(ClientMessage::from(Ping {})),
        Just(ClientMessage::from(CloseSession {})),
        (any::<i32>(), option::of(op()))
            .prop_map(|(xid, op)| ClientMessage::from(Request { xid, op })),
    ]
}

fn reply_result() -> impl Strategy<Value = reply::Result> {
    prop_oneof![
        (enum_value(), text())
            .prop_map(|(code, detail)| reply::Result::Error(OpError { code, detail })),
        (text(), option::of(stat()))
            .prop_map(|(path, stat)| reply::Result::Create(CreateResult { path, stat })),
        Just(reply::Result::Delete(DeleteResult {})),
        (data(), option::of(stat()))
            .prop_map(|(data, stat)| reply::Result::GetData(GetDataResult { data, stat })),
        option::of(stat()).prop_map(|stat| reply::Result::SetData(SetDataResult { stat })),
        option::of(stat()).prop_map(|stat| reply::Result::Exists(ExistsResult { stat })),
        (vec(text(), 0..8), option::of(stat())).prop_map(|(children, stat)| {
            reply::Result::GetChildren(GetChildrenResult { children, stat })
        }),
        Just(reply::Result::SetWatches(SetWatchesResult {})),
        text().prop_map(|path| reply::Result::Sync(SyncResult { path })),
        (acl(), option::of(stat()))
            .prop_map(|(acl, stat)| reply::Result::GetAcl(GetAclResult { acl, stat })),
        option::of(stat()).prop_map(|stat| reply::Result::SetAcl(SetAclResult { stat })),
        vec(multi_op_result(), 0..4)
            .prop_map(|results| reply::Result::Multi(MultiResult { results })),
        vec(read_op_result(), 0..4)
            .prop_map(|results| reply::Result::MultiRead(MultiReadResult { results })),
        paths().prop_map(|paths| reply::Result::GetEphemerals(GetEphemeralsResult { paths })),
        any::<u64>()
            .prop_map(|count| reply::Result::CountDescendants(CountDescendantsResult { count })),
        Just(reply::Result::AddWatch(AddWatchResult {})),
        Just(reply::Result::RemoveWatches(RemoveWatchesResult {})),
        Just(reply::Result::CheckWatches(CheckWatchesResult {})),
        Just(reply::Result::AddAuth(AddAuthResult {})),
        ids().prop_map(|ids| reply::Result::WhoAmI(WhoAmIResult { ids })),
    ]
}

fn op_error() -> impl Strategy<Value = OpError> {
    (enum_value(), text()).prop_map(|(code, detail)| OpError { code, detail })
}

fn multi_op_result() -> impl Strategy<Value = MultiOpResult> {
    let result = prop_oneof![
        op_error().prop_map(multi_op_result::Result::Error),
        (text(), option::of(stat())).prop_map(|(path, stat)| {
            multi_op_result::Result::Create(CreateResult { path, stat })
        }),
        Just(multi_op_result::Result::Delete(DeleteResult {})),
        option::of(stat())
            .prop_map(|stat| multi_op_result::Result::SetData(SetDataResult { stat })),
        Just(multi_op_result::Result::Check(CheckResult {})),
    ];
    option::of(result).prop_map(|result| MultiOpResult { result })
}

fn read_op_result() -> impl Strategy<Value = ReadOpResult> {
    let result = prop_oneof![
        op_error().prop_map(read_op_result::Result::Error),
        (data(), option::of(stat())).prop_map(|(data, stat)| {
            read_op_result::Result::GetData(GetDataResult { data, stat })
        }),
        (vec(text(), 0..4), option::of(stat())).prop_map(|(children, stat)| {
            read_op_result::Result::GetChildren(GetChildrenResult { children, stat })
        }),
    ];
    option::of(result).prop_map(|result| ReadOpResult { result })
}

fn outcome() -> impl Strategy<Value = handshake_reply::Outcome> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u64>(),
            data(),
            any::<u32>(),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(
                |(negotiated_timeout_ms, session_id, password, server_id, reattached, zxid)| {
                    handshake_reply::Outcome::Granted(SessionGranted {
                        negotiated_timeout_ms,
                        session_id,
                        password,
                        server_id,
                        reattached,
                        zxid,
                    })
                }
            ),
        (enum_value(), text(), any::<u32>(), any::<u32>()).prop_map(
            |(reason, detail, min_supported_version, max_supported_version)| {
                handshake_reply::Outcome::Refused(HandshakeRefusal {
                    reason,
                    detail,
                    min_supported_version,
                    max_supported_version,
                })
            }
        ),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (any::<u32>(), option::of(outcome())).prop_map(|(protocol_version, outcome)| {
            ServerMessage::from(HandshakeReply {
                protocol_version,
                outcome,
            })
        }),
        Just(ServerMessage::from(Pong {})),
        Just(ServerMessage::from(CloseAck {})),
        (any::<i32>(), any::<u64>(), option::of(reply_result()))
            .prop_map(|(xid, zxid, result)| ServerMessage::from(Reply { xid, zxid, result })),
        (enum_value(), text(), any::<u64>())
            .prop_map(|(kind, path, zxid)| ServerMessage::from(WatchEvent { kind, path, zxid })),
        (enum_value(), text())
            .prop_map(|(reason, detail)| ServerMessage::from(Disconnect { reason, detail })),
    ]
}

/// Frames `messages` back to back, feeds the bytes to a decoder in chunks
/// cut at `cuts`, and returns what came out.
fn frame_and_decode<M: WireMessage + Clone>(messages: &[M], cuts: &[usize]) -> Vec<M> {
    let mut wire = BytesMut::new();
    for message in messages {
        assert_eq!(encode(message, DEFAULT_MAX_FRAME_LEN, &mut wire), Ok(()));
    }
    let mut decoder = FrameDecoder::new();
    let mut decoded = Vec::new();
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    for end in points {
        decoder.push(&wire[start..end]);
        start = end;
        loop {
            match decoder.next_message::<M>() {
                Ok(Some(message)) => decoded.push(message),
                Ok(None) => break,
                Err(err) => panic!("decoding valid frames failed: {err}"),
            }
        }
    }
    assert_eq!(decoder.finish(), Ok(()));
    assert_eq!(decoder.buffered(), 0);
    decoded
}

proptest! {
    #[test]
    fn client_messages_round_trip(messages in vec(client_message(), 1..8), cuts in vec(any::<usize>(), 0..16)) {
        prop_assert_eq!(frame_and_decode(&messages, &cuts), messages);
    }

    #[test]
    fn server_messages_round_trip(messages in vec(server_message(), 1..8), cuts in vec(any::<usize>(), 0..16)) {
        prop_assert_eq!(frame_and_decode(&messages, &cuts), messages);
    }

    #[test]
    fn byte_by_byte_equals_all_at_once(messages in vec(server_message(), 1..4)) {
        let mut wire = BytesMut::new();
        for message in &messages {
            prop_assert_eq!(encode(message, DEFAULT_MAX_FRAME_LEN, &mut wire), Ok(()));
        }
        let every_byte: Vec<usize> = (0..wire.len()).collect();
        prop_assert_eq!(frame_and_decode(&messages, &every_byte), messages);
    }
}

#[cfg(feature = "grpc")]
mod admin {
    use std::collections::HashMap;

    use bytes::Bytes;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use prost::Message;
    use session_wire::admin::v1::{
        DumpExpiryResponse, ExpiryBucket, ListSessionsResponse, SessionEvent, SessionInfo,
        StatsResponse,
    };

    fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(
        message: &M,
    ) -> Result<(), TestCaseError> {
        let decoded = M::decode(Bytes::from(message.encode_to_vec()));
        prop_assert_eq!(decoded.as_ref(), Ok(message));
        Ok(())
    }

    fn session_info() -> impl Strategy<Value = SessionInfo> {
        (
            any::<u64>(),
            any::<u32>(),
            "\\PC{0,16}",
            any::<u64>(),
            any::<u32>(),
            any::<i32>(),
            any::<u64>(),
            "\\PC{0,16}",
        )
            .prop_map(
                |(
                    session_id,
                    negotiated_timeout_ms,
                    remote_address,
                    last_heard_ms_ago,
                    ephemeral_count,
                    state,
                    expires_in_ms,
                    client,
                )| SessionInfo {
                    session_id,
                    negotiated_timeout_ms,
                    remote_address,
                    last_heard_ms_ago,
                    ephemeral_count,
                    state,
                    expires_in_ms,
                    client,
                },
            )
    }

    proptest! {
        #[test]
        fn admin_messages_round_trip(
            sessions in vec(session_info(), 0..4),
            ops in proptest::collection::hash_map("[a-z_]{1,12}", any::<u64>(), 0..6),
            counters in (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()),
            buckets in vec((any::<u64>(), vec(any::<u64>(), 0..6)), 0..4),
            storage in (any::<bool>(), any::<u64>(), any::<u64>(), any::<u64>()),
            event in (any::<i32>(), any::<u64>(), "\\PC{0,16}", any::<u32>(), any::<u64>()),
        ) {
            round_trip(&ListSessionsResponse { sessions })?;
            let (sessions, connections, sessions_expired, uptime_ms, server_id, zxid, nodes) = counters;
            let ops_by_kind: HashMap<String, u64> = ops;
            let (durable, snapshot_zxid, snapshot_bytes, log_bytes) = storage;
            round_trip(&StatsResponse {
                sessions, connections, sessions_expired, ops_by_kind, uptime_ms, server_id, zxid, nodes,
                durable, snapshot_zxid, snapshot_bytes, log_bytes,
            })?;
            let buckets = buckets.into_iter().map(|(due_in_ms, session_ids)| ExpiryBucket { due_in_ms, session_ids }).collect();
            round_trip(&DumpExpiryResponse { tick_ms: 2000, buckets })?;
            let (kind, session_id, remote_address, negotiated_timeout_ms, zxid) = event;
            round_trip(&SessionEvent { kind, session_id, remote_address, negotiated_timeout_ms, zxid })?;
        }
    }
}
