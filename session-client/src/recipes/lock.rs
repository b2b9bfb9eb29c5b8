//! [`Lock`]: a fair mutual exclusion lock, ZooKeeper's recipe without herd
//! effect, whose holder gets a fencing token.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::{Client, Error};

use super::hold::{Contest, FencingToken, Hold, Participant};
use super::names::{NodeLayout, Queue, normalize};

/// A distributed, fair (first come, first served) mutual exclusion lock on
/// a path: ZooKeeper's lock recipe without herd effect, in Curator's node
/// layout (see [`NodeLayout`]).
///
/// Each [`acquire`](Self::acquire) creates an ephemeral sequential node
/// `<path>/_c_<uuid>-lock-<seq>` (parents created as containers) and holds
/// the lock when its node is the first of the queue; until then it watches
/// only the node just before its own, so a release wakes one waiter. The
/// holder gets a [`LockGuard`] with a [`FencingToken`] and a validity that
/// turns false the moment the client is suspended (or its session ends,
/// or the node is deleted): stop working then, the session may be gone and
/// the next holder may have the lock. Not reentrant: each `acquire` is a
/// new contender, even from the same client.
///
/// ```no_run
/// use session_client::recipes::{FencingToken, Lock};
/// use session_client::{Client, Error};
///
/// # async fn write_report(token: FencingToken) {}
/// # async fn run() -> Result<(), Error> {
/// let client = Client::builder().servers("127.0.0.1:7181").connect().await?;
/// let lock = Lock::new(&client, "/locks/reports");
/// let guard = lock.acquire().await?;
/// // The storage refuses writes with a token lower than one it has seen.
/// tokio::select! {
///     () = write_report(guard.token()) => {}
///     () = guard.lost() => eprintln!("lost the lock: stopped writing"),
/// }
/// guard.release().await?; // or drop it: the node is deleted in the background
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    contest: Contest,
}

impl Lock {
    /// A lock on `path`, whose children will be the contenders' nodes; the
    /// path and its parents are created (as containers) when missing.
    #[must_use]
    pub fn new(client: &Client, path: impl Into<String>) -> Self {
        Self {
            contest: Contest {
                client: client.clone(),
                dir: normalize(path.into()),
                data: Bytes::new(),
                layout: NodeLayout::default(),
                queue: Queue::Lock,
            },
        }
    }

    /// The data of this client's lock nodes (empty by default), which
    /// [`contenders`](Self::contenders) shows: say, a host name. Curator
    /// puts the contender's IP address there, kazoo its identifier.
    #[must_use]
    pub fn data(mut self, data: impl Into<Bytes>) -> Self {
        self.contest.data = data.into();
        self
    }

    /// Whose node names to use (default [`NodeLayout::Curator`]).
    #[must_use]
    pub fn layout(mut self, layout: NodeLayout) -> Self {
        self.contest.layout = layout;
        self
    }

    /// The lock's path.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.contest.dir
    }

    /// Waits for the lock, as long as it takes. A connection loss meanwhile
    /// is waited out (the place in the queue is kept while the session
    /// lives); dropping the future leaves the queue.
    ///
    /// # Errors
    /// The session errors (`SessionExpired`, `Closed`, `AuthFailed`: the
    /// place is lost with the session), and the server's errors for the
    /// path (`NoAuth`, `InvalidPath`, `NoChildrenForEphemerals`, ...).
    pub async fn acquire(&self) -> Result<LockGuard, Error> {
        let hold = self.contest.enter(true).await?;
        Ok(LockGuard {
            hold: hold.expect("invariant: a waiting entry returns only when first"),
        })
    }

    /// Takes the lock if nobody holds it or waits for it; `None` otherwise.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>, Error> {
        let hold = self.contest.enter(false).await?;
        Ok(hold.map(|hold| LockGuard { hold }))
    }

    /// Waits for the lock for at most `timeout`; `None` if it did not come
    /// (this client's node is deleted again).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard>, Error> {
        let hold = self.contest.enter_within(timeout).await?;
        Ok(hold.map(|hold| LockGuard { hold }))
    }

    /// The nodes in the lock's queue, the holder first, whichever library
    /// made them.
    ///
    /// # Errors
    /// The session errors, and the server's errors for the path.
    pub async fn contenders(&self) -> Result<Vec<Participant>, Error> {
        self.contest.participants().await
    }
}

/// The lock, held; from [`Lock::acquire`]. Dropping it releases the lock
/// (in the background); [`release`](Self::release) waits for the delete.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    hold: Hold,
}

impl LockGuard {
    /// This holder's fencing token: the czxid of its lock node, higher
    /// than that of every earlier holder of the lock.
    #[must_use]
    pub fn token(&self) -> FencingToken {
        self.hold.token()
    }

    /// The path of this holder's lock node.
    #[must_use]
    pub fn node(&self) -> &str {
        self.hold.node()
    }

    /// Whether the holder may still act as the holder: true until the
    /// client is first not `Connected` (suspended, expired, closed) or the
    /// node is deleted, then false for good. A client suspended for less
    /// than its session timeout keeps its session and node; the guard
    /// stays invalid all the same (the session was in doubt): release it
    /// and acquire again.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.hold.is_valid()
    }

    /// The validity as a `watch` channel, to select on or hand to a task
    /// doing the holder's work.
    #[must_use]
    pub fn validity(&self) -> watch::Receiver<bool> {
        self.hold.validity()
    }

    /// Resolves when the guard becomes invalid (at once if it is already).
    pub async fn lost(&self) {
        self.hold.lost().await;
    }

    /// Releases the lock: deletes the node and waits for the server to
    /// confirm it (after a connection loss, once connected again). The
    /// guard is invalid from the start of the call.
    ///
    /// # Errors
    /// The server's errors other than `NoNode` (a node already gone, or a
    /// session already over, is released). On an error the node is deleted
    /// in the background all the same.
    pub async fn release(self) -> Result<(), Error> {
        self.hold.release().await
    }
}
