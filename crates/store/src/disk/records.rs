//! The changes a shard makes, encoded for the log and snapshots, and read
//! back. A buffer of records is what a shard hands the writer once per
//! wake-up, and what a snapshot dump step returns.
//!
//! ```text
//! record:  [tag: u8][ns len: u8][ns][key len: varint][key] then
//!   0 header:  [len: varint][header]
//!   1 element: [element len: varint][element][len: varint][state]
//!   2 removed
//!   3 undo:    [time: u64][origin len: u8][origin][len: u32] then what the change it follows overwrote:
//!              [0] absent | [1][len: varint][header][n: varint] × element
//!              | [2][n: varint] × ([1] element | [0][name len: varint][name])
//!              | [3] expiry: [0] none | [1][stamp] persists | [2][stamp][at u64]
//!              | [4] lost (the value was too big to keep)
//! element: [name len: varint][name][len: varint][state]
//! header:  [flags: u8][epoch time: u64][epoch node: u64]
//!          [expiry, if flagged: time u64, node u64, at u64 unless it persists]
//!          register: [bytes...]  counter: [slots: varint] × [node u64][plus u64][minus u64][time u64]
//!          max: [i64]            set, hash, list, sorted set: nothing (their elements have records)
//! state:   member: [0][time u64][node u64][in: u8]   field: [1][time u64][node u64][has: u8][value...]
//!          sorted set member: [3][time u64][node u64][has: u8][score f64, if it has one]
//!          list item: [2] then as a field (its name is its place: at i64 with the sign bit flipped,
//!          then the stamp that made it, all big-endian, so names sort as the list does)
//! ```
//!
//! Numbers are little-endian; a varint is LEB128. Written by hand: one
//! record per write is the hot path of every write, and a general
//! serializer cost more than the rest of the encoding together.
//!
//! Records hold whole states (a key's header, a member's register), so
//! replaying them in the order they were written, from any point at or
//! before a snapshot began, ends in the state that was live.

use crate::Error;
use crate::keyspace::{Before, Changes, Counts, Element, Header, HeaderBody, Record, Slot, StateRef};
use bytes::Bytes;
use squall_lattice::{Lww, NodeId, Slot as CounterSlot, Stamp, Timestamp, Value};
use std::borrow::Cow;

const HEADER: u8 = 0;
const ELEMENT: u8 = 1;
const REMOVED: u8 = 2;
const UNDO: u8 = 3;

const ABSENT: u8 = 0;
const WHOLE: u8 = 1;
const ELEMENTS: u8 = 2;
const EXPIRY: u8 = 3;
const LOST: u8 = 4;
const PACKED: u8 = 5;

const BODY_MASK: u8 = 0b111;
const REGISTER: u8 = 0;
const COUNTER: u8 = 1;
const SET: u8 = 2;
const MAP: u8 = 3;
const MAX: u8 = 4;
const LIST: u8 = 5;
const ZSET: u8 = 6;
const HAS_EXPIRY: u8 = 1 << 3;
const PERSISTS: u8 = 1 << 4;

const MEMBER: u8 = 0;
const FIELD: u8 = 1;
const ITEM: u8 = 2;
const SCORE: u8 = 3;

/// Encoded records, back to back.
#[derive(Debug, Default)]
pub(crate) struct Records {
    buf: Vec<u8>,
    count: usize,
}

/// The bytes [`varint`] writes for `n`.
pub(crate) fn varint_len(n: u64) -> usize {
    (u64::BITS - n.leading_zeros()).div_ceil(7).max(1) as usize
}

fn varint(buf: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf.push(byte);
            return;
        }
        buf.push(byte | 0x80);
    }
}

fn stamp(buf: &mut Vec<u8>, s: Stamp) {
    buf.extend_from_slice(&s.time.0.to_le_bytes());
    buf.extend_from_slice(&s.node.to_le_bytes());
}

fn header_len(h: &Header<'_>) -> usize {
    let expiry = match &h.expiry {
        None => 0,
        Some(e) => 16 + if e.value.is_some() { 8 } else { 0 },
    };
    let body = match &h.body {
        HeaderBody::Register(b) => b.len(),
        HeaderBody::Counter(c) => varint_len(c.slots().len() as u64) + 32 * c.slots().len(),
        HeaderBody::Set | HeaderBody::Map | HeaderBody::List | HeaderBody::ZSet => 0,
        HeaderBody::Max(_) => 8,
    };
    1 + 16 + expiry + body
}

impl Records {
    /// No records yet, with room for `bytes` of them.
    pub fn with_capacity(bytes: usize) -> Records {
        Records { buf: Vec::with_capacity(bytes), count: 0 }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn key(&mut self, tag: u8, ns: &[u8], key: &[u8], more: usize) {
        self.count += 1;
        self.buf.reserve(1 + 1 + ns.len() + 5 + key.len() + more);
        self.buf.push(tag);
        self.buf.push(ns.len() as u8);
        self.buf.extend_from_slice(ns);
        varint(&mut self.buf, key.len() as u64);
        self.buf.extend_from_slice(key);
    }
}

/// Writes a header: its length, then the header.
fn put_header(b: &mut Vec<u8>, h: &Header<'_>) {
    let len = header_len(h);
    varint(b, len as u64);
    let start = b.len();
    let (kind, body): (u8, &[u8]) = match &h.body {
        HeaderBody::Register(v) => (REGISTER, v),
        HeaderBody::Counter(_) => (COUNTER, &[]),
        HeaderBody::Set => (SET, &[]),
        HeaderBody::Map => (MAP, &[]),
        HeaderBody::Max(_) => (MAX, &[]),
        HeaderBody::List => (LIST, &[]),
        HeaderBody::ZSet => (ZSET, &[]),
    };
    let mut flags = kind;
    if let Some(e) = &h.expiry {
        flags |= HAS_EXPIRY;
        if e.value.is_none() {
            flags |= PERSISTS;
        }
    }
    b.push(flags);
    stamp(b, h.epoch);
    if let Some(e) = &h.expiry {
        stamp(b, e.stamp);
        if let Some(when) = e.value {
            b.extend_from_slice(&when.to_le_bytes());
        }
    }
    b.extend_from_slice(body);
    match &h.body {
        HeaderBody::Counter(c) => {
            varint(b, c.slots().len() as u64);
            for s in c.slots() {
                b.extend_from_slice(&s.node.to_le_bytes());
                b.extend_from_slice(&s.plus.to_le_bytes());
                b.extend_from_slice(&s.minus.to_le_bytes());
                b.extend_from_slice(&s.stamp.0.to_le_bytes());
            }
        }
        HeaderBody::Max(m) => b.extend_from_slice(&m.to_le_bytes()),
        _ => {}
    }
    debug_assert_eq!(b.len() - start, len, "header_len is exact");
}

/// Writes an element: its name, then its state's length and the state.
fn put_element(b: &mut Vec<u8>, element: &[u8], state: StateRef<'_>) {
    varint(b, element.len() as u64);
    b.extend_from_slice(element);
    match state {
        StateRef::Member(r) => {
            varint(b, 18);
            b.push(MEMBER);
            stamp(b, r.stamp);
            b.push(r.value as u8);
        }
        StateRef::Score(r) => {
            varint(b, if r.value.is_some() { 26 } else { 18 });
            b.push(SCORE);
            stamp(b, r.stamp);
            b.push(r.value.is_some() as u8);
            if let Some(s) = r.value {
                b.extend_from_slice(&s.0.to_le_bytes());
            }
        }
        StateRef::Field(r) | StateRef::Item(r) => {
            let value = r.value.as_ref().map_or(0, Bytes::len);
            varint(b, (18 + value) as u64);
            b.push(if matches!(state, StateRef::Item(_)) { ITEM } else { FIELD });
            stamp(b, r.stamp);
            b.push(r.value.is_some() as u8);
            if let Some(v) = &r.value {
                b.extend_from_slice(v);
            }
        }
    }
}

fn element_len(element: &[u8], state: StateRef<'_>) -> usize {
    let value = match state {
        StateRef::Member(_) => 0,
        StateRef::Field(r) | StateRef::Item(r) => r.value.as_ref().map_or(0, Bytes::len),
        StateRef::Score(_) => 8,
    };
    5 + element.len() + 5 + 18 + value
}

impl Changes for Records {
    fn header(&mut self, ns: &[u8], key: &[u8], h: &Header<'_>) {
        self.key(HEADER, ns, key, header_len(h) + 5);
        put_header(&mut self.buf, h);
    }

    // The epoch is not written: replay follows the log's order, where the
    // element's header came first.
    fn element(&mut self, ns: &[u8], key: &[u8], _epoch: Stamp, element: &[u8], state: StateRef<'_>) {
        self.key(ELEMENT, ns, key, element_len(element, state));
        put_element(&mut self.buf, element, state);
    }

    fn removed(&mut self, ns: &[u8], key: &[u8]) {
        self.key(REMOVED, ns, key, 0);
    }
}

/// Undo records: what a change overwrote, written after the change's own
/// records (the window log's entries, on disk with the data they undo).
impl Records {
    /// Starts an undo record; [`Records::end_undo`] writes its length.
    fn undo(&mut self, ns: &[u8], key: &[u8], made: Made<'_>, kind: u8, more: usize) -> usize {
        let origin = &made.origin[..made.origin.len().min(255)];
        self.key(UNDO, ns, key, 14 + origin.len() + more);
        self.buf.extend_from_slice(&made.time.0.to_le_bytes());
        self.buf.push(origin.len() as u8);
        self.buf.extend_from_slice(origin);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.push(kind);
        at
    }

    pub fn end_undo(&mut self, at: usize) {
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// What the key was is not kept.
    pub fn undo_lost(&mut self, ns: &[u8], key: &[u8], made: Made<'_>) {
        let at = self.undo(ns, key, made, LOST, 0);
        self.end_undo(at);
    }

    /// The key was a packed slot's entry: `entry`, its bytes after the
    /// key as node `own` packed them, copied rather than re-encoded (most
    /// writes overwrite a string or a counter).
    pub fn undo_packed(&mut self, ns: &[u8], key: &[u8], made: Made<'_>, own: NodeId, entry: &[u8]) {
        let at = self.undo(ns, key, made, PACKED, 8 + entry.len());
        self.buf.extend_from_slice(&own.to_le_bytes());
        self.buf.extend_from_slice(entry);
        self.end_undo(at);
    }

    /// The key was not there.
    pub fn undo_absent(&mut self, ns: &[u8], key: &[u8], made: Made<'_>) {
        let at = self.undo(ns, key, made, ABSENT, 0);
        self.end_undo(at);
    }

    /// The key was `header` with `elements` (a set's members, a hash's fields).
    pub fn undo_whole<'e>(
        &mut self,
        ns: &[u8],
        key: &[u8],
        made: Made<'_>,
        header: &Header<'_>,
        elements: impl ExactSizeIterator<Item = (&'e [u8], StateRef<'e>)>,
    ) {
        let at = self.undo(ns, key, made, WHOLE, header_len(header) + 10);
        put_header(&mut self.buf, header);
        varint(&mut self.buf, elements.len() as u64);
        for (name, state) in elements {
            put_element(&mut self.buf, name, state);
        }
        self.end_undo(at);
    }

    /// The named elements were these (`None`: not there); nothing else changed.
    pub fn undo_elements<'e>(
        &mut self,
        ns: &[u8],
        key: &[u8],
        made: Made<'_>,
        elements: impl ExactSizeIterator<Item = (&'e [u8], Option<StateRef<'e>>)>,
    ) {
        let at = self.undo_elements_start(ns, key, made, elements.len());
        for (name, state) in elements {
            self.undo_element(name, state);
        }
        self.end_undo(at);
    }

    /// Starts an undo record of `count` elements, each then written by
    /// [`Records::undo_element`]; [`Records::end_undo`] closes it.
    pub fn undo_elements_start(&mut self, ns: &[u8], key: &[u8], made: Made<'_>, count: usize) -> usize {
        let at = self.undo(ns, key, made, ELEMENTS, 5);
        varint(&mut self.buf, count as u64);
        at
    }

    /// One element of an undo record: what it was (`None`: not there).
    pub fn undo_element(&mut self, name: &[u8], state: Option<StateRef<'_>>) {
        match state {
            Some(state) => {
                self.buf.push(1);
                put_element(&mut self.buf, name, state);
            }
            None => {
                self.buf.push(0);
                varint(&mut self.buf, name.len() as u64);
                self.buf.extend_from_slice(name);
            }
        }
    }

    /// The key's expiry was this; nothing else changed.
    pub fn undo_expiry(&mut self, ns: &[u8], key: &[u8], made: Made<'_>, expiry: Option<&Lww<Option<u64>>>) {
        let start = self.undo(ns, key, made, EXPIRY, 26);
        let b = &mut self.buf;
        match expiry {
            None => b.push(0),
            Some(e) => {
                b.push(if e.value.is_some() { 2 } else { 1 });
                stamp(b, e.stamp);
                if let Some(at) = e.value {
                    b.extend_from_slice(&at.to_le_bytes());
                }
            }
        }
        self.end_undo(start);
    }

    /// Appends `other`'s records.
    pub fn append(&mut self, other: &Records) {
        self.buf.extend_from_slice(&other.buf);
        self.count += other.count;
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }
}

fn corrupt() -> Error {
    Error::Corrupt("a log record does not decode".into())
}

struct Reader<'a> {
    buf: &'a [u8],
    base: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(corrupt)?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(w))
    }

    fn stamp(&mut self) -> Result<Stamp, Error> {
        Ok(Stamp::new(Timestamp(self.u64()?), self.u64()?))
    }

    fn varint(&mut self) -> Result<usize, Error> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| corrupt());
            }
        }
        Err(corrupt())
    }

    /// The next `n` bytes as a slice of the shared buffer (no copy).
    fn bytes(&mut self, n: usize) -> Result<Bytes, Error> {
        let start = self.at;
        self.take(n)?;
        Ok(self.base.slice(start..start + n))
    }

    /// A sub-reader over the next `n` bytes.
    fn sub(&mut self, n: usize) -> Result<Reader<'a>, Error> {
        let start = self.at;
        self.take(n)?;
        Ok(Reader { buf: &self.buf[..start + n], base: self.base, at: start })
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.at..];
        self.at = self.buf.len();
        out
    }

    fn header(&mut self) -> Result<Header<'static>, Error> {
        let flags = self.u8()?;
        let epoch = self.stamp()?;
        let expiry = if flags & HAS_EXPIRY != 0 {
            let at = self.stamp()?;
            let when = if flags & PERSISTS != 0 { None } else { Some(self.u64()?) };
            Some(Lww::new(at, when))
        } else {
            None
        };
        let body = match flags & BODY_MASK {
            REGISTER => HeaderBody::Register(Cow::Owned(self.rest().to_vec())),
            COUNTER => {
                let n = self.varint()?;
                let mut slots = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let node = self.u64()?;
                    let (plus, minus, time) = (self.u64()?, self.u64()?, self.u64()?);
                    slots.push(CounterSlot { node, plus, minus, stamp: Timestamp(time) });
                }
                HeaderBody::Counter(Counts::Many(Cow::Owned(slots)))
            }
            SET => HeaderBody::Set,
            MAP => HeaderBody::Map,
            MAX => HeaderBody::Max(self.u64()? as i64),
            LIST => HeaderBody::List,
            ZSET => HeaderBody::ZSet,
            _ => return Err(corrupt()),
        };
        Ok(Header { epoch, expiry, body })
    }

    /// An element's name and state, as [`put_element`] wrote them.
    fn named_element(&mut self) -> Result<(Bytes, Element), Error> {
        let len = self.varint()?;
        let name = Bytes::copy_from_slice(self.take(len)?);
        let len = self.varint()?;
        Ok((name, self.sub(len)?.element()?))
    }

    fn before(&mut self) -> Result<Before, Error> {
        Ok(match self.u8()? {
            ABSENT => Before::Absent,
            WHOLE => {
                let len = self.varint()?;
                let mut entry = self.sub(len)?.header()?.into_entry();
                for _ in 0..self.varint()? {
                    match (self.named_element()?, &mut entry.value) {
                        ((name, Element::Member(r)), Value::Set(m)) => {
                            m.assign(name, r);
                        }
                        ((name, Element::Field(r)), Value::Map(m)) => {
                            m.assign(name, r);
                        }
                        ((name, Element::Score(r)), Value::ZSet(z)) => {
                            z.assign(name, r);
                        }
                        ((name, Element::Item(r)), Value::List(items)) => {
                            items.assign(squall_lattice::Place::decode(&name).ok_or_else(corrupt)?, r);
                        }
                        _ => return Err(corrupt()),
                    }
                }
                Before::Whole(entry)
            }
            ELEMENTS => {
                let n = self.varint()?;
                let mut elements = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    if self.u8()? == 1 {
                        let (name, state) = self.named_element()?;
                        elements.push((name, Some(state)));
                    } else {
                        let len = self.varint()?;
                        elements.push((Bytes::copy_from_slice(self.take(len)?), None));
                    }
                }
                Before::Elements(elements)
            }
            LOST => Before::Lost,
            PACKED => {
                let own = self.u64()?;
                Before::Whole(Slot::unpack_entry(self.rest(), own).ok_or_else(corrupt)?)
            }
            EXPIRY => Before::Expiry(match self.u8()? {
                0 => None,
                1 => Some(Lww::new(self.stamp()?, None)),
                2 => Some(Lww::new(self.stamp()?, Some(self.u64()?))),
                _ => return Err(corrupt()),
            }),
            _ => return Err(corrupt()),
        })
    }

    fn element(&mut self) -> Result<Element, Error> {
        let kind = self.u8()?;
        let at = self.stamp()?;
        let flag = self.u8()?;
        match kind {
            MEMBER => Ok(Element::Member(Lww::new(at, flag != 0))),
            SCORE => {
                let value = if flag != 0 {
                    let bits: [u8; 8] = self.rest().try_into().map_err(|_| corrupt())?;
                    Some(squall_lattice::Score(f64::from_le_bytes(bits)))
                } else {
                    None
                };
                Ok(Element::Score(Lww::new(at, value)))
            }
            FIELD | ITEM => {
                let value = (flag != 0).then(|| Bytes::copy_from_slice(self.rest()));
                Ok(if kind == ITEM { Element::Item(Lww::new(at, value)) } else { Element::Field(Lww::new(at, value)) })
            }
            _ => Err(corrupt()),
        }
    }
}

/// Decodes a buffer of records, calling `f` with each in order. Namespaces
/// and keys are slices of `buf` (the keyspace copies the ones it keeps);
/// members, fields and values are copied out: what the keyspace keeps must
/// not pin the buffer.
pub(crate) fn decode(buf: &Bytes, mut f: impl FnMut(Record)) -> Result<usize, Error> {
    let mut r = Reader { buf, base: buf, at: 0 };
    let mut n = 0;
    while r.at < buf.len() {
        let start = r.at;
        let tag = r.u8()?;
        let ns_len = r.u8()? as usize;
        let ns = r.bytes(ns_len)?;
        let key_len = r.varint()?;
        let key = r.bytes(key_len)?;
        let record = match tag {
            HEADER => {
                let len = r.varint()?;
                Record::Header { ns, key, header: r.sub(len)?.header()? }
            }
            ELEMENT => {
                let len = r.varint()?;
                let element = Bytes::copy_from_slice(r.take(len)?);
                let len = r.varint()?;
                Record::Element { ns, key, element, state: r.sub(len)?.element()? }
            }
            REMOVED => Record::Removed { ns, key },
            UNDO => {
                let time = Timestamp(r.u64()?);
                let origin = r.u8()? as usize;
                r.take(origin)?;
                let mut len = [0u8; 4];
                len.copy_from_slice(r.take(4)?);
                r.take(u32::from_le_bytes(len) as usize)?;
                Record::Undo { ns, key, time, record: buf.slice(start..r.at) }
            }
            _ => return Err(corrupt()),
        };
        f(record);
        n += 1;
    }
    Ok(n)
}

/// What an undo record (as [`decode`] gives it, whole) says was overwritten.
pub(crate) fn before_of(record: &Bytes) -> Result<Before, Error> {
    let mut r = Reader { buf: record, base: record, at: 0 };
    if r.u8()? != UNDO {
        return Err(corrupt());
    }
    let ns_len = r.u8()? as usize;
    r.take(ns_len)?;
    let key_len = r.varint()?;
    r.take(key_len + 8)?;
    let origin = r.u8()? as usize;
    r.take(origin)?;
    let mut len = [0u8; 4];
    len.copy_from_slice(r.take(4)?);
    r.sub(u32::from_le_bytes(len) as usize)?.before()
}

/// The invocation (or other origin) an undo record names, if any.
pub(crate) fn origin_of(record: &[u8]) -> Option<&[u8]> {
    let buf = Bytes::copy_from_slice(record);
    let mut r = Reader { buf: &buf, base: &buf, at: 0 };
    r.u8().ok()?;
    let ns_len = r.u8().ok()? as usize;
    r.take(ns_len).ok()?;
    let key_len = r.varint().ok()?;
    r.take(key_len + 8).ok()?;
    let len = r.u8().ok()? as usize;
    let at = r.at;
    (len > 0 && at + len <= record.len()).then(|| &record[at..at + len])
}

/// When and by what a change was made (its undo record says).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Made<'a> {
    pub time: Timestamp,
    /// The invocation whose commit it is; empty for anything else.
    pub origin: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_back_in_order() {
        let s = Stamp::new(Timestamp(9), 3);
        let header = Header { epoch: s, expiry: Some(Lww::new(s, Some(5))), body: HeaderBody::Set };
        let mut r = Records::default();
        r.header(b"ns", b"k", &header);
        r.element(b"ns", b"k", s, b"m", StateRef::Member(&Lww::new(s, true)));
        r.removed(b"other", b"gone");
        // A header borrowed from a slot reads back as an owned one.
        let reg = Header { epoch: s, expiry: None, body: HeaderBody::Register(std::borrow::Cow::Borrowed(b"value")) };
        r.header(b"ns", b"r", &reg);
        let slots = vec![
            CounterSlot { node: 1, plus: 5, minus: 2, stamp: Timestamp(7) },
            CounterSlot { node: 2, plus: 1, minus: 0, stamp: Timestamp(8) },
        ];
        let counter =
            Header { epoch: s, expiry: Some(Lww::new(s, None)), body: HeaderBody::Counter(Counts::One(slots[0])) };
        r.header(b"ns", b"c1", &counter);
        let many = Header { body: HeaderBody::Counter(Counts::Many(Cow::Borrowed(&slots))), ..counter.clone() };
        r.header(b"ns", b"c2", &many);
        r.element(b"ns", b"h", s, b"f", StateRef::Field(&Lww::new(s, Some(Bytes::from_static(b"v")))));
        r.element(b"ns", b"h", s, b"g", StateRef::Field(&Lww::new(s, None)));
        assert_eq!(r.len(), 8);
        let buf = Bytes::from(r.into_bytes());
        let mut got = Vec::new();
        assert_eq!(decode(&buf, |rec| got.push(rec)).unwrap(), 8);
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        assert_eq!(
            got,
            vec![
                Record::Header { ns: b("ns"), key: b("k"), header },
                Record::Element {
                    ns: b("ns"),
                    key: b("k"),
                    element: b("m"),
                    state: Element::Member(Lww::new(s, true))
                },
                Record::Removed { ns: b("other"), key: b("gone") },
                Record::Header {
                    ns: b("ns"),
                    key: b("r"),
                    header: Header { body: HeaderBody::Register(b"value".to_vec().into()), ..reg.clone() },
                },
                Record::Header {
                    ns: b("ns"),
                    key: b("c1"),
                    header: Header { body: HeaderBody::Counter(Counts::Many(Cow::Owned(vec![slots[0]]))), ..counter },
                },
                Record::Header {
                    ns: b("ns"),
                    key: b("c2"),
                    header: Header {
                        body: HeaderBody::Counter(Counts::Many(Cow::Owned(slots.clone()))),
                        ..many.clone()
                    },
                },
                Record::Element {
                    ns: b("ns"),
                    key: b("h"),
                    element: b("f"),
                    state: Element::Field(Lww::new(s, Some(Bytes::from_static(b"v"))))
                },
                Record::Element { ns: b("ns"), key: b("h"), element: b("g"), state: Element::Field(Lww::new(s, None)) },
            ]
        );
        assert!(decode(&buf.slice(..buf.len() - 1), |_| {}).is_err());
    }

    /// A packed slot's undo record reads back as the slot's whole entry,
    /// whoever's stamps it holds; a cut one is corrupt, not a panic.
    #[test]
    fn packed_undo_records_read_back_as_the_entry() {
        use squall_lattice::{Entry, PnCounter};
        let own = 7;
        let (mine, theirs) = (Stamp::new(Timestamp(9), own), Stamp::new(Timestamp(11), 3));
        let entries = [
            Entry::new(mine, Value::Register(Bytes::from_static(b"value"))),
            Entry::new(theirs, Value::Register(Bytes::new())),
            Entry { expiry: Some(Lww::new(theirs, Some(1234))), ..Entry::new(mine, Value::Register("v".into())) },
            Entry { expiry: Some(Lww::new(mine, None)), ..Entry::new(theirs, Value::Register("v".into())) },
            Entry::new(
                mine,
                Value::Counter(PnCounter::from_slots([CounterSlot {
                    node: own,
                    plus: 5,
                    minus: 2,
                    stamp: Timestamp(7),
                }])),
            ),
            Entry::new(
                mine,
                Value::Counter(PnCounter::from_slots([CounterSlot {
                    node: 3,
                    plus: 1,
                    minus: 9,
                    stamp: Timestamp(8),
                }])),
            ),
        ];
        let made = Made { time: Timestamp(20), origin: b"inv" };
        for entry in entries {
            let slot = Slot::new(b"key", entry.clone(), own);
            let packed = slot.packed_entry().expect("strings and one node's counters are packed");
            let mut r = Records::default();
            r.undo_packed(b"ns", b"key", made, own, packed);
            let record = Bytes::from(r.into_bytes());
            assert_eq!(before_of(&record).unwrap(), Before::Whole(entry.clone()), "{entry:?}");
            assert_eq!(origin_of(&record), Some(&b"inv"[..]));
            // Cut inside the epoch (its length says less): not an entry.
            let mut cut = record.to_vec();
            let len_at = cut.len() - packed.len() - 8 - 1 - 4;
            let short = (1 + 8 + 8) as u32;
            cut[len_at..len_at + 4].copy_from_slice(&short.to_le_bytes());
            cut.truncate(len_at + 4 + short as usize);
            assert!(before_of(&Bytes::from(cut)).is_err(), "{entry:?}");
        }
    }
}
