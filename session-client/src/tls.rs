//! TLS to the servers: what to trust and who to be (`TlsConfig`), why a
//! configuration cannot be used ([`TlsConfigError`]), why a server's
//! certificate (or ours) was refused ([`TlsFailure`]), and the dialing of a
//! TLS connection for the driver.
//!
//! rustls does the work, with the ring provider and TLS 1.2 and 1.3 only;
//! nothing here is cryptography of its own. There is no system root store:
//! the caller names the CA bundle to trust.

use std::fmt;
#[cfg(feature = "tls")]
use std::path::Path;
use std::path::PathBuf;

#[cfg(feature = "tls")]
pub use enabled::TlsConfig;
#[cfg(feature = "tls")]
pub(crate) use enabled::{tls_failure, with_name};

/// Why a `TlsConfig` could not be made, or why TLS
/// cannot be used with the given settings. Each message names the file (or
/// the PEM given in memory) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {detail}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        detail: String,
    },
    /// The PEM text is malformed (a section without its end line, bad
    /// base64).
    #[error("{origin} is not valid PEM: {detail}")]
    Pem {
        /// The file, or `"the PEM given"`.
        origin: String,
        /// What the PEM parser found wrong.
        detail: String,
    },
    /// No `-----BEGIN CERTIFICATE-----` section was found.
    #[error("{origin} holds no certificate (no -----BEGIN CERTIFICATE----- section)")]
    NoCertificate {
        /// The file, or `"the PEM given"`.
        origin: String,
    },
    /// A certificate of the CA bundle cannot be used as a trust anchor.
    #[error("{origin}: certificate {index} cannot be trusted as a CA: {detail}")]
    BadCaCertificate {
        /// The file, or `"the PEM given"`.
        origin: String,
        /// Its position in the bundle, counted from 0.
        index: usize,
        /// What rustls found wrong.
        detail: String,
    },
    /// No private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`
    /// section) was found.
    #[error("{origin} holds no private key")]
    NoPrivateKey {
        /// The file, or `"the PEM given"`.
        origin: String,
    },
    /// The client certificate and key cannot be used together (an
    /// unsupported key type, or a key that is not the certificate's).
    #[error("the client certificate {cert} and key {key} cannot be used: {detail}")]
    BadClientIdentity {
        /// The certificate's file, or `"the PEM given"`.
        cert: String,
        /// The key's file, or `"the PEM given"`.
        key: String,
        /// What rustls found wrong.
        detail: String,
    },
    /// The name to verify is neither a DNS name nor an IP address.
    #[error("{name:?} is not a valid server name to verify (a DNS name or an IP address)")]
    InvalidServerName {
        /// The name given.
        name: String,
    },
    /// The connect string starts with `tls://` but no CA to trust was given:
    /// this client has no system root store.
    #[error(
        "the connect string asks for TLS (tls://) but no CA to trust was given: pass ClientBuilder::tls(TlsConfig::from_ca_file(..)) (session-cli: --tls-ca FILE)"
    )]
    MissingCa,
    /// The connect string starts with `tls://` but this build of
    /// session-client has no TLS (its `tls` feature is off).
    #[error(
        "the connect string asks for TLS (tls://) but session-client was built without its `tls` feature"
    )]
    Unsupported,
    /// The rustls configuration could not be built.
    #[error("cannot set up TLS: {detail}")]
    Setup {
        /// What rustls said.
        detail: String,
    },
}

/// Why TLS with a server failed: its certificate did not verify, it
/// refused ours, or it does not speak TLS. These are not retried as a lost
/// connection is: see [`Error::Tls`](crate::Error::Tls).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate does not chain to the CA given (another CA,
    /// or self-signed).
    UnknownIssuer,
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet.
    NotYetValid,
    /// The server's certificate does not name the server name verified.
    NotValidForName {
        /// The name verified (the host dialed, or the configured server name).
        name: String,
        /// The names the certificate carries, when rustls reports them.
        presented: Vec<String>,
    },
    /// The server's certificate was revoked.
    Revoked,
    /// The server's certificate is unusable for another reason (bad
    /// encoding or signature, not for server use...).
    BadCertificate {
        /// What rustls found wrong.
        detail: String,
    },
    /// The server requires a client certificate and none was given
    /// (`TlsConfig::client_cert_files`).
    ClientCertificateRequired,
    /// The server refused the client certificate given (it does not chain
    /// to the server's client CA, has expired, or is not for client use).
    ClientCertificateRefused {
        /// The TLS alert the server sent, as rustls names it.
        alert: String,
    },
    /// The TLS handshake failed for another reason: no protocol version or
    /// cipher suite in common, or a peer that does not speak TLS.
    Handshake {
        /// What rustls said.
        detail: String,
    },
    /// The server answered in the session protocol without TLS (the
    /// connect string says `tls://` or a `TlsConfig`
    /// was given, and this port is plain text).
    ServerNotTls,
    /// The server answered with TLS, and this client dialed without it: use
    /// a `tls://` connect string and a `TlsConfig`.
    ServerRequiresTls,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str(
                "certificate signed by an unknown issuer (it does not chain to the CA given)",
            ),
            Self::Expired => f.write_str("certificate expired"),
            Self::NotYetValid => f.write_str("certificate not valid yet"),
            Self::NotValidForName { name, presented } if presented.is_empty() => {
                write!(f, "certificate not valid for name {name}")
            }
            Self::NotValidForName { name, presented } => write!(
                f,
                "certificate not valid for name {name} (it names {})",
                presented.join(", ")
            ),
            Self::Revoked => f.write_str("certificate revoked"),
            Self::BadCertificate { detail } => write!(f, "bad certificate: {detail}"),
            Self::ClientCertificateRequired => {
                f.write_str("the server requires a client certificate and none was given")
            }
            Self::ClientCertificateRefused { alert } => {
                write!(
                    f,
                    "the server refused our client certificate (alert {alert})"
                )
            }
            Self::Handshake { detail } => write!(f, "TLS handshake failed: {detail}"),
            Self::ServerNotTls => {
                f.write_str("the server does not speak TLS on this port (drop tls://)")
            }
            Self::ServerRequiresTls => {
                f.write_str("the server speaks TLS on this port: connect with tls:// and a CA")
            }
        }
    }
}

/// Whether the first bytes a plain-text connection received are a TLS
/// record (an alert or a handshake, version 3.x), read as a frame length:
/// the server on that port speaks TLS.
pub(crate) fn is_tls_record_prefix(len: u32) -> bool {
    let [content_type, major, minor, _] = len.to_be_bytes();
    matches!(content_type, 0x15 | 0x16) && major == 3 && minor <= 4
}

#[cfg(feature = "tls")]
/// Reads a file named in a TLS setting, naming it in the error.
fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|err| TlsConfigError::Read {
        path: path.to_owned(),
        detail: err.to_string(),
    })
}

#[cfg(feature = "tls")]
/// What an error says the PEM came from.
fn origin_of(path: Option<&Path>) -> String {
    path.map_or_else(
        || "the PEM given".to_owned(),
        |path| path.display().to_string(),
    )
}

#[cfg(feature = "tls")]
mod enabled {
    use std::fmt;
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{AlertDescription, CertificateError, RootCertStore};

    use super::{TlsConfigError, TlsFailure, origin_of, read_file};

    /// TLS settings of a [`Client`](crate::Client): the CA bundle to trust,
    /// an optional client certificate and key, and an optional name to
    /// verify the servers' certificates against.
    ///
    /// By default each server's certificate is verified against the host
    /// of the connect string entry being dialed: a DNS name against the
    /// certificate's DNS names, an IP address against its IP addresses.
    /// There is no system root store: only the CAs given are trusted.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use session_client::{Client, TlsConfig};
    ///
    /// let tls = TlsConfig::from_ca_file("certs/ca.pem")?
    ///     // Only where the servers require client certificates.
    ///     .client_cert_files("certs/client.pem", "certs/client.key")?;
    /// let client = Client::builder()
    ///     .servers("tls://server-1:7181,server-2:7181/app")
    ///     .tls(tls)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Cheap to clone: the certificates are shared.
    #[derive(Clone)]
    pub struct TlsConfig {
        roots: Arc<RootCertStore>,
        identity: Option<Arc<Identity>>,
        server_name: Option<ServerName<'static>>,
        /// The rustls configuration of the settings above, built as they
        /// are set so that a bad key fails where it is given.
        rustls: Arc<rustls::ClientConfig>,
    }

    /// A client certificate chain and its key.
    struct Identity {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    }

    impl fmt::Debug for TlsConfig {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // The key stays out of logs.
            f.debug_struct("TlsConfig")
                .field("ca_certificates", &self.roots.len())
                .field("client_certificate", &self.identity.is_some())
                .field("server_name", &self.server_name)
                .finish_non_exhaustive()
        }
    }

    impl TlsConfig {
        /// Trusts the CA certificates of the PEM file `path` (one or many
        /// `CERTIFICATE` sections; other sections are skipped).
        ///
        /// # Errors
        /// [`TlsConfigError::Read`] when the file cannot be read,
        /// [`TlsConfigError::Pem`] when it is not PEM,
        /// [`TlsConfigError::NoCertificate`] when it holds no certificate,
        /// [`TlsConfigError::BadCaCertificate`] when one cannot be a trust
        /// anchor; each names the file.
        pub fn from_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
            let path = path.as_ref();
            Self::from_ca(&read_file(path)?, Some(path))
        }

        /// Trusts the CA certificates of `pem` (one or many `CERTIFICATE`
        /// sections).
        ///
        /// # Errors
        /// As [`from_ca_file`](Self::from_ca_file), but for no file.
        pub fn from_ca_pem(pem: impl AsRef<[u8]>) -> Result<Self, TlsConfigError> {
            Self::from_ca(pem.as_ref(), None)
        }

        fn from_ca(pem: &[u8], path: Option<&Path>) -> Result<Self, TlsConfigError> {
            let origin = origin_of(path);
            let certs = certificates(pem, &origin)?;
            let mut roots = RootCertStore::empty();
            for (index, cert) in certs.into_iter().enumerate() {
                roots
                    .add(cert)
                    .map_err(|err| TlsConfigError::BadCaCertificate {
                        origin: origin.clone(),
                        index,
                        detail: err.to_string(),
                    })?;
            }
            let roots = Arc::new(roots);
            let rustls = Arc::new(build(&roots, None).map_err(|err| TlsConfigError::Setup {
                detail: err.to_string(),
            })?);
            Ok(Self {
                roots,
                identity: None,
                server_name: None,
                rustls,
            })
        }

        /// Presents the client certificate (chain) of the PEM file `cert`,
        /// with the private key of the PEM file `key` (PKCS#8, PKCS#1 or
        /// SEC1), to servers that ask for one.
        ///
        /// # Errors
        /// [`TlsConfigError::Read`], [`TlsConfigError::Pem`],
        /// [`TlsConfigError::NoCertificate`],
        /// [`TlsConfigError::NoPrivateKey`] naming the file at fault, and
        /// [`TlsConfigError::BadClientIdentity`] when the key is of a type
        /// rustls cannot sign with or is not the certificate's.
        pub fn client_cert_files(
            self,
            cert: impl AsRef<Path>,
            key: impl AsRef<Path>,
        ) -> Result<Self, TlsConfigError> {
            let (cert, key) = (cert.as_ref(), key.as_ref());
            let cert_pem = read_file(cert)?;
            let key_pem = read_file(key)?;
            self.with_identity(&cert_pem, Some(cert), &key_pem, Some(key))
        }

        /// Presents the client certificate (chain) of the PEM `cert`, with
        /// the private key of the PEM `key`.
        ///
        /// # Errors
        /// As [`client_cert_files`](Self::client_cert_files), but for no
        /// file.
        pub fn client_cert_pem(
            self,
            cert: impl AsRef<[u8]>,
            key: impl AsRef<[u8]>,
        ) -> Result<Self, TlsConfigError> {
            self.with_identity(cert.as_ref(), None, key.as_ref(), None)
        }

        fn with_identity(
            mut self,
            cert: &[u8],
            cert_path: Option<&Path>,
            key: &[u8],
            key_path: Option<&Path>,
        ) -> Result<Self, TlsConfigError> {
            let cert_origin = origin_of(cert_path);
            let key_origin = origin_of(key_path);
            let chain = certificates(cert, &cert_origin)?;
            let key = match PrivateKeyDer::from_pem_slice(key) {
                Ok(key) => key,
                Err(pem::Error::NoItemsFound) => {
                    return Err(TlsConfigError::NoPrivateKey { origin: key_origin });
                }
                Err(err) => {
                    return Err(TlsConfigError::Pem {
                        origin: key_origin,
                        detail: err.to_string(),
                    });
                }
            };
            let identity = Identity { chain, key };
            let rustls = build(&self.roots, Some(&identity)).map_err(|err| {
                TlsConfigError::BadClientIdentity {
                    cert: cert_origin,
                    key: key_origin,
                    detail: err.to_string(),
                }
            })?;
            self.identity = Some(Arc::new(identity));
            self.rustls = Arc::new(rustls);
            Ok(self)
        }

        /// Verifies every server's certificate against `name` (a DNS name
        /// or an IP address) instead of the host dialed: for servers dialed
        /// by an address their certificate does not carry.
        ///
        /// # Errors
        /// [`TlsConfigError::InvalidServerName`] when `name` is neither.
        pub fn server_name(mut self, name: impl Into<String>) -> Result<Self, TlsConfigError> {
            let name = name.into();
            self.server_name = Some(parse_server_name(&name)?);
            Ok(self)
        }

        /// The name set by [`server_name`](Self::server_name), if any.
        #[must_use]
        pub fn server_name_override(&self) -> Option<String> {
            self.server_name
                .as_ref()
                .map(|name| name.to_str().into_owned())
        }

        /// Whether a client certificate is presented.
        #[must_use]
        pub fn has_client_cert(&self) -> bool {
            self.identity.is_some()
        }

        /// The rustls configuration these settings make (ring provider, TLS
        /// 1.2 and 1.3, the CAs given as the only roots, the client
        /// certificate if any), for connections other than the session's:
        /// session-cli uses it for the admin gRPC channel, adding ALPN
        /// `h2`.
        #[must_use]
        pub fn rustls_client_config(&self) -> rustls::ClientConfig {
            rustls::ClientConfig::clone(&self.rustls)
        }

        /// The name to verify the certificate of `host` (a connect string
        /// entry's host) against.
        ///
        /// # Errors
        /// [`TlsConfigError::InvalidServerName`] when no name is set and
        /// `host` is neither a DNS name nor an IP address.
        pub fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, TlsConfigError> {
            match &self.server_name {
                Some(name) => Ok(name.clone()),
                None => parse_server_name(host),
            }
        }

        /// The connector the driver dials with.
        pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
            tokio_rustls::TlsConnector::from(Arc::clone(&self.rustls))
        }
    }

    fn parse_server_name(name: &str) -> Result<ServerName<'static>, TlsConfigError> {
        let bare = name
            .strip_prefix('[')
            .and_then(|name| name.strip_suffix(']'))
            .unwrap_or(name);
        ServerName::try_from(bare.to_owned()).map_err(|_| TlsConfigError::InvalidServerName {
            name: name.to_owned(),
        })
    }

    /// Every `CERTIFICATE` section of `pem`, at least one.
    fn certificates(
        pem: &[u8],
        origin: &str,
    ) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| TlsConfigError::Pem {
                origin: origin.to_owned(),
                detail: err.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsConfigError::NoCertificate {
                origin: origin.to_owned(),
            });
        }
        Ok(certs)
    }

    /// The rustls client configuration: ring, TLS 1.3 and 1.2, `roots`
    /// only, `identity` presented when given.
    fn build(
        roots: &Arc<RootCertStore>,
        identity: Option<&Identity>,
    ) -> Result<rustls::ClientConfig, rustls::Error> {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(Arc::clone(roots));
        match identity {
            Some(identity) => {
                builder.with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }

    /// The TLS failure behind an I/O error of a TLS stream (tokio-rustls
    /// wraps rustls' errors as `InvalidData`), if it is one;
    /// `client_cert` says whether we presented a certificate.
    pub(crate) fn tls_failure(err: &io::Error, client_cert: bool) -> Option<TlsFailure> {
        let rustls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(failure_of(rustls, client_cert))
    }

    /// What a rustls error says went wrong; `client_cert` says whether we
    /// presented a certificate.
    pub(super) fn failure_of(err: &rustls::Error, client_cert: bool) -> TlsFailure {
        use rustls::Error as E;
        match err {
            E::InvalidCertificate(cert) => match cert {
                // A bad signature on the chain: an issuer of the same name
                // as a CA given, but another key (a CA made again under
                // the same name).
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsFailure::UnknownIssuer
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    TlsFailure::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    TlsFailure::NotYetValid
                }
                CertificateError::NotValidForName => TlsFailure::NotValidForName {
                    name: String::new(),
                    presented: Vec::new(),
                },
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => TlsFailure::NotValidForName {
                    name: expected.to_str().into_owned(),
                    presented: presented.iter().map(|name| bare_name(name)).collect(),
                },
                CertificateError::Revoked => TlsFailure::Revoked,
                other => TlsFailure::BadCertificate {
                    detail: other.to_string(),
                },
            },
            E::AlertReceived(AlertDescription::CertificateRequired) => {
                TlsFailure::ClientCertificateRequired
            }
            E::AlertReceived(
                alert @ (AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied),
            ) => TlsFailure::ClientCertificateRefused {
                alert: format!("{alert:?}"),
            },
            // What a server sends when our certificate's signature does
            // not verify (rustls' mapping of `BadSignature`).
            E::AlertReceived(alert @ AlertDescription::DecryptError) if client_cert => {
                TlsFailure::ClientCertificateRefused {
                    alert: format!("{alert:?}"),
                }
            }
            // A frame of the session protocol read as a TLS record.
            E::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                TlsFailure::ServerNotTls
            }
            E::InvalidMessage(_) | E::InappropriateMessage { .. } => TlsFailure::Handshake {
                detail: format!("{err} (does the server speak TLS on this port?)"),
            },
            other => TlsFailure::Handshake {
                detail: other.to_string(),
            },
        }
    }

    /// A name as rustls presents it (`DnsName("a")`, `IpAddress(10.0.0.1)`),
    /// without the wrapping.
    fn bare_name(presented: &str) -> String {
        ["DnsName(\"", "IpAddress("]
            .iter()
            .find_map(|prefix| presented.strip_prefix(prefix))
            .map(|rest| rest.trim_end_matches(')').trim_end_matches('"'))
            .unwrap_or(presented)
            .to_owned()
    }

    /// Fills in the name verified when rustls did not say it.
    pub(crate) fn with_name(failure: TlsFailure, name: &ServerName<'_>) -> TlsFailure {
        match failure {
            TlsFailure::NotValidForName {
                name: verified,
                presented,
            } if verified.is_empty() => TlsFailure::NotValidForName {
                name: name.to_str().into_owned(),
                presented,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_read_as_a_frame_length_are_recognised() {
        // An alert (21) and a handshake (22) of TLS 1.0 to 1.3's record layer.
        assert!(is_tls_record_prefix(u32::from_be_bytes([0x15, 3, 3, 0])));
        assert!(is_tls_record_prefix(u32::from_be_bytes([0x16, 3, 1, 2])));
        assert!(!is_tls_record_prefix(u32::from_be_bytes([0x17, 3, 3, 0])));
        assert!(!is_tls_record_prefix(u32::from_be_bytes([0, 0, 0x15, 3])));
    }

    #[test]
    fn failures_name_their_reason() {
        let name = TlsFailure::NotValidForName {
            name: "server-9".into(),
            presented: vec!["server-1".into(), "localhost".into()],
        };
        assert_eq!(
            name.to_string(),
            "certificate not valid for name server-9 (it names server-1, localhost)"
        );
        assert_eq!(TlsFailure::Expired.to_string(), "certificate expired");
        assert!(
            TlsFailure::UnknownIssuer
                .to_string()
                .contains("unknown issuer")
        );
        assert!(
            TlsFailure::ClientCertificateRequired
                .to_string()
                .contains("requires a client certificate")
        );
    }

    #[cfg(feature = "tls")]
    mod enabled {
        use rustls::pki_types::ServerName;
        use rustls::{AlertDescription, CertificateError};

        use super::super::enabled::failure_of;
        use super::super::*;

        #[test]
        fn rustls_errors_map_to_their_reason() {
            let cases = [
                (
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                    TlsFailure::UnknownIssuer,
                ),
                (
                    rustls::Error::InvalidCertificate(CertificateError::Expired),
                    TlsFailure::Expired,
                ),
                (
                    rustls::Error::InvalidCertificate(CertificateError::NotValidYet),
                    TlsFailure::NotYetValid,
                ),
                (
                    rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                        expected: ServerName::try_from("server-9").expect("a DNS name"),
                        presented: vec![
                            "DnsName(\"server-1\")".into(),
                            "IpAddress(10.0.0.1)".into(),
                        ],
                    }),
                    TlsFailure::NotValidForName {
                        name: "server-9".into(),
                        presented: vec!["server-1".into(), "10.0.0.1".into()],
                    },
                ),
                (
                    rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                    TlsFailure::ClientCertificateRequired,
                ),
                (
                    rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                    TlsFailure::ClientCertificateRefused {
                        alert: "UnknownCA".into(),
                    },
                ),
            ];
            for (error, expected) in cases {
                assert_eq!(failure_of(&error, false), expected, "{error}");
                // As tokio-rustls hands them over.
                let io = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
                assert_eq!(tls_failure(&io, false), Some(expected));
            }
            let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
            assert_eq!(
                tls_failure(&reset, false),
                None,
                "a network failure is not TLS's"
            );
            let decrypt = rustls::Error::AlertReceived(AlertDescription::DecryptError);
            assert!(matches!(
                failure_of(&decrypt, true),
                TlsFailure::ClientCertificateRefused { .. }
            ));
            assert!(matches!(
                failure_of(&decrypt, false),
                TlsFailure::Handshake { .. }
            ));
        }

        #[test]
        fn a_name_rustls_left_out_is_filled_in() {
            let bare = failure_of(
                &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                false,
            );
            let name = ServerName::try_from("10.0.0.7").expect("an IP address");
            assert_eq!(
                with_name(bare, &name).to_string(),
                "certificate not valid for name 10.0.0.7"
            );
        }

        #[test]
        fn bad_files_are_named_with_what_is_wrong() {
            let dir = std::env::temp_dir().join(format!("tls-config-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            let missing = dir.join("missing.pem");
            let err = TlsConfig::from_ca_file(&missing).expect_err("no such file");
            assert!(matches!(err, TlsConfigError::Read { .. }));
            assert!(err.to_string().contains("missing.pem"), "{err}");

            let empty = dir.join("empty.pem");
            std::fs::write(&empty, "not a certificate\n").expect("written");
            let err = TlsConfig::from_ca_file(&empty).expect_err("no certificate");
            assert_eq!(
                err.to_string(),
                format!(
                    "{} holds no certificate (no -----BEGIN CERTIFICATE----- section)",
                    empty.display()
                )
            );

            let broken = dir.join("broken.pem");
            std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").expect("written");
            let err = TlsConfig::from_ca_file(&broken).expect_err("unterminated");
            assert!(matches!(err, TlsConfigError::Pem { .. }), "{err}");

            assert!(matches!(
                TlsConfig::from_ca_pem("").expect_err("empty"),
                TlsConfigError::NoCertificate { .. }
            ));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
