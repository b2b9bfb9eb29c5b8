//! Holding the first place of a queue of sequential nodes (a lock, a
//! leadership): the fencing token, the validity that turns false the moment
//! the session is in doubt or the node is gone, and the release.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Client, Error, EventKind, ReadOp, ReadOutcome, State, StateEvents};

use super::NodeLayout;
use super::names::{Queue, child_path};
use super::session::{
    OwnedNode, create_protected, delete_until_gone, recover, retrying, wait_connected,
};

/// A number that grows with every new holder of a lock or leadership: the
/// zxid of the creation of the holder's node (its `Stat::czxid`).
///
/// A holder passes it along with every write to a storage system, which
/// remembers the highest token it has seen and refuses writes with a lower
/// one: a holder that was paused or cut off and lost the lock without
/// knowing it cannot overwrite its successor's work (Chubby's sequencers,
/// Kleppmann's fencing tokens). Any client of the service can compute it,
/// Curator's and kazoo's included: it is the czxid of the holder's node.
///
/// ```
/// use session_client::recipes::FencingToken;
///
/// let token = FencingToken::new(0x1_0000_002a);
/// assert_eq!(token.to_string(), "4294967338");
/// assert_eq!("4294967338".parse::<FencingToken>(), Ok(token));
/// assert!(FencingToken::new(7) < token);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// The token of a node created by the transaction `czxid`.
    #[must_use]
    pub const fn new(czxid: u64) -> Self {
        Self(czxid)
    }

    /// The zxid it stands for.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    /// Decimal, as `session-cli lock` puts it in `SESSION_LOCK_TOKEN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for FencingToken {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Self)
    }
}

/// One node of a lock's or an election's queue, as
/// [`Lock::contenders`](super::Lock::contenders) and
/// [`LeaderElection::participants`](super::LeaderElection::participants)
/// list them, first (the holder) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The node's path.
    pub node: String,
    /// Its data: what the contender said about itself (Curator writes its
    /// IP address or a LeaderLatch id, kazoo its identifier).
    pub data: Bytes,
    /// The token it holds, or will hold, the lock with.
    pub token: FencingToken,
}

/// A queue of ephemeral sequential nodes under `dir`, served in order, each
/// waiting for the one before it only (ZooKeeper's lock recipe without
/// herd effect).
#[derive(Debug, Clone)]
pub(crate) struct Contest {
    pub(crate) client: Client,
    pub(crate) dir: String,
    pub(crate) data: Bytes,
    pub(crate) layout: NodeLayout,
    pub(crate) queue: Queue,
}

impl Contest {
    /// Joins the queue and, with `wait`, waits to be first; without, leaves
    /// again at once when it is not first. Cancel-safe: a dropped future
    /// deletes its node in the background.
    pub(crate) async fn enter(&self, wait: bool) -> Result<Option<Hold>, Error> {
        let mut ours = OwnedNode::new(&self.client);
        self.enter_with(wait, &mut ours).await
    }

    /// Waits at most `timeout` to be first; on timeout deletes this
    /// client's node before returning `None`.
    pub(crate) async fn enter_within(&self, timeout: Duration) -> Result<Option<Hold>, Error> {
        let mut ours = OwnedNode::new(&self.client);
        match tokio::time::timeout(timeout, self.enter_with(true, &mut ours)).await {
            Ok(entered) => entered,
            Err(_) => {
                ours.delete().await?;
                Ok(None)
            }
        }
    }

    /// [`enter`](Self::enter), this client's node kept in `ours` (which
    /// deletes it when dropped, unless it was handed over to the hold).
    async fn enter_with(&self, wait: bool, ours: &mut OwnedNode) -> Result<Option<Hold>, Error> {
        let client = &self.client;
        let mut token = FencingToken(0);
        loop {
            if ours.path().is_none() {
                let prefix = self.queue.fresh_prefix(self.layout);
                ours.creating(&self.dir, &prefix);
                let (path, stat) = create_protected(client, &self.dir, &prefix, &self.data).await?;
                ours.created(path);
                token = FencingToken(stat.czxid);
            }
            // Subscribed before the check that makes this client the
            // holder: a suspension after it invalidates the hold.
            let events = client.events();
            let children = match client.children(&self.dir).await {
                Ok(children) => children,
                // The directory, and our node with it, was deleted.
                Err(Error::NoNode { .. }) => {
                    ours.forget();
                    continue;
                }
                Err(error) => {
                    recover(client, error).await?;
                    continue;
                }
            };
            let order = self.queue.order(children);
            let Some(place) = order
                .iter()
                .position(|name| Some(name.as_str()) == ours.name())
            else {
                // Someone deleted our node: take a new place at the end.
                ours.forget();
                continue;
            };
            if place == 0 {
                if *client.state().borrow() != State::Connected {
                    continue;
                }
                let node = ours
                    .take()
                    .expect("invariant: our node was found among the children");
                return Ok(Some(Hold::start(client, node, token, events)));
            }
            if !wait {
                ours.delete().await?;
                return Ok(None);
            }
            // Only the node just before ours: when it goes, one waiter
            // wakes, not all of them. get (not exists) leaves no watch
            // when it is gone already.
            let before = child_path(&self.dir, &order[place - 1]);
            match client.get_and_watch(&before).await {
                Ok((_, _, deleted)) => match deleted.await {
                    Err(error) if error.is_terminal() => return Err(error),
                    // Deleted, changed, or the watch was removed: look again.
                    _ => {}
                },
                Err(Error::NoNode { .. }) => {}
                Err(error) => recover(client, error).await?,
            }
        }
    }

    /// The queue's contenders in order, with their data and tokens.
    pub(crate) async fn participants(&self) -> Result<Vec<Participant>, Error> {
        let client = &self.client;
        let children = match retrying(client, || client.children(&self.dir)).await {
            Ok(children) => children,
            Err(Error::NoNode { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let nodes: Vec<String> = self
            .queue
            .order(children)
            .iter()
            .map(|name| child_path(&self.dir, name))
            .collect();
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let reads: Vec<ReadOp> = nodes.iter().map(ReadOp::get_data).collect();
        let outcomes = retrying(client, || client.multi_read(reads.clone())).await?;
        Ok(nodes
            .into_iter()
            .zip(outcomes)
            .filter_map(|(node, outcome)| match outcome {
                Ok(ReadOutcome::Data { data, stat }) => Some(Participant {
                    node,
                    data,
                    token: FencingToken(stat.czxid),
                }),
                // Gone since the listing.
                _ => None,
            })
            .collect())
    }
}

/// The first place of a queue, held: what a [`LockGuard`](super::LockGuard)
/// and a [`Leadership`](super::Leadership) are.
#[derive(Debug)]
pub(crate) struct Hold {
    client: Client,
    node: String,
    token: FencingToken,
    valid: watch::Sender<bool>,
    state: watch::Receiver<State>,
    monitor: JoinHandle<()>,
    released: bool,
}

impl Hold {
    fn start(client: &Client, node: String, token: FencingToken, events: StateEvents) -> Self {
        let state = client.state();
        let (valid, _) = watch::channel(*state.borrow() == State::Connected);
        let monitor = tokio::spawn(monitor(client.clone(), node.clone(), events, valid.clone()));
        Self {
            client: client.clone(),
            node,
            token,
            valid,
            state,
            monitor,
            released: false,
        }
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn token(&self) -> FencingToken {
        self.token
    }

    pub(crate) fn is_valid(&self) -> bool {
        // The client's state is read here too, not only by the monitor, so
        // a suspension counts from the moment the client knows it.
        let valid = *self.valid.borrow() && *self.state.borrow() == State::Connected;
        if !valid {
            self.valid.send_replace(false);
        }
        valid
    }

    pub(crate) fn validity(&self) -> watch::Receiver<bool> {
        self.is_valid();
        self.valid.subscribe()
    }

    pub(crate) async fn lost(&self) {
        let mut valid = self.validity();
        // The sender lives as long as `self`.
        let _ = valid.wait_for(|valid| !valid).await;
    }

    pub(crate) async fn release(mut self) -> Result<(), Error> {
        self.stop();
        let outcome = delete_until_gone(&self.client, &self.node).await;
        // Cancelled before this, or failed: `drop` deletes in the background.
        self.released = outcome.is_ok();
        outcome
    }

    fn stop(&self) {
        self.monitor.abort();
        self.valid.send_replace(false);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.stop();
        if !self.released {
            super::session::delete_path_in_background(&self.client, self.node.clone());
        }
    }
}

/// Turns `valid` false, for good, at the first state change away from
/// `Connected` (suspended, expired, closed) or when the node is deleted.
async fn monitor(
    client: Client,
    node: String,
    mut events: StateEvents,
    valid: watch::Sender<bool>,
) {
    let suspended = async {
        while let Some(state) = events.next().await {
            if state != State::Connected {
                return;
            }
        }
    };
    let deleted = async {
        loop {
            match client.get_and_watch(&node).await {
                Ok((_, _, watch)) => match watch.await {
                    Ok(event) if event.kind != EventKind::NodeDeleted => {}
                    _ => return,
                },
                Err(Error::NoNode { .. }) => return,
                // A connection loss is a state change: `suspended` sees it.
                Err(_) => {
                    if wait_connected(&client).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        biased;
        () = suspended => {}
        () = deleted => {}
    }
    valid.send_replace(false);
}
