//! The one error type of every client call, with what the caller should do.

use std::time::Duration;

use session_core::ConnectStringError;
use session_wire::v1::{ErrorCode, OpError};

use crate::{TlsConfigError, TlsFailure};

/// Why a client call failed.
///
/// The connection-level variants say what happened to the session; the
/// namespace variants carry the server's explanation (`detail`), which names
/// the offending path or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection to the server dropped (or the client is reconnecting)
    /// before the answer came. The session is probably still alive: wait
    /// until [`Client::state`](crate::Client::state) is `Connected` again and
    /// retry. A write may or may not have been applied; read before retrying
    /// one that is not idempotent.
    #[error("connection to the server lost; the request may or may not have been applied")]
    ConnectionLoss,
    /// The session has expired (a server said so, or no server answered for
    /// 4/3 of the timeout). Its ephemeral nodes and watches are gone, and
    /// every later call fails the same way: build a new client.
    #[error("the session has expired")]
    SessionExpired,
    /// A server refused the session's password. Terminal: build a new client
    /// (with a new session, or the right password).
    #[error("the server refused the session password")]
    AuthFailed,
    /// The client was closed with [`Client::close`](crate::Client::close).
    /// Build a new client if you need one.
    #[error("the client is closed")]
    Closed,
    /// No session was established within the connect deadline
    /// ([`ClientBuilder::connect_timeout`](crate::ClientBuilder::connect_timeout)),
    /// or the client was not connected within the time given to
    /// [`Client::wait_connected`](crate::Client::wait_connected). Check that
    /// a server listens at the given addresses, then retry.
    #[error("no session established within {after:?}{}", last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Timeout {
        /// The deadline that passed.
        after: Duration,
        /// The last connection error seen, if any.
        last_error: Option<String>,
    },
    /// No answer came within the request's deadline
    /// ([`ClientBuilder::request_timeout`](crate::ClientBuilder::request_timeout)
    /// or [`Client::with_timeout`](crate::Client::with_timeout)). The
    /// connection and the session are unaffected; the request may or may not
    /// have been applied, as after [`ConnectionLoss`](Self::ConnectionLoss).
    #[error("no answer within {after:?}; the request may or may not have been applied")]
    RequestTimeout {
        /// The deadline that passed.
        after: Duration,
    },
    /// The connect string cannot be parsed. Fix the configuration.
    #[error("invalid connect string: {0}")]
    InvalidConnectString(#[from] ConnectStringError),
    /// TLS cannot be used as configured: a `tls://` connect string without
    /// a CA to trust, or a build without the `tls` feature. Returned by
    /// [`ClientBuilder::connect`](crate::ClientBuilder::connect) at once.
    /// Fix the configuration.
    #[error("TLS misconfigured: {0}")]
    TlsConfig(#[from] TlsConfigError),
    /// TLS with `server` failed: its certificate did not verify (unknown
    /// issuer, expired, not valid for the name dialed), it refused ours
    /// (or wanted one and got none), or it does not speak TLS. Not a
    /// network failure, and not retried as one:
    /// [`ClientBuilder::connect`](crate::ClientBuilder::connect) returns it
    /// as soon as every server of the connect string has failed so, and a
    /// client with a session skips such a server; when every server fails
    /// so, the session ends (the state becomes `Closed`) and every call
    /// fails with this error. Fix the certificates or the CA given.
    #[error("TLS with {server} failed: {reason}")]
    Tls {
        /// The server dialed (`host:port` from the connect string).
        server: String,
        /// What went wrong.
        reason: TlsFailure,
    },
    /// The node does not exist (for `create`, its parent does not). Create it
    /// (or its parent) first, or treat it as absent.
    #[error("no node: {detail}")]
    NoNode {
        /// The server's explanation.
        detail: String,
    },
    /// The node already exists. Use it, or pick another name (a sequential
    /// node never collides).
    #[error("node exists: {detail}")]
    NodeExists {
        /// The server's explanation.
        detail: String,
    },
    /// The expected version does not match: someone else changed the node.
    /// Read it again and retry with the new version.
    #[error("bad version: {detail}")]
    BadVersion {
        /// The server's explanation.
        detail: String,
    },
    /// The node has children and cannot be deleted. Delete the children first.
    #[error("node not empty: {detail}")]
    NotEmpty {
        /// The server's explanation.
        detail: String,
    },
    /// Ephemeral nodes cannot have children. Make the parent persistent.
    #[error("ephemeral nodes cannot have children: {detail}")]
    NoChildrenForEphemerals {
        /// The server's explanation.
        detail: String,
    },
    /// The path breaks the path rules (starts with `/`, no trailing `/`, no
    /// empty, `.` or `..` component, no control character). Fix the path.
    #[error("invalid path {path:?}: {detail}")]
    InvalidPath {
        /// The path as the caller gave it (or as the server saw it).
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The path, data or frame is larger than the server allows. Send less.
    #[error("too large: {detail}")]
    TooLarge {
        /// The server's explanation.
        detail: String,
    },
    /// The session owns as many ephemeral nodes as the server allows. Delete
    /// some, or spread them over several sessions.
    #[error("too many ephemerals: {detail}")]
    TooManyEphemerals {
        /// The server's explanation.
        detail: String,
    },
    /// The session holds as many watches as the server allows (or a
    /// re-registration named more paths than it takes at once). Nothing was
    /// registered; read without a watch, or drop some watches.
    #[error("too many watches: {detail}")]
    TooManyWatches {
        /// The server's explanation.
        detail: String,
    },
    /// The namespace holds as many nodes, or bytes of data, as the server
    /// allows. Nothing was written; delete something first.
    #[error("quota exceeded: {detail}")]
    QuotaExceeded {
        /// The server's explanation.
        detail: String,
    },
    /// The server cannot write now (its disk refuses writes): nothing was
    /// written. Reads and heartbeats still work; retry later, or on another
    /// server.
    #[error("server unavailable for writes: {detail}")]
    Unavailable {
        /// The server's explanation.
        detail: String,
    },
    /// The node's access control list does not grant this connection the
    /// permission the operation needs (READ to read, WRITE to set, CREATE or
    /// DELETE on the parent, ADMIN to set the ACL). Authenticate as an
    /// identity the list names ([`Client::add_auth`](crate::Client::add_auth)),
    /// or ask the node's owner.
    #[error("not authorized: {detail}")]
    NoAuth {
        /// The server's explanation.
        detail: String,
    },
    /// The access control list given to a create or
    /// [`set_acl`](crate::Client::set_acl) cannot be stored: empty (for
    /// `set_acl`), an unknown scheme, an id its scheme refuses (a `digest`
    /// id is `user:hash`), permission bits outside `perms::ALL`, or an `auth`
    /// entry on a connection that authenticated as nobody. Fix the list.
    #[error("invalid ACL: {detail}")]
    InvalidAcl {
        /// The server's explanation.
        detail: String,
    },
    /// [`Client::add_auth`](crate::Client::add_auth): the server does not
    /// know the scheme, or the scheme refused the credential. The credential
    /// is not kept. The server closes the connection after this answer (as
    /// ZooKeeper's does); the client reconnects to the same session by
    /// itself, so retry other calls once it is connected again. Unlike
    /// [`AuthFailed`](Self::AuthFailed), the session is not lost.
    #[error("credential refused: {detail}")]
    AuthRefused {
        /// The server's explanation.
        detail: String,
    },
    /// [`Client::remove_watches`](crate::Client::remove_watches): the
    /// session holds no watch of that type on that path.
    #[error("no such watch: {detail}")]
    NoWatcher {
        /// The server's explanation.
        detail: String,
    },
    /// A one-shot [`Watch`](crate::Watch) whose watch was removed by
    /// [`Client::remove_watches`](crate::Client::remove_watches) before it
    /// fired.
    #[error("the watch on {path} was removed")]
    WatchRemoved {
        /// The watched path, as the client sees it.
        path: String,
    },
    /// The server found the request malformed or does not implement it. A bug
    /// in this client or a version mismatch: do not retry.
    #[error("request refused by the server ({code:?}): {detail}")]
    Unsupported {
        /// The server's code (`BAD_ARGUMENTS` or `UNIMPLEMENTED`).
        code: ErrorCode,
        /// The server's explanation.
        detail: String,
    },
    /// An unexpected failure on the server, or an answer this client does not
    /// understand. Retrying may help; report it if it persists.
    #[error("server error: {detail}")]
    System {
        /// What went wrong.
        detail: String,
    },
}

impl Error {
    /// Whether retrying the same call later may succeed with the same
    /// client, and session: `ConnectionLoss`, `RequestTimeout`,
    /// `Unavailable`, `System`. These are what
    /// [`Client::retry`](crate::Client::retry) retries.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::ConnectionLoss
                | Self::RequestTimeout { .. }
                | Self::Unavailable { .. }
                | Self::System { .. }
        )
    }

    /// Whether the client can never be used again (`SessionExpired`,
    /// `AuthFailed`, `Closed`, `Tls`): build a new one.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::SessionExpired | Self::AuthFailed | Self::Closed | Self::Tls { .. }
        )
    }

    /// The error of a failed operation, `path` being the client-side path the
    /// operation named.
    pub(crate) fn from_op(error: OpError, path: &str) -> Self {
        let detail = error.detail.clone();
        match error.code() {
            ErrorCode::SessionExpired => Self::SessionExpired,
            // In a reply (never a handshake's): AddAuth's credential refused.
            ErrorCode::AuthFailed => Self::AuthRefused { detail },
            // The connection was stale; the client moves on (ZooKeeper closes it).
            ErrorCode::SessionMoved | ErrorCode::ServerShuttingDown => Self::ConnectionLoss,
            ErrorCode::NoNode => Self::NoNode { detail },
            ErrorCode::NodeExists => Self::NodeExists { detail },
            ErrorCode::BadVersion => Self::BadVersion { detail },
            ErrorCode::NotEmpty => Self::NotEmpty { detail },
            ErrorCode::NoChildrenForEphemerals => Self::NoChildrenForEphemerals { detail },
            ErrorCode::InvalidPath => Self::InvalidPath {
                path: path.to_owned(),
                detail,
            },
            ErrorCode::TooLarge => Self::TooLarge { detail },
            ErrorCode::TooManyEphemerals => Self::TooManyEphemerals { detail },
            ErrorCode::TooManyWatches => Self::TooManyWatches { detail },
            ErrorCode::QuotaExceeded => Self::QuotaExceeded { detail },
            ErrorCode::Unavailable => Self::Unavailable { detail },
            ErrorCode::NoAuth => Self::NoAuth { detail },
            ErrorCode::InvalidAcl => Self::InvalidAcl { detail },
            ErrorCode::NoWatcher => Self::NoWatcher { detail },
            code @ (ErrorCode::BadArguments | ErrorCode::Unimplemented) => {
                Self::Unsupported { code, detail }
            }
            // OK and RUNTIME_INCONSISTENCY mean something only in a failed
            // multi's results, which never reach here.
            ErrorCode::SystemError
            | ErrorCode::Unspecified
            | ErrorCode::Ok
            | ErrorCode::RuntimeInconsistency => Self::System { detail },
        }
    }
}

/// Why a [`Client::multi`](crate::Client::multi) failed.
///
/// ```no_run
/// # async fn run(client: session_client::Client) -> Result<(), session_client::Error> {
/// use session_client::{CreateMode, Error, MultiError, Op};
///
/// let ops = vec![
///     Op::create("/jobs/7", b"".to_vec(), CreateMode::Persistent),
///     Op::delete("/queue/7", Some(0)),
/// ];
/// match client.multi(ops).await {
///     Ok(outcomes) => println!("moved: {outcomes:?}"),
///     Err(MultiError::Failed { index, error: Error::BadVersion { .. } }) => {
///         println!("operation {index}: someone changed /queue/7; nothing applied")
///     }
///     Err(other) => return Err(other.into_error()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultiError {
    /// Operation `index` (counted from 0) failed with `error`, or this
    /// client refused its path before sending anything; nothing of the multi
    /// was applied.
    #[error("operation {index} of the multi failed, nothing was applied: {error}")]
    Failed {
        /// The failing operation's position in the list given.
        index: usize,
        /// Why it failed (its detail names the operation's path).
        #[source]
        error: Error,
    },
    /// The multi as a whole failed: the session errors, or
    /// [`Error::ConnectionLoss`], after which it may have been applied (all
    /// of it) or not (none of it).
    #[error(transparent)]
    Request(#[from] Error),
}

impl MultiError {
    /// The failing operation's position, for [`Failed`](Self::Failed).
    #[must_use]
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::Failed { index, .. } => Some(*index),
            Self::Request(_) => None,
        }
    }

    /// The error, of the failing operation or of the whole request.
    #[must_use]
    pub fn error(&self) -> &Error {
        match self {
            Self::Failed { error, .. } | Self::Request(error) => error,
        }
    }

    /// The error without the operation's position.
    #[must_use]
    pub fn into_error(self) -> Error {
        match self {
            Self::Failed { error, .. } | Self::Request(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(code: ErrorCode, detail: &str) -> OpError {
        OpError {
            code: code.into(),
            detail: detail.to_owned(),
        }
    }

    #[test]
    fn server_codes_map_to_variants_with_their_detail() {
        let cases = [
            (ErrorCode::NoNode, Error::NoNode { detail: "d".into() }),
            (
                ErrorCode::NodeExists,
                Error::NodeExists { detail: "d".into() },
            ),
            (
                ErrorCode::BadVersion,
                Error::BadVersion { detail: "d".into() },
            ),
            (ErrorCode::NotEmpty, Error::NotEmpty { detail: "d".into() }),
            (
                ErrorCode::NoChildrenForEphemerals,
                Error::NoChildrenForEphemerals { detail: "d".into() },
            ),
            (
                ErrorCode::InvalidPath,
                Error::InvalidPath {
                    path: "/p".into(),
                    detail: "d".into(),
                },
            ),
            (ErrorCode::TooLarge, Error::TooLarge { detail: "d".into() }),
            (
                ErrorCode::TooManyEphemerals,
                Error::TooManyEphemerals { detail: "d".into() },
            ),
            (
                ErrorCode::TooManyWatches,
                Error::TooManyWatches { detail: "d".into() },
            ),
            (
                ErrorCode::QuotaExceeded,
                Error::QuotaExceeded { detail: "d".into() },
            ),
            (ErrorCode::NoAuth, Error::NoAuth { detail: "d".into() }),
            (
                ErrorCode::InvalidAcl,
                Error::InvalidAcl { detail: "d".into() },
            ),
            (
                ErrorCode::NoWatcher,
                Error::NoWatcher { detail: "d".into() },
            ),
            (ErrorCode::SessionExpired, Error::SessionExpired),
            (
                ErrorCode::AuthFailed,
                Error::AuthRefused { detail: "d".into() },
            ),
            (ErrorCode::SessionMoved, Error::ConnectionLoss),
            (ErrorCode::ServerShuttingDown, Error::ConnectionLoss),
            (ErrorCode::Unspecified, Error::System { detail: "d".into() }),
            (ErrorCode::SystemError, Error::System { detail: "d".into() }),
            (ErrorCode::Ok, Error::System { detail: "d".into() }),
            (
                ErrorCode::RuntimeInconsistency,
                Error::System { detail: "d".into() },
            ),
            (
                ErrorCode::BadArguments,
                Error::Unsupported {
                    code: ErrorCode::BadArguments,
                    detail: "d".into(),
                },
            ),
            (
                ErrorCode::Unimplemented,
                Error::Unsupported {
                    code: ErrorCode::Unimplemented,
                    detail: "d".into(),
                },
            ),
        ];
        for (code, expected) in cases {
            assert_eq!(Error::from_op(op(code, "d"), "/p"), expected, "{code:?}");
        }
    }

    #[test]
    fn every_code_the_protocol_defines_is_mapped_and_removed_ones_are_not() {
        // Every code the protocol defines maps to a variant; a number it does
        // not define (12 and 15 were TOO_MANY_REQUESTS and SESSION_CLOSING,
        // which no server sent) is a server error, its detail kept.
        for number in 0..64 {
            let error = Error::from_op(
                OpError {
                    code: number,
                    detail: "d".into(),
                },
                "/p",
            );
            match ErrorCode::try_from(number) {
                // OK and RUNTIME_INCONSISTENCY only come inside a failed multi.
                Ok(
                    ErrorCode::Unspecified
                    | ErrorCode::SystemError
                    | ErrorCode::Ok
                    | ErrorCode::RuntimeInconsistency,
                )
                | Err(_) => {
                    assert_eq!(error, Error::System { detail: "d".into() }, "{number}");
                }
                Ok(code) => {
                    assert!(!matches!(error, Error::System { .. }), "{code:?}: {error}");
                }
            }
        }
        for removed in [12, 15] {
            assert!(ErrorCode::try_from(removed).is_err(), "{removed} is gone");
        }
    }

    #[test]
    fn a_server_that_cannot_write_is_worth_retrying_elsewhere() {
        let error = Error::from_op(op(ErrorCode::Unavailable, "disk full"), "/p");
        assert_eq!(
            error,
            Error::Unavailable {
                detail: "disk full".into()
            }
        );
        assert!(error.is_retryable() && !error.is_terminal());
    }

    #[test]
    fn limit_errors_say_what_to_do() {
        let watches = Error::TooManyWatches {
            detail: "session 0x1 holds 1000 watches".into(),
        };
        assert_eq!(
            watches.to_string(),
            "too many watches: session 0x1 holds 1000 watches"
        );
        let quota = Error::QuotaExceeded {
            detail: "the tree holds 10 nodes".into(),
        };
        assert_eq!(quota.to_string(), "quota exceeded: the tree holds 10 nodes");
        for error in [watches, quota] {
            assert!(
                !error.is_retryable(),
                "{error}: retrying the same call fails again"
            );
            assert!(!error.is_terminal(), "{error}: the client stays usable");
        }
    }

    #[test]
    fn a_refused_credential_is_not_a_lost_session() {
        let refused = Error::from_op(op(ErrorCode::AuthFailed, "unknown scheme kerberos"), "/");
        assert_eq!(
            refused.to_string(),
            "credential refused: unknown scheme kerberos"
        );
        assert!(!refused.is_terminal() && !refused.is_retryable());
        assert!(Error::AuthFailed.is_terminal());
    }

    #[test]
    fn a_multi_error_names_the_operation() {
        let failed = MultiError::Failed {
            index: 2,
            error: Error::NoNode {
                detail: "/a/b".into(),
            },
        };
        assert_eq!(
            failed.to_string(),
            "operation 2 of the multi failed, nothing was applied: no node: /a/b"
        );
        assert_eq!(failed.index(), Some(2));
        assert!(matches!(failed.error(), Error::NoNode { .. }));
        let lost = MultiError::from(Error::ConnectionLoss);
        assert_eq!(lost.index(), None);
        assert_eq!(lost.to_string(), Error::ConnectionLoss.to_string());
        assert_eq!(lost.into_error(), Error::ConnectionLoss);
    }

    #[test]
    fn messages_are_one_clear_line() {
        let timeout = Error::Timeout {
            after: Duration::from_secs(2),
            last_error: Some("connection refused".into()),
        };
        assert_eq!(
            timeout.to_string(),
            "no session established within 2s (last error: connection refused)"
        );
        assert!(Error::ConnectionLoss.is_retryable());
        assert!(Error::SessionExpired.is_terminal());
        let late = Error::RequestTimeout {
            after: Duration::from_millis(250),
        };
        assert_eq!(
            late.to_string(),
            "no answer within 250ms; the request may or may not have been applied"
        );
        assert!(late.is_retryable() && !late.is_terminal());
        assert!(
            !Error::NoNode {
                detail: String::new()
            }
            .is_terminal()
        );
    }
}
