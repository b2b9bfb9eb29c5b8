//! Session timeout negotiation and the client timings that follow from it.
//!
//! The server has a tick and accepts timeouts between a minimum (default 2 ticks)
//! and a maximum (default 20 ticks); a requested timeout is clamped into that
//! range, on every connect and again on every reattach. From the negotiated
//! timeout `T` the client derives when to ping (`T/3` of silence on its side),
//! when to give up on a server (`2/3·T` without hearing it), how long one connect
//! attempt may take (`T / hosts`), and when to declare the session lost on its own
//! (`4/3·T` without any server, ZOOKEEPER-4508).

use std::time::Duration;

use thiserror::Error;

/// Why a timeout policy was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TimeoutPolicyError {
    /// The tick is zero.
    #[error("tick must be longer than zero")]
    ZeroTick,
    /// The tick is so long that 20 ticks overflow a `Duration`.
    #[error("tick {tick:?} is too long: 20 ticks overflow")]
    TickTooLong {
        /// The refused tick.
        tick: Duration,
    },
    /// The minimum is above the maximum.
    #[error("minimum session timeout {min:?} is above the maximum {max:?}")]
    MinAboveMax {
        /// The refused minimum.
        min: Duration,
        /// The maximum.
        max: Duration,
    },
    /// The minimum is shorter than one tick, which expiry cannot honour.
    #[error("minimum session timeout {min:?} is shorter than the tick {tick:?}")]
    MinBelowTick {
        /// The refused minimum.
        min: Duration,
        /// The tick.
        tick: Duration,
    },
}

/// The server's timeout rules: a tick and the accepted range of session timeouts.
///
/// ```
/// use std::time::Duration;
/// use session_core::TimeoutPolicy;
///
/// let ms = Duration::from_millis;
/// let policy = TimeoutPolicy::new(ms(2000))?;
/// assert_eq!((policy.min(), policy.max()), (ms(4000), ms(40_000)));
/// assert_eq!(policy.negotiate(ms(1000)), ms(4000));
/// assert_eq!(policy.negotiate(ms(60_000)), ms(40_000));
///
/// let wide = policy.with_bounds(ms(2000), ms(120_000))?;
/// assert_eq!(wide.negotiate(ms(60_000)), ms(60_000));
/// # Ok::<(), session_core::TimeoutPolicyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutPolicy {
    tick: Duration,
    min: Duration,
    max: Duration,
}

impl TimeoutPolicy {
    /// A policy with ZooKeeper's defaults: minimum 2×`tick`, maximum 20×`tick`.
    pub fn new(tick: Duration) -> Result<Self, TimeoutPolicyError> {
        if tick.is_zero() {
            return Err(TimeoutPolicyError::ZeroTick);
        }
        let max = tick
            .checked_mul(20)
            .ok_or(TimeoutPolicyError::TickTooLong { tick })?;
        Ok(Self {
            tick,
            min: tick * 2,
            max,
        })
    }

    /// The same tick with explicit bounds.
    pub fn with_bounds(self, min: Duration, max: Duration) -> Result<Self, TimeoutPolicyError> {
        if min > max {
            return Err(TimeoutPolicyError::MinAboveMax { min, max });
        }
        if min < self.tick {
            return Err(TimeoutPolicyError::MinBelowTick {
                min,
                tick: self.tick,
            });
        }
        Ok(Self { min, max, ..self })
    }

    /// The expiry granularity.
    #[must_use]
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// The shortest timeout granted.
    #[must_use]
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest timeout granted.
    #[must_use]
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The timeout granted for `requested`: clamped into `min..=max`.
    #[must_use]
    pub fn negotiate(&self, requested: Duration) -> Duration {
        requested.clamp(self.min, self.max)
    }
}

/// The client's timers for one negotiated session timeout `T`.
///
/// ```
/// use std::time::Duration;
/// use session_core::ClientTimings;
///
/// let timings = ClientTimings::new(Duration::from_secs(6), 3);
/// assert_eq!(timings.ping_interval, Duration::from_secs(2));
/// assert_eq!(timings.read_timeout, Duration::from_secs(4));
/// assert_eq!(timings.connect_timeout, Duration::from_secs(2));
/// assert_eq!(timings.expiry, Duration::from_secs(8));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimings {
    /// The negotiated session timeout `T`.
    pub session_timeout: Duration,
    /// Send a ping after sending nothing for this long: `T/3`.
    pub ping_interval: Duration,
    /// Give up on a server after hearing nothing for this long: `2/3·T`.
    pub read_timeout: Duration,
    /// Give up on one connect attempt after this long: `T / hosts`.
    pub connect_timeout: Duration,
    /// Declare the session lost after hearing no server for this long: `4/3·T`.
    pub expiry: Duration,
}

impl ClientTimings {
    /// The timings for a negotiated `session_timeout` and the number of hosts in
    /// the connect string (0 is taken as 1).
    #[must_use]
    pub fn new(session_timeout: Duration, hosts: usize) -> Self {
        let hosts = u32::try_from(hosts.max(1)).unwrap_or(u32::MAX);
        let third = session_timeout / 3;
        Self {
            session_timeout,
            ping_interval: third,
            read_timeout: session_timeout.saturating_sub(third),
            connect_timeout: session_timeout / hosts,
            expiry: session_timeout.saturating_add(third),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn negotiation_matches_zookeeper_observations() {
        // Observed on ZooKeeper 3.8.0 with tickTime=2000 (reference: "Timeout
        // negotiation"): 1000→4000, 3000→4000, 20000→20000, 30000→30000, 60000→40000.
        let policy = TimeoutPolicy::new(ms(2000)).expect("valid tick");
        for (requested, granted) in [
            (0, 4000),
            (1000, 4000),
            (3000, 4000),
            (4000, 4000),
            (20_000, 20_000),
            (30_000, 30_000),
            (40_000, 40_000),
            (60_000, 40_000),
            (u64::MAX / 2, 40_000),
        ] {
            assert_eq!(policy.negotiate(ms(requested)), ms(granted), "{requested}");
        }
        // ZooKeeper's in-code default tick of 3000.
        let policy = TimeoutPolicy::new(ms(3000)).expect("valid tick");
        assert_eq!((policy.min(), policy.max()), (ms(6000), ms(60_000)));
        assert_eq!(policy.negotiate(ms(5000)), ms(6000));
    }

    #[test]
    fn explicit_bounds_both_ways() {
        let policy = TimeoutPolicy::new(ms(100))
            .and_then(|p| p.with_bounds(ms(100), ms(100)))
            .expect("valid bounds");
        assert_eq!(policy.negotiate(ms(1)), ms(100));
        assert_eq!(policy.negotiate(ms(10_000)), ms(100));
        let policy = TimeoutPolicy::new(ms(100))
            .and_then(|p| p.with_bounds(ms(500), ms(90_000)))
            .expect("valid bounds");
        assert_eq!(policy.negotiate(ms(499)), ms(500));
        assert_eq!(policy.negotiate(ms(60_000)), ms(60_000));
        assert_eq!(policy.negotiate(ms(90_001)), ms(90_000));
    }

    #[test]
    fn invalid_policies_are_refused() {
        assert_eq!(
            TimeoutPolicy::new(Duration::ZERO),
            Err(TimeoutPolicyError::ZeroTick)
        );
        assert!(matches!(
            TimeoutPolicy::new(Duration::MAX),
            Err(TimeoutPolicyError::TickTooLong { .. })
        ));
        let policy = TimeoutPolicy::new(ms(2000)).expect("valid tick");
        assert_eq!(
            policy.with_bounds(ms(5000), ms(4000)),
            Err(TimeoutPolicyError::MinAboveMax {
                min: ms(5000),
                max: ms(4000)
            })
        );
        assert_eq!(
            policy.with_bounds(ms(1999), ms(4000)),
            Err(TimeoutPolicyError::MinBelowTick {
                min: ms(1999),
                tick: ms(2000)
            })
        );
        assert_eq!(
            policy
                .with_bounds(ms(5000), ms(4000))
                .expect_err("refused")
                .to_string(),
            "minimum session timeout 5s is above the maximum 4s"
        );
    }

    #[test]
    fn client_timings_follow_the_reference() {
        // Reference "Heartbeats and the client": read timeout 2/3·T, ping at T/3,
        // connect timeout T/hosts, client-side expiry 4/3·T.
        let timings = ClientTimings::new(ms(30_000), 5);
        assert_eq!(timings.session_timeout, ms(30_000));
        assert_eq!(timings.ping_interval, ms(10_000));
        assert_eq!(timings.read_timeout, ms(20_000));
        assert_eq!(timings.connect_timeout, ms(6000));
        assert_eq!(timings.expiry, ms(40_000));
        assert_eq!(ClientTimings::new(ms(4000), 0).connect_timeout, ms(4000));
    }
}
