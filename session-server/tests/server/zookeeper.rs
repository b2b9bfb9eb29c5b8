//! ZooKeeper's own clients on the ZooKeeper listener, driven through the
//! published `zookeeper-client` crate (no imitation of a client): they open
//! sessions on the server's terms, read and write the tree, get their
//! watches, and their sessions are the same sessions v1 clients and the
//! admin see. Every wait is bounded by `PATIENCE`.

use std::future::Future;
use std::time::Duration;

use session_server::Server;
use session_wire::admin::v1::{
    ExpireSessionRequest, ListSessionsRequest, admin_client::AdminClient,
};
use session_wire::v1::{NodeKind, WatchEventKind};
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::support::{self, MIN_TIMEOUT, PATIENCE, Raw, TICK};

/// Awaits `future`, failing the test if it takes longer than `PATIENCE`.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
}

fn zk_addr(server: &Server) -> String {
    server
        .zookeeper_addr()
        .expect("the ZooKeeper listener is on")
        .to_string()
}

async fn connect_with(server: &Server, connector: zk::Connector) -> zk::Client {
    within("connect", connector.connect(&zk_addr(server)))
        .await
        .expect("a session")
}

async fn connect(server: &Server, timeout: Duration) -> zk::Client {
    connect_with(
        server,
        zk::Client::connector().with_session_timeout(timeout),
    )
    .await
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

/// The session id as session-server writes it (the same 64 bits).
fn raw_id(client: &zk::Client) -> u64 {
    u64::from_be_bytes(client.session_id().0.to_be_bytes())
}

async fn admin(server: &Server) -> AdminClient<tonic::transport::Channel> {
    let addr = server.admin_addr().expect("admin enabled");
    within(
        "admin connects",
        AdminClient::connect(format!("http://{addr}")),
    )
    .await
    .expect("admin connects")
}

/// Waits until the client's session is `Expired`, through whatever comes
/// first (the connection lost, a refused reattach).
async fn expired(watcher: &mut zk::StateWatcher) {
    within("the session expires for its client", async {
        loop {
            match watcher.changed().await {
                zk::SessionState::Expired => return,
                zk::SessionState::Disconnected => {}
                other => panic!("expected Disconnected then Expired, got {other}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_zookeeper_client_gets_a_session_on_the_servers_terms() {
    let server = support::start().await;
    // Test servers grant 200 ms ..= 2 s: asked below, inside and above.
    let low = connect(&server, Duration::from_millis(150)).await;
    let mid = connect(&server, Duration::from_millis(1_000)).await;
    let high = connect(&server, Duration::from_secs(60)).await;
    assert_eq!(low.session_timeout(), MIN_TIMEOUT);
    assert_eq!(mid.session_timeout(), Duration::from_millis(1_000));
    assert_eq!(high.session_timeout(), Duration::from_secs(2));
    for client in [&low, &mid, &high] {
        assert_eq!(client.state(), zk::SessionState::SyncConnected);
        assert_eq!(raw_id(client) >> 56, 1, "server id 1 in the top byte");
    }
    // Ids run consecutively on a server.
    assert_eq!(raw_id(&mid), raw_id(&low) + 1);
    assert_eq!(raw_id(&high), raw_id(&mid) + 1);
    assert_eq!(server.session_count(), 3);

    // The admin lists them like any session.
    let list = within(
        "list sessions",
        admin(&server).await.list_sessions(ListSessionsRequest {}),
    )
    .await
    .expect("list")
    .into_inner();
    let info = list
        .sessions
        .iter()
        .find(|info| info.session_id == raw_id(&mid))
        .expect("the ZooKeeper client's session is listed");
    assert_eq!(info.negotiated_timeout_ms, 1_000);
    assert_eq!(info.client, "zookeeper");
    assert!(
        info.remote_address.starts_with("127.0.0.1:"),
        "{}",
        info.remote_address
    );

    // Dropping a client closes its session at once.
    drop((low, mid, high));
    within("the sessions close", async {
        while server.session_count() > 0 {
            tokio::time::sleep(TICK).await;
        }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_zookeeper_client_creates_reads_writes_and_deletes_nodes() {
    let server = support::start().await;
    let client = connect(&server, Duration::from_secs(2)).await;

    let (created, sequence) = within("create", client.create("/app", b"v1", &persistent()))
        .await
        .expect("create /app");
    assert_eq!(sequence.into_i64(), -1, "not sequential");
    assert_eq!(created.version, 0);
    assert_eq!(created.data_length, 2);
    assert_eq!(created.ephemeral_owner, 0);
    assert!(created.czxid > 0);
    assert_eq!(
        (created.mzxid, created.pzxid),
        (created.czxid, created.czxid)
    );
    assert_eq!(
        within("create again", client.create("/app", b"", &persistent())).await,
        Err(zk::Error::NodeExists)
    );
    assert_eq!(
        within(
            "create orphan",
            client.create("/nope/x", b"", &persistent())
        )
        .await,
        Err(zk::Error::NoNode)
    );

    let (data, stat) = within("get", client.get_data("/app"))
        .await
        .expect("get /app");
    assert_eq!(data, b"v1");
    assert_eq!(stat, created);
    let set = within("set", client.set_data("/app", b"v2", Some(0)))
        .await
        .expect("set /app");
    assert_eq!(set.version, 1);
    assert!(set.mzxid > created.mzxid);
    assert_eq!(set.czxid, created.czxid);
    assert_eq!(
        within("stale set", client.set_data("/app", b"v3", Some(0))).await,
        Err(zk::Error::BadVersion)
    );
    assert_eq!(
        within("exists", client.check_stat("/app")).await,
        Ok(Some(set))
    );
    assert_eq!(
        within("exists missing", client.check_stat("/missing")).await,
        Ok(None)
    );
    assert_eq!(
        within("get missing", client.get_data("/missing")).await,
        Err(zk::Error::NoNode)
    );

    for child in ["/app/b", "/app/a"] {
        within("create child", client.create(child, b"", &persistent()))
            .await
            .expect("create child");
    }
    let mut names = within("list", client.list_children("/app"))
        .await
        .expect("list /app");
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let (mut names, parent) = within("children2", client.get_children("/app"))
        .await
        .expect("children of /app");
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert_eq!((parent.num_children, parent.cversion), (2, 2));

    assert_eq!(
        within("delete non-empty", client.delete("/app", None)).await,
        Err(zk::Error::NotEmpty)
    );
    assert_eq!(
        within("delete stale", client.delete("/app/a", Some(5))).await,
        Err(zk::Error::BadVersion)
    );
    within("delete", client.delete("/app/a", Some(0)))
        .await
        .expect("delete /app/a");
    within("delete", client.delete("/app/b", None))
        .await
        .expect("delete /app/b");
    within("delete", client.delete("/app", None))
        .await
        .expect("delete /app");
    assert_eq!(
        within("delete missing", client.delete("/app", None)).await,
        Err(zk::Error::NoNode)
    );

    let (owned, _) = within("ephemeral", client.create("/eph", b"", &ephemeral()))
        .await
        .expect("create /eph");
    assert_eq!(owned.ephemeral_owner, client.session_id().0);
    assert_eq!(
        within(
            "child of ephemeral",
            client.create("/eph/child", b"", &persistent())
        )
        .await,
        Err(zk::Error::NoChildrenForEphemerals)
    );

    // sync answers at once (a single node is always current), and a digest
    // credential is accepted.
    within("sync", client.sync("/eph")).await.expect("sync");
    within("auth", client.auth("digest", b"user:secret"))
        .await
        .expect("auth");
    assert_eq!(client.state(), zk::SessionState::SyncConnected);
    server.shutdown().await;
}

#[tokio::test]
async fn sequential_names_are_zookeepers_ten_digits() {
    let server = support::start().await;
    let client = connect(&server, Duration::from_secs(2)).await;
    within("parent", client.create("/q", b"", &persistent()))
        .await
        .expect("/q");
    let sequential = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let ephemeral_sequential =
        zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, first) = within("sequential", client.create("/q/job-", b"", &sequential))
        .await
        .expect("first");
    let (_, second) = within("sequential", client.create("/q/job-", b"", &sequential))
        .await
        .expect("second");
    let (owned, third) = within(
        "ephemeral sequential",
        client.create("/q/e-", b"", &ephemeral_sequential),
    )
    .await
    .expect("third");
    // The parent's cversion before each create, zero-padded to 10 digits.
    assert_eq!(
        [first.to_string(), second.to_string(), third.to_string()],
        ["0000000000", "0000000001", "0000000002"]
    );
    assert_eq!(owned.ephemeral_owner, client.session_id().0);
    let mut names = within("list", client.list_children("/q"))
        .await
        .expect("list");
    names.sort();
    let expected = ["e-0000000002", "job-0000000000", "job-0000000001"];
    assert_eq!(names, expected);

    // v1 clients see the same names.
    let (mut v1, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    let mut seen = v1.children("/q", false).await.expect("v1 list");
    seen.sort();
    assert_eq!(seen, expected);
    server.shutdown().await;
}

#[tokio::test]
async fn a_zookeeper_session_is_a_session_for_v1_clients_and_the_admin() {
    let server = support::start().await;
    let client = connect(&server, Duration::from_secs(1)).await;
    let mut state = client.state_watcher();
    within("ephemeral", client.create("/worker", b"zk", &ephemeral()))
        .await
        .expect("create /worker");

    // A v1 client sees the node, owned by the ZooKeeper client's session.
    let (mut v1, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    let (data, stat) = v1.get("/worker", false).await.expect("v1 get");
    assert_eq!(&data[..], b"zk");
    assert_eq!(stat.ephemeral_owner, raw_id(&client));
    // And the ZooKeeper client sees what v1 clients write.
    v1.create("/v1-node", b"from v1", NodeKind::Ephemeral)
        .await
        .expect("v1 create");
    let (data, stat) = within("zk get", client.get_data("/v1-node"))
        .await
        .expect("zk get");
    assert_eq!(data, b"from v1");
    assert_ne!(stat.ephemeral_owner, 0);
    assert_ne!(stat.ephemeral_owner, client.session_id().0);

    // The admin expires it: its ephemeral goes, and its client learns that
    // its session expired (connection closed, reattach refused), as with
    // ZooKeeper.
    assert!(v1.exists("/worker", true).await.is_some());
    let mut admin = admin(&server).await;
    within(
        "expire",
        admin.expire_session(ExpireSessionRequest {
            session_id: raw_id(&client),
        }),
    )
    .await
    .expect("expire");
    let event = v1.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeDeleted);
    assert_eq!(event.path, "/worker");
    expired(&mut state).await;
    assert_eq!(
        within("get after expiry", client.get_data("/v1-node")).await,
        Err(zk::Error::SessionExpired)
    );
    assert_eq!(server.session_count(), 1, "only the v1 session is left");
    server.shutdown().await;
}

#[tokio::test]
async fn an_ephemeral_goes_when_its_zookeeper_client_closes() {
    let server = support::start().await;
    let timeout = Duration::from_secs(2);
    let client = connect(&server, timeout).await;
    within("ephemeral", client.create("/lock", b"", &ephemeral()))
        .await
        .expect("create /lock");
    let (mut observer, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    assert!(observer.exists("/lock", true).await.is_some());

    // Dropping the last handle closes the session (closeSession), well
    // before it could have expired.
    let closed = Instant::now();
    drop(client);
    let event = observer.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeDeleted);
    assert_eq!(event.path, "/lock");
    assert!(
        closed.elapsed() < timeout,
        "gone only after {:?}: expired rather than closed",
        closed.elapsed()
    );
    assert_eq!(server.session_count(), 1, "only the observer is left");
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_zookeeper_session_expires_within_a_tick_of_its_timeout() {
    let server = support::start().await;
    let timeout = Duration::from_millis(400);
    // Detached: dropping it closes the connection without closing the
    // session, as a client that dies does.
    let client = connect_with(
        &server,
        zk::Client::connector()
            .with_session_timeout(timeout)
            .with_detached(),
    )
    .await;
    within("ephemeral", client.create("/member", b"", &ephemeral()))
        .await
        .expect("create /member");
    let session = client.session().clone();
    let (mut observer, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    assert!(observer.exists("/member", true).await.is_some());

    // The crate pings on its own, so the last frame the server hears from
    // it is between `sent` (a request whose answer we wait for) and
    // `dropped` (after which its task sends nothing).
    let sent = Instant::now();
    within("last request", client.check_stat("/member"))
        .await
        .expect("exists");
    drop(client);
    let dropped = Instant::now();

    let event = observer.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeDeleted);
    assert_eq!(event.path, "/member");
    let since_sent = sent.elapsed();
    let since_dropped = dropped.elapsed();
    assert!(
        since_sent > timeout,
        "expired early: {since_sent:?} after the last request, of a {timeout:?} timeout"
    );
    // (T, T + tick] after the last frame, plus scheduling on a shared machine.
    let margin = Duration::from_millis(500);
    assert!(
        since_dropped <= timeout + TICK + margin,
        "expired late: {since_dropped:?} after the client stopped, of a {timeout:?} timeout"
    );
    assert_eq!(server.session_count(), 1, "only the observer is left");

    // Coming back with the dead session: ZooKeeper's "expired" answer.
    let again = within(
        "reattach",
        zk::Client::connector()
            .with_session(session)
            .with_session_timeout(timeout)
            .connect(&zk_addr(&server)),
    )
    .await;
    assert_eq!(again.err(), Some(zk::Error::SessionExpired));
    server.shutdown().await;
}

#[tokio::test]
async fn watches_fire_for_zookeeper_clients() {
    let server = support::start().await;
    let client = connect(&server, Duration::from_secs(2)).await;
    let (mut v1, _) = Raw::open(server.local_addr(), Duration::from_secs(2)).await;
    v1.create("/w", b"1", NodeKind::Persistent)
        .await
        .expect("v1 create /w");

    // Data watch, fired by a v1 write, with the write's zxid (ZooKeeper
    // 3.9.2 and later).
    let (_, _, data_watch) = within("get + watch", client.get_and_watch_data("/w"))
        .await
        .expect("get + watch");
    let set = v1.set("/w", b"2", -1).await.expect("v1 set");
    let event = within("data watch", data_watch.changed()).await;
    assert_eq!(event.event_type, zk::EventType::NodeDataChanged);
    assert_eq!(event.path, "/w");
    assert_eq!(event.zxid, i64::try_from(set.mzxid).expect("small zxid"));

    // Exist watch on a missing node, fired by its creation.
    let (stat, exist_watch) = within("exists + watch", client.check_and_watch_stat("/w/new"))
        .await
        .expect("exists + watch");
    assert_eq!(stat, None);
    // Child watch on the parent, fired by the same create.
    let (children, child_watch) = within("list + watch", client.list_and_watch_children("/w"))
        .await
        .expect("list + watch");
    assert!(children.is_empty());
    v1.create("/w/new", b"", NodeKind::Persistent)
        .await
        .expect("v1 create /w/new");
    let event = within("exist watch", exist_watch.changed()).await;
    assert_eq!(event.event_type, zk::EventType::NodeCreated);
    assert_eq!(event.path, "/w/new");
    let event = within("child watch", child_watch.changed()).await;
    assert_eq!(event.event_type, zk::EventType::NodeChildrenChanged);
    assert_eq!(event.path, "/w");

    // A ZooKeeper client's own write fires a v1 client's watch, and a
    // delete fires its data watch.
    assert!(v1.exists("/w/new", true).await.is_some());
    let (_, _, delete_watch) = within("get + watch", client.get_and_watch_data("/w/new"))
        .await
        .expect("get + watch");
    within("delete", client.delete("/w/new", None))
        .await
        .expect("delete /w/new");
    let event = within("delete watch", delete_watch.changed()).await;
    assert_eq!(event.event_type, zk::EventType::NodeDeleted);
    assert_eq!(event.path, "/w/new");
    let event = v1.next_event().await;
    assert_eq!(event.kind(), WatchEventKind::NodeDeleted);
    assert_eq!(event.path, "/w/new");
    server.shutdown().await;
}
