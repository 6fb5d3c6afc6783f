//! Redis commands as Squall operations: a pure translation from a command's
//! arguments to store operations and back to reply frames. No I/O here; the
//! connection loop (`redis`) runs what this produces. The time
//! for relative expiries comes from the caller's clock (the store's), read
//! only by the commands that need it.

use crate::pubsub::Kind as PubKind;
use crate::resp::Frame;
use bytes::Bytes;
use squall_store::hll::Registers;
use squall_store::lattice::{Kind, PhysicalClock};
use squall_store::{
    ExpireIf, GetExpiry, LexBound, Op, OpError, OpResult, Reply, ScoreBound, SetExpiry, ZAddOpts, ZBy, ZRange,
};

/// A parsed command.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// One operation on one key.
    Key { key: Bytes, op: Op, render: Render },
    /// Operations on several keys that apply atomically (MSET, multi-key DEL...).
    Keys { ops: Vec<(Bytes, Op)>, combine: Combine },
    /// SINTERSTORE, SUNIONSTORE, SDIFFSTORE and BITOP: the values at
    /// `keys` combined into `dest`, in one unit that applies only if they
    /// still read as they were combined.
    Stored { dest: Bytes, keys: Vec<Bytes>, how: StoreHow },
    /// SMOVE: the member from one set to another, if it is there, in one unit.
    Move { from: Bytes, to: Bytes, member: Bytes },
    /// RENAME (`copy` false), RENAMENX (`only_new` too) and COPY (`copy`;
    /// `only_new` unless REPLACE): the value at `from` written at `to`.
    Relocate { from: Bytes, to: Bytes, copy: bool, only_new: bool },
    /// LMOVE, RPOPLPUSH (and, with `block`, BLMOVE, BRPOPLPUSH): the item
    /// at one end of `from` to one end of `to`, in one unit.
    ListMove { from: Bytes, to: Bytes, from_head: bool, to_head: bool, block: Option<std::time::Duration> },
    /// ZUNIONSTORE, ZINTERSTORE (`inter`), ZRANGESTORE (`range`): the
    /// sorted sets (or sets, their members scored 1) at `keys` combined into
    /// `dest`, in one unit that applies only if they still read as combined.
    ZStore { dest: Bytes, keys: Vec<Bytes>, how: ZStoreHow },
    /// MSETNX: every pair set in one unit if none of the keys is there.
    SetNew { pairs: Vec<(Bytes, Bytes)> },
    /// ZUNION, ZINTER, ZDIFF, ZINTERCARD: the sorted sets (or sets) at
    /// `keys`, read in one unit and combined.
    ZCombine { keys: Vec<Bytes>, how: ZStoreHow, out: ZOut },
    /// BLPOP, BRPOP, LMPOP, BLMPOP, BZPOPMIN, BZPOPMAX, ZMPOP, BZMPOP:
    /// pops from the first of `keys` that has something, waiting up to
    /// `block` (zero: for ever) for one to; at once if `None`.
    Pop { keys: Vec<Bytes>, from: PopFrom, block: Option<std::time::Duration> },
    /// Everything that is not about keys: connection and server commands.
    Server(Server),
}

/// What a [`Cmd::Pop`] pops: with no count, one item (BLPOP: key and
/// item) or member (BZPOPMIN: key, member, score); with one (the MPOP
/// commands), up to that many, as the key and a list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PopFrom {
    List { head: bool, count: Option<u64> },
    ZSet { max: bool, count: Option<u64> },
}

impl PopFrom {
    pub fn op(self) -> Op {
        match self {
            PopFrom::List { head, count } => Op::Pop { head, count },
            PopFrom::ZSet { max, count } => Op::ZPop { max, count },
        }
    }

    /// The reply for what was popped from `key`, or `None` if nothing was.
    pub fn reply(self, key: Bytes, reply: Reply) -> Option<Frame> {
        let pairs = |pairs: Vec<(Bytes, f64)>| {
            pairs.into_iter().map(|(m, s)| Frame::Array(vec![Frame::Bulk(m), Frame::Double(s)])).collect()
        };
        match (self, reply) {
            (PopFrom::List { count: None, .. }, Reply::Bytes(item)) => {
                Some(Frame::Array(vec![Frame::Bulk(key), Frame::Bulk(item)]))
            }
            (PopFrom::List { count: Some(_), .. }, Reply::List(items)) if !items.is_empty() => {
                Some(Frame::Array(vec![Frame::Bulk(key), Frame::Array(items.into_iter().map(Frame::Bulk).collect())]))
            }
            (PopFrom::ZSet { count: None, .. }, Reply::Scored(mut popped)) if !popped.is_empty() => {
                let (member, score) = popped.swap_remove(0);
                Some(Frame::Array(vec![Frame::Bulk(key), Frame::Bulk(member), Frame::Double(score)]))
            }
            (PopFrom::ZSet { count: Some(_), .. }, Reply::Scored(popped)) if !popped.is_empty() => {
                Some(Frame::Array(vec![Frame::Bulk(key), Frame::Array(pairs(popped))]))
            }
            _ => None,
        }
    }
}

/// What a [`Cmd::ZCombine`] answers: the members in score order, with
/// their scores, or how many there are (up to a limit, 0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZOut {
    Members,
    Scored,
    Card(usize),
}

/// The frame for what ZUNION, ZINTER, ZDIFF or ZINTERCARD combined.
pub fn zcombined(pairs: Result<Vec<(Bytes, f64)>, OpError>, out: ZOut) -> Frame {
    use squall_store::lattice::Score;
    let mut pairs = match pairs {
        Ok(p) => p,
        Err(e) => return op_error(e),
    };
    if let ZOut::Card(limit) = out {
        let n = if limit == 0 { pairs.len() } else { pairs.len().min(limit) };
        return Frame::Integer(n as i64);
    }
    pairs.sort_by(|(m, s), (n, t)| Score(*s).cmp(&Score(*t)).then_with(|| m.cmp(n)));
    match out {
        ZOut::Scored => Frame::Scored(pairs),
        _ => Frame::Array(pairs.into_iter().map(|(m, _)| Frame::Bulk(m)).collect()),
    }
}

/// What ZUNIONSTORE, ZINTERSTORE and ZRANGESTORE make.
#[derive(Debug, Clone, PartialEq)]
pub enum ZStoreHow {
    Union {
        weights: Vec<f64>,
        aggregate: Aggregate,
    },
    Inter {
        weights: Vec<f64>,
        aggregate: Aggregate,
    },
    /// The first's members that none of the others has, with its scores.
    Diff,
    Range(ZRange),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Min,
    Max,
}

/// How a single-key op's reply becomes a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    Plain,
    /// Milliseconds to live, shown in seconds (TTL).
    Seconds,
    /// Whether it applied, as 1 or 0 (SETNX: OK or nil).
    Flag,
    /// A string's length (STRLEN, HSTRLEN); nothing is 0.
    Len,
    /// GETRANGE's bytes from `start` to `end`, both included, negative
    /// ones counting from the end.
    Range(i64, i64),
    /// HKEYS and HVALS: the fields, or the values, of HGETALL's pairs.
    Fields,
    Values,
    /// HGETALL's pairs, as a map (in RESP3).
    Pairs,
    /// SMEMBERS' members, as a set (in RESP3).
    Members,
    /// LPOP's and RPOP's with a count: no list is a null array.
    Popped,
    /// ZPOPMIN's and ZPOPMAX's without a count: member and score, flat.
    ScoredFlat,
    /// HRANDFIELD WITHVALUES: field and value pairs, nested in RESP3.
    PairList,
    /// EXPIRETIME: milliseconds since the Unix epoch, shown in seconds.
    AtSeconds,
    /// ZLEXCOUNT: how many members the range has.
    Count,
    /// GETBIT, BITCOUNT, BITPOS: the string's bits.
    Bits(crate::bits::Query),
    /// PFCOUNT of one key.
    HllCount,
    /// OBJECT FREQ of what EXISTS answered: no access frequency is kept
    /// (as in Redis without an LFU policy); nil for no key.
    Freq,
    /// OBJECT REFCOUNT of what EXISTS answered: 1 (values are not shared
    /// as Redis shares small integers); nil for no key.
    Refcount,
}

/// What a [`Cmd::Stored`] makes of its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHow {
    /// The sets' members (`Combine` is Inter, Union or Diff).
    Sets(Combine),
    /// The strings' bits.
    Bits(crate::bits::BitOp),
    /// PFMERGE: the HyperLogLogs' registers, merged into the destination's.
    Hll,
}

impl StoreHow {
    /// How each source is read.
    pub fn read(self) -> Op {
        match self {
            StoreHow::Sets(_) => Op::SMembers,
            StoreHow::Bits(_) | StoreHow::Hll => Op::Get,
        }
    }

    /// From what reading each source gave, the answer and the writes that
    /// make the destination what it becomes, in order.
    pub fn make(self, results: Vec<OpResult>) -> Result<(Frame, Vec<Op>), OpError> {
        let (n, fill) = match self {
            StoreHow::Sets(how) => {
                let members = combine_sets(results, how)?;
                (members.len() as i64, (!members.is_empty()).then_some(Op::SAdd(members)))
            }
            StoreHow::Bits(op) => crate::bits::combine(results, op)?,
            StoreHow::Hll => {
                let regs = hll_union(results)?;
                return Ok((Frame::ok(), vec![Op::PfMerge(Bytes::copy_from_slice(regs.raw()))]));
            }
        };
        Ok((Frame::Integer(n), replaced(fill)))
    }
}

/// The writes that replace a key with what `fill` makes (none: nothing).
pub fn replaced(fill: Option<Op>) -> Vec<Op> {
    std::iter::once(Op::Del).chain(fill).collect()
}

/// The registers of the HyperLogLogs read (a key that is not there is an
/// empty one), each the largest of its own in them.
fn hll_union(results: Vec<OpResult>) -> Result<Registers, OpError> {
    let mut union = Registers::default();
    for r in results {
        if let Reply::Bytes(s) = r? {
            union.merge(&Registers::read(&s)?);
        }
    }
    Ok(union)
}

/// PFCOUNT of one key: the count it has cached, if valid, else counted.
fn hll_count(reply: Reply) -> Frame {
    match reply {
        Reply::Bytes(s) => match Registers::read(&s) {
            Ok(regs) => Frame::Integer(Registers::cached(&s).unwrap_or_else(|| regs.count()) as i64),
            Err(e) => op_error(e),
        },
        _ => Frame::Integer(0),
    }
}

/// How the replies of a multi-key command become one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// MGET: one value per key; a key of another type reads as nil.
    Values,
    /// MSET: OK.
    Ok,
    /// DEL, EXISTS: how many answered 1.
    Count,
    /// SINTER, SUNION, SDIFF over the sets' members (SMEMBERS of each).
    Inter,
    Union,
    Diff,
    /// SINTERCARD: the intersection's size, counted up to a limit (0: none).
    InterCard(usize),
    /// PFCOUNT of several keys: the count of their union.
    HllCount,
}

#[derive(Debug, Clone)]
pub enum Server {
    /// A command queued in MULTI whose arguments were refused (a syntax
    /// error, a bad number): its error is its answer at EXEC, as in Redis.
    Refused(Frame),
    Ping(Option<Bytes>),
    Echo(Bytes),
    Quit,
    Select(Bytes),
    /// HELLO [protover [AUTH username password] [SETNAME clientname]]
    Hello {
        proto: Option<Bytes>,
        auth: Option<(Bytes, Bytes)>,
        setname: Option<Bytes>,
    },
    /// AUTH [username] password
    Auth {
        user: Option<Bytes>,
        password: Bytes,
    },
    ClientSetName(Bytes),
    ClientGetName,
    ClientId,
    ClientSetInfo,
    /// CLIENT LIST (every connection this user may see), CLIENT INFO (this one).
    ClientList,
    ClientInfo,
    /// CLIENT KILL: by the old form's address, or by filters (ID, ADDR,
    /// USER, SKIPME); `old` says which reply the form wants.
    ClientKill {
        id: Option<u64>,
        addr: Option<String>,
        user: Option<String>,
        skip_me: bool,
        old: bool,
    },
    /// COMMAND and its subcommands (the arguments after COMMAND).
    Command(Vec<Bytes>),
    ConfigGet(Vec<Bytes>),
    ConfigSet(Vec<(Bytes, Bytes)>),
    /// INFO's sections asked for (none: the default ones).
    Info(Vec<String>),
    DbSize,
    RandomKey,
    Keys(Bytes),
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        kind: Option<String>,
    },
    Multi,
    Exec,
    Discard,
    Time,
    /// FLUSHDB (the connection's namespace) or FLUSHALL (`all`: the 16
    /// numbered databases the user may use).
    Flush {
        all: bool,
    },
    /// A command that only answers OK.
    Ok,
    /// CONFIG RESETSTAT: the command and error statistics start again.
    ResetStat,
    Watch(Vec<Bytes>),
    Unwatch,
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: the names to listen to.
    Subscribe(PubKind, Vec<Bytes>),
    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: the names (none: all).
    Unsubscribe(PubKind, Vec<Bytes>),
    /// PUBLISH (`shard` false) or SPUBLISH.
    Publish {
        shard: bool,
        channel: Bytes,
        message: Bytes,
    },
    /// PUBSUB CHANNELS or SHARDCHANNELS.
    PubsubChannels {
        shard: bool,
        pattern: Option<Bytes>,
    },
    /// PUBSUB NUMSUB or SHARDNUMSUB.
    PubsubNumsub {
        shard: bool,
        channels: Vec<Bytes>,
    },
    PubsubNumpat,
    /// A HELP subcommand's lines.
    Help(&'static [&'static str]),
    /// SAVE and BGSAVE: everything written so far flushed to disk.
    Save {
        background: bool,
    },
    /// LASTSAVE: when SAVE or BGSAVE last finished (or the node started).
    LastSave,
    /// ROLE: a primary with no replicas.
    Role,
    /// SORT and SORT_RO.
    Sort(Box<crate::sort::Sort>),
    /// RESET: the connection as new (no transaction, no watches, no
    /// subscriptions, RESP2, database 0, not authenticated unless the node is open).
    Reset,
}

/// The commands this server answers (for COMMAND, and for arity checks).
/// (name, arity as Redis states it: negative = at least that many.)
pub const COMMANDS: &[(&str, i64)] = &[
    ("get", 2),
    ("set", -3),
    ("setnx", 3),
    ("getset", 3),
    ("getdel", 2),
    ("getex", -2),
    ("append", 3),
    ("strlen", 2),
    ("getrange", 4),
    ("setrange", 4),
    ("getbit", 3),
    ("setbit", 4),
    ("bitcount", -2),
    ("bitpos", -3),
    ("bitop", -4),
    ("pfadd", -2),
    ("pfcount", -2),
    ("pfmerge", -2),
    ("save", 1),
    ("bgsave", -1),
    ("lastsave", 1),
    ("role", 1),
    ("sort", -2),
    ("sort_ro", -2),
    ("incrbyfloat", 3),
    ("hmget", -3),
    ("hkeys", 2),
    ("hvals", 2),
    ("hexists", 3),
    ("hstrlen", 3),
    ("hincrby", 4),
    ("hsetnx", 4),
    ("smismember", -3),
    ("spop", -2),
    ("srandmember", -2),
    ("sscan", -3),
    ("randomkey", 1),
    ("msetnx", -3),
    ("zunion", -3),
    ("zinter", -3),
    ("zdiff", -3),
    ("zdiffstore", -4),
    ("zintercard", -3),
    ("zlexcount", 4),
    ("hincrbyfloat", 4),
    ("hrandfield", -2),
    ("zrandmember", -2),
    ("lpos", -3),
    ("linsert", 5),
    ("touch", -2),
    ("substr", 4),
    ("expiretime", 2),
    ("pexpiretime", 2),
    ("hscan", -3),
    ("zscan", -3),
    ("sinter", -2),
    ("sunion", -2),
    ("sdiff", -2),
    ("sintercard", -3),
    ("sinterstore", -3),
    ("sunionstore", -3),
    ("sdiffstore", -3),
    ("smove", 4),
    ("rename", 3),
    ("renamenx", 3),
    ("copy", -3),
    ("time", 1),
    ("object", -2),
    ("memory", -2),
    ("flushdb", -1),
    ("flushall", -1),
    ("setex", 4),
    ("psetex", 4),
    ("del", -2),
    ("unlink", -2),
    ("exists", -2),
    ("mget", -2),
    ("mset", -3),
    ("incr", 2),
    ("incrby", 3),
    ("decr", 2),
    ("decrby", 3),
    ("sadd", -3),
    ("srem", -3),
    ("smembers", 2),
    ("sismember", 3),
    ("scard", 2),
    ("hset", -4),
    ("hmset", -4),
    ("hget", 3),
    ("hdel", -3),
    ("hgetall", 2),
    ("hlen", 2),
    ("type", 2),
    ("expire", -3),
    ("pexpire", -3),
    ("expireat", -3),
    ("pexpireat", -3),
    ("ttl", 2),
    ("pttl", 2),
    ("persist", 2),
    ("scan", -2),
    ("keys", 2),
    ("dbsize", 1),
    ("ping", -1),
    ("echo", 2),
    ("info", -1),
    ("command", -1),
    ("client", -2),
    ("config", -2),
    ("select", 2),
    ("hello", -1),
    ("auth", -2),
    ("quit", -1),
    ("multi", 1),
    ("exec", 1),
    ("discard", 1),
    ("watch", -2),
    ("unwatch", 1),
    ("subscribe", -2),
    ("psubscribe", -2),
    ("ssubscribe", -2),
    ("unsubscribe", -1),
    ("punsubscribe", -1),
    ("sunsubscribe", -1),
    ("publish", 3),
    ("spublish", 3),
    ("pubsub", -2),
    ("reset", 1),
    ("lpush", -3),
    ("rpush", -3),
    ("lpushx", -3),
    ("rpushx", -3),
    ("lpop", -2),
    ("rpop", -2),
    ("llen", 2),
    ("lindex", 3),
    ("lrange", 4),
    ("lset", 4),
    ("lrem", 4),
    ("ltrim", 4),
    ("lmove", 5),
    ("rpoplpush", 3),
    ("blmove", 6),
    ("brpoplpush", 4),
    ("blpop", -3),
    ("brpop", -3),
    ("lmpop", -4),
    ("blmpop", -5),
    ("bzpopmin", -3),
    ("bzpopmax", -3),
    ("zmpop", -4),
    ("bzmpop", -5),
    ("zadd", -4),
    ("zincrby", 4),
    ("zrem", -3),
    ("zscore", 3),
    ("zmscore", -3),
    ("zcard", 2),
    ("zrank", 3),
    ("zrevrank", 3),
    ("zcount", 4),
    ("zrange", -4),
    ("zrangebyscore", -4),
    ("zrevrangebyscore", -4),
    ("zrevrange", -4),
    ("zrangebylex", -4),
    ("zrevrangebylex", -4),
    ("zremrangebyrank", 4),
    ("zremrangebyscore", 4),
    ("zremrangebylex", 4),
    ("zpopmin", -2),
    ("zpopmax", -2),
    ("zrangestore", -5),
    ("zunionstore", -4),
    ("zinterstore", -4),
];

/// A score as ZADD and ZINCRBY take it (`inf`, `-inf`, `+inf` too; never NaN).
fn score(b: &Bytes) -> Result<f64, Frame> {
    parse_score(b).ok_or_else(|| Frame::err("value is not a valid float"))
}

fn parse_score(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    let f = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ if s.is_empty() || s.starts_with(|c: char| c.is_ascii_whitespace()) => return None,
        _ => s.parse::<f64>().ok()?,
    };
    (!f.is_nan()).then_some(f)
}

/// One end of a score range: `1.5`, `(1.5`, `-inf`, `+inf`.
fn score_bound(b: &Bytes) -> Result<ScoreBound, Frame> {
    let (open, text) = match b.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, &b[..]),
    };
    parse_score(text).map(|value| ScoreBound { value, open }).ok_or_else(|| Frame::err("min or max is not a float"))
}

/// One end of a lexical range: `-`, `+`, `[member`, `(member`.
fn lex_bound(b: &Bytes) -> Result<LexBound, Frame> {
    match b.first() {
        Some(b'-') if b.len() == 1 => Ok(LexBound::Lowest),
        Some(b'+') if b.len() == 1 => Ok(LexBound::Highest),
        Some(b'[') => Ok(LexBound::In(b.slice(1..))),
        Some(b'(') => Ok(LexBound::Out(b.slice(1..))),
        _ => Err(Frame::err("min or max not valid string range item")),
    }
}

/// ZRANGE's (and ZRANGESTORE's) arguments after the key: start stop
/// [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]. REV's bounds
/// come max first.
fn parse_zrange(args: &[Bytes], store: bool) -> Result<ZRange, Frame> {
    let (mut byscore, mut bylex, mut rev, mut limit, mut scores) = (false, false, false, None, false);
    let mut i = 2;
    while i < args.len() {
        match args[i].to_ascii_uppercase().as_slice() {
            b"BYSCORE" => byscore = true,
            b"BYLEX" => bylex = true,
            b"REV" => rev = true,
            b"WITHSCORES" if !store => scores = true,
            b"LIMIT" if i + 2 < args.len() => {
                limit = Some((int(&args[i + 1])?, int(&args[i + 2])?));
                i += 2;
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    if byscore && bylex {
        return Err(syntax());
    }
    if limit.is_some() && !byscore && !bylex {
        return Err(Frame::err("syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"));
    }
    if scores && bylex {
        return Err(Frame::err("syntax error, WITHSCORES not supported in combination with BYLEX"));
    }
    let (lo, hi) = if rev && (byscore || bylex) { (&args[1], &args[0]) } else { (&args[0], &args[1]) };
    let by = if byscore {
        ZBy::Score(score_bound(lo)?, score_bound(hi)?)
    } else if bylex {
        ZBy::Lex(lex_bound(lo)?, lex_bound(hi)?)
    } else {
        ZBy::Index(int(&args[0])?, int(&args[1])?)
    };
    Ok(ZRange { by, rev, limit, scores })
}

/// The older range commands' options: [WITHSCORES] [LIMIT offset count].
fn old_range_options(args: &[Bytes], scores_allowed: bool) -> Result<(bool, Option<(i64, i64)>), Frame> {
    let (mut scores, mut limit) = (false, None);
    let mut i = 0;
    while i < args.len() {
        match args[i].to_ascii_uppercase().as_slice() {
            b"WITHSCORES" if scores_allowed => scores = true,
            b"LIMIT" if i + 2 < args.len() => {
                limit = Some((int(&args[i + 1])?, int(&args[i + 2])?));
                i += 2;
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    Ok((scores, limit))
}

/// ZUNION's, ZINTER's and ZDIFF's (and their STORE forms', `name` in
/// lower case) `numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX]`,
/// and WITHSCORES if the command answers what it made (`read`): the keys,
/// how to combine them, and WITHSCORES. The ZDIFFs take no weights nor
/// aggregate.
fn parse_zstore(name: &str, args: &[Bytes], read: bool) -> Result<(Vec<Bytes>, ZStoreHow, bool), Frame> {
    let diff = name.starts_with("zdiff");
    let n = int(&args[0])?;
    if n <= 0 {
        return Err(Frame::err(format!("at least 1 input key is needed for '{name}' command")));
    }
    let n = n as usize;
    if args.len() < 1 + n {
        return Err(syntax());
    }
    let keys = args[1..1 + n].to_vec();
    let (mut weights, mut aggregate, mut scores) = (vec![1.0; n], Aggregate::Sum, false);
    let mut i = 1 + n;
    while i < args.len() {
        match args[i].to_ascii_uppercase().as_slice() {
            b"WITHSCORES" if read => scores = true,
            b"WEIGHTS" if !diff && i + n < args.len() => {
                for (w, arg) in weights.iter_mut().zip(&args[i + 1..i + 1 + n]) {
                    *w = parse_score(arg).ok_or_else(|| Frame::err("weight value is not a float"))?;
                }
                i += n;
            }
            b"AGGREGATE" if !diff && i + 1 < args.len() => {
                aggregate = match args[i + 1].to_ascii_uppercase().as_slice() {
                    b"SUM" => Aggregate::Sum,
                    b"MIN" => Aggregate::Min,
                    b"MAX" => Aggregate::Max,
                    _ => return Err(syntax()),
                };
                i += 1;
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    let how = match name.trim_end_matches("store") {
        "zunion" => ZStoreHow::Union { weights, aggregate },
        "zinter" => ZStoreHow::Inter { weights, aggregate },
        _ => ZStoreHow::Diff,
    };
    Ok((keys, how, scores))
}

/// What COMMAND says of a command besides its name and arity, as Redis
/// 7.0.15 says it (`command_table.tsv`, recorded from it).
struct CommandInfo {
    flags: Vec<&'static str>,
    first: i64,
    last: i64,
    step: i64,
    acl: Vec<&'static str>,
}

static COMMAND_INFO: std::sync::LazyLock<std::collections::HashMap<&'static str, CommandInfo>> =
    std::sync::LazyLock::new(|| {
        let list = |s: &'static str| s.split(',').filter(|w| !w.is_empty()).collect();
        include_str!("command_table.tsv")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&'static str> = l.split('\t').collect();
                let n = |i: usize| f.get(i)?.parse().ok();
                let info = CommandInfo {
                    flags: list(f.get(1)?),
                    first: n(2)?,
                    last: n(3)?,
                    step: n(4)?,
                    acl: list(f.get(5)?),
                };
                Some((f[0], info))
            })
            .collect()
    });

/// COMMAND's entry for one of [`COMMANDS`]: its name, arity, flags, first
/// and last key and step, ACL categories, and (none given) its tips, key
/// specifications and subcommands.
fn command_entry(name: &'static str, arity: i64) -> Frame {
    let words = |ws: &[&'static str]| Frame::Set(ws.iter().map(|w| Frame::Simple(w)).collect());
    let (flags, first, last, step, acl) = match COMMAND_INFO.get(name) {
        Some(i) => (words(&i.flags), i.first, i.last, i.step, words(&i.acl)),
        None => (words(&[]), 0, 0, 0, words(&[])),
    };
    Frame::Array(vec![
        Frame::Bulk(Bytes::from_static(name.as_bytes())),
        Frame::Integer(arity),
        flags,
        Frame::Integer(first),
        Frame::Integer(last),
        Frame::Integer(step),
        acl,
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

/// COMMAND, COMMAND COUNT, INFO, LIST and DOCS (which has no docs to give).
pub fn command_reply(args: &[Bytes]) -> Frame {
    let all = || Frame::Array(COMMANDS.iter().map(|(n, a)| command_entry(n, *a)).collect());
    let Some(sub) = args.first() else { return all() };
    match sub.to_ascii_uppercase().as_slice() {
        b"COUNT" if args.len() == 1 => Frame::Integer(COMMANDS.len() as i64),
        b"INFO" if args.len() == 1 => all(),
        b"INFO" => Frame::Array(
            args[1..]
                .iter()
                .map(|n| {
                    let n = lower(n);
                    COMMANDS.iter().find(|(c, _)| *c == n).map_or(Frame::Nil, |(c, a)| command_entry(c, *a))
                })
                .collect(),
        ),
        b"LIST" => Frame::Array(COMMANDS.iter().map(|(n, _)| Frame::Bulk(Bytes::from_static(n.as_bytes()))).collect()),
        b"DOCS" => Frame::Map(Vec::new()),
        _ => Frame::err(format!(
            "unknown subcommand '{}'. Try COMMAND COUNT, INFO, LIST or DOCS.",
            String::from_utf8_lossy(sub).chars().take(128).collect::<String>()
        )),
    }
}

/// Command names to their places and arities, hashed by foldhash (every
/// command is looked up: SipHash was 1% of a P16 SET).
type Table = std::collections::HashMap<Vec<u8>, (usize, i64), foldhash::fast::FixedState>;

/// Each command's place in [`COMMANDS`] and its arity, by its upper-cased
/// name: one hash lookup per command, however long the table grows.
static ARITY: std::sync::LazyLock<Table> = std::sync::LazyLock::new(|| {
    COMMANDS
        .iter()
        .enumerate()
        .map(|(i, (name, arity))| (name.to_ascii_uppercase().into_bytes(), (i, *arity)))
        .collect()
});

/// LMOVE's LEFT or RIGHT: whether it is the head.
fn side(b: &Bytes) -> Result<bool, Frame> {
    if b.eq_ignore_ascii_case(b"LEFT") {
        Ok(true)
    } else if b.eq_ignore_ascii_case(b"RIGHT") {
        Ok(false)
    } else {
        Err(syntax())
    }
}

/// A blocking command's timeout: seconds, fractions allowed; 0 waits for ever.
fn timeout(b: &Bytes) -> Result<std::time::Duration, Frame> {
    let secs = std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .ok_or_else(|| Frame::err("timeout is not a float or out of range"))?;
    if secs < 0.0 {
        return Err(Frame::err("timeout is negative"));
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| Frame::err("timeout is out of range"))
}

/// OBJECT HELP (IDLETIME is not served: Squall does not track accesses).
const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// PUBSUB HELP.
const PUBSUB_HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// The command's name as errors show it. Only error paths call this: an
/// allocation per command is a visible cost on the hot path.
fn lower(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

fn arity_error(name: &[u8]) -> Frame {
    Frame::err(format!("wrong number of arguments for '{}' command", lower(name)))
}

fn expire_error(name: &[u8]) -> Frame {
    Frame::err(format!("invalid expire time in '{}' command", lower(name)))
}

/// `ms` from now, on `clock`; `None` when that overflows.
fn from_now(clock: &dyn PhysicalClock, ms: i64) -> Option<i64> {
    i64::try_from(clock.now_ms()).ok()?.checked_add(ms)
}

pub(crate) fn int(b: &Bytes) -> Result<i64, Frame> {
    squall_store::parse_int(b).ok_or_else(|| Frame::err("value is not an integer or out of range"))
}

fn syntax() -> Frame {
    Frame::err("syntax error")
}

/// Upper-cases a command name into a small stack buffer (names are short).
fn upper(name: &[u8], buf: &mut [u8; 24]) -> Option<usize> {
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    Some(name.len())
}

/// Parses a command (a non-empty argument list) into a [`Cmd`], or the error
/// frame Redis would answer. `clock` turns relative expiries (SET EX,
/// SETEX, EXPIRE...) into absolute ones.
pub fn parse(args: &[Bytes], clock: &dyn PhysicalClock) -> Result<Cmd, Frame> {
    parse_indexed(&mut args.to_vec(), clock).1
}

/// [`parse`], and the command's place in [`COMMANDS`] if it is one (for
/// its statistics, even when its arguments are wrong). The arguments of
/// the hottest commands are moved out of `args`, not cloned (each clone and
/// drop of an argument is an atomic operation on the connection's read
/// buffer: for a pipelined SET, more of its cost than any lookup); the
/// name is always left.
pub fn parse_indexed(args: &mut [Bytes], clock: &dyn PhysicalClock) -> (Option<usize>, Result<Cmd, Frame>) {
    let mut buf = [0u8; 24];
    let n = upper(&args[0], &mut buf).unwrap_or(0);
    let name = &buf[..n];
    let Some(&(index, arity)) = ARITY.get(name) else {
        return (None, Err(unknown(args)));
    };
    if let Some(cmd) = parse_hot(args, name) {
        return (Some(index), cmd);
    }
    (Some(index), parse_known(args, name, arity, clock))
}

/// True if `args` names a known command with as many arguments as its
/// table entry allows: what Redis checks of a command queued in MULTI
/// (any other error is the command's answer at EXEC).
pub fn fits_table(args: &[Bytes]) -> bool {
    let mut buf = [0u8; 24];
    let n = upper(&args[0], &mut buf).unwrap_or(0);
    ARITY.get(&buf[..n]).is_some_and(|&(_, arity)| arity_fits(arity, args.len()))
}

/// True if `argc` arguments (the name included) fit `arity`: exactly that
/// many, or (negative) at least that many.
fn arity_fits(arity: i64, argc: usize) -> bool {
    let argc = argc as i64;
    (arity > 0 && argc == arity) || (arity < 0 && argc >= -arity)
}

/// The hottest commands in their plainest forms, parsed as [`parse_known`]
/// parses them, by moving their arguments; `None` for any other.
fn parse_hot(args: &mut [Bytes], name: &[u8]) -> Option<Result<Cmd, Frame>> {
    let take = std::mem::take::<Bytes>;
    let head = name[0] == b'L';
    let plain = |key: &mut Bytes, op| Some(Ok(Cmd::Key { key: take(key), op, render: Render::Plain }));
    match (name, args) {
        (b"GET", [_, key]) => plain(key, Op::Get),
        (b"SET", [_, key, value]) => plain(key, Op::Set { value: take(value), expiry: SetExpiry::None, get: false }),
        (b"INCR", [_, key]) => plain(key, Op::IncrBy(1)),
        (b"DECR", [_, key]) => plain(key, Op::IncrBy(-1)),
        (b"LPUSH" | b"RPUSH", [_, key, items @ ..]) if !items.is_empty() => {
            plain(key, Op::Push { head, items: items.iter_mut().map(take).collect(), existing: false })
        }
        (b"LPOP" | b"RPOP", [_, key]) => plain(key, Op::Pop { head, count: None }),
        (b"SADD", [_, key, members @ ..]) if !members.is_empty() => {
            plain(key, Op::SAdd(members.iter_mut().map(take).collect()))
        }
        (b"SPOP", [_, key]) => plain(key, Op::SPop(None)),
        (b"HSET", [_, key, pairs @ ..]) if !pairs.is_empty() && pairs.len().is_multiple_of(2) => {
            plain(key, Op::HSet(pairs.chunks_exact_mut(2).map(|p| (take(&mut p[0]), take(&mut p[1]))).collect()))
        }
        (b"LRANGE", [_, key, start, stop]) => match (int(start), int(stop)) {
            (Ok(start), Ok(stop)) => plain(key, Op::LRange(start, stop)),
            (Err(e), _) | (_, Err(e)) => Some(Err(e)),
        },
        _ => None,
    }
}

/// `-ERR unknown command`, as Redis words it.
fn unknown(args: &[Bytes]) -> Frame {
    {
        let shown: String = String::from_utf8_lossy(&args[0]).chars().take(128).collect();
        let mut rest = String::new();
        for a in args.iter().skip(1).take(8) {
            rest.push_str(&format!("'{}' ", String::from_utf8_lossy(a).chars().take(64).collect::<String>()));
        }
        Frame::err(format!("unknown command '{shown}', with args beginning with: {rest}"))
    }
}

fn parse_known(args: &[Bytes], name: &[u8], arity: i64, clock: &dyn PhysicalClock) -> Result<Cmd, Frame> {
    if !arity_fits(arity, args.len()) {
        return Err(arity_error(&args[0]));
    }
    let key = || args[1].clone();
    let one = |op: Op| Ok(Cmd::Key { key: key(), op, render: Render::Plain });
    match name {
        b"GET" => one(Op::Get),
        b"SET" => parse_set(args, clock),
        b"SETEX" | b"PSETEX" => {
            let t = int(&args[2])?;
            let ms = if name == b"SETEX" { t.checked_mul(1000) } else { Some(t) };
            let at = ms.filter(|ms| *ms > 0).and_then(|ms| from_now(clock, ms));
            let Some(at) = at else { return Err(expire_error(&args[0])) };
            one(Op::Set { value: args[3].clone(), expiry: SetExpiry::At(at as u64), get: false })
        }
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => {
            let op = || if matches!(name, b"EXISTS" | b"TOUCH") { Op::Exists } else { Op::Del };
            if args.len() == 2 {
                one(op())
            } else {
                Ok(Cmd::Keys { ops: args[1..].iter().map(|k| (k.clone(), op())).collect(), combine: Combine::Count })
            }
        }
        b"MGET" => {
            Ok(Cmd::Keys { ops: args[1..].iter().map(|k| (k.clone(), Op::Get)).collect(), combine: Combine::Values })
        }
        b"MSET" => {
            if args.len().is_multiple_of(2) {
                return Err(arity_error(&args[0]));
            }
            let ops = args[1..]
                .chunks(2)
                .map(|kv| (kv[0].clone(), Op::Set { value: kv[1].clone(), expiry: SetExpiry::None, get: false }))
                .collect();
            Ok(Cmd::Keys { ops, combine: Combine::Ok })
        }
        b"MSETNX" => {
            if args.len().is_multiple_of(2) {
                return Err(arity_error(&args[0]));
            }
            Ok(Cmd::SetNew { pairs: args[1..].chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect() })
        }
        b"INCR" => one(Op::IncrBy(1)),
        b"DECR" => one(Op::IncrBy(-1)),
        b"INCRBY" => one(Op::IncrBy(int(&args[2])?)),
        b"DECRBY" => {
            one(Op::IncrBy(int(&args[2])?.checked_neg().ok_or_else(|| Frame::err("decrement would overflow"))?))
        }
        b"SADD" => one(Op::SAdd(args[2..].to_vec())),
        b"SREM" => one(Op::SRem(args[2..].to_vec())),
        b"SMEMBERS" => Ok(Cmd::Key { key: key(), op: Op::SMembers, render: Render::Members }),
        b"SISMEMBER" => one(Op::SIsMember(args[2].clone())),
        b"SCARD" => one(Op::SCard),
        b"HSET" | b"HMSET" => {
            if !args.len().is_multiple_of(2) {
                return Err(arity_error(&args[0]));
            }
            let op = Op::HSet(args[2..].chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect());
            if name == b"HMSET" {
                // HMSET is HSET that answers OK.
                return Ok(Cmd::Keys { ops: vec![(key(), op)], combine: Combine::Ok });
            }
            one(op)
        }
        b"HGET" => one(Op::HGet(args[2].clone())),
        b"HDEL" => one(Op::HDel(args[2..].to_vec())),
        b"HGETALL" => Ok(Cmd::Key { key: key(), op: Op::HGetAll, render: Render::Pairs }),
        b"HLEN" => one(Op::HLen),
        b"HMGET" => one(Op::HMGet(args[2..].to_vec())),
        b"HKEYS" => Ok(Cmd::Key { key: key(), op: Op::HGetAll, render: Render::Fields }),
        b"HVALS" => Ok(Cmd::Key { key: key(), op: Op::HGetAll, render: Render::Values }),
        b"HEXISTS" => Ok(Cmd::Key { key: key(), op: Op::HGet(args[2].clone()), render: Render::Flag }),
        b"HSTRLEN" => Ok(Cmd::Key { key: key(), op: Op::HGet(args[2].clone()), render: Render::Len }),
        b"HINCRBY" => one(Op::HIncrBy(args[2].clone(), int(&args[3])?)),
        b"HSETNX" => one(Op::HSetNx(args[2].clone(), args[3].clone())),
        b"SMISMEMBER" => one(Op::SMIsMember(args[2..].to_vec())),
        b"SINTER" | b"SUNION" | b"SDIFF" => {
            let combine = algebra(name);
            Ok(Cmd::Keys { ops: args[1..].iter().map(|k| (k.clone(), Op::SMembers)).collect(), combine })
        }
        b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE" => {
            let combine = algebra(&name[..name.len() - 5]);
            Ok(Cmd::Stored { dest: key(), keys: args[2..].to_vec(), how: StoreHow::Sets(combine) })
        }
        b"SINTERCARD" => {
            let (keys, limit) = parse_intercard(args, false)?;
            let ops = keys.into_iter().map(|k| (k, Op::SMembers)).collect();
            Ok(Cmd::Keys { ops, combine: Combine::InterCard(limit) })
        }
        b"ZINTERCARD" => {
            let (keys, limit) = parse_intercard(args, true)?;
            let how = ZStoreHow::Inter { weights: vec![1.0; keys.len()], aggregate: Aggregate::Sum };
            Ok(Cmd::ZCombine { keys, how, out: ZOut::Card(limit) })
        }
        b"ZUNION" | b"ZINTER" | b"ZDIFF" => {
            let (keys, how, scores) = parse_zstore(&lower(name), &args[1..], true)?;
            Ok(Cmd::ZCombine { keys, how, out: if scores { ZOut::Scored } else { ZOut::Members } })
        }
        b"ZLEXCOUNT" => {
            let by = ZBy::Lex(lex_bound(&args[2])?, lex_bound(&args[3])?);
            let q = ZRange { by, rev: false, limit: None, scores: false };
            Ok(Cmd::Key { key: key(), op: Op::ZRange(q), render: Render::Count })
        }
        b"SPOP" | b"SRANDMEMBER" if args.len() > 3 => Err(syntax()),
        b"SPOP" => {
            let count = match args.get(2) {
                None => None,
                Some(c) => Some(
                    int(c)
                        .ok()
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or_else(|| Frame::err("value is out of range, must be positive"))?,
                ),
            };
            // With a count, a set (in RESP3), as Redis answers it.
            let render = if count.is_some() { Render::Members } else { Render::Plain };
            Ok(Cmd::Key { key: key(), op: Op::SPop(count), render })
        }
        b"SRANDMEMBER" => one(Op::SRandMember(args.get(2).map(int).transpose()?)),
        b"HRANDFIELD" | b"ZRANDMEMBER" => {
            let flag: &[u8] = if name == b"HRANDFIELD" { b"WITHVALUES" } else { b"WITHSCORES" };
            let with = match args.get(3) {
                None => false,
                Some(w) if args.len() == 4 && w.eq_ignore_ascii_case(flag) => true,
                Some(_) => return Err(syntax()),
            };
            let count = args.get(2).map(int).transpose()?;
            if name == b"HRANDFIELD" {
                let render = if with { Render::PairList } else { Render::Plain };
                Ok(Cmd::Key { key: key(), op: Op::HRandField { count, values: with }, render })
            } else {
                one(Op::ZRandMember { count, scores: with })
            }
        }
        b"LPOS" => parse_lpos(args),
        b"LINSERT" => {
            let before = match args[2].to_ascii_uppercase().as_slice() {
                b"BEFORE" => true,
                b"AFTER" => false,
                _ => return Err(syntax()),
            };
            one(Op::LInsert { before, pivot: args[3].clone(), item: args[4].clone() })
        }
        b"SSCAN" | b"HSCAN" | b"ZSCAN" => {
            let kind = match name {
                b"SSCAN" => Kind::Set,
                b"HSCAN" => Kind::Map,
                _ => Kind::ZSet,
            };
            let cursor = scan_cursor(&args[2])?;
            let (pattern, count, kind_option) = scan_options(&args[3..])?;
            if kind_option.is_some() {
                return Err(syntax());
            }
            one(Op::ElementScan { kind, cursor, count, pattern })
        }
        b"RENAME" | b"RENAMENX" => {
            Ok(Cmd::Relocate { from: key(), to: args[2].clone(), copy: false, only_new: name == b"RENAMENX" })
        }
        b"COPY" => {
            let mut replace = false;
            let mut i = 3;
            while i < args.len() {
                match args[i].to_ascii_uppercase().as_slice() {
                    b"REPLACE" => replace = true,
                    b"DB" if i + 1 < args.len() => {
                        return Err(Frame::err("COPY to another database is not supported yet"));
                    }
                    _ => return Err(syntax()),
                }
                i += 1;
            }
            if args[1] == args[2] {
                return Err(Frame::err("source and destination objects are the same"));
            }
            Ok(Cmd::Relocate { from: key(), to: args[2].clone(), copy: true, only_new: !replace })
        }
        b"OBJECT" => match (args[1].to_ascii_uppercase().as_slice(), args.len()) {
            (b"ENCODING", 3) => Ok(Cmd::Key { key: args[2].clone(), op: Op::Encoding, render: Render::Plain }),
            (b"FREQ", 3) => Ok(Cmd::Key { key: args[2].clone(), op: Op::Exists, render: Render::Freq }),
            (b"REFCOUNT", 3) => Ok(Cmd::Key { key: args[2].clone(), op: Op::Exists, render: Render::Refcount }),
            (b"HELP", 2) => Ok(Cmd::Server(Server::Help(OBJECT_HELP))),
            (sub @ (b"ENCODING" | b"FREQ" | b"REFCOUNT" | b"HELP"), _) => Err(Frame::err(format!(
                "wrong number of arguments for 'object|{}' command",
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            ))),
            _ => {
                Err(Frame::err(format!("unknown subcommand '{}'. Try OBJECT HELP.", String::from_utf8_lossy(&args[1]))))
            }
        },
        b"MEMORY" => match (args[1].to_ascii_uppercase().as_slice(), &args[2..]) {
            (b"USAGE", [key]) => Ok(Cmd::Key { key: key.clone(), op: Op::MemoryUsage, render: Render::Plain }),
            (b"USAGE", [key, samples, n]) if samples.eq_ignore_ascii_case(b"SAMPLES") => {
                int(n)?;
                Ok(Cmd::Key { key: key.clone(), op: Op::MemoryUsage, render: Render::Plain })
            }
            (b"USAGE", _) => Err(syntax()),
            _ => Err(Frame::err(format!(
                "unknown subcommand '{}'. Try MEMORY USAGE.",
                String::from_utf8_lossy(&args[1])
            ))),
        },
        b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" => {
            one(Op::Push { head: name[0] == b'L', items: args[2..].to_vec(), existing: name.len() == 6 })
        }
        b"LPOP" | b"RPOP" => {
            let head = name[0] == b'L';
            match args {
                [_, _] => one(Op::Pop { head, count: None }),
                [_, _, count] => {
                    let count = int(count)?;
                    if count < 0 {
                        return Err(Frame::err("value is out of range, must be positive"));
                    }
                    Ok(Cmd::Key { key: key(), op: Op::Pop { head, count: Some(count as u64) }, render: Render::Popped })
                }
                _ => Err(arity_error(&args[0])),
            }
        }
        b"LLEN" => one(Op::LLen),
        // The index's error comes after the key's (none, wrong type), as in Redis.
        b"LINDEX" => one(int(&args[2])
            .map_or(Op::Refused { kind: Kind::List, absent: None, error: OpError::NotInteger }, Op::LIndex)),
        b"LRANGE" => one(Op::LRange(int(&args[2])?, int(&args[3])?)),
        b"LSET" => one(match int(&args[2]) {
            Ok(i) => Op::LSet(i, args[3].clone()),
            Err(_) => Op::Refused { kind: Kind::List, absent: Some(OpError::NoSuchKey), error: OpError::NotInteger },
        }),
        b"LREM" => one(Op::LRem(int(&args[2])?, args[3].clone())),
        b"LTRIM" => one(Op::LTrim(int(&args[2])?, int(&args[3])?)),
        b"LMOVE" | b"BLMOVE" => {
            let block = if name == b"BLMOVE" { Some(timeout(&args[5])?) } else { None };
            let (from_head, to_head) = (side(&args[3])?, side(&args[4])?);
            Ok(Cmd::ListMove { from: key(), to: args[2].clone(), from_head, to_head, block })
        }
        b"RPOPLPUSH" | b"BRPOPLPUSH" => {
            let block = if name == b"BRPOPLPUSH" { Some(timeout(&args[3])?) } else { None };
            Ok(Cmd::ListMove { from: key(), to: args[2].clone(), from_head: false, to_head: true, block })
        }
        b"ZADD" => {
            let mut opts = ZAddOpts::default();
            let mut i = 2;
            while i < args.len() {
                match args[i].to_ascii_uppercase().as_slice() {
                    b"NX" => opts.nx = true,
                    b"XX" => opts.xx = true,
                    b"GT" => opts.gt = true,
                    b"LT" => opts.lt = true,
                    b"CH" => opts.ch = true,
                    b"INCR" => opts.incr = true,
                    _ => break,
                }
                i += 1;
            }
            let rest = &args[i..];
            if rest.is_empty() || !rest.len().is_multiple_of(2) {
                return Err(if rest.is_empty() { arity_error(&args[0]) } else { syntax() });
            }
            if opts.nx && opts.xx {
                return Err(Frame::err("XX and NX options at the same time are not compatible"));
            }
            if (opts.gt && opts.lt) || (opts.nx && (opts.gt || opts.lt)) {
                return Err(Frame::err("GT, LT, and/or NX options at the same time are not compatible"));
            }
            if opts.incr && rest.len() > 2 {
                return Err(Frame::err("INCR option supports a single increment-element pair"));
            }
            let pairs = rest.chunks(2).map(|p| Ok((score(&p[0])?, p[1].clone()))).collect::<Result<Vec<_>, Frame>>()?;
            one(Op::ZAdd { pairs, opts })
        }
        b"ZINCRBY" => {
            let opts = ZAddOpts { incr: true, ..ZAddOpts::default() };
            one(Op::ZAdd { pairs: vec![(score(&args[2])?, args[3].clone())], opts })
        }
        b"ZREM" => one(Op::ZRem(args[2..].to_vec())),
        b"ZSCORE" => one(Op::ZScore(args[2].clone())),
        b"ZMSCORE" => one(Op::ZMScore(args[2..].to_vec())),
        b"ZCARD" => one(Op::ZCard),
        b"ZRANK" | b"ZREVRANK" => one(Op::ZRank { member: args[2].clone(), rev: name == b"ZREVRANK" }),
        b"ZCOUNT" => one(Op::ZCount(score_bound(&args[2])?, score_bound(&args[3])?)),
        b"ZRANGE" => {
            let q = parse_zrange(&args[2..], false)?;
            let render = Render::Plain;
            Ok(Cmd::Key { key: key(), op: Op::ZRange(q), render })
        }
        b"ZREVRANGE" => {
            let (scores, limit) = old_range_options(&args[4..], true)?;
            if limit.is_some() {
                return Err(syntax());
            }
            let q = ZRange { by: ZBy::Index(int(&args[2])?, int(&args[3])?), rev: true, limit: None, scores };
            Ok(Cmd::Key { key: key(), op: Op::ZRange(q), render: Render::Plain })
        }
        b"ZRANGEBYSCORE" | b"ZREVRANGEBYSCORE" | b"ZRANGEBYLEX" | b"ZREVRANGEBYLEX" => {
            let rev = name.starts_with(b"ZREV");
            let lex = name.ends_with(b"LEX");
            let (scores, limit) = old_range_options(&args[4..], !lex)?;
            let (lo, hi) = if rev { (&args[3], &args[2]) } else { (&args[2], &args[3]) };
            let by = if lex {
                ZBy::Lex(lex_bound(lo)?, lex_bound(hi)?)
            } else {
                ZBy::Score(score_bound(lo)?, score_bound(hi)?)
            };
            let q = ZRange { by, rev, limit, scores };
            Ok(Cmd::Key { key: key(), op: Op::ZRange(q), render: Render::Plain })
        }
        b"ZREMRANGEBYRANK" => one(Op::ZRemRange(ZBy::Index(int(&args[2])?, int(&args[3])?))),
        b"ZREMRANGEBYSCORE" => one(Op::ZRemRange(ZBy::Score(score_bound(&args[2])?, score_bound(&args[3])?))),
        b"ZREMRANGEBYLEX" => one(Op::ZRemRange(ZBy::Lex(lex_bound(&args[2])?, lex_bound(&args[3])?))),
        b"ZPOPMIN" | b"ZPOPMAX" => {
            let max = name == b"ZPOPMAX";
            match args {
                [_, _] => Ok(Cmd::Key { key: key(), op: Op::ZPop { max, count: None }, render: Render::ScoredFlat }),
                [_, _, count] => {
                    let count = int(count)?;
                    if count < 0 {
                        return Err(Frame::err("value is out of range, must be positive"));
                    }
                    Ok(Cmd::Key { key: key(), op: Op::ZPop { max, count: Some(count as u64) }, render: Render::Plain })
                }
                _ => Err(syntax()),
            }
        }
        b"ZRANGESTORE" => {
            let q = parse_zrange(&args[3..], true)?;
            Ok(Cmd::ZStore { dest: key(), keys: vec![args[2].clone()], how: ZStoreHow::Range(q) })
        }
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => {
            let (keys, how, _) = parse_zstore(&lower(name), &args[2..], false)?;
            Ok(Cmd::ZStore { dest: key(), keys, how })
        }
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => {
            let block = timeout(&args[args.len() - 1])?;
            let from = match name {
                b"BLPOP" | b"BRPOP" => PopFrom::List { head: name == b"BLPOP", count: None },
                _ => PopFrom::ZSet { max: name == b"BZPOPMAX", count: None },
            };
            Ok(Cmd::Pop { keys: args[1..args.len() - 1].to_vec(), from, block: Some(block) })
        }
        b"LMPOP" | b"ZMPOP" => parse_mpop(name, &args[1..], None),
        b"BLMPOP" | b"BZMPOP" => parse_mpop(&name[1..], &args[2..], Some(timeout(&args[1])?)),
        b"SMOVE" => Ok(Cmd::Move { from: key(), to: args[2].clone(), member: args[3].clone() }),
        b"APPEND" => one(Op::Append(args[2].clone())),
        b"STRLEN" => Ok(Cmd::Key { key: key(), op: Op::Get, render: Render::Len }),
        b"GETBIT" => Ok(Cmd::Key { key: key(), op: Op::Get, render: Render::Bits(crate::bits::getbit(args)?) }),
        b"BITCOUNT" => Ok(Cmd::Key { key: key(), op: Op::Get, render: Render::Bits(crate::bits::bitcount(args)) }),
        b"BITPOS" => Ok(Cmd::Key { key: key(), op: Op::Get, render: Render::Bits(crate::bits::bitpos(args)?) }),
        b"SETBIT" => one(crate::bits::setbit(args)?),
        b"PFADD" => one(Op::PfAdd(args[2..].to_vec())),
        b"PFCOUNT" if args.len() == 2 => Ok(Cmd::Key { key: key(), op: Op::Get, render: Render::HllCount }),
        b"PFCOUNT" => {
            Ok(Cmd::Keys { ops: args[1..].iter().map(|k| (k.clone(), Op::Get)).collect(), combine: Combine::HllCount })
        }
        b"PFMERGE" => Ok(Cmd::Stored { dest: key(), keys: args[2..].to_vec(), how: StoreHow::Hll }),
        b"BITOP" => {
            let (op, dest, keys) = crate::bits::bitop(args)?;
            Ok(Cmd::Stored { dest, keys, how: StoreHow::Bits(op) })
        }
        b"GETRANGE" | b"SUBSTR" => {
            Ok(Cmd::Key { key: key(), op: Op::Get, render: Render::Range(int(&args[2])?, int(&args[3])?) })
        }
        b"SETRANGE" => {
            let offset = int(&args[2])?;
            if offset < 0 {
                return Err(Frame::err("offset is out of range"));
            }
            // Checked again against the node's own limit (the same as for an argument).
            // An empty part changes nothing, so nothing is too long (as in Redis).
            if !args[3].is_empty()
                && (offset as u64).saturating_add(args[3].len() as u64) > squall_store::MAX_STRING as u64
            {
                return Err(Frame::err("string exceeds maximum allowed size (proto-max-bulk-len)"));
            }
            one(Op::SetRange(offset as u64, args[3].clone()))
        }
        // An increment that is no number is refused once the key is known
        // to hold a string or nothing (Redis checks the type first).
        b"INCRBYFLOAT" => one(increment(&args[2]).map_or(
            Op::Refused { kind: Kind::Register, absent: Some(OpError::NotFloat), error: OpError::NotFloat },
            Op::IncrByFloat,
        )),
        b"HINCRBYFLOAT" => {
            let delta = increment(&args[3])?;
            if delta.is_infinite() {
                return Err(Frame::err("value is NaN or Infinity"));
            }
            one(Op::HIncrByFloat(args[2].clone(), delta))
        }
        b"GETEX" => one(getex(&args[2..], clock)?),
        b"TYPE" => one(Op::Type),
        b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" => {
            // The options first, then the time, as Redis checks them.
            let test = expire_options(&args[3..])?;
            let t = int(&args[2])?;
            let at = match name {
                b"EXPIRE" => t.checked_mul(1000).and_then(|ms| from_now(clock, ms)),
                b"PEXPIRE" => from_now(clock, t),
                b"EXPIREAT" => t.checked_mul(1000),
                _ => Some(t),
            };
            let at = at.ok_or_else(|| expire_error(&args[0]))?.max(0) as u64;
            one(if test == ExpireIf::default() { Op::ExpireAt(at) } else { Op::ExpireAtIf(at, test) })
        }
        b"SETNX" => Ok(Cmd::Key {
            key: key(),
            op: Op::SetIf { value: args[2].clone(), expiry: SetExpiry::None, get: false, present: false },
            render: Render::Flag,
        }),
        b"GETSET" => one(Op::Set { value: args[2].clone(), expiry: SetExpiry::None, get: true }),
        b"GETDEL" => one(Op::GetDel),
        b"TTL" => Ok(Cmd::Key { key: key(), op: Op::Pttl, render: Render::Seconds }),
        b"EXPIRETIME" => Ok(Cmd::Key { key: key(), op: Op::ExpireTime, render: Render::AtSeconds }),
        b"PEXPIRETIME" => one(Op::ExpireTime),
        b"PTTL" => one(Op::Pttl),
        b"PERSIST" => one(Op::Persist),
        b"WATCH" => Ok(Cmd::Server(Server::Watch(args[1..].to_vec()))),
        _ => parse_server(name, args).map(Cmd::Server),
    }
}

/// SINTER, SUNION or SDIFF's way of combining.
fn algebra(name: &[u8]) -> Combine {
    match name {
        b"SINTER" => Combine::Inter,
        b"SUNION" => Combine::Union,
        _ => Combine::Diff,
    }
}

/// The members SINTER, SUNION or SDIFF (`how`) make of the sets' SMEMBERS
/// answers (a missing key is an empty set), or the first error.
pub fn combine_sets(results: Vec<OpResult>, how: Combine) -> Result<Vec<Bytes>, OpError> {
    let mut sets = Vec::with_capacity(results.len());
    for r in results {
        match r? {
            Reply::List(members) => sets.push(members),
            _ => sets.push(Vec::new()),
        }
    }
    let mut sets = sets.into_iter();
    let Some(first) = sets.next() else { return Ok(Vec::new()) };
    let mut acc: std::collections::HashSet<Bytes> = first.into_iter().collect();
    for set in sets {
        match how {
            Combine::Union => acc.extend(set),
            Combine::Diff => {
                for m in &set {
                    acc.remove(m);
                }
            }
            _ => {
                let other: std::collections::HashSet<Bytes> = set.into_iter().collect();
                acc.retain(|m| other.contains(m));
            }
        }
    }
    Ok(acc.into_iter().collect())
}

/// GETEX's op, from its options: at most one of EX, PX, EXAT, PXAT and
/// PERSIST. A time that is no number, or no time, is refused only once
/// the key is found to be a string, as Redis checks.
fn getex(opts: &[Bytes], clock: &dyn PhysicalClock) -> Result<Op, Frame> {
    let refused = |error| Op::Refused { kind: Kind::Register, absent: None, error };
    match opts {
        [] => Ok(Op::GetEx(None)),
        [persist] if persist.eq_ignore_ascii_case(b"PERSIST") => Ok(Op::GetEx(Some(GetExpiry::Persist))),
        [unit, t] => {
            let (scale, absolute) = match unit.to_ascii_uppercase().as_slice() {
                b"EX" => (1000, false),
                b"PX" => (1, false),
                b"EXAT" => (1000, true),
                b"PXAT" => (1, true),
                _ => return Err(syntax()),
            };
            let Some(t) = squall_store::parse_int(t) else { return Ok(refused(OpError::NotInteger)) };
            let at = t
                .checked_mul(scale)
                .filter(|ms| *ms > 0)
                .and_then(|ms| if absolute { Some(ms) } else { from_now(clock, ms) });
            Ok(at.map_or(refused(OpError::InvalidGetExExpiry), |at| Op::GetEx(Some(GetExpiry::At(at as u64)))))
        }
        _ => Err(syntax()),
    }
}

/// EXPIRE's NX, XX, GT and LT, with Redis's errors.
fn expire_options(opts: &[Bytes]) -> Result<ExpireIf, Frame> {
    let mut test = ExpireIf::default();
    for opt in opts {
        match opt.to_ascii_uppercase().as_slice() {
            b"NX" => test.nx = true,
            b"XX" => test.xx = true,
            b"GT" => test.gt = true,
            b"LT" => test.lt = true,
            _ => return Err(Frame::err(format!("Unsupported option {}", String::from_utf8_lossy(opt)))),
        }
    }
    if test.nx && (test.xx || test.gt || test.lt) {
        return Err(Frame::err("NX and XX, GT or LT options at the same time are not compatible"));
    }
    if test.gt && test.lt {
        return Err(Frame::err("GT and LT options at the same time are not compatible"));
    }
    Ok(test)
}

fn parse_set(args: &[Bytes], clock: &dyn PhysicalClock) -> Result<Cmd, Frame> {
    let mut expiry = SetExpiry::None;
    let mut get = false;
    // NX: only if absent (false); XX: only if present (true).
    let mut present: Option<bool> = None;
    let mut i = 3;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let mut timed = |scale: i64, absolute: bool| -> Result<(), Frame> {
            if expiry != SetExpiry::None {
                return Err(syntax());
            }
            let v = int(args.get(i + 1).ok_or_else(syntax)?)?;
            let at = v
                .checked_mul(scale)
                .filter(|ms| *ms > 0)
                .and_then(|ms| if absolute { Some(ms) } else { from_now(clock, ms) });
            let Some(at) = at else { return Err(Frame::err("invalid expire time in 'set' command")) };
            expiry = SetExpiry::At(at as u64);
            i += 1;
            Ok(())
        };
        match opt.as_slice() {
            b"EX" => timed(1000, false)?,
            b"PX" => timed(1, false)?,
            b"EXAT" => timed(1000, true)?,
            b"PXAT" => timed(1, true)?,
            b"KEEPTTL" if expiry == SetExpiry::None => expiry = SetExpiry::Keep,
            b"GET" => get = true,
            b"NX" if present.is_none() => present = Some(false),
            b"XX" if present.is_none() => present = Some(true),
            _ => return Err(syntax()),
        }
        i += 1;
    }
    let value = args[2].clone();
    let op = match present {
        None => Op::Set { value, expiry, get },
        Some(present) => Op::SetIf { value, expiry, get, present },
    };
    Ok(Cmd::Key { key: args[1].clone(), op, render: Render::Plain })
}

fn parse_server(name: &[u8], args: &[Bytes]) -> Result<Server, Frame> {
    let arg = |i: usize| args.get(i).cloned();
    Ok(match name {
        b"PING" if args.len() <= 2 => Server::Ping(arg(1)),
        b"ECHO" => Server::Echo(args[1].clone()),
        b"QUIT" => Server::Quit,
        b"SELECT" => Server::Select(args[1].clone()),
        b"HELLO" => {
            let (mut auth, mut setname, mut i) = (None, None, 2);
            while i < args.len() {
                let opt = args[i].to_ascii_uppercase();
                match opt.as_slice() {
                    b"AUTH" if i + 2 < args.len() => {
                        auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                        i += 3;
                    }
                    b"SETNAME" if i + 1 < args.len() => {
                        setname = Some(args[i + 1].clone());
                        i += 2;
                    }
                    _ => return Err(syntax()),
                }
            }
            Server::Hello { proto: arg(1), auth, setname }
        }
        b"AUTH" => match args.len() {
            2 => Server::Auth { user: None, password: args[1].clone() },
            3 => Server::Auth { user: Some(args[1].clone()), password: args[2].clone() },
            _ => return Err(syntax()),
        },
        b"INFO" => Server::Info(args[1..].iter().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()).collect()),
        b"DBSIZE" => Server::DbSize,
        b"RANDOMKEY" => Server::RandomKey,
        b"KEYS" => Server::Keys(args[1].clone()),
        b"MULTI" => Server::Multi,
        b"TIME" => Server::Time,
        b"SAVE" => Server::Save { background: false },
        b"BGSAVE" => match &args[1..] {
            [] => Server::Save { background: true },
            [s] if s.eq_ignore_ascii_case(b"SCHEDULE") => Server::Save { background: true },
            _ => return Err(syntax()),
        },
        b"LASTSAVE" => Server::LastSave,
        b"ROLE" => Server::Role,
        b"SORT" | b"SORT_RO" => Server::Sort(Box::new(crate::sort::parse(args, name == b"SORT_RO")?)),
        b"FLUSHDB" | b"FLUSHALL" => {
            match &args[1..] {
                [] => {}
                [mode] if mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC") => {}
                _ => return Err(syntax()),
            }
            Server::Flush { all: name == b"FLUSHALL" }
        }
        b"EXEC" => Server::Exec,
        b"DISCARD" => Server::Discard,
        b"UNWATCH" => Server::Unwatch,
        b"COMMAND" => Server::Command(args[1..].to_vec()),
        b"CLIENT" => {
            let sub = args[1].to_ascii_uppercase();
            match (sub.as_slice(), args.len()) {
                (b"SETNAME", 3) => {
                    if args[2].iter().any(|c| *c <= b' ' || *c > b'~') {
                        return Err(Frame::err("Client names cannot contain spaces, newlines or special characters."));
                    }
                    Server::ClientSetName(args[2].clone())
                }
                (b"GETNAME", 2) => Server::ClientGetName,
                (b"ID", 2) => Server::ClientId,
                (b"SETINFO", 4) => Server::ClientSetInfo,
                (b"LIST", 2) => Server::ClientList,
                (b"INFO", 2) => Server::ClientInfo,
                (b"KILL", 3) => Server::ClientKill {
                    id: None,
                    addr: Some(String::from_utf8_lossy(&args[2]).into_owned()),
                    user: None,
                    skip_me: false,
                    old: true,
                },
                (b"KILL", n) if n >= 4 && n % 2 == 0 => {
                    let (mut id, mut addr, mut user, mut skip_me) = (None, None, None, true);
                    for pair in args[2..].chunks(2) {
                        let value = String::from_utf8_lossy(&pair[1]).into_owned();
                        match pair[0].to_ascii_uppercase().as_slice() {
                            b"ID" => {
                                id = Some(
                                    value
                                        .parse::<u64>()
                                        .map_err(|_| Frame::err("client-id should be greater than 0"))?,
                                )
                            }
                            b"ADDR" => addr = Some(value),
                            b"USER" => user = Some(value),
                            b"SKIPME" => match value.to_ascii_lowercase().as_str() {
                                "yes" => skip_me = true,
                                "no" => skip_me = false,
                                _ => return Err(syntax()),
                            },
                            _ => return Err(syntax()),
                        }
                    }
                    Server::ClientKill { id, addr, user, skip_me, old: false }
                }
                (b"SETNAME" | b"GETNAME" | b"ID" | b"SETINFO" | b"LIST" | b"INFO" | b"KILL", _) => {
                    return Err(Frame::err(format!("wrong number of arguments for 'client|{}' command", lower(&sub))));
                }
                _ => {
                    return Err(Frame::err(format!(
                        "unknown subcommand '{}'. Try CLIENT SETNAME, GETNAME, ID, SETINFO, LIST, INFO or KILL.",
                        String::from_utf8_lossy(&args[1])
                    )));
                }
            }
        }
        b"CONFIG" if args[1].eq_ignore_ascii_case(b"GET") && args.len() >= 3 => Server::ConfigGet(args[2..].to_vec()),
        b"CONFIG" if args[1].eq_ignore_ascii_case(b"SET") => {
            if args.len() < 4 || !args.len().is_multiple_of(2) {
                return Err(Frame::err("wrong number of arguments for 'config|set' command"));
            }
            Server::ConfigSet(args[2..].chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect())
        }
        b"CONFIG" if args[1].eq_ignore_ascii_case(b"RESETSTAT") => Server::ResetStat,
        b"CONFIG" => {
            let sub = String::from_utf8_lossy(&args[1]);
            return Err(Frame::err(format!(
                "unknown subcommand '{sub}'. Try CONFIG GET, CONFIG SET, CONFIG RESETSTAT."
            )));
        }
        b"SCAN" => parse_scan(args)?,
        b"SUBSCRIBE" => Server::Subscribe(PubKind::Channel, args[1..].to_vec()),
        b"PSUBSCRIBE" => Server::Subscribe(PubKind::Pattern, args[1..].to_vec()),
        b"SSUBSCRIBE" => Server::Subscribe(PubKind::Shard, args[1..].to_vec()),
        b"UNSUBSCRIBE" => Server::Unsubscribe(PubKind::Channel, args[1..].to_vec()),
        b"PUNSUBSCRIBE" => Server::Unsubscribe(PubKind::Pattern, args[1..].to_vec()),
        b"SUNSUBSCRIBE" => Server::Unsubscribe(PubKind::Shard, args[1..].to_vec()),
        b"PUBLISH" | b"SPUBLISH" => {
            Server::Publish { shard: name == b"SPUBLISH", channel: args[1].clone(), message: args[2].clone() }
        }
        b"PUBSUB" => {
            let sub = args[1].to_ascii_uppercase();
            match (sub.as_slice(), args.len()) {
                (b"CHANNELS" | b"SHARDCHANNELS", 2 | 3) => {
                    Server::PubsubChannels { shard: sub.as_slice() == b"SHARDCHANNELS", pattern: args.get(2).cloned() }
                }
                (b"NUMSUB" | b"SHARDNUMSUB", _) => {
                    Server::PubsubNumsub { shard: sub.as_slice() == b"SHARDNUMSUB", channels: args[2..].to_vec() }
                }
                (b"NUMPAT", 2) => Server::PubsubNumpat,
                (b"HELP", 2) => Server::Help(PUBSUB_HELP),
                (b"NUMPAT" | b"HELP", _) => {
                    return Err(Frame::err(format!("wrong number of arguments for 'pubsub|{}' command", lower(&sub))));
                }
                (b"CHANNELS" | b"SHARDCHANNELS", _) => {
                    return Err(Frame::err(format!(
                        "unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                        String::from_utf8_lossy(&args[1])
                    )));
                }
                _ => {
                    return Err(Frame::err(format!(
                        "unknown subcommand '{}'. Try PUBSUB HELP.",
                        String::from_utf8_lossy(&args[1])
                    )));
                }
            }
        }
        b"RESET" => Server::Reset,
        _ => return Err(arity_error(&args[0])),
    })
}

/// INCRBYFLOAT's and HINCRBYFLOAT's increment.
fn increment(arg: &[u8]) -> Result<f64, Frame> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.starts_with(|c: char| c.is_ascii_whitespace()))
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| !f.is_nan())
        .ok_or_else(|| Frame::err("value is not a valid float"))
}

/// LPOS key element [RANK rank] [COUNT count] [MAXLEN len].
fn parse_lpos(args: &[Bytes]) -> Result<Cmd, Frame> {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0u64);
    let mut rest = args[3..].iter();
    while let Some(opt) = rest.next() {
        let Some(value) = rest.next() else { return Err(syntax()) };
        let not_negative = |what: &str| {
            let n = int(value)?;
            u64::try_from(n).map_err(|_| Frame::err(format!("{what} can't be negative")))
        };
        match opt.to_ascii_uppercase().as_slice() {
            b"RANK" => {
                rank = int(value)?;
                if rank == 0 {
                    return Err(Frame::err(
                        "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                    ));
                }
                if rank == i64::MIN {
                    return Err(Frame::err(format!(
                        "value is out of range, value must between {} and {}",
                        -i64::MAX,
                        i64::MAX
                    )));
                }
            }
            b"COUNT" => count = Some(not_negative("COUNT")?),
            b"MAXLEN" => maxlen = not_negative("MAXLEN")?,
            _ => return Err(syntax()),
        }
    }
    let op = Op::LPos { element: args[2].clone(), rank, count, maxlen };
    Ok(Cmd::Key { key: args[1].clone(), op, render: Render::Plain })
}

/// SINTERCARD's and ZINTERCARD's `numkeys key... [LIMIT limit]`.
/// Redis words their numkeys errors differently (`zset`: ZINTERCARD's).
fn parse_intercard(args: &[Bytes], zset: bool) -> Result<(Vec<Bytes>, usize), Frame> {
    let n = if zset {
        let n = int(&args[1])?;
        if n <= 0 {
            return Err(Frame::err("at least 1 input key is needed for 'zintercard' command"));
        }
        n
    } else {
        let n = int(&args[1]).map_err(|_| Frame::err("numkeys should be greater than 0"))?;
        if n <= 0 {
            return Err(Frame::err("numkeys should be greater than 0"));
        }
        n
    };
    let n = n as usize;
    if n > args.len() - 2 {
        return Err(if zset { syntax() } else { Frame::err("Number of keys can't be greater than number of args") });
    }
    let mut limit = 0;
    match &args[2 + n..] {
        [] => {}
        [opt, l] if opt.eq_ignore_ascii_case(b"LIMIT") => {
            let l = int(l)?;
            if l < 0 {
                return Err(Frame::err("LIMIT can't be negative"));
            }
            limit = l as usize;
        }
        _ => return Err(syntax()),
    }
    Ok((args[2..2 + n].to_vec(), limit))
}

/// LMPOP's and ZMPOP's `numkeys key... LEFT|RIGHT|MIN|MAX [COUNT n]`.
fn parse_mpop(name: &[u8], args: &[Bytes], block: Option<std::time::Duration>) -> Result<Cmd, Frame> {
    let positive = |b: &Bytes, what: &str| {
        int(b).ok().filter(|n| *n > 0).ok_or_else(|| Frame::err(format!("{what} should be greater than 0")))
    };
    let n = positive(&args[0], "numkeys")? as usize;
    let Some(side) = args.get(n + 1) else { return Err(syntax()) };
    // The side first, then the count, as Redis checks them.
    let side = side.to_ascii_uppercase();
    let from = match (name, side.as_slice()) {
        (b"LMPOP", b"LEFT" | b"RIGHT") => PopFrom::List { head: side == b"LEFT", count: None },
        (b"ZMPOP", b"MIN" | b"MAX") => PopFrom::ZSet { max: side == b"MAX", count: None },
        _ => return Err(syntax()),
    };
    let mut count = None;
    let mut rest = args[n + 2..].iter();
    while let Some(opt) = rest.next() {
        match rest.next() {
            Some(c) if count.is_none() && opt.eq_ignore_ascii_case(b"COUNT") => {
                count = Some(positive(c, "count")? as u64);
            }
            _ => return Err(syntax()),
        }
    }
    let count = Some(count.unwrap_or(1));
    let from = match from {
        PopFrom::List { head, .. } => PopFrom::List { head, count },
        PopFrom::ZSet { max, .. } => PopFrom::ZSet { max, count },
    };
    Ok(Cmd::Pop { keys: args[1..=n].to_vec(), from, block })
}

fn parse_scan(args: &[Bytes]) -> Result<Server, Frame> {
    let cursor = scan_cursor(&args[1])?;
    let (pattern, count, kind) = scan_options(&args[2..])?;
    Ok(Server::Scan { cursor, pattern, count, kind })
}

fn scan_cursor(arg: &[u8]) -> Result<u64, Frame> {
    std::str::from_utf8(arg).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| Frame::err("invalid cursor"))
}

/// A scan's MATCH, COUNT (10 by default) and TYPE.
fn scan_options(args: &[Bytes]) -> Result<(Option<Bytes>, usize, Option<String>), Frame> {
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).ok_or_else(syntax)?;
        match args[i].to_ascii_uppercase().as_slice() {
            b"MATCH" => pattern = Some(value.clone()),
            b"COUNT" => {
                let c = int(value)?;
                if c < 1 {
                    return Err(syntax());
                }
                count = c.min(100_000) as usize;
            }
            b"TYPE" => kind = Some(String::from_utf8_lossy(value).to_ascii_lowercase()),
            _ => return Err(syntax()),
        }
        i += 2;
    }
    Ok((pattern, count, kind))
}

/// The frame for one op's result.
pub fn render(result: OpResult, how: Render) -> Frame {
    let reply = match result {
        Err(e) => return op_error(e),
        Ok(reply) => reply,
    };
    match (how, reply) {
        (Render::Seconds | Render::AtSeconds, Reply::Int(ms)) => {
            Frame::Integer(if ms < 0 { ms } else { ms.saturating_add(500) / 1000 })
        }
        (Render::Count, Reply::List(items)) => Frame::Integer(items.len() as i64),
        (Render::PairList, Reply::List(flat)) => {
            let mut flat = flat.into_iter();
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            while let (Some(a), Some(b)) = (flat.next(), flat.next()) {
                pairs.push((a, b));
            }
            Frame::Pairs(pairs)
        }
        (Render::Flag, reply) => Frame::Integer(i64::from(reply != Reply::Nil)),
        (Render::Len, Reply::Bytes(b)) => Frame::Integer(b.len() as i64),
        (Render::Len, Reply::Nil) => Frame::Integer(0),
        (Render::Range(start, end), Reply::Bytes(b)) => Frame::Bulk(range(&b, start, end)),
        (Render::Range(..), Reply::Nil) => Frame::Bulk(Bytes::new()),
        (Render::Bits(query), reply) => crate::bits::answer(query, reply),
        (Render::HllCount, reply) => hll_count(reply),
        (Render::Freq | Render::Refcount, Reply::Int(0)) => Frame::Nil,
        (Render::Freq, _) => Frame::err(
            "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when \
             switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        (Render::Refcount, _) => Frame::Integer(1),
        (Render::Pairs, Reply::List(pairs)) => {
            let mut pairs = pairs.into_iter();
            let mut out = Vec::with_capacity(pairs.len() / 2);
            while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
                out.push((Frame::Bulk(k), Frame::Bulk(v)));
            }
            Frame::Map(out)
        }
        (Render::Members, Reply::List(members)) => Frame::Set(members.into_iter().map(Frame::Bulk).collect()),
        (Render::Popped, Reply::Nil) => Frame::NilArray,
        (Render::ScoredFlat, Reply::Scored(pairs)) => {
            Frame::Array(pairs.into_iter().flat_map(|(m, s)| [Frame::Bulk(m), Frame::Double(s)]).collect())
        }
        (Render::Fields | Render::Values, Reply::List(pairs)) => {
            let skip = usize::from(how == Render::Values);
            Frame::Array(pairs.into_iter().skip(skip).step_by(2).map(Frame::Bulk).collect())
        }
        (_, reply) => reply_frame(reply),
    }
}

/// GETRANGE's slice of `b`: `start` to `end` included, negative ones
/// from the end, clamped to the string.
fn range(b: &Bytes, start: i64, end: i64) -> Bytes {
    let len = b.len() as i64;
    let at = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    // Both from the end and crossed: nothing, even where clamping would
    // make them meet at the first byte (Redis's rule).
    let crossed = start < 0 && end < 0 && start > end;
    let (start, end) = (at(start), at(end).min(len - 1));
    if len == 0 || start > end || crossed {
        return Bytes::new();
    }
    b.slice(start as usize..=end as usize)
}

pub fn op_error(e: OpError) -> Frame {
    Frame::Error(e.to_string())
}

fn reply_frame(reply: Reply) -> Frame {
    match reply {
        Reply::Nil => Frame::Nil,
        Reply::Ok => Frame::ok(),
        Reply::Int(i) => Frame::Integer(i),
        Reply::Bytes(b) => Frame::Bulk(b),
        Reply::List(items) => Frame::Array(items.into_iter().map(Frame::Bulk).collect()),
        Reply::Array(replies) => Frame::Array(replies.into_iter().map(reply_frame).collect()),
        Reply::Type(kind) => Frame::Simple(kind.map_or("none", |k| k.redis_name())),
        Reply::Score(s) => Frame::Double(s),
        Reply::Scored(pairs) => Frame::Scored(pairs),
        // Entries only go to HTTP; a RESP command never asks for one.
        Reply::Entry(_) => Frame::Nil,
    }
}

/// The result of ZUNIONSTORE, ZINTERSTORE or ZRANGESTORE over the entries
/// read (sets count as sorted sets of score 1), as (member, score).
pub fn combine_zsets(results: Vec<OpResult>, how: &ZStoreHow) -> Result<Vec<(Bytes, f64)>, OpError> {
    use squall_store::lattice::{Value, ZSet};
    use std::collections::HashMap;
    let mut sets: Vec<Vec<(Bytes, f64)>> = Vec::with_capacity(results.len());
    let mut results_were_sets = false;
    for r in results {
        sets.push(match r? {
            Reply::Entry(e) => match e.value {
                Value::ZSet(z) => z.ordered().map(|(m, s)| (m.clone(), s)).collect(),
                Value::Set(m) => {
                    results_were_sets = true;
                    m.iter().filter(|(_, r)| r.value).map(|(k, _)| (k.clone(), 1.0)).collect()
                }
                Value::Tombstone => Vec::new(),
                _ => return Err(OpError::WrongType),
            },
            _ => Vec::new(),
        });
    }
    let (weights, aggregate, inter) = match how {
        ZStoreHow::Range(q) => {
            // ZRANGESTORE's source must be a sorted set (a set is one only to Z*STORE).
            if results_were_sets {
                return Err(OpError::WrongType);
            }
            let Some(only) = sets.pop() else { return Ok(Vec::new()) };
            let mut z = ZSet::default();
            let st = squall_store::lattice::Stamp::ZERO;
            for (m, s) in only {
                z.assign(m, squall_store::lattice::Lww::new(st, Some(squall_store::lattice::Score(s))));
            }
            return Ok(squall_store::zrange(&z, q));
        }
        ZStoreHow::Diff => {
            let mut sets = sets.into_iter();
            let first = sets.next().unwrap_or_default();
            let others: std::collections::HashSet<Bytes> = sets.flatten().map(|(m, _)| m).collect();
            return Ok(first.into_iter().filter(|(m, _)| !others.contains(m)).collect());
        }
        ZStoreHow::Union { weights, aggregate } => (weights, *aggregate, false),
        ZStoreHow::Inter { weights, aggregate } => (weights, *aggregate, true),
    };
    let mut acc: HashMap<Bytes, (f64, usize)> = HashMap::new();
    for (set, w) in sets.iter().zip(weights) {
        for (m, s) in set {
            // 0 times infinity is 0 here, as in Redis.
            let s = if *w == 0.0 || *s == 0.0 { 0.0 } else { s * w };
            let s = if s.is_nan() { 0.0 } else { s };
            match acc.get_mut(m) {
                Some((have, seen)) => {
                    *have = match aggregate {
                        Aggregate::Sum => {
                            let sum = *have + s;
                            if sum.is_nan() { 0.0 } else { sum }
                        }
                        Aggregate::Min => have.min(s),
                        Aggregate::Max => have.max(s),
                    };
                    *seen += 1;
                }
                None => {
                    acc.insert(m.clone(), (s, 1));
                }
            }
        }
    }
    let all = sets.len();
    Ok(acc.into_iter().filter(|(_, (_, seen))| !inter || *seen == all).map(|(m, (s, _))| (m, s)).collect())
}

/// The frame for a multi-key command's results.
pub fn combine(results: Vec<OpResult>, how: Combine) -> Frame {
    match how {
        Combine::Values => Frame::Array(
            results
                .into_iter()
                .map(|r| match r {
                    Ok(Reply::Bytes(b)) => Frame::Bulk(b),
                    _ => Frame::Nil,
                })
                .collect(),
        ),
        Combine::Ok => match results.into_iter().find_map(|r| r.err()) {
            Some(e) => op_error(e),
            None => Frame::ok(),
        },
        Combine::Count => Frame::Integer(results.iter().filter(|r| matches!(r, Ok(Reply::Int(1)))).count() as i64),
        Combine::Inter | Combine::Union | Combine::Diff => match combine_sets(results, how) {
            Ok(members) => Frame::Set(members.into_iter().map(Frame::Bulk).collect()),
            Err(e) => op_error(e),
        },
        Combine::HllCount => match hll_union(results) {
            Ok(regs) => Frame::Integer(regs.count() as i64),
            Err(e) => op_error(e),
        },
        Combine::InterCard(limit) => match combine_sets(results, Combine::Inter) {
            Ok(members) if limit > 0 => Frame::Integer(members.len().min(limit) as i64),
            Ok(members) => Frame::Integer(members.len() as i64),
            Err(e) => op_error(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_store::lattice::ManualClock;

    /// Milliseconds since the epoch on the tests' clock.
    const NOW: u64 = 1_700_000_000_000;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn parse(s: &[Bytes]) -> Result<Cmd, Frame> {
        super::parse(s, &ManualClock::new(NOW))
    }

    fn err(s: &str) -> String {
        match parse(&args(s)) {
            Err(Frame::Error(e)) => e,
            other => panic!("{s}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn the_hot_commands_parse_the_same_when_their_arguments_are_moved() {
        let clock = ManualClock::new(NOW);
        for line in [
            "GET k",
            "get k",
            "SET k v",
            "SET k v EX 10",
            "SET k v NX",
            "INCR k",
            "decr k",
            "LPUSH k a b c",
            "rpush k a",
            "LPUSH k",
            "LPOP k",
            "RPOP k 3",
            "SADD k a a b",
            "SPOP k",
            "SPOP k 2",
            "HSET k f v g w",
            "HSET k f v g",
            "HSET k f",
            "LRANGE k 0 -1",
            "LRANGE k x 1",
            "LRANGE k 0 y",
            "GET",
            "SET k",
        ] {
            let whole = args(line);
            let mut moved = whole.clone();
            let (index, parsed) = parse_indexed(&mut moved, &clock);
            let mut buf = [0u8; 24];
            let n = upper(&whole[0], &mut buf).unwrap_or(0);
            let (want_index, arity) = ARITY[&buf[..n]];
            let want = parse_known(&whole, &buf[..n], arity, &clock);
            assert_eq!(index, Some(want_index), "{line}");
            assert_eq!(format!("{parsed:?}"), format!("{want:?}"), "{line}");
            assert_eq!(moved[0], whole[0], "{line}: the name stays");
        }
    }

    #[test]
    fn names_are_case_insensitive_and_arity_is_checked() {
        assert!(matches!(parse(&args("gEt k")), Ok(Cmd::Key { op: Op::Get, .. })));
        assert_eq!(err("GET"), "ERR wrong number of arguments for 'get' command");
        assert_eq!(err("GET a b"), "ERR wrong number of arguments for 'get' command");
        assert_eq!(err("MSET a"), "ERR wrong number of arguments for 'mset' command");
        assert_eq!(err("MSET a 1 b"), "ERR wrong number of arguments for 'mset' command");
        assert!(
            err("FLY me to the moon").starts_with("ERR unknown command 'FLY', with args beginning with: 'me' 'to'")
        );
    }

    #[test]
    fn set_options_parse() {
        match parse(&args("SET k v EX 10 GET")) {
            Ok(Cmd::Key { op: Op::Set { expiry: SetExpiry::At(at), get: true, .. }, .. }) => {
                assert_eq!(at, NOW + 10_000);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&args("SET k v KEEPTTL")),
            Ok(Cmd::Key { op: Op::Set { expiry: SetExpiry::Keep, .. }, .. })
        ));
        assert_eq!(err("SET k v EX 0"), "ERR invalid expire time in 'set' command");
        assert_eq!(err("SET k v EX 1 PX 5"), "ERR syntax error");
        assert_eq!(err("SET k v EX"), "ERR syntax error");
        assert!(matches!(
            parse(&args("SET k v nx GET")),
            Ok(Cmd::Key { op: Op::SetIf { present: false, get: true, .. }, .. })
        ));
        assert!(matches!(parse(&args("SET k v XX")), Ok(Cmd::Key { op: Op::SetIf { present: true, .. }, .. })));
        assert_eq!(err("SET k v NX XX"), "ERR syntax error");
        assert!(matches!(parse(&args("WATCH a b")), Ok(Cmd::Server(Server::Watch(keys))) if keys.len() == 2));
        assert_eq!(err("INCRBY k abc"), "ERR value is not an integer or out of range");
        assert_eq!(err("EXPIRE k 9223372036854775"), "ERR invalid expire time in 'expire' command");
        assert_eq!(err("PEXPIRE k 9223372036854775807"), "ERR invalid expire time in 'pexpire' command");
        assert_eq!(err("SET k v PX 9223372036854775807"), "ERR invalid expire time in 'set' command");
        assert_eq!(err("SETEX k 9223372036854775807 v"), "ERR invalid expire time in 'setex' command");
    }

    /// Relative expiries count from the clock the caller passes; absolute
    /// ones are taken as they are.
    #[test]
    fn expiries_are_read_on_the_given_clock() {
        let at = |s: &str| match parse(&args(s)) {
            Ok(Cmd::Key { op: Op::Set { expiry: SetExpiry::At(at), .. } | Op::ExpireAt(at), .. }) => at,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(at("SET k v PX 250"), NOW + 250);
        assert_eq!(at("SET k v EXAT 1800000000"), 1_800_000_000_000);
        assert_eq!(at("SET k v PXAT 1800000000123"), 1_800_000_000_123);
        assert_eq!(at("SETEX k 5 v"), NOW + 5_000);
        assert_eq!(at("PSETEX k 5 v"), NOW + 5);
        assert_eq!(at("EXPIRE k 60"), NOW + 60_000);
        assert_eq!(at("PEXPIRE k 60"), NOW + 60);
        assert_eq!(at("EXPIREAT k 1800000000"), 1_800_000_000_000);
        assert_eq!(at("PEXPIREAT k 1800000000123"), 1_800_000_000_123);
        assert_eq!(at("EXPIRE k -5"), NOW - 5_000);
        assert_eq!(err("SETEX k 0 v"), "ERR invalid expire time in 'setex' command");
        assert_eq!(err("pSeTeX k -1 v"), "ERR invalid expire time in 'psetex' command");
    }

    /// EXPIRE's options are checked before the time, with Redis's texts.
    #[test]
    fn expire_options_parse_as_redis_checks_them() {
        let test = |s: &str| match parse(&args(s)) {
            Ok(Cmd::Key { op: Op::ExpireAtIf(_, t), .. }) => t,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(test("ExPiRe k 1 nx"), ExpireIf { nx: true, ..ExpireIf::default() });
        assert_eq!(test("PEXPIRE k 1 XX GT"), ExpireIf { xx: true, gt: true, ..ExpireIf::default() });
        assert!(matches!(parse(&args("EXPIRE k 1")), Ok(Cmd::Key { op: Op::ExpireAt(_), .. })));
        assert_eq!(err("EXPIRE k 1 LT GT"), "ERR GT and LT options at the same time are not compatible");
        assert_eq!(err("EXPIRE k 1 NX XX"), "ERR NX and XX, GT or LT options at the same time are not compatible");
        assert_eq!(err("EXPIRE k 1 NX LT"), "ERR NX and XX, GT or LT options at the same time are not compatible");
        assert_eq!(err("EXPIRE k 1 FOO"), "ERR Unsupported option FOO");
        assert_eq!(err("EXPIRE k abc FOO"), "ERR Unsupported option FOO");
        assert_eq!(err("EXPIRE k abc NX"), "ERR value is not an integer or out of range");
        // A key without an expiry has an infinite one.
        let (nx, xx, gt, lt) =
            (test("EXPIRE k 1 NX"), test("EXPIRE k 1 XX"), test("EXPIRE k 1 GT"), test("EXPIRE k 1 LT"));
        assert!(nx.holds(None, 5) && !nx.holds(Some(9), 5));
        assert!(!xx.holds(None, 5) && xx.holds(Some(9), 5));
        assert!(!gt.holds(None, 5) && gt.holds(Some(4), 5) && !gt.holds(Some(5), 5));
        assert!(lt.holds(None, 5) && lt.holds(Some(6), 5) && !lt.holds(Some(5), 5));
    }

    #[test]
    fn multi_key_commands_apply_together() {
        match parse(&args("DEL a b c")) {
            Ok(Cmd::Keys { ops, combine: Combine::Count }) => assert_eq!(ops.len(), 3),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&args("DEL a")), Ok(Cmd::Key { op: Op::Del, .. })));
        assert!(matches!(parse(&args("MSET a 1 b 2")), Ok(Cmd::Keys { combine: Combine::Ok, .. })));
    }

    #[test]
    fn scan_parses_its_options() {
        match parse(&args("SCAN 0 MATCH user:* COUNT 100 TYPE hash")) {
            Ok(Cmd::Server(Server::Scan { cursor: 0, pattern: Some(p), count: 100, kind: Some(k) })) => {
                assert_eq!(&p[..], b"user:*");
                assert_eq!(k, "hash");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err("SCAN x"), "ERR invalid cursor");
        assert_eq!(err("SCAN 0 COUNT 0"), "ERR syntax error");
    }

    #[test]
    fn ttl_rounds_to_seconds_like_redis() {
        assert_eq!(render(Ok(Reply::Int(1_499)), Render::Seconds), Frame::Integer(1));
        assert_eq!(render(Ok(Reply::Int(1_500)), Render::Seconds), Frame::Integer(2));
        assert_eq!(render(Ok(Reply::Int(-2)), Render::Seconds), Frame::Integer(-2));
        assert_eq!(render(Ok(Reply::Int(i64::MAX)), Render::Seconds), Frame::Integer(i64::MAX / 1000));
        assert_eq!(
            render(Err(OpError::WrongType), Render::Plain),
            Frame::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
        );
    }
}
