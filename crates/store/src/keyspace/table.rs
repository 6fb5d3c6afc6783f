//! The keys of one namespace on one shard: a hash table cut into small
//! partitions by the top bits of the key's hash (extendible hashing).
//!
//! Why partitions: a single table grows by rehashing everything at once, a
//! stall that grows with the shard (tens of milliseconds at a few million
//! keys); a partition splits in two when it fills, which moves at most
//! [`PART_MAX`] keys. And because partitions follow the hash's top bits,
//! walking them in order visits keys in hash order: a SCAN cursor is a hash
//! position, it survives splits, and a page costs its COUNT plus at most one
//! partition, never a pass over the shard.

use super::slot::Slot;
use hashbrown::HashTable;

/// Most keys a partition holds (7/8 of 256 buckets): a partition whose
/// table would grow past 256 buckets splits instead.
pub(crate) const PART_MAX: usize = 224;
/// A full table of at least this many keys splits rather than grows (a
/// full table of 128 buckets, or one of 256 that removals left without
/// free buckets).
const SPLIT_AT: usize = PART_MAX / 2;

/// Bits of a scan position: the hash's top 56 (the rest of a SCAN cursor
/// names the shard).
pub const POSITION_BITS: u32 = 56;

/// The hash that places a key on a shard and orders it in scans (stable
/// across versions and restarts).
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// A key's place in scan order within its shard.
pub fn position(h: u64) -> u64 {
    h >> (64 - POSITION_BITS)
}

/// The hash hashbrown sees: the partition's keys share their top bits, which
/// hashbrown uses for its control bytes, so they are mixed first.
fn inner(h: u64) -> u64 {
    // splitmix64's finaliser.
    let mut x = h ^ (h >> 30);
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn rehash(s: &Slot) -> u64 {
    inner(key_hash(s.key()))
}

struct Part {
    /// How many top bits of the hash all its keys share.
    depth: u32,
    /// Those bits.
    prefix: u64,
    slots: HashTable<Slot>,
}

pub(crate) struct Table {
    /// Bits of the hash that index `dir`.
    depth: u32,
    /// Partition of each `depth`-bit hash prefix; a partition of a smaller
    /// depth fills a run of entries.
    dir: Vec<u32>,
    parts: Vec<Part>,
    len: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table { depth: 0, dir: vec![0], parts: vec![Part { depth: 0, prefix: 0, slots: HashTable::new() }], len: 0 }
    }
}

impl Table {
    pub fn len(&self) -> usize {
        self.len
    }

    fn part_of(&self, h: u64) -> usize {
        let i = if self.depth == 0 { 0 } else { (h >> (64 - self.depth)) as usize };
        self.dir[i] as usize
    }

    pub fn get(&self, h: u64, key: &[u8]) -> Option<&Slot> {
        self.parts[self.part_of(h)].slots.find(inner(h), |s| s.key() == key)
    }

    pub fn get_mut(&mut self, h: u64, key: &[u8]) -> Option<&mut Slot> {
        let p = self.part_of(h);
        self.parts[p].slots.find_mut(inner(h), |s| s.key() == key)
    }

    /// Puts `slot` in place of the one with its key, or inserts it; returns
    /// the slot as placed and the one it replaced.
    pub fn put(&mut self, h: u64, slot: Slot) -> (&mut Slot, Option<Slot>) {
        let mut p = self.part_of(h);
        // A split can leave the key's half as full as before (a skewed
        // split): split again rather than grow.
        while self.full(p) {
            self.split(p);
            p = self.part_of(h);
        }

        match self.parts[p].slots.entry(inner(h), |s| s.key() == slot.key(), rehash) {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), slot);
                (e.into_mut(), Some(old))
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                self.len += 1;
                (e.insert(slot).into_mut(), None)
            }
        }
    }

    /// The keys with hash `h` (almost always one at most) that `pred` picks.
    pub fn keys_with_hash(&self, h: u64, mut pred: impl FnMut(&Slot) -> bool) -> Vec<Vec<u8>> {
        self.parts[self.part_of(h)]
            .slots
            .iter_hash(inner(h))
            .filter(|s| key_hash(s.key()) == h && pred(s))
            .map(|s| s.key().to_vec())
            .collect()
    }

    pub fn remove(&mut self, h: u64, key: &[u8]) -> Option<Slot> {
        let p = self.part_of(h);
        let found = self.parts[p].slots.find_entry(inner(h), |s| s.key() == key).ok()?;
        self.len -= 1;
        Some(found.remove().0)
    }

    /// Whether partition `p` should split before its next insert: its table
    /// is full and would otherwise grow to 256 buckets or beyond.
    fn full(&self, p: usize) -> bool {
        let part = &self.parts[p];
        let len = part.slots.len();
        len >= SPLIT_AT && len == part.slots.capacity() && part.depth < POSITION_BITS
    }

    /// Splits partition `p` by its next hash bit, doubling the directory
    /// first if the partition already uses all of its bits.
    fn split(&mut self, p: usize) {
        let d = self.parts[p].depth;
        if d == self.depth {
            self.dir = self.dir.iter().flat_map(|&i| [i, i]).collect();
            self.depth += 1;
        }
        let prefix = self.parts[p].prefix;
        let bit = 63 - d;
        let moved: Vec<Slot> = self.parts[p].slots.extract_if(|s| (key_hash(s.key()) >> bit) & 1 == 1).collect();
        // What stays gets a table of its size, without the holes.
        self.parts[p].slots.shrink_to_fit(rehash);
        let mut slots = HashTable::with_capacity(moved.len());
        for s in moved {
            let h = rehash(&s);
            slots.insert_unique(h, s, rehash);
        }
        let new = self.parts.len() as u32;
        self.parts.push(Part { depth: d + 1, prefix: (prefix << 1) | 1, slots });
        let old = &mut self.parts[p];
        old.depth = d + 1;
        old.prefix = prefix << 1;
        // The old partition's run of the directory: its upper half is the new one's.
        let span = 1usize << (self.depth - d);
        let lo = (prefix as usize) << (self.depth - d);
        for e in &mut self.dir[lo + span / 2..lo + span] {
            *e = new;
        }
    }

    /// Visits keys at or after scan position `from`, in position order
    /// across partitions (within one, in any order unless it is cut), until
    /// `budget` keys have been visited. Keys at one position are visited
    /// together. Returns where to resume, or `None` at the end.
    pub fn walk(&self, from: u64, budget: usize, mut visit: impl FnMut(&Slot)) -> Option<u64> {
        let shift = 64 - POSITION_BITS;
        let mut budget = budget.max(1);
        let mut i = if self.depth == 0 { 0 } else { ((from << shift) >> (64 - self.depth)) as usize };
        let mut from = from;
        while i < self.dir.len() {
            let part = &self.parts[self.dir[i] as usize];
            let span = 1usize << (self.depth - part.depth);
            let lo = i & !(span - 1);
            let end = lo + span;
            let mut found: Vec<(u64, &Slot)> =
                part.slots.iter().map(|s| (position(key_hash(s.key())), s)).filter(|(pos, _)| *pos >= from).collect();
            if found.len() > budget {
                found.sort_unstable_by_key(|(pos, _)| *pos);
                let last = found[budget - 1].0;
                let cut = found.iter().position(|(pos, _)| *pos > last);
                let rest = cut.unwrap_or(found.len());
                found.drain(..rest).for_each(|(_, s)| visit(s));
                if cut.is_some() {
                    // Something at a later position is left in this partition.
                    return Some(last + 1);
                }
                budget = 0;
            } else {
                budget -= found.len();
                found.into_iter().for_each(|(_, s)| visit(s));
            }
            if end == self.dir.len() {
                return None;
            }
            from = ((end as u64) << (64 - self.depth)) >> shift;
            i = end;
            if budget == 0 {
                return Some(from);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_lattice::{Stamp, Timestamp};
    use std::collections::BTreeSet;

    fn slot(k: &[u8]) -> Slot {
        Slot::register(k, Stamp::new(Timestamp(1), 1), None, b"v")
    }

    fn fill(n: usize) -> Table {
        let mut t = Table::default();
        for i in 0..n {
            let k = format!("key:{i}");
            t.put(key_hash(k.as_bytes()), slot(k.as_bytes()));
        }
        t
    }

    #[test]
    fn partitions_split_as_keys_arrive_and_every_key_stays_findable() {
        let t = fill(20_000);
        assert_eq!(t.len(), 20_000);
        assert!(t.parts.len() > 20_000 / PART_MAX, "{} partitions", t.parts.len());
        let worst = t.parts.iter().map(|p| (p.slots.len(), p.slots.capacity(), p.depth)).max();
        assert!(t.parts.iter().all(|p| p.slots.len() <= PART_MAX), "{worst:?} depth {}", t.depth);
        for i in 0..20_000 {
            let k = format!("key:{i}");
            assert!(t.get(key_hash(k.as_bytes()), k.as_bytes()).is_some(), "{k}");
        }
        assert!(t.get(key_hash(b"nope"), b"nope").is_none());
    }

    #[test]
    fn a_walk_in_small_pages_visits_every_key_once_in_position_order() {
        let mut t = fill(5_000);
        let mut seen = Vec::new();
        let mut from = 0;
        let mut pages = 0;
        loop {
            let mut page = Vec::new();
            let next = t.walk(from, 7, |s| page.push(s.key().to_vec()));
            assert!(page.len() <= 7 || next.is_none() || page.len() <= PART_MAX);
            seen.extend(page);
            pages += 1;
            // Keys arriving and leaving meanwhile do not disturb the walk.
            if pages % 10 == 0 {
                let k = format!("new:{pages}");
                t.put(key_hash(k.as_bytes()), slot(k.as_bytes()));
            }
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        let originals: BTreeSet<Vec<u8>> = (0..5_000).map(|i| format!("key:{i}").into_bytes()).collect();
        let got: BTreeSet<Vec<u8>> = seen.iter().cloned().collect();
        assert!(originals.is_subset(&got));
        let positions: Vec<u64> = seen.iter().map(|k| position(key_hash(k))).collect();
        // Within each page a partition's keys may come in any order; across the walk, no key twice.
        assert_eq!(got.len(), seen.len());
        assert!(positions.len() >= 5_000);
    }

    #[test]
    fn removing_keys_leaves_the_rest() {
        let mut t = fill(1_000);
        for i in (0..1_000).step_by(2) {
            let k = format!("key:{i}");
            assert!(t.remove(key_hash(k.as_bytes()), k.as_bytes()).is_some());
        }
        assert_eq!(t.len(), 500);
        let mut n = 0;
        assert_eq!(t.walk(0, usize::MAX, |_| n += 1), None);
        assert_eq!(n, 500);
    }
}
