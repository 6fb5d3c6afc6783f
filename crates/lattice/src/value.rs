//! The store's value: one of the lattice types, inside an entry that carries
//! the key's epoch and expiry.
//!
//! An entry is a lexicographic pair (epoch, contents): a newer epoch replaces
//! everything, an equal epoch merges the contents. That is how a key-value
//! store's "overwrite with another type" (SET on a set) and "delete" (a new
//! epoch holding a tombstone) stay lattices: both start a new epoch, and
//! writes that a replica made in an older epoch lose to them.

use crate::{LMap, Lattice, Lww, Max, PnCounter, Stamp, ZSet};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The type of a value, as a Redis client sees it and as errors name it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Kind {
    Register,
    Counter,
    Set,
    Map,
    Max,
    List,
    ZSet,
}

impl Kind {
    /// The name `TYPE` answers: registers and counters are Redis strings.
    pub fn redis_name(self) -> &'static str {
        match self {
            Kind::Register | Kind::Counter | Kind::Max => "string",
            Kind::Set => "set",
            Kind::Map => "hash",
            Kind::List => "list",
            Kind::ZSet => "zset",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Counter => "counter",
            Kind::Set => "set",
            Kind::Map => "map",
            Kind::Max => "max",
            Kind::List => "list",
            Kind::ZSet => "zset",
        }
    }
}

/// A set's members: each one a register saying whether it is in, written at
/// the stamp of the add or remove that last touched it (an add wins a tie).
pub type Members = LMap<Bytes, Lww<bool>>;

/// A hash's fields: each one a register; a deleted field holds `None`.
pub type Fields = LMap<Bytes, Lww<Option<Bytes>>>;

/// Where a list item sits: its place (lower is nearer the head), then the
/// stamp of the write that put it there, so that two replicas pushing at
/// one place both keep their item (in stamp order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Place {
    pub at: i64,
    pub made: Stamp,
}

impl Place {
    /// The length of a place as an element name.
    pub const BYTES: usize = 24;

    /// As an element name: bytes that sort as places do.
    pub fn encode(&self) -> [u8; Place::BYTES] {
        let mut out = [0u8; Place::BYTES];
        out[..8].copy_from_slice(&((self.at as u64) ^ (1 << 63)).to_be_bytes());
        out[8..16].copy_from_slice(&self.made.time.0.to_be_bytes());
        out[16..].copy_from_slice(&self.made.node.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Place> {
        let b: &[u8; Place::BYTES] = b.try_into().ok()?;
        let word = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let made = Stamp::new(crate::Timestamp(word(8)), word(16));
        Some(Place { at: (word(0) ^ (1 << 63)) as i64, made })
    }
}

/// A list: its items by place, each a register (a removed item holds
/// `None`; the node that holds the list prunes it at once).
///
/// Kept in place order in chunks of up to [`Items::CHUNK`] items (as Redis's
/// quicklist keeps its items in listpacks): a push or pop at either end
/// (what lists mostly do) costs no search and, but once a chunk, no
/// allocation, and a growing list never copies what it holds. An item put
/// in the middle (LINSERT, a replica's write) shifts at most one chunk, and
/// splits it when full; a place is found by a binary search over the
/// chunks, then in one; a position, by counting chunks from the nearer end.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<(Place, Lww<Option<Bytes>>)>", into = "Vec<(Place, Lww<Option<Bytes>>)>")]
pub struct Items {
    /// None empty; in place order, within and across.
    chunks: VecDeque<Chunk>,
    len: usize,
}

type Item = (Place, Lww<Option<Bytes>>);
type Chunk = VecDeque<Item>;

/// Where a place is (its chunk and the offset in it), or where it would go.
type Found = Result<(usize, usize), (usize, usize)>;

impl PartialEq for Items {
    fn eq(&self, other: &Items) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Items {}

impl std::fmt::Debug for Items {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl From<Vec<(Place, Lww<Option<Bytes>>)>> for Items {
    fn from(v: Vec<(Place, Lww<Option<Bytes>>)>) -> Self {
        let mut items = Items::default();
        for (p, r) in v {
            items.merge_item(p, r);
        }
        items
    }
}

impl From<Items> for Vec<(Place, Lww<Option<Bytes>>)> {
    fn from(items: Items) -> Self {
        items.chunks.into_iter().flatten().collect()
    }
}

impl Items {
    /// The most items a chunk holds.
    pub const CHUNK: usize = 128;

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Head to tail.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Place, &Lww<Option<Bytes>>)> {
        self.chunks.iter().flatten().map(|(p, r)| (p, r))
    }

    /// The chunk and offset of position `i` (at most the length), counted
    /// from the nearer end.
    fn position(&self, i: usize) -> (usize, usize) {
        if i >= self.len {
            return (self.chunks.len(), 0);
        }
        if i <= self.len - i {
            let mut left = i;
            for (c, chunk) in self.chunks.iter().enumerate() {
                if left < chunk.len() {
                    return (c, left);
                }
                left -= chunk.len();
            }
        } else {
            let mut right = self.len - i;
            for (c, chunk) in self.chunks.iter().enumerate().rev() {
                if right <= chunk.len() {
                    return (c, chunk.len() - right);
                }
                right -= chunk.len();
            }
        }
        unreachable!("the chunks hold `len` items")
    }

    /// The items from chunk `c`, offset `o` on, head to tail.
    fn onwards(&self, (c, o): (usize, usize)) -> impl Iterator<Item = &Item> {
        self.chunks
            .range(c.min(self.chunks.len())..)
            .enumerate()
            .flat_map(move |(k, chunk)| chunk.range(if k == 0 { o } else { 0 }..))
    }

    /// The items at positions `from..to` (clamped to the list), head to tail.
    pub fn range(&self, from: usize, to: usize) -> impl Iterator<Item = (&Place, &Lww<Option<Bytes>>)> {
        let to = to.min(self.len);
        let from = from.min(to);
        self.onwards(self.position(from)).take(to - from).map(|(p, r)| (p, r))
    }

    /// The items after `after` (from the head if `None`), `budget` at
    /// most (at least one); the last one visited if more are left. Places do not move, so
    /// a walk resumes after any writes.
    pub fn walk_after(
        &self,
        after: Option<Place>,
        budget: usize,
        mut visit: impl FnMut(&Place, &Lww<Option<Bytes>>),
    ) -> Option<Place> {
        let start = match after {
            None => (0, 0),
            Some(a) => match self.find(&a) {
                Ok((c, o)) => (c, o + 1),
                Err(at) => at,
            },
        };
        let mut items = self.onwards(start);
        let mut last = None;
        for (place, r) in items.by_ref().take(budget.max(1)) {
            visit(place, r);
            last = Some(*place);
        }
        items.next().and(last)
    }

    pub fn first(&self) -> Option<&Place> {
        self.chunks.front().and_then(|c| c.front()).map(|(p, _)| p)
    }

    pub fn last(&self) -> Option<&Place> {
        self.chunks.back().and_then(|c| c.back()).map(|(p, _)| p)
    }

    /// Where `place` is, or where it would go (an end when it lies past one).
    fn find(&self, place: &Place) -> Found {
        let (Some(first), Some(last)) = (self.first(), self.last()) else { return Err((0, 0)) };
        if place < first {
            return Err((0, 0));
        }
        let end = self.chunks.len() - 1;
        if place > last {
            return Err((end, self.chunks[end].len()));
        }
        // Pops and pushes work at the ends: the end chunks are tried first.
        // Else the first chunk whose last place is not below `place` holds
        // it, or it goes there.
        let below = |chunk: &Chunk| chunk.back().is_some_and(|(p, _)| p < place);
        let c = if !below(&self.chunks[0]) {
            0
        } else if end > 0 && !below(&self.chunks[end - 1]) {
            self.chunks.partition_point(below)
        } else {
            end
        };
        let chunk = &self.chunks[c];
        chunk.binary_search_by(|(p, _)| p.cmp(place)).map(|o| (c, o)).map_err(|o| (c, o))
    }

    pub fn get(&self, place: &Place) -> Option<&Lww<Option<Bytes>>> {
        self.find(place).ok().map(|(c, o)| &self.chunks[c][o].1)
    }

    /// Puts `r` at `place`, whatever was there; returns what was.
    pub fn assign(&mut self, place: Place, r: Lww<Option<Bytes>>) -> Option<Lww<Option<Bytes>>> {
        match self.find(&place) {
            Ok((c, o)) => Some(std::mem::replace(&mut self.chunks[c][o].1, r)),
            Err(at) => {
                self.insert(at, (place, r));
                None
            }
        }
    }

    /// Puts `item` in at chunk `c`, offset `o`.
    fn insert(&mut self, (c, o): (usize, usize), item: Item) {
        self.len += 1;
        let fresh = |item: Item| {
            let mut chunk = Chunk::with_capacity(Items::CHUNK);
            chunk.push_back(item);
            chunk
        };
        let n = self.chunks.len();
        let Some(chunk) = self.chunks.get_mut(c) else {
            self.chunks.push_back(fresh(item));
            return;
        };
        if chunk.len() < Items::CHUNK {
            match o {
                0 => chunk.push_front(item),
                o if o == chunk.len() => chunk.push_back(item),
                o => chunk.insert(o, item),
            }
        } else if o == 0 && c == 0 {
            self.chunks.push_front(fresh(item));
        } else if o == chunk.len() && c + 1 == n {
            self.chunks.push_back(fresh(item));
        } else {
            // Full: its second half moves to a new chunk after it.
            let mut tail = Chunk::with_capacity(Items::CHUNK);
            tail.extend(chunk.drain(Items::CHUNK / 2..));
            if o <= Items::CHUNK / 2 {
                chunk.insert(o, item);
            } else {
                tail.insert(o - Items::CHUNK / 2, item);
            }
            self.chunks.insert(c + 1, tail);
        }
    }

    pub fn prune(&mut self, place: &Place) -> Option<Lww<Option<Bytes>>> {
        let (c, o) = self.find(place).ok()?;
        let chunk = &mut self.chunks[c];
        let (_, r) = if o == 0 { chunk.pop_front() } else { chunk.remove(o) }?;
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        self.len -= 1;
        Some(r)
    }

    /// Takes out the item at the head (or the tail).
    pub fn pop(&mut self, head: bool) -> Option<(Place, Lww<Option<Bytes>>)> {
        let last = self.chunks.len().checked_sub(1)?;
        let c = if head { 0 } else { last };
        let chunk = &mut self.chunks[c];
        let item = if head { chunk.pop_front() } else { chunk.pop_back() }?;
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        self.len -= 1;
        Some(item)
    }

    /// Takes out the items at `places` in one pass (linear in the list,
    /// however many go): their registers, head to tail.
    pub fn prune_many(&mut self, places: &[Place]) -> Vec<Lww<Option<Bytes>>> {
        let mut gone: Vec<Place> = places.to_vec();
        gone.sort_unstable();
        let mut next = gone.iter().peekable();
        let mut taken = Vec::with_capacity(gone.len());
        let mut kept = Vec::with_capacity(self.len.saturating_sub(gone.len()));
        for (place, r) in std::mem::take(&mut self.chunks).into_iter().flatten() {
            while next.next_if(|g| **g < place).is_some() {}
            if next.next_if(|g| **g == place).is_some() {
                taken.push(r);
            } else {
                kept.push((place, r));
            }
        }
        *self = Items::in_order(kept);
        taken
    }

    /// A list of `items`, already in place order and without repeats.
    fn in_order(items: Vec<Item>) -> Items {
        let len = items.len();
        let mut chunks = VecDeque::with_capacity(len.div_ceil(Items::CHUNK));
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let mut chunk = Chunk::with_capacity(Items::CHUNK);
            chunk.extend(items.by_ref().take(Items::CHUNK));
            chunks.push_back(chunk);
        }
        Items { chunks, len }
    }

    /// Joins `r` into the item at `place`.
    pub fn merge_item(&mut self, place: Place, r: Lww<Option<Bytes>>) {
        match self.find(&place) {
            Ok((c, o)) => self.chunks[c][o].1.merge(r),
            Err(at) => self.insert(at, (place, r)),
        }
    }
}

impl Lattice for Items {
    fn merge(&mut self, other: Self) {
        // A few items join one by one; many, in one ordered pass (linear
        // in both, however they interleave).
        if other.len <= 16 {
            for (p, r) in other.chunks.into_iter().flatten() {
                self.merge_item(p, r);
            }
            return;
        }
        let mut out = Vec::with_capacity(self.len + other.len);
        let mut theirs = other.chunks.into_iter().flatten().peekable();
        for (place, mut r) in std::mem::take(&mut self.chunks).into_iter().flatten() {
            while let Some(t) = theirs.next_if(|(p, _)| *p < place) {
                out.push(t);
            }
            if let Some((_, t)) = theirs.next_if(|(p, _)| *p == place) {
                r.merge(t);
            }
            out.push((place, r));
        }
        out.extend(theirs);
        *self = Items::in_order(out);
    }
}

/// A value. Within one epoch, different types order by their rank (a
/// deterministic choice for the rare concurrent type change), and a tombstone
/// is the bottom.
///
/// Every part of a value that a write changes carries that write's stamp
/// (the epoch for a register, each member and field its own, a counter's
/// slot grows with its node's stamps), so applying the same writes in any
/// order gives the same value.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Value {
    Tombstone,
    Register(Bytes),
    Counter(PnCounter),
    Set(Members),
    Map(Fields),
    Max(Max<i64>),
    List(Items),
    ZSet(ZSet),
}

impl Value {
    pub fn kind(&self) -> Option<Kind> {
        Some(match self {
            Value::Tombstone => return None,
            Value::Register(_) => Kind::Register,
            Value::Counter(_) => Kind::Counter,
            Value::Set(_) => Kind::Set,
            Value::Map(_) => Kind::Map,
            Value::Max(_) => Kind::Max,
            Value::List(_) => Kind::List,
            Value::ZSet(_) => Kind::ZSet,
        })
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Tombstone => 0,
            Value::Register(_) => 1,
            Value::Counter(_) => 2,
            Value::Set(_) => 3,
            Value::Map(_) => 4,
            Value::Max(_) => 5,
            Value::List(_) => 6,
            Value::ZSet(_) => 7,
        }
    }
}

impl Lattice for Value {
    fn merge(&mut self, other: Self) {
        match (self, other) {
            (Value::Register(a), Value::Register(b)) => {
                if b > *a {
                    *a = b;
                }
            }
            (Value::Counter(a), Value::Counter(b)) => a.merge(b),
            (Value::Set(a), Value::Set(b)) => a.merge(b),
            (Value::Map(a), Value::Map(b)) => a.merge(b),
            (Value::Max(a), Value::Max(b)) => a.merge(b),
            (Value::List(a), Value::List(b)) => a.merge(b),
            (Value::ZSet(a), Value::ZSet(b)) => a.merge(b),
            (this, other) => {
                if other.rank() > this.rank() {
                    *this = other;
                }
            }
        }
    }
}

/// A key's state: its epoch (the stamp of the write that last replaced it
/// whole), its value, and its expiry (milliseconds since the Unix epoch;
/// `None` inside the register means "persist").
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub epoch: Stamp,
    pub value: Value,
    pub expiry: Option<Lww<Option<u64>>>,
}

impl Entry {
    pub fn new(epoch: Stamp, value: Value) -> Self {
        Entry { epoch, value, expiry: None }
    }

    /// When the entry expires, if it does.
    pub fn expires_at(&self) -> Option<u64> {
        self.expiry.as_ref().and_then(|e| e.value)
    }

    /// The newest stamp anywhere in the entry (epoch, expiry, members, fields, counter slots).
    pub fn latest_stamp(&self) -> Stamp {
        let mut latest = self.epoch;
        if let Some(e) = &self.expiry {
            latest = latest.max(e.stamp);
        }
        match &self.value {
            Value::Map(m) => latest = m.iter().map(|(_, r)| r.stamp).fold(latest, Stamp::max),
            Value::Set(m) => latest = m.iter().map(|(_, r)| r.stamp).fold(latest, Stamp::max),
            Value::List(items) => latest = items.iter().map(|(_, r)| r.stamp).fold(latest, Stamp::max),
            Value::ZSet(z) => latest = z.registers().map(|(_, r)| r.stamp).fold(latest, Stamp::max),
            Value::Counter(c) => {
                latest = c.slots().iter().map(|s| Stamp::new(s.stamp, s.node)).fold(latest, Stamp::max)
            }
            _ => {}
        }
        latest
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at().is_some_and(|at| at <= now_ms)
    }
}

impl Lattice for Entry {
    fn merge(&mut self, other: Self) {
        if other.epoch > self.epoch {
            *self = other;
        } else if other.epoch == self.epoch {
            self.value.merge(other.value);
            match (&mut self.expiry, other.expiry) {
                (Some(a), Some(b)) => a.merge(b),
                (a @ None, b) => *a = b,
                (Some(_), None) => {}
            }
        }
    }
}
