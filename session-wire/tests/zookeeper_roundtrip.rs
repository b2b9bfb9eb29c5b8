//! Property tests: every jute record, every request, every reply body and
//! notifications survive encode → frame → decode, and the bytes survive
//! decode → encode.
#![cfg(feature = "zookeeper")]

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use session_wire::FrameDecoder;
use session_wire::zookeeper::{
    Acl, AddWatchRequest, AuthPacket, CheckVersionRequest, CheckWatchesRequest, ClientInfo,
    ConnectRequest, ConnectResponse, Create2Response, CreateRequest, CreateResponse,
    CreateTtlRequest, DeleteContainerRequest, DeleteRequest, ErrorResponse, ExistsRequest,
    ExistsResponse, GetAclRequest, GetAclResponse, GetAllChildrenNumberRequest,
    GetAllChildrenNumberResponse, GetChildren2Request, GetChildren2Response, GetChildrenRequest,
    GetChildrenResponse, GetDataRequest, GetDataResponse, GetEphemeralsRequest,
    GetEphemeralsResponse, GetSaslRequest, Id, JUTE_MAX_BUFFER, JuteRecord, MultiHeader, MultiOp,
    MultiRequest, MultiResponse, MultiResult, OpCode, ReconfigRequest, RemoveWatchesRequest, Reply,
    ReplyHeader, Request, RequestHeader, Response, SetAclRequest, SetAclResponse, SetDataRequest,
    SetDataResponse, SetSaslResponse, SetWatches, SetWatches2, Stat, SyncRequest, SyncResponse,
    WatcherEvent, WhoAmIResponse, decode_reply, decode_request, encode_frame, encode_notification,
    encode_reply, encode_request,
};

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..4)
}

fn buffer() -> impl Strategy<Value = Option<Bytes>> {
    option::of(vec(any::<u8>(), 0..24).prop_map(Bytes::from))
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (any::<i32>(), any::<i32>(), any::<i32>()),
        (any::<i64>(), any::<i32>(), any::<i32>(), any::<i64>()),
    )
        .prop_map(
            |(
                (czxid, mzxid, ctime, mtime),
                (version, cversion, aversion),
                (ephemeral_owner, data_length, num_children, pzxid),
            )| Stat {
                czxid,
                mzxid,
                ctime,
                mtime,
                version,
                cversion,
                aversion,
                ephemeral_owner,
                data_length,
                num_children,
                pzxid,
            },
        )
}

fn id() -> impl Strategy<Value = Id> {
    (text(), text()).prop_map(|(scheme, id)| Id { scheme, id })
}

fn acls() -> impl Strategy<Value = Vec<Acl>> {
    vec(
        (any::<i32>(), id()).prop_map(|(perms, id)| Acl { perms, id }),
        0..3,
    )
}

fn create() -> impl Strategy<Value = CreateRequest> {
    (text(), buffer(), acls(), any::<i32>()).prop_map(|(path, data, acl, flags)| CreateRequest {
        path,
        data,
        acl,
        flags,
    })
}

fn create_ttl() -> impl Strategy<Value = CreateTtlRequest> {
    (text(), buffer(), acls(), any::<i32>(), any::<i64>()).prop_map(
        |(path, data, acl, flags, ttl)| CreateTtlRequest {
            path,
            data,
            acl,
            flags,
            ttl,
        },
    )
}

fn path_version() -> impl Strategy<Value = (String, i32)> {
    (text(), any::<i32>())
}

fn path_watch() -> impl Strategy<Value = (String, bool)> {
    (text(), any::<bool>())
}

fn set_data() -> impl Strategy<Value = SetDataRequest> {
    (text(), buffer(), any::<i32>()).prop_map(|(path, data, version)| SetDataRequest {
        path,
        data,
        version,
    })
}

fn write_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        create().prop_map(MultiOp::Create),
        create().prop_map(MultiOp::Create2),
        create().prop_map(MultiOp::CreateContainer),
        create_ttl().prop_map(MultiOp::CreateTtl),
        path_version().prop_map(|(path, version)| MultiOp::Delete(DeleteRequest { path, version })),
        set_data().prop_map(MultiOp::SetData),
        path_version()
            .prop_map(|(path, version)| MultiOp::Check(CheckVersionRequest { path, version })),
    ]
}

fn read_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        path_watch().prop_map(|(path, watch)| MultiOp::GetData(GetDataRequest { path, watch })),
        path_watch()
            .prop_map(|(path, watch)| MultiOp::GetChildren(GetChildrenRequest { path, watch })),
    ]
}

fn set_watches2() -> impl Strategy<Value = SetWatches2> {
    (any::<i64>(), texts(), texts(), texts(), texts(), texts()).prop_map(
        |(
            relative_zxid,
            data_watches,
            exist_watches,
            child_watches,
            persistent_watches,
            persistent_recursive_watches,
        )| SetWatches2 {
            relative_zxid,
            data_watches,
            exist_watches,
            child_watches,
            persistent_watches,
            persistent_recursive_watches,
        },
    )
}

/// Every `Request` variant.
fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        create().prop_map(Request::Create),
        path_version().prop_map(|(path, version)| Request::Delete(DeleteRequest { path, version })),
        path_watch().prop_map(|(path, watch)| Request::Exists(ExistsRequest { path, watch })),
        path_watch().prop_map(|(path, watch)| Request::GetData(GetDataRequest { path, watch })),
        set_data().prop_map(Request::SetData),
        text().prop_map(|path| Request::GetAcl(GetAclRequest { path })),
        (text(), acls(), any::<i32>())
            .prop_map(|(path, acl, version)| Request::SetAcl(SetAclRequest { path, acl, version })),
        path_watch()
            .prop_map(|(path, watch)| Request::GetChildren(GetChildrenRequest { path, watch })),
        text().prop_map(|path| Request::Sync(SyncRequest { path })),
        Just(Request::Ping),
        path_watch()
            .prop_map(|(path, watch)| Request::GetChildren2(GetChildren2Request { path, watch })),
        path_version()
            .prop_map(|(path, version)| Request::Check(CheckVersionRequest { path, version })),
        vec(write_op(), 0..4).prop_map(|ops| Request::Multi(MultiRequest { ops })),
        create().prop_map(Request::Create2),
        (text(), text(), text(), any::<i64>()).prop_map(
            |(joining_servers, leaving_servers, new_members, cur_config_id)| {
                Request::Reconfig(ReconfigRequest {
                    joining_servers,
                    leaving_servers,
                    new_members,
                    cur_config_id,
                })
            }
        ),
        path_version().prop_map(|(path, watcher_type)| {
            Request::CheckWatches(CheckWatchesRequest { path, watcher_type })
        }),
        path_version().prop_map(|(path, watcher_type)| {
            Request::RemoveWatches(RemoveWatchesRequest { path, watcher_type })
        }),
        create().prop_map(Request::CreateContainer),
        text().prop_map(|path| Request::DeleteContainer(DeleteContainerRequest { path })),
        create_ttl().prop_map(Request::CreateTtl),
        vec(read_op(), 0..4).prop_map(|ops| Request::MultiRead(MultiRequest { ops })),
        (any::<i32>(), text(), buffer()).prop_map(|(auth_type, scheme, auth)| {
            Request::Auth(AuthPacket {
                auth_type,
                scheme,
                auth,
            })
        }),
        set_watches2().prop_map(|all| Request::SetWatches(SetWatches {
            relative_zxid: all.relative_zxid,
            data_watches: all.data_watches,
            exist_watches: all.exist_watches,
            child_watches: all.child_watches,
        })),
        buffer().prop_map(|token| Request::Sasl(GetSaslRequest { token })),
        option::of(text())
            .prop_map(|prefix_path| Request::GetEphemerals(GetEphemeralsRequest { prefix_path })),
        text().prop_map(|path| Request::GetAllChildrenNumber(GetAllChildrenNumberRequest { path })),
        set_watches2().prop_map(Request::SetWatches2),
        path_version().prop_map(|(path, mode)| Request::AddWatch(AddWatchRequest { path, mode })),
        Just(Request::WhoAmI),
        Just(Request::CloseSession),
    ]
}

fn multi_result() -> impl Strategy<Value = MultiResult> {
    prop_oneof![
        text().prop_map(|path| MultiResult::Create(CreateResponse { path })),
        (text(), stat())
            .prop_map(|(path, stat)| MultiResult::Create2(Create2Response { path, stat })),
        Just(MultiResult::Delete),
        stat().prop_map(|stat| MultiResult::SetData(SetDataResponse { stat })),
        Just(MultiResult::Check),
        (buffer(), stat())
            .prop_map(|(data, stat)| MultiResult::GetData(GetDataResponse { data, stat })),
        texts().prop_map(|children| MultiResult::GetChildren(GetChildrenResponse { children })),
        any::<i32>().prop_map(|err| MultiResult::Error(ErrorResponse { err })),
    ]
}

/// Every `Response` variant, with an opcode whose reply it is.
fn response() -> impl Strategy<Value = (OpCode, Response)> {
    prop_oneof![
        prop_oneof![
            Just(OpCode::Delete),
            Just(OpCode::DeleteContainer),
            Just(OpCode::Ping),
            Just(OpCode::Auth),
            Just(OpCode::SetWatches),
            Just(OpCode::SetWatches2),
            Just(OpCode::CheckWatches),
            Just(OpCode::RemoveWatches),
            Just(OpCode::CloseSession),
        ]
        .prop_map(|op| (op, Response::Empty)),
        text().prop_map(|path| (OpCode::Create, Response::Create(CreateResponse { path }))),
        (
            prop_oneof![
                Just(OpCode::Create2),
                Just(OpCode::CreateContainer),
                Just(OpCode::CreateTtl)
            ],
            text(),
            stat()
        )
            .prop_map(|(op, path, stat)| (op, Response::Create2(Create2Response { path, stat }))),
        stat().prop_map(|stat| (OpCode::Exists, Response::Exists(ExistsResponse { stat }))),
        (
            prop_oneof![Just(OpCode::GetData), Just(OpCode::Reconfig)],
            buffer(),
            stat()
        )
            .prop_map(|(op, data, stat)| (op, Response::GetData(GetDataResponse { data, stat }))),
        (
            prop_oneof![Just(OpCode::SetData), Just(OpCode::Check)],
            stat()
        )
            .prop_map(|(op, stat)| (op, Response::SetData(SetDataResponse { stat }))),
        (acls(), stat()).prop_map(|(acl, stat)| (
            OpCode::GetAcl,
            Response::GetAcl(GetAclResponse { acl, stat })
        )),
        stat().prop_map(|stat| (OpCode::SetAcl, Response::SetAcl(SetAclResponse { stat }))),
        texts().prop_map(|children| (
            OpCode::GetChildren,
            Response::GetChildren(GetChildrenResponse { children })
        )),
        (texts(), stat()).prop_map(|(children, stat)| (
            OpCode::GetChildren2,
            Response::GetChildren2(GetChildren2Response { children, stat })
        )),
        text().prop_map(|path| (OpCode::Sync, Response::Sync(SyncResponse { path }))),
        (
            prop_oneof![Just(OpCode::Multi), Just(OpCode::MultiRead)],
            vec(multi_result(), 0..4)
        )
            .prop_map(|(op, results)| (op, Response::Multi(MultiResponse { results }))),
        buffer().prop_map(|token| (OpCode::Sasl, Response::Sasl(SetSaslResponse { token }))),
        texts().prop_map(|ephemerals| (
            OpCode::GetEphemerals,
            Response::GetEphemerals(GetEphemeralsResponse { ephemerals })
        )),
        any::<i32>().prop_map(|total_number| (
            OpCode::GetAllChildrenNumber,
            Response::GetAllChildrenNumber(GetAllChildrenNumberResponse { total_number })
        )),
        any::<i32>().prop_map(|err| (OpCode::AddWatch, Response::AddWatch(ErrorResponse { err }))),
        vec(
            (text(), text()).prop_map(|(auth_scheme, user)| ClientInfo { auth_scheme, user }),
            0..3
        )
        .prop_map(|client_info| (
            OpCode::WhoAmI,
            Response::WhoAmI(WhoAmIResponse { client_info })
        )),
    ]
}

fn watcher_event() -> impl Strategy<Value = WatcherEvent> {
    (any::<i32>(), any::<i32>(), text()).prop_map(|(event_type, state, path)| WatcherEvent {
        event_type,
        state,
        path,
    })
}

/// The one frame body in `wire`, cut by a `FrameDecoder` fed byte by byte.
fn only_frame(wire: &[u8]) -> Result<Bytes, TestCaseError> {
    let mut decoder = FrameDecoder::with_max_frame_len(JUTE_MAX_BUFFER);
    let mut frames = Vec::new();
    for byte in wire {
        decoder.push(&[*byte]);
        while let Ok(Some(frame)) = decoder.next_frame() {
            frames.push(frame);
        }
    }
    prop_assert_eq!(decoder.finish(), Ok(()));
    prop_assert_eq!(frames.len(), 1);
    Ok(frames.pop().unwrap_or_default())
}

/// `record` encodes, decodes back equal, and its bytes re-encode equal.
fn record_round_trip<R: JuteRecord + PartialEq + Debug>(record: &R) -> Result<(), TestCaseError> {
    let mut bytes = BytesMut::new();
    prop_assert_eq!(record.encode(&mut bytes), Ok(()));
    let decoded = R::decode(bytes.clone().freeze());
    prop_assert_eq!(decoded.as_ref(), Ok(record));
    let mut again = BytesMut::new();
    if let Ok(decoded) = decoded {
        prop_assert_eq!(decoded.encode(&mut again), Ok(()));
    }
    prop_assert_eq!(again, bytes);
    Ok(())
}

proptest! {
    #[test]
    fn data_records_round_trip(stat in stat(), id in id(), acls in acls(), info in (text(), text())) {
        record_round_trip(&stat)?;
        record_round_trip(&id)?;
        for acl in &acls {
            record_round_trip(acl)?;
        }
        record_round_trip(&ClientInfo { auth_scheme: info.0, user: info.1 })?;
    }

    #[test]
    fn headers_round_trip(xid in any::<i32>(), op_type in any::<i32>(), zxid in any::<i64>(), err in any::<i32>(), done in any::<bool>()) {
        record_round_trip(&RequestHeader { xid, op_type })?;
        record_round_trip(&ReplyHeader { xid, zxid, err })?;
        record_round_trip(&MultiHeader { op_type, done, err })?;
    }

    #[test]
    fn request_records_round_trip(
        create in create(),
        ttl in create_ttl(),
        set in set_data(),
        watches in set_watches2(),
        (path, version) in path_version(),
        (acl, watch) in (acls(), any::<bool>()),
        auth in (any::<i32>(), text(), buffer()),
        reconfig in (text(), text(), text(), any::<i64>()),
        prefix_path in option::of(text()),
    ) {
        record_round_trip(&create)?;
        record_round_trip(&ttl)?;
        record_round_trip(&set)?;
        record_round_trip(&watches)?;
        record_round_trip(&SetWatches {
            relative_zxid: watches.relative_zxid,
            data_watches: watches.data_watches.clone(),
            exist_watches: watches.exist_watches.clone(),
            child_watches: watches.child_watches.clone(),
        })?;
        record_round_trip(&DeleteRequest { path: path.clone(), version })?;
        record_round_trip(&CheckVersionRequest { path: path.clone(), version })?;
        record_round_trip(&ExistsRequest { path: path.clone(), watch })?;
        record_round_trip(&GetDataRequest { path: path.clone(), watch })?;
        record_round_trip(&GetChildrenRequest { path: path.clone(), watch })?;
        record_round_trip(&GetChildren2Request { path: path.clone(), watch })?;
        record_round_trip(&GetAclRequest { path: path.clone() })?;
        record_round_trip(&SetAclRequest { path: path.clone(), acl, version })?;
        record_round_trip(&SyncRequest { path: path.clone() })?;
        record_round_trip(&CheckWatchesRequest { path: path.clone(), watcher_type: version })?;
        record_round_trip(&RemoveWatchesRequest { path: path.clone(), watcher_type: version })?;
        record_round_trip(&AddWatchRequest { path: path.clone(), mode: version })?;
        record_round_trip(&GetAllChildrenNumberRequest { path: path.clone() })?;
        record_round_trip(&DeleteContainerRequest { path })?;
        record_round_trip(&GetEphemeralsRequest { prefix_path })?;
        record_round_trip(&AuthPacket { auth_type: auth.0, scheme: auth.1, auth: auth.2.clone() })?;
        record_round_trip(&GetSaslRequest { token: auth.2 })?;
        record_round_trip(&ReconfigRequest {
            joining_servers: reconfig.0,
            leaving_servers: reconfig.1,
            new_members: reconfig.2,
            cur_config_id: reconfig.3,
        })?;
    }

    #[test]
    fn response_records_round_trip(
        stat in stat(),
        (path, data) in (text(), buffer()),
        (children, acl) in (texts(), acls()),
        number in any::<i32>(),
        event in watcher_event(),
        infos in vec((text(), text()), 0..3),
    ) {
        record_round_trip(&CreateResponse { path: path.clone() })?;
        record_round_trip(&Create2Response { path: path.clone(), stat: stat.clone() })?;
        record_round_trip(&ExistsResponse { stat: stat.clone() })?;
        record_round_trip(&SetDataResponse { stat: stat.clone() })?;
        record_round_trip(&SetAclResponse { stat: stat.clone() })?;
        record_round_trip(&GetDataResponse { data: data.clone(), stat: stat.clone() })?;
        record_round_trip(&GetAclResponse { acl, stat: stat.clone() })?;
        record_round_trip(&GetChildrenResponse { children: children.clone() })?;
        record_round_trip(&GetChildren2Response { children: children.clone(), stat })?;
        record_round_trip(&GetEphemeralsResponse { ephemerals: children })?;
        record_round_trip(&SyncResponse { path })?;
        record_round_trip(&SetSaslResponse { token: data })?;
        record_round_trip(&GetAllChildrenNumberResponse { total_number: number })?;
        record_round_trip(&ErrorResponse { err: number })?;
        record_round_trip(&event)?;
        let client_info = infos.into_iter().map(|(auth_scheme, user)| ClientInfo { auth_scheme, user }).collect();
        record_round_trip(&WhoAmIResponse { client_info })?;
    }

    #[test]
    fn handshake_round_trips(
        (protocol_version, last_zxid_seen, time_out, session_id) in (any::<i32>(), any::<i64>(), any::<i32>(), any::<i64>()),
        passwd in buffer(),
        read_only in option::of(any::<bool>()),
    ) {
        let request = ConnectRequest { protocol_version, last_zxid_seen, time_out, session_id, passwd: passwd.clone(), read_only };
        let mut wire = BytesMut::new();
        prop_assert_eq!(encode_frame(&request, JUTE_MAX_BUFFER, &mut wire), Ok(()));
        prop_assert_eq!(ConnectRequest::decode(only_frame(&wire)?), Ok(request.clone()));
        record_round_trip(&request)?;
        let response = ConnectResponse { protocol_version, time_out, session_id, passwd, read_only };
        let mut wire = BytesMut::new();
        prop_assert_eq!(encode_frame(&response, JUTE_MAX_BUFFER, &mut wire), Ok(()));
        prop_assert_eq!(ConnectResponse::decode(only_frame(&wire)?), Ok(response.clone()));
        record_round_trip(&response)?;
    }

    #[test]
    fn requests_round_trip(xid in any::<i32>(), request in request()) {
        let mut wire = BytesMut::new();
        prop_assert_eq!(encode_request(xid, &request, JUTE_MAX_BUFFER, &mut wire), Ok(()));
        let frame = only_frame(&wire)?;
        let decoded = decode_request(frame.clone());
        let header = RequestHeader { xid, op_type: request.op_code().code() };
        prop_assert_eq!(decoded.as_ref(), Ok(&(header, request)));
        if let Ok((header, request)) = decoded {
            let mut again = BytesMut::new();
            prop_assert_eq!(encode_request(header.xid, &request, JUTE_MAX_BUFFER, &mut again), Ok(()));
            prop_assert_eq!(again, wire);
        }
    }

    #[test]
    fn replies_round_trip(xid in 1..i32::MAX, zxid in any::<i64>(), (op, response) in response()) {
        let header = ReplyHeader { xid, zxid, err: 0 };
        let mut wire = BytesMut::new();
        prop_assert_eq!(encode_reply(&header, Some(&response), JUTE_MAX_BUFFER, &mut wire), Ok(()));
        let decoded = decode_reply(only_frame(&wire)?, |asked| (asked == xid).then_some(op));
        let expected = Reply::Response { header, op, body: Some(response) };
        prop_assert_eq!(decoded.as_ref(), Ok(&expected));
        let mut again = BytesMut::new();
        prop_assert_eq!(expected.encode(JUTE_MAX_BUFFER, &mut again), Ok(()));
        prop_assert_eq!(again, wire);
    }

    #[test]
    fn error_replies_round_trip(xid in any::<i32>(), zxid in any::<i64>(), err in any::<i32>().prop_filter("an error", |err| *err != 0)) {
        let header = ReplyHeader { xid, zxid, err };
        let mut wire = BytesMut::new();
        prop_assert_eq!(encode_reply(&header, None, JUTE_MAX_BUFFER, &mut wire), Ok(()));
        let decoded = decode_reply(only_frame(&wire)?, |_| Some(OpCode::GetData));
        if xid == -1 {
            // Xid -1 is always a notification: its body is missing.
            prop_assert!(decoded.is_err());
        } else {
            prop_assert_eq!(decoded, Ok(Reply::Response { header, op: OpCode::GetData, body: None }));
        }
    }

    #[test]
    fn notifications_round_trip(zxid in any::<i64>(), event in watcher_event()) {
        let mut wire = BytesMut::new();
        prop_assert_eq!(encode_notification(zxid, &event, JUTE_MAX_BUFFER, &mut wire), Ok(()));
        let decoded = decode_reply(only_frame(&wire)?, |_| None);
        let header = ReplyHeader { xid: -1, zxid, err: 0 };
        prop_assert_eq!(decoded, Ok(Reply::Notification { header, event }));
    }
}
