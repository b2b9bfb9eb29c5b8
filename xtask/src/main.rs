//! Project automation, run as `cargo xtask <task>`.
//!
//! Every task is a module; CI calls `cargo xtask ci` and nothing else, so a
//! local run and a CI run execute the same steps.

mod bench;
mod certs;
mod ci;
mod cluster;
mod cmd;
mod codegen;
mod compat;
mod etcd;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  bench [--quick]    load scenarios against session-server (and ZooKeeper when installed)
                     (--only SCENARIO, sizes as flags: cargo xtask bench --help;
                     --cluster: against 3-server clusters, server deaths included;
                     --only tls: establish and hold in plain text and over TLS)
  certs              a certificate authority and certificates for N servers and a client
                     (--dir DIR, default target/certs; --servers N, default 3), and the
                     server and client settings that use them
  ci                 fmt, codegen --check, clippy, docs, tests, benches compiled, package checks
  cluster [N]        N session-servers (default 3) on loopback as one cluster, until Ctrl-C
                     (--fresh: wipe target/cluster first; ports: cargo xtask cluster --help)
  compat             kazoo's test modules (and zkCli.sh when installed) against session-servers,
                     then kazoo (and zkCli.sh) over TLS against session-servers with TLS
                     (--only MODULE,...,zkcli,tls; known failures: xtask/compat/known-failures.txt)
  codegen [--check]  regenerate session-wire/src/generated from the .proto files
                     (--check: fail, naming the file, when the checked-in code is stale)
  help               this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("certs") => certs::run(&args[1..]),
        Some("ci") => ci::run(&args[1..]),
        Some("cluster") => cluster::run(&args[1..]),
        Some("codegen") => codegen::run(&args[1..]),
        Some("compat") => compat::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}
