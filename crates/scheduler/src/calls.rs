//! Calls between functions, and messages between running invocations.
//!
//! A request's functions form a tree: the root (called from outside) and
//! its callees, each in its own instance, each over a fork of its caller's
//! transaction (see [`crate::txn`]). Nothing of the tree reaches the store
//! until the root commits, with one stamp. The tree shares its deadline
//! (the root's) and a count of calls; each invocation has its depth, its
//! calls in flight and a mailbox.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use squall_runtime::{BoxFuture, CallError, Called, Invocation, Link, SendError, Started, Txn};
use tokio::sync::Notify;

use crate::logs::InvocationLog;
use crate::registry::Deployed;
use crate::{Functions, Timing, placement};

/// What all the invocations of one request share.
#[derive(Debug)]
pub(crate) struct Tree {
    pub root_id: String,
    /// The root's namespace: every function of the tree is looked up in it.
    pub ns: String,
    /// When the root must end: no callee runs past it.
    pub deadline: Instant,
    /// Calls made so far in the whole tree.
    calls: AtomicU32,
    /// Which delivery of the root's input this is.
    pub attempt: u32,
    /// A replay against the past: its messages reach only its own tree's
    /// invocations (these, once spawned), no live one.
    pub replay: bool,
    members: Mutex<HashSet<String>>,
}

impl Tree {
    pub fn new(root_id: String, ns: &str, deadline: Instant, attempt: u32) -> Arc<Tree> {
        let members = Mutex::default();
        Arc::new(Tree {
            root_id,
            ns: ns.to_string(),
            deadline,
            calls: AtomicU32::new(0),
            attempt,
            replay: false,
            members,
        })
    }

    /// The tree of a replay: its messages reach no live invocation.
    pub fn replay(root_id: String, ns: &str, deadline: Instant) -> Arc<Tree> {
        let members = Mutex::new(HashSet::from([root_id.clone()]));
        Arc::new(Tree {
            root_id,
            ns: ns.to_string(),
            deadline,
            calls: AtomicU32::new(0),
            attempt: 1,
            replay: true,
            members,
        })
    }

    /// Whether a message may go to invocation `id`: for a replay, only
    /// within its own tree.
    fn reaches(&self, id: &str) -> bool {
        !self.replay || self.members.lock().unwrap_or_else(|e| e.into_inner()).contains(id)
    }
}

/// Bytes of messages one mailbox may hold.
const MAX_MAILBOX_BYTES: usize = 16 << 20;
/// Bytes of messages all mailboxes of the node may hold: a request that
/// spawns callees and fills each one's mailbox cannot take the node's memory.
const MAX_QUEUED_BYTES: usize = 256 << 20;

/// One running invocation's mailbox.
#[derive(Debug)]
pub(crate) struct Mailbox {
    /// The namespace of its invocation: only invocations of the same one
    /// may write to it.
    ns: String,
    /// The messages, and their bytes.
    queue: Mutex<(VecDeque<Vec<u8>>, usize)>,
    arrived: Notify,
    /// The bytes queued in all mailboxes of the node.
    node: Arc<AtomicUsize>,
}

impl Mailbox {
    fn pop(&self) -> Option<Vec<u8>> {
        let mut q = self.queue.lock().expect("mailbox");
        let m = q.0.pop_front()?;
        q.1 -= m.len();
        self.node.fetch_sub(m.len(), Ordering::AcqRel);
        Some(m)
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        // Messages never received leave the node's count with their mailbox.
        let held = self.queue.get_mut().map_or(0, |q| q.1);
        self.node.fetch_sub(held, Ordering::AcqRel);
    }
}

/// The mailboxes of the running invocations, by invocation id.
#[derive(Debug, Default)]
pub(crate) struct Mailboxes {
    open: Mutex<HashMap<String, Arc<Mailbox>>>,
    queued: Arc<AtomicUsize>,
}

/// A registered mailbox: dropping it (when its invocation ends) closes it.
pub(crate) struct Open {
    functions: Functions,
    id: String,
    pub mailbox: Arc<Mailbox>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.functions.inner.mailboxes.open.lock().expect("mailboxes").remove(&self.id);
    }
}

impl Functions {
    /// Opens the mailbox of the invocation `id`, for as long as the guard lives.
    pub(crate) fn open_mailbox(&self, id: &str, ns: &str) -> Open {
        let mailboxes = &self.inner.mailboxes;
        let mailbox = Arc::new(Mailbox {
            ns: ns.to_string(),
            queue: Mutex::default(),
            arrived: Notify::new(),
            node: mailboxes.queued.clone(),
        });
        self.inner.mailboxes.open.lock().expect("mailboxes").insert(id.to_string(), mailbox.clone());
        Open { functions: self.clone(), id: id.to_string(), mailbox }
    }

    /// Puts `message`, from an invocation of namespace `from`, in invocation
    /// `to`'s mailbox; one of another namespace is as unknown as one that
    /// does not run.
    fn deliver(&self, from: &str, to: &str, message: Vec<u8>) -> Result<(), SendError> {
        let s = &self.inner.settings;
        if message.len() > s.max_message {
            return Err(SendError::TooLarge(format!(
                "message_too_large: a message of {} bytes is over the limit of {}",
                message.len(),
                s.max_message
            )));
        }
        let mailbox = self.inner.mailboxes.open.lock().expect("mailboxes").get(to).cloned();
        let mailbox = mailbox.filter(|m| m.ns == from).ok_or_else(|| SendError::NoSuchInvocation(to.to_string()))?;
        {
            let mut q = mailbox.queue.lock().expect("mailbox");
            if q.0.len() >= s.mailbox || q.1 + message.len() > MAX_MAILBOX_BYTES {
                return Err(SendError::MailboxFull(format!(
                    "mailbox_full: invocation {to} has {} messages of {} bytes waiting (limit {} messages, {} MiB)",
                    q.0.len(),
                    q.1,
                    s.mailbox,
                    MAX_MAILBOX_BYTES >> 20
                )));
            }
            let node = &mailbox.node;
            if node.fetch_add(message.len(), Ordering::AcqRel) + message.len() > MAX_QUEUED_BYTES {
                node.fetch_sub(message.len(), Ordering::AcqRel);
                return Err(SendError::MailboxFull(format!(
                    "mailbox_full: the node holds {} MiB of messages not yet received (limit {} MiB); try again",
                    node.load(Ordering::Acquire) >> 20,
                    MAX_QUEUED_BYTES >> 20
                )));
            }
            q.1 += message.len();
            q.0.push_back(message);
        }
        mailbox.arrived.notify_one();
        Ok(())
    }
}

/// An invocation's link to the rest of its tree, to the functions and to
/// the mailboxes.
pub(crate) struct TreeLink {
    functions: Functions,
    tree: Arc<Tree>,
    /// 0 for the root.
    depth: u32,
    /// Its callees still running.
    in_flight: Arc<AtomicUsize>,
    mailbox: Arc<Mailbox>,
}

impl TreeLink {
    pub fn new(functions: &Functions, tree: Arc<Tree>, depth: u32, mailbox: Arc<Mailbox>) -> TreeLink {
        TreeLink { functions: functions.clone(), tree, depth, in_flight: Arc::new(AtomicUsize::new(0)), mailbox }
    }

    fn check_limits(&self, input: &[u8]) -> Result<(), CallError> {
        let s = &self.functions.inner.settings;
        if self.depth + 1 > s.max_depth {
            return Err(CallError::Limit(format!(
                "depth_limit: a call at depth {} is over the limit of {} (a cycle of calls ends here)",
                self.depth + 1,
                s.max_depth
            )));
        }
        if self.in_flight.load(Ordering::Acquire) >= s.max_fanout {
            return Err(CallError::Limit(format!(
                "fanout_limit: {} calls of this invocation are running (limit {})",
                s.max_fanout, s.max_fanout
            )));
        }
        if Instant::now() >= self.tree.deadline {
            return Err(CallError::Limit("deadline: the request's deadline has passed".into()));
        }
        if input.len() > s.max_input {
            return Err(CallError::Invalid(format!(
                "input_too_large: an input of {} bytes is over the limit of {}",
                input.len(),
                s.max_input
            )));
        }
        let made = self.tree.calls.fetch_add(1, Ordering::AcqRel);
        if made >= s.max_calls {
            return Err(CallError::Limit(format!(
                "call_limit: the request made {} calls already (limit {})",
                s.max_calls, s.max_calls
            )));
        }
        Ok(())
    }
}

/// Counts a running callee against its caller's calls in flight.
struct Flying(Arc<AtomicUsize>);

impl Drop for Flying {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Link for TreeLink {
    fn spawn(&mut self, name: String, input: Vec<u8>, txn: Box<dyn Txn>) -> Result<Started, CallError> {
        self.check_limits(&input)?;
        // A name the guest gives is one of its own namespace's: one that
        // could name another (`ns/f`) is no function's.
        if crate::check_name(&name).is_err() {
            return Err(CallError::NotFound(name));
        }
        let d =
            self.functions.get(&crate::qualify(&self.tree.ns, &name)).map_err(|_| CallError::NotFound(name.clone()))?;
        // A callee is one more invocation of its namespace, for its quotas.
        let counted = self
            .functions
            .inner
            .quotas
            .admit(&self.tree.ns, self.functions.inner.store.now_ms())
            .map_err(|e| CallError::Limit(format!("quota_exceeded: {e}")))?;
        let id = self.functions.invocation_id();
        if self.tree.replay {
            self.tree.members.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
        }
        // Open from the start: the caller may send it messages before it runs.
        let open = self.functions.open_mailbox(&id, &self.tree.ns);
        let link = TreeLink::new(&self.functions, self.tree.clone(), self.depth + 1, open.mailbox.clone());
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let flying = Flying(self.in_flight.clone());
        let store = &self.functions.inner.store;
        let turn = || self.functions.inner.next_shard.fetch_add(1, Ordering::Relaxed);
        let shard = placement::shard(d.affinity.get(), store.current_shard(), turn, store.shards());
        let functions = self.functions.clone();
        let callee_id = id.clone();
        let task = store.spawn_on(shard, async move {
            let called = functions.run_callee(d, callee_id, input, txn, link, open, shard).await;
            drop((flying, counted));
            called
        });
        let run: BoxFuture<'static, Called> = Box::pin(async move {
            task.await.unwrap_or_else(|e| Called {
                outcome: Err(CallError::Unavailable(format!("the call's task failed: {e}"))),
                txn: None,
            })
        });
        Ok(Started { invocation_id: id, run })
    }

    fn send(&self, to: &str, message: Vec<u8>) -> Result<(), SendError> {
        if !self.tree.reaches(to) {
            return Err(SendError::NoSuchInvocation(format!("{to} (a replay of the past sends only within itself)")));
        }
        self.functions.deliver(&self.tree.ns, to, message)
    }

    fn recv(&mut self, wait: Duration) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let until = tokio::time::Instant::now() + wait;
            loop {
                let arrived = self.mailbox.arrived.notified();
                if let Some(m) = self.mailbox.pop() {
                    return Some(m);
                }
                if tokio::time::timeout_at(until, arrived).await.is_err() {
                    return self.mailbox.pop();
                }
            }
        })
    }

    fn root_id(&self) -> &str {
        &self.tree.root_id
    }

    fn attempt(&self) -> u32 {
        self.tree.attempt
    }
}

impl Functions {
    /// Runs a callee of `link`'s tree on `shard` (this thread): no admission
    /// of its own (its request was admitted), no commit (its caller joins
    /// its writes), its time limit cut to the tree's deadline.
    #[allow(clippy::too_many_arguments)]
    async fn run_callee(
        &self,
        d: Arc<Deployed>,
        id: String,
        input: Vec<u8>,
        txn: Box<dyn Txn>,
        link: TreeLink,
        open: Open,
        shard: usize,
    ) -> Called {
        let root = link.tree.root_id.clone();
        let mut inv: Invocation = d.template.clone();
        inv.id.clone_from(&id);
        inv.input = input;
        inv.timeout = inv.timeout.min(link.tree.deadline.saturating_duration_since(Instant::now()));
        let stats = self.stats(&d.meta.name);
        stats.invocations.fetch_add(1, Ordering::Relaxed);
        let started_ms = self.inner.store.now_ms();
        let started = Instant::now();
        let mut timing = Timing::default();
        let mut instance = self.instance(&d, &inv, shard, true, started, &mut timing).await;
        // Every slot is taken (by the tree's own callers, perhaps): wait for
        // one within the tree's deadline rather than fail at once.
        while instance.pool_full() && Instant::now() + Duration::from_millis(1) < link.tree.deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let left = link.tree.deadline.saturating_duration_since(Instant::now());
            instance = self.inner.runtime.prepare(&d.compiled, &inv, left).await;
        }
        let done = self.inner.runtime.run(instance, &inv, txn, Box::new(link), started).await;
        drop(open);
        let status = done.outcome.as_ref().map_or_else(|f| f.code.as_str(), |_| "ok");
        let outcome =
            done.outcome.map_err(|f| CallError::Failed { code: f.code.as_str().to_string(), message: f.message });
        self.record_log(InvocationLog {
            seq: 0,
            invocation_id: id,
            root: Some(root),
            function: d.meta.name.clone(),
            version: d.meta.version,
            started_ms,
            duration_us: started.elapsed().as_micros() as u64,
            status,
            error: outcome.as_ref().err().map(|e| e.to_string()),
            lines: done.log,
        });
        let txn = outcome.is_ok().then_some(done.txn);
        let used = done.instance;
        let this = self.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            drop(used);
            this.prepare_ahead(&d, shard).await;
        });
        Called { outcome, txn }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_gives_its_bytes_back_when_read_or_closed() {
        let node = Arc::new(AtomicUsize::new(15));
        let mailbox = Mailbox {
            ns: "default".into(),
            queue: Mutex::new((VecDeque::from([vec![0; 10], vec![0; 5]]), 15)),
            arrived: Notify::new(),
            node: node.clone(),
        };
        assert_eq!(mailbox.pop().map(|m| m.len()), Some(10));
        assert_eq!(node.load(Ordering::Acquire), 5);
        drop(mailbox);
        assert_eq!(node.load(Ordering::Acquire), 0);
    }
}
