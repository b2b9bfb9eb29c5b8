//! TLS on the listeners, with certificates made in the test (rcgen, through
//! session-testkit): sessions over TLS on both client protocols, what is
//! refused and how fast, certificate rotation under a live session, and
//! the admin's token and client certificates.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use session_server::{CloseReason, Server, TlsConfig};
use session_testkit::{Authority, Files, Leaf};
use session_wire::admin::v1::{ExpireSessionRequest, StatsRequest, admin_client::AdminClient};
use session_wire::v1::NodeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::support::{Raw, Scratch, granted, new_session, ping_for, start_with};

/// The session timeout of these tests' sessions.
const T: Duration = Duration::from_millis(600);
/// How often the server looks at its certificate files in these tests.
const POLL: Duration = Duration::from_millis(100);
/// "At once": a refused connection is closed within this, far below the
/// handshake timeout (10 s).
const AT_ONCE: Duration = Duration::from_millis(500);

/// A certificate authority and what it signed, written under a scratch dir.
struct Pki {
    dir: Scratch,
    authority: Authority,
    ca: std::path::PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = Scratch::new(name);
        let authority = Authority::new(name).expect("authority");
        let ca = dir.0.join("ca.pem");
        session_testkit::write(&ca, &authority.cert_pem()).expect("write ca");
        Pki { dir, authority, ca }
    }

    fn issue(&self, leaf: &Leaf, stem: &str) -> Files {
        self.authority
            .issue(leaf)
            .expect("issue")
            .write(&self.dir.0, stem)
            .expect("write")
    }

    fn server(&self) -> Files {
        self.issue(&Leaf::server(&["server-1", "localhost"]), "server-1")
    }

    fn tls(&self, server: &Files) -> TlsConfig {
        TlsConfig {
            poll: POLL,
            ..TlsConfig::new(&server.cert, &server.key)
        }
    }
}

/// A TLS connection to a server.
pub(crate) type TlsClientStream = TlsStream<TcpStream>;

/// A rustls client trusting `ca`, showing `identity` if given.
pub(crate) fn client_config(ca: &Path, identity: Option<&Files>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca pem")).expect("ca usable");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(files) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&files.cert)
                    .expect("cert file")
                    .collect::<Result<_, _>>()
                    .expect("cert pem"),
                PrivateKeyDer::from_pem_file(&files.key).expect("key pem"),
            )
            .expect("client identity"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Connects to `addr` over TLS, expecting the name `localhost` (which
/// every server certificate of these tests carries).
pub(crate) async fn dial(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsClientStream> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Opens a v1 session over TLS.
async fn open_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> (Raw<TlsStream<TcpStream>>, session_wire::v1::SessionGranted) {
    let stream = dial(addr, config).await.expect("TLS handshake");
    let mut raw = Raw::speaking_over(stream);
    let reply = raw.handshake(new_session(T)).await;
    (raw, granted(reply))
}

/// Whether a TLS client is refused: its handshake fails, or (TLS 1.3,
/// where the server judges the client's certificate after the client has
/// finished) its first read ends in an alert or the end of the stream.
async fn refused(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> String {
    let mut stream = match dial(addr, config).await {
        Err(err) => return err.to_string(),
        Ok(stream) => stream,
    };
    let _ = stream.write_all(b"\0\0\0\0").await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(AT_ONCE, stream.read(&mut buf)).await {
        Ok(Err(err)) => err.to_string(),
        Ok(Ok(0)) => "closed".to_owned(),
        Ok(Ok(n)) => panic!("the server answered {n} bytes to a client it should refuse"),
        Err(_) => panic!("the server neither refused nor answered within {AT_ONCE:?}"),
    }
}

/// A v1 session over TLS: the handshake, pings across more than T (the
/// session is kept alive by them), and a write read back.
#[tokio::test]
async fn a_session_is_held_over_tls_on_the_v1_port() {
    let pki = Pki::new("tls-v1");
    let server_files = pki.server();
    let server = start_with(|config| config.tls = Some(pki.tls(&server_files))).await;
    let (mut raw, session) = open_tls(server.local_addr(), client_config(&pki.ca, None)).await;
    assert_eq!(session.negotiated_timeout_ms, T.as_millis() as u32);
    ping_for(&mut raw, T, T * 3).await;
    raw.create("/over-tls", b"secret", NodeKind::Persistent)
        .await
        .expect("create");
    let (data, _) = raw.get("/over-tls", false).await.expect("get");
    assert_eq!(data, b"secret".to_vec());
    assert_eq!(server.session_count(), 1);
    server.shutdown().await;
}

/// ZooKeeper's protocol over TLS (its secureClientPort): a ZooKeeper
/// connect request and reply through the TLS stream, then a ping.
#[tokio::test]
async fn the_zookeeper_port_speaks_tls() {
    let pki = Pki::new("tls-zk");
    let server_files = pki.server();
    let server = start_with(|config| config.tls = Some(pki.tls(&server_files))).await;
    let addr = server.zookeeper_addr().expect("zookeeper listener");
    let mut stream = dial(addr, client_config(&pki.ca, None))
        .await
        .expect("TLS handshake");
    // ConnectRequest (reference zookeeper-wire.md, "Connect"): protocol
    // version 0, last zxid 0, timeout, session 0, password of 16 zero bytes.
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&(T.as_millis() as i32).to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&16i32.to_be_bytes());
    body.extend_from_slice(&[0u8; 16]);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.expect("send connect");
    let length = stream.read_i32().await.expect("reply length");
    let mut reply = vec![0u8; usize::try_from(length).expect("length")];
    stream.read_exact(&mut reply).await.expect("reply");
    let timeout = i32::from_be_bytes(reply[4..8].try_into().expect("timeout"));
    let session = i64::from_be_bytes(reply[8..16].try_into().expect("session"));
    assert_eq!(timeout, T.as_millis() as i32);
    assert_ne!(session, 0, "a session was granted");
    // A ping: xid -2, type 11; the reply header carries xid -2.
    let ping = [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11];
    stream.write_all(&ping).await.expect("ping");
    let length = stream.read_i32().await.expect("pong length");
    let mut pong = vec![0u8; usize::try_from(length).expect("length")];
    stream.read_exact(&mut pong).await.expect("pong");
    assert_eq!(i32::from_be_bytes(pong[..4].try_into().expect("xid")), -2);
    assert_eq!(server.session_count(), 1);
    server.shutdown().await;
}

/// A plain-text client on the TLS port is closed at once, counted, and
/// the server goes on serving TLS clients.
#[tokio::test]
async fn plain_text_on_the_tls_port_is_closed_at_once_and_counted() {
    let pki = Pki::new("tls-plain");
    let server_files = pki.server();
    let server = start_with(|config| config.tls = Some(pki.tls(&server_files))).await;
    for addr in [server.local_addr(), server.zookeeper_addr().expect("zk")] {
        let mut plain = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        let mut hello = bytes::BytesMut::new();
        crate::support::frame(new_session(T), &mut hello);
        plain.write_all(&hello).await.expect("write");
        // A fatal protocol_version alert record, then the end of the stream.
        let mut answer = Vec::new();
        let read = tokio::time::timeout(AT_ONCE, plain.read_to_end(&mut answer)).await;
        assert!(
            matches!(read, Ok(Ok(_))),
            "closed within {AT_ONCE:?}: {read:?}"
        );
        assert_eq!(answer, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70]);
        assert!(
            started.elapsed() < AT_ONCE,
            "closed after {:?}",
            started.elapsed()
        );
    }
    let admin = server.admin_addr().expect("admin");
    let mut plain = TcpStream::connect(admin).await.expect("connect");
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(AT_ONCE, plain.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "admin: {read:?}");
    assert_eq!(
        server
            .metrics()
            .close_count(CloseReason::plaintext_on_tls_port),
        3
    );
    let (mut raw, _) = open_tls(server.local_addr(), client_config(&pki.ca, None)).await;
    raw.ping().await;
    server.shutdown().await;
}

/// TLS on a plain-text port is closed at once and counted.
#[tokio::test]
async fn tls_on_a_plain_port_is_closed_at_once_and_counted() {
    let pki = Pki::new("tls-on-plain");
    let server = start_with(|_| {}).await;
    let started = Instant::now();
    let failed = dial(server.local_addr(), client_config(&pki.ca, None)).await;
    assert!(failed.is_err(), "no TLS handshake with a plain port");
    assert!(started.elapsed() < AT_ONCE, "took {:?}", started.elapsed());
    assert_eq!(
        server.metrics().close_count(CloseReason::tls_on_plain_port),
        1
    );
    server.shutdown().await;
}

/// With a client authority, a client without a certificate, or with one
/// from another authority, is refused; one with a certificate it signed
/// gets a session.
#[tokio::test]
async fn client_certificates_are_required_when_a_client_authority_is_given() {
    let pki = Pki::new("tls-mtls");
    let other = Pki::new("tls-mtls-other");
    let server_files = pki.server();
    let client = pki.issue(&Leaf::client("app"), "client");
    let stranger = other.issue(&Leaf::client("app"), "stranger");
    let server = start_with(|config| {
        config.tls = Some(TlsConfig {
            client_ca: Some(pki.ca.clone()),
            ..pki.tls(&server_files)
        });
    })
    .await;
    let addr = server.local_addr();
    let without = refused(addr, client_config(&pki.ca, None)).await;
    assert!(
        without.contains("CertificateRequired") || without.contains("closed"),
        "{without}"
    );
    let foreign = refused(addr, client_config(&pki.ca, Some(&stranger))).await;
    assert!(
        foreign.contains("UnknownCA")
            || foreign.contains("BadCertificate")
            || foreign.contains("closed"),
        "{foreign}"
    );
    assert_eq!(server.metrics().close_count(CloseReason::tls_failed), 2);
    let (mut raw, _) = open_tls(addr, client_config(&pki.ca, Some(&client))).await;
    raw.ping().await;
    server.shutdown().await;
}

/// Certificates rotate without a restart: new files are taken within a
/// poll, for new connections, while a session opened before keeps pinging
/// over its connection; a bad new certificate is refused and the one in
/// use stays.
#[tokio::test]
async fn certificates_rotate_under_a_live_session() {
    let old = Pki::new("tls-rotate-old");
    let new = Pki::new("tls-rotate-new");
    let files = old.server();
    let server = start_with(|config| config.tls = Some(old.tls(&files))).await;
    let addr = server.local_addr();
    let (mut live, _) = open_tls(addr, client_config(&old.ca, None)).await;

    // The new authority's certificate, written over the same files.
    let replacement = new
        .authority
        .issue(&Leaf::server(&["server-1", "localhost"]))
        .expect("issue");
    session_testkit::write(&files.key, &replacement.key).expect("key");
    session_testkit::write(&files.cert, &replacement.cert).expect("cert");
    let written = Instant::now();
    while server.metrics().tls_reloads.get() == 0 {
        assert!(
            written.elapsed() < POLL * 10,
            "not reloaded within {:?}",
            POLL * 10
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The live session is untouched: it pings over its old connection
    // across more than its timeout.
    ping_for(&mut live, T, T * 2).await;
    assert_eq!(server.session_count(), 1);
    // New connections get the new certificate.
    let (mut fresh, _) = open_tls(addr, client_config(&new.ca, None)).await;
    fresh.ping().await;
    let stale = refused(addr, client_config(&old.ca, None)).await;
    assert!(stale.contains("UnknownIssuer"), "{stale}");

    // A certificate file that is not PEM: refused, the new one stays.
    std::fs::write(&files.cert, "not a certificate").expect("write");
    let err = server.reload_tls().expect_err("garbage is refused");
    assert!(
        err.to_string().contains("no usable PEM certificate"),
        "{err}"
    );
    assert!(server.metrics().tls_reloads_refused.get() >= 1);
    let (mut still, _) = open_tls(addr, client_config(&new.ca, None)).await;
    still.ping().await;
    // A key that is not the certificate's: refused too.
    session_testkit::write(&files.cert, &replacement.cert).expect("cert");
    let stranger = new.authority.issue(&Leaf::client("x")).expect("issue");
    session_testkit::write(&files.key, &stranger.key).expect("key");
    let err = server
        .reload_tls()
        .expect_err("a mismatched key is refused");
    assert!(
        err.to_string().contains(&files.cert.display().to_string()),
        "{err}"
    );
    // Through all of it, the first session's connection stayed.
    live.ping().await;
    server.shutdown().await;
}

/// A server whose certificate files do not load does not start, and says
/// which file.
#[tokio::test]
async fn a_server_with_unloadable_certificates_does_not_start() {
    let pki = Pki::new("tls-bad-start");
    let missing = pki.dir.0.join("missing.pem");
    let config = TlsConfig::new(&missing, &missing);
    let mut server_config = crate::support::test_config();
    server_config.tls = Some(config);
    let err = Server::start(server_config).await.expect_err("refused");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

/// The admin beyond loopback without a token or client certificates:
/// the server refuses to start and names the flags that would do.
#[tokio::test]
async fn an_exposed_admin_without_authentication_refuses_to_start() {
    let mut config = crate::support::test_config();
    config.admin_listen = Some("0.0.0.0:0".parse().expect("addr"));
    let err = Server::start(config).await.expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("--admin-token-file"), "{message}");
    assert!(message.contains("--tls-client-ca"), "{message}");
}

async fn plain_admin(addr: SocketAddr) -> AdminClient<tonic::transport::Channel> {
    AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("admin connects")
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

/// With a token file, admin calls without the token (or with another)
/// are refused as unauthenticated, and counted; with it they pass.
#[tokio::test]
async fn the_admin_takes_only_calls_with_its_token() {
    let dir = Scratch::new("admin-token");
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    let server = start_with(|config| config.admin_token_file = Some(token_file.clone())).await;
    let mut admin = plain_admin(server.admin_addr().expect("admin")).await;
    let none = admin.stats(StatsRequest {}).await.expect_err("no token");
    assert_eq!(none.code(), tonic::Code::Unauthenticated);
    let wrong = admin
        .stats(with_token(StatsRequest {}, "guess"))
        .await
        .expect_err("wrong token");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    admin
        .stats(with_token(StatsRequest {}, "s3cret-token"))
        .await
        .expect("the right token passes");
    let missing = admin
        .expire_session(with_token(
            ExpireSessionRequest { session_id: 42 },
            "s3cret-token",
        ))
        .await
        .expect_err("no such session");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(server.metrics().admin_calls_refused.get(), 2);
    server.shutdown().await;
}

/// An empty token file is refused at start.
#[tokio::test]
async fn an_empty_admin_token_file_is_refused() {
    let dir = Scratch::new("admin-token-empty");
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, " \n").expect("token");
    let mut config = crate::support::test_config();
    config.admin_token_file = Some(token_file);
    let err = Server::start(config).await.expect_err("refused");
    assert!(err.to_string().contains("is empty"), "{err}");
}

/// The admin over TLS with client certificates: a caller with a
/// certificate the client authority signed is served (an admin beyond
/// loopback may rely on this instead of a token); one without is refused.
#[tokio::test]
async fn the_admin_over_tls_serves_callers_with_certificates() {
    let pki = Pki::new("tls-admin");
    let server_files = pki.server();
    let operator = pki.issue(&Leaf::client("operator"), "operator");
    let server = start_with(|config| {
        config.tls = Some(TlsConfig {
            client_ca: Some(pki.ca.clone()),
            ..pki.tls(&server_files)
        });
    })
    .await;
    let addr = server.admin_addr().expect("admin");
    let served = admin_over_tls(addr, client_config(&pki.ca, Some(&operator)))
        .await
        .expect("connects");
    AdminClient::new(served)
        .stats(StatsRequest {})
        .await
        .expect("a caller with a certificate is served");
    let refused = match admin_over_tls(addr, client_config(&pki.ca, None)).await {
        Err(err) => err.to_string(),
        Ok(channel) => AdminClient::new(channel)
            .stats(StatsRequest {})
            .await
            .expect_err("a caller without a certificate is refused")
            .to_string(),
    };
    assert!(!refused.is_empty());
    server.shutdown().await;
}

/// A channel to the admin at `addr` over TLS with `config`.
pub(crate) async fn admin_over_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let config = Arc::clone(&config);
            async move { dial(addr, config).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
}
