//! [`RetryPolicy`]: how long [`Client::retry`](crate::Client::retry) and
//! [`Client::create_protected`](crate::Client::create_protected) keep trying
//! after errors worth retrying, and how long they wait in between.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How [`Client::retry`](crate::Client::retry) retries an operation: until
/// a deadline (`timeout` after the first attempt), at most `max_attempts`
/// attempts if set, waiting between attempts a random time between half and
/// all of a back-off that doubles from `initial_backoff` up to
/// `max_backoff`, and then until the client is connected again.
///
/// The default: 15 s, no attempt limit, back-off from 10 ms to 1 s.
///
/// ```
/// use std::time::Duration;
/// use session_client::RetryPolicy;
///
/// let policy = RetryPolicy::new(Duration::from_secs(5))
///     .backoff(Duration::from_millis(20), Duration::from_millis(500))
///     .max_attempts(10);
/// assert_eq!(policy.timeout(), Duration::from_secs(5));
/// assert_eq!(RetryPolicy::default().timeout(), Duration::from_secs(15));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    timeout: Duration,
    max_attempts: Option<u32>,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// [`RetryPolicy::default`]'s deadline: 15 s.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(DEFAULT_RETRY_TIMEOUT)
    }
}

impl RetryPolicy {
    /// Retries until `timeout` after the first attempt, with the default
    /// back-off (10 ms doubling up to 1 s) and no attempt limit.
    #[must_use]
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            max_attempts: None,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }

    /// The wait before the first retry, doubled for each later one up to
    /// `max` (each wait is random between half of it and all of it).
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// At most `attempts` attempts in all (the first included; 1 means no
    /// retry).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// How long after the first attempt the last may start.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether an attempt after `attempts` attempts is allowed.
    pub(crate) fn allows_another(&self, attempts: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempts < max)
    }

    /// The wait after the `attempt`-th attempt (1 for the first), with
    /// jitter: between half of the back-off and all of it.
    pub(crate) fn wait_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let backoff = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let half = backoff / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            random_u64() % spread
        };
        half + Duration::from_micros(jitter)
    }
}

/// A random number from the standard library's randomly keyed hasher:
/// enough for jitter and for unique names, with no dependency.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn the_backoff_doubles_up_to_its_maximum_with_jitter_under_it() {
        let policy = RetryPolicy::new(ms(1000)).backoff(ms(10), ms(80));
        for (attempt, backoff) in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 80), (40, 80)] {
            for _ in 0..20 {
                let wait = policy.wait_after(attempt);
                assert!(
                    wait >= ms(backoff) / 2 && wait <= ms(backoff),
                    "attempt {attempt}: {wait:?}"
                );
            }
        }
        let none = RetryPolicy::new(ms(1000)).backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(none.wait_after(3), Duration::ZERO);
    }

    #[test]
    fn attempts_are_limited_only_when_asked() {
        let policy = RetryPolicy::default();
        assert!(policy.allows_another(1_000_000));
        let policy = policy.max_attempts(3);
        assert!(policy.allows_another(2));
        assert!(!policy.allows_another(3));
        assert!(!RetryPolicy::default().max_attempts(0).allows_another(1));
    }
}
