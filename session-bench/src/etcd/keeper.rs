//! Keeping leases alive the way etcd's Go client (clientv3, 3.4) does.
//!
//! One keeper per connection, one `LeaseKeepAlive` stream per keeper
//! carrying every lease of that connection. Every [`SEND_EVERY`] (500 ms,
//! clientv3's send loop) the keeper sends one keep-alive request for each
//! lease that is due; a lease is due from the moment it is added, and after
//! each successful reply again TTL/3 later (TTL as the reply gives it). A
//! lease that got no successful reply is due again on the next round, so
//! unanswered keep-alives are repeated every 500 ms. A reply with TTL ≤ 0
//! (the lease does not exist) or no successful reply for a whole TTL (the
//! deadline clientv3 keeps) makes the lease lost.
//!
//! etcd serves a keep-alive stream one request at a time, so replies come
//! in request order: each reply is matched to the oldest request in flight
//! on its stream, which gives the send time of the request a reply answers.
//!
//! When the stream fails (the member died, the connection was cut, the
//! server ended the stream), the keeper waits 500 ms (clientv3's
//! `retryConnWait`) and opens a new connection and stream to the next
//! member of the connect string (the same one for a single server); the
//! leases keep their schedule. Leases whose keep-alives were lost with the
//! stream are still due and go out on the new stream's next round.
//!
//! For the scenarios that follow leases one by one (kill, failover), the
//! pool can be given a mark (the kill or the cut): from then on each lease
//! records when it first had a successful keep-alive sent after the mark,
//! whether its stream failed after the mark, and when it first had a
//! successful keep-alive after the last such failure. For expiry, a
//! [`KeeperPool::freeze`] stops the schedule, sends one last keep-alive per
//! lease and reports when each was sent and answered; the keepers then stay
//! silent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::stream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tonic::Streaming;

use super::client::EtcdClient;
use super::proto::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::client::BenchError;
use crate::scenarios::progress;
use crate::sys;

/// How often a keeper sends the keep-alives that are due (clientv3's send
/// loop), and how long it waits before opening a new stream after a failure
/// (clientv3's `retryConnWait`).
pub(crate) const SEND_EVERY: Duration = Duration::from_millis(500);
/// How long the keepers have to stop.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Counters shared by the keepers of a pool.
#[derive(Debug, Default)]
struct Counters {
    /// Keep-alive requests sent.
    pings: AtomicU64,
    /// Leases lost (TTL ≤ 0 in a reply, or no successful reply for a TTL).
    lost: AtomicUsize,
    /// Keep-alive streams that failed.
    stream_failures: AtomicU64,
    /// Replies that did not answer the oldest request in flight.
    misordered: AtomicU64,
    /// Whether a lost lease was reported on stderr already.
    loss_reported: AtomicBool,
    /// Whether a stream failure was reported on stderr already.
    failure_reported: AtomicBool,
}

/// What one lease went through, for the scenarios that follow each lease.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseReport {
    /// The index the scenario gave the lease.
    pub(crate) index: usize,
    /// It was lost: a reply said TTL ≤ 0, or no successful reply came for
    /// a whole TTL.
    pub(crate) lost: bool,
    /// It had at least one successful keep-alive.
    pub(crate) renewed: bool,
    /// Its stream failed after the mark.
    pub(crate) broken: bool,
    /// From the mark to the reply of its first successful keep-alive sent
    /// after the mark.
    pub(crate) renewed_after_mark: Option<Duration>,
    /// From the mark to its first successful keep-alive after the last
    /// failure of its stream after the mark (so on a stream opened since).
    pub(crate) back_after_break: Option<Duration>,
    /// From the mark to the new connection (TCP and HTTP/2 up) after the
    /// last failure of its stream after the mark.
    pub(crate) reconnected_after_break: Option<Duration>,
}

/// The last keep-alive of a lease, sent on [`KeeperPool::freeze`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastBeat {
    /// The index the scenario gave the lease.
    pub(crate) index: usize,
    /// When it was sent, `CLOCK_MONOTONIC` ms.
    pub(crate) sent_ms: i64,
    /// When its successful reply came, `CLOCK_MONOTONIC` ms.
    pub(crate) answered_ms: i64,
}

/// What the last keep-alives on [`KeeperPool::freeze`] gave.
#[derive(Debug, Default)]
pub(crate) struct Frozen {
    /// The leases whose last keep-alive succeeded.
    pub(crate) beats: Vec<LastBeat>,
    /// The leases that were lost instead.
    pub(crate) lost: usize,
}

/// What a keeper is asked.
enum Request {
    /// Keep a lease alive from now on.
    Add {
        /// The lease id.
        id: i64,
        /// The scenario's index for it.
        index: usize,
        /// Its TTL as granted, in seconds.
        ttl_s: i64,
    },
    /// Stop the schedule, send one last keep-alive per lease and answer
    /// with their times once every lease has one (or is lost).
    Freeze(oneshot::Sender<Frozen>),
    /// Answer with every lease's record.
    Report(oneshot::Sender<Vec<LeaseReport>>),
}

/// One keep-alive request in flight on the current stream.
#[derive(Debug, Clone, Copy)]
struct Sent {
    id: i64,
    at: Instant,
    at_ms: i64,
    last: bool,
}

/// A lease a keeper keeps alive.
#[derive(Debug)]
struct Lease {
    index: usize,
    /// When it is due for its next keep-alive.
    next_due: Instant,
    /// Without a successful reply by then, it is lost.
    deadline: Instant,
    lost: bool,
    renewed: bool,
    broken: bool,
    renewed_after_mark: Option<Duration>,
    back_after_break: Option<Duration>,
    /// The stream (number) its last keep-alive was sent on, once frozen.
    last_sent_on: Option<u64>,
    last_beat: Option<LastBeat>,
}

/// The keepers of a set of connections, one stream each.
#[derive(Debug)]
pub(crate) struct KeeperPool {
    senders: Vec<mpsc::UnboundedSender<Request>>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    mark: Arc<OnceLock<Instant>>,
}

impl KeeperPool {
    /// One keeper on each of `clients` (connections to members listed in
    /// `addrs`, which a keeper tries in turn after a stream failure).
    pub(crate) fn start(clients: &[EtcdClient], addrs: &[String]) -> KeeperPool {
        let counters = Arc::new(Counters::default());
        let mark = Arc::new(OnceLock::new());
        let mut senders = Vec::with_capacity(clients.len());
        let mut tasks = Vec::with_capacity(clients.len());
        for client in clients {
            let (sender, requests) = mpsc::unbounded_channel();
            let member = addrs
                .iter()
                .position(|addr| addr == client.addr())
                .unwrap_or(0);
            let mut addrs = addrs.to_vec();
            if addrs.is_empty() {
                addrs.push(client.addr().to_owned());
            }
            let keeper = Keeper {
                addrs,
                member,
                client: Some(client.clone()),
                leases: HashMap::new(),
                counters: Arc::clone(&counters),
                mark: Arc::clone(&mark),
                freeze: None,
                stream_no: 0,
                connected: Arc::new(OnceLock::new()),
            };
            senders.push(sender);
            tasks.push(tokio::spawn(keeper.run(requests)));
        }
        KeeperPool {
            senders,
            tasks,
            counters,
            mark,
        }
    }

    /// How many keepers (connections, streams) the pool has.
    pub(crate) fn len(&self) -> usize {
        self.senders.len()
    }

    /// Keeper `keeper` keeps lease `id` (the scenario's `index`, granted
    /// with `ttl_s`) alive from now on.
    pub(crate) fn add(&self, keeper: usize, id: i64, index: usize, ttl_s: i64) {
        let _ = self.senders[keeper % self.senders.len()].send(Request::Add { id, index, ttl_s });
    }

    /// Keep-alive requests sent so far.
    pub(crate) fn pings(&self) -> u64 {
        self.counters.pings.load(Ordering::Relaxed)
    }

    /// Leases lost so far.
    pub(crate) fn lost(&self) -> usize {
        self.counters.lost.load(Ordering::Relaxed)
    }

    /// Keep-alive streams that failed so far.
    pub(crate) fn stream_failures(&self) -> u64 {
        self.counters.stream_failures.load(Ordering::Relaxed)
    }

    /// Replies that did not answer the oldest request in flight on their
    /// stream (0 while etcd serves each stream in order).
    pub(crate) fn misordered(&self) -> u64 {
        self.counters.misordered.load(Ordering::Relaxed)
    }

    /// Sets the mark to now (once; later calls return the first mark).
    pub(crate) fn mark(&self) -> Instant {
        *self.mark.get_or_init(Instant::now)
    }

    /// Every lease's record.
    pub(crate) async fn report(&self) -> Result<Vec<LeaseReport>, BenchError> {
        let mut waiting = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            let (reply, answer) = oneshot::channel();
            sender
                .send(Request::Report(reply))
                .map_err(|_| "a keeper has stopped")?;
            waiting.push(answer);
        }
        let mut reports = Vec::new();
        for answer in waiting {
            reports.extend(answer.await.map_err(|_| "a keeper has stopped")?);
        }
        Ok(reports)
    }

    /// Stops every schedule, sends one last keep-alive per lease, and
    /// returns when each was sent and answered once all are in (within
    /// `limit`). The keepers stay silent afterwards, their connections
    /// open.
    pub(crate) async fn freeze(&self, limit: Duration) -> Result<Frozen, BenchError> {
        let mut waiting = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            let (reply, answer) = oneshot::channel();
            sender
                .send(Request::Freeze(reply))
                .map_err(|_| "a keeper has stopped")?;
            waiting.push(answer);
        }
        let gather = async {
            let mut frozen = Frozen::default();
            for answer in waiting {
                let part = answer.await.map_err(|_| "a keeper has stopped")?;
                frozen.beats.extend(part.beats);
                frozen.lost += part.lost;
            }
            Ok::<_, BenchError>(frozen)
        };
        tokio::time::timeout(limit, gather)
            .await
            .map_err(|_| format!("the last keep-alives took longer than {limit:?}"))?
    }

    /// Stops every keeper (their streams and connections close).
    pub(crate) async fn stop(self) {
        drop(self.senders);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_LIMIT, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// The freeze in progress in a keeper.
struct Freezing {
    reply: Option<oneshot::Sender<Frozen>>,
}

/// One connection's keeper: its stream and its leases.
struct Keeper {
    addrs: Vec<String>,
    /// The member (place in `addrs`) the current connection is to.
    member: usize,
    /// The current connection, if it has not failed.
    client: Option<EtcdClient>,
    leases: HashMap<i64, Lease>,
    counters: Arc<Counters>,
    mark: Arc<OnceLock<Instant>>,
    freeze: Option<Freezing>,
    /// The number of the current stream (counts from 1).
    stream_no: u64,
    /// When the current stream's connection was up.
    connected: Arc<OnceLock<Instant>>,
}

/// The next reply on `replies`; never, while there is no stream yet.
async fn next_reply(
    replies: &mut Option<Streaming<LeaseKeepAliveResponse>>,
) -> Result<Option<LeaseKeepAliveResponse>, tonic::Status> {
    match replies {
        Some(replies) => replies.message().await,
        None => std::future::pending().await,
    }
}

impl Keeper {
    /// Runs until the pool drops its sender.
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let mut rounds = tokio::time::interval(SEND_EVERY);
        rounds.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.stream_no += 1;
            let (outbound, queued) = mpsc::unbounded_channel::<LeaseKeepAliveRequest>();
            let requests_out = stream::unfold(queued, |mut queued| async move {
                queued.recv().await.map(|request| (request, queued))
            });
            let reuse = self.client.take();
            let addr = self.addrs[self.member].clone();
            let connected = Arc::clone(&self.connected);
            // The keep-alives due meanwhile are queued on `outbound`: etcd
            // answers the call with its first reply only.
            let opening = async move {
                let client = match reuse {
                    Some(client) => client,
                    None => EtcdClient::connect(&addr).await?,
                };
                let _ = connected.set(Instant::now());
                let replies = client.keep_alive(requests_out).await?;
                Ok::<_, BenchError>((client, replies))
            };
            tokio::pin!(opening);
            let mut replies = None;
            let mut in_flight: VecDeque<Sent> = VecDeque::new();
            let failure = loop {
                tokio::select! {
                    opened = &mut opening, if replies.is_none() => match opened {
                        Ok((client, stream)) => {
                            self.client = Some(client);
                            replies = Some(stream);
                        }
                        Err(err) => break err.to_string(),
                    },
                    reply = next_reply(&mut replies) => match reply {
                        Ok(Some(reply)) => self.answered(reply, &mut in_flight),
                        Ok(None) => break "the server ended the keep-alive stream".to_owned(),
                        Err(status) => break status.to_string(),
                    },
                    _ = rounds.tick() => {
                        self.send_due(&outbound, &mut in_flight);
                        self.check_deadlines();
                        self.finish_freeze();
                    }
                    request = requests.recv() => match request {
                        Some(request) => {
                            self.handle(request);
                            // A freeze sends its last keep-alives at once.
                            if self.freeze.is_some() {
                                self.send_due(&outbound, &mut in_flight);
                            }
                        }
                        None => return,
                    },
                }
            };
            self.failed(&failure);
            // Wait, then a new connection to the next member.
            self.client = None;
            self.member = (self.member + 1) % self.addrs.len();
            let wait = tokio::time::sleep(SEND_EVERY);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    _ = rounds.tick() => {
                        self.check_deadlines();
                        self.finish_freeze();
                    }
                    request = requests.recv() => match request {
                        Some(request) => self.handle(request),
                        None => return,
                    },
                }
            }
        }
    }

    /// Handles one request of the pool (sending nothing).
    fn handle(&mut self, request: Request) {
        match request {
            Request::Add { id, index, ttl_s } => {
                let now = Instant::now();
                let ttl = Duration::from_secs(u64::try_from(ttl_s).unwrap_or(0));
                self.leases.insert(
                    id,
                    Lease {
                        index,
                        // clientv3 sends the first keep-alive on its next
                        // round.
                        next_due: now,
                        deadline: now + ttl,
                        lost: false,
                        renewed: false,
                        broken: false,
                        renewed_after_mark: None,
                        back_after_break: None,
                        last_sent_on: None,
                        last_beat: None,
                    },
                );
            }
            Request::Freeze(reply) => {
                self.freeze = Some(Freezing { reply: Some(reply) });
                self.finish_freeze();
            }
            Request::Report(reply) => {
                // The current connection is one made after any failure.
                let reconnected = match (self.mark.get(), self.connected.get()) {
                    (Some(mark), Some(connected)) => {
                        Some(connected.saturating_duration_since(*mark))
                    }
                    _ => None,
                };
                let reports = self
                    .leases
                    .values()
                    .map(|lease| LeaseReport {
                        index: lease.index,
                        lost: lease.lost,
                        renewed: lease.renewed,
                        broken: lease.broken,
                        renewed_after_mark: lease.renewed_after_mark,
                        back_after_break: lease.back_after_break,
                        reconnected_after_break: reconnected.filter(|_| lease.broken),
                    })
                    .collect();
                let _ = reply.send(reports);
            }
        }
    }

    /// Sends the keep-alives that are due: on schedule, or once frozen the
    /// last one of each lease that has none on this stream yet.
    fn send_due(
        &mut self,
        outbound: &mpsc::UnboundedSender<LeaseKeepAliveRequest>,
        in_flight: &mut VecDeque<Sent>,
    ) {
        let now = Instant::now();
        let frozen = self.freeze.is_some();
        let stream_no = self.stream_no;
        for (&id, lease) in &mut self.leases {
            if lease.lost {
                continue;
            }
            let due = if frozen {
                lease.last_beat.is_none() && lease.last_sent_on != Some(stream_no)
            } else {
                lease.next_due <= now
            };
            if !due {
                continue;
            }
            if frozen {
                lease.last_sent_on = Some(stream_no);
            }
            in_flight.push_back(Sent {
                id,
                at: Instant::now(),
                at_ms: sys::monotonic_ms(),
                last: frozen,
            });
            self.counters.pings.fetch_add(1, Ordering::Relaxed);
            if outbound.send(LeaseKeepAliveRequest { id }).is_err() {
                // The stream is gone; its failure shows on the reply side.
                return;
            }
        }
    }

    /// Counts one reply.
    fn answered(&mut self, reply: LeaseKeepAliveResponse, in_flight: &mut VecDeque<Sent>) {
        let now = Instant::now();
        let answered_ms = sys::monotonic_ms();
        let sent = match in_flight.front() {
            Some(sent) if sent.id == reply.id => in_flight.pop_front(),
            _ => {
                self.counters.misordered.fetch_add(1, Ordering::Relaxed);
                in_flight
                    .iter()
                    .position(|sent| sent.id == reply.id)
                    .and_then(|position| in_flight.remove(position))
            }
        };
        let mark = self.mark.get().copied();
        let Some(lease) = self.leases.get_mut(&reply.id) else {
            return;
        };
        if lease.lost {
            return;
        }
        if reply.ttl <= 0 {
            lease.lost = true;
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
            if !self.counters.loss_reported.swap(true, Ordering::Relaxed) {
                progress(format!(
                    "lease {} (index {}) is gone: its keep-alive reply says TTL {}",
                    reply.id, lease.index, reply.ttl
                ));
            }
            return;
        }
        let ttl = Duration::from_secs(u64::try_from(reply.ttl).unwrap_or(0));
        lease.next_due = now + ttl / 3;
        lease.deadline = now + ttl;
        lease.renewed = true;
        if let Some(mark) = mark {
            if sent.is_some_and(|sent| sent.at >= mark) && lease.renewed_after_mark.is_none() {
                lease.renewed_after_mark = Some(now.saturating_duration_since(mark));
            }
            // Any reply after a failure comes on a stream opened since.
            if lease.broken && lease.back_after_break.is_none() {
                lease.back_after_break = Some(now.saturating_duration_since(mark));
            }
        }
        if let Some(sent) = sent.filter(|sent| sent.last) {
            lease.last_beat = Some(LastBeat {
                index: lease.index,
                sent_ms: sent.at_ms,
                answered_ms,
            });
            self.finish_freeze();
        }
    }

    /// Marks the leases whose deadline passed without a successful reply
    /// as lost (not once frozen: then only the last keep-alives count).
    fn check_deadlines(&mut self) {
        if self.freeze.is_some() {
            return;
        }
        let now = Instant::now();
        for lease in self.leases.values_mut() {
            if !lease.lost && lease.deadline < now {
                lease.lost = true;
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                if !self.counters.loss_reported.swap(true, Ordering::Relaxed) {
                    progress(format!(
                        "lease of index {} lost: no successful keep-alive for its whole TTL",
                        lease.index
                    ));
                }
            }
        }
    }

    /// Answers the freeze once every lease has its last keep-alive or is
    /// lost.
    fn finish_freeze(&mut self) {
        let Some(freezing) = &mut self.freeze else {
            return;
        };
        if freezing.reply.is_none()
            || self
                .leases
                .values()
                .any(|lease| !lease.lost && lease.last_beat.is_none())
        {
            return;
        }
        let frozen = Frozen {
            beats: self
                .leases
                .values()
                .filter_map(|lease| lease.last_beat)
                .collect(),
            lost: self.leases.values().filter(|lease| lease.lost).count(),
        };
        if let Some(reply) = freezing.reply.take() {
            let _ = reply.send(frozen);
        }
    }

    /// Counts a failed stream; after the mark, its leases are broken.
    fn failed(&mut self, why: &str) {
        self.connected = Arc::new(OnceLock::new());
        self.counters
            .stream_failures
            .fetch_add(1, Ordering::Relaxed);
        if !self.counters.failure_reported.swap(true, Ordering::Relaxed) {
            progress(format!(
                "a keep-alive stream to {} failed: {why}; reconnecting",
                self.addrs[self.member]
            ));
        }
        let after_mark = self.mark.get().is_some_and(|mark| Instant::now() >= *mark);
        if after_mark {
            for lease in self.leases.values_mut() {
                lease.broken = true;
                lease.back_after_break = None;
            }
        }
    }
}
