//! One key and its entry as the memory tier holds it.
//!
//! Most keys are strings: a register, or a counter only this node has
//! counted. Those are packed with their key into one allocation of about
//! their size (an 11-byte key with an 8-byte value takes 29 bytes, one
//! 32-byte allocation), because a key-value store's memory is mostly its
//! small keys. Node ids equal to the keyspace's own are left out. Everything
//! else (sets, hashes, counters with several nodes' slots) is a boxed
//! [`Entry`].
//!
//! Packed layout:
//!
//! ```text
//! [key len: LEB128][key][flags: u8][epoch time: u64 LE][epoch node: u64, if foreign]
//!     [expiry, if flagged: time u64, node u64 if foreign, at u64 (u64::MAX: persist)]
//!     register: [value bytes...]
//!     counter: [plus u64][minus u64][time of its last write u64][node u64, if foreign]
//! ```

use bytes::Bytes;
use squall_lattice::{Entry, Kind, Lww, NodeId, PnCounter, Slot as CounterSlot, Stamp, Timestamp, Value};

const KIND_REGISTER: u8 = 0;
const KIND_COUNTER: u8 = 1;
const KIND_MASK: u8 = 0b11;
const HAS_EXPIRY: u8 = 1 << 2;
const FOREIGN_EPOCH: u8 = 1 << 3;
const FOREIGN_EXPIRY: u8 = 1 << 4;
const FOREIGN_SLOT: u8 = 1 << 5;
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

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The key's length and where the key starts.
fn key_span(b: &[u8]) -> (usize, usize) {
    let (mut len, mut shift, mut at) = (0usize, 0, 0);
    loop {
        let byte = b[at];
        len |= usize::from(byte & 0x7f) << shift;
        at += 1;
        if byte & 0x80 == 0 {
            return (at, at + len);
        }
        shift += 7;
    }
}

/// Where each part of a packed slot is.
struct Layout {
    flags: u8,
    at_flags: usize,
    at_expiry: usize,
    at_body: usize,
}

impl Layout {
    fn of(b: &[u8]) -> Layout {
        let (_, end) = key_span(b);
        let flags = b[end];
        let at_expiry = end + 1 + 8 + if flags & FOREIGN_EPOCH != 0 { 8 } else { 0 };
        let expiry_len = if flags & HAS_EXPIRY != 0 { 16 + if flags & FOREIGN_EXPIRY != 0 { 8 } else { 0 } } else { 0 };
        Layout { flags, at_flags: end, at_expiry, at_body: at_expiry + expiry_len }
    }

    fn epoch(&self, b: &[u8], own: NodeId) -> Stamp {
        let at = self.at_flags + 1;
        let node = if self.flags & FOREIGN_EPOCH != 0 { u64_at(b, at + 8) } else { own };
        Stamp::new(Timestamp(u64_at(b, at)), node)
    }

    fn expiry(&self, b: &[u8], own: NodeId) -> Option<Lww<Option<u64>>> {
        if self.flags & HAS_EXPIRY == 0 {
            return None;
        }
        let at = self.at_expiry;
        let (node, at_at) = if self.flags & FOREIGN_EXPIRY != 0 { (u64_at(b, at + 8), at + 16) } else { (own, at + 8) };
        let when = u64_at(b, at_at);
        Some(Lww::new(Stamp::new(Timestamp(u64_at(b, at)), node), (when != PERSIST).then_some(when)))
    }

    fn expires_at(&self, b: &[u8]) -> Option<u64> {
        if self.flags & HAS_EXPIRY == 0 {
            return None;
        }
        let at_at = self.at_expiry + if self.flags & FOREIGN_EXPIRY != 0 { 16 } else { 8 };
        Some(u64_at(b, at_at)).filter(|at| *at != PERSIST)
    }

    fn counter(&self, b: &[u8], own: NodeId) -> CounterSlot {
        let at = self.at_body;
        let node = if self.flags & FOREIGN_SLOT != 0 { u64_at(b, at + 24) } else { own };
        CounterSlot { node, plus: u64_at(b, at), minus: u64_at(b, at + 8), stamp: Timestamp(u64_at(b, at + 16)) }
    }
}

/// The value part of a packed slot.
enum PackedBody<'a> {
    Register(&'a [u8]),
    Counter(CounterSlot),
}

/// The bytes `pack_into` writes.
fn packed_len(
    key: &[u8],
    epoch: Stamp,
    expiry: &Option<Lww<Option<u64>>>,
    body: &PackedBody<'_>,
    own: NodeId,
) -> usize {
    let varint = crate::disk::records::varint_len(key.len() as u64);
    let foreign = |n: NodeId| if n != own { 8 } else { 0 };
    let expiry = expiry.as_ref().map_or(0, |e| 8 + foreign(e.stamp.node) + 8);
    let body = match body {
        PackedBody::Register(v) => v.len(),
        PackedBody::Counter(s) => 24 + foreign(s.node),
    };
    varint + key.len() + 1 + 8 + foreign(epoch.node) + expiry + body
}

/// Writes a packed slot into `b`, which is [`packed_len`] bytes long.
fn pack_into(
    b: &mut [u8],
    key: &[u8],
    epoch: Stamp,
    expiry: &Option<Lww<Option<u64>>>,
    body: PackedBody<'_>,
    own: NodeId,
) {
    let mut at = 0;
    let mut len = key.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        b[at] = if len == 0 { byte } else { byte | 0x80 };
        at += 1;
        if len == 0 {
            break;
        }
    }
    b[at..at + key.len()].copy_from_slice(key);
    pack_after_key(b, at + key.len(), epoch, expiry, body, own);
}

/// Writes what follows the key (which ends at `at`) in a packed slot.
fn pack_after_key(
    b: &mut [u8],
    mut at: usize,
    epoch: Stamp,
    expiry: &Option<Lww<Option<u64>>>,
    body: PackedBody<'_>,
    own: NodeId,
) {
    let at_flags = at;
    let mut put = |bytes: &[u8]| {
        b[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    let mut flags = match body {
        PackedBody::Register(_) => KIND_REGISTER,
        PackedBody::Counter(_) => KIND_COUNTER,
    };
    put(&[0]);
    put(&epoch.time.0.to_le_bytes());
    if epoch.node != own {
        flags |= FOREIGN_EPOCH;
        put(&epoch.node.to_le_bytes());
    }
    if let Some(e) = expiry {
        flags |= HAS_EXPIRY;
        put(&e.stamp.time.0.to_le_bytes());
        if e.stamp.node != own {
            flags |= FOREIGN_EXPIRY;
            put(&e.stamp.node.to_le_bytes());
        }
        put(&e.value.unwrap_or(PERSIST).to_le_bytes());
    }
    match body {
        PackedBody::Register(v) => put(v),
        PackedBody::Counter(s) => {
            put(&s.plus.to_le_bytes());
            put(&s.minus.to_le_bytes());
            put(&s.stamp.0.to_le_bytes());
            if s.node != own {
                flags |= FOREIGN_SLOT;
                put(&s.node.to_le_bytes());
            }
        }
    }
    debug_assert_eq!(at, b.len());
    b[at_flags] = flags;
}

/// A packed slot in an allocation of exactly its size.
fn pack(key: &[u8], epoch: Stamp, expiry: &Option<Lww<Option<u64>>>, body: PackedBody<'_>, own: NodeId) -> Box<[u8]> {
    let mut b = vec![0u8; packed_len(key, epoch, expiry, &body, own)].into_boxed_slice();
    pack_into(&mut b, key, epoch, expiry, body, own);
    b
}

/// A borrowed look at a slot's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    Register(&'a [u8]),
    /// A counter with one slot.
    Counter(CounterSlot),
    Other(&'a Value),
}

impl Slot {
    /// A register in its own epoch.
    pub fn register(key: &[u8], epoch: Stamp, expiry: Option<Lww<Option<u64>>>, value: &[u8], own: NodeId) -> Slot {
        Slot::Packed(pack(key, epoch, &expiry, PackedBody::Register(value), own))
    }

    /// Makes this slot hold a register in its own epoch, as
    /// [`Slot::register`] would, in its own memory when that is the right
    /// size (an overwrite of a value with one as long allocates nothing).
    pub fn set_register(&mut self, epoch: Stamp, expiry: Option<Lww<Option<u64>>>, value: &[u8], own: NodeId) {
        if let Slot::Packed(b) = self {
            let (start, end) = key_span(b);
            let body = PackedBody::Register(value);
            if packed_len(&b[start..end], epoch, &expiry, &body, own) == b.len() {
                // The key stays where it is: the packing starts with it.
                pack_after_key(b, end, epoch, &expiry, body, own);
                return;
            }
        }
        *self = Slot::register(self.key(), epoch, expiry, value, own);
    }

    /// A key holding `entry`, packed when its value allows.
    pub fn new(key: &[u8], entry: Entry, own: NodeId) -> Slot {
        match &entry.value {
            Value::Register(v) => Slot::register(key, entry.epoch, entry.expiry, v, own),
            Value::Counter(c) if c.slots().len() <= 1 => {
                let s = c.slots().first().copied().unwrap_or(CounterSlot { node: own, ..CounterSlot::default() });
                Slot::Packed(pack(key, entry.epoch, &entry.expiry, PackedBody::Counter(s), own))
            }
            _ => Slot::Full(Box::new(Full { key: key.into(), entry })),
        }
    }

    /// Where the slot's own memory starts (for a prefetch: not read).
    pub fn heap(&self) -> *const u8 {
        match self {
            Slot::Packed(b) => b.as_ptr(),
            Slot::Full(f) => std::ptr::from_ref::<Full>(f).cast(),
        }
    }

    pub fn key(&self) -> &[u8] {
        match self {
            Slot::Packed(b) => {
                let (start, end) = key_span(b);
                &b[start..end]
            }
            Slot::Full(f) => &f.key,
        }
    }

    pub fn epoch(&self, own: NodeId) -> Stamp {
        match self {
            Slot::Packed(b) => Layout::of(b).epoch(b, own),
            Slot::Full(f) => f.entry.epoch,
        }
    }

    pub fn expiry(&self, own: NodeId) -> Option<Lww<Option<u64>>> {
        match self {
            Slot::Packed(b) => Layout::of(b).expiry(b, own),
            Slot::Full(f) => f.entry.expiry.clone(),
        }
    }

    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Slot::Packed(b) => Layout::of(b).expires_at(b),
            Slot::Full(f) => f.entry.expires_at(),
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at().is_some_and(|at| at <= now_ms)
    }

    pub fn body(&self, own: NodeId) -> Body<'_> {
        match self {
            Slot::Packed(b) => {
                let l = Layout::of(b);
                match l.flags & KIND_MASK {
                    KIND_COUNTER => Body::Counter(l.counter(b, own)),
                    _ => Body::Register(&b[l.at_body..]),
                }
            }
            Slot::Full(f) => Body::Other(&f.entry.value),
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        match self {
            Slot::Packed(b) => match Layout::of(b).flags & KIND_MASK {
                KIND_COUNTER => Some(Kind::Counter),
                _ => Some(Kind::Register),
            },
            Slot::Full(f) => f.entry.value.kind(),
        }
    }

    /// The bytes GET answers: a register's, or a counter's decimal value.
    pub fn string(&self) -> Option<Bytes> {
        match self.body(0) {
            Body::Register(v) => Some(Bytes::copy_from_slice(v)),
            Body::Other(Value::Register(v)) => Some(v.clone()),
            Body::Counter(s) => Some(Bytes::from(PnCounter::from_slots([s]).value().to_string())),
            Body::Other(Value::Counter(c)) => Some(Bytes::from(c.value().to_string())),
            Body::Other(Value::Max(m)) => Some(Bytes::from(m.0.to_string())),
            Body::Other(_) => None,
        }
    }

    /// A packed slot's bytes after its key (its entry as packed), which
    /// [`Slot::unpack_entry`] reads back; `None` for a boxed one. Undo
    /// records copy these bytes as they are, so the packed layout is on
    /// disk: change it only under a new undo record kind.
    pub fn packed_entry(&self) -> Option<&[u8]> {
        match self {
            Slot::Packed(b) => Some(&b[key_span(b).1..]),
            Slot::Full(_) => None,
        }
    }

    /// The entry whose packed bytes (after the key) are `tail`, packed by
    /// node `own`; `None` if they are not a packed entry.
    pub fn unpack_entry(tail: &[u8], own: NodeId) -> Option<Entry> {
        // An empty key (its length, 0, in one byte) before the entry.
        let b: Box<[u8]> = std::iter::once(0).chain(tail.iter().copied()).collect();
        let &flags = b.get(1)?;
        let epoch = 8 + if flags & FOREIGN_EPOCH != 0 { 8 } else { 0 };
        let expiry = if flags & HAS_EXPIRY != 0 { 16 + if flags & FOREIGN_EXPIRY != 0 { 8 } else { 0 } } else { 0 };
        let body = match flags & KIND_MASK {
            KIND_REGISTER => 0,
            KIND_COUNTER => 24 + if flags & FOREIGN_SLOT != 0 { 8 } else { 0 },
            _ => return None,
        };
        (b.len() >= 2 + epoch + expiry + body).then(|| Slot::Packed(b).to_entry(own))
    }

    /// The whole entry, materialised.
    pub fn to_entry(&self, own: NodeId) -> Entry {
        match self {
            Slot::Full(f) => f.entry.clone(),
            Slot::Packed(_) => {
                let value = match self.body(own) {
                    Body::Register(v) => Value::Register(Bytes::copy_from_slice(v)),
                    Body::Counter(s) => Value::Counter(PnCounter::from_slots([s])),
                    Body::Other(v) => v.clone(),
                };
                Entry { epoch: self.epoch(own), value, expiry: self.expiry(own) }
            }
        }
    }

    /// The boxed entry, unpacking a packed one first.
    pub fn full_mut(&mut self, own: NodeId) -> &mut Entry {
        if let Slot::Packed(_) = self {
            let full = Full { key: self.key().into(), entry: self.to_entry(own) };
            *self = Slot::Full(Box::new(full));
        }
        match self {
            Slot::Full(f) => &mut f.entry,
            Slot::Packed(_) => unreachable!("unpacked just above"),
        }
    }

    /// Replaces the expiry register.
    pub fn set_expiry(&mut self, expiry: Option<Lww<Option<u64>>>, own: NodeId) {
        match self {
            Slot::Full(f) => f.entry.expiry = expiry,
            Slot::Packed(_) => {
                let entry = Entry { expiry, ..self.to_entry(own) };
                *self = Slot::new(self.key(), entry, own);
            }
        }
    }

    /// Adds `delta` to a counter in the slot of `at`'s node (the keyspace's
    /// own), at `at`; `None` if it would overflow (nothing changes) or this
    /// is not a counter.
    pub fn counter_add(&mut self, at: Stamp, delta: i64) -> Option<i64> {
        let own = at.node;
        if let Slot::Packed(b) = self {
            let l = Layout::of(b);
            if l.flags & KIND_MASK == KIND_COUNTER {
                let s = l.counter(b, own);
                if s.node == own || (s.plus == 0 && s.minus == 0) {
                    let (s, r) = CounterSlot { node: own, ..s }.added(delta, at.time)?;
                    if l.flags & FOREIGN_SLOT == 0 {
                        b[l.at_body..l.at_body + 8].copy_from_slice(&s.plus.to_le_bytes());
                        b[l.at_body + 8..l.at_body + 16].copy_from_slice(&s.minus.to_le_bytes());
                        b[l.at_body + 16..l.at_body + 24].copy_from_slice(&s.stamp.0.to_le_bytes());
                    } else {
                        let entry = Entry { value: Value::Counter(PnCounter::from_slots([s])), ..self.to_entry(own) };
                        *self = Slot::new(self.key(), entry, own);
                    }
                    return Some(r);
                }
            }
        }
        match &mut self.full_mut(own).value {
            Value::Counter(c) => c.add(at, delta),
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
                    Value::List(items) => {
                        items.iter().map(|(_, r)| r.value.as_ref().map_or(0, Bytes::len) + ITEM_OVERHEAD).sum()
                    }
                    Value::ZSet(z) => z.registers().map(|(m, _)| m.len() + SCORED_OVERHEAD).sum(),
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
/// The same for a list item, beyond its value (its place, its stamp, the
/// tree's node).
pub(crate) const ITEM_OVERHEAD: usize = 80;
/// The same for a sorted set's member, beyond its name (its register in the
/// map, and its place in the order, which holds the name again).
pub(crate) const SCORED_OVERHEAD: usize = 144;

#[cfg(test)]
mod tests {
    use super::*;

    fn st(t: u64, n: u64) -> Stamp {
        Stamp::new(Timestamp(t), n)
    }

    #[test]
    fn a_small_string_key_fits_a_32_byte_allocation() {
        let s = Slot::register(b"key:0000001", st(7, 1), None, b"value123", 1);
        let Slot::Packed(b) = &s else { panic!("not packed") };
        assert_eq!(b.len(), 29);
        assert_eq!(s.key(), b"key:0000001");
        assert_eq!(s.epoch(1), st(7, 1));
        assert_eq!(s.expiry(1), None);
        assert_eq!(s.string().unwrap(), Bytes::from_static(b"value123"));
        assert_eq!(s.kind(), Some(Kind::Register));
    }

    #[test]
    fn packed_entries_read_back_as_the_entries_they_came_from() {
        for own in [1, 2] {
            let expiry = Some(Lww::new(st(9, 2), Some(12_345)));
            let reg =
                Entry { epoch: st(5, 1), value: Value::Register(Bytes::from_static(b"v")), expiry: expiry.clone() };
            assert_eq!(Slot::new(b"k", reg.clone(), own).to_entry(own), reg);
            let mut counter = PnCounter::default();
            counter.add(st(4, 1), -3);
            let c = Entry { epoch: st(5, 1), value: Value::Counter(counter), expiry: Some(Lww::new(st(9, 2), None)) };
            let slot = Slot::new(b"c", c.clone(), own);
            assert!(matches!(slot, Slot::Packed(_)));
            assert_eq!(slot.to_entry(own), c);
            assert_eq!(slot.expires_at(), None);
            assert_eq!(slot.string().unwrap(), Bytes::from_static(b"-3"));
        }
        // A key longer than 127 bytes takes two bytes of length.
        let long = vec![b'x'; 300];
        let s = Slot::register(&long, st(1, 1), None, b"v", 1);
        assert_eq!(s.key(), &long[..]);
        assert_eq!(s.string().unwrap(), Bytes::from_static(b"v"));
    }

    #[test]
    fn overwriting_a_string_gives_the_slot_a_fresh_one_would_have() {
        let long = vec![b'k'; 200];
        for key in [&b"key:1"[..], &long] {
            let expiry = Some(Lww::new(st(9, 2), Some(77)));
            let mut s = Slot::register(key, st(1, 1), None, b"abc", 1);
            let before = s.heap();
            // Same length: in place.
            s.set_register(st(2, 1), None, b"xyz", 1);
            assert_eq!(s.heap(), before);
            assert!(
                matches!((&s, &Slot::register(key, st(2, 1), None, b"xyz", 1)), (Slot::Packed(a), Slot::Packed(b)) if a == b)
            );
            // Longer, with an expiry and a foreign epoch; then back from a counter.
            s.set_register(st(3, 2), expiry.clone(), b"longer value", 1);
            assert!(
                matches!((&s, &Slot::register(key, st(3, 2), expiry.clone(), b"longer value", 1)), (Slot::Packed(a), Slot::Packed(b)) if a == b)
            );
            let mut c = Slot::new(key, Entry::new(st(1, 1), Value::Counter(PnCounter::default())), 1);
            c.set_register(st(4, 1), None, b"v", 1);
            assert_eq!(c.key(), key);
            assert_eq!(c.string().unwrap(), Bytes::from_static(b"v"));
            assert_eq!(c.kind(), Some(Kind::Register));
        }
    }

    #[test]
    fn counting_changes_a_packed_slot_in_place() {
        let mut s = Slot::new(b"n", Entry::new(st(1, 1), Value::Counter(PnCounter::default())), 1);
        assert_eq!(s.counter_add(st(2, 1), 5), Some(5));
        assert_eq!(s.counter_add(st(3, 1), -2), Some(3));
        s.set_expiry(Some(Lww::new(st(4, 1), Some(99))), 1);
        assert_eq!(s.expires_at(), Some(99));
        assert_eq!(s.counter_add(st(5, 1), 1), Some(4));
        assert_eq!(s.counter_add(st(6, 1), i64::MAX), None);
        // The slot carries the time of its last write.
        assert_eq!(s.to_entry(1).latest_stamp(), st(5, 1));
        assert_eq!(s.string().unwrap(), Bytes::from_static(b"4"));
        assert!(matches!(s, Slot::Packed(_)));
        // Counted by another node (the data dir came back under a new
        // node id): two slots make it a full entry.
        let mut s = Slot::new(b"n", s.to_entry(1), 2);
        assert!(matches!(s, Slot::Packed(_)));
        assert_eq!(s.counter_add(st(7, 2), 10), Some(14));
        assert!(matches!(s, Slot::Full(_)));
        assert_eq!(s.expires_at(), Some(99));
        assert_eq!(s.key(), b"n");
    }
}
