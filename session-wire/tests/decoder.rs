//! The decoder against malformed input: every case gives its typed error,
//! whatever the byte split, and nothing panics.

use bytes::BytesMut;
use session_wire::v1::{ClientMessage, Ping, ServerMessage};
use session_wire::{
    DEFAULT_MAX_FRAME_LEN, DecodeError, FrameDecoder, FrameError, decode_message, encode,
    expect_handshake,
};

fn ping_frame() -> BytesMut {
    let mut frame = BytesMut::new();
    assert_eq!(
        encode(
            &ClientMessage::from(Ping {}),
            DEFAULT_MAX_FRAME_LEN,
            &mut frame
        ),
        Ok(())
    );
    frame
}

#[test]
fn oversize_length_is_refused_on_its_fourth_byte() {
    let mut decoder = FrameDecoder::new();
    let prefix = (DEFAULT_MAX_FRAME_LEN + 1).to_be_bytes();
    for byte in &prefix[..3] {
        decoder.push(&[*byte]);
        assert_eq!(decoder.next_frame(), Ok(None));
    }
    decoder.push(&prefix[3..]);
    let err = decoder.next_frame().err();
    assert_eq!(
        err,
        Some(FrameError::Oversize {
            len: DEFAULT_MAX_FRAME_LEN + 1,
            max: DEFAULT_MAX_FRAME_LEN
        })
    );
    assert_eq!(
        err.map(|err| err.to_string()),
        Some("frame length 1048577 exceeds the maximum frame length of 1048576 bytes".to_owned())
    );
}

#[test]
fn configured_limit_is_enforced() {
    let mut decoder = FrameDecoder::with_max_frame_len(1);
    assert_eq!(decoder.max_frame_len(), 1);
    decoder.push(&ping_frame());
    assert_eq!(
        decoder.next_message::<ClientMessage>(),
        Err(DecodeError::Frame(FrameError::Oversize { len: 2, max: 1 }))
    );
}

#[test]
fn truncated_body_at_end_of_stream() {
    let frame = ping_frame();
    for cut in 1..frame.len() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame[..cut]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated {
                received: cut,
                expected: if cut < 4 { 4 } else { frame.len() },
            }),
            "cut at {cut}"
        );
    }
}

#[test]
fn undecodable_protobuf() {
    let mut decoder = FrameDecoder::new();
    // A 3-byte body: field 4 (request), length-delimited, claiming 100 bytes.
    decoder.push(&[0, 0, 0, 3, 0x22, 100, 0]);
    match decoder.next_message::<ClientMessage>() {
        Err(DecodeError::Protobuf { message, len, .. }) => {
            assert_eq!((message, len), ("ClientMessage", 3));
        }
        other => panic!("expected a protobuf error, got {other:?}"),
    }
    // The frame was consumed: the stream itself is still well framed.
    assert_eq!(decoder.finish(), Ok(()));
}

#[test]
fn invalid_wire_type_is_undecodable() {
    // Wire type 7 does not exist.
    let err = decode_message::<ServerMessage>(bytes::Bytes::from_static(&[0x0f])).err();
    assert!(
        matches!(
            err,
            Some(DecodeError::Protobuf {
                message: "ServerMessage",
                len: 1,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn unknown_message_kind() {
    let mut decoder = FrameDecoder::new();
    // An empty body, then a body with only field 9 (unknown to version 1).
    decoder.push(&[0, 0, 0, 0, 0, 0, 0, 2, 0x48, 0x01]);
    assert_eq!(
        decoder.next_message::<ClientMessage>(),
        Err(DecodeError::UnknownKind {
            message: "ClientMessage",
            len: 0
        })
    );
    assert_eq!(
        decoder.next_message::<ClientMessage>(),
        Err(DecodeError::UnknownKind {
            message: "ClientMessage",
            len: 2
        })
    );
    assert_eq!(decoder.next_message::<ClientMessage>(), Ok(None));
}

#[test]
fn wrong_first_message() {
    let mut decoder = FrameDecoder::new();
    decoder.push(&ping_frame());
    let first = decoder.next_message::<ClientMessage>();
    let err = match first {
        Ok(Some(first)) => expect_handshake(first).err(),
        other => panic!("expected a ping, got {other:?}"),
    };
    assert_eq!(
        err,
        Some(DecodeError::WrongFirstMessage {
            expected: "handshake",
            got: "ping"
        })
    );
}

#[test]
fn frames_split_byte_by_byte() {
    let mut wire = BytesMut::new();
    for _ in 0..5 {
        wire.extend_from_slice(&ping_frame());
    }
    let mut decoder = FrameDecoder::new();
    let mut count = 0;
    for byte in wire.iter() {
        decoder.push(&[*byte]);
        while let Ok(Some(message)) = decoder.next_message::<ClientMessage>() {
            assert_eq!(message, ClientMessage::from(Ping {}));
            count += 1;
        }
    }
    assert_eq!(count, 5);
    assert_eq!(decoder.finish(), Ok(()));
}

#[test]
fn frame_error_is_kept_after_failure() {
    let mut decoder = FrameDecoder::with_max_frame_len(4);
    decoder.push(&[0, 0, 0, 5]);
    let oversize = FrameError::Oversize { len: 5, max: 4 };
    assert_eq!(decoder.next_frame(), Err(oversize.clone()));
    decoder.push(&ping_frame());
    assert_eq!(
        decoder.next_message::<ClientMessage>(),
        Err(DecodeError::Frame(oversize))
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic sweep of short inputs; the fuzz target covers the rest.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 24) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (state.rotate_left(i as u32 * 8) & 0xff) as u8)
            .collect();
        let mut decoder = FrameDecoder::with_max_frame_len(16);
        decoder.push(&bytes);
        while let Ok(Some(_)) = decoder.next_message::<ServerMessage>() {}
        let _ = decoder.finish();
    }
}
