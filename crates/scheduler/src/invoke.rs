//! Running an invocation: admission, placement on a shard thread, then its
//! attempts. An attempt runs the guest in a fresh instance over a private
//! transaction; a successful one is committed atomically, checked against
//! what it read. If that data changed before the commit, the invocation
//! runs again after a short, growing pause, up to `max_conflict_retries`
//! times. That policy ([`commit_loop`]) drives any [`Attempts`]: the real
//! one runs wasmtime and commits to the store; the tests' one is scripted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use squall_runtime::{Failure, FailureCode, Invocation, Level, LogLine, Used};
use squall_store::lattice::Clock;
use squall_store::{Check, Write};

use crate::calls::{Mailbox, Tree, TreeLink};
use crate::idempotency::{InFlight, Remember};
use crate::logs::InvocationLog;
use crate::registry::Deployed;
use crate::{Error, Functions, Request, Response, StoreTxn, Timing, placement};

/// One run of an invocation's guest.
pub(crate) struct Attempt {
    /// What it did if it succeeded (to commit), else why it failed.
    pub outcome: Result<Effects, Failure>,
    pub log: Vec<LogLine>,
    /// Its part of the invocation's timing (instantiate, prepared, run, store).
    pub timing: Timing,
}

/// A successful attempt's answer and what committing it takes.
pub(crate) struct Effects {
    pub output: Vec<u8>,
    /// Reads to check at commit: the attempt's answer holds only if they still answer the same.
    pub checks: Vec<Check>,
    pub writes: Vec<Write>,
}

/// The steps [`commit_loop`] takes, one attempt at a time.
pub(crate) trait Attempts {
    /// Runs the guest once more (`n` counts from 1), afresh: nothing of an
    /// earlier attempt is seen.
    async fn attempt(&mut self, n: u32) -> Attempt;

    /// Applies `writes` atomically if every check still holds: true if it
    /// did, false if data the attempt read has changed.
    async fn commit(&mut self, checks: Vec<Check>, writes: Vec<Write>) -> Result<bool, squall_store::Error>;
}

/// What a successful invocation leaves besides its own writes, committed in
/// the same atomic unit: an idempotency key's record, a map job element's
/// result.
pub(crate) trait Remembered: Send + Sync {
    /// The writes that record `output`, at `now_ms`.
    fn writes(&self, output: &[u8], now_ms: u64) -> Result<Vec<Write>, Error>;
}

/// How an invocation's attempts ended.
#[derive(Debug)]
pub(crate) struct Ended {
    pub outcome: Result<Vec<u8>, Failure>,
    /// The loop's notes on attempts that ran again, then the last attempt's log.
    pub lines: Vec<LogLine>,
    /// Summed over the attempts.
    pub timing: Timing,
    pub attempts: u32,
}

/// Runs attempts until one commits, fails, or has conflicted more than
/// `max_retries` times. A success's commit includes `remember`'s record,
/// expiring its time to live after `clock`'s time at the commit.
pub(crate) async fn commit_loop(
    runs: &mut impl Attempts,
    max_retries: u32,
    remember: Option<&dyn Remembered>,
    clock: &Clock,
    quotas: &crate::quota::Quotas,
) -> Result<Ended, Error> {
    let started = Instant::now();
    let mut timing = Timing::default();
    let mut notes = Vec::new();
    let mut attempts = 0;
    let (outcome, log) = loop {
        attempts += 1;
        let attempt = runs.attempt(attempts).await;
        timing.instantiate += attempt.timing.instantiate;
        timing.prepared |= attempt.timing.prepared;
        timing.run += attempt.timing.run;
        timing.store += attempt.timing.store;
        timing.calls += attempt.timing.calls;
        let Effects { output, checks, mut writes } = match attempt.outcome {
            Ok(effects) => effects,
            Err(failure) => break (Err(failure), attempt.log),
        };
        let commit_started = Instant::now();
        if let Some(remember) = remember {
            writes.extend(remember.writes(&output, clock.now_ms())?);
        }
        // A namespace that is full may not add keys (its quota), a job's
        // outputs included.
        if let Some(why) = writes.iter().find(|w| w.op.may_add_key()).and_then(|w| quotas.keys_full(&w.ns)) {
            break (Err(Failure { code: FailureCode::QuotaExceeded, message: why }), attempt.log);
        }
        let committed = runs.commit(checks, writes).await;
        timing.commit += commit_started.elapsed();
        match committed {
            Ok(true) => break (Ok(output), attempt.log),
            Ok(false) if attempts <= max_retries => {
                notes.push(LogLine {
                    at_ms: clock.now_ms(),
                    level: Level::Debug,
                    message: format!("attempt {attempts}: data it read changed before commit; running again"),
                });
                // Spread the retries of invocations that keep colliding.
                let spread = (started.elapsed().subsec_nanos() as u64 % 200) << attempts.min(6);
                tokio::time::sleep(Duration::from_micros(spread)).await;
            }
            Ok(false) => {
                let failure = Failure {
                    code: FailureCode::Conflict,
                    message: format!("gave up after {attempts} conflicting commits"),
                };
                break (Err(failure), attempt.log);
            }
            Err(e) => {
                let failure = Failure { code: FailureCode::Internal, message: format!("commit failed: {e}") };
                break (Err(failure), attempt.log);
            }
        }
    };
    notes.extend(log);
    Ok(Ended { outcome, lines: notes, timing, attempts })
}

/// The real attempts: the guest in an instance on this shard thread, over a
/// [`StoreTxn`], committed to the store.
struct Live<'a> {
    functions: &'a Functions,
    d: &'a Deployed,
    inv: &'a Invocation,
    shard: usize,
    /// The request's tree, shared with its callees (made afresh per attempt).
    attempt_of: u32,
    mailbox: Arc<Mailbox>,
    /// The last attempt's instance: a conflicting attempt's is torn down
    /// before the next one; the last one's by the caller, once the answer
    /// is on its way.
    used: Option<Used>,
}

impl Attempts for Live<'_> {
    async fn attempt(&mut self, n: u32) -> Attempt {
        let inner = &self.functions.inner;
        let txn = Box::new(StoreTxn::new(inner.store.clone(), self.functions.store_ns(&self.inv.function)));
        drop(self.used.take());
        let started = Instant::now();
        let mut timing = Timing::default();
        let instance = self.functions.instance(self.d, self.inv, self.shard, n == 1, started, &mut timing).await;
        let ns = crate::namespace_of(&self.inv.function);
        let tree = Tree::new(self.inv.id.clone(), ns, started + self.inv.timeout, self.attempt_of);
        let link = TreeLink::new(self.functions, tree, 0, self.mailbox.clone());
        let done = inner.runtime.run(instance, self.inv, txn, Box::new(link), started).await;
        self.used = Some(done.instance);
        timing.run = done.timing.run;
        timing.store = done.timing.store;
        timing.calls = done.timing.calls;
        // The runtime hands back the transaction it was given.
        let txn = done.txn.into_any().downcast::<StoreTxn>().expect("the scheduler's own transaction");
        if let Some(s) = txn.first_shard {
            self.d.affinity.set(s);
        }
        let outcome = done.outcome.map(|output| {
            let (checks, writes) = txn.into_commit();
            Effects { output, checks, writes }
        });
        Attempt { outcome, log: done.log, timing }
    }

    async fn commit(&mut self, checks: Vec<Check>, writes: Vec<Write>) -> Result<bool, squall_store::Error> {
        let origin = Some(bytes::Bytes::from(self.inv.id.clone()));
        Ok(self.functions.inner.store.commit_as(checks, writes, origin).await?.is_some())
    }
}

impl Functions {
    /// Runs a function; admission, idempotency, retries on conflict, commit.
    pub async fn invoke(&self, name: &str, req: Request) -> Result<Response, Error> {
        let d = self.get(name)?;
        let max = self.inner.settings.max_input;
        if req.input.len() > max {
            return Err(Error::InputTooLarge(req.input.len(), max));
        }
        match req.idempotency_key.clone() {
            Some(key) => self.invoke_idempotent(d, req, key).await,
            None => self.admit_and_run(d, req, None, None).await,
        }
    }

    pub(crate) async fn admit_and_run(
        &self,
        d: Arc<Deployed>,
        req: Request,
        running: Option<InFlight>,
        record: Option<Arc<dyn Remembered>>,
    ) -> Result<Response, Error> {
        let counted = self.inner.quotas.admit(crate::namespace_of(&d.meta.name), self.inner.store.now_ms())?;
        let stats = self.stats(&d.meta.name);
        let (slot, queue) = d.admission.admit(&d.meta.name, stats, &self.inner.pool).await?;
        // It is a task of its own wherever it runs, so a caller that goes
        // away does not cancel an invocation halfway; the slot is held
        // until it ends.
        let store = &self.inner.store;
        let turn = || self.inner.next_shard.fetch_add(1, Ordering::Relaxed);
        let shard = placement::shard(d.affinity.get(), store.current_shard(), turn, store.shards());
        let this = self.clone();
        let task = store.spawn_on(shard, async move {
            let (r, used) = this.run(&d, req, record, shard).await;
            // The namespace's count ends with the invocation (a refusal
            // there is no wait, so it must not outlast the answer).
            drop((running, counted));
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

    pub(crate) fn invocation_id(&self) -> String {
        let n = self.inner.next_invocation.fetch_add(1, Ordering::Relaxed);
        format!("{:012x}-{:x}-{n:06x}", self.inner.store.now_ms(), self.inner.store.node_id() & 0xffff)
    }

    /// Runs the invocation (again after a conflict) on `shard`, this thread,
    /// commits it and logs it. Also hands back the last attempt's instance,
    /// for the caller to tear down once the answer is on its way.
    async fn run(
        &self,
        d: &Deployed,
        req: Request,
        record: Option<Arc<dyn Remembered>>,
        shard: usize,
    ) -> (Result<Response, Error>, Option<Used>) {
        let settings = &self.inner.settings;
        let id = self.invocation_id();
        if req.trigger_depth > 0 {
            self.inner.triggers.note_depth(&id, req.trigger_depth, self.inner.store.now_ms());
        }
        let mut inv = d.template.clone();
        inv.id.clone_from(&id);
        inv.input = req.input;
        inv.timeout = req.timeout.map_or(inv.timeout, |t| t.min(inv.timeout));
        let started_ms = self.inner.store.now_ms();
        let started = Instant::now();
        let remember: Option<Arc<dyn Remembered>> = match req.idempotency_key {
            Some(key) => Some(Arc::new(
                Remember::new(&d.meta.name, &key, &id, settings.idempotency_ttl).answering(&d.identity, &inv.input),
            )),
            None => record,
        };
        let open = self.open_mailbox(&id, crate::namespace_of(&d.meta.name));
        let mut live = Live {
            functions: self,
            d,
            inv: &inv,
            shard,
            attempt_of: req.attempt.max(1),
            mailbox: open.mailbox.clone(),
            used: None,
        };
        let ended = commit_loop(
            &mut live,
            settings.max_conflict_retries,
            remember.as_deref(),
            self.inner.store.clock(),
            &self.inner.quotas,
        )
        .await;
        let used = live.used.take();
        drop(open);
        let Ended { outcome, lines, timing, attempts } = match ended {
            Ok(ended) => ended,
            Err(e) => return (Err(e), used),
        };
        self.record_log(InvocationLog {
            seq: 0,
            invocation_id: id.clone(),
            root: None,
            function: d.meta.name.clone(),
            version: d.meta.version,
            started_ms,
            duration_us: started.elapsed().as_micros() as u64,
            status: outcome.as_ref().map_or_else(|f| f.code.as_str(), |_| "ok"),
            error: outcome.as_ref().err().map(|f| f.message.clone()),
            lines,
        });
        (Ok(Response { invocation_id: id, outcome, timing, replayed: false, attempts }), used)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use bytes::Bytes;
    use squall_store::lattice::ManualClock;
    use squall_store::{Op, OpResult, Reply, SetExpiry};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const RUN: Duration = Duration::from_millis(3);

    /// Attempts as a script says: what each guest run answers (it repeats
    /// the last), and what each commit does.
    struct Script {
        runs: VecDeque<Result<Vec<u8>, Failure>>,
        commits: VecDeque<Result<bool, squall_store::Error>>,
        /// The attempts' numbers, in the order they were asked for.
        ran: Vec<u32>,
        /// The writes of every commit tried.
        committed: Vec<Vec<Write>>,
    }

    impl Script {
        fn new(runs: &[Result<&str, FailureCode>], commits: Vec<Result<bool, squall_store::Error>>) -> Script {
            let runs = runs
                .iter()
                .map(|r| match r {
                    Ok(out) => Ok(out.as_bytes().to_vec()),
                    Err(code) => Err(Failure { code: *code, message: "it went wrong".into() }),
                })
                .collect();
            Script { runs, commits: commits.into(), ran: Vec::new(), committed: Vec::new() }
        }
    }

    /// What every successful attempt writes and checks.
    fn effect() -> Write {
        Write { ns: Bytes::from_static(b"default"), key: Bytes::from_static(b"hits"), op: Op::IncrBy(1) }
    }

    impl Attempts for Script {
        async fn attempt(&mut self, n: u32) -> Attempt {
            self.ran.push(n);
            let run = if self.runs.len() > 1 { self.runs.pop_front() } else { self.runs.front().cloned() };
            let outcome = run.expect("a scripted run").map(|output| Effects {
                output,
                checks: vec![Check {
                    ns: Bytes::from_static(b"default"),
                    key: Bytes::from_static(b"hits"),
                    op: Op::Snapshot,
                    saw: OpResult::Ok(Reply::Nil),
                }],
                writes: vec![effect()],
            });
            let log = vec![LogLine { at_ms: NOW, level: Level::Info, message: format!("run {n}") }];
            Attempt { outcome, log, timing: Timing { run: RUN, ..Timing::default() } }
        }

        async fn commit(&mut self, checks: Vec<Check>, writes: Vec<Write>) -> Result<bool, squall_store::Error> {
            assert_eq!(checks.len(), 1, "the attempt's reads are checked");
            self.committed.push(writes);
            self.commits.pop_front().unwrap_or(Ok(true))
        }
    }

    fn clock() -> (Arc<ManualClock>, Clock) {
        let manual = Arc::new(ManualClock::new(NOW));
        (manual.clone(), manual)
    }

    async fn drive(script: &mut Script, max_retries: u32, remember: Option<&Remember>) -> Ended {
        commit_loop(script, max_retries, remember.map(|r| r as &dyn Remembered), &clock().1, &Default::default())
            .await
            .unwrap()
    }

    fn messages(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.message.as_str()).collect()
    }

    #[tokio::test]
    async fn a_first_attempt_that_commits_is_the_answer() {
        let mut s = Script::new(&[Ok("1")], vec![Ok(true)]);
        let ended = drive(&mut s, 3, None).await;
        assert_eq!(ended.outcome.unwrap(), b"1");
        assert_eq!((ended.attempts, s.ran.as_slice()), (1, &[1][..]));
        assert_eq!(s.committed, [vec![effect()]]);
        assert_eq!(messages(&ended.lines), ["run 1"]);
    }

    #[tokio::test]
    async fn a_conflict_runs_it_again_and_the_log_says_so() {
        let mut s = Script::new(&[Ok("1"), Ok("2")], vec![Ok(false), Ok(true)]);
        let (manual, clock) = clock();
        manual.advance(5);
        let ended = commit_loop(&mut s, 3, None, &clock, &Default::default()).await.unwrap();
        assert_eq!(ended.outcome.unwrap(), b"2", "the answer is the attempt that committed");
        assert_eq!((ended.attempts, s.ran.as_slice()), (2, &[1, 2][..]));
        assert_eq!(s.committed.len(), 2);
        // The note on the retry, then only the last attempt's own log.
        assert_eq!(messages(&ended.lines), ["attempt 1: data it read changed before commit; running again", "run 2"]);
        assert_eq!((ended.lines[0].at_ms, ended.lines[0].level), (NOW + 5, Level::Debug));
        assert_eq!(ended.timing.run, RUN * 2, "time is summed over the attempts");
    }

    #[tokio::test]
    async fn conflicts_past_the_limit_give_up_with_conflict() {
        let mut s = Script::new(&[Ok("1")], (0..10).map(|_| Ok(false)).collect());
        let ended = drive(&mut s, 2, None).await;
        let failure = ended.outcome.unwrap_err();
        assert_eq!(failure.code, FailureCode::Conflict);
        assert_eq!(failure.message, "gave up after 3 conflicting commits");
        assert_eq!((ended.attempts, s.ran.as_slice()), (3, &[1, 2, 3][..]));
        assert_eq!(s.committed.len(), 3);
        assert_eq!(ended.lines.iter().filter(|l| l.message.contains("running again")).count(), 2);
    }

    #[tokio::test]
    async fn a_guest_failure_commits_nothing() {
        let remember = Remember::new("f", "k", "inv-1", Duration::from_secs(60));
        let mut s = Script::new(&[Err(FailureCode::FunctionError), Ok("1")], vec![]);
        let ended = drive(&mut s, 3, Some(&remember)).await;
        let failure = ended.outcome.unwrap_err();
        assert_eq!((failure.code, failure.message.as_str()), (FailureCode::FunctionError, "it went wrong"));
        assert_eq!(ended.attempts, 1, "a failure is not retried");
        assert!(s.committed.is_empty(), "committed {:?}", s.committed);
        assert_eq!(messages(&ended.lines), ["run 1"]);
    }

    #[tokio::test]
    async fn a_commit_error_is_internal() {
        let mut s = Script::new(&[Ok("1")], vec![Err(squall_store::Error::Closed)]);
        let ended = drive(&mut s, 3, None).await;
        let failure = ended.outcome.unwrap_err();
        assert_eq!(failure.code, FailureCode::Internal);
        assert_eq!(failure.message, "commit failed: the store is shutting down");
        assert_eq!(ended.attempts, 1, "an error is not a conflict: it is not retried");
    }

    #[tokio::test]
    async fn an_idempotency_key_commits_its_record_with_the_effects() {
        let remember = Remember::new("f", "k", "inv-1", Duration::from_secs(60));
        let mut s = Script::new(&[Ok("1")], vec![Ok(false), Ok(true)]);
        let (manual, clock) = clock();
        manual.advance(7);
        commit_loop(&mut s, 3, Some(&remember as &dyn Remembered), &clock, &Default::default()).await.unwrap();
        let last = s.committed.last().unwrap();
        assert_eq!(last.len(), 2, "{last:?}");
        assert_eq!(last[0], effect());
        let record = &last[1];
        assert_eq!((&record.ns[..], &record.key[..]), (&b"sys"[..], &b"idem:f:k"[..]));
        assert!(
            matches!(record.op, Op::Set { expiry: SetExpiry::At(at), .. } if at == NOW + 7 + 60_000),
            "{:?}",
            record.op
        );
        // Every commit tried carries the record, so none that succeeds goes without it.
        assert!(s.committed.iter().all(|w| w.len() == 2));
    }
}
