//! Squall's front doors: the Redis-protocol (RESP2) listener and the HTTP
//! API, with the metrics they record.
//!
//! The gateway translates requests into store operations and results into
//! replies; it holds no business logic of its own. `resp` is the wire format,
//! `commands` maps Redis commands onto lattice operations, `redis` runs
//! connections, `http` serves `/v1/kv`, `functions` serves `/v1/functions`, `/healthz`, `/readyz` and `/metrics`.

pub mod commands;
pub mod functions;
pub mod http;
pub mod metrics;
pub mod redis;
pub mod resp;

pub use metrics::Metrics;
