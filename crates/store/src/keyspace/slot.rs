//! One key and its entry as the memory tier holds it.
//!
//! Most keys are strings: a register, or a counter only this node has
//! counted. Those are packed with their key into one allocation of exactly
//! their size (an 11-byte key with an 8-byte value takes 40 bytes), because
//! a key-value store's memory is mostly its small keys. Everything else
//! (sets, hashes, counters with several nodes' slots) is a boxed [`Entry`].
//!
//! Packed layout:
//!
//! ```text
//! [key len: u32 LE][key][flags: u8][epoch: time u64, node u64]
//!     [expiry, if flags say so: time u64, node u64, at u64 (u64::MAX: persist)]
//!     register: [value bytes...]   counter: [node u64][plus u64][minus u64]
//! ```

use bytes::Bytes;
use squall_lattice::{Entry, Kind, Lww, NodeId, PnCounter, Slot as CounterSlot, Stamp, Timestamp, Value};

const KIND_REGISTER: u8 = 0;
const KIND_COUNTER: u8 = 1;
const KIND_MASK: u8 = 0b11;
const HAS_EXPIRY: u8 = 0b100;
const PERSIST: u64 = u64::MAX;

/// A key with its entry.
pub(crate) enum Slot {
    Packed(Box<[u8]>),
    Full(Box<Full>),
}

// The table's buckets hold slots: keep them two words.
const _: () = assert!(std::mem::size_of::<Slot>() == 16);

pub(crate) struct Full {
    pub key: Box<[u8]>,
    pub entry: Entry,
}

/// A borrowed look at a slot's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    Register(&'a [u8]),
    /// A counter with one slot.
    Counter(CounterSlot),
    Other(&'a Value),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn stamp_at(b: &[u8], at: usize) -> Stamp {
    Stamp::new(Timestamp(u64_at(b, at)), u64_at(b, at + 8))
}

/// Where the part after the key starts.
fn meta(b: &[u8]) -> usize {
    4 + u32_at(b, 0) as usize
}

fn pack(key: &[u8], epoch: Stamp, expiry: &Option<Lww<Option<u64>>>, kind: u8, body: &[u8]) -> Box<[u8]> {
    let len = 4 + key.len() + 1 + 16 + if expiry.is_some() { 24 } else { 0 } + body.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(key.len() as u32).to_le_bytes());
    b.extend_from_slice(key);
    b.push(kind | if expiry.is_some() { HAS_EXPIRY } else { 0 });
    b.extend_from_slice(&epoch.time.0.to_le_bytes());
    b.extend_from_slice(&epoch.node.to_le_bytes());
    if let Some(e) = expiry {
        b.extend_from_slice(&e.stamp.time.0.to_le_bytes());
        b.extend_from_slice(&e.stamp.node.to_le_bytes());
        b.extend_from_slice(&e.value.unwrap_or(PERSIST).to_le_bytes());
    }
    b.extend_from_slice(body);
    b.into_boxed_slice()
}

fn counter_bytes(s: CounterSlot) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&s.node.to_le_bytes());
    out[8..16].copy_from_slice(&s.plus.to_le_bytes());
    out[16..].copy_from_slice(&s.minus.to_le_bytes());
    out
}

impl Slot {
    /// A register in its own epoch.
    pub fn register(key: &[u8], epoch: Stamp, expiry: Option<Lww<Option<u64>>>, value: &[u8]) -> Slot {
        Slot::Packed(pack(key, epoch, &expiry, KIND_REGISTER, value))
    }

    /// A key holding `entry`, packed when its value allows.
    pub fn new(key: &[u8], entry: Entry) -> Slot {
        match &entry.value {
            Value::Register(v) => Slot::register(key, entry.epoch, entry.expiry, v),
            Value::Counter(c) if c.slots().len() <= 1 => {
                let s = c.slots().first().copied().unwrap_or_default();
                Slot::Packed(pack(key, entry.epoch, &entry.expiry, KIND_COUNTER, &counter_bytes(s)))
            }
            _ => Slot::Full(Box::new(Full { key: key.into(), entry })),
        }
    }

    pub fn key(&self) -> &[u8] {
        match self {
            Slot::Packed(b) => &b[4..meta(b)],
            Slot::Full(f) => &f.key,
        }
    }

    pub fn epoch(&self) -> Stamp {
        match self {
            Slot::Packed(b) => stamp_at(b, meta(b) + 1),
            Slot::Full(f) => f.entry.epoch,
        }
    }

    pub fn expiry(&self) -> Option<Lww<Option<u64>>> {
        match self {
            Slot::Packed(b) => {
                let m = meta(b);
                (b[m] & HAS_EXPIRY != 0).then(|| {
                    let at = u64_at(b, m + 33);
                    Lww::new(stamp_at(b, m + 17), (at != PERSIST).then_some(at))
                })
            }
            Slot::Full(f) => f.entry.expiry.clone(),
        }
    }

    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Slot::Packed(b) => {
                let m = meta(b);
                (b[m] & HAS_EXPIRY != 0).then(|| u64_at(b, m + 33)).filter(|at| *at != PERSIST)
            }
            Slot::Full(f) => f.entry.expires_at(),
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at().is_some_and(|at| at <= now_ms)
    }

    fn body_at(b: &[u8]) -> usize {
        let m = meta(b);
        m + 17 + if b[m] & HAS_EXPIRY != 0 { 24 } else { 0 }
    }

    pub fn body(&self) -> Body<'_> {
        match self {
            Slot::Packed(b) => {
                let at = Slot::body_at(b);
                match b[meta(b)] & KIND_MASK {
                    KIND_COUNTER => Body::Counter(CounterSlot {
                        node: u64_at(b, at),
                        plus: u64_at(b, at + 8),
                        minus: u64_at(b, at + 16),
                    }),
                    _ => Body::Register(&b[at..]),
                }
            }
            Slot::Full(f) => Body::Other(&f.entry.value),
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        match self.body() {
            Body::Register(_) => Some(Kind::Register),
            Body::Counter(_) => Some(Kind::Counter),
            Body::Other(v) => v.kind(),
        }
    }

    /// The bytes GET answers: a register's, or a counter's decimal value.
    pub fn string(&self) -> Option<Bytes> {
        match self.body() {
            Body::Register(v) => Some(Bytes::copy_from_slice(v)),
            Body::Other(Value::Register(v)) => Some(v.clone()),
            Body::Counter(s) => Some(Bytes::from(PnCounter::from_slots([s]).value().to_string())),
            Body::Other(Value::Counter(c)) => Some(Bytes::from(c.value().to_string())),
            Body::Other(Value::Max(m)) => Some(Bytes::from(m.0.to_string())),
            Body::Other(_) => None,
        }
    }

    /// The whole entry, materialised.
    pub fn to_entry(&self) -> Entry {
        match self {
            Slot::Full(f) => f.entry.clone(),
            Slot::Packed(_) => {
                let value = match self.body() {
                    Body::Register(v) => Value::Register(Bytes::copy_from_slice(v)),
                    Body::Counter(s) if s.plus == 0 && s.minus == 0 => Value::Counter(PnCounter::default()),
                    Body::Counter(s) => Value::Counter(PnCounter::from_slots([s])),
                    Body::Other(v) => v.clone(),
                };
                Entry { epoch: self.epoch(), value, expiry: self.expiry() }
            }
        }
    }

    /// The boxed entry, unpacking a packed one first.
    pub fn full_mut(&mut self) -> &mut Entry {
        if let Slot::Packed(_) = self {
            let full = Full { key: self.key().into(), entry: self.to_entry() };
            *self = Slot::Full(Box::new(full));
        }
        match self {
            Slot::Full(f) => &mut f.entry,
            Slot::Packed(_) => unreachable!("unpacked just above"),
        }
    }

    /// Replaces the expiry register.
    pub fn set_expiry(&mut self, expiry: Option<Lww<Option<u64>>>) {
        match self {
            Slot::Full(f) => f.entry.expiry = expiry,
            Slot::Packed(b) => {
                let m = meta(b);
                let kind = b[m] & KIND_MASK;
                let body = &b[Slot::body_at(b)..];
                *b = pack(&b[4..m], stamp_at(b, m + 1), &expiry, kind, body);
            }
        }
    }

    /// Adds `delta` to a counter as node `node`; `None` if it would
    /// overflow (nothing changes) or this is not a counter.
    pub fn counter_add(&mut self, node: NodeId, delta: i64) -> Option<i64> {
        if let Body::Counter(s) = self.body()
            && (s.node == node || (s.plus == 0 && s.minus == 0))
            && let Slot::Packed(b) = self
        {
            let mut c = PnCounter::from_slots([CounterSlot { node, ..s }]);
            let r = c.add(node, delta)?;
            let at = Slot::body_at(b);
            let s = c.slot(node).unwrap_or(CounterSlot { node, plus: 0, minus: 0 });
            b[at..at + 24].copy_from_slice(&counter_bytes(s));
            return Some(r);
        }
        match &mut self.full_mut().value {
            Value::Counter(c) => c.add(node, delta),
            _ => None,
        }
    }

    /// Approximate bytes of memory the slot holds (for `/metrics`).
    pub fn approx_bytes(&self) -> usize {
        match self {
            Slot::Packed(b) => b.len() + 16,
            Slot::Full(f) => {
                let value = match &f.entry.value {
                    Value::Tombstone | Value::Max(_) => 8,
                    Value::Register(b) => b.len(),
                    Value::Counter(c) => c.slots().len() * 24,
                    Value::Set(s) => s.iter().map(|(m, _)| m.len() + MEMBER_OVERHEAD).sum(),
                    Value::Map(m) => {
                        m.iter().map(|(f, r)| f.len() + r.value.as_ref().map_or(0, Bytes::len) + FIELD_OVERHEAD).sum()
                    }
                };
                f.key.len() + 160 + value
            }
        }
    }
}

/// Approximate bytes a set member costs beyond its own (its stamp, the
/// table's slot, the allocation).
pub(crate) const MEMBER_OVERHEAD: usize = 72;
/// The same for a hash field, beyond its name and value.
pub(crate) const FIELD_OVERHEAD: usize = 96;

#[cfg(test)]
mod tests {
    use super::*;

    fn st(t: u64, n: u64) -> Stamp {
        Stamp::new(Timestamp(t), n)
    }

    #[test]
    fn a_small_string_key_takes_one_allocation_of_forty_bytes() {
        let s = Slot::register(b"key:0000001", st(7, 1), None, b"value123");
        let Slot::Packed(b) = &s else { panic!("not packed") };
        assert_eq!(b.len(), 40);
        assert_eq!(s.key(), b"key:0000001");
        assert_eq!(s.epoch(), st(7, 1));
        assert_eq!(s.expiry(), None);
        assert_eq!(s.string().unwrap(), Bytes::from_static(b"value123"));
        assert_eq!(s.kind(), Some(Kind::Register));
    }

    #[test]
    fn packed_entries_read_back_as_the_entries_they_came_from() {
        let expiry = Some(Lww::new(st(9, 2), Some(12_345)));
        let reg = Entry { epoch: st(5, 1), value: Value::Register(Bytes::from_static(b"v")), expiry: expiry.clone() };
        assert_eq!(Slot::new(b"k", reg.clone()).to_entry(), reg);
        let mut counter = PnCounter::default();
        counter.add(1, -3);
        let c = Entry { epoch: st(5, 1), value: Value::Counter(counter), expiry: Some(Lww::new(st(9, 2), None)) };
        let slot = Slot::new(b"c", c.clone());
        assert!(matches!(slot, Slot::Packed(_)));
        assert_eq!(slot.to_entry(), c);
        assert_eq!(slot.expires_at(), None);
        assert_eq!(slot.string().unwrap(), Bytes::from_static(b"-3"));
    }

    #[test]
    fn expiry_and_counting_change_a_packed_slot_in_place_of_a_new_one() {
        let mut s = Slot::new(b"n", Entry::new(st(1, 1), Value::Counter(PnCounter::default())));
        assert_eq!(s.counter_add(1, 5), Some(5));
        assert_eq!(s.counter_add(1, -2), Some(3));
        s.set_expiry(Some(Lww::new(st(2, 1), Some(99))));
        assert_eq!(s.expires_at(), Some(99));
        assert_eq!(s.counter_add(1, 1), Some(4));
        assert_eq!(s.counter_add(1, i64::MAX), None);
        assert_eq!(s.string().unwrap(), Bytes::from_static(b"4"));
        assert!(matches!(s, Slot::Packed(_)));
        // Another node's slot makes it a full entry.
        assert_eq!(s.counter_add(2, 10), Some(14));
        assert!(matches!(s, Slot::Full(_)));
        assert_eq!(s.expires_at(), Some(99));
        assert_eq!(s.key(), b"n");
    }
}
