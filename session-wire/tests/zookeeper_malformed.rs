//! The ZooKeeper codec against malformed input: one test per class of
//! damage, each giving its typed error, none panicking.
#![cfg(feature = "zookeeper")]

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use session_wire::zookeeper::{
    ConnectRequest, GetChildrenResponse, JUTE_MAX_BUFFER, JuteEncodeError, JuteError, JuteRecord,
    OpCode, Reply, ReplyError, ReplyHeader, Request, RequestError, RequestHeader, Response,
    SetDataRequest, SyncRequest, decode_reply, decode_request, encode_request,
};
use session_wire::{FrameDecoder, FrameError};

/// A request body: header then `body`.
fn request_body(xid: i32, op: i32, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i32(xid);
    frame.put_i32(op);
    frame.put_slice(body);
    frame.freeze()
}

/// A successful reply body: header (err 0) then `body`.
fn reply_body(xid: i32, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i32(xid);
    frame.put_i64(9);
    frame.put_i32(0);
    frame.put_slice(body);
    frame.freeze()
}

fn body_error(result: Result<(RequestHeader, Request), RequestError>) -> Option<JuteError> {
    match result {
        Err(RequestError::Body { source, .. }) => Some(source),
        other => panic!("expected a body error, got {other:?}"),
    }
}

fn reply_body_error(result: Result<Reply, ReplyError>) -> Option<JuteError> {
    match result {
        Err(ReplyError::Body { source, .. }) => Some(source),
        other => panic!("expected a body error, got {other:?}"),
    }
}

#[test]
fn over_long_string_length() {
    // getData whose path claims 1000 bytes and has 3.
    let mut body = BytesMut::new();
    body.put_i32(1000);
    body.put_slice(b"/ab");
    let err = body_error(decode_request(request_body(5, 4, &body)));
    assert_eq!(
        err,
        Some(JuteError::LengthOverrun {
            field: "GetDataRequest.path",
            len: 1000,
            remaining: 3
        })
    );
    assert_eq!(
        err.map(|err| err.to_string()),
        Some("length 1000 of GetDataRequest.path exceeds the 3 bytes left".to_owned())
    );
}

#[test]
fn over_long_buffer_length_at_i32_max() {
    let mut body = BytesMut::new();
    body.put_i32(2);
    body.put_slice(b"/a");
    body.put_i32(i32::MAX);
    body.put_slice(b"data");
    assert_eq!(
        body_error(decode_request(request_body(5, 5, &body))),
        Some(JuteError::LengthOverrun {
            field: "SetDataRequest.data",
            len: i32::MAX,
            remaining: 4
        })
    );
}

#[test]
fn negative_lengths() {
    // -1 data is null: fine.
    let mut body = BytesMut::new();
    body.put_i32(2);
    body.put_slice(b"/a");
    body.put_i32(-1);
    body.put_i32(-1);
    assert_eq!(
        decode_request(request_body(5, 5, &body)).map(|(_, request)| request),
        Ok(Request::SetData(SetDataRequest {
            path: "/a".to_owned(),
            data: None,
            version: -1
        }))
    );
    // -2 data is not.
    let mut body = BytesMut::new();
    body.put_i32(2);
    body.put_slice(b"/a");
    body.put_i32(-2);
    body.put_i32(-1);
    assert_eq!(
        body_error(decode_request(request_body(5, 5, &body))),
        Some(JuteError::NegativeLength {
            field: "SetDataRequest.data",
            len: -2
        })
    );
    // A null path reads as empty (kazoo writes every empty string as
    // null); a negative one is refused.
    let (_, sync) = decode_request(request_body(5, 9, &(-1i32).to_be_bytes())).expect("a sync");
    assert_eq!(
        sync,
        Request::Sync(SyncRequest {
            path: String::new()
        })
    );
    assert_eq!(
        body_error(decode_request(request_body(5, 9, &i32::MIN.to_be_bytes()))),
        Some(JuteError::NegativeLength {
            field: "SyncRequest.path",
            len: i32::MIN
        })
    );
    // A vector count of -3 (ZooKeeper's reader would take it as empty).
    assert_eq!(
        reply_body_error(decode_reply(reply_body(3, &(-3i32).to_be_bytes()), |_| {
            Some(OpCode::GetChildren)
        })),
        Some(JuteError::NegativeLength {
            field: "GetChildrenResponse.children",
            len: -3
        })
    );
    // A null vector.
    assert_eq!(
        reply_body_error(decode_reply(reply_body(3, &(-1i32).to_be_bytes()), |_| {
            Some(OpCode::GetChildren)
        })),
        Some(JuteError::Null {
            field: "GetChildrenResponse.children"
        })
    );
    // A negative frame length is a length over the limit.
    let mut decoder = FrameDecoder::with_max_frame_len(JUTE_MAX_BUFFER);
    decoder.push(&(-1i32).to_be_bytes());
    assert_eq!(
        decoder.next_frame(),
        Err(FrameError::Oversize {
            len: u32::MAX,
            max: JUTE_MAX_BUFFER
        })
    );
}

#[test]
fn vector_count_larger_than_the_bytes_left() {
    let mut body = BytesMut::new();
    body.put_i32(1_000_000);
    body.put_i32(1);
    body.put_u8(b'a');
    assert_eq!(
        reply_body_error(decode_reply(reply_body(3, &body), |_| Some(
            OpCode::GetChildren
        ))),
        Some(JuteError::VectorOverrun {
            field: "GetChildrenResponse.children",
            count: 1_000_000,
            needed: 4_000_000,
            remaining: 5
        })
    );
    // An ACL entry takes at least 12 bytes: 2 entries do not fit in 20.
    let mut body = BytesMut::new();
    body.put_i32(2);
    body.put_slice(b"/a");
    body.put_i32(0);
    body.put_i32(2);
    body.put_slice(&[0; 16]);
    assert_eq!(
        body_error(decode_request(request_body(5, 1, &body))),
        Some(JuteError::VectorOverrun {
            field: "CreateRequest.acl",
            count: 2,
            needed: 24,
            remaining: 16
        })
    );
    // The largest count, directly on the record.
    let mut body = BytesMut::new();
    body.put_i32(i32::MAX);
    assert!(matches!(
        GetChildrenResponse::decode(body.freeze()),
        Err(JuteError::VectorOverrun {
            count: i32::MAX,
            remaining: 0,
            ..
        })
    ));
}

#[test]
fn invalid_utf8_in_a_ustring() {
    let mut body = BytesMut::new();
    body.put_i32(4);
    body.put_slice(&[b'/', 0xff, 0xfe, b'a']);
    body.put_u8(0);
    let err = body_error(decode_request(request_body(5, 3, &body)));
    assert_eq!(
        err,
        Some(JuteError::InvalidUtf8 {
            field: "ExistsRequest.path",
            valid_up_to: 1,
            len: 4
        })
    );
    // In a reply's vector of names.
    let mut body = BytesMut::new();
    body.put_i32(1);
    body.put_i32(2);
    body.put_slice(&[0xc0, 0x80]);
    assert_eq!(
        reply_body_error(decode_reply(reply_body(3, &body), |_| Some(
            OpCode::GetChildren
        ))),
        Some(JuteError::InvalidUtf8 {
            field: "GetChildrenResponse.children",
            valid_up_to: 0,
            len: 2
        })
    );
}

#[test]
fn frame_over_the_limit_is_refused_before_allocating() {
    let mut decoder = FrameDecoder::with_max_frame_len(JUTE_MAX_BUFFER);
    let prefix = (JUTE_MAX_BUFFER + 1).to_be_bytes();
    for byte in &prefix[..3] {
        decoder.push(&[*byte]);
        assert_eq!(decoder.next_frame(), Ok(None));
    }
    decoder.push(&prefix[3..]);
    assert_eq!(
        decoder.next_frame(),
        Err(FrameError::Oversize {
            len: 1_048_576,
            max: 1_048_575
        })
    );
    // Nothing held, and nothing more accepted.
    assert_eq!(decoder.buffered(), 0);
    decoder.push(&[0; 64]);
    assert_eq!(decoder.buffered(), 0);

    // Exactly jute.maxbuffer is allowed.
    let mut decoder = FrameDecoder::with_max_frame_len(JUTE_MAX_BUFFER);
    decoder.push(&JUTE_MAX_BUFFER.to_be_bytes());
    assert_eq!(decoder.next_frame(), Ok(None));

    // The encoders refuse to write one.
    let path = "/".repeat(1_048_575);
    let mut dst = BytesMut::from(&b"kept"[..]);
    assert_eq!(
        encode_request(
            1,
            &Request::Sync(SyncRequest { path }),
            JUTE_MAX_BUFFER,
            &mut dst
        ),
        Err(JuteEncodeError::Oversize {
            len: 8 + 4 + 1_048_575,
            max: JUTE_MAX_BUFFER
        })
    );
    assert_eq!(&dst[..], b"kept");
}

#[test]
fn unknown_opcode_keeps_the_xid() {
    let result = decode_request(request_body(42, 23, &[1, 2, 3]));
    assert_eq!(
        result,
        Err(RequestError::UnknownOpCode {
            xid: 42,
            op_type: 23
        })
    );
    assert_eq!(result.err().and_then(|err| err.xid()), Some(42));
    assert_eq!(
        decode_request(request_body(43, 0, &[])),
        Err(RequestError::NotARequest {
            xid: 43,
            op: OpCode::Notification
        })
    );
    // Too short for a header: nothing to answer.
    let result = decode_request(Bytes::from_static(&[0, 0, 0, 1, 0, 0]));
    assert_eq!(
        result,
        Err(RequestError::Header(JuteError::Truncated {
            field: "RequestHeader.op_type",
            needed: 4,
            remaining: 2
        }))
    );
    assert_eq!(result.err().and_then(|err| err.xid()), None);
}

#[test]
fn invalid_op_inside_a_multi() {
    // MultiHeader(type 3 = exists, done false, err -1) in a multi.
    let mut body = BytesMut::new();
    body.put_i32(3);
    body.put_u8(0);
    body.put_i32(-1);
    let err = body_error(decode_request(request_body(5, 14, &body)));
    assert_eq!(
        err,
        Some(JuteError::InvalidMultiOp {
            multi: "multi",
            op_type: 3
        })
    );
    assert_eq!(
        err.map(|err| err.to_string()),
        Some("op type 3 cannot be part of a multi".to_owned())
    );
    // An unknown result type in a multi reply.
    let mut body = BytesMut::new();
    body.put_i32(99);
    body.put_u8(0);
    body.put_i32(0);
    assert_eq!(
        reply_body_error(decode_reply(reply_body(3, &body), |_| Some(OpCode::Multi))),
        Some(JuteError::InvalidMultiOp {
            multi: "MultiResponse",
            op_type: 99
        })
    );
}

#[test]
fn trailing_bytes_are_refused() {
    assert_eq!(
        body_error(decode_request(request_body(-2, 11, &[0]))),
        Some(JuteError::TrailingBytes {
            record: "ping",
            len: 1
        })
    );
    assert_eq!(
        reply_body_error(decode_reply(reply_body(-2, &[0, 0]), |_| None)),
        Some(JuteError::TrailingBytes {
            record: "ping",
            len: 2
        })
    );
    let mut connect = BytesMut::new();
    connect.put_slice(&[0; 24]);
    connect.put_i32(16);
    connect.put_slice(&[0; 16]);
    connect.put_slice(&[1, 1]);
    assert_eq!(
        ConnectRequest::decode(connect.freeze()),
        Err(JuteError::TrailingBytes {
            record: "ConnectRequest",
            len: 1
        })
    );
}

#[test]
fn reply_to_an_unknown_xid() {
    assert_eq!(
        decode_reply(reply_body(77, &[]), |_| None),
        Err(ReplyError::UnknownXid { xid: 77 })
    );
}

#[test]
fn truncated_notification() {
    let mut body = BytesMut::new();
    body.put_i32(4);
    body.put_i32(3);
    body.put_i32(7);
    body.put_slice(b"/gold");
    assert_eq!(
        reply_body_error(decode_reply(reply_body(-1, &body), |_| None)),
        Some(JuteError::LengthOverrun {
            field: "WatcherEvent.path",
            len: 7,
            remaining: 5
        })
    );
}

#[test]
fn any_non_zero_bool_is_true_like_javas_read_boolean() {
    let mut body = BytesMut::new();
    body.put_i32(2);
    body.put_slice(b"/a");
    body.put_u8(7);
    let decoded = decode_request(request_body(5, 4, &body));
    assert!(
        matches!(&decoded, Ok((_, Request::GetData(get))) if get.watch),
        "{decoded:?}"
    );
    // Re-encoding writes the canonical 1.
    let mut again = BytesMut::new();
    if let Ok((header, request)) = decoded {
        assert_eq!(
            encode_request(header.xid, &request, JUTE_MAX_BUFFER, &mut again),
            Ok(())
        );
    }
    assert_eq!(again.last(), Some(&1));
}

#[test]
fn empty_body_where_a_record_is_due() {
    assert!(matches!(
        decode_reply(reply_body(4, &[]), |_| Some(OpCode::GetData)),
        Err(ReplyError::Body {
            header: ReplyHeader { xid: 4, .. },
            op: OpCode::GetData,
            source: JuteError::Truncated { .. }
        })
    ));
    assert_eq!(
        decode_reply(reply_body(4, &[]), |_| Some(OpCode::Delete)),
        Ok(Reply::Response {
            header: ReplyHeader {
                xid: 4,
                zxid: 9,
                err: 0
            },
            op: OpCode::Delete,
            body: Some(Response::Empty)
        })
    );
}

proptest! {
    /// Any request cut anywhere short of its end is an error, never a
    /// shorter request.
    #[test]
    fn every_prefix_of_a_request_is_an_error(path in "\\PC{0,8}", data in proptest::collection::vec(any::<u8>(), 0..8), cut in any::<prop::sample::Index>()) {
        let request = Request::SetData(SetDataRequest { path, data: Some(Bytes::from(data)), version: 3 });
        let mut wire = BytesMut::new();
        prop_assert_eq!(encode_request(1, &request, JUTE_MAX_BUFFER, &mut wire), Ok(()));
        let body = wire.freeze().slice(4..);
        let cut = cut.index(body.len());
        prop_assert!(decode_request(body.slice(..cut)).is_err());
    }

    /// Arbitrary bytes never panic any decoder.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), op in any::<i32>()) {
        let bytes = Bytes::from(bytes);
        let _ = decode_request(bytes.clone());
        let _ = decode_reply(bytes.clone(), |_| OpCode::from_code(op));
        let _ = ConnectRequest::decode(bytes);
    }
}
