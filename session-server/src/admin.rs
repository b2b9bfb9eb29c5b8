//! The admin gRPC service (session-wire's `session.admin.v1.Admin`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use futures_util::{Stream, StreamExt};
use session_core::{Liveness, Replica, SessionEntry, SessionId};
use session_wire::admin::v1::{
    self as admin, AddLearnerRequest, ClusterMember, ClusterStatusRequest, ClusterStatusResponse,
    DumpExpiryRequest, DumpExpiryResponse, ExpireSessionRequest, ExpireSessionResponse,
    ExpiryBucket, GetSessionRequest, GetSessionResponse, ListSessionsRequest, ListSessionsResponse,
    MemberRole, MembershipResponse, PromoteLearnerRequest, RemoveMemberRequest, StatsRequest,
    StatsResponse, WatchSessionEventsRequest,
    admin_server::{Admin, AdminServer},
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::metrics::OpKind;
use crate::raft::{MembershipChange, MembershipRefusal};
use crate::server::{SessionEvent, SessionEventKind, Shared, stopped};
use crate::tls::{Caller, Pick, Quiet};

/// Serves the admin service on `listener` until `shutdown` resolves: over
/// TLS when the server has certificates (requiring client certificates
/// when it has a client authority), and, with `token`, only to calls that
/// carry it (`authorization: Bearer TOKEN`).
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    token: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let pick: Pick = |material| Some(Arc::clone(&material.admin));
    let incoming = crate::tls::incoming(
        listener,
        shared.tls.clone().map(|tls| (tls, pick)),
        "admin",
        Arc::clone(&shared.metrics),
    );
    let guard = TokenGuard {
        digest: token.as_deref().map(digest),
        shared: Arc::clone(&shared),
        quiet: Arc::new(Quiet::default()),
    };
    let service = AdminService {
        shared,
        shutdown: shutdown.clone(),
    };
    let result = tonic::transport::Server::builder()
        .add_service(AdminServer::with_interceptor(service, move |request| {
            guard.check(request)
        }))
        .serve_with_incoming_shutdown(incoming, async move { stopped(&mut shutdown).await })
        .await;
    if let Err(err) = result {
        warn!(error = %err, "admin service stopped");
    }
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Lets through only the calls that carry the admin token, when there is
/// one. Tokens are compared by their SHA-256 digests, so the comparison's
/// time tells nothing of the token.
#[derive(Clone)]
struct TokenGuard {
    digest: Option<[u8; 32]>,
    shared: Arc<Shared>,
    quiet: Arc<Quiet>,
}

impl TokenGuard {
    fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.digest else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if given.is_some_and(|token| digest(token.trim()) == *expected) {
            return Ok(request);
        }
        self.shared.metrics.admin_calls_refused.inc();
        let remote = request
            .extensions()
            .get::<Caller>()
            .map(|caller| caller.remote);
        if remote.is_none_or(|remote| self.quiet.should_log(remote)) {
            warn!(remote = ?remote, token_given = given.is_some(),
                "refusing an admin call: no valid bearer token");
        }
        Err(Status::unauthenticated(
            "this admin needs a bearer token: send authorization: Bearer TOKEN",
        ))
    }
}

/// Who made an admin call, for the log of calls that change state: its
/// address, and how it proved itself (a certificate's fingerprint, the
/// token, or nothing on a loopback admin).
fn who<T>(request: &Request<T>) -> String {
    let caller = request.extensions().get::<Caller>();
    let remote = caller.map_or_else(|| "unknown".to_owned(), |caller| caller.remote.to_string());
    let token = request.metadata().contains_key("authorization");
    match (caller.and_then(Caller::fingerprint), token) {
        (Some(fingerprint), true) => format!("{remote} (certificate {fingerprint}, token)"),
        (Some(fingerprint), false) => format!("{remote} (certificate {fingerprint})"),
        (None, true) => format!("{remote} (token)"),
        (None, false) => remote,
    }
}

struct AdminService {
    shared: Arc<Shared>,
    /// Ends event streams at shutdown, which waits for open streams.
    shutdown: watch::Receiver<bool>,
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What the admin shows of one session: the replicated entry, what this
/// server's liveness table knows of it, and its ephemerals.
struct Row {
    id: SessionId,
    timeout: std::time::Duration,
    ephemerals: usize,
    last_touch: Option<StdInstant>,
    deadline: Option<StdInstant>,
    closing: bool,
}

fn row(replica: &Replica, liveness: &Liveness, entry: &SessionEntry) -> Row {
    let info = liveness.info(entry.id);
    Row {
        id: entry.id,
        timeout: entry.timeout,
        ephemerals: replica.tree().ephemeral_count(entry.id.as_u64()),
        last_touch: info.as_ref().map(|info| info.last_touch),
        deadline: info.as_ref().and_then(|info| info.deadline),
        closing: info.as_ref().is_some_and(|info| info.closing),
    }
}

impl AdminService {
    fn rows(&self, only: Option<SessionId>) -> Vec<Row> {
        let state = self.shared.machine.state();
        let liveness = self.shared.machine.liveness();
        let replica = &state.replica;
        match only {
            Some(id) => replica
                .session(id)
                .map(|entry| row(replica, &liveness, entry))
                .into_iter()
                .collect(),
            None => replica
                .sessions()
                .map(|entry| row(replica, &liveness, entry))
                .collect(),
        }
    }

    fn describe(&self, row: &Row, now: StdInstant) -> admin::SessionInfo {
        let connection = self.shared.machine.connections.get(&row.id);
        let state = match (row.closing, connection.is_some()) {
            (true, _) => admin::SessionState::Closing,
            (false, true) => admin::SessionState::Connected,
            (false, false) => admin::SessionState::Disconnected,
        };
        admin::SessionInfo {
            session_id: row.id.as_u64(),
            negotiated_timeout_ms: u32::try_from(row.timeout.as_millis()).unwrap_or(u32::MAX),
            remote_address: connection
                .as_ref()
                .map(|handle| handle.remote().to_string())
                .unwrap_or_default(),
            last_heard_ms_ago: row
                .last_touch
                .map_or(0, |touch| millis(now.saturating_duration_since(touch))),
            ephemeral_count: u32::try_from(row.ephemerals).unwrap_or(u32::MAX),
            state: state.into(),
            expires_in_ms: row.deadline.map_or(0, |deadline| {
                millis(deadline.saturating_duration_since(now))
            }),
            client: connection
                .as_ref()
                .map(|handle| handle.client().to_owned())
                .unwrap_or_default(),
        }
    }
}

fn gauge(gauge: &prometheus_client::metrics::gauge::Gauge) -> u64 {
    u64::try_from(gauge.get()).unwrap_or(0)
}

fn session_id(raw: u64) -> Result<SessionId, Status> {
    if raw == 0 {
        return Err(Status::invalid_argument("session id 0 is not a session"));
    }
    Ok(SessionId::from_u64(raw))
}

/// A server id from the admin, checked.
fn node_id(raw: u32) -> Result<u64, Status> {
    session_core::ServerId::new(u64::from(raw))
        .map(|id| u64::from(id.get()))
        .map_err(|err| Status::invalid_argument(err.to_string()))
}

impl AdminService {
    /// Carries out a membership change, or says why it cannot be.
    async fn change(
        &self,
        change: MembershipChange,
        caller: String,
    ) -> Result<Response<MembershipResponse>, Status> {
        let Some(cluster) = self.shared.engine.cluster() else {
            return Err(Status::failed_precondition(
                "this server keeps its state in memory only (--in-memory): it cannot form a cluster",
            ));
        };
        info!(?change, caller, "membership change asked by the admin");
        match cluster.change(change).await {
            Ok(view) => Ok(Response::new(MembershipResponse {
                voters: view.voters.iter().map(|&id| id as u32).collect(),
                learners: view.learners.iter().map(|&id| id as u32).collect(),
            })),
            Err(MembershipRefusal::Precondition(detail)) => {
                Err(Status::failed_precondition(detail))
            }
            Err(MembershipRefusal::Unavailable(detail)) => Err(Status::unavailable(detail)),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        if let Some(cluster) = self.shared.engine.cluster() {
            return Ok(Response::new(cluster.status().await));
        }
        let me = u32::from(self.shared.config.server_id.get());
        Ok(Response::new(ClusterStatusResponse {
            node_id: me,
            leader_id: me,
            term: 0,
            members: vec![ClusterMember {
                node_id: me,
                peer_address: String::new(),
                role: MemberRole::Leader as i32,
                voter: true,
                applied_zxid: self.shared.machine.zxid(),
                lag_entries: Some(0),
            }],
        }))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let caller = who(&request);
        let request = request.into_inner();
        let node = node_id(request.node_id)?;
        let address = request.peer_address.trim().to_owned();
        if address
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(Status::invalid_argument(format!(
                "peer address {address:?} is not HOST:PORT"
            )));
        }
        self.change(MembershipChange::AddLearner { node, address }, caller)
            .await
    }

    async fn promote_learner(
        &self,
        request: Request<PromoteLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let caller = who(&request);
        let node = node_id(request.into_inner().node_id)?;
        self.change(MembershipChange::Promote { node }, caller)
            .await
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let caller = who(&request);
        let node = node_id(request.into_inner().node_id)?;
        self.change(MembershipChange::Remove { node }, caller).await
    }

    async fn list_sessions(
        &self,
        _request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let now = Instant::now().into_std();
        let rows = self.rows(None);
        let mut sessions: Vec<_> = rows.iter().map(|row| self.describe(row, now)).collect();
        sessions.sort_by_key(|session| session.session_id);
        Ok(Response::new(ListSessionsResponse { sessions }))
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<GetSessionResponse>, Status> {
        let id = session_id(request.into_inner().session_id)?;
        let now = Instant::now().into_std();
        let row = self
            .rows(Some(id))
            .pop()
            .ok_or_else(|| Status::not_found(format!("no session {id}")))?;
        Ok(Response::new(GetSessionResponse {
            session: Some(self.describe(&row, now)),
        }))
    }

    async fn expire_session(
        &self,
        request: Request<ExpireSessionRequest>,
    ) -> Result<Response<ExpireSessionResponse>, Status> {
        let caller = who(&request);
        let id = session_id(request.into_inner().session_id)?;
        if !self.shared.expire_now(id) {
            return Err(Status::not_found(format!("no session {id}")));
        }
        info!(session = %id, caller, "session expired by the admin");
        Ok(Response::new(ExpireSessionResponse {}))
    }

    async fn stats(
        &self,
        _request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let (sessions, zxid, nodes) = {
            let state = self.shared.machine.state();
            (
                state.replica.session_count(),
                state.replica.zxid(),
                state.replica.tree().node_count(),
            )
        };
        let metrics = &self.shared.metrics;
        let ops_by_kind: HashMap<String, u64> = OpKind::ALL
            .iter()
            .map(|&kind| (kind.name().to_owned(), metrics.op_count(kind)))
            .collect();
        Ok(Response::new(StatsResponse {
            sessions: sessions as u64,
            connections: u64::try_from(metrics.connections.get()).unwrap_or(0),
            sessions_expired: self.shared.metrics.sessions_expired.get(),
            ops_by_kind,
            uptime_ms: millis(self.shared.started.elapsed()),
            server_id: u32::from(self.shared.config.server_id.get()),
            zxid,
            nodes: nodes as u64,
            durable: matches!(self.shared.config.storage, crate::Storage::Disk(_)),
            snapshot_zxid: gauge(&metrics.snapshot_zxid),
            snapshot_bytes: gauge(&metrics.snapshot_bytes),
            log_bytes: gauge(&metrics.log_bytes),
        }))
    }

    async fn dump_expiry(
        &self,
        _request: Request<DumpExpiryRequest>,
    ) -> Result<Response<DumpExpiryResponse>, Status> {
        let now = Instant::now().into_std();
        let buckets = {
            self.shared
                .machine
                .liveness()
                .expiry_buckets()
                .into_iter()
                .map(|(due, ids)| ExpiryBucket {
                    due_in_ms: due
                        .map_or(u64::MAX, |due| millis(due.saturating_duration_since(now))),
                    session_ids: ids.into_iter().map(SessionId::as_u64).collect(),
                })
                .collect()
        };
        Ok(Response::new(DumpExpiryResponse {
            tick_ms: u32::try_from(self.shared.config.timeouts.tick().as_millis())
                .unwrap_or(u32::MAX),
            buckets,
        }))
    }

    type WatchSessionEventsStream =
        Pin<Box<dyn Stream<Item = Result<admin::SessionEvent, Status>> + Send + 'static>>;

    async fn watch_session_events(
        &self,
        _request: Request<WatchSessionEventsRequest>,
    ) -> Result<Response<Self::WatchSessionEventsStream>, Status> {
        let events = self.shared.session_events.subscribe();
        let stream = futures_util::stream::unfold(events, |mut events| async move {
            match events.recv().await {
                Ok(event) => Some((Ok(session_event(&event)), events)),
                Err(broadcast::error::RecvError::Lagged(missed)) => Some((
                    Err(Status::data_loss(format!(
                        "{missed} session events were dropped because this watcher read too slowly"
                    ))),
                    events,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        let mut shutdown = self.shutdown.clone();
        let stream = stream.take_until(async move { stopped(&mut shutdown).await });
        Ok(Response::new(Box::pin(stream)))
    }
}

fn session_event(event: &SessionEvent) -> admin::SessionEvent {
    let kind = match event.kind {
        SessionEventKind::Created => admin::SessionEventKind::Created,
        SessionEventKind::Reattached => admin::SessionEventKind::Reattached,
        SessionEventKind::Expired => admin::SessionEventKind::Expired,
        SessionEventKind::Closed => admin::SessionEventKind::Closed,
    };
    admin::SessionEvent {
        kind: kind.into(),
        session_id: event.id.as_u64(),
        remote_address: event
            .remote
            .map(|remote| remote.to_string())
            .unwrap_or_default(),
        negotiated_timeout_ms: event.timeout_ms,
        zxid: event.zxid,
    }
}
