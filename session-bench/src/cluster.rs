//! Which server of a cluster leads. session-server says over admin gRPC
//! (`ClusterStatus`: its own node id and the leader's), whichever protocol
//! the scenario speaks to it (`ours` or `ours-zk`); a ZooKeeper server
//! answers the four-letter word `srvr` (`Mode: leader` or `Mode: follower`,
//! so the ensemble must whitelist `srvr`). The servers agree when exactly
//! one of those asked leads and every other one follows it; with
//! [`Quorum::Majority`], the servers that do not answer (stopped, say) are
//! left out as long as a majority of them answers.
//!
//! The `leader` subcommand waits until they agree and prints which server
//! leads; the `kill` scenario uses the same probes to pick its victim and
//! to time the election after it.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use session_wire::admin::v1::{ClusterStatusRequest, admin_client::AdminClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::BenchError;
use crate::scenarios::result;
use crate::{Endpoint, Target};

/// How long one server has to answer one probe.
const PROBE_LIMIT: Duration = Duration::from_secs(1);
/// How often the servers are asked again while they do not agree.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// The flags of `session-bench leader`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LeaderArgs {
    #[command(flatten)]
    pub(crate) endpoint: Endpoint,
    /// session-server (`ours`, `ours-zk`): each server's admin gRPC
    /// address (host:port), comma-separated, in the order of `--addr`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) admin: Vec<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) wait_s: u64,
    /// Agree among the servers that answer, when they are a majority of
    /// those listed (otherwise every server must answer).
    #[arg(long)]
    pub(crate) majority: bool,
}

/// Which servers must answer for an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quorum {
    /// Every server asked.
    All,
    /// A majority of the servers asked; the others are left out.
    Majority,
}

/// The servers of one cluster, in the order of its connect string.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    target: Target,
    /// Client addresses (ZooKeeper answers `srvr` on them).
    clients: Vec<String>,
    /// Admin gRPC addresses (session-server only).
    admins: Vec<String>,
}

/// What one server said about leadership.
#[derive(Debug, Clone, Copy)]
struct Report {
    /// Its node id: as it reports it (ours), its place + 1 (ZooKeeper).
    node: u32,
    /// It leads.
    leads: bool,
    /// The leader it follows: the node id (ours); ZooKeeper's followers do
    /// not name theirs (`Some(0)`). `None` when it knows none.
    follows: Option<u32>,
    /// The Raft term (ours) or the epoch of the last zxid (ZooKeeper).
    term: u64,
}

/// The leader a cluster agreed on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leader {
    /// Its place in the connect string, from 0.
    pub(crate) index: usize,
    /// Its node id.
    pub(crate) node: u32,
    /// The Raft term (ours) or the epoch of the last zxid (ZooKeeper).
    pub(crate) term: u64,
    /// How many servers answered.
    pub(crate) answered: usize,
    /// When the round of questions that found the agreement began: each
    /// server answers as things stood when it was asked.
    pub(crate) asked: Instant,
}

impl Cluster {
    /// The cluster behind `endpoint`; session-server needs one admin
    /// address per server, in the same order.
    pub(crate) fn new(endpoint: &Endpoint, admins: &[String]) -> Result<Cluster, BenchError> {
        let clients = endpoint.addresses();
        if endpoint.target.is_session_server() && admins.len() != clients.len() {
            return Err(format!(
                "{} servers in --addr but {} --admin addresses",
                clients.len(),
                admins.len()
            )
            .into());
        }
        Ok(Cluster {
            target: endpoint.target,
            clients,
            admins: admins.to_vec(),
        })
    }

    /// Every server's place, from 0.
    pub(crate) fn all(&self) -> Vec<usize> {
        (0..self.clients.len()).collect()
    }

    /// How many servers the cluster has.
    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// Asks the servers at the places `among` until they (all, or a
    /// majority, as `quorum` says) agree on a leader among them, for at
    /// most `limit`.
    pub(crate) async fn wait_leader(
        &self,
        among: &[usize],
        quorum: Quorum,
        limit: Duration,
    ) -> Result<Leader, BenchError> {
        let deadline = Instant::now() + limit;
        loop {
            let asked = Instant::now();
            let (agreed, reports) = self.agreed(among, quorum, asked).await;
            if let Some(leader) = agreed {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the servers did not agree on a leader within {limit:?}; last answers: {}",
                    reports.join("; ")
                )
                .into());
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// The leader the servers at `among` agree on, if they do, and what
    /// each said (for an error message).
    async fn agreed(
        &self,
        among: &[usize],
        quorum: Quorum,
        asked: Instant,
    ) -> (Option<Leader>, Vec<String>) {
        let reports = join_all(among.iter().map(|&index| self.report(index))).await;
        let shown = among
            .iter()
            .zip(&reports)
            .map(|(index, report)| match report {
                Ok(report) => format!("{}: {report:?}", self.clients[*index]),
                Err(err) => format!("{}: {err}", self.clients[*index]),
            })
            .collect();
        let mut answered = Vec::with_capacity(reports.len());
        for (index, report) in among.iter().zip(reports) {
            match report {
                Ok(report) => answered.push((*index, report)),
                Err(_) if quorum == Quorum::Majority => {}
                Err(_) => return (None, shown),
            }
        }
        if answered.len() < among.len() / 2 + 1 {
            return (None, shown);
        }
        let mut leaders = answered.iter().filter(|(_, report)| report.leads);
        let (Some(&(index, leader)), None) = (leaders.next(), leaders.next()) else {
            return (None, shown);
        };
        let all_follow = answered.iter().all(|(_, report)| {
            report.leads
                || if self.target.is_session_server() {
                    report.follows == Some(leader.node)
                } else {
                    report.follows.is_some()
                }
        });
        let agreed = all_follow.then_some(Leader {
            index,
            node: leader.node,
            term: leader.term,
            answered: answered.len(),
            asked,
        });
        (agreed, shown)
    }

    /// Asks the server at place `index`, within [`PROBE_LIMIT`].
    async fn report(&self, index: usize) -> Result<Report, BenchError> {
        let asked = async {
            if self.target.is_session_server() {
                ours_report(&self.admins[index]).await
            } else {
                zookeeper_report(&self.clients[index], index).await
            }
        };
        tokio::time::timeout(PROBE_LIMIT, asked)
            .await
            .map_err(|_| format!("no answer within {PROBE_LIMIT:?}"))?
    }
}

/// session-server's `ClusterStatus`.
async fn ours_report(admin: &str) -> Result<Report, BenchError> {
    let mut client = AdminClient::connect(format!("http://{admin}")).await?;
    let status = client
        .cluster_status(ClusterStatusRequest {})
        .await?
        .into_inner();
    Ok(Report {
        node: status.node_id,
        leads: status.leader_id != 0 && status.leader_id == status.node_id,
        follows: (status.leader_id != 0).then_some(status.leader_id),
        term: status.term,
    })
}

/// ZooKeeper's `srvr`: `Mode: leader|follower|standalone` and `Zxid: 0x...`;
/// a server without a quorum answers that it is not serving requests.
async fn zookeeper_report(addr: &str, index: usize) -> Result<Report, BenchError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(b"srvr").await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let field = |name: &str| {
        answer
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    let mode = field("Mode:").ok_or_else(|| format!("srvr answered {:?}", answer.trim()))?;
    let zxid = field("Zxid:")
        .and_then(|zxid| u64::from_str_radix(zxid.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    let node = u32::try_from(index + 1)?;
    let leads = matches!(mode, "leader" | "standalone");
    Ok(Report {
        node,
        leads,
        follows: (mode == "follower").then_some(0),
        term: zxid >> 32,
    })
}

/// `session-bench leader`: waits for the agreement and prints it.
pub(crate) async fn leader(args: &LeaderArgs) -> Result<(), BenchError> {
    let cluster = Cluster::new(&args.endpoint, &args.admin)?;
    let started = Instant::now();
    let quorum = if args.majority {
        Quorum::Majority
    } else {
        Quorum::All
    };
    let leader = cluster
        .wait_leader(&cluster.all(), quorum, Duration::from_secs(args.wait_s))
        .await?;
    result(
        "leader",
        args.endpoint.target,
        &[
            ("servers", cluster.len().to_string()),
            ("answered", leader.answered.to_string()),
            ("index", leader.index.to_string()),
            ("node", leader.node.to_string()),
            ("term", leader.term.to_string()),
            ("waited_ms", started.elapsed().as_millis().to_string()),
        ],
    );
    Ok(())
}
