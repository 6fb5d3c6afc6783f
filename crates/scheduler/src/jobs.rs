//! Map jobs (after PyWren): one function over many inputs, each element
//! its own atomic invocation, run with bounded concurrency, retried with
//! backoff, and durable.
//!
//! A job lives in the store's `sys` namespace, so it survives a crash:
//! - `job:ID`: its definition and state (JSON);
//! - `jobin:ID:CHUNK`: its inputs, [`CHUNK`] to a key (postcard);
//! - `jobres:ID:INDEX`: an element's result (postcard), written in the same
//!   atomic unit as the element's own effects, with the job's `done`
//!   counter: an element whose result is there has run, once. A failed
//!   element's result (after its retries) is written with the `failed`
//!   counter. With `out_prefix`, a successful element's output is written
//!   to the key `out_prefix + INDEX` of the functions' namespace instead.
//!
//! A node that starts again carries on with its unfinished jobs, skipping
//! the elements whose result is there. A job's memory is bounded: one chunk
//! of inputs and the elements in flight. An ended job's inputs are dropped;
//! its results stay until the job is removed ([`Functions::remove_job`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use squall_store::{Op, Reply, SetExpiry, Write};
use tokio::task::JoinSet;

use crate::invoke::Remembered;
use crate::{Error, Functions, Request, sys};

/// Inputs kept under one key.
pub const CHUNK: usize = 1024;
/// Bytes of results one page of results holds at most (it ends early then).
const MAX_PAGE_BYTES: usize = 32 << 20;
/// Most retries of a failed element.
pub const MAX_RETRIES: u32 = 10;
/// Most elements of a job running at once.
pub const MAX_CONCURRENCY: u32 = 1024;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    /// Every element succeeded.
    Done,
    /// Every element ran; some failed after their retries.
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A job's definition and state, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMeta {
    pub id: String,
    pub function: String,
    pub total: u64,
    pub concurrency: u32,
    pub retries: u32,
    #[serde(default)]
    pub out_prefix: Option<String>,
    pub state: JobState,
    pub created_ms: u64,
    #[serde(default)]
    pub finished_ms: Option<u64>,
}

/// A new job: what to run on what.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    pub function: String,
    /// Each input's bytes (a JSON value's text, from the HTTP API).
    pub inputs: Vec<Vec<u8>>,
    /// Or: the values of the keys with this prefix (in the functions' namespace).
    pub prefix: Option<String>,
    pub concurrency: Option<u32>,
    pub retries: Option<u32>,
    pub out_prefix: Option<String>,
}

/// A job's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
}

/// An element's result, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementResult {
    pub ok: bool,
    /// The output (absent when it went to `out_prefix`).
    pub output: Option<Vec<u8>>,
    /// Why it failed: its code and message.
    pub error: Option<(String, String)>,
    pub attempts: u32,
}

/// One element's place in the answer to a results query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub index: u64,
    /// None: it has not finished yet.
    pub result: Option<ElementResult>,
}

fn meta_key(id: &str) -> Bytes {
    Bytes::from(format!("job:{id}"))
}
fn input_key(id: &str, chunk: u64) -> Bytes {
    Bytes::from(format!("jobin:{id}:{chunk:08}"))
}
fn result_key(id: &str, index: u64) -> Bytes {
    Bytes::from(format!("jobres:{id}:{index:010}"))
}
fn count_key(id: &str, what: &str) -> Bytes {
    Bytes::from(format!("jobn:{id}:{what}"))
}

pub(crate) fn set(ns: Bytes, key: Bytes, value: Vec<u8>) -> Write {
    Write { ns, key, op: Op::Set { value: Bytes::from(value), expiry: SetExpiry::None, get: false } }
}

fn incr(key: Bytes) -> Write {
    Write { ns: sys(), key, op: Op::IncrBy(1) }
}

pub(crate) fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::Unavailable(e.to_string()))
}

/// An element's result record: postcard, compact for outputs of any bytes.
fn record(r: &ElementResult) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(r).map_err(|e| Error::Unavailable(e.to_string()))
}

/// A running job on this node.
#[derive(Debug)]
pub(crate) struct JobRun {
    running: AtomicUsize,
    cancel: AtomicBool,
}

/// The jobs this node runs.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    running: std::sync::Mutex<HashMap<String, Arc<JobRun>>>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    /// Set by a node that stops: runners start no more elements.
    stopping: AtomicBool,
}

/// A successful element's record: its result and the job's `done` count.
struct Element {
    job: Arc<JobMeta>,
    index: u64,
    attempt: u32,
    ns: Bytes,
}

impl Remembered for Element {
    fn writes(&self, output: &[u8], _now_ms: u64) -> Result<Vec<Write>, Error> {
        let id = &self.job.id;
        let mut w = Vec::with_capacity(3);
        let output = match &self.job.out_prefix {
            Some(prefix) => {
                w.push(set(self.ns.clone(), Bytes::from(format!("{prefix}{}", self.index)), output.to_vec()));
                None
            }
            None => Some(output.to_vec()),
        };
        let result = ElementResult { ok: true, output, error: None, attempts: self.attempt };
        w.push(set(sys(), result_key(id, self.index), record(&result)?));
        w.push(incr(count_key(id, "done")));
        Ok(w)
    }
}

impl Functions {
    pub(crate) async fn commit_writes(&self, writes: Vec<Write>) -> Result<(), Error> {
        self.inner.store.commit(Vec::new(), writes).await?;
        Ok(())
    }

    /// Starts a map job: its definition and inputs are durable when this returns.
    pub async fn start_job(&self, spec: JobSpec) -> Result<JobMeta, Error> {
        let d = self.get(&spec.function)?;
        let retries = spec.retries.unwrap_or(2);
        if retries > MAX_RETRIES {
            return Err(Error::BadRequest(format!("retries: at most {MAX_RETRIES}")));
        }
        let concurrency = spec.concurrency.unwrap_or(d.meta.limits.concurrency);
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            return Err(Error::BadRequest(format!("concurrency: 1 to {MAX_CONCURRENCY}")));
        }
        let inputs = match (&spec.prefix, spec.inputs.is_empty()) {
            (Some(_), false) => return Err(Error::BadRequest("give \"inputs\" or \"prefix\", not both".into())),
            (Some(prefix), true) => self.prefix_inputs(&self.store_ns(&spec.function), prefix).await?,
            (None, _) => spec.inputs,
        };
        let most = self.inner.settings.max_job_inputs;
        if inputs.len() > most {
            return Err(Error::TooManyInputs(inputs.len(), most));
        }
        let max = self.inner.settings.max_input;
        if let Some((i, big)) = inputs.iter().enumerate().find(|(_, v)| v.len() > max) {
            return Err(Error::BadRequest(format!("input {i} has {} bytes, over the limit of {max}", big.len())));
        }
        let id = format!("job-{}", self.invocation_id());
        let meta = JobMeta {
            id: id.clone(),
            function: spec.function,
            total: inputs.len() as u64,
            concurrency,
            retries,
            out_prefix: spec.out_prefix,
            state: JobState::Running,
            created_ms: self.inner.store.now_ms(),
            finished_ms: None,
        };
        // The inputs first, then the definition: a job that is listed has all its inputs.
        let mut batch = Vec::new();
        for (n, chunk) in inputs.chunks(CHUNK).enumerate() {
            let raw = postcard::to_allocvec(chunk).map_err(|e| Error::Unavailable(e.to_string()))?;
            batch.push(set(sys(), input_key(&id, n as u64), raw));
            if batch.len() == 64 {
                self.commit_writes(std::mem::take(&mut batch)).await?;
            }
        }
        drop(inputs);
        batch.push(set(sys(), meta_key(&id), json(&meta)?));
        self.commit_writes(batch).await?;
        self.run_job(meta.clone(), false).await;
        Ok(meta)
    }

    /// The values of the keys of `ns` with `prefix`, as inputs.
    async fn prefix_inputs(&self, ns: &Bytes, prefix: &str) -> Result<Vec<Vec<u8>>, Error> {
        let pattern = squall_store::prefix_pattern(prefix.as_bytes());
        let (mut cursor, mut inputs) = (0, Vec::new());
        loop {
            let (next, keys) = self.inner.store.scan(ns, cursor, 512, Some(pattern.clone()), None).await?;
            for k in keys {
                if let Ok(Reply::Bytes(v)) = self.inner.store.exec(ns, k, Op::Get).await? {
                    inputs.push(v.to_vec());
                }
                let most = self.inner.settings.max_job_inputs;
                if inputs.len() > most {
                    return Err(Error::TooManyInputs(inputs.len(), most));
                }
            }
            if next == 0 {
                return Ok(inputs);
            }
            cursor = next;
        }
    }

    /// Carries on with the jobs a stopped node left running.
    pub(crate) async fn resume_jobs(&self) -> Result<(), Error> {
        for meta in self.jobs().await? {
            if meta.state == JobState::Running {
                tracing::info!(job = %meta.id, "resuming a map job");
                self.run_job(meta, true).await;
            }
        }
        Ok(())
    }

    async fn run_job(&self, meta: JobMeta, resuming: bool) {
        let run = Arc::new(JobRun { running: AtomicUsize::new(0), cancel: AtomicBool::new(false) });
        self.inner.jobs.running.lock().expect("jobs").insert(meta.id.clone(), run.clone());
        let this = self.clone();
        let mut tasks = self.inner.jobs.tasks.lock().await;
        // Finished runners are reaped as new ones start.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let id = meta.id.clone();
            if let Err(e) = this.drive_job(Arc::new(meta), run, resuming).await {
                tracing::error!(job = %id, error = %e, "map job stopped");
            }
            this.inner.jobs.running.lock().expect("jobs").remove(&id);
        });
    }

    /// Runs a job's elements, `concurrency` at a time, then records how it
    /// ended. An element left without a result (a store error in the
    /// runner, a result that could not be written) gets more passes; a job
    /// is `done` only when every element has succeeded.
    async fn drive_job(&self, meta: Arc<JobMeta>, run: Arc<JobRun>, resuming: bool) -> Result<(), Error> {
        const PASSES: u32 = 3;
        let stopping = || self.inner.jobs.stopping.load(Ordering::Acquire);
        let cancelled = || run.cancel.load(Ordering::Acquire);
        let mut resuming = resuming;
        let mut counts = JobCounts::default();
        for pass in 1..=PASSES {
            let mut elements = JoinSet::new();
            let started = self.start_elements(&meta, &run, resuming, &mut elements).await;
            // Whatever stopped the loop, the elements it started finish.
            while elements.join_next().await.is_some() {}
            if let Err(e) = started {
                tracing::warn!(job = %meta.id, pass, error = %e, "map job pass cut short");
            }
            if stopping() && !cancelled() {
                // It goes on when the node starts again.
                return Ok(());
            }
            counts = self.job_counts(&meta).await?;
            if cancelled() || counts.done + counts.failed >= meta.total {
                break;
            }
            resuming = true;
            tokio::time::sleep(Duration::from_millis(100 * u64::from(pass))).await;
        }
        let state = if cancelled() {
            JobState::Cancelled
        } else if counts.done >= meta.total {
            JobState::Done
        } else {
            JobState::Failed
        };
        let ended = JobMeta { state, finished_ms: Some(self.inner.store.now_ms()), ..(*meta).clone() };
        self.commit_writes(vec![set(sys(), meta_key(&meta.id), json(&ended)?)]).await?;
        // An ended job needs its inputs no more.
        let chunks = meta.total.div_ceil(CHUNK as u64);
        self.delete_keys((0..chunks).map(|c| input_key(&meta.id, c))).await
    }

    /// Deletes `keys` of the `sys` namespace, a batch at a time.
    async fn delete_keys(&self, keys: impl Iterator<Item = Bytes>) -> Result<(), Error> {
        let mut batch = Vec::new();
        for key in keys {
            batch.push(Write { ns: sys(), key, op: Op::Del });
            if batch.len() == 1024 {
                self.commit_writes(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            self.commit_writes(batch).await?;
        }
        Ok(())
    }

    /// Removes a job that has ended: its definition, counts and results.
    pub async fn remove_job(&self, id: &str) -> Result<(JobMeta, JobCounts), Error> {
        let (meta, counts) = self.job(id).await?;
        if meta.state == JobState::Running {
            return Err(Error::BadRequest(format!("job {id} is running: cancel it first")));
        }
        let chunks = meta.total.div_ceil(CHUNK as u64);
        let results = (0..meta.total).map(|i| result_key(id, i));
        let inputs = (0..chunks).map(|c| input_key(id, c));
        let counters = ["done", "failed"].into_iter().map(|w| count_key(id, w));
        self.delete_keys(results.chain(inputs).chain(counters)).await?;
        // The definition last: a job that is listed can still be removed.
        self.delete_keys(std::iter::once(meta_key(id))).await?;
        Ok((meta, counts))
    }

    /// Starts every element that has no result yet (all of them, unless
    /// `resuming`), keeping `concurrency` in flight in `elements`.
    async fn start_elements(
        &self,
        meta: &Arc<JobMeta>,
        run: &Arc<JobRun>,
        resuming: bool,
        elements: &mut JoinSet<()>,
    ) -> Result<(), Error> {
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        for index in 0..meta.total {
            let i = (index as usize) % CHUNK;
            if i == 0 {
                let raw = self.sys_get(input_key(&meta.id, index / CHUNK as u64)).await?;
                chunk = postcard::from_bytes(raw.as_deref().unwrap_or_default())
                    .map_err(|e| Error::Unavailable(format!("job {} inputs unreadable: {e}", meta.id)))?;
            }
            if resuming && self.sys_get(result_key(&meta.id, index)).await?.is_some() {
                continue;
            }
            while elements.len() >= meta.concurrency as usize {
                elements.join_next().await;
            }
            if run.cancel.load(Ordering::Acquire) || self.inner.jobs.stopping.load(Ordering::Acquire) {
                return Ok(());
            }
            let input = std::mem::take(&mut chunk[i]);
            run.running.fetch_add(1, Ordering::AcqRel);
            let (this, meta, run) = (self.clone(), meta.clone(), run.clone());
            elements.spawn(async move {
                if let Err(e) = this.run_element(&meta, index, input).await {
                    tracing::warn!(job = %meta.id, index, error = %e, "element not recorded");
                }
                run.running.fetch_sub(1, Ordering::AcqRel);
            });
        }
        Ok(())
    }

    /// Runs one element until it succeeds or has failed `1 + retries` times.
    async fn run_element(&self, meta: &Arc<JobMeta>, index: u64, input: Vec<u8>) -> Result<(), Error> {
        let d = self.get(&meta.function);
        let mut attempt = 1;
        let mut busy = 0u32;
        loop {
            let failure = match &d {
                Err(e) => (e.code().to_string(), e.to_string()),
                Ok(d) => {
                    let req = Request { input: input.clone(), attempt, ..Request::default() };
                    let record =
                        Arc::new(Element { job: meta.clone(), index, attempt, ns: self.store_ns(&meta.function) });
                    match self.admit_and_run(d.clone(), req, None, Some(record)).await {
                        Ok(r) => match r.outcome {
                            Ok(_) => return Ok(()),
                            // Every instance slot was taken: the node's load, not this element's failure.
                            Err(f)
                                if f.code == squall_runtime::FailureCode::Busy
                                    && !self.inner.jobs.stopping.load(Ordering::Acquire) =>
                            {
                                // 1 ms, 2 ms, 4 ms... at most 100 ms between tries.
                                tokio::time::sleep(
                                    Duration::from_millis(1 << busy.min(7)).min(Duration::from_millis(100)),
                                )
                                .await;
                                busy += 1;
                                continue;
                            }
                            Err(f) => (f.code.as_str().to_string(), f.message),
                        },
                        // The function's queue is full (other calls share it): not
                        // this element's failure; it waits and tries again.
                        Err(Error::Busy { retry_after, .. }) if !self.inner.jobs.stopping.load(Ordering::Acquire) => {
                            tokio::time::sleep(retry_after.min(Duration::from_millis(100))).await;
                            continue;
                        }
                        // Its namespace's rate or instances are used up: it
                        // waits its turn (a job goes as fast as its quota).
                        Err(Error::Quota(_)) if !self.inner.jobs.stopping.load(Ordering::Acquire) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        Err(e) => (e.code().to_string(), e.to_string()),
                    }
                }
            };
            if attempt > meta.retries || d.is_err() || self.inner.jobs.stopping.load(Ordering::Acquire) {
                if self.inner.jobs.stopping.load(Ordering::Acquire) && attempt <= meta.retries {
                    // Not a failure of its own: it runs again after the restart.
                    return Ok(());
                }
                let result = ElementResult { ok: false, output: None, error: Some(failure), attempts: attempt };
                let writes = vec![
                    set(sys(), result_key(&meta.id, index), record(&result)?),
                    incr(count_key(&meta.id, "failed")),
                ];
                return self.commit_writes(writes).await;
            }
            // Backoff: 10 ms, 20 ms, 40 ms... at most a second.
            tokio::time::sleep(Duration::from_millis(10u64 << (attempt - 1).min(7)).min(Duration::from_secs(1))).await;
            attempt += 1;
        }
    }

    async fn counter(&self, key: Bytes) -> Result<u64, Error> {
        Ok(self.sys_get(key).await?.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()).unwrap_or(0))
    }

    /// A job's counts (the elements running are this node's).
    pub async fn job_counts(&self, meta: &JobMeta) -> Result<JobCounts, Error> {
        let done = self.counter(count_key(&meta.id, "done")).await?;
        let failed = self.counter(count_key(&meta.id, "failed")).await?;
        let running = self
            .inner
            .jobs
            .running
            .lock()
            .expect("jobs")
            .get(&meta.id)
            .map_or(0, |r| r.running.load(Ordering::Acquire) as u64);
        let pending = meta.total.saturating_sub(done + failed + running);
        Ok(JobCounts { pending, running, done, failed })
    }

    /// A job's definition, state and counts.
    pub async fn job(&self, id: &str) -> Result<(JobMeta, JobCounts), Error> {
        let raw = self.sys_get(meta_key(id)).await?.ok_or_else(|| Error::JobNotFound(id.to_string()))?;
        let meta: JobMeta = serde_json::from_slice(&raw).map_err(|e| Error::Unavailable(e.to_string()))?;
        let counts = self.job_counts(&meta).await?;
        Ok((meta, counts))
    }

    /// Every job this node keeps, oldest first.
    pub async fn jobs(&self) -> Result<Vec<JobMeta>, Error> {
        let mut out: Vec<JobMeta> = Vec::new();
        for (key, raw) in self.sys_records(b"job:*").await? {
            match serde_json::from_slice(&raw) {
                Ok(meta) => out.push(meta),
                Err(e) => tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "unreadable job record"),
            }
        }
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    /// Up to `limit` elements' results from index `from` on, in input order.
    pub async fn job_results(&self, id: &str, from: u64, limit: u64) -> Result<(JobMeta, Vec<JobResult>), Error> {
        let (meta, _) = self.job(id).await?;
        let end = from.saturating_add(limit).min(meta.total);
        let mut out = Vec::with_capacity(end.saturating_sub(from) as usize);
        let mut bytes = 0;
        for index in from..end {
            let result = match self.sys_get(result_key(id, index)).await? {
                Some(raw) => {
                    bytes += raw.len();
                    Some(postcard::from_bytes(&raw).map_err(|e| Error::Unavailable(e.to_string()))?)
                }
                None => None,
            };
            out.push(JobResult { index, result });
            // A page of large outputs ends early; the next one goes on from here.
            if bytes >= MAX_PAGE_BYTES {
                break;
            }
        }
        Ok((meta, out))
    }

    /// Cancels a running job: no more of its elements start; those running
    /// finish. Its state once they have.
    pub async fn cancel_job(&self, id: &str) -> Result<(JobMeta, JobCounts), Error> {
        let (meta, _) = self.job(id).await?;
        let run = self.inner.jobs.running.lock().expect("jobs").get(id).cloned();
        match run {
            Some(run) => {
                run.cancel.store(true, Ordering::Release);
                // Wait (a bounded while) for its runner to record the end.
                for _ in 0..2000 {
                    if !self.inner.jobs.running.lock().expect("jobs").contains_key(id) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            None if meta.state == JobState::Running => {
                // Not running here (a node that stopped before it could
                // resume), or its runner just ended: read it again (a runner
                // records its end before it leaves), and record the cancel
                // only if it is still running.
                let (meta, _) = self.job(id).await?;
                if meta.state != JobState::Running {
                    return self.job(id).await;
                }
                let ended =
                    JobMeta { state: JobState::Cancelled, finished_ms: Some(self.inner.store.now_ms()), ..meta };
                self.commit_writes(vec![set(sys(), meta_key(id), json(&ended)?)]).await?;
            }
            None => {}
        }
        self.job(id).await
    }

    /// Stops starting elements (the node is stopping) and waits for the
    /// runners to finish the elements they started, for at most `limit`.
    pub(crate) async fn stop_jobs(&self, limit: Duration) -> bool {
        self.inner.jobs.stopping.store(true, Ordering::Release);
        let mut tasks = self.inner.jobs.tasks.lock().await;
        tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await.is_ok()
    }
}
