//! `squall trigger`: bind functions to channels, key changes and schedules.

use std::io::Write;

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Subcommand;
use hyper::Method;

use crate::NodeArgs;
use crate::client::{self, encode_path};
use crate::functions::print_json_or;

#[derive(Subcommand)]
pub enum TriggerCommand {
    /// Run FUNCTION for each message on a channel, change of matching keys, or tick of a schedule
    Add {
        function: String,
        /// A pub/sub channel, or a pattern of channels (with `*`, `?` or `[...]`)
        #[arg(long, group = "source")]
        channel: Option<String>,
        /// A pattern of keys whose changes fire it
        #[arg(long, group = "source")]
        keys: Option<String>,
        /// With --keys: which changes (`set`, `del`, `expired`) [default: all]
        #[arg(long, value_delimiter = ',', requires = "keys")]
        events: Vec<String>,
        /// A cron schedule in UTC: "*/5 * * * *" (or six fields, seconds first)
        #[arg(long, group = "source")]
        cron: Option<String>,
        /// The trigger's id [default: the function's name and a hash of the source]
        #[arg(long)]
        id: Option<String>,
        /// Retries of a failed run before its event goes to the dead letters [default: 3]
        #[arg(long)]
        retries: Option<u32>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the triggers
    Ls {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show a trigger
    Show {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Remove a trigger (and its dead letters)
    Rm {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print a trigger's dead letters: events whose runs all failed
    Dead {
        id: String,
        /// The first entry to print (0: the oldest)
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn source(t: &squall_api::Trigger) -> String {
    match (t.kind.as_str(), &t.channel, &t.keys, &t.cron) {
        ("channel", Some(c), _, _) => format!("channel {c}"),
        ("keys", _, Some(k), _) if t.events.is_empty() => format!("keys {k}"),
        ("keys", _, Some(k), _) => format!("keys {k} ({})", t.events.join(",")),
        ("cron", _, _, Some(c)) => format!("cron {c:?}"),
        (kind, ..) => kind.to_string(),
    }
}

fn describe(out: &mut dyn Write, t: &squall_api::Trigger) -> std::io::Result<()> {
    writeln!(out, "{}\t{}\t{}\tretries {}", t.id, t.function, source(t), t.retries)
}

pub async fn trigger_command(cmd: TriggerCommand) -> Result<()> {
    match cmd {
        TriggerCommand::Add { function, channel, keys, events, cron, id, retries, node } => {
            if channel.is_none() && keys.is_none() && cron.is_none() {
                bail!("say what fires it: --channel C, --keys PATTERN or --cron \"*/5 * * * *\"");
            }
            let mut spec = serde_json::json!({ "function": function });
            for (field, v) in [("channel", channel), ("keys", keys), ("cron", cron)] {
                if let Some(v) = v {
                    spec[field] = v.into();
                }
            }
            if !events.is_empty() {
                spec["events"] = events.into();
            }
            if let Some(r) = retries {
                spec["retries"] = r.into();
            }
            let body = Bytes::from(serde_json::to_vec(&spec)?);
            let (method, path) = match id {
                Some(id) => (Method::PUT, format!("/v1/triggers/{}", encode_path(&id))),
                None => (Method::POST, "/v1/triggers".to_string()),
            };
            let t: squall_api::Trigger = client::call(&node.node, method, &path, body).await?.ok()?.json()?;
            print_json_or(&node, &t, |out| describe(out, &t))
        }
        TriggerCommand::Ls { node } => {
            let r = client::call(&node.node, Method::GET, "/v1/triggers", Bytes::new()).await?.ok()?;
            let v: squall_api::TriggerList = r.json()?;
            print_json_or(&node, &v, |out| {
                for t in &v.triggers {
                    describe(out, t)?;
                }
                Ok(())
            })
        }
        TriggerCommand::Show { id, node } => {
            let path = format!("/v1/triggers/{}", encode_path(&id));
            let t: squall_api::Trigger =
                client::call(&node.node, Method::GET, &path, Bytes::new()).await?.ok()?.json()?;
            print_json_or(&node, &t, |out| describe(out, &t))
        }
        TriggerCommand::Rm { id, node } => {
            let path = format!("/v1/triggers/{}", encode_path(&id));
            let t: squall_api::Trigger =
                client::call(&node.node, Method::DELETE, &path, Bytes::new()).await?.ok()?.json()?;
            print_json_or(&node, &t, |out| writeln!(out, "removed {}", t.id))
        }
        TriggerCommand::Dead { id, from, limit, node } => {
            let path = format!("/v1/triggers/{}/dead?from={from}&limit={limit}", encode_path(&id));
            let d: squall_api::DeadLetters =
                client::call(&node.node, Method::GET, &path, Bytes::new()).await?.ok()?.json()?;
            print_json_or(&node, &d, |out| {
                for (i, l) in d.letters.iter().enumerate() {
                    let n = from + i as u64;
                    writeln!(out, "{n}\t{}\t{} runs\t{}: {}", l.event, l.attempts, l.code, l.message)?;
                }
                writeln!(out, "{} dead letters", d.total)
            })
        }
    }
}
