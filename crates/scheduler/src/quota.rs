//! Per-namespace quotas: how many keys a namespace may hold, how many
//! invocations it may start a second, how many may run at once. Over a
//! quota a request gets `quota_exceeded` (HTTP 429 with `Retry-After`),
//! and the node keeps serving everyone else.
//!
//! Keys are counted by a sampler once a second (`Functions::count_keys`),
//! not on every write: counting on the write path would cost a message to
//! every shard. A namespace may so go past its key quota by what it writes
//! in that second; from then on writes that could add a key (SET, INCR,
//! SADD, HSET, even to a key that exists) are refused and deletes still
//! work, until they bring it under.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::Error;

/// One namespace's quota (`[quotas.NS]` in squall.toml); what is left out
/// is not limited.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Quota {
    /// Most keys it may hold.
    pub keys: Option<u64>,
    /// Most invocations (of functions and DAGs, map job elements
    /// included) it may start a second; bursts up to one second's worth.
    pub invocations_per_second: Option<u32>,
    /// Most invocations it may run at once.
    pub instances: Option<u32>,
}

/// The quotas in force and what they count.
#[derive(Debug, Default)]
pub struct Quotas {
    by_ns: HashMap<String, Quota>,
    /// Per namespace with a rate: tokens left, as of when (ms).
    buckets: Mutex<HashMap<String, (f64, u64)>>,
    /// Per namespace with an instance quota: invocations running.
    running: HashMap<String, Arc<AtomicUsize>>,
    /// Namespaces at or over their key quota, with the count last seen.
    full: RwLock<HashMap<String, u64>>,
    /// Whether `full` has any: the write path reads only this, mostly.
    any_full: AtomicBool,
}

/// An invocation counted in its namespace's running ones, until dropped.
pub(crate) struct Running(Option<Arc<AtomicUsize>>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Quotas {
    pub(crate) fn new(by_ns: HashMap<String, Quota>) -> Quotas {
        let running =
            by_ns.iter().filter(|(_, q)| q.instances.is_some()).map(|(ns, _)| (ns.clone(), Arc::default())).collect();
        Quotas { by_ns, running, ..Quotas::default() }
    }

    /// Lets namespace `ns` start one invocation at `now_ms`, if its rate
    /// and its instances allow: the guard counts it as running until dropped.
    pub(crate) fn admit(&self, ns: &str, now_ms: u64) -> Result<Running, Error> {
        let Some(q) = self.by_ns.get(ns) else { return Ok(Running(None)) };
        // The instance first: a call refused there takes none of the rate.
        let running = match q.instances.zip(self.running.get(ns)) {
            None => Running(None),
            Some((max, n)) => {
                if n.fetch_add(1, Ordering::AcqRel) >= max as usize {
                    n.fetch_sub(1, Ordering::AcqRel);
                    return Err(Error::Quota(format!(
                        "the namespace {ns:?} may run at most {max} invocations at once (instances)"
                    )));
                }
                Running(Some(n.clone()))
            }
        };
        if let Some(rate) = q.invocations_per_second {
            let rate = f64::from(rate);
            let mut buckets = self.buckets.lock().expect("quotas");
            let (tokens, at) = buckets.entry(ns.to_string()).or_insert((rate, now_ms));
            *tokens = (*tokens + now_ms.saturating_sub(*at) as f64 * rate / 1000.0).min(rate);
            *at = now_ms;
            if *tokens < 1.0 {
                return Err(Error::Quota(format!(
                    "the namespace {ns:?} may start at most {rate} invocations a second (invocations-per-second)"
                )));
            }
            *tokens -= 1.0;
        }
        Ok(running)
    }

    /// The namespaces with a key quota, and it.
    pub(crate) fn key_quotas(&self) -> Vec<(String, u64)> {
        self.by_ns.iter().filter_map(|(ns, q)| Some((ns.clone(), q.keys?))).collect()
    }

    /// Notes that `ns` holds `keys` keys now.
    pub(crate) fn counted(&self, ns: &str, keys: u64) {
        let Some(max) = self.by_ns.get(ns).and_then(|q| q.keys) else { return };
        let mut full = self.full.write().expect("quotas");
        if keys >= max {
            full.insert(ns.to_string(), keys);
        } else {
            full.remove(ns);
        }
        self.any_full.store(!full.is_empty(), Ordering::Release);
    }

    /// Why namespace `ns` (as the store names it) may not add keys now, if
    /// it may not.
    pub fn keys_full(&self, ns: &[u8]) -> Option<String> {
        if !self.any_full.load(Ordering::Acquire) {
            return None;
        }
        let full = self.full.read().expect("quotas");
        let ns = std::str::from_utf8(ns).ok()?;
        let held = full.get(ns)?;
        let max = self.by_ns.get(ns)?.keys?;
        Some(format!(
            "the namespace {ns:?} holds {held} keys, its quota is {max} (keys): writes that could add a key are refused \
             until deletes bring it under"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_instances_are_held_per_namespace() {
        let q = Quota { invocations_per_second: Some(2), instances: Some(1), keys: Some(10) };
        let quotas = Quotas::new(HashMap::from([("acme".to_string(), q)]));
        let first = quotas.admit("acme", 1_000).unwrap();
        // One running is its limit; another namespace has none.
        assert!(matches!(quotas.admit("acme", 1_000), Err(Error::Quota(m)) if m.contains("at once")));
        assert!(quotas.admit("globex", 1_000).is_ok());
        drop(first);
        // Two a second: the third in the same second is refused, a later one not.
        let _second = quotas.admit("acme", 1_000).unwrap();
        drop(_second);
        assert!(matches!(quotas.admit("acme", 1_000), Err(Error::Quota(m)) if m.contains("a second")));
        assert!(quotas.admit("acme", 1_600).is_ok());
        // Keys: full once counted at the quota, free again under it.
        assert!(quotas.keys_full(b"acme").is_none());
        quotas.counted("acme", 10);
        assert!(quotas.keys_full(b"acme").is_some_and(|m| m.contains("quota is 10")));
        assert!(quotas.keys_full(b"globex").is_none());
        quotas.counted("acme", 9);
        assert!(quotas.keys_full(b"acme").is_none());
    }
}
