//! The function service reads time from the store's clock: a test that sets
//! that clock sees idempotency keys expire, and the times the service
//! reports, without waiting for real time to pass.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use squall_runtime::Runtime;
use squall_scheduler::{Functions, LogQuery, Request, Response, Settings};
use squall_store::lattice::ManualClock;
use squall_store::{Durability, Options, Store};

/// Far from the real time, so a time read from the system clock shows.
const T0: u64 = 1_000_000_000_000;
const TTL: Duration = Duration::from_secs(60);

struct Node {
    clock: Arc<ManualClock>,
    store: Store,
    functions: Functions,
    _dir: tempfile::TempDir,
}

/// A store on a manual clock at `T0`, with `counter` deployed.
async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut opts = Options::new(dir.path());
    opts.shards = 1;
    opts.durability = Durability::Async;
    opts.clock = clock.clone();
    let store = Store::open(opts).unwrap();
    let runtime = Arc::new(Runtime::new(Default::default()).unwrap());
    let settings = Settings { idempotency_ttl: TTL, ..Settings::default() };
    let functions = Functions::start(store.handle(), runtime, settings).await.unwrap();
    functions.deploy("counter", Bytes::from_static(squall_guests::COUNTER), Default::default()).await.unwrap();
    Node { clock, store, functions, _dir: dir }
}

impl Node {
    /// Increments `hits`, with idempotency key `key`; the count it answers.
    async fn count(&self, key: &str) -> (String, Response) {
        let req = Request { input: b"hits".to_vec(), idempotency_key: Some(key.into()), ..Request::default() };
        let r = self.functions.invoke("counter", req).await.unwrap();
        let out = String::from_utf8(r.outcome.clone().unwrap()).unwrap();
        (out, r)
    }

    fn close(self) {
        drop(self.functions);
        self.store.close();
    }
}

#[tokio::test]
async fn an_idempotency_key_is_replayed_until_its_time_to_live_then_runs_again() {
    let node = node().await;
    let (n, first) = node.count("k").await;
    assert_eq!((n.as_str(), first.replayed), ("1", false));

    node.clock.advance(TTL.as_millis() as u64 - 1);
    let (n, again) = node.count("k").await;
    assert_eq!((n.as_str(), again.replayed), ("1", true), "replayed within its time to live");
    assert_eq!(again.invocation_id, first.invocation_id);

    node.clock.advance(2);
    let (n, after) = node.count("k").await;
    assert_eq!((n.as_str(), after.replayed), ("2", false), "ran again once the record expired");
    assert_ne!(after.invocation_id, first.invocation_id);

    // The new run's answer is the one remembered now.
    let (n, last) = node.count("k").await;
    assert_eq!((n.as_str(), last.invocation_id), ("2", after.invocation_id));
    node.close();
}

#[tokio::test]
async fn the_times_it_reports_are_the_store_clocks() {
    let node = node().await;
    assert_eq!(node.functions.show("counter").unwrap().created_ms, T0);

    node.clock.advance(1234);
    let (_, r) = node.count("k").await;
    let logs = node.functions.logs("counter", &LogQuery::default()).unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].started_ms, T0 + 1234);
    assert!(r.invocation_id.starts_with(&format!("{:012x}-", T0 + 1234)), "{}", r.invocation_id);
    node.close();
}
