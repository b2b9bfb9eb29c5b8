//! leader and kill on an etcd cluster; the mapping is in the [parent
//! module](super).
//!
//! Which member leads: each member's `Maintenance.Status` names its own id
//! (in the header) and the leader's id it knows (0: none). The members
//! asked agree when every one of them answers (or, with `--majority`, a
//! majority of them) and all name the same leader, which is one of those
//! that answered.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::client::EtcdClient;
use super::keeper::{KeeperPool, LeaseReport};
use super::{connect_pool, open_kept, ttl_seconds, wait_renewed};
use crate::client::BenchError;
use crate::cluster::LeaderArgs;
use crate::kill::{KillArgs, Victim};
use crate::scenarios::{progress, quantile, result};
use crate::sys;

/// How long one member has to answer one probe.
const PROBE_LIMIT: Duration = Duration::from_secs(1);
/// How often the members are asked again while they do not agree.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long the cluster has to agree on a leader before the kill.
const LEADER_LIMIT: Duration = Duration::from_secs(60);
/// The prefix of the kill scenario's keys.
const PREFIX: &str = "/bench/kill/";

/// What one member said.
#[derive(Debug, Clone, Copy)]
struct Report {
    /// Its own member id.
    member: u64,
    /// The leader's member id it knows (0: none).
    leader: u64,
    /// Its Raft term.
    term: u64,
}

/// The leader the members agreed on.
#[derive(Debug, Clone, Copy)]
struct Agreed {
    /// Its place in `--addr`, from 0.
    index: usize,
    /// Its member id.
    member: u64,
    /// Its Raft term.
    term: u64,
    /// How many members answered.
    answered: usize,
    /// When the round of questions that found the agreement began.
    asked: Instant,
}

/// Asks the member at `addr`, within [`PROBE_LIMIT`].
async fn report(addr: &str) -> Result<Report, BenchError> {
    let asked = async {
        let client = EtcdClient::connect(addr).await?;
        let status = client.status().await?;
        let header = status.header.unwrap_or_default();
        Ok::<_, BenchError>(Report {
            member: header.member_id,
            leader: status.leader,
            term: status.raft_term,
        })
    };
    tokio::time::timeout(PROBE_LIMIT, asked)
        .await
        .map_err(|_| format!("no answer within {PROBE_LIMIT:?}"))?
}

/// Asks the members at the places `among` of `addrs` until they agree on
/// a leader among them, for at most `limit`.
async fn wait_leader(
    addrs: &[String],
    among: &[usize],
    majority: bool,
    limit: Duration,
) -> Result<Agreed, BenchError> {
    let deadline = Instant::now() + limit;
    loop {
        let asked = Instant::now();
        let reports = join_all(among.iter().map(|&index| report(&addrs[index]))).await;
        let mut answered = Vec::with_capacity(among.len());
        let mut shown = Vec::with_capacity(among.len());
        let mut missing = false;
        for (&index, report) in among.iter().zip(reports) {
            match report {
                Ok(report) => {
                    shown.push(format!("{}: {report:?}", addrs[index]));
                    answered.push((index, report));
                }
                Err(err) => {
                    shown.push(format!("{}: {err}", addrs[index]));
                    missing = true;
                }
            }
        }
        let enough = if majority {
            answered.len() > among.len() / 2
        } else {
            !missing
        };
        if enough {
            let leader = answered.first().map_or(0, |(_, report)| report.leader);
            let agree = leader != 0 && answered.iter().all(|(_, report)| report.leader == leader);
            let found = answered
                .iter()
                .find(|(_, report)| report.member == leader)
                .copied();
            if let (true, Some((index, report))) = (agree, found) {
                return Ok(Agreed {
                    index,
                    member: report.member,
                    term: report.term,
                    answered: answered.len(),
                    asked,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the members did not agree on a leader within {limit:?}; last answers: {}",
                shown.join("; ")
            )
            .into());
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// `session-bench leader --target etcd`: waits for the agreement and
/// prints it (`node` is the leader's place in `--addr` + 1).
pub(crate) async fn leader(flags: &LeaderArgs) -> Result<(), BenchError> {
    let addrs = flags.endpoint.addresses();
    let all: Vec<usize> = (0..addrs.len()).collect();
    let started = Instant::now();
    let agreed = wait_leader(
        &addrs,
        &all,
        flags.majority,
        Duration::from_secs(flags.wait_s),
    )
    .await?;
    result(
        "leader",
        flags.endpoint.target,
        &[
            ("servers", addrs.len().to_string()),
            ("answered", agreed.answered.to_string()),
            ("index", agreed.index.to_string()),
            ("node", (agreed.index + 1).to_string()),
            ("term", agreed.term.to_string()),
            ("waited_ms", started.elapsed().as_millis().to_string()),
            ("member_id", format!("{:x}", agreed.member)),
        ],
    );
    Ok(())
}

/// Milliseconds with one decimal.
fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

/// Durations as sorted microseconds, for [`quantile`].
fn sorted_us(durations: impl Iterator<Item = Duration>) -> Vec<u64> {
    let mut us: Vec<u64> = durations
        .map(|duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
        .collect();
    us.sort_unstable();
    us
}

/// Milliseconds with one decimal, from microseconds.
fn ms_us(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// `session-bench kill --target etcd`.
pub(crate) async fn kill(flags: &KillArgs) -> Result<(), BenchError> {
    let endpoint = &flags.endpoint;
    let addrs = endpoint.addresses();
    if flags.pids.len() != addrs.len() {
        return Err(format!(
            "{} members in --addr but {} --pids",
            addrs.len(),
            flags.pids.len()
        )
        .into());
    }
    if addrs.len() < 2 {
        return Err("killing a member needs a cluster of at least two".into());
    }
    let timeout = Duration::from_millis(flags.timeout_ms);
    let watch = Duration::from_millis(flags.watch_ms.unwrap_or(2 * flags.timeout_ms));
    let all: Vec<usize> = (0..addrs.len()).collect();
    let leader = wait_leader(&addrs, &all, false, LEADER_LIMIT).await?;
    let victim = match flags.victim {
        Victim::Leader => leader.index,
        Victim::Follower => (leader.index + 1) % addrs.len(),
    };
    let victim_name = match flags.victim {
        Victim::Leader => "leader",
        Victim::Follower => "follower",
    };

    let ttl_s = ttl_seconds(timeout);
    let clients = connect_pool(endpoint).await?;
    let keepers = KeeperPool::start(&clients, &addrs);
    open_kept(&clients, &keepers, flags.sessions, ttl_s, |index| {
        format!("{PREFIX}s{index}")
    })
    .await?;
    wait_renewed(&keepers, Duration::from_secs(60)).await?;
    if keepers.lost() > 0 {
        return Err(format!("{} leases lost before the kill", keepers.lost()).into());
    }
    progress(format!(
        "{} leases held on {} connections; member {} leads (term {}); killing member {} \
         (the {victim_name}, pid {})",
        flags.sessions,
        clients.len(),
        leader.index + 1,
        leader.term,
        victim + 1,
        flags.pids[victim]
    ));
    // The pool's own handles on the dead member's connections go too.
    drop(clients);

    let killed = keepers.mark();
    sys::send_signal(flags.pids[victim], libc::SIGKILL)
        .map_err(|err| format!("cannot kill pid {}: {err}", flags.pids[victim]))?;
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let election = (flags.victim == Victim::Leader).then(|| {
        let addrs = addrs.clone();
        let survivors = survivors.clone();
        tokio::spawn(async move {
            let elected = wait_leader(&addrs, &survivors, false, watch).await;
            elected.map(|leader| (leader.asked.saturating_duration_since(killed), leader))
        })
    });
    tokio::time::sleep_until((killed + watch).into()).await;
    let reports = keepers.report().await?;
    let stream_failures = keepers.stream_failures();
    if keepers.misordered() > 0 {
        progress(format!(
            "{} keep-alive replies did not answer the oldest request in flight",
            keepers.misordered()
        ));
    }

    // The keys left, read from a surviving member.
    let reader = EtcdClient::connect(&addrs[survivors[0]]).await?;
    let keys: HashSet<String> =
        tokio::time::timeout(Duration::from_secs(10), reader.keys_with_prefix(PREFIX))
            .await
            .map_err(|_| "listing the keys timed out")??
            .into_iter()
            .collect();
    let key_of = |index: usize| format!("{PREFIX}s{index}");
    let lost_of = |report: &LeaseReport| report.lost || !keys.contains(&key_of(report.index));
    let lost = reports.iter().filter(|report| lost_of(report)).count()
        + flags.sessions.saturating_sub(reports.len());
    let disconnected = reports.iter().filter(|report| report.broken).count();
    let back = sorted_us(
        reports
            .iter()
            .filter(|report| report.broken && !lost_of(report))
            .filter_map(|report| report.back_after_break),
    );
    let renewed = sorted_us(
        reports
            .iter()
            .filter(|report| !lost_of(report))
            .filter_map(|report| report.renewed_after_mark),
    );
    let reconnected = reports
        .iter()
        .filter(|report| report.broken)
        .filter_map(|report| report.reconnected_after_break)
        .max();
    let ephemerals = reports
        .iter()
        .filter(|report| keys.contains(&key_of(report.index)))
        .count();

    let mut fields = vec![
        ("sessions", flags.sessions.to_string()),
        ("servers", addrs.len().to_string()),
        ("victim", victim_name.to_owned()),
        ("victim_node", (victim + 1).to_string()),
        ("watch_ms", watch.as_millis().to_string()),
        ("disconnected", disconnected.to_string()),
        ("back", back.len().to_string()),
        ("lost", lost.to_string()),
        ("all_back_ms", ms_us(back.last().copied().unwrap_or(0))),
        ("p50_ms", ms_us(quantile(&back, 0.50))),
        ("p99_ms", ms_us(quantile(&back, 0.99))),
        ("ephemerals", ephemerals.to_string()),
        (
            "ephemerals_missing",
            flags.sessions.saturating_sub(ephemerals).to_string(),
        ),
        ("connections", keepers.len().to_string()),
        ("renewed", renewed.len().to_string()),
        (
            "all_renewed_ms",
            ms_us(renewed.last().copied().unwrap_or(0)),
        ),
        ("renewed_p50_ms", ms_us(quantile(&renewed, 0.50))),
        ("renewed_p99_ms", ms_us(quantile(&renewed, 0.99))),
        (
            "streams_back_ms",
            reconnected.map_or_else(|| "none".to_owned(), ms),
        ),
        ("stream_failures", stream_failures.to_string()),
    ];
    if let Some(election) = election {
        match election.await? {
            Ok((elapsed, leader)) => {
                fields.push(("new_leader_ms", ms(elapsed)));
                fields.push(("new_leader_node", (leader.index + 1).to_string()));
            }
            Err(err) => {
                progress(format!("no new leader: {err}"));
                fields.push(("new_leader_ms", "none".to_owned()));
            }
        }
    }
    result("kill", endpoint.target, &fields);
    keepers.stop().await;
    Ok(())
}
