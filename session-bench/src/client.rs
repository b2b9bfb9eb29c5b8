//! One client API over both protocols: `session-client` for ours in v1, the
//! `zookeeper-client` crate for ZooKeeper and for ours through its
//! ZooKeeper listener. Each scenario is written once against
//! [`BenchClient`].

use std::fmt;
use std::time::Duration;

use session_client::{Client as OurClient, CreateMode, State};
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::{Protocol, Target};

/// What went wrong talking to either server, as text.
pub(crate) type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// A session on either server.
#[derive(Clone)]
pub(crate) enum BenchClient {
    /// A `session-client` session on session-server.
    Ours(OurClient),
    /// A `zookeeper-client` session on ZooKeeper or on session-server's
    /// ZooKeeper listener.
    Zk(zk::Client),
}

impl fmt::Debug for BenchClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchClient::Ours(client) => write!(f, "Ours({})", client.session_id()),
            BenchClient::Zk(client) => write!(f, "Zk({:?})", client.session_id()),
        }
    }
}

/// Whether a session is usable, on either server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Connected and answering.
    Connected,
    /// Between connections, session not known lost.
    Disconnected,
    /// Expired, closed or refused: the session is lost.
    Lost,
}

/// Follows a session's state changes.
#[derive(Debug)]
pub(crate) enum StateFollower {
    /// session-client's watch value.
    Ours(watch::Receiver<State>),
    /// zookeeper-client's state watcher.
    Zk(zk::StateWatcher),
}

impl StateFollower {
    /// The state now.
    pub(crate) fn now(&mut self) -> Liveness {
        match self {
            StateFollower::Ours(receiver) => ours_liveness(*receiver.borrow_and_update()),
            StateFollower::Zk(watcher) => zk_liveness(watcher.state()),
        }
    }

    /// Waits for the next change and returns the state after it.
    pub(crate) async fn changed(&mut self) -> Liveness {
        match self {
            StateFollower::Ours(receiver) => match receiver.changed().await {
                Ok(()) => ours_liveness(*receiver.borrow_and_update()),
                Err(_) => Liveness::Lost,
            },
            StateFollower::Zk(watcher) => zk_liveness(watcher.changed().await),
        }
    }
}

fn ours_liveness(state: State) -> Liveness {
    match state {
        State::Connected => Liveness::Connected,
        State::NotConnected | State::Connecting | State::Suspended => Liveness::Disconnected,
        _ => Liveness::Lost,
    }
}

fn zk_liveness(state: zk::SessionState) -> Liveness {
    match state {
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
            Liveness::Connected
        }
        zk::SessionState::Disconnected => Liveness::Disconnected,
        _ => Liveness::Lost,
    }
}

/// Whether `err` is either server's answer that a node does not exist.
pub(crate) fn is_no_node(err: &BenchError) -> bool {
    matches!(
        err.downcast_ref::<session_client::Error>(),
        Some(session_client::Error::NoNode { .. })
    ) || matches!(err.downcast_ref::<zk::Error>(), Some(zk::Error::NoNode))
}

/// What the session-client and zookeeper-client paths answer for etcd,
/// whose scenarios live in [`crate::etcd`] (dispatched before them).
pub(crate) const NOT_ETCD: &str = "etcd scenarios are run by the etcd module";

impl BenchClient {
    /// Opens a session with `timeout` on the server at `addr`.
    pub(crate) async fn connect(
        target: Target,
        addr: &str,
        timeout: Duration,
    ) -> Result<BenchClient, BenchError> {
        match target.protocol() {
            Protocol::V1 => {
                let client = OurClient::builder()
                    .servers(addr)
                    .session_timeout(timeout)
                    .connect()
                    .await?;
                Ok(BenchClient::Ours(client))
            }
            Protocol::Zk => {
                let client = zk::Client::connector()
                    .with_session_timeout(timeout)
                    .connect(addr)
                    .await?;
                Ok(BenchClient::Zk(client))
            }
            Protocol::Etcd => Err(NOT_ETCD.into()),
        }
    }

    /// The session id as a number, to compare before and after a reconnect.
    pub(crate) fn session_id(&self) -> u64 {
        match self {
            BenchClient::Ours(client) => client.session_id().as_u64(),
            BenchClient::Zk(client) => client.session_id().0 as u64,
        }
    }

    /// Follows this session's state from now on.
    pub(crate) fn follow(&self) -> StateFollower {
        match self {
            BenchClient::Ours(client) => StateFollower::Ours(client.state()),
            BenchClient::Zk(client) => StateFollower::Zk(client.state_watcher()),
        }
    }

    /// Creates `path` as a persistent node unless it exists.
    pub(crate) async fn ensure_persistent(&self, path: &str) -> Result<(), BenchError> {
        match self {
            BenchClient::Ours(client) => {
                match client.create(path, b"", CreateMode::Persistent).await {
                    Ok(_) | Err(session_client::Error::NodeExists { .. }) => Ok(()),
                    Err(err) => Err(err.into()),
                }
            }
            BenchClient::Zk(client) => {
                let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                match client.create(path, b"", &options).await {
                    Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                    Err(err) => Err(err.into()),
                }
            }
        }
    }

    /// Creates the ephemeral node `path` with `data`.
    pub(crate) async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<(), BenchError> {
        match self {
            BenchClient::Ours(client) => {
                client.create(path, data, CreateMode::Ephemeral).await?;
            }
            BenchClient::Zk(client) => {
                let options = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
                client.create(path, data, &options).await?;
            }
        }
        Ok(())
    }

    /// Deletes `path`, whatever its version.
    pub(crate) async fn delete(&self, path: &str) -> Result<(), BenchError> {
        match self {
            BenchClient::Ours(client) => client.delete(path, None).await?,
            BenchClient::Zk(client) => client.delete(path, None).await?,
        }
        Ok(())
    }

    /// Whether `path` exists.
    pub(crate) async fn exists(&self, path: &str) -> Result<bool, BenchError> {
        match self {
            BenchClient::Ours(client) => Ok(client.exists(path).await?.is_some()),
            BenchClient::Zk(client) => Ok(client.check_stat(path).await?.is_some()),
        }
    }

    /// How many children `path` has (from its stat: one small reply however
    /// many children there are).
    pub(crate) async fn child_count(&self, path: &str) -> Result<u64, BenchError> {
        match self {
            BenchClient::Ours(client) => Ok(client
                .exists(path)
                .await?
                .map_or(0, |stat| u64::from(stat.num_children))),
            BenchClient::Zk(client) => Ok(client
                .check_stat(path)
                .await?
                .map_or(0, |stat| u64::try_from(stat.num_children).unwrap_or(0))),
        }
    }

    /// The names of `path`'s children.
    pub(crate) async fn children(&self, path: &str) -> Result<Vec<String>, BenchError> {
        match self {
            BenchClient::Ours(client) => Ok(client.children(path).await?),
            BenchClient::Zk(client) => Ok(client.list_children(path).await?),
        }
    }

    /// Closes the session (its ephemerals go at once).
    pub(crate) async fn close(self) {
        match self {
            BenchClient::Ours(client) => client.close().await,
            BenchClient::Zk(client) => drop(client),
        }
    }
}
