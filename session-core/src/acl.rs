//! Access control lists: ZooKeeper's permissions, its built-in schemes
//! (`world`, `auth`, `digest`, `ip`, `super`) and the two rules every server
//! applies, [`check_acl`] before an operation and [`fixup_acl`] on the list a
//! create or setACL gives.
//!
//! A connection holds the [`Id`]s it authenticated as: `ip:<address>` from
//! the moment it connects, then one per successful addAuth (`digest:user:hash`
//! for a `digest` credential). Ids belong to the connection, not the
//! session: a client sends its credentials again after every reconnect, as
//! ZooKeeper's clients do. Turning a credential into an id (the digest's
//! SHA-1) is the server's job; this module only compares ids.

use std::net::IpAddr;

use thiserror::Error;

/// ZooKeeper's permission bits (`ZooDefs.Perms`).
pub mod perms {
    /// Read the data and list the children.
    pub const READ: u32 = 1;
    /// Set the data.
    pub const WRITE: u32 = 2;
    /// Create children.
    pub const CREATE: u32 = 4;
    /// Delete children.
    pub const DELETE: u32 = 8;
    /// Set the ACL.
    pub const ADMIN: u32 = 16;
    /// Every permission.
    pub const ALL: u32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// An identity under a scheme: `world:anyone`, `ip:10.0.0.0/8`,
/// `digest:alice:<base64 SHA-1>`, ...
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Id {
    /// The scheme: `world`, `auth`, `digest`, `ip` or `super`.
    pub scheme: String,
    /// The identity within the scheme.
    pub id: String,
}

impl Id {
    /// An id from its two parts.
    #[must_use]
    pub fn new(scheme: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            scheme: scheme.into(),
            id: id.into(),
        }
    }

    /// `world:anyone`: everybody.
    #[must_use]
    pub fn anyone() -> Self {
        Self::new("world", "anyone")
    }

    /// `ip:<address>`, the id every connection holds from its peer address.
    #[must_use]
    pub fn ip(address: IpAddr) -> Self {
        Self::new("ip", address.to_string())
    }

    /// Whether this id counts as authenticated for the `auth` scheme (every
    /// scheme but `ip` and `world`, as ZooKeeper's providers say).
    #[must_use]
    pub fn is_authenticated(&self) -> bool {
        !matches!(self.scheme.as_str(), "ip" | "world")
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.scheme, self.id)
    }
}

/// One entry of a node's access control list: these permissions to this id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Acl {
    /// The [`perms`] granted, or-ed.
    pub perms: u32,
    /// To whom.
    pub id: Id,
}

impl Acl {
    /// An entry.
    #[must_use]
    pub fn new(perms: u32, id: Id) -> Self {
        Self { perms, id }
    }

    /// ZooKeeper's `OPEN_ACL_UNSAFE`: every permission to `world:anyone`,
    /// the list a node gets when the client names none (the v1 protocol).
    #[must_use]
    pub fn open() -> Vec<Acl> {
        vec![Self::new(perms::ALL, Id::anyone())]
    }

    /// ZooKeeper's `READ_ACL_UNSAFE`: read to `world:anyone`.
    #[must_use]
    pub fn read_only() -> Vec<Acl> {
        vec![Self::new(perms::READ, Id::anyone())]
    }

    /// ZooKeeper's `CREATOR_ALL_ACL`: every permission to the ids the
    /// creating connection authenticated as (expanded by [`fixup_acl`]).
    #[must_use]
    pub fn creator_all() -> Vec<Acl> {
        vec![Self::new(perms::ALL, Id::new("auth", ""))]
    }
}

/// Why [`fixup_acl`] refused a list: ZooKeeper's `INVALIDACL`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AclError {
    /// The list is empty.
    #[error("an ACL needs at least one entry")]
    Empty,
    /// An `auth` entry, and the connection authenticated as nobody.
    #[error("the ACL names scheme auth, and this connection has not authenticated")]
    NotAuthenticated,
    /// An id the scheme does not accept, or a scheme this server does not
    /// know.
    #[error("invalid ACL entry {id}: {reason}")]
    Invalid {
        /// The entry's id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Permission bits outside [`perms::ALL`].
    #[error("invalid ACL permissions {perms:#x} for {id}")]
    BadPerms {
        /// The entry's id.
        id: String,
        /// The bits given.
        perms: u32,
    },
}

/// Whether a connection holding `ids` may do what `wanted` names (one or
/// several [`perms`] bits: any one of them is enough) on a node whose list
/// is `acl`, by ZooKeeper's `checkACL`: an empty list allows everything, as
/// does a `super` id; otherwise some entry must grant one of the bits to
/// `world:anyone` or to one of the ids (`ip` entries match an address or a
/// network `address/bits`; other schemes compare the id exactly).
///
/// ```
/// use session_core::{Acl, Id, check_acl, perms};
///
/// let acl = vec![Acl::new(perms::READ, Id::new("digest", "alice:digest-of-alice-password"))];
/// let alice = [Id::new("ip", "127.0.0.1"), Id::new("digest", "alice:digest-of-alice-password")];
/// assert!(check_acl(&acl, perms::READ, &alice));
/// assert!(!check_acl(&acl, perms::WRITE, &alice));
/// assert!(!check_acl(&acl, perms::READ, &[Id::new("ip", "127.0.0.1")]));
/// ```
#[must_use]
pub fn check_acl(acl: &[Acl], wanted: u32, ids: &[Id]) -> bool {
    if acl.is_empty() || ids.iter().any(|id| id.scheme == "super") {
        return true;
    }
    acl.iter().any(|entry| {
        entry.perms & wanted != 0
            && ((entry.id.scheme == "world" && entry.id.id == "anyone")
                || ids.iter().any(|held| matches(&entry.id, held)))
    })
}

/// Whether `acl` grants one of `wanted` to `world:anyone`, so that no id is
/// needed to pass [`check_acl`].
#[must_use]
pub fn open_to_anyone(acl: &[Acl], wanted: u32) -> bool {
    acl.is_empty()
        || acl.iter().any(|entry| {
            entry.perms & wanted != 0 && entry.id.scheme == "world" && entry.id.id == "anyone"
        })
}

fn matches(entry: &Id, held: &Id) -> bool {
    if entry.scheme != held.scheme {
        return false;
    }
    if entry.scheme == "ip" {
        let Ok(address) = held.id.parse::<IpAddr>() else {
            return false;
        };
        return ip_network(&entry.id)
            .is_some_and(|(network, bits)| in_network(address, network, bits));
    }
    entry.id == held.id
}

/// `address` or `address/bits`, IPv4 or IPv6.
fn ip_network(id: &str) -> Option<(IpAddr, u32)> {
    let (address, bits) = match id.split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u32>().ok()?)),
        None => (id, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((address, bits))
}

fn in_network(address: IpAddr, network: IpAddr, bits: u32) -> bool {
    match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The list a node is given, from the list a create or setACL asked for and
/// the ids of the connection asking (ZooKeeper's `fixupACL`): duplicates
/// dropped, each `auth` entry replaced by one entry per authenticated id of
/// the connection (same permissions), every other entry checked against its
/// scheme: `world` only with `anyone`, `digest` as `user:hash` (one colon),
/// `ip` as an address or `address/bits`, `super` never (it is held, not
/// granted).
///
/// ```
/// use session_core::{Acl, AclError, Id, fixup_acl, perms};
///
/// let alice = [Id::new("ip", "127.0.0.1"), Id::new("digest", "alice:hash")];
/// let fixed = fixup_acl(&Acl::creator_all(), &alice)?;
/// assert_eq!(fixed, vec![Acl::new(perms::ALL, Id::new("digest", "alice:hash"))]);
/// assert_eq!(fixup_acl(&Acl::creator_all(), &alice[..1]), Err(AclError::NotAuthenticated));
/// assert_eq!(fixup_acl(&[], &alice), Err(AclError::Empty));
/// # Ok::<(), AclError>(())
/// ```
///
/// # Errors
/// [`AclError`]: ZooKeeper's `INVALIDACL`.
pub fn fixup_acl(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, AclError> {
    if acl.is_empty() {
        return Err(AclError::Empty);
    }
    let mut fixed: Vec<Acl> = Vec::with_capacity(acl.len());
    let mut push = |entry: Acl| {
        if !fixed.contains(&entry) {
            fixed.push(entry);
        }
    };
    for entry in acl {
        if entry.perms & !perms::ALL != 0 {
            return Err(AclError::BadPerms {
                id: entry.id.to_string(),
                perms: entry.perms,
            });
        }
        let invalid = |reason| AclError::Invalid {
            id: entry.id.to_string(),
            reason,
        };
        match entry.id.scheme.as_str() {
            "world" if entry.id.id == "anyone" => push(entry.clone()),
            "world" => return Err(invalid("the world scheme has only the id anyone")),
            "auth" => {
                let mut any = false;
                for id in ids.iter().filter(|id| id.is_authenticated()) {
                    any = true;
                    push(Acl::new(entry.perms, id.clone()));
                }
                if !any {
                    return Err(AclError::NotAuthenticated);
                }
            }
            "digest" if entry.id.id.matches(':').count() == 1 => push(entry.clone()),
            "digest" => return Err(invalid("a digest id is user:base64-sha1")),
            "ip" if ip_network(&entry.id.id).is_some() => push(entry.clone()),
            "ip" => return Err(invalid("an ip id is an address or address/bits")),
            _ => return Err(invalid("unknown scheme")),
        }
    }
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    //! The rules of zookeeper-wire.md §9 (ACLs and authentication).
    use super::*;

    fn ids(list: &[(&str, &str)]) -> Vec<Id> {
        list.iter().map(|(s, i)| Id::new(*s, *i)).collect()
    }

    #[test]
    fn an_empty_list_and_super_allow_everything() {
        assert!(check_acl(&[], perms::ALL, &[]));
        let acl = vec![Acl::new(perms::READ, Id::new("digest", "a:b"))];
        assert!(!check_acl(&acl, perms::WRITE, &ids(&[("digest", "a:b")])));
        assert!(check_acl(&acl, perms::WRITE, &ids(&[("super", "")])));
    }

    #[test]
    fn one_of_two_wanted_bits_is_enough() {
        let acl = vec![Acl::new(perms::ADMIN, Id::anyone())];
        assert!(check_acl(&acl, perms::READ | perms::ADMIN, &[]));
        assert!(!check_acl(&acl, perms::READ, &[]));
        assert!(open_to_anyone(&acl, perms::ADMIN));
        assert!(!open_to_anyone(&acl, perms::READ));
    }

    #[test]
    fn ip_entries_match_addresses_and_networks() {
        let acl = vec![
            Acl::new(perms::READ, Id::new("ip", "10.1.0.0/16")),
            Acl::new(perms::WRITE, Id::new("ip", "::1")),
        ];
        assert!(check_acl(&acl, perms::READ, &ids(&[("ip", "10.1.200.3")])));
        assert!(!check_acl(&acl, perms::READ, &ids(&[("ip", "10.2.0.1")])));
        assert!(check_acl(&acl, perms::WRITE, &ids(&[("ip", "::1")])));
        assert!(!check_acl(&acl, perms::WRITE, &ids(&[("ip", "127.0.0.1")])));
        assert!(!check_acl(
            &acl,
            perms::READ,
            &ids(&[("ip", "not an address")])
        ));
        let all = vec![Acl::new(perms::READ, Id::new("ip", "0.0.0.0/0"))];
        assert!(check_acl(&all, perms::READ, &ids(&[("ip", "192.168.1.1")])));
    }

    #[test]
    fn fixup_expands_auth_drops_duplicates_and_refuses_bad_entries() {
        let held = ids(&[("ip", "127.0.0.1"), ("digest", "u:h"), ("digest", "v:k")]);
        let asked = vec![
            Acl::new(perms::ALL, Id::new("auth", "")),
            Acl::new(perms::READ, Id::anyone()),
            Acl::new(perms::READ, Id::anyone()),
        ];
        assert_eq!(
            fixup_acl(&asked, &held).expect("as set up"),
            vec![
                Acl::new(perms::ALL, Id::new("digest", "u:h")),
                Acl::new(perms::ALL, Id::new("digest", "v:k")),
                Acl::new(perms::READ, Id::anyone()),
            ]
        );
        for bad in [
            Acl::new(perms::READ, Id::new("world", "someone")),
            Acl::new(perms::READ, Id::new("digest", "no-colon")),
            Acl::new(perms::READ, Id::new("digest", "a:b:c")),
            Acl::new(perms::READ, Id::new("ip", "10.0.0.0/33")),
            Acl::new(perms::READ, Id::new("kerberos", "x")),
            Acl::new(perms::READ, Id::new("super", "x")),
        ] {
            assert!(
                matches!(
                    fixup_acl(std::slice::from_ref(&bad), &held),
                    Err(AclError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            fixup_acl(&[Acl::new(64, Id::anyone())], &held),
            Err(AclError::BadPerms { perms: 64, .. })
        ));
    }
}
