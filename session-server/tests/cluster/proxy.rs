//! A fault-injecting TCP proxy, one per directed link.
//!
//! A [`LinkProxy`] listens on 127.0.0.1 port 0 and forwards every connection
//! to one target address. Its [`Fault`] can be changed at any time from
//! synchronous code:
//!
//! - [`Fault::Pass`]: bytes go through as they come.
//! - [`Fault::Drop`]: the link is cut. Open connections stop forwarding and
//!   are closed (both ends); new connections are accepted and closed at once,
//!   so the dialling side sees its connection refused or reset.
//! - [`Fault::Delay`]: every chunk read is written to the other side that
//!   long after it was read, in order, in both directions.
//!
//! The proxies run on their own runtime thread ([`ProxyRuntime`]) rather than
//! on a test's runtime: a test that drives a thousand clients must not delay
//! the Raft heartbeats passing through the peer links (50 ms apart against a
//! 300 ms election timeout), or the test would cause the elections it
//! measures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a link does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forward at once.
    Pass,
    /// Cut: close every open connection and every new one.
    Drop,
    /// Forward each chunk this long after it was read.
    Delay(Duration),
}

/// A runtime of its own for the proxies (one worker thread), shut down
/// without blocking when dropped (a test's runtime may be the one dropping
/// it).
#[derive(Debug)]
pub(crate) struct ProxyRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl ProxyRuntime {
    pub(crate) fn new() -> ProxyRuntime {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("link-proxy")
            .enable_all()
            .build()
            .expect("a runtime for the proxies");
        ProxyRuntime {
            runtime: Some(runtime),
        }
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("invariant: the runtime lives until drop")
            .handle()
            .clone()
    }
}

impl Drop for ProxyRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Aborts every proxy task: their sockets close.
            runtime.shutdown_background();
        }
    }
}

/// One directed link: a listener that forwards to `target` with a fault.
#[derive(Debug)]
pub(crate) struct LinkProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    /// Starts a proxy to `target` on 127.0.0.1 port 0, in `Pass` mode. The
    /// target need not listen yet: each connection dials it when accepted.
    pub(crate) fn start(runtime: &ProxyRuntime, target: SocketAddr) -> LinkProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a proxy");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("the proxy's address");
        let (fault, _) = watch::channel(Fault::Pass);
        let accepted = Arc::new(AtomicU64::new(0));
        let handle = runtime.handle();
        let task = {
            let fault = fault.clone();
            let accepted = Arc::clone(&accepted);
            let spawner = handle.clone();
            handle.spawn(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener");
                while let Ok((inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    if *fault.borrow() == Fault::Drop {
                        // Closed unread: the peer's next read or write fails.
                        drop(inbound);
                        continue;
                    }
                    spawner.spawn(relay(inbound, target, fault.subscribe()));
                }
            })
        };
        LinkProxy {
            addr,
            fault,
            accepted,
            task,
        }
    }

    /// Where to connect to reach the target through this link.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault now in force.
    pub(crate) fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Changes the fault; a cut takes effect on open connections at once.
    pub(crate) fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Connections accepted so far (cut ones included).
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // Open connections end with the cut, the listener with the task.
        self.fault.send_replace(Fault::Drop);
        self.task.abort();
    }
}

/// Forwards one accepted connection until either end closes or the link is
/// cut; then both sockets are closed.
async fn relay(inbound: TcpStream, target: SocketAddr, mut fault: watch::Receiver<Fault>) {
    let outbound = tokio::select! {
        connected = TcpStream::connect(target) => match connected {
            Ok(outbound) => outbound,
            Err(_) => return,
        },
        _ = fault.wait_for(|fault| *fault == Fault::Drop) => return,
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let mut cut = fault.clone();
    tokio::select! {
        () = forward(in_read, out_write, fault.clone()) => {}
        () = forward(out_read, in_write, fault) => {}
        _ = cut.wait_for(|fault| *fault == Fault::Drop) => {}
    }
}

/// Copies `from` to `to`, each chunk delayed by the fault in force when it
/// was read, in order.
async fn forward(mut from: OwnedReadHalf, to: OwnedWriteHalf, fault: watch::Receiver<Fault>) {
    let (chunks, queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = write_due(to, queued);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            let due = match *fault.borrow() {
                Fault::Delay(delay) => Instant::now() + delay,
                Fault::Pass | Fault::Drop => Instant::now(),
            };
            if chunks.send((due, buf[..read].to_vec())).is_err() {
                return;
            }
        }
    };
    // The reader ending (EOF) drops the sender: the writer writes what is
    // queued, then shuts its side down.
    tokio::join!(reader, writer);
}

async fn write_due(
    mut to: OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
) {
    while let Some((due, chunk)) = queued.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

// ---------------------------------------------------------------------------
// The proxy alone, against an echo server: no session server needed.

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on its own task; returns its address.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends `message` and reads it back, within `within`.
    async fn round_trip(
        stream: &mut TcpStream,
        message: &[u8],
        within: Duration,
    ) -> std::io::Result<Vec<u8>> {
        stream.write_all(message).await?;
        let mut back = vec![0u8; message.len()];
        match tokio::time::timeout(within, stream.read_exact(&mut back)).await {
            Ok(Ok(_)) => Ok(back),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no echo in time",
            )),
        }
    }

    /// Whether the connection is closed: a read gives EOF or an error
    /// within `within` (a write alone may still succeed into the buffer).
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let _ = stream.write_all(b"?").await;
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const QUICK: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn pass_forwards_both_ways() {
        let runtime = ProxyRuntime::new();
        let proxy = LinkProxy::start(&runtime, echo().await);
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let back = round_trip(&mut stream, b"hello", QUICK)
            .await
            .expect("echo");
        assert_eq!(back, b"hello");
        assert_eq!(proxy.accepted(), 1);
        assert_eq!(proxy.fault(), Fault::Pass);
    }

    #[tokio::test]
    async fn drop_closes_open_connections_and_refuses_new_ones_until_healed() {
        let runtime = ProxyRuntime::new();
        let proxy = LinkProxy::start(&runtime, echo().await);
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        round_trip(&mut open, b"before", QUICK).await.expect("echo");

        proxy.set(Fault::Drop);
        assert!(
            closed_within(&mut open, QUICK).await,
            "an open connection is closed by the cut"
        );
        // A new one is accepted by the kernel, then closed unread.
        let mut new = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(closed_within(&mut new, QUICK).await, "a new one is closed");

        proxy.set(Fault::Pass);
        let mut healed = TcpStream::connect(proxy.addr()).await.expect("connect");
        let back = round_trip(&mut healed, b"after", QUICK)
            .await
            .expect("echo");
        assert_eq!(back, b"after");
    }

    #[tokio::test]
    async fn delay_holds_each_direction_for_the_delay_and_keeps_order() {
        // Bound: a round trip through a link delayed by D in each direction
        // takes at least 2 D, and at most 2 D + 500 ms on a loaded machine.
        const D: Duration = Duration::from_millis(150);
        let runtime = ProxyRuntime::new();
        let proxy = LinkProxy::start(&runtime, echo().await);
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        round_trip(&mut stream, b"warm", QUICK).await.expect("echo");

        proxy.set(Fault::Delay(D));
        let started = Instant::now();
        stream.write_all(b"one").await.expect("write");
        stream.write_all(b"two").await.expect("write");
        let mut back = vec![0u8; 6];
        tokio::time::timeout(QUICK, stream.read_exact(&mut back))
            .await
            .expect("in time")
            .expect("read");
        let took = started.elapsed();
        assert_eq!(back, b"onetwo", "in order");
        assert!(took >= 2 * D, "took {took:?}, less than {:?}", 2 * D);
        assert!(took <= 2 * D + Duration::from_millis(500), "took {took:?}");

        proxy.set(Fault::Pass);
        let started = Instant::now();
        round_trip(&mut stream, b"fast", QUICK).await.expect("echo");
        assert!(started.elapsed() < D, "no delay once passing again");
    }

    #[tokio::test]
    async fn a_target_that_is_down_closes_the_connection() {
        let runtime = ProxyRuntime::new();
        let dead = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listener.local_addr().expect("address")
        };
        let proxy = LinkProxy::start(&runtime, dead);
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(closed_within(&mut stream, QUICK).await);
    }
}
