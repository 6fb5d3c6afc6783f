//! `/v1/triggers`: add, list, show and remove triggers, and read their
//! dead letters.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use squall_scheduler::{Error, Trigger, TriggerSource, TriggerSpec};

use crate::app::{App, Scope};
use crate::error::{ApiError, body_error, path, query};

/// Largest trigger description.
const MAX_TRIGGER_BYTES: usize = 64 * 1024;
/// Most dead letters one page holds.
const MAX_PAGE: u64 = 1000;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/triggers", get(list).post(create).layer(DefaultBodyLimit::max(MAX_TRIGGER_BYTES)))
        .route("/v1/triggers/{id}", get(show).delete(remove).put(add).layer(DefaultBodyLimit::max(MAX_TRIGGER_BYTES)))
        .route("/v1/triggers/{id}/dead", get(dead))
}

pub(crate) fn trigger(t: &Trigger) -> squall_api::Trigger {
    let mut out = squall_api::Trigger {
        channel: None,
        created_ms: t.created_ms,
        cron: None,
        events: Vec::new(),
        function: t.function.clone(),
        id: squall_scheduler::bare_name(&t.id).to_string(),
        keys: None,
        kind: String::new(),
        retries: t.retries,
    };
    match &t.source {
        TriggerSource::Channel { channel } => (out.kind, out.channel) = ("channel".into(), Some(channel.clone())),
        TriggerSource::Keys { pattern, events } => {
            (out.kind, out.keys) = ("keys".into(), Some(pattern.clone()));
            out.events = events.iter().map(|e| e.as_str().to_string()).collect();
        }
        TriggerSource::Cron { schedule } => (out.kind, out.cron) = ("cron".into(), Some(schedule.clone())),
    }
    out
}

async fn list(State(app): State<App>, scope: Scope) -> axum::Json<squall_api::TriggerList> {
    let mine = app.functions.triggers().into_iter().filter(|t| scope.holds(&t.id));
    axum::Json(squall_api::TriggerList { triggers: mine.map(|t| trigger(&t)).collect() })
}

async fn show(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Trigger>, ApiError> {
    Ok(axum::Json(trigger(&*app.functions.trigger(&scope.qualify(&path(id)?)?)?)))
}

async fn remove(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Trigger>, ApiError> {
    Ok(axum::Json(trigger(&*app.functions.remove_trigger(&scope.qualify(&path(id)?)?).await?)))
}

fn spec(body: Result<Bytes, BytesRejection>) -> Result<TriggerSpec, ApiError> {
    let body = body.map_err(body_error)?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::from(Error::BadTrigger(format!(
            "not a trigger ({e}): send {{\"function\": \"f\", \"channel\": \"C\"}}, {{\"function\": \"f\", \"keys\": \"PATTERN\", \"events\": [\"set\", \"del\", \"expired\"]}} or {{\"function\": \"f\", \"cron\": \"*/5 * * * *\"}}"
        )))
    })
}

async fn add(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = scope.qualify(&path(id)?)?;
    put(&app, &id, spec(body)?).await
}

/// `POST /v1/triggers`: a trigger named after its function and what fires
/// it, so the same one added twice is one trigger.
async fn create(
    State(app): State<App>,
    scope: Scope,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = spec(body)?;
    let id = scope.qualify(&spec.default_id())?;
    put(&app, &id, spec).await
}

async fn put(app: &App, id: &str, spec: TriggerSpec) -> Result<Response, ApiError> {
    let (t, new) = app.functions.put_trigger(id, spec).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(trigger(&t))).into_response())
}

#[derive(Deserialize)]
struct Page {
    /// The first entry's index (none: 0, the oldest).
    from: Option<u64>,
    limit: Option<u64>,
}

async fn dead(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<axum::Json<squall_api::DeadLetters>, ApiError> {
    let id = scope.qualify(&path(id)?)?;
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let (letters, total) = app.functions.dead_letters(&id, q.from.unwrap_or(0), limit).await?;
    let letters = letters
        .into_iter()
        .map(|l| squall_api::DeadLetter {
            attempts: l.attempts,
            code: l.code,
            event: l.event,
            message: l.message,
            time_ms: l.time_ms,
        })
        .collect();
    Ok(axum::Json(squall_api::DeadLetters { letters, total }))
}
