//! The server-death scenarios of a cluster (`kill --victim leader|follower`).
//!
//! N sessions are opened through the cluster's connect string (each client
//! shuffles it, so about 1/N of the sessions land on each server) and each
//! creates one ephemeral node. Then the victim is SIGKILLed: the leader the
//! servers agree on, or a follower. From the kill, every session is
//! followed for `--watch-ms` (default 2·T): whether it was disconnected,
//! when it was last Connected again, whether it was lost (expired, or not
//! Connected with its old id when the watch ends). Then every session that
//! is back reads its own ephemeral, which shows the server still holds that
//! session as live, and one session counts the ephemerals left.
//!
//! With the leader as victim, the servers left are also asked who leads
//! until they agree on a new leader: `new_leader_ms` from the kill to the
//! start of the round of questions that found the agreement (a round
//! takes tens of milliseconds).

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use tokio::task::JoinSet;

use crate::client::{BenchClient, BenchError, Liveness, StateFollower, is_no_node};
use crate::cluster::{Cluster, Quorum};
use crate::scenarios::{OPEN_IN_FLIGHT, open_all, progress, quantile, result};
use crate::{Endpoint, sys};

/// The parent of the sessions' ephemerals.
const PARENT: &str = "/bench-kill";
/// How long the cluster has to agree on a leader before the kill.
const LEADER_LIMIT: Duration = Duration::from_secs(60);
/// How long one read or close may take after the watch.
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// Which server the scenario kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Victim {
    /// The leader the servers agree on.
    Leader,
    /// The server after the leader in the connect string: a follower.
    Follower,
}

impl Victim {
    fn name(self) -> &'static str {
        match self {
            Victim::Leader => "leader",
            Victim::Follower => "follower",
        }
    }
}

/// The flags of `session-bench kill`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KillArgs {
    #[command(flatten)]
    pub(crate) endpoint: Endpoint,
    /// Which server to SIGKILL.
    #[arg(long, value_enum)]
    pub(crate) victim: Victim,
    /// Each server's process id, comma-separated, in the order of `--addr`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) pids: Vec<u32>,
    /// session-server: each server's admin gRPC address, comma-separated,
    /// in the order of `--addr`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) admin: Vec<String>,
    /// Sessions to hold, one ephemeral each.
    #[arg(long, default_value_t = 1000)]
    pub(crate) sessions: usize,
    /// Requested session timeout in milliseconds.
    #[arg(long, default_value_t = 6000)]
    pub(crate) timeout_ms: u64,
    /// How long to follow the sessions after the kill, in milliseconds
    /// (default: twice the timeout).
    #[arg(long)]
    pub(crate) watch_ms: Option<u64>,
}

/// What became of one session after the kill.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    /// It left Connected at least once.
    disconnected: bool,
    /// When it was last Connected again, from the kill.
    back: Option<Duration>,
    /// It expired or was closed, or was not Connected at the end.
    lost: bool,
}

/// Runs the scenario and prints its RESULT line.
pub(crate) async fn kill(args: &KillArgs) -> Result<(), BenchError> {
    let endpoint = &args.endpoint;
    let cluster = Cluster::new(endpoint, &args.admin)?;
    if args.pids.len() != cluster.len() {
        return Err(format!(
            "{} servers in --addr but {} --pids",
            cluster.len(),
            args.pids.len()
        )
        .into());
    }
    if cluster.len() < 2 {
        return Err("killing a server needs a cluster of at least two".into());
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    let watch = Duration::from_millis(args.watch_ms.unwrap_or(2 * args.timeout_ms));

    let leader = cluster
        .wait_leader(&cluster.all(), Quorum::All, LEADER_LIMIT)
        .await?;
    let victim = match args.victim {
        Victim::Leader => leader.index,
        Victim::Follower => (leader.index + 1) % cluster.len(),
    };

    let clients = open_all(
        endpoint,
        args.sessions,
        OPEN_IN_FLIGHT,
        timeout,
        Duration::from_secs(300),
    )
    .await?;
    clients
        .first()
        .ok_or("no sessions")?
        .ensure_persistent(PARENT)
        .await?;
    let creating = stream::iter(clients.iter().enumerate())
        .map(|(index, client)| create_own(client, index))
        .buffer_unordered(OPEN_IN_FLIGHT)
        .collect::<Vec<_>>();
    let mut parent_missing = 0;
    for created in creating.await {
        parent_missing += created?;
    }
    if parent_missing > 0 {
        progress(format!(
            "{parent_missing} creates under {PARENT} found no {PARENT} at first \
             (created through another server just before) and were tried again"
        ));
    }
    let mut followers: Vec<StateFollower> = clients.iter().map(BenchClient::follow).collect();
    for follower in &mut followers {
        if follower.now() != Liveness::Connected {
            return Err("a session was not connected before the kill".into());
        }
    }
    let ids: Vec<u64> = clients.iter().map(BenchClient::session_id).collect();
    progress(format!(
        "{} sessions held; node {} leads (term {}); killing node {} (the {}, pid {})",
        clients.len(),
        leader.node,
        leader.term,
        victim + 1,
        args.victim.name(),
        args.pids[victim]
    ));

    let killed = Instant::now();
    sys::send_signal(args.pids[victim], libc::SIGKILL)
        .map_err(|err| format!("cannot kill pid {}: {err}", args.pids[victim]))?;

    let election = (args.victim == Victim::Leader).then(|| {
        let cluster = cluster.clone();
        let survivors: Vec<usize> = cluster.all().into_iter().filter(|&i| i != victim).collect();
        tokio::spawn(async move {
            let elected = cluster.wait_leader(&survivors, Quorum::All, watch).await;
            elected.map(|leader| (leader.asked.saturating_duration_since(killed), leader))
        })
    });
    let mut watching = JoinSet::new();
    for (index, follower) in followers.into_iter().enumerate() {
        watching.spawn(async move { (index, follow(follower, killed, watch).await) });
    }
    let mut outcomes = vec![Outcome::default(); clients.len()];
    while let Some(joined) = watching.join_next().await {
        let (index, outcome) = joined?;
        outcomes[index] = outcome;
    }

    // The watch is over: every session still counted as back must still be
    // the same session, live on the servers with its ephemeral.
    let ids = &ids;
    let checks = stream::iter(clients.iter().enumerate())
        .filter(|(index, _)| std::future::ready(!outcomes[*index].lost))
        .map(|(index, client)| async move {
            let read = tokio::time::timeout(CALL_LIMIT, client.exists(&ephemeral(index))).await;
            let fine = client.session_id() == ids[index] && matches!(read, Ok(Ok(true)));
            (index, fine, read)
        })
        .buffer_unordered(OPEN_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let mut reported = false;
    for (index, fine, read) in checks {
        if !fine {
            if !reported {
                progress(format!(
                    "session {index} is not the same live session after the watch: \
                     its ephemeral read gave {read:?}"
                ));
                reported = true;
            }
            outcomes[index].lost = true;
        }
    }
    let lost = outcomes.iter().filter(|outcome| outcome.lost).count();
    let ephemerals = match clients
        .iter()
        .zip(&outcomes)
        .find(|(_, outcome)| !outcome.lost)
    {
        Some((client, _)) => tokio::time::timeout(CALL_LIMIT, client.child_count(PARENT))
            .await
            .map_err(|_| "counting the ephemerals timed out")??,
        None => 0,
    };
    let mut back: Vec<u64> = outcomes
        .iter()
        .filter(|outcome| outcome.disconnected && !outcome.lost)
        .filter_map(|outcome| outcome.back)
        .map(|back| u64::try_from(back.as_micros()).unwrap_or(u64::MAX))
        .collect();
    back.sort_unstable();
    let disconnected = outcomes
        .iter()
        .filter(|outcome| outcome.disconnected)
        .count();
    let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);

    let mut fields = vec![
        ("sessions", clients.len().to_string()),
        ("servers", cluster.len().to_string()),
        ("victim", args.victim.name().to_owned()),
        ("victim_node", (victim + 1).to_string()),
        ("watch_ms", watch.as_millis().to_string()),
        ("disconnected", disconnected.to_string()),
        ("back", back.len().to_string()),
        ("lost", lost.to_string()),
        ("all_back_ms", ms(back.last().copied().unwrap_or(0))),
        ("p50_ms", ms(quantile(&back, 0.50))),
        ("p99_ms", ms(quantile(&back, 0.99))),
        ("ephemerals", ephemerals.to_string()),
        ("parent_missing", parent_missing.to_string()),
        (
            "ephemerals_missing",
            (clients.len() as u64)
                .saturating_sub(ephemerals)
                .to_string(),
        ),
    ];
    if let Some(election) = election {
        match election.await? {
            Ok((elapsed, leader)) => {
                fields.push((
                    "new_leader_ms",
                    format!("{:.1}", elapsed.as_secs_f64() * 1000.0),
                ));
                fields.push(("new_leader_node", leader.node.to_string()));
            }
            Err(err) => {
                progress(format!("no new leader: {err}"));
                fields.push(("new_leader_ms", "none".to_owned()));
            }
        }
    }
    result("kill", endpoint.target, &fields);

    let closing = stream::iter(clients)
        .map(|client| tokio::time::timeout(CALL_LIMIT, client.close()))
        .buffer_unordered(OPEN_IN_FLIGHT)
        .collect::<Vec<_>>();
    let _ = closing.await;
    Ok(())
}

/// Creates the ephemeral of session `index`; returns how many times its
/// server answered that the parent, created through another server just
/// before, did not exist (then it tries again, for a second at most).
async fn create_own(client: &BenchClient, index: usize) -> Result<u32, BenchError> {
    const TRIES: u32 = 50;
    let path = ephemeral(index);
    let mut parent_missing = 0;
    loop {
        match client.create_ephemeral(&path, b"").await {
            Ok(()) => return Ok(parent_missing),
            Err(err) if is_no_node(&err) && parent_missing < TRIES => {
                parent_missing += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => return Err(format!("create {path}: {err}").into()),
        }
    }
}

/// The ephemeral node of session `index`.
fn ephemeral(index: usize) -> String {
    format!("{PARENT}/s{index}")
}

/// Follows one session from the kill for `watch`.
async fn follow(mut follower: StateFollower, killed: Instant, watch: Duration) -> Outcome {
    let deadline = tokio::time::Instant::from_std(killed + watch);
    let mut outcome = Outcome::default();
    let mut state = Liveness::Connected;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, follower.changed()).await else {
            break;
        };
        match next {
            Liveness::Lost => {
                outcome.lost = true;
                return outcome;
            }
            Liveness::Disconnected => outcome.disconnected = true,
            // Connected again; also when it follows Connected: the states
            // in between were overwritten before this task looked.
            Liveness::Connected => {
                outcome.disconnected = true;
                outcome.back = Some(killed.elapsed());
            }
        }
        state = next;
    }
    if state != Liveness::Connected {
        outcome.lost = true;
    }
    outcome
}
