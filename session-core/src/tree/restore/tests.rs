//! Unit tests of [`DataTree::restore`]: a round trip in any order, and every
//! refusal of a hand-edited snapshot, named.

use bytes::Bytes;

use crate::{
    CONTAINER_OWNER, CreateMode, DataTree, NodeKind, NodeSnapshot, PathError, RestoreError,
    SessionId, TTL_OWNER_PREFIX,
};

const OWNER: u64 = 0x0100_0000_0000_0007;

/// Persistent and ephemeral nodes, data, a sequential name, a set and a
/// delete (so that zxids, versions and cversions all moved).
fn sample() -> DataTree {
    let mut tree = DataTree::new();
    let persistent = CreateMode::Persistent;
    let _ = tree
        .create("/a", Bytes::from_static(b"hello"), persistent, 0, 1, 10)
        .expect("created");
    let _ = tree
        .create("/a/b", Bytes::new(), persistent, 0, 2, 11)
        .expect("created");
    let _ = tree
        .create(
            "/a/e",
            Bytes::from_static(b"x"),
            CreateMode::Ephemeral,
            OWNER,
            3,
            12,
        )
        .expect("created");
    let _ = tree
        .create(
            "/q-",
            Bytes::new(),
            CreateMode::PersistentSequential,
            0,
            4,
            13,
        )
        .expect("created");
    let _ = tree
        .set_data("/a", Bytes::from_static(b"bye"), None, 5, 14)
        .expect("set");
    let _ = tree.delete("/a/b", None, 6).expect("deleted");
    tree
}

fn node<'a>(nodes: &'a mut [NodeSnapshot], path: &str) -> &'a mut NodeSnapshot {
    nodes
        .iter_mut()
        .find(|node| node.path == path)
        .expect("the sample has this node")
}

/// Restores the sample's export after `edit`.
fn edited(edit: impl FnOnce(&mut Vec<NodeSnapshot>)) -> Result<DataTree, RestoreError> {
    let mut nodes = sample().export();
    edit(&mut nodes);
    DataTree::restore(nodes)
}

fn refused(edit: impl FnOnce(&mut Vec<NodeSnapshot>)) -> RestoreError {
    edited(edit).expect_err("the edited snapshot is refused")
}

#[test]
fn restore_gives_the_tree_back_in_any_order() {
    let tree = sample();
    assert_eq!(tree.last_zxid(), 6);
    let mut nodes = tree.export();
    let restored = DataTree::restore(nodes.clone()).expect("valid");
    assert_eq!(restored, tree);
    assert_eq!(restored.export(), tree.export());
    assert_eq!(restored.data_bytes(), 4);
    assert_eq!(restored.last_zxid(), 6);
    assert_eq!(restored.ephemerals(OWNER).collect::<Vec<_>>(), vec!["/a/e"]);
    nodes.reverse();
    nodes[0].children.reverse();
    assert_eq!(DataTree::restore(nodes).expect("valid"), tree);
    // The empty tree too.
    let empty = DataTree::new();
    assert_eq!(DataTree::restore(empty.export()).expect("valid"), empty);
}

#[test]
fn a_restored_tree_writes_like_the_original() {
    let (mut tree, mut restored) = (
        sample(),
        DataTree::restore(sample().export()).expect("valid"),
    );
    let seq = CreateMode::PersistentSequential;
    assert_eq!(
        restored.create("/q-", Bytes::new(), seq, 0, 7, 20),
        tree.create("/q-", Bytes::new(), seq, 0, 7, 20)
    );
    assert_eq!(
        restored.remove_session(OWNER, 8),
        tree.remove_session(OWNER, 8)
    );
    assert_eq!(restored.ephemeral_count(OWNER), 0);
    assert_eq!(
        restored.set_data("/a", Bytes::new(), Some(1), 9, 21),
        tree.set_data("/a", Bytes::new(), Some(1), 9, 21)
    );
    assert_eq!(restored, tree);
}

#[test]
fn paths_must_be_valid_and_unique_and_the_root_persistent() {
    assert_eq!(
        refused(|nodes| node(nodes, "/a/e").path = "/a/e/".into()),
        RestoreError::InvalidPath(PathError::TrailingSlash {
            path: "/a/e/".into()
        })
    );
    assert!(matches!(
        refused(|nodes| node(nodes, "/a/e").path = "a".into()),
        RestoreError::InvalidPath(_)
    ));
    assert_eq!(
        refused(|nodes| {
            let copy = node(nodes, "/a").clone();
            nodes.push(copy);
        }),
        RestoreError::DuplicatePath { path: "/a".into() }
    );
    assert_eq!(
        refused(|nodes| nodes.retain(|node| node.path != "/")),
        RestoreError::MissingRoot
    );
    assert_eq!(
        DataTree::restore(Vec::new()),
        Err(RestoreError::MissingRoot)
    );
    assert_eq!(
        refused(|nodes| make_ephemeral(node(nodes, "/"))),
        RestoreError::EphemeralRoot {
            owner: SessionId::from_u64(OWNER)
        }
    );
}

#[test]
fn parents_must_exist_and_be_persistent() {
    assert_eq!(
        refused(|nodes| node(nodes, "/a/e").path = "/c/e".into()),
        RestoreError::MissingParent {
            path: "/c/e".into(),
            parent: "/c".into()
        }
    );
    assert_eq!(
        refused(|nodes| make_ephemeral(node(nodes, "/a"))),
        RestoreError::EphemeralWithChildren {
            path: "/a".into(),
            child: "/a/e".into()
        }
    );
}

fn make_ephemeral(node: &mut NodeSnapshot) {
    node.stat.ephemeral_owner = OWNER;
    node.kind = NodeKind::Ephemeral;
}

#[test]
fn an_owner_must_fit_the_kind_of_its_node() {
    // An owner on a persistent node, an ephemeral without one, a container
    // or TTL node without ZooKeeper's encoding, a TTL out of range.
    let cases: [(u64, NodeKind); 5] = [
        (OWNER, NodeKind::Persistent),
        (0, NodeKind::Ephemeral),
        (OWNER, NodeKind::Container),
        (0, NodeKind::Ttl { ttl_ms: 5 }),
        (TTL_OWNER_PREFIX, NodeKind::Ttl { ttl_ms: 0 }),
    ];
    for (owner, kind) in cases {
        let error = refused(|nodes| {
            let n = node(nodes, "/a");
            n.stat.ephemeral_owner = owner;
            n.kind = kind;
        });
        assert!(
            matches!(&error, RestoreError::OwnerMismatch { path, .. } if path == "/a"),
            "{owner:#x} {kind:?}: {error:?}"
        );
    }
    // The right encodings restore, and index as reapable.
    let mut tree = DataTree::new();
    let _ = tree
        .create("/c", Bytes::new(), CreateMode::Container, 0, 1, 1)
        .expect("as set up");
    let ttl = CreateMode::PersistentWithTtl { ttl_ms: 5 };
    let _ = tree
        .create("/t", Bytes::new(), ttl, 0, 2, 1)
        .expect("as set up");
    let restored = DataTree::restore(tree.export()).expect("as set up");
    assert_eq!(restored, tree);
    assert_eq!(restored.reapable_count(), 2);
    assert_eq!(
        restored.stat("/c").expect("as set up").ephemeral_owner,
        CONTAINER_OWNER
    );
    assert_eq!(
        restored.stat("/t").expect("as set up").ephemeral_owner,
        TTL_OWNER_PREFIX | 5
    );
}

#[test]
fn children_lists_must_name_exactly_the_children() {
    assert_eq!(
        refused(|nodes| node(nodes, "/a").children.clear()),
        RestoreError::ChildNotListed {
            parent: "/a".into(),
            child: "/a/e".into()
        }
    );
    assert_eq!(
        refused(|nodes| node(nodes, "/").children.push("zz".into())),
        RestoreError::UnknownChild {
            parent: "/".into(),
            name: "zz".into()
        }
    );
    // A name that is not one component names no child.
    assert_eq!(
        refused(|nodes| node(nodes, "/").children = vec!["a/e".into(), "q-0000000001".into()]),
        RestoreError::UnknownChild {
            parent: "/".into(),
            name: "a/e".into()
        }
    );
    assert_eq!(
        refused(|nodes| node(nodes, "/a").children.push("e".into())),
        RestoreError::DuplicateChild {
            parent: "/a".into(),
            name: "e".into()
        }
    );
}

#[test]
fn stats_must_agree_with_data_and_children() {
    assert_eq!(
        refused(|nodes| node(nodes, "/a").stat.num_children = 2),
        RestoreError::NumChildrenMismatch {
            path: "/a".into(),
            recorded: 2,
            actual: 1
        }
    );
    assert_eq!(
        refused(|nodes| node(nodes, "/a").stat.data_length = 5),
        RestoreError::DataLengthMismatch {
            path: "/a".into(),
            recorded: 5,
            actual: 3
        }
    );
    assert_eq!(
        refused(|nodes| node(nodes, "/a").data = Bytes::from_static(b"hello")),
        RestoreError::DataLengthMismatch {
            path: "/a".into(),
            recorded: 3,
            actual: 5
        }
    );
}

#[test]
fn the_first_problem_in_path_order_is_reported() {
    // Two problems: the earlier path wins, whatever the order given.
    let edit = |nodes: &mut Vec<NodeSnapshot>| {
        node(nodes, "/q-0000000001").stat.data_length = 9;
        node(nodes, "/a").stat.data_length = 9;
    };
    let expected = RestoreError::DataLengthMismatch {
        path: "/a".into(),
        recorded: 9,
        actual: 3,
    };
    assert_eq!(refused(edit), expected);
    assert_eq!(
        refused(|nodes| {
            edit(nodes);
            nodes.reverse();
        }),
        expected
    );
}

#[test]
fn restore_errors_name_the_path() {
    let cases = [
        (
            RestoreError::MissingParent {
                path: "/c/e".into(),
                parent: "/c".into(),
            },
            "snapshot node /c/e has no parent node /c",
        ),
        (
            RestoreError::ChildNotListed {
                parent: "/a".into(),
                child: "/a/e".into(),
            },
            "snapshot node /a/e is missing from the children of /a",
        ),
        (
            RestoreError::UnknownChild {
                parent: "/".into(),
                name: "zz".into(),
            },
            "snapshot node / lists a child \"zz\" that is not in the snapshot",
        ),
        (
            RestoreError::NumChildrenMismatch {
                path: "/a".into(),
                recorded: 2,
                actual: 1,
            },
            "snapshot node /a has num_children 2, but 1 children",
        ),
        (
            RestoreError::EphemeralRoot {
                owner: SessionId::from_u64(OWNER),
            },
            "snapshot's root node / is ephemeral (owner 0x0100000000000007)",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}
