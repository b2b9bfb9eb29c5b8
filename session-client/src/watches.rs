//! The client's one-shot watches, keyed by kind and server-side path, and
//! their re-registration after a reattach in frames of bounded size. Which
//! event fires which kind of watch is session-core's rule
//! ([`WatchKind::fired_by`]), the one the server fires by.

use std::collections::BTreeMap;

use session_core::{EventKind, WatchKind};
use session_wire::v1::SetWatches;
use tokio::sync::oneshot;

use crate::{Error, WatchedEvent};

/// Most bytes of paths in one `SetWatches` request: far under the 1 MiB
/// frame limit, so a client with many watches never sends a frame the server
/// must refuse (ZOOKEEPER-706).
pub(crate) const SET_WATCHES_BATCH_BYTES: usize = 128 * 1024;

/// Every kind of watch, in the order `SetWatches` lists them.
const KINDS: [WatchKind; 3] = [WatchKind::Data, WatchKind::Exist, WatchKind::Child];

/// The registry's slot for `kind`.
const fn slot(kind: WatchKind) -> usize {
    match kind {
        WatchKind::Data => 0,
        WatchKind::Exist => 1,
        WatchKind::Child => 2,
    }
}

pub(crate) type WatchSender = oneshot::Sender<Result<WatchedEvent, Error>>;

/// The watches the server holds for this client, by kind and server path.
#[derive(Debug, Default)]
pub(crate) struct WatchRegistry {
    /// Indexed by [`slot`]; paths sorted, so re-registration is deterministic.
    watches: [BTreeMap<String, Vec<WatchSender>>; KINDS.len()],
}

impl WatchRegistry {
    pub(crate) fn add(&mut self, kind: WatchKind, server_path: String, sender: WatchSender) {
        self.watches[slot(kind)]
            .entry(server_path)
            .or_default()
            .push(sender);
    }

    /// Removes and returns the watches an event of `kind` on `server_path`
    /// fires ([`EventKind::fires`]).
    pub(crate) fn take_fired(&mut self, kind: EventKind, server_path: &str) -> Vec<WatchSender> {
        let mut fired = Vec::new();
        for &watch in kind.fires() {
            if let Some(senders) = self.watches[slot(watch)].remove(server_path) {
                fired.extend(senders);
            }
        }
        fired
    }

    /// Ends every watch with `error` (the session is over).
    pub(crate) fn fail_all(&mut self, error: &Error) {
        for watches in &mut self.watches {
            for (_, senders) in std::mem::take(watches) {
                for sender in senders {
                    let _ = sender.send(Err(error.clone()));
                }
            }
        }
    }

    /// Forgets watches whose `Watch` was dropped.
    pub(crate) fn prune(&mut self) {
        for watches in &mut self.watches {
            watches.retain(|_, senders| {
                senders.retain(|sender| !sender.is_closed());
                !senders.is_empty()
            });
        }
    }

    /// Number of (kind, path) watches held.
    pub(crate) fn len(&self) -> usize {
        self.watches.iter().map(BTreeMap::len).sum()
    }

    /// The `SetWatches` requests that re-register every watch, each with at
    /// most about `max_bytes` of paths.
    pub(crate) fn set_watches(&self, last_zxid_seen: u64, max_bytes: usize) -> Vec<SetWatches> {
        let empty = || SetWatches {
            last_zxid_seen,
            ..SetWatches::default()
        };
        let mut batches = Vec::new();
        let mut batch = empty();
        let mut bytes = 0;
        let keys = KINDS.into_iter().flat_map(|kind| {
            self.watches[slot(kind)]
                .keys()
                .map(move |path| (kind, path))
        });
        for (kind, path) in keys {
            // A repeated string field costs its bytes plus a tag and a length.
            let cost = path.len() + 6;
            if bytes > 0 && bytes + cost > max_bytes {
                batches.push(std::mem::replace(&mut batch, empty()));
                bytes = 0;
            }
            bytes += cost;
            match kind {
                WatchKind::Data => batch.data_paths.push(path.clone()),
                WatchKind::Exist => batch.exist_paths.push(path.clone()),
                WatchKind::Child => batch.child_paths.push(path.clone()),
            }
        }
        if bytes > 0 {
            batches.push(batch);
        }
        batches
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn registry_of(
        paths: &[(WatchKind, &str)],
    ) -> (
        WatchRegistry,
        Vec<oneshot::Receiver<Result<WatchedEvent, Error>>>,
    ) {
        let mut registry = WatchRegistry::default();
        let mut receivers = Vec::new();
        for (kind, path) in paths {
            let (tx, rx) = oneshot::channel();
            registry.add(*kind, (*path).to_owned(), tx);
            receivers.push(rx);
        }
        (registry, receivers)
    }

    #[test]
    fn events_fire_the_kinds_session_core_says() {
        let (mut registry, _rx) = registry_of(&[
            (WatchKind::Data, "/a"),
            (WatchKind::Exist, "/a"),
            (WatchKind::Child, "/a"),
        ]);
        let mut fired = |kind, path| registry.take_fired(kind, path).len();
        assert_eq!(fired(EventKind::NodeChildrenChanged, "/a"), 1);
        assert_eq!(fired(EventKind::NodeChildrenChanged, "/a"), 0, "one-shot");
        assert_eq!(fired(EventKind::NodeDataChanged, "/b"), 0);
        // The server fires an exist watch only by a create or a delete: a data
        // change must not take it here either, or its later event is lost.
        assert_eq!(fired(EventKind::NodeDataChanged, "/a"), 1);
        assert_eq!(fired(EventKind::NodeCreated, "/a"), 1);
        assert_eq!(registry.len(), 0);

        let (mut registry, _rx) = registry_of(&[
            (WatchKind::Data, "/x"),
            (WatchKind::Exist, "/x"),
            (WatchKind::Child, "/x"),
        ]);
        assert_eq!(registry.take_fired(EventKind::NodeDeleted, "/x").len(), 3);
    }

    #[test]
    fn the_registry_follows_the_rules_table() {
        let events = [
            EventKind::NodeCreated,
            EventKind::NodeDeleted,
            EventKind::NodeDataChanged,
            EventKind::NodeChildrenChanged,
        ];
        for kind in KINDS {
            for event in events {
                let (mut registry, _rx) = registry_of(&[(kind, "/p")]);
                assert_eq!(
                    registry.take_fired(event, "/p").len() == 1,
                    kind.fired_by(event),
                    "{event:?} on a {kind:?} watch"
                );
            }
        }
    }

    #[test]
    fn dropped_watches_are_pruned_and_the_rest_fail_when_the_session_ends() {
        let (mut registry, mut receivers) =
            registry_of(&[(WatchKind::Data, "/a"), (WatchKind::Data, "/b")]);
        drop(receivers.remove(0));
        registry.prune();
        assert_eq!(registry.len(), 1);
        registry.fail_all(&Error::SessionExpired);
        assert_eq!(receivers[0].try_recv(), Ok(Err(Error::SessionExpired)));
    }

    #[test]
    fn set_watches_is_split_under_the_frame_limit() {
        // ZOOKEEPER-706: one SetWatches for every watch could exceed the frame
        // limit; 20,000 watches on 100-byte paths are ~2 MB of paths.
        let mut registry = WatchRegistry::default();
        let kinds = [WatchKind::Data, WatchKind::Exist, WatchKind::Child];
        for i in 0..20_000 {
            let (tx, _rx) = oneshot::channel();
            let path = format!("/{}{i:08}", "p".repeat(91));
            registry.add(kinds[i % 3], path, tx);
        }
        let batches = registry.set_watches(42, SET_WATCHES_BATCH_BYTES);
        assert!(batches.len() > 10, "{} batches", batches.len());
        let mut total = 0;
        for batch in &batches {
            assert_eq!(batch.last_zxid_seen, 42);
            assert!(
                batch.encoded_len() <= SET_WATCHES_BATCH_BYTES + 64,
                "{}",
                batch.encoded_len()
            );
            total += batch.data_paths.len() + batch.exist_paths.len() + batch.child_paths.len();
        }
        assert_eq!(total, 20_000);
        assert!(WatchRegistry::default().set_watches(1, 100).is_empty());
    }
}
