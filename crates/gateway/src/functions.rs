//! `/v1/functions`: deploy, list, show, remove, invoke, logs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use squall_scheduler::{
    DeploySpec, Error, FailureCode, FunctionMeta, InvocationLog, LogQuery, Request, Response as Invoked,
};

use crate::app::{App, Scope};
use crate::error::{ApiError, bad_request, body_error, path, query};

/// Largest component a deploy accepts.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn routes(app: &App) -> Router<App> {
    let max_input = app.functions.settings().max_input;
    Router::new()
        .route("/v1/functions", get(list))
        .route(
            "/v1/functions/{name}",
            get(show).delete(remove).put(deploy).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        // One byte over the limit is enough to tell "too large" apart.
        .route("/v1/functions/{name}/invoke", post(invoke).layer(DefaultBodyLimit::max(max_input + 1)))
        .route("/v1/functions/{name}/logs", get(logs))
        .route("/v1/invocations/{id}", get(invocation))
}

/// The status of an invocation that ran and failed. Mapping outcomes onto
/// HTTP is the gateway's business, not the runtime's; the numbers are the
/// ones the API has always answered.
fn failure_status(code: FailureCode) -> StatusCode {
    match code {
        FailureCode::Trap | FailureCode::Internal | FailureCode::LimitExceeded => StatusCode::INTERNAL_SERVER_ERROR,
        FailureCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureCode::FunctionError => StatusCode::UNPROCESSABLE_ENTITY,
        FailureCode::Conflict => StatusCode::CONFLICT,
        FailureCode::Busy | FailureCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
    }
}

fn function(m: &FunctionMeta) -> squall_api::Function {
    squall_api::Function {
        concurrency: m.limits.concurrency,
        created_ms: m.created_ms,
        digest: m.digest.clone(),
        env: m.env.clone(),
        memory_bytes: m.limits.memory_bytes,
        name: squall_scheduler::bare_name(&m.name).to_string(),
        queue: m.limits.queue,
        size: m.size,
        timeout_ms: m.limits.timeout_ms,
        version: m.version,
    }
}

/// `30s`, `500ms`, `2m`, `1h`, or plain milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s:?}: use e.g. 500ms, 30s, 2m"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("bad duration {s:?}: use e.g. 500ms, 30s, 2m")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("duration {s:?} is too long"))
}

/// `128MiB`, `64M`, `1GiB`, `512KiB`, or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad size {s:?}: use e.g. 128MiB, 1GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("bad size {s:?}: use e.g. 128MiB, 1GiB")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("size {s:?} is too large"))
}

/// Deploy settings from query parameters (`timeout`, `memory`, `concurrency`,
/// `queue`, `env=K=V` repeated) and the matching `X-Squall-*` headers
/// (`digest` is taken out before).
fn deploy_spec(params: &[(String, String)], headers: &HeaderMap) -> Result<DeploySpec, ApiError> {
    let mut spec = DeploySpec::default();
    let mut pairs: Vec<(String, String)> = params.to_vec();
    for (h, name) in [
        ("x-squall-timeout", "timeout"),
        ("x-squall-memory", "memory"),
        ("x-squall-concurrency", "concurrency"),
        ("x-squall-queue", "queue"),
        ("x-squall-env", "env"),
    ] {
        for v in headers.get_all(h) {
            let v = v.to_str().map_err(|_| bad_request(format!("header {h} is not text")))?;
            pairs.push((name.to_string(), v.to_string()));
        }
    }
    let number =
        |k: &str, v: &str| v.parse::<u32>().map_err(|_| bad_request(format!("{k} must be a number, not {v:?}")));
    for (k, v) in pairs {
        match k.as_str() {
            "timeout" => spec.timeout_ms = Some(parse_duration_ms(&v).map_err(bad_request)?),
            "memory" => spec.memory_bytes = Some(parse_size(&v).map_err(bad_request)?),
            "concurrency" => spec.concurrency = Some(number(&k, &v)?),
            "queue" => spec.queue = Some(number(&k, &v)?),
            "env" => {
                let (key, value) =
                    v.split_once('=').ok_or_else(|| bad_request(format!("env must be KEY=VALUE, not {v:?}")))?;
                if key.is_empty() {
                    return Err(bad_request(format!("env must be KEY=VALUE, not {v:?}")));
                }
                spec.env.insert(key.to_string(), value.to_string());
            }
            _ => {
                return Err(bad_request(format!(
                    "unknown parameter {k:?}: use timeout, memory, concurrency, queue, env, digest"
                )));
            }
        }
    }
    Ok(spec)
}

async fn deploy(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = scope.qualify(&path(name)?)?;
    let mut params = query(params)?;
    // `digest=D` with no body: a component one of this scope's functions
    // runs already, deployed again under this name without sending it.
    let digest = params.iter().position(|(k, _)| k == "digest").map(|i| params.remove(i).1);
    let spec = deploy_spec(&params, &headers)?;
    let mut body = body.map_err(body_error)?;
    if let Some(digest) = digest {
        if !body.is_empty() {
            return Err(bad_request("send either the component's bytes or digest=, not both".into()));
        }
        let ours = app.functions.list().iter().any(|m| m.digest == digest && scope.holds(&m.name));
        let kept = if ours { app.functions.component(&digest).await? } else { None };
        body = kept.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "component_not_found",
                format!("no function of yours runs a component with digest {digest:?}: send its bytes"),
            )
        })?;
    }
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_component",
            "the body is empty: send the component's bytes",
        ));
    }
    let meta = app.functions.deploy(&name, body, spec).await?;
    let status = if meta.version == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(function(&meta))).into_response())
}

async fn list(State(app): State<App>, scope: Scope) -> axum::Json<squall_api::FunctionList> {
    let mine = app.functions.list().into_iter().filter(|m| scope.holds(&m.name));
    axum::Json(squall_api::FunctionList { functions: mine.map(|m| function(&m)).collect() })
}

async fn show(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Function>, ApiError> {
    Ok(axum::Json(function(&app.functions.show(&scope.qualify(&path(name)?)?)?)))
}

async fn remove(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Function>, ApiError> {
    let name = scope.qualify(&path(name)?)?;
    let removed = app.functions.remove(&name).await?;
    app.metrics.forget_function(&name);
    Ok(axum::Json(function(&removed)))
}

/// `Server-Timing`: milliseconds with three decimals (integer arithmetic:
/// float formatting is a visible cost on this path).
fn server_timing(i: &Invoked) -> String {
    let t = &i.timing;
    let mut s = String::with_capacity(128);
    let mut parts = vec![("queue", t.queue), ("instantiate", t.instantiate), ("run", t.run), ("store", t.store)];
    if !t.calls.is_zero() {
        parts.push(("calls", t.calls));
    }
    parts.push(("commit", t.commit));
    for (n, (name, d)) in parts.into_iter().enumerate() {
        let us = d.as_micros();
        let sep = if n == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{name};dur={}.{:03}", us / 1000, us % 1000);
        if name == "instantiate" && t.prepared {
            s.push_str(";desc=\"made ready before the call\"");
        }
        if name == "calls" {
            s.push_str(";desc=\"waiting for callees\"");
        }
    }
    s
}

/// `POST /v1/functions/NAME/invoke` through the router (a NAME with
/// percent-encoding; [`invoke_request`] takes the others).
async fn invoke(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    match invocation_parts(&app, &scope, name, body) {
        Ok((name, input)) => match replay_time(&uri) {
            Some(at) => invoke_at(&app, name, &headers, input, &at).await,
            None => invoke_with(&app, started, name, &headers, input).await,
        },
        Err(e) => e.into_response(),
    }
}

/// The `at` of an invocation's query (`?at=T`: a replay), decoded.
fn replay_time(uri: &axum::http::Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Q {
        at: Option<String>,
    }
    uri.query()?;
    let Query(q) = Query::<Q>::try_from_uri(uri).ok()?;
    q.at
}

/// A write as the Redis command that makes it.
fn command(w: &squall_store::Write) -> String {
    use squall_store::{Op, SetExpiry};
    let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let key = t(&w.key);
    let list = |items: &[Bytes]| items.iter().map(|i| t(i)).collect::<Vec<_>>().join(" ");
    match &w.op {
        Op::Set { value, expiry: SetExpiry::None, .. } => format!("SET {key} {}", t(value)),
        Op::Set { value, expiry: SetExpiry::At(at), .. } => format!("SET {key} {} PXAT {at}", t(value)),
        Op::Set { value, expiry: SetExpiry::Keep, .. } => format!("SET {key} {} KEEPTTL", t(value)),
        Op::Del => format!("DEL {key}"),
        Op::IncrBy(n) => format!("INCRBY {key} {n}"),
        Op::SAdd(m) => format!("SADD {key} {}", list(m)),
        Op::SRem(m) => format!("SREM {key} {}", list(m)),
        Op::HSet(pairs) => {
            let pairs: Vec<String> = pairs.iter().map(|(f, v)| format!("{} {}", t(f), t(v))).collect();
            format!("HSET {key} {}", pairs.join(" "))
        }
        Op::HDel(f) => format!("HDEL {key} {}", list(f)),
        Op::ExpireAt(at) => format!("PEXPIREAT {key} {at}"),
        Op::Persist => format!("PERSIST {key}"),
        other => format!("{other:?} {key}"),
    }
}

/// `POST /v1/functions/NAME/invoke?at=T`: a replay against the past.
async fn invoke_at(app: &App, name: String, headers: &HeaderMap, input: Bytes, at: &str) -> Response {
    let run = async {
        let at = crate::kv::past(app, at)?;
        let timeout = timeout_header(headers)?;
        let r = app.functions.invoke_at(&name, input.to_vec(), timeout, at).await?;
        let output = match r.outcome {
            Ok(output) => output,
            Err(f) => return Err(ApiError::new(failure_status(f.code), f.code.as_str(), f.message)),
        };
        Ok(axum::Json(squall_api::Replay {
            invocation_id: r.invocation_id,
            at: squall_store::rfc3339(at),
            stamp: at.to_string(),
            version: r.version,
            digest: r.digest,
            output: String::from_utf8_lossy(&output).into_owned(),
            writes: r
                .writes
                .iter()
                .map(|w| squall_api::ReplayWrite {
                    key: String::from_utf8_lossy(&w.key).into_owned(),
                    command: command(w),
                })
                .collect(),
        }))
    };
    match run.await {
        Ok(json) => json.into_response(),
        Err(e) => e.into_response(),
    }
}

/// An invocation's name and input (of a function or a DAG) from the
/// router's extractors: an input over the limit is `payload_too_large`.
pub(crate) fn invocation_parts(
    app: &App,
    scope: &Scope,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, Bytes), ApiError> {
    let name = scope.qualify(&path(name)?)?;
    let max = app.functions.settings().max_input;
    match body {
        Ok(b) => Ok((name, b)),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Error::InputTooLarge(max + 1, max).into()),
        Err(e) => Err(body_error(e)),
    }
}

/// `POST /v1/functions/NAME/invoke`, straight from the connection.
pub(crate) async fn invoke_request(
    app: &App,
    name: String,
    req: axum::http::Request<crate::body::Deadline<hyper::body::Incoming>>,
) -> Response {
    let started = Instant::now();
    let max = app.functions.settings().max_input;
    let (parts, body) = req.into_parts();
    let name = match parts.extensions.get::<Scope>().map(|scope| scope.qualify(&name)) {
        Some(Ok(name)) => name,
        Some(Err(e)) => return e.into_response(),
        None => return bad_request("the request has no scope".into()).into_response(),
    };
    // One byte over the limit is enough to tell "too large" apart.
    let input = match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, max + 1)).await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::from(Error::InputTooLarge(max + 1, max)).into_response();
        }
        Err(e) if crate::body::is_timeout(&*e) => return crate::error::body_timeout(&*e).into_response(),
        Err(e) => return bad_request(format!("cannot read the request body: {e}")).into_response(),
    };
    match replay_time(&parts.uri) {
        Some(at) => invoke_at(app, name, &parts.headers, input, &at).await,
        None => invoke_with(app, started, name, &parts.headers, input).await,
    }
}

/// The `X-Squall-Timeout-Ms` header's time limit, if there is one.
pub(crate) fn timeout_header(headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    match headers.get("x-squall-timeout-ms").map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok())) {
        None => Ok(None),
        Some(Some(ms)) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        Some(_) => Err(bad_request("X-Squall-Timeout-Ms must be a positive number".into())),
    }
}

async fn invoke_with(app: &App, started: Instant, name: String, headers: &HeaderMap, input: Bytes) -> Response {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let timeout = match timeout_header(headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let req = Request {
        input: input.to_vec(),
        idempotency_key: text("idempotency-key"),
        timeout,
        attempt: 1,
        trigger_depth: 0,
    };
    let result = app.functions.invoke(&name, req).await;
    let code = match &result {
        Ok(r) => r.outcome.as_ref().map_or_else(|f| f.code.as_str(), |_| "ok"),
        Err(e) => e.code(),
    };
    if !matches!(result, Err(Error::NotFound(_))) {
        app.metrics.function(&name).record(code, started.elapsed());
        // Removed while it ran: its series went with it, and stays gone.
        if !app.functions.exists(&name) {
            app.metrics.forget_function(&name);
        }
    }
    match result {
        Ok(r) => answer(r),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// An invocation's answer (of a function or a DAG) as an HTTP response.
pub(crate) fn answer(r: Invoked) -> Response {
    let timing = server_timing(&r);
    let mut resp = match r.outcome {
        Ok(output) => {
            let mut resp = output.into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            resp
        }
        Err(f) => {
            let busy = matches!(f.code, FailureCode::Busy | FailureCode::QuotaExceeded);
            let e = ApiError::new(failure_status(f.code), f.code.as_str(), f.message);
            if busy { ApiError { retry_after: Some(1), ..e } } else { e }.into_response()
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&r.invocation_id) {
        h.insert("x-squall-invocation-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&timing) {
        h.insert("server-timing", v);
    }
    h.insert("x-squall-attempts", HeaderValue::from(r.attempts));
    if r.replayed {
        h.insert("x-squall-idempotent-replay", HeaderValue::from_static("true"));
    }
    resp
}

#[derive(Deserialize)]
struct LogsQuery {
    invocation: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

fn log(l: &InvocationLog) -> squall_api::InvocationLog {
    squall_api::InvocationLog {
        duration_us: l.duration_us,
        error: l.error.clone(),
        function: squall_scheduler::bare_name(&l.function).to_string(),
        invocation_id: l.invocation_id.clone(),
        root: l.root.clone(),
        lines: l
            .lines
            .iter()
            .map(|line| squall_api::LogLine {
                at_ms: line.at_ms,
                level: line.level.as_str().to_string(),
                message: line.message.clone(),
            })
            .collect(),
        seq: l.seq,
        started_ms: l.started_ms,
        status: l.status.to_string(),
        version: l.version,
    }
}

async fn logs(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<axum::Json<squall_api::Logs>, ApiError> {
    let name = scope.qualify(&path(name)?)?;
    let q = query(q)?;
    let q = LogQuery { invocation_id: q.invocation, after: q.after, limit: q.limit.or(Some(20)) };
    let found = app.functions.logs(&name, &q)?;
    let next = found.last().map(|l| l.seq).or(q.after).unwrap_or(0);
    Ok(axum::Json(squall_api::Logs { after: next, logs: found.iter().map(log).collect() }))
}

/// `GET /v1/invocations/ID`: the invocation's log and those of the calls it made.
async fn invocation(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Logs>, ApiError> {
    let id = path(id)?;
    let mut found = app.functions.invocation_logs(&id);
    // Another namespace's invocation is as unknown as one never made.
    found.retain(|l| scope.holds(&l.function));
    if found.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invocation_not_found",
            format!("no log of an invocation {id:?} is kept (it is unknown, or too old)"),
        ));
    }
    let next = found.last().map_or(0, |l| l.seq);
    Ok(axum::Json(squall_api::Logs { after: next, logs: found.iter().map(log).collect() }))
}
