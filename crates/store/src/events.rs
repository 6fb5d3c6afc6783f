//! Key events: what each write did to its key, named as Redis names its
//! keyspace events (`set`, `del`, `expired`, `sadd`...), for whoever
//! listens: keyspace notifications, and triggers.
//!
//! Shards emit events only while someone listens (one atomic load per
//! write otherwise). Delivery is best effort, as Redis's notifications are:
//! a listener that falls more than [`CAPACITY`] events behind misses the
//! oldest and is told how many (`Lagged`). Nothing waits for a listener.

use crate::op::Op;
use bytes::Bytes;
use squall_lattice::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::broadcast;

/// How many events a listener may fall behind before it misses some.
pub const CAPACITY: usize = 1 << 16;

/// The class of an event, as `notify-keyspace-events` selects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `g`: DEL, EXPIRE, PERSIST, RENAME...
    Generic,
    /// `$`: string commands.
    String,
    /// `s`: set commands.
    Set,
    /// `h`: hash commands.
    Hash,
    /// `l`: list commands.
    List,
    /// `z`: sorted set commands.
    ZSet,
    /// `x`: a key expired.
    Expired,
}

/// One write's effect on one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEvent {
    pub ns: Bytes,
    pub key: Bytes,
    pub event: &'static str,
    pub class: Class,
    /// The stamp of the unit that made it.
    pub stamp: Timestamp,
    /// The invocation whose commit made it, when one did.
    pub origin: Option<Bytes>,
}

/// The shards' side: where they put events.
pub(crate) struct KeyEvents {
    listeners: AtomicUsize,
    tx: broadcast::Sender<KeyEvent>,
}

impl KeyEvents {
    pub(crate) fn new() -> Arc<KeyEvents> {
        Arc::new(KeyEvents { listeners: AtomicUsize::new(0), tx: broadcast::channel(CAPACITY).0 })
    }

    /// Whether anyone listens: writes make no events otherwise.
    pub(crate) fn on(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn emit(&self, event: KeyEvent) {
        // No receiver left: the listener went away since `on` was read.
        let _ = self.tx.send(event);
    }

    pub(crate) fn listen(self: &Arc<Self>) -> Listener {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        Listener { rx: self.tx.subscribe(), events: self.clone() }
    }
}

/// A listener's end: events from every shard, in the order each shard made
/// them. Dropping it stops the events (once no other listener is left).
pub struct Listener {
    rx: broadcast::Receiver<KeyEvent>,
    events: Arc<KeyEvents>,
}

impl Listener {
    /// The next event; `Err(n)` when `n` were missed for falling behind.
    /// `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Result<KeyEvent, u64>> {
        match self.rx.recv().await {
            Ok(e) => Some(Ok(e)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is there already (as [`Listener::next`]).
    pub fn try_next(&mut self) -> Option<Result<KeyEvent, u64>> {
        match self.rx.try_recv() {
            Ok(e) => Some(Ok(e)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(n)),
            Err(_) => None,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.events.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The event a write makes when it changes its key (`None`: it makes
/// none), as Redis names it. `gone` says the key is not there after it.
pub(crate) fn of(op: &Op, gone: bool) -> Option<(&'static str, Class)> {
    use Class::*;
    Some(match op {
        Op::Set { .. } | Op::SetIf { .. } | Op::Put(_) => ("set", String),
        Op::GetDel | Op::Del => ("del", Generic),
        Op::GetEx(Some(crate::op::GetExpiry::Persist)) | Op::Persist => ("persist", Generic),
        // An expiry in the past deletes the key, and says so.
        Op::GetEx(Some(_)) | Op::ExpireAt(_) | Op::ExpireAtIf(..) if gone => ("del", Generic),
        Op::GetEx(Some(_)) | Op::ExpireAt(_) | Op::ExpireAtIf(..) => ("expire", Generic),
        Op::Append(_) => ("append", String),
        Op::SetRange(..) => ("setrange", String),
        Op::SetBit { .. } => ("setbit", String),
        Op::PfAdd(_) | Op::PfMerge(_) => ("pfadd", String),
        Op::IncrBy(_) => ("incrby", String),
        Op::IncrByFloat(_) => ("incrbyfloat", String),
        Op::SAdd(_) => ("sadd", Set),
        Op::SRem(_) => ("srem", Set),
        Op::SPop(_) => ("spop", Set),
        Op::HSet(_) | Op::HSetNx(..) => ("hset", Hash),
        Op::HDel(_) => ("hdel", Hash),
        Op::HIncrBy(..) => ("hincrby", Hash),
        Op::HIncrByFloat(..) => ("hincrbyfloat", Hash),
        Op::Push { head: true, .. } => ("lpush", List),
        Op::Push { head: false, .. } => ("rpush", List),
        Op::Pop { head: true, .. } => ("lpop", List),
        Op::Pop { head: false, .. } => ("rpop", List),
        Op::LSet(..) => ("lset", List),
        Op::LInsert { .. } => ("linsert", List),
        Op::LRem(..) => ("lrem", List),
        Op::LTrim(..) => ("ltrim", List),
        Op::ZAdd { opts, .. } if opts.incr => ("zincr", ZSet),
        Op::ZAdd { .. } => ("zadd", ZSet),
        Op::ZRem(_) => ("zrem", ZSet),
        Op::ZRemRange(crate::op::ZBy::Index(..)) => ("zremrangebyrank", ZSet),
        Op::ZRemRange(crate::op::ZBy::Score(..)) => ("zremrangebyscore", ZSet),
        Op::ZRemRange(crate::op::ZBy::Lex(..)) => ("zremrangebylex", ZSet),
        Op::ZPop { max: false, .. } => ("zpopmin", ZSet),
        Op::ZPop { max: true, .. } => ("zpopmax", ZSet),
        _ => return None,
    })
}

/// The event Redis sends after the op's own: `del` when the last member or
/// field removed takes the key with it, `expire` after a SET with a time to live.
pub(crate) fn after(op: &Op, gone: bool) -> Option<(&'static str, Class)> {
    use crate::op::SetExpiry;
    match op {
        Op::SRem(_)
        | Op::SPop(_)
        | Op::HDel(_)
        | Op::Pop { .. }
        | Op::LRem(..)
        | Op::LTrim(..)
        | Op::ZRem(_)
        | Op::ZPop { .. }
        | Op::ZRemRange(_)
            if gone =>
        {
            Some(("del", Class::Generic))
        }
        Op::Set { expiry: SetExpiry::At(_), .. } | Op::SetIf { expiry: SetExpiry::At(_), .. } if !gone => {
            Some(("expire", Class::Generic))
        }
        _ => None,
    }
}
