//! ZooKeeper's four-letter words on the ZooKeeper listener: a raw TCP
//! connection writes the 4 bytes instead of a handshake, reads the answer to
//! the end, and the server has closed it. The values are checked against
//! what `zookeeper-client` sessions did. Every wait is bounded by
//! `PATIENCE`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use session_server::{CloseReason, ClusterConfig, Server, Storage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zookeeper_client as zk;

use crate::support::{self, PATIENCE, Scratch, fresh_port};

/// Awaits `future`, failing the test if it takes longer than `PATIENCE`.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
}

/// Writes `bytes` on a new connection to the ZooKeeper listener and reads
/// until the server closes it.
async fn ask(server: &Server, bytes: &[u8]) -> String {
    let addr = server
        .zookeeper_addr()
        .expect("the ZooKeeper listener is on");
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write the word");
    let mut answer = Vec::new();
    within(
        "the answer, then the server's close",
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("read to the end");
    String::from_utf8(answer).expect("the answer is text")
}

async fn connect(server: &Server) -> zk::Client {
    let addr = server
        .zookeeper_addr()
        .expect("the ZooKeeper listener is on");
    within(
        "connect",
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(2))
            .connect(&addr.to_string()),
    )
    .await
    .expect("a session")
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

/// The value after `prefix` on the line that starts with it.
fn line_value<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{text}"))
}

/// `mntr`'s `zk_<key>\t<value>` lines.
fn monitor_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|line| {
            let (key, value) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("not a key, a tab and a value: {line:?}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn ruok_is_answered_imok_and_the_connection_closed() {
    let server = support::start().await;
    let before = server.metrics().close_count(CloseReason::four_letter_word);
    assert_eq!(ask(&server, b"ruok").await, "imok");
    // Bytes after the word are not waited for, nor answered.
    assert_eq!(ask(&server, b"ruok and more").await, "imok");
    assert_eq!(
        server.metrics().close_count(CloseReason::four_letter_word),
        before + 2
    );
    assert_eq!(ask(&server, b"isro").await, "rw");
    server.shutdown().await;
}

#[tokio::test]
async fn srvr_and_stat_report_the_servers_state() {
    let server = support::start().await;
    let client = connect(&server).await;
    within("create /a", client.create("/a", b"12345", &persistent()))
        .await
        .expect("create /a");
    let (last, _) = within("create /a/b", client.create("/a/b", b"", &persistent()))
        .await
        .expect("create /a/b");

    let srvr = ask(&server, b"srvr").await;
    println!("srvr:\n{srvr}");
    let lines: Vec<&str> = srvr.lines().collect();
    let labels: Vec<&str> = lines
        .iter()
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        labels,
        [
            "Zookeeper version",
            "Latency min/avg/max",
            "Received",
            "Sent",
            "Connections",
            "Outstanding",
            "Zxid",
            "Mode",
            "Node count"
        ],
        "{srvr}"
    );
    assert!(srvr.ends_with('\n'));
    assert!(
        line_value(&srvr, "Zookeeper version: ").starts_with("3.9.5-compatible session-server "),
        "{srvr}"
    );
    let latency: Vec<f64> = line_value(&srvr, "Latency min/avg/max: ")
        .split('/')
        .map(|value| value.parse().expect("a number"))
        .collect();
    assert_eq!(latency.len(), 3);
    assert!(
        latency[0] <= latency[1] && latency[1] <= latency[2],
        "{srvr}"
    );
    // The handshake and two creates at least, each read and answered.
    let received: u64 = line_value(&srvr, "Received: ").parse().expect("a count");
    let sent: u64 = line_value(&srvr, "Sent: ").parse().expect("a count");
    assert!(received >= 3 && sent >= 3, "{srvr}");
    // The client's connection and the one asking.
    assert_eq!(line_value(&srvr, "Connections: "), "2");
    assert_eq!(line_value(&srvr, "Outstanding: "), "0");
    assert_eq!(
        line_value(&srvr, "Zxid: "),
        format!("0x{:x}", last.mzxid),
        "the last write's zxid"
    );
    assert_eq!(line_value(&srvr, "Mode: "), "standalone");
    // The root, /a and /a/b.
    assert_eq!(line_value(&srvr, "Node count: "), "3");
    assert_eq!(server.node_count(), 3);

    let stat = ask(&server, b"stat").await;
    println!("stat:\n{stat}");
    let (head, rest) = stat.split_once("Clients:\n").expect("a client list");
    assert!(head.starts_with("Zookeeper version: "));
    let (clients, after) = rest
        .split_once("\n\n")
        .expect("an empty line after the list");
    let clients: Vec<&str> = clients.lines().collect();
    assert_eq!(clients.len(), 2, "{stat}");
    assert!(
        clients.iter().any(|line| line.starts_with(" /127.0.0.1:")
            && line.ends_with("[1](queued=0,recved=0,sent=0)")),
        "the client's connection: {stat}"
    );
    assert!(
        clients.iter().any(|line| line.starts_with(" /127.0.0.1:")
            && line.ends_with("[0](queued=0,recved=1,sent=0)")),
        "the connection asking: {stat}"
    );
    assert!(after.starts_with("Latency min/avg/max: "), "{stat}");
    assert!(
        after.contains("Mode: standalone\nNode count: 3\n"),
        "{stat}"
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn mntr_and_wchs_count_nodes_watches_ephemerals_and_sessions() {
    let began = std::time::Instant::now();
    let server = support::start().await;
    let client = connect(&server).await;
    within("create /w", client.create("/w", b"abc", &persistent()))
        .await
        .expect("create /w");
    within("create /e", client.create("/e", b"de", &ephemeral()))
        .await
        .expect("create /e");
    let (_, _, _watch) = within("get + watch", client.get_and_watch_data("/w"))
        .await
        .expect("get + watch");

    let text = ask(&server, b"mntr").await;
    println!("mntr:\n{text}");
    let values = monitor_values(&text);
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split('\t').next())
        .collect();
    let mut expected = vec![
        "zk_version",
        "zk_server_state",
        "zk_avg_latency",
        "zk_max_latency",
        "zk_min_latency",
        "zk_packets_received",
        "zk_packets_sent",
        "zk_num_alive_connections",
        "zk_outstanding_requests",
        "zk_uptime",
        "zk_znode_count",
        "zk_watch_count",
        "zk_ephemerals_count",
        "zk_approximate_data_size",
        "zk_global_sessions",
        "zk_local_sessions",
    ];
    if cfg!(target_os = "linux") {
        expected.extend([
            "zk_open_file_descriptor_count",
            "zk_max_file_descriptor_count",
        ]);
    }
    assert_eq!(keys, expected, "{text}");
    assert!(values["zk_version"].starts_with("3.9.5-"), "{text}");
    assert_eq!(values["zk_server_state"], "standalone");
    assert_eq!(values["zk_znode_count"], "3", "the root, /w and /e");
    assert_eq!(values["zk_watch_count"], "1");
    assert_eq!(values["zk_ephemerals_count"], "1");
    assert_eq!(values["zk_approximate_data_size"], "5", "the data's bytes");
    assert_eq!(values["zk_global_sessions"], "1");
    assert_eq!(values["zk_num_alive_connections"], "2");
    assert_eq!(values["zk_outstanding_requests"], "0");
    let avg: f64 = values["zk_avg_latency"].parse().expect("a number");
    let max: u64 = values["zk_max_latency"].parse().expect("a number");
    let min: u64 = values["zk_min_latency"].parse().expect("a number");
    assert!(min as f64 <= avg && avg <= max as f64, "{text}");
    let uptime: u128 = values["zk_uptime"].parse().expect("milliseconds");
    assert!(uptime <= began.elapsed().as_millis(), "{text}");
    let received: u64 = values["zk_packets_received"].parse().expect("a count");
    assert!(received >= 4, "handshake, two creates and a get: {text}");
    if cfg!(target_os = "linux") {
        let open: u64 = values["zk_open_file_descriptor_count"]
            .parse()
            .expect("a count");
        let max: u64 = values["zk_max_file_descriptor_count"]
            .parse()
            .expect("a count");
        assert!(0 < open && open <= max, "{text}");
    }

    let wchs = ask(&server, b"wchs").await;
    println!("wchs:\n{wchs}");
    assert_eq!(wchs, "1 connections watching 1 paths\nTotal watches:1\n");
    let session = format!("0x{:x}", client.session_id().0);
    assert_eq!(ask(&server, b"wchc").await, format!("{session}\n\t/w\n"));
    assert_eq!(ask(&server, b"wchp").await, format!("/w\n\t{session}\n"));
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn cons_lists_each_session_with_its_id_and_timeout() {
    let server = support::start().await;
    let client = connect(&server).await;
    let cons = ask(&server, b"cons").await;
    println!("cons:\n{cons}");
    assert!(
        cons.ends_with(")\n\n"),
        "an empty line ends the list: {cons}"
    );
    let lines: Vec<&str> = cons.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{cons}");
    let session = lines
        .iter()
        .find(|line| line.contains(",sid="))
        .expect("a line with a session");
    assert!(session.starts_with(" /127.0.0.1:"), "{session}");
    assert!(
        session.contains(&format!(
            "[1](queued=0,recved=0,sent=0,sid=0x{:x},lop=NA,est=0,to=2000,",
            raw_id(&client)
        )),
        "{session}"
    );
    let heard: i64 = session
        .split(",lresp=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|value| value.parse().ok())
        .expect("lresp, in milliseconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    assert!(
        (now - 60_000..=now).contains(&heard),
        "heard {heard}, now {now}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.ends_with("[0](queued=0,recved=1,sent=0)")),
        "the connection asking: {cons}"
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn envi_reports_a_version_kazoo_parses_as_zookeeper_3() {
    let server = support::start().await;
    let envi = ask(&server, b"envi").await;
    println!("envi:\n{envi}");
    assert!(
        envi.starts_with("Environment:\nzookeeper.version=3."),
        "{envi}"
    );
    // kazoo's server_version(): key=value lines, then the digits and dots at
    // the front of zookeeper.version, split on dots.
    let version = envi
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "zookeeper.version")
        .map(|(_, value)| value.trim())
        .expect("zookeeper.version");
    let digits: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let parsed: Vec<u32> = digits
        .split('.')
        .map(|part| part.parse().expect("a number between the dots"))
        .collect();
    assert_eq!(parsed, [3, 9, 5]);
    for key in ["host.name=", "os.name=", "user.dir="] {
        assert!(envi.contains(&format!("\n{key}")), "{key} in {envi}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn conf_and_dirs_describe_the_configuration_and_the_data_directory() {
    let scratch = Scratch::new("four-letter-conf");
    let server = support::start_with(|config| {
        config.storage = Storage::Disk(scratch.0.clone());
    })
    .await;
    let client = connect(&server).await;
    within("create /x", client.create("/x", &[7; 100], &persistent()))
        .await
        .expect("create /x");

    let conf = ask(&server, b"conf").await;
    println!("conf:\n{conf}");
    let port = server.zookeeper_addr().expect("listener").port();
    assert_eq!(line_value(&conf, "clientPort="), port.to_string());
    assert_eq!(line_value(&conf, "tickTime="), "50");
    assert_eq!(line_value(&conf, "minSessionTimeout="), "200");
    assert_eq!(line_value(&conf, "maxSessionTimeout="), "2000");
    assert_eq!(line_value(&conf, "serverId="), "1");
    let data_dir = PathBuf::from(line_value(&conf, "dataDir="));
    assert!(
        data_dir.is_absolute() && data_dir.ends_with("snapshots"),
        "{conf}"
    );
    assert!(line_value(&conf, "dataLogDir=").ends_with("log"), "{conf}");
    assert!(!conf.contains("membership"), "{conf}");

    let dirs = ask(&server, b"dirs").await;
    println!("dirs:\n{dirs}");
    let lines: Vec<&str> = dirs.lines().collect();
    assert_eq!(lines.len(), 2, "{dirs}");
    let log: u64 = line_value(&dirs, "logdir_size: ").parse().expect("bytes");
    assert!(log >= 100, "the log holds the node's 100 bytes: {dirs}");
    line_value(&dirs, "datadir_size: ")
        .parse::<u64>()
        .expect("bytes");
    drop(client);
    server.shutdown().await;

    // In memory, no directories.
    let server = support::start().await;
    assert_eq!(
        ask(&server, b"dirs").await,
        "datadir_size: 0\nlogdir_size: 0\n"
    );
    assert!(!ask(&server, b"conf").await.contains("dataDir"));
    server.shutdown().await;
}

#[tokio::test]
async fn words_zookeeper_knows_but_this_server_does_not_carry_out_get_the_whitelist_text() {
    let server = support::start().await;
    for word in ["crst", "dump", "gtmk", "srst", "hash"] {
        assert_eq!(
            ask(&server, word.as_bytes()).await,
            format!("{word} is not executed because it is not in the whitelist.\n")
        );
    }
    // stmk carries an 8-byte trace mask in ZooKeeper.
    assert_eq!(
        ask(&server, b"stmk\0\0\0\0\0\0\0\x01").await,
        "stmk is not executed because it is not in the whitelist.\n"
    );
    // A word ZooKeeper does not know is a (too large) frame length: closed
    // without a word.
    assert_eq!(ask(&server, b"abcd").await, "");
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_without_a_leader_answers_only_ruok_isro_and_envi() {
    let scratch = Scratch::new("four-letter-unavailable");
    // One member of three, the others never started: no leader, ever.
    let peers: BTreeMap<u8, u16> = (1..=3).map(|id| (id, fresh_port())).collect();
    let server = support::start_with(|config| {
        config.storage = Storage::Disk(scratch.0.clone());
        config.cluster = ClusterConfig {
            peers: peers
                .iter()
                .map(|(id, port)| {
                    (
                        session_core::ServerId::new(u64::from(*id)).expect("server id"),
                        format!("127.0.0.1:{port}"),
                    )
                })
                .collect(),
            peer_listen: None,
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(250),
        };
    })
    .await;
    let not_serving = "This ZooKeeper instance is not currently serving requests\n";
    within("the server says it does not serve", async {
        while ask(&server, b"srvr").await != not_serving {
            tokio::time::sleep(support::TICK).await;
        }
    })
    .await;
    for word in ["stat", "mntr", "cons", "wchs", "conf", "dirs"] {
        assert_eq!(ask(&server, word.as_bytes()).await, not_serving, "{word}");
    }
    assert_eq!(ask(&server, b"ruok").await, "imok");
    assert_eq!(ask(&server, b"isro").await, "null");
    assert!(
        ask(&server, b"envi")
            .await
            .starts_with("Environment:\nzookeeper.version=3.")
    );
    assert_eq!(
        ask(&server, b"dump").await,
        "dump is not executed because it is not in the whitelist.\n"
    );
    server.shutdown().await;
}
