//! The client side of the peer service: how this server reaches the others
//! of its cluster, for Raft's messages and for its own (forwarded writes,
//! touches, read indexes, status).
//!
//! Raft's messages travel as postcard-encoded openraft types inside the
//! peer service's `RaftMessage`; the answer is the encoded `Result` of the
//! callee's `Raft` method, so a refusal there comes back as openraft's own
//! error. A peer that cannot be reached is `Unreachable` to openraft, which
//! then backs off before trying it again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use session_wire::peer::v1::RaftMessage;
use session_wire::peer::v1::peer_client::PeerClient;
use tonic::transport::{Channel, Endpoint};

use super::TypeConfig;
use crate::tls::{PeerDialer, Quiet, Tls};

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The largest message the peer service takes or sends: a snapshot chunk
/// or a batch of log entries, with room to spare.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// No address is known for the peer.
    #[error("no address is known for server {0}")]
    NoAddress(u64),
    /// The address is not one tonic can dial.
    #[error("server {node}'s address {address:?} is not usable: {detail}")]
    BadAddress {
        node: u64,
        address: String,
        detail: String,
    },
    /// The call failed on the way, or the peer refused it.
    #[error("server {node}: {status}")]
    Call { node: u64, status: tonic::Status },
    /// The call took longer than allowed.
    #[error("server {node} did not answer within {timeout:?}")]
    Timeout { node: u64, timeout: Duration },
    /// The answer could not be decoded.
    #[error("server {node} sent an answer this build cannot read: {detail}")]
    Decode { node: u64, detail: String },
}

/// The peers of this server: where each is, and one channel to each.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    inner: Arc<PeersInner>,
}

#[derive(Debug)]
struct PeersInner {
    /// How this server reaches each peer, from its configuration; these
    /// take precedence over the addresses in the cluster's membership (so a
    /// server can reach a peer through a route of its own).
    routes: BTreeMap<u64, String>,
    /// Channels by peer, with the address each was made for.
    channels: Mutex<HashMap<u64, (String, Channel)>>,
    /// The certificates, when peers talk over mutual TLS.
    tls: Option<Arc<Tls>>,
    /// Keeps the log of failed TLS dials to one line per peer per period.
    quiet: Arc<Quiet<u64>>,
}

impl Peers {
    pub(crate) fn new(routes: BTreeMap<u64, String>, tls: Option<Arc<Tls>>) -> Peers {
        Peers {
            inner: Arc::new(PeersInner {
                routes,
                channels: Mutex::new(HashMap::new()),
                tls,
                quiet: Arc::default(),
            }),
        }
    }

    /// The members this server has a configured route to.
    pub(crate) fn routed(&self) -> impl Iterator<Item = u64> + '_ {
        self.inner.routes.keys().copied()
    }

    /// Where to reach `node`: its configured route, else the address its
    /// membership entry (`known`) gives.
    fn address(&self, node: u64, known: Option<&str>) -> Result<String, PeerError> {
        self.inner
            .routes
            .get(&node)
            .cloned()
            .or_else(|| known.map(str::to_owned))
            .ok_or(PeerError::NoAddress(node))
    }

    /// A client for `node`, reusing its channel while its address stays.
    pub(crate) fn client(
        &self,
        node: u64,
        known: Option<&str>,
    ) -> Result<PeerClient<Channel>, PeerError> {
        let address = self.address(node, known)?;
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let channel = match channels.get(&node) {
            Some((at, channel)) if *at == address => channel.clone(),
            _ => {
                let endpoint = Endpoint::from_shared(format!("http://{address}"))
                    .map_err(|err| PeerError::BadAddress {
                        node,
                        address: address.clone(),
                        detail: err.to_string(),
                    })?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true);
                // Over mutual TLS, the channel dials through a connector
                // that takes the certificates in use at each (re)connect.
                let channel = match &self.inner.tls {
                    Some(tls) => endpoint.connect_with_connector_lazy(PeerDialer {
                        tls: Arc::clone(tls),
                        node,
                        quiet: Arc::clone(&self.inner.quiet),
                    }),
                    None => endpoint.connect_lazy(),
                };
                channels.insert(node, (address, channel.clone()));
                channel
            }
        };
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// A client for `node`, with its address from `raft`'s membership when
    /// no route is configured.
    pub(crate) fn client_in(
        &self,
        raft: &Raft<TypeConfig>,
        node: u64,
    ) -> Result<PeerClient<Channel>, PeerError> {
        let known = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node)
            .map(|known| known.addr.clone());
        self.client(node, known.as_deref())
    }
}

/// Runs `call` on `node` within `timeout`.
pub(crate) async fn call<T>(
    node: u64,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, PeerError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(PeerError::Call { node, status }),
        Err(_) => Err(PeerError::Timeout { node, timeout }),
    }
}

/// Encodes an openraft value for the peer service.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<RaftMessage, tonic::Status> {
    postcard::to_allocvec(value)
        .map(|payload| RaftMessage {
            payload: payload.into(),
        })
        .map_err(|err| tonic::Status::internal(format!("cannot encode a Raft message: {err}")))
}

/// Decodes an openraft value from the peer service.
pub(crate) fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, postcard::Error> {
    postcard::from_bytes(&message.payload)
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerLink;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerLink {
        PeerLink {
            target,
            client: self.client(target, Some(&node.addr)),
        }
    }
}

/// openraft's connection to one peer.
#[derive(Debug)]
pub(crate) struct PeerLink {
    target: u64,
    client: Result<PeerClient<Channel>, PeerError>,
}

type RaftRpcError<E> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl PeerLink {
    /// Sends one Raft message with `send` and decodes the callee's result.
    async fn exchange<Req, Resp, E, F, Fut>(
        &mut self,
        request: &Req,
        option: &RPCOption,
        send: F,
    ) -> Result<Resp, RaftRpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, RaftMessage) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let target = self.target;
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(err) => return Err(RPCError::Unreachable(Unreachable::new(err))),
        };
        let message = encode(request).map_err(|status| {
            RPCError::Network(NetworkError::new(&PeerError::Call {
                node: target,
                status,
            }))
        })?;
        // Every failed call is `Unreachable`, which makes openraft back off
        // before it tries that peer again: a cut link or a dead peer shows
        // up as transport errors of several codes (Unavailable, Unknown,
        // Cancelled), and retrying those at once only burns CPU. (The peer
        // service itself refuses only what it cannot decode, which retrying
        // does not mend either.)
        let answer = call(target, option.hard_ttl(), send(client, message))
            .await
            .map_err(|err| RPCError::Unreachable(Unreachable::new(&err)))?;
        let result: Result<Resp, RaftError<u64, E>> = decode(&answer).map_err(|err| {
            RPCError::Network(NetworkError::new(&PeerError::Decode {
                node: target,
                detail: err.to_string(),
            }))
        })?;
        result.map_err(|err| RPCError::RemoteError(RemoteError::new(target, err)))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RaftRpcError<openraft::error::Infallible>> {
        self.exchange(&rpc, &option, |mut client, message| async move {
            client.append_entries(message).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RaftRpcError<InstallSnapshotError>> {
        self.exchange(&rpc, &option, |mut client, message| async move {
            client.install_snapshot(message).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RaftRpcError<openraft::error::Infallible>> {
        self.exchange(&rpc, &option, |mut client, message| async move {
            client.vote(message).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use session_core::{SessionId, Txn};

    use super::*;
    use crate::raft::{Batch, Tagged};

    /// Raft's messages survive the peer encoding: postcard takes openraft's
    /// serde layout (which has no untagged or skipped fields).
    #[test]
    fn raft_messages_round_trip_through_the_peer_encoding() {
        let log_id = LogId::new(CommittedLeaderId::new(3, 1), 42);
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id),
            entries: vec![
                Entry {
                    log_id: LogId::new(CommittedLeaderId::new(3, 1), 43),
                    payload: EntryPayload::Normal(Batch(vec![Tagged {
                        origin: 2,
                        seq: 9,
                        txn: Txn::CloseSession {
                            id: SessionId::from_u64(0x0200_0000_0000_0001),
                        },
                    }])),
                },
                Entry {
                    log_id: LogId::new(CommittedLeaderId::new(3, 1), 44),
                    payload: EntryPayload::Blank,
                },
            ],
            leader_commit: Some(log_id),
        };
        let message = encode(&request).expect("encodes");
        let back: AppendEntriesRequest<TypeConfig> = decode(&message).expect("decodes");
        assert_eq!(back.vote, request.vote);
        assert_eq!(back.prev_log_id, request.prev_log_id);
        assert_eq!(back.entries.len(), 2);
        assert_eq!(back.entries[0].payload, request.entries[0].payload);

        let vote = VoteRequest::new(Vote::new(4, 2), Some(log_id));
        let back: VoteRequest<u64> = decode(&encode(&vote).expect("encodes")).expect("decodes");
        assert_eq!(back, vote);

        let refused: Result<VoteResponse<u64>, RaftError<u64>> =
            Ok(VoteResponse::new(Vote::new(5, 3), Some(log_id), false));
        let back: Result<VoteResponse<u64>, RaftError<u64>> =
            decode(&encode(&refused).expect("encodes")).expect("decodes");
        assert_eq!(back, refused);
    }

    #[test]
    fn a_configured_route_wins_over_the_membership_address() {
        let peers = Peers::new(BTreeMap::from([(2, "127.0.0.1:9002".to_owned())]), None);
        assert_eq!(
            peers.address(2, Some("127.0.0.1:1")).expect("routed"),
            "127.0.0.1:9002"
        );
        assert_eq!(
            peers.address(3, Some("127.0.0.1:9003")).expect("known"),
            "127.0.0.1:9003"
        );
        assert!(matches!(
            peers.address(4, None),
            Err(PeerError::NoAddress(4))
        ));
    }
}
