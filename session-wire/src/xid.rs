//! Request ids (xids): positive, chosen by the client, wrapping back to 1.

use std::fmt;

/// A request id: a positive `i32` the client puts on a request and the server
/// copies onto its reply.
///
/// Never 0 or negative, so it cannot collide with the special negative xids
/// ZooKeeper reserves for pings and notifications (ZOOKEEPER-3253: a counter
/// that overflowed into them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Xid(i32);

impl Xid {
    /// The first xid of a connection, and the one after [`Xid::MAX`].
    pub const FIRST: Self = Self(1);

    /// The largest xid, after which the counter wraps to [`Xid::FIRST`].
    pub const MAX: Self = Self(i32::MAX);

    /// The xid `raw`, or `None` when it is 0 or negative (as a server checks a
    /// request's xid).
    #[must_use]
    pub fn new(raw: i32) -> Option<Self> {
        (raw > 0).then_some(Self(raw))
    }

    /// The raw value, as put in `Request.xid`.
    #[must_use]
    pub fn get(self) -> i32 {
        self.0
    }

    /// The xid after this one: one more, or [`Xid::FIRST`] after [`Xid::MAX`].
    #[must_use]
    pub fn successor(self) -> Self {
        match self.0.checked_add(1) {
            Some(next) => Self(next),
            None => Self::FIRST,
        }
    }
}

impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Xid> for i32 {
    fn from(xid: Xid) -> Self {
        xid.0
    }
}

/// Hands out xids for one client: 1, 2, ..., `i32::MAX`, then 1 again.
///
/// After a wrap an xid can only collide with a request still in flight from
/// two billion requests earlier; the client fails requests long before that.
#[derive(Debug, Clone)]
pub struct XidCounter {
    next: Xid,
}

impl Default for XidCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl XidCounter {
    /// A counter whose first xid is 1.
    #[must_use]
    pub fn new() -> Self {
        Self::starting_at(Xid::FIRST)
    }

    /// A counter whose first xid is `first` (a client resuming a sequence, or
    /// a test of the wrap).
    #[must_use]
    pub fn starting_at(first: Xid) -> Self {
        Self { next: first }
    }

    /// The next xid; advances the counter.
    pub fn next_xid(&mut self) -> Xid {
        let xid = self.next;
        self.next = xid.successor();
        xid
    }

    /// The xid the next call to [`next_xid`](Self::next_xid) returns.
    #[must_use]
    pub fn peek(&self) -> Xid {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_one() {
        let mut counter = XidCounter::new();
        let xids: Vec<i32> = (0..3).map(|_| counter.next_xid().get()).collect();
        assert_eq!(xids, [1, 2, 3]);
        assert_eq!(counter.peek().get(), 4);
    }

    #[test]
    fn wraps_to_one_never_zero_or_negative() {
        let start = Xid::new(i32::MAX - 1).expect("invariant: i32::MAX - 1 is positive");
        let mut counter = XidCounter::starting_at(start);
        let xids: Vec<i32> = (0..4).map(|_| counter.next_xid().get()).collect();
        assert_eq!(xids, [i32::MAX - 1, i32::MAX, 1, 2]);
    }

    #[test]
    fn only_positive_values_are_xids() {
        assert_eq!(Xid::new(0), None);
        assert_eq!(Xid::new(-1), None);
        assert_eq!(Xid::new(-2), None);
        assert_eq!(Xid::new(i32::MIN), None);
        assert_eq!(Xid::new(1), Some(Xid::FIRST));
        assert_eq!(Xid::new(i32::MAX), Some(Xid::MAX));
        assert_eq!(Xid::MAX.successor(), Xid::FIRST);
        assert_eq!(i32::from(Xid::FIRST), 1);
        assert_eq!(Xid::MAX.to_string(), "2147483647");
    }
}
