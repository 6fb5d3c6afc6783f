//! One shard: the single-threaded owner of the keys that hash to it. It
//! answers [`Message`]s: it stamps writes with its own clock, applies them
//! to its [`Keyspace`], hands the changes to the disk writer, holds the keys
//! of commits in progress, and parks requests for held keys until they are
//! let go: each key a parked request names has a line, first come first
//! served, so a request never overtakes an earlier one on a key they share
//! and a commit waiting for readers is not starved by later ones. Private
//! to the store: the protocol is the way in.

use crate::disk::{Chunk, DiskState, Records, WriterMsg};
use crate::events::{self, KeyEvent, KeyEvents};
use crate::keyspace::{Keyspace, Undo};
use crate::op::{Op, OpError, OpResult};
use crate::protocol::{Answer, Check, Message, Request, Response, TxnId, Vote, Write};
use crate::window::Window;
use bytes::Bytes;
use squall_lattice::{Hlc, Stamp, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use tokio::sync::oneshot;

/// Counters a shard publishes for `/metrics`; written by the shard only.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub keys: AtomicU64,
    pub bytes: AtomicU64,
    pub expired: AtomicU64,
    /// The window log: changes held, their bytes, and the oldest time it reaches.
    pub window_changes: AtomicU64,
    pub window_bytes: AtomicU64,
    pub window_oldest: AtomicU64,
    /// Requests waiting for keys a commit holds.
    pub parked: AtomicU64,
}

type Reply = oneshot::Sender<Answer>;
type LockKey = (Bytes, Bytes);

/// Who holds a key: one writing commit, or any number of reading ones.
#[derive(Default)]
struct Lock {
    writer: Option<TxnId>,
    readers: u32,
}

/// A request waiting for held keys, in line on each key it names.
struct Parked {
    msg: Message,
    reply: Reply,
    keys: Vec<LockKey>,
}

/// A commit's part, prepared here and waiting for its second phase.
struct Prepared {
    held: Vec<(LockKey, bool)>,
    ops: Vec<Write>,
    /// The stamp this shard proposed: the commit's is no earlier.
    proposal: Timestamp,
    origin: Option<Bytes>,
}

pub(crate) struct Shard {
    pub id: usize,
    keys: Keyspace,
    hlc: Hlc,
    pending: Records,
    window: Window,
    /// The undo record of the write being applied.
    scratch: Records,
    /// The newest change time among the undo records in `pending`.
    pending_newest: Timestamp,
    /// How many of `pending`'s bytes are undo records.
    pending_undo: u64,
    /// Reads of the past waiting for commits that may stamp at or before
    /// their time, or for the window's index to be built.
    past: Vec<(Message, Reply)>,
    /// Wakes the task that builds the window's index in steps.
    indexing: Arc<tokio::sync::Notify>,
    /// Counts the shard's writes; the writer reports which are durable.
    seq: u64,
    /// Operations answered, published to `stats` now and then.
    reads: u64,
    writes: u64,
    pub stats: Arc<ShardStats>,
    disk: Arc<DiskState>,
    writer: SyncSender<WriterMsg>,
    locks: HashMap<LockKey, Lock, foldhash::fast::RandomState>,
    prepared: HashMap<TxnId, Prepared, foldhash::fast::RandomState>,
    parked: HashMap<u64, Parked, foldhash::fast::RandomState>,
    /// For each key parked requests name, their numbers in arrival order.
    lines: HashMap<LockKey, VecDeque<u64>, foldhash::fast::RandomState>,
    next_parked: u64,
    /// Where writes say what they did, while someone listens.
    events: Arc<KeyEvents>,
}

/// How a request uses a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Read,
    Write,
}

impl Shard {
    pub fn new(
        id: usize,
        keys: Keyspace,
        window: Window,
        hlc: Hlc,
        disk: Arc<DiskState>,
        writer: SyncSender<WriterMsg>,
        events: Arc<KeyEvents>,
    ) -> Shard {
        let shard = Shard {
            id,
            keys,
            hlc,
            pending: Records::default(),
            window,
            scratch: Records::default(),
            pending_newest: Timestamp::ZERO,
            pending_undo: 0,
            past: Vec::new(),
            indexing: Arc::new(tokio::sync::Notify::new()),
            seq: 0,
            reads: 0,
            writes: 0,
            stats: Arc::new(ShardStats::default()),
            disk,
            writer,
            locks: HashMap::default(),
            prepared: HashMap::default(),
            parked: HashMap::default(),
            lines: HashMap::default(),
            next_parked: 0,
            events,
        };
        shard.publish_stats();
        shard
    }

    fn now_ms(&self) -> u64 {
        self.hlc.physical_ms()
    }

    fn answer(&self, response: Response, stamp: Timestamp) -> Answer {
        Answer { response, stamp, seq: self.seq, shard: self.id }
    }

    /// Handles a message, answering on `reply` now or once the keys it
    /// needs are let go.
    pub fn handle(&mut self, msg: Message, reply: Reply) {
        match self.try_handle(msg) {
            Ok(a) => {
                let _ = reply.send(a);
            }
            Err(msg) => self.park(msg, reply),
        }
    }

    /// Puts a request that [`Shard::try_handle`] gave back in line on
    /// every key it names; a flush goes to the writer, which answers it
    /// once everything before it is on disk.
    pub fn park(&mut self, msg: Message, reply: Reply) {
        match msg.request {
            Request::Flush => {
                self.send_pending(None);
                let _ = self.writer.send(WriterMsg::Flush(reply, self.id));
                return;
            }
            Request::ReadAt { .. } | Request::ScanAt { .. } | Request::Changes { .. } => {
                self.past.push((msg, reply));
                return;
            }
            _ => {}
        }
        let id = self.next_parked;
        self.next_parked += 1;
        let keys = keys_of(&msg.request);
        for key in &keys {
            self.lines.entry(key.clone()).or_default().push_back(id);
        }
        self.parked.insert(id, Parked { msg, reply, keys });
        self.stats.parked.store(self.parked.len() as u64, Ordering::Relaxed);
    }

    /// Answers a message now, or gives it back when keys it needs are held
    /// by a commit in progress or have earlier requests waiting for them
    /// (the caller parks it). A flush always comes back: the writer
    /// answers it.
    // The message comes back whole to wait in line; boxing it would cost an
    // allocation on every request.
    #[allow(clippy::result_large_err)]
    pub fn try_handle(&mut self, msg: Message) -> Result<Answer, Message> {
        self.hlc.observe(msg.after);
        if matches!(msg.request, Request::Flush) {
            return Err(msg);
        }
        if let Request::ReadAt { at, .. } | Request::ScanAt { at, .. } | Request::Changes { to: at, .. } = msg.request {
            // Writes from now on stamp after `at`; a commit prepared here
            // may still stamp at or before it, and the past waits for it.
            self.hlc.observe(at);
            if self.prepared.values().any(|p| !p.ops.is_empty() && p.proposal <= at) {
                return Err(msg);
            }
            let now = self.now_ms();
            let oldest = self.window.oldest(now);
            let since = since(&msg.request).max(oldest);
            if at >= oldest {
                self.window.reading(now);
                if !self.window.catch_up(&self.keys, crate::window::INDEX_STEP, since) {
                    self.indexing.notify_one();
                    return Err(msg);
                }
            }
        }
        if !(self.locks.is_empty() && self.lines.is_empty()) && self.blocked(&msg.request, true) {
            return Err(msg);
        }
        Ok(self.run_now(msg))
    }

    fn run_now(&mut self, msg: Message) -> Answer {
        match msg.request {
            Request::Op { ns, key, op } => {
                let (r, stamp) = self.op(&ns, &key, op);
                self.answer(Response::Op(r), stamp)
            }
            Request::Ops { ns, ops } => {
                std::hint::black_box(self.keys.touch(&ns, ops.iter().map(|(k, op)| (k.as_ref(), op))));
                // One clock read for the batch: it is handled in microseconds.
                let now = self.now_ms();
                let out: Vec<(OpResult, Timestamp)> =
                    ops.into_iter().map(|(key, op)| self.op_at(&ns, &key, op, now)).collect();
                let stamp = out.iter().map(|(_, t)| *t).max().unwrap_or(self.hlc.last());
                self.answer(Response::Ops(out), stamp)
            }
            Request::Batch { checks, ops, origin } => self.batch(checks, ops, origin),
            Request::Prepare { txn, checks, ops, origin } => self.prepare(txn, checks, ops, origin),
            Request::Commit { txn, stamp, parts } => self.commit(txn, stamp, parts),
            Request::Abort { txn } => self.abort(txn),
            Request::Scan { ns, from, count, pattern, kind } => {
                let page = self.keys.scan(&ns, from, count, pattern.as_deref(), kind.as_deref(), self.now_ms());
                self.answer(Response::Scan(page), self.hlc.last())
            }
            Request::Len { ns } => self.answer(Response::Len(self.keys.len(&ns) as u64), self.hlc.last()),
            Request::ReadAt { ns, key, at } => {
                let oldest = self.window.oldest(self.now_ms());
                if at < oldest {
                    return self.answer(Response::OutOfWindow(oldest), self.hlc.last());
                }
                match self.window.state_at(&self.keys, &ns, &key, at) {
                    Ok(state) => {
                        let reply = state.map_or(crate::op::Reply::Nil, |e| crate::op::Reply::Entry(Box::new(e)));
                        self.answer(Response::Op(Ok(reply)), self.hlc.last())
                    }
                    Err(since) => self.answer(Response::OutOfWindow(since), self.hlc.last()),
                }
            }
            Request::Changes { ns, from, to, prefix, limit } => {
                let oldest = self.window.oldest(self.now_ms());
                if from < oldest {
                    return self.answer(Response::OutOfWindow(oldest), self.hlc.last());
                }
                let prefix = prefix.unwrap_or_default();
                let (changes, complete) = self.window.changes(&self.keys, &ns, from, to, &prefix, limit);
                self.answer(Response::Changes { changes, complete }, self.hlc.last())
            }
            Request::ScanAt { ns, from, count, pattern, at } => {
                let oldest = self.window.oldest(self.now_ms());
                if at < oldest {
                    return self.answer(Response::OutOfWindow(oldest), self.hlc.last());
                }
                match self.window.scan_at(&self.keys, &ns, from, count, pattern.as_deref(), at) {
                    Ok(page) => self.answer(Response::Scan(page), self.hlc.last()),
                    Err(since) => self.answer(Response::OutOfWindow(since), self.hlc.last()),
                }
            }
            Request::Dump { cursor, budget } => {
                let mut records = Records::default();
                let next = self.keys.dump(&cursor, budget, &mut records);
                let records = Bytes::from(records.into_bytes());
                self.answer(Response::Dump { records, next }, self.hlc.last())
            }
            Request::Flush => unreachable!("try_handle gives a flush back, for the writer"),
        }
    }

    /// Whether the request needs a key a commit in progress holds against
    /// it, or (with `lines`) a key earlier requests wait for.
    fn blocked(&self, request: &Request, lines: bool) -> bool {
        let held = |ns: &Bytes, key: &Bytes, how: Use| {
            let key = (ns.clone(), key.clone());
            // A commit's own second phase never waits for its own keys.
            self.locks.get(&key).is_some_and(|l| match how {
                Use::Read => l.writer.is_some(),
                Use::Write => l.writer.is_some() || l.readers > 0,
            }) || (lines && self.lines.contains_key(&key))
        };
        let how = |op: &Op| if op.is_write() { Use::Write } else { Use::Read };
        match request {
            Request::Op { ns, key, op } => held(ns, key, how(op)),
            Request::Ops { ns, ops } => ops.iter().any(|(key, op)| held(ns, key, how(op))),
            Request::Batch { checks, ops, .. } | Request::Prepare { checks, ops, .. } => {
                checks.iter().any(|c| held(&c.ns, &c.key, Use::Read))
                    || ops.iter().any(|w| held(&w.ns, &w.key, how(&w.op)))
            }
            _ => false,
        }
    }

    fn refusal(&self) -> Option<OpError> {
        self.disk.refusal()
    }

    /// One operation on its own: its result and the stamp of its write (or
    /// the shard's time, for a read). The clock is read once.
    fn op(&mut self, ns: &Bytes, key: &[u8], op: Op) -> (OpResult, Timestamp) {
        let now = self.now_ms();
        self.op_at(ns, key, op, now)
    }

    /// [`Shard::op`] at physical time `now`.
    fn op_at(&mut self, ns: &Bytes, key: &[u8], op: Op, now: u64) -> (OpResult, Timestamp) {
        if !op.is_write() {
            self.reads += 1;
            return (self.keys.read(ns, key, &op, now), self.hlc.last());
        }
        self.writes += 1;
        if let Some(e) = self.refusal() {
            return (Err(e), self.hlc.last());
        }
        let stamp = self.hlc.now_at(now);
        (self.apply(ns, key, op, stamp, now, None), stamp)
    }

    /// Applies one write at `stamp`, counting it if it changed anything.
    fn apply(
        &mut self,
        ns: &Bytes,
        key: &[u8],
        op: Op,
        stamp: Timestamp,
        now: u64,
        origin: Option<&Bytes>,
    ) -> OpResult {
        let before = self.pending.len();
        let window = self.window.is_on();
        // A write that can make a key leaves it held (even at an expiry already past).
        let adds = op.may_add_key();
        let made = crate::disk::Made { time: stamp, origin: origin.map_or(&[][..], |o| o.as_ref()) };
        self.scratch.clear();
        let mut undo = window.then_some(Undo { out: &mut self.scratch, made });
        let at = Stamp::new(stamp, self.keys.node());
        // What it will say it did, if anyone listens (the op is the keyspace's once applied).
        let said = self.events.on().then(|| {
            let on = |gone| (events::of(&op, gone), events::after(&op, gone));
            [on(false), on(true)]
        });
        let r = self.keys.apply_with(ns, key, op, at, now, &mut self.pending, undo.as_mut());
        if self.pending.len() > before {
            self.seq += 1;
            if let Some(said) = said
                && r.is_ok()
            {
                let gone = !self.keys.holds(ns, key);
                let (first, then) = said[gone as usize];
                for (event, class) in first.into_iter().chain(then) {
                    let (ns, key) = (ns.clone(), Bytes::copy_from_slice(key));
                    self.events.emit(KeyEvent { ns, key, event, class, stamp, origin: origin.cloned() });
                }
            }
            if window {
                self.pending.append(&self.scratch);
                self.pending_undo += self.scratch.bytes().len() as u64;
                self.pending_newest = self.pending_newest.max(stamp);
                // A failed write may still have removed an expired key.
                let keys = &self.keys;
                self.window.push(stamp, self.scratch.bytes(), || (adds && r.is_ok()) || keys.holds(ns, key));
                // Past the retention, the reaper's rounds trim (ten times
                // a second); past the bytes, a write does.
                if self.window.over_cap() {
                    self.window.trim(now);
                }
            }
        }
        r
    }

    fn checks_hold(&self, checks: &[Check]) -> bool {
        let now = self.now_ms();
        checks.iter().all(|c| self.keys.read(&c.ns, &c.key, &c.op, now) == c.saw)
    }

    fn batch(&mut self, checks: Vec<Check>, ops: Vec<Write>, origin: Option<Bytes>) -> Answer {
        let writes = ops.iter().any(|w| w.op.is_write());
        if writes && let Some(e) = self.refusal() {
            return self.answer(Response::Refused(e), self.hlc.last());
        }
        if !self.checks_hold(&checks) {
            return self.answer(Response::Batch(None), self.hlc.last());
        }
        let stamp = if writes { self.hlc.now() } else { self.hlc.last() };
        let results = self.run(ops, stamp, origin.as_ref());
        self.answer(Response::Batch(Some(results)), stamp)
    }

    fn run(&mut self, ops: Vec<Write>, stamp: Timestamp, origin: Option<&Bytes>) -> Vec<OpResult> {
        let now = self.now_ms();
        let mut results = Vec::with_capacity(ops.len());
        for w in ops {
            results.push(if w.op.is_write() {
                self.writes += 1;
                self.apply(&w.ns, &w.key, w.op, stamp, now, origin)
            } else {
                self.reads += 1;
                self.keys.read(&w.ns, &w.key, &w.op, now)
            });
        }
        results
    }

    fn prepare(&mut self, txn: TxnId, checks: Vec<Check>, ops: Vec<Write>, origin: Option<Bytes>) -> Answer {
        let writes = ops.iter().any(|w| w.op.is_write());
        if writes && let Some(e) = self.refusal() {
            return self.answer(Response::Refused(e), self.hlc.last());
        }
        if !self.checks_hold(&checks) {
            return self.answer(Response::Vote(Vote::Conflict), self.hlc.last());
        }
        let mut held: Vec<(LockKey, bool)> = Vec::with_capacity(checks.len() + ops.len());
        for c in &checks {
            held.push(((c.ns.clone(), c.key.clone()), false));
        }
        for w in &ops {
            held.push(((w.ns.clone(), w.key.clone()), w.op.is_write()));
        }
        // One hold per key, the strongest use.
        held.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        held.dedup_by(|a, b| a.0 == b.0);
        for (key, write) in &held {
            let lock = self.locks.entry(key.clone()).or_default();
            if *write {
                lock.writer = Some(txn);
            } else {
                lock.readers += 1;
            }
        }
        let proposal = self.hlc.now();
        if writes {
            self.prepared.insert(txn, Prepared { held, ops, proposal, origin });
            return self.answer(Response::Vote(Vote::Yes { proposal, reads: None }), proposal);
        }
        // Read-only: answered now, under the hold the release lets go.
        let reads = self.run(ops, proposal, None);
        self.prepared.insert(txn, Prepared { held, ops: Vec::new(), proposal, origin: None });
        self.answer(Response::Vote(Vote::Yes { proposal, reads: Some(reads) }), proposal)
    }

    fn release(&mut self, held: Vec<(LockKey, bool)>) {
        let mut freed = Vec::with_capacity(held.len());
        for (key, write) in held {
            if let Some(lock) = self.locks.get_mut(&key) {
                if write {
                    lock.writer = None;
                } else {
                    lock.readers = lock.readers.saturating_sub(1);
                }
                if lock.writer.is_none() && lock.readers == 0 {
                    self.locks.remove(&key);
                }
            }
            freed.push(key);
        }
        self.wake(freed);
    }

    /// Runs the parked requests that have become free to go: first in every
    /// line they stand in and not held off by a lock. Each one that runs
    /// moves its lines on, so those keys are looked at again. Line numbers
    /// grow with arrival, so the earliest parked request is first in all
    /// its lines: the lines never wait on one another.
    fn wake(&mut self, mut keys: Vec<LockKey>) {
        while let Some(key) = keys.pop() {
            let Some(&id) = self.lines.get(&key).and_then(|l| l.front()) else { continue };
            let p = &self.parked[&id];
            let first = p.keys.iter().all(|k| self.lines.get(k).and_then(|l| l.front()) == Some(&id));
            if !first || self.blocked(&p.msg.request, false) {
                continue;
            }
            let Parked { msg, reply, keys: named } = self.parked.remove(&id).expect("parked request in line");
            for k in &named {
                if let Some(line) = self.lines.get_mut(k) {
                    line.pop_front();
                    if line.is_empty() {
                        self.lines.remove(k);
                    }
                }
            }
            keys.extend(named);
            let _ = reply.send(self.run_now(msg));
        }
        self.stats.parked.store(self.parked.len() as u64, Ordering::Relaxed);
    }

    fn commit(&mut self, txn: TxnId, stamp: Timestamp, parts: usize) -> Answer {
        let Some(part) = self.prepared.remove(&txn) else {
            // Not prepared here (the coordinator gave up on it): nothing to apply.
            return self.answer(Response::Aborted, self.hlc.last());
        };
        // Later writes here stamp after the commit.
        self.hlc.observe(stamp);
        let Prepared { held, ops, origin, .. } = part;
        let results = self.run(ops, stamp, origin.as_ref());
        // The parts of one commit reach the disk in one log entry.
        self.send_pending(Some((txn, parts)));
        self.release(held);
        self.retry_past();
        self.answer(Response::Committed(results), stamp)
    }

    /// What wakes the task that calls [`Shard::index_step`].
    pub fn indexing(&self) -> Arc<tokio::sync::Notify> {
        self.indexing.clone()
    }

    /// One bounded step of building the window's index; once it is
    /// complete, the reads of the past waiting for it run. Whether it is.
    pub fn index_step(&mut self) -> bool {
        let Some(since) = self.past.iter().map(|(msg, _)| since(&msg.request)).min() else {
            return true;
        };
        let now = self.now_ms();
        let since = since.max(self.window.oldest(now));
        // Building it is reading: the index is kept for as long.
        self.window.reading(now);
        let done = self.window.catch_up(&self.keys, crate::window::INDEX_STEP, since);
        if done {
            self.retry_past();
        }
        done
    }

    /// Runs the reads of the past that no prepared commit holds back now
    /// (each checks again what it waits for).
    fn retry_past(&mut self) {
        if self.past.is_empty() {
            return;
        }
        for (msg, reply) in std::mem::take(&mut self.past) {
            self.handle(msg, reply);
        }
    }

    fn abort(&mut self, txn: TxnId) -> Answer {
        if let Some(part) = self.prepared.remove(&txn) {
            self.release(part.held);
        } else {
            // Still waiting for its keys: it leaves its lines.
            let waiting = self.parked.iter().find_map(|(id, p)| match p.msg.request {
                Request::Prepare { txn: t, .. } if t == txn => Some(*id),
                _ => None,
            });
            if let Some(id) = waiting {
                let p = self.parked.remove(&id).expect("parked request");
                for k in &p.keys {
                    if let Some(line) = self.lines.get_mut(k) {
                        line.retain(|x| *x != id);
                        if line.is_empty() {
                            self.lines.remove(k);
                        }
                    }
                }
                self.wake(p.keys);
            }
        }
        self.retry_past();
        self.answer(Response::Aborted, self.hlc.last())
    }

    /// Drops up to `limit` expired keys; returns how many went.
    pub fn reap(&mut self, limit: usize) -> usize {
        let now = self.now_ms();
        let on = self.window.is_on();
        let time = if on { self.hlc.now_at(now) } else { self.hlc.last() };
        let (window, scratch, locks) = (&mut self.window, &mut self.scratch, &self.locks);
        let events = self.events.on().then_some(&self.events);
        let mut undos = Records::default();
        // A key a commit holds is the commit's to change first.
        let held = |ns: &Bytes, key: &[u8]| {
            !locks.is_empty() && locks.contains_key(&(ns.clone(), Bytes::copy_from_slice(key)))
        };
        let n = self.keys.reap(
            now,
            limit,
            &mut self.pending,
            |keys, ns, key| {
                if let Some(events) = events {
                    let (ns, key) = (ns.clone(), Bytes::copy_from_slice(key));
                    let event = "expired";
                    events.emit(KeyEvent { ns, key, event, class: events::Class::Expired, stamp: time, origin: None });
                }
                if on {
                    let made = crate::disk::Made { time, origin: &[] };
                    crate::window::undo_record(keys, ns, key, &Op::Del, made, now, scratch);
                    undos.append(scratch);
                    window.push(time, scratch.bytes(), || false);
                }
            },
            held,
        );
        if !undos.is_empty() {
            self.pending.append(&undos);
            self.pending_undo += undos.bytes().len() as u64;
            self.pending_newest = self.pending_newest.max(time);
        }
        self.window.trim(now);
        // Not while reads wait for the index: it is theirs.
        if self.past.is_empty() {
            self.window.idle(now);
        }
        if n > 0 {
            self.seq += 1;
            self.stats.expired.fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }

    /// Makes the counters visible to `/metrics` (kept in plain fields in
    /// between: an atomic add per operation is a visible cost).
    pub fn publish_stats(&self) {
        self.stats.reads.store(self.reads, Ordering::Relaxed);
        self.stats.writes.store(self.writes, Ordering::Relaxed);
        self.stats.keys.store(self.keys.keys(), Ordering::Relaxed);
        self.stats.bytes.store(self.keys.bytes(), Ordering::Relaxed);
        self.stats.window_changes.store(self.window.len() as u64, Ordering::Relaxed);
        self.stats.window_bytes.store(self.window.bytes() as u64, Ordering::Relaxed);
        self.stats.window_oldest.store(self.window.oldest(self.now_ms()).0, Ordering::Relaxed);
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Hands the records written so far to the writer; `batch` marks them
    /// as one part of a commit across shards.
    pub fn send_pending(&mut self, batch: Option<(TxnId, usize)>) {
        if self.pending.is_empty() && batch.is_none() {
            return;
        }
        // The next batch likely needs as much room: it starts with it
        // rather than growing to it.
        let room = self.pending.bytes().len().next_power_of_two().clamp(256, 64 * 1024);
        let records = std::mem::replace(&mut self.pending, Records::with_capacity(room));
        // Blocks when the writer is behind: backpressure from the disk.
        let newest = std::mem::replace(&mut self.pending_newest, Timestamp::ZERO);
        let undo = std::mem::take(&mut self.pending_undo);
        let chunk = Chunk { shard: self.id, records, upto: self.seq, batch, newest, undo };
        let _ = self.writer.send(WriterMsg::Chunk(chunk));
    }
}

/// The keys a request reads or writes, each once: its places in line.
fn keys_of(request: &Request) -> Vec<LockKey> {
    let mut keys: Vec<LockKey> = match request {
        Request::Op { ns, key, .. } => vec![(ns.clone(), key.clone())],
        Request::Ops { ns, ops } => ops.iter().map(|(k, _)| (ns.clone(), k.clone())).collect(),
        Request::Batch { checks, ops, .. } | Request::Prepare { checks, ops, .. } => checks
            .iter()
            .map(|c| (c.ns.clone(), c.key.clone()))
            .chain(ops.iter().map(|w| (w.ns.clone(), w.key.clone())))
            .collect(),
        _ => Vec::new(),
    };
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// How far back a read of the past needs the window's index: every change
/// stamped after this time.
fn since(request: &Request) -> Timestamp {
    match request {
        Request::ReadAt { at, .. } | Request::ScanAt { at, .. } => *at,
        Request::Changes { from, .. } => *from,
        _ => Timestamp::MAX,
    }
}
