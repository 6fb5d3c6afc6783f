//! The JSON bodies of Squall's HTTP API, defined once: the gateway answers
//! with these types and the CLI (or any Rust client) reads them, so the two
//! cannot drift apart.
//!
//! Plain serde types and nothing else. This crate must not depend on any
//! other Squall crate: the gateway converts its store and scheduler types
//! into these, and a client takes this crate without the engine behind it.
//!
//! Fields are declared in alphabetical order. The gateway used to build these
//! bodies as `serde_json` maps, which sort their keys; declaring fields in
//! that order keeps every body the same, byte for byte.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Every error the API answers, with a status that fits:
/// `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: Error,
}

/// What went wrong: a stable code (`key_not_found`, `busy`,
/// `bad_component`..., listed in the docs) for programs, and a message for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    pub code: String,
    pub message: String,
}

impl Error {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Error {
        Error { code: code.into(), message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Error {}

/// One version of a deployed function: `GET /v1/functions/NAME`, and the
/// answer to a deploy (`PUT`) or a removal (`DELETE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// Invocations that may run at once.
    pub concurrency: u32,
    /// When this version was deployed, in ms since the Unix epoch.
    pub created_ms: u64,
    /// sha256 of the component's bytes, in hex.
    pub digest: String,
    /// The environment the function sees.
    pub env: BTreeMap<String, String>,
    pub memory_bytes: u64,
    pub name: String,
    /// Invocations that may wait for a turn; more are refused with 429.
    pub queue: u32,
    /// The component's size in bytes.
    pub size: u64,
    pub timeout_ms: u64,
    /// 1 for the first deploy, one more for each later one.
    pub version: u64,
}

/// `GET /v1/functions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<Function>,
}

/// One step of a DAG: a function under an id unique in the DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagStep {
    pub function: String,
    pub id: String,
}

/// A registered DAG: `GET /v1/dags/NAME`, and the answer to `PUT` and `DELETE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dag {
    /// When it was registered, in ms since the Unix epoch.
    pub created_ms: u64,
    /// `[from, to]` step ids.
    pub edges: Vec<(String, String)>,
    pub name: String,
    /// The steps in the order their writes join (a topological order).
    pub order: Vec<String>,
    /// The step whose output is the DAG's.
    pub sink: String,
    pub steps: Vec<DagStep>,
}

/// `GET /v1/dags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagList {
    pub dags: Vec<Dag>,
}

/// A trigger: `GET /v1/triggers/ID`, and the answer to `PUT` and `DELETE`.
/// Exactly one of `channel`, `cron` and `keys` is there, as `kind` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// When it was added, in ms since the Unix epoch.
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// For `keys`: the changes that fire it (`set`, `del`, `expired`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    pub function: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
    /// `channel`, `keys` or `cron`.
    pub kind: String,
    pub retries: u32,
}

/// `GET /v1/triggers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerList {
    pub triggers: Vec<Trigger>,
}

/// An event whose runs all failed: its envelope, the last error, how many
/// runs it had, and when it was given up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub attempts: u32,
    pub code: String,
    pub event: serde_json::Value,
    pub message: String,
    pub time_ms: u64,
}

/// `GET /v1/triggers/ID/dead`: a page of a trigger's dead letters, oldest
/// first, and how many it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetters {
    pub letters: Vec<DeadLetter>,
    pub total: u64,
}

/// A map job's element counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub done: u64,
    pub failed: u64,
    pub pending: u64,
    pub running: u64,
}

/// A map job: `GET /v1/jobs/ID`, and the answer to `POST /v1/jobs` (202) and `DELETE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Elements that may run at once.
    pub concurrency: u32,
    pub counts: JobCounts,
    /// ms since the Unix epoch.
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub function: String,
    pub id: String,
    /// Where successful outputs are written (`PREFIX` + the element's index), if not in the results.
    pub out_prefix: Option<String>,
    /// Times a failed element runs again.
    pub retries: u32,
    /// `running`, `done` (every element succeeded), `failed` (some failed after their retries) or `cancelled`.
    pub state: String,
    /// How many inputs it has.
    pub total: u64,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// One element of a map job, in `GET /v1/jobs/ID/results`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// Runs it took (absent while pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Why it failed, after its retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
    /// Its place among the inputs, from 0.
    pub index: u64,
    /// Its output, as text (absent when the job writes outputs to `out_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `pending`, `done` or `failed`.
    pub state: String,
}

/// `GET /v1/jobs/ID/results?after=&limit=`: results in input order, and
/// the `after` of the next page (none at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResults {
    pub next: Option<u64>,
    pub results: Vec<JobResult>,
}

/// `GET /v1/functions/NAME/logs`: recent invocations, and the `seq` to pass
/// as `?after=` to get only the ones that finish later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logs {
    pub after: u64,
    pub logs: Vec<InvocationLog>,
}

/// One finished invocation and what it logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationLog {
    pub duration_us: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub function: String,
    pub invocation_id: String,
    pub lines: Vec<LogLine>,
    /// For a callee: the invocation id of its request's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Position in the node's log, increasing.
    pub seq: u64,
    /// ms since the Unix epoch.
    pub started_ms: u64,
    /// `ok`, or the failure's code.
    pub status: String,
    /// The function's version that ran.
    pub version: u64,
}

/// A line the function logged (or printed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// ms since the Unix epoch.
    pub at_ms: u64,
    /// `trace`, `debug`, `info`, `warn`, `error`, `stdout` or `stderr`.
    pub level: String,
    pub message: String,
}

/// `GET /v1/kv?prefix=&cursor=&limit=`: one page of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPage {
    /// Where the next page starts; pass it back as `?cursor=`.
    pub cursor: String,
    /// No more pages.
    pub done: bool,
    /// Keys as text (bytes that are not UTF-8 are replaced).
    pub keys: Vec<String>,
}

/// A snapshot (`/v1/snapshots/ID`): a read-only view of a namespace's keys
/// as they were at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    /// The time it shows, RFC 3339 (UTC, milliseconds).
    pub at: String,
    /// The same time as a stamp (`MS.COUNTER`): what `?at=` takes exactly.
    pub stamp: String,
    /// When it goes away unless moved (which renews it), RFC 3339.
    pub expires: String,
}

/// `POST /v1/functions/NAME/invoke?at=T`: a function run against the store
/// as it was at T, read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    pub invocation_id: String,
    /// The time it read, RFC 3339, and as a stamp.
    pub at: String,
    pub stamp: String,
    /// The version that ran: the one deployed then.
    pub version: u64,
    pub digest: String,
    /// Its output (bytes that are not UTF-8 are replaced).
    pub output: String,
    /// What it would have written, none of it applied.
    pub writes: Vec<ReplayWrite>,
}

/// One write a replay would have made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayWrite {
    pub key: String,
    /// As a Redis command: `SET k v`, `INCRBY k 1`, `SADD k m`...
    pub command: String,
}

/// One key's change at one stamp, or between two times: `null` where the
/// key was not there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One atomic unit's changes: every key it changed, at its stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub stamp: String,
    /// RFC 3339.
    pub time: String,
    /// The invocation (of a function or a DAG) whose commit it was, if one's was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    pub keys: Vec<KeyChange>,
}

/// `GET /v1/changes?from=&to=`: the changes between two times, one unit at
/// a time in stamp order. When `complete` is false there were more than one
/// answer holds: they are whole up to `upto`; ask again from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    pub from: String,
    pub to: String,
    pub upto: String,
    pub complete: bool,
    pub steps: Vec<Step>,
}

/// `GET /v1/diff?from=&to=`: the keys whose values differ between two
/// times, as they were at each (up to `upto`, as in [`Steps`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub from: String,
    pub to: String,
    pub upto: String,
    pub complete: bool,
    pub keys: Vec<KeyChange>,
}

/// `GET /v1/find?from=&to=&where=`: the first time a predicate held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub found: bool,
    /// When it first held (the stamp of the unit that made it hold, or `from`).
    pub stamp: Option<String>,
    pub time: Option<String>,
    /// The unit that made it hold; `None` if it held at `from` already.
    pub step: Option<Step>,
}

/// `GET /v1/snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotList {
    pub snapshots: Vec<Snapshot>,
}

/// `GET /v1/kv/KEY` for a key that is not a register (a register answers
/// with its bytes as they are). Set members and map fields are text (bytes
/// that are not UTF-8 are replaced).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Value {
    /// `{"type": "register", "value": TEXT}` (in changes and diffs; `GET
    /// /v1/kv/KEY` answers a register with its bytes as they are)
    Register { value: String },
    /// `{"type": "counter", "value": N}`
    Counter { value: i64 },
    /// `{"type": "max", "value": N}`
    Max { value: i64 },
    /// `{"members": [...], "type": "set"}`
    Set { members: Vec<String> },
    /// `{"fields": {...}, "type": "map"}`
    Map { fields: BTreeMap<String, String> },
    /// `{"items": [...], "type": "list"}`, head first
    List { items: Vec<String> },
    /// `{"members": [[member, score], ...], "type": "zset"}`, lowest score
    /// first, each score as Redis writes it
    #[serde(rename = "zset")]
    SortedSet { members: Vec<(String, String)> },
}

impl Value {
    /// The `type` field, also sent as the `X-Squall-Type` header.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Register { .. } => "register",
            Value::Counter { .. } => "counter",
            Value::Max { .. } => "max",
            Value::Set { .. } => "set",
            Value::Map { .. } => "map",
            Value::List { .. } => "list",
            Value::SortedSet { .. } => "zset",
        }
    }
}

// By hand rather than derived: a derived tagged enum writes `type` first,
// and sets and maps have always put it after their contents (see the
// crate's docs). Deserializing takes the fields in any order.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Value", 2)?;
        match self {
            Value::Register { value } => {
                st.serialize_field("type", self.kind())?;
                st.serialize_field("value", value)?;
            }
            Value::Counter { value } | Value::Max { value } => {
                st.serialize_field("type", self.kind())?;
                st.serialize_field("value", value)?;
            }
            Value::Set { members } => {
                st.serialize_field("members", members)?;
                st.serialize_field("type", self.kind())?;
            }
            Value::Map { fields } => {
                st.serialize_field("fields", fields)?;
                st.serialize_field("type", self.kind())?;
            }
            Value::List { items } => {
                st.serialize_field("items", items)?;
                st.serialize_field("type", self.kind())?;
            }
            Value::SortedSet { members } => {
                st.serialize_field("members", members)?;
                st.serialize_field("type", self.kind())?;
            }
        }
        st.end()
    }
}

/// `GET /healthz`: `{"status": "ok"}` whenever the process answers at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

impl Health {
    pub fn ok() -> Health {
        Health { status: "ok".into() }
    }
}

/// `GET /readyz`: 200 with `{"status": "ready"}` when the node takes
/// traffic; 503 with why not otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// What the disk reported, for `disk_full` and `disk_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: ReadyStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    /// The node has not said it is ready yet.
    Starting,
    /// The store refuses writes until space is freed; reads go on.
    DiskFull,
    /// The store refuses writes for good; the node needs a restart.
    DiskFailed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bytes a client sees: the same as the maps the gateway built before.
    fn same_bytes<T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug>(
        typed: T,
        old: serde_json::Value,
    ) {
        let text = serde_json::to_string(&typed).unwrap();
        assert_eq!(text, old.to_string());
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), typed);
    }

    #[test]
    fn bodies_keep_their_shape() {
        same_bytes(
            ErrorBody { error: Error::new("key_not_found", "no key 'k'") },
            json!({ "error": { "code": "key_not_found", "message": "no key 'k'" } }),
        );
        let f = Function {
            concurrency: 64,
            created_ms: 1_700_000_000_000,
            digest: "ab12".into(),
            env: BTreeMap::from([("MODE".into(), "fast".into())]),
            memory_bytes: 128 << 20,
            name: "hello".into(),
            queue: 1024,
            size: 4096,
            timeout_ms: 30_000,
            version: 2,
        };
        let f_json = json!({
            "name": "hello", "version": 2, "digest": "ab12", "size": 4096, "timeout_ms": 30_000,
            "memory_bytes": 128 << 20, "concurrency": 64, "queue": 1024, "env": { "MODE": "fast" },
            "created_ms": 1_700_000_000_000u64,
        });
        same_bytes(f.clone(), f_json.clone());
        same_bytes(FunctionList { functions: vec![f] }, json!({ "functions": [f_json] }));
        let log = InvocationLog {
            duration_us: 1500,
            error: None,
            function: "hello".into(),
            invocation_id: "inv-1".into(),
            lines: vec![LogLine { at_ms: 7, level: "info".into(), message: "hi".into() }],
            root: None,
            seq: 3,
            started_ms: 5,
            status: "ok".into(),
            version: 1,
        };
        same_bytes(
            Logs { after: 3, logs: vec![log] },
            json!({ "logs": [{
                "seq": 3, "invocation_id": "inv-1", "function": "hello", "version": 1, "started_ms": 5,
                "duration_us": 1500, "status": "ok", "error": null,
                "lines": [{ "at_ms": 7, "level": "info", "message": "hi" }],
            }], "after": 3 }),
        );
        same_bytes(
            ScanPage { cursor: "12".into(), done: false, keys: vec!["a".into()] },
            json!({ "keys": ["a"], "cursor": "12", "done": false }),
        );
        same_bytes(Value::Counter { value: -3 }, json!({ "type": "counter", "value": -3 }));
        same_bytes(Value::Max { value: 9 }, json!({ "type": "max", "value": 9 }));
        same_bytes(Value::Set { members: vec!["x".into()] }, json!({ "type": "set", "members": ["x"] }));
        same_bytes(
            Value::Map { fields: BTreeMap::from([("name".into(), "ada".into())]) },
            json!({ "type": "map", "fields": { "name": "ada" } }),
        );
        same_bytes(Health::ok(), json!({ "status": "ok" }));
        same_bytes(Readiness { reason: None, status: ReadyStatus::Ready }, json!({ "status": "ready" }));
        same_bytes(
            Readiness { reason: Some("no space left".into()), status: ReadyStatus::DiskFull },
            json!({ "status": "disk_full", "reason": "no space left" }),
        );
    }

    #[test]
    fn an_error_reads_as_its_message_and_code() {
        assert_eq!(Error::new("busy", "too many invocations").to_string(), "too many invocations (busy)");
    }
}
