//! The disk tier: how entries are laid out in fjall, how they come back on
//! start, and the threads that write them.
//!
//! Layout of the `data` keyspace: a key's header record holds its epoch,
//! expiry and, for small types, the whole value; sets and hashes also have one
//! record per element, so adding a member to a large set writes a few bytes,
//! not the set.
//!
//! ```text
//! [ns len: u8][ns][key len: u32 BE][key][0]         -> Header
//! [ns len: u8][ns][key len: u32 BE][key][1][element] -> set: Vec<Dot>, hash: Lww<Option<Bytes>>
//! ```
//!
//! Shards encode their records into a byte buffer and hand it to one writer
//! thread, in order. The writer appends everything that has arrived as ONE
//! entry of the `log` keyspace and commits it (one fjall batch: atomic, one
//! fsync in sync mode: group commit), so a write costs an append, not an
//! index insert, and the parts of a cross-shard batch always share an entry.
//! A checkpointer thread folds the log into `data` in the background (each
//! key once, however often it was written) and deletes what it folded; on
//! start the rest of the log is folded the same way before loading. Records
//! hold whole states, so folding is "last record wins" and safe to repeat.

use crate::Error;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};
use squall_lattice::{AwSet, Dot, Entry, LMap, Lww, Max, NodeId, PnCounter, Stamp, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// In async mode, how often what the OS buffers is fsynced.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
use tokio::sync::{oneshot, watch};

const HEADER: u8 = 0;
const ELEMENT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    epoch: Stamp,
    expiry: Option<Lww<Option<u64>>>,
    body: Body,
}

/// The same encoding as [`Header`], borrowing instead of cloning.
#[derive(Serialize)]
struct HeaderRef<'a> {
    epoch: Stamp,
    expiry: &'a Option<Lww<Option<u64>>>,
    body: BodyRef<'a>,
}

#[derive(Serialize)]
enum BodyRef<'a> {
    Register(&'a Bytes),
    Counter(&'a PnCounter),
    Set(&'a BTreeMap<NodeId, u64>),
    Map,
    Max(&'a Max<i64>),
}

#[derive(Serialize, Deserialize)]
enum Body {
    Register(Bytes),
    Counter(PnCounter),
    /// The set's context; its members are element records.
    Set(BTreeMap<NodeId, u64>),
    /// A hash's fields are element records.
    Map,
    Max(Max<i64>),
}

/// Disk records (puts and deletes), encoded back to back:
/// `[key len: u32 LE][key][1][value len: u32 LE][value]` or `[key len][key][0]`.
#[derive(Debug, Default)]
pub struct Records {
    buf: Vec<u8>,
    count: usize,
}

impl Records {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn key(&mut self, ns: &[u8], key: &[u8], tag: u8, element: &[u8]) {
        let len = 1 + ns.len() + 4 + key.len() + 1 + element.len();
        self.buf.reserve(len + 16);
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        self.buf.push(ns.len() as u8);
        self.buf.extend_from_slice(ns);
        self.buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(key);
        self.buf.push(tag);
        self.buf.extend_from_slice(element);
    }

    fn value<T: Serialize + ?Sized>(&mut self, v: Option<&T>) {
        self.count += 1;
        let Some(v) = v else {
            self.buf.push(0);
            return;
        };
        self.buf.push(1);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        // Serializing plain data into a Vec cannot fail.
        self.buf = postcard::to_extend(v, std::mem::take(&mut self.buf)).unwrap_or_default();
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// The header record of `entry` (a tombstone's is a delete).
    pub fn header(&mut self, ns: &[u8], key: &[u8], entry: &Entry) {
        let body = match &entry.value {
            Value::Register(b) => BodyRef::Register(b),
            Value::Counter(c) => BodyRef::Counter(c),
            Value::Set(s) => BodyRef::Set(s.context()),
            Value::Map(_) => BodyRef::Map,
            Value::Max(m) => BodyRef::Max(m),
            Value::Tombstone => {
                self.key(ns, key, HEADER, b"");
                return self.value::<Header>(None);
            }
        };
        self.key(ns, key, HEADER, b"");
        self.value(Some(&HeaderRef { epoch: entry.epoch, expiry: &entry.expiry, body }));
    }

    pub fn set_member(&mut self, ns: &[u8], key: &[u8], member: &[u8], dots: Option<&[Dot]>) {
        self.key(ns, key, ELEMENT, member);
        self.value(dots);
    }

    pub fn map_field(&mut self, ns: &[u8], key: &[u8], field: &[u8], reg: Option<&Lww<Option<Bytes>>>) {
        self.key(ns, key, ELEMENT, field);
        self.value(reg);
    }

    /// Deletes the record at a raw disk key.
    fn raw_delete(&mut self, disk_key: &[u8]) {
        self.buf.extend_from_slice(&(disk_key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(disk_key);
        self.value::<Header>(None);
    }

    /// Deletes every record of `entry`.
    pub fn delete_all(&mut self, ns: &[u8], key: &[u8], entry: &Entry) {
        self.key(ns, key, HEADER, b"");
        self.value::<Header>(None);
        self.delete_elements(ns, key, entry);
    }

    /// Deletes the element records of a set or hash (not its header).
    pub fn delete_elements(&mut self, ns: &[u8], key: &[u8], entry: &Entry) {
        match &entry.value {
            Value::Set(s) => s.iter().for_each(|m| self.set_member(ns, key, m, None)),
            Value::Map(m) => m.iter().for_each(|(f, _)| self.map_field(ns, key, f, None)),
            _ => {}
        }
    }
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    if buf.len() < n {
        return Err(Error::Corrupt("a log entry is cut short".into()));
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

/// Decodes a buffer of [`Records`]: (disk key, value or `None` for a delete).
/// One decoded record: a disk key and its value (`None`: a delete).
type Decoded<'a> = (&'a [u8], Option<&'a [u8]>);

fn decode(mut buf: &[u8]) -> Result<Vec<Decoded<'_>>, Error> {
    let corrupt = || Error::Corrupt("a log entry does not decode".into());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = u32::from_le_bytes(take(&mut buf, 4)?.try_into().map_err(|_| corrupt())?) as usize;
        let key = take(&mut buf, len)?;
        let value = match take(&mut buf, 1)?[0] {
            0 => None,
            1 => {
                let len = u32::from_le_bytes(take(&mut buf, 4)?.try_into().map_err(|_| corrupt())?) as usize;
                Some(take(&mut buf, len)?)
            }
            _ => return Err(corrupt()),
        };
        out.push((key, value));
    }
    Ok(out)
}

/// A disk key's parts.
#[derive(Debug, PartialEq, Eq)]
struct DiskKey<'a> {
    ns: &'a [u8],
    key: &'a [u8],
    tag: u8,
    element: &'a [u8],
}

fn split_key(k: &[u8]) -> Option<DiskKey<'_>> {
    let ns_len = *k.first()? as usize;
    let ns = k.get(1..1 + ns_len)?;
    let rest = &k[1 + ns_len..];
    let key_len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let key = rest.get(4..4 + key_len)?;
    let tag = *rest.get(4 + key_len)?;
    Some(DiskKey { ns, key, tag, element: &rest[5 + key_len..] })
}

/// An entry recovered from disk, ready for its shard.
pub struct Loaded {
    pub ns: Bytes,
    pub key: Bytes,
    pub entry: Entry,
}

enum Building {
    Done(Entry),
    Set {
        epoch: Stamp,
        expiry: Option<Lww<Option<u64>>>,
        context: BTreeMap<NodeId, u64>,
        members: BTreeMap<Bytes, Vec<Dot>>,
    },
    Map {
        epoch: Stamp,
        expiry: Option<Lww<Option<u64>>>,
        fields: LMap<Bytes, Lww<Option<Bytes>>>,
    },
}

impl Building {
    fn finish(self) -> Entry {
        match self {
            Building::Done(e) => e,
            Building::Set { epoch, expiry, context, members } => {
                Entry { epoch, value: Value::Set(AwSet::from_parts(members, context)), expiry }
            }
            Building::Map { epoch, expiry, fields } => Entry { epoch, value: Value::Map(fields), expiry },
        }
    }
}

/// Reads every entry back. Expired entries and orphan element records are
/// skipped, and the deletes that clean them up returned.
pub fn load(data: &Keyspace, now_ms: u64) -> Result<(Vec<Loaded>, Records), Error> {
    let mut out = Vec::new();
    let mut expired = Records::default();
    let mut current: Option<(Bytes, Bytes, Building)> = None;
    let finish = |cur: Option<(Bytes, Bytes, Building)>, out: &mut Vec<Loaded>, expired: &mut Records| {
        if let Some((ns, key, b)) = cur {
            let entry = b.finish();
            if entry.is_expired(now_ms) {
                expired.delete_all(&ns, &key, &entry);
            } else {
                out.push(Loaded { ns, key, entry });
            }
        }
    };
    for item in data.iter() {
        let (k, v) = item.into_inner()?;
        let corrupt = || Error::Corrupt(format!("undecodable record {:?}", String::from_utf8_lossy(&k)));
        let DiskKey { ns, key, tag, element } = split_key(&k).ok_or_else(corrupt)?;
        if tag == HEADER {
            finish(current.take(), &mut out, &mut expired);
            let h: Header = postcard::from_bytes(&v).map_err(|_| corrupt())?;
            let (epoch, expiry) = (h.epoch, h.expiry);
            let b = match h.body {
                Body::Register(b) => Building::Done(Entry { epoch, value: Value::Register(b), expiry }),
                Body::Counter(c) => Building::Done(Entry { epoch, value: Value::Counter(c), expiry }),
                Body::Max(m) => Building::Done(Entry { epoch, value: Value::Max(m), expiry }),
                Body::Set(context) => Building::Set { epoch, expiry, context, members: BTreeMap::new() },
                Body::Map => Building::Map { epoch, expiry, fields: LMap::default() },
            };
            current = Some((Bytes::copy_from_slice(ns), Bytes::copy_from_slice(key), b));
        } else {
            // Elements follow their header (the tag orders them after it).
            match &mut current {
                Some((cns, ckey, b)) if cns.as_ref() == ns && ckey.as_ref() == key => match b {
                    Building::Set { members, .. } => {
                        let dots: Vec<Dot> = postcard::from_bytes(&v).map_err(|_| corrupt())?;
                        members.insert(Bytes::copy_from_slice(element), dots);
                    }
                    Building::Map { fields, .. } => {
                        let reg: Lww<Option<Bytes>> = postcard::from_bytes(&v).map_err(|_| corrupt())?;
                        fields.merge_entry(Bytes::copy_from_slice(element), reg);
                    }
                    Building::Done(_) => orphan(&mut expired, &k),
                },
                _ => orphan(&mut expired, &k),
            }
        }
    }
    finish(current.take(), &mut out, &mut expired);
    Ok((out, expired))
}

/// An element record without a set or hash header before it: left by an
/// older version's bug, it is deleted rather than allowed to stop the node.
fn orphan(cleanup: &mut Records, disk_key: &[u8]) {
    tracing::warn!(key = %String::from_utf8_lossy(disk_key), "deleting an element record whose key is gone");
    cleanup.raw_delete(disk_key);
}

pub fn open(dir: &Path) -> Result<(Database, Keyspace, Keyspace), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::DataDir(dir.display().to_string(), e.to_string()))?;
    let db = Database::builder(dir).manual_journal_persist(true).open().map_err(|e| match e {
        fjall::Error::Locked => Error::Locked(dir.display().to_string()),
        e => Error::Disk(e),
    })?;
    let data = db.keyspace("data", KeyspaceCreateOptions::default)?;
    // Log entries live until the next checkpoint: compressing them costs CPU for nothing.
    let log = db.keyspace("log", || {
        KeyspaceCreateOptions::default()
            .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
            .index_block_compression_policy(fjall::config::CompressionPolicy::disabled())
    })?;
    Ok((db, data, log))
}

/// Folds log entries up to `upto` (all of them if `None`) into `data`, each
/// disk key once with its last record, and deletes them from the log.
/// Returns the number of the last entry folded.
pub fn checkpoint(db: &Database, data: &Keyspace, log: &Keyspace, upto: Option<u64>) -> Result<u64, Error> {
    let mut latest: HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState> = HashMap::default();
    let mut folded = Vec::new();
    let mut last = 0;
    let range = log.range(..=upto.unwrap_or(u64::MAX).to_be_bytes());
    for item in range {
        let (k, v) = item.into_inner()?;
        for (key, value) in decode(&v)? {
            latest.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        }
        last =
            u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::Corrupt("a log key is not a number".into()))?);
        folded.push(k);
    }
    if folded.is_empty() {
        return Ok(0);
    }
    let mut batch = db.batch();
    for (k, v) in latest {
        match v {
            Some(v) => batch.insert(data, k, v),
            None => batch.remove(data, k),
        }
    }
    for k in folded {
        batch.remove(log, k);
    }
    batch.durability(Some(PersistMode::Buffer)).commit()?;
    Ok(last)
}

/// The number the next log entry gets.
pub fn next_log_entry(log: &Keyspace) -> Result<u64, Error> {
    Ok(match log.last_key_value() {
        Some(kv) => {
            let k = kv.key()?;
            u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::Corrupt("a log key is not a number".into()))?)
                + 1
        }
        None => 1,
    })
}

/// Records a shard hands to the writer, in the shard's order.
pub struct Chunk {
    pub shard: usize,
    pub records: Records,
    /// The shard's write sequence number after these records.
    pub upto: u64,
    /// Set on the parts of a cross-shard batch: (batch id, number of parts).
    pub batch: Option<(u64, usize)>,
}

pub enum WriterMsg {
    Chunk(Chunk),
    /// Answer once everything sent before is on disk.
    Flush(oneshot::Sender<()>),
}

pub struct Writer {
    pub db: Database,
    pub data: Keyspace,
    pub log: Keyspace,
    pub sync: bool,
    /// Per shard: the highest write sequence number that is durable.
    pub durable: Vec<watch::Sender<u64>>,
    pub next_entry: u64,
    /// How much log to let pile up before asking for a checkpoint.
    pub checkpoint_bytes: u64,
}

impl Writer {
    /// Runs until every sender is gone, then commits what is left, syncs and returns.
    pub fn run(mut self, rx: Receiver<WriterMsg>) {
        let (checkpoint_tx, checkpoint_rx) = std::sync::mpsc::sync_channel::<u64>(1);
        let (db, data, log) = (self.db.clone(), self.data.clone(), self.log.clone());
        let checkpointer = std::thread::Builder::new().name("squall-checkpoint".into()).spawn(move || {
            for upto in checkpoint_rx {
                if let Err(e) = checkpoint(&db, &data, &log, Some(upto)) {
                    tracing::error!(error = %e, "checkpoint failed; the log keeps everything until the next one");
                }
            }
        });
        let shards = self.durable.len();
        let mut queues: Vec<std::collections::VecDeque<(u64, Chunk)>> =
            (0..shards).map(|_| Default::default()).collect();
        let mut assembling: HashMap<u64, Vec<(u64, Chunk)>> = HashMap::new();
        let mut blocked = vec![false; shards];
        // Flush requests with the arrival number they were received at.
        let mut flushes: Vec<(u64, oneshot::Sender<()>)> = Vec::new();
        let mut arrivals = 0u64;
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        let mut log_bytes = 0u64;
        let mut open = true;
        while open {
            // In async mode, what is buffered is fsynced within about a second, busy or idle.
            let wait = SYNC_INTERVAL.saturating_sub(last_sync.elapsed()).max(Duration::from_millis(1));
            let mut take = |m: WriterMsg| {
                arrivals += 1;
                match m {
                    WriterMsg::Chunk(c) => queues[c.shard].push_back((arrivals, c)),
                    WriterMsg::Flush(tx) => flushes.push((arrivals, tx)),
                }
            };
            match rx.recv_timeout(if unsynced { wait } else { Duration::from_secs(3600) }) {
                Ok(m) => {
                    take(m);
                    while let Ok(m) = rx.try_recv() {
                        take(m);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            let mut ready: Vec<Chunk> = Vec::new();
            let mut progress = true;
            while progress {
                progress = false;
                for s in 0..shards {
                    while !blocked[s] {
                        let Some((arrived, chunk)) = queues[s].pop_front() else { break };
                        progress = true;
                        match chunk.batch {
                            None => ready.push(chunk),
                            Some((id, parts)) => {
                                let group = assembling.entry(id).or_default();
                                group.push((arrived, chunk));
                                if group.len() == parts {
                                    for (_, c) in assembling.remove(&id).unwrap_or_default() {
                                        blocked[c.shard] = false;
                                        ready.push(c);
                                    }
                                } else {
                                    // Later records of this shard wait until the batch is whole.
                                    blocked[s] = true;
                                }
                            }
                        }
                    }
                }
            }
            if !open {
                // The shards are gone. A batch still incomplete was never
                // acknowledged (`atomic` reserves every mailbox before applying
                // any part, and shards drain their mailboxes when they stop),
                // so its parts are dropped; what queued behind them is kept.
                for (id, parts) in assembling.drain() {
                    tracing::error!(
                        batch = id,
                        parts = parts.len(),
                        "dropping an incomplete cross-shard batch at shutdown"
                    );
                }
                ready.extend(queues.iter_mut().flat_map(|q| q.drain(..)).map(|(_, c)| c));
            }
            if !ready.is_empty() {
                log_bytes += self.commit(&ready);
                unsynced = !self.sync;
                for c in &ready {
                    self.durable[c.shard].send_if_modified(|d| {
                        let moved = c.upto > *d;
                        *d = (*d).max(c.upto);
                        moved
                    });
                }
                if log_bytes >= self.checkpoint_bytes && checkpoint_tx.try_send(self.next_entry - 1).is_ok() {
                    log_bytes = 0;
                }
            }
            // A flush is answered once everything that arrived before it is committed, and fsynced.
            let oldest_waiting = queues
                .iter()
                .filter_map(|q| q.front().map(|(a, _)| *a))
                .chain(assembling.values().flatten().map(|(a, _)| *a))
                .min()
                .unwrap_or(u64::MAX);
            let answerable = flushes.iter().any(|(a, _)| *a < oldest_waiting);
            if (unsynced && (last_sync.elapsed() >= SYNC_INTERVAL || answerable)) || !open {
                self.persist(PersistMode::SyncAll);
                unsynced = false;
                last_sync = Instant::now();
            }
            if answerable {
                for (_, tx) in flushes.extract_if(.., |(a, _)| *a < oldest_waiting) {
                    let _ = tx.send(());
                }
            }
        }
        drop(checkpoint_tx);
        if let Ok(t) = checkpointer {
            let _ = t.join();
        }
    }

    /// Appends the chunks as one log entry; returns its size.
    fn commit(&mut self, chunks: &[Chunk]) -> u64 {
        let size: usize = chunks.iter().map(|c| c.records.bytes().len()).sum();
        if size == 0 {
            return 0;
        }
        let mut entry = Vec::with_capacity(size);
        for c in chunks {
            entry.extend_from_slice(c.records.bytes());
        }
        let mut batch = self.db.batch();
        batch.insert(&self.log, self.next_entry.to_be_bytes(), entry);
        self.next_entry += 1;
        let mode = if self.sync { PersistMode::SyncData } else { PersistMode::Buffer };
        if let Err(e) = batch.durability(Some(mode)).commit() {
            // fjall poisons itself after a failed journal write; the node cannot
            // promise durability any more, so it stops rather than lie.
            tracing::error!(error = %e, "disk write failed; stopping the node to keep acknowledged writes honest");
            std::process::exit(70);
        }
        size as u64
    }

    fn persist(&self, mode: PersistMode) {
        if let Err(e) = self.db.persist(mode) {
            // After a failed fsync the kernel may have dropped the dirty pages:
            // the data it held cannot be promised, so the node stops.
            tracing::error!(error = %e, "fsync failed; stopping the node to keep acknowledged writes honest");
            std::process::exit(70);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_prefix(ns: &[u8], key: &[u8]) -> Vec<u8> {
        let mut r = Records::default();
        r.key(ns, key, HEADER, b"");
        r.buf[4..r.buf.len() - 1].to_vec()
    }

    fn header_key(ns: &[u8], key: &[u8]) -> Vec<u8> {
        let mut k = key_prefix(ns, key);
        k.push(HEADER);
        k
    }

    fn element_key(ns: &[u8], key: &[u8], element: &[u8]) -> Vec<u8> {
        let mut k = key_prefix(ns, key);
        k.push(ELEMENT);
        k.extend_from_slice(element);
        k
    }

    #[test]
    fn records_decode_back() {
        let mut r = Records::default();
        r.set_member(b"ns", b"k", b"m", Some(&[Dot { node: 1, seq: 2 }][..]));
        r.set_member(b"ns", b"k", b"gone", None);
        let got = decode(r.bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, element_key(b"ns", b"k", b"m").as_slice());
        let dots: Vec<Dot> = postcard::from_bytes(got[0].1.unwrap()).unwrap();
        assert_eq!(dots, [Dot { node: 1, seq: 2 }]);
        assert_eq!(got[1].1, None);
        assert!(decode(&r.bytes()[..r.bytes().len() - 1]).is_err());
    }

    #[test]
    fn disk_keys_split_back_into_their_parts() {
        let k = element_key(b"default", b"users", b"alice");
        assert_eq!(split_key(&k), Some(DiskKey { ns: b"default", key: b"users", tag: ELEMENT, element: b"alice" }));
        let h = header_key(b"ns", b"");
        assert_eq!(split_key(&h), Some(DiskKey { ns: b"ns", key: b"", tag: HEADER, element: b"" }));
        assert_eq!(split_key(&[200, 1, 2]), None);
    }

    #[test]
    fn a_header_sorts_before_its_elements_and_keys_do_not_interleave() {
        let mut keys = [
            element_key(b"n", b"ab", b"z"),
            header_key(b"n", b"abc"),
            header_key(b"n", b"ab"),
            element_key(b"n", b"ab", b""),
        ];
        keys.sort();
        assert_eq!(keys[0], header_key(b"n", b"ab"));
        assert_eq!(keys[3], header_key(b"n", b"abc"));
    }
}
