//! Counters and histograms for `/metrics`, in Prometheus text format: the
//! listeners', the per-function ones, and the rendering of all of them with
//! the store's shard stats. Plain atomics: recording costs a few relaxed adds
//! on the hot path.

use squall_scheduler::Functions;
use squall_store::Handle;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    /// Records `n` observations of `d` each.
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(n, Ordering::Relaxed);
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64 * n, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// The histogram's lines with `labels` (each `k="v",`) on every series.
    pub fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let plain = labels.trim_end_matches(',');
        let braces = if plain.is_empty() { String::new() } else { format!("{{{plain}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// One command's calls, and the microseconds of the rounds they ran in
/// (a round's time shared evenly among its commands).
#[derive(Debug, Default)]
pub struct CommandStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
}

/// The gateway's own measurements; the store's come from its shard stats.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    pub resp_connections: AtomicI64,
    pub resp_connections_total: AtomicU64,
    pub resp_commands: AtomicU64,
    pub resp_errors: AtomicU64,
    pub resp_protocol_errors: AtomicU64,
    pub resp_output_limit_closed: AtomicU64,
    /// Subscribers closed for falling behind their messages.
    pub resp_pubsub_slow_closed: AtomicU64,
    /// When SAVE or BGSAVE last finished (ms on the node's clock; 0: none
    /// yet), for LASTSAVE.
    pub last_save_ms: AtomicU64,
    pub resp_latency: Histogram,
    /// Per Redis command (by its place in `commands::COMMANDS`): calls and
    /// microseconds, for INFO commandstats.
    pub command_stats: Box<[CommandStat]>,
    /// Error replies by their code (`ERR`, `WRONGTYPE`...), for INFO errorstats.
    pub error_stats: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    pub http_requests: AtomicU64,
    pub http_errors: AtomicU64,
    pub http_latency: Histogram,
    pub functions: FunctionsMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            resp_connections: AtomicI64::new(0),
            resp_connections_total: AtomicU64::new(0),
            resp_commands: AtomicU64::new(0),
            resp_errors: AtomicU64::new(0),
            resp_protocol_errors: AtomicU64::new(0),
            resp_output_limit_closed: AtomicU64::new(0),
            resp_pubsub_slow_closed: AtomicU64::new(0),
            last_save_ms: AtomicU64::new(0),
            resp_latency: Histogram::default(),
            command_stats: crate::commands::COMMANDS.iter().map(|_| CommandStat::default()).collect(),
            error_stats: Default::default(),
            http_requests: AtomicU64::new(0),
            http_errors: AtomicU64::new(0),
            http_latency: Histogram::default(),
            functions: Default::default(),
        }
    }
}

impl Metrics {
    /// An error reply went out: counted under its code.
    pub fn error_reply(&self, text: &str) {
        let code = text.split(' ').next().unwrap_or("ERR");
        let code = if !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase()) { code } else { "ERR" };
        let mut stats = self.error_stats.lock().unwrap_or_else(|e| e.into_inner());
        let full = stats.len() >= 128;
        match stats.get_mut(code) {
            Some(n) => *n += 1,
            // Bounded: codes come from a fixed set in Squall's own replies.
            None if !full => {
                stats.insert(code.to_string(), 1);
            }
            None => {}
        }
    }

    /// CONFIG RESETSTAT.
    pub fn reset_command_stats(&self) {
        for c in self.command_stats.iter() {
            c.calls.store(0, Ordering::Relaxed);
            c.usec.store(0, Ordering::Relaxed);
        }
        self.error_stats.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The whole exposition.
    pub fn render(&self, store: &Handle) -> String {
        let mut out = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        let singles: [(&str, &str, &str, String); 10] = [
            (
                "squall_uptime_seconds",
                "gauge",
                "Seconds since the node started.",
                format!("{:.3}", self.started.elapsed().as_secs_f64()),
            ),
            (
                "squall_resp_connections",
                "gauge",
                "Open Redis-protocol connections.",
                self.resp_connections.load(Ordering::Relaxed).to_string(),
            ),
            (
                "squall_resp_connections_total",
                "counter",
                "Redis-protocol connections accepted.",
                load(&self.resp_connections_total),
            ),
            ("squall_resp_commands_total", "counter", "Redis commands run.", load(&self.resp_commands)),
            ("squall_resp_errors_total", "counter", "Redis commands answered with an error.", load(&self.resp_errors)),
            (
                "squall_resp_protocol_errors_total",
                "counter",
                "Connections closed for malformed input.",
                load(&self.resp_protocol_errors),
            ),
            (
                "squall_resp_output_limit_closed_total",
                "counter",
                "Connections closed for unread replies over the output buffer limit (client-output-buffer-limit).",
                load(&self.resp_output_limit_closed),
            ),
            (
                "squall_resp_pubsub_slow_closed_total",
                "counter",
                "Subscribers closed for unread messages over the pub/sub output limit (client-output-buffer-limit pubsub).",
                load(&self.resp_pubsub_slow_closed),
            ),
            ("squall_http_requests_total", "counter", "HTTP requests served.", load(&self.http_requests)),
            (
                "squall_http_errors_total",
                "counter",
                "HTTP requests answered with a 4xx or 5xx status.",
                load(&self.http_errors),
            ),
        ];
        for (name, kind, help, value) in singles {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        self.resp_latency.render(
            &mut out,
            "squall_resp_command_duration_seconds",
            "Time from reading a command to writing its answer.",
        );
        self.http_latency.render(&mut out, "squall_http_request_duration_seconds", "Time to serve an HTTP request.");
        type Read = fn(&squall_store::ShardStats) -> u64;
        let per_shard: [(&str, &str, &str, Read); 7] = [
            ("squall_shard_reads_total", "counter", "Read operations per shard.", |s| s.reads.load(Ordering::Relaxed)),
            ("squall_shard_writes_total", "counter", "Write operations per shard.", |s| {
                s.writes.load(Ordering::Relaxed)
            }),
            ("squall_shard_keys", "gauge", "Keys held per shard (expired keys count until reclaimed).", |s| {
                s.keys.load(Ordering::Relaxed)
            }),
            ("squall_shard_expired_total", "counter", "Keys reclaimed after expiring, per shard.", |s| {
                s.expired.load(Ordering::Relaxed)
            }),
            ("squall_window_changes", "gauge", "Changes the window log holds, per shard.", |s| {
                s.window_changes.load(Ordering::Relaxed)
            }),
            ("squall_window_bytes", "gauge", "Bytes the window log holds in memory, per shard.", |s| {
                s.window_bytes.load(Ordering::Relaxed)
            }),
            (
                "squall_window_oldest_seconds",
                "gauge",
                "The oldest time the window log reaches, per shard (seconds since the Unix epoch).",
                |s| squall_store::lattice::Timestamp(s.window_oldest.load(Ordering::Relaxed)).wall_ms() / 1000,
            ),
        ];
        for (name, kind, help, get) in per_shard {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for shard in 0..store.shards() {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", get(store.stats(shard)));
            }
        }
        out
    }

    /// Adds the store's per-shard memory use, which the shards compute on request.
    pub fn render_bytes(out: &mut String, bytes: &[u64]) {
        let name = "squall_shard_bytes";
        let _ = writeln!(
            out,
            "# HELP {name} Approximate bytes of keys and values held in memory, per shard.\n# TYPE {name} gauge"
        );
        for (shard, b) in bytes.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {b}");
        }
    }
}

/// Invocations of one function, by outcome code, and their latency.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    by_code: Mutex<BTreeMap<&'static str, u64>>,
    pub total: AtomicU64,
    pub latency: Histogram,
}

impl FunctionMetrics {
    pub fn record(&self, code: &'static str, d: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.by_code.lock().expect("metrics").entry(code).or_default() += 1;
        self.latency.observe(d);
    }
}

/// Per-function metrics, by name.
#[derive(Debug, Default)]
pub struct FunctionsMetrics {
    by_name: Mutex<HashMap<String, Arc<FunctionMetrics>>>,
}

impl Metrics {
    pub fn function(&self, name: &str) -> Arc<FunctionMetrics> {
        let mut m = self.functions.by_name.lock().expect("metrics");
        if let Some(f) = m.get(name) {
            return f.clone();
        }
        m.entry(name.to_string()).or_default().clone()
    }

    /// Drops the series of function `name` (removed).
    pub fn forget_function(&self, name: &str) {
        self.functions.by_name.lock().expect("metrics").remove(name);
    }

    /// Adds the per-function series, and the scheduler's instances and queues.
    pub fn render_functions(&self, out: &mut String, functions: &Functions) {
        let by_name: Vec<(String, Arc<FunctionMetrics>)> = {
            let m = self.functions.by_name.lock().expect("metrics");
            let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let name = "squall_function_invocations_total";
        let _ =
            writeln!(out, "# HELP {name} Invocations over HTTP, by function and outcome code.\n# TYPE {name} counter");
        for (f, m) in &by_name {
            for (code, n) in m.by_code.lock().expect("metrics").iter() {
                let _ = writeln!(out, "{name}{{{},code=\"{code}\"}} {n}", labels(f));
            }
        }
        let name = "squall_function_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Invocations that did not succeed, by function and code.\n# TYPE {name} counter"
        );
        for (f, m) in &by_name {
            for (code, n) in m.by_code.lock().expect("metrics").iter().filter(|(c, _)| **c != "ok") {
                let _ = writeln!(out, "{name}{{{},code=\"{code}\"}} {n}", labels(f));
            }
        }
        let name = "squall_function_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time to answer an invocation, queue included.\n# TYPE {name} histogram");
        for (f, m) in &by_name {
            m.latency.render_series(out, name, &format!("{},", labels(f)));
        }
        let name = "squall_compiles_total";
        let _ = writeln!(
            out,
            "# HELP {name} Components compiled since start (not found compiled in memory or on disk).\n# TYPE {name} counter\n{name} {}",
            functions.compiles()
        );
        let name = "squall_function_instances_ready";
        let _ = writeln!(
            out,
            "# HELP {name} Instances made ready ahead of their calls, all functions.\n# TYPE {name} gauge\n{name} {}",
            functions.ready_instances()
        );
        for (name, help, pick) in [
            ("squall_function_instances", "Instances running now, by function.", 2usize),
            ("squall_function_queue_depth", "Invocations waiting for a turn, by function.", 1),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (f, queued, running) in functions.load_by_function() {
                let v = if pick == 1 { queued } else { running };
                let _ = writeln!(out, "{name}{{{}}} {v}", labels(&f));
            }
        }
        let t = functions.trigger_stats();
        let name = "squall_trigger_events_total";
        let _ = writeln!(
            out,
            "# HELP {name} Trigger events since start: queued, delivered (run once), retried (runs that failed and were tried again), dead (given up, in a dead-letter list).\n# TYPE {name} counter"
        );
        for (what, n) in
            [("queued", &t.queued), ("delivered", &t.delivered), ("retried", &t.retried), ("dead", &t.dead)]
        {
            let _ = writeln!(out, "{name}{{outcome=\"{what}\"}} {}", n.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
}

/// The labels of a function's series (by registry name): its namespace and its name there.
fn labels(qualified: &str) -> String {
    format!(
        "namespace=\"{}\",function=\"{}\"",
        squall_scheduler::namespace_of(qualified),
        squall_scheduler::bare_name(qualified)
    )
}
