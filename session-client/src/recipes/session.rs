//! What every recipe does around its calls: wait for the session to be
//! connected again after a connection loss, create the missing parents,
//! create a protected node and find it again when the answer was lost,
//! delete a node until it is surely gone.

use std::time::Duration;

use crate::{Client, CreateMode, CreateOptions, Error, Stat, State};

use super::names::{child_path, name_of};

/// Waits until the client is `Connected`; fails with the terminal error
/// once the session is over. Never waits longer than the session can
/// live without a server (the client gives up after 4/3 of its timeout).
pub(crate) async fn wait_connected(client: &Client) -> Result<(), Error> {
    let mut state = client.state();
    loop {
        match *state.borrow_and_update() {
            State::Connected => return Ok(()),
            State::Expired => return Err(Error::SessionExpired),
            State::AuthFailed => return Err(Error::AuthFailed),
            State::Closed => return Err(Error::Closed),
            State::NotConnected | State::Connecting | State::Suspended => {}
        }
        if state.changed().await.is_err() {
            return Err(Error::Closed);
        }
    }
}

/// The pause before a call that failed with a retryable error other than a
/// connection loss (the server was unavailable, or slow) is tried again.
const PAUSE: Duration = Duration::from_millis(100);

/// After a failed call: `Ok` once it is worth trying again, for an error
/// that [`Error::is_retryable`] (after a connection loss when the client is
/// connected again, after another one also after a pause), `Err` with the
/// error otherwise. The session's end ends the waiting with its error.
pub(crate) async fn recover(client: &Client, error: Error) -> Result<(), Error> {
    if !error.is_retryable() {
        return Err(error);
    }
    if !matches!(error, Error::ConnectionLoss) {
        tokio::time::sleep(PAUSE).await;
    }
    wait_connected(client).await
}

/// How many times a call failing with a retryable error other than a
/// connection loss is tried before the error is returned.
const ATTEMPTS: u32 = 8;

/// Runs `call` until it gives an answer not worth retrying (see
/// [`recover`]); gives up after 8 failures other than connection losses.
/// Only for calls that may be repeated: reads, and writes whose second
/// try's failure (`NodeExists`, `NoNode`) the caller accepts.
pub(crate) async fn retrying<T, F>(client: &Client, mut call: impl FnMut() -> F) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let mut attempts = 1;
    loop {
        match call().await {
            Err(error) if error.is_retryable() && attempts < ATTEMPTS => {
                if !matches!(error, Error::ConnectionLoss) {
                    attempts += 1;
                }
                recover(client, error).await?;
            }
            outcome => return outcome,
        }
    }
}

/// Makes sure `path` exists, creating it and its missing ancestors with
/// `mode` (Curator's `creatingParentContainersIfNeeded` with
/// [`CreateMode::Container`]).
pub(crate) async fn ensure_path(
    client: &Client,
    path: &str,
    mode: CreateMode,
) -> Result<(), Error> {
    if path == "/" {
        return Ok(());
    }
    match create_if_missing(client, path, mode).await {
        Err(Error::NoNode { .. }) => {}
        outcome => return outcome,
    }
    // Top down: every ancestor, then the node.
    let mut prefix = String::new();
    for part in path.split('/').filter(|part| !part.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        create_if_missing(client, &prefix, mode).await?;
    }
    Ok(())
}

async fn create_if_missing(client: &Client, path: &str, mode: CreateMode) -> Result<(), Error> {
    match retrying(client, || client.create(path, b"", mode)).await {
        Ok(_) | Err(Error::NodeExists { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Creates the ephemeral sequential node `dir/<prefix><seq>` and returns
/// its path and stat. `prefix` is unique to this call (see
/// `Queue::fresh_prefix`): after a connection loss the child of `dir`
/// starting with it, if any, is the node this call created, so a lost
/// answer leaves no orphan (Curator's protected mode). Missing parents are
/// created as containers.
pub(crate) async fn create_protected(
    client: &Client,
    dir: &str,
    prefix: &str,
    data: &[u8],
) -> Result<(String, Stat), Error> {
    let path = child_path(dir, prefix);
    let options = CreateOptions::new(CreateMode::EphemeralSequential);
    let mut lost_an_answer = false;
    loop {
        if lost_an_answer {
            if let Some(found) = find_protected(client, dir, prefix).await? {
                return Ok(found);
            }
        }
        match client.create_with(&path, data, &options).await {
            Ok(created) => return Ok(created),
            // Perhaps applied, the answer lost: look for it next time.
            Err(error) if error.is_retryable() => {
                lost_an_answer = true;
                recover(client, error).await?;
            }
            // The parent is missing, or a container reaped meanwhile.
            Err(Error::NoNode { .. }) => ensure_path(client, dir, CreateMode::Container).await?,
            Err(error) => return Err(error),
        }
    }
}

/// The child of `dir` whose name starts with `prefix`, with its stat.
pub(crate) async fn find_protected(
    client: &Client,
    dir: &str,
    prefix: &str,
) -> Result<Option<(String, Stat)>, Error> {
    let children = match retrying(client, || client.children(dir)).await {
        Ok(children) => children,
        Err(Error::NoNode { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let Some(name) = children.into_iter().find(|name| name.starts_with(prefix)) else {
        return Ok(None);
    };
    let path = child_path(dir, &name);
    Ok(retrying(client, || client.exists(&path))
        .await?
        .map(|stat| (path, stat)))
}

/// Deletes `path` until it is surely gone: `NoNode` (perhaps after a
/// connection loss during which the delete was applied) and the end of the
/// session (which takes ephemeral nodes with it) count as gone.
pub(crate) async fn delete_until_gone(client: &Client, path: &str) -> Result<(), Error> {
    match retrying(client, || client.delete(path, None)).await {
        Ok(()) | Err(Error::NoNode { .. }) => Ok(()),
        Err(error) if error.is_terminal() => Ok(()),
        Err(error) => Err(error),
    }
}

/// A node this client creates or created that must not outlive the
/// operation unless handed over: dropping it (say, with a cancelled
/// `acquire`) deletes the node in the background. Known by its path once
/// created, by its protected prefix while the create is under way (a
/// create cancelled after it was sent may still be applied; the search
/// for the prefix, sent after it, sees it).
#[derive(Debug)]
pub(crate) struct OwnedNode {
    client: Client,
    node: Option<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    /// Created: its path.
    Created(String),
    /// Being created under `dir` with a name starting with `prefix`.
    Creating { dir: String, prefix: String },
}

impl Node {
    async fn delete(self, client: &Client) -> Result<(), Error> {
        let path = match self {
            Node::Created(path) => path,
            Node::Creating { dir, prefix } => match find_protected(client, &dir, &prefix).await? {
                Some((path, _)) => path,
                None => return Ok(()),
            },
        };
        delete_until_gone(client, &path).await
    }
}

impl OwnedNode {
    pub(crate) fn new(client: &Client) -> Self {
        Self {
            client: client.clone(),
            node: None,
        }
    }

    /// The node's path, once created.
    pub(crate) fn path(&self) -> Option<&str> {
        match &self.node {
            Some(Node::Created(path)) => Some(path),
            _ => None,
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.path().map(name_of)
    }

    /// A create of `dir/<prefix><seq>` is about to be sent.
    pub(crate) fn creating(&mut self, dir: &str, prefix: &str) {
        self.node = Some(Node::Creating {
            dir: dir.to_owned(),
            prefix: prefix.to_owned(),
        });
    }

    pub(crate) fn created(&mut self, path: String) {
        self.node = Some(Node::Created(path));
    }

    /// Forgets a node that is gone already.
    pub(crate) fn forget(&mut self) {
        self.node = None;
    }

    /// Hands the node over to its next owner.
    pub(crate) fn take(&mut self) -> Option<String> {
        match self.node.take() {
            Some(Node::Created(path)) => Some(path),
            _ => None,
        }
    }

    /// Deletes the node now.
    pub(crate) async fn delete(&mut self) -> Result<(), Error> {
        match self.node.take() {
            Some(node) => node.delete(&self.client).await,
            None => Ok(()),
        }
    }
}

impl Drop for OwnedNode {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            delete_in_background(&self.client, node);
        }
    }
}

/// Deletes a node in the background (for a `Drop`), on the runtime of the
/// caller; without a runtime the node is left to its session's end.
fn delete_in_background(client: &Client, node: Node) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(
            ?node,
            "no runtime to delete the node on; it goes with the session"
        );
        return;
    };
    let client = client.clone();
    runtime.spawn(async move {
        if let Err(error) = node.clone().delete(&client).await {
            tracing::warn!(?node, %error, "could not delete a recipe's node");
        }
    });
}

/// Deletes the node at `path` in the background; see [`OwnedNode`].
pub(crate) fn delete_path_in_background(client: &Client, path: String) {
    delete_in_background(client, Node::Created(path));
}
