//! The framing as a `tokio_util::codec` `Decoder` and `Encoder`, for
//! `Framed`, `FramedRead` and `FramedWrite`.

use std::fmt;
use std::io;
use std::marker::PhantomData;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{DEFAULT_MAX_FRAME_LEN, EncodeError, check_end_of_stream, encode, split_frame};
use crate::message::{DecodeError, WireMessage, decode_message};
use crate::v1::{ClientMessage, ServerMessage};

/// Why a framed stream failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading or writing the underlying transport failed.
    #[error("transport error: {0}")]
    Io(#[from] io::Error),
    /// The bytes read are not a valid frame or message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message to send is larger than the maximum frame length.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A codec decoding messages `In` and encoding messages `Out`, both framed
/// with a 4-byte big-endian length and a maximum frame length.
///
/// Use [`ServerCodec`] on the server side of a connection and [`ClientCodec`]
/// on the client side. Decoding hands out messages whose `bytes` fields share
/// the read buffer; encoding writes straight into the write buffer, so a ping
/// or pong costs no allocation once the buffers have grown.
pub struct WireCodec<In, Out> {
    max_frame_len: u32,
    // `fn` keeps the codec Send + Sync whatever the messages are.
    messages: PhantomData<fn(Out) -> In>,
}

/// The server side of a connection: decodes [`ClientMessage`]s, encodes
/// [`ServerMessage`]s.
pub type ServerCodec = WireCodec<ClientMessage, ServerMessage>;

/// The client side of a connection: decodes [`ServerMessage`]s, encodes
/// [`ClientMessage`]s.
pub type ClientCodec = WireCodec<ServerMessage, ClientMessage>;

impl<In, Out> WireCodec<In, Out> {
    /// A codec with the default maximum frame length, [`DEFAULT_MAX_FRAME_LEN`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A codec refusing frame bodies longer than `max_frame_len` bytes, in
    /// both directions.
    #[must_use]
    pub fn with_max_frame_len(max_frame_len: u32) -> Self {
        Self {
            max_frame_len,
            messages: PhantomData,
        }
    }

    /// The maximum frame body length in bytes.
    #[must_use]
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }
}

impl<In, Out> Default for WireCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out> Clone for WireCodec<In, Out> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<In, Out> Copy for WireCodec<In, Out> {}

impl<In, Out> fmt::Debug for WireCodec<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireCodec")
            .field("decodes", &std::any::type_name::<In>())
            .field("encodes", &std::any::type_name::<Out>())
            .field("max_frame_len", &self.max_frame_len)
            .finish()
    }
}

impl<In: WireMessage, Out> Decoder for WireCodec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        match split_frame(src, self.max_frame_len).map_err(DecodeError::from)? {
            Some(frame) => Ok(Some(decode_message(frame)?)),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None => {
                check_end_of_stream(src).map_err(DecodeError::from)?;
                Ok(None)
            }
        }
    }
}

impl<In, Out: prost::Message> Encoder<Out> for WireCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, message: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode(&message, self.max_frame_len, dst)?)
    }
}

impl<In, Out: prost::Message> Encoder<&Out> for WireCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, message: &Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode(message, self.max_frame_len, dst)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameError;
    use crate::v1::{Ping, Pong};

    #[test]
    fn round_trips_both_directions_split_anywhere() {
        let mut client = ClientCodec::new();
        let mut server = ServerCodec::new();
        let mut wire = BytesMut::new();
        for _ in 0..3 {
            client
                .encode(ClientMessage::from(Ping {}), &mut wire)
                .map_err(|err| err.to_string())
                .expect("a ping fits in a frame");
        }
        let bytes = wire.split().freeze();
        let mut src = BytesMut::new();
        let mut received = Vec::new();
        for byte in bytes.iter() {
            src.extend_from_slice(&[*byte]);
            while let Some(message) = server
                .decode(&mut src)
                .map_err(|err| err.to_string())
                .expect("valid frames")
            {
                received.push(message);
            }
        }
        assert_eq!(received, vec![ClientMessage::from(Ping {}); 3]);

        let pong = ServerMessage::from(Pong {});
        server
            .encode(&pong, &mut wire)
            .map_err(|err| err.to_string())
            .expect("a pong fits in a frame");
        let decoded = client.decode_eof(&mut wire).map_err(|err| err.to_string());
        assert_eq!(decoded, Ok(Some(pong)));
        assert!(wire.is_empty());
    }

    #[test]
    fn end_of_stream_inside_a_frame_is_truncated() {
        let mut server = ServerCodec::new();
        let mut src = BytesMut::from(&[0, 0, 0, 2, 0x12][..]);
        assert!(matches!(server.decode(&mut src), Ok(None)));
        match server.decode_eof(&mut src) {
            Err(CodecError::Decode(DecodeError::Frame(FrameError::Truncated {
                received: 5,
                expected: 6,
            }))) => {}
            other => panic!("expected truncation, got {other:?}"),
        }
    }

    #[test]
    fn oversize_is_refused_both_ways() {
        let mut server = ServerCodec::with_max_frame_len(1);
        let mut src = BytesMut::from(&[0, 0, 0, 2][..]);
        assert!(matches!(
            server.decode(&mut src),
            Err(CodecError::Decode(DecodeError::Frame(
                FrameError::Oversize { len: 2, max: 1 }
            )))
        ));
        let mut client = ClientCodec::with_max_frame_len(1);
        let mut dst = BytesMut::new();
        assert!(matches!(
            client.encode(ClientMessage::from(Ping {}), &mut dst),
            Err(CodecError::Encode(EncodeError::Oversize { len: 2, max: 1 }))
        ));
        assert!(dst.is_empty());
    }
}
