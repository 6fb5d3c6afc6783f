//! The pure keyspace: what every operation means. It applies an [`Op`] at a
//! stamp and answers, and tells a [`Changes`] sink what it changed (the
//! delta the disk log, and later the window log and replication, consume).
//! No I/O, no clock, no statistics, no threads: the shard owns those. An
//! invocation's transaction runs the same keyspace as a private overlay,
//! with a sink that keeps nothing.
//!
//! Every write of one atomic unit carries the unit's stamp; what a write
//! changes (a register's epoch, a member, a field, a counter slot, an
//! expiry) takes that stamp, so merging the units' deltas in any order gives
//! the state the keyspace holds. Within one unit, a later write to the same
//! part replaces the earlier one (they share a stamp).
//!
//! Work per operation is linear in its arguments (and, for reads, in what
//! it answers): members and fields are hash lookups, a duplicate field costs
//! a hash-set probe, scans walk partitions in hash order.

mod slot;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use table::position;
pub use table::{POSITION_BITS, key_hash};

use crate::disk::{Made, Records};
use crate::glob;
use crate::hll::Registers;
use crate::op::{GetExpiry, Op, OpError, OpResult, Reply, ScoreBound, SetExpiry, ZAddOpts, ZBy, ZRange};
use bytes::Bytes;
pub(crate) use slot::Slot;
use slot::{Body, FIELD_OVERHEAD, ITEM_OVERHEAD, MEMBER_OVERHEAD, SCORED_OVERHEAD};
use squall_lattice::{
    Entry, Fields, Items, Kind, LMap, Lww, Max, Members, NodeId, Place, PnCounter, Score, ScoreReg,
    Slot as CounterSlot, Stamp, Value, ZSet, format_score,
};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use table::{Spot, Table};

type Hashed<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What a key's header record holds: everything but a set's members and a
/// hash's fields, which have records of their own. Borrowed from the slot
/// when a change is reported; owned when read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header<'a> {
    pub epoch: Stamp,
    pub expiry: Option<Lww<Option<u64>>>,
    pub body: HeaderBody<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HeaderBody<'a> {
    Register(Cow<'a, [u8]>),
    Counter(Counts<'a>),
    Set,
    Map,
    Max(i64),
    List,
    ZSet,
}

/// A counter's slots: most counters have one (this node's), kept inline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Counts<'a> {
    One(CounterSlot),
    Many(Cow<'a, [CounterSlot]>),
}

impl Counts<'_> {
    pub fn slots(&self) -> &[CounterSlot] {
        match self {
            Counts::One(s) => std::slice::from_ref(s),
            Counts::Many(all) => all,
        }
    }
}

impl<'a> Header<'a> {
    fn of(slot: &'a Slot, own: NodeId) -> Header<'a> {
        let body = match slot.body(own) {
            Body::Register(v) => HeaderBody::Register(Cow::Borrowed(v)),
            Body::Other(Value::Register(v)) => HeaderBody::Register(Cow::Borrowed(v)),
            Body::Counter(s) => HeaderBody::Counter(Counts::One(s)),
            Body::Other(Value::Counter(c)) => HeaderBody::Counter(Counts::Many(Cow::Borrowed(c.slots()))),
            Body::Other(Value::Set(_)) => HeaderBody::Set,
            Body::Other(Value::Map(_)) => HeaderBody::Map,
            Body::Other(Value::Max(m)) => HeaderBody::Max(m.0),
            Body::Other(Value::List(_)) => HeaderBody::List,
            Body::Other(Value::ZSet(_)) => HeaderBody::ZSet,
            // A key whose entry is a tombstone is not kept.
            Body::Other(Value::Tombstone) => HeaderBody::Map,
        };
        Header { epoch: slot.epoch(own), expiry: slot.expiry(own), body }
    }

    pub(crate) fn into_entry(self) -> Entry {
        let value = match self.body {
            HeaderBody::Register(b) => Value::Register(Bytes::from(b.into_owned())),
            HeaderBody::Counter(counts) => Value::Counter(PnCounter::from_slots(counts.slots().iter().copied())),
            HeaderBody::Set => Value::Set(Members::default()),
            HeaderBody::Map => Value::Map(Fields::default()),
            HeaderBody::Max(m) => Value::Max(Max(m)),
            HeaderBody::List => Value::List(Items::default()),
            HeaderBody::ZSet => Value::ZSet(ZSet::default()),
        };
        Entry { epoch: self.epoch, value, expiry: self.expiry }
    }
}

/// A change to a set member, hash field or list item (named by its
/// [`Place`], encoded): its register as it is now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Element {
    Member(Lww<bool>),
    Field(Lww<Option<Bytes>>),
    Item(Lww<Option<Bytes>>),
    Score(ScoreReg),
}

/// An element's register, borrowed (for encoding without a copy).
#[derive(Debug, Clone, Copy)]
pub(crate) enum StateRef<'a> {
    Member(&'a Lww<bool>),
    Field(&'a Lww<Option<Bytes>>),
    Item(&'a Lww<Option<Bytes>>),
    Score(&'a ScoreReg),
}

impl Element {
    pub(crate) fn as_state(&self) -> StateRef<'_> {
        match self {
            Element::Member(r) => StateRef::Member(r),
            Element::Field(r) => StateRef::Field(r),
            Element::Item(r) => StateRef::Item(r),
            Element::Score(r) => StateRef::Score(r),
        }
    }
}

/// Where the keyspace reports what it changed, in order. For one key a
/// header comes before the elements it frames.
pub(crate) trait Changes {
    fn header(&mut self, ns: &[u8], key: &[u8], header: &Header<'_>);
    /// `epoch` is the epoch of the set or hash the element belongs to.
    fn element(&mut self, ns: &[u8], key: &[u8], epoch: Stamp, element: &[u8], state: StateRef<'_>);
    fn removed(&mut self, ns: &[u8], key: &[u8]);
}

/// Keeps nothing: for a transaction's overlay.
impl Changes for () {
    fn header(&mut self, _: &[u8], _: &[u8], _: &Header<'_>) {}
    fn element(&mut self, _: &[u8], _: &[u8], _: Stamp, _: &[u8], _: StateRef<'_>) {}
    fn removed(&mut self, _: &[u8], _: &[u8]) {}
}

/// The largest value an undo record keeps whole; overwriting or removing a
/// bigger one records that the key's past before it is not kept.
pub(crate) const MAX_UNDO_BYTES: usize = 16 << 20;

/// Sets and hashes up to this size (members, bytes) are kept whole in
/// an undo record; a change to a bigger one keeps the elements it names.
const SMALL: usize = 32;
const SMALL_BYTES: usize = 64 << 10;

/// Where a write's undo record goes while the window log is on. The
/// hottest writes (SET, INCRBY, SADD, HSET) write it from the slot they
/// find and the registers they replace, with no lookup of their own.
pub(crate) struct Undo<'a> {
    pub out: &'a mut Records,
    pub made: Made<'a>,
}

/// Whether a change to the set or hash in `slot` (of `len` elements)
/// keeps only the elements it names.
fn big(slot: &Slot, len: usize) -> bool {
    len > SMALL || slot.approx_bytes() > SMALL_BYTES
}

/// Writes the whole entry in `slot` as `key`'s undo record (or that it
/// is lost, if too big to keep).
fn undo_slot(slot: &Slot, node: NodeId, ns: &[u8], key: &[u8], made: Made<'_>, out: &mut Records) {
    if slot.approx_bytes() > MAX_UNDO_BYTES {
        return out.undo_lost(ns, key, made);
    }
    if let Some(entry) = slot.packed_entry() {
        return out.undo_packed(ns, key, made, node, entry);
    }
    let header = Header::of(slot, node);
    match slot.body(node) {
        Body::Other(Value::Set(m)) => out.undo_whole(
            ns,
            key,
            made,
            &header,
            m.iter().map(|(n, r)| (n.as_ref(), StateRef::Member(r))).collect::<Vec<_>>().into_iter(),
        ),
        Body::Other(Value::Map(m)) => out.undo_whole(
            ns,
            key,
            made,
            &header,
            m.iter().map(|(n, r)| (n.as_ref(), StateRef::Field(r))).collect::<Vec<_>>().into_iter(),
        ),
        Body::Other(Value::ZSet(z)) => out.undo_whole(
            ns,
            key,
            made,
            &header,
            z.registers().map(|(n, r)| (n.as_ref(), StateRef::Score(r))).collect::<Vec<_>>().into_iter(),
        ),
        Body::Other(Value::List(items)) => {
            let names: Vec<[u8; Place::BYTES]> = items.iter().map(|(p, _)| p.encode()).collect();
            let states = names.iter().zip(items.iter()).map(|(n, (_, r))| (n.as_ref(), StateRef::Item(r)));
            out.undo_whole(ns, key, made, &header, states.collect::<Vec<_>>().into_iter())
        }
        _ => out.undo_whole(ns, key, made, &header, std::iter::empty()),
    }
}

/// Writes the undo record of a write that replaces whatever `spot` holds:
/// the whole entry there, or that there was none. (A write that then fails
/// changes nothing, and its undo record is not kept.)
fn undo_replaced(undo: Option<&mut Undo<'_>>, spot: &Spot<'_>, node: NodeId, ns: &[u8], key: &[u8]) {
    if let Some(u) = undo {
        match spot {
            Spot::Taken(slot) => undo_slot(slot, node, ns, key, u.made, u.out),
            Spot::Free(_) => u.out.undo_absent(ns, key, u.made),
        }
    }
}

/// A big set's or hash's undo record, written while its merge runs: each
/// element the op names, as it was the first time the op named it.
struct ElementsUndo<'u, 'm> {
    undo: &'u mut Undo<'m>,
    /// Where the record starts (for its length).
    at: usize,
    /// Which of the named are the first of their name (`None`: all are,
    /// there is at most one).
    firsts: Option<Vec<bool>>,
}

impl<'u, 'm> ElementsUndo<'u, 'm> {
    fn start(
        undo: &'u mut Undo<'m>,
        ns: &[u8],
        key: &[u8],
        names: impl ExactSizeIterator<Item = &'u [u8]>,
    ) -> ElementsUndo<'u, 'm> {
        let (firsts, count) = if names.len() <= 1 {
            (None, names.len())
        } else {
            let mut seen: HashSet<&[u8], foldhash::fast::RandomState> = HashSet::default();
            seen.reserve(names.len());
            let firsts: Vec<bool> = names.map(|n| seen.insert(n)).collect();
            let count = seen.len();
            (Some(firsts), count)
        };
        let at = undo.out.undo_elements_start(ns, key, undo.made, count);
        ElementsUndo { undo, at, firsts }
    }

    /// The `i`th element named, `name`, was `old` before the op.
    fn was(&mut self, i: usize, name: &[u8], old: Option<StateRef<'_>>) {
        if self.firsts.as_ref().is_none_or(|f| f[i]) {
            self.undo.out.undo_element(name, old);
        }
    }

    fn end(self) {
        self.undo.out.end_undo(self.at);
    }
}

/// What a change overwrote: enough to undo it. The window log's entries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Before {
    /// There was no key.
    Absent,
    /// The whole entry, expired or not.
    Whole(Entry),
    /// A set's members or a hash's fields as they were (`None`: not there);
    /// the rest of the key did not change.
    Elements(Vec<(Bytes, Option<Element>)>),
    /// The key's expiry as it was; nothing else changed.
    Expiry(Option<Lww<Option<u64>>>),
    /// Not kept (the value was too big): the key cannot be read before it.
    Lost,
}

/// A change read back from disk.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Header {
        ns: Bytes,
        key: Bytes,
        header: Header<'static>,
    },
    Element {
        ns: Bytes,
        key: Bytes,
        element: Bytes,
        state: Element,
    },
    Removed {
        ns: Bytes,
        key: Bytes,
    },
    /// What the change before it overwrote, and the change's time; the
    /// record as it was written (see `disk::records::before_of`).
    Undo {
        ns: Bytes,
        key: Bytes,
        time: squall_lattice::Timestamp,
        record: Bytes,
    },
}

/// One page of a SCAN over a shard, in hash order.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanPage {
    pub keys: Vec<Bytes>,
    /// The position to resume from, or `None` when the shard is done.
    pub next: Option<u64>,
}

#[derive(Default)]
struct Space {
    table: Table,
    /// (expiry ms, key hash) of every key with an expiry.
    expiring: BTreeSet<(u64, u64)>,
}

/// Where a snapshot dump resumes: a namespace and a position in it, and
/// the big keys whose elements are still to come.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DumpCursor {
    pub ns: Bytes,
    pub from: u64,
    /// Every key has been visited; only `pending`'s elements are left.
    pub walked: bool,
    pub pending: VecDeque<PartKey>,
}

/// A key a dump has written the header and some elements of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartKey {
    pub ns: Bytes,
    pub key: Bytes,
    /// The epoch written: a key deleted or made anew since is left to the
    /// log, which has all of that.
    pub epoch: Stamp,
    pub at: ElementAt,
    /// Times its table moved its entries under the walk, which then began
    /// again; past [`MAX_RESTARTS`] the rest is written in one step.
    pub restarts: u8,
}

/// Where the elements of a key resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ElementAt {
    /// A set's, hash's or sorted set's table at this layout, from this bucket.
    Bucket { layout: u32, next: usize },
    /// A list after this place.
    After(Place),
}

/// Elements a dump step writes at most (besides its keys' headers), so
/// that a key of millions of members is written a slice at a time.
pub const DUMP_ELEMENTS: usize = 8192;
const MAX_RESTARTS: u8 = 3;

/// A shard's keys, by namespace.
pub struct Keyspace {
    node: NodeId,
    spaces: Hashed<Bytes, Space>,
    keys: u64,
    bytes: i64,
}

impl std::fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyspace").field("node", &self.node).field("keys", &self.keys).finish()
    }
}

fn copy(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// A collection just made, with the header record that announces it.
fn created(entry: &mut Entry) -> (&mut Entry, Option<Header<'static>>) {
    let body = match entry.value {
        Value::Map(_) => HeaderBody::Map,
        Value::List(_) => HeaderBody::List,
        Value::ZSet(_) => HeaderBody::ZSet,
        _ => HeaderBody::Set,
    };
    let header = Header { epoch: entry.epoch, expiry: entry.expiry.clone(), body };
    (entry, Some(header))
}

fn members_of(e: &mut Entry) -> Result<&mut Members, OpError> {
    match &mut e.value {
        Value::Set(m) => Ok(m),
        _ => Err(OpError::WrongType),
    }
}

fn fields_of(e: &mut Entry) -> Result<&mut Fields, OpError> {
    match &mut e.value {
        Value::Map(m) => Ok(m),
        _ => Err(OpError::WrongType),
    }
}

fn empty_reply(op: &Op) -> Reply {
    match op {
        Op::SRandMember(Some(_)) | Op::SPop(Some(_)) => Reply::List(Vec::new()),
        Op::HMGet(fields) => Reply::Array(vec![Reply::Nil; fields.len()]),
        Op::SMIsMember(members) => Reply::Array(vec![Reply::Int(0); members.len()]),
        Op::SMembers | Op::HGetAll | Op::LRange(..) => Reply::List(Vec::new()),
        Op::ZRange(ZRange { scores: false, .. }) => Reply::List(Vec::new()),
        Op::ZRange(_) | Op::ZPop { .. } => Reply::Scored(Vec::new()),
        Op::ZMScore(members) => Reply::Array(vec![Reply::Nil; members.len()]),
        Op::Exists | Op::SCard | Op::HLen | Op::SIsMember(_) | Op::LLen | Op::ZCard | Op::ZCount(..) => Reply::Int(0),
        Op::ElementScan { .. } => scan_page(0, Vec::new()),
        Op::HRandField { count: Some(_), .. } | Op::ZRandMember { count: Some(_), scores: false } => {
            Reply::List(Vec::new())
        }
        Op::ZRandMember { count: Some(_), scores: true } => Reply::Scored(Vec::new()),
        Op::LPos { count: Some(_), .. } => Reply::Array(Vec::new()),
        Op::ExpireTime => Reply::Int(-2),
        Op::Type => Reply::Type(None),
        Op::Pttl => Reply::Int(-2),
        _ => Reply::Nil,
    }
}

/// A collection this small answers a scan in one page, whatever its
/// COUNT, as Redis does for its compact encodings.
const SCAN_WHOLE: usize = 128;

/// An SSCAN, HSCAN or ZSCAN reply: the next cursor, and the page.
fn scan_page(next: u64, page: Vec<Bytes>) -> Reply {
    Reply::Array(vec![Reply::Bytes(Bytes::from(next.to_string())), Reply::List(page)])
}

/// A page of a set's, hash's or sorted set's elements from bucket
/// `cursor` on, about `count` of them (every one if it is small); the
/// cursor goes on from where the page stopped, 0 at the end. An element
/// there for the whole scan is seen unless its table shrank under the scan
/// (a set or hash that lost most of its elements).
fn element_scan(body: Body<'_>, kind: Kind, cursor: u64, count: usize, pattern: Option<&[u8]>) -> OpResult {
    let mut page = Vec::new();
    let wanted = |name: &[u8]| pattern.is_none_or(|p| glob::matches(p, name));
    let from_budget = |len: usize| if len <= SCAN_WHOLE { (0, usize::MAX) } else { (cursor as usize, count) };
    let next = match (kind, body) {
        (Kind::Set, Body::Other(Value::Set(m))) => {
            let (from, budget) = from_budget(m.len());
            m.walk_buckets(from, budget, |member, r| {
                if r.value && wanted(member) {
                    page.push(member.clone());
                }
            })
        }
        (Kind::Map, Body::Other(Value::Map(m))) => {
            let (from, budget) = from_budget(m.len());
            m.walk_buckets(from, budget, |field, r| {
                if let Some(v) = r.value.as_ref().filter(|_| wanted(field)) {
                    page.extend([field.clone(), v.clone()]);
                }
            })
        }
        (Kind::ZSet, Body::Other(Value::ZSet(z))) => {
            let (from, budget) = from_budget(z.len());
            z.walk_registers(from, budget, |member, r| {
                if let Some(score) = r.value.filter(|_| wanted(member)) {
                    page.extend([member.clone(), Bytes::from(format_score(score.0))]);
                }
            })
        }
        _ => return Err(OpError::WrongType),
    };
    Ok(scan_page(next.map_or(0, |n| n as u64), page))
}

/// The records that make `slot` whole: its header, then its members or
/// fields.
fn records_of(slot: &Slot, ns: &[u8], node: NodeId, changes: &mut impl Changes) {
    let header = Header::of(slot, node);
    changes.header(ns, slot.key(), &header);
    elements_of(slot, ns, node, None, usize::MAX, changes);
}

/// The layout of `slot`'s table, if its elements are in one.
fn table_layout(slot: &Slot, node: NodeId) -> Option<u32> {
    match slot.body(node) {
        Body::Other(Value::Set(m)) => Some(m.layout()),
        Body::Other(Value::Map(m)) => Some(m.layout()),
        Body::Other(Value::ZSet(z)) => Some(z.layout()),
        _ => None,
    }
}

/// The records of `slot`'s members, fields, items or scores, from `at` on
/// (from the first if `None`), `budget` of them at most; how many it wrote,
/// and where to resume (`None` when all are written). A position by bucket holds only while
/// the table's layout is the one it names: otherwise the walk starts again.
fn elements_of(
    slot: &Slot,
    ns: &[u8],
    node: NodeId,
    at: Option<ElementAt>,
    budget: usize,
    changes: &mut impl Changes,
) -> (usize, Option<ElementAt>) {
    let (key, epoch) = (slot.key(), slot.epoch(node));
    let mut written = 0;
    let mut put = |name: &[u8], state: StateRef<'_>| {
        written += 1;
        changes.element(ns, key, epoch, name, state);
    };
    let bucket = |layout: u32| match at {
        Some(ElementAt::Bucket { layout: was, next }) if was == layout => next,
        _ => 0,
    };
    let resume = |layout: u32, next: Option<usize>| next.map(|next| ElementAt::Bucket { layout, next });
    let next = match slot.body(node) {
        Body::Other(Value::Set(m)) => {
            resume(m.layout(), m.walk_buckets(bucket(m.layout()), budget, |member, r| put(member, StateRef::Member(r))))
        }
        Body::Other(Value::Map(m)) => {
            resume(m.layout(), m.walk_buckets(bucket(m.layout()), budget, |field, r| put(field, StateRef::Field(r))))
        }
        Body::Other(Value::ZSet(z)) => resume(
            z.layout(),
            z.walk_registers(bucket(z.layout()), budget, |member, r| put(member, StateRef::Score(r))),
        ),
        Body::Other(Value::List(items)) => {
            let after = match at {
                Some(ElementAt::After(place)) => Some(place),
                _ => None,
            };
            items.walk_after(after, budget, |place, r| put(&place.encode(), StateRef::Item(r))).map(ElementAt::After)
        }
        _ => None,
    };
    (written, next)
}

/// `entry`'s value and expiry as written anew at `stamp` (RENAME, COPY):
/// a new epoch, every member and field stamped with it, a counter's total
/// as this node's count.
fn restamped(entry: Entry, stamp: Stamp, node: NodeId) -> Entry {
    let value = match entry.value {
        Value::Counter(c) => {
            let mut fresh = PnCounter::default();
            fresh.add(Stamp::new(stamp.time, node), c.value());
            Value::Counter(fresh)
        }
        Value::Set(m) => {
            let mut fresh = Members::default();
            for (member, _) in m.iter().filter(|(_, r)| r.value) {
                fresh.assign(member.clone(), Lww::new(stamp, true));
            }
            Value::Set(fresh)
        }
        Value::Map(m) => {
            let mut fresh = Fields::default();
            for (field, r) in m.iter() {
                if let Some(v) = &r.value {
                    fresh.assign(field.clone(), Lww::new(stamp, Some(v.clone())));
                }
            }
            Value::Map(fresh)
        }
        Value::List(items) => {
            let mut fresh = Items::default();
            for (at, (_, r)) in items.iter().filter(|(_, r)| r.value.is_some()).enumerate() {
                fresh.assign(Place { at: at as i64, made: stamp }, Lww::new(stamp, r.value.clone()));
            }
            Value::List(fresh)
        }
        Value::ZSet(z) => {
            let mut fresh = ZSet::default();
            for (member, score) in z.ordered() {
                fresh.assign(member.clone(), Lww::new(stamp, Some(Score(score))));
            }
            Value::ZSet(fresh)
        }
        other => other,
    };
    let expiry = entry.expiry.map(|e| Lww::new(stamp, e.value));
    Entry { epoch: stamp, value, expiry }
}

/// The encoding Redis gives a value like this one, by its default
/// thresholds (`*-max-listpack-entries` 128, `-value` 64, `set-max-intset-entries` 512).
fn encoding(body: Body<'_>) -> &'static str {
    let int = |b: &[u8]| crate::op::parse_int(b).is_some();
    let string = |b: &[u8]| {
        if int(b) {
            "int"
        } else if b.len() <= 44 {
            "embstr"
        } else {
            "raw"
        }
    };
    match body {
        Body::Register(v) => string(v),
        Body::Other(Value::Register(v)) => string(v),
        Body::Counter(_) | Body::Other(Value::Counter(_)) => "int",
        Body::Other(Value::Set(m)) if m.len() <= 512 && m.iter().all(|(k, _)| int(k)) => "intset",
        Body::Other(Value::Set(m)) if m.len() <= 128 && m.iter().all(|(k, _)| k.len() <= 64) => "listpack",
        Body::Other(Value::Map(m))
            if m.len() <= 128
                && m.iter().all(|(k, r)| k.len() <= 64 && r.value.as_ref().is_none_or(|v| v.len() <= 64)) =>
        {
            "listpack"
        }
        Body::Other(Value::List(items))
            if items.len() <= 128
                && items.iter().map(|(_, r)| r.value.as_ref().map_or(0, Bytes::len)).sum::<usize>() <= 8192 =>
        {
            "listpack"
        }
        Body::Other(Value::List(_)) => "quicklist",
        Body::Other(Value::ZSet(z)) if z.len() <= 128 && z.registers().all(|(m, _)| m.len() <= 64) => "listpack",
        Body::Other(Value::ZSet(_)) => "skiplist",
        Body::Other(_) => "hashtable",
    }
}

/// A Redis index (negative ones count from the tail) as a position in a
/// list of `n` items, if it is in the list.
fn index(i: i64, n: usize) -> Option<usize> {
    let i = if i < 0 { i.checked_add(n as i64)? } else { i };
    (0..n as i64).contains(&i).then_some(i as usize)
}

/// LRANGE's and LTRIM's `start` and `stop` (both included, negative ones
/// from the tail, clamped) as positions `from..to` in a list of `n`.
fn range(start: i64, stop: i64, n: usize) -> (usize, usize) {
    let n = n as i64;
    let from = if start < 0 { (start.saturating_add(n)).max(0) } else { start };
    let to = if stop < 0 { stop.saturating_add(n) } else { stop.min(n - 1) };
    if from > to || from >= n { (0, 0) } else { (from as usize, to as usize + 1) }
}

/// The items at positions `from..to`.
fn slice(items: &Items, from: usize, to: usize) -> Vec<(&Place, &Lww<Option<Bytes>>)> {
    items.range(from, to).collect()
}

/// The places a push of `n` items takes: before the head (each new one
/// nearer it) or after the tail, stamped with the push.
/// Room left between places that LINSERT spreads out, so that the next
/// inserts there take a midpoint instead of moving items again.
const INSERT_GAP: i64 = 1 << 16;

/// Where LINSERT puts its item, and the items it moves to make room (old
/// place, new place); `None` without the pivot. Between two places with
/// room, the midpoint; else the items on the shorter side of the insertion
/// move, spread [`INSERT_GAP`] apart, and so does the new one.
fn insert_plan(items: &Items, before: bool, pivot: &[u8], made: Stamp) -> Result<Option<InsertPlan>, OpError> {
    let all: Vec<&Place> = items.iter().map(|(p, _)| p).collect();
    let Some(at) = items.iter().position(|(_, r)| r.value.as_deref() == Some(pivot)) else { return Ok(None) };
    // The new item goes between all[i - 1] and all[i].
    let i = if before { at } else { at + 1 };
    let (lo, hi) = (i.checked_sub(1).map(|j| all[j].at), all.get(i).map(|p| p.at));
    let overflow = || OpError::Overflow;
    let fresh = |at: i64| Place { at, made };
    let place = match (lo, hi) {
        (None, Some(hi)) => {
            return Ok(Some(InsertPlan { place: fresh(hi.checked_sub(1).ok_or_else(overflow)?), moves: Vec::new() }));
        }
        (Some(lo), None) => {
            return Ok(Some(InsertPlan { place: fresh(lo.checked_add(1).ok_or_else(overflow)?), moves: Vec::new() }));
        }
        (Some(lo), Some(hi)) if hi - lo >= 2 => fresh(lo + (hi - lo) / 2),
        (Some(lo), Some(hi)) => {
            let step = |k: usize| INSERT_GAP.checked_mul(k as i64).ok_or_else(overflow);
            let mut moves = Vec::new();
            let place = if i <= all.len() - i {
                // The head side moves down from below `hi`.
                let new = fresh(hi.checked_sub(INSERT_GAP).ok_or_else(overflow)?);
                for (k, old) in all[..i].iter().rev().enumerate() {
                    moves.push((**old, fresh(new.at.checked_sub(step(k + 1)?).ok_or_else(overflow)?)));
                }
                new
            } else {
                let new = fresh(lo.checked_add(INSERT_GAP).ok_or_else(overflow)?);
                for (k, old) in all[i..].iter().enumerate() {
                    moves.push((**old, fresh(new.at.checked_add(step(k + 1)?).ok_or_else(overflow)?)));
                }
                new
            };
            return Ok(Some(InsertPlan { place, moves }));
        }
        (None, None) => unreachable!("the pivot is an item"),
    };
    Ok(Some(InsertPlan { place, moves: Vec::new() }))
}

struct InsertPlan {
    place: Place,
    moves: Vec<(Place, Place)>,
}

fn push_places(items: &Items, head: bool, n: usize, made: Stamp) -> Result<Vec<Place>, OpError> {
    let mut out = Vec::with_capacity(n);
    let end = if head { items.first().map_or(1, |p| p.at) } else { items.last().map_or(-1, |p| p.at) };
    for i in 0..n as i64 {
        let at = if head { end.checked_sub(1 + i) } else { end.checked_add(1 + i) };
        out.push(Place { at: at.ok_or(OpError::Overflow)?, made });
    }
    Ok(out)
}

/// What ZRANGE picks of `z`, in the order it answers (with scores,
/// whatever `q.scores` says).
pub fn zrange(z: &ZSet, q: &ZRange) -> Vec<(Bytes, f64)> {
    let n = z.len();
    let (offset, count) = match q.limit {
        Some((o, c)) if o >= 0 => (o as usize, if c < 0 { usize::MAX } else { c as usize }),
        Some(_) => return Vec::new(),
        None => (0, usize::MAX),
    };
    let own = |(m, s): (&Bytes, f64)| (m.clone(), s);
    match &q.by {
        ZBy::Index(start, stop) => {
            let (from, to) = range(*start, *stop, n);
            if to <= from {
                return Vec::new();
            }
            // Ranks walked from the nearer end: `from` steps in the order
            // asked for, `n - to` in the other.
            let asked: Box<dyn DoubleEndedIterator<Item = (&Bytes, f64)>> =
                if q.rev { Box::new(z.ordered().rev()) } else { Box::new(z.ordered()) };
            if from <= n - to {
                asked.skip(from).take(to - from).map(own).collect()
            } else {
                let mut v: Vec<_> = asked.rev().skip(n - to).take(to - from).map(own).collect();
                v.reverse();
                v
            }
        }
        ZBy::Score(min, max) => {
            if q.rev {
                z.down_from_score(max.value)
                    .skip_while(|(_, s)| !max.above(*s))
                    .take_while(|(_, s)| min.below(*s))
                    .skip(offset)
                    .take(count)
                    .map(own)
                    .collect()
            } else {
                by_score(z, min, max).skip(offset).take(count).map(own).collect()
            }
        }
        ZBy::Lex(min, max) => {
            let within = |(m, _): &(&Bytes, f64)| min.below(m) && max.above(m);
            if q.rev {
                z.ordered().rev().filter(within).skip(offset).take(count).map(own).collect()
            } else {
                z.ordered().filter(within).skip(offset).take(count).map(own).collect()
            }
        }
    }
}

/// The members scored from `min` to `max`, lowest first.
fn by_score<'a>(z: &'a ZSet, min: &ScoreBound, max: &ScoreBound) -> impl Iterator<Item = (&'a Bytes, f64)> {
    let (min, max) = (*min, *max);
    z.from_score(min.value).skip_while(move |(_, s)| !min.below(*s)).take_while(move |(_, s)| max.above(*s))
}

/// ZRANGE of everything `by` selects, lowest first, without scores.
fn whole(by: &ZBy) -> ZRange {
    ZRange { by: by.clone(), rev: false, limit: None, scores: false }
}

/// The members ZPOPMIN or ZPOPMAX takes, in the order they go.
fn zpopped(z: &ZSet, max: bool, count: Option<u64>) -> Vec<(Bytes, f64)> {
    let c = count.unwrap_or(1).min(z.len() as u64) as usize;
    let own = |(m, s): (&Bytes, f64)| (m.clone(), s);
    if max { z.ordered().rev().take(c).map(own).collect() } else { z.ordered().take(c).map(own).collect() }
}

/// The items POP, LREM or LTRIM removes, in the order they go.
fn removed_places(items: &Items, op: &Op) -> Vec<Place> {
    let n = items.len();
    match op {
        Op::Pop { head, count } => {
            let c = count.unwrap_or(1).min(n as u64) as usize;
            if *head {
                items.iter().take(c).map(|(p, _)| *p).collect()
            } else {
                items.iter().rev().take(c).map(|(p, _)| *p).collect()
            }
        }
        Op::LRem(count, value) => {
            let limit = if *count == 0 { usize::MAX } else { count.unsigned_abs().min(usize::MAX as u64) as usize };
            let same = |(_, r): &(&Place, &Lww<Option<Bytes>>)| r.value.as_ref() == Some(value);
            let places = |it: &mut dyn Iterator<Item = (&Place, &Lww<Option<Bytes>>)>| {
                it.filter(same).take(limit).map(|(p, _)| *p).collect::<Vec<_>>()
            };
            if *count >= 0 { places(&mut items.iter()) } else { places(&mut items.iter().rev()) }
        }
        Op::LTrim(start, stop) => {
            let (from, to) = range(*start, *stop, n);
            if to == 0 {
                return items.iter().map(|(p, _)| *p).collect();
            }
            let mut out: Vec<Place> = items.iter().take(from).map(|(p, _)| *p).collect();
            out.extend(items.iter().rev().take(n - to).map(|(p, _)| *p));
            out
        }
        _ => Vec::new(),
    }
}

/// The most members SRANDMEMBER with a negative count picks.
const MAX_PICKS: u64 = 1_000_000;

thread_local! {
    /// SPOP's and SRANDMEMBER's randomness: per thread, seeded at random.
    static RANDOM: std::cell::Cell<u64> = std::cell::Cell::new({
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish() | 1
    });
}

/// A pseudo-random number (xorshift64*).
fn random() -> u64 {
    RANDOM.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Up to `n` distinct members of `set`, picked at random (reservoir
/// sampling: one pass over the set).
/// HRANDFIELD's and ZRANDMEMBER's picks of the live entries of `map`: one
/// (`None`), up to `n` distinct ones, or (a negative count) that many with
/// repeats, at most [`MAX_PICKS`].
fn random_entries<V>(map: &LMap<Bytes, V>, count: Option<i64>, live: impl Fn(&V) -> bool + Copy) -> Vec<(&Bytes, &V)> {
    match count {
        None => pick_entries(map, 1, live),
        Some(n) if n >= 0 => pick_entries(map, n as usize, live),
        Some(n) => {
            let all: Vec<(&Bytes, &V)> = map.iter().filter(|(_, v)| live(v)).collect();
            if all.is_empty() {
                return all;
            }
            let picks = n.unsigned_abs().min(MAX_PICKS);
            (0..picks).map(|_| all[(random() % all.len() as u64) as usize]).collect()
        }
    }
}

/// Up to `n` distinct members of `set`, picked at random.
fn pick(set: &Members, n: usize) -> Vec<Bytes> {
    pick_entries(set, n, |r| r.value).into_iter().map(|(m, _)| m.clone()).collect()
}

/// Up to `n` distinct live entries of `map`, picked at random.
fn pick_entries<V>(map: &LMap<Bytes, V>, n: usize, live: impl Fn(&V) -> bool + Copy) -> Vec<(&Bytes, &V)> {
    // A few entries of a bigger map: buckets at random, as Redis picks,
    // each entry once; about n tries, not the map's size.
    const FEW: usize = 64;
    if n <= FEW && map.len() >= 4 * n {
        let mut out: Vec<(usize, &Bytes, &V)> = Vec::with_capacity(n);
        // Bounded: a map of fewer live entries than n repeats them.
        for _ in 0..8 * n {
            if out.len() == n {
                break;
            }
            match map.random_entry(random, 64, |_, v| live(v)) {
                Some((i, k, v)) if !out.iter().any(|(j, _, _)| *j == i) => out.push((i, k, v)),
                Some(_) => {}
                // Mostly tombstones: walk it instead.
                None => break,
            }
        }
        if out.len() == n {
            return out.into_iter().map(|(_, k, v)| (k, v)).collect();
        }
    }
    let mut out = Vec::with_capacity(n.min(map.len()));
    if n == 0 {
        return out;
    }
    for (seen, entry) in map.iter().filter(|(_, v)| live(v)).enumerate() {
        if out.len() < n {
            out.push(entry);
        } else {
            let j = (random() % (seen as u64 + 1)) as usize;
            if j < n {
                out[j] = entry;
            }
        }
    }
    out
}

/// A number as INCRBYFLOAT reads it: the whole string, not NaN (an
/// infinity reads, and the sum then refuses it, as in Redis).
fn parse_float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| !f.is_nan())
}

/// A number as INCRBYFLOAT writes it: plain decimal, as short as reads
/// back the same (`10.6`, `3000`), never an exponent.
fn format_float(f: f64) -> String {
    if f == 0.0 { "0".to_string() } else { format!("{f}") }
}

impl Keyspace {
    pub fn new(node: NodeId) -> Self {
        Keyspace { node, spaces: Hashed::default(), keys: 0, bytes: 0 }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Keys held, all namespaces (expired ones count until reclaimed).
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Approximate bytes of keys and values held.
    pub fn bytes(&self) -> u64 {
        self.bytes.max(0) as u64
    }

    /// Keys in `ns`, in O(1); like Redis's DBSIZE it counts keys that have
    /// expired but are not reclaimed yet.
    pub fn len(&self, ns: &[u8]) -> usize {
        self.spaces.get(ns).map_or(0, |s| s.table.len())
    }

    pub fn is_empty(&self, ns: &[u8]) -> bool {
        self.len(ns) == 0
    }

    /// The live slot of `key`.
    fn live(&self, ns: &[u8], h: u64, key: &[u8], now: u64) -> Option<&Slot> {
        self.spaces.get(ns)?.table.get(h, key).filter(|s| !s.is_expired(now))
    }

    /// Answers a read-only `op`; a write answers as if nothing were there.
    pub fn read(&self, ns: &[u8], key: &[u8], op: &Op, now: u64) -> OpResult {
        let node = self.node;
        let h = key_hash(key);
        let Some(slot) = self.live(ns, h, key, now) else {
            return match op {
                Op::Refused { absent: Some(e), .. } => Err(*e),
                op => Ok(empty_reply(op)),
            };
        };
        Ok(match op {
            Op::Refused { kind, error, .. } => {
                let same = slot.kind().is_some_and(|k| k.redis_name() == kind.redis_name());
                return Err(if same { *error } else { OpError::WrongType });
            }
            Op::Get | Op::GetEx(_) => Reply::Bytes(slot.string().ok_or(OpError::WrongType)?),
            Op::Exists => Reply::Int(1),
            Op::Type => Reply::Type(slot.kind()),
            Op::Snapshot => Reply::Entry(Box::new(slot.to_entry(node))),
            Op::Pttl => {
                Reply::Int(slot.expires_at().map_or(-1, |at| at.saturating_sub(now).min(i64::MAX as u64) as i64))
            }
            Op::MemoryUsage => Reply::Int(slot.approx_bytes() as i64),
            Op::ExpireTime => Reply::Int(slot.expires_at().map_or(-1, |at| at.min(i64::MAX as u64) as i64)),
            Op::HRandField { count, values } => {
                let Body::Other(Value::Map(m)) = slot.body(node) else { return Err(OpError::WrongType) };
                let picked = random_entries(m, *count, |r| r.value.is_some());
                let mut out = Vec::with_capacity(picked.len() * (1 + usize::from(*values)));
                for (f, r) in picked {
                    out.push(f.clone());
                    if *values {
                        out.push(r.value.clone().unwrap_or_default());
                    }
                }
                match count {
                    None => out.into_iter().next().map_or(Reply::Nil, Reply::Bytes),
                    Some(_) => Reply::List(out),
                }
            }
            Op::ZRandMember { count, scores } => {
                let Body::Other(Value::ZSet(z)) = slot.body(node) else { return Err(OpError::WrongType) };
                let picked = random_entries(z.registers_map(), *count, |r| r.value.is_some());
                let picked = picked.into_iter().map(|(m, r)| (m.clone(), r.value.map_or(0.0, |s| s.0)));
                match (count, scores) {
                    (None, _) => picked.map(|(m, _)| m).next().map_or(Reply::Nil, Reply::Bytes),
                    (Some(_), true) => Reply::Scored(picked.collect()),
                    (Some(_), false) => Reply::List(picked.map(|(m, _)| m).collect()),
                }
            }
            Op::LPos { element, rank, count, maxlen } => {
                let Body::Other(Value::List(items)) = slot.body(node) else { return Err(OpError::WrongType) };
                let n = items.len();
                let limit = if *maxlen == 0 { n } else { (*maxlen as usize).min(n) };
                let equal = |(_, (_, r)): &(usize, (&Place, &Lww<Option<Bytes>>))| r.value.as_ref() == Some(element);
                let skip = (rank.unsigned_abs() - 1) as usize;
                let want = match count {
                    None => 1,
                    Some(0) => usize::MAX,
                    Some(c) => *c as usize,
                };
                let found: Vec<Reply> = if *rank > 0 {
                    items
                        .iter()
                        .enumerate()
                        .take(limit)
                        .filter(equal)
                        .skip(skip)
                        .take(want)
                        .map(|(i, _)| Reply::Int(i as i64))
                        .collect()
                } else {
                    let from_tail = items.iter().rev().enumerate().take(limit).filter(equal);
                    from_tail.skip(skip).take(want).map(|(i, _)| Reply::Int((n - 1 - i) as i64)).collect()
                };
                match count {
                    None => found.into_iter().next().unwrap_or(Reply::Nil),
                    Some(_) => Reply::Array(found),
                }
            }
            Op::Encoding => Reply::Bytes(Bytes::from_static(encoding(slot.body(node)).as_bytes())),
            Op::SMembers | Op::SIsMember(_) | Op::SMIsMember(_) | Op::SCard | Op::SRandMember(_) => {
                let Body::Other(Value::Set(m)) = slot.body(node) else { return Err(OpError::WrongType) };
                let has = |x: &Bytes| Reply::Int(m.get(x).is_some_and(|r| r.value) as i64);
                match op {
                    Op::SMembers => Reply::List(m.iter().map(|(k, _)| k.clone()).collect()),
                    Op::SIsMember(x) => has(x),
                    Op::SMIsMember(xs) => Reply::Array(xs.iter().map(has).collect()),
                    Op::SRandMember(None) => pick(m, 1).pop().map_or(Reply::Nil, Reply::Bytes),
                    Op::SRandMember(Some(n)) => Reply::List(
                        random_entries(m, Some(*n), |r| r.value).into_iter().map(|(k, _)| k.clone()).collect(),
                    ),
                    _ => Reply::Int(m.len() as i64),
                }
            }
            Op::ZScore(_) | Op::ZMScore(_) | Op::ZCard | Op::ZRank { .. } | Op::ZCount(..) | Op::ZRange(_) => {
                let Body::Other(Value::ZSet(z)) = slot.body(node) else { return Err(OpError::WrongType) };
                let score = |m: &Bytes| z.score(m).map_or(Reply::Nil, Reply::Score);
                match op {
                    Op::ZScore(m) => score(m),
                    Op::ZMScore(ms) => Reply::Array(ms.iter().map(score).collect()),
                    Op::ZRank { member, rev } => match z.score(member) {
                        None => Reply::Nil,
                        Some(s) => {
                            let below = z.ordered().take_while(|(m, t)| (Score(*t), *m) < (Score(s), member)).count();
                            Reply::Int(if *rev { z.len() - 1 - below } else { below } as i64)
                        }
                    },
                    Op::ZCount(min, max) => Reply::Int(by_score(z, min, max).count() as i64),
                    Op::ZRange(q) if q.scores => Reply::Scored(zrange(z, q)),
                    Op::ZRange(q) => Reply::List(zrange(z, q).into_iter().map(|(m, _)| m).collect()),
                    _ => Reply::Int(z.len() as i64),
                }
            }
            Op::LLen | Op::LIndex(_) | Op::LRange(..) => {
                let Body::Other(Value::List(items)) = slot.body(node) else { return Err(OpError::WrongType) };
                let n = items.len();
                let value = |r: &Lww<Option<Bytes>>| r.value.clone().unwrap_or_default();
                match op {
                    Op::LIndex(i) => match index(*i, n) {
                        Some(i) => Reply::Bytes(value(slice(items, i, i + 1)[0].1)),
                        None => Reply::Nil,
                    },
                    Op::LRange(start, stop) => {
                        let (from, to) = range(*start, *stop, n);
                        Reply::List(slice(items, from, to).into_iter().map(|(_, r)| value(r)).collect())
                    }
                    _ => Reply::Int(n as i64),
                }
            }
            Op::HGet(_) | Op::HMGet(_) | Op::HGetAll | Op::HLen => {
                let Body::Other(Value::Map(m)) = slot.body(node) else { return Err(OpError::WrongType) };
                let value = |f: &Bytes| m.get(f).and_then(|r| r.value.clone()).map_or(Reply::Nil, Reply::Bytes);
                match op {
                    Op::HGet(f) => value(f),
                    Op::HMGet(fs) => Reply::Array(fs.iter().map(value).collect()),
                    Op::HGetAll => {
                        let mut out = Vec::with_capacity(m.len() * 2);
                        for (f, r) in m.iter() {
                            if let Some(v) = &r.value {
                                out.push(f.clone());
                                out.push(v.clone());
                            }
                        }
                        Reply::List(out)
                    }
                    _ => Reply::Int(m.len() as i64),
                }
            }
            Op::ElementScan { kind, cursor, count, pattern } => {
                element_scan(slot.body(node), *kind, *cursor, *count, pattern.as_deref())?
            }
            _ => Reply::Nil,
        })
    }

    /// Starts loading into cache what `ops` will touch (their keys, and
    /// the members and fields they name), in stages so that nothing waits
    /// for one load to start the next: run over a batch before applying it,
    /// the batch's cache misses overlap and its lookups find their data.
    /// Returns how many of those it found (a hint: only the count is read).
    pub fn touch<'a>(&self, ns: &[u8], ops: impl Iterator<Item = (&'a [u8], &'a Op)>) -> usize {
        let Some(space) = self.spaces.get(ns) else { return 0 };
        let ops: Vec<(&[u8], &Op, u64)> = ops.map(|(k, op)| (k, op, key_hash(k))).collect();
        space.table.prefetch(ops.iter().map(|&(_, _, h)| h));
        // Members and fields: first their entries, then the bytes those
        // point to.
        let mut names: Vec<&Bytes> = Vec::new();
        for (key, op, h) in ops {
            let (named, pairs): (&[Bytes], &[(Bytes, Bytes)]) = match op {
                Op::SAdd(m) | Op::SRem(m) | Op::HDel(m) => (m, &[]),
                Op::SIsMember(m) | Op::HGet(m) => (std::slice::from_ref(m), &[]),
                Op::HSet(pairs) => (&[], pairs),
                _ => continue,
            };
            let Some(slot) = space.table.get(h, key) else { continue };
            let wanted = named.iter().chain(pairs.iter().map(|(f, _)| f));
            match slot.body(self.node) {
                Body::Other(Value::Set(set)) => names.extend(wanted.filter_map(|m| set.prefetch(m.as_ref()))),
                Body::Other(Value::Map(map)) => names.extend(wanted.filter_map(|f| map.prefetch(f.as_ref()))),
                _ => {}
            }
        }
        for name in &names {
            squall_lattice::prefetch(name.as_ptr());
        }
        names.len()
    }

    /// The string at `key`, if any (a counter reads as its decimal).
    fn string(&self, ns: &[u8], key: &[u8], now: u64) -> Result<Option<Bytes>, OpError> {
        match self.read(ns, key, &Op::Get, now)? {
            Reply::Bytes(b) => Ok(Some(b)),
            _ => Ok(None),
        }
    }

    /// The HyperLogLog at `key` (empty if nothing is there), and whether
    /// one was there.
    fn hll(&self, ns: &[u8], key: &[u8], now: u64) -> Result<(Registers, bool), OpError> {
        match self.string(ns, key, now)? {
            Some(s) => Ok((Registers::read(&s)?, true)),
            None => Ok((Registers::default(), false)),
        }
    }

    /// The entry at `key` as it is held, expired or not.
    pub(crate) fn raw(&self, ns: &[u8], key: &[u8]) -> Option<Entry> {
        let slot = self.spaces.get(ns)?.table.get(key_hash(key), key)?;
        Some(slot.to_entry(self.node))
    }

    /// When the slot held for `key` expires, if it does (expired or not).
    pub(crate) fn expires_at(&self, ns: &[u8], key: &[u8]) -> Option<u64> {
        self.spaces.get(ns)?.table.get(key_hash(key), key)?.expires_at()
    }

    /// Whether a slot is held for `key`, expired or not.
    pub(crate) fn holds(&self, ns: &[u8], key: &[u8]) -> bool {
        self.spaces.get(ns).is_some_and(|s| s.table.get(key_hash(key), key).is_some())
    }

    /// Writes to `out` the undo record of `op` on `key` at `time`: what it
    /// may overwrite, as it is now (before it applies). A set or hash keeps
    /// only the members or fields `op` names, unless it is small or `op`
    /// could empty it; everything else keeps its whole entry.
    pub(crate) fn before(&self, ns: &[u8], key: &[u8], op: &Op, made: Made<'_>, now: u64, out: &mut Records) {
        let node = self.node;
        let Some(slot) = self.spaces.get(ns).and_then(|s| s.table.get(key_hash(key), key)) else {
            return out.undo_absent(ns, key, made);
        };
        let live = !slot.is_expired(now);
        let names: &[Bytes] = match op {
            Op::SAdd(m) | Op::SRem(m) | Op::HDel(m) => m,
            _ => &[],
        };
        let could_empty = matches!(op, Op::SRem(_) | Op::HDel(_));
        let big = |n: usize| big(slot, n);
        match (op, slot.body(node)) {
            (Op::SAdd(_) | Op::SRem(_), Body::Other(Value::Set(m)))
                if live && big(m.len()) && !(could_empty && names.len() >= m.len()) =>
            {
                let named = distinct(names.iter().map(|n| n.as_ref()), names.len());
                let states = named.iter().map(|n| (*n, m.get(*n).map(StateRef::Member)));
                out.undo_elements(ns, key, made, states);
            }
            (
                Op::HSet(_) | Op::HDel(_) | Op::HIncrBy(..) | Op::HIncrByFloat(..) | Op::HSetNx(..),
                Body::Other(Value::Map(m)),
            ) if live && big(m.len()) && !(could_empty && names.len() >= m.len()) => {
                let named = match op {
                    Op::HSet(pairs) => distinct(pairs.iter().map(|(f, _)| f.as_ref()), pairs.len()),
                    Op::HIncrBy(f, _) | Op::HIncrByFloat(f, _) | Op::HSetNx(f, _) => vec![f.as_ref()],
                    _ => distinct(names.iter().map(|n| n.as_ref()), names.len()),
                };
                let states = named.iter().map(|n| (*n, m.get(*n).map(StateRef::Field)));
                out.undo_elements(ns, key, made, states);
            }
            (
                Op::Push { .. } | Op::Pop { .. } | Op::LSet(..) | Op::LRem(..) | Op::LTrim(..) | Op::LInsert { .. },
                Body::Other(Value::List(l)),
            ) if live && big(l.len()) => {
                let places = match op {
                    Op::LInsert { before, pivot, .. } => {
                        match insert_plan(l, *before, pivot, Stamp::new(made.time, node)) {
                            Ok(Some(plan)) => std::iter::once(plan.place)
                                .chain(plan.moves.iter().flat_map(|(old, new)| [*old, *new]))
                                .collect(),
                            _ => Vec::new(),
                        }
                    }
                    Op::Push { head, items, .. } => {
                        push_places(l, *head, items.len(), Stamp::new(made.time, node)).unwrap_or_default()
                    }
                    Op::LSet(i, _) => index(*i, l.len()).map(|i| *slice(l, i, i + 1)[0].0).into_iter().collect(),
                    op => removed_places(l, op),
                };
                if places.len() >= l.len() && !matches!(op, Op::Push { .. } | Op::LInsert { .. }) {
                    // It empties the list: the key goes, so all of it is kept.
                    return undo_slot(slot, node, ns, key, made, out);
                }
                let names: Vec<[u8; Place::BYTES]> = places.iter().map(Place::encode).collect();
                // A push's places lie past either end: none is there to look up.
                let fresh = matches!(op, Op::Push { .. });
                let was = |p: &Place| if fresh { None } else { l.get(p).map(StateRef::Item) };
                let states = names.iter().zip(&places).map(|(n, p)| (n.as_ref(), was(p)));
                out.undo_elements(ns, key, made, states);
            }
            (Op::ZAdd { .. } | Op::ZRem(_) | Op::ZPop { .. } | Op::ZRemRange(_), Body::Other(Value::ZSet(z)))
                if live && big(z.len()) =>
            {
                let named: Vec<Bytes> = match op {
                    Op::ZAdd { pairs, .. } => pairs.iter().map(|(_, m)| m.clone()).collect(),
                    Op::ZRem(ms) => ms.clone(),
                    Op::ZPop { max, count } => zpopped(z, *max, *count).into_iter().map(|(m, _)| m).collect(),
                    Op::ZRemRange(by) => zrange(z, &whole(by)).into_iter().map(|(m, _)| m).collect(),
                    _ => Vec::new(),
                };
                let named = distinct(named.iter().map(|m| m.as_ref()), named.len());
                if !matches!(op, Op::ZAdd { .. }) && named.len() >= z.len() {
                    // It could empty the set: the key would go, so all of it is kept.
                    return undo_slot(slot, node, ns, key, made, out);
                }
                out.undo_elements(ns, key, made, named.iter().map(|m| (*m, z.get(m).map(StateRef::Score))));
            }
            (Op::Persist, _) if live => out.undo_expiry(ns, key, made, slot.expiry(node).as_ref()),
            (Op::ExpireAt(at) | Op::ExpireAtIf(at, _) | Op::GetEx(Some(GetExpiry::At(at))), _) if live && *at > now => {
                out.undo_expiry(ns, key, made, slot.expiry(node).as_ref())
            }
            (Op::GetEx(Some(GetExpiry::Persist)), _) if live => {
                out.undo_expiry(ns, key, made, slot.expiry(node).as_ref())
            }
            _ => undo_slot(slot, node, ns, key, made, out),
        }
    }

    /// Visits up to about `count` keys of `ns` held from position `from` on
    /// (expired ones too), in hash order; where to go on, or `None`.
    pub(crate) fn walk(&self, ns: &[u8], from: u64, count: usize, mut f: impl FnMut(&[u8])) -> Option<u64> {
        let space = self.spaces.get(ns)?;
        space.table.walk(from, count, |s| f(s.key()))
    }

    /// The whole live entry at `key`.
    pub fn snapshot(&self, ns: &[u8], key: &[u8], now: u64) -> Option<Entry> {
        let node = self.node;
        self.live(ns, key_hash(key), key, now).map(|s| s.to_entry(node))
    }

    /// Applies `op` with every write stamped `stamp`, changes going nowhere
    /// (a transaction's overlay).
    pub fn apply(&mut self, ns: &Bytes, key: &[u8], op: Op, stamp: Stamp, now: u64) -> OpResult {
        self.apply_with(ns, key, op, stamp, now, &mut (), None)
    }

    /// Applies `op`, telling `changes` what changed, and writing its undo
    /// record to `undo` if given (cleared: a failed op leaves something).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_with(
        &mut self,
        ns: &Bytes,
        key: &[u8],
        op: Op,
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
        undo: Option<&mut Undo<'_>>,
    ) -> OpResult {
        if !op.is_write() {
            return self.read(ns, key, &op, now);
        }
        let h = key_hash(key);
        // The hottest writes look their key up once, expired or not.
        let op = match op {
            Op::Set { value, expiry, get } => {
                return self.set(ns, h, key, &value, expiry, get, stamp, now, changes, undo);
            }
            Op::SetIf { value, expiry, get, present } => {
                // Decided here, on the key's owner, as it applies.
                if self.live(ns, h, key, now).is_some() != present {
                    return if get { self.read(ns, key, &Op::Get, now) } else { Ok(Reply::Nil) };
                }
                return self.set(ns, h, key, &value, expiry, get, stamp, now, changes, undo);
            }
            Op::IncrBy(delta) => return self.incr(ns, h, key, delta, stamp, now, changes, undo),
            Op::SAdd(members) => return self.sadd(ns, h, key, &members, stamp, now, changes, undo),
            Op::HSet(pairs) => return self.hset(ns, h, key, &pairs, stamp, now, changes, undo),
            Op::Push { head, items, existing: false } => {
                return self.push(ns, h, key, head, items, stamp, now, changes, undo);
            }
            Op::Pop { head, count } => return self.pop(ns, h, key, head, count, stamp, now, changes, undo),
            Op::ZAdd { pairs, opts } => return self.zadd(ns, h, key, &pairs, opts, stamp, now, changes, undo),
            op => op,
        };
        // SPOP is the SREM of members its owner picks here, at random.
        let (op, popped) = match op {
            Op::SPop(count) => {
                let picked = match self.read(ns, key, &Op::SRandMember(Some(count.unwrap_or(1) as i64)), now)? {
                    Reply::List(picked) => picked,
                    _ => Vec::new(),
                };
                if picked.is_empty() {
                    return Ok(if count.is_some() { Reply::List(Vec::new()) } else { Reply::Nil });
                }
                (Op::SRem(picked.clone()), Some((picked, count.is_some())))
            }
            op => (op, None),
        };
        if let Some(u) = undo {
            self.before(ns, key, &op, u.made, now, u.out);
        }
        if let Some((mut picked, listed)) = popped {
            let Op::SRem(members) = op else { unreachable!("SPOP became SREM above") };
            self.remove_elements(ns, h, key, &members, Element::Member(Lww::new(stamp, false)), changes)?;
            return Ok(if listed { Reply::List(picked) } else { picked.pop().map_or(Reply::Nil, Reply::Bytes) });
        }
        // An expired key is gone before any other write looks at it.
        if self.spaces.get(ns.as_ref()).and_then(|s| s.table.get(h, key)).is_some_and(|s| s.is_expired(now)) {
            self.remove(ns, h, key);
            changes.removed(ns, key);
        }
        match op {
            Op::Del => Ok(Reply::Int(self.del(ns, h, key, changes) as i64)),
            Op::SRem(members) => {
                self.remove_elements(ns, h, key, &members, Element::Member(Lww::new(stamp, false)), changes)
            }
            Op::HDel(fields) => {
                self.remove_elements(ns, h, key, &fields, Element::Field(Lww::new(stamp, None)), changes)
            }
            op @ (Op::Push { .. } | Op::LSet(..) | Op::LRem(..) | Op::LTrim(..) | Op::LInsert { .. }) => {
                self.list_write(ns, h, key, op, stamp, now, changes)
            }
            Op::ZRem(members) => self.zremove(ns, h, key, members, stamp, changes, None),
            Op::ZRemRange(by) => {
                let picked = match self.live(ns, h, key, now).map(|s| s.body(self.node)) {
                    None => return Ok(Reply::Int(0)),
                    Some(Body::Other(Value::ZSet(z))) => zrange(z, &whole(&by)),
                    Some(_) => return Err(OpError::WrongType),
                };
                let members = picked.into_iter().map(|(m, _)| m).collect();
                self.zremove(ns, h, key, members, stamp, changes, None)
            }
            Op::ZPop { max, count } => {
                let popped = match self.live(ns, h, key, now).map(|s| s.body(self.node)) {
                    None => return Ok(Reply::Scored(Vec::new())),
                    Some(Body::Other(Value::ZSet(z))) => zpopped(z, max, count),
                    Some(_) => return Err(OpError::WrongType),
                };
                let members = popped.iter().map(|(m, _)| m.clone()).collect();
                self.zremove(ns, h, key, members, stamp, changes, Some(popped))
            }
            Op::GetDel => {
                let value = self.read(ns, key, &Op::Get, now)?;
                if value != Reply::Nil {
                    self.del(ns, h, key, changes);
                }
                Ok(value)
            }
            Op::Put(entry) => {
                let node = self.node;
                let entry = restamped(*entry, stamp, node);
                if matches!(entry.value, Value::Tombstone) {
                    self.del(ns, h, key, changes);
                    return Ok(Reply::Ok);
                }
                let slot = self.put_slot(ns, h, Slot::new(key, entry, node));
                records_of(slot, ns, node, changes);
                Ok(Reply::Ok)
            }
            Op::GetEx(expiry) => {
                let value = self.read(ns, key, &Op::Get, now)?;
                let Some(slot) = self.live(ns, h, key, now) else { return Ok(value) };
                match expiry {
                    Some(GetExpiry::At(at)) if at <= now => {
                        self.del(ns, h, key, changes);
                    }
                    Some(GetExpiry::At(at)) => self.set_expiry(ns, h, key, Lww::new(stamp, Some(at)), changes),
                    Some(GetExpiry::Persist) if slot.expires_at().is_some() => {
                        self.set_expiry(ns, h, key, Lww::new(stamp, None), changes);
                    }
                    _ => {}
                }
                Ok(value)
            }
            // Strings rewritten whole, keeping their expiry: on one node the
            // key's owner serialises them; they are not lattice merges.
            Op::Append(tail) => {
                let mut v = self.string(ns, key, now)?.map(|b| b.to_vec()).unwrap_or_default();
                if v.len() + tail.len() > crate::op::MAX_STRING {
                    return Err(OpError::TooLong);
                }
                v.extend_from_slice(&tail);
                self.set(ns, h, key, &v, SetExpiry::Keep, false, stamp, now, changes, None)?;
                Ok(Reply::Int(v.len() as i64))
            }
            Op::SetRange(offset, part) => {
                let old = self.string(ns, key, now)?;
                if part.is_empty() {
                    return Ok(Reply::Int(old.map_or(0, |b| b.len() as i64)));
                }
                if offset.saturating_add(part.len() as u64) > crate::op::MAX_STRING as u64 {
                    return Err(OpError::TooLong);
                }
                let mut v = old.map(|b| b.to_vec()).unwrap_or_default();
                let (at, end) = (offset as usize, offset as usize + part.len());
                if v.len() < end {
                    v.resize(end, 0);
                }
                v[at..end].copy_from_slice(&part);
                self.set(ns, h, key, &v, SetExpiry::Keep, false, stamp, now, changes, None)?;
                Ok(Reply::Int(v.len() as i64))
            }
            Op::SetBit { offset, on } => {
                let old = self.string(ns, key, now)?;
                let byte = usize::try_from(offset >> 3).map_err(|_| OpError::TooLong)?;
                if byte >= crate::op::MAX_STRING {
                    return Err(OpError::TooLong);
                }
                let mask = 0x80u8 >> (offset & 7);
                let was = old.as_ref().and_then(|b| b.get(byte)).is_some_and(|&b| b & mask != 0);
                // Made, grown or changed: written (and told); else left be.
                if old.as_ref().is_none_or(|b| b.len() <= byte) || was != on {
                    let mut v = old.map(|b| b.to_vec()).unwrap_or_default();
                    if v.len() <= byte {
                        v.resize(byte + 1, 0);
                    }
                    v[byte] = if on { v[byte] | mask } else { v[byte] & !mask };
                    self.set(ns, h, key, &v, SetExpiry::Keep, false, stamp, now, changes, None)?;
                }
                Ok(Reply::Int(i64::from(was)))
            }
            // HyperLogLogs: the string is checked, its registers grown
            // (PFADD) or merged (PFMERGE), and written dense.
            Op::PfAdd(elements) => {
                let (mut regs, there) = self.hll(ns, key, now)?;
                let mut grew = !there;
                for e in &elements {
                    grew |= regs.add(e);
                }
                if grew {
                    self.set(ns, h, key, &regs.dense(), SetExpiry::Keep, false, stamp, now, changes, None)?;
                }
                Ok(Reply::Int(i64::from(grew)))
            }
            Op::PfMerge(raw) => {
                let theirs = Registers::from_raw(&raw).ok_or(OpError::BadHll)?;
                let (mut regs, _) = self.hll(ns, key, now)?;
                regs.merge(&theirs);
                self.set(ns, h, key, &regs.dense(), SetExpiry::Keep, false, stamp, now, changes, None)?;
                Ok(Reply::Ok)
            }
            Op::IncrByFloat(delta) => {
                let now_value = match self.string(ns, key, now)? {
                    None => 0.0,
                    Some(b) => parse_float(&b).ok_or(OpError::NotFloat)?,
                };
                let sum = now_value + delta;
                if !sum.is_finite() {
                    return Err(OpError::NotFinite);
                }
                let text = Bytes::from(format_float(sum));
                self.set(ns, h, key, &text, SetExpiry::Keep, false, stamp, now, changes, None)?;
                Ok(Reply::Bytes(text))
            }
            Op::HIncrBy(field, delta) => {
                let n = match self.read(ns, key, &Op::HGet(field.clone()), now)? {
                    Reply::Bytes(b) => crate::op::parse_int(&b).ok_or(OpError::HashNotInteger)?,
                    _ => 0,
                };
                let n = n.checked_add(delta).ok_or(OpError::Overflow)?;
                let pair = (field, Bytes::from(n.to_string()));
                self.hset(ns, h, key, std::slice::from_ref(&pair), stamp, now, changes, None)?;
                Ok(Reply::Int(n))
            }
            Op::HIncrByFloat(field, delta) => {
                let n = match self.read(ns, key, &Op::HGet(field.clone()), now)? {
                    Reply::Bytes(b) => parse_float(&b).ok_or(OpError::HashNotFloat)?,
                    _ => 0.0,
                };
                let sum = n + delta;
                if !sum.is_finite() {
                    return Err(OpError::NotFinite);
                }
                let pair = (field, Bytes::from(format_float(sum)));
                self.hset(ns, h, key, std::slice::from_ref(&pair), stamp, now, changes, None)?;
                Ok(Reply::Bytes(pair.1))
            }
            Op::HSetNx(field, value) => {
                if self.read(ns, key, &Op::HGet(field.clone()), now)? != Reply::Nil {
                    return Ok(Reply::Int(0));
                }
                self.hset(ns, h, key, &[(field, value)], stamp, now, changes, None)?;
                Ok(Reply::Int(1))
            }
            Op::ExpireAt(at) | Op::ExpireAtIf(at, _) => {
                let Some(slot) = self.live(ns, h, key, now) else { return Ok(Reply::Int(0)) };
                if let Op::ExpireAtIf(_, test) = op
                    && !test.holds(slot.expires_at(), at)
                {
                    return Ok(Reply::Int(0));
                }
                if at <= now {
                    self.del(ns, h, key, changes);
                } else {
                    self.set_expiry(ns, h, key, Lww::new(stamp, Some(at)), changes);
                }
                Ok(Reply::Int(1))
            }
            Op::Persist => match self.live(ns, h, key, now).map(Slot::expires_at) {
                Some(Some(_)) => {
                    self.set_expiry(ns, h, key, Lww::new(stamp, None), changes);
                    Ok(Reply::Int(1))
                }
                _ => Ok(Reply::Int(0)),
            },
            _ => self.read(ns, key, &op, now),
        }
    }

    fn slot_mut(&mut self, ns: &[u8], h: u64, key: &[u8]) -> Option<&mut Slot> {
        self.spaces.get_mut(ns)?.table.get_mut(h, key)
    }

    fn remove(&mut self, ns: &[u8], h: u64, key: &[u8]) -> Option<Slot> {
        let space = self.spaces.get_mut(ns)?;
        let slot = space.table.remove(h, key)?;
        if let Some(at) = slot.expires_at() {
            space.expiring.remove(&(at, h));
        }
        self.keys -= 1;
        self.bytes -= slot.approx_bytes() as i64;
        Some(slot)
    }

    /// Puts `slot` at `key` in place of whatever was there.
    fn put_slot(&mut self, ns: &Bytes, h: u64, slot: Slot) -> &mut Slot {
        let added = slot.approx_bytes() as i64;
        let new_at = slot.expires_at();
        let (table, expiring, keys, bytes) = self.space_parts(ns);
        let (placed, old) = table.put(h, slot);
        reindex(expiring, h, old.as_ref().and_then(Slot::expires_at), new_at);
        match &old {
            Some(o) => *bytes += added - o.approx_bytes() as i64,
            None => {
                *keys += 1;
                *bytes += added;
            }
        }
        placed
    }

    /// Puts `entry` at `key` as it is (a transaction seeding its overlay).
    pub fn put(&mut self, ns: &Bytes, key: &[u8], entry: Entry) {
        let node = self.node;
        let h = key_hash(key);
        if matches!(entry.value, Value::Tombstone) {
            self.remove(ns, h, key);
        } else {
            self.put_slot(ns, h, Slot::new(key, entry, node));
        }
    }

    /// The namespace's table and expiry index, with the key and byte counts,
    /// borrowed apart.
    fn space_parts(&mut self, ns: &Bytes) -> (&mut Table, &mut BTreeSet<(u64, u64)>, &mut u64, &mut i64) {
        if !self.spaces.contains_key(ns.as_ref()) {
            self.spaces.insert(copy(ns), Space::default());
        }
        let Keyspace { spaces, keys, bytes, .. } = self;
        let Space { table, expiring } = spaces.get_mut(ns.as_ref()).expect("inserted above");
        (table, expiring, keys, bytes)
    }

    /// SET, with one probe of the table.
    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        value: &[u8],
        expiry: SetExpiry,
        get: bool,
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
        undo: Option<&mut Undo<'_>>,
    ) -> OpResult {
        let node = self.node;
        let (table, expiring, keys, bytes) = self.space_parts(ns);
        let expiry_of = |old: Option<&Slot>| match expiry {
            SetExpiry::None => None,
            SetExpiry::At(at) => Some(Lww::new(stamp, Some(at))),
            SetExpiry::Keep => old.and_then(|o| o.expiry(node)),
        };
        let spot = table.entry(h, key);
        undo_replaced(undo, &spot, node, ns, key);
        let (slot, previous) = match spot {
            Spot::Taken(slot) => {
                // An expired key is no longer there.
                let old = (!slot.is_expired(now)).then_some(&*slot);
                let previous = match (old, get) {
                    (_, false) => Reply::Ok,
                    (None, true) => Reply::Nil,
                    (Some(o), true) => Reply::Bytes(o.string().ok_or(OpError::WrongType)?),
                };
                let (was_at, was_bytes) = (slot.expires_at(), slot.approx_bytes() as i64);
                slot.set_register(stamp, expiry_of(old), value, node);
                reindex(expiring, h, was_at, slot.expires_at());
                *bytes += slot.approx_bytes() as i64 - was_bytes;
                (slot, previous)
            }
            Spot::Free(free) => {
                let fresh = Slot::register(key, stamp, expiry_of(None), value, node);
                reindex(expiring, h, None, fresh.expires_at());
                *keys += 1;
                *bytes += fresh.approx_bytes() as i64;
                (free.insert(fresh), if get { Reply::Nil } else { Reply::Ok })
            }
        };
        changes.header(ns, key, &Header::of(slot, node));
        Ok(previous)
    }

    fn del(&mut self, ns: &[u8], h: u64, key: &[u8], changes: &mut impl Changes) -> bool {
        let gone = self.remove(ns, h, key).is_some();
        if gone {
            changes.removed(ns, key);
        }
        gone
    }

    /// INCRBY, with one probe of the table.
    #[allow(clippy::too_many_arguments)]
    fn incr(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        delta: i64,
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
        undo: Option<&mut Undo<'_>>,
    ) -> OpResult {
        let node = self.node;
        let (table, expiring, keys, bytes) = self.space_parts(ns);
        let fresh_counter = |base: i64, expiry| -> Result<(Slot, i64), OpError> {
            let mut counter = PnCounter::default();
            let at = Stamp::new(stamp.time, node);
            counter.add(at, base);
            let n = counter.add(at, delta).ok_or(OpError::Overflow)?;
            let entry = Entry { epoch: stamp, value: Value::Counter(counter), expiry };
            Ok((Slot::new(key, entry, node), n))
        };
        let spot = table.entry(h, key);
        undo_replaced(undo, &spot, node, ns, key);
        let (slot, n) = match spot {
            Spot::Taken(slot) if !slot.is_expired(now) => match slot.body(node) {
                // INCR on a register holding an integer turns it into a
                // counter in a new epoch, as Redis lets a client INCR what it SET.
                Body::Register(_) | Body::Other(Value::Register(_)) => {
                    let b = slot.string().unwrap_or_default();
                    let base = crate::op::parse_int(&b).ok_or(OpError::NotInteger)?;
                    let (fresh, n) = fresh_counter(base, slot.expiry(node))?;
                    *bytes += fresh.approx_bytes() as i64 - slot.approx_bytes() as i64;
                    *slot = fresh;
                    (slot, n)
                }
                Body::Counter(_) | Body::Other(Value::Counter(_)) => {
                    let before = slot.approx_bytes() as i64;
                    let n = slot.counter_add(Stamp::new(stamp.time, node), delta).ok_or(OpError::Overflow)?;
                    *bytes += slot.approx_bytes() as i64 - before;
                    (slot, n)
                }
                Body::Other(_) => return Err(OpError::WrongType),
            },
            Spot::Taken(slot) => {
                // Expired: a new counter in its place.
                let (fresh, n) = fresh_counter(0, None)?;
                reindex(expiring, h, slot.expires_at(), None);
                *bytes += fresh.approx_bytes() as i64 - slot.approx_bytes() as i64;
                *slot = fresh;
                (slot, n)
            }
            Spot::Free(free) => {
                let (fresh, n) = fresh_counter(0, None)?;
                *keys += 1;
                *bytes += fresh.approx_bytes() as i64;
                (free.insert(fresh), n)
            }
        };
        changes.header(ns, key, &Header::of(slot, node));
        Ok(Reply::Int(n))
    }

    /// The live set or hash at `key` with one probe, made (empty, in a new
    /// epoch) if there is none or it expired, and then with the header
    /// record that announces it. Fails if the key holds another type.
    /// Writes the undo record to `undo`, unless the collection is big:
    /// then the caller writes the elements it replaces (true).
    #[allow(clippy::too_many_arguments)]
    fn collection(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        stamp: Stamp,
        now: u64,
        kind: Kind,
        undo: Option<&mut Undo<'_>>,
    ) -> Result<(&mut Entry, Option<Header<'static>>, bool), OpError> {
        let empty = || match kind {
            Kind::List => Value::List(Items::default()),
            Kind::Set => Value::Set(Members::default()),
            Kind::ZSet => Value::ZSet(ZSet::default()),
            Kind::Map => Value::Map(Fields::default()),
            other => unreachable!("{} is not a collection", other.name()),
        };
        let node = self.node;
        let (table, expiring, keys, bytes) = self.space_parts(ns);
        let fresh = || Slot::new(key, Entry::new(stamp, empty()), node);
        let spot = table.entry(h, key);
        let by_elements = undo.is_some()
            && match &spot {
                Spot::Taken(slot) if !slot.is_expired(now) => match slot.body(node) {
                    Body::Other(Value::Set(m)) => big(slot, m.len()),
                    Body::Other(Value::Map(m)) => big(slot, m.len()),
                    Body::Other(Value::List(l)) => big(slot, l.len()),
                    Body::Other(Value::ZSet(z)) => big(slot, z.len()),
                    _ => false,
                },
                _ => false,
            };
        if !by_elements {
            undo_replaced(undo, &spot, node, ns, key);
        }
        let (entry, header) = match spot {
            Spot::Taken(slot) if !slot.is_expired(now) => {
                // (The kind is compared, not an empty value made: a new
                // set or hash seeds its hasher, a cost per write.)
                if slot.kind() != Some(kind) {
                    return Err(OpError::WrongType);
                }
                (slot.full_mut(node), None)
            }
            Spot::Taken(slot) => {
                let new = fresh();
                reindex(expiring, h, slot.expires_at(), None);
                *bytes += new.approx_bytes() as i64 - slot.approx_bytes() as i64;
                *slot = new;
                created(slot.full_mut(node))
            }
            Spot::Free(free) => {
                let new = fresh();
                *keys += 1;
                *bytes += new.approx_bytes() as i64;
                created(free.insert(new).full_mut(node))
            }
        };
        Ok((entry, header, by_elements))
    }

    /// LPUSH and RPUSH: one lookup of the list; a big list's undo record
    /// is the places the push takes (past either end, so none was there).
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        head: bool,
        items: Vec<Bytes>,
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
        mut undo: Option<&mut Undo<'_>>,
    ) -> OpResult {
        let (entry, header, by_elements) = self.collection(ns, h, key, stamp, now, Kind::List, undo.as_deref_mut())?;
        let epoch = entry.epoch;
        let Value::List(list) = &mut entry.value else { return Err(OpError::WrongType) };
        let places = push_places(list, head, items.len(), stamp)?;
        let mut grew = 0i64;
        for (place, item) in places.iter().zip(&items) {
            grew += (item.len() + ITEM_OVERHEAD) as i64;
            list.assign(*place, Lww::new(stamp, Some(copy(item))));
        }
        let len = list.len();
        self.bytes += grew;
        let names: Vec<[u8; Place::BYTES]> = places.iter().map(Place::encode).collect();
        if let Some(u) = undo.filter(|_| by_elements) {
            u.out.undo_elements(ns, key, u.made, names.iter().map(|n| (n.as_ref(), None)));
        }
        if let Some(header) = header {
            changes.header(ns, key, &header);
        }
        for (name, item) in names.iter().zip(items) {
            changes.element(ns, key, epoch, name, StateRef::Item(&Lww::new(stamp, Some(item))));
        }
        Ok(Reply::Int(len as i64))
    }

    /// LPOP and RPOP: one lookup of the list; a big list's undo record is
    /// the items the pop takes, written from what it takes.
    #[allow(clippy::too_many_arguments)]
    fn pop(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        head: bool,
        count: Option<u64>,
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
        mut undo: Option<&mut Undo<'_>>,
    ) -> OpResult {
        let node = self.node;
        let Some(slot) = self.slot_mut(ns, h, key) else {
            if let Some(u) = undo {
                u.out.undo_absent(ns, key, u.made);
            }
            return Ok(Reply::Nil);
        };
        if slot.is_expired(now) {
            // An expired key is gone before any write looks at it.
            if let Some(u) = undo {
                undo_slot(slot, node, ns, key, u.made, u.out);
            }
            self.remove(ns, h, key);
            changes.removed(ns, key);
            return Ok(Reply::Nil);
        }
        let Body::Other(Value::List(list)) = slot.body(node) else { return Err(OpError::WrongType) };
        let n = count.unwrap_or(1).min(list.len() as u64) as usize;
        // A small list, or one the pop empties (the key goes), is kept whole.
        let whole = !big(slot, list.len()) || n >= list.len();
        if let Some(u) = undo.as_deref_mut().filter(|_| whole) {
            undo_slot(slot, node, ns, key, u.made, u.out);
        }
        let epoch = slot.epoch(node);
        let Value::List(list) = &mut slot.full_mut(node).value else { return Err(OpError::WrongType) };
        let taken: Vec<(Place, Lww<Option<Bytes>>)> = (0..n).map_while(|_| list.pop(head)).collect();
        let empty = list.is_empty();
        let names: Vec<[u8; Place::BYTES]> = taken.iter().map(|(p, _)| p.encode()).collect();
        if let Some(u) = undo.filter(|_| !whole) {
            let states = names.iter().zip(&taken).map(|(n, (_, r))| (n.as_ref(), Some(StateRef::Item(r))));
            u.out.undo_elements(ns, key, u.made, states);
        }
        let mut taken: Vec<Bytes> = taken.into_iter().filter_map(|(_, r)| r.value).collect();
        self.bytes -= taken.iter().map(|v| (v.len() + ITEM_OVERHEAD) as i64).sum::<i64>();
        let gone = Element::Item(Lww::new(stamp, None));
        self.removed_elements(ns, h, key, epoch, empty, &names, &gone, changes);
        Ok(match count {
            None => taken.pop().map_or(Reply::Nil, Reply::Bytes),
            Some(_) => Reply::List(taken),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn sadd(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        members: &[Bytes],
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
        mut undo: Option<&mut Undo<'_>>,
    ) -> OpResult {
        let (entry, header, by_elements) = self.collection(ns, h, key, stamp, now, Kind::Set, undo.as_deref_mut())?;
        let epoch = entry.epoch;
        let set = members_of(entry)?;
        let mut added = 0i64;
        let mut grew = 0i64;
        let mut record =
            undo.filter(|_| by_elements).map(|u| ElementsUndo::start(u, ns, key, members.iter().map(|m| m.as_ref())));
        for (i, m) in members.iter().enumerate() {
            let old = set.assign_borrowed(m.as_ref(), copy, Lww::new(stamp, true));
            if let Some(r) = &mut record {
                r.was(i, m, old.as_ref().map(StateRef::Member));
            }
            if old.is_none_or(|r| !r.value) {
                added += 1;
                grew += (m.len() + MEMBER_OVERHEAD) as i64;
            }
        }
        if let Some(r) = record {
            r.end();
        }
        self.bytes += grew;
        if let Some(header) = header {
            changes.header(ns, key, &header);
        }
        let state = Lww::new(stamp, true);
        for_each_once(members, |m| changes.element(ns, key, epoch, m, StateRef::Member(&state)));
        Ok(Reply::Int(added))
    }

    /// SREM and HDEL: drops the named members or fields that are there.
    /// A removal is a tombstone in the lattice (`gone`, at the unit's
    /// stamp); alone on this node it is pruned at once, and the last one to
    /// go takes the key with it, as in Redis.
    fn remove_elements(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        names: &[Bytes],
        gone: Element,
        changes: &mut impl Changes,
    ) -> OpResult {
        let node = self.node;
        let Some(slot) = self.slot_mut(ns, h, key) else { return Ok(Reply::Int(0)) };
        if !holds(slot.body(node), &gone) {
            // Checked first: unpacking a string to find out would cost memory.
            return Err(OpError::WrongType);
        }
        let epoch = slot.epoch(node);
        let entry = slot.full_mut(node);
        let mut removed: Vec<&Bytes> = Vec::new();
        let mut shrunk = 0i64;
        match (&mut entry.value, &gone) {
            (Value::Set(set), Element::Member(_)) => {
                for m in names {
                    if set.prune(m).is_some() {
                        shrunk += (m.len() + MEMBER_OVERHEAD) as i64;
                        removed.push(m);
                    }
                }
            }
            (Value::Map(map), Element::Field(_)) => {
                for f in names {
                    if let Some(Lww { value: Some(v), .. }) = map.prune(f) {
                        shrunk += (f.len() + v.len() + FIELD_OVERHEAD) as i64;
                        removed.push(f);
                    }
                }
            }
            _ => return Err(OpError::WrongType),
        }
        let empty = match &entry.value {
            Value::Set(set) => set.is_empty(),
            Value::Map(map) => map.is_empty(),
            _ => false,
        };
        self.bytes -= shrunk;
        self.removed_elements(ns, h, key, epoch, empty, &removed, &gone, changes);
        Ok(Reply::Int(removed.len() as i64))
    }

    /// After elements went from a collection: the key goes if it is
    /// `empty` now (as in Redis), else each removal is recorded as `gone`.
    #[allow(clippy::too_many_arguments)]
    fn removed_elements(
        &mut self,
        ns: &[u8],
        h: u64,
        key: &[u8],
        epoch: Stamp,
        empty: bool,
        names: &[impl AsRef<[u8]>],
        gone: &Element,
        changes: &mut impl Changes,
    ) {
        if empty {
            self.del(ns, h, key, changes);
        } else {
            for name in names {
                changes.element(ns, key, epoch, name.as_ref(), gone.as_state());
            }
        }
    }

    /// ZADD, ZINCRBY: each member's score set (or, with INCR, raised) as
    /// the options allow.
    #[allow(clippy::too_many_arguments)]
    fn zadd(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        pairs: &[(f64, Bytes)],
        opts: ZAddOpts,
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
        mut undo: Option<&mut Undo<'_>>,
    ) -> OpResult {
        let node = self.node;
        match self.live(ns, h, key, now).map(|s| matches!(s.body(node), Body::Other(Value::ZSet(_)))) {
            Some(false) => return Err(OpError::WrongType),
            // XX never makes a set.
            None if opts.xx => return Ok(if opts.incr { Reply::Nil } else { Reply::Int(0) }),
            _ => {}
        }
        if pairs.iter().any(|(s, _)| s.is_nan()) {
            return Err(OpError::NotFloat);
        }
        let (entry, header, by_elements) = self.collection(ns, h, key, stamp, now, Kind::ZSet, undo.as_deref_mut())?;
        let epoch = entry.epoch;
        let Value::ZSet(z) = &mut entry.value else { return Err(OpError::WrongType) };
        let (mut added, mut changed, mut grew) = (0i64, 0i64, 0i64);
        let mut written: Vec<(Bytes, f64)> = Vec::with_capacity(pairs.len());
        let mut last = None;
        // A big set's undo record: every member named, as it was.
        let mut record = undo
            .filter(|_| by_elements)
            .map(|u| ElementsUndo::start(u, ns, key, pairs.iter().map(|(_, m)| m.as_ref())));
        for (i, (score, member)) in pairs.iter().enumerate() {
            let was = z.get(member);
            if let Some(r) = &mut record {
                r.was(i, member, was.map(StateRef::Score));
            }
            let current = was.and_then(|r| r.value).map(|s| s.0);
            if (opts.nx && current.is_some()) || (opts.xx && current.is_none()) {
                continue;
            }
            let new = match (opts.incr, current) {
                (true, Some(c)) => c + score,
                _ => *score,
            };
            if new.is_nan() {
                // Only INCR gets here (inf plus -inf), on a member that is there: nothing was written.
                return Err(OpError::ScoreNaN);
            }
            if let Some(c) = current
                && ((opts.gt && new <= c) || (opts.lt && new >= c))
            {
                continue;
            }
            last = Some(new);
            match current {
                None => {
                    added += 1;
                    grew += (member.len() + SCORED_OVERHEAD) as i64;
                }
                Some(c) if Score(c) != Score(new) => changed += 1,
                Some(_) => continue,
            }
            z.assign_borrowed(member, Lww::new(stamp, Some(Score(new))));
            written.push((member.clone(), new));
        }
        if let Some(r) = record {
            r.end();
        }
        let empty = z.is_empty();
        self.bytes += grew;
        if empty {
            // Nothing was added to a set made for it.
            self.del(ns, h, key, &mut ());
        } else {
            if let Some(header) = header {
                changes.header(ns, key, &header);
            }
            for (member, score) in written {
                changes.element(ns, key, epoch, &member, StateRef::Score(&Lww::new(stamp, Some(Score(score)))));
            }
        }
        Ok(match (opts.incr, last) {
            (true, Some(s)) => Reply::Score(s),
            (true, None) => Reply::Nil,
            _ => Reply::Int(added + if opts.ch { changed } else { 0 }),
        })
    }

    /// ZREM, and ZPOP's removal (answering what it `popped`); the last
    /// member to go takes the key with it.
    #[allow(clippy::too_many_arguments)]
    fn zremove(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        members: Vec<Bytes>,
        stamp: Stamp,
        changes: &mut impl Changes,
        popped: Option<Vec<(Bytes, f64)>>,
    ) -> OpResult {
        let node = self.node;
        let answer = |removed: i64, popped: Option<Vec<(Bytes, f64)>>| match popped {
            Some(p) => Reply::Scored(p),
            None => Reply::Int(removed),
        };
        let Some(slot) = self.slot_mut(ns, h, key) else { return Ok(answer(0, popped)) };
        if !matches!(slot.body(node), Body::Other(Value::ZSet(_))) {
            return Err(OpError::WrongType);
        }
        let epoch = slot.epoch(node);
        let Value::ZSet(z) = &mut slot.full_mut(node).value else { return Err(OpError::WrongType) };
        let mut removed = Vec::new();
        for m in &members {
            if z.prune(m).is_some() {
                removed.push(m);
            }
        }
        let empty = z.is_empty();
        self.bytes -= removed.iter().map(|m| (m.len() + SCORED_OVERHEAD) as i64).sum::<i64>();
        let gone = Element::Score(Lww::new(stamp, None));
        self.removed_elements(ns, h, key, epoch, empty, &removed, &gone, changes);
        Ok(answer(removed.len() as i64, popped))
    }

    /// The list writes: pushes make the list, and the last item removed
    /// takes the key with it, as in Redis. Work is linear in the items
    /// pushed, or in how far into the list the op reaches.
    #[allow(clippy::too_many_arguments)]
    fn list_write(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        op: Op,
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
    ) -> OpResult {
        let node = self.node;
        if let Op::Push { head, items, existing } = op {
            match self.live(ns, h, key, now).map(|s| matches!(s.body(node), Body::Other(Value::List(_)))) {
                Some(false) => return Err(OpError::WrongType),
                None if existing => return Ok(Reply::Int(0)),
                _ => {}
            }
            // Its undo record was written before (`Keyspace::before`).
            return self.push(ns, h, key, head, items, stamp, now, changes, None);
        }
        let Some(slot) = self.slot_mut(ns, h, key) else {
            return match op {
                Op::LSet(..) => Err(OpError::NoSuchKey),
                Op::LRem(..) | Op::LInsert { .. } => Ok(Reply::Int(0)),
                Op::LTrim(..) => Ok(Reply::Ok),
                _ => Ok(Reply::Nil),
            };
        };
        if !matches!(slot.body(node), Body::Other(Value::List(_))) {
            return Err(OpError::WrongType);
        }
        let epoch = slot.epoch(node);
        let Value::List(list) = &mut slot.full_mut(node).value else { return Err(OpError::WrongType) };
        if let Op::LInsert { before, pivot, item } = op {
            let Some(plan) = insert_plan(list, before, &pivot, stamp)? else { return Ok(Reply::Int(-1)) };
            // All out, then all in: a new place may be one a moved item
            // held (a place made earlier in the same unit). The moves run
            // from the insertion outwards, so taken out from the far end in
            // and put back from the insertion out, each is at an end of the
            // list when it happens.
            let mut moved = Vec::with_capacity(plan.moves.len());
            for (old, new) in plan.moves.iter().rev() {
                let Some(r) = list.prune(old) else { continue };
                changes.element(ns, key, epoch, &old.encode(), StateRef::Item(&Lww::new(stamp, None)));
                moved.push((*new, Lww::new(stamp, r.value)));
            }
            for (new, r) in moved.into_iter().rev() {
                changes.element(ns, key, epoch, &new.encode(), StateRef::Item(&r));
                list.assign(new, r);
            }
            let grew = (item.len() + ITEM_OVERHEAD) as i64;
            list.assign(plan.place, Lww::new(stamp, Some(copy(&item))));
            let len = list.len();
            changes.element(ns, key, epoch, &plan.place.encode(), StateRef::Item(&Lww::new(stamp, Some(item))));
            self.bytes += grew;
            return Ok(Reply::Int(len as i64));
        }
        if let Op::LSet(i, value) = op {
            let Some(i) = index(i, list.len()) else { return Err(OpError::OutOfRange) };
            let place = *slice(list, i, i + 1)[0].0;
            let r = Lww::new(stamp, Some(copy(&value)));
            changes.element(ns, key, epoch, &place.encode(), StateRef::Item(&r));
            let grew = r.value.as_ref().map_or(0, Bytes::len) as i64;
            let old = list.assign(place, r);
            let old_len = old.and_then(|o| o.value).map_or(0, |v| v.len());
            self.bytes += grew - old_len as i64;
            return Ok(Reply::Ok);
        }
        let places = removed_places(list, &op);
        // Trims take from the ends, one by one; LREM's may lie anywhere,
        // so they go in one pass.
        let taken: Vec<Bytes> = if matches!(op, Op::LRem(..)) {
            list.prune_many(&places).into_iter().filter_map(|r| r.value).collect()
        } else {
            places.iter().filter_map(|place| list.prune(place).and_then(|r| r.value)).collect()
        };
        let empty = list.is_empty();
        self.bytes -= taken.iter().map(|v| (v.len() + ITEM_OVERHEAD) as i64).sum::<i64>();
        let gone = Element::Item(Lww::new(stamp, None));
        let names: Vec<[u8; Place::BYTES]> = places.iter().map(Place::encode).collect();
        self.removed_elements(ns, h, key, epoch, empty, &names, &gone, changes);
        Ok(match op {
            Op::LRem(..) => Reply::Int(taken.len() as i64),
            _ => Reply::Ok,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn hset(
        &mut self,
        ns: &Bytes,
        h: u64,
        key: &[u8],
        pairs: &[(Bytes, Bytes)],
        stamp: Stamp,
        now: u64,
        changes: &mut impl Changes,
        mut undo: Option<&mut Undo<'_>>,
    ) -> OpResult {
        let (entry, header, by_elements) = self.collection(ns, h, key, stamp, now, Kind::Map, undo.as_deref_mut())?;
        let epoch = entry.epoch;
        let map = fields_of(entry)?;
        let mut added = 0i64;
        let mut grew = 0i64;
        let mut record = undo
            .filter(|_| by_elements)
            .map(|u| ElementsUndo::start(u, ns, key, pairs.iter().map(|(f, _)| f.as_ref())));
        for (i, (f, v)) in pairs.iter().enumerate() {
            // A field named twice keeps its last value, as in Redis.
            let old = map.assign_borrowed(f.as_ref(), copy, Lww::new(stamp, Some(copy(v))));
            if let Some(r) = &mut record {
                r.was(i, f, old.as_ref().map(StateRef::Field));
            }
            match old {
                Some(Lww { value: Some(old), .. }) => grew += v.len() as i64 - old.len() as i64,
                _ => {
                    added += 1;
                    grew += (f.len() + v.len() + FIELD_OVERHEAD) as i64;
                }
            }
        }
        if let Some(r) = record {
            r.end();
        }
        if let Some(header) = header {
            changes.header(ns, key, &header);
        }
        let fields: Vec<&Bytes> = pairs.iter().map(|(f, _)| f).collect();
        for_each_once(&fields, |f| {
            if let Some(state) = map.get(f) {
                changes.element(ns, key, epoch, f, StateRef::Field(state));
            }
        });
        self.bytes += grew;
        Ok(Reply::Int(added))
    }

    fn set_expiry(&mut self, ns: &[u8], h: u64, key: &[u8], expiry: Lww<Option<u64>>, changes: &mut impl Changes) {
        let node = self.node;
        let Some(space) = self.spaces.get_mut(ns) else { return };
        let Some(slot) = space.table.get_mut(h, key) else { return };
        let old = slot.expires_at();
        let before = slot.approx_bytes() as i64;
        slot.set_expiry(Some(expiry), node);
        let new = slot.expires_at();
        let header = Header::of(slot, node);
        self.bytes += slot.approx_bytes() as i64 - before;
        reindex(&mut space.expiring, h, old, new);
        changes.header(ns, key, &header);
    }

    /// Drops up to `limit` keys whose time has come; returns how many went.
    /// `before` sees each key just before it goes; a key `held` says a
    /// commit holds waits (with the rest of its namespace) for a later round.
    pub(crate) fn reap(
        &mut self,
        now: u64,
        limit: usize,
        changes: &mut impl Changes,
        mut before: impl FnMut(&Keyspace, &Bytes, &[u8]),
        held: impl Fn(&Bytes, &[u8]) -> bool,
    ) -> usize {
        let mut gone = 0;
        let mut names: Vec<Bytes> = Vec::new();
        for (ns, space) in &self.spaces {
            if space.expiring.first().is_some_and(|(at, _)| *at <= now) {
                names.push(ns.clone());
            }
        }
        for ns in names {
            while gone < limit {
                let Some(space) = self.spaces.get_mut(ns.as_ref()) else { break };
                let Some(&(at, h)) = space.expiring.first() else { break };
                if at > now {
                    break;
                }
                // Every key with this hash whose time has come (two keys
                // sharing a 64-bit hash is all but impossible).
                let due = space.table.keys_with_hash(h, |s| s.is_expired(now));
                if due.iter().any(|k| held(&ns, k)) {
                    break;
                }
                space.expiring.pop_first();
                for key in due {
                    before(self, &ns, &key);
                    if self.remove(&ns, h, &key).is_some() {
                        changes.removed(&ns, &key);
                        gone += 1;
                    }
                }
            }
        }
        gone
    }

    /// Up to about `count` live keys of `ns` at or after position `from`,
    /// filtered by `pattern` (a glob) and `kind` (a Redis type name). Costs
    /// `count` keys plus at most one partition.
    pub fn scan(
        &self,
        ns: &[u8],
        from: u64,
        count: usize,
        pattern: Option<&[u8]>,
        kind: Option<&str>,
        now: u64,
    ) -> ScanPage {
        let Some(space) = self.spaces.get(ns) else { return ScanPage::default() };
        let mut keys = Vec::new();
        let next = space.table.walk(from, count, |s| {
            let wanted = !s.is_expired(now)
                && pattern.is_none_or(|p| glob::matches(p, s.key()))
                && kind.is_none_or(|t| s.kind().is_some_and(|k| k.redis_name() == t));
            if wanted {
                keys.push(copy(s.key()));
            }
        });
        ScanPage { keys, next }
    }

    /// The records of about `budget` keys from `cursor` on (all namespaces,
    /// in name order), into `changes`, and of [`DUMP_ELEMENTS`] of their
    /// elements at most; where to go on, or `None` when done.
    ///
    /// A snapshot replays with the log from before its first step, so a key
    /// may be written in slices while it changes: what changed after a
    /// slice was written is in the log.
    pub(crate) fn dump(&self, cursor: &DumpCursor, budget: usize, changes: &mut impl Changes) -> Option<DumpCursor> {
        let node = self.node;
        let mut next = cursor.clone();
        let mut left = DUMP_ELEMENTS;
        while let Some(part) = next.pending.front_mut() {
            let slot = self.spaces.get(&part.ns).and_then(|s| s.table.get(key_hash(&part.key), &part.key));
            let Some(slot) = slot.filter(|s| s.epoch(node) == part.epoch) else {
                next.pending.pop_front();
                continue;
            };
            if let ElementAt::Bucket { layout, .. } = part.at
                && Some(layout) != table_layout(slot, node)
            {
                part.restarts += 1;
            }
            let step = if part.restarts > MAX_RESTARTS { usize::MAX } else { left };
            let (written, at) = elements_of(slot, &part.ns, node, Some(part.at), step, changes);
            left = left.saturating_sub(written);
            match at {
                Some(at) => {
                    part.at = at;
                    return Some(next);
                }
                None => {
                    next.pending.pop_front();
                }
            }
            if left == 0 {
                return (!next.pending.is_empty() || !next.walked).then_some(next);
            }
        }
        if next.walked {
            return None;
        }
        let mut names: Vec<&Bytes> = self.spaces.keys().filter(|n| **n >= cursor.ns).collect();
        names.sort();
        for ns in names {
            let from = if *ns == cursor.ns { cursor.from } else { 0 };
            let pending = &mut next.pending;
            let visit = |s: &Slot| {
                let header = Header::of(s, node);
                changes.header(ns, s.key(), &header);
                let (written, at) = elements_of(s, ns, node, None, left.max(1), changes);
                left = left.saturating_sub(written);
                if let Some(at) = at {
                    let (ns, key) = (ns.clone(), Bytes::copy_from_slice(s.key()));
                    pending.push_back(PartKey { ns, key, epoch: s.epoch(node), at, restarts: 0 });
                }
            };
            if let Some(from) = self.spaces[ns].table.walk(from, budget, visit) {
                (next.ns, next.from) = (ns.clone(), from);
                return Some(next);
            }
        }
        next.walked = true;
        (!next.pending.is_empty()).then_some(next)
    }

    /// Applies a record read back from disk (recovery replays them in the
    /// order they were written). Returns the newest stamp it carried.
    pub(crate) fn restore(&mut self, record: Record) -> Stamp {
        let node = self.node;
        match record {
            Record::Header { ns, key, header } => {
                let h = key_hash(&key);
                let stamp = header.epoch.max(header.expiry.as_ref().map_or(Stamp::ZERO, |e| e.stamp));
                let same_epoch = self.spaces.get(ns.as_ref()).and_then(|s| s.table.get(h, &key)).map(|s| s.epoch(node))
                    == Some(header.epoch);
                let keeps_elements =
                    matches!(header.body, HeaderBody::Set | HeaderBody::Map | HeaderBody::List | HeaderBody::ZSet);
                if same_epoch && keeps_elements {
                    self.set_expiry_quiet(&ns, h, &key, header.expiry);
                } else {
                    self.put_slot(&ns, h, Slot::new(&key, header.into_entry(), node));
                }
                stamp
            }
            Record::Element { ns, key, element, state } => {
                let h = key_hash(&key);
                let Some(slot) = self.slot_mut(&ns, h, &key) else { return Stamp::ZERO };
                if !holds(slot.body(node), &state) {
                    return Stamp::ZERO;
                }
                let entry = slot.full_mut(node);
                let (stamp, grew) = match (&mut entry.value, state) {
                    (Value::Set(m), Element::Member(r)) => {
                        let stamp = r.stamp;
                        let size = (element.len() + MEMBER_OVERHEAD) as i64;
                        if r.value {
                            (stamp, if m.assign(element, r).is_none() { size } else { 0 })
                        } else {
                            (stamp, if m.prune(&element).is_some() { -size } else { 0 })
                        }
                    }
                    (Value::Map(m), Element::Field(r)) => {
                        let stamp = r.stamp;
                        let size = |v: &Option<Bytes>| {
                            v.as_ref().map_or(0, |v| (element.len() + v.len() + FIELD_OVERHEAD) as i64)
                        };
                        let added = size(&r.value);
                        let old = if r.value.is_some() { m.assign(element.clone(), r) } else { m.prune(&element) };
                        (stamp, added - old.map_or(0, |o| size(&o.value)))
                    }
                    (Value::ZSet(z), Element::Score(r)) => {
                        let stamp = r.stamp;
                        let size = (element.len() + SCORED_OVERHEAD) as i64;
                        let added = if r.value.is_some() { size } else { 0 };
                        let old = if r.value.is_some() { z.assign(element, r) } else { z.prune(&element) };
                        (stamp, added - old.and_then(|o| o.value).map_or(0, |_| size))
                    }
                    (Value::List(items), Element::Item(r)) => {
                        let Some(place) = Place::decode(&element) else { return Stamp::ZERO };
                        let stamp = r.stamp;
                        let size = |v: &Option<Bytes>| v.as_ref().map_or(0, |v| (v.len() + ITEM_OVERHEAD) as i64);
                        let added = size(&r.value);
                        let old = if r.value.is_some() { items.assign(place, r) } else { items.prune(&place) };
                        (stamp, added - old.map_or(0, |o| size(&o.value)))
                    }
                    _ => return Stamp::ZERO,
                };
                self.bytes += grew;
                stamp
            }
            Record::Removed { ns, key } => {
                self.remove(&ns, key_hash(&key), &key);
                Stamp::ZERO
            }
            Record::Undo { time, .. } => Stamp::new(time, node),
        }
    }

    fn set_expiry_quiet(&mut self, ns: &[u8], h: u64, key: &[u8], expiry: Option<Lww<Option<u64>>>) {
        let node = self.node;
        let Some(space) = self.spaces.get_mut(ns) else { return };
        let Some(slot) = space.table.get_mut(h, key) else { return };
        let old = slot.expires_at();
        slot.set_expiry(expiry, node);
        reindex(&mut space.expiring, h, old, slot.expires_at());
    }

    /// After recovery: drops keys that expired while the node was down
    /// (unless `keep_expired`: the window log needs their removal as a
    /// change, which the reaper makes), and sets or hashes a replay left
    /// empty. No records: the disk forgets them at the next snapshot.
    pub(crate) fn settle(&mut self, now: u64, keep_expired: bool) {
        let node = self.node;
        let mut doomed: Vec<(Bytes, u64, Vec<u8>)> = Vec::new();
        for (ns, space) in &self.spaces {
            space.table.walk(0, usize::MAX, |s| {
                let empty = match s.body(node) {
                    Body::Other(Value::Set(m)) => m.is_empty(),
                    Body::Other(Value::Map(m)) => m.is_empty(),
                    Body::Other(Value::List(items)) => items.is_empty(),
                    Body::Other(Value::ZSet(z)) => z.is_empty(),
                    Body::Other(Value::Tombstone) => true,
                    _ => false,
                };
                if empty || (!keep_expired && s.is_expired(now)) {
                    doomed.push((ns.clone(), key_hash(s.key()), s.key().to_vec()));
                }
            });
        }
        for (ns, h, key) in doomed {
            self.remove(&ns, h, &key);
        }
    }
}

/// Moves a key's entry in the expiry index.
fn reindex(expiring: &mut BTreeSet<(u64, u64)>, h: u64, old: Option<u64>, new: Option<u64>) {
    if old != new {
        if let Some(at) = old {
            expiring.remove(&(at, h));
        }
        if let Some(at) = new {
            expiring.insert((at, h));
        }
    }
}

/// The `n` items, each once (a command may name one twice).
fn distinct<'a>(items: impl Iterator<Item = &'a [u8]>, n: usize) -> Vec<&'a [u8]> {
    if n <= 1 {
        return items.collect();
    }
    let mut seen: HashSet<&[u8], foldhash::fast::RandomState> = HashSet::default();
    seen.reserve(n);
    items.filter(|i| seen.insert(i)).collect()
}

/// Calls `f` once for each distinct item (a command may name one twice).
fn for_each_once(items: &[impl AsRef<[u8]>], mut f: impl FnMut(&[u8])) {
    if items.len() <= 1 {
        items.iter().for_each(|i| f(i.as_ref()));
        return;
    }
    let mut seen: HashSet<&[u8], foldhash::fast::RandomState> = HashSet::default();
    seen.reserve(items.len());
    for i in items {
        if seen.insert(i.as_ref()) {
            f(i.as_ref());
        }
    }
}

/// Whether a key's value is the collection an element belongs in.
fn holds(body: Body<'_>, element: &Element) -> bool {
    matches!(
        (body, element),
        (Body::Other(Value::Set(_)), Element::Member(_))
            | (Body::Other(Value::Map(_)), Element::Field(_))
            | (Body::Other(Value::List(_)), Element::Item(_))
            | (Body::Other(Value::ZSet(_)), Element::Score(_))
    )
}
