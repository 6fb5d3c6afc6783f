//! Triggers: functions run by events. A trigger binds a function to a
//! pub/sub channel (or a pattern of channels), to changes of the keys that
//! match a pattern (set, deleted, expired), or to a cron schedule.
//!
//! Every event is first made durable, then delivered:
//! - **Queued**: an event is a record `trigq:TRIGGER:EVENT` of the `sys`
//!   namespace whose value is the function's input (the JSON envelope,
//!   [`Envelope`]). A PUBLISH queues the events of the channel triggers it
//!   matches before it answers. A cron tick is queued with the trigger's
//!   last tick (`trigcron:TRIGGER`) in one atomic unit, so each tick is
//!   queued once. Key events come from the store's key events and are
//!   queued with the stamp they reach (`trigkeys`) in one unit; a node
//!   that starts again (or that fell behind the events) reads the changes
//!   it may have missed from the window log, from a little before that
//!   stamp, so an acknowledged write's event is queued even after a
//!   `kill -9`.
//! - **Delivered at least once, run once**: the dispatcher (which reads
//!   the queue once when the node starts, then gets each event as it is
//!   queued) invokes the
//!   function with the event's id as the idempotency key
//!   (`trigger:TRIGGER:EVENT`), then drops the record. An event delivered
//!   again (the node died between the two, or it was queued twice) gets
//!   the first run's answer back: the function's effects happen once.
//! - **Retried, then dead**: a failed run is retried with backoff
//!   (`retries` times); then the event and its last error go to the
//!   trigger's dead-letter list (`trigdead:TRIGGER`, a list of JSON
//!   entries) in the unit that drops it from the queue.
//! - **Bounded chains**: a run for an event of depth `d` has depth `d + 1`;
//!   the key events its writes make have that depth. An event deeper than
//!   [`MAX_DEPTH`] is not run: it goes to the dead-letter list at once
//!   (`trigger_depth`), which ends a trigger that fires itself.
//!
//! Triggers are kept as `trigger:ID` records of the `sys` namespace (JSON),
//! so they survive restarts. Events run in no particular order.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use squall_store::events::KeyEvent;
use squall_store::lattice::Timestamp;
use squall_store::{ChangeAt, Op, Reply, Write};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::jobs::json;
use crate::{Error, Functions, Request, sys};

/// Most triggers a node keeps.
pub const MAX_TRIGGERS: usize = 1024;
/// Retries of a failed run unless the trigger says otherwise.
pub const DEFAULT_RETRIES: u32 = 3;
/// Most retries a trigger may ask for.
pub const MAX_RETRIES: u32 = 20;
/// Deepest chain of triggered runs: a run whose writes fire a trigger whose
/// run's writes fire one... stops after this many.
pub const MAX_DEPTH: u32 = 8;
/// Events delivered at once.
const DELIVERIES: usize = 64;
/// How far before the stamp the key events reached a node that starts
/// again reads the window log (a shard's events come in stamp order, the
/// shards' among them only within a commit's hold limit, 10 s).
const KEYS_MARGIN_MS: u64 = 11_000;
/// How often the key events' stamp is written when no event matched.
const CURSOR_EVERY_MS: u64 = 1_000;
/// How often key triggers try again to read the events they missed.
const CATCH_UP_RETRY: Duration = Duration::from_secs(1);
/// The first retry's wait, doubled for each next one, at most [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The key events a trigger can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEventKind {
    /// A write left the key there (SET, HSET, LPUSH, INCR, EXPIRE...).
    Set,
    /// A write removed the key (DEL, or a pop of its last item...).
    Del,
    /// The key's time to live ran out.
    Expired,
}

impl KeyEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEventKind::Set => "set",
            KeyEventKind::Del => "del",
            KeyEventKind::Expired => "expired",
        }
    }

    /// What a key event (as the store names it, after Redis) was.
    fn of(e: &KeyEvent) -> KeyEventKind {
        match e.event {
            "expired" => KeyEventKind::Expired,
            "del" => KeyEventKind::Del,
            _ => KeyEventKind::Set,
        }
    }

    /// What a change read back from the window log was: the same as the
    /// live event of its last write to the key.
    fn of_change(c: &ChangeAt) -> KeyEventKind {
        match (&c.before, &c.after) {
            (_, Some(_)) => KeyEventKind::Set,
            // Removing what reads as not there already: its time ran out.
            (None, None) => KeyEventKind::Expired,
            (Some(b), None) => {
                let ran_out = b.expiry.as_ref().and_then(|e| e.value).is_some_and(|at| at <= c.time.wall_ms());
                if ran_out { KeyEventKind::Expired } else { KeyEventKind::Del }
            }
        }
    }
}

/// What fires a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Messages PUBLISHed to a channel, or to the channels a pattern
    /// matches (one with `*`, `?` or `[`), in the function's namespace.
    Channel { channel: String },
    /// Changes of the keys matching a pattern in the function's namespace;
    /// `events` empty: all of them.
    Keys { pattern: String, events: Vec<KeyEventKind> },
    /// The times a cron expression names (five fields, or six with
    /// seconds first), in UTC.
    Cron { schedule: String },
}

/// A trigger, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Its registry name (`ns/id` outside the default namespace).
    pub id: String,
    /// The function it runs, in its own namespace.
    pub function: String,
    pub source: Source,
    pub retries: u32,
    pub created_ms: u64,
}

impl Trigger {
    /// The function's registry name.
    fn qualified_function(&self) -> String {
        crate::qualify(crate::namespace_of(&self.id), &self.function)
    }

    fn is_channel_pattern(channel: &str) -> bool {
        channel.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
    }
}

/// A trigger as a client describes it: the function, and exactly one of
/// `channel`, `keys` (with `events`) or `cron`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<KeyEventKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadTrigger(msg.into())
}

impl TriggerSpec {
    fn source(&self) -> Result<Source, Error> {
        if !self.events.is_empty() && self.keys.is_none() {
            return Err(bad("\"events\" go with \"keys\": they say which changes of the keys fire the trigger"));
        }
        match (&self.channel, &self.keys, &self.cron) {
            (Some(c), None, None) => {
                if c.is_empty() {
                    return Err(bad("the channel is empty"));
                }
                Ok(Source::Channel { channel: c.clone() })
            }
            (None, Some(p), None) => {
                if p.is_empty() {
                    return Err(bad("the key pattern is empty (\"*\" matches every key)"));
                }
                let mut events = self.events.clone();
                events.sort_by_key(|e| e.as_str());
                events.dedup();
                Ok(Source::Keys { pattern: p.clone(), events })
            }
            (None, None, Some(s)) => {
                schedule(s)?;
                Ok(Source::Cron { schedule: s.clone() })
            }
            _ => Err(bad("a trigger needs exactly one of \"channel\", \"keys\" or \"cron\"")),
        }
    }

    /// A name for a trigger of this spec: its function's and a hash of what
    /// fires it, so adding the same trigger twice names the same one.
    pub fn default_id(&self) -> String {
        let what = serde_json::to_vec(&(&self.channel, &self.keys, &self.events, &self.cron)).unwrap_or_default();
        let mut f: String = self.function.chars().take(55).collect();
        f.push_str(&format!("-{:08x}", xxhash_rust::xxh3::xxh3_64(&what) as u32));
        f
    }
}

fn schedule(s: &str) -> Result<croner::Cron, Error> {
    croner::Cron::from_str(s).map_err(|e| {
        bad(format!(
            "bad cron schedule {s:?}: {e} (five fields \"MIN HOUR DAY MONTH WEEKDAY\" such as \"*/5 * * * *\", or six with seconds first)"
        ))
    })
}

/// The function's input: what happened, as JSON. Fields that do not apply
/// to the trigger's kind are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The trigger's id (in its namespace).
    pub trigger: String,
    /// The event's id, unique for the trigger: the idempotency key's end.
    pub id: String,
    /// `message`, `key` or `cron`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The pattern that matched the channel, for a pattern trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The message: a string if it is UTF-8, else an array of byte values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<serde_json::Value>,
    /// The key: a string if it is UTF-8, else an array of byte values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<serde_json::Value>,
    /// `set`, `del` or `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// When it happened (a cron tick: the time it names), RFC 3339.
    pub time: String,
    pub time_ms: u64,
    /// The HLC stamp of the write that made a key event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    /// How many triggered runs led to it (0: none did).
    pub depth: u32,
}

fn bytes_value(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::from(b.to_vec()),
    }
}

/// A dead-letter entry: an event whose runs all failed, or that went too deep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event: serde_json::Value,
    pub code: String,
    pub message: String,
    pub attempts: u32,
    pub time_ms: u64,
}

fn trigger_key(id: &str) -> Bytes {
    Bytes::from(format!("trigger:{id}"))
}
fn queue_key(id: &str, event: &str) -> Bytes {
    Bytes::from(format!("trigq:{id}:{event}"))
}
fn dead_key(id: &str) -> Bytes {
    Bytes::from(format!("trigdead:{id}"))
}
fn cron_key(id: &str) -> Bytes {
    Bytes::from(format!("trigcron:{id}"))
}
const KEYS_CURSOR: &[u8] = b"trigkeys";

/// A register of the `sys` namespace.
fn set(key: Bytes, value: Vec<u8>) -> Write {
    crate::jobs::set(sys(), key, value)
}

/// One change of a key, live or read back from the window log.
#[derive(Clone, Copy)]
struct KeyChange<'a> {
    ns: &'a Bytes,
    key: &'a Bytes,
    kind: KeyEventKind,
    stamp: Timestamp,
    /// The invocation that made it.
    origin: Option<&'a Bytes>,
}

/// The triggers of a node, and the tasks that serve them.
pub(crate) struct State {
    all: RwLock<HashMap<String, Arc<Trigger>>>,
    /// Wakes the loops when triggers come or go.
    changed: watch::Sender<u64>,
    /// The events queued since the start, for the dispatcher (which reads
    /// those queued before from the store).
    queued: mpsc::UnboundedSender<Bytes>,
    queued_rx: Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>,
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    /// The depth of the triggered invocations that ran lately, by id: the
    /// key events their writes make are one deeper; and the size at which
    /// it is pruned next (twice what pruning left, so pruning is amortised).
    depths: Mutex<(Depths, usize)>,
    /// Makes message event ids unique within a millisecond, and (its
    /// start, random) across restarts, even if the clock went back.
    seq: AtomicU64,
    pub(crate) stats: Stats,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
}

impl Default for State {
    fn default() -> Self {
        let (queued, queued_rx) = mpsc::unbounded_channel();
        State {
            all: RwLock::new(HashMap::new()),
            changed: watch::channel(0).0,
            queued,
            queued_rx: Mutex::new(Some(queued_rx)),
            stop: watch::channel(false).0,
            tasks: tokio::sync::Mutex::new(JoinSet::new()),
            depths: Mutex::new((HashMap::new(), DEPTHS_PRUNED_AT)),
            seq: AtomicU64::new({
                use std::hash::{BuildHasher, Hasher};
                std::collections::hash_map::RandomState::new().build_hasher().finish() >> 16 << 16
            }),
            stats: Stats::default(),
        }
    }
}

/// Dead letters a trigger keeps (the oldest go first).
const DEAD_KEPT: usize = 10_000;

/// How soon the dispatcher reads the whole queue again after a delivery
/// that could not finish.
const RESCAN: Duration = Duration::from_secs(30);

/// An event being delivered, in the dispatcher's set until it is dropped;
/// a delivery that did not finish (or panicked) has the queue read again.
struct Taken {
    set: Arc<Mutex<HashSet<Bytes>>>,
    key: Bytes,
    behind: Arc<AtomicBool>,
    finished: bool,
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
        if !self.finished {
            self.behind.store(true, Ordering::Relaxed);
        }
    }
}

/// Invocation id → (depth, when it ran, ms).
type Depths = HashMap<String, (u32, u64)>;

/// The depths map's size at which it is first pruned.
const DEPTHS_PRUNED_AT: usize = 4096;

/// How long a finished invocation's depth is kept for its key events.
const DEPTH_KEPT_MS: u64 = 60_000;

impl State {
    fn list(&self) -> Vec<Arc<Trigger>> {
        self.all.read().expect("triggers").values().cloned().collect()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Notes that invocation `id` runs for an event `depth - 1` deep.
    pub(crate) fn note_depth(&self, id: &str, depth: u32, now_ms: u64) {
        let mut guard = self.depths.lock().expect("depths");
        let (d, prune_at) = &mut *guard;
        if d.len() >= *prune_at {
            d.retain(|_, (_, at)| at.saturating_add(DEPTH_KEPT_MS) > now_ms);
            *prune_at = (d.len() * 2).max(DEPTHS_PRUNED_AT);
        }
        d.insert(id.to_string(), (depth, now_ms));
    }

    fn depth_of(&self, origin: Option<&Bytes>) -> u32 {
        let Some(o) = origin.and_then(|o| std::str::from_utf8(o).ok()) else { return 0 };
        self.depths.lock().expect("depths").0.get(o).map_or(0, |(d, _)| *d)
    }
}

impl Functions {
    /// Loads the triggers and starts serving them: their queued events,
    /// key events, messages and schedules.
    pub(crate) async fn start_triggers(&self) -> Result<(), Error> {
        for (key, raw) in self.sys_records(b"trigger:*").await? {
            match serde_json::from_slice::<Trigger>(&raw) {
                Ok(t) => {
                    self.inner.triggers.all.write().expect("triggers").insert(t.id.clone(), Arc::new(t));
                }
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "unreadable trigger record")
                }
            }
        }
        let mut tasks = self.inner.triggers.tasks.lock().await;
        tasks.spawn(self.clone().dispatch());
        tasks.spawn(self.clone().key_events());
        tasks.spawn(self.clone().schedules());
        Ok(())
    }

    /// Stops the triggers' tasks (a node that stops): runs already started
    /// end first, for at most `limit`. Queued events stay queued.
    pub(crate) async fn stop_triggers(&self, limit: Duration) -> bool {
        self.inner.triggers.stop.send_replace(true);
        let mut tasks = self.inner.triggers.tasks.lock().await;
        tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await.is_ok()
    }

    /// Adds (or replaces) trigger `id`; true if it is new.
    pub async fn put_trigger(&self, id: &str, spec: TriggerSpec) -> Result<(Trigger, bool), Error> {
        crate::registry::check_qualified(id)?;
        crate::check_name(&spec.function)?;
        let source = spec.source()?;
        let retries = spec.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > MAX_RETRIES {
            return Err(bad(format!("at most {MAX_RETRIES} retries")));
        }
        let ns = crate::namespace_of(id);
        self.get(&crate::qualify(ns, &spec.function)).map_err(|_| Error::NotFound(spec.function.clone()))?;
        let state = &self.inner.triggers;
        {
            let all = state.all.read().expect("triggers");
            if all.len() >= MAX_TRIGGERS && !all.contains_key(id) {
                return Err(bad(format!("this node has {MAX_TRIGGERS} triggers, the most it keeps")));
            }
        }
        let t = Trigger {
            id: id.to_string(),
            function: spec.function,
            source,
            retries,
            created_ms: self.inner.store.now_ms(),
        };
        self.commit_writes(vec![set(trigger_key(id), json(&t)?)]).await?;
        let new = state.all.write().expect("triggers").insert(id.to_string(), Arc::new(t.clone())).is_none();
        state.bump();
        Ok((t, new))
    }

    pub fn trigger(&self, id: &str) -> Result<Arc<Trigger>, Error> {
        self.inner
            .triggers
            .all
            .read()
            .expect("triggers")
            .get(id)
            .cloned()
            .ok_or_else(|| Error::TriggerNotFound(id.into()))
    }

    /// Every trigger, by id.
    pub fn triggers(&self) -> Vec<Arc<Trigger>> {
        let mut all = self.inner.triggers.list();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Removes trigger `id` with its dead letters and schedule; its queued
    /// events are dropped as the dispatcher finds them.
    pub async fn remove_trigger(&self, id: &str) -> Result<Arc<Trigger>, Error> {
        let t = self.trigger(id)?;
        let del = |key| Write { ns: sys(), key, op: Op::Del };
        self.commit_writes(vec![del(trigger_key(id)), del(dead_key(id)), del(cron_key(id))]).await?;
        self.inner.triggers.all.write().expect("triggers").remove(id);
        self.inner.triggers.bump();
        Ok(t)
    }

    /// Trigger `id`'s dead letters from `from` on, `limit` at most; and how many it has.
    pub async fn dead_letters(&self, id: &str, from: u64, limit: u64) -> Result<(Vec<DeadLetter>, u64), Error> {
        self.trigger(id)?;
        let total = match self.inner.store.exec(&sys(), dead_key(id), Op::LLen).await? {
            Ok(Reply::Int(n)) => n as u64,
            _ => 0,
        };
        if limit == 0 || from >= total {
            return Ok((Vec::new(), total));
        }
        let stop = from.saturating_add(limit - 1).min(i64::MAX as u64) as i64;
        let items = match self.inner.store.exec(&sys(), dead_key(id), Op::LRange(from as i64, stop)).await? {
            Ok(Reply::List(items)) => items,
            _ => Vec::new(),
        };
        let letters = items.iter().filter_map(|raw| serde_json::from_slice(raw).ok()).collect();
        Ok((letters, total))
    }

    pub fn trigger_stats(&self) -> &Stats {
        &self.inner.triggers.stats
    }

    /// A PUBLISH of `message` to `channel` in store namespace `ns`: queues
    /// an event for each channel trigger it fires (durably, before the
    /// PUBLISH answers); how many it queued.
    pub async fn published(&self, ns: &[u8], channel: &[u8], message: &[u8]) -> Result<usize, Error> {
        let state = &self.inner.triggers;
        let fired: Vec<Arc<Trigger>> = state
            .list()
            .into_iter()
            .filter(|t| match &t.source {
                Source::Channel { channel: c } => {
                    self.store_ns(&t.qualified_function()) == ns
                        && if Trigger::is_channel_pattern(c) {
                            squall_store::glob_matches(c.as_bytes(), channel)
                        } else {
                            c.as_bytes() == channel
                        }
                }
                _ => false,
            })
            .collect();
        if fired.is_empty() {
            return Ok(0);
        }
        let now = self.inner.store.now_ms();
        let seq = state.seq.fetch_add(1, Ordering::Relaxed);
        let mut writes = Vec::with_capacity(fired.len());
        for t in &fired {
            let Source::Channel { channel: c } = &t.source else { continue };
            let id = format!("m{now:012x}-{seq:x}");
            let e = Envelope {
                trigger: crate::bare_name(&t.id).to_string(),
                kind: "message".into(),
                channel: Some(String::from_utf8_lossy(channel).into_owned()),
                pattern: Trigger::is_channel_pattern(c).then(|| c.clone()),
                message: Some(bytes_value(message)),
                ..self.envelope(id.clone(), now, None, 0)
            };
            writes.push(set(queue_key(&t.id, &id), json(&e)?));
        }
        self.queue(writes).await?;
        Ok(fired.len())
    }

    fn envelope(&self, id: String, time_ms: u64, stamp: Option<Timestamp>, depth: u32) -> Envelope {
        Envelope {
            trigger: String::new(),
            id,
            kind: String::new(),
            channel: None,
            pattern: None,
            message: None,
            key: None,
            event: None,
            time: squall_store::rfc3339(Timestamp::new(time_ms, 0)),
            time_ms,
            stamp: stamp.map(|s| s.to_string()),
            depth,
        }
    }

    /// Commits `writes` and hands the events among them to the dispatcher.
    async fn queue(&self, writes: Vec<Write>) -> Result<(), Error> {
        let events: Vec<Bytes> =
            writes.iter().filter(|w| w.key.starts_with(b"trigq:")).map(|w| w.key.clone()).collect();
        self.commit_writes(writes).await?;
        let state = &self.inner.triggers;
        state.stats.queued.fetch_add(events.len() as u64, Ordering::Relaxed);
        for key in events {
            // No dispatcher (the node stops): the event runs after the next start.
            let _ = state.queued.send(key);
        }
        Ok(())
    }

    /// Delivers the queued events, [`DELIVERIES`] at once, until the node stops.
    async fn dispatch(self) {
        let state = &self.inner.triggers;
        let mut stop = state.stop.subscribe();
        let Some(mut queued) = state.queued_rx.lock().expect("queue").take() else { return };
        let permits = Arc::new(Semaphore::new(DELIVERIES));
        let taken: Arc<Mutex<HashSet<Bytes>>> = Arc::default();
        let mut runs = JoinSet::new();
        // What was queued before the node started, then what is queued as
        // it comes; and the whole queue again after a delivery could not
        // finish (the store refused a read or a write): its event is still
        // there, and runs again.
        let behind = Arc::new(AtomicBool::new(false));
        let (found, whole) = self.queued_events().await;
        behind.store(!whole, Ordering::Relaxed);
        let mut found = found.into_iter();
        let mut rescan = tokio::time::interval(RESCAN);
        rescan.tick().await;
        loop {
            let key = match found.next() {
                Some(key) => key,
                None => {
                    let next = tokio::select! {
                        k = queued.recv() => match k { Some(k) => Some(k), None => break },
                        _ = rescan.tick(), if behind.load(Ordering::Relaxed) => None,
                        _ = stop.wait_for(|s| *s) => break,
                    };
                    match next {
                        Some(key) => key,
                        None => {
                            behind.store(false, Ordering::Relaxed);
                            let (again, whole) = self.queued_events().await;
                            behind.fetch_or(!whole, Ordering::Relaxed);
                            found = again.into_iter();
                            continue;
                        }
                    }
                }
            };
            if !taken.lock().expect("taken").insert(key.clone()) {
                continue;
            }
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("never closed"),
                _ = stop.wait_for(|s| *s) => break,
            };
            let (this, taken, permits, behind) = (self.clone(), taken.clone(), permits.clone(), behind.clone());
            runs.spawn(async move {
                // Given back however the delivery ends, a panic included.
                let mut taken = Taken { set: taken, key: key.clone(), behind, finished: false };
                taken.finished = this.deliver_event(&key, &permits, permit).await;
            });
            while runs.try_join_next().is_some() {}
        }
        while runs.join_next().await.is_some() {}
    }

    /// The keys of the events in the queue, a page at a time, and whether
    /// that is all of them (the store answered every page).
    async fn queued_events(&self) -> (Vec<Bytes>, bool) {
        let (mut cursor, mut found) = (0, Vec::new());
        loop {
            let page = self.inner.store.scan(&sys(), cursor, 256, Some(Bytes::from_static(b"trigq:*")), None).await;
            match page {
                Ok((next, keys)) => {
                    found.extend(keys);
                    if next == 0 {
                        return (found, true);
                    }
                    cursor = next;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the trigger queue could not be read: read again in {RESCAN:?}");
                    return (found, false);
                }
            }
        }
    }

    /// Runs one queued event's function (again after failures, with
    /// backoff, its delivery slot given back while it waits), then drops
    /// the event, to the dead letters if it failed. A function that is
    /// busy or over its quota is waited for: that is not its failure.
    /// Whether it is done with the event (false: the store refused a read
    /// or a write, and the event is still queued).
    async fn deliver_event(&self, key: &Bytes, permits: &Arc<Semaphore>, mut permit: OwnedSemaphorePermit) -> bool {
        let state = &self.inner.triggers;
        let input = match self.sys_get(key.clone()).await {
            Ok(Some(input)) => input,
            // Delivered already.
            Ok(None) => return true,
            Err(_) => return false,
        };
        let Some((id, event)) = std::str::from_utf8(&key[b"trigq:".len()..]).ok().and_then(|k| k.rsplit_once(':'))
        else {
            return true;
        };
        let del = || Write { ns: sys(), key: key.clone(), op: Op::Del };
        let drop_event = || async { self.commit_writes(vec![del()]).await.is_ok() };
        let Ok(t) = self.trigger(id) else {
            // Its trigger was removed.
            return drop_event().await;
        };
        let depth = serde_json::from_slice::<Envelope>(&input).map_or(0, |e| e.depth);
        let mut stop = state.stop.subscribe();
        let (mut code, mut message, mut attempts) = (String::new(), String::new(), 0);
        if depth > MAX_DEPTH {
            code = "trigger_depth".into();
            message = format!("{depth} triggered runs led to this event, more than {MAX_DEPTH}: it is not run");
        } else {
            let mut attempt = 0;
            while attempt <= t.retries {
                if *stop.borrow() {
                    return true;
                }
                if self.trigger(id).is_err() {
                    // Removed meanwhile: its events go with it.
                    return drop_event().await;
                }
                attempt += 1;
                attempts = attempt;
                let req = Request {
                    input: input.to_vec(),
                    idempotency_key: Some(format!("trigger:{id}:{event}")),
                    attempt,
                    trigger_depth: depth + 1,
                    ..Request::default()
                };
                match self.invoke(&t.qualified_function(), req).await {
                    Ok(r) => match r.outcome {
                        Ok(_) => {
                            let dropped = drop_event().await;
                            if dropped {
                                state.stats.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                            return dropped;
                        }
                        Err(f) => (code, message) = (f.code.as_str().to_string(), f.message),
                    },
                    // The event ran already (and was queued again, from the
                    // window log, with a depth that is not known any more).
                    Err(Error::IdempotencyMismatch(_)) => return drop_event().await,
                    // Busy or over quota: not the function's failure, so
                    // waited for without using a retry.
                    Err(e @ (Error::Busy { .. } | Error::Quota(_))) => {
                        attempt -= 1;
                        let pause = match e {
                            Error::Busy { retry_after, .. } => retry_after.clamp(Duration::from_millis(10), BACKOFF),
                            _ => Duration::from_millis(20),
                        };
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stop.wait_for(|s| *s) => return true,
                        }
                        continue;
                    }
                    Err(e) => (code, message) = (e.code().to_string(), e.to_string()),
                }
                if attempt <= t.retries {
                    state.stats.retried.fetch_add(1, Ordering::Relaxed);
                    let wait = BACKOFF.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF);
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return true,
                    }
                    permit = tokio::select! {
                        p = permits.clone().acquire_owned() => p.expect("never closed"),
                        _ = stop.wait_for(|s| *s) => return true,
                    };
                }
            }
        }
        let envelope = serde_json::from_slice(&input).unwrap_or_else(|_| bytes_value(&input));
        let letter = DeadLetter { event: envelope, code, message, attempts, time_ms: self.inner.store.now_ms() };
        let Ok(letter) = json(&letter) else { return false };
        let push = Write {
            ns: sys(),
            key: dead_key(id),
            op: Op::Push { head: false, items: vec![letter.into()], existing: false },
        };
        // The newest DEAD_KEPT only.
        let trim = Write { ns: sys(), key: dead_key(id), op: Op::LTrim(-(DEAD_KEPT as i64), -1) };
        match self.commit_writes(vec![push, trim, del()]).await {
            Ok(()) => {
                state.stats.dead.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(trigger = id, event, "a trigger's event went to its dead letters");
                true
            }
            Err(e) => {
                tracing::warn!(trigger = id, event, error = %e, "a failed event stays queued");
                false
            }
        }
    }

    /// The key triggers, by the store namespace they watch.
    fn key_triggers(&self) -> HashMap<Bytes, Vec<Arc<Trigger>>> {
        let mut by_ns: HashMap<Bytes, Vec<Arc<Trigger>>> = HashMap::new();
        for t in self.inner.triggers.list() {
            if matches!(t.source, Source::Keys { .. }) {
                by_ns.entry(self.store_ns(&t.qualified_function())).or_default().push(t);
            }
        }
        by_ns
    }

    /// The events of key triggers that one change fires.
    fn key_event_writes(
        &self,
        by_ns: &HashMap<Bytes, Vec<Arc<Trigger>>>,
        c: KeyChange<'_>,
        out: &mut Vec<Write>,
    ) -> Result<(), Error> {
        let KeyChange { ns, key, kind, stamp, origin } = c;
        let Some(triggers) = by_ns.get(ns) else { return Ok(()) };
        let mut depth = None;
        for t in triggers {
            let Source::Keys { pattern, events } = &t.source else { continue };
            // The window log reaches back before a trigger that is new.
            if stamp.wall_ms() < t.created_ms {
                continue;
            }
            if !(events.is_empty() || events.contains(&kind)) || !squall_store::glob_matches(pattern.as_bytes(), key) {
                continue;
            }
            let depth = *depth.get_or_insert_with(|| self.inner.triggers.depth_of(origin));
            let hash = xxhash_rust::xxh3::xxh3_64(key);
            let id = format!("k{:016x}-{hash:016x}-{}", stamp.0, kind.as_str());
            let e = Envelope {
                trigger: crate::bare_name(&t.id).to_string(),
                kind: "key".into(),
                key: Some(bytes_value(key)),
                event: Some(kind.as_str().into()),
                ..self.envelope(id.clone(), stamp.wall_ms(), Some(stamp), depth)
            };
            out.push(set(queue_key(&t.id, &id), json(&e)?));
        }
        Ok(())
    }

    /// The key events' stamp, as last queued.
    async fn keys_cursor(&self) -> Option<Timestamp> {
        let raw = self.sys_get(Bytes::from_static(KEYS_CURSOR)).await.ok()??;
        std::str::from_utf8(&raw).ok()?.parse().ok().map(Timestamp)
    }

    /// Queues the events of the changes stamped after `from` (less the
    /// margin) that the window log holds: those a node that stopped, or
    /// fell behind, may not have queued. Moves the cursor only if all of
    /// them were queued; whether they were (if not, try again later).
    async fn catch_up_keys(&self, by_ns: &HashMap<Bytes, Vec<Arc<Trigger>>>, from: Timestamp) -> bool {
        let store = &self.inner.store;
        let mut from = Timestamp::new(from.wall_ms().saturating_sub(KEYS_MARGIN_MS), 0);
        if from < store.window_oldest() {
            tracing::warn!(
                "key triggers: the window log no longer holds every change since the last run; the events of the older ones are lost"
            );
            from = store.window_oldest();
        }
        let to = Timestamp::new(store.now_ms() + 1, 0);
        let mut newest = Timestamp::new(from.wall_ms() + KEYS_MARGIN_MS, 0);
        let mut queued = 0;
        for ns in by_ns.keys() {
            let mut at = from;
            while at < to {
                let (changes, upto) = match store.changes(ns, at, to, None, 1024).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "key triggers: the changes since the last run could not be read; trying again");
                        return false;
                    }
                };
                let mut writes = Vec::new();
                for c in &changes {
                    let kind = KeyEventKind::of_change(c);
                    if let Err(e) = self.key_event_writes(
                        by_ns,
                        KeyChange { ns, key: &c.key, kind, stamp: c.time, origin: c.origin.as_ref() },
                        &mut writes,
                    ) {
                        tracing::warn!(error = %e, "a key trigger's event could not be made");
                    }
                    newest = newest.max(c.time);
                }
                let n = writes.len();
                if n > 0
                    && let Err(e) = self.queue(writes).await
                {
                    tracing::warn!(error = %e, "key triggers: events not queued; trying again");
                    return false;
                }
                queued += n;
                if upto <= at {
                    break;
                }
                at = upto;
            }
        }
        let cursor = set(Bytes::from_static(KEYS_CURSOR), newest.0.to_string().into_bytes());
        if self.commit_writes(vec![cursor]).await.is_err() {
            return false;
        }
        if queued > 0 {
            tracing::info!(
                events = queued,
                "key triggers: events read again from the window log and queued (run once)"
            );
        }
        true
    }

    /// Queues the events of the key triggers, from the store's key events,
    /// while there are key triggers; until the node stops.
    async fn key_events(self) {
        let state = &self.inner.triggers;
        let mut stop = state.stop.subscribe();
        let mut changed = state.changed.subscribe();
        let mut cursor = self.keys_cursor().await;
        loop {
            let mut by_ns = self.key_triggers();
            if by_ns.is_empty() {
                tokio::select! {
                    _ = changed.changed() => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            // Listen first, then read what was missed: nothing falls between.
            let mut listener = self.inner.store.key_events();
            // Events missed (a lag, a failed read) not yet queued again,
            // and when to try reading them again (at most once a second,
            // however many events come meanwhile).
            let mut behind = false;
            let mut retry_at = tokio::time::Instant::now() + CATCH_UP_RETRY;
            match cursor {
                Some(c) => behind = !self.catch_up_keys(&by_ns, c).await,
                // The first key trigger: its events count from now.
                None => {
                    let now = Timestamp::new(self.inner.store.now_ms(), 0);
                    let write = set(Bytes::from_static(KEYS_CURSOR), now.0.to_string().into_bytes());
                    if self.commit_writes(vec![write]).await.is_ok() {
                        cursor = Some(now);
                    }
                }
            }
            let mut written_ms = 0;
            loop {
                let retry = async {
                    if behind { tokio::time::sleep_until(retry_at).await } else { std::future::pending().await }
                };
                let woke = tokio::select! {
                    e = listener.next() => Some(e),
                    () = retry => None,
                    _ = changed.changed() => {
                        by_ns = self.key_triggers();
                        if by_ns.is_empty() { break }
                        continue;
                    }
                    _ = stop.wait_for(|s| *s) => return,
                };
                let Some(first) = woke else {
                    behind = !self.catch_up_keys(&by_ns, cursor.unwrap_or(Timestamp::ZERO)).await;
                    retry_at = tokio::time::Instant::now() + CATCH_UP_RETRY;
                    continue;
                };
                let Some(first) = first else { return };
                // What is there already, as one unit: the last event of a
                // unit on a key says what it did.
                let mut batch: Vec<KeyEvent> = Vec::new();
                let mut lagged = false;
                for e in std::iter::once(first).chain(std::iter::from_fn(|| listener.try_next())).take(4096) {
                    match e {
                        Ok(e) => {
                            if let Some(last) = batch.last_mut()
                                && last.stamp == e.stamp
                                && last.key == e.key
                                && last.ns == e.ns
                            {
                                *last = e;
                            } else {
                                batch.push(e);
                            }
                        }
                        Err(_) => lagged = true,
                    }
                }
                let mut writes = Vec::new();
                let mut newest = cursor.unwrap_or(Timestamp::ZERO);
                for e in &batch {
                    newest = newest.max(e.stamp);
                    let kind = KeyEventKind::of(e);
                    if let Err(err) = self.key_event_writes(
                        &by_ns,
                        KeyChange { ns: &e.ns, key: &e.key, kind, stamp: e.stamp, origin: e.origin.as_ref() },
                        &mut writes,
                    ) {
                        tracing::warn!(error = %err, "a key trigger's event could not be made");
                    }
                }
                let n = writes.len();
                let now = self.inner.store.now_ms();
                // Behind, the cursor stays where the events missed begin.
                let moves = !lagged && !behind;
                if moves && (n > 0 || now >= written_ms + CURSOR_EVERY_MS) {
                    writes.push(set(Bytes::from_static(KEYS_CURSOR), newest.0.to_string().into_bytes()));
                }
                if !writes.is_empty() {
                    match self.queue(writes).await {
                        Ok(()) if moves => {
                            cursor = Some(newest);
                            written_ms = now;
                        }
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "key triggers: events not queued; reading them again from the window log");
                            lagged = true;
                        }
                    }
                }
                // A new lag is read again at once, unless a retry is due later.
                if lagged && !behind {
                    retry_at = tokio::time::Instant::now();
                }
                behind |= lagged;
                if behind && tokio::time::Instant::now() >= retry_at {
                    behind = !self.catch_up_keys(&by_ns, cursor.unwrap_or(Timestamp::ZERO)).await;
                    retry_at = tokio::time::Instant::now() + CATCH_UP_RETRY;
                }
            }
        }
    }

    /// Queues the cron triggers' ticks as they come, until the node stops.
    /// A tick missed while the node was down is queued when it starts
    /// (the latest one only).
    async fn schedules(self) {
        let state = &self.inner.triggers;
        let mut stop = state.stop.subscribe();
        let mut changed = state.changed.subscribe();
        let mut last: HashMap<String, u64> = HashMap::new();
        loop {
            let now = self.inner.store.now_ms();
            let mut sleep_ms: u64 = 60_000;
            for t in state.list() {
                let Source::Cron { schedule: s } = &t.source else { continue };
                let Ok(cron) = schedule(s) else { continue };
                let since = match last.get(&t.id) {
                    Some(ms) => *ms,
                    None => {
                        let kept = self.sys_get(cron_key(&t.id)).await.ok().flatten();
                        let kept = kept.and_then(|raw| std::str::from_utf8(&raw).ok()?.parse().ok());
                        *last.entry(t.id.clone()).or_insert(kept.unwrap_or(t.created_ms))
                    }
                };
                let Some(due) = latest_tick(&cron, since, now) else {
                    if let Some(next) = next_tick(&cron, now) {
                        sleep_ms = sleep_ms.min(next.saturating_sub(now));
                    }
                    continue;
                };
                let id = format!("c{due:013}");
                let e = Envelope {
                    trigger: crate::bare_name(&t.id).to_string(),
                    kind: "cron".into(),
                    ..self.envelope(id.clone(), due, None, 0)
                };
                let writes = match json(&e) {
                    Ok(e) => vec![set(queue_key(&t.id, &id), e), set(cron_key(&t.id), due.to_string().into_bytes())],
                    Err(_) => continue,
                };
                match self.queue(writes).await {
                    Ok(()) => {
                        last.insert(t.id.clone(), due);
                        // Its next tick is looked for at once.
                        sleep_ms = 0;
                    }
                    Err(e) => {
                        tracing::warn!(trigger = %t.id, error = %e, "a cron tick could not be queued; trying again in a second");
                        sleep_ms = sleep_ms.min(1000);
                    }
                }
            }
            last.retain(|id, _| state.all.read().expect("triggers").contains_key(id));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms.clamp(1, 60_000))) => {}
                _ = changed.changed() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

fn utc(ms: u64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
}

/// The schedule's first time after `ms`.
fn next_tick(cron: &croner::Cron, ms: u64) -> Option<u64> {
    let t = cron.find_next_occurrence(&utc(ms)?, false).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

/// The schedule's latest time in `(since, now]`, if there is one.
fn latest_tick(cron: &croner::Cron, since: u64, now: u64) -> Option<u64> {
    let t = cron.find_previous_occurrence(&utc(now)?, true).ok()?;
    let t = u64::try_from(t.timestamp_millis()).ok()?;
    (t > since).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_one_source() {
        let spec = |json: &str| serde_json::from_str::<TriggerSpec>(json).unwrap().source();
        assert_eq!(spec(r#"{"function":"f","channel":"news"}"#).unwrap(), Source::Channel { channel: "news".into() });
        assert_eq!(
            spec(r#"{"function":"f","keys":"user:*","events":["del","set","del"]}"#).unwrap(),
            Source::Keys { pattern: "user:*".into(), events: vec![KeyEventKind::Del, KeyEventKind::Set] }
        );
        for bad in [
            r#"{"function":"f"}"#,
            r#"{"function":"f","channel":"a","cron":"* * * * *"}"#,
            r#"{"function":"f","channel":"a","events":["set"]}"#,
            r#"{"function":"f","cron":"every minute"}"#,
            r#"{"function":"f","keys":""}"#,
        ] {
            assert!(matches!(spec(bad), Err(Error::BadTrigger(_))), "{bad}");
        }
        assert!(serde_json::from_str::<TriggerSpec>(r#"{"function":"f","chanel":"a"}"#).is_err());
    }

    #[test]
    fn the_same_spec_gets_the_same_default_id() {
        let a = TriggerSpec { function: "f".into(), channel: Some("a".into()), ..TriggerSpec::default() };
        let b = TriggerSpec { function: "f".into(), channel: Some("b".into()), ..TriggerSpec::default() };
        assert_eq!(a.default_id(), a.clone().default_id());
        assert_ne!(a.default_id(), b.default_id());
        assert!(crate::namespace::is_word(&a.default_id()));
    }

    #[test]
    fn ticks_come_from_the_schedule() {
        // 2026-01-01T00:00:00Z
        let t0 = 1_767_225_600_000;
        let every5 = schedule("*/5 * * * *").unwrap();
        assert_eq!(next_tick(&every5, t0), Some(t0 + 300_000));
        assert_eq!(latest_tick(&every5, t0 - 1, t0 + 299_999), Some(t0));
        assert_eq!(latest_tick(&every5, t0, t0 + 299_999), None);
        // Ten minutes missed: only the latest tick is due.
        assert_eq!(latest_tick(&every5, t0, t0 + 600_001), Some(t0 + 600_000));
        let seconds = schedule("*/2 * * * * *").unwrap();
        assert_eq!(next_tick(&seconds, t0 + 500), Some(t0 + 2_000));
    }

    #[test]
    fn a_change_reads_as_its_live_event() {
        use squall_store::lattice::{Entry, Lww, Stamp, Value};
        let at = Timestamp::new(10_000, 0);
        let entry = |expiry: Option<u64>| {
            let mut e = Entry::new(Stamp::new(Timestamp::new(1, 0), 1), Value::Counter(Default::default()));
            e.expiry = expiry.map(|ms| Lww::new(Stamp::new(Timestamp::new(1, 0), 1), Some(ms)));
            e
        };
        let change = |before, after| ChangeAt { time: at, key: Bytes::from_static(b"k"), before, after, origin: None };
        assert_eq!(KeyEventKind::of_change(&change(None, Some(entry(None)))), KeyEventKind::Set);
        assert_eq!(KeyEventKind::of_change(&change(Some(entry(None)), None)), KeyEventKind::Del);
        assert_eq!(KeyEventKind::of_change(&change(Some(entry(Some(9_000))), None)), KeyEventKind::Expired);
        assert_eq!(KeyEventKind::of_change(&change(Some(entry(Some(20_000))), None)), KeyEventKind::Del);
        assert_eq!(KeyEventKind::of_change(&change(None, None)), KeyEventKind::Expired);
    }
}
