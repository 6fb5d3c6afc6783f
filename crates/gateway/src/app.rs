//! What every HTTP handler sees: the store, the function service, the
//! metrics, and whether the node says it is ready; and, per request, its
//! [`Scope`]: the namespace it works in.

use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::http::StatusCode;
use squall_scheduler::Functions;
use squall_store::Handle;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A snapshot: the time it shows, and when it expires.
pub(crate) struct Snap {
    pub at: squall_store::lattice::Timestamp,
    pub expires_ms: u64,
}

/// The node's snapshots, by namespace and id.
#[derive(Default)]
pub(crate) struct Snapshots {
    all: Mutex<HashMap<(String, String), Snap>>,
    pub next: AtomicU64,
}

impl Snapshots {
    /// The snapshots still alive at `now` (the others are dropped).
    pub fn live(&self, now: u64) -> std::sync::MutexGuard<'_, HashMap<(String, String), Snap>> {
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, s| s.expires_ms > now);
        all
    }
}

#[derive(Clone)]
pub(crate) struct App {
    pub store: Handle,
    pub metrics: Arc<Metrics>,
    pub functions: Functions,
    /// Set by the node; `/readyz` answers ready only while it is true.
    pub ready: watch::Receiver<bool>,
    pub snapshots: Arc<Snapshots>,
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
