//! What the benchmark reads from the operating system: the open-files limit,
//! a process's CPU time and resident memory from `/proc`, `CLOCK_MONOTONIC`
//! milliseconds (one clock for every process of the machine, for the
//! expiry scenario's holder and observer), the size of a directory; signals
//! to a server process, and a started server's tie to its parent.

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, so one
/// process can hold as many sockets as the machine allows; returns the new
/// soft limit.
pub(crate) fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    #[allow(unsafe_code)]
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid `rlimit` read by the call only.
        #[allow(unsafe_code)]
        let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        if set != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Clock ticks per second, the unit of `utime` and `stime` in `/proc/PID/stat`.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User plus system CPU seconds process `pid` has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis are space-separated: state is field 3, utime 14,
    // stime 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| std::io::Error::other(format!("unexpected /proc/{pid}/stat: {stat}")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> std::io::Result<u64> {
        fields
            .get(index)
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no field {index} in /proc/{pid}/stat")))
    };
    // Field 3 (state) is at index 0 here, so field N is at N - 3.
    let ticks = field(14 - 3)? + field(15 - 3)?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// Resident memory of process `pid` in bytes (`VmRSS` in `/proc/PID/status`).
pub(crate) fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// Milliseconds of `CLOCK_MONOTONIC`: the same clock for every process of
/// the machine, and never stepped (unlike the wall clock), so intervals
/// between two processes' readings are exact.
pub(crate) fn monotonic_ms() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    #[allow(unsafe_code)]
    let status = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if status != 0 {
        return 0;
    }
    // time_t and c_long are 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    let ms = i64::from(now.tv_sec) * 1000 + i64::from(now.tv_nsec) / 1_000_000;
    ms
}

/// Sends `signal` (e.g. `libc::SIGTERM`) to process `pid`.
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill has no memory-safety preconditions.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(pid, signal) };
    if sent != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes of every file under `dir`, subdirectories included (file
/// sizes, not blocks on disk).
pub(crate) fn dir_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Asks the kernel to send this process SIGTERM when its parent ends
/// (`PR_SET_PDEATHSIG`, kept across `exec`); nothing on other systems.
pub(crate) fn terminate_with_parent() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let signal = libc::c_ulong::try_from(libc::SIGTERM).map_err(std::io::Error::other)?;
        // SAFETY: prctl(PR_SET_PDEATHSIG) reads its integer arguments only.
        #[allow(unsafe_code)]
        let set = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) };
        if set != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
