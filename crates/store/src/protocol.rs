//! The messages a shard understands: the only way into the store. Every
//! request carries its sender's HLC time ([`Message::after`]), so whatever
//! the shard stamps next is later than anything the sender has seen; every
//! answer carries the shard's time back. All of it is plain serializable
//! data, so the same messages can cross the network to a shard on another
//! node.
//!
//! An atomic unit on one shard is one [`Request::Batch`]. Across shards it
//! is a commit in two phases: [`Request::Prepare`] checks the unit's reads
//! and holds its keys (writes exclusively, reads shared), proposing a stamp
//! from the shard's clock; the coordinator takes the largest proposal and
//! sends [`Request::Commit`] with it (or [`Request::Abort`]). A shard never
//! waits for another: while a part is prepared it serves everything else,
//! and only requests for the keys it holds wait (parked, not blocking).

use crate::keyspace::{DumpCursor, ScanPage};
use crate::op::{Op, OpError, OpResult};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use squall_lattice::Timestamp;

/// Names one commit across shards.
pub type TxnId = u64;

/// A read a transaction made, to check at commit: `op` must still answer `saw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub ns: Bytes,
    pub key: Bytes,
    pub op: Op,
    pub saw: OpResult,
}

/// An operation of an atomic unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write {
    pub ns: Bytes,
    pub key: Bytes,
    pub op: Op,
}

/// A request to one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// One operation on one key, applied on its own.
    Op { ns: Bytes, key: Bytes, op: Op },
    /// Several operations, each on its own (not one unit: each write its own
    /// stamp), in order: a pipeline's commands for this shard in one message.
    Ops { ns: Bytes, ops: Vec<(Bytes, Op)> },
    /// Checks, then operations, on keys of this shard, as one atomic unit
    /// with one stamp: if a check fails nothing is applied.
    Batch { checks: Vec<Check>, ops: Vec<Write>, origin: Option<Bytes> },
    /// Phase one of a commit across shards: check, hold the keys, propose a
    /// stamp. Keys another commit holds are waited for; coordinators prepare
    /// their parts in shard order, one after another, so commits never wait
    /// for each other in a circle.
    Prepare { txn: TxnId, checks: Vec<Check>, ops: Vec<Write>, origin: Option<Bytes> },
    /// Phase two: apply the prepared part at `stamp` and let its keys go.
    /// `parts` is how many shards take part (the disk writes them together).
    Commit { txn: TxnId, stamp: Timestamp, parts: usize },
    /// Phase two the other way, or the release of a read-only part: drop
    /// the part (prepared or still waiting) and let its keys go.
    Abort { txn: TxnId },
    /// Up to about `count` keys of `ns` from scan position `from`.
    Scan { ns: Bytes, from: u64, count: usize, pattern: Option<Bytes>, kind: Option<String> },
    /// Keys in `ns`.
    Len { ns: Bytes },
    /// The whole entry at `key` as it was at `at` (from the window log).
    ReadAt { ns: Bytes, key: Bytes, at: Timestamp },
    /// A page of the keys of `ns` as they were at `at`, from scan position `from`.
    ScanAt { ns: Bytes, from: u64, count: usize, pattern: Option<Bytes>, at: Timestamp },
    /// The changes to keys of `ns` (starting with `prefix`) stamped after
    /// `from` and at or before `to`, about `limit` of them, oldest first.
    Changes { ns: Bytes, from: Timestamp, to: Timestamp, prefix: Option<Bytes>, limit: usize },
    /// A bounded step of a snapshot: the records of about `budget` keys.
    Dump { cursor: DumpCursor, budget: usize },
    /// Answer once everything the shard has written is on disk and fsynced.
    Flush,
}

/// One key's change at one stamp: the key as it was just before, and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeAt {
    pub time: Timestamp,
    pub key: Bytes,
    pub before: Option<squall_lattice::Entry>,
    pub after: Option<squall_lattice::Entry>,
    /// The invocation whose commit made it, when one did.
    pub origin: Option<Bytes>,
}

/// A request with its sender's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The latest HLC time the sender has seen: the shard's clock moves past it first.
    pub after: Timestamp,
    pub request: Request,
}

/// A prepared part's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Vote {
    /// The checks hold and the keys are held. A part with no writes answers
    /// its reads now; its release is an [`Request::Abort`].
    Yes { proposal: Timestamp, reads: Option<Vec<OpResult>> },
    /// A check failed: what the transaction read has changed.
    Conflict,
}

/// What a shard answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Op(OpResult),
    /// Each operation's result, with the stamp of its write (or the shard's time).
    Ops(Vec<(OpResult, Timestamp)>),
    /// The results of a batch's operations, or `None` when a check failed.
    Batch(Option<Vec<OpResult>>),
    Vote(Vote),
    Committed(Vec<OpResult>),
    Aborted,
    Scan(ScanPage),
    /// Changes in stamp order; `complete` when every change of the range is
    /// there (else they end with a whole stamp, and the rest come after it).
    Changes {
        changes: Vec<ChangeAt>,
        complete: bool,
    },
    Len(u64),
    /// Encoded records of a snapshot step, and where to go on.
    Dump {
        records: Bytes,
        next: Option<DumpCursor>,
    },
    Flushed,
    /// The writes were refused (the disk is full or failing); nothing changed.
    Refused(OpError),
    /// The time asked for is before the oldest the window log reaches, which is this.
    OutOfWindow(Timestamp),
}

/// A shard's answer, with what the caller needs to wait for and to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub response: Response,
    /// The stamp of the writes, or the shard's time for a read: the caller's
    /// later requests go after it.
    pub stamp: Timestamp,
    /// Everything the shard had done when it answered is durable once its
    /// writes up to this number are (0: nothing to wait for).
    pub seq: u64,
    pub shard: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Reply, SetExpiry};

    /// The messages are plain data: they survive a trip through a wire
    /// format unchanged (what a shard on another node will receive).
    #[test]
    fn messages_cross_a_wire_format_unchanged() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let requests = vec![
            Request::Op {
                ns: b("default"),
                key: b("k"),
                op: Op::Set { value: b("v"), expiry: SetExpiry::At(9), get: true },
            },
            Request::Ops { ns: b("default"), ops: vec![(b("a"), Op::IncrBy(-3)), (b("b"), Op::SMembers)] },
            Request::Prepare {
                txn: 7,
                checks: vec![Check { ns: b("default"), key: b("r"), op: Op::Snapshot, saw: Ok(Reply::Nil) }],
                ops: vec![Write { ns: b("sys"), key: b("w"), op: Op::HSet(vec![(b("f"), b("v"))]) }],
                origin: Some(b("0001-2-000003")),
            },
            Request::Commit { txn: 7, stamp: Timestamp::new(5, 1), parts: 2 },
            Request::Scan {
                ns: b("default"),
                from: 3,
                count: 10,
                pattern: Some(b("user:*")),
                kind: Some("hash".into()),
            },
        ];
        for request in requests {
            let msg = Message { after: Timestamp::new(4, 2), request };
            let wire = postcard::to_allocvec(&msg).unwrap();
            assert_eq!(postcard::from_bytes::<Message>(&wire).unwrap(), msg);
        }
        let answer = Answer {
            response: Response::Vote(Vote::Yes {
                proposal: Timestamp::new(6, 0),
                reads: Some(vec![Err(OpError::WrongType)]),
            }),
            stamp: Timestamp::new(6, 0),
            seq: 12,
            shard: 1,
        };
        let wire = postcard::to_allocvec(&answer).unwrap();
        assert_eq!(postcard::from_bytes::<Answer>(&wire).unwrap(), answer);
    }
}
