//! Keyspace get/put: the in-memory apply path alone (the pure keyspace,
//! no disk records), and a round trip through the store handle (a message
//! to the shard thread and back).

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use squall_store::lattice::{Stamp, Timestamp};
use squall_store::{Durability, Keyspace, Op, Options, SetExpiry, Store};
use std::hint::black_box;

fn keys(n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("key:{i:08}"))).collect()
}

fn apply(c: &mut Criterion) {
    let ns = Bytes::from_static(b"default");
    let keys = keys(100_000);
    let mut shard = Keyspace::new(1);
    let value = Bytes::from_static(b"xxx");
    let mut i = 0usize;
    let mut t = 0u64;
    let mut stamp = || {
        t += 1;
        Stamp::new(Timestamp(t), 1)
    };
    c.bench_function("shard_apply_set", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            let op = Op::Set { value: value.clone(), expiry: SetExpiry::None, get: false };
            black_box(shard.apply(&ns, &keys[i], op, stamp(), 0))
        })
    });
    c.bench_function("shard_apply_get", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(shard.read(&ns, &keys[i], &Op::Get, 0))
        })
    });
    c.bench_function("shard_apply_incr", |b| {
        b.iter(|| {
            i = (i + 7919) % 1000;
            black_box(shard.apply(&ns, &keys[i], Op::IncrBy(1), stamp(), 0))
        })
    });
    c.bench_function("shard_apply_sadd_100k_set", |b| {
        let set = Bytes::from_static(b"myset");
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(shard.apply(&ns, &set, Op::SAdd(vec![keys[i].clone()]), stamp(), 0))
        })
    });
}

fn round_trip(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.shards = 1;
    opts.durability = Durability::Async;
    let store = Store::open(opts).unwrap();
    let h = store.handle();
    let ns = Bytes::from_static(b"default");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = Bytes::from_static(b"k");
    c.bench_function("handle_exec_set_via_message", |b| {
        b.iter(|| {
            rt.block_on(h.exec(
                &ns,
                key.clone(),
                Op::Set { value: Bytes::from_static(b"v"), expiry: SetExpiry::None, get: false },
            ))
            .unwrap()
        })
    });
    c.bench_function("handle_exec_get_via_message", |b| {
        b.iter(|| rt.block_on(h.exec(&ns, key.clone(), Op::Get)).unwrap())
    });
    drop(rt);
    store.close();
}

criterion_group!(benches, apply, round_trip);
criterion_main!(benches);
