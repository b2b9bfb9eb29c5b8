//! Whole frame bodies after the handshake: requests by opcode, replies by
//! the opcode the client remembers for their xid, notifications, and the
//! frame encoders of both sides.

use bytes::{BufMut, Bytes, BytesMut};

use super::codes::{AUTH_XID, NOTIFICATION_XID, OpCode, PING_XID, SET_WATCHES_XID};
use super::jute::{JuteEncodeError, JuteError, JuteReader, JuteRecord, JuteWriter};
use super::multi::{MultiRequest, MultiResponse};
use super::records::{
    AddWatchRequest, AuthPacket, CheckVersionRequest, CheckWatchesRequest, Create2Response,
    CreateRequest, CreateResponse, CreateTtlRequest, DeleteContainerRequest, DeleteRequest,
    ErrorResponse, ExistsRequest, ExistsResponse, GetAclRequest, GetAclResponse,
    GetAllChildrenNumberRequest, GetAllChildrenNumberResponse, GetChildren2Request,
    GetChildren2Response, GetChildrenRequest, GetChildrenResponse, GetDataRequest, GetDataResponse,
    GetEphemeralsRequest, GetEphemeralsResponse, GetSaslRequest, ReconfigRequest,
    RemoveWatchesRequest, ReplyHeader, RequestHeader, SetAclRequest, SetAclResponse,
    SetDataRequest, SetDataResponse, SetSaslResponse, SetWatches, SetWatches2, SyncRequest,
    SyncResponse, WatcherEvent, WhoAmIResponse,
};

/// ZooKeeper's default `jute.maxbuffer`: 0xfffff = 1,048,575 bytes, one less
/// than 1 MiB. Both ZooKeeper's server (`NIOServerCnxn.readLength`) and its
/// Java client drop a connection whose frame length is negative or larger;
/// use it as the frame limit of a `FrameDecoder` and of the encoders here.
pub const JUTE_MAX_BUFFER: u32 = 0xf_ffff;

/// A request after the handshake, by opcode. Each variant names its opcode
/// and carries the record ZooKeeper reads for it (`FinalRequestProcessor`,
/// `PrepRequestProcessor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create (1).
    Create(CreateRequest),
    /// delete (2).
    Delete(DeleteRequest),
    /// exists (3).
    Exists(ExistsRequest),
    /// getData (4).
    GetData(GetDataRequest),
    /// setData (5).
    SetData(SetDataRequest),
    /// getACL (6).
    GetAcl(GetAclRequest),
    /// setACL (7).
    SetAcl(SetAclRequest),
    /// getChildren (8).
    GetChildren(GetChildrenRequest),
    /// sync (9).
    Sync(SyncRequest),
    /// ping (11): no body; the Java client sends it with xid -2.
    Ping,
    /// getChildren2 (12).
    GetChildren2(GetChildren2Request),
    /// check (13) outside a multi: ZooKeeper's `Request.isValid` refuses it
    /// (UNIMPLEMENTED); decoded so a server can answer.
    Check(CheckVersionRequest),
    /// multi (14): writes and checks.
    Multi(MultiRequest),
    /// create2 (15).
    Create2(CreateRequest),
    /// reconfig (16).
    Reconfig(ReconfigRequest),
    /// checkWatches (17).
    CheckWatches(CheckWatchesRequest),
    /// removeWatches (18).
    RemoveWatches(RemoveWatchesRequest),
    /// createContainer (19).
    CreateContainer(CreateRequest),
    /// deleteContainer (20): server-internal, but `Request.isValid` accepts
    /// it from clients.
    DeleteContainer(DeleteContainerRequest),
    /// createTTL (21).
    CreateTtl(CreateTtlRequest),
    /// multiRead (22): getData and getChildren.
    MultiRead(MultiRequest),
    /// auth (100): xid -4 from the Java client, a normal xid from the Rust
    /// `zookeeper-client`.
    Auth(AuthPacket),
    /// setWatches (101), xid -8.
    SetWatches(SetWatches),
    /// sasl (102).
    Sasl(GetSaslRequest),
    /// getEphemerals (103).
    GetEphemerals(GetEphemeralsRequest),
    /// getAllChildrenNumber (104).
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    /// setWatches2 (105), xid -8.
    SetWatches2(SetWatches2),
    /// addWatch (106).
    AddWatch(AddWatchRequest),
    /// whoAmI (107): no body.
    WhoAmI,
    /// closeSession (-11): no body.
    CloseSession,
}

impl Request {
    /// The request's opcode, written in its [`RequestHeader`].
    #[must_use]
    pub fn op_code(&self) -> OpCode {
        match self {
            Self::Create(_) => OpCode::Create,
            Self::Delete(_) => OpCode::Delete,
            Self::Exists(_) => OpCode::Exists,
            Self::GetData(_) => OpCode::GetData,
            Self::SetData(_) => OpCode::SetData,
            Self::GetAcl(_) => OpCode::GetAcl,
            Self::SetAcl(_) => OpCode::SetAcl,
            Self::GetChildren(_) => OpCode::GetChildren,
            Self::Sync(_) => OpCode::Sync,
            Self::Ping => OpCode::Ping,
            Self::GetChildren2(_) => OpCode::GetChildren2,
            Self::Check(_) => OpCode::Check,
            Self::Multi(_) => OpCode::Multi,
            Self::Create2(_) => OpCode::Create2,
            Self::Reconfig(_) => OpCode::Reconfig,
            Self::CheckWatches(_) => OpCode::CheckWatches,
            Self::RemoveWatches(_) => OpCode::RemoveWatches,
            Self::CreateContainer(_) => OpCode::CreateContainer,
            Self::DeleteContainer(_) => OpCode::DeleteContainer,
            Self::CreateTtl(_) => OpCode::CreateTtl,
            Self::MultiRead(_) => OpCode::MultiRead,
            Self::Auth(_) => OpCode::Auth,
            Self::SetWatches(_) => OpCode::SetWatches,
            Self::Sasl(_) => OpCode::Sasl,
            Self::GetEphemerals(_) => OpCode::GetEphemerals,
            Self::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Self::SetWatches2(_) => OpCode::SetWatches2,
            Self::AddWatch(_) => OpCode::AddWatch,
            Self::WhoAmI => OpCode::WhoAmI,
            Self::CloseSession => OpCode::CloseSession,
        }
    }

    /// Reads the body of a request with opcode `op`; `None` for the opcodes
    /// no client sends (notification, error, createSession).
    fn read(op: OpCode, reader: &mut JuteReader) -> Option<Result<Self, JuteError>> {
        Some(match op {
            OpCode::Create => CreateRequest::read(reader).map(Self::Create),
            OpCode::Delete => DeleteRequest::read(reader).map(Self::Delete),
            OpCode::Exists => ExistsRequest::read(reader).map(Self::Exists),
            OpCode::GetData => GetDataRequest::read(reader).map(Self::GetData),
            OpCode::SetData => SetDataRequest::read(reader).map(Self::SetData),
            OpCode::GetAcl => GetAclRequest::read(reader).map(Self::GetAcl),
            OpCode::SetAcl => SetAclRequest::read(reader).map(Self::SetAcl),
            OpCode::GetChildren => GetChildrenRequest::read(reader).map(Self::GetChildren),
            OpCode::Sync => SyncRequest::read(reader).map(Self::Sync),
            OpCode::Ping => Ok(Self::Ping),
            OpCode::GetChildren2 => GetChildren2Request::read(reader).map(Self::GetChildren2),
            OpCode::Check => CheckVersionRequest::read(reader).map(Self::Check),
            OpCode::Multi => MultiRequest::read(reader, false).map(Self::Multi),
            OpCode::Create2 => CreateRequest::read(reader).map(Self::Create2),
            OpCode::Reconfig => ReconfigRequest::read(reader).map(Self::Reconfig),
            OpCode::CheckWatches => CheckWatchesRequest::read(reader).map(Self::CheckWatches),
            OpCode::RemoveWatches => RemoveWatchesRequest::read(reader).map(Self::RemoveWatches),
            OpCode::CreateContainer => CreateRequest::read(reader).map(Self::CreateContainer),
            OpCode::DeleteContainer => {
                DeleteContainerRequest::read(reader).map(Self::DeleteContainer)
            }
            OpCode::CreateTtl => CreateTtlRequest::read(reader).map(Self::CreateTtl),
            OpCode::MultiRead => MultiRequest::read(reader, true).map(Self::MultiRead),
            OpCode::Auth => AuthPacket::read(reader).map(Self::Auth),
            OpCode::SetWatches => SetWatches::read(reader).map(Self::SetWatches),
            OpCode::Sasl => GetSaslRequest::read(reader).map(Self::Sasl),
            OpCode::GetEphemerals => GetEphemeralsRequest::read(reader).map(Self::GetEphemerals),
            OpCode::GetAllChildrenNumber => {
                GetAllChildrenNumberRequest::read(reader).map(Self::GetAllChildrenNumber)
            }
            OpCode::SetWatches2 => SetWatches2::read(reader).map(Self::SetWatches2),
            OpCode::AddWatch => AddWatchRequest::read(reader).map(Self::AddWatch),
            OpCode::WhoAmI => Ok(Self::WhoAmI),
            OpCode::CloseSession => Ok(Self::CloseSession),
            OpCode::Notification | OpCode::Error | OpCode::CreateSession => return None,
        })
    }

    /// Appends the request's body (not its header) to `writer`.
    pub fn write(&self, writer: &mut JuteWriter<'_>) {
        match self {
            Self::Create(body) | Self::Create2(body) | Self::CreateContainer(body) => {
                body.write(writer);
            }
            Self::Delete(body) => body.write(writer),
            Self::Exists(body) => body.write(writer),
            Self::GetData(body) => body.write(writer),
            Self::SetData(body) => body.write(writer),
            Self::GetAcl(body) => body.write(writer),
            Self::SetAcl(body) => body.write(writer),
            Self::GetChildren(body) => body.write(writer),
            Self::Sync(body) => body.write(writer),
            Self::Ping | Self::WhoAmI | Self::CloseSession => {}
            Self::GetChildren2(body) => body.write(writer),
            Self::Check(body) => body.write(writer),
            Self::Multi(body) | Self::MultiRead(body) => body.write(writer),
            Self::Reconfig(body) => body.write(writer),
            Self::CheckWatches(body) => body.write(writer),
            Self::RemoveWatches(body) => body.write(writer),
            Self::DeleteContainer(body) => body.write(writer),
            Self::CreateTtl(body) => body.write(writer),
            Self::Auth(body) => body.write(writer),
            Self::SetWatches(body) => body.write(writer),
            Self::Sasl(body) => body.write(writer),
            Self::GetEphemerals(body) => body.write(writer),
            Self::GetAllChildrenNumber(body) => body.write(writer),
            Self::SetWatches2(body) => body.write(writer),
            Self::AddWatch(body) => body.write(writer),
        }
    }
}

/// The body of a successful reply (`ReplyHeader.err` 0), by the opcode of
/// the request it answers (`FinalRequestProcessor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// No body: delete, deleteContainer, ping, auth, setWatches,
    /// setWatches2, checkWatches, removeWatches, closeSession.
    Empty,
    /// create.
    Create(CreateResponse),
    /// create2, createContainer, createTTL.
    Create2(Create2Response),
    /// exists.
    Exists(ExistsResponse),
    /// getData, and reconfig (the new config and its stat).
    GetData(GetDataResponse),
    /// setData, and check outside a multi on servers that accept it.
    SetData(SetDataResponse),
    /// getACL.
    GetAcl(GetAclResponse),
    /// setACL.
    SetAcl(SetAclResponse),
    /// getChildren.
    GetChildren(GetChildrenResponse),
    /// getChildren2.
    GetChildren2(GetChildren2Response),
    /// sync.
    Sync(SyncResponse),
    /// multi and multiRead.
    Multi(MultiResponse),
    /// sasl.
    Sasl(SetSaslResponse),
    /// getEphemerals.
    GetEphemerals(GetEphemeralsResponse),
    /// getAllChildrenNumber.
    GetAllChildrenNumber(GetAllChildrenNumberResponse),
    /// addWatch: always `ErrorResponse { err: 0 }`, 4 bytes.
    AddWatch(ErrorResponse),
    /// whoAmI.
    WhoAmI(WhoAmIResponse),
}

impl Response {
    /// Reads the body of a successful reply to a request with opcode `op`;
    /// `None` for the opcodes that are not requests.
    fn read(op: OpCode, reader: &mut JuteReader) -> Option<Result<Self, JuteError>> {
        Some(match op {
            OpCode::Delete
            | OpCode::DeleteContainer
            | OpCode::Ping
            | OpCode::Auth
            | OpCode::SetWatches
            | OpCode::SetWatches2
            | OpCode::CheckWatches
            | OpCode::RemoveWatches
            | OpCode::CloseSession => Ok(Self::Empty),
            OpCode::Create => CreateResponse::read(reader).map(Self::Create),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                Create2Response::read(reader).map(Self::Create2)
            }
            OpCode::Exists => ExistsResponse::read(reader).map(Self::Exists),
            OpCode::GetData | OpCode::Reconfig => GetDataResponse::read(reader).map(Self::GetData),
            OpCode::SetData | OpCode::Check => SetDataResponse::read(reader).map(Self::SetData),
            OpCode::GetAcl => GetAclResponse::read(reader).map(Self::GetAcl),
            OpCode::SetAcl => SetAclResponse::read(reader).map(Self::SetAcl),
            OpCode::GetChildren => GetChildrenResponse::read(reader).map(Self::GetChildren),
            OpCode::GetChildren2 => GetChildren2Response::read(reader).map(Self::GetChildren2),
            OpCode::Sync => SyncResponse::read(reader).map(Self::Sync),
            OpCode::Multi | OpCode::MultiRead => MultiResponse::read(reader).map(Self::Multi),
            OpCode::Sasl => SetSaslResponse::read(reader).map(Self::Sasl),
            OpCode::GetEphemerals => GetEphemeralsResponse::read(reader).map(Self::GetEphemerals),
            OpCode::GetAllChildrenNumber => {
                GetAllChildrenNumberResponse::read(reader).map(Self::GetAllChildrenNumber)
            }
            OpCode::AddWatch => ErrorResponse::read(reader).map(Self::AddWatch),
            OpCode::WhoAmI => WhoAmIResponse::read(reader).map(Self::WhoAmI),
            OpCode::Notification | OpCode::Error | OpCode::CreateSession => return None,
        })
    }

    /// Appends the body to `writer` (nothing for [`Response::Empty`]).
    pub fn write(&self, writer: &mut JuteWriter<'_>) {
        match self {
            Self::Empty => {}
            Self::Create(body) => body.write(writer),
            Self::Create2(body) => body.write(writer),
            Self::Exists(body) => body.write(writer),
            Self::GetData(body) => body.write(writer),
            Self::SetData(body) => body.write(writer),
            Self::GetAcl(body) => body.write(writer),
            Self::SetAcl(body) => body.write(writer),
            Self::GetChildren(body) => body.write(writer),
            Self::GetChildren2(body) => body.write(writer),
            Self::Sync(body) => body.write(writer),
            Self::Multi(body) => body.write(writer),
            Self::Sasl(body) => body.write(writer),
            Self::GetEphemerals(body) => body.write(writer),
            Self::GetAllChildrenNumber(body) => body.write(writer),
            Self::AddWatch(body) => body.write(writer),
            Self::WhoAmI(body) => body.write(writer),
        }
    }
}

/// A frame from the server after the handshake, as a client decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A watch notification: xid -1, body [`WatcherEvent`].
    Notification {
        /// The header (xid -1; zxid -1 up to 3.8, the triggering zxid
        /// since 3.9.2; err 0).
        header: ReplyHeader,
        /// The event.
        event: WatcherEvent,
    },
    /// The reply to a request.
    Response {
        /// The header.
        header: ReplyHeader,
        /// The opcode of the request answered.
        op: OpCode,
        /// The body when `header.err` is 0; `None` otherwise, whatever bytes
        /// follow the header (ZooKeeper's Java client reads a body only when
        /// err is 0, `ClientCnxn.SendThread.readResponse`).
        body: Option<Response>,
    },
}

impl Reply {
    /// The reply's header.
    #[must_use]
    pub fn header(&self) -> &ReplyHeader {
        match self {
            Self::Notification { header, .. } | Self::Response { header, .. } => header,
        }
    }

    /// Writes the reply as one frame; see [`encode_reply`].
    ///
    /// # Errors
    /// As [`encode_reply`].
    pub fn encode(&self, max_frame_len: u32, dst: &mut BytesMut) -> Result<(), JuteEncodeError> {
        match self {
            Self::Notification { header, event } => encode_frame_with(max_frame_len, dst, |w| {
                header.write(w);
                event.write(w);
            }),
            Self::Response { header, body, .. } => {
                encode_reply(header, body.as_ref(), max_frame_len, dst)
            }
        }
    }
}

/// Why a request frame could not be decoded. [`RequestError::xid`] says
/// whether the server can still answer it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The frame is too short for a request header: there is no xid to
    /// answer; close the connection.
    #[error("malformed request header: {0}")]
    Header(#[source] JuteError),
    /// The opcode is no ZooKeeper opcode. ZooKeeper answers
    /// `ReplyHeader(xid, zxid, UNIMPLEMENTED)` and closes the connection.
    #[error("unknown op type {op_type} in request xid {xid}")]
    UnknownOpCode {
        /// The request's xid.
        xid: i32,
        /// The op type read.
        op_type: i32,
    },
    /// The opcode is ZooKeeper's but never sent by a client (notification,
    /// error, createSession). Answer as for an unknown opcode.
    #[error("op {op} is not a client request (xid {xid})")]
    NotARequest {
        /// The request's xid.
        xid: i32,
        /// The opcode read.
        op: OpCode,
    },
    /// The body does not match the opcode. ZooKeeper answers
    /// `MARSHALLINGERROR` (-5) when its pipeline fails to read a body.
    #[error("malformed {op} request (xid {xid}): {source}", xid = .header.xid)]
    Body {
        /// The request's header.
        header: RequestHeader,
        /// The request's opcode.
        op: OpCode,
        /// What was wrong with the body.
        #[source]
        source: JuteError,
    },
}

impl RequestError {
    /// The xid of the request, when the header could be read, so that the
    /// server can answer it before closing.
    #[must_use]
    pub fn xid(&self) -> Option<i32> {
        match self {
            Self::Header(_) => None,
            Self::UnknownOpCode { xid, .. } | Self::NotARequest { xid, .. } => Some(*xid),
            Self::Body { header, .. } => Some(header.xid),
        }
    }
}

/// Why a reply frame could not be decoded. Every variant means: drop the
/// connection (as ZooKeeper's Java client does on any read error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The frame is too short for a reply header.
    #[error("malformed reply header: {0}")]
    Header(#[source] JuteError),
    /// No request is known for the reply's xid (and it is no special xid).
    #[error("reply to unknown xid {xid}")]
    UnknownXid {
        /// The reply's xid.
        xid: i32,
    },
    /// The opcode given for the xid is not a request (notification, error,
    /// createSession), so there is no reply body to read.
    #[error("op {op} for reply xid {xid} is not a request")]
    NotARequest {
        /// The reply's xid.
        xid: i32,
        /// The opcode given for it.
        op: OpCode,
    },
    /// The body does not match the opcode (for a notification, the opcode
    /// is `notification`).
    #[error("malformed {op} reply (xid {xid}): {source}", xid = .header.xid)]
    Body {
        /// The reply's header.
        header: ReplyHeader,
        /// The opcode whose reply was read.
        op: OpCode,
        /// What was wrong with the body.
        #[source]
        source: JuteError,
    },
}

/// Decodes one request frame body (after the handshake): the
/// [`RequestHeader`], then the body its opcode calls for, which must fill
/// the rest of the frame.
///
/// # Errors
/// [`RequestError`]; every variant but `Header` carries the xid (see
/// [`RequestError::xid`]).
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, Request), RequestError> {
    let mut reader = JuteReader::new(frame);
    let header = RequestHeader::read(&mut reader).map_err(RequestError::Header)?;
    let Some(op) = OpCode::from_code(header.op_type) else {
        return Err(RequestError::UnknownOpCode {
            xid: header.xid,
            op_type: header.op_type,
        });
    };
    let Some(body) = Request::read(op, &mut reader) else {
        return Err(RequestError::NotARequest {
            xid: header.xid,
            op,
        });
    };
    let body_error = |source| RequestError::Body { header, op, source };
    let request = body.map_err(body_error)?;
    reader.finish(op.name()).map_err(body_error)?;
    Ok((header, request))
}

/// Decodes one reply frame body (after the handshake).
///
/// Xid -1 is a notification. For any other xid, `op_for_xid` gives the
/// opcode of the request the client sent with it; when it returns `None`,
/// the special xids fall back to their fixed opcodes (-2 ping, -4 auth,
/// -8 setWatches), whose replies have no body. A body is read only when
/// `err` is 0, and must then fill the rest of the frame.
///
/// # Errors
/// [`ReplyError`].
pub fn decode_reply(
    frame: Bytes,
    op_for_xid: impl FnOnce(i32) -> Option<OpCode>,
) -> Result<Reply, ReplyError> {
    let mut reader = JuteReader::new(frame);
    let header = ReplyHeader::read(&mut reader).map_err(ReplyError::Header)?;
    if header.xid == NOTIFICATION_XID {
        let body_error = |source| ReplyError::Body {
            header,
            op: OpCode::Notification,
            source,
        };
        let event = WatcherEvent::read(&mut reader).map_err(body_error)?;
        reader.finish(WatcherEvent::NAME).map_err(body_error)?;
        return Ok(Reply::Notification { header, event });
    }
    let op = op_for_xid(header.xid)
        .or(match header.xid {
            PING_XID => Some(OpCode::Ping),
            AUTH_XID => Some(OpCode::Auth),
            SET_WATCHES_XID => Some(OpCode::SetWatches),
            _ => None,
        })
        .ok_or(ReplyError::UnknownXid { xid: header.xid })?;
    if header.err != 0 {
        return Ok(Reply::Response {
            header,
            op,
            body: None,
        });
    }
    let Some(body) = Response::read(op, &mut reader) else {
        return Err(ReplyError::NotARequest {
            xid: header.xid,
            op,
        });
    };
    let body_error = |source| ReplyError::Body { header, op, source };
    let body = body.map_err(body_error)?;
    reader.finish(op.name()).map_err(body_error)?;
    Ok(Reply::Response {
        header,
        op,
        body: Some(body),
    })
}

/// Writes `record` (a [`ConnectRequest`](super::ConnectRequest) or
/// [`ConnectResponse`](super::ConnectResponse), or any record) as one frame:
/// its length as 4 big-endian bytes, then its fields.
///
/// # Errors
/// [`JuteEncodeError::Oversize`] when the body is longer than
/// `max_frame_len` (or `i32::MAX`), [`JuteEncodeError::LengthOverflow`];
/// `dst` is then left as it was.
pub fn encode_frame<R: JuteRecord>(
    record: &R,
    max_frame_len: u32,
    dst: &mut BytesMut,
) -> Result<(), JuteEncodeError> {
    encode_frame_with(max_frame_len, dst, |writer| record.write(writer))
}

/// Writes a request as one frame: `RequestHeader(xid, request.op_code())`
/// and the request's body.
///
/// # Errors
/// As [`encode_frame`].
pub fn encode_request(
    xid: i32,
    request: &Request,
    max_frame_len: u32,
    dst: &mut BytesMut,
) -> Result<(), JuteEncodeError> {
    encode_frame_with(max_frame_len, dst, |writer| {
        RequestHeader {
            xid,
            op_type: request.op_code().code(),
        }
        .write(writer);
        request.write(writer);
    })
}

/// Writes a reply as one frame: `header`, then `body` if any. ZooKeeper
/// sends a body only with `err` 0; this function writes what it is given.
///
/// # Errors
/// As [`encode_frame`].
pub fn encode_reply(
    header: &ReplyHeader,
    body: Option<&Response>,
    max_frame_len: u32,
    dst: &mut BytesMut,
) -> Result<(), JuteEncodeError> {
    encode_frame_with(max_frame_len, dst, |writer| {
        header.write(writer);
        if let Some(body) = body {
            body.write(writer);
        }
    })
}

/// Writes a watch notification as one frame:
/// `ReplyHeader(-1, zxid, 0)` and `event`. ZooKeeper up to 3.8 sends zxid
/// -1; since 3.9.2, the zxid of the write that fired the watch.
///
/// # Errors
/// As [`encode_frame`].
pub fn encode_notification(
    zxid: i64,
    event: &WatcherEvent,
    max_frame_len: u32,
    dst: &mut BytesMut,
) -> Result<(), JuteEncodeError> {
    encode_frame_with(max_frame_len, dst, |writer| {
        ReplyHeader {
            xid: NOTIFICATION_XID,
            zxid,
            err: 0,
        }
        .write(writer);
        event.write(writer);
    })
}

/// Writes a length prefix, the body written by `body`, then patches the
/// prefix; on any error truncates `dst` back to where it was.
fn encode_frame_with(
    max_frame_len: u32,
    dst: &mut BytesMut,
    body: impl FnOnce(&mut JuteWriter<'_>),
) -> Result<(), JuteEncodeError> {
    // Jute lengths are Java ints: a frame over i32::MAX cannot be read back.
    let max = max_frame_len.min(i32::MAX.unsigned_abs());
    let start = dst.len();
    dst.put_u32(0);
    let mut writer = JuteWriter::new(dst);
    body(&mut writer);
    let written = writer.finish();
    let len = dst.len() - start - 4;
    let result = written.and_then(|()| match u32::try_from(len) {
        Ok(prefix) if prefix <= max => Ok(prefix),
        _ => Err(JuteEncodeError::Oversize { len, max }),
    });
    match result {
        Ok(prefix) => {
            if let Some(slot) = dst.get_mut(start..start + 4) {
                slot.copy_from_slice(&prefix.to_be_bytes());
            }
            Ok(())
        }
        Err(err) => {
            dst.truncate(start);
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversize_frame_is_refused_and_dst_left_alone() {
        let mut dst = BytesMut::from(&b"xy"[..]);
        let request = Request::Sync(SyncRequest {
            path: "/0123456789".to_owned(),
        });
        assert_eq!(
            encode_request(1, &request, 10, &mut dst),
            Err(JuteEncodeError::Oversize { len: 23, max: 10 })
        );
        assert_eq!(&dst[..], b"xy");
        assert_eq!(encode_request(1, &request, 23, &mut dst), Ok(()));
        assert_eq!(&dst[2..6], [0, 0, 0, 23]);
    }

    #[test]
    fn limit_is_capped_at_i32_max() {
        let mut dst = BytesMut::new();
        assert_eq!(
            encode_request(1, &Request::Ping, u32::MAX, &mut dst),
            Ok(())
        );
        assert_eq!(&dst[..], [0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 11]);
    }

    #[test]
    fn unknown_and_non_request_opcodes_keep_the_xid() {
        let frame = Bytes::from_static(&[0, 0, 0, 7, 0, 0, 0, 10]);
        let err = decode_request(frame).err();
        assert_eq!(
            err,
            Some(RequestError::UnknownOpCode {
                xid: 7,
                op_type: 10
            })
        );
        assert_eq!(err.as_ref().and_then(RequestError::xid), Some(7));
        assert_eq!(
            err.map(|err| err.to_string()),
            Some("unknown op type 10 in request xid 7".to_owned())
        );
        let frame = Bytes::from_static(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xf6]);
        assert_eq!(
            decode_request(frame),
            Err(RequestError::NotARequest {
                xid: 8,
                op: OpCode::CreateSession
            })
        );
        let err = decode_request(Bytes::from_static(&[0, 0, 0])).err();
        assert_eq!(err.as_ref().and_then(RequestError::xid), None);
    }

    #[test]
    fn trailing_bytes_after_a_body_are_refused() {
        let frame = Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11, 0]);
        let err = decode_request(frame).err();
        assert_eq!(
            err.map(|err| err.to_string()),
            Some("malformed ping (11) request (xid -2): 1 trailing bytes after ping".to_owned())
        );
    }

    #[test]
    fn error_reply_has_no_body_whatever_follows() {
        let mut frame = BytesMut::new();
        let header = ReplyHeader {
            xid: 6,
            zxid: 5,
            err: -101,
        };
        assert_eq!(
            encode_reply(&header, None, JUTE_MAX_BUFFER, &mut frame),
            Ok(())
        );
        frame.extend_from_slice(&[1, 2, 3]);
        let body = frame.freeze().slice(4..);
        assert_eq!(
            decode_reply(body, |_| Some(OpCode::Exists)),
            Ok(Reply::Response {
                header,
                op: OpCode::Exists,
                body: None
            })
        );
    }

    #[test]
    fn special_xids_need_no_lookup() {
        for (xid, op) in [
            (PING_XID, OpCode::Ping),
            (AUTH_XID, OpCode::Auth),
            (SET_WATCHES_XID, OpCode::SetWatches),
        ] {
            let mut frame = BytesMut::new();
            let header = ReplyHeader {
                xid,
                zxid: 0,
                err: 0,
            };
            assert_eq!(
                encode_reply(&header, None, JUTE_MAX_BUFFER, &mut frame),
                Ok(())
            );
            assert_eq!(
                decode_reply(frame.freeze().slice(4..), |_| None),
                Ok(Reply::Response {
                    header,
                    op,
                    body: Some(Response::Empty)
                })
            );
        }
        let header = [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_reply(Bytes::copy_from_slice(&header), |_| None),
            Err(ReplyError::UnknownXid { xid: 9 })
        );
        assert_eq!(
            decode_reply(Bytes::copy_from_slice(&header), |_| Some(OpCode::Error)),
            Err(ReplyError::NotARequest {
                xid: 9,
                op: OpCode::Error
            })
        );
    }
}
