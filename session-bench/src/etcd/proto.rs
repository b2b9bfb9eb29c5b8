//! The subset of etcd's v3 gRPC API the benchmark speaks, written by hand
//! as prost messages (no `protoc`, no code generation). Field numbers and
//! types follow etcd's `etcdserverpb` (rpc.proto) and `mvccpb` (kv.proto)
//! packages; fields the benchmark never sets or reads are left out, which
//! protobuf allows (unknown fields are skipped when decoding).

/// The gRPC method paths, `/package.Service/Method`.
pub(crate) mod path {
    /// KV.Range: read a key or a range of keys.
    pub(crate) const RANGE: &str = "/etcdserverpb.KV/Range";
    /// KV.Put: write a key.
    pub(crate) const PUT: &str = "/etcdserverpb.KV/Put";
    /// KV.DeleteRange: delete a key or a range of keys.
    pub(crate) const DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
    /// Watch.Watch: the bidirectional watch stream.
    pub(crate) const WATCH: &str = "/etcdserverpb.Watch/Watch";
    /// Lease.LeaseGrant: create a lease.
    pub(crate) const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
    /// Lease.LeaseRevoke: end a lease and delete its keys.
    pub(crate) const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
    /// Lease.LeaseKeepAlive: the bidirectional keep-alive stream.
    pub(crate) const LEASE_KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
    /// Maintenance.Status: a member's view of the cluster (its leader).
    pub(crate) const STATUS: &str = "/etcdserverpb.Maintenance/Status";
}

/// The header of every response.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ResponseHeader {
    /// The cluster's id.
    #[prost(uint64, tag = "1")]
    pub(crate) cluster_id: u64,
    /// The id of the member that answered.
    #[prost(uint64, tag = "2")]
    pub(crate) member_id: u64,
    /// The key-value store's revision when the request was applied.
    #[prost(int64, tag = "3")]
    pub(crate) revision: i64,
    /// The Raft term when the request was applied.
    #[prost(uint64, tag = "4")]
    pub(crate) raft_term: u64,
}

/// A key with its value and revisions (`mvccpb.KeyValue`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct KeyValue {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    /// The revision of the key's creation.
    #[prost(int64, tag = "2")]
    pub(crate) create_revision: i64,
    /// The revision of the key's last change.
    #[prost(int64, tag = "3")]
    pub(crate) mod_revision: i64,
    /// Changes to the key since its creation.
    #[prost(int64, tag = "4")]
    pub(crate) version: i64,
    /// The value.
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) value: Vec<u8>,
    /// The lease the key is attached to (0: none).
    #[prost(int64, tag = "6")]
    pub(crate) lease: i64,
}

/// `KV.Range` request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RangeRequest {
    /// The first key.
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    /// One past the last key (empty: just `key`).
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) range_end: Vec<u8>,
    /// At most this many keys (0: no limit).
    #[prost(int64, tag = "3")]
    pub(crate) limit: i64,
    /// Answer from the local member without a quorum read.
    #[prost(bool, tag = "7")]
    pub(crate) serializable: bool,
    /// Keys without values.
    #[prost(bool, tag = "8")]
    pub(crate) keys_only: bool,
    /// Only the count of keys.
    #[prost(bool, tag = "9")]
    pub(crate) count_only: bool,
}

/// `KV.Range` response.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RangeResponse {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    /// The keys found (none with `count_only`).
    #[prost(message, repeated, tag = "2")]
    pub(crate) kvs: Vec<KeyValue>,
    /// More keys than `limit` were in range.
    #[prost(bool, tag = "3")]
    pub(crate) more: bool,
    /// How many keys were in range.
    #[prost(int64, tag = "4")]
    pub(crate) count: i64,
}

/// `KV.Put` request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PutRequest {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
    /// The lease to attach the key to (0: none).
    #[prost(int64, tag = "3")]
    pub(crate) lease: i64,
}

/// `KV.Put` response.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PutResponse {
    /// The header; its revision is the put's.
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
}

/// `KV.DeleteRange` request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeleteRangeRequest {
    /// The first key.
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    /// One past the last key (empty: just `key`).
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) range_end: Vec<u8>,
}

/// `KV.DeleteRange` response.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeleteRangeResponse {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    /// How many keys were deleted.
    #[prost(int64, tag = "2")]
    pub(crate) deleted: i64,
}

/// `Lease.LeaseGrant` request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseGrantRequest {
    /// The time to live asked for, in seconds.
    #[prost(int64, tag = "1")]
    pub(crate) ttl: i64,
    /// The lease id asked for (0: the server picks one).
    #[prost(int64, tag = "2")]
    pub(crate) id: i64,
}

/// `Lease.LeaseGrant` response.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseGrantResponse {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    /// The lease's id.
    #[prost(int64, tag = "2")]
    pub(crate) id: i64,
    /// The time to live granted, in seconds.
    #[prost(int64, tag = "3")]
    pub(crate) ttl: i64,
    /// Why the lease was not granted, if it was not.
    #[prost(string, tag = "4")]
    pub(crate) error: String,
}

/// `Lease.LeaseRevoke` request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseRevokeRequest {
    /// The lease to end.
    #[prost(int64, tag = "1")]
    pub(crate) id: i64,
}

/// `Lease.LeaseRevoke` response.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseRevokeResponse {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
}

/// One request on the `Lease.LeaseKeepAlive` stream.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseKeepAliveRequest {
    /// The lease to renew.
    #[prost(int64, tag = "1")]
    pub(crate) id: i64,
}

/// One response on the `Lease.LeaseKeepAlive` stream.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseKeepAliveResponse {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    /// The lease renewed.
    #[prost(int64, tag = "2")]
    pub(crate) id: i64,
    /// Its time to live from now, in seconds; 0 or less when the lease
    /// does not exist (any more).
    #[prost(int64, tag = "3")]
    pub(crate) ttl: i64,
}

/// One request on the `Watch.Watch` stream.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchRequest {
    /// What the request asks.
    #[prost(oneof = "watch_request::RequestUnion", tags = "1, 2")]
    pub(crate) request_union: Option<watch_request::RequestUnion>,
}

/// The variants of [`WatchRequest`].
pub(crate) mod watch_request {
    /// What a watch request asks.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum RequestUnion {
        /// Start a watch.
        #[prost(message, tag = "1")]
        CreateRequest(super::WatchCreateRequest),
        /// End a watch.
        #[prost(message, tag = "2")]
        CancelRequest(super::WatchCancelRequest),
    }
}

/// Which events a watch leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum FilterType {
    /// Leave out puts.
    NoPut = 0,
    /// Leave out deletes.
    NoDelete = 1,
}

/// Start a watch of a key or range.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchCreateRequest {
    /// The first key.
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    /// One past the last key (empty: just `key`).
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) range_end: Vec<u8>,
    /// The revision to watch from (0: from now).
    #[prost(int64, tag = "3")]
    pub(crate) start_revision: i64,
    /// The events left out.
    #[prost(enumeration = "FilterType", repeated, tag = "5")]
    pub(crate) filters: Vec<i32>,
}

/// End a watch.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchCancelRequest {
    /// The watch to end.
    #[prost(int64, tag = "1")]
    pub(crate) watch_id: i64,
}

/// One response on the `Watch.Watch` stream.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchResponse {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    /// The watch this response is about.
    #[prost(int64, tag = "2")]
    pub(crate) watch_id: i64,
    /// The answer to a create request.
    #[prost(bool, tag = "3")]
    pub(crate) created: bool,
    /// The watch was cancelled (by request or by the server).
    #[prost(bool, tag = "4")]
    pub(crate) canceled: bool,
    /// The revision compacted, when the watch asked for an older one.
    #[prost(int64, tag = "5")]
    pub(crate) compact_revision: i64,
    /// Why the watch was cancelled.
    #[prost(string, tag = "6")]
    pub(crate) cancel_reason: String,
    /// The events, in revision order.
    #[prost(message, repeated, tag = "11")]
    pub(crate) events: Vec<Event>,
}

/// What an event did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum EventType {
    /// The key was written.
    Put = 0,
    /// The key was deleted (by a delete, or by its lease's end).
    Delete = 1,
}

/// A change to a key (`mvccpb.Event`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Event {
    /// Put or delete.
    #[prost(enumeration = "EventType", tag = "1")]
    pub(crate) r#type: i32,
    /// The key after the change (for a delete: its key and the revision).
    #[prost(message, optional, tag = "2")]
    pub(crate) kv: Option<KeyValue>,
}

/// `Maintenance.Status` request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StatusRequest {}

/// `Maintenance.Status` response.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StatusResponse {
    /// The header; `member_id` is the member that answered.
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    /// The member's etcd version.
    #[prost(string, tag = "2")]
    pub(crate) version: String,
    /// The member id of the leader it knows (0: none).
    #[prost(uint64, tag = "4")]
    pub(crate) leader: u64,
    /// Its Raft index.
    #[prost(uint64, tag = "5")]
    pub(crate) raft_index: u64,
    /// Its Raft term.
    #[prost(uint64, tag = "6")]
    pub(crate) raft_term: u64,
}
