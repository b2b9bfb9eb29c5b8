//! Session ids and their generator, in ZooKeeper's layout with its sign bug fixed.
//!
//! A [`SessionId`] is 64 bits: the [`ServerId`] in bits 63..56, the low 40 bits of
//! a millisecond wall-clock timestamp taken once at start-up in bits 55..16, and a
//! counter in bits 15..0. Later ids are the previous one plus one, so the counter
//! carries into the time bits. Unlike ZooKeeper before ZOOKEEPER-1622, the layout
//! is built with logical shifts, so ids are never "negative" and never collide
//! across servers, whatever the clock says.
//!
//! The wall clock is read by the caller, never here: [`IdGenerator::new`] takes
//! the start-up time in milliseconds and the highest id handed out before a
//! restart (if it was persisted), and starts above both.

use std::fmt;

use thiserror::Error;

/// Bits of the millisecond timestamp kept in an id.
const TIME_BITS: u32 = 40;
/// Bits of the counter below the timestamp.
const COUNTER_BITS: u32 = 16;
/// Mask of everything below the server id: the part a generator counts in.
const LOW_MASK: u64 = (1 << 56) - 1;

/// A session's identifier, unique across servers and restarts.
///
/// Displayed as ZooKeeper does, `0x` and 16 hexadecimal digits.
///
/// ```
/// use session_core::SessionId;
///
/// let id = SessionId::from_u64(0x0100_0003_42b8_0000);
/// assert_eq!(id.to_string(), "0x0100000342b80000");
/// assert_eq!(id.server_id(), 1);
/// assert_eq!(u64::from(id), 0x0100_0003_42b8_0000);
/// ```
///
/// With the `serde` feature it is (de)serialized as a plain `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct SessionId(u64);

impl SessionId {
    /// The id with this 64-bit value (as carried on the wire).
    #[must_use]
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// The 64-bit value.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The id of the server that minted this id (bits 63..56).
    #[must_use]
    pub const fn server_id(self) -> u8 {
        (self.0 >> 56) as u8
    }
}

impl From<u64> for SessionId {
    fn from(value: u64) -> Self {
        Self(value)
    }
}

impl From<SessionId> for u64 {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:016x}", self.0)
    }
}

/// A server's id, 1..=255: the top byte of every session id it mints.
///
/// ```
/// use session_core::{ServerId, ServerIdError};
///
/// assert_eq!(ServerId::new(7).map(ServerId::get), Ok(7));
/// assert_eq!(ServerId::new(0), Err(ServerIdError::OutOfRange { value: 0 }));
/// assert_eq!(ServerId::new(256), Err(ServerIdError::OutOfRange { value: 256 }));
/// ```
///
/// With the `serde` feature it is (de)serialized as a `u8`, and 0 is refused
/// when deserializing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(u8);

/// Why a server id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ServerIdError {
    /// The value is not in 1..=255.
    #[error("server id {value} is out of range 1..=255")]
    OutOfRange {
        /// The refused value.
        value: u64,
    },
}

impl ServerId {
    /// Validates a server id taken from configuration.
    pub fn new(value: u64) -> Result<Self, ServerIdError> {
        match u8::try_from(value) {
            Ok(byte) if byte != 0 => Ok(Self(byte)),
            _ => Err(ServerIdError::OutOfRange { value }),
        }
    }

    /// The id as a byte, 1..=255.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u64> for ServerId {
    type Error = ServerIdError;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ServerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ServerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let byte = <u8 as serde::Deserialize>::deserialize(deserializer)?;
        Self::new(u64::from(byte)).map_err(|_| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Unsigned(u64::from(byte)),
                &"a server id in 1..=255",
            )
        })
    }
}

/// The first id a server should hand out: the larger of the id built from the
/// start-up wall clock (`wall_clock_ms`, milliseconds since the Unix epoch) and
/// `high_water + 1`, where `high_water` is the highest id this server handed out
/// before it restarted (if persisted).
///
/// A `high_water` minted by another server is ignored. Returns `None` when
/// `high_water` is the last id of this server's range, so none is left.
///
/// ```
/// use session_core::{ServerId, SessionId, initial_session_id};
///
/// let server = ServerId::new(1)?;
/// // ZooKeeper 3.8.0 was observed handing out 0x0100000342b80000.
/// let first = initial_session_id(server, 0x0003_42b8, None);
/// assert_eq!(first, Some(SessionId::from_u64(0x0100_0003_42b8_0000)));
/// // After a restart with a clock that went backwards, the persisted mark wins.
/// let mark = SessionId::from_u64(0x0100_0003_42b8_0009);
/// assert_eq!(
///     initial_session_id(server, 0x0003_42b7, Some(mark)),
///     Some(SessionId::from_u64(0x0100_0003_42b8_000a)),
/// );
/// # Ok::<(), session_core::ServerIdError>(())
/// ```
#[must_use]
pub fn initial_session_id(
    server: ServerId,
    wall_clock_ms: u64,
    high_water: Option<SessionId>,
) -> Option<SessionId> {
    let base = u64::from(server.get()) << 56;
    // Logical shifts on u64: keep the low 40 bits of the clock, then place them
    // at bits 55..16. ZooKeeper's arithmetic shift copied bit 39 into the server
    // byte, which made ids negative and colliding from 2022 on.
    let from_clock =
        ((wall_clock_ms << (64 - TIME_BITS)) >> (64 - TIME_BITS - COUNTER_BITS)) & LOW_MASK;
    let after_mark = match high_water {
        Some(mark) if mark.server_id() == server.get() => {
            let low = mark.as_u64() & LOW_MASK;
            if low == LOW_MASK {
                return None;
            }
            low + 1
        }
        _ => 0,
    };
    Some(SessionId(base | from_clock.max(after_mark)))
}

/// Mints session ids for one server: `initial_session_id`, then `+ 1` each time.
///
/// It is an [`Iterator`] that ends only when the server's 2^56 ids are used up
/// (the counter never carries into the server byte).
///
/// ```
/// use session_core::{IdGenerator, ServerId, SessionId};
///
/// let mut ids = IdGenerator::new(ServerId::new(1)?, 0x0003_42b8, None);
/// assert_eq!(ids.next(), Some(SessionId::from_u64(0x0100_0003_42b8_0000)));
/// assert_eq!(ids.next(), Some(SessionId::from_u64(0x0100_0003_42b8_0001)));
/// // Persist this and pass it back after a restart.
/// assert_eq!(ids.high_water(), Some(SessionId::from_u64(0x0100_0003_42b8_0001)));
/// # Ok::<(), session_core::ServerIdError>(())
/// ```
#[derive(Debug, Clone)]
pub struct IdGenerator {
    server: ServerId,
    /// Low 56 bits of the next id; `LOW_MASK + 1` once exhausted.
    next_low: u64,
    high_water: Option<SessionId>,
}

impl IdGenerator {
    /// A generator starting at [`initial_session_id`]`(server, wall_clock_ms, high_water)`.
    #[must_use]
    pub fn new(server: ServerId, wall_clock_ms: u64, high_water: Option<SessionId>) -> Self {
        let next_low = match initial_session_id(server, wall_clock_ms, high_water) {
            Some(first) => first.as_u64() & LOW_MASK,
            None => LOW_MASK + 1,
        };
        let high_water = high_water.filter(|mark| mark.server_id() == server.get());
        Self {
            server,
            next_low,
            high_water,
        }
    }

    /// The server whose ids this generator mints.
    #[must_use]
    pub fn server_id(&self) -> ServerId {
        self.server
    }

    /// The highest id handed out so far (or the persisted mark it started from):
    /// what to persist so that a restart never repeats an id.
    #[must_use]
    pub fn high_water(&self) -> Option<SessionId> {
        self.high_water
    }

    /// The id the next call to `next` returns, without taking it.
    #[must_use]
    pub fn peek(&self) -> Option<SessionId> {
        (self.next_low <= LOW_MASK)
            .then(|| SessionId((u64::from(self.server.get()) << 56) | self.next_low))
    }

    /// Makes sure later ids are above `id` (used when restoring sessions).
    pub fn observe(&mut self, id: SessionId) {
        if id.server_id() == self.server.get() {
            let low = id.as_u64() & LOW_MASK;
            if low >= self.next_low {
                self.next_low = low + 1;
                self.high_water = Some(id);
            }
        }
    }
}

impl Iterator for IdGenerator {
    type Item = SessionId;

    fn next(&mut self) -> Option<SessionId> {
        let id = self.peek()?;
        self.next_low += 1;
        self.high_water = Some(id);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(value: u64) -> ServerId {
        ServerId::new(value).expect("test server id is valid")
    }

    #[test]
    fn layout_bit_by_bit() {
        // Server id 0xab, clock 0x12_3456_789a ms: id = ab 12 34 56 78 9a 00 00.
        let mut ids = IdGenerator::new(server(0xab), 0x12_3456_789a, None);
        let first = ids.next().expect("fresh generator has ids");
        assert_eq!(first.as_u64(), 0xab12_3456_789a_0000);
        assert_eq!(first.server_id(), 0xab);
        for bit in 0..64 {
            let expected = (0xab12_3456_789a_0000_u64 >> bit) & 1;
            assert_eq!((first.as_u64() >> bit) & 1, expected, "bit {bit}");
        }
        // Later ids are previous + 1 and carry from the counter into the time bits.
        let mut ids = IdGenerator::new(server(1), 0x0003_42b8, None);
        assert_eq!(ids.next(), Some(SessionId(0x0100_0003_42b8_0000)));
        assert_eq!(ids.next(), Some(SessionId(0x0100_0003_42b8_0001)));
        assert_eq!(ids.next(), Some(SessionId(0x0100_0003_42b8_0002)));
        let mut ids = IdGenerator::new(server(1), 0, Some(SessionId(0x0100_0000_0000_fffe)));
        assert_eq!(ids.next(), Some(SessionId(0x0100_0000_0000_ffff)));
        assert_eq!(ids.next(), Some(SessionId(0x0100_0000_0001_0000)));
    }

    #[test]
    fn clocks_past_2022_stay_positive_and_keep_server_byte() {
        // 2022-01-01 is 1_640_995_200_000 ms: bit 39 (and 40) of the clock set.
        // ZooKeeper's arithmetic shift produced 0xff.. here (ZOOKEEPER-1622).
        for ms in [
            1_640_995_200_000_u64,
            1_700_000_000_000,
            (1 << 39),
            (1 << 40) - 1,
            (1 << 40),
            (1 << 40) + 5,
            (1 << 41) - 1,
            u64::MAX,
        ] {
            for sid in [1, 2, 127, 128, 255] {
                let id = initial_session_id(server(sid), ms, None).expect("ids left");
                assert_eq!(id.server_id() as u64, sid, "ms {ms:#x} sid {sid}");
                assert_eq!((id.as_u64() >> 16) & ((1 << 40) - 1), ms & ((1 << 40) - 1));
                assert_eq!(id.as_u64() & 0xffff, 0);
                assert!((id.as_u64() as i64) >= 0 || sid >= 128, "ms {ms:#x}");
            }
        }
    }

    #[test]
    fn two_servers_never_collide() {
        let ms = 1_700_000_000_000;
        let a: Vec<_> = IdGenerator::new(server(1), ms, None).take(70_000).collect();
        let b: Vec<_> = IdGenerator::new(server(2), ms, None).take(70_000).collect();
        let mut all: std::collections::HashSet<_> = a.iter().copied().collect();
        assert!(a.iter().all(|id| id.server_id() == 1));
        assert!(b.iter().all(|id| id.server_id() == 2));
        for id in &b {
            assert!(all.insert(*id), "collision on {id}");
        }
        // A generator whose 56 bits are nearly used up stops instead of carrying
        // into the next server's byte.
        let mut ids = IdGenerator::new(server(1), 0, Some(SessionId(0x01ff_ffff_ffff_fffe)));
        assert_eq!(ids.next(), Some(SessionId(0x01ff_ffff_ffff_ffff)));
        assert_eq!(ids.next(), None);
        assert_eq!(
            initial_session_id(server(1), 0, Some(SessionId(0x01ff_ffff_ffff_ffff))),
            None
        );
    }

    #[test]
    fn no_repeat_after_restart_even_with_a_clock_that_went_back() {
        let mut before = IdGenerator::new(server(3), 1_700_000_000_000, None);
        let handed_out: Vec<_> = before.by_ref().take(100_000).collect();
        let mark = before.high_water();
        assert_eq!(mark, handed_out.last().copied());
        // Restart: the wall clock went back by a minute, and a second time at the
        // exact same millisecond.
        for ms in [1_700_000_000_000 - 60_000, 1_700_000_000_000] {
            let mut after = IdGenerator::new(server(3), ms, mark);
            let next = after.next().expect("ids left");
            assert!(handed_out.iter().all(|old| *old < next), "{next} repeats");
        }
        // A clock that moved forward wins over the mark.
        let later = initial_session_id(server(3), 1_700_000_100_000, mark).expect("ids left");
        assert_eq!(
            later.as_u64(),
            (3 << 56) | (1_700_000_100_000 & ((1 << 40) - 1)) << 16
        );
        // A mark minted by another server is ignored.
        let foreign = IdGenerator::new(server(4), 5, mark);
        assert_eq!(foreign.high_water(), None);
        assert_eq!(foreign.peek(), Some(SessionId((4 << 56) | (5 << 16))));
    }

    #[test]
    fn server_id_range_and_display() {
        assert!(ServerId::new(0).is_err());
        assert!(ServerId::new(1).is_ok());
        assert!(ServerId::new(255).is_ok());
        assert_eq!(
            ServerId::try_from(1000),
            Err(ServerIdError::OutOfRange { value: 1000 })
        );
        assert_eq!(
            ServerId::new(0).expect_err("0 refused").to_string(),
            "server id 0 is out of range 1..=255"
        );
        assert_eq!(SessionId(1).to_string(), "0x0000000000000001");
        assert_eq!(SessionId::from(u64::MAX).server_id(), 255);
    }

    #[test]
    fn observe_moves_the_generator_above_restored_ids() {
        let mut ids = IdGenerator::new(server(1), 10, None);
        ids.observe(SessionId((1 << 56) | (10 << 16) | 41));
        assert_eq!(ids.next(), Some(SessionId((1 << 56) | (10 << 16) | 42)));
        ids.observe(SessionId(2 << 56 | 999 << 16));
        assert_eq!(ids.next(), Some(SessionId((1 << 56) | (10 << 16) | 43)));
    }
}
