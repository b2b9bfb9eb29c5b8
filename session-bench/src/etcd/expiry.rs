//! expiry on etcd: the observer (`expiry`) and the killed holder
//! (`expiry-holder`); the mapping is in the [parent module](super).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::client::{EtcdClient, prefix_end};
use super::keeper::KeeperPool;
use super::proto::{
    EventType, FilterType, WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use super::{connect_pool, open_kept, ttl_seconds, wait_renewed};
use crate::Endpoint;
use crate::client::BenchError;
use crate::scenarios::{progress, result, spawn_holder};
use crate::sys;

/// The prefix of the holder's keys.
const PREFIX: &str = "/bench/expiry/";
/// How often etcd's lessor looks for expired leases (3.4: every 500 ms).
const LESSOR_CHECK_MS: i64 = 500;

/// The observer: starts the holder, watches its keys, kills it, times the
/// keys' disappearance.
pub(crate) async fn expiry(
    endpoint: &Endpoint,
    sessions: usize,
    timeout_ms: u64,
    tick_ms: u64,
) -> Result<(), BenchError> {
    let observer = EtcdClient::connect(&endpoint.address_for(0)).await?;
    let before = observer.count_prefix(PREFIX).await?;
    if before != 0 {
        return Err(format!("{PREFIX} already has {before} keys").into());
    }
    let (mut holder, mut to_holder, mut from_holder) =
        spawn_holder(endpoint, sessions, timeout_ms).await?;
    let held = observer.count_prefix(PREFIX).await?;
    if held != sessions as u64 {
        return Err(format!("{held} keys held, expected {sessions}").into());
    }
    // The watch, from now on, deletes only; confirmed before the freeze.
    let (watch_requests, queued) = mpsc::unbounded_channel::<WatchRequest>();
    watch_requests
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: prefix_end(PREFIX.as_bytes()),
                    start_revision: 0,
                    filters: vec![FilterType::NoPut as i32],
                },
            )),
        })
        .map_err(|_| "watch request")?;
    let outbound = stream::unfold(queued, |mut queued| async move {
        queued.recv().await.map(|request| (request, queued))
    });
    let mut events = tokio::time::timeout(Duration::from_secs(30), observer.watch(outbound))
        .await
        .map_err(|_| "the watch was not answered within 30 s")??;
    let created = tokio::time::timeout(Duration::from_secs(30), events.message())
        .await
        .map_err(|_| "the watch was not created within 30 s")??
        .ok_or("the watch stream ended")?;
    if !created.created || created.canceled {
        return Err(format!("the watch was not created: {created:?}").into());
    }

    to_holder.write_all(b"freeze\n").await?;
    to_holder.flush().await?;
    // "HB <index> <sent ms> <answered ms>" for each lease, then
    // "LAST_PING <first ms> <last ms> 1"; CLOCK_MONOTONIC, the same in
    // both processes.
    let mut heartbeats: HashMap<String, (i64, i64)> = HashMap::new();
    let (ping_first, ping_last) = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), from_holder.next_line())
            .await
            .map_err(|_| "the holder did not report its last keep-alives")??
            .ok_or("the holder exited before its last keep-alive")?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["HB", index, sent, answered] => {
                heartbeats.insert(format!("h{index}"), (sent.parse()?, answered.parse()?));
            }
            ["LAST_PING", first, last, _known] => {
                break (first.parse::<i64>()?, last.parse::<i64>()?);
            }
            _ => return Err(format!("unexpected holder line: {line}").into()),
        }
    };
    holder.start_kill()?;
    let killed = sys::monotonic_ms();
    let _ = holder.wait().await;
    if heartbeats.len() != sessions {
        return Err(format!(
            "the holder reported {} last keep-alives for {sessions} leases",
            heartbeats.len()
        )
        .into());
    }
    progress(format!(
        "holder of {sessions} leases killed; watching {PREFIX}"
    ));

    let timeout = i64::try_from(timeout_ms)?;
    let tick = i64::try_from(tick_ms)?;
    let give_up = killed + 4 * timeout + 10_000;
    // Each key's DELETE event, by its receipt time.
    let mut gone: HashMap<String, i64> = HashMap::new();
    while gone.len() < sessions {
        let left = give_up - sys::monotonic_ms();
        if left <= 0 {
            break;
        }
        let left = Duration::from_millis(u64::try_from(left)?);
        let response: WatchResponse = match tokio::time::timeout(left, events.message()).await {
            Err(_) => break,
            Ok(next) => next?.ok_or("the watch stream ended")?,
        };
        let received = sys::monotonic_ms();
        if response.canceled {
            return Err(format!("the watch was cancelled: {}", response.cancel_reason).into());
        }
        for event in response.events {
            if event.r#type != EventType::Delete as i32 {
                continue;
            }
            let Some(kv) = event.kv else { continue };
            let key = String::from_utf8_lossy(&kv.key);
            if let Some(name) = key.strip_prefix(PREFIX) {
                gone.entry(name.to_owned()).or_insert(received);
            }
        }
    }
    drop(watch_requests);
    let remaining = observer.count_prefix(PREFIX).await?;
    let first = gone.values().copied().min().unwrap_or(give_up);
    let last = gone.values().copied().max().unwrap_or(give_up);
    // Per lease, against its own last keep-alive: early when gone no later
    // than T after it was sent (etcd heard it no earlier); late when gone
    // more than T + tick + 50 ms after its reply (etcd renewed it no
    // later); and late against etcd's own bound, TTL + 500 ms.
    let ttl_ms = ttl_seconds(Duration::from_millis(timeout_ms)) * 1000;
    let etcd_bound = ttl_ms + LESSOR_CHECK_MS;
    let mut early_sessions = 0usize;
    let mut late_sessions = 0usize;
    let mut late_etcd_sessions = 0usize;
    let mut soonest = i64::MAX;
    let mut latest = i64::MIN;
    for (name, &at) in &gone {
        let Some(&(sent, answered)) = heartbeats.get(name) else {
            return Err(format!("{PREFIX}{name} was deleted but not held").into());
        };
        if at - sent <= timeout {
            early_sessions += 1;
        }
        if at - answered > timeout + tick + 50 {
            late_sessions += 1;
        }
        if at - answered > etcd_bound + 50 {
            late_etcd_sessions += 1;
        }
        soonest = soonest.min(at - sent);
        latest = latest.max(at - answered);
    }
    let fields = vec![
        ("sessions", sessions.to_string()),
        ("timeout_ms", timeout_ms.to_string()),
        ("heartbeat_known", "1".to_owned()),
        ("last_round_ms", (ping_last - ping_first).to_string()),
        ("kill_to_first_ms", (first - killed).to_string()),
        ("kill_to_last_ms", (last - killed).to_string()),
        ("spread_ms", (last - first).to_string()),
        ("hb_to_first_ms", (first - ping_first).to_string()),
        ("hb_to_last_ms", (last - ping_last).to_string()),
        ("survivors", remaining.to_string()),
        ("own_hb_to_gone_min_ms", soonest.to_string()),
        ("own_hb_to_seen_max_ms", latest.to_string()),
        ("early_sessions", early_sessions.to_string()),
        ("late_sessions", late_sessions.to_string()),
        ("early", u8::from(early_sessions > 0).to_string()),
        (
            "late",
            u8::from(late_sessions > 0 || remaining > 0).to_string(),
        ),
        ("ttl_s", (ttl_ms / 1000).to_string()),
        ("tick_ms", tick_ms.to_string()),
        ("etcd_bound_ms", etcd_bound.to_string()),
        ("late_etcd_sessions", late_etcd_sessions.to_string()),
        ("deletes_seen", gone.len().to_string()),
    ];
    result("expiry", endpoint.target, &fields);
    Ok(())
}

/// The holder: K leases with a key each, kept alive; on `freeze` one last
/// keep-alive each, reported, then silence until killed.
pub(crate) async fn holder(
    endpoint: &Endpoint,
    sessions: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let ttl_s = ttl_seconds(timeout);
    let clients = connect_pool(endpoint).await?;
    let keepers = KeeperPool::start(&clients, &endpoint.addresses());
    // Each lease is kept alive from the moment it exists: opening them all
    // may take longer than their TTL. Every lease renewed once before READY.
    open_kept(&clients, &keepers, sessions, ttl_s, |index| {
        format!("{PREFIX}h{index}")
    })
    .await?;
    wait_renewed(&keepers, Duration::from_secs(60)).await?;
    if keepers.lost() > 0 {
        return Err(format!("{} leases lost before the freeze", keepers.lost()).into());
    }
    println!("READY");
    match stdin.next_line().await? {
        Some(line) if line.trim() == "freeze" => {}
        other => return Err(format!("expected `freeze` from the parent, got {other:?}").into()),
    }
    let frozen = keepers.freeze(Duration::from_secs(30)).await?;
    if keepers.misordered() > 0 {
        progress(format!(
            "holder: {} keep-alive replies did not answer the oldest request in flight",
            keepers.misordered()
        ));
    }
    if frozen.lost > 0 {
        return Err(format!("{} leases lost before their last keep-alive", frozen.lost).into());
    }
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    for beat in &frozen.beats {
        println!("HB {} {} {}", beat.index, beat.sent_ms, beat.answered_ms);
        first = first.min(beat.sent_ms);
        last = last.max(beat.answered_ms);
    }
    println!("LAST_PING {first} {last} 1");
    // Silent until killed; stop if the parent has gone (stdin closed).
    while let Ok(Some(_)) = stdin.next_line().await {}
    keepers.stop().await;
    Ok(())
}
