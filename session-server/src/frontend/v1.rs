//! The v1 frontend: `session-wire`'s protobuf protocol (4-byte big-endian
//! length, then one `ClientMessage` or `ServerMessage`). Its wire format is
//! the one `session-client` speaks; this module only translates.

use bytes::{Bytes, BytesMut};
use prost::Message;
use session_core::{CreateMode, EventKind, SessionId, SessionPassword, Stat};
use session_wire::v1::{
    self as wire, ClientMessage, CloseAck, Disconnect, ErrorCode, HandshakeRefusal, HandshakeReply,
    NodeKind, Pong, RefusalReason, Reply, ServerMessage, SessionGranted, client_message,
    handshake_reply, reply, request,
};
use session_wire::{
    LENGTH_PREFIX_LEN, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, ServerCodec,
    expect_handshake,
};
use tokio_util::codec::{Decoder, Encoder};

use super::{
    Code, Frontend, Handshake, Inbound, OpError, OpResult, Operation, Outbound, Refusal, Violation,
    client_label,
};
use crate::metrics::{CloseReason, OpKind};

/// The v1 protocol on one connection.
#[derive(Debug)]
pub(crate) struct V1 {
    codec: ServerCodec,
    max_frame: usize,
    server_id: u32,
}

impl V1 {
    pub(crate) fn new(max_frame_bytes: usize, server_id: u32) -> V1 {
        let max = u32::try_from(max_frame_bytes).unwrap_or(u32::MAX);
        V1 {
            codec: ServerCodec::with_max_frame_len(max),
            max_frame: max_frame_bytes,
            server_id,
        }
    }

    fn push(&mut self, message: ServerMessage, buf: &mut BytesMut) {
        // The only encode error is a frame over the limit; replies are checked
        // before (and replaced by TOO_LARGE), and nothing else can be that big.
        if let Err(err) = self.codec.encode(message, buf) {
            tracing::error!(error = %err, "dropping an outgoing message that cannot be framed");
        }
    }
}

fn refuse(reason: Refusal, close: CloseReason, detail: String) -> Box<Violation> {
    Box::new(Violation {
        reason: close,
        reply: Some(Outbound::Refused {
            reason,
            detail: detail.clone(),
        }),
        detail,
    })
}

fn disconnect(code: Code, close: CloseReason, detail: String) -> Box<Violation> {
    Box::new(Violation {
        reason: close,
        reply: Some(Outbound::Disconnect {
            code,
            detail: detail.clone(),
        }),
        detail,
    })
}

impl Frontend for V1 {
    fn decode_handshake(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Handshake>, Box<Violation>> {
        let first = match self.codec.decode(buf) {
            Ok(Some(first)) => first,
            Ok(None) => return Ok(None),
            Err(err) => {
                return Err(refuse(
                    Refusal::BadHandshake,
                    CloseReason::bad_frame,
                    err.to_string(),
                ));
            }
        };
        let handshake = expect_handshake(first).map_err(|err| {
            refuse(
                Refusal::BadHandshake,
                CloseReason::protocol_violation,
                err.to_string(),
            )
        })?;
        let version = handshake.protocol_version;
        if !(MIN_PROTOCOL_VERSION..=MAX_PROTOCOL_VERSION).contains(&version) {
            return Err(refuse(
                Refusal::UnsupportedVersion,
                CloseReason::protocol_violation,
                format!(
                    "protocol version {version} is not supported; this server speaks {MIN_PROTOCOL_VERSION}..={MAX_PROTOCOL_VERSION}"
                ),
            ));
        }
        let bad = |detail: String| {
            refuse(
                Refusal::BadHandshake,
                CloseReason::protocol_violation,
                detail,
            )
        };
        if handshake.requested_timeout_ms == 0 {
            return Err(bad("the requested session timeout is 0 ms".to_owned()));
        }
        let reattach = match (handshake.session_id, handshake.password.len()) {
            (0, 0) => None,
            (0, len) => {
                return Err(bad(format!(
                    "a {len}-byte password was sent without a session id"
                )));
            }
            (id, len) => match SessionPassword::from_slice(&handshake.password) {
                Some(password) => Some((SessionId::from_u64(id), password)),
                None => {
                    return Err(bad(format!(
                        "the password of session {} is {len} bytes, not {}",
                        SessionId::from_u64(id),
                        session_core::PASSWORD_LEN
                    )));
                }
            },
        };
        Ok(Some(Handshake {
            requested: std::time::Duration::from_millis(u64::from(handshake.requested_timeout_ms)),
            reattach,
            last_zxid_seen: handshake.last_zxid_seen,
            client: client_label(&handshake.client_name, &handshake.client_version),
        }))
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, Box<Violation>> {
        let message: ClientMessage = match self.codec.decode(buf) {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(None),
            Err(err) => {
                return Err(disconnect(
                    Code::BadArguments,
                    CloseReason::bad_frame,
                    err.to_string(),
                ));
            }
        };
        match message.kind {
            Some(client_message::Kind::Ping(_)) => Ok(Some(Inbound::Ping)),
            Some(client_message::Kind::CloseSession(_)) => Ok(Some(Inbound::Close)),
            Some(client_message::Kind::Request(request)) => Ok(Some(inbound_request(request))),
            Some(client_message::Kind::Handshake(_)) | None => Err(disconnect(
                Code::BadArguments,
                CloseReason::protocol_violation,
                "a handshake may only be the first message".to_owned(),
            )),
        }
    }

    fn encode(&mut self, message: Outbound, buf: &mut BytesMut) {
        let message: ServerMessage = match message {
            Outbound::Granted(granted) => HandshakeReply {
                protocol_version: PROTOCOL_VERSION,
                outcome: Some(handshake_reply::Outcome::Granted(SessionGranted {
                    negotiated_timeout_ms: u32::try_from(granted.timeout.as_millis())
                        .unwrap_or(u32::MAX),
                    session_id: granted.session.as_u64(),
                    password: Bytes::copy_from_slice(granted.password.as_bytes()),
                    server_id: self.server_id,
                    reattached: granted.reattached,
                    zxid: granted.zxid,
                })),
            }
            .into(),
            Outbound::Refused { reason, detail } => HandshakeReply {
                protocol_version: PROTOCOL_VERSION,
                outcome: Some(handshake_reply::Outcome::Refused(HandshakeRefusal {
                    reason: refusal_reason(reason).into(),
                    detail,
                    min_supported_version: MIN_PROTOCOL_VERSION,
                    max_supported_version: MAX_PROTOCOL_VERSION,
                })),
            }
            .into(),
            Outbound::Pong { .. } => Pong {}.into(),
            Outbound::CloseAck { .. } => CloseAck {}.into(),
            Outbound::Reply { xid, zxid, result } => {
                let reply = Reply {
                    xid,
                    zxid,
                    result: Some(match result {
                        Ok(result) => op_result(result),
                        Err(error) => reply::Result::Error(op_error(error)),
                    }),
                };
                // The whole message counts, envelope included, as the framing
                // checks it.
                let message = ServerMessage::from(reply);
                let max_body = self.max_frame.saturating_sub(LENGTH_PREFIX_LEN);
                if message.encoded_len() > max_body {
                    Reply {
                        xid,
                        zxid,
                        result: Some(reply::Result::Error(op_error(OpError::new(
                            Code::TooLarge,
                            format!("the reply would exceed the {max_body}-byte frame limit"),
                        )))),
                    }
                    .into()
                } else {
                    message
                }
            }
            Outbound::Watch(event) => wire::WatchEvent {
                kind: event_kind(event.kind).into(),
                path: event.path.to_string(),
                zxid: event.zxid,
            }
            .into(),
            Outbound::Disconnect { code, detail } => Disconnect {
                reason: error_code(code).into(),
                detail,
            }
            .into(),
        };
        self.push(message, buf);
    }
}

fn inbound_request(request: wire::Request) -> Inbound {
    let xid = request.xid;
    let Some(op) = request.op else {
        // A newer client's operation: protobuf leaves the oneof unset. The
        // connection stays usable (session-wire's versioning rule).
        return Inbound::Refused {
            xid,
            kind: OpKind::unknown,
            error: OpError::new(
                Code::Unimplemented,
                "this server does not know the request's operation",
            ),
        };
    };
    let kind = op_kind(&op);
    let refused = |detail: String| Inbound::Refused {
        xid,
        kind,
        error: OpError::new(Code::BadArguments, detail),
    };
    if xid <= 0 {
        return refused(format!("xid {xid} is not positive"));
    }
    let operation = match op {
        request::Op::Create(create) => {
            let ephemeral = match NodeKind::try_from(create.kind) {
                Ok(NodeKind::Persistent) => false,
                Ok(NodeKind::Ephemeral) => true,
                _ => {
                    return refused(format!(
                        "node kind {} is neither persistent nor ephemeral",
                        create.kind
                    ));
                }
            };
            Operation::Create {
                path: create.path,
                // Copied, so a small node does not pin the connection's
                // (possibly large) receive buffer for its lifetime.
                data: Bytes::copy_from_slice(&create.data),
                mode: CreateMode::from_flags(ephemeral, create.sequential),
            }
        }
        request::Op::Delete(delete) => match expected_version(delete.expected_version) {
            Ok(version) => Operation::Delete {
                path: delete.path,
                version,
            },
            Err(detail) => return refused(detail),
        },
        request::Op::SetData(set) => match expected_version(set.expected_version) {
            Ok(version) => Operation::SetData {
                path: set.path,
                data: Bytes::copy_from_slice(&set.data),
                version,
            },
            Err(detail) => return refused(detail),
        },
        request::Op::GetData(get) => Operation::GetData {
            path: get.path,
            watch: get.watch,
        },
        request::Op::Exists(exists) => Operation::Exists {
            path: exists.path,
            watch: exists.watch,
        },
        request::Op::GetChildren(get) => Operation::GetChildren {
            path: get.path,
            watch: get.watch,
        },
        request::Op::SetWatches(set) => Operation::SetWatches {
            last_zxid_seen: set.last_zxid_seen,
            data: set.data_paths,
            exist: set.exist_paths,
            child: set.child_paths,
        },
        request::Op::Sync(sync) => Operation::Sync { path: sync.path },
    };
    Inbound::Request { xid, op: operation }
}

/// Absent, or ZooKeeper's -1, matches any version; below -1 is malformed.
fn expected_version(raw: Option<i32>) -> Result<Option<i32>, String> {
    match raw {
        None | Some(-1) => Ok(None),
        Some(version) if version < -1 => Err(format!(
            "expected version {version} is below -1 (-1 or absent means any version)"
        )),
        Some(version) => Ok(Some(version)),
    }
}

fn op_kind(op: &request::Op) -> OpKind {
    match op {
        request::Op::Create(_) => OpKind::create,
        request::Op::Delete(_) => OpKind::delete,
        request::Op::GetData(_) => OpKind::get_data,
        request::Op::SetData(_) => OpKind::set_data,
        request::Op::Exists(_) => OpKind::exists,
        request::Op::GetChildren(_) => OpKind::get_children,
        request::Op::SetWatches(_) => OpKind::set_watches,
        request::Op::Sync(_) => OpKind::sync,
    }
}

fn op_result(result: OpResult) -> reply::Result {
    match result {
        OpResult::Create { path, stat } => reply::Result::Create(wire::CreateResult {
            path,
            stat: Some(wire_stat(&stat)),
        }),
        OpResult::Delete => reply::Result::Delete(wire::DeleteResult {}),
        OpResult::SetData { stat } => reply::Result::SetData(wire::SetDataResult {
            stat: Some(wire_stat(&stat)),
        }),
        OpResult::GetData { data, stat } => reply::Result::GetData(wire::GetDataResult {
            data,
            stat: Some(wire_stat(&stat)),
        }),
        OpResult::Exists { stat } => reply::Result::Exists(wire::ExistsResult {
            stat: stat.as_ref().map(wire_stat),
        }),
        OpResult::GetChildren { children, stat } => {
            reply::Result::GetChildren(wire::GetChildrenResult {
                children,
                stat: Some(wire_stat(&stat)),
            })
        }
        OpResult::SetWatches => reply::Result::SetWatches(wire::SetWatchesResult {}),
        OpResult::Sync { path } => reply::Result::Sync(wire::SyncResult { path }),
    }
}

fn op_error(error: OpError) -> wire::OpError {
    wire::OpError {
        code: error_code(error.code).into(),
        detail: error.detail,
    }
}

fn wire_stat(stat: &Stat) -> wire::Stat {
    wire::Stat {
        czxid: stat.czxid,
        mzxid: stat.mzxid,
        pzxid: stat.pzxid,
        ctime_ms: stat.ctime,
        mtime_ms: stat.mtime,
        version: stat.version,
        cversion: stat.cversion,
        ephemeral_owner: stat.ephemeral_owner,
        data_length: stat.data_length,
        num_children: stat.num_children,
    }
}

fn event_kind(kind: EventKind) -> wire::WatchEventKind {
    match kind {
        EventKind::NodeCreated => wire::WatchEventKind::NodeCreated,
        EventKind::NodeDeleted => wire::WatchEventKind::NodeDeleted,
        EventKind::NodeDataChanged => wire::WatchEventKind::NodeDataChanged,
        EventKind::NodeChildrenChanged => wire::WatchEventKind::NodeChildrenChanged,
    }
}

fn error_code(code: Code) -> ErrorCode {
    match code {
        Code::SessionExpired => ErrorCode::SessionExpired,
        Code::SessionMoved => ErrorCode::SessionMoved,
        Code::NoNode => ErrorCode::NoNode,
        Code::NodeExists => ErrorCode::NodeExists,
        Code::BadVersion => ErrorCode::BadVersion,
        Code::NotEmpty => ErrorCode::NotEmpty,
        Code::NoChildrenForEphemerals => ErrorCode::NoChildrenForEphemerals,
        Code::InvalidPath => ErrorCode::InvalidPath,
        Code::TooLarge => ErrorCode::TooLarge,
        Code::TooManyEphemerals => ErrorCode::TooManyEphemerals,
        Code::TooManyWatches => ErrorCode::TooManyWatches,
        Code::QuotaExceeded => ErrorCode::QuotaExceeded,
        Code::BadArguments => ErrorCode::BadArguments,
        Code::Unimplemented => ErrorCode::Unimplemented,
        Code::ShuttingDown => ErrorCode::ServerShuttingDown,
        Code::Unavailable => ErrorCode::Unavailable,
        Code::SystemError => ErrorCode::SystemError,
    }
}

fn refusal_reason(reason: Refusal) -> RefusalReason {
    match reason {
        Refusal::Expired => RefusalReason::Expired,
        Refusal::AuthFailed => RefusalReason::AuthFailed,
        Refusal::UnsupportedVersion => RefusalReason::UnsupportedVersion,
        Refusal::TooManyConnections => RefusalReason::TooManyConnections,
        Refusal::ZxidAhead => RefusalReason::ZxidAhead,
        Refusal::BadHandshake => RefusalReason::BadHandshake,
        Refusal::ShuttingDown => RefusalReason::ShuttingDown,
        Refusal::Unavailable => RefusalReason::Unavailable,
    }
}
