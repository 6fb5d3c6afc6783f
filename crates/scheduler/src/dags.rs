//! DAGs of functions: steps (each a function) and edges between them, with
//! one sink. An invocation runs the steps in dependency order, each as soon
//! as its predecessors are done, so independent branches run concurrently;
//! outputs pass between steps in memory. The whole DAG invocation is one
//! atomic unit, like a tree of calls: every step runs over a fork of the
//! DAG's transaction taken when it starts (so it reads its predecessors'
//! writes), the steps' writes join it in a fixed topological order, and it
//! commits once, with one stamp, when the sink has succeeded.
//!
//! A source gets the DAG's input; a step with one predecessor gets its
//! output; a step with several gets a JSON object from each predecessor's
//! id to its output (as a string when it is UTF-8, else as an array of
//! byte values).
//!
//! DAGs are kept in the store's `sys` namespace (`dag:NAME`, JSON), so they
//! survive restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use squall_runtime::{BoxFuture, CallError, Called, Failure, FailureCode, Link};
use squall_store::{Check, Op, Write};

use crate::calls::{Tree, TreeLink};
use crate::invoke::{Attempt, Attempts, Effects, Ended, commit_loop};
use crate::logs::InvocationLog;
use crate::{Error, Functions, Response, StoreTxn, Timing, check_name, sys};

/// Most steps a DAG may have (fewer than the calls an invocation may have
/// running at once, so that every step of any shape can start).
pub const MAX_STEPS: usize = 128;

/// One step: a function, under an id unique in its DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub function: String,
}

/// A registered DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dag {
    pub name: String,
    pub steps: Vec<Step>,
    /// (from, to) step ids.
    pub edges: Vec<(String, String)>,
    /// The steps in the order they join (a topological order; ties by id).
    pub order: Vec<String>,
    pub sink: String,
    pub created_ms: u64,
}

/// A DAG as a client describes it: `{"chain": [F, ...]}`, or `{"steps":
/// [F, ...] | {ID: F, ...}, "edges": [[FROM, TO], ...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagSpec {
    #[serde(default)]
    pub chain: Option<Vec<String>>,
    #[serde(default)]
    pub steps: Option<StepsSpec>,
    #[serde(default)]
    pub edges: Vec<(String, String)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StepsSpec {
    /// Function names, each its own step id.
    Functions(Vec<String>),
    /// Step id → function name.
    Named(BTreeMap<String, String>),
}

fn dag_key(name: &str) -> Bytes {
    Bytes::from(format!("dag:{name}"))
}

/// A DAG's steps and its (from, to) edges.
type Parts = (Vec<Step>, Vec<(String, String)>);

fn bad(msg: impl Into<String>) -> Error {
    Error::BadDag(msg.into())
}

impl DagSpec {
    /// The steps and edges the spec names (not yet checked).
    fn parts(self) -> Result<Parts, Error> {
        match (self.chain, self.steps) {
            (Some(_), Some(_)) => Err(bad("give either \"chain\" or \"steps\" (with \"edges\"), not both")),
            (None, None) => Err(bad("a DAG needs \"chain\": [functions] or \"steps\" and \"edges\"")),
            (Some(chain), None) => {
                if !self.edges.is_empty() {
                    return Err(bad("a chain has no \"edges\": its steps follow one another"));
                }
                // A function that comes back in the chain gets `NAME.2`, `NAME.3`...
                let mut seen: HashMap<&str, usize> = HashMap::new();
                let steps: Vec<Step> = chain
                    .iter()
                    .map(|f| {
                        let n = seen.entry(f.as_str()).or_insert(0);
                        *n += 1;
                        let id = if *n == 1 { f.clone() } else { format!("{f}.{n}") };
                        Step { id, function: f.clone() }
                    })
                    .collect();
                let edges = steps.windows(2).map(|w| (w[0].id.clone(), w[1].id.clone())).collect();
                Ok((steps, edges))
            }
            (None, Some(StepsSpec::Functions(fs))) => {
                Ok((fs.into_iter().map(|f| Step { id: f.clone(), function: f }).collect(), self.edges))
            }
            (None, Some(StepsSpec::Named(m))) => {
                Ok((m.into_iter().map(|(id, function)| Step { id, function }).collect(), self.edges))
            }
        }
    }
}

/// Checks a DAG's shape: its order of steps and its sink, or what is wrong.
fn shape(steps: &[Step], edges: &[(String, String)]) -> Result<(Vec<String>, String), Error> {
    if steps.is_empty() {
        return Err(bad("a DAG needs at least one step"));
    }
    if steps.len() > MAX_STEPS {
        return Err(bad(format!("a DAG may have at most {MAX_STEPS} steps; this one has {}", steps.len())));
    }
    let mut ids = BTreeSet::new();
    for s in steps {
        if s.id.is_empty() || s.id.len() > 128 {
            return Err(bad(format!("step id {:?} must be 1 to 128 bytes", s.id)));
        }
        if !ids.insert(s.id.as_str()) {
            return Err(bad(format!("step {:?} appears twice", s.id)));
        }
    }
    let mut preds: BTreeMap<&str, BTreeSet<&str>> = ids.iter().map(|id| (*id, BTreeSet::new())).collect();
    let mut succs: BTreeMap<&str, BTreeSet<&str>> = ids.iter().map(|id| (*id, BTreeSet::new())).collect();
    let mut unique = BTreeSet::new();
    for (from, to) in edges {
        if !unique.insert((from, to)) {
            return Err(bad(format!("edge {from:?} → {to:?} appears twice")));
        }
        for end in [from, to] {
            if !ids.contains(end.as_str()) {
                return Err(bad(format!("edge {from:?} → {to:?} names no step {end:?}")));
            }
        }
        if from == to {
            return Err(bad(format!("edge {from:?} → {to:?} is a cycle")));
        }
        preds.get_mut(to.as_str()).expect("a step").insert(from.as_str());
        succs.get_mut(from.as_str()).expect("a step").insert(to.as_str());
    }
    let sinks: Vec<&str> = succs.iter().filter(|(_, s)| s.is_empty()).map(|(id, _)| *id).collect();
    if steps.len() > 1 {
        let lonely: Vec<&str> = ids.iter().copied().filter(|id| preds[id].is_empty() && succs[id].is_empty()).collect();
        if !lonely.is_empty() {
            return Err(bad(format!("steps {lonely:?} are not connected to the others")));
        }
    }
    // Kahn's algorithm, smallest id first: a fixed order.
    let mut waiting: BTreeMap<&str, usize> = preds.iter().map(|(id, p)| (*id, p.len())).collect();
    let mut ready: BTreeSet<&str> = waiting.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(id) = ready.pop_first() {
        order.push(id.to_string());
        waiting.remove(id);
        for next in &succs[id] {
            let n = waiting.get_mut(next).expect("not yet ordered");
            *n -= 1;
            if *n == 0 {
                ready.insert(next);
            }
        }
    }
    if !waiting.is_empty() {
        let stuck: Vec<&str> = waiting.keys().copied().collect();
        return Err(bad(format!("the edges make a cycle through {stuck:?}")));
    }
    match sinks.as_slice() {
        [sink] => Ok((order, sink.to_string())),
        _ => Err(bad(format!("a DAG has exactly one sink (a step with no successor); this one has {sinks:?}"))),
    }
}

impl Dag {
    fn preds(&self, id: &str) -> Vec<&str> {
        let mut p: Vec<&str> = self.edges.iter().filter(|(_, to)| to == id).map(|(from, _)| from.as_str()).collect();
        p.sort_unstable();
        p
    }

    fn function(&self, id: &str) -> &str {
        self.steps.iter().find(|s| s.id == id).map_or("", |s| s.function.as_str())
    }
}

/// The input of a step with several predecessors: their outputs by id.
fn join_input(outputs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    for (id, out) in outputs {
        let v = match std::str::from_utf8(out) {
            Ok(s) => serde_json::Value::String(s.to_string()),
            Err(_) => serde_json::Value::Array(out.iter().map(|b| serde_json::Value::from(*b)).collect()),
        };
        m.insert((*id).to_string(), v);
    }
    serde_json::to_vec(&serde_json::Value::Object(m)).expect("JSON of strings")
}

/// A failure's code, from the string a callee's failure carries.
fn failure_code(code: &str) -> FailureCode {
    match code {
        "trap" => FailureCode::Trap,
        "timeout" => FailureCode::Timeout,
        "limit_exceeded" => FailureCode::LimitExceeded,
        "function_error" => FailureCode::FunctionError,
        "conflict" => FailureCode::Conflict,
        "busy" => FailureCode::Busy,
        "quota_exceeded" => FailureCode::QuotaExceeded,
        _ => FailureCode::Internal,
    }
}

/// The attempts of one DAG invocation.
struct DagRun<'a> {
    functions: &'a Functions,
    dag: &'a Dag,
    id: &'a str,
    input: &'a [u8],
    deadline: Instant,
}

impl DagRun<'_> {
    fn step_failed(&self, step: &str, e: CallError) -> Failure {
        let function = self.dag.function(step);
        let (code, why) = match e {
            CallError::Failed { code, message } => (failure_code(&code), message),
            CallError::Limit(m) if m.starts_with("deadline") => (FailureCode::Timeout, m),
            CallError::Limit(m) => (FailureCode::LimitExceeded, m),
            CallError::NotFound(name) => (FailureCode::FunctionError, format!("no function named {name:?}")),
            other => (FailureCode::Internal, other.to_string()),
        };
        Failure { code, message: format!("step {step:?} (function {function:?}) failed: {why}") }
    }
}

impl Attempts for DagRun<'_> {
    async fn attempt(&mut self, _n: u32) -> Attempt {
        let started = Instant::now();
        let inner = &self.functions.inner;
        let mut txn = StoreTxn::new(inner.store.clone(), self.functions.store_ns(&self.dag.name));
        let tree = Tree::new(self.id.to_string(), crate::namespace_of(&self.dag.name), self.deadline, 1);
        let open = self.functions.open_mailbox(self.id, crate::namespace_of(&self.dag.name));
        let mut link = TreeLink::new(self.functions, tree, 0, open.mailbox.clone());
        let order = &self.dag.order;
        let at: HashMap<&str, usize> = order.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let preds: Vec<Vec<usize>> =
            order.iter().map(|id| self.dag.preds(id).iter().map(|p| at[p]).collect()).collect();
        let mut runs: Vec<Option<BoxFuture<'static, Called>>> = (0..order.len()).map(|_| None).collect();
        let mut outputs: Vec<Option<Vec<u8>>> = vec![None; order.len()];
        let mut started_steps = vec![false; order.len()];
        let mut joined = vec![false; order.len()];
        let sink = at[self.dag.sink.as_str()];
        // How many steps still need each step's output.
        let mut consumers: Vec<usize> = vec![0; order.len()];
        for p in &preds {
            for j in p {
                consumers[*j] += 1;
            }
        }
        let mut timing = Timing::default();
        let fail = |failure: Failure| Attempt { outcome: Err(failure), log: Vec::new(), timing: Timing::default() };
        // Step `next` joins next; a step starts once all its predecessors joined.
        for next in 0..order.len() {
            for (i, p) in preds.iter().enumerate() {
                if started_steps[i] || !p.iter().all(|j| joined[*j]) {
                    continue;
                }
                let input = match p.as_slice() {
                    [] => self.input.to_vec(),
                    // The last step to need it takes it; the sink's is kept for the answer.
                    [one] if *one != sink && consumers[*one] == 1 => outputs[*one].take().expect("joined"),
                    [one] => outputs[*one].clone().expect("joined"),
                    many => {
                        let outs: Vec<(&str, &[u8])> = many
                            .iter()
                            .map(|j| (order[*j].as_str(), outputs[*j].as_deref().expect("joined")))
                            .collect();
                        join_input(&outs)
                    }
                };
                for j in p {
                    consumers[*j] -= 1;
                }
                let function = self.dag.function(&order[i]).to_string();
                match link.spawn(function, input, Box::new(txn.fork())) {
                    Ok(s) => runs[i] = Some(s.run),
                    Err(e) => return fail(self.step_failed(&order[i], e)),
                }
                started_steps[i] = true;
            }
            let waited = Instant::now();
            let called = runs[next].take().expect("started in order").await;
            timing.calls += waited.elapsed();
            match (called.outcome, called.txn) {
                (Ok(out), Some(step_txn)) => {
                    let joined_ok = match step_txn.into_any().downcast::<StoreTxn>() {
                        Ok(step_txn) => txn.join(*step_txn),
                        Err(_) => Err("not a transaction of this store".into()),
                    };
                    if let Err(why) = joined_ok {
                        return fail(self.step_failed(&order[next], CallError::Invalid(format!("join_failed: {why}"))));
                    }
                    outputs[next] = Some(out);
                    joined[next] = true;
                }
                (Ok(_), None) => {
                    return fail(self.step_failed(&order[next], CallError::Unavailable("no transaction".into())));
                }
                (Err(e), _) => return fail(self.step_failed(&order[next], e)),
            }
        }
        drop(open);
        let output = outputs[sink].take().unwrap_or_default();
        let (checks, writes) = txn.into_commit();
        timing.run = started.elapsed().saturating_sub(timing.calls);
        Attempt { outcome: Ok(Effects { output, checks, writes }), log: Vec::new(), timing }
    }

    async fn commit(&mut self, checks: Vec<Check>, writes: Vec<Write>) -> Result<bool, squall_store::Error> {
        let origin = Some(bytes::Bytes::from(self.id.to_string()));
        Ok(self.functions.inner.store.commit_as(checks, writes, origin).await?.is_some())
    }
}

impl Functions {
    /// Loads the registered DAGs from the store.
    pub(crate) async fn load_dags(&self) -> Result<(), Error> {
        for (key, raw) in self.sys_records(b"dag:*").await? {
            match serde_json::from_slice::<Dag>(&raw) {
                Ok(d) => {
                    self.inner.dags.write().expect("dags").insert(d.name.clone(), Arc::new(d));
                }
                Err(e) => tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "unreadable DAG record"),
            }
        }
        Ok(())
    }

    /// Registers (or replaces) the DAG `name`; true if it is new.
    pub async fn put_dag(&self, name: &str, spec: DagSpec) -> Result<(Dag, bool), Error> {
        crate::registry::check_qualified(name)?;
        let (steps, edges) = spec.parts()?;
        let (order, sink) = shape(&steps, &edges)?;
        // Steps name functions of the DAG's own namespace.
        let ns = crate::namespace_of(name);
        for s in &steps {
            check_name(&s.function)?;
            self.get(&crate::qualify(ns, &s.function)).map_err(|_| Error::NotFound(s.function.clone()))?;
        }
        let dag = Dag { name: name.to_string(), steps, edges, order, sink, created_ms: self.inner.store.now_ms() };
        let value = Bytes::from(serde_json::to_vec(&dag).map_err(|e| Error::Unavailable(e.to_string()))?);
        let set = Op::Set { value, expiry: squall_store::SetExpiry::None, get: false };
        self.inner.store.exec(&sys(), dag_key(name), set).await?.map_err(|e| Error::Unavailable(e.message()))?;
        let new = self.inner.dags.write().expect("dags").insert(name.to_string(), Arc::new(dag.clone())).is_none();
        Ok((dag, new))
    }

    pub fn dag(&self, name: &str) -> Result<Arc<Dag>, Error> {
        self.inner.dags.read().expect("dags").get(name).cloned().ok_or_else(|| Error::DagNotFound(name.into()))
    }

    /// Every registered DAG, by name.
    pub fn dags(&self) -> Vec<Arc<Dag>> {
        let mut all: Vec<_> = self.inner.dags.read().expect("dags").values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub async fn remove_dag(&self, name: &str) -> Result<Arc<Dag>, Error> {
        let dag = self.dag(name)?;
        self.inner.store.exec(&sys(), dag_key(name), Op::Del).await?.map_err(|e| Error::Unavailable(e.message()))?;
        self.inner.dags.write().expect("dags").remove(name);
        Ok(dag)
    }

    /// Runs the DAG `name` on `input`, as one atomic unit.
    pub async fn invoke_dag(
        &self,
        name: &str,
        input: Vec<u8>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Response, Error> {
        let dag = self.dag(name)?;
        let max = self.inner.settings.max_input;
        if input.len() > max {
            return Err(Error::InputTooLarge(input.len(), max));
        }
        let ns = crate::namespace_of(name);
        for s in &dag.steps {
            self.get(&crate::qualify(ns, &s.function)).map_err(|_| Error::NotFound(s.function.clone()))?;
        }
        let counted = self.inner.quotas.admit(ns, self.inner.store.now_ms())?;
        let most = std::time::Duration::from_millis(self.inner.settings.default_limits.timeout_ms);
        let timeout = timeout.map_or(most, |t| t.min(most));
        // A task of its own, so a caller that goes away does not cut it off halfway.
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let r = this.run_dag(&dag, &name, input, timeout).await;
            drop(counted);
            r
        })
        .await
        .map_err(|e| Error::Unavailable(format!("DAG invocation task failed: {e}")))?
    }

    async fn run_dag(
        &self,
        dag: &Dag,
        name: &str,
        input: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Response, Error> {
        let id = self.invocation_id();
        let started_ms = self.inner.store.now_ms();
        let started = Instant::now();
        let mut run = DagRun { functions: self, dag, id: &id, input: &input, deadline: started + timeout };
        let Ended { outcome, lines, timing, attempts } = commit_loop(
            &mut run,
            self.inner.settings.max_conflict_retries,
            None,
            self.inner.store.clock(),
            &self.inner.quotas,
        )
        .await?;
        self.inner.logs.record(InvocationLog {
            seq: 0,
            invocation_id: id.clone(),
            root: None,
            // In the DAG's namespace, as its registry name is: `ns/dag:name`.
            function: crate::qualify(crate::namespace_of(name), &format!("dag:{}", crate::bare_name(name))),
            version: 0,
            started_ms,
            duration_us: started.elapsed().as_micros() as u64,
            status: outcome.as_ref().map_or_else(|f| f.code.as_str(), |_| "ok"),
            error: outcome.as_ref().err().map(|f| f.message.clone()),
            lines,
        });
        Ok(Response { invocation_id: id, outcome, timing, replayed: false, attempts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(ids: &[&str]) -> Vec<Step> {
        ids.iter().map(|id| Step { id: id.to_string(), function: id.to_string() }).collect()
    }

    fn edges(e: &[(&str, &str)]) -> Vec<(String, String)> {
        e.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn message(r: Result<(Vec<String>, String), Error>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_diamond_orders_its_steps_and_finds_its_sink() {
        let (order, sink) =
            shape(&steps(&["d", "b", "c", "a"]), &edges(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])).unwrap();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(sink, "d");
    }

    #[test]
    fn bad_shapes_say_what_is_wrong() {
        assert!(message(shape(&steps(&["a", "b"]), &edges(&[("a", "b"), ("b", "a")]))).contains("cycle"));
        assert!(message(shape(&steps(&["a"]), &edges(&[("a", "a")]))).contains("cycle"));
        assert!(
            message(shape(&steps(&["a", "b", "c"]), &edges(&[("a", "b"), ("a", "c")]))).contains("exactly one sink")
        );
        assert!(message(shape(&steps(&["a", "b", "c"]), &edges(&[("a", "b")]))).contains("[\"c\"] are not connected"));
        assert!(message(shape(&steps(&["a"]), &edges(&[("a", "z")]))).contains("no step \"z\""));
        assert!(message(shape(&[], &[])).contains("at least one step"));
    }

    #[test]
    fn a_chain_names_repeated_functions_apart() {
        let spec =
            DagSpec { chain: Some(vec!["inc".into(), "inc".into(), "square".into()]), steps: None, edges: vec![] };
        let (steps, edges) = spec.parts().unwrap();
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["inc", "inc.2", "square"]);
        assert_eq!(edges, super::tests::edges(&[("inc", "inc.2"), ("inc.2", "square")]));
    }

    #[test]
    fn a_join_gets_its_predecessors_outputs_by_id() {
        let input = join_input(&[("a", b"1"), ("b", &[0xff, 0])]);
        assert_eq!(String::from_utf8(input).unwrap(), r#"{"a":"1","b":[255,0]}"#);
    }
}
