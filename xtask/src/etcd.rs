//! etcd for `cargo xtask bench`: one etcd 3.4 (`/usr/bin/etcd`, the Debian
//! package `etcd-server`) or a cluster of them on free loopback ports, for
//! the `etcd` target of `session-bench`.
//!
//! Each member is started through `session-bench exec-server -- etcd ...`
//! (more open files, and SIGTERM when this process ends), with:
//!
//! - client and peer URLs on free `127.0.0.1` ports (plain text; the
//!   client URL serves the v3 gRPC API);
//! - its data directory under the work directory, removed when the
//!   [`Etcd`] is dropped; its log (zap, `--log-level warn`, on stderr) in
//!   `etcd-<client port>-m<i>.log` next to it, kept;
//! - `--unsafe-no-fsync` unless durable: the write-ahead log is not fsynced
//!   (3.4.23 accepts the flag although `etcd --help` does not list it), as
//!   session-server runs in memory and ZooKeeper with `forceSync=no`;
//!   durable, etcd's default (fsync before acknowledging);
//! - `--quota-backend-bytes` 8 GiB (etcd's suggested maximum; the default
//!   2 GiB could raise the no-space alarm in long runs, as nothing is
//!   compacted);
//! - heartbeat, election timeout and snapshot count at etcd's defaults
//!   (100 ms, 1000 ms, 100000).
//!
//! Starting returns once every member's client port accepts connections
//! and the members agree on a leader (asked by `session-bench leader
//! --target etcd`, through each member's `Maintenance.Status`).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::free_ports;
use crate::cmd::Error;

/// Where the Debian package installs etcd.
pub(crate) const ETCD: &str = "/usr/bin/etcd";
/// The backend quota: 8 GiB.
const QUOTA_BACKEND_BYTES: u64 = 8 << 30;
/// etcd's log level (zap logger): warnings and errors only.
const LOG_LEVEL: &str = "warn";
/// How long the members have to listen, and then to agree on a leader.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Whether etcd is installed.
pub(crate) fn installed() -> bool {
    Path::new(ETCD).is_file()
}

/// One member of a running etcd.
#[derive(Debug)]
struct Member {
    /// Its name, `m1`, `m2`, ...
    name: String,
    /// Its client URL's address (v3 gRPC).
    client: SocketAddr,
    /// The `session-bench exec-server` process, which became etcd (same
    /// process id).
    child: Child,
    /// Its data directory.
    data: PathBuf,
    /// Its log file.
    log: PathBuf,
    /// It has been killed and reaped already.
    killed: bool,
}

/// A running etcd, one member or a cluster: killed (SIGKILL), reaped and
/// its data directories removed when dropped, also on error paths.
#[derive(Debug)]
pub(crate) struct Etcd {
    members: Vec<Member>,
}

impl Etcd {
    /// The client addresses, comma-separated in member order: the
    /// `--addr` of `session-bench --target etcd`.
    pub(crate) fn connect(&self) -> String {
        self.members
            .iter()
            .map(|member| member.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Each member's process id, in member order (`--server-pid`,
    /// `--pids`).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .map(|member| member.child.id())
            .collect()
    }

    /// SIGKILLs member `index` (from 0) and reaps it; its data directory
    /// stays until the whole [`Etcd`] is dropped.
    pub(crate) fn kill_member(&mut self, index: usize) -> Result<(), Error> {
        let member = self
            .members
            .get_mut(index)
            .ok_or_else(|| format!("no etcd member {index}"))?;
        if !member.killed {
            // Already exited is fine: kill fails, wait reaps.
            let _ = member.child.kill();
            member.child.wait()?;
            member.killed = true;
        }
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            let _ = self.kill_member(index);
        }
        for member in &self.members {
            let _ = std::fs::remove_dir_all(&member.data);
        }
    }
}

/// One etcd on free loopback ports, data under `work`; `durable`: fsync
/// (etcd's default), else `--unsafe-no-fsync`. `bench` is the
/// `session-bench` binary (for `exec-server` and `leader`).
pub(crate) fn start_single(bench: &Path, work: &Path, durable: bool) -> Result<Etcd, Error> {
    start_cluster(bench, work, durable, 1)
}

/// A cluster of `members` etcd members like [`start_single`], data and
/// logs under `work`; returns once they agree on a leader.
pub(crate) fn start_cluster(
    bench: &Path,
    work: &Path,
    durable: bool,
    members: usize,
) -> Result<Etcd, Error> {
    if members == 0 {
        return Err("an etcd cluster needs at least one member".into());
    }
    if !installed() {
        return Err(format!("{ETCD} not found (Debian package etcd-server)").into());
    }
    std::fs::create_dir_all(work)?;
    // Client and peer port of each member.
    let ports = free_ports(2 * members)?;
    let url = |addr: SocketAddr| format!("http://{addr}");
    let initial_cluster = ports
        .chunks(2)
        .enumerate()
        .map(|(index, pair)| format!("m{}={}", index + 1, url(pair[1])))
        .collect::<Vec<_>>()
        .join(",");
    // Unique per start, so members of different runs never join up.
    let token = format!("bench-{}-{}", std::process::id(), ports[0].port());
    let mut etcd = Etcd {
        members: Vec::with_capacity(members),
    };
    for (index, pair) in ports.chunks(2).enumerate() {
        let (client, peer) = (pair[0], pair[1]);
        let name = format!("m{}", index + 1);
        let stem = format!("etcd-{}-{name}", client.port());
        let data = work.join(&stem);
        let log = work.join(format!("{stem}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(bench);
        command
            .arg("exec-server")
            .arg("--")
            .arg(ETCD)
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &url(client)])
            .args(["--advertise-client-urls", &url(client)])
            .args(["--listen-peer-urls", &url(peer)])
            .args(["--initial-advertise-peer-urls", &url(peer)])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &token])
            .args(["--quota-backend-bytes", &QUOTA_BACKEND_BYTES.to_string()])
            .args(["--logger", "zap", "--log-level", LOG_LEVEL])
            .args(["--log-outputs", "stderr"]);
        if !durable {
            command.arg("--unsafe-no-fsync");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        etcd.members.push(Member {
            name,
            client,
            child,
            data,
            log,
            killed: false,
        });
    }
    let deadline = Instant::now() + START_LIMIT;
    for member in &mut etcd.members {
        wait_listening(member, deadline)?;
    }
    crate::cluster::wait_leader(
        bench,
        "etcd",
        &etcd.connect(),
        &[],
        START_LIMIT.as_secs(),
        false,
    )?;
    Ok(etcd)
}

/// Waits until `member`'s client port accepts connections; fails when it
/// exits first or `deadline` passes.
fn wait_listening(member: &mut Member, deadline: Instant) -> Result<(), Error> {
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&member.client, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = member.child.try_wait()? {
            member.killed = true;
            return Err(format!(
                "etcd member {} exited with {status}; see {}",
                member.name,
                member.log.display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "etcd member {} did not listen on {} within {START_LIMIT:?}; see {}",
        member.name,
        member.client,
        member.log.display()
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts one etcd without fsync, then a durable cluster of three, kills
    /// a member, and checks that dropping leaves no process and no data
    /// behind. Needs etcd and the release `session-bench`:
    /// `cargo test -p xtask -- --ignored etcd`.
    #[test]
    #[ignore = "starts etcd: needs /usr/bin/etcd and target/release/session-bench"]
    fn etcd_starts_and_goes_away() {
        let bench = crate::cmd::target_directory()
            .expect("cargo metadata")
            .join("release")
            .join("session-bench");
        let work = std::env::temp_dir().join(format!("xtask-etcd-test-{}", std::process::id()));
        let gone = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();

        let single = start_single(&bench, &work, false).expect("one etcd");
        assert_eq!(single.pids().len(), 1);
        assert_eq!(single.connect().split(',').count(), 1);
        let pids = single.pids();
        drop(single);
        assert!(pids.iter().all(|&pid| gone(pid)));

        let mut cluster = start_cluster(&bench, &work, true, 3).expect("a cluster of three");
        assert_eq!(cluster.connect().split(',').count(), 3);
        let pids = cluster.pids();
        cluster.kill_member(1).expect("kill member 2");
        assert!(gone(pids[1]));
        drop(cluster);
        assert!(pids.iter().all(|&pid| gone(pid)));

        // Only the logs are left.
        let dirs = std::fs::read_dir(&work)
            .expect("work directory")
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .count();
        assert_eq!(dirs, 0);
        std::fs::remove_dir_all(&work).expect("remove the work directory");
    }
}
