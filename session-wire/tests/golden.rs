//! Golden byte vectors: the exact frames of a handshake and a ping, committed
//! under `tests/golden/`. A change to the wire encoding of these messages
//! fails here; if the change is intended, it is a protocol change: bump the
//! protocol version or prove compatibility, then regenerate the files with
//! `SESSION_WIRE_BLESS=1 cargo test -p session-wire --test golden`.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use session_wire::v1::{ClientMessage, Handshake, Ping, ProtocolVersion};
use session_wire::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, PROTOCOL_VERSION, encode};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Encodes `message`, compares the frame with the golden file `name`, and
/// decodes the golden file back into `message`.
fn check_golden(name: &str, message: &ClientMessage) {
    let mut frame = BytesMut::new();
    assert_eq!(encode(message, DEFAULT_MAX_FRAME_LEN, &mut frame), Ok(()));
    let path = golden_path(name);
    if std::env::var_os("SESSION_WIRE_BLESS").is_some() {
        std::fs::write(&path, &frame)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }
    let golden = std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read {}: {err}; create it with SESSION_WIRE_BLESS=1",
            path.display()
        )
    });
    assert_eq!(
        hex(&frame),
        hex(&golden),
        "the encoding of {name} changed: this is a wire protocol change"
    );
    let mut decoder = FrameDecoder::new();
    decoder.push(&golden);
    assert_eq!(
        decoder.next_message::<ClientMessage>(),
        Ok(Some(message.clone()))
    );
    assert_eq!(decoder.finish(), Ok(()));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn protocol_version_constant_matches_the_proto_enum() {
    assert_eq!(
        i32::try_from(PROTOCOL_VERSION),
        Ok(ProtocolVersion::V1 as i32)
    );
}

#[test]
fn handshake_frame_is_unchanged() {
    let handshake = Handshake {
        protocol_version: PROTOCOL_VERSION,
        requested_timeout_ms: 30_000,
        session_id: 0x0100_0003_42b8_0000,
        password: Bytes::from_static(&[
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]),
        last_zxid_seen: 0x1_0000_002a,
        client_name: "session-client".to_owned(),
        client_version: "0.1.0".to_owned(),
    };
    check_golden("handshake.bin", &ClientMessage::from(handshake));
}

#[test]
fn new_session_handshake_frame_is_unchanged() {
    let handshake = Handshake {
        protocol_version: PROTOCOL_VERSION,
        requested_timeout_ms: 4_000,
        ..Handshake::default()
    };
    check_golden("handshake-new-session.bin", &ClientMessage::from(handshake));
}

#[test]
fn ping_frame_is_unchanged() {
    check_golden("ping.bin", &ClientMessage::from(Ping {}));
}
