//! Operations that are not monotone (conditional writes, WATCH, GETDEL)
//! are decided by the key's owner: Redis's answers for each, and a history
//! of concurrent lock acquisitions and WATCH transactions from many
//! clients checked for linearizability.

mod common;

use common::TestNode;
use redis::{Commands, Connection, RedisResult, Value};
use std::collections::HashSet;
use std::hash::Hash;
use std::time::Instant;

fn cmd(c: &mut Connection, args: &[&str]) -> RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn ok(c: &mut Connection, args: &[&str]) -> Value {
    cmd(c, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn error(c: &mut Connection, args: &[&str]) -> String {
    match cmd(c, args) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("{args:?} answered {v:?}, not an error"),
    }
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn conditional_writes_answer_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    // SET NX / XX, alone and with GET.
    assert_eq!(ok(&mut c, &["SET", "k", "1", "XX"]), Value::Nil);
    assert_eq!(ok(&mut c, &["EXISTS", "k"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["SET", "k", "1", "NX"]), Value::Okay);
    assert_eq!(ok(&mut c, &["SET", "k", "2", "NX"]), Value::Nil);
    assert_eq!(ok(&mut c, &["GET", "k"]), bulk("1"));
    assert_eq!(ok(&mut c, &["SET", "k", "3", "XX", "GET"]), bulk("1"));
    assert_eq!(ok(&mut c, &["SET", "k", "4", "NX", "GET"]), bulk("3"));
    assert_eq!(ok(&mut c, &["GET", "k"]), bulk("3"));
    assert_eq!(ok(&mut c, &["SET", "fresh", "v", "NX", "GET", "PX", "100000"]), Value::Nil);
    let pttl: i64 = c.pttl("fresh").unwrap();
    assert!(pttl > 90_000 && pttl <= 100_000, "{pttl}");
    assert!(error(&mut c, &["SET", "k", "5", "NX", "XX"]).contains("syntax error"));
    // SETNX, GETSET, GETDEL.
    assert_eq!(ok(&mut c, &["SETNX", "n", "a"]), Value::Int(1));
    assert_eq!(ok(&mut c, &["SETNX", "n", "b"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["GETSET", "n", "c"]), bulk("a"));
    assert_eq!(ok(&mut c, &["GETSET", "none", "x"]), Value::Nil);
    assert_eq!(ok(&mut c, &["GETDEL", "n"]), bulk("c"));
    assert_eq!(ok(&mut c, &["GETDEL", "n"]), Value::Nil);
    assert_eq!(ok(&mut c, &["EXISTS", "n"]), Value::Int(0));
    // Wrong types.
    ok(&mut c, &["SADD", "s", "m"]);
    assert!(error(&mut c, &["GETDEL", "s"]).contains("WRONGTYPE"));
    assert!(error(&mut c, &["GETSET", "s", "v"]).contains("WRONGTYPE"));
    assert!(error(&mut c, &["SET", "s", "v", "NX", "GET"]).contains("WRONGTYPE"));
    assert_eq!(ok(&mut c, &["SET", "s", "v", "NX"]), Value::Nil);
    assert_eq!(ok(&mut c, &["TYPE", "s"]), Value::SimpleString("set".into()));
    assert!(error(&mut c, &["SETNX", "n"]).contains("wrong number of arguments for 'setnx' command"));

    // EXPIRE's options: a key without an expiry has an infinite one.
    ok(&mut c, &["SET", "e", "v"]);
    assert_eq!(ok(&mut c, &["EXPIRE", "e", "100", "XX"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "e", "100", "GT"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "e", "100", "NX"]), Value::Int(1));
    assert_eq!(ok(&mut c, &["EXPIRE", "e", "200", "NX"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "e", "50", "GT"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "e", "200", "XX", "GT"]), Value::Int(1));
    assert_eq!(ok(&mut c, &["EXPIRE", "e", "300", "LT"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["EXPIRE", "e", "150", "lt"]), Value::Int(1));
    assert_eq!(ok(&mut c, &["TTL", "e"]), Value::Int(150));
    assert_eq!(ok(&mut c, &["EXPIRE", "missing", "10", "NX"]), Value::Int(0));
    assert!(
        error(&mut c, &["EXPIRE", "e", "1", "LT", "GT"])
            .contains("GT and LT options at the same time are not compatible")
    );
    assert!(error(&mut c, &["EXPIRE", "e", "1", "NX", "XX"]).contains("NX and XX, GT or LT options"));
    assert!(error(&mut c, &["EXPIRE", "e", "1", "SOON"]).contains("Unsupported option SOON"));
    ok(&mut c, &["SET", "forever", "v"]);
    assert_eq!(ok(&mut c, &["EXPIRE", "forever", "-1", "LT"]), Value::Int(1));
    assert_eq!(ok(&mut c, &["EXISTS", "forever"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["TTL", "e"]), Value::Int(150));
}

#[test]
fn watch_makes_exec_apply_only_if_nothing_changed() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let mut other = node.redis();
    ok(&mut c, &["SET", "balance", "10"]);
    // Untouched: EXEC runs.
    assert_eq!(ok(&mut c, &["WATCH", "balance", "unrelated"]), Value::Okay);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["INCRBY", "balance", "5"]);
    assert_eq!(ok(&mut c, &["EXEC"]), Value::Array(vec![Value::Int(15)]));
    // Written by another client in between, even to the same value: nothing runs.
    ok(&mut c, &["WATCH", "balance"]);
    ok(&mut other, &["SET", "balance", "15"]);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["INCRBY", "balance", "5"]);
    assert_eq!(ok(&mut c, &["EXEC"]), Value::Nil);
    assert_eq!(ok(&mut c, &["GET", "balance"]), bulk("15"));
    // EXEC unwatched: the next transaction runs whatever happens to the key.
    ok(&mut other, &["SET", "balance", "20"]);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["INCRBY", "balance", "1"]);
    assert_eq!(ok(&mut c, &["EXEC"]), Value::Array(vec![Value::Int(21)]));
    // A key that appears counts as changed; UNWATCH and DISCARD forget.
    ok(&mut c, &["WATCH", "later"]);
    ok(&mut other, &["SET", "later", "x"]);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["SET", "later", "mine"]);
    assert_eq!(ok(&mut c, &["EXEC"]), Value::Nil);
    ok(&mut c, &["WATCH", "later"]);
    ok(&mut other, &["SET", "later", "y"]);
    ok(&mut c, &["UNWATCH"]);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["SET", "later", "mine"]);
    assert_eq!(ok(&mut c, &["EXEC"]), Value::Array(vec![Value::Okay]));
    ok(&mut c, &["WATCH", "later"]);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["DISCARD"]);
    ok(&mut other, &["SET", "later", "z"]);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["GET", "later"]);
    assert_eq!(ok(&mut c, &["EXEC"]), Value::Array(vec![bulk("z")]));
    // WATCH inside MULTI is an error, and the transaction goes on.
    ok(&mut c, &["MULTI"]);
    assert!(error(&mut c, &["WATCH", "balance"]).contains("WATCH inside MULTI is not allowed"));
    ok(&mut c, &["INCR", "balance"]);
    assert_eq!(ok(&mut c, &["EXEC"]), Value::Array(vec![Value::Int(22)]));
}

/// One operation of a history: when it was called and when it answered
/// (in ns from the start), and what it did with what result.
struct Done<O> {
    call: u64,
    ret: u64,
    op: O,
}

/// Whether `history` is linearizable from `init` (Wing & Gong's search,
/// remembering the states seen after each set of operations): some order
/// of its operations, each taking effect between its call and its answer,
/// in which `step` accepts each operation's recorded result (giving the
/// next state).
fn linearizable<S: Clone + Eq + Hash, O>(history: &[Done<O>], init: S, step: impl Fn(&S, &O) -> Option<S>) -> bool {
    fn search<S: Clone + Eq + Hash, O>(
        history: &[Done<O>],
        done: &mut Vec<bool>,
        state: S,
        left: usize,
        seen: &mut HashSet<(Vec<bool>, S)>,
        step: &impl Fn(&S, &O) -> Option<S>,
    ) -> bool {
        if left == 0 {
            return true;
        }
        if !seen.insert((done.clone(), state.clone())) {
            return false;
        }
        // Next can be any operation called before every pending one answered.
        let first_answer = history.iter().zip(done.iter()).filter(|(_, d)| !**d).map(|(h, _)| h.ret).min();
        for i in 0..history.len() {
            if done[i] || first_answer.is_some_and(|r| history[i].call > r) {
                continue;
            }
            if let Some(next) = step(&state, &history[i].op) {
                done[i] = true;
                if search(history, done, next, left - 1, seen, step) {
                    return true;
                }
                done[i] = false;
            }
        }
        false
    }
    let mut done = vec![false; history.len()];
    search(history, &mut done, init, history.len(), &mut HashSet::new(), &step)
}

/// What the lock key saw.
enum LockOp {
    /// SET lock ID NX, and whether it took the lock.
    Acquire(u64, bool),
    /// DEL lock by its holder, and how many keys it removed.
    Release(i64),
}

/// A WATCH transaction on the counter: it read `read` and set `read + 1`
/// if nothing changed the counter since; whether EXEC applied it.
struct Increment {
    read: i64,
    applied: bool,
}

#[test]
fn lock_and_watch_histories_are_linearizable() {
    const CLIENTS: u64 = 8;
    const ROUNDS: usize = 12;
    let node = TestNode::start(&["--durability", "async"]);
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    /// One client's part: its lock and counter histories, and how often it held the lock.
    type Part = (Vec<Done<LockOp>>, Vec<Done<Increment>>, usize);
    let results: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let node = &node;
                s.spawn(move || {
                    let mut c = node.redis();
                    let (mut lock, mut counter, mut inside) = (Vec::new(), Vec::new(), 0);
                    for _ in 0..ROUNDS {
                        let call = now();
                        let took: Option<String> =
                            redis::cmd("SET").arg("lock").arg(id).arg("NX").query(&mut c).unwrap();
                        lock.push(Done { call, ret: now(), op: LockOp::Acquire(id, took.is_some()) });
                        if took.is_some() {
                            // Nobody else is inside while this client holds the lock.
                            let n: i64 = c.incr("inside", 1).unwrap();
                            assert_eq!(n, 1, "two clients held the lock at once");
                            inside += 1;
                        }
                        // Holders and the others all increment through WATCH.
                        let call = now();
                        let _: () = redis::cmd("WATCH").arg("counter").query(&mut c).unwrap();
                        let read: Option<i64> = c.get("counter").unwrap();
                        let read = read.unwrap_or(0);
                        let applied: Option<Vec<Value>> =
                            redis::pipe().atomic().set("counter", read + 1).query(&mut c).unwrap();
                        counter.push(Done { call, ret: now(), op: Increment { read, applied: applied.is_some() } });
                        if took.is_some() {
                            let _: i64 = c.decr("inside", 1).unwrap();
                            let call = now();
                            let removed: i64 = c.del("lock").unwrap();
                            lock.push(Done { call, ret: now(), op: LockOp::Release(removed) });
                        }
                    }
                    (lock, counter, inside)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut lock: Vec<Done<LockOp>> = Vec::new();
    let mut counter: Vec<Done<Increment>> = Vec::new();
    let mut held = 0;
    for (l, c, inside) in results {
        lock.extend(l);
        counter.extend(c);
        held += inside;
    }
    assert!(held > 0, "nobody ever took the lock");
    let applied = counter.iter().filter(|d| d.op.applied).count() as i64;
    assert!(applied > 0);
    let mut c = node.redis();
    assert_eq!(c.get::<_, i64>("counter").unwrap(), applied, "every applied increment counted, once");
    let lock_ok = linearizable(&lock, None, |holder: &Option<u64>, op| match (holder, op) {
        (None, LockOp::Acquire(id, true)) => Some(Some(*id)),
        (Some(_), LockOp::Acquire(_, false)) => Some(*holder),
        (Some(_), LockOp::Release(1)) => Some(None),
        (None, LockOp::Release(0)) => Some(None),
        _ => None,
    });
    assert!(lock_ok, "the lock's history is not linearizable");
    let counter_ok = linearizable(&counter, 0i64, |value, op| match op {
        Increment { read, applied: true } if read == value => Some(value + 1),
        // A WATCH that failed saw the counter change: it is no longer what it read.
        Increment { read, applied: false } if read != value => Some(*value),
        _ => None,
    });
    assert!(counter_ok, "the WATCH transactions' history is not linearizable");
}

/// Transactions with commands over several keys (LMOVE, SMOVE) run as one
/// unit on an overlay: concurrent ones neither lose nor duplicate an item,
/// a reader's transaction always sees the totals whole, and WATCH still
/// stops one whose watched key changed.
#[test]
fn transactions_over_several_keys_are_atomic() {
    const ITEMS: i64 = 50;
    // Two shards: the keys live on different threads, so transactions interleave.
    let node = TestNode::start(&["--durability", "async", "--shards", "2"]);
    let mut c = node.redis();
    for i in 0..ITEMS {
        ok(&mut c, &["RPUSH", "left", &i.to_string()]);
        ok(&mut c, &["SADD", "s1", &i.to_string()]);
    }
    std::thread::scope(|s| {
        for id in 0..4i64 {
            let node = &node;
            s.spawn(move || {
                let mut c = node.redis();
                let mut done = 0;
                for round in 0..200i64 {
                    if done == 30 {
                        break;
                    }
                    let there = (round + id) % 2 == 0;
                    let (from, to) = if there { ("left", "right") } else { ("right", "left") };
                    let (sf, st) = if there { ("s1", "s2") } else { ("s2", "s1") };
                    let member = ((round * 7 + id) % ITEMS).to_string();
                    ok(&mut c, &["MULTI"]);
                    ok(&mut c, &["LMOVE", from, to, "LEFT", "RIGHT"]);
                    ok(&mut c, &["LMOVE", from, to, "LEFT", "RIGHT"]);
                    ok(&mut c, &["SMOVE", sf, st, &member]);
                    match cmd(&mut c, &["EXEC"]) {
                        Ok(Value::Array(replies)) => {
                            assert_eq!(replies.len(), 3);
                            done += 1;
                        }
                        Ok(other) => panic!("EXEC answered {other:?}"),
                        // Outrun by the others too often: said so, and nothing ran.
                        Err(e) => assert!(e.to_string().contains("kept changing"), "{e}"),
                    }
                }
                assert!(done > 0, "client {id} never committed");
            });
        }
        let node = &node;
        s.spawn(move || {
            let mut c = node.redis();
            for _ in 0..100 {
                let (a, b, x, y): (i64, i64, i64, i64) = redis::pipe()
                    .atomic()
                    .cmd("LLEN")
                    .arg("left")
                    .cmd("LLEN")
                    .arg("right")
                    .cmd("SCARD")
                    .arg("s1")
                    .cmd("SCARD")
                    .arg("s2")
                    .query(&mut c)
                    .unwrap();
                assert_eq!((a + b, x + y), (ITEMS, ITEMS), "a transaction was seen half done");
            }
        });
    });
    // Every item is in one place, once.
    let mut items: Vec<i64> = c.lrange("left", 0, -1).unwrap();
    items.extend(c.lrange::<_, Vec<i64>>("right", 0, -1).unwrap());
    items.sort();
    assert_eq!(items, (0..ITEMS).collect::<Vec<_>>());
    let mut members: Vec<i64> = c.smembers("s1").unwrap();
    members.extend(c.smembers::<_, Vec<i64>>("s2").unwrap());
    members.sort();
    assert_eq!(members, (0..ITEMS).collect::<Vec<_>>());
    // A watched key that changed stops such a transaction too.
    let mut other = node.redis();
    ok(&mut c, &["WATCH", "left"]);
    ok(&mut other, &["RPUSH", "left", "late"]);
    ok(&mut c, &["MULTI"]);
    ok(&mut c, &["RENAME", "right", "moved"]);
    assert_eq!(ok(&mut c, &["EXEC"]), Value::Nil);
    assert_eq!(ok(&mut c, &["EXISTS", "moved"]), Value::Int(0));
}
