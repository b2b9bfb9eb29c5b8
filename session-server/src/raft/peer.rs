//! The server side of the peer service: what the other servers of the
//! cluster ask this one (see `session-wire/proto/session/peer/v1/peer.proto`).

use std::sync::Arc;
use std::time::Instant;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use session_core::SessionId;
use session_wire::peer::v1::peer_server::{Peer, PeerServer};
use session_wire::peer::v1::{
    ForwardRequest, ForwardResponse, RaftMessage, ReadIndexRequest, ReadIndexResponse,
    StatusRequest, StatusResponse, TouchRequest, TouchResponse,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use super::engine::{Inner, MembershipChange, MembershipRefusal, MembershipView};
use super::network::{self, MAX_MESSAGE_BYTES};
use super::{Tagged, TypeConfig};
use crate::engine::EngineError;
use crate::state::Role;

/// Serves the peer service on `listener` until aborted.
pub(super) fn serve(listener: TcpListener, inner: Arc<Inner>) -> tokio::task::AbortHandle {
    let service = PeerServer::new(PeerService { inner })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        if let Err(err) = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            warn!(error = %err, "the peer listener stopped");
        }
    })
    .abort_handle()
}

struct PeerService {
    inner: Arc<Inner>,
}

fn undecodable(what: &str, err: &postcard::Error) -> Status {
    Status::invalid_argument(format!("cannot decode the {what}: {err}"))
}

fn unavailable(err: &EngineError) -> Status {
    Status::unavailable(err.to_string())
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = network::decode(request.get_ref())
            .map_err(|err| undecodable("append entries", &err))?;
        let result: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            self.inner.raft.append_entries(rpc).await;
        network::encode(&result).map(Response::new)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<u64> =
            network::decode(request.get_ref()).map_err(|err| undecodable("vote", &err))?;
        let result: Result<VoteResponse<u64>, RaftError<u64>> = self.inner.raft.vote(rpc).await;
        network::encode(&result).map(Response::new)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = network::decode(request.get_ref())
            .map_err(|err| undecodable("snapshot chunk", &err))?;
        let result: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> =
            self.inner.raft.install_snapshot(rpc).await;
        network::encode(&result).map(Response::new)
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let request = request.into_inner();
        let items: Vec<Tagged> = postcard::from_bytes(&request.batch)
            .map_err(|err| undecodable("forwarded writes", &err))?;
        if items
            .iter()
            .any(|tagged| u32::from(tagged.origin) != request.from_node)
        {
            return Err(Status::invalid_argument(format!(
                "server {} forwarded writes tagged with another server's id",
                request.from_node
            )));
        }
        let last_zxid = self
            .inner
            .order_forwarded(items)
            .await
            .map_err(|err| unavailable(&err))?;
        Ok(Response::new(ForwardResponse { last_zxid }))
    }

    async fn touch(
        &self,
        request: Request<TouchRequest>,
    ) -> Result<Response<TouchResponse>, Status> {
        let request = request.into_inner();
        let now = Instant::now();
        let mut unknown = Vec::new();
        {
            let mut liveness = self.inner.machine.liveness();
            for raw in &request.session_ids {
                if !liveness.touch_any(SessionId::from_u64(*raw), now) {
                    unknown.push(*raw);
                }
            }
        }
        if self.inner.machine.role() != Role::Leading {
            debug!(
                from = request.from_node,
                "touches reported to a server that does not lead"
            );
        }
        Ok(Response::new(TouchResponse {
            unknown_session_ids: unknown,
        }))
    }

    async fn read_index(
        &self,
        _request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        if self.inner.leader() != Some(self.inner.me) {
            return Err(Status::unavailable(format!(
                "server {} does not lead",
                self.inner.me
            )));
        }
        let zxid = self
            .inner
            .read_index()
            .await
            .map_err(|err| unavailable(&err))?;
        Ok(Response::new(ReadIndexResponse { zxid }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.inner.status()))
    }

    async fn change_membership(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let change: MembershipChange = network::decode(request.get_ref())
            .map_err(|err| undecodable("membership change", &err))?;
        if self.inner.leader() != Some(self.inner.me) {
            let refused: Result<MembershipView, MembershipRefusal> = Err(
                MembershipRefusal::Unavailable(format!("server {} does not lead", self.inner.me)),
            );
            return network::encode(&refused).map(Response::new);
        }
        let result = self.inner.change_membership(change).await;
        network::encode(&result).map(Response::new)
    }
}
