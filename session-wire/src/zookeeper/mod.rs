//! ZooKeeper's own client protocol: the jute records spoken on port 2181,
//! so that ZooKeeper's clients (the Java client and zkCli.sh, kazoo, the
//! Rust `zookeeper-client`, …) can talk to a server built on this crate.
//!
//! Sans-IO, like the rest of the crate. Frames are the same 4-byte
//! big-endian length prefix as the v1 protocol, so [`FrameDecoder`] cuts the
//! byte stream; give it [`JUTE_MAX_BUFFER`] as its limit, which ZooKeeper
//! enforces on both sides. The frame bodies are then decoded here:
//!
//! | who | first frame | later frames in | later frames out |
//! |---|---|---|---|
//! | server | [`ConnectRequest::decode`](JuteRecord::decode) | [`decode_request`] → ([`RequestHeader`], [`Request`]) | [`encode_frame`] (the [`ConnectResponse`]), [`encode_reply`], [`encode_notification`] |
//! | client | [`ConnectResponse::decode`](JuteRecord::decode) | [`decode_reply`] → [`Reply`] | [`encode_frame`] (the [`ConnectRequest`]), [`encode_request`] |
//!
//! Below those sit the records of `zookeeper.jute` ([`Stat`], [`Acl`],
//! [`CreateRequest`], …, each a [`JuteRecord`]), multi's framing
//! ([`MultiRequest`], [`MultiResponse`]), ZooKeeper's numbers ([`OpCode`],
//! [`ErrorCode`], [`EventType`], [`KeeperState`], [`CreateMode`], …) and the
//! primitives ([`JuteReader`], [`JuteWriter`]).
//!
//! Nothing here panics on any input: every length is checked against the
//! bytes left before anything is allocated, and every failure is a typed
//! error naming the field ([`JuteError`], [`RequestError`], [`ReplyError`],
//! [`JuteEncodeError`]). The crate README lists where this codec is stricter
//! than ZooKeeper (trailing bytes, invalid UTF-8, null vectors).
//!
//! # Example: a server reading a ping
//! ```
//! use bytes::BytesMut;
//! use session_wire::FrameDecoder;
//! use session_wire::zookeeper::{
//!     JUTE_MAX_BUFFER, PING_XID, ReplyHeader, Request, Response, decode_request, encode_reply,
//! };
//!
//! let mut decoder = FrameDecoder::with_max_frame_len(JUTE_MAX_BUFFER);
//! decoder.push(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11]);
//! let frame = decoder.next_frame()?.expect("a whole frame");
//! let (header, request) = decode_request(frame)?;
//! assert_eq!((header.xid, request), (PING_XID, Request::Ping));
//!
//! let mut out = BytesMut::new();
//! let reply = ReplyHeader { xid: PING_XID, zxid: 6, err: 0 };
//! encode_reply(&reply, Some(&Response::Empty), JUTE_MAX_BUFFER, &mut out)?;
//! assert_eq!(out.len(), 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`FrameDecoder`]: crate::FrameDecoder

mod codes;
mod jute;
mod message;
mod multi;
mod records;

pub use codes::{
    AUTH_XID, AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, NOTIFICATION_XID,
    OpCode, PING_XID, SET_WATCHES_XID, WatcherType, perms,
};
pub use jute::{JuteEncodeError, JuteError, JuteReader, JuteRecord, JuteWriter};
pub use message::{
    JUTE_MAX_BUFFER, Reply, ReplyError, Request, RequestError, Response, decode_reply,
    decode_request, encode_frame, encode_notification, encode_reply, encode_request,
};
pub use multi::{MultiOp, MultiRequest, MultiResponse, MultiResult};
pub use records::{
    Acl, AddWatchRequest, AuthPacket, CheckVersionRequest, CheckWatchesRequest, ClientInfo,
    ConnectRequest, ConnectResponse, Create2Response, CreateRequest, CreateResponse,
    CreateTtlRequest, DeleteContainerRequest, DeleteRequest, ErrorResponse, ExistsRequest,
    ExistsResponse, GetAclRequest, GetAclResponse, GetAllChildrenNumberRequest,
    GetAllChildrenNumberResponse, GetChildren2Request, GetChildren2Response, GetChildrenRequest,
    GetChildrenResponse, GetDataRequest, GetDataResponse, GetEphemeralsRequest,
    GetEphemeralsResponse, GetSaslRequest, Id, MultiHeader, ReconfigRequest, RemoveWatchesRequest,
    ReplyHeader, RequestHeader, SetAclRequest, SetAclResponse, SetDataRequest, SetDataResponse,
    SetSaslResponse, SetWatches, SetWatches2, Stat, SyncRequest, SyncResponse, WatcherEvent,
    WhoAmIResponse,
};
