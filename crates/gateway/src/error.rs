//! The API's errors: a status and a stable code, answered as the JSON body
//! [`squall_api::ErrorBody`]; how store and scheduler errors become one; and
//! the request-extraction helpers that turn axum's rejections into one.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use squall_store::OpError;

/// An API error: a status and a stable code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before trying again (`Retry-After`), for `busy`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = squall_api::ErrorBody { error: squall_api::Error::new(self.code, self.message) };
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

impl From<squall_store::Error> for ApiError {
    fn from(e: squall_store::Error) -> Self {
        match e {
            squall_store::Error::Refused(e) => e.into(),
            squall_store::Error::TooMany(m) => ApiError::new(StatusCode::BAD_REQUEST, "too_many_keys", m),
            e @ squall_store::Error::OutOfWindow(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "out_of_window", format!("{e}: ask for a later time"))
            }
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let status = match e {
            OpError::WrongType
            | OpError::NotInteger
            | OpError::Overflow
            | OpError::NotFloat
            | OpError::NotFinite
            | OpError::HashNotInteger
            | OpError::HashNotFloat
            | OpError::ScoreNaN
            | OpError::NotHll
            | OpError::BadHll => StatusCode::CONFLICT,
            OpError::TooLong => StatusCode::PAYLOAD_TOO_LARGE,
            OpError::NoSuchKey => StatusCode::NOT_FOUND,
            OpError::OutOfRange | OpError::InvalidGetExExpiry => StatusCode::UNPROCESSABLE_ENTITY,
            OpError::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
            OpError::DiskFailed => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.message())
    }
}

impl From<squall_scheduler::Error> for ApiError {
    fn from(e: squall_scheduler::Error) -> Self {
        use squall_scheduler::Error;
        let (status, retry_after) = match &e {
            Error::BadComponent(_)
            | Error::BadRequest(_)
            | Error::BadDag(_)
            | Error::BadTrigger(_)
            | Error::OutOfWindow(_) => (StatusCode::BAD_REQUEST, None),
            Error::NotFound(_)
            | Error::DagNotFound(_)
            | Error::JobNotFound(_)
            | Error::TriggerNotFound(_)
            | Error::NotDeployedAt(_) => (StatusCode::NOT_FOUND, None),
            Error::InputTooLarge(..) | Error::TooManyInputs(..) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            Error::Busy { retry_after, .. } => (StatusCode::TOO_MANY_REQUESTS, Some(retry_after.as_secs().max(1))),
            Error::Quota(_) => (StatusCode::TOO_MANY_REQUESTS, Some(1)),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
            Error::IdempotencyMismatch(_) => (StatusCode::UNPROCESSABLE_ENTITY, None),
        };
        ApiError { retry_after, ..ApiError::new(status, e.code(), e.to_string()) }
    }
}

/// A body that could not be read (too large, cut off).
pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    if crate::body::is_timeout(&e) {
        return body_timeout(&e);
    }
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "bad_request" };
    ApiError::new(status, code, e.body_text())
}

/// A body that did not arrive in time (`Deadline`).
pub(crate) fn body_timeout(e: &(dyn std::error::Error + 'static)) -> ApiError {
    let message = std::iter::successors(Some(e), |e| e.source())
        .find(|e| e.is::<crate::body::BodyTimeout>())
        .map_or_else(|| e.to_string(), ToString::to_string);
    ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message)
}

/// Axum's own rejections (bad query strings, bad percent-encoding) and
/// other malformed requests.
pub(crate) fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

pub(crate) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(p)| p).map_err(|e| bad_request(e.body_text()))
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| bad_request(e.body_text()))
}
