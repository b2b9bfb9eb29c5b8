//! Servers killed under held sessions, and a session moved by hand.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use session_client::State;
use session_wire::v1::{self as wire, ClientMessage, ErrorCode, NodeKind, request, server_message};
use tokio::time::{Instant, sleep_until};

use crate::support::{
    Cluster, EXPIRY_SLACK, Raw, T, TICK, Tracked, assert_ephemerals, assert_moved_off, back_times,
    granted_session, late_clients, open_sessions, others, reader, refusal, serial, two_thirds,
    wait_until, worst,
};

/// Sessions held through the leader's death (1,000 in the issue; lower it
/// here if the test outgrows ~30 s on CI).
const LEADER_KILL_SESSIONS: usize = 1000;

/// Sessions held through a follower's death.
const FOLLOWER_KILL_SESSIONS: usize = 30;

/// The leader is SIGKILLed while [`LEADER_KILL_SESSIONS`] sessions, spread
/// evenly over the three servers, each hold an ephemeral.
///
/// Bound: every client is Connected again, with its old session id, at most
/// 2/3·T after the kill (measured per client from the kill to its last
/// recorded Connected; a client never disconnected counts 0), those of the
/// dead leader on a survivor; none is Expired (a client granted another id
/// on reattach reports Expired), and each surviving server holds every
/// ephemeral, owned by its client's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_loses_no_session_and_every_client_is_back_within_two_thirds_of_t() {
    let _serial = serial().await;
    let mut cluster = Cluster::start("leader-kill").await;
    let leader = cluster.leader().await;
    let opening = Instant::now();
    let clients = open_sessions(&cluster, "/held", LEADER_KILL_SESSIONS).await;
    eprintln!(
        "{} sessions opened in {:?}",
        clients.len(),
        opening.elapsed()
    );

    let killed = cluster.kill(leader);
    let survivors = others(leader);
    let (new_leader, elected) = cluster.new_leader(leader, &survivors).await;
    let bound = two_thirds(T);
    // Past the bound only to say by how much a late client missed it.
    wait_until(killed + bound + T, || {
        clients.iter().all(|c| c.back_after(killed).is_some())
    })
    .await;

    let backs = back_times(&clients, killed);
    let (late, report) = late_clients(&clients, killed, bound);
    let moved = clients
        .iter()
        .filter(|c| !c.changes_since(killed).is_empty())
        .count();
    assert!(
        late == 0,
        "{late} of {} clients not Connected within {bound:?} of the leader's kill \
         (worst {:?}; {moved} clients changed state; server {new_leader} elected {:?} after the kill):{report}",
        clients.len(),
        worst(&backs),
        elected - killed,
    );
    assert_moved_off(&cluster, &clients, leader, &[leader]);
    for tracked in &clients {
        assert!(
            !tracked
                .changes()
                .iter()
                .any(|(state, _)| *state == State::Expired),
            "no session expired"
        );
    }
    for id in survivors {
        assert_ephemerals(&cluster, id, "/held", &clients).await;
    }
    eprintln!(
        "leader {leader} killed: server {new_leader} elected after {:?}, {moved} clients moved, worst back after {:?}",
        elected - killed,
        worst(&backs)
    );
}

/// A follower is SIGKILLed under [`FOLLOWER_KILL_SESSIONS`] sessions spread
/// over the three servers, each holding an ephemeral and an exist watch.
///
/// Bound: each client of the dead follower is Connected again elsewhere,
/// same session id, at most 2/3·T after the kill; clients of the other two
/// servers see no state change at all. After T + tick + slack more (long
/// enough for a session not refreshed by the move to expire), every client
/// is still Connected and both survivors hold every ephemeral; and the
/// moved clients' watches were set again: a creation fires every watch
/// within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_followers_clients_move_within_two_thirds_of_t_with_their_sessions() {
    let _serial = serial().await;
    let mut cluster = Cluster::start("follower-kill").await;
    let leader = cluster.leader().await;
    let follower = cluster.a_follower(leader);
    let clients = open_sessions(&cluster, "/kf", FOLLOWER_KILL_SESSIONS).await;
    let mut watches = Vec::new();
    for tracked in &clients {
        let (stat, watch) = tracked
            .client
            .exists_and_watch("/kf-signal")
            .await
            .expect("exists");
        assert!(stat.is_none());
        watches.push(watch);
    }

    let killed = cluster.kill(follower);
    let bound = two_thirds(T);
    let (homed, elsewhere): (Vec<&Tracked>, Vec<&Tracked>) =
        clients.iter().partition(|c| c.home == follower);
    assert!(!homed.is_empty(), "some clients were on server {follower}");
    wait_until(killed + bound + T, || {
        homed.iter().all(|c| {
            c.back_after(killed)
                .is_some_and(|_| !c.changes_since(killed).is_empty())
        })
    })
    .await;
    let (late, report) = late_clients(&clients, killed, bound);
    assert!(
        late == 0,
        "{late} clients not back within {bound:?} of follower {follower}'s kill:{report}"
    );
    assert_moved_off(&cluster, &clients, follower, &[follower]);
    for tracked in &homed {
        assert!(
            tracked
                .changes_since(killed)
                .first()
                .map(|(state, _)| *state)
                == Some(State::Suspended),
            "a client of the dead server saw its connection go"
        );
    }
    for tracked in &elsewhere {
        assert_eq!(
            tracked.changes_since(killed),
            vec![],
            "a client of server {} saw no change",
            tracked.home
        );
    }

    // A session the move did not refresh would be gone by now.
    sleep_until(killed + T + TICK + EXPIRY_SLACK).await;
    for tracked in &clients {
        assert_eq!(tracked.state(), State::Connected);
    }
    for id in others(follower) {
        assert_ephemerals(&cluster, id, "/kf", &clients).await;
    }

    let mut writer = reader(&cluster, leader).await;
    writer
        .create("/kf-signal", b"", NodeKind::Persistent)
        .await
        .expect("create the signal");
    for (i, watch) in watches.into_iter().enumerate() {
        let event = tokio::time::timeout(Duration::from_secs(1), watch)
            .await
            .unwrap_or_else(|_| panic!("client {i}'s watch did not fire within 1 s"))
            .unwrap_or_else(|err| panic!("client {i}'s watch failed: {err}"));
        assert_eq!(event.path, "/kf-signal");
    }
}

/// A session opened on server A is reattached on server B with its id and
/// password; a wrong password on server C is refused.
///
/// Bound: C refuses with AUTH_FAILED and A's connection keeps working; B
/// grants the same session id; A's next request, sent after B's grant, is
/// answered SESSION_MOVED (as an error reply or a disconnect) within 1 s and
/// A's connection is closed, never with a success; B reads A's ephemeral
/// owned by the session and writes in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reattached_on_another_server_moves_and_the_old_connection_gets_session_moved() {
    let _serial = serial().await;
    let cluster = Cluster::start("moved").await;
    let (a, b, c) = (1, 2, 3);
    let (mut first, session) = Raw::open(cluster.node(a).listen, T).await;
    first
        .create("/moved", b"", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");

    let mut wrong = session.clone();
    let mut password = wrong.password.to_vec();
    password[0] ^= 0xff;
    wrong.password = Bytes::from(password);
    let (_, reply) = Raw::reattach(cluster.node(c).listen, &wrong).await;
    assert_eq!(
        refusal(&reply),
        Some(wire::RefusalReason::AuthFailed),
        "a wrong password on server {c}: {reply:?}"
    );
    assert!(
        first.exists("/moved", false).await.is_some(),
        "A still works"
    );

    let (mut second, reply) = Raw::reattach(cluster.node(b).listen, &session).await;
    let granted = granted_session(&reply)
        .unwrap_or_else(|| panic!("server {b} grants the reattach: {reply:?}"));
    assert_eq!(granted.session_id, session.session_id);

    // A's next request: SESSION_MOVED, then the connection closes.
    let asked = Instant::now();
    let request = ClientMessage::from(wire::Request {
        xid: 1_000,
        op: Some(request::Op::Exists(wire::Exists {
            path: "/moved".to_owned(),
            watch: false,
        })),
    });
    let _ = first.framed.send(request).await;
    let mut moved = false;
    let answered = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(message)) = first.framed.next().await {
            match message.kind {
                Some(server_message::Kind::Reply(reply)) => match reply.result {
                    Some(wire::reply::Result::Error(err)) => {
                        moved |= err.code() == ErrorCode::SessionMoved;
                    }
                    other => panic!("the moved session's old connection got a success: {other:?}"),
                },
                Some(server_message::Kind::Disconnect(disconnect)) => {
                    moved |= disconnect.reason() == ErrorCode::SessionMoved;
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(
        answered.is_ok(),
        "A's connection still open 1 s after its request:\n{}",
        cluster.logs(20)
    );
    assert!(
        moved,
        "A was told SESSION_MOVED ({:?} after asking)",
        asked.elapsed()
    );

    let stat = second.exists("/moved", false).await.expect("the ephemeral");
    assert_eq!(stat.ephemeral_owner, session.session_id);
    second
        .create("/moved-write", b"", NodeKind::Persistent)
        .await
        .expect("B writes in the session");
}
