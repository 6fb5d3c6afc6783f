//! Placement: which shard thread an invocation runs on. Where the
//! function's data is (the shard its last invocation touched first); a
//! function with no data yet runs on the caller's shard thread if it is on
//! one (an HTTP or RESP connection, another invocation), where starting the
//! task takes no hop between threads; else the shards take turns.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The shard a function's data was last found on, once there is one.
#[derive(Debug)]
pub(crate) struct Affinity(AtomicUsize);

/// No shard yet: its invocations have not touched the store.
const NONE: usize = usize::MAX;

impl Default for Affinity {
    fn default() -> Self {
        Affinity(AtomicUsize::new(NONE))
    }
}

impl Affinity {
    pub fn get(&self) -> Option<usize> {
        Some(self.0.load(Ordering::Relaxed)).filter(|s| *s != NONE)
    }

    pub fn set(&self, shard: usize) {
        self.0.store(shard, Ordering::Relaxed);
    }
}

/// The shard (of `shards`) to run on: the function's `home`, else the
/// caller's shard thread (`here`), else the next in turn (`turn` is only
/// asked then, so the turns go round among the calls that need one).
pub(crate) fn shard(home: Option<usize>, here: Option<usize>, turn: impl FnOnce() -> usize, shards: usize) -> usize {
    home.or(here).unwrap_or_else(turn) % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_first_then_the_callers_thread_then_turns() {
        let no_turn = || panic!("placed by turn although it had a place");
        assert_eq!(shard(Some(2), Some(1), no_turn, 4), 2);
        assert_eq!(shard(None, Some(1), no_turn, 4), 1);

        let next = AtomicUsize::new(3);
        let turn = || next.fetch_add(1, Ordering::Relaxed);
        let placed: Vec<usize> = (0..3).map(|_| shard(None, None, turn, 4)).collect();
        assert_eq!(placed, [3, 0, 1]);
    }
}
