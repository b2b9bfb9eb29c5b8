//! `session-cli`: the session service from the command line — namespace
//! operations through a session, and the admin calls over gRPC.
//!
//! ```text
//! session-cli create -e /services/web host:8080
//! session-cli hold /services/web/instance-1 10.0.0.7:8080
//! session-cli lock /locks/backup -- ./backup.sh
//! session-cli --json admin sessions
//! session-cli --servers tls://server-1:7181 --tls-ca ca.pem get /config
//! session-cli --admin https://server-1:7182 --tls-ca ca.pem \
//!     --admin-token-file token admin sessions
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitCode, ExitStatus};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use session_client::recipes::{
    FencingToken, LeaderElection, Leadership, Lock, LockGuard, NodeLayout,
};
use session_client::{
    Client, CreateMode, Error, SessionId, Stat, State, TlsConfig, TlsConfigError,
};
use session_wire::admin::v1::{
    self as admin, SessionEventKind, SessionState, admin_client::AdminClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// Talk to a session server.
///
/// TLS: `--tls-ca FILE` turns TLS on for the session (as a `tls://`
/// connect string does; `tls://` without `--tls-ca` is refused: there is no
/// system root store) and for the admin address, unless that address is
/// given as `http://host:port`. An `https://host:port` admin address needs
/// `--tls-ca`. `--tls-cert` and `--tls-key` present a client certificate to
/// servers that require one; `--tls-server-name` verifies the servers'
/// certificates against that name instead of the host dialed.
#[derive(Debug, Parser)]
#[command(name = "session-cli", version, about, long_about)]
struct Cli {
    /// Servers and optional chroot: host:port,host:port/chroot; prefixed
    /// with tls:// (tls://host:port,host:port) to use TLS, which needs
    /// --tls-ca.
    #[arg(long, global = true, default_value = "127.0.0.1:7181")]
    servers: String,
    /// Session timeout to ask for, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Admin gRPC address for `admin` commands: host:port (TLS when
    /// --tls-ca is given), http://host:port (plain text) or
    /// https://host:port (TLS; needs --tls-ca).
    #[arg(long, global = true, default_value = "127.0.0.1:7182")]
    admin: String,
    /// The CA bundle (PEM) the servers' certificates must chain to: turns
    /// TLS on for the session and the admin.
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to servers that require one;
    /// with --tls-key.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Verify the servers' certificates against this name instead of the
    /// host dialed.
    #[arg(long, global = true, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// A file holding the admin's bearer token: every admin call sends
    /// `authorization: Bearer TOKEN` (the file's content, trimmed). Without
    /// it, the token in SESSION_ADMIN_TOKEN is sent, if set.
    #[arg(long, global = true, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node and print its path.
    Create {
        /// Ephemeral: deleted when this command's session ends (see `hold`).
        #[arg(short, long)]
        ephemeral: bool,
        /// Sequential: the server appends a 10-digit number.
        #[arg(short, long)]
        sequential: bool,
        /// The node's path.
        path: String,
        /// The node's data (empty if absent).
        data: Option<String>,
    },
    /// Print a node's data.
    Get {
        /// The node's path.
        path: String,
    },
    /// Replace a node's data.
    Set {
        /// The node's path.
        path: String,
        /// The new data.
        data: String,
        /// Only if the node is at this version.
        #[arg(long)]
        version: Option<i32>,
    },
    /// Delete a node without children.
    Delete {
        /// The node's path.
        path: String,
        /// Only if the node is at this version.
        #[arg(long)]
        version: Option<i32>,
    },
    /// List a node's children.
    Ls {
        /// The node's path.
        path: String,
    },
    /// Print a node's stat.
    Stat {
        /// The node's path.
        path: String,
    },
    /// Print every change of a node (created, data changed, deleted) until interrupted.
    Watch {
        /// The node's path.
        path: String,
    },
    /// Create an ephemeral node and keep the session (and the node) alive,
    /// printing state changes, until interrupted.
    Hold {
        /// The node's path.
        path: String,
        /// The node's data (empty if absent).
        data: Option<String>,
    },
    /// Run a command while holding a lock (a fair queue: Curator's
    /// InterProcessMutex layout). The command sees its fencing token in
    /// SESSION_LOCK_TOKEN and its lock node in SESSION_LOCK_NODE; when it
    /// exits, the lock is released and session-cli exits with its status.
    /// The moment the session is suspended or the lock node is gone, the
    /// command is stopped (SIGTERM, SIGKILL after --grace-ms) and
    /// session-cli exits with status 75, or with --retry waits for the lock
    /// again and runs the command again. If session-cli dies, even by
    /// SIGKILL, the command is killed with it (Linux).
    Lock(Exclusive),
    /// Run a command while leader of an election (Curator's LeaderLatch
    /// layout), with the same rules as `lock`.
    Elect(Exclusive),
    /// Admin calls against --admin.
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// `--layout`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Layout {
    Curator,
    Kazoo,
}

impl From<Layout> for NodeLayout {
    fn from(layout: Layout) -> Self {
        match layout {
            Layout::Curator => NodeLayout::Curator,
            Layout::Kazoo => NodeLayout::Kazoo,
        }
    }
}

/// What `lock` and `elect` take.
#[derive(Debug, Args)]
struct Exclusive {
    /// The lock's (or election's) path; its children are the contenders.
    path: String,
    /// The data of this contender's node, which the others see (say, a
    /// host name).
    #[arg(long, default_value = "")]
    id: String,
    /// Whose node names to use: Curator's (`_c_<uuid>-lock-<seq>`,
    /// `_c_<uuid>-latch-<seq>`) or kazoo's (`<hex>__lock__<seq>`, to share
    /// a path with kazoo's Lock or Election).
    #[arg(long, value_enum, default_value_t = Layout::Curator)]
    layout: Layout,
    /// After losing the lock, wait for it again and run the command again
    /// (with a new session if the old one expired).
    #[arg(long)]
    retry: bool,
    /// How long the command has to exit after SIGTERM before SIGKILL.
    #[arg(long, default_value_t = 5_000)]
    grace_ms: u64,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// List every session.
    Sessions,
    /// Describe one session.
    Session {
        /// Session id, hexadecimal (0x...) or decimal.
        id: String,
    },
    /// Expire one session now.
    Expire {
        /// Session id, hexadecimal (0x...) or decimal.
        id: String,
    },
    /// Server counters.
    Stats,
    /// The expiry buckets.
    Dump,
    /// Stream session lifecycle events until interrupted.
    Events,
    /// The cluster's members: each one's role, last applied zxid and lag
    /// behind the leader.
    Cluster,
    /// Add a server to the cluster as a learner (it receives the log, does
    /// not vote); returns once it has caught up.
    AddLearner {
        /// The new server's id, 1..=255.
        node_id: u32,
        /// Its peer listener, HOST:PORT.
        peer_address: String,
    },
    /// Make a learner a voting member.
    Promote {
        /// The learner's id.
        node_id: u32,
    },
    /// Remove a member (voter or learner) from the cluster.
    Remove {
        /// The member's id.
        node_id: u32,
    },
}

/// What went wrong, as one line.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Client(#[from] Error),
    #[error("admin: {0}")]
    Admin(String),
    #[error("{0}")]
    Usage(String),
    #[error("command: {0}")]
    Command(#[from] std::io::Error),
    #[error("{0}")]
    Tls(#[from] TlsConfigError),
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        Self::Admin(format!("{:?}: {}", status.code(), status.message()))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("session-cli: error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let json = cli.json;
    let tls = tls_config(&cli)?;
    let mut connect = Client::builder()
        .servers(cli.servers)
        .session_timeout(Duration::from_millis(cli.timeout_ms));
    if let Some(tls) = &tls {
        connect = connect.tls(tls.clone());
    }
    match cli.command {
        Command::Admin(command) => {
            let token = admin_token(cli.admin_token_file.as_deref())?;
            let admin = admin_channel(&cli.admin, tls.as_ref()).await?;
            run_admin(admin, token, command, json)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Lock(args) => exclusive::run(connect, Contest::Lock, args).await,
        Command::Elect(args) => exclusive::run(connect, Contest::Election, args).await,
        command => {
            let client = connect.connect().await?;
            let result = run_client(&client, command, json).await;
            client.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
    }
}

async fn run_client(client: &Client, command: Command, json: bool) -> Result<(), CliError> {
    match command {
        Command::Create {
            ephemeral,
            sequential,
            path,
            data,
        } => {
            let mode = CreateMode::from_flags(ephemeral, sequential);
            let data = data.unwrap_or_default();
            let created = client.create(&path, data.as_bytes(), mode).await?;
            print(json, json!({ "path": created }), || created.clone());
        }
        Command::Get { path } => {
            let (data, stat) = client.get(&path).await?;
            let text = String::from_utf8_lossy(&data).into_owned();
            print(
                json,
                json!({ "path": path, "data": text, "stat": stat_json(&stat) }),
                || text.clone(),
            );
        }
        Command::Set {
            path,
            data,
            version,
        } => {
            let stat = client.set(&path, data.as_bytes(), version).await?;
            print(json, stat_json(&stat), || {
                format!("version {}", stat.version)
            });
        }
        Command::Delete { path, version } => {
            client.delete(&path, version).await?;
            print(json, json!({ "deleted": path }), || {
                format!("deleted {path}")
            });
        }
        Command::Ls { path } => {
            let children = client.children(&path).await?;
            print(json, json!(children), || children.join("\n"));
        }
        Command::Stat { path } => match client.exists(&path).await? {
            Some(stat) => print(json, stat_json(&stat), || stat_text(&stat)),
            None => {
                return Err(Error::NoNode {
                    detail: format!("{path} does not exist"),
                }
                .into());
            }
        },
        Command::Watch { path } => watch(client, &path, json).await?,
        Command::Hold { path, data } => hold(client, &path, data, json).await?,
        Command::Admin(_) | Command::Lock(_) | Command::Elect(_) => {
            return Err(CliError::Usage(
                "admin, lock and elect make their own sessions".into(),
            ));
        }
    }
    Ok(())
}

/// Prints each change of `path`, setting the watch again after each event
/// and after reconnecting.
async fn watch(client: &Client, path: &str, json: bool) -> Result<(), CliError> {
    let mut state = client.state();
    // One future for the whole command: a fresh one per turn would miss a
    // Ctrl-C that arrives between turns.
    let mut interrupted = std::pin::pin!(interrupted());
    loop {
        let armed = tokio::select! {
            armed = client.exists_and_watch(path) => armed,
            _ = &mut interrupted => return Ok(()),
        };
        let watch = match armed {
            Ok((_, watch)) => watch,
            Err(Error::ConnectionLoss) => {
                tokio::select! {
                    connected = wait_connected(&mut state) => connected?,
                    _ = &mut interrupted => return Ok(()),
                }
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        tokio::select! {
            event = watch => {
                let event = event?;
                let kind = event.kind.to_string();
                print(
                    json,
                    json!({ "event": kind, "path": event.path, "zxid": event.zxid }),
                    || format!("{kind} {}", event.path),
                );
            }
            _ = &mut interrupted => return Ok(()),
        }
    }
}

async fn wait_connected(state: &mut tokio::sync::watch::Receiver<State>) -> Result<(), CliError> {
    loop {
        let current = *state.borrow_and_update();
        match current {
            State::Connected => return Ok(()),
            State::Expired => return Err(Error::SessionExpired.into()),
            State::AuthFailed => return Err(Error::AuthFailed.into()),
            State::Closed => return Err(Error::Closed.into()),
            State::NotConnected | State::Connecting | State::Suspended => {}
        }
        if state.changed().await.is_err() {
            return Err(Error::Closed.into());
        }
    }
}

/// Creates an ephemeral node and keeps the session alive until Ctrl-C.
async fn hold(
    client: &Client,
    path: &str,
    data: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let mut events = client.events();
    let mut interrupted = std::pin::pin!(interrupted());
    let data = data.unwrap_or_default();
    let created = client
        .create(path, data.as_bytes(), CreateMode::Ephemeral)
        .await?;
    let session = client.session_id().to_string();
    let server = |client: &Client| {
        client
            .server()
            .map(|addr| addr.to_string())
            .unwrap_or_default()
    };
    let on = server(client);
    print(
        json,
        json!({ "holding": created, "session": session, "server": on }),
        || format!("holding {created} (session {session}) on {on}; Ctrl-C to release"),
    );
    loop {
        tokio::select! {
            state = events.next() => {
                let Some(state) = state else { return Err(Error::Closed.into()) };
                if state == State::Connected {
                    let on = server(client);
                    print(json, json!({ "state": "Connected", "server": on }),
                        || format!("state Connected (session {session}) on {on}"));
                } else {
                    print(json, json!({ "state": format!("{state:?}") }), || format!("state {state:?}"));
                }
                match state {
                    State::Expired => return Err(Error::SessionExpired.into()),
                    State::AuthFailed => return Err(Error::AuthFailed.into()),
                    State::Closed => return Ok(()),
                    _ => {}
                }
            }
            _ = &mut interrupted => return Ok(()),
        }
    }
}

/// The TLS settings of `--tls-ca`, `--tls-cert`, `--tls-key` and
/// `--tls-server-name`; none without `--tls-ca`.
fn tls_config(cli: &Cli) -> Result<Option<TlsConfig>, CliError> {
    let Some(ca) = &cli.tls_ca else {
        if cli.tls_cert.is_some() || cli.tls_server_name.is_some() {
            return Err(CliError::Usage(
                "--tls-cert, --tls-key and --tls-server-name need --tls-ca".into(),
            ));
        }
        return Ok(None);
    };
    let mut tls = TlsConfig::from_ca_file(ca)?;
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        tls = tls.client_cert_files(cert, key)?;
    }
    if let Some(name) = &cli.tls_server_name {
        tls = tls.server_name(name.clone())?;
    }
    Ok(Some(tls))
}

/// The admin's bearer token: `--admin-token-file`'s content, else
/// SESSION_ADMIN_TOKEN's, trimmed; none when neither is given.
fn admin_token(file: Option<&std::path::Path>) -> Result<Option<String>, CliError> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|err| {
            CliError::Usage(format!(
                "cannot read the admin token file {}: {err}",
                path.display()
            ))
        })?,
        None => match std::env::var("SESSION_ADMIN_TOKEN") {
            Ok(token) => token,
            Err(_) => return Ok(None),
        },
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(CliError::Usage(match file {
            Some(path) => format!("the admin token file {} is empty", path.display()),
            None => "SESSION_ADMIN_TOKEN is empty".into(),
        }));
    }
    Ok(Some(token.to_owned()))
}

/// A channel to the admin at `address`: TLS for `https://`, and for a bare
/// `host:port` when `tls` is given; plain text for `http://`.
async fn admin_channel(address: &str, tls: Option<&TlsConfig>) -> Result<Channel, CliError> {
    let (authority, use_tls) = match address.split_once("://") {
        Some(("https", rest)) => (rest, true),
        Some(("http", rest)) => (rest, false),
        Some((scheme, _)) => {
            return Err(CliError::Usage(format!(
                "--admin {address}: unknown scheme {scheme}:// (http:// or https://)"
            )));
        }
        None => (address, tls.is_some()),
    };
    let authority = authority.trim_end_matches('/');
    // Always http:// for tonic: the connector below makes the TLS itself.
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|err| CliError::Usage(format!("--admin {address}: {err}")))?;
    let unreachable = |err: tonic::transport::Error| {
        let detail = std::error::Error::source(&err)
            .map_or_else(|| err.to_string(), |source| format!("{err}: {source}"));
        CliError::Admin(format!("cannot reach {address}: {detail}"))
    };
    if !use_tls {
        return endpoint.connect().await.map_err(unreachable);
    }
    let Some(tls) = tls else {
        return Err(CliError::Usage(format!(
            "--admin {address} asks for TLS: give the CA with --tls-ca"
        )));
    };
    let host = match authority.rsplit_once(':') {
        Some((host, _port)) => host,
        None => authority,
    };
    let connector = AdminTls::new(tls, host)?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(unreachable)
}

/// Dials the admin over TLS for tonic: TCP, then rustls with the
/// `--tls-*` settings and ALPN `h2`.
#[derive(Clone)]
struct AdminTls {
    connector: tokio_rustls::TlsConnector,
    name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

impl AdminTls {
    fn new(tls: &TlsConfig, host: &str) -> Result<AdminTls, CliError> {
        let mut config = tls.rustls_client_config();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(AdminTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name: tls.server_name_for(host)?,
        })
    }
}

impl tonic::codegen::Service<Uri> for AdminTls {
    type Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.connector.clone();
        let name = self.name.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or("localhost");
            let host = host
                .strip_prefix('[')
                .and_then(|host| host.strip_suffix(']'))
                .unwrap_or(host);
            let port = uri.port_u16().unwrap_or(80);
            let tcp = tokio::net::TcpStream::connect((host, port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

async fn run_admin(
    channel: Channel,
    token: Option<String>,
    command: AdminCommand,
    json: bool,
) -> Result<(), CliError> {
    let bearer = match token {
        Some(token) => Some(
            tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                CliError::Usage("the admin token holds characters a header cannot".into())
            })?,
        ),
        None => None,
    };
    let mut admin =
        AdminClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            if let Some(bearer) = &bearer {
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
            }
            Ok(request)
        });
    match command {
        AdminCommand::Sessions => {
            let sessions = admin
                .list_sessions(admin::ListSessionsRequest {})
                .await?
                .into_inner()
                .sessions;
            if json {
                println!(
                    "{}",
                    Value::Array(sessions.iter().map(session_json).collect())
                );
            } else {
                println!(
                    "{:<18}  {:>9}  {:<12}  {:<21}  {:>10}  {:>10}  {:>10}  CLIENT",
                    "SESSION",
                    "TIMEOUT",
                    "STATE",
                    "REMOTE",
                    "EPHEMERALS",
                    "HEARD_AGO",
                    "EXPIRES_IN"
                );
                for s in &sessions {
                    println!(
                        "{:<18}  {:>7}ms  {:<12}  {:<21}  {:>10}  {:>8}ms  {:>8}ms  {}",
                        SessionId::from_u64(s.session_id).to_string(),
                        s.negotiated_timeout_ms,
                        state_name(s.state()),
                        if s.remote_address.is_empty() {
                            "-"
                        } else {
                            &s.remote_address
                        },
                        s.ephemeral_count,
                        s.last_heard_ms_ago,
                        s.expires_in_ms,
                        s.client
                    );
                }
            }
        }
        AdminCommand::Session { id } => {
            let session_id = parse_session_id(&id)?;
            let session = admin
                .get_session(admin::GetSessionRequest { session_id })
                .await?
                .into_inner()
                .session
                .ok_or_else(|| CliError::Admin(format!("no session {id} in the answer")))?;
            let value = session_json(&session);
            print(json, value.clone(), || json_as_lines(&value));
        }
        AdminCommand::Expire { id } => {
            let session_id = parse_session_id(&id)?;
            admin
                .expire_session(admin::ExpireSessionRequest { session_id })
                .await?;
            let id = SessionId::from_u64(session_id).to_string();
            print(json, json!({ "expired": id }), || format!("expired {id}"));
        }
        AdminCommand::Stats => {
            let stats = admin.stats(admin::StatsRequest {}).await?.into_inner();
            let mut ops: Vec<_> = stats.ops_by_kind.iter().collect();
            ops.sort();
            let value = json!({
                "sessions": stats.sessions,
                "connections": stats.connections,
                "sessions_expired": stats.sessions_expired,
                "uptime_ms": stats.uptime_ms,
                "server_id": stats.server_id,
                "zxid": stats.zxid,
                "nodes": stats.nodes,
                "durable": stats.durable,
                "snapshot_zxid": stats.snapshot_zxid,
                "snapshot_bytes": stats.snapshot_bytes,
                "log_bytes": stats.log_bytes,
                "ops_by_kind": stats.ops_by_kind,
            });
            print(json, value, || {
                let mut text = format!(
                    "sessions          {}\nconnections       {}\nsessions_expired  {}\nuptime_ms         {}\nserver_id         {}\nzxid              {}\nnodes             {}\ndurable           {}\nsnapshot_zxid     {}\nsnapshot_bytes    {}\nlog_bytes         {}",
                    stats.sessions,
                    stats.connections,
                    stats.sessions_expired,
                    stats.uptime_ms,
                    stats.server_id,
                    stats.zxid,
                    stats.nodes,
                    stats.durable,
                    stats.snapshot_zxid,
                    stats.snapshot_bytes,
                    stats.log_bytes
                );
                for (kind, count) in ops {
                    text.push_str(&format!("\nops.{kind:<13} {count}"));
                }
                text
            });
        }
        AdminCommand::Dump => {
            let dump = admin
                .dump_expiry(admin::DumpExpiryRequest {})
                .await?
                .into_inner();
            let buckets: Vec<Value> = dump
                .buckets
                .iter()
                .map(|bucket| {
                    json!({
                        "due_in_ms": bucket.due_in_ms,
                        "sessions": bucket.session_ids.iter()
                            .map(|id| SessionId::from_u64(*id).to_string())
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            print(
                json,
                json!({ "tick_ms": dump.tick_ms, "buckets": buckets }),
                || {
                    let mut text = format!("tick {} ms", dump.tick_ms);
                    for bucket in &dump.buckets {
                        let ids: Vec<String> = bucket
                            .session_ids
                            .iter()
                            .map(|id| SessionId::from_u64(*id).to_string())
                            .collect();
                        text.push_str(&format!(
                            "\nin {:>6} ms: {}",
                            bucket.due_in_ms,
                            ids.join(" ")
                        ));
                    }
                    text
                },
            );
        }
        AdminCommand::Cluster => {
            let status = admin
                .cluster_status(admin::ClusterStatusRequest {})
                .await?
                .into_inner();
            let members: Vec<Value> = status
                .members
                .iter()
                .map(|member| {
                    json!({
                        "node_id": member.node_id,
                        "peer_address": member.peer_address,
                        "role": role_name(member.role()),
                        "voter": member.voter,
                        "applied_zxid": member.applied_zxid,
                        "lag_entries": member.lag_entries,
                    })
                })
                .collect();
            print(
                json,
                json!({
                    "node_id": status.node_id,
                    "leader_id": status.leader_id,
                    "term": status.term,
                    "members": members,
                }),
                || {
                    let mut text = format!(
                        "asked server {}, leader {}, term {}\n{:<4} {:<22} {:<11} {:<5} {:>12} {:>5}",
                        status.node_id,
                        if status.leader_id == 0 {
                            "none".to_owned()
                        } else {
                            status.leader_id.to_string()
                        },
                        status.term,
                        "id",
                        "peer address",
                        "role",
                        "voter",
                        "applied_zxid",
                        "lag"
                    );
                    for member in &status.members {
                        text.push_str(&format!(
                            "\n{:<4} {:<22} {:<11} {:<5} {:>12} {:>5}",
                            member.node_id,
                            member.peer_address,
                            role_name(member.role()),
                            if member.voter { "yes" } else { "no" },
                            member.applied_zxid,
                            member
                                .lag_entries
                                .map_or_else(|| "?".to_owned(), |lag| lag.to_string()),
                        ));
                    }
                    text
                },
            );
        }
        AdminCommand::AddLearner {
            node_id,
            peer_address,
        } => {
            let after = admin
                .add_learner(admin::AddLearnerRequest {
                    node_id,
                    peer_address,
                })
                .await?
                .into_inner();
            print_membership(json, &after);
        }
        AdminCommand::Promote { node_id } => {
            let after = admin
                .promote_learner(admin::PromoteLearnerRequest { node_id })
                .await?
                .into_inner();
            print_membership(json, &after);
        }
        AdminCommand::Remove { node_id } => {
            let after = admin
                .remove_member(admin::RemoveMemberRequest { node_id })
                .await?
                .into_inner();
            print_membership(json, &after);
        }
        AdminCommand::Events => {
            let mut stream = admin
                .watch_session_events(admin::WatchSessionEventsRequest {})
                .await?
                .into_inner();
            let mut interrupted = std::pin::pin!(interrupted());
            loop {
                tokio::select! {
                    event = stream.message() => match event? {
                        Some(event) => {
                            let kind = event_name(event.kind());
                            let id = SessionId::from_u64(event.session_id).to_string();
                            print(
                                json,
                                json!({
                                    "kind": kind,
                                    "session": id,
                                    "remote_address": event.remote_address,
                                    "negotiated_timeout_ms": event.negotiated_timeout_ms,
                                    "zxid": event.zxid,
                                }),
                                || format!("{kind:<10} {id} {}", event.remote_address),
                            );
                        }
                        None => return Ok(()),
                    },
                    _ = &mut interrupted => return Ok(()),
                }
            }
        }
    }
    Ok(())
}

/// Which recipe `lock` and `elect` run a command under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contest {
    Lock,
    Election,
}

/// A held lock or leadership.
#[derive(Debug)]
enum Held {
    Lock(LockGuard),
    Leader(Leadership),
}

impl Held {
    fn token(&self) -> FencingToken {
        match self {
            Held::Lock(guard) => guard.token(),
            Held::Leader(leadership) => leadership.token(),
        }
    }

    fn node(&self) -> &str {
        match self {
            Held::Lock(guard) => guard.node(),
            Held::Leader(leadership) => leadership.node(),
        }
    }

    fn is_valid(&self) -> bool {
        match self {
            Held::Lock(guard) => guard.is_valid(),
            Held::Leader(leadership) => leadership.is_valid(),
        }
    }

    async fn lost(&self) {
        match self {
            Held::Lock(guard) => guard.lost().await,
            Held::Leader(leadership) => leadership.lost().await,
        }
    }

    async fn release(self) -> Result<(), Error> {
        match self {
            Held::Lock(guard) => guard.release().await,
            Held::Leader(leadership) => leadership.resign().await,
        }
    }
}

/// `lock` and `elect`: a command run while a lock or leadership is held,
/// and never without it.
mod exclusive {
    use super::*;

    /// The exit status when the lock was lost (EX_TEMPFAIL: try again).
    const LOST: u8 = 75;

    pub(super) async fn run(
        connect: session_client::ClientBuilder,
        contest: Contest,
        args: Exclusive,
    ) -> Result<ExitCode, CliError> {
        let what = match contest {
            Contest::Lock => "the lock",
            Contest::Election => "the leadership",
        };
        let grace = Duration::from_millis(args.grace_ms);
        let mut stopped = std::pin::pin!(stop_signal());
        // The client of the last turn, for the next one.
        let mut kept: Option<Client> = None;
        loop {
            let live = kept
                .take()
                .filter(|client| !client.state().borrow().is_terminal());
            let client = match live {
                Some(client) => client,
                None => {
                    let connected = tokio::select! {
                        connected = connect.clone().connect() => connected,
                        signal = &mut stopped => return Ok(signalled(signal)),
                    };
                    match connected {
                        Ok(client) => client,
                        Err(err) if args.retry => {
                            eprintln!("session-cli: {err}; trying again");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            };
            let acquiring = async {
                match contest {
                    Contest::Lock => Lock::new(&client, args.path.as_str())
                        .data(args.id.clone())
                        .layout(args.layout.into())
                        .acquire()
                        .await
                        .map(Held::Lock),
                    Contest::Election => LeaderElection::new(&client, args.path.as_str())
                        .id(args.id.clone())
                        .layout(args.layout.into())
                        .campaign()
                        .await
                        .map(Held::Leader),
                }
            };
            let acquired = tokio::select! {
                acquired = acquiring => acquired,
                signal = &mut stopped => {
                    client.close().await;
                    return Ok(signalled(signal));
                }
            };
            let held = match acquired {
                Ok(held) => held,
                Err(err) if err.is_terminal() && args.retry => continue,
                Err(err) => {
                    client.close().await;
                    return Err(err.into());
                }
            };
            let token = held.token();
            eprintln!(
                "session-cli: holding {what} at {} (token {token})",
                held.node()
            );
            let mut child = if held.is_valid() {
                Some(spawn(&args.command, token, held.node())?)
            } else {
                None
            };
            // Kept: once the child is reaped, `Child::id` is gone.
            let group = child.as_ref().and_then(tokio::process::Child::id);
            let outcome = match child.as_mut() {
                None => Outcome::Lost,
                Some(child) => tokio::select! {
                    biased;
                    () = held.lost() => Outcome::Lost,
                    status = child.wait() => Outcome::Exited(status?),
                    signal = &mut stopped => Outcome::Signalled(signal),
                },
            };
            if let Some(child) = child.as_mut() {
                if !matches!(outcome, Outcome::Exited(_)) {
                    stop(child, group, grace).await;
                }
            }
            // What the command left running in its process group: nothing
            // runs on without the lock.
            signal_group(group, Signal::Kill);
            match outcome {
                Outcome::Exited(status) => {
                    let released = held.release().await;
                    client.close().await;
                    released?;
                    return Ok(exit_code(status));
                }
                Outcome::Signalled(signal) => {
                    let _ = held.release().await;
                    client.close().await;
                    return Ok(signalled(signal));
                }
                Outcome::Lost => {
                    eprintln!(
                        "session-cli: lost {what} at {} (session {:?}): stopped the command",
                        held.node(),
                        *client.state().borrow()
                    );
                    if !args.retry {
                        client.close().await;
                        return Ok(ExitCode::from(LOST));
                    }
                    // Gone with the session, or deleted once connected again.
                    let releasing = held.release();
                    tokio::select! {
                        _ = releasing => {}
                        signal = &mut stopped => {
                            client.close().await;
                            return Ok(signalled(signal));
                        }
                    }
                    eprintln!("session-cli: waiting for {what} again");
                    kept = Some(client);
                }
            }
        }
    }

    enum Outcome {
        Exited(ExitStatus),
        Lost,
        Signalled(i32),
    }

    /// The exit code of a command: its own, or 128 + the signal that
    /// killed it, as a shell reports it.
    fn exit_code(status: ExitStatus) -> ExitCode {
        #[cfg(unix)]
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            return signalled(signal);
        }
        match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
            None => ExitCode::FAILURE,
        }
    }

    fn signalled(signal: i32) -> ExitCode {
        ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
    }

    /// Starts the command with its token, in a process group of its own
    /// (so that stopping it stops what it started), killed if session-cli
    /// dies.
    fn spawn(
        command: &[String],
        token: FencingToken,
        node: &str,
    ) -> Result<tokio::process::Child, CliError> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| CliError::Usage("no command given after --".into()))?;
        let mut child = tokio::process::Command::new(program);
        child
            .args(args)
            .env("SESSION_LOCK_TOKEN", token.to_string())
            .env("SESSION_LOCK_NODE", node)
            .kill_on_drop(true);
        #[cfg(unix)]
        child.process_group(0);
        #[cfg(target_os = "linux")]
        die_with_parent(&mut child);
        child.spawn().map_err(|err| {
            CliError::Command(std::io::Error::new(
                err.kind(),
                format!("cannot run {program}: {err}"),
            ))
        })
    }

    /// Makes the kernel send SIGKILL to the child when session-cli dies,
    /// however it dies (PR_SET_PDEATHSIG): a command must never run on
    /// without the lock. The parent, for the kernel, is the thread that
    /// spawns the child: the main thread, on which the runtime's
    /// `block_on` polls `run` (not a worker thread, which may exit).
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn die_with_parent(command: &mut tokio::process::Command) {
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec, so it
        // must only make async-signal-safe calls: prctl and getppid are
        // system calls, and it allocates nothing (last_os_error and
        // from_raw_os_error build an error without allocating).
        unsafe {
            command.pre_exec(move || {
                let signal = libc::SIGKILL as libc::c_ulong;
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl: nobody would kill us.
                if u32::try_from(libc::getppid()) != Ok(parent) {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Signal {
        Terminate,
        Kill,
    }

    /// Sends `signal` to the process group `group` (the command's pid):
    /// the kernel does not reuse a pid while a group of that id has
    /// members.
    #[cfg(unix)]
    #[allow(unsafe_code)]
    fn signal_group(group: Option<u32>, signal: Signal) {
        let Some(pid) = group.and_then(|pid| i32::try_from(pid).ok()) else {
            return;
        };
        let signal = match signal {
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        // SAFETY: kill(2) takes plain integers and touches no memory of
        // ours; a group already gone is ESRCH, ignored.
        unsafe {
            libc::kill(-pid, signal);
        }
    }

    /// Elsewhere the child alone is killed, by `stop`.
    #[cfg(not(unix))]
    fn signal_group(_group: Option<u32>, _signal: Signal) {}

    /// SIGTERM to the command's group, SIGKILL after `grace`.
    async fn stop(child: &mut tokio::process::Child, group: Option<u32>, grace: Duration) {
        signal_group(group, Signal::Terminate);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            signal_group(group, Signal::Kill);
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Resolves with the signal's number on SIGINT, SIGTERM or SIGHUP (on
    /// Ctrl-C elsewhere). The handlers are installed when this is called.
    fn stop_signal() -> impl Future<Output = i32> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut handlers: Vec<_> = [
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
            ]
            .into_iter()
            .filter_map(|kind| Some((kind.as_raw_value(), signal(kind).ok()?)))
            .collect();
            async move {
                let waits = handlers.iter_mut().map(|(number, handler)| {
                    Box::pin(async move {
                        handler.recv().await;
                        *number
                    })
                });
                futures_util::future::select_all(waits).await.0
            }
        }
        #[cfg(not(unix))]
        async {
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }
}

/// Resolves on Ctrl-C. The handler is installed when this is called, not when
/// the future is first polled, so a Ctrl-C that comes right after a line was
/// printed is not lost (and does not kill the process before it closes its
/// session).
fn interrupted() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        if let Some(signal) = signal.as_mut() {
            signal.recv().await;
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A member's role as the table shows it.
fn role_name(role: admin::MemberRole) -> &'static str {
    match role {
        admin::MemberRole::Leader => "leader",
        admin::MemberRole::Follower => "follower",
        admin::MemberRole::Learner => "learner",
        admin::MemberRole::Candidate => "candidate",
        admin::MemberRole::Unreachable => "unreachable",
        admin::MemberRole::Unspecified => "unknown",
    }
}

/// The membership after a change.
fn print_membership(json: bool, after: &admin::MembershipResponse) {
    print(
        json,
        json!({ "voters": after.voters, "learners": after.learners }),
        || format!("voters {:?}\nlearners {:?}", after.voters, after.learners),
    );
}

fn print(json: bool, value: Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

fn parse_session_id(text: &str) -> Result<u64, CliError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| {
        CliError::Usage(format!(
            "invalid session id {text:?}: expected 0x followed by hexadecimal digits, or a decimal number"
        ))
    })
}

/// A stat as JSON. The keys are those `session-cli` has always printed
/// (`ctime_ms`, `mtime_ms`, `ephemeral_owner` as a session id or null), whatever
/// the field names of [`Stat`]: scripts read them.
fn stat_json(stat: &Stat) -> Value {
    json!({
        "czxid": stat.czxid,
        "mzxid": stat.mzxid,
        "pzxid": stat.pzxid,
        "ctime_ms": stat.ctime,
        "mtime_ms": stat.mtime,
        "version": stat.version,
        "cversion": stat.cversion,
        "ephemeral_owner": (stat.ephemeral_owner != 0)
            .then(|| SessionId::from_u64(stat.ephemeral_owner).to_string()),
        "data_length": stat.data_length,
        "num_children": stat.num_children,
    })
}

fn stat_text(stat: &Stat) -> String {
    json_as_lines(&stat_json(stat))
}

/// A flat JSON object as aligned `key value` lines.
fn json_as_lines(value: &Value) -> String {
    let Some(object) = value.as_object() else {
        return value.to_string();
    };
    object
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            format!("{key:<22}{value}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn session_json(session: &admin::SessionInfo) -> Value {
    json!({
        "session": SessionId::from_u64(session.session_id).to_string(),
        "timeout_ms": session.negotiated_timeout_ms,
        "state": state_name(session.state()),
        "remote_address": session.remote_address,
        "ephemerals": session.ephemeral_count,
        "last_heard_ms_ago": session.last_heard_ms_ago,
        "expires_in_ms": session.expires_in_ms,
        "client": session.client,
    })
}

fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Connected => "connected",
        SessionState::Disconnected => "disconnected",
        SessionState::Closing => "closing",
        SessionState::Unspecified => "unknown",
    }
}

fn event_name(kind: SessionEventKind) -> &'static str {
    match kind {
        SessionEventKind::Created => "created",
        SessionEventKind::Reattached => "reattached",
        SessionEventKind::Expired => "expired",
        SessionEventKind::Closed => "closed",
        SessionEventKind::Unspecified => "unknown",
    }
}
