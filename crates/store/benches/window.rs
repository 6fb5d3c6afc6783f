//! The window log's cost on the write path, on and off side by side: the
//! four redis-benchmark writes (SET and INCR over 100,000 keys, SADD and
//! HSET into one collection of 100,000) in pipelined batches of 800 (as
//! 50 clients at -P 16 arrive), through the store handle with async
//! durability, so the shard's apply and the writer's log are both in it
//! and the network is not.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use squall_store::{Durability, Op, Options, Retention, SetExpiry, Store, lattice::Timestamp};

const BATCH: usize = 800;

fn ops(kind: &str, round: &mut u64) -> Vec<(Bytes, Op)> {
    (0..BATCH)
        .map(|_| {
            *round = round.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (*round >> 33) % 100_000;
            let name = Bytes::from(format!("element:{r:012}"));
            match kind {
                "set" => (
                    Bytes::from(format!("key:{r:012}")),
                    Op::Set { value: Bytes::from_static(b"xxx"), expiry: SetExpiry::None, get: false },
                ),
                "incr" => (Bytes::from(format!("counter:{r:012}")), Op::IncrBy(1)),
                "sadd" => (Bytes::from_static(b"myset"), Op::SAdd(vec![name])),
                _ => (Bytes::from_static(b"myhash"), Op::HSet(vec![(name, Bytes::from_static(b"xxx"))])),
            }
        })
        .collect()
}

fn writes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ns = Bytes::from_static(b"default");
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, retention) in [("on", Retention::default()), ("off", Retention { ms: 0, bytes: 0 })] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(dir.path());
        opts.shards = 1;
        opts.durability = Durability::Async;
        opts.retention = retention;
        let store = Store::open(opts).unwrap();
        let h = store.handle();
        let mut round = 1u64;
        for kind in ["set", "incr", "sadd", "hset"] {
            group.bench_function(format!("{kind}_{name}"), |b| {
                b.iter_batched(
                    || ops(kind, &mut round),
                    |ops| rt.block_on(h.dispatch_many(0, &ns, ops, Timestamp::ZERO).answer()).unwrap(),
                    criterion::BatchSize::SmallInput,
                )
            });
        }
        store.close();
    }
    group.finish();
}

criterion_group!(benches, writes);
criterion_main!(benches);
