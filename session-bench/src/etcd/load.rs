//! establish, hold, churn and pipelined on etcd (the mapping is in the
//! [parent module](super)).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};

use super::client::EtcdClient;
use super::keeper::KeeperPool;
use super::proto::{DeleteRangeRequest, PutRequest, RangeRequest};
use super::{connect_pool, connect_pool_of, open_session, ttl_seconds};
use crate::Endpoint;
use crate::client::BenchError;
use crate::scenarios::{
    ErrorTally, HoldMeasure, OPEN_IN_FLIGHT, Servers, progress, quantile, result,
};

/// The TTL of establish's leases: the 30 s session timeout establish asks
/// of the other targets.
const ESTABLISH_TTL: Duration = Duration::from_secs(30);
/// The TTL of churn's leases: the 10 s session timeout churn asks of the
/// other targets.
const CHURN_TTL: Duration = Duration::from_secs(10);
/// Opening the sessions of a scenario must end within this.
const OPEN_LIMIT: Duration = Duration::from_secs(300);

/// Opens `count` sessions, `in_flight` at a time, session `i` on
/// connection `i mod connections` with key `key(i)`; each is kept alive by
/// `keepers` (when given) from the moment it exists. Returns the lease ids
/// (by index, `None` for a session that failed) and the failures.
async fn open_sessions(
    clients: &[EtcdClient],
    keepers: Option<&KeeperPool>,
    count: usize,
    in_flight: usize,
    ttl_s: i64,
    key: impl Fn(usize) -> String,
) -> Result<(Vec<Option<i64>>, usize), BenchError> {
    let key = &key;
    let opening = stream::iter(0..count)
        .map(|index| {
            let client = &clients[index % clients.len()];
            async move {
                let opened = open_session(client, &key(index), ttl_s).await;
                if let (Ok(lease), Some(keepers)) = (&opened, keepers) {
                    keepers.add(index % clients.len(), *lease, index, ttl_s);
                }
                (index, opened)
            }
        })
        .buffer_unordered(in_flight.max(1))
        .collect::<Vec<_>>();
    let outcomes = tokio::time::timeout(OPEN_LIMIT, opening)
        .await
        .map_err(|_| format!("opening {count} sessions took longer than {OPEN_LIMIT:?}"))?;
    let mut leases = vec![None; count];
    let mut failed = 0;
    for (index, outcome) in outcomes {
        match outcome {
            Ok(lease) => leases[index] = Some(lease),
            Err(err) => {
                if failed == 0 {
                    progress(format!("a session failed to open: {err}"));
                }
                failed += 1;
            }
        }
    }
    Ok((leases, failed))
}

/// establish: `sessions` lease grants with a put each, `in_flight` at once.
pub(crate) async fn establish(
    endpoint: &Endpoint,
    sessions: usize,
    in_flight: usize,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let clients = connect_pool(endpoint).await?;
    let (_, failed) = open_sessions(
        &clients,
        None,
        sessions,
        in_flight,
        ttl_seconds(ESTABLISH_TTL),
        |index| format!("/bench/e{index}"),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let opened = sessions - failed;
    result(
        "establish",
        endpoint.target,
        &[
            ("sessions", opened.to_string()),
            ("failed", failed.to_string()),
            ("elapsed_s", format!("{elapsed:.3}")),
            ("sessions_per_s", format!("{:.0}", opened as f64 / elapsed)),
            ("connections", clients.len().to_string()),
        ],
    );
    Ok(())
}

/// hold: `sessions` leases kept alive for `duration`; the servers' CPU and
/// RSS.
pub(crate) async fn hold(
    endpoint: &Endpoint,
    connections: usize,
    sessions: usize,
    timeout: Duration,
    duration: Duration,
    server_pids: &[u32],
) -> Result<(), BenchError> {
    let servers = Servers(server_pids);
    let baseline_rss = servers.baseline_rss(sessions).await?;
    let ttl_s = ttl_seconds(timeout);
    let clients = connect_pool_of(endpoint, connections).await?;
    let keepers = KeeperPool::start(&clients, &endpoint.addresses());
    let (_, failed) = open_sessions(
        &clients,
        Some(&keepers),
        sessions,
        OPEN_IN_FLIGHT,
        ttl_s,
        |index| format!("/bench/hold/h{index}"),
    )
    .await?;
    if failed > 0 {
        keepers.stop().await;
        return Err(format!("{failed} of {sessions} sessions to hold failed to open").into());
    }
    // One full keep-alive round before measuring, so the window is steady
    // state.
    tokio::time::sleep(timeout / 3 + super::keeper::SEND_EVERY).await;
    let cpu_before = servers.cpu_seconds()?;
    let pings_before = keepers.pings();
    let started = Instant::now();
    progress(format!(
        "holding {sessions} leases on {} connections for {duration:?}",
        keepers.len()
    ));
    tokio::time::sleep(duration).await;
    let cpu_after = servers.cpu_seconds()?;
    let pings = keepers.pings() - pings_before;
    let elapsed = started.elapsed().as_secs_f64();
    let rss = servers.rss_bytes()?;
    let lost = keepers.lost();
    let streams = keepers.len();
    if keepers.stream_failures() > 0 {
        progress(format!(
            "{} keep-alive streams failed during the hold",
            keepers.stream_failures()
        ));
    }
    if keepers.misordered() > 0 {
        progress(format!(
            "{} keep-alive replies did not answer the oldest request in flight",
            keepers.misordered()
        ));
    }
    keepers.stop().await;
    let mut fields = HoldMeasure {
        tls: false,
        sessions,
        servers: server_pids.len(),
        elapsed_s: elapsed,
        cpu_s: cpu_after - cpu_before,
        baseline_rss,
        rss,
        lost,
        pings,
    }
    .fields();
    fields.push(("connections", clients.len().to_string()));
    fields.push(("streams", streams.to_string()));
    result("hold", endpoint.target, &fields);
    Ok(())
}

/// churn: `sessions` workers with a lease each, putting a key with the
/// lease and deleting it, one call in flight each.
pub(crate) async fn churn(
    endpoint: &Endpoint,
    sessions: usize,
    duration: Duration,
    max_ops: u64,
) -> Result<(), BenchError> {
    let ttl_s = ttl_seconds(CHURN_TTL);
    let clients = connect_pool(endpoint).await?;
    let keepers = KeeperPool::start(&clients, &endpoint.addresses());
    let mut leases = Vec::with_capacity(sessions);
    for (index, lease) in open_leases(&clients, &keepers, sessions, ttl_s).await? {
        leases.push((index, lease));
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for &(worker, lease) in &leases {
        let client = clients[worker % clients.len()].clone();
        workers.spawn(async move {
            let mut latencies_us = Vec::new();
            let mut failures = ErrorTally::default();
            let mut op = 0u64;
            while Instant::now() < deadline && op < max_ops {
                let key = format!("/bench/churn/w{worker}-{op}");
                let began = Instant::now();
                match client.put_value(&key, b"churn".to_vec(), lease).await {
                    Ok(_) => latencies_us.push(began.elapsed().as_micros() as u64),
                    Err(err) => failures.count("put", &err),
                }
                let began = Instant::now();
                let deleted = client
                    .delete_range(DeleteRangeRequest {
                        key: key.into_bytes(),
                        range_end: Vec::new(),
                    })
                    .await;
                match deleted {
                    Ok(deleted) if deleted.deleted == 1 => {
                        latencies_us.push(began.elapsed().as_micros() as u64);
                    }
                    Ok(deleted) => failures.count(
                        "delete",
                        &format!("deleted {} keys, not 1", deleted.deleted).into(),
                    ),
                    Err(status) => failures.count("delete", &status.into()),
                }
                op += 1;
            }
            (latencies_us, failures)
        });
    }
    let mut latencies = Vec::new();
    let mut failures = ErrorTally::default();
    while let Some(joined) = workers.join_next().await {
        let (worker_latencies, worker_failures) = joined?;
        latencies.extend(worker_latencies);
        failures.merge(worker_failures);
    }
    let elapsed = started.elapsed().as_secs_f64();
    failures.report("churn");
    if keepers.lost() > 0 {
        progress(format!(
            "churn: {} worker leases lost during the run",
            keepers.lost()
        ));
    }
    keepers.stop().await;
    latencies.sort_unstable();
    result(
        "churn",
        endpoint.target,
        &[
            ("sessions", sessions.to_string()),
            ("ops", latencies.len().to_string()),
            ("errors", failures.total().to_string()),
            ("elapsed_s", format!("{elapsed:.2}")),
            (
                "ops_per_s",
                format!("{:.0}", latencies.len() as f64 / elapsed),
            ),
            ("p50_us", quantile(&latencies, 0.50).to_string()),
            ("p99_us", quantile(&latencies, 0.99).to_string()),
            ("connections", clients.len().to_string()),
        ],
    );
    // Like closing the sessions: end the leases (after the clock).
    let revoking = stream::iter(leases)
        .map(|(worker, lease)| {
            let client = clients[worker % clients.len()].clone();
            async move {
                client
                    .lease_revoke(super::proto::LeaseRevokeRequest { id: lease })
                    .await
            }
        })
        .buffer_unordered(OPEN_IN_FLIGHT)
        .collect::<Vec<_>>();
    let _ = tokio::time::timeout(Duration::from_secs(30), revoking).await;
    Ok(())
}

/// Grants `count` leases (no keys), kept alive by `keepers`; fails unless
/// every one was granted. Returns (index, lease id) pairs.
async fn open_leases(
    clients: &[EtcdClient],
    keepers: &KeeperPool,
    count: usize,
    ttl_s: i64,
) -> Result<Vec<(usize, i64)>, BenchError> {
    let granting = stream::iter(0..count)
        .map(|index| {
            let client = &clients[index % clients.len()];
            async move { (index, client.grant(ttl_s).await) }
        })
        .buffer_unordered(OPEN_IN_FLIGHT)
        .collect::<Vec<_>>();
    let mut leases = Vec::with_capacity(count);
    for (index, granted) in tokio::time::timeout(OPEN_LIMIT, granting)
        .await
        .map_err(|_| format!("granting {count} leases took longer than {OPEN_LIMIT:?}"))?
    {
        let lease = granted.map_err(|err| format!("lease grant: {err}"))?;
        keepers.add(index % clients.len(), lease, index, ttl_s);
        leases.push((index, lease));
    }
    leases.sort_unstable();
    Ok(leases)
}

/// The key every pipelined call reads or writes.
const PIPELINED_KEY: &str = "/bench/pipelined";
/// The value every pipelined put writes.
const PAYLOAD: [u8; 64] = [0x5a; 64];
/// The whole pipelined run must end within this.
const PIPELINED_LIMIT: Duration = Duration::from_secs(300);

/// What one pipelined call gave.
struct Pipelined {
    latency: Duration,
    outcome: Result<(), String>,
    /// It broke real-time order (see the parent module).
    out_of_order: bool,
}

/// pipelined: one connection, `window` calls in flight, put and range of
/// one key alternating.
pub(crate) async fn pipelined(
    endpoint: &Endpoint,
    requests: u64,
    window: usize,
) -> Result<(), BenchError> {
    let window = window.max(1);
    // One connection, to the first member (xtask passes a follower's
    // address for a cluster).
    let client = EtcdClient::connect(&endpoint.address_for(0)).await?;
    let first = client.put_value(PIPELINED_KEY, PAYLOAD.to_vec(), 0).await?;
    // The highest revision of a put whose reply has come.
    let completed = Arc::new(AtomicI64::new(first));
    let run = async {
        let started = Instant::now();
        let calls = stream::iter(0..requests)
            .map(|index| {
                let client = client.clone();
                let completed = Arc::clone(&completed);
                async move {
                    // Read before the call is made: every put counted here
                    // had its reply before this request was sent.
                    let floor = completed.load(Ordering::Acquire);
                    let began = Instant::now();
                    if index % 2 == 0 {
                        let put = client
                            .put(PutRequest {
                                key: PIPELINED_KEY.as_bytes().to_vec(),
                                value: PAYLOAD.to_vec(),
                                lease: 0,
                            })
                            .await;
                        let latency = began.elapsed();
                        match put {
                            Ok(put) => {
                                let revision = put.header.map_or(0, |header| header.revision);
                                completed.fetch_max(revision, Ordering::AcqRel);
                                Pipelined {
                                    latency,
                                    outcome: Ok(()),
                                    out_of_order: revision <= floor,
                                }
                            }
                            Err(status) => Pipelined {
                                latency,
                                outcome: Err(format!("put: {status}")),
                                out_of_order: false,
                            },
                        }
                    } else {
                        let range = client
                            .range(RangeRequest {
                                key: PIPELINED_KEY.as_bytes().to_vec(),
                                ..RangeRequest::default()
                            })
                            .await;
                        let latency = began.elapsed();
                        let got =
                            range
                                .map_err(|status| format!("range: {status}"))
                                .and_then(|range| {
                                    let header = range.header.map_or(0, |header| header.revision);
                                    match range.kvs.first() {
                                        Some(kv) if kv.value.len() == PAYLOAD.len() => {
                                            Ok(kv.mod_revision.min(header))
                                        }
                                        Some(kv) => Err(format!(
                                            "range returned {} bytes, expected 64",
                                            kv.value.len()
                                        )),
                                        None => Err("range found no key".to_owned()),
                                    }
                                });
                        match got {
                            Ok(seen) => Pipelined {
                                latency,
                                outcome: Ok(()),
                                out_of_order: seen < floor,
                            },
                            Err(err) => Pipelined {
                                latency,
                                outcome: Err(err),
                                out_of_order: false,
                            },
                        }
                    }
                }
            })
            .buffer_unordered(window);
        let mut calls = std::pin::pin!(calls);
        let mut latencies_us = Vec::with_capacity(usize::try_from(requests).unwrap_or(0));
        let mut errors = 0u64;
        let mut out_of_order = 0u64;
        while let Some(call) = calls.next().await {
            match call.outcome {
                Ok(()) => {
                    latencies_us.push(u64::try_from(call.latency.as_micros()).unwrap_or(u64::MAX));
                }
                Err(err) => {
                    if errors == 0 {
                        progress(format!("a pipelined call failed: {err}"));
                    }
                    errors += 1;
                }
            }
            if call.out_of_order {
                if out_of_order == 0 {
                    progress("a pipelined reply broke real-time order");
                }
                out_of_order += 1;
            }
        }
        (latencies_us, errors, out_of_order, started.elapsed())
    };
    let (mut latencies_us, errors, out_of_order, elapsed) =
        tokio::time::timeout(PIPELINED_LIMIT, run)
            .await
            .map_err(|_| {
                format!("{requests} pipelined requests took longer than {PIPELINED_LIMIT:?}")
            })?;
    latencies_us.sort_unstable();
    let ops = latencies_us.len();
    let elapsed = elapsed.as_secs_f64();
    result(
        "pipelined",
        endpoint.target,
        &[
            ("window", window.to_string()),
            ("requests", requests.to_string()),
            ("mix", "put+range".to_owned()),
            ("payload_b", PAYLOAD.len().to_string()),
            ("ops", ops.to_string()),
            ("errors", errors.to_string()),
            ("out_of_order", out_of_order.to_string()),
            ("elapsed_s", format!("{elapsed:.2}")),
            ("ops_per_s", format!("{:.0}", ops as f64 / elapsed)),
            ("p50_us", quantile(&latencies_us, 0.50).to_string()),
            ("p99_us", quantile(&latencies_us, 0.99).to_string()),
        ],
    );
    if out_of_order > 0 {
        return Err(format!("{out_of_order} of {requests} replies broke real-time order").into());
    }
    Ok(())
}
