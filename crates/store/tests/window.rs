//! The window log through the store's handle: reads and scans of the past
//! compared with the states the test saw live, before and after a restart.

use bytes::Bytes;
use squall_store::lattice::{Entry, ManualClock, Timestamp};
use squall_store::{
    Durability, Error, ExpireIf, GetExpiry, Handle, Op, Options, Retention, Session, SetExpiry, Store, ZAddOpts,
};
use std::collections::BTreeMap;
use std::sync::Arc;

fn ns() -> Bytes {
    Bytes::from_static(b"default")
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

const START: u64 = 1_800_000_000_000;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>, retention: Retention) -> Store {
    let mut o = Options::new(dir);
    o.shards = 3;
    o.durability = Durability::Async;
    o.clock = clock.clone();
    o.retention = retention;
    // Small snapshots, so segments are covered by them and kept for the window.
    o.snapshot_bytes = 16 << 10;
    Store::open(o).expect("store opens")
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KEYS: [&str; 14] = ["r0", "r1", "r2", "c0", "c1", "s0", "S0", "h0", "H0", "x", "l0", "L0", "z0", "Z0"];

fn random_op(rng: &mut Rng, key: &str, now: u64) -> Op {
    let member = |rng: &mut Rng| b(&format!("m{}", rng.below(60)));
    // The big set and hash (capitals) stay big: their element-level undo
    // records are what they test.
    let big = key.as_bytes()[0].is_ascii_uppercase();
    match (key.as_bytes()[0], rng.below(10)) {
        (_, 0) if !big => Op::Del,
        (_, 1) if !big => Op::ExpireAt(now + 1 + rng.below(80)),
        (_, 2) => Op::Persist,
        (b'r' | b'x', n) => {
            let expiry = if n == 3 { SetExpiry::At(now + 1 + rng.below(80)) } else { SetExpiry::None };
            let value = b(&format!("{}", rng.below(1000)));
            match rng.below(9) {
                0 => Op::SetIf { value, expiry, get: rng.below(2) == 0, present: rng.below(2) == 0 },
                1 => Op::GetDel,
                2 => Op::Append(value),
                3 => Op::SetRange(rng.below(6), value),
                4 => Op::IncrByFloat(rng.below(7) as f64 - 2.5),
                5 => Op::GetEx(Some(GetExpiry::At(now + rng.below(60)))),
                6 => Op::ExpireAtIf(now + rng.below(80), ExpireIf { gt: rng.below(2) == 0, ..ExpireIf::default() }),
                _ => Op::Set { value, expiry, get: false },
            }
        }
        (b'c', _) => Op::IncrBy(rng.below(21) as i64 - 10),
        (b'z' | b'Z', n) => {
            let score = rng.below(7) as f64 - 3.0;
            match n {
                3..=6 => {
                    let opts = ZAddOpts { incr: n == 6, gt: n == 5, ..ZAddOpts::default() };
                    Op::ZAdd { pairs: vec![(score, member(rng))], opts }
                }
                7 => Op::ZPop {
                    max: rng.below(2) == 0,
                    count: if rng.below(2) == 0 { None } else { Some(rng.below(3)) },
                },
                _ => Op::ZRem((0..1 + rng.below(3)).map(|_| member(rng)).collect()),
            }
        }
        (b'l' | b'L', n) => {
            let head = rng.below(2) == 0;
            let i = rng.below(8) as i64 - 4;
            match n {
                3..=5 => {
                    Op::Push { head, items: (0..1 + rng.below(3)).map(|_| member(rng)).collect(), existing: n == 5 }
                }
                6 => Op::Pop { head, count: if rng.below(2) == 0 { None } else { Some(rng.below(3)) } },
                7 if rng.below(2) == 0 => Op::LSet(i, member(rng)),
                7 => Op::LInsert { before: head, pivot: member(rng), item: member(rng) },
                8 => Op::LRem(i, member(rng)),
                // A big list stays big: LTRIM keeps most of it.
                _ if big => Op::LTrim(rng.below(2) as i64, -1 - rng.below(2) as i64),
                _ => Op::LTrim(i, i + rng.below(4) as i64),
            }
        }
        (b's' | b'S', n) if n < 7 => Op::SAdd((0..1 + rng.below(3)).map(|_| member(rng)).collect()),
        (b's' | b'S', 7) => Op::SPop(if rng.below(2) == 0 { None } else { Some(rng.below(3)) }),
        (b's' | b'S', _) => Op::SRem((0..1 + rng.below(3)).map(|_| member(rng)).collect()),
        (b'h' | b'H', 3) => Op::HIncrBy(member(rng), rng.below(9) as i64 - 4),
        (b'h' | b'H', 4) => Op::HSetNx(member(rng), b(&format!("{}", rng.below(100)))),
        (b'h' | b'H', n) if n < 7 => {
            Op::HSet((0..1 + rng.below(3)).map(|_| (member(rng), b(&format!("{}", rng.below(100))))).collect())
        }
        (_, _) => Op::HDel((0..1 + rng.below(3)).map(|_| member(rng)).collect()),
    }
}

type States = BTreeMap<String, Entry>;

async fn live(h: &Handle) -> States {
    let mut out = BTreeMap::new();
    for k in KEYS {
        if let Ok(squall_store::Reply::Entry(e)) = h.exec(&ns(), b(k), Op::Snapshot).await.unwrap() {
            out.insert(k.to_string(), *e);
        }
    }
    out
}

async fn past(h: &Handle, at: Timestamp) -> Result<States, Error> {
    let mut out = BTreeMap::new();
    for k in KEYS {
        if let Some(e) = h.read_at(&ns(), b(k), at).await? {
            out.insert(k.to_string(), e);
        }
    }
    Ok(out)
}

async fn scan_past(h: &Handle, at: Timestamp) -> Vec<String> {
    let mut cursor = 0;
    let mut keys = Vec::new();
    loop {
        let (next, page) = h.scan_at(&ns(), cursor, 3, None, at).await.unwrap();
        keys.extend(page.iter().map(|k| String::from_utf8_lossy(k).into_owned()));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys
}

/// Big collections (over 32 members) keep element-level undo records.
async fn seed(h: &Handle) {
    let many: Vec<Bytes> = (0..40).map(|i| b(&format!("m{i}"))).collect();
    h.exec(&ns(), b("S0"), Op::SAdd(many.clone())).await.unwrap().unwrap();
    let fields = many.iter().map(|m| (m.clone(), b("1"))).collect();
    h.exec(&ns(), b("H0"), Op::HSet(fields)).await.unwrap().unwrap();
    let items: Vec<Bytes> = (0..80).map(|i| b(&format!("m{}", i % 60))).collect();
    h.exec(&ns(), b("L0"), Op::Push { head: false, items, existing: false }).await.unwrap().unwrap();
    let pairs = many.iter().enumerate().map(|(i, m)| (i as f64, m.clone())).collect();
    h.exec(&ns(), b("Z0"), Op::ZAdd { pairs, opts: ZAddOpts::default() }).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_past_reads_as_it_was_live_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let retention = Retention { ms: 3_600_000, bytes: 64 << 20 };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut history: Vec<(Timestamp, States)> = Vec::new();
    {
        let store = open(dir.path(), &clock, retention);
        let h = store.handle();
        seed(&h).await;
        let mut session = Session::default();
        for step in 1..=1000u64 {
            let now = START + step * 10;
            clock.set(now);
            if rng.below(4) == 0 {
                // An atomic unit over several keys (and so several shards).
                let ops: Vec<(Bytes, Op)> = (0..2 + rng.below(3))
                    .map(|_| {
                        let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                        (b(k), random_op(&mut rng, k, now))
                    })
                    .collect();
                h.atomic(&ns(), ops, &mut session).await.unwrap();
            } else {
                let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                let _ = h.exec(&ns(), b(k), random_op(&mut rng, k, now)).await.unwrap();
            }
            history.push((Timestamp::new(now, u16::MAX), live(&h).await));
        }
        // Newest first: each read builds the index back only as far as it needs.
        for (at, states) in history.iter().rev().step_by(7) {
            assert_eq!(&past(&h, *at).await.unwrap(), states, "at {at:?}");
            assert_eq!(scan_past(&h, *at).await, states.keys().cloned().collect::<Vec<_>>(), "scan at {at:?}");
        }
        store.close();
    }
    // Snapshots were taken, and the segments they cover kept for the window.
    let files: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.iter().any(|f| f.starts_with("snapshot-")), "{files:?}");
    assert!(files.iter().filter(|f| f.starts_with("log-")).count() >= 2, "{files:?}");
    let store = open(dir.path(), &clock, retention);
    let h = store.handle();
    for (at, states) in &history {
        assert_eq!(&past(&h, *at).await.unwrap(), states, "after a restart, at {at:?}");
    }
    for (at, states) in history.iter().step_by(5) {
        assert_eq!(scan_past(&h, *at).await, states.keys().cloned().collect::<Vec<_>>(), "scan at {at:?}");
    }
    // Past the retention, the early history is out of the window, and the
    // error names the oldest time that is not.
    clock.set(START + 4_000 + retention.ms);
    match h.read_at(&ns(), b("r0"), history[0].0).await {
        Err(Error::OutOfWindow(oldest)) => assert_eq!(oldest.wall_ms(), START + 4_000),
        other => panic!("expected out of window, got {other:?}"),
    }
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cap_moves_the_horizon_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let retention = Retention { ms: 3_600_000, bytes: 64 << 10 };
    let store = open(dir.path(), &clock, retention);
    let h = store.handle();
    let mut times = Vec::new();
    for i in 0..3000u64 {
        clock.set(START + i);
        let value = b(&format!("{i:0>40}"));
        h.exec(&ns(), b(&format!("k{}", i % 50)), Op::Set { value, expiry: SetExpiry::None, get: false })
            .await
            .unwrap()
            .unwrap();
        times.push(Timestamp::new(START + i, u16::MAX));
    }
    let early = h.read_at(&ns(), b("k0"), times[10]).await;
    let Err(Error::OutOfWindow(oldest)) = early else { panic!("expected out of window, got {early:?}") };
    assert!(oldest > times[10] && oldest < times[2999], "{oldest:?}");
    // What is in the window reads back.
    let late = h.read_at(&ns(), b("k49"), times[2999]).await.unwrap().unwrap();
    assert_eq!(late.value, squall_store::lattice::Value::Register(b(&format!("{:0>40}", 2999))));
    store.close();
    let store = open(dir.path(), &clock, retention);
    let h = store.handle();
    let again = h.read_at(&ns(), b("k0"), times[10]).await;
    assert!(matches!(again, Err(Error::OutOfWindow(o)) if o >= oldest), "{again:?}");
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_read_of_a_long_past_builds_its_index_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let mut o = Options::new(dir.path());
    o.shards = 1;
    o.durability = Durability::Async;
    o.clock = clock.clone();
    let store = Store::open(o).unwrap();
    let h = store.handle();
    // More changes than one step of the index takes, in pipelined batches.
    for round in 0..50u64 {
        clock.set(START + round);
        let ops = (0..1000u64)
            .map(|i| {
                (
                    b(&format!("k{}", i % 100)),
                    Op::Set { value: b(&format!("{round}")), expiry: SetExpiry::None, get: false },
                )
            })
            .collect();
        h.dispatch_many(0, &ns(), ops, Timestamp::ZERO).answer().await.unwrap();
    }
    // The recent past needs few changes indexed, the older more, in steps.
    for round in [49u64, 17, 0, 49] {
        let e = h.read_at(&ns(), b("k7"), Timestamp::new(START + round, u16::MAX)).await.unwrap().unwrap();
        assert_eq!(e.value, squall_store::lattice::Value::Register(b(&round.to_string())));
    }
    assert_eq!(h.read_at(&ns(), b("k7"), Timestamp::new(START - 1, 0)).await.unwrap(), None);
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_page_by_whole_stamps_and_miss_none() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let store = open(dir.path(), &clock, Retention::DEFAULT);
    let h = store.handle();
    let mut session = Session::default();
    for i in 0..120u64 {
        clock.set(START + 1 + i);
        if i % 3 == 0 {
            // A unit of three keys (on several shards): one stamp.
            let ops = (0..3).map(|k| (b(&format!("u{k}")), Op::IncrBy(1))).collect();
            h.atomic(&ns(), ops, &mut session).await.unwrap();
        } else {
            h.exec(&ns(), b(&format!("k{}", i % 7)), Op::IncrBy(1)).await.unwrap().unwrap();
        }
    }
    let (from, to) = (Timestamp::new(START, u16::MAX), Timestamp::new(START + 200, u16::MAX));
    let (all, upto) = h.changes(&ns(), from, to, None, 10_000).await.unwrap();
    assert_eq!((all.len(), upto), (40 * 3 + 80, to));
    let mut paged = Vec::new();
    let mut at = from;
    loop {
        let (page, upto) = h.changes(&ns(), at, to, None, 5).await.unwrap();
        // Never half a unit: a page ends with a whole stamp.
        if let Some(last) = page.last() {
            assert!(
                all.iter().filter(|c| c.time == last.time).count()
                    == page.iter().filter(|c| c.time == last.time).count()
            );
        }
        paged.extend(page);
        if upto == to {
            break;
        }
        at = upto;
    }
    assert_eq!(paged, all);
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_too_big_to_keep_makes_its_keys_past_unreachable_not_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let store = open(dir.path(), &clock, Retention::DEFAULT);
    let h = store.handle();
    let set = |v: Bytes| Op::Set { value: v, expiry: SetExpiry::None, get: false };
    h.exec(&ns(), b("big"), set(Bytes::from(vec![b'x'; 17 << 20]))).await.unwrap().unwrap();
    h.exec(&ns(), b("other"), set(b("1"))).await.unwrap().unwrap();
    clock.set(START + 10);
    h.exec(&ns(), b("big"), set(b("small now"))).await.unwrap().unwrap();
    clock.set(START + 20);
    // Before the overwrite, the big value is not kept: a clear error, for that key only.
    let before = h.read_at(&ns(), b("big"), Timestamp::new(START + 5, 0)).await;
    assert!(matches!(before, Err(Error::OutOfWindow(t)) if t.wall_ms() == START + 10), "{before:?}");
    assert!(h.read_at(&ns(), b("other"), Timestamp::new(START + 5, 0)).await.unwrap().is_some());
    let after = h.read_at(&ns(), b("big"), Timestamp::new(START + 15, 0)).await.unwrap().unwrap();
    assert_eq!(after.value, squall_store::lattice::Value::Register(b("small now")));
    // A time no clock can show is an error, not a crash.
    assert!(squall_store::parse_time("260000000000000.0", START).unwrap_err().contains("future"));
    store.close();
}
