//! Unit tests of every operation, error, watch rule and limit, ported from
//! the server's former namespace: the tree, the checks against the limits and
//! the watch table together (see [`Namespace`]) must behave as it did.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::namespace::Namespace;
use super::*;
use crate::{PathError, WatchEvent};

type Ns = Namespace<u64>;

const S1: u64 = 0x0100_0000_0000_0001;
const S2: u64 = 0x0100_0000_0000_0002;

fn ns() -> Ns {
    Namespace::new(TreeLimits::default())
}

fn data(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// Creates a persistent node, panicking on error (test setup only).
fn mk(ns: &mut Ns, path: &str, zxid: u64) {
    let created = ns.create(path, Bytes::new(), CreateMode::Persistent, S1, zxid, 100);
    assert!(created.is_ok(), "create {path}: {created:?}");
}

fn mk_eph(ns: &mut Ns, path: &str, owner: u64, zxid: u64) -> String {
    match ns.create(path, Bytes::new(), CreateMode::Ephemeral, owner, zxid, 100) {
        Ok(created) => created.value,
        Err(error) => panic!("create ephemeral {path}: {error}"),
    }
}

fn stat(ns: &Ns, path: &str) -> Stat {
    match ns.exists(path) {
        Ok(Some(stat)) => stat,
        other => panic!("no stat for {path}: {other:?}"),
    }
}

fn event(kind: EventKind, path: &str, zxid: u64) -> WatchEvent {
    WatchEvent {
        kind,
        path: Arc::from(path),
        zxid,
    }
}

fn set_of(fired: &[(u64, WatchEvent)]) -> HashSet<(u64, WatchEvent)> {
    fired.iter().cloned().collect()
}

// ---- reads and the root ----

#[test]
fn root_exists_from_the_start_with_a_zero_stat() {
    let ns = ns();
    assert_eq!(ns.node_count(), 1);
    assert_eq!(stat(&ns, "/"), Stat::default());
    assert_eq!(ns.children("/"), Ok((vec![], Stat::default())));
    assert_eq!(ns.get_data("/"), Ok((Bytes::new(), Stat::default())));
    assert_eq!(ns.last_zxid(), 0);
    assert_eq!(ns.watch_count(), 0);
}

#[test]
fn reads_of_a_missing_node() {
    let ns = ns();
    let no_node = Err(TreeError::NoNode { path: "/a".into() });
    assert_eq!(ns.get_data("/a"), no_node);
    assert_eq!(
        ns.children("/a").map(|_| ()),
        Err(TreeError::NoNode { path: "/a".into() })
    );
    assert_eq!(ns.exists("/a"), Ok(None));
}

#[test]
fn reads_refuse_invalid_paths() {
    let ns = ns();
    assert_eq!(
        ns.get_data("a"),
        Err(TreeError::InvalidPath(PathError::NotAbsolute {
            path: "a".into()
        }))
    );
    assert!(matches!(
        ns.exists("/a/"),
        Err(TreeError::InvalidPath(PathError::TrailingSlash { .. }))
    ));
    assert!(matches!(
        ns.children("/a//b"),
        Err(TreeError::InvalidPath(PathError::EmptyComponent { .. }))
    ));
}

// ---- create ----

#[test]
fn create_sets_the_stat_and_updates_the_parent() {
    let mut ns = ns();
    let created = ns.create("/a", data("hello"), CreateMode::Persistent, S1, 5, 1_000);
    assert_eq!(created.map(|c| c.value), Ok("/a".to_string()));
    assert_eq!(
        stat(&ns, "/a"),
        Stat {
            aversion: 0,
            czxid: 5,
            mzxid: 5,
            pzxid: 5,
            ctime: 1_000,
            mtime: 1_000,
            version: 0,
            cversion: 0,
            ephemeral_owner: 0,
            data_length: 5,
            num_children: 0,
        }
    );
    assert_eq!(ns.get_data("/a").map(|(d, _)| d), Ok(data("hello")));
    let root = stat(&ns, "/");
    assert_eq!((root.cversion, root.pzxid, root.num_children), (1, 5, 1));
    assert_eq!((root.version, root.mzxid), (0, 0));
    assert_eq!(ns.node_count(), 2);
    assert_eq!(ns.last_zxid(), 5);

    mk(&mut ns, "/a/b", 6);
    let a = stat(&ns, "/a");
    assert_eq!((a.cversion, a.pzxid, a.num_children, a.mzxid), (1, 6, 1, 5));
    assert_eq!(stat(&ns, "/").cversion, 1);
}

#[test]
fn create_refuses_an_existing_node_and_the_root() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    let again = ns.create("/a", data("x"), CreateMode::Persistent, S1, 2, 0);
    assert_eq!(
        again.map(|c| c.value),
        Err(TreeError::NodeExists { path: "/a".into() })
    );
    let root = ns.create("/", Bytes::new(), CreateMode::Persistent, S1, 3, 0);
    assert_eq!(
        root.map(|c| c.value),
        Err(TreeError::NodeExists { path: "/".into() })
    );
    // Nothing changed.
    assert_eq!(stat(&ns, "/").cversion, 1);
    assert_eq!(stat(&ns, "/a").data_length, 0);
}

#[test]
fn create_under_a_missing_parent_names_the_parent() {
    let mut ns = ns();
    let created = ns.create("/a/b/c", Bytes::new(), CreateMode::Persistent, S1, 1, 0);
    assert_eq!(
        created.map(|c| c.value),
        Err(TreeError::NoNode {
            path: "/a/b".into()
        })
    );
    assert_eq!(ns.node_count(), 1);
}

#[test]
fn create_refuses_invalid_paths() {
    let mut ns = ns();
    for (path, mode) in [
        ("", CreateMode::Persistent),
        ("a", CreateMode::Persistent),
        ("/a/", CreateMode::Persistent),
        ("/a/./b", CreateMode::Ephemeral),
        ("/a\u{0}", CreateMode::PersistentSequential),
        ("//x", CreateMode::EphemeralSequential),
    ] {
        let created = ns.create(path, Bytes::new(), mode, S1, 1, 0);
        assert!(
            matches!(created, Err(TreeError::InvalidPath(_))),
            "{path:?}: {created:?}"
        );
    }
    assert_eq!(ns.node_count(), 1);
}

#[test]
fn ephemerals_cannot_have_children() {
    let mut ns = ns();
    mk_eph(&mut ns, "/e", S1, 1);
    for mode in [
        CreateMode::Persistent,
        CreateMode::Ephemeral,
        CreateMode::PersistentSequential,
    ] {
        let child = ns.create("/e/c", Bytes::new(), mode, S1, 2, 0);
        assert_eq!(
            child.map(|c| c.value),
            Err(TreeError::NoChildrenForEphemerals {
                path: "/e/c".into(),
                parent: "/e".into()
            })
        );
    }
    assert_eq!(stat(&ns, "/e").cversion, 0);
}

#[test]
fn ephemeral_needs_a_nonzero_owner_persistent_ignores_it() {
    let mut ns = ns();
    let created = ns.create("/e", Bytes::new(), CreateMode::Ephemeral, 0, 1, 0);
    assert_eq!(
        created.map(|c| c.value),
        Err(TreeError::ZeroOwner { path: "/e".into() })
    );
    let persistent = ns.create("/p", Bytes::new(), CreateMode::Persistent, 0, 2, 0);
    assert!(persistent.is_ok());
    mk(&mut ns, "/q", 3); // created by S1, still persistent
    assert_eq!(stat(&ns, "/q").ephemeral_owner, 0);
    assert_eq!(ns.ephemeral_count(S1), 0);
}

#[test]
fn ephemeral_create_records_the_owner() {
    let mut ns = ns();
    mk_eph(&mut ns, "/e2", S1, 1);
    mk_eph(&mut ns, "/e1", S1, 2);
    mk_eph(&mut ns, "/f", S2, 3);
    assert_eq!(stat(&ns, "/e1").ephemeral_owner, S1);
    assert_eq!(ns.ephemeral_count(S1), 2);
    assert_eq!(ns.ephemeral_count(S2), 1);
    assert_eq!(ns.ephemeral_count(42), 0);
    assert_eq!(ns.ephemerals(S1).collect::<Vec<_>>(), vec!["/e1", "/e2"]);
}

// ---- sequential names ----

#[test]
fn sequential_names_come_from_the_parents_cversion() {
    let mut ns = ns();
    mk(&mut ns, "/q", 1);
    let first = ns.create(
        "/q/job-",
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        2,
        0,
    );
    assert_eq!(first.map(|c| c.value), Ok("/q/job-0000000000".to_string()));
    let second = ns.create(
        "/q/",
        Bytes::new(),
        CreateMode::EphemeralSequential,
        S1,
        3,
        0,
    );
    assert_eq!(second.map(|c| c.value), Ok("/q/0000000001".to_string()));
    assert_eq!(stat(&ns, "/q/0000000001").ephemeral_owner, S1);
    // A plain create moves the counter too.
    mk(&mut ns, "/q/plain", 4);
    let third = ns.create(
        "/q/job-",
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        5,
        0,
    );
    assert_eq!(third.map(|c| c.value), Ok("/q/job-0000000003".to_string()));
    assert_eq!(
        ns.children("/q").map(|(names, _)| names),
        Ok(vec![
            "0000000001".to_string(),
            "job-0000000000".to_string(),
            "job-0000000003".to_string(),
            "plain".to_string(),
        ])
    );
}

#[test]
fn sequential_counter_rises_on_delete_too() {
    let mut ns = ns();
    mk(&mut ns, "/q", 1);
    let first = ns.create(
        "/q/n",
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        2,
        0,
    );
    assert_eq!(first.map(|c| c.value), Ok("/q/n0000000000".to_string()));
    assert!(ns.delete("/q/n0000000000", None, 3).is_ok());
    assert_eq!(stat(&ns, "/q").cversion, 2);
    let next = ns.create(
        "/q/n",
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        4,
        0,
    );
    assert_eq!(next.map(|c| c.value), Ok("/q/n0000000002".to_string()));
}

#[test]
fn sequential_under_the_root() {
    let mut ns = ns();
    let created = ns.create(
        "/",
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        1,
        0,
    );
    assert_eq!(created.map(|c| c.value), Ok("/0000000000".to_string()));
    let named = ns.create(
        "/x",
        Bytes::new(),
        CreateMode::EphemeralSequential,
        S1,
        2,
        0,
    );
    assert_eq!(named.map(|c| c.value), Ok("/x0000000001".to_string()));
}

#[test]
fn sequential_refuses_an_exhausted_counter_rather_than_wrap() {
    let mut ns = ns();
    mk(&mut ns, "/q", 1);
    ns.node_mut("/q").stat.cversion = i32::MAX - 1;
    let last = ns.create(
        "/q/n",
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        2,
        0,
    );
    assert_eq!(last.map(|c| c.value), Ok("/q/n2147483646".to_string()));
    assert_eq!(stat(&ns, "/q").cversion, i32::MAX);
    let refused = ns.create(
        "/q/n",
        Bytes::new(),
        CreateMode::EphemeralSequential,
        S1,
        3,
        0,
    );
    assert_eq!(
        refused.map(|c| c.value),
        Err(TreeError::SequenceExhausted {
            parent: "/q".into(),
            cversion: i32::MAX
        })
    );
    // Plain creates and deletes still work; the counter stays at its maximum.
    mk(&mut ns, "/q/plain", 4);
    assert!(ns.delete("/q/plain", None, 5).is_ok());
    assert_eq!(stat(&ns, "/q").cversion, i32::MAX);
    assert_eq!(stat(&ns, "/q").pzxid, 5);
}

#[test]
fn sequential_create_reports_a_taken_name() {
    let mut ns = ns();
    mk(&mut ns, "/q", 1);
    mk(&mut ns, "/q/n0000000001", 2); // cversion is now 1
    let clash = ns.create(
        "/q/n",
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        3,
        0,
    );
    assert_eq!(
        clash.map(|c| c.value),
        Err(TreeError::NodeExists {
            path: "/q/n0000000001".into()
        })
    );
}

// ---- set_data and versions ----

#[test]
fn set_data_bumps_version_mzxid_and_mtime() {
    let mut ns = ns();
    assert!(
        ns.create("/a", data("v0"), CreateMode::Persistent, S1, 1, 100)
            .is_ok()
    );
    let set = ns.set_data("/a", data("v1!"), Some(0), 7, 200);
    let new = match set {
        Ok(written) => written.value,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(
        (
            new.version,
            new.mzxid,
            new.mtime,
            new.ctime,
            new.czxid,
            new.data_length
        ),
        (1, 7, 200, 100, 1, 3)
    );
    assert_eq!(ns.get_data("/a"), Ok((data("v1!"), new)));
    assert_eq!(stat(&ns, "/").cversion, 1, "set does not touch the parent");
    // Any-version forms.
    assert!(ns.set_data("/a", data("x"), None, 8, 300).is_ok());
    assert!(ns.set_data("/a", data("y"), Some(-1), 9, 400).is_ok());
    assert_eq!(stat(&ns, "/a").version, 3);
    // The root can hold data too.
    assert!(ns.set_data("/", data("r"), None, 10, 500).is_ok());
    assert_eq!(stat(&ns, "/").version, 1);
}

#[test]
fn set_data_errors() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    assert_eq!(
        ns.set_data("/a", data("x"), Some(3), 2, 0).map(|w| w.value),
        Err(TreeError::BadVersion {
            path: "/a".into(),
            expected: 3,
            actual: 0
        })
    );
    assert_eq!(
        ns.set_data("/b", data("x"), None, 2, 0).map(|w| w.value),
        Err(TreeError::NoNode { path: "/b".into() })
    );
    assert!(matches!(
        ns.set_data("b", data("x"), None, 2, 0),
        Err(TreeError::InvalidPath(_))
    ));
    assert_eq!(stat(&ns, "/a").version, 0);
    assert_eq!(ns.last_zxid(), 1, "failed writes do not advance last_zxid");
}

// ---- delete ----

#[test]
fn delete_removes_the_node_and_updates_the_parent() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    mk(&mut ns, "/a/b", 2);
    assert!(ns.delete("/a/b", Some(0), 3).is_ok());
    assert_eq!(ns.exists("/a/b"), Ok(None));
    let a = stat(&ns, "/a");
    assert_eq!((a.cversion, a.pzxid, a.num_children), (2, 3, 0));
    assert_eq!(ns.children("/a").map(|(c, _)| c), Ok(vec![]));
    assert!(ns.delete("/a", Some(-1), 4).is_ok());
    assert_eq!(ns.node_count(), 1);
    assert_eq!(ns.last_zxid(), 4);
}

#[test]
fn delete_errors() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    mk(&mut ns, "/a/b", 2);
    assert_eq!(
        ns.delete("/a", None, 3).map(|w| w.value),
        Err(TreeError::NotEmpty {
            path: "/a".into(),
            children: 1
        })
    );
    assert_eq!(
        ns.delete("/a/b", Some(1), 3).map(|w| w.value),
        Err(TreeError::BadVersion {
            path: "/a/b".into(),
            expected: 1,
            actual: 0
        })
    );
    assert_eq!(
        ns.delete("/x", None, 3).map(|w| w.value),
        Err(TreeError::NoNode { path: "/x".into() })
    );
    assert_eq!(
        ns.delete("/", None, 3).map(|w| w.value),
        Err(TreeError::RootDelete)
    );
    assert!(matches!(
        ns.delete("/a/", None, 3),
        Err(TreeError::InvalidPath(_))
    ));
    assert_eq!(ns.node_count(), 3);
    assert_eq!(stat(&ns, "/a").cversion, 1);
}

#[test]
fn deleting_an_ephemeral_removes_it_from_the_owner_index() {
    let mut ns = ns();
    mk_eph(&mut ns, "/e", S1, 1);
    assert!(ns.delete("/e", None, 2).is_ok());
    assert_eq!(ns.ephemeral_count(S1), 0);
    assert_eq!(ns.ephemerals(S1).count(), 0);
    assert!(ns.tree.ephemerals.is_empty(), "no empty owner entries kept");
}

#[test]
fn children_lists_names_sorted_with_the_stat() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    for (zxid, name) in [(2, "/a/zeta"), (3, "/a/alpha"), (4, "/a/mid")] {
        mk(&mut ns, name, zxid);
    }
    let (names, a) = match ns.children("/a") {
        Ok(found) => found,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(names, vec!["alpha", "mid", "zeta"]);
    assert_eq!((a.num_children, a.cversion, a.pzxid), (3, 3, 4));
    assert_eq!(a.num_children as usize, names.len());
}

// ---- watches: firing rules ----

#[test]
fn create_fires_exist_watch_and_parent_child_watch() {
    let mut ns = ns();
    mk(&mut ns, "/p", 1);
    assert_eq!(ns.exists_and_watch("/p/c", 10), Ok(None));
    assert!(ns.children_and_watch("/p", 11).is_ok());
    assert!(ns.children_and_watch("/", 12).is_ok());
    assert_eq!(ns.watch_count(), 3);
    let created = ns.create("/p/c", Bytes::new(), CreateMode::Persistent, S1, 2, 0);
    let fired = created.map(|c| c.fired).unwrap_or_default();
    assert_eq!(
        fired,
        vec![
            (10, event(EventKind::NodeCreated, "/p/c", 2)),
            (11, event(EventKind::NodeChildrenChanged, "/p", 2)),
        ]
    );
    // The child watch on the grandparent did not fire.
    assert_eq!(ns.watch_count(), 1);
}

#[test]
fn set_data_fires_data_watches_only() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    assert!(ns.get_data_and_watch("/a", 10).is_ok());
    assert!(ns.exists_and_watch("/a", 11).is_ok_and(|s| s.is_some()));
    assert!(ns.children_and_watch("/a", 12).is_ok());
    assert!(ns.children_and_watch("/", 13).is_ok());
    let fired = ns
        .set_data("/a", data("x"), None, 2, 0)
        .map(|w| w.fired)
        .unwrap_or_default();
    assert_eq!(
        set_of(&fired),
        HashSet::from([
            (10, event(EventKind::NodeDataChanged, "/a", 2)),
            (11, event(EventKind::NodeDataChanged, "/a", 2)),
        ])
    );
    assert_eq!(fired.len(), 2);
    assert_eq!(ns.watch_count(), 2, "child watches stay");
}

#[test]
fn delete_fires_node_deleted_once_per_watcher_then_parent() {
    let mut ns = ns();
    mk(&mut ns, "/p", 1);
    mk(&mut ns, "/p/c", 2);
    // Watcher 10 has all three kinds that fire on /p/c's delete.
    assert!(ns.get_data_and_watch("/p/c", 10).is_ok());
    assert!(ns.exists_and_watch("/p/c", 10).is_ok());
    assert!(ns.children_and_watch("/p/c", 10).is_ok());
    assert!(ns.children_and_watch("/p/c", 11).is_ok());
    assert!(ns.children_and_watch("/p", 10).is_ok());
    assert!(ns.get_data_and_watch("/p", 12).is_ok());
    let fired = ns
        .delete("/p/c", None, 3)
        .map(|w| w.fired)
        .unwrap_or_default();
    assert_eq!(fired.len(), 3);
    assert_eq!(
        set_of(&fired[..2]),
        HashSet::from([
            (10, event(EventKind::NodeDeleted, "/p/c", 3)),
            (11, event(EventKind::NodeDeleted, "/p/c", 3)),
        ])
    );
    assert_eq!(
        fired[2],
        (10, event(EventKind::NodeChildrenChanged, "/p", 3))
    );
    // Only 12's data watch on /p is left: deleting a child is no data change.
    assert_eq!(ns.watch_count(), 1);
}

#[test]
fn watches_fire_once() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    assert!(ns.get_data_and_watch("/a", 10).is_ok());
    let first = ns
        .set_data("/a", data("1"), None, 2, 0)
        .map(|w| w.fired.len());
    let second = ns
        .set_data("/a", data("2"), None, 3, 0)
        .map(|w| w.fired.len());
    assert_eq!((first, second), (Ok(1), Ok(0)));
    assert_eq!(ns.watch_count(), 0);
}

#[test]
fn a_watch_registered_twice_fires_once() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    for _ in 0..3 {
        assert!(ns.get_data_and_watch("/a", 10).is_ok());
        assert!(ns.exists_and_watch("/a", 10).is_ok());
    }
    assert_eq!(ns.watch_count(), 1);
    let fired = ns.set_data("/a", data("1"), None, 2, 0).map(|w| w.fired);
    assert_eq!(
        fired,
        Ok(vec![(10, event(EventKind::NodeDataChanged, "/a", 2))])
    );
}

#[test]
fn reads_of_missing_or_invalid_paths_leave_no_watch() {
    let mut ns = ns();
    assert!(ns.get_data_and_watch("/missing", 10).is_err());
    assert!(ns.children_and_watch("/missing", 10).is_err());
    assert!(ns.exists_and_watch("bad", 10).is_err());
    assert_eq!(ns.watch_count(), 0);
    // exists on a missing node does leave one, fired by the create.
    assert_eq!(ns.exists_and_watch("/missing", 10), Ok(None));
    assert_eq!(ns.watch_count(), 1);
}

#[test]
fn exist_watch_on_existing_node_is_a_data_watch() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    assert!(ns.exists_and_watch("/a", 10).is_ok());
    let fired = ns.delete("/a", None, 2).map(|w| w.fired);
    assert_eq!(
        fired,
        Ok(vec![(10, event(EventKind::NodeDeleted, "/a", 2))])
    );
}

#[test]
fn failed_writes_fire_nothing() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    mk(&mut ns, "/a/b", 2);
    assert!(ns.get_data_and_watch("/a", 10).is_ok());
    assert!(ns.children_and_watch("/a", 10).is_ok());
    assert!(ns.delete("/a", None, 3).is_err());
    assert!(ns.set_data("/a", data("x"), Some(9), 3, 0).is_err());
    assert!(
        ns.create("/a/b", Bytes::new(), CreateMode::Persistent, S1, 3, 0)
            .is_err()
    );
    assert_eq!(ns.watch_count(), 2);
}

#[test]
fn remove_watcher_drops_all_of_its_watches_only() {
    let mut ns = ns();
    mk(&mut ns, "/a", 1);
    assert!(ns.get_data_and_watch("/a", 10).is_ok());
    assert!(ns.children_and_watch("/a", 10).is_ok());
    assert!(ns.exists_and_watch("/b", 10).is_ok());
    assert!(ns.get_data_and_watch("/a", 11).is_ok());
    assert_eq!(ns.remove_watcher(10), 3);
    assert_eq!(ns.remove_watcher(10), 0);
    assert_eq!(ns.watch_count(), 1);
    let fired = ns.set_data("/a", data("x"), None, 2, 0).map(|w| w.fired);
    assert_eq!(
        fired,
        Ok(vec![(11, event(EventKind::NodeDataChanged, "/a", 2))])
    );
    let created = ns.create("/b", Bytes::new(), CreateMode::Persistent, S1, 3, 0);
    assert_eq!(created.map(|c| c.fired), Ok(vec![]));
}

// ---- remove_session ----

#[test]
fn remove_session_deletes_its_ephemerals_and_fires_watches() {
    let mut ns = ns();
    mk(&mut ns, "/svc", 1);
    mk_eph(&mut ns, "/svc/a", S1, 2);
    mk_eph(&mut ns, "/top", S1, 3);
    mk_eph(&mut ns, "/svc/other", S2, 4);
    mk(&mut ns, "/svc/persistent", 5);
    assert!(ns.get_data_and_watch("/svc/a", 20).is_ok());
    assert!(ns.children_and_watch("/svc", 21).is_ok());
    assert!(ns.exists_and_watch("/svc/other", 22).is_ok());

    let removed = ns.remove_session(S1, 9);
    assert_eq!(
        removed.value,
        vec!["/svc/a".to_string(), "/top".to_string()]
    );
    assert_eq!(
        removed.fired,
        vec![
            (20, event(EventKind::NodeDeleted, "/svc/a", 9)),
            (21, event(EventKind::NodeChildrenChanged, "/svc", 9)),
        ]
    );
    assert_eq!(ns.exists("/svc/a"), Ok(None));
    assert_eq!(ns.exists("/top"), Ok(None));
    assert!(ns.exists("/svc/other").is_ok_and(|s| s.is_some()));
    assert!(ns.exists("/svc/persistent").is_ok_and(|s| s.is_some()));
    let svc = stat(&ns, "/svc");
    assert_eq!((svc.cversion, svc.pzxid, svc.num_children), (4, 9, 2));
    let root = stat(&ns, "/");
    assert_eq!((root.cversion, root.pzxid), (3, 9));
    assert_eq!(ns.ephemeral_count(S1), 0);
    assert_eq!(ns.ephemeral_count(S2), 1);
    assert_eq!(ns.watch_count(), 1);
    assert_eq!(ns.last_zxid(), 9);

    let again = ns.remove_session(S1, 10);
    assert_eq!((again.value, again.fired), (vec![], vec![]));
    assert_eq!(ns.last_zxid(), 9, "a no-op close changes nothing");
}

// ---- set_watches ----

#[test]
fn set_watches_data_rules() {
    let mut ns = ns();
    mk(&mut ns, "/old", 1);
    mk(&mut ns, "/changed", 2);
    assert!(ns.set_data("/changed", data("x"), None, 5, 0).is_ok());
    let paths = ["/old", "/changed", "/gone"].map(String::from);
    let fired = ns.set_watches(10, 3, &paths, &[], &[]);
    assert_eq!(
        fired,
        Ok(vec![
            (10, event(EventKind::NodeDataChanged, "/changed", 5)),
            (10, event(EventKind::NodeDeleted, "/gone", 5)),
        ])
    );
    assert_eq!(ns.watch_count(), 1);
    let later = ns.set_data("/old", data("y"), None, 6, 0).map(|w| w.fired);
    assert_eq!(
        later,
        Ok(vec![(10, event(EventKind::NodeDataChanged, "/old", 6))])
    );
}

#[test]
fn set_watches_data_at_exactly_last_zxid_registers() {
    let mut ns = ns();
    mk(&mut ns, "/a", 4);
    let fired = ns.set_watches(10, 4, &["/a".to_string()], &[], &[]);
    assert_eq!(fired, Ok(vec![]));
    assert_eq!(ns.watch_count(), 1);
}

#[test]
fn set_watches_exist_rules() {
    let mut ns = ns();
    mk(&mut ns, "/here", 1);
    let paths = ["/here", "/absent"].map(String::from);
    // Fires even though the node is older than last_zxid, as ZooKeeper does.
    let fired = ns.set_watches(10, 100, &[], &paths, &[]);
    assert_eq!(
        fired,
        Ok(vec![(10, event(EventKind::NodeCreated, "/here", 1))])
    );
    let created = ns.create("/absent", Bytes::new(), CreateMode::Persistent, S1, 101, 0);
    assert_eq!(
        created.map(|c| c.fired),
        Ok(vec![(10, event(EventKind::NodeCreated, "/absent", 101))])
    );
}

#[test]
fn set_watches_child_rules() {
    let mut ns = ns();
    mk(&mut ns, "/quiet", 1);
    mk(&mut ns, "/busy", 2);
    mk(&mut ns, "/busy/kid", 7);
    let paths = ["/quiet", "/busy", "/gone"].map(String::from);
    let fired = ns.set_watches(10, 5, &[], &[], &paths);
    assert_eq!(
        fired,
        Ok(vec![
            (10, event(EventKind::NodeChildrenChanged, "/busy", 7)),
            (10, event(EventKind::NodeDeleted, "/gone", 7)),
        ])
    );
    assert_eq!(ns.watch_count(), 1);
    mk(&mut ns, "/quiet/kid", 8);
    // That create fired the registered child watch (checked via the count).
    assert_eq!(ns.watch_count(), 0);
}

#[test]
fn set_watches_refuses_bad_paths_and_registers_nothing() {
    let mut ns = ns();
    let good = ["/a".to_string()];
    let bad = ["/a/".to_string()];
    assert!(matches!(
        ns.set_watches(10, 0, &good, &good, &bad),
        Err(TreeError::InvalidPath(_))
    ));
    let long = [format!("/{}", "x".repeat(2000))];
    assert_eq!(
        ns.set_watches(10, 0, &[], &long, &[]),
        Err(TreeError::PathTooLong {
            len: 2001,
            max: 1024
        })
    );
    assert_eq!(ns.watch_count(), 0);
}

// ---- limits ----

#[test]
fn default_limits_are_the_documented_values() {
    assert_eq!(
        TreeLimits::default(),
        TreeLimits {
            max_path_bytes: 1024,
            max_data_bytes: 512 * 1024,
            max_ephemerals_per_session: 10_000,
            max_nodes: 1_000_000,
            max_total_data_bytes: 1024 * 1024 * 1024,
        }
    );
    assert_eq!(ns().limits(), &TreeLimits::default());
}

#[test]
fn path_limit_applies_to_every_operation() {
    let mut ns = ns();
    let at_limit = format!("/{}", "a".repeat(1023));
    let over = format!("/{}", "a".repeat(1024));
    assert!(
        ns.create(&at_limit, Bytes::new(), CreateMode::Persistent, S1, 1, 0)
            .is_ok()
    );
    let too_long = Err(TreeError::PathTooLong {
        len: 1025,
        max: 1024,
    });
    let create = ns.create(&over, Bytes::new(), CreateMode::Persistent, S1, 2, 0);
    assert_eq!(
        create.map(|c| c.value),
        too_long.clone().map(|()| String::new())
    );
    assert_eq!(ns.delete(&over, None, 2).map(|w| w.value), too_long);
    assert_eq!(
        ns.set_data(&over, Bytes::new(), None, 2, 0).map(|_| ()),
        too_long
    );
    assert_eq!(ns.limits().check_path(&over), too_long);
    // Reads take no limits: no node can have a path over the limit, so an
    // over-long path is simply not found. (The server's former namespace
    // answered PathTooLong here; a server that wants that checks first with
    // TreeLimits::check_path.)
    assert_eq!(ns.exists(&over), Ok(None));
    assert_eq!(
        ns.get_data(&over).map(|_| ()),
        Err(TreeError::NoNode { path: over.clone() })
    );
    assert_eq!(
        ns.children(&over).map(|_| ()),
        Err(TreeError::NoNode { path: over.clone() })
    );
    // A tree write does not check limits either: that is the check's job.
    assert!(
        ns.tree
            .create(&over, Bytes::new(), CreateMode::Persistent, S1, 3, 0)
            .is_ok()
    );
}

#[test]
fn path_limit_counts_the_sequential_suffix() {
    let mut ns = ns();
    let prefix = format!("/{}", "p".repeat(1014)); // 1015 bytes + 10 digits = 1025
    let created = ns.create(
        &prefix,
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        1,
        0,
    );
    assert_eq!(
        created.map(|c| c.value),
        Err(TreeError::PathTooLong {
            len: 1025,
            max: 1024
        })
    );
    let fits = format!("/{}", "p".repeat(1013));
    let created = ns.create(
        &fits,
        Bytes::new(),
        CreateMode::PersistentSequential,
        S1,
        2,
        0,
    );
    assert_eq!(created.map(|c| c.value.len()), Ok(1024));
}

#[test]
fn data_limit_applies_to_create_and_set() {
    let limits = TreeLimits {
        max_data_bytes: 4,
        ..TreeLimits::default()
    };
    let mut ns: Ns = Namespace::new(limits);
    assert!(
        ns.create("/a", data("1234"), CreateMode::Persistent, S1, 1, 0)
            .is_ok()
    );
    let create = ns.create("/b", data("12345"), CreateMode::Persistent, S1, 2, 0);
    let too_large = TreeError::DataTooLarge {
        path: "/b".into(),
        size: 5,
        max: 4,
    };
    assert_eq!(create.map(|c| c.value), Err(too_large));
    let set = ns.set_data("/a", data("12345"), None, 2, 0);
    assert_eq!(
        set.map(|w| w.value),
        Err(TreeError::DataTooLarge {
            path: "/a".into(),
            size: 5,
            max: 4
        })
    );
    assert_eq!(ns.get_data("/a").map(|(d, _)| d), Ok(data("1234")));
}

#[test]
fn default_data_limit_is_512_kib() {
    let mut ns = ns();
    let max = Bytes::from(vec![0_u8; 512 * 1024]);
    let over = Bytes::from(vec![0_u8; 512 * 1024 + 1]);
    assert!(
        ns.create("/a", max, CreateMode::Persistent, S1, 1, 0)
            .is_ok()
    );
    assert!(matches!(
        ns.create("/b", over, CreateMode::Persistent, S1, 2, 0),
        Err(TreeError::DataTooLarge { size: 524_289, .. })
    ));
}

#[test]
fn ephemeral_limit_is_per_session() {
    let limits = TreeLimits {
        max_ephemerals_per_session: 2,
        ..TreeLimits::default()
    };
    let mut ns: Ns = Namespace::new(limits);
    mk_eph(&mut ns, "/a", S1, 1);
    mk_eph(&mut ns, "/b", S1, 2);
    let third = ns.create(
        "/c",
        Bytes::new(),
        CreateMode::EphemeralSequential,
        S1,
        3,
        0,
    );
    assert_eq!(
        third.map(|c| c.value),
        Err(TreeError::TooManyEphemerals { owner: S1, max: 2 })
    );
    // Another session and persistent nodes are unaffected.
    mk_eph(&mut ns, "/c", S2, 4);
    mk(&mut ns, "/d", 5);
    // Freeing one makes room again.
    assert!(ns.delete("/a", None, 6).is_ok());
    mk_eph(&mut ns, "/e", S1, 7);
    assert_eq!(ns.ephemeral_count(S1), 2);
}

#[test]
fn default_ephemeral_limit_is_ten_thousand() {
    let mut ns = ns();
    for i in 0..10_000_u64 {
        let created = ns.create(
            "/e-",
            Bytes::new(),
            CreateMode::EphemeralSequential,
            S1,
            i + 1,
            0,
        );
        assert!(created.is_ok(), "{i}: {created:?}");
    }
    let refused = ns.create(
        "/e-",
        Bytes::new(),
        CreateMode::EphemeralSequential,
        S1,
        10_001,
        0,
    );
    assert!(matches!(
        refused,
        Err(TreeError::TooManyEphemerals { max: 10_000, .. })
    ));
    let removed = ns.remove_session(S1, 10_002);
    assert_eq!(removed.value.len(), 10_000);
    assert_eq!(ns.node_count(), 1);
}

// ---- errors ----

#[test]
fn error_messages_are_lowercase_and_name_the_values() {
    let cases = [
        (TreeError::NoNode { path: "/a".into() }, "no node at /a"),
        (
            TreeError::BadVersion {
                path: "/a".into(),
                expected: 2,
                actual: 3,
            },
            "node /a has version 3, not the expected 2",
        ),
        (
            TreeError::TooManyEphemerals { owner: 1, max: 5 },
            "session 0x0000000000000001 already owns 5 ephemeral nodes, the limit",
        ),
        (
            TreeError::InvalidPath(PathError::Empty),
            "invalid path: path is empty",
        ),
        (TreeError::RootDelete, "the root node / cannot be deleted"),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

// ---- the split: tree alone, new limits ----

#[test]
fn create_modes_from_flags_and_default() {
    assert_eq!(CreateMode::default(), CreateMode::Persistent);
    for mode in [
        CreateMode::Persistent,
        CreateMode::PersistentSequential,
        CreateMode::Ephemeral,
        CreateMode::EphemeralSequential,
    ] {
        assert_eq!(
            CreateMode::from_flags(mode.is_ephemeral(), mode.is_sequential()),
            mode
        );
    }
    assert_eq!(DataTree::default(), DataTree::new());
}

#[test]
fn writes_report_their_changes_in_firing_order() {
    let mut tree = DataTree::new();
    let change = |kind, path: &str| Change {
        kind,
        path: Arc::from(path),
    };
    let created = tree.create("/a", data("x"), CreateMode::Persistent, S1, 1, 0);
    assert_eq!(
        created.map(|w| w.changes),
        Ok(vec![
            change(EventKind::NodeCreated, "/a"),
            change(EventKind::NodeChildrenChanged, "/"),
        ])
    );
    let set = tree.set_data("/a", data("y"), None, 2, 0);
    assert_eq!(
        set.map(|w| w.changes),
        Ok(vec![change(EventKind::NodeDataChanged, "/a")])
    );
    for (zxid, path) in [(3, "/a/z"), (4, "/a/b")] {
        let created = tree.create(path, Bytes::new(), CreateMode::Ephemeral, S2, zxid, 0);
        assert!(created.is_ok(), "{created:?}");
    }
    let removed = tree.remove_session(S2, 5);
    assert_eq!(removed.value, vec!["/a/b".to_string(), "/a/z".to_string()]);
    assert_eq!(
        removed.changes,
        vec![
            change(EventKind::NodeDeleted, "/a/b"),
            change(EventKind::NodeChildrenChanged, "/a"),
            change(EventKind::NodeDeleted, "/a/z"),
            change(EventKind::NodeChildrenChanged, "/a"),
        ]
    );
    let deleted = tree.delete("/a", Some(1), 6);
    assert_eq!(
        deleted.map(|w| w.changes),
        Ok(vec![
            change(EventKind::NodeDeleted, "/a"),
            change(EventKind::NodeChildrenChanged, "/"),
        ])
    );
}

#[test]
fn a_failed_write_leaves_the_tree_equal() {
    let mut tree = DataTree::new();
    assert!(
        tree.create("/a", data("1"), CreateMode::Persistent, S1, 1, 0)
            .is_ok()
    );
    assert!(
        tree.create("/a/e", data("2"), CreateMode::Ephemeral, S1, 2, 0)
            .is_ok()
    );
    let before = tree.clone();
    assert!(
        tree.create("/a", data("x"), CreateMode::Persistent, S1, 3, 0)
            .is_err()
    );
    assert!(
        tree.create("/a/e/c", data("x"), CreateMode::Persistent, S1, 3, 0)
            .is_err()
    );
    assert!(
        tree.create("/x", data("x"), CreateMode::Ephemeral, 0, 3, 0)
            .is_err()
    );
    assert!(tree.delete("/a", None, 3).is_err());
    assert!(tree.delete("/a/e", Some(4), 3).is_err());
    assert!(tree.set_data("/a", data("x"), Some(7), 3, 0).is_err());
    assert!(tree.set_data("/nope", data("x"), None, 3, 0).is_err());
    let nothing = tree.remove_session(S2, 3);
    assert_eq!((nothing.value, nothing.changes), (vec![], vec![]));
    assert_eq!(tree, before);
}

#[test]
fn data_bytes_follow_every_write() {
    let mut tree = DataTree::new();
    assert_eq!(tree.data_bytes(), 0);
    assert!(
        tree.create("/a", data("12345"), CreateMode::Persistent, S1, 1, 0)
            .is_ok()
    );
    assert!(
        tree.create("/e", data("123"), CreateMode::Ephemeral, S1, 2, 0)
            .is_ok()
    );
    assert_eq!(tree.data_bytes(), 8);
    assert!(tree.set_data("/a", data("12"), None, 3, 0).is_ok());
    assert_eq!(tree.data_bytes(), 5);
    assert!(tree.set_data("/a", data("1234567"), None, 4, 0).is_ok());
    assert_eq!(tree.data_bytes(), 10);
    let _removed = tree.remove_session(S1, 5);
    assert_eq!(tree.data_bytes(), 7);
    assert!(tree.delete("/a", None, 6).is_ok());
    assert_eq!(tree.data_bytes(), 0);
}

#[test]
fn node_limit_counts_the_root() {
    let limits = TreeLimits {
        max_nodes: 3,
        ..TreeLimits::default()
    };
    let mut ns: Ns = Namespace::new(limits);
    mk(&mut ns, "/a", 1);
    mk_eph(&mut ns, "/b", S1, 2);
    for mode in [CreateMode::Persistent, CreateMode::EphemeralSequential] {
        let refused = ns.create("/c", Bytes::new(), mode, S1, 3, 0);
        assert_eq!(
            refused.map(|c| c.value),
            Err(TreeError::TooManyNodes { max: 3 })
        );
    }
    // Structure is checked before the limit: a taken name says so.
    let taken = ns.create("/a", Bytes::new(), CreateMode::Persistent, S1, 3, 0);
    assert_eq!(
        taken.map(|c| c.value),
        Err(TreeError::NodeExists { path: "/a".into() })
    );
    assert!(ns.delete("/b", None, 4).is_ok());
    mk(&mut ns, "/c", 5);
    assert_eq!(ns.node_count(), 3);
}

#[test]
fn data_quota_refuses_growth_only() {
    let limits = TreeLimits {
        max_total_data_bytes: 10,
        ..TreeLimits::default()
    };
    let mut ns: Ns = Namespace::new(limits);
    assert!(
        ns.create("/a", data("123456"), CreateMode::Persistent, S1, 1, 0)
            .is_ok()
    );
    let create = ns.create("/b", data("12345"), CreateMode::Persistent, S1, 2, 0);
    assert_eq!(
        create.map(|c| c.value),
        Err(TreeError::DataQuotaExceeded {
            size: 5,
            total: 6,
            max: 10
        })
    );
    // Exactly at the quota is fine, and so are empty nodes once it is full.
    assert!(
        ns.create("/b", data("1234"), CreateMode::Persistent, S1, 3, 0)
            .is_ok()
    );
    assert!(
        ns.create("/c", Bytes::new(), CreateMode::Persistent, S1, 4, 0)
            .is_ok()
    );
    let grow = ns.set_data("/a", data("1234567"), None, 5, 0);
    assert_eq!(
        grow.map(|w| w.value),
        Err(TreeError::DataQuotaExceeded {
            size: 7,
            total: 10,
            max: 10
        })
    );
    // Same size and shrinking always pass.
    assert!(ns.set_data("/a", data("abcdef"), None, 6, 0).is_ok());
    assert!(ns.set_data("/a", data("ab"), None, 7, 0).is_ok());
    assert!(ns.set_data("/c", data("1234"), None, 8, 0).is_ok());
    assert_eq!(ns.tree.data_bytes(), 10);
    // A lower quota than the data held: shrinking still passes, growth not.
    let lower = TreeLimits {
        max_total_data_bytes: 4,
        ..TreeLimits::default()
    };
    assert_eq!(ns.tree.check_set("/a", 1, None, &lower), Ok(()));
    assert!(matches!(
        ns.tree.check_set("/a", 3, None, &lower),
        Err(TreeError::DataQuotaExceeded { .. })
    ));
    assert_eq!(
        ns.tree
            .check_create("/d", 0, CreateMode::Persistent, S1, &lower),
        Ok(())
    );
}

#[test]
fn checks_report_the_writes_errors_in_order() {
    let mut tree = DataTree::new();
    let limits = TreeLimits {
        max_path_bytes: 20,
        max_data_bytes: 4,
        max_ephemerals_per_session: 1,
        ..TreeLimits::default()
    };
    assert!(
        tree.create("/e", Bytes::new(), CreateMode::Ephemeral, S1, 1, 0)
            .is_ok()
    );
    // Path length first (with the suffix for sequential), then syntax.
    let long = "/".repeat(21);
    assert_eq!(
        tree.check_create(&long, 0, CreateMode::Persistent, S1, &limits),
        Err(TreeError::PathTooLong { len: 21, max: 20 })
    );
    assert_eq!(
        tree.check_create(
            "/0123456789x",
            0,
            CreateMode::PersistentSequential,
            S1,
            &limits
        ),
        Err(TreeError::PathTooLong { len: 22, max: 20 })
    );
    assert!(matches!(
        tree.check_create("/a/", 99, CreateMode::Persistent, S1, &limits),
        Err(TreeError::InvalidPath(_))
    ));
    // Data size before the parent.
    assert!(matches!(
        tree.check_create("/x/y", 5, CreateMode::Persistent, S1, &limits),
        Err(TreeError::DataTooLarge {
            size: 5,
            max: 4,
            ..
        })
    ));
    assert_eq!(
        tree.check_create("/x/y", 4, CreateMode::Persistent, S1, &limits),
        Err(TreeError::NoNode { path: "/x".into() })
    );
    // Structure before the ephemeral limit.
    assert_eq!(
        tree.check_create("/e", 0, CreateMode::Ephemeral, S1, &limits),
        Err(TreeError::NodeExists { path: "/e".into() })
    );
    assert_eq!(
        tree.check_create("/f", 0, CreateMode::Ephemeral, S1, &limits),
        Err(TreeError::TooManyEphemerals { owner: S1, max: 1 })
    );
    assert_eq!(
        tree.check_create("/f", 0, CreateMode::Ephemeral, S2, &limits),
        Ok(())
    );
    assert_eq!(
        tree.check_set("/e", 5, Some(3), &limits),
        Err(TreeError::DataTooLarge {
            path: "/e".into(),
            size: 5,
            max: 4
        })
    );
    assert_eq!(
        tree.check_set("/e", 4, Some(3), &limits),
        Err(TreeError::BadVersion {
            path: "/e".into(),
            expected: 3,
            actual: 0
        })
    );
    assert_eq!(
        tree.check_delete(&long, None, &limits),
        Err(TreeError::PathTooLong { len: 21, max: 20 })
    );
    assert_eq!(
        tree.check_delete("/", None, &limits),
        Err(TreeError::RootDelete)
    );
    assert_eq!(tree.check_delete("/e", Some(0), &limits), Ok(()));
    // Checks change nothing.
    assert_eq!(tree.node_count(), 2);
}

#[test]
fn the_tree_writes_ignore_limits() {
    // What the transaction model relies on: apply never depends on limits.
    let mut tree = DataTree::new();
    let big = Bytes::from(vec![0_u8; 600 * 1024]);
    assert!(
        tree.create("/big", big.clone(), CreateMode::Persistent, S1, 1, 0)
            .is_ok()
    );
    for i in 0..3 {
        let created = tree.create(
            "/e-",
            Bytes::new(),
            CreateMode::EphemeralSequential,
            S1,
            2 + i,
            0,
        );
        assert!(created.is_ok());
    }
    assert!(tree.set_data("/big", big, None, 9, 0).is_ok());
    assert_eq!(tree.data_bytes(), 600 * 1024);
}

#[test]
fn stat_does_not_validate_and_export_is_sorted() {
    let mut tree = DataTree::new();
    for (zxid, path) in [(1, "/b"), (2, "/a"), (3, "/a/z"), (4, "/a/c")] {
        assert!(
            tree.create(path, data("d"), CreateMode::Persistent, S1, zxid, 7)
                .is_ok()
        );
    }
    assert_eq!(tree.stat("a"), None);
    assert_eq!(tree.stat("/a/").map(|s| s.czxid), None);
    assert_eq!(tree.stat("/a").map(|s| s.num_children), Some(2));
    let exported = tree.export();
    let paths: Vec<&str> = exported.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(paths, vec!["/", "/a", "/a/c", "/a/z", "/b"]);
    assert_eq!(exported[1].children, vec!["c".to_string(), "z".to_string()]);
    assert_eq!(exported[1].data, data("d"));
    assert_eq!(Some(exported[1].stat), tree.stat("/a"));
    assert_eq!(exported[0].stat.num_children, 2);
}

#[test]
fn new_errors_name_their_values_and_limits_are_marked() {
    assert_eq!(
        TreeError::TooManyNodes { max: 3 }.to_string(),
        "the tree already holds 3 nodes, the limit"
    );
    assert_eq!(
        TreeError::DataQuotaExceeded {
            size: 5,
            total: 6,
            max: 10
        }
        .to_string(),
        "data of 5 bytes would take the tree's 6 bytes of data over the quota of 10"
    );
    assert!(TreeError::TooManyNodes { max: 3 }.is_limit());
    assert!(TreeError::PathTooLong { len: 2, max: 1 }.is_limit());
    assert!(!TreeError::NoNode { path: "/".into() }.is_limit());
    assert!(!TreeError::RootDelete.is_limit());
}
