//! Hybrid logical clock after Kulkarni et al., "Logical Physical Clocks" (2014).
//!
//! A timestamp packs the logical wall time `l` (milliseconds since the Unix
//! epoch, 48 bits) and the counter `c` (16 bits) into one `u64`, so timestamps
//! order as integers. Each shard owns its own clock; they share the physical
//! clock, and a message carries its sender's time so that whatever a
//! receiver stamps next is later (Lamport's rule).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::{SystemTime, UNIX_EPOCH};

const COUNTER_BITS: u32 = 16;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// A hybrid logical clock reading: wall milliseconds plus a counter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    pub fn new(wall_ms: u64, counter: u16) -> Self {
        Timestamp((wall_ms << COUNTER_BITS) | u64::from(counter))
    }
    /// The logical wall time in milliseconds since the Unix epoch.
    pub fn wall_ms(self) -> u64 {
        self.0 >> COUNTER_BITS
    }
    pub fn counter(self) -> u16 {
        (self.0 & COUNTER_MASK) as u16
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms(), self.counter())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Where the clock reads physical time; injectable so tests control time.
pub trait PhysicalClock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The one physical clock a node reads, shared by everything that needs the
/// time (stamps, expiry, time to live, deadlines), so a test can set it.
pub type Clock = Arc<dyn PhysicalClock>;

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a shared [`Clock`].
    pub fn shared() -> Clock {
        Arc::new(SystemClock)
    }
}

impl PhysicalClock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken machine; reading it as 0 keeps the HLC monotonic anyway.
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(ms: u64) -> Self {
        ManualClock(AtomicU64::new(ms))
    }
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl PhysicalClock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A remote timestamp was rejected instead of dragging the local clock forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "remote timestamp {remote} is {ahead_ms} ms ahead of local physical time (limit {max_drift_ms} ms); check the sender's clock"
)]
pub struct DriftError {
    pub remote: Timestamp,
    pub ahead_ms: u64,
    pub max_drift_ms: u64,
}

/// The default bound on how far ahead of local time a remote timestamp may be.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 500;

/// A hybrid logical clock owned by one thread (a shard, a commit's
/// coordinator): plain fields, no atomics, so stamping a write costs a
/// clock read and a comparison. Clocks of one node share the physical
/// [`Clock`]; causality between them travels in messages ([`Hlc::observe`]).
#[derive(Debug, Clone)]
pub struct Hlc {
    last: Timestamp,
    clock: Clock,
    max_drift_ms: u64,
}

impl Hlc {
    pub fn new(clock: Clock) -> Self {
        Hlc { last: Timestamp::ZERO, clock, max_drift_ms: DEFAULT_MAX_DRIFT_MS }
    }

    /// Physical time now, in milliseconds since the Unix epoch.
    pub fn physical_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The last timestamp this clock issued or observed.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A timestamp for a local or send event: greater than every earlier one.
    pub fn now(&mut self) -> Timestamp {
        self.now_at(self.clock.now_ms())
    }

    /// [`Hlc::now`] for a physical time the caller has just read from this
    /// clock's [`Clock`] (one read serving two purposes).
    pub fn now_at(&mut self, physical_ms: u64) -> Timestamp {
        self.last = local_rule(self.last, physical_ms);
        self.last
    }

    /// Moves the clock past `ts` without the drift check: for timestamps
    /// this node issued itself (another shard's, or from before a restart).
    /// The next [`Hlc::now`] is greater than `ts`.
    pub fn observe(&mut self, ts: Timestamp) {
        if ts > self.last {
            self.last = ts;
        }
    }

    /// The receive rule: merges a remote timestamp and returns one greater
    /// than both it and every earlier local one. Rejects a remote time more
    /// than the drift bound ahead of local physical time.
    pub fn update(&mut self, remote: Timestamp) -> Result<Timestamp, DriftError> {
        let pt = self.clock.now_ms();
        if remote.wall_ms() > pt.saturating_add(self.max_drift_ms) {
            return Err(DriftError { remote, ahead_ms: remote.wall_ms() - pt, max_drift_ms: self.max_drift_ms });
        }
        self.last = receive_rule(self.last, remote, pt);
        Ok(self.last)
    }
}

/// Send/local rule: l' = max(l, pt); c' = c + 1 if l did not move, else 0.
fn local_rule(last: Timestamp, pt: u64) -> Timestamp {
    let l = last.wall_ms();
    if pt > l { Timestamp::new(pt, 0) } else { bump(l, u64::from(last.counter()) + 1) }
}

/// Receive rule: l' = max(l, m.l, pt); the counter follows whichever inputs share l'.
fn receive_rule(last: Timestamp, remote: Timestamp, pt: u64) -> Timestamp {
    let (l, ml) = (last.wall_ms(), remote.wall_ms());
    let (c, mc) = (u64::from(last.counter()), u64::from(remote.counter()));
    let lp = l.max(ml).max(pt);
    let cp = if lp == l && lp == ml {
        c.max(mc) + 1
    } else if lp == l {
        c + 1
    } else if lp == ml {
        mc + 1
    } else {
        0
    };
    bump(lp, cp)
}

/// Builds (l, c), carrying a counter overflow into the wall part: the clock
/// runs at most a millisecond ahead instead of wrapping and going backwards.
fn bump(l: u64, c: u64) -> Timestamp {
    if c > COUNTER_MASK { Timestamp::new(l + 1, 0) } else { Timestamp::new(l, c as u16) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual(ms: u64) -> (Arc<ManualClock>, Hlc) {
        let clock = Arc::new(ManualClock::new(ms));
        (clock.clone(), Hlc::new(clock))
    }

    #[test]
    fn local_events_follow_physical_time_and_count_within_a_millisecond() {
        let (clock, mut hlc) = manual(1_000);
        assert_eq!(hlc.now(), Timestamp::new(1_000, 0));
        assert_eq!(hlc.now(), Timestamp::new(1_000, 1));
        assert_eq!(hlc.now(), Timestamp::new(1_000, 2));
        clock.advance(5);
        assert_eq!(hlc.now(), Timestamp::new(1_005, 0));
    }

    #[test]
    fn a_physical_clock_that_goes_backwards_does_not_move_the_hlc_backwards() {
        let (clock, mut hlc) = manual(2_000);
        let a = hlc.now();
        clock.set(1_000);
        let b = hlc.now();
        assert!(b > a);
        assert_eq!(b, Timestamp::new(2_000, 1));
    }

    #[test]
    fn receive_takes_the_remote_time_when_it_is_ahead() {
        let (_clock, mut hlc) = manual(1_000);
        hlc.now();
        let got = hlc.update(Timestamp::new(1_200, 7)).unwrap();
        assert_eq!(got, Timestamp::new(1_200, 8));
        // The next local event stays ahead of what was received.
        assert_eq!(hlc.now(), Timestamp::new(1_200, 9));
    }

    #[test]
    fn receive_with_equal_wall_times_takes_the_larger_counter_plus_one() {
        let (_clock, mut hlc) = manual(1_000);
        hlc.now();
        hlc.now(); // (1000, 1)
        assert_eq!(hlc.update(Timestamp::new(1_000, 5)).unwrap(), Timestamp::new(1_000, 6));
        assert_eq!(hlc.update(Timestamp::new(1_000, 2)).unwrap(), Timestamp::new(1_000, 7));
    }

    #[test]
    fn receive_of_an_old_timestamp_uses_physical_time() {
        let (clock, mut hlc) = manual(1_000);
        hlc.now();
        clock.set(3_000);
        assert_eq!(hlc.update(Timestamp::new(1_500, 3)).unwrap(), Timestamp::new(3_000, 0));
    }

    #[test]
    fn a_remote_time_beyond_the_drift_bound_is_rejected_and_leaves_the_clock_alone() {
        let (_clock, mut hlc) = manual(10_000);
        let before = hlc.now();
        let err = hlc.update(Timestamp::new(10_501, 0)).unwrap_err();
        assert_eq!(err.ahead_ms, 501);
        assert_eq!(hlc.last(), before);
        // Exactly at the bound is accepted.
        assert_eq!(hlc.update(Timestamp::new(10_500, 0)).unwrap(), Timestamp::new(10_500, 1));
    }

    #[test]
    fn observing_a_stamp_orders_the_next_event_after_it() {
        let (_clock, mut hlc) = manual(1_000);
        hlc.observe(Timestamp::new(1_000, 40));
        assert_eq!(hlc.now(), Timestamp::new(1_000, 41));
        // An older stamp changes nothing.
        hlc.observe(Timestamp::new(999, 0));
        assert_eq!(hlc.now(), Timestamp::new(1_000, 42));
    }

    #[test]
    fn counter_overflow_carries_into_the_wall_time() {
        let (_clock, mut hlc) = manual(1_000);
        hlc.update(Timestamp::new(1_000, u16::MAX)).unwrap();
        assert_eq!(hlc.last(), Timestamp::new(1_001, 0));
    }

    proptest::proptest! {
        #[test]
        fn every_event_is_later_than_the_last(ops in proptest::collection::vec((0u64..3_000, proptest::option::of((0u64..3_000, 0u16..100))), 1..200)) {
            let (clock, mut hlc) = manual(0);
            let mut last = Timestamp::ZERO;
            for (pt, remote) in ops {
                clock.set(pt);
                let t = match remote {
                    Some((ml, mc)) => {
                        let m = Timestamp::new(ml, mc);
                        match hlc.update(m) {
                            Ok(t) => { proptest::prop_assert!(t > m); t }
                            Err(_) => { proptest::prop_assert!(ml > pt + DEFAULT_MAX_DRIFT_MS); continue }
                        }
                    }
                    None => hlc.now(),
                };
                proptest::prop_assert!(t > last);
                proptest::prop_assert!(t.wall_ms() >= pt);
                last = t;
            }
        }
    }
}
