//! failover on etcd: every connection cut at once through the proxies of
//! `proxy.rs`; the mapping is in the [parent module](super).

use std::time::{Duration, Instant};

use super::keeper::KeeperPool;
use super::{connect_pool, open_kept, ttl_seconds, wait_renewed};
use crate::Endpoint;
use crate::client::BenchError;
use crate::proxy::Proxy;
use crate::scenarios::{progress, quantile, result};

/// The prefix of the scenario's keys.
const PREFIX: &str = "/bench/failover/";
/// How often the leases are looked at after the cut.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Cuts the connections of `sessions` leases and times their way back.
pub(crate) async fn failover(
    endpoint: &Endpoint,
    sessions: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let (proxies, through) = Proxy::in_front_of(endpoint).await?;
    let ttl_s = ttl_seconds(timeout);
    let clients = connect_pool(&through).await?;
    let keepers = KeeperPool::start(&clients, &through.addresses());
    open_kept(&clients, &keepers, sessions, ttl_s, |index| {
        format!("{PREFIX}f{index}")
    })
    .await?;
    wait_renewed(&keepers, Duration::from_secs(60)).await?;
    if keepers.lost() > 0 {
        return Err(format!("{} leases lost before the cut", keepers.lost()).into());
    }
    let connections = clients.len();
    drop(clients);

    let limit = timeout * 2;
    let cut = keepers.mark();
    for proxy in &proxies {
        proxy.cut_all();
    }
    let reports = loop {
        tokio::time::sleep(LOOK_EVERY).await;
        let reports = keepers.report().await?;
        let settled = reports
            .iter()
            .all(|report| report.lost || report.back_after_break.is_some());
        if settled || Instant::now() >= cut + limit {
            break reports;
        }
    };
    let mut times: Vec<u64> = reports
        .iter()
        .filter(|report| !report.lost)
        .filter_map(|report| report.back_after_break)
        .map(|back| u64::try_from(back.as_micros()).unwrap_or(u64::MAX))
        .collect();
    times.sort_unstable();
    let lost = sessions - times.len();
    let unbroken = reports.iter().filter(|report| !report.broken).count();
    if unbroken > 0 {
        progress(format!(
            "{unbroken} leases' streams did not fail after the cut"
        ));
    }
    let streams_back = reports
        .iter()
        .filter_map(|report| report.reconnected_after_break)
        .max();
    result(
        "failover",
        endpoint.target,
        &[
            ("sessions", sessions.to_string()),
            ("reattached", times.len().to_string()),
            ("lost", lost.to_string()),
            (
                "all_back_ms",
                format!("{:.1}", times.last().copied().unwrap_or(0) as f64 / 1000.0),
            ),
            (
                "p50_ms",
                format!("{:.1}", quantile(&times, 0.5) as f64 / 1000.0),
            ),
            ("connections", connections.to_string()),
            (
                "streams_back_ms",
                streams_back.map_or_else(
                    || "none".to_owned(),
                    |back| format!("{:.1}", back.as_secs_f64() * 1000.0),
                ),
            ),
        ],
    );
    keepers.stop().await;
    drop(proxies);
    Ok(())
}
