//! `/v1/jobs`: map jobs, one function over many inputs.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::value::RawValue;
use squall_scheduler::{Error, JobCounts, JobMeta, JobSpec, JobState};

use crate::app::{App, Scope};
use crate::error::{ApiError, bad_request, body_error, path, query};

/// Largest job description (a million small inputs fit many times over).
pub const MAX_JOB_BYTES: usize = 256 * 1024 * 1024;
/// Most results one page gives.
const MAX_PAGE: u64 = 10_000;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/jobs", get(list).post(create).layer(DefaultBodyLimit::max(MAX_JOB_BYTES)))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/results", get(results))
}

/// `POST /v1/jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create<'a> {
    function: String,
    #[serde(default, borrow)]
    inputs: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    concurrency: Option<u32>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    out_prefix: Option<String>,
}

fn job(m: &JobMeta, c: JobCounts) -> squall_api::Job {
    squall_api::Job {
        concurrency: m.concurrency,
        counts: squall_api::JobCounts { done: c.done, failed: c.failed, pending: c.pending, running: c.running },
        created_ms: m.created_ms,
        finished_ms: m.finished_ms,
        function: squall_scheduler::bare_name(&m.function).to_string(),
        id: m.id.clone(),
        out_prefix: m.out_prefix.clone(),
        retries: m.retries,
        state: m.state.as_str().to_string(),
        total: m.total,
    }
}

async fn create(
    State(app): State<App>,
    scope: Scope,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a job description may have at most {} MiB", MAX_JOB_BYTES >> 20),
            ));
        }
        Err(e) => return Err(body_error(e)),
    };
    let c: Create = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "not a job description ({e}): send {{\"function\": NAME, \"inputs\": [JSON values]}} or {{\"function\": NAME, \"prefix\": P}}"
        ))
    })?;
    if c.inputs.is_none() && c.prefix.is_none() {
        return Err(bad_request("a job needs \"inputs\" (a list of JSON values) or \"prefix\"".into()));
    }
    let most = app.functions.settings().max_job_inputs;
    if let Some(inputs) = &c.inputs
        && inputs.len() > most
    {
        return Err(Error::TooManyInputs(inputs.len(), most).into());
    }
    let spec = JobSpec {
        function: scope.qualify(&c.function)?,
        // Each input is passed to the function as its JSON text.
        inputs: c.inputs.unwrap_or_default().into_iter().map(|v| v.get().as_bytes().to_vec()).collect(),
        prefix: c.prefix,
        concurrency: c.concurrency,
        retries: c.retries,
        out_prefix: c.out_prefix,
    };
    drop(body);
    let meta = app.functions.start_job(spec).await?;
    let counts = JobCounts { pending: meta.total, ..JobCounts::default() };
    Ok((StatusCode::ACCEPTED, axum::Json(job(&meta, counts))).into_response())
}

async fn list(State(app): State<App>, scope: Scope) -> Result<axum::Json<squall_api::JobList>, ApiError> {
    let mut jobs = Vec::new();
    for m in app.functions.jobs().await?.into_iter().filter(|m| scope.holds(&m.function)) {
        let c = app.functions.job_counts(&m).await?;
        jobs.push(job(&m, c));
    }
    Ok(axum::Json(squall_api::JobList { jobs }))
}

/// Job `id`, if it is of the request's namespace (another's is as unknown
/// as one never made).
async fn scoped_job(app: &App, scope: &Scope, id: &str) -> Result<(JobMeta, JobCounts), ApiError> {
    match app.functions.job(id).await? {
        (m, c) if scope.holds(&m.function) => Ok((m, c)),
        _ => Err(Error::JobNotFound(id.to_string()).into()),
    }
}

async fn show(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Job>, ApiError> {
    let (m, c) = scoped_job(&app, &scope, &path(id)?).await?;
    Ok(axum::Json(job(&m, c)))
}

async fn cancel(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Job>, ApiError> {
    let id = path(id)?;
    let (m, _) = scoped_job(&app, &scope, &id).await?;
    // A running job is cancelled; one that has ended is removed.
    let (m, c) = if m.state == JobState::Running {
        app.functions.cancel_job(&id).await?
    } else {
        app.functions.remove_job(&id).await?
    };
    Ok(axum::Json(job(&m, c)))
}

#[derive(Deserialize)]
struct Page {
    /// The index after which to start (none: from the first).
    after: Option<u64>,
    limit: Option<u64>,
}

async fn results(
    State(app): State<App>,
    scope: Scope,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<axum::Json<squall_api::JobResults>, ApiError> {
    let id = path(id)?;
    scoped_job(&app, &scope, &id).await?;
    let q = query(q)?;
    let from = q.after.map_or(0, |a| a.saturating_add(1));
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_PAGE);
    let (meta, found) = app.functions.job_results(&id, from, limit).await?;
    let next = found.last().map(|r| r.index).filter(|i| i + 1 < meta.total);
    let results = found
        .into_iter()
        .map(|r| match r.result {
            None => squall_api::JobResult {
                attempts: None,
                error: None,
                index: r.index,
                output: None,
                state: "pending".into(),
            },
            Some(e) => squall_api::JobResult {
                attempts: Some(e.attempts),
                error: e.error.map(|(code, message)| squall_api::Error { code, message }),
                index: r.index,
                output: e.output.map(|o| String::from_utf8_lossy(&o).into_owned()),
                state: if e.ok { "done" } else { "failed" }.into(),
            },
        })
        .collect();
    Ok(axum::Json(squall_api::JobResults { next, results }))
}
