//! `/v1/snapshots`: named, read-only views of a namespace's keys as they
//! were at one time. A snapshot is its time: reads through it are reads of
//! the past (the window log undoes what changed since, key by key), so it
//! copies nothing and shares every unchanged value with the live store, and
//! moving it to another time costs nothing until keys are read. Snapshots
//! are bounded in number, expire, and live in the node's memory (a restart
//! forgets them; the times they name are still readable with `?at=`).

use crate::app::{App, Scope, Snap};
use crate::error::{ApiError, bad_request, body_error, path, query};
use crate::kv::{ScanQuery, past, path_key, read_key, scan_page};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use squall_store::lattice::Timestamp;
use std::sync::atomic::Ordering;

/// Snapshots a node keeps at once (all namespaces).
pub const MAX_SNAPSHOTS: usize = 64;
/// How long a snapshot lives unless asked otherwise (moving it renews it).
const DEFAULT_TTL_S: u64 = 600;
const MAX_TTL_S: u64 = 24 * 3600;
/// The most a snapshot request body may hold.
pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/snapshots", get(list).post(create))
        .route("/v1/snapshots/{id}", get(show).patch(move_to).delete(remove))
        .route("/v1/snapshots/{id}/kv", get(scan))
        .route("/v1/snapshots/{id}/kv/", get(scan))
        .route("/v1/snapshots/{id}/kv/{*key}", get(read))
        .route("/v1/changes", get(changes))
        .route("/v1/diff", get(diff))
        .route("/v1/find", get(find))
}

/// `GET /v1/find`.
#[derive(Deserialize)]
struct Find {
    from: String,
    /// [default: now]
    to: Option<String>,
    #[serde(rename = "where")]
    predicate: String,
}

/// `GET /v1/find?from=&to=&where=PREDICATE`: the first time the predicate
/// held (the grammar is `squall_store::predicate`'s, in the README).
async fn find(
    State(app): State<App>,
    scope: Scope,
    q: Result<Query<Find>, QueryRejection>,
) -> Result<axum::Json<squall_api::Found>, ApiError> {
    let q = query(q)?;
    let pred = squall_store::predicate::parse(&q.predicate)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_predicate", e))?;
    let (from, to) = range(&app, &q.from, q.to.as_deref())?;
    let found = app.store.find(&scope.store_ns, from, to, &pred).await?;
    Ok(axum::Json(match found {
        None => squall_api::Found { found: false, stamp: None, time: None, step: None },
        Some((t, unit)) => squall_api::Found {
            found: true,
            stamp: Some(t.to_string()),
            time: Some(squall_store::rfc3339(t)),
            step: (!unit.is_empty()).then(|| squall_api::Step {
                stamp: t.to_string(),
                time: squall_store::rfc3339(t),
                invocation_id: unit.first().and_then(origin),
                keys: unit.iter().map(|c| key_change(&c.key, c.before.as_ref(), c.after.as_ref())).collect(),
            }),
        },
    }))
}

/// `GET /v1/changes` and `GET /v1/diff`.
#[derive(Deserialize)]
struct Between {
    from: String,
    /// [default: now]
    to: Option<String>,
    prefix: Option<String>,
    /// Changes per shard per answer [default: 1000, at most 10,000].
    limit: Option<usize>,
}

/// The times `from` and `to` (now when left out) name, in order.
fn range(app: &App, from: &str, to: Option<&str>) -> Result<(Timestamp, Timestamp), ApiError> {
    let from = past(app, from)?;
    let to = match to {
        Some(t) => past(app, t)?,
        None => Timestamp::new(app.store.now_ms(), u16::MAX),
    };
    if to < from {
        return Err(bad_request("to is before from".into()));
    }
    Ok((from, to))
}

/// The changes a [`Between`] asks for, and the times it names.
async fn between(
    app: &App,
    scope: &Scope,
    q: Result<Query<Between>, QueryRejection>,
) -> Result<(Vec<squall_store::ChangeAt>, [Timestamp; 3]), ApiError> {
    let q = query(q)?;
    let (from, to) = range(app, &q.from, q.to.as_deref())?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let prefix = q.prefix.map(bytes::Bytes::from);
    let (changes, upto) = app.store.changes(&scope.store_ns, from, to, prefix, limit).await?;
    Ok((changes, [from, to, upto]))
}

/// The invocation a change names, as text.
fn origin(c: &squall_store::ChangeAt) -> Option<String> {
    c.origin.as_ref().map(|o| String::from_utf8_lossy(o).into_owned())
}

fn key_change(
    key: &[u8],
    before: Option<&squall_store::lattice::Entry>,
    after: Option<&squall_store::lattice::Entry>,
) -> squall_api::KeyChange {
    squall_api::KeyChange {
        key: String::from_utf8_lossy(key).into_owned(),
        before: before.and_then(crate::kv::api_value),
        after: after.and_then(crate::kv::api_value),
    }
}

/// `GET /v1/changes?from=&to=&prefix=`: what changed, one atomic unit (one
/// stamp) at a time, each key as it was just before and after.
async fn changes(
    State(app): State<App>,
    scope: Scope,
    q: Result<Query<Between>, QueryRejection>,
) -> Result<axum::Json<squall_api::Steps>, ApiError> {
    let (changes, [from, to, upto]) = between(&app, &scope, q).await?;
    let mut steps: Vec<squall_api::Step> = Vec::new();
    for c in &changes {
        let stamp = c.time.to_string();
        if steps.last().is_none_or(|s| s.stamp != stamp) {
            let time = squall_store::rfc3339(c.time);
            steps.push(squall_api::Step { stamp, time, invocation_id: origin(c), keys: Vec::new() });
        }
        let step = steps.last_mut().expect("pushed above");
        step.keys.push(key_change(&c.key, c.before.as_ref(), c.after.as_ref()));
    }
    Ok(axum::Json(squall_api::Steps {
        from: from.to_string(),
        to: to.to_string(),
        upto: upto.to_string(),
        complete: upto == to,
        steps,
    }))
}

/// `GET /v1/diff?from=&to=&prefix=`: the keys whose values differ between
/// the two times, as they were at each.
async fn diff(
    State(app): State<App>,
    scope: Scope,
    q: Result<Query<Between>, QueryRejection>,
) -> Result<axum::Json<squall_api::Diff>, ApiError> {
    let (changes, [from, to, upto]) = between(&app, &scope, q).await?;
    // Each key's first `before` and last `after`, in key order.
    let mut ends: std::collections::BTreeMap<
        &[u8],
        (Option<&squall_store::lattice::Entry>, Option<&squall_store::lattice::Entry>),
    > = std::collections::BTreeMap::new();
    for c in &changes {
        ends.entry(c.key.as_ref()).or_insert((c.before.as_ref(), None)).1 = c.after.as_ref();
    }
    let keys = ends
        .into_iter()
        .map(|(key, (before, after))| key_change(key, before, after))
        .filter(|k| k.before != k.after)
        .collect();
    Ok(axum::Json(squall_api::Diff {
        from: from.to_string(),
        to: to.to_string(),
        upto: upto.to_string(),
        complete: upto == to,
        keys,
    }))
}

/// `POST /v1/snapshots` and `PATCH /v1/snapshots/ID`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct At {
    /// RFC 3339, before now (`-5m`) or a stamp; fixed when the request is served.
    at: String,
    /// Seconds to live [default: 600, at most a day].
    #[serde(default)]
    ttl: Option<u64>,
}

fn info(id: &str, s: &Snap) -> squall_api::Snapshot {
    squall_api::Snapshot {
        id: id.to_string(),
        at: squall_store::rfc3339(s.at),
        stamp: s.at.to_string(),
        expires: squall_store::rfc3339(Timestamp::new(s.expires_ms, 0)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "snapshot_not_found", format!("no snapshot '{id}' (it may have expired)"))
}

/// The time and lifetime a request asks for, checked against the window.
fn resolve(app: &App, body: Result<Bytes, BytesRejection>) -> Result<(Timestamp, u64), ApiError> {
    let body = body.map_err(body_error)?;
    let req: At = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("expected {{\"at\": TIME, \"ttl\": SECONDS}}: {e}")))?;
    let ttl = match req.ttl {
        None => DEFAULT_TTL_S,
        Some(t @ 1..=MAX_TTL_S) => t,
        Some(_) => return Err(bad_request(format!("ttl must be between 1 and {MAX_TTL_S} seconds"))),
    };
    let at = past(app, &req.at)?;
    let oldest = app.store.window_oldest();
    if at < oldest {
        return Err(squall_store::Error::OutOfWindow(oldest).into());
    }
    Ok((at, app.store.now_ms() + ttl * 1000))
}

async fn create(
    State(app): State<App>,
    scope: Scope,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (at, expires_ms) = resolve(&app, body)?;
    let mut all = app.snapshots.live(app.store.now_ms());
    if all.len() >= MAX_SNAPSHOTS {
        return Err(ApiError {
            retry_after: Some(60),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_snapshots",
                format!("the node keeps at most {MAX_SNAPSHOTS} snapshots: remove one, or wait for one to expire"),
            )
        });
    }
    let id = format!("snap-{:x}", app.snapshots.next.fetch_add(1, Ordering::Relaxed) + 1);
    let snap = Snap { at, expires_ms };
    let body = info(&id, &snap);
    all.insert((scope.ns.clone(), id), snap);
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn list(State(app): State<App>, scope: Scope) -> axum::Json<squall_api::SnapshotList> {
    let all = app.snapshots.live(app.store.now_ms());
    let mut snapshots: Vec<squall_api::Snapshot> =
        all.iter().filter(|((ns, _), _)| *ns == scope.ns).map(|((_, id), s)| info(id, s)).collect();
    snapshots.sort_by(|a, b| a.stamp.cmp(&b.stamp).then_with(|| a.id.cmp(&b.id)));
    axum::Json(squall_api::SnapshotList { snapshots })
}

/// The time snapshot `id` of the scope's namespace shows.
fn time_of(app: &App, scope: &Scope, id: &str) -> Result<Timestamp, ApiError> {
    let all = app.snapshots.live(app.store.now_ms());
    all.get(&(scope.ns.clone(), id.to_string())).map(|s| s.at).ok_or_else(|| not_found(id))
}

async fn show(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Snapshot>, ApiError> {
    let id = path(id)?;
    let all = app.snapshots.live(app.store.now_ms());
    let snap = all.get(&(scope.ns.clone(), id.clone())).ok_or_else(|| not_found(&id))?;
    Ok(axum::Json(info(&id, snap)))
}

/// Moves a snapshot to another time (and renews it).
async fn move_to(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<squall_api::Snapshot>, ApiError> {
    let id = path(id)?;
    let (at, expires_ms) = resolve(&app, body)?;
    let mut all = app.snapshots.live(app.store.now_ms());
    let snap = all.get_mut(&(scope.ns.clone(), id.clone())).ok_or_else(|| not_found(&id))?;
    *snap = Snap { at, expires_ms };
    Ok(axum::Json(info(&id, snap)))
}

async fn remove(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path(id)?;
    let mut all = app.snapshots.live(app.store.now_ms());
    all.remove(&(scope.ns.clone(), id.clone())).ok_or_else(|| not_found(&id))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn read(
    State(app): State<App>,
    scope: Scope,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, key) = path(ids)?;
    let at = time_of(&app, &scope, &id)?;
    let key = path_key(Ok(Path(key)))?;
    read_key(&app, &scope, key, Some(at)).await
}

async fn scan(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<ScanQuery>, QueryRejection>,
) -> Result<axum::Json<squall_api::ScanPage>, ApiError> {
    let id = path(id)?;
    let q = query(q)?;
    if q.has_time() {
        return Err(bad_request("a snapshot has its own time: move it (PATCH) to look elsewhere".into()));
    }
    let at = time_of(&app, &scope, &id)?;
    scan_page(&app, &scope, &q, Some(at)).await
}
