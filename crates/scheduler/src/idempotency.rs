//! Idempotency keys. A call's first success with a key is recorded as
//! `idem:NAME:KEY` in the store's `sys` namespace (its invocation id and
//! output, the component's digest and a hash of the input, with the
//! service's time to live), committed in the same atomic batch as its
//! effects; a later call with the key and the same input, to the same
//! component, gets that answer back instead of running. One with another
//! input, or after another component was deployed under the name, is a
//! mistake: it is refused (`idempotency_mismatch`) and runs nothing. One
//! call per key runs at a time on this node: a duplicate waits for it, then
//! replays its answer (or, if it failed, runs itself).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use squall_store::{Op, SetExpiry, Write};
use tokio::sync::Notify;

use crate::invoke::Remembered;
use crate::registry::Deployed;
use crate::{Error, Functions, Inner, Request, Response, Timing, sys};

fn record_key(name: &str, key: &str) -> Bytes {
    Bytes::from(format!("idem:{name}:{key}"))
}

/// What an idempotency record keeps: the first call's answer, and what it
/// answered (the component, the input).
#[derive(Serialize, Deserialize)]
struct Record {
    invocation_id: String,
    output: Vec<u8>,
    digest: String,
    input_hash: u128,
}

/// A record written before records said what they answered (replayed as
/// it is, as it was then).
#[derive(Deserialize)]
struct RecordV0 {
    invocation_id: String,
    output: Vec<u8>,
}

/// The hash that tells one input from another in a record.
pub(crate) fn input_hash(input: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(input)
}

/// The record a call with an idempotency key leaves once it succeeds.
#[derive(Debug, Clone)]
pub(crate) struct Remember {
    key: Bytes,
    invocation_id: String,
    ttl: Duration,
    digest: String,
    input_hash: u128,
}

impl Remember {
    pub fn new(function: &str, key: &str, invocation_id: &str, ttl: Duration) -> Remember {
        Remember {
            key: record_key(function, key),
            invocation_id: invocation_id.to_string(),
            ttl,
            digest: String::new(),
            input_hash: input_hash(b""),
        }
    }

    /// The record of a call of the component `digest` with `input`.
    pub fn answering(mut self, digest: &str, input: &[u8]) -> Remember {
        digest.clone_into(&mut self.digest);
        self.input_hash = input_hash(input);
        self
    }
}

impl Remembered for Remember {
    /// The record's write, to commit with the call's effects: `output`,
    /// kept until `now_ms` plus the time to live.
    fn writes(&self, output: &[u8], now_ms: u64) -> Result<Vec<Write>, Error> {
        let rec = Record {
            invocation_id: self.invocation_id.clone(),
            output: output.to_vec(),
            digest: self.digest.clone(),
            input_hash: self.input_hash,
        };
        let value = Bytes::from(postcard::to_allocvec(&rec).map_err(|e| Error::Unavailable(e.to_string()))?);
        let at = now_ms + self.ttl.as_millis() as u64;
        Ok(vec![Write {
            ns: sys(),
            key: self.key.clone(),
            op: Op::Set { value, expiry: SetExpiry::At(at), get: false },
        }])
    }
}

/// An idempotency key's call in progress: dropping it lets the duplicates
/// waiting for it look for its answer.
pub(crate) struct InFlight {
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

impl Functions {
    /// Deletes the idempotency records of `name`, a removed function, a page
    /// of 256 at a time, `pages` pages at most (none: all); stops if a
    /// function of that name is deployed again (its records are told apart
    /// by their digest, and expire). How many went, and whether that was all.
    /// `locked`: the caller holds the deploy lock; otherwise each page takes
    /// it, so no deploy of the name comes between the check and the deletes.
    pub(crate) async fn drop_records(
        &self,
        name: &str,
        pages: Option<usize>,
        locked: bool,
    ) -> Result<(usize, bool), Error> {
        let pattern = Bytes::from(format!("idem:{name}:*"));
        let (mut cursor, mut n) = (0, 0);
        for _ in 0..pages.unwrap_or(usize::MAX) {
            let _one_at_a_time = if locked { None } else { Some(self.inner.deploys.lock().await) };
            if self.inner.registry.read().expect("registry").contains_key(name) {
                return Ok((n, true));
            }
            let (next, keys) = self.inner.store.scan(&sys(), cursor, 256, Some(pattern.clone()), None).await?;
            if !keys.is_empty() {
                n += keys.len();
                let writes = keys.into_iter().map(|key| Write { ns: sys(), key, op: Op::Del }).collect();
                self.inner.store.commit(Vec::new(), writes).await?;
            }
            if next == 0 {
                return Ok((n, true));
            }
            cursor = next;
        }
        Ok((n, false))
    }

    /// Runs `req` (a call of `d` with idempotency key `key`) unless a call
    /// with that key has succeeded already: then its answer.
    pub(crate) async fn invoke_idempotent(
        &self,
        d: Arc<Deployed>,
        req: Request,
        key: String,
    ) -> Result<Response, Error> {
        if key.is_empty() || key.len() > 256 {
            return Err(Error::BadRequest("Idempotency-Key must be 1 to 256 bytes".into()));
        }
        let name = d.meta.name.as_str();
        let hash = input_hash(&req.input);
        loop {
            if let Some(r) = self.replay(&d, &key, hash).await? {
                return Ok(r);
            }
            // One call per key runs at a time; a duplicate waits for it, then
            // finds its answer (or, if it failed, runs itself).
            let slot = (name.to_string(), key.clone());
            let waiting = {
                let mut in_flight = self.inner.in_flight.lock().expect("in flight");
                match in_flight.get(&slot) {
                    Some(n) => Some(n.clone()),
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
                    return self.admit_and_run(d.clone(), req.clone(), Some(running), None).await;
                }
            }
        }
    }

    /// The recorded answer for `key`, if a call of `d` with an input of
    /// hash `hash` succeeded with it; an error if the key answered another
    /// request.
    async fn replay(&self, d: &Deployed, key: &str, hash: u128) -> Result<Option<Response>, Error> {
        let name = d.meta.name.as_str();
        let Some(raw) = self.sys_get(record_key(name, key)).await? else {
            return Ok(None);
        };
        let rec = match postcard::from_bytes::<Record>(&raw) {
            Ok(rec) => {
                if rec.digest != d.identity {
                    return Err(Error::IdempotencyMismatch(format!(
                        "Idempotency-Key {key:?} was used with another component (or environment) deployed as {name:?} \
                         (invocation {}); use a new key",
                        rec.invocation_id
                    )));
                }
                if rec.input_hash != hash {
                    return Err(Error::IdempotencyMismatch(format!(
                        "Idempotency-Key {key:?} was used for {name:?} with another input (invocation {}); \
                         use a new key for a new request",
                        rec.invocation_id
                    )));
                }
                rec
            }
            Err(_) => {
                let old: RecordV0 = postcard::from_bytes(&raw).map_err(|e| Error::Unavailable(e.to_string()))?;
                Record { invocation_id: old.invocation_id, output: old.output, digest: String::new(), input_hash: hash }
            }
        };
        Ok(Some(Response {
            invocation_id: rec.invocation_id,
            outcome: Ok(rec.output),
            timing: Timing::default(),
            replayed: true,
            attempts: 0,
        }))
    }
}

/// What a record names of the function that answered: its component's
/// digest, and a digest of its environment values when it has any (every
/// Python function runs the same component, with its code in the
/// environment, so a redeploy of other code is another function).
pub(crate) fn identity(meta: &crate::FunctionMeta) -> String {
    if meta.env.is_empty() {
        return meta.digest.clone();
    }
    let env = serde_json::to_vec(&meta.env).unwrap_or_default();
    format!("{}+env:{}", meta.digest, &squall_runtime::digest(&env)[..32])
}
