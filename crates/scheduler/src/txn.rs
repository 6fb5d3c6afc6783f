//! An invocation's transaction over the store.
//!
//! The first time an invocation touches a key, the key's whole entry is read
//! from the store and copied into a private overlay shard; every operation
//! then runs on the overlay, with the store's own semantics, so the guest
//! sees its own writes. Writes are also recorded, coalesced per key (per
//! field, per member), and replayed by the commit. Keys whose state the guest
//! read (`get`, `counter`, `set-members`, `map-get`, `map-entries`) are
//! checked at commit: if one changed, the commit is refused and the
//! invocation runs again, so the answers it gave came from one consistent
//! snapshot. Writes never conflict: the values they return (`increment`'s
//! count, `delete`'s "existed") are this invocation's view.
//!
//! A callee runs over a fork: a copy of the overlay's entries (what the
//! caller reads at that moment, its writes included) with no writes of its
//! own. When the callee succeeds, the caller joins it: the callee's writes
//! are applied after the caller's (to the overlay and to the coalesced
//! writes: a put or delete replaces what the caller wrote to the key,
//! increments add, members and fields are set again), and its reads join
//! the checks. So a whole call tree commits as the root's one batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use squall_runtime::{Answer, BoxFuture, Call, StoreError, Txn};
use squall_store::lattice::{Entry, Stamp, Timestamp};
use squall_store::{Check, Handle, Keyspace, Op, OpError, OpResult, Reply, SetExpiry, Write};

/// Most bytes one invocation may write.
const MAX_WRITE_BYTES: usize = 64 * 1024 * 1024;
/// Bytes a touched key costs beyond its key and value (map and set
/// entries, the overlay's slot): an estimate on the generous side.
const KEY_OVERHEAD: usize = 256;
/// Most keys one `scan` call returns.
const MAX_SCAN: u32 = 10_000;

/// The writes to one key, coalesced: one write per key, field and member, so
/// that a commit can stamp them all with one time.
#[derive(Default, Clone)]
struct KeyWrites {
    /// `Some(Some(v))`: put; `Some(None)`: delete. Applied first.
    replace: Option<Option<Bytes>>,
    incr: i64,
    members: BTreeMap<Bytes, bool>,
    fields: BTreeMap<Bytes, Option<Bytes>>,
}

impl KeyWrites {
    /// These writes followed by `later`'s (which the overlay has accepted).
    fn then(&mut self, later: KeyWrites) {
        if later.replace.is_some() {
            *self = later;
            return;
        }
        // No overflow: the overlay's counter took both.
        self.incr = self.incr.saturating_add(later.incr);
        self.members.extend(later.members);
        self.fields.extend(later.fields);
    }

    /// The store operations that make these writes, in order.
    fn ops(self) -> Vec<Op> {
        let mut ops = Vec::new();
        match self.replace {
            Some(Some(value)) => ops.push(Op::Set { value, expiry: SetExpiry::None, get: false }),
            Some(None) => ops.push(Op::Del),
            None => {}
        }
        if self.incr != 0 {
            ops.push(Op::IncrBy(self.incr));
        }
        let (adds, removes): (Vec<_>, Vec<_>) = self.members.into_iter().partition(|(_, add)| *add);
        if !adds.is_empty() {
            ops.push(Op::SAdd(adds.into_iter().map(|(m, _)| m).collect()));
        }
        if !removes.is_empty() {
            ops.push(Op::SRem(removes.into_iter().map(|(m, _)| m).collect()));
        }
        let (puts, dels): (Vec<_>, Vec<_>) = self.fields.into_iter().partition(|(_, v)| v.is_some());
        if !puts.is_empty() {
            ops.push(Op::HSet(puts.into_iter().filter_map(|(f, v)| v.map(|v| (f, v))).collect()));
        }
        if !dels.is_empty() {
            ops.push(Op::HDel(dels.into_iter().map(|(f, _)| f).collect()));
        }
        ops
    }
}

pub struct StoreTxn {
    store: Handle,
    ns: Bytes,
    /// The keys this invocation touched, with its writes applied: the
    /// store's own semantics, kept to itself.
    overlay: Keyspace,
    /// Keys the overlay holds the truth for, with what the store answered when first read.
    seen: HashMap<Bytes, Option<OpResult>>,
    /// About the bytes of the entries `seen` holds (a copy of each beside the overlay's).
    seen_bytes: usize,
    validate: HashSet<Bytes>,
    /// Reads of joined callees that this transaction's own reads of the
    /// same keys do not cover (the callee read the key from the store itself).
    extra_checks: Vec<Check>,
    writes: HashMap<Bytes, KeyWrites>,
    order: Vec<Bytes>,
    write_bytes: usize,
    /// The shard of the first key touched: where the next invocation should run.
    pub first_shard: Option<usize>,
    /// A replay's time: reads see the store as it was then (the window
    /// log), and the writes are only reported.
    at: Option<Timestamp>,
}

fn store_error(e: OpError) -> StoreError {
    match e {
        OpError::WrongType | OpError::NotHll => StoreError::WrongType,
        OpError::NotInteger
        | OpError::ScoreNaN
        | OpError::Overflow
        | OpError::NotFloat
        | OpError::NotFinite
        | OpError::HashNotInteger
        | OpError::HashNotFloat => StoreError::NotInteger,
        OpError::TooLong | OpError::NoSuchKey | OpError::OutOfRange | OpError::InvalidGetExExpiry | OpError::BadHll => {
            StoreError::Unavailable(e.message())
        }
        OpError::DiskFull | OpError::DiskFailed => StoreError::Unavailable(e.message()),
    }
}

fn unavailable(e: squall_store::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn bytes_list(r: Reply) -> Vec<Vec<u8>> {
    match r {
        Reply::List(l) => l.into_iter().map(|b| b.to_vec()).collect(),
        _ => Vec::new(),
    }
}

impl StoreTxn {
    pub fn new(store: Handle, ns: Bytes) -> StoreTxn {
        let overlay = Keyspace::new(store.node_id());
        StoreTxn {
            store,
            ns,
            overlay,
            seen: HashMap::new(),
            seen_bytes: 0,
            validate: HashSet::new(),
            extra_checks: Vec::new(),
            writes: HashMap::new(),
            order: Vec::new(),
            write_bytes: 0,
            first_shard: None,
            at: None,
        }
    }

    /// A transaction that reads the store as it was at `at`: a replay's,
    /// whose writes are reported, never committed.
    pub fn at(store: Handle, ns: Bytes, at: Timestamp) -> StoreTxn {
        StoreTxn { at: Some(at), ..StoreTxn::new(store, ns) }
    }

    /// The physical time reads go by (a replay's time, else now).
    fn now(&self) -> u64 {
        self.at.map_or_else(|| self.store.now_ms(), Timestamp::wall_ms)
    }

    /// Makes the overlay authoritative for `key`, reading it from the store
    /// unless `blind` (the next operation replaces whatever is there).
    async fn touch(&mut self, key: &Bytes, blind: bool) -> Result<(), StoreError> {
        if self.seen.contains_key(key) {
            return Ok(());
        }
        if self.first_shard.is_none() {
            self.first_shard = Some(self.store.shard_of(key));
        }
        if blind {
            self.seen.insert(key.clone(), None);
            return Ok(());
        }
        let r = match self.at {
            Some(at) => match self.store.read_at(&self.ns, key.clone(), at).await.map_err(unavailable)? {
                Some(e) => Ok(Reply::Entry(Box::new(e))),
                None => Ok(Reply::Nil),
            },
            None => self.store.exec(&self.ns, key.clone(), Op::Snapshot).await.map_err(unavailable)?,
        };
        if let Ok(Reply::Entry(e)) = &r {
            // What the overlay's copy takes is about what `seen`'s takes.
            let before = self.overlay.bytes();
            self.overlay.put(&self.ns, key, Entry::clone(e));
            self.seen_bytes += self.overlay.bytes().saturating_sub(before) as usize;
        }
        self.seen.insert(key.clone(), Some(r));
        Ok(())
    }

    fn local(&mut self, key: &Bytes, op: Op) -> OpResult {
        // The overlay's stamps are placeholders (the commit stamps the
        // writes for real); the largest one keeps each write on top of what
        // was read.
        let stamp = Stamp::new(Timestamp::MAX, self.store.node_id());
        self.overlay.apply(&self.ns, key, op, stamp, self.now())
    }

    fn record(&mut self, key: &Bytes, size: usize) -> Result<&mut KeyWrites, StoreError> {
        self.write_bytes += size + key.len();
        if self.write_bytes > MAX_WRITE_BYTES {
            return Err(StoreError::TooLarge(format!("an invocation may write at most {} MiB", MAX_WRITE_BYTES >> 20)));
        }
        if !self.writes.contains_key(key) {
            self.order.push(key.clone());
        }
        Ok(self.writes.entry(key.clone()).or_default())
    }

    /// A read: validated at commit.
    async fn read(&mut self, key: Vec<u8>, op: Op) -> Result<Reply, StoreError> {
        let key = Bytes::from(key);
        self.touch(&key, false).await?;
        self.validate.insert(key.clone());
        self.local(&key, op).map_err(store_error)
    }

    async fn run(&mut self, call: Call) -> Result<Answer, StoreError> {
        Ok(match call {
            Call::Get(k) => match self.read(k, Op::Get).await? {
                Reply::Bytes(b) => Answer::Value(Some(b.to_vec())),
                _ => Answer::Value(None),
            },
            Call::Counter(k) => match self.read(k, Op::Get).await? {
                Reply::Bytes(b) => {
                    Answer::Int(std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()).ok_or(StoreError::WrongType)?)
                }
                _ => Answer::Int(0),
            },
            Call::SetMembers(k) => Answer::List(bytes_list(self.read(k, Op::SMembers).await?)),
            Call::MapGet(k, f) => match self.read(k, Op::HGet(f.into())).await? {
                Reply::Bytes(b) => Answer::Value(Some(b.to_vec())),
                _ => Answer::Value(None),
            },
            Call::MapEntries(k) => {
                let flat = bytes_list(self.read(k, Op::HGetAll).await?);
                Answer::Pairs(flat.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect())
            }
            Call::Put(k, v) => {
                let (key, value) = (Bytes::from(k), Bytes::from(v));
                self.touch(&key, true).await?;
                let w = self.record(&key, value.len())?;
                *w = KeyWrites { replace: Some(Some(value.clone())), ..KeyWrites::default() };
                self.local(&key, Op::Set { value, expiry: SetExpiry::None, get: false }).map_err(store_error)?;
                Answer::Unit
            }
            Call::Delete(k) => {
                let key = Bytes::from(k);
                self.touch(&key, false).await?;
                let existed = matches!(self.local(&key, Op::Del).map_err(store_error)?, Reply::Int(n) if n > 0);
                *self.record(&key, 0)? = KeyWrites { replace: Some(None), ..KeyWrites::default() };
                Answer::Bool(existed)
            }
            Call::Increment(k, by) => {
                let key = Bytes::from(k);
                self.touch(&key, false).await?;
                let n = match self.local(&key, Op::IncrBy(by)).map_err(store_error)? {
                    Reply::Int(n) => n,
                    _ => return Err(StoreError::NotInteger),
                };
                let w = self.record(&key, 8)?;
                w.incr = w.incr.checked_add(by).ok_or(StoreError::NotInteger)?;
                Answer::Int(n)
            }
            Call::SetAdd(k, ms) => Answer::Count(self.members(k, ms, true).await?),
            Call::SetRemove(k, ms) => Answer::Count(self.members(k, ms, false).await?),
            Call::MapPut(k, f, v) => {
                let key = Bytes::from(k);
                self.touch(&key, false).await?;
                let (f, v) = (Bytes::from(f), Bytes::from(v));
                self.local(&key, Op::HSet(vec![(f.clone(), v.clone())])).map_err(store_error)?;
                let size = f.len() + v.len();
                self.record(&key, size)?.fields.insert(f, Some(v));
                Answer::Unit
            }
            Call::MapRemove(k, f) => {
                let key = Bytes::from(k);
                self.touch(&key, false).await?;
                let f = Bytes::from(f);
                let existed =
                    matches!(self.local(&key, Op::HDel(vec![f.clone()])).map_err(store_error)?, Reply::Int(n) if n > 0);
                let size = f.len();
                self.record(&key, size)?.fields.insert(f, None);
                Answer::Bool(existed)
            }
            Call::Scan(prefix, limit) => Answer::List(self.scan(prefix, limit.min(MAX_SCAN)).await?),
        })
    }

    /// Adds (or removes) set members; the count of those that changed.
    async fn members(&mut self, k: Vec<u8>, ms: Vec<Vec<u8>>, add: bool) -> Result<u32, StoreError> {
        let key = Bytes::from(k);
        self.touch(&key, false).await?;
        let ms: Vec<Bytes> = ms.into_iter().map(Bytes::from).collect();
        let op = if add { Op::SAdd(ms.clone()) } else { Op::SRem(ms.clone()) };
        let changed = match self.local(&key, op).map_err(store_error)? {
            Reply::Int(n) => n as u32,
            _ => 0,
        };
        let size = ms.iter().map(Bytes::len).sum();
        let w = self.record(&key, size)?;
        for m in ms {
            w.members.insert(m, add);
        }
        Ok(changed)
    }

    /// Keys with `prefix`: the store's, as this invocation changed them.
    async fn scan(&mut self, prefix: Vec<u8>, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let limit = limit as usize;
        let pattern = squall_store::prefix_pattern(&prefix);
        let mut out: Vec<Vec<u8>> = Vec::new();
        // Keys this invocation touched: the overlay knows whether they exist.
        let mut touched: Vec<&Bytes> = self.seen.keys().filter(|k| k.starts_with(&prefix)).collect();
        touched.sort();
        let now = self.now();
        for k in touched {
            if out.len() < limit && matches!(self.overlay.read(&self.ns, k, &Op::Exists, now), Ok(Reply::Int(1))) {
                out.push(k.to_vec());
            }
        }
        let mut cursor = 0;
        while out.len() < limit {
            let page = match self.at {
                Some(at) => self.store.scan_at(&self.ns, cursor, 512, Some(pattern.clone()), at).await,
                None => self.store.scan(&self.ns, cursor, 512, Some(pattern.clone()), None).await,
            };
            let (next, keys) = page.map_err(unavailable)?;
            for k in keys {
                if out.len() < limit && !self.seen.contains_key(&k) {
                    out.push(k.to_vec());
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(out)
    }

    /// What to check and what to write when the invocation succeeded.
    pub fn into_commit(mut self) -> (Vec<Check>, Vec<Write>) {
        let mut checks = std::mem::take(&mut self.extra_checks);
        checks.reserve(self.validate.len());
        for key in self.validate {
            if let Some(Some(saw)) = self.seen.remove(&key) {
                checks.push(Check { ns: self.ns.clone(), key, op: Op::Snapshot, saw });
            }
        }
        let mut writes = Vec::new();
        for key in self.order {
            let Some(w) = self.writes.remove(&key) else { continue };
            for op in w.ops() {
                writes.push(Write { ns: self.ns.clone(), key: key.clone(), op });
            }
        }
        (checks, writes)
    }

    /// A transaction that starts from what this one reads now.
    pub fn fork(&self) -> StoreTxn {
        let mut overlay = Keyspace::new(self.store.node_id());
        let now = self.now();
        for key in self.seen.keys() {
            if let Some(entry) = self.overlay.snapshot(&self.ns, key, now) {
                overlay.put(&self.ns, key, entry);
            }
        }
        StoreTxn {
            store: self.store.clone(),
            ns: self.ns.clone(),
            overlay,
            seen: self.seen.clone(),
            seen_bytes: self.seen_bytes,
            validate: HashSet::new(),
            extra_checks: Vec::new(),
            writes: HashMap::new(),
            order: Vec::new(),
            write_bytes: 0,
            first_shard: self.first_shard,
            at: self.at,
        }
    }

    /// Takes in a successful callee's reads and writes (it ran over a fork
    /// of this transaction), after this transaction's own; or nothing, if
    /// they do not apply after them (the callee incremented a key this
    /// transaction has made a set since the fork, say) or would take the
    /// write budget past its limit.
    pub fn join(&mut self, mut callee: StoreTxn) -> Result<(), String> {
        let now = self.now();
        if self.write_bytes + callee.write_bytes > MAX_WRITE_BYTES {
            return Err(format!("a request may write at most {} MiB", MAX_WRITE_BYTES >> 20));
        }
        // First on a scratch copy of the keys both touched: nothing changes
        // here unless all of the callee's writes apply.
        let mut scratch: Option<Keyspace> = None;
        let stamp = Stamp::new(Timestamp::MAX, self.store.node_id());
        for (key, w) in &callee.writes {
            if !self.seen.contains_key(key) {
                continue;
            }
            let scratch = scratch.get_or_insert_with(|| Keyspace::new(self.store.node_id()));
            if let Some(entry) = self.overlay.snapshot(&self.ns, key, now) {
                scratch.put(&self.ns, key, entry);
            }
            for op in w.clone().ops() {
                scratch.apply(&self.ns, key, op, stamp, now).map_err(|e| {
                    format!(
                        "its writes to {:?} do not apply after the caller's: {}",
                        String::from_utf8_lossy(key),
                        e.message()
                    )
                })?;
            }
        }
        self.extra_checks.append(&mut callee.extra_checks);
        for (key, saw) in callee.seen {
            let validated = callee.validate.contains(&key);
            match self.seen.get(&key) {
                // Both read it: the same answer needs one check, another a second one.
                Some(mine) => {
                    if validated && let Some(theirs) = saw {
                        if mine.as_ref() == Some(&theirs) {
                            self.validate.insert(key.clone());
                        } else {
                            self.extra_checks.push(Check {
                                ns: self.ns.clone(),
                                key: key.clone(),
                                op: Op::Snapshot,
                                saw: theirs,
                            });
                        }
                    }
                    // Its writes go on top of this transaction's view.
                    if let Some(w) = callee.writes.get(&key) {
                        for op in w.clone().ops() {
                            let _ = self.local(&key, op);
                        }
                    }
                }
                // Only the callee knows the key: its view (what it read, as
                // it wrote it) is this transaction's now.
                None => {
                    if let Some(entry) = callee.overlay.snapshot(&self.ns, &key, now) {
                        let before = self.overlay.bytes();
                        self.overlay.put(&self.ns, &key, entry);
                        if saw.is_some() {
                            self.seen_bytes += self.overlay.bytes().saturating_sub(before) as usize;
                        }
                    }
                    if validated {
                        self.validate.insert(key.clone());
                    }
                    self.seen.insert(key, saw);
                }
            }
        }
        self.write_bytes += callee.write_bytes;
        for key in callee.order {
            let Some(w) = callee.writes.remove(&key) else { continue };
            match self.writes.get_mut(&key) {
                Some(mine) => mine.then(w),
                None => {
                    self.order.push(key.clone());
                    self.writes.insert(key, w);
                }
            }
        }
        if self.first_shard.is_none() {
            self.first_shard = callee.first_shard;
        }
        Ok(())
    }
}

impl Txn for StoreTxn {
    fn call(&mut self, call: Call) -> BoxFuture<'_, Result<Answer, StoreError>> {
        Box::pin(self.run(call))
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn fork(&self) -> Box<dyn Txn> {
        Box::new(StoreTxn::fork(self))
    }

    fn held(&self) -> usize {
        let keys = self.seen.len() + self.extra_checks.len();
        // The overlay holds a copy of each value read or written, `seen`
        // another of each read, the write set another of each write
        // (shared with the commit's operations).
        self.overlay.bytes() as usize + self.seen_bytes + self.write_bytes + keys * KEY_OVERHEAD
    }

    fn join(&mut self, callee: Box<dyn Txn>) -> Result<(), String> {
        // A callee's transaction is always a fork of its caller's.
        match callee.into_any().downcast::<StoreTxn>() {
            Ok(callee) => StoreTxn::join(self, *callee),
            Err(_) => Err("not a transaction of this store".into()),
        }
    }
}
