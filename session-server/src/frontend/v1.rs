//! The v1 frontend: `session-wire`'s protobuf protocol (4-byte big-endian
//! length, then one `ClientMessage` or `ServerMessage`). Its wire format is
//! the one `session-client` speaks; this module only translates.

use bytes::{Bytes, BytesMut};
use prost::Message;
use session_core::{
    Acl, CreateMode, EventKind, Id, MultiOp, SessionId, SessionPassword, Stat, WatcherType,
};
use session_wire::v1::{
    self as wire, ClientMessage, CloseAck, Disconnect, ErrorCode, HandshakeRefusal, HandshakeReply,
    NodeKind, Pong, RefusalReason, Reply, ServerMessage, SessionGranted, client_message,
    handshake_reply, multi_op, multi_op_result, read_op, read_op_result, reply, request,
};
use session_wire::{
    LENGTH_PREFIX_LEN, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, ServerCodec,
    expect_handshake,
};
use tokio_util::codec::{Decoder, Encoder};

use super::{
    Code, Frontend, Handshake, Inbound, OpError, OpResult, Operation, Outbound, ReadOp, Refusal,
    Violation, client_label,
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
                        Ok(result) => op_result(xid, result),
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
    if xid <= 0 {
        return Inbound::Refused {
            xid,
            kind,
            error: bad_arguments(format!("xid {xid} is not positive")),
        };
    }
    match operation(op) {
        Ok(op) => Inbound::Request { xid, op },
        Err(error) => Inbound::Refused { xid, kind, error },
    }
}

/// The neutral operation of a request, or why it cannot be carried out.
fn operation(op: request::Op) -> Result<Operation, OpError> {
    Ok(match op {
        request::Op::Create(create) => {
            let (path, data, mode, acl) = create_parts(create)?;
            Operation::Create {
                path,
                data,
                mode,
                acl,
            }
        }
        request::Op::Delete(delete) => Operation::Delete {
            path: delete.path,
            version: expected_version(delete.expected_version)?,
        },
        request::Op::SetData(set) => Operation::SetData {
            path: set.path,
            data: Bytes::copy_from_slice(&set.data),
            version: expected_version(set.expected_version)?,
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
            persistent: set.persistent_paths,
            recursive: set.persistent_recursive_paths,
        },
        request::Op::Sync(sync) => Operation::Sync { path: sync.path },
        request::Op::GetAcl(get) => Operation::GetAcl { path: get.path },
        request::Op::SetAcl(set) => Operation::SetAcl {
            path: set.path,
            // An empty list stays empty: SetAcl refuses it (INVALID_ACL), as
            // ZooKeeper's does; only Create reads empty as open.
            acl: acl_list(set.acl)?,
            version: expected_version(set.expected_version)?,
        },
        request::Op::Multi(multi) => Operation::Multi {
            ops: multi
                .ops
                .into_iter()
                .enumerate()
                .map(|(index, op)| multi_op(index, op))
                .collect::<Result<_, _>>()?,
        },
        request::Op::MultiRead(multi) => Operation::MultiRead {
            ops: multi
                .ops
                .into_iter()
                .enumerate()
                .map(|(index, op)| read_op(index, op))
                .collect::<Result<_, _>>()?,
        },
        request::Op::GetEphemerals(get) => Operation::GetEphemerals { prefix: get.prefix },
        request::Op::CountDescendants(count) => Operation::CountDescendants { path: count.path },
        request::Op::AddWatch(add) => Operation::AddWatch {
            path: add.path,
            recursive: add.recursive,
        },
        request::Op::RemoveWatches(remove) => Operation::RemoveWatches {
            path: remove.path,
            kind: watcher_type(remove.watcher_type)?,
        },
        request::Op::CheckWatches(check) => Operation::CheckWatches {
            path: check.path,
            kind: watcher_type(check.watcher_type)?,
        },
        request::Op::AddAuth(auth) => Operation::AddAuth {
            scheme: auth.scheme,
            credential: Bytes::copy_from_slice(&auth.credential),
        },
        request::Op::WhoAmI(_) => Operation::WhoAmI,
    })
}

fn bad_arguments(detail: String) -> OpError {
    OpError::new(Code::BadArguments, detail)
}

/// A Create's path, data, mode and access control list. The kind and the
/// TTL must agree (a TTL only for a TTL node, a container never
/// sequential); the TTL's range is the core's to check.
fn create_parts(create: wire::Create) -> Result<(String, Bytes, CreateMode, Vec<Acl>), OpError> {
    let kind = NodeKind::try_from(create.kind);
    if create.ttl_ms != 0 && kind != Ok(NodeKind::Ttl) {
        return Err(bad_arguments(format!(
            "ttl_ms {} is given to a node of kind {}, not a TTL node",
            create.ttl_ms, create.kind
        )));
    }
    let mode = match kind {
        Ok(NodeKind::Persistent) => CreateMode::from_flags(false, create.sequential),
        Ok(NodeKind::Ephemeral) => CreateMode::from_flags(true, create.sequential),
        Ok(NodeKind::Container) if create.sequential => {
            return Err(bad_arguments(
                "a container node cannot be sequential".to_owned(),
            ));
        }
        Ok(NodeKind::Container) => CreateMode::Container,
        Ok(NodeKind::Ttl) if create.ttl_ms == 0 => {
            return Err(bad_arguments("a TTL node needs ttl_ms above 0".to_owned()));
        }
        Ok(NodeKind::Ttl) if create.sequential => CreateMode::PersistentSequentialWithTtl {
            ttl_ms: create.ttl_ms,
        },
        Ok(NodeKind::Ttl) => CreateMode::PersistentWithTtl {
            ttl_ms: create.ttl_ms,
        },
        Ok(NodeKind::Unspecified) | Err(_) => {
            return Err(bad_arguments(format!(
                "node kind {} is not persistent, ephemeral, container or TTL",
                create.kind
            )));
        }
    };
    // v1 has always created open nodes when no list is given.
    let acl = if create.acl.is_empty() {
        Acl::open()
    } else {
        acl_list(create.acl)?
    };
    Ok((
        create.path,
        // Copied, so a small node does not pin the connection's (possibly
        // large) receive buffer for its lifetime.
        Bytes::copy_from_slice(&create.data),
        mode,
        acl,
    ))
}

/// The wire's entries as the core's; an entry without an id cannot be
/// stored (INVALID_ACL).
fn acl_list(acl: Vec<wire::Acl>) -> Result<Vec<Acl>, OpError> {
    acl.into_iter()
        .map(|entry| match entry.id {
            Some(id) => Ok(Acl::new(entry.perms, Id::new(id.scheme, id.id))),
            None => Err(OpError::new(
                Code::InvalidAcl,
                format!(
                    "an ACL entry with permissions {:#x} names no id",
                    entry.perms
                ),
            )),
        })
        .collect()
}

fn multi_op(index: usize, op: wire::MultiOp) -> Result<MultiOp, OpError> {
    Ok(match op.op {
        Some(multi_op::Op::Create(create)) => {
            let (path, data, mode, acl) = create_parts(create)?;
            MultiOp::Create {
                path,
                data,
                mode,
                acl,
            }
        }
        Some(multi_op::Op::Delete(delete)) => MultiOp::Delete {
            path: delete.path,
            version: expected_version(delete.expected_version)?,
        },
        Some(multi_op::Op::SetData(set)) => MultiOp::SetData {
            path: set.path,
            data: Bytes::copy_from_slice(&set.data),
            version: expected_version(set.expected_version)?,
        },
        Some(multi_op::Op::Check(check)) => MultiOp::Check {
            path: check.path,
            version: expected_version(check.expected_version)?,
        },
        None => {
            return Err(bad_arguments(format!(
                "operation {index} of the multi is one this server does not know"
            )));
        }
    })
}

/// A MultiRead's read; the reads' watch flags are ignored, as ZooKeeper's
/// are.
fn read_op(index: usize, op: wire::ReadOp) -> Result<ReadOp, OpError> {
    match op.op {
        Some(read_op::Op::GetData(get)) => Ok(ReadOp::GetData { path: get.path }),
        Some(read_op::Op::GetChildren(get)) => Ok(ReadOp::GetChildren { path: get.path }),
        None => Err(bad_arguments(format!(
            "read {index} of the multi-read is one this server does not know"
        ))),
    }
}

fn watcher_type(raw: i32) -> Result<WatcherType, OpError> {
    WatcherType::from_wire(raw)
        .ok_or_else(|| bad_arguments(format!("watcher type {raw} is not 1 to 5")))
}

/// Absent, or ZooKeeper's -1, matches any version; below -1 is malformed.
fn expected_version(raw: Option<i32>) -> Result<Option<i32>, OpError> {
    match raw {
        None | Some(-1) => Ok(None),
        Some(version) if version < -1 => Err(bad_arguments(format!(
            "expected version {version} is below -1 (-1 or absent means any version)"
        ))),
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
        request::Op::GetAcl(_) => OpKind::get_acl,
        request::Op::SetAcl(_) => OpKind::set_acl,
        request::Op::Multi(_) => OpKind::multi,
        request::Op::MultiRead(_) => OpKind::multi_read,
        request::Op::GetEphemerals(_) => OpKind::get_ephemerals,
        request::Op::CountDescendants(_) => OpKind::count_descendants,
        request::Op::AddWatch(_) => OpKind::add_watch,
        // As Operation::kind counts them.
        request::Op::RemoveWatches(_) | request::Op::CheckWatches(_) => OpKind::remove_watches,
        request::Op::AddAuth(_) => OpKind::auth,
        request::Op::WhoAmI(_) => OpKind::who_am_i,
    }
}

/// The reply to a successful request.
fn op_result(xid: i32, result: OpResult) -> reply::Result {
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
        OpResult::GetAcl { acl, stat } => reply::Result::GetAcl(wire::GetAclResult {
            acl: acl.into_iter().map(wire_acl).collect(),
            stat: Some(wire_stat(&stat)),
        }),
        OpResult::SetAcl { stat } => reply::Result::SetAcl(wire::SetAclResult {
            stat: Some(wire_stat(&stat)),
        }),
        OpResult::Multi { results } => reply::Result::Multi(wire::MultiResult {
            results: results.into_iter().map(multi_op_result).collect(),
        }),
        OpResult::MultiRead { results } => reply::Result::MultiRead(wire::MultiReadResult {
            results: results.into_iter().map(read_op_result).collect(),
        }),
        OpResult::GetEphemerals { paths } => {
            reply::Result::GetEphemerals(wire::GetEphemeralsResult { paths })
        }
        OpResult::CountDescendants { count } => {
            reply::Result::CountDescendants(wire::CountDescendantsResult {
                count: u64::try_from(count).unwrap_or(u64::MAX),
            })
        }
        OpResult::WhoAmI { ids } => reply::Result::WhoAmI(wire::WhoAmIResult {
            ids: ids.into_iter().map(wire_id).collect(),
        }),
        OpResult::WatchAdded => reply::Result::AddWatch(wire::AddWatchResult {}),
        OpResult::WatchesRemoved => reply::Result::RemoveWatches(wire::RemoveWatchesResult {}),
        OpResult::WatchesChecked => reply::Result::CheckWatches(wire::CheckWatchesResult {}),
        OpResult::Authenticated => reply::Result::AddAuth(wire::AddAuthResult {}),
        OpResult::SaslAnswered => misplaced(xid, "a SASL answer (v1 has no SASL)"),
        OpResult::Checked => misplaced(xid, "a check's result outside a multi"),
    }
}

/// A result the request could not have had: a bug in the server, answered
/// as one rather than with a body the client would misread.
fn misplaced(xid: i32, what: &str) -> reply::Result {
    tracing::error!(xid, what, "no v1 result for this request");
    reply::Result::Error(op_error(OpError::new(
        Code::SystemError,
        format!("the server produced {what} for request {xid}"),
    )))
}

/// One operation's entry in a MultiResult. A failed multi has an error in
/// every entry, `Ok` and `RuntimeInconsistency` included.
fn multi_op_result(result: Result<OpResult, Code>) -> wire::MultiOpResult {
    use multi_op_result::Result as R;
    let result = match result {
        Ok(OpResult::Create { path, stat }) => R::Create(wire::CreateResult {
            path,
            stat: Some(wire_stat(&stat)),
        }),
        Ok(OpResult::Delete) => R::Delete(wire::DeleteResult {}),
        Ok(OpResult::SetData { stat }) => R::SetData(wire::SetDataResult {
            stat: Some(wire_stat(&stat)),
        }),
        Ok(OpResult::Checked) => R::Check(wire::CheckResult {}),
        Ok(other) => {
            tracing::error!(result = ?other, "a multi's operation has a result no write has");
            R::Error(multi_error(Code::SystemError))
        }
        Err(code) => R::Error(multi_error(code)),
    };
    wire::MultiOpResult {
        result: Some(result),
    }
}

fn multi_error(code: Code) -> wire::OpError {
    let detail = match code {
        Code::Ok => "not applied: another operation of the multi failed",
        Code::RuntimeInconsistency => "not attempted: an earlier operation of the multi failed",
        // The client knows the operation's path and says it.
        _ => "",
    };
    op_error(OpError::new(code, detail))
}

fn read_op_result(result: Result<OpResult, Code>) -> wire::ReadOpResult {
    use read_op_result::Result as R;
    let result = match result {
        Ok(OpResult::GetData { data, stat }) => R::GetData(wire::GetDataResult {
            data,
            stat: Some(wire_stat(&stat)),
        }),
        Ok(OpResult::GetChildren { children, stat }) => R::GetChildren(wire::GetChildrenResult {
            children,
            stat: Some(wire_stat(&stat)),
        }),
        Ok(other) => {
            tracing::error!(result = ?other, "a multi-read's read has a result no read has");
            R::Error(op_error(OpError::new(
                Code::SystemError,
                "the server produced a result no read has",
            )))
        }
        Err(code) => R::Error(op_error(OpError::new(code, String::new()))),
    };
    wire::ReadOpResult {
        result: Some(result),
    }
}

fn wire_acl(acl: Acl) -> wire::Acl {
    wire::Acl {
        perms: acl.perms,
        id: Some(wire_id(acl.id)),
    }
}

fn wire_id(id: Id) -> wire::Id {
    wire::Id {
        scheme: id.scheme,
        id: id.id,
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
        aversion: stat.aversion,
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
        Code::Unimplemented | Code::ReconfigDisabled => ErrorCode::Unimplemented,
        Code::ShuttingDown => ErrorCode::ServerShuttingDown,
        Code::Unavailable => ErrorCode::Unavailable,
        Code::SystemError => ErrorCode::SystemError,
        Code::NoAuth => ErrorCode::NoAuth,
        Code::InvalidAcl => ErrorCode::InvalidAcl,
        Code::AuthFailed => ErrorCode::AuthFailed,
        Code::NoWatcher => ErrorCode::NoWatcher,
        Code::RuntimeInconsistency => ErrorCode::RuntimeInconsistency,
        Code::Ok => ErrorCode::Ok,
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

#[cfg(test)]
mod tests {
    use session_core::perms;
    use session_wire::encode;

    use super::*;

    fn frontend() -> V1 {
        V1::new(session_wire::DEFAULT_MAX_FRAME_LEN as usize, 1)
    }

    /// Decodes one request frame carrying `op` with `xid`.
    fn decoded(frontend: &mut V1, xid: i32, op: request::Op) -> Inbound {
        let message = ClientMessage::from(wire::Request { xid, op: Some(op) });
        let mut buf = BytesMut::new();
        encode(&message, session_wire::DEFAULT_MAX_FRAME_LEN, &mut buf).expect("a small frame");
        match frontend.decode(&mut buf) {
            Ok(Some(inbound)) => inbound,
            other => panic!("a whole request decodes: {other:?}"),
        }
    }

    fn operation_of(op: request::Op) -> Operation {
        match decoded(&mut frontend(), 7, op) {
            Inbound::Request { xid: 7, op } => op,
            other => panic!("a request: {other:?}"),
        }
    }

    fn refusal_of(op: request::Op) -> (OpKind, Code, String) {
        match decoded(&mut frontend(), 7, op) {
            Inbound::Refused {
                xid: 7,
                kind,
                error,
            } => (kind, error.code, error.detail),
            other => panic!("a refusal: {other:?}"),
        }
    }

    /// The reply the frontend writes for `result` to request `xid`.
    fn reply_to(frontend: &mut V1, xid: i32, result: Result<OpResult, OpError>) -> reply::Result {
        let mut buf = BytesMut::new();
        frontend.encode(
            Outbound::Reply {
                xid,
                zxid: 9,
                result,
            },
            &mut buf,
        );
        let mut decoder = session_wire::FrameDecoder::new();
        decoder.push(&buf);
        let message: ServerMessage = decoder
            .next_message()
            .expect("a valid frame")
            .expect("a whole frame");
        match message.kind {
            Some(session_wire::v1::server_message::Kind::Reply(reply)) => {
                assert_eq!((reply.xid, reply.zxid), (xid, 9));
                reply.result.expect("a reply has a result")
            }
            other => panic!("a reply: {other:?}"),
        }
    }

    fn wire_acl_of(perms: u32, scheme: &str, id: &str) -> wire::Acl {
        wire::Acl {
            perms,
            id: Some(wire::Id {
                scheme: scheme.to_owned(),
                id: id.to_owned(),
            }),
        }
    }

    fn create(kind: NodeKind, sequential: bool, ttl_ms: u64) -> wire::Create {
        wire::Create {
            path: "/n".to_owned(),
            data: Bytes::from_static(b"d"),
            kind: kind.into(),
            sequential,
            acl: Vec::new(),
            ttl_ms,
        }
    }

    fn stat(aversion: i32) -> Stat {
        Stat {
            czxid: 1,
            version: 2,
            aversion,
            ..Stat::default()
        }
    }

    #[test]
    fn creates_carry_every_kind_and_an_acl_open_when_empty() {
        for (kind, sequential, ttl_ms, mode) in [
            (NodeKind::Persistent, false, 0, CreateMode::Persistent),
            (
                NodeKind::Ephemeral,
                true,
                0,
                CreateMode::EphemeralSequential,
            ),
            (NodeKind::Container, false, 0, CreateMode::Container),
            (
                NodeKind::Ttl,
                false,
                5000,
                CreateMode::PersistentWithTtl { ttl_ms: 5000 },
            ),
            (
                NodeKind::Ttl,
                true,
                1,
                CreateMode::PersistentSequentialWithTtl { ttl_ms: 1 },
            ),
        ] {
            let op = operation_of(request::Op::Create(create(kind, sequential, ttl_ms)));
            let Operation::Create {
                path,
                data,
                mode: got,
                acl,
            } = op
            else {
                panic!("a create: {op:?}");
            };
            assert_eq!((path.as_str(), &data[..], got), ("/n", &b"d"[..], mode));
            assert_eq!(acl, Acl::open(), "{kind:?}: no list given is open");
        }

        let mut given = create(NodeKind::Persistent, false, 0);
        given.acl = vec![
            wire_acl_of(perms::READ, "world", "anyone"),
            wire_acl_of(perms::ALL, "digest", "alice:hash"),
        ];
        let Operation::Create { acl, .. } = operation_of(request::Op::Create(given)) else {
            panic!("a create");
        };
        assert_eq!(
            acl,
            vec![
                Acl::new(perms::READ, Id::anyone()),
                Acl::new(perms::ALL, Id::new("digest", "alice:hash")),
            ]
        );
    }

    #[test]
    fn creates_whose_kind_and_ttl_disagree_are_refused() {
        for (create, says) in [
            (create(NodeKind::Container, true, 0), "cannot be sequential"),
            (create(NodeKind::Ttl, false, 0), "needs ttl_ms above 0"),
            (create(NodeKind::Persistent, false, 10), "not a TTL node"),
            (create(NodeKind::Ephemeral, false, 10), "not a TTL node"),
            (create(NodeKind::Unspecified, false, 0), "node kind 0"),
            (
                wire::Create {
                    kind: 99,
                    ..create(NodeKind::Persistent, false, 0)
                },
                "node kind 99",
            ),
        ] {
            let (kind, code, detail) = refusal_of(request::Op::Create(create));
            assert_eq!((kind, code), (OpKind::create, Code::BadArguments));
            assert!(detail.contains(says), "{detail:?} should say {says:?}");
        }
        let mut no_id = create(NodeKind::Persistent, false, 0);
        no_id.acl = vec![wire::Acl {
            perms: perms::READ,
            id: None,
        }];
        let (kind, code, detail) = refusal_of(request::Op::Create(no_id));
        assert_eq!((kind, code), (OpKind::create, Code::InvalidAcl));
        assert!(detail.contains("names no id"), "{detail}");
    }

    #[test]
    fn acl_requests_decode_with_the_acl_version() {
        let op = operation_of(request::Op::GetAcl(wire::GetAcl {
            path: "/a".to_owned(),
        }));
        assert!(matches!(op, Operation::GetAcl { path } if path == "/a"));

        let op = operation_of(request::Op::SetAcl(wire::SetAcl {
            path: "/a".to_owned(),
            acl: vec![wire_acl_of(perms::ADMIN, "ip", "10.0.0.0/8")],
            expected_version: Some(3),
        }));
        let Operation::SetAcl { path, acl, version } = op else {
            panic!("a setACL: {op:?}");
        };
        assert_eq!(path, "/a");
        assert_eq!(
            acl,
            vec![Acl::new(perms::ADMIN, Id::new("ip", "10.0.0.0/8"))]
        );
        assert_eq!(version, Some(3));

        // An empty list is not read as open here: the core refuses it.
        let op = operation_of(request::Op::SetAcl(wire::SetAcl {
            path: "/a".to_owned(),
            acl: Vec::new(),
            expected_version: Some(-1),
        }));
        assert!(matches!(op, Operation::SetAcl { acl, version: None, .. } if acl.is_empty()));

        let (kind, code, _) = refusal_of(request::Op::SetAcl(wire::SetAcl {
            path: "/a".to_owned(),
            acl: Vec::new(),
            expected_version: Some(-2),
        }));
        assert_eq!((kind, code), (OpKind::set_acl, Code::BadArguments));
    }

    #[test]
    fn multis_decode_op_by_op_and_an_unknown_op_refuses_them_whole() {
        let ops = vec![
            wire::MultiOp {
                op: Some(multi_op::Op::Create(create(NodeKind::Container, false, 0))),
            },
            wire::MultiOp {
                op: Some(multi_op::Op::SetData(wire::SetData {
                    path: "/n".to_owned(),
                    data: Bytes::from_static(b"x"),
                    expected_version: Some(0),
                })),
            },
            wire::MultiOp {
                op: Some(multi_op::Op::Check(wire::Check {
                    path: "/n".to_owned(),
                    expected_version: None,
                })),
            },
            wire::MultiOp {
                op: Some(multi_op::Op::Delete(wire::Delete {
                    path: "/n".to_owned(),
                    expected_version: Some(-1),
                })),
            },
        ];
        let op = operation_of(request::Op::Multi(wire::Multi { ops: ops.clone() }));
        let Operation::Multi { ops: got } = op else {
            panic!("a multi: {op:?}");
        };
        assert_eq!(
            got,
            vec![
                MultiOp::Create {
                    path: "/n".to_owned(),
                    data: Bytes::from_static(b"d"),
                    mode: CreateMode::Container,
                    acl: Acl::open(),
                },
                MultiOp::SetData {
                    path: "/n".to_owned(),
                    data: Bytes::from_static(b"x"),
                    version: Some(0),
                },
                MultiOp::Check {
                    path: "/n".to_owned(),
                    version: None,
                },
                MultiOp::Delete {
                    path: "/n".to_owned(),
                    version: None,
                },
            ]
        );

        let mut unknown = ops;
        unknown.insert(1, wire::MultiOp { op: None });
        let (kind, code, detail) = refusal_of(request::Op::Multi(wire::Multi { ops: unknown }));
        assert_eq!((kind, code), (OpKind::multi, Code::BadArguments));
        assert!(detail.contains("operation 1"), "{detail}");

        let op = operation_of(request::Op::MultiRead(wire::MultiRead {
            ops: vec![
                wire::ReadOp {
                    op: Some(read_op::Op::GetData(wire::GetData {
                        path: "/a".to_owned(),
                        watch: true,
                    })),
                },
                wire::ReadOp {
                    op: Some(read_op::Op::GetChildren(wire::GetChildren {
                        path: "/b".to_owned(),
                        watch: false,
                    })),
                },
            ],
        }));
        let Operation::MultiRead { ops } = op else {
            panic!("a multi-read: {op:?}");
        };
        assert!(
            matches!(&ops[..], [ReadOp::GetData { path: a }, ReadOp::GetChildren { path: b }] if a == "/a" && b == "/b"),
            "{ops:?}"
        );
        let (kind, code, _) = refusal_of(request::Op::MultiRead(wire::MultiRead {
            ops: vec![wire::ReadOp { op: None }],
        }));
        assert_eq!((kind, code), (OpKind::multi_read, Code::BadArguments));
    }

    #[test]
    fn watch_auth_and_listing_requests_decode() {
        let op = operation_of(request::Op::AddWatch(wire::AddWatch {
            path: "/w".to_owned(),
            recursive: true,
        }));
        assert!(matches!(op, Operation::AddWatch { path, recursive: true } if path == "/w"));
        for raw in 1..=5 {
            let op = operation_of(request::Op::RemoveWatches(wire::RemoveWatches {
                path: "/w".to_owned(),
                watcher_type: raw,
            }));
            assert!(
                matches!(op, Operation::RemoveWatches { kind, .. } if kind.as_wire() == raw),
                "{raw}"
            );
            let op = operation_of(request::Op::CheckWatches(wire::CheckWatches {
                path: "/w".to_owned(),
                watcher_type: raw,
            }));
            assert!(
                matches!(op, Operation::CheckWatches { kind, .. } if kind.as_wire() == raw),
                "{raw}"
            );
        }
        for raw in [0, 6, -1] {
            let (kind, code, _) = refusal_of(request::Op::CheckWatches(wire::CheckWatches {
                path: "/w".to_owned(),
                watcher_type: raw,
            }));
            assert_eq!((kind, code), (OpKind::remove_watches, Code::BadArguments));
        }
        let op = operation_of(request::Op::AddAuth(wire::AddAuth {
            scheme: "digest".to_owned(),
            credential: Bytes::from_static(b"alice:secret"),
        }));
        assert!(
            matches!(&op, Operation::AddAuth { scheme, credential } if scheme == "digest" && &credential[..] == b"alice:secret"),
            "{op:?}"
        );
        assert!(matches!(
            operation_of(request::Op::WhoAmI(wire::WhoAmI {})),
            Operation::WhoAmI
        ));
        let op = operation_of(request::Op::GetEphemerals(wire::GetEphemerals {
            prefix: "/services/web-".to_owned(),
        }));
        assert!(matches!(op, Operation::GetEphemerals { prefix } if prefix == "/services/web-"));
        let op = operation_of(request::Op::CountDescendants(wire::CountDescendants {
            path: "/".to_owned(),
        }));
        assert!(matches!(op, Operation::CountDescendants { path } if path == "/"));
        let op = operation_of(request::Op::SetWatches(wire::SetWatches {
            last_zxid_seen: 4,
            persistent_paths: vec!["/p".to_owned()],
            persistent_recursive_paths: vec!["/r".to_owned()],
            ..wire::SetWatches::default()
        }));
        let Operation::SetWatches {
            last_zxid_seen,
            persistent,
            recursive,
            ..
        } = op
        else {
            panic!("a setWatches: {op:?}");
        };
        assert_eq!(
            (last_zxid_seen, persistent, recursive),
            (4, vec!["/p".to_owned()], vec!["/r".to_owned()])
        );
    }

    #[test]
    fn empty_results_answer_with_the_result_of_their_request() {
        let mut frontend = frontend();
        for (result, expected) in [
            (
                OpResult::WatchAdded,
                reply::Result::AddWatch(wire::AddWatchResult {}),
            ),
            (
                OpResult::WatchesRemoved,
                reply::Result::RemoveWatches(wire::RemoveWatchesResult {}),
            ),
            (
                OpResult::WatchesChecked,
                reply::Result::CheckWatches(wire::CheckWatchesResult {}),
            ),
            (
                OpResult::Authenticated,
                reply::Result::AddAuth(wire::AddAuthResult {}),
            ),
        ] {
            assert_eq!(reply_to(&mut frontend, 1, Ok(result)), expected);
        }
        // A SASL answer on v1 is the server's bug, said as one.
        let stray = reply_to(&mut frontend, 2, Ok(OpResult::SaslAnswered));
        assert!(
            matches!(&stray, reply::Result::Error(error) if error.code() == ErrorCode::SystemError),
            "{stray:?}"
        );
    }

    #[test]
    fn new_results_encode_field_by_field() {
        let mut frontend = frontend();
        let got = reply_to(
            &mut frontend,
            1,
            Ok(OpResult::GetAcl {
                acl: vec![Acl::new(perms::READ, Id::anyone())],
                stat: stat(4),
            }),
        );
        let reply::Result::GetAcl(got) = got else {
            panic!("a getACL result: {got:?}");
        };
        assert_eq!(got.acl, vec![wire_acl_of(perms::READ, "world", "anyone")]);
        assert_eq!(
            got.stat.map(|stat| (stat.aversion, stat.version)),
            Some((4, 2))
        );

        let got = reply_to(&mut frontend, 1, Ok(OpResult::SetAcl { stat: stat(5) }));
        assert!(
            matches!(&got, reply::Result::SetAcl(set) if set.stat.as_ref().map(|s| s.aversion) == Some(5)),
            "{got:?}"
        );

        assert_eq!(
            reply_to(
                &mut frontend,
                1,
                Ok(OpResult::GetEphemerals {
                    paths: vec!["/e1".to_owned(), "/e2".to_owned()]
                })
            ),
            reply::Result::GetEphemerals(wire::GetEphemeralsResult {
                paths: vec!["/e1".to_owned(), "/e2".to_owned()]
            })
        );
        assert_eq!(
            reply_to(
                &mut frontend,
                1,
                Ok(OpResult::CountDescendants { count: 12 })
            ),
            reply::Result::CountDescendants(wire::CountDescendantsResult { count: 12 })
        );
        assert_eq!(
            reply_to(
                &mut frontend,
                1,
                Ok(OpResult::WhoAmI {
                    ids: vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "a:h")]
                })
            ),
            reply::Result::WhoAmI(wire::WhoAmIResult {
                ids: vec![
                    wire::Id {
                        scheme: "ip".to_owned(),
                        id: "127.0.0.1".to_owned()
                    },
                    wire::Id {
                        scheme: "digest".to_owned(),
                        id: "a:h".to_owned()
                    },
                ]
            })
        );
    }

    #[test]
    fn multi_results_keep_zookeepers_codes_op_by_op() {
        let mut frontend = frontend();
        let applied = reply_to(
            &mut frontend,
            1,
            Ok(OpResult::Multi {
                results: vec![
                    Ok(OpResult::Create {
                        path: "/q/0000000001".to_owned(),
                        stat: stat(0),
                    }),
                    Ok(OpResult::SetData { stat: stat(0) }),
                    Ok(OpResult::Checked),
                    Ok(OpResult::Delete),
                ],
            }),
        );
        let reply::Result::Multi(applied) = applied else {
            panic!("a multi result: {applied:?}");
        };
        let kinds: Vec<_> = applied
            .results
            .into_iter()
            .map(|result| result.result.expect("every entry has a result"))
            .collect();
        assert!(
            matches!(
                &kinds[..],
                [
                    multi_op_result::Result::Create(created),
                    multi_op_result::Result::SetData(_),
                    multi_op_result::Result::Check(_),
                    multi_op_result::Result::Delete(_),
                ] if created.path == "/q/0000000001"
            ),
            "{kinds:?}"
        );

        let failed = reply_to(
            &mut frontend,
            2,
            Ok(OpResult::Multi {
                results: vec![
                    Err(Code::Ok),
                    Err(Code::NoAuth),
                    Err(Code::RuntimeInconsistency),
                ],
            }),
        );
        let reply::Result::Multi(failed) = failed else {
            panic!("a multi result: {failed:?}");
        };
        let codes: Vec<_> = failed
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(multi_op_result::Result::Error(error)) => error.code(),
                other => panic!("a failed multi has errors only: {other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            [
                ErrorCode::Ok,
                ErrorCode::NoAuth,
                ErrorCode::RuntimeInconsistency
            ]
        );

        let read = reply_to(
            &mut frontend,
            3,
            Ok(OpResult::MultiRead {
                results: vec![
                    Ok(OpResult::GetData {
                        data: Bytes::from_static(b"v"),
                        stat: stat(0),
                    }),
                    Err(Code::NoNode),
                    Ok(OpResult::GetChildren {
                        children: vec!["c".to_owned()],
                        stat: stat(0),
                    }),
                ],
            }),
        );
        let reply::Result::MultiRead(read) = read else {
            panic!("a multi-read result: {read:?}");
        };
        let results: Vec<_> = read
            .results
            .into_iter()
            .map(|result| result.result.expect("every read has a result"))
            .collect();
        assert!(
            matches!(
                &results[..],
                [
                    read_op_result::Result::GetData(data),
                    read_op_result::Result::Error(error),
                    read_op_result::Result::GetChildren(children),
                ] if &data.data[..] == b"v"
                    && error.code() == ErrorCode::NoNode
                    && children.children == ["c"]
            ),
            "{results:?}"
        );
    }

    #[test]
    fn every_neutral_code_has_a_v1_code() {
        for (code, expected) in [
            (Code::NoAuth, ErrorCode::NoAuth),
            (Code::InvalidAcl, ErrorCode::InvalidAcl),
            (Code::AuthFailed, ErrorCode::AuthFailed),
            (Code::NoWatcher, ErrorCode::NoWatcher),
            (Code::RuntimeInconsistency, ErrorCode::RuntimeInconsistency),
            (Code::Ok, ErrorCode::Ok),
            (Code::NoNode, ErrorCode::NoNode),
        ] {
            assert_eq!(error_code(code), expected, "{code:?}");
        }
    }
}
