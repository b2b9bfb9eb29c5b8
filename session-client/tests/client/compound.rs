//! Multi (all or nothing, per-operation outcomes), multi-read, the session's
//! ephemerals, descendant counts, and the nodes the server deletes by itself
//! (containers and TTL nodes).

use std::time::Duration;

use session_client::{
    CreateMode, CreateOptions, Error, MultiError, Op, OpOutcome, ReadOp, ReadOutcome,
};
use session_core::CONTAINER_OWNER;

use crate::support::{MAX_TIMEOUT, connect, connect_to, eventually, start, test_config};

#[tokio::test]
async fn multi_applies_everything_in_order_with_a_result_per_operation() {
    let server = start().await;
    let client = connect(&server).await;
    client
        .create("/jobs", b"", CreateMode::Persistent)
        .await
        .expect("create");

    let outcomes = client
        .multi(vec![
            Op::create(
                "/jobs/job-",
                b"a".to_vec(),
                CreateMode::PersistentSequential,
            ),
            Op::create("/jobs/meta", b"m".to_vec(), CreateMode::Persistent),
            // Sees the create before it.
            Op::set_data("/jobs/meta", b"m2".to_vec(), Some(0)),
            Op::check("/jobs/meta", Some(1)),
            Op::check("/jobs", None),
            Op::delete("/jobs/meta", Some(1)),
        ])
        .await
        .expect("multi");
    assert_eq!(outcomes.len(), 6);
    let OpOutcome::Created { path, stat } = &outcomes[0] else {
        panic!("a create's outcome: {outcomes:?}");
    };
    assert_eq!(path, "/jobs/job-0000000000");
    // One change, one zxid: every operation is stamped with it.
    let zxid = stat.czxid;
    assert!(
        matches!(&outcomes[1], OpOutcome::Created { path, stat } if path == "/jobs/meta" && stat.czxid == zxid),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], OpOutcome::DataSet { stat } if stat.version == 1 && stat.mzxid == zxid),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[3], OpOutcome::Checked);
    assert_eq!(outcomes[4], OpOutcome::Checked);
    assert_eq!(outcomes[5], OpOutcome::Deleted);
    assert_eq!(
        client.children("/jobs").await.expect("children"),
        ["job-0000000000"]
    );
    assert_eq!(client.multi(Vec::new()).await, Ok(Vec::new()), "empty");
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_multi_applies_nothing_and_names_the_failing_operation() {
    let server = start().await;
    let client = connect(&server).await;
    client
        .create("/m", b"v0", CreateMode::Persistent)
        .await
        .expect("create");

    let result = client
        .multi(vec![
            Op::create("/m/new", b"".to_vec(), CreateMode::Persistent),
            Op::set_data("/m", b"v1".to_vec(), None),
            Op::delete("/missing", None),
            Op::create("/m/other", b"".to_vec(), CreateMode::Persistent),
        ])
        .await;
    match &result {
        Err(MultiError::Failed {
            index: 2,
            error: Error::NoNode { detail },
        }) => assert!(detail.contains("/missing"), "{detail}"),
        other => panic!("operation 2 fails with NoNode: {other:?}"),
    }
    assert_eq!(client.exists("/m/new").await, Ok(None), "nothing applied");
    let (data, stat) = client.get("/m").await.expect("get");
    assert_eq!((&data[..], stat.version), (&b"v0"[..], 0));

    let result = client
        .multi(vec![
            Op::check("/m", Some(5)),
            Op::set_data("/m", b"v1".to_vec(), None),
        ])
        .await;
    assert!(
        matches!(
            result,
            Err(MultiError::Failed {
                index: 0,
                error: Error::BadVersion { .. }
            })
        ),
        "{result:?}"
    );
    let result = client
        .multi(vec![
            Op::create("/m/a", b"".to_vec(), CreateMode::Persistent),
            Op::create("/m/a", b"".to_vec(), CreateMode::Persistent),
        ])
        .await;
    assert!(
        matches!(
            result,
            Err(MultiError::Failed {
                index: 1,
                error: Error::NodeExists { .. }
            })
        ),
        "the second create sees the first: {result:?}"
    );
    assert_eq!(client.exists("/m/a").await, Ok(None));

    // A bad path is found before anything is sent.
    let result = client
        .multi(vec![Op::check("/m", None), Op::delete("no-slash", None)])
        .await;
    assert!(
        matches!(
            result,
            Err(MultiError::Failed {
                index: 1,
                error: Error::InvalidPath { .. }
            })
        ),
        "{result:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn multi_read_answers_each_read_on_its_own() {
    let server = start().await;
    let client = connect(&server).await;
    client
        .create("/r", b"data", CreateMode::Persistent)
        .await
        .expect("create");
    client
        .create("/r/b", b"", CreateMode::Persistent)
        .await
        .expect("create");
    client
        .create("/r/a", b"", CreateMode::Persistent)
        .await
        .expect("create");

    let outcomes = client
        .multi_read(vec![
            ReadOp::get_data("/r"),
            ReadOp::get_children("/missing"),
            ReadOp::get_children("/r"),
            ReadOp::get_data("/missing"),
        ])
        .await
        .expect("multi-read");
    assert_eq!(outcomes.len(), 4);
    assert!(
        matches!(&outcomes[0], Ok(ReadOutcome::Data { data, stat }) if &data[..] == b"data" && stat.num_children == 2),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], Err(Error::NoNode { detail }) if detail.contains("/missing")),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], Ok(ReadOutcome::Children { children, .. }) if children == &["a", "b"]),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[3], Err(Error::NoNode { .. })),
        "{outcomes:?}"
    );
    assert!(matches!(
        client.multi_read(vec![ReadOp::get_data("bad")]).await,
        Err(Error::InvalidPath { .. })
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn get_ephemerals_lists_this_sessions_own_by_prefix() {
    let server = start().await;
    let mine = connect(&server).await;
    let theirs = connect(&server).await;
    mine.create("/svc", b"", CreateMode::Persistent)
        .await
        .expect("create");
    mine.create("/svc/web-", b"", CreateMode::EphemeralSequential)
        .await
        .expect("create");
    mine.create("/svc/db", b"", CreateMode::Ephemeral)
        .await
        .expect("create");
    mine.create("/lock", b"", CreateMode::Ephemeral)
        .await
        .expect("create");
    theirs
        .create("/svc/web-", b"", CreateMode::EphemeralSequential)
        .await
        .expect("create");

    let mut all = mine.get_ephemerals("/").await.expect("all");
    all.sort();
    assert_eq!(all, ["/lock", "/svc/db", "/svc/web-0000000000"]);
    assert_eq!(mine.get_ephemerals("").await, Ok(all.clone()));
    assert_eq!(
        mine.get_ephemerals("/svc/web-").await,
        Ok(vec!["/svc/web-0000000000".to_owned()]),
        "a plain prefix, not a path"
    );
    // The sequence counts every child created under /svc, /svc/db too.
    assert_eq!(
        theirs.get_ephemerals("/").await,
        Ok(vec!["/svc/web-0000000002".to_owned()])
    );
    assert_eq!(mine.get_ephemerals("/nothing").await, Ok(Vec::new()));
    assert!(matches!(
        mine.get_ephemerals("svc").await,
        Err(Error::InvalidPath { .. })
    ));

    // Under a chroot: only those inside it, the chroot removed.
    let chrooted = connect_to(&format!("{}/svc", server.local_addr()), MAX_TIMEOUT).await;
    chrooted
        .create("/inside", b"", CreateMode::Ephemeral)
        .await
        .expect("create");
    chrooted
        .create("/other", b"", CreateMode::Persistent)
        .await
        .expect("create");
    assert_eq!(
        chrooted.get_ephemerals("/").await,
        Ok(vec!["/inside".to_owned()])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn count_descendants_counts_every_level_below() {
    let server = start().await;
    let client = connect(&server).await;
    for path in ["/t", "/t/a", "/t/a/x", "/t/a/y", "/t/b", "/t/b/z"] {
        client
            .create(path, b"", CreateMode::Persistent)
            .await
            .expect("create");
    }
    client
        .create("/t/b/z/e-", b"", CreateMode::EphemeralSequential)
        .await
        .expect("create");
    assert_eq!(client.count_descendants("/t").await, Ok(6));
    assert_eq!(client.count_descendants("/t/a").await, Ok(2));
    assert_eq!(client.count_descendants("/t/a/x").await, Ok(0));
    assert!(matches!(
        client.count_descendants("/none").await,
        Err(Error::NoNode { .. })
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn emptied_containers_and_expired_ttl_nodes_are_deleted_by_the_server() {
    let mut config = test_config();
    config.reap_interval = Duration::from_millis(100);
    let server = session_server::Server::start(config)
        .await
        .expect("server starts");
    let client = connect(&server).await;

    let (_, stat) = client
        .create_with("/locks", b"", &CreateOptions::new(CreateMode::Container))
        .await
        .expect("container");
    assert_eq!(stat.ephemeral_owner, CONTAINER_OWNER);
    client
        .create("/never-used", b"", CreateMode::Container)
        .await
        .expect("container");
    client
        .create("/locks/lock-", b"", CreateMode::EphemeralSequential)
        .await
        .expect("lock");
    // Wait several sweeps: a container with a child stays.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(client.exists("/locks").await.expect("exists").is_some());
    client
        .delete("/locks/lock-0000000000", None)
        .await
        .expect("unlock");
    eventually("the emptied container is deleted", async || {
        client.exists("/locks").await == Ok(None)
    })
    .await;
    assert!(
        client
            .exists("/never-used")
            .await
            .expect("exists")
            .is_some(),
        "a container that never had a child stays"
    );

    let ttl = CreateMode::PersistentWithTtl { ttl_ms: 300 };
    client.create("/lease", b"", ttl).await.expect("TTL node");
    client
        .create(
            "/kept",
            b"",
            CreateMode::PersistentWithTtl { ttl_ms: 60_000 },
        )
        .await
        .expect("TTL node");
    eventually("the TTL node is deleted", async || {
        client.exists("/lease").await == Ok(None)
    })
    .await;
    assert!(client.exists("/kept").await.expect("exists").is_some());

    let result = client
        .create("/bad-ttl", b"", CreateMode::PersistentWithTtl { ttl_ms: 0 })
        .await;
    assert!(
        matches!(result, Err(Error::Unsupported { .. })),
        "a zero TTL is a bad argument: {result:?}"
    );
    server.shutdown().await;
}
