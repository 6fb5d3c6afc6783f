//! The window log: for every change a shard made within the retention
//! window, the change's time and what it overwrote (an undo record, the same
//! bytes the disk log holds after the change), so the shard's keys can be
//! read as they were at any time the window reaches.
//!
//! The state of a key at time `T` is its live state with every change after
//! `T` undone, newest first. A key's changes are kept in a list of their
//! numbers in apply order, which for one key is stamp order (a commit holds
//! its keys from its proposal to its stamp), so the first change after `T`
//! is a binary search away. Most undo records hold the whole entry (a
//! register, a counter, a small set), and then that record alone is the
//! answer; only a big set's or hash's element changes are undone one by one,
//! back from the next whole record or the live state.
//!
//! Bounded by time (`retention`) and by bytes: past either, the oldest
//! changes go and the horizon (the newest time dropped) moves up. A time
//! before the horizon, or older than the retention, is out of the window.

use crate::disk::{Made, Records, before_of, origin_of};
use crate::glob;
use crate::keyspace::{Before, Element, Keyspace, ScanPage, key_hash, position};
use crate::protocol::ChangeAt;
use bytes::Bytes;
use hashbrown::HashTable;
use squall_lattice::{Entry, Timestamp, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};

type Hashed<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// How far back the window log reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long changes are kept, in milliseconds; 0 turns the window log off.
    pub ms: u64,
    /// The most bytes the node's window log may hold (all shards together).
    pub bytes: u64,
}

impl Retention {
    pub const DEFAULT: Retention = Retention { ms: 15 * 60 * 1000, bytes: 256 << 20 };
    pub const OFF: Retention = Retention { ms: 0, bytes: 0 };

    pub fn is_on(&self) -> bool {
        self.ms > 0 && self.bytes > 0
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::DEFAULT
    }
}

/// What a change costs beyond its record: its place in the log and in its
/// key's list.
const CHANGE_OVERHEAD: usize = 40;

/// Records are copied into chunks of this size, one allocation for many.
const CHUNK: usize = 64 << 10;

/// How far past the last record (bytes) a chunk's memory is loaded ahead.
const PREFETCH_AHEAD: usize = 512;

/// How many changes past the newest the log's memory is loaded ahead.
const CHANGES_AHEAD: usize = 12;

#[derive(Clone, Copy)]
struct Change {
    time: Timestamp,
    /// The latest time of this change and every one before it: a commit
    /// may apply after changes stamped later than it, so times are not in
    /// order, but these are.
    upto: Timestamp,
    /// Where its undo record is: the chunk's number, the offset and length in it.
    chunk: u64,
    at: u32,
    len: u32,
}

/// The records of the changes kept, in chunks, oldest first.
#[derive(Default)]
struct Chunks {
    all: VecDeque<Vec<u8>>,
    /// The number of `all[0]`.
    first: u64,
    /// An emptied chunk kept for the next one (no allocation, no page faults).
    spare: Option<Vec<u8>>,
}

impl Chunks {
    /// Copies `record` in: its chunk number and offset.
    fn put(&mut self, record: &[u8]) -> (u64, u32) {
        let full = self.all.back().is_none_or(|c| c.len() + record.len() > c.capacity());
        if full {
            let mut chunk = self.spare.take().unwrap_or_default();
            chunk.clear();
            chunk.reserve(CHUNK.max(record.len()));
            self.all.push_back(chunk);
        }
        let chunk = self.all.back_mut().expect("a chunk was added");
        let at = chunk.len() as u32;
        chunk.extend_from_slice(record);
        // The chunks cycle through far more memory than the caches hold:
        // the lines the next records go to are loaded now, so that writing
        // them later waits for nothing (nor does the next atomic operation,
        // which waits for every store before it).
        let ahead = (chunk.len() + PREFETCH_AHEAD).min(chunk.capacity().saturating_sub(1));
        squall_lattice::prefetch(chunk.as_ptr().wrapping_add(ahead));
        (self.first + self.all.len() as u64 - 1, at)
    }

    fn get(&self, c: &Change) -> &[u8] {
        let chunk = &self.all[(c.chunk - self.first) as usize];
        &chunk[c.at as usize..(c.at + c.len) as usize]
    }

    /// Lets go of the chunks before chunk `keep` (the oldest change's).
    fn drop_before(&mut self, keep: u64) {
        while self.first < keep && self.all.len() > 1 {
            let chunk = self.all.pop_front().expect("more than one chunk");
            self.first += 1;
            if chunk.capacity() <= CHUNK {
                self.spare = Some(chunk);
            }
        }
    }
}

/// How many changes a block of [`Blocks`] holds (128 KiB of them).
const BLOCK: usize = 4096;

/// The changes kept, oldest first, in blocks of [`BLOCK`]: it grows a block
/// at a time and never moves what it holds (a `VecDeque` doubles and copies
/// all of it, a stall of tens of ms once it holds millions).
#[derive(Default)]
struct Blocks {
    /// Every block but the last is full; `blocks[0]`'s first `head` are gone.
    blocks: VecDeque<Vec<Change>>,
    head: usize,
    len: usize,
    /// An emptied block kept for the next one.
    spare: Option<Vec<Change>>,
}

impl Blocks {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> &Change {
        debug_assert!(i < self.len);
        let j = self.head + i;
        &self.blocks[j / BLOCK][j % BLOCK]
    }

    fn front(&self) -> Option<&Change> {
        (self.len > 0).then(|| self.get(0))
    }

    fn back(&self) -> Option<&Change> {
        (self.len > 0).then(|| self.get(self.len - 1))
    }

    fn push_back(&mut self, c: Change) {
        if self.blocks.back().is_none_or(|b| b.len() == BLOCK) {
            let block = self.spare.take().unwrap_or_else(|| Vec::with_capacity(BLOCK));
            self.blocks.push_back(block);
        }
        self.blocks.back_mut().expect("a block was added").push(c);
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<Change> {
        let c = *self.front()?;
        self.head += 1;
        self.len -= 1;
        if self.head == BLOCK {
            let mut block = self.blocks.pop_front().expect("a full block");
            block.clear();
            self.spare = Some(block);
            self.head = 0;
        }
        Some(c)
    }

    /// The number of changes at the front for which `pred` holds (it holds
    /// for a prefix).
    fn partition_point(&self, pred: impl Fn(&Change) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid)) { lo = mid + 1 } else { hi = mid }
        }
        lo
    }

    /// The changes from the `i`th on.
    fn iter_from(&self, i: usize) -> impl Iterator<Item = &Change> {
        (i..self.len).map(|k| self.get(k))
    }
}

/// A key, inline when short (most are): finding it costs no pointer chase.
enum Name {
    Short { len: u8, bytes: [u8; 23] },
    Long(Box<[u8]>),
}

impl Name {
    fn new(key: &[u8]) -> Name {
        if key.len() <= 23 {
            let mut bytes = [0; 23];
            bytes[..key.len()].copy_from_slice(key);
            Name::Short { len: key.len() as u8, bytes }
        } else {
            Name::Long(key.into())
        }
    }

    fn get(&self) -> &[u8] {
        match self {
            Name::Short { len, bytes } => &bytes[..*len as usize],
            Name::Long(b) => b,
        }
    }
}

/// A key's changes in the window, by number, in apply order (which for one
/// key is time order); most keys have one.
enum Seqs {
    One(u64),
    Many(VecDeque<u64>),
}

impl Seqs {
    fn len(&self) -> usize {
        match self {
            Seqs::One(_) => 1,
            Seqs::Many(d) => d.len(),
        }
    }

    fn get(&self, i: usize) -> u64 {
        match self {
            Seqs::One(n) => *n,
            Seqs::Many(d) => d[i],
        }
    }

    fn push(&mut self, n: u64) {
        match self {
            Seqs::One(first) => *self = Seqs::Many(VecDeque::from([*first, n])),
            Seqs::Many(d) => d.push_back(n),
        }
    }

    fn push_front(&mut self, n: u64) {
        match self {
            Seqs::One(last) => *self = Seqs::Many(VecDeque::from([n, *last])),
            Seqs::Many(d) => d.push_front(n),
        }
    }

    /// Drops the oldest; whether any are left.
    fn pop_front(&mut self) -> bool {
        match self {
            Seqs::One(_) => false,
            Seqs::Many(d) => {
                d.pop_front();
                !d.is_empty()
            }
        }
    }
}

/// A key with changes in the window.
struct Changed {
    hash: u64,
    name: Name,
    seqs: Seqs,
    /// No slot holds it now (it is in `ghosts`).
    ghost: bool,
}

/// Where a change goes in its key's list in the index.
enum Place<'k> {
    /// After every change there (a new one); whether a slot holds the key now.
    Newest(bool),
    /// Before every change there (the index built back); the keyspace says
    /// whether a slot holds the key, if no newer change has.
    Oldest(&'k Keyspace),
}

/// A namespace's keys with changes in the window.
#[derive(Default)]
struct Space {
    keys: HashTable<Changed>,
    /// The keys no slot holds now, by scan position: a scan of the past
    /// must visit them too.
    ghosts: BTreeSet<(u64, Bytes)>,
}

impl Space {
    fn find(&self, h: u64, key: &[u8]) -> Option<&Changed> {
        self.keys.find(h, |c| c.hash == h && c.name.get() == key)
    }
}

pub(crate) struct Window {
    retention: Retention,
    /// This shard's share of the node's bytes.
    cap: usize,
    changes: Blocks,
    /// The number of `changes[0]` (numbers count every change kept).
    first: u64,
    bytes: usize,
    chunks: Chunks,
    /// Each key's changes, built when the past is first read and kept up
    /// to date while it is being read (writes alone never pay for it).
    /// It is built newest first, only as far back as reads need: a read
    /// at T costs about the changes since T, not the window.
    index: Hashed<Bytes, Space>,
    /// While there is an index, the changes numbered from this one on are
    /// in it (the older ones are not yet).
    low: u64,
    /// Until when (physical ms) the index is kept; 0: there is none.
    reading_until: u64,
    /// Changes at or before this time may have been dropped.
    horizon: Timestamp,
}

/// How many changes one step of building the index takes in (a few ms).
pub(crate) const INDEX_STEP: usize = 20_000;

/// How long the index is kept after the last read of the past.
const INDEX_KEPT_MS: u64 = 60_000;

/// The namespace and key an undo record names.
fn names(record: &[u8]) -> (&[u8], &[u8]) {
    let ns_len = record[1] as usize;
    let ns = &record[2..2 + ns_len];
    let mut at = 2 + ns_len;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = record[at];
        at += 1;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    (ns, &record[at..at + len])
}

fn undo_of(record: &[u8]) -> Before {
    // The window only holds undo records the store encoded.
    before_of(&Bytes::copy_from_slice(record)).expect("the window holds undo records")
}

/// Undoes one element or expiry change on `state`.
fn undo(state: &mut Option<Entry>, before: Before) {
    match before {
        Before::Absent => *state = None,
        // A walk stops at one (`Window::state_at`).
        Before::Lost => {}
        Before::Whole(e) => *state = Some(e),
        Before::Expiry(x) => {
            if let Some(e) = state {
                e.expiry = x;
            }
        }
        Before::Elements(elements) => {
            let Some(e) = state else { return };
            for (name, was) in elements {
                match (&mut e.value, was) {
                    (Value::Set(m), Some(Element::Member(r))) => {
                        m.assign(name, r);
                    }
                    (Value::Set(m), None) => {
                        m.prune(&name);
                    }
                    (Value::Map(m), Some(Element::Field(r))) => {
                        m.assign(name, r);
                    }
                    (Value::Map(m), None) => {
                        m.prune(&name);
                    }
                    (Value::ZSet(z), Some(Element::Score(r))) => {
                        z.assign(name, r);
                    }
                    (Value::ZSet(z), None) => {
                        z.prune(&name);
                    }
                    (Value::List(items), was) => {
                        if let Some(place) = squall_lattice::Place::decode(&name) {
                            match was {
                                Some(Element::Item(r)) => {
                                    items.assign(place, r);
                                }
                                _ => {
                                    items.prune(&place);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What a state is at `at`: nothing if it had expired by then.
fn seen_at(state: Option<Entry>, at: Timestamp) -> Option<Entry> {
    state.filter(|e| !matches!(e.value, Value::Tombstone) && e.expires_at().is_none_or(|x| x > at.wall_ms()))
}

impl Window {
    pub fn new(retention: Retention, shards: usize) -> Window {
        let cap = if retention.is_on() { (retention.bytes / shards.max(1) as u64).max(1) as usize } else { 0 };
        Window {
            retention,
            cap,
            changes: Blocks::default(),
            first: 0,
            bytes: 0,
            chunks: Chunks::default(),
            index: Hashed::default(),
            low: 0,
            reading_until: 0,
            horizon: Timestamp::ZERO,
        }
    }

    pub fn is_on(&self) -> bool {
        self.retention.is_on()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Raises the horizon (what an earlier run dropped).
    pub fn raise_horizon(&mut self, t: Timestamp) {
        self.horizon = self.horizon.max(t);
    }

    /// The oldest time the window reaches at physical time `now`.
    pub fn oldest(&self, now: u64) -> Timestamp {
        if !self.is_on() {
            return Timestamp::new(now, 0);
        }
        self.horizon.max(Timestamp::new(now.saturating_sub(self.retention.ms), 0))
    }

    fn change(&self, n: u64) -> &Change {
        self.changes.get((n - self.first) as usize)
    }

    /// Keeps the undo record `record` (one record, naming `ns` and `key`)
    /// of a change at `time`; `held` says whether a slot holds the key after
    /// it (asked only while the past is being read).
    pub fn push(&mut self, time: Timestamp, record: &[u8], held: impl FnOnce() -> bool) {
        let n = self.first + self.changes.len() as u64;
        let (chunk, at) = self.chunks.put(record);
        let upto = self.changes.back().map_or(time, |c| c.upto.max(time));
        self.changes.push_back(Change { time, upto, chunk, at, len: record.len() as u32 });
        // As for the chunks (a prefetch is only a hint: past the buffer's
        // end it loads nothing that matters, and it never faults).
        if let Some(newest) = self.changes.back() {
            squall_lattice::prefetch(std::ptr::from_ref(newest).wrapping_add(CHANGES_AHEAD).cast());
        }
        self.bytes += record.len() + CHANGE_OVERHEAD;
        if self.reading_until > 0 {
            self.index_change(n, Place::Newest(held()));
        }
    }

    /// Puts change `n` in its key's list, at the place `place` says.
    fn index_change(&mut self, n: u64, place: Place<'_>) {
        let (ns, key) = names(self.chunks.get(self.changes.get((n - self.first) as usize)));
        let space = match self.index.get_mut(ns) {
            Some(space) => space,
            None => self.index.entry(Bytes::copy_from_slice(ns)).or_default(),
        };
        let h = key_hash(key);
        let ghost = || (position(h), Bytes::copy_from_slice(key));
        match (space.keys.find_mut(h, |c| c.hash == h && c.name.get() == key), place) {
            // Its newer changes already said whether it is a ghost.
            (Some(c), Place::Oldest(_)) => c.seqs.push_front(n),
            (Some(c), Place::Newest(held)) => {
                c.seqs.push(n);
                if c.ghost == held {
                    c.ghost = !held;
                    if held {
                        space.ghosts.remove(&ghost());
                    } else {
                        space.ghosts.insert(ghost());
                    }
                }
            }
            (None, place) => {
                let held = match place {
                    Place::Newest(held) => held,
                    Place::Oldest(keys) => keys.holds(ns, key),
                };
                if !held {
                    space.ghosts.insert(ghost());
                }
                let c = Changed { hash: h, name: Name::new(key), seqs: Seqs::One(n), ghost: !held };
                space.keys.insert_unique(h, c, |c| c.hash);
            }
        }
    }

    /// Someone reads the past at physical time `now`: the index is kept
    /// (and built, by [`Window::catch_up`]) for a while.
    pub fn reading(&mut self, now: u64) {
        if self.reading_until == 0 {
            self.low = self.first + self.changes.len() as u64;
        }
        self.reading_until = now + INDEX_KEPT_MS;
    }

    /// Whether the index has every change stamped after `at`.
    fn covers(&self, at: Timestamp) -> bool {
        self.low <= self.first || self.change(self.low - 1).upto <= at
    }

    /// Builds the index back over up to `budget` more changes, until it
    /// has every change stamped after `at`; whether it has.
    pub fn catch_up(&mut self, keys: &Keyspace, budget: usize, at: Timestamp) -> bool {
        for _ in 0..budget {
            if self.covers(at) {
                return true;
            }
            self.low -= 1;
            self.index_change(self.low, Place::Oldest(keys));
        }
        self.covers(at)
    }

    /// Drops the index when nobody has read the past for a while.
    pub fn idle(&mut self, now: u64) {
        if self.reading_until > 0 && now > self.reading_until {
            self.reading_until = 0;
            self.index = Hashed::default();
        }
    }

    /// Whether the window is over its byte cap by more than a chunk (it is
    /// trimmed in steps that size, not a change per write).
    pub fn over_cap(&self) -> bool {
        self.bytes > self.cap + CHUNK
    }

    /// Drops changes older than the retention at physical time `now`, and
    /// the oldest ones while over the byte cap.
    pub fn trim(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.retention.ms);
        while let Some(front) = self.changes.front() {
            if front.time.wall_ms() >= cutoff && self.bytes <= self.cap {
                break;
            }
            let change = self.changes.pop_front().expect("front exists");
            let n = self.first;
            self.first += 1;
            self.bytes -= change.len as usize + CHANGE_OVERHEAD;
            self.horizon = self.horizon.max(change.time);
            if self.reading_until == 0 || n < self.low {
                continue;
            }
            self.low = self.low.max(self.first);
            let (ns, key) = names(self.chunks.get(&change));
            let Some(space) = self.index.get_mut(ns) else { continue };
            let h = key_hash(key);
            let is = |c: &Changed| c.hash == h && c.name.get() == key;
            let Some(c) = space.keys.find_mut(h, is) else { continue };
            if c.seqs.pop_front() {
                continue;
            }
            let ghost = c.ghost;
            if let Ok(gone) = space.keys.find_entry(h, is) {
                gone.remove();
            }
            if ghost {
                space.ghosts.remove(&(position(h), Bytes::copy_from_slice(key)));
            }
            if space.keys.is_empty() {
                self.index.remove(ns);
            }
        }
        let keep = self.changes.front().map_or(u64::MAX, |c| c.chunk);
        self.chunks.drop_before(keep);
    }

    /// `key` as it was at `at` (which the caller checked is in the window),
    /// or `None` if it was not there; `Err` with the time of a change whose
    /// undo was not kept (a value too big) if `at` is before it.
    pub fn state_at(&self, keys: &Keyspace, ns: &[u8], key: &[u8], at: Timestamp) -> Result<Option<Entry>, Timestamp> {
        let Some(c) = self.index.get(ns).and_then(|s| s.find(key_hash(key), key)) else {
            return Ok(seen_at(keys.raw(ns, key), at));
        };
        let seqs = &c.seqs;
        // The first change after `at`: a key's changes are in time order.
        let (mut lo, mut hi) = (0, seqs.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.change(seqs.get(mid)).time <= at {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // Undo back from the first whole record after `at` (or the live
        // state), newest first.
        let mut pending = Vec::new();
        let mut state = None;
        for n in (lo..seqs.len()).map(|i| seqs.get(i)) {
            match undo_of(self.chunks.get(self.change(n))) {
                Before::Absent => {
                    state = Some(None);
                    break;
                }
                Before::Whole(e) => {
                    state = Some(Some(e));
                    break;
                }
                Before::Lost => return Err(self.change(n).time),
                partial => pending.push(partial),
            }
        }
        let mut state = state.unwrap_or_else(|| keys.raw(ns, key));
        for before in pending.into_iter().rev() {
            undo(&mut state, before);
        }
        Ok(seen_at(state, at))
    }

    /// A page of the keys of `ns` as they were at `at`, from scan position
    /// `from`: the keys held now (each as it was) and the ghosts, cut at
    /// about `count` keys on a position boundary.
    pub fn scan_at(
        &self,
        keys: &Keyspace,
        ns: &[u8],
        from: u64,
        count: usize,
        pattern: Option<&[u8]>,
        at: Timestamp,
    ) -> Result<ScanPage, Timestamp> {
        let count = count.max(1);
        let space = self.index.get(ns);
        // The first key whose past is not kept, if any.
        let lost = std::cell::Cell::new(None);
        let present = |key: &[u8]| match self.state_at(keys, ns, key, at) {
            Ok(state) => state.is_some(),
            Err(t) => {
                lost.set(Some(t));
                false
            }
        };
        let mut found: Vec<(u64, Bytes)> = Vec::new();
        let wanted = |key: &[u8]| pattern.is_none_or(|p| glob::matches(p, key));
        let there = |key: &[u8]| match space.and_then(|s| s.find(key_hash(key), key)) {
            Some(_) => present(key),
            None => keys.expires_at(ns, key).is_none_or(|x| x > at.wall_ms()),
        };
        let live_end = keys.walk(ns, from, count, |key| {
            if wanted(key) && there(key) {
                found.push((position(key_hash(key)), Bytes::copy_from_slice(key)));
            }
        });
        // Positions this page covers: up to where the walk stopped.
        let mut end = live_end;
        if let Some(ghosts) = space.map(|s| &s.ghosts) {
            let mut last = None;
            for (visited, (pos, key)) in ghosts.range((from, Bytes::new())..).enumerate() {
                if end.is_some_and(|e| *pos >= e) {
                    break;
                }
                // Past a page of ghosts the page ends, between two positions.
                if visited >= count && last.is_some_and(|l| l < *pos) {
                    end = Some(*pos);
                    break;
                }
                last = Some(*pos);
                if wanted(key) && present(key) {
                    found.push((*pos, key.clone()));
                }
            }
        }
        found.retain(|(p, _)| end.is_none_or(|e| *p < e));
        found.sort_unstable();
        let mut next = end;
        if found.len() > count {
            // Keep whole positions: the next page starts at the first one left out.
            let last = found[count - 1].0;
            if let Some(cut) = found.iter().position(|(p, _)| *p > last) {
                next = Some(found[cut].0);
                found.truncate(cut);
            }
        }
        match lost.get() {
            Some(t) => Err(t),
            None => Ok(ScanPage { keys: found.into_iter().map(|(_, k)| k).collect(), next }),
        }
    }
}

impl Window {
    /// The changes to keys of `ns` starting with `prefix`, stamped in
    /// `(from, to]`, oldest first, one per key and stamp, each with the key
    /// just before and after; at most about `limit` (never half a stamp),
    /// and whether that is all of them.
    pub fn changes(
        &self,
        keys: &Keyspace,
        ns: &[u8],
        from: Timestamp,
        to: Timestamp,
        prefix: &[u8],
        limit: usize,
    ) -> (Vec<ChangeAt>, bool) {
        // The log is in apply order: a commit is applied within its hold
        // limit (10 s) of its stamp, so nothing stamped before `to` comes
        // after a change stamped LATE later.
        const LATE: u64 = 11_000;
        let i = self.changes.partition_point(|c| c.upto <= from);
        let mut found: Vec<(Timestamp, u64, Bytes, Option<Bytes>)> = Vec::new();
        // Once `limit` are found, only changes up to the newest of those
        // count (the answer ends there): the walk stops LATE after it, so
        // an answer costs about its size, not the window's.
        let mut upto = to;
        let mut complete = true;
        for (j, c) in self.changes.iter_from(i).enumerate() {
            if c.time.wall_ms() > upto.wall_ms() + LATE {
                break;
            }
            let (cns, key) = names(self.chunks.get(c));
            if c.time > from && c.time <= upto && cns == ns && key.starts_with(prefix) {
                if found.len() == limit.max(1) {
                    upto = found.iter().map(|f| f.0).max().unwrap_or(upto);
                    complete = false;
                    if c.time > upto {
                        continue;
                    }
                }
                let origin = origin_of(self.chunks.get(c)).map(Bytes::copy_from_slice);
                found.push((c.time, self.first + (i + j) as u64, Bytes::copy_from_slice(key), origin));
            }
        }
        // One per key and stamp (the first of a unit's ops on it).
        found.sort_unstable_by(|a, b| (a.0, &a.2, a.1).cmp(&(b.0, &b.2, b.1)));
        found.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);
        let changes = found
            .into_iter()
            .map(|(time, _, key, origin)| ChangeAt {
                // A value too big to keep reads as not there.
                before: self.state_at(keys, ns, &key, Timestamp(time.0.saturating_sub(1))).unwrap_or(None),
                after: self.state_at(keys, ns, &key, time).unwrap_or(None),
                time,
                key,
                origin,
            })
            .collect();
        (changes, complete)
    }
}

/// Writes `key`'s undo record for `op` into `scratch` (cleared first).
pub(crate) fn undo_record(
    keys: &Keyspace,
    ns: &[u8],
    key: &[u8],
    op: &crate::op::Op,
    made: Made<'_>,
    now: u64,
    scratch: &mut Records,
) {
    scratch.clear();
    keys.before(ns, key, op, made, now, scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u64) -> Change {
        Change { time: Timestamp(n), upto: Timestamp(n), chunk: n, at: 0, len: 0 }
    }

    /// Pushes and pops across many block boundaries, against a `VecDeque`.
    #[test]
    fn blocks_keep_order_across_block_boundaries() {
        let mut blocks = Blocks::default();
        let mut model = VecDeque::new();
        let mut next = 0u64;
        for round in 0..6 {
            for _ in 0..(BLOCK * 2 + 17 * round) {
                blocks.push_back(change(next));
                model.push_back(next);
                next += 1;
            }
            for _ in 0..(BLOCK + 5 * round) {
                assert_eq!(blocks.pop_front().map(|c| c.chunk), model.pop_front());
            }
            assert_eq!(blocks.len(), model.len());
            assert_eq!(blocks.front().map(|c| c.chunk), model.front().copied());
            assert_eq!(blocks.back().map(|c| c.chunk), model.back().copied());
            let cut = model[model.len() / 3];
            assert_eq!(blocks.partition_point(|c| c.chunk < cut), model.len() / 3);
            let from: Vec<u64> = blocks.iter_from(7).map(|c| c.chunk).collect();
            assert_eq!(from, model.iter().skip(7).copied().collect::<Vec<_>>());
        }
        while let Some(c) = blocks.pop_front() {
            assert_eq!(Some(c.chunk), model.pop_front());
        }
        assert!(model.is_empty() && blocks.front().is_none() && blocks.back().is_none());
        blocks.push_back(change(next));
        assert_eq!(blocks.back().map(|c| c.chunk), Some(next));
        assert!(blocks.blocks.len() <= 1, "an emptied queue holds at most one block");
    }
}
