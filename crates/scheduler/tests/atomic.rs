//! An invocation's writes are one atomic unit: across shards they land
//! with one stamp, and concurrent invocations over the same keys never
//! lose a write.

use std::sync::Arc;

use bytes::Bytes;
use squall_runtime::Runtime;
use squall_scheduler::{Functions, Request, Settings};
use squall_store::lattice::Stamp;
use squall_store::{Durability, Handle, Op, Options, Reply, Store};

async fn node(dir: &std::path::Path) -> (Store, Functions) {
    let mut opts = Options::new(dir);
    opts.shards = 4;
    opts.durability = Durability::Sync;
    let store = Store::open(opts).unwrap();
    let runtime = Arc::new(
        Runtime::new(squall_runtime::Options { clock: store.handle().clock().clone(), ..Default::default() }).unwrap(),
    );
    let functions = Functions::start(store.handle(), runtime, Settings::default()).await.unwrap();
    functions.deploy("multi", Bytes::from_static(squall_guests::MULTI_WRITE), Default::default()).await.unwrap();
    (store, functions)
}

async fn stamp_of(h: &Handle, key: &str) -> Stamp {
    let ns = Bytes::from_static(b"default");
    match h.exec(&ns, Bytes::copy_from_slice(key.as_bytes()), Op::Snapshot).await.unwrap() {
        Ok(Reply::Entry(e)) => e.latest_stamp(),
        other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_across_shards_lands_with_one_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let (store, functions) = node(dir.path()).await;
    let h = store.handle();
    let keys: Vec<String> = (0..8).map(|i| format!("multi:{i}")).collect();
    let shards: std::collections::HashSet<usize> = keys.iter().map(|k| h.shard_of(k.as_bytes())).collect();
    assert!(shards.len() > 1, "the keys must span shards");
    let req = Request { input: keys.join(" ").into_bytes(), ..Request::default() };
    let r = functions.invoke("multi", req).await.unwrap();
    assert_eq!(r.outcome.unwrap(), b"wrote 8");
    let mut stamps = Vec::new();
    for k in &keys {
        stamps.push(stamp_of(&h, k).await);
    }
    assert!(stamps.iter().all(|s| *s == stamps[0]), "one invocation, several stamps: {stamps:?}");
    // A second invocation over the same keys commits later, again as one.
    functions.invoke("multi", Request { input: keys.join(" ").into_bytes(), ..Request::default() }).await.unwrap();
    let mut again = Vec::new();
    for k in &keys {
        again.push(stamp_of(&h, k).await);
    }
    assert!(again.iter().all(|s| *s == again[0]) && again[0] > stamps[0], "{again:?} after {stamps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_across_shards_lose_no_increment() {
    let dir = tempfile::tempdir().unwrap();
    let (store, functions) = node(dir.path()).await;
    // Every key's slot 1 of 4 is a counter (register, counter, set, hash, ...).
    let input = "a:0 a:1 a:2 a:3 b:0 b:1 b:2 b:3".to_string();
    let mut calls = Vec::new();
    for _ in 0..40 {
        let (f, input) = (functions.clone(), input.clone());
        calls.push(tokio::spawn(async move {
            f.invoke("multi", Request { input: input.into_bytes(), ..Request::default() }).await.unwrap()
        }));
    }
    for c in calls {
        assert!(c.await.unwrap().outcome.is_ok());
    }
    let h = store.handle();
    let ns = Bytes::from_static(b"default");
    for key in ["a:1", "b:1"] {
        let got = h.exec(&ns, Bytes::from_static(key.as_bytes()), Op::Get).await.unwrap();
        assert_eq!(got, Ok(Reply::Bytes(Bytes::from_static(b"40"))), "{key}");
    }
}
