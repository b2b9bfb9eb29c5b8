//! The client side of TLS for the lean raw sessions (`establish --raw` and
//! `hold` on the v1 listener): a rustls connector (ring, TLS 1.2 and 1.3)
//! trusting `--tls-ca`, presenting `--tls-cert`/`--tls-key` when given, and
//! the server name to verify (`--tls-server-name`, else the host of the
//! address dialled, an IP address or a DNS name).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::client::BenchError;

/// The TLS flags of the scenarios that can run over TLS.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct TlsArgs {
    /// Speak TLS to the server, trusting the certificate authority in this
    /// PEM file (v1 raw sessions only).
    #[arg(long)]
    pub(crate) tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) to present, for a server started with
    /// `--tls-client-ca`.
    #[arg(long, requires = "tls_ca", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry; the host of the
    /// address dialled when not given.
    #[arg(long, requires = "tls_ca")]
    pub(crate) tls_server_name: Option<String>,
}

impl TlsArgs {
    /// The connector these flags describe; `None` for plain text.
    pub(crate) fn dialer(&self) -> Result<Option<TlsDialer>, BenchError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|err| format!("--tls-ca {}: {err}", ca.display()))?
        {
            let cert = cert.map_err(|err| format!("--tls-ca {}: {err}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|err| format!("--tls-ca {}: {err}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--tls-ca {}: no certificate in it", ca.display()).into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|err| format!("--tls-cert {}: {err}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|err| format!("--tls-key {}: {err}", key.display()))?;
                builder.with_client_auth_cert(chain, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        let name = self
            .tls_server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned())
                    .map_err(|err| format!("--tls-server-name {name}: {err}"))
            })
            .transpose()?;
        Ok(Some(TlsDialer {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        }))
    }
}

/// Dials the server and runs the TLS handshake.
#[derive(Clone)]
pub(crate) struct TlsDialer {
    connector: TlsConnector,
    /// `--tls-server-name`; the host of the address dialled when `None`.
    name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDialer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsDialer {
    /// Connects to `addr` (`host:port`) and completes the TLS handshake,
    /// Nagle off as on the plain sessions.
    pub(crate) async fn connect(&self, addr: &str) -> Result<TlsStream<TcpStream>, BenchError> {
        let name = match &self.name {
            Some(name) => name.clone(),
            None => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                ServerName::try_from(host.to_owned())
                    .map_err(|err| format!("{addr}: no server name to verify: {err}"))?
            }
        };
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(self.connector.connect(name, stream).await?)
    }
}
