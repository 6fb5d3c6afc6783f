//! What can be asked of a key, and what comes back.

use bytes::Bytes;
use squall_lattice::Entry;

/// An operation on one key. Writes are lattice inflations stamped with the
/// node's HLC; reads see the shard's current state.
#[derive(Debug, Clone)]
pub enum Op {
    /// The register's bytes (a counter reads as its decimal value).
    Get,
    /// Replaces the key with a register in a new epoch.
    Set {
        value: Bytes,
        expiry: SetExpiry,
        get: bool,
    },
    Del,
    Exists,
    Type,
    /// The whole entry, for renderings that show any type (HTTP).
    Snapshot,
    IncrBy(i64),
    SAdd(Vec<Bytes>),
    SRem(Vec<Bytes>),
    SMembers,
    SIsMember(Bytes),
    SCard,
    HSet(Vec<(Bytes, Bytes)>),
    HGet(Bytes),
    HDel(Vec<Bytes>),
    HGetAll,
    HLen,
    /// Sets an absolute expiry (ms since the Unix epoch); a time in the past deletes the key.
    ExpireAt(u64),
    Persist,
    /// Milliseconds to live: -2 no key, -1 no expiry.
    Pttl,
}

/// What SET does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetExpiry {
    /// No expiry (the default).
    None,
    /// Expire at this absolute time (ms since the Unix epoch).
    At(u64),
    /// Keep the key's current expiry.
    Keep,
}

impl Op {
    /// Whether the operation may change state (and so needs a durable write).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Set { .. }
                | Op::Del
                | Op::IncrBy(_)
                | Op::SAdd(_)
                | Op::SRem(_)
                | Op::HSet(_)
                | Op::HDel(_)
                | Op::ExpireAt(_)
                | Op::Persist
        )
    }
}

/// The answer to an [`Op`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Nil,
    Ok,
    Int(i64),
    Bytes(Bytes),
    /// Members, or field/value pairs flattened (HGETALL).
    List(Vec<Bytes>),
    /// A type name (TYPE).
    Str(&'static str),
    Entry(Box<Entry>),
}

/// An operation that cannot apply to the key as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
}

impl OpError {
    /// The stable error code the HTTP API reports.
    pub fn code(self) -> &'static str {
        match self {
            OpError::WrongType => "wrong_type",
            OpError::NotInteger => "not_integer",
            OpError::Overflow => "overflow",
        }
    }
}

pub type OpResult = Result<Reply, OpError>;
