//! Replays: a function run against the store as it was at a past time,
//! read-only. The version that runs is the one deployed then (its record in
//! the `sys` namespace read at that time, through the window log); its
//! reads see the past, its writes are reported and never committed. What
//! it calls runs the same way (over forks of its transaction), though in
//! the callees' current versions; its messages reach no live invocation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use squall_runtime::{Failure, Invocation};
use squall_store::Write;
use squall_store::lattice::{Timestamp, Value};

use crate::calls::{Tree, TreeLink};
use crate::registry::{Deployed, component_key, meta_key};
use crate::{Error, FunctionMeta, Functions, StoreTxn, Timing, placement, sys};

/// What a replay found.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub invocation_id: String,
    pub outcome: Result<Vec<u8>, Failure>,
    /// What it would have written, in the order it first wrote each key
    /// (nothing when it failed).
    pub writes: Vec<Write>,
    /// The version that ran: the one deployed at the time asked for.
    pub version: u64,
    pub digest: String,
    pub timing: Timing,
}

impl Functions {
    /// Runs function `name` on `input` against the store as it was at `at`,
    /// changing nothing.
    pub async fn invoke_at(
        &self,
        name: &str,
        input: Vec<u8>,
        timeout: Option<Duration>,
        at: Timestamp,
    ) -> Result<Replayed, Error> {
        let max = self.inner.settings.max_input;
        if input.len() > max {
            return Err(Error::InputTooLarge(input.len(), max));
        }
        let d = self.version_at(name, at).await?;
        let stats = self.stats(&d.meta.name);
        let (slot, queue) = d.admission.admit(&d.meta.name, stats, &self.inner.pool).await?;
        let store = &self.inner.store;
        let turn = || self.inner.next_shard.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shard = placement::shard(d.affinity.get(), store.current_shard(), turn, store.shards());
        let this = self.clone();
        let task = store.spawn_on(shard, async move {
            let r = this.replay_run(&d, input, timeout, at, shard).await;
            drop(slot);
            r
        });
        let mut r = task.await.map_err(|e| Error::Unavailable(format!("replay task failed: {e}")))?;
        r.timing.queue = queue;
        Ok(r)
    }

    /// The version of `name` that was deployed at `at`.
    async fn version_at(&self, name: &str, at: Timestamp) -> Result<Arc<Deployed>, Error> {
        let past = |what: &str| Error::NotDeployedAt(format!("no function named {name:?} was deployed at {what}"));
        let record = self.inner.store.read_at(&sys(), meta_key(name), at).await?;
        let meta: FunctionMeta = match record.map(|e| e.value) {
            Some(Value::Register(raw)) => serde_json::from_slice(&raw)
                .map_err(|e| Error::Unavailable(format!("unreadable function record of {name}: {e}")))?,
            _ => return Err(past(&squall_store::format_time(at))),
        };
        if let Ok(now) = self.get(name)
            && now.meta.digest == meta.digest
        {
            return Ok(now);
        }
        // Another version: its bytes as they are now, or as they were then.
        let key = component_key(&meta.digest);
        let bytes = match self.sys_get(key.clone()).await? {
            Some(b) => b,
            None => match self.inner.store.read_at(&sys(), key, at).await?.map(|e| e.value) {
                Some(Value::Register(b)) => b,
                _ => return Err(Error::Unavailable(format!("the component of {name} at that time is gone"))),
            },
        };
        let compiled = self.compile(meta.digest.clone(), bytes).await?;
        Ok(self.version(meta, compiled))
    }

    async fn replay_run(
        &self,
        d: &Deployed,
        input: Vec<u8>,
        timeout: Option<Duration>,
        at: Timestamp,
        shard: usize,
    ) -> Replayed {
        let inner = &self.inner;
        let id = self.invocation_id();
        let inv = Invocation {
            id: id.clone(),
            input,
            timeout: timeout.map_or(d.template.timeout, |t| t.min(d.template.timeout)),
            ..d.template.clone()
        };
        let txn = Box::new(StoreTxn::at(inner.store.clone(), self.store_ns(&inv.function), at));
        let started = Instant::now();
        let mut timing = Timing::default();
        // Not an instance made ready ahead: those are for live calls.
        let instance = self.instance(d, &inv, shard, false, started, &mut timing).await;
        let ns = crate::namespace_of(&inv.function);
        let open = self.open_mailbox(&id, ns);
        let tree = Tree::replay(id.clone(), ns, started + inv.timeout);
        let link = TreeLink::new(self, tree, 0, open.mailbox.clone());
        let done = inner.runtime.run(instance, &inv, txn, Box::new(link), started).await;
        drop(open);
        timing.run = done.timing.run;
        timing.store = done.timing.store;
        timing.calls = done.timing.calls;
        let txn = done.txn.into_any().downcast::<StoreTxn>().expect("the scheduler's own transaction");
        let writes = if done.outcome.is_ok() { txn.into_commit().1 } else { Vec::new() };
        Replayed {
            invocation_id: id,
            outcome: done.outcome,
            writes,
            version: d.meta.version,
            digest: d.meta.digest.clone(),
            timing,
        }
    }
}
