//! Function runtime benchmarks: instantiation, and an in-process invocation
//! of `counter` (admission, its task on the key's shard thread, a store
//! transaction, the atomic commit), from a shard thread and from another;
//! both its cost (back to back) and its latency (call to answer).
//!
//! `cargo bench -p squall-scheduler --bench functions`

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use squall_runtime::{Answer, BoxFuture, Call, Function, Invocation, Runtime, StoreError, Txn};
use squall_scheduler::{Functions, Request, Settings};
use squall_store::{Durability, Options, Store};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The squall binary's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every single call's duration, for the p50 and p99 the targets name
/// (criterion reports the mean over its samples). The first calls, criterion's
/// warm-up included, are in too; they are few next to the rest.
#[derive(Default)]
struct PerCall(Vec<Duration>);

impl PerCall {
    /// The `q` quantile in microseconds (sorts the calls first).
    fn at(&mut self, q: f64) -> f64 {
        let v = &mut self.0;
        v.sort_unstable();
        v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6
    }

    fn print(&mut self, name: &str) {
        if self.0.is_empty() {
            return;
        }
        let (p50, p99) = (self.at(0.5), self.at(0.99));
        println!("{name}: per call p50 {p50:.1} us, p99 {p99:.1} us ({} calls)", self.0.len());
    }
}

/// The state of a bare store: a WASI context and nothing else.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Squall's instantiation of `hello` next to wasmtime's floor for it, in
/// turns within one loop so both see the same machine: a new Store and the
/// instance, on the runtime's own engine (what the spike in STACK.md timed
/// at p50 ~10 us), its data a WASI context kept from the previous turn as
/// Squall keeps its host state. Squall adds the rest of its host state, a
/// memory limiter and an epoch callback.
fn instantiate_side_by_side(rt: &tokio::runtime::Runtime, runtime: &Runtime, hello: &Function, inv: &Invocation) {
    let engine = runtime.engine();
    let mut linker = wasmtime::component::Linker::<Bare>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    let pre = linker.instantiate_pre(hello.component()).unwrap();
    let (mut ours, mut floor) = (PerCall::default(), PerCall::default());
    let calls = 50_000;
    rt.block_on(async {
        let mut bare = Some(Bare { wasi: WasiCtx::builder().build(), table: ResourceTable::new() });
        for _ in 0..calls {
            let done = runtime.invoke(hello, inv, Box::new(NoStore)).await;
            done.outcome.unwrap();
            ours.0.push(done.timing.instantiate);
            // Torn down (and its host state left) before the floor's turn.
            drop(done.instance);

            let t = Instant::now();
            let mut store = wasmtime::Store::new(engine, bare.take().unwrap());
            store.set_epoch_deadline(1_000_000);
            pre.instantiate_async(&mut store).await.unwrap();
            floor.0.push(t.elapsed());
            let mut data = store.into_data();
            data.table = ResourceTable::new();
            bare = Some(data);
        }
    });
    let (a, b) = (ours.at(0.5), floor.at(0.5));
    println!(
        "instantiate hello side by side ({calls} each, in turns): squall p50 {a:.1} us, p99 {:.1} us | wasmtime floor p50 {b:.1} us, p99 {:.1} us | p50 ratio {:.2}",
        ours.at(0.99),
        floor.at(0.99),
        a / b
    );
}

/// A transaction for guests that never touch the store.
struct NoStore;

impl Txn for NoStore {
    fn call(&mut self, _call: Call) -> BoxFuture<'_, Result<Answer, StoreError>> {
        Box::pin(async { Err(StoreError::Unavailable("no store in this benchmark".into())) })
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn fork(&self) -> Box<dyn Txn> {
        Box::new(NoStore)
    }

    fn join(&mut self, _callee: Box<dyn Txn>) -> Result<(), String> {
        Ok(())
    }
}

fn runtime_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let runtime = Runtime::new(Default::default()).unwrap();
    let hello = runtime.compile(squall_guests::HELLO).unwrap();
    let inv = Invocation {
        id: "bench".into(),
        function: "hello".into(),
        version: 1,
        input: b"bench".to_vec(),
        timeout: Duration::from_secs(30),
        memory: 128 << 20,
        env: Vec::new(),
    };
    let mut g = c.benchmark_group("runtime");
    // The runtime's own clock around instantiation only (a new Store with its
    // WASI context, a pooled slot, the instance).
    let mut calls = PerCall::default();
    g.bench_function("instantiate_hello", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let done = runtime.invoke(&hello, &inv, Box::new(NoStore)).await;
                    if let Err(e) = &done.outcome {
                        panic!("{e:?}");
                    }
                    total += done.timing.instantiate;
                    calls.0.push(done.timing.instantiate);
                }
                total
            })
        })
    });
    calls.print("runtime/instantiate_hello");
    // Only when criterion measured `instantiate_hello` (not filtered out,
    // not a `--test` run).
    if calls.0.len() >= 1000 {
        instantiate_side_by_side(&rt, &runtime, &hello, &inv);
    }
    // Instantiate, call `handle`, tear down (reset the pooled slot).
    g.bench_function("invoke_hello", |b| {
        b.iter(|| rt.block_on(async { runtime.invoke(&hello, &inv, Box::new(NoStore)).await.outcome.unwrap() }))
    });
    g.finish();
}

fn service_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.shards = 2;
    opts.durability = Durability::Async;
    let store = Store::open(opts).unwrap();
    let functions = rt.block_on(async {
        let runtime = Arc::new(Runtime::new(Default::default()).unwrap());
        let f = Functions::start(store.handle(), runtime, Settings::default()).await.unwrap();
        f.deploy("counter", Bytes::from_static(squall_guests::COUNTER), Default::default()).await.unwrap();
        f.deploy("hello", Bytes::from_static(squall_guests::HELLO), Default::default()).await.unwrap();
        f
    });
    let mut g = c.benchmark_group("service");
    let handle = store.handle();
    let home = handle.shard_of(b"hits");
    // `calls` invocations of `name`, one after another, from a task on
    // `home`'s thread. With `settle`, only the time from each call to its
    // answer counts, and the work an invocation leaves for after its answer
    // (tearing its instance down, making the next one ready) is done before
    // the next call, as it is between the calls of a client that waits for
    // each answer. Without, calls follow each other at once and all of that
    // work is counted: the cost of an invocation at full load.
    let on_shard = |name: &'static str, input: &'static [u8], calls: u64, settle: bool, per_call: &mut PerCall| {
        let f = functions.clone();
        let task = handle.spawn_on(home, async move {
            let stats = f.stats(name);
            let mut each = Vec::with_capacity(calls as usize);
            let started = Instant::now();
            for _ in 0..calls {
                let t = Instant::now();
                let r = f.invoke(name, Request { input: input.to_vec(), ..Default::default() }).await;
                each.push(t.elapsed());
                r.unwrap().outcome.unwrap();
                while settle && stats.running.load(Ordering::Relaxed) > 0 {
                    tokio::task::yield_now().await;
                }
            }
            (if settle { each.iter().sum() } else { started.elapsed() }, each)
        });
        let (time, each) = rt.block_on(task).unwrap();
        per_call.0.extend(each);
        time
    };
    // The in-process path from a caller on the key's shard thread, where HTTP
    // and Redis connections live and invocations call each other: admission,
    // the invocation's task, the guest, its read, the commit. Back to back:
    // what one invocation costs in all (the instantiation and teardown done
    // between calls included), i.e. the inverse of one thread's throughput.
    let mut calls = PerCall::default();
    g.bench_function("invoke_counter", |b| {
        b.iter_custom(|iters| on_shard("counter", b"hits", iters, false, &mut calls))
    });
    calls.print("service/invoke_counter (each call to its answer, back to back)");
    // Latency, from the call to its answer, with the work left for after
    // each answer done between calls: a warm call's instance was made ready
    // before it came.
    let mut calls = PerCall::default();
    g.bench_function("invoke_counter_latency", |b| {
        b.iter_custom(|iters| on_shard("counter", b"hits", iters, true, &mut calls))
    });
    calls.print("service/invoke_counter_latency");
    // `hello` (no store access), latency.
    let mut calls = PerCall::default();
    g.bench_function("invoke_hello_latency", |b| {
        b.iter_custom(|iters| on_shard("hello", b"bench", iters, true, &mut calls))
    });
    calls.print("service/invoke_hello_latency");
    // `counter` back to back from a thread that is not a shard's: a hop onto
    // the key's shard thread and one back (two thread wake-ups) per call on
    // top of `invoke_counter`.
    g.bench_function("invoke_counter_cross_thread", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = functions.invoke("counter", Request { input: b"hits".to_vec(), ..Default::default() }).await;
                r.unwrap().outcome.unwrap()
            })
        })
    });
    g.finish();
    drop(functions);
    store.close();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = runtime_benches, service_benches
}
criterion_main!(benches);
