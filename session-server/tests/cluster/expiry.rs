//! Expiry across a leader change: a new leader gives every session a fresh
//! full timeout, and then expires the silent ones on time.

use std::time::Duration;

use futures_util::SinkExt;
use session_wire::v1::{ClientMessage, ErrorCode, NodeKind, Ping};
use tokio::time::{Instant, sleep, sleep_until};

use crate::support::{
    Cluster, EXPIRY_SLACK, Observer, POLL, Raw, T, TICK, keep_alive, others, serial,
};

/// What the observers saw of some ephemerals on every surviving server.
#[derive(Debug)]
struct Sighting {
    /// The last instant a read found every one of them on some server.
    last_present: Option<Instant>,
    /// The first instant a read found one missing, per server.
    first_missing: Vec<(u32, Instant)>,
    /// When every server had them all gone (each server's first read
    /// finding none left).
    all_gone: Option<Instant>,
}

/// Reads `paths` on each server of `on` every [`POLL`] (through an
/// [`Observer`] each, blind while a server drops its clients) until every
/// server has none of them, or `until`.
async fn watch_ephemerals(
    cluster: &Cluster,
    on: &[u32],
    paths: &[&str],
    until: Instant,
) -> Sighting {
    let mut observers: Vec<(Observer, Option<Instant>, Option<Instant>)> = on
        .iter()
        .map(|&id| (Observer::new(cluster, id), None, None))
        .collect();
    let mut sighting = Sighting {
        last_present: None,
        first_missing: Vec::new(),
        all_gone: None,
    };
    loop {
        for (observer, missing, gone) in &mut observers {
            let mut present = 0;
            let mut asked = 0;
            for path in paths {
                match observer.exists(path).await {
                    Some(true) => present += 1,
                    Some(false) => {}
                    None => break,
                }
                asked += 1;
            }
            if asked < paths.len() {
                continue;
            }
            let at = Instant::now();
            if present == paths.len() {
                sighting.last_present = Some(at);
            } else if missing.is_none() {
                *missing = Some(at);
                sighting.first_missing.push((observer.id, at));
            }
            if present == 0 && gone.is_none() {
                *gone = Some(at);
            }
        }
        if observers.iter().all(|(_, _, gone)| gone.is_some()) {
            sighting.all_gone = observers.iter().filter_map(|(_, _, gone)| *gone).max();
            return sighting;
        }
        if Instant::now() >= until {
            return sighting;
        }
        sleep(POLL).await;
    }
}

/// etcd's TestV3LeasePromote: a session whose client went silent is 1 s
/// from expiry when the leader is SIGKILLed.
///
/// Bound: its ephemeral is on both surviving servers at every read before
/// kill + T (so also at silence + T, the old deadline): the new leader
/// cannot have promoted before the kill, and gives a fresh full T; it is
/// gone from both by election + T + tick + [`EXPIRY_SLACK`] (election =
/// when a survivor first named the new leader), and the silent client's
/// connection is then told SESSION_EXPIRED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_gives_a_silent_session_a_fresh_timeout_then_expires_it_on_time() {
    let _serial = serial().await;
    let mut cluster = Cluster::start("promote").await;
    let leader = cluster.leader().await;
    let survivors = others(leader);
    let home = survivors[0];
    let (mut silent, _) = Raw::open(cluster.node(home).listen, T).await;
    silent
        .create("/promote", b"", NodeKind::Ephemeral)
        .await
        .expect("ephemeral");
    // The create was the client's last message: silence from here.
    let silence = Instant::now();

    sleep_until(silence + T - Duration::from_secs(1)).await;
    let killed = cluster.kill(leader);
    let watching = {
        let cluster = &cluster;
        let survivors = survivors.clone();
        async move {
            watch_ephemerals(
                cluster,
                &survivors,
                &["/promote"],
                killed + T + Duration::from_secs(3),
            )
            .await
        }
    };
    // The observer starts at once; the new leader is found meanwhile.
    let (sighting, (new_leader, elected)) =
        tokio::join!(watching, cluster.new_leader(leader, &survivors));

    let first_missing = sighting.first_missing.iter().map(|(_, at)| *at).min();
    assert!(
        first_missing.is_none_or(|at| at >= killed + T),
        "the silent session's ephemeral went {:?} after the kill, before kill + T ({T:?}); \
         silent since {:?} before the kill; server {new_leader} elected {:?} after the kill\n{}",
        first_missing.map(|at| at - killed),
        killed - silence,
        elected - killed,
        cluster.logs(30)
    );
    assert!(
        sighting.last_present.is_some_and(|at| at >= silence + T),
        "present past the old deadline (silence + T)"
    );
    let bound = elected + T + TICK + EXPIRY_SLACK;
    let gone = sighting.all_gone.unwrap_or_else(|| {
        panic!(
            "the ephemeral still exists {:?} after the election (bound T + tick + slack = {:?})\n{}",
            Instant::now() - elected,
            T + TICK + EXPIRY_SLACK,
            cluster.logs(30)
        )
    });
    assert!(
        gone <= bound,
        "gone from every survivor {:?} after the election, bound {:?}",
        gone - elected,
        T + TICK + EXPIRY_SLACK
    );
    let reason = tokio::time::timeout(Duration::from_secs(2), silent.disconnect_reason())
        .await
        .expect("the expired session's connection closes");
    assert_eq!(reason, Some(ErrorCode::SessionExpired));
    eprintln!(
        "elected {:?} after the kill; gone {:?} after the election",
        elected - killed,
        gone - elected
    );
}

/// A client pings through a leader change and is silenced (its connection
/// dropped, as by a killed process) 100 ms into the election.
///
/// Bound: its two ephemerals are on both surviving servers at every read
/// before its last message + T, and gone from both by election + T + tick
/// + [`EXPIRY_SLACK`] (election = when a survivor first named the new
/// leader; the slack is justified at its definition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silenced_during_a_leader_change_expires_within_t_tick_and_slack_of_the_election()
{
    let _serial = serial().await;
    let mut cluster = Cluster::start("silenced").await;
    let leader = cluster.leader().await;
    let survivors = others(leader);
    let home = survivors[0];
    let (mut dying, _) = Raw::open(cluster.node(home).listen, T).await;
    for path in ["/dying-a", "/dying-b"] {
        dying
            .create(path, b"", NodeKind::Ephemeral)
            .await
            .expect("ephemeral");
    }
    keep_alive(&mut dying, Duration::from_millis(1500)).await;

    let killed = cluster.kill(leader);
    sleep(Duration::from_millis(100)).await;
    // The last message: a ping the server may or may not still answer.
    let last_message = Instant::now();
    let _ = dying.framed.send(ClientMessage::from(Ping {})).await;
    drop(dying);

    let watching = {
        let cluster = &cluster;
        let survivors = survivors.clone();
        async move {
            watch_ephemerals(
                cluster,
                &survivors,
                &["/dying-a", "/dying-b"],
                killed + T + Duration::from_secs(3),
            )
            .await
        }
    };
    let (sighting, (new_leader, elected)) =
        tokio::join!(watching, cluster.new_leader(leader, &survivors));

    let first_missing = sighting.first_missing.iter().map(|(_, at)| *at).min();
    assert!(
        first_missing.is_none_or(|at| at >= last_message + T),
        "an ephemeral went {:?} after the client's last message, before T ({T:?}); \
         server {new_leader} elected {:?} after the kill\n{}",
        first_missing.map(|at| at - last_message),
        elected - killed,
        cluster.logs(30)
    );
    let gone = sighting.all_gone.unwrap_or_else(|| {
        panic!(
            "the ephemerals still exist {:?} after the election (bound T + tick + slack = {:?})\n{}",
            Instant::now() - elected,
            T + TICK + EXPIRY_SLACK,
            cluster.logs(30)
        )
    });
    assert!(
        gone <= elected + T + TICK + EXPIRY_SLACK,
        "gone from every survivor {:?} after the election, bound {:?}",
        gone - elected,
        T + TICK + EXPIRY_SLACK
    );
    eprintln!(
        "elected {:?} after the kill; gone {:?} after the election, {:?} after the last message",
        elected - killed,
        gone - elected,
        gone - last_message
    );
}
