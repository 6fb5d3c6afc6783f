//! Lattice types and hybrid logical clocks: the data model of Squall's store.
//!
//! Every value in the store is a join semilattice: `merge` is associative,
//! commutative and idempotent, so replicas that apply the same writes in any
//! order, any number of times, end in the same state (Anna, ICDE'18). This
//! crate owns those types, their merge, and the HLC that stamps writes. It is
//! pure: no I/O, no threads, no async.
//!
//! Local operations (`Lww::set`, `PnCounter::add`, `AwSet::insert`...) are
//! inflations: the state after an operation is greater than or equal to the
//! state before it in the lattice order, so they compose with merge.
//!
//! Every write carries one stamp (HLC time and node id), and every part of a
//! value it changes merges by that stamp: a register's epoch, each set
//! member and hash field, an expiry. A set is therefore a map of
//! last-writer-wins members (an add wins a tie), not an observed-remove set
//! with dots: members stamped with the time of their last add or remove are
//! what a window log replayed in stamp order, a replica, or a read "as of T"
//! needs, and an atomic commit stamps them all with one time.
//!
//! Why not the `lattices` crate (Hydro) or `uhlc`: `lattices` 0.7 has the
//! composition tools (max, set union, map union, dominating pair) but no PN
//! counter and no HLC-stamped register, which are most of what the store
//! needs, and its newer releases are alpha only; the few generic pieces are
//! short enough to own. `uhlc` takes its physical clock as a global function
//! pointer (one fake clock per process, so tests could not run side by
//! side), guards its state with a mutex on every stamp, and carries a
//! 16-byte id; [`Hlc`] is a plain value owned by one thread (each shard has
//! its own, no shared atomic to contend on), takes an injected clock and
//! stamps with a `u64` node id.

mod hint;
mod hlc;
mod types;
mod value;
mod zset;

pub use hint::prefetch;
pub use hlc::{Clock, DEFAULT_MAX_DRIFT_MS, DriftError, Hlc, ManualClock, PhysicalClock, SystemClock, Timestamp};
pub use types::{LMap, Lww, Max, PnCounter, Slot};
pub use value::{Entry, Fields, Items, Kind, Members, Place, Value};
pub use zset::{Score, ScoreReg, ZSet, format_score};

use serde::{Deserialize, Serialize};

/// Identifies a node (a replica). Part of every stamp, so that two writes at
/// the same HLC time on different nodes still order deterministically.
pub type NodeId = u64;

/// When and where a write happened: HLC time, with the node id as tie-break.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Stamp {
    pub time: Timestamp,
    pub node: NodeId,
}

impl Stamp {
    pub const ZERO: Stamp = Stamp { time: Timestamp::ZERO, node: 0 };

    pub fn new(time: Timestamp, node: NodeId) -> Self {
        Stamp { time, node }
    }

    /// The same time, on another node.
    pub fn with_node(self, node: NodeId) -> Self {
        Stamp { node, ..self }
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{:x}", self.time, self.node)
    }
}

/// A join semilattice.
pub trait Lattice {
    /// Joins `other` into `self` (least upper bound).
    fn merge(&mut self, other: Self);

    /// The join of two values.
    fn join(mut self, other: Self) -> Self
    where
        Self: Sized,
    {
        self.merge(other);
        self
    }
}

/// Property-test helpers: the three lattice laws, for any type.
#[doc(hidden)]
pub mod laws {
    use super::Lattice;
    use std::fmt::Debug;

    pub fn associative<L: Lattice + Clone + PartialEq + Debug>(a: &L, b: &L, c: &L) -> bool {
        let left = a.clone().join(b.clone()).join(c.clone());
        let right = a.clone().join(b.clone().join(c.clone()));
        left == right
    }
    pub fn commutative<L: Lattice + Clone + PartialEq + Debug>(a: &L, b: &L) -> bool {
        a.clone().join(b.clone()) == b.clone().join(a.clone())
    }
    pub fn idempotent<L: Lattice + Clone + PartialEq + Debug>(a: &L) -> bool {
        a.clone().join(a.clone()) == *a
    }
    /// `after` is an inflation of `before`: before ⊔ after == after.
    pub fn inflation<L: Lattice + Clone + PartialEq + Debug>(before: &L, after: &L) -> bool {
        before.clone().join(after.clone()) == *after
    }
}
