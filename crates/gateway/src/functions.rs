//! `/v1/functions`: deploy, list, show, remove, invoke, logs; and the
//! per-function metrics.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use squall_scheduler::{
    DeploySpec, Error, FailureCode, FunctionMeta, InvocationLog, LogQuery, Request, Response as Invoked,
};

use crate::http::{ApiError, App, bad_request, body_error, query};
use crate::metrics::Histogram;

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
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::BadComponent(_) | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::InputTooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// The status a failed invocation answers with.
fn status(code: FailureCode) -> StatusCode {
    match code {
        FailureCode::Trap | FailureCode::Internal | FailureCode::LimitExceeded => StatusCode::INTERNAL_SERVER_ERROR,
        FailureCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureCode::FunctionError => StatusCode::UNPROCESSABLE_ENTITY,
        FailureCode::Conflict => StatusCode::CONFLICT,
    }
}

fn error_response(e: Error) -> Response {
    let retry = match &e {
        Error::Busy { retry_after, .. } => Some(retry_after.as_secs().max(1)),
        _ => None,
    };
    let mut r = ApiError::from(e).into_response();
    if let Some(secs) = retry {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn meta_json(m: &FunctionMeta) -> Json {
    json!({
        "name": m.name,
        "version": m.version,
        "digest": m.digest,
        "size": m.size,
        "timeout_ms": m.limits.timeout_ms,
        "memory_bytes": m.limits.memory_bytes,
        "concurrency": m.limits.concurrency,
        "queue": m.limits.queue,
        "env": m.env,
        "created_ms": m.created_ms,
    })
}

fn path_name(name: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    name.map(|Path(n)| n).map_err(|e| bad_request(e.body_text()))
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
/// `queue`, `env=K=V` repeated) and the matching `X-Squall-*` headers.
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
                    "unknown parameter {k:?}: use timeout, memory, concurrency, queue, env"
                )));
            }
        }
    }
    Ok(spec)
}

async fn deploy(
    State(app): State<App>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = path_name(name)?;
    let spec = deploy_spec(&query(params)?, &headers)?;
    let body = body.map_err(body_error)?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_component",
            "the body is empty: send the component's bytes",
        ));
    }
    let meta = app.functions.deploy(&name, body, spec).await?;
    let status = if meta.version == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(meta_json(&meta))).into_response())
}

async fn list(State(app): State<App>) -> axum::Json<Json> {
    let fns: Vec<Json> = app.functions.list().iter().map(meta_json).collect();
    axum::Json(json!({ "functions": fns }))
}

async fn show(State(app): State<App>, name: Result<Path<String>, PathRejection>) -> Result<axum::Json<Json>, ApiError> {
    Ok(axum::Json(meta_json(&app.functions.show(&path_name(name)?)?)))
}

async fn remove(
    State(app): State<App>,
    name: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Json>, ApiError> {
    Ok(axum::Json(meta_json(&app.functions.remove(&path_name(name)?).await?)))
}

/// `Server-Timing`: milliseconds with three decimals (integer arithmetic:
/// float formatting is a visible cost on this path).
fn server_timing(i: &Invoked) -> String {
    let t = &i.timing;
    let mut s = String::with_capacity(128);
    let parts =
        [("queue", t.queue), ("instantiate", t.instantiate), ("run", t.run), ("store", t.store), ("commit", t.commit)];
    for (n, (name, d)) in parts.into_iter().enumerate() {
        let us = d.as_micros();
        let sep = if n == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{name};dur={}.{:03}", us / 1000, us % 1000);
        if name == "instantiate" && t.prepared {
            s.push_str(";desc=\"made ready before the call\"");
        }
    }
    s
}

/// `POST /v1/functions/NAME/invoke` through the router (a NAME with
/// percent-encoding; [`invoke_request`] takes the others).
async fn invoke(
    State(app): State<App>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let name = match path_name(name) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let max = app.functions.settings().max_input;
    let input = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(Error::InputTooLarge(max + 1, max));
        }
        Err(e) => return body_error(e).into_response(),
    };
    invoke_with(&app, started, name, &headers, input).await
}

/// `POST /v1/functions/NAME/invoke`, straight from the connection.
pub(crate) async fn invoke_request(
    app: &App,
    name: String,
    req: axum::http::Request<hyper::body::Incoming>,
) -> Response {
    let started = Instant::now();
    let max = app.functions.settings().max_input;
    let (parts, body) = req.into_parts();
    // One byte over the limit is enough to tell "too large" apart.
    let input = match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, max + 1)).await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error_response(Error::InputTooLarge(max + 1, max));
        }
        Err(e) => return bad_request(format!("cannot read the request body: {e}")).into_response(),
    };
    invoke_with(app, started, name, &parts.headers, input).await
}

async fn invoke_with(app: &App, started: Instant, name: String, headers: &HeaderMap, input: Bytes) -> Response {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let timeout = match text("x-squall-timeout-ms").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(ms)) if ms > 0 => Some(Duration::from_millis(ms)),
        Some(_) => return bad_request("X-Squall-Timeout-Ms must be a positive number".into()).into_response(),
    };
    let req = Request { input: input.to_vec(), idempotency_key: text("idempotency-key"), timeout };
    let result = app.functions.invoke(&name, req).await;
    let code = match &result {
        Ok(r) => r.outcome.as_ref().map_or_else(|f| f.code.as_str(), |_| "ok"),
        Err(e) => e.code(),
    };
    if !matches!(result, Err(Error::NotFound(_))) {
        app.metrics.function(&name).record(code, started.elapsed());
    }
    let r = match result {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    let timing = server_timing(&r);
    let mut resp = match r.outcome {
        Ok(output) => {
            let mut resp = output.into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            resp
        }
        Err(f) => (status(f.code), axum::Json(json!({ "error": { "code": f.code.as_str(), "message": f.message } })))
            .into_response(),
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

fn log_json(l: &InvocationLog) -> Json {
    let lines: Vec<Json> = l
        .lines
        .iter()
        .map(|line| json!({ "at_ms": line.at_ms, "level": line.level.as_str(), "message": line.message }))
        .collect();
    json!({
        "seq": l.seq,
        "invocation_id": l.invocation_id,
        "function": l.function,
        "version": l.version,
        "started_ms": l.started_ms,
        "duration_us": l.duration_us,
        "status": l.status,
        "error": l.error,
        "lines": lines,
    })
}

async fn logs(
    State(app): State<App>,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<axum::Json<Json>, ApiError> {
    let name = path_name(name)?;
    let q = query(q)?;
    let q = LogQuery { invocation_id: q.invocation, after: q.after, limit: q.limit.or(Some(20)) };
    let found = app.functions.logs(&name, &q)?;
    let next = found.last().map(|l| l.seq).or(q.after).unwrap_or(0);
    Ok(axum::Json(json!({ "logs": found.iter().map(log_json).collect::<Vec<_>>(), "after": next })))
}

/// Invocations of one function, by outcome code, and their latency.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    by_code: Mutex<BTreeMap<&'static str, u64>>,
    pub total: AtomicU64,
    pub latency: Histogram,
}

impl FunctionMetrics {
    fn record(&self, code: &'static str, d: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.by_code.lock().expect("metrics").entry(code).or_default() += 1;
        self.latency.observe(d);
    }
}

/// Per-function metrics, by name.
#[derive(Debug, Default)]
pub struct FunctionsMetrics {
    by_name: Mutex<HashMap<String, Arc<FunctionMetrics>>>,
}

impl crate::Metrics {
    pub fn function(&self, name: &str) -> Arc<FunctionMetrics> {
        let mut m = self.functions.by_name.lock().expect("metrics");
        if let Some(f) = m.get(name) {
            return f.clone();
        }
        m.entry(name.to_string()).or_default().clone()
    }
}

pub(crate) fn render_metrics(app: &App, out: &mut String) {
    let by_name: Vec<(String, Arc<FunctionMetrics>)> = {
        let m = app.metrics.functions.by_name.lock().expect("metrics");
        let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let name = "squall_function_invocations_total";
    let _ = writeln!(out, "# HELP {name} Invocations over HTTP, by function and outcome code.\n# TYPE {name} counter");
    for (f, m) in &by_name {
        for (code, n) in m.by_code.lock().expect("metrics").iter() {
            let _ = writeln!(out, "{name}{{function=\"{f}\",code=\"{code}\"}} {n}");
        }
    }
    let name = "squall_function_errors_total";
    let _ =
        writeln!(out, "# HELP {name} Invocations that did not succeed, by function and code.\n# TYPE {name} counter");
    for (f, m) in &by_name {
        for (code, n) in m.by_code.lock().expect("metrics").iter().filter(|(c, _)| **c != "ok") {
            let _ = writeln!(out, "{name}{{function=\"{f}\",code=\"{code}\"}} {n}");
        }
    }
    let name = "squall_function_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Time to answer an invocation, queue included.\n# TYPE {name} histogram");
    for (f, m) in &by_name {
        m.latency.render_series(out, name, &format!("function=\"{f}\","));
    }
    let name = "squall_function_instances_ready";
    let _ = writeln!(
        out,
        "# HELP {name} Instances made ready ahead of their calls, all functions.\n# TYPE {name} gauge\n{name} {}",
        app.functions.ready_instances()
    );
    for (name, help, pick) in [
        ("squall_function_instances", "Instances running now, by function.", 2usize),
        ("squall_function_queue_depth", "Invocations waiting for a turn, by function.", 1),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (f, queued, running) in app.functions.load_by_function() {
            let v = if pick == 1 { queued } else { running };
            let _ = writeln!(out, "{name}{{function=\"{f}\"}} {v}");
        }
    }
}
