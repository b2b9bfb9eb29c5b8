//! A peer that never reads: it must not slow anyone else, it loses its
//! connection slot a session timeout after the server's last write to it,
//! its session expires a session timeout after the last frame the server
//! read from it, and it cannot hold a stopping server past its grace period.
//!
//! Bounds (T is the peer's session timeout, TICK the expiry tick):
//! - every round trip of other sessions takes at most [`ROUND_TRIP_BOUND`]
//!   for the whole stall;
//! - the slot is freed in `[W + T, W + T + MARGIN]`, W being the server's
//!   last write to the peer, by the write-stall deadline (not by expiry);
//! - the session expires in `(R + T, R + T + TICK + MARGIN]`, R being the
//!   last frame the server read from the peer;
//! - the binary, sent SIGTERM while such a peer is connected, tells its
//!   other clients it is shutting down and exits with success within
//!   grace + 1 s.
//!
//! How W and R are pinned down from outside, without reading the peer (the
//! kernel's queues, /proc/net/tcp, show how far the server's writes got:
//! see [`support::written_to`]):
//! 1. the peer asks for the 512 KiB node once at a time, each time letting
//!    the server write all it can, until a reply no longer fits in the
//!    kernel's buffers (a few MB on loopback). W is after that request was
//!    sent (or the last one the server wrote any of) and not after the
//!    server's writes were last seen making progress. The output left
//!    waiting is under a frame;
//! 2. the peer then pings for [`KEEP_READING`]: the server still reads
//!    (under a frame of output waits and few requests are in flight), so the
//!    session is kept alive while the connection is already stalled. This
//!    separates the stall deadline (W + T) from expiry (R + T) by
//!    `KEEP_READING`, so which of the two frees the slot is not a race;
//! 3. the peer writes GetData requests until its writes stop making
//!    progress. The first two of them bring the waiting output over a frame
//!    and the server stops reading: R is after the first of these writes
//!    began and, give or take the server's reaction, before it returned.
//!
//! Linux only: the observation reads /proc/net/tcp.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use session_server::{CloseReason, Server};
use session_wire::v1::{CloseSession, ErrorCode, NodeKind, Ping, server_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{self, BIG, PATIENCE, Raw, TICK, free_port, server_binary};

/// The session timeout of the peer that never reads.
const T: Duration = Duration::from_millis(1000);

/// What the test adds to a server-side deadline before calling it late: the
/// observer polls every 5 ms, and on the shared 2-core machine where the
/// whole suite runs in parallel a woken task can wait tens of milliseconds
/// for a worker thread (both the server's and the observer's), more while
/// CI builds beside it. 250 ms is five ticks and a quarter of T: a server
/// that waits for anything else (the next expiry, the peer, a retry) still
/// fails.
const MARGIN: Duration = Duration::from_millis(250);

/// How long the peer keeps the server reading after its writes stalled.
const KEEP_READING: Duration = Duration::from_millis(300);

/// Far above a loopback round trip (well under a millisecond, even in a
/// debug build), far below "pinned behind a stalled peer" (T and more).
const ROUND_TRIP_BOUND: Duration = Duration::from_millis(500);

/// When things happened, from the peer's side.
#[derive(Debug)]
struct Timeline {
    started: Instant,
    /// Just before the GetData whose reply stalled the server's writes was
    /// sent: the server's last write to the peer is after this.
    last_write_after: Instant,
    /// Just before the flood's first write: the last frame the server read
    /// from the peer is after this.
    last_read_after: Instant,
    /// Just after the flood's first write returned: the server read its last
    /// frame by then, up to its reaction time.
    last_read_before: Instant,
    /// The peer's last write that made progress.
    last_client_write: Instant,
    /// Bytes of requests the flood got into the socket.
    flood_bytes: usize,
}

/// What the server did, seen by polling it.
#[derive(Debug)]
struct Observed {
    timeline: Timeline,
    /// The connections gauge dropped by one.
    freed: Instant,
    /// The last progress of the server's writes to the peer seen before
    /// `freed` (see [`support::written_to`]).
    last_write_progress: Instant,
    /// Closes counted for `write_stalled` and `expired` by `freed`.
    stalled_closes: u64,
    expired_closes: u64,
    /// Whether the session was still held when its slot was freed.
    session_held_when_freed: bool,
    /// The session count dropped by one.
    expired: Instant,
    /// Sessions counted as expired by then.
    sessions_expired: u64,
}

impl Timeline {
    fn at(&self, instant: Instant) -> String {
        if instant >= self.started {
            format!("{:?}", instant - self.started)
        } else {
            format!("-{:?}", self.started - instant)
        }
    }
}

/// Closes a session the polite way and waits for the server to close the
/// connection, so it leaves neither a slot nor a session behind.
async fn close(mut raw: Raw) {
    raw.send(CloseSession {}).await;
    while raw.recv().await.is_some() {}
}

async fn with_big_node(server: &Server) {
    let (mut setup, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    setup
        .create("/big", &vec![7u8; BIG], NodeKind::Persistent)
        .await
        .expect("a node at the default data limit");
    setup
        .create("/small", b"small", NodeKind::Persistent)
        .await
        .expect("create");
    close(setup).await;
}

/// Runs the three phases of the module doc on a new session and watches the
/// server until the peer's slot is freed and its session expired.
async fn never_reading_peer(server: &Server) -> Observed {
    let metrics = server.metrics();
    let (raw, granted) = Raw::open(server.local_addr(), T).await;
    assert_eq!(u128::from(granted.negotiated_timeout_ms), T.as_millis());
    let stream = raw.framed.into_inner();
    let connections = metrics.connections.get();
    let sessions = server.session_count();
    let stalled_before = metrics.close_count(CloseReason::write_stalled);
    let expired_before = metrics.close_count(CloseReason::expired);
    let sessions_expired_before = metrics.sessions_expired.get();
    let started = Instant::now();

    let peer = async {
        let mut xid = 0;
        let mut next_xid = move || {
            xid += 1;
            xid
        };
        // 1. One request at a time, each given time to be answered, until a
        // reply no longer fits in the kernel's buffers.
        let mut last_write_after = started;
        for asked in 0.. {
            assert!(asked < 64, "{asked} replies of 512 KiB were all written");
            let mut bytes = BytesMut::new();
            support::frame(support::get_data(next_xid(), "/big"), &mut bytes);
            let written = support::written_to(&stream).expect("connection listed");
            let before = Instant::now();
            support::write_all_to(&stream, &bytes).await;
            let taken = support::settled_writes(&stream).await - written;
            if taken > 0 {
                last_write_after = before;
            }
            if taken < BIG as u64 {
                break;
            }
        }
        // 2. Pings: the server still reads, the connection is stalled.
        let keep_until = Instant::now() + KEEP_READING;
        while Instant::now() < keep_until {
            let mut bytes = BytesMut::new();
            support::frame(Ping {}, &mut bytes);
            support::write_all_to(&stream, &bytes).await;
            tokio::time::sleep(TICK).await;
        }
        // 3. GetData until the peer's writes stop making progress.
        let batch = || {
            let mut bytes = BytesMut::new();
            for _ in 0..1024 {
                support::frame(support::get_data(next_xid(), "/big"), &mut bytes);
            }
            (bytes, 1024)
        };
        let flood = support::write_until_stalled(&stream, batch, 256 << 20).await;
        Timeline {
            started,
            last_write_after,
            last_read_after: flood.first_before,
            last_read_before: flood.first_after,
            last_client_write: flood.last_progress,
            flood_bytes: flood.bytes,
        }
    };

    let monitor = async {
        let mut written = 0;
        let mut last_write_progress = started;
        let mut freed = None;
        let mut expired = None;
        loop {
            if freed.is_none() {
                if let Some(now_written) = support::written_to(&stream) {
                    if now_written != written {
                        written = now_written;
                        last_write_progress = Instant::now();
                    }
                }
                if metrics.connections.get() < connections {
                    freed = Some((
                        Instant::now(),
                        metrics.close_count(CloseReason::write_stalled) - stalled_before,
                        metrics.close_count(CloseReason::expired) - expired_before,
                        server.session_count() == sessions,
                        last_write_progress,
                    ));
                }
            }
            if expired.is_none() && server.session_count() < sessions {
                expired = Some(Instant::now());
            }
            if let (Some(freed), Some(expired)) = (freed, expired) {
                // The reaper counts an expiry once the engine has applied
                // its close, a moment after the session leaves the table:
                // read the counter once it has moved (or PATIENCE is up).
                let counted = Instant::now();
                while metrics.sessions_expired.get() == sessions_expired_before
                    && counted.elapsed() < PATIENCE
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let count = metrics.sessions_expired.get() - sessions_expired_before;
                return (freed, (expired, count));
            }
            assert!(
                started.elapsed() < PATIENCE,
                "after {PATIENCE:?}: slot freed {:?}, session expired {:?}",
                freed.is_some(),
                expired.is_some()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };

    let (timeline, (freed, expired)) = tokio::join!(peer, monitor);
    let (freed, stalled_closes, expired_closes, session_held_when_freed, last_write_progress) =
        freed;
    let (expired, sessions_expired) = expired;
    Observed {
        timeline,
        freed,
        last_write_progress,
        stalled_closes,
        expired_closes,
        session_held_when_freed,
        expired,
        sessions_expired,
    }
}

#[derive(Debug, Default)]
struct Slowest {
    round_trips: usize,
    first: Option<Instant>,
    last: Option<Instant>,
    worst: Vec<(&'static str, Duration)>,
}

/// Ping, exists, create and get, over and over, until told to stop; returns
/// the slowest round trip of each kind.
async fn bystander(
    addr: std::net::SocketAddr,
    name: usize,
    started: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Slowest {
    let (mut raw, _) = Raw::open(addr, Duration::from_secs(2)).await;
    let mut slowest = Slowest {
        worst: vec![
            ("ping", Duration::ZERO),
            ("exists", Duration::ZERO),
            ("create", Duration::ZERO),
            ("get", Duration::ZERO),
        ],
        ..Slowest::default()
    };
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        for (index, worst) in slowest.worst.iter_mut().enumerate() {
            let started = Instant::now();
            match index {
                0 => raw.ping().await,
                1 => assert!(raw.exists("/small", false).await.is_some()),
                2 => {
                    let path = format!("/bystander-{name}-{round}");
                    raw.create(&path, b"", NodeKind::Persistent)
                        .await
                        .expect("create");
                }
                _ => {
                    let (data, _) = raw.get("/small", false).await.expect("get");
                    assert_eq!(&data[..], b"small");
                }
            }
            let done = Instant::now();
            worst.1 = worst.1.max(done - started);
            slowest.first.get_or_insert(started);
            slowest.last = Some(done);
            slowest.round_trips += 1;
        }
        if round == 0 {
            started.fetch_add(1, Ordering::Relaxed);
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    close(raw).await;
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sessions_round_trips_stay_under_500ms_while_a_peer_never_reads() {
    let server = support::start().await;
    with_big_node(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let bystanders: Vec<_> = (0..3)
        .map(|name| {
            let started = Arc::clone(&started);
            let stop = Arc::clone(&stop);
            tokio::spawn(bystander(server.local_addr(), name, started, stop))
        })
        .collect();
    // Every bystander is under way before the stall begins (and its
    // connection counted before the peer's slot is watched).
    let waited = Instant::now();
    while started.load(Ordering::Relaxed) < 3 {
        assert!(waited.elapsed() < PATIENCE, "bystanders did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let observed = never_reading_peer(&server).await;
    // And every bystander is still at it after the session expired.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for bystander in bystanders {
        let slowest = tokio::time::timeout(PATIENCE, bystander)
            .await
            .expect("bystander stops")
            .expect("bystander ran without panicking");
        let (first, last) = (
            slowest.first.expect("round trips made"),
            slowest.last.expect("round trips made"),
        );
        let timeline = &observed.timeline;
        assert!(
            first < timeline.started && last > observed.expired,
            "the bystander's round trips must span the whole stall: they ran from {} to {}, \
             the peer from {} to {}",
            timeline.at(first),
            timeline.at(last),
            timeline.at(timeline.started),
            timeline.at(observed.expired),
        );
        eprintln!(
            "bystander: {} round trips, slowest {:?}",
            slowest.round_trips, slowest.worst
        );
        for (op, worst) in &slowest.worst {
            assert!(
                *worst <= ROUND_TRIP_BOUND,
                "a {op} round trip took {worst:?} (bound {ROUND_TRIP_BOUND:?}) while a peer \
                 never read; {} round trips in all",
                slowest.round_trips
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_loses_its_slot_t_after_the_last_write_and_its_session_t_after_the_last_read()
 {
    let server = support::start().await;
    with_big_node(&server).await;
    let observed = never_reading_peer(&server).await;
    let timeline = &observed.timeline;
    let report = format!(
        "timeline from the first request (T = {T:?}, tick = {TICK:?}): last write after {}, \
         writes last progressed {}, last read in [{}, {}], peer's last write {} \
         ({} bytes of flood), slot freed {}, session expired {}",
        timeline.at(timeline.last_write_after),
        timeline.at(observed.last_write_progress),
        timeline.at(timeline.last_read_after),
        timeline.at(timeline.last_read_before),
        timeline.at(timeline.last_client_write),
        timeline.flood_bytes,
        timeline.at(observed.freed),
        timeline.at(observed.expired),
    );

    eprintln!("{report}");

    // The slot: freed by the write-stall deadline, T after the last write.
    assert_eq!(
        (observed.stalled_closes, observed.expired_closes),
        (1, 0),
        "the slot is freed by the write-stall deadline, not by expiry; {report}"
    );
    assert!(
        observed.session_held_when_freed,
        "the session outlives its stalled connection (it was read from later); {report}"
    );
    assert!(
        observed.freed >= timeline.last_write_after + T,
        "slot freed early: before T after the server's last write; {report}"
    );
    assert!(
        observed.freed <= observed.last_write_progress + T + MARGIN,
        "slot freed late: more than T + {MARGIN:?} after the server's last write; {report}"
    );
    assert!(
        observed.freed <= timeline.last_client_write + T + TICK + MARGIN,
        "slot freed more than T + tick + {MARGIN:?} after the peer's last write; {report}"
    );

    // The session: expired T after the last frame read, never before.
    assert_eq!(observed.sessions_expired, 1, "{report}");
    assert!(
        observed.expired > timeline.last_read_after + T,
        "session expired early: within T of the last frame the server read; {report}"
    );
    assert!(
        observed.expired <= timeline.last_read_before + T + TICK + MARGIN,
        "session expired late: more than T + tick + {MARGIN:?} after the last frame read; \
         {report}"
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// The binary under SIGTERM.

/// The grace period passed to the binary.
const GRACE: Duration = Duration::from_millis(1000);

/// The server process, run in a directory of its own (whatever it writes
/// there goes with it); killed if the test ends without it having exited.
struct Process {
    child: Child,
    dir: PathBuf,
}

impl Process {
    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<_> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// GET /metrics, and the value of one unlabelled series.
async fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    body.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_peer_that_never_reads_exits_successfully_within_grace_plus_1s() {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = std::env::temp_dir().join(format!(
        "session-server-sigterm-{}-{}",
        std::process::id(),
        listen.port()
    ));
    std::fs::create_dir_all(&dir).expect("a directory for the server");
    let file = std::fs::File::create(dir.join("server.log")).expect("log file");
    let child = Command::new(server_binary())
        .current_dir(&dir)
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--zk-listen", "off"])
        .args(["--metrics-listen", &metrics.to_string()])
        .args(["--tick-ms", "50"])
        // The peer below gets a 10 s timeout so that its own stall deadline
        // cannot free it during the grace period: the shutdown must.
        .args(["--max-session-timeout-ms", "20000"])
        .args(["--shutdown-grace-ms", &GRACE.as_millis().to_string()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().expect("log file")))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("the server binary starts");
    let mut process = Process { child, dir };

    // Wait until it accepts (bounded).
    let started = Instant::now();
    loop {
        if TcpStream::connect(listen).await.is_ok() {
            break;
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!(
                "the server exited at start with {status}:\n{}",
                process.log_tail()
            );
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the server did not accept within {PATIENCE:?}:\n{}",
            process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (mut client, _) = Raw::open(listen, Duration::from_secs(2)).await;
    client
        .create("/big", &vec![7u8; BIG], NodeKind::Persistent)
        .await
        .expect("a node at the default data limit");
    let (peer, granted) = Raw::open(listen, Duration::from_secs(10)).await;
    assert_eq!(granted.negotiated_timeout_ms, 10_000);
    let peer = peer.framed.into_inner();
    let mut xid = 0;
    let batch = || {
        let mut bytes = BytesMut::new();
        for _ in 0..1024 {
            xid += 1;
            support::frame(support::get_data(xid, "/big"), &mut bytes);
        }
        (bytes, 1024)
    };
    support::write_until_stalled(&peer, batch, 256 << 20).await;

    // Both connections are open when the signal comes: the peer is pinned
    // (its stall deadline is 10 s away), the client is idle.
    let pinned = Instant::now();
    loop {
        if metric(metrics, "session_server_connections").await == Some(2.0) {
            break;
        }
        assert!(
            pinned.elapsed() < Duration::from_secs(2),
            "expected 2 open connections, metrics say {:?}",
            metric(metrics, "session_server_connections").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success(), "kill -TERM failed: {kill}");

    let told = async {
        let mut told = None;
        while let Some(message) = client.recv().await {
            if let Some(server_message::Kind::Disconnect(disconnect)) = message.kind {
                told = Some((disconnect.reason(), Instant::now()));
            }
        }
        told
    };
    let exited = async {
        loop {
            if let Some(status) = process.child.try_wait().expect("try_wait") {
                break Some((status, Instant::now()));
            }
            if signalled.elapsed() > GRACE + Duration::from_secs(1) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (told, exited) = tokio::join!(told, exited);
    let Some((status, exited_at)) = exited else {
        panic!(
            "still running {:?} after SIGTERM (grace {GRACE:?} + 1 s):\n{}",
            signalled.elapsed(),
            process.log_tail()
        );
    };
    assert!(
        status.success(),
        "exit status {status} after SIGTERM:\n{}",
        process.log_tail()
    );
    eprintln!(
        "SIGTERM: told after {:?}, exited after {:?}",
        told.map(|(_, at)| at - signalled),
        exited_at - signalled
    );
    assert!(exited_at - signalled <= GRACE + Duration::from_secs(1));
    let Some((reason, told_at)) = told else {
        panic!(
            "the connected client was not told why:\n{}",
            process.log_tail()
        );
    };
    assert_eq!(reason, ErrorCode::ServerShuttingDown);
    assert!(
        told_at <= exited_at,
        "the client heard of the shutdown after the process had exited"
    );
    drop(peer);
}
