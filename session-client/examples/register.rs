//! Service registration: an ephemeral, sequential node under `/services` that
//! lives exactly as long as this process's session, and a watch on the members.
//!
//! Start a server (`cargo run -p session-server`), then run this example in
//! several terminals: `cargo run -p session-client --example register`.

use std::time::Duration;

use session_client::{Client, CreateMode, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let client = Client::builder()
        .servers("127.0.0.1:7181")
        .session_timeout(Duration::from_secs(6))
        .connect()
        .await?;
    match client
        .create("/services", b"", CreateMode::Persistent)
        .await
    {
        Ok(_) | Err(Error::NodeExists { .. }) => {}
        Err(err) => return Err(err),
    }
    let me = client
        .create(
            "/services/web-",
            b"10.0.0.7:8080",
            CreateMode::EphemeralSequential,
        )
        .await?;
    println!("registered as {me}");
    loop {
        let (members, watch) = client.children_and_watch("/services").await?;
        println!("members: {members:?}");
        // Fires when a member joins or leaves; a member's node goes when its
        // process dies or is cut off for longer than its session timeout.
        let event = watch.await?;
        println!("{} {}", event.kind, event.path);
    }
}
