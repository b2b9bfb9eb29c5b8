//! A lean session on session-server straight over `session-wire`: one socket
//! and one small task per session, pinging at T/3. It lets one process hold
//! 15,000 sessions so that the holding and expiry scenarios measure the
//! server, not the client library. The pipelined scenario splits one such
//! connection into a reader and a writer to keep many requests in flight.
//! A session runs over plain TCP or over TLS (`RawSession<TlsStream<_>>`,
//! see [`crate::tls`]); the code above the stream is the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use session_wire::v1::{
    ClientMessage, Create, Handshake, NodeKind, Ping, Request, ServerMessage, handshake_reply,
    reply, request, server_message,
};
use session_wire::{ClientCodec, PROTOCOL_VERSION, expect_handshake_reply};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::client::TlsStream;
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

use crate::client::BenchError;
use crate::tls::TlsDialer;

/// A session held over one raw connection: a TCP stream, or a TLS stream
/// over one.
#[derive(Debug)]
pub(crate) struct RawSession<S = TcpStream> {
    framed: Framed<S, ClientCodec>,
    /// The negotiated timeout.
    pub(crate) timeout: Duration,
    /// The session's id and password, to reattach on another connection.
    pub(crate) credentials: Credentials,
    next_xid: i32,
    /// Counts the pings sent, when set ([`RawSession::count_pings_in`]).
    pings: Option<Arc<AtomicU64>>,
}

/// What reattaching to a session takes: its id and password.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    /// The session id.
    pub(crate) id: u64,
    /// The session's password.
    pub(crate) password: bytes::Bytes,
}

impl RawSession<TcpStream> {
    /// Connects to `addr` and opens a new session asking for `timeout`.
    pub(crate) async fn open(addr: &str, timeout: Duration) -> Result<RawSession, BenchError> {
        let stream = TcpStream::connect(addr).await?;
        RawSession::handshake(stream, timeout, None).await
    }

    /// Opens a new session (`reattach` `None`) or reattaches to the session
    /// `reattach` names, over the connected `stream`. Reattaching fails
    /// unless the server answers that it did reattach.
    pub(crate) async fn handshake(
        stream: TcpStream,
        timeout: Duration,
        reattach: Option<&Credentials>,
    ) -> Result<RawSession, BenchError> {
        stream.set_nodelay(true)?;
        RawSession::handshake_over(stream, timeout, reattach).await
    }

    /// Splits the connection into a reader and a writer for pipelining. The
    /// writer's xids must continue from [`RawSession::next_xid`]. Dropping
    /// the writer half-closes the connection.
    pub(crate) fn into_split(
        self,
    ) -> (
        FramedRead<OwnedReadHalf, ClientCodec>,
        FramedWrite<OwnedWriteHalf, ClientCodec>,
    ) {
        let parts = self.framed.into_parts();
        let (read, write) = parts.io.into_split();
        let mut reader = FramedRead::new(read, parts.codec);
        // Anything the server sent after the last reply read so far.
        reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
        let writer = FramedWrite::new(write, parts.codec);
        (reader, writer)
    }
}

impl RawSession<TlsStream<TcpStream>> {
    /// Connects to `addr` over TLS and opens a new session asking for
    /// `timeout`.
    pub(crate) async fn open_tls(
        addr: &str,
        timeout: Duration,
        tls: &TlsDialer,
    ) -> Result<RawSession<TlsStream<TcpStream>>, BenchError> {
        let stream = tls.connect(addr).await?;
        RawSession::handshake_over(stream, timeout, None).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawSession<S> {
    /// The session handshake over a connected stream, TLS already done.
    async fn handshake_over(
        stream: S,
        timeout: Duration,
        reattach: Option<&Credentials>,
    ) -> Result<RawSession<S>, BenchError> {
        let mut framed = Framed::new(stream, ClientCodec::new());
        framed
            .send(ClientMessage::from(Handshake {
                protocol_version: PROTOCOL_VERSION,
                requested_timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                session_id: reattach.map_or(0, |credentials| credentials.id),
                password: reattach
                    .map(|credentials| credentials.password.clone())
                    .unwrap_or_default(),
                client_name: "session-bench".into(),
                client_version: env!("CARGO_PKG_VERSION").into(),
                ..Handshake::default()
            }))
            .await?;
        let first = framed
            .next()
            .await
            .ok_or("connection closed before the handshake reply")??;
        match expect_handshake_reply(first)?.outcome {
            Some(handshake_reply::Outcome::Granted(granted)) => {
                if reattach.is_some() && !granted.reattached {
                    return Err("the server opened a new session instead of reattaching".into());
                }
                Ok(RawSession {
                    framed,
                    timeout: Duration::from_millis(u64::from(granted.negotiated_timeout_ms)),
                    credentials: Credentials {
                        id: granted.session_id,
                        password: granted.password,
                    },
                    next_xid: 1,
                    pings: None,
                })
            }
            other => Err(format!("handshake refused: {other:?}").into()),
        }
    }

    /// Creates the ephemeral node `path` and waits for the reply.
    pub(crate) async fn create_ephemeral(&mut self, path: &str) -> Result<(), BenchError> {
        let op = request::Op::Create(Create {
            path: path.into(),
            data: bytes::Bytes::new(),
            kind: NodeKind::Ephemeral.into(),
            sequential: false,
            // Open to anyone, as every node before ACLs; not a TTL node.
            acl: Vec::new(),
            ttl_ms: 0,
        });
        match self.call(op).await? {
            Some(reply::Result::Create(_)) => Ok(()),
            other => Err(format!("create {path} failed: {other:?}").into()),
        }
    }

    /// Sends one request and waits for its reply; returns the reply's result
    /// (an operation error is a result, not an `Err`).
    pub(crate) async fn call(
        &mut self,
        op: request::Op,
    ) -> Result<Option<reply::Result>, BenchError> {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.framed
            .send(ClientMessage::from(Request { xid, op: Some(op) }))
            .await?;
        loop {
            let message = self.next_message().await?;
            if let Some(server_message::Kind::Reply(answer)) = message.kind {
                if answer.xid == xid {
                    return Ok(answer.result);
                }
            }
        }
    }

    /// The xid the next request on this session should carry.
    pub(crate) fn next_xid(&self) -> i32 {
        self.next_xid
    }

    /// Sends one ping without waiting for the pong.
    pub(crate) async fn ping(&mut self) -> Result<(), BenchError> {
        self.framed.send(ClientMessage::from(Ping {})).await?;
        if let Some(pings) = &self.pings {
            pings.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Counts every ping sent from now on in `pings` (shared by the
    /// sessions of a run, read by the hold scenario).
    pub(crate) fn count_pings_in(&mut self, pings: Arc<AtomicU64>) {
        self.pings = Some(pings);
    }

    async fn next_message(&mut self) -> Result<ServerMessage, BenchError> {
        let message = self
            .framed
            .next()
            .await
            .ok_or("connection closed by the server")??;
        if let Some(server_message::Kind::Disconnect(disconnect)) = &message.kind {
            return Err(format!("server disconnected the session: {disconnect:?}").into());
        }
        Ok(message)
    }

    /// Keeps the session alive, pinging at T/3, until `stop` resolves (then
    /// returns `Ok`) or the session is lost (then returns why).
    pub(crate) async fn keep_alive(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), BenchError> {
        let interval = self.timeout / 3;
        let mut stop = std::pin::pin!(stop);
        let mut next_ping = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep_until(next_ping) => {
                    self.ping().await?;
                    next_ping += interval;
                }
                message = self.next_message() => { message?; }
            }
        }
    }
}
