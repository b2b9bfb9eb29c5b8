//! Feeds arbitrary bytes, cut at arbitrary points, to `FrameDecoder` with
//! ZooKeeper's frame limit, then decodes every frame both as the server
//! would (handshake, then requests) and as the client would (handshake
//! response, then replies to an opcode picked by the input). Nothing may
//! panic, and everything decoded must re-encode to bytes that decode to the
//! same value and re-encode to themselves.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use session_wire::FrameDecoder;
use session_wire::zookeeper::{
    ConnectRequest, ConnectResponse, JUTE_MAX_BUFFER, JuteRecord, OpCode, decode_reply,
    decode_request, encode_frame, encode_request,
};

fuzz_target!(|input: &[u8]| {
    let Some((&control, bytes)) = input.split_first() else {
        return;
    };
    // Low 3 bits pick the frame limit, the rest the chunk size and the
    // opcode the client remembers for every xid.
    let max_frame_len = [0, 1, 16, 64, 4096, JUTE_MAX_BUFFER][usize::from(control & 0x7) % 6];
    let chunk = usize::from(control >> 3) + 1;
    let op = OpCode::ALL[usize::from(control) % OpCode::ALL.len()];

    let mut decoder = FrameDecoder::with_max_frame_len(max_frame_len);
    let mut first = true;
    for piece in bytes.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    check_frame(frame, first, op, max_frame_len);
                    first = false;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});

fn check_frame(frame: Bytes, first: bool, op: OpCode, max_frame_len: u32) {
    if first {
        if let Ok(request) = ConnectRequest::decode(frame.clone()) {
            let again = re_encode(|dst| encode_frame(&request, max_frame_len, dst));
            assert_eq!(ConnectRequest::decode(again.slice(4..)).ok(), Some(request));
        }
        if let Ok(response) = ConnectResponse::decode(frame) {
            let again = re_encode(|dst| encode_frame(&response, max_frame_len, dst));
            assert_eq!(ConnectResponse::decode(again.slice(4..)).ok(), Some(response));
        }
        return;
    }

    if let Ok((header, request)) = decode_request(frame.clone()) {
        let again = re_encode(|dst| encode_request(header.xid, &request, max_frame_len, dst));
        let decoded = decode_request(again.slice(4..));
        assert_eq!(decoded.as_ref().ok(), Some(&(header, request)));
        if let Ok((header, request)) = decoded {
            let twice = re_encode(|dst| encode_request(header.xid, &request, max_frame_len, dst));
            assert_eq!(twice, again, "re-encoding is not a fixed point");
        }
    }

    if let Ok(reply) = decode_reply(frame, |_| Some(op)) {
        let again = re_encode(|dst| reply.encode(max_frame_len, dst));
        let decoded = decode_reply(again.slice(4..), |_| Some(op));
        assert_eq!(decoded.as_ref().ok(), Some(&reply));
        if let Ok(reply) = decoded {
            let twice = re_encode(|dst| reply.encode(max_frame_len, dst));
            assert_eq!(twice, again, "re-encoding is not a fixed point");
        }
    }
}

/// Runs an encoder that must succeed: a decoded message never re-encodes
/// longer than the frame it came from.
fn re_encode<E: std::fmt::Debug>(encode: impl FnOnce(&mut BytesMut) -> Result<(), E>) -> Bytes {
    let mut dst = BytesMut::new();
    if let Err(err) = encode(&mut dst) {
        panic!("a decoded message does not re-encode: {err:?}");
    }
    dst.freeze()
}
