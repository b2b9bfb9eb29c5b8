//! Unit tests of every operation, error, watch rule and limit.

use std::collections::HashSet;

use bytes::Bytes;
use session_core::PathError;

use super::*;

type Ns = Namespace<u64>;

const S1: u64 = 0x0100_0000_0000_0001;
const S2: u64 = 0x0100_0000_0000_0002;

fn ns() -> Ns {
    Namespace::new(NamespaceLimits::default())
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

fn event(kind: WatchEventKind, path: &str, zxid: u64) -> WatchEvent {
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
    let no_node = Err(NamespaceError::NoNode { path: "/a".into() });
    assert_eq!(ns.get_data("/a"), no_node);
    assert_eq!(
        ns.children("/a").map(|_| ()),
        Err(NamespaceError::NoNode { path: "/a".into() })
    );
    assert_eq!(ns.exists("/a"), Ok(None));
}

#[test]
fn reads_refuse_invalid_paths() {
    let ns = ns();
    assert_eq!(
        ns.get_data("a"),
        Err(NamespaceError::InvalidPath(PathError::NotAbsolute {
            path: "a".into()
        }))
    );
    assert!(matches!(
        ns.exists("/a/"),
        Err(NamespaceError::InvalidPath(PathError::TrailingSlash { .. }))
    ));
    assert!(matches!(
        ns.children("/a//b"),
        Err(NamespaceError::InvalidPath(
            PathError::EmptyComponent { .. }
        ))
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
        Err(NamespaceError::NodeExists { path: "/a".into() })
    );
    let root = ns.create("/", Bytes::new(), CreateMode::Persistent, S1, 3, 0);
    assert_eq!(
        root.map(|c| c.value),
        Err(NamespaceError::NodeExists { path: "/".into() })
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
        Err(NamespaceError::NoNode {
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
            matches!(created, Err(NamespaceError::InvalidPath(_))),
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
            Err(NamespaceError::NoChildrenForEphemerals {
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
        Err(NamespaceError::ZeroOwner { path: "/e".into() })
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
        Err(NamespaceError::SequenceExhausted {
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
        Err(NamespaceError::NodeExists {
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
        Err(NamespaceError::BadVersion {
            path: "/a".into(),
            expected: 3,
            actual: 0
        })
    );
    assert_eq!(
        ns.set_data("/b", data("x"), None, 2, 0).map(|w| w.value),
        Err(NamespaceError::NoNode { path: "/b".into() })
    );
    assert!(matches!(
        ns.set_data("b", data("x"), None, 2, 0),
        Err(NamespaceError::InvalidPath(_))
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
        Err(NamespaceError::NotEmpty {
            path: "/a".into(),
            children: 1
        })
    );
    assert_eq!(
        ns.delete("/a/b", Some(1), 3).map(|w| w.value),
        Err(NamespaceError::BadVersion {
            path: "/a/b".into(),
            expected: 1,
            actual: 0
        })
    );
    assert_eq!(
        ns.delete("/x", None, 3).map(|w| w.value),
        Err(NamespaceError::NoNode { path: "/x".into() })
    );
    assert_eq!(
        ns.delete("/", None, 3).map(|w| w.value),
        Err(NamespaceError::RootDelete)
    );
    assert!(matches!(
        ns.delete("/a/", None, 3),
        Err(NamespaceError::InvalidPath(_))
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
    assert!(ns.ephemerals.is_empty(), "no empty owner entries kept");
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
            (10, event(WatchEventKind::NodeCreated, "/p/c", 2)),
            (11, event(WatchEventKind::NodeChildrenChanged, "/p", 2)),
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
            (10, event(WatchEventKind::NodeDataChanged, "/a", 2)),
            (11, event(WatchEventKind::NodeDataChanged, "/a", 2)),
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
            (10, event(WatchEventKind::NodeDeleted, "/p/c", 3)),
            (11, event(WatchEventKind::NodeDeleted, "/p/c", 3)),
        ])
    );
    assert_eq!(
        fired[2],
        (10, event(WatchEventKind::NodeChildrenChanged, "/p", 3))
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
        Ok(vec![(10, event(WatchEventKind::NodeDataChanged, "/a", 2))])
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
        Ok(vec![(10, event(WatchEventKind::NodeDeleted, "/a", 2))])
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
        Ok(vec![(11, event(WatchEventKind::NodeDataChanged, "/a", 2))])
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
            (20, event(WatchEventKind::NodeDeleted, "/svc/a", 9)),
            (21, event(WatchEventKind::NodeChildrenChanged, "/svc", 9)),
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
            (10, event(WatchEventKind::NodeDataChanged, "/changed", 5)),
            (10, event(WatchEventKind::NodeDeleted, "/gone", 5)),
        ])
    );
    assert_eq!(ns.watch_count(), 1);
    let later = ns.set_data("/old", data("y"), None, 6, 0).map(|w| w.fired);
    assert_eq!(
        later,
        Ok(vec![(
            10,
            event(WatchEventKind::NodeDataChanged, "/old", 6)
        )])
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
        Ok(vec![(10, event(WatchEventKind::NodeCreated, "/here", 1))])
    );
    let created = ns.create("/absent", Bytes::new(), CreateMode::Persistent, S1, 101, 0);
    assert_eq!(
        created.map(|c| c.fired),
        Ok(vec![(
            10,
            event(WatchEventKind::NodeCreated, "/absent", 101)
        )])
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
            (10, event(WatchEventKind::NodeChildrenChanged, "/busy", 7)),
            (10, event(WatchEventKind::NodeDeleted, "/gone", 7)),
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
        Err(NamespaceError::InvalidPath(_))
    ));
    let long = [format!("/{}", "x".repeat(2000))];
    assert_eq!(
        ns.set_watches(10, 0, &[], &long, &[]),
        Err(NamespaceError::PathTooLong {
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
        NamespaceLimits::default(),
        NamespaceLimits {
            max_path_bytes: 1024,
            max_data_bytes: 512 * 1024,
            max_ephemerals_per_session: 10_000,
        }
    );
    assert_eq!(ns().limits(), &NamespaceLimits::default());
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
    let too_long = Err(NamespaceError::PathTooLong {
        len: 1025,
        max: 1024,
    });
    let create = ns.create(&over, Bytes::new(), CreateMode::Persistent, S1, 2, 0);
    assert_eq!(
        create.map(|c| c.value),
        too_long.clone().map(|()| String::new())
    );
    assert_eq!(ns.exists(&over), too_long.clone().map(|()| None));
    assert_eq!(ns.get_data(&over).map(|_| ()), too_long);
    assert_eq!(ns.children(&over).map(|_| ()), too_long);
    assert_eq!(ns.delete(&over, None, 2).map(|w| w.value), too_long);
    assert_eq!(
        ns.set_data(&over, Bytes::new(), None, 2, 0).map(|_| ()),
        too_long
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
        Err(NamespaceError::PathTooLong {
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
    let limits = NamespaceLimits {
        max_data_bytes: 4,
        ..NamespaceLimits::default()
    };
    let mut ns: Ns = Namespace::new(limits);
    assert!(
        ns.create("/a", data("1234"), CreateMode::Persistent, S1, 1, 0)
            .is_ok()
    );
    let create = ns.create("/b", data("12345"), CreateMode::Persistent, S1, 2, 0);
    let too_large = NamespaceError::DataTooLarge {
        path: "/b".into(),
        size: 5,
        max: 4,
    };
    assert_eq!(create.map(|c| c.value), Err(too_large));
    let set = ns.set_data("/a", data("12345"), None, 2, 0);
    assert_eq!(
        set.map(|w| w.value),
        Err(NamespaceError::DataTooLarge {
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
        Err(NamespaceError::DataTooLarge { size: 524_289, .. })
    ));
}

#[test]
fn ephemeral_limit_is_per_session() {
    let limits = NamespaceLimits {
        max_ephemerals_per_session: 2,
        ..NamespaceLimits::default()
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
        Err(NamespaceError::TooManyEphemerals { owner: S1, max: 2 })
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
        Err(NamespaceError::TooManyEphemerals { max: 10_000, .. })
    ));
    let removed = ns.remove_session(S1, 10_002);
    assert_eq!(removed.value.len(), 10_000);
    assert_eq!(ns.node_count(), 1);
}

// ---- errors ----

#[test]
fn error_messages_are_lowercase_and_name_the_values() {
    let cases = [
        (
            NamespaceError::NoNode { path: "/a".into() },
            "no node at /a",
        ),
        (
            NamespaceError::BadVersion {
                path: "/a".into(),
                expected: 2,
                actual: 3,
            },
            "node /a has version 3, not the expected 2",
        ),
        (
            NamespaceError::TooManyEphemerals { owner: 1, max: 5 },
            "session 0x0000000000000001 already owns 5 ephemeral nodes, the limit",
        ),
        (
            NamespaceError::InvalidPath(PathError::Empty),
            "invalid path: path is empty",
        ),
        (
            NamespaceError::RootDelete,
            "the root node / cannot be deleted",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}
