//! Node paths: ZooKeeper's validation rules, shared by chroots and the namespace.
//!
//! A path starts with `/`, does not end with `/` (except the root `/` itself),
//! has no empty component, no `.` or `..` component, and no NUL, control or
//! otherwise unprintable character (ZooKeeper's `PathUtils.validatePath`).

use thiserror::Error;

/// Why a path was refused. Every variant names the offending path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path is the empty string.
    #[error("path is empty")]
    Empty,
    /// The path does not start with `/`.
    #[error("path {path:?} does not start with '/'")]
    NotAbsolute {
        /// The refused path.
        path: String,
    },
    /// The path ends with `/` and is not the root.
    #[error("path {path:?} ends with '/'")]
    TrailingSlash {
        /// The refused path.
        path: String,
    },
    /// Two slashes in a row: an empty component.
    #[error("path {path:?} has an empty component at byte {at}")]
    EmptyComponent {
        /// The refused path.
        path: String,
        /// Byte offset of the second slash.
        at: usize,
    },
    /// A `.` or `..` component.
    #[error("path {path:?} has a relative component {component:?}")]
    RelativeComponent {
        /// The refused path.
        path: String,
        /// The component, `.` or `..`.
        component: String,
    },
    /// A character ZooKeeper refuses: NUL, a control character, or one of the
    /// reserved ranges U+D800..=U+F8FF (in Rust strings only U+E000..=U+F8FF can
    /// occur) and U+FFF0..=U+FFFF.
    #[error("path {path:?} has an invalid character {character:?} at byte {at}")]
    InvalidCharacter {
        /// The refused path.
        path: String,
        /// The refused character.
        character: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Checks `path` against ZooKeeper's rules.
///
/// ```
/// use session_core::{PathError, validate_path};
///
/// assert!(validate_path("/").is_ok());
/// assert!(validate_path("/services/web-1").is_ok());
/// assert!(matches!(validate_path("/a//b"), Err(PathError::EmptyComponent { .. })));
/// ```
pub fn validate_path(path: &str) -> Result<(), PathError> {
    validate(path, false)
}

/// Checks the path given to a *sequential* create, which may end with `/`
/// because the server appends a 10-digit counter (`/queue/` becomes
/// `/queue/0000000001`).
///
/// ```
/// use session_core::validate_sequential_prefix;
///
/// assert!(validate_sequential_prefix("/queue/").is_ok());
/// assert!(validate_sequential_prefix("/queue/job-").is_ok());
/// assert!(validate_sequential_prefix("/queue//job-").is_err());
/// ```
pub fn validate_sequential_prefix(path: &str) -> Result<(), PathError> {
    validate(path, true)
}

fn validate(path: &str, sequential: bool) -> Result<(), PathError> {
    let owned = || path.to_owned();
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute { path: owned() });
    }
    if path.len() == 1 {
        // The root is valid, but a sequential child of it would be "/0000000001"
        // created from the prefix "/", which ZooKeeper also accepts; we follow it.
        return Ok(());
    }
    if path.ends_with('/') && !sequential {
        return Err(PathError::TrailingSlash { path: owned() });
    }
    for (at, character) in path.char_indices() {
        if is_invalid_char(character) {
            return Err(PathError::InvalidCharacter {
                path: owned(),
                character,
                at,
            });
        }
    }
    let mut offset = 1;
    let body = &path[1..];
    let components: Vec<&str> = body.split('/').collect();
    let last = components.len() - 1;
    for (index, component) in components.iter().enumerate() {
        if component.is_empty() && !(sequential && index == last) {
            return Err(PathError::EmptyComponent {
                path: owned(),
                at: offset,
            });
        }
        // A sequential prefix's last component gets digits appended, so "." or
        // ".." there becomes a real name; ZooKeeper validates prefix + "1".
        let relative = *component == "." || *component == "..";
        if relative && !(sequential && index == last) {
            return Err(PathError::RelativeComponent {
                path: owned(),
                component: (*component).to_owned(),
            });
        }
        offset += component.len() + 1;
    }
    Ok(())
}

fn is_invalid_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{e000}'..='\u{f8ff}'
        | '\u{fff0}'..='\u{ffff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zookeeper_valid_paths() {
        for path in [
            "/",
            "/a",
            "/a/b/c",
            "/a.b",
            "/..a",
            "/a...",
            "/with space",
            "/é",
        ] {
            assert_eq!(validate_path(path), Ok(()), "{path:?}");
        }
    }

    #[test]
    fn refuses_each_rule_with_its_variant() {
        assert_eq!(validate_path(""), Err(PathError::Empty));
        assert!(matches!(
            validate_path("a/b"),
            Err(PathError::NotAbsolute { .. })
        ));
        assert!(matches!(
            validate_path("/a/"),
            Err(PathError::TrailingSlash { .. })
        ));
        assert_eq!(
            validate_path("/a//b"),
            Err(PathError::EmptyComponent {
                path: "/a//b".into(),
                at: 3
            })
        );
        assert!(matches!(
            validate_path("/a/./b"),
            Err(PathError::RelativeComponent { .. })
        ));
        assert!(matches!(
            validate_path("/a/.."),
            Err(PathError::RelativeComponent { .. })
        ));
        assert_eq!(
            validate_path("/a\u{0}b"),
            Err(PathError::InvalidCharacter {
                path: "/a\u{0}b".into(),
                character: '\u{0}',
                at: 2
            })
        );
        assert!(matches!(
            validate_path("/a\u{1b}"),
            Err(PathError::InvalidCharacter { .. })
        ));
        assert!(matches!(
            validate_path("/a\u{e000}"),
            Err(PathError::InvalidCharacter { .. })
        ));
        assert!(matches!(
            validate_path("/a\u{fff5}"),
            Err(PathError::InvalidCharacter { .. })
        ));
    }

    #[test]
    fn sequential_prefix_may_end_with_slash_or_dot() {
        assert_eq!(validate_sequential_prefix("/q/"), Ok(()));
        assert_eq!(validate_sequential_prefix("/q/."), Ok(()));
        assert_eq!(validate_sequential_prefix("/q/job-"), Ok(()));
        assert!(matches!(
            validate_sequential_prefix("/q//x"),
            Err(PathError::EmptyComponent { .. })
        ));
        assert!(matches!(
            validate_sequential_prefix("/../x"),
            Err(PathError::RelativeComponent { .. })
        ));
    }

    #[test]
    fn errors_name_the_path() {
        let message = validate_path("/a//b")
            .expect_err("invalid path")
            .to_string();
        assert!(message.contains("\"/a//b\""), "{message}");
    }
}
