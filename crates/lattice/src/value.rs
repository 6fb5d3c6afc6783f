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
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Vec<(Place, Lww<Option<Bytes>>)>", into = "Vec<(Place, Lww<Option<Bytes>>)>")]
pub struct Items(std::collections::BTreeMap<Place, Lww<Option<Bytes>>>);

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
        items.0.into_iter().collect()
    }
}

impl Items {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Head to tail.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Place, &Lww<Option<Bytes>>)> {
        self.0.iter()
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
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut items = self.0.range((from, Bound::Unbounded));
        let mut last = None;
        for (place, r) in items.by_ref().take(budget.max(1)) {
            visit(place, r);
            last = Some(*place);
        }
        items.next().and(last)
    }

    pub fn first(&self) -> Option<&Place> {
        self.0.keys().next()
    }

    pub fn last(&self) -> Option<&Place> {
        self.0.keys().next_back()
    }

    pub fn get(&self, place: &Place) -> Option<&Lww<Option<Bytes>>> {
        self.0.get(place)
    }

    /// Puts `r` at `place`, whatever was there; returns what was.
    pub fn assign(&mut self, place: Place, r: Lww<Option<Bytes>>) -> Option<Lww<Option<Bytes>>> {
        self.0.insert(place, r)
    }

    pub fn prune(&mut self, place: &Place) -> Option<Lww<Option<Bytes>>> {
        self.0.remove(place)
    }

    /// Joins `r` into the item at `place`.
    pub fn merge_item(&mut self, place: Place, r: Lww<Option<Bytes>>) {
        match self.0.get_mut(&place) {
            Some(have) => have.merge(r),
            None => {
                self.0.insert(place, r);
            }
        }
    }
}

impl Lattice for Items {
    fn merge(&mut self, other: Self) {
        for (p, r) in other.0 {
            self.merge_item(p, r);
        }
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
