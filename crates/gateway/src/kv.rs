//! `/v1/kv` (keys), `/healthz`, `/readyz` and `/metrics`: handlers that
//! translate requests into store operations and results into responses; the
//! logic lives in the store.

use crate::app::{App, Scope};
use crate::error::{ApiError, bad_request, body_error, path, query};
use crate::metrics::Metrics;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use squall_api::{Readiness, ReadyStatus};
use squall_store::lattice::{Entry, Value};
use squall_store::{Health, Op, Reply, SetExpiry};
use std::sync::atomic::Ordering;

/// `max_body` is the limit on key bodies.
pub(crate) fn routes(max_body: usize) -> Router<App> {
    Router::new()
        .route("/v1/kv", get(scan))
        .route("/v1/kv/", get(scan))
        .route("/v1/kv/{*key}", get(get_key).put(put_key).delete(delete_key).post(update_key))
        .route("/healthz", get(|| async { axum::Json(squall_api::Health::ok()) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .route_layer(DefaultBodyLimit::max(max_body))
}

/// A hundred years: longer is a mistake, and would overflow the clock.
const MAX_TTL_SECONDS: u64 = 100 * 365 * 24 * 3600;

#[derive(Deserialize)]
struct KeyQuery {
    at: Option<String>,
    /// Seconds to live, for PUT.
    ttl: Option<u64>,
}

fn no_time_travel(q: &KeyQuery) -> Result<(), ApiError> {
    match &q.at {
        None => Ok(()),
        Some(_) => Err(bad_request("?at= reads the past; writes go to the present".into())),
    }
}

/// The time `?at=` names, read against the store's clock.
pub(crate) fn past(app: &App, at: &str) -> Result<squall_store::lattice::Timestamp, ApiError> {
    squall_store::parse_time(at, app.store.now_ms()).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_time", e))
}

pub(crate) fn path_key(key: Result<Path<String>, PathRejection>) -> Result<bytes::Bytes, ApiError> {
    let key = path(key)?;
    if key.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the key is empty: use /v1/kv/KEY"));
    }
    Ok(bytes::Bytes::from(key))
}

fn key_not_found(key: &[u8]) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "key_not_found", format!("no key '{}'", String::from_utf8_lossy(key)))
}

async fn get_key(
    State(app): State<App>,
    scope: Scope,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let at = q.at.as_deref().map(|t| past(&app, t)).transpose()?;
    read_key(&app, &scope, path_key(key)?, at).await
}

/// A key as it is, or as it was at `at`.
pub(crate) async fn read_key(
    app: &App,
    scope: &Scope,
    key: bytes::Bytes,
    at: Option<squall_store::lattice::Timestamp>,
) -> Result<Response, ApiError> {
    let entry = match at {
        Some(at) => app.store.read_at(&scope.store_ns, key.clone(), at).await?,
        None => match app.store.exec(&scope.store_ns, key.clone(), Op::Snapshot).await?? {
            Reply::Entry(entry) => Some(*entry),
            _ => None,
        },
    };
    entry.map(|e| render_entry(&e)).ok_or_else(|| key_not_found(&key))
}

/// An entry as the API shows it (`None`: a tombstone).
pub(crate) fn api_value(entry: &Entry) -> Option<squall_api::Value> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(match &entry.value {
        Value::Register(b) => squall_api::Value::Register { value: text(b) },
        Value::Counter(c) => squall_api::Value::Counter { value: c.value() },
        Value::Max(m) => squall_api::Value::Max { value: m.0 },
        Value::Set(s) => {
            let mut members: Vec<String> = s.iter().map(|(m, _)| text(m)).collect();
            members.sort_unstable();
            squall_api::Value::Set { members }
        }
        Value::Map(m) => squall_api::Value::Map {
            fields: m.iter().filter_map(|(f, r)| r.value.as_ref().map(|v| (text(f), text(v)))).collect(),
        },
        Value::List(items) => squall_api::Value::List {
            items: items.iter().filter_map(|(_, r)| r.value.as_ref().map(|v| text(v))).collect(),
        },
        Value::ZSet(z) => squall_api::Value::SortedSet {
            members: z.ordered().map(|(m, s)| (text(m), squall_store::lattice::format_score(s))).collect(),
        },
        Value::Tombstone => return None,
    })
}

/// A register's bytes as they are; other types as JSON.
fn render_entry(entry: &Entry) -> Response {
    if let Value::Register(b) = &entry.value {
        let mut r = (StatusCode::OK, b.clone()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        r.headers_mut().insert("x-squall-type", HeaderValue::from_static("register"));
        return r;
    }
    let Some(value) = api_value(entry) else {
        let mut r = axum::Json(None::<squall_api::Value>).into_response();
        r.headers_mut().insert("x-squall-type", HeaderValue::from_static("none"));
        return r;
    };
    let kind = value.kind();
    let mut r = axum::Json(value).into_response();
    r.headers_mut().insert("x-squall-type", HeaderValue::from_static(kind));
    r
}

/// 429 `quota_exceeded` when the scope's namespace holds all the keys it may.
fn keys_quota(app: &App, scope: &Scope) -> Result<(), ApiError> {
    match app.functions.keys_full(&scope.store_ns) {
        Some(why) => Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", why)
        }),
        None => Ok(()),
    }
}

async fn put_key(
    State(app): State<App>,
    scope: Scope,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<KeyQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let q = query(q)?;
    no_time_travel(&q)?;
    let body = body.map_err(body_error)?;
    let expiry = match q.ttl {
        Some(s @ 1..=MAX_TTL_SECONDS) => SetExpiry::At(app.store.now_ms() + s * 1000),
        Some(_) => return Err(bad_request(format!("ttl must be between 1 and {MAX_TTL_SECONDS} seconds"))),
        None => SetExpiry::None,
    };
    keys_quota(&app, &scope)?;
    app.store.exec(&scope.store_ns, path_key(key)?, Op::Set { value: body, expiry, get: false }).await??;
    Ok(StatusCode::NO_CONTENT)
}

/// One lattice update of a key (`POST /v1/kv/KEY`), as JSON: exactly one
/// of `incr` (a counter), `sadd`/`srem` (a set's members), `hset` (a map's
/// fields and values), `hdel` (a map's fields). Strings are UTF-8.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Update {
    Incr(i64),
    Sadd(Vec<String>),
    Srem(Vec<String>),
    Hset(std::collections::BTreeMap<String, String>),
    Hdel(Vec<String>),
}

async fn update_key(
    State(app): State<App>,
    scope: Scope,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let update: Update = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "the body must be one of {{\"incr\": N}}, {{\"sadd\": [..]}}, {{\"srem\": [..]}}, {{\"hset\": {{..}}}}, {{\"hdel\": [..]}}: {e}"
        ))
    })?;
    let all = |v: Vec<String>| v.into_iter().map(Bytes::from).collect::<Vec<_>>();
    let (op, field) = match update {
        Update::Incr(by) => (Op::IncrBy(by), "value"),
        Update::Sadd(m) => (Op::SAdd(all(m)), "added"),
        Update::Srem(m) => (Op::SRem(all(m)), "removed"),
        Update::Hset(f) => (Op::HSet(f.into_iter().map(|(f, v)| (Bytes::from(f), Bytes::from(v))).collect()), "added"),
        Update::Hdel(f) => (Op::HDel(all(f)), "removed"),
    };
    if matches!(&op, Op::SAdd(m) | Op::SRem(m) | Op::HDel(m) if m.is_empty())
        || matches!(&op, Op::HSet(f) if f.is_empty())
    {
        return Err(bad_request("name at least one member or field".into()));
    }
    // Removals are the way out of a full namespace.
    if matches!(op, Op::IncrBy(_) | Op::SAdd(_) | Op::HSet(_)) {
        keys_quota(&app, &scope)?;
    }
    match app.store.exec(&scope.store_ns, path_key(key)?, op).await?? {
        Reply::Int(n) => Ok(axum::Json(serde_json::json!({ field: n }))),
        other => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected reply {other:?}")))
        }
    }
}

async fn delete_key(
    State(app): State<App>,
    scope: Scope,
    key: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let key = path_key(key)?;
    match app.store.exec(&scope.store_ns, key.clone(), Op::Del).await?? {
        Reply::Int(1) => Ok(StatusCode::NO_CONTENT),
        _ => Err(key_not_found(&key)),
    }
}

#[derive(Deserialize)]
pub(crate) struct ScanQuery {
    /// Matched literally (glob characters are escaped).
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
    /// A past time: the keys as they were then.
    at: Option<String>,
}

impl ScanQuery {
    pub fn has_time(&self) -> bool {
        self.at.is_some()
    }
}

async fn scan(
    State(app): State<App>,
    scope: Scope,
    q: Result<Query<ScanQuery>, QueryRejection>,
) -> Result<axum::Json<squall_api::ScanPage>, ApiError> {
    let q = query(q)?;
    let at = q.at.as_deref().map(|t| past(&app, t)).transpose()?;
    scan_page(&app, &scope, &q, at).await
}

/// A page of keys as they are, or as they were at `at`.
pub(crate) async fn scan_page(
    app: &App,
    scope: &Scope,
    q: &ScanQuery,
    at: Option<squall_store::lattice::Timestamp>,
) -> Result<axum::Json<squall_api::ScanPage>, ApiError> {
    let cursor = match q.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse().map_err(|_| bad_request("cursor must be a number from an earlier answer".into()))?,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let pattern = q.prefix.as_deref().map(|p| squall_store::prefix_pattern(p.as_bytes()));
    let (next, keys) = match at {
        Some(at) => app.store.scan_at(&scope.store_ns, cursor, limit, pattern, at).await?,
        None => app.store.scan(&scope.store_ns, cursor, limit, pattern, None).await?,
    };
    Ok(axum::Json(squall_api::ScanPage {
        cursor: next.to_string(),
        done: next == 0,
        keys: keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect(),
    }))
}

async fn ready(State(app): State<App>) -> (StatusCode, axum::Json<Readiness>) {
    let ready = *app.ready.borrow();
    readiness(ready, app.store.health())
}

/// Ready when the node says so and the store takes writes; otherwise 503,
/// and the body says which is missing. The disk goes first: waiting does not
/// cure it, and a full disk counts because a balancer should send writes
/// elsewhere until space is freed.
fn readiness(ready: bool, health: Health) -> (StatusCode, axum::Json<Readiness>) {
    let (status, reason) = match health {
        Health::DiskFull(reason) => (ReadyStatus::DiskFull, Some(reason)),
        Health::DiskFailed(reason) => (ReadyStatus::DiskFailed, Some(reason)),
        Health::Ok if !ready => (ReadyStatus::Starting, None),
        Health::Ok => (ReadyStatus::Ready, None),
    };
    let code = if status == ReadyStatus::Ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(Readiness { reason, status }))
}

async fn render_metrics(State(app): State<App>) -> Response {
    let mut text = app.metrics.render(&app.store);
    app.metrics.render_functions(&mut text, &app.functions);
    let bytes: Vec<u64> = (0..app.store.shards()).map(|s| app.store.stats(s).bytes.load(Ordering::Relaxed)).collect();
    Metrics::render_bytes(&mut text, &bytes);
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ready: bool, health: Health) -> (u16, Readiness) {
        let (code, axum::Json(r)) = readiness(ready, health);
        (code.as_u16(), r)
    }

    fn not(status: ReadyStatus, reason: Option<&str>) -> (u16, Readiness) {
        (503, Readiness { reason: reason.map(str::to_string), status })
    }

    #[test]
    fn ready_only_when_the_node_says_so_and_the_disk_takes_writes() {
        assert_eq!(answer(true, Health::Ok), (200, Readiness { reason: None, status: ReadyStatus::Ready }));
        assert_eq!(answer(false, Health::Ok), not(ReadyStatus::Starting, None));
        let full = || Health::DiskFull("no space left on /data".into());
        assert_eq!(answer(true, full()), not(ReadyStatus::DiskFull, Some("no space left on /data")));
        assert_eq!(answer(false, full()), not(ReadyStatus::DiskFull, Some("no space left on /data")));
        let failed = Health::DiskFailed("fsync failed".into());
        assert_eq!(answer(true, failed), not(ReadyStatus::DiskFailed, Some("fsync failed")));
    }
}
