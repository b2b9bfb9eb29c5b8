//! A connection that stops moving bytes both ways with its sockets open (a
//! partition that drops packets, a peer advertising a zero window) while a
//! large request is being written: the client's timers must run all the
//! same.

use std::time::{Duration, Instant};

use session_client::{CreateMode, Error, State};

use crate::support::{Proxy, client_via, connect, next_state, start};

/// The session timeout of these tests.
const T: Duration = Duration::from_millis(1500);
/// How late a state change may be reported: the driver's scheduling, not
/// the protocol.
const SLACK: Duration = Duration::from_millis(100);
/// The server's default largest data (`--max-data-bytes`, 512 KiB).
const BIG: usize = 512 * 1024;

#[tokio::test]
async fn a_stalled_write_delays_neither_suspended_nor_expired() {
    // Reference "Heartbeats and the client": Suspended after 2/3·T without
    // hearing the server, Expired after 4/3·T (ZOOKEEPER-4508), whatever
    // the client is busy writing.
    let server = start().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let client = client_via(&proxy, T).await;
    assert_eq!(client.negotiated_timeout(), T);
    let direct = connect(&server).await;
    client
        .create("/big", b"small", CreateMode::Persistent)
        .await
        .expect("create");
    let mut events = client.events();

    // The last frame the client hears is at or after `heard`: the answer to
    // this read, or a pong before the stall.
    client.exists("/").await.expect("round trip");
    let heard = Instant::now();
    proxy.stall();
    // More than every socket buffer on the way holds: the client's writes
    // block for as long as the stall lasts.
    let data = vec![7u8; BIG];
    let writes: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let data = data.clone();
            tokio::spawn(async move { client.set("/big", &data, None).await })
        })
        .collect();

    assert_eq!(next_state(&mut events).await, State::Suspended);
    let suspended = heard.elapsed();
    let read_timeout = T * 2 / 3;
    eprintln!(
        "Suspended {suspended:?} after the last frame heard (bound {read_timeout:?} + {SLACK:?})"
    );
    assert!(
        suspended >= read_timeout.saturating_sub(Duration::from_millis(5)),
        "not suspended early: {suspended:?}"
    );
    assert!(
        suspended <= read_timeout + SLACK,
        "suspended {suspended:?} after the last frame heard; bound 2/3·T + {SLACK:?} = {:?}",
        read_timeout + SLACK
    );
    for write in writes {
        let result = tokio::time::timeout(SLACK, write)
            .await
            .expect("every queued write ends when the connection is dropped")
            .expect("task");
        assert_eq!(result.map(|_| ()), Err(Error::ConnectionLoss));
    }

    assert_eq!(next_state(&mut events).await, State::Expired);
    let expired = heard.elapsed();
    let expiry = T * 4 / 3;
    eprintln!("Expired {expired:?} after the last frame heard (bound {expiry:?} + {SLACK:?})");
    assert!(
        expired >= expiry.saturating_sub(Duration::from_millis(5)),
        "not expired early: {expired:?}"
    );
    assert!(
        expired <= expiry + SLACK,
        "expired {expired:?} after the last frame heard; bound 4/3·T + {SLACK:?} = {:?}",
        expiry + SLACK
    );
    assert_eq!(
        direct.get("/big").await.map(|(data, _)| data.len()),
        Ok(5),
        "no stalled write reached the server"
    );
    proxy.restore();
    server.shutdown().await;
}
