//! TLS: the right CA connects and keeps its session; a certificate that
//! does not verify (wrong CA, expired, wrong name), a server wanting a
//! client certificate we do not have, and a client certificate the server
//! refuses each end in their typed error, at once and without retrying as
//! after a lost connection.
//!
//! Certificates are made in the test (session-testkit, rcgen). The first
//! tests run against session-server with TLS on its listeners (a single
//! server, and a three-member cluster with mutual TLS between peers). The
//! rest use a TLS front made here with rustls (`TlsFront`), which makes the
//! handshake and then forwards to a plain session-server (or to nothing):
//! faults the server does not make on demand (a certificate replaced under
//! a live session, TLS 1.2 only) are checked on the client's side there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use session_client::{Client, Error, State, TlsConfig, TlsConfigError, TlsFailure};
use session_testkit::{Authority, Leaf, Pem};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::{
    self, MAX_TIMEOUT, MIN_TIMEOUT, PATIENCE, SLACK, start, state_within, test_config,
};

/// How soon a TLS failure must end `connect()`: one handshake on
/// 127.0.0.1, no retry, no session timeout waited out.
const PROMPT: Duration = Duration::from_secs(1);

/// The names the servers' certificates carry.
const SERVER_NAMES: [&str; 3] = ["server-1", "localhost", "127.0.0.1"];

/// A new authority, with a server certificate for [`SERVER_NAMES`].
fn authority() -> (Authority, Pem) {
    named_authority("session-client test CA")
}

/// A new authority called `name`, with a server certificate for
/// [`SERVER_NAMES`].
fn named_authority(name: &str) -> (Authority, Pem) {
    let authority = Authority::new(name).expect("an authority");
    let server = authority
        .issue(&Leaf::server(&SERVER_NAMES))
        .expect("a server certificate");
    (authority, server)
}

/// Trusts `authority`.
fn trusting(authority: &Authority) -> TlsConfig {
    TlsConfig::from_ca_pem(authority.cert_pem()).expect("the CA parses")
}

/// Which TLS versions a front speaks.
#[derive(Debug, Clone, Copy)]
enum Versions {
    Both,
    Tls12,
}

/// The rustls server configuration of a front: `identity`, client
/// certificates required when `client_ca` is given.
fn server_config(
    identity: &Pem,
    client_ca: Option<&str>,
    versions: Versions,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match versions {
        Versions::Both => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Versions::Tls12 => &[&rustls::version::TLS12],
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.expect("CA PEM")).expect("a CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = CertificateDer::pem_slice_iter(identity.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).expect("key PEM");
    Arc::new(
        builder
            .with_single_cert(chain, key)
            .expect("certificate and key"),
    )
}

/// Certificates written into a scratch directory: an authority, and what
/// it signed.
struct Pki {
    dir: Scratch,
    authority: Authority,
    ca: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = Scratch::new(name);
        let authority = Authority::new(name).expect("an authority");
        let ca = dir.0.join("ca.pem");
        session_testkit::write(&ca, &authority.cert_pem()).expect("CA written");
        Pki { dir, authority, ca }
    }

    fn issue(&self, leaf: &Leaf, stem: &str) -> session_testkit::Files {
        self.authority
            .issue(leaf)
            .expect("a certificate")
            .write(&self.dir.0, stem)
            .expect("certificate written")
    }

    /// Trusts this authority, from its file.
    fn client(&self) -> TlsConfig {
        TlsConfig::from_ca_file(&self.ca).expect("the CA file loads")
    }
}

/// A session-server with TLS on its listeners: `server` its certificate,
/// client certificates required when `client_ca` is given.
async fn tls_server(
    server: &session_testkit::Files,
    client_ca: Option<&PathBuf>,
) -> session_server::Server {
    let mut config = test_config();
    config.tls = Some(session_server::TlsConfig {
        client_ca: client_ca.cloned(),
        ..session_server::TlsConfig::new(&server.cert, &server.key)
    });
    session_server::Server::start(config)
        .await
        .expect("a TLS server starts")
}

/// `connect()` to `servers` with `tls`, expected to fail at once: the error
/// (asserted to be a TLS failure with `server`), and how long it took.
async fn refused_by(servers: &str, tls: TlsConfig, server: SocketAddr) -> (TlsFailure, Duration) {
    let (error, took) = refused(servers, tls).await;
    eprintln!("{servers}: {error} after {took:?} (bound {PROMPT:?})");
    assert!(
        took <= PROMPT,
        "{servers}: after {took:?}, bound {PROMPT:?}"
    );
    assert!(error.is_terminal() && !error.is_retryable());
    match error {
        Error::Tls {
            server: named,
            reason,
        } => {
            assert_eq!(named, server.to_string(), "names the server");
            (reason, took)
        }
        other => panic!("{servers}: expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn the_right_ca_holds_a_session_over_tls() {
    let pki = Pki::new("holds");
    let files = pki.issue(&Leaf::server(&SERVER_NAMES), "server-1");
    let server = tls_server(&files, None).await;
    let addr = server.local_addr();
    let client = Client::builder()
        .servers(format!("tls://{addr}"))
        .tls(pki.client())
        .session_timeout(MIN_TIMEOUT)
        .connect_timeout(PATIENCE)
        .rng_seed(support::seed())
        .connect()
        .await
        .expect("connects over TLS");
    assert_eq!(client.server(), Some(addr));
    let id = client.session_id();
    let mut events = client.events();
    client
        .create("/held", b"", session_client::CreateMode::Ephemeral)
        .await
        .expect("an ephemeral over TLS");
    // Data near the largest the server takes, and back: written over
    // several socket writes through rustls.
    let large = vec![7u8; 500 * 1000];
    client
        .create("/large", &large, session_client::CreateMode::Persistent)
        .await
        .expect("a large write over TLS");
    let (data, _) = client.get("/large").await.expect("a large read over TLS");
    assert_eq!(data.len(), large.len());

    // Five session timeouts: only the pings keep it.
    let held = MIN_TIMEOUT * 5;
    let quiet = tokio::time::timeout(held, futures_util::StreamExt::next(&mut events)).await;
    assert!(quiet.is_err(), "no state change while held: {quiet:?}");
    assert_eq!(*client.state().borrow(), State::Connected);
    assert_eq!(client.session_id(), id);
    assert!(client.exists("/held").await.expect("exists").is_some());
    eprintln!("held the session {held:?} with T {MIN_TIMEOUT:?}");
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_certificate_fault_is_refused_with_its_reason() {
    let pki = Pki::new("faults");
    let (other, _) = named_authority("another CA");
    let good = pki.issue(&Leaf::server(&SERVER_NAMES), "server-1");

    let server = tls_server(&good, None).await;
    let addr = server.local_addr();
    let servers = format!("tls://{addr}");
    let (reason, _) = refused_by(&servers, trusting(&other), addr).await;
    assert_eq!(reason, TlsFailure::UnknownIssuer, "wrong CA");
    let tls = pki.client().server_name("server-2").expect("a DNS name");
    let (reason, _) = refused_by(&servers, tls, addr).await;
    assert!(
        matches!(&reason, TlsFailure::NotValidForName { name, .. } if name == "server-2"),
        "wrong name: {reason:?}"
    );
    // Dialed as localhost, which the certificate names: it verifies.
    let client = Client::builder()
        .servers(format!("tls://localhost:{}", addr.port()))
        .tls(pki.client())
        .session_timeout(MAX_TIMEOUT)
        .rng_seed(support::seed())
        .connect()
        .await
        .expect("localhost is named");
    client.close().await;
    server.shutdown().await;

    let expired = pki.issue(&Leaf::server(&SERVER_NAMES).expired(), "expired");
    let server = tls_server(&expired, None).await;
    let addr = server.local_addr();
    let (reason, _) = refused_by(&format!("tls://{addr}"), pki.client(), addr).await;
    assert_eq!(reason, TlsFailure::Expired, "expired");
    assert_eq!(server.session_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_requiring_client_certificates_refuses_a_client_without_one() {
    let pki = Pki::new("mutual");
    let files = pki.issue(&Leaf::server(&SERVER_NAMES), "server-1");
    let server = tls_server(&files, Some(&pki.ca)).await;
    let addr = server.local_addr();
    let servers = format!("tls://{addr}");
    let (reason, _) = refused_by(&servers, pki.client(), addr).await;
    assert_eq!(reason, TlsFailure::ClientCertificateRequired);

    // A certificate of another authority is refused too.
    let stranger = Pki::new("stranger");
    let theirs = stranger.issue(&Leaf::client("intruder"), "intruder");
    let tls = pki
        .client()
        .client_cert_files(&theirs.cert, &theirs.key)
        .expect("certificate and key");
    let (reason, _) = refused_by(&servers, tls, addr).await;
    assert!(
        matches!(reason, TlsFailure::ClientCertificateRefused { .. }),
        "{reason:?}"
    );

    // With one of the right authority, it connects.
    let ours = pki.issue(&Leaf::client("session-client"), "client");
    let client = connect_tls(
        &servers,
        pki.client()
            .client_cert_files(&ours.cert, &ours.key)
            .expect("certificate and key"),
    )
    .await
    .expect("connects with a client certificate");
    client.exists("/").await.expect("a request");
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_plain_client_on_the_servers_tls_port_fails_promptly() {
    let pki = Pki::new("plain");
    let files = pki.issue(&Leaf::server(&SERVER_NAMES), "server-1");
    let server = tls_server(&files, None).await;
    let connect_timeout = Duration::from_secs(1);
    let asked = Instant::now();
    let result = Client::builder()
        .servers(server.local_addr().to_string())
        .session_timeout(MAX_TIMEOUT)
        .connect_timeout(connect_timeout)
        .rng_seed(support::seed())
        .connect()
        .await;
    let took = asked.elapsed();
    eprintln!("plain client on the server's TLS port: {result:?} after {took:?}");
    match &result {
        // The server answers plain text with a TLS alert (protocol
        // version) and closes: recognised at once, not retried.
        Err(Error::Tls {
            reason: TlsFailure::ServerRequiresTls,
            ..
        }) => assert!(took <= PROMPT, "after {took:?}, bound {PROMPT:?}"),
        other => panic!("expected a prompt TLS failure: {other:?}"),
    }
    // The server keeps serving TLS clients.
    let client = Client::builder()
        .servers(format!("tls://{}", server.local_addr()))
        .tls(pki.client())
        .session_timeout(MAX_TIMEOUT)
        .rng_seed(support::seed())
        .connect()
        .await
        .expect("a TLS client still connects");
    client.close().await;
    server.shutdown().await;
}

/// A client of `servers` over TLS with `tls`, with the tests' session
/// timeout and seed.
async fn connect_tls(servers: &str, tls: TlsConfig) -> Result<Client, Error> {
    support::builder_of(servers, MAX_TIMEOUT)
        .tls(tls)
        .connect()
        .await
}

/// A port free now (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Member `id`'s configuration in a TLS cluster whose peers listen on
/// `peers`, with the certificates of `files`.
fn member_config(
    dir: &std::path::Path,
    files: &session_testkit::ClusterFiles,
    id: u16,
    peers: &[(u16, u16)],
) -> session_server::ServerConfig {
    let mut config = test_config();
    config.server_id = session_core::ServerId::new(u64::from(id)).expect("server id");
    config.storage = session_server::Storage::Disk(dir.join(format!("node-{id}")));
    config.timeouts = session_core::TimeoutPolicy::new(Duration::from_millis(100))
        .and_then(|policy| policy.with_bounds(Duration::from_millis(400), Duration::from_secs(10)))
        .expect("valid policy");
    config.cluster = session_server::ClusterConfig {
        peers: peers
            .iter()
            .map(|(id, port)| {
                (
                    session_core::ServerId::new(u64::from(*id)).expect("server id"),
                    format!("127.0.0.1:{port}"),
                )
            })
            .collect(),
        peer_listen: None,
        heartbeat: Duration::from_millis(50),
        election_timeout: Duration::from_millis(250),
    };
    let own = &files.servers[usize::from(id - 1)];
    config.tls = Some(session_server::TlsConfig {
        peer_ca: Some(files.ca.clone()),
        ..session_server::TlsConfig::new(&own.cert, &own.key)
    });
    config
}

/// Three members of a TLS cluster, started together (on a peer port taken
/// meanwhile, the whole cluster again on new ones).
async fn tls_cluster(dir: &std::path::Path) -> Vec<session_server::Server> {
    let files = session_testkit::write_cluster(&dir.join("certs"), 3).expect("certificates");
    for attempt in 0..5 {
        let peers: Vec<(u16, u16)> = (1..=3).map(|id| (id, free_port())).collect();
        let data = dir.join(format!("attempt-{attempt}"));
        let starts = (1..=3)
            .map(|id| session_server::Server::start(member_config(&data, &files, id, &peers)));
        let started = futures_util::future::join_all(starts).await;
        if started.iter().all(Result::is_ok) {
            return started.into_iter().flatten().collect();
        }
        for server in started.into_iter().flatten() {
            server.shutdown().await;
        }
    }
    panic!("the cluster did not start in five attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_fails_over_between_cluster_members_keeping_its_session() {
    let dir = Scratch::new("cluster");
    let mut members = tls_cluster(&dir.0).await;
    let ca = dir.0.join("certs").join("ca.pem");
    let servers = format!(
        "tls://{},{}",
        members[0].local_addr(),
        members[1].local_addr()
    );
    let timeout = Duration::from_secs(4);
    let client = Client::builder()
        .servers(&servers)
        .tls(TlsConfig::from_ca_file(&ca).expect("the cluster's CA"))
        .session_timeout(timeout)
        .connect_timeout(PATIENCE)
        .rng_seed(support::seed())
        .connect()
        .await
        .expect("connects to the TLS cluster");
    let id = client.session_id();
    client
        .create("/member", b"", session_client::CreateMode::Ephemeral)
        .await
        .expect("an ephemeral");
    let first = client.server().expect("connected");
    let mut events = client.events();

    let down = members
        .iter()
        .position(|member| member.local_addr() == first)
        .expect("one of the two");
    let stopping = Instant::now();
    members.remove(down).shutdown().await;
    let (state, _) = state_within(&mut events, stopping, PATIENCE).await;
    assert_eq!(state, State::Suspended);
    let (state, after) = state_within(&mut events, stopping, timeout).await;
    assert_eq!(state, State::Connected);
    eprintln!("reconnected over TLS {after:?} after the shutdown (T {timeout:?})");
    assert_eq!(client.session_id(), id, "same session");
    let second = client.server().expect("connected");
    assert_ne!(second, first, "on the other member");
    let (_, stat) = client.get("/member").await.expect("the ephemeral survived");
    assert_eq!(stat.ephemeral_owner, id.as_u64());
    client.close().await;
    for member in members {
        member.shutdown().await;
    }
}

/// A TLS front on 127.0.0.1: makes the TLS handshake with each client, then
/// forwards to `backend` (a plain session-server), or holds the connection
/// open when there is none. Its certificate can be replaced, and every
/// connection through it cut.
struct TlsFront {
    addr: SocketAddr,
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
    /// TLS handshakes completed.
    handshakes: Arc<AtomicUsize>,
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    async fn start(config: Arc<rustls::ServerConfig>, backend: Option<SocketAddr>) -> TlsFront {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
        let addr = listener.local_addr().expect("front address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let config = Arc::new(Mutex::new(config));
        let (cuts, _) = watch::channel(0u64);
        let task = {
            let accepted = Arc::clone(&accepted);
            let handshakes = Arc::clone(&handshakes);
            let config = Arc::clone(&config);
            let cuts = cuts.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(
                        &config.lock().expect("front config"),
                    ));
                    let handshakes = Arc::clone(&handshakes);
                    let mut cut = cuts.subscribe();
                    tokio::spawn(async move {
                        // A failed handshake drops the connection after
                        // rustls' alert.
                        let Ok(mut tls) = acceptor.accept(inbound).await else {
                            return;
                        };
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        match backend {
                            Some(backend) => {
                                let Ok(mut outbound) = TcpStream::connect(backend).await else {
                                    return;
                                };
                                let _ = outbound.set_nodelay(true);
                                tokio::select! {
                                    _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound) => {}
                                    _ = cut.changed() => {}
                                }
                            }
                            None => {
                                let mut sink = tokio::io::sink();
                                tokio::select! {
                                    _ = tokio::io::copy(&mut tls, &mut sink) => {}
                                    _ = cut.changed() => {}
                                }
                            }
                        }
                    });
                }
            })
        };
        TlsFront {
            addr,
            accepted,
            handshakes,
            config,
            cuts,
            task,
        }
    }

    /// Handshakes with this configuration from now on.
    fn set_config(&self, config: Arc<rustls::ServerConfig>) {
        *self.config.lock().expect("front config") = config;
    }

    /// Closes every connection through the front.
    fn cut(&self) {
        self.cuts.send_modify(|generation| *generation += 1);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `connect()` to `servers` with `tls`, expected to fail: the error and how
/// long it took.
async fn refused(servers: &str, tls: TlsConfig) -> (Error, Duration) {
    let asked = Instant::now();
    let result = Client::builder()
        .servers(servers)
        .tls(tls)
        .session_timeout(MAX_TIMEOUT)
        .connect_timeout(PATIENCE)
        .rng_seed(support::seed())
        .connect()
        .await;
    let took = asked.elapsed();
    match result {
        Ok(_) => panic!("connected to {servers}"),
        Err(error) => (error, took),
    }
}

/// Asserts that `error` is a TLS failure with `server` for `reason`, that
/// it came within [`PROMPT`], and that the front saw one attempt only.
fn assert_refused(
    what: &str,
    (error, took): (Error, Duration),
    front: &TlsFront,
    expected: &TlsFailure,
) {
    eprintln!("{what}: {error} after {took:?} (bound {PROMPT:?})");
    match &error {
        Error::Tls { server, reason } => {
            assert_eq!(reason, expected, "{what}: {error}");
            assert_eq!(server, &front.addr.to_string(), "{what}: names the server");
        }
        other => panic!("{what}: expected a TLS failure, got {other:?}"),
    }
    assert!(error.is_terminal() && !error.is_retryable(), "{what}");
    assert!(took <= PROMPT, "{what}: after {took:?}, bound {PROMPT:?}");
    assert_eq!(front.accepted(), 1, "{what}: not retried");
    assert_eq!(front.handshakes(), 0, "{what}: no handshake completed");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_an_unknown_issuer() {
    let (_, server) = authority();
    // Another CA by another name, and another CA by the same name (made
    // again: the server's chain names it, the signature does not verify).
    for other in ["another CA", "session-client test CA"] {
        let (other, _) = named_authority(other);
        let front = TlsFront::start(server_config(&server, None, Versions::Both), None).await;
        let outcome = refused(&format!("tls://{}", front.addr), trusting(&other)).await;
        assert_refused("wrong CA", outcome, &front, &TlsFailure::UnknownIssuer);
    }
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_as_expired() {
    let (authority, _) = authority();
    let expired = authority
        .issue(&Leaf::server(&SERVER_NAMES).expired())
        .expect("an expired certificate");
    let front = TlsFront::start(server_config(&expired, None, Versions::Both), None).await;
    let outcome = refused(&format!("tls://{}", front.addr), trusting(&authority)).await;
    assert_refused("expired", outcome, &front, &TlsFailure::Expired);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_with_the_name() {
    let (authority, _) = authority();
    let elsewhere = authority
        .issue(&Leaf::server(&["server-9", "10.9.9.9"]))
        .expect("a certificate for another host");
    let front = TlsFront::start(server_config(&elsewhere, None, Versions::Both), None).await;
    // Dialed by IP address: verified against the certificate's IP addresses.
    let outcome = refused(&format!("tls://{}", front.addr), trusting(&authority)).await;
    let (error, _) = &outcome;
    assert!(
        error
            .to_string()
            .contains("certificate not valid for name 127.0.0.1"),
        "{error}"
    );
    assert_refused(
        "wrong name (IP)",
        outcome,
        &front,
        &TlsFailure::NotValidForName {
            name: "127.0.0.1".into(),
            presented: vec!["server-9".into(), "10.9.9.9".into()],
        },
    );

    // A configured server name is verified instead of the host dialed.
    let server = authority
        .issue(&Leaf::server(&SERVER_NAMES))
        .expect("a server certificate");
    let front = TlsFront::start(server_config(&server, None, Versions::Both), None).await;
    let tls = trusting(&authority)
        .server_name("server-2")
        .expect("a DNS name");
    let outcome = refused(&format!("tls://{}", front.addr), tls).await;
    assert_refused(
        "wrong name (configured)",
        outcome,
        &front,
        &TlsFailure::NotValidForName {
            name: "server-2".into(),
            presented: SERVER_NAMES.iter().map(|name| (*name).to_owned()).collect(),
        },
    );
}

#[tokio::test]
async fn a_server_requiring_a_client_certificate_we_lack_is_named() {
    let (authority, server) = authority();
    // TLS 1.3 reports the refusal on the client's first read after its
    // end of the handshake; TLS 1.2 during the handshake.
    for versions in [Versions::Both, Versions::Tls12] {
        let config = server_config(&server, Some(&authority.cert_pem()), versions);
        let front = TlsFront::start(config, None).await;
        let outcome = refused(&format!("tls://{}", front.addr), trusting(&authority)).await;
        let (error, _) = &outcome;
        assert!(
            error
                .to_string()
                .contains("the server requires a client certificate"),
            "{error}"
        );
        assert_eq!(front.accepted(), 1, "{versions:?}: not retried");
        match outcome {
            (
                Error::Tls {
                    reason: TlsFailure::ClientCertificateRequired,
                    ..
                },
                took,
            ) => {
                eprintln!("{versions:?}: refused after {took:?} (bound {PROMPT:?})");
                assert!(took <= PROMPT, "{versions:?}: after {took:?}");
            }
            (other, _) => panic!("{versions:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_certificate_the_server_does_not_trust_is_refused() {
    let (authority, server) = authority();
    // By another name (the server answers UnknownCA) and by the same name
    // (the signature does not verify: DecryptError).
    for stranger in ["another CA", "session-client test CA"] {
        let (stranger, _) = named_authority(stranger);
        let ours = stranger
            .issue(&Leaf::client("intruder"))
            .expect("a client certificate");
        for versions in [Versions::Both, Versions::Tls12] {
            let config = server_config(&server, Some(&authority.cert_pem()), versions);
            let front = TlsFront::start(config, None).await;
            let tls = trusting(&authority)
                .client_cert_pem(&ours.cert, &ours.key)
                .expect("certificate and key");
            let (error, took) = refused(&format!("tls://{}", front.addr), tls).await;
            eprintln!("{versions:?}: {error} after {took:?} (bound {PROMPT:?})");
            assert!(
                matches!(
                    &error,
                    Error::Tls {
                        reason: TlsFailure::ClientCertificateRefused { .. },
                        ..
                    }
                ),
                "{versions:?}: {error:?}"
            );
            assert!(took <= PROMPT, "{versions:?}: after {took:?}");
            assert_eq!(front.accepted(), 1, "{versions:?}: not retried");
        }
    }
}

#[tokio::test]
async fn tls_without_a_ca_is_refused_before_dialing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let asked = Instant::now();
    let result = Client::builder()
        .servers(format!("tls://{addr}"))
        .connect()
        .await;
    assert!(
        matches!(result, Err(Error::TlsConfig(TlsConfigError::MissingCa))),
        "{result:?}"
    );
    let error = result.expect_err("refused");
    assert!(error.to_string().contains("no CA to trust"), "{error}");
    assert!(asked.elapsed() < SLACK, "at once");
    // Nothing was dialed.
    let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
    assert!(accepted.is_err(), "no connection attempt");
}

#[tokio::test]
async fn ca_files_that_cannot_be_used_are_named() {
    let dir = Scratch::new("ca-files");
    let missing = dir.0.join("missing.pem");
    let error = TlsConfig::from_ca_file(&missing).expect_err("no such file");
    assert!(
        matches!(&error, TlsConfigError::Read { path, .. } if *path == missing),
        "{error:?}"
    );
    let (authority, _) = authority();
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, authority.cert_pem()).expect("written");
    let no_key = dir.0.join("no.key");
    std::fs::write(&no_key, authority.cert_pem()).expect("written");
    let error = TlsConfig::from_ca_file(&ca)
        .expect("a CA")
        .client_cert_files(&ca, &no_key)
        .expect_err("no key");
    assert_eq!(
        error.to_string(),
        format!("{} holds no private key", no_key.display())
    );
    // One bundle, several CAs: each is trusted.
    let (second, server) = self::authority();
    let bundle = format!("{}{}", authority.cert_pem(), second.cert_pem());
    let tls = TlsConfig::from_ca_pem(bundle).expect("a bundle");
    let plain = start().await;
    let front = TlsFront::start(
        server_config(&server, None, Versions::Both),
        Some(plain.local_addr()),
    )
    .await;
    let client = connect_tls(&format!("tls://{}", front.addr), tls)
        .await
        .expect("the second CA of the bundle is trusted");
    client.close().await;
    plain.shutdown().await;
}

#[tokio::test]
async fn a_plain_client_on_a_tls_port_fails_at_once() {
    let (_, server) = authority();
    let front = TlsFront::start(server_config(&server, None, Versions::Both), None).await;
    let asked = Instant::now();
    let result = Client::builder()
        .servers(front.addr.to_string())
        .session_timeout(MAX_TIMEOUT)
        .connect_timeout(PATIENCE)
        .rng_seed(support::seed())
        .connect()
        .await;
    let took = asked.elapsed();
    eprintln!("plain client on a TLS port: {result:?} after {took:?} (bound {PROMPT:?})");
    match result {
        Err(Error::Tls {
            reason: TlsFailure::ServerRequiresTls,
            ..
        }) => {}
        other => panic!("expected the server to be recognised as TLS: {other:?}"),
    }
    assert!(took <= PROMPT, "after {took:?}");
    assert_eq!(front.accepted(), 1, "not retried");
}

#[tokio::test]
async fn a_failing_server_is_skipped_for_one_that_verifies() {
    let (authority, server) = authority();
    let (other, wrong) = self::authority();
    drop(other);
    let plain = start().await;
    let bad = TlsFront::start(
        server_config(&wrong, None, Versions::Both),
        Some(plain.local_addr()),
    )
    .await;
    let good = TlsFront::start(
        server_config(&server, None, Versions::Both),
        Some(plain.local_addr()),
    )
    .await;
    // Random seeds: clients until one has tried the bad server first.
    let mut tried_bad_first = false;
    for _ in 0..20 {
        let before = bad.accepted();
        let asked = Instant::now();
        let client = Client::builder()
            .servers(format!("tls://{},{}", bad.addr, good.addr))
            .tls(trusting(&authority))
            .session_timeout(MAX_TIMEOUT)
            .connect_timeout(PATIENCE)
            .rng_seed(support::seed())
            .connect()
            .await
            .expect("connects through the server that verifies");
        let took = asked.elapsed();
        assert!(
            took <= MAX_TIMEOUT / 10 + SLACK,
            "connected after {took:?}, bound T/10 + {SLACK:?}"
        );
        assert_eq!(client.server(), Some(good.addr));
        client.close().await;
        if bad.accepted() > before {
            eprintln!("tried the bad server first, connected after {took:?}");
            tried_bad_first = true;
            break;
        }
    }
    assert!(tried_bad_first, "no client tried the bad server first");
    plain.shutdown().await;
}

#[tokio::test]
async fn a_session_ends_with_the_tls_error_once_every_server_fails() {
    let (authority, server) = authority();
    let plain = start().await;
    let front = TlsFront::start(
        server_config(&server, None, Versions::Both),
        Some(plain.local_addr()),
    )
    .await;
    let client = Client::builder()
        .servers(format!("tls://{}", front.addr))
        .tls(trusting(&authority))
        .session_timeout(MAX_TIMEOUT)
        .connect_timeout(PATIENCE)
        .rng_seed(support::seed())
        .connect()
        .await
        .expect("connects over TLS");
    client.exists("/").await.expect("a request over TLS");
    let mut events = client.events();

    // The server's certificate is replaced by an expired one, and the
    // connection drops: the reconnection fails verification.
    let expired = authority
        .issue(&Leaf::server(&SERVER_NAMES).expired())
        .expect("an expired certificate");
    front.set_config(server_config(&expired, None, Versions::Both));
    let cut = Instant::now();
    front.cut();
    let (state, _) = state_within(&mut events, cut, SLACK).await;
    assert_eq!(state, State::Suspended);
    // The first attempt after a loss starts at once; the session would
    // expire only after 4/3·T.
    let (state, after) = state_within(&mut events, cut, PROMPT).await;
    assert_eq!(state, State::Closed);
    eprintln!("Closed {after:?} after the cut (bound {PROMPT:?}, expiry 4/3·T)");
    let error = client.exists("/").await.expect_err("the session is over");
    assert!(
        matches!(
            &error,
            Error::Tls {
                reason: TlsFailure::Expired,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_terminal());
    assert_eq!(
        client.wait_connected(SLACK).await.expect_err("over"),
        error,
        "wait_connected says why"
    );
    plain.shutdown().await;
}

/// A directory removed at drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "session-client-tls-{name}-{}-{}",
            std::process::id(),
            support::seed()
        ));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs session-cli with `args`, within [`PATIENCE`].
#[cfg(feature = "cli")]
async fn cli(args: &[&str]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-cli"));
    command
        .args(args)
        .env_remove("SESSION_ADMIN_TOKEN")
        .kill_on_drop(true);
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("session-cli finishes in time")
        .expect("session-cli runs")
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cli_speaks_tls_to_the_session_and_the_admin_with_a_token() {
    let pki = Pki::new("cli");
    let files = pki.issue(&Leaf::server(&SERVER_NAMES), "server-1");
    let token = pki.dir.0.join("admin.token");
    std::fs::write(&token, "s3cret-token\n").expect("token written");
    let mut config = test_config();
    config.tls = Some(session_server::TlsConfig::new(&files.cert, &files.key));
    config.admin_token_file = Some(token.clone());
    let server = session_server::Server::start(config)
        .await
        .expect("a TLS server starts");
    let servers = format!("tls://{}", server.local_addr());
    let admin = server.admin_addr().expect("admin enabled").to_string();
    let https = format!("https://{admin}");
    let ca = pki.ca.to_string_lossy().into_owned();
    let token = token.to_string_lossy().into_owned();
    let text = |output: &std::process::Output| {
        assert!(
            output.status.success(),
            "failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned()
    };

    let base = [
        "--servers",
        &servers,
        "--tls-ca",
        &ca,
        "--timeout-ms",
        "2000",
    ];
    let created = cli(&[&base[..], &["create", "/cli", "over-tls"]].concat()).await;
    assert_eq!(text(&created), "/cli");
    assert_eq!(
        text(&cli(&[&base[..], &["get", "/cli"]].concat()).await),
        "over-tls"
    );

    // The admin over TLS (a bare host:port with --tls-ca, and https://),
    // with the token from its file.
    for address in [admin.as_str(), https.as_str()] {
        let stats = cli(&[
            &base[..],
            &[
                "--admin",
                address,
                "--admin-token-file",
                &token,
                "--json",
                "admin",
                "stats",
            ],
        ]
        .concat())
        .await;
        assert!(text(&stats).starts_with('{'), "{address}: JSON stats");
    }
    // Without the token the admin refuses.
    let refused = cli(&[&base[..], &["--admin", &admin, "admin", "stats"]].concat()).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    // tls:// without --tls-ca says what is missing.
    let missing = cli(&["--servers", &servers, "get", "/cli"]).await;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("--tls-ca"), "{stderr}");
    // https:// without --tls-ca too.
    let missing = cli(&["--admin", &https, "admin", "stats"]).await;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("--tls-ca"), "{stderr}");
    server.shutdown().await;
}
