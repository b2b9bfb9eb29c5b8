//! Length-prefixed framing: a 4-byte big-endian body length, then the body.
//!
//! Owns the frame limit, [`FrameDecoder`] (bytes in, whole frames out) and
//! [`encode`] (one message out as one frame).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::message::{DecodeError, WireMessage, decode_message};

/// The number of bytes of the length prefix in front of every frame body.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// The default maximum frame body length: 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 1024 * 1024;

/// What is wrong with a byte stream's framing. After any of these the stream
/// cannot be resynchronised: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length prefix announced a body longer than the maximum frame length.
    /// Detected from the 4 prefix bytes alone, before the body is buffered.
    #[error("frame length {len} exceeds the maximum frame length of {max} bytes")]
    Oversize {
        /// The announced body length.
        len: u32,
        /// The maximum frame length in force.
        max: u32,
    },
    /// The stream ended inside a frame: in its length prefix or its body.
    #[error("stream ended inside a frame: {received} of {expected} bytes received")]
    Truncated {
        /// The bytes of the frame (prefix included) that did arrive.
        received: usize,
        /// The bytes the frame needed (prefix included); 4 when the stream
        /// ended inside the prefix.
        expected: usize,
    },
}

/// Why a message could not be written as a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message is longer than the maximum frame length. Nothing
    /// was written.
    #[error("message of {len} bytes exceeds the maximum frame length of {max} bytes")]
    Oversize {
        /// The encoded length of the message.
        len: usize,
        /// The maximum frame length in force.
        max: u32,
    },
}

/// Writes `message` to `dst` as one frame: its length as 4 big-endian bytes,
/// then its protobuf encoding.
///
/// Reserves room for the whole frame at once and encodes straight into `dst`,
/// so writing into a buffer with room to spare allocates nothing.
///
/// # Errors
/// [`EncodeError::Oversize`] when the encoded message is longer than
/// `max_frame_len`; `dst` is left as it was.
pub fn encode<M: prost::Message>(
    message: &M,
    max_frame_len: u32,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let len = message.encoded_len();
    let oversize = EncodeError::Oversize {
        len,
        max: max_frame_len,
    };
    let prefix = u32::try_from(len).map_err(|_| oversize.clone())?;
    if prefix > max_frame_len {
        return Err(oversize);
    }
    dst.reserve(LENGTH_PREFIX_LEN + len);
    dst.put_u32(prefix);
    message.encode_raw(dst);
    Ok(())
}

/// Splits the next whole frame body off the front of `src`.
///
/// `Ok(None)` means more bytes are needed; once the length prefix is known
/// to be within the limit, room for the rest of the frame is reserved in
/// `src`, never more than `max_frame_len` plus the prefix.
pub(crate) fn split_frame(
    src: &mut BytesMut,
    max_frame_len: u32,
) -> Result<Option<Bytes>, FrameError> {
    let Some(prefix) = src.first_chunk::<LENGTH_PREFIX_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix);
    if len > max_frame_len {
        return Err(FrameError::Oversize {
            len,
            max: max_frame_len,
        });
    }
    // Lossless: `len` is at most a u32 and usize is at least 32 bits wide on
    // every target bytes supports.
    let total = LENGTH_PREFIX_LEN + len as usize;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    src.advance(LENGTH_PREFIX_LEN);
    Ok(Some(src.split_to(total - LENGTH_PREFIX_LEN).freeze()))
}

/// What is left in `buffer` at the end of a stream, as an error if it is part
/// of a frame.
pub(crate) fn check_end_of_stream(buffer: &[u8]) -> Result<(), FrameError> {
    if buffer.is_empty() {
        return Ok(());
    }
    let expected = match buffer.first_chunk::<LENGTH_PREFIX_LEN>() {
        Some(prefix) => LENGTH_PREFIX_LEN
            .saturating_add(usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX)),
        None => LENGTH_PREFIX_LEN,
    };
    Err(FrameError::Truncated {
        received: buffer.len(),
        expected,
    })
}

/// Turns a byte stream, split anywhere, into whole frames.
///
/// Sans-IO: the caller [`push`](Self::push)es the bytes it read, then drains
/// [`next_frame`](Self::next_frame) or [`next_message`](Self::next_message)
/// until they return `Ok(None)`, and calls [`finish`](Self::finish) when the
/// stream ends. A length prefix over the limit is refused as soon as its four
/// bytes are in, so a peer can make the decoder hold at most one maximum-size
/// frame plus what the caller pushed at once.
///
/// After an error the decoder is stuck: every later call returns the same
/// error, because the stream cannot be resynchronised. Close the connection.
///
/// Methods: getters ([`max_frame_len`](Self::max_frame_len),
/// [`buffered`](Self::buffered)), one input ([`push`](Self::push)) and the
/// outputs (`next_frame`, `next_message`, `finish`).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buffer: BytesMut,
    max_frame_len: u32,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with the default maximum frame length, [`DEFAULT_MAX_FRAME_LEN`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A decoder refusing frame bodies longer than `max_frame_len` bytes.
    #[must_use]
    pub fn with_max_frame_len(max_frame_len: u32) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_frame_len,
            failed: None,
        }
    }

    /// The maximum frame body length in bytes.
    #[must_use]
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }

    /// The number of bytes pushed but not yet handed out as frames.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Appends bytes read from the stream. Ignored once the decoder failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// The body of the next whole frame, or `Ok(None)` when more bytes are
    /// needed. The body shares the decoder's buffer: no copy.
    ///
    /// # Errors
    /// [`FrameError::Oversize`] when a length prefix exceeds the limit.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        split_frame(&mut self.buffer, self.max_frame_len).inspect_err(|err| {
            self.failed = Some(err.clone());
            self.buffer = BytesMut::new();
        })
    }

    /// The next whole frame decoded as message `M`, or `Ok(None)` when more
    /// bytes are needed.
    ///
    /// # Errors
    /// [`DecodeError::Frame`] for a framing error, [`DecodeError::Protobuf`]
    /// for a body that is not a valid `M`, [`DecodeError::UnknownKind`] for an
    /// `M` whose kind is unset.
    pub fn next_message<M: WireMessage>(&mut self) -> Result<Option<M>, DecodeError> {
        match self.next_frame()? {
            Some(frame) => decode_message(frame).map(Some),
            None => Ok(None),
        }
    }

    /// Checks, at the end of the stream, that no partial frame is left.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] when the stream ended inside a frame, or the
    /// error the decoder failed with earlier.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        check_end_of_stream(&self.buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_refuses_oversize_and_leaves_dst_alone() {
        let big = crate::v1::GetDataResult {
            data: Bytes::from(vec![7; 100]),
            stat: None,
        };
        let mut dst = BytesMut::from(&b"xy"[..]);
        let err = encode(&big, 50, &mut dst).err();
        assert_eq!(err, Some(EncodeError::Oversize { len: 102, max: 50 }));
        assert_eq!(&dst[..], b"xy");
        assert_eq!(
            EncodeError::Oversize { len: 102, max: 50 }.to_string(),
            "message of 102 bytes exceeds the maximum frame length of 50 bytes"
        );
    }

    #[test]
    fn encode_at_exactly_the_limit_succeeds() {
        let message = crate::v1::GetDataResult {
            data: Bytes::from(vec![7; 100]),
            stat: None,
        };
        let mut dst = BytesMut::new();
        assert_eq!(encode(&message, 102, &mut dst), Ok(()));
        assert_eq!(&dst[..4], 102u32.to_be_bytes());
        let mut decoder = FrameDecoder::with_max_frame_len(102);
        decoder.push(&dst);
        let frame = decoder.next_frame().ok().flatten().map(|frame| frame.len());
        assert_eq!(frame, Some(102));
    }

    #[test]
    fn oversize_prefix_is_refused_before_the_body_is_buffered() {
        let mut src = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let capacity_before = src.capacity();
        assert_eq!(
            split_frame(&mut src, DEFAULT_MAX_FRAME_LEN),
            Err(FrameError::Oversize {
                len: u32::MAX,
                max: DEFAULT_MAX_FRAME_LEN
            })
        );
        assert_eq!(src.capacity(), capacity_before);
    }

    #[test]
    fn reserves_at_most_one_frame() {
        let mut src = BytesMut::from(&1000u32.to_be_bytes()[..]);
        assert_eq!(split_frame(&mut src, 1000), Ok(None));
        assert!(src.capacity() >= 1004);
        assert!(src.capacity() < 2 * 1004, "capacity {}", src.capacity());
    }

    #[test]
    fn decoder_stays_failed_after_an_error() {
        let mut decoder = FrameDecoder::with_max_frame_len(10);
        decoder.push(&11u32.to_be_bytes());
        let oversize = FrameError::Oversize { len: 11, max: 10 };
        assert_eq!(decoder.next_frame(), Err(oversize.clone()));
        decoder.push(&[0, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(oversize.clone()));
        assert_eq!(decoder.finish(), Err(oversize));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn end_of_stream_inside_the_prefix_or_the_body_is_truncated() {
        assert_eq!(check_end_of_stream(&[]), Ok(()));
        assert_eq!(
            check_end_of_stream(&[0, 0]),
            Err(FrameError::Truncated {
                received: 2,
                expected: 4
            })
        );
        assert_eq!(
            check_end_of_stream(&[0, 0, 0, 5, 1, 2]),
            Err(FrameError::Truncated {
                received: 6,
                expected: 9
            })
        );
        assert_eq!(
            FrameError::Truncated {
                received: 6,
                expected: 9
            }
            .to_string(),
            "stream ended inside a frame: 6 of 9 bytes received"
        );
    }

    #[test]
    fn zero_length_frame_is_an_empty_body() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&[0, 0, 0, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Ok(Some(Bytes::new())));
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.buffered(), 2);
    }
}
