//! The store: a shared-nothing, sharded lattice key-value store with a
//! memory tier and a durable disk tier (fjall).
//!
//! Each shard is one OS thread that owns the keys hashing to it and runs a
//! single-threaded tokio runtime. Nobody else touches a shard's state: work
//! reaches it as a closure, sent by message ([`Handle::run`]) or, when the
//! caller is already on that shard's thread, called in place. The network
//! front ends place each connection on a shard thread ([`Handle::spawn_on`]),
//! so a request for a key the shard owns costs no thread hop, and one for
//! another shard is one message each way. Messages are drained in batches
//! per wake-up.
//!
//! Writes are applied in memory, turned into disk records, and handed to one
//! writer thread that commits whatever has arrived as one fjall batch (group
//! commit). With [`Durability::Sync`] a write is acknowledged once its batch
//! is fsynced. Multi-key writes that span shards commit atomically
//! ([`Handle::atomic`]).
//!
//! The store knows nothing of functions, HTTP or RESP.

mod disk;
mod glob;
mod op;
mod shard;

pub use glob::{matches as glob_matches, prefix_pattern};
pub use op::{Op, OpError, OpResult, Reply, SetExpiry};
pub use shard::{SCAN_POSITION_BITS, ScanPage, Shard, ShardStats, key_hash, scan_position};
pub use squall_lattice as lattice;

use bytes::Bytes;
use disk::{Chunk, WriterMsg};
use squall_lattice::{Hlc, NodeId, PhysicalClock, Stamp, SystemClock};
use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};

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

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    /// Number of shard threads (at least 1).
    pub shards: usize,
    pub durability: Durability,
    /// This node's id; `None` reads it from the data dir, making one up on first start.
    pub node_id: Option<NodeId>,
    /// Messages a shard's mailbox holds before senders wait.
    pub mailbox: usize,
    /// Bytes of write log that trigger a checkpoint into the data keyspace.
    pub checkpoint_bytes: u64,
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            durability: Durability::Sync,
            node_id: None,
            mailbox: 4096,
            checkpoint_bytes: 64 * 1024 * 1024,
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
    Disk(#[from] fjall::Error),
    #[error("data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

type Work = Box<dyn FnOnce(&mut Shard) + Send>;

struct ShardRef {
    tx: mpsc::Sender<Work>,
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
    /// Cross-shard atomic batches take it exclusively while their parts apply;
    /// cross-shard atomic reads take it shared. Single-shard work never does.
    gate: tokio::sync::RwLock<()>,
    next_batch: AtomicU64,
    hlc: Arc<Hlc>,
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

impl Store {
    /// Opens (or creates) the store in `opts.data_dir`, recovering what is on disk.
    pub fn open(opts: Options) -> Result<Store, Error> {
        let shards = opts.shards.max(1);
        let (db, data, log) = disk::open(&opts.data_dir)?;
        // Whatever the log holds beyond the last checkpoint goes into `data` first.
        disk::checkpoint(&db, &data, &log, None)?;
        let next_entry = disk::next_log_entry(&log)?;
        let node = match opts.node_id {
            Some(n) => n,
            None => node_id(&opts.data_dir)?,
        };
        let hlc = Arc::new(Hlc::default());
        let now = SystemClock.now_ms();
        let (loaded, expired) = disk::load(&data, now)?;
        let mut states: Vec<Shard> = (0..shards).map(|i| Shard::new(i, node, hlc.clone())).collect();
        let mut latest = Stamp::default();
        for l in loaded {
            latest = latest.max(l.entry.latest_stamp());
            states[shard_index(&l.key, shards)].load(l.ns, l.key, l.entry);
        }
        // New writes must order after everything recovered, even if this
        // machine's clock went backwards across the restart.
        hlc.restore(latest.time);
        tracing::info!(
            keys = states.iter().map(|s| s.stats.keys.load(Ordering::Relaxed)).sum::<u64>(),
            dir = %opts.data_dir.display(),
            "store recovered"
        );

        let spawn_error = |e: std::io::Error| Error::DataDir(opts.data_dir.display().to_string(), e.to_string());
        let (writer_tx, writer_rx) = std::sync::mpsc::sync_channel::<WriterMsg>(1024);
        let (durable_tx, durable_rx): (Vec<_>, Vec<_>) = (0..shards).map(|_| watch::channel(0u64)).unzip();
        if !expired.is_empty() {
            let _ = writer_tx.send(WriterMsg::Chunk(Chunk { shard: 0, records: expired, upto: 0, batch: None }));
        }
        let writer = disk::Writer {
            db,
            data,
            log,
            sync: opts.durability == Durability::Sync,
            durable: durable_tx,
            next_entry,
            checkpoint_bytes: opts.checkpoint_bytes,
        };
        let writer = std::thread::Builder::new()
            .name("squall-writer".into())
            .spawn(move || writer.run(writer_rx))
            .map_err(spawn_error)?;

        let id = NEXT_STORE.fetch_add(1, Ordering::Relaxed);
        let mut refs = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        for (mut state, durable) in states.into_iter().zip(durable_rx) {
            let (tx, rx) = mpsc::channel::<Work>(opts.mailbox.max(1));
            let stop = Arc::new(Notify::new());
            let stats = state.stats.clone();
            let (rt_tx, rt_rx) = std::sync::mpsc::channel();
            state.writer = Some(writer_tx.clone());
            let stop2 = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("squall-shard-{}", state.id))
                .spawn(move || run_shard(id, state, rx, stop2, rt_tx))
                .map_err(spawn_error)?;
            let rt = rt_rx.recv().map_err(|_| Error::Closed)?;
            refs.push(ShardRef { tx, rt, durable, stats, stop });
            threads.push(thread);
        }
        drop(writer_tx);
        let inner = Inner {
            id,
            node,
            durability: opts.durability,
            shards: refs,
            gate: tokio::sync::RwLock::new(()),
            next_batch: AtomicU64::new(1),
            hlc,
        };
        Ok(Store { handle: Handle { inner: Arc::new(inner) }, threads, writer: Some(writer) })
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
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

fn shard_index(key: &[u8], shards: usize) -> usize {
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
    mut rx: mpsc::Receiver<Work>,
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
        let mut work = Vec::with_capacity(256);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut work, 256) => {
                    if n == 0 {
                        break;
                    }
                    let mut s = state.borrow_mut();
                    for w in work.drain(..) {
                        w(&mut s);
                    }
                    if s.has_pending() {
                        flush.notify_one();
                    }
                }
                _ = stop.notified() => break,
            }
        }
        // Work already accepted runs before the shard stops (a cross-shard
        // batch's part among it), then nothing more is accepted.
        rx.close();
        {
            let mut s = state.borrow_mut();
            while let Ok(w) = rx.try_recv() {
                w(&mut s);
            }
            s.send_pending();
        }
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
        state.borrow_mut().send_pending();
    }
}

/// Reclaims expired keys in the background (readers already skip them).
async fn reaper(state: Rc<RefCell<Shard>>, flush: Rc<Notify>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut s = state.borrow_mut();
        if s.reap_expired(10_000) > 0 {
            flush.notify_one();
        }
    }
}

/// A read a transaction made, to check at commit: `op` must still answer `saw`.
#[derive(Debug, Clone)]
pub struct Check {
    pub ns: Bytes,
    pub key: Bytes,
    pub op: Op,
    pub saw: OpResult,
}

/// A write of a transaction.
#[derive(Debug, Clone)]
pub struct Write {
    pub ns: Bytes,
    pub key: Bytes,
    pub op: Op,
}

/// The shards of a cross-shard commit vote; all apply only if all agree.
struct Vote {
    n: usize,
    state: std::sync::Mutex<VoteState>,
    all_in: std::sync::Condvar,
}

#[derive(Default)]
struct VoteState {
    arrived: usize,
    against: bool,
    /// A part was dropped without running (the store is closing).
    abandoned: bool,
}

impl Vote {
    fn new(n: usize) -> Vote {
        Vote { n, state: std::sync::Mutex::new(VoteState::default()), all_in: std::sync::Condvar::new() }
    }
}

/// One shard's say in a [`Vote`]; dropping it uncast abandons the vote.
struct Ballot {
    vote: Arc<Vote>,
    cast: bool,
}

impl Ballot {
    /// Casts this shard's vote and waits for every other; true if all were for it.
    fn cast(mut self, holds: bool) -> bool {
        self.cast = true;
        let v = &self.vote;
        let mut st = v.state.lock().expect("vote");
        st.arrived += 1;
        st.against |= !holds;
        v.all_in.notify_all();
        while st.arrived < v.n && !st.abandoned {
            st = v.all_in.wait(st).expect("vote");
        }
        !st.against && !st.abandoned
    }
}

impl Drop for Ballot {
    fn drop(&mut self) {
        if !self.cast {
            let mut st = self.vote.state.lock().expect("vote");
            st.abandoned = true;
            self.vote.all_in.notify_all();
        }
    }
}

/// Work handed to a shard, answered at once or later.
pub enum Dispatched<R> {
    Ready(R),
    Waiting(oneshot::Receiver<R>),
}

impl<R> Dispatched<R> {
    pub async fn result(self) -> Result<R, Error> {
        match self {
            Dispatched::Ready(r) => Ok(r),
            Dispatched::Waiting(rx) => rx.await.map_err(|_| Error::Closed),
        }
    }
}

fn boxed<R, F>(f: F) -> (Work, oneshot::Receiver<R>)
where
    R: Send + 'static,
    F: FnOnce(&mut Shard) -> R + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let work: Work = Box::new(move |s| {
        let _ = tx.send(f(s));
    });
    (work, rx)
}

enum Gate<'a> {
    Read(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'a, ()>),
    Write(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'a, ()>),
}

/// Applies `op`; the answer must wait for everything the shard holds so far,
/// not only this op's own writes: a read (or a write that changed nothing)
/// may have seen another client's write that is not yet durable.
fn apply_one(s: &mut Shard, ns: &Bytes, key: &Bytes, op: Op) -> (OpResult, Written) {
    let r = s.apply(ns, key, op);
    (r, Written { shard: s.id, seq: s.seq() })
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

    /// Calls `f` on the shard now if this thread is that shard's.
    fn try_local<R, F: FnOnce(&mut Shard) -> R>(&self, shard: usize, f: F) -> Result<R, F> {
        LOCAL.with(|l| match &*l.borrow() {
            Some(local) if local.store == self.inner.id && local.shard == shard => {
                let mut s = local.state.borrow_mut();
                let r = f(&mut s);
                if s.has_pending() {
                    local.flush.notify_one();
                }
                Ok(r)
            }
            _ => Err(f),
        })
    }

    /// Starts `f` on shard `shard`: in place if this is its thread, otherwise
    /// by message (waiting only for room in its mailbox). Work dispatched to
    /// one shard runs in dispatch order.
    pub async fn dispatch<R, F>(&self, shard: usize, f: F) -> Result<Dispatched<R>, Error>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        let f = match self.try_local(shard, f) {
            Ok(r) => return Ok(Dispatched::Ready(r)),
            Err(f) => f,
        };
        let (work, rx) = boxed(f);
        self.inner.shards[shard].tx.send(work).await.map_err(|_| Error::Closed)?;
        Ok(Dispatched::Waiting(rx))
    }

    /// The shard whose thread this is, if it is one of this store's shard threads.
    pub fn current_shard(&self) -> Option<usize> {
        LOCAL.with(|l| l.borrow().as_ref().filter(|l| l.store == self.inner.id).map(|l| l.shard))
    }

    fn is_local(&self, shard: usize) -> bool {
        self.current_shard() == Some(shard)
    }

    /// Like [`Handle::dispatch`] with mailbox room already reserved (or none needed: local).
    fn dispatch_with<R, F>(&self, shard: usize, permit: Option<mpsc::Permit<'_, Work>>, f: F) -> Dispatched<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        let f = match self.try_local(shard, f) {
            Ok(r) => return Dispatched::Ready(r),
            Err(f) => f,
        };
        let (work, rx) = boxed(f);
        match permit {
            Some(p) => p.send(work),
            // Not local and no permit cannot happen (`atomic` reserves for every remote shard);
            // the receiver then reports the store as closed.
            None => drop(work),
        }
        Dispatched::Waiting(rx)
    }

    /// Orders `involved` remote shards first, the local one (if any) last, and
    /// reserves room in every remote mailbox, so that once one part of a
    /// batch is under way the others cannot fail to be sent.
    async fn reserve_mailboxes(&self, involved: &mut [usize]) -> Result<Vec<Option<mpsc::Permit<'_, Work>>>, Error> {
        involved.sort_by_key(|s| self.is_local(*s));
        let mut permits = Vec::with_capacity(involved.len());
        for &shard in involved.iter() {
            permits.push(if self.is_local(shard) {
                None
            } else {
                Some(self.inner.shards[shard].tx.reserve().await.map_err(|_| Error::Closed)?)
            });
        }
        Ok(permits)
    }

    /// Runs `f` on shard `shard` and returns its result.
    pub async fn run<R, F>(&self, shard: usize, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        self.dispatch(shard, f).await?.result().await
    }

    /// In sync mode, waits until shard `w.shard`'s writes up to `w.seq` are on disk.
    pub async fn durable(&self, w: Written) -> Result<(), Error> {
        if self.inner.durability == Durability::Async || w.seq == 0 {
            return Ok(());
        }
        let mut rx = self.inner.shards[w.shard].durable.clone();
        rx.wait_for(|d| *d >= w.seq).await.map(|_| ()).map_err(|_| Error::Closed)
    }

    /// Applies `op` to `key` and answers once it is as durable as the store promises.
    pub async fn exec(&self, ns: &Bytes, key: Bytes, op: Op) -> Result<OpResult, Error> {
        let (r, w) = self.dispatch_op(ns, key, op).await?.result().await?;
        self.durable(w).await?;
        Ok(r)
    }

    /// Starts `op` on its shard; the answer says what to wait for before acknowledging.
    pub async fn dispatch_op(&self, ns: &Bytes, key: Bytes, op: Op) -> Result<Dispatched<(OpResult, Written)>, Error> {
        let shard = self.shard_of(&key);
        let ns = ns.clone();
        self.dispatch(shard, move |s| apply_one(s, &ns, &key, op)).await
    }

    /// Applies `ops` as one atomic unit: no reader that uses this method sees
    /// part of it, and on disk it is all there or none of it. Each op still
    /// answers on its own (a wrong-type op fails alone, as in Redis's EXEC).
    pub async fn atomic(&self, ns: &Bytes, ops: Vec<(Bytes, Op)>) -> Result<Vec<OpResult>, Error> {
        let n = self.shards();
        let mut groups: Vec<Vec<(usize, Bytes, Op)>> = (0..n).map(|_| Vec::new()).collect();
        let writes = ops.iter().any(|(_, op)| op.is_write());
        let total = ops.len();
        for (i, (key, op)) in ops.into_iter().enumerate() {
            groups[self.shard_of(&key)].push((i, key, op));
        }
        let involved: Vec<usize> = (0..n).filter(|s| !groups[*s].is_empty()).collect();
        let mut results: Vec<Option<OpResult>> = (0..total).map(|_| None).collect();
        let mut written = Vec::new();
        {
            // One shard applies its part in one step: atomic without the gate.
            let _guard = match (involved.len() > 1, writes) {
                (false, _) => None,
                (true, true) => Some(Gate::Write(self.inner.gate.write().await)),
                (true, false) => Some(Gate::Read(self.inner.gate.read().await)),
            };
            let batch = (involved.len() > 1 && writes)
                .then(|| (self.inner.next_batch.fetch_add(1, Ordering::Relaxed), involved.len()));
            // Room in every remote mailbox first: once one part is applied,
            // the others must not fail to be sent (the writer would wait for
            // them forever). Remote parts go before the local one.
            let mut involved = involved;
            let permits = self.reserve_mailboxes(&mut involved).await?;
            let mut pending = Vec::with_capacity(involved.len());
            for (&shard, permit) in involved.iter().zip(permits) {
                let group = std::mem::take(&mut groups[shard]);
                let ns = ns.clone();
                pending.push(self.dispatch_with(shard, permit, move |s| {
                    let out: Vec<(usize, OpResult)> =
                        group.into_iter().map(|(i, key, op)| (i, s.apply(&ns, &key, op))).collect();
                    if let Some(b) = batch {
                        s.send_batch_part(b);
                    }
                    (out, Written { shard: s.id, seq: s.seq() })
                }));
            }
            for p in pending {
                let (out, w) = p.result().await?;
                for (i, r) in out {
                    results[i] = Some(r);
                }
                written.push(w);
            }
        }
        for w in written {
            self.durable(w).await?;
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(Reply::Nil))).collect())
    }

    /// Commits a transaction: if every check still holds (its read answers
    /// as it did), applies every write, all stamped with one HLC time, as one
    /// atomic unit; otherwise applies nothing and answers `None` (a conflict).
    ///
    /// Checks and writes on one shard run in one step. Across shards, every
    /// involved shard checks its part, then all wait for each other's votes
    /// (holding their threads, so nothing can change in between), then all
    /// apply or none does; the gate keeps such commits one at a time.
    pub async fn commit(&self, checks: Vec<Check>, writes: Vec<Write>) -> Result<Option<Vec<OpResult>>, Error> {
        let n = self.shards();
        // Per shard: its checks, and its writes with their place in the answer.
        type Part = (Vec<Check>, Vec<(usize, Write)>);
        let mut parts: Vec<Part> = (0..n).map(|_| (Vec::new(), Vec::new())).collect();
        let total = writes.len();
        for c in checks {
            parts[self.shard_of(&c.key)].0.push(c);
        }
        for (i, w) in writes.into_iter().enumerate() {
            parts[self.shard_of(&w.key)].1.push((i, w));
        }
        let mut involved: Vec<usize> = (0..n).filter(|s| !parts[*s].0.is_empty() || !parts[*s].1.is_empty()).collect();
        if involved.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let stamp = Stamp::new(self.inner.hlc.now(), self.inner.node);
        let many = involved.len() > 1;
        let _gate = if many { Some(self.inner.gate.write().await) } else { None };
        let batch =
            (many && total > 0).then(|| (self.inner.next_batch.fetch_add(1, Ordering::Relaxed), involved.len()));
        let vote = Arc::new(Vote::new(involved.len()));
        let permits = self.reserve_mailboxes(&mut involved).await?;
        let mut pending = Vec::with_capacity(involved.len());
        for (&shard, permit) in involved.iter().zip(permits) {
            let (checks, writes) = std::mem::take(&mut parts[shard]);
            let ballot = Ballot { vote: vote.clone(), cast: false };
            pending.push(self.dispatch_with(shard, permit, move |s| {
                let holds = checks.into_iter().all(|c| s.apply(&c.ns, &c.key, c.op) == c.saw);
                if !ballot.cast(holds) {
                    return None;
                }
                let out: Vec<(usize, OpResult)> =
                    writes.into_iter().map(|(i, w)| (i, s.apply_stamped(&w.ns, &w.key, w.op, stamp))).collect();
                if let Some(b) = batch {
                    s.send_batch_part(b);
                }
                Some((out, Written { shard: s.id, seq: s.seq() }))
            }));
        }
        let mut results: Vec<Option<OpResult>> = (0..total).map(|_| None).collect();
        let mut written = Vec::with_capacity(pending.len());
        let mut committed = true;
        for p in pending {
            match p.result().await? {
                Some((out, w)) => {
                    for (i, r) in out {
                        results[i] = Some(r);
                    }
                    written.push(w);
                }
                None => committed = false,
            }
        }
        drop(_gate);
        if !committed {
            return Ok(None);
        }
        for w in written {
            self.durable(w).await?;
        }
        Ok(Some(results.into_iter().map(|r| r.unwrap_or(Ok(Reply::Nil))).collect()))
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
        let mut shard = (cursor >> SCAN_POSITION_BITS) as usize;
        let mut from = cursor & ((1 << SCAN_POSITION_BITS) - 1);
        let mut keys = Vec::new();
        while shard < self.shards() {
            let (ns, pattern, kind) = (ns.clone(), pattern.clone(), kind.clone());
            let want = count.saturating_sub(keys.len()).max(1);
            let page = self.run(shard, move |s| s.scan(&ns, from, want, pattern.as_deref(), kind.as_deref())).await?;
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

    /// Number of keys in `ns` (keys expired but not yet reclaimed included, as in Redis).
    pub async fn len(&self, ns: &Bytes) -> Result<u64, Error> {
        let mut total = 0;
        for shard in 0..self.shards() {
            let ns = ns.clone();
            total += self.run(shard, move |s| s.len(&ns) as u64).await?;
        }
        Ok(total)
    }

    /// Waits until everything written so far is on disk and fsynced (whatever the durability mode).
    pub async fn flush(&self) -> Result<(), Error> {
        // Each shard first hands over what it holds; the writer answers once
        // everything it received before is committed.
        let mut waits = Vec::new();
        for shard in 0..self.shards() {
            let (tx, rx) = oneshot::channel();
            self.run(shard, move |s| s.flush_to_writer(tx)).await?;
            waits.push(rx);
        }
        for rx in waits {
            rx.await.map_err(|_| Error::Closed)?;
        }
        Ok(())
    }
}
