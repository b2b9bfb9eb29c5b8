//! Prometheus metrics: what the server counts, and the `/metrics` endpoint.
//!
//! Handles to every series are created once at start-up, so counting on the
//! hot path (every frame) is an atomic add, never a label lookup.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The kinds of client operation the server counts and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are Prometheus-style snake case
pub enum OpKind {
    /// Session handshake (create or reattach).
    handshake,
    /// Heartbeat.
    ping,
    /// Close session.
    close,
    /// Create node.
    create,
    /// Delete node.
    delete,
    /// Read node data.
    get_data,
    /// Write node data.
    set_data,
    /// Check existence.
    exists,
    /// List children.
    get_children,
    /// Re-register watches after reconnect.
    set_watches,
    /// Wait until the server is current (ZooKeeper's sync).
    sync,
    /// Read a node's access control list.
    get_acl,
    /// Replace a node's access control list.
    set_acl,
    /// Writes applied all or none.
    multi,
    /// Several reads in one request.
    multi_read,
    /// List the session's ephemerals.
    get_ephemerals,
    /// Count the nodes under a path.
    count_descendants,
    /// Add a persistent watch.
    add_watch,
    /// Remove or check watches.
    remove_watches,
    /// Add a credential to the connection.
    auth,
    /// List the connection's ids.
    who_am_i,
    /// A request whose operation this server does not know (answered
    /// `UNIMPLEMENTED`).
    unknown,
}

impl OpKind {
    /// Every kind, in a fixed order (the index of a kind is its position).
    pub const ALL: [OpKind; 22] = [
        OpKind::handshake,
        OpKind::ping,
        OpKind::close,
        OpKind::create,
        OpKind::delete,
        OpKind::get_data,
        OpKind::set_data,
        OpKind::exists,
        OpKind::get_children,
        OpKind::set_watches,
        OpKind::sync,
        OpKind::get_acl,
        OpKind::set_acl,
        OpKind::multi,
        OpKind::multi_read,
        OpKind::get_ephemerals,
        OpKind::count_descendants,
        OpKind::add_watch,
        OpKind::remove_watches,
        OpKind::auth,
        OpKind::who_am_i,
        OpKind::unknown,
    ];

    /// The label value, as Prometheus and the admin stats show it.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::handshake => "handshake",
            OpKind::ping => "ping",
            OpKind::close => "close",
            OpKind::create => "create",
            OpKind::delete => "delete",
            OpKind::get_data => "get_data",
            OpKind::set_data => "set_data",
            OpKind::exists => "exists",
            OpKind::get_children => "get_children",
            OpKind::set_watches => "set_watches",
            OpKind::sync => "sync",
            OpKind::get_acl => "get_acl",
            OpKind::set_acl => "set_acl",
            OpKind::multi => "multi",
            OpKind::multi_read => "multi_read",
            OpKind::get_ephemerals => "get_ephemerals",
            OpKind::count_descendants => "count_descendants",
            OpKind::add_watch => "add_watch",
            OpKind::remove_watches => "remove_watches",
            OpKind::auth => "auth",
            OpKind::who_am_i => "who_am_i",
            OpKind::unknown => "unknown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabels {
    op: OpKind,
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are Prometheus-style snake case
pub enum CloseReason {
    /// Over the total connection limit.
    too_many_connections,
    /// Over the per-IP connection limit.
    too_many_connections_per_ip,
    /// No handshake within the deadline.
    handshake_timeout,
    /// A frame that could not be decoded, or too large.
    bad_frame,
    /// A message that is not allowed at that point of the protocol.
    protocol_violation,
    /// The client's session expired.
    expired,
    /// The session moved to another connection.
    moved,
    /// Reattach with a wrong password.
    auth_failed,
    /// The server is shutting down.
    shutdown,
    /// The peer read nothing for its session timeout while replies waited.
    write_stalled,
    /// The client had seen a newer zxid than this server has applied.
    zxid_ahead,
    /// The engine could not order the session's creation or move (the disk
    /// refuses writes).
    unavailable,
    /// A ZooKeeper four-letter word (`ruok`, `srvr`, `mntr`, ...) was
    /// answered: its connection closes after the answer, as ZooKeeper's do.
    four_letter_word,
    /// Plain text (no TLS record) arrived on a TLS listener.
    plaintext_on_tls_port,
    /// A TLS handshake arrived on a plain-text listener.
    tls_on_plain_port,
    /// The TLS handshake or a TLS record failed: a certificate refused or
    /// missing, no protocol version or cipher in common, a corrupt record.
    tls_failed,
}

impl CloseReason {
    /// Every reason, in a fixed order.
    pub const ALL: [CloseReason; 16] = [
        CloseReason::too_many_connections,
        CloseReason::too_many_connections_per_ip,
        CloseReason::handshake_timeout,
        CloseReason::bad_frame,
        CloseReason::protocol_violation,
        CloseReason::expired,
        CloseReason::moved,
        CloseReason::auth_failed,
        CloseReason::shutdown,
        CloseReason::write_stalled,
        CloseReason::zxid_ahead,
        CloseReason::unavailable,
        CloseReason::four_letter_word,
        CloseReason::plaintext_on_tls_port,
        CloseReason::tls_on_plain_port,
        CloseReason::tls_failed,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CloseLabels {
    reason: CloseReason,
}

/// Every metric the server keeps, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sessions held (open or closing).
    pub sessions: Gauge,
    /// Client connections open.
    pub connections: Gauge,
    /// Sessions created.
    pub sessions_created: Counter,
    /// Sessions reattached to a new connection.
    pub reattaches: Counter,
    /// Sessions expired for lack of heartbeats.
    pub sessions_expired: Counter,
    /// Sessions closed by their client.
    pub sessions_closed: Counter,
    /// Bytes read from clients.
    pub bytes_in: Counter,
    /// Bytes written to clients.
    pub bytes_out: Counter,
    /// The zxid of the last applied transaction.
    pub applied_zxid: Gauge,
    /// The zxid of the last transaction the newest snapshot holds (0: none
    /// yet).
    pub snapshot_zxid: Gauge,
    /// The newest snapshot file's size in bytes.
    pub snapshot_bytes: Gauge,
    /// The Raft log's files, in bytes.
    pub log_bytes: Gauge,
    /// Time from handing log entries to the disk until they are fsynced
    /// (group commit: one flush may carry many writes).
    pub log_flush: Histogram,
    /// Certificate reloads that took effect.
    pub tls_reloads: Counter,
    /// Certificate reloads refused (a file missing, unreadable, or a key
    /// that does not match its certificate): the old ones stay in use.
    pub tls_reloads_refused: Counter,
    /// Peers refused: a call whose caller's certificate does not name the
    /// member it claims to be (or names none), or a peer dialed whose
    /// certificate does not verify as the member dialed.
    pub peers_refused: Counter,
    /// Admin calls refused for want of a valid bearer token.
    pub admin_calls_refused: Counter,
    ops: Vec<Counter>,
    latencies: Vec<LatencyHistogram>,
    closes: Vec<Counter>,
    /// Over every operation: what ZooKeeper's `srvr` and `mntr` report,
    /// which the histograms cannot give (their exact least and greatest).
    latency: LatencySummary,
    /// Requests read and replies written, one each per operation, for
    /// ZooKeeper's `Received`/`Sent`; watch notifications are not counted.
    /// Not exported: `ops` has the same count.
    packets_received: AtomicU64,
    packets_sent: AtomicU64,
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("session_server");
        let sessions = Gauge::default();
        registry.register(
            "sessions",
            "Sessions held (open or closing)",
            sessions.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Client connections open",
            connections.clone(),
        );
        let sessions_created = Counter::default();
        registry.register(
            "sessions_created",
            "Sessions created",
            sessions_created.clone(),
        );
        let reattaches = Counter::default();
        registry.register(
            "reattaches",
            "Sessions reattached to a new connection",
            reattaches.clone(),
        );
        let sessions_expired = Counter::default();
        registry.register(
            "sessions_expired",
            "Sessions expired for lack of heartbeats",
            sessions_expired.clone(),
        );
        let sessions_closed = Counter::default();
        registry.register(
            "sessions_closed",
            "Sessions closed by their client",
            sessions_closed.clone(),
        );
        let bytes_in = Counter::default();
        registry.register(
            "received_bytes",
            "Bytes read from clients",
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register("sent_bytes", "Bytes written to clients", bytes_out.clone());
        let applied_zxid = Gauge::default();
        registry.register(
            "applied_zxid",
            "The zxid of the last applied transaction",
            applied_zxid.clone(),
        );
        let snapshot_zxid = Gauge::default();
        registry.register(
            "snapshot_zxid",
            "The zxid of the last transaction the newest snapshot holds",
            snapshot_zxid.clone(),
        );
        let snapshot_bytes = Gauge::default();
        registry.register(
            "snapshot_bytes",
            "Size of the newest snapshot file",
            snapshot_bytes.clone(),
        );
        let log_bytes = Gauge::default();
        registry.register(
            "log_bytes",
            "Size of the Raft log's files",
            log_bytes.clone(),
        );
        let log_flush = latency_histogram();
        registry.register(
            "log_flush_seconds",
            "Time from handing log entries to the disk until they are fsynced",
            log_flush.clone(),
        );

        let tls_reloads = Counter::default();
        registry.register(
            "tls_reloads",
            "Certificate reloads that took effect",
            tls_reloads.clone(),
        );
        let tls_reloads_refused = Counter::default();
        registry.register(
            "tls_reloads_refused",
            "Certificate reloads refused; the old certificates stay in use",
            tls_reloads_refused.clone(),
        );
        let peers_refused = Counter::default();
        registry.register(
            "peers_refused",
            "Peers refused: a certificate that does not name the member it claims or is dialed as",
            peers_refused.clone(),
        );
        let admin_calls_refused = Counter::default();
        registry.register(
            "admin_calls_refused",
            "Admin calls refused for want of a valid bearer token",
            admin_calls_refused.clone(),
        );

        let op_family = Family::<OpLabels, Counter>::default();
        registry.register("ops", "Client operations by kind", op_family.clone());
        let latency_family = Family::<OpLabels, LatencyHistogram>::new_with_constructor(
            LatencyHistogram::new as fn() -> LatencyHistogram,
        );
        registry.register(
            "op_latency_seconds",
            "Time from reading a request to queueing its reply, by kind",
            latency_family.clone(),
        );
        let ops = OpKind::ALL
            .iter()
            .map(|&op| op_family.get_or_create_owned(&OpLabels { op }))
            .collect();
        let latencies = OpKind::ALL
            .iter()
            .map(|&op| latency_family.get_or_create_owned(&OpLabels { op }))
            .collect();

        let close_family = Family::<CloseLabels, Counter>::default();
        registry.register(
            "connections_closed_by_server",
            "Connections the server closed, by reason",
            close_family.clone(),
        );
        let closes = CloseReason::ALL
            .iter()
            .map(|&reason| close_family.get_or_create_owned(&CloseLabels { reason }))
            .collect();

        Metrics {
            registry,
            sessions,
            connections,
            sessions_created,
            reattaches,
            sessions_expired,
            sessions_closed,
            bytes_in,
            bytes_out,
            applied_zxid,
            snapshot_zxid,
            snapshot_bytes,
            log_bytes,
            log_flush,
            tls_reloads,
            tls_reloads_refused,
            peers_refused,
            admin_calls_refused,
            ops,
            latencies,
            closes,
            latency: LatencySummary::new(),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
        }
    }

    /// Counts one operation of `kind` that took `elapsed`: a request read
    /// and its reply written.
    pub fn observe_op(&self, kind: OpKind, elapsed: Duration) {
        self.ops[kind.index()].inc();
        self.latencies[kind.index()].observe(elapsed);
        self.latency.record(elapsed);
        self.packets_received.fetch_add(1, Ordering::Relaxed);
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request read that is not an operation (a four-letter word).
    pub(crate) fn count_packet_received(&self) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests read so far (ZooKeeper's `Received`).
    pub(crate) fn packets_received(&self) -> u64 {
        self.packets_received.load(Ordering::Relaxed)
    }

    /// Replies written so far (ZooKeeper's `Sent`).
    pub(crate) fn packets_sent(&self) -> u64 {
        self.packets_sent.load(Ordering::Relaxed)
    }

    /// The least, greatest and total time the operations took, over every
    /// operation since the start.
    pub(crate) fn latency(&self) -> Latency {
        self.latency.read()
    }

    /// Operations of `kind` so far.
    pub fn op_count(&self, kind: OpKind) -> u64 {
        self.ops[kind.index()].get()
    }

    /// Counts one connection closed by the server for `reason`.
    pub fn count_close(&self, reason: CloseReason) {
        self.closes[reason as usize].inc();
    }

    /// Connections closed so far for `reason`.
    pub fn close_count(&self, reason: CloseReason) -> u64 {
        self.closes[reason as usize].get()
    }

    /// Every series in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("invariant: writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The least and greatest of the operations' latencies, their total and
/// their number; all zero before the first operation (as ZooKeeper reports
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Latency {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    pub(crate) total: Duration,
    pub(crate) count: u64,
}

impl Latency {
    /// The mean in milliseconds, rounded to 4 decimals as ZooKeeper
    /// rounds its `avg`; 0 before the first operation.
    pub(crate) fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let mean = self.total.as_secs_f64() * 1000.0 / self.count as f64;
        (mean * 10_000.0).round() / 10_000.0
    }
}

/// A lock-free running min, max, sum and count, in microseconds: a request
/// costs two adds and, rarely, a compare-and-swap loop in `fetch_min` or
/// `fetch_max`. The four are read without a common snapshot, so a reader may
/// see a sum one operation ahead of the count: good enough for a report.
#[derive(Debug)]
struct LatencySummary {
    /// `u64::MAX` until the first operation.
    min: AtomicU64,
    max: AtomicU64,
    sum: AtomicU64,
    count: AtomicU64,
}

impl LatencySummary {
    fn new() -> Self {
        LatencySummary {
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.min.fetch_min(micros, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
        self.sum.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> Latency {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return Latency::default();
        }
        let min = self.min.load(Ordering::Relaxed);
        Latency {
            min: Duration::from_micros(if min == u64::MAX { 0 } else { min }),
            max: Duration::from_micros(self.max.load(Ordering::Relaxed)),
            total: Duration::from_micros(self.sum.load(Ordering::Relaxed)),
            count,
        }
    }
}

/// 10 µs to ~5 s in 20 doubling buckets (the log's flushes; rare enough
/// for prometheus-client's locked histogram).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// The latency histogram's buckets: upper bounds of 10 µs doubling 20
/// times (to about 5.2 s), then +Inf.
const LATENCY_BUCKETS: usize = 20;
/// The first bucket's upper bound, in nanoseconds.
const LATENCY_FIRST_BOUND_NS: u64 = 10_000;

/// An operation latency histogram that records without a lock: a request
/// costs three relaxed atomic adds (its bucket, the sum, the count), where
/// prometheus-client's `Histogram` takes a mutex on every observation.
/// Encoded exactly as that one is (cumulative `le` buckets in seconds, sum,
/// count). As with [`LatencySummary`], a scrape reads the atomics one by
/// one, so it may see an observation in the count and not yet in its
/// bucket: harmless for a histogram scraped every few seconds.
#[derive(Debug, Clone)]
pub(crate) struct LatencyHistogram(Arc<LatencyCells>);

#[derive(Debug)]
struct LatencyCells {
    /// Per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    fn new() -> LatencyHistogram {
        LatencyHistogram(Arc::new(LatencyCells {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }))
    }

    /// The bucket of `nanos`: the least `i` with `nanos ≤ 10 µs · 2^i`, or
    /// the +Inf bucket.
    fn bucket_of(nanos: u64) -> usize {
        let tenths = nanos.div_ceil(LATENCY_FIRST_BOUND_NS);
        let index = if tenths <= 1 {
            0
        } else {
            (u64::BITS - (tenths - 1).leading_zeros()) as usize
        };
        index.min(LATENCY_BUCKETS)
    }

    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.buckets[Self::bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
        self.0.sum_ns.fetch_add(nanos, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The upper bound of bucket `index`, in seconds.
    fn bound(index: usize) -> f64 {
        if index >= LATENCY_BUCKETS {
            f64::INFINITY
        } else {
            (LATENCY_FIRST_BOUND_NS << index) as f64 / 1e9
        }
    }
}

impl prometheus_client::metrics::TypedMetric for LatencyHistogram {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for LatencyHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .enumerate()
            .map(|(index, count)| (Self::bound(index), count.load(Ordering::Relaxed)))
            .collect();
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let count = self.0.count.load(Ordering::Relaxed);
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        <Self as prometheus_client::metrics::TypedMetric>::TYPE
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { crate::server::stopped(&mut shutdown).await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_falls_in_the_least_bucket_whose_bound_holds_it() {
        assert_eq!(LatencyHistogram::bucket_of(0), 0);
        assert_eq!(LatencyHistogram::bucket_of(10_000), 0);
        assert_eq!(LatencyHistogram::bucket_of(10_001), 1);
        assert_eq!(LatencyHistogram::bucket_of(20_000), 1);
        assert_eq!(LatencyHistogram::bucket_of(20_001), 2);
        assert_eq!(LatencyHistogram::bucket_of(40_000), 2);
        // The last finite bound, 10 µs · 2^19 (5.24288 s), then +Inf.
        assert_eq!(LatencyHistogram::bucket_of(5_242_880_000), 19);
        assert_eq!(LatencyHistogram::bucket_of(5_242_880_001), LATENCY_BUCKETS);
        assert_eq!(LatencyHistogram::bucket_of(u64::MAX), LATENCY_BUCKETS);
        for index in 0..LATENCY_BUCKETS {
            let bound_ns = LATENCY_FIRST_BOUND_NS << index;
            assert_eq!(LatencyHistogram::bucket_of(bound_ns), index);
            assert_eq!(LatencyHistogram::bucket_of(bound_ns + 1), index + 1);
        }
    }

    #[test]
    fn the_lock_free_histogram_encodes_as_prometheus_clients_does() {
        // The same observations into ours and into prometheus-client's
        // Histogram with the same bounds: the same text, bucket by bucket.
        let ours = LatencyHistogram::new();
        let theirs = latency_histogram();
        for micros in [3, 10, 11, 250, 4_000, 80_000, 1_000_000, 9_000_000] {
            ours.observe(Duration::from_micros(micros));
            theirs.observe(Duration::from_micros(micros).as_secs_f64());
        }
        let encode = |register: &dyn Fn(&mut Registry)| {
            let mut registry = Registry::default();
            register(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry)
                .expect("encoding into a String cannot fail");
            text
        };
        let ours = encode(&|registry| registry.register("latency", "l", ours.clone()));
        let theirs = encode(&|registry| registry.register("latency", "l", theirs.clone()));
        let buckets = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|line| line.contains("_bucket") || line.contains("_count"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(buckets(&ours), buckets(&theirs));
        assert!(ours.contains("latency_bucket{le=\"+Inf\"} 8"), "{ours}");
        assert!(ours.contains("latency_bucket{le=\"0.00001\"} 2"), "{ours}");
        let sum = |text: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix("latency_sum "))
                .and_then(|value| value.parse().ok())
                .expect("a sum line")
        };
        assert!((sum(&ours) - sum(&theirs)).abs() < 1e-9);
    }

    #[test]
    fn latency_is_zero_until_the_first_operation_then_min_max_and_mean() {
        let metrics = Metrics::new();
        assert_eq!(metrics.latency(), Latency::default());
        assert_eq!(metrics.latency().mean_ms(), 0.0);
        for micros in [1_500, 250, 4_000] {
            metrics.observe_op(OpKind::get_data, Duration::from_micros(micros));
        }
        let latency = metrics.latency();
        assert_eq!(latency.min, Duration::from_micros(250));
        assert_eq!(latency.max, Duration::from_millis(4));
        assert_eq!(latency.count, 3);
        assert_eq!(latency.mean_ms(), 1.9167, "5.75 ms / 3, to 4 decimals");
        assert_eq!((metrics.packets_received(), metrics.packets_sent()), (3, 3));
        metrics.count_packet_received();
        assert_eq!(metrics.packets_received(), 4);
    }
}
