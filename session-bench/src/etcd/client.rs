//! A small etcd v3 client: one gRPC connection (a tonic [`Channel`], plain
//! text HTTP/2) and the calls the scenarios make, unary and streaming, the
//! way tonic-generated clients make them (`Grpc::ready`, then `unary` or
//! `streaming` with a [`ProstCodec`] and the method's path).

use std::time::Duration;

use futures_util::Stream;
use tonic::Streaming;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use super::proto::{
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, StatusRequest, StatusResponse,
    WatchRequest, WatchResponse, path,
};
use crate::client::BenchError;

/// How long opening the TCP connection may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Calls a connection queues before its first call is sent (tonic's
/// default, 1024, would cap a pipelined window above it).
const CALLS_QUEUED: usize = 1 << 16;

/// One gRPC connection to one etcd member. Clones share the connection
/// (HTTP/2 streams on it, one per call).
#[derive(Debug, Clone)]
pub(crate) struct EtcdClient {
    grpc: Grpc<Channel>,
    addr: String,
}

impl EtcdClient {
    /// Opens a connection to the member whose client URL is
    /// `http://{addr}`.
    pub(crate) async fn connect(addr: &str) -> Result<EtcdClient, BenchError> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(CONNECT_LIMIT)
            .tcp_nodelay(true)
            .buffer_size(CALLS_QUEUED)
            .connect()
            .await
            .map_err(|err| format!("cannot connect to etcd at {addr}: {err}"))?;
        Ok(EtcdClient {
            grpc: Grpc::new(channel),
            addr: addr.to_owned(),
        })
    }

    /// The member's address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// A handle on the connection, ready for one call.
    async fn ready(&self) -> Result<Grpc<Channel>, tonic::Status> {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|err| tonic::Status::unavailable(format!("connection not ready: {err}")))?;
        Ok(grpc)
    }

    /// One unary call of the method at `path`.
    async fn unary<Q, R>(&self, path: &'static str, request: Q) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.ready().await?;
        let codec = ProstCodec::<Q, R>::default();
        grpc.unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(path),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
    }

    /// Opens the bidirectional stream at `path`: `outbound` is sent as it
    /// yields. Returns once the server has answered the call, which etcd
    /// does with its first message: the first request must be on its way.
    async fn streaming<Q, R>(
        &self,
        path: &'static str,
        outbound: impl Stream<Item = Q> + Send + 'static,
    ) -> Result<Streaming<R>, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.ready().await?;
        let codec = ProstCodec::<Q, R>::default();
        grpc.streaming(
            tonic::Request::new(outbound),
            PathAndQuery::from_static(path),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
    }

    /// `KV.Range`.
    pub(crate) async fn range(
        &self,
        request: RangeRequest,
    ) -> Result<RangeResponse, tonic::Status> {
        self.unary(path::RANGE, request).await
    }

    /// `KV.Put`.
    pub(crate) async fn put(&self, request: PutRequest) -> Result<PutResponse, tonic::Status> {
        self.unary(path::PUT, request).await
    }

    /// `KV.DeleteRange`.
    pub(crate) async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, tonic::Status> {
        self.unary(path::DELETE_RANGE, request).await
    }

    /// `Lease.LeaseGrant`.
    pub(crate) async fn lease_grant(
        &self,
        request: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, tonic::Status> {
        self.unary(path::LEASE_GRANT, request).await
    }

    /// `Lease.LeaseRevoke`.
    pub(crate) async fn lease_revoke(
        &self,
        request: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, tonic::Status> {
        self.unary(path::LEASE_REVOKE, request).await
    }

    /// `Maintenance.Status`.
    pub(crate) async fn status(&self) -> Result<StatusResponse, tonic::Status> {
        self.unary(path::STATUS, StatusRequest {}).await
    }

    /// `Lease.LeaseKeepAlive`: one stream renewing any number of leases,
    /// one response per request, in request order (etcd serves a
    /// keep-alive stream one request at a time).
    pub(crate) async fn keep_alive(
        &self,
        outbound: impl Stream<Item = LeaseKeepAliveRequest> + Send + 'static,
    ) -> Result<Streaming<LeaseKeepAliveResponse>, tonic::Status> {
        self.streaming(path::LEASE_KEEP_ALIVE, outbound).await
    }

    /// `Watch.Watch`.
    pub(crate) async fn watch(
        &self,
        outbound: impl Stream<Item = WatchRequest> + Send + 'static,
    ) -> Result<Streaming<WatchResponse>, tonic::Status> {
        self.streaming(path::WATCH, outbound).await
    }

    /// Grants a lease of `ttl_s` seconds; its id.
    pub(crate) async fn grant(&self, ttl_s: i64) -> Result<i64, BenchError> {
        let granted = self
            .lease_grant(LeaseGrantRequest { ttl: ttl_s, id: 0 })
            .await?;
        if !granted.error.is_empty() {
            return Err(format!("lease grant: {}", granted.error).into());
        }
        Ok(granted.id)
    }

    /// Puts `value` at `key`, attached to `lease` (0: none); the revision
    /// of the put.
    pub(crate) async fn put_value(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<i64, BenchError> {
        let put = self
            .put(PutRequest {
                key: key.as_bytes().to_vec(),
                value,
                lease,
            })
            .await?;
        Ok(put.header.map_or(0, |header| header.revision))
    }

    /// How many keys start with `prefix` (a linearizable read).
    pub(crate) async fn count_prefix(&self, prefix: &str) -> Result<u64, BenchError> {
        let counted = self
            .range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                count_only: true,
                ..RangeRequest::default()
            })
            .await?;
        Ok(u64::try_from(counted.count)?)
    }

    /// The keys that start with `prefix`, without their values (a
    /// linearizable read).
    pub(crate) async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, BenchError> {
        let listed = self
            .range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                keys_only: true,
                ..RangeRequest::default()
            })
            .await?;
        Ok(listed
            .kvs
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect())
    }
}

/// The `range_end` that makes a range of every key starting with
/// `prefix`: the prefix with its last byte that is not 0xff incremented
/// (etcd's own rule).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or nothing): every key from `prefix` on.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/bench/expiry/"), b"/bench/expiry0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
