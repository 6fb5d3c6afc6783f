//! The host side of the `handler` world: the state each instance's store holds.

use squall_lattice::Clock;
use std::cell::RefCell;
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::Invocation;
use crate::capture::Capture;
use crate::link::{CallError, Called, Link, NoLink, SendError};
use crate::txn::{Answer, BoxFuture, Call, Spent, StoreError, Txn};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "handler",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "squall:function/calls.pending": super::PendingCall },
    });
}

use bindings::squall::function::{calls, context, log, messages, store};

/// Largest key a guest may use.
const MAX_KEY: usize = 64 * 1024;
/// Largest value (or set member, map field) a guest may write.
const MAX_VALUE: usize = 8 * 1024 * 1024;
/// Lines and bytes of log one invocation keeps; the rest is counted, not kept.
const MAX_LOG_LINES: usize = 1000;
const MAX_LOG_BYTES: usize = 256 * 1024;
/// Longest single log line kept.
const MAX_LINE: usize = 4096;
/// Most handles one `await-all` takes (the calls a request may make).
const MAX_AWAIT_ALL: usize = 10_000;
/// Host states of torn-down instances each thread keeps for its next ones.
const SPARE_HOSTS: usize = 8;

/// A function's environment values.
type Env = Vec<(String, String)>;

thread_local! {
    static SPARE: RefCell<Vec<Host>> = const { RefCell::new(Vec::new()) };
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Stdout => "stdout",
            Level::Stderr => "stderr",
        }
    }
}

/// One line of an invocation's log.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub level: Level,
    pub message: String,
}

/// `deadline` as milliseconds since the Unix epoch on `clock` (what the guest sees).
fn wall_ms(clock: &Clock, deadline: Instant) -> u64 {
    clock.now_ms() + deadline.saturating_duration_since(Instant::now()).as_millis() as u64
}

/// Holds an invocation to its memory limit: the guest's linear memory and
/// what the host holds for it (its transaction's reads and buffered
/// writes, its log) together. Denies memory growth past it, and remembers
/// that it did.
pub(crate) struct Limiter {
    pub max: usize,
    /// The guest's linear memories, all of them.
    pub memory: usize,
    /// Host memory held for the invocation, as of its last store call or join.
    pub held: usize,
    /// The guest asked for more memory than the limit left it.
    pub hit: bool,
    /// The host's share went over the limit (the invocation was ended).
    pub host_hit: bool,
}

impl Limiter {
    fn new(max: usize) -> Limiter {
        Limiter { max, memory: 0, held: 0, hit: false, host_hit: false }
    }

    /// Why the invocation failed on its memory limit, if it did.
    pub fn failure(&self) -> Option<String> {
        let mib = |b: usize| b as f64 / f64::from(1 << 20);
        (self.hit || self.host_hit).then(|| {
            format!(
                "memory limit of {} MiB exceeded (guest memory {:.1} MiB, held by the host for it {:.1} MiB: buffered writes, reads, log)",
                self.max >> 20,
                mib(self.memory),
                mib(self.held)
            )
        })
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Every memory of the instance counts: this one grows by the difference.
        let memory = self.memory.saturating_sub(current).saturating_add(desired);
        if memory.saturating_add(self.held) > self.max {
            self.hit = true;
            return Ok(false);
        }
        self.memory = memory;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

pub(crate) struct Host {
    wasi: WasiCtx,
    /// The component and environment values `wasi` was made for.
    digest: String,
    env: Env,
    table: ResourceTable,
    pub limiter: Limiter,
    pub txn: Box<dyn Txn>,
    /// Calls and messages.
    pub link: Box<dyn Link>,
    pub log: Vec<LogLine>,
    log_bytes: usize,
    /// Bytes of the forks of this invocation's transaction that calls it
    /// started hold, until they are settled.
    forked: usize,
    dropped: usize,
    id: String,
    function: String,
    version: u64,
    /// When the running call must end (while instantiating: a bound on that).
    pub deadline: Instant,
    /// The node's clock: log times and the deadline the guest sees.
    clock: Clock,
    /// `deadline` as the guest sees it, once it asked during this call.
    deadline_ms: Option<u64>,
    pub timeout: Duration,
    pub store_time: Duration,
    /// Time spent waiting for callees and messages.
    pub call_time: Duration,
    pub timed_out: bool,
    /// A store failure that should end the invocation (the store is closing).
    pub fatal: Option<String>,
    /// The trap's full report (with the wasm backtrace), for the log.
    pub trap_detail: Option<String>,
    stdout: Capture,
    stderr: Capture,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Host {
    /// The state of an instance of `inv`'s function, before any call: its
    /// environment values and memory limit come from `inv`, the call's own
    /// parts arrive with [`Host::begin`]. Until then `deadline` bounds the
    /// instantiation and the store is out of reach.
    ///
    /// A spare state left on this thread by a torn-down instance is reused
    /// when there is one: its buffers, and its WASI context if it was made
    /// for this very function version (component `digest`) with the same
    /// environment values (building one seeds six random generators, about
    /// a tenth of an instantiation).
    pub fn new(digest: &str, inv: &Invocation, deadline: Instant, output_cap: usize, clock: &Clock) -> Host {
        let spare = SPARE
            .try_with(|spare| {
                let mut spare = spare.borrow_mut();
                let i = spare.iter().rposition(|h| h.made_for(digest, inv)).or(spare.len().checked_sub(1))?;
                Some(spare.remove(i))
            })
            .ok()
            .flatten();
        match spare {
            Some(host) if host.stdout.cap() == output_cap => host.renew(digest, inv, deadline, clock),
            _ => Host::assemble(
                digest,
                inv,
                deadline,
                clock,
                None,
                (Capture::new(output_cap), Capture::new(output_cap)),
                (String::new(), String::new()),
            ),
        }
    }

    fn made_for(&self, digest: &str, inv: &Invocation) -> bool {
        self.digest == digest && self.function == inv.function && self.version == inv.version && self.env == inv.env
    }

    /// This state, reused for an instance of `inv`'s function.
    fn renew(self, digest: &str, inv: &Invocation, deadline: Instant, clock: &Clock) -> Host {
        let reuse_wasi = self.made_for(digest, inv);
        // Every field is named, so that a new one gets a decision here.
        let Host {
            wasi,
            digest: made_for,
            env,
            table: _,
            limiter: _,
            txn: _,
            link: _,
            log: _,
            log_bytes: _,
            forked: _,
            dropped: _,
            id,
            function,
            version: _,
            deadline: _,
            clock: _,
            deadline_ms: _,
            timeout: _,
            store_time: _,
            call_time: _,
            timed_out: _,
            fatal: _,
            trap_detail: _,
            stdout,
            stderr,
        } = self;
        Host::assemble(
            digest,
            inv,
            deadline,
            clock,
            reuse_wasi.then_some((wasi, made_for, env)),
            (stdout, stderr),
            (id, function),
        )
    }

    /// A state for `inv`'s function from parts: a WASI context already made
    /// for it (with its environment), output buffers, strings to reuse.
    fn assemble(
        digest: &str,
        inv: &Invocation,
        deadline: Instant,
        clock: &Clock,
        wasi: Option<(WasiCtx, String, Env)>,
        (stdout, stderr): (Capture, Capture),
        (mut id, mut function): (String, String),
    ) -> Host {
        stdout.clear();
        stderr.clear();
        let (wasi, digest, env) = wasi.unwrap_or_else(|| {
            // No preopened directories, no network, no host environment or
            // arguments: only the function's own environment values.
            let wasi = WasiCtx::builder()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .envs(&inv.env)
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build();
            (wasi, digest.to_string(), inv.env.clone())
        });
        id.clone_from(&inv.id);
        function.clone_from(&inv.function);
        Host {
            wasi,
            digest,
            env,
            table: ResourceTable::new(),
            limiter: Limiter::new(inv.memory),
            txn: Box::new(Spent),
            link: Box::new(NoLink),
            log: Vec::new(),
            log_bytes: 0,
            forked: 0,
            dropped: 0,
            id,
            function,
            version: inv.version,
            deadline,
            clock: clock.clone(),
            deadline_ms: None,
            timeout: inv.timeout,
            store_time: Duration::ZERO,
            call_time: Duration::ZERO,
            timed_out: false,
            fatal: None,
            trap_detail: None,
            stdout,
            stderr,
        }
    }

    /// Leaves this state (of a torn-down instance) for the next instance
    /// made on this thread, emptied of what its calls left.
    pub fn spare(mut self) {
        self.table = ResourceTable::new();
        self.txn = Box::new(Spent);
        self.link = Box::new(NoLink);
        self.log = Vec::new();
        self.stdout.clear();
        self.stderr.clear();
        let _ = SPARE.try_with(move |spare| {
            // The oldest goes: states of functions no longer called here
            // (or deleted) do not linger.
            let mut spare = spare.borrow_mut();
            if spare.len() == SPARE_HOSTS {
                spare.remove(0);
            }
            spare.push(self);
        });
    }

    /// Starts the call `inv` (of the function this instance was made for),
    /// reaching the store through `txn`, to end by `deadline`.
    pub fn begin(&mut self, inv: &Invocation, txn: Box<dyn Txn>, link: Box<dyn Link>, deadline: Instant) {
        self.txn = txn;
        self.link = link;
        self.id.clone_from(&inv.id);
        self.deadline = deadline;
        self.deadline_ms = None;
        self.timeout = inv.timeout;
    }

    /// Nothing logged or printed, no store call made, no failure noted.
    pub fn is_clean(&self) -> bool {
        self.log.is_empty()
            && self.dropped == 0
            && self.fatal.is_none()
            && self.store_time.is_zero()
            && self.call_time.is_zero()
            && self.stdout.is_empty()
            && self.stderr.is_empty()
    }

    /// Appends a line, within the invocation's log budget.
    pub fn push(&mut self, level: Level, mut message: String) {
        if self.log.len() >= MAX_LOG_LINES || self.log_bytes + message.len() > MAX_LOG_BYTES {
            self.dropped += 1;
            return;
        }
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [truncated]");
        }
        self.log_bytes += message.len();
        self.log.push(LogLine { at_ms: self.clock.now_ms(), level, message });
    }

    /// Moves what the guest printed into the log, and notes dropped lines.
    pub fn capture_output(&mut self) {
        for (level, pipe) in [(Level::Stdout, self.stdout.contents()), (Level::Stderr, self.stderr.contents())] {
            for line in String::from_utf8_lossy(&pipe).lines() {
                self.push(level, line.to_string());
            }
        }
        if self.dropped > 0 {
            let n = std::mem::take(&mut self.dropped);
            self.log.push(LogLine {
                at_ms: self.clock.now_ms(),
                level: Level::Warn,
                message: format!(
                    "{n} more log lines were dropped (limit: {MAX_LOG_LINES} lines, {MAX_LOG_BYTES} bytes)"
                ),
            });
        }
    }

    /// Why the guest's output was cut off, if it was.
    pub fn output_overflow(&self) -> Option<String> {
        let full = |p: &Capture| p.len() + 64 * 1024 > p.cap();
        (full(&self.stdout) || full(&self.stderr))
            .then(|| format!("output limit of {} KiB per stream exceeded", self.stdout.cap() >> 10))
    }

    /// A Rust guest's panic message, from what it printed to stderr.
    pub fn panic_message(&self) -> Option<String> {
        let err = self.stderr.contents();
        let text = String::from_utf8_lossy(&err);
        let start = text.find("panicked at ")?;
        let rest = &text[start..];
        let msg: Vec<&str> = rest.lines().take_while(|l| !l.starts_with("note: ")).collect();
        Some(msg.join(" "))
    }

    /// A store call; the outer error ends the invocation (its host-side
    /// state went over the memory limit).
    async fn call(&mut self, call: Call) -> wasmtime::Result<Result<Answer, StoreError>> {
        if let Err(e) = check_sizes(&call) {
            return Ok(Err(e));
        }
        let started = Instant::now();
        let r = self.txn.call(call).await;
        self.store_time += started.elapsed();
        if let Err(StoreError::Unavailable(why)) = &r
            && self.fatal.is_none()
        {
            self.fatal = Some(format!("store unavailable: {why}"));
        }
        self.check_held()?;
        Ok(r)
    }

    /// Ends the invocation if the guest's memory and what the host holds
    /// for it are over its memory limit together.
    fn check_held(&mut self) -> wasmtime::Result<()> {
        self.limiter.held = self.txn.held() + self.forked + self.log_bytes + self.log.len() * size_of::<LogLine>();
        if self.limiter.held.saturating_add(self.limiter.memory) > self.limiter.max {
            self.limiter.host_hit = true;
            return Err(wasmtime::Error::msg("the invocation's host-side state is over its memory limit"));
        }
        Ok(())
    }
}

fn too_large(what: &str, len: usize, max: usize) -> StoreError {
    StoreError::TooLarge(format!("{what} of {len} bytes is over the limit of {max}"))
}

fn check_sizes(call: &Call) -> Result<(), StoreError> {
    let key = match call {
        Call::Get(k)
        | Call::Put(k, _)
        | Call::Delete(k)
        | Call::Increment(k, _)
        | Call::Counter(k)
        | Call::SetAdd(k, _)
        | Call::SetRemove(k, _)
        | Call::SetMembers(k)
        | Call::MapGet(k, _)
        | Call::MapPut(k, _, _)
        | Call::MapRemove(k, _)
        | Call::MapEntries(k)
        | Call::Scan(k, _) => k,
    };
    if key.len() > MAX_KEY {
        return Err(too_large("key", key.len(), MAX_KEY));
    }
    let values: Vec<&Vec<u8>> = match call {
        Call::Put(_, v) | Call::MapGet(_, v) | Call::MapRemove(_, v) => vec![v],
        Call::MapPut(_, f, v) => vec![f, v],
        Call::SetAdd(_, ms) | Call::SetRemove(_, ms) => ms.iter().collect(),
        _ => Vec::new(),
    };
    match values.into_iter().find(|v| v.len() > MAX_VALUE) {
        Some(v) => Err(too_large("value", v.len(), MAX_VALUE)),
        None => Ok(()),
    }
}

fn wit_error(e: StoreError) -> store::StoreError {
    match e {
        StoreError::WrongType => store::StoreError::WrongType,
        StoreError::NotInteger => store::StoreError::NotInteger,
        StoreError::Unavailable(m) => store::StoreError::Unavailable(m),
        StoreError::TooLarge(m) => store::StoreError::TooLarge(m),
    }
}

/// A store answer of the wrong shape means the transaction is broken: end the invocation.
fn shape(call: &str, a: &Answer) -> wasmtime::Error {
    wasmtime::Error::msg(format!("store returned {a:?} for {call}"))
}

type R<T> = wasmtime::Result<Result<T, store::StoreError>>;

macro_rules! answer {
    ($self:ident, $call:expr, $name:literal, $pat:pat => $out:expr) => {
        match $self.call($call).await? {
            Ok($pat) => Ok(Ok($out)),
            Ok(other) => Err(shape($name, &other)),
            Err(e) => Ok(Err(wit_error(e))),
        }
    };
}

impl store::Host for Host {
    async fn get(&mut self, key: Vec<u8>) -> R<Option<Vec<u8>>> {
        answer!(self, Call::Get(key), "get", Answer::Value(v) => v)
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> R<()> {
        answer!(self, Call::Put(key, value), "put", Answer::Unit => ())
    }

    async fn delete(&mut self, key: Vec<u8>) -> R<bool> {
        answer!(self, Call::Delete(key), "delete", Answer::Bool(b) => b)
    }

    async fn increment(&mut self, key: Vec<u8>, by: i64) -> R<i64> {
        answer!(self, Call::Increment(key, by), "increment", Answer::Int(n) => n)
    }

    async fn counter(&mut self, key: Vec<u8>) -> R<i64> {
        answer!(self, Call::Counter(key), "counter", Answer::Int(n) => n)
    }

    async fn set_add(&mut self, key: Vec<u8>, members: Vec<Vec<u8>>) -> R<u32> {
        answer!(self, Call::SetAdd(key, members), "set-add", Answer::Count(n) => n)
    }

    async fn set_remove(&mut self, key: Vec<u8>, members: Vec<Vec<u8>>) -> R<u32> {
        answer!(self, Call::SetRemove(key, members), "set-remove", Answer::Count(n) => n)
    }

    async fn set_members(&mut self, key: Vec<u8>) -> R<Vec<Vec<u8>>> {
        answer!(self, Call::SetMembers(key), "set-members", Answer::List(l) => l)
    }

    async fn map_get(&mut self, key: Vec<u8>, field: Vec<u8>) -> R<Option<Vec<u8>>> {
        answer!(self, Call::MapGet(key, field), "map-get", Answer::Value(v) => v)
    }

    async fn map_put(&mut self, key: Vec<u8>, field: Vec<u8>, value: Vec<u8>) -> R<()> {
        answer!(self, Call::MapPut(key, field, value), "map-put", Answer::Unit => ())
    }

    async fn map_remove(&mut self, key: Vec<u8>, field: Vec<u8>) -> R<bool> {
        answer!(self, Call::MapRemove(key, field), "map-remove", Answer::Bool(b) => b)
    }

    async fn map_entries(&mut self, key: Vec<u8>) -> R<Vec<(Vec<u8>, Vec<u8>)>> {
        answer!(self, Call::MapEntries(key), "map-entries", Answer::Pairs(p) => p)
    }

    async fn scan(&mut self, prefix: Vec<u8>, limit: u32) -> R<Vec<Vec<u8>>> {
        answer!(self, Call::Scan(prefix, limit), "scan", Answer::List(l) => l)
    }
}

impl log::Host for Host {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.push(level, message);
        Ok(())
    }
}

impl context::Host for Host {
    async fn invocation_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.id.clone())
    }

    async fn function_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.function.clone())
    }

    async fn function_version(&mut self) -> wasmtime::Result<u64> {
        Ok(self.version)
    }

    async fn deadline_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(*self.deadline_ms.get_or_insert_with(|| wall_ms(&self.clock, self.deadline)))
    }

    async fn attempt(&mut self) -> wasmtime::Result<u32> {
        Ok(self.link.attempt())
    }

    async fn root_invocation_id(&mut self) -> wasmtime::Result<String> {
        let root = self.link.root_id();
        Ok(if root.is_empty() { self.id.clone() } else { root.to_string() })
    }
}

/// A spawned call, as the guest's `pending` resource holds it.
pub struct PendingCall {
    invocation_id: String,
    /// Its run, until it is awaited.
    run: Option<Run>,
}

/// A callee's run, and the bytes of the fork of the caller's transaction
/// it was given (held for the caller until the run is settled).
type Run = (BoxFuture<'static, Called>, usize);

fn wit_call_error(e: CallError) -> calls::CallError {
    match e {
        CallError::NotFound(m) => calls::CallError::NotFound(m),
        CallError::Failed { code, message } => calls::CallError::Failed(calls::Failure { code, message }),
        CallError::Limit(m) => calls::CallError::Limit(m),
        CallError::Invalid(m) => calls::CallError::Invalid(m),
        CallError::Unavailable(m) => calls::CallError::Unavailable(m),
    }
}

type CallResult = Result<Vec<u8>, calls::CallError>;

impl Host {
    /// Starts a call over a fork of this invocation's transaction; the
    /// fork's bytes count for this invocation until the call is settled
    /// (the outer error ends the invocation: they took it over its limit).
    fn start(&mut self, name: String, input: Vec<u8>) -> wasmtime::Result<Result<PendingCall, calls::CallError>> {
        let fork = self.txn.fork();
        let charged = fork.held();
        let started = match self.link.spawn(name, input, fork) {
            Ok(started) => started,
            Err(e) => return Ok(Err(wit_call_error(e))),
        };
        self.forked += charged;
        let pending = PendingCall { invocation_id: started.invocation_id, run: Some((started.run, charged)) };
        self.check_held()?;
        Ok(Ok(pending))
    }

    /// The end of a callee's run: its writes join this invocation's if it succeeded.
    fn settle(&mut self, called: Called) -> CallResult {
        let Called { outcome, txn } = called;
        if let (Ok(_), Some(txn)) = (&outcome, txn)
            && let Err(why) = self.txn.join(txn)
        {
            return Err(calls::CallError::Invalid(format!("join_failed: the callee's writes were dropped: {why}")));
        }
        outcome.map_err(wit_call_error)
    }

    /// Waits for a call's run (if it could be started) and settles it.
    /// The outer error ends the invocation (the callee's writes took its
    /// host-side state over the memory limit).
    async fn finish(&mut self, run: Result<Run, calls::CallError>) -> wasmtime::Result<CallResult> {
        let (run, charged) = match run {
            Ok(run) => run,
            Err(e) => return Ok(Err(e)),
        };
        let called = run.await;
        self.forked = self.forked.saturating_sub(charged);
        let r = self.settle(called);
        self.check_held()?;
        Ok(r)
    }

    fn take_run(&mut self, pending: &Resource<PendingCall>) -> wasmtime::Result<Result<Run, calls::CallError>> {
        let p = self.table.get_mut(pending)?;
        Ok(p.run
            .take()
            .ok_or_else(|| calls::CallError::Invalid(format!("the call {} was awaited already", p.invocation_id))))
    }
}

impl calls::Host for Host {
    async fn call(&mut self, name: String, input: Vec<u8>) -> wasmtime::Result<CallResult> {
        let started = Instant::now();
        let run = self.start(name, input)?.map(|mut p| p.run.take().expect("a fresh call"));
        let r = self.finish(run).await?;
        self.call_time += started.elapsed();
        Ok(r)
    }

    async fn spawn(
        &mut self,
        name: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Resource<PendingCall>, calls::CallError>> {
        match self.start(name, input)? {
            Ok(p) => Ok(Ok(self.table.push(p)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn await_all(&mut self, pending: Vec<Resource<PendingCall>>) -> wasmtime::Result<Vec<CallResult>> {
        if pending.len() > MAX_AWAIT_ALL {
            // More handles than a request may make calls: a guest's mistake
            // (or a try at making the host allocate without bound).
            return Err(wasmtime::Error::msg(format!(
                "await-all of {} handles is over the limit of {MAX_AWAIT_ALL}",
                pending.len()
            )));
        }
        let started = Instant::now();
        // Every run is under way already: waiting for them in order takes
        // as long as waiting for all at once, and joins them in that order.
        let mut runs = Vec::with_capacity(pending.len());
        for p in &pending {
            runs.push(self.take_run(p)?);
        }
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            out.push(self.finish(run).await?);
        }
        self.call_time += started.elapsed();
        Ok(out)
    }
}

impl calls::HostPending for Host {
    async fn invocation_id(&mut self, pending: Resource<PendingCall>) -> wasmtime::Result<String> {
        Ok(self.table.get(&pending)?.invocation_id.clone())
    }

    async fn await_(&mut self, pending: Resource<PendingCall>) -> wasmtime::Result<CallResult> {
        let started = Instant::now();
        let run = self.take_run(&pending)?;
        let r = self.finish(run).await?;
        self.call_time += started.elapsed();
        Ok(r)
    }

    async fn drop(&mut self, pending: Resource<PendingCall>) -> wasmtime::Result<()> {
        // A call never awaited runs to its end; its writes are not joined,
        // and its fork is no longer this invocation's.
        if let Some((_, charged)) = self.table.delete(pending)?.run {
            self.forked = self.forked.saturating_sub(charged);
        }
        Ok(())
    }
}

fn wit_send_error(e: SendError) -> messages::SendError {
    match e {
        SendError::NoSuchInvocation(m) => messages::SendError::NoSuchInvocation(m),
        SendError::MailboxFull(m) => messages::SendError::MailboxFull(m),
        SendError::TooLarge(m) => messages::SendError::TooLarge(m),
    }
}

impl messages::Host for Host {
    async fn send(&mut self, to: String, message: Vec<u8>) -> wasmtime::Result<Result<(), messages::SendError>> {
        Ok(self.link.send(&to, message).map_err(wit_send_error))
    }

    async fn recv(&mut self, timeout_ms: u32) -> wasmtime::Result<Option<Vec<u8>>> {
        let started = Instant::now();
        let left = self.deadline.saturating_duration_since(started);
        let got = self.link.recv(Duration::from_millis(timeout_ms.into()).min(left)).await;
        self.call_time += started.elapsed();
        Ok(got)
    }
}
