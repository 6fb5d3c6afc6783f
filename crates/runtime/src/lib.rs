//! The function runtime: wasmtime with the component model, pooled instances,
//! epoch-based time limits and per-invocation memory limits.
//!
//! A function is compiled once per content digest (kept in memory, and on
//! disk when the runtime has a cache directory, so a restart does not
//! recompile). Each invocation gets a fresh instance from a pooled slot, a
//! [`Txn`] to reach the store through, captured stdout/stderr, clocks and
//! random, and nothing else of the host: no files, sockets or environment
//! other than the function's own values.
//!
//! The runtime never commits: it hands the transaction back with the outcome,
//! and the caller commits it when the invocation succeeded.

mod capture;
mod epoch;
mod host;
pub mod inspect;
mod link;
mod txn;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use squall_lattice::Clock;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

pub use host::{Level, LogLine};
pub use link::{CallError, Called, Link, NoLink, SendError, Started};
pub use txn::{Answer, BoxFuture, Call, StoreError, Txn};

use host::{Host, bindings};

/// Memory bytes of a used pooled slot reset in place rather than by
/// `madvise` (with PAGEMAP_SCAN); at most this much stays resident. 4 MiB
/// lets a function that handles a 1 MiB value (in its input, its output,
/// its heap) find its pages mapped on the next call instead of faulting
/// them in again (a 1 MiB pass between two functions: ~120 us less); a
/// slot only keeps what its guests dirtied, so small functions keep little.
const KEEP_RESIDENT: usize = 4 << 20;
/// The same for each table (a Rust guest's tables are a few KiB).
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
/// Cap on what one invocation may print to stdout and to stderr (each).
const OUTPUT_CAP: usize = 1024 * 1024;

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pooled instance slots: at most this many instances (running or made
    /// ready ahead) exist at once.
    pub instances: u32,
    /// The largest memory limit any function may ask for.
    pub max_memory: usize,
    /// Where compiled artifacts are kept (none: compile on every start).
    pub cache_dir: Option<PathBuf>,
    /// The node's clock: the times of log lines and the deadline a guest
    /// sees (limits are enforced on the monotonic clock).
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Self {
        Options { instances: 256, max_memory: 1 << 30, cache_dir: None, clock: squall_lattice::SystemClock::shared() }
    }
}

/// Why a component cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Not a component of the `handler` world; the message says what is wrong.
    #[error("{0}")]
    BadComponent(String),
    #[error("runtime: {0}")]
    Internal(String),
}

/// A sha256 content digest, in hex.
pub fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A compiled function, ready to instantiate.
pub struct Function {
    digest: String,
    pre: wasmtime::component::InstancePre<Host>,
    /// Where its exports are in an instance (looked up, and their types
    /// checked, once).
    indices: bindings::HandlerIndices,
    /// The `init` export of a `handler-with-init` component, run as its
    /// instance is made.
    init: Option<wasmtime::component::ComponentExportIndex>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("digest", &self.digest).finish()
    }
}

impl Function {
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The compiled component (for benchmarks that instantiate it bare).
    pub fn component(&self) -> &wasmtime::component::Component {
        self.pre.component()
    }
}

/// One invocation's parameters.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub id: String,
    pub function: String,
    pub version: u64,
    pub input: Vec<u8>,
    pub timeout: Duration,
    /// Memory limit in bytes.
    pub memory: usize,
    /// Environment values the guest sees (and nothing of the host's).
    pub env: Vec<(String, String)>,
}

/// Stable codes for how an invocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// The guest trapped (a panic, an abort, an out-of-bounds access...).
    Trap,
    /// The guest ran past its time limit.
    Timeout,
    /// The guest asked for more memory than its limit (or printed too much).
    LimitExceeded,
    /// The guest returned an error.
    FunctionError,
    /// The data it read kept changing before it could commit.
    Conflict,
    /// The runtime could not run it (store unavailable, a host error).
    Internal,
    /// Every pooled instance slot was taken: the node's load, not the
    /// function's fault; worth a retry a moment later.
    Busy,
    /// Its namespace is over a quota (its writes would add keys to a full one).
    QuotaExceeded,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::Trap => "trap",
            FailureCode::Timeout => "timeout",
            FailureCode::LimitExceeded => "limit_exceeded",
            FailureCode::FunctionError => "function_error",
            FailureCode::Conflict => "conflict",
            FailureCode::QuotaExceeded => "quota_exceeded",
            FailureCode::Internal => "internal",
            FailureCode::Busy => "busy",
        }
    }
}

/// Why an invocation did not succeed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: FailureCode,
    pub message: String,
}

/// Where an invocation's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub instantiate: Duration,
    /// Guest time: the call to `handle`, less the time spent in store calls.
    pub run: Duration,
    pub store: Duration,
    /// Time the guest waited for its callees and messages.
    pub calls: Duration,
}

/// What an invocation did: its outcome, its log, and its transaction (to
/// commit if the outcome is a success).
pub struct Invoked {
    pub outcome: Result<Vec<u8>, Failure>,
    pub txn: Box<dyn Txn>,
    pub log: Vec<LogLine>,
    pub timing: Timing,
    /// The instance, to drop once the answer is on its way.
    pub instance: Used,
}

/// The engine, its linker and the compiled functions.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    compiled: Mutex<HashMap<String, Arc<Function>>>,
    /// One lock per digest being compiled: a second deploy of the same
    /// bytes waits for the first one's result instead of compiling again.
    compiling: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Compilations running at once, at most [`MAX_PARALLEL_COMPILES`]
    /// (each spreads over every core already).
    compile_slots: (Mutex<usize>, std::sync::Condvar),
    /// Components compiled (not found in memory or on disk) since start.
    compiles: std::sync::atomic::AtomicU64,
    cache_dir: Option<PathBuf>,
    options: Options,
    ticker: epoch::Ticker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("options", &self.options).finish()
    }
}

fn internal(e: impl std::fmt::Display) -> CompileError {
    CompileError::Internal(e.to_string())
}

impl Runtime {
    pub fn new(options: Options) -> Result<Runtime, CompileError> {
        let mut pool = PoolingAllocationConfig::new();
        let n = options.instances.max(1);
        // A Rust component has one main module plus a few small shims.
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(options.max_memory);
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            // Reset a used slot by rewriting only the pages the guest dirtied
            // (found with the PAGEMAP_SCAN ioctl, Linux 6.7+), up to these
            // sizes, instead of `madvise`: no TLB shootdown across cores at
            // teardown and no page faults on the next invocation. An unused
            // slot keeps at most that much resident. Without the ioctl,
            // wasmtime would memset these sizes from the start of every
            // slot, so they stay 0 there (plain `madvise`).
            pool.pagemap_scan(Enabled::Auto)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT_TABLE);
        }
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(internal)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(internal)?;
        bindings::Handler::add_to_linker::<Host, HasSelf<Host>>(&mut linker, |h| h).map_err(internal)?;
        let ticker = epoch::Ticker::spawn(engine.clone()).map_err(internal)?;
        let cache_dir = match &options.cache_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| internal(format!("{}: {e}", dir.display())))?;
                Some(dir.clone())
            }
            None => None,
        };
        Ok(Runtime {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
            compile_slots: (Mutex::new(0), std::sync::Condvar::new()),
            compiles: std::sync::atomic::AtomicU64::new(0),
            cache_dir,
            options,
            ticker,
        })
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The engine (pooling allocator, epochs) every function runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled function for these component bytes: from memory, from
    /// the disk cache, or compiled now (slow: run it off async threads).
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<Function>, CompileError> {
        self.compile_digest(&digest(bytes), bytes)
    }

    /// Like [`Runtime::compile`] when the digest is already known. One
    /// digest is compiled once at a time: callers with the same bytes wait
    /// for the first and share what it made (or its error, found again).
    pub fn compile_digest(&self, digest: &str, bytes: &[u8]) -> Result<Arc<Function>, CompileError> {
        if let Some(f) = self.compiled.lock().expect("compiled cache").get(digest) {
            return Ok(f.clone());
        }
        let lock = self.compiling.lock().expect("compiling").entry(digest.to_string()).or_default().clone();
        let made = {
            let _one = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.compile_alone(digest, bytes)
        };
        let mut compiling = self.compiling.lock().expect("compiling");
        // The last one out takes the lock away.
        if Arc::strong_count(&lock) == 2 {
            compiling.remove(digest);
        }
        made
    }

    /// Components compiled since start (not found in memory or on disk).
    pub fn compiles(&self) -> u64 {
        self.compiles.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Compiles `digest` (holding its lock): from memory if a caller before
    /// made it, from the disk cache, or compiled now, in a compile slot.
    fn compile_alone(&self, digest: &str, bytes: &[u8]) -> Result<Arc<Function>, CompileError> {
        if let Some(f) = self.compiled.lock().expect("compiled cache").get(digest) {
            return Ok(f.clone());
        }
        let component = match self.load_cached(digest) {
            Some(c) => (c, true),
            None => {
                let _slot = CompileSlot::take(&self.compile_slots);
                self.compiles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (Component::new(&self.engine, bytes).map_err(|e| bad_component(&e))?, false)
            }
        };
        let (component, cached) = component;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| bad_component(&e))?;
        let indices = bindings::HandlerIndices::new(&pre).map_err(|e| bad_component(&e))?;
        let init = match component.component_type().get_export(&self.engine, "init") {
            None => None,
            Some(e) if is_init(&e.ty) => component.get_export_index(None, "init"),
            Some(_) => {
                return Err(CompileError::BadComponent(
                    "the component exports init, but not as func() -> result<_, string> (world handler-with-init)"
                        .into(),
                ));
            }
        };
        // Only a component that links is kept on disk: a refused one leaves nothing.
        if !cached {
            self.store_cached(digest, &component);
        }
        let f = Arc::new(Function { digest: digest.to_string(), pre, indices, init });
        self.compiled.lock().expect("compiled cache").insert(digest.to_string(), f.clone());
        Ok(f)
    }

    /// Forgets a compiled function (its artifact on disk stays until the
    /// digest is removed with [`Runtime::remove_cached`]).
    pub fn forget(&self, digest: &str) {
        self.compiled.lock().expect("compiled cache").remove(digest);
    }

    /// Removes a digest's compiled artifact from memory and disk.
    pub fn remove_cached(&self, digest: &str) {
        self.forget(digest);
        if let Some(path) = self.cache_path(digest) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        // Artifacts are only valid for an engine with the same settings and version.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{digest}-{:016x}.cwasm", h.finish())))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, digest: &str) -> Option<Component> {
        let path = self.cache_path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store_cached` (atomically, by
        // rename) from `Component::serialize` of this engine's configuration,
        // in a directory only this node uses; wasmtime checks its header and
        // engine compatibility and errors out on a mismatch.
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn store_cached(&self, digest: &str, component: &Component) {
        let Some(path) = self.cache_path(digest) else { return };
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            // No half-written artifact is left for a later start to trip on.
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled artifact");
        }
    }

    /// Runs one invocation of `f` in a fresh instance: [`Runtime::prepare`]
    /// then [`Runtime::run`], both within the invocation's time limit.
    pub async fn invoke(&self, f: &Function, inv: &Invocation, txn: Box<dyn Txn>) -> Invoked {
        let started = Instant::now();
        let prepared = self.prepare(f, inv, inv.timeout).await;
        self.run(prepared, inv, txn, Box::new(NoLink), started).await
    }

    /// A fresh instance of `f` for one call of `inv`'s function (its memory
    /// limit and environment values are taken from `inv`; its id, input and
    /// time limit are not: they come with [`Runtime::run`]), instantiated
    /// within `limit`. The function's handler does not run yet (a
    /// component's own start functions, if it has any, do), so an instance
    /// can be made ready before its call arrives.
    pub async fn prepare(&self, f: &Function, inv: &Invocation, limit: Duration) -> Prepared {
        let started = Instant::now();
        let _busy = self.ticker.busy();
        let host = Host::new(&f.digest, inv, started + limit, OUTPUT_CAP, &self.options.clock);
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let host = ctx.data_mut();
            if Instant::now() >= host.deadline {
                host.timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let mut pool_full = false;
        let instance = f.pre.instantiate_async(&mut store).await;
        let instance = instance.and_then(|i| Ok((f.indices.load(&mut store, &i)?, i))).map_err(|e| {
            pool_full = e.chain().any(|c| c.is::<wasmtime::PoolConcurrencyLimitError>());
            Failure {
                code: match (store.data().limiter.hit, pool_full) {
                    (true, _) => FailureCode::LimitExceeded,
                    (false, true) => FailureCode::Busy,
                    (false, false) => FailureCode::Internal,
                },
                message: format!("cannot instantiate: {e}"),
            }
        });
        let instance = match (instance, f.init.as_ref()) {
            (Ok((handler, instance)), Some(init)) => Self::init(&mut store, &instance, init).await.map(|()| handler),
            (instance, _) => instance.map(|(handler, _)| handler),
        };
        Prepared { store, instance, instantiate: started.elapsed(), pool_full }
    }

    /// Runs a `handler-with-init` component's `init` in its new instance.
    async fn init(
        store: &mut Store<Host>,
        instance: &wasmtime::component::Instance,
        init: &wasmtime::component::ComponentExportIndex,
    ) -> Result<(), Failure> {
        let wrong = |e: wasmtime::Error| Failure {
            code: FailureCode::Internal,
            message: format!("the component's init export is not func() -> result<_, string>: {e}"),
        };
        let func = instance.get_typed_func::<(), (Result<(), String>,)>(&mut *store, init).map_err(wrong)?;
        match func.call_async(&mut *store, ()).await {
            Ok((Ok(()),)) => Ok(()),
            Ok((Err(message),)) => {
                Err(Failure { code: FailureCode::FunctionError, message: format!("init: {message}") })
            }
            Err(e) => {
                let failure = classify(&e, store.data());
                store.data_mut().trap_detail = Some(format!("{e:?}"));
                Err(failure)
            }
        }
    }

    /// Runs the call `inv` in `prepared` (an instance of `inv`'s function),
    /// reaching the store through `txn` and other functions through `link`;
    /// the call's time limit counts from `started`.
    pub async fn run(
        &self,
        prepared: Prepared,
        inv: &Invocation,
        txn: Box<dyn Txn>,
        link: Box<dyn Link>,
        started: Instant,
    ) -> Invoked {
        let Prepared { mut store, instance, instantiate, .. } = prepared;
        let _busy = self.ticker.busy();
        let instantiated = Instant::now();
        store.data_mut().begin(inv, txn, link, started + inv.timeout);
        store.set_epoch_deadline(1);
        let outcome = match instance {
            Err(failure) => Err(failure),
            Ok(handler) => match handler.call_handle(&mut store, &inv.input).await {
                Ok(Ok(output)) => Ok(output),
                Ok(Err(message)) => Err(Failure { code: FailureCode::FunctionError, message }),
                Err(e) => {
                    let failure = classify(&e, store.data());
                    store.data_mut().trap_detail = Some(format!("{e:?}"));
                    Err(failure)
                }
            },
        };
        let elapsed = instantiated.elapsed();
        let host = store.data_mut();
        let timing = Timing {
            instantiate,
            run: elapsed.saturating_sub(host.store_time + host.call_time),
            store: host.store_time,
            calls: host.call_time,
        };
        host.capture_output();
        let outcome = outcome.map_err(|mut failure| {
            if failure.code == FailureCode::Trap
                && let Some(panic) = host.panic_message()
            {
                failure.message = format!("{}: {panic}", failure.message);
            }
            if matches!(failure.code, FailureCode::Trap | FailureCode::Internal) {
                let detail = host.trap_detail.take().unwrap_or_default();
                host.push(Level::Error, format!("{}\n{detail}", failure.message));
            }
            failure
        });
        let txn = std::mem::replace(&mut host.txn, Box::new(txn::Spent));
        host.link = Box::new(NoLink);
        let log = std::mem::take(&mut host.log);
        Invoked { outcome, txn, log, timing, instance: Used { store: Some(store) } }
    }
}

/// A fresh instance, not yet called (or why it could not be made).
pub struct Prepared {
    store: Store<Host>,
    instance: Result<bindings::Handler, Failure>,
    instantiate: Duration,
    pool_full: bool,
}

impl Prepared {
    /// True if the instance was made (false: calling it reports why not).
    pub fn is_ready(&self) -> bool {
        self.instance.is_ok()
    }

    /// True if it could not be made because every pooled slot is taken.
    pub fn pool_full(&self) -> bool {
        self.pool_full
    }

    /// True if instantiating it left nothing behind that its call would
    /// inherit (a component's start functions ran without logging, printing
    /// or reaching for the store).
    pub fn is_clean(&self) -> bool {
        self.store.data().is_clean()
    }

    /// How long instantiating it took.
    pub fn instantiate_time(&self) -> Duration {
        self.instantiate
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("ready", &self.is_ready()).finish()
    }
}

/// Compilations at once, node-wide.
const MAX_PARALLEL_COMPILES: usize = 2;

/// A compile slot, held while compiling.
struct CompileSlot<'a>(&'a (Mutex<usize>, std::sync::Condvar));

impl<'a> CompileSlot<'a> {
    fn take(slots: &'a (Mutex<usize>, std::sync::Condvar)) -> CompileSlot<'a> {
        let (count, freed) = slots;
        let mut n = count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *n >= MAX_PARALLEL_COMPILES {
            n = freed.wait(n).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *n += 1;
        CompileSlot(slots)
    }
}

impl Drop for CompileSlot<'_> {
    fn drop(&mut self) {
        let (count, freed) = self.0;
        *count.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
        freed.notify_one();
    }
}

/// A used instance. Dropping it tears it down: the pooled slot's dirty
/// pages are reset (several microseconds), so a caller with an answer to
/// send may drop it after sending. Its host state is kept for the next
/// instance made on the dropping thread.
pub struct Used {
    store: Option<Store<Host>>,
}

impl Drop for Used {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            store.into_data().spare();
        }
    }
}

impl std::fmt::Debug for Used {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Used")
    }
}

/// True for `func() -> result<_, string>`, the `init` of `handler-with-init`.
fn is_init(ty: &wasmtime::component::types::ComponentItem) -> bool {
    use wasmtime::component::types::{ComponentItem, Type};
    let ComponentItem::ComponentFunc(f) = ty else { return false };
    let results: Vec<Type> = f.results().collect();
    f.params().len() == 0
        && matches!(results.as_slice(), [Type::Result(r)] if r.ok().is_none() && matches!(r.err(), Some(Type::String)))
}

fn bad_component(e: &wasmtime::Error) -> CompileError {
    // The chain names what is missing (an export, an import) or why the bytes do not parse.
    let mut msg = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            msg.push_str(": ");
        }
        msg.push_str(&cause.to_string());
    }
    CompileError::BadComponent(msg)
}

fn classify(e: &wasmtime::Error, host: &Host) -> Failure {
    if host.timed_out {
        return Failure {
            code: FailureCode::Timeout,
            message: format!("ran past its time limit of {:?}", host.timeout),
        };
    }
    if let Some(message) = host.limiter.failure() {
        return Failure { code: FailureCode::LimitExceeded, message };
    }
    if let Some(why) = host.output_overflow() {
        return Failure { code: FailureCode::LimitExceeded, message: why };
    }
    if let Some(why) = &host.fatal {
        return Failure { code: FailureCode::Internal, message: why.clone() };
    }
    let trap = e.downcast_ref::<wasmtime::Trap>().map(|t| t.to_string());
    Failure { code: FailureCode::Trap, message: trap.unwrap_or_else(|| e.root_cause().to_string()) }
}
