//! Credentials a connection adds (ZooKeeper's addAuth), turned into the ids
//! access control lists are checked against: the `digest` scheme, with
//! ZooKeeper's encoding, and the `super` id an operator's digest grants.
//! Ids belong to the connection (the client sends its credentials again
//! after a reconnect); nothing here is replicated.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use session_core::Id;
use sha1::{Digest, Sha1};

/// The id a `digest` credential `user:password` stands for:
/// `user:` + base64(SHA-1(`user:password`)), as ZooKeeper's
/// `DigestAuthenticationProvider.generateDigest`.
///
/// # Errors
/// A credential that is not UTF-8 or has no `:`.
pub(crate) fn digest_id(credential: &[u8]) -> Result<Id, String> {
    let text = std::str::from_utf8(credential)
        .map_err(|_| "a digest credential must be UTF-8 user:password".to_owned())?;
    let Some((user, _)) = text.split_once(':') else {
        return Err("a digest credential must be user:password".to_owned());
    };
    let hash = Sha1::digest(text.as_bytes());
    Ok(Id::new(
        "digest",
        format!("{user}:{}", STANDARD.encode(hash)),
    ))
}

/// The ids a credential of `scheme` adds to a connection from `ip`: for
/// `digest` its id, and `super` too when that id is the configured
/// super-user digest; for `ip` nothing new (every connection holds its
/// address already).
///
/// # Errors
/// A scheme this server does not know (ZooKeeper answers AUTHFAILED and
/// closes the connection), or a malformed credential.
pub(crate) fn authenticate(
    scheme: &str,
    credential: &[u8],
    super_digest: Option<&str>,
) -> Result<Vec<Id>, String> {
    match scheme {
        "digest" => {
            let id = digest_id(credential)?;
            let is_super = super_digest.is_some_and(|digest| digest == id.id);
            let mut ids = vec![id];
            if is_super {
                ids.push(Id::new("super", ""));
            }
            Ok(ids)
        }
        "ip" => Ok(Vec::new()),
        other => Err(format!(
            "authentication scheme {other:?} is not supported (digest is)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_zookeepers() {
        // zookeeper-wire.md §9: "super:test" → super:D/InIHSb7yEEbrWz8b9l71RjZJU=
        // (the superDigest kazoo's test harness configures).
        assert_eq!(
            digest_id(b"super:test").expect("as set up"),
            Id::new("digest", "super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
        );
        assert!(digest_id(b"no colon").is_err());
        assert!(digest_id(&[0xff, b':']).is_err());
    }

    #[test]
    fn the_super_digest_grants_super_and_unknown_schemes_fail() {
        let ids = authenticate(
            "digest",
            b"super:test",
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="),
        )
        .expect("as set up");
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].scheme, "super");
        let plain = authenticate(
            "digest",
            b"alice:pw",
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="),
        )
        .expect("as set up");
        assert_eq!(plain.len(), 1);
        assert!(authenticate("sasl", b"x", None).is_err());
        assert_eq!(
            authenticate("ip", b"10.0.0.1", None).expect("as set up"),
            Vec::new()
        );
    }
}
