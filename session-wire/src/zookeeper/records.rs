//! The records of `zookeeper.jute` (modules `org.apache.zookeeper.data` and
//! `org.apache.zookeeper.proto`) that the client protocol uses, field for
//! field in jute order.
//!
//! Field types follow one rule: a jute `buffer` is `Option<Bytes>`, since
//! null node data is real (a node created with null data is read back as
//! length -1); a `ustring` is `String` and a `vector` is `Vec`, null being
//! refused with [`JuteError::Null`](super::JuteError::Null), except where
//! ZooKeeper gives null a meaning (`GetEphemeralsRequest.prefix_path`).
//! Enumerated fields (`flags`, `type`, `state`, `mode`, `err`) keep the raw
//! `i32` with typed accessors, so unknown values survive a round trip.

use bytes::Bytes;

use super::codes::{AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, WatcherType};
use super::jute::{JuteError, JuteReader, JuteRecord, JuteWriter, jute_record};

jute_record! {
    /// An identity: an auth scheme and an id within it (`Id`), e.g.
    /// `world:anyone`, `ip:127.0.0.1`, `digest:user:<base64 sha1>`.
    Id = "Id" {
        /// The scheme (`world`, `auth`, `digest`, `ip`, `sasl`, `x509`, `super`).
        scheme: String,
        /// The id within the scheme.
        id: String,
    }
}

jute_record! {
    /// One ACL entry (`ACL`): permission bits for an identity.
    Acl = "ACL" {
        /// Or-ed [`perms`](super::perms) bits.
        perms: i32,
        /// Whom the permissions are for.
        id: Id,
    }
}

impl Acl {
    /// `perms` for `world:anyone`; with [`perms::ALL`](super::perms::ALL)
    /// this is ZooKeeper's `OPEN_ACL_UNSAFE` entry.
    #[must_use]
    pub fn world_anyone(perms: i32) -> Self {
        Self {
            perms,
            id: Id {
                scheme: "world".to_owned(),
                id: "anyone".to_owned(),
            },
        }
    }
}

jute_record! {
    /// A node's metadata as clients see it (`Stat`, 68 bytes).
    Stat = "Stat" {
        /// The zxid of the create.
        czxid: i64,
        /// The zxid of the last data change.
        mzxid: i64,
        /// Creation time, ms since the epoch.
        ctime: i64,
        /// Last data change time, ms since the epoch.
        mtime: i64,
        /// Data version.
        version: i32,
        /// Children version: child creates and deletes.
        cversion: i32,
        /// ACL version.
        aversion: i32,
        /// The owning session for an ephemeral, 0 otherwise (see the
        /// README for containers and TTL nodes).
        ephemeral_owner: i64,
        /// The data length in bytes.
        data_length: i32,
        /// The number of children.
        num_children: i32,
        /// The zxid of the last child create or delete.
        pzxid: i64,
    }
}

jute_record! {
    /// An authenticated identity of a connection, as whoAmI reports it
    /// (`ClientInfo`).
    ClientInfo = "ClientInfo" {
        /// The auth scheme.
        auth_scheme: String,
        /// The user name within it ("" when the provider has none).
        user: String,
    }
}

jute_record! {
    /// The header of every request after the handshake (`RequestHeader`).
    #[derive(Copy)]
    RequestHeader = "RequestHeader" {
        /// The request id, copied onto the reply; negative for the special
        /// xids (`PING_XID`, `AUTH_XID`, `SET_WATCHES_XID`).
        xid: i32,
        /// The [`OpCode`](super::OpCode) number.
        op_type: i32,
    }
}

jute_record! {
    /// The header of every reply after the handshake (`ReplyHeader`, 16
    /// bytes). A body follows only when `err` is 0 (and for notifications).
    #[derive(Copy)]
    ReplyHeader = "ReplyHeader" {
        /// The request's xid, or a special xid (-1 for notifications).
        xid: i32,
        /// The server's last processed zxid (the write's own for writes; -1
        /// for notifications up to 3.8, the triggering zxid since 3.9.2).
        zxid: i64,
        /// The [`ErrorCode`] number, 0 for success.
        err: i32,
    }
}

impl ReplyHeader {
    /// The error code, `None` for a number this version does not know.
    #[must_use]
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.err)
    }
}

jute_record! {
    /// The header in front of each operation and result of a multi, and its
    /// terminator (`MultiHeader`).
    #[derive(Copy)]
    MultiHeader = "MultiHeader" {
        /// The op's [`OpCode`](super::OpCode) number; -1 for an error result
        /// and in the terminator.
        op_type: i32,
        /// True only in the terminator.
        done: bool,
        /// -1 in requests; the result's error code in responses (0 for
        /// success); -1 in the terminator.
        err: i32,
    }
}

jute_record! {
    /// Authentication data (`AuthPacket`), sent with opcode auth.
    AuthPacket = "AuthPacket" {
        /// Always 0.
        auth_type: i32,
        /// The scheme, e.g. `digest`.
        scheme: String,
        /// The credentials, e.g. `user:password` for digest.
        auth: Option<Bytes>,
    }
}

jute_record! {
    /// Watches to re-register after a reconnect (`SetWatches`, opcode 101).
    SetWatches = "SetWatches" {
        /// The last zxid the client saw; changes after it fire at once.
        relative_zxid: i64,
        /// Paths with a getData watch.
        data_watches: Vec<String>,
        /// Paths with an exists watch.
        exist_watches: Vec<String>,
        /// Paths with a getChildren watch.
        child_watches: Vec<String>,
    }
}

jute_record! {
    /// [`SetWatches`] plus persistent watches (`SetWatches2`, opcode 105).
    SetWatches2 = "SetWatches2" {
        /// The last zxid the client saw.
        relative_zxid: i64,
        /// Paths with a getData watch.
        data_watches: Vec<String>,
        /// Paths with an exists watch.
        exist_watches: Vec<String>,
        /// Paths with a getChildren watch.
        child_watches: Vec<String>,
        /// Paths with a persistent watch.
        persistent_watches: Vec<String>,
        /// Paths with a persistent recursive watch.
        persistent_recursive_watches: Vec<String>,
    }
}

jute_record! {
    /// Create a node (`CreateRequest`): opcodes create, create2 and
    /// createContainer.
    CreateRequest = "CreateRequest" {
        /// The path (for sequential modes, the prefix of the name).
        path: String,
        /// The data; null and empty are distinct.
        data: Option<Bytes>,
        /// The ACL.
        acl: Vec<Acl>,
        /// The [`CreateMode`] number.
        flags: i32,
    }
}

impl CreateRequest {
    /// The create mode, `None` for an unknown flag.
    #[must_use]
    pub fn create_mode(&self) -> Option<CreateMode> {
        CreateMode::from_code(self.flags)
    }
}

jute_record! {
    /// Create a node with a time to live (`CreateTTLRequest`, opcode
    /// createTTL).
    CreateTtlRequest = "CreateTTLRequest" {
        /// The path.
        path: String,
        /// The data.
        data: Option<Bytes>,
        /// The ACL.
        acl: Vec<Acl>,
        /// The [`CreateMode`] number (5 or 6).
        flags: i32,
        /// The time to live in ms.
        ttl: i64,
    }
}

impl CreateTtlRequest {
    /// The create mode, `None` for an unknown flag.
    #[must_use]
    pub fn create_mode(&self) -> Option<CreateMode> {
        CreateMode::from_code(self.flags)
    }
}

jute_record! {
    /// Reply to create (`CreateResponse`).
    CreateResponse = "CreateResponse" {
        /// The created path, with its sequence suffix.
        path: String,
    }
}

jute_record! {
    /// Reply to create2, createContainer and createTTL (`Create2Response`).
    Create2Response = "Create2Response" {
        /// The created path, with its sequence suffix.
        path: String,
        /// The new node's stat.
        stat: Stat,
    }
}

jute_record! {
    /// Delete a node (`DeleteRequest`).
    DeleteRequest = "DeleteRequest" {
        /// The path.
        path: String,
        /// The expected version, -1 for any.
        version: i32,
    }
}

jute_record! {
    /// Stat a node (`ExistsRequest`).
    ExistsRequest = "ExistsRequest" {
        /// The path.
        path: String,
        /// Whether to leave a watch (also when the node is missing).
        watch: bool,
    }
}

jute_record! {
    /// Reply to exists (`ExistsResponse`).
    ExistsResponse = "ExistsResponse" {
        /// The node's stat.
        stat: Stat,
    }
}

jute_record! {
    /// Read a node's data (`GetDataRequest`).
    GetDataRequest = "GetDataRequest" {
        /// The path.
        path: String,
        /// Whether to leave a data watch.
        watch: bool,
    }
}

jute_record! {
    /// Reply to getData and reconfig (`GetDataResponse`).
    GetDataResponse = "GetDataResponse" {
        /// The data (null if the node was created with null data).
        data: Option<Bytes>,
        /// The node's stat.
        stat: Stat,
    }
}

jute_record! {
    /// Write a node's data (`SetDataRequest`).
    SetDataRequest = "SetDataRequest" {
        /// The path.
        path: String,
        /// The new data.
        data: Option<Bytes>,
        /// The expected version, -1 for any.
        version: i32,
    }
}

jute_record! {
    /// Reply to setData, and to a top-level check on servers that accept it
    /// (`SetDataResponse`).
    SetDataResponse = "SetDataResponse" {
        /// The node's new stat.
        stat: Stat,
    }
}

jute_record! {
    /// Read a node's ACL (`GetACLRequest`).
    GetAclRequest = "GetACLRequest" {
        /// The path.
        path: String,
    }
}

jute_record! {
    /// Reply to getACL (`GetACLResponse`).
    GetAclResponse = "GetACLResponse" {
        /// The ACL.
        acl: Vec<Acl>,
        /// The node's stat.
        stat: Stat,
    }
}

jute_record! {
    /// Write a node's ACL (`SetACLRequest`).
    SetAclRequest = "SetACLRequest" {
        /// The path.
        path: String,
        /// The new ACL.
        acl: Vec<Acl>,
        /// The expected ACL version (aversion), -1 for any.
        version: i32,
    }
}

jute_record! {
    /// Reply to setACL (`SetACLResponse`).
    SetAclResponse = "SetACLResponse" {
        /// The node's new stat.
        stat: Stat,
    }
}

jute_record! {
    /// List a node's children (`GetChildrenRequest`).
    GetChildrenRequest = "GetChildrenRequest" {
        /// The path.
        path: String,
        /// Whether to leave a child watch.
        watch: bool,
    }
}

jute_record! {
    /// Reply to getChildren (`GetChildrenResponse`).
    GetChildrenResponse = "GetChildrenResponse" {
        /// The children's names (not paths).
        children: Vec<String>,
    }
}

jute_record! {
    /// List a node's children with its stat (`GetChildren2Request`).
    GetChildren2Request = "GetChildren2Request" {
        /// The path.
        path: String,
        /// Whether to leave a child watch.
        watch: bool,
    }
}

jute_record! {
    /// Reply to getChildren2 (`GetChildren2Response`).
    GetChildren2Response = "GetChildren2Response" {
        /// The children's names (not paths).
        children: Vec<String>,
        /// The node's stat.
        stat: Stat,
    }
}

jute_record! {
    /// Sync with the leader (`SyncRequest`).
    SyncRequest = "SyncRequest" {
        /// The path.
        path: String,
    }
}

jute_record! {
    /// Reply to sync (`SyncResponse`).
    SyncResponse = "SyncResponse" {
        /// The request's path, echoed.
        path: String,
    }
}

jute_record! {
    /// Check a node's version, inside a multi (`CheckVersionRequest`).
    CheckVersionRequest = "CheckVersionRequest" {
        /// The path.
        path: String,
        /// The expected version, -1 for any.
        version: i32,
    }
}

jute_record! {
    /// Change the ensemble (`ReconfigRequest`, quorum only).
    ReconfigRequest = "ReconfigRequest" {
        /// Servers to add (incremental).
        joining_servers: String,
        /// Servers to remove (incremental).
        leaving_servers: String,
        /// The whole new membership (non-incremental).
        new_members: String,
        /// The expected current config version, -1 for any.
        cur_config_id: i64,
    }
}

jute_record! {
    /// A SASL token from the client (`GetSASLRequest`, opcode sasl).
    GetSaslRequest = "GetSASLRequest" {
        /// The token.
        token: Option<Bytes>,
    }
}

jute_record! {
    /// A SASL token from the server (`SetSASLResponse`).
    SetSaslResponse = "SetSASLResponse" {
        /// The token.
        token: Option<Bytes>,
    }
}

jute_record! {
    /// Check that a watch exists (`CheckWatchesRequest`).
    CheckWatchesRequest = "CheckWatchesRequest" {
        /// The path.
        path: String,
        /// The [`WatcherType`] number.
        watcher_type: i32,
    }
}

impl CheckWatchesRequest {
    /// The watcher type, `None` for an unknown number.
    #[must_use]
    pub fn watcher_type(&self) -> Option<WatcherType> {
        WatcherType::from_code(self.watcher_type)
    }
}

jute_record! {
    /// Remove watches (`RemoveWatchesRequest`).
    RemoveWatchesRequest = "RemoveWatchesRequest" {
        /// The path.
        path: String,
        /// The [`WatcherType`] number.
        watcher_type: i32,
    }
}

impl RemoveWatchesRequest {
    /// The watcher type, `None` for an unknown number.
    #[must_use]
    pub fn watcher_type(&self) -> Option<WatcherType> {
        WatcherType::from_code(self.watcher_type)
    }
}

jute_record! {
    /// Add a persistent watch (`AddWatchRequest`).
    AddWatchRequest = "AddWatchRequest" {
        /// The path.
        path: String,
        /// The [`AddWatchMode`] number.
        mode: i32,
    }
}

impl AddWatchRequest {
    /// The mode, `None` for an unknown number.
    #[must_use]
    pub fn add_watch_mode(&self) -> Option<AddWatchMode> {
        AddWatchMode::from_code(self.mode)
    }
}

jute_record! {
    /// A watch notification (`WatcherEvent`), the body of an xid -1 reply.
    WatcherEvent = "WatcherEvent" {
        /// The [`EventType`] number.
        event_type: i32,
        /// The [`KeeperState`] number (3, SyncConnected, from servers).
        state: i32,
        /// The node's full path.
        path: String,
    }
}

impl WatcherEvent {
    /// An event of `event_type` in `state` on `path`.
    #[must_use]
    pub fn new(event_type: EventType, state: KeeperState, path: impl Into<String>) -> Self {
        Self {
            event_type: event_type.code(),
            state: state.code(),
            path: path.into(),
        }
    }

    /// The event type, `None` for an unknown number.
    #[must_use]
    pub fn event_type(&self) -> Option<EventType> {
        EventType::from_code(self.event_type)
    }

    /// The keeper state, `None` for an unknown number.
    #[must_use]
    pub fn keeper_state(&self) -> Option<KeeperState> {
        KeeperState::from_code(self.state)
    }
}

jute_record! {
    /// An error code as a body (`ErrorResponse`): the reply to addWatch
    /// (always 0) and an error result in a multi.
    ErrorResponse = "ErrorResponse" {
        /// The [`ErrorCode`] number.
        err: i32,
    }
}

jute_record! {
    /// List the session's ephemerals (`GetEphemeralsRequest`).
    GetEphemeralsRequest = "GetEphemeralsRequest" {
        /// Only paths starting with this; null, blank or "/" mean all.
        prefix_path: Option<String>,
    }
}

jute_record! {
    /// Reply to getEphemerals (`GetEphemeralsResponse`).
    GetEphemeralsResponse = "GetEphemeralsResponse" {
        /// Full paths.
        ephemerals: Vec<String>,
    }
}

jute_record! {
    /// Count a node's descendants (`GetAllChildrenNumberRequest`).
    GetAllChildrenNumberRequest = "GetAllChildrenNumberRequest" {
        /// The path.
        path: String,
    }
}

jute_record! {
    /// Reply to getAllChildrenNumber (`GetAllChildrenNumberResponse`).
    GetAllChildrenNumberResponse = "GetAllChildrenNumberResponse" {
        /// The number of descendants, all levels.
        total_number: i32,
    }
}

jute_record! {
    /// Reply to whoAmI (`WhoAmIResponse`).
    WhoAmIResponse = "WhoAmIResponse" {
        /// The connection's identities.
        client_info: Vec<ClientInfo>,
    }
}

jute_record! {
    /// Delete a container (`DeleteContainerRequest`, a Java class, not in
    /// `zookeeper.jute`): the path written as a `buffer`, which has the same
    /// encoding as a `ustring`.
    DeleteContainerRequest = "DeleteContainerRequest" {
        /// The path.
        path: String,
    }
}

/// The first message of a connection, from the client (`ConnectRequest`):
/// 44 bytes, 45 with `read_only`, for a 16-byte password.
///
/// `read_only` is the optional trailing byte: clients before 3.4 omit it,
/// and the server then omits it from its [`ConnectResponse`] too
/// (`ProtocolManager.deserializeConnectRequest`). So this record must fill
/// its frame: decode it with [`JuteRecord::decode`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Always 0.
    pub protocol_version: i32,
    /// The highest zxid the client has seen (0 when fresh).
    pub last_zxid_seen: i64,
    /// The requested session timeout in ms.
    pub time_out: i32,
    /// 0 for a new session, else the session to reattach.
    pub session_id: i64,
    /// The session password (16 zero bytes from the Java client for a new
    /// session).
    pub passwd: Option<Bytes>,
    /// Whether the client accepts a read-only server; `None` when the byte
    /// is absent.
    pub read_only: Option<bool>,
}

/// The first message of a connection, from the server (`ConnectResponse`):
/// 36 bytes, 37 with `read_only`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    /// Always 0.
    pub protocol_version: i32,
    /// The negotiated timeout in ms; 0 means the session is invalid
    /// (expired, unknown or wrong password).
    pub time_out: i32,
    /// The session id, 0 when invalid.
    pub session_id: i64,
    /// The session password (16 bytes, all zero when invalid).
    pub passwd: Option<Bytes>,
    /// Whether the server is read-only; present only if the request carried
    /// its `read_only` byte.
    pub read_only: Option<bool>,
}

/// The trailing `readOnly` byte: absent when the frame ends, as ZooKeeper's
/// `ProtocolManager` falls back to "old client" when reading it fails.
fn read_trailing_read_only(
    reader: &mut JuteReader,
    field: &'static str,
) -> Result<Option<bool>, JuteError> {
    if reader.remaining() == 0 {
        return Ok(None);
    }
    reader.read_bool(field).map(Some)
}

impl JuteRecord for ConnectRequest {
    const NAME: &'static str = "ConnectRequest";

    fn read(reader: &mut JuteReader) -> Result<Self, JuteError> {
        Ok(Self {
            protocol_version: reader.read_int("ConnectRequest.protocol_version")?,
            last_zxid_seen: reader.read_long("ConnectRequest.last_zxid_seen")?,
            time_out: reader.read_int("ConnectRequest.time_out")?,
            session_id: reader.read_long("ConnectRequest.session_id")?,
            passwd: reader.read_buffer("ConnectRequest.passwd")?,
            read_only: read_trailing_read_only(reader, "ConnectRequest.read_only")?,
        })
    }

    fn write(&self, writer: &mut JuteWriter<'_>) {
        writer.write_int(self.protocol_version);
        writer.write_long(self.last_zxid_seen);
        writer.write_int(self.time_out);
        writer.write_long(self.session_id);
        writer.write_buffer("ConnectRequest.passwd", self.passwd.as_deref());
        if let Some(read_only) = self.read_only {
            writer.write_bool(read_only);
        }
    }
}

impl JuteRecord for ConnectResponse {
    const NAME: &'static str = "ConnectResponse";

    fn read(reader: &mut JuteReader) -> Result<Self, JuteError> {
        Ok(Self {
            protocol_version: reader.read_int("ConnectResponse.protocol_version")?,
            time_out: reader.read_int("ConnectResponse.time_out")?,
            session_id: reader.read_long("ConnectResponse.session_id")?,
            passwd: reader.read_buffer("ConnectResponse.passwd")?,
            read_only: read_trailing_read_only(reader, "ConnectResponse.read_only")?,
        })
    }

    fn write(&self, writer: &mut JuteWriter<'_>) {
        writer.write_int(self.protocol_version);
        writer.write_int(self.time_out);
        writer.write_long(self.session_id);
        writer.write_buffer("ConnectResponse.passwd", self.passwd.as_deref());
        if let Some(read_only) = self.read_only {
            writer.write_bool(read_only);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    fn encoded<R: JuteRecord>(record: &R) -> Vec<u8> {
        let mut dst = BytesMut::new();
        assert_eq!(record.encode(&mut dst), Ok(()));
        dst.to_vec()
    }

    #[test]
    fn stat_is_68_bytes_in_jute_order() {
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let bytes = encoded(&stat);
        assert_eq!(bytes.len(), 68);
        let mut expected = Vec::new();
        for (value, width) in [
            (1, 8),
            (2, 8),
            (3, 8),
            (4, 8),
            (5, 4),
            (6, 4),
            (7, 4),
            (8, 8),
            (9, 4),
            (10, 4),
            (11, 8),
        ] {
            let be = i64::to_be_bytes(value);
            expected.extend_from_slice(&be[8 - width..]);
        }
        assert_eq!(bytes, expected);
        assert_eq!(Stat::decode(Bytes::from(bytes)), Ok(stat));
        assert_eq!(<Stat as super::super::jute::JuteField>::MIN_LEN, 68);
        assert_eq!(<Acl as super::super::jute::JuteField>::MIN_LEN, 12);
    }

    #[test]
    fn connect_request_with_and_without_read_only() {
        let mut request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 30_000,
            session_id: 0,
            passwd: Some(Bytes::from_static(&[0; 16])),
            read_only: Some(false),
        };
        let with = encoded(&request);
        assert_eq!(with.len(), 45);
        assert_eq!(
            ConnectRequest::decode(Bytes::from(with.clone())),
            Ok(request.clone())
        );
        request.read_only = None;
        let without = encoded(&request);
        assert_eq!(without, with[..44]);
        assert_eq!(ConnectRequest::decode(Bytes::from(without)), Ok(request));
        let mut extra = with;
        extra.push(0);
        assert_eq!(
            ConnectRequest::decode(Bytes::from(extra)),
            Err(JuteError::TrailingBytes {
                record: "ConnectRequest",
                len: 1
            })
        );
    }

    #[test]
    fn connect_response_with_and_without_read_only() {
        let mut response = ConnectResponse {
            protocol_version: 0,
            time_out: 4000,
            session_id: 0x0100_0017_11d7_0000,
            passwd: Some(Bytes::from_static(&[7; 16])),
            read_only: Some(true),
        };
        let with = encoded(&response);
        assert_eq!(with.len(), 37);
        assert_eq!(with[36], 1);
        assert_eq!(
            ConnectResponse::decode(Bytes::from(with.clone())),
            Ok(response.clone())
        );
        response.read_only = None;
        assert_eq!(encoded(&response), with[..36]);
    }

    #[test]
    fn typed_accessors() {
        let event = WatcherEvent::new(EventType::NodeDeleted, KeeperState::SyncConnected, "/a");
        assert_eq!((event.event_type, event.state), (2, 3));
        assert_eq!(event.event_type(), Some(EventType::NodeDeleted));
        assert_eq!(event.keeper_state(), Some(KeeperState::SyncConnected));
        let create = CreateRequest {
            flags: 3,
            ..CreateRequest::default()
        };
        assert_eq!(create.create_mode(), Some(CreateMode::EphemeralSequential));
        let header = ReplyHeader {
            xid: 1,
            zxid: 2,
            err: -101,
        };
        assert_eq!(header.error_code(), Some(ErrorCode::NoNode));
        assert_eq!(
            Acl::world_anyone(super::super::perms::ALL),
            Acl {
                perms: 31,
                id: Id {
                    scheme: "world".to_owned(),
                    id: "anyone".to_owned()
                }
            }
        );
    }

    #[test]
    fn field_names_appear_in_errors() {
        let err = CreateRequest::decode(Bytes::from_static(&[0, 0, 0, 1, b'/', 0, 0]));
        assert_eq!(
            err,
            Err(JuteError::Truncated {
                field: "CreateRequest.data",
                needed: 4,
                remaining: 2
            })
        );
        assert_eq!(
            err.err().map(|err| err.to_string()),
            Some("truncated CreateRequest.data: needs 4 bytes, 2 left".to_owned())
        );
    }
}
