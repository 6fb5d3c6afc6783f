//! One shard: the single-threaded owner of the keys that hash to it. It
//! applies operations to its in-memory entries (the memory tier) and emits the
//! records that make each change durable.

use crate::disk::{Chunk, Records, WriterMsg};
use crate::glob;
use crate::op::{Op, OpError, OpResult, Reply, SetExpiry};
use bytes::Bytes;
use squall_lattice::{Entry, Hlc, Lww, NodeId, PhysicalClock, PnCounter, Stamp, SystemClock, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use tokio::sync::oneshot;

type Space = HashMap<Bytes, Entry, foldhash::fast::RandomState>;
type Spaces = HashMap<Bytes, Space, foldhash::fast::RandomState>;

/// Counters a shard publishes for `/metrics`; written by the shard only.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub keys: AtomicU64,
    pub expired: AtomicU64,
}

/// The shard's state. Lives on its shard thread; see [`crate::Handle::run`].
pub struct Shard {
    pub(crate) id: usize,
    node: NodeId,
    hlc: Arc<Hlc>,
    /// Set while a commit applies: every write gets this stamp.
    fixed_stamp: Option<Stamp>,
    spaces: Spaces,
    /// (expiry ms, namespace, key) of every key with an expiry.
    expiring: BTreeSet<(u64, Bytes, Bytes)>,
    pending: Records,
    /// Counts the shard's writes; the writer reports which are durable.
    seq: u64,
    pub(crate) stats: Arc<ShardStats>,
    keys: u64,
    /// Where records go; set once the shard runs on its thread.
    pub(crate) writer: Option<SyncSender<WriterMsg>>,
}

/// One page of a SCAN over a shard, in key-hash order.
#[derive(Debug, Default)]
pub struct ScanPage {
    pub keys: Vec<Bytes>,
    /// The position to resume from, or `None` when the shard is done.
    pub next: Option<u64>,
}

/// The hash that places a key on a shard (stable across versions and restarts).
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Bits of a SCAN cursor that hold the position within a shard; the rest name the shard.
pub const SCAN_POSITION_BITS: u32 = 56;

/// A key's place in SCAN order within its shard.
pub fn scan_position(key: &[u8]) -> u64 {
    // The low bits of xxh3 choose the shard; the high bits order keys within it.
    key_hash(key) >> (64 - SCAN_POSITION_BITS)
}

/// Copies `b` into its own allocation, so a key or value kept in memory does
/// not pin the whole network buffer it was parsed from.
fn own(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

impl Shard {
    pub fn new(id: usize, node: NodeId, hlc: Arc<Hlc>) -> Self {
        Shard {
            id,
            node,
            hlc,
            fixed_stamp: None,
            spaces: Spaces::default(),
            expiring: BTreeSet::new(),
            pending: Records::default(),
            seq: 0,
            stats: Arc::default(),
            keys: 0,
            writer: None,
        }
    }

    pub(crate) fn load(&mut self, ns: Bytes, key: Bytes, entry: Entry) {
        if let Some(at) = entry.expires_at() {
            self.expiring.insert((at, ns.clone(), key.clone()));
        }
        self.spaces.entry(ns).or_default().insert(key, entry);
        self.keys += 1;
        self.stats.keys.store(self.keys, Ordering::Relaxed);
    }

    fn now_ms() -> u64 {
        SystemClock.now_ms()
    }

    fn stamp(&self) -> Stamp {
        self.fixed_stamp.unwrap_or_else(|| Stamp::new(self.hlc.now(), self.node))
    }

    /// Applies `op` with every write stamped `stamp` (one time for a whole commit).
    pub fn apply_stamped(&mut self, ns: &Bytes, key: &Bytes, op: Op, stamp: Stamp) -> OpResult {
        self.fixed_stamp = Some(stamp);
        let r = self.apply(ns, key, op);
        self.fixed_stamp = None;
        r
    }

    /// Puts `entry` at `key` as it is, with no record for the disk (for a
    /// private overlay shard that is never written out).
    pub fn seed(&mut self, ns: &Bytes, key: &Bytes, entry: Entry) {
        self.put(ns, key, entry);
        self.discard_records();
    }

    /// The shard's write sequence number: every write so far is numbered at or below it.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Drops the disk records not yet handed to the writer; returns how many.
    /// For driving a shard without a writer (benchmarks, tests).
    pub fn discard_records(&mut self) -> usize {
        std::mem::take(&mut self.pending).len()
    }

    /// Hands the records written so far to the writer.
    pub(crate) fn send_pending(&mut self) {
        if !self.pending.is_empty() {
            self.send(None);
        }
    }

    /// Hands this shard's part of a cross-shard batch to the writer, after
    /// the records that came before it, so the writer commits the parts together.
    pub(crate) fn send_batch_part(&mut self, batch: (u64, usize)) {
        self.send(Some(batch));
    }

    /// Sends what is pending, then asks the writer to answer `done` once it is on disk.
    pub(crate) fn flush_to_writer(&mut self, done: oneshot::Sender<()>) {
        self.send_pending();
        if let Some(w) = &self.writer {
            let _ = w.send(WriterMsg::Flush(done));
        }
    }

    fn send(&mut self, batch: Option<(u64, usize)>) {
        let records = std::mem::take(&mut self.pending);
        if let Some(w) = &self.writer {
            // Blocks when the writer is behind: backpressure from the disk.
            let _ = w.send(WriterMsg::Chunk(Chunk { shard: self.id, records, upto: self.seq, batch }));
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Applies `op` to `key` in namespace `ns`.
    pub fn apply(&mut self, ns: &Bytes, key: &Bytes, op: Op) -> OpResult {
        let now = Self::now_ms();
        let before = self.pending.len();
        let result = if op.is_write() {
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            self.write(ns, key, op, now)
        } else {
            self.stats.reads.fetch_add(1, Ordering::Relaxed);
            self.read(ns, key, op, now)
        };
        if self.pending.len() > before {
            self.seq += 1;
        }
        result
    }

    /// The live entry at `key`, dropping it first if it has expired.
    fn live(&mut self, ns: &Bytes, key: &Bytes, now: u64) -> Option<&mut Entry> {
        let expired = self.spaces.get(ns)?.get(key)?.is_expired(now);
        if expired {
            self.remove(ns, key);
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.spaces.get_mut(ns)?.get_mut(key)
    }

    /// Removes `key` from memory and disk. On one node nobody else holds the
    /// key, so its tombstone needs no keeping (a cluster will keep it until
    /// every replica has seen it).
    fn remove(&mut self, ns: &Bytes, key: &Bytes) -> Option<Entry> {
        let entry = self.spaces.get_mut(ns)?.remove(key)?;
        if let Some(at) = entry.expires_at() {
            self.expiring.remove(&(at, ns.clone(), key.clone()));
        }
        self.pending.delete_all(ns, key, &entry);
        self.keys -= 1;
        self.stats.keys.store(self.keys, Ordering::Relaxed);
        Some(entry)
    }

    fn read(&self, ns: &Bytes, key: &Bytes, op: Op, now: u64) -> OpResult {
        // An expired key reads as missing at once; the reaper reclaims it.
        let found = self.spaces.get(ns).and_then(|s| s.get(key)).filter(|e| !e.is_expired(now));
        let Some(entry) = found else {
            return Ok(match op {
                Op::Get | Op::HGet(_) | Op::Snapshot => Reply::Nil,
                Op::SMembers | Op::HGetAll => Reply::List(Vec::new()),
                Op::Exists | Op::SCard | Op::HLen | Op::SIsMember(_) => Reply::Int(0),
                Op::Type => Reply::Str("none"),
                Op::Pttl => Reply::Int(-2),
                _ => Reply::Nil,
            });
        };
        let value = &entry.value;
        Ok(match op {
            Op::Get => match value {
                Value::Register(b) => Reply::Bytes(b.clone()),
                Value::Counter(c) => Reply::Bytes(Bytes::from(c.value().to_string())),
                Value::Max(m) => Reply::Bytes(Bytes::from(m.0.to_string())),
                _ => return Err(OpError::WrongType),
            },
            Op::Exists => Reply::Int(1),
            Op::Type => Reply::Str(value.kind().map_or("none", |k| k.redis_name())),
            Op::Snapshot => Reply::Entry(Box::new(entry.clone())),
            Op::Pttl => {
                Reply::Int(entry.expires_at().map_or(-1, |at| at.saturating_sub(now).min(i64::MAX as u64) as i64))
            }
            Op::SMembers => Reply::List(as_set(value)?.iter().cloned().collect()),
            Op::SIsMember(m) => Reply::Int(as_set(value)?.contains(&m) as i64),
            Op::SCard => Reply::Int(as_set(value)?.len() as i64),
            Op::HGet(f) => match as_map(value)?.get(&f) {
                Some(Lww { value: Some(v), .. }) => Reply::Bytes(v.clone()),
                _ => Reply::Nil,
            },
            Op::HGetAll => {
                let map = as_map(value)?;
                let mut out = Vec::with_capacity(map.len() * 2);
                for (f, reg) in map.iter() {
                    if let Some(v) = &reg.value {
                        out.push(f.clone());
                        out.push(v.clone());
                    }
                }
                Reply::List(out)
            }
            Op::HLen => Reply::Int(as_map(value)?.iter().filter(|(_, r)| r.value.is_some()).count() as i64),
            _ => Reply::Nil,
        })
    }

    fn write(&mut self, ns: &Bytes, key: &Bytes, op: Op, now: u64) -> OpResult {
        match op {
            Op::Set { value, expiry, get } => {
                let stamp = self.stamp();
                let mut entry = Entry::new(stamp, Value::Register(own(&value)));
                if let SetExpiry::At(at) = expiry {
                    entry.expiry = Some(Lww::new(stamp, Some(at)));
                }
                let old = self.live(ns, key, now);
                let previous = match (old.as_ref().map(|e| &e.value), get) {
                    (_, false) => Reply::Ok,
                    (None, true) => Reply::Nil,
                    (Some(Value::Register(b)), true) => Reply::Bytes(b.clone()),
                    (Some(Value::Counter(c)), true) => Reply::Bytes(Bytes::from(c.value().to_string())),
                    (Some(_), true) => return Err(OpError::WrongType),
                };
                if expiry == SetExpiry::Keep {
                    entry.expiry = old.and_then(|e| e.expiry.clone());
                }
                self.put(ns, key, entry);
                Ok(previous)
            }
            Op::Del => {
                let existed = self.live(ns, key, now).is_some();
                if existed {
                    self.remove(ns, key);
                }
                Ok(Reply::Int(existed as i64))
            }
            Op::IncrBy(delta) => self.incr(ns, key, delta, now),
            Op::SAdd(members) => {
                let node = self.node;
                let entry = self.entry_of(ns, key, now, || Value::Set(Default::default()))?;
                let Value::Set(set) = &mut entry.value else { return Err(OpError::WrongType) };
                let members: Vec<Bytes> = members.iter().map(own).collect();
                let added = members.iter().filter(|m| set.insert(node, (*m).clone())).count();
                self.record_elements(ns, key, &members);
                Ok(Reply::Int(added as i64))
            }
            Op::SRem(members) => {
                let Some(entry) = self.live(ns, key, now) else { return Ok(Reply::Int(0)) };
                let Value::Set(set) = &mut entry.value else { return Err(OpError::WrongType) };
                let removed: Vec<Bytes> = members.into_iter().filter(|m| set.remove(m)).collect();
                let empty = set.is_empty();
                // The removed members' records go first: once the set is gone
                // from memory nothing remembers them.
                self.record_elements(ns, key, &removed);
                if empty {
                    // Redis deletes a set when its last member goes.
                    self.remove(ns, key);
                }
                Ok(Reply::Int(removed.len() as i64))
            }
            Op::HSet(pairs) => {
                let stamp = self.stamp();
                let entry = self.entry_of(ns, key, now, || Value::Map(Default::default()))?;
                let Value::Map(map) = &mut entry.value else { return Err(OpError::WrongType) };
                let mut added = 0;
                let mut fields: Vec<Bytes> = Vec::with_capacity(pairs.len());
                // All pairs share one stamp, so a field named twice keeps its
                // last value (as in Redis) only if the earlier ones are skipped.
                for (i, (f, v)) in pairs.iter().enumerate() {
                    if pairs[i + 1..].iter().any(|(later, _)| later == f) {
                        continue;
                    }
                    let f = own(f);
                    added += map.get(&f).is_none_or(|r| r.value.is_none()) as i64;
                    map.merge_entry(f.clone(), Lww::new(stamp, Some(own(v))));
                    fields.push(f);
                }
                self.record_elements(ns, key, &fields);
                Ok(Reply::Int(added))
            }
            Op::HDel(fields) => {
                let Some(entry) = self.live(ns, key, now) else { return Ok(Reply::Int(0)) };
                let Value::Map(map) = &mut entry.value else { return Err(OpError::WrongType) };
                // A deleted field is a tombstone in the lattice; alone on this
                // node, it is pruned at once.
                let removed: Vec<Bytes> =
                    fields.into_iter().filter(|f| map.prune(f).is_some_and(|r| r.value.is_some())).collect();
                let empty = map.is_empty();
                self.record_elements(ns, key, &removed);
                if empty {
                    self.remove(ns, key);
                }
                Ok(Reply::Int(removed.len() as i64))
            }
            Op::ExpireAt(at) => {
                if self.live(ns, key, now).is_none() {
                    return Ok(Reply::Int(0));
                }
                if at <= now {
                    self.remove(ns, key);
                    return Ok(Reply::Int(1));
                }
                let stamp = self.stamp();
                self.set_expiry(ns, key, Some(Lww::new(stamp, Some(at))));
                Ok(Reply::Int(1))
            }
            Op::Persist => {
                let Some(entry) = self.live(ns, key, now) else { return Ok(Reply::Int(0)) };
                if entry.expires_at().is_none() {
                    return Ok(Reply::Int(0));
                }
                let stamp = self.stamp();
                self.set_expiry(ns, key, Some(Lww::new(stamp, None)));
                Ok(Reply::Int(1))
            }
            _ => self.read(ns, key, op, now),
        }
    }

    /// Records the current state of `elements` of the set or hash at `key`
    /// (a delete for those no longer there), and its header.
    fn record_elements(&mut self, ns: &Bytes, key: &Bytes, elements: &[Bytes]) {
        let Some(entry) = self.spaces.get(ns).and_then(|s| s.get(key)) else { return };
        for e in elements {
            match &entry.value {
                Value::Set(set) => self.pending.set_member(ns, key, e, set.dots(e)),
                Value::Map(map) => self.pending.map_field(ns, key, e, map.get(e)),
                _ => {}
            }
        }
        self.pending.header(ns, key, entry);
    }

    fn incr(&mut self, ns: &Bytes, key: &Bytes, delta: i64, now: u64) -> OpResult {
        let node = self.node;
        // INCR on a register holding an integer turns it into a counter in a
        // new epoch, as Redis lets a client INCR what it SET.
        let from_register = match self.live(ns, key, now).map(|e| &e.value) {
            Some(Value::Register(b)) => {
                let base: i64 = std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or(OpError::NotInteger)?;
                Some(base)
            }
            _ => None,
        };
        if let Some(base) = from_register {
            let mut counter = PnCounter::default();
            counter.add(node, base);
            let result = counter.add(node, delta).ok_or(OpError::Overflow)?;
            let expiry = self.live(ns, key, now).and_then(|e| e.expiry.clone());
            let mut entry = Entry::new(self.stamp(), Value::Counter(counter));
            entry.expiry = expiry;
            self.put(ns, key, entry);
            return Ok(Reply::Int(result));
        }
        let entry = self.entry_of(ns, key, now, || Value::Counter(PnCounter::default()))?;
        let Value::Counter(counter) = &mut entry.value else { return Err(OpError::WrongType) };
        let result = counter.add(node, delta).ok_or(OpError::Overflow)?;
        self.record_elements(ns, key, &[]);
        Ok(Reply::Int(result))
    }

    /// The live entry at `key`, created in a new epoch holding `empty` if
    /// there is none. Fails if it holds another type.
    fn entry_of(
        &mut self,
        ns: &Bytes,
        key: &Bytes,
        now: u64,
        empty: impl FnOnce() -> Value,
    ) -> Result<&mut Entry, OpError> {
        let fresh = empty();
        if self.live(ns, key, now).is_none() {
            let stamp = self.stamp();
            self.spaces.entry(ns.clone()).or_default().insert(own(key), Entry::new(stamp, fresh.clone()));
            self.keys += 1;
            self.stats.keys.store(self.keys, Ordering::Relaxed);
        }
        let entry = self.spaces.get_mut(ns).and_then(|s| s.get_mut(key)).ok_or(OpError::WrongType)?;
        if std::mem::discriminant(&entry.value) != std::mem::discriminant(&fresh) {
            return Err(OpError::WrongType);
        }
        Ok(entry)
    }

    /// Puts `entry` at `key` in place of whatever was there (records and
    /// expiry index included), with one lookup when the key exists.
    fn put(&mut self, ns: &Bytes, key: &Bytes, entry: Entry) {
        self.pending.header(ns, key, &entry);
        let new_at = entry.expires_at();
        let space = match self.spaces.get_mut(ns) {
            Some(space) => space,
            None => self.spaces.entry(ns.clone()).or_default(),
        };
        let old_at = match space.get_mut(key) {
            Some(slot) => {
                let old = std::mem::replace(slot, entry);
                // The new header overwrites the old one; a set's or hash's element records go.
                self.pending.delete_elements(ns, key, &old);
                old.expires_at()
            }
            None => {
                space.insert(own(key), entry);
                self.keys += 1;
                self.stats.keys.store(self.keys, Ordering::Relaxed);
                None
            }
        };
        if old_at != new_at {
            if let Some(at) = old_at {
                self.expiring.remove(&(at, ns.clone(), key.clone()));
            }
            if let Some(at) = new_at {
                self.expiring.insert((at, ns.clone(), own(key)));
            }
        }
    }

    fn set_expiry(&mut self, ns: &Bytes, key: &Bytes, expiry: Option<Lww<Option<u64>>>) {
        let Some(entry) = self.spaces.get_mut(ns).and_then(|s| s.get_mut(key)) else { return };
        let old = entry.expires_at();
        match (&mut entry.expiry, expiry) {
            (Some(cur), Some(new)) => squall_lattice::Lattice::merge(cur, new),
            (cur, new) => *cur = new,
        }
        let new = entry.expires_at();
        if let Some(at) = old {
            self.expiring.remove(&(at, ns.clone(), key.clone()));
        }
        if let Some(at) = new {
            self.expiring.insert((at, ns.clone(), key.clone()));
        }
        self.record_elements(ns, key, &[]);
    }

    /// Drops up to `limit` expired keys; returns how many went.
    pub fn reap_expired(&mut self, limit: usize) -> usize {
        let now = Self::now_ms();
        let mut n = 0;
        while n < limit {
            let Some(first) = self.expiring.first() else {
                break;
            };
            if first.0 > now {
                break;
            }
            let Some((_, ns, key)) = self.expiring.pop_first() else {
                break;
            };
            if self.remove(&ns, &key).is_some() {
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }
        if n > 0 {
            self.seq += 1;
        }
        n
    }

    /// Up to `count` live keys of `ns` at or after position `from` in scan
    /// order (a 56-bit hash of the key, so the order survives inserts and
    /// deletes), filtered by `pattern` (a glob) and `kind` (a Redis type
    /// name). Costs a pass over the shard's keys.
    pub fn scan(&self, ns: &Bytes, from: u64, count: usize, pattern: Option<&[u8]>, kind: Option<&str>) -> ScanPage {
        let Some(space) = self.spaces.get(ns) else {
            return ScanPage::default();
        };
        let now = Self::now_ms();
        let count = count.max(1);
        let mut found: Vec<(u64, &Bytes, &Entry)> = space
            .iter()
            .map(|(k, e)| (scan_position(k), k, e))
            .filter(|(h, _, e)| *h >= from && !e.is_expired(now))
            .collect();
        let mut next = None;
        if found.len() > count {
            found.select_nth_unstable_by_key(count - 1, |x| x.0);
            let limit = found[count - 1].0;
            // Keys at one position travel together, so a page never splits them.
            if found[count..].iter().any(|x| x.0 > limit) {
                next = Some(limit + 1);
            }
            found.retain(|x| x.0 <= limit);
        }
        let keys = found
            .into_iter()
            .filter(|(_, k, _)| pattern.is_none_or(|p| glob::matches(p, k)))
            .filter(|(_, _, e)| kind.is_none_or(|t| e.value.kind().is_some_and(|x| x.redis_name() == t)))
            .map(|(_, k, _)| k.clone())
            .collect();
        ScanPage { keys, next }
    }

    /// Number of keys in `ns`, in O(1). Like Redis's DBSIZE it counts keys
    /// that have expired but are not reclaimed yet (the reaper runs every 100 ms).
    pub fn len(&self, ns: &Bytes) -> usize {
        self.spaces.get(ns).map_or(0, |s| s.len())
    }

    /// Approximate bytes of keys and values held (a pass over the shard).
    pub fn approx_bytes(&self) -> u64 {
        let mut total = 0usize;
        for space in self.spaces.values() {
            for (k, e) in space {
                total += k.len() + 64;
                total += match &e.value {
                    Value::Tombstone => 0,
                    Value::Register(b) => b.len(),
                    Value::Counter(c) => c.slots().count() * 24,
                    Value::Set(s) => s.iter().map(|m| m.len() + 40).sum(),
                    Value::Map(m) => {
                        m.iter().map(|(f, r)| f.len() + r.value.as_ref().map_or(0, |v| v.len()) + 48).sum()
                    }
                    Value::Max(_) => 8,
                };
            }
        }
        total as u64
    }

    pub fn is_empty(&self, ns: &Bytes) -> bool {
        self.len(ns) == 0
    }
}

fn as_set(v: &Value) -> Result<&squall_lattice::AwSet<Bytes>, OpError> {
    match v {
        Value::Set(s) => Ok(s),
        _ => Err(OpError::WrongType),
    }
}

fn as_map(v: &Value) -> Result<&squall_lattice::LMap<Bytes, Lww<Option<Bytes>>>, OpError> {
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(OpError::WrongType),
    }
}
