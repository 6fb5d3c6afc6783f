//! The epoch ticker: advances wasmtime's epoch every [`TICK`] while guest
//! code may be running, so time limits fire and running guests yield. An
//! idle node does not tick: a thread waking a thousand times a second
//! steals CPU from the shards (and on a VM each wake-up is costly).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// How often the epoch ticks; time limits are checked at this granularity,
/// and a running guest yields to other tasks on its thread once per tick.
pub const TICK: Duration = Duration::from_millis(1);

/// How long the ticker keeps ticking after the last guest code ran, so a
/// steady stream of short invocations never waits for it to wake.
const LINGER: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Shared {
    /// Guest code running now (instantiations and calls).
    busy: AtomicUsize,
    /// When guest code last stopped, in ms since `start`.
    last_ms: AtomicU64,
    /// The ticker is parked (or about to be): a new runner unparks it.
    parked: AtomicBool,
    stop: AtomicBool,
}

pub struct Ticker {
    shared: Arc<Shared>,
    start: Instant,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub fn spawn(engine: Engine) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared::default());
        let start = Instant::now();
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("squall-epoch".into()).spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
                // `busy` first: having seen the last guard's decrement, the
                // time it stored before it is seen too.
                let idle = s.busy.load(Ordering::SeqCst) == 0;
                let since = Duration::from_millis(s.last_ms.load(Ordering::Relaxed));
                if idle && start.elapsed().saturating_sub(since) >= LINGER {
                    s.parked.store(true, Ordering::SeqCst);
                    // A runner that came after the store sees `parked` and
                    // unparks; one that came before is seen here.
                    if s.busy.load(Ordering::SeqCst) == 0 && !s.stop.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                    s.parked.store(false, Ordering::SeqCst);
                }
            }
        })?;
        Ok(Ticker { shared, start, thread: Some(thread) })
    }

    /// Marks guest code as running until the guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        self.shared.busy.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst)
            && let Some(t) = &self.thread
        {
            t.thread().unpark();
        }
        Busy { ticker: self }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Guest code may run while this lives.
pub struct Busy<'a> {
    ticker: &'a Ticker,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let t = self.ticker;
        t.shared.last_ms.store(t.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        t.shared.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < until, "never {what}");
            std::thread::sleep(TICK);
        }
    }

    #[test]
    fn the_ticker_sleeps_while_no_guest_runs_and_wakes_for_one() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let ticker = Ticker::spawn(Engine::new(&config).unwrap()).unwrap();
        let parked = || ticker.shared.parked.load(Ordering::SeqCst);
        eventually("parked while idle", parked);
        let busy = ticker.busy();
        eventually("woke for a runner", || !parked());
        // It keeps ticking while guest code runs, however long.
        std::thread::sleep(LINGER * 2);
        assert!(!parked());
        drop(busy);
        eventually("parked again once idle", parked);
        // Dropping it stops the thread even while parked.
        drop(ticker);
    }
}
