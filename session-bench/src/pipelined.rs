//! The pipelined scenario: ONE session with up to W requests in flight.
//!
//! The requests alternate a setData of a 64-byte payload and a getData of
//! the same persistent node, created first. On session-server the session is
//! a lean raw `session-wire` connection split into a writer task, which keeps
//! W requests outstanding, and a reader, which matches each reply to the
//! oldest request in flight. On ZooKeeper, and on session-server's ZooKeeper
//! listener, it is one `zookeeper-client` session with W request futures
//! outstanding (`buffered(W)`); its client writes them down the one
//! connection as they are issued.
//!
//! Two checks that the server answered in request order, on top of the
//! replies themselves: on ours every reply must carry the xid of the oldest
//! request in flight; on both, every reply must show the node version its
//! place in the sequence implies (a setData sees one more than the setData
//! before it, a getData the version the setData before it left). A reply
//! that fails either check counts in `out_of_order` and fails the scenario.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{FutureExt, SinkExt, StreamExt, stream};
use session_wire::ClientCodec;
use session_wire::v1::{
    ClientMessage, Create, ErrorCode, GetData, NodeKind, Request, SetData, reply, request,
    server_message,
};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedWrite;
use zookeeper_client as zk;

use crate::Endpoint;
use crate::Protocol;
use crate::client::BenchError;
use crate::raw::RawSession;
use crate::scenarios::{progress, quantile, result};

/// The node every request reads or writes.
const PATH: &str = "/bench-pipelined";
/// The data every setData writes.
const PAYLOAD: [u8; 64] = [0x5a; 64];
/// What the RESULT line says the requests are.
const MIX: &str = "setData+getData";
/// The session timeout asked for.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole run, connection included, must end within this.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// More requests than this could wrap the raw session's xids.
const MAX_REQUESTS: u64 = 1_000_000_000;

/// Runs the scenario and prints its RESULT line.
pub(crate) async fn pipelined(
    endpoint: &Endpoint,
    requests: u64,
    window: usize,
) -> Result<(), BenchError> {
    if requests > MAX_REQUESTS {
        return Err(format!("at most {MAX_REQUESTS} requests").into());
    }
    let window = window.clamp(1, Semaphore::MAX_PERMITS);
    let run = async {
        match endpoint.target.protocol() {
            // The raw session talks to one server: a cluster's first.
            Protocol::V1 => ours(&endpoint.address_for(0), requests, window).await,
            Protocol::Zk => zookeeper(&endpoint.addr, requests, window).await,
            Protocol::Etcd => Err(crate::client::NOT_ETCD.into()),
        }
    };
    let (mut tally, elapsed) = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .map_err(|_| format!("{requests} pipelined requests took longer than {RUN_LIMIT:?}"))??;
    tally.latencies_us.sort_unstable();
    let ops = tally.latencies_us.len();
    let elapsed = elapsed.as_secs_f64();
    result(
        "pipelined",
        endpoint.target,
        &[
            ("window", window.to_string()),
            ("requests", requests.to_string()),
            ("mix", MIX.to_owned()),
            ("payload_b", PAYLOAD.len().to_string()),
            ("ops", ops.to_string()),
            ("errors", tally.errors.to_string()),
            ("out_of_order", tally.out_of_order.to_string()),
            ("elapsed_s", format!("{elapsed:.2}")),
            ("ops_per_s", format!("{:.0}", ops as f64 / elapsed)),
            ("p50_us", quantile(&tally.latencies_us, 0.50).to_string()),
            ("p99_us", quantile(&tally.latencies_us, 0.99).to_string()),
        ],
    );
    if tally.out_of_order > 0 {
        return Err(format!(
            "{} of {requests} replies did not come back in request order",
            tally.out_of_order
        )
        .into());
    }
    Ok(())
}

/// What a reply said, on either server.
enum Answer {
    /// A setData succeeded; the node's version after it.
    Set { version: i32 },
    /// A getData succeeded; the node's version and the data's length.
    Get { version: i32, len: usize },
}

/// Replies counted in request order.
struct Tally {
    /// The node's version before the first request.
    base: i32,
    /// Successful setData replies so far.
    sets: i32,
    /// Latency of each successful reply, in µs.
    latencies_us: Vec<u64>,
    errors: u64,
    out_of_order: u64,
}

impl Tally {
    fn new(base: i32, requests: u64) -> Tally {
        Tally {
            base,
            sets: 0,
            latencies_us: Vec::with_capacity(usize::try_from(requests).unwrap_or(0)),
            errors: 0,
            out_of_order: 0,
        }
    }

    /// Counts the reply to request `index` (0-based: even indexes are
    /// setData, odd ones getData). `in_order` is false when the transport
    /// already saw it arrive out of order.
    fn record(
        &mut self,
        index: u64,
        answer: Result<Answer, String>,
        latency: Duration,
        in_order: bool,
    ) {
        let version_in_order = match (index % 2 == 0, answer) {
            (true, Ok(Answer::Set { version })) => {
                self.sets += 1;
                version == self.base + self.sets
            }
            (false, Ok(Answer::Get { version, len })) => {
                if len != PAYLOAD.len() {
                    self.error(format!("getData returned {len} bytes, expected 64"));
                    return;
                }
                version == self.base + self.sets
            }
            (_, Ok(_)) => {
                self.error(format!(
                    "request {index} got the reply of the other operation"
                ));
                return;
            }
            (_, Err(err)) => {
                self.error(err);
                return;
            }
        };
        if !(in_order && version_in_order) {
            if self.out_of_order == 0 {
                progress(format!(
                    "reply to request {index} out of order (xid in order: {in_order}, \
                     version in order: {version_in_order})"
                ));
            }
            self.out_of_order += 1;
        }
        self.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    fn error(&mut self, err: String) {
        if self.errors == 0 {
            progress(format!("a pipelined request failed: {err}"));
        }
        self.errors += 1;
    }
}

/// The pipelined run on session-server over a raw connection; returns the
/// tally and the time from the first request sent to the last reply.
async fn ours(addr: &str, requests: u64, window: usize) -> Result<(Tally, Duration), BenchError> {
    let mut session = RawSession::open(addr, SESSION_TIMEOUT).await?;
    let create = request::Op::Create(Create {
        path: PATH.into(),
        data: Bytes::from_static(&PAYLOAD),
        kind: NodeKind::Persistent.into(),
        sequential: false,
        // Open to anyone, as every node before ACLs; not a TTL node.
        acl: Vec::new(),
        ttl_ms: 0,
    });
    match session.call(create).await? {
        Some(reply::Result::Create(_)) => {}
        Some(reply::Result::Error(error)) if error.code == i32::from(ErrorCode::NodeExists) => {}
        other => return Err(format!("create {PATH} failed: {other:?}").into()),
    }
    let base = match session.call(get_data()).await? {
        Some(reply::Result::GetData(got)) => got.stat.ok_or("getData without a stat")?.version,
        other => return Err(format!("getData {PATH} failed: {other:?}").into()),
    };
    let first_xid = session.next_xid();
    let (mut reader, writer) = session.into_split();
    let permits = Arc::new(Semaphore::new(window));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut sending = tokio::spawn(write_requests(
        writer,
        Arc::clone(&permits),
        sent_tx,
        first_xid,
        requests,
    ));
    // The writer comes back when it has sent everything; it is kept until
    // the last reply is in, as dropping it would half-close the connection.
    let mut writer = None;
    let mut in_flight: VecDeque<(i32, Instant)> = VecDeque::with_capacity(window);
    let mut tally = Tally::new(base, requests);
    let mut received = 0;
    while received < requests {
        let message = tokio::select! {
            message = reader.next() => message.ok_or("connection closed by the server")??,
            sent = &mut sending, if writer.is_none() => {
                writer = Some(sent??);
                continue;
            }
        };
        let answer = match message.kind {
            Some(server_message::Kind::Reply(answer)) => answer,
            Some(server_message::Kind::Disconnect(disconnect)) => {
                return Err(format!("server disconnected the session: {disconnect:?}").into());
            }
            // No watches are set and no pings sent: nothing else is expected,
            // and nothing else answers a request.
            _ => continue,
        };
        // The writer queues (xid, time) before it sends the request, so the
        // request answered is in the queue by now.
        while let Ok(sent) = sent_rx.try_recv() {
            in_flight.push_back(sent);
        }
        let in_order = in_flight.front().is_some_and(|&(xid, _)| xid == answer.xid);
        let position = in_flight
            .iter()
            .position(|&(xid, _)| xid == answer.xid)
            .ok_or_else(|| format!("a reply with xid {} that is not in flight", answer.xid))?;
        let (xid, sent_at) = in_flight.remove(position).ok_or("in-flight queue")?;
        let latency = sent_at.elapsed();
        permits.add_permits(1);
        received += 1;
        let index = u64::try_from(xid - first_xid)?;
        let outcome = match answer.result {
            Some(reply::Result::SetData(set)) => set
                .stat
                .map(|stat| Answer::Set {
                    version: stat.version,
                })
                .ok_or_else(|| "setData without a stat".to_owned()),
            Some(reply::Result::GetData(got)) => got
                .stat
                .map(|stat| Answer::Get {
                    version: stat.version,
                    len: got.data.len(),
                })
                .ok_or_else(|| "getData without a stat".to_owned()),
            other => Err(format!("{other:?}")),
        };
        tally.record(index, outcome, latency, in_order);
    }
    let elapsed = started.elapsed();
    if writer.is_none() {
        writer = Some(sending.await??);
    }
    drop(writer);
    Ok((tally, elapsed))
}

fn get_data() -> request::Op {
    request::Op::GetData(GetData {
        path: PATH.into(),
        watch: false,
    })
}

/// Sends `requests` requests, xids from `first_xid` on, with at most
/// `permits` in flight; queues each one's xid and send time on `sent` before
/// sending it. Writes are batched: the buffer is flushed when the window is
/// full (and when it grows past the codec's backpressure boundary).
async fn write_requests(
    mut writer: FramedWrite<OwnedWriteHalf, ClientCodec>,
    permits: Arc<Semaphore>,
    sent: mpsc::UnboundedSender<(i32, Instant)>,
    first_xid: i32,
    requests: u64,
) -> Result<FramedWrite<OwnedWriteHalf, ClientCodec>, BenchError> {
    let payload = Bytes::from_static(&PAYLOAD);
    for (index, xid) in (0..requests).zip(first_xid..) {
        let permit = match permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                SinkExt::<ClientMessage>::flush(&mut writer).await?;
                permits.acquire().await?
            }
        };
        permit.forget();
        let op = if index % 2 == 0 {
            request::Op::SetData(SetData {
                path: PATH.into(),
                data: payload.clone(),
                expected_version: None,
            })
        } else {
            get_data()
        };
        sent.send((xid, Instant::now()))
            .map_err(|_| "the reader stopped")?;
        writer
            .feed(ClientMessage::from(Request { xid, op: Some(op) }))
            .await?;
    }
    SinkExt::<ClientMessage>::flush(&mut writer).await?;
    Ok(writer)
}

/// The pipelined run on ZooKeeper: `window` request futures outstanding on
/// one `zookeeper-client` session, completed in request order.
async fn zookeeper(
    addr: &str,
    requests: u64,
    window: usize,
) -> Result<(Tally, Duration), BenchError> {
    let client = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .connect(addr)
        .await?;
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.create(PATH, &PAYLOAD, &options).await {
        Ok(_) | Err(zk::Error::NodeExists) => {}
        Err(err) => return Err(format!("create {PATH} failed: {err}").into()),
    }
    let (_, stat) = client.get_data(PATH).await?;
    let mut tally = Tally::new(stat.version, requests);
    let started = Instant::now();
    // Each request is sent when its future is made (zookeeper-client queues
    // it at once), which `buffered` does as soon as the window has room.
    let replies = stream::iter(0..requests)
        .map(|index| {
            let began = Instant::now();
            let reply = if index % 2 == 0 {
                Either::Left(client.set_data(PATH, &PAYLOAD, None).map(|set| {
                    set.map(|stat| Answer::Set {
                        version: stat.version,
                    })
                }))
            } else {
                Either::Right(client.get_data(PATH).map(|got| {
                    got.map(|(data, stat)| Answer::Get {
                        version: stat.version,
                        len: data.len(),
                    })
                }))
            };
            reply.map(move |answer| (index, answer, began.elapsed()))
        })
        .buffered(window);
    let mut replies = pin!(replies);
    while let Some((index, answer, latency)) = replies.next().await {
        // `buffered` yields in request order; zookeeper-client itself
        // matches replies to requests by xid.
        tally.record(index, answer.map_err(|err| err.to_string()), latency, true);
    }
    Ok((tally, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replies a server answering in order gives, from version `base`.
    fn in_order(base: i32, requests: u64) -> Vec<Answer> {
        (0..requests)
            .map(|index| {
                let version = base + i32::try_from(index / 2 + 1).expect("small");
                if index % 2 == 0 {
                    Answer::Set { version }
                } else {
                    Answer::Get {
                        version,
                        len: PAYLOAD.len(),
                    }
                }
            })
            .collect()
    }

    fn tally(base: i32, answers: Vec<Answer>) -> Tally {
        let mut tally = Tally::new(base, answers.len() as u64);
        for (index, answer) in answers.into_iter().enumerate() {
            tally.record(index as u64, Ok(answer), Duration::from_micros(5), true);
        }
        tally
    }

    #[test]
    fn replies_in_order_pass() {
        let tally = tally(7, in_order(7, 10));
        assert_eq!((tally.out_of_order, tally.errors), (0, 0));
        assert_eq!(tally.latencies_us.len(), 10);
    }

    #[test]
    fn a_read_answered_before_the_write_ahead_of_it_is_out_of_order() {
        // getData 3 answered as if setData 2 had not happened yet.
        let mut answers = in_order(0, 6);
        answers[3] = Answer::Get {
            version: 1,
            len: PAYLOAD.len(),
        };
        let tally = tally(0, answers);
        assert_eq!(tally.out_of_order, 1);
    }

    #[test]
    fn an_xid_out_of_order_counts_even_with_the_right_version() {
        let mut tally = Tally::new(0, 1);
        tally.record(0, Ok(Answer::Set { version: 1 }), Duration::ZERO, false);
        assert_eq!(tally.out_of_order, 1);
    }

    #[test]
    fn a_failed_write_does_not_shift_the_versions_after_it() {
        let mut tally = Tally::new(0, 4);
        tally.record(0, Err("no".into()), Duration::ZERO, true);
        tally.record(
            1,
            Ok(Answer::Get {
                version: 0,
                len: PAYLOAD.len(),
            }),
            Duration::ZERO,
            true,
        );
        tally.record(2, Ok(Answer::Set { version: 1 }), Duration::ZERO, true);
        assert_eq!((tally.errors, tally.out_of_order), (1, 0));
    }
}
