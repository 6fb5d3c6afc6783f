//! Squall's front doors: the Redis-protocol (RESP2) listener and the HTTP
//! API, with the metrics they record. The gateway translates requests into
//! store and scheduler calls and results into replies; it holds no business
//! logic of its own.
//!
//! Modules, each importing only those listed before it:
//! - `resp`: the RESP2 wire format (parsing with limits, encoding frames).
//! - `metrics`: counters and histograms, per-function metrics, and the
//!   `/metrics` exposition.
//! - `listen`: accepting sockets for both listeners.
//! - `error`: the API's JSON error ([`error::ApiError`]), how store and
//!   scheduler errors become one, and the request-extraction helpers.
//! - `auth`: users, their namespaces and rights, and secret comparison.
//! - `tls`: certificates and TLS handshakes for both listeners.
//! - `body`: the deadline on HTTP request bodies.
//! - `commands` (imports `resp`): Redis commands as store operations, pure.
//! - `redis` (imports `resp`, `commands`, `metrics`, `listen`, `auth`,
//!   `tls`): Redis connections.
//! - `app` (imports `metrics`, `error`): the state the HTTP handlers share,
//!   and a request's namespace (`Scope`).
//! - `kv` (imports `app`, `error`, `metrics`): `/v1/kv`, `/healthz`,
//!   `/readyz`, `/metrics`.
//! - `functions` (imports `app`, `error`): `/v1/functions`.
//! - `triggers` (imports `app`, `error`): `/v1/triggers`.
//! - `snapshots` (imports `app`, `error`, `kv`): `/v1/snapshots`, views of
//!   the past.
//! - `http` (imports `app`, `auth`, `tls`, `body`, `error`, `metrics`,
//!   `listen`, `kv`, `functions`, `snapshots`, `triggers`): the [`http::Api`], its
//!   router, and `serve`.
//!
//! The JSON bodies are `squall_api`'s types, shared with the CLI.

mod app;
pub mod auth;
mod bits;
mod body;
pub mod commands;
mod dags;
pub mod error;
pub mod functions;
pub mod http;
mod jobs;
mod kv;
mod listen;
pub mod metrics;
mod overlay;
pub mod pubsub;
pub mod redis;
pub mod resp;
mod snapshots;
mod sort;
pub mod tls;
mod triggers;

pub use metrics::Metrics;

/// The namespace both front doors serve: Redis's database 0 and `/v1/kv`.
pub use squall_store::DEFAULT_NS;
