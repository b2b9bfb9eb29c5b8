//! Random sequences of operations checked against a simple model: results,
//! stats, children, the ephemeral index and fired watches must all agree; and
//! after every step the tree restored from its export equals it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::namespace::Namespace;
use super::*;
use crate::WatchEvent;

const FIXED: [&str; 6] = ["/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z"];
const SEQ_PREFIXES: [&str; 3] = ["/a/s-", "/b/", "/q"];
const OWNERS: [u64; 4] = [0, 1, 2, 3];
const MAX_EPHEMERALS: usize = 3;

#[derive(Debug, Clone)]
enum Target {
    Fixed(usize),
    /// An index (modulo) into the nodes existing at that step.
    Existing(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        target: Target,
        sequential: Option<usize>,
        ephemeral: bool,
        owner: usize,
        len: usize,
    },
    Delete {
        target: Target,
        version: Option<i32>,
    },
    Set {
        target: Target,
        version: Option<i32>,
        len: usize,
    },
    RemoveSession(usize),
    Watch {
        target: Target,
        kind: u8,
        watcher: u64,
    },
    RemoveWatcher(u64),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0..FIXED.len()).prop_map(Target::Fixed),
        any::<usize>().prop_map(Target::Existing),
    ]
}

fn version() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![Just(None), Just(Some(-1)), (0..3_i32).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            target(),
            proptest::option::of(0..SEQ_PREFIXES.len()),
            any::<bool>(),
            0..OWNERS.len(),
            0..4_usize,
        )
            .prop_map(|(target, sequential, ephemeral, owner, len)| Op::Create {
                target, sequential, ephemeral, owner, len
            }),
        2 => (target(), version()).prop_map(|(target, version)| Op::Delete { target, version }),
        2 => (target(), version(), 0..4_usize)
            .prop_map(|(target, version, len)| Op::Set { target, version, len }),
        1 => (0..OWNERS.len()).prop_map(Op::RemoveSession),
        3 => (target(), 0..3_u8, 10..13_u64)
            .prop_map(|(target, kind, watcher)| Op::Watch { target, kind, watcher }),
        1 => (10..13_u64).prop_map(Op::RemoveWatcher),
    ]
}

#[derive(Debug, Clone)]
struct ModelNode {
    data: Vec<u8>,
    version: i32,
    cversion: i32,
    owner: u64,
    czxid: u64,
    mzxid: u64,
    pzxid: u64,
}

#[derive(Debug)]
struct Model {
    nodes: BTreeMap<String, ModelNode>,
    watches: BTreeSet<(u8, String, u64)>,
}

const DATA: u8 = 0;
const EXIST: u8 = 1;
const CHILD: u8 = 2;

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(slash) => path[..slash].into(),
    }
}

type Fired = HashSet<(u64, WatchEvent)>;

impl Model {
    fn new() -> Self {
        let root = ModelNode {
            data: vec![],
            version: 0,
            cversion: 0,
            owner: 0,
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
        };
        Self {
            nodes: BTreeMap::from([("/".to_string(), root)]),
            watches: BTreeSet::new(),
        }
    }

    fn resolve(&self, target: &Target) -> String {
        match target {
            Target::Fixed(i) => FIXED[*i].into(),
            Target::Existing(i) => {
                let index = i % self.nodes.len();
                self.nodes.keys().nth(index).cloned().unwrap_or_default()
            }
        }
    }

    fn children_of(&self, path: &str) -> usize {
        self.nodes
            .keys()
            .filter(|p| p.as_str() != "/" && parent_of(p) == path)
            .count()
    }

    fn fire(&mut self, kinds: &[u8], path: &str, kind: EventKind, zxid: u64, out: &mut Fired) {
        let hit: Vec<(u8, String, u64)> = self
            .watches
            .iter()
            .filter(|(k, p, _)| kinds.contains(k) && p == path)
            .cloned()
            .collect();
        for watch in hit {
            self.watches.remove(&watch);
            let event = WatchEvent {
                kind,
                path: Arc::from(path),
                zxid,
            };
            out.insert((watch.2, event));
        }
    }

    fn create(
        &mut self,
        path: &str,
        mode: CreateMode,
        owner: u64,
        data: &[u8],
        zxid: u64,
        out: &mut Fired,
    ) -> Result<String, TreeError> {
        if path == "/" && !mode.is_sequential() {
            return Err(TreeError::NodeExists { path: path.into() });
        }
        if mode.is_ephemeral() && owner == 0 {
            return Err(TreeError::ZeroOwner { path: path.into() });
        }
        let owner = if mode.is_ephemeral() { owner } else { 0 };
        let parent = parent_of(path);
        let Some(parent_node) = self.nodes.get(&parent) else {
            return Err(TreeError::NoNode { path: parent });
        };
        if parent_node.owner != 0 {
            return Err(TreeError::NoChildrenForEphemerals {
                path: path.into(),
                parent,
            });
        }
        let path = if mode.is_sequential() {
            format!("{path}{:010}", parent_node.cversion)
        } else {
            path.to_owned()
        };
        if self.nodes.contains_key(&path) {
            return Err(TreeError::NodeExists { path });
        }
        if owner != 0 && self.nodes.values().filter(|n| n.owner == owner).count() >= MAX_EPHEMERALS
        {
            return Err(TreeError::TooManyEphemerals {
                owner,
                max: MAX_EPHEMERALS,
            });
        }
        if let Some(parent_node) = self.nodes.get_mut(&parent) {
            parent_node.cversion += 1;
            parent_node.pzxid = zxid;
        }
        self.nodes.insert(
            path.clone(),
            ModelNode {
                data: data.to_vec(),
                version: 0,
                cversion: 0,
                owner,
                czxid: zxid,
                mzxid: zxid,
                pzxid: zxid,
            },
        );
        self.fire(&[DATA, EXIST], &path, EventKind::NodeCreated, zxid, out);
        self.fire(&[CHILD], &parent, EventKind::NodeChildrenChanged, zxid, out);
        Ok(path)
    }

    fn delete(
        &mut self,
        path: &str,
        version: Option<i32>,
        zxid: u64,
        out: &mut Fired,
    ) -> Result<(), TreeError> {
        if path == "/" {
            return Err(TreeError::RootDelete);
        }
        let Some(node) = self.nodes.get(path) else {
            return Err(TreeError::NoNode { path: path.into() });
        };
        if let Some(expected) = version.filter(|v| *v != -1 && *v != node.version) {
            return Err(TreeError::BadVersion {
                path: path.into(),
                expected,
                actual: node.version,
            });
        }
        let children = self.children_of(path);
        if children > 0 {
            return Err(TreeError::NotEmpty {
                path: path.into(),
                children,
            });
        }
        self.nodes.remove(path);
        let parent = parent_of(path);
        if let Some(parent_node) = self.nodes.get_mut(&parent) {
            parent_node.cversion += 1;
            parent_node.pzxid = zxid;
        }
        self.fire(
            &[DATA, EXIST, CHILD],
            path,
            EventKind::NodeDeleted,
            zxid,
            out,
        );
        self.fire(&[CHILD], &parent, EventKind::NodeChildrenChanged, zxid, out);
        Ok(())
    }

    fn set(
        &mut self,
        path: &str,
        version: Option<i32>,
        data: &[u8],
        zxid: u64,
        out: &mut Fired,
    ) -> Result<(), TreeError> {
        let Some(node) = self.nodes.get_mut(path) else {
            return Err(TreeError::NoNode { path: path.into() });
        };
        if let Some(expected) = version.filter(|v| *v != -1 && *v != node.version) {
            return Err(TreeError::BadVersion {
                path: path.into(),
                expected,
                actual: node.version,
            });
        }
        node.data = data.to_vec();
        node.version += 1;
        node.mzxid = zxid;
        self.fire(&[DATA], path, EventKind::NodeDataChanged, zxid, out);
        Ok(())
    }
}

fn check(ns: &Namespace<u64>, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(ns.node_count(), model.nodes.len());
    prop_assert_eq!(ns.watch_count(), model.watches.len());
    let data_bytes: usize = model.nodes.values().map(|node| node.data.len()).sum();
    prop_assert_eq!(ns.tree.data_bytes(), data_bytes);
    for watcher in 10..13_u64 {
        let held = model
            .watches
            .iter()
            .filter(|(_, _, w)| *w == watcher)
            .count();
        prop_assert_eq!(ns.watches.count_of(watcher), held, "watches of {}", watcher);
    }
    for (path, expected) in &model.nodes {
        let (data, stat) = ns
            .get_data(path)
            .map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
        let (children, stat_again) = ns
            .children(path)
            .map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
        prop_assert_eq!(stat, stat_again);
        prop_assert_eq!(&data[..], &expected.data[..], "data of {}", path);
        prop_assert_eq!(stat.data_length as usize, expected.data.len());
        prop_assert_eq!(stat.version, expected.version, "version of {}", path);
        prop_assert_eq!(stat.cversion, expected.cversion, "cversion of {}", path);
        prop_assert_eq!(stat.ephemeral_owner, expected.owner);
        prop_assert_eq!(
            (stat.czxid, stat.mzxid, stat.pzxid),
            (expected.czxid, expected.mzxid, expected.pzxid),
            "zxids of {}",
            path
        );
        prop_assert_eq!(stat.num_children as usize, children.len());
        prop_assert_eq!(children.len(), model.children_of(path));
        for name in &children {
            let child = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            prop_assert!(model.nodes.contains_key(&child), "stray child {}", child);
        }
    }
    for &owner in &OWNERS[1..] {
        let expected: Vec<&str> = model
            .nodes
            .iter()
            .filter(|(_, node)| node.owner == owner)
            .map(|(path, _)| path.as_str())
            .collect();
        prop_assert_eq!(ns.ephemerals(owner).collect::<Vec<_>>(), expected.clone());
        prop_assert_eq!(ns.ephemeral_count(owner), expected.len());
    }
    // The snapshot gives the same tree back: indexes, totals, last zxid.
    let restored = DataTree::restore(ns.tree.export())
        .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
    prop_assert_eq!(&restored, &ns.tree);
    Ok(())
}

proptest! {
    // No regression files: a failure prints its minimal input to copy into a unit test.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn namespace_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let limits = TreeLimits {
            max_ephemerals_per_session: MAX_EPHEMERALS,
            ..TreeLimits::default()
        };
        let mut ns: Namespace<u64> = Namespace::new(limits);
        let mut model = Model::new();
        for (step, op) in ops.iter().enumerate() {
            let zxid = step as u64 + 1;
            let mut expected = Fired::new();
            let fired: Vec<(u64, WatchEvent)> = match op {
                Op::Create { target, sequential, ephemeral, owner, len } => {
                    let path = match sequential {
                        Some(i) => SEQ_PREFIXES[*i].to_string(),
                        None => model.resolve(target),
                    };
                    let mode = match (sequential.is_some(), *ephemeral) {
                        (false, false) => CreateMode::Persistent,
                        (true, false) => CreateMode::PersistentSequential,
                        (false, true) => CreateMode::Ephemeral,
                        (true, true) => CreateMode::EphemeralSequential,
                    };
                    let data = vec![b'd'; *len];
                    let owner = OWNERS[*owner];
                    let want = model.create(&path, mode, owner, &data, zxid, &mut expected);
                    let got = ns.create(&path, Bytes::from(data), mode, owner, zxid, 0);
                    prop_assert_eq!(got.as_ref().map(|w| &w.value), want.as_ref(), "{:?}", op);
                    got.map(|w| w.fired).unwrap_or_default()
                }
                Op::Delete { target, version } => {
                    let path = model.resolve(target);
                    let want = model.delete(&path, *version, zxid, &mut expected);
                    let got = ns.delete(&path, *version, zxid);
                    prop_assert_eq!(got.as_ref().err(), want.as_ref().err(), "{:?}", op);
                    got.map(|w| w.fired).unwrap_or_default()
                }
                Op::Set { target, version, len } => {
                    let path = model.resolve(target);
                    let data = vec![b's'; *len];
                    let want = model.set(&path, *version, &data, zxid, &mut expected);
                    let got = ns.set_data(&path, Bytes::from(data), *version, zxid, 0);
                    prop_assert_eq!(got.as_ref().err(), want.as_ref().err(), "{:?}", op);
                    got.map(|w| w.fired).unwrap_or_default()
                }
                Op::RemoveSession(owner) => {
                    let owner = OWNERS[*owner];
                    let doomed: Vec<String> = model
                        .nodes
                        .iter()
                        .filter(|(_, node)| owner != 0 && node.owner == owner)
                        .map(|(path, _)| path.clone())
                        .collect();
                    for path in &doomed {
                        let deleted = model.delete(path, None, zxid, &mut expected);
                        prop_assert!(deleted.is_ok());
                    }
                    let got = ns.remove_session(owner, zxid);
                    prop_assert_eq!(&got.value, &doomed);
                    got.fired
                }
                Op::Watch { target, kind, watcher } => {
                    let path = model.resolve(target);
                    let exists = model.nodes.contains_key(&path);
                    match *kind {
                        DATA => {
                            prop_assert_eq!(ns.get_data_and_watch(&path, *watcher).is_ok(), exists);
                            if exists {
                                model.watches.insert((DATA, path, *watcher));
                            }
                        }
                        EXIST => {
                            let found = ns.exists_and_watch(&path, *watcher);
                            prop_assert_eq!(found.map(|s| s.is_some()), Ok(exists));
                            let kind = if exists { DATA } else { EXIST };
                            model.watches.insert((kind, path, *watcher));
                        }
                        _ => {
                            prop_assert_eq!(ns.children_and_watch(&path, *watcher).is_ok(), exists);
                            if exists {
                                model.watches.insert((CHILD, path, *watcher));
                            }
                        }
                    }
                    Vec::new()
                }
                Op::RemoveWatcher(watcher) => {
                    let before = model.watches.len();
                    model.watches.retain(|(_, _, w)| w != watcher);
                    prop_assert_eq!(ns.remove_watcher(*watcher), before - model.watches.len());
                    Vec::new()
                }
            };
            let fired_set: Fired = fired.iter().cloned().collect();
            prop_assert_eq!(fired.len(), fired_set.len(), "duplicate events: {:?}", fired);
            prop_assert_eq!(fired_set, expected, "events of {:?}", op);
            check(&ns, &model)?;
        }
    }
}
