//! Feeds arbitrary bytes, cut at arbitrary points, to `FrameDecoder` and to
//! the tokio-util codec. Neither may panic, both must agree, and every message
//! decoded must survive re-encoding unchanged.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use session_wire::v1::{ClientMessage, ServerMessage};
use session_wire::{FrameDecoder, ServerCodec, WireMessage, encode, expect_handshake};
use tokio_util::codec::Decoder;

fuzz_target!(|input: &[u8]| {
    let Some((&control, bytes)) = input.split_first() else {
        return;
    };
    // Low bits pick the frame limit, high bits the chunk size.
    let max_frame_len =
        [0, 1, 16, 256, 4096, session_wire::DEFAULT_MAX_FRAME_LEN][usize::from(control & 0x7) % 6];
    let chunk = usize::from(control >> 3) + 1;

    let client = run::<ClientMessage>(bytes, chunk, max_frame_len);
    if let Some(Ok(first)) = client.first() {
        let _ = expect_handshake(first.clone());
    }
    run::<ServerMessage>(bytes, chunk, max_frame_len);

    // The codec sees the same stream in one piece and must agree.
    let mut codec = ServerCodec::with_max_frame_len(max_frame_len);
    let mut src = BytesMut::from(bytes);
    let mut from_codec = Vec::new();
    loop {
        match codec.decode_eof(&mut src) {
            Ok(Some(message)) => from_codec.push(Ok(message)),
            Ok(None) => break,
            Err(_) => {
                from_codec.push(Err(()));
                break;
            }
        }
    }
    assert_eq!(from_codec, client, "codec and FrameDecoder disagree");
});

/// Decodes `bytes` pushed `chunk` bytes at a time; returns what came out, an
/// error as `Err(())` at the end.
fn run<M: WireMessage + Clone + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    chunk: usize,
    max_frame_len: u32,
) -> Vec<Result<M, ()>> {
    let mut decoder = FrameDecoder::with_max_frame_len(max_frame_len);
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_message::<M>() {
                Ok(Some(message)) => {
                    check_round_trip(&message, max_frame_len);
                    out.push(Ok(message));
                }
                Ok(None) => break,
                // Framing errors and bad bodies alike end the connection.
                Err(_) => {
                    out.push(Err(()));
                    return out;
                }
            }
        }
    }
    if decoder.finish().is_err() {
        out.push(Err(()));
    }
    out
}

fn check_round_trip<M: WireMessage + Clone + PartialEq + std::fmt::Debug>(
    message: &M,
    max_frame_len: u32,
) {
    let mut frame = BytesMut::new();
    // Re-encoding can be longer than the input (unknown fields are dropped,
    // but non-canonical varints get shorter and defaults vanish): only check
    // what fits.
    if encode(message, max_frame_len, &mut frame).is_err() {
        return;
    }
    let mut decoder = FrameDecoder::with_max_frame_len(max_frame_len);
    decoder.push(&frame);
    match decoder.next_message::<M>() {
        Ok(Some(again)) => assert!(again == *message, "re-encoded message changed"),
        other => panic!("re-encoded message does not decode: {other:?}"),
    }
}
