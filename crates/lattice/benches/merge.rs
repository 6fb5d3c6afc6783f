//! Merge throughput of the lattice types.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use squall_lattice::{Lattice, Lww, Members, PnCounter, Stamp, Timestamp};
use std::hint::black_box;

fn merge(c: &mut Criterion) {
    let s = |ms| Stamp::new(Timestamp::new(ms, 0), 1);
    c.bench_function("lww_merge", |b| {
        let a = Lww::new(s(1), Bytes::from_static(b"aaa"));
        let n = Lww::new(s(2), Bytes::from_static(b"bbb"));
        b.iter(|| black_box(a.clone()).join(black_box(n.clone())))
    });
    c.bench_function("counter_merge_3_nodes", |b| {
        let mut x = PnCounter::default();
        let mut y = PnCounter::default();
        for n in 0..3 {
            x.add(s(1).with_node(n), 5);
            y.add(s(2).with_node(n), 7);
        }
        b.iter(|| black_box(x.clone()).join(black_box(y.clone())))
    });
    for size in [10usize, 1_000] {
        c.bench_function(&format!("set_merge_{size}"), |b| {
            let mut x = Members::default();
            let mut y = Members::default();
            for i in 0..size {
                x.merge_entry(Bytes::from(format!("m{i}")), Lww::new(s(1), true));
                y.merge_entry(Bytes::from(format!("m{}", i + size / 2)), Lww::new(s(2), true));
            }
            b.iter(|| black_box(x.clone()).join(black_box(y.clone())))
        });
    }
    c.bench_function("set_insert_into_10k", |b| {
        let mut x = Members::default();
        for i in 0..10_000 {
            x.merge_entry(Bytes::from(format!("m{i}")), Lww::new(s(1), true));
        }
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            x.merge_entry(Bytes::from(format!("n{}", i % 20_000)), Lww::new(s(i + 2), true))
        })
    });
}

criterion_group!(benches, merge);
criterion_main!(benches);
