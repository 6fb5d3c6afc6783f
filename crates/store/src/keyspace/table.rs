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
use squall_lattice::prefetch;

/// Most keys a partition holds: 7/8 of its 128 buckets. A partition whose
/// table would grow past that splits instead.
pub(crate) const PART_MAX: usize = 112;

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
    /// The table's capacity when it has no removed entries in it (7/8 of
    /// its buckets); removals can leave `capacity()` below it.
    full_cap: usize,
}

/// The capacity hashbrown gives a table whose capacity, less removed
/// entries, is `cap`: 3, 7, then 7/8 of a power-of-two number of buckets.
fn full_capacity(cap: usize) -> usize {
    match cap {
        0 => 0,
        1..=3 => 3,
        4..=7 => 7,
        _ => (cap * 8).div_ceil(7).next_power_of_two() / 8 * 7,
    }
}

/// An entry of the table: the key's slot, or the place to put one.
pub(crate) enum Spot<'a> {
    Taken(&'a mut Slot),
    Free(Free<'a>),
}

pub(crate) struct Free<'a> {
    entry: hashbrown::hash_table::VacantEntry<'a, Slot>,
    len: &'a mut usize,
}

impl<'a> Free<'a> {
    pub fn insert(self, slot: Slot) -> &'a mut Slot {
        *self.len += 1;
        self.entry.insert(slot).into_mut()
    }
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
        let part = Part { depth: 0, prefix: 0, slots: HashTable::new(), full_cap: 0 };
        Table { depth: 0, dir: vec![0], parts: vec![part], len: 0 }
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

    /// Starts loading what looking up these hashes will read, without
    /// waiting for any of it: first each key's bucket (finding it reads the
    /// partition's control bytes, but nothing waits on those either), then
    /// the slots the buckets point to. A batch that does this before its
    /// lookups has their cache misses overlap instead of taking them one
    /// after another.
    pub fn prefetch(&self, hashes: impl IntoIterator<Item = u64>) {
        const STAGE: usize = 32;
        let mut hashes = hashes.into_iter().peekable();
        while hashes.peek().is_some() {
            let mut buckets: [Option<&Slot>; STAGE] = [None; STAGE];
            for (b, h) in buckets.iter_mut().zip(hashes.by_ref()) {
                *b = self.parts[self.part_of(h)].slots.iter_hash(inner(h)).next();
                if let Some(s) = b {
                    prefetch(std::ptr::from_ref::<Slot>(s).cast());
                }
            }
            for s in buckets.iter().flatten() {
                prefetch(s.heap());
            }
        }
    }

    pub fn get_mut(&mut self, h: u64, key: &[u8]) -> Option<&mut Slot> {
        let p = self.part_of(h);
        self.parts[p].slots.find_mut(inner(h), |s| s.key() == key)
    }

    /// The entry of `key`, with one probe (after splitting its partition if
    /// a new key would make it grow too large).
    pub fn entry(&mut self, h: u64, key: &[u8]) -> Spot<'_> {
        let mut p = self.part_of(h);
        while self.full(p) {
            self.split(p);
            p = self.part_of(h);
        }
        let Table { parts, len, .. } = self;
        match parts[p].slots.entry(inner(h), |s| s.key() == key, rehash) {
            hashbrown::hash_table::Entry::Occupied(e) => Spot::Taken(e.into_mut()),
            hashbrown::hash_table::Entry::Vacant(entry) => Spot::Free(Free { entry, len }),
        }
    }

    /// Puts `slot` in place of the one with its key, or inserts it; returns
    /// the slot as placed and the one it replaced.
    pub fn put(&mut self, h: u64, slot: Slot) -> (&mut Slot, Option<Slot>) {
        match self.entry(h, slot.key()) {
            Spot::Taken(old) => {
                let old_slot = std::mem::replace(old, slot);
                (old, Some(old_slot))
            }
            Spot::Free(free) => (free.insert(slot), None),
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
    /// has no room left, and hashbrown would grow it (rather than clean it
    /// in place, which it does when at most half of it is in use) past 128
    /// buckets. Unless the directory would have to double past
    /// [`Table::max_depth`]: keys whose hashes share that many top bits are
    /// not spread by splitting (a crafted set of keys would double the
    /// directory until memory runs out), so their partition grows instead.
    fn full(&mut self, p: usize) -> bool {
        let max_depth = self.max_depth();
        let part = &mut self.parts[p];
        let (len, cap) = (part.slots.len(), part.slots.capacity());
        part.full_cap = part.full_cap.max(full_capacity(cap));
        len == cap
            && len > part.full_cap / 2
            && part.full_cap >= PART_MAX
            && part.depth < POSITION_BITS
            && (part.depth < self.depth || self.depth < max_depth)
    }

    /// The deepest directory the table's keys warrant: 64 times the
    /// partitions they would fill if spread evenly (evenly spread keys
    /// never come near it).
    fn max_depth(&self) -> u32 {
        let even = (self.len / PART_MAX).max(1);
        (usize::BITS - even.leading_zeros() + 6).min(POSITION_BITS)
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
        // Both halves keep tables of 128 buckets, so neither grows (and
        // rehashes) before it splits again.
        let mut slots = HashTable::with_capacity(PART_MAX);
        for s in self.parts[p].slots.extract_if(|s| (key_hash(s.key()) >> bit) & 1 == 1) {
            slots.insert_unique(rehash(&s), s, rehash);
        }
        let new = self.parts.len() as u32;
        let full_cap = full_capacity(slots.capacity());
        self.parts.push(Part { depth: d + 1, prefix: (prefix << 1) | 1, slots, full_cap });
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
        Slot::register(k, Stamp::new(Timestamp(1), 1), None, b"v", 1)
    }

    #[test]
    fn keys_sharing_their_top_hash_bits_do_not_blow_up_the_directory() {
        // Keys whose hashes agree on their top 16 bits, found by search:
        // splitting cannot spread them before depth 17.
        let target = key_hash(b"0") >> 48;
        let keys: Vec<String> = (0u64..)
            .map(|n| n.to_string())
            .filter(|k| key_hash(k.as_bytes()) >> 48 == target)
            .take(3 * PART_MAX)
            .collect();
        let mut t = Table::default();
        for k in &keys {
            t.put(key_hash(k.as_bytes()), slot(k.as_bytes()));
        }
        assert_eq!(t.len(), keys.len());
        assert!(t.depth <= t.max_depth(), "depth {} > {}", t.depth, t.max_depth());
        assert!(t.dir.len() <= 1 << 8, "{} directory entries for {} keys", t.dir.len(), t.len());
        for k in &keys {
            assert!(t.get(key_hash(k.as_bytes()), k.as_bytes()).is_some(), "{k}");
        }
        let mut walked = 0;
        assert_eq!(t.walk(0, usize::MAX, |_| walked += 1), None);
        assert_eq!(walked, keys.len());
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
