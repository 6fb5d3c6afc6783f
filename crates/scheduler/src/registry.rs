//! The registry: the deployed functions, compiled and ready to admit calls,
//! and their records in the store's `sys` namespace (`fn:NAME` a function's
//! settings as JSON, `component:DIGEST` its bytes), which deploy and remove
//! write and which a starting node loads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use squall_runtime::{Function, Invocation};
use squall_store::{Op, SetExpiry, Write};

use crate::admission::Admission;
use crate::placement::Affinity;
use crate::warm::Ready;
use crate::{DeploySpec, Error, FunctionMeta, Functions, Limits, sys};

/// A deployed version of a function, with everything its calls share.
pub(crate) struct Deployed {
    pub meta: FunctionMeta,
    pub compiled: Arc<Function>,
    pub admission: Arc<Admission>,
    /// The shard whose thread ran the last invocation's first store access.
    pub affinity: Affinity,
    /// The function's part of every invocation (name, version, limits,
    /// environment); a call fills in its id, input and time limit.
    pub template: Invocation,
    pub ready: Ready,
    /// Set when making an instance ahead failed or left something behind (a
    /// component whose start functions log or reach for the store, a memory
    /// limit below what it needs): its calls make their own.
    pub no_ahead: AtomicBool,
    /// What its idempotency records name it by ([`crate::idempotency::identity`]).
    pub identity: String,
}

pub(crate) fn meta_key(name: &str) -> Bytes {
    Bytes::from(format!("fn:{name}"))
}

pub(crate) fn component_key(digest: &str) -> Bytes {
    Bytes::from(format!("component:{digest}"))
}

/// A function (or DAG) name within its namespace: 1 to 64 of letters,
/// digits, `-` and `_`.
pub fn check_name(name: &str) -> Result<(), Error> {
    if crate::namespace::is_word(name) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!("bad function name {name:?}: use 1 to 64 letters, digits, '-' or '_'")))
    }
}

/// A registry name: a name, in the default namespace, or `ns/name`.
pub(crate) fn check_qualified(qualified: &str) -> Result<(), Error> {
    if qualified.contains('/') {
        crate::namespace::check_namespace(crate::namespace::namespace_of(qualified))?;
    }
    check_name(crate::namespace::bare_name(qualified))
}

impl Functions {
    pub(crate) async fn load(&self) -> Result<(), Error> {
        for (key, raw) in self.sys_records(b"fn:*").await? {
            let meta: FunctionMeta = match serde_json::from_slice(&raw) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "unreadable function record");
                    continue;
                }
            };
            let Some(bytes) = self.sys_get(component_key(&meta.digest)).await? else {
                tracing::error!(function = %meta.name, "component bytes missing; function not loaded");
                continue;
            };
            match self.compile(meta.digest.clone(), bytes).await {
                Ok(compiled) => self.install(meta, compiled),
                Err(e) => tracing::error!(function = %meta.name, error = %e, "cannot load function"),
            }
        }
        tracing::info!(functions = self.inner.registry.read().expect("registry").len(), "functions loaded");
        Ok(())
    }

    /// Components compiled since start (concurrent deploys of the same
    /// bytes share one compile; a known component is not compiled again).
    pub fn compiles(&self) -> u64 {
        self.inner.runtime.compiles()
    }

    pub(crate) async fn compile(&self, digest: String, bytes: Bytes) -> Result<Arc<Function>, Error> {
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
        let name = meta.name.clone();
        let deployed = self.version(meta, compiled);
        self.inner.registry.write().expect("registry").insert(name, deployed);
    }

    /// A version ready to admit calls (installed, or a replay's older one).
    pub(crate) fn version(&self, meta: FunctionMeta, compiled: Arc<Function>) -> Arc<Deployed> {
        let l = meta.limits;
        let template = Invocation {
            id: String::new(),
            function: meta.name.clone(),
            version: meta.version,
            input: Vec::new(),
            timeout: Duration::from_millis(l.timeout_ms),
            memory: l.memory_bytes as usize,
            env: meta.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        Arc::new(Deployed {
            identity: crate::idempotency::identity(&meta),
            meta,
            compiled,
            admission: Admission::new(&l),
            affinity: Affinity::default(),
            template,
            ready: Ready::new(self.inner.store.shards(), &self.inner.warm),
            no_ahead: AtomicBool::new(false),
        })
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<Deployed>, Error> {
        self.inner.registry.read().expect("registry").get(name).cloned().ok_or_else(|| Error::NotFound(name.into()))
    }

    /// True while `d` is the deployed version of its function.
    pub(crate) fn is_current(&self, d: &Arc<Deployed>) -> bool {
        let registry = self.inner.registry.read().expect("registry");
        registry.get(&d.meta.name).is_some_and(|current| Arc::ptr_eq(current, d))
    }

    /// Every deployed function.
    pub(crate) fn deployed(&self) -> Vec<Arc<Deployed>> {
        self.inner.registry.read().expect("registry").values().cloned().collect()
    }

    /// Deploys (or redeploys, bumping the version) a function.
    pub async fn deploy(&self, name: &str, bytes: Bytes, spec: DeploySpec) -> Result<FunctionMeta, Error> {
        check_qualified(name)?;
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
        // Bytes that are not a component, and a memory limit the component
        // cannot start in, are refused before anything is compiled or kept.
        squall_runtime::inspect::check(&bytes).map_err(|e| Error::BadComponent(e.to_string()))?;
        if let Some(needs) = squall_runtime::inspect::initial_memory(&bytes).filter(|n| *n > limits.memory_bytes) {
            return Err(Error::BadRequest(format!(
                "memory limit of {} is below the {} the component's memories start with: deploy with a memory \
                 limit of at least {} MiB",
                size(limits.memory_bytes),
                size(needs),
                needs.div_ceil(1 << 20) + 1
            )));
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
            created_ms: self.inner.store.now_ms(),
        };
        let json = Bytes::from(serde_json::to_vec(&meta).map_err(|e| Error::Unavailable(e.to_string()))?);
        let set = |key, value| Write { ns: sys(), key, op: Op::Set { value, expiry: SetExpiry::None, get: false } };
        // The bytes are stored once per digest: another function (or this
        // one's current version) may have them there already.
        let stored = self.inner.registry.read().expect("registry").values().any(|d| d.meta.digest == digest);
        let mut writes = vec![set(meta_key(name), json)];
        if !stored {
            writes.push(set(component_key(&digest), bytes));
        }
        if let Some(old) = previous.as_ref().filter(|p| p.meta.digest != digest) {
            writes.extend(self.release(&old.meta.digest, name));
        }
        self.inner.store.commit(Vec::new(), writes).await?;
        self.install(meta.clone(), compiled);
        tracing::info!(function = name, version = meta.version, digest = %digest, "deployed");
        Ok(meta)
    }

    /// The bytes of a component that a deployed function runs, by digest
    /// (`None` if no function runs it: the node keeps no other).
    pub async fn component(&self, digest: &str) -> Result<Option<Bytes>, Error> {
        let used = self.inner.registry.read().expect("registry").values().any(|d| d.meta.digest == digest);
        if !used {
            return Ok(None);
        }
        self.sys_get(component_key(digest)).await
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
        // What it leaves in memory goes with it: its logs and statistics
        // (its ready instances go with the last call holding it).
        self.inner.logs.forget(name);
        {
            // Kept while its calls still run: a stopping node waits for them by these counts.
            let mut stats = self.inner.stats.lock().expect("stats");
            if stats
                .get(name)
                .is_some_and(|s| s.running.load(Ordering::Relaxed) + s.queued.load(Ordering::Relaxed) == 0)
            {
                stats.remove(name);
            }
        }
        // Its idempotency records: the first page now, the rest in the
        // background (those a cut-off cleanup leaves expire with their TTL).
        match self.drop_records(name, Some(1), true).await {
            Ok((_, true)) => {}
            Ok((_, false)) => {
                let (this, name) = (self.clone(), name.to_string());
                tokio::spawn(async move {
                    if let Err(e) = this.drop_records(&name, None, false).await {
                        tracing::warn!(function = %name, error = %e, "idempotency records not deleted; they expire");
                    }
                });
            }
            Err(e) => tracing::warn!(function = name, error = %e, "idempotency records not deleted; they expire"),
        }
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
}

/// A size in MiB, with a fraction when it has one (`1 MiB`, `1.5 MiB`).
fn size(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}
