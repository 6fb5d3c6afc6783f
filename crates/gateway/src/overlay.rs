//! EXEC of a transaction that holds commands over several keys (RENAME,
//! COPY, SMOVE, LMOVE, the *STORE commands, MSETNX, the pops over many
//! keys). Such a command reads keys and writes others from what it read,
//! and inside MULTI it must see what the commands queued before it wrote.
//!
//! So the transaction runs twice, as a function invocation does
//! (`squall_scheduler::txn`): first on a private overlay, a [`Keyspace`]
//! seeded with every key the transaction names (read in one unit), which
//! answers each command with the store's own semantics and notes the
//! writes each makes; then the noted writes go to the store as one atomic
//! unit, which applies only if every key still reads as it was read (their
//! owners check, holding them). Applied to the same values, the same
//! writes give what the overlay gave, so its answers are the answers.
//! Writes are noted as ops the store applies the same way (SPOP's picks as
//! the SREM of what it picked), never as copies of whole values, except
//! where the command itself writes a whole value (RENAME, COPY).
//!
//! The cost is a copy of every key the transaction names, read whole: a
//! transaction that moves one item off a list of millions copies the list.

use bytes::Bytes;
use squall_store::lattice::{Entry, Kind, NodeId, Stamp, Timestamp};
use squall_store::{Keyspace, Op, OpError, OpResult, Reply, SetExpiry, ZAddOpts};

use crate::commands::{self, Cmd, PopFrom};
use crate::resp::Frame;

/// The keys `cmds` read or write, each once, in first-named order (in
/// linear time: a transaction may name 100,000 keys).
pub fn keys_of(cmds: &[Cmd]) -> Vec<Bytes> {
    let mut keys: Vec<Bytes> = Vec::new();
    let mut seen: std::collections::HashSet<Bytes> = std::collections::HashSet::new();
    let mut add = |k: &Bytes| {
        if seen.insert(k.clone()) {
            keys.push(k.clone());
        }
    };
    for cmd in cmds {
        match cmd {
            Cmd::Key { key, .. } => add(key),
            Cmd::Keys { ops, .. } => ops.iter().for_each(|(k, _)| add(k)),
            Cmd::Stored { dest, keys, .. } | Cmd::ZStore { dest, keys, .. } => {
                add(dest);
                keys.iter().for_each(&mut add);
            }
            Cmd::Move { from, to, .. } | Cmd::Relocate { from, to, .. } | Cmd::ListMove { from, to, .. } => {
                add(from);
                add(to);
            }
            Cmd::SetNew { pairs } => pairs.iter().for_each(|(k, _)| add(k)),
            Cmd::ZCombine { keys, .. } | Cmd::Pop { keys, .. } => keys.iter().for_each(&mut add),
            Cmd::Server(_) => {}
        }
    }
    keys
}

/// True if `cmd` needs the overlay inside MULTI (it is more than its
/// key operations).
pub fn needs_overlay(cmd: &Cmd) -> bool {
    !matches!(cmd, Cmd::Key { .. } | Cmd::Keys { .. } | Cmd::Server(_))
}

pub struct Overlay {
    keyspace: Keyspace,
    ns: Bytes,
    now: u64,
    stamp: Stamp,
    /// The writes the commands made, in order: what the store applies.
    writes: Vec<(Bytes, Op)>,
}

impl Overlay {
    /// An overlay of `ns` holding `read`: each key with what a snapshot
    /// read of it answered.
    pub fn new(node: NodeId, ns: Bytes, now: u64, read: impl IntoIterator<Item = (Bytes, OpResult)>) -> Overlay {
        let mut keyspace = Keyspace::new(node);
        for (key, r) in read {
            if let Ok(Reply::Entry(entry)) = r {
                keyspace.put(&ns, &key, Entry::clone(&entry));
            }
        }
        // The overlay's stamps are placeholders (the commit stamps the
        // writes for real); the largest keeps each write on top of what was read.
        let stamp = Stamp::new(Timestamp::MAX, node);
        Overlay { keyspace, ns, now, stamp, writes: Vec::new() }
    }

    /// The writes to commit, in order.
    pub fn into_writes(self) -> Vec<(Bytes, Op)> {
        self.writes
    }

    /// Runs `op` on `key`, noting it if it writes (and succeeds).
    fn run(&mut self, key: &Bytes, op: Op) -> OpResult {
        if !op.is_write() {
            return self.keyspace.read(&self.ns, key, &op, self.now);
        }
        let noted = match &op {
            // What the store would pick at random is what was picked here.
            Op::SPop(_) => None,
            op => Some(op.clone()),
        };
        let r = self.keyspace.apply(&self.ns, key, op, self.stamp, self.now)?;
        let noted = noted.or_else(|| {
            let picked = match &r {
                Reply::Bytes(m) => vec![m.clone()],
                Reply::List(ms) => ms.clone(),
                _ => Vec::new(),
            };
            (!picked.is_empty()).then_some(Op::SRem(picked))
        });
        self.writes.extend(noted.map(|op| (key.clone(), op)));
        Ok(r)
    }

    /// The answer to `cmd`, run here; `None` for a server command (it runs
    /// after the commit, as in a transaction without the overlay).
    pub fn answer(&mut self, cmd: Cmd) -> Option<Frame> {
        Some(match cmd {
            Cmd::Key { key, op, render } => commands::render(self.run(&key, op), render),
            Cmd::Keys { ops, combine } => {
                let results = ops.into_iter().map(|(k, op)| self.run(&k, op)).collect();
                commands::combine(results, combine)
            }
            Cmd::Stored { dest, keys, how } => {
                let results = keys.iter().map(|k| self.run(k, how.read())).collect();
                match how.make(results) {
                    Ok((answer, writes)) => {
                        let done: Vec<OpResult> = writes.into_iter().map(|op| self.run(&dest, op)).collect();
                        done.into_iter().find_map(Result::err).map_or(answer, commands::op_error)
                    }
                    Err(e) => commands::op_error(e),
                }
            }
            Cmd::ZStore { dest, keys, how } => {
                let results = keys.iter().map(|k| self.run(k, Op::Snapshot)).collect();
                match commands::combine_zsets(results, &how) {
                    Ok(pairs) => {
                        let n = pairs.len() as i64;
                        let pairs: Vec<(f64, Bytes)> = pairs.into_iter().map(|(m, s)| (s, m)).collect();
                        let fill = (!pairs.is_empty()).then_some(Op::ZAdd { pairs, opts: ZAddOpts::default() });
                        for op in commands::replaced(fill) {
                            let _ = self.run(&dest, op);
                        }
                        Frame::Integer(n)
                    }
                    Err(e) => commands::op_error(e),
                }
            }
            Cmd::ZCombine { keys, how, out } => {
                let results = keys.iter().map(|k| self.run(k, Op::Snapshot)).collect();
                commands::zcombined(commands::combine_zsets(results, &how), out)
            }
            Cmd::SetNew { pairs } => {
                if pairs.iter().any(|(k, _)| self.run(k, Op::Exists) == Ok(Reply::Int(1))) {
                    return Some(Frame::Integer(0));
                }
                for (k, value) in pairs {
                    let _ = self.run(&k, Op::Set { value, expiry: SetExpiry::None, get: false });
                }
                Frame::Integer(1)
            }
            Cmd::Relocate { from, to, copy, only_new } => self.relocate(&from, &to, copy, only_new),
            Cmd::Move { from, to, member } => self.smove(&from, &to, member),
            Cmd::ListMove { from, to, from_head, to_head, .. } => self.lmove(&from, &to, from_head, to_head),
            // Inside a transaction nothing blocks: the first key with
            // something answers, else a null (as in Redis).
            Cmd::Pop { keys, from, .. } => self.pop(keys, from),
            Cmd::Server(_) => return None,
        })
    }

    fn relocate(&mut self, from: &Bytes, to: &Bytes, copy: bool, only_new: bool) -> Frame {
        let answer = |done: bool| match (copy, only_new) {
            (false, false) => Frame::ok(),
            _ => Frame::Integer(i64::from(done)),
        };
        let entry = match self.run(from, Op::Snapshot) {
            Ok(Reply::Entry(entry)) => entry,
            _ => return if copy { Frame::Integer(0) } else { Frame::err("no such key") },
        };
        if from == to {
            return answer(!only_new);
        }
        if only_new && self.run(to, Op::Exists) == Ok(Reply::Int(1)) {
            return answer(false);
        }
        let _ = self.run(to, Op::Put(entry));
        if !copy {
            let _ = self.run(from, Op::Del);
        }
        answer(true)
    }

    fn smove(&mut self, from: &Bytes, to: &Bytes, member: Bytes) -> Frame {
        let types = [self.run(from, Op::Type), self.run(to, Op::Type)];
        if types[0] == Ok(Reply::Type(None)) {
            return Frame::Integer(0);
        }
        if !types.iter().all(|t| matches!(t, Ok(Reply::Type(None | Some(Kind::Set))))) {
            return commands::op_error(OpError::WrongType);
        }
        if self.run(from, Op::SIsMember(member.clone())) != Ok(Reply::Int(1)) {
            return Frame::Integer(0);
        }
        let _ = self.run(from, Op::SRem(vec![member.clone()]));
        let _ = self.run(to, Op::SAdd(vec![member]));
        Frame::Integer(1)
    }

    fn lmove(&mut self, from: &Bytes, to: &Bytes, from_head: bool, to_head: bool) -> Frame {
        let item = match self.run(from, Op::LIndex(if from_head { 0 } else { -1 })) {
            Ok(Reply::Bytes(item)) => item,
            Ok(_) => return Frame::Nil,
            Err(e) => return commands::op_error(e),
        };
        if !matches!(self.run(to, Op::Type), Ok(Reply::Type(None | Some(Kind::List)))) {
            return commands::op_error(OpError::WrongType);
        }
        let _ = self.run(from, Op::Pop { head: from_head, count: None });
        let _ = self.run(to, Op::Push { head: to_head, items: vec![item.clone()], existing: false });
        Frame::Bulk(item)
    }

    fn pop(&mut self, keys: Vec<Bytes>, from: PopFrom) -> Frame {
        for key in keys {
            match self.run(&key, from.op()) {
                Ok(reply) => {
                    if let Some(frame) = from.reply(key, reply) {
                        return frame;
                    }
                }
                Err(e) => return commands::op_error(e),
            }
        }
        Frame::NilArray
    }
}
