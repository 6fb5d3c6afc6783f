//! Recent invocations' logs, kept in memory per function (a bounded ring).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use squall_runtime::LogLine;

use crate::{Error, Functions};

/// One invocation's record in the log.
#[derive(Debug, Clone)]
pub struct InvocationLog {
    /// Position in this node's log (increasing): ask for `after` it to follow.
    pub seq: u64,
    pub invocation_id: String,
    /// For a callee: the invocation id of its request's root.
    pub root: Option<String>,
    pub function: String,
    pub version: u64,
    pub started_ms: u64,
    pub duration_us: u64,
    /// `ok`, or the failure's code.
    pub status: &'static str,
    pub error: Option<String>,
    pub lines: Vec<LogLine>,
}

/// Which records to return.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub invocation_id: Option<String>,
    /// Only records with a larger `seq`.
    pub after: Option<u64>,
    /// At most this many (the newest).
    pub limit: Option<usize>,
}

pub(crate) struct Logs {
    keep: usize,
    inner: Mutex<(u64, HashMap<String, VecDeque<InvocationLog>>)>,
}

impl Logs {
    pub fn new(keep: usize) -> Logs {
        Logs { keep: keep.max(1), inner: Mutex::new((0, HashMap::new())) }
    }

    pub fn record(&self, mut log: InvocationLog) {
        let mut g = self.inner.lock().expect("logs");
        g.0 += 1;
        log.seq = g.0;
        let ring = match g.1.get_mut(&log.function) {
            Some(ring) => ring,
            None => g.1.entry(log.function.clone()).or_default(),
        };
        if ring.len() >= self.keep {
            ring.pop_front();
        }
        ring.push_back(log);
    }

    /// Drops the records of function `name` (removed).
    pub fn forget(&self, name: &str) {
        self.inner.lock().expect("logs").1.remove(name);
    }

    /// The records of invocation `id` and, if it was a root, of its callees: oldest first.
    pub fn tree(&self, id: &str) -> Vec<InvocationLog> {
        let g = self.inner.lock().expect("logs");
        let mut found: Vec<InvocationLog> =
            g.1.values()
                .flatten()
                .filter(|l| l.invocation_id == id || l.root.as_deref() == Some(id))
                .cloned()
                .collect();
        found.sort_by_key(|l| l.seq);
        found
    }

    /// Oldest first.
    pub fn query(&self, function: &str, q: &LogQuery) -> Vec<InvocationLog> {
        let g = self.inner.lock().expect("logs");
        let Some(ring) = g.1.get(function) else { return Vec::new() };
        let found: Vec<InvocationLog> = ring
            .iter()
            .filter(|l| q.invocation_id.as_ref().is_none_or(|id| &l.invocation_id == id))
            .filter(|l| q.after.is_none_or(|a| l.seq > a))
            .cloned()
            .collect();
        let skip = q.limit.map_or(0, |n| found.len().saturating_sub(n));
        found.into_iter().skip(skip).collect()
    }
}

impl Functions {
    /// The log of invocation `id` and of the calls it made (if it is still kept).
    pub fn invocation_logs(&self, id: &str) -> Vec<InvocationLog> {
        self.inner.logs.tree(id)
    }

    /// Records an invocation's log, unless its function was removed while
    /// it ran (a removed function's logs go with it: holding the registry's
    /// lock orders this against the removal, which forgets the logs after).
    pub(crate) fn record_log(&self, log: InvocationLog) {
        let registry = self.inner.registry.read().expect("registry");
        if registry.contains_key(&log.function) {
            self.inner.logs.record(log);
        }
    }

    /// Whether a function of this (registry) name is deployed.
    pub fn exists(&self, name: &str) -> bool {
        self.inner.registry.read().expect("registry").contains_key(name)
    }

    /// Recent invocations' logs.
    pub fn logs(&self, name: &str, q: &LogQuery) -> Result<Vec<InvocationLog>, Error> {
        let known = self.inner.registry.read().expect("registry").contains_key(name);
        let logs = self.inner.logs.query(name, q);
        if !known && logs.is_empty() {
            return Err(Error::NotFound(name.into()));
        }
        Ok(logs)
    }
}
