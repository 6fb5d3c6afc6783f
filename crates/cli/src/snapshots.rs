//! `squall snapshot`: read-only views of the keys as they were at a past
//! time (`/v1/snapshots`).

use anyhow::Result;
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use std::io::Write;

use crate::NodeArgs;
use crate::client::{self, encode_path};
use crate::functions::print_json_or;

/// Two times, for walks of the past.
#[derive(Args)]
pub struct Range {
    #[arg(long, allow_hyphen_values = true, value_name = "TIME")]
    from: String,
    /// [default: now]
    #[arg(long, allow_hyphen_values = true, value_name = "TIME")]
    to: Option<String>,
}

/// Two times, and the keys to look at.
#[derive(Args)]
pub struct Between {
    #[command(flatten)]
    range: Range,
    /// Only keys starting with this
    #[arg(long)]
    prefix: Option<String>,
}

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Open a snapshot at a past time and print its id
    Create {
        /// RFC 3339 (2026-12-01T16:00:00Z), before now (-5m, -30s) or a stamp (MS.COUNTER)
        #[arg(long, allow_hyphen_values = true, value_name = "TIME")]
        at: String,
        /// Seconds it lives [default: 600]
        #[arg(long)]
        ttl: Option<u64>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the snapshots
    Ls {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print a key as the snapshot shows it
    Get {
        id: String,
        key: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the snapshot's keys (sorted), optionally only those starting with PREFIX
    Scan {
        id: String,
        prefix: Option<String>,
        /// At most this many keys
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Move a snapshot to another time (which renews it)
    Move {
        id: String,
        #[arg(long, allow_hyphen_values = true, value_name = "TIME")]
        at: String,
        #[arg(long)]
        ttl: Option<u64>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Walk what changed between two times, one atomic unit at a time in
    /// stamp order, each key as it was just before and after
    Steps {
        #[command(flatten)]
        between: Between,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the keys whose values differ between two times, as they were at each
    Diff {
        #[command(flatten)]
        between: Between,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Find the first time a predicate over values held (the grammar is in
    /// the README): `n > 100`, `users has bob`, `job:*[status] == failed`,
    /// combined with and, or, not
    Find {
        #[command(flatten)]
        range: Range,
        #[arg(long = "where", value_name = "PREDICATE")]
        predicate: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Remove a snapshot
    Rm {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn at_body(at: &str, ttl: Option<u64>) -> Bytes {
    Bytes::from(serde_json::json!({ "at": at, "ttl": ttl }).to_string())
}

fn print_snapshot(node: &NodeArgs, s: &squall_api::Snapshot) -> Result<()> {
    print_json_or(node, s, |out| writeln!(out, "{}\tat {} (stamp {})\texpires {}", s.id, s.at, s.stamp, s.expires))
}

/// A value as the text output shows it.
fn show(v: &Option<squall_api::Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(squall_api::Value::Register { value }) => serde_json::to_string(value).unwrap_or_default(),
        Some(squall_api::Value::Counter { value } | squall_api::Value::Max { value }) => value.to_string(),
        Some(squall_api::Value::Set { members }) => serde_json::to_string(members).unwrap_or_default(),
        Some(squall_api::Value::Map { fields }) => serde_json::to_string(fields).unwrap_or_default(),
        Some(squall_api::Value::List { items }) => serde_json::to_string(items).unwrap_or_default(),
        Some(squall_api::Value::SortedSet { members }) => serde_json::to_string(members).unwrap_or_default(),
    }
}

/// The query of `/v1/changes`, `/v1/diff` and `/v1/find`.
fn between(range: &Range, prefix: Option<&str>) -> String {
    let mut q = format!("from={}", client::encode_query(&range.from));
    if let Some(t) = &range.to {
        q.push_str(&format!("&to={}", client::encode_query(t)));
    }
    if let Some(p) = prefix {
        q.push_str(&format!("&prefix={}", client::encode_query(p)));
    }
    q
}

fn more(out: &mut dyn Write, complete: bool, upto: &str) -> std::io::Result<()> {
    if !complete {
        writeln!(out, "-- more changes follow: ask again --from {upto}")?;
    }
    Ok(())
}

pub async fn run(cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Steps { between: b, node } => {
            let path = format!("/v1/changes?{}", between(&b.range, b.prefix.as_deref()));
            let r = client::call(&node.node, Method::GET, &path, Bytes::new()).await?.ok()?;
            let steps: squall_api::Steps = r.json()?;
            print_json_or(&node, &steps, |out| {
                for s in &steps.steps {
                    match &s.invocation_id {
                        Some(id) => writeln!(out, "{}\t{}\tinvocation {id}", s.stamp, s.time)?,
                        None => writeln!(out, "{}\t{}", s.stamp, s.time)?,
                    }
                    for k in &s.keys {
                        writeln!(out, "  {}: {} -> {}", k.key, show(&k.before), show(&k.after))?;
                    }
                }
                more(out, steps.complete, &steps.upto)
            })
        }
        SnapshotCommand::Find { range, predicate, node } => {
            let path = format!("/v1/find?{}&where={}", between(&range, None), client::encode_query(&predicate));
            let r = client::call(&node.node, Method::GET, &path, Bytes::new()).await?.ok()?;
            let found: squall_api::Found = r.json()?;
            print_json_or(&node, &found, |out| {
                match (&found.stamp, &found.time) {
                    (Some(stamp), Some(time)) => writeln!(out, "first held at {time} (stamp {stamp})")?,
                    _ => writeln!(out, "never held between those times")?,
                }
                if let Some(step) = &found.step {
                    for k in &step.keys {
                        writeln!(out, "  {}: {} -> {}", k.key, show(&k.before), show(&k.after))?;
                    }
                }
                Ok(())
            })
        }
        SnapshotCommand::Diff { between: b, node } => {
            let path = format!("/v1/diff?{}", between(&b.range, b.prefix.as_deref()));
            let r = client::call(&node.node, Method::GET, &path, Bytes::new()).await?.ok()?;
            let diff: squall_api::Diff = r.json()?;
            print_json_or(&node, &diff, |out| {
                for k in &diff.keys {
                    writeln!(out, "{}: {} -> {}", k.key, show(&k.before), show(&k.after))?;
                }
                more(out, diff.complete, &diff.upto)
            })
        }
        SnapshotCommand::Create { at, ttl, node } => {
            let r = client::call(&node.node, Method::POST, "/v1/snapshots", at_body(&at, ttl)).await?.ok()?;
            print_snapshot(&node, &r.json()?)
        }
        SnapshotCommand::Ls { node } => {
            let r = client::call(&node.node, Method::GET, "/v1/snapshots", Bytes::new()).await?.ok()?;
            let list: squall_api::SnapshotList = r.json()?;
            print_json_or(&node, &list, |out| {
                for s in &list.snapshots {
                    writeln!(out, "{}\tat {} (stamp {})\texpires {}", s.id, s.at, s.stamp, s.expires)?;
                }
                Ok(())
            })
        }
        SnapshotCommand::Get { id, key, node } => {
            crate::print_key(&node, &format!("/v1/snapshots/{}/kv/{}", encode_path(&id), encode_path(&key))).await
        }
        SnapshotCommand::Scan { id, prefix, limit, node } => {
            let base = format!("/v1/snapshots/{}/kv", encode_path(&id));
            crate::print_scan(&node, &base, prefix.as_deref(), limit, "").await
        }
        SnapshotCommand::Move { id, at, ttl, node } => {
            let path = format!("/v1/snapshots/{}", encode_path(&id));
            let r = client::call(&node.node, Method::PATCH, &path, at_body(&at, ttl)).await?.ok()?;
            print_snapshot(&node, &r.json()?)
        }
        SnapshotCommand::Rm { id, node } => {
            let path = format!("/v1/snapshots/{}", encode_path(&id));
            client::call(&node.node, Method::DELETE, &path, Bytes::new()).await?.ok()?;
            print_json_or(&node, &serde_json::json!({ "removed": id }), |out| writeln!(out, "removed {id}"))
        }
    }
}
