//! What can be asked of a key, and what comes back.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use squall_lattice::{Entry, Kind};

/// An operation on one key. Writes are lattice inflations stamped with the
/// stamp of the atomic unit they belong to; reads see the shard's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// The register's bytes (a counter reads as its decimal value).
    Get,
    /// Replaces the key with a register in a new epoch.
    Set {
        value: Bytes,
        expiry: SetExpiry,
        get: bool,
    },
    /// SET NX (`present: false`) or XX (`present: true`): a SET only if
    /// the key is there or is not, decided by the key's owner as it
    /// applies (not a lattice merge: it cannot be done anywhere else).
    /// Nil when it does not apply (with `get`, the value as with SET GET).
    SetIf {
        value: Bytes,
        expiry: SetExpiry,
        get: bool,
        present: bool,
    },
    /// GETDEL: the string, and the key gone.
    GetDel,
    /// RENAME's and COPY's write: the key becomes this value (of any
    /// type), in a new epoch at the unit's stamp, with its expiry.
    Put(Box<Entry>),
    /// GETEX: the string, and its expiry changed (`None`: a plain read).
    GetEx(Option<GetExpiry>),
    /// APPEND: the string with these bytes after it; answers its length.
    Append(Bytes),
    /// SETRANGE: the string overwritten from the offset on (zero bytes
    /// pad it out); answers its length. Nothing is made of nothing.
    SetRange(u64, Bytes),
    /// SETBIT: the bit at `offset` (0 is the first byte's highest) set or
    /// cleared, the string padded out with zero bytes to reach it;
    /// answers the bit as it was. Nothing changes if the bit already is so.
    SetBit {
        offset: u64,
        on: bool,
    },
    /// PFADD: the elements added to the HyperLogLog (made if not there);
    /// answers 1 if a register grew (or it was made), else 0.
    PfAdd(Vec<Bytes>),
    /// PFMERGE's write: these raw registers (one byte each) merged into
    /// the HyperLogLog by their maximum (made if not there).
    PfMerge(Bytes),
    /// INCRBYFLOAT: the string read as a number plus this; answers it.
    IncrByFloat(f64),
    Del,
    Exists,
    Type,
    /// The whole entry, for renderings that show any type (HTTP) and for a
    /// transaction's first read of a key.
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
    /// HMGET: each field's value, or nil.
    HMGet(Vec<Bytes>),
    /// HINCRBY: the field read as an integer plus this; answers it.
    HIncrBy(Bytes, i64),
    /// HINCRBYFLOAT: the field read as a number plus this; answers it.
    HIncrByFloat(Bytes, f64),
    /// HSETNX: sets the field only if it is not there; 1 if it did.
    HSetNx(Bytes, Bytes),
    /// SMISMEMBER: 1 or 0 for each member.
    SMIsMember(Vec<Bytes>),
    /// SPOP: removes members picked at random by the key's owner, one (its
    /// bytes, or nil) or up to a count (a list).
    SPop(Option<u64>),
    /// SRANDMEMBER: members picked at random, one (or nil), up to a count
    /// of distinct ones, or (a negative count) that many with repeats.
    SRandMember(Option<i64>),
    /// LPUSH (`head`) or RPUSH; LPUSHX or RPUSHX (`existing`: only onto
    /// a list that is there). Answers the list's length.
    Push {
        head: bool,
        items: Vec<Bytes>,
        existing: bool,
    },
    /// LPOP (`head`) or RPOP: one item (or nil), or up to a count (a list;
    /// nil if there is no list).
    Pop {
        head: bool,
        count: Option<u64>,
    },
    LLen,
    /// A command whose arguments were refused, answered as Redis answers
    /// it once it has looked at the key: `absent` if nothing is there
    /// (`None`: nil), WRONGTYPE if another type is, else `error`.
    Refused {
        kind: Kind,
        absent: Option<OpError>,
        error: OpError,
    },
    /// LINDEX: the item at an index (negative ones count from the tail).
    LIndex(i64),
    /// LRANGE: the items from `start` to `stop`, both included.
    LRange(i64, i64),
    /// LSET: the item at an index replaced.
    LSet(i64, Bytes),
    /// LINSERT: `item` before (or after) the first item equal to `pivot`;
    /// answers the list's length, -1 without the pivot, 0 without a list.
    LInsert {
        before: bool,
        pivot: Bytes,
        item: Bytes,
    },
    /// LREM: items equal to the value removed, up to `count` from the head
    /// (from the tail if negative, all if 0); answers how many.
    LRem(i64, Bytes),
    /// LTRIM: only the items from `start` to `stop` kept.
    LTrim(i64, i64),
    /// ZADD (and ZINCRBY: one pair, `incr`): answers how many members it
    /// added (with `ch`, added or changed), or with `incr` the new score (nil
    /// when an option kept it from applying).
    ZAdd {
        pairs: Vec<(f64, Bytes)>,
        opts: ZAddOpts,
    },
    ZRem(Vec<Bytes>),
    ZScore(Bytes),
    ZMScore(Vec<Bytes>),
    ZCard,
    /// ZRANK (ZREVRANK: `rev`).
    ZRank {
        member: Bytes,
        rev: bool,
    },
    ZCount(ScoreBound, ScoreBound),
    ZRange(ZRange),
    /// ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX: removes what
    /// ZRANGE would pick; answers how many.
    ZRemRange(ZBy),
    /// ZPOPMIN (ZPOPMAX: `max`): the lowest (highest) members with their scores.
    ZPop {
        max: bool,
        count: Option<u64>,
    },
    /// HRANDFIELD: a field picked at random (or nil), or up to a count of
    /// distinct ones, or (a negative count) that many with repeats; with
    /// `values`, each with its value after it.
    HRandField {
        count: Option<i64>,
        values: bool,
    },
    /// ZRANDMEMBER: as HRANDFIELD, of members; with `scores`, as
    /// [`Reply::Scored`].
    ZRandMember {
        count: Option<i64>,
        scores: bool,
    },
    /// LPOS: the index of the `rank`th item equal to `element` (from the
    /// tail if negative), or with a count the indexes of that many (0: all),
    /// looking at `maxlen` items at most (0: all).
    LPos {
        element: Bytes,
        rank: i64,
        count: Option<u64>,
        maxlen: u64,
    },
    /// PEXPIRETIME: the expiry in ms since the Unix epoch; -1 none, -2 no key.
    ExpireTime,
    /// SSCAN, HSCAN, ZSCAN: a page of the set's members, the hash's field
    /// and value pairs, or the sorted set's members and scores (the score
    /// as Redis writes it), from `cursor` on; answers the next cursor (as
    /// bytes, "0" at the end) and the page. `kind` is the type the command
    /// is for (another is WRONGTYPE).
    ElementScan {
        kind: Kind,
        cursor: u64,
        count: usize,
        pattern: Option<Bytes>,
    },
    /// Sets an absolute expiry (ms since the Unix epoch); a time in the past deletes the key.
    ExpireAt(u64),
    /// EXPIRE with NX, XX, GT or LT: an [`Op::ExpireAt`] only if the
    /// key's expiry passes the test (decided by its owner).
    ExpireAtIf(u64, ExpireIf),
    Persist,
    /// Milliseconds to live: -2 no key, -1 no expiry.
    Pttl,
    /// OBJECT ENCODING: the encoding Redis would give the value, by its
    /// default thresholds (Squall's own layout is its own).
    Encoding,
    /// MEMORY USAGE: about the bytes the key and its value take.
    MemoryUsage,
}

/// A whole number as Redis reads one (its `string2ll`): an optional `-`,
/// then digits with no leading zero, within 64 bits. No `+`, no spaces,
/// no `-0`: "007" and "+5" are strings, not integers, to INCR as to
/// every count and index.
pub fn parse_int(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b {
        [b'0'] => return Some(0),
        [b'-', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) || digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative { 0i64.checked_sub_unsigned(n) } else { i64::try_from(n).ok() }
}

/// The longest string APPEND and SETRANGE make: Redis's default
/// `proto-max-bulk-len`.
pub const MAX_STRING: usize = 512 << 20;

/// ZADD's options (ZINCRBY is ZADD with INCR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZAddOpts {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
    pub ch: bool,
    pub incr: bool,
}

/// One end of a score range: `1.5`, or `(1.5` (`open`: not included).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreBound {
    pub value: f64,
    pub open: bool,
}

impl ScoreBound {
    /// Whether `s` is at or above this bound, taken as a minimum.
    pub fn below(&self, s: f64) -> bool {
        if self.open { s > self.value } else { s >= self.value }
    }

    /// Whether `s` is at or below this bound, taken as a maximum.
    pub fn above(&self, s: f64) -> bool {
        if self.open { s < self.value } else { s <= self.value }
    }
}

/// One end of a lexical range: `-`, `+`, `[member` or `(member`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LexBound {
    Lowest,
    Highest,
    In(Bytes),
    Out(Bytes),
}

impl LexBound {
    /// Whether `m` is at or after this bound, taken as a minimum.
    pub fn below(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Lowest => true,
            LexBound::Highest => false,
            LexBound::In(b) => m >= b.as_ref(),
            LexBound::Out(b) => m > b.as_ref(),
        }
    }

    /// Whether `m` is at or before this bound, taken as a maximum.
    pub fn above(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Lowest => false,
            LexBound::Highest => true,
            LexBound::In(b) => m <= b.as_ref(),
            LexBound::Out(b) => m < b.as_ref(),
        }
    }
}

/// What ZRANGE (and the older ZRANGEBYSCORE, ZREVRANGE...) asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZRange {
    pub by: ZBy,
    /// Highest first.
    pub rev: bool,
    /// LIMIT offset count (a negative count: all the rest).
    pub limit: Option<(i64, i64)>,
    /// WITHSCORES.
    pub scores: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ZBy {
    /// Ranks, both included, negative ones from the end.
    Index(i64, i64),
    /// Scores from the minimum to the maximum.
    Score(ScoreBound, ScoreBound),
    /// Members from the minimum to the maximum (among members of one score).
    Lex(LexBound, LexBound),
}

/// What GETEX does to the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GetExpiry {
    /// Expire at this absolute time (ms since the Unix epoch; a past one deletes).
    At(u64),
    Persist,
}

/// What SET does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetExpiry {
    /// No expiry (the default).
    None,
    /// Expire at this absolute time (ms since the Unix epoch).
    At(u64),
    /// Keep the key's current expiry.
    Keep,
}

/// The tests of EXPIRE's NX, XX, GT and LT options (XX with GT or LT
/// is both; a key without an expiry has an infinite one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireIf {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
}

impl ExpireIf {
    /// Whether a key expiring at `current` (ms; `None`: never) takes `at`.
    pub fn holds(self, current: Option<u64>, at: u64) -> bool {
        !(self.nx && current.is_some()
            || self.xx && current.is_none()
            || self.gt && current.is_none_or(|c| at <= c)
            || self.lt && current.is_some_and(|c| at >= c))
    }
}

impl Op {
    /// Whether the operation may change state (and so needs a durable write).
    /// Whether it may make a key that is not there (a write that only
    /// removes or re-times does not).
    pub fn may_add_key(&self) -> bool {
        matches!(
            self,
            Op::Set { .. }
                | Op::SetIf { .. }
                | Op::Put(_)
                | Op::IncrBy(_)
                | Op::SAdd(_)
                | Op::HSet(_)
                | Op::Append(_)
                | Op::SetRange(..)
                | Op::SetBit { .. }
                | Op::PfAdd(_)
                | Op::PfMerge(_)
                | Op::IncrByFloat(_)
                | Op::HIncrBy(..)
                | Op::HIncrByFloat(..)
                | Op::HSetNx(..)
                | Op::Push { existing: false, .. }
                | Op::ZAdd { .. }
        )
    }

    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Set { .. }
                | Op::SetIf { .. }
                | Op::GetDel
                | Op::Put(_)
                | Op::SPop(_)
                | Op::GetEx(Some(_))
                | Op::Append(_)
                | Op::SetRange(..)
                | Op::SetBit { .. }
                | Op::PfAdd(_)
                | Op::PfMerge(_)
                | Op::IncrByFloat(_)
                | Op::HIncrBy(..)
                | Op::HIncrByFloat(..)
                | Op::HSetNx(..)
                | Op::ExpireAtIf(..)
                | Op::Del
                | Op::IncrBy(_)
                | Op::SAdd(_)
                | Op::SRem(_)
                | Op::HSet(_)
                | Op::HDel(_)
                | Op::ExpireAt(_)
                | Op::Persist
                | Op::Push { .. }
                | Op::Pop { .. }
                | Op::LSet(..)
                | Op::LInsert { .. }
                | Op::LRem(..)
                | Op::LTrim(..)
                | Op::ZAdd { .. }
                | Op::ZRem(_)
                | Op::ZPop { .. }
                | Op::ZRemRange(_)
        )
    }

    /// Bytes of keys, members, fields and values the operation carries: what
    /// it costs to hold it in a transaction's queue.
    pub fn size(&self) -> usize {
        match self {
            Op::Set { value, .. } | Op::SetIf { value, .. } | Op::Append(value) | Op::SetRange(_, value) => value.len(),
            Op::SAdd(ms)
            | Op::SRem(ms)
            | Op::HDel(ms)
            | Op::HMGet(ms)
            | Op::SMIsMember(ms)
            | Op::Push { items: ms, .. }
            | Op::PfAdd(ms)
            | Op::ZRem(ms)
            | Op::ZMScore(ms) => ms.iter().map(Bytes::len).sum(),
            Op::HIncrBy(f, _) | Op::HIncrByFloat(f, _) | Op::PfMerge(f) => f.len(),
            Op::HSetNx(f, v) => f.len() + v.len(),
            Op::HSet(pairs) => pairs.iter().map(|(f, v)| f.len() + v.len()).sum(),
            Op::ZAdd { pairs, .. } => pairs.iter().map(|(_, m)| m.len() + 8).sum(),
            Op::SIsMember(m) | Op::HGet(m) | Op::LSet(_, m) | Op::LRem(_, m) => m.len(),
            Op::LInsert { pivot, item, .. } => pivot.len() + item.len(),
            _ => 0,
        }
    }
}

/// The answer to an [`Op`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Nil,
    Ok,
    Int(i64),
    Bytes(Bytes),
    /// Members, or field/value pairs flattened (HGETALL).
    List(Vec<Bytes>),
    /// One reply for each of several (HMGET, SMISMEMBER).
    Array(Vec<Reply>),
    /// A sorted set's score (a double in RESP3).
    Score(f64),
    /// Members with their scores, in order.
    Scored(Vec<(Bytes, f64)>),
    /// A key's type (TYPE); `None` when there is no such key.
    Type(Option<Kind>),
    Entry(Box<Entry>),
}

/// An operation that cannot apply to the key as it is, or a write the
/// store refuses at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum OpError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment would produce NaN or Infinity")]
    NotFinite,
    #[error("ERR hash value is not an integer")]
    HashNotInteger,
    #[error("ERR hash value is not a float")]
    HashNotFloat,
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    TooLong,
    #[error("ERR invalid expire time in 'getex' command")]
    InvalidGetExExpiry,
    #[error("WRONGTYPE Key is not a valid HyperLogLog string value.")]
    NotHll,
    #[error("INVALIDOBJ Corrupted HLL object detected")]
    BadHll,
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR index out of range")]
    OutOfRange,
    #[error("ERR resulting score is not a number (NaN)")]
    ScoreNaN,
    #[error("ERR disk full: writes are refused until space is freed on the data dir's disk (reads still work)")]
    DiskFull,
    #[error("ERR disk failure: writes are refused (reads still work); the node must be restarted, see its log")]
    DiskFailed,
}

impl OpError {
    /// The stable error code the HTTP API reports.
    pub fn code(self) -> &'static str {
        match self {
            OpError::WrongType => "wrong_type",
            OpError::NotInteger => "not_integer",
            OpError::Overflow => "overflow",
            OpError::NotFloat => "not_float",
            OpError::NotFinite => "not_finite",
            OpError::HashNotInteger => "not_integer",
            OpError::HashNotFloat => "not_float",
            OpError::TooLong => "too_long",
            OpError::InvalidGetExExpiry => "invalid_expire",
            OpError::NotHll => "wrong_type",
            OpError::BadHll => "corrupt_hll",
            OpError::NoSuchKey => "no_such_key",
            OpError::OutOfRange => "out_of_range",
            OpError::ScoreNaN => "not_a_number",
            OpError::DiskFull => "disk_full",
            OpError::DiskFailed => "disk_failed",
        }
    }

    /// The message without Redis's leading error code.
    pub fn message(self) -> String {
        let text = self.to_string();
        match text.split_once(' ') {
            Some((code, rest)) if code.chars().all(|c| c.is_ascii_uppercase()) => rest.to_string(),
            _ => text,
        }
    }
}

pub type OpResult = Result<Reply, OpError>;

#[cfg(test)]
mod tests {
    use super::parse_int;

    #[test]
    fn parse_int_matches_string2ll() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }
}
