//! The store: a shared-nothing, sharded lattice key-value store with every
//! key in memory and a durable log on disk.
//!
//! Each shard is one OS thread that owns the keys hashing to it and runs a
//! single-threaded tokio runtime. Nobody else touches a shard's state: it is
//! reached only by the typed messages of [`protocol`] ([`Handle`] sends
//! them), answered in place when the sender is already on that shard's
//! thread and through its mailbox otherwise. Network front ends place each
//! connection on a shard thread ([`Handle::spawn_on`]), so a request for a
//! key the shard owns costs no thread hop.
//!
//! **Time and order.** Each shard stamps writes with its own hybrid logical
//! clock; messages carry their sender's time, so a write stamps after
//! everything its sender saw, and a node-wide floor (raised when a write is
//! acknowledged) makes a write that starts after another was acknowledged
//! stamp after it. One atomic unit (a MULTI/EXEC, an MSET, an invocation's
//! writes) carries one stamp; on every key, stamp order is apply order.
//!
//! **Atomic units.** On one shard: one [`Request::Batch`], applied in one
//! step. Across shards: the coordinator (the caller's task, through
//! [`Handle`]) prepares each part in shard order, each shard checking the
//! unit's reads, holding its keys and proposing a stamp; then it commits
//! every part at the largest proposal, or aborts. No shard thread ever waits
//! for another; requests for held keys wait in line. Readers never see part
//! of a unit.
//!
//! Durability: see [`disk`](crate::disk). The store knows nothing of
//! functions, HTTP or RESP, and never exits the process.

mod disk;
pub mod events;
mod glob;
pub mod hll;
mod keyspace;
mod op;
pub mod predicate;
pub mod protocol;
mod shard;
mod window;

pub use disk::Health;
pub use glob::{matches as glob_matches, prefix_pattern};
pub use keyspace::{DumpCursor, Keyspace, POSITION_BITS as SCAN_POSITION_BITS, ScanPage, key_hash, zrange};
pub use op::{
    ExpireIf, GetExpiry, LexBound, MAX_STRING, Op, OpError, OpResult, Reply, ScoreBound, SetExpiry, ZAddOpts, ZBy,
    ZRange, parse_int,
};
pub use protocol::{Answer, ChangeAt, Check, Message, Request, Response, TxnId, Vote, Write};
pub use shard::ShardStats;
pub use squall_lattice as lattice;
pub use window::Retention;

/// The namespace a node serves by default: Redis's database 0, `/v1/kv`,
/// and the keys functions read and write.
pub const DEFAULT_NS: &[u8] = b"default";

use bytes::Bytes;
use disk::{DiskState, WriterMsg};
use shard::Shard;
use squall_lattice::{Clock, Entry, Hlc, NodeId, PhysicalClock as _, SystemClock, Timestamp};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// A message on its way to a shard, with where its answer goes.
pub(crate) type Envelope = (Message, oneshot::Sender<Answer>);

/// The longest a commit across shards waits for the keys it needs.
const PREPARE_LIMIT: Duration = Duration::from_secs(10);

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After the write is fsynced (group commit shares fsyncs among writers).
    #[default]
    Sync,
    /// At once; the writer hands the data to the OS straight away and fsyncs
    /// within about a second, so a crash of the machine (not of the process)
    /// can lose that last second.
    Async,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Sync => "sync",
            Durability::Async => "async",
        })
    }
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(Durability::Sync),
            "async" => Ok(Durability::Async),
            other => Err(format!("unknown durability '{other}': use sync or async")),
        }
    }
}

/// Shard threads when nobody says: one per core but one, at least one.
///
/// The core left over runs what is not a shard (the disk writer, the
/// listeners' accept loops, the kernel's network work) and, on a small
/// machine, the clients beside it. Measured on 2 cores with the client on
/// the same machine, a second shard made every Redis benchmark row slower
/// (commands for the other shard cost a wake-up of its thread) and
/// function calls no faster (bench/RESULTS.md).
pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    /// Number of shard threads (at least 1).
    pub shards: usize,
    pub durability: Durability,
    /// This node's id; `None` reads it from the data dir, making one up on first start.
    pub node_id: Option<NodeId>,
    /// The physical clock for stamps and expiry (a test sets its own).
    pub clock: Clock,
    /// The log may grow to this before a snapshot is taken (or to the size
    /// of the last snapshot, if that is larger).
    pub snapshot_bytes: u64,
    /// How far back the window log reaches (reads of the past).
    pub retention: Retention,
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            shards: default_shards(),
            durability: Durability::Sync,
            node_id: None,
            clock: SystemClock::shared(),
            snapshot_bytes: 64 << 20,
            retention: Retention::DEFAULT,
        }
    }
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data dir {0} is in use by another process (is another squall running on it?)")]
    Locked(String),
    #[error("cannot use data dir {0}: {1}")]
    DataDir(String, String),
    #[error("disk: {0}")]
    Io(String),
    #[error("data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Refused(OpError),
    #[error("{0}")]
    Timeout(String),
    #[error("the store is shutting down")]
    Closed,
    /// A request over more than the store answers at once.
    #[error("{0}")]
    TooMany(String),
    /// A read of the past before the oldest time the window log reaches (this one).
    #[error("the window log reaches back to {} only", format_time(*.0))]
    OutOfWindow(Timestamp),
}

/// Reads a time to look at the past from: an RFC 3339 time
/// (`2026-12-01T16:00:00Z`, fractions allowed), a time before `now_ms`
/// (`-5m`, `-30s`, `-1h30m`), or a stamp as the store prints them
/// (`1764604800000.3`: milliseconds, then the counter). A time names the
/// end of its millisecond: every stamp within it is at or before it.
pub fn parse_time(text: &str, now_ms: u64) -> Result<Timestamp, String> {
    let text = text.trim();
    let whole = |ms: u64| Timestamp::new(ms, u16::MAX);
    let t = if let Some(ago) = text.strip_prefix('-') {
        let d = humantime::parse_duration(ago).map_err(|e| format!("'{text}' is not a time before now: {e}"))?;
        whole(now_ms.saturating_sub(d.as_millis().min(u128::from(u64::MAX)) as u64))
    } else if let Some((ms, counter)) = text.split_once('.')
        && let (Ok(ms), Ok(counter)) = (ms.parse::<u64>(), counter.parse::<u16>())
    {
        Timestamp::new(ms, counter)
    } else {
        let time = humantime::parse_rfc3339_weak(text).map_err(|_| {
            format!("'{text}' is not a time: give RFC 3339 (2026-12-01T16:00:00Z), a time before now (-5m) or a stamp (MS.COUNTER)")
        })?;
        let ms = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("'{text}' is before 1970"))?;
        whole(ms.as_millis() as u64)
    };
    if t.wall_ms() > now_ms {
        return Err(format!("{} is in the future", format_time(t)));
    }
    Ok(t)
}

/// A stamp's time in RFC 3339 (UTC, milliseconds).
pub fn rfc3339(t: Timestamp) -> String {
    /// 9999-12-31T23:59:59.999Z: RFC 3339 has four-digit years.
    const LAST: u64 = 253_402_300_799_999;
    if t.wall_ms() > LAST {
        return format!("{} ms after 1970", t.wall_ms());
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(t.wall_ms())).to_string()
}

/// A stamp as people read it: its time in RFC 3339 (UTC, milliseconds)
/// and the stamp itself.
pub fn format_time(t: Timestamp) -> String {
    format!("{} (stamp {t})", rfc3339(t))
}

struct ShardRef {
    tx: mpsc::UnboundedSender<Envelope>,
    rt: tokio::runtime::Handle,
    durable: watch::Receiver<u64>,
    stats: Arc<ShardStats>,
    stop: Arc<Notify>,
}

struct Inner {
    id: u64,
    node: NodeId,
    durability: Durability,
    shards: Vec<ShardRef>,
    next_txn: AtomicU64,
    /// The largest stamp acknowledged so far: every request goes after it.
    floor: AtomicU64,
    clock: Clock,
    health: watch::Receiver<Health>,
    events: Arc<events::KeyEvents>,
}

/// A cheap, cloneable way to reach the store from any thread or task.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("node", &self.inner.node).field("shards", &self.inner.shards.len()).finish()
    }
}

/// An open store; closing it (or dropping it) stops the shards and syncs the disk.
pub struct Store {
    handle: Handle,
    threads: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    snapshotter: Option<JoinHandle<()>>,
    writer_tx: std::sync::mpsc::SyncSender<WriterMsg>,
    /// Held for the store's life: the data dir's lock.
    _lock: std::fs::File,
}

struct Local {
    store: u64,
    shard: usize,
    state: Rc<RefCell<Shard>>,
    flush: Rc<Notify>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

static NEXT_STORE: AtomicU64 = AtomicU64::new(1);

/// What a write must wait for to be durable in sync mode: shard `shard`'s
/// writes up to `seq` (0: nothing was written).
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub shard: usize,
    pub seq: u64,
}

impl From<&Answer> for Written {
    fn from(a: &Answer) -> Self {
        Written { shard: a.shard, seq: a.seq }
    }
}

/// A client's place in time: the latest stamp it has seen, which its next
/// requests go after (so what one connection does orders by its program).
#[derive(Debug, Default, Clone, Copy)]
pub struct Session {
    seen: Timestamp,
}

impl Session {
    pub fn seen(&self) -> Timestamp {
        self.seen
    }
    pub fn observe(&mut self, t: Timestamp) {
        self.seen = self.seen.max(t);
    }
}

fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File, Error> {
    let fail = |e: std::io::Error| Error::DataDir(dir.display().to_string(), e.to_string());
    std::fs::create_dir_all(dir).map_err(fail)?;
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock")).map_err(fail)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Error::Locked(dir.display().to_string())),
        Err(e) => Err(fail(e.into())),
    }
}

impl Store {
    /// Opens (or creates) the store in `opts.data_dir`, recovering what is on disk.
    pub fn open(opts: Options) -> Result<Store, Error> {
        let shards = opts.shards.max(1);
        let dir = opts.data_dir.clone();
        let lock = lock_dir(&dir)?;
        let node = match opts.node_id {
            Some(n) => n,
            None => node_id(&dir)?,
        };
        let clock = opts.clock.clone();
        let recovered = disk::recover::recover(&dir, shards, node, clock.now_ms(), opts.retention)?;
        tracing::info!(
            keys = recovered.keyspaces.iter().map(Keyspace::keys).sum::<u64>(),
            dir = %dir.display(),
            "store recovered"
        );
        let (disk, health) = DiskState::new();
        let disk = Arc::new(disk);
        let mut segment = recovered.segment;
        if let Err(e) = segment.reserve(disk::writer::RESERVE) {
            // The log still takes what fits; new writes wait for space.
            disk.set_full(format!("cannot reserve log space: {e}"));
        }

        let spawn_error = |e: std::io::Error| Error::DataDir(dir.display().to_string(), e.to_string());
        let (writer_tx, writer_rx) = std::sync::mpsc::sync_channel::<WriterMsg>(1024);
        let (durable_tx, durable_rx): (Vec<_>, Vec<_>) = (0..shards).map(|_| watch::channel(0u64)).unzip();
        let (mail_tx, mail_rx): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::unbounded_channel::<Envelope>()).unzip();
        let (ask_tx, ask_rx) = std::sync::mpsc::sync_channel::<u64>(1);
        let snapshotter = {
            let (dir, shards, writer) = (dir.clone(), mail_tx.clone(), writer_tx.clone());
            std::thread::Builder::new()
                .name("squall-snapshot".into())
                .spawn(move || disk::snapshot::run(dir, ask_rx, shards, writer))
                .map_err(spawn_error)?
        };
        let writer = disk::writer::Writer {
            dir: dir.clone(),
            log: segment,
            next_entry: recovered.next_entry,
            sync: opts.durability == Durability::Sync,
            durable: durable_tx,
            disk: disk.clone(),
            snapshot_at: recovered.snapshot_bytes.max(opts.snapshot_bytes),
            undo_in_log: 0,
            snapshot_min: opts.snapshot_bytes,
            snapshots: Some(ask_tx),
            window: opts.retention.is_on().then(|| disk::writer::KeptLog {
                retention: opts.retention,
                clock: clock.clone(),
                kept: recovered.kept.iter().copied().collect(),
                covered: recovered.covered,
                newest: recovered.current_newest,
                horizon: recovered.horizon,
            }),
        };
        let writer = std::thread::Builder::new()
            .name("squall-writer".into())
            .spawn(move || writer.run(writer_rx))
            .map_err(spawn_error)?;

        let id = NEXT_STORE.fetch_add(1, Ordering::Relaxed);
        let key_events = events::KeyEvents::new();
        let mut refs = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        let parts = recovered.keyspaces.into_iter().zip(recovered.windows).zip(durable_rx).zip(mail_tx).zip(mail_rx);
        for (i, ((((keys, window), durable), tx), rx)) in parts.enumerate() {
            let mut hlc = Hlc::new(clock.clone());
            // New writes order after everything recovered, even if this
            // machine's clock went backwards across the restart.
            hlc.observe(recovered.latest.time);
            let state = Shard::new(i, keys, window, hlc, disk.clone(), writer_tx.clone(), key_events.clone());
            let stats = state.stats.clone();
            let stop = Arc::new(Notify::new());
            let (rt_tx, rt_rx) = std::sync::mpsc::channel();
            let stop2 = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("squall-shard-{i}"))
                .spawn(move || run_shard(id, state, rx, stop2, rt_tx))
                .map_err(spawn_error)?;
            let rt = rt_rx.recv().map_err(|_| Error::Closed)?;
            refs.push(ShardRef { tx, rt, durable, stats, stop });
            threads.push(thread);
        }
        let inner = Inner {
            id,
            node,
            durability: opts.durability,
            shards: refs,
            next_txn: AtomicU64::new(1),
            floor: AtomicU64::new(recovered.latest.time.0),
            clock,
            health,
            events: key_events,
        };
        Ok(Store {
            handle: Handle { inner: Arc::new(inner) },
            threads,
            writer: Some(writer),
            snapshotter: Some(snapshotter),
            writer_tx,
            _lock: lock,
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the shards (dropping the connections they host), writes what is
    /// pending and syncs the disk. Blocks; call it outside async code or in
    /// `spawn_blocking`.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for s in &self.handle.inner.shards {
            s.stop.notify_one();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = self.writer_tx.send(WriterMsg::Close);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(s) = self.snapshotter.take() {
            let _ = s.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shard that owns `key` (recovery places records by it too).
pub(crate) fn shard_index(key: &[u8], shards: usize) -> usize {
    (key_hash(key) % shards as u64) as usize
}

/// Reads the node id from the data dir, or makes one up and keeps it there.
fn node_id(dir: &std::path::Path) -> Result<NodeId, Error> {
    let path = dir.join("node-id");
    let fail = |e: std::io::Error| Error::DataDir(dir.display().to_string(), e.to_string());
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|_| Error::Corrupt(format!("{} does not hold a number", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = SystemClock.now_ms() ^ (u64::from(std::process::id()) << 32);
            let id = xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes()) >> 1;
            // Written whole or not at all: a crash must not leave an empty file.
            let tmp = dir.join("node-id.tmp");
            let mut f = std::fs::File::create(&tmp).map_err(fail)?;
            std::io::Write::write_all(&mut f, id.to_string().as_bytes()).map_err(fail)?;
            f.sync_all().map_err(fail)?;
            std::fs::rename(&tmp, &path).map_err(fail)?;
            Ok(id)
        }
        Err(e) => Err(fail(e)),
    }
}

fn run_shard(
    store: u64,
    state: Shard,
    mut rx: mpsc::UnboundedReceiver<Envelope>,
    stop: Arc<Notify>,
    rt_tx: std::sync::mpsc::Sender<tokio::runtime::Handle>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a shard runtime");
            return;
        }
    };
    let _ = rt_tx.send(rt.handle().clone());
    let shard = state.id;
    let state = Rc::new(RefCell::new(state));
    let flush = Rc::new(Notify::new());
    LOCAL.with(|l| *l.borrow_mut() = Some(Local { store, shard, state: state.clone(), flush: flush.clone() }));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        tokio::task::spawn_local(flusher(state.clone(), flush.clone()));
        tokio::task::spawn_local(reaper(state.clone(), flush.clone()));
        tokio::task::spawn_local(indexer(state.clone()));
        let mut work = Vec::with_capacity(256);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut work, 256) => {
                    if n == 0 {
                        break;
                    }
                    let mut s = state.borrow_mut();
                    for (msg, reply) in work.drain(..) {
                        s.handle(msg, reply);
                    }
                    s.publish_stats();
                    if s.has_pending() {
                        flush.notify_one();
                    }
                }
                _ = stop.notified() => break,
            }
        }
        // What was already sent runs before the shard stops (a commit's
        // part among it), then nothing more is taken.
        rx.close();
        let mut s = state.borrow_mut();
        while let Ok((msg, reply)) = rx.try_recv() {
            s.handle(msg, reply);
        }
        s.send_pending(None);
    });
    LOCAL.with(|l| l.borrow_mut().take());
    // Dropping the runtime cancels the connections this shard hosted.
    drop(local);
    drop(rt);
    // The shard (and its sender to the writer) goes last, so the writer ends
    // only after everything was handed over.
    drop(state);
}

/// Hands the shard's records to the writer once per wake-up: everything the
/// tasks that were ready together wrote goes as one chunk.
async fn flusher(state: Rc<RefCell<Shard>>, flush: Rc<Notify>) {
    loop {
        flush.notified().await;
        tokio::task::yield_now().await;
        let mut s = state.borrow_mut();
        s.publish_stats();
        s.send_pending(None);
    }
}

/// Builds the window's index in bounded steps when a read of the past
/// needs it, letting the shard serve everything else in between.
async fn indexer(state: Rc<RefCell<Shard>>) {
    let wake = state.borrow().indexing();
    loop {
        wake.notified().await;
        while !state.borrow_mut().index_step() {
            tokio::task::yield_now().await;
        }
    }
}

/// Reclaims expired keys in the background (readers already skip them).
async fn reaper(state: Rc<RefCell<Shard>>, flush: Rc<Notify>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut s = state.borrow_mut();
        if s.reap(10_000) > 0 {
            flush.notify_one();
        }
        s.publish_stats();
    }
}

/// A message sent to a shard: answered at once (in place), or later.
pub enum Pending {
    Ready(Answer),
    Waiting(oneshot::Receiver<Answer>),
    Closed,
}

impl Pending {
    pub async fn answer(self) -> Result<Answer, Error> {
        match self {
            Pending::Ready(a) => Ok(a),
            Pending::Waiting(rx) => rx.await.map_err(|_| Error::Closed),
            Pending::Closed => Err(Error::Closed),
        }
    }
}

/// An atomic unit's outcome.
enum Outcome {
    Done(Vec<OpResult>, Timestamp),
    /// A check failed: nothing was applied.
    Conflict,
}

/// A commit across shards not yet decided: dropping it (its coordinator
/// went away, or gave up) lets every prepared part go.
struct Undecided<'a> {
    handle: &'a Handle,
    txn: TxnId,
    shards: Vec<usize>,
}

impl Undecided<'_> {
    /// Lets every part go (a read-only unit is done, or the unit failed).
    fn release(mut self) {
        self.abort_all();
    }

    /// Decided: the parts will all commit.
    fn decide(mut self) {
        self.shards.clear();
    }

    fn abort_all(&mut self) {
        for shard in self.shards.drain(..) {
            let msg = Message { after: Timestamp::ZERO, request: Request::Abort { txn: self.txn } };
            // Through the mailbox even for this thread's shard: a drop may
            // happen anywhere. The answer is not needed.
            let (tx, _) = oneshot::channel();
            let _ = self.handle.inner.shards[shard].tx.send((msg, tx));
        }
    }
}

impl Drop for Undecided<'_> {
    fn drop(&mut self) {
        self.abort_all();
    }
}

type Parts = BTreeMap<usize, (Vec<Check>, Vec<(usize, Write)>)>;

fn unexpected(what: &str, r: &Response) -> Error {
    Error::Corrupt(format!("a shard answered {what} with {r:?}"))
}

impl Handle {
    pub fn node_id(&self) -> NodeId {
        self.inner.node
    }

    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    pub fn shards(&self) -> usize {
        self.inner.shards.len()
    }

    /// The node's physical clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Starts listening to what writes do to keys (see [`events`]).
    pub fn key_events(&self) -> events::Listener {
        self.inner.events.listen()
    }

    /// Physical time now (ms since the Unix epoch), from the store's clock.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Whether the store takes writes now.
    pub fn health(&self) -> Health {
        self.inner.health.borrow().clone()
    }

    /// Changes of [`Handle::health`].
    pub fn health_changes(&self) -> watch::Receiver<Health> {
        self.inner.health.clone()
    }

    /// The shard that owns `key`.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        shard_index(key, self.inner.shards.len())
    }

    pub fn stats(&self, shard: usize) -> &ShardStats {
        &self.inner.shards[shard].stats
    }

    /// Runs `fut` on shard `shard`'s thread, where work for that shard needs no message.
    pub fn spawn_on<F>(&self, shard: usize, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.shards[shard % self.inner.shards.len()].rt.spawn(fut)
    }

    /// The shard whose thread this is, if it is one of this store's shard threads.
    pub fn current_shard(&self) -> Option<usize> {
        LOCAL.with(|l| l.borrow().as_ref().filter(|l| l.store == self.inner.id).map(|l| l.shard))
    }

    /// The latest stamp acknowledged on this node.
    pub fn floor(&self) -> Timestamp {
        Timestamp(self.inner.floor.load(Ordering::Acquire))
    }

    /// Records that a write stamped `t` was acknowledged: every request
    /// from now on goes after it.
    pub fn publish(&self, t: Timestamp) {
        if t.0 > self.inner.floor.load(Ordering::Relaxed) {
            self.inner.floor.fetch_max(t.0, Ordering::Release);
        }
    }

    /// Sends `msg` to shard `shard`: handled in place if this is its thread,
    /// by mailbox otherwise. Messages to one shard are handled in the order
    /// they were sent.
    #[allow(clippy::result_large_err)]
    pub fn send(&self, shard: usize, msg: Message) -> Pending {
        let msg = LOCAL.with(|l| match &*l.borrow() {
            Some(local) if local.store == self.inner.id && local.shard == shard => {
                let Ok(mut s) = local.state.try_borrow_mut() else { return Err(msg) };
                let pending = match s.try_handle(msg) {
                    Ok(a) => Pending::Ready(a),
                    Err(msg) => {
                        let (tx, rx) = oneshot::channel();
                        s.park(msg, tx);
                        Pending::Waiting(rx)
                    }
                };
                // As the mailbox loop does after each wake-up: a read
                // handled here wakes nothing else that would publish it.
                s.publish_stats();
                if s.has_pending() {
                    local.flush.notify_one();
                }
                Ok(pending)
            }
            _ => Err(msg),
        });
        let msg = match msg {
            Ok(pending) => return pending,
            Err(msg) => msg,
        };
        let (tx, rx) = oneshot::channel();
        match self.inner.shards[shard].tx.send((msg, tx)) {
            Ok(()) => Pending::Waiting(rx),
            Err(_) => Pending::Closed,
        }
    }

    /// Sends `request` to shard `shard` (after everything acknowledged) and
    /// waits for the answer.
    pub async fn call(&self, shard: usize, request: Request) -> Result<Answer, Error> {
        self.send(shard, Message { after: self.floor(), request }).answer().await
    }

    /// In sync mode, waits until shard `w.shard`'s writes up to `w.seq` are on disk.
    pub async fn durable(&self, w: Written) -> Result<(), Error> {
        if self.inner.durability == Durability::Async || w.seq == 0 {
            return Ok(());
        }
        let mut rx = self.inner.shards[w.shard].durable.clone();
        rx.wait_for(|d| *d >= w.seq).await.map(|_| ()).map_err(|_| Error::Closed)
    }

    /// Starts `op` on `key`'s shard, after `after`; the answer says what to
    /// wait for before acknowledging it.
    pub fn dispatch(&self, ns: &Bytes, key: Bytes, op: Op, after: Timestamp) -> Pending {
        let shard = self.shard_of(&key);
        let after = after.max(self.floor());
        self.send(shard, Message { after, request: Request::Op { ns: ns.clone(), key, op } })
    }

    /// Starts `ops` (all on keys of shard `shard`, each on its own) as one
    /// message, after `after`: a pipeline's commands for another shard.
    pub fn dispatch_many(&self, shard: usize, ns: &Bytes, ops: Vec<(Bytes, Op)>, after: Timestamp) -> Pending {
        let after = after.max(self.floor());
        self.send(shard, Message { after, request: Request::Ops { ns: ns.clone(), ops } })
    }

    /// Applies `op` to `key` and answers once it is as durable as the store promises.
    pub async fn exec(&self, ns: &Bytes, key: Bytes, op: Op) -> Result<OpResult, Error> {
        let writes = op.is_write();
        let a = self.dispatch(ns, key, op, Timestamp::ZERO).answer().await?;
        self.durable(Written::from(&a)).await?;
        if writes {
            self.publish(a.stamp);
        }
        match a.response {
            Response::Op(r) => Ok(r),
            other => Err(unexpected("an operation", &other)),
        }
    }

    /// Applies `ops` as one atomic unit with one stamp: no reader sees part
    /// of it, and on disk it is all there or none of it. Each op still
    /// answers on its own (a wrong-type op fails alone, as in Redis's EXEC).
    pub async fn atomic(
        &self,
        ns: &Bytes,
        ops: Vec<(Bytes, Op)>,
        session: &mut Session,
    ) -> Result<Vec<OpResult>, Error> {
        self.atomic_if(ns, Vec::new(), ops, session)
            .await?
            .ok_or_else(|| Error::Corrupt("a unit with no checks had a conflict".into()))
    }

    /// [`Handle::atomic`] if every check still holds as it applies (its
    /// read answers as it did: WATCH), else nothing and `None`. The checks
    /// are decided by their keys' owners, which hold the keys from the
    /// check to the commit.
    pub async fn atomic_if(
        &self,
        ns: &Bytes,
        checks: Vec<Check>,
        ops: Vec<(Bytes, Op)>,
        session: &mut Session,
    ) -> Result<Option<Vec<OpResult>>, Error> {
        let writes = ops.into_iter().map(|(key, op)| Write { ns: ns.clone(), key, op }).collect();
        match self.transact(checks, writes, session.seen(), None).await? {
            Outcome::Done(results, stamp) => {
                session.observe(stamp);
                Ok(Some(results))
            }
            Outcome::Conflict => Ok(None),
        }
    }

    /// Commits a transaction: if every check still holds (its read answers
    /// as it did), applies every write, all with one stamp, as one atomic
    /// unit; otherwise applies nothing and answers `None` (a conflict).
    pub async fn commit(&self, checks: Vec<Check>, writes: Vec<Write>) -> Result<Option<Vec<OpResult>>, Error> {
        self.commit_as(checks, writes, None).await
    }

    /// [`Handle::commit`] of what `origin` (an invocation's id) did: the
    /// window log says so of each change (changes of the past name it).
    pub async fn commit_as(
        &self,
        checks: Vec<Check>,
        writes: Vec<Write>,
        origin: Option<Bytes>,
    ) -> Result<Option<Vec<OpResult>>, Error> {
        Ok(match self.transact(checks, writes, Timestamp::ZERO, origin).await? {
            Outcome::Done(results, _) => Some(results),
            Outcome::Conflict => None,
        })
    }

    async fn transact(
        &self,
        checks: Vec<Check>,
        writes: Vec<Write>,
        after: Timestamp,
        origin: Option<Bytes>,
    ) -> Result<Outcome, Error> {
        let total = writes.len();
        let mut parts: Parts = BTreeMap::new();
        for c in checks {
            parts.entry(self.shard_of(&c.key)).or_default().0.push(c);
        }
        for (i, w) in writes.into_iter().enumerate() {
            parts.entry(self.shard_of(&w.key)).or_default().1.push((i, w));
        }
        let after = after.max(self.floor());
        if parts.len() > 1 {
            return self.two_phase(parts, total, after, origin).await;
        }
        let Some((shard, (checks, ops))) = parts.pop_first() else {
            return Ok(Outcome::Done(Vec::new(), after));
        };
        let writes = ops.iter().any(|(_, w)| w.op.is_write());
        let ops = ops.into_iter().map(|(_, w)| w).collect();
        let a = self.send(shard, Message { after, request: Request::Batch { checks, ops, origin } }).answer().await?;
        let written = Written::from(&a);
        match a.response {
            Response::Batch(Some(results)) => {
                self.durable(written).await?;
                if writes {
                    self.publish(a.stamp);
                }
                Ok(Outcome::Done(results, a.stamp))
            }
            Response::Batch(None) => Ok(Outcome::Conflict),
            Response::Refused(e) => Err(Error::Refused(e)),
            other => Err(unexpected("a batch", &other)),
        }
    }

    /// The commit of a unit across shards (see the crate docs).
    async fn two_phase(
        &self,
        parts: Parts,
        total: usize,
        after: Timestamp,
        origin: Option<Bytes>,
    ) -> Result<Outcome, Error> {
        let txn = self.inner.next_txn.fetch_add(1, Ordering::Relaxed);
        let mut undecided = Undecided { handle: self, txn, shards: Vec::with_capacity(parts.len()) };
        let mut results: Vec<Option<OpResult>> = (0..total).map(|_| None).collect();
        let mut placing: Vec<(usize, Vec<usize>)> = Vec::with_capacity(parts.len());
        // What the shards had done when they answered the reads.
        let mut seen: Vec<Written> = Vec::new();
        let mut writes = false;
        let mut stamp = after;
        let deadline = tokio::time::Instant::now() + PREPARE_LIMIT;
        // In shard order, one after another: holding keys of lower shards
        // while waiting for a higher one can never close a circle.
        for (shard, (checks, ops)) in parts {
            let (places, ops): (Vec<usize>, Vec<Write>) = ops.into_iter().unzip();
            writes |= ops.iter().any(|w| w.op.is_write());
            undecided.shards.push(shard);
            let request = Request::Prepare { txn, checks, ops, origin: origin.clone() };
            let prepare = Message { after: stamp, request };
            let answer = tokio::time::timeout_at(deadline, self.send(shard, prepare).answer()).await;
            let Ok(answer) = answer else {
                return Err(Error::Timeout(format!(
                    "a commit across shards waited {} s for keys other commits hold; it was not applied",
                    PREPARE_LIMIT.as_secs()
                )));
            };
            let a = answer?;
            seen.push(Written::from(&a));
            match a.response {
                Response::Vote(Vote::Yes { proposal, reads }) => {
                    stamp = stamp.max(proposal);
                    match reads {
                        Some(reads) => places.iter().zip(reads).for_each(|(i, r)| results[*i] = Some(r)),
                        None => placing.push((shard, places)),
                    }
                }
                Response::Vote(Vote::Conflict) => return Ok(Outcome::Conflict),
                Response::Refused(e) => return Err(Error::Refused(e)),
                other => return Err(unexpected("a prepare", &other)),
            }
        }
        if !writes {
            undecided.release();
            // A reply must not show a write that could still be lost.
            for w in seen {
                self.durable(w).await?;
            }
            return Ok(Outcome::Done(results.into_iter().map(|r| r.unwrap_or(Ok(Reply::Nil))).collect(), stamp));
        }
        let involved = std::mem::take(&mut undecided.shards);
        undecided.decide();
        // Every part is sent before any answer is awaited: once decided, the
        // commit happens even if this caller goes away.
        let parts = involved.len();
        let pending: Vec<(usize, Pending)> = involved
            .iter()
            .map(|&shard| {
                (shard, self.send(shard, Message { after: stamp, request: Request::Commit { txn, stamp, parts } }))
            })
            .collect();
        let mut written = Vec::with_capacity(pending.len());
        for (shard, p) in pending {
            let a = p.answer().await?;
            written.push(Written::from(&a));
            match a.response {
                Response::Committed(r) => {
                    if let Some((_, places)) = placing.iter().find(|(s, _)| *s == shard) {
                        places.iter().zip(r).for_each(|(i, r)| results[*i] = Some(r));
                    }
                }
                other => return Err(unexpected("a commit", &other)),
            }
        }
        for w in written {
            self.durable(w).await?;
        }
        self.publish(stamp);
        Ok(Outcome::Done(results.into_iter().map(|r| r.unwrap_or(Ok(Reply::Nil))).collect(), stamp))
    }

    /// One page of keys in `ns`. `cursor` 0 starts; a returned cursor of 0 means done.
    pub async fn scan(
        &self,
        ns: &Bytes,
        cursor: u64,
        count: usize,
        pattern: Option<Bytes>,
        kind: Option<String>,
    ) -> Result<(u64, Vec<Bytes>), Error> {
        self.pages(cursor, count, |from, count| Request::Scan {
            ns: ns.clone(),
            from,
            count,
            pattern: pattern.clone(),
            kind: kind.clone(),
        })
        .await
    }

    /// RANDOMKEY: a key of the namespace, the first found from a position
    /// picked at random (so a key after a wide gap is likelier), or `None`
    /// if it has none.
    pub async fn random_key(&self, ns: &Bytes) -> Result<Option<Bytes>, Error> {
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let shard = random % self.shards() as u64;
        let from = (shard << SCAN_POSITION_BITS) | (random & ((1 << SCAN_POSITION_BITS) - 1));
        for cursor in [from, 0] {
            let (_, keys) = self.scan(ns, cursor, 1, None, None).await?;
            if let Some(key) = keys.into_iter().next() {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// Walks the shards in order for a page of about `count` keys from
    /// `cursor`, asking each with `request(from, count)`.
    async fn pages(
        &self,
        cursor: u64,
        count: usize,
        request: impl Fn(u64, usize) -> Request,
    ) -> Result<(u64, Vec<Bytes>), Error> {
        let mut shard = (cursor >> SCAN_POSITION_BITS) as usize;
        let mut from = cursor & ((1 << SCAN_POSITION_BITS) - 1);
        let mut keys = Vec::new();
        while shard < self.shards() {
            let want = count.saturating_sub(keys.len()).max(1);
            let a = self.call(shard, request(from, want)).await?;
            // The keys shown must not include a write that could still be lost.
            self.durable(Written::from(&a)).await?;
            let page = match a.response {
                Response::Scan(page) => page,
                Response::OutOfWindow(oldest) => return Err(Error::OutOfWindow(oldest)),
                other => return Err(unexpected("a scan", &other)),
            };
            keys.extend(page.keys);
            match page.next {
                Some(next) => return Ok((((shard as u64) << SCAN_POSITION_BITS) | next, keys)),
                None => {
                    shard += 1;
                    from = 0;
                }
            }
            if keys.len() >= count {
                break;
            }
        }
        let cursor = if shard >= self.shards() { 0 } else { (shard as u64) << SCAN_POSITION_BITS };
        Ok((cursor, keys))
    }

    /// The whole entry at `key` as it was at `at` (`None`: there was none).
    /// Every atomic unit is wholly in the state at `at` or wholly out of it.
    pub async fn read_at(&self, ns: &Bytes, key: Bytes, at: Timestamp) -> Result<Option<Entry>, Error> {
        let shard = self.shard_of(&key);
        let request = Request::ReadAt { ns: ns.clone(), key, at };
        let a = self.call(shard, request).await?;
        self.durable(Written::from(&a)).await?;
        match a.response {
            Response::Op(Ok(Reply::Entry(e))) => Ok(Some(*e)),
            Response::Op(Ok(_)) => Ok(None),
            Response::OutOfWindow(oldest) => Err(Error::OutOfWindow(oldest)),
            other => Err(unexpected("a read of the past", &other)),
        }
    }

    /// [`Handle::scan`] of the keys as they were at `at`.
    pub async fn scan_at(
        &self,
        ns: &Bytes,
        cursor: u64,
        count: usize,
        pattern: Option<Bytes>,
        at: Timestamp,
    ) -> Result<(u64, Vec<Bytes>), Error> {
        self.pages(cursor, count, |from, count| Request::ScanAt {
            ns: ns.clone(),
            from,
            count,
            pattern: pattern.clone(),
            at,
        })
        .await
    }

    /// The changes to keys of `ns` starting with `prefix` stamped in
    /// `(from, to]`, in stamp order (by key within a stamp), each with the
    /// key just before and after, about `limit` per shard; and the time they
    /// reach: `to`, or (when there were more) the last stamp every shard's
    /// changes are whole up to, to go on from.
    pub async fn changes(
        &self,
        ns: &Bytes,
        from: Timestamp,
        to: Timestamp,
        prefix: Option<Bytes>,
        limit: usize,
    ) -> Result<(Vec<protocol::ChangeAt>, Timestamp), Error> {
        let mut all = Vec::new();
        let mut upto = to;
        for shard in 0..self.shards() {
            let request = Request::Changes { ns: ns.clone(), from, to, prefix: prefix.clone(), limit };
            let a = self.call(shard, request).await?;
            self.durable(Written::from(&a)).await?;
            match a.response {
                Response::Changes { changes, complete } => {
                    if !complete && let Some(last) = changes.last() {
                        upto = upto.min(last.time);
                    }
                    all.extend(changes);
                }
                Response::OutOfWindow(oldest) => return Err(Error::OutOfWindow(oldest)),
                other => return Err(unexpected("the changes of the past", &other)),
            }
        }
        all.retain(|c| c.time <= upto);
        all.sort_by(|a, b| (a.time, &a.key).cmp(&(b.time, &b.key)));
        Ok((all, upto))
    }

    /// The first time in `[from, to]` at which `pred` holds over the keys
    /// of `ns` (as they were then): that stamp and the atomic unit whose
    /// changes made it hold (none if it held at `from` already); `None` if
    /// it never did.
    pub async fn find(
        &self,
        ns: &Bytes,
        from: Timestamp,
        to: Timestamp,
        pred: &predicate::Pred,
    ) -> Result<Option<(Timestamp, Vec<protocol::ChangeAt>)>, Error> {
        /// Keys a prefix in a predicate may stand for.
        const MAX_KEYS: usize = 100_000;
        let patterns = pred.keys();
        let mut state = BTreeMap::new();
        for pattern in &patterns {
            match pattern {
                predicate::KeyPattern::Exact(k) => {
                    if let Some(e) = self.read_at(ns, k.clone(), from).await? {
                        state.insert(k.clone(), e);
                    }
                }
                predicate::KeyPattern::Prefix(p) => {
                    let mut cursor = 0;
                    loop {
                        let (next, keys) = self.scan_at(ns, cursor, 1000, Some(prefix_pattern(p)), from).await?;
                        for k in keys {
                            if let Some(e) = self.read_at(ns, k.clone(), from).await? {
                                state.insert(k, e);
                            }
                        }
                        if state.len() > MAX_KEYS {
                            return Err(Error::TooMany(format!(
                                "the predicate's keys number over {MAX_KEYS}: name fewer, or a longer prefix"
                            )));
                        }
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
            }
        }
        if pred.holds(&state) {
            return Ok(Some((from, Vec::new())));
        }
        // Only the changes of keys it could name.
        let common = patterns.iter().map(|p| match p {
            predicate::KeyPattern::Exact(k) | predicate::KeyPattern::Prefix(k) => k.clone(),
        });
        let prefix = common.reduce(|a, b| {
            let n = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
            a.slice(..n)
        });
        let mut at = from;
        while at < to {
            let (changes, upto) = self.changes(ns, at, to, prefix.clone(), 1000).await?;
            for unit in changes.chunk_by(|a, b| a.time == b.time) {
                let mut touched = false;
                for c in unit.iter().filter(|c| patterns.iter().any(|p| p.matches(&c.key))) {
                    touched = true;
                    match &c.after {
                        Some(e) => state.insert(c.key.clone(), e.clone()),
                        None => state.remove(&c.key),
                    };
                }
                if touched && pred.holds(&state) {
                    // The whole unit, the keys the predicate does not name too.
                    let t = unit[0].time;
                    let (whole, _) = self.changes(ns, Timestamp(t.0 - 1), t, None, 10_000).await?;
                    return Ok(Some((t, whole)));
                }
            }
            if upto <= at {
                break;
            }
            at = upto;
        }
        Ok(None)
    }

    /// The oldest time the window log reaches on every shard (as last published).
    pub fn window_oldest(&self) -> Timestamp {
        let shards = &self.inner.shards;
        Timestamp(shards.iter().map(|s| s.stats.window_oldest.load(Ordering::Relaxed)).max().unwrap_or(0))
    }

    /// Number of keys in `ns` (keys expired but not yet reclaimed included, as in Redis).
    pub async fn len(&self, ns: &Bytes) -> Result<u64, Error> {
        let mut total = 0;
        for shard in 0..self.shards() {
            let a = self.call(shard, Request::Len { ns: ns.clone() }).await?;
            self.durable(Written::from(&a)).await?;
            match a.response {
                Response::Len(n) => total += n,
                other => return Err(unexpected("a count", &other)),
            }
        }
        Ok(total)
    }

    /// Waits until everything written so far is on disk and fsynced (whatever the durability mode).
    pub async fn flush(&self) -> Result<(), Error> {
        let waits: Vec<Pending> = (0..self.shards())
            .map(|s| self.send(s, Message { after: self.floor(), request: Request::Flush }))
            .collect();
        for w in waits {
            w.answer().await?;
        }
        Ok(())
    }
}
