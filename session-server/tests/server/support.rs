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

/// A config for tests: every listener (ZooKeeper's included) on 127.0.0.1
/// port 0, tick 50 ms, session timeouts 200 ms ..= 2 s.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig {
        storage: session_server::Storage::InMemory,
        ..ServerConfig::default()
    };
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen = any_port;
    config.admin_listen = Some(any_port);
    config.metrics_listen = Some(any_port);
    config.zk_listen = Some(any_port);
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
pub struct Raw<S = TcpStream> {
    pub framed: Framed<S, ClientCodec>,
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

    /// Speaks the protocol over a socket the test connected itself.
    pub fn from_stream(stream: TcpStream) -> Raw {
        Raw::over(stream)
    }

    fn over(stream: TcpStream) -> Raw {
        Raw::speaking_over(stream)
    }

    /// Connects and opens a new session with `timeout`.
    pub async fn open(addr: SocketAddr, timeout: Duration) -> (Raw, SessionGranted) {
        let mut raw = Raw::connect(addr).await;
        let reply = raw.handshake(new_session(timeout)).await;
        (raw, granted(reply))
    }

    /// Connects and reattaches to `session`.
    pub async fn reattach(addr: SocketAddr, session: &SessionGranted) -> (Raw, HandshakeReply) {
        Raw::reattach_seen(addr, session, 0).await
    }

    /// Connects and reattaches to `session` as a client that has seen
    /// `last_zxid`.
    pub async fn reattach_seen(
        addr: SocketAddr,
        session: &SessionGranted,
        last_zxid: u64,
    ) -> (Raw, HandshakeReply) {
        let mut raw = Raw::connect(addr).await;
        let reply = raw
            .handshake(Handshake {
                protocol_version: PROTOCOL_VERSION,
                requested_timeout_ms: session.negotiated_timeout_ms,
                session_id: session.session_id,
                password: session.password.clone(),
                last_zxid_seen: last_zxid,
                ..Handshake::default()
            })
            .await;
        (raw, reply)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Raw<S> {
    /// Speaks the protocol over `stream` (a TLS stream, say).
    pub fn speaking_over(stream: S) -> Raw<S> {
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

    /// Sends one request and returns its result, keeping watch events that
    /// arrive first in `events`.
    pub async fn request(&mut self, op: request::Op) -> Result<reply::Result, wire::OpError> {
        match self.reply(op).await.result.expect("reply has a result") {
            reply::Result::Error(err) => Err(err),
            result => Ok(result),
        }
    }

    /// Sends one request and returns its whole reply (with its zxid),
    /// keeping watch events that arrive first in `events`.
    pub async fn reply(&mut self, op: request::Op) -> wire::Reply {
        let xid = self.xids.next_xid().get();
        self.send(wire::Request { xid, op: Some(op) }).await;
        loop {
            match self.recv().await.and_then(|message| message.kind) {
                Some(server_message::Kind::WatchEvent(event)) => self.events.push(event),
                Some(server_message::Kind::Reply(reply)) => {
                    assert_eq!(reply.xid, xid, "replies come in request order");
                    return reply;
                }
                other => panic!("expected a reply to xid {xid}, got {other:?}"),
            }
        }
    }

    /// The server's zxid now, as a read reports it.
    pub async fn zxid(&mut self) -> u64 {
        self.reply(request::Op::Exists(wire::Exists {
            path: "/".to_owned(),
            watch: false,
        }))
        .await
        .zxid
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
            acl: Vec::new(),
            ttl_ms: 0,
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
pub async fn ping_for<S>(raw: &mut Raw<S>, timeout: Duration, total: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let started = tokio::time::Instant::now();
    while started.elapsed() < total {
        tokio::time::sleep(timeout / 3).await;
        raw.ping().await;
    }
}

// ---------------------------------------------------------------------------
// A raw socket driven by hand: for peers that write without reading, where a
// `Raw` (which reads every reply) cannot be used. Every helper takes
// `&TcpStream`, so a writer and an observer can share one socket in one task.

/// Data of the "big" node of the stall tests: the tree's default data limit,
/// so each GetData reply of it is the largest a default server sends.
pub const BIG: usize = 512 * 1024;

/// How long a socket must make no progress before a test calls it stalled.
/// Long against loopback, where bytes move in microseconds.
pub const QUIET: Duration = Duration::from_millis(100);

/// Appends `message` to `dst` as one frame.
pub fn frame(message: impl Into<ClientMessage>, dst: &mut bytes::BytesMut) {
    session_wire::encode(&message.into(), u32::MAX, dst).expect("a client message frames");
}

/// A GetData request without a watch.
pub fn get_data(xid: i32, path: &str) -> wire::Request {
    wire::Request {
        xid,
        op: Some(request::Op::GetData(wire::GetData {
            path: path.to_owned(),
            watch: false,
        })),
    }
}

/// An Exists request without a watch.
pub fn exists(xid: i32, path: &str) -> wire::Request {
    wire::Request {
        xid,
        op: Some(request::Op::Exists(wire::Exists {
            path: path.to_owned(),
            watch: false,
        })),
    }
}

/// Writes all of `bytes`, waiting for the socket as needed (bounded).
pub async fn write_all_to(stream: &TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::timeout(PATIENCE, stream.writable())
                    .await
                    .expect("the socket takes bytes again within PATIENCE")
                    .expect("writable");
            }
            Err(err) => panic!("write: {err}"),
        }
    }
}

/// The send and receive queues, in bytes, of the TCP connection from
/// `local` to `remote` as the kernel accounts them (Linux, /proc/net/tcp):
/// bytes written and not yet acknowledged by the peer, and bytes arrived and
/// not yet read. `None` when the kernel lists no such connection.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    fn endpoint(field: &str) -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        // The address is printed as the host-order integer of the raw bytes.
        let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::from((ip, port)))
    }
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp readable");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if endpoint(fields.get(1)?)? != local || endpoint(fields.get(2)?)? != remote {
            return None;
        }
        let (tx, rx) = fields.get(4)?.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// Bytes the server has written to a client that reads nothing (since the
/// client last read): what the server's socket holds unacknowledged plus
/// what waits unread at the client. It grows exactly when the server's
/// writes make progress. `None` once the connection is gone.
pub fn written_to(client: &TcpStream) -> Option<u64> {
    let here = client.local_addr().ok()?;
    let server = client.peer_addr().ok()?;
    let (server_unacked, _) = tcp_queues(server, here)?;
    let (_, client_unread) = tcp_queues(here, server)?;
    Some(server_unacked + client_unread)
}

/// Waits until the server's writes to `client` (see [`written_to`]) have
/// made no progress for [`QUIET`]; returns the bytes written then.
pub async fn settled_writes(client: &TcpStream) -> u64 {
    let started = tokio::time::Instant::now();
    let mut last = written_to(client).expect("the connection is listed");
    let mut grew = started;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = tokio::time::Instant::now();
        let written = written_to(client).expect("the connection is listed");
        if written != last {
            last = written;
            grew = now;
        } else if now - grew >= QUIET {
            return last;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the server kept writing for {PATIENCE:?}"
        );
    }
}

/// What [`write_until_stalled`] saw.
#[derive(Debug)]
pub struct Flood {
    /// Just before the first write that took bytes.
    pub first_before: tokio::time::Instant,
    /// Just after it returned.
    pub first_after: tokio::time::Instant,
    /// Just after the last write that took bytes.
    pub last_progress: tokio::time::Instant,
    /// Whole requests of the batches started (the last may be partly written).
    pub requests: usize,
    /// Bytes the socket took.
    pub bytes: usize,
    /// The unwritten tail of the last batch started.
    pub rest: bytes::BytesMut,
}

/// Writes batches from `batch` (bytes, number of requests in them) without
/// reading, until the socket takes nothing for [`QUIET`] or the server
/// closes the connection. Panics past
/// `max_bytes`: a server that never stops reading is a failed bound, not a
/// test that runs forever.
pub async fn write_until_stalled(
    stream: &TcpStream,
    mut batch: impl FnMut() -> (bytes::BytesMut, usize),
    max_bytes: usize,
) -> Flood {
    let (mut pending, mut requests) = batch();
    let mut first = None;
    let mut last_progress = tokio::time::Instant::now();
    let mut bytes = 0;
    loop {
        let before = tokio::time::Instant::now();
        match stream.try_write(&pending) {
            Ok(0) => panic!("the socket took 0 bytes"),
            Ok(written) => {
                let after = tokio::time::Instant::now();
                first.get_or_insert((before, after));
                last_progress = after;
                bytes += written;
                let _ = pending.split_to(written);
                if pending.is_empty() {
                    let (next, count) = batch();
                    pending = next;
                    requests += count;
                }
                assert!(
                    bytes <= max_bytes,
                    "the server kept reading: the socket took {bytes} bytes of requests"
                );
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                match tokio::time::timeout_at(last_progress + QUIET, stream.writable()).await {
                    Err(_) => break,
                    Ok(ready) => ready.expect("writable"),
                }
            }
            // The server closed the connection: nothing more will be taken.
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                break;
            }
            Err(err) => panic!("write: {err}"),
        }
    }
    let (first_before, first_after) = first.expect("the socket took the first batch");
    Flood {
        first_before,
        first_after,
        last_progress,
        requests,
        bytes,
        rest: pending,
    }
}

/// Reads whole server messages from a shared socket.
#[derive(Debug, Default)]
pub struct Reader {
    decoder: session_wire::FrameDecoder,
    scratch: Vec<u8>,
}

impl Reader {
    /// A reader of frames up to `max` bytes (the default is 1 MiB).
    pub fn with_max_frame_len(max: u32) -> Reader {
        Reader {
            decoder: session_wire::FrameDecoder::with_max_frame_len(max),
            scratch: Vec::new(),
        }
    }

    /// The next message; `None` when the server closed the connection.
    /// Panics when nothing comes within [`PATIENCE`].
    pub async fn next(&mut self, stream: &TcpStream) -> Option<ServerMessage> {
        if self.scratch.is_empty() {
            self.scratch = vec![0u8; 64 * 1024];
        }
        loop {
            if let Some(message) = self
                .decoder
                .next_message::<ServerMessage>()
                .expect("a well-formed server message")
            {
                return Some(message);
            }
            tokio::time::timeout(PATIENCE, stream.readable())
                .await
                .expect("a server message within PATIENCE")
                .expect("readable");
            match stream.try_read(&mut self.scratch) {
                Ok(0) => return None,
                Ok(read) => self.decoder.push(&self.scratch[..read]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(err) => panic!("read: {err}"),
            }
        }
    }

    /// The next message, which must be a reply.
    pub async fn reply(&mut self, stream: &TcpStream) -> wire::Reply {
        match self.next(stream).await.and_then(|message| message.kind) {
            Some(server_message::Kind::Reply(reply)) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// For tests that kill the server under a client (durable.rs).

impl Raw {
    /// Sends one request and returns its whole reply, keeping watch events
    /// that arrive first in `events`; `None` when the connection failed or
    /// closed before the reply (the server died, or said why and closed):
    /// the request's outcome is then unknown. Panics when nothing comes
    /// within [`PATIENCE`].
    pub async fn try_reply(&mut self, op: request::Op) -> Option<wire::Reply> {
        let xid = self.xids.next_xid().get();
        let request = ClientMessage::from(wire::Request { xid, op: Some(op) });
        if self.framed.send(request).await.is_err() {
            return None;
        }
        loop {
            let message = match tokio::time::timeout(PATIENCE, self.framed.next()).await {
                Err(_) => panic!("no reply to xid {xid} within {PATIENCE:?}"),
                Ok(None | Some(Err(_))) => return None,
                Ok(Some(Ok(message))) => message,
            };
            match message.kind {
                Some(server_message::Kind::WatchEvent(event)) => self.events.push(event),
                Some(server_message::Kind::Reply(reply)) => {
                    assert_eq!(reply.xid, xid, "replies come in request order");
                    return Some(reply);
                }
                // The reason comes before the close; the close ends it.
                Some(server_message::Kind::Disconnect(_)) => {}
                other => panic!("expected a reply to xid {xid}, got {other:?}"),
            }
        }
    }
}

/// The server binary as CI ships it (`SESSION_SERVER_BIN`, the release
/// build), else the one cargo built for these tests.
pub fn server_binary() -> std::path::PathBuf {
    std::env::var_os("SESSION_SERVER_BIN").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_BIN_EXE_session-server")),
        std::path::PathBuf::from,
    )
}

/// A directory under the system's temp dir, removed when dropped; `name`
/// (with the process id and a free port) keeps concurrent tests apart.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "session-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port free a moment ago (a binary is told it; port 0 would leave the
/// test without the address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

/// A port for a server to bind, free a moment ago, below the kernel's
/// ephemeral range (32768 and up on Linux by default) so that no
/// connection's local port and no bind to port 0 (the proxies', other
/// tests') can take it before the server binds it.
pub fn fresh_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
        ^ u64::from(std::process::id()) << 20;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // 12000 ..= 32767, visited in a scattered order.
        let port = 12_000 + (salt.wrapping_add(n.wrapping_mul(7919)) % 20_768);
        let port = u16::try_from(port).expect("below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
