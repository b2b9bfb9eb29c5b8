//! Test support: a server on 127.0.0.1 port 0 with short timeouts, and a raw
//! protocol client built on session-wire alone.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use session_server::{Server, ServerConfig};
use session_wire::v1::{
    self as wire, ClientMessage, ErrorCode, Handshake, HandshakeReply, NodeKind, Ping,
    ServerMessage, SessionGranted, handshake_reply, reply, request, server_message,
};
use session_wire::{ClientCodec, PROTOCOL_VERSION, XidCounter};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Tick of the test servers: expiry is checked every 50 ms.
pub const TICK: Duration = Duration::from_millis(50);
/// The smallest session timeout test servers grant (4 ticks).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A config for tests: every listener on 127.0.0.1 port 0, tick 50 ms,
/// session timeouts 200 ms ..= 2 s.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen = any_port;
    config.admin_listen = Some(any_port);
    config.metrics_listen = Some(any_port);
    config.timeouts = session_core::TimeoutPolicy::new(TICK)
        .and_then(|policy| policy.with_bounds(MIN_TIMEOUT, Duration::from_secs(2)))
        .expect("valid test policy");
    config
}

pub async fn start() -> Server {
    start_with(|_| {}).await
}

pub async fn start_with(change: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut config = test_config();
    change(&mut config);
    Server::start(config).await.expect("server starts")
}

/// A connection speaking the protocol frame by frame.
pub struct Raw {
    pub framed: Framed<TcpStream, ClientCodec>,
    xids: XidCounter,
    /// Watch events received while waiting for replies, in order.
    pub events: Vec<wire::WatchEvent>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Raw::over(stream)
    }

    /// Connects from another loopback address, such as 127.0.0.2.
    pub async fn connect_from(addr: SocketAddr, local: std::net::Ipv4Addr) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((local, 0)))
            .expect("bind a loopback address");
        Raw::over(socket.connect(addr).await.expect("connect"))
    }

    fn over(stream: TcpStream) -> Raw {
        Raw {
            framed: Framed::new(stream, ClientCodec::new()),
            xids: XidCounter::new(),
            events: Vec::new(),
        }
    }

    pub async fn send(&mut self, message: impl Into<ClientMessage>) {
        self.framed.send(message.into()).await.expect("send");
    }

    /// The next message, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        match tokio::time::timeout(PATIENCE, self.framed.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            Ok(Some(Err(err))) => panic!("undecodable server message: {err}"),
            Ok(None) => None,
            Err(_) => panic!("no message from the server within {PATIENCE:?}"),
        }
    }

    pub async fn handshake(&mut self, handshake: Handshake) -> HandshakeReply {
        self.send(handshake).await;
        match self.recv().await.and_then(|message| message.kind) {
            Some(server_message::Kind::HandshakeReply(reply)) => reply,
            other => panic!("expected a handshake reply, got {other:?}"),
        }
    }

    /// Connects and opens a new session with `timeout`.
    pub async fn open(addr: SocketAddr, timeout: Duration) -> (Raw, SessionGranted) {
        let mut raw = Raw::connect(addr).await;
        let reply = raw.handshake(new_session(timeout)).await;
        (raw, granted(reply))
    }

    /// Connects and reattaches to `session`.
    pub async fn reattach(addr: SocketAddr, session: &SessionGranted) -> (Raw, HandshakeReply) {
        let mut raw = Raw::connect(addr).await;
        let reply = raw
            .handshake(Handshake {
                protocol_version: PROTOCOL_VERSION,
                requested_timeout_ms: session.negotiated_timeout_ms,
                session_id: session.session_id,
                password: session.password.clone(),
                ..Handshake::default()
            })
            .await;
        (raw, reply)
    }

    /// Sends one request and returns its result, keeping watch events that
    /// arrive first in `events`.
    pub async fn request(&mut self, op: request::Op) -> Result<reply::Result, wire::OpError> {
        let xid = self.xids.next_xid().get();
        self.send(wire::Request { xid, op: Some(op) }).await;
        loop {
            match self.recv().await.and_then(|message| message.kind) {
                Some(server_message::Kind::WatchEvent(event)) => self.events.push(event),
                Some(server_message::Kind::Reply(reply)) => {
                    assert_eq!(reply.xid, xid, "replies come in request order");
                    return match reply.result.expect("reply has a result") {
                        reply::Result::Error(err) => Err(err),
                        result => Ok(result),
                    };
                }
                other => panic!("expected a reply to xid {xid}, got {other:?}"),
            }
        }
    }

    pub async fn create(
        &mut self,
        path: &str,
        data: &[u8],
        kind: NodeKind,
    ) -> Result<String, wire::OpError> {
        self.create_with(path, data, kind, false).await
    }

    pub async fn create_with(
        &mut self,
        path: &str,
        data: &[u8],
        kind: NodeKind,
        sequential: bool,
    ) -> Result<String, wire::OpError> {
        let op = request::Op::Create(wire::Create {
            path: path.to_owned(),
            data: Bytes::copy_from_slice(data),
            kind: kind.into(),
            sequential,
        });
        match self.request(op).await? {
            reply::Result::Create(created) => Ok(created.path),
            other => panic!("unexpected result {other:?}"),
        }
    }

    pub async fn exists(&mut self, path: &str, watch: bool) -> Option<wire::Stat> {
        let op = request::Op::Exists(wire::Exists {
            path: path.to_owned(),
            watch,
        });
        match self.request(op).await {
            Ok(reply::Result::Exists(result)) => result.stat,
            other => panic!("unexpected result {other:?}"),
        }
    }

    pub async fn get(
        &mut self,
        path: &str,
        watch: bool,
    ) -> Result<(Bytes, wire::Stat), wire::OpError> {
        let op = request::Op::GetData(wire::GetData {
            path: path.to_owned(),
            watch,
        });
        match self.request(op).await? {
            reply::Result::GetData(result) => Ok((result.data, result.stat.expect("stat"))),
            other => panic!("unexpected result {other:?}"),
        }
    }

    pub async fn set(
        &mut self,
        path: &str,
        data: &[u8],
        version: i32,
    ) -> Result<wire::Stat, wire::OpError> {
        let op = request::Op::SetData(wire::SetData {
            path: path.to_owned(),
            data: Bytes::copy_from_slice(data),
            expected_version: Some(version),
        });
        match self.request(op).await? {
            reply::Result::SetData(result) => Ok(result.stat.expect("stat")),
            other => panic!("unexpected result {other:?}"),
        }
    }

    pub async fn delete(&mut self, path: &str, version: i32) -> Result<(), wire::OpError> {
        let op = request::Op::Delete(wire::Delete {
            path: path.to_owned(),
            expected_version: Some(version),
        });
        self.request(op).await.map(|_| ())
    }

    pub async fn children(
        &mut self,
        path: &str,
        watch: bool,
    ) -> Result<Vec<String>, wire::OpError> {
        let op = request::Op::GetChildren(wire::GetChildren {
            path: path.to_owned(),
            watch,
        });
        match self.request(op).await? {
            reply::Result::GetChildren(result) => Ok(result.children),
            other => panic!("unexpected result {other:?}"),
        }
    }

    pub async fn ping(&mut self) {
        self.send(Ping {}).await;
        loop {
            match self.recv().await.and_then(|message| message.kind) {
                Some(server_message::Kind::Pong(_)) => return,
                Some(server_message::Kind::WatchEvent(event)) => self.events.push(event),
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    }

    /// The next watch event, from those already received or from the wire.
    pub async fn next_event(&mut self) -> wire::WatchEvent {
        if !self.events.is_empty() {
            return self.events.remove(0);
        }
        match self.recv().await.and_then(|message| message.kind) {
            Some(server_message::Kind::WatchEvent(event)) => event,
            other => panic!("expected a watch event, got {other:?}"),
        }
    }

    /// Reads until the server disconnects; returns its stated reason, if any.
    pub async fn disconnect_reason(&mut self) -> Option<ErrorCode> {
        let mut reason = None;
        while let Some(message) = self.recv().await {
            if let Some(server_message::Kind::Disconnect(disconnect)) = message.kind {
                reason = Some(disconnect.reason());
            }
        }
        reason
    }
}

/// The error code of a failed operation, `None` if it succeeded.
pub fn code<T>(result: Result<T, wire::OpError>) -> Option<ErrorCode> {
    result.err().map(|err| err.code())
}

pub fn new_session(timeout: Duration) -> Handshake {
    Handshake {
        protocol_version: PROTOCOL_VERSION,
        requested_timeout_ms: u32::try_from(timeout.as_millis()).expect("small timeout"),
        client_name: "session-server-tests".to_owned(),
        ..Handshake::default()
    }
}

pub fn granted(reply: HandshakeReply) -> SessionGranted {
    match reply.outcome {
        Some(handshake_reply::Outcome::Granted(granted)) => granted,
        other => panic!("expected a granted session, got {other:?}"),
    }
}

pub fn refused(reply: HandshakeReply) -> wire::RefusalReason {
    match reply.outcome {
        Some(handshake_reply::Outcome::Refused(refusal)) => refusal.reason(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Keeps a session alive by pinging every third of its timeout.
pub async fn ping_for(raw: &mut Raw, timeout: Duration, total: Duration) {
    let started = tokio::time::Instant::now();
    while started.elapsed() < total {
        tokio::time::sleep(timeout / 3).await;
        raw.ping().await;
    }
}
