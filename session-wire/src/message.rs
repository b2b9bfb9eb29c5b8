//! Decoding frame bodies into the two top-level messages, the checks every
//! connection makes on its first message, and small conveniences on the
//! generated types.

use bytes::Bytes;

use crate::frame::FrameError;
use crate::v1::{
    ClientMessage, CloseAck, CloseSession, Disconnect, ErrorCode, Handshake, HandshakeReply, Ping,
    Pong, Reply, Request, ServerMessage, WatchEvent, client_message, server_message,
};

/// The protocol version this crate speaks, sent in `Handshake.protocol_version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The lowest protocol version this crate's messages can serve.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// The highest protocol version this crate's messages can serve.
pub const MAX_PROTOCOL_VERSION: u32 = 1;

/// The length in bytes of a session password.
pub const PASSWORD_LEN: usize = 16;

/// Why a frame could not be turned into a message, or a message is not
/// acceptable where it arrived. Every variant means: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The byte stream's framing is broken.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame body is not a valid protobuf encoding of the message.
    #[error("undecodable {message} in a {len}-byte frame: {source}")]
    Protobuf {
        /// The message the body should have been (`ClientMessage` or `ServerMessage`).
        message: &'static str,
        /// The body length.
        len: usize,
        /// What prost found wrong.
        #[source]
        source: prost::DecodeError,
    },
    /// The message decoded, but its kind is unset: a kind this version of the
    /// protocol does not know, or none at all.
    #[error(
        "unknown message kind: the {message} in a {len}-byte frame has no kind this version knows"
    )]
    UnknownKind {
        /// The message (`ClientMessage` or `ServerMessage`).
        message: &'static str,
        /// The body length.
        len: usize,
    },
    /// The first message on a connection is not the handshake (or, from the
    /// server, the handshake reply).
    #[error("wrong first message: expected {expected}, got {got}")]
    WrongFirstMessage {
        /// The kind the first message must have.
        expected: &'static str,
        /// The kind it had.
        got: &'static str,
    },
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::v1::ClientMessage {}
    impl Sealed for crate::v1::ServerMessage {}
}

/// A top-level message: one per frame. Implemented by
/// [`ClientMessage`] and [`ServerMessage`] only.
pub trait WireMessage: prost::Message + Default + sealed::Sealed {
    /// The message's protobuf name, for errors.
    const NAME: &'static str;

    /// The name of the message's kind (the set oneof field, e.g. `"ping"`),
    /// `None` when it is unset.
    fn kind_name(&self) -> Option<&'static str>;
}

impl WireMessage for ClientMessage {
    const NAME: &'static str = "ClientMessage";

    fn kind_name(&self) -> Option<&'static str> {
        Some(match self.kind.as_ref()? {
            client_message::Kind::Handshake(_) => "handshake",
            client_message::Kind::Ping(_) => "ping",
            client_message::Kind::CloseSession(_) => "close_session",
            client_message::Kind::Request(_) => "request",
        })
    }
}

impl WireMessage for ServerMessage {
    const NAME: &'static str = "ServerMessage";

    fn kind_name(&self) -> Option<&'static str> {
        Some(match self.kind.as_ref()? {
            server_message::Kind::HandshakeReply(_) => "handshake_reply",
            server_message::Kind::Pong(_) => "pong",
            server_message::Kind::CloseAck(_) => "close_ack",
            server_message::Kind::Reply(_) => "reply",
            server_message::Kind::WatchEvent(_) => "watch_event",
            server_message::Kind::Disconnect(_) => "disconnect",
        })
    }
}

/// Decodes one frame body as message `M`.
///
/// `bytes` fields of the result (node data, passwords) are slices of `frame`,
/// not copies; they keep the frame's buffer alive as long as they live.
///
/// Only the top-level kind is checked. An unset operation inside a
/// [`Request`] is left for the server to answer with `UNIMPLEMENTED`, so a
/// newer client can talk to an older server.
///
/// # Errors
/// [`DecodeError::Protobuf`] when `frame` is not a valid `M`,
/// [`DecodeError::UnknownKind`] when its kind is unset.
pub fn decode_message<M: WireMessage>(frame: Bytes) -> Result<M, DecodeError> {
    let len = frame.len();
    let message = M::decode(frame).map_err(|source| DecodeError::Protobuf {
        message: M::NAME,
        len,
        source,
    })?;
    if message.kind_name().is_none() {
        return Err(DecodeError::UnknownKind {
            message: M::NAME,
            len,
        });
    }
    Ok(message)
}

/// Checks that a connection's first client message is a handshake and
/// returns it.
///
/// # Errors
/// [`DecodeError::WrongFirstMessage`] naming the kind that came instead.
pub fn expect_handshake(first: ClientMessage) -> Result<Handshake, DecodeError> {
    match first.kind {
        Some(client_message::Kind::Handshake(handshake)) => Ok(handshake),
        _ => Err(DecodeError::WrongFirstMessage {
            expected: "handshake",
            got: first.kind_name().unwrap_or("nothing"),
        }),
    }
}

/// Checks that a connection's first server message is a handshake reply and
/// returns it.
///
/// # Errors
/// [`DecodeError::WrongFirstMessage`] naming the kind that came instead.
pub fn expect_handshake_reply(first: ServerMessage) -> Result<HandshakeReply, DecodeError> {
    match first.kind {
        Some(server_message::Kind::HandshakeReply(reply)) => Ok(reply),
        _ => Err(DecodeError::WrongFirstMessage {
            expected: "handshake_reply",
            got: first.kind_name().unwrap_or("nothing"),
        }),
    }
}

macro_rules! wrap_kind {
    ($outer:ident, $module:ident, $($inner:ident),+ $(,)?) => {
        $(
            impl From<$inner> for $outer {
                fn from(inner: $inner) -> Self {
                    Self {
                        kind: Some($module::Kind::$inner(inner)),
                    }
                }
            }
        )+
    };
}

wrap_kind!(
    ClientMessage,
    client_message,
    Handshake,
    Ping,
    CloseSession,
    Request
);
wrap_kind!(
    ServerMessage,
    server_message,
    HandshakeReply,
    Pong,
    CloseAck,
    Reply,
    WatchEvent,
    Disconnect
);

impl ErrorCode {
    /// ZooKeeper's numeric code with the same meaning, where ZooKeeper has
    /// one (for logs and a future ZooKeeper-compatible listener).
    #[must_use]
    pub fn zookeeper_code(self) -> Option<i32> {
        match self {
            Self::Unspecified | Self::SystemError => Some(-1),
            Self::SessionExpired => Some(-112),
            Self::SessionMoved => Some(-118),
            Self::AuthFailed => Some(-115),
            Self::NoNode => Some(-101),
            Self::NodeExists => Some(-110),
            Self::BadVersion => Some(-103),
            Self::NotEmpty => Some(-111),
            Self::NoChildrenForEphemerals => Some(-108),
            Self::QuotaExceeded => Some(-125),
            Self::BadArguments => Some(-8),
            Self::Unimplemented => Some(-6),
            Self::NoAuth => Some(-102),
            Self::InvalidAcl => Some(-114),
            Self::NoWatcher => Some(-121),
            Self::RuntimeInconsistency => Some(-2),
            Self::Ok => Some(0),
            Self::InvalidPath
            | Self::TooLarge
            | Self::TooManyEphemerals
            | Self::TooManyWatches
            | Self::Unavailable
            | Self::ServerShuttingDown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_kind_is_unknown() {
        let err = decode_message::<ClientMessage>(Bytes::new()).err();
        assert_eq!(
            err,
            Some(DecodeError::UnknownKind {
                message: "ClientMessage",
                len: 0
            })
        );
        // A field number this version does not know (15, varint 1) decodes
        // to an unset kind too.
        let err = decode_message::<ServerMessage>(Bytes::from_static(&[0x78, 0x01])).err();
        assert_eq!(
            err.map(|err| err.to_string()),
            Some(
                "unknown message kind: the ServerMessage in a 2-byte frame has no kind this version knows"
                    .to_owned()
            )
        );
    }

    #[test]
    fn garbage_is_undecodable() {
        // Field 1, length-delimited, announcing 10 bytes that are not there.
        let err = decode_message::<ClientMessage>(Bytes::from_static(&[0x0a, 0x0a, 0x01]));
        match err {
            Err(DecodeError::Protobuf { message, len, .. }) => {
                assert_eq!((message, len), ("ClientMessage", 3));
            }
            other => panic!("expected a protobuf error, got {other:?}"),
        }
    }

    #[test]
    fn first_message_must_be_the_handshake() {
        let handshake = Handshake {
            protocol_version: PROTOCOL_VERSION,
            requested_timeout_ms: 4000,
            ..Handshake::default()
        };
        assert_eq!(
            expect_handshake(ClientMessage::from(handshake.clone())),
            Ok(handshake)
        );
        let err = expect_handshake(ClientMessage::from(Ping {})).err();
        assert_eq!(
            err.map(|err| err.to_string()),
            Some("wrong first message: expected handshake, got ping".to_owned())
        );
        assert_eq!(
            expect_handshake(ClientMessage::default()),
            Err(DecodeError::WrongFirstMessage {
                expected: "handshake",
                got: "nothing"
            })
        );
        assert_eq!(
            expect_handshake_reply(ServerMessage::from(Pong {})),
            Err(DecodeError::WrongFirstMessage {
                expected: "handshake_reply",
                got: "pong"
            })
        );
        let reply = HandshakeReply::default();
        assert_eq!(
            expect_handshake_reply(ServerMessage::from(reply.clone())),
            Ok(reply)
        );
    }

    #[test]
    fn zookeeper_codes_match_zookeeper() {
        assert_eq!(ErrorCode::SessionExpired.zookeeper_code(), Some(-112));
        assert_eq!(ErrorCode::NoNode.zookeeper_code(), Some(-101));
        assert_eq!(ErrorCode::NodeExists.zookeeper_code(), Some(-110));
        assert_eq!(ErrorCode::BadVersion.zookeeper_code(), Some(-103));
        assert_eq!(ErrorCode::InvalidPath.zookeeper_code(), None);
        assert_eq!(ErrorCode::NoAuth.zookeeper_code(), Some(-102));
        assert_eq!(ErrorCode::InvalidAcl.zookeeper_code(), Some(-114));
        assert_eq!(ErrorCode::AuthFailed.zookeeper_code(), Some(-115));
        assert_eq!(ErrorCode::NoWatcher.zookeeper_code(), Some(-121));
        assert_eq!(ErrorCode::RuntimeInconsistency.zookeeper_code(), Some(-2));
        assert_eq!(ErrorCode::Ok.zookeeper_code(), Some(0));
    }

    #[test]
    fn decoded_bytes_fields_share_the_frame() {
        let handshake = Handshake {
            password: Bytes::from_static(&[9; PASSWORD_LEN]),
            ..Handshake::default()
        };
        let body = prost::Message::encode_to_vec(&ClientMessage::from(handshake));
        let frame = Bytes::from(body);
        let range = frame.as_ptr_range();
        let decoded = decode_message::<ClientMessage>(frame.clone()).map(expect_handshake);
        let password = match decoded {
            Ok(Ok(handshake)) => handshake.password,
            other => panic!("expected a handshake, got {other:?}"),
        };
        assert!(range.contains(&password.as_ptr()), "password was copied");
    }
}
