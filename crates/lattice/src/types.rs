//! The basic lattices: max, last-writer-wins register, PN counter, and map
//! of lattices (which, holding registers, is also the store's set and hash).

use crate::{Lattice, NodeId, Stamp, Timestamp};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

type Hashed<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The larger value wins.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default, Serialize, Deserialize)]
pub struct Max<T>(pub T);

impl<T: Ord> Lattice for Max<T> {
    fn merge(&mut self, other: Self) {
        if other.0 > self.0 {
            self.0 = other.0;
        }
    }
}

/// Last-writer-wins register: the write with the greater stamp (HLC time,
/// then node id) wins. Two different values under one stamp cannot come from
/// real writes; ordering them by value keeps merge commutative anyway (and
/// makes a set member's add win over a remove with the same stamp).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Lww<T> {
    pub stamp: Stamp,
    pub value: T,
}

impl<T> Lww<T> {
    pub fn new(stamp: Stamp, value: T) -> Self {
        Lww { stamp, value }
    }
}

impl<T: Ord> Lww<T> {
    /// Writes `value` at `stamp` if that is newer than what is held.
    pub fn set(&mut self, stamp: Stamp, value: T) {
        self.merge(Lww { stamp, value });
    }
}

impl<T: Ord> Lattice for Lww<T> {
    fn merge(&mut self, other: Self) {
        if (other.stamp, &other.value) > (self.stamp, &self.value) {
            *self = other;
        }
    }
}

/// One node's part of a [`PnCounter`]: its grow-only totals of increments
/// and decrements, and the time of the write that last changed them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Slot {
    pub node: NodeId,
    pub plus: u64,
    pub minus: u64,
    pub stamp: Timestamp,
}

impl Slot {
    fn order(&self) -> (Timestamp, u64, u64) {
        (self.stamp, self.plus, self.minus)
    }

    /// What this slot alone counts. Totals beyond `i64` saturate.
    pub fn value(&self) -> i64 {
        (i128::from(self.plus) - i128::from(self.minus)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// This slot after adding `delta` at `time`, and the value it then
    /// counts (for a counter that has only this slot: [`PnCounter::add`]
    /// without building one). `None` if anything would overflow.
    pub fn added(self, delta: i64, time: Timestamp) -> Option<(Slot, i64)> {
        let result = self.value().checked_add(delta)?;
        if delta == 0 {
            return Some((self, result));
        }
        let (plus, minus) = if delta >= 0 {
            (self.plus.checked_add(delta as u64)?, self.minus)
        } else {
            (self.plus, self.minus.checked_add(delta.unsigned_abs())?)
        };
        Some((Slot { plus, minus, stamp: self.stamp.max(time), ..self }, result))
    }
}

/// Counter of increments and decrements: each node owns one slot of two
/// grow-only totals. A node only ever raises its own slot, at its own
/// stamps, so the slot written last has the largest totals: slots merge by
/// stamp (as every write does), which is also the larger-totals merge.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct PnCounter {
    /// Sorted by node; a handful at most, so a vector beats a tree.
    slots: Vec<Slot>,
}

impl PnCounter {
    /// The counter's value. Totals beyond `i64` saturate.
    pub fn value(&self) -> i64 {
        let (p, n) =
            self.slots.iter().fold((0i128, 0i128), |(p, n), s| (p + i128::from(s.plus), n + i128::from(s.minus)));
        (p - n).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    fn slot_mut(&mut self, node: NodeId) -> &mut Slot {
        let i = match self.slots.binary_search_by_key(&node, |s| s.node) {
            Ok(i) => i,
            Err(i) => {
                self.slots.insert(i, Slot { node, ..Slot::default() });
                i
            }
        };
        &mut self.slots[i]
    }

    /// Adds `delta` in the slot of `at`'s node, at `at`'s time. Returns
    /// `None`, changing nothing, if the counter's value or the slot's totals
    /// would overflow.
    pub fn add(&mut self, at: Stamp, delta: i64) -> Option<i64> {
        let result = self.value().checked_add(delta)?;
        if delta == 0 {
            return Some(result);
        }
        let slot = self.slot_mut(at.node);
        // The slot's own value is not the counter's: only its totals are taken.
        let (added, _) = slot.added(delta, at.time)?;
        *slot = added;
        Some(result)
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The slot of `node`, if it has counted anything.
    pub fn slot(&self, node: NodeId) -> Option<Slot> {
        self.slots.binary_search_by_key(&node, |s| s.node).ok().map(|i| self.slots[i])
    }

    /// Merges one slot in (the later write wins; an empty slot is nothing).
    pub fn merge_slot(&mut self, s: Slot) {
        if s.plus == 0 && s.minus == 0 {
            return;
        }
        let mine = self.slot_mut(s.node);
        if s.order() > mine.order() {
            *mine = s;
        }
    }

    pub fn from_slots(slots: impl IntoIterator<Item = Slot>) -> Self {
        let mut c = PnCounter::default();
        for s in slots {
            c.merge_slot(s);
        }
        c
    }
}

impl Lattice for PnCounter {
    fn merge(&mut self, other: Self) {
        for s in other.slots {
            self.merge_slot(s);
        }
    }
}

/// A map whose values are lattices, merged key by key. Entries live in a
/// hash map: a Redis hash or set has no order, and writing into a large one
/// must not cost a comparison per tree level.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Hash + Eq, V: Serialize",
    deserialize = "K: Deserialize<'de> + Hash + Eq, V: Deserialize<'de>"
))]
pub struct LMap<K: Hash + Eq, V> {
    entries: Hashed<K, V>,
}

impl<K: Hash + Eq, V> Default for LMap<K, V> {
    fn default() -> Self {
        LMap { entries: Hashed::default() }
    }
}

impl<K: Hash + Eq, V> LMap<K, V> {
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Puts `value` at `key` whatever was there: for the writes of one atomic
    /// unit, where a later write to the same entry under the same stamp
    /// replaces the earlier (a lattice merge would keep the larger).
    pub fn assign(&mut self, key: K, value: V) -> Option<V> {
        self.entries.insert(key, value)
    }
    /// [`LMap::assign`] for a key given borrowed: it is turned into a key
    /// (copied, say) only if it is new.
    pub fn assign_borrowed<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
        to_key: impl FnOnce(&Q) -> K,
        value: V,
    ) -> Option<V>
    where
        K: Borrow<Q>,
    {
        match self.entries.get_mut(key) {
            Some(old) => Some(std::mem::replace(old, value)),
            None => {
                self.entries.insert(to_key(key), value);
                None
            }
        }
    }
    /// Drops an entry outright. Not an inflation: only for garbage that every
    /// replica has seen (on a single node, at once).
    pub fn prune<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.entries.remove(key)
    }
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }
}

impl<K: Hash + Eq, V: Lattice> LMap<K, V> {
    /// Merges `value` into the entry at `key`.
    pub fn merge_entry(&mut self, key: K, value: V) {
        match self.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(value),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(value);
            }
        }
    }
}

impl<K: Hash + Eq, V: Lattice> Lattice for LMap<K, V> {
    fn merge(&mut self, other: Self) {
        for (k, v) in other.entries {
            self.merge_entry(k, v);
        }
    }
}

impl<K: Hash + Eq, V: Lattice> FromIterator<(K, V)> for LMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = LMap::default();
        for (k, v) in iter {
            map.merge_entry(k, v);
        }
        map
    }
}
