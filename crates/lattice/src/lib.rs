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
//! Why not the `lattices` crate (Hydro) or `uhlc`: `lattices` 0.7 has the
//! composition tools (max, set union, map union, dominating pair) but no PN
//! counter, no add-wins set that honours removals and no HLC-stamped
//! register, which are most of what the store needs, and its newer releases
//! are alpha only; the few generic pieces are short enough to own. `uhlc`
//! takes its physical clock as a global function pointer (one fake clock per
//! process, so tests could not run side by side), guards its state with a
//! mutex on every stamp, and carries a 16-byte id; [`Hlc`] is lock-free (one
//! atomic), takes a clock per instance and stamps with a `u64` node id.

mod hlc;
mod types;
mod value;

pub use hlc::{DEFAULT_MAX_DRIFT_MS, DriftError, Hlc, ManualClock, PhysicalClock, SystemClock, Timestamp};
pub use types::{AwSet, Dot, LMap, Lww, Max, PnCounter};
pub use value::{Entry, Kind, Value};

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
    pub fn new(time: Timestamp, node: NodeId) -> Self {
        Stamp { time, node }
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
