//! ZooKeeper's numbers: opcodes, error codes, watch event types and keeper
//! states, create modes, watcher types, add-watch modes, permissions and the
//! special xids.
//!
//! Records keep these as the raw `i32` read from the wire, so that a value
//! this version does not know still decodes and re-encodes unchanged; the
//! enums here convert with `from_code` / `code`.

/// Declares a fieldless `#[repr(i32)]` enum with its wire numbers and
/// ZooKeeper's Java names, and `from_code` / `code` / `name`.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $code:literal => $java:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant = $code, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$( Self::$variant, )+];

            /// The value with wire number `code`, `None` when there is none.
            #[must_use]
            pub fn from_code(code: i32) -> Option<Self> {
                match code {
                    $( $code => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// The wire number.
            #[must_use]
            pub fn code(self) -> i32 {
                self as i32
            }

            /// ZooKeeper's Java name for the value.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $java, )+
                }
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> Self {
                value.code()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} ({})", self.name(), self.code())
            }
        }
    };
}

code_enum! {
    /// A request type: `RequestHeader.type` and `MultiHeader.type`
    /// (`ZooDefs.OpCode`, every 3.9 number).
    OpCode {
        /// A watch notification (never a request; xid -1 replies).
        Notification = 0 => "notification",
        /// Create a node; replies `CreateResponse`.
        Create = 1 => "create",
        /// Delete a node.
        Delete = 2 => "delete",
        /// Stat a node, optionally watching it.
        Exists = 3 => "exists",
        /// Read a node's data.
        GetData = 4 => "getData",
        /// Write a node's data.
        SetData = 5 => "setData",
        /// Read a node's ACL.
        GetAcl = 6 => "getACL",
        /// Write a node's ACL.
        SetAcl = 7 => "setACL",
        /// List a node's children.
        GetChildren = 8 => "getChildren",
        /// Sync with the leader.
        Sync = 9 => "sync",
        /// Keep the session alive (xid -2).
        Ping = 11 => "ping",
        /// List a node's children with its stat.
        GetChildren2 = 12 => "getChildren2",
        /// Check a node's version (inside a multi).
        Check = 13 => "check",
        /// An atomic batch of writes.
        Multi = 14 => "multi",
        /// Create a node; replies `Create2Response` (with the stat).
        Create2 = 15 => "create2",
        /// Change the ensemble (quorum only).
        Reconfig = 16 => "reconfig",
        /// Check that a watch exists.
        CheckWatches = 17 => "checkWatches",
        /// Remove watches.
        RemoveWatches = 18 => "removeWatches",
        /// Create a container node.
        CreateContainer = 19 => "createContainer",
        /// Delete a container node (server-internal).
        DeleteContainer = 20 => "deleteContainer",
        /// Create a node with a time to live.
        CreateTtl = 21 => "createTTL",
        /// A batch of reads.
        MultiRead = 22 => "multiRead",
        /// Add authentication (xid -4 from the Java client).
        Auth = 100 => "auth",
        /// Re-register watches after a reconnect (xid -8).
        SetWatches = 101 => "setWatches",
        /// A SASL token.
        Sasl = 102 => "sasl",
        /// List the session's ephemeral nodes.
        GetEphemerals = 103 => "getEphemerals",
        /// Count a node's descendants.
        GetAllChildrenNumber = 104 => "getAllChildrenNumber",
        /// Re-register watches, persistent ones included (xid -8).
        SetWatches2 = 105 => "setWatches2",
        /// Add a persistent (recursive) watch.
        AddWatch = 106 => "addWatch",
        /// List the connection's authenticated identities (since 3.7.0).
        WhoAmI = 107 => "whoAmI",
        /// Create a session (server-internal).
        CreateSession = -10 => "createSession",
        /// Close the session.
        CloseSession = -11 => "closeSession",
        /// A failed operation (internal transaction type, and the
        /// `MultiHeader.type` of an error result).
        Error = -1 => "error",
    }
}

code_enum! {
    /// A reply's error code: `ReplyHeader.err`, `MultiHeader.err`,
    /// `ErrorResponse.err` (`KeeperException.Code`).
    ErrorCode {
        /// Success.
        Ok = 0 => "OK",
        /// A system or server-side error.
        SystemError = -1 => "SYSTEMERROR",
        /// A runtime inconsistency; also every op after the failed one in a
        /// failed multi.
        RuntimeInconsistency = -2 => "RUNTIMEINCONSISTENCY",
        /// A data inconsistency.
        DataInconsistency = -3 => "DATAINCONSISTENCY",
        /// The connection to the server was lost (client-side only).
        ConnectionLoss = -4 => "CONNECTIONLOSS",
        /// A request could not be (de)serialized.
        MarshallingError = -5 => "MARSHALLINGERROR",
        /// The operation is not implemented.
        Unimplemented = -6 => "UNIMPLEMENTED",
        /// The operation timed out.
        OperationTimeout = -7 => "OPERATIONTIMEOUT",
        /// Invalid arguments.
        BadArguments = -8 => "BADARGUMENTS",
        /// The session is unknown.
        UnknownSession = -12 => "UNKNOWNSESSION",
        /// No quorum of the new config is connected.
        NewConfigNoQuorum = -13 => "NEWCONFIGNOQUORUM",
        /// Another reconfiguration is in progress.
        ReconfigInProgress = -14 => "RECONFIGINPROGRESS",
        /// An API error (base of the codes below).
        ApiError = -100 => "APIERROR",
        /// The node does not exist.
        NoNode = -101 => "NONODE",
        /// Not authorised.
        NoAuth = -102 => "NOAUTH",
        /// The version does not match.
        BadVersion = -103 => "BADVERSION",
        /// Ephemeral nodes may not have children.
        NoChildrenForEphemerals = -108 => "NOCHILDRENFOREPHEMERALS",
        /// The node already exists.
        NodeExists = -110 => "NODEEXISTS",
        /// The node has children.
        NotEmpty = -111 => "NOTEMPTY",
        /// The session has expired.
        SessionExpired = -112 => "SESSIONEXPIRED",
        /// Invalid callback.
        InvalidCallback = -113 => "INVALIDCALLBACK",
        /// Invalid ACL.
        InvalidAcl = -114 => "INVALIDACL",
        /// Authentication failed.
        AuthFailed = -115 => "AUTHFAILED",
        /// The session moved to another server.
        SessionMoved = -118 => "SESSIONMOVED",
        /// A write to a read-only server.
        NotReadOnly = -119 => "NOTREADONLY",
        /// An ephemeral node on a local session.
        EphemeralOnLocalSession = -120 => "EPHEMERALONLOCALSESSION",
        /// No watch to check or remove.
        NoWatcher = -121 => "NOWATCHER",
        /// The request timed out.
        RequestTimeout = -122 => "REQUESTTIMEOUT",
        /// Reconfiguration is disabled.
        ReconfigDisabled = -123 => "RECONFIGDISABLED",
        /// The session was closed because it must authenticate with SASL.
        SessionClosedRequireSaslAuth = -124 => "SESSIONCLOSEDREQUIRESASLAUTH",
        /// A quota was exceeded.
        QuotaExceeded = -125 => "QUOTAEXCEEDED",
        /// The operation was throttled.
        ThrottledOp = -127 => "THROTTLEDOP",
    }
}

code_enum! {
    /// `WatcherEvent.type` (`Watcher.Event.EventType`). Servers send 1–4;
    /// the others are generated by clients.
    EventType {
        /// A session state change, no node.
        None = -1 => "None",
        /// The node was created.
        NodeCreated = 1 => "NodeCreated",
        /// The node was deleted.
        NodeDeleted = 2 => "NodeDeleted",
        /// The node's data changed.
        NodeDataChanged = 3 => "NodeDataChanged",
        /// The node's children changed.
        NodeChildrenChanged = 4 => "NodeChildrenChanged",
        /// A data watch was removed.
        DataWatchRemoved = 5 => "DataWatchRemoved",
        /// A child watch was removed.
        ChildWatchRemoved = 6 => "ChildWatchRemoved",
        /// A persistent watch was removed.
        PersistentWatchRemoved = 7 => "PersistentWatchRemoved",
    }
}

code_enum! {
    /// `WatcherEvent.state` (`Watcher.Event.KeeperState`). Servers send
    /// `SyncConnected` (3); the others are generated by clients.
    KeeperState {
        /// Unknown (deprecated).
        Unknown = -1 => "Unknown",
        /// Disconnected.
        Disconnected = 0 => "Disconnected",
        /// Never used (deprecated).
        NoSyncConnected = 1 => "NoSyncConnected",
        /// Connected.
        SyncConnected = 3 => "SyncConnected",
        /// Authentication failed.
        AuthFailed = 4 => "AuthFailed",
        /// Connected to a read-only server.
        ConnectedReadOnly = 5 => "ConnectedReadOnly",
        /// SASL authentication succeeded.
        SaslAuthenticated = 6 => "SaslAuthenticated",
        /// The session expired.
        Expired = -112 => "Expired",
        /// The client closed the session.
        Closed = 7 => "Closed",
    }
}

code_enum! {
    /// `CreateRequest.flags` (`CreateMode`). Other flags are refused by the
    /// server with `BADARGUMENTS`.
    CreateMode {
        /// A persistent node.
        Persistent = 0 => "PERSISTENT",
        /// An ephemeral node, owned by the session.
        Ephemeral = 1 => "EPHEMERAL",
        /// A persistent node with a sequence suffix.
        PersistentSequential = 2 => "PERSISTENT_SEQUENTIAL",
        /// An ephemeral node with a sequence suffix.
        EphemeralSequential = 3 => "EPHEMERAL_SEQUENTIAL",
        /// A container, deleted once its last child is.
        Container = 4 => "CONTAINER",
        /// A persistent node deleted after its TTL without changes.
        PersistentWithTtl = 5 => "PERSISTENT_WITH_TTL",
        /// A sequential persistent node with a TTL.
        PersistentSequentialWithTtl = 6 => "PERSISTENT_SEQUENTIAL_WITH_TTL",
    }
}

impl CreateMode {
    /// Whether the node belongs to the session.
    #[must_use]
    pub fn is_ephemeral(self) -> bool {
        matches!(self, Self::Ephemeral | Self::EphemeralSequential)
    }

    /// Whether the server appends a sequence suffix.
    #[must_use]
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            Self::PersistentSequential
                | Self::EphemeralSequential
                | Self::PersistentSequentialWithTtl
        )
    }

    /// Whether the node is a container.
    #[must_use]
    pub fn is_container(self) -> bool {
        self == Self::Container
    }

    /// Whether the node has a time to live.
    #[must_use]
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            Self::PersistentWithTtl | Self::PersistentSequentialWithTtl
        )
    }
}

code_enum! {
    /// `CheckWatchesRequest.type` / `RemoveWatchesRequest.type`
    /// (`Watcher.WatcherType`; 4 and 5 since 3.9.0).
    WatcherType {
        /// Child watches.
        Children = 1 => "Children",
        /// Data (and exist) watches.
        Data = 2 => "Data",
        /// Any watch.
        Any = 3 => "Any",
        /// Persistent watches.
        Persistent = 4 => "Persistent",
        /// Persistent recursive watches.
        PersistentRecursive = 5 => "PersistentRecursive",
    }
}

code_enum! {
    /// `AddWatchRequest.mode` (`ZooDefs.AddWatchModes`).
    AddWatchMode {
        /// A persistent watch on the node and its children list.
        Persistent = 0 => "PERSISTENT",
        /// A persistent watch on the node and every descendant.
        PersistentRecursive = 1 => "PERSISTENT_RECURSIVE",
    }
}

/// The xid of a watch notification from the server (`ClientCnxn.NOTIFICATION_XID`).
pub const NOTIFICATION_XID: i32 = -1;
/// The xid of a ping and its reply (`ClientCnxn.PING_XID`).
pub const PING_XID: i32 = -2;
/// The xid of the Java client's auth packets and their replies
/// (`ClientCnxn.AUTHPACKET_XID`).
pub const AUTH_XID: i32 = -4;
/// The xid of SetWatches / SetWatches2 sent on reconnect
/// (`ClientCnxn.SET_WATCHES_XID`).
pub const SET_WATCHES_XID: i32 = -8;

/// ACL permission bits (`ZooDefs.Perms`), or-ed in `Acl.perms`.
pub mod perms {
    /// Read data and list children.
    pub const READ: i32 = 1;
    /// Write data.
    pub const WRITE: i32 = 1 << 1;
    /// Create children.
    pub const CREATE: i32 = 1 << 2;
    /// Delete children.
    pub const DELETE: i32 = 1 << 3;
    /// Read and write the ACL.
    pub const ADMIN: i32 = 1 << 4;
    /// Every permission.
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_have_zookeepers_numbers() {
        let table: Vec<(i32, &str)> = OpCode::ALL
            .iter()
            .map(|op| (op.code(), op.name()))
            .collect();
        assert_eq!(
            table,
            [
                (0, "notification"),
                (1, "create"),
                (2, "delete"),
                (3, "exists"),
                (4, "getData"),
                (5, "setData"),
                (6, "getACL"),
                (7, "setACL"),
                (8, "getChildren"),
                (9, "sync"),
                (11, "ping"),
                (12, "getChildren2"),
                (13, "check"),
                (14, "multi"),
                (15, "create2"),
                (16, "reconfig"),
                (17, "checkWatches"),
                (18, "removeWatches"),
                (19, "createContainer"),
                (20, "deleteContainer"),
                (21, "createTTL"),
                (22, "multiRead"),
                (100, "auth"),
                (101, "setWatches"),
                (102, "sasl"),
                (103, "getEphemerals"),
                (104, "getAllChildrenNumber"),
                (105, "setWatches2"),
                (106, "addWatch"),
                (107, "whoAmI"),
                (-10, "createSession"),
                (-11, "closeSession"),
                (-1, "error"),
            ]
        );
        for op in OpCode::ALL {
            assert_eq!(OpCode::from_code(op.code()), Some(*op));
        }
        assert_eq!(OpCode::from_code(10), None);
        assert_eq!(OpCode::Create2.to_string(), "create2 (15)");
    }

    #[test]
    fn error_codes_have_zookeepers_numbers() {
        let table: Vec<i32> = ErrorCode::ALL.iter().map(|code| code.code()).collect();
        assert_eq!(
            table,
            [
                0, -1, -2, -3, -4, -5, -6, -7, -8, -12, -13, -14, -100, -101, -102, -103, -108,
                -110, -111, -112, -113, -114, -115, -118, -119, -120, -121, -122, -123, -124, -125,
                -127
            ]
        );
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(*code));
        }
        assert_eq!(ErrorCode::from_code(-9), None);
        assert_eq!(ErrorCode::from_code(-126), None);
    }

    #[test]
    fn events_states_modes_and_types_have_zookeepers_numbers() {
        let events: Vec<i32> = EventType::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(events, [-1, 1, 2, 3, 4, 5, 6, 7]);
        let states: Vec<i32> = KeeperState::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(states, [-1, 0, 1, 3, 4, 5, 6, -112, 7]);
        let modes: Vec<i32> = CreateMode::ALL.iter().map(|m| m.code()).collect();
        assert_eq!(modes, [0, 1, 2, 3, 4, 5, 6]);
        let watchers: Vec<i32> = WatcherType::ALL.iter().map(|w| w.code()).collect();
        assert_eq!(watchers, [1, 2, 3, 4, 5]);
        assert_eq!(AddWatchMode::PersistentRecursive.code(), 1);
        assert_eq!(perms::ALL, 31);
        assert_eq!(
            (NOTIFICATION_XID, PING_XID, AUTH_XID, SET_WATCHES_XID),
            (-1, -2, -4, -8)
        );
    }

    #[test]
    fn create_mode_properties() {
        let sequential: Vec<_> = CreateMode::ALL
            .iter()
            .filter(|mode| mode.is_sequential())
            .collect();
        assert_eq!(
            sequential,
            [
                &CreateMode::PersistentSequential,
                &CreateMode::EphemeralSequential,
                &CreateMode::PersistentSequentialWithTtl
            ]
        );
        assert!(CreateMode::EphemeralSequential.is_ephemeral());
        assert!(!CreateMode::Container.is_ephemeral());
        assert!(CreateMode::Container.is_container());
        assert!(CreateMode::PersistentWithTtl.is_ttl());
        assert!(!CreateMode::Persistent.is_ttl());
    }
}
