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
//!
//! It speaks no protocol (HTTP statuses and RESP replies are the gateway's)
//! and reads no wall clock of its own: the times it keeps or hands out
//! (idempotency records' expiry, invocation ids, deploy and start times,
//! its log notes, the pause after the pool was full) come from the store's
//! clock, so a test that sets that clock sets them too.

mod admission;
mod calls;
mod dags;
mod idempotency;
mod invoke;
mod jobs;
mod logs;
pub mod namespace;
mod placement;
mod quota;
mod registry;
mod replay;
mod triggers;
mod txn;
mod warm;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use squall_runtime::Runtime;
use squall_store::{Handle, Op, Reply};
use tokio::sync::Notify;

pub use dags::{Dag, DagSpec, Step, StepsSpec};
pub use jobs::{ElementResult, JobCounts, JobMeta, JobResult, JobSpec, JobState};
pub use logs::{InvocationLog, LogQuery};
pub use namespace::{bare_name, check_namespace, namespace_of, qualify};
pub use quota::{Quota, Quotas};
pub use registry::check_name;
pub use replay::Replayed;
pub use squall_runtime::{Failure, FailureCode, Level, LogLine, digest};
pub use triggers::{
    DeadLetter, Envelope, KeyEventKind, MAX_DEPTH as MAX_TRIGGER_DEPTH, Source as TriggerSource, Stats as TriggerStats,
    Trigger, TriggerSpec,
};
pub use txn::StoreTxn;

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
    /// Deepest chain of calls from a request's root (the root is at 0).
    pub max_depth: u32,
    /// Most calls one request may make, over its whole tree.
    pub max_calls: u32,
    /// Most calls one invocation may have running at once (below the
    /// runtime's instance slots, so that they can all run).
    pub max_fanout: usize,
    /// Largest message between invocations.
    pub max_message: usize,
    /// Messages a mailbox holds before a send is refused.
    pub mailbox: usize,
    /// Most inputs of one map job.
    pub max_job_inputs: usize,
    /// Per namespace: its quota.
    pub quotas: HashMap<String, Quota>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ns: Bytes::from_static(squall_store::DEFAULT_NS),
            default_limits: Limits::default(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            max_input: 6 * 1024 * 1024,
            keep_logs: 100,
            max_conflict_retries: 32,
            max_depth: 16,
            max_calls: 10_000,
            max_fanout: 200,
            max_message: 1024 * 1024,
            mailbox: 64,
            max_job_inputs: 10_000_000,
            quotas: HashMap::new(),
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
    #[error("{0}")]
    BadDag(String),
    #[error("no DAG named {0:?}")]
    DagNotFound(String),
    #[error("a job of {0} inputs is over the limit of {1}")]
    TooManyInputs(usize, usize),
    #[error("no job {0:?}")]
    JobNotFound(String),
    /// An idempotency key reused for another request: another input, or
    /// another component deployed under the name since.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// Over its namespace's quota.
    #[error("{0}")]
    Quota(String),
    /// A time before the oldest the window log reaches.
    #[error("{0}")]
    OutOfWindow(String),
    /// A replay of a function at a time it was not deployed.
    #[error("{0}")]
    NotDeployedAt(String),
    #[error("{0}")]
    BadTrigger(String),
    #[error("no trigger {0:?}")]
    TriggerNotFound(String),
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
            Error::BadDag(_) => "bad_dag",
            Error::DagNotFound(_) => "dag_not_found",
            Error::TooManyInputs(..) => "too_many_inputs",
            Error::JobNotFound(_) => "job_not_found",
            Error::IdempotencyMismatch(_) => "idempotency_mismatch",
            Error::Quota(_) => "quota_exceeded",
            Error::OutOfWindow(_) => "out_of_window",
            Error::NotDeployedAt(_) => "function_not_found",
            Error::BadTrigger(_) => "bad_trigger",
            Error::TriggerNotFound(_) => "trigger_not_found",
        }
    }
}

impl From<squall_store::Error> for Error {
    fn from(e: squall_store::Error) -> Self {
        match e {
            squall_store::Error::OutOfWindow(_) => Error::OutOfWindow(format!("{e}: ask for a later time")),
            e => Error::Unavailable(e.to_string()),
        }
    }
}

/// An invocation request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub input: Vec<u8>,
    pub idempotency_key: Option<String>,
    /// Lowers the function's time limit for this call.
    pub timeout: Option<Duration>,
    /// Which delivery of this input it is (0 or 1: the first; a map job's
    /// or a trigger's retries count up).
    pub attempt: u32,
    /// For a trigger's event: how deep the chain of triggered runs it makes
    /// is (0: it is not a trigger's).
    pub trigger_depth: u32,
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
    /// Time the root waited for its callees (and messages).
    pub calls: Duration,
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

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct FunctionStats {
    pub invocations: AtomicU64,
    pub running: AtomicUsize,
    pub queued: AtomicUsize,
    /// Its invocations holding a slot of the node's instance pool (by
    /// name, so a redeploy does not start the count again).
    pub(crate) pooled: AtomicUsize,
}

struct Inner {
    store: Handle,
    runtime: Arc<Runtime>,
    settings: Settings,
    registry: RwLock<HashMap<String, Arc<registry::Deployed>>>,
    dags: RwLock<HashMap<String, Arc<dags::Dag>>>,
    stats: Mutex<HashMap<String, Arc<FunctionStats>>>,
    deploys: tokio::sync::Mutex<()>,
    /// Idempotency keys whose call is running, with who waits for it.
    in_flight: Mutex<HashMap<(String, String), Arc<Notify>>>,
    logs: logs::Logs,
    mailboxes: calls::Mailboxes,
    jobs: jobs::Jobs,
    triggers: triggers::State,
    next_invocation: AtomicU64,
    /// The shards' turn for invocations placed round robin.
    next_shard: AtomicUsize,
    /// The instances made ready ahead, of all functions.
    warm: warm::Share,
    /// The invocations holding pooled instances, of all functions.
    pool: Arc<admission::Pool>,
    quotas: Arc<quota::Quotas>,
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

fn sys() -> Bytes {
    Bytes::from_static(SYS_NS)
}

impl Functions {
    /// Why namespace `ns` (as the store names it) may not add keys now (its
    /// key quota is used up), if it may not.
    pub fn keys_full(&self, ns: &[u8]) -> Option<String> {
        self.inner.quotas.keys_full(ns)
    }

    /// The namespaces' quotas, for the front doors' writes.
    pub fn quotas(&self) -> Arc<Quotas> {
        self.inner.quotas.clone()
    }

    /// Counts the keys of every namespace with a key quota (once a second,
    /// by the node: writes that could add a key are refused in one that is
    /// full, until the next count finds it under).
    pub async fn count_keys(&self) {
        for (ns, _) in self.inner.quotas.key_quotas() {
            if let Ok(n) = self.inner.store.len(&Bytes::from(ns.clone())).await {
                self.inner.quotas.counted(&ns, n);
            }
        }
    }

    /// The store namespace a function or DAG (by registry name) reads and writes.
    pub(crate) fn store_ns(&self, qualified: &str) -> Bytes {
        match namespace_of(qualified) {
            namespace::DEFAULT => self.inner.settings.ns.clone(),
            ns => Bytes::copy_from_slice(ns.as_bytes()),
        }
    }
}

impl Functions {
    /// Starts the service and loads the registry from the store (compiling
    /// what the runtime's disk cache does not hold).
    pub async fn start(store: Handle, runtime: Arc<Runtime>, settings: Settings) -> Result<Functions, Error> {
        let keep = settings.keep_logs;
        let quotas = Arc::new(quota::Quotas::new(settings.quotas.clone()));
        let f = Functions {
            inner: Arc::new(Inner {
                store,
                settings,
                registry: RwLock::new(HashMap::new()),
                dags: RwLock::new(HashMap::new()),
                stats: Mutex::new(HashMap::new()),
                deploys: tokio::sync::Mutex::new(()),
                in_flight: Mutex::new(HashMap::new()),
                logs: logs::Logs::new(keep),
                mailboxes: calls::Mailboxes::default(),
                jobs: jobs::Jobs::default(),
                triggers: triggers::State::default(),
                next_invocation: AtomicU64::new(1),
                next_shard: AtomicUsize::new(0),
                warm: warm::Share::new(runtime.options().instances as usize / 4),
                pool: admission::Pool::new(runtime.options().instances as usize),
                quotas,
                runtime,
            }),
        };
        f.load().await?;
        f.load_dags().await?;
        f.resume_jobs().await?;
        f.start_triggers().await?;
        Ok(f)
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// A register of the `sys` namespace (none if it is absent or of another kind).
    pub(crate) async fn sys_get(&self, key: Bytes) -> Result<Option<Bytes>, Error> {
        match self.inner.store.exec(&sys(), key, Op::Get).await? {
            Ok(Reply::Bytes(b)) => Ok(Some(b)),
            _ => Ok(None),
        }
    }

    /// Every register of the `sys` namespace whose key matches `pattern`,
    /// with its value (the registry's records of one kind).
    pub(crate) async fn sys_records(&self, pattern: &'static [u8]) -> Result<Vec<(Bytes, Bytes)>, Error> {
        let (mut cursor, mut out) = (0, Vec::new());
        loop {
            let (next, keys) =
                self.inner.store.scan(&sys(), cursor, 256, Some(Bytes::from_static(pattern)), None).await?;
            for key in keys {
                if let Some(value) = self.sys_get(key.clone()).await? {
                    out.push((key, value));
                }
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}
