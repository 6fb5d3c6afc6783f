//! The basic lattices: max, last-writer-wins register, PN counter, add-wins
//! set, and map of lattices.

use crate::{Lattice, NodeId, Stamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
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
/// real writes; ordering them by value keeps merge commutative anyway.
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

/// Counter of increments and decrements: each node owns one slot of two
/// grow-only totals; merge takes the larger total per slot.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct PnCounter {
    slots: BTreeMap<NodeId, (u64, u64)>,
}

impl PnCounter {
    /// The counter's value. Totals beyond `i64` saturate.
    pub fn value(&self) -> i64 {
        let (p, n) =
            self.slots.values().fold((0i128, 0i128), |(p, n), (sp, sn)| (p + i128::from(*sp), n + i128::from(*sn)));
        (p - n).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Adds `delta` as node `node`. Returns `None`, changing nothing, if the
    /// counter's value or the slot's totals would overflow.
    pub fn add(&mut self, node: NodeId, delta: i64) -> Option<i64> {
        let result = self.value().checked_add(delta)?;
        let slot = self.slots.entry(node).or_default();
        if delta >= 0 {
            slot.0 = slot.0.checked_add(delta as u64)?;
        } else {
            slot.1 = slot.1.checked_add(delta.unsigned_abs())?;
        }
        Some(result)
    }

    pub fn slots(&self) -> impl Iterator<Item = (NodeId, u64, u64)> + '_ {
        self.slots.iter().map(|(n, (p, m))| (*n, *p, *m))
    }
}

impl Lattice for PnCounter {
    fn merge(&mut self, other: Self) {
        for (node, (p, n)) in other.slots {
            let slot = self.slots.entry(node).or_default();
            slot.0 = slot.0.max(p);
            slot.1 = slot.1.max(n);
        }
    }
}

/// A unique add event: the node that added and its per-set sequence number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Dot {
    pub node: NodeId,
    pub seq: u64,
}

/// Add-wins observed-remove set without tombstones (ORSWOT, Bieniusa et al.
/// 2012). Each element carries the dots of the adds that made it present; the
/// context (a version vector) records every dot this replica has seen. A
/// remove drops the element's dots, which stay in the context, so a merge with
/// a replica that still has them does not bring the element back; an add the
/// remover never saw carries a new dot and survives: adds win over concurrent
/// removes, and removals of observed adds are honoured.
///
/// Elements live in a hash map: a set has no order (as in Redis), and
/// inserting into a large set must not cost a string comparison per level.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize + Hash + Eq", deserialize = "T: Deserialize<'de> + Hash + Eq"))]
pub struct AwSet<T: Hash + Eq> {
    entries: Hashed<T, Vec<Dot>>,
    context: BTreeMap<NodeId, u64>,
}

impl<T: Hash + Eq> Default for AwSet<T> {
    fn default() -> Self {
        AwSet { entries: Hashed::default(), context: BTreeMap::new() }
    }
}

impl<T: Hash + Eq + Clone> AwSet<T> {
    pub fn contains(&self, item: &T) -> bool {
        self.entries.contains_key(item)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.keys()
    }
    /// Each element with the dots that keep it present.
    pub fn entries(&self) -> impl Iterator<Item = (&T, &[Dot])> {
        self.entries.iter().map(|(k, d)| (k, d.as_slice()))
    }
    pub fn dots(&self, item: &T) -> Option<&[Dot]> {
        self.entries.get(item).map(Vec::as_slice)
    }
    pub fn context(&self) -> &BTreeMap<NodeId, u64> {
        &self.context
    }

    /// Adds `item` as node `node`. Returns whether it was absent before.
    pub fn insert(&mut self, node: NodeId, item: T) -> bool {
        let seq = self.context.entry(node).or_default();
        *seq += 1;
        let dot = Dot { node, seq: *seq };
        // The element's older dots are in the context: replacing them is a removal of observed adds plus a new add.
        self.entries.insert(item, vec![dot]).is_none()
    }

    /// Removes `item` (the adds this replica has observed). Returns whether it was present.
    pub fn remove(&mut self, item: &T) -> bool {
        self.entries.remove(item).is_some()
    }

    /// Rebuilds a set from stored parts; the caller vouches that every dot is
    /// covered by `context` (it came from a set that upheld that).
    pub fn from_parts(entries: impl IntoIterator<Item = (T, Vec<Dot>)>, context: BTreeMap<NodeId, u64>) -> Self {
        AwSet { entries: entries.into_iter().collect(), context }
    }

    fn seen(context: &BTreeMap<NodeId, u64>, dot: &Dot) -> bool {
        context.get(&dot.node).is_some_and(|seq| *seq >= dot.seq)
    }
}

impl<T: Hash + Eq + Clone> Lattice for AwSet<T> {
    fn merge(&mut self, other: Self) {
        let mut entries = Hashed::default();
        let mut theirs = other.entries;
        for (item, ours) in std::mem::take(&mut self.entries) {
            let their_dots = theirs.remove(&item).unwrap_or_default();
            let mut dots: Vec<Dot> =
                ours.iter().filter(|d| their_dots.contains(d) || !Self::seen(&other.context, d)).copied().collect();
            dots.extend(their_dots.iter().filter(|d| !ours.contains(d) && !Self::seen(&self.context, d)));
            if !dots.is_empty() {
                dots.sort_unstable();
                entries.insert(item, dots);
            }
        }
        for (item, their_dots) in theirs {
            let mut dots: Vec<Dot> = their_dots.into_iter().filter(|d| !Self::seen(&self.context, d)).collect();
            if !dots.is_empty() {
                dots.sort_unstable();
                entries.insert(item, dots);
            }
        }
        self.entries = entries;
        for (node, seq) in other.context {
            let mine = self.context.entry(node).or_default();
            *mine = (*mine).max(seq);
        }
    }
}

/// A map whose values are lattices, merged key by key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LMap<K: Ord, V> {
    entries: BTreeMap<K, V>,
}

impl<K: Ord, V> Default for LMap<K, V> {
    fn default() -> Self {
        LMap { entries: BTreeMap::new() }
    }
}

impl<K: Ord, V: Lattice> LMap<K, V> {
    /// Merges `value` into the entry at `key`.
    pub fn merge_entry(&mut self, key: K, value: V) {
        match self.entries.entry(key) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(value),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(value);
            }
        }
    }
    pub fn get(&self, key: &K) -> Option<&V> {
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
    /// Drops an entry outright. Not an inflation: only for garbage that every
    /// replica has seen (on a single node, at once).
    pub fn prune(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key)
    }
}

impl<K: Ord, V: Lattice> Lattice for LMap<K, V> {
    fn merge(&mut self, other: Self) {
        for (k, v) in other.entries {
            self.merge_entry(k, v);
        }
    }
}

impl<K: Ord, V: Lattice> FromIterator<(K, V)> for LMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = LMap::default();
        for (k, v) in iter {
            map.merge_entry(k, v);
        }
        map
    }
}
