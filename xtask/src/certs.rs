//! `cargo xtask certs [--dir DIR] [--servers N]`: a certificate authority
//! and certificates it signs for N session-servers and one client, made on
//! the spot by `session-testkit` (rcgen, no OpenSSL), for trying TLS by
//! hand: then prints what it wrote and the command lines that use them.
//!
//! The certificates are for loopback and testing: the authority's key lies
//! next to its certificate, unprotected.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use session_testkit::{ClusterFiles, member_name, write_cluster};

use crate::cluster::{NodeAddrs, connect_string, node_args};
use crate::cmd::{Error, target_directory};

const USAGE: &str = "\
usage: cargo xtask certs [--dir DIR] [--servers N]

Writes a new certificate authority and certificates it signs into DIR
(default target/certs; files there of the same names are replaced):
  ca.pem, ca.key               the authority (trust ca.pem; ca.key signs more)
  server-N.pem, server-N.key   member N (1..=N, default 3), named server-N,
                               localhost, 127.0.0.1 and ::1; usable to serve
                               and to dial (peers use mutual TLS)
  client.pem, client.key       a client certificate (session-client)
then prints the session-server commands of a three-member cluster on the
ports `cargo xtask cluster` uses (data in target/tls-cluster/node-N), and
the session-cli and kazoo settings that use the certificates.
The certificates are for loopback and tests: ca.key is not protected.
";

/// The most members a cluster of `cargo xtask cluster` has.
const MAX_SERVERS: u16 = 7;

/// Entry point of `cargo xtask certs ARGS`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let mut dir: Option<PathBuf> = None;
    let mut servers: u16 = 3;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--dir" => dir = Some(rest.next().ok_or("--dir needs a directory")?.into()),
            "--servers" => {
                let value = rest.next().ok_or("--servers needs a number")?;
                servers = value
                    .parse()
                    .map_err(|err| format!("--servers {value}: {err}"))?;
                if !(1..=MAX_SERVERS).contains(&servers) {
                    return Err(
                        format!("--servers: 1 to {MAX_SERVERS} members, not {servers}").into(),
                    );
                }
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}").into()),
        }
    }
    let dir = match dir {
        Some(dir) => dir,
        None => target_directory()?.join("certs"),
    };
    let files = write_cluster(&dir, servers)?;
    print!("{}", describe(&dir, &files)?);
    Ok(())
}

/// What was written and how to use it: the session-server command of
/// each member of the cluster `cargo xtask cluster` lays out (same ports
/// and data directories), then the clients' settings.
fn describe(dir: &Path, files: &ClusterFiles) -> Result<String, Error> {
    let show = |path: &Path| path.display().to_string();
    let ca = show(&files.ca);
    let mut out = format!("wrote into {}:\n", dir.display());
    let _ = writeln!(
        out,
        "  ca.pem, ca.key              the authority (trust ca.pem)"
    );
    for index in 1..=files.servers.len() {
        let name = member_name(u16::try_from(index).unwrap_or(u16::MAX));
        let _ = writeln!(
            out,
            "  {:<27} member {index}: {name}, localhost, 127.0.0.1, ::1",
            format!("{name}.pem, {name}.key")
        );
    }
    let _ = writeln!(out, "  client.pem, client.key      a client certificate");

    let target = target_directory()?;
    let server = target.join("release").join("session-server");
    let cli = target.join("release").join("session-cli");
    // Not target/cluster: `cargo xtask cluster` keeps its plain-text
    // cluster's data there.
    let data = target.join("tls-cluster");
    let nodes: Vec<NodeAddrs> = (1..=files.servers.len()).map(NodeAddrs::fixed).collect();
    let _ = writeln!(
        out,
        "\nthe servers, on the ports of `cargo xtask cluster` (cargo build --release -p \
         session-server):\nevery listener serves TLS, clients must present a certificate \
         the authority signed\n(leave out --tls-client-ca and give --peer-tls-ca {ca} to \
         take clients without one),\nand the members talk mutual TLS, each checking that \
         member N's certificate names server-N"
    );
    for (index, files) in files.servers.iter().enumerate() {
        let id = index + 1;
        let args = node_args(id, &nodes, &data.join(format!("node-{id}")));
        let _ = writeln!(
            out,
            "  {} {} --tls-cert {} --tls-key {} --tls-client-ca {ca}",
            server.display(),
            args.join(" "),
            show(&files.cert),
            show(&files.key)
        );
    }
    let client_cert = show(&files.client.cert);
    let client_key = show(&files.client.key);
    let _ = writeln!(
        out,
        "\na client (cargo build --release -p session-client; it checks the name it dials, \
         127.0.0.1):\n  {} --servers tls://{} --tls-ca {ca} --tls-cert {client_cert} \
         --tls-key {client_key} hold /me",
        cli.display(),
        connect_string(&nodes)
    );
    let zookeeper: Vec<String> = nodes
        .iter()
        .filter_map(|node| node.zookeeper.map(|addr| addr.to_string()))
        .collect();
    let _ = writeln!(
        out,
        "\na ZooKeeper client (kazoo):\n  KazooClient(hosts=\"{}\", use_ssl=True, \
         verify_certs=True, ca=\"{ca}\",\n              certfile=\"{client_cert}\", \
         keyfile=\"{client_key}\")",
        zookeeper.join(",")
    );
    Ok(out)
}
