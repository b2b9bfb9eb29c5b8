//! [`LeaderElection`]: one leader at a time among the candidates on a path,
//! the next one taking over when the leader resigns or its session ends.

use bytes::Bytes;
use tokio::sync::watch;

use crate::{Client, Error};

use super::hold::{Contest, FencingToken, Hold, Participant};
use super::names::{NodeLayout, Queue, normalize};

/// A leader election on a path: ZooKeeper's recipe, in the node layout of
/// Curator's LeaderLatch (see [`NodeLayout`]).
///
/// Each [`campaign`](Self::campaign) creates an ephemeral sequential node
/// `<path>/_c_<uuid>-latch-<seq>` holding the candidate's id and becomes
/// leader when its node is the first; until then it watches only the node
/// just before its own. The leader gets a [`Leadership`] with a
/// [`FencingToken`] and a validity that turns false the moment its client
/// is suspended (or its session ends, or its node is deleted). The next
/// candidate takes over when the leader resigns or its session ends.
///
/// ```no_run
/// use session_client::recipes::LeaderElection;
/// use session_client::{Client, Error};
///
/// # async fn serve_as_leader(epoch: u64) {}
/// # async fn run() -> Result<(), Error> {
/// let client = Client::builder().servers("127.0.0.1:7181").connect().await?;
/// let election = LeaderElection::new(&client, "/election/scheduler").id("host-7");
/// loop {
///     let leadership = election.campaign().await?;
///     println!("leader, epoch {}", leadership.token());
///     tokio::select! {
///         () = serve_as_leader(leadership.token().get()) => {
///             leadership.resign().await?;
///             return Ok(());
///         }
///         () = leadership.lost() => eprintln!("no longer sure to lead: stopped"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LeaderElection {
    contest: Contest,
}

impl LeaderElection {
    /// An election on `path`, whose children will be the candidates'
    /// nodes; the path and its parents are created (as containers) when
    /// missing.
    #[must_use]
    pub fn new(client: &Client, path: impl Into<String>) -> Self {
        Self {
            contest: Contest {
                client: client.clone(),
                dir: normalize(path.into()),
                data: Bytes::new(),
                layout: NodeLayout::default(),
                queue: Queue::Election,
            },
        }
    }

    /// This candidate's id, the data of its node (empty by default): what
    /// [`leader`](Self::leader) shows the others. Curator's LeaderLatch
    /// writes its participant id there, kazoo's Election its identifier.
    #[must_use]
    pub fn id(mut self, id: impl Into<Bytes>) -> Self {
        self.contest.data = id.into();
        self
    }

    /// Whose node names to use (default [`NodeLayout::Curator`], as
    /// LeaderLatch; [`NodeLayout::Kazoo`] for kazoo's Election).
    #[must_use]
    pub fn layout(mut self, layout: NodeLayout) -> Self {
        self.contest.layout = layout;
        self
    }

    /// The election's path.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.contest.dir
    }

    /// Stands as a candidate and waits until elected, as long as it takes.
    /// A connection loss meanwhile is waited out (the place is kept while
    /// the session lives); dropping the future withdraws the candidacy.
    ///
    /// # Errors
    /// The session errors (the candidacy ends with the session) and the
    /// server's errors for the path.
    pub async fn campaign(&self) -> Result<Leadership, Error> {
        let hold = self.contest.enter(true).await?;
        Ok(Leadership {
            hold: hold.expect("invariant: a waiting entry returns only when first"),
        })
    }

    /// The current leader, if any candidate stands.
    ///
    /// # Errors
    /// The session errors, and the server's errors for the path.
    pub async fn leader(&self) -> Result<Option<Participant>, Error> {
        Ok(self.contest.participants().await?.into_iter().next())
    }

    /// Every candidate, the leader first.
    ///
    /// # Errors
    /// The session errors, and the server's errors for the path.
    pub async fn participants(&self) -> Result<Vec<Participant>, Error> {
        self.contest.participants().await
    }
}

/// Being the leader; from [`LeaderElection::campaign`]. Dropping it
/// resigns (in the background); [`resign`](Self::resign) waits for it.
#[must_use = "the leadership ends when dropped"]
#[derive(Debug)]
pub struct Leadership {
    hold: Hold,
}

impl Leadership {
    /// This leader's fencing token (its epoch): the czxid of its node,
    /// higher than that of every earlier leader of the election.
    #[must_use]
    pub fn token(&self) -> FencingToken {
        self.hold.token()
    }

    /// The path of this leader's node.
    #[must_use]
    pub fn node(&self) -> &str {
        self.hold.node()
    }

    /// Whether this candidate may still act as the leader: true until its
    /// client is first not `Connected` or its node is deleted, then false
    /// for good (campaign again).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.hold.is_valid()
    }

    /// The validity as a `watch` channel.
    #[must_use]
    pub fn validity(&self) -> watch::Receiver<bool> {
        self.hold.validity()
    }

    /// Resolves when the leadership becomes invalid (at once if it is).
    pub async fn lost(&self) {
        self.hold.lost().await;
    }

    /// Steps down: deletes the node, so the next candidate takes over.
    ///
    /// # Errors
    /// As [`LockGuard::release`](super::LockGuard::release).
    pub async fn resign(self) -> Result<(), Error> {
        self.hold.release().await
    }
}
