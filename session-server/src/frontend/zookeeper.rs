//! The ZooKeeper frontend: ZooKeeper's own client protocol (jute records
//! behind a 4-byte big-endian length, `session_wire::zookeeper`), so that
//! ZooKeeper's clients (the Java client and zkCli.sh, kazoo, the Rust
//! `zookeeper-client`) hold sessions here: the same sessions, tree and
//! watches as v1 clients. Like every frontend it only translates; what
//! ZooKeeper does differently from v1 on the wire lives here:
//!
//! - a session that cannot be reattached (unknown, expired, wrong password)
//!   is answered with ZooKeeper's invalid-session `ConnectResponse`
//!   (timeout 0, session 0, 16 zero bytes); every other refusal, and every
//!   disconnect (expiry, SessionMoved, shutdown, bad input), just closes the
//!   socket, as ZooKeeper's server does;
//! - the `ConnectResponse` has its trailing `readOnly` byte exactly when the
//!   `ConnectRequest` had one;
//! - a reply's body depends on the request's opcode (create or create2,
//!   getChildren or getChildren2, NONODE for exists on a missing node), so
//!   the frontend remembers, in order, how to answer each request it hands
//!   on; the connection answers in request order, so the oldest is next;
//! - opcodes this server does not implement (multi, ACLs, persistent
//!   watches, containers, TTLs, …) get UNIMPLEMENTED and the connection
//!   stays; auth is acknowledged (ACLs are not enforced yet); an opcode
//!   ZooKeeper does not know gets UNIMPLEMENTED and the connection closes,
//!   as ZooKeeper's does.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use session_core::{
    Acl, CreateMode, EventKind, Id, MultiOp, PASSWORD_LEN, SessionId, SessionPassword, Stat,
    WatcherType,
};
use session_wire::zookeeper::{
    self as zk, ClientInfo, ConnectRequest, ConnectResponse, Create2Response, CreateResponse,
    ErrorCode, ErrorResponse, EventType, ExistsResponse, GetAclResponse,
    GetAllChildrenNumberResponse, GetChildren2Response, GetChildrenResponse, GetDataResponse,
    GetEphemeralsResponse, JUTE_MAX_BUFFER, JuteRecord, KeeperState, MultiResponse, MultiResult,
    OpCode, ReplyHeader, Request, RequestError, RequestHeader, Response, SetAclResponse,
    SetDataResponse, SetSaslResponse, SyncResponse, WatcherEvent, WhoAmIResponse, encode_frame,
    encode_notification, encode_reply,
};
use tracing::{debug, error, info, warn};

use super::four_letter::FourLetterWord;
use super::{
    Code, Frontend, Handshake, Inbound, OpError, OpResult, Operation, Outbound, ReadOp, Refusal,
    Violation, client_label,
};
use crate::metrics::{CloseReason, OpKind};

/// ZooKeeper's protocol on one connection.
#[derive(Debug)]
pub(crate) struct ZooKeeper {
    /// The largest frame body either way: the server's frame limit, at most
    /// ZooKeeper's `jute.maxbuffer`, which its clients enforce on replies.
    max_frame: u32,
    /// Whether the `ConnectRequest` carried its optional `readOnly` byte;
    /// the `ConnectResponse` carries one exactly then.
    read_only_byte: bool,
    /// How to answer each request handed on and not yet answered, oldest
    /// first.
    pending: VecDeque<Pending>,
    /// The newest zxid sent, for the replies this frontend makes up itself.
    last_zxid: u64,
    /// The session, once granted, for log lines.
    session: Option<SessionId>,
}

/// How to answer one request handed on to the connection.
#[derive(Debug, Clone)]
struct Pending {
    xid: i32,
    answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// The reply to a request with this opcode: on success, the body
    /// ZooKeeper sends for that opcode.
    To(OpCode),
    /// The reply to a multi or multiRead whose operations had these
    /// opcodes: each result's type follows its request's (create 1 or
    /// create2 15, ...).
    Multi(Vec<OpCode>),
    /// An error reply with this code, whatever the neutral error says:
    /// for the failures ZooKeeper has a code for and the neutral layer has
    /// not (MARSHALLINGERROR).
    Error(ErrorCode),
}

impl ZooKeeper {
    pub(crate) fn new(max_frame_bytes: usize) -> ZooKeeper {
        ZooKeeper {
            max_frame: u32::try_from(max_frame_bytes)
                .unwrap_or(u32::MAX)
                .min(JUTE_MAX_BUFFER),
            read_only_byte: false,
            pending: VecDeque::new(),
            last_zxid: 0,
            session: None,
        }
    }

    /// Splits the next whole frame body off the front of `buf`. A length
    /// that is negative or over the limit is an error: ZooKeeper closes the
    /// connection without a reply ("Len error").
    fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
        let Some(prefix) = buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = match u32::try_from(i32::from_be_bytes(*prefix)) {
            Ok(len) if len <= self.max_frame => len,
            _ => {
                return Err(format!(
                    "frame length {} is outside 0..={} (jute.maxbuffer)",
                    i32::from_be_bytes(*prefix),
                    self.max_frame
                ));
            }
        };
        // Lossless: usize is at least 32 bits wide wherever tokio runs.
        let total = 4 + len as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(total - 4).freeze()))
    }

    /// Queues how to answer the request with `xid`.
    fn expect(&mut self, xid: i32, answer: Answer) {
        self.pending.push_back(Pending { xid, answer });
    }

    /// The request with `header` as a neutral message, noting how to answer
    /// it.
    fn inbound(&mut self, header: RequestHeader, request: Request) -> Inbound {
        let xid = header.xid;
        let op = request.op_code();
        let answer = match &request {
            Request::Multi(multi) | Request::MultiRead(multi) => {
                Answer::Multi(multi.ops.iter().map(zk::MultiOp::op_code).collect())
            }
            _ => Answer::To(op),
        };
        self.expect(xid, answer);
        match operation(request) {
            Ok(Some(operation)) => Inbound::Request { xid, op: operation },
            Ok(None) => match op {
                OpCode::CloseSession => Inbound::Close,
                _ => Inbound::Ping,
            },
            Err((kind, error)) => Inbound::Refused { xid, kind, error },
        }
    }

    /// Appends the reply to the oldest request not yet answered.
    fn reply(
        &mut self,
        xid: i32,
        zxid: u64,
        result: Result<OpResult, OpError>,
        buf: &mut BytesMut,
    ) {
        let answer = match self.pending.pop_front() {
            Some(pending) => {
                debug_assert_eq!(pending.xid, xid, "replies come in request order");
                pending.answer
            }
            None => {
                error!(session = ?self.session, xid, "a reply to no request: answered SYSTEMERROR");
                Answer::Error(ErrorCode::SystemError)
            }
        };
        // Auth replies carry zxid 0 (ZooKeeper answers them outside its
        // pipeline).
        let zxid = if answer == Answer::To(OpCode::Auth) || answer == Answer::To(OpCode::Sasl) {
            0
        } else {
            as_jute(zxid)
        };
        let (err, body) = match (answer, result) {
            (Answer::Error(code), _) => (code, None),
            (Answer::To(_) | Answer::Multi(_), Err(error)) => (self.error_code(xid, &error), None),
            (Answer::To(op), Ok(result)) => match response(op, result) {
                Ok(body) => (ErrorCode::Ok, Some(body)),
                Err(code) => (code, None),
            },
            (Answer::Multi(ops), Ok(result)) => match multi_response(&ops, result) {
                Ok(body) => (ErrorCode::Ok, Some(body)),
                Err(code) => (code, None),
            },
        };
        let header = ReplyHeader {
            xid,
            zxid,
            err: err.code(),
        };
        if let Err(err) = encode_reply(&header, body.as_ref(), self.max_frame, buf) {
            // ZooKeeper would send it, and its clients would drop the
            // connection; an error reply keeps the session usable.
            warn!(session = ?self.session, xid, error = %err,
                "a reply over the frame limit is answered BADARGUMENTS");
            let header = ReplyHeader {
                err: ErrorCode::BadArguments.code(),
                ..header
            };
            self.push(encode_reply(&header, None, self.max_frame, buf));
        }
    }

    /// ZooKeeper's code for a neutral error.
    fn error_code(&self, xid: i32, error: &OpError) -> ErrorCode {
        if error.code == Code::TooLarge {
            // ZooKeeper has no code for it: it closes the connection on a
            // frame over jute.maxbuffer and has no smaller limits.
            info!(session = ?self.session, xid, detail = error.detail,
                "over a size limit: answered BADARGUMENTS, ZooKeeper having no code for it");
        }
        error_code(error.code)
    }

    fn connect_response(&self, time_out: i32, session_id: i64, passwd: Bytes) -> ConnectResponse {
        ConnectResponse {
            protocol_version: 0,
            time_out,
            session_id,
            passwd: Some(passwd),
            read_only: self.read_only_byte.then_some(false),
        }
    }

    /// Logs an encoding failure: only an oversized message fails, and no
    /// message but a reply can be that large (replies are checked first).
    fn push(&self, encoded: Result<(), zk::JuteEncodeError>) {
        if let Err(err) = encoded {
            error!(session = ?self.session, error = %err,
                "dropping an outgoing message that cannot be framed");
        }
    }

    /// A reply header with no body.
    fn header(&mut self, xid: i32, zxid: i64, buf: &mut BytesMut) {
        let header = ReplyHeader { xid, zxid, err: 0 };
        self.push(encode_reply(&header, None, self.max_frame, buf));
    }
}

/// Closes the connection without a reply, as ZooKeeper does for bad input.
fn close(reason: CloseReason, detail: String) -> Box<Violation> {
    Box::new(Violation {
        reason,
        reply: None,
        detail,
    })
}

impl Frontend for ZooKeeper {
    // The connection asks only before the handshake, as ZooKeeper checks
    // only then: after it, the same bytes are a frame length.
    fn command(&mut self, buf: &BytesMut) -> Option<FourLetterWord> {
        buf.first_chunk::<4>().and_then(FourLetterWord::parse)
    }

    fn decode_handshake(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Handshake>, Box<Violation>> {
        let frame = match self.next_frame(buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(detail) => return Err(close(CloseReason::bad_frame, detail)),
        };
        let connect = ConnectRequest::decode(frame).map_err(|err| {
            close(
                CloseReason::protocol_violation,
                format!("malformed ConnectRequest: {err}"),
            )
        })?;
        self.read_only_byte = connect.read_only.is_some();
        let reattach = match connect.session_id {
            0 => None,
            id => {
                let id = SessionId::from_u64(from_jute(id));
                let password = connect
                    .passwd
                    .as_deref()
                    .and_then(SessionPassword::from_slice);
                let Some(password) = password else {
                    // ZooKeeper checks the password like any other: it does
                    // not match, so the session is invalid.
                    let detail = format!(
                        "the password of session {id} is not {PASSWORD_LEN} bytes: {}",
                        connect
                            .passwd
                            .as_ref()
                            .map_or_else(|| "null".to_owned(), |p| format!("{} bytes", p.len()))
                    );
                    return Err(Box::new(Violation {
                        reason: CloseReason::auth_failed,
                        reply: Some(Outbound::Refused {
                            reason: Refusal::AuthFailed,
                            detail: detail.clone(),
                        }),
                        detail,
                    }));
                };
                Some((id, password))
            }
        };
        Ok(Some(Handshake {
            // Zero or negative: the policy's minimum, as ZooKeeper clamps.
            requested: Duration::from_millis(u64::try_from(connect.time_out).unwrap_or(0)),
            reattach,
            last_zxid_seen: u64::try_from(connect.last_zxid_seen).unwrap_or(0),
            client: client_label("zookeeper", ""),
        }))
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, Box<Violation>> {
        let frame = match self.next_frame(buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(detail) => return Err(close(CloseReason::bad_frame, detail)),
        };
        match zk::decode_request(frame) {
            // ZooKeeper 3.9's Request.isValid no longer takes a check outside
            // a multi: UNIMPLEMENTED, then the connection closes.
            Ok((header, Request::Check(_))) => {
                let detail = "check is only valid inside a multi".to_owned();
                self.expect(header.xid, Answer::Error(ErrorCode::Unimplemented));
                Err(Box::new(Violation {
                    reason: CloseReason::protocol_violation,
                    reply: Some(Outbound::Reply {
                        xid: header.xid,
                        zxid: self.last_zxid,
                        result: Err(OpError::new(Code::Unimplemented, detail.clone())),
                    }),
                    detail,
                }))
            }
            Ok((header, request)) => Ok(Some(self.inbound(header, request))),
            Err(err @ RequestError::Header(_)) => {
                Err(close(CloseReason::protocol_violation, err.to_string()))
            }
            // ZooKeeper's PrepRequestProcessor answers a body it cannot
            // read with MARSHALLINGERROR and goes on.
            Err(RequestError::Body { header, op, source }) => {
                self.expect(header.xid, Answer::Error(ErrorCode::MarshallingError));
                Ok(Some(Inbound::Refused {
                    xid: header.xid,
                    kind: OpKind::unknown,
                    error: OpError::new(
                        Code::BadArguments,
                        format!("malformed {op} request: {source}"),
                    ),
                }))
            }
            // An opcode ZooKeeper does not take from a client: UNIMPLEMENTED,
            // then ZooKeeper closes the connection.
            Err(
                err @ (RequestError::UnknownOpCode { xid, .. }
                | RequestError::NotARequest { xid, .. }),
            ) => {
                let detail = err.to_string();
                self.expect(xid, Answer::Error(ErrorCode::Unimplemented));
                Err(Box::new(Violation {
                    reason: CloseReason::protocol_violation,
                    reply: Some(Outbound::Reply {
                        xid,
                        zxid: self.last_zxid,
                        result: Err(OpError::new(Code::Unimplemented, detail.clone())),
                    }),
                    detail,
                }))
            }
        }
    }

    fn encode(&mut self, message: Outbound, buf: &mut BytesMut) {
        match message {
            Outbound::Granted(granted) => {
                self.session = Some(granted.session);
                self.last_zxid = self.last_zxid.max(granted.zxid);
                let response = self.connect_response(
                    i32::try_from(granted.timeout.as_millis()).unwrap_or(i32::MAX),
                    as_jute(granted.session.as_u64()),
                    Bytes::copy_from_slice(granted.password.as_bytes()),
                );
                self.push(encode_frame(&response, self.max_frame, buf));
            }
            // ZooKeeper answers every session it cannot reattach alike.
            Outbound::Refused {
                reason: Refusal::Expired | Refusal::AuthFailed,
                ..
            } => {
                let response = self.connect_response(0, 0, Bytes::from_static(&[0; PASSWORD_LEN]));
                self.push(encode_frame(&response, self.max_frame, buf));
            }
            // ZooKeeper closes without a word: throttled, read-only, a
            // client ahead of the server, a bad handshake, shutting down.
            Outbound::Refused { reason, detail } => {
                debug!(
                    ?reason,
                    detail, "handshake refused: closing without a reply"
                );
            }
            Outbound::Pong { zxid } => {
                self.last_zxid = self.last_zxid.max(zxid);
                match self.pending.pop_front() {
                    Some(Pending { xid, .. }) => self.header(xid, as_jute(zxid), buf),
                    None => self.header(zk::PING_XID, as_jute(zxid), buf),
                }
            }
            Outbound::CloseAck { zxid } => {
                self.last_zxid = self.last_zxid.max(zxid);
                let xid = self.pending.pop_front().map_or(0, |pending| pending.xid);
                self.header(xid, as_jute(zxid), buf);
            }
            Outbound::Reply { xid, zxid, result } => {
                self.last_zxid = self.last_zxid.max(zxid);
                self.reply(xid, zxid, result, buf);
            }
            // Since 3.9.2 a notification carries the zxid of the write that
            // fired it (3.8 and earlier sent -1; clients accept both).
            Outbound::Watch(event) => {
                let notification = WatcherEvent::new(
                    event_type(event.kind),
                    KeeperState::SyncConnected,
                    event.path.as_ref(),
                );
                self.push(encode_notification(
                    as_jute(event.zxid),
                    &notification,
                    self.max_frame,
                    buf,
                ));
            }
            // ZooKeeper closes the socket without a message when a session
            // expires, moves or the server stops; the client hears of it on
            // reconnecting (an invalid-session ConnectResponse, or another
            // server).
            Outbound::Disconnect { code, detail } => {
                debug!(session = ?self.session, ?code, detail, "closing without a reply");
            }
        }
    }
}

/// ZooKeeper's code for a neutral error.
fn error_code(code: Code) -> ErrorCode {
    match code {
        Code::Ok => ErrorCode::Ok,
        Code::SessionExpired => ErrorCode::SessionExpired,
        Code::SessionMoved => ErrorCode::SessionMoved,
        Code::NoNode => ErrorCode::NoNode,
        Code::NodeExists => ErrorCode::NodeExists,
        Code::BadVersion => ErrorCode::BadVersion,
        Code::NotEmpty => ErrorCode::NotEmpty,
        Code::NoChildrenForEphemerals => ErrorCode::NoChildrenForEphemerals,
        Code::NoAuth => ErrorCode::NoAuth,
        Code::InvalidAcl => ErrorCode::InvalidAcl,
        Code::AuthFailed => ErrorCode::AuthFailed,
        Code::NoWatcher => ErrorCode::NoWatcher,
        Code::RuntimeInconsistency => ErrorCode::RuntimeInconsistency,
        // ZooKeeper's server answers a path its PathUtils refuses with
        // BADARGUMENTS, and has no code for a size limit.
        Code::InvalidPath | Code::BadArguments | Code::TooLarge => ErrorCode::BadArguments,
        Code::TooManyEphemerals | Code::TooManyWatches | Code::QuotaExceeded => {
            ErrorCode::QuotaExceeded
        }
        Code::Unimplemented => ErrorCode::Unimplemented,
        Code::ReconfigDisabled => ErrorCode::ReconfigDisabled,
        Code::ShuttingDown | Code::Unavailable | Code::SystemError => ErrorCode::SystemError,
    }
}

type Refused = (OpKind, OpError);

/// The neutral operation of a ZooKeeper request: `Ok(None)` for a ping or a
/// close, which the connection handles itself.
fn operation(request: Request) -> Result<Option<Operation>, Refused> {
    let op = request.op_code();
    Ok(Some(match request {
        Request::Ping | Request::CloseSession => return Ok(None),
        Request::Auth(packet) => Operation::AddAuth {
            scheme: packet.scheme,
            credential: packet.auth.unwrap_or_default(),
        },
        Request::Create(create) | Request::Create2(create) | Request::CreateContainer(create) => {
            create_op(op, create.path, create.data, create.acl, create.flags, -1)?
        }
        Request::CreateTtl(create) => create_op(
            op,
            create.path,
            create.data,
            create.acl,
            create.flags,
            create.ttl,
        )?,
        Request::Delete(delete) => Operation::Delete {
            path: delete.path,
            version: expected_version(delete.version),
        },
        Request::SetData(set) => Operation::SetData {
            path: set.path,
            data: copied(set.data),
            version: expected_version(set.version),
        },
        Request::GetData(get) => Operation::GetData {
            path: get.path,
            watch: get.watch,
        },
        Request::Exists(exists) => Operation::Exists {
            path: exists.path,
            watch: exists.watch,
        },
        Request::GetChildren(get) => Operation::GetChildren {
            path: get.path,
            watch: get.watch,
        },
        Request::GetChildren2(get) => Operation::GetChildren {
            path: get.path,
            watch: get.watch,
        },
        Request::SetWatches(set) => Operation::SetWatches {
            last_zxid_seen: u64::try_from(set.relative_zxid).unwrap_or(0),
            data: set.data_watches,
            exist: set.exist_watches,
            child: set.child_watches,
            persistent: Vec::new(),
            recursive: Vec::new(),
        },
        Request::SetWatches2(set) => Operation::SetWatches {
            last_zxid_seen: u64::try_from(set.relative_zxid).unwrap_or(0),
            data: set.data_watches,
            exist: set.exist_watches,
            child: set.child_watches,
            persistent: set.persistent_watches,
            recursive: set.persistent_recursive_watches,
        },
        Request::Sync(sync) => Operation::Sync { path: sync.path },
        Request::GetAcl(get) => Operation::GetAcl { path: get.path },
        Request::SetAcl(set) => Operation::SetAcl {
            path: set.path,
            acl: acl_list(set.acl).map_err(|error| (OpKind::set_acl, error))?,
            version: expected_version(set.version),
        },
        Request::Multi(multi) => Operation::Multi {
            ops: multi
                .ops
                .into_iter()
                .map(multi_op)
                .collect::<Result<_, _>>()?,
        },
        Request::MultiRead(multi) => Operation::MultiRead {
            ops: multi
                .ops
                .into_iter()
                .map(|op| match op {
                    zk::MultiOp::GetData(get) => Ok(ReadOp::GetData { path: get.path }),
                    zk::MultiOp::GetChildren(get) => Ok(ReadOp::GetChildren { path: get.path }),
                    other => Err(bad_arguments(
                        OpKind::multi_read,
                        format!("{} cannot be part of a multiRead", other.op_code()),
                    )),
                })
                .collect::<Result<_, _>>()?,
        },
        Request::GetEphemerals(get) => Operation::GetEphemerals {
            prefix: get.prefix_path.unwrap_or_default(),
        },
        Request::GetAllChildrenNumber(get) => Operation::CountDescendants { path: get.path },
        Request::AddWatch(add) => match zk::AddWatchMode::from_code(add.mode) {
            Some(mode) => Operation::AddWatch {
                path: add.path,
                recursive: mode == zk::AddWatchMode::PersistentRecursive,
            },
            None => {
                return Err(bad_arguments(
                    OpKind::add_watch,
                    format!("addWatch mode {} is neither 0 nor 1", add.mode),
                ));
            }
        },
        Request::RemoveWatches(remove) => Operation::RemoveWatches {
            kind: watcher_type(remove.watcher_type)?,
            path: remove.path,
        },
        Request::CheckWatches(check) => Operation::CheckWatches {
            kind: watcher_type(check.watcher_type)?,
            path: check.path,
        },
        Request::WhoAmI => Operation::WhoAmI,
        Request::Sasl(_) => Operation::Sasl,
        // ZooKeeper's default (`reconfigEnabled=false`); membership changes
        // go through the admin's AddLearner, PromoteLearner, RemoveMember.
        Request::Reconfig(_) => {
            return Err((
                OpKind::unknown,
                OpError::new(
                    Code::ReconfigDisabled,
                    "reconfig is disabled: change membership through the admin",
                ),
            ));
        }
        _ => {
            return Err((
                OpKind::unknown,
                OpError::new(
                    Code::Unimplemented,
                    format!("{op} is not implemented by this server"),
                ),
            ));
        }
    }))
}

fn bad_arguments(kind: OpKind, detail: String) -> Refused {
    (kind, OpError::new(Code::BadArguments, detail))
}

fn watcher_type(value: i32) -> Result<WatcherType, Refused> {
    WatcherType::from_wire(value).ok_or_else(|| {
        bad_arguments(
            OpKind::remove_watches,
            format!("watcher type {value} is not 1 to 5"),
        )
    })
}

/// A create of any opcode: the mode from the flags, checked against the
/// opcode and the TTL as ZooKeeper's PrepRequestProcessor does (container
/// mode only by createContainer, TTL modes only by createTTL with a TTL in
/// range; a TTL given to another mode is refused).
fn create_op(
    op: OpCode,
    path: String,
    data: Option<Bytes>,
    acl: Vec<zk::Acl>,
    flags: i32,
    ttl: i64,
) -> Result<Operation, Refused> {
    let refuse = |detail: String| bad_arguments(OpKind::create, detail);
    let mode = match zk::CreateMode::from_code(flags) {
        Some(mode) => mode,
        None => return Err(refuse(format!("create flags {flags} name no create mode"))),
    };
    let ttl_ms = |ttl: i64| {
        u64::try_from(ttl)
            .ok()
            .filter(|ttl| (1..=session_core::MAX_TTL_MS).contains(ttl))
            .ok_or_else(|| {
                refuse(format!(
                    "TTL {ttl} is not 1 to {} ms",
                    session_core::MAX_TTL_MS
                ))
            })
    };
    let is_ttl = matches!(
        mode,
        zk::CreateMode::PersistentWithTtl | zk::CreateMode::PersistentSequentialWithTtl
    );
    if is_ttl != (op == OpCode::CreateTtl) {
        return Err(refuse(format!(
            "create mode {mode} cannot be created by {op}"
        )));
    }
    if (mode == zk::CreateMode::Container) != (op == OpCode::CreateContainer) {
        return Err(refuse(format!(
            "create mode {mode} cannot be created by {op}"
        )));
    }
    if !is_ttl && ttl >= 0 {
        return Err(refuse(format!(
            "create mode {mode} takes no TTL, given {ttl}"
        )));
    }
    let mode = match mode {
        zk::CreateMode::Persistent => CreateMode::Persistent,
        zk::CreateMode::Ephemeral => CreateMode::Ephemeral,
        zk::CreateMode::PersistentSequential => CreateMode::PersistentSequential,
        zk::CreateMode::EphemeralSequential => CreateMode::EphemeralSequential,
        zk::CreateMode::Container => CreateMode::Container,
        zk::CreateMode::PersistentWithTtl => CreateMode::PersistentWithTtl {
            ttl_ms: ttl_ms(ttl)?,
        },
        zk::CreateMode::PersistentSequentialWithTtl => CreateMode::PersistentSequentialWithTtl {
            ttl_ms: ttl_ms(ttl)?,
        },
    };
    Ok(Operation::Create {
        path,
        // Copied, so a small node does not pin the connection's (possibly
        // large) read buffer. Null data is stored as empty.
        data: copied(data),
        mode,
        acl: acl_list(acl).map_err(|error| (OpKind::create, error))?,
    })
}

/// ZooKeeper's ACL records as the core's. Negative permission bits cannot
/// be granted: INVALIDACL, as any bits outside ALL are.
fn acl_list(acl: Vec<zk::Acl>) -> Result<Vec<Acl>, OpError> {
    acl.into_iter()
        .map(|entry| {
            let perms = u32::try_from(entry.perms).map_err(|_| {
                OpError::new(
                    Code::InvalidAcl,
                    format!("ACL permissions {} are negative", entry.perms),
                )
            })?;
            Ok(Acl::new(perms, Id::new(entry.id.scheme, entry.id.id)))
        })
        .collect()
}

fn multi_op(op: zk::MultiOp) -> Result<MultiOp, Refused> {
    let code = op.op_code();
    let refuse = |detail: String| bad_arguments(OpKind::multi, detail);
    let created = |operation: Operation| match operation {
        Operation::Create {
            path,
            data,
            mode,
            acl,
        } => MultiOp::Create {
            path,
            data,
            mode,
            acl,
        },
        _ => unreachable!("create_op makes a create"),
    };
    Ok(match op {
        zk::MultiOp::Create(c) | zk::MultiOp::Create2(c) | zk::MultiOp::CreateContainer(c) => {
            created(create_op(code, c.path, c.data, c.acl, c.flags, -1).map_err(multi_refusal)?)
        }
        zk::MultiOp::CreateTtl(c) => {
            created(create_op(code, c.path, c.data, c.acl, c.flags, c.ttl).map_err(multi_refusal)?)
        }
        zk::MultiOp::Delete(delete) => MultiOp::Delete {
            path: delete.path,
            version: expected_version(delete.version),
        },
        zk::MultiOp::SetData(set) => MultiOp::SetData {
            path: set.path,
            data: copied(set.data),
            version: expected_version(set.version),
        },
        zk::MultiOp::Check(check) => MultiOp::Check {
            path: check.path,
            version: expected_version(check.version),
        },
        zk::MultiOp::GetData(_) | zk::MultiOp::GetChildren(_) => {
            return Err(refuse(format!("{code} cannot be part of a multi")));
        }
    })
}

fn multi_refusal((_, error): Refused) -> Refused {
    (OpKind::multi, error)
}

/// ZooKeeper's -1 matches any version; any other is compared, so a negative
/// one never matches (BADVERSION), as in ZooKeeper.
fn expected_version(version: i32) -> Option<i32> {
    (version != -1).then_some(version)
}

fn copied(data: Option<Bytes>) -> Bytes {
    data.map_or_else(Bytes::new, |data| Bytes::copy_from_slice(&data))
}

/// The body ZooKeeper sends for a successful `op`, or the error code it
/// answers with instead.
fn response(op: OpCode, result: OpResult) -> Result<Response, ErrorCode> {
    Ok(match result {
        OpResult::Create { path, .. } if op == OpCode::Create => {
            Response::Create(CreateResponse { path })
        }
        OpResult::Create { path, stat } => Response::Create2(Create2Response {
            path,
            stat: jute_stat(&stat),
        }),
        // ZooKeeper without a SASL server answers a token with an empty
        // success (its NullPointerException path).
        OpResult::SaslAnswered => Response::Sasl(SetSaslResponse { token: None }),
        // addWatch answers an ErrorResponse of 0 (4 bytes).
        OpResult::WatchAdded => Response::AddWatch(ErrorResponse { err: 0 }),
        OpResult::Delete
        | OpResult::SetWatches
        | OpResult::Checked
        | OpResult::WatchesRemoved
        | OpResult::WatchesChecked
        | OpResult::Authenticated => Response::Empty,
        OpResult::SetData { stat } => Response::SetData(SetDataResponse {
            stat: jute_stat(&stat),
        }),
        OpResult::GetData { data, stat } => Response::GetData(GetDataResponse {
            data: Some(data),
            stat: jute_stat(&stat),
        }),
        OpResult::Exists { stat: Some(stat) } => Response::Exists(ExistsResponse {
            stat: jute_stat(&stat),
        }),
        // The watch, if asked for, is left all the same.
        OpResult::Exists { stat: None } => return Err(ErrorCode::NoNode),
        OpResult::GetChildren { children, .. } if op == OpCode::GetChildren => {
            Response::GetChildren(GetChildrenResponse { children })
        }
        OpResult::GetChildren { children, stat } => Response::GetChildren2(GetChildren2Response {
            children,
            stat: jute_stat(&stat),
        }),
        OpResult::Sync { path } => Response::Sync(SyncResponse { path }),
        OpResult::GetAcl { acl, stat } => Response::GetAcl(GetAclResponse {
            acl: acl.into_iter().map(jute_acl).collect(),
            stat: jute_stat(&stat),
        }),
        OpResult::SetAcl { stat } => Response::SetAcl(SetAclResponse {
            stat: jute_stat(&stat),
        }),
        OpResult::GetEphemerals { paths } => {
            Response::GetEphemerals(GetEphemeralsResponse { ephemerals: paths })
        }
        OpResult::CountDescendants { count } => {
            Response::GetAllChildrenNumber(GetAllChildrenNumberResponse {
                total_number: i32::try_from(count).unwrap_or(i32::MAX),
            })
        }
        OpResult::WhoAmI { ids } => Response::WhoAmI(WhoAmIResponse {
            client_info: ids
                .into_iter()
                .map(|id| {
                    // The user a provider names: the address for ip, the
                    // user before the colon for digest.
                    let user = match id.scheme.as_str() {
                        "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
                        _ => id.id,
                    };
                    ClientInfo {
                        auth_scheme: id.scheme,
                        user,
                    }
                })
                .collect(),
        }),
        OpResult::Multi { .. } | OpResult::MultiRead { .. } => {
            error!(%op, "a multi result for a request that is not a multi");
            return Err(ErrorCode::SystemError);
        }
    })
}

/// The body of a multi or multiRead whose operations had the opcodes `ops`.
fn multi_response(ops: &[OpCode], result: OpResult) -> Result<Response, ErrorCode> {
    let (OpResult::Multi { results } | OpResult::MultiRead { results }) = result else {
        error!("a multi answered with a single result");
        return Err(ErrorCode::SystemError);
    };
    let results = results
        .into_iter()
        .zip(ops.iter().copied().chain(std::iter::repeat(OpCode::Error)))
        .map(|(result, op)| match result {
            Err(code) => MultiResult::Error(ErrorResponse {
                err: error_code(code).code(),
            }),
            Ok(OpResult::Create { path, .. }) if op == OpCode::Create => {
                MultiResult::Create(CreateResponse { path })
            }
            Ok(OpResult::Create { path, stat }) => MultiResult::Create2(Create2Response {
                path,
                stat: jute_stat(&stat),
            }),
            Ok(OpResult::Delete) => MultiResult::Delete,
            Ok(OpResult::Checked) => MultiResult::Check,
            Ok(OpResult::SetData { stat }) => MultiResult::SetData(SetDataResponse {
                stat: jute_stat(&stat),
            }),
            Ok(OpResult::GetData { data, stat }) => MultiResult::GetData(GetDataResponse {
                data: Some(data),
                stat: jute_stat(&stat),
            }),
            Ok(OpResult::GetChildren { children, .. }) => {
                MultiResult::GetChildren(GetChildrenResponse { children })
            }
            Ok(other) => {
                error!(?other, "an operation result a multi cannot carry");
                MultiResult::Error(ErrorResponse {
                    err: ErrorCode::SystemError.code(),
                })
            }
        })
        .collect();
    Ok(Response::Multi(MultiResponse { results }))
}

fn jute_acl(acl: Acl) -> zk::Acl {
    zk::Acl {
        perms: i32::try_from(acl.perms).unwrap_or(i32::MAX),
        id: zk::Id {
            scheme: acl.id.scheme,
            id: acl.id.id,
        },
    }
}

fn jute_stat(stat: &Stat) -> zk::Stat {
    zk::Stat {
        czxid: as_jute(stat.czxid),
        mzxid: as_jute(stat.mzxid),
        ctime: stat.ctime,
        mtime: stat.mtime,
        version: stat.version,
        cversion: stat.cversion,
        aversion: stat.aversion,
        ephemeral_owner: as_jute(stat.ephemeral_owner),
        data_length: i32::try_from(stat.data_length).unwrap_or(i32::MAX),
        num_children: i32::try_from(stat.num_children).unwrap_or(i32::MAX),
        pzxid: as_jute(stat.pzxid),
    }
}

fn event_type(kind: EventKind) -> EventType {
    match kind {
        EventKind::NodeCreated => EventType::NodeCreated,
        EventKind::NodeDeleted => EventType::NodeDeleted,
        EventKind::NodeDataChanged => EventType::NodeDataChanged,
        EventKind::NodeChildrenChanged => EventType::NodeChildrenChanged,
    }
}

/// A session id or zxid as a Java long: the same 64 bits.
fn as_jute(value: u64) -> i64 {
    i64::from_be_bytes(value.to_be_bytes())
}

/// A Java long as a session id: the same 64 bits.
fn from_jute(value: i64) -> u64 {
    u64::from_be_bytes(value.to_be_bytes())
}

#[cfg(test)]
mod tests {
    //! Byte for byte against frames captured from ZooKeeper 3.8.0 talking to
    //! zkCli.sh and the Rust `zookeeper-client` (session-wire's golden files):
    //! each client frame decodes, and the neutral answer the captured server
    //! frame stands for encodes to exactly that frame.

    use std::path::Path;
    use std::sync::Arc;

    use session_core::WatchEvent;
    use session_wire::zookeeper::{CreateRequest, GetDataRequest, Reply, decode_reply};

    use super::*;
    use crate::frontend::Granted;

    fn golden(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../session-wire/tests/golden/zookeeper")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    /// A frontend past the handshake of zkCli.sh (which sends readOnly).
    fn connected() -> ZooKeeper {
        let mut frontend = ZooKeeper::new(1024 * 1024);
        let mut input = BytesMut::from(&golden("c2s-connect-request.bin")[..]);
        let handshake = frontend.decode_handshake(&mut input);
        assert!(matches!(handshake, Ok(Some(_))), "{handshake:?}");
        frontend
    }

    fn encoded(frontend: &mut ZooKeeper, message: Outbound) -> Vec<u8> {
        let mut out = BytesMut::new();
        frontend.encode(message, &mut out);
        out.to_vec()
    }

    fn decoded(frontend: &mut ZooKeeper, frame: &[u8]) -> Inbound {
        let mut input = BytesMut::from(frame);
        let inbound = frontend.decode(&mut input);
        assert!(input.is_empty(), "the whole frame is consumed");
        match inbound {
            Ok(Some(inbound)) => inbound,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn request_frame(xid: i32, request: &Request) -> Vec<u8> {
        let mut frame = BytesMut::new();
        zk::encode_request(xid, request, JUTE_MAX_BUFFER, &mut frame).expect("small");
        frame.to_vec()
    }

    fn core_stat(stat: &zk::Stat) -> Stat {
        Stat {
            czxid: from_jute(stat.czxid),
            mzxid: from_jute(stat.mzxid),
            pzxid: from_jute(stat.pzxid),
            ctime: stat.ctime,
            mtime: stat.mtime,
            version: stat.version,
            cversion: stat.cversion,
            aversion: stat.aversion,
            ephemeral_owner: from_jute(stat.ephemeral_owner),
            data_length: u32::try_from(stat.data_length).expect("non-negative"),
            num_children: u32::try_from(stat.num_children).expect("non-negative"),
        }
    }

    /// What the connection hands the frontend for the captured `reply` to
    /// `inbound`.
    fn neutral(inbound: &Inbound, reply: Reply) -> Outbound {
        let Reply::Response { header, body, .. } = reply else {
            panic!("a reply, not a notification");
        };
        let zxid = from_jute(header.zxid);
        let (xid, op) = match inbound {
            Inbound::Ping => return Outbound::Pong { zxid },
            Inbound::Close => return Outbound::CloseAck { zxid },
            Inbound::Request { xid, op } => (*xid, op),
            Inbound::Refused { .. } => panic!("refused: {inbound:?}"),
        };
        let result = match body {
            None if matches!(op, Operation::Exists { .. }) => {
                assert_eq!(header.err, ErrorCode::NoNode.code());
                Ok(OpResult::Exists { stat: None })
            }
            None => panic!("error {} in a golden reply", header.err),
            Some(body) => Ok(match body {
                Response::Create(created) => OpResult::Create {
                    path: created.path,
                    stat: Stat::default(),
                },
                Response::Create2(created) => OpResult::Create {
                    path: created.path,
                    stat: core_stat(&created.stat),
                },
                Response::GetData(got) => OpResult::GetData {
                    data: got.data.unwrap_or_default(),
                    stat: core_stat(&got.stat),
                },
                Response::SetData(set) => OpResult::SetData {
                    stat: core_stat(&set.stat),
                },
                Response::Exists(exists) => OpResult::Exists {
                    stat: Some(core_stat(&exists.stat)),
                },
                Response::GetChildren2(got) => OpResult::GetChildren {
                    children: got.children,
                    stat: core_stat(&got.stat),
                },
                Response::Sync(sync) => OpResult::Sync { path: sync.path },
                Response::Empty => match op {
                    Operation::Delete { .. } => OpResult::Delete,
                    Operation::SetWatches { .. } => OpResult::SetWatches,
                    Operation::AddAuth { .. } => OpResult::Authenticated,
                    other => panic!("no body for {other:?}"),
                },
                Response::Multi(multi) => {
                    let results = multi.results.into_iter().map(neutral_result).collect();
                    match op {
                        Operation::MultiRead { .. } => OpResult::MultiRead { results },
                        _ => OpResult::Multi { results },
                    }
                }
                Response::GetAcl(got) => OpResult::GetAcl {
                    acl: got
                        .acl
                        .into_iter()
                        .map(|acl| {
                            Acl::new(
                                u32::try_from(acl.perms).expect("valid"),
                                Id::new(acl.id.scheme, acl.id.id),
                            )
                        })
                        .collect(),
                    stat: core_stat(&got.stat),
                },
                Response::GetEphemerals(got) => OpResult::GetEphemerals {
                    paths: got.ephemerals,
                },
                Response::GetAllChildrenNumber(got) => OpResult::CountDescendants {
                    count: usize::try_from(got.total_number).expect("non-negative"),
                },
                Response::WhoAmI(who) => OpResult::WhoAmI {
                    ids: who
                        .client_info
                        .into_iter()
                        .map(|info| Id::new(info.auth_scheme, info.user))
                        .collect(),
                },
                Response::AddWatch(_) => OpResult::WatchAdded,
                other => panic!("unexpected golden body {other:?}"),
            }),
        };
        Outbound::Reply { xid, zxid, result }
    }

    /// A multi's result as the connection hands it on.
    fn neutral_result(result: MultiResult) -> Result<OpResult, Code> {
        match result {
            MultiResult::Error(error) => Err(match error.err {
                0 => Code::Ok,
                -101 => Code::NoNode,
                -103 => Code::BadVersion,
                -2 => Code::RuntimeInconsistency,
                other => panic!("unexpected golden error {other}"),
            }),
            MultiResult::Create(created) => Ok(OpResult::Create {
                path: created.path,
                stat: Stat::default(),
            }),
            MultiResult::Create2(created) => Ok(OpResult::Create {
                path: created.path,
                stat: core_stat(&created.stat),
            }),
            MultiResult::Delete => Ok(OpResult::Delete),
            MultiResult::Check => Ok(OpResult::Checked),
            MultiResult::SetData(set) => Ok(OpResult::SetData {
                stat: core_stat(&set.stat),
            }),
            MultiResult::GetData(got) => Ok(OpResult::GetData {
                data: got.data.unwrap_or_default(),
                stat: core_stat(&got.stat),
            }),
            MultiResult::GetChildren(got) => Ok(OpResult::GetChildren {
                children: got.children,
                stat: Stat::default(),
            }),
        }
    }

    #[test]
    fn requests_decode_and_answers_encode_as_zookeeper_sent_them() {
        for name in [
            "create-persistent",
            "create-ephemeral",
            "create-persistent-sequential",
            "create2",
            "get-data",
            "set-data",
            "exists-missing",
            "get-children2-watch",
            "create-watched-child",
            "delete",
            "sync",
            "set-watches",
            "ping",
            "close-session",
            "auth",
            "multi-check-failed",
            "multi-read",
            "add-watch",
            "get-acl",
            "get-ephemerals",
            "get-all-children-number",
            "who-am-i",
        ] {
            let mut frontend = connected();
            let client = golden(&format!("c2s-{name}.bin"));
            let server = golden(&format!("s2c-{name}.bin"));
            let inbound = decoded(&mut frontend, &client);
            let (_, request) =
                zk::decode_request(Bytes::copy_from_slice(&client[4..])).expect("golden request");
            let reply = decode_reply(Bytes::copy_from_slice(&server[4..]), |_| {
                Some(request.op_code())
            })
            .expect("golden reply");
            let answer = neutral(&inbound, reply);
            assert_eq!(encoded(&mut frontend, answer), server, "{name}");
            assert!(frontend.pending.is_empty(), "{name}: answered");
        }
    }

    #[test]
    fn requests_become_the_neutral_operations() {
        let mut frontend = connected();
        let inbound = decoded(&mut frontend, &golden("c2s-create-ephemeral.bin"));
        let Inbound::Request {
            op:
                Operation::Create {
                    path,
                    data,
                    mode,
                    acl,
                },
            ..
        } = inbound
        else {
            panic!("a create: {inbound:?}");
        };
        assert_eq!(
            acl,
            Acl::open(),
            "zkCli's default: world:anyone, every permission"
        );
        // zkCli's `create -e` sends null data: stored as empty.
        assert_eq!((path.as_str(), &data[..]), ("/golden/eph", &b""[..]));
        assert_eq!(mode, CreateMode::Ephemeral);

        let inbound = decoded(&mut frontend, &golden("c2s-set-watches.bin"));
        let Inbound::Request {
            xid: 3,
            op:
                Operation::SetWatches {
                    last_zxid_seen: 0xe,
                    data,
                    exist,
                    child,
                    persistent,
                    recursive,
                },
        } = inbound
        else {
            panic!("set watches: {inbound:?}");
        };
        assert_eq!(
            (data, exist),
            (
                vec!["/golden".to_owned()],
                vec!["/golden/absent".to_owned()]
            )
        );
        assert!(child.is_empty() && persistent.is_empty() && recursive.is_empty());

        let inbound = decoded(&mut frontend, &golden("c2s-set-data.bin"));
        assert!(
            matches!(
                inbound,
                Inbound::Request {
                    op: Operation::SetData { version: None, .. },
                    ..
                }
            ),
            "version -1 is any: {inbound:?}"
        );
    }

    #[test]
    fn handshakes_decode_and_sessions_encode_as_zookeeper_sent_them() {
        for (name, requested, reattach, last_zxid_seen) in [
            ("connect-request", 3000, None, 0),
            (
                "connect-request-reattach",
                8000,
                Some(0x0100_0017_11d7_0002),
                0xe,
            ),
        ] {
            let mut frontend = ZooKeeper::new(1024 * 1024);
            let mut input = BytesMut::from(&golden(&format!("c2s-{name}.bin"))[..]);
            let handshake = frontend
                .decode_handshake(&mut input)
                .expect("valid")
                .expect("whole");
            assert_eq!(handshake.requested, Duration::from_millis(requested));
            assert_eq!(
                handshake.reattach.map(|(id, _)| id.as_u64()),
                reattach,
                "{name}"
            );
            assert_eq!(handshake.last_zxid_seen, last_zxid_seen);
            assert_eq!(handshake.client, "zookeeper");

            let server = golden(&format!("s2c-{}.bin", name.replace("request", "response")));
            let response = ConnectResponse::decode(Bytes::copy_from_slice(&server[4..]))
                .expect("golden response");
            let password = response
                .passwd
                .as_deref()
                .and_then(SessionPassword::from_slice);
            let granted = Granted {
                session: SessionId::from_u64(from_jute(response.session_id)),
                password: password.expect("16 bytes"),
                timeout: Duration::from_millis(u64::try_from(response.time_out).expect("positive")),
                reattached: reattach.is_some(),
                zxid: 0,
            };
            if let Some((_, sent)) = handshake.reattach {
                assert_eq!(
                    sent.as_bytes(),
                    granted.password.as_bytes(),
                    "the password sent is the one granted"
                );
            }
            assert_eq!(
                encoded(&mut frontend, Outbound::Granted(granted)),
                server,
                "{name}"
            );
        }
    }

    #[test]
    fn a_session_that_cannot_be_had_gets_zookeepers_invalid_session_answer() {
        let invalid = |read_only: bool| {
            let mut frame = vec![0, 0, 0, if read_only { 37 } else { 36 }];
            frame.extend_from_slice(&[0; 16]); // protocol, timeout 0, session 0
            frame.extend_from_slice(&[0, 0, 0, 16]);
            frame.extend_from_slice(&[0; 16]);
            if read_only {
                frame.push(0);
            }
            frame
        };
        let refused = |reason| Outbound::Refused {
            reason,
            detail: String::new(),
        };
        // With the readOnly byte (every client since 3.4), and without.
        let with = golden("c2s-connect-request-reattach.bin");
        let mut without = with[..with.len() - 1].to_vec();
        without[3] -= 1;
        for (request, read_only) in [(with, true), (without, false)] {
            for reason in [Refusal::Expired, Refusal::AuthFailed] {
                let mut frontend = ZooKeeper::new(1024 * 1024);
                let mut input = BytesMut::from(&request[..]);
                let handshake = frontend.decode_handshake(&mut input);
                assert!(matches!(handshake, Ok(Some(_))), "{handshake:?}");
                assert_eq!(encoded(&mut frontend, refused(reason)), invalid(read_only));
            }
        }
        // Every other refusal closes without a word, as ZooKeeper does.
        let mut frontend = connected();
        for reason in [
            Refusal::ZxidAhead,
            Refusal::TooManyConnections,
            Refusal::ShuttingDown,
            Refusal::BadHandshake,
            Refusal::UnsupportedVersion,
        ] {
            assert_eq!(encoded(&mut frontend, refused(reason)), b"");
        }

        // A session id with a password that is not 16 bytes: invalid too.
        let mut short = golden("c2s-connect-request-reattach.bin");
        // Length prefix 4, protocol 4, last zxid 8, timeout 4, session 8:
        // the password's length is at 28..32, its bytes at 32..48.
        short.drain(32..40);
        short[3] -= 8;
        short[31] = 8;
        let mut frontend = ZooKeeper::new(1024 * 1024);
        let violation = frontend
            .decode_handshake(&mut BytesMut::from(&short[..]))
            .expect_err("refused");
        assert_eq!(violation.reason, CloseReason::auth_failed);
        let reply = violation.reply.expect("an answer");
        assert_eq!(encoded(&mut frontend, reply), invalid(true));
    }

    #[test]
    fn notifications_carry_the_write_zxid_or_zookeeper_3_8s_minus_one() {
        let mut frontend = connected();
        let event = |zxid| {
            Outbound::Watch(WatchEvent {
                kind: EventKind::NodeChildrenChanged,
                path: Arc::from("/golden"),
                zxid,
            })
        };
        // The same 64 bits: u64::MAX is Java's -1, what 3.8.0 sent.
        assert_eq!(
            encoded(&mut frontend, event(u64::MAX)),
            golden("s2c-notification-node-children-changed.bin")
        );
        let mut with_zxid = golden("s2c-notification-node-children-changed.bin");
        with_zxid[8..16].copy_from_slice(&6_i64.to_be_bytes());
        assert_eq!(encoded(&mut frontend, event(6)), with_zxid);
        // Disconnects close without a word.
        let disconnect = Outbound::Disconnect {
            code: Code::SessionExpired,
            detail: String::new(),
        };
        assert_eq!(encoded(&mut frontend, disconnect), b"");
    }

    #[test]
    fn auth_is_answered_in_order_with_zxid_0() {
        let mut frontend = connected();
        let inbound = decoded(&mut frontend, &golden("c2s-auth.bin"));
        let Inbound::Request {
            xid,
            op: Operation::AddAuth { scheme, .. },
        } = inbound
        else {
            panic!("an addAuth: {inbound:?}");
        };
        // The Rust client numbers its auth like any request (the Java
        // client uses -4); either way the answer carries it back.
        assert_eq!(scheme.as_str(), "digest");
        let reply = Outbound::Reply {
            xid,
            zxid: 42,
            result: Ok(OpResult::Authenticated),
        };
        assert_eq!(encoded(&mut frontend, reply), golden("s2c-auth.bin"));
    }

    #[test]
    fn a_create2_in_a_multi_is_answered_with_its_stat_as_zookeeper_3_9_does() {
        // ZooKeeper 3.8.0 answered it as a plain create (ZOOKEEPER-4026),
        // which is what the golden reply has; 3.8.2 and 3.9 send type 15.
        let mut frontend = connected();
        let inbound = decoded(&mut frontend, &golden("c2s-multi-check.bin"));
        let Inbound::Request {
            xid,
            op: Operation::Multi { ops },
        } = &inbound
        else {
            panic!("a multi: {inbound:?}");
        };
        assert_eq!(ops.len(), 3);
        let stat = Stat {
            czxid: 9,
            ..Stat::default()
        };
        let results = vec![
            Ok(OpResult::Checked),
            Ok(OpResult::Create {
                path: "/rust/m".into(),
                stat,
            }),
            Ok(OpResult::SetData { stat }),
        ];
        let reply = Outbound::Reply {
            xid: *xid,
            zxid: 9,
            result: Ok(OpResult::Multi { results }),
        };
        let bytes = encoded(&mut frontend, reply);
        let reply = decode_reply(Bytes::copy_from_slice(&bytes[4..]), |_| Some(OpCode::Multi))
            .expect("a reply");
        let Reply::Response {
            body: Some(Response::Multi(multi)),
            ..
        } = reply
        else {
            panic!("{reply:?}");
        };
        assert!(matches!(multi.results[0], MultiResult::Check));
        assert!(
            matches!(&multi.results[1], MultiResult::Create2(created) if created.stat.czxid == 9)
        );
        assert!(matches!(multi.results[2], MultiResult::SetData(_)));
    }

    #[test]
    fn reconfig_is_disabled_as_in_zookeepers_default_and_the_connection_stays() {
        let mut frontend = connected();
        let reconfig = Request::Reconfig(zk::ReconfigRequest {
            joining_servers: "server.4=127.0.0.1:2888:3888".to_owned(),
            leaving_servers: String::new(),
            new_members: String::new(),
            cur_config_id: -1,
        });
        let Inbound::Refused { xid, error, .. } =
            decoded(&mut frontend, &request_frame(5, &reconfig))
        else {
            panic!("refused");
        };
        let reply = Outbound::Reply {
            xid,
            zxid: 7,
            result: Err(error),
        };
        let mut expected = vec![0, 0, 0, 16];
        expected.extend_from_slice(&5_i32.to_be_bytes());
        expected.extend_from_slice(&7_i64.to_be_bytes());
        expected.extend_from_slice(&(-123_i32).to_be_bytes());
        assert_eq!(encoded(&mut frontend, reply), expected, "RECONFIGDISABLED");
    }

    #[test]
    fn creates_check_their_mode_against_their_opcode_and_ttl() {
        let mut frontend = connected();
        let create = |flags| CreateRequest {
            path: "/x".to_owned(),
            flags,
            ..CreateRequest::default()
        };
        let ttl = |flags, ttl| zk::CreateTtlRequest {
            path: "/x".to_owned(),
            data: None,
            acl: vec![zk::Acl::world_anyone(31)],
            flags,
            ttl,
        };
        let cases = [
            // Container and TTL modes only by their own opcodes.
            (Request::Create2(create(4)), Some(Code::BadArguments)),
            (Request::CreateContainer(create(4)), None),
            (
                Request::CreateContainer(create(0)),
                Some(Code::BadArguments),
            ),
            (Request::Create2(create(5)), Some(Code::BadArguments)),
            (Request::CreateTtl(ttl(5, 1_000)), None),
            (Request::CreateTtl(ttl(6, 1)), None),
            (Request::CreateTtl(ttl(5, 0)), Some(Code::BadArguments)),
            (
                Request::CreateTtl(ttl(5, 0x100_0000_0000)),
                Some(Code::BadArguments),
            ),
            (Request::CreateTtl(ttl(0, 1_000)), Some(Code::BadArguments)),
            (Request::Create2(create(7)), Some(Code::BadArguments)),
        ];
        for (request, refused) in cases {
            let inbound = decoded(&mut frontend, &request_frame(1, &request));
            match refused {
                Some(code) => assert!(
                    matches!(&inbound, Inbound::Refused { error, .. } if error.code == code),
                    "{request:?}: {inbound:?}"
                ),
                None => assert!(
                    matches!(
                        &inbound,
                        Inbound::Request {
                            op: Operation::Create { .. },
                            ..
                        }
                    ),
                    "{request:?}: {inbound:?}"
                ),
            }
            frontend.pending.clear();
        }
    }

    #[test]
    fn an_unreadable_body_is_a_marshalling_error_and_the_connection_stays() {
        let mut frontend = connected();
        let get = Request::GetData(GetDataRequest {
            path: "/a".to_owned(),
            watch: false,
        });
        let mut frame = request_frame(9, &get);
        frame.push(0);
        frame[3] += 1;
        let Inbound::Refused { xid: 9, error, .. } = decoded(&mut frontend, &frame) else {
            panic!("refused");
        };
        let reply = Outbound::Reply {
            xid: 9,
            zxid: 3,
            result: Err(error),
        };
        let bytes = encoded(&mut frontend, reply);
        assert_eq!(bytes[16..20], (-5_i32).to_be_bytes(), "MARSHALLINGERROR");
    }

    #[test]
    fn an_unknown_opcode_is_answered_unimplemented_then_closed() {
        let mut frontend = connected();
        let frame = [0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 99];
        let violation = frontend
            .decode(&mut BytesMut::from(&frame[..]))
            .expect_err("closed");
        assert_eq!(violation.reason, CloseReason::protocol_violation);
        let reply = violation.reply.expect("answered first");
        let bytes = encoded(&mut frontend, reply);
        assert_eq!(bytes[4..8], 5_i32.to_be_bytes());
        assert_eq!(bytes[16..20], (-6_i32).to_be_bytes(), "UNIMPLEMENTED");

        // So is a check outside a multi (ZooKeeper 3.9).
        let mut frontend = connected();
        let check = Request::Check(zk::CheckVersionRequest {
            path: "/a".to_owned(),
            version: 1,
        });
        let violation = frontend
            .decode(&mut BytesMut::from(&request_frame(6, &check)[..]))
            .expect_err("closed");
        let bytes = encoded(&mut frontend, violation.reply.expect("answered first"));
        assert_eq!(bytes[4..8], 6_i32.to_be_bytes());
        assert_eq!(bytes[16..20], (-6_i32).to_be_bytes(), "UNIMPLEMENTED");
    }

    #[test]
    fn bad_frame_lengths_close_without_a_reply() {
        for (prefix, says) in [
            // A four-letter word is the connection's to catch (`command`).
            (*b"ruok", "frame length 1920298859"),
            ([0xff, 0xff, 0xff, 0xff], "frame length -1"),
            ([0, 0x10, 0, 0], "frame length 1048576"),
        ] {
            let mut frontend = ZooKeeper::new(1024 * 1024);
            let violation = frontend
                .decode_handshake(&mut BytesMut::from(&prefix[..]))
                .expect_err("closed");
            assert_eq!(violation.reason, CloseReason::bad_frame);
            assert!(violation.reply.is_none());
            assert!(violation.detail.contains(says), "{}", violation.detail);
        }
    }

    #[test]
    fn a_reply_over_the_frame_limit_is_answered_badarguments() {
        let mut frontend = ZooKeeper::new(64);
        let get = Request::GetData(GetDataRequest {
            path: "/big".to_owned(),
            watch: false,
        });
        let Inbound::Request { xid, .. } = decoded(&mut frontend, &request_frame(4, &get)) else {
            panic!("a request");
        };
        let reply = Outbound::Reply {
            xid,
            zxid: 2,
            result: Ok(OpResult::GetData {
                data: Bytes::from(vec![7; 100]),
                stat: Stat::default(),
            }),
        };
        let bytes = encoded(&mut frontend, reply);
        assert_eq!(bytes.len(), 20, "a header only");
        assert_eq!(bytes[16..20], (-8_i32).to_be_bytes(), "BADARGUMENTS");
    }
}
