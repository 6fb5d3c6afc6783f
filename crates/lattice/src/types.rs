//! The basic lattices: max, last-writer-wins register, PN counter, and map
//! of lattices (which, holding registers, is also the store's set and hash).

use crate::{Lattice, NodeId, Stamp, Timestamp};
use hashbrown::{HashTable, hash_table};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

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
#[derive(Clone)]
pub struct LMap<K: Hash + Eq, V> {
    entries: HashTable<(K, V)>,
    hasher: foldhash::fast::RandomState,
    /// Counts the times entries may have moved between buckets (see
    /// [`LMap::layout`]).
    moves: u32,
}

impl<K: Hash + Eq, V> Default for LMap<K, V> {
    fn default() -> Self {
        LMap { entries: HashTable::new(), hasher: foldhash::fast::RandomState::default(), moves: 0 }
    }
}

impl<K: Hash + Eq, V> LMap<K, V> {
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.entries.find(self.hash(key), |(k, _)| k.borrow() == key).map(|(_, v)| v)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
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
        self.assign_keyed(key, value).0
    }
    /// [`LMap::assign`], with the key as the map holds it (the one it
    /// already had, if it had one).
    pub fn assign_keyed(&mut self, key: K, value: V) -> (Option<V>, &K) {
        let h = self.hash(&key);
        self.may_move(1);
        let hasher = &self.hasher;
        match self.entries.entry(h, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k)) {
            hash_table::Entry::Occupied(e) => {
                let (k, v) = e.into_mut();
                (Some(std::mem::replace(v, value)), k)
            }
            hash_table::Entry::Vacant(e) => (None, &e.insert((key, value)).into_mut().0),
        }
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
        self.assign_borrowed_keyed(key, to_key, value).0
    }
    /// [`LMap::assign_borrowed`], with the key as the map holds it.
    pub fn assign_borrowed_keyed<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
        to_key: impl FnOnce(&Q) -> K,
        value: V,
    ) -> (Option<V>, &K)
    where
        K: Borrow<Q>,
    {
        let h = self.hash(key);
        self.may_move(1);
        let hasher = &self.hasher;
        match self.entries.entry(h, |(k, _)| k.borrow() == key, |(k, _)| hasher.hash_one(k)) {
            hash_table::Entry::Occupied(e) => {
                let (k, v) = e.into_mut();
                (Some(std::mem::replace(v, value)), k)
            }
            hash_table::Entry::Vacant(e) => (None, &e.insert((to_key(key), value)).into_mut().0),
        }
    }
    /// Drops an entry outright. Not an inflation: only for garbage that every
    /// replica has seen (on a single node, at once).
    pub fn prune<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let gone = self.remove_entry(key).map(|(_, v)| v);
        // A map that lost most of its entries gives the room back (so that
        // random picks, which try buckets, keep finding entries).
        let (len, room) = (self.entries.len(), self.entries.capacity());
        if room > 64 && len * 8 < room {
            self.moves = self.moves.wrapping_add(1);
            let hasher = &self.hasher;
            self.entries.shrink_to(len * 2, |(k, _)| hasher.hash_one(k));
        }
        gone
    }

    /// An entry picked at random, each as likely as any other (a bucket at
    /// random, again while it is empty or `keep` refuses its entry), with
    /// its bucket; `None` after `tries` misses.
    pub fn random_entry(
        &self,
        mut random: impl FnMut() -> u64,
        tries: usize,
        keep: impl Fn(&K, &V) -> bool,
    ) -> Option<(usize, &K, &V)> {
        let buckets = self.entries.num_buckets() as u64;
        if buckets == 0 {
            return None;
        }
        (0..tries).find_map(|_| {
            let i = (random() % buckets) as usize;
            self.entries.get_bucket(i).filter(|(k, v)| keep(k, v)).map(|(k, v)| (i, k, v))
        })
    }
    pub fn reserve(&mut self, n: usize) {
        self.may_move(n);
        let hasher = &self.hasher;
        self.entries.reserve(n, |(k, _)| hasher.hash_one(k));
    }

    /// Notes that making room for `n` more entries would move entries (the
    /// table grows, or is rehashed to reclaim removed entries' buckets):
    /// hashbrown does that when it has no room left.
    fn may_move(&mut self, n: usize) {
        if n > self.entries.capacity() - self.entries.len() {
            self.moves = self.moves.wrapping_add(1);
        }
    }

    /// Changes whenever entries may have moved between buckets: a walk by
    /// bucket ([`LMap::walk_buckets`]) resumes where it stopped only while
    /// this is what it was, or it could miss entries.
    pub fn layout(&self) -> u32 {
        self.moves
    }

    /// Visits the entries in buckets `from` on, `budget` of them at most;
    /// returns the bucket to resume at, or `None` when none are left. Costs
    /// the buckets passed (at most 8 per entry: a map that lost most of its
    /// entries shrinks).
    pub fn walk_buckets(&self, from: usize, budget: usize, mut visit: impl FnMut(&K, &V)) -> Option<usize> {
        let mut left = budget;
        for i in from..self.entries.num_buckets() {
            if let Some((k, v)) = self.entries.get_bucket(i) {
                if left == 0 {
                    return Some(i);
                }
                visit(k, v);
                left -= 1;
            }
        }
        None
    }

    /// Removes `key`'s entry, giving back the key held as well.
    pub fn remove_entry<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
    {
        let h = self.hash(key);
        self.entries.find_entry(h, |(k, _)| k.borrow() == key).ok().map(|e| e.remove().0)
    }

    /// Starts loading the entry looking up `key` will read, without
    /// waiting for it, and says where that entry's key is: reading it waits
    /// for the load, so a batch first asks for all its entries, then reads
    /// them (and prefetches what they point to), and their cache misses
    /// overlap instead of coming one after another. Almost always the key's
    /// own entry; a mismatch only makes the hint useless.
    pub fn prefetch<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&K>
    where
        K: Borrow<Q>,
    {
        let (k, v) = self.entries.iter_hash(self.hash(key)).next()?;
        crate::prefetch(std::ptr::from_ref(k).cast());
        // The value's end may lie on the next line.
        crate::prefetch(std::ptr::from_ref(v).cast());
        Some(k)
    }
}

impl<K: Hash + Eq, V: PartialEq> PartialEq for LMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<K: Hash + Eq, V: Eq> Eq for LMap<K, V> {}

impl<K: Hash + Eq + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for LMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Hash + Eq + Serialize, V: Serialize> Serialize for LMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, K: Hash + Eq + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for LMap<K, V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Hash + Eq + Deserialize<'de>, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<K, V> {
            type Value = LMap<K, V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut map = LMap::default();
                map.reserve(a.size_hint().unwrap_or(0).min(4096));
                while let Some((k, v)) = a.next_entry()? {
                    map.assign(k, v);
                }
                Ok(map)
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

impl<K: Hash + Eq, V: Lattice> LMap<K, V> {
    /// Merges `value` into the entry at `key`.
    pub fn merge_entry(&mut self, key: K, value: V) {
        let h = self.hash(&key);
        self.may_move(1);
        let hasher = &self.hasher;
        match self.entries.entry(h, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k)) {
            hash_table::Entry::Occupied(mut e) => e.get_mut().1.merge(value),
            hash_table::Entry::Vacant(e) => {
                e.insert((key, value));
            }
        }
    }
}

impl<K: Hash + Eq, V> IntoIterator for LMap<K, V> {
    type Item = (K, V);
    type IntoIter = hash_table::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
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
