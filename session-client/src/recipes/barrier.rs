//! Barriers: [`Barrier`], up while its node exists, and [`DoubleBarrier`],
//! which a set number of members enter together and leave together.

use std::time::Duration;

use crate::{Client, CreateMode, Error};

use super::names::{child_path, name_of, normalize};
use super::session::{delete_until_gone, ensure_path, recover, retrying};

/// A barrier: up while its node exists; [`wait`](Self::wait) blocks until
/// someone [`remove`](Self::remove)s it. ZooKeeper's barrier recipe, the
/// layout of Curator's DistributedBarrier and kazoo's Barrier (the node
/// itself), so they interoperate.
///
/// ```no_run
/// use session_client::recipes::Barrier;
/// use session_client::{Client, Error};
///
/// # async fn run() -> Result<(), Error> {
/// let client = Client::builder().servers("127.0.0.1:7181").connect().await?;
/// let migration = Barrier::new(&client, "/barriers/migration");
/// migration.set().await?; // the coordinator
/// // ... the workers, elsewhere:
/// migration.wait().await?; // until the coordinator calls remove()
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Barrier {
    client: Client,
    path: String,
}

impl Barrier {
    /// A barrier whose node is `path`.
    #[must_use]
    pub fn new(client: &Client, path: impl Into<String>) -> Self {
        Self {
            client: client.clone(),
            path: normalize(path.into()),
        }
    }

    /// The barrier's node.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Puts the barrier up: creates its node (persistent; missing parents
    /// as containers). Already up is no error.
    ///
    /// # Errors
    /// The session errors, and the server's errors for the path.
    pub async fn set(&self) -> Result<(), Error> {
        ensure_path(&self.client, &self.path, CreateMode::Persistent).await
    }

    /// Takes the barrier down: deletes its node, which releases every
    /// waiter. Already down is no error.
    ///
    /// # Errors
    /// `NotEmpty` when the node has children, the session errors, and the
    /// server's errors for the path.
    pub async fn remove(&self) -> Result<(), Error> {
        let client = &self.client;
        match retrying(client, || client.delete(&self.path, None)).await {
            Ok(()) | Err(Error::NoNode { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether the barrier is up.
    ///
    /// # Errors
    /// The session errors.
    pub async fn is_set(&self) -> Result<bool, Error> {
        let client = &self.client;
        Ok(retrying(client, || client.exists(&self.path))
            .await?
            .is_some())
    }

    /// Waits until the barrier is down (at once if it is), through
    /// connection losses.
    ///
    /// # Errors
    /// The session errors.
    pub async fn wait(&self) -> Result<(), Error> {
        let client = &self.client;
        loop {
            match client.exists_and_watch(&self.path).await {
                Ok((None, _)) => return Ok(()),
                Ok((Some(_), changed)) => match changed.await {
                    Err(error) if error.is_terminal() => return Err(error),
                    _ => {}
                },
                Err(error) => recover(client, error).await?,
            }
        }
    }

    /// Waits at most `timeout` for the barrier to be down; whether it is.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        match tokio::time::timeout(timeout, self.wait()).await {
            Ok(waited) => waited.map(|()| true),
            Err(_) => Ok(false),
        }
    }
}

/// The name of the node that says a [`DoubleBarrier`] is full.
const READY: &str = "ready";

/// A double barrier: [`enter`](Self::enter) waits until `members`
/// participants have entered, [`leave`](Self::leave) until every one that
/// entered has left (ZooKeeper's double barrier recipe). Each participant
/// is an ephemeral node `<path>/<uuid>`, and the node `<path>/ready`
/// appears when enough have entered: the layout of Curator's
/// DistributedDoubleBarrier, so the two interoperate.
///
/// ```no_run
/// use session_client::recipes::DoubleBarrier;
/// use session_client::{Client, Error};
///
/// # async fn compute() {}
/// # async fn run() -> Result<(), Error> {
/// let client = Client::builder().servers("127.0.0.1:7181").connect().await?;
/// let round = DoubleBarrier::new(&client, "/barriers/round-7", 3);
/// round.enter().await?; // all 3 start together
/// compute().await;
/// round.leave().await?; // and finish together
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DoubleBarrier {
    client: Client,
    dir: String,
    node: String,
    members: usize,
}

impl DoubleBarrier {
    /// A participant of the double barrier on `path` for `members`
    /// participants (a threshold: more may enter).
    #[must_use]
    pub fn new(client: &Client, path: impl Into<String>, members: usize) -> Self {
        let dir = normalize(path.into());
        let node = child_path(&dir, &super::names::random_uuid());
        Self {
            client: client.clone(),
            dir,
            node,
            members,
        }
    }

    /// The barrier's path.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.dir
    }

    /// Enters: creates this participant's node and waits until `members`
    /// have entered.
    ///
    /// # Errors
    /// The session errors (the participant's node goes with its session),
    /// and the server's errors for the path.
    pub async fn enter(&self) -> Result<(), Error> {
        let client = &self.client;
        let ready = child_path(&self.dir, READY);
        let (already, mut ready_watch) =
            retrying(client, || client.exists_and_watch(&ready)).await?;
        loop {
            match client.create(&self.node, b"", CreateMode::Ephemeral).await {
                // Exists: created by a try whose answer was lost.
                Ok(_) | Err(Error::NodeExists { .. }) => break,
                Err(Error::NoNode { .. }) => {
                    ensure_path(client, &self.dir, CreateMode::Container).await?;
                }
                Err(error) => recover(client, error).await?,
            }
        }
        if already.is_some() {
            return Ok(());
        }
        loop {
            let children = retrying(client, || client.children(&self.dir)).await?;
            if children.iter().filter(|name| *name != READY).count() >= self.members {
                return match retrying(client, || {
                    client.create(&ready, b"", CreateMode::Persistent)
                })
                .await
                {
                    Ok(_) | Err(Error::NodeExists { .. }) => Ok(()),
                    Err(error) => Err(error),
                };
            }
            match ready_watch.await {
                Err(error) if error.is_terminal() => return Err(error),
                _ => {}
            }
            let (ready_now, watch) = retrying(client, || client.exists_and_watch(&ready)).await?;
            if ready_now.is_some() {
                return Ok(());
            }
            ready_watch = watch;
        }
    }

    /// Leaves: deletes this participant's node and waits until every
    /// participant has left, then removes the ready node.
    ///
    /// # Errors
    /// The session errors, and the server's errors for the path.
    pub async fn leave(&self) -> Result<(), Error> {
        let client = &self.client;
        let ours = name_of(&self.node);
        loop {
            let mut children = match retrying(client, || client.children(&self.dir)).await {
                Ok(children) => children,
                Err(Error::NoNode { .. }) => Vec::new(),
                Err(error) => return Err(error),
            };
            children.retain(|name| name != READY);
            children.sort_unstable();
            let (Some(lowest), Some(highest)) = (children.first(), children.last()) else {
                break;
            };
            if children.len() == 1 && lowest == ours {
                delete_until_gone(client, &self.node).await?;
                break;
            }
            // The lowest leaves last, after the highest; every other one
            // leaves at once and waits for the lowest: no herd of watches
            // on one node.
            let wait_for = if lowest == ours {
                child_path(&self.dir, highest)
            } else {
                delete_until_gone(client, &self.node).await?;
                child_path(&self.dir, lowest)
            };
            match client.exists_and_watch(&wait_for).await {
                Ok((None, _)) => {}
                Ok((Some(_), changed)) => match changed.await {
                    Err(error) if error.is_terminal() => return Err(error),
                    _ => {}
                },
                Err(error) => recover(client, error).await?,
            }
        }
        let ready = child_path(&self.dir, READY);
        delete_until_gone(client, &ready).await
    }
}
