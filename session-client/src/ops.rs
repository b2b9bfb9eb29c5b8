//! What an operation takes beyond a path, and what the compound ones give
//! back: [`CreateOptions`] (mode and access control list), the writes of a
//! [`multi`](crate::Client::multi) ([`Op`] → [`OpOutcome`]) and the reads of
//! a [`multi_read`](crate::Client::multi_read) ([`ReadOp`] →
//! [`ReadOutcome`]), with their conversion to the wire.

use bytes::Bytes;
use session_core::{
    Acl, ConnectString, CreateMode, NodeKind, Stat, validate_path, validate_sequential_prefix,
};
use session_wire::v1::{self as wire, multi_op, multi_op_result, read_op, read_op_result};

use crate::Error;
use crate::types::{acl_to_wire, opt_stat};

/// How [`Client::create_with`](crate::Client::create_with) (or a
/// [`Op::create_with`] in a multi) creates a node: its [`CreateMode`] and its
/// access control list.
///
/// The mode covers every kind ZooKeeper has: persistent and ephemeral,
/// sequential or not, [`CreateMode::Container`] (deleted by the server once
/// its last child is gone) and [`CreateMode::PersistentWithTtl`] /
/// [`CreateMode::PersistentSequentialWithTtl`] (deleted once childless and
/// unchanged for the TTL). No list, the default, leaves the node open to
/// anyone (`world:anyone`, every permission).
///
/// ```
/// use session_client::{Acl, CreateMode, CreateOptions, Id, perms};
///
/// // Readable by anyone, everything else only for the identities this
/// // connection authenticated as (with `add_auth`).
/// let options = CreateOptions::new(CreateMode::PersistentWithTtl { ttl_ms: 60_000 })
///     .acl(vec![
///         Acl::new(perms::READ, Id::anyone()),
///         Acl::new(perms::ALL, Id::new("auth", "")),
///     ]);
/// assert_eq!(options.mode(), CreateMode::PersistentWithTtl { ttl_ms: 60_000 });
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    mode: CreateMode,
    acl: Vec<Acl>,
}

impl CreateOptions {
    /// A node of `mode`, open to anyone.
    #[must_use]
    pub fn new(mode: CreateMode) -> Self {
        Self {
            mode,
            acl: Vec::new(),
        }
    }

    /// The node's access control list, by ZooKeeper's rules: an `auth`
    /// entry (`Id::new("auth", "")`, as in [`Acl::creator_all`]) stands for
    /// every identity this connection authenticated as; `digest` ids are
    /// `user:base64(SHA-1("user:password"))`; `ip` ids are an address or
    /// `address/bits`. An empty list means open to anyone. A list the server
    /// cannot store fails the create with [`Error::InvalidAcl`].
    #[must_use]
    pub fn acl(mut self, acl: Vec<Acl>) -> Self {
        self.acl = acl;
        self
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> CreateMode {
        self.mode
    }

    /// The access control list given (empty: open to anyone).
    #[must_use]
    pub fn acl_list(&self) -> &[Acl] {
        &self.acl
    }
}

impl From<CreateMode> for CreateOptions {
    fn from(mode: CreateMode) -> Self {
        Self::new(mode)
    }
}

/// The wire Create for a client path, the chroot prepended; the path is
/// checked first (as a name prefix when sequential).
pub(crate) fn create_request(
    servers: &ConnectString,
    path: &str,
    data: Bytes,
    options: &CreateOptions,
) -> Result<wire::Create, Error> {
    let mode = options.mode;
    if mode.is_sequential() {
        validate_sequential_prefix(path).map_err(|err| invalid(path, &err))?;
    } else {
        validate_path(path).map_err(|err| invalid(path, &err))?;
    }
    let (kind, ttl_ms) = match mode.kind() {
        NodeKind::Persistent => (wire::NodeKind::Persistent, 0),
        NodeKind::Ephemeral => (wire::NodeKind::Ephemeral, 0),
        NodeKind::Container => (wire::NodeKind::Container, 0),
        NodeKind::Ttl { ttl_ms } => (wire::NodeKind::Ttl, ttl_ms),
    };
    Ok(wire::Create {
        path: servers.prefix_path(path),
        data,
        kind: kind.into(),
        sequential: mode.is_sequential(),
        acl: options.acl.iter().map(acl_to_wire).collect(),
        ttl_ms,
    })
}

pub(crate) fn invalid(path: &str, error: &session_core::PathError) -> Error {
    Error::InvalidPath {
        path: path.to_owned(),
        detail: error.to_string(),
    }
}

/// A client path, checked, with the chroot prepended.
pub(crate) fn server_path(servers: &ConnectString, path: &str) -> Result<String, Error> {
    validate_path(path).map_err(|err| invalid(path, &err))?;
    Ok(servers.prefix_path(path))
}

/// One write of a [`Client::multi`](crate::Client::multi): the operations
/// of a multi are applied all together, in order, or not at all.
///
/// ```
/// use session_client::{CreateMode, Op};
///
/// let ops = vec![
///     Op::check("/config", Some(3)),
///     Op::create("/config/next", b"v4".to_vec(), CreateMode::Persistent),
///     Op::set_data("/config", b"moved".to_vec(), Some(3)),
///     Op::delete("/config/old", None),
/// ];
/// assert_eq!(ops[1].path(), "/config/next");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Create a node, as [`Client::create_with`](crate::Client::create_with).
    Create {
        /// The path (the name prefix when sequential).
        path: String,
        /// The initial data.
        data: Bytes,
        /// Mode and access control list.
        options: CreateOptions,
    },
    /// Delete a node without children, as
    /// [`Client::delete`](crate::Client::delete).
    Delete {
        /// The path.
        path: String,
        /// `Some(v)`: only if the node is at version `v`.
        version: Option<i32>,
    },
    /// Replace a node's data, as [`Client::set`](crate::Client::set).
    SetData {
        /// The path.
        path: String,
        /// The new data.
        data: Bytes,
        /// `Some(v)`: only if the node is at version `v`.
        version: Option<i32>,
    },
    /// Fail the whole multi unless the node exists (at data version `v`
    /// when `Some(v)`). Needs READ on the node.
    Check {
        /// The path.
        path: String,
        /// `Some(v)`: the data version the node must be at.
        version: Option<i32>,
    },
}

impl Op {
    /// Create a node of `mode`, open to anyone.
    #[must_use]
    pub fn create(path: impl Into<String>, data: impl Into<Bytes>, mode: CreateMode) -> Self {
        Self::create_with(path, data, CreateOptions::new(mode))
    }

    /// Create a node with `options` (mode and access control list).
    #[must_use]
    pub fn create_with(
        path: impl Into<String>,
        data: impl Into<Bytes>,
        options: CreateOptions,
    ) -> Self {
        Self::Create {
            path: path.into(),
            data: data.into(),
            options,
        }
    }

    /// Delete a node; `Some(v)`: only at version `v`.
    #[must_use]
    pub fn delete(path: impl Into<String>, version: Option<i32>) -> Self {
        Self::Delete {
            path: path.into(),
            version,
        }
    }

    /// Replace a node's data; `Some(v)`: only at version `v`.
    #[must_use]
    pub fn set_data(path: impl Into<String>, data: impl Into<Bytes>, version: Option<i32>) -> Self {
        Self::SetData {
            path: path.into(),
            data: data.into(),
            version,
        }
    }

    /// Check that a node exists; `Some(v)`: at data version `v`.
    #[must_use]
    pub fn check(path: impl Into<String>, version: Option<i32>) -> Self {
        Self::Check {
            path: path.into(),
            version,
        }
    }

    /// The path the operation names (as the client sees it).
    #[must_use]
    pub fn path(&self) -> &str {
        match self {
            Self::Create { path, .. }
            | Self::Delete { path, .. }
            | Self::SetData { path, .. }
            | Self::Check { path, .. } => path,
        }
    }

    pub(crate) fn to_wire(&self, servers: &ConnectString) -> Result<wire::MultiOp, Error> {
        let op = match self {
            Self::Create {
                path,
                data,
                options,
            } => multi_op::Op::Create(create_request(servers, path, data.clone(), options)?),
            Self::Delete { path, version } => multi_op::Op::Delete(wire::Delete {
                path: server_path(servers, path)?,
                expected_version: *version,
            }),
            Self::SetData {
                path,
                data,
                version,
            } => multi_op::Op::SetData(wire::SetData {
                path: server_path(servers, path)?,
                data: data.clone(),
                expected_version: *version,
            }),
            Self::Check { path, version } => multi_op::Op::Check(wire::Check {
                path: server_path(servers, path)?,
                expected_version: *version,
            }),
        };
        Ok(wire::MultiOp { op: Some(op) })
    }
}

/// What one operation of an applied multi did, in the order of the
/// [`Op`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpOutcome {
    /// [`Op::Create`]: the node's path (with its sequence number when
    /// sequential, chroot removed) and stat.
    Created {
        /// The created node's path.
        path: String,
        /// Its stat.
        stat: Stat,
    },
    /// [`Op::Delete`]: the node is gone.
    Deleted,
    /// [`Op::SetData`]: the node's stat after the change.
    DataSet {
        /// The new stat.
        stat: Stat,
    },
    /// [`Op::Check`]: the node was as expected.
    Checked,
}

/// One read of a [`Client::multi_read`](crate::Client::multi_read). It
/// leaves no watch.
///
/// ```
/// use session_client::ReadOp;
///
/// let reads = vec![ReadOp::get_data("/config"), ReadOp::get_children("/services")];
/// assert_eq!(reads[1].path(), "/services");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadOp {
    /// A node's data and stat, as [`Client::get`](crate::Client::get).
    GetData {
        /// The path.
        path: String,
    },
    /// A node's children, as [`Client::children`](crate::Client::children).
    GetChildren {
        /// The path.
        path: String,
    },
}

impl ReadOp {
    /// Read a node's data and stat.
    #[must_use]
    pub fn get_data(path: impl Into<String>) -> Self {
        Self::GetData { path: path.into() }
    }

    /// List a node's children.
    #[must_use]
    pub fn get_children(path: impl Into<String>) -> Self {
        Self::GetChildren { path: path.into() }
    }

    /// The path the read names (as the client sees it).
    #[must_use]
    pub fn path(&self) -> &str {
        match self {
            Self::GetData { path } | Self::GetChildren { path } => path,
        }
    }

    pub(crate) fn to_wire(&self, servers: &ConnectString) -> Result<wire::ReadOp, Error> {
        let op = match self {
            Self::GetData { path } => read_op::Op::GetData(wire::GetData {
                path: server_path(servers, path)?,
                watch: false,
            }),
            Self::GetChildren { path } => read_op::Op::GetChildren(wire::GetChildren {
                path: server_path(servers, path)?,
                watch: false,
            }),
        };
        Ok(wire::ReadOp { op: Some(op) })
    }
}

/// What one read of a multi-read found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadOutcome {
    /// [`ReadOp::GetData`]: the node's data and stat.
    Data {
        /// The data.
        data: Bytes,
        /// The stat.
        stat: Stat,
    },
    /// [`ReadOp::GetChildren`]: the names of the node's children, sorted,
    /// and its stat.
    Children {
        /// The children's names.
        children: Vec<String>,
        /// The stat.
        stat: Stat,
    },
}

/// The error of one operation of a multi or a multi-read, its detail naming
/// the operation's path.
pub(crate) fn op_error(error: wire::OpError, path: &str) -> Error {
    let detail = if error.detail.is_empty() {
        path.to_owned()
    } else {
        format!("{path}: {}", error.detail)
    };
    Error::from_op(
        wire::OpError {
            code: error.code,
            detail,
        },
        path,
    )
}

/// The outcome of an applied multi's operation; `client_path` removes the
/// chroot from a created node's path.
pub(crate) fn op_outcome(
    result: multi_op_result::Result,
    client_path: impl Fn(&str) -> String,
) -> Result<OpOutcome, Error> {
    Ok(match result {
        multi_op_result::Result::Create(created) => OpOutcome::Created {
            path: client_path(&created.path),
            stat: opt_stat(created.stat),
        },
        multi_op_result::Result::Delete(_) => OpOutcome::Deleted,
        multi_op_result::Result::SetData(set) => OpOutcome::DataSet {
            stat: opt_stat(set.stat),
        },
        multi_op_result::Result::Check(_) => OpOutcome::Checked,
        multi_op_result::Result::Error(error) => {
            return Err(Error::System {
                detail: format!("an applied multi has an error result: {error:?}"),
            });
        }
    })
}

/// The outcome of one read of a multi-read.
pub(crate) fn read_outcome(
    result: Option<read_op_result::Result>,
    path: &str,
) -> Result<ReadOutcome, Error> {
    match result {
        Some(read_op_result::Result::GetData(got)) => Ok(ReadOutcome::Data {
            data: got.data,
            stat: opt_stat(got.stat),
        }),
        Some(read_op_result::Result::GetChildren(got)) => Ok(ReadOutcome::Children {
            children: got.children,
            stat: opt_stat(got.stat),
        }),
        Some(read_op_result::Result::Error(error)) => Err(op_error(error, path)),
        None => Err(Error::System {
            detail: format!("the read of {path} has a result this client does not know"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use session_core::{Id, perms};
    use session_wire::v1::ErrorCode;

    use super::*;

    fn chrooted() -> ConnectString {
        ConnectString::parse("127.0.0.1:7181/app").expect("a valid connect string")
    }

    #[test]
    fn every_mode_goes_out_as_a_kind_a_flag_and_a_ttl() {
        let servers = chrooted();
        for (mode, kind, sequential, ttl_ms) in [
            (CreateMode::Persistent, wire::NodeKind::Persistent, false, 0),
            (
                CreateMode::EphemeralSequential,
                wire::NodeKind::Ephemeral,
                true,
                0,
            ),
            (CreateMode::Container, wire::NodeKind::Container, false, 0),
            (
                CreateMode::PersistentWithTtl { ttl_ms: 7 },
                wire::NodeKind::Ttl,
                false,
                7,
            ),
            (
                CreateMode::PersistentSequentialWithTtl { ttl_ms: 9 },
                wire::NodeKind::Ttl,
                true,
                9,
            ),
        ] {
            let create = create_request(
                &servers,
                "/n",
                Bytes::from_static(b"d"),
                &CreateOptions::new(mode),
            )
            .expect("a valid create");
            assert_eq!(create.path, "/app/n");
            assert_eq!(
                (create.kind(), create.sequential, create.ttl_ms),
                (kind, sequential, ttl_ms),
                "{mode:?}"
            );
            assert!(create.acl.is_empty(), "open to anyone unless asked");
        }
        let options = CreateOptions::new(CreateMode::Persistent)
            .acl(vec![Acl::new(perms::READ, Id::anyone())]);
        let create = create_request(&servers, "/n", Bytes::new(), &options).expect("valid");
        assert_eq!(
            create.acl,
            vec![acl_to_wire(&Acl::new(perms::READ, Id::anyone()))]
        );

        // A sequential name may end in a slash; a plain path may not.
        assert!(
            create_request(
                &servers,
                "/q/",
                Bytes::new(),
                &CreateMode::PersistentSequential.into()
            )
            .is_ok()
        );
        assert!(matches!(
            create_request(&servers, "/q/", Bytes::new(), &CreateOptions::default()),
            Err(Error::InvalidPath { .. })
        ));
    }

    #[test]
    fn multi_ops_carry_their_paths_with_the_chroot() {
        let servers = chrooted();
        let op = Op::check("/a", Some(2)).to_wire(&servers).expect("valid");
        assert_eq!(
            op.op,
            Some(multi_op::Op::Check(wire::Check {
                path: "/app/a".to_owned(),
                expected_version: Some(2),
            }))
        );
        assert!(matches!(
            Op::delete("a", None).to_wire(&servers),
            Err(Error::InvalidPath { .. })
        ));
        let read = ReadOp::get_children("/").to_wire(&servers).expect("valid");
        assert_eq!(
            read.op,
            Some(read_op::Op::GetChildren(wire::GetChildren {
                path: "/app".to_owned(),
                watch: false,
            }))
        );
    }

    #[test]
    fn an_operations_error_names_its_path() {
        let error = op_error(
            wire::OpError {
                code: ErrorCode::NoNode.into(),
                detail: String::new(),
            },
            "/a/b",
        );
        assert_eq!(
            error,
            Error::NoNode {
                detail: "/a/b".to_owned()
            }
        );
        let error = op_error(
            wire::OpError {
                code: ErrorCode::NoAuth.into(),
                detail: "no READ".to_owned(),
            },
            "/a",
        );
        assert_eq!(
            error,
            Error::NoAuth {
                detail: "/a: no READ".to_owned()
            }
        );
    }
}
