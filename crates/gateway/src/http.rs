//! The HTTP API: keys (`/v1/kv`), health, readiness and metrics. Handlers
//! translate requests into store operations and results into responses; the
//! logic lives in the store.

use crate::metrics::Metrics;
use crate::redis::DEFAULT_NS;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use squall_scheduler::Functions;
use squall_store::lattice::{Entry, Value};
use squall_store::{Handle, Op, OpError, Reply, SetExpiry};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct App {
    pub store: Handle,
    pub metrics: Arc<Metrics>,
    pub ns: bytes::Bytes,
    pub functions: Functions,
}

/// The HTTP API: the router, except for its hot route, invoking a function,
/// which is answered without it (no routing table, no extractors, no copy
/// of the headers); every request is counted and timed.
#[derive(Clone)]
pub struct Api {
    router: Router,
    app: App,
}

impl Api {
    /// `max_body` is the limit on key bodies (function components and inputs
    /// have their own limits).
    pub fn new(store: Handle, functions: Functions, metrics: Arc<Metrics>, max_body: usize) -> Api {
        let app = App { store, metrics, ns: bytes::Bytes::from_static(DEFAULT_NS), functions };
        Api { router: router(&app, max_body), app }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response {
        let started = Instant::now();
        let resp = match invoke_target(&req) {
            Some(name) => crate::functions::invoke_request(&self.app, name, req).await,
            None => {
                let mut router = self.router.clone();
                match tower_service::Service::call(&mut router, req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        };
        let metrics = &self.app.metrics;
        metrics.http_requests.fetch_add(1, Ordering::Relaxed);
        if resp.status().is_client_error() || resp.status().is_server_error() {
            metrics.http_errors.fetch_add(1, Ordering::Relaxed);
        }
        metrics.http_latency.observe(started.elapsed());
        resp
    }
}

/// NAME, if this is `POST /v1/functions/NAME/invoke` with a NAME that needs
/// no decoding (any other request goes through the router, which has the
/// same route).
fn invoke_target<B>(req: &Request<B>) -> Option<String> {
    if req.method() != Method::POST {
        return None;
    }
    let name = req.uri().path().strip_prefix("/v1/functions/")?.strip_suffix("/invoke")?;
    (!name.is_empty() && !name.contains(['/', '%'])).then(|| name.to_string())
}

fn router(app: &App, max_body: usize) -> Router {
    Router::new()
        .route("/v1/kv", get(scan))
        .route("/v1/kv/", get(scan))
        .route("/v1/kv/{*key}", get(get_key).put(put_key).delete(delete_key))
        .route("/healthz", get(|| async { axum::Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(|| async { axum::Json(json!({ "status": "ready" })) }))
        .route("/metrics", get(render_metrics))
        .route_layer(DefaultBodyLimit::max(max_body))
        .merge(crate::functions::routes(app))
        // After the merge, so the functions' routes answer a wrong method
        // with the same JSON error as the others.
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app.clone())
}

/// Serves the HTTP API until `stop` turns true, then lets in-flight requests
/// finish (each connection closes after its current response) and returns
/// once every connection has closed.
///
/// Connections are accepted here and each is served on a shard thread, round
/// robin, like Redis connections: its key operations run in place when the
/// key is that shard's, and an invocation it starts runs on that thread when
/// the function has no data elsewhere, so a warm call crosses no thread.
pub async fn serve(listener: tokio::net::TcpListener, store: Handle, api: Api, mut stop: watch::Receiver<bool>) {
    let api = Arc::new(api);
    let (closed_tx, closed_rx) = watch::channel(());
    let mut next = 0usize;
    loop {
        let std = tokio::select! {
            s = crate::redis::accept(&listener) => s,
            _ = stop.wait_for(|s| *s) => break,
        };
        let shard = next % store.shards();
        next = next.wrapping_add(1);
        let (api, mut stop, closed) = (api.clone(), stop.clone(), closed_rx.clone());
        store.spawn_on(shard, async move {
            let _open = closed;
            // Registering the socket here puts it on this shard's event loop.
            let Ok(stream) = tokio::net::TcpStream::from_std(std) else { return };
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(closed_rx);
    closed_tx.closed().await;
}

/// An API error: a status and a stable code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": { "code": self.code, "message": self.message } }))).into_response()
    }
}

impl From<squall_store::Error> for ApiError {
    fn from(e: squall_store::Error) -> Self {
        match e {
            squall_store::Error::Refused(e) => e.into(),
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let status = match e {
            OpError::WrongType | OpError::NotInteger | OpError::Overflow => StatusCode::CONFLICT,
            OpError::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
            OpError::DiskFailed => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.message())
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}; see /v1/kv/KEY, /v1/functions, /healthz, /readyz, /metrics", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A hundred years: longer is a mistake, and would overflow the clock.
const MAX_TTL_SECONDS: u64 = 100 * 365 * 24 * 3600;

#[derive(Deserialize)]
struct KeyQuery {
    at: Option<String>,
    /// Seconds to live, for PUT.
    ttl: Option<u64>,
}

fn key_bytes(key: String) -> Result<bytes::Bytes, ApiError> {
    if key.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the key is empty: use /v1/kv/KEY"));
    }
    Ok(bytes::Bytes::from(key))
}

fn no_time_travel(q: &KeyQuery) -> Result<(), ApiError> {
    match &q.at {
        None => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "reading the past (?at=) needs the window log, which this version does not have yet",
        )),
    }
}

/// A body that could not be read (too large, cut off) as a JSON error.
pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "bad_request" };
    ApiError::new(status, code, e.body_text())
}

/// Axum's own rejections (bad query strings, bad percent-encoding) as JSON errors.
pub(crate) fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn path_key(key: Result<Path<String>, PathRejection>) -> Result<bytes::Bytes, ApiError> {
    let Path(key) = key.map_err(|e| bad_request(e.body_text()))?;
    key_bytes(key)
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| bad_request(e.body_text()))
}

async fn get_key(
    State(app): State<App>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    no_time_travel(&query(q)?)?;
    let key = path_key(key)?;
    let shown = String::from_utf8_lossy(&key).into_owned();
    match app.store.exec(&app.ns, key, Op::Snapshot).await?? {
        Reply::Entry(entry) => Ok(render_entry(&entry)),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "key_not_found", format!("no key '{shown}'"))),
    }
}

/// A register's bytes as they are; other types as JSON.
fn render_entry(entry: &Entry) -> Response {
    let text = |b: &[u8]| Json::String(String::from_utf8_lossy(b).into_owned());
    let (kind, body) = match &entry.value {
        Value::Register(b) => {
            let mut r = (StatusCode::OK, b.clone()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            r.headers_mut().insert("x-squall-type", HeaderValue::from_static("register"));
            return r;
        }
        Value::Counter(c) => ("counter", json!({ "type": "counter", "value": c.value() })),
        Value::Max(m) => ("max", json!({ "type": "max", "value": m.0 })),
        Value::Set(s) => {
            ("set", json!({ "type": "set", "members": s.iter().map(|(m, _)| text(m)).collect::<Vec<_>>() }))
        }
        Value::Map(m) => {
            let fields: serde_json::Map<String, Json> = m
                .iter()
                .filter_map(|(f, r)| r.value.as_ref().map(|v| (String::from_utf8_lossy(f).into_owned(), text(v))))
                .collect();
            ("map", json!({ "type": "map", "fields": fields }))
        }
        Value::Tombstone => ("none", Json::Null),
    };
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert("x-squall-type", HeaderValue::from_static(kind));
    r
}

async fn put_key(
    State(app): State<App>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<KeyQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let q = query(q)?;
    no_time_travel(&q)?;
    let body = body.map_err(body_error)?;
    let expiry = match q.ttl {
        Some(s @ 1..=MAX_TTL_SECONDS) => SetExpiry::At(crate::commands::now_ms() + s * 1000),
        Some(_) => return Err(bad_request(format!("ttl must be between 1 and {MAX_TTL_SECONDS} seconds"))),
        None => SetExpiry::None,
    };
    app.store.exec(&app.ns, path_key(key)?, Op::Set { value: body, expiry, get: false }).await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_key(State(app): State<App>, key: Result<Path<String>, PathRejection>) -> Result<StatusCode, ApiError> {
    let key = path_key(key)?;
    let shown = String::from_utf8_lossy(&key).into_owned();
    match app.store.exec(&app.ns, key, Op::Del).await?? {
        Reply::Int(1) => Ok(StatusCode::NO_CONTENT),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "key_not_found", format!("no key '{shown}'"))),
    }
}

#[derive(Deserialize)]
struct ScanQuery {
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Escapes glob characters so a prefix matches literally.
async fn scan(
    State(app): State<App>,
    q: Result<Query<ScanQuery>, QueryRejection>,
) -> Result<axum::Json<Json>, ApiError> {
    let q = query(q)?;
    let cursor = match q.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "cursor must be a number from an earlier answer")
        })?,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let pattern = q.prefix.as_deref().map(|p| squall_store::prefix_pattern(p.as_bytes()));
    let (next, keys) = app.store.scan(&app.ns, cursor, limit, pattern, None).await?;
    let keys: Vec<Json> = keys.iter().map(|k| Json::String(String::from_utf8_lossy(k).into_owned())).collect();
    Ok(axum::Json(json!({ "keys": keys, "cursor": next.to_string(), "done": next == 0 })))
}

async fn render_metrics(State(app): State<App>) -> Response {
    let mut text = app.metrics.render(&app.store);
    crate::functions::render_metrics(&app, &mut text);
    let bytes: Vec<u64> = (0..app.store.shards()).map(|s| app.store.stats(s).bytes.load(Ordering::Relaxed)).collect();
    Metrics::render_bytes(&mut text, &bytes);
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
