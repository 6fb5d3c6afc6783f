//! What every HTTP handler sees: the store, the function service, the
//! metrics, and whether the node says it is ready.

use crate::metrics::Metrics;
use squall_scheduler::Functions;
use squall_store::Handle;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct App {
    pub store: Handle,
    pub metrics: Arc<Metrics>,
    /// The namespace `/v1/kv` reads and writes.
    pub ns: bytes::Bytes,
    pub functions: Functions,
    /// Set by the node; `/readyz` answers ready only while it is true.
    pub ready: watch::Receiver<bool>,
}
