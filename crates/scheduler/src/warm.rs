//! Warm instances: instances made ready ahead of their calls, at most one
//! per function and shard thread, and the instance each attempt runs in.
//!
//! An instance is made ahead on a shard thread once a call there has ended
//! and its instance is torn down, so the next call there starts without
//! instantiating. They come out of the same pool as running instances, so
//! all functions together keep at most a quarter of the pool ready, none is
//! made for a while after a call found the pool full, and such a call lets
//! one go.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use squall_runtime::{Invocation, Prepared};

use crate::registry::Deployed;
use crate::{Functions, Timing};

/// The longest an instance made ahead may take to instantiate.
const AHEAD_LIMIT: Duration = Duration::from_secs(1);
/// How long no instance is made ahead after a call found the pool full.
const POOL_FULL_PAUSE_MS: u64 = 1000;

/// The ready instances' share of the pool, over all functions.
pub(crate) struct Share {
    /// Ready instances of all functions (and those being made).
    count: Arc<AtomicUsize>,
    /// The most there may be.
    cap: usize,
    /// No instance is made ahead before this time (ms since the Unix epoch,
    /// by the store's clock): a call found the pool full.
    pool_full_until: AtomicU64,
}

impl Share {
    pub fn new(cap: usize) -> Share {
        Share { count: Arc::new(AtomicUsize::new(0)), cap, pool_full_until: AtomicU64::new(0) }
    }
}

/// One function's instances made ready ahead, one place per shard thread.
pub(crate) struct Ready {
    slots: Box<[Mutex<Option<Prepared>>]>,
    /// Ready instances of all functions (and those being made).
    count: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ready {
    pub fn new(shards: usize, share: &Share) -> Ready {
        Ready { slots: (0..shards).map(|_| Mutex::new(None)).collect(), count: share.count.clone() }
    }

    fn take(&self, shard: usize) -> Option<Prepared> {
        let p = lock(self.slots.get(shard)?).take();
        if p.is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        p
    }

    fn has(&self, shard: usize) -> bool {
        self.slots.get(shard).is_none_or(|s| lock(s).is_some())
    }

    /// Keeps `p` for `shard`'s next call, counted by `place`; gives it back
    /// if that shard has one already.
    fn put(&self, shard: usize, p: Prepared, place: Place) -> Result<(), Prepared> {
        let Some(slot) = self.slots.get(shard) else { return Err(p) };
        let mut slot = lock(slot);
        if slot.is_some() {
            return Err(p);
        }
        *slot = Some(p);
        std::mem::forget(place);
        Ok(())
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        let held = self
            .slots
            .iter_mut()
            .map(|s| s.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).is_some())
            .filter(|held| *held)
            .count();
        self.count.fetch_sub(held, Ordering::Relaxed);
    }
}

/// A place among the ready instances, taken before one is made: given back
/// when dropped, unless the instance is kept (then it counts as ready).
struct Place(Arc<AtomicUsize>);

impl Place {
    fn take(share: &Share) -> Option<Place> {
        if share.count.fetch_add(1, Ordering::Relaxed) >= share.cap {
            share.count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Place(share.count.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Functions {
    /// Instances made ready ahead of their calls, of all functions.
    pub fn ready_instances(&self) -> usize {
        self.inner.warm.count.load(Ordering::Relaxed)
    }

    /// Makes an instance of `d` ready for its next call on `shard` (this
    /// thread), unless one is ready there already, enough are ready, the
    /// pool was found full a moment ago, the function's calls run on
    /// another shard (where its data is) or `d` is no longer the deployed
    /// version.
    pub(crate) async fn prepare_ahead(&self, d: &Arc<Deployed>, shard: usize) {
        let warm = &self.inner.warm;
        if d.no_ahead.load(Ordering::Relaxed)
            || d.ready.has(shard)
            || self.inner.store.now_ms() < warm.pool_full_until.load(Ordering::Relaxed)
        {
            return;
        }
        match d.affinity.get() {
            None => {}
            Some(home) if home == shard => {
                // Its data lives here now: an instance left ready elsewhere would wait in vain.
                (0..d.ready.slots.len()).filter(|s| *s != shard).for_each(|s| drop(d.ready.take(s)));
            }
            Some(_) => return,
        }
        if !self.is_current(d) {
            return;
        }
        let Some(place) = Place::take(warm) else { return };
        let p = self.inner.runtime.prepare(&d.compiled, &d.template, AHEAD_LIMIT).await;
        if p.pool_full() {
            self.note_pool_full();
            return;
        }
        // One that could not be made, or whose making left anything behind
        // for its call, is not kept, and none is made ahead again: the calls
        // make their own and report what goes wrong.
        if !p.is_ready() || !p.is_clean() {
            d.no_ahead.store(true, Ordering::Relaxed);
            return;
        }
        let _ = d.ready.put(shard, p, place);
    }

    fn note_pool_full(&self) {
        let until = self.inner.store.now_ms() + POOL_FULL_PAUSE_MS;
        self.inner.warm.pool_full_until.store(until, Ordering::Relaxed);
    }

    /// Lets one ready instance go (of any function), giving its pooled slot
    /// back; false if there was none.
    fn release_one(&self) -> bool {
        self.deployed().iter().any(|d| (0..d.ready.slots.len()).any(|shard| d.ready.take(shard).is_some()))
    }

    /// A fresh instance for `inv`'s call: on the first attempt, the one made
    /// ready on `shard` if there is one (then no instantiation time is
    /// counted), else a new one, made within what is left of the call's
    /// time limit since `started`.
    pub(crate) async fn instance(
        &self,
        d: &Deployed,
        inv: &Invocation,
        shard: usize,
        first: bool,
        started: Instant,
        timing: &mut Timing,
    ) -> Prepared {
        if first && let Some(p) = d.ready.take(shard) {
            timing.prepared = true;
            return p;
        }
        let mut p = self.inner.runtime.prepare(&d.compiled, inv, inv.timeout).await;
        // The pool is full: if ready instances hold part of it, let one go
        // and try again (a moment later, for one still being made).
        for _ in 0..3 {
            if !p.pool_full() {
                break;
            }
            self.note_pool_full();
            if !self.release_one() {
                if self.inner.warm.count.load(Ordering::Relaxed) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            timing.instantiate += p.instantiate_time();
            drop(p);
            let limit = inv.timeout.saturating_sub(started.elapsed());
            p = self.inner.runtime.prepare(&d.compiled, inv, limit).await;
        }
        timing.instantiate += p.instantiate_time();
        p
    }
}
