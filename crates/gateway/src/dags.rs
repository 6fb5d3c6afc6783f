//! `/v1/dags`: register, list, show, remove and invoke DAGs of functions.

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use squall_scheduler::{Dag, DagSpec, Error};

use crate::app::{App, Scope};
use crate::error::{ApiError, body_error, path};
use crate::functions::{answer, invocation_parts, timeout_header};

/// Largest DAG description.
pub(crate) const MAX_DAG_BYTES: usize = 1024 * 1024;

pub(crate) fn routes(app: &App) -> Router<App> {
    let max_input = app.functions.settings().max_input;
    Router::new()
        .route("/v1/dags", get(list))
        .route("/v1/dags/{name}", get(show).delete(remove).put(register).layer(DefaultBodyLimit::max(MAX_DAG_BYTES)))
        .route("/v1/dags/{name}/invoke", post(invoke).layer(DefaultBodyLimit::max(max_input + 1)))
}

pub(crate) fn dag(d: &Dag) -> squall_api::Dag {
    squall_api::Dag {
        created_ms: d.created_ms,
        edges: d.edges.clone(),
        name: squall_scheduler::bare_name(&d.name).to_string(),
        order: d.order.clone(),
        sink: d.sink.clone(),
        steps: d.steps.iter().map(|s| squall_api::DagStep { function: s.function.clone(), id: s.id.clone() }).collect(),
    }
}

async fn list(State(app): State<App>, scope: Scope) -> axum::Json<squall_api::DagList> {
    let mine = app.functions.dags().into_iter().filter(|d| scope.holds(&d.name));
    axum::Json(squall_api::DagList { dags: mine.map(|d| dag(&d)).collect() })
}

async fn show(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Dag>, ApiError> {
    Ok(axum::Json(dag(&*app.functions.dag(&scope.qualify(&path(name)?)?)?)))
}

async fn remove(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<squall_api::Dag>, ApiError> {
    Ok(axum::Json(dag(&*app.functions.remove_dag(&scope.qualify(&path(name)?)?).await?)))
}

async fn register(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = scope.qualify(&path(name)?)?;
    let body = body.map_err(body_error)?;
    let spec: DagSpec = serde_json::from_slice(&body).map_err(|e| {
        ApiError::from(Error::BadDag(format!(
            "not a DAG description ({e}): send {{\"chain\": [\"f\", \"g\"]}} or {{\"steps\": [...], \"edges\": [[\"from\", \"to\"], ...]}}"
        )))
    })?;
    let (d, new) = app.functions.put_dag(&name, spec).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(dag(&d))).into_response())
}

async fn invoke(
    State(app): State<App>,
    scope: Scope,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let (name, input) = match invocation_parts(&app, &scope, name, body) {
        Ok(parts) => parts,
        Err(e) => return e.into_response(),
    };
    let timeout = match timeout_header(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let result = app.functions.invoke_dag(&name, input.to_vec(), timeout).await;
    let code = match &result {
        Ok(r) => r.outcome.as_ref().map_or_else(|f| f.code.as_str(), |_| "ok"),
        Err(e) => e.code(),
    };
    if !matches!(result, Err(Error::DagNotFound(_))) {
        let series = squall_scheduler::qualify(&scope.ns, &format!("dag:{}", squall_scheduler::bare_name(&name)));
        app.metrics.function(&series).record(code, started.elapsed());
    }
    match result {
        Ok(r) => answer(r),
        Err(e) => ApiError::from(e).into_response(),
    }
}
