//! The disk tier: how entries are laid out in fjall, how they come back on
//! start, and the writer thread that commits them.
//!
//! Layout (one fjall keyspace, `data`): a key's header record holds its epoch,
//! expiry and, for small types, the whole value; sets and hashes also have one
//! record per element, so adding a member to a large set writes a few bytes,
//! not the set.
//!
//! ```text
//! [ns len: u8][ns][key len: u32 BE][key][0]         -> Header
//! [ns len: u8][ns][key len: u32 BE][key][1][element] -> set: Vec<Dot>, hash: Lww<Option<Bytes>>
//! ```
//!
//! All shards send their records to one writer thread, in order. It turns
//! whatever has arrived into one fjall write batch (atomic on disk), so
//! writers that arrive during an fsync share the next one (group commit), and
//! the parts of a cross-shard batch always land in the same fjall batch.

use crate::Error;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};
use squall_lattice::{AwSet, Dot, Entry, LMap, Lww, Max, NodeId, PnCounter, Stamp, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

const HEADER: u8 = 0;
const ELEMENT: u8 = 1;

/// One change to the disk tier: a put, or a delete when `value` is `None`.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    epoch: Stamp,
    expiry: Option<Lww<Option<u64>>>,
    body: Body,
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

pub fn key_prefix(ns: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + key.len() + 6);
    k.push(ns.len() as u8);
    k.extend_from_slice(ns);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

pub fn header_key(ns: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = key_prefix(ns, key);
    k.push(HEADER);
    k
}

pub fn element_key(ns: &[u8], key: &[u8], element: &[u8]) -> Vec<u8> {
    let mut k = key_prefix(ns, key);
    k.reserve(element.len() + 1);
    k.push(ELEMENT);
    k.extend_from_slice(element);
    k
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    postcard::to_allocvec(v).unwrap_or_default()
}

/// The header record of `entry` (a tombstone has none: its records are deleted).
pub fn header_record(ns: &[u8], key: &[u8], entry: &Entry) -> Record {
    let body = match &entry.value {
        Value::Register(b) => Body::Register(b.clone()),
        Value::Counter(c) => Body::Counter(c.clone()),
        Value::Set(s) => Body::Set(s.context().clone()),
        Value::Map(_) => Body::Map,
        Value::Max(m) => Body::Max(*m),
        Value::Tombstone => {
            return Record { key: header_key(ns, key), value: None };
        }
    };
    let header = Header { epoch: entry.epoch, expiry: entry.expiry.clone(), body };
    Record { key: header_key(ns, key), value: Some(encode(&header)) }
}

pub fn set_member_record(ns: &[u8], key: &[u8], member: &[u8], dots: Option<&[Dot]>) -> Record {
    Record { key: element_key(ns, key, member), value: dots.map(|d| encode(&d)) }
}

pub fn map_field_record(ns: &[u8], key: &[u8], field: &[u8], reg: Option<&Lww<Option<Bytes>>>) -> Record {
    Record { key: element_key(ns, key, field), value: reg.map(encode) }
}

/// Records that delete every record of `entry`.
pub fn delete_records(ns: &[u8], key: &[u8], entry: &Entry, out: &mut Vec<Record>) {
    out.push(Record { key: header_key(ns, key), value: None });
    match &entry.value {
        Value::Set(s) => out.extend(s.iter().map(|m| set_member_record(ns, key, m, None))),
        Value::Map(m) => out.extend(m.iter().map(|(f, _)| map_field_record(ns, key, f, None))),
        _ => {}
    }
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

/// Reads every entry back. Expired entries are skipped and their records
/// returned for deletion.
pub fn load(data: &Keyspace, now_ms: u64) -> Result<(Vec<Loaded>, Vec<Record>), Error> {
    let mut out = Vec::new();
    let mut expired = Vec::new();
    let mut current: Option<(Bytes, Bytes, Building)> = None;
    let finish = |cur: Option<(Bytes, Bytes, Building)>, out: &mut Vec<Loaded>, expired: &mut Vec<Record>| {
        if let Some((ns, key, b)) = cur {
            let entry = b.finish();
            if entry.is_expired(now_ms) {
                delete_records(&ns, &key, &entry, expired);
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
                    Building::Done(_) => return Err(corrupt()),
                },
                // An element without its header is left over from a crash between
                // records of one key, which the atomic batches rule out.
                _ => return Err(corrupt()),
            }
        }
    }
    finish(current.take(), &mut out, &mut expired);
    Ok((out, expired))
}

pub fn open(dir: &Path) -> Result<(Database, Keyspace), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::DataDir(dir.display().to_string(), e.to_string()))?;
    let db = Database::builder(dir).manual_journal_persist(true).open().map_err(|e| match e {
        fjall::Error::Locked => Error::Locked(dir.display().to_string()),
        e => Error::Disk(e),
    })?;
    let data = db.keyspace("data", KeyspaceCreateOptions::default)?;
    Ok((db, data))
}

/// Records a shard hands to the writer, in the shard's order.
pub struct Chunk {
    pub shard: usize,
    pub records: Vec<Record>,
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
    pub sync: bool,
    /// Per shard: the highest write sequence number that is durable.
    pub durable: Vec<watch::Sender<u64>>,
}

impl Writer {
    /// Runs until every sender is gone, then syncs and returns.
    pub fn run(self, rx: Receiver<WriterMsg>) {
        let shards = self.durable.len();
        let mut queues: Vec<std::collections::VecDeque<Chunk>> = (0..shards).map(|_| Default::default()).collect();
        let mut assembling: HashMap<u64, Vec<Chunk>> = HashMap::new();
        let mut blocked = vec![false; shards];
        let mut flushes = Vec::new();
        let mut unsynced = false;
        loop {
            // In async mode an idle second syncs what is buffered.
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if unsynced {
                        self.persist(PersistMode::SyncData);
                        unsynced = false;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut take = |m: WriterMsg| match m {
                WriterMsg::Chunk(c) => queues[c.shard].push_back(c),
                WriterMsg::Flush(tx) => flushes.push(tx),
            };
            take(first);
            while let Ok(m) = rx.try_recv() {
                take(m);
            }
            let mut ready: Vec<Chunk> = Vec::new();
            let mut progress = true;
            while progress {
                progress = false;
                for s in 0..shards {
                    while !blocked[s] {
                        let Some(chunk) = queues[s].pop_front() else {
                            break;
                        };
                        progress = true;
                        match chunk.batch {
                            None => ready.push(chunk),
                            Some((id, parts)) => {
                                let group = assembling.entry(id).or_default();
                                group.push(chunk);
                                if group.len() == parts {
                                    for c in assembling.remove(&id).unwrap_or_default() {
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
            if !ready.is_empty() {
                self.commit(&ready);
                unsynced = !self.sync;
                for c in &ready {
                    self.durable[c.shard].send_if_modified(|d| {
                        let moved = c.upto > *d;
                        *d = (*d).max(c.upto);
                        moved
                    });
                }
            }
            if assembling.is_empty() {
                for tx in flushes.drain(..) {
                    let _ = tx.send(());
                }
            }
        }
        self.persist(PersistMode::SyncAll);
    }

    fn commit(&self, chunks: &[Chunk]) {
        // One key may be written twice in a group; fjall gives a batch one
        // sequence number, so only the last write of each key goes in.
        let mut seen = HashSet::new();
        let mut batch = self.db.batch();
        for r in chunks.iter().rev().flat_map(|c| c.records.iter().rev()) {
            if seen.insert(r.key.as_slice()) {
                match &r.value {
                    Some(v) => batch.insert(&self.data, r.key.clone(), v.clone()),
                    None => batch.remove(&self.data, r.key.clone()),
                }
            }
        }
        let mode = if self.sync { PersistMode::SyncData } else { PersistMode::Buffer };
        if let Err(e) = batch.durability(Some(mode)).commit() {
            // fjall poisons itself after a failed journal write; the node cannot
            // promise durability any more, so it stops rather than lie.
            tracing::error!(error = %e, "disk write failed; stopping the node to keep acknowledged writes honest");
            std::process::exit(70);
        }
    }

    fn persist(&self, mode: PersistMode) {
        if let Err(e) = self.db.persist(mode) {
            tracing::error!(error = %e, "fsync failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
