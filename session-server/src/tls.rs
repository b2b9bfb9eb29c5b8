//! TLS for every listener, with rustls and its ring provider (TLS 1.2 and
//! 1.3 only): the certificates loaded from PEM files, re-read when the files
//! change or on [`Server::reload_tls`](crate::Server::reload_tls), and the
//! pieces the gRPC listeners (admin, peer) and the peer dialer need.
//!
//! A reload builds every rustls configuration anew from the files; only
//! when all of them build does it replace the ones in use, so a bad new
//! certificate (unreadable, not PEM, a key that is not its certificate's)
//! is refused with a log line and the old ones stay. Connections already
//! open keep the keys they were made with: sessions are not disturbed.
//!
//! Peers talk only over mutual TLS. Member N's certificate must carry the
//! DNS name `--peer-tls-name` makes of N (`server-N` by default): the dialer
//! checks it as the server name it expects, and the callee checks the
//! caller's certificate against the member the call claims to come from.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::TlsConfig;
use crate::metrics::{CloseReason, Metrics};
use crate::transport::TLS_HANDSHAKE_RECORD;

/// Why certificates could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file holds no PEM certificate, or a malformed one.
    #[error("{path} holds no usable PEM certificate: {detail}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file holds no PEM private key, or a malformed one.
    #[error("{path} holds no usable PEM private key: {detail}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the certificate with its key (a key that is not the
    /// certificate's, an algorithm it does not support) or the authority.
    #[error("{path}: {detail}")]
    Refused {
        /// The certificate or authority file.
        path: PathBuf,
        /// rustls's reason.
        detail: String,
    },
}

/// The rustls configurations in use, built together from the files.
#[derive(Debug)]
pub(crate) struct Material {
    /// The client listeners (v1 and ZooKeeper).
    pub(crate) clients: Arc<ServerConfig>,
    /// The admin gRPC listener (as `clients`, with ALPN `h2`).
    pub(crate) admin: Arc<ServerConfig>,
    /// The peer listener: mutual TLS. `None` without an authority for
    /// peers (a server on its own).
    pub(crate) peer_server: Option<Arc<ServerConfig>>,
    /// Dialing peers, with this server's peer certificate.
    pub(crate) peer_client: Option<Arc<ClientConfig>>,
}

/// When the files were last seen changed: modification time and length of
/// each.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The certificates of a server, reloadable.
#[derive(Debug)]
pub(crate) struct Tls {
    config: TlsConfig,
    current: RwLock<Arc<Material>>,
    stamp: Mutex<Stamp>,
    metrics: Arc<Metrics>,
}

impl Tls {
    /// Loads the certificates `config` names; fails on the first that does
    /// not load.
    pub(crate) fn load(config: &TlsConfig, metrics: Arc<Metrics>) -> Result<Arc<Tls>, TlsError> {
        let stamp = stamp(&files(config));
        let material = build(config)?;
        Ok(Arc::new(Tls {
            config: config.clone(),
            current: RwLock::new(Arc::new(material)),
            stamp: Mutex::new(stamp),
            metrics,
        }))
    }

    /// The configurations to use for a new connection.
    pub(crate) fn current(&self) -> Arc<Material> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the files again and, if every configuration builds, uses them
    /// for new connections from now on; otherwise keeps the old ones.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let stamp = stamp(&files(&self.config));
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        match build(&self.config) {
            Ok(material) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(material);
                self.metrics.tls_reloads.inc();
                info!(cert = %self.config.cert.display(), "TLS certificates reloaded");
                Ok(())
            }
            Err(err) => {
                self.metrics.tls_reloads_refused.inc();
                warn!(error = %err, "refusing the new TLS certificates; the ones in use stay");
                Err(err)
            }
        }
    }

    /// Reloads when a file changed since it was last looked at.
    fn reload_if_changed(&self) {
        let now = stamp(&files(&self.config));
        let changed = *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) != now;
        if changed {
            let _ = self.reload();
        }
    }

    /// Looks at the files every `poll` until shutdown, reloading on change.
    pub(crate) async fn watch_files(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.config.poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = crate::server::stopped(&mut shutdown) => return,
                _ = ticks.tick() => self.reload_if_changed(),
            }
        }
    }

    /// The name member `node`'s certificate must carry.
    pub(crate) fn peer_name(&self, node: u64) -> String {
        self.config.peer_name_of(node)
    }

    /// The template of members' names (`{id}` standing for the id).
    pub(crate) fn peer_name_template(&self) -> &str {
        &self.config.peer_name
    }

    /// Whether `certificate` is valid for the name member `node` must
    /// carry (its chain was checked in the handshake).
    pub(crate) fn names_member(&self, certificate: &CertificateDer<'_>, node: u64) -> bool {
        let Ok(name) = ServerName::try_from(self.peer_name(node)) else {
            return false;
        };
        webpki::EndEntityCert::try_from(certificate)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

/// Every file the configuration names, in a fixed order.
fn files(config: &TlsConfig) -> Vec<PathBuf> {
    [
        Some(&config.cert),
        Some(&config.key),
        config.client_ca.as_ref(),
        config.peer_cert.as_ref(),
        config.peer_key.as_ref(),
        config.peer_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A certificate chain and its key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    path: PathBuf,
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let invalid = |detail: String| TlsError::Certificate {
        path: path.to_owned(),
        detail,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(err.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("no CERTIFICATE block".to_owned()));
    }
    Ok(chain)
}

fn identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let chain = certificates(cert)?;
    let bytes = read(key)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| TlsError::Key {
        path: key.to_owned(),
        detail: err.to_string(),
    })?;
    Ok(Identity {
        chain,
        key,
        path: cert.to_owned(),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|err| TlsError::Refused {
            path: path.to_owned(),
            detail: format!("not a usable authority: {err}"),
        })?;
    }
    Ok(Arc::new(store))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A server configuration for `identity`; with `client_roots`, every
/// client must show a certificate chaining to them.
fn server_config(
    identity: &Identity,
    client_roots: Option<(&Path, Arc<RootCertStore>)>,
) -> Result<ServerConfig, TlsError> {
    let refused = |path: &Path, err: &dyn std::fmt::Display| TlsError::Refused {
        path: path.to_owned(),
        detail: err.to_string(),
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|err| refused(&identity.path, &err))?;
    let builder = match client_roots {
        Some((path, roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|err| refused(path, &err))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|err| refused(&identity.path, &err))
}

fn build(config: &TlsConfig) -> Result<Material, TlsError> {
    let own = identity(&config.cert, &config.key)?;
    let client_roots = match &config.client_ca {
        Some(path) => Some((path.as_path(), roots(path)?)),
        None => None,
    };
    let clients = server_config(&own, client_roots.clone())?;
    let mut admin = clients.clone();
    admin.alpn_protocols = vec![b"h2".to_vec()];
    let peer_identity = match (&config.peer_cert, &config.peer_key) {
        (Some(cert), Some(key)) => identity(cert, key)?,
        _ => Identity {
            chain: own.chain.clone(),
            key: own.key.clone_key(),
            path: own.path.clone(),
        },
    };
    let peer_roots = match (&config.peer_ca, client_roots) {
        (Some(path), _) => Some((path.as_path(), roots(path)?)),
        (None, roots) => roots,
    };
    let (peer_server, peer_client) = match peer_roots {
        Some((path, roots)) => {
            let mut server = server_config(&peer_identity, Some((path, Arc::clone(&roots))))?;
            server.alpn_protocols = vec![b"h2".to_vec()];
            let mut client = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(VERSIONS)
                .and_then(|builder| {
                    builder
                        .with_root_certificates(roots)
                        .with_client_auth_cert(peer_identity.chain, peer_identity.key)
                })
                .map_err(|err| TlsError::Refused {
                    path: peer_identity.path.clone(),
                    detail: err.to_string(),
                })?;
            client.alpn_protocols = vec![b"h2".to_vec()];
            (Some(Arc::new(server)), Some(Arc::new(client)))
        }
        None => (None, None),
    };
    Ok(Material {
        clients: Arc::new(clients),
        admin: Arc::new(admin),
        peer_server,
        peer_client,
    })
}

/// Who is at the other end of a gRPC connection (admin or peer), for the
/// services to check and log.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The caller's address.
    pub(crate) remote: SocketAddr,
    /// The certificate it showed (TLS with client certificates only).
    pub(crate) certificate: Option<CertificateDer<'static>>,
}

impl Caller {
    /// A short name for the caller's certificate, for logs: the first
    /// bytes of its SHA-256 fingerprint.
    pub(crate) fn fingerprint(&self) -> Option<String> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.certificate.as_ref()?);
        Some(
            digest[..8]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        )
    }
}

/// An accepted gRPC connection, plain or TLS.
#[derive(Debug)]
pub(crate) enum GrpcIo {
    Plain(TcpStream, SocketAddr),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, SocketAddr),
}

impl tonic::transport::server::Connected for GrpcIo {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        match self {
            GrpcIo::Plain(_, remote) => Caller {
                remote: *remote,
                certificate: None,
            },
            GrpcIo::Tls(stream, remote) => Caller {
                remote: *remote,
                certificate: stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|cert| cert.clone().into_owned()),
            },
        }
    }
}

impl AsyncRead for GrpcIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcIo::Plain(stream, _) => Pin::new(stream).poll_read(cx, buf),
            GrpcIo::Tls(stream, _) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GrpcIo::Plain(stream, _) => Pin::new(stream).poll_write(cx, buf),
            GrpcIo::Tls(stream, _) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcIo::Plain(stream, _) => Pin::new(stream).poll_flush(cx),
            GrpcIo::Tls(stream, _) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcIo::Plain(stream, _) => Pin::new(stream).poll_shutdown(cx),
            GrpcIo::Tls(stream, _) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How long a gRPC caller has to finish the TLS handshake.
const GRPC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which configuration a gRPC listener uses from the current material.
pub(crate) type Pick = fn(&Material) -> Option<Arc<ServerConfig>>;

/// The connections accepted on `listener`, as tonic's `serve_with_incoming`
/// takes them: TLS-handshaken with the configuration `pick` takes from
/// `tls` at each accept, or plain without `tls`. Handshakes run in tasks of
/// their own, so a slow one holds up no other; a failed one is counted and
/// logged (naming the caller) and dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Option<(Arc<Tls>, Pick)>,
    what: &'static str,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = io::Result<GrpcIo>> + Send + 'static {
    let (ready, mut accepted) = mpsc::channel::<GrpcIo>(64);
    let accepting = tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some((tls, pick)) = &tls else {
                if ready.send(GrpcIo::Plain(tcp, remote)).await.is_err() {
                    return;
                }
                continue;
            };
            let Some(config) = pick(&tls.current()) else {
                continue;
            };
            let ready = ready.clone();
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let handshake = handshake(tcp, config, remote, what, &metrics);
                if let Ok(Some(io)) = tokio::time::timeout(GRPC_HANDSHAKE_TIMEOUT, handshake).await
                {
                    let _ = ready.send(io).await;
                }
            });
        }
    });
    let guard = AbortOnDrop(accepting);
    futures_util::stream::poll_fn(move |cx| {
        let _ = &guard;
        accepted.poll_recv(cx).map(|io| io.map(Ok))
    })
}

/// Aborts the accepting task when tonic drops the stream (at shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn handshake(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    remote: SocketAddr,
    what: &'static str,
    metrics: &Metrics,
) -> Option<GrpcIo> {
    let mut first = [0u8; 1];
    if let Ok(1) = tcp.peek(&mut first).await {
        if first[0] != TLS_HANDSHAKE_RECORD {
            metrics.count_close(CloseReason::plaintext_on_tls_port);
            warn!(%remote, listener = what, "closing connection: plain text on a TLS port");
            return None;
        }
    }
    match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
        Ok(stream) => Some(GrpcIo::Tls(Box::new(stream), remote)),
        Err(err) => {
            metrics.count_close(CloseReason::tls_failed);
            warn!(%remote, listener = what, error = %err, "closing connection: TLS failed");
            None
        }
    }
}

/// Dials a peer over mutual TLS, expecting its certificate to name member
/// `node`: tonic's connector for a peer's channel.
#[derive(Debug, Clone)]
pub(crate) struct PeerDialer {
    pub(crate) tls: Arc<Tls>,
    pub(crate) node: u64,
    /// Shared by the dialers of one server.
    pub(crate) quiet: Arc<Quiet<u64>>,
}

impl tonic::codegen::Service<tonic::codegen::http::Uri> for PeerDialer {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(80);
            let tcp = TcpStream::connect((host, port)).await?;
            let _ = tcp.set_nodelay(true);
            let Some(config) = dialer.tls.current().peer_client.clone() else {
                return Err(io::Error::other("no authority for peers is configured"));
            };
            let expected = dialer.tls.peer_name(dialer.node);
            let name = ServerName::try_from(expected.clone())
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
            match tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
            {
                Ok(stream) => Ok(hyper_util::rt::TokioIo::new(stream)),
                Err(err) => {
                    dialer.tls.metrics.peers_refused.inc();
                    if dialer.quiet.should_log(dialer.node) {
                        warn!(server = dialer.node, address = %uri, expected_name = %expected,
                            error = %err, "refusing a peer: TLS with it failed");
                    }
                    Err(err)
                }
            }
        })
    }
}

/// Logs at most one line per caller (or peer) per period, so a peer
/// retrying every heartbeat does not flood the log.
#[derive(Debug)]
pub(crate) struct Quiet<K = SocketAddr> {
    last: Mutex<std::collections::HashMap<K, std::time::Instant>>,
}

impl<K> Default for Quiet<K> {
    fn default() -> Self {
        Quiet {
            last: Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq + std::fmt::Debug> Quiet<K> {
    /// Whether to log about `remote` now.
    pub(crate) fn should_log(&self, remote: K) -> bool {
        const EVERY: Duration = Duration::from_secs(10);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if last
            .get(&remote)
            .is_some_and(|then| now.duration_since(*then) < EVERY)
        {
            debug!(?remote, "refused again");
            return false;
        }
        last.retain(|_, then| now.duration_since(*then) < EVERY);
        last.insert(remote, now);
        true
    }
}
