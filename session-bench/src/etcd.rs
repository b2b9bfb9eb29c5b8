//! etcd 3.4 as a third column: the scenarios of `session-bench` over etcd's
//! v3 gRPC API (plain-text HTTP/2 on its client URL), with a small client
//! of our own ([`client`]) over hand-written prost messages ([`proto`]): no
//! `protoc`, no generated code, no `etcd-client` crate.
//!
//! # The mapping
//!
//! A **session** is a lease with one key attached (`Put` with the lease's
//! id): the lease's end deletes the key, as a session's end deletes its
//! ephemerals. The session timeout T maps to the lease TTL in whole
//! seconds, rounded up (6000 ms → TTL 6 s); etcd raises a TTL below its
//! minimum (2 s with its default election timeout) to that minimum.
//!
//! A client is a **connection**, as with etcd's Go client (clientv3): one
//! gRPC connection carries the calls of many sessions and one
//! `LeaseKeepAlive` stream for all the leases of that connection. The
//! scenarios use a pool of [`CONNECTIONS`] (8) connections; against a
//! cluster, rounded up to a multiple of its members and spread evenly over
//! them (9 for 3 members), connection `j` to member `j mod members`.
//! Session `i` uses connection `i mod connections`.
//!
//! Leases are kept alive as clientv3 does it ([`keeper`]): every 500 ms
//! each connection's keeper sends a `LeaseKeepAlive` request for each of
//! its leases that is due; a lease is due at once when added and then TTL/3
//! after each successful reply (so every 2 to 2.5 s for TTL 6 s), again
//! every 500 ms while unanswered. A lease is **lost** when a reply says
//! TTL ≤ 0 or when it had no successful reply for a whole TTL. A failed
//! stream is opened again, after 500 ms, on a new connection to the next
//! member of `--addr`.
//!
//! - **establish** (`sessions`, `in_flight`): per session `LeaseGrant(TTL
//!   30 s)` — the session timeout `establish` asks of the other targets —
//!   then `Put(/bench/e{i}, lease)`; `in_flight` sessions at once over the
//!   pool of connections (connected inside the timed part). Keys as the
//!   other targets: `sessions` (opened), `failed`, `elapsed_s`,
//!   `sessions_per_s`; plus `connections`. No keep-alives: the run is over
//!   long before the TTL.
//! - **hold**: N sessions (`/bench/hold/h{i}`, TTL = T) opened 64 at a
//!   time, each kept alive from the moment it exists by its connection's
//!   keeper: 8 connections, 8 keep-alive streams (9 of each against 3
//!   members). Same keys as the other targets; `pings` = keep-alive
//!   requests sent during the measured window, `cpu_per_ping_us` = server
//!   CPU over that window / pings; `lost` = leases lost (see above) by the
//!   end; RSS and CPU summed over `--server-pid`. Plus `connections` and
//!   `streams`.
//! - **churn**: `sessions` workers, each with its own lease (TTL 10 s, the
//!   timeout churn asks of the other targets, kept alive by the keepers)
//!   and one operation in flight: `Put(/bench/churn/w{worker}-{op}, lease)`
//!   then `DeleteRange` of that key, for `duration_s` (or `max_ops` pairs);
//!   a delete that deleted nothing is an error. Same keys as the other
//!   targets; plus `connections`.
//! - **pipelined**: one connection, up to `window` calls in flight
//!   (concurrent HTTP/2 streams), alternating `Put(/bench/pipelined, 64
//!   bytes)` and `Range` of that key, `requests` in all. etcd does not
//!   promise any order between concurrent calls, so `out_of_order` counts
//!   violations of real-time order instead (linearizability): a `Put` must
//!   get a revision above that of every `Put` whose reply had come before
//!   it was sent, and a `Range` must see the key at a `mod_revision` (and a
//!   header revision) no lower than that. A `Range` that does not return 64
//!   bytes is an error. Same keys as the other targets, `mix=put+range`.
//! - **expiry**: the holder process (`expiry-holder`) opens K sessions
//!   (`/bench/expiry/h{i}`, TTL = T) on the pool, kept alive, and says
//!   READY; on `freeze` its keepers stop their schedule, send one last
//!   keep-alive per lease and print `HB i sent answered` (CLOCK_MONOTONIC
//!   ms of the request and of its successful reply) per lease and
//!   `LAST_PING first last 1`, then stay silent until SIGKILLed. The
//!   observer watches the prefix `/bench/expiry/` (a `Watch` stream on its
//!   own connection, created and confirmed before the freeze) and takes
//!   each DELETE event's receipt time as the key's `gone` time; the
//!   survivors are counted with a `Range` at the end. Same keys as the v1
//!   expiry: early = gone ≤ T after its last keep-alive was sent; late =
//!   gone > T + tick + 50 ms after its reply (tick as passed, 2000 by
//!   xtask). The receipt time is at or after the deletion, so late is
//!   judged against the watch's delivery as well (milliseconds). etcd's own
//!   bound is tighter and also reported: its lessor looks for expired
//!   leases every 500 ms and revokes at most 1000 leases per second (500
//!   per look), TTLs being whole seconds; `etcd_bound_ms` = TTL + 500 ms,
//!   `late_etcd_sessions` = gone > TTL + 500 + 50 ms after its reply (for
//!   more than 500 leases the revocation rate alone makes some late
//!   there). Plus `ttl_s`, `tick_ms`, `deletes_seen` (DELETE events
//!   received).
//! - **kill** (a cluster): N sessions (`/bench/kill/s{i}`, TTL = T) on the
//!   pool (9 connections, 3 per member), every lease renewed at least once;
//!   then SIGKILL of the leader (each member's `Maintenance.Status` names
//!   it) or of the member after it (`--victim follower`). For `--watch-ms`
//!   (default 2·T) each lease is followed: `disconnected` = leases whose
//!   keep-alive stream failed after the kill (the connections to the dead
//!   member, which reopen on the next member); `back` and
//!   `all_back_ms`/`p50_ms`/`p99_ms` = those of them with a successful
//!   keep-alive since, and when (from the kill; this includes the 500 ms
//!   retry wait and the wait for the lease's next due keep-alive: clientv3
//!   does not renew at once on a new stream, and leases opened together
//!   keep one phase);
//!   `lost` = leases lost (see above) or whose key is gone at the end;
//!   `ephemerals`, `ephemerals_missing` = the keys left by a `Range` on a
//!   surviving member; `new_leader_ms`, `new_leader_node` (leader victim)
//!   as for the other targets (node = place in `--addr` + 1). Plus
//!   `connections`, `renewed` = leases with a successful keep-alive sent
//!   after the kill and `all_renewed_ms`/`renewed_p50_ms`/`renewed_p99_ms`
//!   (from the kill to its reply; a lease on a follower whose leader died
//!   waits for the new leader there), `streams_back_ms` (from the kill
//!   until every failed stream's new connection was up),
//!   `stream_failures`. `parent_missing` does not apply (etcd has no
//!   parent nodes) and is not printed.
//! - **leader**: every member's `Maintenance.Status` until those asked
//!   agree on one leader among them (same keys as for the other targets;
//!   `node` = its place + 1, plus `member_id` in hex).
//! - **failover**: one proxy per member; N sessions
//!   (`/bench/failover/f{i}`, TTL = T) on the pool through the proxies,
//!   every lease renewed once; every connection cut; then how long until
//!   each lease had a successful keep-alive again, within 2·T.
//!   Same keys as the other targets (`reattached` = leases with a
//!   successful keep-alive after the cut, `lost` = the others or lost
//!   leases; a lease keeps its id), plus `connections`, `streams_back_ms`
//!   (from the cut until every connection was up again, through the
//!   proxies).
//!
//! `hold --connections N` gives the leases N connections instead of the
//! pool of 8: with N = the sessions, each lease has a connection and a
//! keep-alive stream of its own, as each session of the other targets has
//! a connection of its own (a registry of N services, each an etcd client
//! with one lease).

mod client;
mod cluster;
mod expiry;
mod failover;
mod keeper;
mod load;
mod proto;

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};

use self::client::EtcdClient;
use self::keeper::{KeeperPool, LeaseReport, SEND_EVERY};
use crate::Command;
use crate::Endpoint;
use crate::client::BenchError;
use crate::scenarios::OPEN_IN_FLIGHT;

/// Connections in the pool against one server; against a cluster, rounded
/// up to a multiple of its members.
pub(crate) const CONNECTIONS: usize = 8;

/// Runs one scenario subcommand against etcd.
pub(crate) async fn run(command: Command) -> Result<(), BenchError> {
    match command {
        Command::Establish {
            endpoint,
            sessions,
            in_flight,
            raw,
            tls,
        } => {
            if raw || tls.dialer()?.is_some() {
                return Err("--raw and TLS are for --target ours, not etcd".into());
            }
            load::establish(&endpoint, sessions, in_flight).await
        }
        Command::Hold {
            endpoint,
            tls,
            sessions,
            timeout_ms,
            hold_s,
            server_pid,
            perf_out,
            connections,
        } => {
            if tls.dialer()?.is_some() {
                return Err("TLS is for --target ours, not etcd".into());
            }
            if perf_out.is_some() {
                return Err("--perf-out is not supported with --target etcd yet".into());
            }
            load::hold(
                &endpoint,
                connections.unwrap_or(CONNECTIONS),
                sessions,
                Duration::from_millis(timeout_ms),
                Duration::from_secs(hold_s),
                &server_pid,
            )
            .await
        }
        Command::Churn {
            endpoint,
            sessions,
            duration_s,
            max_ops,
        } => {
            load::churn(
                &endpoint,
                sessions,
                Duration::from_secs(duration_s),
                max_ops,
            )
            .await
        }
        Command::Pipelined {
            endpoint,
            requests,
            window,
        } => load::pipelined(&endpoint, requests, window).await,
        Command::Expiry {
            endpoint,
            sessions,
            timeout_ms,
            tick_ms,
        } => expiry::expiry(&endpoint, sessions, timeout_ms, tick_ms).await,
        Command::ExpiryHolder {
            endpoint,
            sessions,
            timeout_ms,
        } => expiry::holder(&endpoint, sessions, Duration::from_millis(timeout_ms)).await,
        Command::Failover {
            endpoint,
            sessions,
            timeout_ms,
        } => failover::failover(&endpoint, sessions, Duration::from_millis(timeout_ms)).await,
        Command::Leader(args) => cluster::leader(&args).await,
        Command::Kill(args) => cluster::kill(&args).await,
        Command::Restart(_) | Command::Floor(_) | Command::ExecServer { .. } => {
            Err("this subcommand has no etcd version".into())
        }
    }
}

/// The lease TTL for session timeout `timeout`: whole seconds, rounded up,
/// at least 1.
pub(crate) fn ttl_seconds(timeout: Duration) -> i64 {
    let seconds = timeout.as_millis().div_ceil(1000).max(1);
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// The number of connections for the members of `endpoint`: `wanted`
/// rounded up to a multiple of the members.
pub(crate) fn pool_size(endpoint: &Endpoint, wanted: usize) -> usize {
    let members = endpoint.addresses().len().max(1);
    wanted.max(1).div_ceil(members) * members
}

/// Opens the pool of [`CONNECTIONS`]: connection `j` to member
/// `j mod members`.
pub(crate) async fn connect_pool(endpoint: &Endpoint) -> Result<Vec<EtcdClient>, BenchError> {
    connect_pool_of(endpoint, CONNECTIONS).await
}

/// Opens a pool of `wanted` connections (see [`pool_size`]), 64 connecting
/// at a time: connection `j` to member `j mod members`.
pub(crate) async fn connect_pool_of(
    endpoint: &Endpoint,
    wanted: usize,
) -> Result<Vec<EtcdClient>, BenchError> {
    let size = pool_size(endpoint, wanted);
    let connecting = (0..size).map(|j| {
        let addr = endpoint.address_for(j);
        async move { EtcdClient::connect(&addr).await }
    });
    stream::iter(connecting)
        .buffered(OPEN_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Grants a lease of `ttl_s` seconds on `client` and puts `key` (empty
/// value) with it: one session. Returns the lease id.
pub(crate) async fn open_session(
    client: &EtcdClient,
    key: &str,
    ttl_s: i64,
) -> Result<i64, BenchError> {
    let lease = client
        .grant(ttl_s)
        .await
        .map_err(|err| format!("lease grant: {err}"))?;
    client
        .put_value(key, Vec::new(), lease)
        .await
        .map_err(|err| format!("put {key}: {err}"))?;
    Ok(lease)
}

/// Waits until every lease of `keepers` had a successful keep-alive (or
/// was lost), for at most `limit`; the reports then.
pub(crate) async fn wait_renewed(
    keepers: &KeeperPool,
    limit: Duration,
) -> Result<Vec<LeaseReport>, BenchError> {
    let deadline = Instant::now() + limit;
    loop {
        let reports = keepers.report().await?;
        if reports.iter().all(|report| report.renewed || report.lost) {
            return Ok(reports);
        }
        if Instant::now() >= deadline {
            return Err(format!("the leases were not all renewed within {limit:?}").into());
        }
        tokio::time::sleep(SEND_EVERY).await;
    }
}

/// Opens `count` sessions, session `i` with key `key(i)` on connection
/// `i mod connections`, [`OPEN_IN_FLIGHT`] at a time, each kept alive by
/// its connection's keeper from the moment it exists; fails unless every
/// one opened.
pub(crate) async fn open_kept(
    clients: &[EtcdClient],
    keepers: &KeeperPool,
    count: usize,
    ttl_s: i64,
    key: impl Fn(usize) -> String,
) -> Result<(), BenchError> {
    let key = &key;
    let opened: Vec<Result<(), BenchError>> = stream::iter(0..count)
        .map(|index| {
            let client = &clients[index % clients.len()];
            async move {
                let lease = open_session(client, &key(index), ttl_s).await?;
                keepers.add(index % clients.len(), lease, index, ttl_s);
                Ok(())
            }
        })
        .buffer_unordered(OPEN_IN_FLIGHT)
        .collect()
        .await;
    for outcome in opened {
        outcome?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;

    #[test]
    fn ttl_is_whole_seconds_rounded_up() {
        assert_eq!(ttl_seconds(Duration::from_millis(6000)), 6);
        assert_eq!(ttl_seconds(Duration::from_millis(6001)), 7);
        assert_eq!(ttl_seconds(Duration::from_millis(10)), 1);
    }

    #[test]
    fn the_pool_spreads_evenly_over_members() {
        let endpoint = |addr: &str| Endpoint {
            target: Target::Etcd,
            addr: addr.to_owned(),
        };
        assert_eq!(pool_size(&endpoint("127.0.0.1:1"), CONNECTIONS), 8);
        assert_eq!(pool_size(&endpoint("127.0.0.1:1"), 15_000), 15_000);
        assert_eq!(
            pool_size(
                &endpoint("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"),
                CONNECTIONS
            ),
            9
        );
    }
}
