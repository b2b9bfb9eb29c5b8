//! A three-server cluster in this process, on loopback, with its state on
//! disk: what any server answers (reads, writes forwarded to the leader,
//! `sync`), sessions moving between servers, and membership changes by the
//! admin. Faults (kills, partitions) are in the `cluster` test binary, with
//! servers as child processes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use session_server::{ClusterConfig, Server, ServerConfig, Storage};
use session_wire::PROTOCOL_VERSION;
use session_wire::admin::v1::{
    AddLearnerRequest, ClusterStatusRequest, ClusterStatusResponse, MemberRole,
    PromoteLearnerRequest, RemoveMemberRequest, admin_client::AdminClient,
};
use session_wire::v1::{self as wire, ErrorCode, Handshake, SessionGranted};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep, timeout};

use crate::support::{PATIENCE, Raw, Scratch, code, fresh_port, granted, new_session, test_config};

/// The session timeout of the tests' sessions.
const T: Duration = Duration::from_secs(2);

/// The configuration of server `id` of a cluster whose peer listeners are
/// `peers`.
fn member_config(scratch: &Scratch, id: u8, peers: &BTreeMap<u8, u16>) -> ServerConfig {
    let mut config = test_config();
    config.zk_listen = None;
    config.server_id = session_core::ServerId::new(u64::from(id)).expect("server id");
    config.storage = Storage::Disk(scratch.0.join(format!("node-{id}")));
    config.timeouts = session_core::TimeoutPolicy::new(Duration::from_millis(100))
        .and_then(|policy| policy.with_bounds(Duration::from_millis(400), Duration::from_secs(10)))
        .expect("valid policy");
    config.cluster = ClusterConfig {
        peers: peers
            .iter()
            .map(|(id, port)| {
                (
                    session_core::ServerId::new(u64::from(*id)).expect("server id"),
                    format!("127.0.0.1:{port}"),
                )
            })
            .collect(),
        peer_listen: None,
        heartbeat: Duration::from_millis(50),
        election_timeout: Duration::from_millis(250),
    };
    config
}

/// Starts server `id` of the cluster `peers`; on a peer port taken meanwhile
/// by another process, gives it another and starts again (a few times).
async fn start_member(scratch: &Scratch, id: u8, peers: &mut BTreeMap<u8, u16>) -> Server {
    for _ in 0..5 {
        match Server::start(member_config(scratch, id, peers)).await {
            Ok(server) => return server,
            Err(err) if err.to_string().contains("Address already in use") => {
                peers.insert(id, fresh_port());
            }
            Err(err) => panic!("server {id} does not start: {err}"),
        }
    }
    panic!("server {id} found its peer port taken five times");
}

/// Starts servers 1..=3 of a new cluster, concurrently (each waits for the
/// others only to elect a leader, not to start). If a peer port was taken
/// meanwhile, the whole cluster starts again on new ports.
async fn three(scratch: &Scratch) -> (Vec<Server>, BTreeMap<u8, u16>) {
    three_with(scratch, |_, _| {}).await
}

/// [`three`], with server `id`'s configuration changed by `change`.
async fn three_with(
    scratch: &Scratch,
    change: impl Fn(u8, &mut ServerConfig),
) -> (Vec<Server>, BTreeMap<u8, u16>) {
    for attempt in 0..5 {
        let peers: BTreeMap<u8, u16> = (1..=3).map(|id| (id, fresh_port())).collect();
        let dir = scratch.0.join(format!("attempt-{attempt}"));
        let members = Scratch(dir);
        std::fs::create_dir_all(&members.0).expect("attempt dir");
        let starts = (1..=3).map(|id| {
            let mut config = member_config(&members, id, &peers);
            change(id, &mut config);
            Server::start(config)
        });
        let started = futures_util::future::join_all(starts).await;
        if started.iter().all(Result::is_ok) {
            std::mem::forget(members);
            let servers = started.into_iter().flatten().collect();
            return (servers, peers);
        }
        for result in started {
            match result {
                Ok(server) => server.shutdown().await,
                Err(err) if err.to_string().contains("Address already in use") => {}
                Err(err) => panic!("a server does not start: {err}"),
            }
        }
    }
    panic!("five clusters in a row found a peer port taken");
}

async fn admin(server: &Server) -> AdminClient<tonic::transport::Channel> {
    let addr = server.admin_addr().expect("admin listener");
    AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("admin connects")
}

async fn status(server: &Server) -> ClusterStatusResponse {
    admin(server)
        .await
        .cluster_status(ClusterStatusRequest {})
        .await
        .expect("cluster status")
        .into_inner()
}

/// Opens a session on `addr`, retrying while the server has no leader yet
/// (it refuses with UNAVAILABLE then).
async fn open_when_ready(addr: SocketAddr) -> (Raw, SessionGranted) {
    open_through_when_ready(addr, || Raw::connect(addr)).await
}

/// [`open_when_ready`], on connections that `connect` makes.
async fn open_through_when_ready<S, F>(
    addr: SocketAddr,
    connect: impl Fn() -> F,
) -> (Raw<S>, SessionGranted)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    F: std::future::Future<Output = Raw<S>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut raw = connect().await;
        let reply = raw.handshake(new_session(T)).await;
        match reply.outcome {
            Some(wire::handshake_reply::Outcome::Granted(session)) => return (raw, session),
            Some(wire::handshake_reply::Outcome::Refused(refusal))
                if refusal.reason() == wire::RefusalReason::Unavailable
                    && Instant::now() < deadline =>
            {
                sleep(Duration::from_millis(50)).await;
            }
            other => panic!("no session on {addr}: {other:?}"),
        }
    }
}

/// [`status`] through an admin over TLS, trusting the authority `ca`.
async fn tls_status(server: &Server, ca: &std::path::Path) -> ClusterStatusResponse {
    let addr = server.admin_addr().expect("admin listener");
    let channel = crate::tls::admin_over_tls(addr, crate::tls::client_config(ca, None))
        .await
        .expect("admin over TLS");
    AdminClient::new(channel)
        .cluster_status(ClusterStatusRequest {})
        .await
        .expect("cluster status")
        .into_inner()
}

/// The index of the leader among `servers`, once the first of them knows
/// one (within PATIENCE).
async fn tls_leader(servers: &[Server], ca: &std::path::Path) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let leader = tls_status(&servers[0], ca).await.leader_id;
        if leader != 0 {
            return leader as usize - 1;
        }
        assert!(Instant::now() < deadline, "no leader within {PATIENCE:?}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// [`open_when_ready`] over TLS, trusting the authority `ca`.
async fn open_tls_when_ready(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> (Raw<crate::tls::TlsClientStream>, SessionGranted) {
    open_through_when_ready(addr, || async {
        let stream = crate::tls::dial(addr, crate::tls::client_config(ca, None))
            .await
            .expect("TLS handshake");
        Raw::speaking_over(stream)
    })
    .await
}

/// The servers that are not the leader, and the leader.
async fn roles(servers: &[Server]) -> (usize, Vec<usize>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let leader = status(&servers[0]).await.leader_id;
        if leader != 0 {
            let leader = leader as usize - 1;
            let followers = (0..servers.len()).filter(|&i| i != leader).collect();
            return (leader, followers);
        }
        assert!(Instant::now() < deadline, "no leader within {PATIENCE:?}");
        sleep(Duration::from_millis(50)).await;
    }
}

async fn shutdown(servers: Vec<Server>) {
    futures_util::future::join_all(servers.into_iter().map(Server::shutdown)).await;
}

/// A write through a follower is forwarded to the leader and answered once
/// the follower holds it: the writer reads it back there at once. Another
/// server's reader may lag, but after a `sync` it reads every write the
/// leader had committed (ZooKeeper's consistency; reference
/// zookeeper-sessions.md, "unified view"; replication.md §3, "Reads").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_any_server_are_read_back_there_and_after_sync_everywhere() {
    let scratch = Scratch::new("replicated-rw");
    let (servers, _) = three(&scratch).await;
    let (leader, followers) = roles(&servers).await;
    let (mut writer, _) = open_when_ready(servers[followers[0]].local_addr()).await;
    let (mut other, _) = open_when_ready(servers[followers[1]].local_addr()).await;
    let (mut on_leader, _) = open_when_ready(servers[leader].local_addr()).await;
    for i in 0..20 {
        let path = format!("/w{i}");
        writer
            .create(&path, b"v", wire::NodeKind::Persistent)
            .await
            .expect("a write through a follower");
        assert!(
            writer.exists(&path, false).await.is_some(),
            "the writer reads its own write {path} on its server at once"
        );
        other
            .request(wire::request::Op::Sync(wire::Sync { path: path.clone() }))
            .await
            .expect("sync");
        assert!(
            other.exists(&path, false).await.is_some(),
            "after sync, another follower reads {path}"
        );
    }
    // A sequential create through a follower gets its name from the
    // leader's order; every server agrees on it.
    let made = writer
        .create_with("/seq-", b"", wire::NodeKind::Persistent, true)
        .await
        .expect("sequential create");
    on_leader
        .request(wire::request::Op::Sync(wire::Sync {
            path: "/".to_owned(),
        }))
        .await
        .expect("sync on the leader");
    assert!(on_leader.exists(&made, false).await.is_some(), "{made}");
    let zxids = [
        writer.zxid().await,
        other.zxid().await,
        on_leader.zxid().await,
    ];
    assert!(zxids.iter().all(|&z| z > 0), "{zxids:?}");
    shutdown(servers).await;
}

/// A write acknowledged through one server is seen by a write through
/// another, at once: a follower whose replica does not hold the parent yet
/// checks again after catching up with the leader's commit, rather than
/// refuse NoNode from an older state (writes are linearizable, as
/// ZooKeeper's are: its leader checks every write).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_one_server_is_seen_by_a_write_through_another_at_once() {
    let scratch = Scratch::new("replicated-linear");
    let (servers, _) = three(&scratch).await;
    let (leader, followers) = roles(&servers).await;
    let (mut first, _) = open_when_ready(servers[followers[0]].local_addr()).await;
    let (mut second, _) = open_when_ready(servers[followers[1]].local_addr()).await;
    let (mut third, _) = open_when_ready(servers[leader].local_addr()).await;
    for i in 0..100 {
        let parent = format!("/p{i}");
        first
            .create(&parent, b"", wire::NodeKind::Persistent)
            .await
            .expect("parent");
        second
            .create(&format!("{parent}/child"), b"", wire::NodeKind::Persistent)
            .await
            .unwrap_or_else(|err| panic!("a child of acknowledged {parent}: {err:?}"));
        third
            .delete(&format!("{parent}/child"), 0)
            .await
            .unwrap_or_else(|err| panic!("deleting {parent}/child on the leader: {err:?}"));
        first
            .delete(&parent, 0)
            .await
            .unwrap_or_else(|err| panic!("deleting {parent} once its child is gone: {err:?}"));
    }
    // A refusal still stands when the state says so.
    assert_eq!(
        code(
            second
                .create("/none/child", b"", wire::NodeKind::Persistent)
                .await
        ),
        Some(ErrorCode::NoNode)
    );
    shutdown(servers).await;
}

/// The log entries server `server` has fsynced so far.
fn log_flushes(server: &Server) -> u64 {
    let text = server.metrics().encode();
    text.lines()
        .find_map(|line| line.strip_prefix("session_server_log_flush_seconds_count "))
        .and_then(|count| count.trim().parse::<f64>().ok())
        .map_or(0, |count| count as u64)
}

/// A client on a follower that pipelines setData and getData of one node,
/// all sent before any reply is read: each getData sees exactly the setData
/// before it (not the one after it, which the connection has already handed
/// on), replies come in request order, and a watch left by a read reaches
/// the client after that read's reply and before the reply of the write
/// that fired it (reference zookeeper-sessions.md, "ordering"). The reads
/// do not hold the writes after them back: the 200 writes share a handful
/// of log entries (each one waited for the read before it, 200 entries at
/// least, before reads were answered where the write before them is
/// applied; the bound here is 40).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_writes_and_reads_through_a_follower_share_entries_and_each_read_sees_its_writes()
{
    const PAIRS: i32 = 200;
    const WATCHED: i32 = 100;
    let scratch = Scratch::new("replicated-pipelined");
    let (servers, _) = three(&scratch).await;
    let (_, followers) = roles(&servers).await;
    let follower = &servers[followers[0]];
    let (mut raw, _) = open_when_ready(follower.local_addr()).await;
    raw.create("/p", b"", wire::NodeKind::Persistent)
        .await
        .expect("create /p");
    let flushed_before = log_flushes(follower);

    let mut bytes = bytes::BytesMut::new();
    for i in 0..PAIRS {
        let set = wire::request::Op::SetData(wire::SetData {
            path: "/p".to_owned(),
            data: bytes::Bytes::from(i.to_string()),
            expected_version: Some(-1),
        });
        let get = wire::request::Op::GetData(wire::GetData {
            path: "/p".to_owned(),
            watch: i == WATCHED,
        });
        crate::support::frame(
            wire::Request {
                xid: 1_000 + 2 * i,
                op: Some(set),
            },
            &mut bytes,
        );
        crate::support::frame(
            wire::Request {
                xid: 1_001 + 2 * i,
                op: Some(get),
            },
            &mut bytes,
        );
    }
    raw.framed.get_mut().write_all(&bytes).await.expect("send");

    let mut set_zxid = 0;
    let mut event_at = None;
    let mut position = 0;
    while position < 2 * PAIRS {
        let message = raw.recv().await.and_then(|message| message.kind);
        let reply = match message {
            Some(wire::server_message::Kind::WatchEvent(event)) => {
                assert_eq!(event.path, "/p");
                assert!(event_at.is_none(), "one event: {event:?}");
                event_at = Some((position, event.zxid));
                continue;
            }
            Some(wire::server_message::Kind::Reply(reply)) => reply,
            other => panic!("reply {position}: got {other:?}"),
        };
        let i = position / 2;
        assert_eq!(reply.xid, 1_000 + position, "replies in request order");
        match reply.result {
            Some(wire::reply::Result::SetData(set)) => {
                assert_eq!(position % 2, 0);
                let stat = set.stat.expect("stat");
                assert_eq!(stat.version, i + 1, "setData {i}");
                set_zxid = reply.zxid;
            }
            Some(wire::reply::Result::GetData(got)) => {
                assert_eq!(position % 2, 1);
                let stat = got.stat.expect("stat");
                assert_eq!(
                    (got.data.as_ref(), stat.version, reply.zxid),
                    (i.to_string().as_bytes(), i + 1, set_zxid),
                    "getData {i} sees setData {i} and nothing after it"
                );
            }
            other => panic!("reply {position}: {other:?}"),
        }
        position += 1;
    }
    // The watch left by getData WATCHED fired on setData WATCHED + 1: the
    // event comes after the read's reply (position 2·WATCHED + 1) and before
    // the write's (2·WATCHED + 2).
    let (at, _) = event_at.expect("the watch fired");
    assert_eq!(at, 2 * WATCHED + 2, "the event between the two replies");
    let entries = log_flushes(follower) - flushed_before;
    assert!(
        entries <= 40,
        "{PAIRS} pipelined writes took {entries} log entries on the follower"
    );
    shutdown(servers).await;
}

/// A client that reattaches through another server takes its session
/// there: its ephemerals stay, the old connection is closed with
/// SessionMoved, and it writes through the new server (reference
/// zookeeper-sessions.md, "session migration").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_reattached_on_another_server_moves_there_with_its_ephemerals() {
    let scratch = Scratch::new("replicated-move");
    let (servers, _) = three(&scratch).await;
    let (_, followers) = roles(&servers).await;
    let (mut first, session) = open_when_ready(servers[followers[0]].local_addr()).await;
    first
        .create("/mine", b"", wire::NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    // With the last zxid the client saw, as a client does: the other server
    // serves it once it holds that state.
    let seen = first.zxid().await;
    let (mut second, reply) =
        Raw::reattach_seen(servers[followers[1]].local_addr(), &session, seen).await;
    let moved = granted(reply);
    assert_eq!(moved.session_id, session.session_id);
    assert!(moved.reattached);
    assert_eq!(
        timeout(PATIENCE, first.disconnect_reason())
            .await
            .expect("the old connection closes"),
        Some(ErrorCode::SessionMoved)
    );
    let stat = second.exists("/mine", false).await.expect("ephemeral kept");
    assert_eq!(stat.ephemeral_owner, session.session_id);
    second
        .create("/mine-too", b"", wire::NodeKind::Ephemeral)
        .await
        .expect("writes go through the new server");
    // A wrong password is refused on any server.
    let mut forged = Raw::connect(servers[followers[0]].local_addr()).await;
    let reply = forged
        .handshake(Handshake {
            protocol_version: PROTOCOL_VERSION,
            requested_timeout_ms: 2000,
            session_id: session.session_id,
            password: vec![0; 16].into(),
            ..Handshake::default()
        })
        .await;
    assert_eq!(
        crate::support::refused(reply),
        wire::RefusalReason::AuthFailed
    );
    shutdown(servers).await;
}

/// Closing a session through a follower deletes its ephemerals on every
/// server; an unknown session is refused as expired everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_closed_through_a_follower_is_gone_everywhere() {
    let scratch = Scratch::new("replicated-close");
    let (servers, _) = three(&scratch).await;
    let (leader, followers) = roles(&servers).await;
    let (mut client, session) = open_when_ready(servers[followers[0]].local_addr()).await;
    client
        .create("/bye", b"", wire::NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    client.send(wire::CloseSession {}).await;
    while client.recv().await.is_some() {}
    let (mut reader, _) = open_when_ready(servers[leader].local_addr()).await;
    reader
        .request(wire::request::Op::Sync(wire::Sync {
            path: "/".to_owned(),
        }))
        .await
        .expect("sync");
    assert!(reader.exists("/bye", false).await.is_none());
    let seen = reader.zxid().await;
    let (_, reply) = Raw::reattach_seen(servers[followers[1]].local_addr(), &session, seen).await;
    assert_eq!(crate::support::refused(reply), wire::RefusalReason::Expired);
    shutdown(servers).await;
}

/// The admin grows the cluster: a fourth server, started with the members
/// in its peers, waits (refusing clients as UNAVAILABLE), is added as a
/// learner (caught up when the call returns), promoted to voter, and a
/// member is removed; the cluster status shows each step, from any server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_adds_a_learner_promotes_it_and_removes_a_member() {
    let scratch = Scratch::new("replicated-members");
    let (servers, mut peers) = three(&scratch).await;
    let (leader, followers) = roles(&servers).await;
    let (mut client, _) = open_when_ready(servers[followers[0]].local_addr()).await;
    for i in 0..50 {
        client
            .create(&format!("/before-{i}"), b"x", wire::NodeKind::Persistent)
            .await
            .expect("write");
    }
    peers.insert(4, fresh_port());
    let fourth = start_member(&scratch, 4, &mut peers).await;
    // Not a member yet: it has no leader and serves no client.
    let mut early = Raw::connect(fourth.local_addr()).await;
    let reply = early.handshake(new_session(T)).await;
    assert_eq!(
        crate::support::refused(reply),
        wire::RefusalReason::Unavailable
    );

    let mut admin_client = admin(&servers[followers[1]]).await;
    let after = admin_client
        .add_learner(AddLearnerRequest {
            node_id: 4,
            peer_address: format!("127.0.0.1:{}", peers[&4]),
        })
        .await
        .expect("add learner (forwarded to the leader)")
        .into_inner();
    assert_eq!(after.voters, vec![1, 2, 3]);
    assert_eq!(after.learners, vec![4]);
    let seen = status(&servers[leader]).await;
    let learner = seen
        .members
        .iter()
        .find(|member| member.node_id == 4)
        .expect("the learner is listed");
    assert_eq!(learner.role(), MemberRole::Learner);
    assert!(!learner.voter);
    // A learner reads what the cluster wrote (it serves clients too).
    let (mut on_fourth, _) = open_when_ready(fourth.local_addr()).await;
    on_fourth
        .request(wire::request::Op::Sync(wire::Sync {
            path: "/".to_owned(),
        }))
        .await
        .expect("sync on the learner");
    assert!(on_fourth.exists("/before-49", false).await.is_some());

    // Adding it again, or promoting a voter, is a precondition failure.
    let again = admin_client
        .add_learner(AddLearnerRequest {
            node_id: 4,
            peer_address: format!("127.0.0.1:{}", peers[&4]),
        })
        .await
        .expect_err("already a member");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
    let bad = admin_client
        .promote_learner(PromoteLearnerRequest { node_id: 1 })
        .await
        .expect_err("a voter is no learner");
    assert_eq!(bad.code(), tonic::Code::FailedPrecondition, "{bad:?}");
    let bad = admin_client
        .add_learner(AddLearnerRequest {
            node_id: 0,
            peer_address: "127.0.0.1:1".to_owned(),
        })
        .await
        .expect_err("id 0");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    let after = admin_client
        .promote_learner(PromoteLearnerRequest { node_id: 4 })
        .await
        .expect("promote")
        .into_inner();
    assert_eq!(after.voters, vec![1, 2, 3, 4]);
    assert!(after.learners.is_empty());

    let removed = followers[1] as u32 + 1;
    let after = admin_client
        .remove_member(RemoveMemberRequest { node_id: removed })
        .await
        .expect("remove")
        .into_inner();
    assert!(!after.voters.contains(&removed), "{after:?}");
    assert_eq!(after.voters.len(), 3);
    // The change is committed when the call returns; the other servers
    // learn it with the leader's next message (a heartbeat is 50 ms).
    let asked = Instant::now();
    let seen = loop {
        let seen = status(&fourth).await;
        if seen.members.len() == 3 || asked.elapsed() > Duration::from_secs(2) {
            break seen;
        }
        sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seen.members.len(), 3, "2 s after the removal: {seen:?}");
    assert!(seen.members.iter().all(|member| member.voter));
    let missing = admin_client
        .remove_member(RemoveMemberRequest { node_id: 9 })
        .await
        .expect_err("not a member");
    assert_eq!(missing.code(), tonic::Code::FailedPrecondition);
    // Writes go on through the new majority.
    client
        .create("/after", b"", wire::NodeKind::Persistent)
        .await
        .expect("write after the changes");
    let mut all = servers;
    all.push(fourth);
    shutdown(all).await;
}

/// A server behind a reattaching client's last zxid waits a moment to catch
/// up, then refuses with ZXID_AHEAD so the client tries another server
/// (ZooKeeper's rule; reference replication.md §1, "Follower behind
/// client").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_behind_the_client_refuses_it_after_a_bounded_wait() {
    let scratch = Scratch::new("replicated-ahead");
    let (servers, _) = three(&scratch).await;
    let (_, followers) = roles(&servers).await;
    let (mut client, session) = open_when_ready(servers[followers[0]].local_addr()).await;
    let zxid = client.zxid().await;
    let mut ahead = Raw::connect(servers[followers[1]].local_addr()).await;
    let asked = Instant::now();
    let reply = ahead
        .handshake(Handshake {
            protocol_version: PROTOCOL_VERSION,
            requested_timeout_ms: 2000,
            session_id: session.session_id,
            password: session.password.clone(),
            last_zxid_seen: zxid + 1_000,
            ..Handshake::default()
        })
        .await;
    let waited = asked.elapsed();
    assert_eq!(
        crate::support::refused(reply),
        wire::RefusalReason::ZxidAhead
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "the refusal came after {waited:?}: the wait is 500 ms"
    );
    // The session itself is untouched.
    assert_eq!(
        code(client.delete("/none", -1).await),
        Some(ErrorCode::NoNode)
    );
    shutdown(servers).await;
}

/// ZooKeeper 3.9's operations in a cluster, through ZooKeeper's own client on
/// different servers: a multi written through one follower is all there,
/// after a sync, on the other; an ACL set through one refuses a stranger on
/// another; a persistent watch on one hears a write through another; an
/// emptied container is deleted by the leader and gone everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_acls_watches_and_containers_replicate() {
    use zookeeper_client as zk;
    let scratch = Scratch::new("replicated-zk-ops");
    let peers: BTreeMap<u8, u16> = (1..=3).map(|id| (id, fresh_port())).collect();
    let interval = Duration::from_millis(100);
    let starts = (1..=3).map(|id| {
        let mut config = member_config(&scratch, id, &peers);
        config.zk_listen = Some("127.0.0.1:0".parse().expect("addr"));
        config.reap_interval = interval;
        Server::start(config)
    });
    let servers: Vec<Server> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|started| started.expect("a member starts"))
        .collect();
    let (leader, followers) = roles(&servers).await;
    let connect = |server: &Server, auth: Option<&'static [u8]>| {
        let addr = server
            .zookeeper_addr()
            .expect("ZooKeeper listener")
            .to_string();
        let mut connector = zk::Client::connector().with_session_timeout(Duration::from_secs(2));
        if let Some(credential) = auth {
            connector = connector.with_auth("digest", credential);
        }
        async move {
            timeout(Duration::from_secs(10), connector.connect(&addr))
                .await
                .expect("connects in time")
                .expect("a session")
        }
    };
    let writer = connect(&servers[followers[0]], Some(b"alice:pw")).await;
    let reader = connect(&servers[followers[1]], None).await;
    let on_leader = connect(&servers[leader], None).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let mut watch = reader
        .watch("/q", zk::AddWatchMode::PersistentRecursive)
        .await
        .expect("a persistent watch on the other follower");

    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    let mut multi = writer.new_multi_writer();
    multi.add_create("/q", b"", &container).expect("op");
    multi.add_create("/q/item", b"1", &open).expect("op");
    let secret = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    multi.add_create("/secret", b"s", &secret).expect("op");
    multi.commit().await.expect("the multi through a follower");

    reader.sync("/").await.expect("sync");
    assert!(reader.check_stat("/q/item").await.expect("read").is_some());
    assert_eq!(
        reader.get_data("/secret").await.err(),
        Some(zk::Error::NoAuth)
    );
    let event = timeout(Duration::from_secs(5), async {
        loop {
            let event = watch.changed().await;
            if event.event_type != zk::EventType::Session {
                return event;
            }
        }
    })
    .await
    .expect("the watch fires in time");
    assert_eq!(
        (event.event_type, event.path.as_str()),
        (zk::EventType::NodeCreated, "/q")
    );

    // The leader deletes the emptied container; every server agrees.
    writer.delete("/q/item", None).await.expect("delete");
    let emptied = Instant::now();
    timeout(Duration::from_secs(5), async {
        loop {
            on_leader.sync("/").await.expect("sync");
            if on_leader.check_stat("/q").await.expect("read").is_none() {
                return;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the container goes");
    // Bound: the next sweep, plus a commit round.
    assert!(emptied.elapsed() <= 2 * interval + Duration::from_millis(700));
    reader.sync("/").await.expect("sync");
    assert!(reader.check_stat("/q").await.expect("read").is_none());
    drop((writer, reader, on_leader, watch));
    shutdown(servers).await;
}

/// Each member's TLS settings: its own certificate from `files` (member
/// `cert_of`'s, to play a member with another's certificate), and the
/// cluster's authority for peers only (clients need no certificate).
fn member_tls(files: &session_testkit::ClusterFiles, cert_of: u8) -> session_server::TlsConfig {
    let own = &files.servers[usize::from(cert_of) - 1];
    session_server::TlsConfig {
        peer_ca: Some(files.ca.clone()),
        ..session_server::TlsConfig::new(&own.cert, &own.key)
    }
}

/// Over mutual TLS between members, the cluster elects a leader and
/// replicates: a session opened on one member (its client over TLS too) is
/// held by all three within PATIENCE.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_over_mutual_tls_replicates_sessions() {
    let scratch = Scratch::new("replicated-tls");
    let files = session_testkit::write_cluster(&scratch.0.join("certs"), 3).expect("certs");
    let (servers, _) = three_with(&scratch, |id, config| {
        config.tls = Some(member_tls(&files, id));
    })
    .await;
    let leader = tls_leader(&servers, &files.ca).await;
    let (mut client, _) = open_tls_when_ready(servers[leader].local_addr(), &files.ca).await;
    let deadline = Instant::now() + PATIENCE;
    while servers.iter().any(|server| server.session_count() != 1) {
        assert!(
            Instant::now() < deadline,
            "not replicated within {PATIENCE:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
    for server in &servers {
        assert_eq!(server.metrics().peers_refused.get(), 0);
    }
    client.ping().await;
    shutdown(servers).await;
}

/// A member showing another member's certificate (server 3 with server
/// 2's) is refused by the others, both ways: its calls claim server 3 with
/// a certificate that does not name server-3, and dialing it finds a
/// certificate not valid for server-3. The other two go on: they elect a
/// leader and order writes, while server 3 stays out (no leader, no
/// session) for as long as they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_with_another_members_certificate_is_refused_and_the_cluster_goes_on() {
    let scratch = Scratch::new("replicated-tls-impostor");
    let files = session_testkit::write_cluster(&scratch.0.join("certs"), 3).expect("certs");
    let (servers, _) = three_with(&scratch, |id, config| {
        let cert_of = if id == 3 { 2 } else { id };
        config.tls = Some(member_tls(&files, cert_of));
    })
    .await;
    let leader = tls_leader(&servers[..2], &files.ca).await;
    let (mut client, _) = open_tls_when_ready(servers[leader].local_addr(), &files.ca).await;
    client
        .create("/still-working", b"", wire::NodeKind::Persistent)
        .await
        .expect("a write is ordered");
    // Server 3 tried (elections, at least every 500 ms) and was refused.
    let deadline = Instant::now() + PATIENCE;
    while servers[..2]
        .iter()
        .map(|server| server.metrics().peers_refused.get())
        .sum::<u64>()
        == 0
    {
        assert!(Instant::now() < deadline, "no call of server 3 refused");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        tls_status(&servers[2], &files.ca).await.leader_id,
        0,
        "server 3 knows no leader"
    );
    assert_eq!(
        servers[2].session_count(),
        0,
        "server 3 got nothing replicated"
    );
    shutdown(servers).await;
}

/// The callee's check, call by call: a peer call claiming member 2 is
/// served only with a certificate naming server-2, and a call that claims
/// no member (status) only with a certificate naming a member of the
/// cluster; each refusal is PERMISSION_DENIED and counted.
#[tokio::test]
async fn a_peer_call_needs_the_certificate_of_the_member_it_claims() {
    use session_wire::peer::v1::{StatusRequest, TouchRequest, peer_client::PeerClient};
    let scratch = Scratch::new("replicated-tls-claims");
    let files = session_testkit::write_cluster(&scratch.0.join("certs"), 3).expect("certs");
    let mut peers = BTreeMap::from([(1, fresh_port())]);
    let mut config = member_config(&scratch, 1, &peers);
    config.tls = Some(member_tls(&files, 1));
    let server = match Server::start(config).await {
        Ok(server) => server,
        Err(_) => start_member(&scratch, 1, &mut peers).await,
    };
    let addr = server.peer_addr().expect("peer listener");
    let peer_as = |member: usize| {
        let config = crate::tls::client_config(&files.ca, Some(&files.servers[member - 1]));
        async move {
            let channel = crate::tls::admin_over_tls(addr, config)
                .await
                .expect("mutual TLS");
            PeerClient::new(channel)
        }
    };
    let touch = TouchRequest {
        from_node: 2,
        session_ids: Vec::new(),
    };
    let impostor = peer_as(3)
        .await
        .touch(touch.clone())
        .await
        .expect_err("server-3's certificate claiming server 2");
    assert_eq!(impostor.code(), tonic::Code::PermissionDenied);
    assert!(impostor.message().contains("server-2"), "{impostor:?}");
    peer_as(2)
        .await
        .touch(touch)
        .await
        .expect("server-2's certificate claiming server 2");
    let outsider = peer_as(2)
        .await
        .status(StatusRequest {})
        .await
        .expect_err("server-2 is not a member of this one-member cluster");
    assert_eq!(outsider.code(), tonic::Code::PermissionDenied);
    peer_as(1)
        .await
        .status(StatusRequest {})
        .await
        .expect("a member's own certificate");
    assert_eq!(server.metrics().peers_refused.get(), 2);
    server.shutdown().await;
}
