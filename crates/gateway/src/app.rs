//! What every HTTP handler sees: the store, the function service, the
//! metrics, and whether the node says it is ready; and, per request, its
//! [`Scope`]: the namespace it works in.

use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::http::StatusCode;
use squall_scheduler::Functions;
use squall_store::Handle;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct App {
    pub store: Handle,
    pub metrics: Arc<Metrics>,
    pub functions: Functions,
    /// Set by the node; `/readyz` answers ready only while it is true.
    pub ready: watch::Receiver<bool>,
}

/// The namespace a request works in (`/v1/ns/NS/...`,
/// else the user's only namespace, else the default one), checked before
/// any handler runs ([`crate::http::Api`]).
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    pub ns: String,
    /// `ns` as the store names it.
    pub store_ns: bytes::Bytes,
}

impl Scope {
    pub fn new(ns: &str) -> Scope {
        Scope { ns: ns.to_string(), store_ns: bytes::Bytes::copy_from_slice(ns.as_bytes()) }
    }

    /// The registry name of this namespace's function or DAG `name` (a bare
    /// name: one that could name another namespace's is refused).
    pub fn qualify(&self, name: &str) -> Result<String, ApiError> {
        squall_scheduler::check_name(name)?;
        Ok(squall_scheduler::qualify(&self.ns, name))
    }

    /// Whether a registry name is of this namespace.
    pub fn holds(&self, qualified: &str) -> bool {
        squall_scheduler::namespace_of(qualified) == self.ns
    }
}

impl<S: Sync> axum::extract::FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Scope, ApiError> {
        parts.extensions.get::<Scope>().cloned().ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request has no scope".to_string())
        })
    }
}
