//! A loopback TCP proxy that can cut every connection through it at once,
//! for the failover scenario. New connections are accepted again right
//! after a cut, so clients can reattach through it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; dropping it stops it and closes every connection.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    cut: Arc<watch::Sender<u64>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(watch::channel(0u64).0);
        let accept = {
            let cut = Arc::clone(&cut);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let generation = cut.subscribe();
                    tokio::spawn(forward(client, upstream, generation));
                }
            })
        };
        Ok(Proxy { addr, cut, accept })
    }

    /// One proxy in front of each server of `endpoint`, and the same
    /// endpoint through them (the proxies' connect string, in order).
    pub(crate) async fn in_front_of(
        endpoint: &crate::Endpoint,
    ) -> Result<(Vec<Proxy>, crate::Endpoint), crate::client::BenchError> {
        let mut proxies = Vec::new();
        for upstream in endpoint.addresses() {
            proxies.push(Proxy::start(upstream.parse()?).await?);
        }
        let through = crate::Endpoint {
            target: endpoint.target,
            addr: proxies
                .iter()
                .map(|proxy| proxy.addr().to_string())
                .collect::<Vec<_>>()
                .join(","),
        };
        Ok((proxies, through))
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection open through the proxy now.
    pub(crate) fn cut_all(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<u64>) {
    let _ = client.set_nodelay(true);
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    cut.mark_unchanged();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {}
    }
    // Dropping both sockets closes them; the client sees the connection end.
}
