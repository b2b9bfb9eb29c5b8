//! Access control lists and credentials: digest authentication, the
//! permissions each operation needs, setACL's version and checks, refused
//! credentials, and credentials sent again after a reconnect.

use std::time::Duration;

use session_client::{Acl, Client, CreateMode, CreateOptions, Error, Id, State, perms};

use crate::support::{MAX_TIMEOUT, Proxy, client_via, connect, next_state, start};

/// ZooKeeper's digest of `super:test` (its documentation's example):
/// `base64(SHA-1("super:test"))`.
const SUPER_TEST_DIGEST: &str = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";

fn digest_ids(ids: &[Id]) -> Vec<&Id> {
    ids.iter().filter(|id| id.scheme == "digest").collect()
}

/// Cuts every connection through `proxy` and lets the client reattach.
async fn reconnect(client: &Client, proxy: &Proxy) {
    let mut events = client.events();
    proxy.cut();
    assert_eq!(next_state(&mut events).await, State::Suspended);
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.restore();
    assert_eq!(next_state(&mut events).await, State::Connected);
}

#[tokio::test]
async fn a_digest_acl_refuses_strangers_and_admits_the_authenticated_after_a_reconnect() {
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let alice = client_via(&proxy, MAX_TIMEOUT).await;
    let stranger = connect(&server).await;

    let before = alice.who_am_i().await.expect("who am I");
    assert!(
        before.iter().any(|id| id.scheme == "ip"),
        "every connection holds its address: {before:?}"
    );
    assert!(digest_ids(&before).is_empty(), "{before:?}");

    alice
        .add_auth("digest", b"alice:secret")
        .await
        .expect("digest credentials are always accepted");
    alice
        .add_auth("digest", b"alice:secret")
        .await
        .expect("twice is harmless");
    let ids = alice.who_am_i().await.expect("who am I");
    let alice_ids = digest_ids(&ids);
    assert_eq!(alice_ids.len(), 1, "{ids:?}");
    let alice_id = alice_ids[0].clone();
    assert!(alice_id.id.starts_with("alice:"), "{alice_id}");

    let options = CreateOptions::new(CreateMode::Persistent).acl(Acl::creator_all());
    let (path, stat) = alice
        .create_with("/private", b"mine", &options)
        .await
        .expect("create with the creator's ACL");
    assert_eq!((path.as_str(), stat.aversion), ("/private", 0));
    let (acl, _) = alice.get_acl("/private").await.expect("get ACL");
    assert_eq!(
        acl,
        vec![Acl::new(perms::ALL, alice_id.clone())],
        "auth stands for the creator's digest id"
    );

    // Without the credential: every operation that needs a permission is
    // refused.
    let refused = |result: Result<(), Error>, what: &str| {
        assert!(
            matches!(result, Err(Error::NoAuth { .. })),
            "{what}: {result:?}"
        );
    };
    refused(stranger.get("/private").await.map(drop), "get");
    refused(stranger.set("/private", b"x", None).await.map(drop), "set");
    refused(stranger.children("/private").await.map(drop), "children");
    refused(stranger.get_acl("/private").await.map(drop), "get ACL");
    refused(
        stranger
            .set_acl("/private", &Acl::open(), None)
            .await
            .map(drop),
        "set ACL",
    );
    refused(
        stranger
            .create("/private/child", b"", CreateMode::Persistent)
            .await
            .map(drop),
        "create a child",
    );
    refused(
        stranger.count_descendants("/private").await.map(drop),
        "count descendants",
    );
    // Exists needs READ on a node that exists, nothing on a missing one.
    refused(stranger.exists("/private").await.map(drop), "exists");
    assert_eq!(stranger.exists("/private/none").await, Ok(None));
    // A wrong password is a different identity, not an error.
    stranger
        .add_auth("digest", b"alice:wrong")
        .await
        .expect("any digest credential is accepted");
    refused(
        stranger.get("/private").await.map(drop),
        "get, wrong password",
    );

    let (data, _) = alice.get("/private").await.expect("alice reads");
    assert_eq!(&data[..], b"mine");

    // Identities belong to the connection: the client sends its credential
    // again, first thing, after reattaching.
    let session = alice.session_id();
    reconnect(&alice, &proxy).await;
    assert_eq!(alice.session_id(), session, "same session");
    let (data, _) = alice.get("/private").await.expect("alice still reads");
    assert_eq!(&data[..], b"mine");
    let after = alice.who_am_i().await.expect("who am I");
    assert_eq!(digest_ids(&after), [&alice_id], "{after:?}");
    alice
        .set("/private", b"still mine", None)
        .await
        .expect("alice writes after the reconnect");

    // A second connection with the same credential is alice too.
    let alice_elsewhere = connect(&server).await;
    alice_elsewhere
        .add_auth("digest", b"alice:secret")
        .await
        .expect("auth");
    assert!(alice_elsewhere.get("/private").await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn the_digest_is_zookeepers() {
    let server = start().await;
    let client = connect(&server).await;
    client
        .add_auth("digest", b"super:test")
        .await
        .expect("auth");
    let ids = client.who_am_i().await.expect("who am I");
    assert!(
        ids.contains(&Id::new("digest", SUPER_TEST_DIGEST)),
        "{ids:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn set_acl_needs_admin_the_acl_version_and_a_valid_list() {
    let server = start().await;
    let owner = connect(&server).await;
    let other = connect(&server).await;
    owner.add_auth("digest", b"owner:pw").await.expect("auth");
    owner
        .create("/doc", b"", CreateMode::Persistent)
        .await
        .expect("create, open to anyone");
    let (acl, stat) = owner.get_acl("/doc").await.expect("get ACL");
    assert_eq!(acl, Acl::open(), "no list given: open to anyone");
    assert_eq!(stat.aversion, 0);

    // Readable by anyone, administered by the owner only.
    let mut guarded = vec![Acl::new(perms::READ, Id::anyone())];
    guarded.extend(Acl::creator_all());
    let stat = owner
        .set_acl("/doc", &guarded, Some(0))
        .await
        .expect("set ACL at version 0");
    assert_eq!(
        (stat.aversion, stat.version),
        (1, 0),
        "data version untouched"
    );
    assert!(matches!(
        owner.set_acl("/doc", &guarded, Some(0)).await,
        Err(Error::BadVersion { .. })
    ));
    assert!(other.get("/doc").await.is_ok(), "READ to anyone");
    assert!(matches!(
        other.set("/doc", b"x", None).await,
        Err(Error::NoAuth { .. })
    ));
    assert!(matches!(
        other.set_acl("/doc", &Acl::open(), None).await,
        Err(Error::NoAuth { .. })
    ));
    let (acl, _) = other
        .get_acl("/doc")
        .await
        .expect("READ is enough to read it");
    assert_eq!(acl.len(), 2, "{acl:?}");

    for (bad, why) in [
        (Vec::new(), "an empty list"),
        (
            vec![Acl::new(perms::ALL, Id::new("digest", "no-colon"))],
            "a digest id without a colon",
        ),
        (
            vec![Acl::new(perms::ALL, Id::new("nonsense", "x"))],
            "an unknown scheme",
        ),
        (
            vec![Acl::new(perms::ALL, Id::new("world", "someone"))],
            "world with another id than anyone",
        ),
        (
            vec![Acl::new(64, Id::anyone())],
            "a permission bit outside ALL",
        ),
    ] {
        let result = owner.set_acl("/doc", &bad, None).await;
        assert!(
            matches!(result, Err(Error::InvalidAcl { .. })),
            "{why}: {result:?}"
        );
    }
    // `auth` on a connection that authenticated as nobody.
    let options = CreateOptions::new(CreateMode::Persistent).acl(Acl::creator_all());
    assert!(matches!(
        other.create_with("/nobodys", b"", &options).await,
        Err(Error::InvalidAcl { .. })
    ));
    assert_eq!(other.exists("/nobodys").await, Ok(None));
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_credential_keeps_the_session() {
    let server = start().await;
    let client = connect(&server).await;
    let session = client.session_id();
    let mut events = client.events();
    let result = client.add_auth("kerberos", b"ticket").await;
    assert!(
        matches!(result, Err(Error::AuthRefused { .. })),
        "{result:?}"
    );
    // ZooKeeper closes the connection after refusing a credential; the
    // client reattaches to the same session (and does not send the refused
    // credential again).
    assert_eq!(next_state(&mut events).await, State::Suspended);
    assert_eq!(next_state(&mut events).await, State::Connected);
    assert_eq!(client.session_id(), session);
    client
        .create("/after", b"", CreateMode::Persistent)
        .await
        .expect("the session works");
    let ids = client.who_am_i().await.expect("who am I");
    assert!(ids.iter().all(|id| id.scheme == "ip"), "{ids:?}");
    server.shutdown().await;
}
