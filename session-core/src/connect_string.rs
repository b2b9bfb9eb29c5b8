//! Connect strings: `host:port,host:port/chroot`, parsed with ZooKeeper's rules.
//!
//! - The first `/` starts the chroot; a chroot of `/` alone means none; the
//!   chroot must be a valid path ([`validate_path`]).
//! - Hosts are separated by `,`; each entry is trimmed and empty entries are
//!   skipped (ZooKeeper's `StringUtils.split`), but at least one host is needed.
//! - `host`, `host:` and `host:port` (default port 2181); IPv6 addresses in
//!   brackets, `[::1]` or `[::1]:2181`. An IPv6 address without brackets is
//!   refused (ZooKeeper would silently split it at its last colon).
//! - Ports are 1..=65535.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::{PathError, validate_path};

/// The port used when an entry gives none.
pub const DEFAULT_PORT: u16 = 2181;

/// Why a connect string was refused; every variant names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConnectStringError {
    /// No host at all (empty string, only commas, or only a chroot).
    #[error("connect string {input:?} names no host")]
    NoHosts {
        /// The whole connect string.
        input: String,
    },
    /// An entry with a port but no host, such as `:2181`.
    #[error("host entry {entry:?} has no host name")]
    EmptyHost {
        /// The entry.
        entry: String,
    },
    /// `[` without a matching `]`.
    #[error("host entry {entry:?} starts with '[' but has no matching ']'")]
    UnclosedBracket {
        /// The entry.
        entry: String,
    },
    /// `[]`.
    #[error("host entry {entry:?} has an empty IPv6 address")]
    EmptyIpv6 {
        /// The entry.
        entry: String,
    },
    /// Something other than `:port` after `]`.
    #[error("host entry {entry:?} has {rest:?} after ']' where ':port' was expected")]
    JunkAfterBracket {
        /// The entry.
        entry: String,
        /// What follows the bracket.
        rest: String,
    },
    /// A colon after `]` with no port behind it.
    #[error("host entry {entry:?} has no port after the colon")]
    MissingPort {
        /// The entry.
        entry: String,
    },
    /// The port is not a number in 1..=65535.
    #[error("host entry {entry:?} has invalid port {port:?}")]
    InvalidPort {
        /// The entry.
        entry: String,
        /// The port text.
        port: String,
    },
    /// Several colons outside brackets: an IPv6 address must be bracketed.
    #[error("host entry {entry:?} looks like an IPv6 address; write it as [address]:port")]
    UnbracketedIpv6 {
        /// The entry.
        entry: String,
    },
    /// The chroot is not a valid path.
    #[error("chroot {chroot:?} is invalid: {source}")]
    InvalidChroot {
        /// The chroot.
        chroot: String,
        /// What is wrong with it.
        source: PathError,
    },
}

/// One server address: a host name or address (IPv6 without brackets) and a port.
///
/// Names are kept unresolved: a client resolves them on every attempt
/// (ZOOKEEPER-2184).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name, IPv4 address, or IPv6 address without brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed connect string: the servers and an optional chroot.
///
/// ```
/// use session_core::ConnectString;
///
/// let cs: ConnectString = "zk1:2181,[::1]:2182,zk3/apps/web".parse()?;
/// let hosts: Vec<String> = cs.hosts().iter().map(ToString::to_string).collect();
/// assert_eq!(hosts, ["zk1:2181", "[::1]:2182", "zk3:2181"]);
/// assert_eq!(cs.chroot(), Some("/apps/web"));
/// assert_eq!(cs.prefix_path("/lock"), "/apps/web/lock");
/// assert_eq!(cs.strip_path("/apps/web/lock"), Some("/lock"));
/// assert_eq!(cs.to_string(), "zk1:2181,[::1]:2182,zk3:2181/apps/web");
/// # Ok::<(), session_core::ConnectStringError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectString {
    hosts: Vec<HostPort>,
    chroot: Option<String>,
}

impl ConnectString {
    /// Parses `input`.
    pub fn parse(input: &str) -> Result<Self, ConnectStringError> {
        let (host_list, chroot) = match input.find('/') {
            Some(slash) => (&input[..slash], Some(&input[slash..])),
            None => (input, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(path) => {
                validate_path(path).map_err(|source| ConnectStringError::InvalidChroot {
                    chroot: path.to_owned(),
                    source,
                })?;
                Some(path.to_owned())
            }
        };
        let hosts = host_list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            return Err(ConnectStringError::NoHosts {
                input: input.to_owned(),
            });
        }
        Ok(Self { hosts, chroot })
    }

    /// The servers, in the order given (a client shuffles them itself).
    #[must_use]
    pub fn hosts(&self) -> &[HostPort] {
        &self.hosts
    }

    /// The chroot, if any: a valid path other than `/`.
    #[must_use]
    pub fn chroot(&self) -> Option<&str> {
        self.chroot.as_deref()
    }

    /// The server-side path of a client path: the chroot prepended (`/` maps to
    /// the chroot itself).
    #[must_use]
    pub fn prefix_path(&self, client_path: &str) -> String {
        match &self.chroot {
            None => client_path.to_owned(),
            Some(chroot) if client_path == "/" => chroot.clone(),
            Some(chroot) => format!("{chroot}{client_path}"),
        }
    }

    /// The client path of a server-side path (in a watch notification, say):
    /// the chroot removed, the chroot itself mapping to `/`. `None` when the
    /// path is outside the chroot.
    #[must_use]
    pub fn strip_path<'a>(&self, server_path: &'a str) -> Option<&'a str> {
        let Some(chroot) = &self.chroot else {
            return Some(server_path);
        };
        match server_path.strip_prefix(chroot.as_str())? {
            "" => Some("/"),
            rest if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    }
}

impl FromStr for ConnectString {
    type Err = ConnectStringError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for ConnectString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, host) in self.hosts.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            host.fmt(f)?;
        }
        if let Some(chroot) = &self.chroot {
            f.write_str(chroot)?;
        }
        Ok(())
    }
}

fn parse_entry(entry: &str) -> Result<HostPort, ConnectStringError> {
    let owned = || entry.to_owned();
    if let Some(bracketed) = entry.strip_prefix('[') {
        // ZooKeeper's NetUtils.getIPV6HostAndPort.
        let close = bracketed
            .rfind(']')
            .ok_or_else(|| ConnectStringError::UnclosedBracket { entry: owned() })?;
        let host = &bracketed[..close];
        if host.is_empty() {
            return Err(ConnectStringError::EmptyIpv6 { entry: owned() });
        }
        let rest = &bracketed[close + 1..];
        let port = match rest {
            "" => DEFAULT_PORT,
            ":" => return Err(ConnectStringError::MissingPort { entry: owned() }),
            _ => match rest.strip_prefix(':') {
                Some(port) => parse_port(entry, port)?,
                None => {
                    return Err(ConnectStringError::JunkAfterBracket {
                        entry: owned(),
                        rest: rest.to_owned(),
                    });
                }
            },
        };
        return Ok(HostPort {
            host: host.to_owned(),
            port,
        });
    }
    let (host, port) = match entry.rsplit_once(':') {
        None => (entry, DEFAULT_PORT),
        Some((host, _)) if host.contains(':') => {
            return Err(ConnectStringError::UnbracketedIpv6 { entry: owned() });
        }
        // ZooKeeper takes "host:" as the default port.
        Some((host, "")) => (host, DEFAULT_PORT),
        Some((host, port)) => (host, parse_port(entry, port)?),
    };
    if host.is_empty() {
        return Err(ConnectStringError::EmptyHost { entry: owned() });
    }
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

fn parse_port(entry: &str, port: &str) -> Result<u16, ConnectStringError> {
    // Digits only: `u16::from_str` would also take a leading '+'.
    Some(port)
        .filter(|text| text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u16>().ok())
        .filter(|number| *number != 0)
        .ok_or_else(|| ConnectStringError::InvalidPort {
            entry: entry.to_owned(),
            port: port.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(input: &str) -> Vec<(String, u16)> {
        ConnectString::parse(input)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .hosts()
            .iter()
            .map(|h| (h.host.clone(), h.port))
            .collect()
    }

    fn hp(host: &str, port: u16) -> (String, u16) {
        (host.to_owned(), port)
    }

    #[test]
    fn accepts_zookeeper_forms() {
        // Cases from ZooKeeper's ConnectStringParserTest and NetUtilsTest.
        type Case = (&'static str, Vec<(String, u16)>, Option<&'static str>);
        let table: &[Case] = &[
            ("localhost", vec![hp("localhost", 2181)], None),
            ("localhost:1234", vec![hp("localhost", 1234)], None),
            ("localhost:", vec![hp("localhost", 2181)], None),
            (
                "10.0.0.1:2181,10.0.0.2",
                vec![hp("10.0.0.1", 2181), hp("10.0.0.2", 2181)],
                None,
            ),
            ("[::1]:2181", vec![hp("::1", 2181)], None),
            ("[::1]", vec![hp("::1", 2181)], None),
            (
                "[2001:db8::1]:3000,h2:4000",
                vec![hp("2001:db8::1", 3000), hp("h2", 4000)],
                None,
            ),
            (
                "h1:1, h2:2 ,,h3",
                vec![hp("h1", 1), hp("h2", 2), hp("h3", 2181)],
                None,
            ),
            ("h1:1,h2:2/", vec![hp("h1", 1), hp("h2", 2)], None),
            ("h1/app", vec![hp("h1", 2181)], Some("/app")),
            (
                "h1:1,h2:2/app/sub",
                vec![hp("h1", 1), hp("h2", 2)],
                Some("/app/sub"),
            ),
            ("[::1]:9/x", vec![hp("::1", 9)], Some("/x")),
            ("h:65535", vec![hp("h", 65535)], None),
        ];
        for (input, expected, chroot) in table {
            assert_eq!(&hosts(input), expected, "{input:?}");
            let parsed = ConnectString::parse(input).expect("valid");
            assert_eq!(parsed.chroot(), *chroot, "{input:?}");
            // Display round-trips.
            assert_eq!(ConnectString::parse(&parsed.to_string()), Ok(parsed));
        }
    }

    #[test]
    fn refuses_malformed_input_naming_the_part() {
        use ConnectStringError as E;
        let s = |v: &str| v.to_owned();
        let table = [
            ("", E::NoHosts { input: s("") }),
            (" , ,", E::NoHosts { input: s(" , ,") }),
            ("/app", E::NoHosts { input: s("/app") }),
            (":2181", E::EmptyHost { entry: s(":2181") }),
            (
                "[::1:2181",
                E::UnclosedBracket {
                    entry: s("[::1:2181"),
                },
            ),
            (
                "[]:2181",
                E::EmptyIpv6 {
                    entry: s("[]:2181"),
                },
            ),
            ("[::1]:", E::MissingPort { entry: s("[::1]:") }),
            (
                "[::1]2181",
                E::JunkAfterBracket {
                    entry: s("[::1]2181"),
                    rest: s("2181"),
                },
            ),
            (
                "h:abc",
                E::InvalidPort {
                    entry: s("h:abc"),
                    port: s("abc"),
                },
            ),
            (
                "h:0",
                E::InvalidPort {
                    entry: s("h:0"),
                    port: s("0"),
                },
            ),
            (
                "h:65536",
                E::InvalidPort {
                    entry: s("h:65536"),
                    port: s("65536"),
                },
            ),
            (
                "h:+80",
                E::InvalidPort {
                    entry: s("h:+80"),
                    port: s("+80"),
                },
            ),
            (
                "ok:1,h:-1",
                E::InvalidPort {
                    entry: s("h:-1"),
                    port: s("-1"),
                },
            ),
            ("::1", E::UnbracketedIpv6 { entry: s("::1") }),
            (
                "fe80::1:2181",
                E::UnbracketedIpv6 {
                    entry: s("fe80::1:2181"),
                },
            ),
        ];
        for (input, expected) in table {
            assert_eq!(ConnectString::parse(input), Err(expected), "{input:?}");
        }
        for chroot in ["/app/", "/a//b", "/a/./b", "/a/..", "/a\u{1}"] {
            let input = format!("h{chroot}");
            let err = ConnectString::parse(&input).expect_err("invalid chroot");
            assert!(
                matches!(&err, E::InvalidChroot { chroot: c, .. } if c == chroot),
                "{input:?}: {err:?}"
            );
        }
        let message = ConnectString::parse("a:1,b:x")
            .expect_err("bad port")
            .to_string();
        assert_eq!(message, "host entry \"b:x\" has invalid port \"x\"");
    }

    #[test]
    fn prefix_and_strip_chroot() {
        let cs = ConnectString::parse("h/app").expect("valid");
        assert_eq!(cs.prefix_path("/"), "/app");
        assert_eq!(cs.prefix_path("/a/b"), "/app/a/b");
        assert_eq!(cs.strip_path("/app"), Some("/"));
        assert_eq!(cs.strip_path("/app/a"), Some("/a"));
        assert_eq!(cs.strip_path("/apple"), None);
        assert_eq!(cs.strip_path("/other"), None);
        let plain = ConnectString::parse("h").expect("valid");
        assert_eq!(plain.prefix_path("/a"), "/a");
        assert_eq!(plain.strip_path("/a"), Some("/a"));
    }
}
