//! Protected names, Curator's layout: the last component of a node created
//! by [`Client::create_protected`](crate::Client::create_protected) is
//! `_c_<uuid>-<name><sequence>`, so that after a `ConnectionLoss` the client
//! finds its node again among the parent's children by the uuid.
//!
//! The uuid is a random (version 4) UUID in its 36-character text form,
//! lowercase (`_c_0f8a4b4e-2b8e-4a57-9d0e-5b1c3f3e9a11-lock-0000000007`),
//! as Curator's `ProtectedUtils` writes it. Every recipe orders contenders
//! by the 10-digit sequence number at the end of the name, whatever comes
//! before it: Curator's locks (which skip up to the name, `lock-`), ours,
//! and kazoo's `Lock` given the name as an extra lock pattern
//! (`Lock(client, path, extra_lock_patterns=["-lock-"])`; kazoo's own
//! nodes are `<uuid hex>__lock__<sequence>`).

use crate::retry::random_u64;

/// The prefix of a protected name, Curator's `PROTECTED_PREFIX`.
pub const PROTECTED_PREFIX: &str = "_c_";

/// Length of the uuid in a protected name.
const UUID_LEN: usize = 36;

/// A new random (version 4) UUID in its text form.
pub(crate) fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_be_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The protected form of the node name `name` for the uuid `id`:
/// `_c_<id>-<name>`.
pub(crate) fn protect(id: &str, name: &str) -> String {
    format!("{PROTECTED_PREFIX}{id}-{name}")
}

/// The uuid of a protected node name, `None` for a name not in the layout.
///
/// ```
/// use session_client::protected_id;
///
/// let name = "_c_0f8a4b4e-2b8e-4a57-9d0e-5b1c3f3e9a11-lock-0000000007";
/// assert_eq!(protected_id(name), Some("0f8a4b4e-2b8e-4a57-9d0e-5b1c3f3e9a11"));
/// assert_eq!(protected_id("lock-0000000007"), None);
/// ```
#[must_use]
pub fn protected_id(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PROTECTED_PREFIX)?;
    let id = rest.get(..UUID_LEN)?;
    let well_formed = id.char_indices().all(|(at, c)| match at {
        8 | 13 | 18 | 23 => c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    (well_formed && rest[UUID_LEN..].starts_with('-')).then_some(id)
}

/// A node name without its protected prefix (Curator's
/// `ProtectedUtils.normalize`); a name not in the layout as it is.
///
/// ```
/// use session_client::strip_protected_prefix;
///
/// let name = "_c_0f8a4b4e-2b8e-4a57-9d0e-5b1c3f3e9a11-lock-0000000007";
/// assert_eq!(strip_protected_prefix(name), "lock-0000000007");
/// assert_eq!(strip_protected_prefix("lock-0000000008"), "lock-0000000008");
/// ```
#[must_use]
pub fn strip_protected_prefix(name: &str) -> &str {
    match protected_id(name) {
        Some(_) => &name[PROTECTED_PREFIX.len() + UUID_LEN + 1..],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_text_and_differ() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        for uuid in [&a, &b] {
            assert_eq!(uuid.len(), UUID_LEN, "{uuid}");
            assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
            assert!("89ab".contains(&uuid[19..20]), "RFC 4122 variant: {uuid}");
            let name = protect(uuid, "lock-");
            assert_eq!(protected_id(&name), Some(uuid.as_str()));
            assert_eq!(strip_protected_prefix(&name), "lock-");
        }
    }

    #[test]
    fn names_outside_the_layout_are_left_alone() {
        for name in [
            "",
            "_c_",
            "_c_not-a-uuid-lock-0000000001",
            "_c_0f8a4b4e-2b8e-4a57-9d0e-5b1c3f3e9a11lock-0000000001",
            "_c_0f8a4b4e+2b8e-4a57-9d0e-5b1c3f3e9a11-lock-0000000001",
            "0f8a4b4e2b8e4a579d0e5b1c3f3e9a11__lock__0000000001",
        ] {
            assert_eq!(protected_id(name), None, "{name}");
            assert_eq!(strip_protected_prefix(name), name);
        }
        // Curator's own names, written by Java's UUID.toString().
        let curator = "_c_9b2f3c1e-6a4d-4c7e-8f10-2a3b4c5d6e7f-lock-0000000012";
        assert_eq!(
            protected_id(curator),
            Some("9b2f3c1e-6a4d-4c7e-8f10-2a3b4c5d6e7f")
        );
        assert_eq!(strip_protected_prefix(curator), "lock-0000000012");
    }
}
