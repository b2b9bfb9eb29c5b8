//! Certificates for the session service's tests, its benchmark and
//! `cargo xtask certs`: a certificate authority made on the spot, and
//! certificates it signs, written as PEM files.
//!
//! The layout [`write_cluster`] writes is the one the README's "Running with
//! TLS" example uses: `ca.pem`, then `server-N.pem`/`server-N.key` for each
//! member (named `server-N`, `localhost`, `127.0.0.1` and `::1`, usable to
//! serve and to dial, as peers do), then `client.pem`/`client.key`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Why a certificate could not be made or written.
#[derive(Debug)]
pub enum Error {
    /// rcgen refused the parameters.
    Generate(rcgen::Error),
    /// A file could not be written.
    Write(PathBuf, std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Generate(err) => write!(f, "cannot make a certificate: {err}"),
            Error::Write(path, err) => write!(f, "cannot write {}: {err}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

impl From<rcgen::Error> for Error {
    fn from(err: rcgen::Error) -> Self {
        Error::Generate(err)
    }
}

/// A certificate and its private key, in PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert: String,
    /// Its PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub key: String,
}

impl Pem {
    /// Writes `<stem>.pem` and `<stem>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<Files, Error> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write(&cert, &self.cert)?;
        write(&key, &self.key)?;
        Ok(Files { cert, key })
    }
}

/// Where a certificate and its key were written.
#[derive(Debug, Clone)]
pub struct Files {
    /// The certificate's PEM file.
    pub cert: PathBuf,
    /// The private key's PEM file.
    pub key: PathBuf,
}

/// What a certificate is for, and for how long.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Subject alternative names: DNS names, or IP addresses when they parse
    /// as one.
    pub names: Vec<String>,
    /// The subject's common name.
    pub common_name: String,
    /// Usable by a server (extended key usage serverAuth).
    pub server: bool,
    /// Usable by a client (clientAuth).
    pub client: bool,
    /// Valid from now until this far ahead; an expired certificate is made
    /// by [`Leaf::expired`].
    pub valid_for: Duration,
    /// Ended an hour ago (valid from two days ago until one hour ago).
    pub expired: bool,
}

impl Leaf {
    /// A server certificate for `names`, also usable as a client (a peer
    /// dials as well as serves).
    pub fn server(names: &[&str]) -> Leaf {
        Leaf {
            names: names.iter().map(|name| (*name).to_owned()).collect(),
            common_name: names.first().copied().unwrap_or("server").to_owned(),
            server: true,
            client: true,
            valid_for: Duration::from_secs(365 * 24 * 3600),
            expired: false,
        }
    }

    /// A client certificate for `name`.
    pub fn client(name: &str) -> Leaf {
        Leaf {
            names: vec![name.to_owned()],
            common_name: name.to_owned(),
            server: false,
            client: true,
            valid_for: Duration::from_secs(365 * 24 * 3600),
            expired: false,
        }
    }

    /// The same certificate, already expired.
    pub fn expired(mut self) -> Leaf {
        self.expired = true;
        self
    }
}

/// A certificate authority made on the spot.
#[derive(Debug)]
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    /// A new self-signed authority called `name`, valid for ten years.
    pub fn new(name: &str) -> Result<Authority, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(2);
        params.not_after = now + time::Duration::days(3650);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Authority { issuer })
    }

    /// The authority's own certificate, the one to trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The authority's private key, to sign more certificates later.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `leaf`, signed by this authority, with a new key.
    pub fn issue(&self, leaf: &Leaf) -> Result<Pem, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = leaf
            .names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.common_name.clone());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if leaf.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if leaf.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let now = time::OffsetDateTime::now_utc();
        if leaf.expired {
            params.not_before = now - time::Duration::days(2);
            params.not_after = now - time::Duration::hours(1);
        } else {
            let valid = time::Duration::try_from(leaf.valid_for).unwrap_or(time::Duration::MAX);
            params.not_before = now - time::Duration::minutes(5);
            params.not_after = now.saturating_add(valid);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// The name member `id`'s certificate carries under the default
/// `--peer-tls-name` (`server-{id}`).
pub fn member_name(id: u16) -> String {
    format!("server-{id}")
}

/// What [`write_cluster`] wrote.
#[derive(Debug, Clone)]
pub struct ClusterFiles {
    /// The authority's certificate, to trust.
    pub ca: PathBuf,
    /// The authority's private key.
    pub ca_key: PathBuf,
    /// Member `i + 1`'s certificate and key.
    pub servers: Vec<Files>,
    /// A client certificate and key.
    pub client: Files,
}

/// A new authority and certificates for `servers` members and one client,
/// written into `dir` (created if missing): `ca.pem`, `ca.key`,
/// `server-N.pem`, `server-N.key`, `client.pem`, `client.key`.
pub fn write_cluster(dir: &Path, servers: u16) -> Result<ClusterFiles, Error> {
    std::fs::create_dir_all(dir).map_err(|err| Error::Write(dir.to_owned(), err))?;
    let authority = Authority::new("session-service test CA")?;
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    write(&ca, &authority.cert_pem())?;
    write(&ca_key, &authority.key_pem())?;
    let servers = (1..=servers)
        .map(|id| {
            let name = member_name(id);
            authority
                .issue(&Leaf::server(&[&name, "localhost", "127.0.0.1", "::1"]))?
                .write(dir, &name)
        })
        .collect::<Result<_, _>>()?;
    let client = authority
        .issue(&Leaf::client("session-client"))?
        .write(dir, "client")?;
    Ok(ClusterFiles {
        ca,
        ca_key,
        servers,
        client,
    })
}

/// Writes `contents` to `path`, replacing it in one step (a rename), so a
/// server watching the file never reads half of it.
pub fn write(path: &Path, contents: &str) -> Result<(), Error> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, contents).map_err(|err| Error::Write(partial.clone(), err))?;
    std::fs::rename(&partial, path).map_err(|err| Error::Write(path.to_owned(), err))
}
