//! The store through its public handle: real shard threads, a real fjall
//! directory, restarts.

use bytes::Bytes;
use squall_store::{Check, Durability, Handle, Op, OpError, Options, Reply, SetExpiry, Store, Write};
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
    let store = open(dir.path(), 2, Durability::Async);
    let h = store.handle();
    for i in 0..50 {
        exec(&h, &format!("k{i}"), Op::Set { value: b("v"), expiry: SetExpiry::At(now_ms() + 150), get: false })
            .await
            .unwrap();
    }
    exec(&h, "kept", set("v")).await.unwrap();
    exec(&h, "kept", Op::ExpireAt(now_ms() + 100)).await.unwrap();
    exec(&h, "kept", Op::Persist).await.unwrap();
    assert_eq!(exec(&h, "k1", Op::Get).await, Ok(Reply::Bytes(b("v"))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(exec(&h, "k1", Op::Get).await, Ok(Reply::Nil));
    // The reaper removes the rest without anyone reading them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reclaimed: u64 = (0..h.shards()).map(|s| h.stats(s).expired.load(std::sync::atomic::Ordering::Relaxed)).sum();
    assert_eq!(reclaimed, 50);
    assert_eq!(h.len(&ns()).await.unwrap(), 1);
    assert_eq!(exec(&h, "kept", Op::Pttl).await, Ok(Reply::Int(-1)));
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
                h.atomic(&ns(), ops).await.unwrap();
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
                let got = h.atomic(&ns(), ops).await.unwrap();
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

/// With a tiny checkpoint threshold the log is folded into the data keyspace
/// many times while writes go on; what comes back after a restart is the
/// last state of every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_fold_the_log_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut o = Options::new(dir.path());
        o.shards = 2;
        o.durability = Durability::Async;
        o.checkpoint_bytes = 2048;
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
    let store = open(dir.path(), 3, Durability::Async);
    let h = store.handle();
    for i in 0..50 {
        assert_eq!(exec(&h, &format!("k{i}"), Op::Get).await, Ok(Reply::Bytes(b("19"))));
    }
    assert_eq!(exec(&h, "members", Op::SCard).await, Ok(Reply::Int(20 * 49)));
    assert_eq!(exec(&h, "gone7", Op::Exists).await, Ok(Reply::Int(0)));
    assert_eq!(h.len(&ns()).await.unwrap(), 51);
}

/// Emptying a set or hash deletes its member records too: a restart neither
/// fails on orphan records nor brings removed members back.
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
    let stamp = |r: Reply| match r {
        Reply::Entry(e) => e.latest_stamp(),
        other => panic!("{other:?}"),
    };
    let sb = stamp(exec(&h, &keys[1], Op::Snapshot).await.unwrap());
    let sc = stamp(exec(&h, &keys[2], Op::Snapshot).await.unwrap());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cross_shard_commits_neither_deadlock_nor_lose_increments() {
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
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t).await.expect("no deadlock").unwrap();
    }
    for k in &keys {
        assert_eq!(exec(&h, k, Op::Get).await.unwrap(), Reply::Bytes(b("300")));
    }
}
