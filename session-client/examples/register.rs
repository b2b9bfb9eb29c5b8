//! Service registration with the `Membership` recipe: this process is the
//! member `/services/web/web-<pid>`, an ephemeral node that lives exactly
//! as long as its session, and it prints every member that joins or leaves.
//!
//! Start a server (`cargo run -p session-server`), then run this example in
//! several terminals: `cargo run -p session-client --example register`.
//! Stop one (Ctrl-C): once its 6 s session timeout has passed, the others
//! print that it left.

use std::time::Duration;

use futures_util::StreamExt;
use session_client::recipes::{MemberEvent, Membership};
use session_client::{Client, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let client = Client::builder()
        .servers("127.0.0.1:7181")
        .session_timeout(Duration::from_secs(6))
        .connect()
        .await?;
    let web = Membership::new(&client, "/services/web");
    let id = format!("web-{}", std::process::id());
    // Gone when this process dies or is cut off for longer than 6 s; left
    // at once when `_me` is dropped.
    let _me = web.join(&id, b"10.0.0.7:8080").await?;
    println!("registered as {id}");
    let mut members = web.watch();
    while let Some(change) = members.next().await {
        match change? {
            MemberEvent::Joined(member) => {
                let address = String::from_utf8_lossy(&member.data);
                println!("joined: {} at {address}", member.id);
            }
            MemberEvent::Left(id) => println!("left: {id}"),
        }
    }
    Ok(())
}
