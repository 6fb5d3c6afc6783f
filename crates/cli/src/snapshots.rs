//! `squall snapshot`: read-only views of the keys as they were at a past
//! time (`/v1/snapshots`).

use anyhow::Result;
use bytes::Bytes;
use clap::Subcommand;
use hyper::Method;

use crate::NodeArgs;
use crate::client::{self, encode_path};
use crate::functions::print_json_or;

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

pub async fn run(cmd: SnapshotCommand) -> Result<()> {
    match cmd {
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
