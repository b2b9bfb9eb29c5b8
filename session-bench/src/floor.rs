//! The floor: the least a server can do and still hold v1 sessions.
//!
//! It accepts the v1 handshake and answers it with a made-up session (an id
//! from a counter, the requested timeout, a fixed password), answers every
//! ping with a pong and a close with a close ack, in session-wire's framing
//! (a 4-byte big-endian length, then the protobuf message). It keeps no
//! state at all: no session table, no expiry, no metrics, no log. Anything
//! else a client sends (a request, a second handshake, a frame that does not
//! decode) closes the connection.
//!
//! Each connection is one tokio task that waits for its socket to be
//! readable, reads into a small buffer on its own stack, decodes the frames
//! in place and writes its answers with one write, on the same multi-thread
//! runtime (one worker per core) as session-server. Scenarios run against it
//! (`--target floor`, raw v1 frames) show what the machine and this I/O
//! stack cost at all; session-server's figures divided by the floor's are
//! what session-server adds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message as _;
use session_wire::v1::{
    ClientMessage, CloseAck, HandshakeReply, Pong, ServerMessage, SessionGranted, client_message,
    handshake_reply,
};
use session_wire::{LENGTH_PREFIX_LEN, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::client::BenchError;

/// The flags of `session-bench floor`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FloorArgs {
    /// The address to listen on, e.g. 127.0.0.1:7181.
    #[arg(long)]
    listen: SocketAddr,
}

/// The longest frame body the floor takes: a handshake with a long client
/// name fits; anything longer closes the connection.
const MAX_FRAME: usize = 1024;

/// What one read takes at most. Pings are 6 bytes and a handshake well
/// under 100, so this holds many frames; it lives on the connection's
/// stack only while a read is being decoded.
const READ_BUFFER: usize = 2048;

/// Serves until the process is killed.
pub(crate) async fn serve(args: &FloorArgs) -> Result<(), BenchError> {
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "session-bench floor: listening on {}",
        listener.local_addr()?
    );
    let pong = frame(&ServerMessage::from(Pong {}));
    let close_ack = frame(&ServerMessage::from(CloseAck {}));
    let answers: &'static Answers = Box::leak(Box::new(Answers { pong, close_ack }));
    let ids = &*Box::leak(Box::new(AtomicU64::new(1)));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait a little, go on.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            // A connection that misbehaves or breaks just ends.
            let _ = connection(stream, answers, ids).await;
        });
    }
}

/// The answers that never change, framed once.
struct Answers {
    pong: Vec<u8>,
    close_ack: Vec<u8>,
}

/// `message` with its length prefix.
fn frame(message: &ServerMessage) -> Vec<u8> {
    let len = message.encoded_len();
    let mut out = Vec::with_capacity(LENGTH_PREFIX_LEN + len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    message.encode_raw(&mut out);
    out
}

/// What one connection does after decoding a frame.
enum Next {
    Go,
    Close,
}

async fn connection(
    stream: TcpStream,
    answers: &Answers,
    ids: &AtomicU64,
) -> Result<(), BenchError> {
    stream.set_nodelay(true)?;
    let mut stream = stream;
    // The bytes of a frame cut by a read, kept until the rest arrives; empty
    // (and not allocated) between frames.
    let mut partial: Vec<u8> = Vec::new();
    loop {
        stream.readable().await?;
        // Read, answer and write without awaiting, so the buffers are not
        // part of the connection's future; only what the socket would not
        // take at once is kept, and awaited.
        let (rest, next) = {
            let mut buffer = [0u8; READ_BUFFER];
            let read = match stream.try_read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err.into()),
            };
            let mut out = Out::default();
            let next = if partial.is_empty() {
                let used = frames(&buffer[..read], answers, ids, &mut out)?;
                partial.extend_from_slice(&buffer[used.consumed..read]);
                used.next
            } else {
                partial.extend_from_slice(&buffer[..read]);
                let used = frames(&partial, answers, ids, &mut out)?;
                partial.drain(..used.consumed);
                if partial.is_empty() {
                    partial = Vec::new();
                }
                used.next
            };
            (out.write_now(&stream)?, next)
        };
        if let Some(rest) = rest {
            stream.write_all(&rest).await?;
        }
        if let Next::Close = next {
            return Ok(());
        }
    }
}

/// How far [`frames`] got.
struct Used {
    consumed: usize,
    next: Next,
}

/// Decodes and answers every whole frame at the front of `bytes`.
fn frames(
    bytes: &[u8],
    answers: &Answers,
    ids: &AtomicU64,
    out: &mut Out,
) -> Result<Used, BenchError> {
    let mut at = 0;
    while let Some(prefix) = bytes[at..].first_chunk::<LENGTH_PREFIX_LEN>() {
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_FRAME {
            return Err(format!("a frame of {len} bytes").into());
        }
        let end = at + LENGTH_PREFIX_LEN + len;
        if end > bytes.len() {
            break;
        }
        let message = ClientMessage::decode(&bytes[at + LENGTH_PREFIX_LEN..end])?;
        at = end;
        match message.kind {
            Some(client_message::Kind::Ping(_)) => out.extend(&answers.pong),
            Some(client_message::Kind::Handshake(handshake)) => {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let reply = ServerMessage::from(HandshakeReply {
                    protocol_version: PROTOCOL_VERSION,
                    outcome: Some(handshake_reply::Outcome::Granted(SessionGranted {
                        negotiated_timeout_ms: handshake.requested_timeout_ms,
                        session_id: if handshake.session_id == 0 {
                            id
                        } else {
                            handshake.session_id
                        },
                        password: bytes::Bytes::from_static(&[7; 16]),
                        server_id: 1,
                        reattached: handshake.session_id != 0,
                        zxid: 0,
                    })),
                });
                out.extend(&frame(&reply));
            }
            Some(client_message::Kind::CloseSession(_)) => {
                out.extend(&answers.close_ack);
                return Ok(Used {
                    consumed: at,
                    next: Next::Close,
                });
            }
            Some(client_message::Kind::Request(_)) | None => {
                return Ok(Used {
                    consumed: at,
                    next: Next::Close,
                });
            }
        }
    }
    Ok(Used {
        consumed: at,
        next: Next::Go,
    })
}

/// The answers to one read: on the stack up to 256 bytes (42 pongs), on
/// the heap beyond.
struct Out {
    small: [u8; 256],
    len: usize,
    large: Vec<u8>,
}

impl Default for Out {
    fn default() -> Out {
        Out {
            small: [0; 256],
            len: 0,
            large: Vec::new(),
        }
    }
}

impl Out {
    fn extend(&mut self, bytes: &[u8]) {
        if self.large.is_empty() && self.len + bytes.len() <= self.small.len() {
            self.small[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.large.is_empty() {
                self.large.extend_from_slice(&self.small[..self.len]);
            }
            self.large.extend_from_slice(bytes);
        }
    }

    /// Writes what the socket takes now; returns the rest, if any.
    fn write_now(&self, stream: &TcpStream) -> std::io::Result<Option<Vec<u8>>> {
        let bytes = if self.large.is_empty() {
            &self.small[..self.len]
        } else {
            &self.large[..]
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        let written = match stream.try_write(bytes) {
            Ok(written) => written,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(err) => return Err(err),
        };
        Ok((written < bytes.len()).then(|| bytes[written..].to_vec()))
    }
}
