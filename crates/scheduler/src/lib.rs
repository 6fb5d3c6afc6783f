//! The function service: deployed functions (the registry), admission with
//! a bounded queue and a concurrency limit per function, placement on the
//! shard threads, atomic commit of each invocation's effects, idempotency
//! keys, and recent invocations' logs.
//!
//! The registry lives in the store's `sys` namespace (`fn:NAME` holds a
//! function's settings as JSON, `component:DIGEST` its bytes), so deployed
//! functions survive restarts. Idempotency records live there too
//! (`idem:NAME:KEY`, with a time to live), committed in the same atomic batch
//! as the invocation's effects, so a retry after a crash still runs at most once.

mod logs;
mod txn;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use squall_runtime::{Function, Invocation, Prepared, Runtime, Used};
use squall_store::{Handle, Op, Reply, SetExpiry, Write};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub use logs::{InvocationLog, LogQuery};
pub use squall_runtime::{Failure, FailureCode, Level, LogLine, digest};
pub use txn::StoreTxn;

/// The longest an instance made ahead may take to instantiate.
const AHEAD_LIMIT: Duration = Duration::from_secs(1);
/// How long no instance is made ahead after a call found the pool full.
const POOL_FULL_PAUSE_MS: u64 = 1000;

/// The namespace of the registry and idempotency records.
pub const SYS_NS: &[u8] = b"sys";

/// Service settings and per-function defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The namespace functions read and write (the one RESP and `/v1/kv` use).
    pub ns: Bytes,
    pub default_limits: Limits,
    /// How long idempotency keys are remembered.
    pub idempotency_ttl: Duration,
    /// Largest invocation input.
    pub max_input: usize,
    /// Invocations whose logs are kept, per function.
    pub keep_logs: usize,
    /// Times an invocation runs again after a conflicting commit before giving up.
    pub max_conflict_retries: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ns: Bytes::from_static(b"default"),
            default_limits: Limits::default(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            max_input: 6 * 1024 * 1024,
            keep_logs: 100,
            max_conflict_retries: 32,
        }
    }
}

/// A function's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout_ms: u64,
    pub memory_bytes: u64,
    /// Invocations running at once.
    pub concurrency: u32,
    /// Invocations waiting for a turn; more are refused (429).
    pub queue: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout_ms: 30_000, memory_bytes: 128 << 20, concurrency: 64, queue: 1024 }
    }
}

/// What the registry keeps about a deployed function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionMeta {
    pub name: String,
    pub version: u64,
    /// sha256 of the component bytes.
    pub digest: String,
    pub size: u64,
    pub limits: Limits,
    pub env: BTreeMap<String, String>,
    /// When this version was deployed (ms since the Unix epoch).
    pub created_ms: u64,
}

/// A deploy request.
#[derive(Debug, Clone, Default)]
pub struct DeploySpec {
    pub timeout_ms: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub concurrency: Option<u32>,
    pub queue: Option<u32>,
    pub env: BTreeMap<String, String>,
}

/// Errors with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadComponent(String),
    #[error("no function named {0:?}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("input of {0} bytes is over the limit of {1}")]
    InputTooLarge(usize, usize),
    #[error("function {name:?} is busy: {waiting} invocations are waiting (limit {limit})")]
    Busy { name: String, waiting: usize, limit: usize, retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadComponent(_) => "bad_component",
            Error::NotFound(_) => "function_not_found",
            Error::BadRequest(_) => "bad_request",
            Error::InputTooLarge(..) => "payload_too_large",
            Error::Busy { .. } => "busy",
            Error::Unavailable(_) => "unavailable",
        }
    }
}

impl From<squall_store::Error> for Error {
    fn from(e: squall_store::Error) -> Self {
        Error::Unavailable(e.to_string())
    }
}

/// An invocation request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub input: Vec<u8>,
    pub idempotency_key: Option<String>,
    /// Lowers the function's time limit for this call.
    pub timeout: Option<Duration>,
}

/// Where an invocation's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub queue: Duration,
    /// Time spent instantiating on the invocation's path (none when its
    /// instance was made ready ahead, unless a conflict made it run again).
    pub instantiate: Duration,
    /// The first attempt ran in an instance made ready before the call came.
    pub prepared: bool,
    pub run: Duration,
    pub store: Duration,
    pub commit: Duration,
}

/// An invocation's answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub invocation_id: String,
    pub outcome: Result<Vec<u8>, Failure>,
    pub timing: Timing,
    /// True when this is the stored answer of an earlier call with the same idempotency key.
    pub replayed: bool,
    /// Runs it took (more than one after conflicting commits).
    pub attempts: u32,
}

/// Per-function admission: a concurrency limit with a bounded queue in front.
#[derive(Debug)]
struct Admission {
    running: Arc<Semaphore>,
    /// Invocations admitted and not finished (queued + running).
    inside: AtomicUsize,
    limit: usize,
    concurrency: usize,
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct FunctionStats {
    pub invocations: AtomicU64,
    pub running: AtomicUsize,
    pub queued: AtomicUsize,
}

/// An admitted invocation: counted in its function's queue bound, and once
/// it holds a concurrency permit, in its running count. Dropping it gives
/// back all of that.
struct Slot {
    adm: Arc<Admission>,
    stats: Arc<FunctionStats>,
    /// The concurrency permit, once it has one.
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.stats.running.fetch_sub(1, Ordering::Relaxed);
        }
        self.adm.inside.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An idempotency key's call in progress: dropping it lets the duplicates
/// waiting for it look for its answer.
struct InFlight {
    inner: Arc<Inner>,
    slot: (String, String),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.inner.in_flight.lock().expect("in flight").remove(&self.slot) {
            n.notify_waiters();
        }
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

struct Deployed {
    meta: FunctionMeta,
    compiled: Arc<Function>,
    admission: Arc<Admission>,
    /// The shard whose thread ran the last invocation's first store access.
    affinity: AtomicUsize,
    /// The function's part of every invocation (name, version, limits,
    /// environment); a call fills in its id, input and time limit.
    template: Invocation,
    ready: Ready,
    /// Set when making an instance ahead failed or left something behind (a
    /// component whose start functions log or reach for the store, a memory
    /// limit below what it needs): its calls make their own.
    no_ahead: AtomicBool,
}

/// Instances made ready ahead of their calls: at most one per function and
/// shard thread, made on that thread once a call there has ended and its
/// instance is torn down, so the next call there starts without
/// instantiating. They come out of the same pool as running instances, so
/// all functions together keep at most a quarter of the pool ready, none is
/// made for a while after a call found the pool full, and such a call lets
/// one go.
struct Ready {
    slots: Box<[Mutex<Option<Prepared>>]>,
    /// Ready instances of all functions (and those being made).
    count: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ready {
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
    fn take(count: &Arc<AtomicUsize>, cap: usize) -> Option<Place> {
        if count.fetch_add(1, Ordering::Relaxed) >= cap {
            count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Place(count.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Inner {
    store: Handle,
    runtime: Arc<Runtime>,
    settings: Settings,
    registry: RwLock<HashMap<String, Arc<Deployed>>>,
    stats: Mutex<HashMap<String, Arc<FunctionStats>>>,
    deploys: tokio::sync::Mutex<()>,
    in_flight: Mutex<HashMap<(String, String), Arc<Notify>>>,
    logs: logs::Logs,
    next_invocation: AtomicU64,
    next_shard: AtomicUsize,
    /// Instances made ready ahead, of all functions, and the most there may be.
    ready: Arc<AtomicUsize>,
    ready_cap: usize,
    /// No instance is made ahead before this time (ms since the Unix epoch):
    /// a call found the pool full.
    pool_full_until: AtomicU64,
}

/// The function service; cheap to clone.
#[derive(Clone)]
pub struct Functions {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Functions").field("settings", &self.inner.settings).finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn sys() -> Bytes {
    Bytes::from_static(SYS_NS)
}

fn meta_key(name: &str) -> Bytes {
    Bytes::from(format!("fn:{name}"))
}

fn component_key(digest: &str) -> Bytes {
    Bytes::from(format!("component:{digest}"))
}

fn idem_key(name: &str, key: &str) -> Bytes {
    Bytes::from(format!("idem:{name}:{key}"))
}

/// A function name: 1 to 64 of letters, digits, `-` and `_`.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!("bad function name {name:?}: use 1 to 64 letters, digits, '-' or '_'")))
    }
}

/// What an idempotency record keeps: the first call's answer.
#[derive(Serialize, Deserialize)]
struct IdemRecord {
    invocation_id: String,
    output: Vec<u8>,
}

impl Functions {
    /// Starts the service and loads the registry from the store (compiling
    /// what the runtime's disk cache does not hold).
    pub async fn start(store: Handle, runtime: Arc<Runtime>, settings: Settings) -> Result<Functions, Error> {
        let keep = settings.keep_logs;
        let f = Functions {
            inner: Arc::new(Inner {
                store,
                settings,
                registry: RwLock::new(HashMap::new()),
                stats: Mutex::new(HashMap::new()),
                deploys: tokio::sync::Mutex::new(()),
                in_flight: Mutex::new(HashMap::new()),
                logs: logs::Logs::new(keep),
                next_invocation: AtomicU64::new(1),
                next_shard: AtomicUsize::new(0),
                ready: Arc::new(AtomicUsize::new(0)),
                ready_cap: runtime.options().instances as usize / 4,
                pool_full_until: AtomicU64::new(0),
                runtime,
            }),
        };
        f.load().await?;
        Ok(f)
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    async fn load(&self) -> Result<(), Error> {
        let store = &self.inner.store;
        let mut cursor = 0;
        loop {
            let (next, keys) = store.scan(&sys(), cursor, 256, Some(Bytes::from_static(b"fn:*")), None).await?;
            for key in keys {
                let Ok(Reply::Bytes(raw)) = store.exec(&sys(), key.clone(), Op::Get).await? else { continue };
                let meta: FunctionMeta = match serde_json::from_slice(&raw) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "unreadable function record");
                        continue;
                    }
                };
                let Ok(Reply::Bytes(bytes)) = store.exec(&sys(), component_key(&meta.digest), Op::Get).await? else {
                    tracing::error!(function = %meta.name, "component bytes missing; function not loaded");
                    continue;
                };
                match self.compile(meta.digest.clone(), bytes).await {
                    Ok(compiled) => self.install(meta, compiled),
                    Err(e) => tracing::error!(function = %meta.name, error = %e, "cannot load function"),
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        tracing::info!(functions = self.inner.registry.read().expect("registry").len(), "functions loaded");
        Ok(())
    }

    async fn compile(&self, digest: String, bytes: Bytes) -> Result<Arc<Function>, Error> {
        let runtime = self.inner.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.compile_digest(&digest, &bytes))
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?
            .map_err(|e| match e {
                squall_runtime::CompileError::BadComponent(m) => Error::BadComponent(m),
                squall_runtime::CompileError::Internal(m) => Error::Unavailable(m),
            })
    }

    fn install(&self, meta: FunctionMeta, compiled: Arc<Function>) {
        let l = meta.limits;
        let admission = Arc::new(Admission {
            running: Arc::new(Semaphore::new(l.concurrency as usize)),
            inside: AtomicUsize::new(0),
            limit: l.concurrency as usize + l.queue as usize,
            concurrency: l.concurrency as usize,
        });
        let name = meta.name.clone();
        let template = Invocation {
            id: String::new(),
            function: meta.name.clone(),
            version: meta.version,
            input: Vec::new(),
            timeout: Duration::from_millis(l.timeout_ms),
            memory: l.memory_bytes as usize,
            env: meta.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let ready = Ready {
            slots: (0..self.inner.store.shards()).map(|_| Mutex::new(None)).collect(),
            count: self.inner.ready.clone(),
        };
        let deployed = Arc::new(Deployed {
            meta,
            compiled,
            admission,
            affinity: AtomicUsize::new(usize::MAX),
            template,
            ready,
            no_ahead: AtomicBool::new(false),
        });
        self.inner.registry.write().expect("registry").insert(name, deployed);
    }

    fn get(&self, name: &str) -> Result<Arc<Deployed>, Error> {
        self.inner.registry.read().expect("registry").get(name).cloned().ok_or_else(|| Error::NotFound(name.into()))
    }

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

    /// Deploys (or redeploys, bumping the version) a function.
    pub async fn deploy(&self, name: &str, bytes: Bytes, spec: DeploySpec) -> Result<FunctionMeta, Error> {
        check_name(name)?;
        let defaults = self.inner.settings.default_limits;
        let max_memory = self.inner.runtime.options().max_memory as u64;
        let limits = Limits {
            timeout_ms: spec.timeout_ms.unwrap_or(defaults.timeout_ms),
            memory_bytes: spec.memory_bytes.unwrap_or(defaults.memory_bytes),
            concurrency: spec.concurrency.unwrap_or(defaults.concurrency),
            queue: spec.queue.unwrap_or(defaults.queue),
        };
        if limits.timeout_ms == 0 || limits.timeout_ms > 15 * 60 * 1000 {
            return Err(Error::BadRequest("timeout must be between 1 ms and 15 minutes".into()));
        }
        if limits.memory_bytes < (1 << 20) || limits.memory_bytes > max_memory {
            return Err(Error::BadRequest(format!("memory must be between 1 MiB and {} MiB", max_memory >> 20)));
        }
        if limits.concurrency == 0 || limits.concurrency > 10_000 || limits.queue > 100_000 {
            return Err(Error::BadRequest("concurrency must be 1 to 10000 and queue 0 to 100000".into()));
        }
        let digest = squall_runtime::digest(&bytes);
        let compiled = self.compile(digest.clone(), bytes.clone()).await?;
        let _one_at_a_time = self.inner.deploys.lock().await;
        let previous = self.get(name).ok();
        let meta = FunctionMeta {
            name: name.to_string(),
            version: previous.as_ref().map_or(1, |p| p.meta.version + 1),
            digest: digest.clone(),
            size: bytes.len() as u64,
            limits,
            env: spec.env,
            created_ms: now_ms(),
        };
        let json = Bytes::from(serde_json::to_vec(&meta).map_err(|e| Error::Unavailable(e.to_string()))?);
        let set = |key, value| Write { ns: sys(), key, op: Op::Set { value, expiry: SetExpiry::None, get: false } };
        let mut writes = vec![set(component_key(&digest), bytes), set(meta_key(name), json)];
        if let Some(old) = previous.as_ref().filter(|p| p.meta.digest != digest) {
            writes.extend(self.release(&old.meta.digest, name));
        }
        self.inner.store.commit(Vec::new(), writes).await?;
        self.install(meta.clone(), compiled);
        tracing::info!(function = name, version = meta.version, digest = %digest, "deployed");
        Ok(meta)
    }

    /// The write that removes `digest`'s bytes if no function but `name` uses it.
    fn release(&self, digest: &str, name: &str) -> Option<Write> {
        let used = self
            .inner
            .registry
            .read()
            .expect("registry")
            .values()
            .any(|d| d.meta.name != name && d.meta.digest == digest);
        if used {
            return None;
        }
        self.inner.runtime.remove_cached(digest);
        Some(Write { ns: sys(), key: component_key(digest), op: Op::Del })
    }

    /// Removes a function.
    pub async fn remove(&self, name: &str) -> Result<FunctionMeta, Error> {
        let _one_at_a_time = self.inner.deploys.lock().await;
        let d = self.get(name)?;
        let mut writes = vec![Write { ns: sys(), key: meta_key(name), op: Op::Del }];
        writes.extend(self.release(&d.meta.digest, name));
        self.inner.store.commit(Vec::new(), writes).await?;
        self.inner.registry.write().expect("registry").remove(name);
        tracing::info!(function = name, "removed");
        Ok(d.meta.clone())
    }

    pub fn list(&self) -> Vec<FunctionMeta> {
        let mut v: Vec<_> = self.inner.registry.read().expect("registry").values().map(|d| d.meta.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn show(&self, name: &str) -> Result<FunctionMeta, Error> {
        Ok(self.get(name)?.meta.clone())
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

    /// Runs a function; admission, idempotency, retries on conflict, commit.
    pub async fn invoke(&self, name: &str, req: Request) -> Result<Response, Error> {
        let d = self.get(name)?;
        let max = self.inner.settings.max_input;
        if req.input.len() > max {
            return Err(Error::InputTooLarge(req.input.len(), max));
        }
        let Some(key) = req.idempotency_key.clone() else {
            return self.admit_and_run(d, req, None).await;
        };
        if key.is_empty() || key.len() > 256 {
            return Err(Error::BadRequest("Idempotency-Key must be 1 to 256 bytes".into()));
        }
        loop {
            if let Some(r) = self.replay(name, &key).await? {
                return Ok(r);
            }
            // One call per key runs at a time; a duplicate waits for it, then
            // finds its answer (or, if it failed, runs itself).
            let slot = (name.to_string(), key.clone());
            let waiting = {
                let mut in_flight = self.inner.in_flight.lock().expect("in flight");
                match in_flight.get(&slot) {
                    Some(n) => {
                        let n = n.clone();
                        Some(n)
                    }
                    None => {
                        in_flight.insert(slot.clone(), Arc::new(Notify::new()));
                        None
                    }
                }
            };
            match waiting {
                Some(n) => {
                    let notified = n.notified();
                    // The runner may have finished between the lookup and now.
                    if self.inner.in_flight.lock().expect("in flight").contains_key(&slot) {
                        notified.await;
                    }
                }
                None => {
                    // Held until the invocation has ended (committed or
                    // not), even if this caller goes away before that.
                    let running = InFlight { inner: self.inner.clone(), slot };
                    return self.admit_and_run(d.clone(), req.clone(), Some(running)).await;
                }
            }
        }
    }

    async fn replay(&self, name: &str, key: &str) -> Result<Option<Response>, Error> {
        let Ok(Reply::Bytes(raw)) = self.inner.store.exec(&sys(), idem_key(name, key), Op::Get).await? else {
            return Ok(None);
        };
        let rec: IdemRecord = postcard::from_bytes(&raw).map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(Some(Response {
            invocation_id: rec.invocation_id,
            outcome: Ok(rec.output),
            timing: Timing::default(),
            replayed: true,
            attempts: 0,
        }))
    }

    async fn admit_and_run(
        &self,
        d: Arc<Deployed>,
        req: Request,
        running: Option<InFlight>,
    ) -> Result<Response, Error> {
        let adm = d.admission.clone();
        let stats = self.stats(&d.meta.name);
        let inside = adm.inside.fetch_add(1, Ordering::AcqRel);
        if inside >= adm.limit {
            adm.inside.fetch_sub(1, Ordering::AcqRel);
            let waiting = inside.saturating_sub(adm.concurrency);
            return Err(Error::Busy {
                name: d.meta.name.clone(),
                waiting,
                limit: adm.limit - adm.concurrency,
                retry_after: Duration::from_secs(1),
            });
        }
        // Each count below is given back by a guard, so a caller that goes
        // away (a closed connection drops this future) leaks none of them.
        let mut slot = Slot { adm: adm.clone(), stats: stats.clone(), permit: None };
        let queued_at = Instant::now();
        let permit = {
            let _queued = Gauge::up(&stats.queued);
            adm.running.clone().acquire_owned().await
        };
        slot.permit = Some(permit.map_err(|_| Error::Unavailable("function removed".into()))?);
        stats.running.fetch_add(1, Ordering::Relaxed);
        stats.invocations.fetch_add(1, Ordering::Relaxed);
        let queue = queued_at.elapsed();
        // Run where the function's data is (the shard its last invocation
        // touched first); a function with no data yet runs on the caller's
        // shard thread if it is on one (an HTTP or RESP connection, another
        // invocation), where starting the task takes no hop between threads.
        // It is a task of its own either way, so a caller that goes away does
        // not cancel an invocation halfway; the slot is held until it ends.
        let shard = match d.affinity.load(Ordering::Relaxed) {
            usize::MAX => match self.inner.store.current_shard() {
                Some(here) => here,
                None => self.inner.next_shard.fetch_add(1, Ordering::Relaxed),
            },
            s => s,
        } % self.inner.store.shards();
        let this = self.clone();
        let task = self.inner.store.spawn_on(shard, async move {
            let mut used = None;
            let r = this.run(&d, req, shard, &mut used).await;
            drop(running);
            // Tear the instance down after the answer has gone out: the
            // waiting caller is woken when this task ends and runs first (a
            // yield puts the teardown behind it). Then make an instance ready
            // for the function's next call here, in the slot just freed (its
            // pages are warm). The slot, and with it the concurrency permit,
            // is given back only after that, so live instances never
            // outnumber the permits (plus the few kept ready).
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                drop(used);
                tokio::task::yield_now().await;
                this.prepare_ahead(&d, shard).await;
                drop(slot);
            });
            r
        });
        let mut r = task.await.map_err(|e| Error::Unavailable(format!("invocation task failed: {e}")))??;
        r.timing.queue = queue;
        Ok(r)
    }

    fn invocation_id(&self) -> String {
        let n = self.inner.next_invocation.fetch_add(1, Ordering::Relaxed);
        format!("{:012x}-{:x}-{n:06x}", now_ms(), self.inner.store.node_id() & 0xffff)
    }

    /// Makes an instance of `d` ready for its next call on `shard` (this
    /// thread), unless one is ready there already, enough are ready, the
    /// pool was found full a moment ago, the function's calls run on
    /// another shard (where its data is) or `d` is no longer the deployed
    /// version.
    async fn prepare_ahead(&self, d: &Arc<Deployed>, shard: usize) {
        if d.no_ahead.load(Ordering::Relaxed) || d.ready.has(shard) || now_ms() < self.pool_full_until() {
            return;
        }
        match d.affinity.load(Ordering::Relaxed) {
            usize::MAX => {}
            home if home == shard => {
                // Its data lives here now: an instance left ready elsewhere would wait in vain.
                (0..d.ready.slots.len()).filter(|s| *s != shard).for_each(|s| drop(d.ready.take(s)));
            }
            _ => return,
        }
        let current = {
            let registry = self.inner.registry.read().expect("registry");
            registry.get(&d.meta.name).is_some_and(|current| Arc::ptr_eq(current, d))
        };
        if !current {
            return;
        }
        let Some(place) = Place::take(&self.inner.ready, self.inner.ready_cap) else { return };
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

    fn pool_full_until(&self) -> u64 {
        self.inner.pool_full_until.load(Ordering::Relaxed)
    }

    fn note_pool_full(&self) {
        self.inner.pool_full_until.store(now_ms() + POOL_FULL_PAUSE_MS, Ordering::Relaxed);
    }

    /// Lets one ready instance go (of any function), giving its pooled slot
    /// back; false if there was none.
    fn release_one(&self) -> bool {
        let all: Vec<Arc<Deployed>> = self.inner.registry.read().expect("registry").values().cloned().collect();
        all.iter().any(|d| (0..d.ready.slots.len()).any(|shard| d.ready.take(shard).is_some()))
    }

    /// A fresh instance for `inv`'s call: on the first attempt, the one made
    /// ready on `shard` if there is one (then no instantiation time is
    /// counted), else a new one, made within what is left of the call's
    /// time limit since `started`.
    async fn instance(
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
                if self.inner.ready.load(Ordering::Relaxed) == 0 {
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

    /// Runs the invocation (again after a conflict) on `shard`, this thread,
    /// and commits it. `used` is left holding the last attempt's instance,
    /// for the caller to tear down once the answer is on its way.
    async fn run(&self, d: &Deployed, req: Request, shard: usize, used: &mut Option<Used>) -> Result<Response, Error> {
        let id = self.invocation_id();
        let mut inv = d.template.clone();
        inv.id.clone_from(&id);
        inv.input = req.input;
        inv.timeout = req.timeout.map_or(inv.timeout, |t| t.min(inv.timeout));
        let started_ms = now_ms();
        let started = Instant::now();
        let mut timing = Timing::default();
        let mut attempts = 0;
        let mut notes = Vec::new();
        let (outcome, log) = loop {
            attempts += 1;
            let txn = Box::new(StoreTxn::new(self.inner.store.clone(), self.inner.settings.ns.clone()));
            // A conflicting attempt's instance is torn down before the next one.
            drop(used.take());
            let attempt_started = Instant::now();
            let instance = self.instance(d, &inv, shard, attempts == 1, attempt_started, &mut timing).await;
            let done = self.inner.runtime.run(instance, &inv, txn, attempt_started).await;
            *used = Some(done.instance);
            timing.run += done.timing.run;
            timing.store += done.timing.store;
            let txn = done.txn.into_any().downcast::<StoreTxn>().expect("the scheduler's own transaction");
            if let Some(s) = txn.first_shard {
                d.affinity.store(s, Ordering::Relaxed);
            }
            let output = match done.outcome {
                Ok(output) => output,
                Err(failure) => break (Err(failure), done.log),
            };
            let commit_started = Instant::now();
            let (checks, mut writes) = txn.into_commit();
            if let Some(key) = &req.idempotency_key {
                let rec = IdemRecord { invocation_id: id.clone(), output: output.clone() };
                let value = Bytes::from(postcard::to_allocvec(&rec).map_err(|e| Error::Unavailable(e.to_string()))?);
                let at = now_ms() + self.inner.settings.idempotency_ttl.as_millis() as u64;
                writes.push(Write {
                    ns: sys(),
                    key: idem_key(&d.meta.name, key),
                    op: Op::Set { value, expiry: SetExpiry::At(at), get: false },
                });
            }
            let committed = self.inner.store.commit(checks, writes).await;
            timing.commit += commit_started.elapsed();
            match committed {
                Ok(Some(_)) => break (Ok(output), done.log),
                Ok(None) if attempts <= self.inner.settings.max_conflict_retries => {
                    notes.push(LogLine {
                        at_ms: now_ms(),
                        level: Level::Debug,
                        message: format!("attempt {attempts}: data it read changed before commit; running again"),
                    });
                    // Spread the retries of invocations that keep colliding.
                    let spread = (started.elapsed().subsec_nanos() as u64 % 200) << attempts.min(6);
                    tokio::time::sleep(Duration::from_micros(spread)).await;
                }
                Ok(None) => {
                    let failure = Failure {
                        code: FailureCode::Conflict,
                        message: format!("gave up after {attempts} conflicting commits"),
                    };
                    break (Err(failure), done.log);
                }
                Err(e) => {
                    let failure = Failure { code: FailureCode::Internal, message: format!("commit failed: {e}") };
                    break (Err(failure), done.log);
                }
            }
        };
        notes.extend(log);
        self.inner.logs.record(InvocationLog {
            seq: 0,
            invocation_id: id.clone(),
            function: d.meta.name.clone(),
            version: d.meta.version,
            started_ms,
            duration_us: started.elapsed().as_micros() as u64,
            status: outcome.as_ref().map_or_else(|f| f.code.as_str(), |_| "ok"),
            error: outcome.as_ref().err().map(|f| f.message.clone()),
            lines: notes,
        });
        Ok(Response { invocation_id: id, outcome, timing, replayed: false, attempts })
    }

    /// Instances made ready ahead of their calls, of all functions.
    pub fn ready_instances(&self) -> usize {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// Queue depth and running instances of every deployed function.
    pub fn load_by_function(&self) -> Vec<(String, usize, usize)> {
        self.all_stats()
            .into_iter()
            .map(|(n, s)| (n, s.queued.load(Ordering::Relaxed), s.running.load(Ordering::Relaxed)))
            .collect()
    }
}
