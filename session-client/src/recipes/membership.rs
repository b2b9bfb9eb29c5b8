//! [`Membership`]: a service registry, each member an ephemeral node named
//! by its id, listed and watched by anyone.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Client, CreateMode, Error, ReadOp, ReadOutcome, Stat};

use super::names::{child_path, normalize};
use super::session::{
    delete_path_in_background, delete_until_gone, ensure_path, recover, retrying,
};

/// A group of members under a path, as in a service registry: each member
/// is an ephemeral node `<path>/<id>` holding its data (say, an address),
/// there as long as the member's session lives. The layout of Curator's
/// GroupMember (and of any registry that names members by id).
///
/// ```no_run
/// use futures_util::StreamExt;
/// use session_client::recipes::{MemberEvent, Membership};
/// use session_client::{Client, Error};
///
/// # async fn run() -> Result<(), Error> {
/// let client = Client::builder().servers("127.0.0.1:7181").connect().await?;
/// let web = Membership::new(&client, "/services/web");
/// let _me = web.join("host-7", b"10.0.0.7:8080").await?; // until dropped or the session ends
/// let mut changes = web.watch();
/// while let Some(change) = changes.next().await {
///     match change? {
///         MemberEvent::Joined(member) => println!("+ {} at {:?}", member.id, member.data),
///         MemberEvent::Left(id) => println!("- {id}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Membership {
    client: Client,
    dir: String,
}

/// A member of a [`Membership`], as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id: the name of its node.
    pub id: String,
    /// Its data, as it was when read.
    pub data: Bytes,
    /// Its node's stat (`ephemeral_owner` is the member's session).
    pub stat: Stat,
}

/// A change of a [`Membership`], from [`Membership::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member joined (or was there when the watch started).
    Joined(Member),
    /// The member with this id left: it left, or its session ended.
    Left(String),
}

impl Membership {
    /// The group under `path`, created (as a container, with its parents)
    /// by the first [`join`](Self::join).
    #[must_use]
    pub fn new(client: &Client, path: impl Into<String>) -> Self {
        Self {
            client: client.clone(),
            dir: normalize(path.into()),
        }
    }

    /// The group's path.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.dir
    }

    /// Joins the group as `id` (one path component, unique in the group)
    /// with `data`: creates the ephemeral node `<path>/<id>`. It stays
    /// while the session lives (through connection losses) and until the
    /// [`Registration`] is dropped or [`leave`](Registration::leave)s. When
    /// the session expires, the member is gone; with the client's opt-in
    /// auto-renew (`ClientBuilder::auto_renew`) the registration joins again
    /// under the new session, on its own. Without it, join again with a new
    /// client.
    ///
    /// # Errors
    /// `NodeExists` when another session is a member with this id,
    /// `InvalidPath` for an id that is not one path component, the
    /// session errors, and the server's errors for the path.
    pub async fn join(&self, id: &str, data: &[u8]) -> Result<Registration, Error> {
        if id.is_empty() || id.contains('/') {
            return Err(Error::InvalidPath {
                path: id.to_owned(),
                detail: "a member id is one non-empty path component, without '/'".to_owned(),
            });
        }
        let client = &self.client;
        let path = child_path(&self.dir, id);
        let mut lost_an_answer = false;
        loop {
            match client.create(&path, data, CreateMode::Ephemeral).await {
                Ok(_) => break,
                Err(Error::NoNode { .. }) => {
                    ensure_path(client, &self.dir, CreateMode::Container).await?;
                }
                Err(error) if error.is_retryable() => {
                    lost_an_answer = true;
                    recover(client, error).await?;
                }
                // Ours if the create whose answer was lost was applied.
                Err(Error::NodeExists { detail }) => {
                    let owner = retrying(client, || client.exists(&path)).await?;
                    let ours = client.session_id().as_u64();
                    match owner {
                        Some(stat) if lost_an_answer && stat.ephemeral_owner == ours => break,
                        // Gone meanwhile: try again.
                        None => {}
                        Some(_) => return Err(Error::NodeExists { detail }),
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(Registration {
            rejoin: tokio::spawn(rejoin_on_renewal(
                client.clone(),
                path.clone(),
                Bytes::copy_from_slice(data),
            )),
            client: client.clone(),
            path,
            left: false,
        })
    }

    /// The members now, by id.
    ///
    /// # Errors
    /// The session errors, and the server's errors for the path.
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        let client = &self.client;
        match retrying(client, || client.children(&self.dir)).await {
            Ok(children) => read_members(client, &self.dir, children).await,
            Err(Error::NoNode { .. }) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// The members' joins and leaves, from now on: first a
    /// [`MemberEvent::Joined`] for each member there now, then one event
    /// per change, including a member whose session expired. Changes while
    /// the client was reconnecting are reported once it is connected again
    /// (a member that joined and left meanwhile is not). The stream yields
    /// the error and ends when the session ends; dropping it stops the
    /// watching.
    pub fn watch(&self) -> MemberWatch {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(watch_members(self.client.clone(), self.dir.clone(), sender));
        MemberWatch { receiver, task }
    }
}

/// The members named by `children`, with their data; those gone since the
/// listing left out.
async fn read_members(
    client: &Client,
    dir: &str,
    children: Vec<String>,
) -> Result<Vec<Member>, Error> {
    if children.is_empty() {
        return Ok(Vec::new());
    }
    let reads: Vec<ReadOp> = children
        .iter()
        .map(|id| ReadOp::get_data(child_path(dir, id)))
        .collect();
    let outcomes = retrying(client, || client.multi_read(reads.clone())).await?;
    Ok(children
        .into_iter()
        .zip(outcomes)
        .filter_map(|(id, outcome)| match outcome {
            Ok(ReadOutcome::Data { data, stat }) => Some(Member { id, data, stat }),
            _ => None,
        })
        .collect())
}

/// Lists the group with a child watch, reports the difference with what it
/// reported before, waits for the watch, and again.
async fn watch_members(
    client: Client,
    dir: String,
    events: mpsc::UnboundedSender<Result<MemberEvent, Error>>,
) {
    let mut known = BTreeSet::new();
    let outcome: Result<(), Error> = async {
        loop {
            let listed = match client.children_and_watch(&dir).await {
                // No group yet, or a container reaped: wait for it.
                Err(Error::NoNode { .. }) => match client.exists_and_watch(&dir).await {
                    Ok((None, created)) => Ok((Vec::new(), created)),
                    Ok((Some(_), _)) => continue,
                    Err(error) => Err(error),
                },
                listed => listed,
            };
            let (children, changed) = match listed {
                Ok(listed) => listed,
                Err(error) => {
                    recover(&client, error).await?;
                    continue;
                }
            };
            for id in known.iter().filter(|id| !children.contains(id)) {
                if events.send(Ok(MemberEvent::Left(id.clone()))).is_err() {
                    return Ok(());
                }
            }
            known.retain(|id| children.contains(id));
            let joined: Vec<String> = children
                .into_iter()
                .filter(|id| !known.contains(id))
                .collect();
            for member in read_members(&client, &dir, joined).await? {
                known.insert(member.id.clone());
                if events.send(Ok(MemberEvent::Joined(member))).is_err() {
                    return Ok(());
                }
            }
            tokio::select! {
                fired = changed => match fired {
                    Err(error) if error.is_terminal() => return Err(error),
                    _ => {}
                },
                () = events.closed() => return Ok(()),
            }
        }
    }
    .await;
    if let Err(error) = outcome {
        let _ = events.send(Err(error));
    }
}

/// The joins and leaves of a [`Membership`]; from [`Membership::watch`].
/// Dropping it stops the watching.
#[must_use = "a member watch does nothing unless polled"]
#[derive(Debug)]
pub struct MemberWatch {
    receiver: mpsc::UnboundedReceiver<Result<MemberEvent, Error>>,
    task: JoinHandle<()>,
}

impl Stream for MemberWatch {
    type Item = Result<MemberEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for MemberWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Being a member; from [`Membership::join`]. Dropping it leaves the group
/// (in the background); [`leave`](Self::leave) waits for it.
#[must_use = "the member leaves when the registration is dropped"]
#[derive(Debug)]
pub struct Registration {
    client: Client,
    path: String,
    left: bool,
    /// Creates the node again under each new session of an auto-renewing
    /// client; stopped when the member leaves.
    rejoin: JoinHandle<()>,
}

/// Re-creates a member's node after each automatic renewal of the client's
/// session (its old session's ephemerals went with it). A node that exists
/// under another session is another member's: left alone, and logged.
async fn rejoin_on_renewal(client: Client, path: String, data: Bytes) {
    use futures_util::StreamExt;
    let mut renewals = client.renewals();
    while let Some(session) = renewals.next().await {
        let mut tries = 0;
        loop {
            match client.create(&path, &data, CreateMode::Ephemeral).await {
                Ok(_) => break,
                Err(Error::NodeExists { .. }) => {
                    let owner = client.exists(&path).await.ok().flatten();
                    if owner.is_some_and(|stat| stat.ephemeral_owner != session.as_u64()) {
                        tracing::warn!(path, "cannot rejoin: another session holds the member id");
                    }
                    break;
                }
                Err(Error::NoNode { .. }) => {
                    let parent = path.rsplit_once('/').map_or("/", |(parent, _)| parent);
                    let _ = ensure_path(&client, parent, CreateMode::Container).await;
                }
                Err(error) if error.is_retryable() && tries < 10 => {
                    let _ = client
                        .wait_connected(std::time::Duration::from_secs(5))
                        .await;
                }
                Err(error) => {
                    tracing::warn!(path, %error, "could not rejoin after the session was renewed");
                    break;
                }
            }
            tries += 1;
        }
    }
}

impl Registration {
    /// The member's node.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Leaves the group: deletes the node and waits for the server to
    /// confirm it (after a connection loss, once connected again).
    ///
    /// # Errors
    /// The server's errors other than `NoNode`; the node is deleted in the
    /// background all the same.
    pub async fn leave(mut self) -> Result<(), Error> {
        self.rejoin.abort();
        let outcome = delete_until_gone(&self.client, &self.path).await;
        self.left = outcome.is_ok();
        outcome
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.rejoin.abort();
        if !self.left {
            delete_path_in_background(&self.client, self.path.clone());
        }
    }
}
