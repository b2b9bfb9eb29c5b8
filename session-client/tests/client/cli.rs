//! `session-cli` end to end: the built binary against an in-process server.

#![cfg(feature = "cli")]

use std::process::Output;

use session_client::{CreateMode, SessionId};
use session_server::Server;

use crate::support::{connect, start};

async fn cli(server: &Server, args: &[&str]) -> Output {
    let admin = server.admin_addr().expect("admin enabled").to_string();
    let servers = server.local_addr().to_string();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-cli"));
    command
        .args([
            "--servers",
            &servers,
            "--admin",
            &admin,
            "--timeout-ms",
            "2000",
        ])
        .args(args)
        .kill_on_drop(true);
    tokio::time::timeout(crate::support::PATIENCE, command.output())
        .await
        .expect("session-cli finishes in time")
        .expect("session-cli runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_ls_set_stat_delete() {
    let server = start().await;
    assert_eq!(
        stdout(&cli(&server, &["create", "/app", "hello"]).await),
        "/app"
    );
    assert_eq!(stdout(&cli(&server, &["get", "/app"]).await), "hello");
    let sequential = stdout(&cli(&server, &["create", "-s", "/app/job-"]).await);
    assert!(sequential.starts_with("/app/job-"), "{sequential}");
    assert_eq!(
        stdout(&cli(&server, &["ls", "/app"]).await),
        sequential.trim_start_matches("/app/")
    );
    assert_eq!(
        stdout(&cli(&server, &["set", "/app", "bye", "--version", "0"]).await),
        "version 1"
    );
    let stat = stdout(&cli(&server, &["stat", "/app"]).await);
    assert!(
        stat.lines()
            .any(|line| line.split_whitespace().eq(["version", "1"])),
        "{stat}"
    );
    let json = stdout(&cli(&server, &["--json", "get", "/app"]).await);
    assert!(json.contains(r#""data":"bye""#), "{json}");
    assert_eq!(
        stdout(&cli(&server, &["delete", &sequential]).await),
        format!("deleted {sequential}")
    );
    assert_eq!(stdout(&cli(&server, &["--json", "ls", "/app"]).await), "[]");
    // An ephemeral made by the command goes with its session.
    assert_eq!(
        stdout(&cli(&server, &["create", "-e", "/app/tmp"]).await),
        "/app/tmp"
    );
    assert_eq!(stdout(&cli(&server, &["ls", "/app"]).await), "");
    server.shutdown().await;
}

/// `--json` output of a stat, parsed.
async fn json_stat(server: &Server, args: &[&str]) -> serde_json::Value {
    let out = stdout(&cli(server, args).await);
    serde_json::from_str(&out).unwrap_or_else(|err| panic!("not JSON ({err}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_stat_keeps_the_keys_scripts_read() {
    let server = start().await;
    let client = connect(&server).await;
    client
        .create("/p", b"abc", CreateMode::Persistent)
        .await
        .expect("persistent");
    client
        .create("/e", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let (_, expected) = client.get("/p").await.expect("get");

    let stat = json_stat(&server, &["--json", "stat", "/p"]).await;
    let mut keys: Vec<&str> = stat
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "ctime_ms",
            "cversion",
            "czxid",
            "data_length",
            "ephemeral_owner",
            "mtime_ms",
            "mzxid",
            "num_children",
            "pzxid",
            "version",
        ]
    );
    assert_eq!(stat["ctime_ms"], expected.ctime);
    assert_eq!(stat["mtime_ms"], expected.mtime);
    assert_eq!(stat["czxid"], expected.czxid);
    assert_eq!(stat["data_length"], 3);
    assert_eq!(stat["ephemeral_owner"], serde_json::Value::Null);

    let stat = json_stat(&server, &["--json", "stat", "/e"]).await;
    assert_eq!(stat["ephemeral_owner"], client.session_id().to_string());
    let got = json_stat(&server, &["--json", "get", "/p"]).await;
    assert_eq!(got["stat"]["ctime_ms"], expected.ctime);
    let set = json_stat(&server, &["--json", "set", "/p", "abcd"]).await;
    assert_eq!(set["version"], 1);
    assert_eq!(set["ctime_ms"], expected.ctime);
    // The text form shows the same keys, `-` for no owner.
    let text = stdout(&cli(&server, &["stat", "/p"]).await);
    for line in ["ctime_ms", "mtime_ms"] {
        assert!(text.lines().any(|l| l.starts_with(line)), "{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["ephemeral_owner", "-"])),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_one_line_and_exit_non_zero() {
    let server = start().await;
    let output = cli(&server, &["get", "/missing"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("session-cli: error: no node"),
        "{stderr}"
    );

    let output = cli(&server, &["delete", "relative"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid path"));

    let output = cli(&server, &["admin", "session", "zzz"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid session id"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_describes_and_expires_sessions() {
    let server = start().await;
    let client = connect(&server).await;
    client
        .create("/held", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let id = client.session_id().to_string();

    let table = stdout(&cli(&server, &["admin", "sessions"]).await);
    assert!(table.starts_with("SESSION"), "{table}");
    assert!(table.contains(&id), "{table}");
    let json = stdout(&cli(&server, &["--json", "admin", "session", &id]).await);
    assert!(json.contains(r#""ephemerals":1"#), "{json}");
    let stats = stdout(&cli(&server, &["--json", "admin", "stats"]).await);
    assert!(stats.contains(r#""sessions":1"#), "{stats}");
    let dump = stdout(&cli(&server, &["admin", "dump"]).await);
    assert!(dump.starts_with("tick 50 ms"), "{dump}");

    assert_eq!(
        stdout(&cli(&server, &["admin", "expire", &id]).await),
        format!("expired {id}")
    );
    crate::support::eventually("the expired session's ephemeral is gone", async || {
        server.node_count() == 1
    })
    .await;
    let output = cli(&server, &["admin", "session", &id]).await;
    assert!(!output.status.success(), "the session is gone");
    server.shutdown().await;
}

/// `session-cli` left running, its output read line by line.
struct Running {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Running {
    fn spawn(server: &Server, args: &[&str]) -> Running {
        let servers = server.local_addr().to_string();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-cli"))
            .args(["--servers", &servers, "--timeout-ms", "2000"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("session-cli starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        Running { child, lines }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(crate::support::PATIENCE, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("readable")
            .expect("not at end of output")
    }

    /// Ctrl-C, as a person would stop it; returns its exit status.
    async fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        let sent = tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success());
        tokio::time::timeout(crate::support::PATIENCE, self.child.wait())
            .await
            .expect("exits in time")
            .expect("exit status")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_registers_until_interrupted() {
    let server = start().await;
    let client = connect(&server).await;
    let mut hold = Running::spawn(&server, &["hold", "/worker-1", "10.0.0.7:8080"]);
    let first = hold.line().await;
    assert!(
        first.starts_with("holding /worker-1 (session 0x"),
        "{first}"
    );
    let (data, stat) = client.get("/worker-1").await.expect("registered");
    assert_eq!(&data[..], b"10.0.0.7:8080");
    // An ephemeral of the session the command printed.
    assert_ne!(stat.ephemeral_owner, 0, "an ephemeral");
    let owner = SessionId::from_u64(stat.ephemeral_owner).to_string();
    assert!(
        first.contains(&format!("(session {owner})")),
        "{first} vs owner {owner}"
    );
    // Ctrl-C closes the session: the registration goes at once, not at expiry.
    assert!(hold.interrupt().await.success());
    assert_eq!(client.exists("/worker-1").await.expect("exists"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_event_and_rearms() {
    let server = start().await;
    let client = connect(&server).await;
    let mut watch = Running::spawn(&server, &["watch", "/cfg"]);
    // Watches are one-shot and the command re-arms after each event; a change
    // made before it has re-armed would be missed (as in ZooKeeper), so each
    // change waits until the watch is set.
    let armed = async || {
        crate::support::eventually("the watch is set", async || server.watch_count() == 1).await;
    };
    armed().await;
    client
        .create("/cfg", b"v1", CreateMode::Persistent)
        .await
        .expect("create");
    assert_eq!(watch.line().await, "created /cfg");
    armed().await;
    client.set("/cfg", b"v2", None).await.expect("set");
    assert_eq!(watch.line().await, "data-changed /cfg");
    armed().await;
    client.delete("/cfg", None).await.expect("delete");
    assert_eq!(watch.line().await, "deleted /cfg");
    assert!(watch.interrupt().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_watch_prints_the_event_names_scripts_read() {
    let server = start().await;
    let client = connect(&server).await;
    let mut watch = Running::spawn(&server, &["--json", "watch", "/j"]);
    crate::support::eventually("the watch is set", async || server.watch_count() == 1).await;
    client
        .create("/j", b"", CreateMode::Persistent)
        .await
        .expect("create");
    let line = watch.line().await;
    let event: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
    assert_eq!(event["event"], "created", "{line}");
    assert_eq!(event["path"], "/j", "{line}");
    assert!(
        event["zxid"].as_u64().is_some_and(|zxid| zxid > 0),
        "{line}"
    );
    assert!(watch.interrupt().await.success());
}

/// `session-cli` with `args` left running against `servers` (a proxy, say).
fn spawn_against(servers: &str, args: &[&str]) -> Running {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-cli"))
        .args(["--servers", servers, "--timeout-ms", "1000"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("session-cli starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    Running { child, lines }
}

impl Running {
    /// Its exit status, within `PATIENCE`.
    async fn status(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(crate::support::PATIENCE, self.child.wait())
            .await
            .expect("exits in time")
            .expect("exit status")
    }

    /// The number after `word` on the next line of the command's output.
    async fn number_after(&mut self, word: &str) -> u64 {
        let line = self.line().await;
        line.split_whitespace()
            .skip_while(|w| *w != word)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
    }
}

/// Whether process `pid` runs (a zombie, dead and not yet reaped by its new
/// parent, does not).
#[cfg(target_os = "linux")]
fn running(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

/// Waits until process `pid` no longer runs, at most `bound`; how long.
#[cfg(target_os = "linux")]
async fn gone_within(pid: u64, bound: std::time::Duration) -> std::time::Duration {
    let started = std::time::Instant::now();
    while running(pid) {
        assert!(
            started.elapsed() < bound,
            "process {pid} still runs after {bound:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// A shell command printing `pid <its pid> token <its token>`, then
/// sleeping as that same process.
const PID_TOKEN_SLEEP: &str = r#"echo pid $$ token "$SESSION_LOCK_TOKEN"; exec sleep 600"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_the_command_with_its_token_and_passes_its_status_on() {
    let server = start().await;
    let script = r#"echo token "$SESSION_LOCK_TOKEN" node "$SESSION_LOCK_NODE"; exit 3"#;
    let output = cli(&server, &["lock", "/locks/job", "--", "sh", "-c", script]).await;
    assert_eq!(output.status.code(), Some(3), "the command's status");
    let out = String::from_utf8_lossy(&output.stdout);
    let words: Vec<&str> = out.split_whitespace().collect();
    let first: u64 = words[1]
        .parse()
        .unwrap_or_else(|_| panic!("a token: {out}"));
    assert!(first > 0);
    assert!(
        words[3].starts_with("/locks/job/_c_") && words[3].contains("-lock-"),
        "{out}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("(token {first})")), "{stderr}");

    // The lock was released: the next run gets it at once, with a higher
    // token; an election's runs too.
    let output = cli(&server, &["lock", "/locks/job", "--", "sh", "-c", script]).await;
    let out = String::from_utf8_lossy(&output.stdout);
    let second: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .expect("token");
    assert!(second > first, "{second} after {first}");
    let output = cli(&server, &["elect", "/election", "--", "sh", "-c", script]).await;
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stdout).contains("-latch-"));
    let output = cli(&server, &["elect", "/election", "--", "true"]).await;
    assert!(output.status.success());
    let client = connect(&server).await;
    assert!(
        client
            .children("/locks/job")
            .await
            .map_or(true, |children| children.is_empty())
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_the_command_only_once_the_holder_released() {
    let server = start().await;
    let client = connect(&server).await;
    let guard = session_client::recipes::Lock::new(&client, "/locks/job")
        .acquire()
        .await
        .expect("the lock");
    let servers = server.local_addr().to_string();
    let mut waiting = spawn_against(
        &servers,
        &[
            "lock",
            "/locks/job",
            "--",
            "sh",
            "-c",
            r#"echo token "$SESSION_LOCK_TOKEN""#,
        ],
    );
    assert!(
        tokio::time::timeout(
            std::time::Duration::from_millis(500),
            waiting.lines.next_line()
        )
        .await
        .is_err(),
        "the command waits for the lock"
    );
    let held = guard.token().get();
    guard.release().await.expect("release");
    assert!(waiting.number_after("token").await > held);
    assert!(waiting.status().await.success());
    server.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_stops_the_command_and_exits_75() {
    let server = start().await;
    let proxy = crate::support::Proxy::start(server.local_addr()).await;
    let mut cli = spawn_against(
        &proxy.addr().to_string(),
        &[
            "lock",
            "--grace-ms",
            "500",
            "/locks/job",
            "--",
            "sh",
            "-c",
            PID_TOKEN_SLEEP,
        ],
    );
    let pid = cli.number_after("pid").await;
    assert!(running(pid));
    // The connection breaks: the session is suspended, the lock in doubt.
    proxy.cut();
    let stopped = gone_within(pid, crate::support::PATIENCE).await;
    assert_eq!(cli.status().await.code(), Some(75));
    println!("command stopped {stopped:?} after the cut");
    server.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_retry_runs_the_command_again_once_it_has_the_lock_again() {
    let server = start().await;
    let proxy = crate::support::Proxy::start(server.local_addr()).await;
    let mut cli = spawn_against(
        &proxy.addr().to_string(),
        &[
            "elect",
            "--retry",
            "/election",
            "--",
            "sh",
            "-c",
            PID_TOKEN_SLEEP,
        ],
    );
    let first_pid = cli.number_after("pid").await;
    proxy.cut();
    gone_within(first_pid, crate::support::PATIENCE).await;
    proxy.restore();
    let line = cli.line().await;
    let words: Vec<&str> = line.split_whitespace().collect();
    let second_pid: u64 = words[1].parse().expect("a pid");
    assert_ne!(second_pid, first_pid);
    assert!(running(second_pid));
    // Ctrl-C: the command is stopped, the leadership given up.
    assert_eq!(cli.interrupt().await.code(), Some(130));
    gone_within(second_pid, crate::support::PATIENCE).await;
    let client = connect(&server).await;
    assert!(
        client
            .children("/election")
            .await
            .map_or(true, |children| children.is_empty()),
        "resigned"
    );
    server.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_session_cli_kills_the_command() {
    let server = start().await;
    let servers = server.local_addr().to_string();
    for command in ["lock", "elect"] {
        let mut cli = spawn_against(
            &servers,
            &[command, "/exclusive", "--", "sh", "-c", PID_TOKEN_SLEEP],
        );
        let pid = cli.number_after("pid").await;
        assert!(running(pid));
        cli.child.start_kill().expect("SIGKILL"); // kill -9
        assert!(!cli.status().await.success());
        let took = gone_within(pid, std::time::Duration::from_secs(2)).await;
        println!("{command}: the command died {took:?} after session-cli");
    }
    server.shutdown().await;
}
