//! The store through its public handle: real shard threads, a real data
//! directory, restarts.

use bytes::Bytes;
use squall_store::lattice::{ManualClock, Stamp, Timestamp};
use squall_store::{
    Answer, Check, Durability, Handle, Message, Op, OpError, Options, Reply, Request, Response, Session, SetExpiry,
    Store, Vote, Write,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn ns() -> Bytes {
    Bytes::from_static(b"default")
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn open(dir: &std::path::Path, shards: usize, durability: Durability) -> Store {
    let mut o = Options::new(dir);
    o.shards = shards;
    o.durability = durability;
    Store::open(o).expect("store opens")
}

async fn exec(h: &Handle, key: &str, op: Op) -> Result<Reply, OpError> {
    h.exec(&ns(), b(key), op).await.expect("store is up")
}

fn set(v: &str) -> Op {
    Op::Set { value: b(v), expiry: SetExpiry::None, get: false }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 3, Durability::Sync);
        let h = store.handle();
        exec(&h, "reg", set("hello")).await.unwrap();
        exec(&h, "n", Op::IncrBy(5)).await.unwrap();
        exec(&h, "n", Op::IncrBy(-2)).await.unwrap();
        exec(&h, "s", Op::SAdd(vec![b("a"), b("b"), b("c")])).await.unwrap();
        exec(&h, "s", Op::SRem(vec![b("b")])).await.unwrap();
        exec(&h, "h", Op::HSet(vec![(b("f1"), b("v1")), (b("f2"), b("v2"))])).await.unwrap();
        exec(&h, "h", Op::HDel(vec![b("f1")])).await.unwrap();
        exec(&h, "gone", set("x")).await.unwrap();
        exec(&h, "gone", Op::Del).await.unwrap();
        exec(&h, "replaced", Op::SAdd(vec![b("m")])).await.unwrap();
        exec(&h, "replaced", set("now a string")).await.unwrap();
        exec(&h, "ttl", Op::Set { value: b("t"), expiry: SetExpiry::At(now_ms() + 600_000), get: false })
            .await
            .unwrap();
        store.close();
    }
    // Reopen with a different shard count: keys are placed again by hash.
    let store = open(dir.path(), 2, Durability::Sync);
    let h = store.handle();
    assert_eq!(exec(&h, "reg", Op::Get).await, Ok(Reply::Bytes(b("hello"))));
    assert_eq!(exec(&h, "n", Op::Get).await, Ok(Reply::Bytes(b("3"))));
    let Ok(Reply::List(mut members)) = exec(&h, "s", Op::SMembers).await else { panic!("smembers") };
    members.sort();
    assert_eq!(members, vec![b("a"), b("c")]);
    assert_eq!(exec(&h, "h", Op::HGetAll).await, Ok(Reply::List(vec![b("f2"), b("v2")])));
    assert_eq!(exec(&h, "gone", Op::Exists).await, Ok(Reply::Int(0)));
    assert_eq!(exec(&h, "replaced", Op::Get).await, Ok(Reply::Bytes(b("now a string"))));
    assert_eq!(exec(&h, "replaced", Op::SMembers).await, Err(OpError::WrongType));
    let Ok(Reply::Int(ttl)) = exec(&h, "ttl", Op::Pttl).await else { panic!("ttl") };
    assert!(ttl > 500_000 && ttl <= 600_000, "{ttl}");
    assert_eq!(h.len(&ns()).await.unwrap(), 6);
    // New writes order after recovered ones: a counter keeps counting.
    assert_eq!(exec(&h, "n", Op::IncrBy(1)).await, Ok(Reply::Int(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_the_wrong_type_fail_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2, Durability::Async);
    let h = store.handle();
    exec(&h, "s", Op::SAdd(vec![b("a")])).await.unwrap();
    assert_eq!(exec(&h, "s", Op::Get).await, Err(OpError::WrongType));
    assert_eq!(exec(&h, "s", Op::IncrBy(1)).await, Err(OpError::WrongType));
    assert_eq!(exec(&h, "s", Op::HSet(vec![(b("f"), b("v"))])).await, Err(OpError::WrongType));
    assert_eq!(exec(&h, "s", Op::SMembers).await, Ok(Reply::List(vec![b("a")])));
    exec(&h, "str", set("abc")).await.unwrap();
    assert_eq!(exec(&h, "str", Op::IncrBy(1)).await, Err(OpError::NotInteger));
    exec(&h, "num", set("41")).await.unwrap();
    assert_eq!(exec(&h, "num", Op::IncrBy(1)).await, Ok(Reply::Int(42)));
    assert_eq!(exec(&h, "num", Op::IncrBy(i64::MAX)).await, Err(OpError::Overflow));
    assert_eq!(exec(&h, "num", Op::Get).await, Ok(Reply::Bytes(b("42"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_vanish_at_once_and_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let mut o = Options::new(dir.path());
    o.shards = 2;
    o.durability = Durability::Async;
    o.clock = clock.clone();
    let store = Store::open(o).unwrap();
    let h = store.handle();
    for i in 0..50 {
        exec(&h, &format!("k{i}"), Op::Set { value: b("v"), expiry: SetExpiry::At(1_000_150), get: false })
            .await
            .unwrap();
    }
    exec(&h, "kept", set("v")).await.unwrap();
    exec(&h, "kept", Op::ExpireAt(1_000_100)).await.unwrap();
    exec(&h, "kept", Op::Persist).await.unwrap();
    assert_eq!(exec(&h, "k1", Op::Pttl).await, Ok(Reply::Int(150)));
    clock.advance(149);
    assert_eq!(exec(&h, "k1", Op::Get).await, Ok(Reply::Bytes(b("v"))));
    clock.advance(1);
    assert_eq!(exec(&h, "k1", Op::Get).await, Ok(Reply::Nil));
    // The reaper (every 100 ms of real time) removes the rest without anyone reading them.
    let reclaimed =
        || (0..h.shards()).map(|s| h.stats(s).expired.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>();
    for _ in 0..100 {
        if reclaimed() == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reclaimed(), 50);
    assert_eq!(h.len(&ns()).await.unwrap(), 1);
    assert_eq!(exec(&h, "kept", Op::Pttl).await, Ok(Reply::Int(-1)));
    // Expiry survives a restart, read against the same clock.
    exec(&h, "later", Op::Set { value: b("v"), expiry: SetExpiry::At(1_010_000), get: false }).await.unwrap();
    drop(h);
    store.close();
    let mut o = Options::new(dir.path());
    o.clock = clock.clone();
    let store = Store::open(o).unwrap();
    let h = store.handle();
    assert_eq!(exec(&h, "later", Op::Pttl).await, Ok(Reply::Int(9_850)));
    clock.advance(10_000);
    assert_eq!(exec(&h, "later", Op::Exists).await, Ok(Reply::Int(0)));
}

/// Writers commit batches that set every key of a group to the same value
/// (and bump a counter per key); readers read the group atomically and must
/// always see one batch whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_part_of_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 4, Durability::Async);
    let h = store.handle();
    let keys: Vec<String> = (0..8).map(|i| format!("group:{i}")).collect();
    let counters: Vec<String> = (0..8).map(|i| format!("count:{i}")).collect();
    assert!(keys.iter().map(|k| h.shard_of(k.as_bytes())).collect::<std::collections::HashSet<_>>().len() > 1);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (h, keys, counters) = (h.clone(), keys.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let v = b(&format!("{w}-{i}"));
                let mut ops: Vec<(Bytes, Op)> = keys
                    .iter()
                    .map(|k| (b(k), Op::Set { value: v.clone(), expiry: SetExpiry::None, get: false }))
                    .collect();
                ops.extend(counters.iter().map(|k| (b(k), Op::IncrBy(1))));
                h.atomic(&ns(), ops, &mut Session::default()).await.unwrap();
            }
        }));
    }
    let mut reads = Vec::new();
    for _ in 0..2 {
        let (h, keys, counters) = (h.clone(), keys.clone(), counters.clone());
        reads.push(tokio::spawn(async move {
            let mut seen = 0;
            for _ in 0..400 {
                let mut ops: Vec<(Bytes, Op)> = keys.iter().map(|k| (b(k), Op::Get)).collect();
                ops.extend(counters.iter().map(|k| (b(k), Op::Get)));
                let got = h.atomic(&ns(), ops, &mut Session::default()).await.unwrap();
                let (values, counts) = got.split_at(keys.len());
                assert!(values.iter().all(|v| v == &values[0]), "partial batch seen: {values:?}");
                assert!(counts.iter().all(|v| v == &counts[0]), "partial batch seen: {counts:?}");
                if values[0] != Ok(Reply::Nil) {
                    seen += 1;
                }
            }
            seen
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = 0;
    for r in reads {
        seen += r.await.unwrap();
    }
    assert!(seen > 0, "readers never overlapped the writers");
    let last = exec(&h, "count:0", Op::Get).await.unwrap();
    assert_eq!(last, Reply::Bytes(b("800")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_visits_every_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 3, Durability::Async);
    let h = store.handle();
    for i in 0..500 {
        exec(&h, &format!("key:{i}"), set("v")).await.unwrap();
    }
    exec(&h, "other", Op::SAdd(vec![b("x")])).await.unwrap();
    let mut cursor = 0;
    let mut all = Vec::new();
    loop {
        let (next, keys) = h.scan(&ns(), cursor, 37, Some(b("key:*")), None).await.unwrap();
        all.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(n, 500);
    assert_eq!(all.len(), 500);
    let (_, sets) = h.scan(&ns(), 0, 10_000, None, Some("set".into())).await.unwrap();
    assert_eq!(sets, vec![b("other")]);
}

/// With a tiny snapshot threshold, snapshots are taken many times while
/// writes go on; what comes back after a restart (a snapshot and the log
/// after it) is the last state of every key, and old files are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_replace_the_log_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut o = Options::new(dir.path());
        o.shards = 2;
        o.durability = Durability::Async;
        o.snapshot_bytes = 2048;
        // The window log keeps covered segments (tests/window.rs); off, they go.
        o.retention = squall_store::Retention::OFF;
        let store = Store::open(o).unwrap();
        let h = store.handle();
        for round in 0..20 {
            for i in 0..50 {
                exec(&h, &format!("k{i}"), set(&format!("{round}"))).await.unwrap();
                exec(&h, "members", Op::SAdd(vec![b(&format!("m{round}-{i}"))])).await.unwrap();
            }
            exec(&h, "members", Op::SRem(vec![b(&format!("m{round}-0"))])).await.unwrap();
            exec(&h, &format!("gone{round}"), set("x")).await.unwrap();
            exec(&h, &format!("gone{round}"), Op::Del).await.unwrap();
            h.flush().await.unwrap();
        }
        store.close();
    }
    let files: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let snapshots = files.iter().filter(|f| f.starts_with("snapshot-")).count();
    let segments = files.iter().filter(|f| f.starts_with("log-")).count();
    assert!(snapshots == 1 && segments <= 2, "{files:?}");
    let store = open(dir.path(), 3, Durability::Async);
    let h = store.handle();
    for i in 0..50 {
        assert_eq!(exec(&h, &format!("k{i}"), Op::Get).await, Ok(Reply::Bytes(b("19"))));
    }
    assert_eq!(exec(&h, "members", Op::SCard).await, Ok(Reply::Int(20 * 49)));
    assert_eq!(exec(&h, "gone7", Op::Exists).await, Ok(Reply::Int(0)));
    assert_eq!(h.len(&ns()).await.unwrap(), 51);
}

/// Emptying a set or hash removes the key: a restart brings neither it nor
/// its removed members back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_collections_stay_empty_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 2, Durability::Sync);
        let h = store.handle();
        exec(&h, "s", Op::SAdd(vec![b("a")])).await.unwrap();
        exec(&h, "s", Op::SRem(vec![b("a")])).await.unwrap();
        exec(&h, "s", Op::SAdd(vec![b("b")])).await.unwrap();
        exec(&h, "h", Op::HSet(vec![(b("f"), b("v"))])).await.unwrap();
        exec(&h, "h", Op::HDel(vec![b("f")])).await.unwrap();
        exec(&h, "h", Op::HSet(vec![(b("g"), b("w"))])).await.unwrap();
        exec(&h, "t", Op::SAdd(vec![b("x")])).await.unwrap();
        exec(&h, "t", Op::SRem(vec![b("x")])).await.unwrap();
        exec(&h, "t", set("now a string")).await.unwrap();
        // A field named twice keeps its last value, as in Redis.
        exec(&h, "dup", Op::HSet(vec![(b("f"), b("2")), (b("f"), b("1"))])).await.unwrap();
        store.close();
    }
    let store = open(dir.path(), 2, Durability::Sync);
    let h = store.handle();
    assert_eq!(exec(&h, "s", Op::SMembers).await, Ok(Reply::List(vec![b("b")])));
    assert_eq!(exec(&h, "h", Op::HGetAll).await, Ok(Reply::List(vec![b("g"), b("w")])));
    assert_eq!(exec(&h, "t", Op::Get).await, Ok(Reply::Bytes(b("now a string"))));
    assert_eq!(exec(&h, "dup", Op::HGet(b("f"))).await, Ok(Reply::Bytes(b("1"))));
}

/// The newest stamp in a key's entry.
async fn stamp_of(h: &Handle, key: &str) -> Stamp {
    match exec(h, key, Op::Snapshot).await.unwrap() {
        Reply::Entry(e) => e.latest_stamp(),
        other => panic!("{key}: {other:?}"),
    }
}

/// Keys that land on different shards of a store with `shards` shards.
fn keys_on_distinct_shards(h: &Handle, n: usize) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for i in 0.. {
        let k = format!("k{i}");
        if !found.iter().any(|f| h.shard_of(f.as_bytes()) == h.shard_of(k.as_bytes())) {
            found.push(k);
        }
        if found.len() == n {
            break;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_applies_all_or_nothing_depending_on_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 4, Durability::Sync);
    let h = store.handle();
    let keys = keys_on_distinct_shards(&h, 3);
    let (ka, kb, kc) = (b(&keys[0]), b(&keys[1]), b(&keys[2]));
    exec(&h, &keys[0], set("1")).await.unwrap();
    let saw = h.exec(&ns(), ka.clone(), Op::Snapshot).await.unwrap();
    let check = || Check { ns: ns(), key: ka.clone(), op: Op::Snapshot, saw: saw.clone() };
    let writes = || {
        vec![Write { ns: ns(), key: kb.clone(), op: set("2") }, Write { ns: ns(), key: kc.clone(), op: Op::IncrBy(5) }]
    };

    // The read still holds: every write lands, across three shards.
    let done = h.commit(vec![check()], writes()).await.unwrap();
    assert!(done.is_some());
    assert_eq!(exec(&h, &keys[1], Op::Get).await.unwrap(), Reply::Bytes(b("2")));
    assert_eq!(exec(&h, &keys[2], Op::Get).await.unwrap(), Reply::Bytes(b("5")));
    // All writes of one commit carry one stamp.
    let sb = stamp_of(&h, &keys[1]).await;
    let sc = stamp_of(&h, &keys[2]).await;
    assert_eq!(sb, sc);

    // The key read changed since: nothing lands.
    exec(&h, &keys[0], set("changed")).await.unwrap();
    let done = h
        .commit(
            vec![check()],
            vec![
                Write { ns: ns(), key: kb.clone(), op: set("3") },
                Write { ns: ns(), key: kc.clone(), op: Op::IncrBy(1) },
            ],
        )
        .await
        .unwrap();
    assert!(done.is_none());
    assert_eq!(exec(&h, &keys[1], Op::Get).await.unwrap(), Reply::Bytes(b("2")));
    assert_eq!(exec(&h, &keys[2], Op::Get).await.unwrap(), Reply::Bytes(b("5")));
    drop(h);
    store.close();

    // What committed is on disk.
    let store = open(dir.path(), 2, Durability::Sync);
    let h = store.handle();
    assert_eq!(exec(&h, &keys[1], Op::Get).await.unwrap(), Reply::Bytes(b("2")));
    assert_eq!(exec(&h, &keys[2], Op::Get).await.unwrap(), Reply::Bytes(b("5")));
}

/// Commits across shards run while other clients read and write the same
/// shards (and the same keys, one at a time): none deadlocks, no increment
/// is lost, and no reader of the committed keys sees part of a commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_shard_commits_and_other_clients_share_the_shards() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 3, Durability::Async);
    let h = store.handle();
    let keys = keys_on_distinct_shards(&h, 3);
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (h2, keys) = (h.clone(), keys.clone());
        // Half the tasks run on shard threads, as invocations do.
        let work = async move {
            for _ in 0..50 {
                let writes = keys.iter().map(|k| Write { ns: ns(), key: b(k), op: Op::IncrBy(1) }).collect();
                assert!(h2.commit(Vec::new(), writes).await.unwrap().is_some());
            }
        };
        tasks.push(if t % 2 == 0 { h.spawn_on(t % 3, work) } else { tokio::spawn(work) });
    }
    // Other clients: their own keys on the same shards, and single-key
    // writes to the committed keys that must interleave, not break in.
    for t in 0..3 {
        let (h2, keys) = (h.clone(), keys.clone());
        tasks.push(h.spawn_on(t, async move {
            for i in 0..300 {
                exec(&h2, &format!("other:{t}:{i}"), set("x")).await.unwrap();
                exec(&h2, &keys[t], Op::IncrBy(1)).await.unwrap();
                exec(&h2, &keys[t], Op::IncrBy(-1)).await.unwrap();
            }
        }));
    }
    let reader = {
        let (h2, keys) = (h.clone(), keys.clone());
        tokio::spawn(async move {
            for _ in 0..300 {
                let ops = keys.iter().map(|k| (b(k), Op::Get)).collect();
                let got = h2.atomic(&ns(), ops, &mut Session::default()).await.unwrap();
                // Each commit adds one to every key; the other clients' +1/-1
                // pairs can show as one more on a single key, never less.
                let n: Vec<i64> = got
                    .iter()
                    .map(|r| match r {
                        Ok(Reply::Bytes(v)) => std::str::from_utf8(v).unwrap().parse().unwrap(),
                        _ => 0,
                    })
                    .collect();
                let low = *n.iter().min().unwrap();
                assert!(n.iter().all(|x| *x - low <= 1), "part of a commit seen: {n:?}");
            }
        })
    };
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t).await.expect("no deadlock").unwrap();
    }
    reader.await.unwrap();
    for k in &keys {
        assert_eq!(exec(&h, k, Op::Get).await.unwrap(), Reply::Bytes(b("300")));
    }
    assert_eq!(h.len(&ns()).await.unwrap(), 3 + 900);
}

/// MULTI/EXEC (an atomic unit of ops) across shards lands with one stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_across_shards_lands_with_one_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 4, Durability::Sync);
    let h = store.handle();
    let keys = keys_on_distinct_shards(&h, 4);
    exec(&h, &keys[3], Op::SAdd(vec![b("old")])).await.unwrap();
    let ops = vec![
        (b(&keys[0]), set("a")),
        (b(&keys[1]), Op::IncrBy(3)),
        (b(&keys[2]), Op::HSet(vec![(b("f"), b("v"))])),
        (b(&keys[3]), Op::SAdd(vec![b("new")])),
        (b(&keys[0]), Op::Get),
    ];
    let got = h.atomic(&ns(), ops, &mut Session::default()).await.unwrap();
    assert_eq!(got[4], Ok(Reply::Bytes(b("a"))));
    let mut stamps = Vec::new();
    for k in &keys {
        stamps.push(stamp_of(&h, k).await);
    }
    assert!(stamps.iter().all(|s| *s == stamps[0]), "{stamps:?}");
}

/// With a clock that never moves (every shard's stamps share one
/// millisecond), a unit that starts after another was acknowledged still
/// gets a larger stamp, whichever shards each lands on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_unit_gets_a_later_stamp_even_when_the_clock_stands_still() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path());
    o.shards = 4;
    o.durability = Durability::Async;
    o.clock = Arc::new(ManualClock::new(5_000));
    let store = Store::open(o).unwrap();
    let h = store.handle();
    // Shard 0 stamps many writes first, so its clock runs ahead of the others'.
    let busy = keys_on_distinct_shards(&h, 4);
    for _ in 0..500 {
        exec(&h, &busy[0], Op::IncrBy(1)).await.unwrap();
    }
    let mut order = Vec::new();
    for i in 0..60 {
        let key = format!("step:{i}");
        if i % 3 == 0 {
            let other = format!("step:{i}:b");
            h.atomic(&ns(), vec![(b(&key), set("x")), (b(&other), set("y"))], &mut Session::default()).await.unwrap();
        } else if i % 3 == 1 {
            exec(&h, &key, set("x")).await.unwrap();
        } else {
            h.commit(Vec::new(), vec![Write { ns: ns(), key: b(&key), op: Op::SAdd(vec![b("m")]) }]).await.unwrap();
        }
        order.push(stamp_of(&h, &key).await);
    }
    for w in order.windows(2) {
        assert!(w[1] > w[0], "{:?} then {:?}", w[0], w[1]);
    }
}

/// A crash can leave the end of the log half written: the node comes back
/// with everything before it and goes on appending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_log_tail_is_ignored_and_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 2, Durability::Sync);
        let h = store.handle();
        exec(&h, "a", set("1")).await.unwrap();
        exec(&h, "b", set("2")).await.unwrap();
        store.close();
    }
    let log = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("log-"))
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &[7, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
    drop(f);
    {
        let store = open(dir.path(), 2, Durability::Sync);
        let h = store.handle();
        assert_eq!(exec(&h, "b", Op::Get).await, Ok(Reply::Bytes(b("2"))));
        exec(&h, "c", set("3")).await.unwrap();
        store.close();
    }
    let store = open(dir.path(), 2, Durability::Sync);
    let h = store.handle();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(exec(&h, k, Op::Get).await, Ok(Reply::Bytes(b(v))));
    }
}

#[test]
fn a_second_store_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), 1, Durability::Sync);
    let mut o = Options::new(dir.path());
    o.shards = 1;
    match Store::open(o) {
        Err(squall_store::Error::Locked(_)) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("two stores on one data dir"),
    }
}

/// Commits across shards on disjoint keys, coordinated from different shard
/// threads, reach the disk writer in opposite orders on the two shards; in
/// sync mode every one must still become durable (the writer once waited
/// for both forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_commits_on_disjoint_keys_all_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2, Durability::Sync);
    let h = store.handle();
    let on = |shard: usize, tag: &str| -> Vec<String> {
        (0..).map(|i| format!("{tag}{i}")).filter(|k| h.shard_of(k.as_bytes()) == shard).take(1).collect()
    };
    let mut tasks = Vec::new();
    for (home, tag) in [(0usize, "a"), (1, "b")] {
        let keys: Vec<String> = [on(0, tag), on(1, tag)].concat();
        let h2 = h.clone();
        tasks.push(h.spawn_on(home, async move {
            for i in 0..300 {
                let ops = keys.iter().map(|k| (b(k), set(&i.to_string()))).collect();
                h2.atomic(&ns(), ops, &mut Session::default()).await.unwrap();
            }
            keys
        }));
    }
    for t in tasks {
        let keys = tokio::time::timeout(Duration::from_secs(60), t).await.expect("commits got stuck").unwrap();
        for k in keys {
            assert_eq!(exec(&h, &k, Op::Get).await, Ok(Reply::Bytes(b("299"))));
        }
    }
}

/// A request never overtakes an earlier parked one on a key they share: a
/// write to `l` sent after a commit that waits for `k` (and also writes
/// `l`) lands after that commit, and a read of `k` sent after it waits too,
/// so a commit waiting for a key is not starved by later requests.
#[tokio::test]
async fn parked_requests_keep_their_order_on_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1, Durability::Async);
    let h = store.handle();
    let msg = |request| Message { after: Timestamp::ZERO, request };
    let write = |key: &str, v: &str| Write { ns: ns(), key: b(key), op: set(v) };
    let vote = |a: Answer| match a.response {
        Response::Vote(Vote::Yes { proposal, .. }) => proposal,
        other => panic!("expected a yes vote, got {other:?}"),
    };
    // The first commit holds k.
    let first = h.send(0, msg(Request::Prepare { txn: 1, checks: vec![], ops: vec![write("k", "one")], origin: None }));
    let p1 = vote(first.answer().await.unwrap());
    // The second waits for k; it would write k and l.
    let second = h.send(
        0,
        msg(Request::Prepare { txn: 2, checks: vec![], ops: vec![write("k", "two"), write("l", "two")], origin: None }),
    );
    // Later requests on l and k: they wait behind the second commit.
    let later_l = h.send(0, msg(Request::Op { ns: ns(), key: b("l"), op: set("later") }));
    let later_k = h.send(0, msg(Request::Op { ns: ns(), key: b("k"), op: Op::Get }));
    h.send(0, msg(Request::Commit { txn: 1, stamp: p1, parts: 1 })).answer().await.unwrap();
    let p2 = vote(second.answer().await.unwrap());
    h.send(0, msg(Request::Commit { txn: 2, stamp: p2, parts: 1 })).answer().await.unwrap();
    let Response::Op(read) = later_k.answer().await.unwrap().response else { panic!("not an op answer") };
    assert_eq!(read, Ok(Reply::Bytes(b("two"))));
    later_l.answer().await.unwrap();
    assert_eq!(exec(&h, "l", Op::Get).await, Ok(Reply::Bytes(b("later"))));
    // An aborted waiter leaves its lines: what stood behind it goes on.
    let p3 = vote(
        h.send(0, msg(Request::Prepare { txn: 3, checks: vec![], ops: vec![write("k", "three")], origin: None }))
            .answer()
            .await
            .unwrap(),
    );
    let waiting =
        h.send(0, msg(Request::Prepare { txn: 4, checks: vec![], ops: vec![write("k", "four")], origin: None }));
    let behind = h.send(0, msg(Request::Op { ns: ns(), key: b("k"), op: Op::Get }));
    h.send(0, msg(Request::Abort { txn: 4 })).answer().await.unwrap();
    drop(waiting);
    h.send(0, msg(Request::Commit { txn: 3, stamp: p3, parts: 1 })).answer().await.unwrap();
    let Response::Op(read) = behind.answer().await.unwrap().response else { panic!("not an op answer") };
    assert_eq!(read, Ok(Reply::Bytes(b("three"))));
}
