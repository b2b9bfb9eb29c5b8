//! ZooKeeper 3.9's operations beyond plain node reads and writes, through the
//! published `zookeeper-client` crate: multi and multiRead, access control
//! lists with digest credentials, setACL and getACL, persistent and
//! recursive watches, containers and TTL nodes, getEphemerals,
//! getAllChildrenNumber and whoAmI (zookeeper-wire.md §5, §7, §8, §9). Every
//! wait is bounded by `PATIENCE`.

use std::future::Future;
use std::time::Duration;

use session_server::Server;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::support::{self, PATIENCE};

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
}

async fn connect(server: &Server) -> zk::Client {
    connect_with(server, zk::Client::connector()).await
}

async fn connect_with(server: &Server, connector: zk::Connector) -> zk::Client {
    let addr = server
        .zookeeper_addr()
        .expect("the ZooKeeper listener is on");
    let connector = connector.with_session_timeout(Duration::from_secs(2));
    within("connect", connector.connect(&addr.to_string()))
        .await
        .expect("a session")
}

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

#[tokio::test]
async fn a_multi_applies_all_or_nothing_and_names_the_failing_operation() {
    let server = support::start().await;
    let client = connect(&server).await;
    within("create", client.create("/m", b"0", &open()))
        .await
        .expect("create /m");

    let mut multi = client.new_multi_writer();
    multi.add_create("/m/a", b"a", &open()).expect("as set up");
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    multi
        .add_create("/m/e-", b"", &ephemeral)
        .expect("as set up");
    multi.add_set_data("/m", b"1", Some(0)).expect("as set up");
    multi.add_check_version("/m", 1).expect("as set up");
    multi.add_delete("/m/a", Some(0)).expect("as set up");
    let results = within("multi", multi.commit()).await.expect("applied");
    assert_eq!(results.len(), 5);
    assert!(
        matches!(&results[1], zk::MultiWriteResult::Create { path, .. } if path == "/m/e-0000000001"),
        "{results:?}"
    );
    assert!(matches!(&results[2], zk::MultiWriteResult::SetData { stat } if stat.version == 1));
    assert!(matches!(results[3], zk::MultiWriteResult::Check));
    assert!(matches!(results[4], zk::MultiWriteResult::Delete));

    // Op 2 fails: nothing of ops 0 and 1 stays.
    let mut multi = client.new_multi_writer();
    multi.add_create("/m/b", b"", &open()).expect("as set up");
    multi.add_set_data("/m", b"2", None).expect("as set up");
    multi.add_check_version("/m", 7).expect("as set up");
    multi.add_create("/m/c", b"", &open()).expect("as set up");
    let failed = within("failing multi", multi.commit()).await;
    assert!(
        matches!(
            failed,
            Err(zk::MultiWriteError::OperationFailed {
                index: 2,
                source: zk::Error::BadVersion
            })
        ),
        "{failed:?}"
    );
    let (data, stat) = within("get", client.get_data("/m"))
        .await
        .expect("as set up");
    assert_eq!((data.as_slice(), stat.version), (b"1".as_slice(), 1));
    assert_eq!(within("exists", client.check_stat("/m/b")).await, Ok(None));

    // multiRead answers each read on its own.
    let mut reads = client.new_multi_reader();
    reads.add_get_data("/m").expect("as set up");
    reads.add_get_children("/m").expect("as set up");
    reads.add_get_data("/missing").expect("as set up");
    let results = within("multiRead", reads.commit()).await.expect("answered");
    assert!(matches!(&results[0], zk::MultiReadResult::Data { data, .. } if data == b"1"));
    assert!(
        matches!(&results[1], zk::MultiReadResult::Children { children } if children == &["e-0000000001"])
    );
    assert!(matches!(
        &results[2],
        zk::MultiReadResult::Error {
            err: zk::Error::NoNode
        }
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn a_node_with_a_digest_acl_refuses_a_session_without_the_credential() {
    let server = support::start().await;
    let alice = connect_with(
        &server,
        zk::Client::connector().with_auth("digest", b"alice:secret"),
    )
    .await;
    let stranger = connect(&server).await;
    let creator_all = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    within("create", alice.create("/vault", b"gold", &creator_all))
        .await
        .expect("create /vault");

    // The auth entry became alice's digest id, with the hash ZooKeeper
    // computes (base64 of SHA-1 of "alice:secret").
    let (acl, stat) = within("getACL", alice.get_acl("/vault"))
        .await
        .expect("as set up");
    assert_eq!(stat.aversion, 0);
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "digest");
    assert!(acl[0].id().starts_with("alice:"), "{}", acl[0].id());
    assert_eq!(acl[0].permission(), zk::Permission::ALL);

    for result in [
        within("get", stranger.get_data("/vault")).await.map(|_| ()),
        within("set", stranger.set_data("/vault", b"x", None))
            .await
            .map(|_| ()),
        within("create child", stranger.create("/vault/x", b"", &open()))
            .await
            .map(|_| ()),
        within("getACL", stranger.get_acl("/vault"))
            .await
            .map(|_| ()),
        within("delete child", stranger.delete("/vault/none", None)).await,
    ] {
        assert_eq!(result, Err(zk::Error::NoAuth));
    }
    // exists needs nothing but READ on an existing node: refused too.
    assert_eq!(
        within("exists", stranger.check_stat("/vault")).await,
        Err(zk::Error::NoAuth)
    );

    // The same credential on another connection is alice again.
    within("addAuth", stranger.auth("digest", b"alice:secret"))
        .await
        .expect("accepted");
    let (data, _) = within("get", stranger.get_data("/vault"))
        .await
        .expect("as set up");
    assert_eq!(data, b"gold");
    let users = within("whoAmI", stranger.list_auth_users())
        .await
        .expect("as set up");
    let schemes: Vec<_> = users
        .iter()
        .map(|user| (user.scheme(), user.user()))
        .collect();
    assert!(schemes.contains(&("ip", "127.0.0.1")), "{schemes:?}");
    assert!(schemes.contains(&("digest", "alice")), "{schemes:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn set_acl_needs_admin_and_the_acl_version_and_a_bad_scheme_fails_the_connection() {
    let server = support::start().await;
    let client = connect(&server).await;
    within("create", client.create("/a", b"", &open()))
        .await
        .expect("as set up");
    let read_only = zk::Acls::anyone_read();
    assert_eq!(
        within("stale setACL", client.set_acl("/a", &read_only, Some(3))).await,
        Err(zk::Error::BadVersion)
    );
    let stat = within("setACL", client.set_acl("/a", &read_only, Some(0)))
        .await
        .expect("set");
    assert_eq!(stat.aversion, 1);
    // Now nobody has ADMIN (nor WRITE) on it.
    assert_eq!(
        within(
            "setACL again",
            client.set_acl("/a", &zk::Acls::anyone_all(), None)
        )
        .await,
        Err(zk::Error::NoAuth)
    );
    assert_eq!(
        within("set", client.set_data("/a", b"x", None)).await.err(),
        Some(zk::Error::NoAuth)
    );
    // An auth entry with no credential on the connection is INVALIDACL.
    let creator_all = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    assert_eq!(
        within("create", client.create("/b", b"", &creator_all))
            .await
            .err(),
        Some(zk::Error::InvalidAcl)
    );

    // An unknown scheme: AUTHFAILED, and the server closes the connection.
    let mut state = client.state_watcher();
    assert_eq!(
        within("addAuth", client.auth("kerberos", b"x")).await,
        Err(zk::Error::AuthFailed)
    );
    let failed = within("the session fails", state.changed()).await;
    assert_eq!(failed, zk::SessionState::AuthFailed);
    server.shutdown().await;
}

#[tokio::test]
async fn persistent_watches_stay_and_recursive_ones_hear_every_descendant() {
    let server = support::start().await;
    let client = connect(&server).await;
    let writer = connect(&server).await;
    within("create", client.create("/p", b"", &open()))
        .await
        .expect("as set up");
    let mut persistent = within("addWatch", client.watch("/p", zk::AddWatchMode::Persistent))
        .await
        .expect("added");
    let mut recursive = within(
        "addWatch recursive",
        client.watch("/p", zk::AddWatchMode::PersistentRecursive),
    )
    .await
    .expect("added");

    within("create child", writer.create("/p/c", b"", &open()))
        .await
        .expect("as set up");
    within("create grandchild", writer.create("/p/c/g", b"", &open()))
        .await
        .expect("as set up");
    within("set", writer.set_data("/p", b"1", None))
        .await
        .expect("as set up");
    within("set again", writer.set_data("/p", b"2", None))
        .await
        .expect("as set up");

    let expect = |event: zk::WatchedEvent, kind: zk::EventType, path: &str| {
        assert_eq!((event.event_type, event.path.as_str()), (kind, path));
    };
    // The persistent watch on /p: its children changed, twice its data; it
    // stays after every event.
    expect(
        within("event", persistent.changed()).await,
        zk::EventType::NodeChildrenChanged,
        "/p",
    );
    expect(
        within("event", persistent.changed()).await,
        zk::EventType::NodeDataChanged,
        "/p",
    );
    expect(
        within("event", persistent.changed()).await,
        zk::EventType::NodeDataChanged,
        "/p",
    );
    // The recursive one hears the creates below, never children-changed.
    expect(
        within("event", recursive.changed()).await,
        zk::EventType::NodeCreated,
        "/p/c",
    );
    expect(
        within("event", recursive.changed()).await,
        zk::EventType::NodeCreated,
        "/p/c/g",
    );
    expect(
        within("event", recursive.changed()).await,
        zk::EventType::NodeDataChanged,
        "/p",
    );
    expect(
        within("event", recursive.changed()).await,
        zk::EventType::NodeDataChanged,
        "/p",
    );
    within("delete", writer.delete("/p/c/g", None))
        .await
        .expect("as set up");
    expect(
        within("event", recursive.changed()).await,
        zk::EventType::NodeDeleted,
        "/p/c/g",
    );
    server.shutdown().await;
}

#[tokio::test]
async fn containers_and_ttl_nodes_are_deleted_by_the_server_when_due() {
    let interval = Duration::from_millis(100);
    let server = support::start_with(|config| config.reap_interval = interval).await;
    let client = connect(&server).await;
    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    within("create container", client.create("/locks", b"", &container))
        .await
        .expect("created");
    let stat = within("stat", client.check_stat("/locks"))
        .await
        .expect("as set up")
        .expect("there");
    assert_eq!(
        stat.ephemeral_owner,
        i64::MIN,
        "ZooKeeper's container owner"
    );
    within("child", client.create("/locks/l", b"", &open()))
        .await
        .expect("as set up");
    // A container with a child stays.
    tokio::time::sleep(3 * interval).await;
    assert!(
        within("stat", client.check_stat("/locks"))
            .await
            .expect("as set up")
            .is_some()
    );
    within("delete child", client.delete("/locks/l", None))
        .await
        .expect("as set up");
    let emptied = Instant::now();
    gone(&client, "/locks").await;
    // Bound: the next sweep after it emptied, plus the delete's commit.
    assert!(emptied.elapsed() <= 2 * interval + Duration::from_millis(500));

    let ttl = Duration::from_millis(400);
    let with_ttl = zk::CreateMode::Persistent
        .with_acls(zk::Acls::anyone_all())
        .with_ttl(ttl);
    within("create TTL", client.create("/ttl", b"", &with_ttl))
        .await
        .expect("created");
    let created = Instant::now();
    let stat = within("stat", client.check_stat("/ttl"))
        .await
        .expect("as set up")
        .expect("there");
    assert_eq!(stat.ephemeral_owner, (0xFF << 56) | 400);
    gone(&client, "/ttl").await;
    // Gone in (TTL, TTL + two sweeps + commit]: never before its TTL.
    let lived = created.elapsed();
    assert!(lived > ttl, "gone after {lived:?}, before its TTL");
    assert!(
        lived <= ttl + 2 * interval + Duration::from_millis(500),
        "gone after {lived:?}"
    );
    server.shutdown().await;
}

/// Waits until `path` is gone, polling every 20 ms.
async fn gone(client: &zk::Client, path: &str) {
    within("the node goes", async {
        while client.check_stat(path).await.expect("as set up").is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn get_ephemerals_lists_the_sessions_own_and_descendants_are_counted() {
    let server = support::start().await;
    let client = connect(&server).await;
    let other = connect(&server).await;
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    within("create", client.create("/svc", b"", &open()))
        .await
        .expect("as set up");
    for path in ["/svc/a", "/svc/b", "/e"] {
        within("create", client.create(path, b"", &ephemeral))
            .await
            .expect("as set up");
    }
    within("create", other.create("/svc/o", b"", &ephemeral))
        .await
        .expect("as set up");
    let mut mine = within("getEphemerals", client.list_ephemerals("/"))
        .await
        .expect("as set up");
    mine.sort();
    assert_eq!(mine, ["/e", "/svc/a", "/svc/b"]);
    let under = within("getEphemerals /svc", client.list_ephemerals("/svc"))
        .await
        .expect("as set up");
    assert_eq!(under.len(), 2);
    assert_eq!(
        within("count", client.count_descendants_number("/svc")).await,
        Ok(3)
    );
    assert_eq!(
        within("count /", client.count_descendants_number("/")).await,
        Ok(5)
    );
    assert_eq!(
        within("count missing", client.count_descendants_number("/x")).await,
        Err(zk::Error::NoNode)
    );
    server.shutdown().await;
}

/// A loopback proxy whose connections can all be cut at once (the client
/// then connects again through it, to the same server).
struct Proxy {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cut, cuts) = tokio::sync::watch::channel(0_u64);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, cut, task }
    }

    /// Closes every connection through the proxy.
    fn cut(&self) {
        self.cut.send_modify(|cuts| *cuts += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_cut_connection_comes_back_with_its_session_watches_and_credentials() {
    let server = support::start().await;
    let proxy = Proxy::start(server.zookeeper_addr().expect("on")).await;
    let timeout = Duration::from_secs(2);
    let client = within(
        "connect",
        zk::Client::connector()
            .with_session_timeout(timeout)
            .with_auth("digest", b"alice:secret")
            .connect(&proxy.addr.to_string()),
    )
    .await
    .expect("a session");
    let id = client.session_id();
    let mine = zk::CreateMode::Ephemeral.with_acls(zk::Acls::creator_all());
    within("create", client.create("/held", b"", &mine))
        .await
        .expect("created");
    let (_, _, watch) = within("get + watch", client.get_and_watch_data("/held"))
        .await
        .expect("watched");
    let mut persistent = within(
        "addWatch",
        client.watch("/", zk::AddWatchMode::PersistentRecursive),
    )
    .await
    .expect("added");
    let mut states = client.state_watcher();

    proxy.cut();
    let cut = Instant::now();
    assert_eq!(
        within("disconnected", states.changed()).await,
        zk::SessionState::Disconnected
    );
    assert_eq!(
        within("connected again", states.changed()).await,
        zk::SessionState::SyncConnected
    );
    // Back well inside the session's timeout: the ephemeral never went.
    let back = cut.elapsed();
    assert!(back < timeout * 2 / 3, "back after {back:?}");
    assert_eq!(client.session_id(), id, "the same session");
    assert_eq!(server.session_count(), 1);

    // Its credential was sent again (the node is alice's alone), and its
    // one-shot and persistent watches were set again.
    within("set", client.set_data("/held", b"after", None))
        .await
        .expect("allowed: the credential came back with the connection");
    let event = within("one-shot watch", watch.changed()).await;
    assert_eq!(
        (event.event_type, event.path.as_str()),
        (zk::EventType::NodeDataChanged, "/held")
    );
    // The crate also hands a persistent watcher the session's own events
    // (Disconnected, SyncConnected): the node event comes after them.
    let event = within("persistent watch", async {
        loop {
            let event = persistent.changed().await;
            if event.event_type != zk::EventType::Session {
                return event;
            }
        }
    })
    .await;
    assert_eq!(
        (event.event_type, event.path.as_str()),
        (zk::EventType::NodeDataChanged, "/held")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn sync_waits_for_nothing_on_a_single_server_and_echoes_its_path() {
    let server = support::start().await;
    let client = connect(&server).await;
    within("sync", client.sync("/anything"))
        .await
        .expect("sync");
    within("create", client.create("/s", b"", &open()))
        .await
        .expect("created");
    within("sync", client.sync("/s")).await.expect("sync");
    server.shutdown().await;
}
