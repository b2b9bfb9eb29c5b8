//! Conversions between the namespace's types and the wire's.

use session_wire::v1::{self as wire, ErrorCode, OpError};

use crate::namespace::{NamespaceError, Stat, WatchEvent, WatchEventKind};
use crate::state::ApplyError;

pub(crate) fn stat(stat: &Stat) -> wire::Stat {
    wire::Stat {
        czxid: stat.czxid,
        mzxid: stat.mzxid,
        pzxid: stat.pzxid,
        ctime_ms: stat.ctime,
        mtime_ms: stat.mtime,
        version: stat.version,
        cversion: stat.cversion,
        ephemeral_owner: stat.ephemeral_owner,
        data_length: stat.data_length,
        num_children: stat.num_children,
    }
}

pub(crate) fn watch_event(event: &WatchEvent) -> wire::WatchEvent {
    let kind = match event.kind {
        WatchEventKind::NodeCreated => wire::WatchEventKind::NodeCreated,
        WatchEventKind::NodeDeleted => wire::WatchEventKind::NodeDeleted,
        WatchEventKind::NodeDataChanged => wire::WatchEventKind::NodeDataChanged,
        WatchEventKind::NodeChildrenChanged => wire::WatchEventKind::NodeChildrenChanged,
    };
    wire::WatchEvent {
        kind: kind.into(),
        path: event.path.to_string(),
        zxid: event.zxid,
    }
}

/// The error code a client sees for a namespace error, with its message.
pub(crate) fn namespace_error(err: &NamespaceError) -> OpError {
    let code = match err {
        NamespaceError::NoNode { .. } => ErrorCode::NoNode,
        NamespaceError::NodeExists { .. } => ErrorCode::NodeExists,
        NamespaceError::BadVersion { .. } => ErrorCode::BadVersion,
        NamespaceError::NotEmpty { .. } => ErrorCode::NotEmpty,
        NamespaceError::NoChildrenForEphemerals { .. } => ErrorCode::NoChildrenForEphemerals,
        NamespaceError::InvalidPath(_) | NamespaceError::RootDelete => ErrorCode::InvalidPath,
        NamespaceError::DataTooLarge { .. } | NamespaceError::PathTooLong { .. } => {
            ErrorCode::TooLarge
        }
        NamespaceError::TooManyEphemerals { .. } => ErrorCode::TooManyEphemerals,
        NamespaceError::SequenceExhausted { .. } | NamespaceError::ZeroOwner { .. } => {
            ErrorCode::BadArguments
        }
    };
    OpError {
        code: code.into(),
        detail: err.to_string(),
    }
}

pub(crate) fn apply_error(err: &ApplyError) -> OpError {
    match err {
        ApplyError::Namespace(err) => namespace_error(err),
        ApplyError::SessionGone(_) | ApplyError::Reattach(_) => OpError {
            code: ErrorCode::SessionExpired.into(),
            detail: err.to_string(),
        },
        ApplyError::CreateSession(_) => OpError {
            code: ErrorCode::SystemError.into(),
            detail: err.to_string(),
        },
    }
}

pub(crate) fn op_error(code: ErrorCode, detail: impl Into<String>) -> OpError {
    OpError {
        code: code.into(),
        detail: detail.into(),
    }
}
