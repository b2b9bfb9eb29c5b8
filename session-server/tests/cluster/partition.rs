//! Network partitions between the servers (proxies cut both ways).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use session_client::State;
use session_wire::v1::{self as wire, ClientMessage, NodeKind, request, server_message};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

use crate::support::{
    Cluster, EXPIRY_SLACK, IDS, Observer, Raw, T, TICK, Tracked, assert_ephemerals,
    assert_moved_off, granted_session, late_clients, new_session, open_sessions, others, reader,
    serial, two_thirds, wait_until,
};

/// Sessions held through a partition.
const PARTITION_SESSIONS: usize = 30;

/// How long after a heal a server that was cut off must hold what the
/// majority wrote meanwhile: a few election rounds (a cut-off server comes
/// back with a higher term and may cause one) and a catch-up of a few
/// dozen entries.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Waits until the clients homed on `moved` have all left and come back
/// (a Suspended, then Connected now), at most `until`.
async fn wait_moved(clients: &[Tracked], moved: u32, since: Instant, until: Instant) {
    wait_until(until, || {
        clients.iter().filter(|c| c.home == moved).all(|c| {
            c.back_after(since).is_some()
                && c.changes_since(since)
                    .iter()
                    .any(|(state, _)| *state == State::Suspended)
        })
    })
    .await;
}

/// Asserts that every client homed on `moved` left it (a Suspended
/// recorded since `since`).
fn assert_left(clients: &[Tracked], moved: u32, since: Instant, cluster: &Cluster) {
    for (i, tracked) in clients.iter().enumerate() {
        if tracked.home != moved {
            continue;
        }
        assert!(
            tracked
                .changes_since(since)
                .iter()
                .any(|(state, _)| *state == State::Suspended),
            "client {i} stayed on server {moved}, cut off from the leader: changes {:?}\n{}",
            tracked.changes_since(since),
            cluster.logs(20)
        );
    }
}

/// Server `id`'s children of `parent` are `s0..s{count}` within `within`.
async fn converges(cluster: &Cluster, id: u32, parent: &str, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    let mut expected: Vec<String> = (0..count).map(|i| format!("s{i}")).collect();
    expected.sort();
    let mut observer = Observer::new(cluster, id);
    loop {
        // None while the server refuses sessions as it rejoins.
        if observer.children(parent).await.as_ref() == Some(&expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server {id} does not hold the {count} ephemerals of {parent} {within:?} after the heal\n{}",
            cluster.logs(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A follower is cut from the leader, both ways; it still reaches the
/// other follower.
///
/// Bound: every client of the cut follower leaves it and is Connected
/// elsewhere, same session, at most 2/3·T after the cut (the follower
/// closes its client connections once it has no leader); the other
/// clients see no change. At cut + T + tick + slack (a session not
/// refreshed by its move would be expired by then) every client is
/// Connected and the leader and the other follower hold every ephemeral.
/// After the heal the cut follower holds them too within [`CATCH_UP`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_from_the_leader_sends_its_clients_elsewhere_within_two_thirds_of_t() {
    let _serial = serial().await;
    let mut cluster = Cluster::start("follower-cut").await;
    let leader = cluster.leader().await;
    let follower = cluster.a_follower(leader);
    let clients = open_sessions(&cluster, "/fc", PARTITION_SESSIONS).await;

    let cut = Instant::now();
    cluster.partition(follower, leader);
    let bound = two_thirds(T);
    wait_moved(&clients, follower, cut, cut + bound + T).await;
    assert_left(&clients, follower, cut, &cluster);
    assert_moved_off(&cluster, &clients, follower, &[]);
    let (late, report) = late_clients(&clients, cut, bound);
    assert!(
        late == 0,
        "{late} clients not Connected within {bound:?} of cutting {follower} from leader {leader}:{report}\n{}",
        cluster.logs(20)
    );
    for tracked in clients.iter().filter(|c| c.home != follower) {
        assert_eq!(
            tracked.changes_since(cut),
            vec![],
            "no change for the others"
        );
    }

    sleep_until(cut + T + TICK + EXPIRY_SLACK).await;
    for (i, tracked) in clients.iter().enumerate() {
        assert_eq!(tracked.state(), State::Connected, "client {i}");
    }
    for id in others(follower) {
        assert_ephemerals(&cluster, id, "/fc", &clients).await;
    }

    cluster.heal();
    converges(&cluster, follower, "/fc", clients.len(), CATCH_UP).await;
}

/// One server (the leader, or a follower) is cut from both others for
/// longer than T.
///
/// Bound: each write sent through the cut server while it is cut (50 ms
/// after the cut, and once it must have noticed) fails (an error reply or a
/// closed connection) within 2/3·T, never succeeds, and is found on no
/// server, during the cut or after the heal; a new session on the cut
/// server is not granted once 2/3·T have passed. Every client of the cut
/// server leaves it, and every client is Connected, same session, at most
/// 2/3·T after the cut (when a follower is cut, the others see no change at
/// all); none expires: at cut + T + tick + slack every client is Connected
/// and the two others hold every ephemeral. After the heal the cut server
/// holds them within [`CATCH_UP`].
async fn minority_cut(isolate_leader: bool) {
    let name = if isolate_leader {
        "leader-isolated"
    } else {
        "follower-isolated"
    };
    let mut cluster = Cluster::start(name).await;
    let leader = cluster.leader().await;
    let isolated = if isolate_leader {
        leader
    } else {
        cluster.a_follower(leader)
    };
    let majority = others(isolated);
    let clients = open_sessions(&cluster, "/mc", PARTITION_SESSIONS).await;
    // Two connections to write through the cut server, opened before the
    // cut: one write right after the cut, one after the server noticed.
    let (mut first_writer, _) = Raw::open(cluster.node(isolated).listen, T).await;
    let (mut second_writer, _) = Raw::open(cluster.node(isolated).listen, T).await;

    let cut = Instant::now();
    cluster.isolate(isolated);
    let bound = two_thirds(T);
    let write_bound = two_thirds(T);

    // The writes run beside the other checks and are judged last, so a
    // hanging write does not hide what else went wrong.
    let writes = async {
        let (first, second) = tokio::join!(
            write_at(
                &mut first_writer,
                "/minority-write-0",
                cut + Duration::from_millis(50),
                write_bound
            ),
            write_at(
                &mut second_writer,
                "/minority-write-1",
                cut + CUT_NOTICED,
                write_bound
            ),
        );
        vec![first, second]
    };
    let (attempts, ()) = tokio::join!(writes, async {
        sleep_until(cut + bound).await;
        let handshake = handshake_on(&cluster, isolated).await;
        assert!(
            handshake
                .as_ref()
                .is_none_or(|reply| granted_session(reply).is_none()),
            "server {isolated}, cut off for {bound:?}, granted a new session: {handshake:?}"
        );

        wait_moved(&clients, isolated, cut, cut + bound + T).await;
        assert_left(&clients, isolated, cut, &cluster);
        assert_moved_off(&cluster, &clients, isolated, &[]);
        let (late, report) = late_clients(&clients, cut, bound);
        assert!(
            late == 0,
            "{late} clients not Connected within {bound:?} of cutting server {isolated} off (leader was {leader}):{report}\n{}",
            cluster.logs(20)
        );
        if !isolate_leader {
            // The leader kept its quorum: nothing changed for the others.
            for tracked in clients.iter().filter(|c| c.home != isolated) {
                assert_eq!(
                    tracked.changes_since(cut),
                    vec![],
                    "no change for the others"
                );
            }
        }

        sleep_until(cut + T + TICK + EXPIRY_SLACK).await;
        for (i, tracked) in clients.iter().enumerate() {
            assert_eq!(tracked.state(), State::Connected, "client {i}");
            assert!(
                !tracked
                    .changes()
                    .iter()
                    .any(|(state, _)| *state == State::Expired)
            );
        }
        for &id in &majority {
            assert_ephemerals(&cluster, id, "/mc", &clients).await;
        }
    });

    let wrong: Vec<String> = attempts
        .iter()
        .filter(|(_, _, outcome)| {
            !matches!(outcome, WriteOutcome::Failed(_, after) if *after <= write_bound)
        })
        .map(|(path, sent, outcome)| format!("{path} sent {:?} after the cut: {outcome:?}", *sent - cut))
        .collect();
    assert!(
        wrong.is_empty(),
        "writes through server {isolated}, cut off, must fail within {write_bound:?} \
         (everything else held: clients moved in time, no session expired): {wrong:#?}\n\
         all attempts: {attempts:#?}\n{}",
        cluster.logs(20)
    );
    for &id in &majority {
        let mut raw = reader(&cluster, id).await;
        for (path, _, _) in &attempts {
            assert!(
                raw.exists(path, false).await.is_none(),
                "{path} failed through server {isolated} but server {id} has it"
            );
        }
    }

    cluster.heal();
    converges(&cluster, isolated, "/mc", clients.len(), CATCH_UP).await;
    for id in IDS {
        let mut observer = Observer::new(&cluster, id);
        for (path, _, _) in &attempts {
            let deadline = Instant::now() + CATCH_UP;
            let found = loop {
                if let Some(found) = observer.exists(path).await {
                    break found;
                }
                assert!(
                    Instant::now() < deadline,
                    "server {id} answers after the heal"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert!(
                !found,
                "{path} failed through server {isolated} but server {id} has it after the heal"
            );
        }
    }
}

/// When a cut server has surely noticed it has no leader: openraft's
/// follower waits its leader lease (2 × the election timeout) and then a
/// random election timeout (up to 2 ×) after the last heartbeat.
const CUT_NOTICED: Duration = Duration::from_millis(
    4 * crate::support::ELECTION_TIMEOUT.as_millis() as u64
        + crate::support::HEARTBEAT.as_millis() as u64,
);

/// Sends a create of `path` on `raw` at `at`; returns the path, when it
/// was sent and how it ended.
async fn write_at(
    raw: &mut Raw,
    path: &str,
    at: Instant,
    within: Duration,
) -> (String, Instant, WriteOutcome) {
    sleep_until(at).await;
    let sent = Instant::now();
    (
        path.to_owned(),
        sent,
        write_through(raw, path, within).await,
    )
}

/// See [`minority_cut`]: the leader is the one cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_both_followers_fails_its_writes_and_expires_nobody() {
    let _serial = serial().await;
    minority_cut(true).await;
}

/// See [`minority_cut`]: a follower is the one cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_from_both_others_fails_its_writes_and_expires_nobody() {
    let _serial = serial().await;
    minority_cut(false).await;
}

/// How a write through a cut-off server ended (printed when wrong).
#[derive(Debug)]
#[allow(dead_code, reason = "the fields are read through Debug")]
enum WriteOutcome {
    /// An error reply, a disconnect or a closed connection, after this long.
    Failed(String, Duration),
    Succeeded,
    NoAnswer,
}

/// Sends a create of `path` on `raw` and waits at most `within` for its
/// fate. Once the connection is closed, later writes fail at once.
async fn write_through(raw: &mut Raw, path: &str, within: Duration) -> WriteOutcome {
    let sent = Instant::now();
    let request = ClientMessage::from(wire::Request {
        xid: 7_000 + i32::try_from(path.len()).unwrap_or(0),
        op: Some(request::Op::Create(wire::Create {
            acl: Vec::new(),
            ttl_ms: 0,
            path: path.to_owned(),
            data: bytes::Bytes::new(),
            kind: NodeKind::Persistent.into(),
            sequential: false,
        })),
    });
    if let Err(err) = raw.framed.send(request).await {
        return WriteOutcome::Failed(format!("send: {err}"), sent.elapsed());
    }
    let fate = tokio::time::timeout(within, async {
        loop {
            match raw.framed.next().await {
                None => return WriteOutcome::Failed("closed".into(), sent.elapsed()),
                Some(Err(err)) => return WriteOutcome::Failed(format!("{err}"), sent.elapsed()),
                Some(Ok(message)) => match message.kind {
                    Some(server_message::Kind::Reply(reply)) => {
                        return match reply.result {
                            Some(wire::reply::Result::Error(err)) => WriteOutcome::Failed(
                                format!("{:?}: {}", err.code(), err.detail),
                                sent.elapsed(),
                            ),
                            _ => WriteOutcome::Succeeded,
                        };
                    }
                    Some(server_message::Kind::Disconnect(disconnect)) => {
                        return WriteOutcome::Failed(
                            format!("disconnect {:?}", disconnect.reason()),
                            sent.elapsed(),
                        );
                    }
                    _ => {}
                },
            }
        }
    })
    .await;
    fate.unwrap_or(WriteOutcome::NoAnswer)
}

/// A new-session handshake on server `id`: its reply, `None` when the
/// connection was refused or closed without one (within 2 s).
async fn handshake_on(cluster: &Cluster, id: u32) -> Option<wire::HandshakeReply> {
    let stream = TcpStream::connect(cluster.node(id).listen).await.ok()?;
    let mut raw = Raw::from_stream(stream);
    raw.framed
        .send(ClientMessage::from(new_session(T)))
        .await
        .ok()?;
    let message = tokio::time::timeout(Duration::from_secs(2), raw.framed.next())
        .await
        .ok()??
        .ok()?;
    match message.kind {
        Some(server_message::Kind::HandshakeReply(reply)) => Some(reply),
        _ => None,
    }
}
