//! Admission: per function, a concurrency limit with a bounded queue in
//! front of it. A call that finds both full is refused at once
//! ([`Error::Busy`], which the gateway answers with 429) rather than left
//! to wait without bound. Also the per-function counters the metrics
//! endpoint reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::{Error, FunctionStats, Functions, Limits};

/// The instance pool as admission sees it: the invocations running now, of
/// all functions, each holding a pooled instance. A function with `share`
/// or more of them running may start another only while more than
/// `reserve` slots are left: the last slots stay for the other functions,
/// so no function, however many calls it loops in, can keep the others
/// from answering (a lone function cannot use them either). A call held
/// back waits in its function's queue. Callees and DAG steps run inside
/// their request's admission and are not counted here.
#[derive(Debug)]
pub(crate) struct Pool {
    running: AtomicUsize,
    size: usize,
    share: usize,
    reserve: usize,
    freed: Notify,
}

impl Pool {
    /// The gate for a pool of `instances` slots: an eighth of them is a
    /// function's share, and another eighth is kept for the others (none
    /// in a pool of fewer than 8).
    pub fn new(instances: usize) -> Arc<Pool> {
        Arc::new(Pool {
            running: AtomicUsize::new(0),
            size: instances,
            share: (instances / 8).max(1),
            reserve: instances / 8,
            freed: Notify::new(),
        })
    }

    /// Takes a slot for a function whose calls in the pool `own` counts,
    /// if the rule lets it; `own` counts it too then.
    fn try_take(&self, own: &AtomicUsize) -> bool {
        let mine = own.fetch_add(1, Ordering::AcqRel);
        let taken = self.running.fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
            let full = total >= self.size || (mine >= self.share && total + self.reserve >= self.size);
            (!full).then_some(total + 1)
        });
        if taken.is_err() {
            own.fetch_sub(1, Ordering::AcqRel);
        }
        taken.is_ok()
    }

    /// Waits until a function whose calls in the pool `own` counts may take
    /// a slot, and takes it.
    async fn take(&self, own: &AtomicUsize) {
        loop {
            let freed = self.freed.notified();
            if self.try_take(own) {
                return;
            }
            freed.await;
        }
    }

    fn give_back(&self, own: &AtomicUsize) {
        own.fetch_sub(1, Ordering::AcqRel);
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

/// Per-function admission: a concurrency limit with a bounded queue in front.
#[derive(Debug)]
pub(crate) struct Admission {
    running: Arc<Semaphore>,
    /// Invocations admitted and not finished (queued + running).
    inside: AtomicUsize,
    limit: usize,
    concurrency: usize,
}

impl Admission {
    pub fn new(l: &Limits) -> Arc<Admission> {
        Arc::new(Admission {
            running: Arc::new(Semaphore::new(l.concurrency as usize)),
            inside: AtomicUsize::new(0),
            limit: l.concurrency as usize + l.queue as usize,
            concurrency: l.concurrency as usize,
        })
    }

    /// Admits a call of `name` and waits for its turn to run (a permit of
    /// its function, then a slot of `pool`): its slot, and how long it
    /// queued. Refuses it if the queue is full.
    pub async fn admit(
        self: &Arc<Self>,
        name: &str,
        stats: Arc<FunctionStats>,
        pool: &Arc<Pool>,
    ) -> Result<(Slot, Duration), Error> {
        let inside = self.inside.fetch_add(1, Ordering::AcqRel);
        if inside >= self.limit {
            self.inside.fetch_sub(1, Ordering::AcqRel);
            let waiting = inside.saturating_sub(self.concurrency);
            return Err(Error::Busy {
                name: name.to_string(),
                waiting,
                limit: self.limit - self.concurrency,
                retry_after: Duration::from_secs(1),
            });
        }
        // Each count below is given back by a guard, so a caller that goes
        // away (a closed connection drops this future) leaks none of them.
        let mut slot = Slot { adm: self.clone(), stats: stats.clone(), permit: None, pool: None };
        let queued_at = Instant::now();
        {
            let _queued = Gauge::up(&stats.queued);
            let permit = self.running.clone().acquire_owned().await;
            slot.permit = Some(permit.map_err(|_| Error::Unavailable("function removed".into()))?);
            pool.take(&stats.pooled).await;
            slot.pool = Some(pool.clone());
        }
        stats.running.fetch_add(1, Ordering::Relaxed);
        stats.invocations.fetch_add(1, Ordering::Relaxed);
        Ok((slot, queued_at.elapsed()))
    }
}

/// An admitted invocation: counted in its function's queue bound, and once
/// it holds a concurrency permit, in its running count. Dropping it gives
/// back all of that.
pub(crate) struct Slot {
    adm: Arc<Admission>,
    stats: Arc<FunctionStats>,
    /// The concurrency permit, once it has one.
    permit: Option<OwnedSemaphorePermit>,
    /// The pool, once it holds a slot of it.
    pool: Option<Arc<Pool>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            self.stats.running.fetch_sub(1, Ordering::Relaxed);
            pool.give_back(&self.stats.pooled);
        }
        self.permit.take();
        self.adm.inside.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A gauge held up for as long as this lives.
struct Gauge<'a>(&'a AtomicUsize);

impl<'a> Gauge<'a> {
    fn up(g: &'a AtomicUsize) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Gauge(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Functions {
    /// A function's statistics (kept across redeploys).
    pub fn stats(&self, name: &str) -> Arc<FunctionStats> {
        let mut all = self.inner.stats.lock().expect("stats");
        match all.get(name) {
            Some(s) => s.clone(),
            None => all.entry(name.to_string()).or_default().clone(),
        }
    }

    /// Every function's statistics, by name.
    pub fn all_stats(&self) -> Vec<(String, Arc<FunctionStats>)> {
        let mut v: Vec<_> =
            self.inner.stats.lock().expect("stats").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Stops the map jobs' runners, then waits until no invocation is queued
    /// or running (their follow-up work included), for at most `limit`;
    /// false if some were still going. For
    /// a node that stops: its listeners take no new calls by then.
    pub async fn drain(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        // Map jobs start no more elements (they go on after a restart).
        if !self.stop_jobs(limit).await {
            return false;
        }
        // Triggers deliver no more events (queued ones go on after a restart).
        if !self.stop_triggers(limit).await {
            return false;
        }
        loop {
            let busy = self.load_by_function().iter().any(|(_, queued, running)| queued + running > 0);
            if !busy {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Queue depth and running instances of every deployed function.
    pub fn load_by_function(&self) -> Vec<(String, usize, usize)> {
        self.all_stats()
            .into_iter()
            .map(|(n, s)| (n, s.queued.load(Ordering::Relaxed), s.running.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_until_a_call_ends() {
        let adm = Admission::new(&Limits { concurrency: 1, queue: 1, ..Limits::default() });
        let stats = Arc::new(FunctionStats::default());
        let pool = Pool::new(64);
        let (running, _) = adm.admit("f", stats.clone(), &pool).await.unwrap();
        let queued = tokio::spawn({
            let (adm, stats, pool) = (adm.clone(), stats.clone(), pool.clone());
            async move { adm.admit("f", stats, &pool).await.map(drop) }
        });
        while stats.queued.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = adm.admit("f", stats.clone(), &pool).await.map(drop);
        assert!(matches!(refused, Err(Error::Busy { waiting: 1, limit: 1, .. })), "{refused:?}");
        assert_eq!(stats.running.load(Ordering::Relaxed), 1);

        // The running call ends: the queued one runs, and the refused caller's retry gets in.
        drop(running);
        queued.await.unwrap().unwrap();
        let (_again, _) = adm.admit("f", stats.clone(), &pool).await.unwrap();
        assert_eq!(stats.invocations.load(Ordering::Relaxed), 3);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_function_past_its_share_leaves_the_last_slots_to_others() {
        // 16 slots: a share of 2, 2 kept for the others.
        let pool = Pool::new(16);
        let limits = Limits { concurrency: 100, queue: 100, ..Limits::default() };
        let (greedy, greedy_stats) = (Admission::new(&limits), Arc::new(FunctionStats::default()));
        let mut held = Vec::new();
        for _ in 0..14 {
            held.push(greedy.admit("greedy", greedy_stats.clone(), &pool).await.unwrap().0);
        }
        // The 15th call of the same function waits, in its queue.
        let waiting = tokio::spawn({
            let (adm, stats, pool) = (greedy.clone(), greedy_stats.clone(), pool.clone());
            async move { adm.admit("greedy", stats, &pool).await.map(|(slot, _)| slot) }
        });
        while greedy_stats.queued.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        // Another function still gets in, twice (its share).
        let (other, other_stats) = (Admission::new(&limits), Arc::new(FunctionStats::default()));
        let a = other.admit("other", other_stats.clone(), &pool).await.unwrap().0;
        let b = other.admit("other", other_stats.clone(), &pool).await.unwrap().0;
        assert_eq!(other_stats.running.load(Ordering::Relaxed), 2);
        assert!(!waiting.is_finished());
        // A slot comes back: the waiting call takes it.
        drop((a, b));
        drop(held.pop());
        let slot = waiting.await.unwrap().unwrap();
        assert_eq!(greedy_stats.running.load(Ordering::Relaxed), 14);
        drop(slot);
    }
}
