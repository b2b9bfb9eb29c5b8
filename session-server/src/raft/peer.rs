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
use crate::tls::{Caller, Pick, Quiet, Tls};

/// Serves the peer service on `listener` until aborted; over mutual TLS
/// with `tls`.
pub(super) fn serve(
    listener: TcpListener,
    inner: Arc<Inner>,
    tls: Option<Arc<Tls>>,
) -> tokio::task::AbortHandle {
    let metrics = Arc::clone(inner.machine.metrics());
    let pick: Pick = |material| material.peer_server.clone();
    let incoming = crate::tls::incoming(
        listener,
        tls.clone().map(|tls| (tls, pick)),
        "peer",
        metrics,
    );
    let service = PeerServer::new(PeerService {
        inner,
        tls,
        quiet: Quiet::default(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
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
    /// The certificates, when peers talk over mutual TLS: every call's
    /// certificate must name the member it comes from.
    tls: Option<Arc<Tls>>,
    quiet: Quiet,
}

impl PeerService {
    /// Refuses a call over TLS whose caller's certificate does not name
    /// the member `claimed` (the one the call says it comes from), or, when
    /// the call claims none, any member of the cluster. Each refusal is
    /// counted, and logged naming the caller (once per 10 s per caller).
    fn check<T>(&self, request: &Request<T>, claimed: Option<u64>) -> Result<(), Status> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let caller = request.extensions().get::<Caller>();
        let certificate = caller.and_then(|caller| caller.certificate.as_ref());
        let named = certificate.and_then(|certificate| match claimed {
            Some(node) => tls.names_member(certificate, node).then_some(node),
            None => self
                .members()
                .into_iter()
                .find(|&node| tls.names_member(certificate, node)),
        });
        if named.is_some() {
            return Ok(());
        }
        self.inner.machine.metrics().peers_refused.inc();
        let expected = match claimed {
            Some(node) => tls.peer_name(node),
            None => format!("any member ({})", tls.peer_name_template()),
        };
        let remote = caller.map(|caller| caller.remote);
        if remote.is_none_or(|remote| self.quiet.should_log(remote)) {
            warn!(remote = ?remote, claimed_server = ?claimed, expected_name = %expected,
                fingerprint = ?caller.and_then(Caller::fingerprint),
                "refusing a peer: its certificate does not name the server it claims to be");
        }
        Err(Status::permission_denied(format!(
            "the caller's certificate is not valid for {expected}"
        )))
    }

    /// The members this server knows of: its configured routes and the
    /// cluster's membership (learners included).
    fn members(&self) -> Vec<u64> {
        let mut members: Vec<u64> = self.inner.peers.routed().collect();
        let metrics = self.inner.raft.metrics();
        members.extend(
            metrics
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id),
        );
        members
    }
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
        self.check(&request, rpc.vote.leader_id().voted_for())?;
        let result: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            self.inner.raft.append_entries(rpc).await;
        network::encode(&result).map(Response::new)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<u64> =
            network::decode(request.get_ref()).map_err(|err| undecodable("vote", &err))?;
        self.check(&request, rpc.vote.leader_id().voted_for())?;
        let result: Result<VoteResponse<u64>, RaftError<u64>> = self.inner.raft.vote(rpc).await;
        network::encode(&result).map(Response::new)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = network::decode(request.get_ref())
            .map_err(|err| undecodable("snapshot chunk", &err))?;
        self.check(&request, rpc.vote.leader_id().voted_for())?;
        let result: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> =
            self.inner.raft.install_snapshot(rpc).await;
        network::encode(&result).map(Response::new)
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        self.check(&request, Some(u64::from(request.get_ref().from_node)))?;
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
        self.check(&request, Some(u64::from(request.get_ref().from_node)))?;
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
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.check(&request, None)?;
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
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.check(&request, None)?;
        Ok(Response::new(self.inner.status()))
    }

    async fn change_membership(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check(&request, None)?;
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
